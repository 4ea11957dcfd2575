//! May a response be stored, and for how long? (RFC 9111 §3, §3.5, §4.2; RFC 5861)
//!
//! Velox is a *shared* cache: `private` and `s-maxage` apply, `Authorization`
//! restricts storing (§3.5).

use super::cache_control::{CacheControl, Qualified, ResponseDirectives};
use super::freshness::{explicit_lifetime, heuristic_lifetime, is_heuristically_cacheable};
use http::header::{HeaderMap, ETAG, LAST_MODIFIED, SET_COOKIE, VARY};
use http::{Method, StatusCode};
use std::time::{Duration, SystemTime};

/// How a route treats the origin's freshness information.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TtlMode {
    /// Follow the origin (RFC 9111); route defaults fill gaps.
    #[default]
    Respect,
    /// Use this lifetime for every storable response (safety rules still apply:
    /// `no-store`, `private`, `Authorization`, `Set-Cookie`, `Vary: *`).
    Override(Duration),
    /// Store only responses with explicit freshness (`s-maxage`, `max-age`, `Expires`).
    OptIn,
}

/// A route's caching policy.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutePolicy {
    /// TTL mode.
    pub ttl_mode: TtlMode,
    /// Lifetime for heuristically cacheable responses without explicit freshness
    /// (`Respect` mode); takes precedence over the heuristic.
    pub default_ttl: Option<Duration>,
    /// Per-status lifetimes. In `Respect` mode they apply when the origin gave no
    /// explicit freshness; in `Override` mode they replace the override lifetime. They
    /// also make other statuses (e.g. 500) storable.
    pub status_ttls: Vec<(u16, Duration)>,
    /// Store responses carrying `Set-Cookie`.
    pub store_set_cookie: bool,
    /// Store 206 responses (off: the store holds complete representations only).
    pub store_partial: bool,
    /// Heuristic fraction of `Date − Last-Modified` (§4.2.2), typically 0.1.
    pub heuristic_fraction: f64,
    /// Upper bound of the heuristic lifetime.
    pub heuristic_max: Duration,
    /// Stale-if-error grace when the origin gives no `stale-if-error` (used at serve
    /// time, see [`super::freshness::may_serve_stale_on_error`]; also makes a response
    /// without freshness or validators worth storing).
    pub stale_if_error_grace: Duration,
}

impl Default for RoutePolicy {
    fn default() -> Self {
        RoutePolicy {
            ttl_mode: TtlMode::Respect,
            default_ttl: None,
            status_ttls: Vec::new(),
            store_set_cookie: false,
            store_partial: false,
            heuristic_fraction: 0.1,
            heuristic_max: Duration::from_secs(86_400),
            stale_if_error_grace: Duration::ZERO,
        }
    }
}

/// Where the freshness lifetime came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifetimeSource {
    /// `s-maxage`, `max-age` or `Expires` (§4.2.1).
    Explicit,
    /// [`RoutePolicy::status_ttls`].
    StatusTtl,
    /// [`RoutePolicy::default_ttl`].
    DefaultTtl,
    /// Heuristic (§4.2.2).
    Heuristic,
    /// [`TtlMode::Override`].
    Override,
    /// None: stored with a zero lifetime (usable only after validation or on error).
    None,
}

/// What to record with a stored response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreDecision {
    /// Freshness lifetime.
    pub freshness_lifetime: Duration,
    /// Its source.
    pub lifetime_source: LifetimeSource,
    /// Stale-while-revalidate window (zero: none, or forbidden).
    pub stale_while_revalidate: Duration,
    /// Stale-if-error window: `None` = origin gave none (route grace applies at serve
    /// time); `Some(ZERO)` = forbidden (no-cache, must-revalidate, proxy-revalidate,
    /// or `s-maxage` without an explicit window).
    pub stale_if_error: Option<Duration>,
    /// `must-revalidate`, `proxy-revalidate`, or `s-maxage` (§5.2.2.10 makes it imply
    /// proxy-revalidate for a shared cache).
    pub must_revalidate: bool,
    /// Response `no-cache` (bare or qualified; a qualified one is treated as bare,
    /// §5.2.2.4 allows it): store, but validate before every use.
    pub no_cache: bool,
    /// Field names (lowercase) to remove before storing: `private="..."` (§5.2.2.7).
    pub strip_fields: Vec<String>,
    /// The response was to HEAD: it must never answer a GET (RFC 9110 §9.3.2).
    pub from_head: bool,
}

