//! The planner as an r2r node: commands in, plans out, grounded in the latest world model.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use r2r::rosetta_interfaces::action::ExecuteCommand;
use rosetta_common::plan::{CommandMessage, PlanMessage, PlanOutcome};
use rosetta_common::rec::{self, log_text};
use rosetta_common::ros::{self, JsonPublisher, Spinner};
use rosetta_common::status::{ExecutorStatus, StepState, TaskState};
use rosetta_common::{topics, WorldModel};

use crate::command_action::{self, GoalTracker, Progress};
use crate::pipeline::{Pipeline, PlannerKind};

/// Turn command text into action plans.
#[derive(Debug, Clone, clap::Args)]
pub struct PlannerArgs {
    /// Which planner to run: `hybrid` reads the words with the reader and
    /// grounder and hands what they cannot read to the language model; `llm`
    /// is the model alone; `rules` the reader and grounder alone (no model).
    #[arg(long, value_enum, default_value_t = PlannerKind::Hybrid)]
    pub planner: PlannerKind,
    #[command(flatten)]
    pub model: crate::llm::ModelArgs,
    /// Before publishing a plan, wait (up to 5 s) until this many nodes subscribe to it.
    #[arg(long, default_value_t = 1)]
    pub min_plan_subscribers: usize,
    /// After a failed step, plan the command again (against the world as it is
    /// then) at most this many times.
    #[arg(long, default_value_t = 2)]
    pub max_retries: u32,
    /// How long to wait for a first world model from perception before planning without one.
    #[arg(long, default_value_t = 5.0)]
    pub world_wait_s: f64,
}

