//! Storage tiers: a byte-bounded S3-FIFO memory tier and a persistent, checksummed disk tier.
//!
//! # Why not `foyer`
//!
//! `foyer` (a hybrid memory + disk cache) was evaluated first. It is a capable engine, but a poor
//! fit here: (1) build weight — it pulls in a large tree (its own memory/storage/common crates,
//! serde + a codec, metrics and tracing integrations, async plumbing), expensive on the 2 shared
//! cores; (2) values are opaque serialised blobs read and written whole, so there is no chunked
//! body and no range read that touches only the needed chunks, and a value must be fully in
//! memory before insertion; (3) its disk engine can only hold an entry whose encoded size fits a
//! block/flush buffer, and larger entries are dropped inside the flusher without telling the
//! caller (see e.g. opensearch-project/OpenSearch#22946) — we would have to split bodies into
//! sub-entries ourselves and then handle partially evicted objects; (4) persistence across
//! restarts depends on recovery modes and flush policy (users report recovering 0 entries after a
//! restart with the wrong settings, foyer-rs/foyer#1018), and the "whole cache emptied instantly
//! and never resurrected" and "a corrupt entry is never served, and is deleted" guarantees would
//! still be ours to build. A small own store with exactly our semantics is less code than the
//! adapter we would need around foyer, and has no dependencies beyond `bytes` and `crc32fast`.
//!
//! # Design
//!
//! * **Objects** are a key, opaque `meta` bytes (the caller's serialised status/headers/timing)
//!   and a body in fixed-size chunks (`Bytes`, so a memory hit is zero-copy). An [`Object`] is an
//!   immutable snapshot; a range read touches only the chunks it needs.
//! * **Writes** stream through an [`ObjectWriter`] and commit atomically on
//!   [`ObjectWriter::finish`]: the object goes to memory at once (if it fits) and is queued for
//!   the disk; a dropped writer leaves nothing behind.
//! * **Memory tier** (`s3fifo.rs`): S3-FIFO bounded in charged bytes (meta + body + key + a
//!   per-object overhead + the caller's decoded meta once made, [`Store::decoded`]), sharded by key hash once each shard gets at least 8 MiB. A hit is a
//!   hash, an uncontended mutex and an `Arc` clone.
//! * **Disk tier** (`disk.rs`): one file per object (format in `format.rs`) named by the salted
//!   64-bit key hash, under a directory per namespace generation; every chunk carries a CRC32,
//!   the header and meta carry their own. A single background thread writes temp files and
//!   renames them into place. Its queue is bounded: [`ObjectWriter::finish_waiting`] waits
//!   (asynchronously, up to [`StoreConfig::disk_queue_wait`]) for room, [`ObjectWriter::finish`]
//!   does not; a disk copy that finds no room is skipped and counted.
//!   The index holds only `hash → (seq, size)` plus a FIFO for eviction; the full key is checked
//!   against the file header on every read, so a hash collision is a miss, never another
//!   object. `open` returns at once: a background thread rebuilds the index from headers
//!   (deleting torn, truncated or foreign files) while lookups of keys not yet indexed open the
//!   key's file directly.
//! * **Clear** bumps and persists a generation number; the old generation's directory becomes
//!   unreachable at once and is deleted in the background (or at the next open).
//!
//! A disk hit up to [`VERIFY_WHOLE_BYTES`] (or small enough to promote to memory) is read and
//! verified whole by `get`, so corruption is a miss before anything is served. A larger one is
//! read lazily: its header and meta are verified by `get`, each chunk when it is read. A
//! corrupt chunk then surfaces as [`StoreError::Corrupt`] from [`Object::chunk`] or the range
//! reader (the entry is removed at that moment); a response that already started must be
//! aborted rather than completed with other bytes.
//!
//! [`Store::get`] may read from disk on a memory miss (a header read, and the body when the
//! object is promoted to memory); call it where blocking briefly is acceptable
//! (`spawn_blocking`), or use [`Store::get_memory`] on the async path first.

