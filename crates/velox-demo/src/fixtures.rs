//! Test fixtures used by the proxy's integration tests and benchmarks.

use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, ETAG, TRAILER,
};
use http::{Request, Response, StatusCode, Uri};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use serde_json::{json, Map, Value};

use crate::resp::{self, Body};

/// Longest wait `/slow` accepts: 10 minutes.
const MAX_SLOW_MS: u64 = 600_000;

/// Read a request body to the end, calling `f` on every data chunk.
async fn drain(mut body: Incoming, mut f: impl FnMut(&Bytes)) -> Result<(), hyper::Error> {
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            f(data);
        }
    }
    Ok(())
}

/// `/echo` (any method): the request as JSON; the body is read and counted, not kept.
pub(crate) async fn echo(req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let mut headers = Map::new();
    for name in parts.headers.keys() {
        let values: Vec<Value> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        headers.insert(name.as_str().to_owned(), Value::Array(values));
    }
    let mut body_bytes: u64 = 0;
    if let Err(e) = drain(body, |d| body_bytes += d.len() as u64).await {
        return resp::bad_request(&format!("reading the request body failed: {e}"));
    }
    resp::json(
        StatusCode::OK,
        &json!({
            "method": parts.method.as_str(),
            "uri": parts.uri.to_string(),
            "version": format!("{:?}", parts.version),
            "headers": headers,
            "body_bytes": body_bytes,
        }),
    )
}

/// The wrapping u64 sum of all bytes of `data` (8 bytes at a time, so it stays fast
/// even in debug builds).
pub fn byte_sum(data: &[u8]) -> u64 {
    const LANES: u64 = 0x00FF_00FF_00FF_00FF;
    let mut total: u64 = 0;
    // 128 words per block: each 16-bit lane gains at most 2*255 per word, 128*510 < 65536.
    let mut blocks = data.chunks_exact(1024);
    for block in &mut blocks {
        let mut acc: u64 = 0;
        for word in block.chunks_exact(8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            let v = u64::from_le_bytes(w);
            acc = acc.wrapping_add((v & LANES).wrapping_add((v >> 8) & LANES));
        }
        let folded = (acc & 0xFFFF) + ((acc >> 16) & 0xFFFF) + ((acc >> 32) & 0xFFFF) + (acc >> 48);
        total = total.wrapping_add(folded);
    }
    for &b in blocks.remainder() {
        total = total.wrapping_add(u64::from(b));
    }
    total
}

/// `/upload` (POST/PUT): stream the body, reply `{"bytes": N, "checksum": S}`.
pub(crate) async fn upload(req: Request<Incoming>) -> Response<Body> {
    let mut bytes: u64 = 0;
    let mut checksum: u64 = 0;
    let result = drain(req.into_body(), |d| {
        bytes += d.len() as u64;
        checksum = checksum.wrapping_add(byte_sum(d));
    })
    .await;
    if let Err(e) = result {
        return resp::bad_request(&format!("reading the request body failed: {e}"));
    }
    resp::json(
        StatusCode::OK,
        &json!({ "bytes": bytes, "checksum": checksum }),
    )
}

/// `/status/{code}`: that status with a short body (none for 204/304).
pub(crate) fn status(code: Option<u16>) -> Response<Body> {
    let Some(status) = code
        .filter(|c| (200..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
    else {
        return resp::bad_request("expected /status/{code} with 200 <= code <= 599");
    };
    if matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED) {
        let mut r = Response::new(resp::empty());
        *r.status_mut() = status;
        return r;
    }
    resp::text(status, format!("status {}\n", status.as_u16()))
}

/// `/slow?ms=N`: wait N ms before answering "ok".
pub(crate) async fn slow(uri: &Uri) -> Response<Body> {
    let ms = resp::query_param(uri, "ms")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1000)
        .min(MAX_SLOW_MS);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    let mut r = resp::text(StatusCode::OK, "ok");
    resp::set(&mut r, CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Declared length of `/truncated` and how much of it is actually sent.
pub const TRUNCATED_DECLARED: u64 = 100_000;
pub const TRUNCATED_SENT: usize = 50_000;

/// `/truncated`: `Content-Length: 100000`, 50000 bytes, then a body error so hyper drops
/// the connection.
pub(crate) fn truncated() -> Response<Body> {
    // Step 0 sends the data; step 1 pauses so hyper flushes headers and data to the
    // socket; step 2 fails the body, which makes hyper abort the connection.
    let stream = futures_util::stream::unfold(0u8, |step| async move {
        match step {
            0 => Some((Ok(Frame::data(Bytes::from(vec![b'x'; TRUNCATED_SENT]))), 1)),
            1 => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "deliberately truncated body",
                    )),
                    2,
                ))
            }
            _ => None,
        }
    });
    let mut r = Response::new(StreamBody::new(stream).boxed_unsync());
    resp::set(
        &mut r,
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp::set(
        &mut r,
        CONTENT_LENGTH,
        HeaderValue::from(TRUNCATED_DECLARED),
    );
    resp::set(&mut r, CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `/headers-hop`: hop-by-hop headers a proxy must strip, plus `X-End-To-End: 1`.
pub(crate) fn headers_hop() -> Response<Body> {
    let mut r = resp::text(StatusCode::OK, "hop-by-hop headers attached\n");
    let h = r.headers_mut();
    h.insert(
        CONNECTION,
        HeaderValue::from_static("X-Custom-Hop, keep-alive"),
    );
    h.insert(
        HeaderName::from_static("x-custom-hop"),
        HeaderValue::from_static("1"),
    );
    h.insert(
        HeaderName::from_static("keep-alive"),
        HeaderValue::from_static("timeout=5"),
    );
    h.insert(
        HeaderName::from_static("proxy-connection"),
        HeaderValue::from_static("keep-alive"),
    );
    h.insert(TRAILER, HeaderValue::from_static("X-T"));
    h.insert(
        HeaderName::from_static("x-end-to-end"),
        HeaderValue::from_static("1"),
    );
    r
}

/// `/cache/{anything}`: `public, max-age=60`, an ETag, and a body naming the path. Echoes the
/// request's `X-Request-Id`, as many origins do.
pub(crate) fn cache(path: &str, request: &http::HeaderMap) -> Response<Body> {
    let mut r = resp::text(StatusCode::OK, format!("cache fixture {path}\n"));
    resp::set(
        &mut r,
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    resp::set(&mut r, ETAG, resp::hv(resp::etag_of(path.as_bytes())));
    if let Some(id) = request.get("x-request-id") {
        resp::set(&mut r, HeaderName::from_static("x-request-id"), id.clone());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sum_matches_naive() {
        let naive = |d: &[u8]| d.iter().fold(0u64, |a, &b| a.wrapping_add(u64::from(b)));
        for len in [0usize, 1, 7, 8, 9, 1023, 1024, 1025, 5000, 70_001] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            assert_eq!(byte_sum(&data), naive(&data), "len {len}");
        }
        let ff = vec![0xFFu8; 4096 + 3];
        assert_eq!(byte_sum(&ff), naive(&ff));
    }
}
