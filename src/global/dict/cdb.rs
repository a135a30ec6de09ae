//! `cdb:` tables: D. J. Bernstein's constant database (`NAME.cdb`), as
//! Postfix's dict_cdb with tinycdb (Debian's postfix-cdb) reads and writes it.
//!
//! File format (all numbers 32-bit little-endian): a 2048-byte header of 256
//! (position, slot count) pairs, one per hash table; the records, each
//! `klen vlen key value`; then the 256 hash tables, each slot a (hash,
//! record position) pair, position 0 meaning empty. The hash is djb's
//! `h = 5381; h = (h * 33) ^ byte`. Table `h % 256` holds a key; its search
//! starts at slot `(h >> 8) % slots` and probes linearly. Each table has
//! twice as many slots as records. We lay the file out exactly as tinycdb
//! does, so the same input gives the same bytes.
//!
//! Postfix semantics kept here:
//! - a table is built aside in `NAME.cdb.tmp` (flock-ed while built) and
//!   renamed to `NAME.cdb` when closed; an existing `.cdb` cannot be updated
//!   in place, only rebuilt;
//! - keys and values are written without a trailing NUL unless TRY1NULL
//!   (postmap -N); queries try both forms, and stick to the one that hits;
//! - duplicates: DUP_IGNORE keeps both records (a query finds the first),
//!   DUP_REPLACE drops the older record, otherwise the newer one is refused
//!   with a warning (DUP_WARN) or an error;
//! - no sequence (postmap -s): Postfix's "sequence operation is not
//!   supported" error.
//!
//! Readers read the file piece by piece with positioned reads (tinycdb maps
//! it): processes that share a big table share the page cache rather than
//! each holding a copy. Every access is bounds-checked as tinycdb checks it:
//! a corrupt or truncated file gives tinycdb's EPROTO ("Protocol error"),
//! never a panic.

use super::{Dict, DictError, OpenError, OpenMode, Seq, Status, flags};
use crate::global::msg;
use crate::sys::lock::{LockOp, flock};
use crate::util::latin1;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

/// The file name suffix.
pub const SUFFIX: &str = ".cdb";
/// The suffix of the file a build writes before renaming it.
pub const TMP_SUFFIX: &str = ".cdb.tmp";

const HEADER: usize = 2048;

/// djb's cdb hash.
pub fn hash(data: &[u8]) -> u32 {
    data.iter()
        .fold(5381u32, |h, &c| h.wrapping_add(h << 5) ^ u32::from(c))
}

/// Why a cdb file could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The file is not a well-formed cdb (tinycdb's EPROTO).
    Corrupt,
    /// The file could not be read.
    Io(io::Error),
}

impl PartialEq for ReadError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ReadError::Corrupt, ReadError::Corrupt) => true,
            (ReadError::Io(a), ReadError::Io(b)) => a.kind() == b.kind(),
            _ => false,
        }
    }
}

impl ReadError {
    /// The errno text Postfix prints for it ("Protocol error" for damage).
    pub fn text(&self) -> String {
        match self {
            ReadError::Corrupt => crate::sys::strerror(libc::EPROTO),
            ReadError::Io(e) => errno_text(e),
        }
    }
}

use ReadError::Corrupt;

/// Where a reader's bytes are: in memory, or in a file read piece by piece
/// (so that many processes reading one big table share the page cache
/// instead of each holding a copy).
enum Source {
    Mem(Vec<u8>),
    File(File),
}

