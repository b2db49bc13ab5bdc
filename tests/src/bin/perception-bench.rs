//! `perception-bench`: the detectors (geometric with its category
//! classifier, geometric with rules for categories, classical and learned)
//! on frames the sim renders, scored against the sim's ground truth.
//!
//! ```text
//! source .local/env.sh
//! cargo run -p rosetta-tests --bin perception-bench -- --frames 200
//! ```
//!
//! Each frame is a new scene (`rosetta_tests::scenes`): the four cubes at
//! random spots on the table, the two bins at random spots on the floor,
//! distractor boxes of other colours (orange, purple, white) near the table,
//! and the robot at a random pose 0.8–2.5 m from the table, facing it
//! (±0.3 rad). With `--variety full`, the room and the table are repainted,
//! distractors take other colours and shapes, and small boxes stand among the
//! cubes and hide parts of them (the learned detector's training
//! distribution, with other seeds). With `--variety generated`, each frame
//! is a generated scene (`Scene::random`): things of five categories in
//! any of the eleven colour names on a table at a random place, bins of any
//! colour (the classical and learned detectors know the primary colours'
//! cubes and bins only, and score accordingly). With `--variety varied`,
//! the generated scenes' things also take random sizes and proportions
//! (`vary_sizes`, the category classifier's training distribution, with
//! other seeds). An object counts as
//! visible when it lies wholly in the image, within 3 m of the camera, with
//! nothing in front of its centre; a detection is a true positive when its
//! class and colour match a visible object within 10 cm. Each frame is
//! scored twice: as rendered, and under a lighting change (one brightness
//! gain for the image and a colour cast, `--lighting`).
//!
//! Then the occupancy grid: in cluttered rooms the robot drives to random
//! reachable goals while the grid is built from its scans, and the grid's
//! obstacles are scored on the room's true map (IoU of occupied cells over
//! what the scans saw, cell-exact and within one cell). Figures are
//! printed, not asserted.

use std::time::Instant;

use clap::Parser;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rosetta_common::robot::RobotDescription;
use rosetta_common::Skill;
use rosetta_control::path::{plan_path, Costmap};
use rosetta_perception::{Detector, DetectorKind};
use rosetta_sim::scene::Scene;
use rosetta_tests::closed_loop::{cluttered_room, footprint_fits, place, true_grid, ClosedLoop};
use rosetta_tests::scenes::{
    generated_view, random_view, relight, split_visible, varied_view, Tally, Variety,
};

/// Which scenes to score on.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum VarietyArg {
    /// Objects moved, three cube-shaped distractors; room as in the default scene.
    Bench,
    /// Also: room and table repainted, distractors of other shapes, occluders.
    Full,
    /// Generated scenes: any category and colour (`Scene::random`).
    Generated,
    /// Generated scenes whose things have random sizes and proportions.
    Varied,
}

