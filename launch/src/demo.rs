//! `rosetta demo`: the whole stack on the embedded sim, one command, one report.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use futures::StreamExt;
use rosetta_common::plan::{CommandMessage, PlanMessage, PlanOutcome};
use rosetta_common::report::{CameraSummary, DemoOutcome, DemoReport, HeardCommand};
use rosetta_common::ros::{self, JsonPublisher, Spinner};
use rosetta_common::status::{GroundTruth, StepState, TaskState, TaskStatus};
use rosetta_common::{topics, WorldModel};

use crate::procs::{stop_all, NodeProcess};

/// Run one command end to end on the embedded simulator.
///
/// Starts the sim, perception, planner, executive and control as ROS 2 nodes, waits until
/// they are connected, sends the command, waits for the outcome, then stops
/// every node and leaves the robot stopped. Exit code: 0 when the stack believes
/// the task succeeded, 2 when the command was refused, 1 otherwise.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// What the robot should do, e.g. "put the red cube in the blue bin".
    #[arg(
        required_unless_present = "audio",
        default_value = "",
        hide_default_value = true
    )]
    pub command: String,
    /// Say it instead: a WAV file with the spoken command (any rate, at most
    /// 30 s), transcribed offline by Whisper before the stack starts.
    #[arg(long, conflicts_with = "command", value_name = "FILE")]
    pub audio: Option<PathBuf>,
    /// The converted Whisper model (the set-up's `.local/models/whisper-tiny.en`).
    #[arg(long, env = "ROSETTA_WHISPER_DIR", value_name = "DIR")]
    pub whisper: Option<PathBuf>,
    /// The simulator's options (scene, seed, speed, noise).
    #[command(flatten)]
    pub sim: rosetta_sim::node::SimArgs,
    /// Write the JSON report here too (it always goes into the episode folder).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Folder of recorded episodes; each run gets a subfolder with the .rrd, report and logs.
    #[arg(long, default_value = "episodes")]
    pub episodes: PathBuf,
    /// Planner: `hybrid` (the reader and grounder, and the language model for
    /// words they cannot read), `llm` (the model alone) or `rules` (no model).
    #[arg(long, value_enum, default_value_t = rosetta_planner::pipeline::PlannerKind::Hybrid)]
    pub planner: rosetta_planner::pipeline::PlannerKind,
    /// Perception's detector: `geometric` (any object that stands out of the
    /// floor or a table in depth, named by colour and shape, its category
    /// from a classifier trained on rendered crops), `geometric-rules` (its
    /// category from rules of shape and size instead),
    /// `classical` (OpenCV colour segmentation of red, green, blue and yellow
    /// cubes and bins) or `learned` (a network trained on rendered frames of
    /// those, built-in weights).
    #[arg(long, value_enum, default_value_t = rosetta_perception::DetectorKind::Geometric)]
    pub detector: rosetta_perception::DetectorKind,
    /// Give up after this many wall seconds.
    #[arg(long, default_value_t = 300.0)]
    pub timeout_s: f64,
    /// Run every node in this ROS namespace (e.g. `robot1`: `/robot1/cmd_vel`),
    /// so that several robots share a domain without crosstalk.
    #[arg(long, env = "ROSETTA_NAMESPACE", default_value = "")]
    pub namespace: String,
    /// Also record the raw sensor topics (camera, depth, scan, odometry,
    /// joints) into `sensors.mcap` in the episode folder, for `rosetta replay`
    /// (about 1 MB per camera frame before compression).
    #[arg(long)]
    pub record_sensors: bool,
    #[command(flatten)]
    pub live: LiveArgs,
}

#[derive(Debug, Default)]
struct Seen {
    truth: Option<GroundTruth>,
    status: Option<TaskStatus>,
    plan: Option<PlanMessage>,
    world: Option<WorldModel>,
    /// Whether control's own status was heard.
    control: bool,
    /// Camera frames heard, with the first and last frame's stamp (sim s).
    camera_frames: u64,
    camera_stamps_s: Option<(f64, f64)>,
}

/// Transcribes the spoken command, with the robot's vocabulary as context.
fn listen(audio: &Path, model: Option<&Path>) -> anyhow::Result<HeardCommand> {
    let model = model.context(
        "no speech model: pass --whisper DIR or set ROSETTA_WHISPER_DIR (source .local/env.sh)",
    )?;
    let a = rosetta_speech::audio::read_wav(audio)?;
    eprintln!("rosetta: loading the speech model {}", model.display());
    let mut t = rosetta_speech::Transcriber::load(model)?;
    t.set_context(rosetta_speech::ROBOT_CONTEXT)?;
    let transcript = t
        .transcribe(&a.samples)
        .with_context(|| format!("{}", audio.display()))?;
    eprintln!(
        "rosetta: heard \"{}\" ({:.1} s of speech, transcribed in {:.2} s)",
        transcript.text,
        transcript.audio_s,
        transcript.total_s()
    );
    Ok(heard_command(audio, transcript, t.load_s))
}

