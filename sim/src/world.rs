//! The world's state and its kinematic step. Pure: no ROS, no clock, no I/O.

use rosetta_common::robot::{ArmJoints, RobotDescription};
use rosetta_common::status::{GroundTruth, GroundTruthObject};
use rosetta_common::trajectory::{sample, TrajectoryPoint};
use rosetta_common::{wrap_angle_rad, Color, ObjectKind, Pose2D, Shape};

use crate::geometry::Aabb;
use crate::scene::Scene;

/// A velocity command older than this stops the base (the sim's own watchdog).
pub const CMD_TIMEOUT_S: f64 = 0.5;
/// Wall thickness of the open-topped bins.
pub const BIN_WALL_M: f64 = 0.02;
/// How far off the gripper's closing line an object may be and still be grasped.
pub const GRASP_TOLERANCE_M: f64 = 0.03;

#[derive(Debug, Clone, PartialEq)]
pub struct ObjectState {
    pub id: String,
    pub kind: ObjectKind,
    pub color: Color,
    pub position_m: [f64; 3],
    pub size_m: [f64; 3],
    pub held: bool,
    pub in_container: Option<String>,
    /// Its paint, where the scene gives one; else its colour's prototype.
    pub rgb: Option<[u8; 3]>,
}

impl ObjectState {
    pub fn aabb(&self) -> Aabb {
        Aabb::from_center_size(self.position_m, self.size_m)
    }

    /// The colour it is painted.
    pub fn rgb(&self) -> [u8; 3] {
        self.rgb.unwrap_or(self.color.rgb())
    }
}

/// A coloured, axis-aligned box that the camera sees and maybe the base bumps into.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VisualBox {
    pub aabb: Aabb,
    /// What is drawn: the box, or the sphere or upright cylinder inscribed in it.
    pub shape: Shape,
    pub rgb: [u8; 3],
    pub obstacle: bool,
    /// Index in [`World::objects`] of the object this box belongs to; `None`
    /// for walls and furniture. Renders label their pixels with it.
    pub object: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct World {
    pub scene: Scene,
    pub robot: RobotDescription,
    pub time_s: f64,
    /// Base pose in `map`.
    pub pose: Pose2D,
    pub linear_m_s: f64,
    pub angular_rad_s: f64,
    cmd: (f64, f64),
    cmd_time_s: f64,
    pub arm_q: ArmJoints,
    arm_target: ArmJoints,
    /// A trajectory being followed: when it started, from where, and its points.
    arm_trajectory: Option<(f64, Vec<f64>, Vec<TrajectoryPoint>)>,
    pub gripper_opening_m: f64,
    gripper_target_m: f64,
    pub objects: Vec<ObjectState>,
    /// Boxes of the room: walls, then the scene's furniture in order.
    statics: Vec<VisualBox>,
    /// Steps in which the base was blocked.
    pub collisions: u64,
    /// Fault injection for tests: this many grasps slip (the fingers close
    /// on nothing), as a real gripper's sometimes do.
    pub slip_grasps: u32,
    /// A slip is in progress: the fingers pass the object until they open again.
    slipping: bool,
    /// Fault injection for tests: this many objects released into a
    /// container bounce out and land on the floor beside it (the place step
    /// itself succeeds; only the goal does not hold).
    pub bounce_releases: u32,
    /// The base driver's e-stop line: while engaged, the base ignores
    /// commands and brakes at these decelerations (m/s², rad/s²).
    estop_decel: Option<(f64, f64)>,
}

