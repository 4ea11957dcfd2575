//! Bad input on real sockets: malformed heads, oversized heads and bodies, smuggling
//! shapes, slow clients. Each case asserts the exact status and `X-Velox-Error` code,
//! and every wait is bounded.

mod common;
use common::*;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------
// Helpers (local to this test binary)
// ---------------------------------------------------------------------------------------

/// A config with one listener, admin, one upstream `origin` and a catch-all route; `limits`
/// is the whole body of the `[limits]` table.
fn config_with_limits(
    listen: SocketAddr,
    admin: SocketAddr,
    origin: SocketAddr,
    limits: &str,
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
{limits}
[[upstreams]]
name = "origin"
servers = ["http://{origin}"]
connect_timeout = "1s"
first_byte_timeout = "2s"
[[routes]]
path_prefix = "/"
upstream = "origin"
"#
    )
}

async fn velox_with_limits(origin: SocketAddr, limits: &str) -> Velox {
    let (addr, admin) = (free_addr(), free_addr());
    Velox::start(
        &config_with_limits(addr, admin, origin, limits),
        addr,
        admin,
    )
    .await
}

/// What a raw exchange produced: the bytes read, and whether the server closed (EOF or reset)
/// before the time limit.
struct Exchange {
    data: Vec<u8>,
    closed: bool,
    elapsed: Duration,
}

impl Exchange {
    fn responses(&self) -> Vec<RawResponse> {
        parse_responses(&self.data)
    }
    fn only_response(&self) -> RawResponse {
        let mut responses = self.responses();
        assert_eq!(
            responses.len(),
            1,
            "expected exactly one response, got: {:?}",
            String::from_utf8_lossy(&self.data)
        );
        responses.remove(0)
    }
}

/// Writes `bytes` in pieces of `piece` bytes with `pause` between them (write errors are
/// ignored: the server may already have answered and closed), while reading until the server
/// closes or `limit` passes. The write half stays open the whole time (no FIN from us).
async fn exchange_paced(
    addr: SocketAddr,
    bytes: Vec<u8>,
    piece: usize,
    pause: Duration,
    limit: Duration,
) -> Exchange {
    let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .expect("connect within 5s")
        .expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let started = Instant::now();
    let write_task = tokio::spawn(async move {
        for chunk in bytes.chunks(piece.max(1)) {
            if writer.write_all(chunk).await.is_err() {
                break;
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        // Keep the write half (and so the connection) open until the reader is done.
        writer
    });
    let deadline = tokio::time::Instant::now() + limit;
    let mut data = Vec::new();
    let mut closed = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, reader.read(&mut buf)).await {
            Err(_) => break,
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => data.extend_from_slice(&buf[..n]),
        }
    }
    let elapsed = started.elapsed();
    write_task.abort();
    Exchange {
        data,
        closed,
        elapsed,
    }
}

