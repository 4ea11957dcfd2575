//! Velox observability: Prometheus metrics, the access log, request ids, Server-Timing and the
//! live statistics behind the dashboard.
//!
//! The request path touches this crate twice, both cheap: [`Scope::begin`] when a request is
//! routed (request id, sampling decision) and [`Scope::finish`] when the response head is ready
//! (reads the outcome from `Cache-Status`, adds `X-Request-Id` / `Server-Timing`, and records a
//! small response at once, or wraps a longer body so that bytes and total duration are recorded
//! when it ends). Recording is a few plain adds to the thread's own cells ([`metrics`]); the
//! access log's record is copied into a batch that a writer thread formats and writes.
//!
//! An [`Observer`] lives as long as the process (counters survive reloads); a [`Scope`] is built
//! per configuration and maps route and upstream indexes to their metric cells.

pub mod access_log;
pub mod cache_status;
pub mod json_line;
pub mod log_file;
pub mod metrics;
pub mod request_id;
pub mod topk;

use access_log::{AccessLog, LogEvent, LoggedId, Target};
use bytes::Bytes;
use cache_status::CacheOutcome;
use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Method, Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use metrics::{
    error_kind_index, method_index, CacheFigures, ConnGauge, Encoder, Histogram, RouteMetrics,
    UpstreamMetrics, BUCKETS, ERROR_KINDS, METHODS,
};
use request_id::RequestId;
use std::cell::Cell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use topk::TopK;
use velox_config::Config;

pub use cache_status::ParsedStatus;

/// The body type of the request path (same as `velox_proxy::body::Body`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

pub use request_id::{GeneratedId, X_REQUEST_ID};
pub static SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");
// Static names: a lookup by `&str` would parse the name on every call.
static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");
static X_VELOX_ERROR: HeaderName = HeaderName::from_static("x-velox-error");

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Purge kinds, the values of `velox_purges_total{kind}`.
pub const PURGE_KINDS: [&str; 4] = ["tag", "prefix", "url", "all"];
/// The dashboard lists this many of the latest purged items.
const RECENT_PURGES: usize = 20;
/// Bodies up to this size are recorded with the response head: they go out in the head's write,
/// and this is Linux's default initial TCP send buffer (`tcp_wmem`), so that write does not wait.
const SMALL_BODY: u64 = 16 * 1024;
/// Top-URL tables keep this many slots each.
pub const TOP_SLOTS: usize = 64;

