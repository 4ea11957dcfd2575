//! Protocol features over real sockets: HTTP/1.1 keep-alive, h2c, forwarding and
//! hop-by-hop headers, 502/504, WebSocket, SSE and host routing.

mod common;
use common::*;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

// ---------------------------------------------------------------------------------------
// Helpers local to this file.

/// One HTTP/1.x response read off a raw connection.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    status_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    /// Every value of `name` (case-insensitive), in order.
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.all(name).first().copied()
    }
}

/// Reads more bytes into `buf`; returns false on EOF.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await.expect("read");
    buf.extend_from_slice(&chunk[..n]);
    n > 0
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one response (Content-Length, chunked or close-delimited) from `stream`;
/// bytes after it stay in `buf`.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> RawResponse {
    let head_end = loop {
        if let Some(pos) = find(buf, b"\r\n\r\n") {
            break pos;
        }
        assert!(
            fill(stream, buf).await,
            "connection closed before a response head: {:?}",
            String::from_utf8_lossy(buf)
        );
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default().to_owned();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut response = RawResponse {
        status,
        status_line,
        headers,
        body: Vec::new(),
    };
    if status < 200 || status == 204 || status == 304 {
        return response;
    }
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let line_end = loop {
                if let Some(pos) = find(buf, b"\r\n") {
                    break pos;
                }
                assert!(fill(stream, buf).await, "EOF inside a chunk size line");
            };
            let size_text = String::from_utf8_lossy(&buf[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {size_text:?}"));
            buf.drain(..line_end + 2);
            if size == 0 {
                // Trailer section: lines until an empty one.
                loop {
                    if let Some(pos) = find(buf, b"\r\n") {
                        buf.drain(..pos + 2);
                        if pos == 0 {
                            return response;
                        }
                        continue;
                    }
                    assert!(fill(stream, buf).await, "EOF inside the trailer section");
                }
            }
            while buf.len() < size + 2 {
                assert!(fill(stream, buf).await, "EOF inside a chunk");
            }
            response.body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
        }
    } else if let Some(len) = response.header("content-length") {
        let len: usize = len.parse().expect("numeric Content-Length");
        while buf.len() < len {
            assert!(
                fill(stream, buf).await,
                "EOF before Content-Length bytes arrived"
            );
        }
        response.body = buf.drain(..len).collect();
    } else {
        while fill(stream, buf).await {}
        response.body = std::mem::take(buf);
    }
    response
}

/// Connects, writes `request`, reads one response (with a 15 s bound).
async fn exchange(addr: SocketAddr, request: &str) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(15),
        read_response(&mut stream, &mut buf),
    )
    .await
    .expect("response within 15s")
}

fn json_of(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("JSON body ({e}): {:?}", String::from_utf8_lossy(body)))
}

/// The values the origin saw for header `name` in an `/echo` reply (empty if absent).
fn echoed(json: &serde_json::Value, name: &str) -> Vec<String> {
    json["headers"][name]
        .as_array()
        .map(|values| {
            values
                .iter()
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A config with one plain listener, one upstream and a catch-all route; `upstream_extra`
/// lines go into the upstream table.
fn one_upstream_config(
    listen: SocketAddr,
    admin: SocketAddr,
    origin: SocketAddr,
    upstream_extra: &str,
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
header_read_timeout = "2s"
[[upstreams]]
name = "origin"
servers = ["http://{origin}"]
{upstream_extra}
[[routes]]
path_prefix = "/"
upstream = "origin"
"#
    )
}

/// A tiny origin that answers every request with `origin=<tag> host=<Host> path=<path>`.
async fn start_tagged_origin(tag: &'static str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind tagged origin");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: http::Request<hyper::body::Incoming>| async move {
                        let host = req
                            .headers()
                            .get("host")
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let text = format!("origin={tag} host={host} path={}", req.uri().path());
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from(text),
                        )))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, task)
}

// ---------------------------------------------------------------------------------------
// HTTP/1.1 connection management.