/// Score both detectors on randomised rendered frames, and the occupancy grid.
#[derive(Debug, Parser)]
struct Args {
    /// Frames (each a new random scene and pose).
    #[arg(long, default_value_t = 200)]
    frames: usize,
    #[arg(long, default_value_t = 4)]
    seed: u64,
    /// How much the light changes in the relit pass: brightness gain within
    /// 1 ± this, and a colour cast of up to a quarter of it per channel.
    #[arg(long, default_value_t = 0.4)]
    lighting: f64,
    /// How much the scenes vary.
    #[arg(long, value_enum, default_value_t = VarietyArg::Bench)]
    variety: VarietyArg,
    /// The learned detector's weights (default: the built-in ones).
    #[arg(long)]
    detector_weights: Option<std::path::PathBuf>,
    /// The geometric detector's category classifier weights (default: the
    /// built-in ones).
    #[arg(long)]
    classifier_weights: Option<std::path::PathBuf>,
    /// Rooms for the occupancy-grid score (0: skip it).
    #[arg(long, default_value_t = 5)]
    grid_rooms: usize,
    /// Random reachable goals driven to in each room while mapping.
    #[arg(long, default_value_t = 4)]
    grid_goals: usize,
    /// Obstacle boxes in each room.
    #[arg(long, default_value_t = 7)]
    boxes: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // "On one core": OpenCV's own thread pool off.
    opencv::core::set_num_threads(1)?;
    let robot = RobotDescription::default();
    let cam = robot.camera.clone();
    let base = Scene::default_scene()?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let variety = match args.variety {
        VarietyArg::Bench | VarietyArg::Generated | VarietyArg::Varied => Variety::BENCH,
        VarietyArg::Full => Variety::FULL,
    };
    let detectors = [
        Detector::new(DetectorKind::Geometric, args.classifier_weights.as_deref())?,
        Detector::new(DetectorKind::GeometricRules, None)?,
        Detector::new(DetectorKind::Classical, None)?,
        Detector::new(DetectorKind::Learned, args.detector_weights.as_deref())?,
    ];
    // Each frame is scored as rendered, and again under a lighting change,
    // by each detector.
    let mut tallies: Vec<[Tally; 2]> = detectors.iter().map(|_| Default::default()).collect();
    let mut visible_objects = 0;
    for _ in 0..args.frames {
        let (world, frame, map_from_optical) = match args.variety {
            VarietyArg::Generated => generated_view(&robot, &mut rng),
            VarietyArg::Varied => varied_view(&robot, &mut rng),
            _ => random_view(&base, &robot, variety, &mut rng),
        };
        let (seen, unseen) = split_visible(&world, &frame, &cam, &map_from_optical);
        visible_objects += seen.len();
        let lit = relight(&frame.rgb, args.lighting, &mut rng);
        for (detector, tally) in detectors.iter().zip(tallies.iter_mut()) {
            let [plain, relit] = tally;
            for (rgb, t) in [(&frame.rgb, plain), (&lit, relit)] {
                let t0 = Instant::now();
                let dets = detector.detect(rgb, &frame.depth_m, &cam, &map_from_optical)?;
                t.detect_s.push(t0.elapsed().as_secs_f64());
                t.score(&dets, &seen, &unseen);
            }
        }
    }
    println!(
        "{} frames at {}x{} ({:?} scenes), {visible_objects} visible objects (unoccluded, within 3 m):",
        args.frames, cam.width_px, cam.height_px, args.variety
    );
    for (detector, tally) in detectors.iter().zip(tallies.iter_mut()) {
        let [plain, relit] = tally;
        println!("{} detector:", detector.name());
        plain.print("as rendered");
        relit.print(&format!(
            "lighting changed (brightness x{:.2}..{:.2}, colour cast up to {:.0}%)",
            1.0 - args.lighting,
            1.0 + args.lighting,
            100.0 * args.lighting / 4.0
        ));
    }
    if args.grid_rooms > 0 {
        grid_score(&args, &mut rng)?;
    }
    Ok(())
}

/// The occupancy grid against the sim's map: in cluttered rooms, the robot
/// drives to random reachable goals while the grid is built from its scans
/// (`common::grid`, as perception builds `/map`); then the grid is scored on
/// the room's true map (`OccupancyGrid::observed_iou` in `common::grid`).
fn grid_score(args: &Args, rng: &mut ChaCha8Rng) -> anyhow::Result<()> {
    let radius_m = 0.22;
    let (mut strict, mut tolerant) = (Vec::new(), Vec::new());
    for room in 0..args.grid_rooms {
        let scene = cluttered_room(args.boxes, rng);
        let truth = true_grid(&scene);
        let costmap = Costmap::from_grid(&truth, radius_m, 0.0);
        let mut sim = ClosedLoop::new(scene.clone(), args.seed + room as u64);
        let (mut goals, mut tries) = (0, 0);
        while goals < args.grid_goals && tries < 10_000 {
            tries += 1;
            let g = [rng.gen_range(-2.6..2.6), rng.gen_range(-2.6..2.6)];
            let here = [sim.world.pose.x_m, sim.world.pose.y_m];
            if !footprint_fits(&scene, g, radius_m, 0.05) || plan_path(&costmap, here, g).is_err() {
                continue;
            }
            goals += 1;
            let goal = vec![Skill::NavigateTo {
                target: "goal".into(),
            }];
            sim.run(goal, vec![place("goal", g[0], g[1], 0.0)], 120.0);
        }
        let score = |tol| {
            sim.grid()
                .observed_iou(&truth, tol)
                .ok_or_else(|| anyhow::anyhow!("room {room}: nothing to score"))
        };
        strict.push(score(0)?);
        tolerant.push(score(1)?);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "occupancy grid from /scan, {} rooms of {} boxes, {} goals driven to in each, 0.05 m cells:",
        args.grid_rooms, args.boxes, args.grid_goals
    );
    println!(
        "  IoU of occupied cells over what the scans saw: {:.3} mean, {:.3} worst (cell-exact); {:.3} mean, {:.3} worst (within one cell)",
        mean(&strict),
        min(&strict),
        mean(&tolerant),
        min(&tolerant)
    );
    Ok(())
}
