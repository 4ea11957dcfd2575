//! Writing a JSON line in few instructions, straight into the buffer it is written from. The
//! access-log writer formats one line per request, twenty-odd pieces each; a [`Line`] copies a
//! piece after one bounds check, inline for the short ones (instead of a call to the C
//! library's copy, whose entry and size dispatch showed in the writer's profile).
//!
//! Pieces made a byte at a time (digits, an address) are written straight into the line
//! ([`Line::next`]), never made in a buffer on the stack and copied: bytes stored one at a time
//! and read back as a wider piece stall the CPU until the stores complete (no store-to-load
//! forwarding), and those stalls took about a fifth of the writer's time (`perf annotate`).

use std::net::IpAddr;
use std::time::Duration;

/// A line being written into a byte buffer's room.
pub struct Line<'a> {
    room: &'a mut [u8],
    len: usize,
}

impl<'a> Line<'a> {
    /// Writes into `room`; writing past its end panics.
    pub fn new(room: &'a mut [u8]) -> Line<'a> {
        Line { room, len: 0 }
    }

    /// How many bytes the line has taken.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn put(&mut self, s: &[u8]) {
        let Some(to) = self.room.get_mut(self.len..self.len + s.len()) else {
            panic!("a line outgrew its room");
        };
        copy_short(s, to);
        self.len += s.len();
    }

    /// The next `N` bytes of the line, to be written in place.
    #[inline]
    fn next<const N: usize>(&mut self) -> &mut [u8; N] {
        let Some(to) = self
            .room
            .get_mut(self.len..)
            .and_then(|r| r.first_chunk_mut::<N>())
        else {
            panic!("a line outgrew its room");
        };
        self.len += N;
        to
    }

    /// A decimal number, its digits written in place from the last.
    pub fn number(&mut self, n: impl Into<u64>) {
        let mut n = n.into();
        let digits = n.checked_ilog10().unwrap_or(0) as usize + 1;
        let Some(to) = self.room.get_mut(self.len..self.len + digits) else {
            panic!("a line outgrew its room");
        };
        for digit in to.iter_mut().rev() {
            *digit = b'0' + (n % 10) as u8;
            n /= 10;
        }
        self.len += digits;
    }