impl World {
    pub fn new(scene: Scene, robot: RobotDescription) -> Self {
        let statics = static_boxes(&scene);
        let objects = scene
            .objects
            .iter()
            .map(|o| ObjectState {
                id: o.id.clone(),
                kind: o.kind,
                color: o.color,
                position_m: o.position_m,
                size_m: o.size_m,
                held: false,
                in_container: None,
                rgb: o.rgb,
            })
            .collect();
        let stow = robot.arm.stow();
        let open = robot.arm.gripper_max_opening_m;
        Self {
            pose: scene.robot_start,
            scene,
            time_s: 0.0,
            linear_m_s: 0.0,
            angular_rad_s: 0.0,
            cmd: (0.0, 0.0),
            cmd_time_s: f64::NEG_INFINITY,
            arm_q: stow,
            arm_target: stow,
            arm_trajectory: None,
            gripper_opening_m: open,
            gripper_target_m: open,
            objects,
            statics,
            collisions: 0,
            slip_grasps: 0,
            slipping: false,
            bounce_releases: 0,
            estop_decel: None,
            robot,
        }
    }

    /// Engages the base driver's e-stop (braking at `decel`: m/s², rad/s²,
    /// as a robot's motor drivers do when the e-stop line opens), or
    /// releases it with `None`. Released, the base stays still until commanded.
    pub fn set_estop(&mut self, decel: Option<(f64, f64)>) {
        if decel.is_some() {
            self.cmd = (0.0, 0.0);
        }
        self.estop_decel = decel;
    }

    /// A base velocity command (forward m/s, yaw rate rad/s). Non-finite values stop the base.
    pub fn command_velocity(&mut self, linear_m_s: f64, angular_rad_s: f64) -> Result<(), String> {
        if !linear_m_s.is_finite() || !angular_rad_s.is_finite() {
            self.cmd = (0.0, 0.0);
            self.cmd_time_s = self.time_s;
            return Err(format!(
                "non-finite velocity command ({linear_m_s}, {angular_rad_s}); stopping"
            ));
        }
        if self.estop_decel.is_some() {
            // The e-stop line is open: the drivers take no commands.
            return Ok(());
        }
        let r = &self.robot;
        self.cmd = (
            linear_m_s.clamp(-r.max_linear_speed_m_s, r.max_linear_speed_m_s),
            angular_rad_s.clamp(-r.max_angular_speed_rad_s, r.max_angular_speed_rad_s),
        );
        self.cmd_time_s = self.time_s;
        Ok(())
    }

    /// Sets arm joint targets by name; unknown names and non-finite values are rejected.
    pub fn command_joints(&mut self, names: &[String], positions: &[f64]) -> Result<(), String> {
        if names.len() != positions.len() {
            return Err(format!(
                "{} joint names but {} positions",
                names.len(),
                positions.len()
            ));
        }
        let mut arm = self.arm_target;
        let mut gripper = self.gripper_target_m;
        let mut arm_named = false;
        for (n, p) in names.iter().zip(positions) {
            if !p.is_finite() {
                return Err(format!("joint {n}: non-finite target {p}"));
            }
            if let Some(i) = self.robot.arm.joint_names.iter().position(|j| j == n) {
                arm[i] = p.clamp(self.robot.arm.lower_rad[i], self.robot.arm.upper_rad[i]);
                arm_named = true;
            } else if *n == self.robot.arm.gripper_joint {
                gripper = p.clamp(0.0, self.robot.arm.gripper_max_opening_m);
            } else {
                return Err(format!("unknown joint {n}"));
            }
        }
        self.arm_target = arm;
        self.gripper_target_m = gripper;
        if arm_named {
            // A plain target replaces any trajectory in progress.
            self.arm_trajectory = None;
        }
        Ok(())
    }