pub async fn run(args: PlannerArgs) -> anyhow::Result<()> {
    let mut node = ros::create_node("rosetta_planner")?;
    let commands = ros::json_subscription::<CommandMessage>(&mut node, topics::COMMAND)?;
    let statuses = ros::json_subscription::<ExecutorStatus>(&mut node, topics::STATUS)?;
    let mut worlds = ros::json_subscription::<WorldModel>(&mut node, topics::OBJECTS)?;
    let plans = JsonPublisher::<PlanMessage>::new(&mut node, topics::PLAN)?;
    let goal_requests = node.create_action_server::<ExecuteCommand::Action>(topics::EXECUTE)?;
    let node = Arc::new(Mutex::new(node));
    let _spinner = Spinner::start(node.clone());
    let rec = rec::open_recording("planner");
    let llm = if args.planner.needs_model() {
        let model = args.model.clone();
        let source = model.source()?;
        tracing::info!(path = %source.weights.display(), "loading the language model");
        let loaded = tokio::task::spawn_blocking(move || model.load()).await??;
        Some(Arc::new(loaded))
    } else {
        None
    };
    let planner_name = args.planner.name();
    let pipeline = Arc::new(Pipeline::new(args.planner, llm).map_err(anyhow::Error::msg)?);

    let latest_world: Arc<Mutex<Option<WorldModel>>> = Arc::new(Mutex::new(None));
    let lw = latest_world.clone();
    tokio::spawn(async move {
        while let Some(w) = worlds.next().await {
            if let Ok(mut g) = lw.lock() {
                *g = Some(w);
            }
        }
    });

    tracing::info!(planner = planner_name, "planner ready");
    let max_attempts = args.max_retries + 1;
    // Action goals enter the same loop as topic commands; goals follow what
    // the loop publishes and hears through `observed`.
    let (to_loop, from_goals) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let (observed, _) = tokio::sync::broadcast::channel::<Observed>(256);
    let cancelled: Arc<Mutex<HashSet<u64>>> = Arc::default();
    tokio::spawn(serve_goals(
        goal_requests,
        to_loop,
        observed.clone(),
        cancelled.clone(),
    ));
    let goal_events = futures::stream::unfold(from_goals, |mut rx| async move {
        rx.recv().await.map(|e| (e, rx))
    });
    let mut events = futures::stream::select_all(vec![
        commands.map(Event::Command).boxed(),
        statuses.map(Event::Status).boxed(),
        goal_events.boxed(),
    ]);
    // The command being carried out, and which attempt at it runs now.
    let mut active: Option<(CommandMessage, u32)> = None;
    let mut stop_ids = 0u64;
    // What the robot holds after the last failed attempt (a re-plan starts there).
    let mut held: Option<String> = None;
    // Whether the active attempt's plan is a survey (a look around), and
    // whether the command may still get one.
    let mut surveying = false;
    let mut may_survey = true;
    let work = async {
        while let Some(event) = events.next().await {
            let (cmd, attempt, replan_reason) = match event {
                Event::Command(cmd) => {
                    active = Some((cmd.clone(), 1));
                    held = None;
                    surveying = false;
                    may_survey = true;
                    (cmd, 1, None)
                }
                Event::Cancel(id) => {
                    if active.as_ref().is_some_and(|(c, _)| c.command_id == id) {
                        active = None;
                        stop_ids += 1;
                        let stop = PlanMessage {
                            command_id: (1 << 62) + stop_ids,
                            command: format!("stop (goal {id} canceled)"),
                            outcome: PlanOutcome::Plan {
                                steps: vec![rosetta_common::Skill::Stop],
                            },
                            planner: "cancel".into(),
                            planning_time_s: 0.0,
                            attempt: 1,
                            max_attempts: 1,
                            replan_reason: None,
                            goals: vec![],
                            survey: false,
                        };
                        tracing::info!(command_id = id, "goal canceled: stopping the robot");
                        if let Err(e) = plans.publish(&stop) {
                            tracing::error!(error = %e, "cannot publish the stop plan");
                        }
                        let _ = observed.send(Observed::Plan(stop));
                    }
                    continue;
                }
                Event::Status(st) => {
                    let _ = observed.send(Observed::Status(st.clone()));
                    let Some((cmd, attempt)) = active.as_mut() else {
                        continue;
                    };
                    match replan_decision(&st, cmd.command_id, *attempt, max_attempts, surveying) {
                        Replan::No => continue,
                        Replan::GiveUp(why) => {
                            tracing::warn!(command = %cmd.text, attempts = *attempt, %why, "giving up");
                            log_text(
                                &rec,
                                "planner",
                                "WARN",
                                &format!(
                                    "giving up on {:?} after {attempt} attempts: {why}",
                                    cmd.text
                                ),
                            );
                            active = None;
                            continue;
                        }
                        Replan::Yes(why) => {
                            *attempt += 1;
                            held = held_after(&st, held.take());
                            tracing::info!(command = %cmd.text, attempt = *attempt, %why, "re-planning after a failure");
                            (cmd.clone(), *attempt, Some(why))
                        }
                    }
                }
            };
            let current =
                |lw: &Arc<Mutex<Option<WorldModel>>>| lw.lock().ok().and_then(|g| g.clone());
            let has_world = || current(&latest_world).is_some();
            if ros::wait_until(
                "a world model",
                Duration::from_secs_f64(args.world_wait_s),
                has_world,
            )
            .await
            .is_err()
            {
                tracing::warn!("no world model from perception yet; planning against an empty one");
            }
            let world = current(&latest_world).unwrap_or_default();
            let t0 = Instant::now();
            let planned = {
                let (p, text, w) = (pipeline.clone(), cmd.text.clone(), world.clone());
                let h = held.clone();
                let survey_ok = may_survey;
                match tokio::task::spawn_blocking(move || {
                    p.plan_attempt(&text, &w, h.as_deref(), survey_ok)
                })
                .await
                {
                    Ok(planned) => planned,
                    Err(e) => {
                        tracing::error!(error = %e, "the planner crashed");
                        crate::pipeline::Planned {
                            outcome: PlanOutcome::Rejected {
                                reason: format!("the planner crashed: {e}"),
                            },
                            goals: vec![],
                            by: "none",
                            model: None,
                            survey: false,
                        }
                    }
                }
            };
            // One look around per command: after it, what is still unseen is refused.
            surveying = planned.survey;
            may_survey &= !planned.survey;
            if let Some(out) = &planned.model {
                log_text(
                    &rec,
                    "planner",
                    "INFO",
                    &format!(
                        "model output ({:.2} s, {} tokens): {:?}",
                        out.total_s(),
                        out.generated_tokens + out.forced_tokens,
                        out.raw
                    ),
                );
            }
            let msg = PlanMessage {
                command_id: cmd.command_id,
                command: cmd.text.clone(),
                outcome: planned.outcome,
                goals: planned.goals,
                survey: planned.survey,
                planner: format!("{planner_name}:{}", planned.by),
                planning_time_s: t0.elapsed().as_secs_f64(),
                attempt,
                max_attempts,
                replan_reason,
            };
            rec::set_sim_time(&rec, world.stamp_s);
            log_plan(&rec, &msg);
            match &msg.outcome {
                PlanOutcome::Plan { steps } => tracing::info!(
                    command = %cmd.text,
                    attempt,
                    plan = %steps.iter().map(|s| s.describe()).collect::<Vec<_>>().join(" -> "),
                    "planned"
                ),
                PlanOutcome::Rejected { reason } => {
                    // A refusal is final: nothing runs, so nothing can fail and be re-planned.
                    active = None;
                    tracing::warn!(command = %cmd.text, %reason, "refused")
                }
            }
            let was_cancelled = cancelled
                .lock()
                .map(|mut c| c.remove(&cmd.command_id))
                .unwrap_or(false);
            if was_cancelled {
                tracing::info!(command = %cmd.text, "canceled while planning; the plan is dropped");
                active = None;
                continue;
            }
            let enough = || plans.subscribers() >= args.min_plan_subscribers;
            if ros::wait_until("plan subscribers", Duration::from_secs(5), enough)
                .await
                .is_err()
            {
                tracing::warn!("publishing the plan with fewer subscribers than expected");
            }
            if let Err(e) = plans.publish(&msg) {
                tracing::error!(error = %e, "cannot publish the plan");
            }
            let _ = observed.send(Observed::Plan(msg));
        }
    };
    tokio::select! {
        _ = ros::shutdown_signal() => {}
        _ = work => {}
    }
    let _ = rec.flush_blocking();
    Ok(())
}

