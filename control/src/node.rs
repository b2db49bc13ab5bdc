//! Control as an r2r node: skill goals (from the executive, or any client of
//! `/rosetta/skill`) and sensor state in; `/cmd_vel`, arm and gripper
//! trajectories, and control's status out. Every limit of [`crate::safety`],
//! the e-stop and the watchdogs apply here, whoever sent the goal.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use r2r::rosetta_interfaces::action::RunSkill;
use r2r::sensor_msgs::msg::LaserScan;
use r2r::trajectory_msgs::msg::{JointTrajectory, JointTrajectoryPoint};
use rosetta_common::grid::OccupancyGrid;
use rosetta_common::rec::{self, log_text};
use rosetta_common::robot::{ArmJoints, RobotDescription};
use rosetta_common::ros::{self, stamp_to_secs, JsonPublisher, Spinner};
use rosetta_common::status::{SkillState, TaskStatus};
use rosetta_common::trajectory::{plan_joint_trajectory, TrajectoryPoint};
use rosetta_common::{topics, Pose2D, Skill, WorldModel};

use crate::nav::Twist2D;
use crate::rec::{log_joints, log_planned_path, log_pose};
use crate::safety::{Geofence, SafetyChain, SafetyLimits, Watchdog};
use crate::skill_goal::{Admission, Review, SkillEnd, SkillGoals};
use crate::skill_runner::{Inputs, Outputs, SkillRunner};

/// Carry out plans on the robot.
#[derive(Debug, Clone, clap::Args)]
pub struct ControlArgs {
    /// Stop the base when odometry is older than this (wall seconds).
    #[arg(long, default_value_t = 0.5)]
    pub odom_timeout_s: f64,
    /// Side of the square occupancy grid the path planner maps from /scan,
    /// centred on where odometry starts (0.05 m cells).
    #[arg(long, default_value_t = 20.0)]
    pub grid_size_m: f64,
    /// Hold the base while navigating when the last scan is older than this
    /// (wall seconds): obstacles cannot be seen.
    #[arg(long, default_value_t = 1.0)]
    pub scan_timeout_s: f64,
    /// Run the 100 Hz loop (and its clock, one higher) under SCHED_FIFO at
    /// this priority, 1 to 98; 0 keeps the normal scheduler. Without the
    /// right (root, CAP_SYS_NICE or an rtprio limit) it warns and runs normally.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u8).range(0..=98))]
    pub realtime_priority: u8,
    /// The geofence, in odom: MIN_X,MIN_Y,MAX_X,MAX_Y in metres. The base's
    /// centre never drives out of it (turning is always allowed).
    #[arg(long, value_delimiter = ',', num_args = 4, allow_hyphen_values = true,
          default_values_t = [-9.5, -9.5, 9.5, 9.5])]
    pub geofence_m: Vec<f64>,
    /// Cap the base's forward speed below the URDF's limit (m/s), e.g. for a
    /// first run on a real robot. It can only lower the limit.
    #[arg(long)]
    pub max_linear_speed_m_s: Option<f64>,
    /// Cap the base's turn rate below the URDF's limit (rad/s).
    #[arg(long)]
    pub max_angular_speed_rad_s: Option<f64>,
}

/// The robot description with the command line's speed caps applied.
fn capped_robot(args: &ControlArgs) -> anyhow::Result<RobotDescription> {
    let mut robot = RobotDescription::default();
    for (cap, limit, what) in [
        (
            args.max_linear_speed_m_s,
            &mut robot.max_linear_speed_m_s,
            "--max-linear-speed-m-s",
        ),
        (
            args.max_angular_speed_rad_s,
            &mut robot.max_angular_speed_rad_s,
            "--max-angular-speed-rad-s",
        ),
    ] {
        if let Some(c) = cap {
            if !(c.is_finite() && c > 0.0) {
                anyhow::bail!("{what} must be a positive number, got {c}");
            }
            *limit = limit.min(c);
        }
    }
    Ok(robot)
}

enum Input {
    Odom(f64, Pose2D),
    Scan(LaserScan),
    /// A new occupancy grid from the mapper thread.
    Map(Arc<MapSnapshot>),
    Joints(r2r::sensor_msgs::msg::JointState),
    World(WorldModel),
    /// The e-stop: true engages it (latched), false releases it.
    Estop(bool),
    /// The control clock's deadline for this tick.
    Tick(Instant),
    /// A goal of the `/rosetta/skill` action, and a cancel of one.
    SkillGoal(r2r::ActionServerGoalRequest<RunSkill::Action>),
    SkillCancel(u64, r2r::ActionServerCancelRequest),
    Heartbeat,
}

