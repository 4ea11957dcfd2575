//! Conditional GET (If-None-Match / If-Modified-Since): pure decisions.

use http::header::HeaderValue;

/// Whether a 200 response with validators `etag` / `last_modified` should become a 304
/// for a request carrying `if_none_match` / `if_modified_since`. If-None-Match wins when
/// present (weak comparison); If-Modified-Since is used only without it.
pub(crate) fn not_modified(
    if_none_match: Option<&HeaderValue>,
    if_modified_since: Option<&HeaderValue>,
    etag: Option<&HeaderValue>,
    last_modified: Option<&HeaderValue>,
) -> bool {
    if let Some(inm) = if_none_match {
        let (Ok(inm), Some(Ok(etag))) = (inm.to_str(), etag.map(|e| e.to_str())) else {
            return false;
        };
        return etag_list_matches(inm, etag);
    }
    match (
        if_modified_since.and_then(|v| v.to_str().ok()),
        last_modified.and_then(|v| v.to_str().ok()),
    ) {
        (Some(ims), Some(lm)) => match (
            httpdate::parse_http_date(ims),
            httpdate::parse_http_date(lm),
        ) {
            (Ok(ims), Ok(lm)) => lm <= ims,
            _ => false,
        },
        _ => false,
    }
}

/// Weak comparison of `etag` against an If-None-Match list (`*` matches anything).
fn etag_list_matches(list: &str, etag: &str) -> bool {
    let strip = |s: &str| {
        let s = s.trim();
        s.strip_prefix("W/").unwrap_or(s).to_owned()
    };
    let ours = strip(etag);
    list.split(',')
        .map(str::trim)
        .any(|candidate| candidate == "*" || strip(candidate) == ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn if_none_match() {
        let etag = h("\"abc\"");
        assert!(not_modified(Some(&h("\"abc\"")), None, Some(&etag), None));
        assert!(not_modified(Some(&h("W/\"abc\"")), None, Some(&etag), None));
        assert!(not_modified(
            Some(&h("\"x\", \"abc\"")),
            None,
            Some(&etag),
            None
        ));
        assert!(not_modified(Some(&h("*")), None, Some(&etag), None));
        assert!(!not_modified(Some(&h("\"x\"")), None, Some(&etag), None));
        assert!(!not_modified(Some(&h("\"abc\"")), None, None, None));
    }

    #[test]
    fn if_modified_since() {
        let lm = h("Mon, 01 Jan 2024 00:00:00 GMT");
        assert!(not_modified(
            None,
            Some(&h("Mon, 01 Jan 2024 00:00:00 GMT")),
            None,
            Some(&lm)
        ));
        assert!(not_modified(
            None,
            Some(&h("Tue, 02 Jan 2024 00:00:00 GMT")),
            None,
            Some(&lm)
        ));
        assert!(!not_modified(
            None,
            Some(&h("Sun, 31 Dec 2023 00:00:00 GMT")),
            None,
            Some(&lm)
        ));
        assert!(!not_modified(None, Some(&h("garbage")), None, Some(&lm)));
        // If-None-Match takes precedence.
        let etag = h("\"abc\"");
        assert!(!not_modified(
            Some(&h("\"zzz\"")),
            Some(&h("Tue, 02 Jan 2024 00:00:00 GMT")),
            Some(&etag),
            Some(&lm)
        ));
    }
}
