//! Writing a response: its framing decision (pure), head encoding (pure) and the body pump.

use crate::body::Body;
use crate::handler::ServerFields;
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{HeaderMap, Method, StatusCode, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use velox_observe::request_id::{self, GeneratedId};

/// How the response body is delimited on the wire (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body follows (HEAD, 1xx, 204, 304); any Content-Length field is kept as sent.
    NoBody,
    Length(u64),
    Chunked,
    /// HTTP/1.0 client and unknown length: the body ends when the connection closes.
    UntilClose,
}

pub fn framing(
    method: &Method,
    status: StatusCode,
    exact_len: Option<u64>,
    client: Version,
) -> BodyFraming {
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        BodyFraming::NoBody
    } else if let Some(len) = exact_len {
        BodyFraming::Length(len)
    } else if client == Version::HTTP_11 {
        BodyFraming::Chunked
    } else {
        BodyFraming::UntilClose
    }
}

/// Serialises a status line and header section into `out`, with `request_id` as `X-Request-Id`
/// (`headers` has none then: see `ServerFields`).
pub fn encode_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    request_id: Option<GeneratedId>,
    framing: BodyFraming,
    client: Version,
    keep_alive: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    // Noted on the way past rather than looked up: origins nearly always send Date.
    let mut has_date = false;
    for (name, value) in headers {
        has_date |= name == DATE;
        // Framing and connection management belong to this hop, decided here.
        let ours = name == TRANSFER_ENCODING
            || (name == CONTENT_LENGTH && framing != BodyFraming::NoBody)
            || (name == CONNECTION && !switching);
        if ours || (status == StatusCode::NO_CONTENT && name == CONTENT_LENGTH) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(id) = request_id {
        out.extend_from_slice(b"x-request-id: ");
        let start = out.len();
        out.resize(start + request_id::MAX_LEN, 0);
        let len = id.write(&mut out[start..]);
        out.truncate(start + len);
        out.extend_from_slice(b"\r\n");
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        with_http_date(|date| out.extend_from_slice(date));
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        BodyFraming::Length(len) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        BodyFraming::NoBody | BodyFraming::UntilClose => {}
    }
    if !switching {
        if !keep_alive || framing == BodyFraming::UntilClose {
            out.extend_from_slice(b"connection: close\r\n");
        } else if client == Version::HTTP_10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// The current IMF-fixdate, formatted at most once a second per thread.
fn with_http_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    CACHED.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs || cached.1.is_empty() {
            *cached = (secs, httpdate::fmt_http_date(now));
        }
        f(cached.1.as_bytes())
    })
}

/// What happened to a response on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Complete; the connection may carry another request if both sides agree.
    Complete { reusable: bool },
    /// A 101 head was written: the connection now belongs to the upgrade.
    Switched,
}

/// The request a response answers, as writing it needs to know.
#[derive(Clone, Copy)]
pub struct Exchange<'a> {
    pub method: &'a Method,
    /// The client's HTTP version.
    pub client: Version,
    pub keep_alive: bool,
    /// Set once any of the response has been written.
    pub head_written: &'a std::sync::atomic::AtomicBool,
}

impl<'a> Exchange<'a> {
    pub fn new(
        method: &'a Method,
        client: Version,
        keep_alive: bool,
        head_written: &'a std::sync::atomic::AtomicBool,
    ) -> Self {
        Exchange {
            method,
            client,
            keep_alive,
            head_written,
        }
    }
}

/// Writes `response` (with `fields`) in `exchange`. A body error aborts with `Err`, so the
/// client sees a truncated message and the connection closes, never a hang.
pub async fn write_response<W: AsyncWrite + Unpin>(
    w: &mut W,
    response: http::Response<Body>,
    fields: ServerFields,
    exchange: &Exchange<'_>,
) -> io::Result<Written> {
    let Exchange {
        method,
        client,
        keep_alive,
        head_written,
    } = *exchange;
    let (parts, mut body) = response.into_parts();
    let exact = body.size_hint().exact();
    let framing = framing(method, parts.status, exact, client);
    let mut head = Vec::with_capacity(256 + parts.headers.len() * 48);
    encode_head(
        &mut head,
        parts.status,
        &parts.headers,
        fields.request_id,
        framing,
        client,
        keep_alive,
    );
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        w.write_all(&head).await?;
        w.flush().await?;
        head_written.store(true, std::sync::atomic::Ordering::Release);
        return Ok(Written::Switched);
    }
    let mut pending = Some(head);
    let mut sent: u64 = 0;
    if framing != BodyFraming::NoBody {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(io::Error::other)?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            sent += data.len() as u64;
            let prefix = pending.take().unwrap_or_default();
            head_written.store(true, std::sync::atomic::Ordering::Release);
            if framing == BodyFraming::Chunked {
                let size_line = format!("{:x}\r\n", data.len());
                let mut parts = [
                    IoSlice::new(&prefix),
                    IoSlice::new(size_line.as_bytes()),
                    IoSlice::new(&data),
                    IoSlice::new(b"\r\n"),
                ];
                write_all_vectored(w, &mut parts).await?;
            } else {
                write_all_vectored(w, &mut [IoSlice::new(&prefix), IoSlice::new(&data)]).await?;
            }
            w.flush().await?;
        }
    }
    let mut tail = pending.take().unwrap_or_default();
    if framing == BodyFraming::Chunked {
        tail.extend_from_slice(b"0\r\n\r\n");
    }
    if let BodyFraming::Length(expected) = framing {
        if sent != expected {
            return Err(io::Error::other("response body shorter than its length"));
        }
    }
    if !tail.is_empty() {
        head_written.store(true, std::sync::atomic::Ordering::Release);
        w.write_all(&tail).await?;
        w.flush().await?;
    }
    Ok(Written::Complete {
        reusable: keep_alive && framing != BodyFraming::UntilClose,
    })
}

