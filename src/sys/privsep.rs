//! Doing work as another user without changing the identity of the
//! calling process: the work runs in a forked child that drops to the
//! user's uid/gid for good, and sends its result back over a pipe.
//!
//! When no change is needed (the caller already is that user, or runs
//! unprivileged: the non-root mode), the work runs in-process.

use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, IntoRawFd};

/// Whether `run_as(uid, gid, ..)` would have to switch identities.
pub fn needs_switch(uid: u32, gid: u32) -> bool {
    // SAFETY: geteuid/getegid have no preconditions.
    let (eu, eg) = unsafe { (libc::geteuid(), libc::getegid()) };
    eu == 0 && (uid != eu || gid != eg)
}

/// Run `work` as `uid`/`gid` (with `gid` as the only group) and return its
/// bytes. The process must be single-threaded when a switch is needed
/// (the fork is refused otherwise).
pub fn run_as(uid: u32, gid: u32, work: impl FnOnce() -> Vec<u8>) -> io::Result<Vec<u8>> {
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
}