/// The control loop's period: 100 Hz.
pub const CONTROL_PERIOD: Duration = Duration::from_millis(10);

/// Runs the control node on a thread of its own: that thread drives the loop
/// (`block_on`) and is the one real-time thread; nothing else of the process
/// shares its scheduling. The runtime has one worker of its own for spawned
/// tasks, and is multi-threaded because rerun's live (gRPC) sink may only
/// block inside a multi-threaded runtime.
pub async fn run(args: ControlArgs) -> anyhow::Result<()> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("control-loop".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(run_on_this_thread(args)));
            if done_tx.send(result).is_err() {
                tracing::debug!("the control loop ended after its caller stopped waiting");
            }
        })?;
    done_rx
        .await
        .map_err(|_| anyhow::anyhow!("the control loop thread panicked"))?
}

async fn run_on_this_thread(args: ControlArgs) -> anyhow::Result<()> {
    let robot = capped_robot(&args)?;
    tracing::info!(
        max_linear_speed_m_s = robot.max_linear_speed_m_s,
        max_angular_speed_rad_s = robot.max_angular_speed_rad_s,
        "base speed limits"
    );
    let safety = SafetyChain::new(
        geofence(&args.geofence_m)?,
        SafetyLimits::from_robot(&robot),
        args.scan_timeout_s,
    );
    let mut node = ros::create_node("rosetta_control")?;
    let (sensors, cancel_tx) = sensor_inputs(&mut node)?;
    let out = Publishers::create(&mut node)?;
    let node = Arc::new(Mutex::new(node));
    let _spinner = Spinner::start(node.clone());

    // The mapper: integrates scans into the occupancy grid on its own thread
    // (about 1 ms each), and hands the loop a snapshot to read.
    let (scan_tx, scan_rx) = std::sync::mpsc::channel::<(Pose2D, LaserScan)>();
    let (map_tx, map_rx) = tokio::sync::mpsc::unbounded_channel::<Arc<MapSnapshot>>();
    let grid_size_m = args.grid_size_m;
    let _mapper = std::thread::Builder::new()
        .name("control-mapper".into())
        .spawn(move || mapper(scan_rx, map_tx, grid_size_m))?;
    let maps = futures::stream::unfold(map_rx, |mut rx| async move {
        rx.recv().await.map(|m| (Input::Map(m), rx))
    });
    let clock_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let realtime = (args.realtime_priority > 0).then_some(args.realtime_priority);
    let (tick_rx, _clock) = crate::clock::spawn_clock(
        CONTROL_PERIOD,
        clock_stop.clone(),
        realtime.map(|p| p.saturating_add(1)),
    )?;
    let ticks = futures::stream::unfold(tick_rx, |mut rx| async move {
        rx.next().await.map(|d| (Input::Tick(d), rx))
    });
    let heartbeat = futures::stream::unfold((), |_| async {
        tokio::time::sleep(Duration::from_millis(250)).await;
        Some((Input::Heartbeat, ()))
    });
    let mut inputs = futures::stream::select_all(
        [ticks.boxed(), maps.boxed(), heartbeat.boxed()]
            .into_iter()
            .chain(sensors),
    );
    let mut control = ControlLoop::new(robot, safety, &args, out, cancel_tx, scan_tx);
    tracing::info!("control ready");
    let work = async {
        while let Some(input) = inputs.next().await {
            control.handle(input);
        }
    };
    // Only the loop itself becomes real-time: the spinner, mapper and
    // rerun threads were started above, with the normal scheduler.
    if let Some(p) = realtime {
        match crate::clock::set_realtime(p) {
            Ok(()) => tracing::info!(priority = p, "the control loop runs under SCHED_FIFO"),
            Err(e) => tracing::warn!("control loop: {e}"),
        }
    }
    tokio::select! {
        _ = ros::shutdown_signal() => {}
        _ = work => {}
    }
    clock_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    control.shut_down();
    Ok(())
}

