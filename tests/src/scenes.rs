//! Randomised scenes for scoring and training detectors: the default scene
//! with its objects moved, the room repainted, distractors of other colours
//! and shapes, occluders among the cubes, and the robot somewhere facing the
//! table. `perception-bench` scores on them; `train-detector` learns from them.

use nalgebra::{Isometry3, Point3};
use rand::Rng;
use rosetta_common::robot::{CameraDescription, RobotDescription};
use rosetta_common::{Color, ObjectKind, Pose2D};
use rosetta_perception::detect::Detection;
use rosetta_sim::render::{render_camera, RgbdFrame};
use rosetta_sim::scene::{Furniture, Scene};
use rosetta_sim::world::{ObjectState, World};

/// Colours of distractors: none of them is one of the objects' colours
/// (orange, purple, white, grey, brown, pink, cyan).
const DISTRACTOR_RGB: [[u8; 3]; 7] = [
    [230, 120, 30],
    [120, 60, 150],
    [235, 235, 235],
    [128, 128, 128],
    [110, 70, 40],
    [230, 140, 190],
    [60, 190, 200],
];

/// What [`random_scene`] varies beyond the objects' places.
#[derive(Debug, Clone, Copy)]
pub struct Variety {
    /// Distractor boxes near the table.
    pub distractors: usize,
    /// Repaint the floor, walls and table (muted colours) and vary the
    /// distractors' shapes (not only cubes).
    pub repaint: bool,
    /// Small boxes of distractor colours on the table among the cubes, which
    /// hide parts of them from some views.
    pub occluders: usize,
}

impl Variety {
    /// What `perception-bench` scored from the start: three cube-shaped
    /// distractors (orange, purple, white), nothing repainted.
    pub const BENCH: Variety = Variety {
        distractors: 3,
        repaint: false,
        occluders: 0,
    };
    /// Everything varied: the training distribution, and the harder bench pass.
    pub const FULL: Variety = Variety {
        distractors: 4,
        repaint: true,
        occluders: 2,
    };
}

/// A muted colour: grey `lo..hi` with a tint of up to ±12 per channel.
fn muted(rng: &mut impl Rng, lo: u8, hi: u8) -> [u8; 3] {
    let g = i32::from(rng.gen_range(lo..hi));
    std::array::from_fn(|_| (g + rng.gen_range(-12..=12)).clamp(0, 255) as u8)
}

/// The default scene with the cubes moved at random on the table, the bins
/// on the floor, and what `variety` asks for.
pub fn random_scene(base: &Scene, variety: Variety, rng: &mut impl Rng) -> Scene {
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
    let on_table = |rng: &mut dyn rand::RngCore| {
        [
            table.0[0] + rng.gen_range(-0.45..0.45) * table.1[0],
            table.0[1] + rng.gen_range(-0.45..0.45) * table.1[1],
        ]
    };
    for o in &mut scene.objects {
        for _ in 0..100 {
            let p = if o.kind.is_container() {
                [rng.gen_range(-2.2..0.8), rng.gen_range(-2.2..2.2)]
            } else {
                on_table(rng)
            };
            let gap = if o.kind.is_container() { 0.6 } else { 0.09 };
            if free(p, &placed, gap) {
                o.position_m[0] = p[0];
                o.position_m[1] = p[1];
                placed.push(p);
                break;
            }
        }
    }
    if variety.repaint {
        scene.room.floor_rgb = muted(rng, 70, 170);
        scene.room.wall_rgb = muted(rng, 150, 235);
        for f in scene.furniture.iter_mut().filter(|f| f.id == "table") {
            f.rgb = muted(rng, 60, 190);
        }
    }
    for i in 0..variety.distractors {
        let rgb = if variety.repaint {
            DISTRACTOR_RGB[rng.gen_range(0..DISTRACTOR_RGB.len())]
        } else {
            DISTRACTOR_RGB[i % 3]
        };
        let side = rng.gen_range(0.06..0.2);
        let size_m = if variety.repaint {
            [
                side,
                side * rng.gen_range(0.4..2.5),
                side * rng.gen_range(0.4..2.0),
            ]
        } else {
            [side; 3]
        };
        scene.furniture.push(Furniture {
            id: format!("distractor_{i}"),
            center_m: [
                table.0[0] + rng.gen_range(-0.8..0.8),
                table.0[1] + rng.gen_range(-1.2..1.2),
                size_m[2] / 2.0,
            ],
            size_m,
            rgb,
            obstacle: false,
            path: Vec::new(),
        });
    }
    let top_m = table.0[2] + table.1[2] / 2.0;
    for i in 0..variety.occluders {
        let p = on_table(rng);
        let size_m = [
            rng.gen_range(0.02..0.06),
            rng.gen_range(0.02..0.12),
            rng.gen_range(0.03..0.10),
        ];
        scene.furniture.push(Furniture {
            id: format!("occluder_{i}"),
            center_m: [p[0], p[1], top_m + size_m[2] / 2.0],
            size_m,
            rgb: DISTRACTOR_RGB[rng.gen_range(0..DISTRACTOR_RGB.len())],
            obstacle: false,
            path: Vec::new(),
        });
    }
    scene
}

