//! The cache stage of the request path (RFC 9111): look up, serve fresh, revalidate stale,
//! coalesce misses into one origin fetch whose body fans out to every waiting client while
//! it is stored, serve stale on error, and invalidate after unsafe methods.
//!
//! Decisions come from `velox_cache::policy` (pure); bytes live in `velox_cache::store`.

mod coalesce;
mod meta;
mod purging;
mod serve;

use crate::body::{self, Body};
use crate::errors::error_response;
use crate::in_place;
use crate::proxy::{request_host, Forward};
use arc_swap::ArcSwap;
use coalesce::{Coalescer, Inflight, Role, SharedHead};
use http::header::{AUTHORIZATION, IF_RANGE, RANGE, VARY};
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
};
use http_body::Body as _;
use http_body_util::BodyExt;
use meta::{Meta, StoredResponse, Variants};
pub use purging::{purge_answer, valid_purge_tag, MAX_PURGE_ITEMS};
use serve::{range_of_passing, respond, set_cache_status, Entry};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use velox_cache::policy::conditional::{
    freshen_headers, not_modified_applies, validation_headers, PRECONDITION_HEADERS,
};
use velox_cache::policy::vary::VaryFields;
use velox_cache::policy::{
    invalidations, may_serve_stale_on_error, primary_key, request_directives, secondary_key,
    select_response_directives, serve_decision, storability, AgeInputs, CacheControl, CacheStatus,
    Fwd, KeyRules, RoutePolicy, ServeDecision, Storability, StoreDecision, StoreInput,
    StoredFreshness, TtlMode,
};
use velox_cache::purge::{Purges, Subject, Verdict};
use velox_cache::store::{Store, StoreConfig};
use velox_config::{CacheMode, Config, RouteCacheConfig};

/// A route's cache policy, prepared once per configuration.
pub struct RouteCache {
    pub enabled: bool,
    policy: RoutePolicy,
    key: KeyRules,
    /// `key` without its header and cookie parts: what identifies the URL alone. Responses are
    /// stored under it (through a marker when the full key adds more), so invalidating a URL
    /// reaches every entry for it (RFC 9111 §4.4).
    url_key: KeyRules,
    ignore_client_no_cache: bool,
    /// `[cache] expose_key`: kept here, with the configuration a reload replaces, so that a
    /// request reads it at no cost.
    expose_key: bool,
}

impl RouteCache {
    pub fn from_config(config: &RouteCacheConfig, expose_key: bool) -> anyhow::Result<RouteCache> {
        let ttl_mode = match config.mode {
            CacheMode::Override => {
                TtlMode::Override(config.ttl.map(|t| t.get()).unwrap_or_default())
            }
            CacheMode::OptIn => TtlMode::OptIn,
            CacheMode::Respect | CacheMode::Bypass => TtlMode::Respect,
        };
        let status_ttls = config
            .status_ttl
            .iter()
            .map(|(code, ttl)| Ok((code.parse::<u16>()?, ttl.get())))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let include_headers = config
            .key
            .headers
            .iter()
            .map(|h| HeaderName::from_bytes(h.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RouteCache {
            enabled: config.mode != CacheMode::Bypass,
            policy: RoutePolicy {
                ttl_mode,
                default_ttl: config.default_ttl.map(|t| t.get()),
                status_ttls,
                store_set_cookie: config.store_set_cookie,
                stale_if_error_grace: config.stale_if_error.get(),
                ..RoutePolicy::default()
            },
            url_key: KeyRules {
                drop: config.key.drop_query.clone(),
                keep_only: config.key.keep_query.clone(),
                sort: config.key.sort_query,
                include_headers: Vec::new(),
                include_cookies: Vec::new(),
            },
            key: KeyRules {
                drop: config.key.drop_query.clone(),
                keep_only: config.key.keep_query.clone(),
                sort: config.key.sort_query,
                include_headers,
                include_cookies: config.key.cookies.clone(),
            },
            ignore_client_no_cache: config.ignore_client_no_cache,
            expose_key,
        })
    }
}

/// What the cache needs to know of the request after handing its body on.
#[derive(Clone)]
struct RequestFacts {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    directives: Arc<CacheControl>,
    /// The URL's key: where the response, or the marker leading to it, is stored.
    primary: String,
    /// The full key (URL plus the route's header and cookie parts), when the route adds any:
    /// see [`RequestFacts::full`].
    full: Option<String>,
}

impl RequestFacts {
    /// The full key: what coalesces, and what selects among the entries under `primary`.
    /// `primary` itself when the route adds nothing to the URL.
    fn full(&self) -> &str {
        self.full.as_deref().unwrap_or(&self.primary)
    }

    /// A fresh body-less request to the origin: the client's, minus its own preconditions and
    /// range, so the response is complete and can serve everyone.
    fn origin_request(&self) -> Request<Body> {
        let mut request = self.client_request();
        for name in PRECONDITION_HEADERS.iter().chain([&RANGE, &IF_RANGE]) {
            request.headers_mut().remove(name);
        }
        request
    }

    /// The client's own request (GET and HEAD carry no body), for passing it on unchanged.
    fn client_request(&self) -> Request<Body> {
        let mut request = Request::new(body::empty());
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers.clone();
        request
    }

