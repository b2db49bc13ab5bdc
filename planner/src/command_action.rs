//! The command interface for other programs: one `ExecuteCommand` action goal
//! per command. This module is the goal's bookkeeping, free of ROS: it reads
//! the plans the planner publishes and the statuses the executive publishes,
//! and says what feedback to send and when the goal is over.

use rosetta_common::plan::{PlanMessage, PlanOutcome};
use rosetta_common::status::{CommandOutcome, StepState, TaskState, TaskStatus};
use rosetta_common::Skill;

/// The goal's feedback, field for field as in `ExecuteCommand.action`.
#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    pub command_id: u64,
    pub attempt: u32,
    pub steps: Vec<String>,
    /// The running step; -1 while planning or before the first step.
    pub current_step: i32,
    pub task_state: String,
    pub message: String,
}

/// The goal's result, field for field as in `ExecuteCommand.action`.
#[derive(Debug, Clone, PartialEq)]
pub struct GoalResult {
    pub outcome: CommandOutcome,
    pub message: String,
    pub attempts: u32,
    pub plan_json: String,
    pub report_json: String,
}

impl GoalResult {
    pub fn success(&self) -> bool {
        self.outcome == CommandOutcome::Succeeded
    }
}

/// What a goal does after an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Nothing new for this goal.
    Nothing,
    Feedback(Feedback),
    Done(GoalResult),
}

/// One goal's view of the command it carries.
#[derive(Debug, Clone)]
pub struct GoalTracker {
    command_id: u64,
    /// The attempt of the latest plan (0 before the first plan).
    attempt: u32,
    max_attempts: u32,
    plan: Option<PlanMessage>,
    status: Option<TaskStatus>,
    last_feedback: Option<Feedback>,
}

impl GoalTracker {
    pub fn new(command_id: u64) -> Self {
        Self {
            command_id,
            attempt: 0,
            max_attempts: 1,
            plan: None,
            status: None,
            last_feedback: None,
        }
    }

    pub fn command_id(&self) -> u64 {
        self.command_id
    }

    /// The feedback while the planner works on the first plan.
    pub fn planning(&mut self) -> Feedback {
        let fb = Feedback {
            command_id: self.command_id,
            attempt: 1,
            steps: Vec::new(),
            current_step: -1,
            task_state: "planning".into(),
            message: "planning".into(),
        };
        self.last_feedback = Some(fb.clone());
        fb
    }

    /// A plan was published. Plans of other commands preempt this goal.
    pub fn on_plan(&mut self, plan: &PlanMessage) -> Progress {
        if plan.command_id != self.command_id {
            // Only a command that has been planned replaces this one on the robot.
            return Progress::Done(self.finish(
                CommandOutcome::Preempted,
                format!("preempted by the command {:?}", plan.command),
            ));
        }
        if plan.attempt < self.attempt {
            return Progress::Nothing;
        }
        self.attempt = plan.attempt;
        self.max_attempts = plan.max_attempts;
        self.plan = Some(plan.clone());
        match &plan.outcome {
            PlanOutcome::Rejected { reason } => {
                Progress::Done(self.finish(CommandOutcome::Refused, reason.clone()))
            }
            PlanOutcome::Plan { steps } => {
                let message = match &plan.replan_reason {
                    Some(why) => format!(
                        "attempt {} of {} after: {why}",
                        plan.attempt, plan.max_attempts
                    ),
                    None => "planned".into(),
                };
                self.feedback(Feedback {
                    command_id: self.command_id,
                    attempt: plan.attempt,
                    steps: steps.iter().map(Skill::describe).collect(),
                    current_step: -1,
                    task_state: "planned".into(),
                    message,
                })
            }
        }
    }

