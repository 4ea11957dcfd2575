//! Upstreams: pooled keep-alive connections to the origin servers, server choice and timeouts.
//!
//! An own HTTP/1.1 client rather than hyper's: the request's own task writes the request and
//! reads the response on a pooled connection, with no connection task or channel in between,
//! and an idle pooled connection holds no buffers.

mod body;
mod conn;
pub mod wire;

use crate::body::Body;
use crate::buffers;
use crate::transport::{Duplex, Upgraded};
use body::{PoolReturn, UpstreamBody};
use bytes::BytesMut;
use conn::{ConnectError, Io, Server, Stream};
use http::uri::Scheme;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use std::io::IoSlice;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use velox_config::UpstreamConfig;
use wire::{RequestFraming, ResponseFraming};

/// Largest response head accepted from an origin.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Room for a response head and the start of its body in one read.
const READ_HEAD_ROOM: usize = 8 * 1024;

/// A pooled connection idle for less than this is used for a request with a body without a
/// check: origins close idle connections after seconds (Node.js and Apache: 5 s).
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

pub struct Upstream {
    pub name: String,
    servers: Vec<Arc<Server>>,
    next: AtomicUsize,
    pub host_header: Option<HeaderValue>,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
}

/// Why a request to the origin failed, mapped to the status and reason the client sees.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("could not connect to the origin: {0}")]
    Connect(String),
    #[error("timed out connecting to the origin")]
    ConnectTimeout,
    #[error("the origin sent no response in time")]
    FirstByteTimeout,
    #[error("the origin failed: {0}")]
    Failed(String),
}

impl UpstreamError {
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::ConnectTimeout | UpstreamError::FirstByteTimeout => {
                StatusCode::GATEWAY_TIMEOUT
            }
            UpstreamError::Connect(_) | UpstreamError::Failed(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// The stable `X-Velox-Error` value.
    pub fn code(&self) -> &'static str {
        match self {
            UpstreamError::Connect(_) => "upstream-connect-failed",
            UpstreamError::ConnectTimeout => "upstream-connect-timeout",
            UpstreamError::FirstByteTimeout => "upstream-timeout",
            UpstreamError::Failed(_) => "upstream-failed",
        }
    }
}

impl From<ConnectError> for UpstreamError {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Timeout => UpstreamError::ConnectTimeout,
            ConnectError::Failed(why) => UpstreamError::Connect(why),
        }
    }
}

/// Response extension on a `101 Switching Protocols` from the origin: its side of the tunnel.
#[derive(Clone)]
pub struct OriginUpgrade(Arc<Mutex<Option<Upgraded>>>);

impl OriginUpgrade {
    pub fn take(&self) -> Option<Upgraded> {
        self.0.lock().ok()?.take()
    }
}

