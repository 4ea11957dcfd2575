//! Range requests against a complete stored representation (RFC 9110 §14, §13.1.5, §15.3.7).
//!
//! * [`evaluate_range`]: the whole decision for a request (method, `If-Range`, `Range`).
//! * [`parse_range`]: `Range: bytes=...` against a known complete length.
//! * [`if_range_holds`]: the `If-Range` condition against the stored response.
//! * [`MultipartByteranges`]: the framing of a `multipart/byteranges` body (§14.6), computed up
//!   front so the caller can stream the stored bytes between the part headers.
//!
//! Denial-of-service guard (§14.2, §17.15): a range set with more than [`MAX_RANGES`] members
//! is ignored (full 200), and satisfiable ranges that overlap or lie closer than
//! [`COALESCE_GAP`] bytes apart are coalesced, so a response never carries a byte twice and
//! never has more parts than useful.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::Method;

use super::conditional::{last_modified_is_strong, single_date, EntityTag};

/// More range specs than this in one `Range` field and the field is ignored (RFC 9110 §14.2
/// allows ignoring a range set that looks like a denial-of-service attempt).
pub const MAX_RANGES: usize = 100;

/// Ranges separated by fewer bytes than this are merged into one part (RFC 9110 §14.2: a server
/// MAY coalesce ranges "separated by a gap that is smaller than the overhead of sending multiple
/// parts"); 80 bytes is about the size of one part header.
pub const COALESCE_GAP: u64 = 80;

/// An inclusive byte range `start..=end` of the selected representation (RFC 9110 §14.1.2).
/// Invariant when produced here: `start <= end < complete length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte position.
    pub start: u64,
    /// Last byte position, inclusive.
    pub end: u64,
}

impl ByteRange {
    /// Number of bytes in the range.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start).saturating_add(1)
    }

    /// The `Content-Range` value for this range of a representation of `complete_length` bytes:
    /// `bytes START-END/LENGTH` (RFC 9110 §14.4).
    pub fn content_range(&self, complete_length: u64) -> String {
        format!("bytes {}-{}/{}", self.start, self.end, complete_length)
    }
}

/// The `Content-Range` value of a 416 response: `bytes */LENGTH` (RFC 9110 §14.4, §15.5.17).
pub fn unsatisfied_content_range(complete_length: u64) -> String {
    format!("bytes */{complete_length}")
}

/// What to send for a request, as far as ranges go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeDecision {
    /// No usable range request: send the full representation (200).
    Full,
    /// 206 Partial Content. One range: a single part with `Content-Range`; several: a
    /// `multipart/byteranges` body ([`MultipartByteranges`]) with the parts in this order.
    Partial(Vec<ByteRange>),
    /// 416 Range Not Satisfiable with `Content-Range: bytes */LENGTH`
    /// ([`unsatisfied_content_range`]).
    Unsatisfiable,
}

/// The range decision for a request answered from a complete stored response of
/// `complete_length` bytes (RFC 9110 §13.2.2 step 5 and §14.2). Call it after the
/// preconditions ([`super::conditional::evaluate_conditional`]) said to proceed.
///
/// * Only GET has range semantics; `Range` on any other method is ignored (§14.2).
/// * `If-Range` without `Range` is ignored; with it, a false condition means the full
///   representation (§13.1.5). Several `If-Range` lines are invalid and count as false.
/// * Several `Range` lines are invalid and ignored.
pub fn evaluate_range(
    method: &Method,
    request: &HeaderMap,
    stored: &HeaderMap,
    complete_length: u64,
) -> RangeDecision {
    if *method != Method::GET {
        return RangeDecision::Full;
    }
    let mut ranges = request.get_all(header::RANGE).iter();
    let Some(range) = ranges.next() else {
        return RangeDecision::Full;
    };
    if ranges.next().is_some() {
        return RangeDecision::Full;
    }
    let mut if_ranges = request.get_all(header::IF_RANGE).iter();
    if let Some(if_range) = if_ranges.next() {
        if if_ranges.next().is_some() || !if_range_holds(if_range, stored) {
            return RangeDecision::Full;
        }
    }
    parse_range(range.as_bytes(), complete_length)
}

