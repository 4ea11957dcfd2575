//! Read buffers, recycled per thread between requests.
//!
//! Every request reads its head into a fresh buffer (an idle client connection holds none, and
//! an idle pooled origin connection neither), and buffers of a few KiB are past the allocator's
//! fast path for small blocks. A finished request gives its empty buffer back here and the next
//! request on the thread takes it: its allocation is reused once every slice of it (header
//! values, body chunks) has been dropped, and `BytesMut::reserve` allocates anew otherwise.

use bytes::BytesMut;
use std::cell::RefCell;

/// At most this many spare buffers per thread and kind: one per request in flight is enough,
/// and the bound keeps an idle thread's spares to a few hundred KiB.
const KEEP: usize = 64;

/// The spare buffers of one kind.
pub struct Spares(RefCell<Vec<BytesMut>>);

thread_local! {
    /// Client connections' request heads (HTTP/1.1).
    pub static CLIENT: Spares = const { Spares(RefCell::new(Vec::new())) };
    /// Origin connections' response heads and bodies.
    pub static ORIGIN: Spares = const { Spares(RefCell::new(Vec::new())) };
}

impl Spares {
    /// An empty buffer with room for `capacity` bytes.
    pub fn take(&self, capacity: usize) -> BytesMut {
        match self.0.borrow_mut().pop() {
            Some(mut buf) => {
                buf.reserve(capacity);
                buf
            }
            None => BytesMut::with_capacity(capacity),
        }
    }

    /// Keeps `buf` for a later request if it is empty (bytes in it belong to its connection).
    pub fn give(&self, buf: BytesMut) {
        if !buf.is_empty() || buf.capacity() == 0 {
            return;
        }
        let mut spares = self.0.borrow_mut();
        if spares.len() < KEEP {
            spares.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_buffer_is_taken_again_with_its_allocation() {
        let spares = Spares(RefCell::new(Vec::new()));
        let mut buf = spares.take(4096);
        buf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let head = buf.split().freeze();
        let start = head.as_ptr();
        drop(head);
        spares.give(buf);
        let again = spares.take(4096);
        assert!(again.is_empty() && again.capacity() >= 4096);
        assert_eq!(again.as_ptr(), start, "the same allocation, reclaimed");
    }

    #[test]
    fn a_buffer_still_shared_is_not_written_over() {
        let spares = Spares(RefCell::new(Vec::new()));
        let mut buf = spares.take(64);
        buf.extend_from_slice(b"kept");
        let kept = buf.split().freeze();
        spares.give(buf);
        let mut again = spares.take(64);
        again.extend_from_slice(b"next");
        assert_eq!(&kept[..], b"kept");
    }

    #[test]
    fn buffers_holding_bytes_or_nothing_are_not_kept() {
        let spares = Spares(RefCell::new(Vec::new()));
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(b"pipelined");
        spares.give(buf);
        spares.give(BytesMut::new());
        assert!(spares.0.borrow().is_empty());
    }
}
