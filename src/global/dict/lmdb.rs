//! `lmdb:` tables: OpenLDAP LMDB files (`NAME.lmdb`), as Postfix's
//! dict_lmdb/slmdb (Debian's postfix-lmdb with liblmdb 0.9.24) uses them.
//!
//! - One file, no lock file: the environment is opened with MDB_NOSUBDIR and
//!   MDB_NOLOCK, and processes coordinate with fcntl locks on the database
//!   file: a shared lock around each query or walk step and an exclusive one
//!   around each update when DICT_FLAG_LOCK is set. A bulk build
//!   (BULK_UPDATE, postmap) takes the exclusive lock once at open, so that no
//!   reader still uses old pages, and keeps a shared lock until it closes.
//! - Building (OpenMode::Create) empties the database in place and, in bulk
//!   mode, does everything in one transaction committed at close: readers
//!   see the old table or the new one, never a mix.
//! - Keys and values are stored with a trailing NUL by default on Linux
//!   (TRY1NULL; `-n` gives TRY0NULL); queries try both and stick to the one
//!   that hits.
//! - The memory map starts at `lmdb_map_size` (set with [`set_map_size`];
//!   16 MB by default), at least the file size plus 10 KB, and doubles when
//!   the map is full. A bulk transaction that ran out of room is replayed
//!   from its journal in a bigger map (Postfix re-reads its source instead).
//!   A reader whose map is smaller than a writer made it adopts the new size.

use super::{Dict, DictError, OpenError, OpenMode, Seq, Status, flags};
use crate::global::mail_conf::ConfError;
use crate::global::msg;
use crate::sys::lmdb::{self as mdb, Env};
use crate::sys::lock::{LockOp, fcntl_lock};
use crate::util::latin1;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The file name suffix.
pub const SUFFIX: &str = ".lmdb";

/// Postfix's default `lmdb_map_size`.
pub const DEFAULT_MAP_SIZE: usize = 16 * 1024 * 1024;

static MAP_SIZE: AtomicUsize = AtomicUsize::new(DEFAULT_MAP_SIZE);

/// Set the initial map size for tables opened from now on (main.cf
/// `lmdb_map_size`; Postfix's dict_lmdb_map_size).
pub fn set_map_size(bytes: usize) {
    MAP_SIZE.store(bytes, Ordering::Relaxed);
}

/// Read `lmdb_map_size` from main.cf (at least 1, as Postfix checks it) and
/// use it for tables opened from now on.
pub fn configure(conf: &crate::global::mail_conf::MailConf) -> Result<(), ConfError> {
    let n = conf.get_long("lmdb_map_size", 1, 0)?;
    set_map_size(usize::try_from(n).unwrap_or(usize::MAX));
    Ok(())
}

/// The initial map size for new opens.
pub fn map_size() -> usize {
    MAP_SIZE.load(Ordering::Relaxed)
}

/// The map grows by this factor when full.
const SIZE_INCR: usize = 2;
/// ... up to this size.
const SIZE_MAX: usize = isize::MAX as usize;
/// Room for the initial drop transaction and metadata.
const FUDGE: usize = 10240;
/// Recoveries per call (Postfix: one retry).
const API_RETRY_LIMIT: u32 = 2;
/// Recoveries per bulk transaction.
const BULK_RETRY_LIMIT: u32 = 2 * usize::BITS;

/// The operations of a bulk transaction, kept to replay it in a bigger map.
#[derive(Default)]
struct Journal {
    /// Entries: op (b'p' put, b'r' put-replace, b'd' delete), key length,
    /// value length (u32 native), key, value.
    bytes: Vec<u8>,
}

impl Journal {
    fn push(&mut self, op: u8, key: &[u8], value: &[u8]) {
        self.bytes.push(op);
        self.bytes
            .extend_from_slice(&(key.len() as u32).to_ne_bytes());
        self.bytes
            .extend_from_slice(&(value.len() as u32).to_ne_bytes());
        self.bytes.extend_from_slice(key);
        self.bytes.extend_from_slice(value);
    }

    fn entries(&self) -> impl Iterator<Item = (u8, &[u8], &[u8])> {
        let b = &self.bytes;
        let mut at = 0usize;
        std::iter::from_fn(move || {
            if at >= b.len() {
                return None;
            }
            let op = b[at];
            let kl = u32::from_ne_bytes([b[at + 1], b[at + 2], b[at + 3], b[at + 4]]) as usize;
            let vl = u32::from_ne_bytes([b[at + 5], b[at + 6], b[at + 7], b[at + 8]]) as usize;
            let k = &b[at + 9..at + 9 + kl];
            let v = &b[at + 9 + kl..at + 9 + kl + vl];
            at += 9 + kl + vl;
            Some((op, k, v))
        })
    }
}