/// Evaluates an `If-Range` value against the stored response (RFC 9110 §13.1.5).
///
/// * Entity tag: true only if it is strong and strongly equal to the stored `ETag` (a weak tag
///   never matches).
/// * HTTP-date: true only if the stored `Last-Modified` is a strong validator (a `Date` at
///   least 60 seconds later, §8.8.2.2) and the date equals it exactly.
/// * Anything else (malformed) is false: sending the full representation is always safe.
pub fn if_range_holds(if_range: &HeaderValue, stored: &HeaderMap) -> bool {
    let bytes = trim(if_range.as_bytes());
    if bytes.starts_with(b"\"") || bytes.starts_with(b"W/") {
        return match (EntityTag::parse(bytes), EntityTag::from_headers(stored)) {
            (Some(given), Some(current)) => given.strong_eq(&current),
            _ => false,
        };
    }
    let Some(given) = if_range
        .to_str()
        .ok()
        .and_then(|s| httpdate::parse_http_date(s.trim()).ok())
    else {
        return false;
    };
    last_modified_is_strong(stored) && single_date(stored, &header::LAST_MODIFIED) == Some(given)
}

/// One parsed range-spec (RFC 9110 §14.1.1).
enum Spec {
    /// `first-pos "-" [ last-pos ]`
    Int(u64, Option<u64>),
    /// `"-" suffix-length`
    Suffix(u64),
}

/// Parses a `Range` field value against a representation of `complete_length` bytes (RFC 9110
/// §14.1, §14.2).
///
/// * Unit other than `bytes` (case-insensitive), missing `=`, or any syntactically invalid
///   range-spec (including `last-pos < first-pos`): [`RangeDecision::Full`] (the field is
///   ignored).
/// * Whitespace is tolerated around the unit, `=`, and list members; empty list members are
///   skipped (§5.6.1). Numbers too large for `u64` saturate.
/// * More than [`MAX_RANGES`] specs: `Full`.
/// * No satisfiable spec: [`RangeDecision::Unsatisfiable`]. An int-range is satisfiable when
///   `first-pos < length`; a suffix-range when its length is non-zero (§14.1.1).
/// * A zero-length representation with a non-zero suffix-range: `Full` (the whole, empty,
///   representation is the answer; `Content-Range` cannot express an empty range).
/// * Otherwise [`RangeDecision::Partial`], clamped to the length, in request order, unless some
///   ranges overlap or lie within [`COALESCE_GAP`] of each other: then all are merged and
///   returned in ascending order (§14.2 allows coalescing regardless of order).
pub fn parse_range(value: &[u8], complete_length: u64) -> RangeDecision {
    let Some(eq) = value.iter().position(|&b| b == b'=') else {
        return RangeDecision::Full;
    };
    if !trim(&value[..eq]).eq_ignore_ascii_case(b"bytes") {
        return RangeDecision::Full;
    }
    let mut specs = Vec::new();
    for member in value[eq + 1..].split(|&b| b == b',') {
        let member = trim(member);
        if member.is_empty() {
            continue;
        }
        if specs.len() == MAX_RANGES {
            return RangeDecision::Full;
        }
        match parse_spec(member) {
            Some(spec) => specs.push(spec),
            None => return RangeDecision::Full,
        }
    }
    if specs.is_empty() {
        return RangeDecision::Full;
    }

    if complete_length == 0 {
        return if specs.iter().any(|s| matches!(s, Spec::Suffix(n) if *n > 0)) {
            RangeDecision::Full
        } else {
            RangeDecision::Unsatisfiable
        };
    }
    let last = complete_length - 1;
    let ranges: Vec<ByteRange> = specs
        .into_iter()
        .filter_map(|spec| match spec {
            Spec::Int(first, end) if first <= last => Some(ByteRange {
                start: first,
                end: end.map_or(last, |e| e.min(last)),
            }),
            Spec::Int(..) => None,
            Spec::Suffix(0) => None,
            Spec::Suffix(n) => Some(ByteRange {
                start: complete_length.saturating_sub(n),
                end: last,
            }),
        })
        .collect();
    if ranges.is_empty() {
        return RangeDecision::Unsatisfiable;
    }
    RangeDecision::Partial(coalesce(ranges))
}

