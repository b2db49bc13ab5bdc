//! The skill runner and the simulator in one process, without ROS: the same
//! control core and safety limits as the control node, stepped in lockstep
//! with the sim's world (physics 100 Hz, control 100 Hz, scan 10 Hz). Used by
//! deterministic navigation and manipulation tests and by `control-bench`.
//!
//! The world model the skill runner gets is the sim's truth (objects where they
//! are): these runs measure control, not perception.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rosetta_common::grid::OccupancyGrid;
use rosetta_common::robot::RobotDescription;
use rosetta_common::status::TaskState;
use rosetta_common::trajectory::plan_joint_trajectory;
use rosetta_common::{ObservedObject, Place, Pose2D, Skill, ValidPlan, WorldModel};
use rosetta_control::nav::Twist2D;
use rosetta_control::safety::SafetyLimits;
use rosetta_control::{Inputs, SkillRunner};
use rosetta_sim::render::render_scan;
use rosetta_sim::scene::{Furniture, Scene};
use rosetta_sim::world::World;

pub const PHYSICS_DT_S: f64 = 0.01;
const CONTROL_EVERY: u64 = 1;
const SCAN_EVERY: u64 = 10;

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub task: TaskState,
    pub message: String,
    pub sim_time_s: f64,
    /// Physics steps in which the base was pushing into an obstacle.
    pub collisions: u64,
    /// Every base pose, once per control step.
    pub trajectory: Vec<Pose2D>,
}

pub struct ClosedLoop {
    pub world: World,
    exec: SkillRunner,
    limits: SafetyLimits,
    grid: OccupancyGrid,
    obstacles: Vec<[f64; 2]>,
    rng: ChaCha8Rng,
    last_cmd: Twist2D,
    step: u64,
    command_id: u64,
    places: Vec<Place>,
    last_arm_target: Option<[f64; 3]>,
    pub lidar_noise_m: f64,
    /// Print the pose, the running step and the path once per sim second.
    pub trace: bool,
    /// Wall time spent in the skill runner's ticks so far (seconds).
    pub tick_wall_s: f64,
    /// A perception error to inject: the object's estimate is off by this
    /// offset until the base comes within this distance of the (wrong)
    /// estimate, then it is right, as when an object seen from afar is
    /// placed better from near.
    pub misplaced: Option<(String, [f64; 3], f64)>,
}

impl ClosedLoop {
    /// The scene's robot must start at the map origin, so that `odom` is `map`.
    pub fn new(scene: Scene, seed: u64) -> Self {
        let robot = RobotDescription::default();
        Self {
            world: World::new(scene, robot.clone()),
            exec: SkillRunner::new(robot.clone()),
            limits: SafetyLimits::from_robot(&robot),
            grid: OccupancyGrid::new([0.0, 0.0], [20.0, 20.0], 0.05),
            obstacles: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            last_cmd: Twist2D::default(),
            step: 0,
            command_id: 0,
            places: Vec::new(),
            last_arm_target: None,
            lidar_noise_m: 0.005,
            trace: false,
            tick_wall_s: 0.0,
            misplaced: None,
        }
    }

    /// The objects where they truly are (but for [`Self::misplaced`]), and
    /// the given places.
    pub fn world_model(&mut self, places: Vec<Place>) -> WorldModel {
        let mut w = self.true_world_model(places);
        if let Some((id, off, near_m)) = &self.misplaced {
            let base = self.world.odom_pose();
            if let Some(o) = w.objects.iter_mut().find(|o| &o.id == id) {
                let p = [
                    o.position_m[0] + off[0],
                    o.position_m[1] + off[1],
                    o.position_m[2] + off[2],
                ];
                if (p[0] - base.x_m).hypot(p[1] - base.y_m) > *near_m {
                    o.position_m = p;
                } else {
                    self.misplaced = None;
                }
            }
        }
        w
    }

    fn true_world_model(&self, places: Vec<Place>) -> WorldModel {
        WorldModel {
            stamp_s: self.world.time_s,
            frame_id: "odom".into(),
            places,
            objects: self
                .world
                .objects
                .iter()
                .map(|o| ObservedObject {
                    id: o.id.clone(),
                    kind: o.kind,
                    color: o.color,
                    position_m: o.position_m,
                    last_seen_s: self.world.time_s,
                    observations: 10,
                    position_sigma_m: 0.0,
                    confidence: 1.0,
                    size_m: [0.0; 3],
                })
                .collect(),
        }
    }

    /// Runs `plan` until the skill runner finishes or `timeout_s` of sim time pass.
    pub fn run(&mut self, plan: Vec<Skill>, places: Vec<Place>, timeout_s: f64) -> RunOutcome {
        let start_s = self.world.time_s;
        let collisions_before = self.world.collisions;
        self.start(plan, places);
        let mut trajectory = Vec::new();
        while self.world.time_s - start_s < timeout_s {
            match self.step() {
                Some(pose) => trajectory.push(pose),
                None if self.exec.task() == TaskState::Running => {}
                None => break,
            }
        }
        self.finish(start_s, collisions_before, trajectory)
    }

