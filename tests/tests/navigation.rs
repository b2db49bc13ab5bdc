//! Navigation in closed loop with the simulator, in one process and
//! deterministic (seeded lidar noise): the skill runner's path planning, path
//! following and obstacle handling against the sim's ground truth.

#![allow(clippy::unwrap_used)] // test helpers: a missing field is a test failure

use rosetta_common::status::TaskState;
use rosetta_common::Skill;
use rosetta_sim::scene::Waypoint;
use rosetta_tests::closed_loop::{carry, obstacle, place, room_with, ClosedLoop};

fn go_to(target: &str) -> Vec<Skill> {
    vec![Skill::NavigateTo {
        target: target.into(),
    }]
}

/// A wall across the room, open only at one end: the way to the goal behind
/// it goes round through the gap, without touching anything.
#[test]
fn the_robot_goes_around_a_wall_through_its_gap() {
    // Wall at x = 1.0 from y = -3 to y = 1.2; the gap is y in (1.2, 3).
    let scene = room_with(vec![obstacle("wall", [1.0, -0.9], [0.2, 4.2])]);
    let mut sim = ClosedLoop::new(scene, 1);
    let goal = place("behind", 2.2, -1.0, 0.0);
    let out = sim.run(go_to("behind"), vec![goal], 120.0);
    assert_eq!(out.task, TaskState::Succeeded, "{}", out.message);
    assert_eq!(out.collisions, 0);
    let end = sim.world.pose;
    assert!((end.x_m - 2.2).hypot(end.y_m + 1.0) < 0.05, "{end:?}");
    assert!(
        out.trajectory
            .iter()
            .any(|p| p.y_m > 1.2 && (p.x_m - 1.0).abs() < 0.3),
        "it did not pass through the gap"
    );
    // Never closer to the wall than the footprint allows.
    for p in &out.trajectory {
        let dx = ((p.x_m - 1.0).abs() - 0.1).max(0.0);
        let dy = (p.y_m - 1.2).max(0.0);
        assert!(dx.hypot(dy) > 0.22, "{p:?} touches the wall");
    }
}

/// A goal inside a closed pen: the robot finds out (once it has seen the pen
/// from enough sides) and fails with a reason, in bounded time, instead of
/// circling forever.
#[test]
fn an_unreachable_goal_fails_with_a_reason_and_no_endless_spinning() {
    let scene = room_with(vec![
        obstacle("n", [1.8, 1.0], [1.2, 0.15]),
        obstacle("s", [1.8, -0.2], [1.2, 0.15]),
        obstacle("e", [2.35, 0.4], [0.15, 1.2]),
        obstacle("w", [1.25, 0.4], [0.15, 1.2]),
    ]);
    let mut sim = ClosedLoop::new(scene, 2);
    let out = sim.run(go_to("pen"), vec![place("pen", 1.8, 0.4, 0.0)], 150.0);
    assert_eq!(out.task, TaskState::Failed, "{}", out.message);
    assert!(
        out.message.contains("no way to pen") && out.message.contains("no path"),
        "{}",
        out.message
    );
    assert!(
        out.sim_time_s < 90.0,
        "took {:.1} s to give up",
        out.sim_time_s
    );
    assert_eq!(out.collisions, 0);
}

/// A goal the footprint cannot stand on (against an obstacle seen on the
/// scan) fails at once, with the reason; a goal in an unseen inside fails as
/// having no path.
#[test]
fn a_goal_against_an_obstacle_fails_at_once_with_the_reason() {
    let scene = room_with(vec![obstacle("block", [1.5, 0.0], [0.8, 0.8])]);
    let mut sim = ClosedLoop::new(scene, 3);
    // Let the lidar see the block first.
    let out = sim.run(vec![Skill::Wait { seconds: 0.5 }], vec![], 5.0);
    assert_eq!(out.task, TaskState::Succeeded);
    let out = sim.run(go_to("edge"), vec![place("edge", 1.05, 0.0, 0.0)], 30.0);
    assert_eq!(out.task, TaskState::Failed, "{}", out.message);
    assert!(
        out.message.contains("too close to an obstacle"),
        "{}",
        out.message
    );
    assert!(out.sim_time_s < 0.1, "{}", out.sim_time_s);
    let out = sim.run(go_to("inside"), vec![place("inside", 1.5, 0.0, 0.0)], 30.0);
    assert_eq!(out.task, TaskState::Failed, "{}", out.message);
    assert!(out.message.contains("no path"), "{}", out.message);
    // It drives round the block until the scan has closed every side.
    assert!(out.sim_time_s < 60.0, "{}", out.sim_time_s);
    assert_eq!(sim.world.collisions, 0);
}

