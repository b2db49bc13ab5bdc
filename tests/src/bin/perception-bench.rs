//! `perception-bench`: the classical detector on frames the sim renders, scored
//! against the sim's ground truth.
//!
//! ```text
//! source .local/env.sh
//! cargo run -p rosetta-tests --bin perception-bench -- --frames 200
//! ```
//!
//! Each frame is a new scene: the four cubes at random spots on the table,
//! the two bins at random spots on the floor, distractor boxes of other
//! colours (orange, purple, white) near the table, and the robot at a random
//! pose 0.8–2.5 m from the table, facing it (±0.3 rad). An object counts as
//! visible when it lies wholly in the image, within 3 m of the camera, with
//! nothing in front of its centre; a detection is a true positive when its
//! class and colour match a visible object within 10 cm. Each frame is
//! scored twice: as rendered, and under a lighting change (one brightness
//! gain for the image and a colour cast, `--lighting`).
//!
//! Then the occupancy grid: in cluttered rooms the robot drives to random
//! reachable goals while the grid is built from its scans, and the grid's
//! obstacles are scored on the room's true map (IoU of occupied cells over
//! what the scans saw, cell-exact and within one cell). Figures are
//! printed, not asserted.

use std::time::Instant;

use clap::Parser;
use nalgebra::{Isometry3, Point3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rosetta_common::robot::RobotDescription;
use rosetta_common::{ObjectKind, Pose2D, Skill};
use rosetta_control::path::{plan_path, Costmap};
use rosetta_perception::detect::{detect, Detection};
use rosetta_sim::render::render_camera;
use rosetta_sim::scene::{Furniture, Scene};
use rosetta_sim::world::{ObjectState, World};
use rosetta_tests::closed_loop::{cluttered_room, footprint_fits, place, true_grid, ClosedLoop};

/// Score the classical detector on randomised rendered frames.
#[derive(Debug, Parser)]
struct Args {
    /// Frames (each a new random scene and pose).
    #[arg(long, default_value_t = 200)]
    frames: usize,
    #[arg(long, default_value_t = 4)]
    seed: u64,
    /// How much the light changes in the relit pass: brightness gain within
    /// 1 ± this, and a colour cast of up to a quarter of it per channel.
    #[arg(long, default_value_t = 0.4)]
    lighting: f64,
    /// Rooms for the occupancy-grid score (0: skip it).
    #[arg(long, default_value_t = 5)]
    grid_rooms: usize,
    /// Random reachable goals driven to in each room while mapping.
    #[arg(long, default_value_t = 4)]
    grid_goals: usize,
    /// Obstacle boxes in each room.
    #[arg(long, default_value_t = 7)]
    boxes: usize,
}

/// A visible object, as the benchmark sees it.
struct Truth<'a> {
    object: &'a ObjectState,
    matched: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // "On one core": OpenCV's own thread pool off.
    opencv::core::set_num_threads(1)?;
    let robot = RobotDescription::default();
    let cam = robot.camera.clone();
    let base = Scene::default_scene()?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    // Each frame is scored as rendered, and again under a lighting change.
    let (mut plain, mut relit) = (Tally::default(), Tally::default());
    for _ in 0..args.frames {
        let scene = random_scene(&base, &mut rng);
        let mut world = World::new(scene, robot.clone());
        world.pose = random_pose(&mut rng);
        let frame = render_camera(&world, &cam);
        let map_from_optical = world.pose.to_isometry() * cam.base_from_optical();
        let (seen, unseen): (Vec<&ObjectState>, Vec<&ObjectState>) = world
            .objects
            .iter()
            .partition(|o| visible(o, &frame.depth_m, &cam, &map_from_optical));
        let lit = relight(&frame.rgb, args.lighting, &mut rng);
        for (rgb, tally) in [(&frame.rgb, &mut plain), (&lit, &mut relit)] {
            let t0 = Instant::now();
            let dets = detect(rgb, &frame.depth_m, &cam, &map_from_optical)?;
            tally.detect_s.push(t0.elapsed().as_secs_f64());
            tally.score(&dets, &seen, &unseen);
        }
    }
    println!(
        "classical detector (HSV + depth), {} frames at {}x{}, {} visible objects (unoccluded, within 3 m):",
        args.frames, cam.width_px, cam.height_px, plain.visible
    );
    plain.print("as rendered");
    relit.print(&format!(
        "lighting changed (brightness x{:.2}..{:.2}, colour cast up to {:.0}%)",
        1.0 - args.lighting,
        1.0 + args.lighting,
        100.0 * args.lighting / 4.0
    ));
    if args.grid_rooms > 0 {
        grid_score(&args, &mut rng)?;
    }
    Ok(())
}