/// The geofence of `--geofence-m`.
fn geofence(m: &[f64]) -> anyhow::Result<Geofence> {
    match *m {
        [x0, y0, x1, y1]
            if [x0, y0, x1, y1].iter().all(|v| v.is_finite()) && x0 < x1 && y0 < y1 =>
        {
            Ok(Geofence {
                min_m: [x0, y0],
                max_m: [x1, y1],
            })
        }
        _ => anyhow::bail!("--geofence-m needs MIN_X,MIN_Y,MAX_X,MAX_Y with min < max, got {m:?}"),
    }
}

type InputStream = futures::stream::BoxStream<'static, Input>;
type CancelSender = tokio::sync::mpsc::UnboundedSender<(u64, r2r::ActionServerCancelRequest)>;

/// The subscriptions and the skill action server, as streams of [`Input`],
/// and the sender that a goal's cancel requests go through.
fn sensor_inputs(node: &mut r2r::Node) -> anyhow::Result<(Vec<InputStream>, CancelSender)> {
    let qos = ros::sensor_qos();
    let odom = node
        .subscribe::<r2r::nav_msgs::msg::Odometry>(topics::ODOM, qos.clone())?
        .map(|m| Input::Odom(stamp_to_secs(&m.header.stamp), ros::odom_pose(&m)));
    let joints = node
        .subscribe::<r2r::sensor_msgs::msg::JointState>(topics::JOINT_STATES, qos.clone())?
        .map(Input::Joints);
    let scans = node
        .subscribe::<LaserScan>(topics::SCAN, qos)?
        .map(Input::Scan);
    let skill_goals = node
        .create_action_server::<RunSkill::Action>(topics::SKILL)?
        .map(Input::SkillGoal);
    let (cancel_tx, cancel_rx) = tokio::sync::mpsc::unbounded_channel();
    let skill_cancels = futures::stream::unfold(cancel_rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|(id, req)| (Input::SkillCancel(id, req), rx))
    });
    let estops = node
        .subscribe::<r2r::std_msgs::msg::Bool>(topics::ESTOP, ros::reliable_qos())?
        .map(|m| Input::Estop(m.data));
    let worlds = ros::json_subscription::<WorldModel>(node, topics::OBJECTS)?.map(Input::World);
    let streams = vec![
        skill_goals.boxed(),
        skill_cancels.boxed(),
        estops.boxed(),
        odom.boxed(),
        scans.boxed(),
        joints.boxed(),
        worlds.boxed(),
    ];
    Ok((streams, cancel_tx))
}

/// Control's publishers.
struct Publishers {
    cmd_vel: r2r::Publisher<r2r::geometry_msgs::msg::Twist>,
    arm: r2r::Publisher<JointTrajectory>,
    gripper: r2r::Publisher<JointTrajectory>,
    status: JsonPublisher<TaskStatus>,
}

impl Publishers {
    fn create(node: &mut r2r::Node) -> anyhow::Result<Self> {
        let reliable = ros::reliable_qos;
        Ok(Self {
            cmd_vel: node.create_publisher(topics::CMD_VEL, reliable())?,
            arm: node.create_publisher(topics::ARM_TRAJECTORY, reliable())?,
            gripper: node.create_publisher(topics::GRIPPER_TRAJECTORY, reliable())?,
            status: JsonPublisher::new(node, topics::CONTROL_STATUS)?,
        })
    }
}

/// What was last sent to the arm and gripper, and when.
struct ArmOut {
    arm: Option<ArmJoints>,
    gripper_m: Option<f64>,
    last_resend: Instant,
    busy_until: Option<Instant>,
}

/// The rerun recording and how often each stream is logged.
struct Recorder {
    rec: rerun::RecordingStream,
    /// The robot's body from the URDF, moved by the joint states.
    body: Option<rec::RobotBody>,
    /// The joint positions the body was last drawn at.
    body_q: Vec<f64>,
    last_pose_log_s: f64,
    last_joints_log_s: f64,
    driven: Vec<[f32; 3]>,
    planned: Vec<[f64; 2]>,
}

impl Recorder {
    fn open() -> Self {
        let rec = rec::open_recording("control");
        let body = if rec.is_enabled() {
            match rec::RobotBody::from_urdf(rosetta_common::urdf::ROBOT_URDF) {
                Ok(b) => {
                    b.log_static(&rec);
                    Some(b)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the robot's body is not drawn in the recording");
                    None
                }
            }
        } else {
            None
        };
        Self {
            rec,
            body,
            body_q: Vec::new(),
            last_pose_log_s: f64::NEG_INFINITY,
            last_joints_log_s: f64::NEG_INFINITY,
            driven: Vec::new(),
            planned: Vec::new(),
        }
    }

