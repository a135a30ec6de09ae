//! `hash:` and `btree:` tables: Berkeley DB files `NAME.db`, as Postfix
//! 3.7's `util/dict_db.c` (and `global/mkmap_db.c`) use them, read and
//! written by our own code in [`super::db`] (no libdb).
//!
//! Postfix semantics kept here:
//! - The table's name (`Dict::name`) is the file name with `.db`, as in
//!   Postfix, so messages read `NAME.db: duplicate entry: "key"`.
//! - NUL terminators: without TRY0NULL/TRY1NULL in the flags both are set.
//!   The first update picks "with NUL" (Linux does not define
//!   DB_NO_TRAILING_NULL), so keys and values are stored with a trailing NUL;
//!   `-N`/`-n` set one flag. Lookups and deletes try with NUL first, then
//!   without, and the first form that matches is kept for the table.
//! - Values and walked keys stop at their first NUL, as Postfix copies them.
//! - FOLD_FIX lower-cases keys on lookup, update and delete.
//! - Duplicates: DUP_REPLACE replaces, DUP_IGNORE keeps the first silently,
//!   DUP_WARN keeps the first with a warning; otherwise the update fails with
//!   Postfix's text (which Postfix makes fatal).
//! - A zero-length `NAME.db` found when building or updating is removed with
//!   Postfix's warning; a `NAME.db` of the other kind cannot be opened or
//!   updated ("Invalid argument"), as with libdb, but a build replaces it.
//!
//! Differences, by design:
//! - `OpenMode::Create` and `OpenMode::ReadWrite` hold the table in memory
//!   and write a complete new file aside (`NAME.db.PID.tmp`), fsync it and
//!   rename it over `NAME.db` at close (or after every change with
//!   SYNC_UPDATE). Readers never see a half-built table, a failed build
//!   leaves the old one in place, and Postfix daemons notice the new file
//!   (its old inode loses its last link). The new file keeps the old one's
//!   permissions and, where allowed, owner; a symbolic link's target is
//!   replaced, not the link. Postfix instead truncates and rewrites `NAME.db`
//!   in place under an exclusive lock, which we also do when the directory
//!   is not writable but the file is.
//! - Locks are flock(2) on `NAME.db` as Postfix's INTERNAL_LOCK on Linux:
//!   shared around each lookup with DICT_FLAG_LOCK; exclusive while building
//!   or updating (held from open to close, or only while loading and
//!   writing when DICT_FLAG_LOCK asks for per-access locking).

use super::db::memtable::{Insert, MemTable};
use super::db::{self, Cursor, DbError, Kind, Reader, meta};
use super::{Dict, DictError, OpenError, OpenMode, Seq, Status, flags};
use crate::global::msg;
use crate::util::latin1;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

/// Open `hash:NAME`.
pub fn hash_open(name: &str, mode: OpenMode, flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    DictDb::open(Kind::Hash, name, mode, flags).map(|d| Box::new(d) as Box<dyn Dict>)
}

/// Open `btree:NAME`.
pub fn btree_open(name: &str, mode: OpenMode, flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    DictDb::open(Kind::Btree, name, mode, flags).map(|d| Box::new(d) as Box<dyn Dict>)
}

/// One open `hash:` or `btree:` table.
pub struct DictDb {
    kind: Kind,
    /// `NAME.db`, Postfix's dict name.
    name: String,
    flags: u32,
    body: Body,
}

enum Body {
    Read {
        reader: Box<Reader>,
        cursor: Option<Cursor>,
    },
    Write(Box<Writable>),
}

/// A table being built or updated: all of it in memory.
struct Writable {
    mode: OpenMode,
    map: MemTable,
    dirty: bool,
    /// Whether NAME.db existed (non-empty) when opened.
    existed: bool,
    /// Exclusive lock on NAME.db held for the session.
    lock: Option<File>,
    /// Hold the lock for the whole session (no per-access DICT_FLAG_LOCK).
    hold_lock: bool,
    /// The file to replace: NAME.db, or what it links to.
    target: PathBuf,
    tmp_path: PathBuf,
    tmp: Option<File>,
    /// NAME.db itself, when the new table must be written in place.
    in_place: Option<File>,
    /// Permissions and owner to give the new file.
    perm: Option<(u32, u32, u32)>,
    /// A walk: keys in walk order, next position.
    walk: Option<(Vec<Vec<u8>>, usize)>,
}

