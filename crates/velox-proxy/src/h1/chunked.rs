//! A streaming decoder for the chunked transfer coding (RFC 9112 §7.1). Pure: bytes in, data out.

use bytes::{Buf, Bytes, BytesMut};

/// Longest chunk-size line accepted, extensions included.
const MAX_SIZE_LINE: usize = 4096;
/// Largest trailer section accepted; trailers are read and dropped.
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits, then optional extensions, up to CR.
    Size {
        value: u64,
        digits: u8,
        in_ext: bool,
    },
    SizeLf {
        value: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    Trailer {
        line_len: usize,
    },
    TrailerLf {
        line_len: usize,
    },
    Done,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Data(Bytes),
    NeedMore,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body: {0}")]
pub struct ChunkedError(&'static str);

#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    line_bytes: usize,
    trailer_bytes: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: State::Size {
                value: 0,
                digits: 0,
                in_ext: false,
            },
            line_bytes: 0,
            trailer_bytes: 0,
        }
    }
}

impl ChunkedDecoder {
    /// Consumes what it can from `buf`; returns data as soon as any is available.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ChunkedError> {
        loop {
            match self.state {
                State::Done => return Ok(Decoded::Done),
                State::Data(remaining) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = remaining.min(buf.len() as u64);
                    let data = buf.split_to(n as usize).freeze();
                    self.state = if n == remaining {
                        State::DataCr
                    } else {
                        State::Data(remaining - n)
                    };
                    return Ok(Decoded::Data(data));
                }
                _ => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let byte = buf[0];
                    buf.advance(1);
                    self.state = self.step(byte)?;
                }
            }
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn step(&mut self, byte: u8) -> Result<State, ChunkedError> {
        let bad = |why| Err(ChunkedError(why));
        Ok(match self.state {
            State::Size {
                value,
                digits,
                in_ext,
            } => {
                self.line_bytes += 1;
                if self.line_bytes > MAX_SIZE_LINE {
                    return bad("chunk-size line too long");
                }
                match byte {
                    b'\r' if digits > 0 => State::SizeLf { value },
                    b'\r' => return bad("missing chunk size"),
                    b'\n' => return bad("bare LF in chunk-size line"),
                    _ if in_ext => State::Size {
                        value,
                        digits,
                        in_ext,
                    },
                    b';' | b' ' | b'\t' if digits > 0 => State::Size {
                        value,
                        digits,
                        in_ext: true,
                    },
                    _ => {
                        let digit = (byte as char)
                            .to_digit(16)
                            .ok_or(ChunkedError("invalid chunk size"))?;
                        if digits >= 16 {
                            return bad("chunk size too large");
                        }
                        State::Size {
                            value: value * 16 + u64::from(digit),
                            digits: digits + 1,
                            in_ext,
                        }
                    }
                }
            }
            State::SizeLf { value } => {
                self.line_bytes = 0;
                match (byte, value) {
                    (b'\n', 0) => State::Trailer { line_len: 0 },
                    (b'\n', n) => State::Data(n),
                    _ => return bad("expected LF after chunk size"),
                }
            }
            State::DataCr if byte == b'\r' => State::DataLf,
            State::DataLf if byte == b'\n' => State::Size {
                value: 0,
                digits: 0,
                in_ext: false,
            },
            State::DataCr | State::DataLf => return bad("chunk data not followed by CRLF"),
            State::Trailer { line_len } => {
                self.trailer_bytes += 1;
                if self.trailer_bytes > MAX_TRAILERS {
                    return bad("trailer section too large");
                }
                match byte {
                    b'\r' => State::TrailerLf { line_len },
                    b'\n' => return bad("bare LF in trailer section"),
                    _ => State::Trailer {
                        line_len: line_len + 1,
                    },
                }
            }
            State::TrailerLf { line_len } if byte == b'\n' => {
                if line_len == 0 {
                    State::Done
                } else {
                    State::Trailer { line_len: 0 }
                }
            }
            State::TrailerLf { .. } => return bad("expected LF in trailer section"),
            State::Data(_) | State::Done => self.state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns the body or the error.
    fn decode_all(input: &[u8], step: usize) -> Result<Vec<u8>, ChunkedError> {
        let mut decoder = ChunkedDecoder::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            loop {
                match decoder.decode(&mut buf)? {
                    Decoded::Data(d) => out.extend_from_slice(&d),
                    Decoded::NeedMore => break,
                    Decoded::Done => return Ok(out),
                }
            }
        }
        Err(ChunkedError("incomplete"))
    }

    #[test]
    fn decodes_in_any_split() {
        let raw = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-T: 1\r\n\r\n";
        for step in 1..raw.len() {
            assert_eq!(
                decode_all(raw, step).unwrap(),
                b"hello, world",
                "step {step}"
            );
        }
    }

    #[test]
    fn leaves_bytes_after_the_body() {
        let mut decoder = ChunkedDecoder::default();
        let mut buf = BytesMut::from(&b"1\r\na\r\n0\r\n\r\nGET / HTTP/1.1"[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"a")))
        );
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::Done));
        assert_eq!(&buf[..], b"GET / HTTP/1.1");
    }

    #[test]
    fn refuses_malformed_rfc9112_7_1() {
        for raw in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"11111111111111111\r\n",
            b"-1\r\n",
        ] {
            assert!(decode_all(raw, 1).is_err(), "{raw:?}");
        }
        let long_ext = format!("1;{}\r\na\r\n0\r\n\r\n", "e".repeat(5000));
        assert!(decode_all(long_ext.as_bytes(), 64).is_err());
    }
}
