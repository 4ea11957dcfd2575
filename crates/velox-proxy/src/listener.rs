//! Accept loops: one per listening socket, one task per connection, bounded and tracked for draining.

use crate::handler::{ConnInfo, ConnSettings};
use crate::proxy::Proxy;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

/// Counts live connections so that a shutdown can wait for them to finish.
#[derive(Default)]
pub struct ConnTracker {
    active: AtomicUsize,
    idle: Notify,
}

pub struct ConnGuard(Arc<ConnTracker>);

impl ConnTracker {
    pub fn enter(self: &Arc<Self>) -> ConnGuard {
        self.active.fetch_add(1, Ordering::AcqRel);
        ConnGuard(self.clone())
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    pub async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.active() == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Connection limits in force; replaced as a whole on reload.
pub struct ConnLimits {
    pub settings: Arc<ConnSettings>,
    pub slots: Arc<Semaphore>,
}

/// What every accept loop shares.
pub struct Shared {
    pub proxy: Arc<Proxy>,
    pub conns: Arc<ConnTracker>,
    pub limits: ArcSwap<ConnLimits>,
    pub drain: watch::Receiver<bool>,
}

/// Accepts until `stop` turns true. `tls` is swappable so a reload can change certificates in place.
pub async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let protocol = if tls.is_some() { "https" } else { "http" };
    let listener_name = listener
        .local_addr()
        .map_or_else(|_| "unknown".to_owned(), |a| a.to_string());
    let gauge = shared
        .proxy
        .runtime()
        .observe
        .observer()
        .connections(listener_name, protocol);
    loop {
        let limits = shared.limits.load_full();
        let permit = tokio::select! {
            permit = limits.slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let conn = ConnInfo {
            peer,
            local,
            tls: tls.is_some(),
            received: std::time::Instant::now(),
            may_carry_request_id: true,
        };
        let held = (permit, shared.conns.enter(), gauge.enter());
        let settings = limits.settings.clone();
        match &tls {
            None => {
                tokio::spawn(serve_plain(stream, conn, settings, shared.clone(), held));
            }
            Some(tls) => {
                let acceptor = TlsAcceptor::from(tls.load_full());
                tokio::spawn(serve_tls(
                    stream,
                    acceptor,
                    conn,
                    settings,
                    shared.clone(),
                    held,
                ));
            }
        }
    }
}

type Held = (
    OwnedSemaphorePermit,
    crate::listener::ConnGuard,
    velox_observe::metrics::ConnGaugeGuard,
);

async fn serve_plain(
    stream: TcpStream,
    conn: ConnInfo,
    settings: Arc<ConnSettings>,
    shared: Arc<Shared>,
    _held: Held,
) {
    crate::h1::serve(
        stream,
        shared.proxy.clone(),
        conn,
        settings,
        shared.drain.clone(),
    )
    .await;
}

async fn serve_tls(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    conn: ConnInfo,
    settings: Arc<ConnSettings>,
    shared: Arc<Shared>,
    _held: Held,
) {
    let stream =
        match tokio::time::timeout(settings.header_read_timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(peer = %conn.peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => return,
        };
    let proxy = shared.proxy.clone();
    let drain = shared.drain.clone();
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        crate::h2::serve(stream, proxy, conn, &settings, drain).await;
    } else {
        crate::h1::serve(stream, proxy, conn, settings, drain).await;
    }
}

/// Binds a listening socket with a backlog fit for bursts of new connections.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}
