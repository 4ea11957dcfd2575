//! Parsing of `Cache-Control` and of targeted cache-control fields.
//!
//! * `Cache-Control` (RFC 9111 §5.2) is parsed leniently: directive names are
//!   case-insensitive, arguments may be tokens or quoted strings (§5.2: "recipients
//!   ought to accept both forms"), all field lines are combined (RFC 9110 §5.3), and
//!   a `"max-age=..."` inside a quoted string of another directive is never seen.
//! * Targeted fields such as `CDN-Cache-Control` (RFC 9213) are Structured Field
//!   Dictionaries (RFC 8941) and are parsed strictly: an invalid field is ignored as a
//!   whole and the next candidate (finally `Cache-Control`) is used.
//!
//! Choices where the RFCs leave room (each is tested):
//! * **Duplicates** (§4.2.1 allows "first occurrence" or "stale"): the first occurrence
//!   of a directive wins, whether it is valid or not; later ones are ignored. For
//!   `no-cache` and `private`, the unqualified form wins over a field list (most
//!   restrictive, §4.2.1).
//! * **Invalid delta-seconds** (`max-age=abc`, `-1`, `1.5`, `'60'`, `max-age =60`,
//!   `max-age= 60`, bare `max-age`): the directive is recorded as [`Delta::Invalid`];
//!   freshness treats an invalid `max-age`/`s-maxage` as "already stale" (§4.2.1:
//!   "caches are encouraged to consider responses that have invalid freshness
//!   information ... to be stale").
//! * **Huge delta-seconds** saturate at 2^31 (§1.2.2).
//! * Invalid **request** directives are ignored (they only state client preferences).

use http::header::{HeaderMap, HeaderName, CACHE_CONTROL, PRAGMA};
use std::time::Duration;

/// The largest delta-seconds value kept (RFC 9111 §1.2.2): 2^31.
pub const DELTA_SECONDS_MAX: u32 = 2_147_483_648;

/// A directive argument in delta-seconds (RFC 9111 §1.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delta {
    /// The directive was not present.
    #[default]
    Absent,
    /// A valid value, saturated at [`DELTA_SECONDS_MAX`].
    Valid(u32),
    /// Present with a missing or malformed value.
    Invalid,
}

impl Delta {
    /// Whether the directive appeared at all (valid or not).
    pub fn is_present(self) -> bool {
        !matches!(self, Delta::Absent)
    }

    /// The valid value in seconds.
    pub fn seconds(self) -> Option<u32> {
        match self {
            Delta::Valid(s) => Some(s),
            _ => None,
        }
    }

    /// The valid value as a [`Duration`].
    pub fn duration(self) -> Option<Duration> {
        self.seconds().map(|s| Duration::from_secs(u64::from(s)))
    }
}

/// A directive that is either bare or carries a list of field names
/// (`no-cache`, `private`: RFC 9111 §5.2.2.4, §5.2.2.7).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Qualified {
    /// Not present.
    #[default]
    Absent,
    /// Present without an argument (or with an unusable one): applies to the whole response.
    All,
    /// Present with a list of field names (lowercased).
    Fields(Vec<String>),
}

impl Qualified {
    /// Whether the directive appeared at all.
    pub fn is_present(&self) -> bool {
        !matches!(self, Qualified::Absent)
    }
}

/// The `max-stale` request directive (RFC 9111 §5.2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaxStale {
    /// Not present (or present with an invalid value, which is ignored).
    #[default]
    Absent,
    /// Present without a value: any staleness is acceptable.
    Any,
    /// Staleness up to this many seconds is acceptable.
    Seconds(u32),
}

/// Cache directives from one field (request or response side).
///
/// Response-only and request-only directives share the struct; each side reads
/// the fields that apply to it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CacheControl {
    /// `no-store` (§5.2.1.5, §5.2.2.5).
    pub no_store: bool,
    /// `no-cache` (§5.2.1.4, §5.2.2.4).
    pub no_cache: Qualified,
    /// `private` (§5.2.2.7).
    pub private: Qualified,
    /// `public` (§5.2.2.9).
    pub public: bool,
    /// `max-age` (§5.2.1.1, §5.2.2.1).
    pub max_age: Delta,
    /// `s-maxage` (§5.2.2.10).
    pub s_maxage: Delta,
    /// `must-revalidate` (§5.2.2.2).
    pub must_revalidate: bool,
    /// `proxy-revalidate` (§5.2.2.8).
    pub proxy_revalidate: bool,
    /// `must-understand` (§5.2.2.3).
    pub must_understand: bool,
    /// `no-transform` (§5.2.1.6, §5.2.2.6).
    pub no_transform: bool,
    /// `immutable` (RFC 8246).
    pub immutable: bool,
    /// `stale-while-revalidate` (RFC 5861 §3).
    pub stale_while_revalidate: Delta,
    /// `stale-if-error` (RFC 5861 §4).
    pub stale_if_error: Delta,
    /// `max-stale` request directive (§5.2.1.2).
    pub max_stale: MaxStale,
    /// `min-fresh` request directive (§5.2.1.3).
    pub min_fresh: Delta,
    /// `only-if-cached` request directive (§5.2.1.7).
    pub only_if_cached: bool,
}

