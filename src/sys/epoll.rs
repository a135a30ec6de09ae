//! A small, safe wrapper around epoll(7), level-triggered, for readability
//! only: master registers each descriptor once (and removes it before it
//! closes it) instead of handing the whole set to poll(2) on every wakeup.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An epoll instance (close-on-exec).
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

/// A reusable buffer of ready events.
pub struct Events {
    buf: Vec<libc::epoll_event>,
    len: usize,
}

impl Events {
    /// Room for up to `n` events per wait (at least one).
    pub fn with_capacity(n: usize) -> Events {
        Events {
            buf: vec![libc::epoll_event { events: 0, u64: 0 }; n.max(1)],
            len: 0,
        }
    }

    /// The tokens of the descriptors the last wait found readable (or hung
    /// up, or in error).
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        // The field is copied out of the (packed) struct, never borrowed.
        self.buf[..self.len].iter().map(|e| e.u64)
    }

    /// How many events the last wait returned.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the last wait returned no event (timeout or EINTR).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

impl Epoll {
    /// epoll_create1(EPOLL_CLOEXEC).
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 has no memory arguments; it returns a fresh
        // descriptor or -1.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll { fd })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: ev is a valid epoll_event for the duration of the call
        // (the kernel copies it; EPOLL_CTL_DEL ignores it); an invalid fd
        // yields EBADF.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) }).map(|_| ())
    }

    /// Watch `fd` for readability; events on it carry `token`.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token)
    }

    /// Change the token of a watched `fd`.
    pub fn modify(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token)
    }

    /// Stop watching `fd`. Do this before closing a descriptor: a copy
    /// held elsewhere (a child between fork and exec) would keep the
    /// registration alive under a number this process may reuse.
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0)
    }

    /// Wait up to `timeout_ms` (-1: forever) for events; EINTR counts as
    /// none.
    pub fn wait(&self, events: &mut Events, timeout_ms: i32) -> io::Result<usize> {
        events.len = 0;
        // SAFETY: the buffer holds buf.len() initialised epoll_event
        // entries, and the kernel writes at most that many.
        let rc = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                events.buf.as_mut_ptr(),
                events.buf.len() as libc::c_int,
                timeout_ms,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e);
        }
        events.len = rc as usize;
        Ok(events.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_tokens_and_removal() {
        let ep = Epoll::new().unwrap();
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (c, d) = std::os::unix::net::UnixStream::pair().unwrap();
        ep.add(a.as_raw_fd(), 7).unwrap();
        ep.add(c.as_raw_fd(), 9).unwrap();
        let mut ev = Events::with_capacity(4);
        assert_eq!(ep.wait(&mut ev, 0).unwrap(), 0);
        assert!(ev.is_empty());
        use std::io::Write;
        (&b).write_all(b"x").unwrap();
        assert_eq!(ep.wait(&mut ev, 1000).unwrap(), 1);
        assert_eq!(ev.iter().collect::<Vec<_>>(), [7]);
        // Level-triggered: still ready until read.
        assert_eq!(ep.wait(&mut ev, 0).unwrap(), 1);
        (&d).write_all(b"y").unwrap();
        ep.modify(c.as_raw_fd(), 11).unwrap();
        assert_eq!(ep.wait(&mut ev, 1000).unwrap(), 2);
        let mut t: Vec<u64> = ev.iter().collect();
        t.sort();
        assert_eq!(t, [7, 11]);
        ep.delete(a.as_raw_fd()).unwrap();
        assert_eq!(ep.wait(&mut ev, 0).unwrap(), 1);
        assert_eq!(ev.iter().collect::<Vec<_>>(), [11]);
        assert!(ep.delete(a.as_raw_fd()).is_err());
        // Hang-up is reported as an event too.
        drop(d);
        ep.delete(c.as_raw_fd()).unwrap();
        ep.add(c.as_raw_fd(), 3).unwrap();
        assert_eq!(ep.wait(&mut ev, 1000).unwrap(), 1);
        assert_eq!(ev.iter().collect::<Vec<_>>(), [3]);
    }
}
