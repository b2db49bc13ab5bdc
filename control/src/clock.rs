//! The control loop's clock: a dedicated thread that wakes on fixed wall-time
//! deadlines (not tokio's 1 ms timer wheel), and the loop's rate and jitter
//! statistics, which the node reports in its status.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// Bounds of the lead: how early each deadline is handed to the loop's
/// thread, which then spins the rest of the way (see [`LeadTuner`]).
pub const MIN_LEAD: Duration = Duration::from_micros(300);
pub const MAX_LEAD: Duration = Duration::from_millis(3);

/// Chooses the lead from how long recent hand-overs took: from the moment
/// the clock thread was due to wake until the loop's thread had the deadline.
///
/// That delay is the kernel waking two threads in turn. On a loaded machine
/// it is tens of microseconds; on an idle virtual machine, whose CPUs halt,
/// it reaches 1 to 3 ms. The lead covers the 99th percentile of the last
/// [`LeadTuner::WINDOW`] delays with a margin, so the spin (the lead minus
/// the delay) is long only when the CPUs have nothing else to do.
#[derive(Debug, Clone)]
pub struct LeadTuner {
    delays_us: VecDeque<u32>,
    seen: u64,
    lead: Duration,
}

impl Default for LeadTuner {
    fn default() -> Self {
        Self {
            delays_us: VecDeque::with_capacity(Self::WINDOW),
            seen: 0,
            lead: Duration::from_millis(1),
        }
    }
}

impl LeadTuner {
    /// Hand-overs remembered: two seconds at 100 Hz.
    pub const WINDOW: usize = 200;

    /// Records one hand-over's delay and returns the lead for the next ones.
    pub fn observe(&mut self, delay: Duration) -> Duration {
        push(
            &mut self.delays_us,
            u32::try_from(delay.as_micros()).unwrap_or(u32::MAX),
            Self::WINDOW,
        );
        self.seen += 1;
        // Re-tune every tenth tick, once a few are known.
        if self.seen >= 20 && self.seen.is_multiple_of(10) {
            let mut v: Vec<u32> = self.delays_us.iter().copied().collect();
            v.sort_unstable();
            let p99 = v[(v.len() - 1) * 99 / 100];
            let want = Duration::from_micros(u64::from(p99) * 5 / 4 + 200);
            self.lead = want.clamp(MIN_LEAD, MAX_LEAD);
        }
        self.lead
    }

    pub fn lead(&self) -> Duration {
        self.lead
    }
}

/// One deadline, and when the clock thread was due to hand it over.
#[derive(Debug, Clone, Copy)]
struct Tick {
    deadline: Instant,
    due: Instant,
}

/// The deadlines of a [`spawn_clock`]: each arrives early (by the lead) and
/// is returned on time, after a spin on the receiving thread.
pub struct Ticks {
    rx: tokio::sync::mpsc::UnboundedReceiver<Tick>,
    tuner: LeadTuner,
    lead_us: Arc<AtomicU64>,
    spun: Duration,
    ticks: u32,
}

impl Ticks {
    /// The next deadline, returned at (not before) that instant; `None` when
    /// the clock has stopped.
    pub async fn next(&mut self) -> Option<Instant> {
        let tick = self.rx.recv().await?;
        Some(self.arrived(tick))
    }

    /// [`Ticks::next`] for a thread outside an async runtime.
    pub fn blocking_next(&mut self) -> Option<Instant> {
        let tick = self.rx.blocking_recv()?;
        Some(self.arrived(tick))
    }

    /// The lead the clock uses now.
    pub fn lead(&self) -> Duration {
        self.tuner.lead()
    }

    /// The share of one core spent spinning to deadlines so far.
    pub fn spin_share(&self, period: Duration) -> f64 {
        self.spun.as_secs_f64() / (period.as_secs_f64() * f64::from(self.ticks.max(1)))
    }

