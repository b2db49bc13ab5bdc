//! The executive: carries out the planner's plans one skill at a time, each
//! as a goal of control's `/rosetta/skill` action (goal, feedback, result,
//! cancel, and a timeout per step), and publishes the state of every step on
//! `/rosetta/status`.
//!
//! The step bookkeeping is [`PlanRun`]; what a skill's result means for the
//! plan is [`apply_result`]. Both are pure. This module is the ROS 2 shell.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use r2r::rosetta_interfaces::action::RunSkill;
use rosetta_common::plan::{PlanMessage, PlanOutcome};
use rosetta_common::rec::{self, log_text};
use rosetta_common::ros::{self, JsonPublisher, Spinner};
use rosetta_common::status::{ExecutorStatus, StepState, TaskState};
use rosetta_common::{topics, Skill, WorldModel};

use crate::plan_run::{step_timeout_s, PlanRun};

/// Run the planner's plans step by step through control's skill action.
#[derive(Debug, Clone, clap::Args)]
pub struct ExecutiveArgs {
    /// While a step runs, control must publish its status at least this
    /// often (wall seconds); otherwise the step fails with "control is not
    /// answering" and the robot is left to control's own watchdogs.
    #[arg(long, default_value_t = 3.0)]
    pub control_timeout_s: f64,
    /// How long a step waits for control's `/rosetta/skill` server to appear
    /// and accept the goal (wall seconds).
    #[arg(long, default_value_t = 10.0)]
    pub accept_timeout_s: f64,
}

/// How long (sim seconds) after the last step the world model must be, for
/// the goal check: a released object has landed and perception has seen
/// the place again.
pub const GOAL_SETTLE_S: f64 = 1.0;
/// How long (wall) the goal check waits for such a world model before it
/// judges on the latest one.
pub const GOAL_CHECK_WAIT: Duration = Duration::from_secs(3);

/// How the result of a step's skill goal changes the plan.
pub fn apply_result(run: &mut PlanRun, now_s: f64, state: &str, message: &str) {
    match state {
        "succeeded" => run.step_succeeded(now_s),
        "canceled" => run.stop(now_s, message),
        "preempted" => run.stop(now_s, &format!("preempted: {message}")),
        "rejected" if message.contains("e-stop") => run.stop(
            now_s,
            &format!("{message}: release it (false on /rosetta/estop), then command again"),
        ),
        // failed, timed_out, rejected for any other reason, or a state this
        // executive does not know: the step failed, and the planner may try again.
        _ => run.step_failed(now_s, message),
    }
}

enum Event {
    Plan(PlanMessage),
    Control(ExecutorStatus),
    /// Perception's world model, for the goal checks.
    World(WorldModel),
    /// A step's goal was accepted by control.
    Accepted(u64, r2r::ActionClientGoal<RunSkill::Action>),
    /// A step's goal ended: (generation, state, message).
    Ended(u64, String, String),
    Heartbeat,
}