    /// Milliseconds with microsecond precision, as a JSON number (`1.5` ms is written `1.500`).
    pub fn millis(&mut self, d: Duration) {
        // In u64: `as_micros` is a u128, whose division is a library call.
        let micros = d
            .as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(d.subsec_micros()));
        self.number(micros / 1000);
        let frac = (micros % 1000) as u16;
        let [dot, hundreds, tens, ones] = self.next();
        *dot = b'.';
        *hundreds = b'0' + (frac / 100) as u8;
        *tens = b'0' + (frac / 10 % 10) as u8;
        *ones = b'0' + (frac % 10) as u8;
    }

    /// `".123Z"`: the milliseconds of a timestamp.
    pub fn millis_z(&mut self, ms: u16) {
        let [dot, hundreds, tens, ones, z] = self.next();
        *dot = b'.';
        *hundreds = b'0' + (ms / 100 % 10) as u8;
        *tens = b'0' + (ms / 10 % 10) as u8;
        *ones = b'0' + (ms % 10) as u8;
        *z = b'Z';
    }

    /// Writes a piece of at most `max` bytes in place: `write` gets that much room and returns
    /// how many bytes it wrote.
    #[inline]
    pub fn write_with(&mut self, max: usize, write: impl FnOnce(&mut [u8]) -> usize) {
        let Some(to) = self.room.get_mut(self.len..self.len + max) else {
            panic!("a line outgrew its room");
        };
        self.len += write(to).min(max);
    }

    /// `bytes` in quotes, as they are: for text known to need no escaping. One bounds check for
    /// the three pieces.
    #[inline]
    pub fn quoted(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        let Some(to) = self.room.get_mut(self.len..self.len + n + 2) else {
            panic!("a line outgrew its room");
        };
        to[0] = b'"';
        copy_short(bytes, &mut to[1..=n]);
        to[n + 1] = b'"';
        self.len += n + 2;
    }

    /// A JSON string: plain text (the usual case) is copied as it is; anything else is escaped
    /// as serde_json does (bytes that are not UTF-8 become U+FFFD). Needs [`string_room`].
    #[inline]
    pub fn string(&mut self, s: &[u8]) {
        if plain(s) {
            self.quoted(s);
        } else {
            self.escaped(s);
        }
    }

    /// [`Line::string`] for text that needs escaping.
    #[cold]
    fn escaped(&mut self, s: &[u8]) {
        self.put(b"\"");
        for chunk in s.utf8_chunks() {
            for &b in chunk.valid().as_bytes() {
                match b {
                    b'"' => self.put(b"\\\""),
                    b'\\' => self.put(b"\\\\"),
                    b'\n' => self.put(b"\\n"),
                    b'\r' => self.put(b"\\r"),
                    b'\t' => self.put(b"\\t"),
                    0x08 => self.put(b"\\b"),
                    0x0c => self.put(b"\\f"),
                    0..=0x1f => self.put(&[
                        b'\\',
                        b'u',
                        b'0',
                        b'0',
                        HEX[usize::from(b >> 4)],
                        HEX[usize::from(b & 0xf)],
                    ]),
                    _ => self.put(&[b]),
                }
            }
            if !chunk.invalid().is_empty() {
                self.put(
                    char::REPLACEMENT_CHARACTER
                        .encode_utf8(&mut [0; 4])
                        .as_bytes(),
                );
            }
        }
        self.put(b"\"");
    }

    /// An address, without quotes (nothing in it needs escaping). Needs [`IP_ROOM`].
    pub fn ip(&mut self, ip: IpAddr) {
        match ip {
            // Digits by hand, in place, rather than four number formattings and three pieces:
            // with one bounds check for a quoted string, the writer's instructions per line
            // went from 1,377 to 1,226.
            IpAddr::V4(v4) => self.write_with(15, |text| {
                let mut n = 0;
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text[n] = b'.';
                        n += 1;
                    }
                    if octet >= 100 {
                        text[n] = b'0' + octet / 100;
                        n += 1;
                    }
                    if octet >= 10 {
                        text[n] = b'0' + octet / 10 % 10;
                        n += 1;
                    }
                    text[n] = b'0' + octet % 10;
                    n += 1;
                }
                n
            }),
            IpAddr::V6(v6) => {
                use std::io::Write;
                let mut text = [0; IP_ROOM];
                let mut rest = &mut text[..];
                let _ = write!(rest, "{v6}");
                let len = IP_ROOM - rest.len();
                self.put(&text[..len]);
            }
        }
    }
}

