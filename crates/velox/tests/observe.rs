//! Observability on real sockets: `/metrics` scraped after a known sequence of requests (exact
//! values, parsed by a Prometheus text-format parser below), the JSON access log, dropped log
//! lines, request ids passed to the origin, Server-Timing, the dashboard and its event stream.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// A small Prometheus text-format (0.0.4) parser
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Debug, Default)]
struct Exposition {
    /// Family name -> type.
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|e| format!("bad value {s:?}: {e}")),
    }
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses the text format strictly: metric and label names, quoted and escaped label values,
/// one TYPE per family before its samples, sample names matching their family's type.
fn parse_exposition(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    for (n, line) in text.lines().enumerate() {
        let err = |m: String| format!("line {}: {m}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(err(format!("unknown type {kind}")));
                    }
                    if out.types.insert(name.into(), kind.into()).is_some() {
                        return Err(err("TYPE given twice".into()));
                    }
                }
                (Some("HELP"), Some(_), _) => {}
                _ => {}
            }
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => (&line[..i], &line[i..]),
            None => return Err(err("no value".into())),
        };
        if !valid_name(name) {
            return Err(err(format!("bad metric name {name:?}")));
        }
        let mut labels = BTreeMap::new();
        let rest = if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let end;
            loop {
                // label name
                let start = chars
                    .peek()
                    .map(|(i, _)| *i)
                    .ok_or_else(|| err("eof".into()))?;
                if body[start..].starts_with('}') {
                    end = start + 1;
                    break;
                }
                let eq = body[start..].find('=').ok_or_else(|| err("no =".into()))? + start;
                let lname = &body[start..eq];
                if !valid_name(lname) {
                    return Err(err(format!("bad label name {lname:?}")));
                }
                while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                    chars.next();
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(err("label value must be quoted".into()));
                }
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            _ => return Err(err("bad escape".into())),
                        },
                        Some((_, '"')) => break,
                        Some((_, c)) => value.push(c),
                        None => return Err(err("unterminated label value".into())),
                    }
                }
                if labels.insert(lname.to_string(), value).is_some() {
                    return Err(err(format!("label {lname} twice")));
                }
                match chars.next() {
                    Some((_, ',')) => continue,
                    Some((i, '}')) => {
                        end = i + 1;
                        break;
                    }
                    _ => return Err(err("expected , or }".into())),
                }
            }
            &body[end..]
        } else {
            rest
        };
        let value = rest
            .strip_prefix(' ')
            .ok_or_else(|| err("expected a space before the value".into()))?;
        let value = parse_value(value.split(' ').next().unwrap_or(""))?;
        // The family this sample belongs to must have been declared.
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| out.types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        if !out.types.contains_key(family) {
            return Err(err(format!("sample of undeclared family {family}")));
        }
        out.samples.push(Sample {
            name: name.into(),
            labels,
            value,
        });
    }
    Ok(out)
}

impl Exposition {
    /// The one sample with exactly these labels (0 if absent).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let found: Vec<_> = self
            .samples
            .iter()
            .filter(|s| s.name == name && s.labels == want)
            .collect();
        assert!(found.len() <= 1, "duplicate series {name} {labels:?}");
        found.first().map_or(0.0, |s| s.value)
    }

    /// Sum over every sample of `name` whose labels include these.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }
}

