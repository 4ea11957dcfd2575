//! The command line as a user meets it: `velox check` on every example config and on broken
//! ones, `velox serve` failing fast on a bad config, `--version`, `--help`, and the
//! `velox serve --origin ...` one-liner (with `VELOX_ADMIN_TOKEN`).

mod common;
use common::*;

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Helpers (local to this test binary)
// ---------------------------------------------------------------------------------------

const VELOX: &str = env!("CARGO_BIN_EXE_velox");

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `velox args...` to completion (killed after `limit`), capturing both streams.
fn run_velox(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Ran {
    let mut command = Command::new(VELOX);
    command
        .args(args)
        .env_remove("VELOX_ADMIN_TOKEN")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let started = Instant::now();
    let mut child = command.spawn().expect("spawn velox");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let code = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.code();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("velox {args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = started.elapsed();
    Ran {
        code,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
        took,
    }
}

fn check(path: &Path) -> Ran {
    run_velox(
        &["check", "--config", path.to_str().expect("utf-8 path")],
        &[],
        Duration::from_secs(20),
    )
}

/// A long-running `velox` started by a test; killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_velox(args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut command = Command::new(VELOX);
    command
        .args(args)
        .env_remove("VELOX_ADMIN_TOKEN")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    Running(command.spawn().expect("spawn velox"))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_path_buf()
}

/// Every `*.toml` under `dir` outside build output and hidden directories.
fn toml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                toml_files(&path, out);
            }
        } else if name.ends_with(".toml") {
            out.push(path);
        }
    }
}