#[tokio::test]
async fn http11_keep_alive_serves_two_requests_on_one_connection() {
    let origin = start_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let mut stream = TcpStream::connect(velox.addr).await.expect("connect");
    let mut buf = Vec::new();
    let bound = Duration::from_secs(10);

    stream
        .write_all(b"GET /status/200 HTTP/1.1\r\nHost: keepalive.test\r\n\r\n")
        .await
        .expect("write 1");
    let first = tokio::time::timeout(bound, read_response(&mut stream, &mut buf))
        .await
        .expect("first response");
    assert_eq!(first.status_line, "HTTP/1.1 200 OK");
    assert_eq!(first.body, b"status 200\n");
    assert_eq!(
        first.header("cache-status"),
        Some("velox; fwd=uri-miss; fwd-status=200")
    );
    assert!(
        !first
            .all("connection")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("close")),
        "keep-alive connection announced close: {first:?}"
    );

    stream
        .write_all(b"GET /status/201 HTTP/1.1\r\nHost: keepalive.test\r\n\r\n")
        .await
        .expect("write 2 on the same connection");
    let second = tokio::time::timeout(bound, read_response(&mut stream, &mut buf))
        .await
        .expect("second response");
    assert_eq!(second.status_line, "HTTP/1.1 201 Created");
    assert_eq!(second.body, b"status 201\n");
    assert!(
        buf.is_empty(),
        "unexpected extra bytes: {:?}",
        String::from_utf8_lossy(&buf)
    );
}

#[tokio::test]
async fn http11_pipelined_requests_are_answered_in_order() {
    let origin = start_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let mut stream = TcpStream::connect(velox.addr).await.expect("connect");
    stream
        .write_all(b"GET /status/202 HTTP/1.1\r\nHost: p.test\r\n\r\nGET /status/203 HTTP/1.1\r\nHost: p.test\r\n\r\n")
        .await
        .expect("write both");
    let mut buf = Vec::new();
    let bound = Duration::from_secs(10);
    let first = tokio::time::timeout(bound, read_response(&mut stream, &mut buf))
        .await
        .expect("first");
    let second = tokio::time::timeout(bound, read_response(&mut stream, &mut buf))
        .await
        .expect("second");
    assert_eq!((first.status, second.status), (202, 203));
    assert_eq!(second.body, b"status 203\n");
}

#[tokio::test]
async fn http10_without_keep_alive_is_closed_after_the_response() {
    let origin = start_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let mut stream = TcpStream::connect(velox.addr).await.expect("connect");
    stream
        .write_all(b"GET /status/200 HTTP/1.0\r\nHost: old.test\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(
        matches!(read, Ok(Ok(_))),
        "HTTP/1.0 connection not closed by Velox within 5s; got so far: {text:?}"
    );
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\n") || text.starts_with("HTTP/1.0 200 OK\r\n"),
        "{text:?}"
    );
    assert!(text.ends_with("\r\n\r\nstatus 200\n"), "{text:?}");
    assert!(
        !text
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "chunked sent to an HTTP/1.0 client: {text:?}"
    );
}

// ---------------------------------------------------------------------------------------
// h2c.

#[tokio::test]
async fn h2c_prior_knowledge_reaches_the_origin_with_via_2() {
    let origin = start_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let response = h2c_get(&velox.url("/echo?via=h2c")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("cache-status")
            .and_then(|v| v.to_str().ok()),
        Some("velox; fwd=uri-miss; fwd-status=200")
    );
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let json = json_of(&body);
    assert_eq!(json["method"], "GET");
    assert_eq!(json["uri"], "/echo?via=h2c");
    assert_eq!(echoed(&json, "via"), vec!["2 velox"]);
    assert_eq!(echoed(&json, "x-forwarded-proto"), vec!["http"]);
    assert_eq!(
        echoed(&json, "x-forwarded-host"),
        vec![velox.addr.to_string()]
    );
}

// ---------------------------------------------------------------------------------------
// Forwarding and hop-by-hop headers.

