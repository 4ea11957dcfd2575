//! Lifecycle on real sockets and a real process: graceful drain on SIGTERM/SIGINT, reload by
//! SIGHUP and by the admin API (token rules, invalid configs, live connections, listeners).

mod common;
use common::*;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------
// Helpers (local to this test binary)
// ---------------------------------------------------------------------------------------

/// An origin that answers every request with 200 and its `name` as the body.
struct NamedOrigin {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for NamedOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_named_origin(name: &'static str) -> NamedOrigin {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |_req: hyper::Request<hyper::body::Incoming>| async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(name.as_bytes()),
                        )))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    NamedOrigin { addr, task }
}

/// A config like `basic_config`, with a list of listeners, an optional admin token, and a
/// catch-all route to `upstream_server` (plus any extra `[[routes]]`/`[[upstreams]]` text first).
fn config(
    listen: &[SocketAddr],
    admin: SocketAddr,
    token: Option<&str>,
    upstream_server: SocketAddr,
    extra: &str,
) -> String {
    let listen = listen
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let token = token
        .map(|t| format!("token = \"{t}\""))
        .unwrap_or_default();
    format!(
        r#"
[server]
listen = [{listen}]
shutdown_grace = "5s"
[admin]
listen = "{admin}"
{token}
[limits]
header_read_timeout = "2s"
[[upstreams]]
name = "origin"
servers = ["http://{upstream_server}"]
connect_timeout = "1s"
first_byte_timeout = "2s"
{extra}
[[routes]]
path_prefix = "/"
upstream = "origin"
"#
    )
}

/// An address on which nothing listens (connections are refused).
fn dead_addr() -> SocketAddr {
    free_addr()
}

async fn body_text(url: &str) -> (u16, String) {
    let reply = get(url).await;
    (
        reply.status,
        String::from_utf8_lossy(&reply.body).into_owned(),
    )
}

/// Polls `probe` every 50 ms until it returns true or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if probe().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn refuses_connections(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await,
        Ok(Err(_))
    )
}

