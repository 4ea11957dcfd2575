//! `velox_demo`: the demo origin Velox sits in front of in `velox demo`, and the fixture
//! most integration tests and benchmarks run against.
//!
//! It is a deliberately *unoptimised* small media site (weak, uneven caching headers,
//! large unoptimised images, slow JSON APIs, no compression anywhere) plus test
//! endpoints. It speaks HTTP/1.1 and h2c (prior knowledge) on the same listener.
//!
//! Generated binary bodies (`/download/big.bin`, `/bytes/{n}`) follow one pattern: the
//! byte at offset `i` is `(i % 251) as u8` ([`pattern_byte`]).
//!
//! See [`serve`] and the endpoint table in [`Route`].

mod api;
mod conditional;
mod download;
mod fixtures;
mod images;
mod pages;
mod realtime;
mod resp;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::header::{
    HeaderValue, CONTENT_LENGTH, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, SERVER,
};
use http::{Method, Request, Response, StatusCode};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use download::{
    parse_range, pattern_byte, RangeOutcome, BIG_BIN_LEN, CHUNK_SIZE, HLS_SEGMENTS, MAX_BYTES_LEN,
};
pub use fixtures::{byte_sum, TRUNCATED_DECLARED, TRUNCATED_SENT};

use resp::Body;

/// How long in-flight connections get to finish after shutdown before they are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Serve the demo site on `listener` until `shutdown` resolves, then stop accepting and
/// return (in-flight connections may be dropped after ~1s).
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(serve_connection(stream, builder.clone(), stop_rx.clone()));
                }
                Err(e) => {
                    // Out of descriptors and friends: back off briefly, keep serving.
                    tracing::warn!(error = %e, "velox-demo accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
    Ok(())
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    builder: Arc<auto::Builder<TokioExecutor>>,
    mut stop: watch::Receiver<bool>,
) {
    let ctx = Ctx { stop: stop.clone() };
    let svc = service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(handle(req, ctx).await) }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "velox-demo connection ended with an error");
            }
        }
        _ = async { stop.wait_for(|stopped| *stopped).await.is_ok() } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Per-connection context handed to handlers.
#[derive(Clone)]
struct Ctx {
    stop: watch::Receiver<bool>,
}

/// Every endpoint of the demo origin.
///
/// | path | methods | notes |
/// |---|---|---|
/// | `/` | GET, HEAD | home page, no Cache-Control |
/// | `/articles/{1..6}` | GET, HEAD | odd ids `max-age=60`; ids 1, 4, 5 Last-Modified |
/// | `/static/site.css` | GET, HEAD | `max-age=300`, ETag |
/// | `/static/app.js` | GET, HEAD | Last-Modified only |
/// | `/images/hero.jpg`, `/images/photo-{1..4}.jpg`, `/images/diagram.png` | GET, HEAD | ETag; max-age on hero, photo-1, photo-2 |
/// | `/api/search?q=` | GET, HEAD | 150 ms, `no-cache` |
/// | `/api/recommendations?user=` | GET, HEAD | 150 ms, `max-age=30` |
/// | `/download/big.bin` | GET, HEAD | 100 MiB pattern, single ranges, If-Range |
/// | `/hls/playlist.m3u8`, `/hls/segment-{0..9}.ts` | GET, HEAD | VOD playlist, ~256 KiB segments |
/// | `/ws` | GET | WebSocket echo |
/// | `/events?interval_ms=&count=` | GET, HEAD | SSE clock |
/// | `/bytes/{n}` | GET, HEAD | n pattern bytes (n ≤ 8 GiB), `no-store` |
/// | `/echo` | any | request as JSON |
/// | `/upload` | POST, PUT | `{"bytes", "checksum"}` |
/// | `/status/{code}` | GET, HEAD | that status |
/// | `/slow?ms=` | GET, HEAD | waits before the headers |
/// | `/truncated` | GET, HEAD | CL 100000, 50000 bytes, then aborts |
/// | `/headers-hop` | GET, HEAD | hop-by-hop headers + `X-End-To-End: 1` |
/// | `/cache/{anything}` | GET, HEAD | `public, max-age=60`, ETag |
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Home,
    Article(u32),
    Css,
    Js,
    Image(String),
    Search,
    Recommendations,
    BigBin,
    Playlist,
    Segment(u32),
    WebSocket,
    Events,
    /// `None` when `n` is not a decimal number.
    Bytes(Option<u64>),
    Echo,
    Upload,
    /// `None` when the code is not a number.
    Status(Option<u16>),
    Slow,
    Truncated,
    HeadersHop,
    Cache,
    NotFound,
}

