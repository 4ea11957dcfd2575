//! The HTTP/1.1 server. Written for Velox rather than taken from hyper for one reason:
//! an idle keep-alive connection must hold no buffers, only its socket and a small task,
//! so that tens of thousands of idle clients cost a few hundred bytes each.

mod body;
pub mod chunked;
pub mod head;
pub mod write;

use crate::body::Body;
use crate::buffers;
use crate::clock;
use crate::deadline;
use crate::errors::error_response;
use crate::handler::{ConnInfo, ConnSettings, Handler, ServerFields};
use crate::in_place;
use crate::interim;
use crate::transport::{OnUpgrade, Rewind, Transport, Upgraded};
use body::{pump_body, BodyError, ChannelBody};
use bytes::BytesMut;
use head::{Framing, HeadError, RequestHead};
use http::{Method, Request, StatusCode, Version};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, watch};
use tokio::time::{timeout, timeout_at, Instant};
use write::{write_response, Exchange, Written};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Read granularity for request heads; grows up to the configured maximum.
const HEAD_READ_CHUNK: usize = 4096;

/// Serves one client connection until it closes, idles out, upgrades or the server drains.
pub async fn serve<T: Transport, H: Handler>(
    mut io: T,
    handler: Arc<H>,
    conn: ConnInfo,
    settings: Arc<ConnSettings>,
    drain: watch::Receiver<bool>,
) {
    let mut buf = BytesMut::new();
    let mut first = true;
    // One idle timer and one drain waiter for the connection's life, not one per request: the
    // idle deadline moves later after every response, and the timer only when it fires early.
    let mut idle_until = Instant::now() + settings.header_read_timeout;
    let idle = tokio::time::sleep_until(idle_until);
    tokio::pin!(idle);
    let mut drain_signal = drain.clone();
    let drained = drain_signal.wait_for(|draining| *draining);
    tokio::pin!(drained);
    // The drain waiter is polled once, which registers this task with it for the connection's
    // life; later waits check the channel's version instead (polling the waiter takes a lock).
    let mut drain_registered = false;
    loop {
        if buf.is_empty() {
            // Idle: wait for bytes without holding a buffer.
            if !first {
                idle_until = Instant::from_std(clock::coarse_now()) + settings.idle_timeout;
                deadline::set(idle.as_mut(), idle_until);
            }
            // Readiness first. A drain seen late is seen before the next response is written.
            tokio::select! {
                biased;
                ready = io.ready_to_read() => {
                    if ready.is_err() {
                        break;
                    }
                }
                _ = std::future::poll_fn(|cx| deadline::poll(idle.as_mut(), idle_until, cx)) => break,
                _ = std::future::poll_fn(|cx| {
                    if drain_registered {
                        return match drain.has_changed() {
                            Ok(false) => Poll::Pending,
                            _ => Poll::Ready(()),
                        };
                    }
                    let polled = drained.as_mut().poll(cx).map(|_| ());
                    drain_registered = polled.is_pending();
                    polled
                }) => break,
            }
        }
        // The drain signal is sent once, `true`: any change means draining, and checking for one
        // reads a version number where `borrow` would take the value's lock.
        let draining = drain.has_changed().unwrap_or(true);
        // Boxed so the idle connection's task stays small: the request state exists only during a request.
        let next = in_place::boxed(|| {
            serve_one(
                &mut io, &mut buf, first, &*handler, conn, &settings, draining,
            )
        })
        .await;
        first = false;
        match next {
            Next::KeepAlive => {
                if buf.is_empty() {
                    buffers::CLIENT.with(|spares| spares.give(std::mem::take(&mut buf)));
                }
            }
            Next::Close => break,
            Next::Upgrade(slot) => {
                // This task (and the connection guard its caller holds) lives as long as the
                // tunnel: an abandoned upgrade drops the sender at once.
                let (done, tunnel_ended) = oneshot::channel();
                let _ = slot.send(Upgraded {
                    io: Box::new(io),
                    leftover: buf.freeze(),
                    done: Some(done),
                });
                let _ = tunnel_ended.await;
                return;
            }
            Next::H2 => {
                let io = Rewind::new(io, buf.freeze());
                Box::pin(crate::h2::serve(io, handler, conn, &settings, drain)).await;
                return;
            }
        }
    }
    let _ = timeout(std::time::Duration::from_secs(1), io.shutdown()).await;
}

