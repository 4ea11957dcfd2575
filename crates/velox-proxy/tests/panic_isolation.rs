//! A panic while handling one request ends that request's connection only: other connections,
//! and new ones, are served as before (each connection is its own task, as in the listener).

use http::{Request, Response, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use velox_proxy::body::{self, Body};
use velox_proxy::handler::{ConnInfo, ConnSettings, Handler, ServerFields};

struct PanicsOnPath;

impl Handler for PanicsOnPath {
    async fn handle(
        &self,
        req: Request<Body>,
        _conn: ConnInfo,
        _fields: &mut ServerFields,
    ) -> Response<Body> {
        if req.uri().path() == "/panic" {
            panic!("a bug in one request");
        }
        let mut response = Response::new(body::full("ok"));
        *response.status_mut() = StatusCode::OK;
        response
    }
}

async fn start() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handler = Arc::new(PanicsOnPath);
    let settings = Arc::new(ConnSettings {
        header_read_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        max_header_bytes: 64 * 1024,
        max_body_bytes: 0,
    });
    let (_drain_tx, drain) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _keep = _drain_tx;
        while let Ok((stream, peer)) = listener.accept().await {
            let conn = ConnInfo {
                peer,
                local: addr,
                tls: false,
                received: std::time::Instant::now(),
                may_carry_request_id: true,
            };
            let serve = velox_proxy::h1::serve(
                stream,
                handler.clone(),
                conn,
                settings.clone(),
                drain.clone(),
            );
            tokio::spawn(serve);
        }
    });
    addr
}

/// Sends one request on `stream` and reads until the response body "ok" or EOF.
async fn exchange(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    if out.ends_with(b"ok") {
                        break;
                    }
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("no hang");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_request_ends_only_its_own_connection() {
    let addr = start().await;
    let mut before = TcpStream::connect(addr).await.expect("connect");
    assert!(exchange(&mut before, "/a")
        .await
        .starts_with("HTTP/1.1 200 OK"));

    let mut victim = TcpStream::connect(addr).await.expect("connect");
    let answer = exchange(&mut victim, "/panic").await;
    assert_eq!(
        answer, "",
        "the panicking request gets no response, its connection closes"
    );

    // The connection opened before the panic still serves, and new ones are accepted.
    assert!(exchange(&mut before, "/b")
        .await
        .starts_with("HTTP/1.1 200 OK"));
    let mut after = TcpStream::connect(addr).await.expect("connect");
    assert!(exchange(&mut after, "/c")
        .await
        .starts_with("HTTP/1.1 200 OK"));
}