/// Process-wide observability state.
pub struct Observer {
    routes: Mutex<Vec<Arc<RouteMetrics>>>,
    upstreams: Mutex<Vec<Arc<UpstreamMetrics>>>,
    conns: Mutex<Vec<Arc<ConnGauge>>>,
    unmatched: Arc<RouteMetrics>,
    reloads: [AtomicU64; 2],
    purges: [AtomicU64; PURGE_KINDS.len()],
    /// (unix seconds, kind, target, soft) of the latest purged items, newest last.
    recent_purges: Mutex<std::collections::VecDeque<(u64, &'static str, String, bool)>>,
    log_dropped: Arc<AtomicU64>,
    log: Option<AccessLog>,
    top_requests: Mutex<TopK>,
    top_misses: Mutex<TopK>,
    started: Instant,
}

/// Route label used for requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "(unmatched)";

pub(crate) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Observer {
    /// Creates the observer and, if configured, starts the access log writer.
    pub fn start(config: &Config) -> std::io::Result<Arc<Observer>> {
        let log_dropped = Arc::new(AtomicU64::new(0));
        let log = if config.access_log.enabled {
            let target = if config.access_log.path.as_os_str() == "stdout" {
                Target::Stdout
            } else {
                Target::File(config.access_log.path.clone())
            };
            Some(AccessLog::start(
                target,
                config.access_log.buffer,
                log_dropped.clone(),
            )?)
        } else {
            None
        };
        Ok(Arc::new(Observer {
            routes: Mutex::default(),
            upstreams: Mutex::default(),
            conns: Mutex::default(),
            unmatched: Arc::new(RouteMetrics::new(UNMATCHED_ROUTE.into())),
            reloads: Default::default(),
            purges: Default::default(),
            recent_purges: Mutex::default(),
            log_dropped,
            log,
            top_requests: Mutex::new(TopK::new(TOP_SLOTS)),
            top_misses: Mutex::new(TopK::new(TOP_SLOTS)),
            started: Instant::now(),
        }))
    }

    fn route(&self, name: &str) -> Arc<RouteMetrics> {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = routes.iter().find(|r| r.name == name) {
            return r.clone();
        }
        let r = Arc::new(RouteMetrics::new(name.to_owned()));
        routes.push(r.clone());
        r
    }

    fn upstream(&self, name: &str, server: &str) -> Arc<UpstreamMetrics> {
        let mut ups = self.upstreams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(u) = ups.iter().find(|u| u.name == name && u.server == server) {
            return u.clone();
        }
        let u = Arc::new(UpstreamMetrics::new(name.to_owned(), server.to_owned()));
        ups.push(u.clone());
        u
    }

    /// The gauge for connections on one listener; get it once per accept loop.
    pub fn connections(&self, listener: String, protocol: &'static str) -> Arc<ConnGauge> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(g) = conns
            .iter()
            .find(|g| g.listener == listener && g.protocol == protocol)
        {
            return g.clone();
        }
        let g = Arc::new(ConnGauge::new(listener, protocol));
        conns.push(g.clone());
        g
    }

    /// Counts a configuration reload, and reopens the access-log file either way (a reload is
    /// how log rotation asks for it, whatever the state of the configuration).
    pub fn reloaded(&self, ok: bool) {
        self.reloads[usize::from(!ok)].fetch_add(1, Relaxed);
        if let Some(log) = &self.log {
            log.reopen();
        }
    }

    /// Counts a purged item of `kind` (one of [`PURGE_KINDS`]) and lists it on the dashboard.
    pub fn purged(&self, kind: &str, target: &str, soft: bool) {
        let Some(i) = PURGE_KINDS.iter().position(|k| *k == kind) else {
            return;
        };
        self.purges[i].fetch_add(1, Relaxed);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut recent = self.recent_purges.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT_PURGES {
            recent.pop_front();
        }
        let target: String = target.chars().take(200).collect();
        recent.push_back((now, PURGE_KINDS[i], target, soft));
    }

    /// Writes the access log's last lines and stops its writer (at most `limit`); see
    /// [`AccessLog::close`]. For the end of the process.
    pub fn close(&self, limit: Duration) {
        if let Some(log) = &self.log {
            log.close(limit);
        }
    }

    pub fn log_dropped(&self) -> u64 {
        self.log_dropped.load(Relaxed)
    }

    /// Builds the per-configuration view: metric cells for each route and upstream.
    pub fn scope(self: &Arc<Self>, config: &Config) -> Scope {
        let routes = config
            .routes
            .iter()
            .map(|route| {
                let name = route.metric_name();
                let upstream = config.upstream(&route.upstream).map(|u| {
                    let server = match u.servers.as_slice() {
                        [one] => one.authority().map_or("any".to_owned(), |a| a.to_string()),
                        _ => "any".to_owned(),
                    };
                    self.upstream(&u.name, &server)
                });
                Arc::new(RouteScope {
                    observer: self.clone(),
                    metrics: self.route(&name),
                    log_name: access_log::json_string(&name),
                    upstream,
                    server_timing: route.server_timing,
                })
            })
            .collect();
        let log_threshold = (config.access_log.enabled && self.log.is_some()).then(|| {
            let rate = config.access_log.sample_rate.clamp(0.0, 1.0);
            if rate >= 1.0 {
                u64::MAX
            } else {
                (rate * u64::MAX as f64) as u64
            }
        });
        if config.access_log.enabled && self.log.is_none() {
            tracing::warn!("[access_log] was enabled by a reload: it starts only on restart");
        }
        Scope {
            observer: self.clone(),
            metrics: config.observe.metrics,
            request_id: config.observe.request_id,
            log_threshold,
            routes,
            unmatched: Arc::new(RouteScope {
                observer: self.clone(),
                metrics: self.unmatched.clone(),
                log_name: access_log::json_string(UNMATCHED_ROUTE),
                upstream: None,
                server_timing: false,
            }),
        }
    }
}

/// Where one route's requests are counted. Shared (`Arc`) so that a body outliving its
/// configuration can still be recorded; a request borrows it until then.
struct RouteScope {
    observer: Arc<Observer>,
    metrics: Arc<RouteMetrics>,
    /// The name as the access log writes it.
    log_name: Box<[u8]>,
    upstream: Option<Arc<UpstreamMetrics>>,
    server_timing: bool,
}

/// Observability for one configuration; swapped with it on reload.
pub struct Scope {
    observer: Arc<Observer>,
    metrics: bool,
    request_id: bool,
    /// `Some` when access logging is on: a request is logged when its random draw is below.
    log_threshold: Option<u64>,
    routes: Vec<Arc<RouteScope>>,
    unmatched: Arc<RouteScope>,
}

static RNG_SEEDS: AtomicU64 = AtomicU64::new(0x5eed);

thread_local! {
    /// Per-thread state for sampling draws (seeded from the clock and a counter).
    static RNG: Cell<u64> = Cell::new(splitmix(
        RNG_SEEDS.fetch_add(1, Relaxed)
            ^ SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
    ));
}

fn sample(threshold: u64) -> bool {
    threshold == u64::MAX
        || RNG.with(|r| {
            let x = splitmix(r.get());
            r.set(x);
            x < threshold
        })
}

/// The host a request named, as routing reads it: its target's authority (HTTP/2's
/// `:authority`, an absolute-form target), else its Host field.
fn logged_host<B>(req: &Request<B>, host_field: Option<&HeaderValue>) -> Option<HeaderValue> {
    match req.uri().authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => host_field.cloned(),
    }
}