    fn wants_part_or_condition(&self) -> bool {
        self.headers.contains_key(RANGE)
            || PRECONDITION_HEADERS
                .iter()
                .any(|h| self.headers.contains_key(h))
    }
}

/// The `[cache]` settings a reload applies (and `expose_key`, on [`RouteCache`]).
struct Policy {
    targeted: Vec<HeaderName>,
    forward_targeted: bool,
    range_fetch_max: u64,
    tag_fields: Vec<HeaderName>,
    forward_tag_fields: bool,
    purge_method: bool,
    purge_allow: Vec<velox_config::Cidr>,
}

impl Policy {
    fn of(c: &velox_config::CacheConfig) -> anyhow::Result<Policy> {
        let names = |fields: &[String]| {
            fields
                .iter()
                .map(|f| HeaderName::from_bytes(f.as_bytes()))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Policy {
            targeted: names(&c.targeted_fields)?,
            forward_targeted: c.forward_targeted_fields,
            range_fetch_max: c.range_fetch_max.bytes(),
            tag_fields: names(&c.tag_fields)?,
            forward_tag_fields: c.forward_tag_fields,
            purge_method: c.purge_method,
            purge_allow: c
                .purge_allow
                .iter()
                .map(|net| net.parse().map_err(|e: String| anyhow::anyhow!(e)))
                .collect::<anyhow::Result<Vec<_>>>()?,
        })
    }
}

/// The settings the store is opened with (where it lives and how large it may grow): changing
/// them takes a restart.
#[derive(PartialEq)]
struct FixedSettings {
    data_dir: std::path::PathBuf,
    enabled: bool,
    memory_size: u64,
    disk_size: u64,
    max_object_size: u64,
}

impl FixedSettings {
    fn of(config: &Config) -> FixedSettings {
        let c = &config.cache;
        FixedSettings {
            data_dir: config.server.data_dir.clone(),
            enabled: c.enabled,
            memory_size: c.memory_size.bytes(),
            disk_size: c.disk_size.bytes(),
            max_object_size: c.max_object_size.bytes(),
        }
    }
}

/// A checked change of the cache's settings, applied by [`PolicyChange::apply`].
pub struct PolicyChange<'a> {
    cache: &'a Cache,
    policy: Policy,
    retention: (Duration, usize),
    /// The store's directory or sizes differ: those wait for a restart.
    pub restart_needed: bool,
}

impl PolicyChange<'_> {
    pub fn apply(self) {
        self.cache.policy.store(Arc::new(self.policy));
        self.cache
            .purges
            .set_limits(self.retention.0, self.retention.1);
    }
}

pub struct Cache {
    store: Arc<Store>,
    coalescer: Arc<Coalescer>,
    refreshing: Mutex<HashSet<String>>,
    /// What a reload may change.
    policy: ArcSwap<Policy>,
    /// What only a restart changes; a reload that differs says so.
    fixed: FixedSettings,
    max_object: u64,
    generation: AtomicU64,
    purges: Purges,
    /// Bumped by every purge: part of the coalescing key, so a request that starts after a
    /// purge never joins an origin fetch that began before it.
    purge_seq: AtomicU64,
    variant_index: Mutex<purging::VariantIndex>,
    observer: Arc<velox_observe::Observer>,
}

/// At most this many tags, of at most this many bytes each, are kept per object.
const MAX_TAGS: usize = 256;
const MAX_TAG_LEN: usize = 256;

/// A purge, validated by the admin API.
#[derive(Debug, Clone, Default)]
pub struct PurgeRequest {
    /// Absolute URLs: every stored variant of each, under either scheme.
    pub urls: Vec<Uri>,
    /// Path prefixes, for `host` (or any host).
    pub prefixes: Vec<String>,
    pub host: Option<String>,
    pub tags: Vec<String>,
    pub all: bool,
    pub soft: bool,
}

/// What a purge did.
#[derive(Debug, Clone)]
pub struct PurgeOutcome {
    /// Objects stored at or before this instant (ms resolution) are covered.
    pub at: SystemTime,
    /// URL keys removed from the store outright (hard URL purges).
    pub removed: usize,
    /// Time spent recording it (and deleting what is deleted at once), before the answer waits
    /// for the clock to leave the record's millisecond.
    pub took: Duration,
}

const VELOX_DEBUG: http::HeaderName = http::HeaderName::from_static("velox-debug");

impl Cache {
    /// Opens the store under `data_dir/cache`; `None` when the cache is disabled. Purges are
    /// counted by `observer`.
    pub fn open(
        config: &Config,
        observer: Arc<velox_observe::Observer>,
    ) -> anyhow::Result<Option<Arc<Cache>>> {
        let c = &config.cache;
        if !c.enabled {
            return Ok(None);
        }
        let mut store_config = StoreConfig::new(config.server.data_dir.join("cache"));
        store_config.memory_bytes = c.memory_size.bytes();
        store_config.disk_bytes = c.disk_size.bytes();
        store_config.max_object_bytes = c.max_object_size.bytes();
        store_config.decoded_charge = meta::decoded_charge;
        let policy = Policy::of(c)?;
        let store = Store::open(store_config)?;
        let purges = Purges::open(
            Some(config.server.data_dir.join("purges.log")),
            c.purge_retention.get(),
            c.purge_max_records,
        )
        .map_err(|e| anyhow::anyhow!("loading purge records: {e}"))?;
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        Ok(Some(Arc::new(Cache {
            store: Arc::new(store),
            coalescer: Arc::new(Coalescer::default()),
            refreshing: Mutex::new(HashSet::new()),
            policy: ArcSwap::from_pointee(policy),
            fixed: FixedSettings::of(config),
            max_object: c.max_object_size.bytes(),
            generation: AtomicU64::new(seed),
            purges,
            purge_seq: AtomicU64::new(0),
            variant_index: Mutex::default(),
            observer,
        })))
    }