/// A random scene ([`random_scene`]) with the robot at a random pose
/// ([`random_pose`]), its camera's frame, and where the camera is in `map`.
pub fn random_view(
    base: &Scene,
    robot: &RobotDescription,
    variety: Variety,
    rng: &mut impl Rng,
) -> (World, RgbdFrame, Isometry3<f64>) {
    let scene = random_scene(base, variety, rng);
    let mut world = World::new(scene, robot.clone());
    world.pose = random_pose(rng);
    let frame = render_camera(&world, &robot.camera);
    let map_from_optical = world.pose.to_isometry() * robot.camera.base_from_optical();
    (world, frame, map_from_optical)
}

/// A generated scene ([`Scene::random`], any categories and colours) with
/// the robot 0.8–2.5 m from its table, facing it within ±0.3 rad, its
/// camera's frame, and where the camera is in `map`.
pub fn generated_view(
    robot: &RobotDescription,
    rng: &mut impl Rng,
) -> (World, RgbdFrame, Isometry3<f64>) {
    generated_view_of(Scene::random(rng.gen()), robot, rng)
}

/// [`generated_view`] of a scene whose things have random sizes and
/// proportions ([`vary_sizes`]).
pub fn varied_view(
    robot: &RobotDescription,
    rng: &mut impl Rng,
) -> (World, RgbdFrame, Isometry3<f64>) {
    let mut scene = Scene::random(rng.gen());
    vary_sizes(&mut scene, rng);
    generated_view_of(scene, robot, rng)
}

fn generated_view_of(
    scene: Scene,
    robot: &RobotDescription,
    rng: &mut impl Rng,
) -> (World, RgbdFrame, Isometry3<f64>) {
    let table = scene
        .furniture
        .iter()
        .find(|f| f.id == "table")
        .map_or([1.6, 0.0], |f| [f.center_m[0], f.center_m[1]]);
    let mut world = World::new(scene, robot.clone());
    let r = rng.gen_range(0.8..2.5);
    let a = rng.gen_range(2.0..4.3f64);
    let (x, y) = (table[0] + r * a.cos(), table[1] + r * a.sin());
    let facing = (table[1] - y).atan2(table[0] - x);
    world.pose = Pose2D::new(x, y, facing + rng.gen_range(-0.3..0.3));
    let frame = render_camera(&world, &robot.camera);
    let map_from_optical = world.pose.to_isometry() * robot.camera.base_from_optical();
    (world, frame, map_from_optical)
}

/// Gives every graspable thing a random size and proportions that still
/// say its category, standing where it stood: cubes 3.5–7 cm; boxes
/// 4–10 cm a side with the longest at least 1.5 times the shortest; balls
/// 4–8 cm; cylinders (cans, bottles) 3.5–6.5 cm across and 1.6–2.6 times as
/// tall; mugs 6–9 cm across and 0.8–1.2 times as tall.
pub fn vary_sizes(scene: &mut Scene, rng: &mut impl Rng) {
    for o in &mut scene.objects {
        let size = match o.kind {
            ObjectKind::Cube => [rng.gen_range(0.035..0.07); 3],
            ObjectKind::Box => loop {
                let s: [f64; 3] = std::array::from_fn(|_| rng.gen_range(0.04..0.1));
                let big = s.iter().copied().fold(0.0, f64::max);
                let small = s.iter().copied().fold(f64::INFINITY, f64::min);
                if big >= 1.5 * small {
                    break s;
                }
            },
            ObjectKind::Ball => [rng.gen_range(0.04..0.08); 3],
            ObjectKind::Cylinder => {
                let d = rng.gen_range(0.035..0.065);
                [d, d, d * rng.gen_range(1.6..2.6)]
            }
            ObjectKind::Mug => {
                let d = rng.gen_range(0.06..0.09);
                [d, d, d * rng.gen_range(0.8..1.2)]
            }
            ObjectKind::Bin => continue,
        };
        o.position_m[2] += (size[2] - o.size_m[2]) / 2.0;
        o.size_m = size;
    }
}

