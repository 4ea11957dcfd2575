//! Integration tests: start `velox_demo::serve` on 127.0.0.1:0 and talk to it over real
//! sockets with hyper (HTTP/1.1 and h2c) and tokio-tungstenite.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(velox_demo::serve(listener, async {
        let _ = rx.await;
    }));
    Server {
        addr,
        stop: Some(tx),
        task,
    }
}

impl Server {
    async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("serve returns after shutdown")
            .unwrap()
            .unwrap();
    }
}

fn req(method: Method, path: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "demo.test")
}

/// One HTTP/1.1 request on a fresh connection.
async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Response<Incoming> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await.unwrap()
}

async fn get(addr: SocketAddr, path: &str) -> Response<Incoming> {
    send(addr, req(Method::GET, path).body(Full::default()).unwrap()).await
}

async fn body_bytes(resp: Response<Incoming>) -> Bytes {
    resp.into_body().collect().await.unwrap().to_bytes()
}

fn header<'a>(resp: &'a Response<Incoming>, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

#[tokio::test]
async fn startup_is_instant_and_shutdown_returns() {
    let t = Instant::now();
    let server = start().await;
    let resp = get(server.addr, "/").await;
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "server"), "velox-demo");
    assert!(header(&resp, "content-type").starts_with("text/html"));
    assert!(resp.headers().get("cache-control").is_none());
    let html = String::from_utf8(body_bytes(resp).await.to_vec()).unwrap();
    assert!(html.contains("href=\"/articles/6\""));
    assert!(html.contains("<link rel=stylesheet href=/static/site.css>"));
    assert!(html.contains("<script src=/static/app.js>"));
    assert!(html.contains("<img src=/images/hero.jpg"));

    let resp = get(server.addr, "/does-not-exist").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(header(&resp, "content-type").starts_with("text/plain"));

    let resp = send(
        server.addr,
        req(Method::POST, "/articles/1")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    server.shutdown().await;
}

