//! The admin listener: health, readiness and the mutating API (token required).

use crate::server::Server;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::net::TcpListener;

type AdminResponse = Response<Full<Bytes>>;

pub async fn serve(listener: TcpListener, server: Arc<Server>) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("admin listening on http://{addr}");
    }
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let server = server.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let server = server.clone();
                async move { Ok::<_, std::convert::Infallible>(route(req, &server).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> AdminResponse {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

fn json(status: StatusCode, value: serde_json::Value) -> AdminResponse {
    reply(status, "application/json", format!("{value}\n"))
}

async fn route(req: Request<Incoming>, server: &Server) -> AdminResponse {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::GET, "/readyz") if server.is_draining() => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "draining\n".into(),
        ),
        (&Method::GET, "/readyz") => reply(StatusCode::OK, "text/plain", "ready\n".into()),
        (&Method::POST, "/api/reload") => {
            if let Err(why) = authorize(&req, server) {
                return unauthorized(why);
            }
            match server.reload().await {
                Ok(()) => json(StatusCode::OK, serde_json::json!({ "reloaded": true })),
                Err(e) => {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "reload refused; keeping the running configuration"
                    );
                    json(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        serde_json::json!({ "reloaded": false, "error": format!("{e:#}") }),
                    )
                }
            }
        }
        (_, "/healthz" | "/readyz" | "/api/reload") => json(
            StatusCode::METHOD_NOT_ALLOWED,
            serde_json::json!({ "error": "method not allowed" }),
        ),
        _ => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": "not found" }),
        ),
    }
}

/// Mutating endpoints need `Authorization: Bearer <token>`; without a configured token they stay disabled.
fn authorize<B>(req: &Request<B>, server: &Server) -> Result<(), &'static str> {
    let runtime = server.proxy().runtime();
    let Some(token) = runtime.config.admin.token.as_deref() else {
        return Err("no admin token is configured, so mutating endpoints are disabled");
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(presented.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err("missing or wrong bearer token")
    }
}

fn unauthorized(why: &str) -> AdminResponse {
    let mut response = json(
        StatusCode::UNAUTHORIZED,
        serde_json::json!({ "error": why }),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

/// Compares without an early exit, so response timing does not reveal the token prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn token_comparison() {
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"ab"));
    }
}