enum Next {
    KeepAlive,
    Close,
    Upgrade(oneshot::Sender<Upgraded>),
    H2,
}

// Lives for one request and moves once; boxing the head would cost an allocation each time.
#[allow(clippy::large_enum_variant)]
enum ReadHead {
    Request(RequestHead),
    H2,
    Closed,
    Refused(HeadError),
    TimedOut,
}

async fn read_head<T: Transport>(
    io: &mut T,
    buf: &mut BytesMut,
    first: bool,
    settings: &ConnSettings,
    started: Instant,
) -> ReadHead {
    let deadline = started + settings.header_read_timeout;
    loop {
        let preface_len = buf.len().min(H2_PREFACE.len());
        if first && !buf.is_empty() && buf[..preface_len] == H2_PREFACE[..preface_len] {
            if buf.len() >= H2_PREFACE.len() {
                return ReadHead::H2;
            }
        } else {
            match head::parse(buf, settings.max_header_bytes) {
                Ok(Some(head)) => return ReadHead::Request(head),
                Ok(None) => {}
                Err(e) => return ReadHead::Refused(e),
            }
        }
        if buf.capacity() - buf.len() < HEAD_READ_CHUNK / 4 {
            let room = HEAD_READ_CHUNK
                .min(settings.max_header_bytes + 1 - buf.len().min(settings.max_header_bytes));
            if buf.capacity() == 0 {
                *buf = buffers::CLIENT.with(|spares| spares.take(room));
            } else {
                buf.reserve(room);
            }
        }
        // The bytes are usually there already (the socket was readable): only a read that has
        // to wait needs the timer, whose creation clones the runtime's handle.
        let mut read = std::pin::pin!(io.read_buf(buf));
        let read = match std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await {
            Poll::Ready(done) => Ok(done),
            Poll::Pending => timeout_at(deadline, read).await,
        };
        match read {
            Err(_) if buf.is_empty() => return ReadHead::Closed,
            Err(_) => return ReadHead::TimedOut,
            Ok(Ok(0)) | Ok(Err(_)) => return ReadHead::Closed,
            Ok(Ok(_)) => {}
        }
    }
}

async fn serve_one<T: Transport, H: Handler>(
    io: &mut T,
    buf: &mut BytesMut,
    first: bool,
    handler: &H,
    mut conn: ConnInfo,
    settings: &ConnSettings,
    draining: bool,
) -> Next {
    // The request's one clock reading: its header deadline and the start of its duration.
    conn.received = std::time::Instant::now();
    // Refusals are boxed: they are rare, and inline each would add a response writer's state
    // to every request's future.
    let head = match read_head(io, buf, first, settings, Instant::from_std(conn.received)).await {
        ReadHead::Request(head) => match refusal_of(&head, settings) {
            None => head,
            Some(refusal) => return Box::pin(refuse(io, refusal)).await,
        },
        ReadHead::H2 => return Next::H2,
        ReadHead::Closed => return Next::Close,
        ReadHead::TimedOut => {
            let timed_out = error_response(
                StatusCode::REQUEST_TIMEOUT,
                "header-timeout",
                "request head not received in time",
            );
            return Box::pin(refuse(io, timed_out)).await;
        }
        ReadHead::Refused(e) => {
            let refused = error_response(e.status(), e.code(), e.reason());
            return Box::pin(refuse(io, refused)).await;
        }
    };
    let keep_alive = head.keep_alive && !draining;
    let method = head.method.clone();
    let version = head.version;
    let framing = head.framing;
    let expect_continue = head.expect_continue;
    let mut upgrade_slot = None;
    let mut request = Request::new(crate::body::empty());
    if head.upgrade && framing == Framing::None {
        let (slot, on_upgrade) = oneshot::channel();
        upgrade_slot = Some(slot);
        request.extensions_mut().insert(OnUpgrade::new(on_upgrade));
    }
    *request.method_mut() = head.method;
    *request.uri_mut() = head.uri;
    *request.version_mut() = head.version;
    *request.headers_mut() = head.headers;
    conn.may_carry_request_id = head.request_id_field;

    if framing == Framing::None {
        let head_written = AtomicBool::new(false);
        let exchange = Exchange::new(&method, version, keep_alive, &head_written);
        // An HTTP/1.0 client must not be sent 1xx responses (RFC 9110 §15.2).
        let mut fields = ServerFields::default();
        let response = if version == Version::HTTP_11 {
            let handling = std::pin::pin!(handler.handle(request, conn, &mut fields));
            interim::relaying(io, handling).await
        } else {
            handler.handle(request, conn, &mut fields).await
        };
        return match write_response(io, response, fields, &exchange).await {
            Ok(Written::Complete { reusable: true }) => Next::KeepAlive,
            Ok(Written::Switched) => upgrade_slot.map_or(Next::Close, Next::Upgrade),
            _ => Next::Close,
        };
    }

    let body = BodyRequest {
        framing,
        keep_alive,
        expect_continue,
    };
    // Boxed: request bodies are the rare case, and their state would double every request's.
    Box::pin(serve_with_body(
        io, buf, request, body, handler, conn, settings,
    ))
    .await
}