    /// The arm and gripper of the body at every joint state that moved them.
    fn log_body(
        &mut self,
        stamp_s: f64,
        names: &[String],
        q: &[f64],
        gripper: Option<(&str, f64)>,
    ) {
        let Some(body) = &self.body else {
            return;
        };
        let now: Vec<f64> = q.iter().copied().chain(gripper.map(|g| g.1)).collect();
        if now == self.body_q {
            return;
        }
        self.body_q = now;
        rec::set_sim_time(&self.rec, stamp_s);
        let named = names.iter().map(String::as_str).zip(q.iter().copied());
        body.log_joints(&self.rec, named.chain(gripper));
    }
}

/// The control loop's state: the skill runner, the safety chain, the
/// watchdogs, the skill goal, and what the sensors said last. Each input
/// goes to one handler; the limits themselves live in [`crate::safety`]
/// and the goal's lifecycle in [`crate::skill_goal`], both pure.
struct ControlLoop {
    robot: RobotDescription,
    exec: SkillRunner,
    safety: SafetyChain,
    odom_watch: Watchdog,
    scan_watch: Watchdog,
    /// The latest odometry: (sim stamp, pose).
    odom: Option<(f64, Pose2D)>,
    world: WorldModel,
    map: Arc<MapSnapshot>,
    arm_q: Option<ArmJoints>,
    gripper_m: Option<f64>,
    skills: SkillGoals,
    skill_handle: Option<(u64, r2r::ActionServerGoal<RunSkill::Action>)>,
    cancel_tx: CancelSender,
    scan_tx: std::sync::mpsc::Sender<(Pose2D, LaserScan)>,
    out: Publishers,
    sent: ArmOut,
    rec: Recorder,
    loop_stats: crate::clock::LoopStats,
    last_tick: Option<Instant>,
    last_beat: Instant,
}

impl ControlLoop {
    fn new(
        robot: RobotDescription,
        safety: SafetyChain,
        args: &ControlArgs,
        out: Publishers,
        cancel_tx: CancelSender,
        scan_tx: std::sync::mpsc::Sender<(Pose2D, LaserScan)>,
    ) -> Self {
        let grid = OccupancyGrid::new([0.0, 0.0], [args.grid_size_m, args.grid_size_m], 0.05);
        Self {
            exec: SkillRunner::new(robot.clone()),
            robot,
            safety,
            odom_watch: Watchdog::new(args.odom_timeout_s),
            scan_watch: Watchdog::new(args.scan_timeout_s),
            odom: None,
            world: WorldModel::default(),
            map: Arc::new(MapSnapshot {
                grid,
                obstacles_m: Vec::new(),
            }),
            arm_q: None,
            gripper_m: None,
            skills: SkillGoals::default(),
            skill_handle: None,
            cancel_tx,
            scan_tx,
            out,
            sent: ArmOut {
                arm: None,
                gripper_m: None,
                last_resend: Instant::now(),
                busy_until: None,
            },
            rec: Recorder::open(),
            loop_stats: crate::clock::LoopStats::new(CONTROL_PERIOD, 1000),
            last_tick: None,
            last_beat: Instant::now(),
        }
    }

    fn handle(&mut self, input: Input) {
        let outputs = match input {
            Input::Joints(js) => {
                self.on_joints(&js);
                None
            }
            Input::World(w) => {
                self.world = w;
                None
            }
            Input::Estop(on) => {
                self.on_estop(on);
                None
            }
            Input::SkillGoal(req) => {
                self.on_skill_goal(req);
                None
            }
            Input::SkillCancel(id, req) => self.on_skill_cancel(id, req),
            Input::Scan(scan) => {
                self.on_scan(scan);
                None
            }
            Input::Map(snapshot) => {
                self.map = snapshot;
                None
            }
            Input::Odom(t, pose) => self.on_odom(t, pose),
            Input::Tick(deadline) => self.on_tick(deadline),
            Input::Heartbeat => {
                self.on_heartbeat();
                None
            }
        };
        if let Some(out) = outputs {
            self.apply(out);
        }
        self.review_skill();
        self.publish_status();
    }