impl Source {
    /// `len` bytes at `pos`; the caller has checked them against the file
    /// size, so a short read means the file shrank: Corrupt.
    fn read_at(&self, pos: u64, len: u64) -> Result<Cow<'_, [u8]>, ReadError> {
        match self {
            Source::Mem(v) => {
                let start = usize::try_from(pos).map_err(|_| Corrupt)?;
                let end = start
                    .checked_add(usize::try_from(len).map_err(|_| Corrupt)?)
                    .ok_or(Corrupt)?;
                v.get(start..end).map(Cow::Borrowed).ok_or(Corrupt)
            }
            Source::File(f) => {
                let mut buf = vec![0u8; usize::try_from(len).map_err(|_| Corrupt)?];
                match f.read_exact_at(&mut buf, pos) {
                    Ok(()) => Ok(Cow::Owned(buf)),
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(Corrupt),
                    Err(e) => Err(ReadError::Io(e)),
                }
            }
        }
    }

    /// Two numbers at `pos`.
    fn pair_at(&self, pos: u64) -> Result<(u32, u32), ReadError> {
        let b = self.read_at(pos, 8)?;
        Ok((
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        ))
    }
}

/// A (key, value) pair read from a cdb file.
pub type Record = (Vec<u8>, Vec<u8>);

/// A cdb file opened for lookups. Every access is bounds-checked the way
/// tinycdb checks it.
pub struct Reader {
    src: Source,
    /// The table of contents (the 2048-byte header).
    toc: Vec<u8>,
    /// The usable size (tinycdb caps it at 4 GB - 1).
    fsize: u64,
    /// The end of the record area: where the first hash table starts.
    dend: u64,
}

impl Reader {
    /// A cdb image in memory.
    pub fn new(data: Vec<u8>) -> Result<Reader, ReadError> {
        let size = data.len() as u64;
        Reader::with_source(Source::Mem(data), size)
    }

    /// A cdb file, read on demand.
    pub fn from_file(file: File) -> Result<Reader, ReadError> {
        let size = file.metadata().map_err(ReadError::Io)?.len();
        Reader::with_source(Source::File(file), size)
    }

    fn with_source(src: Source, size: u64) -> Result<Reader, ReadError> {
        // At least the header must be there.
        if size < HEADER as u64 {
            return Err(Corrupt);
        }
        let toc = src.read_at(0, HEADER as u64)?.into_owned();
        let fsize = size.min(0xffff_ffff);
        let first = u64::from(u32::from_le_bytes([toc[0], toc[1], toc[2], toc[3]]));
        let dend = first.clamp(HEADER as u64, fsize);
        Ok(Reader {
            src,
            toc,
            fsize,
            dend,
        })
    }

    /// Find the first record with this key and return its value.
    pub fn find(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        let klen = key.len() as u64;
        if klen >= self.dend {
            return Ok(None);
        }
        let h = hash(key);
        let t = (h % 256) as usize * 8;
        let word = |at: usize| {
            u64::from(u32::from_le_bytes([
                self.toc[at],
                self.toc[at + 1],
                self.toc[at + 2],
                self.toc[at + 3],
            ]))
        };
        let slots = word(t + 4);
        if slots == 0 {
            return Ok(None);
        }
        let tpos = word(t);
        let tbytes = slots * 8;
        if slots > self.fsize >> 3
            || tpos < self.dend
            || tpos > self.fsize
            || tbytes > self.fsize - tpos
        {
            return Err(Corrupt);
        }
        let mut slot = (u64::from(h >> 8) % slots) * 8;
        for _ in 0..slots {
            let (sh, rpos) = self.src.pair_at(tpos + slot)?;
            let rpos = u64::from(rpos);
            if rpos == 0 {
                return Ok(None);
            }
            if sh == h {
                if rpos > self.dend - 8 {
                    return Err(Corrupt);
                }
                let (rk, rv) = self.src.pair_at(rpos)?;
                if u64::from(rk) == klen {
                    if self.dend - klen < rpos + 8 {
                        return Err(Corrupt);
                    }
                    if *self.src.read_at(rpos + 8, klen)? == *key {
                        let vlen = u64::from(rv);
                        let vpos = rpos + 8 + klen;
                        if self.dend < vlen || self.dend - vlen < vpos {
                            return Err(Corrupt);
                        }
                        return Ok(Some(self.src.read_at(vpos, vlen)?.into_owned()));
                    }
                }
            }
            slot += 8;
            if slot >= tbytes {
                slot = 0;
            }
        }
        Ok(None)
    }

