//! `rec-bench`: what recording to rerun costs the stack. It runs the same
//! code the nodes run (the skill runner in closed loop with the sim, the
//! detector and tracker on rendered frames) with rerun off and on, through
//! the nodes' own logging functions, into `.rrd` files.
//!
//! ```text
//! source .local/env.sh
//! cargo run --release -p rosetta-tests --bin rec-bench
//! ```
//!
//! It prints:
//! - per control step: the logging's own time, and the wall time per step
//!   with rerun off and on (control's logging: pose and driven path at
//!   10 Hz, the planned path when it changes);
//! - per camera frame: detection and tracking, and what handing the frame
//!   to perception's logger thread costs the perception thread (the logger
//!   encodes the JPEG image and 16-bit depth and logs the 2-D and 3-D
//!   boxes); and the wall time per frame, off and on, until the recording
//!   is flushed;
//! - the camera at 30 Hz: frames arrive on a 30 Hz clock into a queue of one
//!   (as a sensor subscription with a shallow queue); a frame that finds the
//!   queue full is dropped. Counted: frames dropped at the queue, and the
//!   camera images read back from the `.rrd` (`rerun rrd print`);
//! - `.rrd` size per minute: a pick-and-place episode at the stack's own
//!   rates (camera at the URDF's rate, pose at 10 Hz, map at 1 Hz), and the
//!   camera alone at 30 Hz.
//!
//! Figures are printed, never asserted.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, TrySendError};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rand::SeedableRng;
use rosetta_common::grid::OccupancyGrid;
use rosetta_common::robot::RobotDescription;
use rosetta_common::world::{parse_places, DEFAULT_PLACES_TOML};
use rosetta_common::Pose2D;
use rosetta_control::rec::{log_planned_path, log_pose};
use rosetta_perception::detect::detect;
use rosetta_perception::rec::{log_map, log_static_camera, FrameLog, FrameLogger};
use rosetta_perception::Tracker;
use rosetta_sim::render::{render_camera, RgbdFrame};
use rosetta_sim::scene::Scene;
use rosetta_tests::closed_loop::{carry, ClosedLoop};

