//! Store tests on real files in temp directories.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::disk::object_path;
use super::*;

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        dir: dir.to_path_buf(),
        memory_bytes: 4 << 20,
        disk_bytes: 64 << 20,
        chunk_size: 1024,
        max_object_bytes: 1 << 20,
        ..StoreConfig::new(dir)
    }
}

fn body_for(key: &str, len: usize) -> Vec<u8> {
    let seed = format::key_hash(1, key.as_bytes());
    (0..len)
        .map(|i| (seed.rotate_left((i % 64) as u32) as u8) ^ (i as u8))
        .collect()
}

fn put(store: &Store, key: &str, meta: &[u8], body: &[u8]) {
    let mut w = store
        .begin(key, Bytes::copy_from_slice(meta))
        .expect("store enabled");
    for piece in body.chunks(700) {
        w.push(piece).expect("push");
    }
    w.finish().expect("finish");
}

fn read_all(obj: &Object) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    for c in obj.body() {
        out.extend_from_slice(&c?);
    }
    Ok(out)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn object_files(dir: &Path) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|p| !p.ends_with("STATE"))
        .collect()
}

fn path_of(store: &Store, key: &str) -> PathBuf {
    let d = store.inner.disk.as_ref().expect("disk tier");
    object_path(d.root(), d.gen(), store.hash(key))
}

fn flip_byte(path: &Path, from_end: u64) {
    let mut b = fs::read(path).expect("read");
    let i = b.len() - from_end as usize;
    b[i] ^= 0x40;
    fs::write(path, b).expect("write");
}

#[test]
fn store_round_trip_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(config(dir.path())).expect("open");
    let body = body_for("k", 5000);
    put(&store, "k", b"meta", &body);
    let o = store.get_memory("k").expect("memory hit");
    assert!(o.is_in_memory());
    assert_eq!(o.key(), "k");
    assert_eq!(o.meta().as_ref(), b"meta");
    assert_eq!(o.len(), 5000);
    assert_eq!(o.chunk_size(), 1024);
    assert_eq!(o.chunk_count(), 5);
    assert_eq!(read_all(&o).expect("read"), body);
    assert!(store.get("other").is_none());
    // empty body
    put(&store, "empty", b"m", b"");
    let e = store.get("empty").expect("hit");
    assert!(e.is_empty());
    assert_eq!(e.body().count(), 0);
    let s = store.stats();
    assert_eq!(s.memory.objects, 2);
    assert!(s.memory.hits >= 2);
}

#[test]
fn the_memory_tier_charges_a_decoded_meta_once_it_is_made() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.disk_bytes = 0;
    cfg.decoded_charge = |decoded| {
        decoded
            .downcast_ref::<usize>()
            .map_or(0, |&n| n as u64 * 100)
    };
    let store = Store::open(cfg).expect("open");
    put(&store, "k", b"meta of 20 bytes....", &body_for("k", 3000));
    let plain = store.stats().memory.bytes;
    let o = store.get_memory("k").expect("memory hit");
    let decode = |meta: &Bytes| Some(meta.len());
    assert_eq!(store.decoded(&o, decode).as_deref(), Some(&20));
    assert_eq!(store.stats().memory.bytes, plain + 2000);
    // Made once, charged once.
    assert_eq!(store.decoded(&o, decode).as_deref(), Some(&20));
    assert_eq!(store.stats().memory.bytes, plain + 2000);
    // A failed decoding keeps nothing and is not charged.
    put(&store, "bad", b"meta of 20 bytes....", b"body");
    let before = store.stats().memory.bytes;
    let bad = store.get_memory("bad").expect("memory hit");
    assert!(store.decoded(&bad, |_| None::<usize>).is_none());
    assert_eq!(store.stats().memory.bytes, before);
    // An object the tier no longer holds is not charged for its decoding.
    assert!(store.remove("k"));
    let gone = store.stats().memory.bytes;
    let fresh = store.get("bad").expect("still held");
    drop(fresh);
    assert_eq!(store.decoded(&o, decode).as_deref(), Some(&20));
    assert_eq!(store.stats().memory.bytes, gone);
}