impl Route {
    /// Classify a request path. Pure.
    pub fn classify(path: &str) -> Route {
        match path {
            "/" | "/index.html" => return Route::Home,
            "/static/site.css" => return Route::Css,
            "/static/app.js" => return Route::Js,
            "/api/search" => return Route::Search,
            "/api/recommendations" => return Route::Recommendations,
            "/download/big.bin" => return Route::BigBin,
            "/hls/playlist.m3u8" => return Route::Playlist,
            "/ws" => return Route::WebSocket,
            "/events" => return Route::Events,
            "/echo" => return Route::Echo,
            "/upload" => return Route::Upload,
            "/slow" => return Route::Slow,
            "/truncated" => return Route::Truncated,
            "/headers-hop" => return Route::HeadersHop,
            _ => {}
        }
        let number = |s: &str| -> Option<u64> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                s.parse().ok()
            }
        };
        if let Some(id) = path.strip_prefix("/articles/") {
            return match number(id) {
                Some(n) if (1..=u64::from(pages::ARTICLES)).contains(&n) => {
                    Route::Article(n as u32)
                }
                _ => Route::NotFound,
            };
        }
        if let Some(name) = path.strip_prefix("/images/") {
            return Route::Image(name.to_owned());
        }
        if let Some(seg) = path
            .strip_prefix("/hls/segment-")
            .and_then(|s| s.strip_suffix(".ts"))
        {
            return match number(seg) {
                Some(n) if n < u64::from(HLS_SEGMENTS) => Route::Segment(n as u32),
                _ => Route::NotFound,
            };
        }
        if let Some(n) = path.strip_prefix("/bytes/") {
            return Route::Bytes(number(n));
        }
        if let Some(code) = path.strip_prefix("/status/") {
            return Route::Status(number(code).and_then(|c| u16::try_from(c).ok()));
        }
        if let Some(rest) = path.strip_prefix("/cache/") {
            if !rest.is_empty() {
                return Route::Cache;
            }
        }
        Route::NotFound
    }

    /// The `Allow` value when the method is restricted; `None` for any method.
    fn allow(&self) -> Option<&'static str> {
        match self {
            Route::Echo | Route::NotFound => None,
            Route::Upload => Some("POST, PUT"),
            Route::WebSocket => Some("GET"),
            _ => Some("GET, HEAD"),
        }
    }
}

fn method_allowed(allow: &str, method: &Method) -> bool {
    allow.split(", ").any(|m| m == method.as_str())
}

async fn handle(req: Request<Incoming>, ctx: Ctx) -> Response<Body> {
    let method = req.method().clone();
    let inm = req.headers().get(IF_NONE_MATCH).cloned();
    let ims = req.headers().get(IF_MODIFIED_SINCE).cloned();

    let mut resp = route(req, ctx).await;

    if (method == Method::GET || method == Method::HEAD)
        && resp.status() == StatusCode::OK
        && conditional::not_modified(
            inm.as_ref(),
            ims.as_ref(),
            resp.headers().get(ETAG),
            resp.headers().get(LAST_MODIFIED),
        )
    {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        *resp.body_mut() = resp::empty();
        resp.headers_mut().remove(CONTENT_LENGTH);
        resp.headers_mut().remove(http::header::CONTENT_TYPE);
    }
    if method == Method::HEAD {
        if !resp.headers().contains_key(CONTENT_LENGTH) && resp.status() != StatusCode::NOT_MODIFIED
        {
            if let Some(len) = resp.body().size_hint().exact() {
                resp.headers_mut()
                    .insert(CONTENT_LENGTH, HeaderValue::from(len));
            }
        }
        *resp.body_mut() = resp::empty();
    }
    resp.headers_mut()
        .insert(SERVER, HeaderValue::from_static("velox-demo"));
    resp
}

async fn route(req: Request<Incoming>, ctx: Ctx) -> Response<Body> {
    let route = Route::classify(req.uri().path());
    if let Some(allow) = route.allow() {
        if !method_allowed(allow, req.method()) {
            return resp::method_not_allowed(allow);
        }
    }
    let uri = req.uri();
    match route {
        Route::Home => pages::home(),
        Route::Article(id) => pages::article(id),
        Route::Css => pages::css(),
        Route::Js => pages::app_js(),
        Route::Image(name) => images::image(&name).await,
        Route::Search => api::search(uri).await,
        Route::Recommendations => api::recommendations(uri).await,
        Route::BigBin => download::big_bin(req.headers()),
        Route::Playlist => download::playlist(),
        Route::Segment(i) => download::segment(i),
        Route::WebSocket => realtime::websocket(req, ctx.stop),
        Route::Events => realtime::events(uri),
        Route::Bytes(n) => download::bytes_n(n),
        Route::Echo => fixtures::echo(req).await,
        Route::Upload => fixtures::upload(req).await,
        Route::Status(code) => fixtures::status(code),
        Route::Slow => fixtures::slow(uri).await,
        Route::Truncated => fixtures::truncated(),
        Route::HeadersHop => fixtures::headers_hop(),
        Route::Cache => fixtures::cache(uri.path(), req.headers()),
        Route::NotFound => resp::not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify() {
        assert_eq!(Route::classify("/"), Route::Home);
        assert_eq!(Route::classify("/articles/3"), Route::Article(3));
        assert_eq!(Route::classify("/articles/7"), Route::NotFound);
        assert_eq!(Route::classify("/articles/0"), Route::NotFound);
        assert_eq!(Route::classify("/articles/x"), Route::NotFound);
        assert_eq!(Route::classify("/hls/segment-9.ts"), Route::Segment(9));
        assert_eq!(Route::classify("/hls/segment-10.ts"), Route::NotFound);
        assert_eq!(Route::classify("/bytes/1024"), Route::Bytes(Some(1024)));
        assert_eq!(Route::classify("/bytes/-1"), Route::Bytes(None));
        assert_eq!(
            Route::classify("/bytes/99999999999999999999999"),
            Route::Bytes(None)
        );
        assert_eq!(Route::classify("/status/503"), Route::Status(Some(503)));
        assert_eq!(Route::classify("/status/70000"), Route::Status(None));
        assert_eq!(Route::classify("/cache/a/b"), Route::Cache);
        assert_eq!(Route::classify("/cache/"), Route::NotFound);
        assert_eq!(Route::classify("/nope"), Route::NotFound);
        assert_eq!(
            Route::classify("/images/hero.jpg"),
            Route::Image("hero.jpg".into())
        );
    }

    #[test]
    fn methods() {
        assert!(method_allowed("GET, HEAD", &Method::HEAD));
        assert!(!method_allowed("GET, HEAD", &Method::POST));
        assert!(method_allowed("POST, PUT", &Method::PUT));
    }
}
