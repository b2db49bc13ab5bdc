//! `control-bench`: navigation and pick-and-place success, collisions and the
//! control core's cost, in closed loop with the simulator (in one process,
//! no ROS, seeded: the same figures on every run).
//!
//! ```text
//! cargo run --release -p rosetta-tests --bin control-bench -- --goals 50 --placements 50
//! ```

use std::time::Instant;

use clap::Parser;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rosetta_common::status::TaskState;
use rosetta_common::Skill;
use rosetta_control::path::{plan_path, Costmap};
use rosetta_sim::scene::Scene;
use rosetta_tests::closed_loop::{
    carry, cluttered_room, footprint_fits, place, true_grid, ClosedLoop,
};

/// Benchmark navigation and manipulation in closed loop with the simulator.
///
/// Navigation: random rooms with `--boxes` obstacles; the robot drives to
/// `--goals` random goals in turn (each one checked reachable on the true
/// map first). Pick-and-place: the red cube at `--placements` random spots
/// on the table, carried into the blue bin. Success is judged on the sim's
/// ground truth; collisions are physics steps with the base pushing into
/// something. Figures are printed, not asserted.
#[derive(Debug, Parser)]
struct Args {
    /// Navigation goals, spread over rooms of 10 goals each.
    #[arg(long, default_value_t = 50)]
    goals: usize,
    /// Obstacle boxes per room.
    #[arg(long, default_value_t = 7)]
    boxes: usize,
    /// Pick-and-place runs.
    #[arg(long, default_value_t = 50)]
    placements: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Print every run.
    #[arg(long)]
    each: bool,
    /// SCHED_FIFO priority of the measured loop, as the control node's
    /// `--realtime-priority` (0: the normal scheduler).
    #[arg(long, default_value_t = 20)]
    realtime_priority: u8,
    /// Seconds of the real-time control loop measurement (0 skips it).
    #[arg(long, default_value_t = 15.0)]
    loop_s: f64,
    /// Trace the robot once per sim second (pose, step, path).
    #[arg(long)]
    trace: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    navigation(&args, &mut rng);
    pick_and_place(&args, &mut rng)?;
    if args.loop_s > 0.0 {
        control_loop(&args)?;
    }
    Ok(())
}

