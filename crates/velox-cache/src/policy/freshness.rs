//! Freshness (RFC 9111 §4.2): lifetime, age and the decision to serve a stored
//! response, revalidate it, or serve it stale.
//!
//! All functions are pure: the caller passes the clock readings.

use super::cache_control::{parse_delta_str, CacheControl, Delta, MaxStale, ResponseDirectives};
use http::header::{HeaderMap, HeaderValue, AGE, DATE, EXPIRES, LAST_MODIFIED};
use http::StatusCode;
use std::time::{Duration, SystemTime};

/// Parses an HTTP-date (IMF-fixdate, RFC 850 or asctime; RFC 9110 §5.6.7).
///
/// §5.6.7 encourages recipients to be robust, so two slips that leave the instant unambiguous
/// are tolerated: names in the wrong case (`THU`, `AUG`, `gMT`) and a day name that does not
/// match the date (the date decides). The layout itself stays strict: another zone, a
/// two-digit year outside RFC 850, missing commas or extra spaces are still invalid.
pub fn parse_http_date(value: &HeaderValue) -> Option<SystemTime> {
    let s = value.to_str().ok()?.trim();
    httpdate::parse_http_date(s)
        .ok()
        .or_else(|| parse_sloppy_date(s))
}

const DAY_NAMES: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// The slow path of [`parse_http_date`]: canonical case, then each day name in turn.
fn parse_sloppy_date(s: &str) -> Option<SystemTime> {
    let canonical = canonical_case(s)?;
    let name_end = canonical.find([' ', ','])?;
    let rest = &canonical[name_end..];
    DAY_NAMES.iter().find_map(|day| {
        // RFC 850 spells the day out; the other two formats abbreviate it to three letters.
        let day = if name_end > 3 { day } else { &day[..3] };
        httpdate::parse_http_date(&format!("{day}{rest}")).ok()
    })
}

