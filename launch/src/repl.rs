//! `rosetta repl`: the operator's console. Typed or spoken commands go to the
//! stack as goals of the `/rosetta/execute` action; the plan, the running
//! step and its progress print above the prompt while the robot works.
//!
//! `stop` works at once whatever runs: it sends the command "stop", which
//! preempts the running step, and if the stack does not confirm the stop in
//! time it engages the e-stop (`/rosetta/estop`). Ctrl-C does the same, then
//! exits, so the console never leaves a robot moving.
//!
//! The parts free of ROS ([`parse`], [`GoalView`], [`render`]) are unit
//! tested; the e2e tests drive the console over ROS 2 with `--json`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use r2r::rosetta_interfaces::action::ExecuteCommand;
use rosetta_common::ros::{self, Spinner};
use rosetta_common::status::CommandOutcome;
use rosetta_common::{topics, WorldModel};
use serde::Serialize;
use tokio::sync::mpsc;

/// The operator's console: type a command (or say one), watch the plan run.
///
/// Commands are words for the robot ("put the red cube in the blue bin");
/// a new command preempts the running one. Console words:
///   stop | halt     stop the robot now, whatever runs (falls back to the e-stop)
///   estop           engage the e-stop at once (the robot holds until `release`)
///   release         release the e-stop
///   listen          speak one command into the microphone (ends at a pause)
///   hear FILE.wav   run the spoken commands of a recording, one after another
///   help            this list
///   quit            leave (stops the robot first if something runs)
/// Ctrl-C stops the robot and leaves. History is kept across sessions.
///
/// It talks to a running stack (`rosetta up`, Gazebo or a robot); `rosetta up
/// --repl` starts the stack and the console in one command.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplArgs {
    /// One JSON object per event on stdout (sent, plan, step, result,
    /// stopping, stopped, heard, error), for scripts; no prompt.
    #[arg(long)]
    pub json: bool,
    /// The stack's ROS namespace (as `rosetta up --namespace`).
    #[arg(long, env = "ROSETTA_NAMESPACE", default_value = "")]
    pub namespace: String,
    /// How long `stop` waits for the stack to confirm before it engages the e-stop.
    #[arg(long, default_value_t = 2.0)]
    pub stop_confirm_s: f64,
    /// How long to wait for the stack's action server at start.
    #[arg(long, default_value_t = 30.0)]
    pub wait_s: f64,
    /// The speech model folder for `listen` and `hear` (converted at set-up).
    #[arg(long, env = "ROSETTA_WHISPER_DIR")]
    pub whisper: Option<PathBuf>,
    /// The history file (default: ~/.local/state/rosetta/repl_history).
    #[arg(long)]
    pub history: Option<PathBuf>,
}

/// What one line of input asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Run(String),
    Stop,
    EStop,
    Release,
    Listen,
    Hear(PathBuf),
    Help,
    Quit,
    Nothing,
}

/// Reads a line. Any line whose first word is "stop", "halt" or "freeze" is
/// the console's stop: it must not wait for a planner to read it.
pub fn parse(line: &str) -> Request {
    let text = line.trim();
    let lower = text.to_lowercase();
    let first = lower
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_end_matches(['!', '.', ',']);
    match first {
        "" => Request::Nothing,
        "stop" | "halt" | "freeze" => Request::Stop,
        "estop" | "e-stop" if lower.split_whitespace().count() == 1 => Request::EStop,
        "release" if lower.split_whitespace().count() == 1 => Request::Release,
        "listen" if lower.split_whitespace().count() == 1 => Request::Listen,
        "help" | "?" => Request::Help,
        "quit" | "exit" | "q" => Request::Quit,
        "hear" => match text.split_once(char::is_whitespace) {
            Some((_, path)) if !path.trim().is_empty() => Request::Hear(path.trim().into()),
            _ => Request::Run(text.to_string()),
        },
        _ => Request::Run(text.to_string()),
    }
}

/// What the console reports; `--json` prints these as they are.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Ready {
        action: String,
    },
    Sent {
        goal: u64,
        command: String,
    },
    Plan {
        goal: u64,
        attempt: u32,
        steps: Vec<String>,
    },
    Step {
        goal: u64,
        index: i32,
        of: usize,
        step: String,
        message: String,
    },
    Result {
        goal: u64,
        command: String,
        outcome: GoalEnd,
        message: String,
        attempts: u32,
        elapsed_s: f64,
    },
    Stopping {
        reason: String,
    },
    Stopped {
        via: String,
        message: String,
    },
    Heard {
        text: String,
        audio_s: f64,
        transcribe_s: f64,
    },
    Info {
        message: String,
    },
    Error {
        message: String,
    },
}

