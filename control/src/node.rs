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
use rosetta_common::status::{ExecutorStatus, StepState, TaskState};
use rosetta_common::trajectory::{plan_joint_trajectory, TrajectoryPoint};
use rosetta_common::{topics, Pose2D, WorldModel};

use crate::executor::{Executor, Inputs, Outputs};
use crate::nav::Twist2D;
use crate::rec::{log_joints, log_planned_path, log_pose};
use crate::safety::{Geofence, SafetyLimits};

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
            let _ = done_tx.send(result);
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
    let mut node = ros::create_node("rosetta_control")?;
    let qos = ros::sensor_qos();
    let odom = node
        .subscribe::<r2r::nav_msgs::msg::Odometry>(topics::ODOM, qos.clone())?
        .map(|m| Input::Odom(stamp_to_secs(&m.header.stamp), ros::odom_pose(&m)));
    let joints = node
        .subscribe::<r2r::sensor_msgs::msg::JointState>(topics::JOINT_STATES, qos.clone())?
        .map(Input::Joints);
    let scans = node
        .subscribe::<LaserScan>(topics::SCAN, qos.clone())?
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
    let worlds =
        ros::json_subscription::<WorldModel>(&mut node, topics::OBJECTS)?.map(Input::World);
    let cmd_vel = node
        .create_publisher::<r2r::geometry_msgs::msg::Twist>(topics::CMD_VEL, ros::reliable_qos())?;
    let arm_pub =
        node.create_publisher::<JointTrajectory>(topics::ARM_TRAJECTORY, ros::reliable_qos())?;
    let gripper_pub =
        node.create_publisher::<JointTrajectory>(topics::GRIPPER_TRAJECTORY, ros::reliable_qos())?;
    let status_pub = JsonPublisher::<ExecutorStatus>::new(&mut node, topics::CONTROL_STATUS)?;
    let node = Arc::new(Mutex::new(node));
    let _spinner = Spinner::start(node.clone());
    let rec = rec::open_recording("control");

    let heartbeat = futures::stream::unfold((), |_| async {
        tokio::time::sleep(Duration::from_millis(250)).await;
        Some((Input::Heartbeat, ()))
    });
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
    let mut inputs = futures::stream::select_all(vec![
        ticks.boxed(),
        maps.boxed(),
        skill_goals.boxed(),
        skill_cancels.boxed(),
        estops.boxed(),
        odom.boxed(),
        scans.boxed(),
        joints.boxed(),
        worlds.boxed(),
        heartbeat.boxed(),
    ]);

    let limits = SafetyLimits::from_robot(&robot);
    let fence = match args.geofence_m.as_slice() {
        &[x0, y0, x1, y1]
            if [x0, y0, x1, y1].iter().all(|v| v.is_finite()) && x0 < x1 && y0 < y1 =>
        {
            Geofence {
                min_m: [x0, y0],
                max_m: [x1, y1],
            }
        }
        other => anyhow::bail!(
            "--geofence-m needs MIN_X,MIN_Y,MAX_X,MAX_Y with min < max, got {other:?}"
        ),
    };
    let mut estop = false;
    let mut arm_busy_until: Option<Instant> = None;
    let mut skill: Option<ActiveSkill> = None;
    let mut last_pose_log_s = f64::NEG_INFINITY;
    let mut last_joints_log_s = f64::NEG_INFINITY;
    let mut skill_ids = 0u64;
    let mut last_tick: Option<Instant> = None;
    let mut loop_stats = crate::clock::LoopStats::new(CONTROL_PERIOD, 1000);
    let mut last_scan: Option<Instant> = None;
    let mut scan_stale_warned = false;
    let mut exec = Executor::new(robot.clone());
    let mut world = WorldModel::default();
    let mut arm_q: Option<ArmJoints> = None;
    let mut gripper_m: Option<f64> = None;
    let mut last_odom: Option<(Instant, f64, Pose2D)> = None;
    let mut last_cmd = Twist2D::default();
    let mut last_arm: (Option<ArmJoints>, Option<f64>) = (None, None);
    let mut last_resend = Instant::now();
    let mut path: Vec<[f32; 3]> = Vec::new();
    let mut last_beat = Instant::now();
    let mut odom_stale_warned = false;
    // The occupancy grid (odom frame) the path planner works on, and the
    // latest scan's hits, which the base never drives into.
    let mut map: Arc<MapSnapshot> = Arc::new(MapSnapshot {
        grid: OccupancyGrid::new([0.0, 0.0], [args.grid_size_m, args.grid_size_m], 0.05),
        obstacles_m: Vec::new(),
    });
    let mut logged_path: Vec<[f64; 2]> = Vec::new();
    tracing::info!("control ready");

    let publish_twist = |t: Twist2D| {
        let msg = r2r::geometry_msgs::msg::Twist {
            linear: r2r::geometry_msgs::msg::Vector3 {
                x: t.linear_m_s,
                y: 0.0,
                z: 0.0,
            },
            angular: r2r::geometry_msgs::msg::Vector3 {
                x: 0.0,
                y: 0.0,
                z: t.angular_rad_s,
            },
        };
        if let Err(e) = cmd_vel.publish(&msg) {
            tracing::warn!(error = %e, "cannot publish cmd_vel");
        }
    };

    let work = async {
        while let Some(input) = inputs.next().await {
            let mut outputs: Option<Outputs> = None;
            match input {
                Input::Joints(js) => {
                    let mut q = [0.0; 3];
                    let mut found = 0;
                    for (n, p) in js.name.iter().zip(js.position.iter()) {
                        if !p.is_finite() {
                            continue;
                        }
                        if let Some(i) = robot.arm.joint_names.iter().position(|j| j == n) {
                            q[i] = *p;
                            found += 1;
                        } else if *n == robot.arm.gripper_joint {
                            gripper_m = Some(*p);
                        }
                    }
                    if found == 3 {
                        arm_q = Some(q);
                        // The joints in the recording, at most at 10 Hz.
                        let stamp = stamp_to_secs(&js.header.stamp);
                        if stamp - last_joints_log_s >= 0.1 {
                            last_joints_log_s = stamp;
                            let gripper = gripper_m.map(|g| (robot.arm.gripper_joint.as_str(), g));
                            log_joints(&rec, stamp, &robot.arm.joint_names, &q, gripper);
                        }
                    }
                }
                Input::World(w) => world = w,
                Input::Estop(on) if on != estop => {
                    estop = on;
                    if on {
                        // Halt now, not at the next tick: zero twist, and the
                        // arm and gripper held where they are.
                        tracing::warn!("E-STOP engaged: base and arm halted");
                        log_text(&rec, "control", "WARN", "e-stop engaged");
                        exec.stop("e-stop engaged");
                        publish_twist(Twist2D::default());
                        last_cmd = Twist2D::default();
                        if let Some(q) = arm_q {
                            let _ = arm_pub
                                .publish(&trajectory(robot.arm.joint_names.to_vec(), q.to_vec()));
                            last_arm.0 = Some(q);
                        }
                        if let Some(g) = gripper_m {
                            let _ = gripper_pub.publish(&trajectory(
                                vec![robot.arm.gripper_joint.clone()],
                                vec![g],
                            ));
                            last_arm.1 = Some(g);
                        }
                    } else {
                        tracing::info!(
                            "e-stop released; the robot stays stopped until a new command"
                        );
                        log_text(&rec, "control", "INFO", "e-stop released");
                    }
                }
                Input::Estop(_) => {}
                Input::SkillGoal(req) => {
                    let now = last_odom.map(|o| o.1).unwrap_or(0.0);
                    let parsed =
                        serde_json::from_str::<rosetta_common::Skill>(&req.goal.skill_json);
                    let timeout_s = req.goal.timeout_s;
                    let (mut goal, cancel) = match req.accept() {
                        Ok(g) => g,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot accept a skill goal");
                            continue;
                        }
                    };
                    let refusal = match &parsed {
                        Err(e) => Some(format!("not a skill of the plan language: {e}")),
                        Ok(_) if estop => Some("e-stop engaged".to_string()),
                        Ok(_) if !timeout_s.is_finite() || timeout_s < 0.0 => {
                            Some(format!("timeout_s must be >= 0, got {timeout_s}"))
                        }
                        Ok(_) => None,
                    };
                    if let Some(why) = refusal {
                        tracing::warn!(%why, "skill goal rejected");
                        let _ = goal.abort(skill_result(false, "rejected", &why));
                        continue;
                    }
                    let Ok(step) = parsed else { continue };
                    if let Some(mut old) = skill.take() {
                        let _ = old.goal.abort(skill_result(
                            false,
                            "preempted",
                            "preempted by a new skill goal",
                        ));
                    }
                    skill_ids += 1;
                    let command_id = (1 << 61) + skill_ids;
                    tracing::info!(skill = %step.describe(), command_id, "skill goal accepted");
                    exec.start_attempt(command_id, 1, vec![step], now);
                    let tx = cancel_tx.clone();
                    tokio::spawn(async move {
                        let mut cancel = cancel;
                        while let Some(req) = cancel.next().await {
                            if tx.send((command_id, req)).is_err() {
                                return;
                            }
                        }
                    });
                    skill = Some(ActiveSkill {
                        goal,
                        command_id,
                        started_s: now,
                        timeout_s,
                        last_feedback: None,
                    });
                }
                Input::SkillCancel(id, req) => {
                    req.accept();
                    if let Some(mut active) = skill.take_if(|a| a.command_id == id) {
                        outputs = Some(exec.stop("canceled by the skill's client"));
                        let _ = active.goal.cancel(skill_result(
                            false,
                            "canceled",
                            "canceled; the robot stopped",
                        ));
                    }
                }
                Input::Scan(scan) => {
                    last_scan = Some(Instant::now());
                    scan_stale_warned = false;
                    // The scan was taken about where odometry last put the
                    // robot; the mapper thread integrates it off this loop.
                    if let Some((_, _, pose)) = last_odom {
                        let sensor = robot.lidar.sensor_pose(&pose);
                        if scan_tx.send((sensor, scan)).is_err() {
                            tracing::error!("the mapper thread is gone");
                        }
                    }
                }
                Input::Map(snapshot) => map = snapshot,
                Input::Odom(t, pose) => {
                    if !t.is_finite() || !pose.is_finite() {
                        tracing::warn!("odometry with NaN: stopping");
                        outputs = Some(exec.stop("odometry contained NaN"));
                    } else {
                        last_odom = Some((Instant::now(), t, pose));
                        odom_stale_warned = false;
                    }
                }
                Input::Tick(deadline) => {
                    let now = Instant::now();
                    let dt =
                        last_tick.map_or(CONTROL_PERIOD.as_secs_f64(), |l| (now - l).as_secs_f64());
                    last_tick = Some(now);
                    loop_stats.record(deadline, now);
                    // The executor runs on the latest odometry (its stamp is
                    // the executor's clock); stale odometry holds the base.
                    let fresh = last_odom
                        .filter(|(at, _, _)| at.elapsed().as_secs_f64() <= args.odom_timeout_s);
                    if let Some((_, t, pose)) = fresh {
                        let inp = Inputs {
                            time_s: t,
                            pose,
                            arm_q,
                            gripper_m,
                            world: &world,
                            grid: Some(&map.grid),
                            obstacles_m: &map.obstacles_m,
                        };
                        let was_running = exec.is_running();
                        let mut out = exec.tick(&inp);
                        let scan_stale = last_scan
                            .is_none_or(|s| s.elapsed().as_secs_f64() > args.scan_timeout_s);
                        if let Some(want) = out.cmd_vel {
                            let mut want = fence.apply(&pose, want);
                            if scan_stale && want.linear_m_s != 0.0 {
                                // Blind: obstacles cannot be seen, so the base only turns.
                                if !scan_stale_warned {
                                    tracing::warn!("the scan is stale: holding the base");
                                    scan_stale_warned = true;
                                }
                                want.linear_m_s = 0.0;
                            }
                            let safe = limits.apply(last_cmd, want, dt);
                            out.cmd_vel = Some(safe);
                        } else if was_running && !exec.is_running() {
                            out.cmd_vel = Some(Twist2D::default());
                        }
                        if estop {
                            out = Outputs {
                                cmd_vel: Some(Twist2D::default()),
                                ..Default::default()
                            };
                        }
                        outputs = Some(out);
                        if exec.current_path() != logged_path.as_slice() {
                            logged_path = exec.current_path().to_vec();
                            log_planned_path(&rec, &logged_path);
                        }
                        if path.last().is_none_or(|l| {
                            (l[0] as f64 - pose.x_m).hypot(l[1] as f64 - pose.y_m) > 0.02
                        }) {
                            path.push([pose.x_m as f32, pose.y_m as f32, 0.01]);
                            // At most 10 Hz: each log serialises the whole path.
                            if t - last_pose_log_s >= 0.1 {
                                log_pose(&rec, t, &pose, &path);
                                last_pose_log_s = t;
                            }
                        }
                    }
                }
                Input::Heartbeat => {
                    if estop {
                        publish_twist(Twist2D::default());
                    }
                    if let Some((at, _, _)) = last_odom {
                        if exec.is_running()
                            && at.elapsed().as_secs_f64() > args.odom_timeout_s
                            && !odom_stale_warned
                        {
                            tracing::warn!("odometry is stale: holding the base still");
                            publish_twist(Twist2D::default());
                            last_cmd = Twist2D::default();
                            odom_stale_warned = true;
                        }
                    }
                }
            }
            if let Some(out) = outputs {
                if let Some(t) = out.cmd_vel {
                    if exec.is_running() || t != last_cmd {
                        publish_twist(t);
                    }
                    last_cmd = t;
                }
                // Trajectories go out when the target changes, and again every 0.5 s while held.
                let resend = last_resend.elapsed() > Duration::from_millis(500);
                let arm_idle = arm_busy_until.is_none_or(|t| Instant::now() > t);
                if let Some(q) = out.arm_target {
                    let names = robot.arm.joint_names.to_vec();
                    if Some(q) != last_arm.0 {
                        // A new target: a timed trajectory within the joints'
                        // speed and acceleration limits, from where the arm is.
                        let msg = match arm_q {
                            Some(from) => {
                                let points = plan_joint_trajectory(
                                    &from,
                                    &q,
                                    robot.arm.max_joint_speed_rad_s,
                                    robot.arm.max_joint_accel_rad_s2,
                                    TRAJECTORY_DT_S,
                                );
                                let duration = points.last().map_or(0.0, |p| p.time_from_start_s);
                                arm_busy_until =
                                    Some(Instant::now() + Duration::from_secs_f64(duration));
                                timed_trajectory(names, &points)
                            }
                            None => trajectory(names, q.to_vec()),
                        };
                        let _ = arm_pub.publish(&msg);
                        last_arm.0 = Some(q);
                        last_resend = Instant::now();
                    } else if resend && arm_idle {
                        // Held: the target again, in case a message was lost.
                        let _ = arm_pub.publish(&trajectory(names, q.to_vec()));
                        last_resend = Instant::now();
                    }
                }
                if out.gripper_target_m.is_some() && (out.gripper_target_m != last_arm.1 || resend)
                {
                    if let Some(g) = out.gripper_target_m {
                        let _ = gripper_pub
                            .publish(&trajectory(vec![robot.arm.gripper_joint.clone()], vec![g]));
                    }
                    last_arm.1 = out.gripper_target_m;
                    last_resend = Instant::now();
                }
            }
            // The skill goal, if one runs: feedback, timeout, and its end.
            if let Some(mut active) = skill.take() {
                let st = exec.status();
                let now = last_odom.map(|o| o.1).unwrap_or(active.started_s);
                let elapsed = now - active.started_s;
                let ended = if st.command_id != active.command_id {
                    Some(skill_result(false, "preempted", "preempted by a plan"))
                } else if st.task == TaskState::Running
                    && active.timeout_s > 0.0
                    && elapsed > active.timeout_s
                {
                    let why = format!("timed out after {:.1} s", active.timeout_s);
                    let out = exec.stop(&why);
                    publish_twist(out.cmd_vel.unwrap_or_default());
                    last_cmd = Twist2D::default();
                    Some(skill_result(false, "timed_out", &why))
                } else {
                    match st.task {
                        TaskState::Succeeded => Some(skill_result(true, "succeeded", &st.message)),
                        TaskState::Failed => Some(skill_result(false, "failed", &st.message)),
                        // A `stop` skill that ran is a success.
                        TaskState::Stopped
                            if st.steps.first().is_some_and(|s| {
                                matches!(s.skill, rosetta_common::Skill::Stop)
                                    && s.state == StepState::Succeeded
                            }) =>
                        {
                            Some(skill_result(true, "succeeded", &st.message))
                        }
                        TaskState::Stopped => Some(skill_result(false, "canceled", &st.message)),
                        TaskState::Running | TaskState::Idle => None,
                    }
                };
                match ended {
                    Some(r) if r.success => {
                        let _ = active.goal.succeed(r);
                    }
                    Some(r) => {
                        let _ = active.goal.abort(r);
                    }
                    None => {
                        let fb = (st.message.clone(), (elapsed * 2.0).floor());
                        if active.last_feedback.as_ref() != Some(&fb) {
                            let _ = active.goal.publish_feedback(RunSkill::Feedback {
                                state: "running".into(),
                                message: st.message.clone(),
                                elapsed_s: elapsed,
                            });
                            active.last_feedback = Some(fb);
                        }
                        skill = Some(active);
                    }
                }
            }
            let changed = exec.take_changed();
            if changed || last_beat.elapsed() > Duration::from_millis(500) {
                let mut status = exec.status();
                status.control_loop = loop_stats.summary();
                if changed {
                    log_status(&rec, &status);
                }
                if let Err(e) = status_pub.publish(&status) {
                    tracing::warn!(error = %e, "cannot publish status");
                }
                last_beat = Instant::now();
            }
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
    if let Some(l) = loop_stats.summary() {
        tracing::info!(
            rate_hz = l.rate_hz,
            jitter_p99_ms = l.jitter_p99_ms,
            jitter_max_ms = l.jitter_max_ms,
            wake_latency_p99_ms = l.wake_latency_p99_ms,
            "control loop timing (last {} ticks)",
            l.ticks
        );
    }
    // Leave the robot stopped.
    exec.stop("node shutting down");
    publish_twist(Twist2D::default());
    let _ = status_pub.publish(&exec.status());
    let _ = rec.flush_blocking();
    Ok(())
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

/// A goal of the `/rosetta/skill` action being carried out.
struct ActiveSkill {
    goal: r2r::ActionServerGoal<RunSkill::Action>,
    command_id: u64,
    started_s: f64,
    timeout_s: f64,
    /// The last feedback sent (message, half-seconds elapsed), to send only changes.
    last_feedback: Option<(String, f64)>,
}

fn skill_result(success: bool, state: &str, message: &str) -> RunSkill::Result {
    RunSkill::Result {
        success,
        state: state.into(),
        message: message.into(),
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

fn log_status(rec: &rerun::RecordingStream, s: &ExecutorStatus) {
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
        &format!("skill {skill} {:?}: {}", s.task, s.message),
    );
}
