//! Disk tier: one file per object under `dir/g<generation>/<fan-out>/<hash>`, a lean in-memory
//! index (64-bit key hash → sequence number and size), FIFO eviction by bytes, and a single
//! background thread that writes, evicts and deletes cleared generations.
//!
//! Commit protocol: `finish()` registers the write as *pending* for its hash and queues it. The
//! writer thread writes a temp file `t<seq>` beside the object's final path, then — under the
//! index lock — checks the write is still the pending one for that hash in the current
//! generation and renames the temp file into place. `remove()` and `clear()` take the same lock,
//! so a write can never resurrect an object removed after it was committed.
//!
//! The write queue is bounded (jobs and bytes). [`DiskTier::enqueue`] skips the disk copy when
//! it is full; [`DiskTier::enqueue_waiting`] waits (asynchronously, bounded) for room instead,
//! which paces a fill the disk cannot keep up with.
//!
//! Start-up does not read the files: the index is rebuilt by a background thread while the
//! store serves. Until it is done, a lookup of a key not yet indexed opens the key's file
//! directly (its path is derived from the key hash), and every change to a hash is recorded so
//! the rebuild never brings back an object removed or replaced meanwhile. Every start reserves
//! a range of sequence numbers (persisted in `STATE`), so files written by this run are newer
//! than any the rebuild finds.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{self, File};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::format::{self, Header, FIXED_LEN};
use super::s3fifo::IdBuild;
use super::{Body, Object, StoreError};

const STATE_FILE: &str = "STATE";
/// `STATE` as first written: salt and generation.
const STATE_MAGIC_V1: [u8; 8] = *b"VXSTATE1";
/// `STATE` since the index is rebuilt in the background: also the first sequence number of the
/// next run.
const STATE_MAGIC: [u8; 8] = *b"VXSTATE2";
/// Sequence numbers reserved per run (2^40 files at 100k/s would take 348 years).
const SEQ_SPAN: u64 = 1 << 40;
const QUEUE_JOBS: usize = 1024;
/// Bytes read at once for a header: the fixed part and, for most keys, the whole key.
const HEAD_READ: usize = 1024;
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
    /// Jobs and file bytes in the write queue.
    queued_jobs: usize,
    queued_bytes: u64,
    /// Set while the index of files from earlier runs is being rebuilt.
    rebuild: Option<Rebuild>,
}

/// What the index rebuild must know about changes made while it runs.
#[derive(Default)]
struct Rebuild {
    /// Hashes written, removed or found corrupt since start-up: a file of an earlier run found
    /// for them is stale (or gone) and must not be indexed.
    touched: HashSet<u64, IdBuild>,
}

impl DiskState {
    /// Drops whatever the index or the queue holds for `hash` and records the change for a
    /// running rebuild. Returns whether anything was held.
    fn forget(&mut self, hash: u64) -> bool {
        if let Some(r) = &mut self.rebuild {
            r.touched.insert(hash);
        }
        let pending = self.pending.remove(&hash).is_some();
        let indexed = match self.index.remove(&hash) {
            Some(e) => {
                self.used -= u64::from(e.units) * UNIT;
                true
            }
            None => false,
        };
        pending || indexed
    }

    /// Whether the file now at `hash`'s path is the one identified by `seq` (the low 32 bits
    /// suffice against the index): indexed with that sequence number, or, while the rebuild
    /// runs, a file of an earlier run that nothing replaced yet. `None`: an unindexed file.
    fn holds(&self, hash: u64, seq: Option<u64>, seq_start: u64) -> bool {
        match self.index.get(&hash) {
            Some(e) => seq.is_some_and(|s| s as u32 == e.seq),
            None => {
                self.rebuild
                    .as_ref()
                    .is_some_and(|r| !r.touched.contains(&hash))
                    && !self.pending.contains_key(&hash)
                    && seq.is_none_or(|s| s < seq_start)
            }
        }
    }

