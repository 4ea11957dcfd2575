//! Disk tier: one file per object under `dir/g<generation>/<fan-out>/<hash>`, a lean in-memory
//! index (64-bit key hash → sequence number and size), FIFO eviction by bytes, and a single
//! background thread that writes, evicts and deletes cleared generations.
//!
//! Commit protocol: `finish()` registers the write as *pending* for its hash and queues it. The
//! writer thread writes a temp file under `dir/tmp/`, then — under the index lock — checks the
//! write is still the pending one for that hash in the current generation and renames the temp
//! file into place. `remove()` and `clear()` take the same lock, so a write can never resurrect
//! an object removed after it was committed.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;

use super::format::{self, Header, FIXED_LEN};
use super::s3fifo::IdBuild;
use super::{Body, Object, StoreError};

const STATE_FILE: &str = "STATE";
const STATE_MAGIC: [u8; 8] = *b"VXSTATE1";
const QUEUE_JOBS: usize = 1024;
const QUEUE_BYTES: u64 = 64 * 1024 * 1024;
/// Sizes in the index are kept in units of this many bytes (rounded up) to fit a `u32`.
const UNIT: u64 = 256;

/// One live object in the index: 8 bytes, so a map slot is 16 bytes.
#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    /// Low 32 bits of the file's sequence number (identifies the file version).
    seq: u32,
    /// File size in [`UNIT`]s.
    units: u32,
}

struct DiskState {
    gen: u64,
    next_seq: u64,
    index: HashMap<u64, IndexEntry, IdBuild>,
    /// Eviction order: (hash, seq). Slots of replaced/removed entries are skipped lazily.
    fifo: VecDeque<(u64, u32)>,
    /// Writes committed by `finish()` but not yet renamed into place. Lookups are answered
    /// from here, so an object is never unreachable between memory eviction and its disk write.
    pending: HashMap<u64, Pending, IdBuild>,
    /// Sum of `units * UNIT` over the index.
    used: u64,
}

#[derive(Default)]
pub(crate) struct DiskCounters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub evictions: AtomicU64,
    pub corrupt: AtomicU64,
    pub collisions: AtomicU64,
    pub writes: AtomicU64,
    pub write_skipped: AtomicU64,
    pub write_errors: AtomicU64,
    pub chunk_reads: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A queued write: its full sequence number and the object (shared with the queued job).
struct Pending {
    seq: u64,
    obj: Arc<Object>,
}

/// What a disk lookup found.
pub(crate) enum Found {
    /// The object is queued for writing and still held in memory (and its generation).
    Pending(Arc<Object>, u64),
    /// A verified file header, and the generation it was found in.
    File(DiskHit, u64),
}

/// State shared between the store and the writer thread.
pub(crate) struct DiskShared {
    root: PathBuf,
    pub salt: u64,
    capacity: u64,
    queue_limit: u64,
    state: Mutex<DiskState>,
    cleanup: AtomicBool,
    queued_bytes: AtomicU64,
    pub counters: DiskCounters,
}

pub(crate) struct WriteJob {
    hash: u64,
    seq: u64,
    gen: u64,
    size: u64,
    obj: Arc<Object>,
}

pub(crate) enum Job {
    Write(WriteJob),
    Wake,
    Flush(SyncSender<()>),
    Shutdown,
}

/// The disk tier as owned by the store.
pub(crate) struct DiskTier {
    pub shared: Arc<DiskShared>,
    tx: SyncSender<Job>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// A verified header read for a disk lookup.
pub(crate) struct DiskHit {
    pub file: File,
    pub header: Header,
    pub meta: Bytes,
    pub crcs: Vec<u32>,
    pub hash: u64,
}

/// Body of an object served lazily from disk: only the chunks read are fetched.
pub(crate) struct DiskBody {
    pub file: File,
    pub body_offset: u64,
    pub crcs: Vec<u32>,
    pub hash: u64,
    pub seq: u64,
    pub gen: u64,
    pub disk: Weak<DiskShared>,
}

pub(crate) fn random_u64() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

fn read_state(root: &Path) -> Option<(u64, u64)> {
    let b = fs::read(root.join(STATE_FILE)).ok()?;
    if b.len() != 28 || b[..8] != STATE_MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes([b[24], b[25], b[26], b[27]]);
    if crc32fast::hash(&b[..24]) != crc {
        return None;
    }
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[8..16]);
    let salt = u64::from_le_bytes(x);
    x.copy_from_slice(&b[16..24]);
    Some((salt, u64::from_le_bytes(x)))
}

