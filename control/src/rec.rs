//! What control logs to rerun, free of ROS: the pose and driven path, and
//! the planned path, each step (the node calls these; so does the logging
//! benchmark, `rec-bench`, which measures their cost per control step); and
//! the plan's steps as lanes of states over time (the executive).

use rosetta_common::rec;
use rosetta_common::status::{StepState, TaskStatus};
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

/// The words of a plan step's lane, with their colours (RGBA).
pub const STEP_LANE_STATES: [(&str, u32); 6] = [
    ("pending", 0x9E9E_9EFF),
    ("running", 0x42A5_F5FF),
    ("succeeded", 0x66BB_6AFF),
    ("failed", 0xEF53_50FF),
    ("cancelled", 0xFFA7_26FF),
    ("re-planned", 0xAB47_BCFF),
];

/// One change of a step's lane: the entity (under
/// [`rec::PLAN_TIMELINE`]) and the state it enters.
#[derive(Debug, Clone, PartialEq)]
pub struct LaneChange {
    pub path: rerun::EntityPath,
    pub state: &'static str,
    /// Why a step failed: the lane shows `failed: <reason>` from then on.
    pub reason: Option<String>,
    /// The lane is new: its colours are logged with it.
    pub new: bool,
}

/// The plan's steps as lanes of states over time, one lane per step of each
/// plan (`1.2 pick(red_cube)`: attempt 1, step 2), so that the order and
/// duration of every step, a failure and the re-plan that answered it show
/// at a glance. Pure: it says what changed; [`log_lanes`] records it.
#[derive(Debug, Default)]
pub struct StepLanes {
    /// Each lane of the current plan and the state last recorded on it.
    lanes: Vec<(rerun::EntityPath, &'static str)>,
    plan: Option<(u64, u32)>,
}

impl StepLanes {
    /// The lanes whose state changed in `status` since the last call. A
    /// status of a new plan first ends the last plan's open lanes: as
    /// `re-planned` for a later attempt of the same command, else `cancelled`.
    pub fn changes(&mut self, status: &TaskStatus) -> Vec<LaneChange> {
        let plan = (status.command_id, status.attempt);
        let mut out = Vec::new();
        if self.plan != Some(plan) {
            let replanned = self
                .plan
                .is_some_and(|(c, a)| c == status.command_id && a < status.attempt);
            let end = if replanned { "re-planned" } else { "cancelled" };
            for (path, state) in self.lanes.drain(..) {
                if matches!(state, "pending" | "running") {
                    out.push(LaneChange {
                        path,
                        state: end,
                        reason: None,
                        new: false,
                    });
                }
            }
            self.plan = Some(plan);
        }
        for step in &status.steps {
            let state = match step.state {
                StepState::Pending => "pending",
                StepState::Running => "running",
                StepState::Succeeded => "succeeded",
                StepState::Failed { .. } => "failed",
                StepState::Cancelled => "cancelled",
            };
            let reason = match &step.state {
                StepState::Failed { reason } => Some(reason.clone()),
                _ => None,
            };
            let known = self.lanes.len();
            match self.lanes.get_mut(step.index) {
                Some((_, last)) if *last == state => {}
                Some((path, last)) => {
                    *last = state;
                    out.push(LaneChange {
                        path: path.clone(),
                        state,
                        reason,
                        new: false,
                    });
                }
                None if known == step.index => {
                    let name = format!("{}.{} {}", plan.1, step.index + 1, step.skill.describe());
                    let path = rerun::EntityPath::new(vec![
                        "plan".into(),
                        "timeline".into(),
                        rerun::EntityPathPart::new(name),
                    ]);
                    self.lanes.push((path.clone(), state));
                    out.push(LaneChange {
                        path,
                        state,
                        reason,
                        new: true,
                    });
                }
                // Steps arrive in order; a gap is a status this does not understand.
                None => {}
            }
        }
        out
    }
}

/// Records lane changes at the current sim time.
pub fn log_lanes(rec: &rerun::RecordingStream, changes: &[LaneChange]) {
    if !rec.is_enabled() {
        return;
    }
    for c in changes {
        let failed = c.reason.as_deref().map(failed_state);
        if c.new || failed.is_some() {
            // A failure's reason is a state of its own on the lane, in the
            // failure's colour, so that the lane says why where it turns red.
            let (words, colors): (Vec<String>, Vec<u32>) = STEP_LANE_STATES
                .iter()
                .map(|(w, rgba)| (w.to_string(), *rgba))
                .chain(failed.clone().map(|f| (f, FAILED_RGBA)))
                .unzip();
            let style = rerun::StateConfiguration::new()
                .with_values(words)
                .with_colors(colors);
            rec::traced("plan/timeline", rec.log_static(c.path.clone(), &style));
        }
        let change = rerun::StateChange::single(failed.unwrap_or_else(|| c.state.to_string()));
        rec::traced("plan/timeline", rec.log(c.path.clone(), &change));
    }
}

/// The colour of a failed step.
const FAILED_RGBA: u32 = 0xEF53_50FF;

/// A failed step's state on its lane: `failed: <reason>`, cut to fit.
pub fn failed_state(reason: &str) -> String {
    const MAX_CHARS: usize = 80;
    let reason = reason.trim();
    if reason.chars().count() <= MAX_CHARS {
        format!("failed: {reason}")
    } else {
        let cut: String = reason.chars().take(MAX_CHARS - 1).collect();
        format!("failed: {cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosetta_common::status::{StepStatus, TaskState};
    use rosetta_common::Skill;

    fn status(command_id: u64, attempt: u32, states: &[StepState]) -> TaskStatus {
        TaskStatus {
            command_id,
            attempt,
            task: TaskState::Running,
            steps: states
                .iter()
                .enumerate()
                .map(|(index, state)| StepStatus {
                    index,
                    skill: Skill::Pick {
                        object: "red_cube".into(),
                    },
                    state: state.clone(),
                    started_s: None,
                    finished_s: None,
                })
                .collect(),
            message: String::new(),
            stamp_s: 0.0,
            robot_pose: rosetta_common::Pose2D::default(),
            progress: None,
            control_loop: None,
            goals: vec![],
        }
    }

    /// A lane's name as the viewer shows it.
    fn name(c: &LaneChange) -> String {
        c.path
            .last()
            .map(|p| p.unescaped_str().to_string())
            .unwrap_or_default()
    }

    #[test]
    fn each_step_is_a_lane_that_logs_only_its_changes() {
        use StepState::*;
        let mut lanes = StepLanes::default();
        let first = lanes.changes(&status(1, 1, &[Running, Pending]));
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|c| c.new));
        assert_eq!(first[0].state, "running");
        assert_eq!(name(&first[1]), "1.2 pick(red_cube)");
        assert!(lanes.changes(&status(1, 1, &[Running, Pending])).is_empty());
        let next = lanes.changes(&status(1, 1, &[Succeeded, Running]));
        assert_eq!(
            next.iter().map(|c| (c.state, c.new)).collect::<Vec<_>>(),
            [("succeeded", false), ("running", false)]
        );
    }

    #[test]
    fn a_re_plan_ends_the_open_lanes_and_opens_its_own() {
        use StepState::*;
        let mut lanes = StepLanes::default();
        lanes.changes(&status(1, 1, &[Succeeded, Running]));
        let fail = Failed {
            reason: "slipped".into(),
        };
        let failed = lanes.changes(&status(1, 1, &[Succeeded, fail.clone()]));
        assert_eq!(failed[0].state, "failed");
        assert_eq!(failed[0].reason.as_deref(), Some("slipped"));
        assert_eq!(failed_state("slipped"), "failed: slipped");
        assert!(failed_state(&"x".repeat(200)).chars().count() <= 88);
        // Attempt 2 of the same command: nothing was left open.
        let again = lanes.changes(&status(1, 2, &[Running]));
        assert_eq!(again.len(), 1);
        assert!(again[0].new);
        assert_eq!(name(&again[0]), "2.1 pick(red_cube)");
        // A new command while attempt 2 runs: its lane is cancelled.
        let other = lanes.changes(&status(2, 1, &[Running]));
        assert_eq!(other[0].state, "cancelled");
        assert!(!other[0].new);
        assert!(other[1].new);
        // Re-planned: a later attempt of the same command ends open lanes so.
        let replanned = lanes.changes(&status(2, 2, &[Pending]));
        assert_eq!(replanned[0].state, "re-planned");
    }
}
