//! Heavy hitters with bounded memory: the space-saving algorithm (Metwally et al., 2005).
//! A fixed number of slots; an unseen key takes over the slot with the smallest count, so odd
//! URLs can never grow memory, and any key more frequent than 1/capacity of the stream is kept.

pub struct TopK {
    capacity: usize,
    /// Each slot's key hash and count, apart from the slots: the lookup every request makes
    /// scans only the hashes, eight to a cache line, and an unseen key looks for the smallest
    /// count in the counts alone.
    hashes: Vec<u64>,
    counts: Vec<u64>,
    slots: Vec<Slot>,
}

struct Slot {
    /// Reused by the next key that takes the slot over (no allocation then).
    key: String,
    /// Overestimation bound: the count the slot had when this key took it over.
    error: u64,
}

/// Longest key kept (bytes); longer paths are cut at a character boundary.
pub const MAX_KEY: usize = 200;

/// A multiply-rotate hash taking eight bytes a step (a byte-at-a-time hash cost a 40-byte path
/// about 160 instructions): enough to skip string comparisons for keys that differ.
pub fn hash(key: &str) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes = key.as_bytes();
    let word = |w: &[u8]| u64::from_le_bytes(w.try_into().unwrap_or_default());
    let mix = |h: u64, w: u64| (h ^ w).wrapping_mul(K).rotate_left(31);
    let mut h = mix(K, bytes.len() as u64);
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        h = mix(h, word(w));
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        // The last eight bytes (overlapping the words before), or the few there are.
        let last = if bytes.len() >= 8 {
            word(&bytes[bytes.len() - 8..])
        } else {
            tail.iter().fold(0, |w, &b| w << 8 | u64::from(b))
        };
        h = mix(h, last);
    }
    h ^ h >> 29
}

pub fn truncate(key: &str) -> &str {
    if key.len() <= MAX_KEY {
        return key;
    }
    let mut end = MAX_KEY;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    &key[..end]
}

impl TopK {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        TopK {
            capacity,
            hashes: Vec::with_capacity(capacity),
            counts: Vec::with_capacity(capacity),
            slots: Vec::with_capacity(capacity),
        }
    }

    pub fn add(&mut self, key: &str) {
        let key = truncate(key);
        let h = hash(key);
        let found = (self.hashes.iter().zip(&self.slots))
            .position(|(&slot_hash, slot)| slot_hash == h && slot.key == key);
        if let Some(i) = found {
            self.counts[i] += 1;
            return;
        }
        if self.slots.len() < self.capacity {
            self.hashes.push(h);
            self.counts.push(1);
            self.slots.push(Slot {
                key: key.to_owned(),
                error: 0,
            });
            return;
        }
        let min = (self.counts.iter().enumerate()).min_by_key(|&(_, &count)| count);
        if let Some((i, &count)) = min {
            let slot = &mut self.slots[i];
            self.hashes[i] = h;
            slot.key.clear();
            slot.key.push_str(key);
            slot.error = count;
            self.counts[i] = count + 1;
        }
    }

    /// The `n` largest `(key, count, error)`, largest first.
    pub fn top(&self, n: usize) -> Vec<(String, u64, u64)> {
        let mut v: Vec<_> = (self.slots.iter().zip(&self.counts))
            .map(|(s, &count)| (s.key.clone(), count, s.error))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_frequent_keys_within_fixed_memory() {
        let mut t = TopK::new(8);
        for i in 0..1000 {
            t.add("/hot");
            if i % 2 == 0 {
                t.add("/warm");
            }
            t.add(&format!("/odd/{i}"));
        }
        assert_eq!(t.slots.len(), 8);
        let top = t.top(2);
        assert_eq!(top[0].0, "/hot");
        assert_eq!(top[0].1, 1000);
        assert_eq!(top[1].0, "/warm");
    }

    #[test]
    fn hashes_tell_apart_keys_that_differ_anywhere() {
        let keys: Vec<String> = (0..40)
            .flat_map(|len| {
                let base = "k".repeat(len);
                (0..len).map(move |i| {
                    let mut k = base.clone().into_bytes();
                    k[i] = b'x';
                    String::from_utf8(k).unwrap()
                })
            })
            .chain((0..40).map(|len| "k".repeat(len)))
            .collect();
        let hashes: std::collections::HashSet<u64> = keys.iter().map(|k| hash(k)).collect();
        assert_eq!(hashes.len(), keys.len());
        assert_eq!(hash("/a"), hash(&String::from("/a")));
    }

    #[test]
    fn long_keys_are_cut_on_char_boundaries() {
        let long = "é".repeat(300);
        let cut = truncate(&long);
        assert!(cut.len() <= MAX_KEY);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
