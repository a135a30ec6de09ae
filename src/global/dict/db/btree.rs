//! Berkeley DB `DB_BTREE` files (btree version 9, as libdb 5.3 writes them).
//!
//! Facts (Berkeley DB 5.3 `dbinc/db_page.h`, `btree/bt_*.c`):
//! - The meta page names the root (libdb keeps it at page 1). Internal pages
//!   (`P_IBTREE`, level ≥ 2) hold `BINTERNAL` items: u16 length, type byte,
//!   pad, child page, record count, then the key; the first key of every
//!   internal page is ignored (treated as smaller than any key). A key over
//!   the overflow threshold is stored as a `BOVERFLOW` in the item's data.
//! - Leaf pages (`P_LBTREE`, level 1) hold key/data pairs as `BKEYDATA`
//!   items (u16 length, type byte, bytes; padded to 4) or `BOVERFLOW` items
//!   (pad, type 3, pad, page, total length), linked left to right.
//! - Items longer than `B_MINKEY_TO_OVFLSIZE` (1007 bytes for 4096-byte pages
//!   and the default minkey 2) go to overflow pages.
//! - Keys sort with memcmp, a shorter key first when one is a prefix.
//! - Bit 0x80 of an item's type marks it deleted.

use super::page::{self, P_IBTREE, P_IRECNO, P_LBTREE, P_LDUP, P_LRECNO, PageBuf, PageFile};
use super::{DbError, Pair};
use std::cmp::Ordering;
use std::io::Write;

const B_KEYDATA: u8 = 1;
const B_DUPLICATE: u8 = 2;
const B_OVERFLOW: u8 = 3;
const B_DELETE: u8 = 0x80;
/// Size of a `BOVERFLOW` item.
const BOVERFLOW_SIZE: usize = 12;
/// Offset of the key bytes in a `BINTERNAL` item.
const BINTERNAL_DATA: usize = 12;
/// Deepest tree libdb builds (`MAXBTREELEVEL`).
const MAX_LEVEL: u32 = 255;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// libdb's overflow threshold for minkey 2 (`B_MINKEY_TO_OVFLSIZE`).
pub fn ovflsize(page_size: usize) -> usize {
    (page_size - page::SIZEOF_PAGE) / 4 - (align4(3) + 2 + 4)
}

/// A key or data item on a leaf page.
enum Item<'a> {
    Data(&'a [u8]),
    Off { pgno: u32, tlen: u32 },
    Dup(u32),
}

/// Decode item `i` of a leaf (or off-page duplicate) page, and whether it is
/// marked deleted.
fn leaf_item<'a>(p: &page::Page<'a>, i: usize) -> Result<(Item<'a>, bool), DbError> {
    let off = p.inp(i)?;
    let t = p.byte(off + 2)?;
    let deleted = t & B_DELETE != 0;
    let it = match t & !B_DELETE {
        B_KEYDATA => {
            let len = p.u16_at(off)? as usize;
            Item::Data(p.bytes(off + 3, len)?)
        }
        B_OVERFLOW => Item::Off {
            pgno: p.u32_at(off + 4)?,
            tlen: p.u32_at(off + 8)?,
        },
        B_DUPLICATE => Item::Dup(p.u32_at(off + 4)?),
        t => {
            return Err(DbError::Format(format!(
                "page {}: item {i} has bad type {t}",
                p.pgno()
            )));
        }
    };
    Ok((it, deleted))
}

fn item_bytes(pf: &PageFile, it: Item<'_>) -> Result<Vec<u8>, DbError> {
    match it {
        Item::Data(d) => Ok(d.to_vec()),
        Item::Off { pgno, tlen } => page::read_overflow(pf, pgno, tlen),
        Item::Dup(pgno) => first_offpage_dup(pf, pgno),
    }
}

/// Compare a search key with a stored item.
fn cmp_item(pf: &PageFile, key: &[u8], it: &Item<'_>) -> Result<Ordering, DbError> {
    match it {
        Item::Data(d) => Ok(key.cmp(d)),
        Item::Off { pgno, tlen } => Ok(key.cmp(&page::read_overflow(pf, *pgno, *tlen)?[..])),
        Item::Dup(_) => Err(DbError::Format("duplicate set used as a key".into())),
    }
}