    /// Follows a timed arm trajectory from now on (the arm's three joints, in
    /// any order; other names, non-finite values or time going backwards are
    /// rejected). Positions are clamped to the joint limits.
    pub fn command_trajectory(
        &mut self,
        names: &[String],
        points: &[TrajectoryPoint],
    ) -> Result<(), String> {
        let arm = &self.robot.arm;
        let order: Vec<usize> = arm
            .joint_names
            .iter()
            .map(|j| {
                names
                    .iter()
                    .position(|n| n == j)
                    .ok_or_else(|| format!("the trajectory lacks joint {j}"))
            })
            .collect::<Result<_, _>>()?;
        if names.len() != 3 {
            return Err(format!("{} joint names, expected the arm's 3", names.len()));
        }
        let mut last_t = 0.0;
        let mut out = Vec::with_capacity(points.len());
        for p in points {
            if p.positions.len() != names.len() {
                return Err("a point's positions do not match the joint names".into());
            }
            if !p.time_from_start_s.is_finite() || p.time_from_start_s < last_t {
                return Err("trajectory times must be finite and non-decreasing".into());
            }
            last_t = p.time_from_start_s;
            let mut q = Vec::with_capacity(3);
            for (i, &k) in order.iter().enumerate() {
                let v = p.positions[k];
                if !v.is_finite() {
                    return Err(format!(
                        "joint {}: non-finite position {v}",
                        arm.joint_names[i]
                    ));
                }
                q.push(v.clamp(arm.lower_rad[i], arm.upper_rad[i]));
            }
            out.push(TrajectoryPoint {
                time_from_start_s: p.time_from_start_s,
                positions: q,
                velocities: Vec::new(),
            });
        }
        if out.is_empty() {
            return Err("a trajectory with no points".into());
        }
        self.arm_trajectory = Some((self.time_s, self.arm_target.to_vec(), out));
        Ok(())
    }

    /// The gripper's tool centre point in `map`.
    pub fn tool_point_map(&self) -> [f64; 3] {
        let (p, _) = self.robot.arm.tool_point(&self.arm_q);
        let xy = self.pose.transform_point([p[0], p[1]]);
        [xy[0], xy[1], p[2]]
    }

    pub fn statics(&self) -> &[VisualBox] {
        &self.statics
    }

    /// Furniture with a path goes where its path says it is now.
    fn move_furniture(&mut self) {
        let walls = self.statics.len() - self.scene.furniture.len();
        for (i, f) in self.scene.furniture.iter().enumerate() {
            if let (true, Some(b)) = (f.moves(), self.statics.get_mut(walls + i)) {
                b.aabb = Aabb::from_center_size(f.center_at(self.time_s), f.size_m);
            }
        }
    }

    /// Everything the camera can see this instant.
    pub fn visual_boxes(&self) -> Vec<VisualBox> {
        let mut v = self.statics.clone();
        for (i, o) in self.objects.iter().enumerate() {
            if o.kind.is_container() {
                for part in bin_parts(o) {
                    v.push(VisualBox {
                        aabb: part,
                        shape: Shape::Box,
                        rgb: o.rgb(),
                        obstacle: true,
                        object: Some(i),
                    });
                }
            } else {
                v.push(VisualBox {
                    aabb: o.aabb(),
                    shape: o.kind.shape(),
                    rgb: o.rgb(),
                    obstacle: false,
                    object: Some(i),
                });
            }
        }
        v
    }

    fn base_blocked(&self, x: f64, y: f64) -> bool {
        let r = self.robot.base_radius_m;
        self.statics
            .iter()
            .any(|b| b.obstacle && b.aabb.overlaps_disc(x, y, r))
            || self
                .objects
                .iter()
                .any(|o| o.kind == ObjectKind::Bin && o.aabb().overlaps_disc(x, y, r))
    }

    /// Advances the world by `dt_s`.
    pub fn step(&mut self, dt_s: f64) {
        self.time_s += dt_s;
        self.move_furniture();
        self.step_base(dt_s);
        self.step_arm(dt_s);
        self.step_gripper(dt_s);
        let tool = self.tool_point_map();
        for o in self.objects.iter_mut().filter(|o| o.held) {
            o.position_m = tool;
        }
    }