/// Every run of letters capitalised (`Aug`), except `GMT`, which is upper case.
fn canonical_case(s: &str) -> Option<String> {
    if !s.is_ascii() {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while !rest.is_empty() {
        let word_end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let (word, tail) = rest.split_at(word_end);
        push_capitalised(&mut out, word);
        let gap_end = tail
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(tail.len());
        out.push_str(&tail[..gap_end]);
        rest = &tail[gap_end..];
    }
    Some(out)
}

fn push_capitalised(out: &mut String, word: &str) {
    if word.eq_ignore_ascii_case("gmt") {
        return out.push_str("GMT");
    }
    let mut chars = word.chars();
    out.extend(chars.next().map(|c| c.to_ascii_uppercase()));
    out.extend(chars.map(|c| c.to_ascii_lowercase()));
}

/// `date_value` (§4.2.3): the response's `Date`, or `response_time` when `Date` is
/// missing or invalid (RFC 9110 §6.6.1: a recipient records the time it received a
/// message without `Date`). The first `Date` line is used.
pub fn date_value(headers: &HeaderMap, response_time: SystemTime) -> SystemTime {
    headers
        .get(DATE)
        .and_then(parse_http_date)
        .unwrap_or(response_time)
}

/// Status codes that are heuristically cacheable (RFC 9110 §15.1, RFC 9111 §4.2.2).
pub fn is_heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

fn delta_lifetime(d: Delta) -> Option<Duration> {
    match d {
        Delta::Absent => None,
        Delta::Valid(s) => Some(Duration::from_secs(u64::from(s))),
        // §4.2.1: invalid freshness information → consider the response stale.
        Delta::Invalid => Some(Duration::ZERO),
    }
}

/// Explicit freshness lifetime (§4.2.1), for a shared cache:
/// `s-maxage`, else `max-age`, else `Expires` − `Date`.
///
/// * An invalid `s-maxage`/`max-age` gives zero (stale), and `Expires` is then not
///   consulted (§5.3: `max-age`/`s-maxage` present → ignore `Expires`).
/// * An invalid `Expires` (e.g. `0`) gives zero: "already expired" (§5.3).
///   With several `Expires` lines the first is used (§4.2.1).
/// * When the directives come from a targeted field, `Expires` is ignored (RFC 9213 §2.2).
///
/// `None` means the response has no explicit freshness information.
pub fn explicit_lifetime(
    directives: &ResponseDirectives,
    headers: &HeaderMap,
    response_time: SystemTime,
) -> Option<Duration> {
    let cc = &directives.cc;
    if let Some(l) = delta_lifetime(cc.s_maxage) {
        return Some(l);
    }
    if let Some(l) = delta_lifetime(cc.max_age) {
        return Some(l);
    }
    if directives.ignores_expires() {
        return None;
    }
    let expires = headers.get(EXPIRES)?;
    let Some(expires) = parse_http_date(expires) else {
        return Some(Duration::ZERO);
    };
    let date = date_value(headers, response_time);
    Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
}

/// Heuristic freshness (§4.2.2): `fraction` of (`Date` − `Last-Modified`), capped at
/// `max`. `None` without a valid `Last-Modified` not later than `Date`.
/// The caller checks that heuristics are allowed (status or `public`).
pub fn heuristic_lifetime(
    headers: &HeaderMap,
    response_time: SystemTime,
    fraction: f64,
    max: Duration,
) -> Option<Duration> {
    let lm = headers.get(LAST_MODIFIED).and_then(parse_http_date)?;
    let date = date_value(headers, response_time);
    let interval = date.duration_since(lm).ok()?;
    if !(fraction.is_finite() && fraction > 0.0) {
        return Some(Duration::ZERO);
    }
    let secs = interval.as_secs_f64() * fraction;
    let secs = secs.min(max.as_secs_f64());
    Some(Duration::from_secs(secs as u64))
}

/// Parses `Age` (§5.1): the first member of the first line; anything but a
/// non-negative integer is ignored (`None`); huge values saturate at 2^31.
pub fn parse_age(headers: &HeaderMap) -> Option<u32> {
    let v = headers.get(AGE)?.to_str().ok()?;
    let first = v.split(',').next()?.trim();
    parse_delta_str(first)
}

/// The inputs of the §4.2.3 age calculation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgeInputs {
    /// When the request that produced the response was sent upstream.
    pub request_time: SystemTime,
    /// When the response was received.
    pub response_time: SystemTime,
    /// The parsed `Date` (`None` if missing or invalid: `response_time` is used).
    pub date: Option<SystemTime>,
    /// The parsed `Age` ([`parse_age`]).
    pub age: Option<u32>,
}

impl AgeInputs {
    /// Collects the inputs from the response headers.
    pub fn from_headers(
        headers: &HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> AgeInputs {
        AgeInputs {
            request_time,
            response_time,
            date: headers.get(DATE).and_then(parse_http_date),
            age: parse_age(headers),
        }
    }

    /// `corrected_initial_age` (§4.2.3), fixed at storage time:
    /// `max(apparent_age, age_value + response_delay)`.
    pub fn corrected_initial_age(&self) -> Duration {
        let date = self.date.unwrap_or(self.response_time);
        let apparent_age = self
            .response_time
            .duration_since(date)
            .unwrap_or(Duration::ZERO);
        let response_delay = self
            .response_time
            .duration_since(self.request_time)
            .unwrap_or(Duration::ZERO);
        let age_value = Duration::from_secs(u64::from(self.age.unwrap_or(0)));
        let corrected_age_value = age_value.saturating_add(response_delay);
        apparent_age.max(corrected_age_value)
    }

    /// `current_age` at `now` (§4.2.3).
    pub fn current_age(&self, now: SystemTime) -> Duration {
        current_age(self.corrected_initial_age(), self.response_time, now)
    }
}

/// `current_age = corrected_initial_age + resident_time` (§4.2.3), where
/// `resident_time = now − response_time` (zero if the clock went backwards).
pub fn current_age(
    corrected_initial_age: Duration,
    response_time: SystemTime,
    now: SystemTime,
) -> Duration {
    let resident = now.duration_since(response_time).unwrap_or(Duration::ZERO);
    corrected_initial_age.saturating_add(resident)
}

/// What the cache knows about a stored response when a request arrives.
/// Build it from [`super::storability::StoreDecision`] plus [`current_age`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredFreshness {
    /// Freshness lifetime (§4.2.1).
    pub freshness_lifetime: Duration,
    /// Current age (§4.2.3).
    pub current_age: Duration,
    /// `must-revalidate`, `proxy-revalidate` or `s-maxage` (§5.2.2.2, §5.2.2.8, §5.2.2.10).
    pub must_revalidate: bool,
    /// Response `no-cache` (§5.2.2.4): always validate before use.
    pub no_cache: bool,
    /// RFC 5861 stale-while-revalidate window (zero: none).
    pub stale_while_revalidate: Duration,
    /// RFC 5861 stale-if-error window. `None`: the origin gave none, the route's grace
    /// applies; `Some(ZERO)`: serving stale on error is forbidden.
    pub stale_if_error: Option<Duration>,
}

