//! Purge generations, not scans (see docs/PURGE.md).
//!
//! A purge is a record `target -> time`: a tag, a URL path prefix (for one host or any), an exact
//! URL (its cache key), or everything (the epoch). A stored object keeps the time it was stored
//! and its tags; a lookup asks [`Purges::check`] whether any record covering the object is at
//! or after that time. A hard record makes the object a miss, a soft one makes it stale. So a
//! purge costs O(1) whatever the number of objects it covers, and the records are tiny.
//!
//! Records are kept in memory ([`Records`], pure) and appended to a log file (one JSON line
//! each) that is compacted through a temp file and a rename; the log is replayed at start, so
//! purges survive restarts. A record older than the retention, or beyond the record bound
//! (oldest first), is folded into the epoch: "everything stored before T is purged". That
//! keeps covering all it covered (and more), so dropping records never resurrects an object.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a purge covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Every stored object.
    All,
    /// Objects carrying this tag.
    Tag(String),
    /// Objects whose path (and query) starts with `prefix`, on `host` (any host when `None`).
    Prefix {
        host: Option<String>,
        prefix: String,
    },
    /// The object(s) stored under this URL cache key (every variant hangs off it).
    Url(String),
}

/// The latest hard and soft purge times of one target, in milliseconds since the Unix epoch
/// (0: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Mark {
    hard: u64,
    soft: u64,
}

impl Mark {
    fn apply(&mut self, at: u64, soft: bool) {
        let slot = if soft { &mut self.soft } else { &mut self.hard };
        *slot = (*slot).max(at);
    }

    fn latest(&self) -> u64 {
        self.hard.max(self.soft)
    }
}

/// The facts of a stored object that purges are judged by.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// When it was stored, in ms since the Unix epoch (see [`millis`]).
    pub stored_at: u64,
    pub tags: &'a [Box<str>],
    /// The request's host (any case, with or without a port).
    pub host: &'a str,
    /// Path and query, as requested.
    pub path: &'a str,
    /// The URL's cache key.
    pub url_key: &'a str,
}

/// What the records say about a stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    /// Stale since this time (ms): revalidate before use; serve-stale rules still apply.
    Soft(u64),
    /// Purged: treat as a miss.
    Hard,
}

/// Path prefixes purged for one host: looked up by every distinct record length, so the cost
/// depends on how many lengths there are, not how many prefixes.
#[derive(Debug, Default)]
struct Prefixes {
    by_prefix: HashMap<Box<str>, Mark>,
    /// Prefix length -> how many prefixes have it.
    lengths: BTreeMap<usize, usize>,
}

/// The purge records (pure: no I/O, no clock).
#[derive(Debug, Default)]
pub struct Records {
    epoch: Mark,
    tags: HashMap<Box<str>, Mark>,
    urls: HashMap<Box<str>, Mark>,
    /// Host ("" for any host) -> prefixes.
    prefixes: HashMap<Box<str>, Prefixes>,
    count: usize,
}

/// Lowercase host without its port, as prefix records are keyed.
pub fn host_key(authority: &str) -> Cow<'_, str> {
    let host = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => &authority[..i],
        _ => authority,
    };
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

impl Records {
    /// Records that `target` was purged at `at` (ms).
    pub fn insert(&mut self, target: &Target, at: u64, soft: bool) {
        let mark = match target {
            Target::All => {
                self.epoch.apply(at, soft);
                return;
            }
            Target::Tag(tag) => self.tags.entry(tag.as_str().into()).or_insert_with(|| {
                self.count += 1;
                Mark::default()
            }),
            Target::Url(key) => self.urls.entry(key.as_str().into()).or_insert_with(|| {
                self.count += 1;
                Mark::default()
            }),
            Target::Prefix { host, prefix } => {
                let host = host.as_deref().map_or(Cow::Borrowed(""), host_key);
                let set = self.prefixes.entry(host.into()).or_default();
                set.by_prefix
                    .entry(prefix.as_str().into())
                    .or_insert_with(|| {
                        self.count += 1;
                        *set.lengths.entry(prefix.len()).or_default() += 1;
                        Mark::default()
                    })
            }
        };
        mark.apply(at, soft);
    }