/// The control loop paced in real time by the node's clock (a thread waking
/// on 10 ms deadlines): each tick steps the sim's physics and the skill runner
/// (scan integration, path planning, the skill state machines) through a
/// pick-and-place, and the loop's rate, jitter and per-tick compute time are
/// measured. This is the loop without ROS transport or other processes.
fn control_loop(args: &Args) -> anyhow::Result<()> {
    use rosetta_control::clock::{spawn_clock, LoopStats};
    use rosetta_control::node::CONTROL_PERIOD;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    let mut sim = ClosedLoop::new(Scene::default_scene()?, args.seed);
    let plan = carry("red_cube", "blue_bin");
    sim.start(plan.clone(), vec![]);
    let stop = Arc::new(AtomicBool::new(false));
    let realtime = (args.realtime_priority > 0).then_some(args.realtime_priority);
    let rt_note = match realtime.map(rosetta_control::clock::set_realtime) {
        Some(Ok(())) => format!("SCHED_FIFO {}", args.realtime_priority),
        Some(Err(e)) => format!("normal scheduler: {e}"),
        None => "normal scheduler".to_string(),
    };
    let (mut ticks_rx, clock) = spawn_clock(CONTROL_PERIOD, stop.clone(), realtime.map(|p| p + 1))?;
    let ticks = (args.loop_s / CONTROL_PERIOD.as_secs_f64()).round() as usize;
    let mut stats = LoopStats::new(CONTROL_PERIOD, ticks);
    let mut compute_us = Vec::with_capacity(ticks);
    for _ in 0..ticks {
        let Some(deadline) = ticks_rx.blocking_next() else {
            break;
        };
        let now = Instant::now();
        stats.record(deadline, now);
        if !sim.running() {
            sim.start(plan.clone(), vec![]);
        }
        sim.step();
        compute_us.push(now.elapsed().as_secs_f64() * 1e6);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (lead, spin_share) = (ticks_rx.lead(), ticks_rx.spin_share(CONTROL_PERIOD));
    drop(ticks_rx);
    if clock.join().is_err() {
        tracing::warn!("the clock thread panicked");
    }
    compute_us.sort_by(f64::total_cmp);
    let q = |f: f64| compute_us[((compute_us.len() - 1) as f64 * f).round() as usize];
    if let Some(s) = stats.summary() {
        println!(
            "control loop ({:.0} s at {:.0} Hz, physics + skill runner per tick, no ROS; {rt_note}):",
            args.loop_s,
            1.0 / CONTROL_PERIOD.as_secs_f64()
        );
        println!(
            "  rate {:.2} Hz, period p50 {:.3} ms, jitter p99 {:.3} ms, max {:.3} ms, wake latency p99 {:.3} ms",
            s.rate_hz, s.period_p50_ms, s.jitter_p99_ms, s.jitter_max_ms, s.wake_latency_p99_ms
        );
        println!(
            "  compute per tick: p50 {:.0} us, p99 {:.0} us, max {:.0} us",
            q(0.5),
            q(0.99),
            q(1.0)
        );
        println!(
            "  clock: lead {:.2} ms at the end, spinning {:.1}% of one core",
            lead.as_secs_f64() * 1e3,
            spin_share * 100.0
        );
    }
    Ok(())
}

fn navigation(args: &Args, rng: &mut ChaCha8Rng) {
    let radius = 0.22;
    let (mut ok, mut runs, mut collisions, mut sim_s) = (0usize, 0usize, 0u64, 0.0f64);
    let mut failures = Vec::new();
    let mut errors_m = Vec::new();
    let wall = Instant::now();
    let rooms = args.goals.div_ceil(10);
    for room in 0..rooms {
        let scene = cluttered_room(args.boxes, rng);
        let truth = Costmap::from_grid(&true_grid(&scene), radius, 0.0);
        let mut sim = ClosedLoop::new(scene.clone(), args.seed + room as u64);
        let goals_here = (args.goals - room * 10).min(10);
        let mut done_here = 0;
        while done_here < goals_here {
            let g = [rng.gen_range(-2.6..2.6), rng.gen_range(-2.6..2.6)];
            let here = [sim.world.pose.x_m, sim.world.pose.y_m];
            // Reachable on the true map, with a little room to spare.
            if !footprint_fits(&scene, g, radius, 0.05) || plan_path(&truth, here, g).is_err() {
                continue;
            }
            done_here += 1;
            runs += 1;
            let yaw = rng.gen_range(-3.1..3.1);
            let out = sim.run(
                vec![Skill::NavigateTo {
                    target: "goal".into(),
                }],
                vec![place("goal", g[0], g[1], yaw)],
                120.0,
            );
            let end = sim.world.pose;
            let err = (end.x_m - g[0]).hypot(end.y_m - g[1]);
            let success = out.task == TaskState::Succeeded && err < 0.1;
            collisions += out.collisions;
            sim_s += out.sim_time_s;
            if success {
                ok += 1;
                errors_m.push(err);
            } else {
                failures.push(format!(
                    "room {room} goal ({:.2}, {:.2}): {}",
                    g[0], g[1], out.message
                ));
            }
            if args.each {
                println!(
                    "nav room {room} goal ({:5.2}, {:5.2}) {} in {:5.1} s, error {:.3} m, collisions {}",
                    g[0],
                    g[1],
                    if success { "ok  " } else { "FAIL" },
                    out.sim_time_s,
                    err,
                    out.collisions
                );
            }
        }
    }
    errors_m.sort_by(f64::total_cmp);
    println!(
        "navigation: {runs} reachable goals in {rooms} rooms of {} boxes",
        args.boxes
    );
    println!(
        "  success {ok}/{runs} ({:.1}%), collision steps {collisions}",
        100.0 * ok as f64 / runs.max(1) as f64
    );
    println!(
        "  final position error median {:.3} m, max {:.3} m; sim time {:.0} s, wall {:.1} s",
        errors_m
            .get(errors_m.len() / 2)
            .copied()
            .unwrap_or(f64::NAN),
        errors_m.last().copied().unwrap_or(f64::NAN),
        sim_s,
        wall.elapsed().as_secs_f64()
    );
    for f in &failures {
        println!("  failed: {f}");
    }
}

fn pick_and_place(args: &Args, rng: &mut ChaCha8Rng) -> anyhow::Result<()> {
    let (mut ok, mut collisions) = (0usize, 0u64);
    let mut failures = Vec::new();
    let mut tick_us: Vec<f64> = Vec::new();
    let wall = Instant::now();
    let plan = carry("red_cube", "blue_bin");
    for run in 0..args.placements {
        let mut scene = Scene::default_scene()?;
        // The red cube anywhere on the table's near half (within the arm's
        // reach from the table's edge), clear of the other cubes' spots.
        let x = rng.gen_range(1.34..1.5);
        let y = rng.gen_range(-0.5..0.5);
        scene
            .objects
            .retain(|o| o.id == "red_cube" || o.kind.name() == "bin");
        if let Some(o) = scene.objects.iter_mut().find(|o| o.id == "red_cube") {
            o.position_m[0] = x;
            o.position_m[1] = y;
        }
        let mut sim = ClosedLoop::new(scene, args.seed + 1000 + run as u64);
        sim.trace = args.trace;
        let t0 = Instant::now();
        let out = sim.run(plan.clone(), vec![], 200.0);
        let per_tick = t0.elapsed().as_secs_f64() * 1e6 / out.trajectory.len().max(1) as f64;
        tick_us.push(per_tick);
        let truth = sim.world.ground_truth();
        let in_bin = truth
            .objects
            .iter()
            .any(|o| o.id == "red_cube" && o.in_container.as_deref() == Some("blue_bin"));
        collisions += out.collisions;
        if in_bin {
            ok += 1;
        } else {
            failures.push(format!("cube at ({x:.2}, {y:.2}): {}", out.message));
        }
        if args.each {
            println!(
                "pick&place cube ({x:.2}, {y:.2}) {} in {:5.1} s",
                if in_bin { "ok  " } else { "FAIL" },
                out.sim_time_s
            );
        }
    }
    tick_us.sort_by(f64::total_cmp);
    println!(
        "pick-and-place: {} random placements of the red cube on the table",
        args.placements
    );
    println!(
        "  success {ok}/{} ({:.1}%), collision steps {collisions}, wall {:.1} s",
        args.placements,
        100.0 * ok as f64 / args.placements.max(1) as f64,
        wall.elapsed().as_secs_f64()
    );
    println!(
        "  wall time per control step, sim included (mean per run): median {:.0} us, max {:.0} us",
        tick_us.get(tick_us.len() / 2).copied().unwrap_or(f64::NAN),
        tick_us.last().copied().unwrap_or(f64::NAN)
    );
    for f in &failures {
        println!("  failed: {f}");
    }
    Ok(())
}