/// The report's record of a spoken command: every field of Whisper's
/// transcript (a field added there fails to compile here until the report
/// has it too).
fn heard_command(
    audio: &Path,
    transcript: rosetta_speech::Transcript,
    load_s: f64,
) -> HeardCommand {
    let rosetta_speech::Transcript {
        text,
        tokens,
        audio_s,
        mel_s,
        encode_s,
        decode_s,
        no_speech_p,
    } = transcript;
    HeardCommand {
        audio: audio.to_path_buf(),
        text,
        tokens,
        audio_s,
        mel_s,
        encode_s,
        decode_s,
        no_speech_p,
        load_s,
    }
}

fn lock(seen: &Arc<Mutex<Seen>>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|p| p.into_inner())
}

/// Set once by SIGINT/SIGTERM; every wait checks it, so that Ctrl-C tears the stack down.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub async fn run(mut args: DemoArgs) -> anyhow::Result<u8> {
    // A spoken command becomes the command's words before anything starts: a
    // silent or unreadable file stops here, with nothing moved.
    let heard = match &args.audio {
        Some(audio) => Some(listen(audio, args.whisper.as_deref())?),
        None => None,
    };
    if let Some(h) = &heard {
        args.command = h.text.clone();
    }
    let wall_start = Instant::now();
    let mut episode = Episode::start(&args.episodes, &args.live)?;
    episode.set_namespace(&args.namespace)?;
    let Episode {
        dir: episode_dir,
        parts,
        logs,
        envs,
        rec,
    } = episode;
    if args.command.trim().is_empty() {
        eprintln!(
            "error: the command is empty; try: rosetta demo \"put the red cube in the blue bin\""
        );
    }
    // The embedded sim's odometry starts at the scene's start pose.
    let start = args.sim.load_scene()?.robot_start;
    let mut specs = stack_specs(&args.sim, args.planner.name(), args.detector, 2, &start);
    if args.record_sensors {
        specs.push(recorder_spec(&episode_dir, None));
    }
    let mut nodes = spawn_all(&specs, &envs, &logs)?;
    let result = drive(&args, &mut nodes, wall_start).await;
    // Stop every node; control leaves the base stopped on the way out.
    stop_all(&mut nodes, Duration::from_secs(5));
    let (mut report, code) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            (
                empty_report(&args, DemoOutcome::Error, &format!("{e:#}")),
                1,
            )
        }
    };
    report.nodes = nodes.iter_mut().map(|n| n.report()).collect();
    report.wall_time_s = wall_start.elapsed().as_secs_f64();
    report.episode_dir = episode_dir.clone();
    log_episode(&rec, &report);
    finish_recording(rec);
    report.recording_problems = check_parts(&parts);
    for p in &report.recording_problems {
        eprintln!("rosetta: recording: {p}");
    }
    report.rrd_path = merge_recording(&parts, &episode_dir.join("episode.rrd"));
    let sensors = episode_dir.join(SENSORS_FILE);
    report.sensors_path = sensors.exists().then_some(sensors);
    report.speech = heard;
    write_report(&report, &episode_dir.join("report.json"))?;
    if let Some(p) = &args.report {
        write_report(&report, p)?;
    }
    print_summary(&report);
    Ok(code)
}

/// Watching a run live in the rerun viewer (the `.rrd` episode is written
/// either way).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LiveArgs {
    /// Start a rerun viewer (the `rerun` binary; needs a display) and stream
    /// every node's logging to it live.
    #[arg(long)]
    pub viewer: bool,
    /// Stream live to a viewer or server that already runs, by its gRPC URL
    /// (e.g. `rerun+http://127.0.0.1:9876/proxy`, what `rerun` prints on start).
    #[arg(long, value_name = "URL", conflicts_with = "viewer")]
    pub connect: Option<String>,
}

