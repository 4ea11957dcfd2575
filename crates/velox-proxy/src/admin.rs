//! The admin listener: health, readiness, metrics, the dashboard and its live statistics (no
//! token needed to read), and the mutating API (token required).

use crate::server::Server;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use velox_observe::metrics::{CacheFigures, TierFigures};

type AdminBody = UnsyncBoxBody<Bytes, Infallible>;
type AdminResponse = Response<AdminBody>;

/// At most this many dashboards may stream statistics at once.
const MAX_STREAMS: usize = 64;
/// One statistics snapshot per this interval on `/api/stats/stream`.
const STREAM_INTERVAL: Duration = Duration::from_secs(1);
static STREAMS: AtomicUsize = AtomicUsize::new(0);

/// Serves the admin API until `stop` turns true (a reload moved or removed the listener).
pub async fn serve(listener: TcpListener, server: Arc<Server>, mut stop: watch::Receiver<bool>) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("admin listening on http://{addr}");
    }
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
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
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
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

/// Cache tier figures from the store's own statistics, read at scrape time.
fn cache_figures(server: &Server) -> CacheFigures {
    let runtime = server.proxy().runtime();
    let Some(cache) = runtime.cache() else {
        return Vec::new();
    };
    let stats = cache.store().stats();
    let tier = |t: velox_cache::store::TierStats, writes_skipped| TierFigures {
        objects: t.objects,
        bytes: t.bytes,
        evictions: t.evictions,
        writes_skipped,
    };
    vec![
        ("memory", tier(stats.memory, 0)),
        ("disk", tier(stats.disk, stats.disk_write_skipped)),
    ]
}

fn dashboard() -> AdminResponse {
    let mut response = reply(
        StatusCode::OK,
        "text/html; charset=utf-8",
        velox_observe::DASHBOARD_HTML.to_owned(),
    );
    let headers = response.headers_mut();
    // Self-contained: inline script and style, data from this origin only.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src data:; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    response
}

fn snapshot_json(server: &Server) -> String {
    let figures = cache_figures(server);
    server.observer().snapshot(&figures).to_string()
}

/// Server-Sent Events: one statistics snapshot per second until the client goes away.
fn stats_stream(server: &Arc<Server>) -> AdminResponse {
    if STREAMS.fetch_add(1, Ordering::AcqRel) >= MAX_STREAMS {
        STREAMS.fetch_sub(1, Ordering::AcqRel);
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "error": "too many open statistics streams" }),
        );
    }
    struct Slot;
    impl Drop for Slot {
        fn drop(&mut self) {
            STREAMS.fetch_sub(1, Ordering::AcqRel);
        }
    }
    let state = (server.clone(), Slot, true);
    let stream = futures_util::stream::unfold(state, |(server, slot, first)| async move {
        let event = if first {
            format!("retry: 2000\ndata: {}\n\n", snapshot_json(&server))
        } else {
            tokio::time::sleep(STREAM_INTERVAL).await;
            format!("data: {}\n\n", snapshot_json(&server))
        };
        Some((
            Ok::<_, Infallible>(Frame::data(Bytes::from(event))),
            (server, slot, false),
        ))
    });
    let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

async fn route(req: Request<Incoming>, server: &Arc<Server>) -> AdminResponse {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/" | "/index.html") => dashboard(),
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            server.observer().encode(&cache_figures(server)),
        ),
        (&Method::GET, "/api/stats") => {
            reply(StatusCode::OK, "application/json", snapshot_json(server))
        }
        (&Method::GET, "/api/stats/stream") => stats_stream(server),
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
        (&Method::POST, "/api/purge") => {
            if let Err(why) = authorize(&req, server) {
                return unauthorized(why);
            }
            purge(req, server).await
        }
        // Reveals cache keys and tags: token required, like the mutating endpoints.
        (&Method::GET, "/api/cache") => {
            if let Err(why) = authorize(&req, server) {
                return unauthorized(why);
            }
            cache_entries(&req, server).await
        }
        (
            _,
            "/" | "/index.html" | "/metrics" | "/api/stats" | "/api/stats/stream" | "/healthz"
            | "/readyz" | "/api/reload" | "/api/purge" | "/api/cache",
        ) => json(
            StatusCode::METHOD_NOT_ALLOWED,
            serde_json::json!({ "error": "method not allowed" }),
        ),
        _ => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": "not found" }),
        ),
    }
}

