//! Responses Velox generates itself: short plain bodies with a machine-readable reason.

use crate::body::{self, Body};
use http::{header, HeaderName, HeaderValue, Response, StatusCode};

// Names, not strings: a lookup by `&str` parses the name every time.
pub const X_VELOX_ERROR: HeaderName = HeaderName::from_static("x-velox-error");
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");
/// Until the cache exists every response is forwarded without it (RFC 9211).
pub const CACHE_STATUS_BYPASS: &str = "velox; fwd=bypass";

/// `code` is a stable kebab-case reason for machines; `detail` is for people.
pub fn error_response(status: StatusCode, code: &'static str, detail: &str) -> Response<Body> {
    let text = format!(
        "{} {}: {}\n",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        detail
    );
    let mut response = Response::new(body::full(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_VELOX_ERROR, HeaderValue::from_static(code));
    headers.insert(CACHE_STATUS, HeaderValue::from_static(CACHE_STATUS_BYPASS));
    response
}
