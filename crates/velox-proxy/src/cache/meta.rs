//! What is stored beside a cached body, and its compact binary encoding.
//! The store keeps it as opaque bytes; only this module knows the layout.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 2: tags added. Entries of another format decode to `None` (a miss) and are replaced.
const FORMAT: u8 = 2;
const KIND_RESPONSE: u8 = 0;
const KIND_VARIANTS: u8 = 1;
/// Fields a hit adds to a stored response's header map.
pub const SERVED_FIELDS: usize = 6;

/// Takes off the fields a stored response must not keep: `X-Request-Id`, which names the
/// exchange that filled the cache, not any it serves. Each client gets its own id (or the
/// origin's, with request ids off, on the responses that pass through); and with none stored,
/// a hit needs no lookup to take an echoed one off (`velox_observe::Scope::finish`).
pub fn drop_exchange_fields(headers: &mut HeaderMap) {
    headers.remove(&velox_observe::X_REQUEST_ID);
}

/// A stored response head with the facts its freshness is judged by. Its headers went through
/// [`drop_exchange_fields`].
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// RFC 9111 §4.2.3: the age it had on arrival, and when its head arrived.
    pub corrected_initial_age: Duration,
    pub response_time: SystemTime,
    /// Decided at store time from the origin's headers and the route's policy.
    pub freshness_lifetime: Duration,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
    pub must_revalidate: bool,
    /// Response `no-cache`: stored, but validated before every use.
    pub no_cache: bool,
    /// Purge tags from the origin's tag fields (Surrogate-Key, Cache-Tag, ...).
    pub tags: Vec<Box<str>>,
}

