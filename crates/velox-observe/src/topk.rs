//! Heavy hitters with bounded memory: the space-saving algorithm (Metwally et al., 2005).
//! A fixed number of slots; an unseen key takes over the slot with the smallest count, so odd
//! URLs can never grow memory, and any key more frequent than 1/capacity of the stream is kept.

pub struct TopK {
    capacity: usize,
    slots: Vec<Slot>,
}

struct Slot {
    hash: u64,
    key: Box<str>,
    count: u64,
    /// Overestimation bound: the count the slot had when this key took it over.
    error: u64,
}

/// Longest key kept (bytes); longer paths are cut at a character boundary.
pub const MAX_KEY: usize = 200;

/// FNV-1a: enough to skip string comparisons for keys that differ.
pub fn hash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
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
        TopK {
            capacity: capacity.max(1),
            slots: Vec::with_capacity(capacity.max(1)),
        }
    }

    pub fn add(&mut self, key: &str) {
        let key = truncate(key);
        let h = hash(key);
        if let Some(slot) = self
            .slots
            .iter_mut()
            .find(|s| s.hash == h && &*s.key == key)
        {
            slot.count += 1;
            return;
        }
        if self.slots.len() < self.capacity {
            self.slots.push(Slot {
                hash: h,
                key: key.into(),
                count: 1,
                error: 0,
            });
            return;
        }
        if let Some(min) = self.slots.iter_mut().min_by_key(|s| s.count) {
            min.hash = h;
            min.key = key.into();
            min.error = min.count;
            min.count += 1;
        }
    }

    /// The `n` largest `(key, count, error)`, largest first.
    pub fn top(&self, n: usize) -> Vec<(String, u64, u64)> {
        let mut v: Vec<_> = self
            .slots
            .iter()
            .map(|s| (s.key.to_string(), s.count, s.error))
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
    fn long_keys_are_cut_on_char_boundaries() {
        let long = "é".repeat(300);
        let cut = truncate(&long);
        assert!(cut.len() <= MAX_KEY);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
