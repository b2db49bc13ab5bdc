//! The skill runner: carries out a plan's skills one after another, as state
//! machines driven by `tick` (state in, commands out). Pure: no ROS.

use rosetta_common::robot::{ArmJoints, RobotDescription};
use rosetta_common::status::{TaskState, TaskStatus};
use rosetta_common::{wrap_angle_rad, ObservedObject, Pose2D, Skill, ValidPlan, WorldModel};

use rosetta_common::grid::OccupancyGrid;

use crate::nav::{
    drive_to, face, free_distance_m, pursue, remaining_length_m, speed_for_clearance, NavOutcome,
    NavParams, Twist2D,
};
use crate::path::{plan_path, Costmap, PathError};
use crate::plan_run::PlanRun;

/// Where the arm reaches objects: this far ahead of the base centre.
pub const REACH_M: f64 = rosetta_common::robot::NOMINAL_REACH_M;
/// Per-step limits, in sim seconds.
pub const NAVIGATE_TIMEOUT_S: f64 = 90.0;
pub const ARM_STAGE_TIMEOUT_S: f64 = 10.0;
pub const LOOK_FOR_TIMEOUT_S: f64 = 30.0;
/// Navigation fails if the distance to the goal does not shrink by
/// `PROGRESS_M` within `PROGRESS_WINDOW_S`.
pub const PROGRESS_WINDOW_S: f64 = 8.0;
pub const PROGRESS_M: f64 = 0.05;
/// Global path: re-planned this often while driving, and after this long blocked.
pub const REPLAN_PERIOD_S: f64 = 2.0;
pub const REPLAN_WHEN_BLOCKED_S: f64 = 1.0;
/// Recovery: after this long blocked the base backs up a little, once.
pub const BACK_UP_AFTER_S: f64 = 2.5;
pub const BACK_UP_M: f64 = 0.15;
/// Recovery when no path is found: one full turn in place at this rate, while
/// the map refreshes (a person who stood in a doorway has walked on), then
/// plan again; still no path fails the step.
pub const SPIN_RATE_RAD_S: f64 = 0.6;
/// A navigation step fails after this long blocked by an obstacle.
pub const BLOCKED_FAIL_S: f64 = 5.0;
/// Pure pursuit looks this far ahead; closer to the goal, the precise go-to-pose takes over.
pub const LOOKAHEAD_M: f64 = 0.35;
/// The base stops this far short of an obstacle seen on the scan.
pub const STOP_MARGIN_M: f64 = 0.03;
/// `stop` is done once the base has not moved more than [`REST_MOVE_M`] or
/// turned more than [`REST_TURN_RAD`] for this long.
pub const REST_S: f64 = 0.2;
const REST_MOVE_M: f64 = 0.001;
const REST_TURN_RAD: f64 = 0.002;
/// `stop` fails (and says so) when the base still moves after this long.
pub const REST_TIMEOUT_S: f64 = 5.0;
/// How long a speed command may run before the next one acts: a few of the
/// loop's 10 ms periods, the transport, and the base's own cycle. The speed
/// limit near obstacles counts this distance as well as the braking distance.
pub const REACTION_S: f64 = 0.05;
/// Paths keep the footprint at least this far from anything on the map
/// (the lethal radius of the costmap is the base's radius plus this): the
/// grid's cells and pure pursuit's corner cutting are each a few cm.
pub const FOOTPRINT_PADDING_M: f64 = 0.03;
/// Extra room kept around the footprint by the path planner's cost.
pub const CLEARANCE_M: f64 = 0.25;
/// Paths are planned first within this margin around the robot and the goal.
pub const PLAN_MARGIN_M: f64 = 2.0;
/// How long a step waits for an object it names to appear in the world model.
pub const WORLD_GRACE_S: f64 = 3.0;
const JOINT_TOLERANCE_RAD: f64 = 0.01;
/// A closed gripper narrower than this holds nothing.
const GRIPPER_EMPTY_M: f64 = 0.01;
const PRE_GRASP_HEIGHT_M: f64 = 0.08;
const DROP_CLEARANCE_M: f64 = 0.10;

/// What the skill runner reads each tick.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub time_s: f64,
    pub pose: Pose2D,
    pub arm_q: Option<ArmJoints>,
    pub gripper_m: Option<f64>,
    pub world: &'a WorldModel,
    /// The occupancy grid, in the pose's frame; `None` plans straight lines.
    pub grid: Option<&'a OccupancyGrid>,
    /// The latest scan's hits, in the pose's frame: the base never drives into them.
    pub obstacles_m: &'a [[f64; 2]],
}

impl<'a> Inputs<'a> {
    /// Inputs with no arm, no grid and no scan, for tests and simple callers.
    pub fn basic(time_s: f64, pose: Pose2D, world: &'a WorldModel) -> Self {
        Self {
            time_s,
            pose,
            arm_q: None,
            gripper_m: None,
            world,
            grid: None,
            obstacles_m: &[],
        }
    }
}

/// What the skill runner asks for. `None` leaves the last command in place.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Outputs {
    pub cmd_vel: Option<Twist2D>,
    pub arm_target: Option<ArmJoints>,
    pub gripper_target_m: Option<f64>,
}

#[derive(Debug, Clone, Default)]
struct StepCtx {
    stage: u8,
    started_s: f64,
    stage_started_s: f64,
    goal: Option<[f64; 2]>,
    look_at: Option<[f64; 2]>,
    aimed_at: Option<[f64; 3]>,
    at_goal: bool,
    progress: (f64, f64),
    arm_goal: Option<ArmJoints>,
    gripper_goal: Option<f64>,
    gripper_prev: (f64, f64),
    turned_rad: f64,
    last_yaw: f64,
    /// The global path being followed, the segment the robot is on, the goal
    /// it was planned to, and when.
    path: Vec<[f64; 2]>,
    path_seg: usize,
    path_goal: Option<[f64; 2]>,
    planned_s: f64,
    /// Since when an obstacle on the scan holds the base, and when it last re-planned for it.
    blocked_since: Option<f64>,
    blocked_replanned_s: f64,
    backed_up: bool,
    back_up_from: Option<[f64; 2]>,
    /// The turn-in-place recovery: how far it has turned, and the last yaw;
    /// and whether it was used in this step.
    spin: Option<(f64, f64)>,
    spun: bool,
    /// `stop`: since when, and from which pose, the base has not moved.
    rest_since: Option<(f64, Pose2D)>,
    /// How often `navigate_to` an object aimed again on arrival because
    /// the object's estimate had moved out of the arm's reach.
    reaims: u8,
}

