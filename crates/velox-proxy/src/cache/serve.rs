//! Answering from a stored response: preconditions (304), ranges (206, multipart, 416),
//! HEAD, and the `Age` and `Cache-Status` fields.

use super::meta::StoredResponse;
use crate::body::{self, Body, BoxError};
use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use std::sync::Arc;
use std::time::SystemTime;
use velox_cache::policy::conditional::not_modified_headers;
use velox_cache::policy::range::{boundary_from_seed, unsatisfied_content_range, ByteRange};
use velox_cache::policy::{
    evaluate_conditional, evaluate_range, CacheStatus, ConditionalOutcome, MultipartByteranges,
    OriginPreconditions, RangeDecision, SelectedResponse,
};
use velox_cache::store::Object;

/// A stored response found for a request.
#[derive(Clone)]
pub struct Entry {
    pub object: Arc<Object>,
    pub meta: Arc<StoredResponse>,
    /// The storage key (the primary key, or a variant's key).
    pub key: String,
}

impl Entry {
    pub fn current_age(&self, now: SystemTime) -> std::time::Duration {
        let resident = now
            .duration_since(self.meta.response_time)
            .unwrap_or_default();
        self.meta.corrected_initial_age + resident
    }

    pub fn selected(&self) -> SelectedResponse<'_> {
        SelectedResponse {
            status: self.meta.status,
            headers: &self.meta.headers,
            received_at: self.meta.response_time,
        }
    }
}

/// Appends this cache's member to `Cache-Status` (RFC 9211 §2: the last member is closest to the client).
pub fn set_cache_status(headers: &mut HeaderMap, status: &CacheStatus) {
    // Sized up front: rendering into a growing `to_string()` buffer reallocates on every hit.
    let mut member = String::with_capacity(64);
    status.render(&mut member);
    // A response Velox generated itself already names velox: replace rather than append.
    // (Checked only when there is something to append to: most responses carry no member.)
    let value = match headers
        .get(crate::errors::CACHE_STATUS)
        .and_then(|v| v.to_str().ok())
    {
        Some(upstream)
            if !upstream.is_empty() && !headers.contains_key(crate::errors::X_VELOX_ERROR) =>
        {
            format!("{upstream}, {member}")
        }
        _ => member,
    };
    // From the String itself: no second copy.
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(crate::errors::CACHE_STATUS, value);
    }
}

/// Answers `method` with `request` headers from `entry`; `None` when the request carries
/// preconditions only the origin may evaluate (RFC 9111 §4.3.2).
pub fn respond(
    method: &Method,
    request: &HeaderMap,
    entry: &Entry,
    status: &CacheStatus,
    now: SystemTime,
) -> Option<Response<Body>> {
    let meta = &entry.meta;
    let age = entry.current_age(now).as_secs();
    let mut response = match evaluate_conditional(
        method,
        request,
        &entry.selected(),
        OriginPreconditions::Forward,
    ) {
        ConditionalOutcome::Forward => return None,
        ConditionalOutcome::NotModified => {
            let mut response = Response::new(body::empty());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            *response.headers_mut() = not_modified_headers(&meta.headers);
            response
        }
        ConditionalOutcome::PreconditionFailed => {
            let mut response = Response::new(body::empty());
            *response.status_mut() = StatusCode::PRECONDITION_FAILED;
            response
        }
        ConditionalOutcome::Proceed => full_or_partial(method, request, entry),
    };
    let headers = response.headers_mut();
    headers.insert(http::header::AGE, HeaderValue::from(age));
    set_cache_status(headers, status);
    Some(response)
}