    /// Tag, prefix and URL records (the epoch is not counted).
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0 && self.epoch == Mark::default()
    }

    /// Judges a stored object: hard wins over soft; a record covers objects stored at or before it.
    pub fn check(&self, s: &Subject<'_>) -> Verdict {
        let mut soft = u64::MAX;
        let mut hard = false;
        let mut consider = |m: &Mark| {
            if m.hard != 0 && s.stored_at <= m.hard {
                hard = true;
            } else if m.soft != 0 && s.stored_at <= m.soft {
                soft = soft.min(m.soft);
            }
        };
        consider(&self.epoch);
        if !self.tags.is_empty() {
            for tag in s.tags {
                if let Some(m) = self.tags.get(tag) {
                    consider(m);
                }
            }
        }
        if let Some(m) = self.urls.get(s.url_key) {
            consider(m);
        }
        if !self.prefixes.is_empty() {
            let mut check_host = |set: &Prefixes| {
                for &len in set.lengths.keys() {
                    if len > s.path.len() {
                        break;
                    }
                    if let Some(m) = s.path.get(..len).and_then(|p| set.by_prefix.get(p)) {
                        consider(m);
                    }
                }
            };
            if let Some(set) = self.prefixes.get("") {
                check_host(set);
            }
            if self.prefixes.len() > usize::from(self.prefixes.contains_key("")) {
                if let Some(set) = self.prefixes.get(&*host_key(s.host)) {
                    check_host(set);
                }
            }
        }
        match (hard, soft) {
            (true, _) => Verdict::Hard,
            (false, u64::MAX) => Verdict::Valid,
            (false, since) => Verdict::Soft(since),
        }
    }

    /// Folds every record whose latest purge is before `cutoff` (ms) into the epoch. The epoch
    /// then covers at least what they covered.
    pub fn fold_older_than(&mut self, cutoff: u64) {
        let mut epoch = self.epoch;
        let mut fold = |m: &Mark| {
            if m.latest() < cutoff {
                epoch.hard = epoch.hard.max(m.hard);
                epoch.soft = epoch.soft.max(m.soft);
                false
            } else {
                true
            }
        };
        self.tags.retain(|_, m| fold(m));
        self.urls.retain(|_, m| fold(m));
        for set in self.prefixes.values_mut() {
            set.by_prefix.retain(|_, m| fold(m));
            set.lengths.clear();
            for prefix in set.by_prefix.keys() {
                *set.lengths.entry(prefix.len()).or_default() += 1;
            }
        }
        self.prefixes.retain(|_, set| !set.by_prefix.is_empty());
        self.epoch = epoch;
        self.count = self.tags.len()
            + self.urls.len()
            + self
                .prefixes
                .values()
                .map(|s| s.by_prefix.len())
                .sum::<usize>();
    }

    /// Keeps at most `max` records: when over, the oldest fold into the epoch until at most 90%
    /// of `max` remain.
    pub fn enforce_bound(&mut self, max: usize) {
        if self.count <= max {
            return;
        }
        let mut times: Vec<u64> = self
            .marks()
            .filter(|(t, _)| !matches!(t, Target::All))
            .map(|(_, m)| m.latest())
            .collect();
        times.sort_unstable();
        let keep = max - max / 10;
        let fold = times.len().saturating_sub(keep);
        if let Some(&newest_folded) = fold.checked_sub(1).and_then(|i| times.get(i)) {
            self.fold_older_than(newest_folded + 1);
        }
    }

    /// Every record with its mark, the epoch first.
    fn marks(&self) -> impl Iterator<Item = (Target, Mark)> + '_ {
        let tags = self
            .tags
            .iter()
            .map(|(t, m)| (Target::Tag(t.to_string()), *m));
        let urls = self
            .urls
            .iter()
            .map(|(u, m)| (Target::Url(u.to_string()), *m));
        let prefixes = self.prefixes.iter().flat_map(|(host, set)| {
            set.by_prefix.iter().map(move |(p, m)| {
                let target = Target::Prefix {
                    host: (!host.is_empty()).then(|| host.to_string()),
                    prefix: p.to_string(),
                };
                (target, *m)
            })
        });
        std::iter::once((Target::All, self.epoch))
            .chain(tags)
            .chain(urls)
            .chain(prefixes)
    }
}

