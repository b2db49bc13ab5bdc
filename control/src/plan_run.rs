//! The bookkeeping of one plan attempt: which step runs, how each step ended,
//! and the task's state. Pure: no ROS, no robot.
//!
//! Both carriers of plans use it: the in-process [`crate::SkillRunner`] (the
//! simulation benchmarks and closed-loop tests), and the executive node,
//! which sends each step to control's `/rosetta/skill` action.

use rosetta_common::goal::{self, Evidence, Goal, GoalCheck};
use rosetta_common::status::{StepState, StepStatus, TaskState, TaskStatus};
use rosetta_common::{Pose2D, Skill, ValidPlan};

/// One attempt at a command's plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRun {
    command_id: u64,
    attempt: u32,
    steps: Vec<StepStatus>,
    current: usize,
    task: TaskState,
    message: String,
    /// What the command asked for, checked once the last step succeeded.
    goals: Vec<Goal>,
    checks: Vec<GoalCheck>,
    /// What the plan's own steps established (for objects not seen since).
    evidence: Evidence,
    /// When the last step succeeded, for a plan whose goal is still to be checked.
    steps_done_s: Option<f64>,
}

impl Default for PlanRun {
    fn default() -> Self {
        Self {
            command_id: 0,
            attempt: 1,
            steps: Vec::new(),
            current: 0,
            task: TaskState::Idle,
            message: String::new(),
            goals: Vec::new(),
            checks: Vec::new(),
            evidence: Evidence::default(),
            steps_done_s: None,
        }
    }
}

impl PlanRun {
    /// Starts a plan: its first step runs from `now_s`. An empty plan has
    /// nothing to do and has succeeded.
    pub fn start(command_id: u64, attempt: u32, plan: ValidPlan, now_s: f64) -> Self {
        let mut run = Self {
            command_id,
            attempt,
            steps: plan
                .into_steps()
                .into_iter()
                .enumerate()
                .map(|(index, skill)| StepStatus {
                    index,
                    skill,
                    state: StepState::Pending,
                    started_s: None,
                    finished_s: None,
                })
                .collect(),
            ..Self::default()
        };
        if run.steps.is_empty() {
            run.task = TaskState::Succeeded;
            run.message = "empty plan".into();
        } else {
            run.task = TaskState::Running;
            run.begin(now_s);
        }
        run
    }

    /// [`Self::start`], for a plan that carries the command's goal conditions.
    pub fn start_with_goals(
        command_id: u64,
        attempt: u32,
        plan: ValidPlan,
        goals: Vec<Goal>,
        now_s: f64,
    ) -> Self {
        let mut run = Self::start(command_id, attempt, plan, now_s);
        run.goals = goals;
        run
    }

    /// The sim time when every step had succeeded, while the goal
    /// conditions wait for [`Self::check_goals`] (the task still runs).
    pub fn awaits_goal_check(&self) -> Option<f64> {
        self.steps_done_s
            .filter(|_| self.task == TaskState::Running && self.checks.is_empty())
    }

    /// After the last step: checks the goal conditions against the world
    /// model (and the robot's pose, in its frame). A goal that does not hold
    /// fails the task with the reason, which the planner answers with a new
    /// plan; "succeeded" then means the goal holds.
    pub fn check_goals(&mut self, world: &rosetta_common::WorldModel, robot: Option<&Pose2D>) {
        if self.awaits_goal_check().is_none() {
            return;
        }
        self.steps_done_s = None;
        let (checks, failed) = goal::check_all(&self.goals, world, robot, &self.evidence);
        self.checks = checks;
        match failed {
            Some(why) => {
                self.task = TaskState::Failed;
                self.message = why;
            }
            None => {
                self.task = TaskState::Succeeded;
                let held: Vec<String> = self.goals.iter().map(Goal::describe).collect();
                self.message = format!(
                    "all steps succeeded and the goal holds: {}",
                    held.join(", ")
                );
            }
        }
    }

