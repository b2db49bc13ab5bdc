//! rerun recording shared by all nodes of one run.
//!
//! The launcher gives every node the same recording id and an episode folder
//! (`ROSETTA_RECORDING_ID`, `ROSETTA_RRD_DIR`); each node writes its part to
//! `<dir>/<node>.rrd`, and the launcher merges the parts into one episode.
//! Without those variables, logging is disabled and costs nothing.

use rerun::RecordingStream;

pub const APPLICATION_ID: &str = "rosetta";
pub const TIMELINE_SIM: &str = "sim_time";
/// A sequence timeline: which step of the plan runs (1-based; 0 before the first).
pub const TIMELINE_PLAN_STEP: &str = "plan_step";
/// Where each plan step's state lane lives (`StateChange`s, one entity per
/// step of each plan), shown in the "Plan timeline" view.
pub const PLAN_TIMELINE: &str = "plan/timeline";
/// The ground-truth layer, which only the sim writes (walls, furniture,
/// objects and the robot where they really are), hidden in the default
/// "Scene" view and shown in "Scene vs truth".
pub const TRUTH_ROOT: &str = "truth";

/// When set, every node also streams its recording live to this rerun
/// viewer or server (its gRPC proxy URL, e.g.
/// `rerun+http://127.0.0.1:9876/proxy`); the `.rrd` parts are written either way.
pub const CONNECT_ENV: &str = "ROSETTA_RERUN_CONNECT";

/// Opens this node's part of the run's recording, or a disabled stream.
pub fn open_recording(node: &str) -> RecordingStream {
    let (Ok(dir), Ok(id)) = (
        std::env::var("ROSETTA_RRD_DIR"),
        std::env::var("ROSETTA_RECORDING_ID"),
    ) else {
        return RecordingStream::disabled();
    };
    let live = std::env::var(CONNECT_ENV).ok();
    open_recording_at(std::path::Path::new(&dir), &id, node, live.as_deref())
}