async fn exchange(addr: SocketAddr, bytes: &[u8], limit: Duration) -> Exchange {
    exchange_paced(addr, bytes.to_vec(), usize::MAX, Duration::ZERO, limit).await
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
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses every complete HTTP/1.1 response in `data` (Content-Length, chunked, or to the end).
fn parse_responses(mut data: &[u8]) -> Vec<RawResponse> {
    let mut out = Vec::new();
    while let Some(end) = find(data, b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&data[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let Some(status) = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
        else {
            break;
        };
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
        let (body, used) = if let Some(len) =
            get("content-length").and_then(|v| v.parse::<usize>().ok())
        {
            let len = len.min(rest.len());
            (rest[..len].to_vec(), len)
        } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            let mut body = Vec::new();
            let mut at = 0;
            loop {
                let Some(line_end) = find(&rest[at..], b"\r\n") else {
                    at = rest.len();
                    break;
                };
                let size_text = String::from_utf8_lossy(&rest[at..at + line_end]).into_owned();
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                        .unwrap_or(0);
                at += line_end + 2;
                if size == 0 {
                    // Trailer section: skip to the empty line.
                    match find(&rest[at..], b"\r\n") {
                        Some(0) => at += 2,
                        Some(_) => {
                            at = find(&rest[at..], b"\r\n\r\n").map_or(rest.len(), |p| at + p + 4)
                        }
                        None => at = rest.len(),
                    }
                    break;
                }
                let stop = (at + size).min(rest.len());
                body.extend_from_slice(&rest[at..stop]);
                at = (stop + 2).min(rest.len());
            }
            (body, at)
        } else if (100..200).contains(&status) || status == 204 || status == 304 {
            (Vec::new(), 0)
        } else {
            (rest.to_vec(), rest.len())
        };
        out.push(RawResponse {
            status,
            headers,
            body,
        });
        data = &rest[used..];
    }
    out
}

/// Asserts a response Velox generated itself: status, error code, Cache-Status, short text body.
fn assert_velox_error(response: &RawResponse, status: u16, code: &str) {
    assert_eq!(response.status, status, "status; response: {response:?}");
    assert_eq!(
        response.header("x-velox-error"),
        Some(code),
        "X-Velox-Error; response: {response:?}"
    );
    assert_eq!(
        response.header("cache-status"),
        Some("velox; fwd=bypass"),
        "Cache-Status; response: {response:?}"
    );
    assert!(
        response
            .header("content-type")
            .is_some_and(|v| v.starts_with("text/plain")),
        "text/plain body expected; response: {response:?}"
    );
    assert!(
        response.body.len() < 1024,
        "short body expected; response: {response:?}"
    );
}

/// The proxy still answers an ordinary request.
async fn assert_still_serving(velox: &Velox) {
    let reply = get(&velox.url("/echo")).await;
    assert_eq!(reply.status, 200, "a normal GET after bad input");
    assert_eq!(
        reply.header("cache-status"),
        Some("velox; fwd=uri-miss; fwd-status=200")
    );
}

const LIMIT: Duration = Duration::from_secs(5);

/// An origin that records every request it receives (`"METHOD /path body=N"`) and answers 200.
struct RecordingOrigin {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl RecordingOrigin {
    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("lock").clone()
    }
}

async fn start_recording_origin() -> RecordingOrigin {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let line = format!("{} {}", req.method(), req.uri());
                            let body = req.into_body().collect().await.map(|b| b.to_bytes().len());
                            log.lock()
                                .expect("lock")
                                .push(format!("{line} body={body:?}"));
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from_static(b"recorded"),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    RecordingOrigin { addr, seen }
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_request_line_is_400_and_closes() {
    let origin = start_origin().await;
    let velox = Velox::basic(origin.addr).await;
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n",
    ] {
        let ex = exchange(velox.addr, raw, LIMIT).await;
        let response = ex.only_response();
        assert_velox_error(&response, 400, "malformed-request");
        assert!(
            ex.closed,
            "connection must be closed after a malformed request line: {raw:?}"
        );
    }
    assert_still_serving(&velox).await;
}

#[tokio::test]
async fn one_mebibyte_of_headers_is_431() {
    let origin = start_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let mut raw = b"GET /echo HTTP/1.1\r\nHost: x\r\n".to_vec();
    let line = format!("X-Filler: {}\r\n", "a".repeat(1000));
    while raw.len() < 1024 * 1024 {
        raw.extend_from_slice(line.as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    let ex = exchange_paced(velox.addr, raw, 16 * 1024, Duration::ZERO, LIMIT).await;
    let response = ex.only_response();
    assert_velox_error(&response, 431, "request-header-too-large");
    assert!(ex.closed, "connection must be closed after 431");

    // One single giant header line, too.
    let mut raw = b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Huge: ".to_vec();
    raw.extend(std::iter::repeat_n(b'b', 1024 * 1024));
    raw.extend_from_slice(b"\r\n\r\n");
    let ex = exchange_paced(velox.addr, raw, 16 * 1024, Duration::ZERO, LIMIT).await;
    assert_velox_error(&ex.only_response(), 431, "request-header-too-large");
    assert_still_serving(&velox).await;
}

#[tokio::test]
async fn too_many_header_fields_is_431() {
    let origin = start_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let mut raw = b"GET /echo HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..500 {
        raw.extend_from_slice(format!("X-F{i}: v\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    assert!(
        raw.len() < 16 * 1024,
        "well under max_header_bytes: only the field count is at fault"
    );
    let ex = exchange(velox.addr, &raw, LIMIT).await;
    assert_velox_error(&ex.only_response(), 431, "request-header-too-large");
    assert!(ex.closed);
    assert_still_serving(&velox).await;
}

#[tokio::test]
async fn invalid_bytes_in_the_path_are_400() {
    let origin = start_recording_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let cases: [&[u8]; 6] = [
        b"GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /a\x80b HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for raw in cases {
        let ex = exchange(velox.addr, raw, LIMIT).await;
        let mut responses = ex.responses();
        assert_eq!(
            responses.len(),
            1,
            "one response for {raw:?}: {:?}",
            String::from_utf8_lossy(&ex.data)
        );
        assert_velox_error(&responses.remove(0), 400, "malformed-request");
        assert!(ex.closed, "closed after {raw:?}");
    }
    assert!(
        origin.seen().is_empty(),
        "nothing may reach the origin: {:?}",
        origin.seen()
    );
    // Percent-encoded, the same path is fine and reaches the origin.
    let ex = exchange(
        velox.addr,
        b"GET /caf%C3%A9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        LIMIT,
    )
    .await;
    assert_eq!(ex.only_response().status, 200);
    assert_eq!(origin.seen(), vec!["GET /caf%C3%A9 body=Ok(0)".to_string()]);
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused_without_smuggling() {
    let origin = start_recording_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    // CL.TE: a front end trusting Content-Length forwards the whole thing; a back end trusting
    // chunked sees "0" then a second request.
    let chunked_body = format!("0\r\n\r\n{smuggled}");
    let cl_te = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{chunked_body}",
        chunked_body.len()
    );
    // TE.CL: the other way round.
    let te_cl = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
        smuggled.len()
    );
    // Obfuscated codings and a duplicated TE header.
    let te_twice = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n{chunked_body}",
        chunked_body.len()
    );
    for raw in [cl_te, te_cl, te_twice] {
        let ex = exchange(velox.addr, raw.as_bytes(), LIMIT).await;
        let responses = ex.responses();
        assert_eq!(
            responses.len(),
            1,
            "exactly one response (no smuggled second request): {:?}",
            String::from_utf8_lossy(&ex.data)
        );
        assert_velox_error(&responses[0], 400, "malformed-request");
        assert!(ex.closed, "connection closed after the refusal");
    }
    assert!(
        origin.seen().is_empty(),
        "the origin must receive nothing: {:?}",
        origin.seen()
    );
    // The recorder does record what is legitimately proxied.
    let reply = request("POST", &velox.url("/upload"), &[], b"hello").await;
    assert_eq!(reply.status, 200);
    assert_eq!(origin.seen(), vec!["POST /upload body=Ok(5)".to_string()]);
}

#[tokio::test]
async fn unsupported_transfer_coding_is_501() {
    let origin = start_recording_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let raw =
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n";
    let ex = exchange(velox.addr, raw, LIMIT).await;
    assert_velox_error(&ex.only_response(), 501, "not-implemented");
    assert!(ex.closed);
    // Chunked that is not the final coding cannot be framed at all: 400.
    let raw =
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n";
    let ex = exchange(velox.addr, raw, LIMIT).await;
    assert_velox_error(&ex.only_response(), 400, "malformed-request");
    assert!(origin.seen().is_empty(), "{:?}", origin.seen());
}

#[tokio::test]
async fn conflicting_content_lengths_are_400() {
    let origin = start_recording_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let cases: [&[u8]; 4] = [
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello!",
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\nhello",
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello",
    ];
    for raw in cases {
        let ex = exchange(velox.addr, raw, LIMIT).await;
        let responses = ex.responses();
        assert_eq!(
            responses.len(),
            1,
            "{:?}",
            String::from_utf8_lossy(&ex.data)
        );
        assert_velox_error(&responses[0], 400, "malformed-request");
        assert!(ex.closed);
    }
    assert!(origin.seen().is_empty(), "{:?}", origin.seen());
}

#[tokio::test]
async fn http11_without_host_is_400() {
    let origin = start_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let ex = exchange(velox.addr, b"GET /echo HTTP/1.1\r\n\r\n", LIMIT).await;
    assert_velox_error(&ex.only_response(), 400, "malformed-request");
    assert!(ex.closed);
    let ex = exchange(
        velox.addr,
        b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        LIMIT,
    )
    .await;
    assert_velox_error(&ex.only_response(), 400, "malformed-request");
    // HTTP/1.0 needs no Host.
    let ex = exchange(velox.addr, b"GET /echo HTTP/1.0\r\n\r\n", LIMIT).await;
    assert_eq!(ex.only_response().status, 200);
}

#[tokio::test]
async fn connect_is_405() {
    let origin = start_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let ex = exchange(
        velox.addr,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        LIMIT,
    )
    .await;
    assert_velox_error(&ex.only_response(), 405, "connect-not-supported");
    assert!(ex.closed);
    assert_still_serving(&velox).await;
}

#[tokio::test]
async fn slowloris_gets_408_and_is_closed_after_the_header_timeout() {
    let origin = start_origin().await;
    let velox = velox_with_limits(origin.addr, r#"header_read_timeout = "2s""#).await;
    // A head that would take ~15 s at one byte per 500 ms; never completes in time.
    let head = b"GET /echo HTTP/1.1\r\nHost: example.com\r\nX-A: b\r\n\r\n".to_vec();
    let ex = exchange_paced(
        velox.addr,
        head,
        1,
        Duration::from_millis(500),
        Duration::from_secs(8),
    )
    .await;
    assert!(
        ex.closed,
        "slowloris connection still open after {:?}",
        ex.elapsed
    );
    assert!(
        ex.elapsed >= Duration::from_millis(1500) && ex.elapsed <= Duration::from_millis(3500),
        "closed after {:?}, expected about 2s",
        ex.elapsed
    );
    assert_velox_error(&ex.only_response(), 408, "header-timeout");
    assert_still_serving(&velox).await;
}

#[tokio::test]
async fn idle_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let origin = start_origin().await;
    let velox = velox_with_limits(origin.addr, r#"header_read_timeout = "2s""#).await;
    let ex = exchange(velox.addr, b"", Duration::from_secs(8)).await;
    assert!(ex.closed, "a silent connection must be closed");
    assert!(
        ex.elapsed >= Duration::from_millis(1500) && ex.elapsed <= Duration::from_millis(3500),
        "closed after {:?}, expected about 2s",
        ex.elapsed
    );
    // Closing silently or with a 408 are both fine; anything else is not.
    if !ex.data.is_empty() {
        assert_velox_error(&ex.only_response(), 408, "header-timeout");
    }
}

/// Reads one response to a `GET` on `conn` (the origin's small bodies fit one read or a few).
async fn get_on(conn: &mut TcpStream, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&data).contains("\r\n\r\n") || !response_complete(&data) {
        let n = tokio::time::timeout(LIMIT, conn.read(&mut buf))
            .await
            .expect("response in time")
            .unwrap();
        assert!(n > 0, "closed before the response ended");
        data.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&data).into_owned()
}

/// A response with a Content-Length is complete once that many body bytes arrived.
fn response_complete(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse::<usize>().ok())
        .expect("a Content-Length");
    body.len() >= length
}

#[tokio::test]
async fn keep_alive_idle_timeout_counts_from_the_last_response() {
    let origin = start_origin().await;
    let velox = velox_with_limits(origin.addr, r#"idle_timeout = "2s""#).await;
    let mut conn = TcpStream::connect(velox.addr).await.unwrap();
    assert!(get_on(&mut conn, "/").await.starts_with("HTTP/1.1 200"));
    // A second request 1.2 s later, inside the idle timeout, is served on the same connection...
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(get_on(&mut conn, "/").await.starts_with("HTTP/1.1 200"));
    // ...and the idle time starts again from its response: still open 1.2 s later (2.4 s after
    // the first), closed about 2 s after the second response.
    let after_second = Instant::now();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut byte))
        .await
        .expect("the idle connection is closed within 5 s");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "no bytes on an idle connection"
    );
    let idle = after_second.elapsed();
    assert!(
        idle >= Duration::from_millis(1500) && idle <= Duration::from_millis(3500),
        "closed {idle:?} after the last response, expected about 2 s"
    );
}