impl LiveArgs {
    /// The viewer URL to stream to, starting the viewer for `--viewer`.
    pub fn url(&self) -> anyhow::Result<Option<String>> {
        if let Some(u) = &self.connect {
            u.parse::<rerun::external::re_uri::ProxyUri>()
                .map_err(|e| anyhow::anyhow!("--connect {u}: not a rerun viewer URL ({e})"))?;
            return Ok(Some(u.clone()));
        }
        if !self.viewer {
            return Ok(None);
        }
        let port = rerun::DEFAULT_SERVER_PORT;
        // The viewer outlives the run: it is the user's to close.
        std::process::Command::new("rerun")
            .args(["--port", &port.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("cannot start the rerun viewer (`rerun`, from the set-up's venv: source .local/env.sh); or use --connect URL")?;
        Ok(Some(format!("rerun+http://127.0.0.1:{port}/proxy")))
    }
}

/// One run's episode folder: `parts/` for each node's rerun recording,
/// `logs/` for their logs, and the environment that points the nodes there
/// (one recording id for all of them).
pub struct Episode {
    pub dir: PathBuf,
    pub parts: PathBuf,
    pub logs: PathBuf,
    pub envs: Vec<(String, String)>,
    /// The launcher's own part of the recording: the default blueprint and
    /// the episode's metadata.
    pub rec: rerun::RecordingStream,
}

impl Episode {
    /// Starts a run: Ctrl-C (or SIGTERM) from now on sets [`INTERRUPTED`],
    /// and the run gets its episode folder.
    pub fn start(episodes: &Path, live: &LiveArgs) -> anyhow::Result<Self> {
        tokio::spawn(async {
            ros::shutdown_signal().await;
            INTERRUPTED.store(true, Ordering::SeqCst);
        });
        let url = live.url()?;
        let mut episode = Self::create(episodes, url.as_deref())?;
        if let Some(u) = url {
            eprintln!("rosetta: streaming live to the rerun viewer at {u}");
            episode
                .envs
                .push((rosetta_common::rec::CONNECT_ENV.to_string(), u));
        }
        Ok(episode)
    }

    /// Every node of the run goes into namespace `ns` (checked; empty: none),
    /// which is returned normalised (`robot1` → `/robot1`).
    pub fn set_namespace(&mut self, ns: &str) -> anyhow::Result<String> {
        let ns = ros::normalize_namespace(ns)?;
        self.envs.push((ros::NAMESPACE_ENV.to_string(), ns.clone()));
        Ok(ns)
    }

    /// The episode folder, and the launcher's own part of the recording
    /// (also streamed to the viewer at `live`).
    pub fn create(episodes: &Path, live: Option<&str>) -> anyhow::Result<Self> {
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let run_id = format!("{stamp}-{}", std::process::id());
        let dir = episodes.join(&run_id);
        let parts = dir.join("parts");
        let logs = dir.join("logs");
        for d in [&parts, &logs] {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        let recording_id = format!("rosetta-{run_id}");
        let rec = rosetta_common::rec::open_recording_at(&parts, &recording_id, "launch", live);
        if let Err(e) = rosetta_common::rec::send_default_blueprint(
            &rec,
            rerun::blueprint::BlueprintActivation::default(),
        ) {
            eprintln!("rosetta: cannot record the viewer layout: {e}");
        }
        let envs = vec![
            ("ROSETTA_RRD_DIR".to_string(), parts.display().to_string()),
            ("ROSETTA_RECORDING_ID".to_string(), recording_id),
        ];
        Ok(Self {
            dir,
            parts,
            logs,
            envs,
            rec,
        })
    }
}

/// The stack's nodes on the embedded sim, as `rosetta` subcommands, with
/// perception's `detector`. The planner waits for `min_plan_subscribers` before it publishes a plan.
/// `initial_pose`: the robot's pose in the map where odometry starts (the scene's start).
pub fn stack_specs(
    sim: &rosetta_sim::node::SimArgs,
    planner: &str,
    detector: rosetta_perception::DetectorKind,
    min_plan_subscribers: usize,
    initial_pose: &rosetta_common::Pose2D,
) -> Vec<(&'static str, Vec<String>)> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let initial_pose = format!(
        "{},{},{}",
        initial_pose.x_m, initial_pose.y_m, initial_pose.yaw_rad
    );
    vec![
        (
            "sim",
            s(&[
                "sim",
                "--scene",
                &sim.scene,
                "--seed",
                &sim.seed.to_string(),
                "--rtf",
                &sim.rtf.to_string(),
                "--lidar-noise-m",
                &sim.lidar_noise_m.to_string(),
                "--slip-grasps",
                &sim.slip_grasps.to_string(),
                "--bounce-releases",
                &sim.bounce_releases.to_string(),
                "--estop-decel-m-s2",
                &sim.estop_decel_m_s2.to_string(),
                "--odom-frame",
                &sim.odom_frame,
            ])
            .into_iter()
            .chain(
                sim.scan_blackout_after_s
                    .map(|t| ["--scan-blackout-after-s".to_string(), t.to_string()])
                    .into_iter()
                    .flatten(),
            )
            .collect(),
        ),
        (
            "perception",
            s(&[
                "perception",
                // One word with its value: a pose that starts with a minus
                // sign (x < 0) would read as a flag.
                &format!("--initial-pose={initial_pose}"),
                "--detector",
                match detector {
                    rosetta_perception::DetectorKind::Geometric => "geometric",
                    rosetta_perception::DetectorKind::GeometricRules => "geometric-rules",
                    rosetta_perception::DetectorKind::Classical => "classical",
                    rosetta_perception::DetectorKind::Learned => "learned",
                },
            ]),
        ),
        (
            "planner",
            s(&[
                "planner",
                "--min-plan-subscribers",
                &min_plan_subscribers.to_string(),
                "--planner",
                planner,
            ]),
        ),
        ("executive", s(&["executive"])),
        ("control", s(&["control"])),
    ]
}

/// The sensor recording's name in an episode folder.
pub const SENSORS_FILE: &str = "sensors.mcap";

/// The recorder node, writing the episode's `sensors.mcap`; `ros_args`: a
/// robot profile's remaps, so that it records the robot's own topics.
pub fn recorder_spec(
    episode_dir: &Path,
    ros_args: Option<Vec<String>>,
) -> (&'static str, Vec<String>) {
    let mut a = vec![
        "record".to_string(),
        "--out".to_string(),
        episode_dir.join(SENSORS_FILE).display().to_string(),
    ];
    a.extend(ros_args.unwrap_or_default());
    ("recorder", a)
}

/// Starts every node; on a failure, stops the ones already started.
pub fn spawn_all(
    specs: &[(&'static str, Vec<String>)],
    envs: &[(String, String)],
    logs: &Path,
) -> anyhow::Result<Vec<NodeProcess>> {
    let mut nodes = Vec::new();
    for (name, a) in specs {
        match NodeProcess::spawn(name, a, envs, logs) {
            Ok(n) => nodes.push(n),
            Err(e) => {
                stop_all(&mut nodes, Duration::from_secs(5));
                return Err(e);
            }
        }
    }
    Ok(nodes)
}

fn empty_report(args: &DemoArgs, outcome: DemoOutcome, message: &str) -> DemoReport {
    DemoReport {
        command: args.command.clone(),
        outcome,
        message: message.into(),
        planner: None,
        plan: None,
        goals: Vec::new(),
        goal_checks: Vec::new(),
        attempts: 0,
        replans: Vec::new(),
        steps: vec![],
        robot_final_pose: None,
        wall_time_s: 0.0,
        sim_time_s: 0.0,
        real_time_factor: None,
        scene: args.sim.scene.clone(),
        seed: args.sim.seed,
        git_revision: git_revision(),
        rrd_path: None,
        episode_dir: PathBuf::new(),
        ground_truth: None,
        nodes: vec![],
        control_loop: None,
        camera: None,
        recording_problems: vec![],
        sensors_path: None,
        speech: None,
    }
}

/// Why a wait ended without its condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitEnd {
    /// Ctrl-C or SIGTERM ([`INTERRUPTED`]).
    Interrupted,
    Timeout,
}

impl WaitEnd {
    /// The report's outcome for a run that ended here.
    pub fn outcome(self) -> DemoOutcome {
        match self {
            WaitEnd::Interrupted => DemoOutcome::Interrupted,
            WaitEnd::Timeout => DemoOutcome::Timeout,
        }
    }
}

impl std::fmt::Display for WaitEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.outcome().as_str())
    }
}

