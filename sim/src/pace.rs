//! Pacing the simulation to wall time.
//!
//! The world steps in fixed increments of sim time, each due at a wall-clock
//! instant given by the real-time factor. When the process falls behind
//! (descheduled on a loaded machine, or a slow camera frame), a simulator
//! that ran the missed steps back to back would move the robot through a
//! burst of sim time on commands the controllers had no chance to update: a
//! controller that reacts every 10 ms of wall time would, in sim time, react
//! only every 100 ms or more, and brake too late. So the sim catches up at
//! most [`Pacer::catch_up`] times faster than its target rate, and a lag of
//! more than [`Pacer::max_lag`] is dropped instead: the sim then runs slower
//! than real time for a moment, as Gazebo does under load.

use std::time::{Duration, Instant};

/// Decides how long to wait before the next step.
#[derive(Debug, Clone)]
pub struct Pacer {
    rtf: f64,
    /// Wall time of one step on schedule.
    step_wall: Duration,
    /// The wall instant and sim time that the schedule counts from.
    anchor: (Instant, f64),
    /// When the last step was let go.
    last: Instant,
    /// How much faster than the target rate the sim may run to catch up.
    pub catch_up: f64,
    /// The most the sim may run behind its schedule before it drops the lag.
    pub max_lag: Duration,
    /// Wall time given up so far by dropping lag.
    pub dropped_s: f64,
}

impl Pacer {
    pub fn new(rtf: f64, step_s: f64, now: Instant, sim_time_s: f64, max_lag: Duration) -> Self {
        Self {
            rtf,
            step_wall: Duration::from_secs_f64(step_s / rtf),
            anchor: (now, sim_time_s),
            last: now,
            catch_up: 2.0,
            max_lag,
            dropped_s: 0.0,
        }
    }

    /// After a step that reached `sim_time_s`, at wall time `now`: how long
    /// to sleep before the next one (zero when it may run at once).
    pub fn wait(&mut self, now: Instant, sim_time_s: f64) -> Duration {
        let due = self.anchor.0 + Duration::from_secs_f64((sim_time_s - self.anchor.1) / self.rtf);
        let release = if due >= now {
            due
        } else if now - due > self.max_lag {
            // Start the schedule again from here rather than catch up.
            self.dropped_s += (now - due).as_secs_f64();
            self.anchor = (now, sim_time_s);
            now
        } else {
            // Behind: catch up, but no faster than `catch_up` times the rate.
            now.max(self.last + self.step_wall.div_f64(self.catch_up))
        };
        self.last = release;
        release - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn on_time_steps_wait_for_their_slot() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1.0, 0.01, t0, 0.0, 250 * MS);
        assert_eq!(p.wait(t0 + 4 * MS, 0.01), 6 * MS);
        // At half speed, 10 ms of sim time take 20 ms of wall time.
        let mut half = Pacer::new(0.5, 0.01, t0, 0.0, 250 * MS);
        assert_eq!(half.wait(t0, 0.01), 20 * MS);
    }

    #[test]
    fn a_lag_is_caught_up_at_twice_the_rate_and_a_long_one_is_dropped() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1.0, 0.01, t0, 0.0, 250 * MS);
        // A 40 ms stall: step 1 (due at 10 ms) runs at 50 ms.
        assert_eq!(p.wait(t0 + 50 * MS, 0.01), Duration::ZERO);
        // The next steps come every 5 ms (twice the rate), not all at once...
        assert_eq!(p.wait(t0 + 51 * MS, 0.02), 4 * MS);
        assert_eq!(p.wait(t0 + 56 * MS, 0.03), 4 * MS);
        // ...until the sim is back on schedule.
        assert_eq!(p.wait(t0 + 95 * MS, 0.09), Duration::ZERO);
        assert_eq!(p.wait(t0 + 96 * MS, 0.10), 4 * MS);
        assert_eq!(p.dropped_s, 0.0);
        // Descheduled for 400 ms: the lag is dropped and the schedule restarts.
        let late = t0 + 500 * MS;
        assert_eq!(p.wait(late, 0.11), Duration::ZERO);
        assert!((p.dropped_s - 0.39).abs() < 1e-9, "{}", p.dropped_s);
        assert_eq!(p.wait(late, 0.12), 10 * MS);
    }
}