    /// Starts a plan; then call [`Self::step`] until it returns `None` with the task over.
    /// The plans of tests and benches are written to pass the world-free
    /// checks ([`ValidPlan`]); one that does not is a bug of the test.
    pub fn start(&mut self, plan: Vec<Skill>, places: Vec<Place>) {
        self.command_id += 1;
        self.places = places;
        let plan = ValidPlan::new(plan).expect("a test plan passes the world-free checks");
        self.exec.start(self.command_id, plan, self.world.time_s);
    }

    /// The skill runner's status: the task, every step, the message.
    pub fn status(&self) -> rosetta_common::status::TaskStatus {
        self.exec.status()
    }

    /// The occupancy grid built from the scans so far, as perception and
    /// control build theirs (`common::grid`).
    pub fn grid(&self) -> &OccupancyGrid {
        &self.grid
    }

    /// The path the skill runner follows now (odom frame).
    pub fn planned_path(&self) -> &[[f64; 2]] {
        self.exec.current_path()
    }

    /// Whether the skill runner still runs the plan.
    pub fn running(&self) -> bool {
        self.exec.task() == TaskState::Running
    }

    /// One physics step, with the scan and the skill runner's tick when they are
    /// due. Returns the pose the skill runner was given, when it ticked.
    pub fn step(&mut self) -> Option<Pose2D> {
        if !self.running() {
            return None;
        }
        let lidar = &self.world.robot.lidar;
        let mut ticked = None;
        if self.step.is_multiple_of(SCAN_EVERY) {
            let scan = render_scan(&self.world, lidar, self.lidar_noise_m, &mut self.rng);
            let sensor = lidar.sensor_pose(&self.world.odom_pose());
            let view = scan.view(lidar);
            self.grid.integrate_scan(&sensor, &view);
            self.obstacles = view.hit_points(&sensor);
        }
        if self.step.is_multiple_of(CONTROL_EVERY) {
            let world_model = self.world_model(self.places.clone());
            let pose = self.world.odom_pose();
            ticked = Some(pose);
            if self.trace && self.step.is_multiple_of(100) {
                self.print_trace(&pose);
            }
            let t0 = std::time::Instant::now();
            let out = self.exec.tick(&Inputs {
                time_s: self.world.time_s,
                pose,
                arm_q: Some(self.world.arm_q),
                gripper_m: Some(self.world.gripper_opening_m),
                world: &world_model,
                grid: Some(&self.grid),
                obstacles_m: &self.obstacles,
            });
            self.tick_wall_s += t0.elapsed().as_secs_f64();
            let arm = &self.world.robot.arm;
            let (joints, gripper) = (arm.joint_names.clone(), arm.gripper_joint.clone());
            if let Some(want) = out.cmd_vel {
                let safe =
                    self.limits
                        .apply(self.last_cmd, want, PHYSICS_DT_S * CONTROL_EVERY as f64);
                self.last_cmd = safe;
                if let Err(e) = self
                    .world
                    .command_velocity(safe.linear_m_s, safe.angular_rad_s)
                {
                    tracing::warn!(error = %e, "the sim refused the velocity command");
                }
            }
            if let Some(q) = out.arm_target.filter(|q| Some(*q) != self.last_arm_target) {
                // As the node does: a timed trajectory within the joint limits.
                let arm = &self.world.robot.arm;
                let points = plan_joint_trajectory(
                    &self.world.arm_q,
                    &q,
                    arm.max_joint_speed_rad_s,
                    arm.max_joint_accel_rad_s2,
                    0.05,
                );
                if let Err(e) = self.world.command_trajectory(&joints, &points) {
                    tracing::warn!(error = %e, "the sim refused the arm trajectory");
                }
                self.last_arm_target = Some(q);
            }
            if let Some(g) = out.gripper_target_m {
                if let Err(e) = self.world.command_joints(&[gripper], &[g]) {
                    tracing::warn!(error = %e, "the sim refused the gripper command");
                }
            }
        }
        self.world.step(PHYSICS_DT_S);
        self.step += 1;
        ticked
    }

    fn print_trace(&self, pose: &Pose2D) {
        let st = self.exec.status();
        let running = st
            .steps
            .iter()
            .find(|s| s.state == rosetta_common::status::StepState::Running)
            .map(|s| s.skill.describe());
        eprintln!(
            "t={:6.2} pose=({:.2}, {:.2}, {:.2}) step={running:?} path={:?}",
            self.world.time_s,
            pose.x_m,
            pose.y_m,
            pose.yaw_rad,
            self.exec
                .current_path()
                .iter()
                .map(|p| format!("({:.2},{:.2})", p[0], p[1]))
                .collect::<Vec<_>>()
        );
    }

    fn finish(
        &mut self,
        start_s: f64,
        collisions_before: u64,
        trajectory: Vec<Pose2D>,
    ) -> RunOutcome {
        // Leave the base stopped, as the node does.
        self.last_cmd = Twist2D::default();
        if let Err(e) = self.world.command_velocity(0.0, 0.0) {
            tracing::warn!(error = %e, "the sim refused the stop");
        }
        let status = self.exec.status();
        RunOutcome {
            task: status.task,
            message: status.message,
            sim_time_s: self.world.time_s - start_s,
            collisions: self.world.collisions - collisions_before,
            trajectory,
        }
    }
}

