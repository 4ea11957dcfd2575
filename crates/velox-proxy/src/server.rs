//! A running Velox node: its listeners, the proxy, reload and graceful shutdown.

use crate::handler::ConnSettings;
use crate::listener::{self, ConnLimits, ConnTracker, Shared};
use crate::proxy::{Proxy, Runtime};
use anyhow::Context;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{watch, Mutex, Semaphore};
use velox_config::Config;

/// Where the configuration came from, so that a reload can read it again.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    File(PathBuf),
    /// Built from command-line flags: a reload re-applies it unchanged.
    Fixed(Box<Config>),
}

impl ConfigSource {
    pub fn load(&self) -> anyhow::Result<Config> {
        match self {
            ConfigSource::File(path) => load_config_file(path),
            ConfigSource::Fixed(config) => Ok((**config).clone()),
        }
    }
}

/// Binds the admin listener at `addr`.
fn bind_admin(addr: SocketAddr) -> anyhow::Result<(SocketAddr, TcpListener)> {
    let socket = listener::bind(addr).with_context(|| format!("binding admin listener {addr}"))?;
    Ok((addr, socket))
}

/// Loads a config file; `VELOX_ADMIN_TOKEN` supplies the admin token when the file has none.
pub fn load_config_file(path: &std::path::Path) -> anyhow::Result<Config> {
    let mut config = velox_config::load(path)?;
    if config.admin.token.is_none() {
        config.admin.token = std::env::var("VELOX_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty());
    }
    Ok(config)
}

struct RunningListener {
    /// The configured address (may have port 0); the key for keeping sockets across reloads.
    configured: SocketAddr,
    local: SocketAddr,
    tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    stop: watch::Sender<bool>,
}

/// The admin listener: like the proxy listeners, moved by a reload when its address changes.
struct AdminListener {
    configured: SocketAddr,
    local: SocketAddr,
    stop: watch::Sender<bool>,
}

/// How long a stop waits for the access log's last lines.
const ACCESS_LOG_CLOSE: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Server {
    shared: Arc<Shared>,
    listeners: Mutex<Vec<RunningListener>>,
    drain: watch::Sender<bool>,
    source: ConfigSource,
    admin: std::sync::Mutex<Option<AdminListener>>,
    /// The cache owns its store under data_dir, so it lives as long as the process.
    cache: Option<Arc<crate::cache::Cache>>,
    /// Metrics and the access log outlive reloads too.
    observer: Arc<velox_observe::Observer>,
    busy_poll: crate::busy_poll::BusyPoll,
}

fn conn_limits(config: &Config) -> ConnLimits {
    let limits = &config.limits;
    ConnLimits {
        settings: Arc::new(ConnSettings {
            header_read_timeout: limits.header_read_timeout.get(),
            idle_timeout: limits.idle_timeout.get(),
            max_header_bytes: usize::try_from(limits.max_header_bytes.bytes())
                .unwrap_or(usize::MAX),
            max_body_bytes: limits.max_body_bytes.bytes(),
        }),
        slots: Arc::new(Semaphore::new(limits.max_connections)),
    }
}

/// Every listener a config asks for, with its TLS config built (so a bad certificate fails early).
fn wanted_listeners(
    config: &Config,
) -> anyhow::Result<Vec<(SocketAddr, Option<Arc<rustls::ServerConfig>>)>> {
    let mut wanted: Vec<_> = config
        .server
        .listen
        .iter()
        .map(|addr| (*addr, None))
        .collect();
    for (i, tls) in config.server.tls.iter().enumerate() {
        let server_config =
            crate::tls::server_config(tls).with_context(|| format!("server.tls[{i}]"))?;
        wanted.push((tls.listen, Some(server_config)));
    }
    Ok(wanted)
}

impl Server {
    /// Binds every listener and starts serving. Fails without side effects on a bad config.
    pub async fn start(source: ConfigSource) -> anyhow::Result<Arc<Server>> {
        let config = source.load()?;
        std::fs::create_dir_all(&config.server.data_dir)
            .with_context(|| format!("creating data_dir {}", config.server.data_dir.display()))?;
        let wanted = wanted_listeners(&config)?;
        let admin_listener = config.admin.listen.map(bind_admin).transpose()?;
        let limits = conn_limits(&config);
        let observer =
            velox_observe::Observer::start(&config).context("starting the access log")?;
        let cache =
            crate::cache::Cache::open(&config, observer.clone()).context("opening the cache")?;
        let busy_poll = config.server.busy_poll;
        let runtime = Runtime::build(config, cache.clone(), &observer)?;
        let (drain, drain_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            proxy: Arc::new(Proxy::new(runtime)),
            conns: Arc::new(ConnTracker::default()),
            limits: ArcSwap::from_pointee(limits),
            drain: drain_rx,
        });
        let server = Arc::new(Server {
            shared,
            listeners: Mutex::new(Vec::new()),
            drain,
            source,
            admin: std::sync::Mutex::new(None),
            cache,
            observer,
            busy_poll: crate::busy_poll::BusyPoll::start(busy_poll),
        });
        let mut bound = Vec::new();
        for (addr, tls) in wanted {
            let socket =
                listener::bind(addr).with_context(|| format!("binding listener {addr}"))?;
            bound.push((addr, socket, tls));
        }
        let mut listeners = server.listeners.lock().await;
        for (addr, socket, tls) in bound {
            listeners.push(server.spawn_listener(
                addr,
                socket,
                tls.map(|c| Arc::new(ArcSwap::new(c))),
            ));
        }
        drop(listeners);
        if let Some((configured, socket)) = admin_listener {
            let admin = server.spawn_admin(configured, socket);
            *server.admin.lock().unwrap_or_else(|p| p.into_inner()) = Some(admin);
        }
        Ok(server)
    }

    fn spawn_admin(self: &Arc<Self>, configured: SocketAddr, socket: TcpListener) -> AdminListener {
        let local = socket.local_addr().unwrap_or(configured);
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(crate::admin::serve(socket, self.clone(), stop_rx));
        AdminListener {
            configured,
            local,
            stop,
        }
    }

    fn spawn_listener(
        &self,
        configured: SocketAddr,
        socket: tokio::net::TcpListener,
        tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    ) -> RunningListener {
        let local = socket.local_addr().unwrap_or(configured);
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!("listening on {scheme}://{local}");
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(listener::accept_loop(
            socket,
            tls.clone(),
            self.shared.clone(),
            stop_rx,
        ));
        RunningListener {
            configured,
            local,
            tls,
            stop,
        }
    }

    pub fn proxy(&self) -> &Proxy {
        &self.shared.proxy
    }

    /// Addresses actually bound, plain and TLS, in config order.
    pub async fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .lock()
            .await
            .iter()
            .map(|l| l.local)
            .collect()
    }

    /// The admin listener's bound address, if it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        let admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        admin.as_ref().map(|a| a.local)
    }

    pub fn is_draining(&self) -> bool {
        *self.drain.borrow()
    }

    pub fn observer(&self) -> &Arc<velox_observe::Observer> {
        &self.observer
    }

    /// Re-reads the configuration source and applies it atomically; on any error the old one stays.
    pub async fn reload(self: &Arc<Self>) -> anyhow::Result<()> {
        let result = self.try_reload().await;
        self.observer.reloaded(result.is_ok());
        result
    }

    async fn try_reload(self: &Arc<Self>) -> anyhow::Result<()> {
        let config = self.source.load()?;
        let mut listeners = self.listeners.lock().await;
        let wanted = wanted_listeners(&config)?;
        let runtime = Runtime::build(config.clone(), self.cache.clone(), &self.observer)?;
        let cache_change = match &self.cache {
            Some(cache) => Some(cache.prepare(&config)?),
            None => None,
        };
        let cache_restart = match &cache_change {
            Some(change) => change.restart_needed,
            None => config.cache.enabled,
        };
        if cache_restart {
            tracing::warn!(
                "[cache] enabled, memory_size, disk_size, max_object_size and server.data_dir \
                 take effect only on restart; the running cache keeps its own"
            );
        }
        let running_admin = self
            .admin
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|a| a.configured);
        let admin_moves = config.admin.listen != running_admin;
        let fresh_admin = match config.admin.listen.filter(|_| admin_moves) {
            Some(addr) => Some(bind_admin(addr)?),
            None => None,
        };
        // Bind what is new before touching anything, so a failure changes nothing.
        let mut fresh = Vec::new();
        for (addr, tls) in &wanted {
            let kept = listeners
                .iter()
                .any(|l| l.configured == *addr && l.tls.is_some() == tls.is_some());
            if !kept {
                let socket =
                    listener::bind(*addr).with_context(|| format!("binding listener {addr}"))?;
                fresh.push((*addr, socket, tls.clone()));
            }
        }
        self.shared.proxy.replace(runtime);
        if let Some(change) = cache_change {
            change.apply();
        }
        self.shared.limits.store(Arc::new(conn_limits(&config)));
        self.busy_poll.set(config.server.busy_poll);
        listeners.retain(|running| {
            let still = wanted.iter().find(|(addr, tls)| {
                running.configured == *addr && running.tls.is_some() == tls.is_some()
            });
            match (still, &running.tls) {
                (Some((_, Some(new_tls))), Some(current)) => {
                    current.store(new_tls.clone());
                    true
                }
                (Some(_), _) => true,
                (None, _) => {
                    tracing::info!("closing listener {}", running.local);
                    let _ = running.stop.send(true);
                    false
                }
            }
        });
        for (addr, socket, tls) in fresh {
            listeners.push(self.spawn_listener(
                addr,
                socket,
                tls.map(|c| Arc::new(ArcSwap::new(c))),
            ));
        }
        if admin_moves {
            let started = fresh_admin.map(|(addr, socket)| self.spawn_admin(addr, socket));
            let mut admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
            // Connections already open (such as the one asking for this reload) finish.
            if let Some(old) = std::mem::replace(&mut *admin, started) {
                tracing::info!("closing admin listener {}", old.local);
                let _ = old.stop.send(true);
            }
        }
        tracing::info!("configuration reloaded");
        Ok(())
    }

    /// Stops accepting, lets requests in flight finish within the grace period, then returns.
    pub async fn shutdown(&self) {
        for running in self.listeners.lock().await.drain(..) {
            let _ = running.stop.send(true);
        }
        let _ = self.drain.send(true);
        let grace = self
            .shared
            .proxy
            .runtime()
            .config
            .server
            .shutdown_grace
            .get();
        let active = self.shared.conns.active();
        tracing::info!(active, ?grace, "draining connections");
        if tokio::time::timeout(grace, self.shared.conns.wait_idle())
            .await
            .is_err()
        {
            tracing::warn!(
                left = self.shared.conns.active(),
                "grace period over; closing remaining connections"
            );
        }
        // The access log's last lines, before the process ends.
        let observer = self.observer.clone();
        let _ = tokio::task::spawn_blocking(move || observer.close(ACCESS_LOG_CLOSE)).await;
    }
}
