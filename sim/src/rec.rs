//! The sim's part of the recording: the true world, under its own root
//! (`truth/`), so that a replayed episode can be checked against what
//! perception believed. Only the sim writes this layer, and no node of the
//! stack reads it; the default layout hides it (the "Scene" view), and the
//! "Scene vs truth" tab shows both.
//!
//! The stack's 3-D scene (`world/`) is the odometry frame; the sim knows the
//! world in `map`. The root `truth` carries `odom_from_map` (the robot's
//! start pose, inverted), so the true world lies over the believed one.

use rosetta_common::rec;
use rosetta_common::{Pose2D, Shape};

use crate::world::{bin_parts, World};

/// The root of the ground-truth layer.
pub const TRUTH_ROOT: &str = rec::TRUTH_ROOT;

/// How often (sim time) the moving parts of the truth are recorded.
pub const TRUTH_LOG_PERIOD_S: f64 = 0.1;

fn rgb(c: [u8; 3], alpha: u8) -> rerun::Color {
    rerun::Color::from_unmultiplied_rgba(c[0], c[1], c[2], alpha)
}

/// Records the true world: what never moves once (static), and the robot
/// and objects every [`TRUTH_LOG_PERIOD_S`].
#[derive(Debug)]
pub struct TruthLogger {
    rec: rerun::RecordingStream,
    last_s: Option<f64>,
    /// What was last recorded of the things that move only now and then
    /// (objects, furniture): they are recorded again only when they change.
    last: Vec<([f64; 3], bool)>,
}

impl TruthLogger {
    /// A logger into this node's part of the run's recording (disabled
    /// outside a launched run).
    pub fn open() -> Self {
        Self::new(rec::open_recording("sim"))
    }

    pub fn new(rec: rerun::RecordingStream) -> Self {
        Self {
            rec,
            last_s: None,
            last: vec![],
        }
    }

    /// Logs the world if its period has passed (the first call logs the
    /// static part too).
    pub fn log(&mut self, world: &World) {
        if !self.rec.is_enabled() {
            return;
        }
        let due = self
            .last_s
            .is_none_or(|t| world.time_s - t >= TRUTH_LOG_PERIOD_S - 1e-9);
        if !due {
            return;
        }
        if self.last_s.is_none() {
            log_static_truth(&self.rec, world);
        }
        self.last_s = Some(world.time_s);
        log_truth(&self.rec, world, &mut self.last);
    }

    /// Writes what is buffered (the sim is stopping).
    pub fn flush(&self) {
        if let Err(e) = self.rec.flush_blocking() {
            tracing::warn!(error = %e, "cannot flush the sim's recording");
        }
    }
}

/// The frame of the truth layer, and the room's walls (they never move).
pub fn log_static_truth(rec: &rerun::RecordingStream, world: &World) {
    let odom_from_map = world.scene.robot_start.inverse();
    rec::traced(
        TRUTH_ROOT,
        rec.log_static(TRUTH_ROOT, &pose_transform(&odom_from_map)),
    );
    let walls = world.statics().len() - world.scene.furniture.len();
    let (centers, half): (Vec<[f32; 3]>, Vec<[f32; 3]>) = world.statics()[..walls]
        .iter()
        .map(|b| (f32x3(b.aabb.center()), f32x3(b.aabb.half_size())))
        .unzip();
    let path = format!("{TRUTH_ROOT}/walls");
    rec::traced(
        &path,
        rec.log_static(
            path.as_str(),
            &rerun::Boxes3D::from_centers_and_half_sizes(centers, half)
                .with_colors([rgb(world.scene.room.wall_rgb, 90)])
                .with_fill_mode(rerun::FillMode::Solid),
        ),
    );
}