    fn on_joints(&mut self, js: &r2r::sensor_msgs::msg::JointState) {
        let arm = &self.robot.arm;
        let mut q = [0.0; 3];
        let mut found = 0;
        for (n, p) in js.name.iter().zip(js.position.iter()) {
            if !p.is_finite() {
                continue;
            }
            if let Some(i) = arm.joint_names.iter().position(|j| j == n) {
                q[i] = *p;
                found += 1;
            } else if *n == arm.gripper_joint {
                self.gripper_m = Some(*p);
            }
        }
        if found != 3 {
            return;
        }
        self.arm_q = Some(q);
        // The body in the recording at each joint state that moved it; the
        // joints' time series at most at 10 Hz.
        let stamp = stamp_to_secs(&js.header.stamp);
        let gripper = self.gripper_m.map(|g| (arm.gripper_joint.as_str(), g));
        self.rec.log_body(stamp, &arm.joint_names, &q, gripper);
        if stamp - self.rec.last_joints_log_s >= 0.1 {
            self.rec.last_joints_log_s = stamp;
            log_joints(&self.rec.rec, stamp, &arm.joint_names, &q, gripper);
        }
    }

    fn on_estop(&mut self, on: bool) {
        if on {
            self.engage_estop("e-stop engaged");
        } else if self.safety.set_estop(false) {
            tracing::info!("e-stop released; the robot stays stopped until a new command");
            log_text(&self.rec.rec, "control", "INFO", "e-stop released");
        }
    }

    /// Latches the e-stop and halts now, not at the next tick: zero twist,
    /// and the arm and gripper held where they are.
    fn engage_estop(&mut self, why: &str) {
        if !self.safety.set_estop(true) {
            return;
        }
        tracing::warn!("E-STOP engaged ({why}): base and arm halted");
        log_text(
            &self.rec.rec,
            "control",
            "WARN",
            &format!("e-stop engaged: {why}"),
        );
        self.exec.stop(why);
        self.send_twist(Twist2D::default());
        let arm = &self.robot.arm;
        if let Some(q) = self.arm_q {
            let hold = trajectory(arm.joint_names.to_vec(), q.to_vec());
            if let Err(e) = self.out.arm.publish(&hold) {
                tracing::error!(error = %e, "e-stop: cannot hold the arm");
            }
            self.sent.arm = Some(q);
        }
        if let Some(g) = self.gripper_m {
            let hold = trajectory(vec![arm.gripper_joint.clone()], vec![g]);
            if let Err(e) = self.out.gripper.publish(&hold) {
                tracing::error!(error = %e, "e-stop: cannot hold the gripper");
            }
            self.sent.gripper_m = Some(g);
        }
    }

    /// A publish on a safety path failed: logged, and answered by the
    /// e-stop (the robot must not go on with commands that did not arrive).
    fn publish_failed(&mut self, topic: &str, e: &r2r::Error) {
        tracing::error!(error = %e, topic, "cannot publish; engaging the e-stop");
        self.engage_estop(&format!("cannot publish on {topic}: {e}"));
    }

    /// Sends `t` on `/cmd_vel`, through nothing: callers pass the safety
    /// chain's output or a stop.
    fn send_twist(&mut self, t: Twist2D) {
        let msg = r2r::geometry_msgs::msg::Twist {
            linear: r2r::geometry_msgs::msg::Vector3 {
                x: t.linear_m_s,
                ..Default::default()
            },
            angular: r2r::geometry_msgs::msg::Vector3 {
                z: t.angular_rad_s,
                ..Default::default()
            },
        };
        self.safety.sent(t);
        if let Err(e) = self.out.cmd_vel.publish(&msg) {
            self.publish_failed(topics::CMD_VEL, &e);
        }
    }

    fn now_s(&self) -> Option<f64> {
        self.odom.map(|(t, _)| t)
    }

