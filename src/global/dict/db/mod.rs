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
