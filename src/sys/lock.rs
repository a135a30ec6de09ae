//! Whole-file advisory locks on an open descriptor: flock(2) style (Postfix's
//! INTERNAL_LOCK on Linux) and fcntl(2) style (MYFLOCK_STYLE_FCNTL).

use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// What to do with the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockOp {
    /// Release it.
    Unlock,
    /// Wait for a shared lock.
    Shared,
    /// Wait for an exclusive lock.
    Exclusive,
}

/// flock(2) the whole file, waiting; EINTR is retried.
pub fn flock(file: &impl AsRawFd, op: LockOp) -> io::Result<()> {
    let how = match op {
        LockOp::Unlock => libc::LOCK_UN,
        LockOp::Shared => libc::LOCK_SH,
        LockOp::Exclusive => libc::LOCK_EX,
    };
    loop {
        // SAFETY: flock only reads the descriptor number and the operation;
        // an invalid descriptor yields EBADF, never undefined behaviour.
        let rc = unsafe { libc::flock(file.as_raw_fd(), how) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// flock(2) without waiting: `Ok(false)` when another process holds a
/// conflicting lock (EWOULDBLOCK).
pub fn flock_try(file: &impl AsRawFd, op: LockOp) -> io::Result<bool> {
    let how = match op {
        LockOp::Unlock => libc::LOCK_UN,
        LockOp::Shared => libc::LOCK_SH,
        LockOp::Exclusive => libc::LOCK_EX,
    } | libc::LOCK_NB;
    loop {
        // SAFETY: flock only reads the descriptor number and the operation.
        let rc = unsafe { libc::flock(file.as_raw_fd(), how) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(err),
        }
    }
}

/// fcntl(2) F_SETLKW over the whole file, waiting; EINTR is retried. Note
/// that closing any descriptor of the file drops the process's fcntl locks.
pub fn fcntl_lock(fd: RawFd, op: LockOp) -> io::Result<()> {
    let kind = match op {
        LockOp::Unlock => libc::F_UNLCK,
        LockOp::Shared => libc::F_RDLCK,
        LockOp::Exclusive => libc::F_WRLCK,
    };
    // SAFETY: flock is a plain-old-data C struct; all-zero is a valid value
    // (start 0, length 0 = the whole file).
    let mut lk: libc::flock = unsafe { std::mem::zeroed() };
    lk.l_type = kind as libc::c_short;
    lk.l_whence = libc::SEEK_SET as libc::c_short;
    loop {
        // SAFETY: lk is a valid, initialised struct flock that outlives the
        // call; a bad descriptor yields EBADF.
        let rc = unsafe { libc::fcntl(fd, libc::F_SETLKW, &mut lk) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// fcntl(2) F_SETLK (exclusive, whole file) without waiting: `Ok(false)`
/// when another process holds a conflicting lock.
pub fn fcntl_try_exclusive(fd: RawFd) -> io::Result<bool> {
    // SAFETY: flock is a plain-old-data C struct; all-zero is a valid value
    // (start 0, length 0 = the whole file).
    let mut lk: libc::flock = unsafe { std::mem::zeroed() };
    lk.l_type = libc::F_WRLCK as libc::c_short;
    lk.l_whence = libc::SEEK_SET as libc::c_short;
    loop {
        // SAFETY: lk is a valid, initialised struct flock that outlives the
        // call; a bad descriptor yields EBADF.
        let rc = unsafe { libc::fcntl(fd, libc::F_SETLK, &mut lk) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EACCES) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_and_unlock() {
        let dir = std::env::temp_dir().join(format!("rostfix-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        flock(&f, LockOp::Exclusive).unwrap();
        flock(&f, LockOp::Unlock).unwrap();
        fcntl_lock(f.as_raw_fd(), LockOp::Exclusive).unwrap();
        fcntl_lock(f.as_raw_fd(), LockOp::Shared).unwrap();
        fcntl_lock(f.as_raw_fd(), LockOp::Unlock).unwrap();
        assert!(fcntl_lock(-1, LockOp::Shared).is_err());
        drop(f);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
