//! The primary cache key (RFC 9111 §2, §4: "the presented target URI and that of the
//! stored response match").
//!
//! Normalisation applied, and only this (RFC 9110 §4.2.3, RFC 3986 §6.2.2–6.2.3):
//! * scheme and host are lowercased; a port equal to the scheme's default (80 for
//!   http, 443 for https) or an empty port is removed; userinfo is dropped;
//! * an empty path is `/`;
//! * hex digits of percent-escapes are uppercased (`%2f` ≡ `%2F`); nothing is decoded
//!   (`%2F` stays distinct from `/`, `%41` from `A`: decoding unreserved characters
//!   would be RFC-sanctioned but is left out to stay conservative);
//! * the path is otherwise kept exactly (case-sensitive, trailing `/` significant);
//! * an empty query (`/a?`) is distinct from no query (`/a`) (RFC 3986 §6.2.3), unless
//!   [`KeyRules`] removed every parameter, in which case the query is dropped so that
//!   `/a?utm_source=x` shares `/a`'s entry.
//!
//! The key is printable ASCII with no spaces: every byte outside `!`..=`~` and every
//! `\` is escaped (`\xHH`, `\\`), and components are separated by spaces, so no header
//! or cookie value can forge another key.

use http::header::{HeaderMap, HeaderName, COOKIE};

/// Per-route cache-key rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRules {
    /// Query parameters to drop, by glob on the name (`*` matches any run, e.g. `utm_*`).
    pub drop: Vec<String>,
    /// When set, keep only query parameters whose name matches one of these globs.
    pub keep_only: Option<Vec<String>>,
    /// Sort query parameters by name (stable: repeated names keep their order).
    pub sort: bool,
    /// Request header values added to the key, in this order.
    pub include_headers: Vec<HeaderName>,
    /// Cookie values added to the key, in this order.
    pub include_cookies: Vec<String>,
}

impl KeyRules {
    fn rewrites_query(&self) -> bool {
        self.sort || !self.drop.is_empty() || self.keep_only.is_some()
    }

    fn keeps(&self, name: &str) -> bool {
        if self.drop.iter().any(|g| glob_match(g, name)) {
            return false;
        }
        match &self.keep_only {
            Some(globs) => globs.iter().any(|g| glob_match(g, name)),
            None => true,
        }
    }
}

/// Matches `name` against a glob where `*` matches any (possibly empty) run.
/// Case-sensitive.
pub fn glob_match(glob: &str, name: &str) -> bool {
    let g = glob.as_bytes();
    let n = name.as_bytes();
    let (mut gi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if gi < g.len() && g[gi] == b'*' {
            star = Some((gi, ni));
            gi += 1;
        } else if gi < g.len() && g[gi] == n[ni] {
            gi += 1;
            ni += 1;
        } else if let Some((sg, sn)) = star {
            gi = sg + 1;
            ni = sn + 1;
            star = Some((sg, sn + 1));
        } else {
            return false;
        }
    }
    while gi < g.len() && g[gi] == b'*' {
        gi += 1;
    }
    gi == g.len()
}

/// The default port of a scheme.
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// Normalises an authority for comparison: drops userinfo, lowercases the host,
/// removes an empty or default port (RFC 9110 §4.2.3). `scheme` must be lowercase.
pub fn normalize_authority(scheme: &str, authority: &str) -> String {
    let mut out = String::with_capacity(authority.len());
    push_normalized_authority(&mut out, default_port(scheme), authority);
    out
}