    /// Checks what a new configuration asks of the cache; the returned change applies it.
    /// Fails, changing nothing, when a field is invalid.
    pub fn prepare(&self, config: &Config) -> anyhow::Result<PolicyChange<'_>> {
        Ok(PolicyChange {
            cache: self,
            policy: Policy::of(&config.cache)?,
            retention: (
                config.cache.purge_retention.get(),
                config.cache.purge_max_records,
            ),
            restart_needed: FixedSettings::of(config) != self.fixed,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Purge records held (tags, prefixes, URLs).
    pub fn purge_records(&self) -> usize {
        self.purges.len()
    }

    /// Judges a found entry against the purge records: `None` when hard-purged; a soft purge
    /// ends its freshness at the purge time, so it is revalidated (or served under
    /// stale-while-revalidate / stale-if-error as its own directives allow).
    fn unpurged(&self, facts: &RequestFacts, entry: Entry) -> Option<Entry> {
        // No live purge record (the usual case): nothing to look up for the subject.
        if self.purges.is_empty() {
            return Some(entry);
        }
        let verdict = self.purges.check(&Subject {
            stored_at: velox_cache::purge::millis(entry.meta.response_time),
            tags: &entry.meta.tags,
            host: request_host(&facts.uri, &facts.headers).unwrap_or(""),
            path: facts.uri.path_and_query().map_or("/", |p| p.as_str()),
            url_key: &facts.primary,
        });
        match verdict {
            Verdict::Valid => Some(entry),
            Verdict::Hard => {
                self.store.remove(&entry.key);
                None
            }
            Verdict::Soft(since) => {
                let now = SystemTime::now();
                let stale_for = now
                    .duration_since(UNIX_EPOCH + Duration::from_millis(since))
                    .unwrap_or_default();
                let age_at_purge = entry.current_age(now).saturating_sub(stale_for);
                if age_at_purge >= entry.meta.freshness_lifetime {
                    return Some(entry);
                }
                let mut meta = (*entry.meta).clone();
                meta.freshness_lifetime = age_at_purge;
                Some(Entry {
                    meta: Arc::new(meta),
                    ..entry
                })
            }
        }
    }

    pub async fn handle(
        self: &Arc<Self>,
        req: Request<Body>,
        route: &Arc<RouteCache>,
        fwd: Forward,
    ) -> Response<Body> {
        let scheme = if fwd.conn.tls { "https" } else { "http" };
        let authority = request_host(req.uri(), req.headers()).unwrap_or("");
        let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let primary = primary_key(
            scheme,
            authority,
            path_and_query,
            req.headers(),
            &route.url_key,
        );
        let full = (!route.key.include_headers.is_empty() || !route.key.include_cookies.is_empty())
            .then(|| primary_key(scheme, authority, path_and_query, req.headers(), &route.key));
        let show_key = route.expose_key
            || req
                .headers()
                .get(VELOX_DEBUG)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"key"));

        // Upgrades (WebSocket) are tunnels, not cacheable exchanges.
        if req
            .extensions()
            .get::<crate::transport::OnUpgrade>()
            .is_some()
        {
            // Forwarded past the cache, boxed like every rare path here: inline, each of these
            // awaits would add an origin exchange's state to every hit's future.
            let mut response = in_place::boxed(|| fwd.send(req)).await;
            set_cache_status(
                response.headers_mut(),
                &CacheStatus::forward(Fwd::Request).with_detail("upgrade"),
            );
            return response;
        }
        let method = req.method().clone();
        if method.as_str() == "PURGE" {
            let peer = fwd.conn.peer.ip();
            return self.purge_method(&req, route, scheme, authority, path_and_query, peer);
        }
        if method != Method::GET && method != Method::HEAD {
            // Owned: the request goes forward before the invalidations are worked out.
            let (authority, path_and_query) = (authority.to_owned(), path_and_query.to_owned());
            let mut response = in_place::boxed(|| fwd.send(req)).await;
            self.strip_tags(response.headers_mut());
            if !velox_cache::policy::invalidation::is_safe_method(&method) {
                for uri in invalidations(
                    &method,
                    response.status(),
                    scheme,
                    &authority,
                    &path_and_query,
                    response.headers(),
                ) {
                    let key = primary_key(
                        &uri.scheme,
                        &uri.authority,
                        &uri.path_and_query,
                        &HeaderMap::new(),
                        &route.url_key,
                    );
                    self.store.remove(&key);
                }
            }
            set_cache_status(response.headers_mut(), &CacheStatus::forward(Fwd::Method));
            if show_key {
                append_key(response.headers_mut(), full.as_deref().unwrap_or(&primary));
            }
            return response;
        }

        let shown_key = show_key.then(|| full.clone().unwrap_or_else(|| primary.clone()));
        let (parts, _) = req.into_parts();
        let facts = RequestFacts {
            method,
            directives: Arc::new(request_directives(&parts.headers)),
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
            primary,
            full,
        };
        let now = SystemTime::now();
        let found = match self.lookup(&facts).await {
            Found::Hit(entry) => match self.unpurged(&facts, entry) {
                Some(entry) => Found::Hit(entry),
                None => Found::Purged,
            },
            other => other,
        };
        let mut response = match found {
            Found::Hit(entry) => self.serve_found(facts, route, fwd, entry, now).await,
            Found::VaryMiss | Found::Miss | Found::Purged if facts.directives.only_if_cached => {
                let mut response = error_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    "only-if-cached",
                    "not in cache and the request said only-if-cached",
                );
                set_cache_status(
                    response.headers_mut(),
                    &CacheStatus::forward(Fwd::UriMiss).with_detail("only-if-cached"),
                );
                response
            }
            // Misses and revalidations are boxed: their state would otherwise weigh on every hit.
            Found::VaryMiss => {
                in_place::boxed(|| self.fetch(facts, route, fwd, Fwd::VaryMiss)).await
            }
            Found::Miss => in_place::boxed(|| self.fetch(facts, route, fwd, Fwd::UriMiss)).await,
            Found::Purged => {
                let mut response =
                    in_place::boxed(|| self.fetch(facts, route, fwd, Fwd::UriMiss)).await;
                append_param(response.headers_mut(), "detail=purged");
                response
            }
        };
        if let Some(key) = shown_key {
            append_key(response.headers_mut(), &key);
        }
        response
    }

    async fn serve_found(
        self: &Arc<Self>,
        facts: RequestFacts,
        route: &Arc<RouteCache>,
        fwd: Forward,
        entry: Entry,
        now: SystemTime,
    ) -> Response<Body> {
        let freshness = freshness_of(&entry, now);
        let hit = |detail: Option<&str>| {
            let status = CacheStatus::hit().with_ttl(freshness.ttl_seconds());
            match detail {
                Some(d) => status.with_detail(d),
                None => status,
            }
        };
        let served =
            match serve_decision(&freshness, &facts.directives, route.ignore_client_no_cache) {
                ServeDecision::Fresh | ServeDecision::StaleAccepted => {
                    respond(&facts.method, &facts.headers, &entry, &hit(None), now)
                }
                ServeDecision::StaleWhileRevalidate => {
                    self.refresh_in_background(&facts, route, &fwd, &entry);
                    respond(
                        &facts.method,
                        &facts.headers,
                        &entry,
                        &hit(Some("stale-while-revalidate")),
                        now,
                    )
                }
                ServeDecision::GatewayTimeout => {
                    let mut response = error_response(
                        StatusCode::GATEWAY_TIMEOUT,
                        "only-if-cached",
                        "the stored response is stale and the request said only-if-cached",
                    );
                    set_cache_status(
                        response.headers_mut(),
                        &CacheStatus::forward(Fwd::Stale).with_detail("only-if-cached"),
                    );
                    return response;
                }
                ServeDecision::Revalidate => {
                    return in_place::boxed(|| self.revalidate(facts, route, fwd, entry)).await
                }
            };
        match served {
            Some(response) => response,
            // Preconditions only the origin may judge: pass the request on as it is.
            None => {
                let mut response = in_place::boxed(|| fwd.send(facts.client_request())).await;
                self.strip_tags(response.headers_mut());
                set_cache_status(response.headers_mut(), &CacheStatus::forward(Fwd::Request));
                response
            }
        }
    }

    /// Finds the stored response for this request, following a Vary marker to its variant.
    async fn lookup(&self, facts: &RequestFacts) -> Found {
        let primary = &facts.primary;
        let Some((object, meta)) = self.get(primary).await else {
            return Found::Miss;
        };
        match &*meta {
            // A plain entry answers only when the full key is the URL alone.
            Meta::Response(meta) if facts.full.is_none() => Found::Hit(Entry {
                object,
                meta: meta.clone(),
                key: primary.to_owned(),
            }),
            Meta::Response(_) => Found::VaryMiss,
            Meta::Variants(variants) => {
                let Some(key) = variant_key(facts, variants) else {
                    return Found::VaryMiss;
                };
                match self.get(&key).await {
                    Some((object, variant)) => match &*variant {
                        Meta::Response(meta) => Found::Hit(Entry {
                            object,
                            meta: meta.clone(),
                            key,
                        }),
                        Meta::Variants(_) => Found::VaryMiss,
                    },
                    None => Found::VaryMiss,
                }
            }
        }
    }

    async fn get(&self, key: &str) -> Option<(Arc<velox_cache::store::Object>, Arc<Meta>)> {
        self.peek(key).await.map(|(_, object, meta)| (object, meta))
    }

    /// Looks `key` up; also says which tier (`"memory"` or `"disk"`) it was found in.
    async fn peek(
        &self,
        key: &str,
    ) -> Option<(&'static str, Arc<velox_cache::store::Object>, Arc<Meta>)> {
        let (tier, object) = match self.store.get_memory(key) {
            Some(object) => ("memory", object),
            // Most misses are answered here, from the in-memory disk index, without a thread hop.
            None if !self.store.disk_may_have(key) => return None,
            None => {
                // The disk tier reads files: off the async threads.
                let store = self.store.clone();
                let key = key.to_owned();
                let object = tokio::task::spawn_blocking(move || store.get(&key))
                    .await
                    .ok()??;
                ("disk", object)
            }
        };
        let meta = self
            .store
            .decoded(&object, |bytes| Meta::decode(bytes.clone()))?;
        Some((tier, object, meta))
    }

    /// A miss: join the fetch already in flight for this key, or lead one.
    async fn fetch(
        self: &Arc<Self>,
        facts: RequestFacts,
        route: &Arc<RouteCache>,
        fwd: Forward,
        reason: Fwd,
    ) -> Response<Body> {
        // HEAD and byte ranges of large objects are passed through rather than filling the cache.
        if facts.method == Method::HEAD {
            let mut response = fwd.send(facts.client_request()).await;
            self.strip_tags(response.headers_mut());
            set_cache_status(response.headers_mut(), &CacheStatus::forward(reason));
            return response;
        }
        let seq = self.purge_seq.load(Ordering::Acquire);
        match self.coalescer.join(&format!("{seq}\n{}", facts.full())) {
            Role::Leader(guard) => {
                let request_time = SystemTime::now();
                let response = fwd.send(facts.origin_request()).await;
                self.admit(
                    &facts,
                    route,
                    &fwd,
                    response,
                    request_time,
                    Some(guard),
                    reason,
                )
                .await
            }
            Role::Follower(inflight) => {
                if let Some(head) = inflight.head().await {
                    if head.matches(&facts.headers) {
                        return self
                            .serve_shared(
                                &facts,
                                &fwd,
                                &inflight,
                                &head,
                                CacheStatus::forward(reason).with_collapsed(true),
                            )
                            .await;
                    }
                }
                // The leader's response may not be shared with this client: fetch alone.
                let request_time = SystemTime::now();
                let response = fwd.send(facts.origin_request()).await;
                self.admit(&facts, route, &fwd, response, request_time, None, reason)
                    .await
            }
        }
    }

    /// Serves one client from a shared fetch: streaming as it arrives, or, for a conditional or
    /// range request, from the complete object once stored.
    async fn serve_shared(
        &self,
        facts: &RequestFacts,
        fwd: &Forward,
        inflight: &Arc<Inflight>,
        head: &SharedHead,
        status: CacheStatus,
    ) -> Response<Body> {
        // A range of an object too large to wait for is passed through; the fill goes on.
        if self.passes_range_through(facts, Some(head.length)) {
            return self.range_through(facts, fwd, status).await;
        }
        if facts.wants_part_or_condition() && inflight.complete().await {
            if let Found::Hit(entry) = self.lookup(facts).await {
                if let Some(response) = respond(
                    &facts.method,
                    &facts.headers,
                    &entry,
                    &status,
                    SystemTime::now(),
                ) {
                    return response;
                }
            }
        }
        let mut response = Response::new(body::with_length(inflight.reader(), head.length));
        *response.status_mut() = head.status;
        *response.headers_mut() = head.headers.clone();
        set_cache_status(response.headers_mut(), &status);
        response
    }

    /// A range of an object larger than `range_fetch_max` goes to the origin as asked.
    fn passes_range_through(&self, facts: &RequestFacts, length: Option<u64>) -> bool {
        facts.headers.contains_key(RANGE)
            && length.is_some_and(|l| l > self.policy.load().range_fetch_max)
    }

    async fn range_through(
        &self,
        facts: &RequestFacts,
        fwd: &Forward,
        status: CacheStatus,
    ) -> Response<Body> {
        let mut response = fwd.send(facts.client_request()).await;
        self.strip_targeted(response.headers_mut());
        self.strip_tags(response.headers_mut());
        set_cache_status(
            response.headers_mut(),
            &status.with_detail("range-passed-through"),
        );
        response
    }

    /// Decides whether a fresh origin response is stored, and answers the client.
    #[allow(clippy::too_many_arguments)]
    async fn admit(
        self: &Arc<Self>,
        facts: &RequestFacts,
        route: &RouteCache,
        fwd: &Forward,
        mut response: Response<Body>,
        request_time: SystemTime,
        guard: Option<coalesce::LeaderGuard>,
        reason: Fwd,
    ) -> Response<Body> {
        let response_time = SystemTime::now();
        let length = response.body().size_hint().exact();
        // Velox's own error responses (502/504) are never stored, and no origin status came back.
        let own_error = response
            .headers()
            .contains_key(crate::errors::X_VELOX_ERROR);
        let status = match own_error {
            true => CacheStatus::forward(reason),
            false => CacheStatus::forward(reason).with_fwd_status(response.status().as_u16()),
        };
        let decision = if own_error {
            None
        } else {
            self.decide(facts, route, &response, response_time)
        };
        // Larger than the cache takes: passed through. Unknown length: stored as it streams.
        let too_large = length.is_some_and(|l| l > self.max_object);
        let Some(decision) = decision.filter(|_| !too_large) else {
            drop(guard);
            // Not kept, and too large to read through to the range: ask for the range alone.
            if response.status() == StatusCode::OK && self.passes_range_through(facts, length) {
                drop(response);
                return self.range_through(facts, fwd, status).await;
            }
            self.strip_targeted(response.headers_mut());
            self.strip_tags(response.headers_mut());
            set_cache_status(response.headers_mut(), &status);
            return range_of_passing(&facts.method, &facts.headers, response);
        };
        self.strip_targeted(response.headers_mut());
        let tags = self.tags_of(response.headers());
        self.strip_tags(response.headers_mut());
        // A purge recorded since the origin request was sent may cover this response, though it
        // arrived after it: answer this client with it, but do not store it.
        let covered = self.purges.check(&Subject {
            stored_at: velox_cache::purge::millis(request_time),
            tags: &tags,
            host: request_host(&facts.uri, &facts.headers).unwrap_or(""),
            path: facts.uri.path_and_query().map_or("/", |p| p.as_str()),
            url_key: &facts.primary,
        });
        if covered != Verdict::Valid {
            drop(guard);
            set_cache_status(response.headers_mut(), &status.with_detail("purged"));
            return range_of_passing(&facts.method, &facts.headers, response);
        }
        for field in &decision.strip_fields {
            response.headers_mut().remove(field.as_str());
        }
        let mut stored_headers = response.headers().clone();
        meta::drop_exchange_fields(&mut stored_headers);
        let stored = StoredResponse {
            status: response.status(),
            headers: stored_headers,
            corrected_initial_age: AgeInputs::from_headers(
                response.headers(),
                request_time,
                response_time,
            )
            .corrected_initial_age(),
            response_time,
            freshness_lifetime: decision.freshness_lifetime,
            stale_while_revalidate: decision.stale_while_revalidate,
            stale_if_error: decision
                .stale_if_error
                .unwrap_or(route.policy.stale_if_error_grace),
            must_revalidate: decision.must_revalidate,
            no_cache: decision.no_cache,
            tags,
        };
        let storage_key = self.storage_key(facts, response.headers());
        let writer = storage_key.and_then(|key| {
            self.store
                .begin(&key, Meta::Response(Arc::new(stored)).encode())
        });
        let Some(length) = length else {
            // Without a length the body cannot be shared safely (it might outgrow the cache while
            // followers wait on it): followers fetch for themselves, this client's stream is stored.
            drop(guard);
            set_cache_status(
                response.headers_mut(),
                &status.with_stored(writer.is_some()),
            );
            return response.map(|origin| body::boxed(StoreAsItStreams { origin, writer }));
        };
        let inflight = guard
            .as_ref()
            .map_or_else(Inflight::detached, |g| g.inflight.clone());
        let head = SharedHead::new(
            response.status(),
            response.headers().clone(),
            length,
            &facts.headers,
        );
        inflight.share(head.clone());
        let (_, origin_body) = response.into_parts();
        tokio::spawn(fill(origin_body, writer, inflight.clone(), guard));
        self.serve_shared(facts, fwd, &inflight, &head, status.with_stored(true))
            .await
    }

    fn decide(
        &self,
        facts: &RequestFacts,
        route: &RouteCache,
        response: &Response<Body>,
        now: SystemTime,
    ) -> Option<StoreDecision> {
        let directives =
            select_response_directives(response.headers(), &self.policy.load().targeted);
        let input = StoreInput {
            method: &facts.method,
            request: &facts.directives,
            has_authorization: facts.headers.contains_key(AUTHORIZATION),
            status: response.status(),
            headers: response.headers(),
            directives: &directives,
        };
        match storability(&input, &route.policy, now) {
            Storability::Store(decision) if !decision.from_head => Some(decision),
            _ => None,
        }
    }

    /// The object's purge tags: every tag field's values split on spaces and commas, deduplicated,
    /// at most `MAX_TAGS` of at most `MAX_TAG_LEN` bytes (longer ones are ignored).
    fn tags_of(&self, headers: &HeaderMap) -> Vec<Box<str>> {
        let mut tags: Vec<Box<str>> = Vec::new();
        let policy = self.policy.load();
        let values = policy.tag_fields.iter().flat_map(|f| headers.get_all(f));
        for value in values {
            let Ok(text) = std::str::from_utf8(value.as_bytes()) else {
                continue;
            };
            for tag in text.split(|c: char| c == ',' || c.is_ascii_whitespace()) {
                if tags.len() >= MAX_TAGS {
                    return tags;
                }
                if !tag.is_empty() && tag.len() <= MAX_TAG_LEN && !tags.iter().any(|t| &**t == tag)
                {
                    tags.push(tag.into());
                }
            }
        }
        tags
    }

    fn strip_tags(&self, headers: &mut HeaderMap) {
        let policy = self.policy.load();
        if !policy.forward_tag_fields {
            for name in &policy.tag_fields {
                headers.remove(name);
            }
        }
    }

    fn strip_targeted(&self, headers: &mut HeaderMap) {
        let policy = self.policy.load();
        if !policy.forward_targeted {
            for name in &policy.targeted {
                headers.remove(name);
            }
        }
    }

    /// Where a response is stored: under the URL's key, or, when it varies or the route keys on
    /// request headers or cookies, under a variant key recorded by a marker at the URL's key.
    /// `None` for `Vary: *`.
    fn storage_key(&self, facts: &RequestFacts, response: &HeaderMap) -> Option<String> {
        let fields = match VaryFields::parse(response.get_all(VARY)) {
            VaryFields::Any => return None,
            VaryFields::Fields(fields) => fields,
        };
        let primary = &facts.primary;
        if fields.is_empty() && facts.full.is_none() {
            return Some(primary.clone());
        }
        let existing = self
            .store
            .get_memory(primary)
            .and_then(|o| self.store.decoded(&o, |bytes| Meta::decode(bytes.clone())));
        let variants = match existing.as_deref() {
            Some(Meta::Variants(v)) if v.vary == fields => v.clone(),
            _ => {
                let variants = Variants {
                    vary: fields,
                    generation: self.generation.fetch_add(1, Ordering::Relaxed),
                };
                let marker = self
                    .store
                    .begin(primary, Meta::Variants(variants.clone()).encode())?;
                marker.finish().ok()?;
                variants
            }
        };
        let key = variant_key(facts, &variants)?;
        self.variant_index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .note(primary, variants.generation, &key);
        Some(key)
    }

    /// Validates a stale entry with the origin (RFC 9111 §4.3): a 304 freshens it, an error may
    /// be answered with it (stale-if-error), anything else replaces it.
    async fn revalidate(
        self: &Arc<Self>,
        facts: RequestFacts,
        route: &Arc<RouteCache>,
        fwd: Forward,
        entry: Entry,
    ) -> Response<Body> {
        let (response, request_time) = validate(&facts, &fwd, &entry).await;
        let now = SystemTime::now();
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED
            && not_modified_applies(response.headers(), &entry.selected())
        {
            let fresh = self
                .freshen(&facts, route, &entry, response.headers(), request_time, now)
                .await;
            let cache_status = CacheStatus::forward(Fwd::Stale).with_fwd_status(304);
            let freshness = freshness_of(&fresh, now);
            return respond(
                &facts.method,
                &facts.headers,
                &fresh,
                &cache_status.with_ttl(freshness.ttl_seconds()),
                now,
            )
            .unwrap_or_else(|| {
                error_response(
                    StatusCode::BAD_GATEWAY,
                    "cache-error",
                    "could not answer from the revalidated entry",
                )
            });
        }
        if status.is_server_error()
            && may_serve_stale_on_error(
                &freshness_of(&entry, now),
                route.policy.stale_if_error_grace,
            )
        {
            let cache_status = CacheStatus::forward(Fwd::Stale)
                .with_fwd_status(status.as_u16())
                .with_detail("stale-if-error");
            if let Some(response) =
                respond(&facts.method, &facts.headers, &entry, &cache_status, now)
            {
                return response;
            }
        }
        self.admit(
            &facts,
            route,
            &fwd,
            response,
            request_time,
            None,
            Fwd::Stale,
        )
        .await
    }

    /// Applies a 304 to a stored entry (RFC 9111 §3.2, §4.3.4) and stores the result.
    async fn freshen(
        &self,
        facts: &RequestFacts,
        route: &RouteCache,
        entry: &Entry,
        not_modified: &HeaderMap,
        request_time: SystemTime,
        now: SystemTime,
    ) -> Entry {
        let mut headers = freshen_headers(&entry.meta.headers, not_modified, &[]);
        let mut probe = Response::new(body::empty());
        *probe.status_mut() = entry.meta.status;
        *probe.headers_mut() = headers.clone();
        let decision = self.decide(facts, route, &probe, now);
        self.strip_targeted(&mut headers);
        let tags = self.tags_of(&headers);
        self.strip_tags(&mut headers);
        meta::drop_exchange_fields(&mut headers);
        let mut meta = (*entry.meta).clone();
        if !tags.is_empty() {
            meta.tags = tags;
        }
        meta.headers = headers;
        meta.response_time = now;
        meta.corrected_initial_age =
            AgeInputs::from_headers(not_modified, request_time, now).corrected_initial_age();
        if let Some(d) = decision {
            meta.freshness_lifetime = d.freshness_lifetime;
            meta.stale_while_revalidate = d.stale_while_revalidate;
            meta.stale_if_error = d
                .stale_if_error
                .unwrap_or(route.policy.stale_if_error_grace);
            meta.must_revalidate = d.must_revalidate;
            meta.no_cache = d.no_cache;
        }
        let fresh = Entry {
            object: entry.object.clone(),
            meta: Arc::new(meta.clone()),
            key: entry.key.clone(),
        };
        // Rewrite the object with its new head: at once from memory, off the async threads from disk.
        let (store, key, object) = (self.store.clone(), entry.key.clone(), entry.object.clone());
        let rewrite = move || {
            let Some(mut writer) = store.begin(&key, Meta::Response(Arc::new(meta)).encode())
            else {
                return;
            };
            for chunk in object.body() {
                match chunk {
                    Ok(chunk) if writer.push(&chunk).is_ok() => {}
                    _ => return,
                }
            }
            let _ = writer.finish();
        };
        // Done before answering, so the next request finds the freshened entry.
        if entry.object.is_in_memory() {
            rewrite();
        } else {
            let _ = tokio::task::spawn_blocking(rewrite).await;
        }
        fresh
    }

    /// stale-while-revalidate: at most one background refresh per stored key.
    fn refresh_in_background(
        self: &Arc<Self>,
        facts: &RequestFacts,
        route: &Arc<RouteCache>,
        fwd: &Forward,
        entry: &Entry,
    ) {
        {
            let mut refreshing = self.refreshing.lock().unwrap_or_else(|p| p.into_inner());
            if !refreshing.insert(entry.key.clone()) {
                return;
            }
        }
        let (cache, facts, route, fwd, entry) = (
            self.clone(),
            facts.clone(),
            route.clone(),
            fwd.clone(),
            entry.clone(),
        );
        tokio::spawn(async move {
            let key = entry.key.clone();
            let mut facts = facts;
            facts.method = Method::GET;
            let response = cache.revalidate(facts, &route, fwd, entry).await;
            // Drain so the refreshed body is stored in full.
            let _ = response.into_body().collect().await;
            cache
                .refreshing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        });
    }
}

