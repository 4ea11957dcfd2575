//! The HTTP cache over real sockets: a scriptable hyper origin in this file counts the requests
//! it receives, and a real `velox` process sits in front of it.
//!
//! Each test can fail: the origin counts are exact, Cache-Status values are compared exactly
//! (or by their RFC 9211 parameters), and every wait is bounded.

mod common;
use common::libc_signal::Signal;
use common::*;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// The scriptable origin
// ---------------------------------------------------------------------------------------------

type OriginBody = BoxBody<Bytes, std::io::Error>;

/// One request as the origin received it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    /// Path and query, exactly as received.
    target: String,
    headers: HeaderMap,
    /// 1 for the first request for this target (any method), 2 for the second, ...
    n: usize,
    /// 1 for the first request the origin received, 2 for the second, ...
    id: usize,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type Handler =
    Arc<dyn Fn(Seen) -> Pin<Box<dyn Future<Output = Response<OriginBody>> + Send>> + Send + Sync>;

/// A hyper origin that records every request and answers as the test's handler says.
struct TestOrigin {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl TestOrigin {
    async fn start<F, Fut>(handler: F) -> TestOrigin
    where
        F: Fn(Seen) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<OriginBody>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |s| Box::pin(handler(s)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let (seen, tasks) = (seen.clone(), tasks.clone());
            tokio::spawn(async move {
                loop {
                    let stream = match listener.accept().await {
                        Ok((stream, _)) => stream,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let (seen, handler) = (seen.clone(), handler.clone());
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (seen, handler) = (seen.clone(), handler.clone());
                        async move {
                            let target = req
                                .uri()
                                .path_and_query()
                                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
                            let record = {
                                let mut seen = seen.lock().unwrap();
                                let n = seen.iter().filter(|s| s.target == target).count() + 1;
                                let record = Seen {
                                    method: req.method().to_string(),
                                    target,
                                    headers: req.headers().clone(),
                                    n,
                                    id: seen.len() + 1,
                                };
                                seen.push(record.clone());
                                record
                            };
                            let _ = req.into_body().collect().await;
                            Ok::<_, Infallible>(handler(record).await)
                        }
                    });
                    let conn = tokio::spawn(async move {
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                    tasks.lock().unwrap().push(conn.abort_handle());
                }
            })
        };
        tasks.lock().unwrap().push(accept.abort_handle());
        TestOrigin { addr, seen, tasks }
    }

    /// Requests received for `target` (path and query), any method.
    /// Requests received, any target.
    fn count_all(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn count(&self, target: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.target == target)
            .count()
    }

    /// Requests received for `target` with `method`.
    fn count_method(&self, method: &str, target: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.target == target && s.method == method)
            .count()
    }