/// The occupancy grid against the sim's map: in cluttered rooms, the robot
/// drives to random reachable goals while the grid is built from its scans
/// (`common::grid`, as perception builds `/map`); then the grid is scored on
/// the room's true map (`OccupancyGrid::observed_iou` in `common::grid`).
fn grid_score(args: &Args, rng: &mut ChaCha8Rng) -> anyhow::Result<()> {
    let radius_m = 0.22;
    let (mut strict, mut tolerant) = (Vec::new(), Vec::new());
    for room in 0..args.grid_rooms {
        let scene = cluttered_room(args.boxes, rng);
        let truth = true_grid(&scene);
        let costmap = Costmap::from_grid(&truth, radius_m, 0.0);
        let mut sim = ClosedLoop::new(scene.clone(), args.seed + room as u64);
        let (mut goals, mut tries) = (0, 0);
        while goals < args.grid_goals && tries < 10_000 {
            tries += 1;
            let g = [rng.gen_range(-2.6..2.6), rng.gen_range(-2.6..2.6)];
            let here = [sim.world.pose.x_m, sim.world.pose.y_m];
            if !footprint_fits(&scene, g, radius_m, 0.05) || plan_path(&costmap, here, g).is_err() {
                continue;
            }
            goals += 1;
            let goal = vec![Skill::NavigateTo {
                target: "goal".into(),
            }];
            sim.run(goal, vec![place("goal", g[0], g[1], 0.0)], 120.0);
        }
        let score = |tol| {
            sim.grid()
                .observed_iou(&truth, tol)
                .ok_or_else(|| anyhow::anyhow!("room {room}: nothing to score"))
        };
        strict.push(score(0)?);
        tolerant.push(score(1)?);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "occupancy grid from /scan, {} rooms of {} boxes, {} goals driven to in each, 0.05 m cells:",
        args.grid_rooms, args.boxes, args.grid_goals
    );
    println!(
        "  IoU of occupied cells over what the scans saw: {:.3} mean, {:.3} worst (cell-exact); {:.3} mean, {:.3} worst (within one cell)",
        mean(&strict),
        min(&strict),
        mean(&tolerant),
        min(&tolerant)
    );
    Ok(())
}

/// Detection scores over many frames.
#[derive(Default)]
struct Tally {
    tp: usize,
    fp: usize,
    fn_: usize,
    visible: usize,
    ignored: usize,
    errors_m: Vec<f64>,
    detect_s: Vec<f64>,
}

impl Tally {
    /// Scores one frame's detections against the visible objects (`seen`);
    /// detections of the others (partly hidden, farther) are not scored.
    fn score(&mut self, dets: &[Detection], seen: &[&ObjectState], unseen: &[&ObjectState]) {
        let (mut truths, mut others) = (as_truth(seen.to_vec()), as_truth(unseen.to_vec()));
        self.visible += truths.len();
        for d in dets {
            match best_match(d, &mut truths) {
                Some(err) => {
                    self.tp += 1;
                    self.errors_m.push(err);
                }
                None if best_match(d, &mut others).is_some() => self.ignored += 1,
                None => self.fp += 1,
            }
        }
        self.fn_ += truths.iter().filter(|t| !t.matched).count();
    }