/// The answer to a well-formed head that is still refused before reaching the handler.
fn refusal_of(head: &RequestHead, settings: &ConnSettings) -> Option<http::Response<Body>> {
    if head.method == Method::CONNECT {
        return Some(error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "connect-not-supported",
            "CONNECT is not supported",
        ));
    }
    match head.framing {
        Framing::Length(len) if settings.max_body_bytes > 0 && len > settings.max_body_bytes => {
            Some(error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "request body exceeds the limit",
            ))
        }
        _ => None,
    }
}

/// How a request's body arrives and what the client asked of the connection.
struct BodyRequest {
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
}

/// Serves a request with a body: the body is read while the handler runs and the response is
/// written, so uploads stream both ways.
async fn serve_with_body<T: Transport, H: Handler>(
    io: &mut T,
    buf: &mut BytesMut,
    mut request: Request<Body>,
    body: BodyRequest,
    handler: &H,
    conn: ConnInfo,
    settings: &ConnSettings,
) -> Next {
    let BodyRequest {
        framing,
        keep_alive,
        expect_continue,
    } = body;
    let method = request.method().clone();
    let version = request.version();
    let head_written = AtomicBool::new(false);
    let exchange = Exchange::new(&method, version, keep_alive, &head_written);
    if expect_continue
        && io
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .is_err()
    {
        return Next::Close;
    }
    let (sender, body) = ChannelBody::new(framing);
    *request.body_mut() = Body::new(body);
    let (mut reader, mut writer) = tokio::io::split(&mut *io);
    let outcome = {
        let pump = pump_body(&mut reader, buf, framing, sender, settings);
        let respond = async {
            let mut fields = ServerFields::default();
            let response = handler.handle(request, conn, &mut fields).await;
            write_response(&mut writer, response, fields, &exchange).await
        };
        tokio::pin!(pump, respond);
        let mut pumped = None;
        loop {
            tokio::select! {
                result = &mut pump, if pumped.is_none() => match result {
                    Err(e) if e.status().is_some() && !head_written.load(Ordering::Acquire) => break Err(e),
                    result => pumped = Some(result),
                },
                written = &mut respond => break Ok((written, pumped)),
            }
        }
    };
    match outcome {
        Err(e) => {
            let status = e.status().unwrap_or(StatusCode::BAD_REQUEST);
            let response = error_response(status, e.code(), &e.to_string());
            let closing = Exchange {
                keep_alive: false,
                ..exchange
            };
            let _ = write_response(&mut writer, response, ServerFields::default(), &closing).await;
            Next::Close
        }
        Ok((Ok(Written::Complete { reusable: true }), Some(Ok(())))) => Next::KeepAlive,
        Ok(_) => Next::Close,
    }
}

/// Answers a request that never reached the handler, then closes: after a bad head
/// the byte stream can no longer be trusted to delimit the next request.
async fn refuse<T: Transport>(io: &mut T, response: http::Response<Body>) -> Next {
    let head_written = AtomicBool::new(false);
    let refusal = Exchange::new(&Method::GET, Version::HTTP_11, false, &head_written);
    let _ = write_response(io, response, ServerFields::default(), &refusal).await;
    Next::Close
}

impl BodyError {
    fn code(&self) -> &'static str {
        match self {
            BodyError::TooLarge => "body-too-large",
            _ => "malformed-body",
        }
    }
}
