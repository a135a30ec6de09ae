//! Berkeley DB 5.3 `DB_HASH` and `DB_BTREE` files, read and written in pure
//! Rust, without libdb: the `.db` files of Postfix's `hash:` and `btree:`
//! tables.
//!
//! The reader accepts what libdb 5.3 writes (and older hash version 8
//! unsorted pages, page checksums, files from hosts of the other byte
//! order); it never panics on damaged input: every offset, length and page
//! number is checked, every chain walk is bounded, and problems come back as
//! [`DbError::Format`].
//!
//! The writer builds a whole file at once from a set of unique key/value
//! pairs, as libdb 5.3 on x86_64 lays it out (little-endian, 4096-byte pages,
//! hash version 9 with sorted pages, btree version 9 with the root at page
//! 1), so that libdb, `db_verify` and Postfix read it and can update it.

pub mod btree;
pub mod hash;
pub mod memtable;
pub mod meta;
pub mod page;

use page::Source;
use std::fmt;
use std::fs::File;
use std::io::Write;

/// The page size libdb 5.3 uses for Postfix's tables on Linux.
pub const PAGE_SIZE: usize = 4096;

/// A key and its value, as stored.
pub type Pair = (Vec<u8>, Vec<u8>);

/// Which access method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Hash,
    Btree,
}

/// Why a database could not be read.
#[derive(Debug)]
pub enum DbError {
    /// The operating system said no.
    Io(std::io::Error),
    /// The file is not a database of the expected kind, or it is damaged.
    Format(String),
}

