//! `rosetta`: one command for the whole stack.
//!
//! ```text
//! rosetta demo "put the red cube in the blue bin"   # sim + every node, one task, a report
//! rosetta up                                        # sim + every node until Ctrl-C; command it over ROS 2
//! rosetta sim | perception | planner | executive | control   # one node, for custom launches
//! ```

mod demo;
mod episodes;
mod procs;
mod profile;
mod repl;
mod sensors;
mod up;

use clap::{Parser, Subcommand};

/// rosetta: tell a ROS 2 robot what to do in plain words, and watch it do it.
///
/// `rosetta demo "<command>"` starts the embedded simulator and every stage of
/// the stack (perception, planner, control) as ROS 2 nodes, sends the command,
/// waits for the outcome, writes a JSON report and a rerun episode (.rrd), and
/// stops everything. The other subcommands run a single node, so that you can
/// start the stack piece by piece against Gazebo or a real robot.
#[derive(Debug, Parser)]
#[command(name = "rosetta", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run one command end to end on the embedded simulator.
    Demo(demo::DemoArgs),
    /// Run the whole stack on the embedded simulator until Ctrl-C, commanded over ROS 2.
    Up(up::UpArgs),
    /// The operator's console: type or speak commands to a running stack and
    /// watch the plan, the running step and its progress; `stop` at any time.
    Repl(repl::ReplArgs),
    /// List recorded episodes with their outcome, or open one in the rerun viewer.
    Episodes(episodes::EpisodesArgs),
    /// Run the embedded simulator node.
    Sim(rosetta_sim::node::SimArgs),
    /// Run the perception node.
    Perception(rosetta_perception::node::PerceptionArgs),
    /// Run the planner node.
    Planner(rosetta_planner::node::PlannerArgs),
    /// Run the control node: the skill runner behind `/rosetta/skill`, with the safety chain.
    Control(rosetta_control::node::ControlArgs),
    /// Run the executive node: sends each step of a plan to control's skill action.
    Executive(rosetta_control::executive::ExecutiveArgs),
    /// Record the robot's raw sensor topics (camera, depth, scan, odometry,
    /// joints) into an MCAP file until Ctrl-C (`up` and `demo` run it with
    /// `--record-sensors`).
    Record(sensors::RecordArgs),
    /// Publish a sensor recording (MCAP) again with its timing, so that
    /// perception and the planner run on it offline, without a sim or robot.
    Replay(sensors::ReplayArgs),
    /// Print the JSON Schema of plans (the closed set of skills) on stdout.
    Schema,
    /// Write the Gazebo files of a scene: the world SDF and the ros_gz_bridge
    /// configuration (both generated from what the embedded sim uses).
    GazeboFiles(GazeboFilesArgs),
    /// Scenes: write a generated one as a scene file.
    #[command(subcommand)]
    Scene(SceneCmd),
}

#[derive(Debug, Subcommand)]
enum SceneCmd {
    /// Write the scene that `--scene random --seed N` runs, as a scene file
    /// (TOML) to read, edit and run with `--scene FILE`: a table with 3 to 6
    /// things on it and up to two smaller tables with 1 to 3 more (cubes,
    /// boxes, balls, cans and mugs of the eleven basic colours, duplicates
    /// included), 1 to 3 bins on the floor, a dock, and a start pose near the
    /// map origin.
    Generate {
        /// The generator's seed: the same seed, the same scene.
        #[arg(long)]
        seed: u64,
        /// Where to write it (default: standard output).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

fn scene_cmd(c: &SceneCmd) -> anyhow::Result<()> {
    use anyhow::Context;
    match c {
        SceneCmd::Generate { seed, out } => {
            let text = rosetta_sim::Scene::random(*seed).to_toml()?;
            match out {
                Some(path) => {
                    std::fs::write(path, &text)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!("wrote {}", path.display());
                }
                None => print!("{text}"),
            }
            Ok(())
        }
    }
}

#[derive(Debug, clap::Args)]
struct GazeboFilesArgs {
    /// The scene: `default` (built in) or a scene TOML file.
    #[arg(long, default_value = "default")]
    scene: String,
    /// Where to write `bridge.yaml` and `worlds/<scene>.sdf`.
    #[arg(long, default_value = "launch/gazebo")]
    out: std::path::PathBuf,
}

fn gazebo_files(a: &GazeboFilesArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let scene = rosetta_sim::Scene::load(&a.scene)?;
    let worlds = a.out.join("worlds");
    std::fs::create_dir_all(&worlds)
        .with_context(|| format!("cannot create {}", worlds.display()))?;
    let bridge = a.out.join("bridge.yaml");
    std::fs::write(&bridge, rosetta_sim::gazebo::bridge_yaml())
        .with_context(|| format!("cannot write {}", bridge.display()))?;
    let world = worlds.join(format!("{}.sdf", scene.name));
    std::fs::write(&world, rosetta_sim::gazebo::world_sdf(&scene))
        .with_context(|| format!("cannot write {}", world.display()))?;
    eprintln!("wrote {} and {}", bridge.display(), world.display());
    Ok(())
}

fn main() -> std::process::ExitCode {
    rosetta_common::ros::init_tracing();
    // ROS arguments (`--ros-args -r cmd_vel:=/base/cmd_vel ...`) are rcl's:
    // r2r hands the whole command line to rcl_init, so clap sees only what
    // comes before them.
    let argv: Vec<String> = std::env::args().collect();
    let cut = argv
        .iter()
        .position(|a| a == "--ros-args")
        .unwrap_or(argv.len());
    let cli = Cli::parse_from(&argv[..cut]);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Cmd::Demo(a) => demo::run(a).await,
            Cmd::Up(a) => up::run(a).await,
            Cmd::Repl(a) => repl::run(a).await,
            Cmd::Episodes(a) => episodes::run(&a),
            Cmd::Sim(a) => rosetta_sim::node::run(a).await.map(|_| 0),
            Cmd::Perception(a) => rosetta_perception::node::run(a).await.map(|_| 0),
            Cmd::Planner(a) => rosetta_planner::node::run(a).await.map(|_| 0),
            Cmd::Control(a) => rosetta_control::node::run(a).await.map(|_| 0),
            Cmd::Executive(a) => rosetta_control::executive::run(a).await.map(|_| 0),
            Cmd::GazeboFiles(a) => gazebo_files(&a).map(|_| 0),
            Cmd::Scene(c) => scene_cmd(&c).map(|_| 0),
            Cmd::Record(a) => sensors::record(a).await.map(|_| 0),
            Cmd::Replay(a) => sensors::replay(a).await.map(|_| 0),
            Cmd::Schema => serde_json::to_string_pretty(&rosetta_common::plan::plan_json_schema())
                .map(|s| {
                    println!("{s}");
                    0
                })
                .map_err(anyhow::Error::from),
        }
    });
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