    /// Every request received for `target`, in order.
    fn requests(&self, target: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.target == target)
            .cloned()
            .collect()
    }

    /// Stops listening and drops every open connection: the origin is gone.
    fn stop(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

impl Drop for TestOrigin {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A complete origin response.
fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Response<OriginBody> {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(
            Full::new(body.into())
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("origin response")
}

/// A body that sends `first`, waits `pause`, records the instant in `finished`, then sends `rest`.
fn slow_body(
    first: Bytes,
    pause: Duration,
    rest: Bytes,
    finished: Arc<Mutex<Option<Instant>>>,
) -> OriginBody {
    let stream = futures_util::stream::unfold(0u8, move |state| {
        let (first, rest, finished) = (first.clone(), rest.clone(), finished.clone());
        async move {
            match state {
                0 => Some((Ok::<_, std::io::Error>(Frame::data(first)), 1)),
                1 => {
                    tokio::time::sleep(pause).await;
                    *finished.lock().unwrap() = Some(Instant::now());
                    Some((Ok(Frame::data(rest)), 2))
                }
                _ => None,
            }
        }
    });
    BodyExt::boxed(StreamBody::new(stream))
}

// ---------------------------------------------------------------------------------------------
// Velox configuration
// ---------------------------------------------------------------------------------------------

const CATCH_ALL: &str = "[[routes]]\npath_prefix = \"/\"\nupstream = \"origin\"\n";

/// A config with the given `[[routes]]` tables and `[cache]` keys.
fn config(
    listen: SocketAddr,
    admin: SocketAddr,
    origin: SocketAddr,
    routes: &str,
    cache: &str,
) -> String {
    format!(
        r#"
[server]
listen = ["{listen}"]
shutdown_grace = "5s"
[admin]
listen = "{admin}"
token = "secret"
[limits]
header_read_timeout = "5s"
[[upstreams]]
name = "origin"
servers = ["http://{origin}"]
connect_timeout = "1s"
first_byte_timeout = "5s"
{routes}
[cache]
{cache}
"#
    )
}

async fn start_velox(origin: &TestOrigin, routes: &str, cache: &str) -> Velox {
    let (addr, admin) = (free_addr(), free_addr());
    Velox::start(
        &config(addr, admin, origin.addr, routes, cache),
        addr,
        admin,
    )
    .await
}

/// The catch-all route with a `[routes.cache]` table made of `cache_lines`.
fn catch_all_with(cache_lines: &str) -> String {
    format!("{CATCH_ALL}[routes.cache]\n{cache_lines}\n")
}

// ---------------------------------------------------------------------------------------------
// Client helpers
// ---------------------------------------------------------------------------------------------

fn cache_status(reply: &Reply) -> String {
    reply.header("cache-status").unwrap_or("").to_owned()
}

fn has_param(cache_status: &str, param: &str) -> bool {
    cache_status
        .rsplit(',')
        .next()
        .unwrap_or("")
        .split(';')
        .any(|p| p.trim() == param)
}

fn is_hit(reply: &Reply) -> bool {
    cache_status(reply).starts_with("velox; hit")
}

fn ttl_of(cache_status: &str) -> Option<i64> {
    cache_status
        .split(';')
        .find_map(|p| p.trim().strip_prefix("ttl="))
        .and_then(|v| v.parse().ok())
}

fn age_of(reply: &Reply) -> Option<u64> {
    reply.header("age").and_then(|a| a.parse().ok())
}

async fn get_with(url: &str, headers: &[(&str, &str)]) -> Reply {
    request("GET", url, headers, b"").await
}

/// A raw HTTP/1.1 exchange on its own connection (the target is sent byte for byte).
struct RawReply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl RawReply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn raw_get(addr: SocketAddr, target: &str, host: &str) -> RawReply {
    let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let text = raw(addr, request.as_bytes(), Duration::from_secs(10)).await;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head for {target}: {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line for {target}: {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let reply = RawReply {
        status,
        headers,
        body: body.to_owned(),
    };
    if let Some(len) = reply.header("content-length") {
        assert_eq!(
            len.parse::<usize>().ok(),
            Some(reply.body.len()),
            "{target}: whole body received"
        );
    }
    reply
}

/// Polls `check` every 50 ms until it returns true or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ages a stored response past `max-age=1` (age counts whole seconds from the origin's Date).
async fn let_it_go_stale() {
    tokio::time::sleep(Duration::from_millis(2300)).await;
}

/// ASCII body of `len` bytes, byte i = 'a' + i % 26.
fn alphabet(len: usize) -> String {
    (0..len)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Hit, miss, coalescing
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn hit_after_miss_serves_from_cache_with_age() {
    let origin = TestOrigin::start(|_| async {
        reply(200, &[("cache-control", "max-age=60")], "hello, cache")
    })
    .await;
    let velox = start_velox(&origin, CATCH_ALL, "").await;

    let first = get(&velox.url("/hit")).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body, "hello, cache");
    assert_eq!(
        cache_status(&first),
        "velox; fwd=uri-miss; fwd-status=200; stored"
    );

    let second = get(&velox.url("/hit")).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body, "hello, cache");
    let status = cache_status(&second);
    assert!(status.starts_with("velox; hit; ttl="), "{status}");
    let ttl = ttl_of(&status).expect("ttl");
    assert!((58..=60).contains(&ttl), "ttl {ttl}");
    let age = age_of(&second).expect("Age on a hit");
    assert!(age <= 2, "age {age}");
    assert_eq!(origin.count("/hit"), 1);
}

/// One client's view of a streamed response.
struct Streamed {
    status: u16,
    cache_status: String,
    body: Bytes,
    first_byte: Option<Instant>,
}

async fn stream_get(url: String) -> Result<Streamed, String> {
    let client = client();
    let req = http::Request::get(url)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let response = client.request(req).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let cache_status = response
        .headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut body = response.into_body();
    let mut collected = Vec::new();
    let mut first_byte = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(data) = frame.into_data() {
            if !data.is_empty() && first_byte.is_none() {
                first_byte = Some(Instant::now());
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(Streamed {
        status,
        cache_status,
        body: Bytes::from(collected),
        first_byte,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalescing_200_cold_requests_one_origin_fetch_streamed_to_all() {
    const CLIENTS: usize = 200;
    const PAUSE: Duration = Duration::from_millis(1500);
    let first = Bytes::from(format!("first-chunk:{}", alphabet(2000)));
    let rest = Bytes::from(format!(":rest:{}", alphabet(100_000)));
    let expected = [first.clone(), rest.clone()].concat();
    let finished = Arc::new(Mutex::new(None::<Instant>));
    let origin = {
        let (first, rest, finished) = (first.clone(), rest.clone(), finished.clone());
        TestOrigin::start(move |_| {
            let (first, rest, finished) = (first.clone(), rest.clone(), finished.clone());
            async move {
                let length = (first.len() + rest.len()).to_string();
                Response::builder()
                    .status(200)
                    .header("cache-control", "max-age=600")
                    .header("content-length", length)
                    .body(slow_body(first, PAUSE, rest, finished))
                    .expect("slow response")
            }
        })
        .await
    };
    let velox = start_velox(&origin, CATCH_ALL, "").await;

    let url = velox.url("/slow");
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(stream_get(url.clone())))
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        let result = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("every client done within 30s")
            .expect("client task");
        results.push(result.expect("client request"));
    }
    let finished = finished.lock().unwrap().expect("origin finished its body");

    assert_eq!(origin.count("/slow"), 1, "exactly one origin request");
    let mut leaders = 0;
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.status, 200, "client {i}");
        assert_eq!(r.body.len(), expected.len(), "client {i}: full body");
        assert!(r.body == expected, "client {i}: correct body");
        let first_byte = r.first_byte.expect("a first byte");
        assert!(
            first_byte < finished,
            "client {i}: first byte {:?} after the origin finished",
            first_byte.duration_since(finished)
        );
        if r.cache_status == "velox; fwd=uri-miss; fwd-status=200; stored" {
            leaders += 1;
        } else {
            assert_eq!(
                r.cache_status, "velox; fwd=uri-miss; collapsed",
                "client {i}: a follower"
            );
        }
    }
    assert_eq!(leaders, 1, "one client led the fetch");

    // And the object is now stored.
    let after = get(&url).await;
    assert!(is_hit(&after), "{}", cache_status(&after));
    assert_eq!(after.body, expected);
    assert_eq!(origin.count("/slow"), 1);
}

async fn concurrent_unshareable(cache_control: &'static str, path: &str) {
    const CLIENTS: usize = 12;
    let origin = TestOrigin::start(move |seen| async move {
        // Slow enough that every client is waiting on the first fetch.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let client = seen.header("x-client").unwrap_or("none").to_owned();
        reply(
            200,
            &[("cache-control", cache_control)],
            format!("client={client};origin-request={}", seen.id),
        )
    })
    .await;
    let velox = start_velox(&origin, CATCH_ALL, "").await;
    let url = velox.url(path);
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                let id = format!("c{i}");
                let r = get_with(&url, &[("x-client", &id)]).await;
                (id, r)
            })
        })
        .collect();
    let mut origin_ids = Vec::new();
    for task in tasks {
        let (id, r) = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("within 30s")
            .expect("task");
        assert_eq!(r.status, 200);
        let body = String::from_utf8_lossy(&r.body).into_owned();
        let (client, origin_request) = body.split_once(';').expect("echoed body");
        assert_eq!(
            client,
            format!("client={id}"),
            "{cache_control}: a client got another client's response"
        );
        assert!(!has_param(&cache_status(&r), "stored"));
        assert!(!is_hit(&r));
        origin_ids.push(origin_request.to_owned());
    }
    assert_eq!(
        origin.count(path),
        CLIENTS,
        "{cache_control}: one fetch each"
    );
    origin_ids.sort();
    origin_ids.dedup();
    assert_eq!(
        origin_ids.len(),
        CLIENTS,
        "every client its own origin response"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_responses_are_never_shared_between_concurrent_clients() {
    concurrent_unshareable("private, max-age=60", "/private").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_store_responses_are_never_shared_between_concurrent_clients() {
    concurrent_unshareable("no-store", "/no-store").await;
}

// ---------------------------------------------------------------------------------------------
// Stale content: stale-while-revalidate, stale-if-error, 304 revalidation
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_serves_stale_at_once_and_refreshes_once() {
    let origin = TestOrigin::start(|seen| async move {
        if seen.n == 1 {
            reply(
                200,
                &[("cache-control", "max-age=1, stale-while-revalidate=30")],
                "version-1",
            )
        } else {
            // The refresh is slow: a client waiting on it would notice.
            tokio::time::sleep(Duration::from_millis(1000)).await;
            reply(200, &[("cache-control", "max-age=60")], "version-2")
        }
    })
    .await;
    let velox = start_velox(&origin, CATCH_ALL, "").await;
    let url = velox.url("/swr");
    assert_eq!(get(&url).await.body, "version-1");
    let_it_go_stale().await;

    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let r = get(&url).await;
                (r, t.elapsed())
            })
        })
        .collect();
    for task in tasks {
        let (r, took) = task.await.expect("task");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "version-1", "stale content served");
        let status = cache_status(&r);
        assert!(status.starts_with("velox; hit"), "{status}");
        assert!(age_of(&r).is_some_and(|a| a >= 2), "Age of the stale entry");
        assert!(
            took < Duration::from_millis(700),
            "stale served without waiting for the refresh: {took:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_millis(900));

    let refreshed = eventually(Duration::from_secs(10), || async {
        get(&url).await.body == "version-2"
    })
    .await;
    assert!(refreshed, "later requests see the refreshed content");
    assert_eq!(
        origin.count("/swr"),
        2,
        "one initial fetch and one background refresh"
    );
    let later = get(&url).await;
    assert!(is_hit(&later), "{}", cache_status(&later));
    assert_eq!(later.body, "version-2");
    assert_eq!(origin.count("/swr"), 2);
}

#[tokio::test]
async fn stale_if_error_serves_stale_when_origin_answers_500() {
    let origin = TestOrigin::start(|seen| async move {
        let etag = seen.target.contains("etag");
        match (seen.n, etag) {
            (1, false) => reply(
                200,
                &[("cache-control", "max-age=1, stale-if-error=60")],
                "good-content",
            ),
            (1, true) => reply(
                200,
                &[
                    ("cache-control", "max-age=1, stale-if-error=60"),
                    ("etag", "\"sie\""),
                ],
                "good-content",
            ),
            _ => reply(500, &[], "origin broke"),
        }
    })
    .await;
    let velox = start_velox(&origin, CATCH_ALL, "").await;
    for path in ["/sie-plain", "/sie-etag"] {
        assert_eq!(get(&velox.url(path)).await.body, "good-content");
    }
    let_it_go_stale().await;
    for path in ["/sie-plain", "/sie-etag"] {
        let r = get(&velox.url(path)).await;
        let status = cache_status(&r);
        assert_eq!(r.status, 200, "{path}: stale served ({status})");
        assert_eq!(r.body, "good-content", "{path}");
        assert!(has_param(&status, "fwd=stale"), "{path}: {status}");
        assert!(has_param(&status, "fwd-status=500"), "{path}: {status}");
        assert!(age_of(&r).is_some_and(|a| a >= 2), "{path}: Age");
        assert_eq!(origin.count(path), 2, "{path}");
    }
}

#[tokio::test]
async fn stale_if_error_serves_stale_when_origin_is_gone() {
    let origin = TestOrigin::start(|seen| async move {
        let mut headers = vec![("cache-control", "max-age=1, stale-if-error=60")];
        if seen.target == "/gone-etag" {
            headers.push(("etag", "\"gone\""));
        }
        reply(200, &headers, "still-here")
    })
    .await;
    let velox = start_velox(&origin, CATCH_ALL, "").await;
    for path in ["/gone-etag", "/gone-plain"] {
        assert_eq!(get(&velox.url(path)).await.body, "still-here");
    }
    origin.stop();
    let_it_go_stale().await;
    for path in ["/gone-etag", "/gone-plain"] {
        let r = get(&velox.url(path)).await;
        let status = cache_status(&r);
        assert_eq!(r.status, 200, "{path}: {status}");
        assert_eq!(r.body, "still-here", "{path}");
        assert!(has_param(&status, "fwd=stale"), "{path}: {status}");
        assert_eq!(origin.count(path), 1, "{path}");
    }
}

#[tokio::test]
async fn route_stale_if_error_grace_applies_when_origin_gave_none() {
    let origin = TestOrigin::start(|seen| async move {
        let must_revalidate = seen.target.starts_with("/mr");
        match seen.n {
            1 if must_revalidate => reply(
                200,
                &[
                    ("cache-control", "max-age=1, must-revalidate"),
                    ("etag", "\"g\""),
                ],
                "graced",
            ),
            1 if seen.target == "/grace-plain" => {
                reply(200, &[("cache-control", "max-age=1")], "graced")
            }
            1 => reply(
                200,
                &[("cache-control", "max-age=1"), ("etag", "\"g\"")],
                "graced",
            ),
            _ => reply(503, &[], "down"),
        }
    })
    .await;
    let routes = catch_all_with("stale_if_error = \"60s\"");
    let velox = start_velox(&origin, &routes, "").await;
    for path in ["/grace", "/grace-plain", "/mr-grace"] {
        assert_eq!(get(&velox.url(path)).await.body, "graced");
    }
    let_it_go_stale().await;

    // RFC 9111 §4.2.4: must-revalidate forbids serving stale, grace or not.
    let r = get(&velox.url("/mr-grace")).await;
    assert_eq!(
        r.status,
        503,
        "must-revalidate: the error, not stale content ({})",
        cache_status(&r)
    );
    assert_eq!(r.body, "down");

    for path in ["/grace", "/grace-plain"] {
        let r = get(&velox.url(path)).await;
        let status = cache_status(&r);
        assert_eq!(r.status, 200, "{path}: {status}");
        assert_eq!(r.body, "graced", "{path}");
        assert!(has_param(&status, "fwd=stale"), "{path}: {status}");
        assert!(has_param(&status, "fwd-status=503"), "{path}: {status}");
    }
}

#[tokio::test]
async fn revalidation_304_updates_stored_headers() {
    let origin = TestOrigin::start(|seen| async move {
        if seen.n == 1 {
            return reply(
                200,
                &[
                    ("cache-control", "max-age=1"),
                    ("etag", "\"e1\""),
                    ("x-version", "1"),
                ],
                "stored-body",
            );
        }
        if seen.header("if-none-match") == Some("\"e1\"") {
            reply(
                304,
                &[
                    ("cache-control", "max-age=60"),
                    ("etag", "\"e1\""),
                    ("x-version", "2"),
                ],
                "",
            )
        } else {
            reply(200, &[("cache-control", "max-age=60")], "unconditional")
        }
    })
    .await;
    let velox = start_velox(&origin, CATCH_ALL, "").await;
    let url = velox.url("/rev");
    let first = get(&url).await;
    assert_eq!(first.header("x-version"), Some("1"));
    let_it_go_stale().await;

    let second = get(&url).await;
    let status = cache_status(&second);
    assert_eq!(second.status, 200);
    assert_eq!(second.body, "stored-body");
    assert_eq!(second.header("x-version"), Some("2"), "updated header");
    assert_eq!(second.header("cache-control"), Some("max-age=60"));
    assert!(
        status.starts_with("velox; fwd=stale; fwd-status=304"),
        "{status}"
    );
    let requests = origin.requests("/rev");
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].header("if-none-match"), Some("\"e1\""));

    let third = get(&url).await;
    let status = cache_status(&third);
    assert!(status.starts_with("velox; hit"), "{status}");
    assert!(ttl_of(&status).is_some_and(|t| t >= 58), "{status}");
    assert_eq!(third.body, "stored-body");
    assert_eq!(third.header("x-version"), Some("2"));
    assert_eq!(origin.count("/rev"), 2);
}

