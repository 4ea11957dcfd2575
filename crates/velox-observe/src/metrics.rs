//! Lock-free metric cells and a Prometheus text-format encoder.
//!
//! Why hand-rolled rather than `prometheus-client`: every label set Velox exposes is bounded and
//! known when the configuration is built (routes and upstreams by name, methods from a fixed
//! list, status codes 100-999, six cache outcomes), so each series can be a plain `AtomicU64`
//! found by array indexing. Each series is kept once per thread ([`Row`]), so recording a request
//! is a handful of plain adds to cells no other thread writes: no hashing of label values, no map
//! lookup, no lock, no allocation, no locked instruction and no cache line shared between cores.
//! A client library would hash a label set (and take a read lock) on every increment. Scrapes,
//! which are rare, sum the rows and do the formatting.

use crate::cache_status::CacheOutcome;
use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Duration;

/// The `method` label: these, and everything else as `OTHER`.
pub const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER",
];

pub fn method_index(method: &http::Method) -> usize {
    match *method {
        http::Method::GET => 0,
        http::Method::HEAD => 1,
        http::Method::POST => 2,
        http::Method::PUT => 3,
        http::Method::DELETE => 4,
        http::Method::PATCH => 5,
        http::Method::OPTIONS => 6,
        http::Method::CONNECT => 7,
        http::Method::TRACE => 8,
        _ => 9,
    }
}

/// How many threads get a row of cells of their own: one per CPU the process may run on (as
/// many as the runtime's worker threads), at most 16 (memory grows with the rows); any further
/// thread shares row 0.
fn own_rows() -> usize {
    static OWN_ROWS: OnceLock<usize> = OnceLock::new();
    *OWN_ROWS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(16)))
}

/// Rows handed out so far.
static ROWS_CLAIMED: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's row, once it has recorded something.
    static ROW: Cell<Option<Row>> = const { Cell::new(None) };
}

/// The row of cells a thread records into. Every series is kept once per row and summed at
/// scrape: a thread adds to its own row with a plain load and store, where a shared cell would
/// need a locked read-modify-write (about 20 cycles each, several per request) on a cache line
/// every core writes. Row 0 is shared by the threads that came after the own rows ran out (in
/// practice blocking-pool threads, which rarely record), and is added to atomically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row(usize);

impl Row {
    /// The calling thread's row (claimed on first use; kept for the thread's life).
    pub fn mine() -> Row {
        ROW.with(|row| match row.get() {
            Some(r) => r,
            None => {
                let n = ROWS_CLAIMED.fetch_add(1, Relaxed);
                let r = Row(if n < own_rows() { n + 1 } else { 0 });
                row.set(Some(r));
                r
            }
        })
    }

    /// Adds `v` to a cell of this row.
    fn add(self, cell: &AtomicU64, v: u64) {
        if self.0 == 0 {
            cell.fetch_add(v, Relaxed);
        } else {
            // Only this thread writes this row; readers see the old or the new value.
            cell.store(cell.load(Relaxed).wrapping_add(v), Relaxed);
        }
    }
}

/// One row per thread, each on its own cache lines (threads never write the same line).
struct Rows<T>(Box<[Padded<T>]>);

#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

impl<T: Default> Default for Rows<T> {
    fn default() -> Self {
        Rows((0..=own_rows()).map(|_| Padded::default()).collect())
    }
}

impl<T> Rows<T> {
    fn get(&self, row: Row) -> &T {
        &self.0[row.0].0
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|p| &p.0)
    }

    /// The sum over rows of `f(row)`.
    fn sum(&self, f: impl Fn(&T) -> u64) -> u64 {
        self.iter().map(f).sum()
    }
}

/// A counter per status code 100..=999 (what `http::StatusCode` allows), in one block per
/// hundred allocated on first use (800 bytes): a label combination that answers only 2xx costs
/// one block, and an unused one nine pointers.
#[derive(Default)]
struct StatusCounters([OnceLock<Box<[AtomicU64; 100]>>; 9]);

