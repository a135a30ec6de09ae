//! A small safe wrapper around the LMDB C library (0.9.x, bundled by the
//! `lmdb-rkv-sys` crate or the system's liblmdb), shaped for Postfix's use of
//! it: one single-file environment (MDB_NOSUBDIR), no LMDB lock file
//! (MDB_NOLOCK: callers lock the file with fcntl), the unnamed main database,
//! short transactions per call or one held "bulk" write transaction.
//!
//! Error values are LMDB status codes (negative MDB_* codes or errno values);
//! [`strerror`] gives LMDB's text for them. Recovery policies (map growth,
//! retries) belong to the caller.

use lmdb_sys as ffi;
use std::ffi::{CStr, CString};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;

pub const SUCCESS: i32 = ffi::MDB_SUCCESS;
pub const KEYEXIST: i32 = ffi::MDB_KEYEXIST;
pub const NOTFOUND: i32 = ffi::MDB_NOTFOUND;
pub const MAP_FULL: i32 = ffi::MDB_MAP_FULL;
pub const MAP_RESIZED: i32 = ffi::MDB_MAP_RESIZED;
pub const READERS_FULL: i32 = ffi::MDB_READERS_FULL;

/// LMDB's text for a status code (mdb_strerror: its own codes, else strerror).
pub fn strerror(code: i32) -> String {
    // SAFETY: mdb_strerror returns a pointer to a static NUL-terminated
    // string (or strerror's buffer, which stays valid until the next
    // strerror call on this thread); we copy it at once.
    let p = unsafe { ffi::mdb_strerror(code) };
    if p.is_null() {
        return format!("Unknown error {code}");
    }
    // SAFETY: p is non-null and NUL-terminated (see above).
    let s = unsafe { CStr::from_ptr(p) };
    crate::util::latin1::decode(s.to_bytes())
}

/// The LMDB library version string.
pub fn version() -> String {
    // SAFETY: null out-pointers are allowed; the result is a static string.
    let p = unsafe { ffi::mdb_version(ptr::null_mut(), ptr::null_mut(), ptr::null_mut()) };
    if p.is_null() {
        return String::new();
    }
    // SAFETY: p is a static NUL-terminated string.
    crate::util::latin1::decode(unsafe { CStr::from_ptr(p) }.to_bytes())
}

fn val(data: &[u8]) -> ffi::MDB_val {
    ffi::MDB_val {
        mv_size: data.len(),
        mv_data: data.as_ptr() as *mut libc::c_void,
    }
}

fn empty_val() -> ffi::MDB_val {
    ffi::MDB_val {
        mv_size: 0,
        mv_data: ptr::null_mut(),
    }
}

/// Copy the bytes an MDB_val points to.
///
/// # Safety
/// `v` must describe memory that is readable for `mv_size` bytes (LMDB's
/// guarantee for values it returns, until the transaction ends).
unsafe fn copy_out(v: &ffi::MDB_val) -> Vec<u8> {
    if v.mv_size == 0 || v.mv_data.is_null() {
        return Vec::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(v.mv_data as *const u8, v.mv_size) }.to_vec()
}

/// A (key, value) pair copied out of the database.
pub type Entry = (Vec<u8>, Vec<u8>);

/// An open single-file LMDB environment and its main database.
///
/// Every operation takes `&mut self`, and no transaction outlives a call
/// except the one held by [`Env::begin`], which only this struct can reach:
/// so the memory map is never resized under a live transaction, and no
/// pointer into the map escapes (values are copied out).
pub struct Env {
    env: *mut ffi::MDB_env,
    dbi: ffi::MDB_dbi,
    /// The held write transaction, or null.
    txn: *mut ffi::MDB_txn,
    rdonly: bool,
}

// SAFETY: the environment is opened with MDB_NOLOCK, so LMDB keeps no
// thread-bound lock or reader-slot state; all access goes through `&mut
// self`, so one thread at a time uses the handle and its held transaction.
unsafe impl Send for Env {}