    fn step_base(&mut self, dt: f64) {
        let r = &self.robot;
        let (v_cmd, w_cmd) =
            if self.estop_decel.is_some() || self.time_s - self.cmd_time_s > CMD_TIMEOUT_S {
                (0.0, 0.0)
            } else {
                self.cmd
            };
        let (a_lin, a_ang) = self
            .estop_decel
            .unwrap_or((r.max_linear_accel_m_s2, r.max_angular_accel_rad_s2));
        let dv = (v_cmd - self.linear_m_s).clamp(-a_lin * dt, a_lin * dt);
        let dw = (w_cmd - self.angular_rad_s).clamp(-a_ang * dt, a_ang * dt);
        self.linear_m_s += dv;
        self.angular_rad_s += dw;
        let mid_yaw = self.pose.yaw_rad + 0.5 * self.angular_rad_s * dt;
        let nx = self.pose.x_m + self.linear_m_s * mid_yaw.cos() * dt;
        let ny = self.pose.y_m + self.linear_m_s * mid_yaw.sin() * dt;
        let nyaw = wrap_angle_rad(self.pose.yaw_rad + self.angular_rad_s * dt);
        if self.linear_m_s.abs() > 1e-9 && self.base_blocked(nx, ny) {
            // Blocked: turning in place is allowed, translating into the obstacle is not.
            self.collisions += 1;
            self.linear_m_s = 0.0;
            self.pose.yaw_rad = nyaw;
        } else {
            self.pose = Pose2D::new(nx, ny, nyaw);
        }
    }

    fn step_arm(&mut self, dt: f64) {
        // A trajectory sets the target point by point, in time; the joints
        // track it at their speed limit (as a position controller would).
        if let Some((t0, start, points)) = &self.arm_trajectory {
            let q = sample(start, points, self.time_s - t0);
            if let [a, b, c] = q.as_slice() {
                self.arm_target = [*a, *b, *c];
            }
            if self.time_s - t0 >= points.last().map_or(0.0, |p| p.time_from_start_s) {
                self.arm_trajectory = None;
            }
        }
        let max = self.robot.arm.max_joint_speed_rad_s * dt;
        for i in 0..3 {
            let d = (self.arm_target[i] - self.arm_q[i]).clamp(-max, max);
            self.arm_q[i] += d;
        }
    }

    fn step_gripper(&mut self, dt: f64) {
        let max = self.robot.arm.gripper_speed_m_s * dt;
        let target = self.gripper_target_m;
        let held = self.objects.iter().position(|o| o.held);
        // The fingers let go once they stand clear of the object, or open
        // all the way (an object as wide as the fingers' reach is held by
        // their squeeze, not by their span).
        let open = self.robot.arm.gripper_max_opening_m;
        let clear = |o: &ObjectState| (o.size_m[1] + 0.005).min(open - 1e-6);
        if target > self.gripper_opening_m + 1e-9 {
            self.slipping = false;
            self.gripper_opening_m += (target - self.gripper_opening_m).min(max);
            if let Some(i) = held {
                if self.gripper_opening_m >= clear(&self.objects[i]) {
                    self.release(i);
                }
            }
            return;
        }
        if let Some(i) = held {
            // Told to open no further than they stand: a squeeze let go.
            if target >= self.gripper_opening_m - 1e-9
                && self.gripper_opening_m >= clear(&self.objects[i])
            {
                self.release(i);
            }
            return; // closed on the object: the fingers cannot close further
        }
        if target >= self.gripper_opening_m - 1e-9 {
            return; // standing still: nothing closes on anything
        }
        let mut next = self.gripper_opening_m - (self.gripper_opening_m - target).min(max);
        // Does closing to `next` touch a graspable object between the fingers?
        let tool = self.tool_point_map();
        let (s, c) = self.pose.yaw_rad.sin_cos();
        let mut grasp = None;
        for (i, o) in self.objects.iter().enumerate() {
            if !o.kind.is_graspable() {
                continue;
            }
            let dx = o.position_m[0] - tool[0];
            let dy = o.position_m[1] - tool[1];
            let along = c * dx + s * dy; // base x: across the fingers' width
            let across = -s * dx + c * dy; // base y: the fingers close along it
            let dz = o.position_m[2] - tool[2];
            let width = o.size_m[1];
            if along.abs() < GRASP_TOLERANCE_M
                && dz.abs() < GRASP_TOLERANCE_M
                // The cube's centre is between the fingers; closing centres it.
                && across.abs() < self.gripper_opening_m / 2.0
                // The fingers close on it from outside, never through it.
                && width <= self.gripper_opening_m
                && next <= width
            {
                grasp = Some(i);
                next = width;
                break;
            }
        }
        if grasp.is_some() && !self.slipping && self.slip_grasps > 0 {
            self.slip_grasps -= 1;
            self.slipping = true;
            tracing::info!(left = self.slip_grasps, "injected fault: the grasp slips");
        }
        if grasp.is_some() && self.slipping {
            grasp = None;
            next = self.gripper_opening_m - (self.gripper_opening_m - target).min(max);
        }
        self.gripper_opening_m = next;
        if let Some(i) = grasp {
            let o = &mut self.objects[i];
            o.held = true;
            o.in_container = None;
        }
    }