/// The plan that carries `object` into `bin`: go, pick, go, place.
pub fn carry(object: &str, bin: &str) -> Vec<Skill> {
    vec![
        Skill::NavigateTo {
            target: object.into(),
        },
        Skill::Pick {
            object: object.into(),
        },
        Skill::NavigateTo { target: bin.into() },
        Skill::Place {
            object: object.into(),
            target: bin.into(),
        },
    ]
}

/// An obstacle box standing on the floor, as furniture.
pub fn obstacle(id: &str, center_xy: [f64; 2], size_xy: [f64; 2]) -> Furniture {
    Furniture {
        id: id.into(),
        center_m: [center_xy[0], center_xy[1], 0.3],
        size_m: [size_xy[0], size_xy[1], 0.6],
        rgb: [90, 90, 160],
        obstacle: true,
        path: Vec::new(),
    }
}

/// The default scene's room, emptied, with these obstacles.
pub fn room_with(obstacles: Vec<Furniture>) -> Scene {
    let mut scene = match Scene::default_scene() {
        Ok(s) => s,
        Err(e) => panic!("the built-in scene must parse: {e}"),
    };
    scene.name = "obstacles".into();
    scene.furniture = obstacles;
    scene.objects.clear();
    scene.robot_start = Pose2D::default();
    scene
}

/// A named place at `x, y`, facing `yaw`.
pub fn place(id: &str, x_m: f64, y_m: f64, yaw_rad: f64) -> Place {
    Place {
        id: id.into(),
        description: String::new(),
        pose: Pose2D::new(x_m, y_m, yaw_rad),
    }
}

/// A random cluttered room: `n` boxes (0.2 to 0.6 m) that keep the start free.
pub fn cluttered_room(n: usize, rng: &mut impl Rng) -> Scene {
    let mut boxes: Vec<Furniture> = Vec::new();
    while boxes.len() < n {
        let size: [f64; 2] = [rng.gen_range(0.2..0.6), rng.gen_range(0.2..0.6)];
        let c: [f64; 2] = [rng.gen_range(-2.5..2.5), rng.gen_range(-2.5..2.5)];
        // Keep 0.6 m around the start free, and 0.55 m between boxes (a way through).
        let near_start = c[0].abs() < size[0] / 2.0 + 0.6 && c[1].abs() < size[1] / 2.0 + 0.6;
        let crowded = boxes.iter().any(|b| {
            (b.center_m[0] - c[0]).abs() < (b.size_m[0] + size[0]) / 2.0 + 0.55
                && (b.center_m[1] - c[1]).abs() < (b.size_m[1] + size[1]) / 2.0 + 0.55
        });
        if !near_start && !crowded {
            boxes.push(obstacle(&format!("box{}", boxes.len()), c, size));
        }
    }
    room_with(boxes)
}

/// Whether the robot's footprint (radius `r`) fits at `p` in `scene`: clear
/// of the walls and of every obstacle by `margin_m`.
pub fn footprint_fits(scene: &Scene, p: [f64; 2], r: f64, margin_m: f64) -> bool {
    let half = [scene.room.size_m[0] / 2.0, scene.room.size_m[1] / 2.0];
    if p[0].abs() > half[0] - r - margin_m || p[1].abs() > half[1] - r - margin_m {
        return false;
    }
    scene.furniture.iter().filter(|f| f.obstacle).all(|f| {
        let dx = ((p[0] - f.center_m[0]).abs() - f.size_m[0] / 2.0).max(0.0);
        let dy = ((p[1] - f.center_m[1]).abs() - f.size_m[1] / 2.0).max(0.0);
        dx.hypot(dy) > r + margin_m
    })
}

/// The true map of a scene at the lidar's height: walls and obstacle
/// boxes, rasterised conservatively (a cell is occupied when any part of it
/// lies in a wall or box, as a map at this resolution must mark it).
pub fn true_grid(scene: &Scene) -> OccupancyGrid {
    let mut g = OccupancyGrid::new([0.0, 0.0], [20.0, 20.0], 0.05);
    let half = [scene.room.size_m[0] / 2.0, scene.room.size_m[1] / 2.0];
    let r = g.resolution_m / 2.0;
    for cy in 0..g.height {
        for cx in 0..g.width {
            let p = g.center_of((cx, cy));
            let wall = p[0].abs() + r > half[0] || p[1].abs() + r > half[1];
            let boxed = scene.furniture.iter().filter(|f| f.obstacle).any(|f| {
                (p[0] - f.center_m[0]).abs() < f.size_m[0] / 2.0 + r
                    && (p[1] - f.center_m[1]).abs() < f.size_m[1] / 2.0 + r
            });
            if wall || boxed {
                g.set_occupied((cx, cy));
            }
        }
    }
    g
}