#[test]
fn a_decoding_that_outgrows_the_tier_evicts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.disk_bytes = 0;
    cfg.memory_bytes = 64 * 1024;
    cfg.decoded_charge = |_| 63 * 1024;
    let store = Store::open(cfg).expect("open");
    put(&store, "a", b"meta", &body_for("a", 1000));
    put(&store, "b", b"meta", &body_for("b", 1000));
    let a = store.get_memory("a").expect("held");
    assert!(store.decoded(&a, |m: &Bytes| Some(m.len())).is_some());
    let s = store.stats();
    assert!(s.memory.bytes <= 64 * 1024, "{s:?}");
    assert!(s.memory.objects < 2, "{s:?}");
}

#[test]
fn store_round_trip_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = body_for("persist", 10_000);
    {
        let store = Store::open(config(dir.path())).expect("open");
        put(&store, "persist", b"headers", &body);
        put(&store, "empty", b"h", b"");
    } // drop drains the write queue
    let store = Store::open(config(dir.path())).expect("reopen");
    store.wait_indexed();
    assert_eq!(store.stats().disk.objects, 2);
    assert!(store.get_memory("persist").is_none());
    let o = store.get("persist").expect("disk hit after restart");
    assert_eq!(o.meta().as_ref(), b"headers");
    assert_eq!(read_all(&o).expect("read"), body);
    assert!(o.is_in_memory(), "promoted to memory");
    assert!(store.get_memory("persist").is_some());
    assert_eq!(
        read_all(&store.get("empty").expect("hit")).expect("read"),
        b""
    );
    let s = store.stats();
    assert_eq!(s.disk.hits, 2);
    assert_eq!(s.disk_corrupt, 0);
}

#[test]
fn store_range_reads_only_needed_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.memory_bytes = 0; // with a body too large to verify whole: a lazy disk object
    cfg.max_object_bytes = 4 << 20;
    let store = Store::open(cfg).expect("open");
    let tail_at = VERIFY_WHOLE_BYTES as usize + 10 * 1024;
    let body = body_for("range", tail_at + 17);
    put(&store, "range", b"", &body);
    store.flush();
    let o = store.get("range").expect("disk hit");
    assert!(!o.is_in_memory());
    let before = store.stats().disk_chunk_reads;
    let parts: Vec<Bytes> = o.read(2500, 4200).map(|r| r.expect("chunk")).collect();
    assert_eq!(parts.len(), 3); // chunks 2, 3, 4
    assert_eq!(store.stats().disk_chunk_reads - before, 3);
    assert_eq!(parts.concat(), &body[2500..=4200]);
    // the tail, a single byte, and invalid ranges
    let tail: Vec<u8> = o
        .read(tail_at as u64, tail_at as u64 + 16)
        .map(|r| r.expect("chunk"))
        .collect::<Vec<_>>()
        .concat();
    assert_eq!(tail, &body[tail_at..]);
    let one: Vec<Bytes> = o.read(0, 0).map(|r| r.expect("chunk")).collect();
    assert_eq!(one.concat(), &body[..1]);
    assert!(matches!(
        o.read(5, 4).next(),
        Some(Err(StoreError::InvalidRange { .. }))
    ));
    assert!(matches!(
        o.read(0, body.len() as u64).next(),
        Some(Err(StoreError::InvalidRange { .. }))
    ));
    // an owned reader also works and memory ranges are zero-copy slices
    let arc_parts: Vec<Bytes> = o.read_arc(1023, 1024).map(|r| r.expect("chunk")).collect();
    assert_eq!(arc_parts.len(), 2);
}

#[test]
fn store_memory_eviction_is_bounded_and_scan_resistant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.disk_bytes = 0;
    cfg.memory_bytes = 200 * 1024;
    let store = Store::open(cfg).expect("open");
    let body = vec![7u8; 1024];
    let fetch = |key: &str| {
        if store.get(key).is_none() {
            put(&store, key, b"m", &body);
        }
    };
    // a working set of 60 objects (~80 KiB) used three times
    for _ in 0..3 {
        for i in 0..60 {
            fetch(&format!("hot{i}"));
        }
    }
    // a one-time scan of 5,000 objects (~30x the memory)
    for i in 0..5000 {
        fetch(&format!("scan{i}"));
        assert!(store.stats().memory.bytes <= 200 * 1024);
    }
    let survivors = (0..60)
        .filter(|i| store.get_memory(&format!("hot{i}")).is_some())
        .count();
    assert_eq!(survivors, 60, "the scan evicted the working set");
    let s = store.stats();
    assert!(s.memory.evictions >= 4800, "{s:?}");
    assert!(s.memory.bytes <= 200 * 1024);
}