/// One goal's feedback, as `ExecuteCommand.action` has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    pub attempt: u32,
    pub steps: Vec<String>,
    pub current_step: i32,
    pub task_state: String,
    pub message: String,
}

/// What the console knows of one goal: it reports only what changed.
#[derive(Debug, Clone)]
pub struct GoalView {
    pub id: u64,
    pub command: String,
    pub started: Instant,
    attempt: u32,
    steps: Vec<String>,
    step: Option<(i32, String)>,
}

impl GoalView {
    pub fn new(id: u64, command: &str) -> Self {
        Self {
            id,
            command: command.to_string(),
            started: Instant::now(),
            attempt: 0,
            steps: Vec::new(),
            step: None,
        }
    }

    /// The events a feedback brings: the plan when it is new (or re-made),
    /// the running step when it or its progress changed.
    pub fn on_feedback(&mut self, f: &Feedback) -> Vec<Event> {
        let mut out = Vec::new();
        if !f.steps.is_empty() && (f.steps != self.steps || f.attempt != self.attempt) {
            self.steps = f.steps.clone();
            self.attempt = f.attempt;
            self.step = None;
            out.push(Event::Plan {
                goal: self.id,
                attempt: f.attempt,
                steps: f.steps.clone(),
            });
        }
        let now = (f.current_step, f.message.clone());
        if f.current_step >= 0 && self.step.as_ref() != Some(&now) {
            let step = usize::try_from(f.current_step)
                .ok()
                .and_then(|i| self.steps.get(i))
                .cloned()
                .unwrap_or_default();
            out.push(Event::Step {
                goal: self.id,
                index: f.current_step,
                of: self.steps.len(),
                step,
                message: f.message.clone(),
            });
            self.step = Some(now);
        }
        out
    }
}

/// An event in words, for a person at the console.
pub fn render(e: &Event) -> String {
    match e {
        Event::Ready { action } => format!(
            "connected to {action}. Type a command, `help`, or `stop`; Ctrl-C stops the robot and leaves."
        ),
        Event::Sent { goal, command } => format!("[{goal}] sent: {command}"),
        Event::Plan {
            goal,
            attempt,
            steps,
        } => {
            let head = if *attempt > 1 {
                format!("[{goal}] re-plan (attempt {attempt}):")
            } else {
                format!("[{goal}] plan:")
            };
            let lines: Vec<String> = steps
                .iter()
                .enumerate()
                .map(|(i, s)| format!("      {}. {s}", i + 1))
                .collect();
            format!("{head}\n{}", lines.join("\n"))
        }
        Event::Step {
            goal,
            index,
            of,
            step,
            message,
        } => {
            let detail = if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            };
            format!("[{goal}] > step {}/{of} {step}{detail}", index + 1)
        }
        Event::Result {
            goal,
            outcome,
            message,
            elapsed_s,
            ..
        } => {
            let mark = if outcome.succeeded() { "done" } else { "ENDED" };
            format!("[{goal}] {mark}: {outcome} after {elapsed_s:.1} s ({message})")
        }
        Event::Stopping { reason } => format!("stopping ({reason})"),
        Event::Stopped { via, message } => format!("STOPPED via {via}: {message}"),
        Event::Heard {
            text,
            audio_s,
            transcribe_s,
        } => format!("heard \"{text}\" ({audio_s:.1} s of speech, {transcribe_s:.2} s to transcribe)"),
        Event::Info { message } => message.clone(),
        Event::Error { message } => format!("error: {message}"),
    }
}

const HELP: &str = "Commands are words for the robot (\"put the red cube in the blue bin\"); a new one preempts the running one.
  stop | halt     stop the robot now, whatever runs (the e-stop if the stack does not confirm)
  estop           engage the e-stop at once; `release` releases it
  listen          speak one command (the microphone; it ends at a pause)
  hear FILE.wav   run the spoken commands in a recording, one after another
  quit            leave (stops the robot first); Ctrl-C does the same";

/// Where events go: above the prompt on a terminal, else plain lines.
struct Out {
    json: bool,
    printer: Option<Box<dyn rustyline::ExternalPrinter + Send>>,
}

