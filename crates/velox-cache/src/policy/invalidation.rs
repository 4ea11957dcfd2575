//! Invalidation by unsafe methods (RFC 9111 §4.4).
//!
//! A non-error response (2xx, 3xx) to an unsafe request method (anything but GET,
//! HEAD, OPTIONS, TRACE: RFC 9110 §9.2.1, including unknown methods) invalidates the
//! target URI, and the `Location` / `Content-Location` URIs (resolved against the
//! target URI, RFC 3986 §5) when they have the same origin (RFC 9110 §4.3.1).

use super::key::normalize_authority;
use http::header::{HeaderValue, CONTENT_LOCATION, LOCATION};
use http::{HeaderMap, Method, StatusCode};

/// A URI in the parts [`super::key::primary_key`] takes. Scheme and authority are
/// normalised (lowercase, default port removed); the path and query are as given or
/// as resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriParts {
    /// Scheme, lowercase.
    pub scheme: String,
    /// Authority, normalised.
    pub authority: String,
    /// Path and query (no fragment); starts with `/`.
    pub path_and_query: String,
}

/// Whether a method is safe (RFC 9110 §9.2.1).
pub fn is_safe_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The URIs to invalidate after a response (RFC 9111 §4.4), target URI first.
/// Empty for safe methods and for 1xx, 4xx and 5xx statuses.
pub fn invalidations(
    method: &Method,
    status: StatusCode,
    scheme: &str,
    authority: &str,
    path_and_query: &str,
    response_headers: &HeaderMap,
) -> Vec<UriParts> {
    if is_safe_method(method) || !(status.is_success() || status.is_redirection()) {
        return Vec::new();
    }
    let scheme = scheme.to_ascii_lowercase();
    let authority = normalize_authority(&scheme, authority);
    let path_and_query = strip_fragment(path_and_query);
    let base = UriParts {
        scheme,
        authority,
        path_and_query: if path_and_query.is_empty() {
            "/".to_string()
        } else {
            path_and_query.to_string()
        },
    };
    let mut out = vec![base.clone()];
    for name in [LOCATION, CONTENT_LOCATION] {
        let Some(v) = response_headers.get(&name) else {
            continue;
        };
        if let Some(u) = resolve_header(&base, v) {
            if u.scheme == base.scheme && u.authority == base.authority && !out.contains(&u) {
                out.push(u);
            }
        }
    }
    out
}

fn resolve_header(base: &UriParts, v: &HeaderValue) -> Option<UriParts> {
    let s = v.to_str().ok()?.trim();
    if s.bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return None;
    }
    resolve(base, s)
}

fn strip_fragment(s: &str) -> &str {
    match s.find('#') {
        Some(i) => &s[..i],
        None => s,
    }
}

