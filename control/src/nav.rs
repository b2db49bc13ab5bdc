//! Go-to-pose: turn towards the goal, drive, then face a point.

use rosetta_common::{wrap_angle_rad, Pose2D};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NavParams {
    pub position_tolerance_m: f64,
    /// Once within tolerance, drive again only beyond this (hysteresis).
    pub position_release_m: f64,
    pub heading_tolerance_rad: f64,
    pub max_linear_m_s: f64,
    pub max_angular_rad_s: f64,
    pub decel_m_s2: f64,
    pub k_linear: f64,
    pub k_angular: f64,
    /// Turn in place while the heading error is above this.
    pub turn_in_place_rad: f64,
}

impl Default for NavParams {
    fn default() -> Self {
        Self {
            position_tolerance_m: 0.015,
            position_release_m: 0.05,
            heading_tolerance_rad: 0.008,
            max_linear_m_s: 0.4,
            max_angular_rad_s: 1.0,
            decel_m_s2: 0.6,
            k_linear: 1.2,
            k_angular: 2.5,
            turn_in_place_rad: 0.35,
        }
    }
}

/// Velocity command (forward m/s, yaw rate rad/s).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Twist2D {
    pub linear_m_s: f64,
    pub angular_rad_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NavOutcome {
    Moving(Twist2D),
    Arrived,
}

/// Turns to face `point`; `Arrived` once within the heading tolerance.
pub fn face(pose: &Pose2D, point: [f64; 2], p: &NavParams) -> NavOutcome {
    let desired = (point[1] - pose.y_m).atan2(point[0] - pose.x_m);
    let e = wrap_angle_rad(desired - pose.yaw_rad);
    if e.abs() <= p.heading_tolerance_rad {
        return NavOutcome::Arrived;
    }
    let mut w = (p.k_angular * e).clamp(-p.max_angular_rad_s, p.max_angular_rad_s);
    if w.abs() < 0.06 {
        w = 0.06 * e.signum();
    }
    NavOutcome::Moving(Twist2D {
        linear_m_s: 0.0,
        angular_rad_s: w,
    })
}

/// One control step towards `goal`, then facing `look_at`. `at_goal` carries the
/// position hysteresis between calls.
pub fn drive_to(
    pose: &Pose2D,
    goal: [f64; 2],
    look_at: [f64; 2],
    at_goal: &mut bool,
    p: &NavParams,
) -> NavOutcome {
    let dx = goal[0] - pose.x_m;
    let dy = goal[1] - pose.y_m;
    let dist = dx.hypot(dy);
    if dist < p.position_tolerance_m {
        *at_goal = true;
    } else if dist > p.position_release_m {
        *at_goal = false;
    }
    if *at_goal {
        return face(pose, look_at, p);
    }
    let e = wrap_angle_rad(dy.atan2(dx) - pose.yaw_rad);
    let w = (p.k_angular * e).clamp(-p.max_angular_rad_s, p.max_angular_rad_s);
    if e.abs() > p.turn_in_place_rad {
        return NavOutcome::Moving(Twist2D {
            linear_m_s: 0.0,
            angular_rad_s: w,
        });
    }
    let v = (p.k_linear * dist)
        .min(p.max_linear_m_s)
        .min((2.0 * p.decel_m_s2 * dist).sqrt())
        .max(0.03)
        * e.cos();
    NavOutcome::Moving(Twist2D {
        linear_m_s: v,
        angular_rad_s: w,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Integrates a unicycle with the controller in the loop.
    fn simulate(mut pose: Pose2D, goal: [f64; 2], look: [f64; 2]) -> (Pose2D, usize) {
        let p = NavParams::default();
        let mut at = false;
        for i in 0..5000 {
            match drive_to(&pose, goal, look, &mut at, &p) {
                NavOutcome::Arrived => return (pose, i),
                NavOutcome::Moving(t) => {
                    let dt = 0.02;
                    pose.x_m += t.linear_m_s * pose.yaw_rad.cos() * dt;
                    pose.y_m += t.linear_m_s * pose.yaw_rad.sin() * dt;
                    pose.yaw_rad = wrap_angle_rad(pose.yaw_rad + t.angular_rad_s * dt);
                }
            }
        }
        panic!("did not arrive: {pose:?}");
    }

    #[test]
    fn arrives_within_tolerance_and_faces_the_target() {
        for (start, goal) in [
            (Pose2D::new(0.0, 0.0, 0.0), [1.0, 0.5]),
            (Pose2D::new(0.0, 0.0, 3.0), [-1.0, -2.0]),
            (Pose2D::new(1.0, 1.0, -1.0), [1.0, 1.01]),
        ] {
            let look = [goal[0] + 0.45, goal[1]];
            let (end, _) = simulate(start, goal, look);
            assert!(
                (end.x_m - goal[0]).hypot(end.y_m - goal[1]) < 0.05,
                "{end:?}"
            );
            let to_look = (look[1] - end.y_m).atan2(look[0] - end.x_m);
            assert!(
                wrap_angle_rad(end.yaw_rad - to_look).abs() < 0.01,
                "{end:?}"
            );
        }
    }
}