/// Waits for `cond` while watching the nodes and Ctrl-C.
pub async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    nodes: &mut [NodeProcess],
    mut cond: impl FnMut() -> Option<T>,
) -> anyhow::Result<Result<T, WaitEnd>> {
    let start = Instant::now();
    loop {
        if let Some(v) = cond() {
            return Ok(Ok(v));
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Ok(Err(WaitEnd::Interrupted));
        }
        for n in nodes.iter_mut() {
            if let Some(st) = n.exited() {
                anyhow::bail!(
                    "node {} exited ({st}) while waiting for {what}; see its log",
                    n.name
                );
            }
        }
        if start.elapsed() > timeout {
            return Ok(Err(WaitEnd::Timeout));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The demo sends one command, as this command id.
const COMMAND_ID: u64 = 1;

/// The launcher's own node on the stack's topics: it sends the command and
/// collects what the stack says into [`Seen`].
struct Watch {
    collector: tokio::task::JoinHandle<()>,
    seen: Arc<Mutex<Seen>>,
    _spinner: Spinner,
    _node: Arc<Mutex<r2r::Node>>,
    commands: JsonPublisher<CommandMessage>,
}

impl Watch {
    fn start(namespace: &str) -> anyhow::Result<Self> {
        let mut node = ros::create_node_in("rosetta_launch", namespace)?;
        let commands = JsonPublisher::<CommandMessage>::new(&mut node, topics::COMMAND)?;
        let mut truths = ros::json_subscription::<GroundTruth>(&mut node, topics::GROUND_TRUTH)?;
        let mut statuses = ros::json_subscription::<TaskStatus>(&mut node, topics::STATUS)?;
        let mut plans = ros::json_subscription::<PlanMessage>(&mut node, topics::PLAN)?;
        let mut worlds = ros::json_subscription::<WorldModel>(&mut node, topics::OBJECTS)?;
        let mut controls = ros::json_subscription::<TaskStatus>(&mut node, topics::CONTROL_STATUS)?;
        let mut cameras = node.subscribe::<r2r::sensor_msgs::msg::CameraInfo>(
            topics::CAMERA_INFO,
            r2r::QosProfile::sensor_data(),
        )?;
        let node = Arc::new(Mutex::new(node));
        let spinner = Spinner::start(node.clone());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s1 = seen.clone();
        let collector = tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(t) = truths.next() => lock(&s1).truth = Some(t),
                    Some(st) = statuses.next() => lock(&s1).status = Some(st),
                    Some(p) = plans.next() => lock(&s1).plan = Some(p),
                    Some(w) = worlds.next() => lock(&s1).world = Some(w),
                    Some(_) = controls.next() => lock(&s1).control = true,
                    Some(info) = cameras.next() => {
                        let t = f64::from(info.header.stamp.sec)
                            + 1e-9 * f64::from(info.header.stamp.nanosec);
                        let mut s = lock(&s1);
                        s.camera_frames += 1;
                        let first = s.camera_stamps_s.map_or(t, |(f, _)| f);
                        s.camera_stamps_s = Some((first, t));
                    }
                    else => break,
                }
            }
        });
        Ok(Self {
            collector,
            seen,
            _spinner: spinner,
            _node: node,
            commands,
        })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.collector.abort();
    }
}