enum Found {
    Hit(Entry),
    VaryMiss,
    Miss,
    /// Found, but a hard purge covers it.
    Purged,
}

/// Sends the validation request for a stale entry, returning the response and when it was
/// sent. Without validators this is a plain refetch (the stale entry still stands by for errors).
async fn validate(
    facts: &RequestFacts,
    fwd: &Forward,
    entry: &Entry,
) -> (Response<Body>, SystemTime) {
    let mut request = facts.origin_request();
    request
        .headers_mut()
        .extend(validation_headers(&[&entry.meta.headers]));
    let request_time = SystemTime::now();
    let response = fwd.send(request).await;
    if response.status() != StatusCode::NOT_MODIFIED
        || not_modified_applies(response.headers(), &entry.selected())
    {
        return (response, request_time);
    }
    // This 304 answers the cache's validators, not the client (whose own preconditions were not
    // sent), and freshens nothing: passing it on would answer an unconditional request with a
    // 304. Fetch the representation in full instead (RFC 9111 §4.3.3).
    let request_time = SystemTime::now();
    (fwd.send(facts.origin_request()).await, request_time)
}

fn freshness_of(entry: &Entry, now: SystemTime) -> StoredFreshness {
    let meta = &entry.meta;
    StoredFreshness {
        freshness_lifetime: meta.freshness_lifetime,
        current_age: entry.current_age(now),
        must_revalidate: meta.must_revalidate,
        no_cache: meta.no_cache,
        stale_while_revalidate: meta.stale_while_revalidate,
        stale_if_error: Some(meta.stale_if_error),
    }
}