    fn has_room(&self, size: u64, limit: u64) -> bool {
        self.queued_jobs < QUEUE_JOBS
            && (self.queued_bytes == 0 || self.queued_bytes + size <= limit)
    }
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
    /// First sequence number of this run; files with smaller ones are from earlier runs.
    seq_start: u64,
    state: Mutex<DiskState>,
    /// Signalled when the index rebuild ends.
    indexed: Condvar,
    /// Woken when the write queue has drained to half its bounds.
    room: tokio::sync::Notify,
    cleanup: AtomicBool,
    pub counters: DiskCounters,
}

/// Why a disk copy was not queued.
pub(crate) enum NotQueued {
    /// The queue is full for now.
    Full,
    /// The object can never be written (larger than the disk tier).
    Never,
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
    /// Unbounded channel; the queue is bounded by `DiskState::queued_*` instead.
    tx: Sender<Job>,
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

/// The persisted state of a disk tier directory.
#[derive(Debug, Clone, Copy)]
struct Persisted {
    salt: u64,
    gen: u64,
    /// First sequence number of the next run.
    next_seq: u64,
}

fn read_state(root: &Path) -> Option<Persisted> {
    let b = fs::read(root.join(STATE_FILE)).ok()?;
    let body = b.len().checked_sub(4)?;
    let crc = u32::from_le_bytes(b[body..].try_into().ok()?);
    if crc32fast::hash(&b[..body]) != crc {
        return None;
    }
    let word = |i: usize| -> Option<u64> {
        let at = 8 + 8 * i;
        Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
    };
    let next_seq = match (&b[..8], body) {
        // written before runs reserved sequence numbers: every file has a smaller one
        (m, 24) if m == STATE_MAGIC_V1 => SEQ_SPAN,
        (m, 32) if m == STATE_MAGIC => word(2)?,
        _ => return None,
    };
    Some(Persisted {
        salt: word(0)?,
        gen: word(1)?,
        next_seq,
    })
}

fn write_state(root: &Path, state: Persisted) -> io::Result<()> {
    let mut b = Vec::with_capacity(36);
    b.extend_from_slice(&STATE_MAGIC);
    for word in [state.salt, state.gen, state.next_seq] {
        b.extend_from_slice(&word.to_le_bytes());
    }
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

/// Where the writer puts a file before renaming it to `path`: the same directory, so the
/// rename touches one directory only.
fn temp_path(path: &Path, seq: u64) -> PathBuf {
    path.with_file_name(format!("t{seq:016x}"))
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
    // One read usually covers the fixed header and the key.
    let mut head = vec![0u8; HEAD_READ];
    let n = read_up_to(file, &mut head)?;
    let fixed: &[u8; FIXED_LEN] = head
        .get(..FIXED_LEN)
        .and_then(|b| b.try_into().ok())
        .filter(|_| n >= FIXED_LEN)
        .ok_or(StoreError::Corrupt)?;
    let header = Header::decode(fixed).map_err(|_| StoreError::Corrupt)?;
    let fixed = *fixed;
    let key_end = FIXED_LEN + header.key_len as usize;
    let key = if key_end <= n {
        head.truncate(key_end);
        head.split_off(FIXED_LEN)
    } else {
        let mut key = vec![0u8; header.key_len as usize];
        file.read_exact_at(&mut key, FIXED_LEN as u64)
            .map_err(corrupt_io)?;
        key
    };
    header
        .verify_key(&fixed, &key)
        .map_err(|_| StoreError::Corrupt)?;
    let actual = file.metadata()?.len();
    if actual != header.file_len() {
        return Err(StoreError::Corrupt);
    }
    Ok((header, key))
}

/// Reads from offset 0 until `buf` is full or the file ends; returns the bytes read.
fn read_up_to(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// `write_all` over several buffers, with as few `writev` calls as the kernel allows.
fn write_all_vectored(mut file: &File, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match file.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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

    /// Removes the file of `hash` if it still is the one identified by `seq` (see
    /// [`DiskState::holds`]) in generation `gen`. Used when a read finds the file corrupt.
    pub fn report_corrupt(&self, hash: u64, seq: Option<u64>, gen: u64) {
        bump(&self.counters.corrupt);
        let mut st = self.lock();
        if st.gen == gen && st.holds(hash, seq, self.seq_start) {
            st.forget(hash);
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

    /// Drops the index entry of a file found missing (deleted behind the store's back).
    fn report_missing(&self, hash: u64, seq: u32, gen: u64) {
        let mut st = self.lock();
        if st.gen == gen && st.index.get(&hash).is_some_and(|e| e.seq == seq) {
            st.forget(hash);
        }
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
            self.report_corrupt(body.hash, Some(body.seq), body.gen);
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
                st.forget(hash);
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

    /// Takes `job` off the queue's bounds, waking fills waiting for room once the queue has
    /// drained to half (so they are woken in batches, not once per job). Returns whether the
    /// job still has to be written.
    fn dequeue(&self, job: &WriteJob) -> bool {
        let mut st = self.lock();
        st.queued_jobs -= 1;
        st.queued_bytes -= job.size;
        let room = st.queued_jobs <= QUEUE_JOBS / 2 && st.queued_bytes <= self.queue_limit / 2;
        let pending = Self::still_pending(&st, job);
        drop(st);
        if room {
            self.room.notify_waiters();
        }
        pending
    }

    fn write_job(&self, job: WriteJob) {
        if !self.dequeue(&job) {
            return;
        }
        let path = object_path(&self.root, job.gen, job.hash);
        let tmp = temp_path(&path, job.seq);
        let res = self.write_file(&tmp, &job);
        let mut st = self.lock();
        match res {
            Ok(()) if Self::still_pending(&st, &job) => {
                st.pending.remove(&job.hash);
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
                    let _ = fs::remove_file(&path);
                }
                drop(st);
                let _ = fs::remove_file(&tmp);
            }
        }
    }

    /// Writes the object file to `tmp` with one open and (for most objects) one `writev`; no
    /// fsync: a file torn by a crash fails its checks and is a miss.
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
        let file = create_file(tmp)?;
        let mut parts = Vec::with_capacity(3 + chunks.len());
        parts.extend([&head[..], &obj.meta[..], &table[..]].map(IoSlice::new));
        parts.extend(chunks.iter().map(|c| IoSlice::new(c)));
        write_all_vectored(&file, &mut parts)
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

    /// Rebuilds the index of generation `gen` from the headers of the files earlier runs left,
    /// while the store serves; files found are indexed oldest first (FIFO order).
    fn rebuild(&self, gen: u64) {
        let started = Instant::now();
        let mut found = Vec::new();
        let complete = self.scan_generation(gen, &mut found);
        found.sort_unstable_by_key(|&(_, seq, _)| seq);
        let n = found.len();
        if complete {
            self.merge(gen, found);
        }
        self.lock().rebuild = None;
        self.indexed.notify_all();
        tracing::info!(
            files = n,
            complete,
            seconds = started.elapsed().as_secs_f64(),
            "cache index rebuilt"
        );
    }

    /// Collects `(hash, seq, file length)` of every valid file of an earlier run and deletes
    /// invalid ones. Returns false if the rebuild was abandoned meanwhile.
    fn scan_generation(&self, gen: u64, found: &mut Vec<(u64, u64, u64)>) -> bool {
        let Ok(fan) = fs::read_dir(gen_dir(&self.root, gen)) else {
            return true;
        };
        for sub in fan.flatten() {
            if self.lock().rebuild.is_none() {
                return false; // abandoned: cleared or shut down
            }
            let Ok(files) = fs::read_dir(sub.path()) else {
                let _ = fs::remove_file(sub.path());
                continue;
            };
            for f in files.flatten() {
                let path = f.path();
                match self.scan_file(&path, gen) {
                    Scanned::Object(x) => found.push(x),
                    Scanned::Ours => {}
                    Scanned::Invalid(hash) => self.remove_invalid(&path, hash, gen),
                }
            }
        }
        true
    }

    /// Classifies one file under a fan-out directory.
    fn scan_file(&self, path: &Path, gen: u64) -> Scanned {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return Scanned::Invalid(None);
        };
        if let Some(seq) = name.strip_prefix('t') {
            // a temp file: this run's writer may be writing it right now
            return match u64::from_str_radix(seq, 16) {
                Ok(seq) if seq >= self.seq_start => Scanned::Ours,
                _ => Scanned::Invalid(None),
            };
        }
        let named = match u64::from_str_radix(name, 16) {
            Ok(hash) if name.len() == 16 => hash,
            _ => return Scanned::Invalid(None),
        };
        match check_file(path, self.salt, gen, named) {
            Some((seq, _)) if seq >= self.seq_start => Scanned::Ours,
            Some((seq, len)) => Scanned::Object((named, seq, len)),
            None => Scanned::Invalid(Some(named)),
        }
    }

    /// Deletes a file that failed its checks, unless it is an object file this run has
    /// written (or is writing) since the scan read it.
    fn remove_invalid(&self, path: &Path, hash: Option<u64>, gen: u64) {
        let st = self.lock();
        let ours = hash.is_some_and(|h| st.index.contains_key(&h) || st.pending.contains_key(&h));
        if st.gen == gen && !ours {
            tracing::info!(?path, "removing invalid cache file");
            let _ = fs::remove_file(path);
        }
    }

    /// Adds the files found by the scan to the index, ahead of (older than) everything written
    /// since start-up, and leaves out hashes changed meanwhile. The map is built outside the
    /// lock; under it the work is proportional to what changed during the scan.
    fn merge(&self, gen: u64, found: Vec<(u64, u64, u64)>) {
        let mut index = HashMap::with_capacity_and_hasher(found.len(), IdBuild::default());
        let mut fifo = VecDeque::with_capacity(found.len());
        for (hash, seq, len) in found {
            let e = IndexEntry {
                seq: seq as u32,
                units: units(len),
            };
            index.insert(hash, e);
            fifo.push_back((hash, e.seq));
        }
        let mut st = self.lock();
        let Some(rebuild) = st.rebuild.take() else {
            return;
        };
        if st.gen != gen {
            return;
        }
        for hash in &rebuild.touched {
            index.remove(hash);
        }
        index.extend(st.index.drain());
        fifo.extend(st.fifo.drain(..));
        st.used = index.values().map(|e| u64::from(e.units) * UNIT).sum();
        st.index = index;
        st.fifo = fifo;
        self.evict_locked(&mut st);
    }
}

/// What the index rebuild made of one file.
enum Scanned {
    /// A valid object file of an earlier run: (hash, seq, file length).
    Object((u64, u64, u64)),
    /// Written by this run: already indexed (or being written).
    Ours,
    /// Not a valid object file (with the hash its name claims, if any).
    Invalid(Option<u64>),
}

/// Creates the temp file of a write; the fan-out directory is created when first needed.
fn create_file(path: &Path) -> io::Result<File> {
    match File::create(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            File::create(path)
        }
        r => r,
    }
}

/// The sequence number and length of a valid object file named `named` in generation `gen`.
fn check_file(path: &Path, salt: u64, gen: u64, named: u64) -> Option<(u64, u64)> {
    let file = File::open(path).ok()?;
    let (header, key) = read_header(&file).ok()?;
    let hash = format::key_hash(salt, &key);
    let dir = path.parent()?.file_name()?.to_str()?;
    if hash != named || header.gen != gen || dir != format!("{:02x}", hash >> 56) {
        return None;
    }
    Some((header.seq, header.file_len()))
}

impl DiskTier {
    /// Opens (or creates) the disk tier under `root`. The index of existing files is rebuilt
    /// by a background thread; the tier serves (and writes) meanwhile.
    pub fn open(root: &Path, capacity: u64, max_object_bytes: u64) -> io::Result<DiskTier> {
        let tier = Self::open_unindexed(root, capacity, max_object_bytes)?;
        let (shared, gen) = (tier.shared.clone(), tier.gen());
        std::thread::Builder::new()
            .name("velox-cache-index".into())
            .spawn(move || shared.rebuild(gen))?;
        Ok(tier)
    }

    /// Opens the tier with the index rebuild pending but not started (see [`DiskShared::rebuild`]).
    pub(crate) fn open_unindexed(
        root: &Path,
        capacity: u64,
        max_object_bytes: u64,
    ) -> io::Result<DiskTier> {
        fs::create_dir_all(root)?;
        // Temp files of older versions of the store lived here.
        let legacy_tmp = root.join("tmp");
        if legacy_tmp.exists() {
            fs::remove_dir_all(&legacy_tmp)?;
        }
        let state = read_state(root).unwrap_or(Persisted {
            salt: random_u64(),
            gen: 0,
            next_seq: SEQ_SPAN,
        });
        let seq_start = state.next_seq;
        let seq_end = seq_start + SEQ_SPAN;
        write_state(
            root,
            Persisted {
                next_seq: seq_end,
                ..state
            },
        )?;
        let st = DiskState {
            gen: state.gen,
            next_seq: seq_start,
            index: HashMap::default(),
            fifo: VecDeque::new(),
            pending: HashMap::default(),
            used: 0,
            queued_jobs: 0,
            queued_bytes: 0,
            rebuild: Some(Rebuild::default()),
        };
        let shared = Arc::new(DiskShared {
            root: root.to_path_buf(),
            salt: state.salt,
            capacity,
            queue_limit: QUEUE_BYTES.max(max_object_bytes),
            seq_start,
            state: Mutex::new(st),
            indexed: Condvar::new(),
            room: tokio::sync::Notify::new(),
            cleanup: AtomicBool::new(true),
            counters: DiskCounters::default(),
        });
        let (tx, rx) = mpsc::channel();
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

    /// Blocks until the index rebuild started at open has finished.
    pub fn wait_indexed(&self) {
        let mut st = self.shared.lock();
        while st.rebuild.is_some() {
            st = self
                .shared
                .indexed
                .wait(st)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Queues `obj` for writing if the queue has room; the new version replaces the old one at
    /// once, even before it reaches the disk.
    fn try_enqueue(&self, hash: u64, gen: u64, obj: &Arc<Object>) -> Result<(), NotQueued> {
        let d = &self.shared;
        let size = file_len(obj);
        if size > d.capacity {
            return Err(NotQueued::Never);
        }
        let mut st = d.lock();
        if st.gen != gen {
            return Ok(()); // cleared meanwhile: nothing to write
        }
        if !st.has_room(size, d.queue_limit) {
            return Err(NotQueued::Full);
        }
        st.forget(hash);
        let seq = st.next_seq;
        st.next_seq += 1;
        st.pending.insert(
            hash,
            Pending {
                seq,
                obj: obj.clone(),
            },
        );
        st.queued_jobs += 1;
        st.queued_bytes += size;
        let job = Job::Write(WriteJob {
            hash,
            seq,
            gen,
            size,
            obj: obj.clone(),
        });
        if self.tx.send(job).is_err() {
            // the writer is gone (shutting down): nothing will be written
            st.pending.remove(&hash);
        }
        Ok(())
    }

    /// Gives up the disk copy of `hash`: counted, and the version it replaces is deleted.
    fn skip(&self, hash: u64, gen: u64) {
        let d = &self.shared;
        bump(&d.counters.write_skipped);
        let mut st = d.lock();
        if st.gen != gen {
            return;
        }
        // while the index is rebuilt, a file of an earlier run may exist unindexed
        if st.forget(hash) || st.rebuild.is_some() {
            let _ = fs::remove_file(object_path(&d.root, gen, hash));
        }
    }

    /// Queues `obj` for writing, or skips the disk copy if the queue is full. Never blocks on
    /// I/O except to delete the replaced version of the object when the write is skipped.
    pub fn enqueue(&self, hash: u64, gen: u64, obj: &Arc<Object>) {
        if self.try_enqueue(hash, gen, obj).is_err() {
            self.skip(hash, gen);
        }
    }

    /// Like [`DiskTier::enqueue`], but waits up to `wait` for room in a full queue.
    pub async fn enqueue_waiting(&self, hash: u64, gen: u64, obj: &Arc<Object>, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // registered before the check, so a wake-up in between is not lost
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_enqueue(hash, gen, obj) {
                Ok(()) => return,
                Err(NotQueued::Never) => break,
                Err(NotQueued::Full) => {}
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                break;
            }
        }
        self.skip(hash, gen);
    }

    /// Whether a lookup of `hash` could find anything, from the in-memory index alone (no I/O):
    /// lets callers answer most misses without going to a blocking thread. Always true while
    /// the index is being rebuilt.
    pub fn may_contain(&self, hash: u64) -> bool {
        let st = self.shared.lock();
        st.rebuild.is_some() || st.pending.contains_key(&hash) || st.index.contains_key(&hash)
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
            let entry = st.index.get(&hash).copied();
            if entry.is_none() && st.rebuild.is_none() {
                bump(&d.counters.misses);
                return None;
            }
            (st.gen, entry)
        };
        // Not indexed yet while the index is rebuilt: the file is checked directly.
        let seq = entry.map(|e| u64::from(e.seq));
        match self.read_hit(gen, hash, key) {
            Ok(Some(hit)) => {
                bump(&d.counters.hits);
                return Some(Found::File(hit, gen));
            }
            Ok(None) => bump(&d.counters.collisions),
            Err(StoreError::Io(err)) if err.kind() == io::ErrorKind::NotFound => {
                // removed or evicted since the index lookup, or deleted behind our back
                if let Some(e) = entry {
                    d.report_missing(hash, e.seq, gen);
                }
            }
            // transient (say, too many open files): a miss, but the file is kept
            Err(StoreError::Io(err)) => tracing::debug!(%err, "disk cache read failed"),
            Err(_) => d.report_corrupt(hash, seq, gen),
        }
        bump(&d.counters.misses);
        None
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
                .report_corrupt(hit.hash, Some(hit.header.seq), gen);
            return Err(StoreError::Corrupt);
        }
        Ok(chunks)
    }

    /// Removes `hash` from the index and deletes its file (and cancels a pending write).
    pub fn remove(&self, hash: u64) -> bool {
        let d = &self.shared;
        let mut st = d.lock();
        let held = st.forget(hash);
        let removed = fs::remove_file(object_path(&d.root, st.gen, hash)).is_ok();
        held || removed
    }

    /// Starts a new generation: persisted first, then the index is dropped (and a running
    /// rebuild abandoned); the old files are deleted by the background thread. Returns the new
    /// generation.
    pub fn clear(&self) -> u64 {
        let d = &self.shared;
        let mut st = d.lock();
        st.gen += 1;
        let state = Persisted {
            salt: d.salt,
            gen: st.gen,
            next_seq: d.seq_start + SEQ_SPAN,
        };
        if let Err(err) = write_state(&d.root, state) {
            tracing::error!(%err, "could not persist the cache generation; a restart may bring back cleared objects");
        }
        st.index = HashMap::default();
        st.fifo = VecDeque::new();
        st.pending.clear();
        st.used = 0;
        st.rebuild = None;
        let gen = st.gen;
        drop(st);
        d.indexed.notify_all();
        d.cleanup.store(true, Ordering::SeqCst);
        let _ = self.tx.send(Job::Wake);
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
        self.shared.lock().rebuild = None;
        self.shared.indexed.notify_all();
        let _ = self.tx.send(Job::Shutdown);
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// Runs the index rebuild of a tier opened with [`DiskTier::open_unindexed`].
    #[cfg(test)]
    pub(crate) fn rebuild_now(&self) {
        self.shared.rebuild(self.gen());
    }

    #[cfg(test)]
    pub(crate) fn root(&self) -> &Path {
        &self.shared.root
    }
}
