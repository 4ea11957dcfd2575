//! Purges over real sockets: a counting hyper origin in this file, a real `velox` process in
//! front of it, and purges through `POST /api/purge`, the `velox purge` command and the edge
//! `PURGE` method; `GET /api/cache` shows what is stored.
//!
//! Origin counts are exact: a purged object costs exactly one more origin request, an object
//! the purge does not cover costs none.

mod common;
use common::libc_signal::Signal;
use common::*;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// The counting origin
// ---------------------------------------------------------------------------------------------

/// Answers by path:
/// * `/a/...`: `Surrogate-Key: group-a common`; `/b/...`: `Cache-Tag: group-b,common`;
///   `/big/...`: `Surrogate-Key: big`; `/small/...`: `xkey: small`;
/// * `/v/...`: `Vary: Accept-Language` (the body names the language);
/// * `/swr/...`: `stale-while-revalidate=60`; `/sie/...`: `stale-if-error=600`;
/// * `/slow/...`: answered 10 ms after the request is counted;
/// * everything `max-age=600` with `ETag: "v1"`, answered 304 to `If-None-Match: "v1"`.
///
/// While `down`, it answers 503.
#[derive(Clone, Default)]
struct Origin {
    addr: Option<SocketAddr>,
    /// Path and query -> requests received.
    counts: Arc<Mutex<HashMap<String, usize>>>,
    /// Path and query -> If-None-Match values received.
    conditionals: Arc<Mutex<HashMap<String, Vec<String>>>>,
    down: Arc<AtomicBool>,
}

