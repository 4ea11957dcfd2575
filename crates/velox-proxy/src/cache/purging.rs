//! Purging and inspecting the cache: the one purge path shared by `POST /api/purge` and the
//! edge `PURGE` method, and the stored entries of a URL for `GET /api/cache` (docs/PURGE.md).

use super::meta::Meta;
use super::serve::Entry;
use super::{freshness_of, Cache, PurgeOutcome, PurgeRequest, RouteCache};
use crate::body::{self, Body};
use crate::errors::error_response;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode, Uri};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use velox_cache::policy::{primary_key, KeyRules};
use velox_cache::purge::{millis, Subject, Target, Verdict};
use velox_config::Config;

/// The request field asking an edge `PURGE` to be soft (`Velox-Purge: soft`).
const VELOX_PURGE: http::HeaderName = http::HeaderName::from_static("velox-purge");
/// Request fields naming the tags an edge `PURGE` purges.
const PURGE_TAG_FIELDS: [&str; 2] = ["surrogate-key", "xkey"];
/// At most this many URLs, prefixes and tags in one purge.
pub const MAX_PURGE_ITEMS: usize = 10_000;
/// Tags longer than this are never stored, so never purged.
pub const MAX_PURGE_TAG_LEN: usize = 256;

/// The variant keys stored under each Vary marker since the start, so `GET /api/cache` can list
/// them (a marker records the Vary field names and a generation, not its variants). Bounded:
/// at most `MAX_VARIANTS_PER_URL` per URL, and `MAX_INDEX_BYTES` of keys in all (arbitrary URLs
/// are forgotten beyond it). In memory only, for debugging: never consulted to serve.
#[derive(Default)]
pub(super) struct VariantIndex {
    urls: HashMap<Box<str>, (u64, Vec<Box<str>>)>,
    bytes: usize,
}

const MAX_VARIANTS_PER_URL: usize = 64;
const MAX_INDEX_BYTES: usize = 8 << 20;

impl VariantIndex {
    /// Notes that `key` was stored under the marker of `primary` with `generation`.
    pub(super) fn note(&mut self, primary: &str, generation: u64, key: &str) {
        let (gen, keys) = match self.urls.get_mut(primary) {
            Some(slot) => slot,
            None => {
                self.bytes += primary.len();
                self.urls
                    .entry(primary.into())
                    .or_insert((generation, Vec::new()))
            }
        };
        if *gen != generation {
            self.bytes -= keys.iter().map(|k| k.len()).sum::<usize>();
            keys.clear();
            *gen = generation;
        }
        if keys.len() >= MAX_VARIANTS_PER_URL || keys.iter().any(|k| &**k == key) {
            return;
        }
        keys.push(key.into());
        self.bytes += key.len();
        while self.bytes > MAX_INDEX_BYTES {
            let Some(victim) = self.urls.keys().find(|k| &***k != primary).cloned() else {
                break;
            };
            if let Some((_, keys)) = self.urls.remove(&victim) {
                self.bytes -= victim.len() + keys.iter().map(|k| k.len()).sum::<usize>();
            }
        }
    }

    fn keys(&self, primary: &str, generation: u64) -> Vec<Box<str>> {
        match self.urls.get(primary) {
            Some((gen, keys)) if *gen == generation => keys.clone(),
            _ => Vec::new(),
        }
    }
}

/// The URL keys an absolute URL may be stored under with these query rules: either scheme.
fn keys_of_url(rules: &KeyRules, authority: &str, path_and_query: &str) -> Vec<String> {
    ["http", "https"]
        .iter()
        .map(|scheme| primary_key(scheme, authority, path_and_query, &HeaderMap::new(), rules))
        .collect()
}

/// The query rules of the route `url` goes to (none when no route or cache policy matches).
fn rules_for(config: &Config, url: &Uri) -> KeyRules {
    let authority = url.authority().map_or("", |a| a.as_str());
    config
        .match_route(Some(authority), url.path())
        .and_then(|i| {
            RouteCache::from_config(&config.routes[i].cache, config.cache.expose_key).ok()
        })
        .map(|route| route.url_key)
        .unwrap_or_default()
}

/// Whether `tag` is one a purge may name: 1-256 bytes, no spaces or commas.
pub fn valid_purge_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= MAX_PURGE_TAG_LEN
        && !tag.contains(|c: char| c == ',' || c.is_ascii_whitespace())
}

/// The JSON answer to a purge, the same from the admin API and the edge `PURGE` method.
pub fn purge_answer(
    request: &PurgeRequest,
    outcome: &PurgeOutcome,
    records: usize,
) -> serde_json::Value {
    serde_json::json!({
        "purged": {
            "urls": request.urls.iter().map(|u| u.to_string()).collect::<Vec<_>>(),
            "prefixes": request.prefixes,
            "tags": request.tags,
            "all": request.all,
        },
        "host": request.host,
        "soft": request.soft,
        "at": httpdate::fmt_http_date(outcome.at),
        "at_ms": millis(outcome.at),
        "removed": outcome.removed,
        "records": records,
        "took_us": outcome.took.as_micros() as u64,
    })
}

