//! Streaming over real sockets: 1 GiB download and upload with bounded Velox RSS, a chunked
//! upload, and an origin that aborts mid-body.

mod common;
use common::*;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GIB: u64 = 1 << 30;
const RSS_LIMIT_KIB: u64 = 64 * 1024;

/// `len` bytes of the demo origin's pattern, starting at pattern offset 0, repeated enough
/// that any slice of up to `PIECE` bytes starting at any offset mod 251 fits.
const PIECE: usize = 251 * 256;

fn pattern() -> Bytes {
    Bytes::from(
        (0..PIECE + 251)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    )
}

/// Expected wrapping byte sum of `n` pattern bytes (byte i = i % 251).
fn pattern_sum(n: u64) -> u64 {
    let (periods, rest) = (n / 251, n % 251);
    periods
        .wrapping_mul(250 * 251 / 2)
        .wrapping_add(rest * rest.saturating_sub(1) / 2)
}

/// Runs `work` while sampling Velox's RSS every 100 ms; returns the work's output and the
/// largest RSS seen (KiB).
async fn with_rss_sampling<T>(velox: &Velox, work: impl Future<Output = T>) -> (T, u64) {
    let done = AtomicBool::new(false);
    let sampler = async {
        let mut max = velox.rss_kib();
        while !done.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            max = max.max(velox.rss_kib());
        }
        max
    };
    let work = async {
        let out = work.await;
        done.store(true, Ordering::Relaxed);
        out
    };
    let (out, max) = tokio::join!(work, sampler);
    (out, max.max(velox.rss_kib()))
}

fn json_of(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("JSON body ({e}): {:?}", String::from_utf8_lossy(body)))
}

/// A hyper HTTP/1.1 connection to Velox.
async fn h1_sender<B>(velox: &Velox) -> hyper::client::conn::http1::SendRequest<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = TcpStream::connect(velox.addr).await.expect("connect");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("http1 handshake");
    tokio::spawn(conn);
    sender
}

// ---------------------------------------------------------------------------------------

#[test]
fn pattern_sum_matches_the_origin_checksum() {
    for n in [0u64, 1, 250, 251, 252, 1000, 251 * 7 + 13, 300_000] {
        let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        assert_eq!(pattern_sum(n), velox_demo::byte_sum(&data), "n = {n}");
    }
}

#[tokio::test]
async fn download_1gib_streams_with_bounded_rss() {
    let origin = start_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let pattern = pattern();
    let started = Instant::now();
    let download = async {
        let mut sender = h1_sender::<Empty<Bytes>>(&velox).await;
        let request = http::Request::get(format!("/bytes/{GIB}"))
            .header("host", "stream.test")
            .body(Empty::new())
            .expect("request");
        let response = sender.send_request(request).await.expect("response head");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok()),
            Some(GIB.to_string().as_str())
        );
        let mut body = response.into_body();
        let mut offset: u64 = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.unwrap_or_else(|e| panic!("body error at byte {offset}: {e}"));
            let Some(data) = frame.data_ref() else {
                continue;
            };
            for piece in data.chunks(PIECE) {
                let start = (offset % 251) as usize;
                assert!(
                    piece == &pattern[start..start + piece.len()],
                    "pattern mismatch in the {} bytes at offset {offset}",
                    piece.len()
                );
                offset += piece.len() as u64;
            }
        }
        offset
    };
    let (received, max_rss) = with_rss_sampling(&velox, async {
        tokio::time::timeout(Duration::from_secs(300), download)
            .await
            .expect("download within 300s")
    })
    .await;
    let elapsed = started.elapsed();
    eprintln!(
        "download: {received} bytes in {elapsed:?} ({:.0} MiB/s), velox max RSS {max_rss} KiB",
        received as f64 / 1048576.0 / elapsed.as_secs_f64()
    );
    assert_eq!(received, GIB);
    assert!(max_rss > 0, "could not read velox RSS");
    assert!(
        max_rss < RSS_LIMIT_KIB,
        "velox RSS reached {max_rss} KiB during a 1 GiB download"
    );
}