/// Opens `<dir>/<node>.rrd` as part of recording `id`, also streamed live to
/// the viewer at `live` when given (a bad URL is logged and the file is
/// still written), or a disabled stream (with the error logged) when the
/// file cannot be written.
pub fn open_recording_at(
    dir: &std::path::Path,
    id: &str,
    node: &str,
    live: Option<&str>,
) -> RecordingStream {
    let path = dir.join(format!("{node}.rrd"));
    let builder = rerun::RecordingStreamBuilder::new(APPLICATION_ID).recording_id(id);
    let uri = live.filter(|u| !u.is_empty()).and_then(|u| {
        u.parse::<rerun::external::re_uri::ProxyUri>()
            .map_err(|e| tracing::error!(url = u, error = %e, "not a rerun viewer URL; recording to the file only"))
            .ok()
    });
    let opened = match uri {
        None => builder.save(&path).map_err(|e| e.to_string()),
        Some(uri) => match rerun::sink::FileSink::new(&path) {
            Ok(file) => builder
                .set_sinks((file, rerun::sink::GrpcSink::new(uri)))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
    };
    match opened {
        Ok(rec) => {
            tracing::info!(path = %path.display(), live = live.unwrap_or("no"), "logging to rerun");
            rec
        }
        Err(e) => {
            tracing::error!(error = %e, path = %path.display(), "cannot open the rerun recording; logging disabled");
            RecordingStream::disabled()
        }
    }
}

/// The layout a newcomer sees when opening an episode: the 3-D scene (map,
/// robot, path, objects, camera frustum) beside the camera image with its
/// detections and the depth image; below them the plan, each step's state
/// as a lane over time, the arm's joints over time, and the nodes' logs; the time panel on sim time, following the newest data.
pub fn default_blueprint() -> rerun::blueprint::Blueprint {
    default_layout().0
}

/// Where the 3-D views' eye starts, in the map frame (the views' origin is
/// `world`): behind the robot's start and to its right, above the table, so
/// that the robot, the table with its objects and the bins beside it fill
/// the view; the eye follows the robot's base from there. Without it the
/// viewer frames the whole map, and the robot is a speck in it.
pub const EYE_POSITION_M: [f32; 3] = [-0.5, -1.7, 1.7];
/// What the eye looks at first: between the start pose and the table.
pub const EYE_LOOK_TARGET_M: [f32; 3] = [0.9, 0.0, 0.4];

/// The layout and the blueprint paths of its 3-D views.
fn default_layout() -> (rerun::blueprint::Blueprint, Vec<rerun::EntityPath>) {
    use rerun::blueprint::components::{PanelState, PlayState};
    use rerun::blueprint::{
        Blueprint, BlueprintPanel, ContainerLike, Horizontal, SelectionPanel, Spatial2DView,
        Spatial3DView, StateTimelineView, Tabs, TextDocumentView, TextLogView, TimePanel,
        TimeSeriesView, Vertical,
    };
    let camera = Vertical::new([
        // What the command's words resolved to, projected onto the image.
        Spatial2DView::new("Camera")
            .with_origin("world/robot/base_link/camera/image")
            .with_contents(["+ $origin/**", "+ /world/grounding/**"])
            .into(),
        Spatial2DView::new("Depth")
            .with_origin("world/robot/base_link/camera/depth")
            .into(),
    ]);
    // The depth image has its own view; projected into the scene it would
    // be a wedge brighter than everything else. The ground truth, which
    // only the sim logs, is a tab away: what perception believed, alone,
    // then the same with the true world over it.
    let depth = "- $origin/robot/base_link/camera/depth";
    let truth = format!("+ /{TRUTH_ROOT}/**");
    let scene_views: [ContainerLike; 2] = [
        Spatial3DView::new("Scene")
            .with_origin("world")
            .with_contents(["+ $origin/**", depth])
            .into(),
        Spatial3DView::new("Scene vs truth")
            .with_origin("world")
            .with_contents(["+ $origin/**", depth, truth.as_str()])
            .into(),
    ];
    let eyes = scene_views
        .iter()
        .filter_map(|v| match v {
            ContainerLike::View(v) => Some(v.blueprint_path()),
            _ => None,
        })
        .collect();
    let scenes = Tabs::new(scene_views);
    let top = Horizontal::new([scenes.into(), camera.into()]).with_column_shares([3.0, 2.0]);
    let bottom = Horizontal::new([
        TextDocumentView::new("Plan")
            .with_origin("plan/steps")
            .into(),
        StateTimelineView::new("Plan timeline")
            .with_origin(PLAN_TIMELINE)
            .into(),
        TimeSeriesView::new("Joints")
            .with_origin("robot/joints")
            .into(),
        TextLogView::new("Logs").with_origin("log").into(),
    ])
    .with_column_shares([1.0, 1.5, 1.0, 1.5]);
    // On sim time, following the newest data: a live run shows what happens
    // now, and a finished episode opens on how it ended.
    let time = TimePanel::new()
        .with_state(PanelState::Collapsed)
        .with_timeline(TIMELINE_SIM)
        .with_play_state(PlayState::Following);
    // The side panels start collapsed, so that at 1280x800 the views have
    // the room; one click opens each.
    let blueprint =
        Blueprint::new(Vertical::new([top.into(), bottom.into()]).with_row_shares([2.2, 1.0]))
            .with_time_panel(time)
            .with_blueprint_panel(BlueprintPanel::new().with_state(PanelState::Collapsed))
            .with_selection_panel(SelectionPanel::new().with_state(PanelState::Collapsed));
    (blueprint, eyes)
}

/// Why the layout could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error(transparent)]
    Stream(#[from] rerun::RecordingStreamError),
    #[error("the recording could not be flushed: {0}")]
    Flush(String),
    #[error("the blueprint gave no activation command")]
    NoActivation,
}

/// Sends the default layout to `rec`, its 3-D views' eyes set
/// ([`EYE_POSITION_M`], following the robot). The Rust blueprint API has no
/// eye property for a 3-D view, so the eyes go into the blueprint's own
/// store, at each view's path, before the command that activates it.
pub fn send_default_blueprint(
    rec: &RecordingStream,
    activation: rerun::blueprint::BlueprintActivation,
) -> Result<(), LayoutError> {
    use rerun::external::re_log_types::LogMsg;
    use rerun::external::re_sdk_types::blueprint::archetypes::EyeControls3D;
    use rerun::external::re_sdk_types::blueprint::components::Eye3DKind;

    let (blueprint, eyes) = default_layout();
    let (capture, captured) = rerun::RecordingStreamBuilder::new(APPLICATION_ID)
        .blueprint()
        .memory()?;
    blueprint.send(&capture, activation)?;
    capture
        .flush_blocking()
        .map_err(|e| LayoutError::Flush(e.to_string()))?;
    let msgs = captured.take();
    let command = msgs
        .iter()
        .find_map(|m| match m {
            LogMsg::BlueprintActivationCommand(c) => Some(c.clone()),
            _ => None,
        })
        .ok_or(LayoutError::NoActivation)?;
    let store = command.blueprint_id.clone();
    let mut out: Vec<LogMsg> = msgs
        .into_iter()
        .filter(|m| m.store_id() == &store && !matches!(m, LogMsg::BlueprintActivationCommand(_)))
        .collect();

    let (eye_stream, eye_msgs) = rerun::RecordingStreamBuilder::new(APPLICATION_ID)
        .recording_id(store.recording_id().clone())
        .blueprint()
        .memory()?;
    eye_stream.set_time_sequence("blueprint", 0);
    for view in eyes {
        eye_stream.log(
            format!("{view}/EyeControls3D"),
            &EyeControls3D::new()
                .with_kind(Eye3DKind::Orbital)
                .with_position(EYE_POSITION_M)
                .with_look_target(EYE_LOOK_TARGET_M)
                .with_eye_up([0.0, 0.0, 1.0])
                .with_tracking_entity("/world/robot/base_link"),
        )?;
    }
    eye_stream
        .flush_blocking()
        .map_err(|e| LayoutError::Flush(e.to_string()))?;
    out.extend(
        eye_msgs
            .take()
            .into_iter()
            .filter(|m| m.store_id() == &store && matches!(m, LogMsg::ArrowMsg(..))),
    );
    rec.send_blueprint(out, command);
    Ok(())
}

/// Sets the sim-time timeline for subsequent log calls on this thread.
pub fn set_sim_time(rec: &RecordingStream, sim_time_s: f64) {
    if sim_time_s.is_finite() {
        rec.set_duration_secs(TIMELINE_SIM, sim_time_s);
    }
}

/// Sets the plan-step timeline for subsequent log calls on this thread.
pub fn set_plan_step(rec: &RecordingStream, step: usize) {
    rec.set_time_sequence(TIMELINE_PLAN_STEP, step as i64);
}

/// What became of one rerun log call: a recording that cannot take a
/// message loses that message only, so the failure is traced, not raised.
pub fn traced(entity: &str, result: rerun::RecordingStreamResult<()>) {
    if let Err(e) = result {
        tracing::debug!(entity, error = %e, "rerun log failed");
    }
}

/// Logs a text line under `log/<node>`; logging failures are only traced.
pub fn log_text(rec: &RecordingStream, node: &str, level: &str, text: &str) {
    let entity = format!("log/{node}");
    let r = rec.log(
        entity.as_str(),
        &rerun::TextLog::new(text).with_level(rerun::TextLogLevel::from(level)),
    );
    if let Err(e) = r {
        tracing::debug!(error = %e, "rerun log failed");
    }
}

/// Logs the robot's base pose in the odom frame as the transform of
/// `world/robot/base_link`: entity paths follow the ROS frame tree
/// (`base_link`, then the camera under it).
pub fn log_robot_pose(rec: &RecordingStream, pose: &crate::Pose2D) {
    let r = rec.log(
        "world/robot/base_link",
        &rerun::Transform3D::from_translation_rotation(
            [pose.x_m as f32, pose.y_m as f32, 0.0],
            rerun::RotationAxisAngle::new(
                [0.0, 0.0, 1.0],
                rerun::Angle::from_radians(pose.yaw_rad as f32),
            ),
        ),
    );
    if let Err(e) = r {
        tracing::debug!(error = %e, "rerun log failed");
    }
}

/// The robot's body as the URDF describes it (`launch/robot/rosetta.urdf`,
/// the file Gazebo loads too): each link an entity under its parent link,
/// from `world/robot/base_link` down (the entity tree is the frame tree),
/// its visuals as boxes, cylinders and spheres; the joints' positions move
/// the links.
#[derive(Debug, Clone)]
pub struct RobotBody {
    /// Each joint reachable from `base_link`, parents before children,
    /// with the entity path of its child link.
    joints: Vec<(crate::urdf::Joint, String)>,
    visuals: Vec<(crate::urdf::Visual, String)>,
}

/// The entity of `base_link`, whose transform is the robot's pose.
pub const BASE_LINK_ENTITY: &str = "world/robot/base_link";

impl RobotBody {
    pub fn from_urdf(text: &str) -> Result<Self, crate::urdf::UrdfError> {
        let doc =
            roxmltree::Document::parse(text).map_err(|e| crate::urdf::UrdfError::Invalid {
                what: "the URDF".into(),
                why: e.to_string(),
            })?;
        let urdf = crate::urdf::Urdf::parse(&doc)?;
        let mut paths = vec![("base_link".to_string(), BASE_LINK_ENTITY.to_string())];
        let mut joints = Vec::new();
        // Breadth first from base_link; a joint whose parent is not reached
        // (a second tree) is left out.
        let mut i = 0;
        while i < paths.len() {
            let (link, path) = paths[i].clone();
            for j in urdf.joints.iter().filter(|j| j.parent == link) {
                let child = format!("{path}/{}", j.child);
                paths.push((j.child.clone(), child.clone()));
                joints.push((j.clone(), child));
            }
            i += 1;
        }
        let visuals = urdf
            .visuals()?
            .into_iter()
            .filter_map(|v| {
                let (_, path) = paths.iter().find(|(l, _)| *l == v.link)?;
                let path = path.clone();
                Some((v, path))
            })
            .collect();
        Ok(Self { joints, visuals })
    }

    /// The links' shapes, once (static), and every joint at zero.
    pub fn log_static(&self, rec: &RecordingStream) {
        for (k, (v, link_path)) in self.visuals.iter().enumerate() {
            let path = format!("{link_path}/visual_{k}");
            // The visual's origin in its link, carried by the shape itself
            // (an entity of its own under the link would be one more frame
            // for the viewer to resolve).
            let origin = joint_pose(v.xyz, v.rpy, None);
            let t = origin.translation.vector;
            let r = origin.rotation.quaternion();
            let center = [t.x as f32, t.y as f32, t.z as f32];
            let quat =
                rerun::Quaternion::from_xyzw([r.i as f32, r.j as f32, r.k as f32, r.w as f32]);
            // What the joints move (the arm, the fingers) stands out from
            // the base it is mounted on.
            let moved = self.joints.iter().any(|(j, child)| {
                // Wheels turn on continuous joints; arms and fingers have
                // limits.
                matches!(j.kind.as_str(), "revolute" | "prismatic")
                    && link_path.starts_with(child.as_str())
            });
            let colour = if moved {
                rerun::Color::from_rgb(235, 150, 40)
            } else {
                rerun::Color::from_rgb(150, 155, 165)
            };
            let r = match v.shape {
                crate::urdf::Shape::Box { size_m } => rec.log_static(
                    path.as_str(),
                    &rerun::Boxes3D::from_half_sizes([size_m.map(|s| (s / 2.0) as f32)])
                        .with_centers([center])
                        .with_quaternions([quat])
                        .with_colors([colour])
                        .with_fill_mode(rerun::FillMode::Solid),
                ),
                crate::urdf::Shape::Cylinder { radius_m, length_m } => rec.log_static(
                    path.as_str(),
                    &rerun::Cylinders3D::from_lengths_and_radii(
                        [length_m as f32],
                        [radius_m as f32],
                    )
                    .with_centers([center])
                    .with_quaternions([quat])
                    .with_colors([colour])
                    .with_fill_mode(rerun::FillMode::Solid),
                ),
                crate::urdf::Shape::Sphere { radius_m } => rec.log_static(
                    path.as_str(),
                    &rerun::Ellipsoids3D::from_radii([radius_m as f32])
                        .with_centers([center])
                        .with_colors([colour])
                        .with_fill_mode(rerun::FillMode::Solid),
                ),
            };
            traced(&path, r);
        }
        for (j, path) in &self.joints {
            let moving = j.kind != "fixed";
            let pose = pose_transform(j.xyz, j.rpy, moving.then_some((j, 0.0)));
            let r = if moving {
                rec.log(path.as_str(), &pose)
            } else {
                rec.log_static(path.as_str(), &pose)
            };
            traced(path, r);
        }
    }

    /// The moving joints at their positions (rad, or m for a prismatic
    /// joint), at the current time; joints not named keep their last pose.
    pub fn log_joints<'n>(
        &self,
        rec: &RecordingStream,
        positions: impl IntoIterator<Item = (&'n str, f64)>,
    ) {
        for (name, q) in positions {
            if !q.is_finite() {
                continue;
            }
            let Some((j, path)) = self.joints.iter().find(|(j, _)| j.name == name) else {
                continue;
            };
            if j.kind == "fixed" {
                continue;
            }
            let pose = pose_transform(j.xyz, j.rpy, Some((j, q)));
            traced(path, rec.log(path.as_str(), &pose));
        }
    }
}

/// The transform of an origin (`xyz`, `rpy`: roll, pitch, yaw about fixed
/// axes, as in URDF), followed by a joint's motion by `q` about (revolute,
/// continuous) or along (prismatic) its axis.
fn pose_transform(
    xyz: [f64; 3],
    rpy: [f64; 3],
    motion: Option<(&crate::urdf::Joint, f64)>,
) -> rerun::Transform3D {
    let iso = joint_pose(xyz, rpy, motion);
    let t = iso.translation.vector;
    let r = iso.rotation.quaternion();
    rerun::Transform3D::from_translation_rotation(
        [t.x as f32, t.y as f32, t.z as f32],
        rerun::Quaternion::from_xyzw([r.i as f32, r.j as f32, r.k as f32, r.w as f32]),
    )
}

/// `parent_from_child` of a link: its origin, then the joint's motion.
fn joint_pose(
    xyz: [f64; 3],
    rpy: [f64; 3],
    motion: Option<(&crate::urdf::Joint, f64)>,
) -> nalgebra::Isometry3<f64> {
    use nalgebra::{Translation3, Unit, UnitQuaternion, Vector3};
    let mut iso = nalgebra::Isometry3::from_parts(
        Translation3::new(xyz[0], xyz[1], xyz[2]),
        UnitQuaternion::from_euler_angles(rpy[0], rpy[1], rpy[2]),
    );
    if let Some((j, q)) = motion {
        let axis = Vector3::from(j.axis);
        if let Some(unit) = Unit::try_new(axis, 1e-9) {
            let m = match j.kind.as_str() {
                "prismatic" => nalgebra::Isometry3::translation(unit.x * q, unit.y * q, unit.z * q),
                _ => nalgebra::Isometry3::from_parts(
                    Translation3::identity(),
                    UnitQuaternion::from_axis_angle(&unit, q),
                ),
            };
            iso *= m;
        }
    }
    iso
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_follows_the_urdf_link_tree() {
        let body = RobotBody::from_urdf(crate::urdf::ROBOT_URDF).unwrap();
        let path = |link: &str| {
            body.joints
                .iter()
                .find(|(j, _)| j.child == link)
                .map(|(_, p)| p.as_str())
        };
        assert_eq!(
            path("gripper_finger_link"),
            Some("world/robot/base_link/arm_upper_link/arm_forearm_link/arm_wrist_link/gripper_finger_link")
        );
        // Base, wheels, three arm links and the finger are drawn.
        assert!(body.visuals.len() >= 7, "{:?}", body.visuals);
        assert!(body
            .visuals
            .iter()
            .all(|(_, p)| p.starts_with(BASE_LINK_ENTITY)));
    }

    #[test]
    fn a_joint_moves_its_link_about_or_along_its_axis() {
        let mut j = crate::urdf::Joint {
            name: "j".into(),
            kind: "revolute".into(),
            parent: "a".into(),
            child: "b".into(),
            xyz: [1.0, 0.0, 0.0],
            rpy: [0.0, 0.0, 0.0],
            axis: [0.0, 0.0, 1.0],
            limit: None,
            acceleration: None,
        };
        let tip = nalgebra::Point3::new(1.0, 0.0, 0.0);
        let turned = joint_pose(j.xyz, j.rpy, Some((&j, std::f64::consts::FRAC_PI_2))) * tip;
        assert!(
            (turned - nalgebra::Point3::new(1.0, 1.0, 0.0)).norm() < 1e-12,
            "{turned}"
        );
        j.kind = "prismatic".into();
        j.axis = [1.0, 0.0, 0.0];
        let slid = joint_pose(j.xyz, j.rpy, Some((&j, 0.02))) * tip;
        assert!(
            (slid - nalgebra::Point3::new(2.02, 0.0, 0.0)).norm() < 1e-12,
            "{slid}"
        );
        // URDF's rpy: yaw a quarter turn maps x onto y.
        let yawed = joint_pose([0.0; 3], [0.0, 0.0, std::f64::consts::FRAC_PI_2], None) * tip;
        assert!(
            (yawed - nalgebra::Point3::new(0.0, 1.0, 0.0)).norm() < 1e-12,
            "{yawed}"
        );
    }
}
