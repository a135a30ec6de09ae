//! TCP client sockets with fewer system calls than std's: a connect whose
//! timeout is the socket's send timeout (no O_NONBLOCK round trip and no
//! poll), and sends that never wait (MSG_DONTWAIT), so that a socket needs
//! no send timeout until a send would really block.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{FromRawFd, RawFd};
use std::time::Duration;

fn timeval(t: Duration) -> libc::timeval {
    libc::timeval {
        tv_sec: t.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_usec: t.subsec_micros() as libc::suseconds_t,
    }
}

/// Connect a TCP socket to `to`, waiting at most `timeout` (None: the
/// kernel's own limit). On Linux a blocking connect honours SO_SNDTIMEO
/// and fails with EINPROGRESS when it expires: that is reported as a
/// TimedOut error without an OS error code, as std's connect_timeout does.
/// The send timeout stays set on the returned socket.
pub fn connect_timed(to: SocketAddr, timeout: Option<Duration>) -> io::Result<TcpStream> {
    let family = match to {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket we own; the TcpStream takes ownership
    // and closes it on every path below.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    if let Some(t) = timeout.filter(|t| !t.is_zero()) {
        let tv = timeval(t);
        // SAFETY: fd is a valid socket; tv is a valid timeval of that size.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_SNDTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: sockaddr_storage is a plain C struct; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match to {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned
            // for a sockaddr_in.
            let sin = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned
            // for a sockaddr_in6.
            let sin6 = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    // SAFETY: fd is a valid socket; ss holds a valid address of `len` bytes.
    let rc = unsafe {
        libc::connect(
            fd,
            (&ss as *const libc::sockaddr_storage).cast(),
            len as libc::socklen_t,
        )
    };
    if rc == 0 {
        return Ok(stream);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINPROGRESS) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "connection timed out",
        )),
        // A signal interrupted the wait: the connection goes on in the
        // background; wait for it (bounded by the same timeout) and take
        // its outcome.
        Some(libc::EINTR) => {
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLOUT,
                revents: 0,
            };
            let ms = timeout
                .filter(|t| !t.is_zero())
                .map(|t| t.as_millis().min(i32::MAX as u128) as i32)
                .unwrap_or(-1);
            // SAFETY: p is one valid pollfd; the count is 1.
            let n = unsafe { libc::poll(&mut p, 1, ms) };
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection timed out",
                ));
            }
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            match stream.take_error()? {
                None => Ok(stream),
                Some(e) => Err(e),
            }
        }
        _ => Err(e),
    }
}

/// send(2) with MSG_DONTWAIT and MSG_NOSIGNAL: what fits in the socket's
/// buffer now, without waiting and without changing O_NONBLOCK. A full
/// buffer is Ok(0).
pub fn send_nowait(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is a valid readable buffer of the given length.
        let n = unsafe {
            libc::send(
                fd,
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(0),
                _ => return Err(e),
            }
        }
        return Ok(n as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn connect_and_send() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to = l.local_addr().unwrap();
        let s = connect_timed(to, Some(Duration::from_secs(5))).unwrap();
        let (mut peer, _) = l.accept().unwrap();
        use std::os::fd::AsRawFd;
        assert_eq!(send_nowait(s.as_raw_fd(), b"hello").unwrap(), 5);
        let mut b = [0u8; 5];
        peer.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"hello");
        drop(l);
        drop(peer);
    }

    #[test]
    fn refused() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to = l.local_addr().unwrap();
        drop(l);
        let e = connect_timed(to, Some(Duration::from_secs(5))).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED));
    }
}