impl Env {
    /// Open (creating unless `rdonly`) the LMDB file at `path` with the given
    /// initial map size, and the main database.
    pub fn open(path: &Path, rdonly: bool, map_size: usize) -> Result<Env, i32> {
        let cpath = CString::new(path.as_os_str().as_bytes()).map_err(|_| libc::EINVAL)?;
        let mut env: *mut ffi::MDB_env = ptr::null_mut();
        // SAFETY: env is a valid out-pointer.
        let rc = unsafe { ffi::mdb_env_create(&mut env) };
        if rc != 0 {
            return Err(rc);
        }
        let mut flags = ffi::MDB_NOSUBDIR | ffi::MDB_NOLOCK;
        if rdonly {
            flags |= ffi::MDB_RDONLY;
        }
        let mut txn: *mut ffi::MDB_txn = ptr::null_mut();
        let mut dbi: ffi::MDB_dbi = 0;
        // SAFETY: env was created above and is not yet opened; cpath is a
        // valid NUL-terminated string that outlives the calls; the
        // out-pointers are valid. On any failure the env is closed once and
        // not used again.
        let rc = unsafe {
            let mut rc = ffi::mdb_env_set_mapsize(env, map_size);
            if rc == 0 {
                rc = ffi::mdb_env_open(env, cpath.as_ptr(), flags, 0o644);
            }
            if rc == 0 {
                let txflags = if rdonly { ffi::MDB_RDONLY } else { 0 };
                rc = ffi::mdb_txn_begin(env, ptr::null_mut(), txflags, &mut txn);
            }
            if rc == 0 {
                rc = ffi::mdb_dbi_open(txn, ptr::null(), 0, &mut dbi);
                // The main database handle stays valid after the
                // transaction ends.
                ffi::mdb_txn_abort(txn);
            }
            if rc != 0 {
                ffi::mdb_env_close(env);
            }
            rc
        };
        if rc != 0 {
            return Err(rc);
        }
        Ok(Env {
            env,
            dbi,
            txn: ptr::null_mut(),
            rdonly,
        })
    }

    /// The file descriptor LMDB uses for the database file.
    pub fn fd(&self) -> RawFd {
        let mut fd: RawFd = -1;
        // SAFETY: self.env is an open environment; fd is a valid out-pointer.
        let rc = unsafe { ffi::mdb_env_get_fd(self.env, &mut fd) };
        if rc != 0 { -1 } else { fd }
    }

    /// The current memory map size.
    pub fn map_size(&self) -> usize {
        // SAFETY: MDB_envinfo is a plain C struct; all-zero is valid.
        let mut info: ffi::MDB_envinfo = unsafe { std::mem::zeroed() };
        // SAFETY: self.env is open; info is a valid out-pointer.
        let rc = unsafe { ffi::mdb_env_info(self.env, &mut info) };
        if rc != 0 { 0 } else { info.me_mapsize }
    }

    /// Change the memory map size (0: adopt the size another process set).
    /// Refused (EINVAL) while a held transaction is open.
    pub fn set_map_size(&mut self, size: usize) -> Result<(), i32> {
        if !self.txn.is_null() {
            return Err(libc::EINVAL);
        }
        // SAFETY: self.env is open and no transaction of ours is active (the
        // held one is null and every other one ends inside its call).
        let rc = unsafe { ffi::mdb_env_set_mapsize(self.env, size) };
        if rc != 0 { Err(rc) } else { Ok(()) }
    }

    /// Whether a held transaction is open.
    pub fn in_txn(&self) -> bool {
        !self.txn.is_null()
    }

    /// Start the held write transaction; later calls use it until
    /// [`Env::commit`] or [`Env::abort`].
    pub fn begin(&mut self) -> Result<(), i32> {
        if !self.txn.is_null() || self.rdonly {
            return Err(libc::EINVAL);
        }
        let mut txn = ptr::null_mut();
        // SAFETY: self.env is open; txn is a valid out-pointer.
        let rc = unsafe { ffi::mdb_txn_begin(self.env, ptr::null_mut(), 0, &mut txn) };
        if rc != 0 {
            return Err(rc);
        }
        self.txn = txn;
        Ok(())
    }

    /// Commit the held transaction (it is gone afterwards, whatever the
    /// outcome).
    pub fn commit(&mut self) -> Result<(), i32> {
        if self.txn.is_null() {
            return Ok(());
        }
        let txn = std::mem::replace(&mut self.txn, ptr::null_mut());
        // SAFETY: txn is our live write transaction; commit frees it even on
        // failure, and we no longer hold it.
        let rc = unsafe { ffi::mdb_txn_commit(txn) };
        if rc != 0 { Err(rc) } else { Ok(()) }
    }

    /// Abandon the held transaction, if any.
    pub fn abort(&mut self) {
        if !self.txn.is_null() {
            let txn = std::mem::replace(&mut self.txn, ptr::null_mut());
            // SAFETY: txn is our live transaction; abort frees it.
            unsafe { ffi::mdb_txn_abort(txn) };
        }
    }