/// An origin whose first answer is a stale-soon `"e1"` and whose answer to `If-None-Match` is
/// `not_modified`; unconditional requests after the first get a fresh `"e2"` representation.
async fn validating_origin(not_modified: &'static [(&'static str, &'static str)]) -> TestOrigin {
    TestOrigin::start(move |seen| async move {
        if seen.n == 1 {
            return reply(
                200,
                &[("cache-control", "max-age=1"), ("etag", "\"e1\"")],
                "stored-body",
            );
        }
        if seen.header("if-none-match").is_some() {
            return reply(304, not_modified, "");
        }
        reply(
            200,
            &[("cache-control", "max-age=60"), ("etag", "\"e2\"")],
            "refetched",
        )
    })
    .await
}

#[tokio::test]
async fn revalidation_304_without_validators_freshens_the_stored_response() {
    // RFC 9110 §15.4.5 asks the origin to repeat ETag in a 304; many do not. The validation
    // request named only the stored response, so the 304 refers to it (RFC 9111 §4.3.3).
    let origin = validating_origin(&[("cache-control", "max-age=60")]).await;
    let velox = start_velox(&origin, CATCH_ALL, "").await;
    let url = velox.url("/bare304");
    assert_eq!(get(&url).await.body, "stored-body");
    let_it_go_stale().await;

    let second = get(&url).await;
    let status = cache_status(&second);
    assert_eq!(
        second.status, 200,
        "an unconditional request never gets a 304"
    );
    assert_eq!(second.body, "stored-body");
    assert!(has_param(&status, "fwd-status=304"), "{status}");
    let third = get(&url).await;
    assert!(
        is_hit(&third),
        "freshened by the 304: {}",
        cache_status(&third)
    );
    assert_eq!(origin.count("/bare304"), 2);
}

#[tokio::test]
async fn revalidation_304_naming_another_etag_is_followed_by_a_full_fetch() {
    // A 304 whose strong ETag differs freshens nothing (RFC 9111 §4.3.4); it answered Velox's
    // validators, not the client, so the client gets the current representation instead.
    let origin = validating_origin(&[("cache-control", "max-age=60"), ("etag", "\"e2\"")]).await;
    let velox = start_velox(&origin, CATCH_ALL, "").await;
    let url = velox.url("/other304");
    assert_eq!(get(&url).await.body, "stored-body");
    let_it_go_stale().await;

    let second = get(&url).await;
    assert_eq!(
        second.status, 200,
        "an unconditional request never gets a 304"
    );
    assert_eq!(second.body, "refetched");
    assert_eq!(second.header("etag"), Some("\"e2\""));
    let requests = origin.requests("/other304");
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[1].header("if-none-match"), Some("\"e1\""));
    assert_eq!(
        requests[2].header("if-none-match"),
        None,
        "the refetch is unconditional"
    );
    let third = get(&url).await;
    assert!(is_hit(&third), "{}", cache_status(&third));
    assert_eq!(third.body, "refetched");
}

// ---------------------------------------------------------------------------------------------
// Persistence and corruption
// ---------------------------------------------------------------------------------------------

/// Stops `velox` with SIGTERM (exit 0) and starts the binary again on the same config file,
/// address and data_dir.
async fn restart(velox: &mut Velox) {
    velox.signal(Signal::Term);
    assert_eq!(
        velox.wait_exit(Duration::from_secs(15)),
        Some(0),
        "velox exits 0 on SIGTERM"
    );
    respawn(velox).await;
}

async fn respawn(velox: &mut Velox) {
    velox.child = Command::new(env!("CARGO_BIN_EXE_velox"))
        .args(["serve", "--config"])
        .arg(&velox.config_path)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("respawn velox");
    wait_until_accepting(velox.addr).await;
}

fn cache_dir(velox: &Velox) -> PathBuf {
    velox.dir.path().join("data").join("cache")
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn object_files(velox: &Velox) -> Vec<PathBuf> {
    files_under(&cache_dir(velox))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "STATE"))
        .collect()
}

#[tokio::test]
async fn persistence_restart_is_a_hit_without_origin_request() {
    let origin = TestOrigin::start(|seen| async move {
        reply(
            200,
            &[("cache-control", "max-age=600"), ("etag", "\"p\"")],
            format!("persisted-{}-{}", seen.n, alphabet(5000)),
        )
    })
    .await;
    let mut velox = start_velox(&origin, CATCH_ALL, "").await;
    let expected = format!("persisted-1-{}", alphabet(5000));
    let first = get(&velox.url("/persist")).await;
    assert_eq!(first.body, expected);
    assert!(has_param(&cache_status(&first), "stored"));

    restart(&mut velox).await;

    let after = get(&velox.url("/persist")).await;
    let status = cache_status(&after);
    assert!(status.starts_with("velox; hit"), "{status}");
    assert_eq!(after.body, expected);
    assert_eq!(after.header("etag"), Some("\"p\""));
    assert!(age_of(&after).is_some());
    assert_eq!(origin.count("/persist"), 1, "no new origin request");
}

#[tokio::test]
async fn restart_serves_disk_hits_at_once() {
    // The index of the files is rebuilt in the background after a restart; until it is done a
    // lookup checks the object's file directly, so the first request after the listener
    // accepts is already a hit.
    let origin = TestOrigin::start(|seen| async move {
        reply(
            200,
            &[("cache-control", "max-age=600")],
            format!("{}-{}", seen.target, alphabet(300)),
        )
    })
    .await;
    let mut velox = start_velox(&origin, CATCH_ALL, "memory_size = 0").await;
    for i in 0..300 {
        let path = format!("/many/{i}");
        assert_eq!(get(&velox.url(&path)).await.status, 200);
    }
    restart(&mut velox).await;
    for i in (0..300).rev() {
        let path = format!("/many/{i}");
        let reply = get(&velox.url(&path)).await;
        assert!(is_hit(&reply), "{path}: {}", cache_status(&reply));
        assert_eq!(reply.body, format!("{path}-{}", alphabet(300)));
    }
    assert_eq!(
        origin.count_all(),
        300,
        "no origin request after the restart"
    );
}

/// Flips the last byte and the middle byte of every object file.
fn corrupt_every_file(velox: &Velox) -> usize {
    let files = object_files(velox);
    for file in &files {
        let mut bytes = std::fs::read(file).expect("read cache file");
        if bytes.is_empty() {
            continue;
        }
        let last = bytes.len() - 1;
        bytes[last] ^= 0xFF;
        let middle = bytes.len() / 2;
        if middle != last {
            bytes[middle] ^= 0x5A;
        }
        std::fs::write(file, bytes).expect("write cache file");
    }
    files.len()
}

/// Stops `velox`, corrupts every object file (see [`corrupt_every_file`]) and starts it again;
/// returns the number of files.
async fn corrupt_while_stopped(velox: &mut Velox) -> usize {
    velox.signal(Signal::Term);
    assert_eq!(velox.wait_exit(Duration::from_secs(15)), Some(0));
    let files = corrupt_every_file(velox);
    respawn(velox).await;
    files
}

#[tokio::test]
async fn corruption_flipped_bytes_on_disk_are_a_miss_never_garbage() {
    let origin = TestOrigin::start(|seen| async move {
        let body = if seen.target == "/small" {
            format!("small-v{}", seen.n)
        } else {
            format!("big-v{}-{}", seen.n, alphabet(300_000))
        };
        reply(200, &[("cache-control", "max-age=600")], body)
    })
    .await;
    let mut velox = start_velox(&origin, CATCH_ALL, "").await;
    assert_eq!(get(&velox.url("/small")).await.body, "small-v1");
    let big = get(&velox.url("/big")).await;
    assert!(big.body.starts_with(b"big-v1-"));
    let corrupted = corrupt_while_stopped(&mut velox).await;
    assert!(
        corrupted >= 2,
        "both objects were on disk ({corrupted} files)"
    );

    let small = get(&velox.url("/small")).await;
    assert_eq!(small.status, 200);
    assert_eq!(small.body, "small-v2", "a miss with the origin's body");
    assert!(
        cache_status(&small).starts_with("velox; fwd=uri-miss"),
        "{}",
        cache_status(&small)
    );
    let big = get(&velox.url("/big")).await;
    assert_eq!(big.status, 200);
    assert_eq!(
        big.body,
        format!("big-v2-{}", alphabet(300_000)),
        "a miss with the origin's body"
    );
    assert_eq!(origin.count("/small"), 2);
    assert_eq!(origin.count("/big"), 2);
}

#[tokio::test]
async fn corruption_in_a_small_disk_only_object_is_a_clean_miss() {
    // No memory tier, a body of several chunks: it is verified whole before the head is sent,
    // so the corruption becomes a miss with the origin's complete response, not a cut one.
    let origin = TestOrigin::start(|seen| async move {
        reply(
            200,
            &[("cache-control", "max-age=600")],
            format!("small-v{}-{}", seen.n, alphabet(200_000)),
        )
    })
    .await;
    let mut velox = start_velox(&origin, CATCH_ALL, "memory_size = 0").await;
    assert!(get(&velox.url("/small"))
        .await
        .body
        .starts_with(b"small-v1-"));
    assert!(corrupt_while_stopped(&mut velox).await >= 1);

    let first = tokio::time::timeout(Duration::from_secs(30), stream_get(velox.url("/small")))
        .await
        .expect("within 30s")
        .expect("a complete response, not a cut one");
    assert_eq!(first.status, 200);
    assert_eq!(first.body, format!("small-v2-{}", alphabet(200_000)));
    assert!(
        first.cache_status.starts_with("velox; fwd=uri-miss"),
        "{}",
        first.cache_status
    );
    assert_eq!(origin.count("/small"), 2, "one refetch");
    let again = get(&velox.url("/small")).await;
    assert!(is_hit(&again), "{}", cache_status(&again));
    assert_eq!(again.body, first.body);
}

