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

/// Pure pursuit along a polyline path. `progress` is the index of the
/// segment the robot is on; it only moves forward. Returns `None` once the
/// robot is within `lookahead_m` of the path's end: the caller then finishes
/// with [`drive_to`], which stops on the goal precisely.
pub fn pursue(
    pose: &Pose2D,
    path: &[[f64; 2]],
    progress: &mut usize,
    lookahead_m: f64,
    p: &NavParams,
) -> Option<Twist2D> {
    let goal = *path.last()?;
    let robot = [pose.x_m, pose.y_m];
    if dist(robot, goal) < lookahead_m || path.len() < 2 {
        return None;
    }
    // Move along while the robot has passed the end of its segment.
    let last_seg = path.len() - 2;
    *progress = (*progress).min(last_seg);
    while *progress < last_seg {
        let (a, b) = (path[*progress], path[*progress + 1]);
        let (_, t) = project(robot, a, b);
        let next_closer = dist_to_segment(robot, path[*progress + 1], path[*progress + 2])
            < dist_to_segment(robot, a, b);
        if t >= 1.0 || next_closer {
            *progress += 1;
        } else {
            break;
        }
    }
    let target = lookahead_point(robot, path, *progress, lookahead_m);
    let alpha = wrap_angle_rad((target[1] - pose.y_m).atan2(target[0] - pose.x_m) - pose.yaw_rad);
    if alpha.abs() > p.turn_in_place_rad.max(0.6) {
        let w = (p.k_angular * alpha).clamp(-p.max_angular_rad_s, p.max_angular_rad_s);
        return Some(Twist2D {
            linear_m_s: 0.0,
            angular_rad_s: w,
        });
    }
    let remaining = remaining_length_m(robot, path, *progress);
    let mut v = p
        .max_linear_m_s
        .min((2.0 * p.decel_m_s2 * remaining).sqrt())
        .max(0.05);
    let l = dist(robot, target).max(1e-3);
    let curvature = 2.0 * alpha.sin() / l;
    let mut w = v * curvature;
    if w.abs() > p.max_angular_rad_s {
        // Keep the arc: slow down rather than cut the corner.
        v *= p.max_angular_rad_s / w.abs();
        w = w.signum() * p.max_angular_rad_s;
    }
    Some(Twist2D {
        linear_m_s: v,
        angular_rad_s: w,
    })
}

/// The path's length from the robot's projection on segment `seg` to its end.
pub fn remaining_length_m(robot: [f64; 2], path: &[[f64; 2]], seg: usize) -> f64 {
    if path.len() < 2 {
        return path.first().map_or(0.0, |&g| dist(robot, g));
    }
    let seg = seg.min(path.len() - 2);
    let (q, _) = project(robot, path[seg], path[seg + 1]);
    dist(robot, q)
        + dist(q, path[seg + 1])
        + path[seg + 1..]
            .windows(2)
            .map(|w| dist(w[0], w[1]))
            .sum::<f64>()
}

fn dist(a: [f64; 2], b: [f64; 2]) -> f64 {
    (b[0] - a[0]).hypot(b[1] - a[1])
}

