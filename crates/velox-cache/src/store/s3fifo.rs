//! A sharded, byte-bounded S3-FIFO cache (Yang et al., "FIFO queues are all you need for cache
//! eviction", SOSP 2023).
//!
//! Each shard has a small FIFO (~10% of its bytes) that new entries enter, a main FIFO, and a
//! ghost FIFO of hashes recently evicted from the small queue. A hit only bumps a 2-bit frequency
//! counter (0..=3) under the shard lock: no list is reordered on the read path. Eviction from the
//! small queue moves entries that were hit at least once to the main queue and drops the others
//! (remembering their hash in the ghost queue); an entry re-inserted while its hash is a ghost goes
//! straight to main. Main is a CLOCK-like FIFO: an entry with frequency > 0 is decremented and
//! re-queued instead of evicted. One-hit wonders (a scan) therefore pass through the small queue
//! without displacing the frequently used working set in main.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard};

/// A hasher for keys that already are good 64-bit hashes.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub(crate) type IdBuild = BuildHasherDefault<IdHasher>;

const MAX_FREQ: u8 = 3;

struct Entry<V> {
    value: V,
    charge: u64,
    freq: u8,
    in_main: bool,
    id: u64,
}

struct Shard<V> {
    map: HashMap<u64, Entry<V>, IdBuild>,
    small: VecDeque<(u64, u64)>,
    main: VecDeque<(u64, u64)>,
    ghost: HashSet<u64, IdBuild>,
    ghost_fifo: VecDeque<u64>,
    small_bytes: u64,
    main_bytes: u64,
    cap: u64,
    next_id: u64,
    hits: u64,
    misses: u64,
    evictions: u64,
}

/// Totals over all shards.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FifoStats {
    pub objects: u64,
    pub bytes: u64,
    pub evictions: u64,
    pub hits: u64,
    pub misses: u64,
}

impl<V> Shard<V> {
    fn new(cap: u64) -> Self {
        Shard {
            map: HashMap::default(),
            small: VecDeque::new(),
            main: VecDeque::new(),
            ghost: HashSet::default(),
            ghost_fifo: VecDeque::new(),
            small_bytes: 0,
            main_bytes: 0,
            cap,
            next_id: 0,
            hits: 0,
            misses: 0,
            evictions: 0,
        }
    }

    fn unlink(&mut self, hash: u64) -> Option<Entry<V>> {
        let e = self.map.remove(&hash)?;
        if e.in_main {
            self.main_bytes -= e.charge;
        } else {
            self.small_bytes -= e.charge;
        }
        Some(e)
    }

    fn push_ghost(&mut self, hash: u64) {
        self.ghost.insert(hash);
        self.ghost_fifo.push_back(hash);
        let limit = self.map.len().max(64);
        while self.ghost_fifo.len() > limit {
            if let Some(h) = self.ghost_fifo.pop_front() {
                self.ghost.remove(&h);
            }
        }
    }

    fn evict_small(&mut self) {
        while let Some((h, id)) = self.small.pop_front() {
            let Some(e) = self.map.get_mut(&h) else {
                continue;
            };
            if e.id != id || e.in_main {
                continue;
            }
            if e.freq > 0 {
                e.freq = 0;
                e.in_main = true;
                let c = e.charge;
                self.small_bytes -= c;
                self.main_bytes += c;
                self.main.push_back((h, id));
            } else {
                self.unlink(h);
                self.evictions += 1;
                self.push_ghost(h);
            }
            return;
        }
    }

    fn evict_main(&mut self) {
        while let Some((h, id)) = self.main.pop_front() {
            let Some(e) = self.map.get_mut(&h) else {
                continue;
            };
            if e.id != id || !e.in_main {
                continue;
            }
            if e.freq > 0 {
                e.freq -= 1;
                self.main.push_back((h, id));
            } else {
                self.unlink(h);
                self.evictions += 1;
            }
            return;
        }
    }