/// Velox configs are the TOML files that have Velox's top-level tables; Cargo manifests,
/// rustfmt/clippy/toolchain files and the like do not.
fn is_velox_config(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if matches!(
        name,
        "Cargo.toml"
            | "rustfmt.toml"
            | ".rustfmt.toml"
            | "clippy.toml"
            | "rust-toolchain.toml"
            | "deny.toml"
            | "config.toml"
    ) && !path.to_string_lossy().contains("example")
    {
        return false;
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(str::trim).any(|l| {
        l.starts_with("[server]")
            || l.starts_with("[[routes]]")
            || l.starts_with("[[upstreams]]")
            || l.starts_with("[limits]")
            || l.starts_with("[admin]")
    })
}

fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

/// A valid config; tests break one thing in it.
const VALID: &str = r#"
[server]
listen = ["127.0.0.1:18080"]
data_dir = "data"
[admin]
listen = "127.0.0.1:19090"
[limits]
header_read_timeout = "5s"
[[upstreams]]
name = "origin"
servers = ["http://127.0.0.1:3000"]
[[routes]]
path_prefix = "/"
upstream = "origin"
"#;

/// `velox check` on `text`: exit 2, nothing on stdout, stderr naming the file and containing
/// every one of `expected`.
fn assert_check_refuses(text: &str, expected: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(dir.path(), "broken.toml", text);
    let ran = check(&path);
    assert_eq!(ran.code, Some(2), "exit status; stderr:\n{}", ran.stderr);
    assert!(
        ran.stdout.is_empty(),
        "nothing on stdout for an invalid config: {}",
        ran.stdout
    );
    assert!(
        ran.stderr.contains("broken.toml"),
        "stderr names the file:\n{}",
        ran.stderr
    );
    for needle in expected {
        assert!(
            ran.stderr.contains(needle),
            "stderr should contain {needle:?}:\n{}",
            ran.stderr
        );
    }
}

// ---------------------------------------------------------------------------------------
// velox check
// ---------------------------------------------------------------------------------------

#[test]
fn check_passes_on_every_example_config_in_the_repo() {
    let root = repo_root();
    let mut all = Vec::new();
    toml_files(&root, &mut all);
    let configs: Vec<PathBuf> = all.into_iter().filter(|p| is_velox_config(p)).collect();
    let names: Vec<String> = configs
        .iter()
        .map(|p| p.strip_prefix(&root).unwrap_or(p).display().to_string())
        .collect();
    for must in ["velox.example.toml", "examples/minimal.toml"] {
        assert!(
            names.iter().any(|n| n == must),
            "{must} not found among {names:?}"
        );
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    for (path, name) in configs.iter().zip(&names) {
        let ran = check(path);
        assert_eq!(
            ran.code,
            Some(0),
            "velox check {name} failed:\n{}",
            ran.stderr
        );
        assert!(
            ran.stdout.contains("[[routes]]"),
            "{name}: the effective config is printed:\n{}",
            ran.stdout
        );
        // The printed effective config is itself a valid config, and printing it again is a fixed point.
        let again = write_config(scratch.path(), "effective.toml", &ran.stdout);
        let second = check(&again);
        assert_eq!(
            second.code,
            Some(0),
            "{name}: the printed config does not check:\n{}\n---\n{}",
            second.stderr,
            ran.stdout
        );
        assert_eq!(
            second.stdout, ran.stdout,
            "{name}: the effective config is not a fixed point"
        );
    }
}

#[test]
fn check_prints_defaults_in_the_effective_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(dir.path(), "velox.toml", VALID);
    let ran = check(&path);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    for default in [
        "max_header_bytes = \"64KiB\"",
        "header_read_timeout = \"5s\"",
        "shutdown_grace = ",
        "max_connections = ",
        "max_body_bytes = ",
        "idle_timeout = ",
    ] {
        assert!(
            ran.stdout.contains(default),
            "effective config lacks {default:?}:\n{}",
            ran.stdout
        );
    }
    // Relative paths are resolved against the config file's directory.
    let data = dir.path().join("data");
    assert!(
        ran.stdout.contains(&data.display().to_string()),
        "data_dir resolved: {}",
        ran.stdout
    );
    assert!(!data.exists(), "check must not create the data_dir");
}

#[test]
fn check_names_the_path_of_an_unknown_key() {
    let text = VALID.replace(
        "header_read_timeout = \"5s\"",
        "header_read_timeout = \"5s\"\nheader_read_timeuot = \"5s\"",
    );
    assert_check_refuses(&text, &["limits.header_read_timeuot", "unknown field"]);
}

#[test]
fn check_names_the_path_of_a_bad_duration() {
    let text = VALID.replace("\"5s\"", "\"12 parsecs\"");
    assert_check_refuses(&text, &["limits.header_read_timeout", "12 parsecs"]);
}

#[test]
fn check_names_a_route_to_a_missing_upstream() {
    let text = VALID.replace("upstream = \"origin\"", "upstream = \"api\"");
    assert_check_refuses(&text, &["routes[0].upstream: no upstream named \"api\""]);
}

#[test]
fn check_refuses_a_config_without_listeners() {
    let text = VALID.replace("listen = [\"127.0.0.1:18080\"]", "listen = []");
    assert_check_refuses(&text, &["server.listen"]);
    let text = VALID.replace("listen = [\"127.0.0.1:18080\"]\n", "");
    assert_check_refuses(&text, &["server.listen"]);
}

#[test]
fn check_reports_every_error_at_once() {
    let text = VALID
        .replace("listen = [\"127.0.0.1:18080\"]", "listen = []")
        .replace("upstream = \"origin\"", "upstream = \"api\"")
        .replace(
            "header_read_timeout = \"5s\"",
            "max_header_bytes = \"2MiB\"",
        )
        .replace(
            "servers = [\"http://127.0.0.1:3000\"]",
            "servers = [\"http://127.0.0.1:3000/path\"]",
        );
    assert_check_refuses(
        &text,
        &[
            "server.listen",
            "routes[0].upstream: no upstream named \"api\"",
            "limits.max_header_bytes",
            "upstreams[0].servers[0]",
        ],
    );
}

#[test]
fn check_refuses_a_missing_file_and_non_toml() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.toml");
    let ran = check(&missing);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(ran.stderr.contains("nope.toml"), "{}", ran.stderr);
    assert_check_refuses("this is [not toml", &[]);
}

