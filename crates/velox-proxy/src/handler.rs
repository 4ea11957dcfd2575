//! The seam between the protocol servers (HTTP/1.1, h2) and the request path.

use crate::body::Body;
use http::{Request, Response};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Instant;
use velox_observe::GeneratedId;

/// Facts about the client connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
    /// When the request's head began to arrive (set per request by the protocol server; the
    /// accept time until then): the start of its duration, read once for the whole path.
    pub received: Instant,
    /// The request may carry an `X-Request-Id` field: false only when the protocol server saw
    /// none while parsing the head (HTTP/1.1), which spares the request a hashed lookup.
    pub may_carry_request_id: bool,
}

/// Answers requests. Implemented by the proxy; protocol servers are generic over it.
pub trait Handler: Send + Sync + 'static {
    /// The response to `req`; `fields` takes what the protocol server adds to its head itself.
    fn handle(
        &self,
        req: Request<Body>,
        conn: ConnInfo,
        fields: &mut ServerFields,
    ) -> impl Future<Output = Response<Body>> + Send;
}

/// Response fields a handler leaves to the protocol server, apart from the response: HTTP/1.1
/// formats them straight into the head. As a header-map entry (an allocation, a hashed insert)
/// the request id cost a cache hit about 500 instructions, 3% of its own (BENCHMARKS.md). Apart
/// because a `Response` is 128 bytes, the most the compiler moves without a `memcpy` call.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerFields {
    /// An id Velox generated for the request, sent as `X-Request-Id` (the response's header map
    /// has none then: `Scope::finish` takes off any the origin sent).
    pub request_id: Option<GeneratedId>,
}

impl ServerFields {
    /// Adds the fields to `response`'s header map (for a server that writes heads from it).
    pub fn add_to<B>(self, response: &mut Response<B>) {
        if let Some(id) = self.request_id {
            (response.headers_mut()).insert(&velox_observe::X_REQUEST_ID, id.header_value());
        }
    }
}

/// Per-connection limits, fixed when the connection is accepted.
#[derive(Debug, Clone)]
pub struct ConnSettings {
    pub header_read_timeout: std::time::Duration,
    pub idle_timeout: std::time::Duration,
    pub max_header_bytes: usize,
    /// 0 means unlimited.
    pub max_body_bytes: u64,
}
