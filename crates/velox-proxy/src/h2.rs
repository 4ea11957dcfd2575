//! HTTP/2 serving (h2c with prior knowledge, and h2 negotiated by ALPN), by hyper.

use crate::body;
use crate::handler::{ConnInfo, ConnSettings, Handler, ServerFields};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

pub async fn serve<I, H>(
    io: I,
    handler: Arc<H>,
    conn: ConnInfo,
    settings: &ConnSettings,
    mut drain: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let handler = handler.clone();
        let conn = ConnInfo {
            received: std::time::Instant::now(),
            ..conn
        };
        async move {
            let mut fields = ServerFields::default();
            let mut response = handler
                .handle(req.map(body::boxed), conn, &mut fields)
                .await;
            fields.add_to(&mut response);
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(settings.idle_timeout / 2))
        .keep_alive_timeout(settings.idle_timeout / 2);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = drain.wait_for(|draining| *draining) => {}
    }
    // Draining: GOAWAY, let the streams in flight finish.
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}
