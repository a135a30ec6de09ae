//! Pages of a Berkeley DB file: where they come from, and bounds-checked
//! access to the fields every page type shares.
//!
//! Layout facts (Berkeley DB 5.3, `dbinc/db_page.h`), all integers in the
//! byte order of the host that wrote the file (little-endian on x86_64):
//!
//! ```text
//! 0..8   LSN (file, offset)          libdb writes (0, 1) when not logging
//! 8..12  page number
//! 12..16 previous page (btree nrecs on internal pages)
//! 16..20 next page
//! 20..22 number of entries (overflow pages: reference count)
//! 22..24 high free offset   (overflow pages: bytes of data on the page)
//! 24     btree level (leaf = 1), 0 on other pages
//! 25     page type
//! 26..   index array of u16 item offsets (from 32 when checksums are on)
//! ```

use super::DbError;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Page types (`P_*`).
pub const P_INVALID: u8 = 0;
pub const P_HASH_UNSORTED: u8 = 2;
pub const P_IBTREE: u8 = 3;
pub const P_IRECNO: u8 = 4;
pub const P_LBTREE: u8 = 5;
pub const P_LRECNO: u8 = 6;
pub const P_OVERFLOW: u8 = 7;
pub const P_HASHMETA: u8 = 8;
pub const P_BTREEMETA: u8 = 9;
pub const P_LDUP: u8 = 12;
pub const P_HASH: u8 = 13;

/// Size of the common page header without checksum space.
pub const SIZEOF_PAGE: usize = 26;

/// Where the pages come from: an open file (read on demand with pread), or
/// bytes in memory (tests, fuzzing).
pub enum Source {
    File(File),
    Memory(Vec<u8>),
}

/// An open database file: its geometry and byte order, and page reads that
/// never go outside it.
pub struct PageFile {
    source: Source,
    /// Page size from the meta page.
    pub page_size: usize,
    /// Number of whole pages in the file.
    pub npages: u32,
    /// The file was written on a host of the other byte order.
    pub swap: bool,
    /// Where the index array starts (26, or 32 with page checksums).
    pub overhead: usize,
}

impl PageFile {
    /// Wrap a source whose geometry has been validated by the meta reader.
    pub fn new(source: Source, page_size: usize, npages: u32, swap: bool, overhead: usize) -> Self {
        PageFile {
            source,
            page_size,
            npages,
            swap,
            overhead,
        }
    }

    /// Read page `pgno` into `buf` (resized to the page size).
    pub fn read(&self, pgno: u32, buf: &mut Vec<u8>) -> Result<(), DbError> {
        if pgno >= self.npages {
            return Err(DbError::Format(format!(
                "page {pgno} is beyond the end of the file ({} pages)",
                self.npages
            )));
        }
        buf.resize(self.page_size, 0);
        let off = pgno as u64 * self.page_size as u64;
        match &self.source {
            Source::File(f) => f.read_exact_at(buf, off).map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    DbError::Format(format!("page {pgno}: short read"))
                } else {
                    DbError::Io(e)
                }
            }),
            Source::Memory(m) => {
                let start = off as usize;
                match m.get(start..start + self.page_size) {
                    Some(b) => {
                        buf.copy_from_slice(b);
                        Ok(())
                    }
                    None => Err(DbError::Format(format!("page {pgno}: short read"))),
                }
            }
        }
    }

    /// The underlying file, if any (for locking).
    pub fn file(&self) -> Option<&File> {
        match &self.source {
            Source::File(f) => Some(f),
            Source::Memory(_) => None,
        }
    }

    /// A view of a page buffer with this file's byte order and overhead.
    pub fn view<'a>(&self, b: &'a [u8]) -> Page<'a> {
        Page {
            b,
            swap: self.swap,
            overhead: self.overhead,
        }
    }
}

/// Read a u16 in the file's byte order.
pub fn get_u16(b: &[u8], off: usize, swap: bool) -> Result<u16, DbError> {
    match b.get(off..off + 2) {
        Some(s) => {
            let a = [s[0], s[1]];
            Ok(if swap {
                u16::from_be_bytes(a)
            } else {
                u16::from_le_bytes(a)
            })
        }
        None => Err(DbError::Format(format!("offset {off} outside the page"))),
    }
}

/// Read a u32 in the file's byte order.
pub fn get_u32(b: &[u8], off: usize, swap: bool) -> Result<u32, DbError> {
    match b.get(off..off + 4) {
        Some(s) => {
            let a = [s[0], s[1], s[2], s[3]];
            Ok(if swap {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            })
        }
        None => Err(DbError::Format(format!("offset {off} outside the page"))),
    }
}

/// A page in memory, with bounds-checked field access.
#[derive(Clone, Copy)]
pub struct Page<'a> {
    pub b: &'a [u8],
    pub swap: bool,
    pub overhead: usize,
}

