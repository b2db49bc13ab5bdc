//! Deterministic re-runs (issue 6): a sim episode run again with the same
//! scene and seed reproduces the same plan and the same trajectory. Each
//! re-run is paired with its config in `tests/replay/`.
//!
//! The episode runs in one process without ROS (`closed_loop`): the rules
//! planner plans the command on the world, and the skill runner carries it out
//! against the sim, with the sim's seeded lidar noise. Any hidden
//! nondeterminism (hash-map order, wall-clock time, unseeded randomness)
//! shows up as a pose that differs, bit for bit. Over ROS the same episode
//! is not bit-exact (message timing varies), so this is the level at which
//! re-runs are checked.

#![allow(clippy::unwrap_used)] // test code: a missing field is a test failure

use rosetta_common::status::TaskState;
use rosetta_common::world::{parse_places, DEFAULT_PLACES_TOML};
use rosetta_common::{Pose2D, Skill};
use rosetta_planner::RulesPlanner;
use rosetta_sim::Scene;
use rosetta_tests::closed_loop::ClosedLoop;

#[derive(Debug, serde::Deserialize)]
struct ReplayConfig {
    scene: String,
    seed: u64,
    command: String,
    timeout_s: f64,
}

struct Episode {
    plan: Vec<Skill>,
    task: TaskState,
    trajectory: Vec<Pose2D>,
    objects: Vec<[f64; 3]>,
}

fn episode(config: &ReplayConfig, seed: u64) -> Episode {
    let places = parse_places(DEFAULT_PLACES_TOML).unwrap();
    let mut sim = ClosedLoop::new(Scene::load(&config.scene).unwrap(), seed);
    let plan = RulesPlanner
        .plan(&config.command, &sim.world_model(places.clone()))
        .unwrap();
    let out = sim.run(plan.clone(), places, config.timeout_s);
    Episode {
        plan,
        task: out.task,
        trajectory: out.trajectory,
        objects: sim.world.objects.iter().map(|o| o.position_m).collect(),
    }
}

#[test]
fn a_seeded_episode_reruns_to_the_same_plan_and_trajectory() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/replay/green_cube_red_bin.toml"
    );
    let config: ReplayConfig = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let first = episode(&config, config.seed);
    assert_eq!(first.task, TaskState::Succeeded);
    assert!(first.trajectory.len() > 100, "too short to compare");

    let again = episode(&config, config.seed);
    assert_eq!(again.plan, first.plan);
    assert_eq!(again.task, first.task);
    assert_eq!(again.trajectory.len(), first.trajectory.len());
    // Pose for pose, bit for bit.
    for (i, (a, b)) in first.trajectory.iter().zip(&again.trajectory).enumerate() {
        assert!(
            a.x_m.to_bits() == b.x_m.to_bits()
                && a.y_m.to_bits() == b.y_m.to_bits()
                && a.yaw_rad.to_bits() == b.yaw_rad.to_bits(),
            "step {i}: {a:?} then {b:?}"
        );
    }
    assert_eq!(again.objects, first.objects);
}
