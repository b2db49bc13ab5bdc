//! The robot description: base, sensors and arm, with the arm's kinematics and
//! the camera model. The sim, perception and control all read this one
//! description, so that their geometry cannot drift apart.
//!
//! Conventions (REP-103): metres, radians, x forward, y left, z up in
//! `base_link`; the camera optical frame has z forward, x right, y down.

use nalgebra::{Isometry3, Matrix3, Point3, Rotation3, Translation3, UnitQuaternion, Vector3};
use serde::{Deserialize, Serialize};

/// How far ahead of the base centre the arm works on objects: where the
/// skill runner stands the robot, and what the planner checks reach against.
pub const NOMINAL_REACH_M: f64 = 0.45;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobotDescription {
    /// Radius of the base's circular footprint.
    pub base_radius_m: f64,
    /// Height of the top of the base (the arm's shoulder sits on it).
    pub base_height_m: f64,
    pub max_linear_speed_m_s: f64,
    pub max_angular_speed_rad_s: f64,
    pub max_linear_accel_m_s2: f64,
    pub max_angular_accel_rad_s2: f64,
    pub camera: CameraDescription,
    pub lidar: LidarDescription,
    pub arm: ArmDescription,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraDescription {
    /// Optical centre in `base_link`.
    pub position_m: [f64; 3],
    /// Downward tilt (positive pitch about `base_link` y, REP-103).
    pub pitch_rad: f64,
    pub width_px: u32,
    pub height_px: u32,
    pub fx_px: f64,
    pub fy_px: f64,
    pub cx_px: f64,
    pub cy_px: f64,
    pub max_range_m: f64,
    pub rate_hz: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LidarDescription {
    pub position_m: [f64; 3],
    pub samples: usize,
    pub range_min_m: f64,
    pub range_max_m: f64,
    pub rate_hz: f64,
}

impl LidarDescription {
    /// Where the lidar is, in the plane, when the base is at `base`: the
    /// pose its scans are taken from.
    pub fn sensor_pose(&self, base: &crate::Pose2D) -> crate::Pose2D {
        let xy = base.transform_point([self.position_m[0], self.position_m[1]]);
        crate::Pose2D::new(xy[0], xy[1], base.yaw_rad)
    }
}

/// A planar arm in the base's x-z plane: shoulder, elbow and wrist pitch
/// joints (positive = raise), then a parallel gripper pointing along the last link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmDescription {
    /// Shoulder joint position in `base_link` (y must be 0).
    pub shoulder_m: [f64; 3],
    pub upper_arm_m: f64,
    pub forearm_m: f64,
    /// Wrist joint to the centre between the fingertips.
    pub tool_m: f64,
    pub joint_names: [String; 3],
    pub lower_rad: [f64; 3],
    pub upper_rad: [f64; 3],
    pub max_joint_speed_rad_s: f64,
    pub max_joint_accel_rad_s2: f64,
    pub gripper_joint: String,
    /// Distance between the fingers when fully open.
    pub gripper_max_opening_m: f64,
    pub gripper_speed_m_s: f64,
}

/// The robot of `launch/robot/rosetta.urdf`, parsed once.
static FROM_URDF: std::sync::LazyLock<Result<RobotDescription, String>> =
    std::sync::LazyLock::new(|| {
        RobotDescription::from_urdf(crate::urdf::ROBOT_URDF).map_err(|e| e.to_string())
    });

impl Default for RobotDescription {
    /// The robot described by the compiled-in URDF (`launch/robot/rosetta.urdf`),
    /// which the sim, the arm's kinematics and Gazebo all read.
    fn default() -> Self {
        match &*FROM_URDF {
            Ok(r) => r.clone(),
            // Unreachable in a tested build: `urdf::tests` parse the same compiled-in file.
            Err(e) => panic!("the compiled-in URDF does not parse: {e}"),
        }
    }
}

impl CameraDescription {
    /// `base_from_optical`: the camera optical frame expressed in `base_link`.
    pub fn base_from_optical(&self) -> Isometry3<f64> {
        // Columns: the optical frame's x, y, z axes written in base_link (level camera).
        let level = Matrix3::from_columns(&[
            Vector3::new(0.0, -1.0, 0.0),
            Vector3::new(0.0, 0.0, -1.0),
            Vector3::new(1.0, 0.0, 0.0),
        ]);
        let level = Rotation3::from_matrix_unchecked(level);
        let tilt = Rotation3::from_axis_angle(&Vector3::y_axis(), self.pitch_rad);
        let rot = UnitQuaternion::from_rotation_matrix(&(tilt * level));
        Isometry3::from_parts(
            Translation3::new(self.position_m[0], self.position_m[1], self.position_m[2]),
            rot,
        )
    }

    /// Back-projects pixel (u, v) with depth (optical z) into the optical frame.
    pub fn back_project(&self, u: f64, v: f64, depth_m: f64) -> Point3<f64> {
        Point3::new(
            (u - self.cx_px) / self.fx_px * depth_m,
            (v - self.cy_px) / self.fy_px * depth_m,
            depth_m,
        )
    }

    /// Projects an optical-frame point to pixel coordinates; `None` behind the camera.
    pub fn project(&self, p: &Point3<f64>) -> Option<[f64; 2]> {
        if p.z <= 1e-6 {
            return None;
        }
        Some([
            self.fx_px * p.x / p.z + self.cx_px,
            self.fy_px * p.y / p.z + self.cy_px,
        ])
    }

    /// The row-major 3x3 intrinsic matrix K, as in sensor_msgs/CameraInfo.
    pub fn k(&self) -> [f64; 9] {
        [
            self.fx_px, 0.0, self.cx_px, 0.0, self.fy_px, self.cy_px, 0.0, 0.0, 1.0,
        ]
    }
}

/// Joint angles of the arm: shoulder, elbow, wrist.
pub type ArmJoints = [f64; 3];

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IkError {
    #[error("target ({x_m:.3}, {z_m:.3}) m is out of the arm's reach")]
    OutOfReach { x_m: f64, z_m: f64 },
    #[error("the solution needs joint {joint} at {angle_rad:.2} rad, outside its limits")]
    JointLimit { joint: usize, angle_rad: f64 },
    #[error("target is not finite")]
    NotFinite,
}

impl ArmDescription {
    /// Forward kinematics: the tool centre point in `base_link` (y = 0) and the
    /// tool's pitch (angle of the last link above horizontal).
    pub fn tool_point(&self, q: &ArmJoints) -> ([f64; 3], f64) {
        let a1 = q[0];
        let a2 = a1 + q[1];
        let a3 = a2 + q[2];
        let x = self.shoulder_m[0]
            + self.upper_arm_m * a1.cos()
            + self.forearm_m * a2.cos()
            + self.tool_m * a3.cos();
        let z = self.shoulder_m[2]
            + self.upper_arm_m * a1.sin()
            + self.forearm_m * a2.sin()
            + self.tool_m * a3.sin();
        ([x, 0.0, z], a3)
    }

    /// Inverse kinematics for a top-down grasp: the tool centre at (x, z) in
    /// `base_link`, pointing straight down, elbow up.
    pub fn solve_top_down(&self, x_m: f64, z_m: f64) -> Result<ArmJoints, IkError> {
        if !x_m.is_finite() || !z_m.is_finite() {
            return Err(IkError::NotFinite);
        }
        // The wrist sits tool_m above the tool centre.
        let dx = x_m - self.shoulder_m[0];
        let dz = z_m + self.tool_m - self.shoulder_m[2];
        let (l1, l2) = (self.upper_arm_m, self.forearm_m);
        let d2 = dx * dx + dz * dz;
        let c2 = (d2 - l1 * l1 - l2 * l2) / (2.0 * l1 * l2);
        if !(-1.0..=1.0).contains(&c2) {
            return Err(IkError::OutOfReach { x_m, z_m });
        }
        let q2 = -c2.acos();
        let q1 = dz.atan2(dx) - (l2 * q2.sin()).atan2(l1 + l2 * q2.cos());
        let q3 = -std::f64::consts::FRAC_PI_2 - q1 - q2;
        let q = [q1, q2, q3];
        for (i, a) in q.iter().enumerate() {
            if *a < self.lower_rad[i] - 1e-9 || *a > self.upper_rad[i] + 1e-9 {
                return Err(IkError::JointLimit {
                    joint: i,
                    angle_rad: *a,
                });
            }
        }
        Ok(q)
    }

    /// The arm folded for driving: tool high and close to the base, pointing down.
    pub fn stow(&self) -> ArmJoints {
        self.solve_top_down(self.shoulder_m[0] + 0.25, self.shoulder_m[2] + 0.30)
            .unwrap_or([1.2, -2.2, -0.5])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ik_round_trips_over_the_workspace() {
        let arm = RobotDescription::default().arm;
        let mut solved = 0;
        for i in 0..30 {
            for j in 0..30 {
                let x = 0.25 + 0.02 * i as f64;
                let z = 0.0 + 0.03 * j as f64;
                if let Ok(q) = arm.solve_top_down(x, z) {
                    solved += 1;
                    let (p, pitch) = arm.tool_point(&q);
                    assert!(
                        (p[0] - x).abs() < 1e-9 && (p[2] - z).abs() < 1e-9,
                        "fk(ik) mismatch"
                    );
                    assert!((pitch + std::f64::consts::FRAC_PI_2).abs() < 1e-9);
                }
            }
        }
        assert!(solved > 300, "IK solved only {solved} of 900 targets");
        assert!(arm.solve_top_down(3.0, 0.4).is_err());
        assert_eq!(arm.solve_top_down(f64::NAN, 0.4), Err(IkError::NotFinite));
    }

    /// Property: for any elbow-up joint vector within the limits whose tool
    /// points straight down, IK of its tool point gives that vector back, and
    /// FK of the answer is the point; any target IK refuses is truly out of
    /// reach or needs a joint beyond its limits.
    #[test]
    fn ik_inverts_fk_for_random_arm_poses() {
        use rand::{Rng, SeedableRng};
        let arm = RobotDescription::default().arm;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut checked = 0;
        for _ in 0..20_000 {
            let q1 = rng.gen_range(arm.lower_rad[0]..=arm.upper_rad[0]);
            let q2 = rng.gen_range(arm.lower_rad[1]..=arm.upper_rad[1].min(-1e-3));
            let q3 = -std::f64::consts::FRAC_PI_2 - q1 - q2;
            if q3 < arm.lower_rad[2] || q3 > arm.upper_rad[2] {
                continue;
            }
            let q = [q1, q2, q3];
            let (p, pitch) = arm.tool_point(&q);
            assert!((pitch + std::f64::consts::FRAC_PI_2).abs() < 1e-9);
            let back = arm
                .solve_top_down(p[0], p[2])
                .unwrap_or_else(|e| panic!("IK refused the FK of {q:?}: {e}"));
            for k in 0..3 {
                assert!((back[k] - q[k]).abs() < 1e-6, "{q:?} came back as {back:?}");
            }
            let (p2, _) = arm.tool_point(&back);
            assert!((p2[0] - p[0]).abs() < 1e-9 && (p2[2] - p[2]).abs() < 1e-9);
            checked += 1;
        }
        assert!(checked > 2_000, "only {checked} random poses were valid");
        let (l1, l2) = (arm.upper_arm_m, arm.forearm_m);
        for _ in 0..20_000 {
            let (x, z) = (rng.gen_range(-1.0..1.5), rng.gen_range(-0.5..1.5));
            match arm.solve_top_down(x, z) {
                Ok(q) => {
                    let (p, _) = arm.tool_point(&q);
                    assert!((p[0] - x).abs() < 1e-9 && (p[2] - z).abs() < 1e-9);
                }
                Err(IkError::OutOfReach { .. }) => {
                    let d = (x - arm.shoulder_m[0]).hypot(z + arm.tool_m - arm.shoulder_m[2]);
                    assert!(
                        d > l1 + l2 - 1e-9 || d < (l1 - l2).abs() + 1e-9,
                        "({x}, {z})"
                    );
                }
                Err(IkError::JointLimit { joint, angle_rad }) => {
                    assert!(angle_rad < arm.lower_rad[joint] || angle_rad > arm.upper_rad[joint]);
                }
                Err(IkError::NotFinite) => panic!("finite input"),
            }
        }
    }

    #[test]
    fn pick_and_place_heights_are_reachable() {
        let arm = RobotDescription::default().arm;
        // A 5 cm cube on a 0.4 m table, 0.45 m ahead of the base centre.
        assert!(arm.solve_top_down(0.45, 0.425).is_ok());
        // Above a 0.25 m bin.
        assert!(arm.solve_top_down(0.45, 0.40).is_ok());
        let (p, _) = arm.tool_point(&arm.stow());
        assert!(p[2] > 0.5);
    }

    /// Pixels back-projected through the intrinsics, the camera's mounting
    /// and the robot's pose, against values worked out by hand.
    #[test]
    fn back_projection_into_the_map_matches_hand_computed_points() {
        let cam = CameraDescription {
            position_m: [0.1, 0.0, 1.0],
            pitch_rad: 0.0,
            width_px: 640,
            height_px: 480,
            fx_px: 500.0,
            fy_px: 500.0,
            cx_px: 320.0,
            cy_px: 240.0,
            max_range_m: 10.0,
            rate_hz: 5.0,
        };
        let close = |p: Point3<f64>, want: [f64; 3]| {
            assert!(
                (p.x - want[0]).abs() < 1e-9
                    && (p.y - want[1]).abs() < 1e-9
                    && (p.z - want[2]).abs() < 1e-9,
                "{p:?} != {want:?}"
            );
        };
        // Level camera: the principal point 2 m ahead; 100 px right is
        // 100/500 * 2 = 0.4 m to the right (-y); 100 px down is 0.4 m lower.
        let base_from_optical = cam.base_from_optical();
        close(
            base_from_optical * cam.back_project(320.0, 240.0, 2.0),
            [2.1, 0.0, 1.0],
        );
        close(
            base_from_optical * cam.back_project(420.0, 240.0, 2.0),
            [2.1, -0.4, 1.0],
        );
        close(
            base_from_optical * cam.back_project(320.0, 340.0, 2.0),
            [2.1, 0.0, 0.6],
        );
        // Tilted down 0.5 rad: the principal ray at depth 2 ends at
        // (0.1 + 2 cos 0.5, 0, 1 - 2 sin 0.5) = (1.855165, 0, 0.041149).
        let tilted = CameraDescription {
            pitch_rad: 0.5,
            ..cam.clone()
        };
        let p = tilted.base_from_optical() * tilted.back_project(320.0, 240.0, 2.0);
        let want = [0.1 + 2.0 * 0.5f64.cos(), 0.0, 1.0 - 2.0 * 0.5f64.sin()];
        close(p, want);
        assert!((want[0] - 1.855165).abs() < 1e-6 && (want[2] - 0.041149).abs() < 1e-6);
        // The robot at (1, 2) facing +y: its forward is the map's +y, so the
        // point lands at (1 - 0, 2 + 1.855165, 0.041149).
        let map_from_base = crate::Pose2D::new(1.0, 2.0, std::f64::consts::FRAC_PI_2).to_isometry();
        close(map_from_base * p, [1.0, 2.0 + want[0], want[2]]);
    }

    #[test]
    fn camera_projection_round_trips_and_looks_forward() {
        let cam = RobotDescription::default().camera;
        let p = cam.back_project(100.0, 400.0, 2.0);
        let uv = cam.project(&p).unwrap();
        assert!((uv[0] - 100.0).abs() < 1e-9 && (uv[1] - 400.0).abs() < 1e-9);
        // The optical axis points forward and down in base_link.
        let base_from_optical = cam.base_from_optical();
        let axis = base_from_optical.rotation * Vector3::z();
        assert!(axis.x > 0.7 && axis.z < -0.3 && axis.y.abs() < 1e-12);
        // Image right (+x optical) is base -y.
        let right = base_from_optical.rotation * Vector3::x();
        assert!((right.y + 1.0).abs() < 1e-12);
    }
}