impl DbError {
    /// The `%m` text Postfix prints for this error: libdb reports format
    /// problems as EINVAL ("Invalid argument").
    pub fn errno_text(&self) -> String {
        match self {
            DbError::Io(e) => match e.raw_os_error() {
                Some(code) => crate::sys::strerror(code),
                None => e.to_string(),
            },
            DbError::Format(_) => crate::sys::strerror(libc::EINVAL),
        }
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Io(e) => write!(f, "{e}"),
            DbError::Format(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for DbError {}

/// An open database, for reading.
pub enum Reader {
    Hash(hash::HashReader),
    Btree(btree::BtreeReader),
}

/// A walk in progress.
pub enum Cursor {
    Hash(hash::HashCursor),
    Btree(btree::BtreeCursor),
}

impl Reader {
    /// Open a database of `kind` from a file.
    pub fn open_file(file: File, kind: Kind) -> Result<Reader, DbError> {
        let len = file.metadata().map_err(DbError::Io)?.len();
        Self::open_source(Source::File(file), len, kind)
    }

    /// Open a database of `kind` held in memory.
    pub fn open_bytes(bytes: Vec<u8>, kind: Kind) -> Result<Reader, DbError> {
        let len = bytes.len() as u64;
        Self::open_source(Source::Memory(bytes), len, kind)
    }

    fn open_source(source: Source, len: u64, kind: Kind) -> Result<Reader, DbError> {
        let (pf, m) = meta::open(source, len, kind)?;
        Ok(match m {
            meta::Meta::Hash(h) => Reader::Hash(hash::HashReader::new(pf, h)),
            meta::Meta::Btree(b) => Reader::Btree(btree::BtreeReader::new(pf, b.root)),
        })
    }

    /// The open file (for locks), if the database is file-backed.
    pub fn file(&self) -> Option<&File> {
        match self {
            Reader::Hash(r) => r.pf.file(),
            Reader::Btree(r) => r.pf.file(),
        }
    }

    /// Look up exact key bytes.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, DbError> {
        match self {
            Reader::Hash(r) => r.get(key),
            Reader::Btree(r) => r.get(key),
        }
    }

    /// Start a walk.
    pub fn cursor(&self) -> Cursor {
        match self {
            Reader::Hash(r) => Cursor::Hash(r.cursor()),
            Reader::Btree(r) => Cursor::Btree(r.cursor()),
        }
    }

    /// The next pair of a walk.
    pub fn next(&self, c: &mut Cursor) -> Result<Option<Pair>, DbError> {
        match (self, c) {
            (Reader::Hash(r), Cursor::Hash(c)) => r.next(c),
            (Reader::Btree(r), Cursor::Btree(c)) => r.next(c),
            _ => Err(DbError::Format("cursor of another database".into())),
        }
    }

    /// Every pair, in walk order.
    pub fn read_all(&self) -> Result<Vec<Pair>, DbError> {
        let mut c = self.cursor();
        let mut out = Vec::new();
        while let Some(kv) = self.next(&mut c)? {
            out.push(kv);
        }
        Ok(out)
    }
}

/// Write a whole database of `kind` holding `pairs` (unique keys, any
/// order) to `out`. `uid` is the 20-byte file id for the meta page.
pub fn write(
    out: &mut dyn Write,
    kind: Kind,
    pairs: &mut [(&[u8], &[u8])],
    uid: &[u8; 20],
) -> std::io::Result<()> {
    match kind {
        Kind::Hash => hash::write(out, PAGE_SIZE, pairs, uid),
        Kind::Btree => {
            pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
            btree::write(out, PAGE_SIZE, pairs, uid)
        }
    }
}

/// The order in which a walk of the written file returns `pairs`: indices
/// into `pairs`.
pub fn walk_order(kind: Kind, pairs: &[(&[u8], &[u8])]) -> Vec<u32> {
    match kind {
        Kind::Hash => hash::layout(PAGE_SIZE, pairs).order,
        Kind::Btree => {
            let mut v: Vec<u32> = (0..pairs.len() as u32).collect();
            v.sort_unstable_by(|&a, &b| pairs[a as usize].0.cmp(pairs[b as usize].0));
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift64*).
    pub struct Rng(pub u64);
    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Pairs with short, empty and long values, and long keys.
    fn sample(n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut v = Vec::new();
        for i in 0..n {
            let key = format!("key{i:06}@example.com\0").into_bytes();
            let val = match i % 50 {
                0 => vec![b'v'; 5000 + i],
                1 => Vec::new(),
                2 => vec![b'w'; 1025],
                _ => format!("value {i} {}\0", "x".repeat(i % 40)).into_bytes(),
            };
            v.push((key, val));
        }
        v.push((vec![b'K'; 3000], b"long key".to_vec()));
        v.push((vec![b'L'; 1008], b"key just over btree's limit".to_vec()));
        v.push((Vec::new(), b"empty key".to_vec()));
        v
    }

    fn build(kind: Kind, pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut refs: Vec<(&[u8], &[u8])> = pairs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        let mut out = Vec::new();
        write(&mut out, kind, &mut refs, &[7u8; 20]).unwrap();
        assert_eq!(out.len() % PAGE_SIZE, 0);
        out
    }

    fn round_trip(kind: Kind, n: usize) {
        let pairs = sample(n);
        let bytes = build(kind, &pairs);
        let mut r = Reader::open_bytes(bytes, kind).unwrap();
        for (k, v) in &pairs {
            assert_eq!(
                r.get(k).unwrap().as_ref(),
                Some(v),
                "key {:?}",
                String::from_utf8_lossy(k)
            );
        }
        assert_eq!(r.get(b"no such key\0").unwrap(), None);
        assert_eq!(r.get(b"key000001@example.com").unwrap(), None);
        let mut walked = r.read_all().unwrap();
        if kind == Kind::Btree {
            let keys: Vec<_> = walked.iter().map(|p| p.0.clone()).collect();
            let mut sorted = keys.clone();
            sorted.sort();
            assert_eq!(keys, sorted, "btree walks in key order");
        }
        // The walk order is the one walk_order predicts.
        let refs: Vec<(&[u8], &[u8])> = pairs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        let predicted: Vec<Vec<u8>> = walk_order(kind, &refs)
            .iter()
            .map(|&i| pairs[i as usize].0.clone())
            .collect();
        let got: Vec<Vec<u8>> = walked.iter().map(|p| p.0.clone()).collect();
        assert_eq!(got, predicted);
        walked.sort();
        let mut want = pairs.clone();
        want.sort();
        assert_eq!(walked, want);
    }

    #[test]
    fn hash_round_trip() {
        for n in [0, 1, 2, 10, 300, 5000] {
            round_trip(Kind::Hash, n);
        }
    }

    #[test]
    fn btree_round_trip() {
        // 5000 pairs make a three-level tree with long separators.
        for n in [0, 1, 2, 10, 300, 5000] {
            round_trip(Kind::Btree, n);
        }
    }

    #[test]
    fn btree_multilevel_with_long_separators() {
        // Keys sharing a 1500-byte prefix: separators go to overflow pages.
        let prefix = "p".repeat(1500);
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..400)
            .map(|i| {
                (
                    format!("{prefix}{i:05}").into_bytes(),
                    format!("v{i}").into_bytes(),
                )
            })
            .collect();
        let bytes = build(Kind::Btree, &pairs);
        let mut r = Reader::open_bytes(bytes, Kind::Btree).unwrap();
        for (k, v) in &pairs {
            assert_eq!(r.get(k).unwrap().as_ref(), Some(v));
        }
        assert_eq!(r.read_all().unwrap().len(), 400);
    }

    #[test]
    fn empty_files_have_libdb_sizes() {
        // libdb: a hash table starts with 2 buckets (3 pages), a btree with
        // a meta page and an empty root leaf.
        assert_eq!(build(Kind::Hash, &[]).len(), 3 * PAGE_SIZE);
        assert_eq!(build(Kind::Btree, &[]).len(), 2 * PAGE_SIZE);
    }

    #[test]
    fn wrong_kind_and_garbage_are_errors() {
        let h = build(Kind::Hash, &sample(10));
        assert!(matches!(
            Reader::open_bytes(h.clone(), Kind::Btree),
            Err(DbError::Format(_))
        ));
        assert!(matches!(
            Reader::open_bytes(vec![0; 8192], Kind::Hash),
            Err(DbError::Format(_))
        ));
        assert!(matches!(
            Reader::open_bytes(Vec::new(), Kind::Hash),
            Err(DbError::Format(_))
        ));
        assert!(matches!(
            Reader::open_bytes(h[..5000].to_vec(), Kind::Hash),
            Err(DbError::Format(_))
        ));
    }

    /// Open, look up and walk a (possibly damaged) file: any outcome but a
    /// panic or a hang is fine.
    fn exercise(bytes: Vec<u8>, kind: Kind, keys: &[Vec<u8>]) {
        let Ok(mut r) = Reader::open_bytes(bytes, kind) else {
            return;
        };
        for k in keys {
            let _ = r.get(k);
        }
        let mut c = r.cursor();
        for _ in 0..100_000 {
            match r.next(&mut c) {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    }

    fn mutations(kind: Kind, n: usize, seed: u64) {
        let pairs = sample(n);
        let good = build(kind, &pairs);
        let keys: Vec<Vec<u8>> = pairs
            .iter()
            .step_by(n / 8 + 1)
            .map(|p| p.0.clone())
            .collect();
        let mut rng = Rng(seed);
        let npages = good.len() / PAGE_SIZE;
        if kind == Kind::Btree {
            assert_eq!(
                good[PAGE_SIZE + 25],
                page::P_IBTREE,
                "the root is an internal page"
            );
        }
        // Every header and index byte of every page, with a few values.
        for pg in 0..npages {
            for off in 0..64 {
                let pos = pg * PAGE_SIZE + off;
                for val in [0x00, 0xff, good[pos] ^ 0x01, good[pos].wrapping_add(1)] {
                    let mut b = good.clone();
                    b[pos] = val;
                    exercise(b, kind, &keys);
                }
            }
        }
        // Random single and multi-byte damage anywhere.
        for _ in 0..1000 {
            let mut b = good.clone();
            for _ in 0..1 + rng.below(4) {
                let pos = rng.below(b.len());
                b[pos] = rng.next() as u8;
            }
            exercise(b, kind, &keys);
        }
        // Random 16-bit and 32-bit values at item offsets.
        for _ in 0..1000 {
            let mut b = good.clone();
            let pos = rng.below(b.len() - 4) & !1;
            let v = rng.next().to_le_bytes();
            let w = if rng.below(2) == 0 { 2 } else { 4 };
            b[pos..pos + w].copy_from_slice(&v[..w]);
            exercise(b, kind, &keys);
        }
        // Truncations.
        for len in (0..good.len()).step_by(509) {
            exercise(good[..len].to_vec(), kind, &keys);
        }
    }

    #[test]
    fn hash_reader_survives_damage() {
        mutations(Kind::Hash, 60, 0x1234_5678);
    }

    #[test]
    fn btree_reader_survives_damage() {
        mutations(Kind::Btree, 120, 0x8765_4321);
    }

    /// A longer random sweep, on demand:
    /// `ROSTFIX_FUZZ_ROUNDS=1000000 cargo test --release -- --ignored deep_damage_sweep`.
    #[test]
    #[ignore]
    fn deep_damage_sweep() {
        let rounds: usize = std::env::var("ROSTFIX_FUZZ_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000);
        let mut rng = Rng(0x5eed_cafe_f00d_d00d);
        for kind in [Kind::Hash, Kind::Btree] {
            let pairs = sample(2000);
            let good = build(kind, &pairs);
            let keys: Vec<Vec<u8>> = pairs.iter().step_by(97).map(|p| p.0.clone()).collect();
            for _ in 0..rounds {
                let mut b = good.clone();
                for _ in 0..1 + rng.below(8) {
                    let pos = rng.below(b.len());
                    b[pos] = rng.next() as u8;
                }
                if rng.below(20) == 0 {
                    b.truncate(rng.below(good.len()));
                }
                exercise(b, kind, &keys);
            }
        }
    }
}
