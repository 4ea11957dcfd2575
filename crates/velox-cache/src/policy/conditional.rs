//! Conditional requests and validation (RFC 9110 §8.8 and §13, RFC 9111 §3.2 and §4.3).
//!
//! Everything here is a pure function over header maps and times handed in by the caller:
//!
//! * [`EntityTag`] and [`EtagCondition`]: entity-tag parsing and the strong and weak comparison
//!   functions of RFC 9110 §8.8.3.
//! * [`evaluate_conditional`]: answer a client's conditional request from a stored response
//!   (RFC 9110 §13.2.2 precedence, RFC 9111 §4.3.2).
//! * [`not_modified_headers`]: the stored header fields a 304 carries (RFC 9110 §15.4.5).
//! * [`validation_headers`]: the validators a cache sends when it revalidates (RFC 9111 §4.3.1).
//! * [`select_for_update`] / [`not_modified_applies`]: which stored responses a 304 freshens
//!   (RFC 9111 §4.3.4).
//! * [`freshen_headers`]: the stored header fields updated from a 304 (RFC 9111 §3.2).

use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

/// An entity tag (RFC 9110 §8.8.3): an opaque quoted string, optionally marked weak with `W/`.
///
/// The opaque tag is kept as bytes, without its quotes, because `etagc` admits `obs-text`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntityTag {
    weak: bool,
    tag: Vec<u8>,
}

impl EntityTag {
    /// A strong tag with the given opaque value (without quotes). `None` if the value holds a
    /// character that `etagc` does not allow (DQUOTE, space, controls).
    pub fn strong(tag: &str) -> Option<Self> {
        Self::new(false, tag.as_bytes())
    }

    /// A weak tag with the given opaque value (without quotes).
    pub fn weak(tag: &str) -> Option<Self> {
        Self::new(true, tag.as_bytes())
    }

    fn new(weak: bool, tag: &[u8]) -> Option<Self> {
        if tag.iter().all(|&b| is_etagc(b)) {
            Some(Self {
                weak,
                tag: tag.to_vec(),
            })
        } else {
            None
        }
    }

    /// Parses exactly one entity-tag (optional surrounding whitespace allowed), as found in an
    /// `ETag` field or an `If-Range` field. `None` when malformed.
    pub fn parse(input: &[u8]) -> Option<Self> {
        let input = trim_ows(input);
        let (tag, next) = parse_tag_at(input, 0)?;
        if next == input.len() {
            Some(tag)
        } else {
            None
        }
    }

    /// The stored entity tag of a response: its single `ETag` field line, if well formed.
    /// Several `ETag` lines make the field invalid (it is a singleton), so `None`.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let mut values = headers.get_all(header::ETAG).iter();
        let first = values.next()?;
        if values.next().is_some() {
            return None;
        }
        Self::parse(first.as_bytes())
    }

    /// Whether the tag carries the weakness indicator `W/`.
    pub fn is_weak(&self) -> bool {
        self.weak
    }

    /// The opaque tag, without quotes.
    pub fn tag(&self) -> &[u8] {
        &self.tag
    }

    /// Strong comparison (RFC 9110 §8.8.3.2): both tags strong and their opaque tags identical.
    pub fn strong_eq(&self, other: &EntityTag) -> bool {
        !self.weak && !other.weak && self.tag == other.tag
    }

    /// Weak comparison (RFC 9110 §8.8.3.2): opaque tags identical, weakness ignored.
    pub fn weak_eq(&self, other: &EntityTag) -> bool {
        self.tag == other.tag
    }

    /// The wire form: `"x"` or `W/"x"`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.tag.len() + 4);
        if self.weak {
            out.extend_from_slice(b"W/");
        }
        out.push(b'"');
        out.extend_from_slice(&self.tag);
        out.push(b'"');
        out
    }

    /// The wire form as a header value.
    pub fn to_header_value(&self) -> Option<HeaderValue> {
        HeaderValue::from_bytes(&self.to_bytes()).ok()
    }
}

/// The parsed value of an `If-Match` or `If-None-Match` field (RFC 9110 §13.1.1, §13.1.2):
/// `"*"` or a list of entity tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtagCondition {
    /// `*`: matches any current representation.
    Any,
    /// A list of entity tags (malformed members dropped; never empty).
    Tags(Vec<EntityTag>),
}

impl EtagCondition {
    /// Parses every line of the field (lines are combined as a list, RFC 9110 §5.3).
    ///
    /// Robustness: malformed members are skipped (a comma inside a quoted tag does not split it);
    /// a field with no valid member at all is treated as absent and gives `None`. `*` mixed with
    /// tags is not valid syntax; the tags are kept and the `*` dropped (the stricter reading).
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> Option<Self> {
        let mut tags = Vec::new();
        let mut star = false;
        for value in values {
            parse_tag_list(value.as_bytes(), &mut tags, &mut star);
        }
        if !tags.is_empty() {
            Some(Self::Tags(tags))
        } else if star {
            Some(Self::Any)
        } else {
            None
        }
    }

    /// Whether the condition matches the selected representation's tag (`None`: no `ETag`), with
    /// the strong (`If-Match`) or the weak (`If-None-Match`) comparison function.
    pub fn matches(&self, current: Option<&EntityTag>, comparison: Comparison) -> bool {
        match self {
            Self::Any => true,
            Self::Tags(tags) => current.is_some_and(|cur| {
                tags.iter().any(|t| match comparison {
                    Comparison::Strong => t.strong_eq(cur),
                    Comparison::Weak => t.weak_eq(cur),
                })
            }),
        }
    }
}

/// Which comparison function of RFC 9110 §8.8.3.2 to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// Both strong and identical (`If-Match`, `If-Range`).
    Strong,
    /// Identical opaque tags (`If-None-Match`).
    Weak,
}

/// The stored response a request was matched to (the cache's "selected representation").
#[derive(Debug, Clone, Copy)]
pub struct SelectedResponse<'a> {
    /// Status of the stored response.
    pub status: StatusCode,
    /// Stored header fields.
    pub headers: &'a HeaderMap,
    /// When the cache received it (RFC 9111 §4.3.2 falls back to this when there is no `Date`).
    pub received_at: SystemTime,
}