/// The fields of a request that [`Scope::begin`] reads, looked up by its caller: the `Host`
/// field is looked up to route the request anyway, and a protocol server that parsed the head
/// knows whether an `X-Request-Id` came (a hashed lookup of a field seldom sent is about 100
/// instructions, 0.6% of a cache hit's).
#[derive(Clone, Copy, Default)]
pub struct RequestFields<'a> {
    pub host: Option<&'a HeaderValue>,
    /// The client's `X-Request-Id`.
    pub request_id: Option<&'a HeaderValue>,
}

/// One request being recorded, from routing to the response head; borrows its route's cells
/// (no reference counting for the usual response, recorded with its head).
pub struct Recording<'a> {
    route: &'a Arc<RouteScope>,
    pending: Pending,
}

impl Recording<'_> {
    /// The id to set on the request if it is forwarded: one Velox generated (the client's own,
    /// when kept, is on the request already).
    pub fn generated_id(&self) -> Option<GeneratedId> {
        match self.pending.request_id {
            Some(RequestId::Generated(id)) => Some(id),
            _ => None,
        }
    }
}

/// What is known of a request until it is recorded.
struct Pending {
    metrics: bool,
    log: bool,
    started: Instant,
    method: Method,
    /// Only when counted or logged.
    path: Option<PathAndQuery>,
    /// Only when logged.
    host: Option<HeaderValue>,
    client: IpAddr,
    request_id: Option<RequestId>,
    // Known once the response head is ready.
    status: u16,
    parsed: ParsedStatus,
    /// Kept for a logged response recorded after its head.
    cache_status: Option<HeaderValue>,
    first_byte: Option<Duration>,
}

impl Scope {
    pub fn observer(&self) -> &Arc<Observer> {
        &self.observer
    }