fn parse_spec(spec: &[u8]) -> Option<Spec> {
    let dash = spec.iter().position(|&b| b == b'-')?;
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    if first.is_empty() {
        return Some(Spec::Suffix(parse_digits(last)?));
    }
    let first = parse_digits(first)?;
    if last.is_empty() {
        return Some(Spec::Int(first, None));
    }
    let last = parse_digits(last)?;
    if last < first {
        return None;
    }
    Some(Spec::Int(first, Some(last)))
}

/// `1*DIGIT`, saturating at `u64::MAX`.
fn parse_digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |acc, d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// Keeps request order when no two ranges overlap or nearly touch; otherwise sorts and merges.
fn coalesce(ranges: Vec<ByteRange>) -> Vec<ByteRange> {
    let mut sorted = ranges.clone();
    sorted.sort_by_key(|r| (r.start, r.end));
    let close = |prev: &ByteRange, next: &ByteRange| {
        next.start <= prev.end.saturating_add(1).saturating_add(COALESCE_GAP)
    };
    if !sorted.windows(2).any(|w| close(&w[0], &w[1])) {
        return ranges;
    }
    let mut merged: Vec<ByteRange> = Vec::with_capacity(sorted.len());
    for r in sorted {
        match merged.last_mut() {
            Some(prev) if close(prev, &r) => prev.end = prev.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

fn trim(s: &[u8]) -> &[u8] {
    super::conditional::trim_ows(s)
}

/// Errors building a multipart/byteranges body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    /// No ranges given.
    #[error("multipart/byteranges needs at least one range")]
    NoRanges,
    /// A range is empty or reaches past the representation.
    #[error("range {start}-{end} does not fit a representation of {complete_length} bytes")]
    RangeOutOfBounds {
        /// First byte.
        start: u64,
        /// Last byte.
        end: u64,
        /// The representation's length.
        complete_length: u64,
    },
    /// The boundary is not 1 to 70 characters of `A-Z a-z 0-9 ' + _ - .`.
    #[error("invalid multipart boundary")]
    InvalidBoundary,
}

/// One part of a multipart/byteranges body: its header bytes, then the stored bytes of `range`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartPart {
    /// The delimiter and part header fields, up to and including the blank line.
    pub header: Bytes,
    /// The representation bytes to send after `header`.
    pub range: ByteRange,
}

/// The framing of a `multipart/byteranges` body (RFC 9110 §14.6, RFC 2046 §5.1.1).
///
/// The body is, in order: for each part, `part.header` then the stored bytes of `part.range`;
/// then `trailer`. Part headers are
/// `--BOUNDARY\r\nContent-Type: TYPE\r\nContent-Range: bytes A-B/LEN\r\n\r\n`, each one after
/// the first preceded by `\r\n` (the line break before a delimiter belongs to the delimiter),
/// and the `Content-Type` line omitted when the stored response has none. The trailer is the
/// close delimiter `\r\n--BOUNDARY--\r\n`. [`content_length`](Self::content_length) is the
/// exact byte count of all of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartByteranges {
    boundary: String,
    content_type: HeaderValue,
    parts: Vec<MultipartPart>,
    trailer: Bytes,
    content_length: u64,
}

impl MultipartByteranges {
    /// Builds the framing for `ranges` (in the order given) of a representation of
    /// `complete_length` bytes whose `Content-Type` is `content_type`.
    ///
    /// The boundary must not occur in the content; derive it from a random seed with
    /// [`boundary_from_seed`].
    pub fn new(
        ranges: &[ByteRange],
        content_type: Option<&HeaderValue>,
        complete_length: u64,
        boundary: &str,
    ) -> Result<Self, MultipartError> {
        let valid_boundary = (1..=70).contains(&boundary.len())
            && boundary
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"'+_-.".contains(&b));
        if !valid_boundary {
            return Err(MultipartError::InvalidBoundary);
        }
        if ranges.is_empty() {
            return Err(MultipartError::NoRanges);
        }
        let content_type_value =
            HeaderValue::from_str(&format!("multipart/byteranges; boundary={boundary}"))
                .map_err(|_| MultipartError::InvalidBoundary)?;