impl Out {
    fn emit(&mut self, e: &Event) {
        let line = if self.json {
            serde_json::to_string(e)
                .unwrap_or_else(|err| format!("{{\"event\":\"error\",\"message\":\"{err}\"}}"))
        } else {
            render(e)
        };
        if let Some(p) = self.printer.as_mut() {
            if p.print(format!("{line}\n")).is_ok() {
                return;
            }
        }
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
            // Whoever read the console's output has gone: nobody to tell.
            tracing::debug!(error = %e, "cannot print an event on stdout");
        }
    }
}

/// How a command's goal ended for the console: the stack's outcome, or
/// why no result came.
#[derive(Debug, Clone, PartialEq)]
pub enum GoalEnd {
    Stack(CommandOutcome),
    NoResult(NoResult),
    /// A result whose outcome word this console does not know.
    Unknown(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoResult {
    NotSent,
    Rejected,
    Lost,
}

impl GoalEnd {
    /// The result's `outcome` word, mapped once, here.
    fn read(word: &str) -> Self {
        CommandOutcome::parse(word)
            .map_or_else(|| GoalEnd::Unknown(word.to_string()), GoalEnd::Stack)
    }

    fn succeeded(&self) -> bool {
        *self == GoalEnd::Stack(CommandOutcome::Succeeded)
    }
}

/// In `--json` events, the outcome is its word.
impl Serialize for GoalEnd {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::fmt::Display for GoalEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GoalEnd::Stack(o) => f.write_str(o.as_str()),
            GoalEnd::NoResult(NoResult::NotSent) => f.write_str("not_sent"),
            GoalEnd::NoResult(NoResult::Rejected) => f.write_str("rejected"),
            GoalEnd::NoResult(NoResult::Lost) => f.write_str("lost"),
            GoalEnd::Unknown(word) => write!(f, "unknown outcome {word:?}"),
        }
    }
}

/// What the console's loop reacts to.
enum Msg {
    Line(Request),
    Interrupt,
    Eof,
    Accepted(u64, r2r::ActionClientGoal<ExecuteCommand::Action>),
    Feedback(u64, Feedback),
    Done {
        goal: u64,
        outcome: GoalEnd,
        message: String,
        attempts: u32,
    },
    StopDeadline(u64),
    Heard(Result<Vec<(String, f64, f64)>, String>),
}

fn history_path(args: &ReplArgs) -> Option<PathBuf> {
    args.history.clone().or_else(|| {
        std::env::var_os("HOME").map(|h| {
            PathBuf::from(h)
                .join(".local")
                .join("state")
                .join("rosetta")
                .join("repl_history")
        })
    })
}

/// Hands a message to the console's loop. Once the loop has ended (the
/// console is leaving) nobody is left to tell, which is harmless.
fn tell(tx: &mpsc::UnboundedSender<Msg>, msg: Msg) {
    if let Err(e) = tx.send(msg) {
        tracing::debug!(error = %e, "the console has ended; message dropped");
    }
}

/// Keeps a line in the editor's history and appends it to the history file.
/// The history is a convenience: failures are logged at debug level only, as
/// anything printed now would land in the middle of the prompt.
fn remember(rl: &mut rustyline::DefaultEditor, line: &str, history: Option<&std::path::Path>) {
    if let Err(e) = rl.add_history_entry(line) {
        tracing::debug!(error = %e, "cannot add the line to the history");
    }
    let Some(h) = history else {
        return;
    };
    if let Some(dir) = h.parent() {
        if let Err(e) = std::fs::create_dir_all(dir) {
            tracing::debug!(error = %e, "cannot create {}", dir.display());
        }
    }
    if let Err(e) = rl.append_history(h) {
        tracing::debug!(error = %e, "cannot append to {}", h.display());
    }
}

/// Reads lines on a thread of its own (rustyline blocks) and hands them on.
fn spawn_input(
    tx: mpsc::UnboundedSender<Msg>,
    history: Option<PathBuf>,
    prompt: &'static str,
) -> anyhow::Result<Option<Box<dyn rustyline::ExternalPrinter + Send>>> {
    let mut rl = rustyline::DefaultEditor::new()?;
    if let Some(h) = &history {
        if let Err(e) = rl.load_history(h) {
            // No history yet is normal.
            tracing::debug!(error = %e, "no history loaded from {}", h.display());
        }
    }
    let printer = rl
        .create_external_printer()
        .ok()
        .map(|p| Box::new(p) as Box<dyn rustyline::ExternalPrinter + Send>);
    std::thread::Builder::new()
        .name("repl-input".into())
        .spawn(move || loop {
            match rl.readline(prompt) {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        remember(&mut rl, &line, history.as_deref());
                    }
                    let request = parse(&line);
                    let quit = request == Request::Quit;
                    if tx.send(Msg::Line(request)).is_err() || quit {
                        break;
                    }
                }
                Err(rustyline::error::ReadlineError::Interrupted) => {
                    // No more reading: the console stops the robot and
                    // leaves, and the terminal must not stay in raw mode. A
                    // second Ctrl-C arrives as a signal.
                    tell(&tx, Msg::Interrupt);
                    break;
                }
                Err(_) => {
                    tell(&tx, Msg::Eof);
                    break;
                }
            }
        })?;
    Ok(printer)
}

