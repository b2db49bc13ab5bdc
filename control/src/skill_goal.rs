//! The life of one `/rosetta/skill` goal, free of ROS: whether a goal is
//! taken, when it is preempted, cancelled or timed out, what feedback it
//! gets, and how it ends, judged from the skill runner's status. The node keeps
//! the goal handle and says to ROS what this decides.

use rosetta_common::status::{SkillState, StepState, TaskState, TaskStatus};
use rosetta_common::{Skill, ValidPlan};

/// How a skill goal ends (the action's result).
#[derive(Debug, Clone, PartialEq)]
pub struct SkillEnd {
    pub state: SkillState,
    pub message: String,
}

impl SkillEnd {
    pub fn new(state: SkillState, message: impl Into<String>) -> Self {
        Self {
            state,
            message: message.into(),
        }
    }

    pub fn success(&self) -> bool {
        self.state.is_success()
    }
}

/// The answer to a new goal.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Run `plan` (the goal's one skill) as the skill runner's command `command_id`. The goal that ran
    /// before, if any, ends with `preempted`.
    Run {
        command_id: u64,
        plan: ValidPlan,
        preempted: Option<(u64, SkillEnd)>,
    },
    Rejected(SkillEnd),
}

/// What the running goal needs now.
#[derive(Debug, Clone, PartialEq)]
pub enum Review {
    Nothing,
    Feedback {
        command_id: u64,
        message: String,
        elapsed_s: f64,
    },
    /// The goal is over. `stop_robot`: the skill runner must be stopped (a
    /// timeout; the skill runner does not know of the goal's own limit).
    Ended {
        command_id: u64,
        end: SkillEnd,
        stop_robot: bool,
    },
}

#[derive(Debug, Clone)]
struct Active {
    command_id: u64,
    started_s: f64,
    timeout_s: f64,
    /// The last feedback sent (message, half-seconds elapsed), to send only changes.
    last_feedback: Option<(String, f64)>,
}

/// The skill goals control serves: at most one runs at a time.
#[derive(Debug, Clone, Default)]
pub struct SkillGoals {
    active: Option<Active>,
    served: u64,
}

/// Skill goals get skill runner command ids of their own, far from the planner's.
const FIRST_SKILL_COMMAND_ID: u64 = 1 << 61;

impl SkillGoals {
    /// The command id of the goal that runs, if one does.
    pub fn active(&self) -> Option<u64> {
        self.active.as_ref().map(|a| a.command_id)
    }

    /// A new goal: `parsed` is its skill (or why its JSON is not one),
    /// `timeout_s` its own limit (0: none), `now_s` the skill runner's clock.
    pub fn admit(
        &mut self,
        parsed: Result<Skill, String>,
        timeout_s: f64,
        estop: bool,
        now_s: f64,
    ) -> Admission {
        let plan = match parsed {
            Err(e) => {
                let why = format!("not a skill of the plan language: {e}");
                return Admission::Rejected(SkillEnd::new(SkillState::Rejected, why));
            }
            Ok(step) => match ValidPlan::single(step) {
                Ok(plan) => plan,
                Err(e) => {
                    let why = format!("not a skill the robot may run: {e}");
                    return Admission::Rejected(SkillEnd::new(SkillState::Rejected, why));
                }
            },
        };
        if estop {
            // Canceled, not rejected: the plan stops rather than re-plans.
            return Admission::Rejected(SkillEnd::new(
                SkillState::Canceled,
                "e-stop engaged: release it (false on /rosetta/estop), then command again",
            ));
        }
        if !timeout_s.is_finite() || timeout_s < 0.0 {
            let why = format!("timeout_s must be >= 0, got {timeout_s}");
            return Admission::Rejected(SkillEnd::new(SkillState::Rejected, why));
        }
        let preempted = self.active.take().map(|old| {
            let end = SkillEnd::new(SkillState::Preempted, "preempted by a new skill goal");
            (old.command_id, end)
        });
        self.served += 1;
        let command_id = FIRST_SKILL_COMMAND_ID + self.served;
        self.active = Some(Active {
            command_id,
            started_s: now_s,
            timeout_s,
            last_feedback: None,
        });
        Admission::Run {
            command_id,
            plan,
            preempted,
        }
    }

    /// The client cancels `command_id`: if that goal runs, it ends now, and
    /// the skill runner must be stopped.
    pub fn cancel(&mut self, command_id: u64) -> Option<SkillEnd> {
        self.active.take_if(|a| a.command_id == command_id)?;
        Some(SkillEnd::new(
            SkillState::Canceled,
            "canceled; the robot stopped",
        ))
    }

    /// After each change of the skill runner: the running goal's feedback, its
    /// timeout, or its end. `now_s` is the skill runner's clock (`None` before
    /// any odometry).
    pub fn review(&mut self, status: &TaskStatus, now_s: Option<f64>) -> Review {
        let Some(active) = self.active.as_mut() else {
            return Review::Nothing;
        };
        let command_id = active.command_id;
        let elapsed_s = now_s.unwrap_or(active.started_s) - active.started_s;
        let end = if status.command_id != command_id {
            Some((
                SkillEnd::new(SkillState::Preempted, "preempted by a plan"),
                false,
            ))
        } else if status.task == TaskState::Running
            && active.timeout_s > 0.0
            && elapsed_s > active.timeout_s
        {
            let why = format!("timed out after {:.1} s", active.timeout_s);
            Some((SkillEnd::new(SkillState::TimedOut, why), true))
        } else {
            end_of(status).map(|e| (e, false))
        };
        if let Some((end, stop_robot)) = end {
            self.active = None;
            return Review::Ended {
                command_id,
                end,
                stop_robot,
            };
        }
        let fb = (status.message.clone(), (elapsed_s * 2.0).floor());
        if active.last_feedback.as_ref() == Some(&fb) {
            return Review::Nothing;
        }
        active.last_feedback = Some(fb);
        Review::Feedback {
            command_id,
            message: status.message.clone(),
            elapsed_s,
        }
    }
}