    /// Every record in file order (as `cdb -d` lists them).
    pub fn records(&self) -> Result<Vec<Record>, ReadError> {
        let mut out = Vec::new();
        let mut pos = HEADER as u64;
        while pos < self.dend {
            if pos + 8 > self.dend {
                return Err(Corrupt);
            }
            let (klen, vlen) = self.src.pair_at(pos)?;
            let (klen, vlen) = (u64::from(klen), u64::from(vlen));
            let end = pos + 8 + klen + vlen;
            if end > self.dend {
                return Err(Corrupt);
            }
            let k = self.src.read_at(pos + 8, klen)?.into_owned();
            let v = self.src.read_at(pos + 8 + klen, vlen)?.into_owned();
            out.push((k, v));
            pos = end;
        }
        Ok(out)
    }
}

/// How [`Writer::put`] treats a key that is already there (tinycdb's
/// CDB_PUT_* modes as Postfix picks them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Add without looking (DUP_IGNORE): duplicates are kept.
    Add,
    /// Remove older records with the key, then add (DUP_REPLACE).
    Replace,
    /// Add only if the key is new (the default).
    Insert,
}

struct Rec {
    hval: u32,
    /// Offset of the serialized record in `Writer::data`.
    off: usize,
    klen: u32,
    vlen: u32,
    live: bool,
}

const NONE: u32 = u32::MAX;

/// Builds a cdb image in memory.
#[derive(Default)]
pub struct Writer {
    /// Serialized records (`klen vlen key value`), dead ones included.
    data: Vec<u8>,
    recs: Vec<Rec>,
    /// hash -> newest record with that hash; `chain` links to older ones.
    heads: HashMap<u32, u32>,
    chain: Vec<u32>,
    /// Bytes of live records.
    live_bytes: u64,
    live: usize,
}