// ---------------------------------------------------------------------------------------
// velox serve failing fast
// ---------------------------------------------------------------------------------------

#[test]
fn serve_with_an_invalid_config_exits_2_quickly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = VALID
        .replace("127.0.0.1:18080", &free_addr().to_string())
        .replace("127.0.0.1:19090", &free_addr().to_string())
        .replace("upstream = \"origin\"", "upstream = \"api\"");
    let path = write_config(dir.path(), "invalid.toml", &text);
    let ran = run_velox(
        &["serve", "--config", path.to_str().expect("utf-8")],
        &[],
        Duration::from_secs(10),
    );
    assert_eq!(ran.code, Some(2), "stderr:\n{}", ran.stderr);
    assert!(ran.took < Duration::from_secs(3), "took {:?}", ran.took);
    assert!(ran.stderr.contains("invalid.toml"), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("routes[0].upstream: no upstream named \"api\""),
        "{}",
        ran.stderr
    );
    assert!(
        !dir.path().join("data").exists(),
        "a refused config must not create its data_dir"
    );
}

#[test]
fn serve_refuses_contradictory_or_missing_arguments_with_exit_2() {
    let ran = run_velox(&["serve"], &[], Duration::from_secs(10));
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    let ran = run_velox(
        &[
            "serve",
            "--config",
            "x.toml",
            "--origin",
            "http://127.0.0.1:1",
        ],
        &[],
        Duration::from_secs(10),
    );
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    let ran = run_velox(
        &["serve", "--origin", "not a url"],
        &[],
        Duration::from_secs(10),
    );
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(ran.took < Duration::from_secs(3));
}

#[test]
fn serve_on_a_busy_port_fails_instead_of_hanging() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy_addr = busy.local_addr().expect("addr");
    let data = tempfile::tempdir().expect("tempdir");
    let ran = run_velox(
        &[
            "serve",
            "--origin",
            "http://127.0.0.1:1",
            "--listen",
            &busy_addr.to_string(),
            "--admin",
            &free_addr().to_string(),
            "--data-dir",
            data.path().to_str().expect("utf-8"),
        ],
        &[],
        Duration::from_secs(10),
    );
    assert!(
        matches!(ran.code, Some(c) if c != 0),
        "exit {:?}; stderr:\n{}",
        ran.code,
        ran.stderr
    );
    assert!(
        ran.stderr.contains(&busy_addr.to_string()),
        "stderr names the address:\n{}",
        ran.stderr
    );
}

// ---------------------------------------------------------------------------------------
// --version, --help
// ---------------------------------------------------------------------------------------