/// Pick and place in closed loop, with the cube near the table's corner: the
/// approach spot is chosen on the costmap, within the arm's reach.
#[test]
fn a_cube_near_the_table_corner_is_carried_into_the_bin() {
    let mut scene = rosetta_sim::scene::Scene::default_scene().unwrap();
    scene
        .objects
        .retain(|o| o.id == "red_cube" || o.kind.name() == "bin");
    let cube = scene
        .objects
        .iter_mut()
        .find(|o| o.id == "red_cube")
        .unwrap();
    cube.position_m[0] = 1.48;
    cube.position_m[1] = -0.5;
    let mut sim = ClosedLoop::new(scene, 4);
    let plan = carry("red_cube", "blue_bin");
    let out = sim.run(plan, vec![], 200.0);
    assert_eq!(out.task, TaskState::Succeeded, "{}", out.message);
    let truth = sim.world.ground_truth();
    let cube = truth.objects.iter().find(|o| o.id == "red_cube").unwrap();
    assert_eq!(cube.in_container.as_deref(), Some("blue_bin"));
    assert_eq!(out.collisions, 0);
}

/// The robot's footprint's distance to a box of the scene's furniture at
/// this instant (negative when they overlap).
fn clearance_m(sim: &ClosedLoop, furniture_index: usize) -> f64 {
    let w = &sim.world;
    let statics = w.statics();
    let b = statics[statics.len() - w.scene.furniture.len() + furniture_index].aabb;
    let (x, y) = (w.pose.x_m, w.pose.y_m);
    let dx = (b.min[0] - x).max(x - b.max[0]).max(0.0);
    let dy = (b.min[1] - y).max(y - b.max[1]).max(0.0);
    dx.hypot(dy) - w.robot.base_radius_m
}

/// The wall of the gap test, with a cart standing in its only gap.
fn doorway_with_cart(leaves_at_s: Option<f64>) -> rosetta_sim::scene::Scene {
    let mut cart = obstacle("cart", [1.0, 2.1], [0.3, 1.8]);
    if let Some(t) = leaves_at_s {
        cart.path = vec![
            Waypoint {
                t_s: t,
                center_xy_m: [1.0, 2.1],
            },
            Waypoint {
                t_s: t + 2.0,
                center_xy_m: [-1.5, 2.1],
            },
        ];
    }
    room_with(vec![obstacle("wall", [1.0, -0.9], [0.2, 4.2]), cart])
}

/// Someone stands in the only doorway, then walks off. With no path, the
/// robot turns once in place while the map refreshes, plans again, and goes
/// through the doorway once it is free.
#[test]
fn a_blocked_doorway_that_clears_is_waited_out_by_turning_in_place() {
    let mut sim = ClosedLoop::new(doorway_with_cart(Some(4.0)), 5);
    let out = sim.run(
        go_to("behind"),
        vec![place("behind", 2.2, -1.0, 0.0)],
        120.0,
    );
    assert_eq!(out.task, TaskState::Succeeded, "{}", out.message);
    assert_eq!(out.collisions, 0);
    // It turned on the spot: a full turn of heading with the base nearly still.
    let spun = out.trajectory.windows(2).filter(|w| {
        (w[1].x_m - w[0].x_m).hypot(w[1].y_m - w[0].y_m) < 1e-4
            && (w[1].yaw_rad - w[0].yaw_rad).abs() > 1e-3
    });
    let turned: f64 = spun
        .map(|w| rosetta_common::wrap_angle_rad(w[1].yaw_rad - w[0].yaw_rad).abs())
        .sum();
    assert!(turned > 6.0, "turned in place by {turned:.2} rad only");
    assert!(
        out.trajectory
            .iter()
            .any(|p| p.y_m > 1.2 && (p.x_m - 1.0).abs() < 0.3),
        "it did not pass through the doorway"
    );
}