#[tokio::test]
async fn big_bin_ranges() {
    let server = start().await;
    let len = velox_demo::BIG_BIN_LEN;

    let resp = send(
        server.addr,
        req(Method::GET, "/download/big.bin")
            .header("range", "bytes=1000-1999")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(&resp, "content-range"),
        format!("bytes 1000-1999/{len}")
    );
    assert_eq!(header(&resp, "content-length"), "1000");
    assert_eq!(header(&resp, "accept-ranges"), "bytes");
    let etag = header(&resp, "etag").to_owned();
    assert!(!etag.is_empty());
    assert!(!header(&resp, "last-modified").is_empty());
    let body = body_bytes(resp).await;
    assert_eq!(body.len(), 1000);
    for (i, b) in body.iter().enumerate() {
        assert_eq!(*b, velox_demo::pattern_byte(1000 + i as u64));
    }

    // Suffix range.
    let resp = send(
        server.addr,
        req(Method::GET, "/download/big.bin")
            .header("range", "bytes=-10")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(&resp, "content-range"),
        format!("bytes {}-{}/{len}", len - 10, len - 1)
    );
    let body = body_bytes(resp).await;
    let want: Vec<u8> = (len - 10..len).map(velox_demo::pattern_byte).collect();
    assert_eq!(&body[..], &want[..]);

    // Unsatisfiable.
    let resp = send(
        server.addr,
        req(Method::GET, "/download/big.bin")
            .header("range", format!("bytes={len}-"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&resp, "content-range"), format!("bytes */{len}"));

    // If-Range matching: 206; not matching: full 200 (headers only, via HEAD).
    let resp = send(
        server.addr,
        req(Method::GET, "/download/big.bin")
            .header("range", "bytes=0-9")
            .header("if-range", &etag)
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        &body_bytes(resp).await[..],
        &(0u8..10).collect::<Vec<_>>()[..]
    );
    let resp = send(
        server.addr,
        req(Method::HEAD, "/download/big.bin")
            .header("range", "bytes=0-9")
            .header("if-range", "\"something-else\"")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-length"), len.to_string());
    assert!(body_bytes(resp).await.is_empty());

    // Conditional GET.
    let resp = send(
        server.addr,
        req(Method::GET, "/download/big.bin")
            .header("if-none-match", &etag)
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    server.shutdown().await;
}

#[tokio::test]
async fn bytes_endpoint_content() {
    let server = start().await;
    let resp = get(server.addr, "/bytes/1000000").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-length"), "1000000");
    assert_eq!(header(&resp, "cache-control"), "no-store");
    let body = body_bytes(resp).await;
    assert_eq!(body.len(), 1_000_000);
    assert!(body
        .iter()
        .enumerate()
        .all(|(i, b)| *b == velox_demo::pattern_byte(i as u64)));

    let resp = get(server.addr, "/bytes/0").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(body_bytes(resp).await.is_empty());
    let resp = get(server.addr, "/bytes/9999999999999").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    server.shutdown().await;
}

#[tokio::test]
async fn echo_reports_the_request() {
    let server = start().await;
    let resp = send(
        server.addr,
        req(Method::POST, "/echo?x=1")
            .header("x-forwarded-for", "10.0.0.1")
            .header("x-multi", "a")
            .header("x-multi", "b")
            .body(Full::new(Bytes::from(vec![7u8; 12345])))
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-type"), "application/json");
    let v: serde_json::Value = serde_json::from_slice(&body_bytes(resp).await).unwrap();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["uri"], "/echo?x=1");
    assert_eq!(v["version"], "HTTP/1.1");
    assert_eq!(v["body_bytes"], 12345);
    assert_eq!(v["headers"]["x-forwarded-for"][0], "10.0.0.1");
    assert_eq!(v["headers"]["x-multi"], serde_json::json!(["a", "b"]));
    assert_eq!(v["headers"]["host"][0], "demo.test");
    server.shutdown().await;
}

#[tokio::test]
async fn h2c_prior_knowledge() {
    let server = start().await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender
        .send_request(
            Request::builder()
                .uri(format!("http://{}/echo", server.addr))
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body_bytes(resp).await).unwrap();
    assert_eq!(v["version"], "HTTP/2.0");
    let resp = sender
        .send_request(
            Request::builder()
                .uri(format!("http://{}/bytes/300000", server.addr))
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(body_bytes(resp).await.len(), 300_000);
    server.shutdown().await;
}

#[tokio::test]
async fn sse_with_count() {
    let server = start().await;
    let resp = get(server.addr, "/events?count=2&interval_ms=10").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-type"), "text/event-stream");
    assert_eq!(header(&resp, "cache-control"), "no-cache");
    let text = String::from_utf8(body_bytes(resp).await.to_vec()).unwrap();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 2, "{text:?}");
    for (i, e) in events.iter().enumerate() {
        let json = e.strip_prefix("data: ").unwrap();
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["n"], i as u64 + 1);
        assert!(v["now"].as_u64().unwrap() > 1_600_000_000_000);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn websocket_echo() {
    let server = start().await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut ws, resp) =
        tokio_tungstenite::client_async(format!("ws://{}/ws", server.addr), stream)
            .await
            .unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![1u8, 2, 3])
    );
    ws.close(None).await.unwrap();
    // The server answers the close.
    let mut got_close = false;
    while let Some(msg) = ws.next().await {
        eprintln!("client got {msg:?}");
        if let Ok(Message::Close(_)) = msg {
            got_close = true;
        }
    }
    assert!(got_close);

    // A plain GET is refused.
    let resp = get(server.addr, "/ws").await;
    assert_eq!(resp.status(), StatusCode::UPGRADE_REQUIRED);
    server.shutdown().await;
}

#[tokio::test]
async fn truncated_body_errors() {
    let server = start().await;
    let resp = get(server.addr, "/truncated").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-length"), "100000");
    let mut body = resp.into_body();
    let mut got = 0usize;
    let mut errored = false;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => got += f.data_ref().map_or(0, |d| d.len()),
            Err(_) => {
                errored = true;
                break;
            }
        }
    }
    assert!(errored, "body must end with an error");
    assert_eq!(got, velox_demo::TRUNCATED_SENT);
    server.shutdown().await;
}

#[tokio::test]
async fn upload_checksums_streamed_body() {
    let server = start().await;
    let data: Vec<u8> = (0..3_000_001u32).map(|i| (i * 31 + 7) as u8).collect();
    let want = data.iter().fold(0u64, |a, &b| a.wrapping_add(u64::from(b)));
    let resp = send(
        server.addr,
        req(Method::PUT, "/upload")
            .body(Full::new(Bytes::from(data)))
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&body_bytes(resp).await).unwrap();
    assert_eq!(v["bytes"], 3_000_001);
    assert_eq!(v["checksum"], want);
    let resp = get(server.addr, "/upload").await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    server.shutdown().await;
}

