//! Generated binary bodies: the deterministic byte pattern, `/download/big.bin` with
//! single-range support, `/bytes/{n}` and the HLS playlist and segments.
//!
//! The pattern: the byte at offset `i` of `/download/big.bin` and of `/bytes/{n}` is
//! `(i % 251) as u8` (see [`pattern_byte`]). 251 is prime, so the pattern does not line
//! up with any power-of-two chunk size and misplaced chunks are detected.

use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderValue, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE,
    CONTENT_TYPE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE,
};
use http::{Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

use crate::resp::{self, Body};

/// Length of `/download/big.bin`: 100 MiB.
pub const BIG_BIN_LEN: u64 = 100 * 1024 * 1024;
/// Largest `n` accepted by `/bytes/{n}`: 8 GiB.
pub const MAX_BYTES_LEN: u64 = 8 * 1024 * 1024 * 1024;
/// Size of the chunks generated bodies are streamed in.
pub const CHUNK_SIZE: usize = 64 * 1024;

const PERIOD: usize = 251;
const BIG_BIN_ETAG: &str = "\"big-bin-104857600-v1\"";

/// The byte at offset `i` of every pattern body: `(i % 251) as u8`.
pub fn pattern_byte(i: u64) -> u8 {
    (i % PERIOD as u64) as u8
}

/// One buffer holding the pattern from offset 0 for `CHUNK_SIZE + 251` bytes: any chunk of
/// up to `CHUNK_SIZE` bytes at any offset is a zero-copy slice of it.
fn pattern_buffer() -> &'static Bytes {
    static BUF: OnceLock<Bytes> = OnceLock::new();
    BUF.get_or_init(|| {
        let mut v = Vec::with_capacity(CHUNK_SIZE + PERIOD);
        for _ in 0..(CHUNK_SIZE / PERIOD + 2) {
            v.extend((0..PERIOD).map(|j| j as u8));
        }
        v.truncate(CHUNK_SIZE + PERIOD);
        Bytes::from(v)
    })
}

/// A body yielding pattern bytes `[pos, end)` in chunks of at most `CHUNK_SIZE`.
pub(crate) struct PatternBody {
    pos: u64,
    end: u64,
}

impl PatternBody {
    pub(crate) fn new(start: u64, end: u64) -> Self {
        PatternBody {
            pos: start,
            end: end.max(start),
        }
    }
}

impl http_body::Body for PatternBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.pos >= this.end {
            return Poll::Ready(None);
        }
        let n = (this.end - this.pos).min(CHUNK_SIZE as u64) as usize;
        let off = (this.pos % PERIOD as u64) as usize;
        this.pos += n as u64;
        Poll::Ready(Some(Ok(Frame::data(pattern_buffer().slice(off..off + n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.pos >= self.end
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.end - self.pos)
    }
}

/// What a `Range` header asks of a representation of a given length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOutcome {
    /// Ignore the header and send the whole representation (200): absent, malformed,
    /// another unit, or several ranges (only single ranges are supported).
    Full,
    /// Send bytes `start..=end` (206).
    Partial { start: u64, end: u64 },
    /// No byte of the representation is covered (416, `Content-Range: bytes */len`).
    Unsatisfiable,
}

/// Parse a `Range` header value (`bytes=a-b`, `bytes=a-`, `bytes=-n`) against a
/// representation of `len` bytes. Pure.
pub fn parse_range(header: &str, len: u64) -> RangeOutcome {
    let header = header.trim();
    let Some((unit, spec)) = header.split_once('=') else {
        return RangeOutcome::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeOutcome::Full;
    }
    let spec = spec.trim();
    if spec.contains(',') {
        return RangeOutcome::Full;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeOutcome::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            // Digits only: failure means overflow, treat as "huge".
            Some(s.parse().unwrap_or(u64::MAX))
        }
    };
    match (first.is_empty(), last.is_empty()) {
        (true, true) => RangeOutcome::Full,
        // Suffix: the last n bytes.
        (true, false) => match num(last) {
            None => RangeOutcome::Full,
            Some(0) => RangeOutcome::Unsatisfiable,
            Some(_) if len == 0 => RangeOutcome::Unsatisfiable,
            Some(n) => RangeOutcome::Partial {
                start: len.saturating_sub(n),
                end: len - 1,
            },
        },
        // Open: from a to the end.
        (false, true) => match num(first) {
            None => RangeOutcome::Full,
            Some(a) if a >= len => RangeOutcome::Unsatisfiable,
            Some(a) => RangeOutcome::Partial {
                start: a,
                end: len - 1,
            },
        },
        (false, false) => match (num(first), num(last)) {
            (Some(a), Some(b)) if a <= b => {
                if a >= len {
                    RangeOutcome::Unsatisfiable
                } else {
                    RangeOutcome::Partial {
                        start: a,
                        end: b.min(len - 1),
                    }
                }
            }
            _ => RangeOutcome::Full,
        },
    }
}

