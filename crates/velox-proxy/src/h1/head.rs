//! Parsing a request head and deciding its framing (RFC 9112 §2-§6). Pure: bytes in, decision out
//! (field names go through a per-thread memo of a pure function, `field_names`).

use crate::field_names::REQUEST_NAMES;
use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};
use std::mem::MaybeUninit;
use velox_observe::X_REQUEST_ID;

/// Fields the request path adds to a request (request id, X-Forwarded-For/Proto/Host, Via).
const FIELDS_ADDED_DOWNSTREAM: usize = 6;

/// More fields than this and the head is refused with 431, whatever its size.
const MAX_HEADERS: usize = 128;

#[derive(Debug)]
pub struct RequestHead {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// The client asked to keep the connection open after this exchange.
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// `Connection: upgrade` with an `Upgrade` field: a candidate for tunnelling.
    pub upgrade: bool,
    /// An `X-Request-Id` field came (noted while parsing: looked up only then).
    pub request_id_field: bool,
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    TooLarge,
    Malformed(&'static str),
    NotImplemented(&'static str),
}

impl HeadError {
    pub fn status(&self) -> StatusCode {
        match self {
            HeadError::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HeadError::Malformed(_) => StatusCode::BAD_REQUEST,
            HeadError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
        }
    }

    /// The stable `X-Velox-Error` value.
    pub fn code(&self) -> &'static str {
        match self {
            HeadError::TooLarge => "request-header-too-large",
            HeadError::Malformed(_) => "malformed-request",
            HeadError::NotImplemented(_) => "not-implemented",
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            HeadError::TooLarge => "request header section too large",
            HeadError::Malformed(why) | HeadError::NotImplemented(why) => why,
        }
    }
}

/// Parses one request head from the start of `buf` and consumes it.
/// `Ok(None)`: incomplete, read more. Field values and the target are zero-copy slices of `buf`.
pub fn parse(buf: &mut BytesMut, max_bytes: usize) -> Result<Option<RequestHead>, HeadError> {
    let mut seen = Seen::default();
    let (len, method, version, target, spans) = {
        // Left uninitialised: httparse writes only the fields it finds.
        let mut fields = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let len = match req.parse_with_uninit_headers(buf, &mut fields) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= max_bytes => {
                return Err(HeadError::TooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            Err(httparse::Error::Version) => {
                return Err(HeadError::Malformed("unsupported HTTP version"))
            }
            Err(_) => return Err(HeadError::Malformed("malformed request head")),
        };
        if len > max_bytes {
            return Err(HeadError::TooLarge);
        }
        let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
            .map_err(|_| HeadError::Malformed("invalid method"))?;
        let version = match req.version {
            Some(1) => Version::HTTP_11,
            _ => Version::HTTP_10,
        };
        let base = buf.as_ptr() as usize;
        let span = |part: &[u8]| {
            let start = part.as_ptr() as usize - base;
            start..start + part.len()
        };
        let path = req.path.unwrap_or_default();
        check_target(&method, path)?;
        let origin_form = path.starts_with('/') || path == "*";
        let target = (span(path.as_bytes()), origin_form);
        let mut spans = Vec::with_capacity(req.headers.len());
        REQUEST_NAMES.with_borrow_mut(|names| {
            for (i, field) in req.headers.iter().enumerate() {
                let name = names
                    .name(i, field.name.as_bytes())
                    .map_err(|_| HeadError::Malformed("invalid header field name"))?;
                seen.note(&name);
                seen.note_raw(field.name);
                spans.push((name, span(field.value)));
            }
            Ok(())
        })?;
        (len, method, version, target, spans)
    };
    let head = buf.split_to(len).freeze();
    let (target, origin_form) = target;
    let uri = Uri::from_maybe_shared(head.slice(target))
        .map_err(|_| HeadError::Malformed("invalid request target"))?;
    if !origin_form && !absolute_or_authority_form(&method, &uri) {
        return Err(HeadError::Malformed("invalid request target"));
    }
    // Room for the fields later stages add (request id, X-Forwarded-*, Via) without a regrow.
    let mut headers = HeaderMap::with_capacity(spans.len() + FIELDS_ADDED_DOWNSTREAM);
    for (name, range) in spans {
        headers.append(name, parsed_value(head.slice(range)));
    }

    // Fields a request rarely carries are looked up only when the parse saw them.
    let framing = if seen.framing {
        framing(&headers, version)?
    } else {
        Framing::None
    };
    check_host(&headers, version)?;
    let connection = if seen.connection {
        ConnectionTokens::of(&headers)
    } else {
        ConnectionTokens::default()
    };
    let keep_alive = match version {
        Version::HTTP_11 => !connection.close,
        _ => connection.keep_alive && !connection.close,
    };
    let upgrade =
        version == Version::HTTP_11 && connection.upgrade && headers.contains_key(UPGRADE);
    let expect_continue = version == Version::HTTP_11
        && seen.expect
        && headers
            .get(EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    Ok(Some(RequestHead {
        method,
        uri,
        version,
        headers,
        framing,
        keep_alive,
        expect_continue,
        upgrade,
        request_id_field: seen.request_id,
    }))
}

/// Which of the fields that steer the server a head carries, noted while it is parsed.
#[derive(Default)]
struct Seen {
    /// Content-Length or Transfer-Encoding.
    framing: bool,
    connection: bool,
    expect: bool,
    request_id: bool,
}

impl Seen {
    fn note(&mut self, name: &HeaderName) {
        self.framing |= name == CONTENT_LENGTH || name == TRANSFER_ENCODING;
        self.connection |= name == CONNECTION;
        self.expect |= name == EXPECT;
    }

    /// Looks at the raw name: its length rules out almost every field in one comparison.
    fn note_raw(&mut self, raw: &str) {
        self.request_id |= raw.len() == 12 && raw.eq_ignore_ascii_case(X_REQUEST_ID.as_str());
    }
}

/// RFC 3986 allows only visible ASCII in a target; anything else must arrive percent-encoded.
/// `*` is for OPTIONS only.
fn check_target(method: &Method, target: &str) -> Result<(), HeadError> {
    let bad = HeadError::Malformed("invalid request target");
    if !target.bytes().all(|b| b.is_ascii_graphic()) || (target == "*" && method != Method::OPTIONS)
    {
        return Err(bad);
    }
    Ok(())
}

/// The request target forms of RFC 9112 §3.2 other than origin form and `*`;
/// CONNECT's authority form is refused later, by the server.
fn absolute_or_authority_form(method: &Method, uri: &Uri) -> bool {
    let absolute_form = uri.scheme().is_some() && uri.authority().is_some();
    let authority_form = *method == Method::CONNECT && uri.authority().is_some();
    absolute_form || authority_form
}

/// RFC 9112 §6.1-§6.3, strictly: anything ambiguous is refused, because an ambiguity
/// between two parsers is exactly what request smuggling exploits.
fn framing(headers: &HeaderMap, version: Version) -> Result<Framing, HeadError> {
    let mut codings = headers.get_all(TRANSFER_ENCODING).iter().peekable();
    if codings.peek().is_some() {
        if headers.contains_key(CONTENT_LENGTH) {
            return Err(HeadError::Malformed(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if version != Version::HTTP_11 {
            return Err(HeadError::Malformed("Transfer-Encoding in HTTP/1.0"));
        }
        let mut list = Vec::new();
        for value in codings {
            let text = value
                .to_str()
                .map_err(|_| HeadError::Malformed("invalid Transfer-Encoding"))?;
            list.extend(text.split(',').map(|c| c.trim().to_ascii_lowercase()));
        }
        return match list.as_slice() {
            [only] if only == "chunked" => Ok(Framing::Chunked),
            [.., last] if last == "chunked" => {
                Err(HeadError::NotImplemented("transfer coding not supported"))
            }
            _ => Err(HeadError::Malformed(
                "Transfer-Encoding must end in chunked",
            )),
        };
    }
    let mut length: Option<u64> = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        let text = value
            .to_str()
            .map_err(|_| HeadError::Malformed("invalid Content-Length"))?;
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() || part.len() > 19 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HeadError::Malformed("invalid Content-Length"));
            }
            let n: u64 = part
                .parse()
                .map_err(|_| HeadError::Malformed("invalid Content-Length"))?;
            if length.is_some_and(|seen| seen != n) {
                return Err(HeadError::Malformed("conflicting Content-Length values"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        None | Some(0) => Framing::None,
        Some(n) => Framing::Length(n),
    })
}

/// RFC 9112 §3.2: an HTTP/1.1 request carries exactly one valid Host.
fn check_host(headers: &HeaderMap, version: Version) -> Result<(), HeadError> {
    let mut hosts = headers.get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if version == Version::HTTP_11 => Err(HeadError::Malformed("missing Host")),
        (None, _) => Ok(()),
        (Some(_), Some(_)) => Err(HeadError::Malformed("more than one Host")),
        (Some(host), None) if host.is_empty() || plain_host(host.as_bytes()) => Ok(()),
        (Some(host), None) => http::uri::Authority::try_from(host.as_bytes())
            .map(|_| ())
            .map_err(|_| HeadError::Malformed("invalid Host")),
    }
}

/// A field value httparse accepted, as a `HeaderValue` without checking its bytes again.
pub(crate) fn parsed_value(value: Bytes) -> HeaderValue {
    // SAFETY: httparse accepts exactly HTAB, SP-0x7e and 0x80-0xff in a field value (obs-fold
    // is off), which is what `HeaderValue` allows; re-checking every byte cost about 3
    // instructions a byte. (Debug builds check anyway.)
    unsafe { HeaderValue::from_maybe_shared_unchecked(value) }
}

/// A Host value made of name characters with at most a numeric port: what nearly every request
/// sends, accepted without building an `Authority` (which copies the value to parse it).
fn plain_host(host: &[u8]) -> bool {
    let (name, port) = match host.iter().rposition(|&b| b == b':') {
        Some(colon) => (&host[..colon], &host[colon + 1..]),
        None => (host, &b"0"[..]),
    };
    !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && (1..=5).contains(&port.len())
        && port.iter().all(u8::is_ascii_digit)
}

/// The tokens of the Connection field that matter to the server itself.
#[derive(Default)]
struct ConnectionTokens {
    close: bool,
    keep_alive: bool,
    upgrade: bool,
}

impl ConnectionTokens {
    fn of(headers: &HeaderMap) -> Self {
        let mut tokens = ConnectionTokens::default();
        for value in headers.get_all(CONNECTION) {
            for token in value.to_str().unwrap_or("").split(',') {
                let token = token.trim();
                tokens.close |= token.eq_ignore_ascii_case("close");
                tokens.keep_alive |= token.eq_ignore_ascii_case("keep-alive");
                tokens.upgrade |= token.eq_ignore_ascii_case("upgrade");
            }
        }
        tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> RequestHead {
        parse(&mut BytesMut::from(raw), 65536)
            .expect("valid")
            .expect("complete")
    }

    fn err(raw: &str) -> HeadError {
        parse(&mut BytesMut::from(raw), 65536).expect_err("must be refused")
    }

    #[test]
    fn simple_get_keeps_alive_by_default_in_http11() {
        let head = ok("GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(head.method, Method::GET);
        assert_eq!(head.uri, "/a?b=1");
        assert!(head.keep_alive);
        assert_eq!(head.framing, Framing::None);
    }

    #[test]
    fn http10_closes_unless_keep_alive_asked() {
        assert!(!ok("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(ok("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
        assert!(!ok("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").keep_alive);
    }

    #[test]
    fn partial_head_asks_for_more() {
        assert!(parse(&mut BytesMut::from("GET / HTTP/1.1\r\nHost:"), 1024)
            .unwrap()
            .is_none());
    }

    #[test]
    fn oversized_head_is_431() {
        let raw = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n",
            "a".repeat(2000)
        );
        assert_eq!(
            parse(&mut BytesMut::from(raw.as_str()), 1024).unwrap_err(),
            HeadError::TooLarge
        );
        let many: String = (0..200).map(|i| format!("X-{i}: 1\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
        assert_eq!(
            err(&raw).status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }

    #[test]
    fn smuggling_shapes_are_refused_rfc9112_6_1() {
        let both =
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(err(both).status(), StatusCode::BAD_REQUEST);
        let conflicting =
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
        assert_eq!(err(conflicting).status(), StatusCode::BAD_REQUEST);
        let not_last = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n";
        assert_eq!(err(not_last).status(), StatusCode::BAD_REQUEST);
        let signed = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n";
        assert_eq!(err(signed).status(), StatusCode::BAD_REQUEST);
        let te10 = "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(err(te10).status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn repeated_equal_content_length_is_accepted() {
        let head = ok("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n");
        assert_eq!(head.framing, Framing::Length(5));
    }

    #[test]
    fn chunked_and_other_codings() {
        let head = ok("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(head.framing, Framing::Chunked);
        let gz = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert_eq!(err(gz).status(), StatusCode::NOT_IMPLEMENTED);
    }

    #[test]
    fn host_rules_rfc9112_3_2() {
        assert_eq!(
            err("GET / HTTP/1.1\r\n\r\n").status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            err("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            err("GET / HTTP/1.1\r\nHost: a b\r\n\r\n").status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn field_values_keep_obs_text_and_refuse_control_bytes() {
        let raw = &b"GET / HTTP/1.1\r\nHost: x\r\nX-A: caf\xe9\tok\r\n\r\n"[..];
        let head = parse(&mut BytesMut::from(raw), 65536).unwrap().unwrap();
        assert_eq!(head.headers["x-a"].as_bytes(), b"caf\xe9\tok");
        for bad in [0x00u8, 0x01, 0x7f] {
            let mut raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a".to_vec();
            raw.extend_from_slice(&[bad, b'b', b'\r', b'\n', b'\r', b'\n']);
            let refused = parse(&mut BytesMut::from(&raw[..]), 65536).expect_err("refused");
            assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{bad:#x}");
        }
    }

    #[test]
    fn the_plain_host_shortcut_accepts_only_what_authority_parsing_accepts() {
        let plain = ["example.com", "a", "127.0.0.1:8080", "x-y.z:1", "h:65535"];
        let other = [
            "a b", "h:", ":80", "h:123456", "h:8a", "[::1]:80", "u@h", "h/p", "h:1:2", "é.com",
        ];
        for host in plain {
            assert!(plain_host(host.as_bytes()), "{host}");
            assert!(http::uri::Authority::try_from(host).is_ok(), "{host}");
        }
        for host in other {
            assert!(!plain_host(host.as_bytes()), "{host}");
        }
        // Those that are not plain still get the full check.
        for raw in ["h:1:2", "u@", "h/p", "[::1"] {
            let req = format!("GET / HTTP/1.1\r\nHost: {raw}\r\n\r\n");
            assert_eq!(err(&req).status(), StatusCode::BAD_REQUEST, "{raw}");
        }
        ok("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
    }

    #[test]
    fn malformed_request_lines_are_400() {
        for raw in [
            "GARBAGE\r\n\r\n",
            "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /\u{e9} HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET relative HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET * HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/3.0\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n",
        ] {
            assert_eq!(err(raw).status(), StatusCode::BAD_REQUEST, "{raw:?}");
        }
    }

    #[test]
    fn upgrade_and_expect() {
        let head = ok("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n");
        assert!(head.upgrade);
        let head =
            ok("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
        assert!(head.expect_continue);
        assert_eq!(head.framing, Framing::Length(3));
    }

    #[test]
    fn a_request_id_field_is_noted_in_any_spelling() {
        for (fields, noted) in [
            ("", false),
            ("X-Request-ID: a\r\n", true),
            ("x-request-id: a\r\n", true),
            ("Accept: */*\r\nX-REQUEST-ID: a\r\n", true),
            ("X-Request-Ix: a\r\nContent-Type: text/plain\r\n", false),
        ] {
            let head = ok(&format!("GET / HTTP/1.1\r\nHost: x\r\n{fields}\r\n"));
            assert_eq!(head.request_id_field, noted, "{fields:?}");
            assert_eq!(head.headers.contains_key("x-request-id"), noted);
        }
    }

    #[test]
    fn head_is_consumed_and_the_rest_left_for_pipelining() {
        let mut buf = BytesMut::from("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b");
        let head = parse(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(head.uri, "/a");
        assert_eq!(&buf[..], b"GET /b");
    }

    #[test]
    fn absolute_form_target_is_accepted() {
        let head = ok("GET http://example.com/x HTTP/1.1\r\nHost: other\r\n\r\n");
        assert_eq!(head.uri.host(), Some("example.com"));
    }
}