    /// A task status. Statuses of other commands or of older attempts
    /// (heartbeats) change nothing.
    pub fn on_status(&mut self, st: &TaskStatus) -> Progress {
        if st.command_id != self.command_id || st.attempt != self.attempt || self.plan.is_none() {
            return Progress::Nothing;
        }
        self.status = Some(st.clone());
        let steps: Vec<String> = st.steps.iter().map(|s| s.skill.describe()).collect();
        let current_step = st
            .steps
            .iter()
            .position(|s| s.state == StepState::Running)
            .map_or(-1, |i| i as i32);
        let survey = self.plan.as_ref().is_some_and(|p| p.survey);
        match st.task {
            // A look around is done: the command's own plan follows.
            TaskState::Succeeded if survey && self.attempt < self.max_attempts => {}
            TaskState::Succeeded if survey => {
                return Progress::Done(self.finish(
                    CommandOutcome::Failed,
                    "looked around, with no attempt left to plan the command".into(),
                ))
            }
            TaskState::Succeeded => {
                return Progress::Done(self.finish(CommandOutcome::Succeeded, st.message.clone()))
            }
            TaskState::Stopped => {
                // "stop" itself succeeds by stopping.
                let stop_was_the_plan = st
                    .steps
                    .last()
                    .is_some_and(|s| s.skill == Skill::Stop && s.state == StepState::Succeeded);
                let outcome = if stop_was_the_plan {
                    CommandOutcome::Succeeded
                } else {
                    CommandOutcome::Stopped
                };
                return Progress::Done(self.finish(outcome, st.message.clone()));
            }
            TaskState::Failed if self.attempt >= self.max_attempts => {
                let why = if self.max_attempts > 1 {
                    format!("{} (after {} attempts)", st.message, self.attempt)
                } else {
                    st.message.clone()
                };
                return Progress::Done(self.finish(CommandOutcome::Failed, why));
            }
            TaskState::Failed => {
                return self.feedback(Feedback {
                    command_id: self.command_id,
                    attempt: self.attempt,
                    steps,
                    current_step,
                    task_state: "replanning".into(),
                    message: st.message.clone(),
                })
            }
            TaskState::Running | TaskState::Idle => {}
        }
        self.feedback(Feedback {
            command_id: self.command_id,
            attempt: self.attempt,
            steps,
            current_step,
            task_state: "running".into(),
            message: match &st.progress {
                Some(p) if st.message.is_empty() => p.clone(),
                Some(p) => format!("{} ({p})", st.message),
                None => st.message.clone(),
            },
        })
    }

    /// The result of a goal cancelled by its client.
    pub fn canceled(&self) -> GoalResult {
        self.finish(
            CommandOutcome::Canceled,
            "canceled by the client; the robot stopped".into(),
        )
    }

    fn feedback(&mut self, fb: Feedback) -> Progress {
        if self.last_feedback.as_ref() == Some(&fb) {
            return Progress::Nothing;
        }
        self.last_feedback = Some(fb.clone());
        Progress::Feedback(fb)
    }

    fn finish(&self, outcome: CommandOutcome, message: String) -> GoalResult {
        GoalResult {
            outcome,
            message,
            attempts: self.attempt,
            plan_json: self
                .plan
                .as_ref()
                .and_then(|p| serde_json::to_string(p).ok())
                .unwrap_or_default(),
            report_json: self
                .status
                .as_ref()
                .and_then(|s| serde_json::to_string(s).ok())
                .unwrap_or_default(),
        }
    }
}