/// Appends a line of at most `room` bytes to `out`, written by `write`.
pub fn append_to(out: &mut Vec<u8>, room: usize, write: impl FnOnce(&mut Line)) {
    let start = out.len();
    out.resize(start + room, 0);
    let mut line = Line::new(&mut out[start..]);
    write(&mut line);
    let len = line.len();
    out.truncate(start + len);
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The most a JSON string of `len` bytes of text takes: six bytes a byte (`\u001f`) and quotes.
pub const fn string_room(len: usize) -> usize {
    6 * len + 2
}

/// The longest address text: `ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`.
pub const IP_ROOM: usize = 45;

/// Copies `src` to `dst` (of the same length) with two overlapping fixed-size copies for up to
/// 32 bytes, which compile to a load and a store each, instead of a call to `memcpy`.
#[inline(always)]
fn copy_short(src: &[u8], dst: &mut [u8]) {
    let n = src.len();
    assert_eq!(n, dst.len());
    match n {
        0 => {}
        // Three stores rather than a loop, which the compiler would turn into a `memcpy` call.
        1..=3 => {
            dst[0] = src[0];
            dst[n / 2] = src[n / 2];
            dst[n - 1] = src[n - 1];
        }
        4..=7 => {
            dst[..4].copy_from_slice(&src[..4]);
            dst[n - 4..].copy_from_slice(&src[n - 4..]);
        }
        8..=16 => {
            dst[..8].copy_from_slice(&src[..8]);
            dst[n - 8..].copy_from_slice(&src[n - 8..]);
        }
        17..=32 => {
            dst[..16].copy_from_slice(&src[..16]);
            dst[n - 16..].copy_from_slice(&src[n - 16..]);
        }
        _ => dst.copy_from_slice(src),
    }
}

/// Printable ASCII that needs no JSON escaping. Eight bytes at a time (SWAR): this runs over
/// most strings of every line.
pub fn plain(bytes: &[u8]) -> bool {
    if bytes.len() < 8 {
        return bytes
            .iter()
            .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
    }
    let word = |w: &[u8]| u64::from_ne_bytes(w.try_into().unwrap_or_default());
    let mut words = bytes.chunks_exact(8);
    // The last word overlaps the one before it when the length is not a multiple of 8.
    words.all(|w| plain_word(word(w))) && plain_word(word(&bytes[bytes.len() - 8..]))
}

/// No byte of `w` is below 0x20, at or above 0x7f, or equal to `"` or `\`.
fn plain_word(w: u64) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    // `w + 1` sets the high bit of a 0x7f byte (and of none below it: no carry).
    (w | w.wrapping_add(ONES)) & HIGH
        | w.wrapping_sub(ONES * 0x20) & !w & HIGH
        | has_zero(w ^ (ONES * u64::from(b'"')))
        | has_zero(w ^ (ONES * u64::from(b'\\')))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(room: usize, f: impl FnOnce(&mut Line)) -> String {
        let mut buf = vec![0; room];
        let mut line = Line::new(&mut buf);
        f(&mut line);
        let len = line.len();
        buf.truncate(len);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn pieces_of_every_length_are_copied_whole() {
        for len in 0..80 {
            let piece: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let text = written(len + 2, |l| {
                l.put(&piece);
                l.put(b"!!");
            });
            assert_eq!(text.as_bytes(), [&piece[..], b"!!"].concat());
        }
    }

    #[test]
    #[should_panic(expected = "outgrew its room")]
    fn writing_past_the_room_panics() {
        written(3, |l| l.put(b"four"));
    }

    #[test]
    fn strings_are_escaped_as_serde_json_does() {
        let cases: [&[u8]; 7] = [
            b"/a b",
            "/q?\"x\"\\\u{7}\u{1f}\n\r\t\u{8}\u{c}\u{7f}é".as_bytes(),
            b"/\xff",
            b"a\xf0\x9f\x98b\xe9c",
            b"",
            b"0123456789abcdef0123456789abcdef0123456789",
            "日本語".as_bytes(),
        ];
        for s in cases {
            let text = written(string_room(s.len()), |l| l.string(s));
            let expected = serde_json::to_string(&String::from_utf8_lossy(s)).unwrap();
            assert_eq!(text, expected, "{s:?}");
        }
    }

    #[test]
    fn numbers_addresses_and_milliseconds() {
        let text = written(200, |l| {
            l.number(0u16);
            l.put(b" ");
            l.number(u64::MAX);
            l.put(b" ");
            l.millis(Duration::from_micros(1500));
            l.put(b" ");
            l.millis(Duration::from_nanos(999));
            l.put(b" ");
            l.ip("10.0.200.1".parse().unwrap());
            l.put(b" ");
            l.ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap());
            l.put(b" ");
            l.ip("::ffff:1.2.3.4".parse().unwrap());
        });
        assert_eq!(
            text,
            "0 18446744073709551615 1.500 0.000 10.0.200.1 \
             ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ::ffff:1.2.3.4"
        );
    }

    #[test]
    fn numbers_of_every_length_and_milliseconds_of_every_value() {
        let mut n = 1u64;
        for _ in 0..20 {
            for v in [n - 1, n, n.saturating_add(7)] {
                assert_eq!(written(20, |l| l.number(v)), v.to_string());
            }
            n = n.saturating_mul(10);
        }
        for ms in 0..1000 {
            assert_eq!(written(5, |l| l.millis_z(ms)), format!(".{ms:03}Z"));
        }
    }

    #[test]
    fn every_octet_of_an_ipv4_address_is_written_as_the_standard_library_does() {
        for a in 0..=255u8 {
            let ip = std::net::Ipv4Addr::new(a, 255 - a, a / 2, a % 10);
            let text = written(IP_ROOM, |l| l.ip(ip.into()));
            assert_eq!(text, ip.to_string());
        }
    }

    #[test]
    fn plain_finds_every_byte_that_needs_escaping_at_any_position() {
        for len in 0..20 {
            let clean = vec![b'a'; len];
            assert!(plain(&clean));
            for pos in 0..len {
                for bad in [0x00, 0x1f, b'"', b'\\', 0x7f, 0x80, 0xff] {
                    let mut v = clean.clone();
                    v[pos] = bad;
                    assert!(!plain(&v), "len {len} pos {pos} byte {bad:#x}");
                }
                let mut v = clean.clone();
                v[pos] = b' ';
                v[0] = b'~';
                assert!(plain(&v));
            }
        }
    }
}