/// How one attempt (one plan of the command) ended.
enum Attempt {
    /// The command is over, with this exit code.
    Ended(u8),
    /// The planner answered with this new plan.
    Replanned(PlanMessage),
}

/// One command through the running stack, and the report of it.
struct DemoRun<'a> {
    args: &'a DemoArgs,
    nodes: &'a mut [NodeProcess],
    wall_start: Instant,
    watch: Watch,
    report: DemoReport,
    /// Whether a plan other than a look around has run: a refusal after
    /// only looking around is a refusal (nothing moved), not a failure.
    acted: bool,
}

async fn drive(
    args: &DemoArgs,
    nodes: &mut [NodeProcess],
    wall_start: Instant,
) -> anyhow::Result<(DemoReport, u8)> {
    let watch = Watch::start(&args.namespace)?;
    let mut run = DemoRun {
        args,
        nodes,
        wall_start,
        watch,
        report: empty_report(args, DemoOutcome::Error, ""),
        acted: false,
    };
    let code = run.carry_out().await?;
    Ok((run.report, code))
}

impl DemoRun<'_> {
    /// Waits for `cond` on what the stack said, watching the nodes and Ctrl-C.
    async fn wait<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&Seen) -> Option<T>,
    ) -> anyhow::Result<Result<T, WaitEnd>> {
        let seen = &self.watch.seen;
        wait_for(what, timeout, self.nodes, || cond(&lock(seen))).await
    }

    /// Connects, sends the command, follows its plans, and fills in the
    /// report; returns the exit code.
    async fn carry_out(&mut self) -> anyhow::Result<u8> {
        eprintln!("rosetta: starting the stack and waiting until every node is connected");
        if let Err(why) = self.connect().await? {
            self.report.outcome = why.outcome();
            if why == WaitEnd::Interrupted {
                return Ok(130);
            }
            self.report.message = "the stack did not connect".into();
            return Ok(1);
        }
        let sim_start = lock(&self.watch.seen)
            .truth
            .as_ref()
            .map(|t| t.stamp_s)
            .unwrap_or(0.0);
        eprintln!(
            "rosetta: connected after {:.1} s; sending {:?}",
            self.wall_start.elapsed().as_secs_f64(),
            self.args.command
        );
        self.watch.commands.publish(&CommandMessage {
            command_id: COMMAND_ID,
            text: self.args.command.clone(),
        })?;
        let plan = self
            .wait("the plan", Duration::from_secs(60), |s| {
                s.plan.clone().filter(|p| p.command_id == COMMAND_ID)
            })
            .await?;
        let plan = match plan {
            Ok(p) => p,
            Err(why) => {
                self.report.outcome = why.outcome();
                self.report.message = "no plan from the planner".into();
                return Ok(1);
            }
        };
        self.report.planner = Some(plan.planner.clone());
        let mut code = self.follow(plan).await?;
        if self.report.outcome == DemoOutcome::Interrupted {
            eprintln!("rosetta: interrupted; stopping every node");
            code = 130;
        }
        self.settle(code == 130).await;
        self.record_times(sim_start);
        Ok(code)
    }

    /// Waits until every node is up and the planner hears the command topic.
    async fn connect(&mut self) -> anyhow::Result<Result<(), WaitEnd>> {
        let (seen, commands) = (&self.watch.seen, &self.watch.commands);
        wait_for(
            "the stack to connect",
            Duration::from_secs(90),
            self.nodes,
            || {
                let s = lock(seen);
                (s.truth.is_some()
                    && s.status.is_some()
                    && s.world.is_some()
                    && s.control
                    && commands.subscribers() >= 1)
                    .then_some(())
            },
        )
        .await
    }

    /// Follows the command's plans, the first and each re-plan, until one
    /// ends the command; returns the exit code.
    async fn follow(&mut self, mut plan: PlanMessage) -> anyhow::Result<u8> {
        loop {
            self.note_attempt(&plan);
            let steps = match &plan.outcome {
                PlanOutcome::Rejected { reason } => return Ok(self.rejected(&plan, reason)),
                PlanOutcome::Plan { steps } => steps,
            };
            eprintln!(
                "rosetta: plan: {}",
                steps
                    .iter()
                    .map(|s| s.describe())
                    .collect::<Vec<_>>()
                    .join(" -> ")
            );
            self.report.plan = Some(steps.to_vec());
            self.report.goals = plan.goals.clone();
            self.acted |= !plan.survey;
            match self.run_attempt(&plan).await? {
                Attempt::Ended(code) => return Ok(code),
                Attempt::Replanned(next) => plan = next,
            }
        }
    }

    fn note_attempt(&mut self, plan: &PlanMessage) {
        self.report.attempts = plan.attempt;
        if let Some(why) = &plan.replan_reason {
            eprintln!(
                "rosetta: re-planned (attempt {} of {}) after: {why}",
                plan.attempt, plan.max_attempts
            );
            self.report.replans.push(why.clone());
        }
    }

    /// A plan that refuses the command; returns the exit code.
    fn rejected(&mut self, plan: &PlanMessage, reason: &str) -> u8 {
        if plan.attempt > 1 && self.acted {
            eprintln!("rosetta: the re-plan found no way: {reason}");
            self.report.outcome = DemoOutcome::Failed;
            self.report.message = format!("re-plan refused: {reason}");
            1
        } else {
            eprintln!("rosetta: refused: {reason}");
            self.report.outcome = DemoOutcome::Refused;
            self.report.message = reason.to_string();
            2
        }
    }

    /// Waits for the plan's final status, and for a re-plan if the planner
    /// answers the failure (or the survey) with one.
    async fn run_attempt(&mut self, plan: &PlanMessage) -> anyhow::Result<Attempt> {
        let remaining = Duration::from_secs_f64(
            (self.args.timeout_s - self.wall_start.elapsed().as_secs_f64()).max(1.0),
        );
        let attempt = plan.attempt;
        // This attempt's final status, or a later attempt's (the planner
        // may re-plan before the failed status is ever seen here).
        let last = self
            .wait("the task to finish", remaining, |s| {
                s.status.clone().filter(|s| {
                    s.command_id == COMMAND_ID
                        && (s.attempt > attempt || s.attempt == attempt && s.task.is_final())
                })
            })
            .await?;
        let st = match last {
            Ok(st) => st,
            Err(why) => {
                self.report.outcome = why.outcome();
                self.report.message = format!("the task did not finish ({why})");
                return Ok(Attempt::Ended(1));
            }
        };
        let replanned = st.attempt > attempt;
        // A survey (a look around) is followed by the command's real plan.
        let surveyed = plan.survey && st.task == TaskState::Succeeded;
        self.report.outcome = match st.task {
            _ if replanned || surveyed => DemoOutcome::Failed,
            TaskState::Succeeded => DemoOutcome::Succeeded,
            TaskState::Stopped => DemoOutcome::Stopped,
            _ => DemoOutcome::Failed,
        };
        self.report.message = st.message.clone();
        if st.task == TaskState::Succeeded && !replanned && !surveyed {
            return Ok(Attempt::Ended(0));
        }
        let more = st.task == TaskState::Failed || surveyed;
        if !replanned && (!more || attempt >= plan.max_attempts) {
            return Ok(Attempt::Ended(1));
        }
        // The planner answers a failure with a new plan.
        let next = self
            .wait("a re-plan", Duration::from_secs(60), |s| {
                s.plan
                    .clone()
                    .filter(|p| p.command_id == COMMAND_ID && p.attempt > attempt)
            })
            .await?;
        Ok(match next {
            Ok(p) => Attempt::Replanned(p),
            Err(why) => {
                self.report.message = format!("{} (and no re-plan came: {why})", st.message);
                Attempt::Ended(1)
            }
        })
    }

    /// The final status into the report, and a ground truth taken after it.
    async fn settle(&mut self, interrupted: bool) {
        let status = lock(&self.watch.seen).status.clone();
        if let (Some(st), false) = (&status, interrupted) {
            if st.command_id == COMMAND_ID {
                self.report.steps = st.steps.clone();
                self.report.goal_checks = st.goals.clone();
            }
            self.report.robot_final_pose = Some(st.robot_pose);
            self.report.control_loop = st.control_loop;
            let after = st.stamp_s + 0.3;
            let newer = self
                .wait("the final ground truth", Duration::from_secs(10), |s| {
                    s.truth.clone().filter(|t| t.stamp_s >= after)
                })
                .await;
            // Best effort: without a newer one, the report keeps the last
            // ground truth heard (and a node that exited is in its `nodes`).
            match newer {
                Ok(Ok(_)) => {}
                Ok(Err(why)) => {
                    tracing::debug!(%why, "no ground truth after the final status");
                }
                Err(e) => tracing::debug!(error = %e, "no ground truth after the final status"),
            }
        }
        self.report.ground_truth = lock(&self.watch.seen).truth.clone();
    }

    /// Sim time at the end, and the real-time factor over the wall time so far.
    fn record_times(&mut self, sim_start: f64) {
        let sim_end = self
            .report
            .ground_truth
            .as_ref()
            .map(|t| t.stamp_s)
            .unwrap_or(sim_start);
        self.report.sim_time_s = sim_end;
        let s = lock(&self.watch.seen);
        if let Some((first, last)) = s.camera_stamps_s.filter(|(f, l)| l > f) {
            self.report.camera = Some(CameraSummary {
                frames: s.camera_frames,
                rate_hz: (s.camera_frames - 1) as f64 / (last - first),
            });
        }
        drop(s);
        let wall = self.wall_start.elapsed().as_secs_f64();
        self.report.real_time_factor = (wall > 0.0).then(|| sim_end / wall);
    }
}