impl Cache {
    /// Records a purge (O(1) per target, whatever it covers) and, for hard purges, deletes
    /// what can be deleted at once: exact URLs, and everything on `all`.
    pub fn purge(&self, config: &Config, request: &PurgeRequest) -> std::io::Result<PurgeOutcome> {
        let started = Instant::now();
        let mut url_keys = Vec::new();
        for url in &request.urls {
            let authority = url.authority().map_or("", |a| a.as_str());
            let path_and_query = url.path_and_query().map_or("/", |p| p.as_str());
            url_keys.extend(keys_of_url(
                &rules_for(config, url),
                authority,
                path_and_query,
            ));
        }
        self.purge_keys(request, url_keys, started)
    }

    /// The purge itself, once URLs are turned into their keys.
    fn purge_keys(
        &self,
        request: &PurgeRequest,
        url_keys: Vec<String>,
        started: Instant,
    ) -> std::io::Result<PurgeOutcome> {
        let mut targets = Vec::with_capacity(url_keys.len() + request.tags.len() + 1);
        let mut removed = 0;
        for key in url_keys {
            if !request.soft && self.store.remove(&key) {
                removed += 1;
            }
            targets.push(Target::Url(key));
        }
        targets.extend(request.prefixes.iter().map(|prefix| Target::Prefix {
            host: request.host.clone(),
            prefix: prefix.clone(),
        }));
        targets.extend(request.tags.iter().cloned().map(Target::Tag));
        if request.all {
            targets.push(Target::All);
        }
        let at = self
            .purges
            .record(&targets, request.soft, SystemTime::now())?;
        // Requests from now on lead their own origin fetches rather than join older ones.
        self.purge_seq.fetch_add(1, Ordering::AcqRel);
        if request.all && !request.soft {
            // Frees the space at once; the epoch record already covers in-flight stores.
            self.store.clear();
        }
        let took = started.elapsed();
        self.count_purge(request);
        // Answer once the clock has left the record's millisecond: whatever starts after the
        // answer is stored strictly after the record, never tied with it (a tie counts as purged).
        let until = UNIX_EPOCH + Duration::from_millis(at + 1);
        if let Ok(left) = until.duration_since(SystemTime::now()) {
            std::thread::sleep(left.min(Duration::from_millis(2)));
        }
        Ok(PurgeOutcome {
            at: UNIX_EPOCH + Duration::from_millis(at),
            removed,
            took,
        })
    }

    fn count_purge(&self, request: &PurgeRequest) {
        let (observer, soft) = (&self.observer, request.soft);
        for url in &request.urls {
            observer.purged("url", &url.to_string(), soft);
        }
        for prefix in &request.prefixes {
            let target = format!("{}{prefix}", request.host.as_deref().unwrap_or("*"));
            observer.purged("prefix", &target, soft);
        }
        for tag in &request.tags {
            observer.purged("tag", tag, soft);
        }
        if request.all {
            observer.purged("all", "*", soft);
        }
        tracing::info!(
            urls = request.urls.len(),
            prefixes = request.prefixes.len(),
            tags = request.tags.len(),
            all = request.all,
            soft = request.soft,
            "purge recorded"
        );
    }

