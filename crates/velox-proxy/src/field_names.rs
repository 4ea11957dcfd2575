//! Field names as parsed from a head, remembered by position.
//!
//! Turning a field name into a `HeaderName` lowercases it and matches it against the standard
//! names (about 120 instructions), and a non-standard name is copied into a fresh allocation.
//! A client or an origin sends the same names in the same order and spelling head after head,
//! so each thread remembers, for every position in a head, the last raw name seen there and
//! its `HeaderName`: an exact byte comparison then stands in for the parse. Anything else is
//! parsed as usual and remembered in its place.

use http::header::{HeaderName, InvalidHeaderName};
use std::cell::RefCell;

/// Positions remembered per head; fields further on are always parsed.
const POSITIONS: usize = 32;
/// Longer names are always parsed (and not kept).
const MAX_NAME: usize = 64;

/// The names last seen at each position of one kind of head.
#[derive(Default)]
pub struct FieldNames {
    slots: Vec<Option<(Box<[u8]>, HeaderName)>>,
}

impl FieldNames {
    /// The `HeaderName` for `raw`, the name of the field at `position` in its head.
    pub fn name(&mut self, position: usize, raw: &[u8]) -> Result<HeaderName, InvalidHeaderName> {
        if let Some(Some((seen, name))) = self.slots.get(position) {
            if **seen == *raw {
                return Ok(name.clone());
            }
        }
        let name = HeaderName::from_bytes(raw)?;
        if position < POSITIONS && raw.len() <= MAX_NAME {
            if self.slots.len() <= position {
                self.slots.resize_with(position + 1, || None);
            }
            self.slots[position] = Some((Box::from(raw), name.clone()));
        }
        Ok(name)
    }
}

thread_local! {
    /// Request heads this thread parsed (the HTTP/1.1 server).
    pub static REQUEST_NAMES: RefCell<FieldNames> = RefCell::default();
    /// Response heads this thread parsed (the upstream client).
    pub static RESPONSE_NAMES: RefCell<FieldNames> = RefCell::default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_name_is_used_only_for_the_same_bytes_at_the_same_position() {
        let mut names = FieldNames::default();
        assert_eq!(names.name(0, b"Content-Type").unwrap(), "content-type");
        assert_eq!(names.name(1, b"X-Custom").unwrap(), "x-custom");
        // Same position, other spelling or other name: parsed again.
        assert_eq!(names.name(0, b"content-type").unwrap(), "content-type");
        assert_eq!(names.name(0, b"X-Other").unwrap(), "x-other");
        assert_eq!(names.name(1, b"X-Custom").unwrap(), "x-custom");
        assert_eq!(names.name(1, b"X-Custom").unwrap(), "x-custom");
        // Invalid names stay invalid, and are never remembered.
        assert!(names.name(2, b"Bad Name").is_err());
        assert!(names.name(2, b"Bad Name").is_err());
        assert_eq!(names.slots.len(), 2);
        // Long names and far positions are parsed every time, not kept.
        let long = vec![b'a'; MAX_NAME + 1];
        assert_eq!(names.name(2, &long).unwrap().as_str().len(), MAX_NAME + 1);
        assert_eq!(names.name(POSITIONS, b"Date").unwrap(), "date");
        assert_eq!(names.slots.len(), 2);
        // A later position is kept even when one before it is not.
        assert_eq!(names.name(4, b"Date").unwrap(), "date");
        assert_eq!(names.name(4, b"Date").unwrap(), "date");
        assert!(matches!(names.slots[4], Some((ref raw, _)) if **raw == *b"Date"));
    }
}
