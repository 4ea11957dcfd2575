//! On-disk object file format (version 1), all integers little-endian.
//!
//! ```text
//! offset  size  field
//!  0       8    magic "VELOXOBJ"
//!  8       2    format version (1)
//! 10       2    flags (0)
//! 12       4    key length K
//! 16       4    meta length M
//! 20       4    chunk size C
//! 24       8    body length B
//! 32       8    sequence number (unique per written file, monotonic)
//! 40       8    namespace generation
//! 48       4    header CRC32: bytes 0..48 followed by the key
//! 52       4    meta CRC32: the meta bytes followed by the chunk CRC table
//! 56       K    key (UTF-8)
//! 56+K     M    meta (opaque to the store)
//! ..       4*N  one CRC32 per body chunk, N = ceil(B / C)
//! ..       B    body, N chunks of C bytes (the last may be shorter)
//! ```
//!
//! A file is valid only if its length is exactly the sum above, so a truncated file is rejected
//! before any chunk is read. Every chunk is verified against its CRC when it is read.

/// File magic.
pub(crate) const MAGIC: [u8; 8] = *b"VELOXOBJ";
/// Current format version.
pub(crate) const VERSION: u16 = 1;
/// Length of the fixed part of the header.
pub(crate) const FIXED_LEN: usize = 56;

/// Largest key accepted in a file header.
pub(crate) const MAX_KEY_LEN: usize = 64 * 1024;
/// Largest meta accepted in a file header.
pub(crate) const MAX_META_LEN: usize = 16 * 1024 * 1024;
/// Largest chunk size accepted in a file header.
pub(crate) const MAX_CHUNK_SIZE: usize = 64 * 1024 * 1024;
/// Largest body accepted in a file header (1 TiB): guards offset arithmetic.
pub(crate) const MAX_BODY_LEN: u64 = 1 << 40;

/// Why a header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FormatError {
    Magic,
    Version,
    Bounds,
    HeaderCrc,
}

/// The fixed part of a file header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub key_len: u32,
    pub meta_len: u32,
    pub chunk_size: u32,
    pub body_len: u64,
    pub seq: u64,
    pub gen: u64,
    pub header_crc: u32,
    pub meta_crc: u32,
}

fn u16_at(b: &[u8; FIXED_LEN], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8; FIXED_LEN], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8; FIXED_LEN], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

impl Header {
    /// Builds a header for an object; CRCs are filled in by [`Header::encode`].
    pub fn new(
        key: &str,
        meta: &[u8],
        chunk_size: usize,
        body_len: u64,
        seq: u64,
        gen: u64,
    ) -> Header {
        Header {
            key_len: key.len() as u32,
            meta_len: meta.len() as u32,
            chunk_size: chunk_size as u32,
            body_len,
            seq,
            gen,
            header_crc: 0,
            meta_crc: 0,
        }
    }

    /// Number of body chunks.
    pub fn chunks(&self) -> u64 {
        self.body_len.div_ceil(u64::from(self.chunk_size.max(1)))
    }

    /// Offset of the meta bytes.
    pub fn meta_offset(&self) -> u64 {
        FIXED_LEN as u64 + u64::from(self.key_len)
    }

    /// Offset of the chunk CRC table.
    pub fn crc_offset(&self) -> u64 {
        self.meta_offset() + u64::from(self.meta_len)
    }

    /// Offset of the first body byte.
    pub fn body_offset(&self) -> u64 {
        self.crc_offset() + 4 * self.chunks()
    }

    /// Exact length of a valid file with this header.
    pub fn file_len(&self) -> u64 {
        self.body_offset() + self.body_len
    }

    /// Serialises the fixed header followed by the key, computing the header CRC.
    /// `meta_crc` must already be set.
    pub fn encode(&mut self, key: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED_LEN + key.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&self.key_len.to_le_bytes());
        out.extend_from_slice(&self.meta_len.to_le_bytes());
        out.extend_from_slice(&self.chunk_size.to_le_bytes());
        out.extend_from_slice(&self.body_len.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.gen.to_le_bytes());
        let mut h = crc32fast::Hasher::new();
        h.update(&out);
        h.update(key.as_bytes());
        self.header_crc = h.finalize();
        out.extend_from_slice(&self.header_crc.to_le_bytes());
        out.extend_from_slice(&self.meta_crc.to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        out
    }