#[tokio::test]
async fn forwarding_headers_are_added_and_host_preserved() {
    let origin = start_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let reply = exchange(
        velox.addr,
        "GET /echo HTTP/1.1\r\n\
         Host: shop.example.test:8080\r\n\
         X-Forwarded-For: 203.0.113.7\r\n\
         X-Forwarded-Proto: https\r\n\
         X-Forwarded-Host: forged.test\r\n\
         Connection: close\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 200);
    let json = json_of(&reply.body);
    assert_eq!(echoed(&json, "host"), vec!["shop.example.test:8080"]);
    assert_eq!(
        echoed(&json, "x-forwarded-for"),
        vec!["203.0.113.7, 127.0.0.1"]
    );
    assert_eq!(echoed(&json, "x-forwarded-proto"), vec!["http"]);
    assert_eq!(
        echoed(&json, "x-forwarded-host"),
        vec!["shop.example.test:8080"]
    );
    assert_eq!(echoed(&json, "via"), vec!["1.1 velox"]);
    assert_eq!(json["version"], "HTTP/1.1");
}

#[tokio::test]
async fn forwarding_headers_without_client_values() {
    let origin = start_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let reply = exchange(
        velox.addr,
        "GET /echo HTTP/1.1\r\nHost: plain.test\r\nVia: 1.0 upstream-proxy\r\nConnection: close\r\n\r\n",
    )
    .await;
    let json = json_of(&reply.body);
    assert_eq!(echoed(&json, "x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(echoed(&json, "via"), vec!["1.0 upstream-proxy, 1.1 velox"]);
}

#[tokio::test]
async fn hop_by_hop_request_headers_are_not_forwarded() {
    let origin = start_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let reply = exchange(
        velox.addr,
        "POST /echo HTTP/1.1\r\n\
         Host: hop.test\r\n\
         Connection: X-Foo, keep-alive\r\n\
         X-Foo: 1\r\n\
         Keep-Alive: timeout=5\r\n\
         TE: trailers\r\n\
         Proxy-Connection: keep-alive\r\n\
         X-End-To-End: kept\r\n\
         Content-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!(reply.status, 200);
    let json = json_of(&reply.body);
    assert_eq!(json["body_bytes"], 5);
    assert_eq!(echoed(&json, "x-end-to-end"), vec!["kept"]);
    for name in [
        "x-foo",
        "keep-alive",
        "te",
        "proxy-connection",
        "upgrade",
        "transfer-encoding",
    ] {
        assert_eq!(
            echoed(&json, name),
            Vec::<String>::new(),
            "origin saw hop-by-hop {name}: {json}"
        );
    }
    for value in echoed(&json, "connection") {
        assert!(
            !value.to_ascii_lowercase().contains("x-foo"),
            "origin saw Connection: {value}"
        );
    }
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_not_forwarded() {
    let origin = start_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let reply = exchange(
        velox.addr,
        "GET /headers-hop HTTP/1.1\r\nHost: hop.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"hop-by-hop headers attached\n");
    assert_eq!(reply.all("x-end-to-end"), vec!["1"]);
    for name in ["x-custom-hop", "keep-alive", "proxy-connection", "trailer"] {
        assert_eq!(
            reply.all(name),
            Vec::<&str>::new(),
            "client saw hop-by-hop {name}: {reply:?}"
        );
    }
    for value in reply.all("connection") {
        assert!(
            !value.to_ascii_lowercase().contains("x-custom-hop"),
            "client saw Connection: {value}"
        );
    }
    assert_eq!(
        reply.header("cache-status"),
        Some("velox; fwd=uri-miss; fwd-status=200")
    );
}

// ---------------------------------------------------------------------------------------
// Upstream errors.

#[tokio::test]
async fn upstream_with_nothing_listening_gives_502() {
    let dead = free_addr();
    let (addr, admin) = (free_addr(), free_addr());
    let velox = Velox::start(
        &one_upstream_config(addr, admin, dead, r#"connect_timeout = "1s""#),
        addr,
        admin,
    )
    .await;
    let started = Instant::now();
    let reply = get(&velox.url("/anything")).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "502 took {:?}",
        started.elapsed()
    );
    assert_eq!(reply.status, 502);
    assert_eq!(
        reply.header("x-velox-error"),
        Some("upstream-connect-failed")
    );
    assert_eq!(reply.header("cache-status"), Some("velox; fwd=uri-miss"));
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let body = String::from_utf8_lossy(&reply.body);
    assert!(body.starts_with("502 Bad Gateway"), "{body:?}");
    assert!(reply.body.len() < 512, "long error body: {body:?}");
}

/// The first-byte timer stays with a pooled origin connection between requests: it must
/// neither fire early on a connection whose timer ran out while idle, nor fail to fire later.
#[tokio::test]
async fn a_pooled_connection_times_each_response_afresh() {
    let origin = start_origin().await;
    let (addr, admin) = (free_addr(), free_addr());
    let config = one_upstream_config(addr, admin, origin.addr, "first_byte_timeout = \"1s\"");
    let velox = Velox::start(&config, addr, admin).await;
    assert_eq!(get(&velox.url("/slow?ms=10")).await.status, 200);
    // The timer of the now idle connection passes its deadline.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..3 {
        let fast = get(&velox.url("/slow?ms=300")).await;
        assert_eq!(fast.status, 200, "{:?}", fast.header("x-velox-error"));
    }
    let started = Instant::now();
    let slow = get(&velox.url("/slow?ms=5000")).await;
    let elapsed = started.elapsed();
    assert_eq!(slow.status, 504);
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(3500),
        "504 after {elapsed:?}, expected about 1s"
    );
    assert_eq!(get(&velox.url("/slow?ms=10")).await.status, 200);
}

#[tokio::test]
async fn slow_upstream_gives_504_after_first_byte_timeout() {
    let origin = start_origin().await;
    let (addr, admin) = (free_addr(), free_addr());
    let config = one_upstream_config(
        addr,
        admin,
        origin.addr,
        "connect_timeout = \"1s\"\nfirst_byte_timeout = \"1s\"",
    );
    let velox = Velox::start(&config, addr, admin).await;
    let started = Instant::now();
    let reply = get(&velox.url("/slow?ms=5000")).await;
    let elapsed = started.elapsed();
    assert_eq!(reply.status, 504);
    assert_eq!(reply.header("x-velox-error"), Some("upstream-timeout"));
    assert_eq!(reply.header("cache-status"), Some("velox; fwd=uri-miss"));
    assert!(String::from_utf8_lossy(&reply.body).starts_with("504 Gateway Timeout"));
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(3500),
        "504 after {elapsed:?}, expected about 1s"
    );
    // A fast request on the same upstream still works afterwards.
    let ok = get(&velox.url("/slow?ms=10")).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body, "ok");
}

// ---------------------------------------------------------------------------------------
// Upstream connection reuse against origins that close idle connections.

/// A raw HTTP/1.1 origin that numbers its connections and answers every request with
/// `conn=<n> <METHOD> body=<bytes>`, adding `Keep-Alive: <announce>` when given, and closes a
/// connection that stays idle for `close_idle` (as Node.js does after 5 s).
async fn start_idle_closing_origin(
    announce: Option<&'static str>,
    close_idle: Duration,
) -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind idle-closing origin");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(serve_until_idle(stream, n, announce, close_idle));
        }
    });
    (addr, connections, task)
}

