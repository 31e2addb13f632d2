//! The per-call CPU budget, counted in CPU time rather than in epoch ticks.
//!
//! Epoch interruption stops a runaway guest: every [`TICK`](crate::runtime::TICK)
//! the guest reaches its deadline, the store's callback runs and the call
//! yields to tokio. Counting those callbacks as 10 ms of CPU each is wrong on a
//! loaded machine: a yielded call that waits longer than one tick to be polled
//! again hits its deadline at once on resumption, so it burns a "tick" for
//! almost no work and a modest guest can exhaust its budget while barely
//! running. Instead, [`Metered`] wraps the call's future and adds up the
//! thread CPU time (`CLOCK_THREAD_CPUTIME_ID`) spent inside its `poll`s —
//! the guest's own execution plus the host imports it runs synchronously —
//! and the deadline callback compares that ([`CpuMeter::used`]) with the budget.
//! Time spent waiting (queued behind other tasks, awaiting an async import, or
//! the OS running another process) is not counted.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

/// CPU time of the calling thread, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_THREAD_CPUTIME_ID exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time used by one call so far. Shared between the store's data (read
/// by the deadline callback) and the [`Metered`] future (which writes it).
#[derive(Debug, Default)]
pub struct CpuMeter {
    /// CPU time of finished polls.
    done_ns: AtomicU64,
    /// Thread CPU clock at the start of the current poll; 0 when not polling.
    poll_start_ns: AtomicU64,
    /// Whether a [`Metered`] future drives this call at all.
    metered: std::sync::atomic::AtomicBool,
}

impl CpuMeter {
    pub fn new() -> Arc<CpuMeter> {
        Arc::new(CpuMeter::default())
    }

    /// Whether the call is driven through [`Metered`]; if not, the callback
    /// falls back to counting ticks.
    pub fn is_metered(&self) -> bool {
        self.metered.load(Ordering::Relaxed)
    }

    /// CPU time used so far, including the poll in progress (the deadline
    /// callback runs inside a poll, on the polling thread).
    pub fn used(&self) -> Duration {
        let mut ns = self.done_ns.load(Ordering::Relaxed);
        let start = self.poll_start_ns.load(Ordering::Relaxed);
        if start != 0 {
            ns += thread_cpu_ns().saturating_sub(start);
        }
        Duration::from_nanos(ns)
    }
}

/// A future whose polls are timed on the thread CPU clock into a [`CpuMeter`].
pub struct Metered<F> {
    inner: Pin<Box<F>>,
    meter: Arc<CpuMeter>,
}

/// Drive `fut` (a plugin call) with its CPU time recorded in `meter`.
pub fn metered<F: Future>(meter: Arc<CpuMeter>, fut: F) -> Metered<F> {
    meter.metered.store(true, Ordering::Relaxed);
    Metered {
        inner: Box::pin(fut),
        meter,
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let start = thread_cpu_ns().max(1);
        self.meter.poll_start_ns.store(start, Ordering::Relaxed);
        let r = self.inner.as_mut().poll(cx);
        let spent = thread_cpu_ns().saturating_sub(start);
        self.meter.poll_start_ns.store(0, Ordering::Relaxed);
        self.meter.done_ns.fetch_add(spent, Ordering::Relaxed);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Burn `d` of this thread's CPU time (however long that takes in wall time).
    fn spin(d: Duration) {
        let t = thread_cpu_ns();
        while thread_cpu_ns() - t < d.as_nanos() as u64 {
            std::hint::black_box(0u64);
        }
    }

    /// A future that spins `work` per poll and waits `wait` between polls.
    async fn work_and_wait(polls: u32, work: Duration, wait: Duration) {
        for _ in 0..polls {
            spin(work);
            tokio::time::sleep(wait).await;
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn counts_time_in_polls_not_time_waiting() {
        // 5 polls × 20 ms of spinning, 5 × 60 ms of waiting: ~100 ms of CPU in
        // ~400 ms of wall time. Tick counting would have seen ~40 ticks.
        let meter = CpuMeter::new();
        let wall = Instant::now();
        metered(
            meter.clone(),
            work_and_wait(5, Duration::from_millis(20), Duration::from_millis(60)),
        )
        .await;
        let wall = wall.elapsed();
        let used = meter.used();
        assert!(meter.is_metered());
        assert!(used >= Duration::from_millis(100), "{used:?}");
        assert!(used < Duration::from_millis(180), "{used:?} counts waiting");
        assert!(wall >= Duration::from_millis(300), "{wall:?}");
    }

    #[test]
    fn unmetered_meter_reads_zero() {
        let m = CpuMeter::new();
        assert!(!m.is_metered());
        assert_eq!(m.used(), Duration::ZERO);
    }
}
