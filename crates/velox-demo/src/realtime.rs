//! Long-lived endpoints: the WebSocket echo (`/ws`) and the Server-Sent Events clock
//! (`/events`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{
    HeaderMap, HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_ACCEPT,
    SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{Request, Response, StatusCode, Uri};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::resp::{self, Body};

fn header_has_token(headers: &HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// `/ws`: answer the HTTP/1.1 upgrade with 101 and echo text and binary messages.
pub(crate) fn websocket(req: Request<Incoming>, shutdown: watch::Receiver<bool>) -> Response<Body> {
    let headers = req.headers();
    let is_upgrade = header_has_token(headers, CONNECTION, "upgrade")
        && header_has_token(headers, UPGRADE, "websocket");
    let key = headers
        .get(SEC_WEBSOCKET_KEY)
        .map(|k| k.as_bytes().to_vec());
    let version_ok =
        !matches!(headers.get(SEC_WEBSOCKET_VERSION), Some(v) if v.as_bytes() != b"13");
    let (true, Some(key), true) = (is_upgrade, key, version_ok) else {
        let mut r = resp::text(
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint speaks WebSocket (version 13) only\n",
        );
        resp::set(&mut r, UPGRADE, HeaderValue::from_static("websocket"));
        resp::set(
            &mut r,
            SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return r;
    };
    let accept = derive_accept_key(&key);
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                echo(ws, shutdown).await;
            }
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });
    let mut r = Response::new(resp::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    resp::set(&mut r, CONNECTION, HeaderValue::from_static("Upgrade"));
    resp::set(&mut r, UPGRADE, HeaderValue::from_static("websocket"));
    resp::set(&mut r, SEC_WEBSOCKET_ACCEPT, resp::hv(accept));
    r
}

async fn echo<S>(mut ws: WebSocketStream<S>, mut shutdown: watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                    if ws.send(m).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) => {
                    // tungstenite queued the close reply; flush it and stop.
                    let _ = ws.flush().await;
                    break;
                }
                // Pings are answered by tungstenite itself.
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "websocket read failed");
                    break;
                }
                None => break,
            },
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    let _ = ws.close(None).await;
                    break;
                }
            }
        }
    }
}

/// `/events`: an SSE clock. `?interval_ms=N` (min 10, default 1000), `?count=N` ends the
/// stream after N events. Events are `data: {"now": <unix ms>, "n": <1-based counter>}`.
pub(crate) fn events(uri: &Uri) -> Response<Body> {
    let interval_ms = resp::query_param(uri, "interval_ms")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1000)
        .clamp(10, 24 * 3600 * 1000);
    let count = resp::query_param(uri, "count").and_then(|v| v.parse::<u64>().ok());
    let mut ticker = tokio::time::interval(Duration::from_millis(interval_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = futures_util::stream::unfold((1u64, ticker), move |(n, mut ticker)| async move {
        if count.is_some_and(|c| n > c) {
            return None;
        }
        ticker.tick().await;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let event = format!("data: {{\"now\": {now}, \"n\": {n}}}\n\n");
        Some((
            Ok::<_, std::io::Error>(Frame::data(Bytes::from(event))),
            (n + 1, ticker),
        ))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed_unsync());
    resp::set(
        &mut r,
        CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    resp::set(&mut r, CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}
