//! The meta page (page 0) of a Berkeley DB file: generic header, and the
//! hash and btree specific parts (`dbinc/db_page.h`, DBMETA33 / HMETA33 /
//! BTMETA33).
//!
//! ```text
//! generic  0 LSN, 8 pgno, 12 magic, 16 version, 20 pagesize, 24 encrypt_alg,
//!          25 type, 26 metaflags, 28 free list, 32 last_pgno, 36 nparts,
//!          40 key_count, 44 record_count, 48 flags, 52..72 file id
//! hash    72 max_bucket, 76 high_mask, 80 low_mask, 84 ffactor, 88 nelem,
//!          92 h_charkey, 96..224 spares[32]
//! btree   76 minkey, 80 re_len, 84 re_pad, 88 root
//! ```

use super::page::{self, PageFile, Source};
use super::{DbError, Kind};

pub const DB_HASHMAGIC: u32 = 0x061561;
pub const DB_BTREEMAGIC: u32 = 0x053162;
pub const DB_HASHVERSION: u32 = 9;
pub const DB_BTREEVERSION: u32 = 9;
/// Size of the meta structure; the smallest page size.
pub const DBMETASIZE: usize = 512;
/// `metaflags` bit: pages carry checksums.
const DBMETA_CHKSUM: u8 = 0x01;
/// btree `flags`: the file is a recno database.
const BTM_RECNO: u32 = 0x002;
/// Number of hash doubling points.
pub const NCACHED: usize = 32;
/// Postfix's `set_h_nelem` value (dict_db.c), which libdb keeps adding to.
pub const POSTFIX_NELEM: u32 = 4096;

/// Hash-specific meta fields.
#[derive(Debug, Clone)]
pub struct HashMeta {
    pub max_bucket: u32,
    pub high_mask: u32,
    pub low_mask: u32,
    pub spares: [u32; NCACHED],
}

/// Btree-specific meta fields.
#[derive(Debug, Clone)]
pub struct BtreeMeta {
    pub root: u32,
}

/// What the meta page says.
#[derive(Debug, Clone)]
pub enum Meta {
    Hash(HashMeta),
    Btree(BtreeMeta),
}

/// The magic number found at offset 12 of a file's first bytes, if it is
/// one of ours (in either byte order).
pub fn sniff(first: &[u8]) -> Option<Kind> {
    let le = page::get_u32(first, 12, false).ok()?;
    let be = page::get_u32(first, 12, true).ok()?;
    if le == DB_HASHMAGIC || be == DB_HASHMAGIC {
        Some(Kind::Hash)
    } else if le == DB_BTREEMAGIC || be == DB_BTREEMAGIC {
        Some(Kind::Btree)
    } else {
        None
    }
}

/// Validate the meta page of `source` (whose total length is `len`) as a
/// database of `kind`, and return the page reader and meta data.
pub fn open(source: Source, len: u64, kind: Kind) -> Result<(PageFile, Meta), DbError> {
    let bad = |s: &str| Err(DbError::Format(s.to_string()));
    if len < DBMETASIZE as u64 {
        return bad("file too small for a Berkeley DB meta page");
    }
    let mut first = vec![0u8; DBMETASIZE];
    match &source {
        Source::File(f) => {
            use std::os::unix::fs::FileExt;
            f.read_exact_at(&mut first, 0).map_err(DbError::Io)?
        }
        Source::Memory(m) => match m.get(..DBMETASIZE) {
            Some(b) => first.copy_from_slice(b),
            None => return bad("file too small for a Berkeley DB meta page"),
        },
    }
    let (magic, swap) = match (
        page::get_u32(&first, 12, false)?,
        page::get_u32(&first, 12, true)?,
    ) {
        (m, _) if m == DB_HASHMAGIC || m == DB_BTREEMAGIC => (m, false),
        (_, m) if m == DB_HASHMAGIC || m == DB_BTREEMAGIC => (m, true),
        _ => return bad("unexpected file type or format"),
    };
    let want = match kind {
        Kind::Hash => DB_HASHMAGIC,
        Kind::Btree => DB_BTREEMAGIC,
    };
    if magic != want {
        return bad("unexpected file type or format");
    }
    let version = page::get_u32(&first, 16, swap)?;
    let page_size = page::get_u32(&first, 20, swap)? as usize;
    if !(DBMETASIZE..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return bad("bad page size");
    }
    if first[24] != 0 {
        return bad("encrypted databases are not supported");
    }
    let overhead = if first[26] & DBMETA_CHKSUM != 0 {
        page::SIZEOF_PAGE + 6
    } else {
        page::SIZEOF_PAGE
    };
    if !len.is_multiple_of(page_size as u64) {
        return bad("file size not a multiple of the pagesize");
    }
    let npages = len / page_size as u64;
    if npages > u32::MAX as u64 {
        return bad("file too large");
    }
    let meta = match kind {
        Kind::Hash => {
            // Versions 8 (unsorted pages, 4.x) and 9 (sorted pages) use the
            // same hash function and item formats.
            if !(7..=DB_HASHVERSION).contains(&version) || first[25] != page::P_HASHMETA {
                return bad("unsupported hash version or meta page type");
            }
            let charkey = page::get_u32(&first, 92, swap)?;
            if charkey != super::hash::hash(super::hash::CHARKEY) {
                return bad("database has a custom hash function");
            }
            let mut spares = [0u32; NCACHED];
            for (i, s) in spares.iter_mut().enumerate() {
                *s = page::get_u32(&first, 96 + 4 * i, swap)?;
            }
            Meta::Hash(HashMeta {
                max_bucket: page::get_u32(&first, 72, swap)?,
                high_mask: page::get_u32(&first, 76, swap)?,
                low_mask: page::get_u32(&first, 80, swap)?,
                spares,
            })
        }
        Kind::Btree => {
            if !(8..=DB_BTREEVERSION).contains(&version) || first[25] != page::P_BTREEMETA {
                return bad("unsupported btree version or meta page type");
            }
            if page::get_u32(&first, 48, swap)? & BTM_RECNO != 0 {
                return bad("recno databases are not supported");
            }
            Meta::Btree(BtreeMeta {
                root: page::get_u32(&first, 88, swap)?,
            })
        }
    };
    Ok((
        PageFile::new(source, page_size, npages as u32, swap, overhead),
        meta,
    ))
}