/// The table would exceed cdb's 4 GB limit (tinycdb's ENOMEM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooBig;

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }

    fn key_of(&self, r: &Rec) -> &[u8] {
        &self.data[r.off + 8..r.off + 8 + r.klen as usize]
    }

    /// Add a record. Returns whether the key was already present (for
    /// `Insert`, the record was then not added).
    pub fn put(&mut self, key: &[u8], value: &[u8], mode: PutMode) -> Result<bool, TooBig> {
        let h = hash(key);
        let mut found = false;
        if mode != PutMode::Add {
            let mut i = self.heads.get(&h).copied().unwrap_or(NONE);
            while i != NONE {
                let idx = i as usize;
                if self.recs[idx].live && self.key_of(&self.recs[idx]) == key {
                    found = true;
                    if mode == PutMode::Insert {
                        return Ok(true);
                    }
                    let r = &mut self.recs[idx];
                    r.live = false;
                    self.live -= 1;
                    self.live_bytes -= 8 + u64::from(r.klen) + u64::from(r.vlen);
                }
                i = self.chain[idx];
            }
        }
        let dpos = HEADER as u64 + self.live_bytes;
        let klen = key.len() as u64;
        let vlen = value.len() as u64;
        if klen > 0xffff_ffff - (dpos + 8) || vlen > 0xffff_ffff - (dpos + 8 + klen) {
            return Err(TooBig);
        }
        let off = self.data.len();
        self.data.extend_from_slice(&(klen as u32).to_le_bytes());
        self.data.extend_from_slice(&(vlen as u32).to_le_bytes());
        self.data.extend_from_slice(key);
        self.data.extend_from_slice(value);
        let idx = self.recs.len() as u32;
        self.recs.push(Rec {
            hval: h,
            off,
            klen: klen as u32,
            vlen: vlen as u32,
            live: true,
        });
        let prev = self.heads.insert(h, idx).unwrap_or(NONE);
        self.chain.push(prev);
        self.live += 1;
        self.live_bytes += 8 + klen + vlen;
        Ok(found)
    }

    /// The number of records the file will hold.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Write the finished file.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        let dend = HEADER as u64 + self.live_bytes;
        if (0xffff_ffff - dend) >> 3 < self.live as u64 {
            return Err(io::Error::from_raw_os_error(libc::ENOMEM));
        }
        // Record positions (dead records squeezed out), grouped per table
        // in insertion order.
        let mut per_table: Vec<Vec<(u32, u32)>> = vec![Vec::new(); 256];
        let mut pos = HEADER as u64;
        for r in self.recs.iter().filter(|r| r.live) {
            per_table[(r.hval % 256) as usize].push((r.hval, pos as u32));
            pos += 8 + u64::from(r.klen) + u64::from(r.vlen);
        }
        // The header.
        let mut header = Vec::with_capacity(HEADER);
        let mut tpos = dend;
        for t in &per_table {
            let slots = (t.len() * 2) as u64;
            header.extend_from_slice(&(tpos as u32).to_le_bytes());
            header.extend_from_slice(&(slots as u32).to_le_bytes());
            tpos += slots * 8;
        }
        out.write_all(&header)?;
        // The records, in runs of live ones.
        let mut run: Option<(usize, usize)> = None;
        for r in &self.recs {
            let len = 8 + r.klen as usize + r.vlen as usize;
            match (r.live, run) {
                (true, Some((s, e))) if e == r.off => run = Some((s, e + len)),
                (true, _) => {
                    if let Some((s, e)) = run {
                        out.write_all(&self.data[s..e])?;
                    }
                    run = Some((r.off, r.off + len));
                }
                (false, _) => {}
            }
        }
        if let Some((s, e)) = run {
            out.write_all(&self.data[s..e])?;
        }
        // The hash tables.
        let mut table: Vec<(u32, u32)> = Vec::new();
        let mut bytes: Vec<u8> = Vec::new();
        for recs in &per_table {
            if recs.is_empty() {
                continue;
            }
            let n = recs.len() * 2;
            table.clear();
            table.resize(n, (0, 0));
            for &(h, p) in recs {
                let mut i = (h >> 8) as usize % n;
                while table[i].1 != 0 {
                    i += 1;
                    if i == n {
                        i = 0;
                    }
                }
                table[i] = (h, p);
            }
            bytes.clear();
            for &(h, p) in &table {
                bytes.extend_from_slice(&h.to_le_bytes());
                bytes.extend_from_slice(&p.to_le_bytes());
            }
            out.write_all(&bytes)?;
        }
        Ok(())
    }

    /// The finished file as bytes.
    pub fn finish(&self) -> Vec<u8> {
        let mut v = Vec::new();
        // Writing to a Vec fails only past the 4 GB limit.
        if self.write_to(&mut v).is_err() {
            v.clear();
        }
        v
    }
}

/// The key as Postfix sees it: a C string, folded per FOLD_FIX.
fn c_key(key: &str, dict_flags: u32) -> Vec<u8> {
    let k = key.split('\0').next().unwrap_or("");
    if dict_flags & flags::FOLD_FIX != 0 {
        latin1::encode(&super::fold_key(k))
    } else {
        latin1::encode(k)
    }
}

/// A value as a C string: up to the first NUL.
fn c_value(v: &[u8]) -> String {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    latin1::decode(&v[..end])
}

fn unsupported(ty_name: &str, op: &str) -> DictError {
    DictError::Fatal(format!("table {ty_name}: {op} operation is not supported"))
}

/// Open a cdb table: read-only for queries, or Create to build anew.
pub fn open(name: &str, mode: OpenMode, dict_flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    match mode {
        OpenMode::ReadOnly => Ok(Box::new(CdbQuery::open(name, dict_flags)?)),
        OpenMode::Create => Ok(Box::new(CdbMake::open(name, dict_flags)?)),
        OpenMode::ReadWrite => Err(OpenError(
            "dict_cdb_open: inappropriate open flags for cdb database \
             - specify O_RDONLY or O_WRONLY|O_CREAT|O_TRUNC"
                .to_string(),
        )),
    }
}

fn errno_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => crate::sys::strerror(code),
        None => e.to_string(),
    }
}