#[tokio::test]
async fn corruption_in_a_lazily_read_chunk_is_never_served_whole() {
    // No memory tier and a body too large to verify before serving (over 1 MiB): every hit
    // reads its chunks from disk, checksum by checksum.
    let origin = TestOrigin::start(|seen| async move {
        reply(
            200,
            &[("cache-control", "max-age=600")],
            format!("lazy-v{}-{}", seen.n, alphabet(1_200_000)),
        )
    })
    .await;
    let mut velox = start_velox(&origin, CATCH_ALL, "memory_size = 0").await;
    let expected_v1 = format!("lazy-v1-{}", alphabet(1_200_000));
    assert_eq!(get(&velox.url("/lazy")).await.body, expected_v1);
    assert!(corrupt_while_stopped(&mut velox).await >= 1);

    // The first answer may start before the bad chunk is read; then it must be cut short.
    // It must never complete with other bytes.
    let first = tokio::time::timeout(Duration::from_secs(30), stream_get(velox.url("/lazy")))
        .await
        .expect("within 30s");
    if let Ok(r) = &first {
        assert_eq!(r.status, 200);
        assert!(
            r.body == format!("lazy-v2-{}", alphabet(1_200_000)),
            "a complete answer is the origin's ({})",
            r.cache_status
        );
    }
    let again = get(&velox.url("/lazy")).await;
    assert_eq!(again.status, 200);
    let expected_len = expected_v1.len();
    assert_eq!(again.body.len(), expected_len);
    assert!(
        again.body.starts_with(b"lazy-v2-"),
        "served from the origin"
    );
    assert_eq!(origin.count("/lazy"), 2, "one refetch");
}

// ---------------------------------------------------------------------------------------------
// Ranges and conditionals
// ---------------------------------------------------------------------------------------------

