//! Small response helpers shared by every handler: body type, builders, header
//! values, query parsing, ETags and dates.

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// The body type of every response.
pub(crate) type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A body made of one in-memory buffer.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// An empty body.
pub(crate) fn empty() -> Body {
    Empty::new()
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// A header value from a string we built ourselves (falls back to empty if invalid).
pub(crate) fn hv(value: impl Into<String>) -> HeaderValue {
    HeaderValue::try_from(value.into()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A response with `status`, a `Content-Type` and an in-memory body (Content-Length set).
pub(crate) fn bytes_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let body = body.into();
    let len = body.len() as u64;
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// A `text/plain` response.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    bytes_response(status, "text/plain; charset=utf-8", body)
}

/// An `application/json` response.
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut body = value.to_string();
    body.push('\n');
    bytes_response(status, "application/json", body)
}

/// Set (replace) one header.
pub(crate) fn set(resp: &mut Response<Body>, name: HeaderName, value: HeaderValue) {
    resp.headers_mut().insert(name, value);
}

pub(crate) fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "not found\n")
}

pub(crate) fn bad_request(msg: &str) -> Response<Body> {
    text(StatusCode::BAD_REQUEST, format!("bad request: {msg}\n"))
}

pub(crate) fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    set(
        &mut resp,
        http::header::ALLOW,
        HeaderValue::from_static(allow),
    );
    resp
}

pub(crate) fn internal_error() -> Response<Body> {
    text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
}

/// The first value of query parameter `name`, percent-decoded (`+` is a space).
pub(crate) fn query_param(uri: &Uri, name: &str) -> Option<String> {
    let query = uri.query()?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// Percent-decode a query component; invalid escapes are kept literally.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// FNV-1a 64-bit hash (deterministic, for ETags and seeds).
pub(crate) fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A strong ETag (quoted) derived from content.
pub(crate) fn etag_of(data: &[u8]) -> String {
    format!("\"{:016x}\"", fnv1a(data))
}

/// A fixed point in time (2024-01-01T00:00:00Z) plus `days`, used for Last-Modified.
pub(crate) fn fixed_time(days: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_704_067_200 + days * 86_400)
}

/// `fixed_time(days)` as an HTTP date header value.
pub(crate) fn http_date(days: u64) -> HeaderValue {
    hv(httpdate::fmt_http_date(fixed_time(days)))
}

/// A tiny deterministic PRNG (xorshift64*), used for generated text, images and media.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_decode() {
        let uri: Uri = "/api/search?q=hello+w%6Frld&x=1&bad=%zz%4".parse().unwrap();
        assert_eq!(query_param(&uri, "q").as_deref(), Some("hello world"));
        assert_eq!(query_param(&uri, "x").as_deref(), Some("1"));
        assert_eq!(query_param(&uri, "bad").as_deref(), Some("%zz%4"));
        assert_eq!(query_param(&uri, "missing"), None);
        let uri: Uri = "/events".parse().unwrap();
        assert_eq!(query_param(&uri, "count"), None);
    }

    #[test]
    fn percent_decode_edges() {
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%41%42"), "AB");
        assert_eq!(percent_decode("%E2%82%AC"), "€");
    }
}