mod disk;
mod format;
mod s3fifo;
#[cfg(test)]
mod tests;

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use disk::{DiskBody, DiskTier, Found};
use s3fifo::S3Fifo;

/// Default body chunk size.
pub const DEFAULT_CHUNK_SIZE: usize = 64 * 1024;
/// Fixed per-object memory overhead charged to the memory tier: the `Object` and its `Arc`
/// (128 bytes), its map slot, queue slots and ghost entry (about 128 with the tables' slack).
/// `examples/object_memory` measures the total against the charge.
const OBJECT_OVERHEAD: u64 = 256;
/// Per-chunk memory overhead: the `Bytes` handle and the shared header a first clone allocates.
const CHUNK_OVERHEAD: u64 = 56;
/// Disk bodies up to this size are verified whole before `get` returns them: a corrupt one is
/// a clean miss rather than a response cut short.
pub const VERIFY_WHOLE_BYTES: u64 = 1024 * 1024;
/// Default of [`StoreConfig::disk_queue_wait`]: long enough to ride out a writeback stall of
/// the disk (over 1 s seen on a busy machine), short enough to bound a miss on a stuck one.
pub const DEFAULT_DISK_QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Store configuration.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directory of the disk tier (created if missing).
    pub dir: PathBuf,
    /// Memory tier capacity in bytes; 0 disables the memory tier.
    pub memory_bytes: u64,
    /// Disk tier capacity in bytes; 0 disables the disk tier (and persistence).
    pub disk_bytes: u64,
    /// Body chunk size; 0 means [`DEFAULT_CHUNK_SIZE`].
    pub chunk_size: usize,
    /// Largest body stored; larger bodies make the writer fail (stream them through uncached).
    pub max_object_bytes: u64,
    /// How long [`ObjectWriter::finish_waiting`] waits for room in a full disk write queue
    /// before it skips the disk copy.
    pub disk_queue_wait: Duration,
    /// Bytes the caller's decoded form of an object's meta ([`Store::decoded`]) holds: charged
    /// to the memory tier once an object held there is decoded, so that the tier's budget covers
    /// it. By default nothing.
    pub decoded_charge: fn(decoded: &Decoded) -> u64,
}

impl StoreConfig {
    /// A configuration with defaults: 256 MiB memory, 1 GiB disk, 64 KiB chunks, 64 MiB objects.
    pub fn new(dir: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            dir: dir.into(),
            memory_bytes: 256 * 1024 * 1024,
            disk_bytes: 1024 * 1024 * 1024,
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_object_bytes: 64 * 1024 * 1024,
            disk_queue_wait: DEFAULT_DISK_QUEUE_WAIT,
            decoded_charge: |_| 0,
        }
    }
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The body exceeds the configured maximum (or what the tiers can hold).
    #[error("object exceeds the cacheable size limit of {limit} bytes")]
    TooLarge {
        /// The limit that was exceeded.
        limit: u64,
    },
    /// The writer already failed; nothing will be stored.
    #[error("the cache write was abandoned")]
    Abandoned,
    /// Stored data failed its checksum; the entry has been removed.
    #[error("stored object is corrupt")]
    Corrupt,
    /// A range outside the object.
    #[error("range {start}-{end} is outside an object of {len} bytes")]
    InvalidRange {
        /// First byte asked for.
        start: u64,
        /// Last byte asked for (inclusive).
        end: u64,
        /// Object length.
        len: u64,
    },
    /// An I/O error reading from disk.
    #[error("cache i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Counters of one tier.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TierStats {
    /// Objects held.
    pub objects: u64,
    /// Bytes held (memory: charged bytes; disk: file bytes, rounded up to 256).
    pub bytes: u64,
    /// Objects evicted to make room (since open).
    pub evictions: u64,
    /// Lookups answered by this tier.
    pub hits: u64,
    /// Lookups this tier could not answer.
    pub misses: u64,
}