        let mut parts = Vec::with_capacity(ranges.len());
        let mut content_length: u64 = 0;
        for (i, range) in ranges.iter().enumerate() {
            if range.start > range.end || range.end >= complete_length {
                return Err(MultipartError::RangeOutOfBounds {
                    start: range.start,
                    end: range.end,
                    complete_length,
                });
            }
            let mut header = Vec::with_capacity(128);
            if i > 0 {
                header.extend_from_slice(b"\r\n");
            }
            header.extend_from_slice(b"--");
            header.extend_from_slice(boundary.as_bytes());
            header.extend_from_slice(b"\r\n");
            if let Some(ct) = content_type {
                header.extend_from_slice(b"Content-Type: ");
                header.extend_from_slice(ct.as_bytes());
                header.extend_from_slice(b"\r\n");
            }
            header.extend_from_slice(b"Content-Range: ");
            header.extend_from_slice(range.content_range(complete_length).as_bytes());
            header.extend_from_slice(b"\r\n\r\n");
            content_length = content_length
                .saturating_add(header.len() as u64)
                .saturating_add(range.len());
            parts.push(MultipartPart {
                header: Bytes::from(header),
                range: *range,
            });
        }
        let trailer = Bytes::from(format!("\r\n--{boundary}--\r\n"));
        content_length = content_length.saturating_add(trailer.len() as u64);
        Ok(Self {
            boundary: boundary.to_owned(),
            content_type: content_type_value,
            parts,
            trailer,
            content_length,
        })
    }

    /// The boundary string.
    pub fn boundary(&self) -> &str {
        &self.boundary
    }

    /// The 206 response's `Content-Type`: `multipart/byteranges; boundary=BOUNDARY`.
    pub fn content_type(&self) -> &HeaderValue {
        &self.content_type
    }

    /// The parts, in order.
    pub fn parts(&self) -> &[MultipartPart] {
        &self.parts
    }

    /// The close delimiter, sent after the last part's bytes.
    pub fn trailer(&self) -> &Bytes {
        &self.trailer
    }

    /// The exact `Content-Length` of the whole multipart body.
    pub fn content_length(&self) -> u64 {
        self.content_length
    }
}

