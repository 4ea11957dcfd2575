//! The upstream side of HTTP/1.1 on the wire, pure: encoding a request head, parsing a
//! response head and deciding how its body is delimited (RFC 9112 §6.3). Field names go through
//! a per-thread memo of a pure function (`field_names`).

use crate::field_names::RESPONSE_NAMES;
use crate::h1::head::parsed_value;
use bytes::BytesMut;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, Method, StatusCode};
use std::mem::MaybeUninit;

const MAX_HEADERS: usize = 128;

/// How the request body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    Empty,
    Length(u64),
    Chunked,
}

/// Serialises a request head; framing fields are decided here, not taken from `headers`.
pub fn encode_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    framing: RequestFraming,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        RequestFraming::Length(len) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(len.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        // RFC 9110 §8.6: a body-less request that usually has one says so.
        RequestFraming::Empty if matches!(*method, Method::POST | Method::PUT | Method::PATCH) => {
            out.extend_from_slice(b"content-length: 0\r\n")
        }
        RequestFraming::Empty => {}
    }
    out.extend_from_slice(b"\r\n");
}

#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    /// End-to-end fields only, except on a 101 (see [`parse_response_head`]).
    pub headers: HeaderMap,
    /// The last `Transfer-Encoding` line (the field itself is hop-by-hop, not in `headers`).
    pub transfer_encoding: Option<bytes::Bytes>,
    /// `Connection: close` (or HTTP/1.0 without keep-alive, or `Keep-Alive: max=0`): do not
    /// reuse the connection.
    pub close: bool,
    pub keep_alive: KeepAlive,
}

/// The origin's `Keep-Alive` field (RFC 2068 §19.7.1.1; hop-by-hop per RFC 9110 §7.6.1).
/// Node.js and Apache announce there how long they keep an idle connection open.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive {
    /// Seconds the origin keeps an idle connection open.
    pub timeout: Option<u64>,
    /// Further requests the origin accepts on this connection (Apache and Node.js count down).
    pub max: Option<u64>,
}

impl KeepAlive {
    /// Adds one field value's parameters. The lower value wins when one is repeated; unknown
    /// or malformed parameters are ignored.
    pub fn add(&mut self, value: &[u8]) {
        let Ok(value) = std::str::from_utf8(value) else {
            return;
        };
        for param in value.split(',') {
            let Some((name, n)) = param.split_once('=') else {
                continue;
            };
            let Ok(n) = n.trim().trim_matches('"').parse::<u64>() else {
                continue;
            };
            let name = name.trim();
            let slot = if name.eq_ignore_ascii_case("timeout") {
                &mut self.timeout
            } else if name.eq_ignore_ascii_case("max") {
                &mut self.max
            } else {
                continue;
            };
            *slot = Some(slot.map_or(n, |old| old.min(n)));
        }
    }
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("the origin's response head is too large")]
    TooLarge,
    #[error("the origin sent a malformed response: {0}")]
    Malformed(&'static str),
}

/// Parses a response head from the front of `buf`, consuming it; `Ok(None)` means read more.
/// Header values are zero-copy slices of the received bytes.
pub fn parse_response_head(
    buf: &mut BytesMut,
    max_bytes: usize,
) -> Result<Option<ResponseHead>, WireError> {
    // Left uninitialised: httparse writes only the fields it finds (filling 128 empty ones
    // cost more than parsing a typical head).
    let mut fields = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut fields,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= max_bytes => return Err(WireError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(WireError::TooLarge),
        Err(_) => return Err(WireError::Malformed("bad response head")),
    };
    let status = response
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(WireError::Malformed("bad status code"))?;
    let http10 = response.version == Some(0);
    let base = buf.as_ptr() as usize;
    let mut spans = Vec::with_capacity(response.headers.len());
    let mut keep_alive = KeepAlive::default();
    let mut connection = ConnectionOptions::default();
    let mut transfer_encoding = None;
    // A 101's Upgrade and Connection are for the tunnel, which the proxy layer sets up.
    let strip = status != StatusCode::SWITCHING_PROTOCOLS;
    RESPONSE_NAMES.with_borrow_mut(|names| {
        for (i, field) in response.headers.iter().enumerate() {
            // Hop-by-hop fields are read here and kept out of the map (RFC 9110 §7.6.1), so
            // forwarding has nothing to strip: most origins send `Connection: keep-alive`.
            let hop = hop_by_hop(field.name);
            match hop {
                Some(HopField::KeepAlive) => keep_alive.add(field.value),
                Some(HopField::Connection) => connection.add(field.value),
                Some(HopField::TransferEncoding) => transfer_encoding = Some(field.value),
                Some(HopField::Other) | None => {}
            }
            if strip && hop.is_some() {
                continue;
            }
            let name = names
                .name(i, field.name.as_bytes())
                .map_err(|_| WireError::Malformed("bad header name"))?;
            let start = field.value.as_ptr() as usize - base;
            spans.push((name, start, start + field.value.len()));
        }
        Ok(())
    })?;
    // The last line carries the final coding (RFC 9112 §6.3); kept for framing.
    let transfer_encoding = transfer_encoding.map(|v| {
        let start = v.as_ptr() as usize - base;
        (start, start + v.len())
    });
    let head = buf.split_to(len).freeze();
    // Room for the fields Velox adds (Via, Cache-Status, Age, request id) without a regrow.
    let mut headers = HeaderMap::with_capacity(spans.len() + 6);
    for (name, start, end) in spans {
        headers.append(name, parsed_value(head.slice(start..end)));
    }
    if strip {
        for name in &connection.named {
            headers.remove(name);
        }
    }
    let close = connection.close || (http10 && !connection.keep_alive) || keep_alive.max == Some(0);
    Ok(Some(ResponseHead {
        status,
        headers,
        transfer_encoding: transfer_encoding.map(|(start, end)| head.slice(start..end)),
        close,
        keep_alive,
    }))
}

