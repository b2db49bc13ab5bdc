//! The sim as an r2r node: a thin shell around [`crate::world::World`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{FutureExt, StreamExt};
use r2r::builtin_interfaces::msg::Time;
use r2r::std_msgs::msg::Header;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rosetta_common::robot::RobotDescription;
use rosetta_common::ros::{self, JsonPublisher, Spinner};
use rosetta_common::status::GroundTruth;
use rosetta_common::topics;

use rosetta_common::trajectory::TrajectoryPoint;

use crate::render::{render_camera, render_scan, RgbdFrame, Scan};
use crate::scene::Scene;
use crate::world::World;

/// Run the embedded simulator as a ROS 2 node.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Scene file (TOML), `default` for the built-in room with table, cubes
    /// and bins, or `random` for one generated from `--seed` (`random:N`
    /// names the generator's seed apart from the noise's).
    #[arg(long, default_value = "default")]
    pub scene: String,
    /// Seed of the sensor noise, and of the scene with `--scene random`. The
    /// same seed and scene give the same run.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Target real-time factor: sim seconds per wall second. The sim runs as
    /// fast as this allows and publishes its time on /clock.
    #[arg(long, default_value_t = 2.0)]
    pub rtf: f64,
    /// Standard deviation of the lidar's range noise, in metres.
    #[arg(long, default_value_t = 0.005)]
    pub lidar_noise_m: f64,
    /// Fault injection: let the first N grasps slip (the gripper closes on
    /// nothing), to exercise failure handling and re-planning.
    #[arg(long, default_value_t = 0)]
    pub slip_grasps: u32,
    /// Fault injection: the first N objects released into a container
    /// bounce out onto the floor beside it (the place step succeeds, the
    /// goal does not hold), to exercise the goal checks.
    #[arg(long, default_value_t = 0)]
    pub bounce_releases: u32,
    /// Fault injection: stop publishing /scan this many sim seconds after the
    /// base is first commanded to move (a lidar that dies on the way), to
    /// exercise control's scan watchdog.
    #[arg(long)]
    pub scan_blackout_after_s: Option<f64>,
    /// The base driver's e-stop line: while `/rosetta/estop` is true the
    /// base ignores /cmd_vel and brakes at this deceleration (m/s²; and
    /// three times it in rad/s² for turning), as a robot's motor drivers do
    /// when the e-stop opens, independently of the control software.
    #[arg(long, default_value_t = 5.0)]
    pub estop_decel_m_s2: f64,
    /// The odometry's frame (REP-105: `odom`); another name plays a robot
    /// whose drivers call it something else.
    #[arg(long, default_value = "odom")]
    pub odom_frame: String,
}

impl SimArgs {
    /// The scene these arguments name (`random` is generated from `seed`).
    pub fn load_scene(&self) -> Result<Scene, crate::scene::SceneError> {
        if self.scene == "random" {
            return Ok(Scene::random(self.seed));
        }
        Scene::load(&self.scene)
    }
}

const PHYSICS_DT_S: f64 = 0.01;
/// The sim catches up (at most twice as fast as its rate) a lag of at most
/// this much wall time; beyond it, it runs slower than real time instead.
const PACE_MAX_LAG_S: f64 = 0.25;
const ODOM_EVERY: u64 = 2; // 50 Hz
const GROUND_TRUTH_EVERY: u64 = 20; // 5 Hz

fn header(stamp: Time, frame: &str) -> Header {
    Header {
        stamp,
        frame_id: frame.to_string(),
    }
}

struct Publishers {
    clock: r2r::Publisher<r2r::rosgraph_msgs::msg::Clock>,
    odom: r2r::Publisher<r2r::nav_msgs::msg::Odometry>,
    joints: r2r::Publisher<r2r::sensor_msgs::msg::JointState>,
    image: r2r::Publisher<r2r::sensor_msgs::msg::Image>,
    depth: r2r::Publisher<r2r::sensor_msgs::msg::Image>,
    info: r2r::Publisher<r2r::sensor_msgs::msg::CameraInfo>,
    scan: r2r::Publisher<r2r::sensor_msgs::msg::LaserScan>,
    truth: JsonPublisher<GroundTruth>,
}

pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    if !(args.rtf > 0.0 && args.rtf.is_finite()) {
        anyhow::bail!("--rtf must be a positive number, got {}", args.rtf);
    }
    if !(args.estop_decel_m_s2 > 0.0 && args.estop_decel_m_s2.is_finite()) {
        anyhow::bail!(
            "--estop-decel-m-s2 must be a positive number, got {}",
            args.estop_decel_m_s2
        );
    }
    let scene = args.load_scene()?;
    let robot = RobotDescription::default();
    tracing::info!(scene = %scene.name, seed = args.seed, rtf = args.rtf, "starting the embedded sim");
    let mut world = World::new(scene, robot);
    world.slip_grasps = args.slip_grasps;
    world.bounce_releases = args.bounce_releases;

    let mut node = ros::create_node("rosetta_sim")?;
    let qos = ros::sensor_qos();
    let pubs = Publishers {
        clock: node.create_publisher(topics::CLOCK, qos.clone())?,
        odom: node.create_publisher(topics::ODOM, qos.clone())?,
        joints: node.create_publisher(topics::JOINT_STATES, qos.clone())?,
        image: node.create_publisher(topics::IMAGE, qos.clone())?,
        depth: node.create_publisher(topics::DEPTH, qos.clone())?,
        info: node.create_publisher(topics::CAMERA_INFO, qos.clone())?,
        scan: node.create_publisher(topics::SCAN, qos.clone())?,
        truth: JsonPublisher::new(&mut node, topics::GROUND_TRUTH)?,
    };
    let cmd_vel =
        node.subscribe::<r2r::geometry_msgs::msg::Twist>(topics::CMD_VEL, ros::reliable_qos())?;
    let arm = node.subscribe::<r2r::trajectory_msgs::msg::JointTrajectory>(
        topics::ARM_TRAJECTORY,
        ros::reliable_qos(),
    )?;
    let gripper = node.subscribe::<r2r::trajectory_msgs::msg::JointTrajectory>(
        topics::GRIPPER_TRAJECTORY,
        ros::reliable_qos(),
    )?;
    let estop = node.subscribe::<r2r::std_msgs::msg::Bool>(topics::ESTOP, ros::reliable_qos())?;
    let node = Arc::new(Mutex::new(node));
    let _spinner = Spinner::start(node.clone());

    let stop = Arc::new(AtomicBool::new(false));
    let stop_loop = stop.clone();
    let loop_args = args.clone();
    let mut sim = tokio::task::spawn_blocking(move || {
        sim_loop(
            world,
            pubs,
            cmd_vel,
            futures::stream::select(arm, gripper),
            estop,
            &loop_args,
            &stop_loop,
        )
    });
    tokio::select! {
        _ = ros::shutdown_signal() => {}
        r = &mut sim => {
            r.context("sim loop panicked")?;
            return Ok(());
        }
    }
    stop.store(true, Ordering::Relaxed);
    sim.await.context("sim loop panicked")?;
    Ok(())
}

