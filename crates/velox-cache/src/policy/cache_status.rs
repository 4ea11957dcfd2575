//! The `Cache-Status` member Velox adds to responses (RFC 9211).
//!
//! Parameters are rendered in the order RFC 9211 §2 defines them: `hit`, `fwd`,
//! `fwd-status`, `ttl`, `stored`, `collapsed`, `key`, `detail`. Appending the member to
//! an upstream `Cache-Status` (§2: the last member is the closest cache) is the
//! caller's job: `format!("{upstream}, {member}")`.

use std::fmt;

/// The cache name Velox uses (RFC 9211 §2).
pub const CACHE_NAME: &str = "velox";

/// Why the request went forward (RFC 9211 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fwd {
    /// Configured to bypass the cache.
    Bypass,
    /// The request method is not cacheable.
    Method,
    /// No stored response for the URI.
    UriMiss,
    /// A stored response for the URI, but not for these `Vary` values.
    VaryMiss,
    /// A miss, cause unspecified.
    Miss,
    /// The request (e.g. `no-cache`) forced forwarding.
    Request,
    /// The stored response was stale.
    Stale,
    /// Only part of the response was stored.
    Partial,
}

impl Fwd {
    /// The token for this reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Fwd::Bypass => "bypass",
            Fwd::Method => "method",
            Fwd::UriMiss => "uri-miss",
            Fwd::VaryMiss => "vary-miss",
            Fwd::Miss => "miss",
            Fwd::Request => "request",
            Fwd::Stale => "stale",
            Fwd::Partial => "partial",
        }
    }
}

/// One `Cache-Status` member. Build with [`CacheStatus::hit`] or
/// [`CacheStatus::forward`] and the `with_*` methods; render with `to_string()`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStatus {
    /// `hit` (§2.1).
    pub hit: bool,
    /// `fwd` (§2.2).
    pub fwd: Option<Fwd>,
    /// `fwd-status` (§2.3).
    pub fwd_status: Option<u16>,
    /// `ttl` in seconds, negative when stale (§2.4).
    pub ttl: Option<i64>,
    /// `stored` (§2.5).
    pub stored: bool,
    /// `collapsed` (§2.6).
    pub collapsed: bool,
    /// `key` (§2.7), only when asked for (it may reveal internals).
    pub key: Option<String>,
    /// `detail` (§2.8).
    pub detail: Option<String>,
}

impl CacheStatus {
    /// A response served from the cache without going forward.
    pub fn hit() -> CacheStatus {
        CacheStatus {
            hit: true,
            ..CacheStatus::default()
        }
    }

    /// A request that went forward for `reason`.
    pub fn forward(reason: Fwd) -> CacheStatus {
        CacheStatus {
            fwd: Some(reason),
            ..CacheStatus::default()
        }
    }

    /// Sets `fwd-status`.
    pub fn with_fwd_status(mut self, status: u16) -> Self {
        self.fwd_status = Some(status);
        self
    }

    /// Sets `ttl`.
    pub fn with_ttl(mut self, ttl: i64) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets `stored`.
    pub fn with_stored(mut self, stored: bool) -> Self {
        self.stored = stored;
        self
    }

    /// Sets `collapsed`.
    pub fn with_collapsed(mut self, collapsed: bool) -> Self {
        self.collapsed = collapsed;
        self
    }

    /// Sets `key`.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets `detail`.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// Writes an sf-string (RFC 8941 §4.1.6): `"` and `\` escaped; bytes outside
/// printable ASCII (not representable) are written as `%HH` and a literal `%` as `%25`,
/// so distinct inputs stay distinct.
fn push_sf_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('"');
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'%' => out.push_str("%25"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
    }
    out.push('"');
}

fn is_sf_token(s: &str) -> bool {
    let b = s.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'*' => {}
        _ => return false,
    }
    b.iter()
        .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(c))
}

impl CacheStatus {
    /// Appends the member to `out`. Written by hand rather than through `fmt`: a hit renders
    /// one on every response, and the formatting machinery cost several times the work itself.
    pub fn render(&self, out: &mut String) {
        out.push_str(CACHE_NAME);
        if self.hit {
            out.push_str("; hit");
        }
        if let Some(fwd) = self.fwd {
            out.push_str("; fwd=");
            out.push_str(fwd.as_str());
        }
        if let Some(s) = self.fwd_status {
            out.push_str("; fwd-status=");
            out.push_str(itoa::Buffer::new().format(s));
        }
        if let Some(ttl) = self.ttl {
            out.push_str("; ttl=");
            out.push_str(itoa::Buffer::new().format(ttl));
        }
        if self.stored {
            out.push_str("; stored");
        }
        if self.collapsed {
            out.push_str("; collapsed");
        }
        if let Some(key) = &self.key {
            out.push_str("; key=");
            push_sf_string(out, key);
        }
        if let Some(detail) = &self.detail {
            out.push_str("; detail=");
            if is_sf_token(detail) {
                out.push_str(detail);
            } else {
                push_sf_string(out, detail);
            }
        }
    }
}