#[test]
fn store_disk_bound_respected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.memory_bytes = 0;
    cfg.disk_bytes = 100 * 1024;
    let store = Store::open(cfg.clone()).expect("open");
    for i in 0..200 {
        put(&store, &format!("d{i}"), b"meta", &body_for("x", 3000));
        if i % 50 == 0 {
            store.flush();
        }
    }
    store.flush();
    let s = store.stats();
    assert!(s.disk.bytes <= 100 * 1024, "{s:?}");
    assert!(s.disk.evictions > 150, "{s:?}");
    let on_disk: u64 = object_files(dir.path())
        .iter()
        .map(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    assert!(on_disk <= 100 * 1024, "files hold {on_disk} bytes");
    // FIFO: the newest object survives, the oldest is gone
    assert!(store.get("d199").is_some());
    assert!(store.get("d0").is_none());
    drop(store);
    // the bound also holds when reopening with a smaller capacity
    cfg.disk_bytes = 20 * 1024;
    let store = Store::open(cfg).expect("reopen");
    store.wait_indexed();
    assert!(store.stats().disk.bytes <= 20 * 1024);
    assert!(store.get("d199").is_some());
}

#[test]
fn store_flipped_byte_is_a_miss_and_file_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    // promoted read: the whole body is verified at get()
    let store = Store::open(config(dir.path())).expect("open");
    put(&store, "flip", b"meta", &body_for("flip", 4000));
    store.flush();
    let path = path_of(&store, "flip");
    assert!(path.exists());
    drop(store);
    flip_byte(&path, 10);
    let store = Store::open(config(dir.path())).expect("reopen");
    assert!(store.get("flip").is_none(), "corrupt body served");
    assert!(!path.exists(), "corrupt file not removed");
    assert_eq!(store.stats().disk_corrupt, 1);
    assert!(store.get("flip").is_none());
    drop(store);

    // disk only, small: verified whole by get(), so the corruption is a miss up front
    let mut cfg = config(dir.path());
    cfg.memory_bytes = 0;
    cfg.max_object_bytes = 4 << 20;
    let store = Store::open(cfg).expect("open");
    put(&store, "small", b"meta", &body_for("small", 4000));
    store.flush();
    let path = path_of(&store, "small");
    flip_byte(&path, 10);
    assert!(store.get("small").is_none(), "corrupt body returned");
    assert!(!path.exists());

    // lazy read of a large body: the bad chunk errors, the file is removed, the next get misses
    let len = VERIFY_WHOLE_BYTES as usize + 4000;
    put(&store, "lazy", b"meta", &body_for("lazy", len));
    store.flush();
    let path = path_of(&store, "lazy");
    flip_byte(&path, 10);
    let o = store.get("lazy").expect("header is intact");
    assert!(!o.is_in_memory());
    assert!(o.chunk(0).is_ok());
    let last = o.chunk_count() - 1;
    assert!(matches!(o.chunk(last), Err(StoreError::Corrupt)));
    assert!(!path.exists());
    assert!(store.get("lazy").is_none());

    // a flipped byte in the meta or header is caught before anything is returned
    put(&store, "meta", b"some meta", &body_for("meta", 100));
    store.flush();
    let path = path_of(&store, "meta");
    let len = fs::metadata(&path).expect("meta").len();
    flip_byte(&path, len - 60); // inside the key/meta area
    assert!(store.get("meta").is_none());
    assert!(!path.exists());
}

