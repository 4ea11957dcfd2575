//! Connections to origin servers (plain or TLS) and the idle pool that keeps them.
//! An idle pooled connection holds no buffers: only its socket (and TLS session).

use http::uri::{Authority, Scheme};
use rustls::pki_types::ServerName;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// One origin server: its address, how to reach it, and its idle connections.
pub struct Server {
    pub scheme: Scheme,
    pub authority: Authority,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    idle: Mutex<Vec<(Stream, Instant)>>,
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

    /// A pooled connection that has not idled out (most recent first), if any.
    pub fn checkout(&self, idle_timeout: Duration) -> Option<Stream> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let (stream, since) = idle.pop()?;
        // The most recent is the freshest: if it idled out, so did all the others.
        if since.elapsed() < idle_timeout {
            Some(stream)
        } else {
            idle.clear();
            None
        }
    }

    /// Returns a connection whose last exchange completed cleanly.
    pub fn checkin(&self, stream: Stream, max_idle: usize, idle_timeout: Duration) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        // Oldest first: drop the expired prefix (one clock read, not one per connection).
        let expired = idle.partition_point(|(_, since)| now.duration_since(*since) >= idle_timeout);
        idle.drain(..expired);
        if idle.len() < max_idle {
            idle.push((stream, now));
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
                None => Ok(Stream::Plain(tcp)),
                Some((connector, name)) => connector
                    .connect(name.clone(), tcp)
                    .await
                    .map(|tls| Stream::Tls(Box::new(tls)))
                    .map_err(|e| ConnectError::Failed(format!("TLS: {e}"))),
            }
        };
        tokio::time::timeout(limit, attempt)
            .await
            .unwrap_or(Err(ConnectError::Timeout))
    }
}