/// Parses a multipart/byteranges body into (Content-Range, data) pairs.
fn multipart_parts(content_type: &str, body: &str) -> Vec<(String, String)> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .expect("boundary")
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let mut pieces: Vec<&str> = body.split(&delimiter).collect();
    assert!(
        pieces.last().is_some_and(|l| l.starts_with("--")),
        "closing delimiter"
    );
    pieces.pop();
    pieces
        .into_iter()
        .skip(1)
        .map(|part| {
            let part = part.strip_prefix("\r\n").expect("CRLF after delimiter");
            let (head, data) = part.split_once("\r\n\r\n").expect("part head");
            let data = data.strip_suffix("\r\n").expect("CRLF before delimiter");
            let range = head
                .split("\r\n")
                .find_map(|l| {
                    l.split_once(':')
                        .filter(|(n, _)| n.eq_ignore_ascii_case("content-range"))
                })
                .map(|(_, v)| v.trim().to_owned())
                .expect("part Content-Range");
            (range, data.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn ranges_single_multipart_unsatisfiable_and_if_range_from_cache() {
    let body = alphabet(10_000);
    let origin = {
        let body = body.clone();
        TestOrigin::start(move |_| {
            let body = body.clone();
            async move {
                reply(
                    200,
                    &[
                        ("cache-control", "max-age=600"),
                        ("etag", "\"r1\""),
                        ("content-type", "text/plain"),
                    ],
                    body,
                )
            }
        })
        .await
    };
    let velox = start_velox(&origin, CATCH_ALL, "").await;
    let url = velox.url("/range");
    assert_eq!(get(&url).await.body, body);

    let single = get_with(&url, &[("range", "bytes=100-199")]).await;
    assert_eq!(single.status, 206);
    assert_eq!(single.header("content-range"), Some("bytes 100-199/10000"));
    assert_eq!(single.header("content-length"), Some("100"));
    assert_eq!(single.body, body[100..200]);
    assert!(is_hit(&single), "{}", cache_status(&single));

    let suffix = get_with(&url, &[("range", "bytes=-10")]).await;
    assert_eq!(suffix.status, 206);
    assert_eq!(
        suffix.header("content-range"),
        Some("bytes 9990-9999/10000")
    );
    assert_eq!(suffix.body, body[9990..]);

    let multi = get_with(&url, &[("range", "bytes=0-9,5000-5009")]).await;
    assert_eq!(multi.status, 206);
    let content_type = multi.header("content-type").expect("content-type");
    assert!(
        content_type.starts_with("multipart/byteranges"),
        "{content_type}"
    );
    assert_eq!(
        multi.header("content-length"),
        Some(multi.body.len().to_string().as_str())
    );
    let text = String::from_utf8(multi.body.to_vec()).expect("ascii");
    let parts = multipart_parts(content_type, &text);
    assert_eq!(
        parts,
        vec![
            ("bytes 0-9/10000".to_owned(), body[0..10].to_owned()),
            (
                "bytes 5000-5009/10000".to_owned(),
                body[5000..5010].to_owned()
            ),
        ]
    );

    let unsatisfiable = get_with(&url, &[("range", "bytes=20000-20010")]).await;
    assert_eq!(unsatisfiable.status, 416);
    assert_eq!(unsatisfiable.header("content-range"), Some("bytes */10000"));

    let if_range_match = get_with(&url, &[("range", "bytes=0-4"), ("if-range", "\"r1\"")]).await;
    assert_eq!(if_range_match.status, 206);
    assert_eq!(if_range_match.body, body[0..5]);
    let if_range_other = get_with(&url, &[("range", "bytes=0-4"), ("if-range", "\"r0\"")]).await;
    assert_eq!(if_range_other.status, 200);
    assert_eq!(if_range_other.body, body);
    let if_range_weak = get_with(&url, &[("range", "bytes=0-4"), ("if-range", "W/\"r1\"")]).await;
    assert_eq!(
        if_range_weak.status, 200,
        "a weak tag never satisfies If-Range"
    );

    assert_eq!(
        origin.count("/range"),
        1,
        "every answer came from the cache"
    );

    // A range on a cold miss fetches the whole object once and answers the range from it.
    let cold = get_with(&velox.url("/range-cold"), &[("range", "bytes=10-19")]).await;
    assert_eq!(cold.status, 206);
    assert_eq!(cold.header("content-range"), Some("bytes 10-19/10000"));
    assert_eq!(cold.body, body[10..20]);
    let seen = origin.requests("/range-cold");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("range"),
        None,
        "the whole object was fetched"
    );
    let full = get(&velox.url("/range-cold")).await;
    assert!(is_hit(&full), "{}", cache_status(&full));
    assert_eq!(full.body, body);
    assert_eq!(origin.count("/range-cold"), 1);
}

#[tokio::test]
async fn a_range_of_a_response_that_is_not_stored_is_cut_from_the_stream() {
    let body = alphabet(10_000);
    let origin = {
        let body = body.clone();
        TestOrigin::start(move |seen| {
            let body = body.clone();
            async move {
                let cache_control = if seen.target == "/private" {
                    "private"
                } else {
                    "no-store"
                };
                reply(
                    200,
                    &[("cache-control", cache_control), ("etag", "\"n1\"")],
                    body,
                )
            }
        })
        .await
    };
    let velox = start_velox(&origin, CATCH_ALL, "").await;
    let url = velox.url("/not-stored");

    // The cache asked for the whole object (to store it), then did not store it: the client
    // still gets only its range, not the whole body as a 200.
    let single = get_with(&url, &[("range", "bytes=100-199")]).await;
    assert_eq!(single.status, 206);
    assert_eq!(single.header("content-range"), Some("bytes 100-199/10000"));
    assert_eq!(single.header("content-length"), Some("100"));
    assert_eq!(single.body, body[100..200]);
    let suffix = get_with(&velox.url("/private"), &[("range", "bytes=-10")]).await;
    assert_eq!(suffix.status, 206);
    assert_eq!(suffix.body, body[9_990..]);

    let unsatisfiable = get_with(&url, &[("range", "bytes=20000-20010")]).await;
    assert_eq!(unsatisfiable.status, 416);
    assert_eq!(unsatisfiable.header("content-range"), Some("bytes */10000"));
    assert!(unsatisfiable.body.is_empty());

    // Several ranges, or an If-Range that no longer holds: the whole representation.
    let multi = get_with(&url, &[("range", "bytes=0-9,5000-5009")]).await;
    assert_eq!(multi.status, 200);
    assert_eq!(multi.body, body);
    let changed = get_with(&url, &[("range", "bytes=0-4"), ("if-range", "\"old\"")]).await;
    assert_eq!(changed.status, 200);
    assert_eq!(changed.body, body);
    let held = get_with(&url, &[("range", "bytes=0-4"), ("if-range", "\"n1\"")]).await;
    assert_eq!(held.status, 206);
    assert_eq!(held.body, body[..5]);

    // The connection stays usable: the next request on a fresh client still works, uncached.
    assert_eq!(get(&url).await.body, body);
    assert_eq!(origin.count("/not-stored"), 6);
}

#[tokio::test]
async fn client_conditional_requests_are_answered_304_from_cache() {
    let origin = TestOrigin::start(|seen| async move {
        let etag = if seen.target == "/weak" {
            "W/\"w\""
        } else {
            "\"x\""
        };
        reply(
            200,
            &[("cache-control", "max-age=600"), ("etag", etag)],
            "conditional-body",
        )
    })
    .await;
    let velox = start_velox(&origin, CATCH_ALL, "").await;
    let url = velox.url("/cond");
    assert_eq!(get(&url).await.body, "conditional-body");

    for tag in ["\"x\"", "W/\"x\"", "\"a\", \"x\"", "*"] {
        let r = get_with(&url, &[("if-none-match", tag)]).await;
        assert_eq!(r.status, 304, "If-None-Match: {tag}");
        assert!(r.body.is_empty());
        assert_eq!(r.header("etag"), Some("\"x\""));
        assert!(is_hit(&r), "{}", cache_status(&r));
    }
    let other = get_with(&url, &[("if-none-match", "\"y\"")]).await;
    assert_eq!(other.status, 200);
    assert_eq!(other.body, "conditional-body");
    assert_eq!(origin.count("/cond"), 1);

    let weak = velox.url("/weak");
    assert_eq!(get(&weak).await.body, "conditional-body");
    let r = get_with(&weak, &[("if-none-match", "\"w\"")]).await;
    assert_eq!(r.status, 304, "weak comparison for If-None-Match");
    assert_eq!(origin.count("/weak"), 1);
}

// ---------------------------------------------------------------------------------------------
// Vary
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn vary_variants_are_stored_separately() {
    let origin = TestOrigin::start(|seen| async move {
        let variant = seen.header("x-variant").unwrap_or("none").to_owned();
        reply(
            200,
            &[("cache-control", "max-age=600"), ("vary", "X-Variant")],
            format!("variant={variant}"),
        )
    })
    .await;
    let velox = start_velox(&origin, CATCH_ALL, "").await;
    let url = velox.url("/vary");

    let a = get_with(&url, &[("x-variant", "a")]).await;
    assert_eq!(a.body, "variant=a");
    assert_eq!(
        cache_status(&a),
        "velox; fwd=uri-miss; fwd-status=200; stored"
    );
    let b = get_with(&url, &[("x-variant", "b")]).await;
    assert_eq!(b.body, "variant=b");
    assert_eq!(
        cache_status(&b),
        "velox; fwd=vary-miss; fwd-status=200; stored"
    );
    for v in ["a", "b", "a", "b"] {
        let r = get_with(&url, &[("x-variant", v)]).await;
        assert_eq!(r.body, format!("variant={v}"));
        assert!(is_hit(&r), "{v}: {}", cache_status(&r));
    }
    assert_eq!(origin.count("/vary"), 2);
    let c = get_with(&url, &[("x-variant", "c")]).await;
    assert_eq!(c.body, "variant=c");
    assert!(has_param(&cache_status(&c), "fwd=vary-miss"));
    let none = get(&url).await;
    assert_eq!(none.body, "variant=none");
    assert!(has_param(&cache_status(&none), "fwd=vary-miss"));
    assert_eq!(origin.count("/vary"), 4);
    // Invalidating the URL invalidates all of its variants.
    let post = request("POST", &url, &[], b"x").await;
    assert_eq!(post.status, 200);
    let a = get_with(&url, &[("x-variant", "a")]).await;
    assert!(!is_hit(&a), "{}", cache_status(&a));
    assert_eq!(origin.count_method("GET", "/vary"), 5);
}

// ---------------------------------------------------------------------------------------------
// Unsafe methods, request directives
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn unsafe_methods_invalidate_target_location_and_content_location() {
    let origin = TestOrigin::start(|seen| async move {
        if seen.method == "GET" {
            return reply(
                200,
                &[("cache-control", "max-age=600")],
                format!("{}#{}", seen.target, seen.n),
            );
        }
        match seen.target.as_str() {
            "/fail" => reply(500, &[("location", "/thing")], "failed"),
            "/create" => reply(
                201,
                &[("location", "/loc"), ("content-location", "/cloc")],
                "created",
            ),
            "/elsewhere" => reply(201, &[("location", "http://other.example/far")], "created"),
            _ => reply(200, &[], "done"),
        }
    })
    .await;
    let velox = start_velox(&origin, CATCH_ALL, "").await;
    let cached = |path: &'static str| {
        let url = velox.url(path);
        async move { is_hit(&get(&url).await) }
    };
    for path in ["/thing", "/loc", "/cloc", "/far"] {
        get(&velox.url(path)).await;
        assert!(cached(path).await, "{path} cached");
    }

    // A 2xx to the POST invalidates the target URI.
    let posted = request("POST", &velox.url("/thing"), &[], b"x").await;
    assert_eq!(posted.status, 200, "origin answers 200 to POST /thing");
    assert!(!cached("/thing").await, "POST 200 invalidated /thing");
    assert_eq!(get(&velox.url("/thing")).await.body, "/thing#3");
    assert!(cached("/thing").await);
    // A 500 to the POST does not invalidate (not even its Location).
    let failed = request("POST", &velox.url("/fail"), &[], b"x").await;
    assert_eq!(failed.status, 500);
    assert!(cached("/thing").await, "a 500 invalidates nothing");

    let created = request("POST", &velox.url("/create"), &[], b"x").await;
    assert_eq!(created.status, 201);
    assert!(!cached("/loc").await, "Location invalidated");
    assert!(!cached("/cloc").await, "Content-Location invalidated");

    let put = request("PUT", &velox.url("/elsewhere"), &[], b"x").await;
    assert_eq!(put.status, 201);
    assert!(cached("/far").await, "another origin's URI is left alone");

    let delete = request("DELETE", &velox.url("/far"), &[], b"").await;
    assert_eq!(delete.status, 200);
    assert!(!cached("/far").await, "DELETE invalidated");
}

#[tokio::test]
async fn only_if_cached_504_on_miss_200_on_hit() {
    let origin =
        TestOrigin::start(|_| async { reply(200, &[("cache-control", "max-age=600")], "oic") })
            .await;
    let velox = start_velox(&origin, CATCH_ALL, "").await;
    let url = velox.url("/oic");
    let miss = get_with(&url, &[("cache-control", "only-if-cached")]).await;
    assert_eq!(miss.status, 504);
    assert_eq!(origin.count("/oic"), 0, "the origin was not asked");
    assert_eq!(get(&url).await.body, "oic");
    let hit = get_with(&url, &[("cache-control", "only-if-cached")]).await;
    assert_eq!(hit.status, 200);
    assert_eq!(hit.body, "oic");
    assert!(is_hit(&hit));
    assert_eq!(origin.count("/oic"), 1);
}

#[tokio::test]
async fn request_no_cache_revalidates_unless_route_ignores_it() {
    let origin = TestOrigin::start(|seen| async move {
        if seen.header("if-none-match") == Some("\"nc\"") {
            reply(
                304,
                &[("etag", "\"nc\""), ("cache-control", "max-age=600")],
                "",
            )
        } else {
            reply(
                200,
                &[("etag", "\"nc\""), ("cache-control", "max-age=600")],
                "no-cache-body",
            )
        }
    })
    .await;
    let routes = format!(
        "[[routes]]\npath_prefix = \"/ignore/\"\nupstream = \"origin\"\n\
         [routes.cache]\nignore_client_no_cache = true\n{CATCH_ALL}"
    );
    let velox = start_velox(&origin, &routes, "").await;

    let url = velox.url("/nc");
    assert_eq!(get(&url).await.body, "no-cache-body");
    let r = get_with(&url, &[("cache-control", "no-cache")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "no-cache-body");
    let seen = origin.requests("/nc");
    assert_eq!(seen.len(), 2, "no-cache went to the origin");
    assert_eq!(
        seen[1].header("if-none-match"),
        Some("\"nc\""),
        "conditionally"
    );
    assert!(!is_hit(&r), "{}", cache_status(&r));
    let r = get_with(&url, &[("pragma", "no-cache")]).await;
    assert_eq!(r.body, "no-cache-body");
    assert_eq!(
        origin.count("/nc"),
        3,
        "Pragma: no-cache without Cache-Control"
    );

    let url = velox.url("/ignore/nc");
    assert_eq!(get(&url).await.body, "no-cache-body");
    let r = get_with(&url, &[("cache-control", "no-cache")]).await;
    assert_eq!(r.body, "no-cache-body");
    assert!(is_hit(&r), "{}", cache_status(&r));
    assert_eq!(origin.count("/ignore/nc"), 1);
}

#[tokio::test]
async fn authorization_and_set_cookie_are_not_stored_by_default() {
    let origin = TestOrigin::start(|seen| async move {
        let cc = match seen.target.as_str() {
            "/auth-public" => "public, max-age=600",
            "/auth-smax" => "s-maxage=600",
            _ => "max-age=600",
        };
        let mut headers = vec![("cache-control", cc)];
        if seen.target.contains("cookie") {
            headers.push(("set-cookie", "session=abc"));
        }
        reply(200, &headers, format!("{}#{}", seen.target, seen.n))
    })
    .await;
    let routes = format!(
        "[[routes]]\npath_prefix = \"/store-cookie/\"\nupstream = \"origin\"\n\
         [routes.cache]\nstore_set_cookie = true\n{CATCH_ALL}"
    );
    let velox = start_velox(&origin, &routes, "").await;
    let auth = [("authorization", "Bearer secret-token")];
    for (path, stored) in [
        ("/auth", false),
        ("/auth-public", true),
        ("/auth-smax", true),
    ] {
        for _ in 0..2 {
            get_with(&velox.url(path), &auth).await;
        }
        assert_eq!(
            origin.count(path),
            if stored { 1 } else { 2 },
            "{path} stored: {stored}"
        );
    }
    for _ in 0..2 {
        let r = get(&velox.url("/cookie")).await;
        assert_eq!(r.header("set-cookie"), Some("session=abc"));
    }
    assert_eq!(
        origin.count("/cookie"),
        2,
        "Set-Cookie not stored by default"
    );
    for _ in 0..2 {
        get(&velox.url("/store-cookie/cookie")).await;
    }
    assert_eq!(
        origin.count("/store-cookie/cookie"),
        1,
        "store_set_cookie = true stores it"
    );
}

#[tokio::test]
async fn targeted_cache_control_overrides_and_is_not_forwarded() {
    let origin = TestOrigin::start(|seen| async move {
        let headers: &[(&str, &str)] = match seen.target.as_str() {
            "/cdn" => &[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=60"),
            ],
            "/velox-wins" => &[
                ("cache-control", "max-age=600"),
                ("cdn-cache-control", "max-age=600"),
                ("velox-cache-control", "no-store"),
            ],
            _ => &[
                ("cache-control", "max-age=600"),
                ("cdn-cache-control", "no-store"),
            ],
        };
        reply(200, headers, format!("{}#{}", seen.target, seen.n))
    })
    .await;
    let velox = start_velox(&origin, CATCH_ALL, "").await;
    let first = get(&velox.url("/cdn")).await;
    assert_eq!(first.header("cdn-cache-control"), None, "not forwarded");
    assert_eq!(first.header("cache-control"), Some("no-store"));
    let second = get(&velox.url("/cdn")).await;
    assert!(is_hit(&second), "{}", cache_status(&second));
    assert_eq!(second.header("cdn-cache-control"), None);
    assert_eq!(second.body, "/cdn#1");
    assert_eq!(origin.count("/cdn"), 1);

    for _ in 0..2 {
        let r = get(&velox.url("/velox-wins")).await;
        assert_eq!(r.header("velox-cache-control"), None);
        assert_eq!(r.header("cdn-cache-control"), None);
    }
    assert_eq!(origin.count("/velox-wins"), 2, "Velox-Cache-Control first");
    for _ in 0..2 {
        get(&velox.url("/cdn-no-store")).await;
    }
    assert_eq!(
        origin.count("/cdn-no-store"),
        2,
        "CDN-Cache-Control: no-store wins"
    );
}

#[tokio::test]
async fn targeted_fields_forwarded_when_configured() {
    let origin = TestOrigin::start(|_| async {
        reply(
            200,
            &[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=60"),
            ],
            "fwd",
        )
    })
    .await;
    let velox = start_velox(&origin, CATCH_ALL, "forward_targeted_fields = true").await;
    let first = get(&velox.url("/t")).await;
    assert_eq!(first.header("cdn-cache-control"), Some("max-age=60"));
    let second = get(&velox.url("/t")).await;
    assert!(is_hit(&second));
    assert_eq!(second.header("cdn-cache-control"), Some("max-age=60"));
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn key_separation_crafted_urls_never_share_a_response() {
    let origin = TestOrigin::start(|seen| async move {
        reply(
            200,
            &[("cache-control", "max-age=600")],
            format!("target={}", seen.target),
        )
    })
    .await;
    let velox = start_velox(&origin, CATCH_ALL, "").await;
    let host = velox.addr.to_string();
    let distinct = [
        "/k/Case",
        "/k/case",
        "/k/dir",
        "/k/dir/",
        "/k/q",
        "/k/q?",
        "/k/a%2Fb",
        "/k/a/b",
        "/k/a%2fc",
        "/k/a/c",
        "/k/o?a=1&b=2",
        "/k/o?b=2&a=1",
        "/k/sp%20x",
        "/k/sp+x",
        "/k/e?x=%26",
        "/k/e?x=&",
    ];
    for round in 0..2 {
        for target in distinct {
            let r = raw_get(velox.addr, target, &host).await;
            assert_eq!(r.status, 200, "{target}");
            assert_eq!(r.body, format!("target={target}"), "{target} round {round}");
            if round == 1 {
                let status = r.header("cache-status").unwrap_or("");
                assert!(status.starts_with("velox; hit"), "{target}: {status}");
            }
        }
    }
    for target in distinct {
        assert_eq!(origin.count(target), 1, "{target}");
    }
}

#[tokio::test]
async fn key_scheme_and_host_case_share_one_entry() {
    let origin = TestOrigin::start(|seen| async move {
        reply(
            200,
            &[("cache-control", "max-age=600")],
            format!("host={}", seen.header("host").unwrap_or("")),
        )
    })
    .await;
    let velox = start_velox(&origin, CATCH_ALL, "").await;
    let first = raw_get(velox.addr, "/h", "example.com").await;
    assert_eq!(first.body, "host=example.com");
    for host in ["EXAMPLE.com", "Example.COM:80", "example.com"] {
        let r = raw_get(velox.addr, "/h", host).await;
        assert_eq!(r.body, "host=example.com", "Host: {host}");
        let status = r.header("cache-status").unwrap_or("");
        assert!(status.starts_with("velox; hit"), "Host: {host}: {status}");
    }
    // Absolute-form with a mixed-case scheme and host is the same resource too.
    let r = raw_get(velox.addr, "HTTP://EXAMPLE.COM/h", "example.com").await;
    assert_eq!(r.body, "host=example.com");
    assert!(r
        .header("cache-status")
        .unwrap_or("")
        .starts_with("velox; hit"));
    // Another host is another resource.
    let other = raw_get(velox.addr, "/h", "example.org").await;
    assert_eq!(other.body, "host=example.org");
    assert_eq!(origin.count("/h"), 2);
}

#[tokio::test]
async fn key_rules_drop_and_sort_query() {
    let origin = TestOrigin::start(|seen| async move {
        reply(
            200,
            &[("cache-control", "max-age=600")],
            format!("target={}", seen.target),
        )
    })
    .await;
    let routes = format!(
        "[[routes]]\npath_prefix = \"/sorted/\"\nupstream = \"origin\"\n\
         [routes.cache.key]\nsort_query = true\n\
         [[routes]]\npath_prefix = \"/dropped/\"\nupstream = \"origin\"\n\
         [routes.cache.key]\ndrop_query = [\"utm_*\"]\n{CATCH_ALL}"
    );
    let velox = start_velox(&origin, &routes, "").await;

    let a = get(&velox.url("/sorted/x?a=1&b=2")).await;
    assert_eq!(a.body, "target=/sorted/x?a=1&b=2");
    let b = get(&velox.url("/sorted/x?b=2&a=1")).await;
    assert_eq!(b.body, "target=/sorted/x?a=1&b=2", "sorted: same entry");
    assert!(is_hit(&b), "{}", cache_status(&b));

    let plain = get(&velox.url("/dropped/p")).await;
    assert_eq!(plain.body, "target=/dropped/p");
    let tagged = get(&velox.url("/dropped/p?utm_source=x&utm_medium=y")).await;
    assert!(is_hit(&tagged), "{}", cache_status(&tagged));
    assert_eq!(tagged.body, "target=/dropped/p");
    let other = get(&velox.url("/dropped/p?page=2&utm_source=x")).await;
    assert_eq!(other.body, "target=/dropped/p?page=2&utm_source=x");
    let same = get(&velox.url("/dropped/p?utm_campaign=z&page=2")).await;
    assert!(is_hit(&same), "{}", cache_status(&same));
    assert_eq!(same.body, "target=/dropped/p?page=2&utm_source=x");
    assert_eq!(origin.count("/dropped/p"), 1);

    // Without sort_query, order matters.
    let c = get(&velox.url("/plain?a=1&b=2")).await;
    let d = get(&velox.url("/plain?b=2&a=1")).await;
    assert_eq!(c.body, "target=/plain?a=1&b=2");
    assert_eq!(d.body, "target=/plain?b=2&a=1");

    let keyed = get_with(&velox.url("/sorted/x?b=2&a=1"), &[("velox-debug", "key")]).await;
    let status = cache_status(&keyed);
    assert!(status.contains("key=\""), "{status}");
    assert!(status.contains("/sorted/x?a=1&b=2"), "{status}");
}

// ---------------------------------------------------------------------------------------------
// Routes, HEAD
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bypass_route_always_goes_to_origin() {
    let origin = TestOrigin::start(|seen| async move {
        reply(
            200,
            &[("cache-control", "max-age=600")],
            format!("n={}", seen.n),
        )
    })
    .await;
    let routes = format!(
        "[[routes]]\npath_prefix = \"/bypass/\"\nupstream = \"origin\"\n\
         [routes.cache]\nmode = \"bypass\"\n{CATCH_ALL}"
    );
    let velox = start_velox(&origin, &routes, "").await;
    for n in 1..=3 {
        let r = get(&velox.url("/bypass/x")).await;
        assert_eq!(r.body, format!("n={n}"));
        assert_eq!(cache_status(&r), "velox; fwd=bypass");
        assert_eq!(r.header("age"), None);
    }
    assert_eq!(origin.count("/bypass/x"), 3);
}

#[tokio::test]
async fn head_from_stored_get_but_get_never_from_head() {
    let origin = TestOrigin::start(|seen| async move {
        reply(
            200,
            &[("cache-control", "max-age=600")],
            format!("{} body {}", seen.target, alphabet(1000)),
        )
    })
    .await;
    let velox = start_velox(&origin, CATCH_ALL, "").await;
    let expected = format!("/head body {}", alphabet(1000));
    assert_eq!(get(&velox.url("/head")).await.body, expected);
    let head = request("HEAD", &velox.url("/head"), &[], b"").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(expected.len().to_string().as_str())
    );
    assert!(is_hit(&head), "{}", cache_status(&head));
    assert_eq!(origin.count("/head"), 1);

    let head = request("HEAD", &velox.url("/head-only"), &[], b"").await;
    assert_eq!(head.status, 200);
    assert_eq!(origin.count_method("HEAD", "/head-only"), 1);
    let get_after = get(&velox.url("/head-only")).await;
    assert_eq!(
        get_after.body,
        format!("/head-only body {}", alphabet(1000))
    );
    assert!(
        cache_status(&get_after).starts_with("velox; fwd=uri-miss"),
        "{}",
        cache_status(&get_after)
    );
    assert_eq!(origin.count_method("GET", "/head-only"), 1);
}

#[tokio::test]
async fn debug_header_exposes_the_key() {
    // The debug header adds key="..." without changing the outcome.
    let origin =
        TestOrigin::start(|_| async { reply(200, &[("cache-control", "max-age=600")], "k") }).await;
    let velox = start_velox(&origin, CATCH_ALL, "").await;
    let r = get_with(&velox.url("/dbg?x=1"), &[("velox-debug", "key")]).await;
    let status = cache_status(&r);
    assert!(
        status.starts_with("velox; fwd=uri-miss; fwd-status=200; stored; key=\""),
        "{status}"
    );
    assert!(status.ends_with("/dbg?x=1\""), "{status}");
    let plain = get(&velox.url("/dbg?x=1")).await;
    assert!(!cache_status(&plain).contains("key="));
}

// ---------------------------------------------------------------------------------------------
// Freshness details, route TTL policy, size limits
// ---------------------------------------------------------------------------------------------

/// An HTTP-date `offset_secs` from now (negative: in the past).
fn http_date(offset_secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let t = now + offset_secs;
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{weekday}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        months[(month - 1) as usize],
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[tokio::test]
async fn freshness_s_maxage_expires_upstream_age_and_heuristic() {
    let origin = TestOrigin::start(|seen| async move {
        let expires_future = http_date(600);
        let expires_past = http_date(-600);
        let last_modified = http_date(-10 * 86_400);
        let headers: Vec<(&str, String)> = match seen.target.as_str() {
            // s-maxage wins over max-age for a shared cache.
            "/smax" => vec![("cache-control", "max-age=0, s-maxage=600".into())],
            // max-age wins over Expires.
            "/maxage-over-expires" => vec![
                ("cache-control", "max-age=600".into()),
                ("expires", expires_past),
            ],
            "/expires" => vec![("expires", expires_future)],
            "/expired" => vec![("expires", expires_past)],
            // An invalid Expires means "already expired" (RFC 9111 §5.3).
            "/bad-expires" => vec![("expires", "0".into())],
            // Upstream Age counts (§4.2.3): 60 - 50 leaves about 10 s.
            "/aged" => vec![("cache-control", "max-age=60".into()), ("age", "50".into())],
            // Already older than its lifetime upstream: stale on arrival.
            "/too-old" => vec![
                ("cache-control", "max-age=60".into()),
                ("age", "100".into()),
            ],
            // Heuristic freshness: 10% of ten days.
            "/heuristic" => vec![("last-modified", last_modified)],
            "/max-age-zero" => vec![("cache-control", "max-age=0".into())],
            _ => vec![],
        };
        let refs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        reply(200, &refs, format!("{}#{}", seen.target, seen.n))
    })
    .await;
    let velox = start_velox(&origin, CATCH_ALL, "").await;
    let twice = |path: &'static str| {
        let url = velox.url(path);
        async move {
            let first = get(&url).await;
            assert_eq!(first.body, format!("{path}#1"));
            get(&url).await
        }
    };

    for path in ["/smax", "/maxage-over-expires", "/expires", "/heuristic"] {
        let r = twice(path).await;
        assert!(is_hit(&r), "{path}: {}", cache_status(&r));
        assert_eq!(r.body, format!("{path}#1"));
        assert_eq!(origin.count(path), 1, "{path}");
    }
    let heuristic = twice("/heuristic").await;
    let ttl = ttl_of(&cache_status(&heuristic)).expect("ttl");
    assert!(
        (86_000..=86_400).contains(&ttl),
        "heuristic lifetime is 10% of Date - Last-Modified: {ttl}"
    );

    let aged = twice("/aged").await;
    assert!(is_hit(&aged), "{}", cache_status(&aged));
    let age = age_of(&aged).expect("Age");
    assert!(
        (50..=52).contains(&age),
        "Age includes the upstream Age: {age}"
    );
    let ttl = ttl_of(&cache_status(&aged)).expect("ttl");
    assert!((8..=10).contains(&ttl), "ttl {ttl}");

    for path in ["/expired", "/bad-expires", "/too-old", "/max-age-zero"] {
        let r = twice(path).await;
        assert!(!is_hit(&r), "{path} is stale: {}", cache_status(&r));
        assert_eq!(r.body, format!("{path}#2"));
        assert_eq!(origin.count(path), 2, "{path}");
    }
}

#[tokio::test]
async fn request_max_age_and_response_no_cache_force_revalidation() {
    let origin = TestOrigin::start(|seen| async move {
        let cc = if seen.target == "/resp-no-cache" {
            "no-cache"
        } else {
            "max-age=600"
        };
        if seen.header("if-none-match") == Some("\"v\"") {
            return reply(304, &[("etag", "\"v\""), ("cache-control", cc)], "");
        }
        reply(
            200,
            &[("etag", "\"v\""), ("cache-control", cc)],
            format!("{}#{}", seen.target, seen.n),
        )
    })
    .await;
    let velox = start_velox(&origin, CATCH_ALL, "").await;

    let url = velox.url("/req-max-age");
    get(&url).await;
    let r = get_with(&url, &[("cache-control", "max-age=0")]).await;
    assert_eq!(r.body, "/req-max-age#1");
    assert_eq!(origin.count("/req-max-age"), 2, "max-age=0 went forward");
    assert_eq!(
        origin.requests("/req-max-age")[1].header("if-none-match"),
        Some("\"v\"")
    );
    let r = get_with(&url, &[("cache-control", "max-age=300")]).await;
    assert!(is_hit(&r), "{}", cache_status(&r));
    let r = get_with(&url, &[("cache-control", "min-fresh=3600")]).await;
    assert!(!is_hit(&r), "min-fresh beyond the remaining lifetime");

    let url = velox.url("/resp-no-cache");
    for _ in 0..3 {
        let r = get(&url).await;
        assert_eq!(r.body, "/resp-no-cache#1");
    }
    let seen = origin.requests("/resp-no-cache");
    assert_eq!(seen.len(), 3, "response no-cache: validated on every use");
    assert!(seen[1..]
        .iter()
        .all(|s| s.header("if-none-match") == Some("\"v\"")));
}

#[tokio::test]
async fn route_ttl_policy_status_ttl_default_ttl_override_and_opt_in() {
    let origin = TestOrigin::start(|seen| async move {
        let target = seen.target.clone();
        let body = format!("{target}#{}", seen.n);
        if target.ends_with("/missing") {
            return reply(404, &[], body);
        }
        if target.ends_with("/broken") {
            return reply(500, &[], body);
        }
        if target.ends_with("/explicit") {
            return reply(200, &[("cache-control", "max-age=600")], body);
        }
        if target.ends_with("/nostore") {
            return reply(200, &[("cache-control", "no-store")], body);
        }
        // No freshness information at all.
        reply(200, &[], body)
    })
    .await;
    let routes = format!(
        "[[routes]]\npath_prefix = \"/status/\"\nupstream = \"origin\"\n\
         [routes.cache]\nstatus_ttl = {{ \"404\" = \"30s\" }}\n\
         [[routes]]\npath_prefix = \"/default/\"\nupstream = \"origin\"\n\
         [routes.cache]\ndefault_ttl = \"1m\"\n\
         [[routes]]\npath_prefix = \"/override/\"\nupstream = \"origin\"\n\
         [routes.cache]\nmode = \"override\"\nttl = \"10m\"\n\
         [[routes]]\npath_prefix = \"/optin/\"\nupstream = \"origin\"\n\
         [routes.cache]\nmode = \"opt-in\"\ndefault_ttl = \"1m\"\n{CATCH_ALL}"
    );
    let velox = start_velox(&origin, &routes, "").await;
    let stored_after_two = |path: &'static str| {
        let url = velox.url(path);
        async move {
            get(&url).await;
            let second = get(&url).await;
            (is_hit(&second), cache_status(&second))
        }
    };
    let cases: [(&str, bool); 10] = [
        ("/status/missing", true),
        ("/status/broken", false),
        ("/status/plain", false),
        ("/default/plain", true),
        ("/default/missing", true),
        ("/override/plain", true),
        ("/override/nostore", false),
        ("/optin/plain", false),
        ("/optin/explicit", true),
        ("/plain", false),
    ];
    for (path, stored) in cases {
        let (hit, status) = stored_after_two(path).await;
        assert_eq!(hit, stored, "{path}: {status}");
        assert_eq!(origin.count(path), if stored { 1 } else { 2 }, "{path}");
    }
    let r = get(&velox.url("/status/missing")).await;
    assert_eq!(r.status, 404);
    assert!(ttl_of(&cache_status(&r)).is_some_and(|t| (28..=30).contains(&t)));
    let r = get(&velox.url("/override/plain")).await;
    assert!(ttl_of(&cache_status(&r)).is_some_and(|t| (598..=600).contains(&t)));
}

#[tokio::test]
async fn vary_star_and_oversized_objects_are_not_stored() {
    let big = alphabet(20_000);
    let origin = {
        let big = big.clone();
        TestOrigin::start(move |seen| {
            let big = big.clone();
            async move {
                match seen.target.as_str() {
                    "/star" => reply(
                        200,
                        &[("cache-control", "max-age=600"), ("vary", "*")],
                        "star",
                    ),
                    _ => reply(200, &[("cache-control", "max-age=600")], big),
                }
            }
        })
        .await
    };
    let velox = start_velox(&origin, CATCH_ALL, "max_object_size = \"8KiB\"").await;
    for _ in 0..2 {
        let r = get(&velox.url("/star")).await;
        assert_eq!(r.body, "star");
        assert!(!is_hit(&r));
    }
    assert_eq!(
        origin.count("/star"),
        2,
        "Vary: * is never served from cache"
    );
    for _ in 0..2 {
        let r = get(&velox.url("/big")).await;
        assert_eq!(r.body, big, "streamed through whole");
        assert!(!has_param(&cache_status(&r), "stored"));
    }
    assert_eq!(origin.count("/big"), 2, "larger than max_object_size");
}

#[tokio::test]
async fn range_on_a_miss_above_range_fetch_max_is_passed_through() {
    let body = alphabet(50_000);
    let origin = {
        let body = body.clone();
        TestOrigin::start(move |seen| {
            let body = body.clone();
            async move {
                // A range-capable origin.
                let range = seen.header("range").map(str::to_owned);
                match range.as_deref() {
                    Some("bytes=0-9") => reply(
                        206,
                        &[
                            ("cache-control", "max-age=600"),
                            ("content-range", "bytes 0-9/50000"),
                        ],
                        body[0..10].to_owned(),
                    ),
                    _ => reply(200, &[("cache-control", "max-age=600")], body),
                }
            }
        })
        .await
    };
    let velox = start_velox(&origin, CATCH_ALL, "range_fetch_max = \"16KiB\"").await;
    let r = get_with(&velox.url("/large-range"), &[("range", "bytes=0-9")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, body[0..10]);
    assert_eq!(r.header("content-range"), Some("bytes 0-9/50000"));
    let seen = origin.requests("/large-range");
    assert!(
        seen.iter().any(|s| s.header("range") == Some("bytes=0-9")),
        "the range went to the origin"
    );
}

#[tokio::test]
async fn range_of_a_large_response_that_is_not_stored_is_asked_of_the_origin() {
    let body = alphabet(50_000);
    let origin = {
        let body = body.clone();
        TestOrigin::start(move |seen| {
            let body = body.clone();
            async move {
                match seen.header("range") {
                    Some("bytes=40000-40009") => reply(
                        206,
                        &[
                            ("cache-control", "no-store"),
                            ("content-range", "bytes 40000-40009/50000"),
                        ],
                        body[40_000..40_010].to_owned(),
                    ),
                    _ => reply(200, &[("cache-control", "no-store")], body),
                }
            }
        })
        .await
    };
    let velox = start_velox(&origin, CATCH_ALL, "range_fetch_max = \"16KiB\"").await;
    let r = get_with(&velox.url("/big"), &[("range", "bytes=40000-40009")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, body[40_000..40_010]);
    assert_eq!(r.header("content-range"), Some("bytes 40000-40009/50000"));
    assert!(has_param(&cache_status(&r), "detail=range-passed-through"));
    // First the whole object (to store it); once it proved uncacheable, just the range.
    let seen = origin.requests("/big");
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].header("range"), Some("bytes=40000-40009"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_followers_of_another_variant_get_their_own_response() {
    let finished = Arc::new(Mutex::new(None::<Instant>));
    let origin = {
        let finished = finished.clone();
        TestOrigin::start(move |seen| {
            let finished = finished.clone();
            async move {
                let variant = seen.header("x-variant").unwrap_or("none").to_owned();
                let first = Bytes::from(format!("variant={variant};"));
                let rest = Bytes::from(alphabet(1000));
                Response::builder()
                    .status(200)
                    .header("cache-control", "max-age=600")
                    .header("vary", "X-Variant")
                    .header("content-length", (first.len() + rest.len()).to_string())
                    .body(slow_body(first, Duration::from_millis(700), rest, finished))
                    .expect("response")
            }
        })
        .await
    };
    let velox = start_velox(&origin, CATCH_ALL, "").await;
    let url = velox.url("/vary-race");
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                let variant = if i % 2 == 0 { "even" } else { "odd" };
                (variant, get_with(&url, &[("x-variant", variant)]).await)
            })
        })
        .collect();
    for task in tasks {
        let (variant, r) = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("within 30s")
            .expect("task");
        assert!(
            r.body.starts_with(format!("variant={variant};").as_bytes()),
            "{variant} got {:?}",
            String::from_utf8_lossy(&r.body[..20.min(r.body.len())])
        );
    }
    let count = origin.count("/vary-race");
    assert!((2..=20).contains(&count), "{count}");
    for variant in ["even", "odd"] {
        let r = get_with(&url, &[("x-variant", variant)]).await;
        assert!(is_hit(&r), "{variant}: {}", cache_status(&r));
        assert!(r.body.starts_with(format!("variant={variant};").as_bytes()));
    }
}

