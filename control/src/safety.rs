//! Limits that hold whatever the plan says: speed, acceleration,
//! finiteness, and a geofence.

use crate::nav::Twist2D;
use rosetta_common::robot::RobotDescription;
use rosetta_common::Pose2D;

/// A rectangle (in `odom`) the base's centre must stay inside.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geofence {
    pub min_m: [f64; 2],
    pub max_m: [f64; 2],
}

/// How far ahead the fence looks: a command is judged by where it would
/// take the base within this time.
const FENCE_HORIZON_S: f64 = 0.5;

impl Geofence {
    pub fn contains(&self, p: [f64; 2]) -> bool {
        (self.min_m[0]..=self.max_m[0]).contains(&p[0])
            && (self.min_m[1]..=self.max_m[1]).contains(&p[1])
    }

    /// How far `p` lies outside the fence (0 inside).
    fn outside_by(&self, p: [f64; 2]) -> f64 {
        let dx = (self.min_m[0] - p[0]).max(p[0] - self.max_m[0]).max(0.0);
        let dy = (self.min_m[1] - p[1]).max(p[1] - self.max_m[1]).max(0.0);
        dx.hypot(dy)
    }

    /// Keeps the base inside: a command whose straight-line motion over the
    /// next half second would leave the fence, or go further out when
    /// already outside, loses its linear part. Turning is always allowed, so
    /// that the base can face back in. A non-finite pose stops the base.
    pub fn apply(&self, pose: &Pose2D, cmd: Twist2D) -> Twist2D {
        if !pose.is_finite() {
            return Twist2D::default();
        }
        let ahead = cmd.linear_m_s * FENCE_HORIZON_S;
        let here = [pose.x_m, pose.y_m];
        let there = [
            pose.x_m + ahead * pose.yaw_rad.cos(),
            pose.y_m + ahead * pose.yaw_rad.sin(),
        ];
        let leaves = !self.contains(there) && self.outside_by(there) >= self.outside_by(here);
        if leaves && cmd.linear_m_s != 0.0 {
            Twist2D {
                linear_m_s: 0.0,
                ..cmd
            }
        } else {
            cmd
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SafetyLimits {
    pub max_linear_m_s: f64,
    pub max_angular_rad_s: f64,
    pub max_linear_accel_m_s2: f64,
    pub max_angular_accel_rad_s2: f64,
}

impl SafetyLimits {
    pub fn from_robot(r: &RobotDescription) -> Self {
        Self {
            max_linear_m_s: r.max_linear_speed_m_s,
            max_angular_rad_s: r.max_angular_speed_rad_s,
            max_linear_accel_m_s2: r.max_linear_accel_m_s2,
            max_angular_accel_rad_s2: r.max_angular_accel_rad_s2,
        }
    }

    /// Clamps `desired` to the speed limits and to the acceleration limits
    /// relative to `previous` over `dt_s`. A non-finite command becomes a stop.
    pub fn apply(&self, previous: Twist2D, desired: Twist2D, dt_s: f64) -> Twist2D {
        if !desired.linear_m_s.is_finite() || !desired.angular_rad_s.is_finite() {
            return Twist2D::default();
        }
        let dt = if dt_s.is_finite() && dt_s > 0.0 {
            dt_s.min(0.1)
        } else {
            0.02
        };
        let v = desired
            .linear_m_s
            .clamp(-self.max_linear_m_s, self.max_linear_m_s);
        let w = desired
            .angular_rad_s
            .clamp(-self.max_angular_rad_s, self.max_angular_rad_s);
        let dv = self.max_linear_accel_m_s2 * dt;
        let dw = self.max_angular_accel_rad_s2 * dt;
        let prev_v = if previous.linear_m_s.is_finite() {
            previous.linear_m_s
        } else {
            0.0
        };
        let prev_w = if previous.angular_rad_s.is_finite() {
            previous.angular_rad_s
        } else {
            0.0
        };
        Twist2D {
            linear_m_s: v.clamp(prev_v - dv, prev_v + dv),
            angular_rad_s: w.clamp(prev_w - dw, prev_w + dw),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_holds_the_base_in_and_lets_it_come_back() {
        let fence = Geofence {
            min_m: [-1.0, -1.0],
            max_m: [1.0, 1.0],
        };
        let fwd = Twist2D {
            linear_m_s: 0.5,
            angular_rad_s: 0.2,
        };
        // Inside and heading in: untouched.
        assert_eq!(fence.apply(&Pose2D::new(0.0, 0.0, 0.0), fwd), fwd);
        // Near the edge, heading out: no linear motion, the turn stays.
        let held = fence.apply(&Pose2D::new(0.9, 0.0, 0.0), fwd);
        assert_eq!(held.linear_m_s, 0.0);
        assert_eq!(held.angular_rad_s, 0.2);
        // Outside, heading back in: allowed; heading further out: not.
        let back = fence.apply(&Pose2D::new(1.2, 0.0, std::f64::consts::PI), fwd);
        assert_eq!(back, fwd);
        assert_eq!(
            fence.apply(&Pose2D::new(1.2, 0.0, 0.0), fwd).linear_m_s,
            0.0
        );
        // Reversing out is caught as well.
        let rev = Twist2D {
            linear_m_s: -0.5,
            angular_rad_s: 0.0,
        };
        assert_eq!(
            fence.apply(&Pose2D::new(-0.9, 0.0, 0.0), rev).linear_m_s,
            0.0
        );
        assert_eq!(
            fence.apply(&Pose2D::new(f64::NAN, 0.0, 0.0), fwd),
            Twist2D::default()
        );
    }

    #[test]
    fn limits_hold_for_any_request() {
        let s = SafetyLimits::from_robot(&RobotDescription::default());
        let fast = Twist2D {
            linear_m_s: 100.0,
            angular_rad_s: -100.0,
        };
        let mut prev = Twist2D::default();
        for _ in 0..200 {
            prev = s.apply(prev, fast, 0.02);
            assert!(prev.linear_m_s <= s.max_linear_m_s + 1e-12);
            assert!(prev.angular_rad_s >= -s.max_angular_rad_s - 1e-12);
        }
        assert_eq!(prev.linear_m_s, s.max_linear_m_s);
        let first = s.apply(Twist2D::default(), fast, 0.02);
        assert!((first.linear_m_s - s.max_linear_accel_m_s2 * 0.02).abs() < 1e-12);
        let nan = Twist2D {
            linear_m_s: f64::NAN,
            angular_rad_s: 0.0,
        };
        assert_eq!(s.apply(prev, nan, 0.02), Twist2D::default());
    }
}
