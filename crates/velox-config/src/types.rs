//! Human-readable value types: byte sizes ("64KiB") and durations ("30s").

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes, written in config as an integer or a string such as
/// `"512"`, `"64KiB"`, `"10MB"`, `"1.5GiB"` (units are case-insensitive; KB = 1000, KiB = 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// Units tried when printing, largest first; binary units win when both fit exactly.
const DISPLAY_UNITS: [(&str, u64); 8] = [
    ("TiB", TIB),
    ("GiB", GIB),
    ("MiB", MIB),
    ("KiB", KIB),
    ("TB", 1_000_000_000_000),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("KB", 1_000),
];

impl ByteSize {
    pub const fn b(n: u64) -> Self {
        ByteSize(n)
    }
    pub const fn kib(n: u64) -> Self {
        ByteSize(n * KIB)
    }
    pub const fn mib(n: u64) -> Self {
        ByteSize(n * MIB)
    }
    pub const fn gib(n: u64) -> Self {
        ByteSize(n * GIB)
    }
    pub const fn bytes(&self) -> u64 {
        self.0
    }
}

// `u128::is_multiple_of` needs Rust 1.87; the workspace MSRV is 1.80.
#[allow(clippy::manual_is_multiple_of)]
fn divides(m: u128, n: u128) -> bool {
    n % m == 0
}

