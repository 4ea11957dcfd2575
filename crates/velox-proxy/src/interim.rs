//! Interim (1xx) responses relayed to the client ahead of the final one.
//!
//! RFC 9110 §15.2: a proxy forwards the 1xx responses it did not itself ask for. The one that
//! matters is 103 Early Hints: a browser starts fetching a page's assets while the origin is still
//! working on the page.
//!
//! While an HTTP/1.1 server polls a body-less request's handler ([`relaying`]), its thread is
//! open for interim responses: the upstream client, which runs inside that poll, hands each 1xx
//! head it reads before the final response to the proxy, which adds this hop's `Via` and encodes
//! it into a thread-local buffer ([`relay`]); the server writes the buffer to its client after the
//! poll, and before the final response. Nothing is allocated or passed per request or per
//! connection for this; a request pays two flag writes and a buffer check per poll.
//!
//! Where no server is relaying a 1xx is dropped, as a client that cannot take one needs: HTTP/1.0
//! clients (§15.2), HTTP/2 (hyper's server cannot send 1xx), a request with a body (its connection
//! is busy reading the body), background revalidations. 100 (Continue) is never relayed: Velox
//! answers `Expect: 100-continue` itself.

use http::{HeaderMap, StatusCode};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use tokio::io::{AsyncWrite, AsyncWriteExt};

thread_local! {
    /// Set while a relaying server polls its request's handler on this thread.
    static OPEN: Cell<bool> = const { Cell::new(false) };
    /// Interim heads relayed during that poll, encoded.
    static HEADS: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Passes an interim response the upstream client read to the client whose handler is being
/// polled on this thread, if it can take one.
pub fn relay(status: StatusCode, headers: &HeaderMap) {
    if status == StatusCode::CONTINUE || status == StatusCode::SWITCHING_PROTOCOLS || !OPEN.get() {
        return;
    }
    HEADS.with_borrow_mut(|heads| encode(heads, status, headers));
}

/// Opens this thread for interim responses while alive; closes it even if the poll panics.
struct Open;

impl Open {
    fn new() -> Open {
        OPEN.set(true);
        Open
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        OPEN.set(false);
    }
}

/// Polls `handler` with this thread open, and moves what it relayed to `out`.
fn poll_open<F: Future>(
    handler: Pin<&mut F>,
    cx: &mut std::task::Context<'_>,
    out: &mut Vec<u8>,
) -> Poll<F::Output> {
    let open = Open::new();
    let polled = handler.poll(cx);
    drop(open);
    HEADS.with_borrow_mut(|heads| {
        if !heads.is_empty() {
            out.append(heads);
        }
    });
    polled
}

/// An interim head as HTTP/1.1 (the upstream parser has already dropped its hop-by-hop fields).
fn encode(out: &mut Vec<u8>, status: StatusCode, headers: &HeaderMap) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Runs `handler` (a body-less request's), writing the interim heads it relays to `io` as they
/// come; the last of them are written before this returns. A failed write is left for the final
/// response's write to find. The handler comes pinned where its caller built it: a request's
/// future is kilobytes, and moving it in here would copy it on every request.
pub async fn relaying<F, W>(io: &mut W, mut handler: Pin<&mut F>) -> F::Output
where
    F: Future,
    W: AsyncWrite + Unpin,
{
    let mut out = Vec::new();
    let mut written = 0;
    let mut failed = false;
    let output = std::future::poll_fn(|cx| {
        let polled = poll_open(handler.as_mut(), cx, &mut out);
        while !failed && written < out.len() {
            match Pin::new(&mut *io).poll_write(cx, &out[written..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => failed = true,
                Poll::Ready(Ok(n)) => written += n,
                Poll::Pending => break,
            }
        }
        // A TLS stream holds what it encrypted until flushed.
        if !failed && !out.is_empty() && written == out.len() {
            match Pin::new(&mut *io).poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    out.clear();
                    written = 0;
                }
                Poll::Ready(Err(_)) => failed = true,
                Poll::Pending => {}
            }
        }
        polled
    })
    .await;
    if !failed && !out.is_empty() {
        let _ = io.write_all(&out[written..]).await;
        let _ = io.flush().await;
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn hints() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::LINK,
            HeaderValue::from_static("</site.css>; rel=preload; as=style"),
        );
        h
    }

    #[tokio::test]
    async fn heads_relayed_while_the_handler_waits_and_none_outside_it() {
        let (mut client, mut server) = tokio::io::duplex(4096);
        let task = tokio::spawn(async move {
            // Outside `relaying` (e.g. a request with a body): dropped.
            relay(StatusCode::EARLY_HINTS, &hints());
            relaying(
                &mut server,
                std::pin::pin!(async {
                    relay(StatusCode::EARLY_HINTS, &hints());
                    relay(StatusCode::CONTINUE, &hints());
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    relay(StatusCode::PROCESSING, &HeaderMap::new());
                    "final"
                }),
            )
            .await
        });
        let mut first = vec![0; 4096];
        let n = tokio::io::AsyncReadExt::read(&mut client, &mut first)
            .await
            .unwrap();
        // The first hint arrives while the handler still waits.
        assert!(!task.is_finished());
        assert_eq!(
            String::from_utf8_lossy(&first[..n]),
            "HTTP/1.1 103 Early Hints\r\nlink: </site.css>; rel=preload; as=style\r\n\r\n"
        );
        assert_eq!(task.await.unwrap(), "final");
        let mut rest = vec![0; 4096];
        let n = tokio::io::AsyncReadExt::read(&mut client, &mut rest)
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&rest[..n]),
            "HTTP/1.1 102 Processing\r\n\r\n"
        );
    }

    #[test]
    fn a_panicking_handler_leaves_the_thread_closed() {
        let mut out = Vec::new();
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = poll_open(
                std::pin::pin!(async { panic!("handler bug") }),
                &mut cx,
                &mut out,
            );
        }));
        assert!(panicked.is_err());
        relay(StatusCode::EARLY_HINTS, &hints());
        assert!(
            HEADS.with_borrow(Vec::is_empty),
            "relayed with nobody relaying"
        );
    }

    #[test]
    fn with_nobody_relaying_relay_does_nothing() {
        relay(StatusCode::EARLY_HINTS, &hints());
    }
}