/// Store statistics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Memory tier.
    pub memory: TierStats,
    /// Disk tier.
    pub disk: TierStats,
    /// Disk entries found corrupt (and removed).
    pub disk_corrupt: u64,
    /// Disk lookups whose file held another key with the same hash.
    pub disk_collisions: u64,
    /// Objects written to disk.
    pub disk_writes: u64,
    /// Disk copies skipped because the write queue stayed full (or the object too big for disk).
    pub disk_write_skipped: u64,
    /// Failed disk writes.
    pub disk_write_errors: u64,
    /// Body reads issued to disk (one per chunk read lazily, one per promoted body).
    pub disk_chunk_reads: u64,
    /// Estimated heap bytes of the disk index.
    pub disk_index_bytes: u64,
    /// Current namespace generation.
    pub generation: u64,
}

pub(crate) enum Body {
    Memory(Vec<Bytes>),
    /// Boxed: the rarer variant, and three times the size of the other.
    Disk(Box<DiskBody>),
}

/// The caller's decoded form of an object's meta, of the type its decoder made.
pub type Decoded = dyn std::any::Any + Send + Sync;

/// An immutable stored object: meta plus a chunked body, in memory or read lazily from disk.
pub struct Object {
    key: Box<str>,
    meta: Bytes,
    len: u64,
    chunk_size: usize,
    body: Body,
    /// The caller's decoded form of `meta`, made once per object (see [`Store::decoded`]).
    decoded: std::sync::OnceLock<Option<Arc<Decoded>>>,
}

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Object")
            .field("key", &self.key)
            .field("meta_len", &self.meta.len())
            .field("len", &self.len)
            .field("chunk_size", &self.chunk_size)
            .field("in_memory", &self.is_in_memory())
            .finish()
    }
}

impl Object {
    /// `meta` decoded by `decode`, once per object (see [`Store::decoded`], which charges it).
    fn decoded<T: std::any::Any + Send + Sync>(
        &self,
        decode: impl FnOnce(&Bytes) -> Option<T>,
    ) -> Option<Arc<T>> {
        let any = self
            .decoded
            .get_or_init(|| decode(&self.meta).map(|t| Arc::new(t) as Arc<Decoded>))
            .clone()?;
        any.downcast::<T>().ok()
    }

    /// The key the object was stored under.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The caller's opaque metadata.
    pub fn meta(&self) -> &Bytes {
        &self.meta
    }

    /// Body length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Chunk size of the body (every chunk but the last has exactly this length).
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Number of body chunks.
    pub fn chunk_count(&self) -> usize {
        self.len.div_ceil(self.chunk_size as u64) as usize
    }

    /// Whether the body is held in memory (otherwise chunks are read from disk on demand).
    pub fn is_in_memory(&self) -> bool {
        matches!(self.body, Body::Memory(_))
    }

    /// Chunk `i` of the body. From disk, the chunk's checksum is verified; a mismatch removes
    /// the entry and returns [`StoreError::Corrupt`].
    pub fn chunk(&self, i: usize) -> Result<Bytes, StoreError> {
        if i >= self.chunk_count() {
            let start = i as u64 * self.chunk_size as u64;
            return Err(StoreError::InvalidRange {
                start,
                end: start,
                len: self.len,
            });
        }
        match &self.body {
            Body::Memory(chunks) => chunks.get(i).cloned().ok_or(StoreError::Corrupt),
            Body::Disk(d) => match d.disk.upgrade() {
                Some(shared) => shared.read_chunk(d, self.len, self.chunk_size, i),
                None => Err(StoreError::Io(std::io::Error::other("store closed"))),
            },
        }
    }

    /// The bytes `start..=end_inclusive`, as zero-copy slices of the chunks they fall in.
    /// Only those chunks are read. An invalid range yields one `InvalidRange` error.
    pub fn read(&self, start: u64, end_inclusive: u64) -> RangeReader<&Object> {
        RangeReader::new(self, start, end_inclusive)
    }