#[derive(Debug, Clone)]
pub struct SkillRunner {
    robot: RobotDescription,
    nav: NavParams,
    run: PlanRun,
    ctx: StepCtx,
    last_pose: Pose2D,
    last_time_s: f64,
    changed: bool,
}

enum Progress {
    Continue(Outputs),
    Done(Outputs),
    Failed(String),
}

impl SkillRunner {
    pub fn new(robot: RobotDescription) -> Self {
        Self {
            robot,
            nav: NavParams::default(),
            run: PlanRun::default(),
            ctx: StepCtx::default(),
            last_pose: Pose2D::default(),
            last_time_s: 0.0,
            changed: true,
        }
    }

    pub fn task(&self) -> TaskState {
        self.run.task()
    }

    pub fn is_running(&self) -> bool {
        self.run.is_running()
    }

    /// Whether the status changed since the last call (and resets the flag).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Starts a plan, preempting whatever runs now.
    pub fn start(&mut self, command_id: u64, plan: ValidPlan, now_s: f64) {
        self.start_attempt(command_id, 1, plan, now_s);
    }

    /// Starts attempt `attempt` (a re-plan after a failure) of a command.
    pub fn start_attempt(&mut self, command_id: u64, attempt: u32, plan: ValidPlan, now_s: f64) {
        self.replace(PlanRun::start(command_id, attempt, plan, now_s));
        self.begin_step(now_s);
    }

    /// Records a refused command: nothing moves.
    pub fn refuse(&mut self, command_id: u64, reason: &str) {
        self.replace(PlanRun::refused(command_id, reason));
    }

    /// Refuses to start a plan (the e-stop is engaged): the command ends
    /// `Stopped`, which the planner does not re-plan.
    pub fn hold_off(&mut self, command_id: u64, attempt: u32, reason: &str) {
        self.replace(PlanRun::held_off(command_id, attempt, reason));
    }

    /// Stops everything now; the running step is cancelled.
    pub fn stop(&mut self, reason: &str) -> Outputs {
        if self.run.is_running() {
            self.run.stop(self.last_time_s, reason);
            self.changed = true;
        }
        Outputs {
            cmd_vel: Some(Twist2D::default()),
            ..Default::default()
        }
    }

    /// The running plan (if any) is cancelled and `next` takes its place.
    fn replace(&mut self, next: PlanRun) {
        self.run
            .stop(self.last_time_s, "preempted by a new command");
        self.run = next;
        self.changed = true;
    }

    fn begin_step(&mut self, now_s: f64) {
        self.ctx = StepCtx {
            started_s: now_s,
            stage_started_s: now_s,
            progress: (now_s, f64::INFINITY),
            last_yaw: self.last_pose.yaw_rad,
            ..Default::default()
        };
    }

    pub fn status(&self) -> TaskStatus {
        let mut st = self.run.status(self.last_time_s, self.last_pose);
        st.progress = self.progress();
        st
    }

    /// How far the running step has got, in words.
    fn progress(&self) -> Option<String> {
        let (_, skill) = self.run.current()?;
        let now = self.last_time_s;
        let stage = |names: &[&str]| {
            let i = usize::from(self.ctx.stage).min(names.len().saturating_sub(1));
            names
                .get(i)
                .map(|n| format!("stage {} of {}: {n}", i + 1, names.len()))
        };
        match skill {
            Skill::NavigateTo { .. } => {
                let robot = [self.last_pose.x_m, self.last_pose.y_m];
                if self.ctx.at_goal {
                    Some("turning to the goal's heading".into())
                } else if self.ctx.path.is_empty() {
                    self.ctx
                        .goal
                        .map(|g| format!("{:.2} m to go", dist2(robot, g).sqrt()))
                } else {
                    Some(format!(
                        "{:.2} m to go",
                        remaining_length_m(robot, &self.ctx.path, self.ctx.path_seg)
                    ))
                }
            }
            Skill::Pick { .. } => stage(&[
                "line up",
                "reach over",
                "descend",
                "close the gripper",
                "lift",
            ]),
            Skill::Place { .. } => stage(&["line up", "reach over", "open the gripper", "stow"]),
            Skill::LookFor { .. } | Skill::LookAround => Some(format!(
                "turned {:.0} deg",
                self.ctx.turned_rad.abs().to_degrees()
            )),
            Skill::Wait { seconds } => Some(format!(
                "{:.1} s left",
                (seconds - (now - self.ctx.started_s)).max(0.0)
            )),
            Skill::Say { .. } | Skill::Stop => None,
        }
    }

    /// One control step.
    pub fn tick(&mut self, inp: &Inputs) -> Outputs {
        self.last_pose = inp.pose;
        self.last_time_s = inp.time_s;
        let Some(skill) = self.run.current().map(|(_, s)| s.clone()) else {
            return Outputs::default();
        };
        let progress = match &skill {
            Skill::NavigateTo { target } => self.navigate(inp, target),
            Skill::Pick { object } => self.pick(inp, object),
            Skill::Place { object, target } => self.place(inp, object, target),
            Skill::LookFor { object } => self.look_for(inp, object),
            Skill::LookAround => self.look_around(inp),
            Skill::Say { text } => {
                tracing::info!(say = %text, "robot says");
                Progress::Done(Outputs::default())
            }
            Skill::Wait { seconds } => {
                // A ValidPlan's wait is within 0..=MAX_WAIT_S.
                if inp.time_s - self.ctx.started_s >= *seconds {
                    Progress::Done(stop_outputs())
                } else {
                    Progress::Continue(stop_outputs())
                }
            }
            // The run ends `Stopped` after a stop step, once the base is at rest.
            Skill::Stop => self.come_to_rest(inp),
        };
        match progress {
            Progress::Continue(o) => o,
            Progress::Done(mut o) => {
                self.run.step_succeeded(inp.time_s);
                self.changed = true;
                if self.run.is_running() {
                    self.begin_step(inp.time_s);
                } else {
                    o.cmd_vel = Some(Twist2D::default());
                }
                o
            }
            Progress::Failed(reason) => {
                tracing::warn!(step = %skill.describe(), %reason, "step failed");
                self.run.step_failed(inp.time_s, &reason);
                self.changed = true;
                stop_outputs()
            }
        }
    }