/// [`normalize_authority`], appended to `out`; `default` is the scheme's default port.
fn push_normalized_authority(out: &mut String, default: Option<u16>, authority: &str) {
    // One pass from the end finds the userinfo '@', an IPv6 literal's ']' and the port's ':'.
    let bytes = authority.as_bytes();
    let (mut at, mut bracket, mut colon) = (None, None, None);
    for (i, &b) in bytes.iter().enumerate().rev() {
        match b {
            b'@' => {
                at = Some(i);
                break;
            }
            b']' if bracket.is_none() => bracket = Some(i),
            b':' if bracket.is_none() && colon.is_none() => colon = Some(i),
            _ => {}
        }
    }
    let start = at.map_or(0, |i| i + 1);
    // The port separator is the last ':' after any IPv6 literal.
    let colon = colon.filter(|&i| i > start);
    let (host, port) = match colon {
        Some(i) => (&authority[start..i], Some(&authority[i + 1..])),
        None => (&authority[start..], None),
    };
    let host_start = out.len();
    out.push_str(host);
    out[host_start..].make_ascii_lowercase();
    match port {
        None | Some("") => {}
        Some(p) => {
            let port = p.parse::<u16>().ok();
            if port.is_none() || port != default {
                out.push(':');
                out.push_str(p);
            }
        }
    }
}

/// Uppercases the hex digits of well-formed percent-escapes; leaves everything else.
pub fn normalize_percent_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_percent_case(&mut out, s);
    out
}

/// [`normalize_percent_case`], appended to `out`.
fn push_percent_case(out: &mut String, s: &str) {
    // Most targets have no escapes at all.
    if !s.contains('%') {
        out.push_str(s);
        return;
    }
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            out.push('%');
            out.push(char::from(b[i + 1].to_ascii_uppercase()));
            out.push(char::from(b[i + 2].to_ascii_uppercase()));
            i += 3;
        } else {
            // Copy one UTF-8 character.
            let ch_len = utf8_len(b[i]);
            let end = (i + ch_len).min(b.len());
            out.push_str(s.get(i..end).unwrap_or(""));
            i = end;
        }
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// A byte [`escape_into`] copies as it is (unless the caller names it in `extra`).
fn stands_for_itself(b: u8) -> bool {
    b != b'\\' && (0x21..=0x7e).contains(&b)
}

