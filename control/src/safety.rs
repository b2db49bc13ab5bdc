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

/// The chain every base command passes on its way to `/cmd_vel`, whoever
/// asked for it: the geofence, the stale-scan hold, the speed and
/// acceleration limits, and last the e-stop, which overrides all.
#[derive(Debug, Clone)]
pub struct SafetyChain {
    pub fence: Geofence,
    pub limits: SafetyLimits,
    /// A scan older than this (wall seconds) holds the base's linear motion.
    pub scan_timeout_s: f64,
    estop: bool,
    /// The command last sent, from which acceleration is limited.
    last_sent: Twist2D,
    scan_stale_warned: bool,
}

/// What the chain did to a command, for the node to log once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Held {
    /// The scan just went stale: the base only turns until a scan arrives.
    pub newly_blind: bool,
}

impl SafetyChain {
    pub fn new(fence: Geofence, limits: SafetyLimits, scan_timeout_s: f64) -> Self {
        Self {
            fence,
            limits,
            scan_timeout_s,
            estop: false,
            last_sent: Twist2D::default(),
            scan_stale_warned: false,
        }
    }

    pub fn estop_engaged(&self) -> bool {
        self.estop
    }

    /// Engages (true) or releases (false) the latched e-stop; true when
    /// that changed anything.
    pub fn set_estop(&mut self, on: bool) -> bool {
        let changed = self.estop != on;
        self.estop = on;
        changed
    }

    /// The command last sent to the base.
    pub fn last_sent(&self) -> Twist2D {
        self.last_sent
    }

    /// Records what went out on `/cmd_vel` (a stop sent directly included).
    pub fn sent(&mut self, cmd: Twist2D) {
        self.last_sent = cmd;
    }

    /// A scan arrived: obstacles can be seen again.
    pub fn scan_seen(&mut self) {
        self.scan_stale_warned = false;
    }

    /// The command the base may carry out for `want`, at `pose`, `dt_s`
    /// after the last one, with the last scan `scan_age_s` old (`None`: no
    /// scan yet).
    pub fn command(
        &mut self,
        pose: &Pose2D,
        want: Twist2D,
        dt_s: f64,
        scan_age_s: Option<f64>,
    ) -> (Twist2D, Held) {
        if self.estop {
            return (Twist2D::default(), Held::default());
        }
        let mut want = self.fence.apply(pose, want);
        let mut held = Held::default();
        let blind = scan_age_s.is_none_or(|a| a.is_nan() || a > self.scan_timeout_s);
        if blind && want.linear_m_s != 0.0 {
            // Obstacles cannot be seen, so the base only turns.
            held.newly_blind = !self.scan_stale_warned;
            self.scan_stale_warned = true;
            want.linear_m_s = 0.0;
        }
        (self.limits.apply(self.last_sent, want, dt_s), held)
    }
}

/// A watchdog on a stream of messages (wall clock): fed by each one, it
/// expires when none came for `timeout_s`, and says so once per silence.
#[derive(Debug, Clone)]
pub struct Watchdog {
    pub timeout_s: f64,
    last: Option<std::time::Instant>,
    reported: bool,
}

impl Watchdog {
    pub fn new(timeout_s: f64) -> Self {
        Self {
            timeout_s,
            last: None,
            reported: false,
        }
    }

    pub fn feed(&mut self, now: std::time::Instant) {
        self.last = Some(now);
        self.reported = false;
    }

    /// How long since the last message; `None` before the first.
    pub fn age_s(&self, now: std::time::Instant) -> Option<f64> {
        self.last
            .map(|l| now.saturating_duration_since(l).as_secs_f64())
    }

    /// Fed within the timeout.
    pub fn is_fresh(&self, now: std::time::Instant) -> bool {
        self.age_s(now).is_some_and(|a| a <= self.timeout_s)
    }