    /// Drops a held object onto whatever is below it.
    fn release(&mut self, i: usize) {
        let (x, y) = (self.objects[i].position_m[0], self.objects[i].position_m[1]);
        let half_h = self.objects[i].size_m[2] / 2.0;
        let mut rest_z = half_h; // the floor
        let mut container = None;
        for b in self.objects.iter().filter(|b| b.kind.is_container()) {
            let outer = b.aabb();
            if !outer.contains_xy(x, y) {
                continue;
            }
            let inner = Aabb::from_center_size(
                b.position_m,
                [
                    b.size_m[0] - 2.0 * BIN_WALL_M,
                    b.size_m[1] - 2.0 * BIN_WALL_M,
                    b.size_m[2],
                ],
            );
            if inner.contains_xy(x, y) {
                rest_z = outer.min[2] + BIN_WALL_M + half_h;
                container = Some(b.id.clone());
            } else {
                rest_z = outer.max[2] + half_h; // on the rim
            }
        }
        if container.is_none() {
            for f in self.statics.iter().filter(|f| f.obstacle) {
                if f.aabb.contains_xy(x, y) && f.aabb.max[2] + half_h > rest_z {
                    rest_z = f.aabb.max[2] + half_h;
                }
            }
        }
        if let (Some(c), true) = (&container, self.bounce_releases > 0) {
            self.bounce_releases -= 1;
            // Off the far wall and out to the robot's left, onto the floor
            // beside the bin (where the camera sees it from the place pose).
            let bp = self
                .objects
                .iter()
                .find(|b| &b.id == c)
                .map(|b| b.position_m);
            if let Some(bp) = bp {
                let (s, co) = self.pose.yaw_rad.sin_cos();
                let (ahead, left) = (0.2, 0.3);
                tracing::info!(object = %self.objects[i].id, "injected fault: it bounces out of {c}");
                let o = &mut self.objects[i];
                o.held = false;
                o.position_m = [
                    bp[0] + co * ahead - s * left,
                    bp[1] + s * ahead + co * left,
                    half_h,
                ];
                o.in_container = None;
                return;
            }
        }
        let o = &mut self.objects[i];
        o.held = false;
        o.position_m[2] = rest_z;
        o.in_container = container;
    }

    /// Base pose relative to where it started (what Gazebo's odometry reports).
    pub fn odom_pose(&self) -> Pose2D {
        let start = self.scene.robot_start;
        let p = start.inverse_transform_point([self.pose.x_m, self.pose.y_m]);
        Pose2D::new(
            p[0],
            p[1],
            wrap_angle_rad(self.pose.yaw_rad - start.yaw_rad),
        )
    }

    pub fn ground_truth(&self) -> GroundTruth {
        GroundTruth {
            stamp_s: self.time_s,
            scene: self.scene.name.clone(),
            robot_pose: self.pose,
            objects: self
                .objects
                .iter()
                .map(|o| GroundTruthObject {
                    id: o.id.clone(),
                    kind: o.kind.name().to_string(),
                    color: o.color,
                    position_m: o.position_m,
                    in_container: o.in_container.clone(),
                    held: o.held,
                })
                .collect(),
            collisions: self.collisions,
        }
    }
}