/// Stored under a URL whose responses vary: which request fields select the variant,
/// and a generation that makes every earlier variant unreachable once the URL is invalidated.
#[derive(Debug, Clone, PartialEq)]
pub struct Variants {
    pub vary: Vec<HeaderName>,
    pub generation: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Meta {
    Response(std::sync::Arc<StoredResponse>),
    Variants(Variants),
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl Meta {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(256);
        out.put_u8(FORMAT);
        match self {
            Meta::Response(r) => {
                out.put_u8(KIND_RESPONSE);
                out.put_u16(r.status.as_u16());
                out.put_u64(r.corrected_initial_age.as_millis() as u64);
                out.put_u64(millis(r.response_time));
                out.put_u64(r.freshness_lifetime.as_millis() as u64);
                out.put_u64(r.stale_while_revalidate.as_millis() as u64);
                out.put_u64(r.stale_if_error.as_millis() as u64);
                out.put_u8(u8::from(r.must_revalidate) | (u8::from(r.no_cache) << 1));
                // Callers bound tags in count and length (see `cache::tags_of`).
                out.put_u16(r.tags.len() as u16);
                for tag in &r.tags {
                    out.put_u16(tag.len() as u16);
                    out.put_slice(tag.as_bytes());
                }
                out.put_u32(r.headers.len() as u32);
                for (name, value) in &r.headers {
                    out.put_u16(name.as_str().len() as u16);
                    out.put_slice(name.as_str().as_bytes());
                    out.put_u32(value.len() as u32);
                    out.put_slice(value.as_bytes());
                }
            }
            Meta::Variants(v) => {
                out.put_u8(KIND_VARIANTS);
                out.put_u64(v.generation);
                out.put_u16(v.vary.len() as u16);
                for name in &v.vary {
                    out.put_u16(name.as_str().len() as u16);
                    out.put_slice(name.as_str().as_bytes());
                }
            }
        }
        out.freeze()
    }

    /// `None` for anything malformed: the entry is then treated as a miss.
    pub fn decode(mut bytes: Bytes) -> Option<Meta> {
        fn take(bytes: &mut Bytes, n: usize) -> Option<Bytes> {
            (bytes.remaining() >= n).then(|| bytes.split_to(n))
        }
        fn u8_(b: &mut Bytes) -> Option<u8> {
            (b.remaining() >= 1).then(|| b.get_u8())
        }
        fn u16_(b: &mut Bytes) -> Option<u16> {
            (b.remaining() >= 2).then(|| b.get_u16())
        }
        fn u32_(b: &mut Bytes) -> Option<u32> {
            (b.remaining() >= 4).then(|| b.get_u32())
        }
        fn u64_(b: &mut Bytes) -> Option<u64> {
            (b.remaining() >= 8).then(|| b.get_u64())
        }
        fn name(b: &mut Bytes) -> Option<HeaderName> {
            let len = u16_(b)? as usize;
            HeaderName::from_bytes(&take(b, len)?).ok()
        }
        if u8_(&mut bytes)? != FORMAT {
            return None;
        }
        match u8_(&mut bytes)? {
            KIND_RESPONSE => {
                let status = StatusCode::from_u16(u16_(&mut bytes)?).ok()?;
                let corrected_initial_age = Duration::from_millis(u64_(&mut bytes)?);
                let response_time = time(u64_(&mut bytes)?);
                let freshness_lifetime = Duration::from_millis(u64_(&mut bytes)?);
                let stale_while_revalidate = Duration::from_millis(u64_(&mut bytes)?);
                let stale_if_error = Duration::from_millis(u64_(&mut bytes)?);
                let flags = u8_(&mut bytes)?;
                let tag_count = u16_(&mut bytes)? as usize;
                let mut tags = Vec::with_capacity(tag_count.min(256));
                for _ in 0..tag_count {
                    let len = u16_(&mut bytes)? as usize;
                    let tag = std::str::from_utf8(&take(&mut bytes, len)?).ok()?.into();
                    tags.push(tag);
                }
                let count = u32_(&mut bytes)? as usize;
                // Room for the fields a hit adds (Age, Cache-Status, Content-Length, request
                // id, ...): each hit clones this map, and a clone keeps its index table.
                let mut headers = HeaderMap::with_capacity(count.min(256) + SERVED_FIELDS);
                for _ in 0..count {
                    let name = name(&mut bytes)?;
                    let len = u32_(&mut bytes)? as usize;
                    let value = HeaderValue::from_maybe_shared(take(&mut bytes, len)?).ok()?;
                    headers.append(name, value);
                }
                // Stored by an older build, which kept them.
                drop_exchange_fields(&mut headers);
                // Kept as a clone: it has the index table's room but holds only the entries
                // it has (the map built above reserved entries too, 6 x 88 bytes per object).
                let headers = headers.clone();
                Some(Meta::Response(std::sync::Arc::new(StoredResponse {
                    status,
                    headers,
                    corrected_initial_age,
                    response_time,
                    freshness_lifetime,
                    stale_while_revalidate,
                    stale_if_error,
                    must_revalidate: flags & 1 != 0,
                    no_cache: flags & 2 != 0,
                    tags,
                })))
            }
            KIND_VARIANTS => {
                let generation = u64_(&mut bytes)?;
                let count = u16_(&mut bytes)? as usize;
                let vary = (0..count)
                    .map(|_| name(&mut bytes))
                    .collect::<Option<Vec<_>>>()?;
                Some(Meta::Variants(Variants { vary, generation }))
            }
            _ => None,
        }
    }
}

/// Heap bytes of one header-map entry (`http`'s bucket: hash, name, value, links) and of each
/// further value of a name, as measured by the test below.
const MAP_ENTRY: usize = 104;
const MAP_EXTRA_VALUE: usize = 72;

/// What a decoded meta holds on the heap beyond the encoded meta, whose bytes its field values
/// share: charged to the memory tier when a hit first decodes an object it holds
/// (`StoreConfig::decoded_charge`), since the decoded form stays beside the object for its
/// lifetime. For a small object it is about as much as the body.
pub fn decoded_charge(decoded: &velox_cache::store::Decoded) -> u64 {
    // The two reference-counted boxes it lives in (the object's and the response's), and the
    // shared handle the values' buffer gets when they are split off it.
    const BOXES: usize = 2 * 16 + std::mem::size_of::<Meta>() + 32;
    let heap = match decoded.downcast_ref::<Meta>() {
        Some(Meta::Response(r)) => {
            let map = &r.headers;
            let names = map.keys_len();
            // The index table: a power of two, four-thirds of the map's capacity.
            let index = 4 * (map.capacity() * 4 / 3).next_power_of_two();
            // A name outside `http`'s standard set has its own buffer and shared handle (taken
            // for a standard one too: the map does not say which is which).
            let name_bytes: usize = map.keys().map(|n| n.as_str().len() + 24).sum();
            let tag_bytes = r.tags.capacity() * std::mem::size_of::<Box<str>>()
                + r.tags.iter().map(|t| t.len()).sum::<usize>();
            std::mem::size_of::<StoredResponse>()
                + MAP_ENTRY * names
                + MAP_EXTRA_VALUE * (map.len() - names)
                + index
                + name_bytes
                + tag_bytes
        }
        Some(Meta::Variants(v)) => {
            v.vary.capacity() * std::mem::size_of::<HeaderName>()
                + v.vary.iter().map(|n| n.as_str().len()).sum::<usize>()
        }
        None => return 0,
    };
    (BOXES + heap) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoredResponse {
        let mut headers = HeaderMap::new();
        headers.append("content-type", HeaderValue::from_static("text/html"));
        headers.append("set-thing", HeaderValue::from_static("a"));
        headers.append("set-thing", HeaderValue::from_static("b"));
        StoredResponse {
            status: StatusCode::NOT_FOUND,
            headers,
            corrected_initial_age: Duration::from_secs(3),
            response_time: time(1_700_000_000_250),
            freshness_lifetime: Duration::from_secs(60),
            stale_while_revalidate: Duration::from_secs(5),
            stale_if_error: Duration::ZERO,
            must_revalidate: true,
            no_cache: false,
            tags: vec!["product-42".into(), "é".into()],
        }
    }

    #[test]
    fn round_trips() {
        let response = Meta::Response(std::sync::Arc::new(sample()));
        assert_eq!(Meta::decode(response.encode()), Some(response));
        let variants = Meta::Variants(Variants {
            vary: vec![HeaderName::from_static("accept-encoding")],
            generation: 7,
        });
        assert_eq!(Meta::decode(variants.encode()), Some(variants));
    }

    #[test]
    fn a_decoded_map_has_room_for_the_fields_a_hit_adds() {
        let encoded = Meta::Response(std::sync::Arc::new(sample())).encode();
        let Some(Meta::Response(decoded)) = Meta::decode(encoded) else {
            panic!("decodes");
        };
        // A hit clones the map and adds these fields: the clone must not have to rehash.
        let served = decoded.headers.clone();
        assert!(served.capacity() >= served.len() + SERVED_FIELDS);
    }

    /// A response head as origins send them: standard fields, custom ones, a repeated one.
    fn typical(fields: usize, tags: usize) -> Meta {
        let mut headers = HeaderMap::new();
        let standard = [
            "content-type",
            "cache-control",
            "etag",
            "last-modified",
            "vary",
        ];
        for i in 0..fields {
            let value = HeaderValue::from_str(&format!("value {i} of a typical length")).unwrap();
            match i % 3 {
                0 => headers.append(standard[i / 3 % standard.len()], value),
                1 => headers.append(
                    format!("x-custom-field-{i}").parse::<HeaderName>().unwrap(),
                    value,
                ),
                _ => headers.append("set-cookie", value),
            };
        }
        let mut r = sample();
        r.headers = headers;
        r.tags = (0..tags).map(|i| format!("tag-{i}").into()).collect();
        Meta::Response(std::sync::Arc::new(r))
    }

    #[test]
    fn the_decoded_charge_covers_what_decoding_allocates() {
        for (fields, tags) in [(0, 0), (3, 0), (8, 1), (12, 3), (30, 0), (60, 10)] {
            let meta = typical(fields, tags).encode();
            // Decoded as `Store::decoded` keeps it: boxed, sharing the meta's buffer.
            let (allocated, kept) = crate::test_alloc::allocated_by(|| {
                let decoded = Meta::decode(meta.clone()).unwrap();
                std::sync::Arc::new(decoded) as std::sync::Arc<velox_cache::store::Decoded>
            });
            let charged = decoded_charge(&*kept) as usize;
            assert!(
                charged >= allocated && charged <= allocated + allocated / 4 + 64,
                "{fields} fields, {tags} tags: charged {charged}, allocated {allocated}"
            );
            drop(kept);
        }
        let variants = Meta::Variants(Variants {
            vary: vec![
                HeaderName::from_static("accept-encoding"),
                "x-device".parse().unwrap(),
            ],
            generation: 1,
        })
        .encode();
        let (allocated, kept) = crate::test_alloc::allocated_by(|| {
            std::sync::Arc::new(Meta::decode(variants.clone()).unwrap())
        });
        assert!(decoded_charge(&*kept) as usize >= allocated);
        assert_eq!(decoded_charge(&"another type"), 0);
    }

    #[test]
    fn truncated_or_foreign_bytes_decode_to_none() {
        let encoded = Meta::Response(std::sync::Arc::new(sample())).encode();
        for cut in 0..encoded.len() {
            assert_eq!(Meta::decode(encoded.slice(..cut)), None, "cut at {cut}");
        }
        assert_eq!(Meta::decode(Bytes::from_static(b"\x09\x00")), None);
        // The previous format (no tags) is a miss, never an object without its tags.
        let mut old = encoded.to_vec();
        old[0] = 1;
        assert_eq!(Meta::decode(Bytes::from(old)), None);
    }
}
