//! Deadlines that move later on every request, kept by a tokio timer that moves only when it
//! fires early.
//!
//! Moving a registered tokio timer costs a tick computation and an atomic read-modify-write,
//! and a connection moves its idle and first-byte deadlines on every request, while they pass
//! rarely. So the timer stays armed at an earlier deadline; when it fires before the real one,
//! it is moved there once. It never fires late: a deadline earlier than the timer moves it at
//! once.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::time::{Instant, Sleep};

/// Makes `deadline` the one `timer` keeps (see [`poll`]).
pub fn set(timer: Pin<&mut Sleep>, deadline: Instant) {
    if deadline < timer.deadline() {
        timer.reset(deadline);
    }
}

/// Ready once `deadline` has passed, where `timer` is armed for `deadline` or earlier.
pub fn poll(mut timer: Pin<&mut Sleep>, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
    while timer.as_mut().poll(cx).is_ready() {
        if timer.deadline() >= deadline {
            return Poll::Ready(());
        }
        timer.as_mut().reset(deadline);
    }
    Poll::Pending
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn passes(timer: Pin<&mut Sleep>, deadline: Instant) {
        let mut timer = timer;
        std::future::poll_fn(|cx| poll(timer.as_mut(), deadline, cx)).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_is_kept_without_moving_the_timer() {
        let start = Instant::now();
        let timer = tokio::time::sleep_until(start + Duration::from_secs(1));
        tokio::pin!(timer);
        let deadline = start + Duration::from_secs(5);
        set(timer.as_mut(), deadline);
        assert_eq!(timer.deadline(), start + Duration::from_secs(1));
        passes(timer.as_mut(), deadline).await;
        assert_eq!(Instant::now(), deadline);
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_moves_the_timer_at_once() {
        let start = Instant::now();
        let timer = tokio::time::sleep_until(start + Duration::from_secs(10));
        tokio::pin!(timer);
        let deadline = start + Duration::from_secs(2);
        set(timer.as_mut(), deadline);
        passes(timer.as_mut(), deadline).await;
        assert_eq!(Instant::now(), deadline);
    }

    #[tokio::test(start_paused = true)]
    async fn a_passed_timer_is_ready_again_only_for_its_deadline() {
        let start = Instant::now();
        let timer = tokio::time::sleep_until(start + Duration::from_secs(1));
        tokio::pin!(timer);
        passes(timer.as_mut(), start + Duration::from_secs(1)).await;
        // Already passed: ready at once for the same deadline, and waits for a later one.
        passes(timer.as_mut(), start + Duration::from_secs(1)).await;
        assert_eq!(Instant::now(), start + Duration::from_secs(1));
        passes(timer.as_mut(), start + Duration::from_secs(3)).await;
        assert_eq!(Instant::now(), start + Duration::from_secs(3));
    }
}
