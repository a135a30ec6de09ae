//! Client connections for the network tables (`socketmap:`, `tcp:`), with
//! the warnings Postfix's inet_connect/unix_connect callers print.

use crate::global::msg;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// errno EADDRNOTAVAIL's text: what Postfix reports after a failed name
/// lookup (it sets errno to EADDRNOTAVAIL for the caller's `%m`).
fn addr_not_avail() -> String {
    crate::sys::strerror(libc::EADDRNOTAVAIL)
}

/// Parse `host:port`, `[host]:port`, `:port` or `port` with Postfix's
/// host_port() rules (default host `localhost`). `Err` is Postfix's text.
pub fn host_port(addr: &str) -> Result<(String, String), &'static str> {
    let (host, port, host_is_default): (String, String, bool);
    if let Some(rest) = addr.strip_prefix('[') {
        let (rest, ipv6) = match rest.get(..5) {
            Some(p) if p.eq_ignore_ascii_case("ipv6:") => (&rest[5..], true),
            _ => (rest, false),
        };
        let Some(close) = rest.find(']') else {
            return Err("missing \"]\"");
        };
        let after = &rest[close + 1..];
        let p = match after.strip_prefix(':') {
            Some(p) => p,
            None if after.is_empty() => "",
            None => return Err("garbage after \"]\""),
        };
        if ipv6 && rest[..close].parse::<std::net::Ipv6Addr>().is_err() {
            return Err("malformed IPv6 address");
        }
        host = rest[..close].to_string();
        if p.is_empty() {
            return Err("missing service information");
        }
        port = p.to_string();
        host_is_default = false;
    } else if let Some(i) = addr.rfind(':') {
        let (h, p) = (&addr[..i], &addr[i + 1..]);
        host_is_default = h.is_empty();
        host = if h.is_empty() {
            "localhost".into()
        } else {
            h.into()
        };
        if p.is_empty() {
            return Err("missing service information");
        }
        port = p.to_string();
    } else {
        host = "localhost".into();
        host_is_default = true;
        if addr.is_empty() {
            return Err("missing service information");
        }
        port = addr.to_string();
    }
    if !host_is_default && !valid_hostname(&host) && !crate::sys::resolve::is_numeric(&host) {
        return Err("valid hostname or network address required");
    }
    if port.starts_with(|c: char| c.is_ascii_digit()) && !port.chars().all(|c| c.is_ascii_digit()) {
        return Err("garbage after numerical service");
    }
    Ok((host, port))
}

/// A syntactically valid host name (letters, digits, `-`, `_`, dots between
/// non-empty labels of at most 63 characters, 255 in all).
pub fn valid_hostname(name: &str) -> bool {
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    let labels: Vec<&str> = name.strip_suffix('.').unwrap_or(name).split('.').collect();
    for l in &labels {
        if l.is_empty() || l.len() > 63 || l.starts_with('-') || l.ends_with('-') {
            return false;
        }
        if !l
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return false;
        }
    }
    // A name that is all digits and dots is a malformed address, not a name.
    !name.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// A connected stream of either kind.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Set the read and write time limits.
    pub fn set_timeout(&self, t: Duration) {
        let t = Some(t);
        match self {
            Stream::Tcp(s) => {
                let _ = s.set_read_timeout(t);
                let _ = s.set_write_timeout(t);
            }
            Stream::Unix(s) => {
                let _ = s.set_read_timeout(t);
                let _ = s.set_write_timeout(t);
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

/// The `%m` text Postfix shows after a successful timed TCP connect: its
/// non-blocking connect leaves errno at EINPROGRESS, and a later EOF does
/// not change errno.
pub fn in_progress() -> String {
    crate::sys::strerror(libc::EINPROGRESS)
}

/// A stream that remembers the errno of its last failed read or write (a
/// read time limit counts as ETIMEDOUT, as in Postfix's timed reads).
pub struct Tracked<S> {
    pub inner: S,
    pub last_errno: Option<String>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S) -> Self {
        Tracked {
            inner,
            last_errno: None,
        }
    }
    fn note<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r
            && e.kind() != io::ErrorKind::Interrupted
        {
            self.last_errno = Some(errno_text(e));
        }
        r
    }
}

impl<S: Read> Read for Tracked<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf);
        self.note(r)
    }
}

impl<S: Write> Write for Tracked<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.inner.write(buf);
        self.note(r)
    }
    fn flush(&mut self) -> io::Result<()> {
        let r = self.inner.flush();
        self.note(r)
    }
}

/// The `%m` text for an I/O error (EAGAIN from a socket time limit is
/// reported as ETIMEDOUT).
pub fn errno_text(e: &io::Error) -> String {
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        return crate::sys::strerror(libc::ETIMEDOUT);
    }
    match e.raw_os_error() {
        Some(code) => crate::sys::strerror(code),
        None => e.to_string(),
    }
}

/// Connect to `host:port` with a time limit (zero: none), as Postfix's
/// inet_connect.
/// A name that does not resolve is warned about here. `Err` is the `%m`
/// text for the caller's own warning.
pub fn inet_connect(addr: &str, timeout: Duration) -> Result<TcpStream, String> {
    let (host, port) = match host_port(addr) {
        Ok(hp) => hp,
        Err(e) => msg::fatal(&format!("{addr}: {e}")),
    };
    let addrs = match crate::sys::resolve::resolve_stream(&host, &port) {
        Ok(a) => a,
        Err(gai) => {
            msg::warn(&format!("host or service {addr} not found: {gai}"));
            return Err(addr_not_avail());
        }
    };
    let mut last = addr_not_avail();
    for sa in addrs {
        // A zero time limit means a blocking connect, as in Postfix.
        let r = if timeout.is_zero() {
            TcpStream::connect(sa)
        } else {
            TcpStream::connect_timeout(&sa, timeout)
        };
        match r {
            Ok(s) => return Ok(s),
            Err(e) => last = errno_text(&e),
        }
    }
    Err(last)
}

/// Connect to a UNIX-domain socket. `Err` is the `%m` text.
pub fn unix_connect(path: &str) -> Result<UnixStream, String> {
    UnixStream::connect(crate::util::latin1::to_path(path)).map_err(|e| errno_text(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_rules() {
        assert_eq!(
            host_port("127.0.0.1:9"),
            Ok(("127.0.0.1".into(), "9".into()))
        );
        assert_eq!(host_port("foo"), Ok(("localhost".into(), "foo".into())));
        assert_eq!(host_port(":smtp"), Ok(("localhost".into(), "smtp".into())));
        assert_eq!(host_port("[::1]:25"), Ok(("::1".into(), "25".into())));
        assert_eq!(host_port("[ipv6:::1]:25"), Ok(("::1".into(), "25".into())));
        assert_eq!(
            host_port("127.0.0.1"),
            Err("garbage after numerical service")
        );
        assert_eq!(host_port("[x"), Err("missing \"]\""));
        assert_eq!(host_port("[x]y"), Err("garbage after \"]\""));
        assert_eq!(host_port("[ipv6:zz]:1"), Err("malformed IPv6 address"));
        assert_eq!(
            host_port("a b:1"),
            Err("valid hostname or network address required")
        );
        assert_eq!(host_port("h:"), Err("missing service information"));
    }
}