#[test]
fn store_truncated_files_and_temp_files_are_cleaned_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (torn, good) = {
        let store = Store::open(config(dir.path())).expect("open");
        put(&store, "torn", b"m", &body_for("torn", 5000));
        put(&store, "good", b"m", &body_for("good", 5000));
        store.flush();
        (path_of(&store, "torn"), path_of(&store, "good"))
    };
    // kill -9 in the middle of a write: a temp file (also where older versions put them); and
    // a torn object file
    fs::create_dir_all(dir.path().join("tmp")).expect("mkdir");
    fs::write(dir.path().join("tmp").join("00000000000000ff"), b"partial").expect("tmp");
    let temp = good.with_file_name("t00000000000000ff");
    fs::write(&temp, b"partial").expect("temp");
    let len = fs::metadata(&torn).expect("meta").len();
    let f = fs::OpenOptions::new()
        .write(true)
        .open(&torn)
        .expect("open");
    f.set_len(len / 2).expect("truncate");
    drop(f);
    let stray = torn.with_file_name("not-an-object");
    fs::write(&stray, b"junk").expect("stray");

    let store = Store::open(config(dir.path())).expect("reopen");
    assert!(store.get("torn").is_none());
    store.wait_indexed();
    assert!(!torn.exists());
    assert!(!stray.exists());
    assert!(!temp.exists());
    assert!(!dir.path().join("tmp").exists());
    assert_eq!(
        read_all(&store.get("good").expect("hit")).expect("read"),
        body_for("good", 5000)
    );

    // truncation while running is caught at read time
    drop(store);
    let mut cfg = config(dir.path());
    cfg.memory_bytes = 0;
    let store = Store::open(cfg).expect("reopen");
    let f = fs::OpenOptions::new()
        .write(true)
        .open(&good)
        .expect("open");
    f.set_len(100).expect("truncate");
    drop(f);
    assert!(store.get("good").is_none());
    assert!(!good.exists());
    store.wait_indexed();
    assert_eq!(store.stats().disk.objects, 0);
}

#[test]
fn store_other_key_at_same_hash_is_a_miss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.memory_bytes = 0;
    let store = Store::open(cfg.clone()).expect("open");
    put(&store, "a", b"A", &body_for("a", 3000));
    put(&store, "b", b"B", &body_for("b", 3000));
    store.flush();
    // the file for "b" now holds "a" (as a 64-bit hash collision would)
    fs::copy(path_of(&store, "a"), path_of(&store, "b")).expect("copy");
    assert!(store.get("b").is_none(), "served another key's object");
    assert_eq!(store.stats().disk_collisions, 1);
    assert_eq!(store.get("a").expect("a").meta().as_ref(), b"A");
    let b_path = path_of(&store, "b");
    drop(store);
    let store = Store::open(cfg).expect("reopen");
    store.wait_indexed();
    assert!(!b_path.exists(), "misnamed file kept at open");
    assert!(store.get("b").is_none());
    assert!(store.get("a").is_some());
}

#[test]
fn store_clear_is_instant_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(config(dir.path())).expect("open");
    for i in 0..20 {
        put(&store, &format!("old{i}"), b"m", &body_for("o", 2000));
    }
    store.flush();
    let old_gen_dir = path_of(&store, "old0")
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .expect("gen dir");
    let mut late = store.begin("late", Bytes::new()).expect("writer");
    late.push(b"begun before the clear").expect("push");

    store.clear();
    for i in 0..20 {
        assert!(store.get(&format!("old{i}")).is_none());
    }
    late.finish().expect("finish");
    assert!(
        store.get("late").is_none(),
        "a write begun before clear is discarded"
    );
    put(&store, "new", b"m", b"after");
    assert!(store.get("new").is_some());
    store.flush();
    assert!(!old_gen_dir.exists(), "old generation not deleted");
    assert_eq!(store.stats().generation, 1);
    drop(store);

    let store = Store::open(config(dir.path())).expect("reopen");
    assert!(store.get("old0").is_none());
    assert!(store.get("late").is_none());
    assert_eq!(
        read_all(&store.get("new").expect("new")).expect("read"),
        b"after"
    );
    assert_eq!(store.stats().generation, 1);
}