    fn evict_to_fit(&mut self) {
        while self.small_bytes + self.main_bytes > self.cap {
            if self.small_bytes > self.cap / 10 || self.main_bytes == 0 {
                self.evict_small();
            } else {
                self.evict_main();
            }
        }
    }

    /// Drops queue slots of removed or replaced entries once they dominate the queues.
    fn maybe_compact(&mut self) {
        if self.small.len() + self.main.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.small
                .retain(|(h, id)| map.get(h).is_some_and(|e| e.id == *id && !e.in_main));
            self.main
                .retain(|(h, id)| map.get(h).is_some_and(|e| e.id == *id && e.in_main));
        }
    }
}

/// The sharded cache. `V` is cheap to clone (an `Arc`).
pub(crate) struct S3Fifo<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    mask: u64,
    max_charge: u64,
}

impl<V: Clone> S3Fifo<V> {
    /// A cache bounded to `capacity` charged bytes. Shards are used only when each gets at
    /// least 8 MiB, so small caches keep exact global behaviour.
    pub fn new(capacity: u64) -> Self {
        let mut n = 16u64;
        while n > 1 && capacity / n < 8 * 1024 * 1024 {
            n /= 2;
        }
        let per = capacity / n;
        let shards = (0..n).map(|_| Mutex::new(Shard::new(per))).collect();
        S3Fifo {
            shards,
            mask: n - 1,
            max_charge: per / 4,
        }
    }

    /// Largest charge an entry may have to be admitted (a quarter of a shard).
    pub fn max_charge(&self) -> u64 {
        self.max_charge
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard<V>> {
        let i = ((hash >> 32) & self.mask) as usize;
        self.shards[i]
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Looks `hash` up; `matches` verifies the full key. A hit bumps the frequency.
    pub fn get(&self, hash: u64, matches: impl FnOnce(&V) -> bool) -> Option<V> {
        let mut guard = self.shard(hash);
        let s = &mut *guard;
        match s.map.get_mut(&hash) {
            Some(e) if matches(&e.value) => {
                e.freq = (e.freq + 1).min(MAX_FREQ);
                s.hits += 1;
                Some(e.value.clone())
            }
            _ => {
                s.misses += 1;
                None
            }
        }
    }

    /// Inserts (or replaces) an entry. `admit` runs under the shard lock and can veto the
    /// insert (used to reject inserts racing with a namespace clear). Returns whether the entry
    /// was inserted.
    pub fn insert(&self, hash: u64, value: V, charge: u64, admit: impl FnOnce() -> bool) -> bool {
        if charge > self.max_charge {
            return false;
        }
        let mut guard = self.shard(hash);
        let s = &mut *guard;
        if !admit() {
            return false;
        }
        // A replacement (revalidated, re-fetched or promoted again) keeps the popularity its
        // key has earned: its queue and frequency carry over.
        let old = s.unlink(hash);
        let freq = old.as_ref().map_or(0, |e| e.freq);
        let id = s.next_id;
        s.next_id += 1;
        let in_main = s.ghost.remove(&hash) || old.is_some_and(|e| e.in_main);
        if in_main {
            s.main.push_back((hash, id));
            s.main_bytes += charge;
        } else {
            s.small.push_back((hash, id));
            s.small_bytes += charge;
        }
        s.map.insert(
            hash,
            Entry {
                value,
                charge,
                freq,
                in_main,
                id,
            },
        );
        s.evict_to_fit();
        s.maybe_compact();
        true
    }

    /// Adds `extra` to the charge of the entry under `hash` if `matches` accepts it (something
    /// the entry holds has grown), evicting to fit.
    pub fn add_charge(&self, hash: u64, matches: impl FnOnce(&V) -> bool, extra: u64) {
        let mut guard = self.shard(hash);
        let s = &mut *guard;
        let Some(e) = s.map.get_mut(&hash).filter(|e| matches(&e.value)) else {
            return;
        };
        e.charge += extra;
        if e.in_main {
            s.main_bytes += extra;
        } else {
            s.small_bytes += extra;
        }
        s.evict_to_fit();
    }

    /// Removes the entry under `hash` if `matches` accepts it.
    pub fn remove(&self, hash: u64, matches: impl FnOnce(&V) -> bool) -> bool {
        let mut guard = self.shard(hash);
        if guard.map.get(&hash).is_some_and(|e| matches(&e.value)) {
            guard.unlink(hash);
            guard.maybe_compact();
            true
        } else {
            false
        }
    }

    /// Empties every shard (counters are kept).
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
            let cap = s.cap;
            let (hits, misses, evictions, next_id) = (s.hits, s.misses, s.evictions, s.next_id);
            *s = Shard::new(cap);
            s.hits = hits;
            s.misses = misses;
            s.evictions = evictions;
            s.next_id = next_id;
        }
    }

