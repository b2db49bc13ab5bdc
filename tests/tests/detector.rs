//! The learned detector: its committed weights load, and on rendered scenes
//! that its training never saw (another seed), everything varied, it finds
//! the visible objects with their class and colour, in the right place. The
//! geometric detector's category classifier: on generated scenes of things
//! of random sizes that its training never saw, it names their categories.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rosetta_common::robot::RobotDescription;
use rosetta_perception::{Detector, DetectorKind};
use rosetta_sim::scene::Scene;
use rosetta_tests::scenes::{random_view, relight, split_visible, varied_view, Tally, Variety};

/// Not one of `train-detector`'s seeds (7, and 7 + 1000003 for its held-out IoU).
const HELD_OUT_SEED: u64 = 2026;

#[test]
fn the_learned_detector_finds_the_objects_of_held_out_frames() {
    let detector = Detector::new(DetectorKind::Learned, None).expect("built-in weights load");
    let robot = RobotDescription::default();
    let cam = robot.camera.clone();
    let base = Scene::default_scene().expect("default scene");
    let mut rng = ChaCha8Rng::seed_from_u64(HELD_OUT_SEED);
    let mut tally = Tally::default();
    for _ in 0..30 {
        let (world, frame, map_from_optical) = random_view(&base, &robot, Variety::FULL, &mut rng);
        let (seen, unseen) = split_visible(&world, &frame, &cam, &map_from_optical);
        let rgb = relight(&frame.rgb, 0.3, &mut rng);
        let dets = detector
            .detect(&rgb, &frame.depth_m, &cam, &map_from_optical)
            .expect("detects");
        tally.score(&dets, &seen, &unseen);
    }
    let (p, r, e) = (tally.precision(), tally.recall(), tally.median_error_m());
    eprintln!(
        "learned detector, 30 held-out frames: precision {p:.3}, recall {r:.3} ({} visible), median error {:.1} mm",
        tally.visible,
        e * 1e3
    );
    assert!(tally.visible >= 60, "too few visible objects to judge");
    assert!(p >= THRESHOLD_PRECISION, "precision {p:.3}");
    assert!(r >= THRESHOLD_RECALL, "recall {r:.3}");
    assert!(e <= 0.02, "median 3-D error {e:.3} m");
}

/// Not one of `train-classifier`'s seeds (11, and 11 + 1000003 for its held-out accuracy).
const CLASSIFIER_HELD_OUT_SEED: u64 = 4040;

#[test]
fn the_category_classifier_names_things_of_sizes_it_never_saw() {
    let detector = Detector::new(DetectorKind::Geometric, None).expect("built-in weights load");
    assert_eq!(detector.name(), "geometric");
    let robot = RobotDescription::default();
    let cam = robot.camera.clone();
    let mut rng = ChaCha8Rng::seed_from_u64(CLASSIFIER_HELD_OUT_SEED);
    let mut tally = Tally::default();
    for _ in 0..30 {
        let (world, frame, map_from_optical) = varied_view(&robot, &mut rng);
        let (seen, unseen) = split_visible(&world, &frame, &cam, &map_from_optical);
        let dets = detector
            .detect(&frame.rgb, &frame.depth_m, &cam, &map_from_optical)
            .expect("detects");
        tally.score(&dets, &seen, &unseen);
    }
    let category = tally.kind_right as f64 / tally.found.max(1) as f64;
    eprintln!(
        "geometric detector with its classifier, 30 held-out frames: {} of {} visible found, category right {category:.3}",
        tally.found, tally.visible
    );
    assert!(tally.found >= 80, "too few objects found to judge");
    assert!(category >= 0.95, "category right {category:.3}");
}

#[test]
fn corrupt_classifier_weights_are_refused_with_the_file_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("classifier.safetensors");
    std::fs::write(&path, b"\x08\x00\x00\x00\x00\x00\x00\x00{}").expect("write");
    let err = Detector::new(DetectorKind::Geometric, Some(&path))
        .expect_err("empty weights")
        .to_string();
    assert!(err.contains("classifier.safetensors"), "{err}");
}

const THRESHOLD_PRECISION: f64 = 0.90;
const THRESHOLD_RECALL: f64 = 0.85;

#[test]
fn corrupt_weights_are_refused_with_the_file_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("detector.safetensors");
    std::fs::write(&path, b"\x08\x00\x00\x00\x00\x00\x00\x00{}").expect("write");
    let err = Detector::new(DetectorKind::Learned, Some(&path))
        .expect_err("empty weights")
        .to_string();
    assert!(err.contains("detector.safetensors"), "{err}");
}