    /// `stop`: zero speed at once; done when the base has stood still (its
    /// pose unchanged) for [`REST_S`], so that "stopped" means at rest, not
    /// braking. A base still moving after [`REST_TIMEOUT_S`] fails the step.
    fn come_to_rest(&mut self, inp: &Inputs) -> Progress {
        let here = (inp.time_s, inp.pose);
        let (since, at) = *self.ctx.rest_since.get_or_insert(here);
        let moved = (inp.pose.x_m - at.x_m).hypot(inp.pose.y_m - at.y_m) > REST_MOVE_M
            || rosetta_common::wrap_angle_rad(inp.pose.yaw_rad - at.yaw_rad).abs() > REST_TURN_RAD;
        if moved {
            self.ctx.rest_since = Some(here);
        } else if inp.time_s - since >= REST_S {
            return Progress::Done(stop_outputs());
        }
        if inp.time_s - self.ctx.started_s > REST_TIMEOUT_S {
            return Progress::Failed(format!(
                "the base did not come to rest within {REST_TIMEOUT_S:.0} s of the stop"
            ));
        }
        Progress::Continue(stop_outputs())
    }

    fn next_stage(&mut self, now_s: f64) {
        self.ctx.stage += 1;
        self.ctx.stage_started_s = now_s;
    }

    /// An object the plan names is not (yet) in this node's world model: the
    /// planner may have seen a newer map than ours, so wait a little for it.
    fn missing(&self, inp: &Inputs, id: &str) -> Progress {
        if inp.time_s - self.ctx.started_s < WORLD_GRACE_S {
            Progress::Continue(stop_outputs())
        } else {
            Progress::Failed(format!("{id} is not in the world model"))
        }
    }

    fn navigate(&mut self, inp: &Inputs, target: &str) -> Progress {
        let robot = [inp.pose.x_m, inp.pose.y_m];
        if let Some(place) = inp.world.place(target) {
            // A named place is a pose: drive onto it, then turn to its heading.
            let goal = [place.pose.x_m, place.pose.y_m];
            let (s, c) = place.pose.yaw_rad.sin_cos();
            self.ctx.goal = Some(goal);
            self.ctx.look_at = Some([goal[0] + c, goal[1] + s]);
        }
        if let Some(obj) = inp.world.get(target) {
            let p = obj.position_m;
            self.aim_at_object(robot, p);
        } else if inp.world.place(target).is_none() {
            return self.missing(inp, target);
        }
        let Some(goal) = self.ctx.goal.filter(|_| self.ctx.look_at.is_some()) else {
            return Progress::Failed("no goal".into());
        };
        if inp.time_s - self.ctx.started_s > NAVIGATE_TIMEOUT_S {
            return Progress::Failed(format!(
                "did not reach {target} within {NAVIGATE_TIMEOUT_S:.0} s"
            ));
        }
        let now = inp.time_s;
        if let Some(failed) = self.replan_if_due(inp, target, goal) {
            return failed;
        }
        if let Some(p) = self.spin_in_place(inp, target) {
            return p;
        }
        let Some(goal) = self.ctx.goal else {
            return Progress::Failed("no goal".into());
        };
        let look = self.ctx.look_at.unwrap_or(goal);
        let to_go = remaining_length_m(robot, &self.ctx.path, self.ctx.path_seg);
        if to_go < self.ctx.progress.1 - PROGRESS_M || self.ctx.at_goal {
            self.ctx.progress = (now, to_go);
        } else if now - self.ctx.progress.0 > PROGRESS_WINDOW_S && self.ctx.blocked_since.is_none()
        {
            return Progress::Failed(format!(
                "no progress towards {target} for {PROGRESS_WINDOW_S:.0} s ({to_go:.2} m to go)"
            ));
        }
        // Recovery: back up a little, once, when blocked for a while.
        if let Some(from) = self.ctx.back_up_from {
            let rear = free_distance_m(&inp.pose, inp.obstacles_m, self.robot.base_radius_m, true);
            if dist2(from, robot) < BACK_UP_M && rear > STOP_MARGIN_M + 0.02 {
                return Progress::Continue(Outputs {
                    cmd_vel: Some(Twist2D {
                        linear_m_s: -0.1,
                        angular_rad_s: 0.0,
                    }),
                    ..Default::default()
                });
            }
            self.ctx.back_up_from = None;
            self.ctx.blocked_replanned_s = f64::NEG_INFINITY;
        }
        let mut twist = match pursue(
            &inp.pose,
            &self.ctx.path,
            &mut self.ctx.path_seg,
            LOOKAHEAD_M,
            &self.nav,
        ) {
            Some(t) => t,
            None => match drive_to(&inp.pose, goal, look, &mut self.ctx.at_goal, &self.nav) {
                NavOutcome::Arrived => return self.arrived(inp, target, robot),
                NavOutcome::Moving(t) => t,
            },
        };
        if let Some(failed) = self.hold_short_of_obstacles(inp, target, &mut twist) {
            return failed;
        }
        Progress::Continue(Outputs {
            cmd_vel: Some(twist),
            ..Default::default()
        })
    }

    /// Plans the path again when the goal moved, the plan is old, or the
    /// base has been blocked a while; with no path, turns in place once
    /// (the map refreshes) before it gives up.
    fn replan_if_due(&mut self, inp: &Inputs, target: &str, goal: [f64; 2]) -> Option<Progress> {
        let now = inp.time_s;
        let blocked_for = self.ctx.blocked_since.map_or(0.0, |b| now - b);
        let replan = self.ctx.path_goal.is_none_or(|g| dist2(g, goal) > 0.05)
            || now - self.ctx.planned_s > REPLAN_PERIOD_S
            || (blocked_for > REPLAN_WHEN_BLOCKED_S
                && now - self.ctx.blocked_replanned_s > REPLAN_WHEN_BLOCKED_S);
        if replan && !self.ctx.at_goal && self.ctx.spin.is_none() {
            if blocked_for > 0.0 {
                self.ctx.blocked_replanned_s = now;
            }
            match self.plan_to(inp, target) {
                Ok(()) => {}
                Err(PathError::NoPath) if !self.ctx.spun => {
                    tracing::info!(%target, "no path: turning in place once while the map refreshes");
                    self.ctx.spun = true;
                    self.ctx.spin = Some((0.0, inp.pose.yaw_rad));
                }
                Err(PathError::NoPath) => {
                    return Some(Progress::Failed(format!(
                        "no way to {target}: {} (also after a full turn in place)",
                        PathError::NoPath
                    )));
                }
                Err(e) => return Some(Progress::Failed(format!("no way to {target}: {e}"))),
            }
        }
        None
    }