/// Escapes bytes injectively into printable ASCII without spaces.
fn escape_into(out: &mut String, bytes: &[u8], extra: &[u8]) {
    let plain = |b: u8| stands_for_itself(b) && !extra.contains(&b);
    let mut rest = bytes;
    while !rest.is_empty() {
        // Copy the run of bytes that stand for themselves in one go.
        let run = rest.iter().position(|&b| !plain(b)).unwrap_or(rest.len());
        let (text, tail) = rest.split_at(run);
        // Printable ASCII: always valid UTF-8.
        out.push_str(std::str::from_utf8(text).unwrap_or_default());
        let Some((&b, tail)) = tail.split_first() else {
            break;
        };
        if b == b'\\' {
            out.push_str("\\\\");
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push_str("\\x");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        rest = tail;
    }
}

/// The normalised URI part of the key: `scheme://authority/path?query`.
pub fn normalized_uri(
    scheme: &str,
    authority: &str,
    path_and_query: &str,
    rules: &KeyRules,
) -> String {
    let mut uri = String::with_capacity(scheme.len() + 3 + authority.len() + path_and_query.len());
    push_normalized_uri(&mut uri, scheme, authority, path_and_query, rules);
    uri
}

/// [`normalized_uri`], appended to `uri`: the key is built in one buffer, no piece on its own.
fn push_normalized_uri(
    uri: &mut String,
    scheme: &str,
    authority: &str,
    path_and_query: &str,
    rules: &KeyRules,
) {
    let scheme_start = uri.len();
    uri.push_str(scheme);
    uri[scheme_start..].make_ascii_lowercase();
    let default = default_port(&uri[scheme_start..]);
    uri.push_str("://");
    push_normalized_authority(uri, default, authority);
    let (path, query) = match path_and_query.find('?') {
        Some(i) => (&path_and_query[..i], Some(&path_and_query[i + 1..])),
        None => (path_and_query, None),
    };
    push_percent_case(uri, if path.is_empty() { "/" } else { path });
    if let Some(q) = query {
        if rules.rewrites_query() {
            let q = normalize_percent_case(q);
            let mut params: Vec<&str> = q
                .split('&')
                .filter(|p| !p.is_empty())
                .filter(|p| rules.keeps(p.split('=').next().unwrap_or("")))
                .collect();
            if rules.sort {
                params.sort_by(|a, b| {
                    a.split('=')
                        .next()
                        .unwrap_or("")
                        .cmp(b.split('=').next().unwrap_or(""))
                });
            }
            let had_params = q.split('&').any(|p| !p.is_empty());
            if !params.is_empty() || !had_params {
                uri.push('?');
                uri.push_str(&params.join("&"));
            }
        } else {
            uri.push('?');
            push_percent_case(uri, q);
        }
    }
}

/// Builds the primary cache key.
///
/// `scheme` and `authority` are those of the effective request URI; `path_and_query`
/// is the origin-form target as received. Header and cookie values are appended as
/// ` h:<name>=<value>` / ` c:<name>=<value>` (no `=` when absent, so absent and empty
/// differ; one entry per header line). The request method is not part of the key.
pub fn primary_key(
    scheme: &str,
    authority: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    rules: &KeyRules,
) -> String {
    // The URI is written straight into the key and escaped afterwards only when it has a byte to
    // escape (a target as received is printable ASCII): one allocation for the usual key.
    let mut key =
        String::with_capacity(scheme.len() + 3 + authority.len() + path_and_query.len() + 16);
    push_normalized_uri(&mut key, scheme, authority, path_and_query, rules);
    if !key.bytes().all(stands_for_itself) {
        let uri = std::mem::take(&mut key);
        escape_into(&mut key, uri.as_bytes(), &[]);
    }
    for name in &rules.include_headers {
        let mut any = false;
        for v in headers.get_all(name) {
            any = true;
            key.push_str(" h:");
            key.push_str(name.as_str());
            key.push('=');
            escape_into(&mut key, v.as_bytes(), &[]);
        }
        if !any {
            key.push_str(" h:");
            key.push_str(name.as_str());
        }
    }
    for cookie in &rules.include_cookies {
        key.push_str(" c:");
        escape_into(&mut key, cookie.as_bytes(), b"=");
        if let Some(v) = cookie_value(headers, cookie) {
            key.push('=');
            escape_into(&mut key, v, &[]);
        }
    }
    key
}

/// The first value of cookie `name` across all `Cookie` lines.
fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    for line in headers.get_all(COOKIE) {
        for pair in line.as_bytes().split(|b| *b == b';') {
            let pair = pair.trim_ascii();
            let (n, v) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => continue,
            };
            if n.trim_ascii() == name.as_bytes() {
                return Some(v.trim_ascii());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_matches_the_byte_by_byte_definition_for_every_byte() {
        let reference = |bytes: &[u8], extra: &[u8]| {
            let mut out = String::new();
            for &b in bytes {
                if b == b'\\' {
                    out.push_str("\\\\");
                } else if (0x21..=0x7e).contains(&b) && !extra.contains(&b) {
                    out.push(char::from(b));
                } else {
                    out.push_str(&format!("\\x{b:02X}"));
                }
            }
            out
        };
        let all: Vec<u8> = (0..=255).collect();
        for extra in [&b""[..], b";=", b"a"] {
            let mut out = String::new();
            escape_into(&mut out, &all, extra);
            assert_eq!(out, reference(&all, extra));
            let mut out = String::from("k");
            escape_into(&mut out, b"/a b\\c%7e", extra);
            assert_eq!(out, format!("k{}", reference(b"/a b\\c%7e", extra)));
        }
    }
    use http::HeaderValue;

    fn key(scheme: &str, auth: &str, pq: &str) -> String {
        primary_key(scheme, auth, pq, &HeaderMap::new(), &KeyRules::default())
    }

    fn k(pq: &str) -> String {
        key("https", "example.com", pq)
    }

    fn kr(pq: &str, rules: &KeyRules) -> String {
        primary_key("https", "example.com", pq, &HeaderMap::new(), rules)
    }

    #[test]
    fn rfc9110_4_2_3_scheme_and_host_case_insensitive() {
        assert_eq!(
            key("HTTPS", "EXAMPLE.com", "/a"),
            key("https", "example.com", "/a")
        );
        assert_eq!(k("/a"), "https://example.com/a");
    }

    #[test]
    fn rfc9110_4_2_3_default_port_equivalent() {
        assert_eq!(
            key("http", "example.com:80", "/a"),
            key("http", "example.com", "/a")
        );
        assert_eq!(
            key("https", "example.com:443", "/a"),
            key("https", "example.com", "/a")
        );
        assert_eq!(
            key("http", "example.com:", "/a"),
            key("http", "example.com", "/a")
        );
    }

    #[test]
    fn rfc9110_4_2_3_non_default_port_distinct() {
        assert_ne!(
            key("http", "example.com:8080", "/a"),
            key("http", "example.com", "/a")
        );
        assert_ne!(
            key("https", "example.com:80", "/a"),
            key("https", "example.com", "/a")
        );
        assert_ne!(
            key("http", "example.com", "/a"),
            key("https", "example.com", "/a")
        );
    }

    #[test]
    fn rfc9110_4_2_3_ipv6_authority() {
        assert_eq!(key("http", "[::1]:80", "/"), "http://[::1]/");
        assert_eq!(key("http", "[::1]:8080", "/"), "http://[::1]:8080/");
        assert_eq!(key("http", "[::1]", "/"), "http://[::1]/");
    }

    #[test]
    fn authority_normalisation_cases() {
        let n = normalize_authority;
        assert_eq!(n("http", "Example.COM:80"), "example.com");
        assert_eq!(n("http", "example.com:"), "example.com");
        assert_eq!(n("https", "example.com:80"), "example.com:80");
        assert_eq!(n("http", "u:p@Host:8080"), "host:8080");
        assert_eq!(n("http", "u:p@[::1]"), "[::1]");
        assert_eq!(n("http", "[::1]:x"), "[::1]:x");
        assert_eq!(n("http", "127.0.0.1:18300"), "127.0.0.1:18300");
        assert_eq!(n("http", ""), "");
    }

    #[test]
    fn rfc9110_4_2_4_userinfo_dropped() {
        assert_eq!(
            key("http", "user:pw@example.com", "/a"),
            key("http", "example.com", "/a")
        );
    }

    #[test]
    fn rfc9110_4_2_3_empty_path_is_slash() {
        assert_eq!(k(""), k("/"));
        assert_eq!(k("?q"), k("/?q"));
    }

    #[test]
    fn rfc3986_6_2_2_1_percent_hex_case_normalised() {
        assert_eq!(k("/a%2fb"), k("/a%2Fb"));
        assert_eq!(k("/%e2%82%ac"), k("/%E2%82%AC"));
        assert_eq!(k("/x?q=%3d"), k("/x?q=%3D"));
    }

    #[test]
    fn rfc3986_6_2_2_2_encoded_slash_not_decoded() {
        assert_ne!(k("/a%2Fb"), k("/a/b"));
        assert_ne!(k("/%41"), k("/A"));
    }

    #[test]
    fn rfc9111_4_trailing_character_set_all_distinct() {
        // "/a", "/a/", "/a?", "/a%20", "/a ", "/A": no RFC equivalence among them.
        let set = ["/a", "/a/", "/a?", "/a%20", "/a ", "/A"];
        let keys: Vec<String> = set.iter().map(|p| k(p)).collect();
        for i in 0..keys.len() {
            for j in i + 1..keys.len() {
                assert_ne!(keys[i], keys[j], "{} vs {}", set[i], set[j]);
            }
        }
    }

    #[test]
    fn rfc3986_6_2_3_empty_query_distinct_from_none() {
        assert_ne!(k("/a?"), k("/a"));
        assert_eq!(k("/a?"), "https://example.com/a?");
    }

    #[test]
    fn rfc9111_4_invalid_percent_escapes_kept_literally() {
        assert_eq!(k("/a%zz"), "https://example.com/a%zz");
        assert_eq!(k("/a%2"), "https://example.com/a%2");
        assert_ne!(k("/a%2"), k("/a%20"));
    }

    #[test]
    fn rfc9111_4_query_order_significant_without_sort() {
        assert_ne!(k("/?a=1&b=2"), k("/?b=2&a=1"));
    }

    #[test]
    fn rfc9111_4_sorted_query() {
        let r = KeyRules {
            sort: true,
            ..KeyRules::default()
        };
        assert_eq!(kr("/?b=2&a=1", &r), kr("/?a=1&b=2", &r));
        // stable: repeated names keep their relative order
        assert_ne!(kr("/?a=2&a=1", &r), kr("/?a=1&a=2", &r));
    }

    #[test]
    fn rfc9111_4_drop_glob() {
        let r = KeyRules {
            drop: vec!["utm_*".into(), "fbclid".into()],
            ..KeyRules::default()
        };
        assert_eq!(kr("/a?utm_source=x&id=1&fbclid=z", &r), kr("/a?id=1", &r));
        // all parameters dropped → same entry as no query
        assert_eq!(kr("/a?utm_source=x", &r), kr("/a", &r));
        // a literal empty query stays distinct
        assert_ne!(kr("/a?", &r), kr("/a", &r));
        // case-sensitive names
        assert_ne!(kr("/a?UTM_source=x", &r), kr("/a", &r));
    }

    #[test]
    fn rfc9111_4_keep_only_glob() {
        let r = KeyRules {
            keep_only: Some(vec!["id".into(), "page*".into()]),
            ..KeyRules::default()
        };
        assert_eq!(
            kr("/a?x=1&id=2&page_size=3&y", &r),
            "https://example.com/a?id=2&page_size=3"
        );
        assert_ne!(kr("/a?id=2", &r), kr("/a?id=3", &r));
    }

    #[test]
    fn glob_matching() {
        assert!(glob_match("utm_*", "utm_source"));
        assert!(glob_match("utm_*", "utm_"));
        assert!(!glob_match("utm_*", "xutm_source"));
        assert!(glob_match("*id", "fbclid"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("*", ""));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exact2"));
    }

    fn hdrs(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).expect("name"),
                HeaderValue::from_bytes(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn rfc9111_4_included_headers() {
        let r = KeyRules {
            include_headers: vec![HeaderName::from_static("x-device")],
            ..KeyRules::default()
        };
        let a = primary_key("https", "e.com", "/", &hdrs(&[("x-device", b"mobile")]), &r);
        let b = primary_key(
            "https",
            "e.com",
            "/",
            &hdrs(&[("x-device", b"desktop")]),
            &r,
        );
        let none = primary_key("https", "e.com", "/", &HeaderMap::new(), &r);
        let empty = primary_key("https", "e.com", "/", &hdrs(&[("x-device", b"")]), &r);
        assert_eq!(a, "https://e.com/ h:x-device=mobile");
        assert_ne!(a, b);
        assert_ne!(none, empty);
    }

    #[test]
    fn rfc9111_4_header_values_cannot_forge_keys() {
        let r = KeyRules {
            include_headers: vec![
                HeaderName::from_static("x-a"),
                HeaderName::from_static("x-b"),
            ],
            ..KeyRules::default()
        };
        // x-a="1 h:x-b=2" with no x-b  vs  x-a="1" and x-b="2"
        let forged = primary_key("https", "e.com", "/", &hdrs(&[("x-a", b"1 h:x-b=2")]), &r);
        let real = primary_key(
            "https",
            "e.com",
            "/",
            &hdrs(&[("x-a", b"1"), ("x-b", b"2")]),
            &r,
        );
        assert_ne!(forged, real);
        // multiple lines vs one comma-joined line
        let two = primary_key(
            "https",
            "e.com",
            "/",
            &hdrs(&[("x-a", b"1"), ("x-a", b"2")]),
            &r,
        );
        let one = primary_key("https", "e.com", "/", &hdrs(&[("x-a", b"1,2")]), &r);
        assert_ne!(two, one);
        // opaque bytes are escaped losslessly
        let hi = primary_key("https", "e.com", "/", &hdrs(&[("x-a", b"\xff")]), &r);
        let lit = primary_key("https", "e.com", "/", &hdrs(&[("x-a", b"\\xFF")]), &r);
        assert_ne!(hi, lit);
        assert!(hi.is_ascii());
    }

    #[test]
    fn rfc9111_4_path_cannot_forge_header_part() {
        let r = KeyRules {
            include_headers: vec![HeaderName::from_static("x-a")],
            ..KeyRules::default()
        };
        let forged = primary_key("https", "e.com", "/ h:x-a=1", &HeaderMap::new(), &r);
        let real = primary_key("https", "e.com", "/", &hdrs(&[("x-a", b"1")]), &r);
        assert_ne!(forged, real);
        assert!(!forged.contains("/ h:"));
    }

    #[test]
    fn rfc9111_4_non_ascii_path_escaped_distinct_from_percent_form() {
        assert_ne!(k("/é"), k("/%C3%A9"));
        assert!(k("/é").is_ascii());
    }

    #[test]
    fn the_uri_is_escaped_like_any_component_when_it_needs_it() {
        let key = |pq| {
            primary_key(
                "HTTP",
                "E.com:80",
                pq,
                &HeaderMap::new(),
                &KeyRules::default(),
            )
        };
        assert_eq!(key("/a%2fb?q=%7e"), "http://e.com/a%2Fb?q=%7E");
        assert_eq!(key("/a\\b"), "http://e.com/a\\\\b");
        assert_eq!(key("/é"), "http://e.com/\\xC3\\xA9");
        assert_eq!(key("/a b"), "http://e.com/a\\x20b");
    }

    #[test]
    fn rfc9111_4_included_cookies() {
        let r = KeyRules {
            include_cookies: vec!["lang".into()],
            ..KeyRules::default()
        };
        let en = primary_key(
            "https",
            "e.com",
            "/",
            &hdrs(&[("cookie", b"a=1; lang=en")]),
            &r,
        );
        let fr = primary_key("https", "e.com", "/", &hdrs(&[("cookie", b"lang=fr")]), &r);
        let other = primary_key("https", "e.com", "/", &hdrs(&[("cookie", b"a=1; b=2")]), &r);
        let split = primary_key(
            "https",
            "e.com",
            "/",
            &hdrs(&[("cookie", b"a=1"), ("cookie", b"lang=en")]),
            &r,
        );
        assert_eq!(en, "https://e.com/ c:lang=en");
        assert_ne!(en, fr);
        assert_eq!(other, "https://e.com/ c:lang");
        assert_eq!(split, en);
        // unrelated cookies do not fragment the cache
        let en2 = primary_key(
            "https",
            "e.com",
            "/",
            &hdrs(&[("cookie", b"lang=en; z=9")]),
            &r,
        );
        assert_eq!(en, en2);
    }

    #[test]
    fn rfc9111_4_method_not_in_key() {
        // HEAD may be answered from a stored GET (RFC 9110 §9.3.2); the key is shared,
        // StoreDecision::from_head prevents the reverse.
        let a = k("/x");
        assert!(!a.contains("GET") && !a.contains("HEAD"));
    }
}
