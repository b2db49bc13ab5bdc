//! Executor status (what the stack believes) and the sim's ground truth (what is).

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
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Stopped
        )
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

/// Published by the executor on [`crate::topics::STATUS`] at every change and as a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutorStatus {
    pub command_id: u64,
    /// Which plan of the command this is ([`crate::PlanMessage::attempt`]).
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    pub task: TaskState,
    pub steps: Vec<StepStatus>,
    pub message: String,
    /// Sim time of this status.
    pub stamp_s: f64,
    /// The executor's belief of the robot pose, in `odom`.
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