    /// While a turn in place runs: keeps turning until a full turn is done,
    /// then plans again.
    fn spin_in_place(&mut self, inp: &Inputs, target: &str) -> Option<Progress> {
        let (turned, last_yaw) = self.ctx.spin?;
        let now = inp.time_s;
        let turned = turned + wrap_angle_rad(inp.pose.yaw_rad - last_yaw).abs();
        // Turning is not a lack of progress.
        self.ctx.progress = (now, f64::INFINITY);
        if turned < std::f64::consts::TAU {
            self.ctx.spin = Some((turned, inp.pose.yaw_rad));
            return Some(Progress::Continue(Outputs {
                cmd_vel: Some(Twist2D {
                    linear_m_s: 0.0,
                    angular_rad_s: SPIN_RATE_RAD_S,
                }),
                ..Default::default()
            }));
        }
        self.ctx.spin = None;
        if let Err(e) = self.plan_to(inp, target) {
            return Some(Progress::Failed(format!(
                "no way to {target}: {e} (also after a full turn in place)"
            )));
        }
        None
    }

    /// Arrived where the object was thought to be within reach: the next
    /// step (pick, place) needs it within reach now, as perception sees it
    /// now; if it is not, the base aims again, a few times at most.
    fn arrived(&mut self, inp: &Inputs, target: &str, robot: [f64; 2]) -> Progress {
        if let Some(obj) = inp.world.get(target) {
            let d = (obj.position_m[0] - robot[0]).hypot(obj.position_m[1] - robot[1]);
            if !within_reach_band(d) && self.ctx.reaims < MAX_REAIMS {
                tracing::info!(
                    %target,
                    distance_m = d,
                    "arrived out of the arm's reach of the target's latest estimate: aiming again"
                );
                self.ctx.reaims += 1;
                self.ctx.goal = None;
                self.ctx.aimed_at = None;
                self.ctx.at_goal = false;
                self.ctx.path.clear();
                self.ctx.path_goal = None;
                return Progress::Continue(stop_outputs());
            }
            if !within_reach_band(d) {
                return Progress::Failed(format!(
                    "{target} is {d:.2} m away after {MAX_REAIMS} approaches, out of the arm's reach"
                ));
            }
        }
        Progress::Done(stop_outputs())
    }

    /// Whatever the path says, never drive into what the scan sees: slows
    /// `twist` to the clearance ahead, backs up once when blocked a while,
    /// and fails when blocked too long.
    fn hold_short_of_obstacles(
        &mut self,
        inp: &Inputs,
        target: &str,
        twist: &mut Twist2D,
    ) -> Option<Progress> {
        let now = inp.time_s;
        let robot = [inp.pose.x_m, inp.pose.y_m];
        if twist.linear_m_s > 0.0 {
            let free = free_distance_m(&inp.pose, inp.obstacles_m, self.robot.base_radius_m, false);
            let v_max = speed_for_clearance(free, STOP_MARGIN_M, self.nav.decel_m_s2, REACTION_S);
            if v_max < 0.02 {
                twist.linear_m_s = 0.0;
                let since = *self.ctx.blocked_since.get_or_insert(now);
                if now - since > BLOCKED_FAIL_S {
                    return Some(Progress::Failed(format!(
                        "blocked for {BLOCKED_FAIL_S:.0} s by an obstacle {free:.2} m ahead, on the way to {target}"
                    )));
                }
                if now - since > BACK_UP_AFTER_S && !self.ctx.backed_up {
                    self.ctx.backed_up = true;
                    self.ctx.back_up_from = Some(robot);
                }
            } else {
                twist.linear_m_s = twist.linear_m_s.min(v_max);
                self.ctx.blocked_since = None;
            }
        } else if self.ctx.back_up_from.is_none() {
            // Turning (onto a new path) is not being blocked.
            self.ctx.blocked_since = None;
        }
        None
    }

    /// Plans a path from the robot to the current goal over the grid. A goal
    /// inside an inflated obstacle is moved: for an object, to another side
    /// of it within the arm's reach; for a place, to the nearest free spot.
    fn plan_to(&mut self, inp: &Inputs, target: &str) -> Result<(), PathError> {
        let robot = [inp.pose.x_m, inp.pose.y_m];
        let Some(goal) = self.ctx.goal else {
            return Err(PathError::NoPath);
        };
        let Some(grid) = inp.grid else {
            self.set_path(vec![robot, goal], goal, inp.time_s);
            return Ok(());
        };
        // The area around the robot and the goal (the way round an obstacle
        // rarely strays further); the whole map when that finds no path.
        let lo = [
            robot[0].min(goal[0]) - PLAN_MARGIN_M,
            robot[1].min(goal[1]) - PLAN_MARGIN_M,
        ];
        let hi = [
            robot[0].max(goal[0]) + PLAN_MARGIN_M,
            robot[1].max(goal[1]) + PLAN_MARGIN_M,
        ];
        let radius = self.robot.base_radius_m + FOOTPRINT_PADDING_M;
        let window = Costmap::from_grid_window(grid, radius, CLEARANCE_M, lo, hi);
        match self.plan_on(&window, inp, target, goal) {
            Err(PathError::NoPath) => {
                let whole = Costmap::from_grid(grid, radius, CLEARANCE_M);
                self.plan_on(&whole, inp, target, goal)
            }
            other => other,
        }
    }

