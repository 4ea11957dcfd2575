//! Secondary cache keys from `Vary` (RFC 9111 §4.1) and `Accept-Encoding` normalisation
//! (RFC 9110 §12.5.3).
//!
//! A stored response with `Vary` may only be reused for a request whose nominated header fields
//! match those of the request that produced it. Velox reduces that to string equality: at store
//! time it computes [`secondary_key`] from the stored `Vary` and the original request, and at
//! lookup time the same function over the stored `Vary` and the new request; equal keys mean
//! the request matches ([`vary_matches`] does both).
//!
//! Normalisation (RFC 9111 §4.1 allows whitespace changes, combining field lines, and
//! semantics-preserving normalisation):
//!
//! * field names are case-insensitive; the `Vary` members are sorted and deduplicated;
//! * a field absent from the request only matches an absent field (an empty field is present);
//! * by default each field line is trimmed and the lines joined with `", "`;
//! * `Accept`, `Accept-Charset`, `Accept-Language`: list members trimmed, empty members
//!   dropped, joined with `","`; `Accept-Charset` and `Accept-Language` lower-cased;
//! * `Cookie`: pairs trimmed and joined with `"; "` (HTTP/2 splits cookies across lines);
//! * `Accept-Encoding`: replaced by the one coding Velox would serve, see
//!   [`normalize_accept_encoding`], so the many spellings browsers send collapse to few
//!   variants. An absent field is normalised too (to identity), so it shares the identity
//!   variant. The caller must keep the stored variant consistent with its key: the response
//!   stored under `br` must be br-encoded (send the origin the normalised value, or store the
//!   origin's identity representation and derive the encodings).
//!
//! Over-normalising could serve a wrong variant; under-normalising only costs an extra miss, so
//! unknown fields get the conservative treatment.

use std::fmt::Write as _;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The parsed `Vary` of a stored response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaryFields {
    /// A member is `*`: the response never matches a later request (RFC 9111 §4.1).
    Any,
    /// The nominated request fields, lower-case, sorted, without duplicates (possibly empty).
    Fields(Vec<HeaderName>),
}

impl VaryFields {
    /// Parses every `Vary` field line. Members that are not valid field names are ignored.
    pub fn parse<'a>(vary_values: impl IntoIterator<Item = &'a HeaderValue>) -> Self {
        let mut names: Vec<HeaderName> = Vec::new();
        for value in vary_values {
            for member in value.as_bytes().split(|&b| b == b',') {
                let member = trim_ows(member);
                if member == b"*" {
                    return Self::Any;
                }
                if member.is_empty() {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(member) {
                    names.push(name);
                }
            }
        }
        names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        names.dedup();
        Self::Fields(names)
    }
}

/// The secondary cache key of a request for a response with the given `Vary` field lines, or
/// `None` when `Vary` contains `*` (such a response is never reused, RFC 9111 §4.1).
///
/// The key lists each nominated field in name order as `name;` when absent from the request,
/// or `name:LEN:VALUE` when present, where `VALUE` is the normalised value with `%` and
/// non-ASCII or control bytes percent-escaped and `LEN` its length in bytes. Field names never
/// contain `:` or `;` (they are tokens), and values are length-prefixed, so two different
/// normalised requests never share a key. A response without `Vary` (or with an empty one)
/// gets the empty key.
pub fn secondary_key<'a>(
    vary_values: impl IntoIterator<Item = &'a HeaderValue>,
    request: &HeaderMap,
) -> Option<String> {
    let fields = match VaryFields::parse(vary_values) {
        VaryFields::Any => return None,
        VaryFields::Fields(fields) => fields,
    };
    let mut key = String::new();
    for name in &fields {
        key.push_str(name.as_str());
        match normalized_field_value(name, request) {
            None => key.push(';'),
            Some(value) => {
                let escaped = escape(&value);
                let _ = write!(key, ":{}:{}", escaped.len(), escaped);
            }
        }
    }
    Some(key)
}

