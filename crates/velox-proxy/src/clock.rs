//! A cheap, coarse reading of the monotonic clock, for deadlines counted in seconds.
//!
//! A precise reading (`Instant::now`) costs about 20 ns on the benchmark machine (the vDSO reads
//! the time-stamp counter), and an uncached request took seven of them. The kernel's coarse
//! clock is the same clock as of the last timer tick (at most a tick old), read from memory:
//! good enough for idle limits and timeouts, not for measuring a request.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Now, never earlier than the precise clock and at most two timer ticks later (a tick is 1-10
/// ms), so that a deadline counted from it never comes early: a timeout waits at least as long
/// as configured, and at most two ticks longer.
pub fn coarse_now() -> Instant {
    static ANCHOR: OnceLock<(Duration, Instant)> = OnceLock::new();
    let now = coarse_monotonic();
    // The coarse reading first: the precise one after it is no earlier. The coarse clock lags
    // the precise one by less than a tick, and the anchor adds a tick (its resolution) back.
    let (reading, instant) = *ANCHOR.get_or_init(|| {
        let reading = coarse_monotonic();
        (reading, Instant::now() + tick())
    });
    instant + now.saturating_sub(reading)
}

fn coarse_monotonic() -> Duration {
    // SAFETY: clock_gettime writes only the timespec it is given (CLOCK_MONOTONIC_COARSE: Linux
    // 2.6.32 and later).
    read(|ts| unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, ts) })
}

/// The coarse clock's resolution: the length of a timer tick.
fn tick() -> Duration {
    // SAFETY: clock_getres writes only the timespec it is given.
    read(|ts| unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, ts) })
}

fn read(call: impl FnOnce(*mut libc::timespec) -> libc::c_int) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    call(&mut ts);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_never_behind_the_precise_clock_and_at_most_two_ticks_ahead() {
        let tick = tick();
        assert!(
            tick > Duration::ZERO && tick <= Duration::from_millis(10),
            "{tick:?}"
        );
        for i in 0..2000 {
            let precise = Instant::now();
            let coarse = coarse_now();
            assert!(coarse >= precise, "{:?} behind", precise - coarse);
            let after = Instant::now();
            assert!(coarse <= after + 2 * tick, "{:?} ahead", coarse - after);
            if i % 100 == 0 {
                std::thread::sleep(Duration::from_micros(1700));
            }
        }
    }

    #[test]
    fn moves_forward_with_time() {
        let before = coarse_now();
        std::thread::sleep(Duration::from_millis(30));
        let after = coarse_now();
        assert!(
            after - before >= Duration::from_millis(20),
            "{:?}",
            after - before
        );
    }
}