    fn plan_on(
        &mut self,
        cm: &Costmap,
        inp: &Inputs,
        target: &str,
        mut goal: [f64; 2],
    ) -> Result<(), PathError> {
        let robot = [inp.pose.x_m, inp.pose.y_m];
        if !cm.is_free(goal) {
            let moved = match (inp.world.get(target), inp.world.place(target)) {
                (Some(obj), _) => approach_goal(cm, [obj.position_m[0], obj.position_m[1]], goal),
                (None, Some(_)) => cm.nearest_free(goal, 0.15),
                (None, None) => None,
            };
            goal = moved.ok_or(PathError::GoalBlocked(goal[0], goal[1]))?;
            self.ctx.goal = Some(goal);
        }
        let path = plan_path(cm, robot, goal)?;
        self.set_path(path, goal, inp.time_s);
        Ok(())
    }

    fn set_path(&mut self, path: Vec<[f64; 2]>, goal: [f64; 2], now_s: f64) {
        // A detour (a longer way around something new) restarts the progress watch.
        let length = crate::path::path_length_m(&path);
        if length > self.ctx.progress.1 + 0.3 {
            self.ctx.progress = (now_s, length);
        }
        self.ctx.path = path;
        self.ctx.path_seg = 0;
        self.ctx.path_goal = Some(goal);
        self.ctx.planned_s = now_s;
    }

    /// The path being followed (for logging), empty outside navigation.
    pub fn current_path(&self) -> &[[f64; 2]] {
        &self.ctx.path
    }

    /// Sets the goal to stand within reach of an object at `p`, facing it.
    fn aim_at_object(&mut self, robot: [f64; 2], p: [f64; 3]) {
        // Aim (again) when the object's estimate moved, while still far enough to re-plan.
        let far = self
            .ctx
            .goal
            .is_none_or(|g| (g[0] - robot[0]).hypot(g[1] - robot[1]) > 0.3);
        let moved = self
            .ctx
            .aimed_at
            .is_none_or(|a| (a[0] - p[0]).hypot(a[1] - p[1]) > 0.03);
        if far && moved {
            let (dx, dy) = (p[0] - robot[0], p[1] - robot[1]);
            let d = dx.hypot(dy).max(1e-6);
            self.ctx.goal = Some([p[0] - REACH_M * dx / d, p[1] - REACH_M * dy / d]);
            self.ctx.aimed_at = Some(p);
        }
        self.ctx.look_at = Some([p[0], p[1]]);
    }

    /// Turns to face `obj`; returns the base-frame reach (distance) once aligned.
    fn align(&mut self, inp: &Inputs, obj: &ObservedObject) -> Result<Option<f64>, String> {
        match face(&inp.pose, [obj.position_m[0], obj.position_m[1]], &self.nav) {
            NavOutcome::Arrived => Ok(Some(
                (obj.position_m[0] - inp.pose.x_m).hypot(obj.position_m[1] - inp.pose.y_m),
            )),
            NavOutcome::Moving(_)
                if inp.time_s - self.ctx.stage_started_s > ARM_STAGE_TIMEOUT_S =>
            {
                Err(format!("could not turn to face {}", obj.id))
            }
            NavOutcome::Moving(_) => Ok(None),
        }
    }

    fn arm_at(&self, inp: &Inputs) -> bool {
        match (self.ctx.arm_goal, inp.arm_q) {
            (Some(goal), Some(q)) => (0..3).all(|i| (goal[i] - q[i]).abs() < JOINT_TOLERANCE_RAD),
            _ => false,
        }
    }

    fn stage_timed_out(&self, inp: &Inputs) -> bool {
        inp.time_s - self.ctx.stage_started_s > ARM_STAGE_TIMEOUT_S
    }

    fn set_arm(&mut self, q: ArmJoints) -> Outputs {
        self.ctx.arm_goal = Some(q);
        Outputs {
            cmd_vel: Some(Twist2D::default()),
            arm_target: Some(q),
            gripper_target_m: self.ctx.gripper_goal,
        }
    }

    fn hold(&self) -> Outputs {
        Outputs {
            cmd_vel: Some(Twist2D::default()),
            arm_target: self.ctx.arm_goal,
            gripper_target_m: self.ctx.gripper_goal,
        }
    }

    fn pick(&mut self, inp: &Inputs, object: &str) -> Progress {
        let Some(obj) = inp.world.get(object).cloned() else {
            return self.missing(inp, object);
        };
        let arm = self.robot.arm.clone();
        let open = arm.gripper_max_opening_m;
        match self.ctx.stage {
            0 => match self.align(inp, &obj) {
                Err(e) => Progress::Failed(e),
                Ok(None) => {
                    match face(&inp.pose, [obj.position_m[0], obj.position_m[1]], &self.nav) {
                        NavOutcome::Moving(t) => Progress::Continue(Outputs {
                            cmd_vel: Some(t),
                            ..Default::default()
                        }),
                        NavOutcome::Arrived => Progress::Continue(stop_outputs()),
                    }
                }
                Ok(Some(reach)) => {
                    let z = obj.position_m[2];
                    let pre = arm.solve_top_down(reach, z + PRE_GRASP_HEIGHT_M);
                    let grasp = arm.solve_top_down(reach, z);
                    match (pre, grasp) {
                        (Ok(pre), Ok(_)) => {
                            self.ctx.gripper_goal = Some(open);
                            self.next_stage(inp.time_s);
                            Progress::Continue(self.set_arm(pre))
                        }
                        (Err(e), _) | (_, Err(e)) => Progress::Failed(format!(
                            "{object} is out of the arm's reach ({reach:.2} m away): {e}"
                        )),
                    }
                }
            },
            1 => {
                let opened = inp.gripper_m.is_some_and(|g| g > open - 0.005);
                if self.arm_at(inp) && opened {
                    let reach =
                        (obj.position_m[0] - inp.pose.x_m).hypot(obj.position_m[1] - inp.pose.y_m);
                    match arm.solve_top_down(reach, obj.position_m[2]) {
                        Ok(q) => {
                            self.next_stage(inp.time_s);
                            Progress::Continue(self.set_arm(q))
                        }
                        Err(e) => Progress::Failed(format!("cannot reach down to {object}: {e}")),
                    }
                } else if self.stage_timed_out(inp) {
                    Progress::Failed("the arm did not reach the pre-grasp pose".into())
                } else {
                    Progress::Continue(self.hold())
                }
            }
            2 => {
                if self.arm_at(inp) {
                    self.ctx.gripper_goal = Some(0.0);
                    self.ctx.gripper_prev = (inp.time_s, inp.gripper_m.unwrap_or(open));
                    self.next_stage(inp.time_s);
                    Progress::Continue(self.hold())
                } else if self.stage_timed_out(inp) {
                    Progress::Failed("the arm did not reach the grasp pose".into())
                } else {
                    Progress::Continue(self.hold())
                }
            }
            3 => {
                // Closed once the fingers stop moving for 0.3 s.
                let g = inp.gripper_m.unwrap_or(open);
                if (g - self.ctx.gripper_prev.1).abs() > 1e-4 {
                    self.ctx.gripper_prev = (inp.time_s, g);
                    return Progress::Continue(self.hold());
                }
                if inp.time_s - self.ctx.gripper_prev.0 < 0.3 {
                    return if self.stage_timed_out(inp) {
                        Progress::Failed("the gripper did not settle".into())
                    } else {
                        Progress::Continue(self.hold())
                    };
                }
                if g < GRIPPER_EMPTY_M {
                    self.ctx.gripper_goal = Some(open);
                    return Progress::Failed(format!(
                        "grasp failed: the gripper closed on nothing where {object} was expected"
                    ));
                }
                self.next_stage(inp.time_s);
                Progress::Continue(self.set_arm(arm.stow()))
            }
            _ => {
                if self.arm_at(inp) {
                    if inp.gripper_m.is_some_and(|g| g < GRIPPER_EMPTY_M) {
                        return Progress::Failed(format!(
                            "{object} slipped out of the gripper while lifting"
                        ));
                    }
                    Progress::Done(self.hold())
                } else if self.stage_timed_out(inp) {
                    Progress::Failed("the arm did not return to the carry pose".into())
                } else {
                    Progress::Continue(self.hold())
                }
            }
        }
    }