/// The key of the entry a request selects under a marker: the marker's generation, the full
/// key and the Vary secondary key; `None` if it cannot be keyed.
fn variant_key(facts: &RequestFacts, variants: &Variants) -> Option<String> {
    let secondary = if variants.vary.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = variants.vary.iter().map(|n| n.as_str()).collect();
        let vary = HeaderValue::from_str(&names.join(", ")).ok()?;
        secondary_key(std::iter::once(&vary), &facts.headers)?
    };
    Some(format!(
        "{}\n{}\n{}\n{secondary}",
        facts.primary,
        variants.generation,
        facts.full()
    ))
}

/// An origin body of unknown length on its way to one client, copied into the store as it
/// passes; committed when it ends, abandoned if it fails, is cut short or outgrows the cache.
struct StoreAsItStreams {
    origin: Body,
    writer: Option<velox_cache::store::ObjectWriter>,
}

impl http_body::Body for StoreAsItStreams {
    type Data = bytes::Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.origin).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(writer)) = (frame.data_ref(), self.writer.as_mut()) {
                    if writer.push(data).is_err() {
                        self.writer = None;
                    }
                }
            }
            std::task::Poll::Ready(Some(Err(_))) => self.writer = None,
            std::task::Poll::Ready(None) => {
                if let Some(writer) = self.writer.take() {
                    if let Err(e) = writer.finish() {
                        tracing::debug!(error = %e, "cache store failed");
                    }
                }
            }
            std::task::Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        // Reported false until the end has been seen, so the end is polled and the object committed.
        self.writer.is_none() && self.origin.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.origin.size_hint()
    }
}

