//! The executive: carries out the planner's plans one skill at a time, each
//! as a goal of control's `/rosetta/skill` action (goal, feedback, result,
//! cancel, and a timeout per step), and publishes the state of every step on
//! `/rosetta/status`.
//!
//! The step bookkeeping is [`PlanRun`]; what a skill's result means for the
//! plan is [`apply_result`]. Both are pure. This module is the ROS 2 shell:
//! [`run`] wires the topics to an [`Executive`], whose handlers each take one
//! event.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use r2r::rosetta_interfaces::action::RunSkill;
use rosetta_common::plan::{PlanMessage, PlanOutcome};
use rosetta_common::rec::{self, log_text};
use rosetta_common::ros::{self, JsonPublisher, Spinner};
use rosetta_common::status::{SkillState, StepState, TaskState, TaskStatus};
use rosetta_common::{topics, Skill, WorldModel};

use crate::plan_run::{step_timeout_s, PlanRun};
use crate::rec::{log_lanes, StepLanes};

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
pub fn apply_result(run: &mut PlanRun, now_s: f64, state: SkillState, message: &str) {
    match state {
        SkillState::Succeeded => run.step_succeeded(now_s),
        // Stopped by a person (cancel, e-stop): the plan stops, no re-plan.
        SkillState::Canceled => run.stop(now_s, message),
        SkillState::Preempted => run.stop(now_s, &format!("preempted: {message}")),
        // The step failed, and the planner may try again. A result that
        // says "running" is no end at all: control broke the contract.
        SkillState::Failed | SkillState::TimedOut | SkillState::Rejected => {
            run.step_failed(now_s, message)
        }
        SkillState::Running => run.step_failed(
            now_s,
            &format!("control ended the skill goal as still running: {message}"),
        ),
    }
}

/// The state a skill result's wire word names; a word this executive does
/// not know is a failed step that says so.
fn skill_end(state: &str, message: String) -> (SkillState, String) {
    match SkillState::parse(state) {
        Some(s) => (s, message),
        None => (
            SkillState::Failed,
            format!("control answered with an unknown skill state {state:?}: {message}"),
        ),
    }
}

enum Event {
    Plan(PlanMessage),
    Control(TaskStatus),
    /// Perception's world model, for the goal checks.
    World(WorldModel),
    /// A step's goal was accepted by control.
    Accepted(u64, r2r::ActionClientGoal<RunSkill::Action>),
    /// A step's goal ended: (generation, state, message).
    Ended(u64, SkillState, String),
    Heartbeat,
}

type Events = futures::stream::SelectAll<futures::stream::BoxStream<'static, Event>>;

pub async fn run(args: ExecutiveArgs) -> anyhow::Result<()> {
    let mut node = ros::create_node("rosetta_executive")?;
    let plans = ros::json_subscription::<PlanMessage>(&mut node, topics::PLAN)?.map(Event::Plan);
    let controls = ros::json_subscription::<TaskStatus>(&mut node, topics::CONTROL_STATUS)?
        .map(Event::Control);
    let worlds =
        ros::json_subscription::<WorldModel>(&mut node, topics::OBJECTS)?.map(Event::World);
    let client = node.create_action_client::<RunSkill::Action>(topics::SKILL)?;
    let status_pub = JsonPublisher::<TaskStatus>::new(&mut node, topics::STATUS)?;
    let available = r2r::Node::is_available(&client)?;
    let node = Arc::new(Mutex::new(node));
    let _spinner = Spinner::start(node.clone());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let goal_events =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    let heartbeat = futures::stream::unfold((), |_| async {
        tokio::time::sleep(Duration::from_millis(250)).await;
        Some((Event::Heartbeat, ()))
    });
    let mut events: Events = futures::stream::select_all(vec![
        plans.boxed(),
        controls.boxed(),
        worlds.boxed(),
        goal_events.boxed(),
        heartbeat.boxed(),
    ]);
    let skills = SkillClient {
        client,
        tx,
        server_up: Arc::new(AtomicBool::new(false)),
        accept_wait: Duration::from_secs_f64(args.accept_timeout_s.max(0.1)),
    };
    skills.watch_server(available);
    let mut exec = Executive::new(args, skills, status_pub);
    tracing::info!("executive ready");
    let work = async {
        while let Some(event) = events.next().await {
            exec.handle(event);
        }
    };
    tokio::select! {
        _ = ros::shutdown_signal() => {}
        _ = work => {}
    }
    if let Err(e) = exec.rec.flush_blocking() {
        tracing::warn!(error = %e, "cannot flush the executive's recording");
    }
    Ok(())
}