    /// Run `f` in the held transaction, or in a fresh one (read-only when
    /// `write` is false) that is committed after success and aborted
    /// otherwise. A failure inside the held transaction other than the
    /// `benign` codes aborts it (LMDB forbids further use).
    fn with_txn<T>(
        &mut self,
        write: bool,
        benign: &[i32],
        f: impl FnOnce(*mut ffi::MDB_txn, ffi::MDB_dbi) -> Result<T, i32>,
    ) -> Result<T, i32> {
        if !self.txn.is_null() {
            let r = f(self.txn, self.dbi);
            if let Err(code) = r
                && !benign.contains(&code)
            {
                self.abort();
            }
            return r;
        }
        if write && self.rdonly {
            return Err(libc::EACCES);
        }
        let mut txn = ptr::null_mut();
        let txflags = if write { 0 } else { ffi::MDB_RDONLY };
        // SAFETY: self.env is open; txn is a valid out-pointer.
        let rc = unsafe { ffi::mdb_txn_begin(self.env, ptr::null_mut(), txflags, &mut txn) };
        if rc != 0 {
            return Err(rc);
        }
        let r = f(txn, self.dbi);
        match r {
            Ok(v) if write => {
                // SAFETY: txn is live; commit frees it.
                let rc = unsafe { ffi::mdb_txn_commit(txn) };
                if rc != 0 { Err(rc) } else { Ok(v) }
            }
            other => {
                // SAFETY: txn is live; abort frees it.
                unsafe { ffi::mdb_txn_abort(txn) };
                other
            }
        }
    }