impl CacheControl {
    /// Parses and combines any number of `Cache-Control` field lines (RFC 9111 §5.2).
    pub fn parse<'a, I>(lines: I) -> CacheControl
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let mut cc = CacheControl::default();
        let mut seen: Vec<String> = Vec::new();
        for line in lines {
            for (name, value) in split_directives(line) {
                cc.apply(&name, value, &mut seen);
            }
        }
        cc
    }

    /// Parses all `Cache-Control` lines of a header map.
    pub fn from_headers(headers: &HeaderMap) -> CacheControl {
        CacheControl::parse(headers.get_all(CACHE_CONTROL).iter().map(|v| v.as_bytes()))
    }

    fn apply(&mut self, name: &str, value: RawValue, seen: &mut Vec<String>) {
        // no-cache / private: the unqualified form wins whenever it appears.
        match name {
            "no-cache" => {
                self.no_cache = merge_qualified(std::mem::take(&mut self.no_cache), &value);
                return;
            }
            "private" => {
                self.private = merge_qualified(std::mem::take(&mut self.private), &value);
                return;
            }
            _ => {}
        }
        // Everything else: the first occurrence wins (§4.2.1).
        if seen.iter().any(|s| s == name) {
            return;
        }
        match name {
            "no-store" => self.no_store = true,
            "public" => self.public = true,
            "must-revalidate" => self.must_revalidate = true,
            "proxy-revalidate" => self.proxy_revalidate = true,
            "must-understand" => self.must_understand = true,
            "no-transform" => self.no_transform = true,
            "immutable" => self.immutable = true,
            "only-if-cached" => self.only_if_cached = true,
            "max-age" => self.max_age = parse_delta(&value),
            "s-maxage" => self.s_maxage = parse_delta(&value),
            "stale-while-revalidate" => self.stale_while_revalidate = parse_delta(&value),
            "stale-if-error" => self.stale_if_error = parse_delta(&value),
            "min-fresh" => self.min_fresh = parse_delta(&value),
            "max-stale" => {
                self.max_stale = match value {
                    RawValue::None => MaxStale::Any,
                    _ => match parse_delta(&value) {
                        Delta::Valid(s) => MaxStale::Seconds(s),
                        _ => MaxStale::Absent,
                    },
                }
            }
            _ => return, // extensions are ignored (§5.2.3)
        }
        seen.push(name.to_string());
    }
}

/// Request directives (RFC 9111 §5.2.1): `Cache-Control`, or `Pragma: no-cache`
/// when the request has no `Cache-Control` field (§5.4).
pub fn request_directives(headers: &HeaderMap) -> CacheControl {
    if headers.contains_key(CACHE_CONTROL) {
        return CacheControl::from_headers(headers);
    }
    let mut cc = CacheControl::default();
    let pragma_no_cache = headers.get_all(PRAGMA).iter().any(|v| {
        split_directives(v.as_bytes())
            .iter()
            .any(|(n, _)| n == "no-cache")
    });
    if pragma_no_cache {
        cc.no_cache = Qualified::All;
    }
    cc
}

/// Where the response directives in [`ResponseDirectives`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectiveSource {
    /// A targeted field (RFC 9213), e.g. `CDN-Cache-Control`.
    Targeted(HeaderName),
    /// `Cache-Control` (possibly absent, giving empty directives).
    CacheControl,
}

/// The response directives a cache uses, after targeted-field selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseDirectives {
    /// The directives.
    pub cc: CacheControl,
    /// Their source.
    pub source: DirectiveSource,
}

impl ResponseDirectives {
    /// RFC 9213 §2.2: when a targeted field is used, `Cache-Control` **and `Expires`**
    /// are ignored.
    pub fn ignores_expires(&self) -> bool {
        matches!(self.source, DirectiveSource::Targeted(_))
    }

    /// Directives parsed from `Cache-Control` only.
    pub fn from_cache_control(headers: &HeaderMap) -> ResponseDirectives {
        ResponseDirectives {
            cc: CacheControl::from_headers(headers),
            source: DirectiveSource::CacheControl,
        }
    }
}