/// The storability verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storability {
    /// Store it.
    Store(StoreDecision),
    /// Do not store it; the reason is for logs and Cache-Status `detail`.
    DontStore(&'static str),
}

/// The request/response facts storability looks at.
#[derive(Debug, Clone, Copy)]
pub struct StoreInput<'a> {
    /// Request method.
    pub method: &'a Method,
    /// Request directives ([`super::cache_control::request_directives`]).
    pub request: &'a CacheControl,
    /// The request carried `Authorization`.
    pub has_authorization: bool,
    /// Response status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: &'a HeaderMap,
    /// Response directives after targeted-field selection.
    pub directives: &'a ResponseDirectives,
}

/// Status codes whose caching requirements Velox implements (for `must-understand`,
/// §5.2.2.3).
fn understood(status: StatusCode, policy: &RoutePolicy) -> bool {
    match status.as_u16() {
        206 => policy.store_partial,
        200 | 203 | 204 | 300 | 301 | 302 | 303 | 307 | 308 | 404 | 405 | 410 | 414 | 501 => true,
        _ => false,
    }
}

/// Decides whether to store a response (RFC 9111 §3) and with what freshness.
///
/// `now` is the time the response was received; it stands in for a missing or
/// invalid `Date` (RFC 9110 §6.6.1).
///
/// Checked in order: method (GET/HEAD), final status (304 and 1xx never stored; 206
/// only with `store_partial`), request `no-store` (§5.2.1.5), response `no-store`
/// (ignored under `must-understand` for an understood status, §5.2.2.3), `private`
/// (§5.2.2.7), `Authorization` (§3.5), `Vary: *` (§4.1), `Set-Cookie` (policy),
/// then the lifetime by TTL mode, and finally whether the entry could ever be reused.
pub fn storability(input: &StoreInput<'_>, policy: &RoutePolicy, now: SystemTime) -> Storability {
    use Storability::DontStore;
    let cc = &input.directives.cc;
    let status = input.status;

    if input.method != Method::GET && input.method != Method::HEAD {
        return DontStore("method not cacheable");
    }
    if status.is_informational() {
        return DontStore("non-final status");
    }
    if status == StatusCode::NOT_MODIFIED {
        return DontStore("304 updates a stored response, it is not stored");
    }
    if status == StatusCode::PARTIAL_CONTENT && !policy.store_partial {
        return DontStore("partial content not stored");
    }
    if input.request.no_store {
        return DontStore("request no-store");
    }
    if cc.must_understand {
        if !understood(status, policy) {
            return DontStore("must-understand with a status not understood");
        }
    } else if cc.no_store {
        return DontStore("no-store");
    }
    let strip_fields = match &cc.private {
        Qualified::All => return DontStore("private"),
        Qualified::Fields(f) => f.clone(),
        Qualified::Absent => Vec::new(),
    };
    if input.has_authorization && !(cc.public || cc.s_maxage.is_present() || cc.must_revalidate) {
        return DontStore("authorization without public, s-maxage or must-revalidate");
    }
    if vary_star(input.headers) {
        return DontStore("vary *");
    }
    if input.headers.contains_key(SET_COOKIE) && !policy.store_set_cookie {
        return DontStore("set-cookie");
    }

    let explicit = explicit_lifetime(input.directives, input.headers, now);
    let status_ttl = policy
        .status_ttls
        .iter()
        .find(|(s, _)| *s == status.as_u16())
        .map(|(_, d)| *d);
    let default_cacheable = is_heuristically_cacheable(status) || cc.public;

    let (freshness_lifetime, lifetime_source) = match policy.ttl_mode {
        TtlMode::OptIn => match explicit {
            Some(l) => (l, LifetimeSource::Explicit),
            None => return DontStore("no explicit freshness (opt-in route)"),
        },
        TtlMode::Override(ttl) => {
            if let Some(l) = status_ttl {
                (l, LifetimeSource::StatusTtl)
            } else if default_cacheable {
                (ttl, LifetimeSource::Override)
            } else if let Some(l) = explicit {
                (l, LifetimeSource::Explicit)
            } else {
                return DontStore("status not cacheable without explicit freshness");
            }
        }
        TtlMode::Respect => {
            if let Some(l) = explicit {
                (l, LifetimeSource::Explicit)
            } else if let Some(l) = status_ttl {
                (l, LifetimeSource::StatusTtl)
            } else if !default_cacheable {
                return DontStore("status not cacheable without explicit freshness");
            } else if let Some(l) = policy.default_ttl {
                (l, LifetimeSource::DefaultTtl)
            } else if let Some(l) = heuristic_lifetime(
                input.headers,
                now,
                policy.heuristic_fraction,
                policy.heuristic_max,
            ) {
                (l, LifetimeSource::Heuristic)
            } else {
                (Duration::ZERO, LifetimeSource::None)
            }
        }
    };

    let no_cache = cc.no_cache.is_present();
    let explicit_revalidate = cc.must_revalidate || cc.proxy_revalidate;
    let must_revalidate = explicit_revalidate || cc.s_maxage.is_present();
    let swr = cc
        .stale_while_revalidate
        .duration()
        .unwrap_or(Duration::ZERO);
    let sie = cc.stale_if_error.duration();
    let (stale_while_revalidate, stale_if_error) = if no_cache || explicit_revalidate {
        (Duration::ZERO, Some(Duration::ZERO))
    } else if must_revalidate {
        // s-maxage only: explicit RFC 5861 windows still apply, the route grace does not.
        (swr, Some(sie.unwrap_or(Duration::ZERO)))
    } else {
        (swr, sie)
    };

    let has_validator =
        input.headers.contains_key(ETAG) || input.headers.contains_key(LAST_MODIFIED);
    let error_window = stale_if_error.unwrap_or(policy.stale_if_error_grace);
    let reusable = has_validator
        || (!no_cache
            && (!freshness_lifetime.is_zero()
                || !stale_while_revalidate.is_zero()
                || !error_window.is_zero()));
    if !reusable {
        return DontStore("never reusable: no freshness and no validator");
    }

    Storability::Store(StoreDecision {
        freshness_lifetime,
        lifetime_source,
        stale_while_revalidate,
        stale_if_error,
        must_revalidate,
        no_cache,
        strip_fields,
        from_head: input.method == Method::HEAD,
    })
}

