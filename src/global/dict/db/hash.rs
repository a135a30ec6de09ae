//! Berkeley DB `DB_HASH` files (hash version 9, as libdb 5.3 writes them).
//!
//! Facts (Berkeley DB 5.3 `hash/hash.c`, `hash_page.c`, `dbinc/hash.h`):
//! - The hash function is libdb's default for version ≥ 5 (`__ham_func5`): a
//!   32-bit FNV-1 style loop, `h = 0; for each byte { h *= 16777619; h ^= b }`.
//!   The meta page stores the hash of `"%$sniglet^&\0"` to check it.
//! - A key's bucket is `h & high_mask`, or `h & low_mask` when that exceeds
//!   `max_bucket`. Bucket `b` lives on page `b + spares[ceil(log2(b + 1))]`;
//!   pages of a doubling not yet used may be all zeros (holes).
//! - A bucket is a chain of `P_HASH` pages (next/prev links). Each page holds
//!   key/data pairs as consecutive items: item `i` runs from its offset to the
//!   offset of item `i - 1` (the page end for item 0). An item is a type byte
//!   followed by the bytes (`H_KEYDATA`), or a 12-byte reference to an
//!   overflow chain (`H_OFFPAGE`: type, 3 pad bytes, page, total length).
//! - Items larger than a quarter page (1024 bytes at 4096) go to overflow
//!   pages. Pairs on one page are sorted by key (memcmp, shorter first).

use super::meta::{self, HashMeta};
use super::page::{self, P_HASH, P_HASH_UNSORTED, P_INVALID, PageBuf, PageFile};
use super::{DbError, Pair};
use std::io::Write;

/// The key whose hash the meta page records (with its NUL).
pub const CHARKEY: &[u8] = b"%$sniglet^&\0";

const H_KEYDATA: u8 = 1;
const H_DUPLICATE: u8 = 2;
const H_OFFPAGE: u8 = 3;
const H_OFFDUP: u8 = 4;
/// Size of an `H_OFFPAGE` item.
const HOFFPAGE_SIZE: usize = 12;

/// libdb's default hash function (`__ham_func5`).
pub fn hash(key: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &b in key {
        h = h.wrapping_mul(16_777_619);
        h ^= b as u32;
    }
    h
}

/// libdb's `__db_log2`: the smallest `i` with `2^i >= n`.
fn log2_ceil(n: u64) -> u32 {
    let mut i = 0;
    let mut limit: u64 = 1;
    while limit < n {
        limit <<= 1;
        i += 1;
    }
    i
}

/// An item on a hash page.
enum Item<'a> {
    Data(&'a [u8]),
    Off {
        pgno: u32,
        tlen: u32,
    },
    /// On-page duplicates: the whole duplicate set.
    Dups(&'a [u8]),
    OffDup(u32),
}

/// Decode item `i` of a hash page.
fn item<'a>(p: &page::Page<'a>, i: usize) -> Result<Item<'a>, DbError> {
    let off = p.inp(i)?;
    let end = if i == 0 { p.b.len() } else { p.inp(i - 1)? };
    if end <= off {
        return Err(DbError::Format(format!(
            "page {}: item {i} has no length",
            p.pgno()
        )));
    }
    let bytes = p.bytes(off, end - off)?;
    match bytes[0] {
        H_KEYDATA => Ok(Item::Data(&bytes[1..])),
        H_DUPLICATE => Ok(Item::Dups(&bytes[1..])),
        H_OFFPAGE if bytes.len() >= HOFFPAGE_SIZE => Ok(Item::Off {
            pgno: p.u32_at(off + 4)?,
            tlen: p.u32_at(off + 8)?,
        }),
        H_OFFDUP if bytes.len() >= 8 => Ok(Item::OffDup(p.u32_at(off + 4)?)),
        t => Err(DbError::Format(format!(
            "page {}: item {i} has bad type {t}",
            p.pgno()
        ))),
    }
}

/// The bytes of an item (for a data item with duplicates: the first one).
fn item_bytes(pf: &PageFile, it: Item<'_>) -> Result<Vec<u8>, DbError> {
    match it {
        Item::Data(d) => Ok(d.to_vec()),
        Item::Off { pgno, tlen } => page::read_overflow(pf, pgno, tlen),
        Item::Dups(d) => {
            // Each duplicate is: u16 length, bytes, u16 length.
            let len = page::get_u16(d, 0, pf.swap)? as usize;
            d.get(2..2 + len)
                .map(|s| s.to_vec())
                .ok_or_else(|| DbError::Format("bad on-page duplicate".into()))
        }
        Item::OffDup(pgno) => super::btree::first_offpage_dup(pf, pgno),
    }
}