/// Selects the response directives for this cache (RFC 9213 §2.2).
///
/// `targeted` is the cache's target list in priority order (e.g.
/// `["velox-cache-control", "cdn-cache-control"]`). The first field in that list that
/// is present, a valid Structured Field Dictionary and non-empty wins entirely; if
/// none qualifies, `Cache-Control` is used.
pub fn select_response_directives(
    headers: &HeaderMap,
    targeted: &[HeaderName],
) -> ResponseDirectives {
    for name in targeted {
        let mut lines = headers.get_all(name).iter().peekable();
        if lines.peek().is_none() {
            continue;
        }
        // Multiple lines combine as a comma-separated list (RFC 8941 §4.2).
        let mut combined: Vec<u8> = Vec::new();
        for (i, v) in lines.enumerate() {
            if i > 0 {
                combined.extend_from_slice(b", ");
            }
            combined.extend_from_slice(v.as_bytes());
        }
        if let Some(cc) = parse_targeted(&combined) {
            return ResponseDirectives {
                cc,
                source: DirectiveSource::Targeted(name.clone()),
            };
        }
    }
    ResponseDirectives::from_cache_control(headers)
}

/// Parses one targeted field value (RFC 9213 §2.1). `None` when the value is not a
/// valid, non-empty Structured Field Dictionary, or when a known directive has a value
/// of the wrong type (e.g. `max-age="60"`): the field is then ignored as a whole.
pub fn parse_targeted(value: &[u8]) -> Option<CacheControl> {
    let dict = sf::parse_dictionary(value)?;
    if dict.is_empty() {
        return None;
    }
    let mut cc = CacheControl::default();
    for (key, member) in dict {
        match key.as_str() {
            "max-age" => cc.max_age = sf_delta(&member)?,
            "s-maxage" => cc.s_maxage = sf_delta(&member)?,
            "stale-while-revalidate" => cc.stale_while_revalidate = sf_delta(&member)?,
            "stale-if-error" => cc.stale_if_error = sf_delta(&member)?,
            "no-store" => cc.no_store = sf_flag(&member)?,
            "public" => cc.public = sf_flag(&member)?,
            "must-revalidate" => cc.must_revalidate = sf_flag(&member)?,
            "proxy-revalidate" => cc.proxy_revalidate = sf_flag(&member)?,
            "must-understand" => cc.must_understand = sf_flag(&member)?,
            "no-transform" => cc.no_transform = sf_flag(&member)?,
            "immutable" => cc.immutable = sf_flag(&member)?,
            "no-cache" => cc.no_cache = sf_qualified(&member)?,
            "private" => cc.private = sf_qualified(&member)?,
            _ => {}
        }
    }
    Some(cc)
}

fn sf_delta(m: &sf::Member) -> Option<Delta> {
    match m {
        sf::Member::Item(sf::Bare::Integer(i)) if *i >= 0 => Some(Delta::Valid(
            u32::try_from(*i).map_or(DELTA_SECONDS_MAX, |v| v.min(DELTA_SECONDS_MAX)),
        )),
        // A negative integer is well-typed but not a valid delta-seconds.
        sf::Member::Item(sf::Bare::Integer(_)) => Some(Delta::Invalid),
        _ => None,
    }
}

fn sf_flag(m: &sf::Member) -> Option<bool> {
    match m {
        sf::Member::Item(sf::Bare::Boolean(b)) => Some(*b),
        _ => None,
    }
}

fn sf_qualified(m: &sf::Member) -> Option<Qualified> {
    match m {
        sf::Member::Item(sf::Bare::Boolean(true)) => Some(Qualified::All),
        sf::Member::Item(sf::Bare::Boolean(false)) => Some(Qualified::Absent),
        sf::Member::Item(sf::Bare::String(s)) => Some(field_list(s)),
        sf::Member::InnerList(items) => {
            let mut names = Vec::new();
            for it in items {
                match it {
                    sf::Bare::String(s) | sf::Bare::Token(s) => names.push(s.to_ascii_lowercase()),
                    _ => return None,
                }
            }
            if names.is_empty() {
                Some(Qualified::All)
            } else {
                Some(Qualified::Fields(names))
            }
        }
        _ => None,
    }
}

/// A directive argument as found in a `Cache-Control` line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RawValue {
    /// No `=`.
    None,
    /// A token or the unescaped content of a quoted string.
    Value(String),
    /// Syntactically broken (space around `=`, unterminated quote, trailing junk).
    Broken,
}

fn merge_qualified(current: Qualified, value: &RawValue) -> Qualified {
    let new = match value {
        RawValue::Value(v) => field_list(v),
        _ => Qualified::All,
    };
    match (current, new) {
        (Qualified::All, _) | (_, Qualified::All) => Qualified::All,
        (Qualified::Fields(mut a), Qualified::Fields(b)) => {
            for f in b {
                if !a.contains(&f) {
                    a.push(f);
                }
            }
            Qualified::Fields(a)
        }
        (Qualified::Absent, q) | (q, Qualified::Absent) => q,
    }
}

