//! `rosetta up`: the whole stack on the embedded sim, running until Ctrl-C,
//! commanded by other programs through the `/rosetta/execute` action.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rosetta_common::ros::{self, Spinner};
use rosetta_common::status::{GroundTruth, TaskStatus};
use rosetta_common::{topics, WorldModel};

use crate::demo::{
    check_parts, finish_recording, merge_recording, spawn_all, stack_specs, wait_for, Episode,
    WaitEnd,
};
use crate::procs::stop_all;
use crate::profile::RobotProfile;

/// Start the sim and every node, and keep them running until Ctrl-C.
///
/// Once every node is connected it prints `ready` on stdout. Then command the
/// robot from any ROS 2 program through the action `/rosetta/execute`
/// (`rosetta_interfaces/action/ExecuteCommand`: goal = the words, feedback =
/// the plan and the current step, result = the outcome and the report), or
/// publish JSON `{"command_id": 1, "text": "..."}` on `/rosetta/command`.
/// Ctrl-C stops every node and leaves the robot stopped; the episode's
/// recording goes into the episodes folder.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// The simulator's options (scene, seed, speed, noise).
    #[command(flatten)]
    pub sim: rosetta_sim::node::SimArgs,
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
    /// Folder of recorded episodes; this run gets a subfolder with the .rrd and logs.
    #[arg(long, default_value = "episodes")]
    pub episodes: PathBuf,
    /// Run every node in this ROS namespace (e.g. `robot1`: `/robot1/cmd_vel`,
    /// `/robot1/rosetta/execute`), so that several robots share a domain
    /// without crosstalk.
    #[arg(long, env = "ROSETTA_NAMESPACE", default_value = "")]
    pub namespace: String,
    /// Run on a real robot described by this profile (see
    /// config/robots/example.toml): no embedded sim, the profile's topic
    /// remaps, namespace and limits. The sim options are then ignored.
    #[arg(long)]
    pub robot_profile: Option<PathBuf>,
    /// Also record the raw sensor topics (camera, depth, scan, odometry,
    /// joints) into `sensors.mcap` in the episode folder, for `rosetta replay`
    /// (about 1 MB per camera frame before compression).
    #[arg(long)]
    pub record_sensors: bool,
    /// Run the operator's console (`rosetta repl`) in this terminal once the
    /// stack is up: type or speak commands and watch them run. Leaving it
    /// (quit, Ctrl-C, end of input) stops the robot, then the stack.
    #[arg(long)]
    pub repl: bool,
    #[command(flatten)]
    pub live: crate::demo::LiveArgs,
}

pub async fn run(args: UpArgs) -> anyhow::Result<u8> {
    let started = Instant::now();
    let profile = args
        .robot_profile
        .as_deref()
        .map(RobotProfile::load)
        .transpose()?;
    let mut episode = Episode::start(&args.episodes, &args.live)?;
    let namespace = match &profile {
        Some(p) if args.namespace.is_empty() => episode.set_namespace(&p.namespace)?,
        _ => episode.set_namespace(&args.namespace)?,
    };
    let Episode {
        dir: episode_dir,
        parts,
        logs,
        envs,
        rec,
    } = episode;
    // On the embedded sim odometry starts at the scene's start pose; a robot
    // profile's localiser owns `map → odom`, and the map starts at odometry's origin.
    let start = match &profile {
        Some(_) => rosetta_common::Pose2D::default(),
        None => args.sim.load_scene()?.robot_start,
    };
    let mut specs = stack_specs(&args.sim, args.planner.name(), args.detector, 1, &start);
    if let Some(p) = &profile {
        eprintln!("rosetta: robot profile {:?}: no embedded sim", p.name);
        specs.retain(|(name, _)| *name != "sim");
        for (name, a) in &mut specs {
            if *name == "control" {
                a.extend(p.control_args());
            }
            // ROS arguments last: everything after them is rcl's.
            a.extend(p.ros_args());
        }
    }
    if args.record_sensors {
        let recorder =
            crate::demo::recorder_spec(&episode_dir, profile.as_ref().map(|p| p.ros_args()));
        specs.push(recorder);
    }
    let mut nodes = spawn_all(&specs, &envs, &logs)?;
    let code = watch(
        &mut nodes,
        started,
        &namespace,
        profile.is_none(),
        args.repl,
    )
    .await;
    stop_all(&mut nodes, Duration::from_secs(5));
    finish_recording(rec);
    for p in check_parts(&parts) {
        eprintln!("rosetta: recording: {p}");
    }
    let rrd = merge_recording(&parts, &episode_dir.join("episode.rrd"));
    eprintln!(
        "rosetta: stopped after {:.1} s; episode {}",
        started.elapsed().as_secs_f64(),
        rrd.unwrap_or(episode_dir).display()
    );
    code
}

