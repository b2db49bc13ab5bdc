//! Limits that hold whatever the plan says: speed, acceleration, finiteness.

use crate::nav::Twist2D;
use rosetta_common::robot::RobotDescription;

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