impl StoredFreshness {
    /// `freshness_lifetime > current_age` (§4.2).
    pub fn is_fresh(&self) -> bool {
        self.freshness_lifetime > self.current_age
    }

    /// How long past its lifetime the response is (zero while fresh).
    pub fn staleness(&self) -> Duration {
        self.current_age.saturating_sub(self.freshness_lifetime)
    }

    /// Remaining freshness in whole seconds, negative once stale
    /// (the `ttl` parameter of Cache-Status, RFC 9211 §2.4).
    pub fn ttl_seconds(&self) -> i64 {
        let l = i64::try_from(self.freshness_lifetime.as_secs()).unwrap_or(i64::MAX);
        let a = i64::try_from(self.current_age.as_secs()).unwrap_or(i64::MAX);
        l.saturating_sub(a)
    }
}

/// What to do with a stored response for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeDecision {
    /// Fresh and acceptable to the client: serve it.
    Fresh,
    /// Stale, but the client accepts it (`max-stale`, §5.2.1.2): serve it as is.
    StaleAccepted,
    /// Stale within `stale-while-revalidate` (RFC 5861 §3): serve now and refresh in
    /// the background.
    StaleWhileRevalidate,
    /// Must be validated (or refetched) before it is served.
    Revalidate,
    /// `only-if-cached` (§5.2.1.7) and the stored response cannot be used without
    /// going forward: answer 504.
    GatewayTimeout,
}

/// Decides how a stored response may be used for a request (RFC 9111 §4, §4.2.4,
/// §5.2.1, §5.2.2; RFC 5861).
///
/// Order: response `no-cache` → request `no-cache` (unless `ignore_client_no_cache`)
/// → request `max-age` → request `min-fresh` → fresh → client `max-stale` (never with
/// `must-revalidate`) → stale-while-revalidate window → revalidate. A `Revalidate` for
/// an `only-if-cached` request becomes `GatewayTimeout`.
///
/// Request `max-age=0` always revalidates (§5.2.1.1: the client wants a response no
/// older than zero seconds). Invalid request directives are ignored.
pub fn serve_decision(
    stored: &StoredFreshness,
    request: &CacheControl,
    ignore_client_no_cache: bool,
) -> ServeDecision {
    let d = decide(stored, request, ignore_client_no_cache);
    if d == ServeDecision::Revalidate && request.only_if_cached {
        ServeDecision::GatewayTimeout
    } else {
        d
    }
}