/// The doorway stays blocked: after the one turn in place, the step fails
/// with the reason, in bounded time.
#[test]
fn a_doorway_that_stays_blocked_fails_after_one_turn() {
    let mut sim = ClosedLoop::new(doorway_with_cart(None), 6);
    let out = sim.run(
        go_to("behind"),
        vec![place("behind", 2.2, -1.0, 0.0)],
        120.0,
    );
    assert_eq!(out.task, TaskState::Failed, "{}", out.message);
    assert!(
        out.message.contains("no path") && out.message.contains("after a full turn in place"),
        "{}",
        out.message
    );
    assert!(out.sim_time_s < 40.0, "took {:.1} s", out.sim_time_s);
    assert_eq!(out.collisions, 0);
}

/// A person walks into the robot's way and stays there: the robot stops
/// short of them or goes round, never touches them, and arrives. Checked at
/// every physics step against the person's true position.
#[test]
fn a_person_stepping_into_the_way_is_avoided() {
    let mut person = obstacle("person", [1.6, -2.2], [0.4, 0.4]);
    person.path = vec![
        Waypoint {
            t_s: 0.5,
            center_xy_m: [1.6, -2.2],
        },
        Waypoint {
            t_s: 2.5,
            center_xy_m: [1.6, 0.0],
        },
    ];
    let mut sim = ClosedLoop::new(room_with(vec![person]), 7);
    sim.start(go_to("far"), vec![place("far", 2.6, 0.0, 0.0)]);
    let mut min_clearance = f64::INFINITY;
    let mut n = 0;
    while sim.running() && sim.world.time_s < 60.0 {
        sim.step();
        min_clearance = min_clearance.min(clearance_m(&sim, 0));
        n += 1;
    }
    let st = sim.status();
    assert_eq!(st.task, TaskState::Succeeded, "{}", st.message);
    assert_eq!(sim.world.collisions, 0);
    assert!(n > 100);
    assert!(
        min_clearance > 0.02,
        "came within {min_clearance:.3} m of the person"
    );
    let end = sim.world.pose;
    assert!((end.x_m - 2.6).hypot(end.y_m) < 0.05, "{end:?}");
}

/// The bin's estimate is 0.25 m off until the robot is nearly there (seen
/// better from near): the drive to it must end within the arm's reach of
/// where it really is, and the place then succeeds. Before, the drive
/// ended at the first estimate and the place failed "out of the arm's
/// reach (0.66 m)".
#[test]
fn a_target_seen_better_on_arrival_is_approached_again_until_it_is_within_reach() {
    let mut scene = rosetta_sim::scene::Scene::default_scene().unwrap();
    scene.robot_start = rosetta_common::Pose2D::default();
    let mut sim = ClosedLoop::new(scene, 5);
    sim.misplaced = Some(("red_bin".into(), [0.0, 0.25, 0.0], 0.6));
    let out = sim.run(carry("red_cube", "red_bin"), vec![], 200.0);
    assert_eq!(out.task, TaskState::Succeeded, "{}", out.message);
    assert_eq!(out.collisions, 0);
    let cube = sim
        .world
        .objects
        .iter()
        .find(|o| o.id == "red_cube")
        .unwrap();
    let bin = sim
        .world
        .objects
        .iter()
        .find(|o| o.id == "red_bin")
        .unwrap();
    assert!(
        (cube.position_m[0] - bin.position_m[0]).hypot(cube.position_m[1] - bin.position_m[1])
            < 0.15,
        "the cube is at {:?}, not in the bin at {:?}",
        cube.position_m,
        bin.position_m
    );
}