/// How a goal ends when the skill runner's task has ended; `None` while it runs.
fn end_of(status: &TaskStatus) -> Option<SkillEnd> {
    let message = status.message.clone();
    let state = match status.task {
        TaskState::Running | TaskState::Idle => return None,
        TaskState::Succeeded => SkillState::Succeeded,
        TaskState::Failed => SkillState::Failed,
        // A `stop` skill that ran is a success.
        TaskState::Stopped
            if status.steps.first().is_some_and(|s| {
                matches!(s.skill, Skill::Stop) && s.state == StepState::Succeeded
            }) =>
        {
            SkillState::Succeeded
        }
        TaskState::Stopped => SkillState::Canceled,
    };
    Some(SkillEnd { state, message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skill_runner::SkillRunner;
    use rosetta_common::robot::RobotDescription;

    fn dock() -> Skill {
        Skill::NavigateTo {
            target: "dock".into(),
        }
    }

    fn run(goals: &mut SkillGoals, exec: &mut SkillRunner, now_s: f64) -> u64 {
        match goals.admit(Ok(dock()), 5.0, false, now_s) {
            Admission::Run {
                command_id, plan, ..
            } => {
                exec.start_attempt(command_id, 1, plan, now_s);
                command_id
            }
            other => panic!("not admitted: {other:?}"),
        }
    }

    #[test]
    fn bad_goals_are_rejected_with_the_reason() {
        let mut g = SkillGoals::default();
        for (parsed, timeout_s, estop, word) in [
            (
                Err("expected value".to_string()),
                1.0,
                false,
                "plan language",
            ),
            (Ok(dock()), f64::NAN, false, "timeout_s"),
            (Ok(dock()), -1.0, false, "timeout_s"),
            (Ok(dock()), 1.0, true, "e-stop engaged"),
            (Ok(Skill::Wait { seconds: 1e9 }), 1.0, false, "may run"),
        ] {
            match g.admit(parsed, timeout_s, estop, 0.0) {
                Admission::Rejected(end) => {
                    let want = if estop {
                        SkillState::Canceled
                    } else {
                        SkillState::Rejected
                    };
                    assert_eq!(end.state, want);
                    assert!(end.message.contains(word), "{}", end.message);
                }
                other => panic!("admitted: {other:?}"),
            }
        }
        assert_eq!(g.active(), None);
    }

    #[test]
    fn a_new_goal_preempts_the_running_one() {
        let mut g = SkillGoals::default();
        let mut exec = SkillRunner::new(RobotDescription::default());
        let first = run(&mut g, &mut exec, 0.0);
        match g.admit(Ok(dock()), 0.0, false, 1.0) {
            Admission::Run {
                command_id,
                preempted: Some((old, end)),
                ..
            } => {
                assert_eq!(old, first);
                assert_ne!(command_id, first);
                assert_eq!(end.state, SkillState::Preempted);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_plan_that_takes_the_executor_preempts_the_goal() {
        let mut g = SkillGoals::default();
        let mut exec = SkillRunner::new(RobotDescription::default());
        run(&mut g, &mut exec, 0.0);
        exec.start_attempt(7, 1, ValidPlan::single(dock()).unwrap(), 0.5);
        match g.review(&exec.status(), Some(0.5)) {
            Review::Ended {
                end, stop_robot, ..
            } => {
                assert_eq!(end.state, SkillState::Preempted);
                assert!(!stop_robot, "the plan drives now");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(g.active(), None);
    }

    #[test]
    fn feedback_only_on_change_then_a_timeout_stops_the_robot() {
        let mut g = SkillGoals::default();
        let mut exec = SkillRunner::new(RobotDescription::default());
        let id = run(&mut g, &mut exec, 10.0);
        let st = exec.status();
        assert!(matches!(g.review(&st, Some(10.1)), Review::Feedback { .. }));
        assert_eq!(g.review(&st, Some(10.2)), Review::Nothing, "no change");
        assert!(matches!(
            g.review(&st, Some(10.6)),
            Review::Feedback { elapsed_s, .. } if (elapsed_s - 0.6).abs() < 1e-9
        ));
        match g.review(&st, Some(15.5)) {
            Review::Ended {
                command_id,
                end,
                stop_robot,
            } => {
                assert_eq!(command_id, id);
                assert_eq!(end.state, SkillState::TimedOut);
                assert!(end.message.contains("5.0 s"), "{}", end.message);
                assert!(stop_robot);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_executors_end_is_the_goals_end() {
        let mut g = SkillGoals::default();
        let mut exec = SkillRunner::new(RobotDescription::default());
        let id = run(&mut g, &mut exec, 0.0);
        exec.stop("e-stop engaged");
        match g.review(&exec.status(), Some(1.0)) {
            Review::Ended { end, .. } => {
                assert_eq!(end.state, SkillState::Canceled);
                assert_eq!(end.message, "e-stop engaged");
            }
            other => panic!("{other:?}"),
        }
        // A cancel of a goal that already ended, or of another id, is nothing.
        assert_eq!(g.cancel(id), None);
        let id = run(&mut g, &mut exec, 2.0);
        assert_eq!(g.cancel(id + 1), None);
        assert_eq!(g.cancel(id).map(|e| e.state), Some(SkillState::Canceled));
        assert_eq!(g.active(), None);
    }
}