    /// Called once the request is routed (`route` = index into `config.routes`, `None` if no route
    /// matched; `started` = when its head arrived): takes its request id and decides on sampling.
    /// The request is not changed: a generated id goes to the origin only if the request is
    /// forwarded ([`Recording::generated_id`]). `fields` are the request's fields it needs, which
    /// the caller looks up.
    pub fn begin<B>(
        &self,
        route: Option<usize>,
        req: &Request<B>,
        fields: RequestFields<'_>,
        client: IpAddr,
        started: Instant,
    ) -> Option<Recording<'_>> {
        let request_id = self.request_id.then(|| RequestId::of(fields.request_id));
        let log = self.log_threshold.is_some_and(sample);
        let route = route
            .and_then(|i| self.routes.get(i))
            .unwrap_or(&self.unmatched);
        if !self.metrics && !log && request_id.is_none() && !route.server_timing {
            return None;
        }
        Some(Recording {
            route,
            pending: Pending {
                metrics: self.metrics,
                log,
                started,
                method: req.method().clone(),
                path: if self.metrics || log {
                    req.uri().path_and_query().cloned()
                } else {
                    None
                },
                host: if log {
                    logged_host(req, fields.host)
                } else {
                    None
                },
                client,
                request_id,
                status: 0,
                parsed: ParsedStatus::default(),
                cache_status: None,
                first_byte: None,
            },
        })
    }

    /// Called with the response head: adds `Server-Timing` and a client's own `X-Request-Id`,
    /// counts the upstream side, and records the request (or wraps the body, to record it when
    /// it ends). Returns the response and the id Velox generated for it, if any, which the
    /// protocol server sends as `X-Request-Id` (it formats it into the head without a
    /// header-map entry). The recording is finished where it lies (it is 256 bytes: moving
    /// it costs a `memcpy` call) and taken only by a body that records when it ends.
    pub fn finish(
        &self,
        rec: &mut Option<Recording<'_>>,
        mut response: Response<Body>,
    ) -> (Response<Body>, Option<GeneratedId>) {
        let Some(Recording { route, pending }) = rec.as_mut() else {
            return (response, None);
        };
        let route: &Arc<RouteScope> = route;
        let headers = response.headers();
        let cache_status = headers.get(&CACHE_STATUS);
        let mut parsed = cache_status::parse(cache_status.map(HeaderValue::as_bytes));
        let status = response.status().as_u16();
        // Velox's own answers are all errors: a success needs no lookup.
        let velox_error = (status >= 400)
            .then(|| headers.get(&X_VELOX_ERROR))
            .flatten()
            .and_then(|v| v.to_str().ok());
        let upstream_error = match velox_error {
            Some(code) if code.starts_with("upstream-") => Some(error_kind_index(code)),
            // Velox answered itself (no route, only-if-cached, ...): nothing went forward.
            Some(_) => {
                parsed.forwarded = false;
                None
            }
            None => None,
        };
        pending.status = status;
        pending.parsed = parsed;
        // One clock reading serves the origin's time and, for a response recorded with its
        // head, the request's total.
        let now = Instant::now();
        if parsed.forwarded {
            let first_byte = now.saturating_duration_since(pending.started);
            pending.first_byte = Some(first_byte);
            if let (true, Some(up)) = (pending.metrics, &route.upstream) {
                match upstream_error {
                    Some(kind) => up.failed(kind, first_byte),
                    None => up.answered(parsed.fwd_status.unwrap_or(status), first_byte),
                }
            }
        }
        let server_timing = route
            .server_timing
            .then(|| server_timing(parsed.outcome, pending.first_byte))
            .flatten();
        // A small body of known length leaves in the same write as the head: record it now
        // (while the head is still at hand) and spare every such response a counting wrapper.
        let counted = pending.metrics || pending.log;
        let small = http_body::Body::size_hint(response.body())
            .exact()
            .filter(|&len| len <= SMALL_BODY);
        if let (true, Some(len)) = (counted, small) {
            route.complete(pending, len, cache_status, now);
        }
        let wrap = counted && small.is_none();
        if wrap && pending.log {
            pending.cache_status = cache_status.cloned();
        }
        let headers = response.headers_mut();
        let generated = match &pending.request_id {
            Some(RequestId::Generated(id)) => {
                // One the origin echoed is replaced. A response served from the cache has
                // none: the cache stores none (`drop_exchange_fields`), which spares every hit
                // this lookup (about 100 instructions).
                if !parsed.served_from_store() {
                    headers.remove(&X_REQUEST_ID);
                }
                Some(*id)
            }
            Some(RequestId::Client(id)) => {
                headers.insert(&X_REQUEST_ID, id.clone());
                None
            }
            None => None,
        };
        if let Some(value) = server_timing {
            headers.append(&SERVER_TIMING, value);
        }
        if !wrap {
            return (response, generated);
        }
        let route = route.clone();
        let pending = rec.take().map(|r| r.pending);
        let response = response.map(|inner| {
            Recorded {
                inner,
                bytes: 0,
                route,
                pending,
            }
            .boxed_unsync()
        });
        (response, generated)
    }
}