fn field_list(v: &str) -> Qualified {
    let names: Vec<String> = v
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() {
        Qualified::All
    } else {
        Qualified::Fields(names)
    }
}

/// delta-seconds = 1*DIGIT (RFC 9111 §1.2.2), saturating at 2^31.
fn parse_delta(value: &RawValue) -> Delta {
    match value {
        RawValue::Value(v) => parse_delta_str(v).map_or(Delta::Invalid, Delta::Valid),
        _ => Delta::Invalid,
    }
}

/// Parses `1*DIGIT`, saturating at 2^31 (RFC 9111 §1.2.2). `None` if not all digits.
pub fn parse_delta_str(v: &str) -> Option<u32> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut acc: u64 = 0;
    for b in v.bytes() {
        acc = acc * 10 + u64::from(b - b'0');
        if acc >= u64::from(DELTA_SECONDS_MAX) {
            return Some(DELTA_SECONDS_MAX);
        }
    }
    u32::try_from(acc).ok()
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Splits one `Cache-Control`-style line into (lowercased name, value) pairs.
/// Commas inside quoted strings do not split. Elements that do not start with a
/// token are skipped.
fn split_directives(line: &[u8]) -> Vec<(String, RawValue)> {
    let mut out = Vec::new();
    let mut i = 0;
    let n = line.len();
    while i < n {
        while i < n && (is_ows(line[i]) || line[i] == b',') {
            i += 1;
        }
        if i >= n {
            break;
        }
        let start = i;
        while i < n && is_tchar(line[i]) {
            i += 1;
        }
        if start == i {
            i = skip_element(line, i);
            continue;
        }
        let name = String::from_utf8_lossy(&line[start..i]).to_ascii_lowercase();
        let ws_start = i;
        while i < n && is_ows(line[i]) {
            i += 1;
        }
        let had_ws = i > ws_start;
        let mut value = RawValue::None;
        if i < n && line[i] == b'=' {
            i += 1;
            if had_ws || i >= n || is_ows(line[i]) {
                value = RawValue::Broken;
            } else if line[i] == b'"' {
                match parse_quoted(line, i) {
                    Some((s, next)) => {
                        value = RawValue::Value(s);
                        i = next;
                    }
                    None => {
                        value = RawValue::Broken;
                        i = n;
                    }
                }
            } else {
                let vs = i;
                while i < n && is_tchar(line[i]) {
                    i += 1;
                }
                value = if vs == i {
                    RawValue::Broken
                } else {
                    RawValue::Value(String::from_utf8_lossy(&line[vs..i]).into_owned())
                };
            }
        }
        while i < n && is_ows(line[i]) {
            i += 1;
        }
        if i < n && line[i] != b',' {
            // Trailing junk such as `max-age=1.5` or `max-age='60'`.
            value = RawValue::Broken;
            i = skip_element(line, i);
        }
        out.push((name, value));
    }
    out
}

/// Skips to the next top-level comma, respecting quoted strings.
fn skip_element(line: &[u8], mut i: usize) -> usize {
    let n = line.len();
    while i < n && line[i] != b',' {
        if line[i] == b'"' {
            match parse_quoted(line, i) {
                Some((_, next)) => i = next,
                None => return n,
            }
        } else {
            i += 1;
        }
    }
    i
}