/// One line of the purge log.
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    at: u64,
    #[serde(default)]
    soft: bool,
    target: Target,
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Run the retention sweep at most this often.
const SWEEP_EVERY: u64 = 60_000;

struct Log {
    path: Option<PathBuf>,
    file: Option<File>,
    /// Lines in the file, to decide when compaction pays.
    lines: usize,
    last_sweep: u64,
    last_at: u64,
    /// Records older than this fold into the epoch.
    retention: Duration,
    /// At most this many records are kept; beyond it the oldest fold into the epoch.
    max_records: usize,
}

/// The purge records of a node, shared by every request; persisted under `data_dir`.
pub struct Purges {
    records: RwLock<Records>,
    /// False until the first record: the hot path then costs one atomic load.
    active: AtomicBool,
    log: Mutex<Log>,
}

impl Purges {
    /// Loads the log at `path` (if any), folds what retention drops, and compacts it. `None`
    /// keeps records in memory only.
    pub fn open(
        path: Option<PathBuf>,
        retention: Duration,
        max_records: usize,
    ) -> io::Result<Purges> {
        let mut records = Records::default();
        let mut last_at = 0;
        if let Some(path) = &path {
            match File::open(path) {
                Ok(file) => {
                    for line in BufReader::new(file).lines() {
                        let line = line?;
                        match serde_json::from_str::<Line>(&line) {
                            Ok(l) => {
                                records.insert(&l.target, l.at, l.soft);
                                last_at = last_at.max(l.at);
                            }
                            Err(e) => tracing::warn!(error = %e, "skipping a bad purge log line"),
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let purges = Purges {
            active: AtomicBool::new(!records.is_empty()),
            records: RwLock::new(records),
            log: Mutex::new(Log {
                path,
                file: None,
                lines: 0,
                last_sweep: 0,
                last_at,
                retention,
                max_records: max_records.max(1),
            }),
        };
        {
            let mut log = purges.lock_log();
            purges.sweep(&mut log, millis(SystemTime::now()));
            purges.compact(&mut log)?;
        }
        Ok(purges)
    }

    fn lock_log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a purge of every target at `now`; returns the record time (ms). The records take
    /// effect before this returns. An error means they apply in memory but were not persisted.
    pub fn record(&self, targets: &[Target], soft: bool, now: SystemTime) -> io::Result<u64> {
        let mut log = self.lock_log();
        // Never earlier than a previous purge, even if the clock stepped back.
        let at = millis(now).max(log.last_at);
        log.last_at = at;
        {
            let mut records = self.records.write().unwrap_or_else(|p| p.into_inner());
            for target in targets {
                records.insert(target, at, soft);
            }
        }
        self.active.store(true, Ordering::Release);
        let mut text = String::new();
        for target in targets {
            let line = Line {
                at,
                soft,
                target: target.clone(),
            };
            text.push_str(&serde_json::to_string(&line).map_err(io::Error::other)?);
            text.push('\n');
        }
        if let Some(file) = log.file.as_mut() {
            file.write_all(text.as_bytes())?;
        }
        log.lines += targets.len();
        let count = self.len();
        if count > log.max_records || at.saturating_sub(log.last_sweep) >= SWEEP_EVERY {
            self.sweep(&mut log, at);
        }
        if log.lines > 2 * self.len() + 1024 {
            self.compact(&mut log)?;
        }
        Ok(at)
    }

    /// Judges a stored object against the records.
    #[inline]
    pub fn check(&self, subject: &Subject<'_>) -> Verdict {
        if !self.active.load(Ordering::Acquire) {
            return Verdict::Valid;
        }
        self.records
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .check(subject)
    }

    /// Records held (tags, prefixes, URLs).
    pub fn len(&self) -> usize {
        self.records.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        !self.active.load(Ordering::Acquire)
    }

    /// Folds records past retention, and the oldest beyond the bound, into the epoch.
    fn sweep(&self, log: &mut Log, now: u64) {
        log.last_sweep = now;
        let cutoff = now.saturating_sub(log.retention.as_millis() as u64);
        let mut records = self.records.write().unwrap_or_else(|p| p.into_inner());
        records.fold_older_than(cutoff);
        records.enforce_bound(log.max_records);
    }

    /// New retention limits (a reload); records they no longer allow fold into the epoch now.
    pub fn set_limits(&self, retention: Duration, max_records: usize) {
        let mut log = self.lock_log();
        if (log.retention, log.max_records) == (retention, max_records.max(1)) {
            return;
        }
        log.retention = retention;
        log.max_records = max_records.max(1);
        self.sweep(&mut log, millis(SystemTime::now()));
    }

    /// Rewrites the log with one line per live record (temp file + rename), then appends to it.
    fn compact(&self, log: &mut Log) -> io::Result<()> {
        let Some(path) = log.path.clone() else {
            return Ok(());
        };
        let mut text = String::new();
        let mut lines = 0;
        {
            let records = self.records.read().unwrap_or_else(|p| p.into_inner());
            for (target, mark) in records.marks() {
                for (at, soft) in [(mark.hard, false), (mark.soft, true)] {
                    if at != 0 {
                        let line = Line {
                            at,
                            soft,
                            target: target.clone(),
                        };
                        text.push_str(&serde_json::to_string(&line).map_err(io::Error::other)?);
                        text.push('\n');
                        lines += 1;
                    }
                }
            }
        }
        let temp = path.with_extension("tmp");
        {
            let mut file = File::create(&temp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
        }
        std::fs::rename(&temp, &path)?;
        log.file = Some(OpenOptions::new().append(true).open(&path)?);
        log.lines = lines;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<Box<str>> {
        list.iter().map(|t| (*t).into()).collect()
    }

    fn subject<'a>(
        stored_at: u64,
        tags: &'a [Box<str>],
        host: &'a str,
        path: &'a str,
    ) -> Subject<'a> {
        Subject {
            stored_at,
            tags,
            host,
            path,
            url_key: "key-of-other",
        }
    }

    fn tag(t: &str) -> Target {
        Target::Tag(t.into())
    }

    fn prefix(host: Option<&str>, p: &str) -> Target {
        Target::Prefix {
            host: host.map(Into::into),
            prefix: p.into(),
        }
    }

    #[test]
    fn empty_records_cover_nothing() {
        let r = Records::default();
        assert!(r.is_empty());
        let t = tags(&["a"]);
        assert_eq!(r.check(&subject(1, &t, "h", "/x")), Verdict::Valid);
    }

    #[test]
    fn a_tag_record_covers_objects_with_the_tag_stored_at_or_before_it() {
        let mut r = Records::default();
        r.insert(&tag("a"), 100, false);
        let (a, b, ab) = (tags(&["a"]), tags(&["b"]), tags(&["b", "a"]));
        assert_eq!(r.check(&subject(99, &a, "h", "/")), Verdict::Hard);
        assert_eq!(r.check(&subject(100, &a, "h", "/")), Verdict::Hard);
        assert_eq!(r.check(&subject(101, &a, "h", "/")), Verdict::Valid);
        assert_eq!(r.check(&subject(99, &b, "h", "/")), Verdict::Valid);
        assert_eq!(r.check(&subject(99, &ab, "h", "/")), Verdict::Hard);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn soft_records_make_stale_and_hard_wins() {
        let mut r = Records::default();
        r.insert(&tag("a"), 100, true);
        r.insert(&tag("b"), 50, true);
        let (a, ab) = (tags(&["a"]), tags(&["a", "b"]));
        assert_eq!(r.check(&subject(90, &a, "h", "/")), Verdict::Soft(100));
        // The earliest covering soft purge is when it went stale.
        assert_eq!(r.check(&subject(40, &ab, "h", "/")), Verdict::Soft(50));
        r.insert(&prefix(None, "/"), 95, false);
        assert_eq!(r.check(&subject(90, &a, "h", "/")), Verdict::Hard);
        assert_eq!(r.check(&subject(96, &a, "h", "/")), Verdict::Soft(100));
    }

    #[test]
    fn prefixes_match_by_host_or_any_host() {
        let mut r = Records::default();
        r.insert(&prefix(None, "/images/"), 100, false);
        r.insert(&prefix(Some("Example.com:8080"), "/a"), 100, false);
        let none = tags(&[]);
        let check = |host, path| r.check(&subject(50, &none, host, path));
        assert_eq!(check("x.org", "/images/cat.png"), Verdict::Hard);
        assert_eq!(check("x.org", "/images"), Verdict::Valid);
        assert_eq!(check("x.org", "/img/cat.png"), Verdict::Valid);
        assert_eq!(check("example.com", "/abc?q=1"), Verdict::Hard);
        assert_eq!(check("EXAMPLE.com:443", "/a"), Verdict::Hard);
        assert_eq!(check("x.org", "/abc"), Verdict::Valid);
        assert_eq!(check("example.com", "/b"), Verdict::Valid);
        // A multi-byte path is never sliced inside a character.
        assert_eq!(check("example.com", "é/x"), Verdict::Valid);
    }

    #[test]
    fn url_records_match_the_key() {
        let mut r = Records::default();
        r.insert(&Target::Url("http://h/a".into()), 100, false);
        let none = tags(&[]);
        let mut s = subject(50, &none, "h", "/a");
        assert_eq!(r.check(&s), Verdict::Valid);
        s.url_key = "http://h/a";
        assert_eq!(r.check(&s), Verdict::Hard);
    }

    #[test]
    fn the_epoch_covers_everything_before_it() {
        let mut r = Records::default();
        r.insert(&Target::All, 100, false);
        let none = tags(&[]);
        assert_eq!(r.check(&subject(100, &none, "h", "/")), Verdict::Hard);
        assert_eq!(r.check(&subject(101, &none, "h", "/")), Verdict::Valid);
        assert_eq!(r.len(), 0);
        assert!(!r.is_empty());
    }

    #[test]
    fn host_keys() {
        assert_eq!(host_key("Example.COM:80"), "example.com");
        assert_eq!(host_key("[::1]:8080"), "[::1]");
        assert_eq!(host_key("[::1]"), "[::1]");
        assert_eq!(host_key("h"), "h");
    }

    #[test]
    fn retention_folds_old_records_into_the_epoch_and_keeps_covering() {
        let mut r = Records::default();
        r.insert(&tag("old"), 100, false);
        r.insert(&tag("soft-old"), 150, true);
        r.insert(&tag("new"), 1_000, false);
        r.insert(&prefix(Some("h"), "/p"), 120, false);
        r.fold_older_than(500);
        assert_eq!(r.len(), 1);
        let old = tags(&["old"]);
        // Still purged (through the epoch), and so is anything else stored before it.
        assert_eq!(r.check(&subject(90, &old, "h", "/")), Verdict::Hard);
        assert_eq!(r.check(&subject(110, &old, "h", "/")), Verdict::Hard);
        assert_eq!(r.check(&subject(130, &old, "h", "/")), Verdict::Soft(150));
        assert_eq!(r.check(&subject(200, &old, "h", "/")), Verdict::Valid);
        let new = tags(&["new"]);
        assert_eq!(r.check(&subject(900, &new, "h", "/")), Verdict::Hard);
    }

    #[test]
    fn the_bound_folds_the_oldest() {
        let mut r = Records::default();
        for i in 0..100u64 {
            r.insert(&tag(&format!("t{i}")), 1_000 + i, false);
        }
        r.enforce_bound(100);
        assert_eq!(r.len(), 100);
        r.insert(&tag("t100"), 1_100, false);
        r.enforce_bound(100);
        assert_eq!(r.len(), 90);
        // The newest keep their own records; the folded ones are covered by the epoch.
        let newest = tags(&["t100"]);
        assert_eq!(r.check(&subject(1_099, &newest, "h", "/")), Verdict::Hard);
        let none = tags(&[]);
        assert_eq!(r.check(&subject(1_010, &none, "h", "/")), Verdict::Hard);
        assert_eq!(r.check(&subject(1_011, &none, "h", "/")), Verdict::Valid);
    }

    #[test]
    fn new_limits_apply_at_once() {
        let p = Purges::open(None, Duration::from_secs(86_400), 1000).unwrap();
        let now = SystemTime::now();
        for i in 0..50 {
            p.record(&[tag(&format!("t{i}"))], false, now).unwrap();
        }
        assert_eq!(p.len(), 50);
        p.set_limits(Duration::from_secs(86_400), 10);
        assert!(p.len() <= 10, "{} records kept", p.len());
        let folded = tags(&["t0"]);
        let folded: &'static [Box<str>] = Box::leak(folded.into_boxed_slice());
        assert_eq!(
            p.check(&subject(millis(now) - 1, folded, "h", "/")),
            Verdict::Hard
        );
        p.set_limits(Duration::ZERO, 10);
        std::thread::sleep(Duration::from_millis(2));
        p.set_limits(Duration::ZERO, 11);
        assert_eq!(p.len(), 0, "retention 0 folds everything");
        assert_eq!(
            p.check(&subject(millis(now) - 1, folded, "h", "/")),
            Verdict::Hard
        );
    }

    #[test]
    fn records_persist_and_compact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("purges.log");
        let day = Duration::from_secs(86_400);
        let now = SystemTime::now();
        {
            let p = Purges::open(Some(path.clone()), day, 1000).unwrap();
            assert!(p.is_empty());
            for _ in 0..3 {
                p.record(&[tag("a"), prefix(None, "/x/")], false, now)
                    .unwrap();
            }
            p.record(&[tag("b")], true, now).unwrap();
        }
        std::fs::write(
            &path,
            std::fs::read_to_string(&path).unwrap() + "not json\n",
        )
        .unwrap();
        let p = Purges::open(Some(path.clone()), day, 1000).unwrap();
        assert_eq!(p.len(), 3);
        let (a, b) = (tags(&["a"]), tags(&["b"]));
        let at = millis(now);
        let s = |t: &'static [Box<str>]| subject(at - 1, t, "h", "/");
        let a: &'static [Box<str>] = Box::leak(a.into_boxed_slice());
        let b: &'static [Box<str>] = Box::leak(b.into_boxed_slice());
        assert_eq!(p.check(&s(a)), Verdict::Hard);
        assert_eq!(p.check(&s(b)), Verdict::Soft(at));
        // Compacted at open: one line per live record, the epoch has none.
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
        // Past retention, the records fold into the epoch and still cover.
        drop(p);
        std::thread::sleep(Duration::from_millis(5));
        let p = Purges::open(Some(path), Duration::ZERO, 1000).unwrap();
        assert_eq!(p.len(), 0);
        assert_eq!(p.check(&s(a)), Verdict::Hard);
        assert_eq!(p.check(&subject(at + 1, a, "h", "/")), Verdict::Valid);
    }
}