/// Reads a hash database.
pub struct HashReader {
    pub pf: PageFile,
    meta: HashMeta,
    buf: Vec<u8>,
}

/// Position of a walk through every bucket.
#[derive(Default)]
pub struct HashCursor {
    /// Next bucket to enter.
    bucket: u64,
    /// Page being walked (0: enter the next bucket).
    pgno: u32,
    /// Next pair index on that page.
    idx: usize,
    /// Pages visited in this bucket (bounds a corrupt chain's loop).
    hops: u32,
    page: Vec<u8>,
}

impl HashReader {
    pub fn new(pf: PageFile, meta: HashMeta) -> Self {
        HashReader {
            pf,
            meta,
            buf: Vec::new(),
        }
    }

    /// The first page of a bucket.
    fn bucket_page(&self, bucket: u64) -> Result<u32, DbError> {
        let l2 = log2_ceil(bucket + 1) as usize;
        let spare = *self
            .meta
            .spares
            .get(l2)
            .ok_or_else(|| DbError::Format(format!("bucket {bucket} beyond the spares")))?;
        u32::try_from(bucket + spare as u64)
            .map_err(|_| DbError::Format(format!("bucket {bucket} maps past the file")))
    }

    /// The bucket a key hashes to.
    fn bucket_of(&self, key: &[u8]) -> u32 {
        let h = hash(key);
        let mut b = h & self.meta.high_mask;
        if b > self.meta.max_bucket {
            b &= self.meta.low_mask;
        }
        b
    }

    /// Look a key up (exact bytes).
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, DbError> {
        let mut pgno = self.bucket_page(self.bucket_of(key) as u64)?;
        let mut buf = std::mem::take(&mut self.buf);
        let r = self.search(&mut pgno, key, &mut buf);
        self.buf = buf;
        r
    }