/// Sends one goal; its acceptance, feedback and result come back as messages.
fn send_goal(
    client: &r2r::ActionClient<ExecuteCommand::Action>,
    goal: u64,
    command: &str,
    tx: &mpsc::UnboundedSender<Msg>,
) {
    let tx = tx.clone();
    let done = move |why: NoResult, message: String| Msg::Done {
        goal,
        outcome: GoalEnd::NoResult(why),
        message,
        attempts: 0,
    };
    let request = match client.send_goal_request(ExecuteCommand::Goal {
        command: command.to_string(),
    }) {
        Ok(r) => r,
        Err(e) => {
            tell(
                &tx,
                done(NoResult::NotSent, format!("cannot send the goal: {e}")),
            );
            return;
        }
    };
    tokio::spawn(async move {
        let (handle, result, mut feedback) =
            match tokio::time::timeout(Duration::from_secs(10), request).await {
                Err(_) => {
                    tell(
                        &tx,
                        done(
                            NoResult::NotSent,
                            "the stack did not accept the goal within 10 s".into(),
                        ),
                    );
                    return;
                }
                Ok(Err(e)) => {
                    tell(
                        &tx,
                        done(NoResult::Rejected, format!("the stack rejected it: {e}")),
                    );
                    return;
                }
                Ok(Ok(accepted)) => accepted,
            };
        tell(&tx, Msg::Accepted(goal, handle));
        let ftx = tx.clone();
        let forward = tokio::spawn(async move {
            while let Some(f) = feedback.next().await {
                tell(
                    &ftx,
                    Msg::Feedback(
                        goal,
                        Feedback {
                            attempt: f.attempt,
                            steps: f.steps,
                            current_step: f.current_step,
                            task_state: f.task_state,
                            message: f.message,
                        },
                    ),
                );
            }
        });
        let msg = match result.await {
            Ok((_, r)) => Msg::Done {
                goal,
                outcome: GoalEnd::read(&r.outcome),
                message: r.message,
                attempts: r.attempts,
            },
            Err(e) => done(NoResult::Lost, format!("the result was lost: {e}")),
        };
        forward.abort();
        tell(&tx, msg);
    });
}

/// The goals this console has sent.
struct Goals {
    client: r2r::ActionClient<ExecuteCommand::Action>,
    tx: mpsc::UnboundedSender<Msg>,
    next_id: u64,
    views: HashMap<u64, GoalView>,
    handles: HashMap<u64, r2r::ActionClientGoal<ExecuteCommand::Action>>,
    /// Sent and not yet ended.
    open: HashSet<u64>,
}

impl Goals {
    fn send(&mut self, command: &str, out: &mut Out) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.views.insert(id, GoalView::new(id, command));
        self.open.insert(id);
        out.emit(&Event::Sent {
            goal: id,
            command: command.to_string(),
        });
        send_goal(&self.client, id, command, &self.tx);
        id
    }

    /// Stop: the command "stop", which preempts the running step at once;
    /// the loop engages the e-stop if it is not confirmed within `confirm`.
    fn stop(&mut self, reason: &str, confirm: Duration, out: &mut Out) -> u64 {
        out.emit(&Event::Stopping {
            reason: reason.to_string(),
        });
        self.next_id += 1;
        let id = self.next_id;
        self.views.insert(id, GoalView::new(id, "stop"));
        self.open.insert(id);
        send_goal(&self.client, id, "stop", &self.tx);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(confirm).await;
            tell(&tx, Msg::StopDeadline(id));
        });
        id
    }
}

/// The speech model, loaded on first use.
type SharedTranscriber = Arc<Mutex<Option<rosetta_speech::Transcriber>>>;

