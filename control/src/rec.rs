//! What control logs to rerun each step, free of ROS: the pose and driven
//! path, and the planned path. The node calls these; so does the logging
//! benchmark (`rec-bench`), which measures their cost per control step.

use rosetta_common::rec;
use rosetta_common::Pose2D;

/// The robot's pose at sim time `t`, and the path it has driven.
pub fn log_pose(rec: &rerun::RecordingStream, t: f64, pose: &Pose2D, path: &[[f32; 3]]) {
    if !rec.is_enabled() {
        return;
    }
    rec::set_sim_time(rec, t);
    rec::log_robot_pose(rec, pose);
    let strips = rerun::LineStrips3D::new([path.to_vec()]);
    rec::traced("world/robot_path", rec.log("world/robot_path", &strips));
}

/// The path the base follows now (odom frame), just above the floor.
pub fn log_planned_path(rec: &rerun::RecordingStream, path: &[[f64; 2]]) {
    if !rec.is_enabled() {
        return;
    }
    let points: Vec<[f32; 3]> = path
        .iter()
        .map(|p| [p[0] as f32, p[1] as f32, 0.02])
        .collect();
    let strips =
        rerun::LineStrips3D::new([points]).with_colors([rerun::Color::from_rgb(80, 200, 255)]);
    rec::traced("world/planned_path", rec.log("world/planned_path", &strips));
}

/// The arm's joint positions (rad) and the gripper's opening (m) at sim
/// time `t`, one time series each under `robot/joints/<name>`.
pub fn log_joints(
    rec: &rerun::RecordingStream,
    t: f64,
    names: &[String],
    q: &[f64],
    gripper: Option<(&str, f64)>,
) {
    if !rec.is_enabled() {
        return;
    }
    rec::set_sim_time(rec, t);
    let named = names.iter().map(String::as_str).zip(q.iter().copied());
    for (name, v) in named.chain(gripper) {
        if v.is_finite() {
            let entity = format!("robot/joints/{name}");
            rec::traced(
                &entity,
                rec.log(entity.as_str(), &rerun::Scalars::single(v)),
            );
        }
    }
}