/// Measure rerun's cost: per control step, per camera frame, dropped frames
/// at 30 Hz, and .rrd size per minute.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// How long the paced camera test runs (wall seconds).
    #[arg(long, default_value_t = 10.0)]
    camera_s: f64,
    /// The paced camera's rate.
    #[arg(long, default_value_t = 30.0)]
    camera_hz: f64,
    /// Distinct frames rendered along the drive (cycled through).
    #[arg(long, default_value_t = 60)]
    frames: usize,
    /// Where the .rrd files go (default: a temporary folder, removed after).
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Perception's detector on one core, as its benchmark measures it.
    opencv::core::set_num_threads(1)?;
    let tmp = tempfile::tempdir()?;
    let dir = args.out_dir.clone().unwrap_or_else(|| tmp.path().into());
    std::fs::create_dir_all(&dir)?;
    let robot = RobotDescription::default();
    let places = parse_places(DEFAULT_PLACES_TOML)?;

    println!("== control: a pick-and-place (red cube into the blue bin) in closed loop ==");
    let off = control_run(&rerun::RecordingStream::disabled(), &places)?;
    let path = dir.join("control.rrd");
    let rec = recording(&path)?;
    let on = control_run(&rec, &places)?;
    finish(rec);
    println!(
        "control steps: {} ({:.1} s sim); skill runner tick {:.1} µs/step",
        on.steps,
        on.sim_s,
        on.tick_s / on.steps as f64 * 1e6
    );
    println!(
        "logging, inline:      {:.2} µs/step = {:.1}% of the skill runner's tick",
        on.log_s / on.steps as f64 * 1e6,
        100.0 * on.log_s / on.tick_s
    );
    println!(
        "wall per step (sim + control): off {:.1} µs, on {:.1} µs ({:+.1}%)",
        off.wall_s / off.steps as f64 * 1e6,
        on.wall_s / on.steps as f64 * 1e6,
        100.0 * (on.wall_s / on.steps as f64 / (off.wall_s / off.steps as f64) - 1.0)
    );
    println!("control.rrd: {}", size_per_minute(&path, on.sim_s)?);

    println!();
    println!(
        "== camera: {} frames along the drive, 640x480 ==",
        args.frames
    );
    let frames = render_along(&on.poses, args.frames, &robot)?;
    let off = camera_run(&rerun::RecordingStream::disabled(), &frames, &robot)?;
    let path = dir.join("camera.rrd");
    let rec = recording(&path)?;
    let on = camera_run(&rec, &frames, &robot)?;
    finish(rec);
    println!(
        "on perception's thread, per frame: detect + track {:.2} ms; handing the frame to the logger {:.3} ms ({:.1}%)",
        off.wall_s / off.frames as f64 * 1e3,
        on.log_s / on.frames as f64 * 1e3,
        100.0 * on.log_s / off.wall_s,
    );
    println!(
        "wall for all {} frames, until the recording is flushed: off {:.2} ms/frame, on {:.2} ms/frame ({:+.1}%; the logger runs on the other core); {} left out of the recording",
        on.frames,
        off.wall_s / off.frames as f64 * 1e3,
        on.wall_s / on.frames as f64 * 1e3,
        100.0 * (on.wall_s / off.wall_s - 1.0),
        on.dropped,
    );
    println!(
        "camera.rrd: {:.1} kB per frame",
        std::fs::metadata(&path)?.len() as f64 / 1e3 / on.frames as f64
    );

    println!();
    println!(
        "== camera at {:.0} Hz for {:.0} s: queue of one, detection + tracking + logging ==",
        args.camera_hz, args.camera_s
    );
    for (label, on) in [("rerun off", false), ("rerun on", true)] {
        let path = dir.join("camera_paced.rrd");
        let rec = if on {
            recording(&path)?
        } else {
            rerun::RecordingStream::disabled()
        };
        let r = paced_run(&rec, &frames, &robot, args.camera_hz, args.camera_s)?;
        finish(rec);
        let mut line = format!(
            "{label}: {} frames offered, {} processed, {} dropped at the queue; processing p50 {:.1} ms, max {:.1} ms",
            r.offered,
            r.processed,
            r.dropped,
            quantile(&r.process_s, 0.5) * 1e3,
            quantile(&r.process_s, 1.0) * 1e3,
        );
        if on {
            let images = rows_in_rrd(&path, "/world/robot/base_link/camera/image")?;
            line.push_str(&format!(
                "; {images} images in the .rrd ({} left out by the logger, {} missing); {}",
                r.unrecorded,
                r.processed.saturating_sub(images),
                size_per_minute(&path, args.camera_s)?
            ));
        }
        println!("{line}");
    }

    println!();
    println!("== an episode at the stack's rates ==");
    let path = dir.join("episode.rrd");
    let rec = recording(&path)?;
    let sim_s = episode_run(&rec, &places, &robot)?;
    finish(rec);
    println!(
        "camera {:.0} Hz, pose 10 Hz, map 1 Hz, {sim_s:.1} s: {}",
        robot.camera.rate_hz,
        size_per_minute(&path, sim_s)?
    );
    if args.out_dir.is_some() {
        println!("recordings kept in {}", dir.display());
    }
    Ok(())
}

fn recording(path: &Path) -> anyhow::Result<rerun::RecordingStream> {
    rerun::RecordingStreamBuilder::new("rosetta-rec-bench")
        .save(path)
        .with_context(|| format!("cannot record to {}", path.display()))
}

/// Flushes and closes a recording, so that its file is complete.
fn finish(rec: rerun::RecordingStream) {
    if let Err(e) = rec.flush_blocking() {
        eprintln!("warning: the recording did not flush: {e}");
    }
    drop(rec);
}

fn size_per_minute(path: &Path, seconds: f64) -> anyhow::Result<String> {
    let bytes = std::fs::metadata(path)?.len() as f64;
    Ok(format!(
        "{:.2} MB, {:.1} MB per minute",
        bytes / 1e6,
        bytes / 1e6 / seconds * 60.0
    ))
}

fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(((s.len().max(1) - 1) as f64 * q).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

struct ControlRun {
    steps: usize,
    sim_s: f64,
    wall_s: f64,
    tick_s: f64,
    log_s: f64,
    poses: Vec<Pose2D>,
}

/// The control node's logging, step by step: the driven path grows every
/// 2 cm, pose and path go out at most at 10 Hz, the planned path when it changes.
struct ControlLogger {
    path: Vec<[f32; 3]>,
    planned: Vec<[f64; 2]>,
    last_pose_log_s: f64,
}

impl ControlLogger {
    fn new() -> Self {
        Self {
            path: Vec::new(),
            planned: Vec::new(),
            last_pose_log_s: f64::NEG_INFINITY,
        }
    }

    fn step(&mut self, rec: &rerun::RecordingStream, t: f64, pose: &Pose2D, planned: &[[f64; 2]]) {
        if planned != self.planned.as_slice() {
            self.planned = planned.to_vec();
            log_planned_path(rec, &self.planned);
        }
        if self
            .path
            .last()
            .is_none_or(|l| (l[0] as f64 - pose.x_m).hypot(l[1] as f64 - pose.y_m) > 0.02)
        {
            self.path.push([pose.x_m as f32, pose.y_m as f32, 0.01]);
            if t - self.last_pose_log_s >= 0.1 {
                log_pose(rec, t, pose, &self.path);
                self.last_pose_log_s = t;
            }
        }
    }
}

fn control_run(
    rec: &rerun::RecordingStream,
    places: &[rosetta_common::Place],
) -> anyhow::Result<ControlRun> {
    let mut sim = ClosedLoop::new(Scene::default_scene()?, 1);
    let mut logger = ControlLogger::new();
    sim.start(carry("red_cube", "blue_bin"), places.to_vec());
    let (mut steps, mut log_s, mut poses) = (0usize, 0.0, Vec::new());
    let t0 = Instant::now();
    while sim.running() && sim.world.time_s < 300.0 {
        if let Some(pose) = sim.step() {
            let tl = Instant::now();
            logger.step(rec, sim.world.time_s, &pose, sim.planned_path());
            log_s += tl.elapsed().as_secs_f64();
            steps += 1;
            poses.push(pose);
        }
    }
    let wall_s = t0.elapsed().as_secs_f64();
    anyhow::ensure!(steps > 0, "the closed loop never ticked");
    Ok(ControlRun {
        steps,
        sim_s: sim.world.time_s,
        wall_s,
        tick_s: sim.tick_wall_s,
        log_s,
        poses,
    })
}

/// `n` frames rendered from poses spread along the drive.
fn render_along(
    poses: &[Pose2D],
    n: usize,
    robot: &RobotDescription,
) -> anyhow::Result<Vec<(Pose2D, RgbdFrame)>> {
    let mut world = rosetta_sim::world::World::new(Scene::default_scene()?, robot.clone());
    let n = n.max(1);
    Ok((0..n)
        .map(|i| {
            let pose = poses[i * (poses.len() - 1) / n.max(2).saturating_sub(1).max(1)];
            world.pose = pose;
            (pose, render_camera(&world, &robot.camera))
        })
        .collect())
}

struct CameraRun {
    /// Frames left out of the recording (the logger's queue was full).
    dropped: u64,
    frames: usize,
    wall_s: f64,
    log_s: f64,
}

/// Perception's per-frame work: detect, track, hand the frame to the
/// logger (a copy here: the node hands over the frame it owns). Returns the
/// time the hand-over took.
fn process(
    logger: &mut FrameLogger,
    tracker: &mut Tracker,
    robot: &RobotDescription,
    stamp: f64,
    pose: &Pose2D,
    frame: &RgbdFrame,
) -> anyhow::Result<f64> {
    let cam = &robot.camera;
    let odom_from_optical = pose.to_isometry() * cam.base_from_optical();
    let dets = detect(&frame.rgb, &frame.depth_m, cam, &odom_from_optical)?;
    let view = rosetta_perception::tracker::View {
        camera: cam,
        odom_from_optical: &odom_from_optical,
        depth_m: &frame.depth_m,
    };
    tracker.update(&dets, stamp, Some(&view));
    let world = tracker.world_model(stamp, "odom");
    let tl = Instant::now();
    logger.log(FrameLog {
        stamp_s: stamp,
        pose: *pose,
        width_px: frame.width,
        height_px: frame.height,
        rgb: frame.rgb.clone(),
        depth_m: frame.depth_m.clone(),
        detections: dets,
        world,
    });
    Ok(tl.elapsed().as_secs_f64())
}

fn camera_run(
    rec: &rerun::RecordingStream,
    frames: &[(Pose2D, RgbdFrame)],
    robot: &RobotDescription,
) -> anyhow::Result<CameraRun> {
    log_static_camera(rec, &robot.camera, &robot.camera.base_from_optical());
    let mut tracker = Tracker::default();
    let mut logger = FrameLogger::start(rec.clone());
    let mut log_s = 0.0;
    let t0 = Instant::now();
    for (i, (pose, frame)) in frames.iter().enumerate() {
        log_s += process(
            &mut logger,
            &mut tracker,
            robot,
            i as f64 / 30.0,
            pose,
            frame,
        )?;
    }
    let dropped = logger.dropped();
    // What the logger thread and rerun still do in the background is part of its cost.
    logger.finish();
    rec.flush_blocking()?;
    Ok(CameraRun {
        dropped,
        frames: frames.len(),
        wall_s: t0.elapsed().as_secs_f64(),
        log_s,
    })
}

struct PacedRun {
    /// Frames processed but left out of the recording (logger queue full).
    unrecorded: u64,
    offered: usize,
    processed: usize,
    dropped: usize,
    process_s: Vec<f64>,
}

fn paced_run(
    rec: &rerun::RecordingStream,
    frames: &[(Pose2D, RgbdFrame)],
    robot: &RobotDescription,
    hz: f64,
    seconds: f64,
) -> anyhow::Result<PacedRun> {
    log_static_camera(rec, &robot.camera, &robot.camera.base_from_optical());
    let (tx, rx) = sync_channel::<usize>(1);
    let period = Duration::from_secs_f64(1.0 / hz);
    let count = (seconds * hz).round() as usize;
    let clock = std::thread::spawn(move || {
        let start = Instant::now();
        let mut dropped = 0;
        for i in 0..count {
            let due = start + period * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            match tx.try_send(i) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => dropped += 1,
                Err(TrySendError::Disconnected(_)) => break,
            }
        }
        dropped
    });
    let mut tracker = Tracker::default();
    let mut logger = FrameLogger::start(rec.clone());
    let mut process_s = Vec::new();
    for i in rx.iter() {
        let t0 = Instant::now();
        let (pose, frame) = &frames[i % frames.len()];
        process(&mut logger, &mut tracker, robot, i as f64 / hz, pose, frame)?;
        process_s.push(t0.elapsed().as_secs_f64());
    }
    let unrecorded = logger.dropped();
    logger.finish();
    let dropped = clock
        .join()
        .map_err(|_| anyhow::anyhow!("the clock thread panicked"))?;
    Ok(PacedRun {
        unrecorded,
        offered: count,
        processed: process_s.len(),
        dropped,
        process_s,
    })
}