/// Transcribes the utterances of a recording, or one from the microphone.
fn transcribe(
    model: Option<PathBuf>,
    shared: SharedTranscriber,
    context: String,
    file: Option<PathBuf>,
) -> Result<Vec<(String, f64, f64)>, String> {
    use rosetta_speech::audio;
    use rosetta_speech::vad::{Vad, VadConfig};
    let model = model.ok_or(
        "no speech model: pass --whisper DIR or set ROSETTA_WHISPER_DIR (source .local/env.sh)",
    )?;
    let mut guard = shared
        .lock()
        .map_err(|_| "the speech model is unusable".to_string())?;
    if guard.is_none() {
        eprintln!("loading the speech model {}", model.display());
        *guard = Some(rosetta_speech::Transcriber::load(&model).map_err(|e| e.to_string())?);
    }
    let t = guard.as_mut().ok_or("the speech model did not load")?;
    t.set_context(&context).map_err(|e| e.to_string())?;
    let (utterances, rate) = match &file {
        Some(path) => {
            let a = audio::read_wav(path).map_err(|e| e.to_string())?;
            let mut vad = Vad::new(audio::RATE_HZ, VadConfig::default());
            let mut us: Vec<_> = a.samples.chunks(1_600).flat_map(|c| vad.push(c)).collect();
            us.extend(vad.finish());
            if us.is_empty() {
                return Err(format!("{}: no speech in this recording", path.display()));
            }
            (us, audio::RATE_HZ)
        }
        None => {
            let mic = rosetta_speech::mic::Microphone::open_default().map_err(|e| e.to_string())?;
            eprintln!("listening on {}: speak, then pause", mic.name);
            let mut vad = Vad::new(mic.rate_hz, VadConfig::default());
            let until = Instant::now() + Duration::from_secs(15);
            let mut got = None;
            while got.is_none() && Instant::now() < until {
                let chunk = mic
                    .next_chunk(Duration::from_secs(2))
                    .map_err(|e| e.to_string())?
                    .ok_or("the microphone delivered no audio for 2 s")?;
                got = vad.push(&chunk).into_iter().next();
            }
            (vec![got.ok_or("no speech heard within 15 s")?], mic.rate_hz)
        }
    };
    let mut out = Vec::new();
    for u in utterances {
        let samples = if rate == audio::RATE_HZ {
            u.samples
        } else {
            audio::resample(&u.samples, rate, audio::RATE_HZ)?
        };
        match t.transcribe(&samples) {
            Ok(tr) => out.push((tr.text.trim().to_string(), tr.audio_s, tr.total_s())),
            Err(rosetta_speech::SpeechError::NoSpeech(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    if out.is_empty() {
        return Err("nothing was said that Whisper could read".into());
    }
    Ok(out)
}

/// Runs the console against a running stack until quit, end of input, or
/// Ctrl-C. Returns the exit code: 0, or 130 after Ctrl-C.
pub async fn run(args: ReplArgs) -> anyhow::Result<u8> {
    let mut node = ros::create_node_in("rosetta_repl", &args.namespace)?;
    let client = node.create_action_client::<ExecuteCommand::Action>(topics::EXECUTE)?;
    let available = r2r::Node::is_available(&client)?;
    let estop =
        node.create_publisher::<r2r::std_msgs::msg::Bool>(topics::ESTOP, ros::reliable_qos())?;
    let worlds = ros::json_subscription::<WorldModel>(&mut node, topics::OBJECTS)?;
    let action = format!(
        "{}/{}",
        ros::normalize_namespace(&args.namespace)?.trim_end_matches('/'),
        topics::EXECUTE
    );
    let node = Arc::new(Mutex::new(node));
    let _spinner = Spinner::start(node.clone());
    let world = watch_world(worlds);
    if let Some(code) = wait_for_stack(&args, &action, available).await {
        return Ok(code);
    }

    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    let prompt = if args.json { "" } else { "rosetta> " };
    let printer = spawn_input(tx.clone(), history_path(&args), prompt)?;
    let mut out = Out {
        json: args.json,
        printer,
    };
    forward_ctrl_c(tx.clone());
    out.emit(&Event::Ready {
        action: action.clone(),
    });
    let mut console = Console {
        out,
        goals: Goals {
            client,
            tx: tx.clone(),
            next_id: 0,
            views: HashMap::new(),
            handles: HashMap::new(),
            open: HashSet::new(),
        },
        estop,
        world,
        whisper: args.whisper.clone(),
        speech: Arc::new(Mutex::new(None)),
        tx,
        confirm: Duration::from_secs_f64(args.stop_confirm_s.max(0.1)),
        stop_goal: None,
        queue: VecDeque::new(),
        exiting: false,
        interrupted: false,
        eof: false,
        transcribing: false,
    };
    while let Some(msg) = rx.recv().await {
        if console.handle(msg).is_break() || console.after_message() {
            break;
        }
    }
    console.cancel_open_goals().await;
    Ok(if console.interrupted { 130 } else { 0 })
}

/// The latest object map, kept up to date from the stack's topic (for the
/// speech model's context).
fn watch_world(
    mut worlds: impl futures::Stream<Item = WorldModel> + Unpin + Send + 'static,
) -> Arc<Mutex<WorldModel>> {
    let world = Arc::new(Mutex::new(WorldModel::default()));
    let latest = world.clone();
    tokio::spawn(async move {
        while let Some(w) = worlds.next().await {
            if let Ok(mut g) = latest.lock() {
                *g = w;
            }
        }
    });
    world
}

/// Waits for the stack's action server; the exit code when there is none
/// (or Ctrl-C came first), `None` when it answers.
async fn wait_for_stack<T>(
    args: &ReplArgs,
    action: &str,
    available: impl std::future::Future<Output = T>,
) -> Option<u8> {
    let wait = Duration::from_secs_f64(args.wait_s.max(0.1));
    if !args.json {
        eprintln!("waiting for the stack ({action})");
    }
    tokio::select! {
        up = tokio::time::timeout(wait, available) => {
            if up.is_err() {
                let e = Event::Error {
                    message: format!(
                        "no stack answers on {action} after {:.0} s: start one with `rosetta up` (or `rosetta up --repl`)",
                        wait.as_secs_f64()
                    ),
                };
                Out { json: args.json, printer: None }.emit(&e);
                return Some(1);
            }
        }
        _ = tokio::signal::ctrl_c() => return Some(130),
    }
    None
}

/// Ctrl-C when the terminal is not in the editor's raw mode (a pipe, or
/// while stopping) arrives as a signal.
fn forward_ctrl_c(tx: mpsc::UnboundedSender<Msg>) {
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if tx.send(Msg::Interrupt).is_err() {
                break;
            }
        }
    });
}

/// The console's state between messages.
struct Console {
    out: Out,
    goals: Goals,
    estop: r2r::Publisher<r2r::std_msgs::msg::Bool>,
    /// The latest object map, for the speech model's context.
    world: Arc<Mutex<WorldModel>>,
    whisper: Option<PathBuf>,
    speech: SharedTranscriber,
    tx: mpsc::UnboundedSender<Msg>,
    /// How long a stop may take before the e-stop.
    confirm: Duration,
    /// The stop goal in flight, if any.
    stop_goal: Option<u64>,
    /// Spoken commands waiting their turn.
    queue: VecDeque<String>,
    exiting: bool,
    interrupted: bool,
    eof: bool,
    transcribing: bool,
}

impl Console {
    /// Engages or releases the e-stop; the error is a suffix for the message.
    fn publish_estop(&self, on: bool) -> Result<(), String> {
        self.estop
            .publish(&r2r::std_msgs::msg::Bool { data: on })
            .map_err(|e| format!(" (publishing it failed: {e})"))
    }

    /// The e-stop, now: its event says how it came to this.
    fn engage_estop(&mut self, message: impl FnOnce(&str) -> String) {
        let failed = self.publish_estop(true).err().unwrap_or_default();
        self.out.emit(&Event::Stopped {
            via: "e-stop".into(),
            message: message(&failed),
        });
    }

    fn stop(&mut self, reason: &str) {
        self.stop_goal = Some(self.goals.stop(reason, self.confirm, &mut self.out));
    }

    /// Reacts to one message; `Break` leaves the console at once.
    fn handle(&mut self, msg: Msg) -> ControlFlow<()> {
        match msg {
            Msg::Line(Request::Nothing) => {}
            Msg::Line(Request::Help) => self.out.emit(&Event::Info {
                message: HELP.into(),
            }),
            Msg::Line(Request::Run(command)) => {
                self.queue.clear();
                self.goals.send(&command, &mut self.out);
            }
            Msg::Line(Request::Stop) => {
                self.queue.clear();
                self.stop("stop");
            }
            Msg::Line(Request::EStop) => {
                self.queue.clear();
                self.engage_estop(|failed| {
                    format!("engaged{failed}: the robot holds until `release`")
                });
            }
            Msg::Line(Request::Release) => self.release(),
            Msg::Line(req @ (Request::Listen | Request::Hear(_))) => self.listen(req),
            Msg::Heard(result) => self.on_heard(result),
            Msg::Line(Request::Quit) | Msg::Interrupt if self.exiting => {
                // Asked again while stopping: the e-stop, now.
                self.engage_estop(|failed| format!("asked twice: engaged{failed} without waiting"));
                return ControlFlow::Break(());
            }
            Msg::Line(Request::Quit) => {
                self.exiting = true;
                self.queue.clear();
                if self.goals.open.iter().any(|g| Some(*g) != self.stop_goal) {
                    self.stop("quit");
                }
            }
            Msg::Interrupt => {
                self.exiting = true;
                self.interrupted = true;
                self.queue.clear();
                // Always: whatever this console knows, the robot may be moving.
                self.stop("Ctrl-C");
            }
            Msg::Eof => self.eof = true,
            Msg::Accepted(goal, handle) => {
                if self.goals.open.contains(&goal) {
                    self.goals.handles.insert(goal, handle);
                }
            }
            Msg::Feedback(goal, f) => self.on_feedback(goal, &f),
            Msg::Done {
                goal,
                outcome,
                message,
                attempts,
            } => self.on_done(goal, outcome, message, attempts),
            Msg::StopDeadline(id) => self.on_stop_deadline(id),
        }
        ControlFlow::Continue(())
    }

    /// After each message: the next spoken command once nothing runs.
    /// Returns whether the console is done.
    fn after_message(&mut self) -> bool {
        if !self.exiting && self.stop_goal.is_none() && self.goals.open.is_empty() {
            if let Some(command) = self.queue.pop_front() {
                self.goals.send(&command, &mut self.out);
            }
        }
        let idle = self.goals.open.is_empty() && self.queue.is_empty() && !self.transcribing;
        (self.exiting && self.stop_goal.is_none()) || (self.eof && idle && self.stop_goal.is_none())
    }

    fn release(&mut self) {
        match self.publish_estop(false) {
            Ok(()) => self.out.emit(&Event::Info {
                message: "e-stop released".into(),
            }),
            Err(e) => self.out.emit(&Event::Error {
                message: format!("the e-stop is not released{e}"),
            }),
        }
    }

    /// `listen` or `hear FILE`: transcribes off the async workers; the
    /// words come back as [`Msg::Heard`].
    fn listen(&mut self, req: Request) {
        if self.transcribing {
            self.out.emit(&Event::Error {
                message: "still transcribing the last one".into(),
            });
            return;
        }
        self.transcribing = true;
        let file = match req {
            Request::Hear(p) => Some(p),
            _ => None,
        };
        let context = self
            .world
            .lock()
            .map(|w| rosetta_speech::context_for(&w))
            .unwrap_or_else(|_| rosetta_speech::ROBOT_CONTEXT.to_string());
        let (model, shared, tx) = (self.whisper.clone(), self.speech.clone(), self.tx.clone());
        tokio::task::spawn_blocking(move || {
            tell(&tx, Msg::Heard(transcribe(model, shared, context, file)));
        });
    }

    fn on_heard(&mut self, result: Result<Vec<(String, f64, f64)>, String>) {
        self.transcribing = false;
        let heard = match result {
            Ok(heard) => heard,
            Err(e) => return self.out.emit(&Event::Error { message: e }),
        };
        for (text, audio_s, transcribe_s) in heard {
            self.out.emit(&Event::Heard {
                text: text.clone(),
                audio_s,
                transcribe_s,
            });
            // The words "stop" act at once, as typed.
            if parse(&text) == Request::Stop {
                self.queue.clear();
                self.stop("heard stop");
            } else {
                self.queue.push_back(text);
            }
        }
    }

    fn on_feedback(&mut self, goal: u64, f: &Feedback) {
        if Some(goal) == self.stop_goal {
            return;
        }
        if let Some(v) = self.goals.views.get_mut(&goal) {
            for e in v.on_feedback(f) {
                self.out.emit(&e);
            }
        }
    }

    fn on_done(&mut self, goal: u64, outcome: GoalEnd, message: String, attempts: u32) {
        self.goals.open.remove(&goal);
        self.goals.handles.remove(&goal);
        let view = self.goals.views.remove(&goal);
        if Some(goal) == self.stop_goal {
            self.stop_goal = None;
            if outcome.succeeded() {
                self.out.emit(&Event::Stopped {
                    via: "stop command".into(),
                    message: "the robot is at rest".into(),
                });
            } else {
                self.engage_estop(|failed| {
                    format!(
                        "the stop ended {outcome} ({message}); e-stop engaged{failed}: `release` releases it"
                    )
                });
            }
        } else if let Some(v) = view {
            self.out.emit(&Event::Result {
                goal,
                command: v.command,
                outcome,
                message,
                attempts,
                elapsed_s: v.started.elapsed().as_secs_f64(),
            });
        }
    }

    fn on_stop_deadline(&mut self, id: u64) {
        if self.stop_goal != Some(id) {
            return;
        }
        self.stop_goal = None;
        let confirm = self.confirm;
        self.engage_estop(|failed| {
            format!(
                "the stack did not confirm the stop within {:.1} s; e-stop engaged{failed}: `release` releases it",
                confirm.as_secs_f64()
            )
        });
    }

    /// Goals this console left open (only after a stop) are cancelled.
    async fn cancel_open_goals(&self) {
        for h in self.goals.handles.values() {
            if let Ok(f) = h.cancel() {
                // Best effort on the way out: the stop already halted the
                // robot, and the stack may be gone.
                match tokio::time::timeout(Duration::from_millis(500), f).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::debug!(error = %e, "cancelling a goal failed"),
                    Err(_) => tracing::debug!("no answer to a goal's cancel within 0.5 s"),
                }
            }
        }
    }
}