/// The closest point to `p` on segment `a`–`b`, and its parameter in [0, 1].
fn project(p: [f64; 2], a: [f64; 2], b: [f64; 2]) -> ([f64; 2], f64) {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let len2 = dx * dx + dy * dy;
    if len2 < 1e-12 {
        return (a, 1.0);
    }
    let t = (((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2).clamp(0.0, 1.0);
    ([a[0] + t * dx, a[1] + t * dy], t)
}

fn dist_to_segment(p: [f64; 2], a: [f64; 2], b: [f64; 2]) -> f64 {
    dist(p, project(p, a, b).0)
}

/// The point `lookahead_m` further along the path than the robot's projection.
fn lookahead_point(robot: [f64; 2], path: &[[f64; 2]], seg: usize, lookahead_m: f64) -> [f64; 2] {
    let (mut from, _) = project(robot, path[seg], path[seg + 1]);
    let mut left = lookahead_m;
    for i in seg..path.len() - 1 {
        let to = path[i + 1];
        let d = dist(from, to);
        if d >= left {
            let t = left / d.max(1e-9);
            return [
                from[0] + t * (to[0] - from[0]),
                from[1] + t * (to[1] - from[1]),
            ];
        }
        left -= d;
        from = to;
    }
    path[path.len() - 1]
}

/// How far the robot can drive straight (forwards, or backwards with
/// `reverse`) before its circular footprint of `radius_m` touches one of
/// `obstacles_m` (points in the pose's frame). Infinite when nothing is in the way.
pub fn free_distance_m(
    pose: &Pose2D,
    obstacles_m: &[[f64; 2]],
    radius_m: f64,
    reverse: bool,
) -> f64 {
    let (s, c) = pose.yaw_rad.sin_cos();
    let mut free = f64::INFINITY;
    for o in obstacles_m {
        let (dx, dy) = (o[0] - pose.x_m, o[1] - pose.y_m);
        let mut x = c * dx + s * dy;
        let y = -s * dx + c * dy;
        if reverse {
            x = -x;
        }
        if y.abs() >= radius_m || x <= 0.0 {
            continue;
        }
        free = free.min((x - (radius_m * radius_m - y * y).sqrt()).max(0.0));
    }
    free
}

/// The fastest forward speed from which the robot still stops `margin_m`
/// short of an obstacle `free_m` ahead: it keeps going for `reaction_s`
/// (until a new command acts), then brakes at `decel_m_s2`. That is the
/// positive root of `v t + v^2 / 2a = free - margin`.
pub fn speed_for_clearance(free_m: f64, margin_m: f64, decel_m_s2: f64, reaction_s: f64) -> f64 {
    let room = (free_m - margin_m).max(0.0);
    let at = decel_m_s2 * reaction_s.max(0.0);
    (at * at + 2.0 * decel_m_s2 * room).sqrt() - at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pure_pursuit_follows_a_bent_path_to_its_end() {
        let path = [[0.0, 0.0], [2.0, 0.0], [2.0, 2.0]];
        let p = NavParams::default();
        let mut pose = Pose2D::new(0.0, 0.0, 0.0);
        let mut seg = 0;
        let mut worst = 0.0f64;
        let mut steps = 0;
        while let Some(t) = pursue(&pose, &path, &mut seg, 0.35, &p) {
            let dt = 0.02;
            pose.x_m += t.linear_m_s * pose.yaw_rad.cos() * dt;
            pose.y_m += t.linear_m_s * pose.yaw_rad.sin() * dt;
            pose.yaw_rad = wrap_angle_rad(pose.yaw_rad + t.angular_rad_s * dt);
            let off = dist_to_segment([pose.x_m, pose.y_m], path[0], path[1]).min(dist_to_segment(
                [pose.x_m, pose.y_m],
                path[1],
                path[2],
            ));
            worst = worst.max(off);
            steps += 1;
            assert!(steps < 5000, "never reached the end: {pose:?}");
        }
        assert!(dist([pose.x_m, pose.y_m], [2.0, 2.0]) < 0.36, "{pose:?}");
        assert_eq!(seg, 1);
        // Pure pursuit cuts the corner by less than its lookahead.
        assert!(worst < 0.2, "left the path by {worst:.3} m");
    }

    #[test]
    fn free_distance_sees_what_the_footprint_would_hit() {
        let pose = Pose2D::new(1.0, 1.0, std::f64::consts::FRAC_PI_2);
        // 1 m ahead (along +y), on the centre line: free until the rim at 1 - 0.22.
        let d = free_distance_m(&pose, &[[1.0, 2.0]], 0.22, false);
        assert!((d - 0.78).abs() < 1e-9, "{d}");
        // Beside the footprint's swept band, or behind: not in the way.
        assert!(free_distance_m(&pose, &[[1.3, 2.0], [1.0, 0.5]], 0.22, false).is_infinite());
        // Behind counts when reversing.
        let back = free_distance_m(&pose, &[[1.0, 0.5]], 0.22, true);
        assert!((back - 0.28).abs() < 1e-9, "{back}");
        assert_eq!(speed_for_clearance(0.05, 0.05, 1.0, 0.0), 0.0);
        assert_eq!(speed_for_clearance(0.05, 0.05, 1.0, 0.1), 0.0);
        assert!((speed_for_clearance(0.55, 0.05, 1.0, 0.0) - 1.0).abs() < 1e-12);
        // With a reaction time the speed is lower, and the distance run
        // before the command acts plus the braking distance is the room.
        let v = speed_for_clearance(0.55, 0.05, 1.0, 0.1);
        assert!(v < 1.0);
        assert!((v * 0.1 + v * v / 2.0 - 0.5).abs() < 1e-12, "{v}");
    }

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