fn write_state(root: &Path, salt: u64, gen: u64) -> io::Result<()> {
    let mut b = Vec::with_capacity(28);
    b.extend_from_slice(&STATE_MAGIC);
    b.extend_from_slice(&salt.to_le_bytes());
    b.extend_from_slice(&gen.to_le_bytes());
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    let tmp = root.join("STATE.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&b)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, root.join(STATE_FILE))?;
    if let Ok(d) = File::open(root) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn gen_dir(root: &Path, gen: u64) -> PathBuf {
    root.join(format!("g{gen:016x}"))
}

pub(crate) fn object_path(root: &Path, gen: u64, hash: u64) -> PathBuf {
    gen_dir(root, gen)
        .join(format!("{:02x}", hash >> 56))
        .join(format!("{hash:016x}"))
}

fn units(size: u64) -> u32 {
    u32::try_from(size.div_ceil(UNIT)).unwrap_or(u32::MAX)
}

/// Size of the file an object will be written as.
pub(crate) fn file_len(obj: &Object) -> u64 {
    let chunks = obj.len.div_ceil(obj.chunk_size.max(1) as u64);
    FIXED_LEN as u64 + obj.key.len() as u64 + obj.meta.len() as u64 + 4 * chunks + obj.len
}

/// Reads and verifies the fixed header and key of an object file.
fn read_header(file: &File) -> Result<(Header, Vec<u8>), StoreError> {
    let mut fixed = [0u8; FIXED_LEN];
    file.read_exact_at(&mut fixed, 0).map_err(corrupt_io)?;
    let header = Header::decode(&fixed).map_err(|_| StoreError::Corrupt)?;
    let mut key = vec![0u8; header.key_len as usize];
    file.read_exact_at(&mut key, FIXED_LEN as u64)
        .map_err(corrupt_io)?;
    header
        .verify_key(&fixed, &key)
        .map_err(|_| StoreError::Corrupt)?;
    let actual = file.metadata()?.len();
    if actual != header.file_len() {
        return Err(StoreError::Corrupt);
    }
    Ok((header, key))
}

fn corrupt_io(e: io::Error) -> StoreError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        StoreError::Corrupt
    } else {
        StoreError::Io(e)
    }
}

impl DiskShared {
    fn lock(&self) -> MutexGuard<'_, DiskState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes the entry for `hash` if it still is file version `seq` of generation `gen`, and
    /// deletes the file. Used when a read finds the file corrupt.
    pub fn report_corrupt(&self, hash: u64, seq: u32, gen: u64) {
        bump(&self.counters.corrupt);
        let mut st = self.lock();
        if st.gen == gen && st.index.get(&hash).is_some_and(|e| e.seq == seq) {
            if let Some(e) = st.index.remove(&hash) {
                st.used -= u64::from(e.units) * UNIT;
            }
            let path = object_path(&self.root, gen, hash);
            if let Err(err) = fs::remove_file(&path) {
                tracing::debug!(?path, %err, "removing corrupt cache file");
            }
        }
        tracing::warn!(
            hash = format_args!("{hash:016x}"),
            "corrupt cache file removed"
        );
    }

    /// Reads and verifies chunk `i` of a lazily read disk object.
    pub fn read_chunk(
        &self,
        body: &DiskBody,
        len: u64,
        chunk_size: usize,
        i: usize,
    ) -> Result<Bytes, StoreError> {
        let cs = chunk_size as u64;
        let start = i as u64 * cs;
        let n = cs.min(len - start) as usize;
        let mut buf = vec![0u8; n];
        bump(&self.counters.chunk_reads);
        let res = body.file.read_exact_at(&mut buf, body.body_offset + start);
        let ok = res.is_ok() && body.crcs.get(i) == Some(&crc32fast::hash(&buf));
        if !ok {
            self.report_corrupt(body.hash, body.seq as u32, body.gen);
            return Err(StoreError::Corrupt);
        }
        Ok(Bytes::from(buf))
    }