/// A cdb table opened for queries. Its name is the file name, with `.cdb`,
/// as in Postfix's messages.
pub struct CdbQuery {
    path: String,
    flags: u32,
    reader: Reader,
}

impl CdbQuery {
    pub fn open(name: &str, dict_flags: u32) -> Result<CdbQuery, OpenError> {
        let path = format!("{name}{SUFFIX}");
        let f = File::open(latin1::to_path(&path))
            .map_err(|e| OpenError(format!("open database {path}: {}", errno_text(&e))))?;
        let meta = f
            .metadata()
            .map_err(|e| OpenError(format!("dict_dbq_open: fstat: {}", errno_text(&e))))?;
        let reader = Reader::from_file(f).map_err(|e| {
            OpenError(format!(
                "dict_cdbq_open: unable to init {path}: {}",
                e.text()
            ))
        })?;
        // A source file changed after the table was built (but not just
        // now, while it is being edited) deserves a warning.
        if let Ok(src) = std::fs::metadata(latin1::to_path(name)) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            if src.mtime() > meta.mtime() && src.mtime() < now - 100 {
                msg::warn(&format!("database {path} is older than source file {name}"));
            }
        }
        let mut fl = dict_flags;
        if fl & (flags::TRY0NULL | flags::TRY1NULL) == 0 {
            fl |= flags::TRY0NULL | flags::TRY1NULL;
        }
        Ok(CdbQuery {
            path,
            flags: fl | flags::FIXED,
            reader,
        })
    }
}

impl Dict for CdbQuery {
    fn type_name(&self) -> &str {
        "cdb"
    }

    fn name(&self) -> &str {
        &self.path
    }

    fn flags(&self) -> u32 {
        self.flags
    }

    fn set_flags(&mut self, f: u32) {
        self.flags = f;
    }

    fn lookup(&mut self, key: &str) -> Result<Option<String>, DictError> {
        let mut k = c_key(key, self.flags);
        let path = &self.path;
        let corrupt =
            |e: ReadError| DictError::Fatal(format!("error reading {path}: {}", e.text()));
        let mut found = None;
        if self.flags & flags::TRY1NULL != 0 {
            k.push(0);
            if let Some(v) = self.reader.find(&k).map_err(corrupt)? {
                found = Some(c_value(&v));
            }
            k.pop();
            if found.is_some() {
                self.flags &= !flags::TRY0NULL;
            }
        }
        if found.is_none() && self.flags & flags::TRY0NULL != 0 {
            if let Some(v) = self.reader.find(&k).map_err(corrupt)? {
                found = Some(c_value(&v));
            }
            if found.is_some() {
                self.flags &= !flags::TRY1NULL;
            }
        }
        Ok(found)
    }

    fn update(&mut self, _key: &str, _value: &str) -> Result<Status, DictError> {
        Err(unsupported(&format!("cdb:{}", self.path), "update"))
    }

    fn delete(&mut self, _key: &str) -> Result<Status, DictError> {
        Err(unsupported(&format!("cdb:{}", self.path), "delete"))
    }

    fn sequence(&mut self, _how: Seq) -> Result<Option<(String, String)>, DictError> {
        Err(unsupported(&format!("cdb:{}", self.path), "sequence"))
    }
}

/// A cdb table being built in `NAME.cdb.tmp`; [`Dict::close`] writes it out
/// and renames it to `NAME.cdb`. Its name is the one given (no suffix).
pub struct CdbMake {
    name: String,
    flags: u32,
    cdb_path: String,
    tmp_path: String,
    /// The locked temporary file.
    file: File,
    writer: Writer,
}