#[test]
fn store_max_object_bytes_enforced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.max_object_bytes = 5000;
    let store = Store::open(cfg).expect("open");
    let mut w = store.begin("big", Bytes::new()).expect("writer");
    w.push(&[1u8; 3000]).expect("within limit");
    assert!(matches!(
        w.push(&[1u8; 3000]),
        Err(StoreError::TooLarge { limit: 5000 })
    ));
    assert!(matches!(w.push(b"x"), Err(StoreError::Abandoned)));
    assert!(matches!(w.finish(), Err(StoreError::Abandoned)));
    store.flush();
    assert!(store.get("big").is_none());
    put(&store, "exact", b"", &[2u8; 5000]);
    assert_eq!(store.get("exact").expect("exact").len(), 5000);

    let mut cfg = config(dir.path());
    cfg.max_object_bytes = 0;
    drop(store);
    assert!(Store::open(cfg)
        .expect("open")
        .begin("k", Bytes::new())
        .is_none());
}

#[test]
fn store_abandoned_writer_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(config(dir.path())).expect("open");
    put(&store, "kept", b"v1", b"old body");
    let mut w = store
        .begin("kept", Bytes::from_static(b"v2"))
        .expect("writer");
    w.push(b"new body that never finishes").expect("push");
    drop(w);
    let mut w = store.begin("never", Bytes::new()).expect("writer");
    w.push(b"abc").expect("push");
    drop(w);
    store.flush();
    assert!(store.get("never").is_none());
    assert_eq!(store.get("kept").expect("kept").meta().as_ref(), b"v1");
    assert_eq!(object_files(dir.path()).len(), 1);
    assert_eq!(store.stats().disk.objects, 1);
}

#[test]
fn store_replace_and_remove() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(config(dir.path())).expect("open");
    put(&store, "k", b"v1", b"one");
    store.flush();
    put(&store, "k", b"v2", b"two");
    assert_eq!(store.get("k").expect("k").meta().as_ref(), b"v2");
    put(&store, "gone", b"", b"x");
    assert!(store.remove("gone"));
    assert!(store.get("gone").is_none());
    assert!(!store.remove("gone"));
    drop(store);
    let store = Store::open(config(dir.path())).expect("reopen");
    let o = store.get("k").expect("k");
    assert_eq!(o.meta().as_ref(), b"v2");
    assert_eq!(read_all(&o).expect("read"), b"two");
    assert!(store.get("gone").is_none(), "removed object came back");
    assert_eq!(object_files(dir.path()).len(), 1);
}

#[test]
fn store_concurrent_gets_and_puts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.memory_bytes = 64 * 1024; // small, so there is eviction and disk promotion too
    let store = Arc::new(Store::open(cfg).expect("open"));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut hits = 0;
                for i in 0..600 {
                    let key = format!("key{}", (i * 7 + t * 13) % 80);
                    let len = 500 + (format::key_hash(3, key.as_bytes()) % 5000) as usize;
                    match store.get(&key) {
                        Some(o) => {
                            hits += 1;
                            assert_eq!(o.key(), key);
                            assert_eq!(o.meta().as_ref(), key.as_bytes());
                            let body = read_all(&o).expect("read");
                            assert_eq!(body, body_for(&key, len), "wrong body for {key}");
                        }
                        None => put(&store, &key, key.as_bytes(), &body_for(&key, len)),
                    }
                    if i % 97 == 0 {
                        store.remove(&key);
                    }
                }
                hits
            })
        })
        .collect();
    let hits: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    assert!(hits > 1000, "{hits} {:?}", store.stats());
    let s = store.stats();
    assert_eq!(s.disk_corrupt, 0);
    assert!(s.memory.bytes <= 64 * 1024);
}

/// Sum of the file sizes under `dir`, each rounded up to 256 as the index counts them.
fn indexed_bytes(dir: &Path) -> u64 {
    object_files(dir)
        .iter()
        .map(|p| fs::metadata(p).map_or(0, |m| m.len().div_ceil(256) * 256))
        .sum()
}