/// How one exchange on one connection failed.
enum Failure {
    /// A reused connection turned out closed before anything was received: safe to retry.
    Stale,
    Error(UpstreamError),
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> anyhow::Result<Self> {
        let needs_tls = config
            .servers
            .iter()
            .any(|u| u.scheme() == Some(&Scheme::HTTPS));
        let tls = if needs_tls {
            let mut tls = crate::tls::client_config(config.ca_file.as_deref())?;
            tls.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(Arc::new(tls))
        } else {
            None
        };
        let servers = config
            .servers
            .iter()
            .map(|uri| {
                let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
                let authority = uri.authority().cloned().ok_or_else(|| {
                    anyhow::anyhow!("upstream {} server {uri} has no host", config.name)
                })?;
                Server::new(scheme, authority, tls.clone()).map(Arc::new)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let host_header = config
            .host_header
            .as_deref()
            .map(HeaderValue::from_str)
            .transpose()?;
        Ok(Upstream {
            name: config.name.clone(),
            servers,
            next: AtomicUsize::new(0),
            host_header,
            connect_timeout: config.connect_timeout.get(),
            first_byte_timeout: config.first_byte_timeout.get(),
            idle_timeout: config.idle_timeout.get(),
            max_idle: config.max_idle_per_server,
        })
    }

    /// Round-robin over the servers; the load-balancing issue replaces this.
    fn pick(&self) -> &Arc<Server> {
        // One server needs no turn: the counter is a cache line every worker thread writes.
        if let [only] = self.servers.as_slice() {
            return only;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.servers.len();
        &self.servers[i]
    }

    /// Sends `request` (origin-form target, headers ready) to one server and returns the
    /// response as soon as its head arrives; the body streams from the connection. Interim (1xx)
    /// responses before it, other than 101, go to `on_interim`.
    pub async fn send(
        &self,
        request: Request<Body>,
        on_interim: &OnInterim<'_>,
    ) -> Result<Response<Body>, UpstreamError> {
        let server = self.pick();
        let (parts, body) = request.into_parts();
        let framing = if body.is_end_stream() {
            RequestFraming::Empty
        } else {
            match body.size_hint().exact() {
                Some(len) => RequestFraming::Length(len),
                None => RequestFraming::Chunked,
            }
        };
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut head = Vec::with_capacity(256 + parts.headers.len() * 48);
        wire::encode_request_head(&mut head, &parts.method, target, &parts.headers, framing);
        let mut body = (framing != RequestFraming::Empty).then_some(body);

        let (mut stream, mut reused) = match checkout(server, framing) {
            Some(stream) => (stream, true),
            // Connecting (TCP, maybe TLS) is boxed: pooled connections are the common case,
            // and the handshake's state would otherwise sit in every request's future.
            None => (Box::pin(server.connect(self.connect_timeout)).await?, false),
        };
        loop {
            match self
                .exchange(
                    server,
                    stream,
                    &head,
                    body.take(),
                    framing,
                    &parts.method,
                    reused,
                    on_interim,
                )
                .await
            {
                Ok(response) => return Ok(response),
                // Only a body-less request can be replayed on a fresh connection.
                Err(Failure::Stale) if framing == RequestFraming::Empty => {
                    stream = Box::pin(server.connect(self.connect_timeout)).await?;
                    reused = false;
                }
                Err(Failure::Stale) => {
                    return Err(UpstreamError::Failed(
                        "the pooled connection was closed".into(),
                    ))
                }
                Err(Failure::Error(e)) => return Err(e),
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &self,
        server: &Arc<Server>,
        mut stream: Stream,
        head: &[u8],
        body: Option<Body>,
        framing: RequestFraming,
        method: &Method,
        reused: bool,
        on_interim: &OnInterim<'_>,
    ) -> Result<Response<Body>, Failure> {
        let failed = |e: std::io::Error| Failure::Error(UpstreamError::Failed(e.to_string()));
        if let Err(e) = stream.write_all(head).await {
            return Err(if reused { Failure::Stale } else { failed(e) });
        }
        if let Some(body) = body {
            // Boxed for the same reason: most requests have no body.
            Box::pin(send_body(&mut stream, body, framing))
                .await
                .map_err(failed)?;
        }
        stream.flush().await.map_err(failed)?;

        // The first-byte clock starts once the request, body included, is sent.
        let mut buf = buffers::ORIGIN.with(|spares| spares.take(READ_HEAD_ROOM));
        let (io, first_byte) = stream.parts();
        let read = read_final_head(io, &mut buf, on_interim);
        let response_head = match first_byte.within(self.first_byte_timeout, read).await {
            None => return Err(Failure::Error(UpstreamError::FirstByteTimeout)),
            Some(Err(HeadFailure::ClosedEarly)) if reused => return Err(Failure::Stale),
            Some(Err(HeadFailure::ClosedEarly)) => {
                return Err(Failure::Error(UpstreamError::Failed(
                    "the origin closed the connection".into(),
                )))
            }
            Some(Err(HeadFailure::Io(e))) => return Err(failed(e)),
            Some(Err(HeadFailure::Wire(e))) => {
                return Err(Failure::Error(UpstreamError::Failed(e.to_string())))
            }
            Some(Ok(head)) => head,
        };
        let mut response = Response::new(crate::body::empty());
        *response.status_mut() = response_head.status;
        if response_head.status == StatusCode::SWITCHING_PROTOCOLS {
            let upgraded = Upgraded {
                io: Box::new(stream) as Box<dyn Duplex>,
                leftover: buf.freeze(),
                done: None,
            };
            response
                .extensions_mut()
                .insert(OriginUpgrade(Arc::new(Mutex::new(Some(upgraded)))));
            *response.headers_mut() = response_head.headers;
            return Ok(response);
        }
        let body_framing = wire::response_framing(method, &response_head)
            .map_err(|e| Failure::Error(UpstreamError::Failed(e.to_string())))?;
        let idle_limit = conn::idle_limit(self.idle_timeout, response_head.keep_alive.timeout);
        let reusable = !response_head.close
            && body_framing != ResponseFraming::UntilClose
            && !idle_limit.is_zero();
        let pool = reusable.then(|| PoolReturn {
            server: server.clone(),
            max_idle: self.max_idle,
            idle_limit,
        });
        *response.headers_mut() = response_head.headers;
        if body_framing == ResponseFraming::Empty {
            if let Some(pool) = pool.filter(|_| buf.is_empty()) {
                pool.put(stream);
                buffers::ORIGIN.with(|spares| spares.give(buf));
            }
            return Ok(response);
        }
        *response.body_mut() =
            crate::body::boxed(UpstreamBody::new(stream, buf, body_framing, pool));
        Ok(response)
    }
}

/// A pooled connection for a request. A body-less request that meets a closed one is retried,
/// but a body cannot be replayed once sent: for one, a connection that idled long enough for
/// the origin to close it is checked first (a syscall only body requests pay).
fn checkout(server: &Server, framing: RequestFraming) -> Option<Stream> {
    loop {
        let (stream, idle) = server.checkout()?;
        if framing == RequestFraming::Empty || idle < CHECK_IDLE_AFTER || stream.seems_open() {
            return Some(stream);
        }
    }
}

enum HeadFailure {
    ClosedEarly,
    Io(std::io::Error),
    Wire(wire::WireError),
}

/// What to do with an interim (1xx) response: the proxy relays it (see `interim`).
pub type OnInterim<'a> = dyn Fn(StatusCode, &HeaderMap) + Sync + 'a;

/// Reads response heads until a final one; 1xx other than 101 are interim, given to
/// `on_interim`.
async fn read_final_head(
    stream: &mut Io,
    buf: &mut BytesMut,
    on_interim: &OnInterim<'_>,
) -> Result<wire::ResponseHead, HeadFailure> {
    let mut received_any = false;
    loop {
        match wire::parse_response_head(buf, MAX_RESPONSE_HEAD).map_err(HeadFailure::Wire)? {
            Some(head)
                if head.status.is_informational()
                    && head.status != StatusCode::SWITCHING_PROTOCOLS =>
            {
                on_interim(head.status, &head.headers);
                continue;
            }
            Some(head) => return Ok(head),
            None => {}
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(READ_HEAD_ROOM);
        }
        match stream.read_buf(buf).await {
            Ok(0) if !received_any => return Err(HeadFailure::ClosedEarly),
            Ok(0) => {
                return Err(HeadFailure::Wire(wire::WireError::Malformed(
                    "connection closed inside the head",
                )))
            }
            Ok(_) => received_any = true,
            Err(e) if !received_any && e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Err(HeadFailure::ClosedEarly)
            }
            Err(e) => return Err(HeadFailure::Io(e)),
        }
    }
}

/// Streams the request body, chunk-encoding it when its length is unknown.
async fn send_body(
    stream: &mut Stream,
    mut body: Body,
    framing: RequestFraming,
) -> std::io::Result<()> {
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(std::io::Error::other)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if framing == RequestFraming::Chunked {
            let size = format!("{:x}\r\n", data.len());
            let mut parts = [
                IoSlice::new(size.as_bytes()),
                IoSlice::new(&data),
                IoSlice::new(b"\r\n"),
            ];
            crate::h1::write::write_all_vectored(stream, &mut parts).await?;
        } else {
            stream.write_all(&data).await?;
        }
    }
    if framing == RequestFraming::Chunked {
        stream.write_all(b"0\r\n\r\n").await?;
    }
    Ok(())
}