/// Runs the console as `rosetta repl` does, from `rosetta up --repl`.
pub async fn run_with_stack(namespace: &str) -> anyhow::Result<u8> {
    run(ReplArgs {
        json: false,
        namespace: namespace.to_string(),
        stop_confirm_s: 2.0,
        wait_s: 30.0,
        whisper: std::env::var_os("ROSETTA_WHISPER_DIR").map(PathBuf::from),
        history: None,
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_words_are_the_consoles_own_and_other_words_go_to_the_robot() {
        for s in ["stop", " STOP! ", "halt", "stop the robot", "Freeze."] {
            assert_eq!(parse(s), Request::Stop, "{s:?}");
        }
        assert_eq!(parse("estop"), Request::EStop);
        assert_eq!(parse("release"), Request::Release);
        assert_eq!(parse("listen"), Request::Listen);
        assert_eq!(
            parse("hear /tmp/a b.wav"),
            Request::Hear("/tmp/a b.wav".into())
        );
        assert_eq!(parse("quit"), Request::Quit);
        assert_eq!(parse("   "), Request::Nothing);
        assert_eq!(
            parse("put the red cube in the blue bin"),
            Request::Run("put the red cube in the blue bin".into())
        );
        // A command that merely starts like a console word is the robot's.
        assert_eq!(
            parse("release the red cube"),
            Request::Run("release the red cube".into())
        );
        assert_eq!(parse("hear"), Request::Run("hear".into()));
    }

    fn fb(attempt: u32, steps: &[&str], current: i32, message: &str) -> Feedback {
        Feedback {
            attempt,
            steps: steps.iter().map(|s| s.to_string()).collect(),
            current_step: current,
            task_state: "running".into(),
            message: message.into(),
        }
    }

    #[test]
    fn the_view_reports_the_plan_once_and_each_change_of_step_or_progress() {
        let mut v = GoalView::new(3, "go to the dock");
        let plan = ["navigate_to(dock)", "say(done)"];
        assert_eq!(v.on_feedback(&fb(0, &[], -1, "planning")), vec![]);
        let e = v.on_feedback(&fb(1, &plan, 0, "running (1.40 m to go)"));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(matches!(&e[0], Event::Plan { steps, .. } if steps.len() == 2));
        assert!(
            matches!(&e[1], Event::Step { index: 0, of: 2, step, message, .. }
                if step == "navigate_to(dock)" && message.contains("1.40 m"))
        );
        // The same again: nothing new.
        assert!(v
            .on_feedback(&fb(1, &plan, 0, "running (1.40 m to go)"))
            .is_empty());
        // Progress: one step event.
        let e = v.on_feedback(&fb(1, &plan, 0, "running (0.70 m to go)"));
        assert!(matches!(&e[..], [Event::Step { index: 0, .. }]), "{e:?}");
        // A re-plan prints the new plan.
        let e = v.on_feedback(&fb(2, &plan, 0, "running (0.70 m to go)"));
        assert!(matches!(&e[0], Event::Plan { attempt: 2, .. }), "{e:?}");
        assert!(render(&e[0]).contains("re-plan"));
    }

    #[test]
    fn events_read_as_words_and_as_json() {
        let e = Event::Step {
            goal: 1,
            index: 1,
            of: 4,
            step: "pick(red_cube)".into(),
            message: "running (stage 3 of 5: descend)".into(),
        };
        assert_eq!(
            render(&e),
            "[1] > step 2/4 pick(red_cube): running (stage 3 of 5: descend)"
        );
        let j: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(j["event"], "step");
        assert_eq!(j["of"], 4);
    }
}