/// The fields that are hop-by-hop by definition (RFC 9110 §7.6.1), and which of them the
/// upstream client reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HopField {
    Connection,
    KeepAlive,
    TransferEncoding,
    Other,
}

fn hop_by_hop(name: &str) -> Option<HopField> {
    const FIELDS: [(&str, HopField); 7] = [
        ("connection", HopField::Connection),
        ("keep-alive", HopField::KeepAlive),
        ("transfer-encoding", HopField::TransferEncoding),
        ("proxy-connection", HopField::Other),
        ("te", HopField::Other),
        ("trailer", HopField::Other),
        ("upgrade", HopField::Other),
    ];
    // Lengths first: a field that is none of these costs a few integer compares.
    FIELDS
        .iter()
        .find(|(f, _)| f.len() == name.len() && f.eq_ignore_ascii_case(name))
        .map(|&(_, kind)| kind)
}

/// The options of `Connection` lines: `close`, `keep-alive`, and the names of further
/// hop-by-hop fields the sender listed.
#[derive(Debug, Default)]
struct ConnectionOptions {
    close: bool,
    keep_alive: bool,
    named: Vec<HeaderName>,
}

impl ConnectionOptions {
    fn add(&mut self, value: &[u8]) {
        for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if let Ok(name) = HeaderName::from_bytes(token) {
                self.named.push(name);
            }
        }
    }
}