/// The world's objects split into those [`visible`] in the frame and the rest.
pub fn split_visible<'a>(
    world: &'a World,
    frame: &RgbdFrame,
    cam: &CameraDescription,
    map_from_optical: &Isometry3<f64>,
) -> (Vec<&'a ObjectState>, Vec<&'a ObjectState>) {
    world
        .objects
        .iter()
        .partition(|o| visible(o, &frame.depth_m, cam, map_from_optical))
}

/// 0.8–2.5 m from the table, facing it within ±0.3 rad.
pub fn random_pose(rng: &mut impl Rng) -> Pose2D {
    let table = [1.6, 0.0];
    let r = rng.gen_range(0.8..2.5);
    let a = rng.gen_range(2.0..4.3f64);
    let (x, y) = (table[0] + r * a.cos(), table[1] + r * a.sin());
    let facing = (table[1] - y).atan2(table[0] - x);
    Pose2D::new(x, y, facing + rng.gen_range(-0.3..0.3))
}

/// The frame under other light: one brightness gain in 1 ± `amount` for the
/// whole image, and a colour cast (each channel's gain within ± `amount`/4),
/// clipped to 8 bits, as a change of lamps or daylight would.
pub fn relight(rgb: &[u8], amount: f64, rng: &mut impl Rng) -> Vec<u8> {
    let a = amount.clamp(0.0, 0.9);
    let gain = if a > 0.0 {
        rng.gen_range(1.0 - a..=1.0 + a)
    } else {
        1.0
    };
    let cast: [f64; 3] = std::array::from_fn(|_| {
        if a > 0.0 {
            1.0 + rng.gen_range(-a / 4.0..=a / 4.0)
        } else {
            1.0
        }
    });
    rgb.iter()
        .enumerate()
        .map(|(i, &v)| {
            (f64::from(v) * gain * cast[i % 3])
                .round()
                .clamp(0.0, 255.0) as u8
        })
        .collect()
}

/// Wholly in the image, its centre within 3 m, and nothing in front of it.
pub fn visible(
    o: &ObjectState,
    depth_m: &[f32],
    cam: &CameraDescription,
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

/// A visible object, as the benchmark sees it.
struct Truth<'a> {
    object: &'a ObjectState,
    matched: bool,
}

/// Detection scores over many frames.
#[derive(Default)]
pub struct Tally {
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
    pub visible: usize,
    pub ignored: usize,
    pub errors_m: Vec<f64>,
    pub detect_s: Vec<f64>,
    /// Strict (category and colour right) true positives, false positives
    /// and misses, per category and per colour name.
    pub by_kind: std::collections::BTreeMap<ObjectKind, [usize; 3]>,
    pub by_color: std::collections::BTreeMap<Color, [usize; 3]>,
    /// Class-agnostic: a detection within 10 cm of a visible object is
    /// found, whatever it is called; of those, how many have the colour
    /// name, the category and the shape class right.
    pub found: usize,
    pub found_fp: usize,
    pub found_missed: usize,
    pub color_right: usize,
    pub kind_right: usize,
    pub shape_right: usize,
}