fn decide(stored: &StoredFreshness, req: &CacheControl, ignore_no_cache: bool) -> ServeDecision {
    if stored.no_cache {
        return ServeDecision::Revalidate;
    }
    if req.no_cache.is_present() && !ignore_no_cache {
        return ServeDecision::Revalidate;
    }
    if let Some(max_age) = req.max_age.duration() {
        if max_age.is_zero() || stored.current_age > max_age {
            return ServeDecision::Revalidate;
        }
    }
    if let Some(min_fresh) = req.min_fresh.duration() {
        let remaining = stored
            .freshness_lifetime
            .checked_sub(stored.current_age)
            .unwrap_or(Duration::ZERO);
        if !stored.is_fresh() || remaining < min_fresh {
            return ServeDecision::Revalidate;
        }
    }
    if stored.is_fresh() {
        return ServeDecision::Fresh;
    }
    let staleness = stored.staleness();
    if !stored.must_revalidate {
        let accepted = match req.max_stale {
            MaxStale::Absent => false,
            MaxStale::Any => true,
            MaxStale::Seconds(s) => staleness <= Duration::from_secs(u64::from(s)),
        };
        if accepted {
            return ServeDecision::StaleAccepted;
        }
    }
    if !stored.stale_while_revalidate.is_zero() && staleness <= stored.stale_while_revalidate {
        return ServeDecision::StaleWhileRevalidate;
    }
    ServeDecision::Revalidate
}