impl StatusCounters {
    fn inc(&self, status: u16, row: Row) {
        let status = usize::from(status.clamp(100, 999));
        let block = self.0[status / 100 - 1]
            .get_or_init(|| Box::new(std::array::from_fn(|_| AtomicU64::new(0))));
        row.add(&block[status % 100], 1);
    }
}

/// `(status, count)` for every status counted in any row, in status order.
fn status_counts<'a>(rows: impl Iterator<Item = &'a StatusCounters>) -> Vec<(u16, u64)> {
    let mut sums = std::collections::BTreeMap::<u16, u64>::new();
    for counters in rows {
        for (hundred, block) in counters.0.iter().enumerate() {
            for (i, c) in block.get().into_iter().flat_map(|b| b.iter().enumerate()) {
                let n = c.load(Relaxed);
                if n > 0 {
                    *sums.entry((100 * (hundred + 1) + i) as u16).or_default() += n;
                }
            }
        }
    }
    sums.into_iter().collect()
}

/// Bucket upper bounds in seconds (as printed) and in nanoseconds (as compared).
pub const BUCKETS: [(&str, u64); 14] = [
    ("0.0005", 500_000),
    ("0.001", 1_000_000),
    ("0.0025", 2_500_000),
    ("0.005", 5_000_000),
    ("0.01", 10_000_000),
    ("0.025", 25_000_000),
    ("0.05", 50_000_000),
    ("0.1", 100_000_000),
    ("0.25", 250_000_000),
    ("0.5", 500_000_000),
    ("1", 1_000_000_000),
    ("2.5", 2_500_000_000),
    ("5", 5_000_000_000),
    ("10", 10_000_000_000),
];

/// One row's cells of a histogram with fixed buckets; counts are stored non-cumulative.
struct HistogramCells {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Default for HistogramCells {
    fn default() -> Self {
        HistogramCells {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl HistogramCells {
    fn observe(&self, d: Duration, row: Row) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BUCKETS
            .iter()
            .position(|(_, bound)| nanos <= *bound)
            .unwrap_or(BUCKETS.len());
        row.add(&self.buckets[i], 1);
        row.add(&self.sum_nanos, nanos);
    }
}

/// A histogram as read at scrape: non-cumulative counts per bucket (the last is +Inf).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Histogram {
    pub counts: [u64; BUCKETS.len() + 1],
    pub sum_nanos: u64,
}

impl Histogram {
    fn of<'a>(rows: impl Iterator<Item = &'a HistogramCells>) -> Histogram {
        let mut h = Histogram::default();
        for cells in rows {
            for (sum, cell) in h.counts.iter_mut().zip(&cells.buckets) {
                *sum += cell.load(Relaxed);
            }
            h.sum_nanos = h.sum_nanos.wrapping_add(cells.sum_nanos.load(Relaxed));
        }
        h
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_nanos as f64 / 1e9
    }
}

/// One row's cells of a route.
#[derive(Default)]
struct RouteCells {
    /// `[cache][method]` -> counts by status.
    requests: [[StatusCounters; METHODS.len()]; CacheOutcome::COUNT],
    duration: [HistogramCells; CacheOutcome::COUNT],
    bytes: [AtomicU64; CacheOutcome::COUNT],
}

/// Everything counted per route (label `route`).
pub struct RouteMetrics {
    pub name: String,
    rows: Rows<RouteCells>,
}

impl RouteMetrics {
    pub fn new(name: String) -> Self {
        RouteMetrics {
            name,
            rows: Rows::default(),
        }
    }

    pub fn record(
        &self,
        method: usize,
        status: u16,
        cache: CacheOutcome,
        duration: Duration,
        bytes: u64,
    ) {
        let c = cache.index();
        let row = Row::mine();
        let cells = self.rows.get(row);
        cells.requests[c][method].inc(status, row);
        cells.duration[c].observe(duration, row);
        if bytes > 0 {
            row.add(&cells.bytes[c], bytes);
        }
    }

    /// `(status, count)` of one cache outcome and method.
    pub fn requests(&self, cache: CacheOutcome, method: usize) -> Vec<(u16, u64)> {
        status_counts(self.rows.iter().map(|r| &r.requests[cache.index()][method]))
    }

