//! Joint trajectories for the arm: a synchronised trapezoidal velocity
//! profile from the current joint angles to a target, sampled into the
//! points of a `trajectory_msgs/JointTrajectory`. Every joint starts and
//! stops together, within the joints' velocity and acceleration limits, and
//! moves monotonically between start and goal (so it stays within the
//! position limits when both ends do). Pure: no ROS.

/// One point: seconds from the start, positions and velocities.
#[derive(Debug, Clone, PartialEq)]
pub struct TrajectoryPoint {
    pub time_from_start_s: f64,
    pub positions: Vec<f64>,
    pub velocities: Vec<f64>,
}

/// The profile of the joint that moves furthest, normalised: position and
/// velocity at `t` as fractions of the distance (and per second).
#[derive(Debug, Clone, Copy)]
struct Trapezoid {
    distance: f64,
    accel: f64,
    t_accel: f64,
    t_cruise: f64,
    v_peak: f64,
}

impl Trapezoid {
    fn new(distance: f64, v_max: f64, a_max: f64) -> Self {
        let t_accel = (v_max / a_max).min((distance / a_max).sqrt());
        let v_peak = a_max * t_accel;
        let t_cruise = if v_peak > 0.0 {
            ((distance - a_max * t_accel * t_accel) / v_peak).max(0.0)
        } else {
            0.0
        };
        Self {
            distance,
            accel: a_max,
            t_accel,
            t_cruise,
            v_peak,
        }
    }

    fn duration(&self) -> f64 {
        2.0 * self.t_accel + self.t_cruise
    }

    /// (fraction of the distance, fraction per second) at `t`.
    fn at(&self, t: f64) -> (f64, f64) {
        if self.distance <= 0.0 {
            return (1.0, 0.0);
        }
        let (a, ta, tc, vp) = (self.accel, self.t_accel, self.t_cruise, self.v_peak);
        let total = self.duration();
        let t = t.clamp(0.0, total);
        let (p, v) = if t < ta {
            (0.5 * a * t * t, a * t)
        } else if t < ta + tc {
            (0.5 * a * ta * ta + vp * (t - ta), vp)
        } else {
            let r = total - t;
            (self.distance - 0.5 * a * r * r, a * r)
        };
        ((p / self.distance).clamp(0.0, 1.0), v / self.distance)
    }
}

/// A trajectory from `from` to `to`, sampled every `dt_s` (plus the end),
/// within `v_max` (per joint, rad/s) and `a_max` (rad/s²). Non-finite input,
/// or limits that are not positive, give a single point at `from`: hold.
pub fn plan_joint_trajectory(
    from: &[f64],
    to: &[f64],
    v_max: f64,
    a_max: f64,
    dt_s: f64,
) -> Vec<TrajectoryPoint> {
    let hold = || {
        vec![TrajectoryPoint {
            time_from_start_s: 0.0,
            positions: from.to_vec(),
            velocities: vec![0.0; from.len()],
        }]
    };
    let usable = |x: f64| x.is_finite() && x > 0.0;
    if from.len() != to.len()
        || !from.iter().chain(to).all(|x| x.is_finite())
        || !usable(v_max)
        || !usable(a_max)
        || !usable(dt_s)
    {
        return hold();
    }
    let deltas: Vec<f64> = from.iter().zip(to).map(|(a, b)| b - a).collect();
    let longest = deltas.iter().fold(0.0f64, |m, d| m.max(d.abs()));
    let profile = Trapezoid::new(longest, v_max, a_max);
    let total = profile.duration();
    let steps = (total / dt_s).ceil().max(1.0) as usize;
    (1..=steps)
        .map(|k| {
            let t = (k as f64 * dt_s).min(total);
            let (s, ds) = profile.at(t);
            TrajectoryPoint {
                time_from_start_s: t,
                positions: from.iter().zip(&deltas).map(|(a, d)| a + s * d).collect(),
                velocities: deltas.iter().map(|d| ds * d).collect(),
            }
        })
        .collect()
}