impl CdbMake {
    pub fn open(name: &str, dict_flags: u32) -> Result<CdbMake, OpenError> {
        let cdb_path = format!("{name}{SUFFIX}");
        let tmp_path = format!("{name}{TMP_SUFFIX}");
        let tmp = latin1::to_path(&tmp_path);
        // Open and lock the temporary file; start over if another builder
        // renamed or removed it meanwhile (we must lock the file that has
        // the name).
        let file = loop {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(&tmp)
                .map_err(|e| OpenError(format!("open database {tmp_path}: {}", errno_text(&e))))?;
            let before = f
                .metadata()
                .map_err(|e| OpenError(format!("fstat({tmp_path}): {}", errno_text(&e))))?;
            flock(&f, LockOp::Exclusive)
                .map_err(|e| OpenError(format!("lock {tmp_path}: {}", errno_text(&e))))?;
            match std::fs::metadata(&tmp) {
                Ok(after)
                    if after.ino() == before.ino()
                        && after.dev() == before.dev()
                        && after.nlink() == before.nlink()
                        && before.nlink() > 0 =>
                {
                    break f;
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(OpenError(format!("stat({tmp_path}): {}", errno_text(&e))));
                }
            }
        };
        let _ = file.set_len(0);
        let mut fl = dict_flags;
        if fl & (flags::TRY0NULL | flags::TRY1NULL) == 0 {
            fl |= flags::TRY0NULL;
        } else if fl & flags::TRY1NULL != 0 && fl & flags::TRY0NULL != 0 {
            fl &= !flags::TRY0NULL;
        }
        Ok(CdbMake {
            name: name.to_string(),
            flags: fl | flags::FIXED,
            cdb_path,
            tmp_path,
            file,
            writer: Writer::new(),
        })
    }
}