    fn place(&mut self, inp: &Inputs, object: &str, target: &str) -> Progress {
        let Some(bin) = inp.world.get(target).cloned() else {
            return self.missing(inp, target);
        };
        let arm = self.robot.arm.clone();
        let open = arm.gripper_max_opening_m;
        match self.ctx.stage {
            0 => {
                if inp.gripper_m.is_none_or(|g| g < GRIPPER_EMPTY_M) {
                    return Progress::Failed(format!("not holding {object}"));
                }
                self.ctx.gripper_goal = inp.gripper_m;
                match self.align(inp, &bin) {
                    Err(e) => Progress::Failed(e),
                    Ok(None) => {
                        match face(&inp.pose, [bin.position_m[0], bin.position_m[1]], &self.nav) {
                            NavOutcome::Moving(t) => Progress::Continue(Outputs {
                                cmd_vel: Some(t),
                                ..Default::default()
                            }),
                            NavOutcome::Arrived => Progress::Continue(stop_outputs()),
                        }
                    }
                    Ok(Some(reach)) => {
                        let top = bin.position_m[2] + bin.size_or_nominal_m()[2] / 2.0;
                        let held_half = 0.025;
                        match arm.solve_top_down(reach, top + held_half + DROP_CLEARANCE_M) {
                            Ok(q) => {
                                self.next_stage(inp.time_s);
                                Progress::Continue(self.set_arm(q))
                            }
                            Err(e) => Progress::Failed(format!(
                                "{target} is out of the arm's reach ({reach:.2} m): {e}"
                            )),
                        }
                    }
                }
            }
            1 => {
                if self.arm_at(inp) {
                    self.ctx.gripper_goal = Some(open);
                    self.next_stage(inp.time_s);
                    Progress::Continue(self.hold())
                } else if self.stage_timed_out(inp) {
                    Progress::Failed("the arm did not reach the drop pose".into())
                } else {
                    Progress::Continue(self.hold())
                }
            }
            2 => {
                if inp.gripper_m.is_some_and(|g| g > open - 0.005) {
                    self.next_stage(inp.time_s);
                    Progress::Continue(self.set_arm(arm.stow()))
                } else if self.stage_timed_out(inp) {
                    Progress::Failed("the gripper did not open".into())
                } else {
                    Progress::Continue(self.hold())
                }
            }
            _ => {
                if self.arm_at(inp) {
                    Progress::Done(self.hold())
                } else if self.stage_timed_out(inp) {
                    Progress::Failed("the arm did not return to the carry pose".into())
                } else {
                    Progress::Continue(self.hold())
                }
            }
        }
    }

    /// `look_around`: one full turn in place, so that perception sees what
    /// is around; done when the turn is complete.
    fn look_around(&mut self, inp: &Inputs) -> Progress {
        let d = wrap_angle_rad(inp.pose.yaw_rad - self.ctx.last_yaw);
        self.ctx.last_yaw = inp.pose.yaw_rad;
        self.ctx.turned_rad += d.abs();
        if self.ctx.turned_rad > std::f64::consts::TAU {
            return Progress::Done(stop_outputs());
        }
        if inp.time_s - self.ctx.started_s > LOOK_FOR_TIMEOUT_S {
            return Progress::Failed(format!(
                "the turn was not complete after {LOOK_FOR_TIMEOUT_S:.0} s"
            ));
        }
        Progress::Continue(Outputs {
            cmd_vel: Some(Twist2D {
                linear_m_s: 0.0,
                angular_rad_s: 0.5,
            }),
            ..Default::default()
        })
    }

    fn look_for(&mut self, inp: &Inputs, object: &str) -> Progress {
        if inp.world.get(object).is_some() {
            return Progress::Done(stop_outputs());
        }
        let d = wrap_angle_rad(inp.pose.yaw_rad - self.ctx.last_yaw);
        self.ctx.last_yaw = inp.pose.yaw_rad;
        self.ctx.turned_rad += d.abs();
        if self.ctx.turned_rad > std::f64::consts::TAU
            || inp.time_s - self.ctx.started_s > LOOK_FOR_TIMEOUT_S
        {
            return Progress::Failed(format!("{object} was not seen after a full turn"));
        }
        Progress::Continue(Outputs {
            cmd_vel: Some(Twist2D {
                linear_m_s: 0.0,
                angular_rad_s: 0.5,
            }),
            ..Default::default()
        })
    }
}