#[tokio::test]
async fn site_assets_and_fixtures() {
    let server = start().await;
    let a = server.addr;

    let resp = send(
        a,
        req(Method::HEAD, "/images/hero.jpg")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-type"), "image/jpeg");
    let len: usize = header(&resp, "content-length").parse().unwrap();
    assert!(len > 100_000, "hero is {len} bytes");
    assert!(body_bytes(resp).await.is_empty());

    let resp = get(a, "/images/photo-3.jpg").await;
    let etag = header(&resp, "etag").to_owned();
    assert!(resp.headers().get("cache-control").is_none());
    let body = body_bytes(resp).await;
    assert_eq!(&body[..2], &[0xFF, 0xD8]);
    let resp = send(
        a,
        req(Method::GET, "/images/photo-3.jpg")
            .header("if-none-match", etag)
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);

    let resp = get(a, "/images/diagram.png").await;
    assert_eq!(header(&resp, "content-type"), "image/png");
    assert_eq!(&body_bytes(resp).await[..4], b"\x89PNG");

    let resp = get(a, "/static/site.css").await;
    assert_eq!(header(&resp, "cache-control"), "max-age=300");
    assert!(!header(&resp, "etag").is_empty());
    let resp = get(a, "/static/app.js").await;
    assert!(resp.headers().get("cache-control").is_none());
    assert!(!header(&resp, "last-modified").is_empty());
    let resp = get(a, "/articles/1").await;
    assert_eq!(header(&resp, "cache-control"), "max-age=60");
    assert!(String::from_utf8(body_bytes(resp).await.to_vec())
        .unwrap()
        .contains("<img src=/images/"));
    let resp = get(a, "/articles/2").await;
    assert!(resp.headers().get("cache-control").is_none());

    let t = Instant::now();
    let resp = get(a, "/api/search?q=bakery").await;
    assert!(t.elapsed() >= Duration::from_millis(150));
    assert_eq!(header(&resp, "cache-control"), "no-cache");
    let v: serde_json::Value = serde_json::from_slice(&body_bytes(resp).await).unwrap();
    assert_eq!(v["query"], "bakery");
    assert!(v["results"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["url"] == "/articles/3"));
    let r1 = body_bytes(get(a, "/api/recommendations?user=42").await).await;
    let resp = get(a, "/api/recommendations?user=42").await;
    assert_eq!(header(&resp, "cache-control"), "max-age=30");
    assert_eq!(r1, body_bytes(resp).await);

    let resp = get(a, "/hls/playlist.m3u8").await;
    assert_eq!(
        header(&resp, "content-type"),
        "application/vnd.apple.mpegurl"
    );
    let text = String::from_utf8(body_bytes(resp).await.to_vec()).unwrap();
    assert_eq!(text.matches("#EXTINF:4").count(), 10);
    let resp = get(a, "/hls/segment-9.ts").await;
    assert_eq!(header(&resp, "content-type"), "video/mp2t");
    assert!(body_bytes(resp).await.len() > 250_000);

    let resp = get(a, "/status/503").await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let resp = get(a, "/status/204").await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    let t = Instant::now();
    let resp = get(a, "/slow?ms=120").await;
    assert!(t.elapsed() >= Duration::from_millis(120));
    assert_eq!(&body_bytes(resp).await[..], b"ok");

    let resp = get(a, "/headers-hop").await;
    assert_eq!(header(&resp, "x-end-to-end"), "1");
    assert_eq!(header(&resp, "x-custom-hop"), "1");
    assert_eq!(header(&resp, "keep-alive"), "timeout=5");
    assert_eq!(header(&resp, "proxy-connection"), "keep-alive");
    assert_eq!(header(&resp, "trailer"), "X-T");

    let resp = get(a, "/cache/some/thing?v=1").await;
    assert_eq!(header(&resp, "cache-control"), "public, max-age=60");
    assert!(!header(&resp, "etag").is_empty());
    assert!(String::from_utf8(body_bytes(resp).await.to_vec())
        .unwrap()
        .contains("/cache/some/thing"));
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_with_open_sse_stream() {
    let server = start().await;
    let resp = get(server.addr, "/events?interval_ms=50").await;
    let mut body = resp.into_body();
    assert!(body.frame().await.unwrap().is_ok());
    let t = Instant::now();
    server.shutdown().await;
    assert!(t.elapsed() < Duration::from_secs(3));
}