/// How a cache treats `If-Match` and `If-Unmodified-Since`, which RFC 9110 §13.2.2 steps 1–2
/// address to the origin server and RFC 9111 §4.3.2 says a cache does not evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OriginPreconditions {
    /// RFC 9111 §4.3.2: don't evaluate them; [`ConditionalOutcome::Forward`] tells the caller
    /// to pass the request on to the origin instead of answering from storage.
    #[default]
    Forward,
    /// Evaluate them against the stored response as if it were the origin's current
    /// representation (for routes where the cache is authoritative).
    Evaluate,
}

/// The result of evaluating a client's preconditions against a stored response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionalOutcome {
    /// Serve the stored response normally (then evaluate `Range`/`If-Range`, RFC 9110 §13.2.2
    /// step 5).
    Proceed,
    /// Answer 304 Not Modified with [`not_modified_headers`].
    NotModified,
    /// Answer 412 Precondition Failed.
    PreconditionFailed,
    /// The request carries preconditions only the origin can evaluate (see
    /// [`OriginPreconditions::Forward`]); forward it, do not answer from storage.
    Forward,
}

/// Whether the request carries any of the four precondition fields of RFC 9110 §13.1.
fn has_precondition(request: &HeaderMap) -> bool {
    request.keys().any(|name| {
        name == header::IF_MATCH
            || name == header::IF_NONE_MATCH
            || name == header::IF_MODIFIED_SINCE
            || name == header::IF_UNMODIFIED_SINCE
    })
}

/// Evaluates the preconditions of a client request against the stored response chosen for it,
/// in the order of RFC 9110 §13.2.2 (If-Match, If-Unmodified-Since, If-None-Match,
/// If-Modified-Since; If-Range is step 5 and lives in [`super::range`]).
///
/// * Preconditions are ignored when the stored status is not 2xx (§13.2.1) and for methods that
///   select no representation (CONNECT, OPTIONS, TRACE).
/// * `If-None-Match` uses the weak comparison; `*` matches any stored representation; a false
///   condition gives 304 for GET/HEAD and 412 otherwise (§13.1.2).
/// * `If-Modified-Since` is only used for GET/HEAD without `If-None-Match`, with a single valid
///   HTTP-date; it is compared with `Last-Modified`, else `Date`, else the time the response
///   was received (RFC 9111 §4.3.2).
/// * `If-Match` (strong comparison) and `If-Unmodified-Since` follow `origin_preconditions`.
pub fn evaluate_conditional(
    method: &Method,
    request: &HeaderMap,
    selected: &SelectedResponse<'_>,
    origin_preconditions: OriginPreconditions,
) -> ConditionalOutcome {
    if !selected.status.is_success()
        || *method == Method::CONNECT
        || *method == Method::OPTIONS
        || *method == Method::TRACE
    {
        return ConditionalOutcome::Proceed;
    }
    // Most requests carry no precondition: one pass over the names (no hashing) says so.
    if !has_precondition(request) {
        return ConditionalOutcome::Proceed;
    }
    // Parsed only when a condition names entity tags: most requests carry none.
    let current = || EntityTag::from_headers(selected.headers);
    let get_or_head = *method == Method::GET || *method == Method::HEAD;

    // Steps 1 and 2.
    if let Some(if_match) = EtagCondition::parse(request.get_all(header::IF_MATCH)) {
        if origin_preconditions == OriginPreconditions::Forward {
            return ConditionalOutcome::Forward;
        }
        if !if_match.matches(current().as_ref(), Comparison::Strong) {
            return ConditionalOutcome::PreconditionFailed;
        }
    } else if let Some(since) = single_date(request, &header::IF_UNMODIFIED_SINCE) {
        if origin_preconditions == OriginPreconditions::Forward {
            return ConditionalOutcome::Forward;
        }
        // §13.1.4: ignored when the representation has no modification date.
        if let Some(modified) = single_date(selected.headers, &header::LAST_MODIFIED) {
            if modified > since {
                return ConditionalOutcome::PreconditionFailed;
            }
        }
    }

    // Step 3.
    if let Some(if_none_match) = EtagCondition::parse(request.get_all(header::IF_NONE_MATCH)) {
        if if_none_match.matches(current().as_ref(), Comparison::Weak) {
            return if get_or_head {
                ConditionalOutcome::NotModified
            } else {
                ConditionalOutcome::PreconditionFailed
            };
        }
        return ConditionalOutcome::Proceed;
    }

    // Step 4.
    if get_or_head {
        if let Some(since) = single_date(request, &header::IF_MODIFIED_SINCE) {
            let modified = single_date(selected.headers, &header::LAST_MODIFIED)
                .or_else(|| single_date(selected.headers, &header::DATE))
                .unwrap_or(selected.received_at);
            if modified <= since {
                return ConditionalOutcome::NotModified;
            }
        }
    }
    ConditionalOutcome::Proceed
}