#[tokio::test]
async fn upload_1gib_with_content_length_streams_with_bounded_rss() {
    let origin = start_origin().await;
    // A long first-byte timeout: this test is about streaming and memory; the timer's
    // behaviour during uploads has its own test (slow_upload_longer_than_...).
    let (addr, admin) = (free_addr(), free_addr());
    let config = basic_config(addr, admin, origin.addr);
    assert!(config.contains("first_byte_timeout = \"2s\""));
    let config = config.replace(
        "first_byte_timeout = \"2s\"",
        "first_byte_timeout = \"120s\"",
    );
    let velox = Velox::start(&config, addr, admin).await;
    let pattern = pattern();
    let started = Instant::now();
    let upload = async {
        // Chunks of PIECE bytes (a whole number of pattern periods), then the remainder:
        // generated on the fly, never held at once.
        let full_pieces = GIB / PIECE as u64;
        let rest = (GIB % PIECE as u64) as usize;
        let chunks = (0..=full_pieces).filter_map(move |i| {
            let len = if i < full_pieces { PIECE } else { rest };
            (len > 0).then(|| Ok::<_, std::io::Error>(Frame::data(pattern.slice(..len))))
        });
        let body = StreamBody::new(futures_util::stream::iter(chunks));
        let mut sender = h1_sender::<StreamBody<_>>(&velox).await;
        let request = http::Request::post("/upload")
            .header("host", "stream.test")
            .header("content-length", GIB.to_string())
            .body(body)
            .expect("request");
        let response = sender.send_request(request).await.expect("upload response");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("response body")
            .to_bytes();
        (status, body)
    };
    let ((status, body), max_rss) = with_rss_sampling(&velox, async {
        tokio::time::timeout(Duration::from_secs(300), upload)
            .await
            .expect("upload within 300s")
    })
    .await;
    let elapsed = started.elapsed();
    eprintln!(
        "upload: {GIB} bytes in {elapsed:?} ({:.0} MiB/s), velox max RSS {max_rss} KiB",
        GIB as f64 / 1048576.0 / elapsed.as_secs_f64()
    );
    assert_eq!(status, 200, "{:?}", String::from_utf8_lossy(&body));
    let json = json_of(&body);
    assert_eq!(json["bytes"], GIB);
    assert_eq!(json["checksum"], pattern_sum(GIB));
    assert!(max_rss > 0, "could not read velox RSS");
    assert!(
        max_rss < RSS_LIMIT_KIB,
        "velox RSS reached {max_rss} KiB during a 1 GiB upload"
    );
}

#[tokio::test]
async fn chunked_upload_of_64mib_arrives_intact_with_bounded_rss() {
    const TOTAL: u64 = 64 << 20;
    let origin = start_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let started = Instant::now();
    let upload = async {
        let mut stream = TcpStream::connect(velox.addr).await.expect("connect");
        stream
            .write_all(
                b"POST /upload HTTP/1.1\r\nHost: chunked.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            )
            .await
            .expect("write head");
        // Varied chunk sizes (tiny, odd, larger than typical buffers), chunk extensions on
        // some, and data whose bytes depend on the absolute position.
        let sizes = [1usize, 7, 100, 4096, 65_537, 16_383, 300_000, 2, 1 << 20];
        let mut sent: u64 = 0;
        let mut checksum: u64 = 0;
        let mut k = 0usize;
        let mut data = Vec::new();
        while sent < TOTAL {
            let len = sizes[k % sizes.len()].min((TOTAL - sent) as usize);
            data.clear();
            data.extend((0..len as u64).map(|i| ((sent + i) * 7 % 256) as u8));
            checksum = checksum.wrapping_add(velox_demo::byte_sum(&data));
            let size_line = if k.is_multiple_of(3) {
                format!("{len:x};ext=1\r\n")
            } else {
                format!("{len:X}\r\n")
            };
            stream
                .write_all(size_line.as_bytes())
                .await
                .expect("write size");
            stream.write_all(&data).await.expect("write chunk");
            stream.write_all(b"\r\n").await.expect("write CRLF");
            sent += len as u64;
            k += 1;
        }
        stream
            .write_all(b"0\r\n\r\n")
            .await
            .expect("write last chunk");
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.expect("read response");
        (sent, checksum, out)
    };
    let ((sent, checksum, out), max_rss) = with_rss_sampling(&velox, async {
        tokio::time::timeout(Duration::from_secs(120), upload)
            .await
            .expect("upload within 120s")
    })
    .await;
    eprintln!(
        "chunked upload: {sent} bytes in {:?}, velox max RSS {max_rss} KiB",
        started.elapsed()
    );
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text:?}");
    let head_end = text.find("\r\n\r\n").expect("response head");
    let body = &out[head_end + 4..];
    // The response may be chunked or sized; the JSON object is all on one line.
    let json_start = body
        .iter()
        .position(|&b| b == b'{')
        .expect("JSON in the body");
    let json_end = body.iter().rposition(|&b| b == b'}').expect("JSON end");
    let json = json_of(&body[json_start..=json_end]);
    assert_eq!(json["bytes"], TOTAL);
    assert_eq!(json["checksum"], checksum);
    assert!(
        max_rss < RSS_LIMIT_KIB,
        "velox RSS reached {max_rss} KiB during a chunked upload"
    );
}

