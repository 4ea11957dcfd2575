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

impl ParsedStatus {
    /// A stored response served as it is: a hit, fresh or stale, that did not go forward (not
    /// what the origin sent for this request, or for one it was collapsed onto).
    pub fn served_from_store(&self) -> bool {
        !self.forwarded && matches!(self.outcome, CacheOutcome::Hit | CacheOutcome::Stale)
    }
}

impl Default for ParsedStatus {
    /// No `velox` member: bypass, not forwarded.
    fn default() -> Self {
        ParsedStatus {
            outcome: CacheOutcome::Bypass,
            forwarded: false,
            fwd_status: None,
        }
    }
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

/// The parameters of one `velox` member that decide the outcome.
#[derive(Default, Clone, Copy)]
struct Params<'a> {
    hit: bool,
    collapsed: bool,
    fwd: Option<&'a [u8]>,
    fwd_status: Option<u16>,
    negative_ttl: bool,
    stale_detail: bool,
}

impl<'a> Params<'a> {
    /// One `key[=value]` parameter (already trimmed).
    fn apply(&mut self, param: &'a [u8]) {
        let (key, val) = match param.iter().position(|&b| b == b'=') {
            Some(i) => (&param[..i], &param[i + 1..]),
            None => (param, &b""[..]),
        };
        match key {
            b"hit" => self.hit = true,
            b"collapsed" => self.collapsed = true,
            b"fwd" => self.fwd = Some(val),
            b"fwd-status" => {
                self.fwd_status = std::str::from_utf8(val).ok().and_then(|v| v.parse().ok())
            }
            b"ttl" => self.negative_ttl = val.starts_with(b"-"),
            b"detail" => self.stale_detail = val.windows(5).any(|w| w == b"stale"),
            _ => {}
        }
    }

    fn status(&self) -> ParsedStatus {
        let (outcome, forwarded) = if self.hit {
            if self.negative_ttl || self.stale_detail {
                (CacheOutcome::Stale, false)
            } else {
                (CacheOutcome::Hit, false)
            }
        } else if self.collapsed {
            (CacheOutcome::Collapsed, false)
        } else {
            match self.fwd {
                Some(b"stale") if self.fwd_status == Some(304) => (CacheOutcome::Revalidated, true),
                Some(b"stale") => (CacheOutcome::Stale, true),
                Some(b"uri-miss" | b"vary-miss" | b"miss" | b"partial") => {
                    (CacheOutcome::Miss, true)
                }
                Some(_) => (CacheOutcome::Bypass, true),
                None => (CacheOutcome::Bypass, false),
            }
        };
        ParsedStatus {
            outcome,
            forwarded,
            fwd_status: self.fwd_status,
        }
    }
}

/// The index of the next `;` or `,` at or after `i` outside sf-strings, or the end.
fn next_delimiter(v: &[u8], mut i: usize) -> usize {
    // `"`, `,` and `;` are all below 64: one bit test per byte.
    const STOPS: u64 = 1 << b'"' | 1 << b',' | 1 << b';';
    while let Some(off) = v[i..].iter().position(|&b| b < 64 && STOPS >> b & 1 != 0) {
        i += off;
        if v[i] != b'"' {
            return i;
        }
        i = closing_quote(v, i + 1);
    }
    v.len()
}

/// A fresh hit as Velox writes it, alone in the field: `velox; hit; ttl=<digits>`.
fn plain_hit(v: &[u8]) -> bool {
    v.strip_prefix(b"velox; hit; ttl=")
        .is_some_and(|ttl| !ttl.is_empty() && ttl.iter().all(u8::is_ascii_digit))
}

/// Parses the last `velox` member of a `Cache-Status` value (the closest cache is last).
/// No member (or no header) reads as `bypass`, not forwarded.
///
/// One pass over the bytes (this runs for every response): members end at `,`, parameters at
/// `;`, neither inside an sf-string (`"..."` with `\` escapes), so a `key="a;b,c"` stays whole.
pub fn parse(value: Option<&[u8]>) -> ParsedStatus {
    let v = value.unwrap_or_default();
    // The most common value of all, recognised without splitting it.
    if plain_hit(v) {
        return ParsedStatus {
            outcome: CacheOutcome::Hit,
            forwarded: false,
            fwd_status: None,
        };
    }
    let mut last = None;
    // `Some` while inside a `velox` member.
    let mut member: Option<Params> = None;
    let mut name = true;
    let mut start = 0;
    while start <= v.len() {
        let end = next_delimiter(v, start);
        let part = v[start..end].trim_ascii();
        if name {
            member = (part == b"velox").then(Params::default);
        } else if let Some(params) = member.as_mut() {
            params.apply(part);
        }
        name = v.get(end).is_none_or(|&b| b == b',');
        if name {
            last = member.take().or(last);
        }
        start = end + 1;
    }
    last.map_or_else(ParsedStatus::default, |p| p.status())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(v: &str) -> (CacheOutcome, bool) {
        let p = parse(Some(v.as_bytes()));
        (p.outcome, p.forwarded)
    }

    #[test]
    fn outcomes() {
        use CacheOutcome::*;
        assert_eq!(outcome("velox; hit; ttl=30"), (Hit, false));
        assert_eq!(outcome("velox; hit; ttl=3x"), (Hit, false));
        assert_eq!(outcome("velox; hit; ttl="), (Hit, false));
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
            parse(Some(b"velox; fwd=stale; fwd-status=304")).fwd_status,
            Some(304)
        );
    }
}