/// The header fields a 304 generated from a stored response carries (RFC 9110 §15.4.5):
/// `Cache-Control`, `Content-Location`, `Date`, `ETag`, `Expires` and `Vary` (every line of
/// each), plus `Last-Modified` only when there is no `ETag` ("Last-Modified might be useful if
/// the response does not have an ETag field"). No other representation metadata.
///
/// The caller adds `Age` and `Cache-Status`, and removes fields it does not forward to clients.
pub fn not_modified_headers(stored: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    let mut names = vec![
        header::CACHE_CONTROL,
        header::CONTENT_LOCATION,
        header::DATE,
        header::ETAG,
        header::EXPIRES,
        header::VARY,
    ];
    if !stored.contains_key(header::ETAG) {
        names.push(header::LAST_MODIFIED);
    }
    for name in names {
        for value in stored.get_all(&name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Request header fields that carry client preconditions. When the cache sends its own
/// validation request it removes these first, then adds [`validation_headers`].
pub const PRECONDITION_HEADERS: [HeaderName; 5] = [
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
];

/// The validators to send when revalidating stored responses (RFC 9111 §4.3.1).
///
/// * `If-None-Match`: the entity tags of all the given stored responses (weak ones included,
///   since `If-None-Match` compares weakly; duplicates removed) — the MUST of §4.3.1.
/// * `If-Modified-Since`: the stored `Last-Modified` value, sent only when exactly one stored
///   response is validated and it has a valid `Last-Modified` — the SHOULD of §4.3.1. It is
///   sent alongside `If-None-Match` (both validators are usually sent, for intermediaries that
///   do not understand entity tags); a conforming origin ignores it when `If-None-Match` is
///   present (RFC 9110 §13.1.3).
///
/// Velox only validates complete stored responses, so the subrange forms are not produced.
pub fn validation_headers(stored: &[&HeaderMap]) -> HeaderMap {
    let mut out = HeaderMap::new();
    let mut tags: Vec<EntityTag> = Vec::new();
    for headers in stored {
        if let Some(tag) = EntityTag::from_headers(headers) {
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
    }
    if !tags.is_empty() {
        let mut value = Vec::new();
        for (i, tag) in tags.iter().enumerate() {
            if i > 0 {
                value.extend_from_slice(b", ");
            }
            value.extend_from_slice(&tag.to_bytes());
        }
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            out.insert(header::IF_NONE_MATCH, value);
        }
    }
    if let [only] = stored {
        if single_date(only, &header::LAST_MODIFIED).is_some() {
            if let Some(value) = only.get(header::LAST_MODIFIED) {
                out.insert(header::IF_MODIFIED_SINCE, value.clone());
            }
        }
    }
    out
}

/// Which stored responses a 304 freshens (RFC 9111 §4.3.4). `initial_set` holds the stored
/// responses that could have been chosen for the request (the §4 requirements, freshness
/// aside); the result lists indices into it.
///
/// 1. The 304 has a strong `ETag`: every stored response with a strongly equal `ETag`
///    (possibly none: then nothing may be updated).
/// 2. Otherwise, it has a weak `ETag` or a `Last-Modified`: the most recent stored response
///    (by `Date`, else received time) whose validator corresponds — same `ETag` by the weak
///    comparison when the 304 has one, else an identical `Last-Modified`.
/// 3. It has no validator: the single stored response, if the set has exactly one and that
///    one has no validator either.
///
/// A `Last-Modified` in the 304 is always treated as a weak validator here: deciding it is
/// strong (RFC 9110 §8.8.2.2) would only widen rule 2 from "the most recent" to "all", so this
/// errs on updating fewer responses.
pub fn select_for_update(
    not_modified: &HeaderMap,
    initial_set: &[SelectedResponse<'_>],
) -> Vec<usize> {
    let new_tag = EntityTag::from_headers(not_modified);
    let new_modified = single_date(not_modified, &header::LAST_MODIFIED);

    if let Some(tag) = new_tag.as_ref().filter(|t| !t.is_weak()) {
        return initial_set
            .iter()
            .enumerate()
            .filter(|(_, s)| EntityTag::from_headers(s.headers).is_some_and(|st| st.strong_eq(tag)))
            .map(|(i, _)| i)
            .collect();
    }

    if new_tag.is_some() || new_modified.is_some() {
        let corresponds = |s: &SelectedResponse<'_>| match &new_tag {
            Some(tag) => EntityTag::from_headers(s.headers).is_some_and(|st| st.weak_eq(tag)),
            None => {
                new_modified.is_some()
                    && single_date(s.headers, &header::LAST_MODIFIED) == new_modified
            }
        };
        let recency = |s: &SelectedResponse<'_>| {
            single_date(s.headers, &header::DATE).unwrap_or(s.received_at)
        };
        let mut best: Option<(usize, SystemTime)> = None;
        for (i, s) in initial_set.iter().enumerate() {
            if corresponds(s) {
                let at = recency(s);
                if !matches!(best, Some((_, b)) if at < b) {
                    best = Some((i, at));
                }
            }
        }
        return best.map(|(i, _)| vec![i]).unwrap_or_default();
    }

    match initial_set {
        [only]
            if EntityTag::from_headers(only.headers).is_none()
                && !only.headers.contains_key(header::LAST_MODIFIED) =>
        {
            vec![0]
        }
        _ => Vec::new(),
    }
}

/// Whether a 304 answering the cache's validation of this one stored response freshens it:
/// [`select_for_update`] over a set of one, or a 304 with no validator at all.
///
/// The validation request nominated only this response, so a 304 without a validator can refer
/// to nothing else (RFC 9111 §4.3.3: a 304 "indicates that the stored response can be updated
/// and reused"). §4.3.4's third rule asks for a stored response without validators because it
/// chooses among several; origins that leave `ETag` out of a 304 (against RFC 9110 §15.4.5)
/// are common. A 304 with a validator that does not match still freshens nothing.
pub fn not_modified_applies(not_modified: &HeaderMap, stored: &SelectedResponse<'_>) -> bool {
    !has_validator(not_modified)
        || !select_for_update(not_modified, std::slice::from_ref(stored)).is_empty()
}

/// Whether the fields hold a usable validator: a valid `ETag` or a single valid `Last-Modified`.
fn has_validator(headers: &HeaderMap) -> bool {
    EntityTag::from_headers(headers).is_some()
        || single_date(headers, &header::LAST_MODIFIED).is_some()
}

/// Fields never copied from a 304 into a stored response (RFC 9111 §3.2):
///
/// * `Content-Length` (named by §3.2);
/// * the fields excepted from storage by §3.1: `Connection` (and the fields it lists, handled
///   in [`freshen_headers`]), the hop-by-hop fields of RFC 9110 §7.6.1 (`Keep-Alive`,
///   `Proxy-Connection`, `TE`, `Transfer-Encoding`, `Upgrade`) and the proxy-specific
///   `Proxy-Authenticate`, `Proxy-Authentication-Info`, `Proxy-Authorization`;
/// * `Content-Range`, which §3.2 lets a cache omit because it processes it itself: Velox stores
///   complete representations, and a `Content-Range` would misdescribe them.
pub const NOT_UPDATED_BY_304: [&str; 11] = [
    "content-length",
    "content-range",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authentication-info",
    "proxy-authorization",
];

/// Updates stored header fields from a 304 (RFC 9111 §3.2, applied by §4.3.4): every field in
/// the 304 replaces all stored lines of the same name, except the fields of
/// [`NOT_UPDATED_BY_304`], the fields the 304's `Connection` lists, and `keep_stored`.
///
/// `keep_stored` names fields the stored response depends upon (§3.2 "header fields that the
/// cache's stored response depends upon"), e.g. `Content-Encoding` for a variant Velox encoded
/// itself, and the fields a 304's `no-cache="..."`/`private="..."` directives exclude from
/// storage (§3.1). Content-Type and Content-Encoding are otherwise updated: Velox stores the
/// origin's representation as received, and §3.2 limits omissions to what integrity requires.
pub fn freshen_headers(
    stored: &HeaderMap,
    not_modified: &HeaderMap,
    keep_stored: &[HeaderName],
) -> HeaderMap {
    let mut connection_listed: Vec<HeaderName> = Vec::new();
    for value in not_modified.get_all(header::CONNECTION) {
        for member in value.as_bytes().split(|&b| b == b',') {
            if let Ok(name) = HeaderName::from_bytes(trim_ows(member)) {
                connection_listed.push(name);
            }
        }
    }
    let skip = |name: &HeaderName| {
        NOT_UPDATED_BY_304.contains(&name.as_str())
            || connection_listed.contains(name)
            || keep_stored.contains(name)
    };

    let mut out = stored.clone();
    for name in not_modified.keys() {
        if skip(name) {
            continue;
        }
        out.remove(name);
        for value in not_modified.get_all(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Last-Modified is a strong validator for a cache comparing it with its stored entry when the
/// entry's `Date` is at least this long after it (RFC 9110 §8.8.2.2).
pub const STRONG_LAST_MODIFIED_MARGIN: Duration = Duration::from_secs(60);

/// Whether the stored `Last-Modified` is strong in the sense of RFC 9110 §8.8.2.2 for an
/// intermediate cache: the entry has a valid `Date` at least 60 seconds after it.
pub fn last_modified_is_strong(stored: &HeaderMap) -> bool {
    match (
        single_date(stored, &header::LAST_MODIFIED),
        single_date(stored, &header::DATE),
    ) {
        (Some(modified), Some(date)) => modified
            .checked_add(STRONG_LAST_MODIFIED_MARGIN)
            .is_some_and(|m| m <= date),
        _ => false,
    }
}

/// A field holding one HTTP-date (RFC 9110 §5.6.7): exactly one line, a valid IMF-fixdate,
/// rfc850-date or asctime-date. Anything else (several lines, a list, garbage) gives `None`.
pub fn single_date(headers: &HeaderMap, name: &HeaderName) -> Option<SystemTime> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let text = first.to_str().ok()?;
    httpdate::parse_http_date(text.trim()).ok()
}

// --- entity-tag parsing -------------------------------------------------------------------

/// `etagc = %x21 / %x23-7E / obs-text` (RFC 9110 §8.8.3).
fn is_etagc(b: u8) -> bool {
    b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_ows(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_ows(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Parses `[W/] DQUOTE *etagc DQUOTE` at `i`; returns the tag and the index after it.
fn parse_tag_at(input: &[u8], mut i: usize) -> Option<(EntityTag, usize)> {
    let weak = input.get(i..i + 2) == Some(b"W/");
    if weak {
        i += 2;
    }
    if input.get(i) != Some(&b'"') {
        return None;
    }
    let start = i + 1;
    let mut j = start;
    loop {
        match input.get(j) {
            Some(b'"') => break,
            Some(&b) if is_etagc(b) => j += 1,
            _ => return None,
        }
    }
    Some((
        EntityTag {
            weak,
            tag: input[start..j].to_vec(),
        },
        j + 1,
    ))
}

/// Index of the next list separator at or after `i`, skipping quoted sections.
fn skip_member(input: &[u8], mut i: usize) -> usize {
    let mut quoted = false;
    while let Some(&b) = input.get(i) {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => return i,
            _ => {}
        }
        i += 1;
    }
    i
}

fn skip_ows(input: &[u8], mut i: usize) -> usize {
    while input.get(i).is_some_and(|&b| is_ows(b)) {
        i += 1;
    }
    i
}

/// `#entity-tag` or `*`, with empty members and malformed members skipped (RFC 9110 §5.6.1).
fn parse_tag_list(input: &[u8], tags: &mut Vec<EntityTag>, star: &mut bool) {
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b',' || is_ows(b) {
            i += 1;
            continue;
        }
        if b == b'*' {
            let after = skip_ows(input, i + 1);
            if after == input.len() || input[after] == b',' {
                *star = true;
                i = after;
                continue;
            }
        }
        match parse_tag_at(input, i) {
            Some((tag, next)) => {
                let after = skip_ows(input, next);
                if after == input.len() || input[after] == b',' {
                    tags.push(tag);
                    i = after;
                } else {
                    i = skip_member(input, after);
                }
            }
            None => i = skip_member(input, i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            let name = HeaderName::from_bytes(name.as_bytes()).expect("test header name");
            let value = HeaderValue::from_str(value).expect("test header value");
            map.append(name, value);
        }
        map
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn date(secs: u64) -> String {
        httpdate::fmt_http_date(at(secs))
    }

    const T0: u64 = 1_700_000_000;

    fn eval(
        method: Method,
        req: &HeaderMap,
        stored: &HeaderMap,
        mode: OriginPreconditions,
    ) -> ConditionalOutcome {
        let selected = SelectedResponse {
            status: StatusCode::OK,
            headers: stored,
            received_at: at(T0 + 500),
        };
        evaluate_conditional(&method, req, &selected, mode)
    }

    fn get(req: &HeaderMap, stored: &HeaderMap) -> ConditionalOutcome {
        eval(Method::GET, req, stored, OriginPreconditions::Evaluate)
    }

    fn tag(s: &str) -> EntityTag {
        EntityTag::parse(s.as_bytes()).expect("test tag")
    }

    // --- RFC 9110 §8.8.3: entity-tag syntax ---

    #[test]
    fn rfc9110_8_8_3_parse_strong_and_weak() {
        let strong = tag("\"xyzzy\"");
        assert!(!strong.is_weak());
        assert_eq!(strong.tag(), b"xyzzy");
        let weak = tag("W/\"xyzzy\"");
        assert!(weak.is_weak());
        assert_eq!(weak.to_bytes(), b"W/\"xyzzy\"");
        assert_eq!(tag("\"\"").tag(), b"", "empty opaque-tag is valid");
    }

    #[test]
    fn rfc9110_8_8_3_malformed_tags_rejected() {
        for bad in [
            "xyzzy",
            "\"unterminated",
            "w/\"lowercase-w\"",
            "\"a b\"",
            "W/ \"x\"",
            "\"x\"y",
            "",
        ] {
            assert_eq!(EntityTag::parse(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(EntityTag::strong("has\"quote"), None);
    }

    #[test]
    fn rfc9110_8_8_3_etag_field_with_several_lines_is_invalid() {
        let stored = headers(&[("etag", "\"a\""), ("etag", "\"b\"")]);
        assert_eq!(EntityTag::from_headers(&stored), None);
    }

    #[test]
    fn rfc9110_5_6_1_list_with_commas_inside_quotes() {
        let value = HeaderValue::from_static("\"a,b\", W/\"c\" ,\"d\"");
        assert_eq!(
            EtagCondition::parse([&value]),
            Some(EtagCondition::Tags(vec![
                tag("\"a,b\""),
                tag("W/\"c\""),
                tag("\"d\"")
            ]))
        );
    }

    #[test]
    fn rfc9110_5_6_1_list_skips_malformed_and_empty_members() {
        let value = HeaderValue::from_static(", bogus, \"a\", \"b c\", ,W/\"d\", \"e\"junk");
        assert_eq!(
            EtagCondition::parse([&value]),
            Some(EtagCondition::Tags(vec![tag("\"a\""), tag("W/\"d\"")]))
        );
    }

    #[test]
    fn rfc9110_5_3_list_combines_field_lines() {
        let a = HeaderValue::from_static("\"a\"");
        let b = HeaderValue::from_static("\"b\"");
        assert_eq!(
            EtagCondition::parse([&a, &b]),
            Some(EtagCondition::Tags(vec![tag("\"a\""), tag("\"b\"")]))
        );
    }

    #[test]
    fn rfc9110_13_1_2_star_and_all_invalid_field() {
        let star = HeaderValue::from_static(" * ");
        assert_eq!(EtagCondition::parse([&star]), Some(EtagCondition::Any));
        let junk = HeaderValue::from_static("junk, more junk");
        assert_eq!(EtagCondition::parse([&junk]), None);
        let mixed = HeaderValue::from_static("*, \"a\"");
        assert_eq!(
            EtagCondition::parse([&mixed]),
            Some(EtagCondition::Tags(vec![tag("\"a\"")]))
        );
    }

    // --- RFC 9110 §8.8.3.2: the comparison table ---

    #[test]
    fn rfc9110_8_8_3_2_comparison_table() {
        // (ETag 1, ETag 2, strong comparison, weak comparison)
        let table = [
            ("W/\"1\"", "W/\"1\"", false, true),
            ("W/\"1\"", "W/\"2\"", false, false),
            ("W/\"1\"", "\"1\"", false, true),
            ("\"1\"", "\"1\"", true, true),
        ];
        for (a, b, strong, weak) in table {
            let (a, b) = (tag(a), tag(b));
            assert_eq!(a.strong_eq(&b), strong, "{a:?} {b:?} strong");
            assert_eq!(b.strong_eq(&a), strong, "{b:?} {a:?} strong");
            assert_eq!(a.weak_eq(&b), weak, "{a:?} {b:?} weak");
            assert_eq!(b.weak_eq(&a), weak, "{b:?} {a:?} weak");
        }
    }

    // --- RFC 9110 §13.1.2 / RFC 9111 §4.3.2: If-None-Match ---

    #[test]
    fn rfc9110_13_1_2_if_none_match_weak_comparison_gives_304() {
        let stored = headers(&[("etag", "\"v1\"")]);
        for inm in ["\"v1\"", "W/\"v1\"", "\"x\", \"v1\""] {
            let req = headers(&[("if-none-match", inm)]);
            assert_eq!(get(&req, &stored), ConditionalOutcome::NotModified, "{inm}");
        }
        let weak_stored = headers(&[("etag", "W/\"v1\"")]);
        let req = headers(&[("if-none-match", "\"v1\"")]);
        assert_eq!(get(&req, &weak_stored), ConditionalOutcome::NotModified);
    }

    #[test]
    fn rfc9110_13_1_2_if_none_match_mismatch_proceeds() {
        let stored = headers(&[("etag", "\"v2\"")]);
        let req = headers(&[("if-none-match", "\"v1\"")]);
        assert_eq!(get(&req, &stored), ConditionalOutcome::Proceed);
    }

    #[test]
    fn rfc9110_13_1_2_if_none_match_star_matches_any_stored_representation() {
        let no_etag = headers(&[("content-type", "text/plain")]);
        let req = headers(&[("if-none-match", "*")]);
        assert_eq!(get(&req, &no_etag), ConditionalOutcome::NotModified);
    }

    #[test]
    fn rfc9110_13_1_2_if_none_match_list_without_stored_etag_proceeds() {
        let stored = headers(&[("last-modified", &date(T0))]);
        let req = headers(&[("if-none-match", "\"v1\"")]);
        assert_eq!(get(&req, &stored), ConditionalOutcome::Proceed);
    }

    #[test]
    fn rfc9110_13_1_2_if_none_match_false_on_unsafe_method_is_412() {
        let stored = headers(&[("etag", "\"v1\"")]);
        let req = headers(&[("if-none-match", "\"v1\"")]);
        assert_eq!(
            eval(Method::POST, &req, &stored, OriginPreconditions::Evaluate),
            ConditionalOutcome::PreconditionFailed
        );
        assert_eq!(
            eval(Method::HEAD, &req, &stored, OriginPreconditions::Evaluate),
            ConditionalOutcome::NotModified
        );
    }

    #[test]
    fn rfc9110_13_2_2_if_none_match_takes_precedence_over_if_modified_since() {
        // INM does not match, IMS would say "not modified": INM wins, IMS is ignored.
        let stored = headers(&[("etag", "\"v2\""), ("last-modified", &date(T0))]);
        let req = headers(&[
            ("if-none-match", "\"v1\""),
            ("if-modified-since", &date(T0 + 10)),
        ]);
        assert_eq!(get(&req, &stored), ConditionalOutcome::Proceed);
    }

    #[test]
    fn rfc9110_13_1_2_malformed_if_none_match_is_ignored() {
        // Entirely malformed INM is treated as absent, so IMS applies.
        let stored = headers(&[("etag", "\"v2\""), ("last-modified", &date(T0))]);
        let req = headers(&[("if-none-match", "v2"), ("if-modified-since", &date(T0))]);
        assert_eq!(get(&req, &stored), ConditionalOutcome::NotModified);
    }

    // --- RFC 9110 §13.1.3 / RFC 9111 §4.3.2: If-Modified-Since ---

    #[test]
    fn rfc9110_13_1_3_if_modified_since_against_last_modified() {
        let stored = headers(&[("last-modified", &date(T0)), ("date", &date(T0 + 100))]);
        let same = headers(&[("if-modified-since", &date(T0))]);
        assert_eq!(get(&same, &stored), ConditionalOutcome::NotModified);
        let later = headers(&[("if-modified-since", &date(T0 + 50))]);
        assert_eq!(get(&later, &stored), ConditionalOutcome::NotModified);
        let earlier = headers(&[("if-modified-since", &date(T0 - 1))]);
        assert_eq!(get(&earlier, &stored), ConditionalOutcome::Proceed);
    }

    #[test]
    fn rfc9111_4_3_2_if_modified_since_falls_back_to_date() {
        let stored = headers(&[("date", &date(T0))]);
        assert_eq!(
            get(&headers(&[("if-modified-since", &date(T0))]), &stored),
            ConditionalOutcome::NotModified
        );
        assert_eq!(
            get(&headers(&[("if-modified-since", &date(T0 - 60))]), &stored),
            ConditionalOutcome::Proceed
        );
    }

    #[test]
    fn rfc9111_4_3_2_if_modified_since_falls_back_to_received_time() {
        // received_at is T0 + 500 in `eval`.
        let stored = headers(&[("content-type", "text/plain")]);
        assert_eq!(
            get(&headers(&[("if-modified-since", &date(T0 + 500))]), &stored),
            ConditionalOutcome::NotModified
        );
        assert_eq!(
            get(&headers(&[("if-modified-since", &date(T0 + 499))]), &stored),
            ConditionalOutcome::Proceed
        );
    }

    #[test]
    fn rfc9110_13_1_3_if_modified_since_invalid_date_ignored() {
        let stored = headers(&[("last-modified", &date(T0))]);
        for bad in [
            "yesterday",
            "0",
            "Sun, 06 Nov 1994 08:49:37 GMT, Sun, 06 Nov 1994 08:49:37 GMT",
        ] {
            let req = headers(&[("if-modified-since", bad)]);
            assert_eq!(get(&req, &stored), ConditionalOutcome::Proceed, "{bad}");
        }
        let two_lines = headers(&[
            ("if-modified-since", &date(T0)),
            ("if-modified-since", &date(T0)),
        ]);
        assert_eq!(get(&two_lines, &stored), ConditionalOutcome::Proceed);
    }

    #[test]
    fn rfc9110_5_6_7_if_modified_since_obsolete_date_formats_accepted() {
        let stored = headers(&[("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        for ims in ["Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"] {
            let req = headers(&[("if-modified-since", ims)]);
            assert_eq!(get(&req, &stored), ConditionalOutcome::NotModified, "{ims}");
        }
    }

    #[test]
    fn rfc9110_13_1_3_if_modified_since_only_for_get_and_head() {
        let stored = headers(&[("last-modified", &date(T0))]);
        let req = headers(&[("if-modified-since", &date(T0))]);
        assert_eq!(
            eval(Method::HEAD, &req, &stored, OriginPreconditions::Evaluate),
            ConditionalOutcome::NotModified
        );
        assert_eq!(
            eval(Method::POST, &req, &stored, OriginPreconditions::Evaluate),
            ConditionalOutcome::Proceed
        );
    }

    // --- RFC 9110 §13.1.1, §13.1.4, §13.2.2: If-Match, If-Unmodified-Since ---

    #[test]
    fn rfc9110_13_1_1_if_match_uses_strong_comparison() {
        let stored = headers(&[("etag", "\"v1\"")]);
        assert_eq!(
            get(&headers(&[("if-match", "\"v1\"")]), &stored),
            ConditionalOutcome::Proceed
        );
        assert_eq!(
            get(&headers(&[("if-match", "W/\"v1\"")]), &stored),
            ConditionalOutcome::PreconditionFailed
        );
        assert_eq!(
            get(&headers(&[("if-match", "\"v2\"")]), &stored),
            ConditionalOutcome::PreconditionFailed
        );
        let weak_stored = headers(&[("etag", "W/\"v1\"")]);
        assert_eq!(
            get(&headers(&[("if-match", "\"v1\"")]), &weak_stored),
            ConditionalOutcome::PreconditionFailed
        );
    }

    #[test]
    fn rfc9110_13_1_1_if_match_star_and_missing_etag() {
        let no_etag = headers(&[]);
        assert_eq!(
            get(&headers(&[("if-match", "*")]), &no_etag),
            ConditionalOutcome::Proceed
        );
        assert_eq!(
            get(&headers(&[("if-match", "\"v1\"")]), &no_etag),
            ConditionalOutcome::PreconditionFailed
        );
    }

    #[test]
    fn rfc9111_4_3_2_cache_forwards_origin_preconditions_by_default() {
        let stored = headers(&[("etag", "\"v1\""), ("last-modified", &date(T0))]);
        let if_match = headers(&[("if-match", "\"v1\"")]);
        assert_eq!(
            eval(
                Method::GET,
                &if_match,
                &stored,
                OriginPreconditions::default()
            ),
            ConditionalOutcome::Forward
        );
        let ius = headers(&[("if-unmodified-since", &date(T0))]);
        assert_eq!(
            eval(Method::GET, &ius, &stored, OriginPreconditions::Forward),
            ConditionalOutcome::Forward
        );
        let invalid_ius = headers(&[("if-unmodified-since", "not a date")]);
        assert_eq!(
            eval(
                Method::GET,
                &invalid_ius,
                &stored,
                OriginPreconditions::Forward
            ),
            ConditionalOutcome::Proceed
        );
    }

    #[test]
    fn rfc9110_13_1_4_if_unmodified_since() {
        let stored = headers(&[("last-modified", &date(T0))]);
        assert_eq!(
            get(&headers(&[("if-unmodified-since", &date(T0))]), &stored),
            ConditionalOutcome::Proceed
        );
        assert_eq!(
            get(&headers(&[("if-unmodified-since", &date(T0 - 1))]), &stored),
            ConditionalOutcome::PreconditionFailed
        );
        // No modification date: ignored.
        assert_eq!(
            get(
                &headers(&[("if-unmodified-since", &date(T0 - 1))]),
                &headers(&[])
            ),
            ConditionalOutcome::Proceed
        );
    }

    #[test]
    fn rfc9110_13_2_2_if_match_makes_if_unmodified_since_ignored() {
        let stored = headers(&[("etag", "\"v1\""), ("last-modified", &date(T0))]);
        let req = headers(&[
            ("if-match", "\"v1\""),
            ("if-unmodified-since", &date(T0 - 100)),
        ]);
        assert_eq!(get(&req, &stored), ConditionalOutcome::Proceed);
    }

    #[test]
    fn rfc9110_13_2_2_if_match_evaluated_before_if_none_match() {
        let stored = headers(&[("etag", "\"v1\"")]);
        let fail = headers(&[("if-match", "\"v2\""), ("if-none-match", "\"v1\"")]);
        assert_eq!(get(&fail, &stored), ConditionalOutcome::PreconditionFailed);
        let pass = headers(&[("if-match", "\"v1\""), ("if-none-match", "\"v1\"")]);
        assert_eq!(get(&pass, &stored), ConditionalOutcome::NotModified);
    }

    #[test]
    fn rfc9110_13_2_1_preconditions_ignored_for_non_2xx_stored_response() {
        let stored = headers(&[("etag", "\"v1\"")]);
        let req = headers(&[("if-none-match", "\"v1\""), ("if-match", "\"zz\"")]);
        let selected = SelectedResponse {
            status: StatusCode::NOT_FOUND,
            headers: &stored,
            received_at: at(T0),
        };
        assert_eq!(
            evaluate_conditional(&Method::GET, &req, &selected, OriginPreconditions::Evaluate),
            ConditionalOutcome::Proceed
        );
    }

    #[test]
    fn rfc9110_13_2_2_no_preconditions_proceeds() {
        let stored = headers(&[("etag", "\"v1\"")]);
        assert_eq!(get(&headers(&[]), &stored), ConditionalOutcome::Proceed);
    }

    // --- RFC 9110 §15.4.5: 304 header fields ---

    #[test]
    fn rfc9110_15_4_5_not_modified_carries_listed_fields_only() {
        let stored = headers(&[
            ("cache-control", "max-age=60"),
            ("cache-control", "public"),
            ("content-location", "/a.en"),
            ("date", &date(T0)),
            ("etag", "\"v1\""),
            ("expires", &date(T0 + 60)),
            ("vary", "accept-encoding"),
            ("last-modified", &date(T0 - 100)),
            ("content-type", "text/html"),
            ("content-length", "123"),
            ("set-cookie", "a=b"),
        ]);
        let out = not_modified_headers(&stored);
        assert_eq!(out.get_all("cache-control").iter().count(), 2);
        for name in ["content-location", "date", "etag", "expires", "vary"] {
            assert!(out.contains_key(name), "{name}");
        }
        for name in [
            "last-modified",
            "content-type",
            "content-length",
            "set-cookie",
        ] {
            assert!(!out.contains_key(name), "{name}");
        }
    }

    #[test]
    fn rfc9110_15_4_5_not_modified_last_modified_when_no_etag() {
        let stored = headers(&[("last-modified", &date(T0)), ("date", &date(T0 + 1))]);
        let out = not_modified_headers(&stored);
        assert!(out.contains_key("last-modified"));
        assert!(out.contains_key("date"));
    }

    // --- RFC 9111 §4.3.1: validation requests ---

    #[test]
    fn rfc9111_4_3_1_validation_sends_etag_and_last_modified() {
        let stored = headers(&[("etag", "W/\"v1\""), ("last-modified", &date(T0))]);
        let out = validation_headers(&[&stored]);
        assert_eq!(
            out.get("if-none-match").map(HeaderValue::as_bytes),
            Some(&b"W/\"v1\""[..])
        );
        assert_eq!(
            out.get("if-modified-since").and_then(|v| v.to_str().ok()),
            Some(date(T0).as_str())
        );
    }

    #[test]
    fn rfc9111_4_3_1_validation_of_several_responses_unions_etags_without_ims() {
        let a = headers(&[("etag", "\"a\""), ("last-modified", &date(T0))]);
        let b = headers(&[("etag", "\"b\"")]);
        let dup = headers(&[("etag", "\"a\"")]);
        let out = validation_headers(&[&a, &b, &dup]);
        assert_eq!(
            out.get("if-none-match").map(HeaderValue::as_bytes),
            Some(&b"\"a\", \"b\""[..])
        );
        assert!(!out.contains_key("if-modified-since"));
    }

    #[test]
    fn rfc9111_4_3_1_validation_without_validators_or_with_invalid_ones() {
        assert!(validation_headers(&[&headers(&[("date", &date(T0))])]).is_empty());
        let invalid = headers(&[("etag", "unquoted"), ("last-modified", "garbage")]);
        assert!(validation_headers(&[&invalid]).is_empty());
        assert!(validation_headers(&[]).is_empty());
    }

    // --- RFC 9111 §4.3.4: selecting stored responses to freshen ---

    fn sel(h: &HeaderMap, received: u64) -> SelectedResponse<'_> {
        SelectedResponse {
            status: StatusCode::OK,
            headers: h,
            received_at: at(received),
        }
    }

    #[test]
    fn rfc9111_4_3_4_strong_etag_selects_all_strong_matches() {
        let a = headers(&[("etag", "\"v1\"")]);
        let b = headers(&[("etag", "\"v2\"")]);
        let c = headers(&[("etag", "\"v1\"")]);
        let w = headers(&[("etag", "W/\"v1\"")]);
        let nm = headers(&[("etag", "\"v1\"")]);
        let set = [sel(&a, T0), sel(&b, T0), sel(&c, T0), sel(&w, T0)];
        assert_eq!(select_for_update(&nm, &set), vec![0, 2]);
    }

    #[test]
    fn rfc9111_4_3_4_strong_etag_without_match_updates_nothing() {
        let a = headers(&[("last-modified", &date(T0))]);
        let nm = headers(&[("etag", "\"v1\""), ("last-modified", &date(T0))]);
        assert!(select_for_update(&nm, &[sel(&a, T0)]).is_empty());
        assert!(!not_modified_applies(&nm, &sel(&a, T0)));
    }

    #[test]
    fn rfc9111_4_3_4_weak_etag_selects_most_recent_match() {
        let old = headers(&[("etag", "W/\"v1\""), ("date", &date(T0))]);
        let new = headers(&[("etag", "\"v1\""), ("date", &date(T0 + 10))]);
        let other = headers(&[("etag", "W/\"v2\""), ("date", &date(T0 + 20))]);
        let nm = headers(&[("etag", "W/\"v1\"")]);
        let set = [sel(&old, T0), sel(&new, T0), sel(&other, T0)];
        assert_eq!(select_for_update(&nm, &set), vec![1]);
    }

    #[test]
    fn rfc9111_4_3_4_last_modified_selects_most_recent_match() {
        let a = headers(&[("last-modified", &date(T0))]);
        let b = headers(&[("last-modified", &date(T0))]);
        let c = headers(&[("last-modified", &date(T0 + 5))]);
        let nm = headers(&[("last-modified", &date(T0))]);
        // No Date: received time decides.
        let set = [sel(&a, T0 + 30), sel(&b, T0 + 10), sel(&c, T0 + 50)];
        assert_eq!(select_for_update(&nm, &set), vec![0]);
        let nm_other = headers(&[("last-modified", &date(T0 + 99))]);
        assert!(select_for_update(&nm_other, &set).is_empty());
    }

    #[test]
    fn rfc9111_4_3_4_no_validators_updates_single_unvalidated_response() {
        let nm = headers(&[("cache-control", "max-age=10")]);
        let plain = headers(&[("content-type", "text/plain")]);
        assert_eq!(select_for_update(&nm, &[sel(&plain, T0)]), vec![0]);
        let with_etag = headers(&[("etag", "\"v1\"")]);
        assert!(select_for_update(&nm, &[sel(&with_etag, T0)]).is_empty());
        assert!(select_for_update(&nm, &[sel(&plain, T0), sel(&plain, T0)]).is_empty());
    }

    #[test]
    fn rfc9111_4_3_3_validatorless_304_freshens_the_one_nominated_response() {
        // The origin left the validators out of its 304 (RFC 9110 §15.4.5 asks for them).
        let nm = headers(&[("date", &date(T0 + 5))]);
        let with_etag = headers(&[("etag", "\"v1\"")]);
        let with_lm = headers(&[("last-modified", &date(T0))]);
        assert!(not_modified_applies(&nm, &sel(&with_etag, T0)));
        assert!(not_modified_applies(&nm, &sel(&with_lm, T0)));
        // An unusable ETag is no validator either.
        let junk = headers(&[("etag", "unquoted")]);
        assert!(not_modified_applies(&junk, &sel(&with_etag, T0)));
        // A validator that names another representation still freshens nothing.
        let other = headers(&[("etag", "\"v2\"")]);
        assert!(!not_modified_applies(&other, &sel(&with_etag, T0)));
        let other_lm = headers(&[("last-modified", &date(T0 + 9))]);
        assert!(!not_modified_applies(&other_lm, &sel(&with_lm, T0)));
    }

    // --- RFC 9111 §3.2: updating stored header fields ---

    #[test]
    fn rfc9111_3_2_freshen_replaces_and_adds_fields() {
        let stored = headers(&[
            ("cache-control", "max-age=10"),
            ("cache-control", "public"),
            ("date", &date(T0)),
            ("content-type", "text/html"),
            ("x-kept", "1"),
        ]);
        let nm = headers(&[
            ("cache-control", "max-age=600"),
            ("date", &date(T0 + 100)),
            ("x-new", "2"),
        ]);
        let out = freshen_headers(&stored, &nm, &[]);
        let cc: Vec<_> = out.get_all("cache-control").iter().collect();
        assert_eq!(cc, vec![&HeaderValue::from_static("max-age=600")]);
        assert_eq!(
            out.get("date").and_then(|v| v.to_str().ok()),
            Some(date(T0 + 100).as_str())
        );
        assert_eq!(out.get("x-new"), Some(&HeaderValue::from_static("2")));
        assert_eq!(out.get("x-kept"), Some(&HeaderValue::from_static("1")));
        assert_eq!(
            out.get("content-type"),
            Some(&HeaderValue::from_static("text/html"))
        );
    }

    #[test]
    fn rfc9111_3_2_content_length_not_updated() {
        let stored = headers(&[("content-length", "1000")]);
        let nm = headers(&[("content-length", "0")]);
        assert_eq!(
            freshen_headers(&stored, &nm, &[]).get("content-length"),
            Some(&HeaderValue::from_static("1000"))
        );
        let stored_without = headers(&[]);
        assert!(!freshen_headers(&stored_without, &nm, &[]).contains_key("content-length"));
    }

    #[test]
    fn rfc9111_3_2_content_range_not_updated() {
        let stored = headers(&[]);
        let nm = headers(&[("content-range", "bytes 0-9/100")]);
        assert!(!freshen_headers(&stored, &nm, &[]).contains_key("content-range"));
    }

    #[test]
    fn rfc9111_3_1_hop_by_hop_and_proxy_fields_not_updated() {
        let stored = headers(&[]);
        let nm = headers(&[
            ("connection", "close, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authenticate", "Basic"),
            ("proxy-authentication-info", "x"),
            ("proxy-authorization", "Basic abc"),
            ("x-end-to-end", "1"),
        ]);
        let out = freshen_headers(&stored, &nm, &[]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out.contains_key("x-end-to-end"));
    }

    #[test]
    fn rfc9111_3_2_content_type_and_encoding_updated_unless_stored_depends_on_them() {
        let stored = headers(&[("content-type", "text/html"), ("content-encoding", "br")]);
        let nm = headers(&[
            ("content-type", "text/html; charset=utf-8"),
            ("content-encoding", "gzip"),
        ]);
        let out = freshen_headers(&stored, &nm, &[]);
        assert_eq!(
            out.get("content-type"),
            Some(&HeaderValue::from_static("text/html; charset=utf-8"))
        );
        assert_eq!(
            out.get("content-encoding"),
            Some(&HeaderValue::from_static("gzip"))
        );
        let kept = freshen_headers(&stored, &nm, &[header::CONTENT_ENCODING]);
        assert_eq!(
            kept.get("content-encoding"),
            Some(&HeaderValue::from_static("br"))
        );
        assert_eq!(
            kept.get("content-type"),
            Some(&HeaderValue::from_static("text/html; charset=utf-8"))
        );
    }

    // --- RFC 9110 §8.8.2.2: strong Last-Modified ---

    #[test]
    fn rfc9110_8_8_2_2_last_modified_strong_only_60s_before_date() {
        let strong = headers(&[("last-modified", &date(T0)), ("date", &date(T0 + 60))]);
        assert!(last_modified_is_strong(&strong));
        let weak = headers(&[("last-modified", &date(T0)), ("date", &date(T0 + 59))]);
        assert!(!last_modified_is_strong(&weak));
        let no_date = headers(&[("last-modified", &date(T0))]);
        assert!(!last_modified_is_strong(&no_date));
    }
}