/// Resolves a URI reference against `base` (RFC 3986 §5.2.2). `None` for references
/// this cache cannot use (non-hierarchical or malformed).
pub fn resolve(base: &UriParts, reference: &str) -> Option<UriParts> {
    let r = strip_fragment(reference);
    // scheme?
    let scheme_end = r.find(':').filter(|&i| {
        i > 0
            && r.as_bytes()[0].is_ascii_alphabetic()
            && r[..i]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
            && !r[..i].contains('/')
    });
    let (scheme, rest) = match scheme_end {
        Some(i) => (Some(r[..i].to_ascii_lowercase()), &r[i + 1..]),
        None => (None, r),
    };
    let (authority, rest) = match rest.strip_prefix("//") {
        Some(a) => {
            let end = a.find(['/', '?']).unwrap_or(a.len());
            (Some(&a[..end]), &a[end..])
        }
        None => (None, rest),
    };
    let (path, query) = match rest.find('?') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };

    let (base_path, base_query) = match base.path_and_query.find('?') {
        Some(i) => (
            &base.path_and_query[..i],
            Some(&base.path_and_query[i + 1..]),
        ),
        None => (base.path_and_query.as_str(), None),
    };

    let (t_scheme, t_authority, t_path, t_query): (String, String, String, Option<&str>) =
        if let Some(s) = scheme {
            let a = authority?; // http(s) needs an authority
            (
                s.clone(),
                normalize_authority(&s, a),
                remove_dot_segments(path),
                query,
            )
        } else if let Some(a) = authority {
            (
                base.scheme.clone(),
                normalize_authority(&base.scheme, a),
                remove_dot_segments(path),
                query,
            )
        } else if path.is_empty() {
            (
                base.scheme.clone(),
                base.authority.clone(),
                base_path.to_string(),
                query.or(base_query),
            )
        } else if path.starts_with('/') {
            (
                base.scheme.clone(),
                base.authority.clone(),
                remove_dot_segments(path),
                query,
            )
        } else {
            let merged = match base_path.rfind('/') {
                Some(i) => format!("{}{}", &base_path[..=i], path),
                None => format!("/{path}"),
            };
            (
                base.scheme.clone(),
                base.authority.clone(),
                remove_dot_segments(&merged),
                query,
            )
        };
    if t_scheme != "http" && t_scheme != "https" {
        return None;
    }
    let mut pq = if t_path.is_empty() {
        "/".to_string()
    } else {
        t_path
    };
    if let Some(q) = t_query {
        pq.push('?');
        pq.push_str(q);
    }
    Some(UriParts {
        scheme: t_scheme,
        authority: t_authority,
        path_and_query: pq,
    })
}

