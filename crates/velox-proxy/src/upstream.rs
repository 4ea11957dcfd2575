//! Upstreams: pooled keep-alive clients to the origin servers, server choice and timeouts.

use crate::body::Body;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use velox_config::UpstreamConfig;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

pub struct Upstream {
    pub name: String,
    servers: Vec<(Scheme, Authority)>,
    next: AtomicUsize,
    client: Client<Connector, Body>,
    pub host_header: Option<HeaderValue>,
    first_byte_timeout: Duration,
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

    fn classify(error: hyper_util::client::legacy::Error) -> Self {
        let timed_out = std::iter::successors(std::error::Error::source(&error), |e| e.source())
            .filter_map(|e| e.downcast_ref::<std::io::Error>())
            .any(|e| e.kind() == std::io::ErrorKind::TimedOut);
        let detail = std::iter::successors(std::error::Error::source(&error), |e| e.source())
            .last()
            .map(|e| e.to_string())
            .unwrap_or_else(|| error.to_string());
        match (error.is_connect(), timed_out) {
            (true, true) => UpstreamError::ConnectTimeout,
            (true, false) => UpstreamError::Connect(detail),
            _ => UpstreamError::Failed(detail),
        }
    }
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> anyhow::Result<Self> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout.get()));
        let tls = crate::tls::client_config(config.ca_file.as_deref())?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.idle_timeout.get())
            .pool_max_idle_per_host(config.max_idle_per_server)
            .build(connector);
        let servers = config
            .servers
            .iter()
            .map(|uri| {
                let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
                let authority = uri.authority().cloned().ok_or_else(|| {
                    anyhow::anyhow!("upstream {} server {uri} has no host", config.name)
                })?;
                Ok((scheme, authority))
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
            client,
            host_header,
            first_byte_timeout: config.first_byte_timeout.get(),
        })
    }

    /// Round-robin over the servers; the load-balancing issue replaces this.
    fn pick(&self) -> &(Scheme, Authority) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.servers.len();
        &self.servers[i]
    }

    /// Sends `request` (origin-form target) to one server; waits at most the first-byte timeout for the head.
    pub async fn send(
        &self,
        mut request: Request<Body>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let (scheme, authority) = self.pick();
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        *request.uri_mut() = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| UpstreamError::Failed(e.to_string()))?;
        // The first-byte clock starts once the request body is sent: a slow upload is not a slow origin.
        let (request, body_sent) = notify_when_sent(request);
        let response = self.client.request(request);
        tokio::pin!(response);
        tokio::select! {
            biased;
            early = &mut response => return early.map_err(UpstreamError::classify),
            _ = body_sent => {}
        }
        match tokio::time::timeout(self.first_byte_timeout, response).await {
            Err(_) => Err(UpstreamError::FirstByteTimeout),
            Ok(Err(e)) => Err(UpstreamError::classify(e)),
            Ok(Ok(response)) => Ok(response),
        }
    }
}

/// Wraps the request body so that the returned future resolves once it has been sent whole
/// (or abandoned); at once for an empty body.
fn notify_when_sent(
    request: Request<Body>,
) -> (Request<Body>, impl std::future::Future<Output = ()>) {
    let (sent, when_sent) = tokio::sync::oneshot::channel::<()>();
    let request = if request.body().is_end_stream() {
        drop(sent);
        request
    } else {
        request.map(|inner| {
            crate::body::boxed(SentSignal {
                inner,
                sent: Some(sent),
            })
        })
    };
    (request, async move {
        let _ = when_sent.await;
    })
}

struct SentSignal {
    inner: Body,
    sent: Option<tokio::sync::oneshot::Sender<()>>,
}

impl http_body::Body for SentSignal {
    type Data = bytes::Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        let finished = match &polled {
            std::task::Poll::Ready(None) | std::task::Poll::Ready(Some(Err(_))) => true,
            std::task::Poll::Ready(Some(Ok(_))) => self.inner.is_end_stream(),
            std::task::Poll::Pending => false,
        };
        if finished {
            self.sent.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