/// Whether `new_request` matches the request that produced a stored response with these `Vary`
/// field lines (RFC 9111 §4.1). Always false for `Vary: *`.
pub fn vary_matches<'a>(
    vary_values: impl IntoIterator<Item = &'a HeaderValue> + Clone,
    stored_request: &HeaderMap,
    new_request: &HeaderMap,
) -> bool {
    match (
        secondary_key(vary_values.clone(), stored_request),
        secondary_key(vary_values, new_request),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The normalised value of one request field for Vary matching, `None` when absent. See the
/// module documentation for the rules per field.
pub fn normalized_field_value(name: &HeaderName, request: &HeaderMap) -> Option<Vec<u8>> {
    if name == header::ACCEPT_ENCODING {
        return Some(
            normalize_accept_encoding(request)
                .as_str()
                .as_bytes()
                .to_vec(),
        );
    }
    let mut lines = request.get_all(name).iter().peekable();
    lines.peek()?;
    let lowercase = name == header::ACCEPT_LANGUAGE || name == header::ACCEPT_CHARSET;
    let list_separator: Option<(u8, &[u8])> = if name == header::ACCEPT || lowercase {
        Some((b',', b","))
    } else if name == header::COOKIE {
        Some((b';', b"; "))
    } else {
        None
    };
    let mut out: Vec<u8> = Vec::new();
    match list_separator {
        Some((sep, joiner)) => {
            for line in lines {
                for member in split_outside_quotes(line.as_bytes(), sep) {
                    let member = trim_ows(member);
                    if member.is_empty() {
                        continue;
                    }
                    if !out.is_empty() {
                        out.extend_from_slice(joiner);
                    }
                    out.extend_from_slice(member);
                }
            }
        }
        None => {
            for line in lines {
                let line = trim_ows(line.as_bytes());
                if line.is_empty() {
                    continue;
                }
                if !out.is_empty() {
                    out.extend_from_slice(b", ");
                }
                out.extend_from_slice(line);
            }
        }
    }
    if lowercase {
        out.make_ascii_lowercase();
    }
    Some(out)
}

/// A content coding Velox can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContentCoding {
    /// Brotli (RFC 7932).
    Br,
    /// Zstandard (RFC 8878).
    Zstd,
    /// gzip (RFC 9110 §8.4.1.3; `x-gzip` is treated as equivalent).
    Gzip,
    /// No content coding.
    Identity,
}

impl ContentCoding {
    /// Velox's order of preference, used to break ties between equal qvalues.
    pub const PREFERENCE: [ContentCoding; 4] = [Self::Br, Self::Zstd, Self::Gzip, Self::Identity];

    /// The coding's token as used in `Accept-Encoding` and `Content-Encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Br => "br",
            Self::Zstd => "zstd",
            Self::Gzip => "gzip",
            Self::Identity => "identity",
        }
    }

    fn from_token(token: &[u8]) -> Option<Self> {
        let lower = token.to_ascii_lowercase();
        match lower.as_slice() {
            b"br" => Some(Self::Br),
            b"zstd" => Some(Self::Zstd),
            b"gzip" | b"x-gzip" => Some(Self::Gzip),
            b"identity" => Some(Self::Identity),
            _ => None,
        }
    }
}

/// The coding Velox serves for this request among all it can produce:
/// [`negotiate_coding`] over [`ContentCoding::PREFERENCE`], falling back to identity when
/// nothing acceptable is offered. This is the value keyed for `Vary: Accept-Encoding`.
pub fn normalize_accept_encoding(request: &HeaderMap) -> ContentCoding {
    negotiate_coding(request, &ContentCoding::PREFERENCE).unwrap_or(ContentCoding::Identity)
}