/// Waits until the stack is connected, says so, then until Ctrl-C or a node dies.
async fn watch(
    nodes: &mut [crate::procs::NodeProcess],
    started: Instant,
    namespace: &str,
    with_sim: bool,
    repl: bool,
) -> anyhow::Result<u8> {
    let mut node = ros::create_node_in("rosetta_up", namespace)?;
    let mut truths = ros::json_subscription::<GroundTruth>(&mut node, topics::GROUND_TRUTH)?;
    let mut statuses = ros::json_subscription::<TaskStatus>(&mut node, topics::STATUS)?;
    let mut worlds = ros::json_subscription::<WorldModel>(&mut node, topics::OBJECTS)?;
    let mut controls = ros::json_subscription::<TaskStatus>(&mut node, topics::CONTROL_STATUS)?;
    let node = Arc::new(Mutex::new(node));
    let spinner = Spinner::start(node.clone());
    // Ground truth, status, world model, control; a robot has no ground truth.
    let seen = Arc::new(Mutex::new([!with_sim, false, false, false]));
    let s = seen.clone();
    let collector = tokio::spawn(async move {
        let mark = |i: usize| {
            if let Ok(mut g) = s.lock() {
                g[i] = true;
            }
        };
        loop {
            tokio::select! {
                Some(_) = truths.next() => mark(0),
                Some(_) = statuses.next() => mark(1),
                Some(_) = worlds.next() => mark(2),
                Some(_) = controls.next() => mark(3),
                else => break,
            }
        }
    });
    eprintln!("rosetta: starting the stack and waiting until every node is connected");
    let ready = wait_for(
        "the stack to connect",
        Duration::from_secs(90),
        nodes,
        || {
            seen.lock()
                .ok()
                .filter(|g| g.iter().all(|&b| b))
                .map(|_| ())
        },
    )
    .await?;
    collector.abort();
    // Only the readiness check needed this node.
    drop(spinner);
    match ready {
        Err(WaitEnd::Interrupted) => return Ok(130),
        Err(why) => anyhow::bail!("the stack did not connect ({why})"),
        Ok(()) => {}
    }
    let action = format!("{namespace}/{}", topics::EXECUTE);
    eprintln!(
        "rosetta: connected after {:.1} s; command it through the action {action} \
         (rosetta_interfaces/action/ExecuteCommand); Ctrl-C stops everything",
        started.elapsed().as_secs_f64(),
    );
    println!("ready");
    if repl {
        // The console owns Ctrl-C now: it stops the robot before it returns,
        // and only then does the stack go down.
        let console = crate::repl::run_with_stack(namespace);
        tokio::pin!(console);
        loop {
            tokio::select! {
                code = &mut console => return code,
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    for n in nodes.iter_mut() {
                        if let Some(st) = n.exited() {
                            anyhow::bail!("node {} exited ({st}); see its log", n.name);
                        }
                    }
                }
            }
        }
    }
    let end = wait_for("Ctrl-C", Duration::MAX, nodes, || None::<()>).await?;
    match end {
        Err(WaitEnd::Interrupted) => Ok(0),
        _ => Ok(1),
    }
}