/// `Server-Timing`: the cache outcome and, when the request went forward, the origin's time.
fn server_timing(outcome: CacheOutcome, first_byte: Option<Duration>) -> Option<HeaderValue> {
    let value = match first_byte {
        Some(d) => format!(
            "cache;desc={}, origin;dur={:.3}",
            outcome.as_str(),
            d.as_secs_f64() * 1e3
        ),
        None => format!("cache;desc={}", outcome.as_str()),
    };
    HeaderValue::try_from(value).ok()
}

impl RouteScope {
    /// Records a finished request (`now`: when it finished). `cache_status` is the response's.
    fn complete(&self, p: &Pending, bytes: u64, cache_status: Option<&HeaderValue>, now: Instant) {
        let total = now.saturating_duration_since(p.started);
        let parsed = p.parsed;
        let o = &self.observer;
        let path = p.path.as_ref().map_or("/", PathAndQuery::path);
        if p.metrics {
            self.metrics.record(
                method_index(&p.method),
                p.status,
                parsed.outcome,
                total,
                bytes,
            );
            if let (true, Some(up)) = (parsed.forwarded, &self.upstream) {
                // Bytes the origin sent for this response: not for a 304 revalidation.
                let from_origin = if parsed.outcome == CacheOutcome::Revalidated {
                    0
                } else {
                    bytes
                };
                up.finished(total, from_origin);
            }
            if let Ok(mut top) = o.top_requests.try_lock() {
                top.add(path);
            }
            if parsed.outcome == CacheOutcome::Miss {
                if let Ok(mut top) = o.top_misses.try_lock() {
                    top.add(path);
                }
            }
        }
        if let (true, Some(log)) = (p.log, &o.log) {
            log.log(&LogEvent {
                unix_nanos: wall_nanos(now),
                client: p.client,
                method: p.method.as_str().as_bytes(),
                host: p.host.as_ref().map(HeaderValue::as_bytes),
                path: p.path.as_ref().map_or("/", PathAndQuery::as_str).as_bytes(),
                status: p.status,
                bytes,
                duration: total,
                upstream: p.first_byte,
                cache: parsed.outcome,
                cache_status: cache_status.map(HeaderValue::as_bytes),
                route: &self.log_name,
                request_id: match &p.request_id {
                    Some(RequestId::Generated(id)) => LoggedId::Generated(*id),
                    Some(RequestId::Client(id)) => LoggedId::Client(id.as_bytes()),
                    None => LoggedId::None,
                },
            });
        }
    }
}

thread_local! {
    /// A monotonic reading and the wall-clock time (Unix nanoseconds) taken together, at most a
    /// second ago.
    static WALL_ANCHOR: Cell<Option<(Instant, u64)>> = const { Cell::new(None) };
}