    /// Like [`Object::read`], owning a reference to the object (for a `'static` body stream).
    pub fn read_arc(self: &Arc<Self>, start: u64, end_inclusive: u64) -> RangeReader<Arc<Object>> {
        RangeReader::new(self.clone(), start, end_inclusive)
    }

    /// The whole body, chunk by chunk (nothing for an empty body).
    pub fn body(&self) -> RangeReader<&Object> {
        RangeReader {
            obj: self,
            pos: 0,
            end: self.len,
            error: None,
        }
    }

    /// What holding an object in memory costs: itself, its key, meta and chunks, and the
    /// caller's decoded meta once made (`decoded`).
    fn charge(key: &str, meta: usize, decoded: u64, len: u64, chunk_size: usize) -> u64 {
        let chunks = len.div_ceil(chunk_size.max(1) as u64);
        OBJECT_OVERHEAD + key.len() as u64 + meta as u64 + decoded + len + chunks * CHUNK_OVERHEAD
    }
}

/// Iterator over a byte range of an [`Object`], yielding one slice per chunk touched.
pub struct RangeReader<O> {
    obj: O,
    pos: u64,
    /// Exclusive end.
    end: u64,
    error: Option<StoreError>,
}

impl<O: Deref<Target = Object>> RangeReader<O> {
    fn new(obj: O, start: u64, end_inclusive: u64) -> Self {
        let len = obj.len;
        if start > end_inclusive || end_inclusive >= len {
            RangeReader {
                obj,
                pos: 0,
                end: 0,
                error: Some(StoreError::InvalidRange {
                    start,
                    end: end_inclusive,
                    len,
                }),
            }
        } else {
            RangeReader {
                obj,
                pos: start,
                end: end_inclusive + 1,
                error: None,
            }
        }
    }
}

impl<O: Deref<Target = Object>> Iterator for RangeReader<O> {
    type Item = Result<Bytes, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.error.take() {
            return Some(Err(e));
        }
        if self.pos >= self.end {
            return None;
        }
        let cs = self.obj.chunk_size as u64;
        let i = self.pos / cs;
        let chunk = match self.obj.chunk(i as usize) {
            Ok(c) => c,
            Err(e) => {
                self.pos = self.end;
                return Some(Err(e));
            }
        };
        let base = i * cs;
        let from = (self.pos - base) as usize;
        let to = (self.end.min(base + cs) - base) as usize;
        if to > chunk.len() || from >= to {
            self.pos = self.end;
            return Some(Err(StoreError::Corrupt));
        }
        self.pos = base + to as u64;
        Some(Ok(chunk.slice(from..to)))
    }
}

struct Inner {
    salt: u64,
    chunk_size: usize,
    max_object_bytes: u64,
    disk_queue_wait: Duration,
    decoded_charge: fn(&Decoded) -> u64,
    /// Namespace generation as seen by the memory tier (see [`Store::clear`]).
    gen: AtomicU64,
    memory: Option<S3Fifo<Arc<Object>>>,
    disk: Option<DiskTier>,
}

impl Inner {
    /// The memory tier's charge for an object (`decoded`: its decoded meta, if made).
    fn charge(
        &self,
        key: &str,
        meta: &[u8],
        decoded: Option<&Decoded>,
        len: u64,
        chunk_size: usize,
    ) -> u64 {
        let decoded = decoded.map_or(0, self.decoded_charge);
        Object::charge(key, meta.len(), decoded, len, chunk_size)
    }

    fn current(&self, gen: u64) -> bool {
        // false: a clear() happened while the body was arriving
        self.gen.load(Ordering::SeqCst) == gen
    }