/// A purge body is at most this large.
const MAX_PURGE_BODY: usize = 1 << 20;
use crate::cache::MAX_PURGE_ITEMS;

fn bad_request(why: String) -> AdminResponse {
    json(StatusCode::BAD_REQUEST, serde_json::json!({ "error": why }))
}

/// `POST /api/purge`: records the purge (see docs/PURGE.md) and answers with what was recorded.
async fn purge(req: Request<Incoming>, server: &Arc<Server>) -> AdminResponse {
    let body = match http_body_util::Limited::new(req.into_body(), MAX_PURGE_BODY)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(e) => return bad_request(format!("reading the body: {e}")),
    };
    let request = match parse_purge(&body) {
        Ok(request) => request,
        Err(why) => return bad_request(why),
    };
    let runtime = server.proxy().runtime();
    let Some(cache) = runtime.cache() else {
        return json(
            StatusCode::CONFLICT,
            serde_json::json!({ "error": "the cache is disabled ([cache] enabled = false)" }),
        );
    };
    let outcome = match cache.purge(&runtime.config, &request) {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::error!(error = %e, "purge applied in memory but not persisted");
            return json(
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({
                    "error": format!("the purge applies now but could not be persisted: {e}")
                }),
            );
        }
    };
    json(
        StatusCode::OK,
        crate::cache::purge_answer(&request, &outcome, cache.purge_records()),
    )
}

/// `GET /api/cache?url=<absolute URL, percent-encoded>`: the entries stored for that URL.
async fn cache_entries<B>(req: &Request<B>, server: &Arc<Server>) -> AdminResponse {
    let url = match url_param(req.uri().query().unwrap_or("")) {
        Ok(url) => url,
        Err(why) => return bad_request(why),
    };
    let runtime = server.proxy().runtime();
    let Some(cache) = runtime.cache() else {
        return json(
            StatusCode::CONFLICT,
            serde_json::json!({ "error": "the cache is disabled ([cache] enabled = false)" }),
        );
    };
    let entries = cache.entries(&runtime.config, &url).await;
    json(
        StatusCode::OK,
        serde_json::json!({ "url": url.to_string(), "entries": entries }),
    )
}

/// The `url` query parameter, percent-decoded (`+` is kept as is), as an absolute http(s) URL.
fn url_param(query: &str) -> Result<http::Uri, String> {
    let raw = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("url="))
        .ok_or("give the URL to look up: /api/cache?url=<absolute URL, percent-encoded>")?;
    let mut bytes = Vec::with_capacity(raw.len());
    let mut rest = raw.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        match (b, tail) {
            (b'%', [h, l, more @ ..]) if hex(*h).is_some() && hex(*l).is_some() => {
                bytes.push(hex(*h).unwrap_or(0) << 4 | hex(*l).unwrap_or(0));
                rest = more;
            }
            (b'%', _) => return Err("url: bad percent-encoding".into()),
            _ => {
                bytes.push(b);
                rest = tail;
            }
        }
    }
    let text = String::from_utf8(bytes).map_err(|_| "url: not UTF-8".to_string())?;
    absolute_url(&text).map_err(|why| format!("url: {why}"))
}

/// Parses an absolute http(s) URL, or says why it is not one.
fn absolute_url(url: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let absolute = matches!(uri.scheme_str(), Some("http" | "https"))
        && uri.authority().is_some_and(|a| !a.host().is_empty());
    if absolute {
        Ok(uri)
    } else {
        Err(format!(
            "{url:?} is not an absolute http(s) URL, e.g. https://example.com/a"
        ))
    }
}

