//! `cmd-vel-latency`: how long a `/cmd_vel` takes, over real ROS 2, from the
//! controller's side to the embedded sim acting on it.
//!
//! ```text
//! source .local/env.sh
//! ROS_DOMAIN_ID=77 cargo run -p rosetta-tests --bin cmd-vel-latency -- --runs 50
//! ```
//!
//! It starts `rosetta sim --rtf 1` on the current `ROS_DOMAIN_ID`, then, from
//! a standstill, publishes a forward `/cmd_vel` (as control does) and times
//! the wall clock until `/odom` first shows the base moving; then it
//! commands zero and waits for a standstill. This is the command-to-effect
//! latency a controller sees: transport, the sim's 100 Hz physics step that
//! picks the command up, and its 50 Hz odometry, which alone adds up to
//! 10 + 20 ms of sampling. Figures are printed, not asserted.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use rosetta_common::ros::{self, r2r, Spinner};
use rosetta_common::topics;

/// Time /cmd_vel → the embedded sim's odometry showing the base move.
#[derive(Debug, Parser)]
struct Args {
    /// Step commands to time.
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// The `rosetta` binary (default: next to this one).
    #[arg(long)]
    rosetta: Option<std::path::PathBuf>,
}

/// Kills the sim when the bench ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        // Best effort on the way out: it may have exited already.
        if let Err(e) = self.0.kill() {
            tracing::debug!(error = %e, "cannot kill the sim");
        }
        if let Err(e) = self.0.wait() {
            tracing::debug!(error = %e, "cannot reap the sim");
        }
    }
}

fn main() -> anyhow::Result<()> {
    rosetta_common::ros::init_tracing();
    let args = Args::parse();
    let rosetta = match args.rosetta.clone() {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("no folder of this binary")?
            .join("rosetta"),
    };
    let _sim = Child(
        Command::new(&rosetta)
            .args(["sim", "--rtf", "1"])
            .env("ROSETTA_QUIET_NODES", "1")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", rosetta.display()))?,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args.runs))
}

/// The latest odometry: (wall time it arrived, forward speed).
type Latest = Arc<Mutex<Option<(Instant, f64)>>>;

async fn run(runs: usize) -> anyhow::Result<()> {
    let mut node = ros::create_node("cmd_vel_latency")?;
    let cmd_vel = node
        .create_publisher::<r2r::geometry_msgs::msg::Twist>(topics::CMD_VEL, ros::reliable_qos())?;
    let mut odom = node
        .subscribe::<r2r::nav_msgs::msg::Odometry>(topics::ODOM, r2r::QosProfile::sensor_data())?;
    let node = Arc::new(Mutex::new(node));
    let _spinner = Spinner::start(node);
    let latest: Latest = Arc::default();
    let l = latest.clone();
    tokio::spawn(async move {
        while let Some(m) = odom.next().await {
            if let Ok(mut g) = l.lock() {
                *g = Some((Instant::now(), m.twist.twist.linear.x));
            }
        }
    });
    let speed = |since: Instant| {
        latest
            .lock()
            .ok()
            .and_then(|g| *g)
            .filter(|(at, _)| *at >= since)
            .map(|(_, v)| v)
    };
    let twist = |v: f64| r2r::geometry_msgs::msg::Twist {
        linear: r2r::geometry_msgs::msg::Vector3 {
            x: v,
            y: 0.0,
            z: 0.0,
        },
        ..Default::default()
    };
    eprintln!("waiting for the sim's odometry and a matched /cmd_vel subscriber");
    let start = Instant::now();
    ros::wait_until("odometry", Duration::from_secs(30), || {
        speed(start).is_some() && cmd_vel.get_inter_process_subscription_count().unwrap_or(0) > 0
    })
    .await?;
    let mut latencies_ms = Vec::with_capacity(runs);
    for i in 0..runs {
        // From a standstill (alternating direction keeps the robot near its start).
        let v = if i % 2 == 0 { 0.2 } else { -0.2 };
        let t0 = Instant::now();
        cmd_vel.publish(&twist(v))?;
        ros::wait_until("motion on /odom", Duration::from_secs(5), || {
            speed(t0).is_some_and(|s| s.abs() > 1e-6)
        })
        .await?;
        let moved_at = latest.lock().ok().and_then(|g| *g).map(|(at, _)| at);
        if let Some(at) = moved_at {
            latencies_ms.push((at - t0).as_secs_f64() * 1e3);
        }
        // Keep commanding for a moment (as a controller streams commands), then stop.
        cmd_vel.publish(&twist(v))?;
        let stop = Instant::now();
        cmd_vel.publish(&twist(0.0))?;
        ros::wait_until("standstill", Duration::from_secs(5), || {
            speed(stop).is_some_and(|s| s.abs() < 1e-9)
        })
        .await?;
    }
    latencies_ms.sort_by(f64::total_cmp);
    let q = |p: f64| latencies_ms[((latencies_ms.len() - 1) as f64 * p).round() as usize];
    if latencies_ms.is_empty() {
        anyhow::bail!("no run completed");
    }
    println!(
        "/cmd_vel -> first /odom showing motion, {} runs (sim at rtf 1: physics 100 Hz, odometry 50 Hz):",
        latencies_ms.len()
    );
    println!(
        "  min {:.1} ms, p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        latencies_ms[0],
        q(0.5),
        q(0.95),
        latencies_ms[latencies_ms.len() - 1]
    );
    Ok(())
}
