//! The access log: one JSON line per request. The request thread copies what its line needs into
//! a shared in-memory batch as a record (its numbers as they are, its texts unescaped: no
//! allocation, no formatting, no per-line hand-off); a background thread swaps the batch out
//! every few milliseconds, formats the records into JSON lines and writes them. The batch holds
//! at most `buffer` records: when it is full the line is dropped and counted
//! (`velox_log_dropped_total`), so a request never waits on the disk.

use crate::cache_status::CacheOutcome;
use crate::json_line::{self, plain, string_room, Line};
use crate::log_file::{self, LogFile};
use crate::request_id::{self, GeneratedId};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// What one request leaves for the log, borrowed from the request's record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogEvent<'a> {
    /// When the request ended, in nanoseconds since the Unix epoch.
    pub unix_nanos: u64,
    pub client: IpAddr,
    /// An HTTP token (the http crate refuses anything else).
    pub method: &'a [u8],
    /// Field values, as sent.
    pub host: Option<&'a [u8]>,
    /// Path and query.
    pub path: &'a [u8],
    pub status: u16,
    pub bytes: u64,
    pub duration: Duration,
    pub upstream: Option<Duration>,
    pub cache: CacheOutcome,
    pub cache_status: Option<&'a [u8]>,
    /// The route's name as a JSON string ([`json_string`]): escaped once per route, not per line.
    pub route: &'a [u8],
    pub request_id: LoggedId<'a>,
}

/// The request id as logged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoggedId<'a> {
    None,
    Generated(GeneratedId),
    /// The client's `X-Request-Id` value.
    Client(&'a [u8]),
}

/// `s` as a JSON string, for text that is written again and again (a route's name).
pub fn json_string(s: &str) -> Box<[u8]> {
    let mut out = Vec::new();
    json_line::append_to(&mut out, string_room(s.len()), |line| {
        line.string(s.as_bytes())
    });
    out.into()
}

/// A field value as a JSON string; `null` when absent or not text (visible ASCII, space, tab).
fn opt_header(line: &mut Line, v: Option<&[u8]>) {
    match v {
        Some(h) if plain(h) => line.quoted(h),
        Some(h) if h.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) => line.string(h),
        _ => line.put(b"null"),
    }
}

/// Room for a line's fixed part: its names, numbers, time, address and a generated id (about
/// 350 bytes at most), with a margin.
const LINE_FIXED: usize = 512;

