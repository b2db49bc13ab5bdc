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
    use rerun::blueprint::components::PlayState;
    use rerun::blueprint::{
        Blueprint, Horizontal, Spatial2DView, Spatial3DView, StateTimelineView, TextDocumentView,
        TextLogView, TimePanel, TimeSeriesView, Vertical,
    };
    let camera = Vertical::new([
        Spatial2DView::new("Camera")
            .with_origin("world/robot/base_link/camera/image")
            .into(),
        Spatial2DView::new("Depth")
            .with_origin("world/robot/base_link/camera/depth")
            .into(),
    ]);
    let top = Horizontal::new([
        // The depth image has its own view; projected into the scene it
        // would be a wedge brighter than everything else.
        Spatial3DView::new("Scene")
            .with_origin("world")
            .with_contents(["+ $origin/**", "- $origin/robot/base_link/camera/depth"])
            .into(),
        camera.into(),
    ])
    .with_column_shares([3.0, 2.0]);
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
        .with_timeline(TIMELINE_SIM)
        .with_play_state(PlayState::Following);
    Blueprint::new(Vertical::new([top.into(), bottom.into()]).with_row_shares([3.0, 1.0]))
        .with_time_panel(time)
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