/// Validates a purge body: `{"urls": [...], "prefixes": [...], "tags": [...], "all": false,
/// "soft": false, "host": "..."}`, every field optional but at least one purge asked for.
fn parse_purge(body: &[u8]) -> Result<crate::cache::PurgeRequest, String> {
    use serde_json::Value;
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("the body must be a JSON object".into());
    };
    let mut request = crate::cache::PurgeRequest::default();
    let strings = |name: &str, v: &Value| -> Result<Vec<String>, String> {
        let Value::Array(items) = v else {
            return Err(format!("{name} must be an array of strings"));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.clone()),
                _ => Err(format!("{name}[{i}] must be a string")),
            })
            .collect()
    };
    let boolean = |name: &str, v: &Value| {
        v.as_bool()
            .ok_or_else(|| format!("{name} must be true or false"))
    };
    for (name, v) in &fields {
        match name.as_str() {
            "urls" => {
                for (i, url) in strings(name, v)?.into_iter().enumerate() {
                    let uri = absolute_url(&url).map_err(|why| format!("urls[{i}]: {why}"))?;
                    request.urls.push(uri);
                }
            }
            "prefixes" => {
                for (i, prefix) in strings(name, v)?.into_iter().enumerate() {
                    if !prefix.starts_with('/') {
                        return Err(format!(
                            "prefixes[{i}]: {prefix:?} must be a path starting with \"/\""
                        ));
                    }
                    request.prefixes.push(prefix);
                }
            }
            "tags" => {
                for (i, tag) in strings(name, v)?.into_iter().enumerate() {
                    if !crate::cache::valid_purge_tag(&tag) {
                        return Err(format!(
                            "tags[{i}]: {tag:?} must be 1-256 bytes without spaces or commas"
                        ));
                    }
                    request.tags.push(tag);
                }
            }
            "all" => request.all = boolean(name, v)?,
            "soft" => request.soft = boolean(name, v)?,
            "host" => match v {
                Value::Null => {}
                Value::String(h) if !h.is_empty() && h.parse::<http::uri::Authority>().is_ok() => {
                    request.host = Some(h.clone())
                }
                _ => return Err("host must be a host name, e.g. \"example.com\"".into()),
            },
            other => {
                return Err(format!(
                    "unknown field {other:?} (expected urls, prefixes, tags, all, soft, host)"
                ))
            }
        }
    }
    let items = request.urls.len() + request.prefixes.len() + request.tags.len();
    if items == 0 && !request.all {
        return Err("nothing to purge: give urls, prefixes, tags or \"all\": true".into());
    }
    if items > MAX_PURGE_ITEMS {
        return Err(format!(
            "at most {MAX_PURGE_ITEMS} urls, prefixes and tags in one purge"
        ));
    }
    if request.all && request.soft {
        return Err(
            "\"soft\" is not accepted with \"all\": purge everything is always hard".into(),
        );
    }
    if request.host.is_some() && request.prefixes.is_empty() {
        return Err("host applies to prefixes: give prefixes too".into());
    }
    Ok(request)
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

    #[test]
    fn url_parameters() {
        let ok = super::url_param("x=1&url=http%3A%2F%2Fexample.com%2Fa%3Fb%3D1%2Bc").unwrap();
        assert_eq!(ok.to_string(), "http://example.com/a?b=1+c");
        assert!(super::url_param("url=https://h/p").is_ok());
        for bad in [
            "",
            "x=1",
            "url=",
            "url=/a",
            "url=ftp%3A%2F%2Fh%2F",
            "url=%zz",
            "url=%E9",
        ] {
            assert!(super::url_param(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn purge_bodies() {
        let ok = super::parse_purge(
            br#"{"urls":["https://example.com/a?b"],"prefixes":["/i/"],"host":"example.com","tags":["t1","t2"],"soft":true}"#,
        )
        .unwrap();
        assert_eq!(ok.urls.len(), 1);
        assert_eq!(ok.prefixes, ["/i/"]);
        assert_eq!(ok.tags, ["t1", "t2"]);
        assert!(ok.soft && !ok.all);
        assert!(super::parse_purge(br#"{"all":true}"#).unwrap().all);
        for bad in [
            &b"not json"[..],
            b"[]",
            b"{}",
            br#"{"urls":["/relative"]}"#,
            br#"{"urls":["ftp://x/a"]}"#,
            br#"{"urls":[1]}"#,
            br#"{"prefixes":["images/"]}"#,
            br#"{"tags":["a b"]}"#,
            br#"{"tags":[""]}"#,
            br#"{"tags":"a"}"#,
            br#"{"all":true,"soft":true}"#,
            br#"{"all":"yes"}"#,
            br#"{"tags":["a"],"host":"x"}"#,
            br#"{"tags":["a"],"extra":1}"#,
        ] {
            assert!(
                super::parse_purge(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