/// Chooses the coding to serve among `offered` (RFC 9110 §12.5.3), or `None` when the request
/// excludes all of them.
///
/// * The highest qvalue wins; ties go to the order of [`ContentCoding::PREFERENCE`]
///   (br, zstd, gzip, identity). `q=0` means "not acceptable".
/// * A coding without its own member takes the qvalue of `*` when present; a coding listed
///   explicitly is not affected by `*`. Coding names are case-insensitive; the first member
///   for a coding counts; members with an invalid qvalue are ignored.
/// * `identity` is acceptable unless excluded by `identity;q=0` or by `*;q=0` without an
///   `identity` member; when it is only acceptable by default it ranks below every coding the
///   client listed (lowest qvalue).
/// * No `Accept-Encoding` field: identity when offered. RFC 9110 §12.5.3 makes any coding
///   acceptable then, but clients that omit the field often cannot decode, so Velox stays safe;
///   when identity is not offered, the best offered coding.
/// * An empty field means "no coding": only identity.
pub fn negotiate_coding(request: &HeaderMap, offered: &[ContentCoding]) -> Option<ContentCoding> {
    let mut lines = request.get_all(header::ACCEPT_ENCODING).iter().peekable();
    if lines.peek().is_none() {
        if offered.contains(&ContentCoding::Identity) {
            return Some(ContentCoding::Identity);
        }
        return ContentCoding::PREFERENCE
            .into_iter()
            .find(|c| offered.contains(c));
    }

    // qvalues in thousandths, indexed like PREFERENCE; None = no explicit member.
    let mut explicit: [Option<u16>; 4] = [None; 4];
    let mut star: Option<u16> = None;
    for line in lines {
        for member in line.as_bytes().split(|&b| b == b',') {
            let mut parts = member.split(|&b| b == b';');
            let coding = trim_ows(parts.next().unwrap_or_default());
            if coding.is_empty() {
                continue;
            }
            let mut q = Some(1000);
            for param in parts {
                let param = trim_ows(param);
                if let Some((name, value)) = split_once(param, b'=') {
                    if trim_ows(name).eq_ignore_ascii_case(b"q") {
                        q = parse_qvalue(trim_ows(value));
                    }
                }
            }
            let Some(q) = q else { continue };
            if coding == b"*" {
                star.get_or_insert(q);
            } else if let Some(c) = ContentCoding::from_token(coding) {
                explicit[index(c)].get_or_insert(q);
            }
        }
    }

    let weight = |c: ContentCoding| -> u16 {
        match (explicit[index(c)], star) {
            (Some(q), _) => q,
            (None, Some(q)) => q,
            (None, None) if c == ContentCoding::Identity => 1,
            (None, None) => 0,
        }
    };
    let mut best: Option<(ContentCoding, u16)> = None;
    for c in ContentCoding::PREFERENCE {
        if !offered.contains(&c) {
            continue;
        }
        let q = weight(c);
        if q > 0 && !matches!(best, Some((_, bq)) if q <= bq) {
            best = Some((c, q));
        }
    }
    best.map(|(c, _)| c)
}