/// The bytes of a value or walked key: up to the first NUL, as Postfix's
/// copy does.
fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    to_text(&b[..end])
}

/// Bytes as one-char-per-byte text, without the per-char loop for ASCII.
fn to_text(b: &[u8]) -> String {
    if b.is_ascii() {
        String::from_utf8(b.to_vec()).unwrap_or_else(|_| latin1::decode(b))
    } else {
        latin1::decode(b)
    }
}

/// One-char-per-byte text as bytes, without the per-char loop for ASCII.
fn to_bytes(s: &str) -> Vec<u8> {
    if s.is_ascii() {
        s.as_bytes().to_vec()
    } else {
        latin1::encode(s)
    }
}

fn strerror(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => crate::sys::strerror(code),
        None => e.to_string(),
    }
}

/// Open NAME.db for writing and take an exclusive lock, making sure the lock
/// is on the file the name refers to now (a writer may rename a new file in
/// while we wait). `None` when there is no such file.
fn lock_existing(path: &PathBuf) -> std::io::Result<Option<File>> {
    loop {
        let f = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        f.lock()?;
        let held = f.metadata()?;
        match fs::metadata(path) {
            Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => return Ok(Some(f)),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
}

impl DictDb {
    fn open(kind: Kind, name: &str, mode: OpenMode, dict_flags: u32) -> Result<DictDb, OpenError> {
        let db_name = format!("{name}.db");
        let path = latin1::to_path(&db_name);
        let open_err = |text: String| OpenError(format!("open database {db_name}: {text}"));
        let einval = || open_err(crate::sys::strerror(libc::EINVAL));
        let mut fl = dict_flags | flags::FIXED;
        if fl & (flags::TRY0NULL | flags::TRY1NULL) == 0 {
            fl |= flags::TRY0NULL | flags::TRY1NULL;
        }
        let body = match mode {
            OpenMode::ReadOnly => {
                let file = File::open(&path).map_err(|e| open_err(strerror(&e)))?;
                let lock = fl & flags::LOCK != 0;
                if lock {
                    file.lock_shared().unwrap_or_else(|e| {
                        msg::fatal(&format!(
                            "shared-lock database {db_name} for open: {}",
                            strerror(&e)
                        ))
                    });
                }
                let st = file.metadata().map_err(|e| open_err(strerror(&e)))?;
                let reader = Reader::open_file(file, kind).map_err(|e| match e {
                    DbError::Io(e) => open_err(strerror(&e)),
                    DbError::Format(_) => einval(),
                });
                if lock
                    && let Ok(r) = &reader
                    && let Some(f) = r.file()
                {
                    let _ = f.unlock();
                }
                let reader = reader?;
                // Postfix's warning about a stale table, ignoring sources
                // that changed only moments ago.
                if lock && let Ok(src) = fs::metadata(latin1::to_path(name)) {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs() as i64)
                        .unwrap_or(0);
                    if src.mtime() > st.mtime() && src.mtime() < now - 100 {
                        msg::warn(&format!(
                            "database {db_name} is older than source file {name}"
                        ));
                    }
                }
                Body::Read {
                    reader: Box::new(reader),
                    cursor: None,
                }
            }
            OpenMode::Create | OpenMode::ReadWrite => {
                // Through a symbolic link, replace the file it names.
                let target = match fs::symlink_metadata(&path) {
                    Ok(m) if m.file_type().is_symlink() => {
                        fs::canonicalize(&path).unwrap_or_else(|_| path.clone())
                    }
                    _ => path.clone(),
                };
                let mut lock = lock_existing(&target).map_err(|e| open_err(strerror(&e)))?;
                let mut existed = false;
                let mut perm = None;
                let mut map = MemTable::new();
                if let Some(f) = &lock {
                    let st = f.metadata().map_err(|e| open_err(strerror(&e)))?;
                    if st.len() == 0 {
                        fs::remove_file(&target).map_err(|e| {
                            OpenError(format!(
                                "cannot remove zero-length database file {db_name}: {}",
                                strerror(&e)
                            ))
                        })?;
                        msg::warn(&format!("removing zero-length database file: {db_name}"));
                        lock = None;
                    } else {
                        existed = true;
                        perm = Some((st.mode() & 0o7777, st.uid(), st.gid()));
                        let rf = f.try_clone().map_err(|e| open_err(strerror(&e)))?;
                        if mode == OpenMode::Create {
                            // A build replaces whatever was there, even a
                            // table of the other type (as postmap does).
                            drop(rf);
                        } else {
                            let reader = Reader::open_file(rf, kind).map_err(|e| match e {
                                DbError::Io(e) => open_err(strerror(&e)),
                                DbError::Format(_) => einval(),
                            })?;
                            let all = reader.read_all().map_err(|e| match e {
                                DbError::Io(e) => open_err(strerror(&e)),
                                DbError::Format(_) => einval(),
                            })?;
                            for (k, v) in all {
                                map.insert(&k, &v, false);
                            }
                        }
                    }
                }
                let mut tmp_path = target.clone().into_os_string();
                tmp_path.push(format!(".{}.tmp", std::process::id()));
                let tmp_path = PathBuf::from(tmp_path);
                // Where the directory is closed to us but the file is not,
                // rewrite the file in place as Postfix does.
                let (tmp, in_place) = match create_tmp(&tmp_path, perm) {
                    Ok(t) => (Some(t), None),
                    Err(e)
                        if e.kind() == std::io::ErrorKind::PermissionDenied && lock.is_some() =>
                    {
                        let f = lock.as_ref().and_then(|f| f.try_clone().ok());
                        (None, f)
                    }
                    Err(e) => return Err(open_err(strerror(&e))),
                };
                let hold_lock = fl & flags::LOCK == 0;
                if !hold_lock && let Some(f) = lock.take() {
                    let _ = f.unlock();
                }
                Body::Write(Box::new(Writable {
                    mode,
                    map,
                    dirty: false,
                    existed,
                    lock,
                    hold_lock,
                    target,
                    tmp_path,
                    tmp,
                    in_place,
                    perm,
                    walk: None,
                }))
            }
        };
        Ok(DictDb {
            kind,
            name: db_name,
            flags: fl,
            body,
        })
    }

    fn type_str(&self) -> &'static str {
        match self.kind {
            Kind::Hash => "hash",
            Kind::Btree => "btree",
        }
    }

    /// The key as stored: folded when FOLD_FIX is set.
    fn folded(&self, key: &str) -> Vec<u8> {
        let mut k = to_bytes(key);
        if self.flags & flags::FOLD_FIX != 0 {
            k.make_ascii_lowercase();
        }
        k
    }

    /// Get exact bytes, from the file or from memory.
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, DbError> {
        match &mut self.body {
            Body::Read { reader, .. } => reader.get(key),
            Body::Write(w) => Ok(w.map.get(key).map(|v| v.to_vec())),
        }
    }

    fn read_error(&self, e: DbError) -> DictError {
        DictError::Fatal(format!("error reading {}: {}", self.name, e.errno_text()))
    }

    /// Write the table aside and rename it into place (or, failing a
    /// writable directory, rewrite NAME.db in place under the lock).
    fn commit(&mut self) -> Result<(), DictError> {
        let kind = self.kind;
        let name = self.name.clone();
        let Body::Write(w) = &mut self.body else {
            return Ok(());
        };
        let flush_err = |e: std::io::Error| {
            DictError::Fatal(format!("flush database {name}: {}", strerror(&e)))
        };
        let target = w.target.clone();
        // Without a session lock, wait for other writers of NAME.db.
        let transient = if w.hold_lock {
            None
        } else {
            lock_existing(&target).map_err(flush_err)?
        };
        if let Some(f) = &w.in_place {
            use std::io::{Seek, SeekFrom};
            let st = f.metadata().map_err(flush_err)?;
            let uid = meta::file_id(st.ino(), st.dev());
            f.set_len(0).map_err(flush_err)?;
            (&*f).seek(SeekFrom::Start(0)).map_err(flush_err)?;
            let mut pairs = w.map.pairs();
            let mut out = BufWriter::with_capacity(1 << 20, f);
            db::write(&mut out, kind, &mut pairs, &uid).map_err(flush_err)?;
            out.flush().map_err(flush_err)?;
            drop(out);
            f.sync_all().map_err(flush_err)?;
            drop(transient);
            w.dirty = false;
            w.existed = true;
            return Ok(());
        }
        let tmp = match w.tmp.take() {
            Some(t) => t,
            None => create_tmp(&w.tmp_path, w.perm).map_err(flush_err)?,
        };
        let written = (|| {
            let st = tmp.metadata()?;
            let uid = meta::file_id(st.ino(), st.dev());
            let mut pairs = w.map.pairs();
            let mut out = BufWriter::with_capacity(1 << 20, &tmp);
            db::write(&mut out, kind, &mut pairs, &uid)?;
            out.flush()?;
            drop(out);
            tmp.sync_all()?;
            fs::rename(&w.tmp_path, &target)
        })();
        if let Err(e) = written {
            // The old table stays; the half-written one goes (the caller
            // usually ends the program, so no destructor would do it).
            drop(tmp);
            let _ = fs::remove_file(&w.tmp_path);
            return Err(flush_err(e));
        }
        drop(transient);
        if w.hold_lock && w.lock.is_some() {
            // Keep the lock on the file that is now NAME.db.
            w.lock = lock_existing(&target).map_err(flush_err)?;
        }
        w.dirty = false;
        w.existed = true;
        Ok(())
    }

    fn changed(&mut self) -> Result<(), DictError> {
        if let Body::Write(w) = &mut self.body {
            w.dirty = true;
        }
        if self.flags & flags::SYNC_UPDATE != 0 {
            self.commit()?;
        }
        Ok(())
    }
}

