//! Doing work as another user.
//!
//! Two ways, as Postfix's local(8) and its helpers do:
//! - in-process, when the process is provably single-threaded: only the
//!   *effective* user and group IDs and the supplementary groups change
//!   (Postfix's set_eugid), the real and saved IDs stay root, and an
//!   [`EffectiveIds`] guard switches back to the original identity when the
//!   work is done, on every path (return, early return, unwinding);
//! - otherwise in a forked child that drops to the user's uid/gid for good
//!   and sends its result back over a pipe.
//!
//! When no change is needed (the caller already is that user, or runs
//! unprivileged: the non-root mode), the work runs in-process as it is.

use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, IntoRawFd};

/// Whether `run_as(uid, gid, ..)` would have to switch identities.
pub fn needs_switch(uid: u32, gid: u32) -> bool {
    // SAFETY: geteuid/getegid have no preconditions.
    let (eu, eg) = unsafe { (libc::geteuid(), libc::getegid()) };
    eu == 0 && (uid != eu || gid != eg)
}

/// The number of threads of this process (the `Threads:` line of
/// /proc/self/status), or None when it cannot be told.
pub fn thread_count() -> Option<usize> {
    let text = std::fs::read("/proc/self/status").ok()?;
    let at = text
        .windows(9)
        .position(|w| w == b"\nThreads:")
        .map(|p| p + 9)?;
    let rest = &text[at..];
    let line = &rest[..rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len())];
    std::str::from_utf8(line).ok()?.trim().parse().ok()
}

/// Whether this process provably runs one thread only.
///
/// One stat(2) of /proc/self/task: Linux reports 2 plus the number of
/// threads as its link count. The first time that says "one thread", the
/// `Threads:` line of /proc/self/status must say so too, or the link count
/// is never trusted again and every check reads /proc/self/status.
pub fn single_threaded() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering};
    // 0: not yet verified, 1: link count verified, 2: not usable.
    static NLINK_OK: AtomicU8 = AtomicU8::new(0);
    let state = NLINK_OK.load(Ordering::Relaxed);
    if state != 2 {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata("/proc/self/task") {
            Ok(m) if m.nlink() == 3 => {
                if state == 1 {
                    return true;
                }
                let verified = thread_count() == Some(1);
                NLINK_OK.store(if verified { 1 } else { 2 }, Ordering::Relaxed);
                return verified;
            }
            Ok(m) if m.nlink() > 3 && state == 1 => return false,
            _ => {}
        }
    }
    thread_count() == Some(1)
}

/// The effective identity of this process switched to a user (effective
/// uid and gid, and that gid as the only supplementary group); dropping it
/// switches back to the identity it replaced. The real and saved user IDs
/// are not touched, so the switch can be undone, and the process is not
/// open to the user's signals or ptrace (the kernel clears the dumpable
/// flag when the effective ID changes).
#[must_use = "the identity is switched back when the guard is dropped"]
pub struct EffectiveIds {
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
    // Not Send: the identity belongs to this (the only) thread.
    _not_send: std::marker::PhantomData<*const ()>,
}

fn getgroups() -> io::Result<Vec<libc::gid_t>> {
    let mut small = [0 as libc::gid_t; 32];
    // SAFETY: small has room for small.len() entries, the size passed.
    let n = unsafe { libc::getgroups(small.len() as libc::c_int, small.as_mut_ptr()) };
    if n >= 0 {
        return Ok(small[..n as usize].to_vec());
    }
    // SAFETY: with size 0 getgroups only returns the count.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut v = vec![0 as libc::gid_t; n as usize];
    // SAFETY: v has room for n entries, the size passed.
    let m = unsafe { libc::getgroups(n, v.as_mut_ptr()) };
    if m < 0 {
        return Err(io::Error::last_os_error());
    }
    v.truncate(m as usize);
    Ok(v)
}

fn last_err() -> io::Error {
    io::Error::last_os_error()
}

/// From root: groups, effective gid, effective uid (last: it gives up
/// the right to change the others).
fn set_from_root(uid: libc::uid_t, gid: libc::gid_t, groups: &[libc::gid_t]) -> io::Result<()> {
    // SAFETY: groups is a live slice of groups.len() gids; setgroups only
    // changes this process's supplementary groups.
    if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } != 0 {
        return Err(last_err());
    }
    // SAFETY: setegid only changes this process's effective group ID.
    if unsafe { libc::setegid(gid) } != 0 {
        return Err(last_err());
    }
    // SAFETY: seteuid only changes this process's effective user ID.
    if uid != 0 && unsafe { libc::seteuid(uid) } != 0 {
        return Err(last_err());
    }
    Ok(())
}

impl EffectiveIds {
    /// Switch the effective identity to `uid`/`gid`. Refused unless the
    /// process runs as root (effective uid 0) and is single-threaded. On
    /// error nothing is left changed.
    pub fn switch(uid: u32, gid: u32) -> io::Result<EffectiveIds> {
        if !single_threaded() {
            return Err(io::Error::other("process is not single-threaded"));
        }
        // SAFETY: geteuid/getegid have no preconditions.
        let (eu, eg) = unsafe { (libc::geteuid(), libc::getegid()) };
        Self::switch_from(eu, eg, uid, gid)
    }