/// The wall-clock time at `at` (about now), in nanoseconds since the Unix epoch. A clock read is
/// a measurable share of a logged request, so the wall clock is read at most once a second per
/// thread and derived from the monotonic reading the request already took in between (it
/// follows a clock step within a second).
fn wall_nanos(at: Instant) -> u64 {
    WALL_ANCHOR.with(|anchor| match anchor.get() {
        // One subtraction: `at - mono` is a `Duration` built from two timespecs.
        Some((mono, wall)) => match at.checked_duration_since(mono) {
            Some(since) if since.as_secs() == 0 => wall + u64::from(since.subsec_nanos()),
            _ => reanchor(anchor, at),
        },
        None => reanchor(anchor, at),
    })
}

/// Reads the wall clock with the monotonic one and returns the wall-clock time at `at`.
#[cold]
fn reanchor(anchor: &Cell<Option<(Instant, u64)>>, at: Instant) -> u64 {
    let (mono, wall) = (Instant::now(), access_log::unix_nanos(SystemTime::now()));
    anchor.set(Some((mono, wall)));
    let behind = mono.saturating_duration_since(at).as_nanos();
    wall.saturating_sub(u64::try_from(behind).unwrap_or(u64::MAX))
}

/// A response body that counts its bytes and records the request when it ends or is dropped.
struct Recorded {
    inner: Body,
    bytes: u64,
    route: Arc<RouteScope>,
    pending: Option<Pending>,
}

impl Recorded {
    fn complete(&mut self) {
        if let Some(p) = self.pending.take() {
            self.route
                .complete(&p, self.bytes, p.cache_status.as_ref(), Instant::now());
        }
    }
}

impl http_body::Body for Recorded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.complete();
                }
            }
            std::task::Poll::Ready(_) => self.complete(),
            std::task::Poll::Pending => {}
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

impl Drop for Recorded {
    fn drop(&mut self) {
        self.complete();
    }
}

// ---------------------------------------------------------------------------------------
// Scrape: Prometheus text and the dashboard's JSON snapshot
// ---------------------------------------------------------------------------------------

impl Observer {
    fn all_routes(&self) -> Vec<Arc<RouteMetrics>> {
        let mut v = self
            .routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        v.push(self.unmatched.clone());
        v
    }