    fn on_skill_goal(&mut self, req: r2r::ActionServerGoalRequest<RunSkill::Action>) {
        let parsed = serde_json::from_str::<rosetta_common::Skill>(&req.goal.skill_json)
            .map_err(|e| e.to_string());
        let timeout_s = req.goal.timeout_s;
        let (mut goal, cancels) = match req.accept() {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "cannot accept a skill goal");
                return;
            }
        };
        let now_s = self.now_s().unwrap_or(0.0);
        let estop = self.safety.estop_engaged();
        match self.skills.admit(parsed, timeout_s, estop, now_s) {
            Admission::Rejected(end) => {
                tracing::warn!(why = %end.message, "skill goal rejected");
                finish_goal(&mut goal, &end);
            }
            Admission::Run {
                command_id,
                plan,
                preempted,
            } => {
                if let (Some((_, end)), Some((_, mut old))) = (preempted, self.skill_handle.take())
                {
                    finish_goal(&mut old, &end);
                }
                let skill = plan
                    .iter()
                    .map(Skill::describe)
                    .collect::<Vec<_>>()
                    .join(", ");
                tracing::info!(%skill, command_id, "skill goal accepted");
                self.exec.start_attempt(command_id, 1, plan, now_s);
                let tx = self.cancel_tx.clone();
                tokio::spawn(async move {
                    let mut cancels = cancels;
                    while let Some(req) = cancels.next().await {
                        if tx.send((command_id, req)).is_err() {
                            return;
                        }
                    }
                });
                self.skill_handle = Some((command_id, goal));
            }
        }
    }

    fn on_skill_cancel(&mut self, id: u64, req: r2r::ActionServerCancelRequest) -> Option<Outputs> {
        req.accept();
        let end = self.skills.cancel(id)?;
        let out = self.exec.stop("canceled by the skill's client");
        if let Some((_, mut goal)) = self.skill_handle.take_if(|(h, _)| *h == id) {
            let result = skill_result(&end);
            if let Err(e) = goal.cancel(result) {
                tracing::warn!(error = %e, "cannot report the skill goal canceled");
            }
        }
        Some(out)
    }

    fn on_scan(&mut self, scan: LaserScan) {
        self.scan_watch.feed(Instant::now());
        self.safety.scan_seen();
        // The scan was taken about where odometry last put the robot; the
        // mapper thread integrates it off this loop.
        if let Some((_, pose)) = self.odom {
            let sensor = self.robot.lidar.sensor_pose(&pose);
            if self.scan_tx.send((sensor, scan)).is_err() {
                tracing::error!("the mapper thread is gone");
            }
        }
    }

    fn on_odom(&mut self, t: f64, pose: Pose2D) -> Option<Outputs> {
        if !t.is_finite() || !pose.is_finite() {
            tracing::warn!("odometry with NaN: stopping");
            return Some(self.exec.stop("odometry contained NaN"));
        }
        self.odom = Some((t, pose));
        self.odom_watch.feed(Instant::now());
        None
    }

    /// One control step: the skill runner on the latest odometry (its stamp is
    /// the skill runner's clock), its command through the safety chain. Stale
    /// odometry holds the base (the heartbeat stops it).
    fn on_tick(&mut self, deadline: Instant) -> Option<Outputs> {
        let now = Instant::now();
        let dt = self
            .last_tick
            .map_or(CONTROL_PERIOD.as_secs_f64(), |l| (now - l).as_secs_f64());
        self.last_tick = Some(now);
        self.loop_stats.record(deadline, now);
        if !self.odom_watch.is_fresh(now) {
            return None;
        }
        let (t, pose) = self.odom?;
        let inp = Inputs {
            time_s: t,
            pose,
            arm_q: self.arm_q,
            gripper_m: self.gripper_m,
            world: &self.world,
            grid: Some(&self.map.grid),
            obstacles_m: &self.map.obstacles_m,
        };
        let was_running = self.exec.is_running();
        let mut out = self.exec.tick(&inp);
        if let Some(want) = out.cmd_vel {
            let (safe, held) = self
                .safety
                .command(&pose, want, dt, self.scan_watch.age_s(now));
            if held.newly_blind {
                tracing::warn!("the scan is stale: holding the base");
            }
            out.cmd_vel = Some(safe);
        } else if was_running && !self.exec.is_running() {
            out.cmd_vel = Some(Twist2D::default());
        }
        if self.safety.estop_engaged() {
            out = Outputs {
                cmd_vel: Some(Twist2D::default()),
                ..Default::default()
            };
        }
        self.log_motion(t, &pose);
        Some(out)
    }

    fn log_motion(&mut self, t: f64, pose: &Pose2D) {
        let rec = &mut self.rec;
        if self.exec.current_path() != rec.planned.as_slice() {
            rec.planned = self.exec.current_path().to_vec();
            log_planned_path(&rec.rec, &rec.planned);
        }
        let moved = rec
            .driven
            .last()
            .is_none_or(|l| (f64::from(l[0]) - pose.x_m).hypot(f64::from(l[1]) - pose.y_m) > 0.02);
        if moved {
            rec.driven.push([pose.x_m as f32, pose.y_m as f32, 0.01]);
            // At most 10 Hz: each log serialises the whole path.
            if t - rec.last_pose_log_s >= 0.1 {
                log_pose(&rec.rec, t, pose, &rec.driven);
                rec.last_pose_log_s = t;
            }
        }
    }

    fn on_heartbeat(&mut self) {
        if self.safety.estop_engaged() {
            self.send_twist(Twist2D::default());
        }
        let now = Instant::now();
        if self.exec.is_running() && self.odom_watch.newly_expired(now) {
            tracing::warn!("odometry is stale: holding the base still");
            self.send_twist(Twist2D::default());
        }
    }

    /// The skill runner's outputs to the base, arm and gripper.
    fn apply(&mut self, out: Outputs) {
        if let Some(t) = out.cmd_vel {
            if self.exec.is_running() || t != self.safety.last_sent() {
                self.send_twist(t);
            }
        }
        // Trajectories go out when the target changes, and again every 0.5 s while held.
        let resend = self.sent.last_resend.elapsed() > Duration::from_millis(500);
        if let Some(q) = out.arm_target {
            self.command_arm(q, resend);
        }
        if let Some(g) = out.gripper_target_m {
            if Some(g) != self.sent.gripper_m || resend {
                let msg = trajectory(vec![self.robot.arm.gripper_joint.clone()], vec![g]);
                self.sent.gripper_m = Some(g);
                self.sent.last_resend = Instant::now();
                if let Err(e) = self.out.gripper.publish(&msg) {
                    self.publish_failed(topics::GRIPPER_TRAJECTORY, &e);
                }
            }
        }
    }

    fn command_arm(&mut self, q: ArmJoints, resend: bool) {
        let arm = &self.robot.arm;
        let names = arm.joint_names.to_vec();
        let arm_idle = self.sent.busy_until.is_none_or(|t| Instant::now() > t);
        let msg = if Some(q) != self.sent.arm {
            // A new target: a timed trajectory within the joints' speed and
            // acceleration limits, from where the arm is.
            self.sent.arm = Some(q);
            match self.arm_q {
                Some(from) => {
                    let points = plan_joint_trajectory(
                        &from,
                        &q,
                        arm.max_joint_speed_rad_s,
                        arm.max_joint_accel_rad_s2,
                        TRAJECTORY_DT_S,
                    );
                    let duration = points.last().map_or(0.0, |p| p.time_from_start_s);
                    self.sent.busy_until = Some(Instant::now() + Duration::from_secs_f64(duration));
                    timed_trajectory(names, &points)
                }
                None => trajectory(names, q.to_vec()),
            }
        } else if resend && arm_idle {
            // Held: the target again, in case a message was lost.
            trajectory(names, q.to_vec())
        } else {
            return;
        };
        self.sent.last_resend = Instant::now();
        if let Err(e) = self.out.arm.publish(&msg) {
            self.publish_failed(topics::ARM_TRAJECTORY, &e);
        }
    }

    /// The skill goal, if one runs: feedback, timeout, and its end.
    fn review_skill(&mut self) {
        let status = self.exec.status();
        match self.skills.review(&status, self.now_s()) {
            Review::Nothing => {}
            Review::Feedback {
                command_id,
                message,
                elapsed_s,
            } => {
                if let Some((_, goal)) = self.skill_handle.as_mut().filter(|h| h.0 == command_id) {
                    let fb = RunSkill::Feedback {
                        state: SkillState::Running.as_str().into(),
                        message,
                        elapsed_s,
                    };
                    if let Err(e) = goal.publish_feedback(fb) {
                        tracing::warn!(error = %e, "cannot send the skill goal's feedback");
                    }
                }
            }
            Review::Ended {
                command_id,
                end,
                stop_robot,
            } => {
                if stop_robot {
                    let out = self.exec.stop(&end.message);
                    self.send_twist(out.cmd_vel.unwrap_or_default());
                }
                if let Some((_, mut goal)) = self.skill_handle.take_if(|h| h.0 == command_id) {
                    finish_goal(&mut goal, &end);
                }
            }
        }
    }

    fn publish_status(&mut self) {
        let changed = self.exec.take_changed();
        if !changed && self.last_beat.elapsed() <= Duration::from_millis(500) {
            return;
        }
        let mut status = self.exec.status();
        status.control_loop = self.loop_stats.summary();
        if changed {
            log_status(&self.rec.rec, &status);
        }
        if let Err(e) = self.out.status.publish(&status) {
            tracing::warn!(error = %e, "cannot publish status");
        }
        self.last_beat = Instant::now();
    }

    /// Leaves the robot stopped, and says so.
    fn shut_down(&mut self) {
        if let Some(l) = self.loop_stats.summary() {
            tracing::info!(
                rate_hz = l.rate_hz,
                jitter_p99_ms = l.jitter_p99_ms,
                jitter_max_ms = l.jitter_max_ms,
                wake_latency_p99_ms = l.wake_latency_p99_ms,
                "control loop timing (last {} ticks)",
                l.ticks
            );
        }
        self.exec.stop("node shutting down");
        self.send_twist(Twist2D::default());
        if let Err(e) = self.out.status.publish(&self.exec.status()) {
            tracing::warn!(error = %e, "cannot publish the final status");
        }
        if let Err(e) = self.rec.rec.flush_blocking() {
            tracing::warn!(error = %e, "cannot flush the recording");
        }
    }
}