#[test]
fn version_prints_the_package_version() {
    let ran = run_velox(&["--version"], &[], Duration::from_secs(10));
    assert_eq!(ran.code, Some(0));
    assert_eq!(
        ran.stdout.trim(),
        format!("velox {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_shows_examples() {
    let ran = run_velox(&["--help"], &[], Duration::from_secs(10));
    assert_eq!(ran.code, Some(0));
    for needle in [
        "Examples",
        "velox serve --origin http://",
        "velox serve --config",
        "velox check --config",
        "velox demo",
        "serve",
        "check",
    ] {
        assert!(
            ran.stdout.contains(needle),
            "velox --help lacks {needle:?}:\n{}",
            ran.stdout
        );
    }
    let ran = run_velox(&["serve", "--help"], &[], Duration::from_secs(10));
    assert_eq!(ran.code, Some(0));
    for needle in [
        "Examples",
        "--origin",
        "--listen",
        "--admin",
        "--config",
        "VELOX_ADMIN_TOKEN",
    ] {
        assert!(
            ran.stdout.contains(needle),
            "velox serve --help lacks {needle:?}:\n{}",
            ran.stdout
        );
    }
    let ran = run_velox(&["check", "--help"], &[], Duration::from_secs(10));
    assert_eq!(ran.code, Some(0));
    assert!(
        ran.stdout.contains("Example") && ran.stdout.contains("velox check --config"),
        "{}",
        ran.stdout
    );
}

// ---------------------------------------------------------------------------------------
// The one-liner
// ---------------------------------------------------------------------------------------

struct OneLiner {
    _process: Running,
    _data: tempfile::TempDir,
    addr: SocketAddr,
    admin: SocketAddr,
}

async fn one_liner(origin: SocketAddr, extra: &[&str], env: &[(&str, &str)]) -> OneLiner {
    let (addr, admin) = (free_addr(), free_addr());
    let data = tempfile::tempdir().expect("tempdir");
    let origin_url = format!("http://{origin}");
    let (addr_s, admin_s) = (addr.to_string(), admin.to_string());
    let mut args = vec![
        "serve",
        "--origin",
        &origin_url,
        "--listen",
        &addr_s,
        "--admin",
        &admin_s,
        "--data-dir",
        data.path().to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    let process = spawn_velox(&args, env);
    wait_until_accepting(addr).await;
    wait_until_accepting(admin).await;
    OneLiner {
        _process: process,
        _data: data,
        addr,
        admin,
    }
}

async fn reload_status(admin: SocketAddr, token: Option<&str>) -> u16 {
    let url = format!("http://{admin}/api/reload");
    let bearer = token.map(|t| format!("Bearer {t}"));
    match &bearer {
        Some(value) => {
            request("POST", &url, &[("authorization", value)], b"")
                .await
                .status
        }
        None => request("POST", &url, &[], b"").await.status,
    }
}

#[tokio::test]
async fn one_liner_proxies_to_the_origin() {
    let origin = start_origin().await;
    let velox = one_liner(origin.addr, &[], &[]).await;
    let reply = get(&format!("http://{}/echo?from=cli", velox.addr)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("cache-status"),
        Some("velox; fwd=uri-miss; fwd-status=200")
    );
    assert_eq!(reply.json()["uri"].as_str(), Some("/echo?from=cli"));
    let health = get(&format!("http://{}/healthz", velox.admin)).await;
    assert_eq!(
        (health.status, String::from_utf8_lossy(&health.body).trim()),
        (200, "ok")
    );
    // Without a token the mutating endpoints stay disabled.
    assert_eq!(reload_status(velox.admin, None).await, 401);
    assert_eq!(reload_status(velox.admin, Some("secret")).await, 401);
    assert_eq!(reload_status(velox.admin, Some("")).await, 401);
}

#[tokio::test]
async fn one_liner_takes_the_admin_token_from_the_environment() {
    let origin = start_origin().await;
    let velox = one_liner(origin.addr, &[], &[("VELOX_ADMIN_TOKEN", "env-token-42")]).await;
    assert_eq!(reload_status(velox.admin, None).await, 401);
    assert_eq!(reload_status(velox.admin, Some("wrong")).await, 401);
    let url = format!("http://{}/api/reload", velox.admin);
    let reply = request(
        "POST",
        &url,
        &[("authorization", "Bearer env-token-42")],
        b"",
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json(), serde_json::json!({ "reloaded": true }));
    // Still proxying after the reload.
    assert_eq!(
        get(&format!("http://{}/echo", velox.addr)).await.status,
        200
    );
}

#[tokio::test]
async fn one_liner_takes_the_admin_token_from_a_flag() {
    let origin = start_origin().await;
    let velox = one_liner(origin.addr, &["--admin-token", "flag-token"], &[]).await;
    assert_eq!(reload_status(velox.admin, Some("wrong")).await, 401);
    assert_eq!(reload_status(velox.admin, Some("flag-token")).await, 200);
}