    /// True once when the watchdog expires after having been fed; false
    /// again until it is fed and expires anew.
    pub fn newly_expired(&mut self, now: std::time::Instant) -> bool {
        if self.last.is_none() || self.is_fresh(now) || self.reported {
            return false;
        }
        self.reported = true;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain() -> SafetyChain {
        SafetyChain::new(
            Geofence {
                min_m: [-5.0, -5.0],
                max_m: [5.0, 5.0],
            },
            SafetyLimits::from_robot(&RobotDescription::default()),
            1.0,
        )
    }

    const FWD: Twist2D = Twist2D {
        linear_m_s: 0.3,
        angular_rad_s: 0.2,
    };

    #[test]
    fn the_chain_applies_fence_then_limits() {
        let mut c = chain();
        let here = Pose2D::new(0.0, 0.0, 0.0);
        let (cmd, held) = c.command(&here, FWD, 0.01, Some(0.1));
        assert_eq!(held, Held::default());
        // The acceleration limit holds from standstill.
        let dv = c.limits.max_linear_accel_m_s2 * 0.01;
        assert!((cmd.linear_m_s - dv).abs() < 1e-12, "{cmd:?}");
        // At the fence, heading out: no linear motion.
        let edge = Pose2D::new(4.95, 0.0, 0.0);
        c.sent(FWD);
        let (cmd, _) = c.command(&edge, FWD, 0.01, Some(0.1));
        // The fence wants zero; the limiter brakes towards it by at most
        // one step of deceleration.
        assert!(cmd.linear_m_s < FWD.linear_m_s, "{cmd:?}");
        assert!(FWD.linear_m_s - cmd.linear_m_s <= dv + 1e-12, "{cmd:?}");
        let (cmd, _) = {
            c.sent(Twist2D::default());
            c.command(&edge, FWD, 0.01, Some(0.1))
        };
        assert_eq!(cmd.linear_m_s, 0.0);
    }

    #[test]
    fn a_stale_or_missing_scan_holds_the_base_but_lets_it_turn() {
        let mut c = chain();
        let here = Pose2D::new(0.0, 0.0, 0.0);
        for age in [None, Some(1.5), Some(f64::NAN)] {
            c.scan_seen();
            let (cmd, held) = c.command(&here, FWD, 0.01, age);
            assert_eq!(cmd.linear_m_s, 0.0, "scan age {age:?}");
            assert!(cmd.angular_rad_s > 0.0, "it may still turn");
            assert!(held.newly_blind, "said once");
            let (_, again) = c.command(&here, FWD, 0.01, age);
            assert!(!again.newly_blind, "and not again");
        }
        let (cmd, _) = c.command(&here, FWD, 0.01, Some(0.2));
        assert!(cmd.linear_m_s > 0.0);
    }

    #[test]
    fn the_estop_overrides_every_command_until_released() {
        let mut c = chain();
        let here = Pose2D::new(0.0, 0.0, 0.0);
        c.sent(FWD);
        assert!(c.set_estop(true));
        assert!(
            !c.set_estop(true),
            "latched: engaging again changes nothing"
        );
        for want in [
            FWD,
            Twist2D {
                linear_m_s: -1.0,
                angular_rad_s: 3.0,
            },
        ] {
            assert_eq!(
                c.command(&here, want, 0.01, Some(0.1)).0,
                Twist2D::default()
            );
        }
        assert!(c.set_estop(false));
        assert_ne!(c.command(&here, FWD, 0.01, Some(0.1)).0, Twist2D::default());
    }

    #[test]
    fn the_watchdog_expires_once_per_silence() {
        let t0 = std::time::Instant::now();
        let at = |s: f64| t0 + std::time::Duration::from_secs_f64(s);
        let mut w = Watchdog::new(0.5);
        assert!(!w.is_fresh(t0), "never fed: not fresh");
        assert!(!w.newly_expired(at(10.0)), "never fed: nothing to report");
        w.feed(at(1.0));
        assert!(w.is_fresh(at(1.4)));
        assert!(!w.newly_expired(at(1.4)));
        assert!(!w.is_fresh(at(1.6)));
        assert!(w.newly_expired(at(1.6)));
        assert!(!w.newly_expired(at(2.0)), "reported once");
        w.feed(at(2.0));
        assert!(w.newly_expired(at(2.6)), "a new silence is reported again");
    }

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