    fn commit(&self, hash: u64, gen: u64, obj: Arc<Object>) {
        if !self.current(gen) {
            return;
        }
        if let Some(d) = &self.disk {
            d.enqueue(hash, gen, &obj);
        }
        self.commit_memory(hash, gen, obj);
    }

    async fn commit_waiting(&self, hash: u64, gen: u64, obj: Arc<Object>) {
        if !self.current(gen) {
            return;
        }
        if let Some(d) = &self.disk {
            d.enqueue_waiting(hash, gen, &obj, self.disk_queue_wait)
                .await;
        }
        self.commit_memory(hash, gen, obj);
    }

    /// Inserts into memory after the disk copy is queued, so a memory eviction never leaves an
    /// older disk version visible.
    fn commit_memory(&self, hash: u64, gen: u64, obj: Arc<Object>) {
        if let Some(m) = &self.memory {
            let charge = self.charge(&obj.key, &obj.meta, None, obj.len, obj.chunk_size);
            let inserted = m.insert(hash, obj.clone(), charge, || {
                self.gen.load(Ordering::SeqCst) == gen
            });
            if !inserted {
                // never leave an older version of this key visible
                m.remove(hash, |o| o.key == obj.key);
            }
        }
    }
}

/// The two-tier object store. `Send + Sync`; share it behind an `Arc`.
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Store {
    /// Opens the store: creates `dir` and returns without reading the disk tier's files. A
    /// background thread rebuilds the disk index from file headers (bodies are not read),
    /// deleting temp files of interrupted writes and files that fail their header checks; the
    /// writer thread deletes the directories of cleared generations.
    pub fn open(config: StoreConfig) -> std::io::Result<Store> {
        Self::open_with(config, DiskTier::open)
    }

    /// Opens the store with the disk index rebuild not started (see [`Store::rebuild_index`]).
    #[cfg(test)]
    pub(crate) fn open_unindexed(config: StoreConfig) -> std::io::Result<Store> {
        Self::open_with(config, DiskTier::open_unindexed)
    }

    /// Runs the disk index rebuild of a store from [`Store::open_unindexed`].
    #[cfg(test)]
    pub(crate) fn rebuild_index(&self) {
        if let Some(d) = &self.inner.disk {
            d.rebuild_now();
        }
    }

    fn open_with(
        config: StoreConfig,
        open_disk: impl FnOnce(&std::path::Path, u64, u64) -> std::io::Result<DiskTier>,
    ) -> std::io::Result<Store> {
        let chunk_size = match config.chunk_size {
            0 => DEFAULT_CHUNK_SIZE,
            n => n.min(format::MAX_CHUNK_SIZE),
        };
        let disk = if config.disk_bytes > 0 {
            Some(open_disk(
                &config.dir,
                config.disk_bytes,
                config.max_object_bytes,
            )?)
        } else {
            None
        };
        let (salt, gen) = match &disk {
            Some(d) => (d.shared.salt, d.gen()),
            None => (disk::random_u64(), 0),
        };
        let memory = (config.memory_bytes > 0).then(|| S3Fifo::new(config.memory_bytes));
        Ok(Store {
            inner: Arc::new(Inner {
                salt,
                chunk_size,
                max_object_bytes: config.max_object_bytes.min(format::MAX_BODY_LEN),
                disk_queue_wait: config.disk_queue_wait,
                decoded_charge: config.decoded_charge,
                gen: AtomicU64::new(gen),
                memory,
                disk,
            }),
        })
    }

    fn hash(&self, key: &str) -> u64 {
        format::key_hash(self.inner.salt, key.as_bytes())
    }

    /// Whether [`Store::get`] might find `key` on disk; answered from memory, without I/O.
    /// `false` means a disk lookup would miss for sure.
    pub fn disk_may_have(&self, key: &str) -> bool {
        let hash = self.hash(key);
        self.inner
            .disk
            .as_ref()
            .is_some_and(|d| d.may_contain(hash))
    }

    /// Looks `key` up in memory only; never touches the disk.
    pub fn get_memory(&self, key: &str) -> Option<Arc<Object>> {
        let hash = self.hash(key);
        self.inner.memory.as_ref()?.get(hash, |o| &*o.key == key)
    }

    /// Looks `key` up in memory, then on disk. A disk hit is promoted to memory when it fits;
    /// its body is then read and verified in full, as is any body up to [`VERIFY_WHOLE_BYTES`].
    /// A larger object reads its chunks from disk on demand. A corrupt disk entry is removed and
    /// reported as a miss.
    pub fn get(&self, key: &str) -> Option<Arc<Object>> {
        let inner = &*self.inner;
        let hash = self.hash(key);
        if let Some(m) = &inner.memory {
            if let Some(o) = m.get(hash, |o| &*o.key == key) {
                return Some(o);
            }
        }
        let disk = inner.disk.as_ref()?;
        let (hit, gen) = match disk.lookup(hash, key)? {
            Found::File(hit, gen) => (hit, gen),
            Found::Pending(obj, gen) => {
                // still queued for disk: serve (and re-promote) the in-memory object
                if let Some(m) = &inner.memory {
                    let decoded = obj.decoded.get().and_then(Option::as_deref);
                    let charge = inner.charge(key, &obj.meta, decoded, obj.len, obj.chunk_size);
                    m.insert(hash, obj.clone(), charge, || {
                        inner.gen.load(Ordering::SeqCst) == gen
                    });
                }
                return Some(obj);
            }
        };
        let header = hit.header;
        let chunk_size = header.chunk_size as usize;
        let charge = inner.charge(key, &hit.meta, None, header.body_len, chunk_size);
        let memory = inner.memory.as_ref().filter(|m| charge <= m.max_charge());
        if memory.is_some() || header.body_len <= VERIFY_WHOLE_BYTES {
            // read and verified whole: a corrupt body is a miss here, before anything is served
            let chunks = disk.read_all(&hit, gen).ok()?;
            let obj = Arc::new(Object {
                decoded: std::sync::OnceLock::new(),
                key: key.into(),
                meta: hit.meta,
                len: header.body_len,
                chunk_size,
                body: Body::Memory(chunks),
            });
            if let Some(m) = memory {
                m.insert(hash, obj.clone(), charge, || {
                    inner.gen.load(Ordering::SeqCst) == gen
                });
            }
            return Some(obj);
        }
        Some(Arc::new(Object {
            decoded: std::sync::OnceLock::new(),
            key: key.into(),
            meta: hit.meta,
            len: header.body_len,
            chunk_size,
            body: Body::Disk(Box::new(DiskBody {
                file: hit.file,
                body_offset: header.body_offset(),
                crcs: hit.crcs,
                hash,
                seq: header.seq,
                gen,
                disk: Arc::downgrade(&disk.shared),
            })),
        }))
    }

    /// `object`'s meta decoded by `decode`, once per object: a hit served from memory does not
    /// pay for decoding again. The first decoding of an object the memory tier holds adds the
    /// decoded form ([`StoreConfig::decoded_charge`]) to its charge: the form lives as long as
    /// the object. `None` if `decode` fails (or decoded to another type before).
    pub fn decoded<T: std::any::Any + Send + Sync>(
        &self,
        object: &Arc<Object>,
        decode: impl FnOnce(&Bytes) -> Option<T>,
    ) -> Option<Arc<T>> {
        let mut made = false;
        let decoded = object.decoded(|meta| {
            made = true;
            decode(meta)
        });
        if let (true, Some(made), Some(m)) = (made, &decoded, &self.inner.memory) {
            let extra = (self.inner.decoded_charge)(&**made as &Decoded);
            m.add_charge(self.hash(&object.key), |o| Arc::ptr_eq(o, object), extra);
        }
        decoded
    }

    /// Starts storing an object under `key`. `None` when the store is disabled (no tier, or a
    /// zero `max_object_bytes`) or the key or meta is too large to store.
    pub fn begin(&self, key: &str, meta: Bytes) -> Option<ObjectWriter> {
        let inner = &self.inner;
        if (inner.memory.is_none() && inner.disk.is_none())
            || inner.max_object_bytes == 0
            || key.len() > format::MAX_KEY_LEN
            || meta.len() > format::MAX_META_LEN
        {
            return None;
        }
        // The body may not exceed what the biggest tier could hold either.
        let mut tier_max = 0;
        if let Some(m) = &inner.memory {
            tier_max = m.max_charge();
        }
        if let Some(d) = &inner.disk {
            tier_max = tier_max.max(d.capacity());
        }
        Some(ObjectWriter {
            inner: self.inner.clone(),
            hash: self.hash(key),
            gen: inner.gen.load(Ordering::SeqCst),
            key: key.into(),
            // An exact copy: the caller's buffer may have room to spare, and the memory tier
            // keeps this for the object's lifetime, charged by its length.
            meta: Bytes::copy_from_slice(&meta),
            limit: inner.max_object_bytes.min(tier_max),
            chunk_size: inner.chunk_size,
            chunks: Vec::new(),
            current: Vec::new(),
            len: 0,
            failed: false,
        })
    }

    /// Removes `key` from both tiers (and cancels a queued disk write). Returns whether
    /// anything was removed.
    pub fn remove(&self, key: &str) -> bool {
        let hash = self.hash(key);
        let mem = self
            .inner
            .memory
            .as_ref()
            .is_some_and(|m| m.remove(hash, |o| &*o.key == key));
        let disk = self.inner.disk.as_ref().is_some_and(|d| d.remove(hash));
        mem || disk
    }

    /// Empties the cache instantly: a new namespace generation is persisted; older objects are
    /// unreachable at once and their files are deleted in the background. Writes begun before
    /// the clear are discarded when they finish.
    pub fn clear(&self) {
        let inner = &self.inner;
        let gen = match &inner.disk {
            Some(d) => d.clear(),
            None => inner.gen.load(Ordering::SeqCst) + 1,
        };
        inner.gen.fetch_max(gen, Ordering::SeqCst);
        if let Some(m) = &inner.memory {
            m.clear();
        }
    }

    /// Blocks until the disk index rebuild started by [`Store::open`] has finished (at once
    /// without a disk tier). Until then the disk statistics count only what is indexed so far.
    pub fn wait_indexed(&self) {
        if let Some(d) = &self.inner.disk {
            d.wait_indexed();
        }
    }

    /// Waits until every disk write queued so far has been written (or skipped). Useful before
    /// a graceful shutdown; dropping the store also drains the queue.
    pub fn flush(&self) {
        if let Some(d) = &self.inner.disk {
            d.flush();
        }
    }

    /// Current statistics.
    pub fn stats(&self) -> StoreStats {
        let inner = &self.inner;
        let mut s = StoreStats {
            generation: inner.gen.load(Ordering::SeqCst),
            ..StoreStats::default()
        };
        if let Some(m) = &inner.memory {
            let f = m.stats();
            s.memory = TierStats {
                objects: f.objects,
                bytes: f.bytes,
                evictions: f.evictions,
                hits: f.hits,
                misses: f.misses,
            };
        }
        if let Some(d) = &inner.disk {
            let c = &d.shared.counters;
            let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
            let (objects, bytes, index) = d.usage();
            s.disk = TierStats {
                objects,
                bytes,
                evictions: r(&c.evictions),
                hits: r(&c.hits),
                misses: r(&c.misses),
            };
            s.disk_corrupt = r(&c.corrupt);
            s.disk_collisions = r(&c.collisions);
            s.disk_writes = r(&c.writes);
            s.disk_write_skipped = r(&c.write_skipped);
            s.disk_write_errors = r(&c.write_errors);
            s.disk_chunk_reads = r(&c.chunk_reads);
            s.disk_index_bytes = index;
        }
        s
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(d) = &self.inner.disk {
            d.shutdown();
        }
    }
}

