//! What a downstream connection is, and what an upgraded (tunnelled) connection hands over.

use bytes::Bytes;
use std::future::Future;
use std::io;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A byte stream a client connected over (plain TCP or TLS).
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Waits until a read would make progress, without holding a read buffer:
    /// this is what keeps an idle keep-alive connection down to a few hundred bytes.
    fn ready_to_read(&self) -> impl Future<Output = io::Result<()>> + Send {
        async { Ok(()) }
    }
}

impl Transport for TcpStream {
    fn ready_to_read(&self) -> impl Future<Output = io::Result<()>> + Send {
        // The socket's own reader slot, which `poll_read` uses as well: `readable()` would link
        // a waiter into a list and clone the waker for every wait, and unlink it afterwards.
        std::future::poll_fn(|cx| self.poll_read_ready(cx))
    }
}

// TLS may hold decrypted bytes the socket no longer shows as readable, so it reads directly.
impl Transport for tokio_rustls::server::TlsStream<TcpStream> {}

/// Object-safe alias for any duplex byte stream.
pub trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

/// A connection handed over after a `101 Switching Protocols` response: the stream plus any
/// bytes the peer already sent past the head.
pub struct Upgraded {
    pub io: Box<dyn Duplex>,
    pub leftover: Bytes,
    /// Dropped with the tunnel: the client connection's task waits for it, so the tunnel counts
    /// as an open connection (the drain on shutdown waits for it, within the grace period).
    pub done: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Request extension: resolves to the client's connection once the 101 has been written.
/// (Extensions must be `Clone`; only the first taker gets the receiver.)
#[derive(Clone)]
pub struct OnUpgrade(
    std::sync::Arc<std::sync::Mutex<Option<tokio::sync::oneshot::Receiver<Upgraded>>>>,
);

impl OnUpgrade {
    pub fn new(receiver: tokio::sync::oneshot::Receiver<Upgraded>) -> Self {
        OnUpgrade(std::sync::Arc::new(std::sync::Mutex::new(Some(receiver))))
    }

    /// Waits for the client connection; `None` if it never switched or was already taken.
    pub async fn upgraded(self) -> Option<Upgraded> {
        let receiver = self.0.lock().ok()?.take()?;
        receiver.await.ok()
    }
}

/// A stream that first replays bytes already read from it (the sniffed h2 preface).
pub struct Rewind<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Rewind<T> {
    pub fn new(inner: T, prefix: Bytes) -> Self {
        Rewind { prefix, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let head = self.prefix.split_to(n);
            buf.put_slice(&head);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
