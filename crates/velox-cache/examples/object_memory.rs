//! Heap bytes the memory tier really holds per small object, against what it charges to
//! `memory_size`. Objects are shaped like the Zipf benchmark's: a 1 KiB body, a key of about 30
//! bytes and about 210 bytes of meta encoded into a 256-byte buffer, as the proxy does. Each is
//! read once (serving a chunk clones its `Bytes`). 300,000 objects go through a 100 MiB tier, so
//! it runs full, with evictions and a full ghost queue, as in the benchmark. Counts requested
//! sizes, so allocator rounding comes on top. The proxy's decoded copy of the meta is not made here
//! (the store charges it through `StoreConfig::decoded_charge`; velox-proxy's `cache/meta.rs`
//! tests that charge against what decoding allocates).
//!
//! `cargo run -p velox-cache --release --example object_memory`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use bytes::{BufMut, BytesMut};
use velox_cache::store::{Store, StoreConfig};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static A: Counting = Counting;

fn main() {
    const N: usize = 300_000;
    let dir = std::env::temp_dir().join("velox-object-memory");
    let mut cfg = StoreConfig::new(&dir);
    cfg.memory_bytes = 100 << 20;
    cfg.disk_bytes = 0;
    let store = Store::open(cfg).expect("open");
    let body = vec![b'z'; 1024];
    let before = LIVE.load(Ordering::Relaxed);
    for i in 0..N {
        let key = format!("http://127.0.0.1:40000/z/{}", 100_000 + i);
        let mut meta = BytesMut::with_capacity(256);
        meta.put_bytes(b'm', 210);
        let mut w = store.begin(&key, meta.freeze()).expect("store enabled");
        w.push(&body).expect("push");
        w.finish().expect("finish");
        let obj = store.get_memory(&key).expect("hit");
        drop(obj.chunk(0).expect("chunk"));
    }
    let s = store.stats().memory;
    let held = (LIVE.load(Ordering::Relaxed) - before) as f64 / s.objects as f64;
    println!(
        "{} objects held: heap {held:.0} bytes per object, charged {:.0}",
        s.objects,
        s.bytes as f64 / s.objects as f64
    );
}