impl<'a> Page<'a> {
    pub fn u16_at(&self, off: usize) -> Result<u16, DbError> {
        get_u16(self.b, off, self.swap)
    }
    pub fn u32_at(&self, off: usize) -> Result<u32, DbError> {
        get_u32(self.b, off, self.swap)
    }
    pub fn byte(&self, off: usize) -> Result<u8, DbError> {
        self.b
            .get(off)
            .copied()
            .ok_or_else(|| DbError::Format(format!("offset {off} outside the page")))
    }
    pub fn bytes(&self, off: usize, len: usize) -> Result<&'a [u8], DbError> {
        off.checked_add(len)
            .and_then(|end| self.b.get(off..end))
            .ok_or_else(|| DbError::Format(format!("item at {off}+{len} outside the page")))
    }
    pub fn pgno(&self) -> u32 {
        self.u32_at(8).unwrap_or(0)
    }
    pub fn prev(&self) -> u32 {
        self.u32_at(12).unwrap_or(0)
    }
    pub fn next(&self) -> u32 {
        self.u32_at(16).unwrap_or(0)
    }
    pub fn entries(&self) -> usize {
        self.u16_at(20).unwrap_or(0) as usize
    }
    pub fn hf_offset(&self) -> usize {
        self.u16_at(22).unwrap_or(0) as usize
    }
    pub fn level(&self) -> u8 {
        self.b.get(24).copied().unwrap_or(0)
    }
    pub fn ptype(&self) -> u8 {
        self.b.get(25).copied().unwrap_or(0)
    }
    /// Number of entries, checked against the room the index array has.
    pub fn checked_entries(&self) -> Result<usize, DbError> {
        let n = self.entries();
        if self.overhead + 2 * n > self.b.len() {
            return Err(DbError::Format(format!(
                "page {}: {n} entries do not fit",
                self.pgno()
            )));
        }
        Ok(n)
    }
    /// Offset of item `i`, checked to lie after the index array and inside
    /// the page.
    pub fn inp(&self, i: usize) -> Result<usize, DbError> {
        let n = self.entries();
        let off = self.u16_at(self.overhead + 2 * i)? as usize;
        if off < self.overhead + 2 * n || off >= self.b.len() {
            return Err(DbError::Format(format!(
                "page {}: item {i} has bad offset {off}",
                self.pgno()
            )));
        }
        Ok(off)
    }
}

/// Follow an overflow chain starting at `pgno` and return its `tlen` bytes.
pub fn read_overflow(pf: &PageFile, mut pgno: u32, tlen: u32) -> Result<Vec<u8>, DbError> {
    let tlen = tlen as usize;
    // An item cannot be larger than the file that holds it.
    if tlen as u64 > pf.npages as u64 * pf.page_size as u64 {
        return Err(DbError::Format(format!(
            "overflow item length {tlen} too large"
        )));
    }
    let mut out = Vec::with_capacity(tlen);
    let mut buf = Vec::new();
    let mut hops = 0u32;
    while out.len() < tlen {
        if pgno == 0 || hops > pf.npages {
            return Err(DbError::Format("overflow chain ends early".into()));
        }
        hops += 1;
        pf.read(pgno, &mut buf)?;
        let p = pf.view(&buf);
        if p.ptype() != P_OVERFLOW {
            return Err(DbError::Format(format!(
                "page {pgno}: expected an overflow page, found type {}",
                p.ptype()
            )));
        }
        let len = p.hf_offset();
        let data = p.bytes(pf.overhead, len)?;
        if out.len() + len > tlen {
            return Err(DbError::Format(format!(
                "page {pgno}: overflow chain longer than its item"
            )));
        }
        out.extend_from_slice(data);
        pgno = p.next();
    }
    Ok(out)
}

/// Whether the overflow item at `pgno` (of `tlen` bytes) equals `key`.
pub fn overflow_equals(pf: &PageFile, pgno: u32, tlen: u32, key: &[u8]) -> Result<bool, DbError> {
    if tlen as usize != key.len() {
        return Ok(false);
    }
    Ok(read_overflow(pf, pgno, tlen)? == key)
}

/// Builds pages for writing: little-endian, LSN (0,1) as libdb writes when
/// it does not log.
pub struct PageBuf {
    pub b: Vec<u8>,
}

impl PageBuf {
    /// A fresh page with the common header filled in.
    pub fn new(page_size: usize, pgno: u32, prev: u32, next: u32, level: u8, ptype: u8) -> Self {
        let mut b = vec![0u8; page_size];
        b[0..4].copy_from_slice(&0u32.to_le_bytes());
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        b[8..12].copy_from_slice(&pgno.to_le_bytes());
        b[12..16].copy_from_slice(&prev.to_le_bytes());
        b[16..20].copy_from_slice(&next.to_le_bytes());
        b[22..24].copy_from_slice(&(page_size as u16).to_le_bytes());
        b[24] = level;
        b[25] = ptype;
        PageBuf { b }
    }
    pub fn put_u16(&mut self, off: usize, v: u16) {
        self.b[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    pub fn put_u32(&mut self, off: usize, v: u32) {
        self.b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    pub fn set_entries(&mut self, n: usize) {
        self.put_u16(20, n as u16);
    }
    pub fn set_hf_offset(&mut self, off: usize) {
        self.put_u16(22, off as u16);
    }
}

/// Usable bytes on a page after the header (no checksums when we write).
pub fn max_space(page_size: usize) -> usize {
    page_size - SIZEOF_PAGE
}

/// Number of overflow pages an item of `len` bytes needs.
pub fn overflow_pages(page_size: usize, len: usize) -> u32 {
    len.div_ceil(max_space(page_size)) as u32
}

/// Write the overflow pages for `data`, numbered `first..`, through `out`.
pub fn write_overflow(
    page_size: usize,
    first: u32,
    data: &[u8],
    out: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let space = max_space(page_size);
    let n = overflow_pages(page_size, data.len());
    for (i, chunk) in data.chunks(space).enumerate() {
        let pgno = first + i as u32;
        let prev = if i == 0 { 0 } else { pgno - 1 };
        let next = if i as u32 + 1 < n { pgno + 1 } else { 0 };
        let mut p = PageBuf::new(page_size, pgno, prev, next, 0, P_OVERFLOW);
        p.set_entries(1); // reference count
        p.set_hf_offset(chunk.len());
        p.b[SIZEOF_PAGE..SIZEOF_PAGE + chunk.len()].copy_from_slice(chunk);
        out(&p.b)?;
    }
    Ok(())
}
