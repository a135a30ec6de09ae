//! An in-memory table of byte keys and values, for building and updating
//! database files: one arena for all bytes and an open-addressing index, so
//! a million-entry build costs no per-entry allocation.

/// Where a pair lives in the arena.
#[derive(Clone, Copy)]
struct Entry {
    off: usize,
    klen: u32,
    vlen: u32,
    /// High bits of the key's hash, to skip most key comparisons.
    tag: u32,
    live: bool,
}

/// What an insert found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// The key was new.
    Added,
    /// The key existed; its value was replaced.
    Replaced,
    /// The key existed and was left alone.
    Kept,
}

const EMPTY: u32 = u32::MAX;

/// Keys and values in insertion order, with lookup by key.
#[derive(Default)]
pub struct MemTable {
    arena: Vec<u8>,
    entries: Vec<Entry>,
    /// Entry numbers; `EMPTY` for a free slot. Deleted entries keep their
    /// slot (with `live` false) so that probe chains stay intact.
    slots: Vec<u32>,
    live: usize,
}

/// A fast 64-bit hash for the index (not the database's hash function).
fn index_hash(b: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15 ^ b.len() as u64;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

impl MemTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of live pairs.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    fn key_of(&self, e: &Entry) -> &[u8] {
        &self.arena[e.off..e.off + e.klen as usize]
    }

    fn value_of(&self, e: &Entry) -> &[u8] {
        let s = e.off + e.klen as usize;
        &self.arena[s..s + e.vlen as usize]
    }

    /// The slot holding `key` (live or deleted), or the free slot where it
    /// would go.
    fn find(&self, key: &[u8], h: u64) -> (usize, bool) {
        let mask = self.slots.len() - 1;
        let tag = (h >> 32) as u32;
        let mut i = h as usize & mask;
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return (i, false);
            }
            let e = &self.entries[s as usize];
            if e.tag == tag && self.key_of(e) == key {
                return (i, true);
            }
            i = (i + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let n = (self.slots.len() * 2).max(16);
        self.slots = vec![EMPTY; n];
        let mask = n - 1;
        for (idx, e) in self.entries.iter().enumerate() {
            // Dead entries that a live one replaced are unreachable; keep
            // only the newest entry for each key (the live one, or the last
            // deleted one).
            let h = index_hash(&self.arena[e.off..e.off + e.klen as usize]);
            let mut i = h as usize & mask;
            loop {
                let s = self.slots[i];
                if s == EMPTY {
                    self.slots[i] = idx as u32;
                    break;
                }
                let o = &self.entries[s as usize];
                if o.tag == e.tag && o.klen == e.klen && self.key_of(o) == self.key_of(e) {
                    self.slots[i] = idx as u32;
                    break;
                }
                i = (i + 1) & mask;
            }
        }
    }

    /// Look a key up.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        if self.slots.is_empty() {
            return None;
        }
        let (i, found) = self.find(key, index_hash(key));
        if !found {
            return None;
        }
        let e = &self.entries[self.slots[i] as usize];
        e.live.then(|| self.value_of(e))
    }

    /// Add a pair; an existing key's value is replaced only when `replace`.
    pub fn insert(&mut self, key: &[u8], value: &[u8], replace: bool) -> Insert {
        if (self.entries.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let h = index_hash(key);
        let (i, found) = self.find(key, h);
        let existing = found && self.entries[self.slots[i] as usize].live;
        if existing && !replace {
            return Insert::Kept;
        }
        let off = self.arena.len();
        self.arena.extend_from_slice(key);
        self.arena.extend_from_slice(value);
        if found {
            let old = self.slots[i] as usize;
            self.entries[old].live = false;
        }
        self.slots[i] = self.entries.len() as u32;
        self.entries.push(Entry {
            off,
            klen: key.len() as u32,
            vlen: value.len() as u32,
            tag: (h >> 32) as u32,
            live: true,
        });
        if existing {
            Insert::Replaced
        } else {
            self.live += 1;
            Insert::Added
        }
    }

    /// Remove a key; whether it was there.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let (i, found) = self.find(key, index_hash(key));
        if !found {
            return false;
        }
        let e = &mut self.entries[self.slots[i] as usize];
        if !e.live {
            return false;
        }
        e.live = false;
        self.live -= 1;
        true
    }

    /// Live pairs, in insertion order.
    pub fn pairs(&self) -> Vec<(&[u8], &[u8])> {
        self.entries
            .iter()
            .filter(|e| e.live)
            .map(|e| (self.key_of(e), self.value_of(e)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_replace_remove() {
        let mut t = MemTable::new();
        assert_eq!(t.get(b"a"), None);
        assert_eq!(t.insert(b"a", b"1", false), Insert::Added);
        assert_eq!(t.insert(b"a", b"2", false), Insert::Kept);
        assert_eq!(t.get(b"a"), Some(&b"1"[..]));
        assert_eq!(t.insert(b"a", b"3", true), Insert::Replaced);
        assert_eq!(t.get(b"a"), Some(&b"3"[..]));
        assert_eq!(t.len(), 1);
        assert!(t.remove(b"a"));
        assert!(!t.remove(b"a"));
        assert_eq!(t.get(b"a"), None);
        assert_eq!(t.insert(b"a", b"4", false), Insert::Added);
        assert_eq!(t.get(b"a"), Some(&b"4"[..]));
        assert_eq!(t.pairs(), vec![(&b"a"[..], &b"4"[..])]);
    }

    #[test]
    fn many_keys_survive_growth() {
        let mut t = MemTable::new();
        for i in 0..10_000u32 {
            let k = format!("key{i}");
            assert_eq!(
                t.insert(k.as_bytes(), &i.to_le_bytes(), false),
                Insert::Added
            );
            if i % 3 == 0 {
                assert!(t.remove(k.as_bytes()));
            }
        }
        for i in 0..10_000u32 {
            let k = format!("key{i}");
            let want = (i % 3 != 0).then(|| i.to_le_bytes());
            assert_eq!(t.get(k.as_bytes()), want.as_ref().map(|w| &w[..]), "{k}");
        }
        assert_eq!(t.len(), 10_000 - 3334);
        assert_eq!(t.pairs().len(), t.len());
    }
}
