//! The seam between the protocol servers (HTTP/1.1, h2) and the request path.

use crate::body::Body;
use http::{Request, Response};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Instant;

/// Facts about the client connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
    /// When the request's head began to arrive (set per request by the protocol server; the
    /// accept time until then): the start of its duration, read once for the whole path.
    pub received: Instant,
}

/// Answers requests. Implemented by the proxy; protocol servers are generic over it.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        req: Request<Body>,
        conn: ConnInfo,
    ) -> impl Future<Output = Response<Body>> + Send;
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