/// A 20-byte file id like libdb's: inode, device, a unique number, a serial.
pub fn file_id(ino: u64, dev: u64) -> [u8; 20] {
    let mut id = [0u8; 20];
    id[0..4].copy_from_slice(&(ino as u32).to_le_bytes());
    id[4..8].copy_from_slice(&(dev as u32).to_le_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let uniq = (now ^ (now >> 32) ^ ((std::process::id() as u64) << 16)) as u32;
    id[8..12].copy_from_slice(&uniq.to_le_bytes());
    id[12..16].copy_from_slice(&std::process::id().to_le_bytes());
    id
}

/// The generic part of a meta page we write.
fn generic(
    page_size: usize,
    magic: u32,
    version: u32,
    ptype: u8,
    last_pgno: u32,
    uid: &[u8; 20],
) -> Vec<u8> {
    let mut b = vec![0u8; page_size];
    b[4..8].copy_from_slice(&1u32.to_le_bytes()); // LSN (0, 1): not logged
    b[12..16].copy_from_slice(&magic.to_le_bytes());
    b[16..20].copy_from_slice(&version.to_le_bytes());
    b[20..24].copy_from_slice(&(page_size as u32).to_le_bytes());
    b[25] = ptype;
    b[32..36].copy_from_slice(&last_pgno.to_le_bytes());
    b[52..72].copy_from_slice(uid);
    b
}

/// A hash meta page for `nbuckets` (a power of two) buckets on pages
/// 1..=nbuckets, holding `nelem` entries.
pub fn hash_meta_page(
    page_size: usize,
    nbuckets: u32,
    nelem: u32,
    last_pgno: u32,
    uid: &[u8; 20],
) -> Vec<u8> {
    let mut b = generic(
        page_size,
        DB_HASHMAGIC,
        DB_HASHVERSION,
        page::P_HASHMETA,
        last_pgno,
        uid,
    );
    let put =
        |b: &mut Vec<u8>, off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    put(&mut b, 72, nbuckets - 1);
    put(&mut b, 76, nbuckets - 1);
    put(&mut b, 80, (nbuckets >> 1) - 1);
    put(&mut b, 84, 0); // ffactor: split when a bucket overflows, as Postfix leaves it
    put(&mut b, 88, POSTFIX_NELEM.saturating_add(nelem));
    put(&mut b, 92, super::hash::hash(super::hash::CHARKEY));
    // Every doubling up to log2(nbuckets) starts right after the meta page:
    // bucket b lives on page b + 1.
    let l2 = nbuckets.trailing_zeros() as usize;
    for i in 0..=l2 {
        put(&mut b, 96 + 4 * i, 1);
    }
    b
}

/// A btree meta page whose root is page 1.
pub fn btree_meta_page(page_size: usize, last_pgno: u32, uid: &[u8; 20]) -> Vec<u8> {
    let mut b = generic(
        page_size,
        DB_BTREEMAGIC,
        DB_BTREEVERSION,
        page::P_BTREEMETA,
        last_pgno,
        uid,
    );
    b[76..80].copy_from_slice(&2u32.to_le_bytes()); // minkey
    b[84..88].copy_from_slice(&0x20u32.to_le_bytes()); // re_pad: libdb's default ' '
    b[88..92].copy_from_slice(&1u32.to_le_bytes()); // root
    b
}