impl LogEvent<'_> {
    /// The most room the JSON line can take.
    pub fn room(&self) -> usize {
        let client_id = match self.request_id {
            LoggedId::Client(id) => id,
            _ => b"",
        };
        let texts = self.method.len()
            + self.host.map_or(0, <[u8]>::len)
            + self.path.len()
            + self.cache_status.map_or(0, <[u8]>::len)
            + client_id.len();
        LINE_FIXED + string_room(texts) + self.route.len()
    }

    /// Writes the JSON line into room of at least [`LogEvent::room`] bytes. Written by hand
    /// (fixed field order, no intermediate values): this runs once per request.
    pub fn write_json(&self, line: &mut Line, clock: &mut SecondClock) {
        line.put(b"{\"time\":\"");
        clock.write(line, self.unix_nanos);
        line.put(b"\",\"client\":\"");
        line.ip(self.client);
        // Methods are HTTP tokens: nothing to escape.
        line.put(b"\",\"method\":\"");
        line.put(self.method);
        line.put(b"\",\"host\":");
        opt_header(line, self.host);
        line.put(b",\"path\":");
        line.string(self.path);
        line.put(b",\"status\":");
        line.number(self.status);
        line.put(b",\"bytes\":");
        line.number(self.bytes);
        line.put(b",\"duration_ms\":");
        line.millis(self.duration);
        line.put(b",\"upstream_ms\":");
        match self.upstream {
            Some(d) => line.millis(d),
            None => line.put(b"null"),
        }
        line.put(b",\"cache\":\"");
        line.put(self.cache.as_str().as_bytes());
        line.put(b"\",\"cache_status\":");
        opt_header(line, self.cache_status);
        line.put(b",\"route\":");
        line.put(self.route);
        line.put(b",\"request_id\":");
        match self.request_id {
            // Hex digits and a dash: nothing to escape.
            LoggedId::Generated(id) => line.write_with(request_id::MAX_LEN + 2, |to| {
                to[0] = b'"';
                let len = id.write(&mut to[1..]);
                to[len + 1] = b'"';
                len + 2
            }),
            LoggedId::Client(id) => opt_header(line, Some(id)),
            LoggedId::None => line.put(b"null"),
        }
        line.put(b"}\n");
    }

    /// Appends the event as a record: [`HEAD`] bytes of numbers and text lengths, then the texts.
    fn encode(&self, out: &mut Vec<u8>) {
        let (id_kind, id_counter, client_id): (u8, u64, &[u8]) = match self.request_id {
            LoggedId::None => (0, 0, b""),
            LoggedId::Generated(id) => (1, id.counter(), b""),
            LoggedId::Client(id) => (2, 0, id),
        };
        let texts = [
            self.method,
            self.host.unwrap_or_default(),
            self.path,
            self.cache_status.unwrap_or_default(),
            self.route,
            client_id,
        ]
        .map(|t| &t[..t.len().min(u32::MAX as usize)]);
        let (client, v6) = match self.client {
            IpAddr::V4(v4) => (v4.to_ipv6_mapped().octets(), false),
            IpAddr::V6(v6) => (v6.octets(), true),
        };
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        let flags = flag(v6, V6)
            | id_kind << ID_KIND_SHIFT
            | flag(self.host.is_some(), HAS_HOST)
            | flag(self.cache_status.is_some(), HAS_CACHE_STATUS)
            | flag(self.upstream.is_some(), HAS_UPSTREAM);
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // Filled in place: made on the stack and copied, it would be read back wider than it
        // was stored, which stalls the CPU (see `json_line`).
        let start = out.len();
        out.resize(start + HEAD, 0);
        let Some(head) = out[start..].first_chunk_mut::<HEAD>() else {
            return;
        };
        head[0..8].copy_from_slice(&self.unix_nanos.to_ne_bytes());
        head[8..16].copy_from_slice(&nanos(self.duration).to_ne_bytes());
        head[16..24].copy_from_slice(&nanos(self.upstream.unwrap_or_default()).to_ne_bytes());
        head[24..32].copy_from_slice(&self.bytes.to_ne_bytes());
        head[32..40].copy_from_slice(&id_counter.to_ne_bytes());
        head[40..56].copy_from_slice(&client);
        head[56..58].copy_from_slice(&self.status.to_ne_bytes());
        head[58] = flags;
        head[59] = self.cache.index() as u8;
        for (i, text) in texts.iter().enumerate() {
            head[60 + 4 * i..64 + 4 * i].copy_from_slice(&(text.len() as u32).to_ne_bytes());
        }
        for text in texts {
            out.extend_from_slice(text);
        }
    }

    /// Reads back the record at the start of `records`; returns it and the records after it.
    /// `None` at the end (or, which cannot happen, at a malformed record).
    fn decode(records: &[u8]) -> Option<(LogEvent<'_>, &[u8])> {
        let head = records.first_chunk::<HEAD>()?;
        let u64_at = |i: usize| u64::from_ne_bytes(*head[i..].first_chunk().unwrap_or(&[0; 8]));
        let mut rest = &records[HEAD..];
        let mut texts: [&[u8]; 6] = [&[]; 6];
        for (i, text) in texts.iter_mut().enumerate() {
            let len = u32::from_ne_bytes(*head[60 + 4 * i..].first_chunk()?);
            (*text, rest) = rest.split_at_checked(len as usize)?;
        }
        let [method, host, path, cache_status, route, client_id] = texts;
        let flags = head[58];
        let client = std::net::Ipv6Addr::from(*head[40..].first_chunk::<16>()?);
        let event = LogEvent {
            unix_nanos: u64_at(0),
            client: match (flags & V6 != 0, client.to_ipv4_mapped()) {
                (false, Some(v4)) => IpAddr::V4(v4),
                _ => IpAddr::V6(client),
            },
            method,
            host: (flags & HAS_HOST != 0).then_some(host),
            path,
            status: u16::from_ne_bytes(*head[56..].first_chunk()?),
            bytes: u64_at(24),
            duration: Duration::from_nanos(u64_at(8)),
            upstream: (flags & HAS_UPSTREAM != 0).then(|| Duration::from_nanos(u64_at(16))),
            cache: *CacheOutcome::ALL.get(usize::from(head[59]))?,
            cache_status: (flags & HAS_CACHE_STATUS != 0).then_some(cache_status),
            route,
            request_id: match flags >> ID_KIND_SHIFT & 3 {
                1 => LoggedId::Generated(GeneratedId::from_counter(u64_at(32))),
                2 => LoggedId::Client(client_id),
                _ => LoggedId::None,
            },
        };
        Some((event, rest))
    }
}