#[test]
fn parser_accepts_good_and_refuses_bad_text() {
    let good = "# HELP a_total x\n# TYPE a_total counter\na_total{x=\"q\\\"\\n\",y=\"\"} 3\n\
                # TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\nh_count 1\n";
    let e = parse_exposition(good).expect("parses");
    assert_eq!(e.get("a_total", &[("x", "q\"\n"), ("y", "")]), 3.0);
    assert_eq!(e.get("h_count", &[]), 1.0);
    for bad in [
        "a 1\n",                                     // undeclared
        "# TYPE a counter\na{x=y} 1\n",              // unquoted
        "# TYPE a counter\na{x=\"y\"}1\n",           // no space
        "# TYPE a counter\na{x=\"y\",x=\"z\"} 1\n",  // duplicate label
        "# TYPE a counter\n# TYPE a counter\na 1\n", // TYPE twice
        "# TYPE a counter\na one\n",                 // bad value
    ] {
        assert!(parse_exposition(bad).is_err(), "{bad:?} should be refused");
    }
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

async fn scrape(admin: SocketAddr) -> Exposition {
    let reply = get(&format!("http://{admin}/metrics")).await;
    assert_eq!(reply.status, 200);
    assert!(reply
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));
    let text = String::from_utf8(reply.body.to_vec()).expect("utf-8");
    parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Requests are recorded when their body ends, which may be a moment after the client has read
/// it: scrape until the request count reaches `total`.
async fn scrape_when(admin: SocketAddr, total: f64) -> Exposition {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let e = scrape(admin).await;
        let n = e.sum("velox_requests_total", &[]);
        if n >= total || Instant::now() > deadline {
            assert_eq!(n, total, "velox_requests_total");
            return e;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn config(listen: SocketAddr, admin: SocketAddr, origin: SocketAddr, extra: &str) -> String {
    let dead = free_addr();
    format!(
        r#"
[server]
listen = ["{listen}"]
shutdown_grace = "1s"
[admin]
listen = "{admin}"
token = "secret"
[limits]
header_read_timeout = "2s"
{extra}
[[upstreams]]
name = "origin"
servers = ["http://{origin}"]
connect_timeout = "1s"
first_byte_timeout = "5s"
[[upstreams]]
name = "dead"
servers = ["http://{dead}"]
connect_timeout = "1s"
[[routes]]
name = "raw"
host = "raw.test"
upstream = "origin"
[routes.cache]
mode = "bypass"
[[routes]]
name = "dead"
host = "dead.test"
upstream = "dead"
[routes.cache]
mode = "bypass"
[[routes]]
name = "site"
host = "127.0.0.1"
upstream = "origin"
server_timing = true
"#
    )
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_known_sequence_exactly() {
    let origin = start_origin().await;
    let (addr, admin) = (free_addr(), free_addr());
    let velox = Velox::start(&config(addr, admin, origin.addr, ""), addr, admin).await;
    let url = |p: &str| velox.url(p);

    // Before any traffic: registered families, zero counters, build info.
    let e = scrape(admin).await;
    assert_eq!(e.sum("velox_requests_total", &[]), 0.0);
    assert_eq!(e.types["velox_requests_total"], "counter");
    assert_eq!(e.types["velox_request_duration_seconds"], "histogram");
    assert_eq!(e.types["velox_upstream_duration_seconds"], "histogram");
    assert_eq!(e.types["velox_connections_active"], "gauge");
    assert_eq!(e.types["velox_cache_objects"], "gauge");
    assert_eq!(
        e.get(
            "velox_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    for kind in ["tag", "prefix", "url", "all"] {
        assert_eq!(e.get("velox_purges_total", &[("kind", kind)]), 0.0);
    }
    assert_eq!(e.get("velox_log_dropped_total", &[]), 0.0);

    // The sequence.
    let miss = get(&url("/cache/a")).await; // miss, stored
    assert_eq!(miss.status, 200);
    let body_len = miss.body.len() as f64;
    assert!(miss
        .header("server-timing")
        .is_some_and(|t| t.starts_with("cache;desc=miss, origin;dur=")));
    for _ in 0..2 {
        let hit = get(&url("/cache/a")).await;
        assert_eq!(hit.header("server-timing"), Some("cache;desc=hit"));
    }
    let head = request("HEAD", &url("/cache/a"), &[], b"").await; // hit, no body
    assert_eq!(head.status, 200);
    let post = request("POST", &url("/echo"), &[], b"12345").await; // method -> bypass
    assert_eq!(post.status, 200);
    let not_found = get(&url("/status/404")).await;
    assert_eq!(not_found.status, 404);
    let brew = request("BREW", &url("/cache/a"), &[], b"").await; // method OTHER
    for _ in 0..2 {
        let raw = request("GET", &url("/bytes/1000"), &[("host", "raw.test")], b"").await;
        assert_eq!(raw.body.len(), 1000);
        assert!(raw.header("server-timing").is_none(), "off on this route");
    }
    let unrouted = request("GET", &url("/x"), &[("host", "nowhere.test")], b"").await;
    assert_eq!(unrouted.status, 404);
    let dead = request("GET", &url("/x"), &[("host", "dead.test")], b"").await;
    assert_eq!(dead.status, 502);

    let e = scrape_when(admin, 11.0).await;
    let req = |route: &str, method: &str, status: &str, cache: &str| {
        e.get(
            "velox_requests_total",
            &[
                ("route", route),
                ("method", method),
                ("status", status),
                ("cache", cache),
            ],
        )
    };
    assert_eq!(req("site", "GET", "200", "miss"), 1.0);
    assert_eq!(req("site", "GET", "200", "hit"), 2.0);
    assert_eq!(req("site", "HEAD", "200", "hit"), 1.0);
    assert_eq!(req("site", "POST", "200", "bypass"), 1.0);
    assert_eq!(req("site", "GET", "404", "miss"), 1.0);
    assert_eq!(
        e.sum(
            "velox_requests_total",
            &[("route", "site"), ("method", "OTHER")]
        ),
        1.0
    );
    assert_eq!(
        req("site", "OTHER", &brew.status.to_string(), "bypass"),
        1.0
    );
    assert_eq!(req("raw", "GET", "200", "bypass"), 2.0);
    assert_eq!(req("(unmatched)", "GET", "404", "bypass"), 1.0);
    assert_eq!(req("dead", "GET", "502", "bypass"), 1.0);

    // Histogram counts agree with the counters.
    let hist = |route: &str, cache: &str| {
        e.get(
            "velox_request_duration_seconds_count",
            &[("route", route), ("cache", cache)],
        )
    };
    assert_eq!(hist("site", "hit"), 3.0);
    assert_eq!(hist("site", "miss"), 2.0);
    assert_eq!(hist("raw", "bypass"), 2.0);
    assert_eq!(
        e.get(
            "velox_request_duration_seconds_bucket",
            &[("route", "site"), ("cache", "hit"), ("le", "+Inf")]
        ),
        3.0
    );

    // Bytes: two GET hits of the fixture (HEAD sends none), two 1000-byte bodies.
    let bytes = |route: &str, cache: &str| {
        e.get(
            "velox_response_bytes_total",
            &[("route", route), ("cache", cache)],
        )
    };
    assert_eq!(bytes("site", "hit"), 2.0 * body_len);
    assert_eq!(bytes("raw", "bypass"), 2000.0);

    // Upstream side: six responses from the origin, one connection failure on "dead".
    let origin_server = origin.addr.to_string();
    let up = |status: &str| {
        e.get(
            "velox_upstream_requests_total",
            &[
                ("upstream", "origin"),
                ("server", &origin_server),
                ("status", status),
            ],
        )
    };
    let brew_200 = if brew.status == 200 { 1.0 } else { 0.0 };
    assert_eq!(up("200"), 4.0 + brew_200);
    assert_eq!(up("404"), 1.0);
    assert_eq!(
        e.sum("velox_upstream_requests_total", &[("upstream", "origin")]),
        6.0
    );
    assert_eq!(
        e.sum(
            "velox_upstream_errors_total",
            &[("upstream", "dead"), ("kind", "connect-failed")]
        ),
        1.0
    );
    assert_eq!(
        e.sum("velox_upstream_errors_total", &[("upstream", "origin")]),
        0.0
    );
    assert_eq!(
        e.get(
            "velox_upstream_duration_seconds_count",
            &[("upstream", "origin"), ("phase", "first_byte")]
        ),
        6.0
    );
    assert!(
        e.sum(
            "velox_upstream_response_bytes_total",
            &[("upstream", "origin")]
        ) >= 2000.0 + body_len
    );

    // Cache tiers from the store, connections per listener.
    assert_eq!(e.get("velox_cache_objects", &[("tier", "memory")]), 1.0);
    assert!(e.get("velox_cache_bytes", &[("tier", "memory")]) > 0.0);
    assert_eq!(
        e.get("velox_cache_evictions_total", &[("tier", "memory")]),
        0.0
    );
    assert!(e
        .samples
        .iter()
        .any(|s| s.name == "velox_connections_active"
            && s.labels.get("listener") == Some(&addr.to_string())
            && s.labels.get("protocol").map(String::as_str) == Some("http")));

    // Reloads, by result.
    let reload = |velox: &Velox| {
        let admin = velox.admin;
        async move {
            request(
                "POST",
                &format!("http://{admin}/api/reload"),
                &[("authorization", "Bearer secret")],
                b"",
            )
            .await
            .status
        }
    };
    assert_eq!(reload(&velox).await, 200);
    velox.rewrite_config("[server]\nlisten = 42\n");
    assert_eq!(reload(&velox).await, 422);
    let e = scrape(admin).await;
    assert_eq!(
        e.get("velox_config_reloads_total", &[("result", "success")]),
        1.0
    );
    assert_eq!(
        e.get("velox_config_reloads_total", &[("result", "failure")]),
        1.0
    );
    // Counters survive the reload.
    assert_eq!(e.sum("velox_requests_total", &[]), 11.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_reach_the_origin_and_the_client() {
    let origin = start_origin().await;
    let (addr, admin) = (free_addr(), free_addr());
    let velox = Velox::start(&config(addr, admin, origin.addr, ""), addr, admin).await;

    let reply = get(&velox.url("/echo")).await;
    let id = reply
        .header("x-request-id")
        .expect("generated id")
        .to_owned();
    assert!(id.len() > 16 && id.contains('-'), "{id}");
    assert_eq!(reply.headers.get_all("x-request-id").iter().count(), 1);
    let echoed = reply.json();
    assert_eq!(echoed["headers"]["x-request-id"][0], id.as_str());

    // HTTP/2 sends it too (from the header map; HTTP/1.1 writes it into the head).
    let h2 = h2c_get(&velox.url("/echo")).await;
    let h2_id = h2.headers()["x-request-id"].to_str().unwrap();
    assert!(h2_id.len() > 16 && h2_id != id, "{h2_id}");

    let second = get(&velox.url("/echo")).await;
    assert_ne!(second.header("x-request-id"), Some(id.as_str()), "unique");

    let own = request(
        "GET",
        &velox.url("/echo"),
        &[("x-request-id", "abc-123")],
        b"",
    )
    .await;
    assert_eq!(own.header("x-request-id"), Some("abc-123"));
    assert_eq!(own.json()["headers"]["x-request-id"][0], "abc-123");
}

/// An origin that echoes the request id on a cacheable response: the response stored keeps no
/// id, so every client sees exactly its own, on the miss and on the hits after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_request_id_is_neither_doubled_nor_served_from_the_cache() {
    let origin = start_origin().await;
    let (addr, admin) = (free_addr(), free_addr());
    let velox = Velox::start(&config(addr, admin, origin.addr, ""), addr, admin).await;
    let ids = |r: &Reply| -> Vec<String> {
        (r.headers.get_all("x-request-id").iter())
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };

    // The client's own id goes to the origin, which echoes it; the response is stored.
    let url = velox.url("/cache/echoed-id");
    let own = request("GET", &url, &[("x-request-id", "client-7")], b"").await;
    let stored = |r: &Reply| {
        let status = r.header("cache-status").unwrap_or_default();
        status.starts_with("velox; fwd=uri-miss") && status.ends_with("; stored")
    };
    assert!(stored(&own), "{:?}", own.header("cache-status"));
    assert_eq!(ids(&own), ["client-7"]);
    // Hits: one id each, generated, never the stored echo.
    let (first, second) = (get(&url).await, get(&url).await);
    for hit in [&first, &second] {
        assert!(hit
            .header("cache-status")
            .unwrap()
            .starts_with("velox; hit"));
        let got = ids(hit);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_ne!(got[0], "client-7");
    }
    assert_ne!(ids(&first), ids(&second));
    // Over HTTP/2 as well.
    let h2 = h2c_get(&url).await;
    assert_eq!(h2.headers().get_all("x-request-id").iter().count(), 1);
    assert_ne!(h2.headers()["x-request-id"], "client-7");

    // A generated id the origin echoes on a miss is sent once.
    let miss = get(&velox.url("/cache/echoed-generated")).await;
    assert!(stored(&miss), "{:?}", miss.header("cache-status"));
    assert_eq!(ids(&miss).len(), 1);
}

/// A Velox (with its origin) writing the JSON access log to a file in a fresh directory; the
/// directory and the origin live as long as this.
struct Logged {
    velox: Velox,
    log: std::path::PathBuf,
    dir: tempfile::TempDir,
    _origin: Origin,
}

async fn start_logged() -> Logged {
    start_logging(|dir| dir.join("access.log"), "").await
}

/// Velox logging to the path `path_in` makes in a new temp dir; `more` follows the
/// `[access_log]` table's `enabled` and `path`.
async fn start_logging(
    path_in: impl FnOnce(&std::path::Path) -> std::path::PathBuf,
    more: &str,
) -> Logged {
    let origin = start_origin().await;
    let (addr, admin) = (free_addr(), free_addr());
    let dir = tempfile::tempdir().expect("tempdir");
    let log = path_in(dir.path());
    let extra = format!(
        "[access_log]\nenabled = true\npath = \"{}\"\n{more}",
        log.display()
    );
    let velox = Velox::start(&config(addr, admin, origin.addr, &extra), addr, admin).await;
    Logged {
        velox,
        log,
        dir,
        _origin: origin,
    }
}

#[tokio::test]
async fn a_reload_reopens_the_access_log_after_rotation() {
    let Logged {
        velox,
        log,
        dir,
        _origin,
    } = start_logged().await;
    let rotated = dir.path().join("access.log.1");
    get(&velox.url("/bytes/1?before")).await;
    wait_for_lines(&log, 1).await;

    // logrotate's `create` mode: move the file away, then ask for a reload.
    std::fs::rename(&log, &rotated).expect("rotate");
    get(&velox.url("/bytes/1?between")).await;
    let reload = velox.reload().await;
    assert_eq!(reload.status, 200);
    // The line logged before the reopen lands in the moved file, nothing is lost.
    let old = wait_for_lines(&rotated, 2).await;
    assert_eq!(old[0]["path"], "/bytes/1?before");
    assert_eq!(old[1]["path"], "/bytes/1?between");
    // Lines after it go to a new file at the configured path.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    get(&velox.url("/bytes/1?after")).await;
    let new = wait_for_lines(&log, 1).await;
    assert_eq!(new[0]["path"], "/bytes/1?after");
    assert_eq!(wait_for_lines(&rotated, 2).await.len(), 2);
    drop(velox);
}

async fn wait_for_lines(path: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<_> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n || Instant::now() > deadline {
            assert_eq!(lines.len(), n, "{text}");
            return lines
                .iter()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_writes_one_json_line_per_request() {
    let logged = start_logged().await;
    let (velox, log) = (&logged.velox, &logged.log);

    get(&velox.url("/cache/log")).await;
    get(&velox.url("/cache/log")).await;
    request(
        "GET",
        &velox.url("/bytes/10?x=1"),
        &[("host", "raw.test"), ("x-request-id", "req-7")],
        b"",
    )
    .await;
    let lines = wait_for_lines(log, 3).await;
    let first = &lines[0];
    for field in [
        "time",
        "client",
        "method",
        "host",
        "path",
        "status",
        "bytes",
        "duration_ms",
        "upstream_ms",
        "cache",
        "cache_status",
        "route",
        "request_id",
    ] {
        assert!(first.get(field).is_some(), "missing {field}: {first}");
    }
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/cache/log");
    assert_eq!(first["status"], 200);
    assert_eq!(first["cache"], "miss");
    assert_eq!(first["route"], "site");
    assert_eq!(first["client"], "127.0.0.1");
    assert!(first["upstream_ms"].as_f64().is_some());
    assert!(first["time"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z') && t.len() == 24));
    assert_eq!(lines[1]["cache"], "hit");
    assert_eq!(lines[1]["upstream_ms"], serde_json::Value::Null);
    assert!(lines[1]["cache_status"]
        .as_str()
        .is_some_and(|s| s.starts_with("velox; hit")));
    assert_eq!(lines[2]["path"], "/bytes/10?x=1");
    assert_eq!(lines[2]["bytes"], 10);
    assert_eq!(lines[2]["route"], "raw");
    assert_eq!(lines[2]["host"], "raw.test");
    assert_eq!(lines[2]["request_id"], "req-7");
    assert_eq!(lines[2]["cache"], "bypass");
    drop(logged);
}

/// HTTP/2 names the host in `:authority`, not in a Host field: the log takes it from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_names_the_host_of_an_h2_request() {
    let logged = start_logged().await;
    let (velox, log) = (&logged.velox, &logged.log);
    h2c_get(&velox.url("/bytes/10")).await;
    let lines = wait_for_lines(log, 1).await;
    assert_eq!(lines[0]["host"], format!("127.0.0.1:{}", velox.addr.port()));
    assert_eq!(lines[0]["route"], "site");
    drop(logged);
}

/// A new FIFO in `dir`, for the access log's path.
fn fifo_in(dir: &std::path::Path) -> std::path::PathBuf {
    let fifo = dir.join("access.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.expect("mkfifo").success());
    fifo
}

/// A FIFO as the log's path: the writer opens it once a reader appears and writes whole lines
/// through it (the plain, non-direct output that standard output shares).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_can_go_to_a_fifo() {
    use std::io::BufRead;
    let logged = start_logging(fifo_in, "").await;
    let (velox, fifo) = (&logged.velox, logged.log.clone());
    let reader = tokio::task::spawn_blocking(move || {
        let fifo = std::io::BufReader::new(std::fs::File::open(&fifo).expect("open the FIFO"));
        fifo.lines().take(3).collect::<Result<Vec<_>, _>>()
    });
    for i in 0..3 {
        get(&velox.url(&format!("/bytes/1?fifo={i}"))).await;
    }
    let lines = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("three lines within 10 s")
        .unwrap()
        .expect("read the FIFO");
    for (i, line) in lines.iter().enumerate() {
        let line: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        assert_eq!(line["path"], format!("/bytes/1?fifo={i}"));
    }
    drop(logged);
}

/// The decoded headers a memory hit keeps beside the object are charged to the memory tier when the
/// first hit makes them, and only then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_hit_charges_the_memory_tier_for_its_decoded_headers() {
    let origin = start_origin().await;
    let (addr, admin) = (free_addr(), free_addr());
    let velox = Velox::start(&config(addr, admin, origin.addr, ""), addr, admin).await;
    let memory = |e: &Exposition| e.get("velox_cache_bytes", &[("tier", "memory")]);
    let miss = get(&velox.url("/cache/charged")).await;
    assert!(miss
        .header("cache-status")
        .is_some_and(|s| s.contains("fwd=")));
    let stored = memory(&scrape_when(admin, 1.0).await);
    assert!(stored > 0.0);
    let first = get(&velox.url("/cache/charged")).await;
    assert!(first
        .header("cache-status")
        .is_some_and(|s| s.contains("hit")));
    let decoded = memory(&scrape_when(admin, 2.0).await);
    // A stored response head of a few fields decodes to several hundred bytes.
    assert!(decoded >= stored + 300.0, "{stored} -> {decoded}");
    let second = get(&velox.url("/cache/charged")).await;
    assert!(second
        .header("cache-status")
        .is_some_and(|s| s.contains("hit")));
    assert_eq!(memory(&scrape_when(admin, 3.0).await), decoded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_buffer_drops_and_counts_lines_without_blocking() {
    // A FIFO nobody reads: the writer never gets to write, so the buffer stays full.
    let logged = start_logging(fifo_in, "buffer = 4\n").await;
    let (velox, admin) = (&logged.velox, logged.velox.admin);
    let started = Instant::now();
    for _ in 0..20 {
        let reply = request("GET", &velox.url("/bytes/10"), &[("host", "raw.test")], b"").await;
        assert_eq!(reply.status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "requests never wait on the log"
    );
    let e = scrape_when(admin, 20.0).await;
    assert_eq!(e.get("velox_log_dropped_total", &[]), 16.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_zero_logs_nothing_and_metrics_can_be_off() {
    let logged = start_logging(
        |dir| dir.join("access.log"),
        "sample_rate = 0.0\n[observe]\nmetrics = false\nrequest_id = false\n",
    )
    .await;
    let (velox, admin, log) = (&logged.velox, logged.velox.admin, &logged.log);
    for _ in 0..5 {
        let reply = get(&velox.url("/echo")).await;
        assert!(reply.header("x-request-id").is_none());
        assert!(reply.json()["headers"].get("x-request-id").is_none());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(std::fs::read_to_string(log).unwrap_or_default(), "");
    assert_eq!(scrape(admin).await.sum("velox_requests_total", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_stats_stream_need_no_token() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = start_origin().await;
    let (addr, admin) = (free_addr(), free_addr());
    let velox = Velox::start(&config(addr, admin, origin.addr, ""), addr, admin).await;

    let page = get(&format!("http://{admin}/")).await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains("api/stats/stream"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external links"
    );
    assert!(!html.contains("secret"), "the token is never exposed");

    get(&velox.url("/cache/dash")).await;
    let stats = get(&format!("http://{admin}/api/stats")).await.json();
    assert!(stats["requests"].as_u64().is_some());
    assert_eq!(stats["purges"], serde_json::json!([]));

    // The event stream: a first snapshot at once, the next about a second later.
    let mut stream = tokio::net::TcpStream::connect(admin)
        .await
        .expect("connect");
    stream
        .write_all(
            b"GET /api/stats/stream HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n",
        )
        .await
        .expect("write");
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 16384];
    while seen.matches("data: ").count() < 2 && Instant::now() < deadline {
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await
        {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(seen
        .to_ascii_lowercase()
        .contains("content-type: text/event-stream"));
    assert!(seen.matches("data: ").count() >= 2, "{seen}");
}

/// A stop writes every line taken before it: the access log is flushed before the process ends,
/// even right after the last request (before the writer's next round) and for a partial block.
#[tokio::test]
async fn stopping_writes_every_logged_line() {
    let Logged {
        mut velox,
        log,
        dir: _dir,
        _origin,
    } = start_logged().await;
    for i in 0..25 {
        get(&velox.url(&format!("/bytes/1?n={i}"))).await;
    }
    velox.signal(libc_signal::Signal::Term);
    assert_eq!(velox.wait_exit(Duration::from_secs(20)), Some(0));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 25, "{text}");
    assert_eq!(lines[24]["path"], "/bytes/1?n=24");
}