/// Child page and key of item `i` of an internal page.
fn internal_item<'a>(p: &page::Page<'a>, i: usize) -> Result<(u32, Item<'a>), DbError> {
    let off = p.inp(i)?;
    let len = p.u16_at(off)? as usize;
    let t = p.byte(off + 2)? & !B_DELETE;
    let child = p.u32_at(off + 4)?;
    let it = match t {
        B_KEYDATA => Item::Data(p.bytes(off + BINTERNAL_DATA, len)?),
        B_OVERFLOW => Item::Off {
            pgno: p.u32_at(off + BINTERNAL_DATA + 4)?,
            tlen: p.u32_at(off + BINTERNAL_DATA + 8)?,
        },
        t => {
            return Err(DbError::Format(format!(
                "page {}: internal item {i} has bad type {t}",
                p.pgno()
            )));
        }
    };
    Ok((child, it))
}

/// The first data item of an off-page duplicate tree (libdb's `get` returns
/// the first duplicate): a btree of `P_LDUP` leaves for sorted duplicates, a
/// recno tree (`P_IRECNO` / `P_LRECNO`) for unsorted ones. Postfix never
/// writes duplicates; this only keeps such files readable.
pub fn first_offpage_dup(pf: &PageFile, mut pgno: u32) -> Result<Vec<u8>, DbError> {
    let mut buf = Vec::new();
    for _ in 0..MAX_LEVEL {
        pf.read(pgno, &mut buf)?;
        let p = pf.view(&buf);
        let n = p.checked_entries()?;
        if n == 0 {
            return Err(DbError::Format(format!(
                "page {pgno}: empty duplicate page"
            )));
        }
        match p.ptype() {
            P_IBTREE => pgno = internal_item(&p, 0)?.0,
            // RINTERNAL: child page, record count.
            P_IRECNO => pgno = p.u32_at(p.inp(0)?)?,
            P_LDUP | P_LRECNO => {
                for i in 0..n {
                    let (it, deleted) = leaf_item(&p, i)?;
                    if !deleted {
                        return match it {
                            Item::Dup(_) => Err(DbError::Format("nested duplicates".into())),
                            it => item_bytes(pf, it),
                        };
                    }
                }
                return Err(DbError::Format(format!("page {pgno}: no live duplicate")));
            }
            t => {
                return Err(DbError::Format(format!(
                    "page {pgno}: expected a duplicate page, found type {t}"
                )));
            }
        }
    }
    Err(DbError::Format("duplicate tree too deep".into()))
}

/// Reads a btree database.
pub struct BtreeReader {
    pub pf: PageFile,
    root: u32,
    buf: Vec<u8>,
}

/// Position of a walk through the leaves.
#[derive(Default)]
pub struct BtreeCursor {
    started: bool,
    pgno: u32,
    idx: usize,
    hops: u32,
    page: Vec<u8>,
}

impl BtreeReader {
    pub fn new(pf: PageFile, root: u32) -> Self {
        BtreeReader {
            pf,
            root,
            buf: Vec::new(),
        }
    }

    /// Descend from the root to the leaf that may hold `key` (leftmost leaf
    /// when `key` is None); the page is left in `buf`.
    fn descend(&self, key: Option<&[u8]>, buf: &mut Vec<u8>) -> Result<u32, DbError> {
        let pf = &self.pf;
        let mut pgno = self.root;
        for _ in 0..MAX_LEVEL {
            pf.read(pgno, buf)?;
            let p = pf.view(buf);
            match p.ptype() {
                P_LBTREE => return Ok(pgno),
                P_IBTREE => {
                    let n = p.checked_entries()?;
                    if n == 0 {
                        return Err(DbError::Format(format!("page {pgno}: empty internal page")));
                    }
                    // The last child whose key is <= the search key; item 0
                    // stands for everything smaller.
                    let mut child = internal_item(&p, 0)?.0;
                    if let Some(key) = key {
                        let (mut lo, mut hi) = (1usize, n);
                        while lo < hi {
                            let mid = lo + (hi - lo) / 2;
                            let (c, it) = internal_item(&p, mid)?;
                            if cmp_item(pf, key, &it)? == Ordering::Less {
                                hi = mid;
                            } else {
                                child = c;
                                lo = mid + 1;
                            }
                        }
                    }
                    if child == pgno {
                        return Err(DbError::Format(format!("page {pgno} points to itself")));
                    }
                    pgno = child;
                }
                t => {
                    return Err(DbError::Format(format!(
                        "page {pgno}: expected a btree page, found type {t}"
                    )));
                }
            }
        }
        Err(DbError::Format("btree too deep".into()))
    }

    /// Look a key up (exact bytes).
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, DbError> {
        let mut buf = std::mem::take(&mut self.buf);
        let r = self.get_in(key, &mut buf);
        self.buf = buf;
        r
    }

