//! The access log: one JSON line per request, written by a background thread fed through a
//! bounded channel. The request path only ever `try_send`s: when the buffer is full the line is
//! dropped and counted (`velox_log_dropped_total`); it never waits on the disk.

use crate::cache_status::CacheOutcome;
use http::{HeaderValue, Method, Uri};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What one request leaves for the log; cheap to build (clones of shared bytes), formatted later.
pub struct LogEvent {
    pub time: SystemTime,
    pub client: IpAddr,
    pub method: Method,
    pub host: Option<HeaderValue>,
    pub uri: Uri,
    pub status: u16,
    pub bytes: u64,
    pub duration: Duration,
    pub upstream: Option<Duration>,
    pub cache: CacheOutcome,
    pub cache_status: Option<HeaderValue>,
    pub route: Arc<str>,
    pub request_id: Option<HeaderValue>,
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// A JSON string (escaped by serde_json, no allocation).
fn string(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

fn opt_header(out: &mut Vec<u8>, v: Option<&HeaderValue>) {
    match v.and_then(|h| h.to_str().ok()) {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

impl LogEvent {
    /// Appends the JSON line. Written by hand (fixed field order, no intermediate values):
    /// this runs once per request on the writer thread.
    pub fn write_json(&self, out: &mut Vec<u8>, clock: &mut SecondClock) {
        out.extend_from_slice(b"{\"time\":\"");
        clock.write(out, self.time);
        let _ = write!(out, "\",\"client\":\"{}\",\"method\":", self.client);
        string(out, self.method.as_str());
        out.extend_from_slice(b",\"host\":");
        opt_header(out, self.host.as_ref());
        out.extend_from_slice(b",\"path\":");
        string(out, self.uri.path_and_query().map_or("/", |p| p.as_str()));
        let _ = write!(
            out,
            ",\"status\":{},\"bytes\":{},\"duration_ms\":{},\"upstream_ms\":",
            self.status,
            self.bytes,
            millis(self.duration)
        );
        match self.upstream {
            Some(d) => {
                let _ = write!(out, "{}", millis(d));
            }
            None => out.extend_from_slice(b"null"),
        }
        let _ = write!(
            out,
            ",\"cache\":\"{}\",\"cache_status\":",
            self.cache.as_str()
        );
        opt_header(out, self.cache_status.as_ref());
        out.extend_from_slice(b",\"route\":");
        string(out, &self.route);
        out.extend_from_slice(b",\"request_id\":");
        opt_header(out, self.request_id.as_ref());
        out.extend_from_slice(b"}\n");
    }
}

/// Formats timestamps, re-rendering the date and time only when the second changes.
#[derive(Default)]
pub struct SecondClock {
    second: u64,
    text: String,
}

impl SecondClock {
    fn write(&mut self, out: &mut Vec<u8>, t: SystemTime) {
        let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        if self.text.is_empty() || d.as_secs() != self.second {
            self.second = d.as_secs();
            let full = rfc3339_millis(t);
            self.text = full[..19].to_owned();
        }
        out.extend_from_slice(self.text.as_bytes());
        let _ = write!(out, ".{:03}Z", d.subsec_millis());
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

pub struct AccessLog {
    sender: SyncSender<LogEvent>,
    dropped: Arc<AtomicU64>,
}

impl AccessLog {
    /// Starts the writer thread. A regular file is opened (append) before returning so that an
    /// unwritable path fails start-up; a FIFO is opened by the thread, since opening one blocks
    /// until a reader appears.
    pub fn start(target: Target, buffer: usize, dropped: Arc<AtomicU64>) -> std::io::Result<Self> {
        let (sender, receiver) = sync_channel(buffer.max(1));
        let out: Box<dyn FnOnce() -> std::io::Result<Box<dyn Write + Send>> + Send> = match target {
            Target::Stdout => Box::new(|| Ok(Box::new(std::io::stdout()) as Box<dyn Write + Send>)),
            Target::File(path) if is_fifo(&path) => {
                Box::new(move || open_append(&path).map(|f| Box::new(f) as Box<dyn Write + Send>))
            }
            Target::File(path) => {
                let file = open_append(&path)?;
                Box::new(move || Ok(Box::new(file) as Box<dyn Write + Send>))
            }
        };
        std::thread::Builder::new()
            .name("velox-access-log".into())
            .spawn(move || match out() {
                Ok(out) => write_loop(receiver, out),
                Err(e) => tracing::error!(error = %e, "cannot open the access log"),
            })?;
        Ok(AccessLog { sender, dropped })
    }

    /// Never blocks: a full buffer drops the line and counts it.
    pub fn log(&self, event: LogEvent) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.sender.try_send(event)
        {
            self.dropped.fetch_add(1, Relaxed);
        }
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

/// How long the writer sleeps when the queue is empty. It polls rather than blocking in
/// `recv`, so a request never pays for waking it (a futex wake per line at high rates).
const IDLE_POLL: Duration = Duration::from_millis(10);

/// Batches what is queued into writes of up to 64 KiB; flushes whenever the queue runs dry.
fn write_loop(receiver: Receiver<LogEvent>, mut out: Box<dyn Write + Send>) {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut clock = SecondClock::default();
    loop {
        match receiver.try_recv() {
            Ok(event) => event.write_json(&mut buf, &mut clock),
            Err(TryRecvError::Empty) => {
                if !buf.is_empty() {
                    flush(&mut out, &mut buf);
                }
                std::thread::sleep(IDLE_POLL);
                continue;
            }
            Err(TryRecvError::Disconnected) => {
                flush(&mut out, &mut buf);
                return;
            }
        }
        if buf.len() >= 60 * 1024 {
            flush(&mut out, &mut buf);
        }
    }
}

fn flush(out: &mut Box<dyn Write + Send>, buf: &mut Vec<u8>) {
    if let Err(e) = out.write_all(buf).and_then(|()| out.flush()) {
        tracing::warn!(error = %e, "access log write failed");
    }
    buf.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn json_line() {
        let event = LogEvent {
            time: SystemTime::UNIX_EPOCH,
            client: "10.0.0.1".parse().unwrap(),
            method: Method::GET,
            host: Some(HeaderValue::from_static("example.com")),
            uri: "/a?b=\"c\"".parse().unwrap_or_default(),
            status: 200,
            bytes: 42,
            duration: Duration::from_micros(1500),
            upstream: None,
            cache: CacheOutcome::Hit,
            cache_status: Some(HeaderValue::from_static("velox; hit; ttl=5")),
            route: Arc::from("main"),
            request_id: Some(HeaderValue::from_static("abc-1")),
        };
        let mut out = Vec::new();
        event.write_json(&mut out, &mut SecondClock::default());
        event.write_json(&mut out, &mut SecondClock::default());
        let first = out.iter().position(|b| *b == b'\n').unwrap() + 1;
        assert_eq!(out[..first], out[first..]);
        out.truncate(first);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["upstream_ms"], serde_json::Value::Null);
        assert_eq!(v["cache"], "hit");
        assert_eq!(v["request_id"], "abc-1");
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["path"], "/");
        assert!(out.ends_with(b"\n"));
    }
}