fn dist2(a: [f64; 2], b: [f64; 2]) -> f64 {
    (b[0] - a[0]).hypot(b[1] - a[1])
}

/// How often `navigate_to` an object aims again on arrival (see [`within_reach_band`]).
pub const MAX_REAIMS: u8 = 3;
/// How much nearer than [`REACH_M`] the base may stand from an object's
/// centre and still reach it from above.
pub const MIN_REACH_SLACK_M: f64 = 0.12;

/// Whether a base this far from an object's centre (metres, horizontally)
/// can pick it or place into it: from [`MIN_REACH_SLACK_M`] nearer than
/// the nominal reach to [`MAX_EXTRA_REACH_M`] (and 2 cm of arrival
/// tolerance) further.
pub fn within_reach_band(d: f64) -> bool {
    (REACH_M - MIN_REACH_SLACK_M..=REACH_M + MAX_EXTRA_REACH_M + 0.02).contains(&d)
}

/// How much further than [`REACH_M`] the base may stand from an object when
/// the nominal spot is taken: the arm still reaches (top-down IK) at
/// `REACH_M + MAX_EXTRA_REACH_M` for objects on the table and bins.
pub const MAX_EXTRA_REACH_M: f64 = 0.10;

/// A free spot within the arm's reach of `object`, as close as possible in
/// direction to `preferred` (checked every 15 degrees around the object), at
/// the nominal reach or up to [`MAX_EXTRA_REACH_M`] further.
fn approach_goal(cm: &Costmap, object: [f64; 2], preferred: [f64; 2]) -> Option<[f64; 2]> {
    let base = (preferred[1] - object[1]).atan2(preferred[0] - object[0]);
    (0..=12)
        .flat_map(|k| [k, -k])
        .map(|k| base + f64::from(k) * 15f64.to_radians())
        .flat_map(|a| {
            [0.0, 0.5, 1.0].map(|f| {
                let r = REACH_M + f * MAX_EXTRA_REACH_M;
                [object[0] + r * a.cos(), object[1] + r * a.sin()]
            })
        })
        .find(|&p| cm.is_free(p))
}