/// Create the file a new table is written to, next to NAME.db.
fn create_tmp(tmp_path: &PathBuf, perm: Option<(u32, u32, u32)>) -> std::io::Result<File> {
    let _ = fs::remove_file(tmp_path);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(tmp_path)?;
    if let Some((mode, uid, gid)) = perm {
        let _ = std::os::unix::fs::fchown(&f, Some(uid), Some(gid));
        let _ = f.set_permissions(fs::Permissions::from_mode(mode));
    }
    Ok(f)
}

impl Drop for DictDb {
    fn drop(&mut self) {
        if let Body::Write(w) = &mut self.body
            && w.tmp.is_some()
        {
            w.tmp = None;
            let _ = fs::remove_file(&w.tmp_path);
        }
    }
}

impl Dict for DictDb {
    fn type_name(&self) -> &str {
        self.type_str()
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn flags(&self) -> u32 {
        self.flags
    }

    fn set_flags(&mut self, flags: u32) {
        self.flags = flags;
    }

    fn lookup(&mut self, key: &str) -> Result<Option<String>, DictError> {
        let mut k = self.folded(key);
        let lock = match &self.body {
            Body::Read { reader, .. } if self.flags & flags::LOCK != 0 => reader.file(),
            _ => None,
        };
        if let Some(f) = lock {
            f.lock_shared().map_err(|e| {
                DictError::Fatal(format!("{}: lock dictionary: {}", self.name, strerror(&e)))
            })?;
        }
        let mut result = None;
        let mut err = None;
        if self.flags & flags::TRY1NULL != 0 {
            k.push(0);
            match self.get(&k) {
                Ok(Some(v)) => {
                    self.flags &= !flags::TRY0NULL;
                    result = Some(v);
                }
                Ok(None) => {}
                Err(e) => err = Some(e),
            }
            k.pop();
        }
        if result.is_none() && err.is_none() && self.flags & flags::TRY0NULL != 0 {
            match self.get(&k) {
                Ok(Some(v)) => {
                    self.flags &= !flags::TRY1NULL;
                    result = Some(v);
                }
                Ok(None) => {}
                Err(e) => err = Some(e),
            }
        }
        if let Body::Read { reader, .. } = &self.body
            && self.flags & flags::LOCK != 0
            && let Some(f) = reader.file()
        {
            let _ = f.unlock();
        }
        if let Some(e) = err {
            return Err(self.read_error(e));
        }
        Ok(result.map(|v| c_string(&v)))
    }

    fn update(&mut self, key: &str, value: &str) -> Result<Status, DictError> {
        let mut k = self.folded(key);
        let mut v = to_bytes(value);
        if self.flags & flags::TRY1NULL != 0 && self.flags & flags::TRY0NULL != 0 {
            self.flags &= !flags::TRY0NULL;
        }
        let klen = k.len();
        if self.flags & flags::TRY1NULL != 0 {
            k.push(0);
            v.push(0);
        }
        let fl = self.flags;
        let name = &self.name;
        let Body::Write(w) = &mut self.body else {
            return Err(DictError::Fatal(format!(
                "error writing {name}: {}",
                crate::sys::strerror(libc::EACCES)
            )));
        };
        match w.map.insert(&k, &v, fl & flags::DUP_REPLACE != 0) {
            Insert::Added | Insert::Replaced => {}
            Insert::Kept => {
                if fl & flags::DUP_IGNORE != 0 {
                    return Ok(Status::Fail);
                } else if fl & flags::DUP_WARN != 0 {
                    let shown = to_text(&k[..klen]);
                    msg::warn(&format!("{name}: duplicate entry: \"{shown}\""));
                    return Ok(Status::Fail);
                } else {
                    let shown = to_text(&k[..klen]);
                    return Err(DictError::Fatal(format!(
                        "{name}: duplicate entry: \"{shown}\""
                    )));
                }
            }
        }
        self.changed()?;
        Ok(Status::Success)
    }

    fn delete(&mut self, key: &str) -> Result<Status, DictError> {
        let mut k = self.folded(key);
        let fl = self.flags;
        let name = self.name.clone();
        let Body::Write(w) = &mut self.body else {
            return Err(DictError::Fatal(format!(
                "error deleting from {name}: {}",
                crate::sys::strerror(libc::EACCES)
            )));
        };
        let mut found = false;
        if fl & flags::TRY1NULL != 0 {
            k.push(0);
            if w.map.remove(&k) {
                found = true;
                self.flags &= !flags::TRY0NULL;
            }
            k.pop();
        }
        if !found && fl & flags::TRY0NULL != 0 && w.map.remove(&k) {
            found = true;
            self.flags &= !flags::TRY1NULL;
        }
        if !found {
            return Ok(Status::Fail);
        }
        self.changed()?;
        Ok(Status::Success)
    }

    fn sequence(&mut self, how: Seq) -> Result<Option<(String, String)>, DictError> {
        let kind = self.kind;
        let name = self.name.clone();
        let seek_err =
            |e: DbError| DictError::Fatal(format!("error seeking {name}: {}", e.errno_text()));
        match &mut self.body {
            Body::Read { reader, cursor } => {
                if how == Seq::First || cursor.is_none() {
                    *cursor = Some(reader.cursor());
                }
                let c = cursor.as_mut().expect("cursor set above");
                let lock = self.flags & flags::LOCK != 0;
                if lock && let Some(f) = reader.file() {
                    f.lock_shared().map_err(|e| {
                        DictError::Fatal(format!("{name}: lock dictionary: {}", strerror(&e)))
                    })?;
                }
                let r = reader.next(c);
                if lock && let Some(f) = reader.file() {
                    let _ = f.unlock();
                }
                Ok(r.map_err(seek_err)?
                    .map(|(k, v)| (c_string(&k), c_string(&v))))
            }
            Body::Write(w) => {
                if how == Seq::First || w.walk.is_none() {
                    let pairs = w.map.pairs();
                    let order = db::walk_order(kind, &pairs);
                    let keys = order
                        .iter()
                        .map(|&i| pairs[i as usize].0.to_vec())
                        .collect();
                    w.walk = Some((keys, 0));
                }
                let (keys, pos) = w.walk.as_mut().expect("walk set above");
                while *pos < keys.len() {
                    let k = &keys[*pos];
                    *pos += 1;
                    if let Some(v) = w.map.get(k) {
                        return Ok(Some((c_string(k), c_string(v))));
                    }
                }
                Ok(None)
            }
        }
    }

    fn close(mut self: Box<Self>) -> Result<(), DictError> {
        if let Body::Write(w) = &self.body
            && (w.dirty || w.mode == OpenMode::Create || !w.existed)
        {
            self.commit()?;
        }
        Ok(())
    }
}