pub(crate) async fn write_all_vectored<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut parts: &mut [IoSlice<'_>],
) -> io::Result<()> {
    IoSlice::advance_slices(&mut parts, 0);
    while !parts.is_empty() {
        let n = w.write_vectored(parts).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut parts, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(
        status: StatusCode,
        headers: &HeaderMap,
        framing: BodyFraming,
        v: Version,
        ka: bool,
    ) -> String {
        let mut out = Vec::new();
        encode_head(&mut out, status, headers, None, framing, v, ka);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn framing_rules_rfc9112_6_3() {
        let v11 = Version::HTTP_11;
        assert_eq!(
            framing(&Method::HEAD, StatusCode::OK, Some(5), v11),
            BodyFraming::NoBody
        );
        assert_eq!(
            framing(&Method::GET, StatusCode::NOT_MODIFIED, None, v11),
            BodyFraming::NoBody
        );
        assert_eq!(
            framing(&Method::GET, StatusCode::NO_CONTENT, None, v11),
            BodyFraming::NoBody
        );
        assert_eq!(
            framing(&Method::GET, StatusCode::OK, Some(5), v11),
            BodyFraming::Length(5)
        );
        assert_eq!(
            framing(&Method::GET, StatusCode::OK, None, v11),
            BodyFraming::Chunked
        );
        assert_eq!(
            framing(&Method::GET, StatusCode::OK, None, Version::HTTP_10),
            BodyFraming::UntilClose
        );
    }

    #[test]
    fn head_replaces_framing_fields_and_adds_date() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, "999".parse().unwrap());
        headers.insert(CONNECTION, "keep-alive".parse().unwrap());
        headers.insert("x-a", "1".parse().unwrap());
        let text = head(
            StatusCode::OK,
            &headers,
            BodyFraming::Length(3),
            Version::HTTP_11,
            true,
        );
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("content-length: 3\r\n"));
        assert!(!text.contains("999"));
        assert!(!text.contains("connection"));
        assert!(text.contains("x-a: 1\r\n"));
        assert!(text.contains("date: "));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn a_generated_request_id_is_written_into_the_head() {
        let mut headers = HeaderMap::new();
        headers.insert("x-a", "1".parse().unwrap());
        let id = GeneratedId::from_counter(0x2a);
        let mut out = Vec::new();
        let framing = BodyFraming::Length(0);
        encode_head(
            &mut out,
            StatusCode::OK,
            &headers,
            Some(id),
            framing,
            Version::HTTP_11,
            true,
        );
        let text = String::from_utf8(out).unwrap();
        let expected = format!("x-request-id: {}\r\n", id.header_value().to_str().unwrap());
        assert!(text.contains(&expected), "{text}");
        assert!(
            text.contains("x-a: 1\r\n") && text.ends_with("\r\n\r\n"),
            "{text}"
        );
        let without = head(StatusCode::OK, &headers, framing, Version::HTTP_11, true);
        assert!(!without.contains("x-request-id"), "{without}");
    }

    #[test]
    fn head_response_keeps_origin_content_length() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, "999".parse().unwrap());
        let text = head(
            StatusCode::OK,
            &headers,
            BodyFraming::NoBody,
            Version::HTTP_11,
            true,
        );
        assert!(text.contains("content-length: 999\r\n"));
    }

    #[test]
    fn connection_tokens_follow_keep_alive() {
        let none = HeaderMap::new();
        let close = head(
            StatusCode::OK,
            &none,
            BodyFraming::Length(0),
            Version::HTTP_11,
            false,
        );
        assert!(close.contains("connection: close\r\n"));
        let ka10 = head(
            StatusCode::OK,
            &none,
            BodyFraming::Length(0),
            Version::HTTP_10,
            true,
        );
        assert!(ka10.contains("connection: keep-alive\r\n"));
        let until_close = head(
            StatusCode::OK,
            &none,
            BodyFraming::UntilClose,
            Version::HTTP_10,
            true,
        );
        assert!(until_close.contains("connection: close\r\n"));
    }
}