/// A whole episode in one process at the stack's rates: the closed loop
/// with control's logging, the camera rendered and processed at its rate,
/// and the grid logged once a second.
fn episode_run(
    rec: &rerun::RecordingStream,
    places: &[rosetta_common::Place],
    robot: &RobotDescription,
) -> anyhow::Result<f64> {
    log_static_camera(rec, &robot.camera, &robot.camera.base_from_optical());
    let mut sim = ClosedLoop::new(Scene::default_scene()?, 1);
    let mut logger = ControlLogger::new();
    let mut tracker = Tracker::default();
    let mut frame_logger = FrameLogger::start(rec.clone());
    let mut grid = OccupancyGrid::new([0.0, 0.0], [20.0, 20.0], 0.05);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    let camera_period_s = 1.0 / robot.camera.rate_hz;
    let (mut next_frame_s, mut next_map_s) = (0.0, 0.0);
    sim.start(carry("red_cube", "blue_bin"), places.to_vec());
    while sim.running() && sim.world.time_s < 300.0 {
        let Some(pose) = sim.step() else { continue };
        let t = sim.world.time_s;
        logger.step(rec, t, &pose, sim.planned_path());
        if t >= next_frame_s {
            next_frame_s += camera_period_s;
            let frame = render_camera(&sim.world, &robot.camera);
            process(&mut frame_logger, &mut tracker, robot, t, &pose, &frame)?;
        }
        if t >= next_map_s {
            next_map_s += 1.0;
            let scan = rosetta_sim::render::render_scan(&sim.world, &robot.lidar, 0.005, &mut rng);
            let lidar = &robot.lidar;
            let view = scan.view(lidar);
            grid.integrate_scan(&lidar.sensor_pose(&pose), &view);
            log_map(rec, &grid, t);
        }
    }
    frame_logger.finish();
    Ok(sim.world.time_s)
}

/// Rows of `entity` in an `.rrd`, read back with the rerun CLI.
fn rows_in_rrd(path: &Path, entity: &str) -> anyhow::Result<usize> {
    let out = std::process::Command::new("rerun")
        .args(["rrd", "print"])
        .arg(path)
        .output()
        .context("run the rerun CLI (rerun rrd print)")?;
    anyhow::ensure!(
        out.status.success(),
        "rerun rrd print failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let needle = format!(" - {entity} - ");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&needle))
        .filter_map(|l| {
            let after = l.split(" with ").nth(1)?;
            after.split(' ').next()?.parse::<usize>().ok()
        })
        .sum())
}