/// Whether the stored response may be served when the origin failed (5xx, refused,
/// timed out): RFC 5861 §4 `stale-if-error`, or the route's `grace` when the origin
/// gave no window (an out-of-band contract, RFC 9111 §4.2.4).
///
/// Never with response `no-cache`; never with `must-revalidate`/`proxy-revalidate`/
/// `s-maxage` unless the origin gave an explicit `stale-if-error` window (§4.2.4: a cache
/// MUST NOT generate a stale response when an in-protocol directive prohibits it).
pub fn may_serve_stale_on_error(stored: &StoredFreshness, grace: Duration) -> bool {
    if stored.no_cache {
        return false;
    }
    let window = match stored.stale_if_error {
        Some(w) => w,
        None if stored.must_revalidate => return false,
        None => grace,
    };
    stored.staleness() <= window
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::cache_control::{DirectiveSource, Qualified};
    use http::HeaderName;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn date(secs: u64) -> String {
        httpdate::fmt_http_date(t(secs))
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    fn lifetime(pairs: &[(&str, &str)]) -> Option<Duration> {
        let h = headers(pairs);
        let d = ResponseDirectives::from_cache_control(&h);
        explicit_lifetime(&d, &h, t(0))
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn rfc9111_4_2_1_s_maxage_over_max_age() {
        assert_eq!(
            lifetime(&[("cache-control", "max-age=10, s-maxage=20")]),
            Some(secs(20))
        );
    }

    #[test]
    fn rfc9111_4_2_1_max_age_over_expires() {
        let d = date(0);
        let e = date(1000);
        assert_eq!(
            lifetime(&[
                ("cache-control", "max-age=10"),
                ("date", &d),
                ("expires", &e)
            ]),
            Some(secs(10))
        );
    }

    #[test]
    fn rfc9111_5_3_max_age_with_invalid_expires_uses_max_age() {
        assert_eq!(
            lifetime(&[("cache-control", "max-age=3600"), ("expires", "0")]),
            Some(secs(3600))
        );
    }

    #[test]
    fn rfc9111_4_2_1_expires_minus_date() {
        let d = date(0);
        let e = date(600);
        assert_eq!(lifetime(&[("date", &d), ("expires", &e)]), Some(secs(600)));
    }

    #[test]
    fn rfc9111_4_2_1_expires_in_past_is_zero() {
        let d = date(600);
        let e = date(0);
        assert_eq!(
            lifetime(&[("date", &d), ("expires", &e)]),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn rfc9111_5_3_invalid_expires_is_already_expired() {
        assert_eq!(lifetime(&[("expires", "0")]), Some(Duration::ZERO));
        assert_eq!(lifetime(&[("expires", "garbage")]), Some(Duration::ZERO));
        assert_eq!(lifetime(&[("expires", "")]), Some(Duration::ZERO));
    }

    #[test]
    fn rfc9111_4_2_1_first_expires_used() {
        let d = date(0);
        let e1 = date(100);
        let e2 = date(900);
        assert_eq!(
            lifetime(&[("date", &d), ("expires", &e1), ("expires", &e2)]),
            Some(secs(100))
        );
    }

    #[test]
    fn rfc9111_4_2_1_invalid_max_age_is_stale_and_ignores_expires() {
        let d = date(0);
        let e = date(1000);
        assert_eq!(
            lifetime(&[
                ("cache-control", "max-age=abc"),
                ("date", &d),
                ("expires", &e)
            ]),
            Some(Duration::ZERO)
        );
        assert_eq!(
            lifetime(&[("cache-control", "s-maxage=-1, max-age=100")]),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn rfc9111_4_2_1_no_explicit_freshness() {
        assert_eq!(lifetime(&[("cache-control", "public")]), None);
        assert_eq!(lifetime(&[]), None);
    }

    #[test]
    fn rfc9110_6_6_1_invalid_date_uses_response_time() {
        // Date invalid → date_value = response_time (t(0)); Expires t(300) → 300 s.
        let e = date(300);
        assert_eq!(
            lifetime(&[("date", "yesterday"), ("expires", &e)]),
            Some(secs(300))
        );
        let h = headers(&[("date", "not a date")]);
        assert_eq!(date_value(&h, t(5)), t(5));
    }

    #[test]
    fn rfc9110_5_6_7_robust_to_name_case_and_wrong_day_names() {
        let parse = |v: &str| parse_http_date(&HeaderValue::from_str(v).unwrap());
        let expected = parse("Thu, 18 Aug 2050 02:01:18 GMT").unwrap();
        for sloppy in [
            "THU, 18 Aug 2050 02:01:18 GMT",
            "Thu, 18 AUG 2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 02:01:18 gMT",
            "Mon, 18 Aug 2050 02:01:18 GMT",
            "monday, 18-aug-50 02:01:18 gmt",
            "Thu Aug 18 02:01:18 2050",
            "Mon Aug 18 02:01:18 2050",
        ] {
            assert_eq!(parse(sloppy), Some(expected), "{sloppy}");
        }
        // asctime with a one-digit day and the wrong day name (Aug 8 2050 is a Monday).
        assert!(parse("Thu Aug  8 02:01:18 2050").is_some());
        for invalid in [
            "Thu, 18 Aug 2050 02:01:18 UTC",
            "Thu, 18 Aug 2050 02:01:18 AEST",
            "Thu, 18 Aug 50 02:01:18 GMT",
            "Thu 18 Aug 2050 02:01:18 GMT",
            "Thu, 18  Aug  2050 02:01:18 GMT",
            "Thu, 18-Aug-2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 02.01.18 GMT",
            "Thu, 18 Aug 2050 2:01:18 GMT",
            "0",
            "Thu, 31 Feb 2050 02:01:18 GMT",
        ] {
            assert_eq!(parse(invalid), None, "{invalid}");
        }
    }

    #[test]
    fn rfc9110_5_6_7_obsolete_date_formats_accepted() {
        let h = headers(&[("date", "Sunday, 06-Nov-94 08:49:37 GMT")]);
        assert!(h.get(DATE).and_then(parse_http_date).is_some());
        let h = headers(&[("date", "Sun Nov  6 08:49:37 1994")]);
        assert!(h.get(DATE).and_then(parse_http_date).is_some());
    }

    #[test]
    fn rfc9213_2_2_targeted_field_ignores_expires() {
        let d = date(0);
        let e = date(1000);
        let h = headers(&[
            ("date", &d),
            ("expires", &e),
            ("cdn-cache-control", "public"),
        ]);
        let dirs = ResponseDirectives {
            cc: CacheControl {
                public: true,
                ..CacheControl::default()
            },
            source: DirectiveSource::Targeted(HeaderName::from_static("cdn-cache-control")),
        };
        assert_eq!(explicit_lifetime(&dirs, &h, t(0)), None);
    }

    #[test]
    fn rfc9111_4_2_2_heuristic_ten_percent() {
        let d = date(10_000);
        let lm = date(0);
        let h = headers(&[("date", &d), ("last-modified", &lm)]);
        assert_eq!(
            heuristic_lifetime(&h, t(10_000), 0.1, secs(86_400)),
            Some(secs(1_000))
        );
    }

    #[test]
    fn rfc9111_4_2_2_heuristic_capped() {
        let d = date(10_000_000);
        let lm = date(0);
        let h = headers(&[("date", &d), ("last-modified", &lm)]);
        assert_eq!(
            heuristic_lifetime(&h, t(0), 0.1, secs(86_400)),
            Some(secs(86_400))
        );
    }

    #[test]
    fn rfc9111_4_2_2_heuristic_needs_valid_last_modified() {
        let h = headers(&[("last-modified", "garbage")]);
        assert_eq!(heuristic_lifetime(&h, t(0), 0.1, secs(86_400)), None);
        // Last-Modified in the future of Date
        let d = date(0);
        let lm = date(100);
        let h = headers(&[("date", &d), ("last-modified", &lm)]);
        assert_eq!(heuristic_lifetime(&h, t(0), 0.1, secs(86_400)), None);
    }

    #[test]
    fn rfc9111_4_2_2_heuristically_cacheable_statuses() {
        for s in [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501] {
            assert!(is_heuristically_cacheable(
                StatusCode::from_u16(s).expect("s")
            ));
        }
        for s in [201, 302, 303, 307, 400, 403, 500, 502, 503] {
            assert!(!is_heuristically_cacheable(
                StatusCode::from_u16(s).expect("s")
            ));
        }
    }

    #[test]
    fn rfc9111_5_1_age_parsing() {
        assert_eq!(parse_age(&headers(&[("age", "15")])), Some(15));
        assert_eq!(parse_age(&headers(&[("age", "abc")])), None);
        assert_eq!(parse_age(&headers(&[("age", "-7200")])), None);
        assert_eq!(parse_age(&headers(&[("age", "7200.0")])), None);
        assert_eq!(parse_age(&headers(&[("age", "")])), None);
        assert_eq!(parse_age(&headers(&[])), None);
    }

    #[test]
    fn rfc9111_5_1_age_list_uses_first_member() {
        assert_eq!(parse_age(&headers(&[("age", "7200, 0")])), Some(7200));
        assert_eq!(
            parse_age(&headers(&[("age", "10"), ("age", "0")])),
            Some(10)
        );
    }

    #[test]
    fn rfc9111_1_2_2_huge_age_saturates() {
        assert_eq!(
            parse_age(&headers(&[("age", "999999999999999999999")])),
            Some(2_147_483_648)
        );
    }

    #[test]
    fn rfc9111_4_2_3_apparent_age() {
        // Date 100 s before the response arrived, no Age, no delay.
        let a = AgeInputs {
            request_time: t(100),
            response_time: t(100),
            date: Some(t(0)),
            age: None,
        };
        assert_eq!(a.corrected_initial_age(), secs(100));
        assert_eq!(a.current_age(t(150)), secs(150));
    }

    #[test]
    fn rfc9111_4_2_3_age_header_plus_response_delay() {
        let a = AgeInputs {
            request_time: t(0),
            response_time: t(3),
            date: Some(t(3)),
            age: Some(20),
        };
        assert_eq!(a.corrected_initial_age(), secs(23));
        assert_eq!(a.current_age(t(10)), secs(30));
    }

    #[test]
    fn rfc9111_4_2_3_date_in_future_clamps_apparent_age() {
        let a = AgeInputs {
            request_time: t(0),
            response_time: t(0),
            date: Some(t(1000)),
            age: None,
        };
        assert_eq!(a.corrected_initial_age(), Duration::ZERO);
    }

    #[test]
    fn rfc9111_4_2_3_missing_date_uses_response_time() {
        let h = headers(&[("age", "5")]);
        let a = AgeInputs::from_headers(&h, t(0), t(1));
        assert_eq!(a.date, None);
        assert_eq!(a.corrected_initial_age(), secs(6));
    }

    #[test]
    fn rfc9111_4_2_3_clock_backwards_does_not_panic() {
        assert_eq!(current_age(secs(5), t(100), t(50)), secs(5));
        let a = AgeInputs {
            request_time: t(10),
            response_time: t(0),
            date: None,
            age: None,
        };
        assert_eq!(a.corrected_initial_age(), Duration::ZERO);
    }

    #[test]
    fn rfc9111_4_2_3_huge_age_saturates_without_overflow() {
        let a = AgeInputs {
            request_time: t(0),
            response_time: t(0),
            date: None,
            age: Some(u32::MAX),
        };
        let _ = a.current_age(t(10));
        assert_eq!(current_age(Duration::MAX, t(0), t(10)), Duration::MAX);
    }

    fn stored(lifetime: u64, age: u64) -> StoredFreshness {
        StoredFreshness {
            freshness_lifetime: secs(lifetime),
            current_age: secs(age),
            must_revalidate: false,
            no_cache: false,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: None,
        }
    }

    fn req(s: &str) -> CacheControl {
        CacheControl::parse([s.as_bytes()])
    }

    #[test]
    fn rfc9111_4_2_fresh_when_lifetime_exceeds_age() {
        assert_eq!(
            serve_decision(&stored(10, 5), &req(""), false),
            ServeDecision::Fresh
        );
        // equal: not fresh (strictly greater, §4.2)
        assert_eq!(
            serve_decision(&stored(10, 10), &req(""), false),
            ServeDecision::Revalidate
        );
    }

    #[test]
    fn rfc9111_4_2_zero_lifetime_is_stale() {
        assert_eq!(
            serve_decision(&stored(0, 0), &req(""), false),
            ServeDecision::Revalidate
        );
    }

    #[test]
    fn rfc9111_5_2_2_4_response_no_cache_always_revalidates() {
        let mut s = stored(100, 0);
        s.no_cache = true;
        assert_eq!(
            serve_decision(&s, &req(""), false),
            ServeDecision::Revalidate
        );
        assert_eq!(
            serve_decision(&s, &req("max-stale"), true),
            ServeDecision::Revalidate
        );
    }

    #[test]
    fn rfc9111_5_2_1_4_request_no_cache_revalidates() {
        assert_eq!(
            serve_decision(&stored(100, 0), &req("no-cache"), false),
            ServeDecision::Revalidate
        );
    }

    #[test]
    fn rfc9111_5_2_1_4_request_no_cache_ignored_by_policy() {
        assert_eq!(
            serve_decision(&stored(100, 0), &req("no-cache"), true),
            ServeDecision::Fresh
        );
    }

    #[test]
    fn rfc9111_5_4_pragma_no_cache_revalidates() {
        let h = headers(&[("pragma", "no-cache")]);
        let r = super::super::cache_control::request_directives(&h);
        assert_eq!(r.no_cache, Qualified::All);
        assert_eq!(
            serve_decision(&stored(100, 0), &r, false),
            ServeDecision::Revalidate
        );
    }

    #[test]
    fn rfc9111_5_2_1_1_request_max_age_limits_age() {
        assert_eq!(
            serve_decision(&stored(100, 30), &req("max-age=20"), false),
            ServeDecision::Revalidate
        );
        assert_eq!(
            serve_decision(&stored(100, 20), &req("max-age=20"), false),
            ServeDecision::Fresh
        );
        assert_eq!(
            serve_decision(&stored(100, 0), &req("max-age=0"), false),
            ServeDecision::Revalidate
        );
    }

    #[test]
    fn rfc9111_5_2_1_1_request_max_age_does_not_allow_stale() {
        assert_eq!(
            serve_decision(&stored(10, 15), &req("max-age=60"), false),
            ServeDecision::Revalidate
        );
    }

    #[test]
    fn rfc9111_5_2_1_invalid_request_directives_ignored() {
        assert_eq!(
            serve_decision(&stored(100, 30), &req("max-age=abc, min-fresh=x"), false),
            ServeDecision::Fresh
        );
    }

    #[test]
    fn rfc9111_5_2_1_3_min_fresh() {
        assert_eq!(
            serve_decision(&stored(100, 50), &req("min-fresh=60"), false),
            ServeDecision::Revalidate
        );
        assert_eq!(
            serve_decision(&stored(100, 40), &req("min-fresh=60"), false),
            ServeDecision::Fresh
        );
    }

    #[test]
    fn rfc9111_5_2_1_2_max_stale_with_value() {
        assert_eq!(
            serve_decision(&stored(10, 15), &req("max-stale=10"), false),
            ServeDecision::StaleAccepted
        );
        assert_eq!(
            serve_decision(&stored(10, 25), &req("max-stale=10"), false),
            ServeDecision::Revalidate
        );
    }

    #[test]
    fn rfc9111_5_2_1_2_max_stale_without_value() {
        assert_eq!(
            serve_decision(&stored(10, 1_000_000), &req("max-stale"), false),
            ServeDecision::StaleAccepted
        );
    }

    #[test]
    fn rfc9111_5_2_2_2_must_revalidate_overrides_max_stale() {
        let mut s = stored(10, 15);
        s.must_revalidate = true;
        assert_eq!(
            serve_decision(&s, &req("max-stale"), false),
            ServeDecision::Revalidate
        );
        // still fresh → served
        let mut s = stored(10, 5);
        s.must_revalidate = true;
        assert_eq!(serve_decision(&s, &req(""), false), ServeDecision::Fresh);
    }

    #[test]
    fn rfc5861_3_stale_while_revalidate_window() {
        let mut s = stored(10, 15);
        s.stale_while_revalidate = secs(10);
        assert_eq!(
            serve_decision(&s, &req(""), false),
            ServeDecision::StaleWhileRevalidate
        );
        s.current_age = secs(21);
        assert_eq!(
            serve_decision(&s, &req(""), false),
            ServeDecision::Revalidate
        );
    }

    #[test]
    fn rfc5861_3_swr_not_used_with_request_no_cache() {
        let mut s = stored(10, 15);
        s.stale_while_revalidate = secs(10);
        assert_eq!(
            serve_decision(&s, &req("no-cache"), false),
            ServeDecision::Revalidate
        );
    }

    #[test]
    fn rfc9111_5_2_1_7_only_if_cached() {
        assert_eq!(
            serve_decision(&stored(10, 15), &req("only-if-cached"), false),
            ServeDecision::GatewayTimeout
        );
        assert_eq!(
            serve_decision(&stored(10, 5), &req("only-if-cached"), false),
            ServeDecision::Fresh
        );
        assert_eq!(
            serve_decision(&stored(10, 15), &req("only-if-cached, max-stale"), false),
            ServeDecision::StaleAccepted
        );
    }

    #[test]
    fn rfc5861_4_stale_if_error_window() {
        let mut s = stored(10, 40);
        s.stale_if_error = Some(secs(60));
        assert!(may_serve_stale_on_error(&s, Duration::ZERO));
        s.current_age = secs(71);
        assert!(!may_serve_stale_on_error(&s, secs(3600)));
    }

    #[test]
    fn rfc9111_4_2_4_grace_applies_without_origin_window() {
        let s = stored(10, 40);
        assert!(may_serve_stale_on_error(&s, secs(60)));
        assert!(!may_serve_stale_on_error(&s, secs(10)));
        assert!(!may_serve_stale_on_error(&s, Duration::ZERO));
    }

    #[test]
    fn rfc9111_4_2_4_no_stale_on_error_with_must_revalidate() {
        let mut s = stored(10, 40);
        s.must_revalidate = true;
        assert!(!may_serve_stale_on_error(&s, secs(3600)));
        s.stale_if_error = Some(Duration::ZERO);
        assert!(!may_serve_stale_on_error(&s, secs(3600)));
    }

    #[test]
    fn rfc9111_4_2_4_no_stale_on_error_with_no_cache() {
        let mut s = stored(10, 40);
        s.no_cache = true;
        s.stale_if_error = Some(secs(100));
        assert!(!may_serve_stale_on_error(&s, secs(3600)));
    }

    #[test]
    fn rfc9211_2_4_ttl_may_be_negative() {
        assert_eq!(stored(100, 30).ttl_seconds(), 70);
        assert_eq!(stored(10, 30).ttl_seconds(), -20);
    }
}