/// Whether the file begins with the RRD FourCC; anything else would make
/// the merge fail for every part.
fn starts_like_rrd(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| &head == b"RRF2")
}

/// Ends the launcher's own part of the recording: flushed, and closed (the
/// stream dropped), so that its file gets its footer before the parts are
/// checked and merged.
pub fn finish_recording(rec: rerun::RecordingStream) {
    if let Err(e) = rec.flush_blocking() {
        eprintln!("rosetta: the launcher's recording part is incomplete: {e}");
    }
    drop(rec);
}

/// Checks each node's part of the recording with `rerun rrd verify`: a part
/// that a crashed or killed node left truncated, or that is not a recording
/// at all, is named with the reason. The merge still takes what it can read.
pub fn check_parts(parts: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(parts) else {
        return vec![format!("{} cannot be read", parts.display())];
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rrd"))
        .collect();
    files.sort();
    let mut problems = Vec::new();
    for f in files {
        let out = std::process::Command::new("rerun")
            .args(["rrd", "verify"])
            .arg(&f)
            .output();
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match out {
            Err(e) => problems.push(format!("{name}: cannot run `rerun rrd verify` ({e})")),
            Ok(o) => {
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                if text.contains("Not an RRD file") || text.contains("0 files verified") {
                    problems.push(format!("{name}: not a rerun recording; left out"));
                } else if !o.status.success() {
                    let why = text
                        .lines()
                        .find(|l| l.contains(".rrd\":"))
                        .and_then(|l| l.split("\":").nth(1))
                        .unwrap_or("verification failed")
                        .trim()
                        .to_string();
                    problems.push(format!(
                        "{name}: truncated or corrupt ({why}); what could be read was kept"
                    ));
                }
            }
        }
    }
    problems
}

/// Merges the nodes' parts into one `.rrd` with the rerun CLI of the matching
/// version, compacting the chunks on the way (`rerun rrd optimize`): each
/// node logs many small chunks, and the compacted episode is about a third
/// smaller and opens at once (a viewer otherwise shows it half-loaded for
/// seconds, and a headless screenshot catches it so).
pub fn merge_recording(parts: &Path, out: &Path) -> Option<PathBuf> {
    let inputs: Vec<PathBuf> = std::fs::read_dir(parts)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rrd") && starts_like_rrd(p))
        .collect();
    if inputs.is_empty() {
        return None;
    }
    let status = std::process::Command::new("rerun")
        .args(["rrd", "optimize", "-o"])
        .arg(out)
        .args(&inputs)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => Some(out.to_path_buf()),
        other => {
            eprintln!(
                "rosetta: could not merge the recording parts ({other:?}); they stay in {}",
                parts.display()
            );
            None
        }
    }
}