/// `v` without spare capacity (a small body's chunk list would otherwise hold room for four).
fn exact<T>(mut v: Vec<T>) -> Vec<T> {
    v.shrink_to_fit();
    v
}

/// Streams a body into the store; see [`Store::begin`].
///
/// Dropping the writer without calling [`ObjectWriter::finish`] abandons the write: nothing is
/// stored and an older object under the same key stays as it was.
pub struct ObjectWriter {
    inner: Arc<Inner>,
    hash: u64,
    gen: u64,
    key: Box<str>,
    meta: Bytes,
    limit: u64,
    chunk_size: usize,
    chunks: Vec<Bytes>,
    current: Vec<u8>,
    len: u64,
    failed: bool,
}

impl std::fmt::Debug for ObjectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectWriter")
            .field("key", &self.key)
            .field("len", &self.len)
            .field("failed", &self.failed)
            .finish()
    }
}

impl ObjectWriter {
    /// Appends body bytes. Fails (and abandons the write) once the body exceeds the limit.
    pub fn push(&mut self, mut data: &[u8]) -> Result<(), StoreError> {
        if self.failed {
            return Err(StoreError::Abandoned);
        }
        if self.len + data.len() as u64 > self.limit {
            self.failed = true;
            self.chunks = Vec::new();
            self.current = Vec::new();
            return Err(StoreError::TooLarge { limit: self.limit });
        }
        self.len += data.len() as u64;
        while !data.is_empty() {
            let room = self.chunk_size - self.current.len();
            let take = room.min(data.len());
            let needed = self.current.len() + take;
            if needed > self.current.capacity() {
                // grow geometrically but never past one chunk, so chunks are not over-allocated
                let cap = (self.current.capacity() * 2)
                    .max(needed)
                    .max(4096)
                    .min(self.chunk_size);
                self.current.reserve_exact(cap - self.current.len());
            }
            self.current.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.current.len() == self.chunk_size {
                let full = std::mem::take(&mut self.current);
                self.chunks.push(Bytes::from(full));
            }
        }
        Ok(())
    }