/// `/download/big.bin`: 100 MiB of pattern bytes with ranges, ETag and Last-Modified.
pub(crate) fn big_bin(req: &HeaderMap) -> Response<Body> {
    let etag = HeaderValue::from_static(BIG_BIN_ETAG);
    let last_modified = resp::http_date(10);
    let len = BIG_BIN_LEN;

    // Conditionals come before Range (RFC 9110 §13.2.2).
    if crate::conditional::not_modified(
        req.get(http::header::IF_NONE_MATCH),
        req.get(http::header::IF_MODIFIED_SINCE),
        Some(&etag),
        Some(&last_modified),
    ) {
        let mut r = Response::new(resp::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        resp::set(&mut r, ETAG, etag);
        resp::set(&mut r, LAST_MODIFIED, last_modified);
        return r;
    }

    // If-Range is honoured only when it is exactly (strongly) our ETag.
    let if_range_ok = match req.get(IF_RANGE) {
        None => true,
        Some(v) => v.as_bytes() == BIG_BIN_ETAG.as_bytes(),
    };
    let outcome = match req.get(RANGE).and_then(|v| v.to_str().ok()) {
        Some(range) if if_range_ok => parse_range(range, len),
        _ => RangeOutcome::Full,
    };

    let mut r = match outcome {
        RangeOutcome::Full => {
            let mut r = Response::new(PatternBody::new(0, len).boxed_unsync());
            resp::set(&mut r, CONTENT_LENGTH, HeaderValue::from(len));
            r
        }
        RangeOutcome::Partial { start, end } => {
            let mut r = Response::new(PatternBody::new(start, end + 1).boxed_unsync());
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            resp::set(&mut r, CONTENT_LENGTH, HeaderValue::from(end + 1 - start));
            resp::set(
                &mut r,
                CONTENT_RANGE,
                resp::hv(format!("bytes {start}-{end}/{len}")),
            );
            r
        }
        RangeOutcome::Unsatisfiable => {
            let mut r = resp::text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
            resp::set(&mut r, CONTENT_RANGE, resp::hv(format!("bytes */{len}")));
            r
        }
    };
    if outcome != RangeOutcome::Unsatisfiable {
        resp::set(
            &mut r,
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
    }
    resp::set(&mut r, ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    resp::set(&mut r, ETAG, etag);
    resp::set(&mut r, LAST_MODIFIED, last_modified);
    r
}

/// `/bytes/{n}`: exactly `n` pattern bytes, never stored.
pub(crate) fn bytes_n(n: Option<u64>) -> Response<Body> {
    let Some(n) = n else {
        return resp::bad_request("expected /bytes/{n} with a decimal n");
    };
    if n > MAX_BYTES_LEN {
        return resp::bad_request("n is larger than 8 GiB");
    }
    let mut r = Response::new(PatternBody::new(0, n).boxed_unsync());
    resp::set(
        &mut r,
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp::set(&mut r, CONTENT_LENGTH, HeaderValue::from(n));
    resp::set(&mut r, CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Number of HLS segments.
pub const HLS_SEGMENTS: u32 = 10;
const HLS_SEGMENT_SECONDS: u32 = 4;
const TS_PACKET: usize = 188;
const TS_PACKETS_PER_SEGMENT: usize = 1394; // 262 072 bytes, ~256 KiB

/// `/hls/playlist.m3u8`: a VOD playlist of 10 segments of 4 s.
pub(crate) fn playlist() -> Response<Body> {
    let mut m3u8 = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{HLS_SEGMENT_SECONDS}\n\
         #EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n"
    );
    for i in 0..HLS_SEGMENTS {
        m3u8.push_str(&format!(
            "#EXTINF:{HLS_SEGMENT_SECONDS}.000,\nsegment-{i}.ts\n"
        ));
    }
    m3u8.push_str("#EXT-X-ENDLIST\n");
    let mut r = resp::bytes_response(StatusCode::OK, "application/vnd.apple.mpegurl", m3u8);
    resp::set(&mut r, CACHE_CONTROL, HeaderValue::from_static("max-age=2"));
    r
}

fn segment_bytes(index: u32) -> (Bytes, String) {
    let mut rng = resp::Rng::new(0x7500 + u64::from(index));
    let mut v = Vec::with_capacity(TS_PACKET * TS_PACKETS_PER_SEGMENT);
    for p in 0..TS_PACKETS_PER_SEGMENT {
        // Sync byte, PID 0x0100, payload-only with a continuity counter.
        v.extend_from_slice(&[0x47, 0x01, 0x00, 0x10 | (p as u8 & 0x0f)]);
        for _ in 0..(TS_PACKET - 4) / 8 {
            v.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
    }
    let etag = resp::etag_of(&v);
    (Bytes::from(v), etag)
}

/// `/hls/segment-{i}.ts`: ~256 KiB of generated MPEG-TS-shaped bytes.
pub(crate) fn segment(index: u32) -> Response<Body> {
    static SEGMENTS: [OnceLock<(Bytes, String)>; HLS_SEGMENTS as usize] =
        [const { OnceLock::new() }; HLS_SEGMENTS as usize];
    let Some(slot) = SEGMENTS.get(index as usize) else {
        return resp::not_found();
    };
    let (bytes, etag) = slot.get_or_init(|| segment_bytes(index));
    let mut r = resp::bytes_response(StatusCode::OK, "video/mp2t", bytes.clone());
    resp::set(&mut r, ETAG, resp::hv(etag.clone()));
    resp::set(&mut r, LAST_MODIFIED, resp::http_date(20));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeOutcome::*;

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range("bytes=0-99", 1000),
            Partial { start: 0, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=10-", 1000),
            Partial {
                start: 10,
                end: 999
            }
        );
        assert_eq!(
            parse_range("bytes=-100", 1000),
            Partial {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            parse_range("bytes=-5000", 1000),
            Partial { start: 0, end: 999 }
        );
        assert_eq!(
            parse_range("bytes=990-5000", 1000),
            Partial {
                start: 990,
                end: 999
            }
        );
        assert_eq!(
            parse_range(" bytes = 5-5 ", 1000),
            Partial { start: 5, end: 5 }
        );
        assert_eq!(parse_range("BYTES=0-0", 1), Partial { start: 0, end: 0 });
        assert_eq!(
            parse_range("bytes=0-99999999999999999999999", 10),
            Partial { start: 0, end: 9 }
        );
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(parse_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=1000-2000", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=-1", 0), Unsatisfiable);
    }

    #[test]
    fn ignored_ranges() {
        for h in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=1-2,4-5",
            "items=0-1",
            "bytes=+1-2",
            "bytes=0x10-",
            "bytes=1",
        ] {
            assert_eq!(parse_range(h, 1000), Full, "{h:?}");
        }
    }

    #[test]
    fn pattern_body_chunks_match_pattern() {
        let buf = pattern_buffer();
        assert_eq!(buf.len(), CHUNK_SIZE + PERIOD);
        for (i, b) in buf.iter().enumerate() {
            assert_eq!(*b, pattern_byte(i as u64));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let body = PatternBody::new(1_000_003, 1_000_003 + 200_000);
            assert_eq!(http_body::Body::size_hint(&body).exact(), Some(200_000));
            let bytes = body.collect().await.unwrap().to_bytes();
            assert_eq!(bytes.len(), 200_000);
            for (i, b) in bytes.iter().enumerate() {
                assert_eq!(*b, pattern_byte(1_000_003 + i as u64));
            }
        });
    }

    #[test]
    fn segments_are_ts_shaped() {
        let (b, _) = segment_bytes(3);
        assert_eq!(b.len(), TS_PACKET * TS_PACKETS_PER_SEGMENT);
        assert!(b.chunks(TS_PACKET).all(|p| p[0] == 0x47));
        assert_ne!(segment_bytes(3).1, segment_bytes(4).1);
    }
}