/// The episode's metadata, in the recording itself (`episode`): what was
/// asked, how it ended, and what reproduces it.
fn log_episode(rec: &rerun::RecordingStream, r: &DemoReport) {
    let md = format!(
        "## Episode\n\n\
         - command: \"{}\"\n- outcome: **{}** {}\n- planner: {}\n- attempts: {}\n\
         - scene: {}, seed {}\n- wall {:.1} s, sim {:.1} s\n- git revision: {}\n",
        r.command,
        r.outcome,
        r.message,
        r.planner.as_deref().unwrap_or("-"),
        r.attempts,
        r.scene,
        r.seed,
        r.wall_time_s,
        r.sim_time_s,
        r.git_revision.as_deref().unwrap_or("unknown"),
    );
    if let Err(e) = rec.log_static("episode", &rerun::TextDocument::from_markdown(md)) {
        tracing::warn!(error = %e, "cannot record the episode's metadata");
    }
    // The recording's name (the viewer lists it by that) and properties.
    let name = format!("\"{}\": {}", r.command, r.outcome);
    if let Err(e) = rec.send_recording_name(name) {
        tracing::warn!(error = %e, "cannot name the recording");
    }
    let text = |s: &str| [rerun::components::Text::from(s)];
    let props = rerun::AnyValues::default()
        .with_component::<rerun::components::Text>("command", text(&r.command))
        .with_component::<rerun::components::Text>("outcome", text(r.outcome.as_str()))
        .with_component::<rerun::components::Text>("message", text(&r.message))
        .with_component::<rerun::components::Text>(
            "planner",
            text(r.planner.as_deref().unwrap_or("-")),
        )
        .with_component::<rerun::components::Text>("model", text(&model_of(r)))
        .with_component::<rerun::components::Text>("scene", text(&r.scene))
        .with_component::<rerun::components::Scalar>(
            "sim_time_s",
            [rerun::components::Scalar::from(r.sim_time_s)],
        )
        .with_component::<rerun::components::Scalar>(
            "wall_time_s",
            [rerun::components::Scalar::from(r.wall_time_s)],
        )
        .with_component::<rerun::components::Text>(
            "git_revision",
            text(r.git_revision.as_deref().unwrap_or("unknown")),
        );
    if let Err(e) = rec.send_property("episode", &props) {
        tracing::warn!(error = %e, "cannot record the episode's properties");
    }
}