impl Tally {
    /// True positives over detections (NaN with none).
    pub fn precision(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fp) as f64
    }

    /// True positives over visible objects (NaN with none).
    pub fn recall(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fn_) as f64
    }

    /// The median 3-D error of the true positives, in metres.
    pub fn median_error_m(&self) -> f64 {
        let mut e = self.errors_m.clone();
        e.sort_by(f64::total_cmp);
        e.get(e.len() / 2).copied().unwrap_or(f64::NAN)
    }

    /// Scores one frame's detections against the visible objects (`seen`);
    /// detections of the others (partly hidden, farther) are not scored.
    pub fn score(&mut self, dets: &[Detection], seen: &[&ObjectState], unseen: &[&ObjectState]) {
        let (mut truths, mut others) = (as_truth(seen.to_vec()), as_truth(unseen.to_vec()));
        self.visible += truths.len();
        for d in dets {
            match best_match(d, &mut truths, true) {
                Some((err, _)) => {
                    self.tp += 1;
                    self.errors_m.push(err);
                    self.by_kind.entry(d.kind).or_default()[0] += 1;
                    self.by_color.entry(d.color).or_default()[0] += 1;
                }
                None if best_match(d, &mut others, true).is_some() => self.ignored += 1,
                None => {
                    self.fp += 1;
                    self.by_kind.entry(d.kind).or_default()[1] += 1;
                    self.by_color.entry(d.color).or_default()[1] += 1;
                }
            }
        }
        for t in truths.iter().filter(|t| !t.matched) {
            self.fn_ += 1;
            self.by_kind.entry(t.object.kind).or_default()[2] += 1;
            self.by_color.entry(t.object.color).or_default()[2] += 1;
        }
        // Whatever it is called.
        let (mut truths, mut others) = (as_truth(seen.to_vec()), as_truth(unseen.to_vec()));
        for d in dets {
            match best_match(d, &mut truths, false) {
                Some((_, o)) => {
                    self.found += 1;
                    self.color_right += usize::from(o.color == d.color);
                    self.kind_right += usize::from(o.kind == d.kind);
                    self.shape_right += usize::from(o.kind.shape() == d.kind.shape());
                }
                None if best_match(d, &mut others, false).is_some() => {}
                None => self.found_fp += 1,
            }
        }
        self.found_missed += truths.iter().filter(|t| !t.matched).count();
    }

    pub fn print(&mut self, label: &str) {
        let ratio = |a: usize, b: usize| {
            if b == 0 {
                f64::NAN
            } else {
                a as f64 / b as f64
            }
        };
        self.errors_m.sort_by(f64::total_cmp);
        self.detect_s.sort_by(f64::total_cmp);
        let q = |v: &[f64], p: f64| {
            v.get(((v.len().max(1) - 1) as f64 * p).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        let (tp, fp, fn_) = (self.tp, self.fp, self.fn_);
        println!("{label}:");
        println!(
            "  precision {:.3} ({tp}/{}), recall {:.3} ({tp}/{})",
            ratio(tp, tp + fp),
            tp + fp,
            ratio(tp, tp + fn_),
            tp + fn_
        );
        println!(
            "  ({} detections of partly hidden or farther objects not scored)",
            self.ignored
        );
        println!(
            "  3-D position error: median {:.1} mm, p95 {:.1} mm, max {:.1} mm",
            q(&self.errors_m, 0.5) * 1e3,
            q(&self.errors_m, 0.95) * 1e3,
            self.errors_m.last().copied().unwrap_or(f64::NAN) * 1e3
        );
        println!(
            "  detection time on one core: p50 {:.1} ms ({:.0} frames/s), p95 {:.1} ms",
            q(&self.detect_s, 0.5) * 1e3,
            1.0 / q(&self.detect_s, 0.5),
            q(&self.detect_s, 0.95) * 1e3
        );
        let found = self.found;
        println!(
            "  class-agnostic: precision {:.3}, recall {:.3}; of {found} found: colour name {:.1}%, category {:.1}%, shape class {:.1}%",
            ratio(found, found + self.found_fp),
            ratio(found, found + self.found_missed),
            100.0 * ratio(self.color_right, found),
            100.0 * ratio(self.kind_right, found),
            100.0 * ratio(self.shape_right, found)
        );
        let line = |name: &str, [tp, fp, fn_]: [usize; 3]| {
            println!(
                "    {name:<9} precision {:.3} recall {:.3} ({tp} right, {fp} wrong, {fn_} missed)",
                ratio(tp, tp + fp),
                ratio(tp, tp + fn_)
            );
        };
        println!("  per category (category and colour both right):");
        for (k, v) in &self.by_kind {
            line(k.name(), *v);
        }
        println!("  per colour name:");
        for (c, v) in &self.by_color {
            line(c.name(), *v);
        }
    }
}

fn as_truth(v: Vec<&ObjectState>) -> Vec<Truth<'_>> {
    v.into_iter()
        .map(|object| Truth {
            object,
            matched: false,
        })
        .collect()
}

/// The nearest unmatched visible object (of the detection's class and
/// colour, if `strict`) within 10 cm: marks it matched and returns the
/// error and the object.
fn best_match<'a>(
    d: &Detection,
    truths: &mut [Truth<'a>],
    strict: bool,
) -> Option<(f64, &'a ObjectState)> {
    let dist = |o: &ObjectState| {
        let p = o.position_m;
        ((p[0] - d.position_m[0]).powi(2)
            + (p[1] - d.position_m[1]).powi(2)
            + (p[2] - d.position_m[2]).powi(2))
        .sqrt()
    };
    let best = truths
        .iter_mut()
        .filter(|t| {
            !t.matched && (!strict || (t.object.kind == d.kind && t.object.color == d.color))
        })
        .map(|t| (dist(t.object), t))
        .filter(|(e, _)| *e < 0.10)
        .min_by(|a, b| a.0.total_cmp(&b.0))?;
    best.1.matched = true;
    Some((best.0, best.1.object))
}