/// A command id from an action goal's UUID: random, so that it does not
/// collide with the small ids of topic commands.
pub fn command_id_from_uuid(uuid: &[u8; 16]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&uuid[..8]);
    u64::from_le_bytes(b) | (1 << 63)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosetta_common::status::StepStatus;
    use rosetta_common::Pose2D;

    fn plan(command_id: u64, attempt: u32, steps: Vec<Skill>) -> PlanMessage {
        PlanMessage {
            command_id,
            command: "put the red cube in the blue bin".into(),
            outcome: PlanOutcome::Plan {
                steps: rosetta_common::ValidPlan::new(steps).unwrap(),
            },
            planner: "rules".into(),
            planning_time_s: 0.1,
            attempt,
            max_attempts: 2,
            replan_reason: (attempt > 1).then(|| "the grasp slipped".into()),
            goals: vec![],
            survey: false,
        }
    }

    fn pick_place() -> Vec<Skill> {
        vec![
            Skill::NavigateTo {
                target: "red_cube".into(),
            },
            Skill::Pick {
                object: "red_cube".into(),
            },
        ]
    }

    fn status(command_id: u64, attempt: u32, task: TaskState, states: &[StepState]) -> TaskStatus {
        let skills = pick_place();
        TaskStatus {
            command_id,
            attempt,
            task,
            steps: states
                .iter()
                .zip(skills)
                .enumerate()
                .map(|(index, (state, skill))| StepStatus {
                    index,
                    skill,
                    state: state.clone(),
                    started_s: None,
                    finished_s: None,
                })
                .collect(),
            message: "msg".into(),
            stamp_s: 1.0,
            robot_pose: Pose2D::default(),
            progress: None,
            control_loop: None,
            goals: vec![],
        }
    }

    #[test]
    fn feedback_follows_the_steps_and_success_ends_the_goal() {
        let mut g = GoalTracker::new(9);
        assert_eq!(g.planning().task_state, "planning");
        let Progress::Feedback(fb) = g.on_plan(&plan(9, 1, pick_place())) else {
            panic!("a plan gives feedback")
        };
        assert_eq!(fb.steps, ["navigate_to(red_cube)", "pick(red_cube)"]);
        assert_eq!(fb.current_step, -1);
        let running = status(
            9,
            1,
            TaskState::Running,
            &[StepState::Succeeded, StepState::Running],
        );
        let Progress::Feedback(fb) = g.on_status(&running) else {
            panic!("a new step gives feedback")
        };
        assert_eq!(fb.current_step, 1);
        assert_eq!(fb.task_state, "running");
        // A heartbeat with nothing new sends nothing.
        assert_eq!(g.on_status(&running), Progress::Nothing);
        let done = status(
            9,
            1,
            TaskState::Succeeded,
            &[StepState::Succeeded, StepState::Succeeded],
        );
        let Progress::Done(r) = g.on_status(&done) else {
            panic!("success ends the goal")
        };
        assert!(r.success());
        assert_eq!(r.attempts, 1);
        let report: TaskStatus = serde_json::from_str(&r.report_json).unwrap();
        assert_eq!(report, done);
        let p: PlanMessage = serde_json::from_str(&r.plan_json).unwrap();
        assert_eq!(p.command_id, 9);
    }

    #[test]
    fn a_failure_waits_for_the_replan_and_the_last_failure_ends_the_goal() {
        let mut g = GoalTracker::new(9);
        g.on_plan(&plan(9, 1, pick_place()));
        let failed = status(
            9,
            1,
            TaskState::Failed,
            &[
                StepState::Succeeded,
                StepState::Failed {
                    reason: "slipped".into(),
                },
            ],
        );
        let Progress::Feedback(fb) = g.on_status(&failed) else {
            panic!("a first failure is not the end")
        };
        assert_eq!(fb.task_state, "replanning");
        let Progress::Feedback(fb) = g.on_plan(&plan(9, 2, pick_place())) else {
            panic!()
        };
        assert_eq!(fb.attempt, 2);
        assert!(fb.message.contains("slipped"), "{}", fb.message);
        // The old attempt's heartbeat is ignored.
        assert_eq!(g.on_status(&failed), Progress::Nothing);
        let failed2 = status(
            9,
            2,
            TaskState::Failed,
            &[
                StepState::Succeeded,
                StepState::Failed {
                    reason: "slipped".into(),
                },
            ],
        );
        let Progress::Done(r) = g.on_status(&failed2) else {
            panic!("the last attempt's failure ends the goal")
        };
        assert_eq!(r.outcome, CommandOutcome::Failed);
        assert_eq!(r.attempts, 2);
    }

    #[test]
    fn refusals_stops_and_other_commands_end_the_goal() {
        let mut g = GoalTracker::new(9);
        let mut refused = plan(9, 1, vec![]);
        refused.outcome = PlanOutcome::Rejected {
            reason: "unsafe".into(),
        };
        assert!(matches!(
            g.on_plan(&refused),
            Progress::Done(GoalResult {
                outcome: CommandOutcome::Refused,
                ..
            })
        ));

        let mut g = GoalTracker::new(9);
        g.on_plan(&plan(9, 1, pick_place()));
        assert!(matches!(
            g.on_plan(&plan(10, 1, pick_place())),
            Progress::Done(GoalResult {
                outcome: CommandOutcome::Preempted,
                ..
            })
        ));
        // Statuses of other commands are not ours.
        assert_eq!(
            g.on_status(&status(10, 1, TaskState::Succeeded, &[])),
            Progress::Nothing
        );
        let stopped = status(9, 1, TaskState::Stopped, &[StepState::Cancelled]);
        assert!(matches!(
            g.on_status(&stopped),
            Progress::Done(GoalResult {
                outcome: CommandOutcome::Stopped,
                ..
            })
        ));
    }

    #[test]
    fn the_command_stop_succeeds_by_stopping() {
        let mut g = GoalTracker::new(3);
        g.on_plan(&plan(3, 1, vec![Skill::Stop]));
        let mut st = status(3, 1, TaskState::Stopped, &[]);
        st.steps = vec![StepStatus {
            index: 0,
            skill: Skill::Stop,
            state: StepState::Succeeded,
            started_s: None,
            finished_s: None,
        }];
        assert!(matches!(g.on_status(&st), Progress::Done(r) if r.success()));
    }

    #[test]
    fn goal_ids_do_not_meet_topic_ids() {
        let id = command_id_from_uuid(&[0; 16]);
        assert!(id >= 1 << 63);
        assert_ne!(
            command_id_from_uuid(&[1; 16]),
            command_id_from_uuid(&[2; 16])
        );
    }
}