    fn evict_locked(&self, st: &mut DiskState) {
        while st.used > self.capacity {
            let Some((hash, seq)) = st.fifo.pop_front() else {
                break;
            };
            if st.index.get(&hash).is_some_and(|e| e.seq == seq) {
                if let Some(e) = st.index.remove(&hash) {
                    st.used -= u64::from(e.units) * UNIT;
                }
                let _ = fs::remove_file(object_path(&self.root, st.gen, hash));
                bump(&self.counters.evictions);
            }
        }
        if st.fifo.len() > 2 * st.index.len() + 1024 {
            let index = &st.index;
            st.fifo
                .retain(|(h, s)| index.get(h).is_some_and(|e| e.seq == *s));
        }
    }

    fn still_pending(st: &DiskState, job: &WriteJob) -> bool {
        st.gen == job.gen && st.pending.get(&job.hash).is_some_and(|p| p.seq == job.seq)
    }

    fn write_job(&self, job: WriteJob) {
        self.queued_bytes.fetch_sub(job.size, Ordering::Relaxed);
        if !Self::still_pending(&self.lock(), &job) {
            return;
        }
        let tmp = self.root.join("tmp").join(format!("{:016x}", job.seq));
        let res = self.write_file(&tmp, &job);
        let mut st = self.lock();
        match res {
            Ok(()) if Self::still_pending(&st, &job) => {
                st.pending.remove(&job.hash);
                let path = object_path(&self.root, job.gen, job.hash);
                if let Err(err) = fs::rename(&tmp, &path) {
                    tracing::warn!(?path, %err, "cache file rename failed");
                    bump(&self.counters.write_errors);
                    let _ = fs::remove_file(&tmp);
                    let _ = fs::remove_file(&path);
                    return;
                }
                let e = IndexEntry {
                    seq: job.seq as u32,
                    units: units(job.size),
                };
                if let Some(old) = st.index.insert(job.hash, e) {
                    st.used -= u64::from(old.units) * UNIT;
                }
                st.used += u64::from(e.units) * UNIT;
                st.fifo.push_back((job.hash, e.seq));
                bump(&self.counters.writes);
                self.evict_locked(&mut st);
            }
            Ok(()) => {
                drop(st);
                let _ = fs::remove_file(&tmp);
            }
            Err(err) => {
                tracing::warn!(%err, "cache file write failed");
                bump(&self.counters.write_errors);
                if Self::still_pending(&st, &job) {
                    // the older version was dropped from the index at commit; delete it too
                    st.pending.remove(&job.hash);
                    let _ = fs::remove_file(object_path(&self.root, job.gen, job.hash));
                }
                drop(st);
                let _ = fs::remove_file(&tmp);
            }
        }
    }

    fn write_file(&self, tmp: &Path, job: &WriteJob) -> io::Result<()> {
        let obj = &job.obj;
        let Body::Memory(chunks) = &obj.body else {
            return Err(io::Error::other("only in-memory objects are written"));
        };
        let mut table = Vec::with_capacity(4 * chunks.len());
        for c in chunks {
            table.extend_from_slice(&crc32fast::hash(c).to_le_bytes());
        }
        let mut header = Header::new(
            &obj.key,
            &obj.meta,
            obj.chunk_size,
            obj.len,
            job.seq,
            job.gen,
        );
        header.meta_crc = format::meta_crc(&obj.meta, &table);
        let head = header.encode(&obj.key);
        let path = object_path(&self.root, job.gen, job.hash);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut w = BufWriter::with_capacity(256 * 1024, File::create(tmp)?);
        w.write_all(&head)?;
        w.write_all(&obj.meta)?;
        w.write_all(&table)?;
        for c in chunks {
            w.write_all(c)?;
        }
        w.flush()?;
        Ok(())
    }