fn unit_multiplier(unit: &str) -> Option<u64> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => KIB,
        "mib" => MIB,
        "gib" => GIB,
        "tib" => TIB,
        _ => return None,
    })
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, unit) = (&s[..split], s[split..].trim());
        let bad = || format!("invalid size {s:?}: expected e.g. \"512\", \"64KiB\", \"1.5GiB\"");
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        let digits_ok = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
        // Whole part required; a '.' must be followed by digits; cap lengths so u128 cannot overflow.
        if int.is_empty()
            || int.len() > 20
            || frac.len() > 18
            || !digits_ok(int)
            || !digits_ok(frac)
            || (number.contains('.') && frac.is_empty())
        {
            return Err(bad());
        }
        let mult = unit_multiplier(unit).ok_or_else(|| {
            format!("invalid size {s:?}: unknown unit {unit:?} (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)")
        })?;
        let int: u128 = int.parse().map_err(|_| bad())?;
        let frac_scale = 10u128.pow(frac.len() as u32);
        let frac: u128 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| bad())?
        };
        let frac_bytes = frac * u128::from(mult);
        if !divides(frac_scale, frac_bytes) {
            return Err(format!("invalid size {s:?}: not a whole number of bytes"));
        }
        let total = int * u128::from(mult) + frac_bytes / frac_scale;
        u64::try_from(total)
            .map(ByteSize)
            .map_err(|_| format!("invalid size {s:?}: too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        match DISPLAY_UNITS
            .iter()
            .find(|(_, m)| n != 0 && divides(u128::from(*m), u128::from(n)))
        {
            Some((unit, m)) => write!(f, "{}{unit}", n / m),
            None => write!(f, "{n}B"),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size: an integer number of bytes or a string like \"64KiB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("invalid size {v}: must not be negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration, written in config as a humantime string: `"30s"`, `"250ms"`, `"1m30s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }
    pub const fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }
    pub const fn get(&self) -> std::time::Duration {
        self.0
    }
    pub const fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

impl std::ops::Deref for Duration {
    type Target = std::time::Duration;
    fn deref(&self) -> &std::time::Duration {
        &self.0
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s.trim())
            .map(Duration)
            .map_err(|e| {
                format!("invalid duration {s:?}: {e} (expected e.g. \"30s\", \"250ms\", \"1m30s\")")
            })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // humantime writes "1m 30s"; drop the spaces so it reads like the config examples.
        let text = humantime::format_duration(self.0).to_string();
        f.write_str(&text.replace(' ', ""))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration string like \"30s\", \"250ms\" or \"1m30s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// An IP network written `addr/len` (`"10.0.0.0/8"`, `"::1/128"`); a bare address is a /32
/// or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: std::net::IpAddr,
    len: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = addr.parse().map_err(|_| {
            format!("{s:?} is not an IP network like \"10.0.0.0/8\" or \"::1/128\"")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{s:?}: the prefix length must be 0 to {max}")),
            },
        };
        Ok(Cidr { addr, len })
    }
}

impl Cidr {
    /// Whether `ip` is in this network; IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr::{V4, V6};
        let bits = |a: u128, b: u128, width: u32| {
            let shift = width - u32::from(self.len);
            shift >= width || (a >> shift) == (b >> shift)
        };
        match (self.addr, ip.to_canonical()) {
            (V4(net), V4(ip)) => bits(u32::from(net).into(), u32::from(ip).into(), 32),
            (V6(net), V6(ip)) => bits(u128::from(net), u128::from(ip), 128),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        let cases = [
            ("512", 512),
            ("0", 0),
            ("512B", 512),
            ("64KiB", 64 * 1024),
            ("64 kib", 64 * 1024),
            ("256MiB", 256 << 20),
            ("1GiB", 1 << 30),
            ("1TiB", 1 << 40),
            ("10MB", 10_000_000),
            ("1kb", 1000),
            ("2GB", 2_000_000_000),
            ("1.5GiB", 3 << 29),
            ("0.5KiB", 512),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(want)), "{text}");
        }
    }

    #[test]
    fn sizes_reject_garbage() {
        for text in [
            "12 parsecs",
            "",
            " ",
            "-1",
            "-1KiB",
            "KiB",
            "1.KiB",
            ".5KiB",
            "1.2.3MB",
            "1.5B",
            "1e3",
            "99999999999999999999999",
            "20000000TiB",
            "1 2KiB",
        ] {
            assert!(
                text.parse::<ByteSize>().is_err(),
                "{text:?} should be refused"
            );
        }
    }

    #[test]
    fn sizes_display_roundtrip() {
        for (n, text) in [
            (0, "0B"),
            (512, "512B"),
            (64 * 1024, "64KiB"),
            (1 << 30, "1GiB"),
            (3 << 29, "1536MiB"),
            (10_000_000, "10MB"),
            (1001, "1001B"),
        ] {
            assert_eq!(ByteSize(n).to_string(), text);
            assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(n)));
        }
    }

    #[test]
    fn durations_parse() {
        let d = |s: &str| s.parse::<Duration>().map(|d| d.get());
        assert_eq!(d("30s"), Ok(std::time::Duration::from_secs(30)));
        assert_eq!(d("250ms"), Ok(std::time::Duration::from_millis(250)));
        assert_eq!(d("1m30s"), Ok(std::time::Duration::from_secs(90)));
        assert_eq!(d("1h"), Ok(std::time::Duration::from_secs(3600)));
        for bad in ["", "-1s", "12 parsecs", "30", "s", "1x"] {
            assert!(d(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn durations_display_roundtrip() {
        for secs in [0, 1, 90, 3600, 86_461] {
            let d = Duration::from_secs(secs);
            assert_eq!(d.to_string().parse::<Duration>(), Ok(d));
        }
        assert_eq!(Duration::from_secs(90).to_string(), "1m30s");
        assert_eq!(Duration::from_millis(250).to_string(), "250ms");
    }

    #[test]
    fn cidrs() {
        let c = |s: &str| s.parse::<Cidr>().unwrap();
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert!(c("127.0.0.1/32").contains(ip("127.0.0.1")));
        assert!(!c("127.0.0.1/32").contains(ip("127.0.0.2")));
        assert!(c("10.0.0.0/8").contains(ip("10.200.3.4")));
        assert!(c("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert!(!c("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(c("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(!c("0.0.0.0/0").contains(ip("::1")));
        assert!(c("::1/128").contains(ip("::1")));
        assert!(c("fd00::/8").contains(ip("fd12::1")));
        assert!(c("::/0").contains(ip("2001:db8::1")));
        assert!(c("192.168.1.7").contains(ip("192.168.1.7")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "x/1",
            "10.0.0.0/-1",
            "10.0.0.0/",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
    }
}