fn sim_loop(
    mut world: World,
    pubs: Publishers,
    mut cmd_vel: impl futures::Stream<Item = r2r::geometry_msgs::msg::Twist> + Unpin,
    mut joints: impl futures::Stream<Item = r2r::trajectory_msgs::msg::JointTrajectory> + Unpin,
    mut estop: impl futures::Stream<Item = r2r::std_msgs::msg::Bool> + Unpin,
    args: &SimArgs,
    stop: &AtomicBool,
) {
    let (rtf, lidar_noise_m, scan_blackout_after_s) =
        (args.rtf, args.lidar_noise_m, args.scan_blackout_after_s);
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let cam = world.robot.camera.clone();
    let lidar = world.robot.lidar.clone();
    let camera_every = ((1.0 / cam.rate_hz) / PHYSICS_DT_S).round().max(1.0) as u64;
    let scan_every = ((1.0 / lidar.rate_hz) / PHYSICS_DT_S).round().max(1.0) as u64;
    let wall_start = Instant::now();
    let mut pacer = crate::pace::Pacer::new(
        rtf,
        PHYSICS_DT_S,
        wall_start,
        world.time_s,
        Duration::from_secs_f64(PACE_MAX_LAG_S),
    );
    let mut last_report = (Instant::now(), 0.0);
    let mut step: u64 = 0;
    let mut first_motion_s: Option<f64> = None;
    let decel = args.estop_decel_m_s2;
    let mut truth_rec = crate::rec::TruthLogger::open();
    while !stop.load(Ordering::Relaxed) {
        while let Some(Some(m)) = estop.next().now_or_never() {
            world.set_estop(m.data.then_some((decel, 3.0 * decel)));
        }
        while let Some(Some(t)) = cmd_vel.next().now_or_never() {
            if let Err(e) = world.command_velocity(t.linear.x, t.angular.z) {
                tracing::warn!("{e}");
            }
        }
        {
            while let Some(Some(m)) = joints.next().now_or_never() {
                let Some(last) = m.points.last() else {
                    tracing::warn!("joint trajectory with no points ignored");
                    continue;
                };
                let timed = m.points.len() > 1
                    || last.time_from_start.sec > 0
                    || last.time_from_start.nanosec > 0;
                let arm = &world.robot.arm;
                let is_arm = m.joint_names.iter().any(|n| arm.joint_names.contains(n));
                let result = if timed && is_arm {
                    // Followed point by point, in time.
                    let points: Vec<TrajectoryPoint> = m
                        .points
                        .iter()
                        .map(|p| TrajectoryPoint {
                            time_from_start_s: f64::from(p.time_from_start.sec)
                                + f64::from(p.time_from_start.nanosec) * 1e-9,
                            positions: p.positions.clone(),
                            velocities: p.velocities.clone(),
                        })
                        .collect();
                    world.command_trajectory(&m.joint_names, &points)
                } else {
                    // A single target: the joints go there at their speed limits.
                    world.command_joints(&m.joint_names, &last.positions)
                };
                if let Err(e) = result {
                    tracing::warn!("joint trajectory rejected: {e}");
                }
            }
        }

        world.step(PHYSICS_DT_S);
        step += 1;
        truth_rec.log(&world);
        let stamp = ros::secs_to_stamp(world.time_s);
        let clock = r2r::rosgraph_msgs::msg::Clock {
            clock: stamp.clone(),
        };
        ros::traced_publish(topics::CLOCK, pubs.clock.publish(&clock));
        if step.is_multiple_of(ODOM_EVERY) {
            publish_odom(&pubs, &world, &stamp, &args.odom_frame);
        }
        if first_motion_s.is_none() && (world.linear_m_s != 0.0 || world.angular_rad_s != 0.0) {
            first_motion_s = Some(world.time_s);
        }
        let scan_alive = match (scan_blackout_after_s, first_motion_s) {
            (Some(after), Some(t0)) => world.time_s < t0 + after,
            _ => true,
        };
        if step.is_multiple_of(scan_every) && scan_alive {
            let scan = render_scan(&world, &lidar, lidar_noise_m, &mut rng);
            publish_scan(&pubs, &world, &scan, &stamp);
        }
        if step.is_multiple_of(camera_every) {
            let frame = render_camera(&world, &cam);
            publish_camera(&pubs, &world, frame, &stamp);
        }
        if step.is_multiple_of(GROUND_TRUTH_EVERY) {
            if let Err(e) = pubs.truth.publish(&world.ground_truth()) {
                tracing::warn!(error = %e, "ground truth publish failed");
            }
        }

        let wall_elapsed = last_report.0.elapsed().as_secs_f64();
        if wall_elapsed > 10.0 {
            let achieved = (world.time_s - last_report.1) / wall_elapsed;
            tracing::info!(
                sim_time_s = world.time_s,
                real_time_factor = achieved,
                behind_schedule_s = pacer.dropped_s,
                "sim running"
            );
            last_report = (Instant::now(), world.time_s);
        }
        // Pace to the target real-time factor (a long lag is dropped, not
        // caught up in a burst: see `pace`).
        let wait = pacer.wait(Instant::now(), world.time_s);
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
    truth_rec.flush();
    tracing::info!(
        sim_time_s = world.time_s,
        wall_s = wall_start.elapsed().as_secs_f64(),
        "sim stopped"
    );
}

fn publish_odom(pubs: &Publishers, world: &World, stamp: &Time, frame: &str) {
    use r2r::geometry_msgs::msg::{
        Point, Pose, PoseWithCovariance, Quaternion, Twist, TwistWithCovariance, Vector3,
    };
    let p = world.odom_pose();
    let (s, c) = (p.yaw_rad / 2.0).sin_cos();
    let mut cov = vec![0.0; 36];
    for i in [0, 7, 14, 21, 28, 35] {
        cov[i] = 1e-4;
    }
    let odom = r2r::nav_msgs::msg::Odometry {
        header: header(stamp.clone(), frame),
        child_frame_id: topics::FRAME_BASE.to_string(),
        pose: PoseWithCovariance {
            pose: Pose {
                position: Point {
                    x: p.x_m,
                    y: p.y_m,
                    z: 0.0,
                },
                orientation: Quaternion {
                    x: 0.0,
                    y: 0.0,
                    z: s,
                    w: c,
                },
            },
            covariance: cov.clone(),
        },
        twist: TwistWithCovariance {
            twist: Twist {
                linear: Vector3 {
                    x: world.linear_m_s,
                    y: 0.0,
                    z: 0.0,
                },
                angular: Vector3 {
                    x: 0.0,
                    y: 0.0,
                    z: world.angular_rad_s,
                },
            },
            covariance: cov,
        },
    };
    ros::traced_publish(topics::ODOM, pubs.odom.publish(&odom));
    let arm = &world.robot.arm;
    let mut name: Vec<String> = arm.joint_names.to_vec();
    name.push(arm.gripper_joint.clone());
    let mut position = world.arm_q.to_vec();
    position.push(world.gripper_opening_m);
    let js = r2r::sensor_msgs::msg::JointState {
        header: header(stamp.clone(), ""),
        name,
        position,
        velocity: vec![],
        effort: vec![],
    };
    ros::traced_publish(topics::JOINT_STATES, pubs.joints.publish(&js));
}

fn publish_scan(pubs: &Publishers, world: &World, scan: &Scan, stamp: &Time) {
    let l = &world.robot.lidar;
    let msg = r2r::sensor_msgs::msg::LaserScan {
        header: header(stamp.clone(), topics::FRAME_LIDAR),
        angle_min: scan.angle_min_rad as f32,
        angle_max: (scan.angle_min_rad
            + scan.angle_increment_rad * (scan.ranges_m.len() as f64 - 1.0))
            as f32,
        angle_increment: scan.angle_increment_rad as f32,
        time_increment: 0.0,
        scan_time: (1.0 / l.rate_hz) as f32,
        range_min: l.range_min_m as f32,
        range_max: l.range_max_m as f32,
        ranges: scan.ranges_m.clone(),
        intensities: vec![],
    };
    ros::traced_publish(topics::SCAN, pubs.scan.publish(&msg));
}

fn publish_camera(pubs: &Publishers, world: &World, frame: RgbdFrame, stamp: &Time) {
    let cam = &world.robot.camera;
    let h = header(stamp.clone(), topics::FRAME_CAMERA_OPTICAL);
    let image = r2r::sensor_msgs::msg::Image {
        header: h.clone(),
        height: frame.height,
        width: frame.width,
        encoding: "rgb8".into(),
        is_bigendian: 0,
        step: frame.width * 3,
        data: frame.rgb,
    };
    let mut depth_bytes = Vec::with_capacity(frame.depth_m.len() * 4);
    for d in &frame.depth_m {
        depth_bytes.extend_from_slice(&d.to_le_bytes());
    }
    let depth = r2r::sensor_msgs::msg::Image {
        header: h.clone(),
        height: frame.height,
        width: frame.width,
        encoding: "32FC1".into(),
        is_bigendian: 0,
        step: frame.width * 4,
        data: depth_bytes,
    };
    let k = cam.k();
    let info = r2r::sensor_msgs::msg::CameraInfo {
        header: h,
        height: frame.height,
        width: frame.width,
        distortion_model: "plumb_bob".into(),
        d: vec![0.0; 5],
        k: k.to_vec(),
        r: vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        p: vec![
            k[0], 0.0, k[2], 0.0, 0.0, k[4], k[5], 0.0, 0.0, 0.0, 1.0, 0.0,
        ],
        ..Default::default()
    };
    ros::traced_publish(topics::CAMERA_INFO, pubs.info.publish(&info));
    ros::traced_publish(topics::IMAGE, pubs.image.publish(&image));
    ros::traced_publish(topics::DEPTH, pubs.depth.publish(&depth));
}