    /// The goal checks made so far.
    pub fn goal_checks(&self) -> &[GoalCheck] {
        &self.checks
    }

    /// A refused command: nothing runs.
    pub fn refused(command_id: u64, reason: &str) -> Self {
        Self {
            command_id,
            task: TaskState::Failed,
            message: format!("refused: {reason}"),
            ..Self::default()
        }
    }

    /// A plan that was not started (the e-stop is engaged): it ends
    /// `Stopped`, which the planner does not re-plan.
    pub fn held_off(command_id: u64, attempt: u32, reason: &str) -> Self {
        Self {
            command_id,
            attempt,
            task: TaskState::Stopped,
            message: reason.to_string(),
            ..Self::default()
        }
    }

    pub fn command_id(&self) -> u64 {
        self.command_id
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    pub fn task(&self) -> TaskState {
        self.task
    }

    pub fn is_running(&self) -> bool {
        self.task == TaskState::Running
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The running step: its index and skill.
    pub fn current(&self) -> Option<(usize, &Skill)> {
        if !self.is_running() {
            return None;
        }
        self.steps.get(self.current).map(|s| (s.index, &s.skill))
    }

    /// When the running step started.
    pub fn current_started_s(&self) -> Option<f64> {
        self.steps.get(self.current).and_then(|s| s.started_s)
    }

    /// The running step succeeded: the next one starts, or the task has
    /// succeeded. A `stop` step ends the task `Stopped`.
    pub fn step_succeeded(&mut self, now_s: f64) {
        let Some((_, skill)) = self.current() else {
            return;
        };
        let was_stop = matches!(skill, Skill::Stop);
        if let Skill::Place { object, target } = skill {
            let placed = (object.clone(), target.clone(), now_s);
            self.evidence.placed.push(placed);
        }
        self.finish(now_s, StepState::Succeeded);
        if was_stop {
            self.task = TaskState::Stopped;
            self.message = "stopped on command".into();
            return;
        }
        self.current += 1;
        if self.current >= self.steps.len() && !self.goals.is_empty() {
            // Not done yet: done is when the goal holds ([`Self::check_goals`]).
            self.steps_done_s = Some(now_s);
            self.message = "all steps succeeded; checking the goal".into();
        } else if self.current >= self.steps.len() {
            self.task = TaskState::Succeeded;
            self.message = "all steps succeeded".into();
        } else {
            self.begin(now_s);
        }
    }

    /// The running step failed: the task has failed (the planner may plan again).
    pub fn step_failed(&mut self, now_s: f64, reason: &str) {
        let Some((_, skill)) = self.current() else {
            return;
        };
        let what = skill.describe();
        self.finish(
            now_s,
            StepState::Failed {
                reason: reason.to_string(),
            },
        );
        self.task = TaskState::Failed;
        self.message = format!("{what} failed: {reason}");
    }

    /// Stops the task now; the running step is cancelled.
    pub fn stop(&mut self, now_s: f64, reason: &str) {
        if self.is_running() {
            self.finish(now_s, StepState::Cancelled);
            self.task = TaskState::Stopped;
            self.message = reason.to_string();
        }
    }

    /// The status that [`rosetta_common::topics::STATUS`] carries.
    pub fn status(&self, stamp_s: f64, robot_pose: Pose2D) -> TaskStatus {
        TaskStatus {
            command_id: self.command_id,
            attempt: self.attempt,
            task: self.task,
            steps: self.steps.clone(),
            message: self.message.clone(),
            progress: None,
            stamp_s,
            robot_pose,
            control_loop: None,
            goals: self.checks.clone(),
        }
    }

    fn begin(&mut self, now_s: f64) {
        if let Some(s) = self.steps.get_mut(self.current) {
            s.state = StepState::Running;
            s.started_s = Some(now_s);
        }
    }

    fn finish(&mut self, now_s: f64, state: StepState) {
        if let Some(s) = self.steps.get_mut(self.current) {
            s.state = state;
            s.finished_s = Some(now_s);
        }
    }
}

/// The time limit (sim seconds) given to one step run as a skill goal. The
/// skills' own limits ([`crate::skill_runner`]) are tighter; this bounds a step
/// that hangs for any other reason.
pub fn step_timeout_s(skill: &Skill) -> f64 {
    match skill {
        Skill::NavigateTo { .. } => crate::skill_runner::NAVIGATE_TIMEOUT_S + 30.0,
        Skill::Pick { .. } | Skill::Place { .. } => 8.0 * crate::skill_runner::ARM_STAGE_TIMEOUT_S,
        Skill::LookFor { .. } | Skill::LookAround => crate::skill_runner::LOOK_FOR_TIMEOUT_S + 15.0,
        // A step of a ValidPlan waits within 0..=MAX_WAIT_S.
        Skill::Wait { seconds } => seconds + 10.0,
        Skill::Say { .. } | Skill::Stop => 10.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> ValidPlan {
        valid(vec![
            Skill::NavigateTo {
                target: "red_cube".into(),
            },
            Skill::Pick {
                object: "red_cube".into(),
            },
        ])
    }

    fn valid(steps: Vec<Skill>) -> ValidPlan {
        ValidPlan::new(steps).unwrap()
    }

    #[test]
    fn steps_run_in_order_and_the_task_succeeds_after_the_last() {
        let mut run = PlanRun::start(3, 1, plan(), 1.0);
        assert_eq!(run.current().map(|c| c.0), Some(0));
        run.step_succeeded(2.0);
        assert_eq!(run.current().map(|c| c.0), Some(1));
        assert_eq!(run.current_started_s(), Some(2.0));
        run.step_succeeded(3.0);
        assert_eq!(run.task(), TaskState::Succeeded);
        assert_eq!(run.current(), None);
        let st = run.status(3.0, Pose2D::default());
        assert!(st.steps.iter().all(|s| s.state == StepState::Succeeded));
        assert_eq!(st.steps[1].finished_s, Some(3.0));
    }

    #[test]
    fn a_failed_step_fails_the_task_and_names_the_step() {
        let mut run = PlanRun::start(3, 2, plan(), 0.0);
        run.step_failed(1.0, "no path");
        assert_eq!(run.task(), TaskState::Failed);
        assert_eq!(run.message(), "navigate_to(red_cube) failed: no path");
        assert_eq!(run.status(1.0, Pose2D::default()).attempt, 2);
        // Nothing runs any more: later results change nothing.
        run.step_succeeded(2.0);
        assert_eq!(run.task(), TaskState::Failed);
    }

    #[test]
    fn stop_cancels_the_running_step_and_a_stop_step_ends_stopped() {
        let mut run = PlanRun::start(3, 1, plan(), 0.0);
        run.stop(0.5, "e-stop engaged");
        let st = run.status(0.5, Pose2D::default());
        assert_eq!(st.task, TaskState::Stopped);
        assert_eq!(st.steps[0].state, StepState::Cancelled);
        assert_eq!(st.steps[1].state, StepState::Pending);

        let mut run = PlanRun::start(4, 1, ValidPlan::stop(), 0.0);
        run.step_succeeded(0.1);
        assert_eq!(run.task(), TaskState::Stopped);
        assert_eq!(run.message(), "stopped on command");
    }

    #[test]
    fn empty_refused_and_held_off_plans_run_nothing() {
        assert_eq!(
            PlanRun::start(1, 1, ValidPlan::default(), 0.0).task(),
            TaskState::Succeeded
        );
        let r = PlanRun::refused(2, "unknown object");
        assert_eq!(
            (r.task(), r.message()),
            (TaskState::Failed, "refused: unknown object")
        );
        let h = PlanRun::held_off(3, 1, "e-stop engaged");
        assert_eq!(h.task(), TaskState::Stopped);
        assert!(h.current().is_none());
    }

    fn world_with_cube_at(p: [f64; 3], seen_s: f64) -> rosetta_common::WorldModel {
        use rosetta_common::{Color, ObjectKind, ObservedObject};
        let o = |id: &str, kind, position_m, last_seen_s| ObservedObject {
            id: id.into(),
            kind,
            color: Color::Red,
            position_m,
            last_seen_s,
            observations: 3,
            position_sigma_m: 0.0,
            confidence: 1.0,
            size_m: [0.0; 3],
        };
        rosetta_common::WorldModel {
            stamp_s: 20.0,
            frame_id: "odom".into(),
            objects: vec![
                o("red_cube", ObjectKind::Cube, p, seen_s),
                o("blue_bin", ObjectKind::Bin, [0.0, 1.6, 0.125], 19.0),
            ],
            places: vec![],
        }
    }

    fn put_red_in_blue() -> (Vec<Skill>, Vec<Goal>) {
        let mut steps = plan().into_steps();
        steps.push(Skill::NavigateTo {
            target: "blue_bin".into(),
        });
        steps.push(Skill::Place {
            object: "red_cube".into(),
            target: "blue_bin".into(),
        });
        let goals = vec![Goal::InContainer {
            object: "red_cube".into(),
            container: "blue_bin".into(),
        }];
        (steps, goals)
    }

    #[test]
    fn a_plan_whose_goal_does_not_hold_after_its_steps_fails_with_the_reason() {
        let (steps, goals) = put_red_in_blue();
        let mut run = PlanRun::start_with_goals(5, 1, valid(steps), goals, 0.0);
        for t in 1..=4 {
            run.step_succeeded(t as f64);
        }
        assert_eq!(run.awaits_goal_check(), Some(4.0));
        // Until checked, the task runs: no status may say it succeeded.
        assert_eq!(run.task(), TaskState::Running);
        assert_eq!(run.current(), None);
        // Perception sees the cube back on the table after the place.
        run.check_goals(&world_with_cube_at([1.42, -0.36, 0.425], 10.0), None);
        assert_eq!(run.task(), TaskState::Failed);
        assert!(
            run.message().contains("red_cube is at") && run.message().contains("not in blue_bin"),
            "{}",
            run.message()
        );
        let st = run.status(10.0, Pose2D::default());
        assert_eq!(st.goals.len(), 1);
        assert!(!st.goals[0].holds);
    }

    #[test]
    fn a_plan_whose_goal_holds_succeeds_and_says_so() {
        let (steps, goals) = put_red_in_blue();
        let mut run = PlanRun::start_with_goals(5, 1, valid(steps), goals, 0.0);
        for t in 1..=4 {
            run.step_succeeded(t as f64);
        }
        run.check_goals(&world_with_cube_at([0.02, 1.61, 0.05], 10.0), None);
        assert_eq!(run.task(), TaskState::Succeeded);
        assert!(run.message().contains("goal holds"), "{}", run.message());
        assert!(run.goal_checks().iter().all(|c| c.holds));
        // Checked once: a later world changes nothing.
        run.check_goals(&world_with_cube_at([1.42, -0.36, 0.425], 30.0), None);
        assert_eq!(run.task(), TaskState::Succeeded);
    }

    #[test]
    fn every_skill_has_a_finite_step_timeout_above_its_own_limits() {
        for s in plan().into_steps().into_iter().chain([
            Skill::Wait {
                seconds: rosetta_common::plan::MAX_WAIT_S,
            },
            Skill::Stop,
            Skill::LookFor { object: "x".into() },
        ]) {
            let t = step_timeout_s(&s);
            assert!(t.is_finite() && t > 0.0, "{s:?}: {t}");
        }
        assert!(
            step_timeout_s(&Skill::NavigateTo { target: "x".into() })
                > crate::skill_runner::NAVIGATE_TIMEOUT_S
        );
    }
}