    pub fn duration(&self, cache: CacheOutcome) -> Histogram {
        Histogram::of(self.rows.iter().map(|r| &r.duration[cache.index()]))
    }

    pub fn bytes(&self, cache: CacheOutcome) -> u64 {
        self.rows.sum(|r| r.bytes[cache.index()].load(Relaxed))
    }
}

/// The `kind` label of upstream errors: Velox's own `X-Velox-Error` codes, minus the prefix.
pub const ERROR_KINDS: [&str; 6] = [
    "connect-failed",
    "connect-timeout",
    "timeout",
    "failed",
    "unexpected-upgrade",
    "other",
];

pub fn error_kind_index(code: &str) -> usize {
    let kind = code.strip_prefix("upstream-").unwrap_or(code);
    ERROR_KINDS
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(ERROR_KINDS.len() - 1)
}

/// One row's cells of an upstream.
#[derive(Default)]
struct UpstreamCells {
    requests: StatusCounters,
    errors: [AtomicU64; ERROR_KINDS.len()],
    first_byte: HistogramCells,
    total: HistogramCells,
    bytes: AtomicU64,
}

/// Everything counted per upstream (labels `upstream`, `server`).
pub struct UpstreamMetrics {
    pub name: String,
    /// The one server's `host:port`, or `any` when the upstream has several (the proxy layer
    /// does not see which one answered).
    pub server: String,
    rows: Rows<UpstreamCells>,
}

impl UpstreamMetrics {
    pub fn new(name: String, server: String) -> Self {
        UpstreamMetrics {
            name,
            server,
            rows: Rows::default(),
        }
    }

    /// A response head arrived after `first_byte`, with the origin's `status`.
    pub fn answered(&self, status: u16, first_byte: Duration) {
        let row = Row::mine();
        let cells = self.rows.get(row);
        cells.first_byte.observe(first_byte, row);
        cells.requests.inc(status, row);
    }

    /// The request failed without a response (`kind` indexes [`ERROR_KINDS`]) after `elapsed`.
    pub fn failed(&self, kind: usize, elapsed: Duration) {
        let row = Row::mine();
        let cells = self.rows.get(row);
        cells.first_byte.observe(elapsed, row);
        row.add(&cells.errors[kind], 1);
    }

    /// A relayed response ended after `total`, with `bytes` of body from the origin.
    pub fn finished(&self, total: Duration, bytes: u64) {
        let row = Row::mine();
        let cells = self.rows.get(row);
        cells.total.observe(total, row);
        if bytes > 0 {
            row.add(&cells.bytes, bytes);
        }
    }

    /// `(status, count)` of the responses received.
    pub fn requests(&self) -> Vec<(u16, u64)> {
        status_counts(self.rows.iter().map(|r| &r.requests))
    }

    pub fn errors(&self, kind: usize) -> u64 {
        self.rows.sum(|r| r.errors[kind].load(Relaxed))
    }

    pub fn first_byte(&self) -> Histogram {
        Histogram::of(self.rows.iter().map(|r| &r.first_byte))
    }

    pub fn total(&self) -> Histogram {
        Histogram::of(self.rows.iter().map(|r| &r.total))
    }

    pub fn bytes(&self) -> u64 {
        self.rows.sum(|r| r.bytes.load(Relaxed))
    }

    pub fn errors_total(&self) -> u64 {
        (0..ERROR_KINDS.len()).map(|k| self.errors(k)).sum()
    }

    pub fn requests_total(&self) -> u64 {
        self.requests().iter().map(|(_, n)| n).sum()
    }
}

/// `velox_connections_active{listener, protocol}`.
pub struct ConnGauge {
    pub listener: String,
    pub protocol: &'static str,
    pub(crate) active: AtomicI64,
}

impl ConnGauge {
    pub fn new(listener: String, protocol: &'static str) -> Self {
        ConnGauge {
            listener,
            protocol,
            active: AtomicI64::new(0),
        }
    }

    /// Counts one connection until the guard drops.
    pub fn enter(self: &std::sync::Arc<Self>) -> ConnGaugeGuard {
        self.active.fetch_add(1, Relaxed);
        ConnGaugeGuard(self.clone())
    }

