//! What each command does: start, wait for signals, stop.

use crate::cli::{Cli, Command, PurgeArgs, ServeArgs};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};
use velox_config::Config;
use velox_proxy::{ConfigSource, Server};

/// Exit status for configuration errors, as documented for `velox check`.
const EXIT_CONFIG: u8 = 2;

pub fn main(cli: Cli) -> ExitCode {
    if let Command::Check { config } = &cli.command {
        return check(config);
    }
    let runtime = match runtime_for_this_machine() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Demo {
                listen,
                origin_listen,
                admin,
            } => demo(listen, origin_listen, admin).await,
            Command::Origin { listen } => origin(listen).await,
            Command::Purge(args) => purge(args).await,
            Command::Check { .. } => unreachable!("handled above"),
        }
    })
}

/// One worker per CPU this process may run on. On a single CPU the current-thread scheduler
/// does the same work without cross-thread handoffs.
fn runtime_for_this_machine() -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cpus)
            .enable_all()
            .build()
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match velox_config::load(path) {
        Ok(config) => {
            print!("{}", config.to_toml());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: invalid configuration:\n{e}", path.display());
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn source_for(args: ServeArgs) -> Result<ConfigSource, String> {
    match (args.config, args.origin) {
        (Some(path), _) => {
            // Validate now so a bad file fails with its field paths and exit status 2.
            velox_proxy::load_config_file(&path)
                .map_err(|e| format!("{}: invalid configuration:\n{e:#}", path.display()))?;
            Ok(ConfigSource::File(path))
        }
        (None, Some(origin)) => Config::for_origin(
            &origin,
            args.listen,
            args.admin,
            args.admin_token,
            args.data_dir,
        )
        .map(|config| ConfigSource::Fixed(Box::new(config)))
        .map_err(|e| format!("invalid arguments:\n{e}")),
        (None, None) => Err("give --config FILE or --origin URL".into()),
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
    let source = match source_for(args) {
        Ok(source) => source,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let server = match Server::start(source).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    run_until_stopped(server, None).await
}

async fn demo(
    listen: std::net::SocketAddr,
    origin_listen: std::net::SocketAddr,
    admin: std::net::SocketAddr,
) -> ExitCode {
    let origin_socket = match tokio::net::TcpListener::bind(origin_listen).await {
        Ok(socket) => socket,
        Err(e) => {
            eprintln!("error: binding demo origin {origin_listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (stop_origin, origin_stopped) = tokio::sync::oneshot::channel::<()>();
    let origin_task = tokio::spawn(velox_demo::serve(origin_socket, async {
        let _ = origin_stopped.await;
    }));
    let data_dir = std::env::temp_dir().join("velox-demo");
    let config = match Config::for_origin(
        &format!("http://{origin_listen}"),
        Some(listen),
        Some(admin),
        None,
        Some(data_dir),
    ) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let server = match Server::start(ConfigSource::Fixed(Box::new(config))).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    println!("Velox demo is running.");
    println!("  edge:   http://{listen}/   <- open this");
    println!("  origin: http://{origin_listen}/   (the unoptimised site, direct)");
    println!("  admin:  http://{admin}/   (live dashboard; /metrics for Prometheus)");
    println!("Press Ctrl-C to stop.");
    let code = run_until_stopped(server, Some(stop_origin)).await;
    let _ = origin_task.await;
    code
}

async fn origin(listen: std::net::SocketAddr) -> ExitCode {
    let socket = match tokio::net::TcpListener::bind(listen).await {
        Ok(socket) => socket,
        Err(e) => {
            eprintln!("error: binding {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!("demo origin listening on http://{listen}");
    let stopped = async {
        let _ = wait_for_stop_signal().await;
    };
    match velox_demo::serve(socket, stopped).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `velox purge`: one POST to the admin API; prints the answer.
async fn purge(args: PurgeArgs) -> ExitCode {
    match send_purge(&args).await {
        Ok((200, body)) => {
            println!("{}", body.trim_end());
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            let why = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_else(|| body.trim().to_owned());
            match status {
                401 => eprintln!(
                    "error: the admin API refused the purge (401 Unauthorized): {why}\n\
                     give the node's admin token with --token or VELOX_ADMIN_TOKEN"
                ),
                _ => eprintln!("error: purge failed ({status}): {why}"),
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A minimal HTTP/1.1 exchange with the admin listener (plain HTTP, `Connection: close`).
async fn send_purge(args: &PurgeArgs) -> anyhow::Result<(u16, String)> {
    use anyhow::Context;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let admin = args.admin.trim_end_matches('/');
    if admin.starts_with("https://") {
        anyhow::bail!("the admin API speaks plain HTTP: give --admin host:port");
    }
    let admin = admin.strip_prefix("http://").unwrap_or(admin);
    let body = serde_json::json!({
        "urls": args.urls,
        "prefixes": args.prefixes,
        "tags": args.tags,
        "all": args.all,
        "soft": args.soft,
        "host": args.host,
    })
    .to_string();
    let token = args.token.as_deref().unwrap_or("");
    let request = format!(
        "POST /api/purge HTTP/1.1\r\nHost: {admin}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let limit = std::time::Duration::from_secs(30);
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(admin)
            .await
            .with_context(|| format!("connecting to the admin API at {admin}"))?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        anyhow::Ok(answer)
    };
    let answer = tokio::time::timeout(limit, exchange)
        .await
        .with_context(|| format!("no answer from {admin} within {limit:?}"))??;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("not an HTTP answer from {admin}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP answer from {admin}"))?;
    Ok((status, body.to_owned()))
}

async fn wait_for_stop_signal() -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    Ok(())
}

/// Serves until SIGTERM or SIGINT, reloading on SIGHUP; then drains and exits 0.
async fn run_until_stopped(
    server: Arc<Server>,
    also_stop: Option<tokio::sync::oneshot::Sender<()>>,
) -> ExitCode {
    let signals = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    );
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = signals else {
        eprintln!("error: cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                if let Err(e) = server.reload().await {
                    tracing::error!(error = format!("{e:#}"), "reload refused; keeping the running configuration");
                }
            }
        }
    }
    tracing::info!("stopping: no new connections, draining requests in flight");
    server.shutdown().await;
    if let Some(stop) = also_stop {
        let _ = stop.send(());
    }
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Lets one process hold as many connections as the hard limit allows.
pub fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        let mut limit = std::mem::zeroed::<libc::rlimit>();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
