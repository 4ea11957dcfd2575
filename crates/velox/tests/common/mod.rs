//! Test harness: a real demo origin, a real `velox` process, real sockets.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A port free right now on 127.0.0.1, chosen below the kernel's ephemeral range so that
/// outgoing connections (which take ephemeral ports) cannot grab it before Velox binds it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Spread concurrent test binaries apart by pid; step through the range within one.
    let base = 20_000 + (std::process::id() % 600) as u16 * 20;
    for _ in 0..12_000 {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % 12_000;
        let port = 20_000 + (base - 20_000 + offset) % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range");
}

pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// The demo origin, served in-process on the test's runtime until dropped.
pub struct Origin {
    pub addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub async fn start_origin() -> Origin {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind origin");
    let addr = listener.local_addr().expect("origin addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(velox_demo::serve(listener, async {
        let _ = stopped.await;
    }));
    Origin { addr, _stop: stop }
}

/// A config with one plain listener, an admin listener with token "secret", one upstream, one route.
pub fn basic_config(listen: SocketAddr, admin: SocketAddr, origin: SocketAddr) -> String {
    format!(
        r#"
[server]
listen = ["{listen}"]
shutdown_grace = "5s"
[admin]
listen = "{admin}"
token = "secret"
[limits]
header_read_timeout = "2s"
max_body_bytes = "4GiB"
[[upstreams]]
name = "origin"
servers = ["http://{origin}"]
connect_timeout = "1s"
first_byte_timeout = "2s"
[[routes]]
path_prefix = "/"
upstream = "origin"
"#
    )
}

/// A running `velox` process; killed when dropped.
pub struct Velox {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl Velox {
    /// Starts `velox serve --config` with `config` and waits until `addr` accepts connections.
    pub async fn start(config: &str, addr: SocketAddr, admin: SocketAddr) -> Velox {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("velox.toml");
        let with_data = format!(
            "{}\n",
            config.replacen(
                "[server]",
                &format!(
                    "[server]\ndata_dir = \"{}\"",
                    dir.path().join("data").display()
                ),
                1
            )
        );
        std::fs::File::create(&config_path)
            .and_then(|mut f| f.write_all(with_data.as_bytes()))
            .expect("write config");
        let child = Command::new(env!("CARGO_BIN_EXE_velox"))
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn velox");
        let mut velox = Velox {
            child,
            addr,
            admin,
            dir,
            config_path,
        };
        velox.wait_until_serving().await;
        velox
    }

    /// Waits until the listener accepts; fails at once, with the reason, if the process exits.
    pub async fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("velox exited before serving on {}: {status}", self.addr);
            }
            if TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("nothing accepted connections on {} within 15s", self.addr);
    }

    /// Origin + Velox with [`basic_config`].
    pub async fn basic(origin: SocketAddr) -> Velox {
        let (addr, admin) = (free_addr(), free_addr());
        Velox::start(&basic_config(addr, admin, origin), addr, admin).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn signal(&self, signal: libc_signal::Signal) {
        libc_signal::send(self.child.id(), signal);
    }

    /// Waits for the process to exit (at most `limit`); returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Resident memory of the velox process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// CPU time the velox process has used (user and system, from /proc; 10 ms steps).
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("read /proc/PID/stat");
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat[stat.rfind(')').expect("stat format") + 2..]
            .split(' ')
            .collect();
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        // USER_HZ is 100 on Linux.
        Duration::from_millis(ticks * 10)
    }

    /// `POST /api/reload` with the token of [`basic_config`] ("secret").
    pub async fn reload(&self) -> Reply {
        let url = format!("http://{}/api/reload", self.admin);
        request("POST", &url, &[("authorization", "Bearer secret")], b"").await
    }

    /// Rewrites the config file (keeping the data_dir line) for a reload.
    pub fn rewrite_config(&self, config: &str) {
        let with_data = config.replacen(
            "[server]",
            &format!(
                "[server]\ndata_dir = \"{}\"",
                self.dir.path().join("data").display()
            ),
            1,
        );
        std::fs::write(&self.config_path, with_data).expect("rewrite config");
    }
}

impl Drop for Velox {
    fn drop(&mut self) {
        // A failing test says whether Velox had already gone, and how: a request refused by a
        // listener that was up is otherwise a mystery.
        if std::thread::panicking() {
            if let Ok(Some(status)) = self.child.try_wait() {
                eprintln!("velox on {} had already exited: {status}", self.addr);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sending signals without a libc dependency in tests: through `kill(1)`.
pub mod libc_signal {
    #[derive(Clone, Copy)]
    pub enum Signal {
        Term,
        Hup,
        Int,
    }
    pub fn send(pid: u32, signal: Signal) {
        let name = match signal {
            Signal::Term => "-TERM",
            Signal::Hup => "-HUP",
            Signal::Int => "-INT",
        };
        let _ = std::process::Command::new("kill")
            .arg(name)
            .arg(pid.to_string())
            .status();
    }
}

pub async fn wait_until_accepting(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing accepted connections on {addr} within 15s");
}

pub type TestClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A whole response, body collected.
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

pub async fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut builder = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let req = builder
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("request");
    let response = tokio::time::timeout(Duration::from_secs(30), client().request(req))
        .await
        .expect("response within 30s")
        .expect("response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

pub async fn get(url: &str) -> Reply {
    request("GET", url, &[], b"").await
}

/// Writes raw bytes, then reads until the server closes or `limit` passes; returns what was read.
pub async fn raw(addr: SocketAddr, bytes: &[u8], limit: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// One GET over h2c (HTTP/2 with prior knowledge) to `url`, within 15 s.
pub async fn h2c_get(url: &str) -> http::Response<hyper::body::Incoming> {
    let client: Client<_, http_body_util::Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let request = http::Request::get(url)
        .body(http_body_util::Empty::new())
        .expect("request");
    let response = tokio::time::timeout(Duration::from_secs(15), client.request(request))
        .await
        .expect("h2c response within 15s")
        .expect("h2c response");
    assert_eq!(response.version(), http::Version::HTTP_2);
    response
}