#[tokio::test]
async fn if_modified_since_answered_from_cache() {
    let last_modified = http_date(-3600);
    let origin = {
        let last_modified = last_modified.clone();
        TestOrigin::start(move |_| {
            let last_modified = last_modified.clone();
            async move {
                reply(
                    200,
                    &[
                        ("cache-control", "max-age=600"),
                        ("last-modified", last_modified.as_str()),
                    ],
                    "lm-body",
                )
            }
        })
        .await
    };
    let velox = start_velox(&origin, CATCH_ALL, "").await;
    let url = velox.url("/lm");
    get(&url).await;
    let same = get_with(&url, &[("if-modified-since", &last_modified)]).await;
    assert_eq!(same.status, 304);
    assert!(is_hit(&same), "{}", cache_status(&same));
    let earlier = http_date(-7200);
    let older = get_with(&url, &[("if-modified-since", &earlier)]).await;
    assert_eq!(older.status, 200);
    assert_eq!(older.body, "lm-body");
    // If-None-Match takes precedence over If-Modified-Since (RFC 9110 §13.1.3).
    let both = get_with(
        &url,
        &[
            ("if-none-match", "\"nope\""),
            ("if-modified-since", &last_modified),
        ],
    )
    .await;
    assert_eq!(both.status, 200);
    assert_eq!(origin.count("/lm"), 1);
}