/// The four walls and the furniture.
fn static_boxes(scene: &Scene) -> Vec<VisualBox> {
    let r = &scene.room;
    let (hx, hy, t, h) = (
        r.size_m[0] / 2.0,
        r.size_m[1] / 2.0,
        r.wall_thickness_m,
        r.wall_height_m,
    );
    let wall = |c: [f64; 3], s: [f64; 3]| VisualBox {
        aabb: Aabb::from_center_size(c, s),
        shape: Shape::Box,
        rgb: r.wall_rgb,
        obstacle: true,
        object: None,
    };
    let mut v = vec![
        wall([hx + t / 2.0, 0.0, h / 2.0], [t, 2.0 * (hy + t), h]),
        wall([-hx - t / 2.0, 0.0, h / 2.0], [t, 2.0 * (hy + t), h]),
        wall([0.0, hy + t / 2.0, h / 2.0], [2.0 * hx, t, h]),
        wall([0.0, -hy - t / 2.0, h / 2.0], [2.0 * hx, t, h]),
    ];
    for f in &scene.furniture {
        v.push(VisualBox {
            aabb: Aabb::from_center_size(f.center_m, f.size_m),
            shape: Shape::Box,
            rgb: f.rgb,
            obstacle: f.obstacle,
            object: None,
        });
    }
    v
}