    /// Deletes generation directories other than the current one.
    fn cleanup_generations(&self) {
        let current = format!("g{:016x}", self.lock().gen);
        let Ok(entries) = fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.len() == 17 && name.starts_with('g') && name != current {
                if let Err(err) = fs::remove_dir_all(entry.path()) {
                    tracing::warn!(name, %err, "removing old cache generation");
                }
            }
        }
    }

    fn run(self: Arc<Self>, rx: Receiver<Job>) {
        loop {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(Job::Write(job)) => self.write_job(job),
                Ok(Job::Wake) | Err(RecvTimeoutError::Timeout) => {}
                Ok(Job::Flush(ack)) => {
                    if self.cleanup.swap(false, Ordering::SeqCst) {
                        self.cleanup_generations();
                    }
                    let _ = ack.send(());
                }
                Ok(Job::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
            }
            if self.cleanup.swap(false, Ordering::SeqCst) {
                self.cleanup_generations();
            }
        }
    }
}

/// What `open` found in one file.
fn scan_file(path: &Path, salt: u64, gen: u64) -> Option<(u64, u64, u64)> {
    let name = path.file_name()?.to_str()?;
    if name.len() != 16 {
        return None;
    }
    let named = u64::from_str_radix(name, 16).ok()?;
    let file = File::open(path).ok()?;
    let (header, key) = read_header(&file).ok()?;
    let hash = format::key_hash(salt, &key);
    let dir = path.parent()?.file_name()?.to_str()?;
    if hash != named || header.gen != gen || dir != format!("{:02x}", hash >> 56) {
        return None;
    }
    Some((hash, header.seq, header.file_len()))
}