/// Where a trajectory (started at `start`) puts the joints at `t` seconds:
/// linear between its points; before the first, from `start`.
pub fn sample(start: &[f64], points: &[TrajectoryPoint], t: f64) -> Vec<f64> {
    let mut prev_t = 0.0;
    let mut prev: &[f64] = start;
    for p in points {
        if t <= p.time_from_start_s {
            let span = p.time_from_start_s - prev_t;
            let f = if span > 0.0 {
                ((t - prev_t) / span).clamp(0.0, 1.0)
            } else {
                1.0
            };
            return prev
                .iter()
                .zip(&p.positions)
                .map(|(a, b)| a + f * (b - a))
                .collect();
        }
        prev_t = p.time_from_start_s;
        prev = &p.positions;
    }
    prev.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Property test over random moves within the arm's limits.
    #[test]
    fn trajectories_keep_every_limit_and_end_on_the_goal() {
        let lower = [-0.5, -2.8, -2.8];
        let upper = [2.0, 0.2, 1.5];
        let (v_max, a_max, dt) = (1.5, 3.0, 0.02);
        let mut seed = 99u64;
        for _ in 0..300 {
            let pick = |s: &mut u64| -> Vec<f64> {
                (0..3)
                    .map(|i| lower[i] + lcg(s) * (upper[i] - lower[i]))
                    .collect()
            };
            let from = pick(&mut seed);
            let to = pick(&mut seed);
            let traj = plan_joint_trajectory(&from, &to, v_max, a_max, dt);
            let last = traj.last().unwrap();
            for (i, goal) in to.iter().enumerate() {
                assert!((last.positions[i] - goal).abs() < 1e-9);
                assert!(last.velocities[i].abs() < 1e-9);
            }
            let mut prev_t = 0.0;
            let mut prev_q = from.clone();
            let mut prev_v = vec![0.0; 3];
            for p in &traj {
                let h = p.time_from_start_s - prev_t;
                assert!(
                    h > 0.0 && h <= dt + 1e-12,
                    "time must advance by at most dt"
                );
                for i in 0..3 {
                    let q = p.positions[i];
                    assert!(
                        q >= lower[i] - 1e-9 && q <= upper[i] + 1e-9,
                        "position limit"
                    );
                    let (lo, hi) = (from[i].min(to[i]), from[i].max(to[i]));
                    assert!(q >= lo - 1e-9 && q <= hi + 1e-9, "not monotonic");
                    assert!(p.velocities[i].abs() <= v_max + 1e-9, "velocity limit");
                    // The mean speed over the interval, and the change of velocity.
                    assert!(((q - prev_q[i]) / h).abs() <= v_max + 1e-6, "mean speed");
                    assert!(
                        ((p.velocities[i] - prev_v[i]) / h).abs() <= a_max + 1e-6,
                        "acceleration limit"
                    );
                }
                prev_t = p.time_from_start_s;
                prev_q = p.positions.clone();
                prev_v = p.velocities.clone();
            }
        }
    }

    #[test]
    fn joints_start_and_stop_together_and_bad_input_holds() {
        let traj = plan_joint_trajectory(&[0.0, 0.0], &[1.0, -0.25], 1.0, 2.0, 0.05);
        // Half way through time, both joints are half way through their move.
        let mid = traj.last().unwrap().time_from_start_s / 2.0;
        let q = sample(&[0.0, 0.0], &traj, mid);
        assert!(
            (q[0] - 0.5).abs() < 0.02 && (q[1] + 0.125).abs() < 0.01,
            "{q:?}"
        );
        // Duration: accelerate 0.5 s to 1 rad/s (0.25 rad), cruise 0.5 s, brake 0.5 s.
        assert!((traj.last().unwrap().time_from_start_s - 1.5).abs() < 1e-9);
        assert_eq!(sample(&[0.0, 0.0], &traj, 99.0), vec![1.0, -0.25]);
        assert_eq!(sample(&[0.0, 0.0], &traj, 0.0), vec![0.0, 0.0]);
        for bad in [
            plan_joint_trajectory(&[0.0], &[f64::NAN], 1.0, 1.0, 0.1),
            plan_joint_trajectory(&[0.0], &[1.0], 0.0, 1.0, 0.1),
            plan_joint_trajectory(&[0.0], &[1.0, 2.0], 1.0, 1.0, 0.1),
        ] {
            assert_eq!(bad.len(), 1);
            assert_eq!(bad[0].time_from_start_s, 0.0);
        }
    }
}