/// Streams the origin body to the shared fetch and the store; commits the object at the end.
/// The chunk that completes the body is held back until the object is queued for the disk, so
/// a fill faster than the disk writer is paced by its clients instead of losing disk copies.
async fn fill(
    mut origin: Body,
    mut writer: Option<velox_cache::store::ObjectWriter>,
    inflight: Arc<Inflight>,
    guard: Option<coalesce::LeaderGuard>,
) {
    let mut last = None;
    while let Some(frame) = origin.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    if let Some(w) = writer.as_mut() {
                        if w.push(&data).is_err() {
                            writer = None;
                        }
                    }
                    match writer.is_some() && origin.is_end_stream() {
                        true => last = Some(data),
                        false => inflight.push(data),
                    }
                }
            }
            Err(e) => {
                inflight.finish(Err(e.to_string()));
                return;
            }
        }
    }
    if let Some(writer) = writer {
        if let Err(e) = writer.finish_waiting().await {
            tracing::debug!(error = %e, "cache store failed");
        }
    }
    if let Some(data) = last {
        inflight.push(data);
    }
    inflight.finish(Ok(()));
    // Only now may new requests stop joining this fetch: the object is in the store.
    drop(guard);
}

/// Adds a parameter (e.g. `detail=purged`) to this cache's Cache-Status member, unless that
/// member already has one of the same name.
fn append_param(headers: &mut HeaderMap, param: &str) {
    let Some(current) = headers
        .get(crate::errors::CACHE_STATUS)
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    let name = param.split('=').next().unwrap_or(param);
    let last = current.rsplit(',').next().unwrap_or("");
    if last
        .split(';')
        .any(|p| p.trim().split('=').next() == Some(name))
    {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(&format!("{current}; {param}")) {
        headers.insert(crate::errors::CACHE_STATUS, value);
    }
}

/// Adds `key="..."` (an sf-string) to this cache's Cache-Status member, which is the last one.
fn append_key(headers: &mut HeaderMap, key: &str) {
    let Some(current) = headers
        .get(crate::errors::CACHE_STATUS)
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    let escaped = key.replace('\\', "\\\\").replace('"', "\\\"");
    if let Ok(value) = HeaderValue::from_str(&format!("{current}; key=\"{escaped}\"")) {
        headers.insert(crate::errors::CACHE_STATUS, value);
    }
}