/// An open-topped bin as five thin boxes: floor and four walls.
pub fn bin_parts(b: &ObjectState) -> [Aabb; 5] {
    let o = b.aabb();
    let w = BIN_WALL_M;
    let mk = |min: [f64; 3], max: [f64; 3]| Aabb { min, max };
    [
        mk(o.min, [o.max[0], o.max[1], o.min[2] + w]),
        mk(o.min, [o.min[0] + w, o.max[1], o.max[2]]),
        mk([o.max[0] - w, o.min[1], o.min[2]], o.max),
        mk(o.min, [o.max[0], o.min[1] + w, o.max[2]]),
        mk([o.min[0], o.max[1] - w, o.min[2]], o.max),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> World {
        World::new(Scene::default_scene().unwrap(), RobotDescription::default())
    }

    fn run(w: &mut World, seconds: f64, mut each: impl FnMut(&mut World)) {
        let steps = (seconds / 0.01).round() as usize;
        for _ in 0..steps {
            each(w);
            w.step(0.01);
        }
    }

    #[test]
    fn the_estop_line_brakes_hard_and_holds_until_released() {
        let mut w = world();
        run(&mut w, 1.0, |w| {
            w.command_velocity(0.3, 0.0).unwrap();
        });
        assert!((w.linear_m_s - 0.3).abs() < 1e-9);
        w.set_estop(Some((5.0, 15.0)));
        // 0.3 m/s at 5 m/s² is 60 ms; commands meanwhile change nothing.
        run(&mut w, 0.06, |w| {
            w.command_velocity(0.3, 0.5).unwrap();
        });
        assert!(w.linear_m_s.abs() < 1e-9, "{}", w.linear_m_s);
        let at = w.pose;
        run(&mut w, 0.5, |w| {
            w.command_velocity(0.3, 0.5).unwrap();
        });
        assert_eq!(w.pose, at);
        // Released: nothing moves until a new command, which then works at the usual limits.
        w.set_estop(None);
        run(&mut w, 0.1, |_| {});
        assert_eq!(w.pose, at);
        run(&mut w, 0.1, |w| {
            w.command_velocity(0.3, 0.0).unwrap();
        });
        assert!(
            w.linear_m_s > 0.05 && w.linear_m_s < 0.11,
            "{}",
            w.linear_m_s
        );
    }

    #[test]
    fn the_arm_follows_a_timed_trajectory_and_rejects_bad_ones() {
        let mut w = world();
        let arm = w.robot.arm.clone();
        let from = w.arm_q;
        let to = [0.3, -1.0, -0.8];
        let points = rosetta_common::trajectory::plan_joint_trajectory(
            &from,
            &to,
            arm.max_joint_speed_rad_s,
            arm.max_joint_accel_rad_s2,
            0.05,
        );
        let total = points.last().unwrap().time_from_start_s;
        w.command_trajectory(&arm.joint_names, &points).unwrap();
        // Half way in time, the joints are about half way along the trajectory.
        run(&mut w, total / 2.0, |_| {});
        let want = sample(&from, &points, total / 2.0);
        for i in 0..3 {
            assert!(
                (w.arm_q[i] - want[i]).abs() < 0.05,
                "{:?} vs {want:?}",
                w.arm_q
            );
        }
        run(&mut w, total / 2.0 + 0.2, |_| {});
        for (q, goal) in w.arm_q.iter().zip(to) {
            assert!((q - goal).abs() < 1e-6, "{:?}", w.arm_q);
        }
        // Joint names in another order are mapped; unknown joints and NaN are refused.
        let mut rev = arm.joint_names.to_vec();
        rev.reverse();
        let p = |q: Vec<f64>| TrajectoryPoint {
            time_from_start_s: 0.5,
            positions: q,
            velocities: vec![],
        };
        w.command_trajectory(&rev, &[p(vec![-0.5, -1.0, 0.2])])
            .unwrap();
        run(&mut w, 1.0, |_| {});
        assert!((w.arm_q[0] - 0.2).abs() < 1e-6 && (w.arm_q[2] + 0.5).abs() < 1e-6);
        assert!(w
            .command_trajectory(
                &["elbow".into(), "a".into(), "b".into()],
                &[p(vec![0.0; 3])]
            )
            .is_err());
        assert!(w
            .command_trajectory(&arm.joint_names, &[p(vec![f64::NAN, 0.0, 0.0])])
            .is_err());
        assert!(w.command_trajectory(&arm.joint_names, &[]).is_err());
    }

    #[test]
    fn base_integrates_commands_within_limits() {
        let mut w = world();
        run(&mut w, 2.0, |w| w.command_velocity(10.0, 0.0).unwrap());
        // Limited to 0.5 m/s after a 0.5 s ramp: 0.125 + 1.5 * 0.5 = 0.875 m.
        assert!((w.pose.x_m - 0.875).abs() < 0.02, "x = {}", w.pose.x_m);
        assert!(w.linear_m_s <= 0.5 + 1e-9);
        assert!(w.command_velocity(f64::NAN, 0.0).is_err());
    }

    #[test]
    fn watchdog_stops_a_base_without_fresh_commands() {
        let mut w = world();
        w.command_velocity(0.3, 0.0).unwrap();
        run(&mut w, 3.0, |_| {});
        assert_eq!(w.linear_m_s, 0.0);
        assert!(w.pose.x_m < 0.3);
    }

    #[test]
    fn the_table_stops_the_base() {
        let mut w = world();
        run(&mut w, 8.0, |w| w.command_velocity(0.5, 0.0).unwrap());
        // The table's near edge is at x = 1.3; the base radius is 0.22.
        assert!(w.pose.x_m <= 1.3 - 0.22 + 1e-9, "x = {}", w.pose.x_m);
        assert!(w.collisions > 0);
    }

    fn grasp_red_cube(w: &mut World) {
        // Put the base so that the red cube is 0.45 m straight ahead.
        let cube = w.objects[0].position_m;
        w.pose = Pose2D::new(cube[0] - 0.45, cube[1], 0.0);
        let q = w.robot.arm.solve_top_down(0.45, cube[2]).unwrap();
        let names = w.robot.arm.joint_names.to_vec();
        w.command_joints(&names, &q).unwrap();
        run(w, 4.0, |_| {});
        let g = vec![w.robot.arm.gripper_joint.clone()];
        w.command_joints(&g, &[0.0]).unwrap();
        run(w, 1.5, |_| {});
    }

    #[test]
    fn an_injected_slip_closes_the_gripper_on_nothing_once() {
        let mut w = world();
        w.slip_grasps = 1;
        grasp_red_cube(&mut w);
        assert!(!w.objects[0].held, "the first grasp must slip");
        assert!(
            w.gripper_opening_m < 0.01,
            "closed on nothing: {}",
            w.gripper_opening_m
        );
        assert_eq!(w.slip_grasps, 0);
        // Open and try again: this one holds.
        let g = vec![w.robot.arm.gripper_joint.clone()];
        w.command_joints(&g, &[0.09]).unwrap();
        run(&mut w, 1.5, |_| {});
        grasp_red_cube(&mut w);
        assert!(w.objects[0].held, "the second grasp must hold");
    }

    #[test]
    fn closing_on_a_cube_holds_it_and_opening_over_a_bin_drops_it_in() {
        let mut w = world();
        assert_eq!(w.objects[0].id, "red_cube");
        grasp_red_cube(&mut w);
        assert!(w.objects[0].held, "cube not grasped");
        assert!((w.gripper_opening_m - 0.05).abs() < 1e-6);
        // Lift, drive to the blue bin, open.
        let names = w.robot.arm.joint_names.to_vec();
        let q = w.robot.arm.solve_top_down(0.45, 0.45).unwrap();
        w.command_joints(&names, &q).unwrap();
        run(&mut w, 2.0, |_| {});
        let bin = w
            .objects
            .iter()
            .find(|o| o.id == "blue_bin")
            .unwrap()
            .position_m;
        w.pose = Pose2D::new(bin[0], bin[1] - 0.45, std::f64::consts::FRAC_PI_2);
        run(&mut w, 0.1, |_| {});
        let g = vec![w.robot.arm.gripper_joint.clone()];
        w.command_joints(&g, &[0.09]).unwrap();
        run(&mut w, 1.0, |_| {});
        let cube = &w.objects[0];
        assert!(!cube.held);
        assert_eq!(cube.in_container.as_deref(), Some("blue_bin"));
        assert!((cube.position_m[2] - (BIN_WALL_M + 0.025)).abs() < 1e-9);
    }

    /// A box as wide as the fingers open: held by their squeeze, and let
    /// go when they open all the way.
    #[test]
    fn an_object_as_wide_as_the_fingers_reach_is_let_go_when_they_open_fully() {
        let mut w = world();
        let open = w.robot.arm.gripper_max_opening_m;
        w.objects[0].size_m = [0.05, open, 0.05];
        grasp_red_cube(&mut w);
        assert!(w.objects[0].held, "box not grasped");
        let g = vec![w.robot.arm.gripper_joint.clone()];
        w.command_joints(&g, &[open]).unwrap();
        run(&mut w, 1.0, |_| {});
        assert!(!w.objects[0].held, "the fully open fingers still hold it");
    }

    #[test]
    fn an_off_centre_cube_is_still_grasped() {
        let mut w = world();
        let cube = w.objects[0].position_m;
        // 1.5 cm to the side of the gripper's centre line.
        w.pose = Pose2D::new(cube[0] - 0.45, cube[1] + 0.015, 0.0);
        let q = w.robot.arm.solve_top_down(0.45, cube[2]).unwrap();
        let names = w.robot.arm.joint_names.to_vec();
        w.command_joints(&names, &q).unwrap();
        run(&mut w, 4.0, |_| {});
        let g = vec![w.robot.arm.gripper_joint.clone()];
        w.command_joints(&g, &[0.0]).unwrap();
        run(&mut w, 1.5, |_| {});
        assert!(w.objects[0].held);
    }

    #[test]
    fn closing_on_nothing_closes_fully() {
        let mut w = world();
        let g = vec![w.robot.arm.gripper_joint.clone()];
        w.command_joints(&g, &[0.0]).unwrap();
        run(&mut w, 1.5, |_| {});
        assert!(w.gripper_opening_m < 1e-9);
        assert!(w.objects.iter().all(|o| !o.held));
        assert!(w
            .command_joints(&["elbow_of_doom".to_string()], &[1.0])
            .is_err());
        assert!(w.command_joints(&g, &[f64::INFINITY]).is_err());
    }

    #[test]
    fn same_seed_same_world() {
        let mut a = world();
        let mut b = world();
        for w in [&mut a, &mut b] {
            run(w, 3.0, |w| w.command_velocity(0.4, 0.3).unwrap());
        }
        assert_eq!(a.pose, b.pose);
    }
}
