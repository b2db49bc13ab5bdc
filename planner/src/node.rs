//! The planner as an r2r node: commands in, plans out, grounded in the latest world model.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use r2r::rosetta_interfaces::action::ExecuteCommand;
use rosetta_common::plan::{CommandMessage, PlanMessage, PlanOutcome};
use rosetta_common::rec::{self, log_text};
use rosetta_common::ros::{self, JsonPublisher, Spinner};
use rosetta_common::status::{StepState, TaskState, TaskStatus};
use rosetta_common::{topics, WorldModel};

use crate::command_action::{self, GoalTracker, Progress};
use crate::compile::Referent;
use crate::pipeline::{Pipeline, Planned, PlannerKind};

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
    let statuses = ros::json_subscription::<TaskStatus>(&mut node, topics::STATUS)?;
    let worlds = ros::json_subscription::<WorldModel>(&mut node, topics::OBJECTS)?;
    let plans = JsonPublisher::<PlanMessage>::new(&mut node, topics::PLAN)?;
    let goal_requests = node.create_action_server::<ExecuteCommand::Action>(topics::EXECUTE)?;
    let node = Arc::new(Mutex::new(node));
    let _spinner = Spinner::start(node.clone());
    let rec = rec::open_recording("planner");
    let llm = load_model(&args).await?;
    let planner_name = args.planner.name();
    let pipeline = Arc::new(Pipeline::new(args.planner, llm).map_err(anyhow::Error::msg)?);
    let latest_world = follow_worlds(worlds);

    tracing::info!(planner = planner_name, "planner ready");
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
    let mut planner = PlannerLoop {
        args: &args,
        planner_name,
        pipeline,
        plans,
        rec: &rec,
        latest_world,
        observed,
        cancelled,
        max_attempts: args.max_retries + 1,
        active: None,
        stop_ids: 0,
        held: None,
        surveying: false,
        may_survey: true,
    };
    let work = async {
        while let Some(event) = events.next().await {
            planner.on_event(event).await;
        }
    };
    tokio::select! {
        _ = ros::shutdown_signal() => {}
        _ = work => {}
    }
    if let Err(e) = rec.flush_blocking() {
        tracing::warn!(error = %e, "cannot flush the planner's recording");
    }
    Ok(())
}

/// The language model, when the planner needs one (seconds to load: off
/// the async runtime's threads).
async fn load_model(args: &PlannerArgs) -> anyhow::Result<Option<Arc<crate::llm::LlmPlanner>>> {
    if !args.planner.needs_model() {
        return Ok(None);
    }
    let model = args.model.clone();
    let source = model.source()?;
    tracing::info!(path = %source.weights.display(), "loading the language model");
    let loaded = tokio::task::spawn_blocking(move || model.load()).await??;
    Ok(Some(Arc::new(loaded)))
}

/// The latest world model from perception, kept up to date by a task.
fn follow_worlds(
    mut worlds: impl futures::Stream<Item = WorldModel> + Unpin + Send + 'static,
) -> Arc<Mutex<Option<WorldModel>>> {
    let latest_world: Arc<Mutex<Option<WorldModel>>> = Arc::new(Mutex::new(None));
    let lw = latest_world.clone();
    tokio::spawn(async move {
        while let Some(w) = worlds.next().await {
            if let Ok(mut g) = lw.lock() {
                *g = Some(w);
            }
        }
    });
    latest_world
}

/// Tells the action goals that follow the planner loop what it published or
/// heard. An error only means that no goal follows the loop now (commands
/// from the topic): nothing is lost, so it is traced, not warned about.
fn tell_goals(observed: &tokio::sync::broadcast::Sender<Observed>, what: Observed) {
    if observed.send(what).is_err() {
        tracing::trace!("no action goal follows the planner loop");
    }
}