/// Sends steps as goals of control's skill action; each goal's end comes
/// back as an [`Event::Ended`] of its generation.
struct SkillClient {
    client: r2r::ActionClient<RunSkill::Action>,
    tx: tokio::sync::mpsc::UnboundedSender<Event>,
    server_up: Arc<AtomicBool>,
    accept_wait: Duration,
}

impl SkillClient {
    fn watch_server(
        &self,
        available: impl std::future::Future<Output = r2r::Result<()>> + Send + 'static,
    ) {
        let up = self.server_up.clone();
        tokio::spawn(async move {
            if available.await.is_ok() {
                tracing::info!("control's skill server is available");
                up.store(true, Ordering::Relaxed);
            }
        });
    }

    fn send(&self, generation: u64, skill: &Skill) {
        let goal = RunSkill::Goal {
            skill_json: serde_json::to_string(skill).unwrap_or_default(),
            timeout_s: step_timeout_s(skill),
        };
        tokio::spawn(run_goal(
            self.client.clone(),
            self.tx.clone(),
            self.server_up.clone(),
            self.accept_wait,
            generation,
            goal,
        ));
    }

    fn cancel(&self, goal: &r2r::ActionClientGoal<RunSkill::Action>) {
        match goal.cancel() {
            Ok(f) => {
                tokio::spawn(async move {
                    if let Err(e) = f.await {
                        tracing::warn!(error = %e, "control did not cancel the skill goal");
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot cancel the skill goal"),
        }
    }
}

/// One skill goal from request to result; its end (or why it never
/// started) goes back to the executive as [`Event::Ended`].
async fn run_goal(
    client: r2r::ActionClient<RunSkill::Action>,
    tx: tokio::sync::mpsc::UnboundedSender<Event>,
    server_up: Arc<AtomicBool>,
    accept_wait: Duration,
    generation: u64,
    goal: RunSkill::Goal,
) {
    let end = |state: SkillState, msg: String| {
        if tx.send(Event::Ended(generation, state, msg)).is_err() {
            tracing::debug!("the executive stopped before a skill goal ended");
        }
    };
    let ready = || server_up.load(Ordering::Relaxed);
    if ros::wait_until("the skill server", accept_wait, ready)
        .await
        .is_err()
    {
        let why = format!("control's {} action server is not available", topics::SKILL);
        return end(SkillState::Failed, why);
    }
    let request = match client.send_goal_request(goal) {
        Ok(r) => r,
        Err(e) => {
            return end(
                SkillState::Failed,
                format!("cannot send the skill goal: {e}"),
            )
        }
    };
    let (handle, result, mut feedback) = match tokio::time::timeout(accept_wait, request).await {
        Err(_) => {
            let why = format!(
                "control did not accept the skill goal within {:.0} s",
                accept_wait.as_secs_f64()
            );
            return end(SkillState::Failed, why);
        }
        Ok(Err(e)) => return end(SkillState::Failed, format!("control refused the goal: {e}")),
        Ok(Ok(accepted)) => accepted,
    };
    if tx.send(Event::Accepted(generation, handle)).is_err() {
        return;
    }
    // Feedback is drained (control's status carries the same progress).
    let drain = tokio::spawn(async move { while feedback.next().await.is_some() {} });
    let (state, message) = match result.await {
        Ok((_, r)) => skill_end(&r.state, r.message),
        Err(e) => (
            SkillState::Failed,
            format!("the skill goal's result was lost: {e}"),
        ),
    };
    end(state, message);
    drain.abort();
}

/// The executive's state between events: the plan run, control's and
/// perception's latest word, and the step goal in flight.
struct Executive {
    args: ExecutiveArgs,
    skills: SkillClient,
    status_pub: JsonPublisher<TaskStatus>,
    rec: rerun::RecordingStream,
    run: PlanRun,
    /// Each goal sent gets a new generation; results of older ones are stale.
    generation: u64,
    active: Option<(u64, r2r::ActionClientGoal<RunSkill::Action>)>,
    control: Option<(Instant, TaskStatus)>,
    world: Option<WorldModel>,
    goal_check_since: Instant,
    step_sent: Instant,
    /// Each plan run gets a serial; the step last sent is (serial, index).
    serial: u64,
    sent: Option<(u64, usize)>,
    last_published: Instant,
    lanes: StepLanes,
}

impl Executive {
    fn new(
        args: ExecutiveArgs,
        skills: SkillClient,
        status_pub: JsonPublisher<TaskStatus>,
    ) -> Self {
        Self {
            args,
            skills,
            status_pub,
            rec: rec::open_recording("executive"),
            run: PlanRun::default(),
            generation: 0,
            active: None,
            control: None,
            world: None,
            goal_check_since: Instant::now(),
            step_sent: Instant::now(),
            serial: 0,
            sent: None,
            last_published: Instant::now(),
            lanes: StepLanes::default(),
        }
    }

    /// Sim time, as control last said it.
    fn now_s(&self) -> f64 {
        self.control.as_ref().map_or(0.0, |(_, c)| c.stamp_s)
    }

    fn handle(&mut self, event: Event) {
        let before = (
            self.serial,
            self.run.task(),
            self.run.current().map(|c| c.0),
        );
        match event {
            Event::Plan(p) => self.on_plan(p),
            Event::Control(st) => self.control = Some((Instant::now(), st)),
            Event::World(w) => self.world = Some(w),
            Event::Accepted(g, handle) if g == self.generation => self.active = Some((g, handle)),
            Event::Accepted(..) => {}
            Event::Ended(g, state, message) if g == self.generation => {
                self.on_step_ended(state, &message)
            }
            Event::Ended(..) => {}
            Event::Heartbeat => self.on_heartbeat(),
        }
        self.check_goals_when_settled();
        self.send_next_step();
        let changed = (
            self.serial,
            self.run.task(),
            self.run.current().map(|c| c.0),
        ) != before;
        self.publish_status(changed);
    }

    fn on_plan(&mut self, p: PlanMessage) {
        let now_s = self.now_s();
        match p.outcome {
            PlanOutcome::Plan { steps } => {
                tracing::info!(
                    command_id = p.command_id,
                    attempt = p.attempt,
                    steps = steps.len(),
                    "starting plan"
                );
                let line = format!("starting plan for \"{}\"", p.command);
                log_text(&self.rec, "executive", "INFO", &line);
                // The new plan's first goal preempts the running one in control.
                self.generation += 1;
                self.serial += 1;
                self.active = None;
                self.run =
                    PlanRun::start_with_goals(p.command_id, p.attempt, steps, p.goals, now_s);
            }
            PlanOutcome::Rejected { reason } if p.attempt > 1 => {
                // A re-plan that found no way: the failure stands.
                tracing::warn!(command_id = p.command_id, %reason, "re-plan refused");
            }
            PlanOutcome::Rejected { reason } => {
                // A refused command stops whatever ran before it.
                self.generation += 1;
                if let Some((_, g)) = self.active.take() {
                    self.skills.cancel(&g);
                }
                self.serial += 1;
                self.run = PlanRun::refused(p.command_id, &reason);
            }
        }
    }

    fn on_step_ended(&mut self, state: SkillState, message: &str) {
        self.active = None;
        tracing::info!(state = state.as_str(), %message, "step ended");
        let now_s = self.now_s();
        apply_result(&mut self.run, now_s, state, message);
        if self.run.awaits_goal_check().is_some() {
            self.goal_check_since = Instant::now();
        }
    }

    /// A running step whose control went silent fails.
    fn on_heartbeat(&mut self) {
        let limit_s = self.args.control_timeout_s;
        let silent = self
            .control
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed().as_secs_f64() > limit_s);
        let waited = self.step_sent.elapsed().as_secs_f64() > limit_s;
        if self.run.is_running() && silent && waited {
            self.generation += 1;
            self.active = None;
            let why = format!("control is not answering (no status for {limit_s:.0} s)");
            tracing::error!("{why}");
            log_text(&self.rec, "executive", "ERROR", &why);
            let now_s = self.now_s();
            self.run.step_failed(now_s, &why);
        }
    }

    /// The goal is checked on a world model that perception made after the
    /// last step (a dropped cube settles and is seen), or, if perception is
    /// silent, on the latest one after a while.
    fn check_goals_when_settled(&mut self) {
        let Some(done_s) = self.run.awaits_goal_check() else {
            return;
        };
        let fresh = self
            .world
            .as_ref()
            .is_some_and(|w| w.stamp_s >= done_s + GOAL_SETTLE_S);
        if !fresh && self.goal_check_since.elapsed() <= GOAL_CHECK_WAIT {
            return;
        }
        let pose = self.control.as_ref().map(|(_, c)| c.robot_pose);
        let world = self.world.clone().unwrap_or_default();
        self.run.check_goals(&world, pose.as_ref());
        for c in self.run.goal_checks() {
            let level = if c.holds { "INFO" } else { "WARN" };
            let verdict = if c.holds { "holds" } else { "does not hold" };
            let line = format!("goal {} {verdict}: {}", c.goal.describe(), c.why);
            tracing::info!("{line}");
            log_text(&self.rec, "executive", level, &line);
        }
    }

    /// A step that starts (a new plan, or the last step succeeded) goes to control.
    fn send_next_step(&mut self) {
        let Some((index, skill)) = self.run.current() else {
            return;
        };
        if self.sent == Some((self.serial, index)) {
            return;
        }
        self.sent = Some((self.serial, index));
        self.generation += 1;
        self.step_sent = Instant::now();
        tracing::info!(step = index + 1, skill = %skill.describe(), "sending step");
        self.skills.send(self.generation, skill);
    }

    /// On every change, and as a heartbeat.
    fn publish_status(&mut self, changed: bool) {
        if !changed && self.last_published.elapsed() <= Duration::from_millis(500) {
            return;
        }
        let st = status_of(&self.run, self.control.as_ref().map(|c| &c.1));
        if changed {
            log_status(&self.rec, &st);
            log_lanes(&self.rec, &self.lanes.changes(&st));
        }
        if let Err(e) = self.status_pub.publish(&st) {
            tracing::warn!(error = %e, "cannot publish status");
        }
        self.last_published = Instant::now();
    }
}

/// The plan's status, with the robot's pose, the control loop's timing and,
/// while a step runs, control's message about it.
fn status_of(run: &PlanRun, control: Option<&TaskStatus>) -> TaskStatus {
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

fn log_status(rec: &rerun::RecordingStream, s: &TaskStatus) {
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
    let mut md = format!("## Task: {}\n\n{}\n\n", s.task.as_str(), s.message);
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
    if let Err(e) = rec.log("plan/status", &rerun::TextDocument::from_markdown(md)) {
        tracing::debug!(error = %e, "cannot record the plan status");
    }
    let line = format!("task {}: {}", s.task.as_str(), s.message);
    log_text(rec, "executive", "INFO", &line);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_steps() -> PlanRun {
        let steps = vec![
            Skill::NavigateTo {
                target: "dock".into(),
            },
            Skill::Say { text: "hi".into() },
        ];
        PlanRun::start(9, 1, rosetta_common::ValidPlan::new(steps).unwrap(), 0.0)
    }

    #[test]
    fn results_map_to_plan_states() {
        let mut r = two_steps();
        apply_result(&mut r, 1.0, SkillState::Succeeded, "at dock");
        assert_eq!(r.current().map(|c| c.0), Some(1));

        let mut r = two_steps();
        apply_result(&mut r, 1.0, SkillState::TimedOut, "timed out after 120.0 s");
        assert_eq!(r.task(), TaskState::Failed);
        assert!(r.message().contains("timed out"), "{}", r.message());

        // The e-stop cancels (or refuses to start) a step: the plan stops.
        let mut r = two_steps();
        apply_result(&mut r, 1.0, SkillState::Canceled, "e-stop engaged");
        assert_eq!(
            (r.task(), r.message()),
            (TaskState::Stopped, "e-stop engaged")
        );

        let mut r = two_steps();
        apply_result(
            &mut r,
            1.0,
            SkillState::Preempted,
            "preempted by a new skill goal",
        );
        assert_eq!(r.task(), TaskState::Stopped, "not re-planned");

        for failed in [
            SkillState::Rejected,
            SkillState::Failed,
            SkillState::Running,
        ] {
            let mut r = two_steps();
            apply_result(&mut r, 1.0, failed, "not a skill of the plan language");
            assert_eq!(r.task(), TaskState::Failed, "{failed:?}");
        }
    }

    #[test]
    fn wire_words_map_once_and_an_unknown_one_is_a_failure() {
        for s in SkillState::ALL {
            assert_eq!(skill_end(s.as_str(), "m".into()), (s, "m".to_string()));
        }
        let (state, why) = skill_end("exploded", "boom".into());
        assert_eq!(state, SkillState::Failed);
        assert!(
            why.contains("\"exploded\"") && why.ends_with("boom"),
            "{why}"
        );
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
