//! `perception-bench`: the classical detector on frames the sim renders, scored
//! against the sim's ground truth.
//!
//! ```text
//! source .local/env.sh
//! cargo run -p rosetta-tests --bin perception-bench -- --frames 200
//! ```
//!
//! Each frame is a new scene: the four cubes at random spots on the table,
//! the two bins at random spots on the floor, distractor boxes of other
//! colours (orange, purple, white) near the table, and the robot at a random
//! pose 0.8–2.5 m from the table, facing it (±0.3 rad). An object counts as
//! visible when it lies wholly in the image, within 3 m of the camera, with
//! nothing in front of its centre; a detection is a true positive when its
//! class and colour match a visible object within 10 cm. Figures are
//! printed, not asserted.

use std::time::Instant;

use clap::Parser;
use nalgebra::{Isometry3, Point3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rosetta_common::robot::RobotDescription;
use rosetta_common::{ObjectKind, Pose2D};
use rosetta_perception::detect::{detect, Detection};
use rosetta_sim::render::render_camera;
use rosetta_sim::scene::{Furniture, Scene};
use rosetta_sim::world::{ObjectState, World};

/// Score the classical detector on randomised rendered frames.
#[derive(Debug, Parser)]
struct Args {
    /// Frames (each a new random scene and pose).
    #[arg(long, default_value_t = 200)]
    frames: usize,
    #[arg(long, default_value_t = 4)]
    seed: u64,
}

/// A visible object, as the benchmark sees it.
struct Truth<'a> {
    object: &'a ObjectState,
    matched: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // "On one core": OpenCV's own thread pool off.
    opencv::core::set_num_threads(1)?;
    let robot = RobotDescription::default();
    let cam = robot.camera.clone();
    let base = Scene::default_scene()?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    let mut errors_m: Vec<f64> = Vec::new();
    let mut detect_s: Vec<f64> = Vec::new();
    let mut visible_total = 0usize;
    let mut ignored = 0usize;
    for _ in 0..args.frames {
        let scene = random_scene(&base, &mut rng);
        let mut world = World::new(scene, robot.clone());
        world.pose = random_pose(&mut rng);
        let frame = render_camera(&world, &cam);
        let map_from_optical = world.pose.to_isometry() * cam.base_from_optical();
        let t0 = Instant::now();
        let dets = detect(&frame.rgb, &frame.depth_m, &cam, &map_from_optical)?;
        detect_s.push(t0.elapsed().as_secs_f64());
        let (seen, unseen): (Vec<&ObjectState>, Vec<&ObjectState>) = world
            .objects
            .iter()
            .partition(|o| visible(o, &frame.depth_m, &cam, &map_from_optical));
        let (mut truths, mut others) = (as_truth(seen), as_truth(unseen));
        visible_total += truths.len();
        for d in &dets {
            match best_match(d, &mut truths) {
                Some(err) => {
                    tp += 1;
                    errors_m.push(err);
                }
                // A partly hidden or farther object seen anyway is not scored.
                None if best_match(d, &mut others).is_some() => ignored += 1,
                None => fp += 1,
            }
        }
        fn_ += truths.iter().filter(|t| !t.matched).count();
    }
    let ratio = |a: usize, b: usize| {
        if b == 0 {
            f64::NAN
        } else {
            a as f64 / b as f64
        }
    };
    errors_m.sort_by(f64::total_cmp);
    detect_s.sort_by(f64::total_cmp);
    let q = |v: &[f64], p: f64| {
        v.get(((v.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "classical detector (HSV + depth), {} frames at {}x{}, {} visible objects (unoccluded, within 3 m):",
        args.frames, cam.width_px, cam.height_px, visible_total
    );
    println!(
        "  precision {:.3} ({tp}/{}), recall {:.3} ({tp}/{})",
        ratio(tp, tp + fp),
        tp + fp,
        ratio(tp, tp + fn_),
        tp + fn_
    );
    println!("  ({ignored} detections of partly hidden or farther objects not scored)");
    println!(
        "  3-D position error: median {:.1} mm, p95 {:.1} mm, max {:.1} mm",
        q(&errors_m, 0.5) * 1e3,
        q(&errors_m, 0.95) * 1e3,
        errors_m.last().copied().unwrap_or(f64::NAN) * 1e3
    );
    println!(
        "  detection time on one core: p50 {:.1} ms ({:.0} frames/s), p95 {:.1} ms",
        q(&detect_s, 0.5) * 1e3,
        1.0 / q(&detect_s, 0.5),
        q(&detect_s, 0.95) * 1e3
    );
    Ok(())
}

fn as_truth(v: Vec<&ObjectState>) -> Vec<Truth<'_>> {
    v.into_iter()
        .map(|object| Truth {
            object,
            matched: false,
        })
        .collect()
}

/// The nearest unmatched visible object of the detection's class and colour
/// within 10 cm: marks it matched and returns the error.
fn best_match(d: &Detection, truths: &mut [Truth]) -> Option<f64> {
    let dist = |o: &ObjectState| {
        let p = o.position_m;
        ((p[0] - d.position_m[0]).powi(2)
            + (p[1] - d.position_m[1]).powi(2)
            + (p[2] - d.position_m[2]).powi(2))
        .sqrt()
    };
    let best = truths
        .iter_mut()
        .filter(|t| !t.matched && t.object.kind == d.kind && t.object.color == d.color)
        .map(|t| (dist(t.object), t))
        .filter(|(e, _)| *e < 0.10)
        .min_by(|a, b| a.0.total_cmp(&b.0))?;
    best.1.matched = true;
    Some(best.0)
}

/// Wholly in the image, its centre within 3 m, and nothing in front of it.
fn visible(
    o: &ObjectState,
    depth_m: &[f32],
    cam: &rosetta_common::robot::CameraDescription,
    map_from_optical: &Isometry3<f64>,
) -> bool {
    let optical_from_map = map_from_optical.inverse();
    let project = |p: [f64; 3]| {
        let q = optical_from_map * Point3::new(p[0], p[1], p[2]);
        (q.z > 0.05).then(|| {
            (
                cam.fx_px * q.x / q.z + cam.cx_px,
                cam.fy_px * q.y / q.z + cam.cy_px,
                q.z,
            )
        })
    };
    let (c, s) = (o.position_m, o.size_m);
    let inside = |u: f64, v: f64| {
        u >= 2.0 && v >= 2.0 && u < cam.width_px as f64 - 2.0 && v < cam.height_px as f64 - 2.0
    };
    for dx in [-0.5, 0.5] {
        for dy in [-0.5, 0.5] {
            for dz in [-0.5, 0.5] {
                let corner = [c[0] + dx * s[0], c[1] + dy * s[1], c[2] + dz * s[2]];
                match project(corner) {
                    Some((u, v, _)) if inside(u, v) => {}
                    _ => return false,
                }
            }
        }
    }
    // The top's centre (open bins show their floor through it): within 3 m,
    // and the rendered depth there is not much nearer than the object.
    let top = [c[0], c[1], c[2] + 0.5 * s[2]];
    let Some((u, v, z)) = project(top) else {
        return false;
    };
    let reach = s.iter().fold(0.0f64, |a, b| a.max(*b));
    let i = v as usize * cam.width_px as usize + u as usize;
    z <= 3.0
        && depth_m
            .get(i)
            .is_some_and(|d| f64::from(*d) >= z - reach - 0.02)
}

/// The default scene with the cubes and bins moved at random, and
/// distractor boxes of other colours near the table.
fn random_scene(base: &Scene, rng: &mut impl Rng) -> Scene {
    let mut scene = base.clone();
    let table = scene
        .furniture
        .iter()
        .find(|f| f.id == "table")
        .map(|f| (f.center_m, f.size_m))
        .unwrap_or(([1.6, 0.0, 0.2], [0.6, 1.2, 0.4]));
    let mut placed: Vec<[f64; 2]> = Vec::new();
    let free = |p: [f64; 2], placed: &[[f64; 2]], gap: f64| {
        placed
            .iter()
            .all(|q| (p[0] - q[0]).hypot(p[1] - q[1]) > gap)
    };
    for o in &mut scene.objects {
        for _ in 0..100 {
            let p = match o.kind {
                ObjectKind::Cube => [
                    table.0[0] + rng.gen_range(-0.45..0.45) * table.1[0],
                    table.0[1] + rng.gen_range(-0.45..0.45) * table.1[1],
                ],
                ObjectKind::Bin => [rng.gen_range(-2.2..0.8), rng.gen_range(-2.2..2.2)],
            };
            let gap = if o.kind == ObjectKind::Bin { 0.6 } else { 0.09 };
            if free(p, &placed, gap) {
                o.position_m[0] = p[0];
                o.position_m[1] = p[1];
                placed.push(p);
                break;
            }
        }
    }
    for (i, rgb) in [[230, 120, 30], [120, 60, 150], [235, 235, 235]]
        .into_iter()
        .enumerate()
    {
        let size = rng.gen_range(0.06..0.2);
        scene.furniture.push(Furniture {
            id: format!("distractor_{i}"),
            center_m: [
                table.0[0] + rng.gen_range(-0.8..0.8),
                table.0[1] + rng.gen_range(-1.2..1.2),
                size / 2.0,
            ],
            size_m: [size, size, size],
            rgb,
            obstacle: false,
            path: Vec::new(),
        });
    }
    scene
}

/// 0.8–2.5 m from the table, facing it within ±0.3 rad.
fn random_pose(rng: &mut impl Rng) -> Pose2D {
    let table = [1.6, 0.0];
    let r = rng.gen_range(0.8..2.5);
    let a = rng.gen_range(2.0..4.3f64);
    let (x, y) = (table[0] + r * a.cos(), table[1] + r * a.sin());
    let facing = (table[1] - y).atan2(table[0] - x);
    Pose2D::new(x, y, facing + rng.gen_range(-0.3..0.3))
}