/// An open LMDB table.
pub struct LmdbDict {
    name: String,
    path: String,
    flags: u32,
    env: Env,
    curr_limit: usize,
    hard_limit: usize,
    /// Empty the database when (re)starting the build transaction.
    truncate: bool,
    /// Bulk mode: the journal of the held transaction.
    bulk: Option<Journal>,
    bulk_retries: u32,
    /// The last key a walk returned.
    saved_key: Option<Vec<u8>>,
}

fn c_key(key: &str, dict_flags: u32) -> Vec<u8> {
    let k = key.split('\0').next().unwrap_or("");
    if dict_flags & flags::FOLD_FIX != 0 {
        latin1::encode(&super::fold_key(k))
    } else {
        latin1::encode(k)
    }
}

fn c_string(v: &[u8]) -> String {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    latin1::decode(&v[..end])
}

/// Open an LMDB table.
pub fn open(name: &str, mode: OpenMode, dict_flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    Ok(Box::new(LmdbDict::open(name, mode, dict_flags)?))
}

impl LmdbDict {
    /// Open with the initial map size from [`set_map_size`].
    pub fn open(name: &str, mode: OpenMode, dict_flags: u32) -> Result<LmdbDict, OpenError> {
        Self::open_sized(name, mode, dict_flags, map_size())
    }

    /// Open with this initial map size.
    pub fn open_sized(
        name: &str,
        mode: OpenMode,
        dict_flags: u32,
        initial_map_size: usize,
    ) -> Result<LmdbDict, OpenError> {
        let path = format!("{name}{SUFFIX}");
        let fpath = latin1::to_path(&path);
        let open_err =
            |code: i32| OpenError(format!("open database {path}: {}", mdb::strerror(code)));
        let mut curr = initial_map_size.max(FUDGE);
        let mut hard = SIZE_MAX;
        if let Ok(st) = std::fs::metadata(&fpath) {
            let size = st.len() as usize;
            if size > curr - FUDGE {
                if size > hard {
                    hard = size;
                }
                curr = if size < hard - FUDGE {
                    size + FUDGE
                } else {
                    hard
                };
            }
        }
        let rdonly = mode == OpenMode::ReadOnly;
        let mut env = Env::open(&fpath, rdonly, curr).map_err(open_err)?;
        let bulk = dict_flags & flags::BULK_UPDATE != 0 && !rdonly;
        let truncate = mode == OpenMode::Create;
        if bulk {
            env.begin().map_err(open_err)?;
        }
        if truncate {
            env.clear().map_err(open_err)?;
        }
        if bulk {
            // Momentarily exclusive: no reader uses pages we may reuse; then
            // shared until close, to keep other writers out.
            let fd = env.fd();
            let lock_err =
                |e: std::io::Error| OpenError(format!("{path}: lock dictionary: {}", io_text(&e)));
            fcntl_lock(fd, LockOp::Exclusive).map_err(lock_err)?;
            fcntl_lock(fd, LockOp::Shared)
                .map_err(|e| OpenError(format!("{path}: unlock dictionary: {}", io_text(&e))))?;
        }
        if dict_flags & flags::LOCK != 0
            && let (Ok(src), Ok(db)) = (
                std::fs::metadata(latin1::to_path(name)),
                std::fs::metadata(&fpath),
            )
        {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            if src.mtime() > db.mtime() && src.mtime() < now - 100 {
                msg::warn(&format!("database {path} is older than source file {name}"));
            }
        }
        let mut fl = dict_flags | flags::FIXED | flags::MULTI_WRITER;
        if dict_flags & (flags::TRY0NULL | flags::TRY1NULL) == 0 {
            fl |= flags::TRY0NULL | flags::TRY1NULL;
        }
        let d = LmdbDict {
            name: name.to_string(),
            path,
            flags: fl,
            env,
            curr_limit: curr,
            hard_limit: hard,
            truncate,
            bulk: bulk.then(Journal::default),
            bulk_retries: 0,
            saved_key: None,
        };
        if msg::verbose() > 0 {
            d.notify(&format!("using size limit {} during open", d.curr_limit));
        }
        Ok(d)
    }

    fn notify(&self, text: &str) {
        msg::info(&format!("database lmdb:{}: {text}", self.name));
    }