impl Origin {
    async fn start() -> Origin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind origin");
        let origin = Origin {
            addr: Some(listener.local_addr().expect("origin addr")),
            ..Origin::default()
        };
        let state = origin.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let state = state.clone();
                        async move {
                            let slow = req.uri().path().starts_with("/slow/");
                            let response = state.answer(req);
                            if slow {
                                // Numbered on arrival, answered later: purges land meanwhile.
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        origin
    }

    fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let target = req
            .uri()
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned());
        let n = {
            let mut counts = self.counts.lock().unwrap();
            let n = counts.entry(target.clone()).or_default();
            *n += 1;
            *n
        };
        let inm = req
            .headers()
            .get("if-none-match")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(inm) = &inm {
            self.conditionals
                .lock()
                .unwrap()
                .entry(target.clone())
                .or_default()
                .push(inm.clone());
        }
        let mut builder = Response::builder();
        if self.down.load(Ordering::SeqCst) {
            return builder
                .status(503)
                .body(Full::new(Bytes::from("origin down")))
                .unwrap();
        }
        let cache_control = if target.starts_with("/swr/") {
            "max-age=600, stale-while-revalidate=60"
        } else if target.starts_with("/sie/") {
            "max-age=600, stale-if-error=600"
        } else {
            "max-age=600"
        };
        builder = builder
            .header("cache-control", cache_control)
            .header("etag", "\"v1\"");
        if target.starts_with("/a/") {
            builder = builder.header("surrogate-key", "group-a common");
        } else if target.starts_with("/b/") {
            builder = builder.header("cache-tag", "group-b, common");
        } else if target.starts_with("/big/") {
            builder = builder.header("surrogate-key", "big");
        } else if target.starts_with("/small/") {
            builder = builder.header("xkey", "small");
        }
        let mut body = format!("{target} #{n}");
        if target.starts_with("/v/") {
            builder = builder.header("vary", "accept-language");
            let language = req
                .headers()
                .get("accept-language")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none");
            body = format!("{target} {language} #{n}");
        }
        if inm.as_deref() == Some("\"v1\"") {
            return builder.status(304).body(Full::new(Bytes::new())).unwrap();
        }
        builder.body(Full::new(Bytes::from(body))).unwrap()
    }

    fn addr(&self) -> SocketAddr {
        self.addr.expect("started")
    }

    fn count(&self, target: &str) -> usize {
        self.counts
            .lock()
            .unwrap()
            .get(target)
            .copied()
            .unwrap_or(0)
    }

    fn conditionals(&self, target: &str) -> Vec<String> {
        self.conditionals
            .lock()
            .unwrap()
            .get(target)
            .cloned()
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// Velox and client helpers
// ---------------------------------------------------------------------------------------------

async fn start_velox(origin: &Origin) -> Velox {
    start_velox_with(origin, "").await
}

/// Velox with extra `[cache]` settings.
async fn start_velox_with(origin: &Origin, cache: &str) -> Velox {
    let (addr, admin) = (free_addr(), free_addr());
    Velox::start(&config_with(origin, addr, admin, cache), addr, admin).await
}

/// The config of [`start_velox_with`].
fn config_with(origin: &Origin, addr: SocketAddr, admin: SocketAddr, cache: &str) -> String {
    format!(
        r#"
[server]
listen = ["{addr}"]
shutdown_grace = "5s"
[admin]
listen = "{admin}"
token = "secret"
[cache]
{cache}
[[upstreams]]
name = "origin"
servers = ["http://{}"]
connect_timeout = "1s"
first_byte_timeout = "5s"
[[routes]]
path_prefix = "/"
upstream = "origin"
"#,
        origin.addr()
    )
}

fn cache_status(reply: &Reply) -> String {
    reply.header("cache-status").unwrap_or("").to_owned()
}

fn is_hit(reply: &Reply) -> bool {
    cache_status(reply).starts_with("velox; hit")
}

async fn purge(velox: &Velox, body: serde_json::Value) -> Reply {
    purge_with(velox, body, &[("authorization", "Bearer secret")]).await
}

async fn purge_with(velox: &Velox, body: serde_json::Value, headers: &[(&str, &str)]) -> Reply {
    let url = format!("http://{}/api/purge", velox.admin);
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    request("POST", &url, &all, body.to_string().as_bytes()).await
}

/// GETs every path on one pooled client, 16 at a time; returns the replies in order.
async fn get_all(velox: &Velox, paths: &[String]) -> Vec<Reply> {
    let client = client();
    let fetches = paths.iter().map(|path| {
        let (client, url) = (client.clone(), velox.url(path));
        async move {
            let req = http::Request::get(url)
                .body(Full::new(Bytes::new()))
                .unwrap();
            let response = client.request(req).await.expect("response");
            let (parts, body) = response.into_parts();
            Reply {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: body.collect().await.expect("body").to_bytes(),
            }
        }
    });
    futures_util::stream::iter(fetches)
        .buffered(16)
        .collect()
        .await
}

fn paths(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Stores every path (a miss each) and waits until each is a hit.
async fn store_all(velox: &Velox, origin: &Origin, paths: &[String]) {
    for reply in get_all(velox, paths).await {
        assert_eq!(reply.status, 200);
    }
    wait_hits(velox, paths).await;
    for path in paths {
        assert_eq!(origin.count(path), 1, "{path}");
    }
}

/// Requests every path until each is a hit: a request right after a miss may still join the
/// fill in flight (`collapsed`), which costs no origin request either.
async fn wait_hits(velox: &Velox, paths: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left = paths.to_vec();
    while !left.is_empty() {
        let replies = get_all(velox, &left).await;
        let mut still = Vec::new();
        for (path, reply) in left.iter().zip(replies) {
            if !is_hit(&reply) {
                let status = cache_status(&reply);
                assert!(
                    Instant::now() < deadline && status.contains("collapsed"),
                    "{path}: {status}"
                );
                still.push(path.clone());
            }
        }
        left = still;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn restart(velox: &mut Velox) {
    velox.signal(Signal::Term);
    assert_eq!(velox.wait_exit(Duration::from_secs(15)), Some(0));
    velox.child = Command::new(env!("CARGO_BIN_EXE_velox"))
        .args(["serve", "--config"])
        .arg(&velox.config_path)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("respawn velox");
    wait_until_accepting(velox.addr).await;
}

// ---------------------------------------------------------------------------------------------
// Purge kinds
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn tag_purge_covers_every_object_with_the_tag_and_only_those() {
    let origin = Origin::start().await;
    let velox = start_velox(&origin).await;
    let (a, b) = (paths("/a/", 50), paths("/b/", 50));
    let first = get(&velox.url("/a/first")).await;
    assert_eq!(
        first.header("surrogate-key"),
        None,
        "tag fields are stripped"
    );
    store_all(&velox, &origin, &a).await;
    store_all(&velox, &origin, &b).await;
    assert_eq!(get(&velox.url("/b/0")).await.header("cache-tag"), None);

    let answer = purge(&velox, serde_json::json!({ "tags": ["group-a"] })).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let json = answer.json();
    assert_eq!(json["purged"]["tags"], serde_json::json!(["group-a"]));
    assert_eq!(json["soft"], false);
    assert!(json["at_ms"].as_u64().is_some_and(|t| t > 0), "{json}");
    assert!(json["at"].is_string());

    for (path, reply) in a.iter().zip(get_all(&velox, &a).await) {
        let status = cache_status(&reply);
        assert!(
            status.starts_with("velox; fwd=uri-miss"),
            "{path}: {status}"
        );
        assert!(status.contains("detail=purged"), "{path}: {status}");
        assert_eq!(reply.body, format!("{path} #2"));
        assert_eq!(origin.count(path), 2, "{path}");
    }
    for (path, reply) in b.iter().zip(get_all(&velox, &b).await) {
        assert!(is_hit(&reply), "{path}: {}", cache_status(&reply));
        assert_eq!(origin.count(path), 1, "{path}");
    }
    // Re-stored after the purge: hits again.
    wait_hits(&velox, &a).await;

    // A Cache-Tag (comma-separated) tag shared by both groups: one purge, all 100 objects.
    let answer = purge(&velox, serde_json::json!({ "tags": ["common"] })).await;
    assert_eq!(answer.status, 200);
    let all: Vec<String> = a.iter().chain(&b).cloned().collect();
    for (path, reply) in all.iter().zip(get_all(&velox, &all).await) {
        assert!(!is_hit(&reply), "{path}: {}", cache_status(&reply));
    }
    assert_eq!(origin.count("/a/0"), 3);
    assert_eq!(origin.count("/b/0"), 2);
}

#[tokio::test]
async fn prefix_purge_any_host_and_one_host() {
    let origin = Origin::start().await;
    let velox = start_velox(&origin).await;
    let (x, y) = (paths("/p/x/", 5), paths("/p/y/", 5));
    store_all(&velox, &origin, &x).await;
    store_all(&velox, &origin, &y).await;

    let answer = purge(&velox, serde_json::json!({ "prefixes": ["/p/x/"] })).await;
    assert_eq!(answer.status, 200);
    for reply in get_all(&velox, &x).await {
        assert!(cache_status(&reply).contains("detail=purged"));
    }
    for reply in get_all(&velox, &y).await {
        assert!(is_hit(&reply));
    }

    // For another host: nothing here is covered.
    let other = serde_json::json!({ "prefixes": ["/p/y/"], "host": "other.example" });
    assert_eq!(purge(&velox, other).await.status, 200);
    for reply in get_all(&velox, &y).await {
        assert!(is_hit(&reply), "{}", cache_status(&reply));
    }
    // For this host (the port does not matter).
    let this = serde_json::json!({ "prefixes": ["/p/y/"], "host": "127.0.0.1" });
    assert_eq!(purge(&velox, this).await.status, 200);
    for reply in get_all(&velox, &y).await {
        assert!(cache_status(&reply).contains("detail=purged"));
    }
    assert_eq!(origin.count("/p/y/0"), 2);
    assert_eq!(origin.count("/p/x/0"), 2);
}

#[tokio::test]
async fn url_purge_reaches_every_variant_of_the_url_and_nothing_else() {
    let origin = Origin::start().await;
    let velox = start_velox(&origin).await;
    let languages = ["en", "fr", "de"];
    for _ in 0..2 {
        for lang in languages {
            for path in ["/v/page", "/v/other"] {
                request("GET", &velox.url(path), &[("accept-language", lang)], b"").await;
            }
        }
    }
    assert_eq!(origin.count("/v/page"), 3);

    let url = velox.url("/v/page");
    let answer = purge(&velox, serde_json::json!({ "urls": [url] })).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.json()["purged"]["urls"], serde_json::json!([url]));

    for lang in languages {
        let reply = request("GET", &url, &[("accept-language", lang)], b"").await;
        assert!(!is_hit(&reply), "{lang}: {}", cache_status(&reply));
        assert!(String::from_utf8_lossy(&reply.body).contains(lang));
        let other = request(
            "GET",
            &velox.url("/v/other"),
            &[("accept-language", lang)],
            b"",
        )
        .await;
        assert!(is_hit(&other), "{lang}: {}", cache_status(&other));
    }
    assert_eq!(origin.count("/v/page"), 6);
    assert_eq!(origin.count("/v/other"), 3);
}

#[tokio::test]
async fn purge_everything_and_soft_everything_is_refused() {
    let origin = Origin::start().await;
    let velox = start_velox(&origin).await;
    let all = [paths("/a/", 5), paths("/plain/", 5)].concat();
    store_all(&velox, &origin, &all).await;

    let refused = purge(&velox, serde_json::json!({ "all": true, "soft": true })).await;
    assert_eq!(refused.status, 400);
    for reply in get_all(&velox, &all).await {
        assert!(is_hit(&reply), "a refused purge changes nothing");
    }

    let answer = purge(&velox, serde_json::json!({ "all": true })).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["purged"]["all"], true);
    for (path, reply) in all.iter().zip(get_all(&velox, &all).await) {
        assert!(!is_hit(&reply), "{path}: {}", cache_status(&reply));
        assert_eq!(origin.count(path), 2, "{path}");
    }
    wait_hits(&velox, &all).await;
}

// ---------------------------------------------------------------------------------------------
// Soft purge
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn soft_purge_revalidates_with_the_origin() {
    let origin = Origin::start().await;
    let velox = start_velox(&origin).await;
    let path = "/a/soft";
    store_all(&velox, &origin, &[path.to_owned()]).await;

    let answer = purge(
        &velox,
        serde_json::json!({ "tags": ["group-a"], "soft": true }),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["soft"], true);

    let reply = get(&velox.url(path)).await;
    let status = cache_status(&reply);
    assert!(
        status.starts_with("velox; fwd=stale; fwd-status=304"),
        "{status}"
    );
    assert_eq!(
        reply.body,
        format!("{path} #1"),
        "the stored body, revalidated"
    );
    assert_eq!(origin.conditionals(path), ["\"v1\""]);
    // Freshened by the 304: a hit again, with no further origin request.
    let reply = get(&velox.url(path)).await;
    assert!(is_hit(&reply), "{}", cache_status(&reply));
    assert_eq!(origin.count(path), 2);
}

#[tokio::test]
async fn soft_purge_serves_stale_while_revalidating() {
    let origin = Origin::start().await;
    let velox = start_velox(&origin).await;
    let path = "/swr/page";
    store_all(&velox, &origin, &[path.to_owned()]).await;

    let soft = serde_json::json!({ "prefixes": ["/swr/"], "soft": true });
    assert_eq!(purge(&velox, soft).await.status, 200);

    let reply = get(&velox.url(path)).await;
    let status = cache_status(&reply);
    assert!(
        status.starts_with("velox; hit") && status.contains("detail=stale-while-revalidate"),
        "{status}"
    );
    assert_eq!(reply.body, format!("{path} #1"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while origin.conditionals(path).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        origin.conditionals(path),
        ["\"v1\""],
        "background revalidation"
    );
    // Once refreshed, a plain hit.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = get(&velox.url(path)).await;
        let status = cache_status(&reply);
        if status.starts_with("velox; hit") && !status.contains("detail=") {
            break;
        }
        assert!(Instant::now() < deadline, "still {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(origin.count(path), 2);
}

#[tokio::test]
async fn soft_purged_object_is_served_stale_while_the_origin_is_down_and_refreshed_after() {
    let origin = Origin::start().await;
    let velox = start_velox(&origin).await;
    let path = "/sie/page";
    store_all(&velox, &origin, &[path.to_owned()]).await;
    let url = velox.url(path);

    origin.down.store(true, Ordering::SeqCst);
    let soft = serde_json::json!({ "urls": [url], "soft": true });
    assert_eq!(purge(&velox, soft).await.status, 200);
    let reply = get(&url).await;
    let status = cache_status(&reply);
    assert_eq!(reply.status, 200);
    assert!(
        status.starts_with("velox; fwd=stale; fwd-status=503") && status.contains("stale-if-error"),
        "{status}"
    );
    assert_eq!(reply.body, format!("{path} #1"));

    origin.down.store(false, Ordering::SeqCst);
    let reply = get(&url).await;
    let status = cache_status(&reply);
    assert!(
        status.starts_with("velox; fwd=stale; fwd-status=304"),
        "{status}"
    );
    assert_eq!(reply.body, format!("{path} #1"));
    assert!(is_hit(&get(&url).await));
    assert_eq!(origin.count(path), 3);
}

// ---------------------------------------------------------------------------------------------
// Persistence, authorisation, CLI, cost
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn purge_survives_restart() {
    let origin = Origin::start().await;
    let mut velox = start_velox(&origin).await;
    let (old, renewed) = ("/a/old".to_owned(), "/a/renewed".to_owned());
    store_all(&velox, &origin, &[old.clone(), renewed.clone()]).await;
    assert_eq!(
        purge(&velox, serde_json::json!({ "tags": ["group-a"] }))
            .await
            .status,
        200
    );
    // Stored again after the purge.
    let reply = get(&velox.url(&renewed)).await;
    assert!(cache_status(&reply).contains("detail=purged"));
    wait_hits(&velox, std::slice::from_ref(&renewed)).await;

    restart(&mut velox).await;

    let reply = get(&velox.url(&old)).await;
    let status = cache_status(&reply);
    assert!(
        status.contains("detail=purged"),
        "stored before the purge: {status}"
    );
    assert_eq!(reply.body, format!("{old} #2"));
    let reply = get(&velox.url(&renewed)).await;
    assert!(
        is_hit(&reply),
        "stored after the purge: {}",
        cache_status(&reply)
    );
    assert_eq!(origin.count(&renewed), 2);
    assert!(velox.dir.path().join("data").join("purges.log").exists());
}

#[tokio::test]
async fn unauthorised_and_malformed_purges_change_nothing() {
    let origin = Origin::start().await;
    let velox = start_velox(&origin).await;
    let objects = paths("/a/", 3);
    store_all(&velox, &origin, &objects).await;
    let body = serde_json::json!({ "tags": ["group-a"] });

    let none = purge_with(&velox, body.clone(), &[]).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    let wrong = purge_with(&velox, body, &[("authorization", "Bearer secreT")]).await;
    assert_eq!(wrong.status, 401);

    let url = format!("http://{}/api/purge", velox.admin);
    let auth = [("authorization", "Bearer secret")];
    for bad in [
        &b"{not json"[..],
        br#"{"tags": "group-a"}"#,
        br#"{"urls": ["/a/0"]}"#,
        br#"{"prefixes": ["a/"]}"#,
        br#"{"tags": ["group-a"], "bogus": 1}"#,
        br#"{}"#,
    ] {
        let reply = request("POST", &url, &auth, bad).await;
        assert_eq!(reply.status, 400, "{}", String::from_utf8_lossy(bad));
        assert!(reply.json()["error"].is_string());
    }
    assert_eq!(request("GET", &url, &auth, b"").await.status, 405);

    for reply in get_all(&velox, &objects).await {
        assert!(is_hit(&reply), "{}", cache_status(&reply));
    }
    let metrics = get(&format!("http://{}/metrics", velox.admin)).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("velox_purges_total{kind=\"tag\"} 0"),
        "nothing counted"
    );
}

fn velox_purge(args: &[&str], token: Option<&str>) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_velox"));
    command
        .arg("purge")
        .args(args)
        .env_remove("VELOX_ADMIN_TOKEN");
    if let Some(token) = token {
        command.env("VELOX_ADMIN_TOKEN", token);
    }
    command.output().expect("run velox purge")
}

#[tokio::test]
async fn velox_purge_command_talks_to_a_running_node() {
    let origin = Origin::start().await;
    let velox = start_velox(&origin).await;
    let (a, b) = (paths("/a/", 3), paths("/b/", 3));
    store_all(&velox, &origin, &a).await;
    store_all(&velox, &origin, &b).await;
    let admin = velox.admin.to_string();

    let refused = tokio::task::spawn_blocking({
        let admin = admin.clone();
        move || {
            velox_purge(
                &["--admin", &admin, "--token", "nope", "--tag", "group-a"],
                None,
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("401"), "{stderr}");
    for reply in get_all(&velox, &a).await {
        assert!(is_hit(&reply));
    }

    let admin_url = format!("http://{admin}");
    let done = tokio::task::spawn_blocking(move || {
        velox_purge(&["--admin", &admin_url, "--tag", "group-a"], Some("secret"))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert_eq!(
        done.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&done.stderr)
    );
    let answer: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON answer");
    assert_eq!(answer["purged"]["tags"], serde_json::json!(["group-a"]));
    for reply in get_all(&velox, &a).await {
        assert!(cache_status(&reply).contains("detail=purged"));
    }
    for reply in get_all(&velox, &b).await {
        assert!(is_hit(&reply));
    }

    let unreachable = free_addr().to_string();
    let failed = tokio::task::spawn_blocking(move || {
        velox_purge(&["--admin", &unreachable, "--all"], Some("secret"))
    })
    .await
    .unwrap();
    assert_eq!(failed.status.code(), Some(1));
}

/// A purge records one entry whatever it covers: a tag on 10,000 objects answers as quickly as
/// a tag on 10, and both take effect for the very next request.
#[tokio::test]
async fn tag_purge_cost_does_not_grow_with_the_objects_it_covers() {
    let origin = Origin::start().await;
    let velox = start_velox(&origin).await;
    let big = paths("/big/", 10_000);
    let small = paths("/small/", 10);
    for reply in get_all(&velox, &big).await {
        assert_eq!(reply.status, 200);
    }
    store_all(&velox, &origin, &small).await;
    let sample: Vec<String> = big.iter().step_by(500).cloned().collect();
    wait_hits(&velox, &sample).await;

    let mut timings = Vec::new();
    for tag in ["small", "big"] {
        // Best of three round trips (the first also opens the admin connection).
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let started = Instant::now();
            let answer = purge(&velox, serde_json::json!({ "tags": [tag] })).await;
            best = best.min(started.elapsed());
            assert_eq!(answer.status, 200);
        }
        timings.push((tag, best));
    }
    for (tag, took) in &timings {
        assert!(
            *took < Duration::from_millis(50),
            "purge of {tag}: {took:?}"
        );
    }
    for (path, reply) in sample.iter().zip(get_all(&velox, &sample).await) {
        assert!(cache_status(&reply).contains("detail=purged"), "{path}");
        assert_eq!(origin.count(path), 2);
    }
    for reply in get_all(&velox, &small).await {
        assert!(cache_status(&reply).contains("detail=purged"));
    }
}

// ---------------------------------------------------------------------------------------------
// Purge everything under load
// ---------------------------------------------------------------------------------------------

/// The origin's per-path request number in a body (`"<path> #<n>"`).
fn version(body: &[u8]) -> usize {
    let text = String::from_utf8_lossy(body);
    let n = text.rsplit('#').next().unwrap_or("");
    n.parse()
        .unwrap_or_else(|_| panic!("no version in {text:?}"))
}

/// Clients keep requesting cached objects while `{"all": true}` purges land, again and again,
/// so purges also meet refills in flight (the origin answers 10 ms after numbering a request):
/// every response that started after a purge was answered carries a version the origin
/// produced after the purge was sent.
#[tokio::test]
async fn purge_all_under_load_never_serves_an_object_from_before_the_purge() {
    let origin = Origin::start().await;
    let velox = start_velox(&origin).await;
    let objects = paths("/slow/", 20);
    store_all(&velox, &origin, &objects).await;

    let stop = Arc::new(AtomicBool::new(false));
    let client = client();
    let mut workers = Vec::new();
    for w in 0..6 {
        let (client, stop, objects) = (client.clone(), stop.clone(), objects.clone());
        let urls: Vec<String> = objects.iter().map(|p| velox.url(p)).collect();
        workers.push(tokio::spawn(async move {
            // (started, path index, version)
            let mut seen = Vec::new();
            let mut i = w;
            while !stop.load(Ordering::SeqCst) {
                i = (i + 7) % urls.len();
                let started = Instant::now();
                let req = http::Request::get(&urls[i])
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let response = client.request(req).await.expect("response");
                assert_eq!(response.status(), 200);
                let body = response.into_body().collect().await.expect("body");
                seen.push((started, i, version(&body.to_bytes())));
            }
            seen
        }));
    }
    // Each round: the versions already produced when the purge is sent, and when it answered.
    let mut rounds = Vec::new();
    for round in 0..8 {
        tokio::time::sleep(Duration::from_millis(if round % 2 == 0 { 150 } else { 3 })).await;
        let before: Vec<usize> = objects.iter().map(|p| origin.count(p)).collect();
        let answer = purge(&velox, serde_json::json!({ "all": true })).await;
        assert_eq!(answer.status, 200);
        rounds.push((Instant::now(), before));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.store(true, Ordering::SeqCst);
    let mut checked = 0;
    for worker in workers {
        for (started, i, version) in worker.await.unwrap() {
            for (answered, before) in &rounds {
                if started > *answered {
                    checked += 1;
                    assert!(
                        version > before[i],
                        "{}: version {version} served after a purge sent at version {}",
                        objects[i],
                        before[i]
                    );
                }
            }
        }
    }
    assert!(checked > 100, "only {checked} responses after purges");
    assert!(objects.iter().all(|p| origin.count(p) >= 2));
}

// ---------------------------------------------------------------------------------------------
// GET /api/cache
// ---------------------------------------------------------------------------------------------

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn inspect(velox: &Velox, url: &str) -> Reply {
    let api = format!(
        "http://{}/api/cache?url={}",
        velox.admin,
        percent_encode(url)
    );
    request("GET", &api, &[("authorization", "Bearer secret")], b"").await
}

#[tokio::test]
async fn api_cache_shows_a_plain_entry() {
    let origin = Origin::start().await;
    let velox = start_velox(&origin).await;
    let url = velox.url("/a/shown?x=1");
    let nothing = inspect(&velox, &url).await;
    assert_eq!(nothing.status, 200);
    assert_eq!(
        nothing.json(),
        serde_json::json!({ "url": url, "entries": [] })
    );

    let body = get(&url).await.body;
    wait_hits(&velox, &["/a/shown?x=1".to_owned()]).await;
    let reply = inspect(&velox, &url).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let json = reply.json();
    assert_eq!(json["url"], url);
    let entries = json["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{json}");
    let e = &entries[0];
    assert!(
        e["key"]
            .as_str()
            .is_some_and(|k| k.contains("/a/shown?x=1")),
        "{e}"
    );
    assert_eq!(e["tier"], "memory");
    assert_eq!(e["status"], 200);
    assert_eq!(e["size"], body.len());
    assert_eq!(e["tags"], serde_json::json!(["group-a", "common"]));
    assert_eq!(e["purged"], "none");
    assert!(e["stored"].is_string() && e["stored_ms"].as_u64().is_some());
    assert!(
        e["ttl_s"]
            .as_i64()
            .is_some_and(|t| (590..=600).contains(&t)),
        "{e}"
    );

    // A tag purge leaves the entry in place until it is next looked up; it shows as purged.
    assert_eq!(
        purge(&velox, serde_json::json!({ "tags": ["common"] }))
            .await
            .status,
        200
    );
    let json = inspect(&velox, &url).await.json();
    assert_eq!(json["entries"][0]["purged"], "hard", "{json}");
    // A URL purge removes it.
    assert_eq!(
        purge(&velox, serde_json::json!({ "urls": [url] }))
            .await
            .status,
        200
    );
    assert_eq!(
        inspect(&velox, &url).await.json()["entries"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn api_cache_shows_every_variant_of_a_varying_url() {
    let origin = Origin::start().await;
    let velox = start_velox(&origin).await;
    let url = velox.url("/v/inspected");
    for lang in ["en", "fr", "de"] {
        for _ in 0..2 {
            request("GET", &url, &[("accept-language", lang)], b"").await;
        }
    }
    assert_eq!(origin.count("/v/inspected"), 3);
    let json = inspect(&velox, &url).await.json();
    let entries = json["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 3, "{json}");
    let mut keys: Vec<&str> = entries.iter().filter_map(|e| e["key"].as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 3);
    for e in entries {
        assert_eq!(e["vary"], serde_json::json!(["accept-language"]), "{e}");
        assert_eq!(e["status"], 200);
        assert_eq!(e["tier"], "memory");
    }
    // After a URL purge, nothing is reachable.
    assert_eq!(
        purge(&velox, serde_json::json!({ "urls": [url] }))
            .await
            .status,
        200
    );
    assert_eq!(
        inspect(&velox, &url).await.json()["entries"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn api_cache_needs_the_token_and_an_absolute_url() {
    let origin = Origin::start().await;
    let velox = start_velox(&origin).await;
    let url = velox.url("/a/secret");
    get(&url).await;
    let api = format!(
        "http://{}/api/cache?url={}",
        velox.admin,
        percent_encode(&url)
    );
    let none = get(&api).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    assert!(!String::from_utf8_lossy(&none.body).contains("group-a"));
    let wrong = request("GET", &api, &[("authorization", "Bearer nope")], b"").await;
    assert_eq!(wrong.status, 401);

    let auth = [("authorization", "Bearer secret")];
    let base = format!("http://{}/api/cache", velox.admin);
    for query in [
        "",
        "?x=1",
        "?url=",
        "?url=%2Fa%2Fsecret",
        "?url=ftp%3A%2F%2Fh%2Fa",
        "?url=%zz",
    ] {
        let reply = request("GET", &format!("{base}{query}"), &auth, b"").await;
        assert_eq!(reply.status, 400, "{query}");
        assert!(reply.json()["error"].is_string());
    }
    let post = request("POST", &api, &auth, b"").await;
    assert_eq!(post.status, 405);
}

// ---------------------------------------------------------------------------------------------
// The edge PURGE method
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn purge_method_is_refused_when_disabled() {
    let origin = Origin::start().await;
    let velox = start_velox(&origin).await;
    store_all(&velox, &origin, &["/a/kept".to_owned()]).await;
    let reply = request("PURGE", &velox.url("/a/kept"), &[], b"").await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("x-velox-error"), Some("purge-disabled"));
    assert!(is_hit(&get(&velox.url("/a/kept")).await));
    assert_eq!(origin.count("/a/kept"), 1, "not passed on to the origin");
}

#[tokio::test]
async fn purge_method_purges_a_url_tags_or_softly_when_allowed() {
    let origin = Origin::start().await;
    let velox = start_velox_with(&origin, "purge_method = true").await;
    // A URL: every variant.
    let page = velox.url("/v/page");
    for lang in ["en", "fr"] {
        for _ in 0..2 {
            request("GET", &page, &[("accept-language", lang)], b"").await;
        }
    }
    assert_eq!(origin.count("/v/page"), 2);
    let reply = request("PURGE", &page, &[], b"").await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let json = reply.json();
    assert_eq!(json["purged"]["urls"], serde_json::json!([page]));
    assert_eq!(json["soft"], false);
    assert!(json["took_us"].as_u64().is_some(), "{json}");
    for lang in ["en", "fr"] {
        let reply = request("GET", &page, &[("accept-language", lang)], b"").await;
        assert!(!is_hit(&reply), "{lang}: {}", cache_status(&reply));
    }
    assert_eq!(origin.count("/v/page"), 4);

    // Tags from Surrogate-Key / xkey: those objects, whatever the path of the PURGE.
    let (a, b) = (paths("/a/", 3), paths("/b/", 3));
    store_all(&velox, &origin, &a).await;
    store_all(&velox, &origin, &b).await;
    let reply = request("PURGE", &velox.url("/"), &[("xkey", "group-a")], b"").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json()["purged"]["tags"],
        serde_json::json!(["group-a"])
    );
    for reply in get_all(&velox, &a).await {
        assert!(cache_status(&reply).contains("detail=purged"));
    }
    for reply in get_all(&velox, &b).await {
        assert!(is_hit(&reply));
    }

    // Soft: revalidated with the origin.
    let reply = request("PURGE", &velox.url("/b/0"), &[("velox-purge", "soft")], b"").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["soft"], true);
    let reply = get(&velox.url("/b/0")).await;
    let status = cache_status(&reply);
    assert!(
        status.starts_with("velox; fwd=stale; fwd-status=304"),
        "{status}"
    );
    assert_eq!(origin.conditionals("/b/0"), ["\"v1\""]);

    let metrics = get(&format!("http://{}/metrics", velox.admin)).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("velox_purges_total{kind=\"url\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("velox_purges_total{kind=\"tag\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_reload_applies_the_cache_policy_and_keeps_what_is_stored() {
    let origin = Origin::start().await;
    let velox = start_velox(&origin).await;
    store_all(&velox, &origin, &["/a/kept".to_owned()]).await;
    assert!(!cache_status(&get(&velox.url("/a/kept")).await).contains("key="));
    assert_eq!(
        request("PURGE", &velox.url("/a/kept"), &[], b"")
            .await
            .status,
        405
    );

    // Policy fields apply at once; a size change waits for a restart and loses nothing.
    let policy = "purge_method = true\nexpose_key = true\nmemory_size = \"128MiB\"";
    velox.rewrite_config(&config_with(&origin, velox.addr, velox.admin, policy));
    let reload = velox.reload().await;
    assert_eq!(reload.status, 200, "{:?}", reload.body);
    let reply = get(&velox.url("/a/kept")).await;
    assert!(is_hit(&reply), "the reload lost the object");
    assert!(
        cache_status(&reply).contains("key="),
        "{}",
        cache_status(&reply)
    );
    assert_eq!(
        request("PURGE", &velox.url("/a/kept"), &[], b"")
            .await
            .status,
        200
    );
    assert!(!is_hit(&get(&velox.url("/a/kept")).await));
    assert_eq!(origin.count("/a/kept"), 2);
}

#[tokio::test]
async fn purge_method_is_forbidden_outside_the_allowed_networks() {
    let origin = Origin::start().await;
    let cache = r#"purge_method = true
purge_allow = ["10.0.0.0/8", "::1/128"]"#;
    let velox = start_velox_with(&origin, cache).await;
    store_all(&velox, &origin, &["/a/guarded".to_owned()]).await;
    let reply = request("PURGE", &velox.url("/a/guarded"), &[], b"").await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.header("x-velox-error"), Some("purge-forbidden"));
    let reply = request(
        "PURGE",
        &velox.url("/"),
        &[("surrogate-key", "group-a")],
        b"",
    )
    .await;
    assert_eq!(reply.status, 403);
    assert!(is_hit(&get(&velox.url("/a/guarded")).await));
    assert_eq!(origin.count("/a/guarded"), 1);
}