    pub fn stats(&self) -> FifoStats {
        let mut t = FifoStats::default();
        for shard in self.shards.iter() {
            let s = shard.lock().unwrap_or_else(|p| p.into_inner());
            t.objects += s.map.len() as u64;
            t.bytes += s.small_bytes + s.main_bytes;
            t.evictions += s.evictions;
            t.hits += s.hits;
            t.misses += s.misses;
        }
        t
    }
}

#[cfg(test)]
mod zipf;

#[cfg(test)]
mod tests {
    use super::*;

    fn h(i: u64) -> u64 {
        super::super::format::key_hash(7, &i.to_le_bytes())
    }

    #[test]
    fn store_s3fifo_byte_bound_and_replace() {
        let c: S3Fifo<u64> = S3Fifo::new(1000);
        for i in 0..100 {
            assert!(c.insert(h(i), i, 100, || true));
            assert!(c.stats().bytes <= 1000);
        }
        assert_eq!(c.stats().objects, 10);
        assert!(c.insert(h(99), 999, 200, || true));
        assert_eq!(c.get(h(99), |_| true), Some(999));
        assert!(c.stats().bytes <= 1000);
        assert!(!c.insert(h(1), 1, 251, || true), "over max charge");
        assert!(!c.insert(h(1), 1, 10, || false), "vetoed");
        assert!(c.remove(h(99), |v| *v == 999));
        assert_eq!(c.get(h(99), |_| true), None);
    }

    #[test]
    fn store_s3fifo_replace_keeps_popularity() {
        // 10 slots; key 0 earns its place in main, is hit again and then replaced (as a
        // revalidation does). A scan of one-hit keys must not evict it.
        let c: S3Fifo<u64> = S3Fifo::new(1000);
        c.insert(h(0), 0, 100, || true);
        c.get(h(0), |_| true);
        for i in 1..20 {
            c.insert(h(i), i, 100, || true); // pushes key 0 (hit once) on to main
        }
        c.get(h(0), |_| true);
        assert!(c.insert(h(0), 1, 100, || true));
        for i in 100..1100 {
            c.insert(h(i), i, 100, || true);
        }
        assert_eq!(
            c.get(h(0), |_| true),
            Some(1),
            "replaced entry lost its place"
        );
    }

    #[test]
    fn store_s3fifo_scan_resistant() {
        // 100 slots of 100 bytes; a hot set of 60 is used a few times, then 10,000 keys are
        // scanned once each (plain LRU would keep none of the hot set); the hot set must survive.
        let c: S3Fifo<u64> = S3Fifo::new(10_000);
        for _round in 0..3 {
            for i in 0..60 {
                if c.get(h(i), |_| true).is_none() {
                    c.insert(h(i), i, 100, || true);
                }
            }
        }
        for i in 1000..11_000 {
            if c.get(h(i), |_| true).is_none() {
                c.insert(h(i), i, 100, || true);
            }
        }
        let hot = (0..60).filter(|i| c.get(h(*i), |_| true).is_some()).count();
        assert_eq!(hot, 60, "hot set evicted by scan");
        assert!(c.stats().bytes <= 10_000);
    }
}