fn stop_outputs() -> Outputs {
    Outputs {
        cmd_vel: Some(Twist2D::default()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosetta_common::status::StepState;
    use rosetta_common::{Color, ObjectKind, ObservedObject};

    fn plan(steps: Vec<Skill>) -> ValidPlan {
        ValidPlan::new(steps).unwrap()
    }

    fn world_with_cube() -> WorldModel {
        WorldModel {
            stamp_s: 0.0,
            frame_id: "odom".into(),
            places: Vec::new(),
            objects: vec![ObservedObject {
                id: "red_cube".into(),
                kind: ObjectKind::Cube,
                color: Color::Red,
                position_m: [2.0, 0.0, 0.425],
                last_seen_s: 0.0,
                observations: 1,
                position_sigma_m: 0.0,
                confidence: 1.0,
                size_m: [0.0; 3],
            }],
        }
    }

    fn tick(e: &mut SkillRunner, t: f64, world: &WorldModel) -> Outputs {
        e.tick(&Inputs::basic(t, Pose2D::default(), world))
    }

    #[test]
    fn a_step_waits_briefly_for_an_object_the_map_does_not_have_yet() {
        let mut e = SkillRunner::new(RobotDescription::default());
        e.start(
            1,
            plan(vec![Skill::NavigateTo {
                target: "red_cube".into(),
            }]),
            0.0,
        );
        let empty = WorldModel::default();
        for i in 0..100 {
            let out = tick(&mut e, i as f64 * 0.02, &empty);
            assert_eq!(
                out.cmd_vel,
                Some(Twist2D::default()),
                "must hold still while waiting"
            );
        }
        assert_eq!(e.task(), TaskState::Running);
        // The map catches up: the robot starts driving towards the cube.
        let out = tick(&mut e, 2.1, &world_with_cube());
        assert!(out
            .cmd_vel
            .is_some_and(|t| t.linear_m_s > 0.0 || t.angular_rad_s != 0.0));
        assert_eq!(e.task(), TaskState::Running);
    }

    /// Something stands in the way and stays: the base stops short of it,
    /// backs up once after a while (recovery), tries again, and then fails
    /// the step with the reason, without ever touching it.
    #[test]
    fn a_base_blocked_for_good_backs_up_once_then_fails_with_the_reason() {
        let robot = RobotDescription::default();
        let radius = robot.base_radius_m;
        let mut e = SkillRunner::new(robot);
        let mut world = WorldModel::default();
        world.places.push(rosetta_common::Place {
            id: "far".into(),
            description: String::new(),
            pose: Pose2D::new(3.0, 0.0, 0.0),
        });
        e.start(
            1,
            plan(vec![Skill::NavigateTo {
                target: "far".into(),
            }]),
            0.0,
        );
        // No map: the path is the straight line, through the obstacle.
        let wall: Vec<[f64; 2]> = (-4..=4).map(|k| [1.0, f64::from(k) * 0.05]).collect();
        let mut pose = Pose2D::default();
        let dt = 0.02;
        let mut t = 0.0;
        let (mut reversed_m, mut nearest_m) = (0.0, f64::INFINITY);
        while e.task() == TaskState::Running && t < 60.0 {
            let mut inp = Inputs::basic(t, pose, &world);
            inp.obstacles_m = &wall;
            let out = e.tick(&inp);
            if let Some(v) = out.cmd_vel {
                if v.linear_m_s < 0.0 {
                    reversed_m += -v.linear_m_s * dt;
                }
                pose.x_m += v.linear_m_s * pose.yaw_rad.cos() * dt;
                pose.y_m += v.linear_m_s * pose.yaw_rad.sin() * dt;
                pose.yaw_rad = rosetta_common::wrap_angle_rad(pose.yaw_rad + v.angular_rad_s * dt);
            }
            nearest_m = wall
                .iter()
                .map(|p| (p[0] - pose.x_m).hypot(p[1] - pose.y_m) - radius)
                .fold(nearest_m, f64::min);
            t += dt;
        }
        let st = e.status();
        assert_eq!(e.task(), TaskState::Failed, "{}", st.message);
        assert!(
            st.message.contains("blocked for 5 s") && st.message.contains("far"),
            "{}",
            st.message
        );
        assert!(
            (reversed_m - BACK_UP_M).abs() < 0.03,
            "backed up {reversed_m:.3} m, not once by {BACK_UP_M} m"
        );
        assert!(nearest_m > 0.0, "touched the obstacle ({nearest_m:.3} m)");
        assert!(t < 30.0, "took {t:.1} s");
    }

    #[test]
    fn navigate_to_a_named_place_ends_on_its_pose() {
        let mut e = SkillRunner::new(RobotDescription::default());
        let mut world = WorldModel::default();
        world.places.push(rosetta_common::Place {
            id: "dock".into(),
            description: String::new(),
            pose: Pose2D::new(-1.5, 0.5, std::f64::consts::FRAC_PI_2),
        });
        e.start(
            1,
            plan(vec![Skill::NavigateTo {
                target: "dock".into(),
            }]),
            0.0,
        );
        // A unicycle that follows the commanded twist exactly.
        let mut pose = Pose2D::default();
        let dt = 0.02;
        let mut t = 0.0;
        // The progress the status reports: the distance still to go.
        let mut to_go_m = Vec::new();
        while e.task() == TaskState::Running && t < 60.0 {
            let out = e.tick(&Inputs::basic(t, pose, &world));
            if let Some(p) = e.status().progress {
                if let Some(m) = p.strip_suffix(" m to go") {
                    to_go_m.push(m.parse::<f64>().unwrap());
                }
            }
            if let Some(v) = out.cmd_vel {
                pose.x_m += v.linear_m_s * pose.yaw_rad.cos() * dt;
                pose.y_m += v.linear_m_s * pose.yaw_rad.sin() * dt;
                pose.yaw_rad = rosetta_common::wrap_angle_rad(pose.yaw_rad + v.angular_rad_s * dt);
            }
            t += dt;
        }
        assert_eq!(e.task(), TaskState::Succeeded, "{}", e.status().message);
        assert_eq!(e.status().progress, None, "no step runs");
        let first = to_go_m.first().copied().unwrap_or_default();
        assert!((first - 1.5f64.hypot(0.5)).abs() < 0.2, "{to_go_m:?}");
        assert!(to_go_m.last().is_some_and(|&m| m < 0.1), "{to_go_m:?}");
        assert!(
            to_go_m.windows(2).all(|w| w[1] <= w[0] + 1e-6),
            "{to_go_m:?}"
        );
        assert!((pose.x_m + 1.5).hypot(pose.y_m - 0.5) < 0.1, "{pose:?}");
        let heading = rosetta_common::wrap_angle_rad(pose.yaw_rad - std::f64::consts::FRAC_PI_2);
        assert!(heading.abs() < 0.1, "{pose:?}");
    }

    #[test]
    fn an_object_that_never_appears_fails_the_step_with_a_reason() {
        let mut e = SkillRunner::new(RobotDescription::default());
        e.start(
            1,
            plan(vec![Skill::Pick {
                object: "red_cube".into(),
            }]),
            0.0,
        );
        let empty = WorldModel::default();
        let mut t = 0.0;
        while e.task() == TaskState::Running && t < 10.0 {
            tick(&mut e, t, &empty);
            t += 0.02;
        }
        assert_eq!(e.task(), TaskState::Failed);
        assert!((WORLD_GRACE_S..WORLD_GRACE_S + 0.1).contains(&t));
        assert!(e
            .status()
            .message
            .contains("red_cube is not in the world model"));
    }

    /// A plan's `stop` commands zero speed at once, and is done only once the
    /// base has come to rest, not while it brakes.
    #[test]
    fn stop_is_done_when_the_base_is_at_rest() {
        let mut e = SkillRunner::new(RobotDescription::default());
        let w = WorldModel::default();
        e.start(1, plan(vec![Skill::Stop]), 0.0);
        // The base brakes from 0.4 m/s at 1 m/s^2: 0.4 s to rest.
        let (dt, mut v, mut pose, mut t) = (0.02, 0.4f64, Pose2D::default(), 0.0);
        let mut done_at = None;
        while t < 3.0 && done_at.is_none() {
            let out = e.tick(&Inputs::basic(t, pose, &w));
            assert_eq!(out.cmd_vel.map(|c| c.linear_m_s), Some(0.0), "at {t:.2} s");
            if e.task() != TaskState::Running {
                done_at = Some((t, v));
            }
            v = (v - dt).max(0.0);
            pose.x_m += v * dt;
            t += dt;
        }
        let (t, v) = done_at.expect("the stop ends");
        assert_eq!(e.task(), TaskState::Stopped);
        assert_eq!(v, 0.0, "done while still moving");
        // (The last millimetre of braking counts as rest.)
        assert!(
            (0.4 + REST_S - 0.05..0.4 + REST_S + 0.1).contains(&t),
            "{t}"
        );
        // A base that keeps moving fails the stop, with a reason.
        let mut e = SkillRunner::new(RobotDescription::default());
        e.start(2, plan(vec![Skill::Stop]), 0.0);
        let mut pose = Pose2D::default();
        let mut t = 0.0;
        while e.task() == TaskState::Running && t < 10.0 {
            e.tick(&Inputs::basic(t, pose, &w));
            pose.x_m += 0.01;
            t += 0.02;
        }
        assert_eq!(e.task(), TaskState::Failed);
        assert!(
            e.status().message.contains("did not come to rest"),
            "{}",
            e.status().message
        );
    }

    #[test]
    fn stop_preempts_a_running_plan() {
        let mut e = SkillRunner::new(RobotDescription::default());
        let w = world_with_cube();
        e.start(
            1,
            plan(vec![Skill::NavigateTo {
                target: "red_cube".into(),
            }]),
            0.0,
        );
        tick(&mut e, 0.0, &w);
        let out = e.stop("operator stop");
        assert_eq!(out.cmd_vel, Some(Twist2D::default()));
        assert_eq!(e.task(), TaskState::Stopped);
        assert_eq!(e.status().steps[0].state, StepState::Cancelled);
        // Nothing more is commanded after a stop.
        assert_eq!(tick(&mut e, 0.1, &w), Outputs::default());
    }
}
