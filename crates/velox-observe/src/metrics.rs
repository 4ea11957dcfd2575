//! Lock-free metric cells and a Prometheus text-format encoder.
//!
//! Why hand-rolled rather than `prometheus-client`: every label set Velox exposes is bounded and
//! known when the configuration is built (routes and upstreams by name, methods from a fixed
//! list, status codes 100-999, six cache outcomes), so each series can be a plain `AtomicU64`
//! found by array indexing. Recording a request is a handful of relaxed `fetch_add`s: no hashing
//! of label values, no map lookup, no lock, no allocation. A client library would hash a label
//! set (and take a read lock) on every increment. Scrapes, which are rare, do the formatting.

use crate::cache_status::CacheOutcome;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
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

/// Status codes 100..=999 (what `http::StatusCode` allows), one slot each.
const STATUS_SLOTS: usize = 900;

/// A counter per status code, allocated on first use (7 KiB), so unused label combinations cost
/// one pointer.
#[derive(Default)]
pub struct StatusCounters(OnceLock<Box<[AtomicU64]>>);

impl StatusCounters {
    pub fn inc(&self, status: u16) {
        let slots = self
            .0
            .get_or_init(|| (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect());
        let i = usize::from(status.clamp(100, 999) - 100);
        slots[i].fetch_add(1, Relaxed);
    }

    /// `(status, count)` for every non-zero status.
    pub fn nonzero(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.0.get().into_iter().flat_map(|slots| {
            slots.iter().enumerate().filter_map(|(i, c)| {
                let n = c.load(Relaxed);
                (n > 0).then_some((i as u16 + 100, n))
            })
        })
    }
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

/// A histogram with fixed buckets; bucket counts are stored non-cumulative, summed at scrape.
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BUCKETS
            .iter()
            .position(|(_, bound)| nanos <= *bound)
            .unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// Non-cumulative counts per bucket (the last is +Inf).
    pub fn counts(&self) -> [u64; BUCKETS.len() + 1] {
        std::array::from_fn(|i| self.buckets[i].load(Relaxed))
    }

    pub fn count(&self) -> u64 {
        self.counts().iter().sum()
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_nanos.load(Relaxed) as f64 / 1e9
    }
}

/// Everything counted per route (label `route`).
pub struct RouteMetrics {
    pub name: String,
    /// `[cache][method]` -> counts by status.
    pub(crate) requests: [[StatusCounters; METHODS.len()]; CacheOutcome::COUNT],
    pub(crate) duration: [Histogram; CacheOutcome::COUNT],
    pub(crate) bytes: [AtomicU64; CacheOutcome::COUNT],
}

impl RouteMetrics {
    pub fn new(name: String) -> Self {
        RouteMetrics {
            name,
            requests: Default::default(),
            duration: Default::default(),
            bytes: Default::default(),
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
        self.requests[c][method].inc(status);
        self.duration[c].observe(duration);
        if bytes > 0 {
            self.bytes[c].fetch_add(bytes, Relaxed);
        }
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

/// Everything counted per upstream (labels `upstream`, `server`).
pub struct UpstreamMetrics {
    pub name: String,
    /// The one server's `host:port`, or `any` when the upstream has several (the proxy layer
    /// does not see which one answered).
    pub server: String,
    pub(crate) requests: StatusCounters,
    pub(crate) errors: [AtomicU64; ERROR_KINDS.len()],
    pub(crate) first_byte: Histogram,
    pub(crate) total: Histogram,
    pub(crate) bytes: AtomicU64,
}

impl UpstreamMetrics {
    pub fn new(name: String, server: String) -> Self {
        UpstreamMetrics {
            name,
            server,
            requests: StatusCounters::default(),
            errors: Default::default(),
            first_byte: Histogram::default(),
            total: Histogram::default(),
            bytes: AtomicU64::new(0),
        }
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.iter().map(|e| e.load(Relaxed)).sum()
    }

    pub fn requests_total(&self) -> u64 {
        self.requests.nonzero().map(|(_, n)| n).sum()
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
        let counts = h.counts();
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
        let h = Histogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let c = h.counts();
        assert_eq!(c[0], 1);
        assert_eq!(c[1], 1);
        assert_eq!(c[3], 1);
        assert_eq!(c[BUCKETS.len()], 1);
        assert_eq!(h.count(), 4);
        assert!((h.sum_seconds() - 60.0041).abs() < 1e-9);
    }

    #[test]
    fn status_counters_are_bounded() {
        let s = StatusCounters::default();
        assert_eq!(s.nonzero().count(), 0);
        s.inc(200);
        s.inc(200);
        s.inc(999);
        s.inc(42);
        let v: Vec<_> = s.nonzero().collect();
        assert_eq!(v, vec![(100, 1), (200, 2), (999, 1)]);
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