    fn all_upstreams(&self) -> Vec<Arc<UpstreamMetrics>> {
        self.upstreams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn encode(&self, cache: &CacheFigures) -> String {
        let mut e = Encoder {
            out: String::with_capacity(16 * 1024),
        };
        let routes = self.all_routes();
        let upstreams = self.all_upstreams();

        e.family(
            "velox_build_info",
            "gauge",
            "Build information; the value is always 1.",
        );
        e.sample("velox_build_info", &[("version", VERSION)], 1);

        e.family(
            "velox_requests_total",
            "counter",
            "Requests answered, by route, method, status code and cache outcome.",
        );
        for r in &routes {
            for cache in CacheOutcome::ALL {
                for (m, method) in METHODS.iter().enumerate() {
                    for (status, n) in r.requests(cache, m) {
                        let status = status.to_string();
                        e.sample(
                            "velox_requests_total",
                            &[
                                ("route", &r.name),
                                ("method", method),
                                ("status", &status),
                                ("cache", cache.as_str()),
                            ],
                            n,
                        );
                    }
                }
            }
        }

        e.family(
            "velox_request_duration_seconds",
            "histogram",
            "Time from routing a request to the end of its response body.",
        );
        for r in &routes {
            for cache in CacheOutcome::ALL {
                let h = r.duration(cache);
                if h.count() > 0 {
                    e.histogram(
                        "velox_request_duration_seconds",
                        &[("route", &r.name), ("cache", cache.as_str())],
                        &h,
                    );
                }
            }
        }

        e.family(
            "velox_response_bytes_total",
            "counter",
            "Response body bytes sent to clients.",
        );
        for r in &routes {
            for cache in CacheOutcome::ALL {
                if r.duration(cache).count() > 0 {
                    e.sample(
                        "velox_response_bytes_total",
                        &[("route", &r.name), ("cache", cache.as_str())],
                        r.bytes(cache),
                    );
                }
            }
        }

        e.family(
            "velox_upstream_requests_total",
            "counter",
            "Responses received from upstreams, by status code the origin sent.",
        );
        for u in &upstreams {
            for (status, n) in u.requests() {
                let status = status.to_string();
                e.sample(
                    "velox_upstream_requests_total",
                    &[
                        ("upstream", &u.name),
                        ("server", &u.server),
                        ("status", &status),
                    ],
                    n,
                );
            }
        }
        e.family(
            "velox_upstream_errors_total",
            "counter",
            "Upstream requests that failed without a response, by kind.",
        );
        for u in &upstreams {
            for (k, kind) in ERROR_KINDS.iter().enumerate() {
                e.sample(
                    "velox_upstream_errors_total",
                    &[("upstream", &u.name), ("server", &u.server), ("kind", kind)],
                    u.errors(k),
                );
            }
        }
        e.family(
            "velox_upstream_duration_seconds",
            "histogram",
            "Upstream time: phase=first_byte until the response head, phase=total until the body ends.",
        );
        for u in &upstreams {
            for (phase, h) in [("first_byte", u.first_byte()), ("total", u.total())] {
                e.histogram(
                    "velox_upstream_duration_seconds",
                    &[("upstream", &u.name), ("phase", phase)],
                    &h,
                );
            }
        }
        e.family(
            "velox_upstream_response_bytes_total",
            "counter",
            "Response body bytes received from upstreams (as relayed).",
        );
        for u in &upstreams {
            e.sample(
                "velox_upstream_response_bytes_total",
                &[("upstream", &u.name), ("server", &u.server)],
                u.bytes(),
            );
        }

        e.family(
            "velox_cache_objects",
            "gauge",
            "Objects held per cache tier.",
        );
        for (tier, f) in cache {
            e.sample("velox_cache_objects", &[("tier", tier)], f.objects);
        }
        e.family("velox_cache_bytes", "gauge", "Bytes held per cache tier.");
        for (tier, f) in cache {
            e.sample("velox_cache_bytes", &[("tier", tier)], f.bytes);
        }
        e.family(
            "velox_cache_evictions_total",
            "counter",
            "Objects evicted per cache tier.",
        );
        for (tier, f) in cache {
            e.sample(
                "velox_cache_evictions_total",
                &[("tier", tier)],
                f.evictions,
            );
        }
        e.family(
            "velox_cache_writes_skipped_total",
            "counter",
            "Objects a cache tier did not store because its write queue was full (the object stays in the other tier).",
        );
        for (tier, f) in cache {
            e.sample(
                "velox_cache_writes_skipped_total",
                &[("tier", tier)],
                f.writes_skipped,
            );
        }

        e.family(
            "velox_connections_active",
            "gauge",
            "Open client connections per listener.",
        );
        for g in self.conns.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            e.sample(
                "velox_connections_active",
                &[("listener", &g.listener), ("protocol", g.protocol)],
                g.active(),
            );
        }
        e.family("velox_purges_total", "counter", "Purges applied, by kind.");
        for (i, kind) in PURGE_KINDS.iter().enumerate() {
            e.sample(
                "velox_purges_total",
                &[("kind", kind)],
                self.purges[i].load(Relaxed),
            );
        }
        e.family(
            "velox_config_reloads_total",
            "counter",
            "Configuration reloads, by result.",
        );
        for (i, result) in ["success", "failure"].iter().enumerate() {
            e.sample(
                "velox_config_reloads_total",
                &[("result", result)],
                self.reloads[i].load(Relaxed),
            );
        }
        e.family(
            "velox_log_dropped_total",
            "counter",
            "Access log lines dropped because the log buffer was full.",
        );
        e.sample("velox_log_dropped_total", &[], self.log_dropped());
        e.out
    }

