//! The control loop's clock: a dedicated thread that wakes on fixed wall-time
//! deadlines (not tokio's 1 ms timer wheel), and the loop's rate and jitter
//! statistics, which the node reports in its status.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rosetta_common::status::LoopSummary;

/// Runs the calling thread under SCHED_FIFO at `priority` (1 to 99), so that
/// ordinary processes cannot delay it. Needs root, CAP_SYS_NICE or an
/// rtprio limit; the error says so and the caller carries on without.
pub fn set_realtime(priority: u8) -> Result<(), String> {
    use thread_priority::{
        set_thread_priority_and_policy, thread_native_id, RealtimeThreadSchedulePolicy,
        ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
    };
    let value = ThreadPriorityValue::try_from(priority.clamp(1, 99))
        .map_err(|e| format!("priority {priority}: {e}"))?;
    set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Crossplatform(value),
        ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
    )
    .map_err(|e| format!("cannot run at real-time priority {priority} ({e:?}); needs root, CAP_SYS_NICE or an rtprio limit"))
}

/// How long before each deadline the clock stops sleeping and spins: 2% of
/// one core at 100 Hz, for wake-ups on time.
pub const SPIN_BEFORE: Duration = Duration::from_micros(200);

/// Sends each deadline (every `period`) into `tx` until `stop` is set or the
/// receiver is gone. Missed deadlines are skipped, not bunched up. With
/// `realtime`, the clock thread runs under SCHED_FIFO at that priority.
pub fn spawn_clock(
    period: Duration,
    tx: tokio::sync::mpsc::UnboundedSender<Instant>,
    stop: Arc<AtomicBool>,
    realtime: Option<u8>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("control-clock".into())
        .spawn(move || {
            if let Some(p) = realtime {
                if let Err(e) = set_realtime(p) {
                    tracing::warn!("control clock: {e}");
                }
            }
            let mut next = Instant::now() + period;
            while !stop.load(Ordering::Relaxed) {
                // Sleep to just before the deadline, then spin to it: the
                // kernel's wake-up from sleep is late by up to a millisecond
                // on a busy machine, a spin of SPIN_BEFORE is not.
                let now = Instant::now();
                if next > now + SPIN_BEFORE {
                    std::thread::sleep(next - now - SPIN_BEFORE);
                }
                while Instant::now() < next {
                    std::hint::spin_loop();
                }
                if tx.send(next).is_err() {
                    return;
                }
                next += period;
                let now = Instant::now();
                while next < now {
                    next += period;
                }
            }
        })
}

/// The last `capacity` tick periods and wake-up latencies.
#[derive(Debug, Clone)]
pub struct LoopStats {
    nominal_s: f64,
    capacity: usize,
    periods_s: VecDeque<f64>,
    latencies_s: VecDeque<f64>,
    last: Option<Instant>,
}

impl LoopStats {
    pub fn new(nominal: Duration, capacity: usize) -> Self {
        Self {
            nominal_s: nominal.as_secs_f64(),
            capacity: capacity.max(2),
            periods_s: VecDeque::new(),
            latencies_s: VecDeque::new(),
            last: None,
        }
    }

    /// A tick for `deadline` is handled at `now`.
    pub fn record(&mut self, deadline: Instant, now: Instant) {
        if let Some(last) = self.last {
            push(
                &mut self.periods_s,
                (now - last).as_secs_f64(),
                self.capacity,
            );
        }
        push(
            &mut self.latencies_s,
            now.saturating_duration_since(deadline).as_secs_f64(),
            self.capacity,
        );
        self.last = Some(now);
    }

    pub fn summary(&self) -> Option<LoopSummary> {
        if self.periods_s.len() < 2 {
            return None;
        }
        let mut periods: Vec<f64> = self.periods_s.iter().copied().collect();
        let mut jitter: Vec<f64> = periods.iter().map(|p| (p - self.nominal_s).abs()).collect();
        let mut lat: Vec<f64> = self.latencies_s.iter().copied().collect();
        for v in [&mut periods, &mut jitter, &mut lat] {
            v.sort_by(f64::total_cmp);
        }
        let q = |v: &[f64], f: f64| v[((v.len() - 1) as f64 * f).round() as usize] * 1e3;
        let mean = periods.iter().sum::<f64>() / periods.len() as f64;
        Some(LoopSummary {
            ticks: periods.len() as u64,
            rate_hz: 1.0 / mean,
            period_p50_ms: q(&periods, 0.5),
            jitter_p99_ms: q(&jitter, 0.99),
            jitter_max_ms: q(&jitter, 1.0),
            wake_latency_p99_ms: q(&lat, 0.99),
        })
    }
}

fn push(v: &mut VecDeque<f64>, x: f64, cap: usize) {
    if v.len() == cap {
        v.pop_front();
    }
    v.push_back(x);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_report_rate_and_jitter() {
        let mut s = LoopStats::new(Duration::from_millis(10), 100);
        assert!(s.summary().is_none());
        let t0 = Instant::now();
        // 10 ms periods, one of them 13 ms late.
        let mut at = t0;
        for i in 0..50u64 {
            let deadline = t0 + Duration::from_millis(10 * i);
            let late = if i == 20 { 3 } else { 0 };
            at = at.max(deadline + Duration::from_millis(late));
            s.record(deadline, deadline + Duration::from_millis(late));
        }
        let sum = s.summary().unwrap();
        assert_eq!(sum.ticks, 49);
        assert!((sum.rate_hz - 100.0).abs() < 0.5, "{sum:?}");
        assert!((sum.period_p50_ms - 10.0).abs() < 1e-6);
        assert!((sum.jitter_max_ms - 3.0).abs() < 1e-6, "{sum:?}");
        assert!((sum.wake_latency_p99_ms - 3.0).abs() < 1e-6 || sum.wake_latency_p99_ms < 1e-6);
    }

    #[test]
    fn the_clock_ticks_until_its_receiver_is_gone() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let h = spawn_clock(Duration::from_millis(2), tx, stop.clone(), None).unwrap();
        let a = rx.blocking_recv().unwrap();
        let b = rx.blocking_recv().unwrap();
        assert_eq!(b - a, Duration::from_millis(2));
        drop(rx);
        h.join().unwrap();
    }
}
