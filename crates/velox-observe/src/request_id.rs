//! Request ids: the client's own `X-Request-Id` when it is sane, else one Velox makes up.
//!
//! A generated id is `<16 hex digits, random per process>-<counter in hex>`. It is carried as
//! its counter and formatted only where it is written (the response, the forwarded request, the
//! log line): a cache hit never forwards, and nothing about an id is shared between threads.

use http::{HeaderName, HeaderValue};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::SystemTime;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A request's id.
pub enum RequestId {
    /// The client's, kept as sent (it is already on the request).
    Client(HeaderValue),
    Generated(GeneratedId),
}

impl RequestId {
    /// The client's id (its request's `X-Request-Id` field) if acceptable, else a new one.
    pub fn of(field: Option<&HeaderValue>) -> RequestId {
        match field {
            Some(client) if acceptable(client) => RequestId::Client(client.clone()),
            _ => RequestId::Generated(GeneratedId::next()),
        }
    }
}

/// A client's request id is kept if it is short printable ASCII; anything else is replaced.
fn acceptable(v: &HeaderValue) -> bool {
    (1..=128).contains(&v.len()) && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
}

/// An id Velox generated, as its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneratedId(u64);

/// The longest id: 16 hex digits, a dash and a 64-bit counter in hex.
pub const MAX_LEN: usize = 16 + 1 + 16;

/// Counters are taken from the shared one in blocks, so that generating an id is no atomic
/// operation.
const BLOCK: u64 = 1024;
static NEXT_BLOCK: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The thread's current block: (next counter, end of block).
    static BLOCK_LEFT: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// `<16 hex digits>-`, random per process (clock and process id).
fn prefix() -> &'static [u8; 17] {
    static PREFIX: OnceLock<[u8; 17]> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 32);
        let mut out = [b'-'; 17];
        let mut x = crate::splitmix(seed);
        for digit in out[..16].iter_mut().rev() {
            *digit = HEX[(x & 0xf) as usize];
            x >>= 4;
        }
        out
    })
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl GeneratedId {
    pub fn next() -> GeneratedId {
        BLOCK_LEFT.with(|left| {
            let (mut next, mut end) = left.get();
            if next == end {
                next = NEXT_BLOCK.fetch_add(BLOCK, Relaxed);
                end = next + BLOCK;
            }
            left.set((next + 1, end));
            GeneratedId(next)
        })
    }

    /// The counter the id is made of (the access log carries it so).
    pub fn counter(self) -> u64 {
        self.0
    }

    pub fn from_counter(counter: u64) -> GeneratedId {
        GeneratedId(counter)
    }

    /// Writes the id at the start of `to` (at least [`MAX_LEN`] bytes, else this panics);
    /// returns its length. Written in place, where it is sent or logged from: made on the stack
    /// and copied, its digits (stored a byte at a time, read back sixteen at a time) stall the
    /// CPU (see `json_line`).
    pub fn write(self, to: &mut [u8]) -> usize {
        to[..17].copy_from_slice(prefix());
        let digits = (64 - (self.0 | 1).leading_zeros()).div_ceil(4) as usize;
        let mut n = self.0;
        for digit in to[17..17 + digits].iter_mut().rev() {
            *digit = HEX[(n & 0xf) as usize];
            n >>= 4;
        }
        17 + digits
    }

    pub fn header_value(self) -> HeaderValue {
        let mut text = bytes::BytesMut::zeroed(MAX_LEN);
        let len = self.write(&mut text);
        text.truncate(len);
        // SAFETY: hex digits and a dash, all valid in a field value (debug builds check).
        unsafe { HeaderValue::from_maybe_shared_unchecked(text.freeze()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_prefix_dash_hex_counter() {
        let text = |n| GeneratedId(n).header_value().to_str().unwrap().to_owned();
        let (prefix, first) = text(0)
            .split_once('-')
            .map(|(p, c)| (p.to_owned(), c.to_owned()))
            .unwrap();
        assert_eq!(prefix.len(), 16);
        assert!(prefix.bytes().all(|b| HEX.contains(&b)));
        assert_eq!(first, "0");
        assert_eq!(text(10), format!("{prefix}-a"));
        assert_eq!(text(17), format!("{prefix}-11"));
        assert_eq!(text(u64::MAX), format!("{prefix}-ffffffffffffffff"));
    }

    #[test]
    fn ids_are_unique_across_threads_and_blocks() {
        let take = || {
            (0..3 * BLOCK)
                .map(|_| GeneratedId::next().0)
                .collect::<Vec<_>>()
        };
        let other = std::thread::spawn(take);
        let mut all = take();
        all.extend(other.join().unwrap());
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count);
    }

    #[test]
    fn client_ids_are_kept_when_sane() {
        assert!(matches!(RequestId::of(None), RequestId::Generated(_)));
        let client = HeaderValue::from_static("client-42");
        assert!(matches!(RequestId::of(Some(&client)), RequestId::Client(v) if v == "client-42"));
        for bad in ["has space", ""] {
            let bad = HeaderValue::from_static(bad);
            assert!(matches!(RequestId::of(Some(&bad)), RequestId::Generated(_)));
        }
        let long = HeaderValue::from_str(&"x".repeat(129)).unwrap();
        assert!(matches!(
            RequestId::of(Some(&long)),
            RequestId::Generated(_)
        ));
    }
}