/// The planner loop: the command being carried out, its attempts, and
/// where its plans go.
struct PlannerLoop<'a> {
    args: &'a PlannerArgs,
    planner_name: &'static str,
    pipeline: Arc<Pipeline>,
    plans: JsonPublisher<PlanMessage>,
    rec: &'a rerun::RecordingStream,
    latest_world: Arc<Mutex<Option<WorldModel>>>,
    observed: tokio::sync::broadcast::Sender<Observed>,
    /// Goals whose clients canceled them while their command was planned.
    cancelled: Arc<Mutex<HashSet<u64>>>,
    max_attempts: u32,
    /// The command being carried out, and which attempt at it runs now.
    active: Option<(CommandMessage, u32)>,
    /// Stop plans sent for canceled goals (their command ids).
    stop_ids: u64,
    /// What the robot holds after the last failed attempt (a re-plan starts there).
    held: Option<String>,
    /// Whether the active attempt's plan is a survey (a look around).
    surveying: bool,
    /// Whether the command may still get a survey.
    may_survey: bool,
}

impl PlannerLoop<'_> {
    async fn on_event(&mut self, event: Event) {
        let next = match event {
            Event::Command(cmd) => {
                self.active = Some((cmd.clone(), 1));
                self.held = None;
                self.surveying = false;
                self.may_survey = true;
                Some((cmd, 1, None))
            }
            Event::Cancel(id) => {
                self.on_cancel(id);
                None
            }
            Event::Status(st) => self.on_status(&st),
        };
        if let Some((cmd, attempt, replan_reason)) = next {
            self.plan_and_publish(cmd, attempt, replan_reason).await;
        }
    }

    /// An action goal's client canceled it: if its command is the active
    /// one, the robot stops.
    fn on_cancel(&mut self, id: u64) {
        match &self.active {
            Some((c, _)) if c.command_id == id => {}
            _ => return,
        }
        self.active = None;
        self.stop_ids += 1;
        let stop = PlanMessage {
            command_id: (1 << 62) + self.stop_ids,
            command: format!("stop (goal {id} canceled)"),
            outcome: PlanOutcome::Plan {
                steps: rosetta_common::ValidPlan::stop(),
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
        if let Err(e) = self.plans.publish(&stop) {
            tracing::error!(error = %e, "cannot publish the stop plan");
        }
        tell_goals(&self.observed, Observed::Plan(stop));
    }

    /// A task status: the command to plan again, its attempt and why,
    /// when the active attempt failed (or its look around is done).
    fn on_status(&mut self, st: &TaskStatus) -> Option<(CommandMessage, u32, Option<String>)> {
        tell_goals(&self.observed, Observed::Status(st.clone()));
        if matches!(
            st.task,
            TaskState::Succeeded | TaskState::Failed | TaskState::Stopped
        ) {
            // The task is over: what its words meant is no longer shown.
            rec::set_sim_time(self.rec, st.stamp_s);
            rec::traced(
                GROUNDING_ENTITY,
                self.rec.log(GROUNDING_ENTITY, &rerun::Clear::recursive()),
            );
        }
        let (cmd, attempt) = self.active.as_mut()?;
        match replan_decision(
            st,
            cmd.command_id,
            *attempt,
            self.max_attempts,
            self.surveying,
        ) {
            Replan::No => None,
            Replan::GiveUp(why) => {
                tracing::warn!(command = %cmd.text, attempts = *attempt, %why, "giving up");
                log_text(
                    self.rec,
                    "planner",
                    "WARN",
                    &format!(
                        "giving up on {:?} after {attempt} attempts: {why}",
                        cmd.text
                    ),
                );
                self.active = None;
                None
            }
            Replan::Yes(why) => {
                *attempt += 1;
                self.held = held_after(st, self.held.take());
                tracing::info!(command = %cmd.text, attempt = *attempt, %why, "re-planning after a failure");
                rec::set_sim_time(self.rec, st.stamp_s);
                log_text(
                    self.rec,
                    "planner",
                    "WARN",
                    &format!("re-planning {:?} (attempt {attempt}): {why}", cmd.text),
                );
                Some((cmd.clone(), *attempt, Some(why)))
            }
        }
    }

    /// The latest world model, waiting a while for a first one.
    async fn world(&self) -> WorldModel {
        let current = |lw: &Arc<Mutex<Option<WorldModel>>>| lw.lock().ok().and_then(|g| g.clone());
        let has_world = || current(&self.latest_world).is_some();
        if ros::wait_until(
            "a world model",
            Duration::from_secs_f64(self.args.world_wait_s),
            has_world,
        )
        .await
        .is_err()
        {
            tracing::warn!("no world model from perception yet; planning against an empty one");
        }
        current(&self.latest_world).unwrap_or_default()
    }

    /// Plans one attempt at `cmd` off the async runtime's threads.
    async fn plan(&self, cmd: &CommandMessage, world: &WorldModel) -> Planned {
        let (p, text, w) = (self.pipeline.clone(), cmd.text.clone(), world.clone());
        let h = self.held.clone();
        let survey_ok = self.may_survey;
        match tokio::task::spawn_blocking(move || {
            p.plan_attempt(&text, &w, h.as_deref(), survey_ok)
        })
        .await
        {
            Ok(planned) => planned,
            Err(e) => {
                tracing::error!(error = %e, "the planner crashed");
                Planned {
                    outcome: PlanOutcome::Rejected {
                        reason: format!("the planner crashed: {e}"),
                    },
                    goals: vec![],
                    by: "none",
                    model: None,
                    survey: false,
                    referents: vec![],
                    ambiguous: None,
                }
            }
        }
    }

    /// Plans an attempt at `cmd`, records it, and publishes the plan (unless
    /// its goal was canceled meanwhile).
    async fn plan_and_publish(
        &mut self,
        cmd: CommandMessage,
        attempt: u32,
        replan_reason: Option<String>,
    ) {
        let world = self.world().await;
        let t0 = Instant::now();
        let planned = self.plan(&cmd, &world).await;
        // One look around per command: after it, what is still unseen is refused.
        self.surveying = planned.survey;
        self.may_survey &= !planned.survey;
        if let Some(out) = &planned.model {
            log_text(
                self.rec,
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
            planner: format!("{}:{}", self.planner_name, planned.by),
            planning_time_s: t0.elapsed().as_secs_f64(),
            attempt,
            max_attempts: self.max_attempts,
            replan_reason,
        };
        rec::set_sim_time(self.rec, world.stamp_s);
        log_grounding(
            self.rec,
            &cmd.text,
            &planned.referents,
            planned.ambiguous.as_ref(),
            &world,
        );
        log_plan(self.rec, &msg);
        match &msg.outcome {
            PlanOutcome::Plan { steps } => tracing::info!(
                command = %cmd.text,
                attempt,
                plan = %steps.iter().map(|s| s.describe()).collect::<Vec<_>>().join(" -> "),
                "planned"
            ),
            PlanOutcome::Rejected { reason } => {
                // A refusal is final: nothing runs, so nothing can fail and be re-planned.
                self.active = None;
                tracing::warn!(command = %cmd.text, %reason, "refused")
            }
        }
        let was_cancelled = self
            .cancelled
            .lock()
            .map(|mut c| c.remove(&cmd.command_id))
            .unwrap_or(false);
        if was_cancelled {
            tracing::info!(command = %cmd.text, "canceled while planning; the plan is dropped");
            self.active = None;
            return;
        }
        self.publish(msg).await;
    }

    /// Publishes a plan, once enough nodes subscribe (or after 5 s).
    async fn publish(&self, msg: PlanMessage) {
        let enough = || self.plans.subscribers() >= self.args.min_plan_subscribers;
        if ros::wait_until("plan subscribers", Duration::from_secs(5), enough)
            .await
            .is_err()
        {
            tracing::warn!("publishing the plan with fewer subscribers than expected");
        }
        if let Err(e) = self.plans.publish(&msg) {
            tracing::error!(error = %e, "cannot publish the plan");
        }
        tell_goals(&self.observed, Observed::Plan(msg));
    }
}

enum Event {
    Command(CommandMessage),
    Status(TaskStatus),
    /// An action goal's client canceled it.
    Cancel(u64),
}

/// What the planner loop publishes or hears, for the action goals to follow.
#[derive(Debug, Clone)]
enum Observed {
    Plan(PlanMessage),
    Status(TaskStatus),
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
                if to_loop.send(Event::Cancel(id)).is_err() {
                    tracing::warn!(command_id = id, "the planner loop has ended: cannot pass on the goal's cancel");
                }
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

/// What the planner does about a task status.
#[derive(Debug, Clone, PartialEq)]
pub enum Replan {
    No,
    /// Plan again: the executive failed this attempt, for this reason.
    Yes(String),
    /// The last allowed attempt failed.
    GiveUp(String),
}

/// Closed loop: a failed attempt of the active command is planned again,
/// against the world as it is now, until `max_attempts` plans have failed.
/// Stops and refusals are final; statuses of other commands or attempts
/// (heartbeats of an older attempt) change nothing.
pub fn replan_decision(
    st: &TaskStatus,
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
pub fn held_after(st: &TaskStatus, before: Option<String>) -> Option<String> {
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

/// Where the episode shows what the command's words resolved to.
const GROUNDING_ENTITY: &str = "world/grounding";

/// At the moment of grounding: each referring expression of the command
/// and the object it resolved to, highlighted in the 3-D scene (a yellow
/// frame around it, labelled with the words) and, through the camera's
/// view of the scene, on the image; for a refusal as ambiguous, every
/// candidate (orange). The words go to the log too.
fn log_grounding(
    rec: &rerun::RecordingStream,
    command: &str,
    referents: &[Referent],
    ambiguous: Option<&Referent>,
    world: &WorldModel,
) {
    if !rec.is_enabled() {
        return;
    }
    rec::traced(
        GROUNDING_ENTITY,
        rec.log(GROUNDING_ENTITY, &rerun::Clear::recursive()),
    );
    let resolved = referents.iter().map(|r| (r, false));
    let mut lines = Vec::new();
    for (k, (r, is_candidate)) in resolved.chain(ambiguous.map(|a| (a, true))).enumerate() {
        let objects: Vec<_> = r.ids.iter().filter_map(|id| world.get(id)).collect();
        if objects.is_empty() {
            continue;
        }
        let color = if is_candidate {
            rerun::Color::from_rgb(255, 140, 0)
        } else {
            rerun::Color::from_rgb(255, 225, 0)
        };
        let label = |id: &str| {
            if is_candidate {
                format!("\"{}\"? {id}", r.words)
            } else {
                format!("\"{}\" → {id}", r.words)
            }
        };
        let centers: Vec<[f32; 3]> = objects
            .iter()
            .map(|o| o.position_m.map(|x| x as f32))
            .collect();
        let sizes: Vec<[f32; 3]> = objects
            .iter()
            .map(|o| o.size_or_nominal_m().map(|s| (s + 0.04) as f32))
            .collect();
        let labels: Vec<String> = objects.iter().map(|o| label(&o.id)).collect();
        let path = format!("{GROUNDING_ENTITY}/{k}");
        rec::traced(
            &path,
            rec.log(
                path.as_str(),
                &rerun::Boxes3D::from_centers_and_sizes(centers, sizes)
                    .with_colors([color])
                    .with_radii([0.006])
                    .with_labels(labels),
            ),
        );
        let ids = r.ids.join(", ");
        lines.push(if is_candidate {
            format!("\"{}\" fits {} things: {ids}", r.words, r.ids.len())
        } else {
            format!("\"{}\" → {ids}", r.words)
        });
    }
    if !lines.is_empty() {
        let text = format!("grounded {command:?}: {}", lines.join("; "));
        tracing::info!("{text}");
        log_text(rec, "planner", "INFO", &text);
    }
}

fn log_plan(rec: &rerun::RecordingStream, msg: &PlanMessage) {
    let body = match &msg.outcome {
        PlanOutcome::Plan { steps } => {
            // A short heading: a narrow view cuts a long one.
            let mut s = format!("**Plan {}**: \"{}\"\n\n", msg.attempt, msg.command);
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
            format!("**Refused**: \"{}\"\n\n{}\n", msg.command, reason)
        }
    };
    if let Err(e) = rec.log("plan/steps", &rerun::TextDocument::from_markdown(body)) {
        tracing::warn!(error = %e, "cannot record the plan");
    }
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

    fn status(command_id: u64, attempt: u32, task: TaskState) -> TaskStatus {
        TaskStatus {
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