/// The furniture where it is now, the robot's true base, and every object
/// at its true pose (a wireframe in its colour, to lie over what perception
/// drew solid).
///
/// `last` holds what was recorded last of each piece of furniture, then each
/// object (centre, held); an unchanged one is not recorded again.
pub fn log_truth(rec: &rerun::RecordingStream, world: &World, last: &mut Vec<([f64; 3], bool)>) {
    rec::set_sim_time(rec, world.time_s);
    let walls = world.statics().len() - world.scene.furniture.len();
    let furniture = &world.statics()[walls..];
    let now: Vec<([f64; 3], bool)> = furniture
        .iter()
        .map(|b| (b.aabb.center(), false))
        .chain(world.objects.iter().map(|o| (o.position_m, o.held)))
        .collect();
    let changed = |i: usize| {
        last.get(i).is_none_or(|(p, held)| {
            *held != now[i].1 || (0..3).any(|k| (p[k] - now[i].0[k]).abs() > 1e-4)
        })
    };
    for (i, (f, b)) in world.scene.furniture.iter().zip(furniture).enumerate() {
        if !changed(i) {
            continue;
        }
        let path = format!("{TRUTH_ROOT}/furniture/{}", f.id);
        rec::traced(
            &path,
            rec.log(
                path.as_str(),
                &rerun::Boxes3D::from_centers_and_half_sizes(
                    [f32x3(b.aabb.center())],
                    [f32x3(b.aabb.half_size())],
                )
                .with_colors([rgb(b.rgb, 200)])
                .with_fill_mode(rerun::FillMode::Solid),
            ),
        );
    }
    let base = format!("{TRUTH_ROOT}/base_link");
    rec::traced(&base, rec.log(base.as_str(), &pose_transform(&world.pose)));
    let r = world.robot.base_radius_m as f32;
    rec::traced(
        &base,
        rec.log(
            base.as_str(),
            &rerun::Cylinders3D::from_lengths_and_radii([0.02], [r])
                .with_centers([[0.0, 0.0, 0.01]])
                .with_colors([rerun::Color::from_rgb(255, 255, 255)])
                .with_labels(["true pose"]),
        ),
    );
    for (i, o) in world.objects.iter().enumerate() {
        if !changed(furniture.len() + i) {
            continue;
        }
        let path = format!("{TRUTH_ROOT}/objects/{}", o.id);
        let color = rgb(o.rgb(), 255);
        let half = f32x3(o.size_m.map(|s| s / 2.0));
        let center = f32x3(o.position_m);
        if o.kind.is_container() {
            let (c, h): (Vec<_>, Vec<_>) = bin_parts(o)
                .iter()
                .map(|p| (f32x3(p.center()), f32x3(p.half_size())))
                .unzip();
            let boxes = rerun::Boxes3D::from_centers_and_half_sizes(c, h)
                .with_colors([color])
                .with_fill_mode(rerun::FillMode::MajorWireframe);
            rec::traced(&path, rec.log(path.as_str(), &boxes));
            continue;
        }
        match o.kind.shape() {
            Shape::Sphere => {
                let r = half[0].min(half[1]).min(half[2]);
                let ball = rerun::Ellipsoids3D::from_centers_and_radii([center], [r])
                    .with_colors([color])
                    .with_fill_mode(rerun::FillMode::MajorWireframe);
                rec::traced(&path, rec.log(path.as_str(), &ball));
                continue;
            }
            Shape::Cylinder => {
                let can = rerun::Cylinders3D::from_lengths_and_radii(
                    [2.0 * half[2]],
                    [half[0].min(half[1])],
                )
                .with_centers([center])
                .with_colors([color])
                .with_fill_mode(rerun::FillMode::MajorWireframe);
                rec::traced(&path, rec.log(path.as_str(), &can));
                continue;
            }
            Shape::Box => {}
        }
        let boxes = rerun::Boxes3D::from_centers_and_half_sizes([center], [half])
            .with_colors([color])
            .with_fill_mode(rerun::FillMode::MajorWireframe);
        rec::traced(&path, rec.log(path.as_str(), &boxes));
    }
    *last = now;
}

fn f32x3(v: [f64; 3]) -> [f32; 3] {
    v.map(|x| x as f32)
}

fn pose_transform(p: &Pose2D) -> rerun::Transform3D {
    rerun::Transform3D::from_translation_rotation(
        [p.x_m as f32, p.y_m as f32, 0.0],
        rerun::RotationAxisAngle::new(
            [0.0, 0.0, 1.0],
            rerun::Angle::from_radians(p.yaw_rad as f32),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The truth layer as rerun holds it, from a recording kept in memory.
    fn recorded(world: &mut World, seconds: f64) -> Vec<rerun::log::LogMsg> {
        let (rec, storage) = rerun::RecordingStreamBuilder::new("truth-test")
            .memory()
            .unwrap();
        let mut logger = TruthLogger::new(rec.clone());
        let steps = (seconds / 0.01).round() as usize;
        for _ in 0..steps {
            world.step(0.01);
            logger.log(world);
        }
        rec.flush_blocking().unwrap();
        storage.take()
    }

    /// Each row's entity path.
    fn entities(msgs: &[rerun::log::LogMsg]) -> Vec<String> {
        msgs.iter()
            .filter_map(|m| match m {
                rerun::log::LogMsg::ArrowMsg(_, arrow) => rerun::log::Chunk::from_arrow_msg(arrow)
                    .ok()
                    .map(|c| vec![c.entity_path().to_string(); c.num_rows()]),
                _ => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn the_true_world_is_recorded_under_its_own_root_and_only_when_it_changes() {
        let scene = crate::scene::Scene::default_scene().unwrap();
        let mut world = World::new(scene, rosetta_common::robot::RobotDescription::default());
        let msgs = recorded(&mut world, 1.0);
        // The recording's own properties aside, every row is the truth's.
        let paths: Vec<String> = entities(&msgs)
            .into_iter()
            .filter(|p| !p.starts_with("/__properties"))
            .collect();
        assert!(paths.iter().all(|p| p.starts_with("/truth")), "{paths:?}");
        for want in [
            "/truth/walls",
            "/truth/base_link",
            "/truth/objects/red_cube",
        ] {
            assert!(paths.iter().any(|p| p == want), "no {want} in {paths:?}");
        }
        // Ten periods in a second; the robot every time, a still cube once.
        let count = |e: &str| paths.iter().filter(|p| *p == e).count();
        assert!(count("/truth/base_link") >= 10, "{paths:?}");
        assert_eq!(count("/truth/objects/red_cube"), 1, "{paths:?}");
    }
}