    /// Try to clear an LMDB error (slmdb's recovery): grow a full map, adopt
    /// a map another process grew. True when the operation may be retried.
    fn clear_error(&mut self, code: i32) -> bool {
        match code {
            mdb::MAP_FULL => {
                if self.curr_limit < self.hard_limit / SIZE_INCR {
                    self.curr_limit *= SIZE_INCR;
                } else if self.curr_limit < self.hard_limit {
                    self.curr_limit = self.hard_limit;
                } else {
                    return false;
                }
                if msg::verbose() > 0 {
                    self.notify(&format!(
                        "using size limit {} after MDB_MAP_FULL",
                        self.curr_limit
                    ));
                }
                self.env.set_map_size(self.curr_limit).is_ok()
            }
            mdb::MAP_RESIZED => {
                if self.env.set_map_size(0).is_err() {
                    return false;
                }
                self.curr_limit = self.env.map_size();
                if msg::verbose() > 0 {
                    self.notify(&format!(
                        "using size limit {} after MDB_MAP_RESIZED",
                        self.curr_limit
                    ));
                }
                true
            }
            mdb::READERS_FULL => {
                if msg::verbose() > 0 {
                    self.notify("pausing after MDB_READERS_FULL");
                }
                std::thread::sleep(std::time::Duration::from_secs(1));
                true
            }
            _ => false,
        }
    }

    /// Start the bulk transaction over (after it failed and the error was
    /// cleared) and replay what it had done.
    fn restart_bulk(&mut self) -> Result<(), i32> {
        self.env.abort();
        self.env.begin()?;
        if self.truncate {
            self.env.clear()?;
        }
        let journal = self.bulk.take().unwrap_or_default();
        let mut result = Ok(());
        for (op, k, v) in journal.entries() {
            let r = match op {
                b'p' => self.env.put(k, v, true).map(|_| ()),
                b'r' => self.env.put(k, v, false).map(|_| ()),
                _ => self.env.del(k).map(|_| ()),
            };
            if let Err(e) = r {
                result = Err(e);
                break;
            }
        }
        self.bulk = Some(journal);
        result
    }

    /// Run an operation with slmdb's error recovery.
    fn run<T>(&mut self, op: impl Fn(&mut Env) -> Result<T, i32>) -> Result<T, i32> {
        let mut api_retries = 0;
        let mut pending: Option<i32> = None;
        loop {
            let code = match pending.take() {
                Some(code) => code,
                None => match op(&mut self.env) {
                    Ok(v) => return Ok(v),
                    Err(code) => code,
                },
            };
            if self.bulk.is_some() {
                self.bulk_retries += 1;
                if self.bulk_retries > BULK_RETRY_LIMIT || !self.clear_error(code) {
                    return Err(code);
                }
                if let Err(again) = self.restart_bulk() {
                    pending = Some(again);
                }
            } else {
                api_retries += 1;
                if api_retries >= API_RETRY_LIMIT || !self.clear_error(code) {
                    return Err(code);
                }
            }
        }
    }

    fn lock(&self, op: LockOp) -> Result<(), DictError> {
        if self.flags & flags::LOCK == 0 {
            return Ok(());
        }
        fcntl_lock(self.env.fd(), op).map_err(|e| {
            let what = if op == LockOp::Unlock {
                "unlock"
            } else {
                "lock"
            };
            DictError::Fatal(format!("{}: {what} dictionary: {}", self.name, io_text(&e)))
        })
    }

    /// Run `f` under the lock (when DICT_FLAG_LOCK), releasing it after.
    fn locked<T>(
        &mut self,
        op: LockOp,
        f: impl FnOnce(&mut Self) -> Result<T, DictError>,
    ) -> Result<T, DictError> {
        self.lock(op)?;
        let r = f(self);
        let u = self.lock(LockOp::Unlock);
        let v = r?;
        u?;
        Ok(v)
    }

    fn fail(&self, what: &str, code: i32) -> DictError {
        DictError::Fatal(format!(
            "error {what} lmdb:{}: {}",
            self.name,
            mdb::strerror(code)
        ))
    }
}

fn io_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(c) => crate::sys::strerror(c),
        None => e.to_string(),
    }
}

