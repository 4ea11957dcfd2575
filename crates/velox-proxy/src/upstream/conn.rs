//! Connections to origin servers (plain or TLS) and the idle pool that keeps them.
//! An idle pooled connection holds no buffers: only its socket (and TLS session).

use crate::{clock, deadline};
use http::uri::{Authority, Scheme};
use rustls::pki_types::ServerName;
use socket2::SockRef;
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

pub enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// A connection to an origin, with the timer that bounds its wait for each response head.
pub struct Stream {
    pub io: Io,
    first_byte: FirstByteTimer,
}

impl Stream {
    fn new(io: Io) -> Stream {
        Stream {
            io,
            first_byte: FirstByteTimer(None),
        }
    }

    /// The socket and the first-byte timer, borrowed apart.
    pub fn parts(&mut self) -> (&mut Io, &mut FirstByteTimer) {
        (&mut self.io, &mut self.first_byte)
    }
}

/// One connection's first-byte timer, armed for each request and kept, still registered,
/// between them (see `crate::deadline`): a fresh timer per request takes the timer wheel's lock
/// twice (to insert it and to remove it). When it fires on an idle connection, it wakes its
/// last task once, harmlessly.
pub struct FirstByteTimer(Option<Pin<Box<Sleep>>>);

impl FirstByteTimer {
    /// Waits for `read` for at most `limit`; `None` if the time ran out first.
    pub async fn within<F: Future>(&mut self, limit: Duration, read: F) -> Option<F::Output> {
        let now = tokio::time::Instant::from_std(clock::coarse_now());
        // As `tokio::time::timeout` does: a limit past any clock is a very distant deadline.
        let until = now
            .checked_add(limit)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30));
        let timer = match &mut self.0 {
            Some(timer) => {
                deadline::set(timer.as_mut(), until);
                timer
            }
            slot @ None => slot.insert(Box::pin(tokio::time::sleep_until(until))),
        };
        let mut read = std::pin::pin!(read);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = read.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            deadline::poll(timer.as_mut(), until, cx).map(|()| None)
        })
        .await
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl Stream {
    /// Whether the origin has neither closed the connection nor sent anything unasked (a
    /// TLS close_notify included): one non-blocking peek at the socket, which consumes nothing.
    pub fn seems_open(&self) -> bool {
        let tcp = match &self.io {
            Io::Plain(s) => s,
            Io::Tls(s) => s.get_ref().0,
        };
        let mut byte = [MaybeUninit::uninit()];
        // A real syscall, not tokio's cached readiness: a FIN that just arrived counts too.
        let peeked = SockRef::from(tcp).peek(&mut byte);
        matches!(peeked, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

/// How long a connection may idle in the pool: the configured limit, or less when the origin
/// announced its own idle timeout (`Keep-Alive: timeout=N`). The margin (20 %, at most 1 s)
/// covers the origin's clock starting before ours and the next request's trip to it.
pub fn idle_limit(configured: Duration, announced_secs: Option<u64>) -> Duration {
    let Some(secs) = announced_secs else {
        return configured;
    };
    let announced = Duration::from_secs(secs);
    configured.min(announced - (announced / 5).min(Duration::from_secs(1)))
}

/// A connection waiting in the pool.
struct Idle {
    stream: Stream,
    since: Instant,
    /// Usable for this long after `since` (see `idle_limit`).
    limit: Duration,
}

impl Idle {
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.since) >= self.limit
    }
}

/// One origin server: its address, how to reach it, and its idle connections.
pub struct Server {
    pub scheme: Scheme,
    pub authority: Authority,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    idle: Mutex<Vec<Idle>>,
}

/// Why a connection attempt failed.
pub enum ConnectError {
    Timeout,
    Failed(String),
}

impl Server {
    pub fn new(
        scheme: Scheme,
        authority: Authority,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> anyhow::Result<Server> {
        let tls = match (scheme == Scheme::HTTPS, tls) {
            (true, Some(config)) => {
                let name = ServerName::try_from(
                    authority
                        .host()
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_owned(),
                )?;
                Some((TlsConnector::from(config), name))
            }
            _ => None,
        };
        Ok(Server {
            scheme,
            authority,
            tls,
            idle: Mutex::new(Vec::new()),
        })
    }

    fn port(&self) -> u16 {
        self.authority
            .port_u16()
            .unwrap_or(if self.scheme == Scheme::HTTPS {
                443
            } else {
                80
            })
    }

    /// A pooled connection that has not idled out (most recent first) and how long it idled.
    pub fn checkout(&self) -> Option<(Stream, Duration)> {
        let now = clock::coarse_now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        // Limits differ per connection, so an expired one may sit above a live one.
        while let Some(entry) = idle.pop() {
            if !entry.expired(now) {
                return Some((entry.stream, now.duration_since(entry.since)));
            }
        }
        None
    }

    /// Returns a connection whose last exchange completed cleanly, to be used for at most
    /// `limit` from now.
    pub fn checkin(&self, stream: Stream, max_idle: usize, limit: Duration) {
        let now = clock::coarse_now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        // Oldest first: drop the expired prefix; usually nothing, so one comparison.
        let expired = idle.iter().take_while(|entry| entry.expired(now)).count();
        idle.drain(..expired);
        if idle.len() < max_idle {
            idle.push(Idle {
                stream,
                since: now,
                limit,
            });
        }
    }

    /// Opens a new connection (TCP, then TLS for https) within `limit`.
    pub async fn connect(&self, limit: Duration) -> Result<Stream, ConnectError> {
        let attempt = async {
            let host = self
                .authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']');
            let tcp = TcpStream::connect((host, self.port()))
                .await
                .map_err(|e| ConnectError::Failed(e.to_string()))?;
            let _ = tcp.set_nodelay(true);
            match &self.tls {
                None => Ok(Stream::new(Io::Plain(tcp))),
                Some((connector, name)) => connector
                    .connect(name.clone(), tcp)
                    .await
                    .map(|tls| Stream::new(Io::Tls(Box::new(tls))))
                    .map_err(|e| ConnectError::Failed(format!("TLS: {e}"))),
            }
        };
        tokio::time::timeout(limit, attempt)
            .await
            .unwrap_or(Err(ConnectError::Timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_first_byte_timer_times_each_wait_afresh() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let limit = Duration::from_millis(100);
            let mut timer = FirstByteTimer(None);
            assert_eq!(timer.within(limit, async { 1 }).await, Some(1));
            // The kept timer passes its deadline while nothing waits on it.
            tokio::time::sleep(Duration::from_millis(150)).await;
            let later = tokio::time::sleep(Duration::from_millis(50));
            assert_eq!(timer.within(limit, later).await, Some(()));
            for _ in 0..3 {
                let started = Instant::now();
                let never = std::future::pending::<()>();
                assert_eq!(timer.within(limit, never).await, None);
                let waited = started.elapsed();
                assert!(waited >= limit && waited < limit * 5, "{waited:?}");
            }
            assert_eq!(timer.within(Duration::MAX, async { 2 }).await, Some(2));
        });
    }

    #[test]
    fn idle_limit_stays_inside_the_announced_timeout() {
        let configured = Duration::from_secs(90);
        assert_eq!(idle_limit(configured, None), configured);
        // Node.js and Apache announce 5 s: 1 s margin.
        assert_eq!(idle_limit(configured, Some(5)), Duration::from_secs(4));
        // Short timeouts keep 80 %.
        assert_eq!(idle_limit(configured, Some(1)), Duration::from_millis(800));
        assert_eq!(idle_limit(configured, Some(0)), Duration::ZERO);
        // The configured limit still caps a generous origin.
        assert_eq!(idle_limit(configured, Some(3600)), configured);
        assert_eq!(idle_limit(configured, Some(u64::MAX)), configured);
    }
}
