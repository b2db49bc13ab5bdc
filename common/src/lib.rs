//! Shared types of the rosetta stack.
//!
//! Everything that more than one stage needs lives here, and nothing else:
//! the action plan schema ([`plan`]), the world model that perception publishes
//! and the planner grounds against ([`world`]), task status and the sim's
//! ground truth ([`status`]), the robot description with its kinematics and
//! camera model ([`robot`]) and topic names ([`topics`]). Without features
//! it builds without ROS 2 and without rerun; the node shells turn on `ros`
//! (node set-up, JSON topics, time conversions) and `rec` (the rerun
//! recording every node writes to).

pub mod frames;
pub mod goal;
pub mod grid;
pub mod ground;
pub mod plan;
#[cfg(feature = "rec")]
pub mod rec;
pub mod report;
pub mod robot;
#[cfg(feature = "ros")]
pub mod ros;
pub mod status;
pub mod topics;
pub mod trajectory;
pub mod urdf;
pub mod world;

pub use plan::{PlanMessage, PlanOutcome, Skill, ValidPlan};
pub use world::{Color, ObjectKind, ObservedObject, Place, Shape, WorldModel};

/// Wraps an angle to (-pi, pi].
pub fn wrap_angle_rad(a: f64) -> f64 {
    let mut a = a % std::f64::consts::TAU;
    if a > std::f64::consts::PI {
        a -= std::f64::consts::TAU;
    } else if a <= -std::f64::consts::PI {
        a += std::f64::consts::TAU;
    }
    a
}

/// A planar pose (x, y, yaw) of the robot base, in a named frame.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, Default)]
pub struct Pose2D {
    pub x_m: f64,
    pub y_m: f64,
    pub yaw_rad: f64,
}

impl Pose2D {
    pub fn new(x_m: f64, y_m: f64, yaw_rad: f64) -> Self {
        Self { x_m, y_m, yaw_rad }
    }
    pub fn is_finite(&self) -> bool {
        self.x_m.is_finite() && self.y_m.is_finite() && self.yaw_rad.is_finite()
    }
    /// Transforms a point given in this pose's local frame into the parent frame.
    pub fn transform_point(&self, local: [f64; 2]) -> [f64; 2] {
        let (s, c) = self.yaw_rad.sin_cos();
        [
            self.x_m + c * local[0] - s * local[1],
            self.y_m + s * local[0] + c * local[1],
        ]
    }
    /// Expresses a parent-frame point in this pose's local frame.
    pub fn inverse_transform_point(&self, p: [f64; 2]) -> [f64; 2] {
        let (s, c) = self.yaw_rad.sin_cos();
        let dx = p[0] - self.x_m;
        let dy = p[1] - self.y_m;
        [c * dx + s * dy, -s * dx + c * dy]
    }
    /// `self` as `a_from_b` applied to a pose given in `b`: that pose in `a`.
    pub fn compose(&self, pose_in_b: &Pose2D) -> Pose2D {
        let [x_m, y_m] = self.transform_point([pose_in_b.x_m, pose_in_b.y_m]);
        Pose2D::new(x_m, y_m, wrap_angle_rad(self.yaw_rad + pose_in_b.yaw_rad))
    }
    /// `self` as `a_from_b`, inverted: `b_from_a`.
    pub fn inverse(&self) -> Pose2D {
        let [x_m, y_m] = self.inverse_transform_point([0.0, 0.0]);
        Pose2D::new(x_m, y_m, wrap_angle_rad(-self.yaw_rad))
    }
    /// The 3-D isometry `parent_from_base` of this planar pose.
    pub fn to_isometry(&self) -> nalgebra::Isometry3<f64> {
        nalgebra::Isometry3::new(
            nalgebra::Vector3::new(self.x_m, self.y_m, 0.0),
            nalgebra::Vector3::new(0.0, 0.0, self.yaw_rad),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_angle_stays_in_range() {
        for k in -20..20 {
            let a = k as f64 * 0.7;
            let w = wrap_angle_rad(a);
            assert!(w > -std::f64::consts::PI - 1e-12 && w <= std::f64::consts::PI + 1e-12);
            assert!(
                ((a - w) / std::f64::consts::TAU).fract().abs() < 1e-9
                    || ((a - w) / std::f64::consts::TAU).fract().abs() > 1.0 - 1e-9
            );
        }
    }

    #[test]
    fn pose_round_trip() {
        let p = Pose2D::new(1.0, -2.0, 0.7);
        let q = p.transform_point([0.3, 0.4]);
        let back = p.inverse_transform_point(q);
        assert!((back[0] - 0.3).abs() < 1e-12 && (back[1] - 0.4).abs() < 1e-12);
        let iso = p.to_isometry();
        let q3 = iso * nalgebra::Point3::new(0.3, 0.4, 0.0);
        assert!((q3.x - q[0]).abs() < 1e-12 && (q3.y - q[1]).abs() < 1e-12);
    }

    #[test]
    fn a_pose_composed_with_its_inverse_is_the_identity() {
        let a_from_b = Pose2D::new(1.0, -2.0, 2.5);
        let p = Pose2D::new(0.3, 0.4, -3.0);
        let there = a_from_b.compose(&p);
        let back = a_from_b.inverse().compose(&there);
        assert!((back.x_m - p.x_m).abs() < 1e-12 && (back.y_m - p.y_m).abs() < 1e-12);
        assert!(wrap_angle_rad(back.yaw_rad - p.yaw_rad).abs() < 1e-12);
        let q = a_from_b.transform_point([p.x_m, p.y_m]);
        assert!((there.x_m - q[0]).abs() < 1e-12 && (there.y_m - q[1]).abs() < 1e-12);
    }
}
