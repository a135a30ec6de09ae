//! The iteration order of Postfix's in-memory hash tables.
//!
//! Postfix walks a table (main.cf settings, `-o` settings) in bucket order of
//! its FNV-hashed chained table, newest first within a bucket. Where the walk
//! order shows (which of two warnings comes first, which error stops a run),
//! we reproduce the order Postfix has with NORANDOMIZE set (its test mode;
//! without it Postfix's order is random).

/// FNV-1a 64 as Postfix's hash_fnv (each byte plus one), unseeded.
pub fn hash_fnv(key: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf29ce484222325;
    for &b in key {
        hash ^= 1 + b as u64;
        hash = hash.wrapping_mul(0x00000100000001B3);
    }
    hash
}

/// Keys in Postfix's hash table order.
#[derive(Debug, Clone)]
pub struct Order {
    /// Each bucket's chain, head last.
    buckets: Vec<Vec<String>>,
    used: usize,
}

impl Default for Order {
    fn default() -> Self {
        Self::with_size(0)
    }
}

impl Order {
    /// A table created with `htable_create(size)`.
    pub fn with_size(size: usize) -> Self {
        let size = if size < 13 { 13 } else { size } | 1;
        Order {
            buckets: vec![Vec::new(); size],
            used: 0,
        }
    }

    fn bucket(&self, key: &str) -> usize {
        let bytes = crate::util::latin1::encode(key);
        (hash_fnv(&bytes) % self.buckets.len() as u64) as usize
    }

    fn link(&mut self, key: String) {
        let b = self.bucket(&key);
        self.buckets[b].push(key);
        self.used += 1;
    }

    /// Add a key that is not in the table.
    pub fn insert(&mut self, key: &str) {
        if self.used >= self.buckets.len() {
            let old = std::mem::take(&mut self.buckets);
            self.buckets = vec![Vec::new(); (2 * old.len()) | 1];
            self.used = 0;
            for chain in old {
                for k in chain.into_iter().rev() {
                    self.link(k);
                }
            }
        }
        self.link(key.to_string());
    }

    /// Remove a key.
    pub fn remove(&mut self, key: &str) {
        let b = self.bucket(key);
        if let Some(i) = self.buckets[b].iter().position(|k| k == key) {
            self.buckets[b].remove(i);
            self.used -= 1;
        }
    }

    /// Keys in walk order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.buckets
            .iter()
            .flat_map(|chain| chain.iter().rev().map(|s| s.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_keeps_all_keys() {
        let mut o = Order::default();
        for i in 0..100 {
            o.insert(&format!("k{i}"));
        }
        o.remove("k5");
        let mut keys: Vec<&str> = o.iter().collect();
        assert_eq!(keys.len(), 99);
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 99);
    }
}