    fn search(
        &self,
        pgno: &mut u32,
        key: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<Option<Vec<u8>>, DbError> {
        let pf = &self.pf;
        let mut first = true;
        let mut hops = 0u32;
        while *pgno != 0 {
            hops += 1;
            if hops > pf.npages {
                return Err(DbError::Format("bucket chain loops".into()));
            }
            pf.read(*pgno, buf)?;
            let p = pf.view(buf);
            match p.ptype() {
                P_HASH | P_HASH_UNSORTED => {}
                // A bucket page that was never written: an empty bucket.
                P_INVALID if first => return Ok(None),
                t => {
                    return Err(DbError::Format(format!(
                        "page {pgno}: expected a hash page, found type {t}"
                    )));
                }
            }
            first = false;
            let n = p.checked_entries()?;
            if n % 2 != 0 {
                return Err(DbError::Format(format!("page {pgno}: odd number of items")));
            }
            for i in (0..n).step_by(2) {
                let hit = match item(&p, i)? {
                    Item::Data(k) => k == key,
                    Item::Off { pgno: op, tlen } => page::overflow_equals(pf, op, tlen, key)?,
                    _ => {
                        return Err(DbError::Format(format!(
                            "page {pgno}: key item {i} is a duplicate set"
                        )));
                    }
                };
                if hit {
                    return item_bytes(pf, item(&p, i + 1)?).map(Some);
                }
            }
            *pgno = p.next();
        }
        Ok(None)
    }

    /// Start a walk over every pair.
    pub fn cursor(&self) -> HashCursor {
        HashCursor::default()
    }

    /// The next pair of a walk, in bucket order.
    pub fn next(&self, c: &mut HashCursor) -> Result<Option<Pair>, DbError> {
        let pf = &self.pf;
        loop {
            if c.pgno == 0 {
                if c.bucket > self.meta.max_bucket as u64 {
                    return Ok(None);
                }
                c.pgno = self.bucket_page(c.bucket)?;
                c.bucket += 1;
                c.idx = 0;
                c.hops = 0;
                pf.read(c.pgno, &mut c.page)?;
                if pf.view(&c.page).ptype() == P_INVALID {
                    c.pgno = 0;
                    continue;
                }
            }
            let p = pf.view(&c.page);
            match p.ptype() {
                P_HASH | P_HASH_UNSORTED => {}
                t => {
                    return Err(DbError::Format(format!(
                        "page {}: expected a hash page, found type {t}",
                        c.pgno
                    )));
                }
            }
            let n = p.checked_entries()?;
            if c.idx + 1 < n {
                let i = c.idx;
                c.idx += 2;
                let k = item_bytes(pf, item(&p, i)?)?;
                let v = item_bytes(pf, item(&p, i + 1)?)?;
                return Ok(Some((k, v)));
            }
            let next = p.next();
            c.hops += 1;
            if c.hops > pf.npages {
                return Err(DbError::Format("bucket chain loops".into()));
            }
            c.idx = 0;
            c.pgno = next;
            if next != 0 {
                pf.read(next, &mut c.page)?;
            }
        }
    }
}

/// On-page size of an item of `len` bytes (with its index slot).
fn item_psize(page_size: usize, len: usize) -> usize {
    if is_big(page_size, len) {
        HOFFPAGE_SIZE + 2
    } else {
        1 + len + 2
    }
}

/// Whether an item goes to overflow pages (`ISBIG`).
fn is_big(page_size: usize, len: usize) -> bool {
    len > page_size / 4
}

/// How the writer distributes pairs: number of buckets (a power of two),
/// and the pair indices grouped by bucket, each group sorted by key.
pub struct Layout {
    pub nbuckets: u32,
    /// Pair indices in file order.
    pub order: Vec<u32>,
    /// `order[start[b]..start[b + 1]]` is bucket `b`.
    pub start: Vec<u32>,
}

/// Average page fill the writer aims at, leaving room for the random spread
/// of bucket sizes.
const FILL_PERCENT: usize = 70;

/// Choose the bucket count and order pairs as they will be written.
pub fn layout(page_size: usize, pairs: &[(&[u8], &[u8])]) -> Layout {
    let total: usize = pairs
        .iter()
        .map(|(k, v)| item_psize(page_size, k.len()) + item_psize(page_size, v.len()))
        .sum();
    let per_page = page::max_space(page_size) * FILL_PERCENT / 100;
    let want = total.div_ceil(per_page).max(2);
    let nbuckets = want.next_power_of_two().min(1 << 31) as u32;
    let mask = nbuckets - 1;
    let buckets: Vec<u32> = pairs.iter().map(|(k, _)| hash(k) & mask).collect();
    let mut start = vec![0u32; nbuckets as usize + 1];
    for &b in &buckets {
        start[b as usize + 1] += 1;
    }
    for i in 1..start.len() {
        start[i] += start[i - 1];
    }
    let mut fill = start.clone();
    let mut order = vec![0u32; pairs.len()];
    for (i, &b) in buckets.iter().enumerate() {
        order[fill[b as usize] as usize] = i as u32;
        fill[b as usize] += 1;
    }
    for b in 0..nbuckets as usize {
        let group = &mut order[start[b] as usize..start[b + 1] as usize];
        if group.len() > 1 {
            group.sort_unstable_by(|&x, &y| pairs[x as usize].0.cmp(pairs[y as usize].0));
        }
    }
    Layout {
        nbuckets,
        order,
        start,
    }
}

/// Write a complete hash database holding `pairs` (unique keys).
#[allow(clippy::needless_range_loop)]
pub fn write(
    out: &mut dyn Write,
    page_size: usize,
    pairs: &[(&[u8], &[u8])],
    uid: &[u8; 20],
) -> std::io::Result<()> {
    let lay = layout(page_size, pairs);
    let nb = lay.nbuckets as usize;
    let cap = page::max_space(page_size);
    let psize = |i: u32| {
        let (k, v) = pairs[i as usize];
        item_psize(page_size, k.len()) + item_psize(page_size, v.len())
    };

    // Plan: page numbers of overflow items and of the extra pages of each
    // bucket's chain. Pages 1..=nb are the buckets' first pages; everything
    // else follows, bucket by bucket: its overflow items, then its chain.
    let mut next_free: u64 = nb as u64 + 1;
    let mut ovk = vec![0u32; pairs.len()];
    let mut ovd = vec![0u32; pairs.len()];
    // Group boundaries (positions in `order`) for every page in file order
    // per bucket, and each bucket's first group.
    let mut groups: Vec<u32> = Vec::with_capacity(nb + 1);
    let mut first_group = vec![0u32; nb + 1];
    let mut chain_pgno: Vec<u32> = Vec::with_capacity(nb + 1);
    for b in 0..nb {
        first_group[b] = groups.len() as u32;
        let (s, e) = (lay.start[b], lay.start[b + 1]);
        for &i in &lay.order[s as usize..e as usize] {
            let (k, v) = pairs[i as usize];
            if is_big(page_size, k.len()) {
                ovk[i as usize] = next_free as u32;
                next_free += page::overflow_pages(page_size, k.len()) as u64;
            }
            if is_big(page_size, v.len()) {
                ovd[i as usize] = next_free as u32;
                next_free += page::overflow_pages(page_size, v.len()) as u64;
            }
        }
        groups.push(s);
        chain_pgno.push(b as u32 + 1);
        let mut used = 0;
        for pos in s..e {
            let sz = psize(lay.order[pos as usize]);
            if used + sz > cap {
                groups.push(pos);
                chain_pgno.push(next_free as u32);
                next_free += 1;
                used = 0;
            }
            used += sz;
        }
    }
    first_group[nb] = groups.len() as u32;
    groups.push(pairs.len() as u32);
    if next_free > u32::MAX as u64 {
        return Err(std::io::Error::other("hash table too large"));
    }
    let last_pgno = (next_free - 1) as u32;

    out.write_all(&meta::hash_meta_page(
        page_size,
        lay.nbuckets,
        pairs.len() as u32,
        last_pgno,
        uid,
    ))?;

    let page_of = |g: usize, prev: u32, next: u32| -> PageBuf {
        let mut p = PageBuf::new(page_size, chain_pgno[g], prev, next, 0, P_HASH);
        let (s, e) = (groups[g] as usize, groups[g + 1] as usize);
        let mut hoff = page_size;
        for (j, &i) in lay.order[s..e].iter().enumerate() {
            let (k, v) = pairs[i as usize];
            for (n, (bytes, ov)) in [(k, ovk[i as usize]), (v, ovd[i as usize])]
                .into_iter()
                .enumerate()
            {
                if ov != 0 {
                    hoff -= HOFFPAGE_SIZE;
                    p.b[hoff] = H_OFFPAGE;
                    p.put_u32(hoff + 4, ov);
                    p.put_u32(hoff + 8, bytes.len() as u32);
                } else {
                    hoff -= 1 + bytes.len();
                    p.b[hoff] = H_KEYDATA;
                    p.b[hoff + 1..hoff + 1 + bytes.len()].copy_from_slice(bytes);
                }
                p.put_u16(page::SIZEOF_PAGE + 2 * (2 * j + n), hoff as u16);
            }
        }
        p.set_entries(2 * (e - s));
        p.set_hf_offset(hoff);
        p
    };
    let next_of = |g: usize, b: usize| -> u32 {
        if g + 1 < first_group[b + 1] as usize {
            chain_pgno[g + 1]
        } else {
            0
        }
    };

    // The buckets' first pages.
    for b in 0..nb {
        let g = first_group[b] as usize;
        out.write_all(&page_of(g, 0, next_of(g, b)).b)?;
    }
    // Each bucket's overflow items, then its chain pages.
    for b in 0..nb {
        let (s, e) = (lay.start[b] as usize, lay.start[b + 1] as usize);
        for &i in &lay.order[s..e] {
            let (k, v) = pairs[i as usize];
            let mut emit = |bytes: &[u8]| out.write_all(bytes);
            if ovk[i as usize] != 0 {
                page::write_overflow(page_size, ovk[i as usize], k, &mut emit)?;
            }
            if ovd[i as usize] != 0 {
                page::write_overflow(page_size, ovd[i as usize], v, &mut emit)?;
            }
        }
        for g in first_group[b] as usize + 1..first_group[b + 1] as usize {
            out.write_all(&page_of(g, chain_pgno[g - 1], next_of(g, b)).b)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_function_matches_libdb() {
        // The h_charkey value in every libdb 5.3 hash meta page.
        assert_eq!(hash(CHARKEY), 0x5e68_8dd1);
        assert_eq!(hash(b""), 0);
    }

    #[test]
    fn log2() {
        assert_eq!(log2_ceil(1), 0);
        assert_eq!(log2_ceil(2), 1);
        assert_eq!(log2_ceil(3), 2);
        assert_eq!(log2_ceil(4), 2);
        assert_eq!(log2_ceil(5), 3);
        assert_eq!(log2_ceil(1 << 32), 32);
    }
}