/// RFC 9112 §6.3, for a response to `method`.
pub fn response_framing(
    method: &Method,
    head: &ResponseHead,
) -> Result<ResponseFraming, WireError> {
    let status = head.status;
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(ResponseFraming::Empty);
    }
    if let Some(te) = &head.transfer_encoding {
        let last = std::str::from_utf8(te)
            .unwrap_or("")
            .rsplit(',')
            .next()
            .unwrap_or("")
            .trim();
        return Ok(if last.eq_ignore_ascii_case("chunked") {
            ResponseFraming::Chunked
        } else {
            ResponseFraming::UntilClose
        });
    }
    let mut length = None;
    for value in head.headers.get_all(CONTENT_LENGTH) {
        for part in value.to_str().unwrap_or("x").split(',') {
            let n: u64 = part
                .trim()
                .parse()
                .map_err(|_| WireError::Malformed("bad Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(WireError::Malformed("conflicting Content-Length"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => ResponseFraming::Empty,
        Some(n) => ResponseFraming::Length(n),
        None => ResponseFraming::UntilClose,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn parse(raw: &str) -> Result<Option<ResponseHead>, WireError> {
        parse_response_head(&mut BytesMut::from(raw), 65536)
    }

    #[test]
    fn request_head_owns_framing() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("a"));
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("99"));
        let mut out = Vec::new();
        encode_request_head(
            &mut out,
            &Method::POST,
            "/x?y",
            &headers,
            RequestFraming::Length(3),
        );
        assert_eq!(
            out,
            b"POST /x?y HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\n"
        );
        out.clear();
        encode_request_head(
            &mut out,
            &Method::POST,
            "/",
            &HeaderMap::new(),
            RequestFraming::Empty,
        );
        assert_eq!(out, b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
        out.clear();
        encode_request_head(
            &mut out,
            &Method::GET,
            "/",
            &HeaderMap::new(),
            RequestFraming::Empty,
        );
        assert_eq!(out, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn parses_head_and_leaves_body() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX: y\r\n\r\nhi");
        let head = parse_response_head(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.headers["x"], "y");
        assert!(!head.close);
        assert_eq!(&buf[..], b"hi");
        assert_eq!(
            response_framing(&Method::GET, &head),
            Ok(ResponseFraming::Length(2))
        );
        assert_eq!(
            response_framing(&Method::HEAD, &head),
            Ok(ResponseFraming::Empty)
        );
    }

    #[test]
    fn framing_rules_rfc9112_6_3() {
        let chunked =
            parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(
            response_framing(&Method::GET, &chunked),
            Ok(ResponseFraming::Chunked)
        );
        let close = parse("HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert!(close.close);
        assert_eq!(
            response_framing(&Method::GET, &close),
            Ok(ResponseFraming::UntilClose)
        );
        let not_modified = parse("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            response_framing(&Method::GET, &not_modified),
            Ok(ResponseFraming::Empty)
        );
        let conflicting =
            parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(response_framing(&Method::GET, &conflicting).is_err());
    }

    #[test]
    fn keep_alive_parameters() {
        let parsed = |value: &str| {
            let mut keep_alive = KeepAlive::default();
            keep_alive.add(value.as_bytes());
            keep_alive
        };
        assert_eq!(parsed("timeout=5").timeout, Some(5));
        assert_eq!(
            parsed("Timeout = 5 , MAX=\"100\""),
            KeepAlive {
                timeout: Some(5),
                max: Some(100)
            }
        );
        assert_eq!(parsed("timeout=5, timeout=2").timeout, Some(2));
        assert_eq!(
            parsed("timeout=-1, max=x, timeout, foo=3"),
            KeepAlive::default()
        );
        assert_eq!(parsed("timeout=1.5").timeout, None);
        assert_eq!(parsed("").timeout, None);
    }

    #[test]
    fn hop_by_hop_fields_stay_out_of_the_map_rfc9110_7_6_1() {
        let head = parse(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\
             TE: trailers\r\nTrailer: x-t\r\nUpgrade: h2c\r\nProxy-Connection: close\r\n\
             Transfer-Encoding: gzip\r\ntransfer-encoding: chunked\r\nX-End: 2\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        let names: Vec<_> = head.headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["x-end"]);
        assert!(!head.close);
        assert_eq!(head.transfer_encoding.as_deref(), Some(&b"chunked"[..]));
        assert_eq!(
            response_framing(&Method::GET, &head),
            Ok(ResponseFraming::Chunked)
        );
        let closing = parse("HTTP/1.1 200 OK\r\nconnection: Close\r\ncontent-length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(closing.close);
        let http10 = parse("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!http10.close);
        // A 101 keeps Upgrade and Connection for the tunnel.
        let switching = parse(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(switching.headers["upgrade"], "websocket");
        assert_eq!(switching.headers["connection"], "upgrade");
    }

    #[test]
    fn keep_alive_in_the_response_head() {
        let head = parse(
            "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5, max=100\r\nKEEP-ALIVE: timeout=3\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.keep_alive.timeout, Some(3));
        assert_eq!(head.keep_alive.max, Some(100));
        assert!(!head.close);
        // Read, then left out of the map: it is hop-by-hop.
        assert!(!head.headers.contains_key("keep-alive"));
        let exhausted = parse("HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5, max=0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(exhausted.close);
        let absent = parse("HTTP/1.1 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!(absent.keep_alive, KeepAlive::default());
    }

    #[test]
    fn partial_and_oversized_heads() {
        assert!(parse("HTTP/1.1 200 OK\r\nX:").unwrap().is_none());
        let big = format!("HTTP/1.1 200 OK\r\nX: {}\r\n", "a".repeat(100));
        assert_eq!(
            parse_response_head(&mut BytesMut::from(big.as_str()), 64).unwrap_err(),
            WireError::TooLarge
        );
        assert!(parse("NOT HTTP\r\n\r\n").is_err());
        // Field values are taken as httparse checked them: control bytes never get through.
        for bad in ["\u{0}", "\u{1}", "\u{7f}"] {
            assert!(parse(&format!("HTTP/1.1 200 OK\r\nX: a{bad}b\r\n\r\n")).is_err());
        }
    }
}