async fn serve_until_idle(
    mut stream: TcpStream,
    conn: usize,
    announce: Option<&'static str>,
    close_idle: Duration,
) {
    let mut buf = Vec::new();
    loop {
        // Dropping the stream on idle timeout (or EOF) closes the connection.
        let head_end = loop {
            if let Some(pos) = find(&buf, b"\r\n\r\n") {
                break pos + 4;
            }
            match tokio::time::timeout(close_idle, fill(&mut stream, &mut buf)).await {
                Ok(true) => {}
                _ => return,
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let method = head.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().expect("content-length"));
        while buf.len() < head_end + length {
            if !fill(&mut stream, &mut buf).await {
                return;
            }
        }
        buf.drain(..head_end + length);
        let body = format!("conn={conn} {method} body={length}");
        let keep_alive = announce.map_or(String::new(), |v| format!("keep-alive: {v}\r\n"));
        let response = format!(
            "HTTP/1.1 200 OK\r\ncache-control: no-store\r\n{keep_alive}content-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Velox in front of `origin` with the default upstream idle_timeout (90 s).
async fn velox_before(origin: SocketAddr) -> Velox {
    let (addr, admin) = (free_addr(), free_addr());
    let config = one_upstream_config(addr, admin, origin, r#"first_byte_timeout = "5s""#);
    Velox::start(&config, addr, admin).await
}

#[tokio::test]
async fn body_request_after_the_announced_keep_alive_timeout_uses_a_new_connection() {
    let (origin, connections, _task) =
        start_idle_closing_origin(Some("timeout=1"), Duration::from_secs(1)).await;
    let velox = velox_before(origin).await;
    let first = get(&velox.url("/first")).await;
    assert_eq!(first.body, "conn=1 GET body=0");
    // Within the announced timeout the pooled connection is reused, body or not.
    let reused = request("POST", &velox.url("/soon"), &[], b"abc").await;
    assert_eq!(reused.body, "conn=1 POST body=3");
    // The origin closes it after 1 s idle; Velox must not write a body into it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let put = request("PUT", &velox.url("/later"), &[], &[b'x'; 10_000]).await;
    assert_eq!(put.status, 200, "{:?}", String::from_utf8_lossy(&put.body));
    assert_eq!(put.body, "conn=2 PUT body=10000");
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

/// Two GETs `pause` apart through Velox to an origin that announces `Keep-Alive: <announce>`
/// but keeps idle connections 30 s: the second must arrive on a new connection.
async fn second_get_uses_a_new_connection(announce: &'static str, pause: Duration) {
    let (origin, connections, _task) =
        start_idle_closing_origin(Some(announce), Duration::from_secs(30)).await;
    let velox = velox_before(origin).await;
    assert_eq!(get(&velox.url("/a")).await.body, "conn=1 GET body=0");
    tokio::time::sleep(pause).await;
    assert_eq!(get(&velox.url("/b")).await.body, "conn=2 GET body=0");
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn pooled_connection_expires_at_the_announced_keep_alive_timeout() {
    // Only the announcement can make Velox leave the open connection: a body-less request
    // would otherwise reuse it without a check.
    second_get_uses_a_new_connection("timeout=1, max=100", Duration::from_millis(1200)).await;
}

#[tokio::test]
async fn keep_alive_max_0_means_the_connection_is_not_reused() {
    second_get_uses_a_new_connection("timeout=30, max=0", Duration::ZERO).await;
}

#[tokio::test]
async fn body_request_after_an_unannounced_idle_close_uses_a_new_connection() {
    let (origin, connections, _task) =
        start_idle_closing_origin(None, Duration::from_secs(1)).await;
    let velox = velox_before(origin).await;
    assert_eq!(get(&velox.url("/a")).await.body, "conn=1 GET body=0");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The pooled connection is still within Velox's 90 s, but the origin closed it.
    let post = request("POST", &velox.url("/b"), &[], &[b'y'; 10_000]).await;
    assert_eq!(
        post.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&post.body)
    );
    assert_eq!(post.body, "conn=2 POST body=10000");
    // Body-less requests keep their retry: the fresh connection is reused, then replaced.
    assert_eq!(get(&velox.url("/c")).await.body, "conn=2 GET body=0");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(get(&velox.url("/d")).await.body, "conn=3 GET body=0");
    assert_eq!(connections.load(Ordering::SeqCst), 3);
}

// ---------------------------------------------------------------------------------------
// WebSocket and SSE.

#[tokio::test]
async fn websocket_echo_through_velox() {
    let origin = start_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let bound = Duration::from_secs(10);
    let tcp = TcpStream::connect(velox.addr).await.expect("connect");
    let (mut ws, response) = tokio::time::timeout(
        bound,
        tokio_tungstenite::client_async(format!("ws://{}/ws", velox.addr), tcp),
    )
    .await
    .expect("handshake within 10s")
    .expect("websocket handshake through velox");
    assert_eq!(response.status(), 101);

    ws.send(Message::text("hello through velox"))
        .await
        .expect("send text");
    let echoed = tokio::time::timeout(bound, ws.next())
        .await
        .expect("text echo in time");
    assert_eq!(
        echoed.expect("a message").expect("no error"),
        Message::text("hello through velox")
    );

    let payload: Vec<u8> = (0..70_000u32).map(|i| (i % 256) as u8).collect();
    ws.send(Message::binary(payload.clone()))
        .await
        .expect("send binary");
    let echoed = tokio::time::timeout(bound, ws.next())
        .await
        .expect("binary echo in time");
    assert_eq!(
        echoed.expect("a message").expect("no error"),
        Message::binary(payload)
    );

    ws.close(None).await.expect("send close");
    let closing = tokio::time::timeout(bound, async {
        let mut saw_close = false;
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Close(_)) => saw_close = true,
                Ok(other) => panic!("unexpected message after close: {other:?}"),
                Err(_) => break,
            }
        }
        saw_close
    })
    .await
    .expect("close handshake within 10s");
    assert!(
        closing,
        "the origin's close frame did not come back through velox"
    );
}

#[tokio::test]
async fn sse_events_arrive_incrementally() {
    let origin = start_origin().await;
    let velox = Velox::basic(origin.addr).await;
    // Events at t≈0, 300 ms and 600 ms, then the end of the stream. A buffering proxy would
    // deliver the first event only at the end.
    let request = http::Request::get(velox.url("/events?interval_ms=300&count=3"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let started = Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(10), client().request(request))
        .await
        .expect("head in time")
        .expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let mut body = response.into_body();
    let mut text = String::new();
    let mut first_event_at = None;
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("body frame");
            if let Some(data) = frame.data_ref() {
                text.push_str(&String::from_utf8_lossy(data));
                if first_event_at.is_none() && text.contains("\n\n") {
                    first_event_at = Some(started.elapsed());
                }
            }
        }
    })
    .await
    .expect("SSE stream ends within 10s");
    let ended_at = started.elapsed();
    let first_event_at = first_event_at.expect("at least one event");
    assert!(
        first_event_at + Duration::from_millis(400) < ended_at,
        "first event at {first_event_at:?}, stream end at {ended_at:?}: events were buffered"
    );
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 3, "{text:?}");
    for (i, event) in events.iter().enumerate() {
        assert!(event.starts_with("data: {\"now\": "), "{event:?}");
        assert!(
            event.ends_with(&format!(", \"n\": {}}}", i + 1)),
            "{event:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Routing.

#[tokio::test]
async fn routes_match_by_host_in_order_and_404_when_none_matches() {
    let (origin_a, _a) = start_tagged_origin("a").await;
    let (origin_b, _b) = start_tagged_origin("b").await;
    let (addr, admin) = (free_addr(), free_addr());
    let config = format!(
        r#"
[server]
listen = ["{addr}"]
[admin]
listen = "{admin}"
[[upstreams]]
name = "a"
servers = ["http://{origin_a}"]
[[upstreams]]
name = "b"
servers = ["http://{origin_b}"]
[[routes]]
host = "b.test"
path_prefix = "/"
upstream = "b"
[[routes]]
host = "*.wild.test"
path_prefix = "/"
upstream = "b"
[[routes]]
path_prefix = "/a/"
upstream = "a"
"#
    );
    let velox = Velox::start(&config, addr, admin).await;
    let ask = |host: &'static str, path: &'static str| {
        let url = velox.url(path);
        async move { request("GET", &url, &[("host", host)], b"").await }
    };

    let reply = ask("b.test", "/a/x").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body, "origin=b host=b.test path=/a/x",
        "host route listed first must win"
    );

    let reply = ask("B.Test:8080", "/y").await;
    assert_eq!(
        reply.body, "origin=b host=B.Test:8080 path=/y",
        "host match is case-insensitive and ignores the port"
    );

    let reply = ask("c.test", "/a/x").await;
    assert_eq!(reply.body, "origin=a host=c.test path=/a/x");

    let reply = ask("sub.wild.test", "/z").await;
    assert_eq!(reply.body, "origin=b host=sub.wild.test path=/z");

    // No route: another host, a path outside /a/.
    let reply = ask("c.test", "/b/x").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("x-velox-error"), Some("no-route"));
    assert_eq!(reply.header("cache-status"), Some("velox; fwd=bypass"));

    // The wildcard does not cover the apex; "/a" (no slash) is outside "/a/".
    let reply = ask("wild.test", "/a").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("x-velox-error"), Some("no-route"));
}