/// Parses a quoted-string starting at `line[start] == '"'`; returns the unescaped
/// content and the index after the closing quote.
fn parse_quoted(line: &[u8], start: usize) -> Option<(String, usize)> {
    let mut out = Vec::new();
    let mut i = start + 1;
    while i < line.len() {
        match line[i] {
            b'"' => return Some((String::from_utf8_lossy(&out).into_owned(), i + 1)),
            b'\\' => {
                let c = *line.get(i + 1)?;
                out.push(c);
                i += 2;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    None
}

/// A minimal RFC 8941 Structured Field Dictionary parser (enough to validate a
/// targeted cache-control field; parameters are parsed and dropped).
mod sf {
    #[derive(Debug, Clone, PartialEq)]
    pub enum Bare {
        Integer(i64),
        Decimal,
        String(String),
        Token(String),
        Bytes,
        Boolean(bool),
    }

    #[derive(Debug, Clone, PartialEq)]
    pub enum Member {
        Item(Bare),
        InnerList(Vec<Bare>),
    }

    struct P<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl P<'_> {
        fn peek(&self) -> Option<u8> {
            self.s.get(self.i).copied()
        }
        fn sp(&mut self) {
            while self.peek() == Some(b' ') {
                self.i += 1;
            }
        }
        fn ows(&mut self) {
            while matches!(self.peek(), Some(b' ') | Some(b'\t')) {
                self.i += 1;
            }
        }
    }

    /// RFC 8941 §4.2 + §4.2.2. `None` on any syntax error.
    pub fn parse_dictionary(input: &[u8]) -> Option<Vec<(String, Member)>> {
        let mut p = P { s: input, i: 0 };
        p.sp();
        let mut out: Vec<(String, Member)> = Vec::new();
        while p.peek().is_some() {
            let key = key(&mut p)?;
            let member = if p.peek() == Some(b'=') {
                p.i += 1;
                member(&mut p)?
            } else {
                params(&mut p)?;
                Member::Item(Bare::Boolean(true))
            };
            if let Some(slot) = out.iter_mut().find(|(k, _)| *k == key) {
                slot.1 = member; // last one wins (RFC 8941 §4.2.2)
            } else {
                out.push((key, member));
            }
            p.ows();
            match p.peek() {
                None => return Some(out),
                Some(b',') => {
                    p.i += 1;
                    p.ows();
                    p.peek()?; // trailing comma
                }
                Some(_) => return None,
            }
        }
        Some(out)
    }

    fn key(p: &mut P) -> Option<String> {
        let first = p.peek()?;
        if !(first.is_ascii_lowercase() || first == b'*') {
            return None;
        }
        let start = p.i;
        while let Some(c) = p.peek() {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.*".contains(&c) {
                p.i += 1;
            } else {
                break;
            }
        }
        Some(String::from_utf8_lossy(&p.s[start..p.i]).into_owned())
    }

    fn member(p: &mut P) -> Option<Member> {
        if p.peek() == Some(b'(') {
            p.i += 1;
            let mut items = Vec::new();
            loop {
                p.sp();
                match p.peek()? {
                    b')' => {
                        p.i += 1;
                        params(p)?;
                        return Some(Member::InnerList(items));
                    }
                    _ => {
                        items.push(bare(p)?);
                        params(p)?;
                        match p.peek()? {
                            b' ' | b')' => {}
                            _ => return None,
                        }
                    }
                }
            }
        }
        let b = bare(p)?;
        params(p)?;
        Some(Member::Item(b))
    }

    fn params(p: &mut P) -> Option<()> {
        while p.peek() == Some(b';') {
            p.i += 1;
            p.sp();
            key(p)?;
            if p.peek() == Some(b'=') {
                p.i += 1;
                bare(p)?;
            }
        }
        Some(())
    }

    fn bare(p: &mut P) -> Option<Bare> {
        let c = p.peek()?;
        match c {
            b'-' | b'0'..=b'9' => number(p),
            b'"' => {
                p.i += 1;
                let mut out = String::new();
                loop {
                    let c = p.peek()?;
                    p.i += 1;
                    match c {
                        b'\\' => {
                            let e = p.peek()?;
                            if e != b'"' && e != b'\\' {
                                return None;
                            }
                            out.push(char::from(e));
                            p.i += 1;
                        }
                        b'"' => return Some(Bare::String(out)),
                        0x20..=0x7e => out.push(char::from(c)),
                        _ => return None,
                    }
                }
            }
            b':' => {
                p.i += 1;
                loop {
                    let c = p.peek()?;
                    p.i += 1;
                    if c == b':' {
                        return Some(Bare::Bytes);
                    }
                    if !(c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'=') {
                        return None;
                    }
                }
            }
            b'?' => {
                p.i += 1;
                let v = p.peek()?;
                p.i += 1;
                match v {
                    b'1' => Some(Bare::Boolean(true)),
                    b'0' => Some(Bare::Boolean(false)),
                    _ => None,
                }
            }
            c if c.is_ascii_alphabetic() || c == b'*' => {
                let start = p.i;
                while let Some(c) = p.peek() {
                    if super::is_tchar(c) || c == b':' || c == b'/' {
                        p.i += 1;
                    } else {
                        break;
                    }
                }
                Some(Bare::Token(
                    String::from_utf8_lossy(&p.s[start..p.i]).into_owned(),
                ))
            }
            _ => None,
        }
    }

    /// RFC 8941 §4.2.4.
    fn number(p: &mut P) -> Option<Bare> {
        let mut neg = false;
        if p.peek() == Some(b'-') {
            neg = true;
            p.i += 1;
        }
        if !p.peek()?.is_ascii_digit() {
            return None;
        }
        let start = p.i;
        let mut dot: Option<usize> = None;
        while let Some(c) = p.peek() {
            if c.is_ascii_digit() {
                p.i += 1;
            } else if c == b'.' && dot.is_none() {
                if p.i - start > 12 {
                    return None;
                }
                dot = Some(p.i);
                p.i += 1;
            } else {
                break;
            }
            let len = p.i - start;
            if (dot.is_none() && len > 15) || (dot.is_some() && len > 16) {
                return None;
            }
        }
        match dot {
            Some(d) => {
                let frac = p.i - d - 1;
                if frac == 0 || frac > 3 {
                    return None;
                }
                Some(Bare::Decimal)
            }
            None => {
                let digits = std::str::from_utf8(&p.s[start..p.i]).ok()?;
                let v: i64 = digits.parse().ok()?;
                Some(Bare::Integer(if neg { -v } else { v }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn cc(s: &str) -> CacheControl {
        CacheControl::parse([s.as_bytes()])
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("test header name"),
                HeaderValue::from_str(v).expect("test header value"),
            );
        }
        h
    }

    #[test]
    fn rfc9111_5_2_2_1_max_age_basic() {
        assert_eq!(cc("max-age=60").max_age, Delta::Valid(60));
        assert_eq!(cc("max-age=0").max_age, Delta::Valid(0));
    }

    #[test]
    fn rfc9111_5_2_names_case_insensitive() {
        let c = cc("MAX-AGE=60, No-Store, PUBLIC");
        assert_eq!(c.max_age, Delta::Valid(60));
        assert!(c.no_store && c.public);
    }

    #[test]
    fn rfc9111_5_2_quoted_argument_accepted() {
        // §5.2: "recipients ought to accept both forms" (token and quoted-string).
        assert_eq!(cc("max-age=\"60\"").max_age, Delta::Valid(60));
        assert_eq!(cc("s-maxage=\"7\"").s_maxage, Delta::Valid(7));
    }

    #[test]
    fn rfc9111_5_2_single_quotes_invalid() {
        assert_eq!(cc("max-age='60'").max_age, Delta::Invalid);
    }

    #[test]
    fn rfc9111_1_2_2_invalid_delta_seconds() {
        for v in [
            "max-age=abc",
            "max-age=-1",
            "max-age=1.5",
            "max-age=3600.0",
            "max-age=3600a",
            "max-age=a3600",
            "max-age",
            "max-age=",
            "max-age=\"\"",
            "max-age=\"1 2\"",
        ] {
            assert_eq!(cc(v).max_age, Delta::Invalid, "{v}");
        }
    }

    #[test]
    fn rfc9111_5_2_whitespace_around_equals_is_invalid() {
        // The grammar has no OWS around "=" (§5.2).
        assert_eq!(cc("max-age =3600").max_age, Delta::Invalid);
        assert_eq!(cc("max-age= 3600").max_age, Delta::Invalid);
    }

    #[test]
    fn rfc9111_1_2_2_leading_zeros_valid() {
        assert_eq!(cc("max-age=003600").max_age, Delta::Valid(3600));
    }

    #[test]
    fn rfc9111_1_2_2_huge_values_saturate_at_2_pow_31() {
        assert_eq!(
            cc("max-age=99999999999999999999999").max_age,
            Delta::Valid(DELTA_SECONDS_MAX)
        );
        assert_eq!(
            cc("max-age=2147483648").max_age,
            Delta::Valid(DELTA_SECONDS_MAX)
        );
        assert_eq!(cc("max-age=2147483647").max_age, Delta::Valid(2147483647));
    }

    #[test]
    fn rfc9111_4_2_1_duplicate_directive_first_wins() {
        assert_eq!(cc("max-age=1800, max-age=1").max_age, Delta::Valid(1800));
        assert_eq!(cc("max-age=1, max-age=1800").max_age, Delta::Valid(1));
        // first occurrence wins even when it is the invalid one
        assert_eq!(cc("max-age=x, max-age=60").max_age, Delta::Invalid);
    }

    #[test]
    fn rfc9110_5_3_multiple_field_lines_combine() {
        let h = headers(&[
            ("cache-control", "max-age=1800"),
            ("cache-control", "max-age=1"),
        ]);
        assert_eq!(CacheControl::from_headers(&h).max_age, Delta::Valid(1800));
        let h = headers(&[("cache-control", "public"), ("cache-control", "s-maxage=5")]);
        let c = CacheControl::from_headers(&h);
        assert!(c.public);
        assert_eq!(c.s_maxage, Delta::Valid(5));
    }

    #[test]
    fn rfc9111_5_2_quoted_string_hides_directives() {
        let c = cc("extension=\"max-age=3600\", max-age=1");
        assert_eq!(c.max_age, Delta::Valid(1));
        let c = cc("max-age=1, extension=\"max-age=3600, no-store\"");
        assert_eq!(c.max_age, Delta::Valid(1));
        assert!(!c.no_store);
    }

    #[test]
    fn rfc9111_5_2_unterminated_quote_does_not_panic() {
        let c = cc("no-cache=\"set-cookie, max-age=10");
        assert_eq!(c.no_cache, Qualified::All);
        assert_eq!(c.max_age, Delta::Absent);
    }

    #[test]
    fn rfc9111_5_2_2_4_no_cache_bare_and_qualified() {
        assert_eq!(cc("no-cache").no_cache, Qualified::All);
        assert_eq!(
            cc("no-cache=\"Set-Cookie, X-Foo\"").no_cache,
            Qualified::Fields(vec!["set-cookie".into(), "x-foo".into()])
        );
        assert_eq!(
            cc("no-cache=set-cookie").no_cache,
            Qualified::Fields(vec!["set-cookie".into()])
        );
    }

    #[test]
    fn rfc9111_4_2_1_no_cache_unqualified_wins_over_list() {
        assert_eq!(cc("no-cache=\"a\", no-cache").no_cache, Qualified::All);
        assert_eq!(cc("no-cache, no-cache=\"a\"").no_cache, Qualified::All);
        assert_eq!(
            cc("no-cache=\"a\", no-cache=\"b\"").no_cache,
            Qualified::Fields(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn rfc9111_5_2_2_7_private_bare_and_qualified() {
        assert_eq!(cc("private").private, Qualified::All);
        assert_eq!(
            cc("private=\"set-cookie\"").private,
            Qualified::Fields(vec!["set-cookie".into()])
        );
        assert_eq!(cc("private=\"\"").private, Qualified::All);
    }

    #[test]
    fn rfc9111_5_2_2_response_flags() {
        let c = cc("must-revalidate, proxy-revalidate, must-understand, no-transform, immutable, public, no-store");
        assert!(c.must_revalidate && c.proxy_revalidate && c.must_understand);
        assert!(c.no_transform && c.immutable && c.public && c.no_store);
    }

    #[test]
    fn rfc5861_swr_and_sie_parsed() {
        let c = cc("max-age=1, stale-while-revalidate=30, stale-if-error=600");
        assert_eq!(c.stale_while_revalidate, Delta::Valid(30));
        assert_eq!(c.stale_if_error, Delta::Valid(600));
        assert_eq!(cc("stale-if-error").stale_if_error, Delta::Invalid);
    }

    #[test]
    fn rfc9111_5_2_1_request_directives() {
        let c = cc("max-age=5, min-fresh=10, only-if-cached, no-cache, no-store");
        assert_eq!(c.max_age, Delta::Valid(5));
        assert_eq!(c.min_fresh, Delta::Valid(10));
        assert!(c.only_if_cached && c.no_store);
        assert_eq!(c.no_cache, Qualified::All);
    }

    #[test]
    fn rfc9111_5_2_1_2_max_stale_forms() {
        assert_eq!(cc("max-stale").max_stale, MaxStale::Any);
        assert_eq!(cc("max-stale=30").max_stale, MaxStale::Seconds(30));
        assert_eq!(cc("max-stale=\"30\"").max_stale, MaxStale::Seconds(30));
        // invalid value: ignored (no permission to serve stale)
        assert_eq!(cc("max-stale=abc").max_stale, MaxStale::Absent);
        assert_eq!(cc("").max_stale, MaxStale::Absent);
    }

    #[test]
    fn rfc9111_5_2_3_unknown_extensions_and_junk_ignored() {
        let c = cc("foo, bar=baz, &&&&, , ,max-age=10,=5");
        assert_eq!(c.max_age, Delta::Valid(10));
        let c = cc(",,,");
        assert_eq!(c, CacheControl::default());
    }

    #[test]
    fn rfc9111_5_2_non_utf8_bytes_do_not_panic() {
        let c = CacheControl::parse([&b"max-age=10, x=\xff\xfe, \xff"[..]]);
        assert_eq!(c.max_age, Delta::Valid(10));
    }

    #[test]
    fn rfc9111_5_4_pragma_no_cache_without_cache_control() {
        let h = headers(&[("pragma", "no-cache")]);
        assert_eq!(request_directives(&h).no_cache, Qualified::All);
        let h = headers(&[("pragma", "No-Cache")]);
        assert_eq!(request_directives(&h).no_cache, Qualified::All);
        let h = headers(&[("pragma", "foo")]);
        assert_eq!(request_directives(&h).no_cache, Qualified::Absent);
    }

    #[test]
    fn rfc9111_5_4_pragma_ignored_when_cache_control_present() {
        let h = headers(&[("pragma", "no-cache"), ("cache-control", "max-age=10")]);
        let c = request_directives(&h);
        assert_eq!(c.no_cache, Qualified::Absent);
        assert_eq!(c.max_age, Delta::Valid(10));
    }

    fn targets() -> Vec<HeaderName> {
        vec![
            HeaderName::from_static("velox-cache-control"),
            HeaderName::from_static("cdn-cache-control"),
        ]
    }

    #[test]
    fn rfc9213_2_2_targeted_field_wins_over_cache_control() {
        let h = headers(&[
            ("cache-control", "max-age=3600"),
            ("cdn-cache-control", "max-age=1"),
        ]);
        let d = select_response_directives(&h, &targets());
        assert_eq!(d.cc.max_age, Delta::Valid(1));
        assert_eq!(
            d.source,
            DirectiveSource::Targeted(HeaderName::from_static("cdn-cache-control"))
        );
        assert!(d.ignores_expires());
    }

    #[test]
    fn rfc9213_2_2_first_in_target_list_wins() {
        let h = headers(&[
            ("cdn-cache-control", "max-age=1"),
            ("velox-cache-control", "max-age=99"),
        ]);
        let d = select_response_directives(&h, &targets());
        assert_eq!(d.cc.max_age, Delta::Valid(99));
    }

    #[test]
    fn rfc9213_2_2_targeted_replaces_entirely() {
        // CDN-Cache-Control: max-age wins even with Cache-Control: no-store.
        let h = headers(&[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=10000"),
        ]);
        let d = select_response_directives(&h, &targets());
        assert!(!d.cc.no_store);
        assert_eq!(d.cc.max_age, Delta::Valid(10000));
    }

    #[test]
    fn rfc9213_2_1_invalid_sf_falls_back() {
        for bad in [
            "max-age=10000, &&&&&",
            "max-age=\"10000\"",
            "max-age =100",
            "max-age= 100",
            "MaX-aGe=3600",
            "max-age=10,",
            "max-age=1.5",
            "no-store=5",
        ] {
            let h = headers(&[("cache-control", "no-store"), ("cdn-cache-control", bad)]);
            let d = select_response_directives(&h, &targets());
            assert_eq!(d.source, DirectiveSource::CacheControl, "{bad}");
            assert!(d.cc.no_store, "{bad}");
        }
    }

    #[test]
    fn rfc9213_2_2_empty_targeted_field_falls_back() {
        let h = headers(&[("cache-control", "max-age=5"), ("cdn-cache-control", "")]);
        let d = select_response_directives(&h, &targets());
        assert_eq!(d.source, DirectiveSource::CacheControl);
        assert_eq!(d.cc.max_age, Delta::Valid(5));
    }

    #[test]
    fn rfc9213_2_1_invalid_first_target_uses_next() {
        let h = headers(&[
            ("velox-cache-control", "&&"),
            ("cdn-cache-control", "max-age=7"),
        ]);
        let d = select_response_directives(&h, &targets());
        assert_eq!(d.cc.max_age, Delta::Valid(7));
    }

    #[test]
    fn rfc9213_2_1_sf_members() {
        let c = parse_targeted(
            b"private, no-cache=\"set-cookie\", s-maxage=5;foo=bar, ext=(a b), stale-if-error=60",
        )
        .expect("valid");
        assert_eq!(c.private, Qualified::All);
        assert_eq!(c.no_cache, Qualified::Fields(vec!["set-cookie".into()]));
        assert_eq!(c.s_maxage, Delta::Valid(5));
        assert_eq!(c.stale_if_error, Delta::Valid(60));
        let c = parse_targeted(b"private=(\"set-cookie\" x-a)").expect("valid");
        assert_eq!(
            c.private,
            Qualified::Fields(vec!["set-cookie".into(), "x-a".into()])
        );
    }

    #[test]
    fn rfc9213_2_1_sf_huge_and_negative_integers() {
        let c = parse_targeted(b"max-age=99999999999").expect("valid");
        assert_eq!(c.max_age, Delta::Valid(DELTA_SECONDS_MAX));
        let c = parse_targeted(b"max-age=-5").expect("valid SF");
        assert_eq!(c.max_age, Delta::Invalid);
        // more than 15 digits is not a valid sf-integer
        assert!(parse_targeted(b"max-age=9999999999999999").is_none());
    }

    #[test]
    fn rfc8941_4_2_2_duplicate_keys_last_wins_in_targeted_field() {
        let c = parse_targeted(b"max-age=1, max-age=60").expect("valid");
        assert_eq!(c.max_age, Delta::Valid(60));
    }

    #[test]
    fn rfc9213_2_2_multiple_targeted_lines_combine() {
        let h = headers(&[
            ("cdn-cache-control", "public"),
            ("cdn-cache-control", "max-age=9"),
        ]);
        let d = select_response_directives(&h, &targets());
        assert!(d.cc.public);
        assert_eq!(d.cc.max_age, Delta::Valid(9));
    }

    #[test]
    fn rfc9213_2_2_no_targeted_field_uses_cache_control() {
        let h = headers(&[("cache-control", "max-age=5")]);
        let d = select_response_directives(&h, &targets());
        assert_eq!(d.source, DirectiveSource::CacheControl);
        assert!(!d.ignores_expires());
        let d = select_response_directives(&h, &[]);
        assert_eq!(d.cc.max_age, Delta::Valid(5));
    }
}