pub async fn run(args: ExecutiveArgs) -> anyhow::Result<()> {
    let mut node = ros::create_node("rosetta_executive")?;
    let plans = ros::json_subscription::<PlanMessage>(&mut node, topics::PLAN)?.map(Event::Plan);
    let controls = ros::json_subscription::<ExecutorStatus>(&mut node, topics::CONTROL_STATUS)?
        .map(Event::Control);
    let worlds =
        ros::json_subscription::<WorldModel>(&mut node, topics::OBJECTS)?.map(Event::World);
    let client = node.create_action_client::<RunSkill::Action>(topics::SKILL)?;
    let status_pub = JsonPublisher::<ExecutorStatus>::new(&mut node, topics::STATUS)?;
    let server_up = Arc::new(AtomicBool::new(false));
    let available = r2r::Node::is_available(&client)?;
    let node = Arc::new(Mutex::new(node));
    let _spinner = Spinner::start(node.clone());
    let rec = rec::open_recording("executive");
    {
        let up = server_up.clone();
        tokio::spawn(async move {
            if available.await.is_ok() {
                tracing::info!("control's skill server is available");
                up.store(true, Ordering::Relaxed);
            }
        });
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let goal_events =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    let heartbeat = futures::stream::unfold((), |_| async {
        tokio::time::sleep(Duration::from_millis(250)).await;
        Some((Event::Heartbeat, ()))
    });
    let mut events = futures::stream::select_all(vec![
        plans.boxed(),
        controls.boxed(),
        worlds.boxed(),
        goal_events.boxed(),
        heartbeat.boxed(),
    ]);

    let mut run = PlanRun::default();
    // Each goal sent gets a new generation; results of older ones are stale.
    let mut generation = 0u64;
    let mut active: Option<(u64, r2r::ActionClientGoal<RunSkill::Action>)> = None;
    let mut control: Option<(Instant, ExecutorStatus)> = None;
    let mut world: Option<WorldModel> = None;
    let mut goal_check_since = Instant::now();
    let mut step_sent = Instant::now();
    // Each plan run gets a serial; the step last sent is (serial, index).
    let mut serial = 0u64;
    let mut sent: Option<(u64, usize)> = None;
    let mut last_published = Instant::now();
    tracing::info!("executive ready");

    let send_step = |generation: u64, skill: &Skill| {
        let goal = RunSkill::Goal {
            skill_json: serde_json::to_string(skill).unwrap_or_default(),
            timeout_s: step_timeout_s(skill),
        };
        let (client, tx, up) = (client.clone(), tx.clone(), server_up.clone());
        let accept_wait = Duration::from_secs_f64(args.accept_timeout_s.max(0.1));
        tokio::spawn(async move {
            let end = |state: &str, msg: String| {
                let _ = tx.send(Event::Ended(generation, state.into(), msg));
            };
            let ready = || up.load(Ordering::Relaxed);
            if ros::wait_until("the skill server", accept_wait, ready)
                .await
                .is_err()
            {
                return end(
                    "failed",
                    format!("control's {} action server is not available", topics::SKILL),
                );
            }
            let request = match client.send_goal_request(goal) {
                Ok(r) => r,
                Err(e) => return end("failed", format!("cannot send the skill goal: {e}")),
            };
            let (handle, result, mut feedback) =
                match tokio::time::timeout(accept_wait, request).await {
                    Err(_) => {
                        return end(
                            "failed",
                            format!(
                                "control did not accept the skill goal within {:.0} s",
                                accept_wait.as_secs_f64()
                            ),
                        )
                    }
                    Ok(Err(e)) => return end("failed", format!("control refused the goal: {e}")),
                    Ok(Ok(accepted)) => accepted,
                };
            let _ = tx.send(Event::Accepted(generation, handle));
            // Feedback is drained (control's status carries the same progress).
            let drain = tokio::spawn(async move { while feedback.next().await.is_some() {} });
            match result.await {
                Ok((_, r)) => end(&r.state, r.message),
                Err(e) => end("failed", format!("the skill goal's result was lost: {e}")),
            }
            drain.abort();
        });
    };
    let cancel = |goal: &r2r::ActionClientGoal<RunSkill::Action>| match goal.cancel() {
        Ok(f) => {
            tokio::spawn(async move {
                let _ = f.await;
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot cancel the skill goal"),
    };

    let work = async {
        while let Some(event) = events.next().await {
            let now_s = control.as_ref().map_or(0.0, |(_, c)| c.stamp_s);
            let before = (serial, run.task(), run.current().map(|c| c.0));
            match event {
                Event::Plan(p) => match p.outcome {
                    PlanOutcome::Plan { steps } => {
                        tracing::info!(
                            command_id = p.command_id,
                            attempt = p.attempt,
                            steps = steps.len(),
                            "starting plan"
                        );
                        log_text(
                            &rec,
                            "executive",
                            "INFO",
                            &format!("starting plan for {:?}", p.command),
                        );
                        // The new plan's first goal preempts the running one in control.
                        generation += 1;
                        serial += 1;
                        active = None;
                        run = PlanRun::start_with_goals(
                            p.command_id,
                            p.attempt,
                            steps,
                            p.goals,
                            now_s,
                        );
                    }
                    PlanOutcome::Rejected { reason } if p.attempt > 1 => {
                        // A re-plan that found no way: the failure stands.
                        tracing::warn!(command_id = p.command_id, %reason, "re-plan refused");
                    }
                    PlanOutcome::Rejected { reason } => {
                        // A refused command stops whatever ran before it.
                        generation += 1;
                        if let Some((_, g)) = active.take() {
                            cancel(&g);
                        }
                        serial += 1;
                        run = PlanRun::refused(p.command_id, &reason);
                    }
                },
                Event::Control(st) => control = Some((Instant::now(), st)),
                Event::World(w) => world = Some(w),
                Event::Accepted(g, handle) if g == generation => active = Some((g, handle)),
                Event::Accepted(..) => {}
                Event::Ended(g, state, message) if g == generation => {
                    active = None;
                    tracing::info!(%state, %message, "step ended");
                    apply_result(&mut run, now_s, &state, &message);
                    if run.awaits_goal_check().is_some() {
                        goal_check_since = Instant::now();
                    }
                }
                Event::Ended(..) => {}
                Event::Heartbeat => {
                    let silent = control
                        .as_ref()
                        .is_none_or(|(at, _)| at.elapsed().as_secs_f64() > args.control_timeout_s);
                    let waited = step_sent.elapsed().as_secs_f64() > args.control_timeout_s;
                    if run.is_running() && silent && waited {
                        generation += 1;
                        active = None;
                        let why = format!(
                            "control is not answering (no status for {:.0} s)",
                            args.control_timeout_s
                        );
                        tracing::error!("{why}");
                        log_text(&rec, "executive", "ERROR", &why);
                        run.step_failed(now_s, &why);
                    }
                }
            }
            // The goal is checked on a world model that perception made after
            // the last step (a dropped cube settles and is seen), or, if
            // perception is silent, on the latest one after a while.
            if let Some(done_s) = run.awaits_goal_check() {
                let fresh = world
                    .as_ref()
                    .is_some_and(|w| w.stamp_s >= done_s + GOAL_SETTLE_S);
                if fresh || goal_check_since.elapsed() > GOAL_CHECK_WAIT {
                    let pose = control.as_ref().map(|(_, c)| c.robot_pose);
                    run.check_goals(&world.clone().unwrap_or_default(), pose.as_ref());
                    for c in run.goal_checks() {
                        let level = if c.holds { "INFO" } else { "WARN" };
                        let verdict = if c.holds { "holds" } else { "does not hold" };
                        let line = format!("goal {} {verdict}: {}", c.goal.describe(), c.why);
                        tracing::info!("{line}");
                        log_text(&rec, "executive", level, &line);
                    }
                }
            }
            // A step that starts (a new plan, or the last step succeeded) goes to control.
            if let Some((index, skill)) = run.current() {
                if sent != Some((serial, index)) {
                    sent = Some((serial, index));
                    generation += 1;
                    step_sent = Instant::now();
                    tracing::info!(step = index + 1, skill = %skill.describe(), "sending step");
                    send_step(generation, skill);
                }
            }
            let changed = (serial, run.task(), run.current().map(|c| c.0)) != before;
            if changed || last_published.elapsed() > Duration::from_millis(500) {
                let st = status_of(&run, control.as_ref().map(|c| &c.1));
                if changed {
                    log_status(&rec, &st);
                }
                if let Err(e) = status_pub.publish(&st) {
                    tracing::warn!(error = %e, "cannot publish status");
                }
                last_published = Instant::now();
            }
        }
    };
    tokio::select! {
        _ = ros::shutdown_signal() => {}
        _ = work => {}
    }
    let _ = rec.flush_blocking();
    Ok(())
}

/// The plan's status, with the robot's pose, the control loop's timing and,
/// while a step runs, control's message about it.
fn status_of(run: &PlanRun, control: Option<&ExecutorStatus>) -> ExecutorStatus {
    let stamp_s = control.map_or(0.0, |c| c.stamp_s);
    let mut st = run.status(stamp_s, control.map(|c| c.robot_pose).unwrap_or_default());
    if let Some(c) = control {
        st.control_loop = c.control_loop;
        if run.is_running() && c.task == TaskState::Running {
            st.message = c.message.clone();
            st.progress = c.progress.clone();
        }
    }
    st
}

fn log_status(rec: &rerun::RecordingStream, s: &ExecutorStatus) {
    rec::set_sim_time(rec, s.stamp_s);
    // The plan-step timeline: the running step, or how far the plan got.
    let step = s
        .steps
        .iter()
        .filter(|st| st.state != StepState::Pending)
        .map(|st| st.index + 1)
        .max()
        .unwrap_or(0);
    rec::set_plan_step(rec, step);
    let mut md = format!("## Task: {:?}\n\n{}\n\n", s.task, s.message);
    for step in &s.steps {
        let mark = match &step.state {
            StepState::Pending => "⏳ pending".to_string(),
            StepState::Running => "▶ running".to_string(),
            StepState::Succeeded => "✅ done".to_string(),
            StepState::Failed { reason } => format!("❌ failed: {reason}"),
            StepState::Cancelled => "⏹ cancelled".to_string(),
        };
        md.push_str(&format!(
            "{}. `{}` {}\n",
            step.index + 1,
            step.skill.describe(),
            mark
        ));
    }
    let _ = rec.log("plan/status", &rerun::TextDocument::from_markdown(md));
    log_text(
        rec,
        "executive",
        "INFO",
        &format!("task {:?}: {}", s.task, s.message),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_steps() -> PlanRun {
        PlanRun::start(
            9,
            1,
            vec![
                Skill::NavigateTo {
                    target: "dock".into(),
                },
                Skill::Say { text: "hi".into() },
            ],
            0.0,
        )
    }

    #[test]
    fn results_map_to_plan_states() {
        let mut r = two_steps();
        apply_result(&mut r, 1.0, "succeeded", "at dock");
        assert_eq!(r.current().map(|c| c.0), Some(1));

        let mut r = two_steps();
        apply_result(&mut r, 1.0, "timed_out", "timed out after 120.0 s");
        assert_eq!(r.task(), TaskState::Failed);
        assert!(r.message().contains("timed out"), "{}", r.message());

        let mut r = two_steps();
        apply_result(&mut r, 1.0, "canceled", "e-stop engaged");
        assert_eq!(
            (r.task(), r.message()),
            (TaskState::Stopped, "e-stop engaged")
        );

        let mut r = two_steps();
        apply_result(&mut r, 1.0, "rejected", "e-stop engaged");
        assert_eq!(r.task(), TaskState::Stopped);
        assert!(r.message().starts_with("e-stop engaged: release it"));

        let mut r = two_steps();
        apply_result(&mut r, 1.0, "preempted", "preempted by a new skill goal");
        assert_eq!(r.task(), TaskState::Stopped, "not re-planned");

        let mut r = two_steps();
        apply_result(&mut r, 1.0, "rejected", "not a skill of the plan language");
        assert_eq!(r.task(), TaskState::Failed);
    }

    #[test]
    fn the_status_carries_controls_pose_timing_and_running_message() {
        let run = two_steps();
        let mut c = run.status(4.0, rosetta_common::Pose2D::new(1.0, 2.0, 0.5));
        c.task = TaskState::Running;
        c.message = "driving to dock: 1.2 m to go".into();
        let st = status_of(&run, Some(&c));
        assert_eq!(st.stamp_s, 4.0);
        assert_eq!(st.robot_pose.x_m, 1.0);
        assert_eq!(st.message, c.message);
        assert_eq!(st.steps.len(), 2);
    }
}