impl Dict for LmdbDict {
    fn type_name(&self) -> &str {
        "lmdb"
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

    fn lookup(&mut self, key: &str) -> Result<Option<String>, DictError> {
        let mut k = c_key(key, self.flags);
        self.locked(LockOp::Shared, |d| {
            if d.flags & flags::TRY1NULL != 0 {
                k.push(0);
                let r = d.run(|env| env.get(&k));
                k.pop();
                match r {
                    Ok(Some(v)) => {
                        d.flags &= !flags::TRY0NULL;
                        return Ok(Some(c_string(&v)));
                    }
                    Ok(None) => {}
                    Err(code) => return Err(d.fail("reading", code)),
                }
            }
            if d.flags & flags::TRY0NULL != 0 {
                match d.run(|env| env.get(&k)) {
                    Ok(Some(v)) => {
                        d.flags &= !flags::TRY1NULL;
                        return Ok(Some(c_string(&v)));
                    }
                    Ok(None) => {}
                    Err(code) => return Err(d.fail("reading", code)),
                }
            }
            Ok(None)
        })
    }

    fn update(&mut self, key: &str, value: &str) -> Result<Status, DictError> {
        let mut k = c_key(key, self.flags);
        let mut v = latin1::encode(value.split('\0').next().unwrap_or(""));
        if self.flags & flags::TRY1NULL != 0 && self.flags & flags::TRY0NULL != 0 {
            // Linux: Postfix's default is to append a NUL.
            self.flags &= !flags::TRY0NULL;
        }
        if self.flags & flags::TRY1NULL != 0 {
            k.push(0);
            v.push(0);
        }
        let replace = self.flags & flags::DUP_REPLACE != 0;
        let stored = self.locked(LockOp::Exclusive, |d| {
            d.run(|env| env.put(&k, &v, !replace))
                .map_err(|code| d.fail("updating", code))
        })?;
        if stored {
            if let Some(j) = self.bulk.as_mut() {
                j.push(if replace { b'r' } else { b'p' }, &k, &v);
            }
            return Ok(Status::Success);
        }
        if self.flags & flags::DUP_IGNORE != 0 {
            return Ok(Status::Fail);
        }
        let text = format!(
            "lmdb:{}: duplicate entry: \"{}\"",
            self.name,
            latin1::decode(&c_key(key, self.flags))
        );
        if self.flags & flags::DUP_WARN != 0 {
            msg::warn(&text);
            Ok(Status::Fail)
        } else {
            Err(DictError::Fatal(text))
        }
    }

    fn delete(&mut self, key: &str) -> Result<Status, DictError> {
        let mut k = c_key(key, self.flags);
        let found = self.locked(LockOp::Exclusive, |d| {
            if d.flags & flags::TRY1NULL != 0 {
                k.push(0);
                let found = d
                    .run(|env| env.del(&k))
                    .map_err(|code| d.fail("deleting from", code))?;
                if found {
                    d.flags &= !flags::TRY0NULL;
                    return Ok(true);
                }
                k.pop();
            }
            if d.flags & flags::TRY0NULL != 0 {
                let found = d
                    .run(|env| env.del(&k))
                    .map_err(|code| d.fail("deleting from", code))?;
                if found {
                    d.flags &= !flags::TRY1NULL;
                    return Ok(true);
                }
            }
            Ok(false)
        })?;
        if found {
            if let Some(j) = self.bulk.as_mut() {
                j.push(b'd', &k, b"");
            }
            Ok(Status::Success)
        } else {
            Ok(Status::Fail)
        }
    }

    fn sequence(&mut self, how: Seq) -> Result<Option<(String, String)>, DictError> {
        if self.bulk.is_some() {
            return Err(DictError::Fatal(format!(
                "lmdb:{}: internal error: slmdb_cursor_get: bulk transaction is not supported",
                self.name
            )));
        }
        if how == Seq::First {
            self.saved_key = None;
        }
        let after = self.saved_key.take();
        self.locked(LockOp::Shared, |d| {
            match d.run(|env| env.next_after(after.as_deref())) {
                Ok(Some((k, v))) => {
                    let item = (c_string(&k), c_string(&v));
                    d.saved_key = Some(k);
                    Ok(Some(item))
                }
                Ok(None) => Ok(None),
                Err(code) => Err(d.fail("seeking", code)),
            }
        })
    }

    fn close(self: Box<Self>) -> Result<(), DictError> {
        let mut this = *self;
        if this.bulk.is_some() {
            let close_err = |path: &str, code: i32| {
                DictError::Fatal(format!("close database {path}: {}", mdb::strerror(code)))
            };
            // An update that failed for good ended the transaction; start
            // it over from the journal.
            if !this.env.in_txn() {
                this.restart_bulk()
                    .map_err(|code| close_err(&this.path, code))?;
            }
            // A failed commit ends the transaction too; recovery replays it.
            this.run(|env| env.commit())
                .map_err(|code| close_err(&this.path, code))?;
        }
        // Dropping the environment closes the file and releases the locks.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> (std::path::PathBuf, String) {
        let dir =
            std::env::temp_dir().join(format!("rostfix-dictlmdb-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let name = dir.join("t").to_str().unwrap().to_string();
        (dir, name)
    }

    /// A reader whose map is smaller than a writer made the file adopts the
    /// new size (MDB_MAP_RESIZED) and keeps answering.
    #[test]
    fn reader_follows_a_grown_map() {
        let (dir, name) = scratch("resize");
        let fl = flags::DUP_WARN | flags::FOLD_FIX;
        let mut w = LmdbDict::open_sized(&name, OpenMode::Create, fl, 64 * 1024).unwrap();
        assert_eq!(w.update("Small", "1").unwrap(), Status::Success);
        let mut r = LmdbDict::open_sized(&name, OpenMode::ReadOnly, fl, 64 * 1024).unwrap();
        assert_eq!(r.lookup("SMALL").unwrap().as_deref(), Some("1"));
        // Each update may double the writer's map once: grow step by step.
        let big = "b".repeat(30_000);
        for i in 0..40 {
            let k = format!("big{i}");
            assert_eq!(w.update(&k, &big).unwrap(), Status::Success, "{k}");
        }
        assert!(w.curr_limit >= 1 << 20);
        assert!(std::fs::metadata(format!("{name}.lmdb")).unwrap().len() > 1 << 20);
        assert_eq!(r.lookup("big39").unwrap().map(|v| v.len()), Some(30_000));
        assert!(r.curr_limit >= 1 << 20, "{}", r.curr_limit);
        // One doubling is all a single update gets, as in Postfix.
        let huge = "h".repeat(8 * w.curr_limit);
        assert_eq!(
            w.update("huge", &huge).unwrap_err().to_string(),
            format!("error updating lmdb:{name}: MDB_MAP_FULL: Environment mapsize limit reached")
        );
        // Duplicates: refused with DUP_WARN, replaced with DUP_REPLACE,
        // an error without either.
        assert_eq!(w.update("small", "2").unwrap(), Status::Fail);
        w.set_flags(w.flags() & !flags::DUP_WARN);
        assert_eq!(
            w.update("small", "2").unwrap_err().to_string(),
            format!("lmdb:{name}: duplicate entry: \"small\"")
        );
        w.set_flags(w.flags() | flags::DUP_REPLACE);
        assert_eq!(w.update("small", "3").unwrap(), Status::Success);
        assert_eq!(r.lookup("small").unwrap().as_deref(), Some("3"));
        // Stored with a trailing NUL, so only the NUL form is tried now.
        assert_eq!(
            r.flags() & (flags::TRY0NULL | flags::TRY1NULL),
            flags::TRY1NULL
        );
        // A read-only table refuses updates with LMDB's answer.
        assert_eq!(
            r.update("x", "y").unwrap_err().to_string(),
            format!("error updating lmdb:{name}: Permission denied")
        );
        drop(r);
        drop(w);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn map_size_from_main_cf() {
        use crate::global::mail_conf::MailConf;
        configure(&MailConf::from_text(
            "/etc/postfix",
            "lmdb_map_size = 33554432\n",
        ))
        .unwrap();
        assert_eq!(map_size(), 32 << 20);
        let bad = configure(&MailConf::from_text("/etc/postfix", "lmdb_map_size = 0\n"));
        assert!(bad.is_err());
        configure(&MailConf::from_text("/etc/postfix", "")).unwrap();
        assert_eq!(map_size(), DEFAULT_MAP_SIZE);
    }

    /// A walk inside a bulk build is refused with Postfix's words.
    #[test]
    fn no_walk_during_bulk_build() {
        let (dir, name) = scratch("bulkseq");
        let mut w = LmdbDict::open(
            &name,
            OpenMode::Create,
            flags::DUP_WARN | flags::BULK_UPDATE,
        )
        .unwrap();
        assert_eq!(w.update("a", "1").unwrap(), Status::Success);
        assert_eq!(
            w.sequence(Seq::First).unwrap_err().to_string(),
            format!(
                "lmdb:{name}: internal error: slmdb_cursor_get: bulk transaction is not supported"
            )
        );
        assert_eq!(w.lookup("a").unwrap().as_deref(), Some("1"));
        Box::new(w).close().unwrap();
        let mut r = LmdbDict::open(&name, OpenMode::ReadOnly, 0).unwrap();
        assert_eq!(
            r.sequence(Seq::First).unwrap(),
            Some(("a".to_string(), "1".to_string()))
        );
        assert_eq!(r.sequence(Seq::Next).unwrap(), None);
        drop(r);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