enum Event {
    Command(CommandMessage),
    Status(ExecutorStatus),
    /// An action goal's client canceled it.
    Cancel(u64),
}

/// What the planner loop publishes or hears, for the action goals to follow.
#[derive(Debug, Clone)]
enum Observed {
    Plan(PlanMessage),
    Status(ExecutorStatus),
}

/// The `ExecuteCommand` action server: each accepted goal becomes a command
/// of the planner loop, and a task that turns plans and statuses into the
/// goal's feedback and result. A newer command (goal or topic) preempts it.
async fn serve_goals(
    mut requests: impl futures::Stream<Item = r2r::ActionServerGoalRequest<ExecuteCommand::Action>>
        + Unpin,
    to_loop: tokio::sync::mpsc::UnboundedSender<Event>,
    observed: tokio::sync::broadcast::Sender<Observed>,
    cancelled: Arc<Mutex<HashSet<u64>>>,
) {
    while let Some(req) = requests.next().await {
        let command_id = command_action::command_id_from_uuid(req.uuid.as_bytes());
        let text = req.goal.command.clone();
        let (goal, cancel) = match req.accept() {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "cannot accept an action goal");
                continue;
            }
        };
        tracing::info!(command = %text, command_id, "action goal accepted");
        // Follow before the command enters the loop, so that no plan is missed.
        let rx = observed.subscribe();
        if to_loop
            .send(Event::Command(CommandMessage { command_id, text }))
            .is_err()
        {
            return;
        }
        tokio::spawn(serve_goal(
            goal,
            cancel,
            GoalTracker::new(command_id),
            rx,
            to_loop.clone(),
            cancelled.clone(),
        ));
    }
}

fn result_msg(r: &command_action::GoalResult) -> ExecuteCommand::Result {
    ExecuteCommand::Result {
        success: r.success(),
        outcome: r.outcome.as_str().into(),
        message: r.message.clone(),
        attempts: r.attempts,
        plan_json: r.plan_json.clone(),
        report_json: r.report_json.clone(),
    }
}

fn feedback_msg(f: command_action::Feedback) -> ExecuteCommand::Feedback {
    ExecuteCommand::Feedback {
        command_id: f.command_id,
        attempt: f.attempt,
        steps: f.steps,
        current_step: f.current_step,
        task_state: f.task_state,
        message: f.message,
    }
}

