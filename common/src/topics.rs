//! Topic names. Sensor and actuator topics are the ones a Gazebo world behind
//! `ros_gz_bridge` offers; the `/rosetta/*` topics are the stack's own.
//!
//! The names are relative: each resolves in its node's namespace, which every
//! node takes from `ROSETTA_NAMESPACE` (`rosetta up --namespace robot1` sets
//! it for all of them). Without one, `cmd_vel` is `/cmd_vel`; with `robot1`,
//! `/robot1/cmd_vel`, so that two robots share a domain without crosstalk.
//! The tables in ARCHITECTURE.md give the names without a namespace.

pub const CMD_VEL: &str = "cmd_vel";
pub const ODOM: &str = "odom";
pub const CLOCK: &str = "clock";
pub const IMAGE: &str = "camera/image_raw";
pub const DEPTH: &str = "camera/depth/image_raw";
pub const CAMERA_INFO: &str = "camera/camera_info";
pub const SCAN: &str = "scan";
/// nav_msgs/OccupancyGrid from perception (odom frame, latched).
pub const MAP: &str = "map";
pub const JOINT_STATES: &str = "joint_states";
/// tf2_msgs/TFMessage, latched: `map → odom`, from perception's localiser
/// ([`crate::frames::MapFromOdom`]). Relative, like every name here, so that
/// two robots' trees stay apart.
pub const TF_STATIC: &str = "tf_static";
pub const ARM_TRAJECTORY: &str = "arm_controller/joint_trajectory";
pub const GRIPPER_TRAJECTORY: &str = "gripper_controller/joint_trajectory";

/// std_msgs/String, JSON [`crate::plan::CommandMessage`]: the operator's words.
pub const COMMAND: &str = "rosetta/command";
/// std_msgs/String, JSON [`crate::plan::PlanMessage`]: the planner's answer.
pub const PLAN: &str = "rosetta/plan";
/// std_msgs/String, JSON [`crate::status::TaskStatus`]: the state of
/// every step of the running plan. Published by the executive.
pub const STATUS: &str = "rosetta/status";
/// std_msgs/String, JSON [`crate::status::TaskStatus`]: control's own
/// state, the skill it runs (as a one-step plan), the robot's pose and the
/// control loop's timing; a heartbeat every 0.5 s.
pub const CONTROL_STATUS: &str = "rosetta/control/status";
/// rosetta_interfaces/action/RunSkill: one skill of the plan language, with
/// feedback, cancel and a timeout. Served by control; the executive sends
/// each step of a plan as one goal.
pub const SKILL: &str = "rosetta/skill";
/// std_msgs/Bool: the e-stop. `true` halts the base and the arm at once and
/// holds them (latched) until `false`; no plan starts while it is engaged.
pub const ESTOP: &str = "rosetta/estop";
/// rosetta_interfaces/action/ExecuteCommand: the command interface for other
/// programs (goal: the words; feedback: the plan and the current step; result:
/// the outcome and the report). Served by the planner.
pub const EXECUTE: &str = "rosetta/execute";
/// std_msgs/String, JSON [`crate::world::WorldModel`]: perception's object map.
pub const OBJECTS: &str = "perception/objects";
/// std_msgs/String, JSON [`crate::status::GroundTruth`]. Only tests and reports read it.
pub const GROUND_TRUTH: &str = "sim/ground_truth";

/// Every topic and action name above: what a robot profile may remap.
pub const ALL: &[&str] = &[
    CMD_VEL,
    ODOM,
    CLOCK,
    IMAGE,
    DEPTH,
    CAMERA_INFO,
    SCAN,
    MAP,
    JOINT_STATES,
    TF_STATIC,
    ARM_TRAJECTORY,
    GRIPPER_TRAJECTORY,
    COMMAND,
    PLAN,
    STATUS,
    CONTROL_STATUS,
    SKILL,
    ESTOP,
    EXECUTE,
    OBJECTS,
    GROUND_TRUTH,
];

pub const FRAME_MAP: &str = "map";
pub const FRAME_ODOM: &str = "odom";
pub const FRAME_BASE: &str = "base_link";
pub const FRAME_CAMERA_OPTICAL: &str = "camera_optical_frame";
pub const FRAME_LIDAR: &str = "lidar_link";