    fn get_in(&self, key: &[u8], buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>, DbError> {
        let pf = &self.pf;
        self.descend(Some(key), buf)?;
        let p = pf.view(buf);
        let n = p.checked_entries()?;
        let npairs = n / 2;
        // Lower bound: the first pair whose key is >= the search key.
        let (mut lo, mut hi) = (0usize, npairs);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (it, _) = leaf_item(&p, 2 * mid)?;
            if cmp_item(pf, key, &it)? == Ordering::Greater {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        for pair in lo..npairs {
            let (k, kdel) = leaf_item(&p, 2 * pair)?;
            if cmp_item(pf, key, &k)? != Ordering::Equal {
                break;
            }
            let (d, ddel) = leaf_item(&p, 2 * pair + 1)?;
            if !kdel && !ddel {
                return item_bytes(pf, d).map(Some);
            }
        }
        Ok(None)
    }

    /// Start a walk over every pair, in key order.
    pub fn cursor(&self) -> BtreeCursor {
        BtreeCursor::default()
    }

    /// The next pair of a walk.
    pub fn next(&self, c: &mut BtreeCursor) -> Result<Option<Pair>, DbError> {
        let pf = &self.pf;
        if !c.started {
            c.started = true;
            c.pgno = self.descend(None, &mut c.page)?;
            c.idx = 0;
        }
        while c.pgno != 0 {
            let p = pf.view(&c.page);
            if p.ptype() != P_LBTREE {
                return Err(DbError::Format(format!(
                    "page {}: expected a leaf page, found type {}",
                    c.pgno,
                    p.ptype()
                )));
            }
            let n = p.checked_entries()?;
            while c.idx + 1 < n {
                let i = c.idx;
                c.idx += 2;
                let (k, kdel) = leaf_item(&p, i)?;
                let (d, ddel) = leaf_item(&p, i + 1)?;
                if kdel || ddel {
                    continue;
                }
                return Ok(Some((item_bytes(pf, k)?, item_bytes(pf, d)?)));
            }
            c.hops += 1;
            if c.hops > pf.npages {
                return Err(DbError::Format("leaf chain loops".into()));
            }
            c.pgno = p.next();
            c.idx = 0;
            if c.pgno != 0 {
                pf.read(c.pgno, &mut c.page)?;
            }
        }
        Ok(None)
    }
}

/// A node of the tree being written.
#[derive(Clone, Copy, Default)]
struct Node {
    /// Index of the first pair under this node.
    first_pair: u32,
    /// Page number.
    pgno: u32,
    /// Overflow page of the separator that leads to this node, when it is
    /// stored off-page (0: on-page, or not needed).
    sep_ov: u32,
    /// Children (positions in the level below), for internal nodes; pairs
    /// for leaves.
    start: u32,
    end: u32,
}

/// The separator that leads to the subtree whose first key is `right`, after
/// one whose last key is `left`: the shortest prefix of `right` greater than
/// `left` (libdb's default prefix rule).
fn separator<'a>(left: &[u8], right: &'a [u8]) -> &'a [u8] {
    let common = left.iter().zip(right).take_while(|(a, b)| a == b).count();
    &right[..(common + 1).min(right.len())]
}

