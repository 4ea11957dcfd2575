//! Reading the outcome of a response back from its `Cache-Status` field (RFC 9211), so metrics
//! can label it without reaching into the cache stage.

/// The `cache` label: a fixed, small set of values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheOutcome {
    Hit,
    Miss,
    Stale,
    Revalidated,
    Collapsed,
    Bypass,
}

impl CacheOutcome {
    pub const ALL: [CacheOutcome; 6] = [
        CacheOutcome::Hit,
        CacheOutcome::Miss,
        CacheOutcome::Stale,
        CacheOutcome::Revalidated,
        CacheOutcome::Collapsed,
        CacheOutcome::Bypass,
    ];
    pub const COUNT: usize = 6;

    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Stale => "stale",
            CacheOutcome::Revalidated => "revalidated",
            CacheOutcome::Collapsed => "collapsed",
            CacheOutcome::Bypass => "bypass",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// What Velox's own `Cache-Status` member says about a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedStatus {
    pub outcome: CacheOutcome,
    /// This request itself went to the origin (not a hit, not collapsed onto another's fetch).
    pub forwarded: bool,
    /// `fwd-status`: the status the origin sent, when it differs from the one delivered.
    pub fwd_status: Option<u16>,
}

/// Splits on `sep` outside sf-strings (`"..."` with `\` escapes), so a `key="a;b,c"` stays whole.
/// Without quotes (the usual case) it is a plain `split`, which searches with `memchr`.
fn split_outside_quotes(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let bytes = s.as_bytes();
    let mut plain = (!s.contains('"')).then(|| s.split(char::from(sep)));
    let mut start = 0;
    let mut done = false;
    std::iter::from_fn(move || {
        if let Some(parts) = plain.as_mut() {
            return parts.next();
        }
        if done {
            return None;
        }
        let mut i = start;
        while let Some(off) = bytes[i..].iter().position(|&b| b == sep || b == b'"') {
            i += off;
            if bytes[i] == sep {
                let part = &s[start..i];
                start = i + 1;
                return Some(part);
            }
            i = closing_quote(bytes, i + 1);
        }
        done = true;
        Some(&s[start..])
    })
}

/// The index just past the `"` that closes an sf-string whose content starts at `i` (or the
/// end, if it is unterminated).
fn closing_quote(bytes: &[u8], mut i: usize) -> usize {
    while let Some(off) = bytes[i..].iter().position(|&b| b == b'"' || b == b'\\') {
        i += off;
        if bytes[i] == b'"' {
            return i + 1;
        }
        i = (i + 2).min(bytes.len());
    }
    bytes.len()
}

/// `(name, value)` of a parameter; a bare key has an empty value. Byte scans, not `char`
/// patterns: this runs for every response.
fn key_value(param: &str) -> (&str, &str) {
    let param = param.trim_ascii();
    match param.bytes().position(|b| b == b'=') {
        Some(i) => (&param[..i], &param[i + 1..]),
        None => (param, ""),
    }
}

/// The member's name: what precedes its first `;`.
fn member_name(member: &str) -> &str {
    let end = member
        .bytes()
        .position(|b| b == b';')
        .unwrap_or(member.len());
    member[..end].trim_ascii()
}

/// Parses the last `velox` member of a `Cache-Status` value (the closest cache is last).
/// No member (or no header) reads as `bypass`, not forwarded.
pub fn parse(value: Option<&str>) -> ParsedStatus {
    let member = value.and_then(|v| {
        split_outside_quotes(v, b',')
            .filter(|m| member_name(m) == velox_name())
            .last()
    });
    let Some(member) = member else {
        return ParsedStatus {
            outcome: CacheOutcome::Bypass,
            forwarded: false,
            fwd_status: None,
        };
    };
    let mut hit = false;
    let mut collapsed = false;
    let mut fwd = None;
    let mut fwd_status = None;
    let mut negative_ttl = false;
    let mut stale_detail = false;
    for param in split_outside_quotes(member, b';').skip(1) {
        let (key, val) = key_value(param);
        match key {
            "hit" => hit = true,
            "collapsed" => collapsed = true,
            "fwd" => fwd = Some(val),
            "fwd-status" => fwd_status = val.parse::<u16>().ok(),
            "ttl" => negative_ttl = val.starts_with('-'),
            "detail" => stale_detail = val.contains("stale"),
            _ => {}
        }
    }
    let (outcome, forwarded) = if hit {
        if negative_ttl || stale_detail {
            (CacheOutcome::Stale, false)
        } else {
            (CacheOutcome::Hit, false)
        }
    } else if collapsed {
        (CacheOutcome::Collapsed, false)
    } else {
        match fwd {
            Some("stale") if fwd_status == Some(304) => (CacheOutcome::Revalidated, true),
            Some("stale") => (CacheOutcome::Stale, true),
            Some("uri-miss" | "vary-miss" | "miss" | "partial") => (CacheOutcome::Miss, true),
            Some(_) => (CacheOutcome::Bypass, true),
            None => (CacheOutcome::Bypass, false),
        }
    };
    ParsedStatus {
        outcome,
        forwarded,
        fwd_status,
    }
}

fn velox_name() -> &'static str {
    "velox"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(v: &str) -> (CacheOutcome, bool) {
        let p = parse(Some(v));
        (p.outcome, p.forwarded)
    }

    #[test]
    fn outcomes() {
        use CacheOutcome::*;
        assert_eq!(outcome("velox; hit; ttl=30"), (Hit, false));
        assert_eq!(outcome("velox; hit; ttl=-3"), (Stale, false));
        assert_eq!(
            outcome("velox; hit; ttl=4; detail=stale-while-revalidate"),
            (Stale, false)
        );
        assert_eq!(outcome("velox; fwd=uri-miss; ttl=60; stored"), (Miss, true));
        assert_eq!(outcome("velox; fwd=vary-miss"), (Miss, true));
        assert_eq!(
            outcome("velox; fwd=uri-miss; collapsed"),
            (Collapsed, false)
        );
        assert_eq!(
            outcome("velox; fwd=stale; fwd-status=304; ttl=60"),
            (Revalidated, true)
        );
        assert_eq!(
            outcome("velox; fwd=stale; fwd-status=200; stored"),
            (Stale, true)
        );
        assert_eq!(outcome("velox; fwd=bypass"), (Bypass, true));
        assert_eq!(outcome("velox; fwd=method"), (Bypass, true));
        assert_eq!(outcome("velox; fwd=request"), (Bypass, true));
        assert_eq!(parse(None).outcome, Bypass);
        assert_eq!(outcome("garbage"), (Bypass, false));
    }

    #[test]
    fn last_velox_member_wins_and_quotes_are_respected() {
        use CacheOutcome::*;
        assert_eq!(outcome(r#"velox; hit; key="unterminated\"#), (Hit, false));
        assert_eq!(outcome(r#"velox; key="a\"b;c"; fwd=miss"#), (Miss, true));
        assert_eq!(
            outcome("origin-cache; hit, velox; fwd=uri-miss; stored"),
            (Miss, true)
        );
        assert_eq!(
            outcome(r#"velox; hit; key="http://a/b?x=1,velox; fwd=miss;\"q" ; ttl=5"#),
            (Hit, false)
        );
        assert_eq!(
            parse(Some("velox; fwd=stale; fwd-status=304")).fwd_status,
            Some(304)
        );
    }
}