async fn accepts_connections(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

async fn admin_post_reload(velox: &Velox, authorization: Option<&str>) -> Reply {
    let url = format!("http://{}/api/reload", velox.admin);
    match authorization {
        Some(value) => request("POST", &url, &[("authorization", value)], b"").await,
        None => request("POST", &url, &[], b"").await,
    }
}

#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One complete response at the start of `data` (Content-Length or chunked), with the bytes it took.
fn parse_one(data: &[u8]) -> Option<(RawResponse, usize)> {
    let end = find(data, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&data[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse::<u16>().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &data[end + 4..];
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if rest.len() < len {
            return None;
        }
        let body = rest[..len].to_vec();
        return Some((
            RawResponse {
                status,
                headers,
                body,
            },
            end + 4 + len,
        ));
    }
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let line_end = find(&rest[at..], b"\r\n")?;
            let size_text = String::from_utf8_lossy(&rest[at..at + line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            at += line_end + 2;
            if size == 0 {
                let trailer_end = find(&rest[at..], b"\r\n")?;
                at += trailer_end + 2;
                return Some((
                    RawResponse {
                        status,
                        headers,
                        body,
                    },
                    end + 4 + at,
                ));
            }
            if rest.len() < at + size + 2 {
                return None;
            }
            body.extend_from_slice(&rest[at..at + size]);
            at += size + 2;
        }
    }
    Some((
        RawResponse {
            status,
            headers,
            body: Vec::new(),
        },
        end + 4,
    ))
}

/// One client connection used for several requests in a row.
struct KeepAlive {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl KeepAlive {
    async fn connect(addr: SocketAddr) -> KeepAlive {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .expect("connect within 5s")
            .expect("connect");
        KeepAlive {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends a GET and reads its response; panics if the connection closes first.
    async fn get(&mut self, path: &str) -> RawResponse {
        let head = format!("GET {path} HTTP/1.1\r\nHost: lifecycle.test\r\n\r\n");
        self.stream
            .write_all(head.as_bytes())
            .await
            .expect("write on the kept connection");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some((response, used)) = parse_one(&self.buf) {
                self.buf.drain(..used);
                return response;
            }
            let mut chunk = [0u8; 16 * 1024];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => panic!("no response to {path} within 10s"),
                Ok(Ok(0)) => panic!("connection closed before the response to {path}"),
                Ok(Err(e)) => panic!("connection failed before the response to {path}: {e}"),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads until EOF (true) or `limit` passes (false).
    async fn closed_within(&mut self, limit: Duration) -> bool {
        let mut chunk = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
            }
        }
    }
}

/// A GET on a fresh connection that tolerates failure (refused, closed, slow): `None` then.
async fn try_get(addr: SocketAddr, path: &str) -> Option<RawResponse> {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let head =
            format!("GET {path} HTTP/1.1\r\nHost: lifecycle.test\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.ok()?;
        let mut data = Vec::new();
        let _ = stream.read_to_end(&mut data).await;
        parse_one(&data).map(|(response, _)| response)
    };
    tokio::time::timeout(Duration::from_millis(500), attempt)
        .await
        .ok()
        .flatten()
}

// ---------------------------------------------------------------------------------------
// Graceful shutdown
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_request_then_exits_0() {
    let origin = start_origin().await;
    let mut velox = Velox::basic(origin.addr).await;
    let slow_url = velox.url("/slow?ms=1500");
    let in_flight = tokio::spawn(async move { body_text(&slow_url).await });
    // Let the request reach the origin.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !in_flight.is_finished(),
        "the slow request should still be running"
    );
    let sent = Instant::now();
    velox.signal(libc_signal::Signal::Term);

    // While draining, /readyz reports 503 "draining" (the in-flight request keeps us in that state ~1.2 s).
    let admin = velox.admin;
    let mut saw_draining = false;
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline && !saw_draining {
        if let Some(reply) = try_get(admin, "/readyz").await {
            assert!(
                reply.status == 200 || reply.status == 503,
                "readyz status {}",
                reply.status
            );
            if reply.status == 503 {
                assert_eq!(String::from_utf8_lossy(&reply.body).trim(), "draining");
                saw_draining = true;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(saw_draining, "/readyz never reported 503 while draining");

    // New connections are refused shortly after the signal.
    let addr = velox.addr;
    assert!(
        eventually(Duration::from_secs(1), || refuses_connections(addr)).await,
        "the listener still accepts new connections 1s after SIGTERM"
    );

    // The in-flight request completes normally, and the process exits 0, well within the 5 s grace.
    in_flight_ends_ok_then_exit_0(in_flight, &mut velox).await;
    assert!(
        sent.elapsed() < Duration::from_secs(4),
        "exit took {:?}",
        sent.elapsed()
    );
}

/// Sends `GET path` on `conn` and reads the response, whose body is `body`.
async fn exchange_on(conn: &mut TcpStream, path: &str, body: &str) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    conn.write_all(request.as_bytes()).await.expect("write");
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let end = format!("\r\n\r\n{body}");
    while !String::from_utf8_lossy(&data).ends_with(&end) {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "closed before the response ended");
        data.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&data).starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_idle_keep_alive_connections_at_once() {
    let origin = start_origin().await;
    let mut velox = Velox::basic(origin.addr).await;
    // An idle connection that has already waited between requests (its drain waiter is
    // registered once and then checked by version).
    let mut idle = TcpStream::connect(velox.addr).await.expect("connect");
    for _ in 0..3 {
        exchange_on(&mut idle, "/slow?ms=1", "ok").await;
    }
    // A slow request keeps the drain going for about 1.2 s (inside the 2 s first-byte timeout).
    let slow_url = velox.url("/slow?ms=1500");
    let in_flight = tokio::spawn(async move { body_text(&slow_url).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    velox.signal(libc_signal::Signal::Term);

    // The idle connection is closed at once, not when the drain ends.
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut byte))
        .await
        .expect("the idle connection is closed within 5 s");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "no bytes on an idle connection"
    );
    assert!(
        sent.elapsed() < Duration::from_millis(800),
        "the idle connection was closed {:?} after SIGTERM",
        sent.elapsed()
    );
    in_flight_ends_ok_then_exit_0(in_flight, &mut velox).await;
}

/// After SIGTERM: the request in flight ends with 200 "ok", then the process exits 0.
async fn in_flight_ends_ok_then_exit_0(
    in_flight: tokio::task::JoinHandle<(u16, String)>,
    velox: &mut Velox,
) {
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("in-flight request finished")
        .expect("task");
    assert_eq!((status, body.as_str()), (200, "ok"));
    let code = tokio::task::block_in_place(|| velox.wait_exit(Duration::from_secs(5)));
    assert_eq!(code, Some(0), "exit status after SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_open_websocket_finish_then_exits_0() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let origin = start_origin().await;
    let mut velox = Velox::basic(origin.addr).await;
    let bound = Duration::from_secs(5);
    let tcp = TcpStream::connect(velox.addr).await.expect("connect");
    let (mut ws, _) = tokio::time::timeout(
        bound,
        tokio_tungstenite::client_async(format!("ws://{}/ws", velox.addr), tcp),
    )
    .await
    .expect("handshake in time")
    .expect("websocket handshake");
    let sent = Instant::now();
    velox.signal(libc_signal::Signal::Term);
    // The tunnel is in flight: it keeps working while Velox drains, and holds the exit.
    tokio::time::sleep(Duration::from_millis(500)).await;
    ws.send(Message::text("during the drain"))
        .await
        .expect("send during the drain");
    let echoed = tokio::time::timeout(bound, ws.next())
        .await
        .expect("echo in time")
        .expect("a message")
        .expect("no error");
    assert_eq!(echoed, Message::text("during the drain"));
    assert!(
        velox.wait_exit(Duration::from_millis(10)).is_none(),
        "Velox exited with a tunnel open"
    );
    // Once the client closes, Velox exits well within the 5 s grace.
    ws.close(None).await.expect("close");
    while let Ok(Some(Ok(_))) = tokio::time::timeout(bound, ws.next()).await {}
    drop(ws);
    let code = tokio::task::block_in_place(|| velox.wait_exit(Duration::from_secs(5)));
    assert_eq!(code, Some(0));
    assert!(
        sent.elapsed() < Duration::from_secs(4),
        "exit took {:?}",
        sent.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_with_idle_keep_alive_connection_exits_0_promptly() {
    let origin = start_origin().await;
    let mut velox = Velox::basic(origin.addr).await;
    let mut conn = KeepAlive::connect(velox.addr).await;
    assert_eq!(conn.get("/echo").await.status, 200);
    let sent = Instant::now();
    velox.signal(libc_signal::Signal::Int);
    assert!(
        conn.closed_within(Duration::from_secs(3)).await,
        "idle keep-alive connection closed on drain"
    );
    let code = tokio::task::block_in_place(|| velox.wait_exit(Duration::from_secs(5)));
    assert_eq!(code, Some(0));
    assert!(
        sent.elapsed() < Duration::from_millis(2500),
        "an idle connection must not hold the drain for the whole grace: {:?}",
        sent.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_stops_at_shutdown_grace() {
    let origin = start_origin().await;
    let (addr, admin) = (free_addr(), free_addr());
    let config = basic_config(addr, admin, origin.addr)
        .replace("shutdown_grace = \"5s\"", "shutdown_grace = \"1s\"")
        .replace(
            "first_byte_timeout = \"2s\"",
            "first_byte_timeout = \"60s\"",
        );
    let mut velox = Velox::start(&config, addr, admin).await;
    let slow_url = velox.url("/slow?ms=20000");
    let in_flight = tokio::spawn(async move {
        let req = http::Request::get(slow_url)
            .body(Full::new(Bytes::new()))
            .expect("request");
        client().request(req).await.map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    velox.signal(libc_signal::Signal::Term);
    let code = tokio::task::block_in_place(|| velox.wait_exit(Duration::from_secs(6)));
    let took = sent.elapsed();
    assert_eq!(code, Some(0), "exit status once the grace is over");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_millis(3000),
        "exit after {took:?}, expected about the 1s grace"
    );
    // The abandoned client is not left hanging.
    let outcome = tokio::time::timeout(Duration::from_secs(5), in_flight).await;
    assert!(
        outcome.is_ok(),
        "the cut-off client must see the connection end, not hang"
    );
}

// ---------------------------------------------------------------------------------------
// Reload
// ---------------------------------------------------------------------------------------

/// The velox process's CPU time while it serves nothing for `idle`.
async fn cpu_while_idle(velox: &Velox, idle: Duration) -> Duration {
    let before = velox.cpu_time();
    tokio::time::sleep(idle).await;
    velox.cpu_time() - before
}

#[tokio::test]
async fn busy_poll_keeps_the_workers_polling_and_a_reload_turns_it_off() {
    let origin = start_named_origin("origin").await;
    let (addr, admin) = (free_addr(), free_addr());
    let busy = config(&[addr], admin, Some("secret"), origin.addr, "").replacen(
        "[server]",
        "[server]\nbusy_poll = true",
        1,
    );
    let velox = Velox::start(&busy, addr, admin).await;
    assert_eq!(body_text(&velox.url("/x")).await, (200, "origin".into()));
    let idle = Duration::from_millis(600);
    // A worker per CPU, each at 100% while nothing happens (less on a loaded machine).
    let spinning = cpu_while_idle(&velox, idle).await;
    assert!(
        spinning >= idle / 4,
        "busy polling used only {spinning:?} in {idle:?}"
    );

    velox.rewrite_config(&config(&[addr], admin, Some("secret"), origin.addr, ""));
    let reply = admin_post_reload(&velox, Some("Bearer secret")).await;
    assert_eq!(reply.status, 200);
    let quiet = cpu_while_idle(&velox, idle).await;
    assert!(
        quiet <= idle / 10,
        "after the reload Velox still used {quiet:?} in {idle:?}"
    );
    assert_eq!(body_text(&velox.url("/x")).await, (200, "origin".into()));
}

#[tokio::test]
async fn sighup_reload_switches_a_route_to_another_upstream() {
    let a = start_named_origin("origin-a").await;
    let b = start_named_origin("origin-b").await;
    let (addr, admin) = (free_addr(), free_addr());
    let velox = Velox::start(
        &config(&[addr], admin, Some("secret"), a.addr, ""),
        addr,
        admin,
    )
    .await;
    assert_eq!(
        body_text(&velox.url("/x")).await,
        (200, "origin-a".to_string())
    );

    velox.rewrite_config(&config(&[addr], admin, Some("secret"), b.addr, ""));
    velox.signal(libc_signal::Signal::Hup);
    let url = velox.url("/x");
    assert!(
        eventually(Duration::from_secs(5), || async {
            body_text(&url).await == (200, "origin-b".to_string())
        })
        .await,
        "SIGHUP did not switch the route to origin-b"
    );

    // Switch to a dead upstream: 502 with the right code.
    let dead = dead_addr();
    velox.rewrite_config(&config(&[addr], admin, Some("secret"), dead, ""));
    velox.signal(libc_signal::Signal::Hup);
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(&url).await.status == 502
        })
        .await,
        "SIGHUP did not switch the route to the dead upstream"
    );
    let reply = get(&url).await;
    assert_eq!(
        reply.header("x-velox-error"),
        Some("upstream-connect-failed")
    );
    assert_eq!(reply.header("cache-status"), Some("velox; fwd=uri-miss"));
}

#[tokio::test]
async fn api_reload_keeps_a_live_connection_open() {
    let a = start_named_origin("origin-a").await;
    let b = start_named_origin("origin-b").await;
    let (addr, admin) = (free_addr(), free_addr());
    let velox = Velox::start(
        &config(&[addr], admin, Some("secret"), a.addr, ""),
        addr,
        admin,
    )
    .await;
    let mut conn = KeepAlive::connect(velox.addr).await;
    let first = conn.get("/one").await;
    assert_eq!(
        (first.status, first.body.as_slice()),
        (200, &b"origin-a"[..])
    );

    velox.rewrite_config(&config(&[addr], admin, Some("secret"), b.addr, ""));
    let reply = admin_post_reload(&velox, Some("Bearer secret")).await;
    assert_eq!(
        reply.status,
        200,
        "reload: {:?}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json(), serde_json::json!({ "reloaded": true }));

    // The same connection still works after the reload.
    let second = conn.get("/two").await;
    assert_eq!(
        second.status, 200,
        "request on the kept connection after reload"
    );
    assert_eq!(
        second.header("cache-status"),
        Some("velox; fwd=uri-miss; fwd-status=200")
    );
    let third = conn.get("/three").await;
    assert_eq!(third.status, 200);
    // And the new config is in force (checked on a fresh connection).
    assert_eq!(
        body_text(&velox.url("/x")).await,
        (200, "origin-b".to_string())
    );
}

#[tokio::test]
async fn invalid_reload_is_422_and_the_old_config_keeps_serving() {
    let a = start_named_origin("origin-a").await;
    let b = start_named_origin("origin-b").await;
    let (addr, admin) = (free_addr(), free_addr());
    let velox = Velox::start(
        &config(&[addr], admin, Some("secret"), a.addr, ""),
        addr,
        admin,
    )
    .await;
    let mut conn = KeepAlive::connect(velox.addr).await;
    assert_eq!(conn.get("/").await.status, 200);

    // Not TOML at all.
    velox.rewrite_config("[server]\nthis is = = not toml ][");
    let reply = admin_post_reload(&velox, Some("Bearer secret")).await;
    assert_eq!(reply.status, 422);
    let json = reply.json();
    assert_eq!(json["reloaded"], serde_json::json!(false));
    assert!(
        json["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{json}"
    );
    assert_eq!(
        body_text(&velox.url("/x")).await,
        (200, "origin-a".to_string())
    );

    // Valid TOML, invalid config: a route to an upstream that does not exist (pointing at b).
    let bad = config(&[addr], admin, Some("secret"), b.addr, "")
        .replace("upstream = \"origin\"", "upstream = \"api\"");
    velox.rewrite_config(&bad);
    let reply = admin_post_reload(&velox, Some("Bearer secret")).await;
    assert_eq!(reply.status, 422);
    let json = reply.json();
    assert_eq!(json["reloaded"], serde_json::json!(false));
    let error = json["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        error.contains("routes[0].upstream"),
        "error names the field: {error}"
    );
    assert!(error.contains("api"), "error names the upstream: {error}");
    assert_eq!(
        body_text(&velox.url("/x")).await,
        (200, "origin-a".to_string())
    );

    // SIGHUP with the invalid file: refused too, the process keeps serving the old config.
    velox.signal(libc_signal::Signal::Hup);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        body_text(&velox.url("/x")).await,
        (200, "origin-a".to_string())
    );
    let kept = conn.get("/").await;
    assert_eq!((kept.status, kept.body.as_slice()), (200, &b"origin-a"[..]));

    // Reloading works again once the file is fixed.
    velox.rewrite_config(&config(&[addr], admin, Some("secret"), b.addr, ""));
    assert_eq!(
        admin_post_reload(&velox, Some("Bearer secret"))
            .await
            .status,
        200
    );
    assert_eq!(
        body_text(&velox.url("/x")).await,
        (200, "origin-b".to_string())
    );
}

#[tokio::test]
async fn reload_without_the_right_token_is_401_and_changes_nothing() {
    let a = start_named_origin("origin-a").await;
    let b = start_named_origin("origin-b").await;
    let (addr, admin) = (free_addr(), free_addr());
    let velox = Velox::start(
        &config(&[addr], admin, Some("secret"), a.addr, ""),
        addr,
        admin,
    )
    .await;
    velox.rewrite_config(&config(&[addr], admin, Some("secret"), b.addr, ""));
    for authorization in [
        None,
        Some("Bearer wrong"),
        Some("Bearer secre"),
        Some("Bearer secret2"),
        Some("Basic secret"),
        Some("secret"),
        Some("Bearer "),
    ] {
        let reply = admin_post_reload(&velox, authorization).await;
        assert_eq!(reply.status, 401, "authorization {authorization:?}");
        assert_eq!(
            body_text(&velox.url("/x")).await,
            (200, "origin-a".to_string()),
            "{authorization:?} changed the config"
        );
    }
    // The right token does reload (so the 401s above were about the token).
    let reply = admin_post_reload(&velox, Some("Bearer secret")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        body_text(&velox.url("/x")).await,
        (200, "origin-b".to_string())
    );
}

#[tokio::test]
async fn reload_is_401_when_no_token_is_configured() {
    let a = start_named_origin("origin-a").await;
    let b = start_named_origin("origin-b").await;
    let (addr, admin) = (free_addr(), free_addr());
    let velox = Velox::start(&config(&[addr], admin, None, a.addr, ""), addr, admin).await;
    velox.rewrite_config(&config(&[addr], admin, None, b.addr, ""));
    for authorization in [
        None,
        Some("Bearer "),
        Some("Bearer secret"),
        Some("Bearer change-me"),
    ] {
        let reply = admin_post_reload(&velox, authorization).await;
        assert_eq!(reply.status, 401, "authorization {authorization:?}");
    }
    assert_eq!(
        body_text(&velox.url("/x")).await,
        (200, "origin-a".to_string())
    );
    // SIGHUP still reloads: signals need no token.
    velox.signal(libc_signal::Signal::Hup);
    let url = velox.url("/x");
    assert!(
        eventually(Duration::from_secs(5), || async {
            body_text(&url).await == (200, "origin-b".to_string())
        })
        .await
    );
}

#[tokio::test]
async fn health_and_readiness() {
    let origin = start_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let (status, body) = body_text(&format!("http://{}/healthz", velox.admin)).await;
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, body) = body_text(&format!("http://{}/readyz", velox.admin)).await;
    assert_eq!((status, body.trim()), (200, "ready"));
}

#[tokio::test]
async fn reload_changes_listeners_and_keeps_open_connections_on_kept_ones() {
    let a = start_named_origin("origin-a").await;
    let (gone, kept, added, admin) = (free_addr(), free_addr(), free_addr(), free_addr());
    let velox = Velox::start(
        &config(&[gone, kept], admin, Some("secret"), a.addr, ""),
        kept,
        admin,
    )
    .await;
    assert!(accepts_connections(gone).await);
    assert!(
        refuses_connections(added).await,
        "the new address is not yet in use"
    );
    let mut on_kept = KeepAlive::connect(kept).await;
    assert_eq!(on_kept.get("/before").await.status, 200);

    velox.rewrite_config(&config(&[kept, added], admin, Some("secret"), a.addr, ""));
    let reply = admin_post_reload(&velox, Some("Bearer secret")).await;
    assert_eq!(
        reply.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&reply.body)
    );

    assert!(
        eventually(Duration::from_secs(3), || accepts_connections(added)).await,
        "the added listener does not accept"
    );
    assert_eq!(
        body_text(&format!("http://{added}/x")).await,
        (200, "origin-a".to_string())
    );
    assert!(
        eventually(Duration::from_secs(3), || refuses_connections(gone)).await,
        "the removed listener still accepts"
    );
    let after = on_kept.get("/after").await;
    assert_eq!(
        (after.status, after.body.as_slice()),
        (200, &b"origin-a"[..]),
        "open connection on the kept listener"
    );
    assert_eq!(
        body_text(&format!("http://{kept}/x")).await,
        (200, "origin-a".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_moves_the_admin_listener() {
    let a = start_named_origin("origin-a").await;
    let (addr, old_admin, new_admin) = (free_addr(), free_addr(), free_addr());
    let velox = Velox::start(
        &config(&[addr], old_admin, Some("secret"), a.addr, ""),
        addr,
        old_admin,
    )
    .await;
    velox.rewrite_config(&config(&[addr], new_admin, Some("secret"), a.addr, ""));
    // The reload is asked on the old listener, and answered there.
    let reply = admin_post_reload(&velox, Some("Bearer secret")).await;
    assert_eq!(
        reply.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(
        eventually(Duration::from_secs(3), || accepts_connections(new_admin)).await,
        "the new admin listener does not accept"
    );
    assert_eq!(
        body_text(&format!("http://{new_admin}/healthz")).await.0,
        200
    );
    assert!(
        eventually(Duration::from_secs(3), || refuses_connections(old_admin)).await,
        "the old admin listener still accepts"
    );
    // Proxying was never interrupted.
    assert_eq!(
        body_text(&format!("http://{addr}/x")).await,
        (200, "origin-a".to_string())
    );
}