/// The size of a record's fixed part, in native byte order: time, duration, upstream time, bytes
/// and a generated id's counter (64 bits each, at 0..40), the client's address (16 bytes, IPv4
/// mapped), the status (16 bits, at 56), flags (58), the cache outcome (59) and the lengths of
/// the six texts that follow the fixed part (32 bits each, at 60..84).
const HEAD: usize = 5 * 8 + 16 + 2 + 1 + 1 + 6 * 4;

// Flag bits; bits 1-2 hold the request id's kind (0 none, 1 generated, 2 the client's).
const V6: u8 = 1;
const ID_KIND_SHIFT: u8 = 1;
const HAS_HOST: u8 = 1 << 3;
const HAS_CACHE_STATUS: u8 = 1 << 4;
const HAS_UPSTREAM: u8 = 1 << 5;

/// `t` in nanoseconds since the Unix epoch (0 before it).
pub fn unix_nanos(t: SystemTime) -> u64 {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Formats records into JSON lines, each straight into the output's buffer; returns how many
/// bytes they took.
fn format_records(
    mut records: &[u8],
    out: &mut LogFile,
    clock: &mut SecondClock,
) -> std::io::Result<usize> {
    let mut length = 0;
    while let Some((event, rest)) = LogEvent::decode(records) {
        // The batch was written up to a round ago and is out of the nearest caches by now.
        prefetch(rest.as_ptr().wrapping_add(READ_AHEAD), 128);
        let mut line = Line::new(out.room(event.room())?);
        event.write_json(&mut line, clock);
        let len = line.len();
        out.filled(len)?;
        length += len;
        records = rest;
    }
    Ok(length)
}

/// Formats timestamps, re-rendering the date and time only when the second changes.
#[derive(Default)]
pub struct SecondClock {
    second: u64,
    text: String,
}

impl SecondClock {
    fn write(&mut self, line: &mut Line, unix_nanos: u64) {
        let second = unix_nanos / 1_000_000_000;
        if self.text.is_empty() || second != self.second {
            self.second = second;
            let full = rfc3339_millis(SystemTime::UNIX_EPOCH + Duration::from_secs(second));
            self.text = full[..19].to_owned();
        }
        line.put(self.text.as_bytes());
        line.millis_z((unix_nanos / 1_000_000 % 1000) as u16);
    }
}

/// `2024-05-01T12:34:56.789Z`.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Where lines go.
#[derive(Debug, Clone)]
pub enum Target {
    Stdout,
    File(PathBuf),
}

/// The records left since the writer last took them.
#[derive(Default)]
struct Batch {
    records: Vec<u8>,
    lines: usize,
}

struct Shared {
    batch: Mutex<Batch>,
    /// Lines a batch may hold before new ones are dropped.
    max_lines: usize,
    dropped: Arc<AtomicU64>,
    closed: AtomicBool,
    /// Set by a reload: the writer reopens the file by its path.
    reopen: AtomicBool,
}

pub struct AccessLog {
    shared: Arc<Shared>,
    /// Woken when a batch is half full (and to finish or reopen), so that a high rate of lines
    /// is written before the batch fills, however long the interval.
    writer: std::thread::Thread,
    /// Taken by [`AccessLog::close`], which waits for the last lines.
    finished: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl AccessLog {
    /// Starts the writer thread. A regular file is opened (append) before returning so that an
    /// unwritable path fails start-up; a FIFO is opened by the thread, since opening one blocks
    /// until a reader appears.
    pub fn start(target: Target, buffer: usize, dropped: Arc<AtomicU64>) -> std::io::Result<Self> {
        Self::start_every(WRITE_INTERVAL, target, buffer, dropped)
    }

    fn start_every(
        interval: Duration,
        target: Target,
        buffer: usize,
        dropped: Arc<AtomicU64>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            batch: Mutex::default(),
            max_lines: buffer.max(1),
            dropped,
            closed: AtomicBool::new(false),
            reopen: AtomicBool::new(false),
        });
        let (out, reopen): (Opener, Option<Reopener>) = match target {
            Target::Stdout => (Box::new(|| Ok(LogFile::plain(std::io::stdout()))), None),
            // A FIFO is not reopened: opening one waits for a reader.
            Target::File(path) if is_fifo(&path) => (
                Box::new(move || open_append(&path).map(LogFile::plain)),
                None,
            ),
            Target::File(path) => {
                let file = LogFile::open(&path)?;
                (
                    Box::new(move || Ok(file)),
                    Some(Box::new(move || LogFile::open(&path))),
                )
            }
        };
        let writer = shared.clone();
        let handle = std::thread::Builder::new()
            .name("velox-access-log".into())
            .spawn(move || match out() {
                Ok(out) => write_loop(&writer, out, reopen, interval),
                Err(e) => tracing::error!(error = %e, "cannot open the access log"),
            })?;
        Ok(AccessLog {
            shared,
            writer: handle.thread().clone(),
            finished: Mutex::new(Some(handle)),
        })
    }

    /// Has the writer write every line taken so far and stop, and waits for it (at most
    /// `limit`: a FIFO nobody reads must not hold up the end of the process). For a stop: the
    /// process does not wait for the writer thread by itself, and the lines of its last round,
    /// a direct-I/O file's partial block among them, would be lost. Lines logged after this are
    /// not written.
    pub fn close(&self, limit: Duration) {
        self.shared.closed.store(true, Relaxed);
        self.writer.unpark();
        let Some(handle) = self.finished.lock().ok().and_then(|mut h| h.take()) else {
            return;
        };
        let deadline = std::time::Instant::now() + limit;
        while !handle.is_finished() {
            if std::time::Instant::now() >= deadline {
                tracing::warn!("the access log's last lines were not written in time");
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = handle.join();
    }

    /// Has the writer reopen the file by its path once it has written what it holds (after a
    /// log rotation moved the file away: logrotate's `create` with a reload in `postrotate`).
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Relaxed);
        self.writer.unpark();
    }

    /// Never blocks on I/O: a full batch drops the line and counts it.
    pub fn log(&self, event: &LogEvent) {
        let Ok(mut batch) = self.shared.batch.lock() else {
            return;
        };
        if batch.lines >= self.shared.max_lines {
            drop(batch);
            self.shared.dropped.fetch_add(1, Relaxed);
            return;
        }
        event.encode(&mut batch.records);
        batch.lines += 1;
        prefetch_next_record(&batch.records);
        // One wake-up per half batch, outside the lock.
        let half_full = batch.lines == self.shared.max_lines.div_ceil(2);
        drop(batch);
        if half_full {
            self.writer.unpark();
        }
    }
}