    /// Decodes and bounds-checks the fixed header. The header CRC is checked separately by
    /// [`Header::verify_key`] once the key bytes have been read.
    pub fn decode(b: &[u8; FIXED_LEN]) -> Result<Header, FormatError> {
        if b[0..8] != MAGIC {
            return Err(FormatError::Magic);
        }
        if u16_at(b, 8) != VERSION {
            return Err(FormatError::Version);
        }
        let h = Header {
            key_len: u32_at(b, 12),
            meta_len: u32_at(b, 16),
            chunk_size: u32_at(b, 20),
            body_len: u64_at(b, 24),
            seq: u64_at(b, 32),
            gen: u64_at(b, 40),
            header_crc: u32_at(b, 48),
            meta_crc: u32_at(b, 52),
        };
        if h.key_len as usize > MAX_KEY_LEN
            || h.meta_len as usize > MAX_META_LEN
            || h.chunk_size == 0
            || h.chunk_size as usize > MAX_CHUNK_SIZE
            || h.body_len > MAX_BODY_LEN
        {
            return Err(FormatError::Bounds);
        }
        Ok(h)
    }

    /// Checks the header CRC over the fixed header and the key bytes read from the file.
    pub fn verify_key(&self, fixed: &[u8; FIXED_LEN], key: &[u8]) -> Result<(), FormatError> {
        let mut c = crc32fast::Hasher::new();
        c.update(&fixed[..48]);
        c.update(key);
        if c.finalize() == self.header_crc && key.len() == self.key_len as usize {
            Ok(())
        } else {
            Err(FormatError::HeaderCrc)
        }
    }
}

/// CRC over the meta bytes and the chunk CRC table (as stored).
pub(crate) fn meta_crc(meta: &[u8], crc_table: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(meta);
    h.update(crc_table);
    h.finalize()
}

/// Decodes a stored chunk CRC table.
pub(crate) fn decode_crc_table(table: &[u8]) -> Vec<u32> {
    table
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Stable, salted 64-bit hash of a key. The salt is random per store directory and persisted,
/// so file names are stable across restarts but not predictable by clients (a crafted collision
/// could only make two keys evict each other; the full key is always verified).
pub(crate) fn key_hash(salt: u64, key: &[u8]) -> u64 {
    const M: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = salt ^ (key.len() as u64).wrapping_mul(M);
    let mut words = key.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(M).rotate_left(29);
    }
    let rem = words.remainder();
    if !rem.is_empty() {
        let mut b = [0u8; 8];
        b[..rem.len()].copy_from_slice(rem);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(M).rotate_left(29);
    }
    // murmur3 fmix64
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_format_header_round_trip() {
        let mut h = Header::new("k", b"meta", 4, 10, 7, 3);
        h.meta_crc = 42;
        let bytes = h.encode("k");
        let mut fixed = [0u8; FIXED_LEN];
        fixed.copy_from_slice(&bytes[..FIXED_LEN]);
        let d = Header::decode(&fixed).expect("decode");
        assert_eq!(d, h);
        assert_eq!(d.chunks(), 3);
        assert_eq!(d.file_len(), 56 + 1 + 4 + 12 + 10);
        assert!(d.verify_key(&fixed, b"k").is_ok());
        assert!(d.verify_key(&fixed, b"j").is_err());
        fixed[0] = b'X';
        assert_eq!(Header::decode(&fixed), Err(FormatError::Magic));
    }

    #[test]
    fn store_format_hash_depends_on_salt_and_key() {
        assert_ne!(key_hash(1, b"abc"), key_hash(2, b"abc"));
        assert_ne!(key_hash(1, b"abc"), key_hash(1, b"abd"));
        assert_ne!(key_hash(1, b"abc"), key_hash(1, b"abc\0"));
        assert_eq!(key_hash(9, b"hello world!"), key_hash(9, b"hello world!"));
    }
}