/// Whether `Vary` contains `*` (RFC 9111 §4.1: never matches).
pub fn vary_star(headers: &HeaderMap) -> bool {
    headers.get_all(VARY).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|m| m.trim_ascii() == b"*")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::cache_control::select_response_directives;
    use http::{HeaderName, HeaderValue};

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    struct Case {
        method: Method,
        request: CacheControl,
        auth: bool,
        status: u16,
        headers: HeaderMap,
        policy: RoutePolicy,
    }

    impl Case {
        fn new(status: u16, pairs: &[(&str, &str)]) -> Case {
            let mut headers = HeaderMap::new();
            for (k, v) in pairs {
                headers.append(
                    HeaderName::from_bytes(k.as_bytes()).expect("name"),
                    HeaderValue::from_str(v).expect("value"),
                );
            }
            Case {
                method: Method::GET,
                request: CacheControl::default(),
                auth: false,
                status,
                headers,
                policy: RoutePolicy::default(),
            }
        }
        fn run(&self) -> Storability {
            let targets = [HeaderName::from_static("cdn-cache-control")];
            let directives = select_response_directives(&self.headers, &targets);
            let input = StoreInput {
                method: &self.method,
                request: &self.request,
                has_authorization: self.auth,
                status: StatusCode::from_u16(self.status).expect("status"),
                headers: &self.headers,
                directives: &directives,
            };
            storability(&input, &self.policy, t(0))
        }
        fn store(&self) -> StoreDecision {
            match self.run() {
                Storability::Store(d) => d,
                Storability::DontStore(r) => panic!("expected Store, got DontStore({r})"),
            }
        }
        fn refused(&self) -> &'static str {
            match self.run() {
                Storability::DontStore(r) => r,
                Storability::Store(d) => panic!("expected DontStore, got {d:?}"),
            }
        }
    }

    #[test]
    fn rfc9111_3_get_with_max_age_stored() {
        let d = Case::new(200, &[("cache-control", "max-age=60")]).store();
        assert_eq!(d.freshness_lifetime, secs(60));
        assert_eq!(d.lifetime_source, LifetimeSource::Explicit);
        assert!(!d.must_revalidate && !d.no_cache && !d.from_head);
    }

    #[test]
    fn rfc9111_3_head_stored_but_marked() {
        let mut c = Case::new(200, &[("cache-control", "max-age=60")]);
        c.method = Method::HEAD;
        assert!(c.store().from_head);
    }

    #[test]
    fn rfc9111_3_unsafe_and_other_methods_not_stored() {
        for m in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
            let mut c = Case::new(200, &[("cache-control", "max-age=60")]);
            c.method = m;
            assert_eq!(c.refused(), "method not cacheable");
        }
    }

    #[test]
    fn rfc9111_3_non_final_and_304_not_stored() {
        assert_eq!(
            Case::new(103, &[("cache-control", "max-age=60")]).refused(),
            "non-final status"
        );
        assert!(Case::new(304, &[("cache-control", "max-age=60")])
            .refused()
            .starts_with("304"));
    }

    #[test]
    fn rfc9111_3_default_cacheable_statuses_without_freshness() {
        for s in [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501] {
            let d = Case::new(s, &[("etag", "\"x\"")]).store();
            assert_eq!(d.freshness_lifetime, Duration::ZERO, "{s}");
            assert_eq!(d.lifetime_source, LifetimeSource::None);
        }
    }

    #[test]
    fn rfc9111_3_other_statuses_need_explicit_freshness() {
        for s in [201, 302, 307, 400, 403, 500, 503] {
            assert_eq!(
                Case::new(s, &[("etag", "\"x\"")]).refused(),
                "status not cacheable without explicit freshness",
                "{s}"
            );
            let d = Case::new(s, &[("cache-control", "max-age=5")]).store();
            assert_eq!(d.freshness_lifetime, secs(5));
        }
    }

    #[test]
    fn rfc9111_3_expires_makes_other_status_storable() {
        let date = httpdate::fmt_http_date(t(0));
        let exp = httpdate::fmt_http_date(t(30));
        let d = Case::new(302, &[("date", &date), ("expires", &exp)]).store();
        assert_eq!(d.freshness_lifetime, secs(30));
    }

    #[test]
    fn rfc9111_3_public_makes_other_status_storable() {
        let d = Case::new(302, &[("cache-control", "public"), ("etag", "\"a\"")]).store();
        assert_eq!(d.freshness_lifetime, Duration::ZERO);
    }

    #[test]
    fn rfc9111_3_4_partial_content_only_when_allowed() {
        let mut c = Case::new(206, &[("cache-control", "max-age=60")]);
        assert_eq!(c.refused(), "partial content not stored");
        c.policy.store_partial = true;
        assert_eq!(c.store().freshness_lifetime, secs(60));
    }

    #[test]
    fn rfc9111_5_2_2_5_no_store() {
        assert_eq!(
            Case::new(200, &[("cache-control", "max-age=60, no-store")]).refused(),
            "no-store"
        );
        assert_eq!(
            Case::new(200, &[("cache-control", "NO-STORE")]).refused(),
            "no-store"
        );
    }

    #[test]
    fn rfc9111_5_2_1_5_request_no_store() {
        let mut c = Case::new(200, &[("cache-control", "max-age=60")]);
        c.request.no_store = true;
        assert_eq!(c.refused(), "request no-store");
    }

    #[test]
    fn rfc9111_5_2_2_3_must_understand_overrides_no_store_for_known_status() {
        let d = Case::new(
            200,
            &[("cache-control", "max-age=60, no-store, must-understand")],
        )
        .store();
        assert_eq!(d.freshness_lifetime, secs(60));
        assert_eq!(
            Case::new(
                299,
                &[("cache-control", "max-age=60, no-store, must-understand")]
            )
            .refused(),
            "must-understand with a status not understood"
        );
    }

    #[test]
    fn rfc9111_5_2_2_7_private_never_stored_by_shared_cache() {
        assert_eq!(
            Case::new(200, &[("cache-control", "private, max-age=60")]).refused(),
            "private"
        );
    }

    #[test]
    fn rfc9111_5_2_2_7_qualified_private_strips_fields() {
        let d = Case::new(
            200,
            &[(
                "cache-control",
                "private=\"x-user, set-cookie\", max-age=60",
            )],
        )
        .store();
        assert_eq!(
            d.strip_fields,
            vec!["x-user".to_string(), "set-cookie".to_string()]
        );
    }

    #[test]
    fn rfc9111_3_5_authorization_requires_explicit_permission() {
        let mut c = Case::new(200, &[("cache-control", "max-age=60")]);
        c.auth = true;
        assert!(c.refused().starts_with("authorization"));
        for cc in [
            "max-age=60, public",
            "s-maxage=60",
            "max-age=60, must-revalidate",
        ] {
            let mut c = Case::new(200, &[("cache-control", cc)]);
            c.auth = true;
            c.store();
        }
    }

    #[test]
    fn rfc9111_4_1_vary_star_not_stored() {
        assert_eq!(
            Case::new(200, &[("cache-control", "max-age=60"), ("vary", "*")]).refused(),
            "vary *"
        );
        assert_eq!(
            Case::new(
                200,
                &[("cache-control", "max-age=60"), ("vary", "accept, * ")]
            )
            .refused(),
            "vary *"
        );
        Case::new(200, &[("cache-control", "max-age=60"), ("vary", "accept")]).store();
    }

    #[test]
    fn rfc9111_3_set_cookie_policy() {
        let mut c = Case::new(
            200,
            &[("cache-control", "max-age=60"), ("set-cookie", "a=b")],
        );
        assert_eq!(c.refused(), "set-cookie");
        c.policy.store_set_cookie = true;
        c.store();
    }

    #[test]
    fn rfc9111_5_2_2_4_no_cache_stored_but_revalidated() {
        let d = Case::new(
            200,
            &[("cache-control", "no-cache, max-age=60"), ("etag", "\"v\"")],
        )
        .store();
        assert!(d.no_cache);
        assert_eq!(d.stale_if_error, Some(Duration::ZERO));
        let d = Case::new(
            200,
            &[("cache-control", "no-cache=\"x-a\""), ("etag", "\"v\"")],
        )
        .store();
        assert!(d.no_cache);
    }

    #[test]
    fn rfc9111_5_2_2_4_no_cache_without_validator_not_stored() {
        assert!(Case::new(200, &[("cache-control", "no-cache, max-age=60")])
            .refused()
            .starts_with("never reusable"));
    }

    #[test]
    fn rfc9111_4_2_2_heuristic_for_default_cacheable() {
        let date = httpdate::fmt_http_date(t(10_000));
        let lm = httpdate::fmt_http_date(t(0));
        let d = Case::new(200, &[("date", &date), ("last-modified", &lm)]).store();
        assert_eq!(d.freshness_lifetime, secs(1_000));
        assert_eq!(d.lifetime_source, LifetimeSource::Heuristic);
    }

    #[test]
    fn rfc9111_4_2_2_no_heuristic_for_other_status() {
        let date = httpdate::fmt_http_date(t(10_000));
        let lm = httpdate::fmt_http_date(t(0));
        assert_eq!(
            Case::new(302, &[("date", &date), ("last-modified", &lm)]).refused(),
            "status not cacheable without explicit freshness"
        );
    }

    #[test]
    fn rfc9111_4_2_2_public_allows_heuristic() {
        let date = httpdate::fmt_http_date(t(10_000));
        let lm = httpdate::fmt_http_date(t(0));
        let d = Case::new(
            302,
            &[
                ("date", &date),
                ("last-modified", &lm),
                ("cache-control", "public"),
            ],
        )
        .store();
        assert_eq!(d.lifetime_source, LifetimeSource::Heuristic);
    }

    #[test]
    fn rfc9111_4_2_2_default_ttl_beats_heuristic() {
        let date = httpdate::fmt_http_date(t(10_000));
        let lm = httpdate::fmt_http_date(t(0));
        let mut c = Case::new(200, &[("date", &date), ("last-modified", &lm)]);
        c.policy.default_ttl = Some(secs(42));
        let d = c.store();
        assert_eq!(d.freshness_lifetime, secs(42));
        assert_eq!(d.lifetime_source, LifetimeSource::DefaultTtl);
    }

    #[test]
    fn rfc9111_4_2_1_explicit_beats_default_ttl() {
        let mut c = Case::new(200, &[("cache-control", "max-age=5")]);
        c.policy.default_ttl = Some(secs(42));
        assert_eq!(c.store().freshness_lifetime, secs(5));
    }

    #[test]
    fn rfc9111_3_default_ttl_not_for_uncacheable_status() {
        let mut c = Case::new(500, &[]);
        c.policy.default_ttl = Some(secs(42));
        assert_eq!(
            c.refused(),
            "status not cacheable without explicit freshness"
        );
    }

    #[test]
    fn rfc9111_3_status_ttl_applies_without_explicit_freshness() {
        let mut c = Case::new(404, &[]);
        c.policy.status_ttls = vec![(404, secs(30))];
        let d = c.store();
        assert_eq!(d.freshness_lifetime, secs(30));
        assert_eq!(d.lifetime_source, LifetimeSource::StatusTtl);
        // makes a 500 storable (operator extension, §5.2.3 spirit)
        let mut c = Case::new(500, &[]);
        c.policy.status_ttls = vec![(500, secs(5))];
        assert_eq!(c.store().freshness_lifetime, secs(5));
        // explicit freshness wins in Respect mode
        let mut c = Case::new(404, &[("cache-control", "max-age=7")]);
        c.policy.status_ttls = vec![(404, secs(30))];
        assert_eq!(c.store().freshness_lifetime, secs(7));
    }

    #[test]
    fn rfc9111_3_override_mode() {
        let mut c = Case::new(200, &[("cache-control", "max-age=5")]);
        c.policy.ttl_mode = TtlMode::Override(secs(600));
        let d = c.store();
        assert_eq!(d.freshness_lifetime, secs(600));
        assert_eq!(d.lifetime_source, LifetimeSource::Override);
        // status ttl wins over the override
        let mut c = Case::new(404, &[]);
        c.policy.ttl_mode = TtlMode::Override(secs(600));
        c.policy.status_ttls = vec![(404, secs(10))];
        assert_eq!(c.store().freshness_lifetime, secs(10));
        // safety rules still apply
        let mut c = Case::new(200, &[("cache-control", "no-store")]);
        c.policy.ttl_mode = TtlMode::Override(secs(600));
        assert_eq!(c.refused(), "no-store");
        // a 500 is not made storable by the override
        let mut c = Case::new(500, &[]);
        c.policy.ttl_mode = TtlMode::Override(secs(600));
        assert!(c.refused().starts_with("status"));
    }

    #[test]
    fn rfc9111_3_opt_in_mode() {
        let mut c = Case::new(200, &[("etag", "\"a\"")]);
        c.policy.ttl_mode = TtlMode::OptIn;
        c.policy.default_ttl = Some(secs(60));
        assert_eq!(c.refused(), "no explicit freshness (opt-in route)");
        let mut c = Case::new(200, &[("cache-control", "s-maxage=9")]);
        c.policy.ttl_mode = TtlMode::OptIn;
        assert_eq!(c.store().freshness_lifetime, secs(9));
    }

    #[test]
    fn rfc9111_5_2_2_10_s_maxage_implies_proxy_revalidate() {
        let d = Case::new(200, &[("cache-control", "s-maxage=60")]).store();
        assert!(d.must_revalidate);
        // no route grace on error
        assert_eq!(d.stale_if_error, Some(Duration::ZERO));
    }

    #[test]
    fn rfc5861_s_maxage_keeps_explicit_stale_windows() {
        let d = Case::new(
            200,
            &[(
                "cache-control",
                "s-maxage=60, stale-while-revalidate=30, stale-if-error=300",
            )],
        )
        .store();
        assert_eq!(d.stale_while_revalidate, secs(30));
        assert_eq!(d.stale_if_error, Some(secs(300)));
    }

    #[test]
    fn rfc9111_5_2_2_2_must_revalidate_forbids_stale_windows() {
        for cc in [
            "max-age=60, must-revalidate, stale-while-revalidate=30, stale-if-error=30",
            "max-age=60, proxy-revalidate, stale-while-revalidate=30, stale-if-error=30",
        ] {
            let d = Case::new(200, &[("cache-control", cc)]).store();
            assert!(d.must_revalidate);
            assert_eq!(d.stale_while_revalidate, Duration::ZERO);
            assert_eq!(d.stale_if_error, Some(Duration::ZERO));
        }
    }

    #[test]
    fn rfc5861_windows_recorded() {
        let d = Case::new(
            200,
            &[(
                "cache-control",
                "max-age=60, stale-while-revalidate=30, stale-if-error=300",
            )],
        )
        .store();
        assert_eq!(d.stale_while_revalidate, secs(30));
        assert_eq!(d.stale_if_error, Some(secs(300)));
        let d = Case::new(200, &[("cache-control", "max-age=60")]).store();
        assert_eq!(d.stale_if_error, None);
    }

    #[test]
    fn rfc9111_4_2_1_invalid_max_age_stored_stale_only_if_reusable() {
        assert!(Case::new(200, &[("cache-control", "max-age=abc")])
            .refused()
            .starts_with("never reusable"));
        let d = Case::new(200, &[("cache-control", "max-age=abc"), ("etag", "\"a\"")]).store();
        assert_eq!(d.freshness_lifetime, Duration::ZERO);
        assert_eq!(d.lifetime_source, LifetimeSource::Explicit);
    }

    #[test]
    fn rfc9111_4_2_4_grace_makes_unvalidated_entry_worth_storing() {
        let mut c = Case::new(200, &[]);
        assert!(c.refused().starts_with("never reusable"));
        c.policy.stale_if_error_grace = secs(60);
        c.store();
    }

    #[test]
    fn rfc9213_2_2_targeted_no_store_wins() {
        assert_eq!(
            Case::new(
                200,
                &[
                    ("cache-control", "max-age=10000"),
                    ("cdn-cache-control", "no-store")
                ]
            )
            .refused(),
            "no-store"
        );
    }

    #[test]
    fn rfc9213_2_2_targeted_private_wins() {
        assert_eq!(
            Case::new(
                200,
                &[
                    ("cache-control", "max-age=10000"),
                    ("cdn-cache-control", "private")
                ]
            )
            .refused(),
            "private"
        );
    }

    #[test]
    fn rfc9213_2_2_targeted_max_age_zero_ignores_future_expires() {
        let date = httpdate::fmt_http_date(t(0));
        let exp = httpdate::fmt_http_date(t(10_000));
        let d = Case::new(
            200,
            &[
                ("cdn-cache-control", "max-age=0"),
                ("expires", &exp),
                ("date", &date),
                ("etag", "\"a\""),
            ],
        )
        .store();
        assert_eq!(d.freshness_lifetime, Duration::ZERO);
    }
}