/// Ends a skill goal with `end`: succeeded, or aborted with the state.
fn finish_goal(goal: &mut r2r::ActionServerGoal<RunSkill::Action>, end: &SkillEnd) {
    let result = skill_result(end);
    let sent = if end.success() {
        goal.succeed(result)
    } else {
        goal.abort(result)
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, state = end.state.as_str(), "cannot end the skill goal");
    }
}

/// What the mapper thread hands the control loop after each scan.
pub struct MapSnapshot {
    pub grid: OccupancyGrid,
    /// The scan's hits in `odom`: the base never drives into them.
    pub obstacles_m: Vec<[f64; 2]>,
}

/// Integrates each scan (taken at the given sensor pose) into the grid and
/// sends a snapshot; ends when either channel closes.
fn mapper(
    scans: std::sync::mpsc::Receiver<(Pose2D, LaserScan)>,
    out: tokio::sync::mpsc::UnboundedSender<Arc<MapSnapshot>>,
    grid_size_m: f64,
) {
    let mut grid = OccupancyGrid::new([0.0, 0.0], [grid_size_m, grid_size_m], 0.05);
    while let Ok((sensor, mut scan)) = scans.recv() {
        // Only the newest scan matters when several wait.
        let mut sensor = sensor;
        while let Ok((p, s)) = scans.try_recv() {
            (sensor, scan) = (p, s);
        }
        let view = ros::scan_view(&scan);
        grid.integrate_scan(&sensor, &view);
        let snapshot = MapSnapshot {
            obstacles_m: view.hit_points(&sensor),
            grid: grid.clone(),
        };
        if out.send(Arc::new(snapshot)).is_err() {
            return;
        }
    }
}