#[test]
fn store_serves_from_disk_before_the_index_is_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(config(dir.path())).expect("open");
        for i in 0..20 {
            let key = format!("k{i}");
            put(&store, &key, key.as_bytes(), &body_for(&key, 1500));
        }
    }
    let store = Store::open_unindexed(config(dir.path())).expect("reopen");
    assert_eq!(store.stats().disk.objects, 0, "nothing indexed yet");
    // hits come from the files themselves
    let o = store.get("k1").expect("hit before the rebuild");
    assert_eq!(read_all(&o).expect("read"), body_for("k1", 1500));
    assert!(store.disk_may_have("never-stored"));
    assert!(store.get("never-stored").is_none());
    // changes made meanwhile are not undone by the rebuild
    assert!(store.remove("k2"));
    put(&store, "k3", b"v2", b"replaced");
    store.flush();
    let corrupt = path_of(&store, "k4");
    flip_byte(&corrupt, 10);
    assert!(store.get("k4").is_none());
    assert!(!corrupt.exists(), "corrupt unindexed file not removed");
    put(&store, "new", b"n", b"written during the rebuild");
    store.flush();

    store.rebuild_index();
    let s = store.stats();
    assert_eq!(s.disk.objects, 19, "{s:?}"); // 20 - k2 - k4 + new
    assert_eq!(s.disk.bytes, indexed_bytes(dir.path()));
    assert!(store.get("k2").is_none(), "removed object came back");
    assert!(store.get("k4").is_none());
    let k3 = store.get("k3").expect("k3");
    assert_eq!(k3.meta().as_ref(), b"v2");
    assert_eq!(read_all(&k3).expect("read"), b"replaced");
    assert!(store.get("new").is_some());
    assert!(!store.disk_may_have("never-stored"));
    // FIFO: the files of the earlier run are older than what this run wrote
    drop(store);
    let mut cfg = config(dir.path());
    cfg.disk_bytes = 4 * 1024;
    let store = Store::open(cfg).expect("reopen smaller");
    store.wait_indexed();
    assert!(store.stats().disk.bytes <= 4 * 1024);
    assert!(store.get("new").is_some(), "the newest object was evicted");
    assert!(store.get("k0").is_none(), "the oldest object survived");
}

#[test]
fn store_clear_during_the_index_rebuild_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(config(dir.path())).expect("open");
        put(&store, "old", b"m", b"before the clear");
    }
    let store = Store::open_unindexed(config(dir.path())).expect("reopen");
    store.clear();
    store.rebuild_index();
    store.wait_indexed();
    assert!(store.get("old").is_none());
    assert_eq!(store.stats().disk.objects, 0);
    put(&store, "after", b"m", b"x");
    store.flush();
    drop(store);
    let store = Store::open(config(dir.path())).expect("reopen");
    store.wait_indexed();
    assert!(store.get("old").is_none());
    assert!(store.get("after").is_some());
    assert_eq!(store.stats().disk.objects, 1);
}

/// Commits `n` small objects as fast as possible, waiting for disk room or not.
async fn flood(store: &Store, n: usize, wait: bool) {
    for i in 0..n {
        let mut w = store.begin(&format!("f{i}"), Bytes::new()).expect("writer");
        w.push(&[7u8; 200]).expect("push");
        if wait {
            w.finish_waiting().await.expect("finish");
        } else {
            w.finish().expect("finish");
        }
    }
}

#[tokio::test]
async fn store_full_write_queue_makes_fills_wait_not_skip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.memory_bytes = 0;
    cfg.disk_queue_wait = std::time::Duration::from_secs(30);
    let store = Store::open(cfg).expect("open");
    flood(&store, 5000, true).await;
    store.flush();
    let s = store.stats();
    assert_eq!(s.disk_write_skipped, 0, "{s:?}");
    assert_eq!(s.disk.objects, 5000, "{s:?}");
    assert_eq!(object_files(dir.path()).len(), 5000);
}

#[tokio::test]
async fn store_write_queue_wait_is_bounded() {
    // Without waiting, a flood overruns the writer: the skipped copies are counted, and the
    // queue (and so memory) stays bounded.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.memory_bytes = 0;
    cfg.disk_queue_wait = std::time::Duration::ZERO;
    let store = Store::open(cfg).expect("open");
    flood(&store, 20_000, true).await;
    store.flush();
    let s = store.stats();
    assert!(s.disk_write_skipped > 0, "{s:?}");
    assert_eq!(s.disk.objects + s.disk_write_skipped, 20_000, "{s:?}");
    flood(&store, 100, false).await;
    store.flush();
}