    /// Body bytes pushed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no body bytes were pushed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Commits the object atomically, replacing any older object under the same key. Readers
    /// see either the old object or the complete new one. If the disk write queue is full, the
    /// disk copy is skipped (and counted).
    pub fn finish(self) -> Result<(), StoreError> {
        let (inner, hash, gen, obj) = self.seal()?;
        inner.commit(hash, gen, obj);
        Ok(())
    }

    /// Like [`ObjectWriter::finish`], but if the disk write queue is full, waits for room (up
    /// to [`StoreConfig::disk_queue_wait`]) before it skips the disk copy. Awaiting this paces
    /// a fill that the disk cannot keep up with instead of losing its objects.
    pub async fn finish_waiting(self) -> Result<(), StoreError> {
        let (inner, hash, gen, obj) = self.seal()?;
        inner.commit_waiting(hash, gen, obj).await;
        Ok(())
    }

    /// The complete object, ready to commit.
    fn seal(mut self) -> Result<(Arc<Inner>, u64, u64, Arc<Object>), StoreError> {
        if self.failed {
            return Err(StoreError::Abandoned);
        }
        if !self.current.is_empty() {
            let mut last = std::mem::take(&mut self.current);
            last.shrink_to_fit();
            self.chunks.push(Bytes::from(last));
        }
        let obj = Arc::new(Object {
            decoded: std::sync::OnceLock::new(),
            key: std::mem::take(&mut self.key),
            meta: std::mem::take(&mut self.meta),
            len: self.len,
            chunk_size: self.chunk_size,
            body: Body::Memory(exact(std::mem::take(&mut self.chunks))),
        });
        Ok((self.inner, self.hash, self.gen, obj))
    }
}