/// A boundary from a caller-supplied random seed: `velox-` and 16 hex digits of the seed,
/// scrambled (splitmix64) so that sequential seeds give unrelated boundaries.
pub fn boundary_from_seed(seed: u64) -> String {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    format!("velox-{z:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderName;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    fn partial(ranges: &[(u64, u64)]) -> RangeDecision {
        RangeDecision::Partial(ranges.iter().map(|&(s, e)| r(s, e)).collect())
    }

    fn parse(value: &str, len: u64) -> RangeDecision {
        parse_range(value.as_bytes(), len)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            let name = HeaderName::from_bytes(name.as_bytes()).expect("test header name");
            let value = HeaderValue::from_str(value).expect("test header value");
            map.append(name, value);
        }
        map
    }

    fn date(secs: u64) -> String {
        httpdate::fmt_http_date(at(secs))
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    const T0: u64 = 1_700_000_000;

    // --- RFC 9110 §14.1.2: byte ranges ---

    #[test]
    fn rfc9110_14_1_2_single_int_range() {
        assert_eq!(parse("bytes=0-499", 10_000), partial(&[(0, 499)]));
        assert_eq!(parse("bytes=500-999", 10_000), partial(&[(500, 999)]));
        assert_eq!(parse("bytes=0-0", 1), partial(&[(0, 0)]));
    }

    #[test]
    fn rfc9110_14_1_2_open_ended_range() {
        assert_eq!(parse("bytes=9500-", 10_000), partial(&[(9500, 9999)]));
        assert_eq!(parse("bytes=0-", 10_000), partial(&[(0, 9999)]));
    }

    #[test]
    fn rfc9110_14_1_2_suffix_range() {
        assert_eq!(parse("bytes=-500", 10_000), partial(&[(9500, 9999)]));
        assert_eq!(
            parse("bytes=-20000", 10_000),
            partial(&[(0, 9999)]),
            "suffix longer than length"
        );
    }

    #[test]
    fn rfc9110_14_1_2_last_pos_clamped_to_length() {
        assert_eq!(parse("bytes=100-20000", 1000), partial(&[(100, 999)]));
    }

    #[test]
    fn rfc9110_14_1_2_huge_numbers_saturate() {
        assert_eq!(
            parse("bytes=0-99999999999999999999999", 10),
            partial(&[(0, 9)])
        );
        assert_eq!(
            parse("bytes=99999999999999999999999-", 10),
            RangeDecision::Unsatisfiable
        );
        assert_eq!(
            parse("bytes=-99999999999999999999999", 10),
            partial(&[(0, 9)])
        );
    }

    #[test]
    fn rfc9110_14_1_2_multiple_ranges_keep_request_order() {
        assert_eq!(
            parse("bytes=500-600,0-99", 10_000),
            partial(&[(500, 600), (0, 99)])
        );
        assert_eq!(
            parse("bytes=0-99, 500-600, -100", 10_000),
            partial(&[(0, 99), (500, 600), (9900, 9999)])
        );
    }

    #[test]
    fn rfc9110_5_6_1_whitespace_and_empty_members_tolerated() {
        assert_eq!(
            parse(" bytes = 0-9 ,\t, 500-509 ", 1000),
            partial(&[(0, 9), (500, 509)])
        );
        assert_eq!(
            parse("BYTES=0-9", 1000),
            partial(&[(0, 9)]),
            "unit is case-insensitive"
        );
    }

    // --- RFC 9110 §14.1.1 / §14.2: invalid range sets are ignored ---

    #[test]
    fn rfc9110_14_2_invalid_syntax_ignored() {
        for bad in [
            "bytes=",
            "bytes",
            "bytes=abc",
            "bytes=5",
            "bytes=1-2-3",
            "bytes=--5",
            "bytes=0 - 5",
            "bytes=+1-2",
            "bytes=0-9,x",
            "bytes=-",
            "=0-9",
            "bytes=0x10-20",
        ] {
            assert_eq!(parse(bad, 1000), RangeDecision::Full, "{bad}");
        }
    }

    #[test]
    fn rfc9110_14_1_1_last_pos_before_first_pos_is_invalid() {
        assert_eq!(parse("bytes=10-5", 1000), RangeDecision::Full);
        assert_eq!(
            parse("bytes=0-1,10-5", 1000),
            RangeDecision::Full,
            "one invalid spec voids the set"
        );
    }

    #[test]
    fn rfc9110_14_2_other_units_ignored() {
        assert_eq!(parse("items=0-5", 1000), RangeDecision::Full);
        assert_eq!(parse("none", 1000), RangeDecision::Full);
    }

    // --- RFC 9110 §14.1.1 / §15.5.17: unsatisfiable ---

    #[test]
    fn rfc9110_15_5_17_no_satisfiable_range_is_416() {
        assert_eq!(parse("bytes=1000-", 1000), RangeDecision::Unsatisfiable);
        assert_eq!(
            parse("bytes=1000-2000, 5000-", 1000),
            RangeDecision::Unsatisfiable
        );
        assert_eq!(parse("bytes=-0", 1000), RangeDecision::Unsatisfiable);
        assert_eq!(unsatisfied_content_range(1000), "bytes */1000");
    }

    #[test]
    fn rfc9110_14_1_1_unsatisfiable_members_dropped() {
        assert_eq!(parse("bytes=5000-6000, 0-9", 1000), partial(&[(0, 9)]));
        assert_eq!(parse("bytes=-0, 0-9", 1000), partial(&[(0, 9)]));
    }

    #[test]
    fn rfc9110_14_1_1_zero_length_representation() {
        assert_eq!(parse("bytes=0-", 0), RangeDecision::Unsatisfiable);
        assert_eq!(parse("bytes=-5", 0), RangeDecision::Full);
        assert_eq!(parse("bytes=-0", 0), RangeDecision::Unsatisfiable);
    }

    // --- RFC 9110 §14.2 / §17.15: denial of service ---

    #[test]
    fn rfc9110_14_2_too_many_ranges_ignored() {
        let many: Vec<String> = (0..=MAX_RANGES as u64)
            .map(|i| format!("{}-{}", i * 1000, i * 1000))
            .collect();
        let value = format!("bytes={}", many.join(","));
        assert_eq!(parse(&value, 1_000_000), RangeDecision::Full);
        let ok: Vec<String> = (0..MAX_RANGES as u64)
            .map(|i| format!("{}-{}", i * 1000, i * 1000))
            .collect();
        let value = format!("bytes={}", ok.join(","));
        match parse(&value, 1_000_000) {
            RangeDecision::Partial(ranges) => assert_eq!(ranges.len(), MAX_RANGES),
            other => panic!("expected partial, got {other:?}"),
        }
    }

    #[test]
    fn rfc9110_14_2_overlapping_ranges_coalesced() {
        assert_eq!(
            parse("bytes=0-499,100-199,400-", 10_000),
            partial(&[(0, 9999)])
        );
        assert_eq!(
            parse("bytes=5000-5999, 0-99, 50-150", 10_000),
            partial(&[(0, 150), (5000, 5999)]),
            "coalesced ranges come back in ascending order"
        );
        // The same range many times collapses to one.
        let value = format!("bytes={}", vec!["0-9"; 50].join(","));
        assert_eq!(parse(&value, 100), partial(&[(0, 9)]));
    }

    #[test]
    fn rfc9110_14_2_small_gaps_coalesced() {
        assert_eq!(
            parse("bytes=0-9,10-19", 1000),
            partial(&[(0, 19)]),
            "adjacent"
        );
        assert_eq!(
            parse("bytes=0-9,90-99", 1000),
            partial(&[(0, 99)]),
            "gap of exactly COALESCE_GAP"
        );
        assert_eq!(parse("bytes=0-9,91-99", 1000), partial(&[(0, 9), (91, 99)]));
    }

    // --- RFC 9110 §13.1.5: If-Range ---

    #[test]
    fn rfc9110_13_1_5_if_range_strong_etag() {
        let stored = headers(&[("etag", "\"v1\"")]);
        let req = headers(&[("range", "bytes=0-9"), ("if-range", "\"v1\"")]);
        assert_eq!(
            evaluate_range(&Method::GET, &req, &stored, 100),
            partial(&[(0, 9)])
        );
        let other = headers(&[("range", "bytes=0-9"), ("if-range", "\"v2\"")]);
        assert_eq!(
            evaluate_range(&Method::GET, &other, &stored, 100),
            RangeDecision::Full
        );
    }

    #[test]
    fn rfc9110_13_1_5_if_range_weak_etag_never_matches() {
        let stored = headers(&[("etag", "W/\"v1\"")]);
        let req = headers(&[("range", "bytes=0-9"), ("if-range", "W/\"v1\"")]);
        assert_eq!(
            evaluate_range(&Method::GET, &req, &stored, 100),
            RangeDecision::Full
        );
        let strong_req = headers(&[("range", "bytes=0-9"), ("if-range", "\"v1\"")]);
        assert_eq!(
            evaluate_range(&Method::GET, &strong_req, &stored, 100),
            RangeDecision::Full
        );
    }

    #[test]
    fn rfc9110_13_1_5_if_range_date_exact_and_strong() {
        let stored = headers(&[("last-modified", &date(T0)), ("date", &date(T0 + 3600))]);
        let exact = headers(&[("range", "bytes=0-9"), ("if-range", &date(T0))]);
        assert_eq!(
            evaluate_range(&Method::GET, &exact, &stored, 100),
            partial(&[(0, 9)])
        );
        let later = headers(&[("range", "bytes=0-9"), ("if-range", &date(T0 + 1))]);
        assert_eq!(
            evaluate_range(&Method::GET, &later, &stored, 100),
            RangeDecision::Full
        );
        let earlier = headers(&[("range", "bytes=0-9"), ("if-range", &date(T0 - 1))]);
        assert_eq!(
            evaluate_range(&Method::GET, &earlier, &stored, 100),
            RangeDecision::Full
        );
    }

    #[test]
    fn rfc9110_8_8_2_2_if_range_date_needs_strong_last_modified() {
        let req = headers(&[("range", "bytes=0-9"), ("if-range", &date(T0))]);
        let too_close = headers(&[("last-modified", &date(T0)), ("date", &date(T0 + 59))]);
        assert_eq!(
            evaluate_range(&Method::GET, &req, &too_close, 100),
            RangeDecision::Full
        );
        let no_date = headers(&[("last-modified", &date(T0))]);
        assert_eq!(
            evaluate_range(&Method::GET, &req, &no_date, 100),
            RangeDecision::Full
        );
        let just_enough = headers(&[("last-modified", &date(T0)), ("date", &date(T0 + 60))]);
        assert_eq!(
            evaluate_range(&Method::GET, &req, &just_enough, 100),
            partial(&[(0, 9)])
        );
    }

    #[test]
    fn rfc9110_13_1_5_if_range_date_against_etag_only_response() {
        let stored = headers(&[("etag", "\"v1\""), ("date", &date(T0))]);
        let req = headers(&[("range", "bytes=0-9"), ("if-range", &date(T0 - 3600))]);
        assert_eq!(
            evaluate_range(&Method::GET, &req, &stored, 100),
            RangeDecision::Full
        );
    }

    #[test]
    fn rfc9110_13_1_5_malformed_if_range_is_false() {
        let stored = headers(&[
            ("etag", "\"v1\""),
            ("last-modified", &date(T0)),
            ("date", &date(T0 + 3600)),
        ]);
        for bad in ["v1", "\"v1", "garbage date", "\"v1\", \"v2\""] {
            let req = headers(&[("range", "bytes=0-9"), ("if-range", bad)]);
            assert_eq!(
                evaluate_range(&Method::GET, &req, &stored, 100),
                RangeDecision::Full,
                "{bad}"
            );
        }
        let two = headers(&[
            ("range", "bytes=0-9"),
            ("if-range", "\"v1\""),
            ("if-range", "\"v1\""),
        ]);
        assert_eq!(
            evaluate_range(&Method::GET, &two, &stored, 100),
            RangeDecision::Full
        );
    }

    #[test]
    fn rfc9110_13_1_5_if_range_without_range_ignored() {
        let stored = headers(&[("etag", "\"v1\"")]);
        let req = headers(&[("if-range", "\"v1\"")]);
        assert_eq!(
            evaluate_range(&Method::GET, &req, &stored, 100),
            RangeDecision::Full
        );
    }

    #[test]
    fn rfc9110_13_1_5_if_range_false_means_full_even_if_unsatisfiable() {
        let stored = headers(&[("etag", "\"v2\"")]);
        let req = headers(&[("range", "bytes=500-"), ("if-range", "\"v1\"")]);
        assert_eq!(
            evaluate_range(&Method::GET, &req, &stored, 100),
            RangeDecision::Full
        );
    }

    // --- RFC 9110 §14.2: methods and field lines ---

    #[test]
    fn rfc9110_14_2_range_only_for_get() {
        let req = headers(&[("range", "bytes=0-9")]);
        let stored = headers(&[]);
        assert_eq!(
            evaluate_range(&Method::GET, &req, &stored, 100),
            partial(&[(0, 9)])
        );
        assert_eq!(
            evaluate_range(&Method::HEAD, &req, &stored, 100),
            RangeDecision::Full
        );
        assert_eq!(
            evaluate_range(&Method::POST, &req, &stored, 100),
            RangeDecision::Full
        );
    }

    #[test]
    fn rfc9110_14_2_several_range_lines_ignored() {
        let req = headers(&[("range", "bytes=0-9"), ("range", "bytes=20-29")]);
        assert_eq!(
            evaluate_range(&Method::GET, &req, &headers(&[]), 100),
            RangeDecision::Full
        );
    }

    #[test]
    fn rfc9110_14_2_no_range_is_full() {
        assert_eq!(
            evaluate_range(&Method::GET, &headers(&[]), &headers(&[]), 100),
            RangeDecision::Full
        );
    }

    // --- RFC 9110 §14.4: Content-Range ---

    #[test]
    fn rfc9110_14_4_content_range_values() {
        assert_eq!(r(0, 499).content_range(1234), "bytes 0-499/1234");
        assert_eq!(r(0, 499).len(), 500);
        assert_eq!(r(7, 7).len(), 1);
    }

    // --- RFC 9110 §14.6: multipart/byteranges ---

    fn assemble(m: &MultipartByteranges, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for part in m.parts() {
            out.extend_from_slice(&part.header);
            let (s, e) = (part.range.start as usize, part.range.end as usize);
            out.extend_from_slice(&body[s..=e]);
        }
        out.extend_from_slice(m.trailer());
        out
    }

    #[test]
    fn rfc9110_14_6_multipart_exact_bytes_and_length() {
        let body: Vec<u8> = (0..8000u32).map(|i| (i % 251) as u8).collect();
        let ct = HeaderValue::from_static("application/pdf");
        let ranges = [r(500, 999), r(7000, 7999)];
        let m = MultipartByteranges::new(&ranges, Some(&ct), 8000, "THIS_STRING_SEPARATES")
            .expect("valid multipart");
        assert_eq!(
            m.content_type(),
            &HeaderValue::from_static("multipart/byteranges; boundary=THIS_STRING_SEPARATES")
        );
        assert_eq!(
            &m.parts()[0].header[..],
            b"--THIS_STRING_SEPARATES\r\nContent-Type: application/pdf\r\nContent-Range: bytes 500-999/8000\r\n\r\n"
        );
        assert_eq!(
            &m.parts()[1].header[..],
            b"\r\n--THIS_STRING_SEPARATES\r\nContent-Type: application/pdf\r\nContent-Range: bytes 7000-7999/8000\r\n\r\n"
        );
        assert_eq!(&m.trailer()[..], b"\r\n--THIS_STRING_SEPARATES--\r\n");
        let full = assemble(&m, &body);
        assert_eq!(full.len() as u64, m.content_length());
        assert_eq!(m.boundary(), "THIS_STRING_SEPARATES");
    }

    #[test]
    fn rfc9110_14_6_multipart_without_content_type() {
        let m =
            MultipartByteranges::new(&[r(0, 0), r(5, 9)], None, 10, "b").expect("valid multipart");
        assert_eq!(
            &m.parts()[0].header[..],
            b"--b\r\nContent-Range: bytes 0-0/10\r\n\r\n"
        );
        let body = b"0123456789";
        let full = assemble(&m, body);
        assert_eq!(
            full,
            b"--b\r\nContent-Range: bytes 0-0/10\r\n\r\n0\r\n--b\r\nContent-Range: bytes 5-9/10\r\n\r\n56789\r\n--b--\r\n"
        );
        assert_eq!(full.len() as u64, m.content_length());
    }

    #[test]
    fn rfc9110_14_6_multipart_rejects_bad_input() {
        assert_eq!(
            MultipartByteranges::new(&[], None, 10, "b"),
            Err(MultipartError::NoRanges)
        );
        assert!(matches!(
            MultipartByteranges::new(&[r(5, 10)], None, 10, "b"),
            Err(MultipartError::RangeOutOfBounds { .. })
        ));
        assert!(matches!(
            MultipartByteranges::new(&[r(5, 4)], None, 10, "b"),
            Err(MultipartError::RangeOutOfBounds { .. })
        ));
        for bad in ["", "has space", "a\r\nb", "quote\"", &"x".repeat(71)] {
            assert_eq!(
                MultipartByteranges::new(&[r(0, 1)], None, 10, bad),
                Err(MultipartError::InvalidBoundary),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rfc2046_5_1_1_boundary_from_seed_is_valid_and_varies() {
        let a = boundary_from_seed(1);
        let b = boundary_from_seed(2);
        assert_ne!(a, b);
        assert_eq!(a.len(), "velox-".len() + 16);
        assert!(MultipartByteranges::new(&[r(0, 1)], None, 10, &a).is_ok());
    }

    #[test]
    fn rfc9110_14_6_multipart_from_parsed_ranges() {
        let body: Vec<u8> = (0..200u8).map(|i| b'a' + i % 26).collect();
        let RangeDecision::Partial(ranges) = parse("bytes=0-1,-2", 200) else {
            panic!("expected partial");
        };
        let ct = HeaderValue::from_static("text/plain");
        let m = MultipartByteranges::new(&ranges, Some(&ct), 200, "x").expect("valid multipart");
        let full = assemble(&m, &body);
        assert_eq!(full.len() as u64, m.content_length());
        let text = String::from_utf8(full).expect("ascii body");
        assert!(text.starts_with(
            "--x\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/200\r\n\r\nab\r\n--x\r\n"
        ));
        assert!(text.ends_with("Content-Range: bytes 198-199/200\r\n\r\nqr\r\n--x--\r\n"));
    }
}