    /// [`EffectiveIds::switch`] once the caller has checked that the
    /// process is single-threaded and read its effective ids.
    fn switch_from(eu: u32, eg: u32, uid: u32, gid: u32) -> io::Result<EffectiveIds> {
        if eu != 0 {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        let saved = EffectiveIds {
            uid: eu,
            gid: eg,
            groups: getgroups()?,
            _not_send: std::marker::PhantomData,
        };
        if let Err(e) = set_from_root(uid, gid, &[gid]) {
            // Dropping `saved` restores whatever was changed.
            drop(saved);
            return Err(e);
        }
        Ok(saved)
    }

    fn restore(&self) -> io::Result<()> {
        // Root first (the saved user ID is root: seteuid may go back).
        // SAFETY: seteuid only changes this process's effective user ID.
        if unsafe { libc::seteuid(0) } != 0 {
            return Err(last_err());
        }
        set_from_root(self.uid, self.gid, &self.groups)
    }
}

impl Drop for EffectiveIds {
    fn drop(&mut self) {
        if let Err(e) = self.restore() {
            // Going on with another user's identity is not an option (root
            // can always get its identity back: this does not happen).
            eprintln!(
                "fatal: restore effective uid/gid {}/{}: {e}",
                self.uid, self.gid
            );
            std::process::abort();
        }
    }
}

/// Run `work` as `uid`/`gid` (with `gid` as the only group) and return its
/// bytes: in-process under an [`EffectiveIds`] switch when the process is
/// single-threaded, else in a forked child (which the fork refuses when
/// the process is multi-threaded).
pub fn run_as(uid: u32, gid: u32, work: impl FnOnce() -> Vec<u8>) -> io::Result<Vec<u8>> {
    // SAFETY: geteuid/getegid have no preconditions.
    let (eu, eg) = unsafe { (libc::geteuid(), libc::getegid()) };
    if eu != 0 || (uid == eu && gid == eg) {
        return Ok(work());
    }
    if single_threaded() {
        let ids = EffectiveIds::switch_from(eu, eg, uid, gid)
            .map_err(|_| io::Error::other(format!("cannot switch to uid/gid {uid}/{gid}")))?;
        let out = work();
        drop(ids);
        return Ok(out);
    }
    run_as_child(uid, gid, work)
}

/// [`run_as`] in a forked child, always (for work whose effects must not
/// reach this process).
pub fn run_as_child(uid: u32, gid: u32, work: impl FnOnce() -> Vec<u8>) -> io::Result<Vec<u8>> {
    if !needs_switch(uid, gid) {
        return Ok(work());
    }
    let (rd, wr) = super::process::pipe()?;
    match super::process::fork()? {
        super::process::Fork::Child => {
            drop(rd);
            let groups = [gid as libc::gid_t];
            // SAFETY: only this (single-threaded, forked) child's
            // credentials change; the groups array outlives the call.
            let ok = unsafe {
                libc::setgroups(1, groups.as_ptr()) == 0
                    && libc::setgid(gid) == 0
                    && libc::setuid(uid) == 0
            };
            let out = if ok { work() } else { Vec::new() };
            // SAFETY: wr is an owned descriptor moved into the File.
            let mut f = unsafe { std::fs::File::from_raw_fd(wr.into_raw_fd()) };
            let _ = f.write_all(&out);
            drop(f);
            // SAFETY: _exit ends the child without running the parent's
            // atexit handlers or flushing its inherited buffers.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        super::process::Fork::Parent(pid) => {
            drop(wr);
            let mut f = std::fs::File::from(rd);
            let mut out = Vec::new();
            let _ = f.read_to_end(&mut out);
            let mut status: libc::c_int = 0;
            loop {
                // SAFETY: status is a valid out-pointer; pid is our child.
                let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
                if rc >= 0 {
                    break;
                }
                if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                    break;
                }
            }
            if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                return Err(io::Error::other(format!(
                    "cannot switch to uid/gid {uid}/{gid}"
                )));
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn inline_when_no_switch() {
        // SAFETY: no preconditions.
        let (u, g) = unsafe { (libc::geteuid(), libc::getegid()) };
        assert!(!super::needs_switch(u, g));
        assert_eq!(super::run_as(u, g, || b"ok".to_vec()).unwrap(), b"ok");
    }

    #[test]
    fn threads_counted() {
        // The test harness runs tests in threads of their own.
        let n = super::thread_count().expect("Threads: in /proc/self/status");
        assert!(n >= 2, "{n}");
        assert!(!super::single_threaded());
    }

    #[test]
    fn switch_refused_when_threaded_or_unprivileged() {
        let before = super::super::ids::geteuid();
        assert!(super::EffectiveIds::switch(65534, 65534).is_err());
        assert_eq!(super::super::ids::geteuid(), before);
    }
}
