//! A cheap, coarse reading of the monotonic clock, for deadlines counted in seconds.
//!
//! A precise reading (`Instant::now`) costs about 20 ns on the benchmark machine (the vDSO reads
//! the time-stamp counter), and an uncached request took seven of them. The kernel's coarse
//! clock is the same clock as of the last timer tick (at most a few ms old), read from memory:
//! good enough for idle limits and timeouts, not for measuring a request.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Now, give or take a timer tick (a few ms).
pub fn coarse_now() -> Instant {
    static ANCHOR: OnceLock<(Instant, Duration)> = OnceLock::new();
    let now = coarse_monotonic();
    let (instant, reading) = *ANCHOR.get_or_init(|| (Instant::now(), coarse_monotonic()));
    instant + now.saturating_sub(reading)
}

fn coarse_monotonic() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the timespec it is given (CLOCK_MONOTONIC_COARSE: Linux
    // 2.6.32 and later).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_a_few_ms_of_the_precise_clock() {
        for _ in 0..3 {
            let precise = Instant::now();
            let coarse = coarse_now();
            let apart = if coarse > precise {
                coarse - precise
            } else {
                precise - coarse
            };
            assert!(apart < Duration::from_millis(50), "{apart:?}");
            std::thread::sleep(Duration::from_millis(20));
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