/// The language model a run's planner loaded (weights and adapter file
/// names, as the set-up's environment names them), or `none` for the rules
/// planner.
fn model_of(r: &DemoReport) -> String {
    let rules_only = r.planner.as_deref().is_some_and(|p| p.starts_with("rules"));
    if rules_only {
        return "none".into();
    }
    let file = |var: &str| {
        std::env::var_os(var).map(|p| {
            Path::new(&p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
    };
    match (file("ROSETTA_LLM_GGUF"), file("ROSETTA_LLM_ADAPTER")) {
        (Some(m), Some(a)) => format!("{m} + {a}"),
        (Some(m), None) => m,
        _ => "unknown".into(),
    }
}

/// The checkout's commit (with `-dirty` when it has changes), if this runs in one.
fn git_revision() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn write_report(report: &DemoReport, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text)
        .with_context(|| format!("cannot write the report to {}", path.display()))
}

fn print_summary(r: &DemoReport) {
    eprintln!(
        "rosetta: outcome: {} {}",
        r.outcome,
        if r.message.is_empty() { "" } else { &r.message }
    );
    for s in &r.steps {
        let state = match &s.state {
            StepState::Pending => "not started".to_string(),
            StepState::Running => "running".to_string(),
            StepState::Succeeded => "succeeded".to_string(),
            StepState::Failed { reason } => format!("failed: {reason}"),
            StepState::Cancelled => "cancelled".to_string(),
        };
        eprintln!("  {}. {} -> {state}", s.index + 1, s.skill.describe());
    }
    for c in &r.goal_checks {
        let verdict = if c.holds { "holds" } else { "does NOT hold" };
        eprintln!("  goal: {} {verdict} ({})", c.goal.describe(), c.why);
    }
    if let Some(gt) = &r.ground_truth {
        for o in &gt.objects {
            let place = match (&o.in_container, o.held) {
                (_, true) => " (held)".to_string(),
                (Some(c), false) => format!(" in {c}"),
                (None, false) => String::new(),
            };
            eprintln!(
                "  truth: {:<12} at ({:.2}, {:.2}, {:.2}){place}",
                o.id, o.position_m[0], o.position_m[1], o.position_m[2],
            );
        }
    }
    if let Some(c) = &r.camera {
        eprintln!(
            "rosetta: camera {:.1} frames/s of sim time ({} frames)",
            c.rate_hz, c.frames
        );
    }
    if let Some(l) = &r.control_loop {
        eprintln!(
            "rosetta: control loop {:.1} Hz, jitter p99 {:.2} ms (max {:.2} ms) over {} ticks",
            l.rate_hz, l.jitter_p99_ms, l.jitter_max_ms, l.ticks
        );
    }
    eprintln!(
        "rosetta: wall {:.1} s, sim {:.1} s, real-time factor {:.2}; episode {}",
        r.wall_time_s,
        r.sim_time_s,
        r.real_time_factor.unwrap_or(0.0),
        r.rrd_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| r.episode_dir.display().to_string())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A part left truncated by a killed node, and a file that is no
    /// recording, are named with the reason; the merge keeps the good part.
    /// (Needs the rerun CLI of the set-up: run through `./rosetta test`.)
    #[test]
    fn broken_recording_parts_are_named_and_the_rest_is_merged() {
        let dir = tempfile::tempdir().unwrap();
        let parts = dir.path().join("parts");
        std::fs::create_dir_all(&parts).unwrap();
        let rec = rosetta_common::rec::open_recording_at(&parts, "rosetta-test", "good", None);
        rosetta_common::rec::log_text(&rec, "good", "INFO", "hello");
        rec.flush_blocking().unwrap();
        drop(rec);
        let good = std::fs::read(parts.join("good.rrd")).unwrap();
        std::fs::write(parts.join("cut.rrd"), &good[..good.len() / 2]).unwrap();
        std::fs::write(parts.join("junk.rrd"), b"not a recording").unwrap();

        let problems = check_parts(&parts);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("cut.rrd: truncated or corrupt"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("junk.rrd: not a rerun recording"),
            "{problems:?}"
        );

        let merged = merge_recording(&parts, &dir.path().join("episode.rrd"));
        assert!(merged.is_some_and(|p| p.is_file()));
    }
}