    fn arrived(&mut self, tick: Tick) -> Instant {
        let lead = self
            .tuner
            .observe(Instant::now().saturating_duration_since(tick.due));
        self.lead_us.store(
            u64::try_from(lead.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let from = Instant::now();
        while Instant::now() < tick.deadline {
            std::hint::spin_loop();
        }
        self.spun += from.elapsed();
        self.ticks = self.ticks.saturating_add(1);
        tick.deadline
    }
}

/// Starts a clock thread that ticks every `period` until `stop` is set or
/// the [`Ticks`] are dropped. Missed deadlines are skipped, not bunched up.
/// With `realtime`, the clock thread runs under SCHED_FIFO at that priority.
pub fn spawn_clock(
    period: Duration,
    stop: Arc<AtomicBool>,
    realtime: Option<u8>,
) -> std::io::Result<(Ticks, std::thread::JoinHandle<()>)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let tuner = LeadTuner::default();
    let lead_us = Arc::new(AtomicU64::new(
        u64::try_from(tuner.lead().as_micros()).unwrap_or(u64::MAX),
    ));
    let ticks = Ticks {
        rx,
        tuner,
        lead_us: lead_us.clone(),
        spun: Duration::ZERO,
        ticks: 0,
    };
    let handle = std::thread::Builder::new()
        .name("control-clock".into())
        .spawn(move || {
            if let Some(p) = realtime {
                if let Err(e) = set_realtime(p) {
                    tracing::warn!("control clock: {e}");
                }
            }
            tick_loop(&RealClock, period, &stop, &lead_us, &tx);
        })?;
    Ok((ticks, handle))
}

/// Wall time as the clock thread sees it: the real one, or a fake one
/// that tests drive.
trait WallClock {
    fn now(&self) -> Instant;
    fn sleep(&self, d: Duration);
}

struct RealClock;

impl WallClock for RealClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// The deadline after `last`, `period` on, skipping those already past at
/// `now`: a late clock does not bunch ticks up.
fn next_deadline(last: Instant, period: Duration, now: Instant) -> Instant {
    let mut next = last + period;
    while next < now {
        next += period;
    }
    next
}

/// The clock thread's body: sleeps until the lead before each deadline and
/// hands the deadline over then (the receiver spins the rest of the way),
/// until `stop` is set or the receiver is gone.
fn tick_loop(
    clock: &impl WallClock,
    period: Duration,
    stop: &AtomicBool,
    lead_us: &AtomicU64,
    tx: &tokio::sync::mpsc::UnboundedSender<Tick>,
) {
    let mut next = clock.now() + period;
    while !stop.load(Ordering::Relaxed) {
        let lead = Duration::from_micros(lead_us.load(Ordering::Relaxed));
        let due = next.checked_sub(lead).unwrap_or(next);
        let now = clock.now();
        if due > now {
            clock.sleep(due - now);
        }
        if tx
            .send(Tick {
                deadline: next,
                due,
            })
            .is_err()
        {
            return;
        }
        next = next_deadline(next, period, clock.now());
    }
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

fn push<T>(v: &mut VecDeque<T>, x: T, cap: usize) {
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
    fn the_lead_follows_the_tail_of_the_hand_over_delays() {
        let mut t = LeadTuner::default();
        // Fast hand-overs: the shortest lead.
        for _ in 0..LeadTuner::WINDOW {
            t.observe(Duration::from_micros(40));
        }
        assert_eq!(t.lead(), MIN_LEAD);
        // One in twenty takes 1.5 ms (an idle VM): the lead covers it.
        for i in 0..LeadTuner::WINDOW {
            let us = if i % 20 == 0 { 1500 } else { 40 };
            t.observe(Duration::from_micros(us));
        }
        assert!(t.lead() > Duration::from_micros(1500), "{:?}", t.lead());
        // Absurd delays cannot make the spin longer than MAX_LEAD.
        for _ in 0..LeadTuner::WINDOW {
            t.observe(Duration::from_secs(1));
        }
        assert_eq!(t.lead(), MAX_LEAD);
    }

    /// A clock that moves only when slept on, and can be made to oversleep
    /// (the thread descheduled) on chosen sleeps; it stops the loop after
    /// `sleeps_left` sleeps.
    struct FakeClock {
        now: std::cell::Cell<Instant>,
        sleeps: std::cell::Cell<usize>,
        oversleep: Vec<(usize, Duration)>,
        sleeps_left: usize,
        stop: Arc<AtomicBool>,
    }

    impl WallClock for FakeClock {
        fn now(&self) -> Instant {
            self.now.get()
        }

        fn sleep(&self, d: Duration) {
            let n = self.sleeps.get();
            let extra = self
                .oversleep
                .iter()
                .find(|(at, _)| *at == n)
                .map_or(Duration::ZERO, |(_, e)| *e);
            self.now.set(self.now.get() + d + extra);
            self.sleeps.set(n + 1);
            if n + 1 >= self.sleeps_left {
                self.stop.store(true, Ordering::Relaxed);
            }
        }
    }

    fn run_fake(oversleep: Vec<(usize, Duration)>, sleeps: usize) -> (Instant, Vec<Tick>) {
        let t0 = Instant::now();
        let clock = FakeClock {
            now: std::cell::Cell::new(t0),
            sleeps: std::cell::Cell::new(0),
            oversleep,
            sleeps_left: sleeps,
            stop: Arc::new(AtomicBool::new(false)),
        };
        let lead_us = AtomicU64::new(1000);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tick_loop(&clock, Duration::from_millis(5), &clock.stop, &lead_us, &tx);
        let mut ticks = Vec::new();
        while let Ok(t) = rx.try_recv() {
            ticks.push(t);
        }
        (t0, ticks)
    }

    fn ms_after(t0: Instant, ticks: &[Tick]) -> Vec<(u64, u64)> {
        let ms = |t: Instant| u64::try_from((t - t0).as_millis()).unwrap_or(u64::MAX);
        ticks.iter().map(|t| (ms(t.deadline), ms(t.due))).collect()
    }

    #[test]
    fn the_clock_hands_each_deadline_over_a_lead_early() {
        let (t0, ticks) = run_fake(vec![], 4);
        assert_eq!(
            ms_after(t0, &ticks),
            vec![(5, 4), (10, 9), (15, 14), (20, 19)]
        );
    }

    #[test]
    fn a_descheduled_clock_skips_missed_deadlines_instead_of_bunching() {
        // The second sleep oversleeps by 12 ms: the late tick for 10 ms is
        // still handed over, then 15 and 20 are skipped.
        let (t0, ticks) = run_fake(vec![(1, Duration::from_millis(12))], 4);
        assert_eq!(
            ms_after(t0, &ticks),
            vec![(5, 4), (10, 9), (25, 24), (30, 29)]
        );
    }

    #[test]
    fn the_clock_thread_stops_when_its_receiver_is_gone() {
        let stop = Arc::new(AtomicBool::new(false));
        let (mut ticks, h) = spawn_clock(Duration::from_millis(5), stop, None).unwrap();
        let a = ticks.blocking_next().unwrap();
        // Each deadline is handed back at or after its instant, never early.
        assert!(Instant::now() >= a);
        let b = ticks.blocking_next().unwrap();
        assert!(Instant::now() >= b && b > a);
        drop(ticks);
        h.join().unwrap();
    }
}
