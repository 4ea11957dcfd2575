//! The request path: route, consult the cache, forward to the upstream, hand the response back.

use crate::body::Body;
use crate::cache::{Cache, RouteCache};
use crate::errors::{error_response, CACHE_STATUS, CACHE_STATUS_BYPASS};
use crate::forward;
use crate::handler::{ConnInfo, Handler, ServerFields};
use crate::transport::OnUpgrade;
use crate::upstream::Upstream;
use arc_swap::ArcSwap;
use http::header::{CONNECTION, HOST, UPGRADE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, Version};
use std::sync::Arc;
use velox_config::Config;
use velox_observe::request_id::{GeneratedId, X_REQUEST_ID};
use velox_observe::RequestFields;

/// Everything a request needs that a reload replaces at once.
pub struct Runtime {
    pub config: Config,
    upstreams: Vec<Arc<Upstream>>,
    /// For each route: the index of its upstream, and its cache policy.
    route_upstream: Vec<usize>,
    route_cache: Vec<Arc<RouteCache>>,
    cache: Option<Arc<Cache>>,
    via: Arc<forward::Via>,
    /// Metrics, access log and request ids for this configuration.
    pub observe: velox_observe::Scope,
}

impl Runtime {
    /// `cache` outlives reloads (it owns the store under data_dir); routes and upstreams do not.
    pub fn build(
        config: Config,
        cache: Option<Arc<Cache>>,
        observer: &Arc<velox_observe::Observer>,
    ) -> anyhow::Result<Runtime> {
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| Upstream::new(u).map(Arc::new))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let route_upstream = config
            .routes
            .iter()
            .map(|route| {
                upstreams
                    .iter()
                    .position(|u| u.name == route.upstream)
                    .ok_or_else(|| anyhow::anyhow!("no upstream named {:?}", route.upstream))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let route_cache = config
            .routes
            .iter()
            .map(|route| {
                RouteCache::from_config(&route.cache, config.cache.expose_key).map(Arc::new)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let via = Arc::new(
            forward::Via::new(&config.server.via)
                .map_err(|_| anyhow::anyhow!("server.via is not a valid field value"))?,
        );
        let observe = observer.scope(&config);
        Ok(Runtime {
            config,
            upstreams,
            route_upstream,
            route_cache,
            cache,
            via,
            observe,
        })
    }

    /// The shared cache, if enabled (for its statistics).
    pub fn cache(&self) -> Option<&Arc<Cache>> {
        self.cache.as_ref()
    }
}

pub struct Proxy {
    runtime: ArcSwap<Runtime>,
}

impl Proxy {
    pub fn new(runtime: Runtime) -> Self {
        Proxy {
            runtime: ArcSwap::from_pointee(runtime),
        }
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Swaps in a new runtime; requests in flight finish on the old one.
    pub fn replace(&self, runtime: Runtime) {
        self.runtime.store(Arc::new(runtime));
    }
}

/// The host a request is for: the target's authority if absolute-form or h2, else `Host`.
pub fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    host_of(uri, headers.get(HOST))
}

/// [`request_host`], given the `Host` field.
fn host_of<'a>(uri: &'a Uri, host_field: Option<&'a HeaderValue>) -> Option<&'a str> {
    uri.authority()
        .map(|a| a.as_str())
        .or_else(|| host_field.and_then(|h| h.to_str().ok()))
}

impl Handler for Proxy {
    async fn handle(
        &self,
        req: Request<Body>,
        conn: ConnInfo,
        fields: &mut ServerFields,
    ) -> Response<Body> {
        let runtime = self.runtime();
        let host_field = req.headers().get(HOST);
        let route = (runtime.config).match_route(host_of(req.uri(), host_field), req.uri().path());
        // Request id, sampling; finished with the response head.
        let fields_read = RequestFields {
            host: host_field,
            request_id: (conn.may_carry_request_id)
                .then(|| req.headers().get(&X_REQUEST_ID))
                .flatten(),
        };
        let mut recording =
            (runtime.observe).begin(route, &req, fields_read, conn.peer.ip(), conn.received);
        let Some(route) = route else {
            let response = error_response(
                StatusCode::NOT_FOUND,
                "no-route",
                "no route matches this host and path",
            );
            let (response, request_id) = runtime.observe.finish(&mut recording, response);
            fields.request_id = request_id;
            return response;
        };
        let forward = Forward {
            upstream: runtime.upstreams[runtime.route_upstream[route]].clone(),
            conn,
            via: runtime.via.clone(),
            request_id: recording
                .as_ref()
                .and_then(velox_observe::Recording::generated_id),
        };
        let route_cache = &runtime.route_cache[route];
        let response = match &runtime.cache {
            Some(cache) if route_cache.enabled => cache.handle(req, route_cache, forward).await,
            _ => {
                let mut response = forward.send(req).await;
                response
                    .headers_mut()
                    .insert(CACHE_STATUS, HeaderValue::from_static(CACHE_STATUS_BYPASS));
                response
            }
        };
        let (response, request_id) = runtime.observe.finish(&mut recording, response);
        fields.request_id = request_id;
        response
    }
}

/// Sends requests of one client connection to one upstream; cheap to clone, so a background
/// refresh can keep one.
#[derive(Clone)]
pub struct Forward {
    pub upstream: Arc<Upstream>,
    pub conn: ConnInfo,
    pub via: Arc<forward::Via>,
    /// An id Velox generated for the request, set on it when it goes to the origin.
    pub request_id: Option<GeneratedId>,
}

impl Forward {
    /// Forwards `req` with this hop's header rules; errors become 502/504 responses.
    pub async fn send(&self, req: Request<Body>) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        // h2 requests carry the host as :authority, HTTP/1.1 ones in `Host` (kept as it is).
        let authority = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
        let host = authority
            .clone()
            .or_else(|| parts.headers.get(HOST).cloned());
        let client_upgrade = parts.extensions.remove::<OnUpgrade>();
        let protocol = client_upgrade
            .as_ref()
            .and_then(|_| parts.headers.get(UPGRADE).cloned());
        let received = parts.version;

        let headers = &mut parts.headers;
        forward::strip_hop_by_hop(headers);
        forward::add_forwarded(headers, self.conn.peer.ip(), self.conn.tls, host.as_ref());
        forward::add_via(headers, received, &self.via);
        if let Some(id) = self.request_id {
            headers.insert(&X_REQUEST_ID, id.header_value());
        }
        if let Some(protocol) = &protocol {
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(UPGRADE, protocol.clone());
        }
        // Host is preserved unless the upstream rewrites it.
        if let Some(host) = self.upstream.host_header.clone().or(authority) {
            headers.insert(HOST, host);
        }
        parts.version = Version::HTTP_11;

        // An interim response is a message this hop forwards too: it gets the Via entry.
        let relay = |status, headers: &HeaderMap| {
            let mut headers = headers.clone();
            forward::add_via(&mut headers, Version::HTTP_11, &self.via);
            crate::interim::relay(status, &headers);
        };
        let sent = self.upstream.send(Request::from_parts(parts, body), &relay);
        let mut response = match sent.await {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!(upstream = %self.upstream.name, error = %e, "upstream request failed");
                return error_response(e.status(), e.code(), &e.to_string());
            }
        };

        let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        match (switching, client_upgrade) {
            (true, Some(client)) => {
                let Some(origin) = response
                    .extensions()
                    .get::<crate::upstream::OriginUpgrade>()
                    .and_then(|u| u.take())
                else {
                    return error_response(
                        StatusCode::BAD_GATEWAY,
                        "upstream-failed",
                        "the origin's upgrade was lost",
                    );
                };
                crate::tunnel::spawn(client, origin);
                let upgrade = response.headers().get(UPGRADE).cloned();
                forward::strip_hop_by_hop(response.headers_mut());
                if let Some(upgrade) = upgrade {
                    response.headers_mut().insert(UPGRADE, upgrade);
                    response
                        .headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("upgrade"));
                }
            }
            (true, None) => {
                return error_response(
                    StatusCode::BAD_GATEWAY,
                    "upstream-unexpected-upgrade",
                    "the origin switched protocols unasked",
                );
            }
            (false, _) => forward::strip_hop_by_hop(response.headers_mut()),
        }
        let version = response.version();
        forward::add_via(response.headers_mut(), version, &self.via);
        response
    }
}