// ---------------------------------------------------------------------------------------
// Interim (1xx) responses.

/// A raw origin that answers every request with a 103 Early Hints, then, `delay` later, a
/// cacheable 200 with body `ok`.
async fn start_early_hints_origin(delay: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind early-hints origin");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    while find(&buf, b"\r\n\r\n").is_none() {
                        let mut chunk = [0u8; 4096];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = find(&buf, b"\r\n\r\n").expect("head") + 4;
                    buf.drain(..end);
                    let hints = "HTTP/1.1 103 Early Hints\r\nLink: </site.css>; rel=preload; as=style\r\n\r\n";
                    if stream.write_all(hints.as_bytes()).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(delay).await;
                    let fin = "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 2\r\n\r\nok";
                    if stream.write_all(fin.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Reads one response head off `stream` (what is after it stays in `buf`).
async fn read_head_only(stream: &mut TcpStream, buf: &mut Vec<u8>) -> String {
    while find(buf, b"\r\n\r\n").is_none() {
        assert!(fill(stream, buf).await, "closed before a head");
    }
    let end = find(buf, b"\r\n\r\n").expect("head") + 4;
    String::from_utf8_lossy(&buf.drain(..end).collect::<Vec<_>>()).into_owned()
}

#[tokio::test]
async fn early_hints_reach_the_client_before_the_final_response_and_are_not_cached() {
    let delay = Duration::from_millis(400);
    let origin = start_early_hints_origin(delay).await;
    let (addr, admin) = (free_addr(), free_addr());
    let velox = Velox::start(&basic_config(addr, admin, origin), addr, admin).await;

    let mut stream = TcpStream::connect(velox.addr).await.expect("connect");
    let started = Instant::now();
    stream
        .write_all(b"GET /page HTTP/1.1\r\nHost: example.test\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let hints = read_head_only(&mut stream, &mut buf).await;
    assert!(hints.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{hints}");
    let lower = hints.to_ascii_lowercase();
    assert!(
        lower.contains("link: </site.css>; rel=preload; as=style\r\n"),
        "{hints}"
    );
    // Forwarded by this hop like any message (RFC 9110 §7.6.3).
    assert!(lower.contains("via: 1.1 velox\r\n"), "{hints}");
    assert!(
        started.elapsed() < delay,
        "the hints came only with the final response ({:?})",
        started.elapsed()
    );
    let fin = read_response(&mut stream, &mut buf).await;
    assert_eq!(fin.status, 200);
    assert_eq!(fin.body, b"ok");
    assert!(started.elapsed() >= delay);

    // The same URL again is a hit: the stored response comes alone (1xx are not stored).
    stream
        .write_all(b"GET /page HTTP/1.1\r\nHost: example.test\r\n\r\n")
        .await
        .expect("write");
    let hit = read_response(&mut stream, &mut buf).await;
    assert_eq!(hit.status, 200, "{hit:?}");
    assert!(hit.all("cache-status")[0].contains("hit"), "{hit:?}");

    // An HTTP/1.0 client is never sent a 1xx (RFC 9110 §15.2).
    let mut old = TcpStream::connect(velox.addr).await.expect("connect");
    old.write_all(b"GET /other HTTP/1.0\r\nHost: example.test\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let head = read_head_only(&mut old, &mut buf).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
}