    /// The dashboard's view: cumulative totals (the page derives rates from successive ones).
    pub fn snapshot(&self, cache: &CacheFigures) -> serde_json::Value {
        use serde_json::{json, Map, Value};
        let routes = self.all_routes();
        let mut by_cache = Map::new();
        let mut by_status = std::collections::BTreeMap::<u16, u64>::new();
        let mut bytes_out = 0;
        let mut latency = Histogram::default().counts;
        let mut latency_sum = 0.0;
        let mut requests = 0;
        let mut per_route = Vec::new();
        for cache in CacheOutcome::ALL {
            let mut n = 0;
            for r in &routes {
                for m in 0..METHODS.len() {
                    for (status, count) in r.requests(cache, m) {
                        *by_status.entry(status).or_default() += count;
                        n += count;
                    }
                }
                bytes_out += r.bytes(cache);
                let duration = r.duration(cache);
                for (sum, count) in latency.iter_mut().zip(duration.counts) {
                    *sum += count;
                }
                latency_sum += duration.sum_seconds();
            }
            requests += n;
            by_cache.insert(cache.as_str().into(), n.into());
        }
        for r in &routes {
            let n: u64 = CacheOutcome::ALL
                .iter()
                .map(|&c| r.duration(c).count())
                .sum();
            if n > 0 || r.name != UNMATCHED_ROUTE {
                per_route.push(json!({ "name": r.name, "requests": n }));
            }
        }
        let upstreams: Vec<Value> = self
            .all_upstreams()
            .iter()
            .map(|u| {
                let first_byte = u.first_byte();
                let kinds: Map<String, Value> = ERROR_KINDS
                    .iter()
                    .enumerate()
                    .map(|(k, kind)| (kind, u.errors(k)))
                    .filter(|(_, n)| *n > 0)
                    .map(|(kind, n)| ((*kind).to_owned(), n.into()))
                    .collect();
                json!({
                    "name": u.name,
                    "server": u.server,
                    "requests": u.requests_total(),
                    "errors": u.errors_total(),
                    "error_kinds": kinds,
                    "bytes": u.bytes(),
                    "first_byte_avg_ms": if first_byte.count() > 0 {
                        first_byte.sum_seconds() * 1e3 / first_byte.count() as f64
                    } else { 0.0 },
                })
            })
            .collect();
        let bytes_in: u64 = self.all_upstreams().iter().map(|u| u.bytes()).sum();
        let top = |t: &Mutex<TopK>| -> Vec<Value> {
            t.lock()
                .unwrap_or_else(|p| p.into_inner())
                .top(10)
                .into_iter()
                .map(|(path, count, error)| json!({ "path": path, "count": count, "error": error }))
                .collect()
        };
        let connections: i64 = self
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|g| g.active())
            .sum();
        json!({
            "version": VERSION,
            "time_ms": SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "requests": requests,
            "by_cache": by_cache,
            "by_status": by_status.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<Map<_, _>>(),
            "bytes_to_clients": bytes_out,
            "bytes_from_origin": bytes_in,
            "latency": {
                "bounds": BUCKETS.iter().map(|(_, b)| *b as f64 / 1e9).collect::<Vec<_>>(),
                "counts": latency.to_vec(),
                "sum": latency_sum,
            },
            "routes": per_route,
            "upstreams": upstreams,
            "cache": cache.iter().map(|(tier, f)| json!({
                "tier": tier, "objects": f.objects, "bytes": f.bytes, "evictions": f.evictions,
            })).collect::<Vec<_>>(),
            "connections": connections,
            "top_requests": top(&self.top_requests),
            "top_misses": top(&self.top_misses),
            "purges": self.recent_purges.lock().unwrap_or_else(|p| p.into_inner()).iter().rev()
                .map(|(at, kind, target, soft)| json!({
                    "time": httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(*at)),
                    "kind": if *soft { format!("{kind} (soft)") } else { (*kind).to_owned() },
                    "target": target,
                }))
                .collect::<Vec<_>>(),
            "purges_available": true,
            "log_dropped": self.log_dropped(),
        })
    }
}

#[cfg(test)]
mod tests;

/// The dashboard page served at `GET /` on the admin listener: self-contained (inline script and
/// style, charts drawn on canvas), fed by `GET /api/stats/stream`.
pub const DASHBOARD_HTML: &str = include_str!("../assets/dashboard.html");