async fn serve_goal(
    mut goal: r2r::ActionServerGoal<ExecuteCommand::Action>,
    mut cancel: impl futures::Stream<Item = r2r::ActionServerCancelRequest> + Unpin,
    mut tracker: GoalTracker,
    mut observed: tokio::sync::broadcast::Receiver<Observed>,
    to_loop: tokio::sync::mpsc::UnboundedSender<Event>,
    cancelled: Arc<Mutex<HashSet<u64>>>,
) {
    let id = tracker.command_id();
    if let Err(e) = goal.publish_feedback(feedback_msg(tracker.planning())) {
        tracing::warn!(error = %e, "cannot publish goal feedback");
    }
    let end = loop {
        let progress = tokio::select! {
            req = cancel.next() => {
                let Some(req) = req else { continue };
                req.accept();
                if let Ok(mut c) = cancelled.lock() {
                    c.insert(id);
                }
                let _ = to_loop.send(Event::Cancel(id));
                break Err(tracker.canceled());
            }
            ev = observed.recv() => match ev {
                Ok(Observed::Plan(p)) => tracker.on_plan(&p),
                Ok(Observed::Status(s)) => tracker.on_status(&s),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "goal fell behind the planner's events");
                    Progress::Nothing
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        };
        match progress {
            Progress::Nothing => {}
            Progress::Feedback(f) => {
                if let Err(e) = goal.publish_feedback(feedback_msg(f)) {
                    tracing::warn!(error = %e, "cannot publish goal feedback");
                }
            }
            Progress::Done(r) => break Ok(r),
        }
    };
    let sent = match end {
        Ok(r) if r.success() => goal.succeed(result_msg(&r)),
        Ok(r) => goal.abort(result_msg(&r)),
        Err(r) => goal.cancel(result_msg(&r)),
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, command_id = id, "cannot send the goal's result");
    }
}

/// What the planner does about an executor status.
#[derive(Debug, Clone, PartialEq)]
pub enum Replan {
    No,
    /// Plan again: the executor failed this attempt, for this reason.
    Yes(String),
    /// The last allowed attempt failed.
    GiveUp(String),
}

/// Closed loop: a failed attempt of the active command is planned again,
/// against the world as it is now, until `max_attempts` plans have failed.
/// Stops and refusals are final; statuses of other commands or attempts
/// (heartbeats of an older attempt) change nothing.
pub fn replan_decision(
    st: &ExecutorStatus,
    command_id: u64,
    attempt: u32,
    max_attempts: u32,
    survey: bool,
) -> Replan {
    if st.command_id != command_id || st.attempt != attempt {
        return Replan::No;
    }
    if survey && st.task == TaskState::Succeeded {
        // The look around is done: plan the command with what it showed.
        let why = "looked around to see what is there".to_string();
        return if attempt < max_attempts {
            Replan::Yes(why)
        } else {
            Replan::GiveUp(why)
        };
    }
    if st.task != TaskState::Failed {
        return Replan::No;
    }
    let failed_step = st
        .steps
        .iter()
        .find(|s| matches!(s.state, StepState::Failed { .. }));
    let why = match failed_step {
        Some(s) if st.message.contains(&s.skill.describe()) => {
            format!("step {}: {}", s.index + 1, st.message)
        }
        Some(s) => format!(
            "step {} {}: {}",
            s.index + 1,
            s.skill.describe(),
            st.message
        ),
        None => st.message.clone(),
    };
    if attempt < max_attempts {
        Replan::Yes(why)
    } else {
        Replan::GiveUp(why)
    }
}

/// What the robot holds after an attempt that started holding `before`:
/// the object of the last pick that succeeded, unless a place of it
/// succeeded after.
pub fn held_after(st: &ExecutorStatus, before: Option<String>) -> Option<String> {
    let mut held = before;
    for s in &st.steps {
        match (&s.skill, &s.state) {
            (rosetta_common::Skill::Pick { object }, StepState::Succeeded) => {
                held = Some(object.clone())
            }
            (rosetta_common::Skill::Place { .. }, StepState::Succeeded) => held = None,
            _ => {}
        }
    }
    held
}