/// The action's result for `end`: the wire word of its state, mapped here
/// once.
fn skill_result(end: &SkillEnd) -> RunSkill::Result {
    RunSkill::Result {
        success: end.success(),
        state: end.state.as_str().into(),
        message: end.message.clone(),
    }
}

/// The time between a planned arm trajectory's points.
const TRAJECTORY_DT_S: f64 = 0.05;

fn timed_trajectory(names: Vec<String>, points: &[TrajectoryPoint]) -> JointTrajectory {
    JointTrajectory {
        joint_names: names,
        points: points
            .iter()
            .map(|p| JointTrajectoryPoint {
                positions: p.positions.clone(),
                velocities: p.velocities.clone(),
                time_from_start: ros::secs_to_duration(p.time_from_start_s),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn trajectory(names: Vec<String>, positions: Vec<f64>) -> JointTrajectory {
    JointTrajectory {
        joint_names: names,
        points: vec![JointTrajectoryPoint {
            positions,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn log_status(rec: &rerun::RecordingStream, s: &TaskStatus) {
    rec::set_sim_time(rec, s.stamp_s);
    let skill = s
        .steps
        .first()
        .map(|st| st.skill.describe())
        .unwrap_or_default();
    log_text(
        rec,
        "control",
        "INFO",
        &format!("skill {skill} {}: {}", s.task.as_str(), s.message),
    );
}