// ---------------------------------------------------------------------------------------------
// More edges: keyed headers and invalidation, abandoned leaders, qualified private, stale 504
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn invalidation_reaches_entries_keyed_by_request_headers() {
    let origin = TestOrigin::start(|seen| async move {
        let tenant = seen.header("x-tenant").unwrap_or("none").to_owned();
        if seen.method != "GET" {
            return reply(200, &[], "changed");
        }
        reply(
            200,
            &[("cache-control", "max-age=600")],
            format!("tenant={tenant}#{}", seen.n),
        )
    })
    .await;
    let routes = format!(
        "[[routes]]\npath_prefix = \"/tenant/\"\nupstream = \"origin\"\n\
         [routes.cache.key]\nheaders = [\"x-tenant\"]\n{CATCH_ALL}"
    );
    let velox = start_velox(&origin, &routes, "").await;
    let url = velox.url("/tenant/doc");
    let a = [("x-tenant", "a")];
    let b = [("x-tenant", "b")];
    assert_eq!(get_with(&url, &a).await.body, "tenant=a#1");
    assert_eq!(get_with(&url, &b).await.body, "tenant=b#2");
    assert!(is_hit(&get_with(&url, &a).await));
    assert!(is_hit(&get_with(&url, &b).await));

    // RFC 9111 §4.4: the POST invalidates the target URI, whatever else the key holds.
    let post = request("POST", &url, &a, b"x").await;
    assert_eq!(post.status, 200);
    let after = get_with(&url, &a).await;
    assert!(
        !is_hit(&after),
        "tenant a's entry survived POST: {}",
        cache_status(&after)
    );
    assert_eq!(after.body, "tenant=a#4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_client_going_away_does_not_break_followers_or_the_fill() {
    let finished = Arc::new(Mutex::new(None::<Instant>));
    let first = Bytes::from(alphabet(1000));
    let rest = Bytes::from(alphabet(50_000));
    let expected = [first.clone(), rest.clone()].concat();
    let origin = {
        let (first, rest, finished) = (first.clone(), rest.clone(), finished.clone());
        TestOrigin::start(move |_| {
            let (first, rest, finished) = (first.clone(), rest.clone(), finished.clone());
            async move {
                Response::builder()
                    .status(200)
                    .header("cache-control", "max-age=600")
                    .header("content-length", (first.len() + rest.len()).to_string())
                    .body(slow_body(first, Duration::from_millis(800), rest, finished))
                    .expect("response")
            }
        })
        .await
    };
    let velox = start_velox(&origin, CATCH_ALL, "").await;
    let addr = velox.addr;

    // The leader reads the head and the first bytes, then hangs up.
    let leader = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(format!("GET /abandon HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut buf = vec![0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("first bytes within 10s")
            .expect("read");
        assert!(n > 0);
        drop(stream);
    };
    leader.await;
    let follower = tokio::time::timeout(Duration::from_secs(30), stream_get(velox.url("/abandon")))
        .await
        .expect("within 30s")
        .expect("follower request");
    assert_eq!(follower.status, 200);
    assert!(follower.body == expected, "follower got the whole body");
    let after = get(&velox.url("/abandon")).await;
    assert!(is_hit(&after), "{}", cache_status(&after));
    assert_eq!(after.body, expected);
    assert_eq!(origin.count("/abandon"), 1);
}

#[tokio::test]
async fn qualified_private_strips_the_named_field_and_stores_the_rest() {
    let origin = TestOrigin::start(|seen| async move {
        reply(
            200,
            &[
                ("cache-control", "max-age=600, private=\"X-User\""),
                ("x-user", "alice"),
                ("x-public", "yes"),
            ],
            format!("shared#{}", seen.n),
        )
    })
    .await;
    let velox = start_velox(&origin, CATCH_ALL, "").await;
    get(&velox.url("/qp")).await;
    let hit = get(&velox.url("/qp")).await;
    assert!(is_hit(&hit), "{}", cache_status(&hit));
    assert_eq!(hit.body, "shared#1");
    assert_eq!(
        hit.header("x-user"),
        None,
        "the private field is never shared"
    );
    assert_eq!(hit.header("x-public"), Some("yes"));
    assert_eq!(origin.count("/qp"), 1);
}

#[tokio::test]
async fn stale_entry_with_only_if_cached_is_504_and_upstream_cache_status_is_kept() {
    let origin = TestOrigin::start(|seen| async move {
        reply(
            200,
            &[
                ("cache-control", "max-age=1"),
                ("cache-status", "origin-cache; hit"),
            ],
            format!("#{}", seen.n),
        )
    })
    .await;
    let velox = start_velox(&origin, CATCH_ALL, "").await;
    let first = get(&velox.url("/oic-stale")).await;
    assert_eq!(
        cache_status(&first),
        "origin-cache; hit, velox; fwd=uri-miss; fwd-status=200; stored",
        "Velox's member is appended last (RFC 9211 §2)"
    );
    let_it_go_stale().await;
    let r = get_with(
        &velox.url("/oic-stale"),
        &[("cache-control", "only-if-cached")],
    )
    .await;
    assert_eq!(r.status, 504);
    assert_eq!(origin.count("/oic-stale"), 1);
    let r = get_with(
        &velox.url("/oic-stale"),
        &[("cache-control", "only-if-cached, max-stale")],
    )
    .await;
    assert_eq!(r.status, 200, "max-stale accepts the stale entry");
    assert_eq!(r.body, "#1");
    assert_eq!(origin.count("/oic-stale"), 1);
}

#[tokio::test]
async fn authorization_with_must_revalidate_is_stored() {
    let origin = TestOrigin::start(|seen| async move {
        reply(
            200,
            &[("cache-control", "max-age=600, must-revalidate")],
            format!("#{}", seen.n),
        )
    })
    .await;
    let velox = start_velox(&origin, CATCH_ALL, "").await;
    let auth = [("authorization", "Basic dXNlcjpwYXNz")];
    get_with(&velox.url("/auth-mr"), &auth).await;
    let r = get_with(&velox.url("/auth-mr"), &auth).await;
    assert!(is_hit(&r), "{}", cache_status(&r));
    assert_eq!(origin.count("/auth-mr"), 1);
}

/// A chunked origin body (no Content-Length) that is storable: streamed to its client and stored
/// as it passes, so the next request is a hit; one larger than max_object_size streams whole and is
/// not stored.
#[tokio::test]
async fn responses_without_a_length_are_stored_as_they_stream() {
    let small = Bytes::from(alphabet(3_000));
    let large = Bytes::from(alphabet(20_000));
    let origin = {
        let (small, large) = (small.clone(), large.clone());
        TestOrigin::start(move |seen| {
            let (small, large) = (small.clone(), large.clone());
            async move {
                let body = if seen.target == "/chunked/large" {
                    large
                } else {
                    small
                };
                let (first, rest) = (body.slice(..1000), body.slice(1000..));
                let finished = Arc::new(Mutex::new(None));
                Response::builder()
                    .status(200)
                    .header("cache-control", "max-age=600")
                    .body(slow_body(first, Duration::from_millis(20), rest, finished))
                    .expect("origin response")
            }
        })
        .await
    };
    let velox = start_velox(&origin, CATCH_ALL, "max_object_size = \"8KiB\"").await;

    let first = get(&velox.url("/chunked/small")).await;
    assert_eq!(first.body, small);
    assert!(
        first.header("content-length").is_none(),
        "the origin's framing: no length"
    );
    assert!(
        has_param(&cache_status(&first), "stored"),
        "{}",
        cache_status(&first)
    );
    let second = get(&velox.url("/chunked/small")).await;
    assert!(is_hit(&second), "{}", cache_status(&second));
    assert_eq!(second.body, small);
    assert_eq!(origin.count("/chunked/small"), 1);

    for _ in 0..2 {
        let r = get(&velox.url("/chunked/large")).await;
        assert_eq!(r.body, large, "streamed through whole");
        assert!(!is_hit(&r));
    }
    assert_eq!(
        origin.count("/chunked/large"),
        2,
        "outgrew max_object_size: not stored"
    );
}