/// RFC 3986 §5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut out: Vec<&str> = Vec::new();
    // Output is built as segments, each starting with '/' (or the first without).
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest;
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest;
        } else if input.starts_with("/./") {
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") {
            input = &input[3..];
            out.pop();
        } else if input == "/.." {
            input = "/";
            out.pop();
        } else if input == "." || input == ".." {
            input = "";
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            out.push(&input[..end]);
            input = &input[end..];
        }
    }
    out.concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderName;

    fn hdrs(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    fn inv(method: Method, status: u16, pairs: &[(&str, &str)]) -> Vec<String> {
        invalidations(
            &method,
            StatusCode::from_u16(status).expect("status"),
            "https",
            "example.com",
            "/a/b?x=1",
            &hdrs(pairs),
        )
        .into_iter()
        .map(|u| format!("{}://{}{}", u.scheme, u.authority, u.path_and_query))
        .collect()
    }

    #[test]
    fn rfc9111_4_4_unsafe_methods_invalidate_target() {
        for m in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            assert_eq!(inv(m, 200, &[]), vec!["https://example.com/a/b?x=1"]);
        }
    }

    #[test]
    fn rfc9111_4_4_unknown_method_is_unsafe() {
        let m = Method::from_bytes(b"PURGEX").expect("method");
        assert_eq!(inv(m, 204, &[]), vec!["https://example.com/a/b?x=1"]);
    }

    #[test]
    fn rfc9110_9_2_1_safe_methods_do_not_invalidate() {
        for m in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
            assert!(inv(m, 200, &[("location", "/c")]).is_empty());
        }
    }

    #[test]
    fn rfc9111_4_4_error_status_does_not_invalidate() {
        for s in [400, 404, 409, 500, 503] {
            assert!(
                inv(Method::POST, s, &[("location", "/c")]).is_empty(),
                "{s}"
            );
        }
    }

    #[test]
    fn rfc9111_4_4_redirect_status_invalidates() {
        assert_eq!(
            inv(Method::POST, 303, &[("location", "/done")]),
            vec!["https://example.com/a/b?x=1", "https://example.com/done"]
        );
    }

    #[test]
    fn rfc9111_4_4_relative_location_resolved() {
        assert_eq!(
            inv(Method::POST, 201, &[("location", "c")]),
            vec!["https://example.com/a/b?x=1", "https://example.com/a/c"]
        );
        assert_eq!(
            inv(Method::POST, 201, &[("location", "../c?y=2#frag")]),
            vec!["https://example.com/a/b?x=1", "https://example.com/c?y=2"]
        );
        assert_eq!(
            inv(Method::POST, 201, &[("location", "?y=2")]),
            vec!["https://example.com/a/b?x=1", "https://example.com/a/b?y=2"]
        );
    }

    #[test]
    fn rfc9111_4_4_absolute_same_origin_location_and_content_location() {
        assert_eq!(
            inv(
                Method::PUT,
                200,
                &[
                    ("location", "HTTPS://Example.com:443/new"),
                    ("content-location", "https://example.com/a/b/content"),
                ]
            ),
            vec![
                "https://example.com/a/b?x=1",
                "https://example.com/new",
                "https://example.com/a/b/content"
            ]
        );
    }

    #[test]
    fn rfc9111_4_4_network_path_reference() {
        assert_eq!(
            inv(Method::POST, 201, &[("location", "//example.com/n")]),
            vec!["https://example.com/a/b?x=1", "https://example.com/n"]
        );
        assert_eq!(
            inv(Method::POST, 201, &[("location", "//other.com/n")]),
            vec!["https://example.com/a/b?x=1"]
        );
    }

    #[test]
    fn rfc9111_4_4_cross_origin_ignored() {
        for loc in [
            "https://other.com/x",
            "http://example.com/x",
            "https://example.com:8443/x",
            "ftp://example.com/x",
            "mailto:a@example.com",
        ] {
            assert_eq!(
                inv(
                    Method::POST,
                    201,
                    &[("location", loc), ("content-location", loc)]
                ),
                vec!["https://example.com/a/b?x=1"],
                "{loc}"
            );
        }
    }

    #[test]
    fn rfc9111_4_4_duplicates_collapsed() {
        assert_eq!(
            inv(
                Method::DELETE,
                200,
                &[("location", "/a/b?x=1"), ("content-location", "b?x=1")]
            ),
            vec!["https://example.com/a/b?x=1"]
        );
    }

    #[test]
    fn rfc9111_4_4_malformed_location_ignored() {
        let mut h = HeaderMap::new();
        h.insert(
            LOCATION,
            HeaderValue::from_bytes(b"/caf\xe9").expect("opaque value"),
        );
        let out = invalidations(
            &Method::POST,
            StatusCode::OK,
            "https",
            "example.com",
            "/",
            &h,
        );
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn rfc9111_4_4_target_authority_normalised() {
        let out = invalidations(
            &Method::POST,
            StatusCode::OK,
            "HTTP",
            "Example.COM:80",
            "/p",
            &HeaderMap::new(),
        );
        assert_eq!(
            out,
            vec![UriParts {
                scheme: "http".into(),
                authority: "example.com".into(),
                path_and_query: "/p".into()
            }]
        );
    }

    #[test]
    fn rfc3986_5_2_4_remove_dot_segments() {
        assert_eq!(remove_dot_segments("/a/b/c/./../../g"), "/a/g");
        assert_eq!(remove_dot_segments("mid/content=5/../6"), "mid/6");
        assert_eq!(remove_dot_segments("/../../x"), "/x");
        assert_eq!(remove_dot_segments("/a/.."), "/");
        assert_eq!(remove_dot_segments("/a/."), "/a/");
    }

    #[test]
    fn rfc3986_5_4_reference_resolution_examples() {
        let base = UriParts {
            scheme: "http".into(),
            authority: "a".into(),
            path_and_query: "/b/c/d;p?q".into(),
        };
        let cases = [
            ("g", "/b/c/g"),
            ("./g", "/b/c/g"),
            ("g/", "/b/c/g/"),
            ("/g", "/g"),
            ("?y", "/b/c/d;p?y"),
            ("g?y", "/b/c/g?y"),
            ("#s", "/b/c/d;p?q"),
            ("", "/b/c/d;p?q"),
            (".", "/b/c/"),
            ("..", "/b/"),
            ("../g", "/b/g"),
            ("../..", "/"),
            ("../../../g", "/g"),
            ("g;x=1/../y", "/b/c/y"),
        ];
        for (r, want) in cases {
            let got = resolve(&base, r).expect("resolvable");
            assert_eq!(got.path_and_query, want, "{r}");
            assert_eq!(got.authority, "a");
        }
    }
}