/// Write a complete btree database holding `pairs`, sorted by key, unique.
#[allow(clippy::needless_range_loop)]
pub fn write(
    out: &mut dyn Write,
    page_size: usize,
    pairs: &[(&[u8], &[u8])],
    uid: &[u8; 20],
) -> std::io::Result<()> {
    let ovfl = ovflsize(page_size);
    let cap = page::max_space(page_size);
    let big = |len: usize| len > ovfl;
    let leaf_psize = |len: usize| {
        if big(len) {
            BOVERFLOW_SIZE + 2
        } else {
            align4(3 + len) + 2
        }
    };
    // The separator stored for node `n` and whether it goes off-page.
    let sep_of = |n: &Node| -> (&[u8], bool) {
        let f = n.first_pair as usize;
        let right = pairs[f].0;
        let s = separator(pairs[f - 1].0, right);
        if big(s.len()) {
            (right, true)
        } else {
            (s, false)
        }
    };
    let int_psize = |n: Option<&Node>| match n {
        None => align4(BINTERNAL_DATA) + 2,
        Some(n) => match sep_of(n) {
            (_, true) => align4(BINTERNAL_DATA + BOVERFLOW_SIZE) + 2,
            (s, false) => align4(BINTERNAL_DATA + s.len()) + 2,
        },
    };

    // Leaves.
    let mut leaves: Vec<Node> = Vec::new();
    let mut used = 0;
    for (i, (k, v)) in pairs.iter().enumerate() {
        let sz = leaf_psize(k.len()) + leaf_psize(v.len());
        if leaves.is_empty() || used + sz > cap {
            leaves.push(Node {
                first_pair: i as u32,
                start: i as u32,
                end: i as u32,
                ..Node::default()
            });
            used = 0;
        }
        used += sz;
        if let Some(l) = leaves.last_mut() {
            l.end += 1;
        }
    }
    if leaves.is_empty() {
        leaves.push(Node::default());
    }

    // Page numbers: 0 meta, 1 root; then the leaves, each after its
    // overflow items; then each internal level, each page after the
    // overflow copies of its long separators.
    let mut next_free: u64 = 2;
    let mut ovk = vec![0u32; pairs.len()];
    let mut ovd = vec![0u32; pairs.len()];
    let single = leaves.len() == 1;
    for leaf in leaves.iter_mut() {
        for i in leaf.start as usize..leaf.end as usize {
            let (k, v) = pairs[i];
            if big(k.len()) {
                ovk[i] = next_free as u32;
                next_free += page::overflow_pages(page_size, k.len()) as u64;
            }
            if big(v.len()) {
                ovd[i] = next_free as u32;
                next_free += page::overflow_pages(page_size, v.len()) as u64;
            }
        }
        if single {
            leaf.pgno = 1;
        } else {
            leaf.pgno = next_free as u32;
            next_free += 1;
        }
    }
    let mut levels: Vec<Vec<Node>> = vec![leaves];
    while levels.last().map(|l| l.len() > 1).unwrap_or(false) {
        let below = levels.last_mut().unwrap();
        let mut nodes: Vec<Node> = Vec::new();
        let mut used = 0;
        for c in 0..below.len() {
            let sz = if nodes.is_empty() {
                cap + 1
            } else {
                int_psize(Some(&below[c]))
            };
            if used + sz > cap {
                nodes.push(Node {
                    first_pair: below[c].first_pair,
                    start: c as u32,
                    end: c as u32,
                    ..Node::default()
                });
                used = int_psize(None);
            } else {
                used += sz;
            }
            if let Some(n) = nodes.last_mut() {
                n.end += 1;
            }
        }
        // Never leave a last page with a single child.
        let m = nodes.len();
        if m >= 2 && nodes[m - 1].end - nodes[m - 1].start == 1 {
            nodes[m - 2].end -= 1;
            nodes[m - 1].start -= 1;
            nodes[m - 1].first_pair = below[nodes[m - 1].start as usize].first_pair;
        }
        let root = nodes.len() == 1;
        for n in nodes.iter_mut() {
            for c in n.start as usize + 1..n.end as usize {
                if sep_of(&below[c]).1 {
                    let len = pairs[below[c].first_pair as usize].0.len();
                    below[c].sep_ov = next_free as u32;
                    next_free += page::overflow_pages(page_size, len) as u64;
                }
            }
            if root {
                n.pgno = 1;
            } else {
                n.pgno = next_free as u32;
                next_free += 1;
            }
        }
        levels.push(nodes);
    }
    if next_free > u32::MAX as u64 {
        return Err(std::io::Error::other("btree too large"));
    }
    let last_pgno = (next_free - 1) as u32;

    let leaf_page = |li: usize, leaves: &[Node]| -> PageBuf {
        let l = &leaves[li];
        let prev = if li > 0 { leaves[li - 1].pgno } else { 0 };
        let next = leaves.get(li + 1).map(|n| n.pgno).unwrap_or(0);
        let mut p = PageBuf::new(page_size, l.pgno, prev, next, 1, P_LBTREE);
        let mut hoff = page_size;
        let mut idx = 0;
        for i in l.start as usize..l.end as usize {
            let (k, v) = pairs[i];
            for (bytes, ov) in [(k, ovk[i]), (v, ovd[i])] {
                if ov != 0 {
                    hoff -= BOVERFLOW_SIZE;
                    p.b[hoff + 2] = B_OVERFLOW;
                    p.put_u32(hoff + 4, ov);
                    p.put_u32(hoff + 8, bytes.len() as u32);
                } else {
                    hoff -= align4(3 + bytes.len());
                    p.put_u16(hoff, bytes.len() as u16);
                    p.b[hoff + 2] = B_KEYDATA;
                    p.b[hoff + 3..hoff + 3 + bytes.len()].copy_from_slice(bytes);
                }
                p.put_u16(page::SIZEOF_PAGE + 2 * idx, hoff as u16);
                idx += 1;
            }
        }
        p.set_entries(idx);
        p.set_hf_offset(hoff);
        p
    };
    let internal_page = |n: &Node, below: &[Node], level: u8| -> PageBuf {
        let mut p = PageBuf::new(page_size, n.pgno, 0, 0, level, P_IBTREE);
        let mut hoff = page_size;
        for (idx, c) in (n.start as usize..n.end as usize).enumerate() {
            let child = &below[c];
            if idx == 0 {
                hoff -= align4(BINTERNAL_DATA);
                p.b[hoff + 2] = B_KEYDATA;
            } else {
                match sep_of(child) {
                    (full, true) => {
                        hoff -= align4(BINTERNAL_DATA + BOVERFLOW_SIZE);
                        p.put_u16(hoff, BOVERFLOW_SIZE as u16);
                        p.b[hoff + 2] = B_OVERFLOW;
                        let d = hoff + BINTERNAL_DATA;
                        p.b[d + 2] = B_OVERFLOW;
                        p.put_u32(d + 4, child.sep_ov);
                        p.put_u32(d + 8, full.len() as u32);
                    }
                    (s, false) => {
                        hoff -= align4(BINTERNAL_DATA + s.len());
                        p.put_u16(hoff, s.len() as u16);
                        p.b[hoff + 2] = B_KEYDATA;
                        p.b[hoff + BINTERNAL_DATA..hoff + BINTERNAL_DATA + s.len()]
                            .copy_from_slice(s);
                    }
                }
            }
            p.put_u32(hoff + 4, child.pgno);
            p.put_u16(page::SIZEOF_PAGE + 2 * idx, hoff as u16);
        }
        p.set_entries((n.end - n.start) as usize);
        p.set_hf_offset(hoff);
        p
    };

    out.write_all(&super::meta::btree_meta_page(page_size, last_pgno, uid))?;
    // The root, at page 1.
    let top = levels.len() - 1;
    if top == 0 {
        out.write_all(&leaf_page(0, &levels[0]).b)?;
    } else {
        out.write_all(&internal_page(&levels[top][0], &levels[top - 1], top as u8 + 1).b)?;
    }
    if top == 0 {
        // Only overflow items follow the root leaf.
        for i in 0..pairs.len() {
            let mut emit = |b: &[u8]| out.write_all(b);
            if ovk[i] != 0 {
                page::write_overflow(page_size, ovk[i], pairs[i].0, &mut emit)?;
            }
            if ovd[i] != 0 {
                page::write_overflow(page_size, ovd[i], pairs[i].1, &mut emit)?;
            }
        }
        return Ok(());
    }
    let leaves = &levels[0];
    for li in 0..leaves.len() {
        let l = &leaves[li];
        for i in l.start as usize..l.end as usize {
            let mut emit = |b: &[u8]| out.write_all(b);
            if ovk[i] != 0 {
                page::write_overflow(page_size, ovk[i], pairs[i].0, &mut emit)?;
            }
            if ovd[i] != 0 {
                page::write_overflow(page_size, ovd[i], pairs[i].1, &mut emit)?;
            }
        }
        out.write_all(&leaf_page(li, leaves).b)?;
    }
    for lv in 1..top {
        for n in &levels[lv] {
            let below = &levels[lv - 1];
            for c in n.start as usize + 1..n.end as usize {
                if below[c].sep_ov != 0 {
                    let mut emit = |b: &[u8]| out.write_all(b);
                    let key = pairs[below[c].first_pair as usize].0;
                    page::write_overflow(page_size, below[c].sep_ov, key, &mut emit)?;
                }
            }
            out.write_all(&internal_page(n, below, lv as u8 + 1).b)?;
        }
    }
    // The root's long separators come last.
    let below = &levels[top - 1];
    let n = &levels[top][0];
    for c in n.start as usize + 1..n.end as usize {
        if below[c].sep_ov != 0 {
            let mut emit = |b: &[u8]| out.write_all(b);
            let key = pairs[below[c].first_pair as usize].0;
            page::write_overflow(page_size, below[c].sep_ov, key, &mut emit)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_threshold_matches_libdb() {
        assert_eq!(ovflsize(4096), 1007);
        assert_eq!(ovflsize(512), 111);
    }

    #[test]
    fn separators() {
        assert_eq!(separator(b"key00045", b"key00046.g"), b"key00046");
        assert_eq!(separator(b"abc", b"abcd"), b"abcd");
        assert_eq!(separator(b"a", b"b"), b"b");
    }
}