    /// Look up a key; the value is copied out.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, i32> {
        self.with_txn(false, &[NOTFOUND], |txn, dbi| {
            let mut k = val(key);
            let mut v = empty_val();
            // SAFETY: txn is live, dbi is the main database, k points to key
            // (alive for the call), v is a valid out-value.
            let rc = unsafe { ffi::mdb_get(txn, dbi, &mut k, &mut v) };
            match rc {
                0 => {
                    // SAFETY: LMDB returned v pointing into the map, valid
                    // until txn ends, which is after this copy.
                    Ok(Some(unsafe { copy_out(&v) }))
                }
                NOTFOUND => Ok(None),
                e => Err(e),
            }
        })
    }

    /// Store a key; with `no_overwrite`, an existing key is left alone and
    /// `Ok(false)` returned.
    pub fn put(&mut self, key: &[u8], value: &[u8], no_overwrite: bool) -> Result<bool, i32> {
        let flags = if no_overwrite {
            ffi::MDB_NOOVERWRITE
        } else {
            0
        };
        self.with_txn(true, &[KEYEXIST], |txn, dbi| {
            let mut k = val(key);
            let mut v = val(value);
            // SAFETY: txn is a live write transaction, k and v point to live
            // slices that LMDB copies before returning.
            let rc = unsafe { ffi::mdb_put(txn, dbi, &mut k, &mut v, flags) };
            match rc {
                0 => Ok(true),
                KEYEXIST => Ok(false),
                e => Err(e),
            }
        })
    }

    /// Delete a key; `Ok(false)` when it was not there.
    pub fn del(&mut self, key: &[u8]) -> Result<bool, i32> {
        self.with_txn(true, &[NOTFOUND], |txn, dbi| {
            let mut k = val(key);
            // SAFETY: txn is a live write transaction; k points to a live
            // slice; a null data pointer means "all values of the key".
            let rc = unsafe { ffi::mdb_del(txn, dbi, &mut k, ptr::null_mut()) };
            match rc {
                0 => Ok(true),
                NOTFOUND => Ok(false),
                e => Err(e),
            }
        })
    }

    /// Empty the main database (mdb_drop without deleting it).
    pub fn clear(&mut self) -> Result<(), i32> {
        self.with_txn(true, &[], |txn, dbi| {
            // SAFETY: txn is a live write transaction and dbi is open.
            let rc = unsafe { ffi::mdb_drop(txn, dbi, 0) };
            if rc != 0 { Err(rc) } else { Ok(()) }
        })
    }

    /// The first entry (`after` = None), or the entry after key `after`;
    /// `Ok(None)` at the end, or when `after` is no longer present.
    pub fn next_after(&mut self, after: Option<&[u8]>) -> Result<Option<Entry>, i32> {
        self.with_txn(false, &[NOTFOUND], |txn, dbi| {
            let mut cursor = ptr::null_mut();
            // SAFETY: txn is live, dbi open, cursor a valid out-pointer.
            let rc = unsafe { ffi::mdb_cursor_open(txn, dbi, &mut cursor) };
            if rc != 0 {
                return Err(rc);
            }
            let mut k = empty_val();
            let mut v = empty_val();
            // SAFETY: cursor is live until the close below; k and v are
            // valid MDB_vals (k points to `after`, alive for the call).
            let rc = unsafe {
                let mut rc = match after {
                    None => ffi::mdb_cursor_get(cursor, &mut k, &mut v, ffi::MDB_FIRST),
                    Some(a) => {
                        k = val(a);
                        ffi::mdb_cursor_get(cursor, &mut k, &mut v, ffi::MDB_SET)
                    }
                };
                if rc == 0 && after.is_some() {
                    rc = ffi::mdb_cursor_get(cursor, &mut k, &mut v, ffi::MDB_NEXT);
                }
                rc
            };
            let r = match rc {
                // SAFETY: k and v point into the map, valid until txn ends,
                // which is after these copies.
                0 => Ok(Some(unsafe { (copy_out(&k), copy_out(&v)) })),
                NOTFOUND => Ok(None),
                e => Err(e),
            };
            // SAFETY: cursor is live and belongs to txn; close it before txn
            // ends.
            unsafe { ffi::mdb_cursor_close(cursor) };
            r
        })
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.abort();
        // SAFETY: self.env is open and no transaction of ours remains.
        unsafe { ffi::mdb_env_close(self.env) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("rostfix-syslmdb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn put_get_del_walk() {
        let p = scratch("a.lmdb");
        let mut env = Env::open(&p, false, 1 << 20).unwrap();
        assert!(env.put(b"b", b"2", true).unwrap());
        assert!(env.put(b"a", b"1", true).unwrap());
        assert!(!env.put(b"a", b"x", true).unwrap());
        assert_eq!(env.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert!(env.put(b"a", b"3", false).unwrap());
        assert_eq!(env.get(b"a").unwrap(), Some(b"3".to_vec()));
        assert_eq!(env.get(b"zz").unwrap(), None);
        let first = env.next_after(None).unwrap().unwrap();
        assert_eq!(first, (b"a".to_vec(), b"3".to_vec()));
        let second = env.next_after(Some(b"a")).unwrap().unwrap();
        assert_eq!(second, (b"b".to_vec(), b"2".to_vec()));
        assert_eq!(env.next_after(Some(b"b")).unwrap(), None);
        assert!(env.del(b"a").unwrap());
        assert!(!env.del(b"a").unwrap());
        assert!(env.fd() >= 0);
        drop(env);
        let mut ro = Env::open(&p, true, 1 << 20).unwrap();
        assert_eq!(ro.get(b"b").unwrap(), Some(b"2".to_vec()));
        assert_eq!(ro.put(b"c", b"", true), Err(libc::EACCES));
        // No lock file next to the database (MDB_NOLOCK).
        assert!(!p.with_extension("lmdb-lock").exists());
    }

    #[test]
    fn held_txn_and_map_full() {
        let p = scratch("b.lmdb");
        let mut env = Env::open(&p, false, 64 * 1024).unwrap();
        env.begin().unwrap();
        assert_eq!(env.set_map_size(1 << 20), Err(libc::EINVAL));
        let big = vec![b'x'; 4000];
        let mut full = None;
        for i in 0..1000u32 {
            if let Err(e) = env.put(format!("k{i}").as_bytes(), &big, true) {
                full = Some(e);
                break;
            }
        }
        assert_eq!(full, Some(MAP_FULL));
        assert!(!env.in_txn(), "a failed put ends the held transaction");
        env.set_map_size(8 << 20).unwrap();
        assert_eq!(env.map_size(), 8 << 20);
        env.begin().unwrap();
        env.clear().unwrap();
        for i in 0..100u32 {
            assert!(env.put(format!("k{i}").as_bytes(), &big, true).unwrap());
        }
        env.commit().unwrap();
        assert_eq!(env.get(b"k99").unwrap().map(|v| v.len()), Some(4000));
        assert_eq!(
            strerror(MAP_FULL),
            "MDB_MAP_FULL: Environment mapsize limit reached"
        );
        assert_eq!(strerror(libc::ENOENT), "No such file or directory");
    }

    #[test]
    fn open_errors() {
        let p = scratch("missing.lmdb");
        assert_eq!(Env::open(&p, true, 1 << 20).err(), Some(libc::ENOENT));
        let junk = scratch("junk.lmdb");
        std::fs::write(&junk, vec![7u8; 8192]).unwrap();
        assert_eq!(
            Env::open(&junk, true, 1 << 20).err(),
            Some(ffi::MDB_INVALID)
        );
    }
}
