//! Busy polling (`server.busy_poll`): worker threads that never sleep in the poller.
//!
//! A worker with nothing to do normally blocks in `epoll_wait` and its CPU halts; the next
//! packet then has to wake the CPU first. On a virtual machine that wake-up is tens of
//! microseconds, and a proxied request waits for two of them (the client's request and the
//! origin's answer). A spinner task keeps each worker's run queue non-empty by yielding in a
//! loop: the scheduler then checks the sockets with a zero timeout between its tasks instead of
//! sleeping, so no packet waits for a wake-up. The price is a CPU kept at 100% per worker.

use tokio::sync::watch;

/// The spinners of one runtime; dropping this stops them.
pub struct BusyPoll {
    on: watch::Sender<bool>,
}

impl BusyPoll {
    /// Spawns one spinner per worker of the current runtime, spinning while `on`. On a
    /// multi-threaded runtime the spinners are ordinary tasks: work stealing spreads them out
    /// over the workers, about one each.
    pub fn start(on: bool) -> BusyPoll {
        let (on, watching) = watch::channel(on);
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        for _ in 0..workers {
            tokio::spawn(spin(watching.clone()));
        }
        BusyPoll { on }
    }

    /// Turns busy polling on or off (a reload).
    pub fn set(&self, on: bool) {
        self.on
            .send_if_modified(|current| std::mem::replace(current, on) != on);
    }
}

async fn spin(mut on: watch::Receiver<bool>) {
    loop {
        // Err: the `BusyPoll` is gone.
        match on.has_changed() {
            Err(_) => return,
            Ok(_) if *on.borrow_and_update() => tokio::task::yield_now().await,
            Ok(_) => {
                if on.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// CPU time this thread has used.
    fn thread_cpu() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes only the timespec it is given.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    /// The worker's CPU time while the runtime waits `idle` for a timer and nothing else.
    async fn cpu_while_idle(idle: Duration) -> Duration {
        let before = thread_cpu();
        tokio::time::sleep(idle).await;
        thread_cpu() - before
    }

    #[test]
    fn a_busy_worker_spins_while_idle_and_sleeps_once_turned_off() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let idle = Duration::from_millis(300);
            let poll = BusyPoll::start(true);
            let busy = cpu_while_idle(idle).await;
            // All of it unless the machine is loaded: the thread never blocks.
            assert!(busy > idle / 4, "spinning used only {busy:?} of {idle:?}");

            poll.set(false);
            let quiet = cpu_while_idle(idle).await;
            assert!(
                quiet < idle / 20,
                "turned off, the worker still used {quiet:?}"
            );

            poll.set(true);
            let again = cpu_while_idle(idle).await;
            assert!(again > idle / 4, "turned back on, it used only {again:?}");

            drop(poll);
            let stopped = cpu_while_idle(idle).await;
            assert!(
                stopped < idle / 20,
                "after the drop the worker still used {stopped:?}"
            );
        });
    }

    #[test]
    fn timers_and_sockets_keep_working_while_spinning() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let _poll = BusyPoll::start(true);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let (mut conn, _) = listener.accept().await.unwrap();
                conn.write_all(b"pong").await.unwrap();
            });
            let started = std::time::Instant::now();
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(started.elapsed() >= Duration::from_millis(50));
            let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut got = Vec::new();
            use tokio::io::AsyncReadExt;
            tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut got))
                .await
                .expect("the spinner starved the socket")
                .unwrap();
            assert_eq!(got, b"pong");
            server.await.unwrap();
        });
    }
}