fn log_plan(rec: &rerun::RecordingStream, msg: &PlanMessage) {
    let body = match &msg.outcome {
        PlanOutcome::Plan { steps } => {
            let mut s = format!("## Plan for \"{}\"\n\n", msg.command);
            if let Some(why) = &msg.replan_reason {
                s.push_str(&format!(
                    "Attempt {} of {}, after: {why}\n\n",
                    msg.attempt, msg.max_attempts
                ));
            }
            for (i, step) in steps.iter().enumerate() {
                s.push_str(&format!("{}. `{}`\n", i + 1, step.describe()));
            }
            if !msg.goals.is_empty() {
                let goals: Vec<String> = msg.goals.iter().map(|g| g.describe()).collect();
                s.push_str(&format!("\nGoal: {}\n", goals.join(", ")));
            }
            s
        }
        PlanOutcome::Rejected { reason } => {
            format!("## Refused: \"{}\"\n\n{}\n", msg.command, reason)
        }
    };
    let _ = rec.log("plan/steps", &rerun::TextDocument::from_markdown(body));
    let raw = serde_json::to_string(&msg.outcome).unwrap_or_default();
    log_text(
        rec,
        "planner",
        "INFO",
        &format!(
            "command {:?} -> {raw} ({}, {:.3} s)",
            msg.command, msg.planner, msg.planning_time_s
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosetta_common::status::StepStatus;
    use rosetta_common::{Pose2D, Skill};

    fn status(command_id: u64, attempt: u32, task: TaskState) -> ExecutorStatus {
        ExecutorStatus {
            command_id,
            attempt,
            task,
            steps: vec![StepStatus {
                index: 1,
                skill: Skill::Pick {
                    object: "red_cube".into(),
                },
                state: StepState::Failed {
                    reason: "slipped".into(),
                },
                started_s: Some(1.0),
                finished_s: Some(2.0),
            }],
            message: "grasp failed".into(),
            stamp_s: 2.0,
            robot_pose: Pose2D::default(),
            progress: None,
            control_loop: None,
            goals: vec![],
        }
    }

    #[test]
    fn a_failed_attempt_is_planned_again_until_the_budget_is_spent() {
        let failed = status(7, 1, TaskState::Failed);
        match replan_decision(&failed, 7, 1, 3, false) {
            Replan::Yes(why) => assert!(
                why.contains("pick(red_cube)") && why.contains("grasp failed"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            replan_decision(&status(7, 3, TaskState::Failed), 7, 3, 3, false),
            Replan::GiveUp(_)
        ));
    }

    #[test]
    fn what_is_held_after_a_failed_attempt() {
        use rosetta_common::status::StepStatus;
        let step = |index, skill, state| StepStatus {
            index,
            skill,
            state,
            started_s: None,
            finished_s: None,
        };
        let mut st = status(7, 1, TaskState::Failed);
        let pick = Skill::Pick {
            object: "red_cube".into(),
        };
        let place = Skill::Place {
            object: "red_cube".into(),
            target: "red_bin".into(),
        };
        let failed = StepState::Failed {
            reason: "out of reach".into(),
        };
        st.steps = vec![
            step(0, pick.clone(), StepState::Succeeded),
            step(1, place.clone(), failed.clone()),
        ];
        assert_eq!(held_after(&st, None).as_deref(), Some("red_cube"));
        st.steps = vec![
            step(0, pick.clone(), StepState::Succeeded),
            step(1, place, StepState::Succeeded),
        ];
        assert_eq!(held_after(&st, None), None);
        st.steps = vec![step(0, pick, failed.clone())];
        assert_eq!(held_after(&st, None), None);
        // An attempt that only failed to place keeps what the one before held.
        let place_again = Skill::Place {
            object: "red_cube".into(),
            target: "red_bin".into(),
        };
        st.steps = vec![step(0, place_again, failed)];
        assert_eq!(
            held_after(&st, Some("red_cube".into())).as_deref(),
            Some("red_cube")
        );
    }

    #[test]
    fn other_commands_old_attempts_successes_and_stops_change_nothing() {
        assert_eq!(
            replan_decision(&status(6, 1, TaskState::Failed), 7, 1, 3, false),
            Replan::No
        );
        // The heartbeat of attempt 1 while attempt 2 runs.
        assert_eq!(
            replan_decision(&status(7, 1, TaskState::Failed), 7, 2, 3, false),
            Replan::No
        );
        for t in [TaskState::Succeeded, TaskState::Stopped, TaskState::Running] {
            assert_eq!(
                replan_decision(&status(7, 1, t), 7, 1, 3, false),
                Replan::No
            );
        }
    }
}