    pub fn active(&self) -> i64 {
        self.active.load(Relaxed)
    }
}

pub struct ConnGaugeGuard(std::sync::Arc<ConnGauge>);

impl Drop for ConnGaugeGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Relaxed);
    }
}

/// Cache tier figures read at scrape time (from the store's own statistics).
#[derive(Debug, Clone, Copy, Default)]
pub struct TierFigures {
    pub objects: u64,
    pub bytes: u64,
    pub evictions: u64,
    /// Copies the tier dropped rather than wait for (the disk tier's writer queue was full).
    pub writes_skipped: u64,
}

/// `(tier name, figures)`; empty when the cache is disabled.
pub type CacheFigures = Vec<(&'static str, TierFigures)>;

/// Escapes a label value (backslash, double quote, newline).
pub fn escape_label(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A little writer for the text exposition format (version 0.0.4).
pub(crate) struct Encoder {
    pub out: String,
}

impl Encoder {
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample; `labels` are `(name, value)` pairs, values escaped here.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// The `_bucket`, `_sum` and `_count` samples of one histogram series.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let counts = h.counts;
        let mut cumulative = 0;
        let bucket = format!("{name}_bucket");
        let mut with_le: Vec<(&str, &str)> = labels.to_vec();
        with_le.push(("le", ""));
        let last = with_le.len() - 1;
        for (i, count) in counts.iter().enumerate() {
            cumulative += count;
            with_le[last].1 = BUCKETS.get(i).map_or("+Inf", |(le, _)| le);
            self.sample(&bucket, &with_le, cumulative);
        }
        self.sample(&format!("{name}_sum"), labels, h.sum_seconds());
        self.sample(&format!("{name}_count"), labels, cumulative);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets() {
        let cells = HistogramCells::default();
        let row = Row::mine();
        cells.observe(Duration::from_micros(100), row);
        cells.observe(Duration::from_millis(1), row);
        cells.observe(Duration::from_millis(3), row);
        cells.observe(Duration::from_secs(60), row);
        let h = Histogram::of(std::iter::once(&cells));
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[3], 1);
        assert_eq!(h.counts[BUCKETS.len()], 1);
        assert_eq!(h.count(), 4);
        assert!((h.sum_seconds() - 60.0041).abs() < 1e-9);
    }

    #[test]
    fn status_counters_are_bounded() {
        let m = RouteMetrics::new("r".into());
        assert!(m.requests(CacheOutcome::Hit, 0).is_empty());
        for status in [200, 200, 999, 42] {
            m.record(0, status, CacheOutcome::Hit, Duration::ZERO, 0);
        }
        assert_eq!(
            m.requests(CacheOutcome::Hit, 0),
            vec![(100, 1), (200, 2), (999, 1)]
        );
    }

    #[test]
    fn rows_of_many_threads_add_up() {
        // More threads than own rows: the last ones share row 0, atomically.
        let m = std::sync::Arc::new(UpstreamMetrics::new("u".into(), "any".into()));
        let threads: Vec<_> = (0..own_rows() + 4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        m.answered(200, Duration::from_micros(10));
                        m.finished(Duration::from_micros(20), 3);
                    }
                    m.failed(1, Duration::from_millis(2));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n = (own_rows() + 4) as u64;
        assert_eq!(m.requests(), vec![(200, 1000 * n)]);
        assert_eq!(m.requests_total(), 1000 * n);
        assert_eq!(m.errors(1), n);
        assert_eq!(m.errors_total(), n);
        assert_eq!(m.first_byte().count(), 1001 * n);
        assert_eq!(m.total().count(), 1000 * n);
        assert_eq!(m.bytes(), 3000 * n);
    }

    #[test]
    fn label_escaping_and_kinds() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(ERROR_KINDS[error_kind_index("upstream-timeout")], "timeout");
        assert_eq!(ERROR_KINDS[error_kind_index("made-up")], "other");
        assert_eq!(
            METHODS[method_index(&http::Method::from_bytes(b"FOO").unwrap())],
            "OTHER"
        );
    }
}
