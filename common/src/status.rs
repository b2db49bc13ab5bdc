//! SkillRunner status (what the stack believes) and the sim's ground truth (what is).

use serde::{Deserialize, Serialize};

use crate::{Color, Pose2D, Skill};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StepState {
    Pending,
    Running,
    Succeeded,
    Failed { reason: String },
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepStatus {
    pub index: usize,
    pub skill: Skill,
    #[serde(flatten)]
    pub state: StepState,
    /// Sim time when the step started / ended.
    pub started_s: Option<f64>,
    pub finished_s: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Idle,
    Running,
    Succeeded,
    Failed,
    Stopped,
}

impl TaskState {
    /// The state as a word, as it is on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Idle => "idle",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Stopped => "stopped",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Stopped
        )
    }
}

/// How one skill goal of `/rosetta/skill` stands: the `state` of its
/// feedback and result. On the wire it is the snake_case word
/// (`RunSkill.action`); each side maps it once, at the edge, with
/// [`SkillState::as_str`] and [`SkillState::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkillState {
    Running,
    Succeeded,
    Failed,
    /// Stopped before the end, by its client or by the e-stop; or not
    /// started because the e-stop is engaged. The plan stops; no re-plan.
    Canceled,
    /// Replaced by a newer skill goal or a plan.
    Preempted,
    TimedOut,
    /// Not started: not a skill of the plan language, or a bad timeout.
    Rejected,
}

impl SkillState {
    pub const ALL: [SkillState; 7] = [
        SkillState::Running,
        SkillState::Succeeded,
        SkillState::Failed,
        SkillState::Canceled,
        SkillState::Preempted,
        SkillState::TimedOut,
        SkillState::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SkillState::Running => "running",
            SkillState::Succeeded => "succeeded",
            SkillState::Failed => "failed",
            SkillState::Canceled => "canceled",
            SkillState::Preempted => "preempted",
            SkillState::TimedOut => "timed_out",
            SkillState::Rejected => "rejected",
        }
    }

    /// The state a wire word names; `None` for a word no version of the
    /// action defines.
    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == word)
    }

    pub fn is_success(self) -> bool {
        self == SkillState::Succeeded
    }
}

/// How a command (a goal of `/rosetta/execute`) ended: the `outcome` word
/// of its result. The planner writes it with [`CommandOutcome::as_str`];
/// clients read it with [`CommandOutcome::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandOutcome {
    Succeeded,
    Failed,
    Refused,
    Stopped,
    Canceled,
    Preempted,
}

impl CommandOutcome {
    pub const ALL: [CommandOutcome; 6] = [
        CommandOutcome::Succeeded,
        CommandOutcome::Failed,
        CommandOutcome::Refused,
        CommandOutcome::Stopped,
        CommandOutcome::Canceled,
        CommandOutcome::Preempted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CommandOutcome::Succeeded => "succeeded",
            CommandOutcome::Failed => "failed",
            CommandOutcome::Refused => "refused",
            CommandOutcome::Stopped => "stopped",
            CommandOutcome::Canceled => "canceled",
            CommandOutcome::Preempted => "preempted",
        }
    }

    /// The outcome a result's word names; `None` for a word no version of
    /// the action defines.
    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == word)
    }
}

/// The control loop's timing over its last ticks (wall clock).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoopSummary {
    pub ticks: u64,
    pub rate_hz: f64,
    pub period_p50_ms: f64,
    /// |period - nominal period|, 99th percentile and worst.
    pub jitter_p99_ms: f64,
    pub jitter_max_ms: f64,
    /// From the tick's deadline to the loop handling it.
    pub wake_latency_p99_ms: f64,
}

/// Published by the executive on [`crate::topics::STATUS`] (and by control, for its running skill, on [`crate::topics::CONTROL_STATUS`]) at every change and as a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub command_id: u64,
    /// Which plan of the command this is ([`crate::PlanMessage::attempt`]).
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    pub task: TaskState,
    pub steps: Vec<StepStatus>,
    pub message: String,
    /// Sim time of this status.
    pub stamp_s: f64,
    /// Control's belief of the robot pose, in `odom`.
    pub robot_pose: Pose2D,
    /// How far the running step has got, in words ("1.42 m to go", "stage
    /// 2 of 4: descend"); none between steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// The control loop's rate and jitter (filled in by the node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_loop: Option<LoopSummary>,
    /// The command's goal conditions as checked after the last step: which
    /// hold and which do not (empty until then, or for a plan without goals).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub goals: Vec<crate::goal::GoalCheck>,
}

fn first_attempt() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundTruthObject {
    pub id: String,
    /// `cube` or `bin`.
    pub kind: String,
    pub color: Color,
    /// Centre of the object, in the `map` frame.
    pub position_m: [f64; 3],
    /// The id of the bin it lies in, if any.
    pub in_container: Option<String>,
    pub held: bool,
}

/// The sim's true state, on [`crate::topics::GROUND_TRUTH`]. No stage of the stack reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    pub stamp_s: f64,
    pub scene: String,
    /// Robot base pose in the `map` frame.
    pub robot_pose: Pose2D,
    pub objects: Vec<GroundTruthObject>,
    /// Number of simulation steps in which the base was blocked by an obstacle.
    pub collisions: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skill_states_round_trip_through_their_wire_words() {
        for s in SkillState::ALL {
            assert_eq!(SkillState::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).expect("serialises");
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(SkillState::parse("exploded"), None);
        assert_eq!(SkillState::parse("Succeeded"), None);
    }

    #[test]
    fn command_outcomes_round_trip_through_their_wire_words() {
        for o in CommandOutcome::ALL {
            assert_eq!(CommandOutcome::parse(o.as_str()), Some(o));
            let json = serde_json::to_string(&o).expect("serialises");
            assert_eq!(json, format!("\"{}\"", o.as_str()));
        }
        assert_eq!(CommandOutcome::parse("lost"), None);
    }

    #[test]
    fn task_state_words_are_the_wire_words() {
        use TaskState::*;
        for t in [Idle, Running, Succeeded, Failed, Stopped] {
            let json = serde_json::to_string(&t).expect("serialises");
            assert_eq!(json, format!("\"{}\"", t.as_str()));
        }
    }
}