impl DiskTier {
    /// Opens (or creates) the disk tier under `root`, rebuilding the index from file headers.
    pub fn open(root: &Path, capacity: u64, max_object_bytes: u64) -> io::Result<DiskTier> {
        fs::create_dir_all(root)?;
        let tmp = root.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        let (salt, gen) = match read_state(root) {
            Some(s) => s,
            None => {
                let s = (random_u64(), 0);
                write_state(root, s.0, s.1)?;
                s
            }
        };

        let mut found = Vec::new();
        if let Ok(fan) = fs::read_dir(gen_dir(root, gen)) {
            for sub in fan.flatten() {
                let Ok(files) = fs::read_dir(sub.path()) else {
                    let _ = fs::remove_file(sub.path());
                    continue;
                };
                for f in files.flatten() {
                    let path = f.path();
                    match scan_file(&path, salt, gen) {
                        Some(x) => found.push(x),
                        None => {
                            tracing::info!(?path, "removing invalid cache file");
                            let _ = fs::remove_file(&path);
                        }
                    }
                }
            }
        }
        found.sort_unstable_by_key(|&(_, seq, _)| seq);
        let mut st = DiskState {
            gen,
            next_seq: found.last().map_or(1, |&(_, seq, _)| seq + 1),
            index: HashMap::with_capacity_and_hasher(found.len(), IdBuild::default()),
            fifo: VecDeque::with_capacity(found.len()),
            pending: HashMap::default(),
            used: 0,
        };
        for (hash, seq, size) in found {
            let e = IndexEntry {
                seq: seq as u32,
                units: units(size),
            };
            st.index.insert(hash, e);
            st.fifo.push_back((hash, e.seq));
            st.used += u64::from(e.units) * UNIT;
        }

        let shared = Arc::new(DiskShared {
            root: root.to_path_buf(),
            salt,
            capacity,
            queue_limit: QUEUE_BYTES.max(max_object_bytes),
            state: Mutex::new(st),
            cleanup: AtomicBool::new(true),
            queued_bytes: AtomicU64::new(0),
            counters: DiskCounters::default(),
        });
        {
            let mut st = shared.lock();
            shared.evict_locked(&mut st);
        }
        let (tx, rx) = mpsc::sync_channel(QUEUE_JOBS);
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("velox-cache-disk".into())
            .spawn(move || worker.run(rx))?;
        Ok(DiskTier {
            shared,
            tx,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn gen(&self) -> u64 {
        self.shared.lock().gen
    }

    pub fn capacity(&self) -> u64 {
        self.shared.capacity
    }

    /// Queues `obj` for writing. Never blocks on I/O except to delete the replaced version of
    /// the object when the write has to be skipped.
    pub fn enqueue(&self, hash: u64, gen: u64, obj: &Arc<Object>) {
        let d = &self.shared;
        let size = file_len(obj);
        let mut st = d.lock();
        if st.gen != gen {
            return;
        }
        // The new version replaces the old one at once, even before it reaches the disk.
        let had_old = match st.index.remove(&hash) {
            Some(old) => {
                st.used -= u64::from(old.units) * UNIT;
                true
            }
            None => false,
        };
        let had_pending = st.pending.remove(&hash).is_some();
        let queued = d.queued_bytes.load(Ordering::Relaxed);
        let fits = size <= d.capacity && (queued == 0 || queued + size <= d.queue_limit);
        let seq = st.next_seq;
        let sent = fits && {
            let job = Job::Write(WriteJob {
                hash,
                seq,
                gen,
                size,
                obj: obj.clone(),
            });
            match d_try_send(&self.tx, job) {
                Ok(()) => true,
                Err(()) => false,
            }
        };
        if sent {
            st.next_seq += 1;
            st.pending.insert(
                hash,
                Pending {
                    seq,
                    obj: obj.clone(),
                },
            );
            d.queued_bytes.fetch_add(size, Ordering::Relaxed);
        } else {
            bump(&d.counters.write_skipped);
            if had_old || had_pending {
                let _ = fs::remove_file(object_path(&d.root, gen, hash));
            }
        }
    }

    /// Whether a lookup of `hash` could find anything, from the in-memory index alone (no I/O):
    /// lets callers answer most misses without going to a blocking thread.
    pub fn may_contain(&self, hash: u64) -> bool {
        let st = self.shared.lock();
        st.pending.contains_key(&hash) || st.index.contains_key(&hash)
    }

    /// Looks `key` up. `Some` only for a file whose header, key and meta verify.
    pub fn lookup(&self, hash: u64, key: &str) -> Option<Found> {
        let d = &self.shared;
        let (gen, entry) = {
            let st = d.lock();
            if let Some(p) = st.pending.get(&hash) {
                if *p.obj.key == *key {
                    bump(&d.counters.hits);
                    return Some(Found::Pending(p.obj.clone(), st.gen));
                }
            }
            (st.gen, st.index.get(&hash).copied())
        };
        let Some(entry) = entry else {
            bump(&d.counters.misses);
            return None;
        };
        match self.read_hit(gen, hash, key) {
            Ok(Some(hit)) => {
                bump(&d.counters.hits);
                Some(Found::File(hit, gen))
            }
            Ok(None) => {
                bump(&d.counters.collisions);
                bump(&d.counters.misses);
                None
            }
            Err(StoreError::Io(err)) => {
                // NotFound: removed or evicted since the index lookup; anything else (say,
                // too many open files) is transient: a miss, but the file is kept.
                if err.kind() != io::ErrorKind::NotFound {
                    tracing::debug!(%err, "disk cache read failed");
                }
                bump(&d.counters.misses);
                None
            }
            Err(_) => {
                bump(&d.counters.misses);
                d.report_corrupt(hash, entry.seq, gen);
                None
            }
        }
    }

    fn read_hit(&self, gen: u64, hash: u64, key: &str) -> Result<Option<DiskHit>, StoreError> {
        let file = File::open(object_path(&self.shared.root, gen, hash))?;
        let (header, stored_key) = read_header(&file)?;
        if stored_key != key.as_bytes() {
            return Ok(None);
        }
        let n = header.chunks();
        let table_len = usize::try_from(4 * n).map_err(|_| StoreError::Corrupt)?;
        let mut buf = vec![0u8; header.meta_len as usize + table_len];
        file.read_exact_at(&mut buf, header.meta_offset())
            .map_err(corrupt_io)?;
        let (meta, table) = buf.split_at(header.meta_len as usize);
        if format::meta_crc(meta, table) != header.meta_crc || header.gen != gen {
            return Err(StoreError::Corrupt);
        }
        let crcs = format::decode_crc_table(table);
        buf.truncate(header.meta_len as usize);
        Ok(Some(DiskHit {
            file,
            header,
            meta: Bytes::from(buf),
            crcs,
            hash,
        }))
    }

    /// Reads and verifies the whole body of a hit, as chunk-sized zero-copy slices.
    pub fn read_all(&self, hit: &DiskHit, gen: u64) -> Result<Vec<Bytes>, StoreError> {
        let len = usize::try_from(hit.header.body_len).map_err(|_| StoreError::Corrupt)?;
        let mut buf = vec![0u8; len];
        bump(&self.shared.counters.chunk_reads);
        let res = hit.file.read_exact_at(&mut buf, hit.header.body_offset());
        let body = Bytes::from(buf);
        let cs = hit.header.chunk_size as usize;
        let mut chunks = Vec::with_capacity(hit.crcs.len());
        let mut ok = res.is_ok();
        if ok {
            for (i, crc) in hit.crcs.iter().enumerate() {
                let c = body.slice(i * cs..((i + 1) * cs).min(len));
                if crc32fast::hash(&c) != *crc {
                    ok = false;
                    break;
                }
                chunks.push(c);
            }
        }
        if !ok {
            self.shared
                .report_corrupt(hit.hash, hit.header.seq as u32, gen);
            return Err(StoreError::Corrupt);
        }
        Ok(chunks)
    }

    /// Removes `hash` from the index and deletes its file (and cancels a pending write).
    pub fn remove(&self, hash: u64) -> bool {
        let d = &self.shared;
        let mut st = d.lock();
        let pending = st.pending.remove(&hash).is_some();
        let indexed = match st.index.remove(&hash) {
            Some(e) => {
                st.used -= u64::from(e.units) * UNIT;
                true
            }
            None => false,
        };
        let removed = fs::remove_file(object_path(&d.root, st.gen, hash)).is_ok();
        pending || indexed || removed
    }

    /// Starts a new generation: persisted first, then the index is dropped; the old files are
    /// deleted by the background thread. Returns the new generation.
    pub fn clear(&self) -> u64 {
        let d = &self.shared;
        let mut st = d.lock();
        st.gen += 1;
        if let Err(err) = write_state(&d.root, d.salt, st.gen) {
            tracing::error!(%err, "could not persist the cache generation; a restart may bring back cleared objects");
        }
        st.index = HashMap::default();
        st.fifo = VecDeque::new();
        st.pending.clear();
        st.used = 0;
        let gen = st.gen;
        drop(st);
        d.cleanup.store(true, Ordering::SeqCst);
        let _ = self.tx.try_send(Job::Wake);
        gen
    }

    /// Waits until every write queued so far has been processed.
    pub fn flush(&self) {
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        if self.tx.send(Job::Flush(ack_tx)).is_ok() {
            let _ = ack_rx.recv();
        }
    }

    /// Objects, bytes in the index, and an estimate of the index's heap size.
    pub fn usage(&self) -> (u64, u64, u64) {
        let st = self.shared.lock();
        let heap = st.index.capacity() * (8 + std::mem::size_of::<IndexEntry>() + 1)
            + st.fifo.capacity() * std::mem::size_of::<(u64, u32)>()
            + st.pending.capacity() * 17;
        (st.index.len() as u64, st.used, heap as u64)
    }

    pub fn shutdown(&self) {
        let _ = self.tx.send(Job::Shutdown);
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    #[cfg(test)]
    pub(crate) fn root(&self) -> &Path {
        &self.shared.root
    }
}

fn d_try_send(tx: &SyncSender<Job>, job: Job) -> Result<(), ()> {
    match tx.try_send(job) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => Err(()),
    }
}