fn full_or_partial(method: &Method, request: &HeaderMap, entry: &Entry) -> Response<Body> {
    let meta = &entry.meta;
    let length = entry.object.len();
    let mut headers = meta.headers.clone();
    // Age, Cache-Status, Content-Length, request id, ...: a no-op for a map decoded with that
    // room (see `meta::SERVED_FIELDS`), one regrow at most otherwise.
    headers.reserve(super::meta::SERVED_FIELDS);
    let (status, body) = match evaluate_range(method, request, &meta.headers, length) {
        RangeDecision::Full => {
            set_content_length(&mut headers, length);
            (meta.status, object_body(&entry.object, 0, length))
        }
        RangeDecision::Partial(ranges) if ranges.len() == 1 => {
            let range = ranges[0];
            set_partial(&mut headers, &range, length);
            (
                StatusCode::PARTIAL_CONTENT,
                object_body(&entry.object, range.start, range.len()),
            )
        }
        RangeDecision::Partial(ranges) => {
            let boundary = boundary_from_seed(random_seed());
            match MultipartByteranges::new(
                &ranges,
                meta.headers.get(CONTENT_TYPE),
                length,
                &boundary,
            ) {
                Ok(multipart) => {
                    headers.insert(CONTENT_TYPE, multipart.content_type().clone());
                    headers.insert(
                        CONTENT_LENGTH,
                        HeaderValue::from(multipart.content_length()),
                    );
                    (
                        StatusCode::PARTIAL_CONTENT,
                        multipart_body(&entry.object, &multipart),
                    )
                }
                Err(_) => {
                    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
                    (meta.status, object_body(&entry.object, 0, length))
                }
            }
        }
        RangeDecision::Unsatisfiable => {
            set_unsatisfiable(&mut headers, length);
            (StatusCode::RANGE_NOT_SATISFIABLE, body::empty())
        }
    };
    let body = if *method == Method::HEAD {
        body::empty()
    } else {
        body
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Sets `Content-Length` to `length`, leaving the stored field alone when it already says so
/// (the usual hit: no allocation, no map update).
fn set_content_length(headers: &mut HeaderMap, length: u64) {
    let mut digits = itoa::Buffer::new();
    let text = digits.format(length).as_bytes();
    let mut stored = headers.get_all(CONTENT_LENGTH).iter();
    let already = stored.next().map(HeaderValue::as_bytes) == Some(text) && stored.next().is_none();
    if !already {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
}

/// The fields of a 206 carrying `range` of a `length`-byte representation.
fn set_partial(headers: &mut HeaderMap, range: &ByteRange, length: u64) {
    if let Ok(value) = HeaderValue::from_str(&range.content_range(length)) {
        headers.insert(CONTENT_RANGE, value);
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(range.len()));
}

/// The fields of a 416 for a `length`-byte representation (RFC 9110 §15.5.17).
fn set_unsatisfiable(headers: &mut HeaderMap, length: u64) {
    if let Ok(value) = HeaderValue::from_str(&unsatisfied_content_range(length)) {
        headers.insert(CONTENT_RANGE, value);
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(0u64));
}

/// Answers a range request with a complete `200` that passes through uncached (the cache asked
/// the origin for all of it in order to store it, then did not): a single range is cut from the
/// stream; several ranges get the whole representation, which RFC 9110 §14.2 allows.
pub fn range_of_passing(
    method: &Method,
    request: &HeaderMap,
    response: Response<Body>,
) -> Response<Body> {
    if !request.contains_key(RANGE) || response.status() != StatusCode::OK {
        return response;
    }
    let Some(length) = http_body::Body::size_hint(response.body()).exact() else {
        return response;
    };
    let (mut parts, origin) = response.into_parts();
    let body = match evaluate_range(method, request, &parts.headers, length) {
        RangeDecision::Partial(ranges) if ranges.len() == 1 => {
            let range = ranges[0];
            set_partial(&mut parts.headers, &range, length);
            parts.status = StatusCode::PARTIAL_CONTENT;
            body::slice(origin, range.start, range.len())
        }
        RangeDecision::Unsatisfiable => {
            set_unsatisfiable(&mut parts.headers, length);
            parts.status = StatusCode::RANGE_NOT_SATISFIABLE;
            body::empty()
        }
        RangeDecision::Full | RangeDecision::Partial(_) => origin,
    };
    Response::from_parts(parts, body)
}

/// `length` bytes of `object` from `start`, streamed chunk by chunk; chunks on disk are read
/// off the async threads.
pub fn object_body(object: &Arc<Object>, start: u64, length: u64) -> Body {
    if length == 0 {
        return body::empty();
    }
    body::with_length(
        StreamBody::new(object_chunks(object, start, start + length - 1)).boxed_unsync(),
        length,
    )
}

type ChunkStream = futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, BoxError>>;

fn object_chunks(object: &Arc<Object>, start: u64, end_inclusive: u64) -> ChunkStream {
    let reader = object.read_arc(start, end_inclusive);
    let stream: ChunkStream = if object.is_in_memory() {
        futures_util::stream::iter(
            reader.map(|chunk| chunk.map(Frame::data).map_err(BoxError::from)),
        )
        .boxed()
    } else {
        futures_util::stream::unfold(Some(reader), |reader| async move {
            let mut reader = reader?;
            let (reader, next) = tokio::task::spawn_blocking(move || {
                let next = reader.next();
                (reader, next)
            })
            .await
            .ok()?;
            let item = next?.map(Frame::data).map_err(BoxError::from);
            Some((item, Some(reader)))
        })
        .boxed()
    };
    stream
}

fn multipart_body(object: &Arc<Object>, multipart: &MultipartByteranges) -> Body {
    let mut pieces: Vec<ChunkStream> = Vec::new();
    for part in multipart.parts() {
        pieces.push(futures_util::stream::iter([Ok(Frame::data(part.header.clone()))]).boxed());
        pieces.push(object_chunks(object, part.range.start, part.range.end));
    }
    pieces.push(futures_util::stream::iter([Ok(Frame::data(multipart.trailer().clone()))]).boxed());
    let stream: ChunkStream = futures_util::stream::iter(pieces).flatten().boxed();
    body::with_length(
        StreamBody::new(stream).boxed_unsync(),
        multipart.content_length(),
    )
}

/// Enough randomness for a multipart boundary: the boundary only has to be absent from the body.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}