impl fmt::Display for CacheStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut member = String::new();
        self.render(&mut member);
        f.write_str(&member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9211_2_1_hit() {
        assert_eq!(CacheStatus::hit().to_string(), "velox; hit");
    }

    #[test]
    fn rfc9211_2_1_hit_with_ttl() {
        assert_eq!(
            CacheStatus::hit().with_ttl(376).to_string(),
            "velox; hit; ttl=376"
        );
    }

    #[test]
    fn rfc9211_2_2_every_fwd_token() {
        let cases = [
            (Fwd::Bypass, "velox; fwd=bypass"),
            (Fwd::Method, "velox; fwd=method"),
            (Fwd::UriMiss, "velox; fwd=uri-miss"),
            (Fwd::VaryMiss, "velox; fwd=vary-miss"),
            (Fwd::Miss, "velox; fwd=miss"),
            (Fwd::Request, "velox; fwd=request"),
            (Fwd::Stale, "velox; fwd=stale"),
            (Fwd::Partial, "velox; fwd=partial"),
        ];
        for (fwd, want) in cases {
            assert_eq!(CacheStatus::forward(fwd).to_string(), want);
        }
    }

    #[test]
    fn rfc9211_2_5_uri_miss_stored() {
        assert_eq!(
            CacheStatus::forward(Fwd::UriMiss)
                .with_stored(true)
                .to_string(),
            "velox; fwd=uri-miss; stored"
        );
    }

    #[test]
    fn rfc9211_2_3_stale_revalidated_304() {
        assert_eq!(
            CacheStatus::forward(Fwd::Stale)
                .with_fwd_status(304)
                .with_ttl(60)
                .with_stored(true)
                .to_string(),
            "velox; fwd=stale; fwd-status=304; ttl=60; stored"
        );
    }

    #[test]
    fn rfc9211_2_4_negative_ttl() {
        assert_eq!(
            CacheStatus::hit().with_ttl(-12).to_string(),
            "velox; hit; ttl=-12"
        );
    }

    #[test]
    fn rfc9211_2_6_collapsed() {
        assert_eq!(
            CacheStatus::forward(Fwd::UriMiss)
                .with_collapsed(true)
                .to_string(),
            "velox; fwd=uri-miss; collapsed"
        );
    }

    #[test]
    fn rfc9211_2_parameter_order_is_fixed() {
        // Set in reverse order; rendered in RFC order.
        let s = CacheStatus::default()
            .with_detail("d")
            .with_key("k")
            .with_collapsed(true)
            .with_stored(true)
            .with_ttl(5)
            .with_fwd_status(200);
        let s = CacheStatus {
            fwd: Some(Fwd::Miss),
            ..s
        };
        assert_eq!(
            s.to_string(),
            "velox; fwd=miss; fwd-status=200; ttl=5; stored; collapsed; key=\"k\"; detail=d"
        );
    }

    #[test]
    fn rfc9211_2_7_key_is_escaped_sf_string() {
        assert_eq!(
            CacheStatus::hit()
                .with_key("https://e.com/a\"b\\c")
                .to_string(),
            "velox; hit; key=\"https://e.com/a\\\"b\\\\c\""
        );
    }

    #[test]
    fn rfc8941_3_3_3_key_non_printable_escaped() {
        let s = CacheStatus::hit().with_key("a\u{e9}%").to_string();
        assert_eq!(s, "velox; hit; key=\"a%C3%A9%25\"");
        assert!(s.is_ascii());
    }

    #[test]
    fn rfc9211_2_8_detail_token_or_string() {
        assert_eq!(
            CacheStatus::forward(Fwd::Bypass)
                .with_detail("route-bypass")
                .to_string(),
            "velox; fwd=bypass; detail=route-bypass"
        );
        assert_eq!(
            CacheStatus::forward(Fwd::UriMiss)
                .with_detail("set-cookie present")
                .to_string(),
            "velox; fwd=uri-miss; detail=\"set-cookie present\""
        );
        assert_eq!(
            CacheStatus::hit().with_detail("1abc").to_string(),
            "velox; hit; detail=\"1abc\""
        );
        assert_eq!(
            CacheStatus::hit().with_detail("").to_string(),
            "velox; hit; detail=\"\""
        );
    }

    #[test]
    fn rfc9211_2_bare_member() {
        assert_eq!(CacheStatus::default().to_string(), "velox");
    }

    #[test]
    fn rfc9211_2_stored_false_omitted() {
        assert_eq!(
            CacheStatus::forward(Fwd::Request)
                .with_stored(false)
                .to_string(),
            "velox; fwd=request"
        );
    }
}