    fn print(&mut self, label: &str) {
        let ratio = |a: usize, b: usize| {
            if b == 0 {
                f64::NAN
            } else {
                a as f64 / b as f64
            }
        };
        self.errors_m.sort_by(f64::total_cmp);
        self.detect_s.sort_by(f64::total_cmp);
        let q = |v: &[f64], p: f64| {
            v.get(((v.len().max(1) - 1) as f64 * p).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        let (tp, fp, fn_) = (self.tp, self.fp, self.fn_);
        println!("{label}:");
        println!(
            "  precision {:.3} ({tp}/{}), recall {:.3} ({tp}/{})",
            ratio(tp, tp + fp),
            tp + fp,
            ratio(tp, tp + fn_),
            tp + fn_
        );
        println!(
            "  ({} detections of partly hidden or farther objects not scored)",
            self.ignored
        );
        println!(
            "  3-D position error: median {:.1} mm, p95 {:.1} mm, max {:.1} mm",
            q(&self.errors_m, 0.5) * 1e3,
            q(&self.errors_m, 0.95) * 1e3,
            self.errors_m.last().copied().unwrap_or(f64::NAN) * 1e3
        );
        println!(
            "  detection time on one core: p50 {:.1} ms ({:.0} frames/s), p95 {:.1} ms",
            q(&self.detect_s, 0.5) * 1e3,
            1.0 / q(&self.detect_s, 0.5),
            q(&self.detect_s, 0.95) * 1e3
        );
    }
}

/// The frame under other light: one brightness gain in 1 ± `amount` for the
/// whole image, and a colour cast (each channel's gain within ± `amount`/4),
/// clipped to 8 bits, as a change of lamps or daylight would.
fn relight(rgb: &[u8], amount: f64, rng: &mut impl Rng) -> Vec<u8> {
    let a = amount.clamp(0.0, 0.9);
    let gain = if a > 0.0 {
        rng.gen_range(1.0 - a..=1.0 + a)
    } else {
        1.0
    };
    let cast: [f64; 3] = std::array::from_fn(|_| {
        if a > 0.0 {
            1.0 + rng.gen_range(-a / 4.0..=a / 4.0)
        } else {
            1.0
        }
    });
    rgb.iter()
        .enumerate()
        .map(|(i, &v)| {
            (f64::from(v) * gain * cast[i % 3])
                .round()
                .clamp(0.0, 255.0) as u8
        })
        .collect()
}

fn as_truth(v: Vec<&ObjectState>) -> Vec<Truth<'_>> {
    v.into_iter()
        .map(|object| Truth {
            object,
            matched: false,
        })
        .collect()
}

/// The nearest unmatched visible object of the detection's class and colour
/// within 10 cm: marks it matched and returns the error.
fn best_match(d: &Detection, truths: &mut [Truth]) -> Option<f64> {
    let dist = |o: &ObjectState| {
        let p = o.position_m;
        ((p[0] - d.position_m[0]).powi(2)
            + (p[1] - d.position_m[1]).powi(2)
            + (p[2] - d.position_m[2]).powi(2))
        .sqrt()
    };
    let best = truths
        .iter_mut()
        .filter(|t| !t.matched && t.object.kind == d.kind && t.object.color == d.color)
        .map(|t| (dist(t.object), t))
        .filter(|(e, _)| *e < 0.10)
        .min_by(|a, b| a.0.total_cmp(&b.0))?;
    best.1.matched = true;
    Some(best.0)
}

/// Wholly in the image, its centre within 3 m, and nothing in front of it.
fn visible(
    o: &ObjectState,
    depth_m: &[f32],
    cam: &rosetta_common::robot::CameraDescription,
    map_from_optical: &Isometry3<f64>,
) -> bool {
    let optical_from_map = map_from_optical.inverse();
    let project = |p: [f64; 3]| {
        let q = optical_from_map * Point3::new(p[0], p[1], p[2]);
        (q.z > 0.05).then(|| {
            (
                cam.fx_px * q.x / q.z + cam.cx_px,
                cam.fy_px * q.y / q.z + cam.cy_px,
                q.z,
            )
        })
    };
    let (c, s) = (o.position_m, o.size_m);
    let inside = |u: f64, v: f64| {
        u >= 2.0 && v >= 2.0 && u < cam.width_px as f64 - 2.0 && v < cam.height_px as f64 - 2.0
    };
    for dx in [-0.5, 0.5] {
        for dy in [-0.5, 0.5] {
            for dz in [-0.5, 0.5] {
                let corner = [c[0] + dx * s[0], c[1] + dy * s[1], c[2] + dz * s[2]];
                match project(corner) {
                    Some((u, v, _)) if inside(u, v) => {}
                    _ => return false,
                }
            }
        }
    }
    // The top's centre (open bins show their floor through it): within 3 m,
    // and the rendered depth there is not much nearer than the object.
    let top = [c[0], c[1], c[2] + 0.5 * s[2]];
    let Some((u, v, z)) = project(top) else {
        return false;
    };
    let reach = s.iter().fold(0.0f64, |a, b| a.max(*b));
    let i = v as usize * cam.width_px as usize + u as usize;
    z <= 3.0
        && depth_m
            .get(i)
            .is_some_and(|d| f64::from(*d) >= z - reach - 0.02)
}

/// The default scene with the cubes and bins moved at random, and
/// distractor boxes of other colours near the table.
fn random_scene(base: &Scene, rng: &mut impl Rng) -> Scene {
    let mut scene = base.clone();
    let table = scene
        .furniture
        .iter()
        .find(|f| f.id == "table")
        .map(|f| (f.center_m, f.size_m))
        .unwrap_or(([1.6, 0.0, 0.2], [0.6, 1.2, 0.4]));
    let mut placed: Vec<[f64; 2]> = Vec::new();
    let free = |p: [f64; 2], placed: &[[f64; 2]], gap: f64| {
        placed
            .iter()
            .all(|q| (p[0] - q[0]).hypot(p[1] - q[1]) > gap)
    };
    for o in &mut scene.objects {
        for _ in 0..100 {
            let p = match o.kind {
                ObjectKind::Cube => [
                    table.0[0] + rng.gen_range(-0.45..0.45) * table.1[0],
                    table.0[1] + rng.gen_range(-0.45..0.45) * table.1[1],
                ],
                ObjectKind::Bin => [rng.gen_range(-2.2..0.8), rng.gen_range(-2.2..2.2)],
            };
            let gap = if o.kind == ObjectKind::Bin { 0.6 } else { 0.09 };
            if free(p, &placed, gap) {
                o.position_m[0] = p[0];
                o.position_m[1] = p[1];
                placed.push(p);
                break;
            }
        }
    }
    for (i, rgb) in [[230, 120, 30], [120, 60, 150], [235, 235, 235]]
        .into_iter()
        .enumerate()
    {
        let size = rng.gen_range(0.06..0.2);
        scene.furniture.push(Furniture {
            id: format!("distractor_{i}"),
            center_m: [
                table.0[0] + rng.gen_range(-0.8..0.8),
                table.0[1] + rng.gen_range(-1.2..1.2),
                size / 2.0,
            ],
            size_m: [size, size, size],
            rgb,
            obstacle: false,
            path: Vec::new(),
        });
    }
    scene
}

/// 0.8–2.5 m from the table, facing it within ±0.3 rad.
fn random_pose(rng: &mut impl Rng) -> Pose2D {
    let table = [1.6, 0.0];
    let r = rng.gen_range(0.8..2.5);
    let a = rng.gen_range(2.0..4.3f64);
    let (x, y) = (table[0] + r * a.cos(), table[1] + r * a.sin());
    let facing = (table[1] - y).atan2(table[0] - x);
    Pose2D::new(x, y, facing + rng.gen_range(-0.3..0.3))
}