#[tokio::test]
async fn body_over_max_body_bytes_is_413_with_length_and_chunked() {
    let origin = start_recording_origin().await;
    let velox = velox_with_limits(origin.addr, r#"max_body_bytes = "1KiB""#).await;
    // At the limit: fine.
    let reply = request("POST", &velox.url("/upload"), &[], &[b'a'; 1024]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        origin.seen(),
        vec!["POST /upload body=Ok(1024)".to_string()]
    );

    // Declared length over the limit: refused before any body byte is read.
    let mut raw = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n".to_vec();
    raw.extend(std::iter::repeat_n(b'b', 2048));
    let ex = exchange(velox.addr, &raw, LIMIT).await;
    assert_velox_error(&ex.only_response(), 413, "body-too-large");
    assert!(ex.closed);

    // Chunked, 2 KiB in 256-byte chunks: refused once the running total passes the limit.
    let mut raw =
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..8 {
        raw.extend_from_slice(b"100\r\n");
        raw.extend(std::iter::repeat_n(b'c', 256));
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let ex = exchange(velox.addr, &raw, LIMIT).await;
    assert_velox_error(&ex.only_response(), 413, "body-too-large");
    assert!(ex.closed);

    // No complete oversized body reached the origin.
    let seen = origin.seen();
    assert!(
        seen.iter()
            .skip(1)
            .all(|line| !line.ends_with("body=Ok(2048)")),
        "an oversized body reached the origin whole: {seen:?}"
    );
    assert_still_serving(&velox).await;
}

#[tokio::test]
async fn max_header_bytes_is_honoured() {
    let origin = start_origin().await;
    let velox = velox_with_limits(origin.addr, r#"max_header_bytes = "4KiB""#).await;
    let head_of = |size: usize| {
        let mut raw = b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: ".to_vec();
        let pad = size - raw.len() - 4;
        raw.extend(std::iter::repeat_n(b'p', pad));
        raw.extend_from_slice(b"\r\n\r\n");
        assert_eq!(raw.len(), size);
        raw
    };
    let ex = exchange(velox.addr, &head_of(3 * 1024), LIMIT).await;
    assert_eq!(
        ex.only_response().status,
        200,
        "a 3 KiB head is within a 4 KiB limit"
    );
    let ex = exchange(velox.addr, &head_of(5 * 1024), LIMIT).await;
    assert_velox_error(&ex.only_response(), 431, "request-header-too-large");
    assert!(ex.closed);
    assert_still_serving(&velox).await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let origin = start_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let raw = b"GET /echo?n=1 HTTP/1.1\r\nHost: x\r\n\r\nGET /echo?n=2 HTTP/1.1\r\nHost: x\r\n\r\nGET /echo?n=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let ex = exchange(velox.addr, raw, LIMIT).await;
    let responses = ex.responses();
    assert_eq!(
        responses.len(),
        3,
        "{:?}",
        String::from_utf8_lossy(&ex.data)
    );
    for (i, response) in responses.iter().enumerate() {
        assert_eq!(response.status, 200);
        let echoed: serde_json::Value = serde_json::from_slice(&response.body).expect("echo JSON");
        assert_eq!(
            echoed["uri"].as_str(),
            Some(format!("/echo?n={}", i + 1).as_str()),
            "response {i}: {}",
            response.text()
        );
    }
    assert!(
        ex.closed,
        "Connection: close on the last request closes the connection"
    );
}

#[tokio::test]
async fn pipelined_request_after_a_body_is_answered_too() {
    let origin = start_recording_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let raw = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloPOST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let ex = exchange(velox.addr, raw, LIMIT).await;
    let statuses: Vec<u16> = ex.responses().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        vec![200, 200, 200],
        "{:?}",
        String::from_utf8_lossy(&ex.data)
    );
    assert_eq!(
        origin.seen(),
        vec![
            "POST /upload body=Ok(5)".to_string(),
            "POST /upload body=Ok(3)".to_string(),
            "GET /last body=Ok(0)".to_string()
        ]
    );
}

#[tokio::test]
async fn no_route_is_404() {
    let origin = start_origin().await;
    let (addr, admin) = (free_addr(), free_addr());
    let config = basic_config(addr, admin, origin.addr)
        .replace("path_prefix = \"/\"", "path_prefix = \"/only/\"");
    let velox = Velox::start(&config, addr, admin).await;
    let ex = exchange(
        velox.addr,
        b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        LIMIT,
    )
    .await;
    assert_velox_error(&ex.only_response(), 404, "no-route");
}

#[tokio::test]
async fn server_keeps_serving_while_and_after_being_abused() {
    let origin = start_origin().await;
    let velox = velox_with_limits(
        origin.addr,
        "header_read_timeout = \"2s\"\nmax_body_bytes = \"1KiB\"",
    )
    .await;
    let addr = velox.addr;
    let mut huge = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'h', 1024 * 1024));
    let abuse: Vec<Vec<u8>> = vec![
        b"GARBAGE\r\n\r\n".to_vec(),
        huge,
        b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
        b"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n".to_vec(),
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec(), // never finished
        Vec::new(),                               // silent
    ];
    let tasks: Vec<_> = abuse
        .into_iter()
        .map(|raw| {
            tokio::spawn(async move {
                exchange_paced(addr, raw, 8192, Duration::ZERO, Duration::from_secs(6)).await
            })
        })
        .collect();
    // While all of that is going on, normal clients are served.
    for _ in 0..5 {
        assert_still_serving(&velox).await;
    }
    for task in tasks {
        let ex = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("bounded")
            .expect("task");
        assert!(
            ex.closed,
            "every abusive connection is closed in time: {:?}",
            String::from_utf8_lossy(&ex.data)
        );
    }
    assert_still_serving(&velox).await;
    assert!(velox_is_alive(&velox), "the process must still be running");
}

fn velox_is_alive(velox: &Velox) -> bool {
    std::fs::metadata(format!("/proc/{}", velox.child.id())).is_ok()
        && !std::fs::read_to_string(format!("/proc/{}/stat", velox.child.id()))
            .unwrap_or_default()
            .contains(") Z ")
}

#[tokio::test]
async fn malformed_chunked_body_is_400_and_closes() {
    let origin = start_recording_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let cases: [&[u8]; 3] = [
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    ];
    for raw in cases {
        let ex = exchange(velox.addr, raw, LIMIT).await;
        let response = ex.only_response();
        assert_eq!(response.status, 400, "{response:?}");
        // The contract's code list has no entry for a bad body; Velox says "malformed-body".
        assert!(
            matches!(
                response.header("x-velox-error"),
                Some("malformed-request" | "malformed-body")
            ),
            "{response:?}"
        );
        assert_eq!(response.header("cache-status"), Some("velox; fwd=bypass"));
        assert!(ex.closed, "closed after a malformed body: {raw:?}");
    }
    let seen = origin.seen();
    assert!(
        seen.iter().all(|line| !line.contains("body=Ok")),
        "a malformed body must not reach the origin as a complete request: {seen:?}"
    );
    assert_still_serving(&velox).await;
}