#[tokio::test]
async fn origin_abort_mid_body_truncates_the_response_without_hanging() {
    let origin = start_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        let mut sender = h1_sender::<Empty<Bytes>>(&velox).await;
        let request = http::Request::get("/truncated")
            .header("host", "trunc.test")
            .body(Empty::new())
            .expect("request");
        let response = sender.send_request(request).await.expect("response head");
        let status = response.status();
        let declared = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = response.into_body();
        let mut received = 0usize;
        let mut error = None;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => received += frame.data_ref().map_or(0, |d| d.len()),
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            }
        }
        (status, declared, received, error)
    })
    .await;
    let (status, declared, received, error) =
        outcome.expect("truncated response must end within 10s, not hang");
    assert_eq!(status, 200);
    assert_eq!(
        declared.as_deref(),
        Some("100000"),
        "Content-Length passed through"
    );
    assert!(
        received < 100_000,
        "client got {received} bytes of a truncated body"
    );
    assert!(
        error.is_some(),
        "a short body must be a client-visible error, got a clean end at {received}"
    );
}

#[tokio::test]
async fn origin_abort_mid_body_closes_the_raw_connection() {
    let origin = start_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let mut stream = TcpStream::connect(velox.addr).await.expect("connect");
    stream
        .write_all(b"GET /truncated HTTP/1.1\r\nHost: trunc.test\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "Velox kept the connection open after the origin aborted ({} bytes so far)",
        out.len()
    );
    let head_end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head")
        + 4;
    let head = String::from_utf8_lossy(&out[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head:?}");
    assert!(head.contains("content-length: 100000\r\n"), "{head:?}");
    assert!(out.len() - head_end < 100_000);
}

#[tokio::test]
async fn origin_abort_mid_body_resets_the_h2_stream() {
    let origin = start_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let tcp = TcpStream::connect(velox.addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2c handshake");
    tokio::spawn(conn);
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        let request = http::Request::get(format!("http://{}/truncated", velox.addr))
            .body(Empty::<Bytes>::new())
            .expect("request");
        let response = sender.send_request(request).await.expect("response head");
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let mut received = 0usize;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => received += frame.data_ref().map_or(0, |d| d.len()),
                Err(_) => return (received, true),
            }
        }
        (received, false)
    })
    .await;
    let (received, errored) = outcome.expect("truncated h2 response must end within 10s");
    assert!(received < 100_000);
    assert!(
        errored,
        "h2 stream ended cleanly after {received} of 100000 bytes"
    );
    // The connection itself survives: another stream on it works.
    let request = http::Request::get(format!("http://{}/status/200", velox.addr))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("in time")
        .expect("second stream on the same h2 connection");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn slow_upload_longer_than_first_byte_timeout_succeeds() {
    // basic_config: first_byte_timeout = "2s". The client takes ~3.6 s to send its body;
    // the origin cannot answer before the body ends, so the timer must not run meanwhile.
    let origin = start_origin().await;
    let velox = Velox::basic(origin.addr).await;
    let mut stream = TcpStream::connect(velox.addr).await.expect("connect");
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: slow.test\r\nContent-Length: 30\r\nConnection: close\r\n\r\n")
        .await
        .expect("write head");
    for _ in 0..3 {
        stream
            .write_all(&[1u8; 10])
            .await
            .expect("write body piece");
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("response within 10s")
        .expect("read");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text:?}");
    let json_start = out
        .iter()
        .position(|&b| b == b'{')
        .expect("JSON in the body");
    let json_end = out.iter().rposition(|&b| b == b'}').expect("JSON end");
    let json = json_of(&out[json_start..=json_end]);
    assert_eq!(json["bytes"], 30);
    assert_eq!(json["checksum"], 30);
}