    /// The edge `PURGE` method (Varnish-style): off unless `[cache] purge_method`, and only from
    /// `purge_allow`. Purges the request's URL (every variant), or the tags named in its
    /// `Surrogate-Key` / `xkey` fields; `Velox-Purge: soft` makes it soft.
    pub(super) fn purge_method<B>(
        &self,
        req: &Request<B>,
        route: &RouteCache,
        scheme: &str,
        authority: &str,
        path_and_query: &str,
        peer: std::net::IpAddr,
    ) -> Response<Body> {
        let started = Instant::now();
        let policy = self.policy.load();
        if !policy.purge_method {
            let mut response = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "purge-disabled",
                "the PURGE method is disabled ([cache] purge_method = false)",
            );
            response.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
            return response;
        }
        if !policy.purge_allow.iter().any(|net| net.contains(peer)) {
            return error_response(
                StatusCode::FORBIDDEN,
                "purge-forbidden",
                "this client may not PURGE ([cache] purge_allow)",
            );
        }
        let mut tags = Vec::new();
        let values = PURGE_TAG_FIELDS
            .iter()
            .flat_map(|name| req.headers().get_all(*name));
        for value in values {
            let Ok(text) = value.to_str() else {
                return error_response(StatusCode::BAD_REQUEST, "bad-purge", "tags must be text");
            };
            for tag in text.split(|c: char| c == ',' || c.is_ascii_whitespace()) {
                if tag.is_empty() || tags.iter().any(|t| t == tag) {
                    continue;
                }
                if !valid_purge_tag(tag) || tags.len() >= MAX_PURGE_ITEMS {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        "bad-purge",
                        "tags are 1-256 bytes each, at most 10000",
                    );
                }
                tags.push(tag.to_owned());
            }
        }
        let soft = req
            .headers()
            .get(VELOX_PURGE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"soft"));
        let mut request = PurgeRequest {
            soft,
            ..PurgeRequest::default()
        };
        let mut url_keys = Vec::new();
        if tags.is_empty() {
            let Ok(url) = format!("{scheme}://{authority}{path_and_query}").parse::<Uri>() else {
                return error_response(StatusCode::BAD_REQUEST, "bad-purge", "not a valid URL");
            };
            url_keys = keys_of_url(&route.url_key, authority, path_and_query);
            request.urls.push(url);
        }
        request.tags = tags;
        let outcome = match self.purge_keys(&request, url_keys, started) {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(error = %e, "purge applied in memory but not persisted");
                return error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "purge-not-persisted",
                    &format!("the purge applies now but could not be persisted: {e}"),
                );
            }
        };
        let answer = purge_answer(&request, &outcome, self.purge_records());
        let mut response = Response::new(body::full(format!("{answer}\n")));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    /// The entries stored for an absolute URL (`GET /api/cache`): the plain entry, or each
    /// variant reachable from its Vary marker that was stored since the start (see
    /// [`VariantIndex`]). Looking at a disk entry may promote it to memory, as a hit would.
    pub async fn entries(&self, config: &Config, url: &Uri) -> Vec<serde_json::Value> {
        let scheme = url.scheme_str().unwrap_or("http");
        let authority = url.authority().map_or("", |a| a.as_str());
        let path_and_query = url.path_and_query().map_or("/", |p| p.as_str());
        let primary = primary_key(
            scheme,
            authority,
            path_and_query,
            &HeaderMap::new(),
            &rules_for(config, url),
        );
        let describe = |tier: &str, entry: Entry, vary: &[http::HeaderName]| {
            let now = SystemTime::now();
            let meta = &entry.meta;
            let purge = match self.purges.check(&Subject {
                stored_at: millis(meta.response_time),
                tags: &meta.tags,
                host: authority,
                path: path_and_query,
                url_key: &primary,
            }) {
                Verdict::Valid => "none",
                Verdict::Soft(_) => "soft",
                Verdict::Hard => "hard",
            };
            serde_json::json!({
                "key": entry.key,
                "tier": tier,
                "status": meta.status.as_u16(),
                "size": entry.object.len(),
                "stored": httpdate::fmt_http_date(meta.response_time),
                "stored_ms": millis(meta.response_time),
                "age_s": entry.current_age(now).as_secs(),
                "ttl_s": freshness_of(&entry, now).ttl_seconds(),
                "tags": meta.tags,
                "vary": vary.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
                "purged": purge,
            })
        };
        let mut out = Vec::new();
        let Some((tier, object, meta)) = self.peek(&primary).await else {
            return out;
        };
        match &*meta {
            Meta::Response(meta) => {
                let (meta, key) = (meta.clone(), primary.clone());
                out.push(describe(tier, Entry { object, meta, key }, &[]));
            }
            Meta::Variants(variants) => {
                let keys = self
                    .variant_index
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .keys(&primary, variants.generation);
                for key in keys {
                    if let Some((tier, object, found)) = self.peek(&key).await {
                        if let Meta::Response(meta) = &*found {
                            let (meta, key) = (meta.clone(), key.to_string());
                            out.push(describe(tier, Entry { object, meta, key }, &variants.vary));
                        }
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_index_is_bounded_and_follows_generations() {
        let mut index = VariantIndex::default();
        for i in 0..100 {
            index.note("u", 1, &format!("u\n1\nk{i}"));
        }
        index.note("u", 1, "u\n1\nk0");
        assert_eq!(index.keys("u", 1).len(), MAX_VARIANTS_PER_URL);
        assert!(index.keys("u", 2).is_empty());
        index.note("u", 2, "u\n2\nk");
        assert_eq!(index.keys("u", 2).len(), 1);
        assert!(index.keys("u", 1).is_empty());
        let long = "x".repeat(1 << 20);
        for i in 0..20 {
            index.note(&format!("{i}"), 1, &long);
        }
        assert!(index.bytes <= MAX_INDEX_BYTES);
        assert_eq!(index.keys("19", 1).len(), 1, "the newest is kept");
    }
}