fn index(c: ContentCoding) -> usize {
    match c {
        ContentCoding::Br => 0,
        ContentCoding::Zstd => 1,
        ContentCoding::Gzip => 2,
        ContentCoding::Identity => 3,
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` (RFC 9110 §12.4.2), in
/// thousandths.
fn parse_qvalue(value: &[u8]) -> Option<u16> {
    let (int, frac) = match split_once(value, b'.') {
        Some((int, frac)) => (int, frac),
        None => (value, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, d) in frac.iter().enumerate() {
        thousandths += u16::from(d - b'0') * [100, 10, 1][i];
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn split_once(s: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let pos = s.iter().position(|&b| b == sep)?;
    Some((&s[..pos], &s[pos + 1..]))
}

/// Splits on `sep` outside double-quoted strings.
fn split_outside_quotes(s: &[u8], sep: u8) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    parts.push(&s[start..]);
    parts
}

fn trim_ows(s: &[u8]) -> &[u8] {
    super::conditional::trim_ows(s)
}

/// Printable ASCII except `%` stays; everything else becomes `%XX`.
fn escape(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            let name = HeaderName::from_bytes(name.as_bytes()).expect("test header name");
            let value = HeaderValue::from_bytes(value).expect("test header value");
            map.append(name, value);
        }
        map
    }

    fn vary(values: &[&'static str]) -> Vec<HeaderValue> {
        values.iter().map(|v| HeaderValue::from_static(v)).collect()
    }

    fn ae(value: &str) -> HeaderMap {
        headers(&[("accept-encoding", value.as_bytes())])
    }

    // --- RFC 9111 §4.1: Vary parsing and matching ---

    #[test]
    fn rfc9111_4_1_vary_star_never_matches() {
        let v = vary(&["Accept, *"]);
        let req = headers(&[("accept", b"text/html")]);
        assert_eq!(secondary_key(&v, &req), None);
        assert!(!vary_matches(&v, &req, &req));
        assert_eq!(VaryFields::parse(&vary(&["a", " * "])), VaryFields::Any);
    }

    #[test]
    fn rfc9111_4_1_vary_names_case_insensitive_sorted_deduplicated() {
        let parsed = VaryFields::parse(&vary(&["User-Agent, ACCEPT", "accept ,, cookie"]));
        let names = ["accept", "cookie", "user-agent"].map(HeaderName::from_static);
        assert_eq!(parsed, VaryFields::Fields(names.to_vec()));
        let req = headers(&[("accept", b"a"), ("user-agent", b"u")]);
        assert_eq!(
            secondary_key(&vary(&["user-agent, Accept"]), &req),
            secondary_key(&vary(&["accept", "USER-AGENT"]), &req)
        );
    }

    #[test]
    fn rfc9111_4_1_invalid_vary_members_ignored() {
        assert_eq!(
            VaryFields::parse(&vary(&["bad name, x-ok"])),
            VaryFields::Fields(vec![HeaderName::from_static("x-ok")])
        );
    }

    #[test]
    fn rfc9111_4_1_empty_or_absent_vary_gives_empty_key() {
        let req = headers(&[("accept", b"x")]);
        assert_eq!(secondary_key(&vary(&[]), &req), Some(String::new()));
        assert_eq!(secondary_key(&vary(&[""]), &req), Some(String::new()));
    }

    #[test]
    fn rfc9111_4_1_absent_only_matches_absent() {
        let v = vary(&["x-token"]);
        let absent = headers(&[]);
        let empty = headers(&[("x-token", b"")]);
        let set = headers(&[("x-token", b"a")]);
        assert!(vary_matches(&v, &absent, &absent));
        assert!(!vary_matches(&v, &absent, &empty));
        assert!(!vary_matches(&v, &absent, &set));
        assert!(!vary_matches(&v, &set, &absent));
    }

    #[test]
    fn rfc9111_4_1_whitespace_and_combined_lines_match() {
        let v = vary(&["x-thing"]);
        let one_line = headers(&[("x-thing", b"a, b")]);
        let two_lines = headers(&[("x-thing", b" a "), ("x-thing", b"b\t")]);
        assert!(vary_matches(&v, &one_line, &two_lines));
        let different = headers(&[("x-thing", b"b, a")]);
        assert!(
            !vary_matches(&v, &one_line, &different),
            "order kept for unknown fields"
        );
    }

    #[test]
    fn rfc9111_4_1_values_are_case_sensitive_for_unknown_fields() {
        let v = vary(&["x-thing"]);
        assert!(!vary_matches(
            &v,
            &headers(&[("x-thing", b"A")]),
            &headers(&[("x-thing", b"a")])
        ));
    }

    #[test]
    fn rfc9111_4_1_accept_language_list_normalised() {
        let v = vary(&["accept-language"]);
        let a = headers(&[("accept-language", b"en-US, fr;q=0.5")]);
        let b = headers(&[
            ("accept-language", b"EN-us,"),
            ("accept-language", b" fr;q=0.5"),
        ]);
        assert!(vary_matches(&v, &a, &b));
        let c = headers(&[("accept-language", b"fr;q=0.5, en-US")]);
        assert!(!vary_matches(&v, &a, &c));
    }

    #[test]
    fn rfc9111_4_1_accept_list_keeps_quoted_commas() {
        let value = normalized_field_value(
            &header::ACCEPT,
            &headers(&[("accept", b"text/html;x=\"a, b\" , */*")]),
        );
        assert_eq!(value.as_deref(), Some(&b"text/html;x=\"a, b\",*/*"[..]));
    }

    #[test]
    fn rfc9111_4_1_cookie_lines_combined() {
        let v = vary(&["cookie"]);
        let one = headers(&[("cookie", b"a=1; b=2")]);
        let split = headers(&[("cookie", b"a=1"), ("cookie", b"b=2")]);
        assert!(vary_matches(&v, &one, &split));
    }

    #[test]
    fn rfc9111_4_1_accept_encoding_variants_collapse() {
        let v = vary(&["Accept-Encoding"]);
        let chrome = ae("gzip, deflate, br, zstd");
        let other = ae("br");
        assert!(vary_matches(&v, &chrome, &other));
        assert!(!vary_matches(&v, &chrome, &ae("gzip")));
        assert_eq!(
            secondary_key(&v, &chrome).as_deref(),
            Some("accept-encoding:2:br")
        );
        // Accept-Encoding is keyed by the coding served, so an absent field (served identity)
        // shares the identity variant.
        assert_eq!(
            secondary_key(&v, &headers(&[])).as_deref(),
            Some("accept-encoding:8:identity")
        );
        assert!(vary_matches(&v, &headers(&[]), &ae("identity")));
        assert!(vary_matches(&v, &ae("identity"), &ae("gzip;q=0")));
    }

    #[test]
    fn rfc9111_4_1_secondary_key_is_collision_proof() {
        let v = vary(&["a, b"]);
        // A value that spells out the encoding of another field must not collide.
        let tricky = headers(&[("a", b"x:1:y"), ("b", b"z")]);
        let plain = headers(&[("a", b"x"), ("b", b"y")]);
        assert_ne!(secondary_key(&v, &tricky), secondary_key(&v, &plain));
        let absent_a = headers(&[("b", b"1")]);
        let empty_a = headers(&[("a", b""), ("b", b"1")]);
        assert_ne!(secondary_key(&v, &absent_a), secondary_key(&v, &empty_a));
        // Percent escaping is injective: a literal "%80" differs from the byte 0x80.
        let v1 = vary(&["a"]);
        let literal = headers(&[("a", b"%80")]);
        let byte = headers(&[("a", b"\x80")]);
        assert_ne!(secondary_key(&v1, &literal), secondary_key(&v1, &byte));
        assert_eq!(secondary_key(&v1, &byte).as_deref(), Some("a:3:%80"));
    }

    #[test]
    fn rfc9111_4_1_works_from_stored_response_headers() {
        let response = headers(&[("vary", b"Accept-Encoding"), ("vary", b"X-Lang")]);
        let vary_lines = response.get_all(header::VARY);
        let stored_req = headers(&[("accept-encoding", b"gzip"), ("x-lang", b"de")]);
        let same = headers(&[("x-lang", b"de"), ("accept-encoding", b"x-gzip;q=0.5")]);
        let other = headers(&[("accept-encoding", b"gzip"), ("x-lang", b"fr")]);
        assert!(vary_matches(&vary_lines, &stored_req, &same));
        assert!(!vary_matches(&vary_lines, &stored_req, &other));
        assert_eq!(
            secondary_key(&vary_lines, &stored_req).as_deref(),
            Some("accept-encoding:4:gzipx-lang:2:de")
        );
    }

    // --- RFC 9110 §12.5.3: Accept-Encoding ---

    #[test]
    fn rfc9110_12_5_3_best_coding_by_preference() {
        assert_eq!(
            normalize_accept_encoding(&ae("gzip, deflate, br")),
            ContentCoding::Br
        );
        assert_eq!(
            normalize_accept_encoding(&ae("gzip, zstd")),
            ContentCoding::Zstd
        );
        assert_eq!(
            normalize_accept_encoding(&ae("deflate, gzip")),
            ContentCoding::Gzip
        );
        assert_eq!(
            normalize_accept_encoding(&ae("deflate")),
            ContentCoding::Identity
        );
    }

    #[test]
    fn rfc9110_12_5_3_q_zero_excludes() {
        assert_eq!(
            normalize_accept_encoding(&ae("gzip;q=0, br")),
            ContentCoding::Br
        );
        assert_eq!(
            normalize_accept_encoding(&ae("br;q=0, gzip")),
            ContentCoding::Gzip
        );
        assert_eq!(
            normalize_accept_encoding(&ae("br;q=0.000, gzip;q=0")),
            ContentCoding::Identity
        );
    }

    #[test]
    fn rfc9110_12_5_3_higher_qvalue_wins() {
        assert_eq!(
            normalize_accept_encoding(&ae("br;q=0.5, gzip;q=0.8")),
            ContentCoding::Gzip
        );
        assert_eq!(
            normalize_accept_encoding(&ae("br;q=0.5, gzip;Q=0.5")),
            ContentCoding::Br
        );
        assert_eq!(
            normalize_accept_encoding(&ae("identity;q=1, br;q=0.9")),
            ContentCoding::Identity
        );
    }

    #[test]
    fn rfc9110_12_5_3_star() {
        assert_eq!(normalize_accept_encoding(&ae("*")), ContentCoding::Br);
        assert_eq!(
            normalize_accept_encoding(&ae("br;q=0, *")),
            ContentCoding::Zstd
        );
        assert_eq!(
            normalize_accept_encoding(&ae("*;q=0.5, gzip")),
            ContentCoding::Gzip
        );
        assert_eq!(
            normalize_accept_encoding(&ae("*;q=0")),
            ContentCoding::Identity,
            "fallback"
        );
        assert_eq!(
            negotiate_coding(&ae("*;q=0"), &ContentCoding::PREFERENCE),
            None,
            "identity excluded by *;q=0"
        );
        assert_eq!(
            negotiate_coding(&ae("*;q=0, identity"), &ContentCoding::PREFERENCE),
            Some(ContentCoding::Identity)
        );
    }

    #[test]
    fn rfc9110_12_5_3_absent_and_empty_field() {
        assert_eq!(
            normalize_accept_encoding(&headers(&[])),
            ContentCoding::Identity
        );
        assert_eq!(normalize_accept_encoding(&ae("")), ContentCoding::Identity);
        assert_eq!(
            negotiate_coding(&headers(&[]), &[ContentCoding::Gzip, ContentCoding::Br]),
            Some(ContentCoding::Br)
        );
    }

    #[test]
    fn rfc9110_12_5_3_identity_acceptable_by_default_but_least_preferred() {
        assert_eq!(
            normalize_accept_encoding(&ae("gzip;q=0.001")),
            ContentCoding::Gzip
        );
        assert_eq!(
            negotiate_coding(&ae("identity;q=0, deflate"), &[ContentCoding::Identity]),
            None
        );
        assert_eq!(
            negotiate_coding(&ae("deflate"), &[ContentCoding::Identity]),
            Some(ContentCoding::Identity)
        );
    }

    #[test]
    fn rfc9110_12_5_3_offered_subset() {
        let offered = [ContentCoding::Gzip, ContentCoding::Identity];
        assert_eq!(
            negotiate_coding(&ae("br, gzip"), &offered),
            Some(ContentCoding::Gzip)
        );
        assert_eq!(
            negotiate_coding(&ae("br"), &offered),
            Some(ContentCoding::Identity)
        );
    }

    #[test]
    fn rfc9110_8_4_1_3_x_gzip_and_case_insensitive_codings() {
        assert_eq!(
            normalize_accept_encoding(&ae("X-GZIP")),
            ContentCoding::Gzip
        );
        assert_eq!(normalize_accept_encoding(&ae("BR")), ContentCoding::Br);
    }

    #[test]
    fn rfc9110_12_4_2_invalid_qvalues_ignore_member() {
        for bad in [
            "br;q=2",
            "br;q=1.5",
            "br;q=0.0001",
            "br;q=abc",
            "br;q=",
            "br;q=-1",
        ] {
            assert_eq!(
                normalize_accept_encoding(&ae(bad)),
                ContentCoding::Identity,
                "{bad}"
            );
        }
        assert_eq!(
            normalize_accept_encoding(&ae("br;q=1.000")),
            ContentCoding::Br
        );
        assert_eq!(
            normalize_accept_encoding(&ae("br ; q = 0.3 , gzip;q=0.2")),
            ContentCoding::Br
        );
    }

    #[test]
    fn rfc9110_12_5_3_multiple_lines_combined() {
        let req = headers(&[
            ("accept-encoding", b"gzip"),
            ("accept-encoding", b"br;q=0.9"),
        ]);
        assert_eq!(normalize_accept_encoding(&req), ContentCoding::Gzip);
    }
}