/// Room a record usually takes (its fixed part and texts): the next record's memory is
/// prefetched this far.
const RECORD_HINT: usize = 256;

/// How far ahead of the record it formats the writer has the next ones fetched (a few records).
const READ_AHEAD: usize = 1024;

/// Asks the CPU to fetch the memory the next record will go to, so that it is in cache when
/// that record is written (a request later) instead of each record waiting for its cache lines:
/// the batch moves through hundreds of kilobytes between two writes, memory no recent request
/// has touched.
#[inline]
fn prefetch_next_record(batch: &[u8]) {
    prefetch(batch.as_ptr_range().end, RECORD_HINT);
}

/// Asks the CPU to fetch the `len` bytes at `at` into its cache.
#[inline]
fn prefetch(at: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        for offset in (0..len).step_by(64) {
            // SAFETY: a prefetch only hints the cache; it neither reads nor writes memory
            // as far as the program is concerned, and never faults, even past the buffer.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(offset).cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (at, len);
}

impl Drop for AccessLog {
    /// The writer writes what is left and stops.
    fn drop(&mut self) {
        self.shared.closed.store(true, Relaxed);
        self.writer.unpark();
    }
}

fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// How often the writer takes the batch when it is not woken sooner (by a half-full batch, a
/// reopen or the end). It is not woken per line (a futex call each), and rarely: every round is
/// a context switch on the CPU the requests run on and a direct write, about 50-130 µs of CPU
/// on the benchmark machine: against 20 ms, a 5 ms interval cost a logged 1 KiB hit 4% of its
/// throughput, and this one gained 1.7% (BENCHMARKS.md). `tail -f` sees a line within two rounds.
const WRITE_INTERVAL: Duration = Duration::from_millis(100);

type Opener = Box<dyn FnOnce() -> std::io::Result<LogFile> + Send>;
type Reopener = Box<dyn Fn() -> std::io::Result<LogFile> + Send>;

/// Swaps the shared batch with an empty buffer (the previous one, so nothing is allocated in
/// steady state), then formats and writes its records outside the lock.
fn write_loop(shared: &Shared, mut out: LogFile, reopen: Option<Reopener>, interval: Duration) {
    let mut spare = Vec::with_capacity(64 * 1024);
    let mut clock = SecondClock::default();
    loop {
        let closed = shared.closed.load(Relaxed);
        if let Ok(mut batch) = shared.batch.lock() {
            std::mem::swap(&mut batch.records, &mut spare);
            batch.lines = 0;
        }
        // A busy round writes whole blocks; a light one (less than a block of new text, or the
        // last) also flushes what waits (see `log_file`). So a line is visible within two
        // rounds, whatever the rate.
        let written = format_records(&spare, &mut out, &mut clock)
            .and_then(|length| out.end_round(length < log_file::BLOCK || closed));
        if let Err(e) = written {
            tracing::warn!(error = %e, "access log write failed");
        }
        spare.clear();
        if let (true, Some(open)) = (shared.reopen.swap(false, Relaxed), &reopen) {
            match open() {
                Ok(fresh) => {
                    if let Err(e) = out.end_round(true) {
                        tracing::warn!(error = %e, "access log write failed");
                    }
                    out = fresh;
                    tracing::info!("access log reopened");
                }
                Err(e) => tracing::warn!(error = %e, "cannot reopen the access log; writing on"),
            }
        }
        if closed {
            return;
        }
        std::thread::park_timeout(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn timestamps() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_714_566_896_789);
        assert_eq!(rfc3339_millis(t), "2024-05-01T12:34:56.789Z");
        assert_eq!(
            rfc3339_millis(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339_millis(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn field_values_are_strings_when_text_and_null_otherwise() {
        let mut out = Vec::new();
        json_line::append_to(&mut out, 100, |line| {
            for value in [Some(&b"caf\xe9"[..]), Some(b"a\tb"), Some(b"q\"x"), None] {
                opt_header(line, value);
            }
        });
        assert_eq!(String::from_utf8(out).unwrap(), r#"null"a\tb""q\"x"null"#);
    }

    /// The event's line, as the writer formats it.
    fn line_of(event: &LogEvent, clock: &mut SecondClock) -> Vec<u8> {
        let mut out = Vec::new();
        json_line::append_to(&mut out, event.room(), |line| event.write_json(line, clock));
        out
    }

    #[test]
    fn json_line() {
        let event = LogEvent {
            unix_nanos: 0,
            client: "10.0.0.1".parse().unwrap(),
            method: b"GET",
            host: Some(b"example.com"),
            path: b"/",
            status: 200,
            bytes: 42,
            duration: Duration::from_micros(1500),
            upstream: None,
            cache: CacheOutcome::Hit,
            cache_status: Some(b"velox; hit; ttl=5"),
            route: &json_string("main"),
            request_id: LoggedId::Client(b"abc-1"),
        };
        let out = line_of(&event, &mut SecondClock::default());
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["upstream_ms"], serde_json::Value::Null);
        assert_eq!(v["cache"], "hit");
        assert_eq!(v["request_id"], "abc-1");
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["path"], "/");
        assert_eq!(v["client"], "10.0.0.1");
        assert_eq!(v["bytes"], 42);
        assert!(out.ends_with(b"\n"));
    }

    /// The room a line is given holds the longest line its texts can make: every number at
    /// its widest, the longest address, and texts that escape to six bytes a byte.
    #[test]
    fn the_widest_line_fits_its_room() {
        let control = [0x01u8; 300];
        let route = json_string(&"\u{1}".repeat(50));
        let mut clock = SecondClock::default();
        for (client, id) in [
            (
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                LoggedId::Client(&[b'\t'; 128]),
            ),
            (
                "255.255.255.255",
                LoggedId::Generated(GeneratedId::from_counter(u64::MAX)),
            ),
        ] {
            let event = LogEvent {
                unix_nanos: u64::MAX,
                client: client.parse().unwrap(),
                method: b"PROPPATCH",
                host: Some(&[b'\t'; 300]),
                path: &control,
                status: u16::MAX,
                bytes: u64::MAX,
                duration: Duration::MAX,
                upstream: Some(Duration::MAX),
                cache: CacheOutcome::Revalidated,
                cache_status: Some(&[b'"'; 300]),
                route: &route,
                request_id: id,
            };
            let line = line_of(&event, &mut clock);
            assert!(line.len() <= event.room());
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(v["path"].as_str().unwrap().len(), 300);
            assert_eq!(v["cache_status"].as_str().unwrap(), "\"".repeat(300));
            // The fixed part at its widest, with texts too short to lend it room.
            let bare = LogEvent {
                method: b"GET",
                host: None,
                path: b"/",
                cache_status: None,
                route: b"\"r\"",
                request_id: LoggedId::Generated(GeneratedId::from_counter(u64::MAX)),
                ..event
            };
            let line = line_of(&bare, &mut clock);
            assert!(
                line.len() >= 320 && line.len() <= bare.room(),
                "{}",
                line.len()
            );
        }
    }

    fn event(path: &[u8]) -> LogEvent<'_> {
        LogEvent {
            unix_nanos: 0,
            client: "10.0.0.1".parse().unwrap(),
            method: b"GET",
            host: None,
            path,
            status: 200,
            bytes: 1,
            duration: Duration::ZERO,
            upstream: None,
            cache: CacheOutcome::Hit,
            cache_status: None,
            route: b"\"r\"",
            request_id: LoggedId::None,
        }
    }

    /// Lines in `path` once it has at least `want` (or after 10 s).
    fn lines_within_10s(path: &Path, want: usize) -> usize {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let lines = std::fs::read(path).map_or(0, |t| t.split(|b| *b == b'\n').count() - 1);
            if lines >= want || std::time::Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_half_full_batch_wakes_the_writer_and_the_end_flushes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let dropped = Arc::new(AtomicU64::new(0));
        // An interval no test waits for: only the wake-ups can write.
        let log = AccessLog::start_every(
            Duration::from_secs(3600),
            Target::File(path.clone()),
            64,
            dropped.clone(),
        )
        .unwrap();
        // The writer's first round takes nothing; let it reach its wait.
        std::thread::sleep(Duration::from_millis(50));
        for _ in 0..31 {
            log.log(&event(b"/a"));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(lines_within_10s(&path, 0), 0, "31 of 64: no wake-up yet");
        // Half full: written at once. A direct-I/O file shows its whole 4 KiB blocks (32
        // lines of about 200 bytes fill one), a plain one every line.
        log.log(&event(b"/b"));
        assert!(lines_within_10s(&path, 1) >= 4096 / 256);
        log.log(&event(b"/c"));
        drop(log);
        assert_eq!(
            lines_within_10s(&path, 33),
            33,
            "the end writes what is left"
        );
        assert_eq!(dropped.load(Relaxed), 0);
    }

    #[test]
    fn records_read_back_as_the_events_they_were_made_of() {
        let route = json_string("r\"1");
        let full = LogEvent {
            unix_nanos: 1_714_566_896_789_123_456,
            client: "2001:db8::1".parse().unwrap(),
            method: b"PURGE",
            host: Some(b"caf\xe9.example"),
            path: b"/a b?q=\"x\"",
            status: 503,
            bytes: u64::MAX,
            duration: Duration::from_nanos(123_456_789),
            upstream: Some(Duration::ZERO),
            cache: CacheOutcome::Stale,
            cache_status: Some(b""),
            route: &route,
            request_id: LoggedId::Client(b"id-\x01"),
        };
        let bare = LogEvent {
            unix_nanos: 0,
            client: "::ffff:10.0.0.1".parse().unwrap(),
            host: None,
            upstream: None,
            cache_status: None,
            request_id: LoggedId::None,
            path: b"",
            ..full
        };
        let v4 = LogEvent {
            client: "10.0.0.1".parse().unwrap(),
            request_id: LoggedId::Generated(GeneratedId::from_counter(77)),
            ..bare
        };
        let mut records = Vec::new();
        for event in [full, bare, v4] {
            event.encode(&mut records);
        }
        let (mut read, mut rest) = (Vec::new(), &records[..]);
        while let Some((event, next)) = LogEvent::decode(rest) {
            read.push(event);
            rest = next;
        }
        assert_eq!(read, [full, bare, v4]);
        assert!(rest.is_empty());
        // A cut-off record reads as the end.
        assert_eq!(LogEvent::decode(&records[..HEAD + 3]), None);

        let direct: Vec<u8> = [full, bare, v4]
            .iter()
            .flat_map(|event| line_of(event, &mut SecondClock::default()))
            .collect();
        let formatted = SharedText::default();
        let mut out = LogFile::plain(formatted.clone());
        let length = format_records(&records, &mut out, &mut SecondClock::default()).unwrap();
        assert_eq!(length, direct.len());
        assert!(
            formatted.text().is_empty(),
            "written only when the round ends"
        );
        out.end_round(false).unwrap();
        assert_eq!(
            String::from_utf8(formatted.text()).unwrap(),
            String::from_utf8(direct).unwrap()
        );
    }

    /// A stream whose text a test can read.
    #[derive(Clone, Default)]
    struct SharedText(Arc<Mutex<Vec<u8>>>);

    impl SharedText {
        fn text(&self) -> Vec<u8> {
            self.0.lock().unwrap().clone()
        }
    }

    impl Write for SharedText {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