impl Dict for CdbMake {
    fn type_name(&self) -> &str {
        "cdb"
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn flags(&self) -> u32 {
        self.flags
    }

    fn set_flags(&mut self, f: u32) {
        self.flags = f;
    }

    fn lookup(&mut self, _key: &str) -> Result<Option<String>, DictError> {
        Err(unsupported(&format!("cdb:{}", self.name), "lookup"))
    }

    fn update(&mut self, key: &str, value: &str) -> Result<Status, DictError> {
        let mut k = c_key(key, self.flags);
        let mut v = latin1::encode(value.split('\0').next().unwrap_or(""));
        if self.flags & flags::TRY1NULL != 0 {
            k.push(0);
            v.push(0);
        }
        let mode = if self.flags & flags::DUP_IGNORE != 0 {
            PutMode::Add
        } else if self.flags & flags::DUP_REPLACE != 0 {
            PutMode::Replace
        } else {
            PutMode::Insert
        };
        let dup = self.writer.put(&k, &v, mode).map_err(|_| {
            DictError::Fatal(format!(
                "error writing {}: {}",
                self.tmp_path,
                crate::sys::strerror(libc::ENOMEM)
            ))
        })?;
        if !dup {
            return Ok(Status::Success);
        }
        if self.flags & (flags::DUP_IGNORE | flags::DUP_REPLACE) != 0 {
            return Ok(Status::Success);
        }
        // The key as folded, without the NUL we may have appended.
        let shown = c_key(key, self.flags);
        let text = format!(
            "{}: duplicate entry: \"{}\"",
            self.name,
            latin1::decode(&shown)
        );
        if self.flags & flags::DUP_WARN != 0 {
            msg::warn(&text);
            Ok(Status::Fail)
        } else {
            Err(DictError::Fatal(text))
        }
    }

    fn delete(&mut self, _key: &str) -> Result<Status, DictError> {
        Err(unsupported(&format!("cdb:{}", self.name), "delete"))
    }

    fn sequence(&mut self, _how: Seq) -> Result<Option<(String, String)>, DictError> {
        Err(unsupported(&format!("cdb:{}", self.name), "sequence"))
    }

    fn close(self: Box<Self>) -> Result<(), DictError> {
        let this = *self;
        let finish = |e: io::Error| {
            DictError::Fatal(format!(
                "finish database {}: {}",
                this.tmp_path,
                errno_text(&e)
            ))
        };
        {
            let mut out = io::BufWriter::with_capacity(1 << 16, &this.file);
            this.writer.write_to(&mut out).map_err(finish)?;
            out.flush().map_err(finish)?;
        }
        this.file.sync_all().map_err(finish)?;
        std::fs::rename(
            latin1::to_path(&this.tmp_path),
            latin1::to_path(&this.cdb_path),
        )
        .map_err(|e| {
            DictError::Fatal(format!(
                "rename database from {} to {}: {}",
                this.tmp_path,
                this.cdb_path,
                errno_text(&e)
            ))
        })?;
        // Closing the descriptor releases the lock.
        drop(this.file);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn djb_hash() {
        assert_eq!(hash(b""), 5381);
        // 5381 * 33 ^ 'a'
        assert_eq!(hash(b"a"), (5381u32 * 33) ^ 97);
        assert_eq!(hash(b"foo"), 0x0b87_37a3);
    }

    #[test]
    fn layout_matches_tinycdb() {
        // The same records as `printf 'Foo bar\nbaz  Qux value\n' | postmap
        // cdb:m1` (keys folded, no NUL): 2114 bytes, recorded from
        // Postfix 3.7.11 with tinycdb 0.78.
        let mut w = Writer::new();
        assert_eq!(w.put(b"foo", b"bar", PutMode::Insert), Ok(false));
        assert_eq!(w.put(b"baz", b"Qux value", PutMode::Insert), Ok(false));
        let img = w.finish();
        assert_eq!(img.len(), 2114);
        let tail: &[u8] = &[
            3, 0, 0, 0, 3, 0, 0, 0, b'f', b'o', b'o', b'b', b'a', b'r', 3, 0, 0, 0, 9, 0, 0, 0,
            b'b', b'a', b'z', b'Q', b'u', b'x', b' ', b'v', b'a', b'l', b'u', b'e', //
            0, 0, 0, 0, 0, 0, 0, 0, 0xa3, b'7', 0x87, 0x0b, 0, 8, 0, 0, //
            0, 0, 0, 0, 0, 0, 0, 0, 0xfc, b'G', 0x87, 0x0b, 14, 8, 0, 0,
        ];
        assert_eq!(&img[2048..], tail);
        // Table 0xa3 starts at 2082 with 2 slots; empty tables point past it.
        assert_eq!(&img[0xa3 * 8..0xa3 * 8 + 8], &[0x22, 8, 0, 0, 2, 0, 0, 0]);
        assert_eq!(&img[2040..2048], &[0x42, 8, 0, 0, 0, 0, 0, 0]);
        let r = Reader::new(img).unwrap();
        assert_eq!(r.find(b"foo"), Ok(Some(b"bar".to_vec())));
        assert_eq!(r.find(b"baz"), Ok(Some(b"Qux value".to_vec())));
        assert_eq!(r.find(b"fo"), Ok(None));
        assert_eq!(r.find(b"foo\0"), Ok(None));
    }

    #[test]
    fn duplicate_modes() {
        let mut w = Writer::new();
        assert_eq!(w.put(b"k", b"1", PutMode::Insert), Ok(false));
        assert_eq!(w.put(b"k", b"2", PutMode::Insert), Ok(true));
        assert_eq!(w.len(), 1);
        assert_eq!(w.put(b"k", b"3", PutMode::Add), Ok(false));
        assert_eq!(w.len(), 2);
        let r = Reader::new(w.finish()).unwrap();
        assert_eq!(
            r.find(b"k"),
            Ok(Some(b"1".to_vec())),
            "the first record wins"
        );
        assert_eq!(r.records().unwrap().len(), 2);
        // Replace removes every older record with the key.
        assert_eq!(w.put(b"x", b"y", PutMode::Insert), Ok(false));
        assert_eq!(w.put(b"k", b"4", PutMode::Replace), Ok(true));
        assert_eq!(w.len(), 2);
        let r = Reader::new(w.finish()).unwrap();
        assert_eq!(r.find(b"k"), Ok(Some(b"4".to_vec())));
        assert_eq!(
            r.records().unwrap(),
            vec![
                (b"x".to_vec(), b"y".to_vec()),
                (b"k".to_vec(), b"4".to_vec())
            ]
        );
    }

    #[test]
    fn many_keys_and_empty_values() {
        let mut w = Writer::new();
        for i in 0..5000u32 {
            let v = if i % 7 == 0 {
                String::new()
            } else {
                format!("v{i}")
            };
            w.put(format!("key{i}").as_bytes(), v.as_bytes(), PutMode::Insert)
                .unwrap();
        }
        let r = Reader::new(w.finish()).unwrap();
        for i in 0..5000u32 {
            let v = if i % 7 == 0 {
                String::new()
            } else {
                format!("v{i}")
            };
            assert_eq!(
                r.find(format!("key{i}").as_bytes()),
                Ok(Some(v.clone().into_bytes())),
                "key{i}"
            );
        }
        assert_eq!(r.find(b"key5000"), Ok(None));
    }

    #[test]
    fn empty_table() {
        let img = Writer::new().finish();
        assert_eq!(img.len(), 2048);
        assert!(img.chunks(8).all(|c| c == [0, 8, 0, 0, 0, 0, 0, 0]));
        let r = Reader::new(img).unwrap();
        assert_eq!(r.find(b"x"), Ok(None));
    }

    #[test]
    fn file_reader_and_a_file_that_shrinks() {
        let dir = std::env::temp_dir().join(format!("rostfix-cdbfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.cdb");
        let mut w = Writer::new();
        for i in 0..100u32 {
            w.put(
                format!("k{i}").as_bytes(),
                format!("v{i}").as_bytes(),
                PutMode::Insert,
            )
            .unwrap();
        }
        std::fs::write(&p, w.finish()).unwrap();
        let r = Reader::from_file(File::open(&p).unwrap()).unwrap();
        assert_eq!(r.find(b"k42"), Ok(Some(b"v42".to_vec())));
        assert_eq!(r.records().unwrap().len(), 100);
        // Truncated under the reader: answers or EPROTO, never a panic.
        File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(2100)
            .unwrap();
        let mut errors = 0;
        for i in 0..100u32 {
            let e = r.find(format!("k{i}").as_bytes()).unwrap_err();
            assert_eq!(e, ReadError::Corrupt);
            assert_eq!(e.text(), "Protocol error");
            errors += 1;
        }
        assert_eq!(errors, 100);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn short_file_is_corrupt() {
        assert!(Reader::new(vec![0; 2047]).is_err());
        assert!(Reader::new(Vec::new()).is_err());
    }

    /// Every truncation and many single-byte corruptions of a table give a
    /// value, not-found, or Corrupt: never a panic or a hang.
    #[test]
    fn mutations_never_panic() {
        let mut w = Writer::new();
        for i in 0..40u32 {
            w.put(
                format!("k{i}").as_bytes(),
                format!("value {i}").as_bytes(),
                PutMode::Add,
            )
            .unwrap();
        }
        let img = w.finish();
        let keys: Vec<Vec<u8>> = (0..40u32).map(|i| format!("k{i}").into_bytes()).collect();
        let probe = |bytes: Vec<u8>| {
            if let Ok(r) = Reader::new(bytes) {
                for k in &keys {
                    let _ = r.find(k);
                }
                let _ = r.find(b"missing");
                let _ = r.records();
            }
        };
        for len in 0..img.len() {
            probe(img[..len].to_vec());
        }
        let mut seed = 0x2545_f491u32;
        for _ in 0..3000 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let mut m = img.clone();
            let at = seed as usize % m.len();
            m[at] = (seed >> 8) as u8;
            // Also try a large value in a 32-bit field.
            let mut m2 = img.clone();
            let at2 = (seed as usize % (m2.len() / 4)) * 4;
            m2[at2..at2 + 4].copy_from_slice(&(seed | 0x8000_0000).to_le_bytes());
            probe(m);
            probe(m2);
        }
        // A header pointing a table past the end of the file is EPROTO.
        let mut bad = img.clone();
        let t = (hash(b"k1") % 256) as usize * 8;
        bad[t..t + 4].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
        assert_eq!(Reader::new(bad).unwrap().find(b"k1"), Err(Corrupt));
    }
}
