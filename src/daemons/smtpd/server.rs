//! The I/O layer around [`Session`]: a read with smtpd_timeout, writes,
//! pauses, and log output. One connection per call; no protocol knowledge.

use super::check::Checker;
use super::proto::{Config, Peer, Session};
use super::sink::Sink;
use super::state::{Event, PeerCode};
use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Where log lines go.
pub trait Logger {
    fn log(&mut self, text: &str);
}

/// The mail log of master-run daemons (syslog or maillog_file), under
/// smtpd's own tag.
pub struct MaillogLogger {
    tag: String,
}

impl MaillogLogger {
    pub fn new(conf: &crate::global::mail_conf::MailConf) -> MaillogLogger {
        MaillogLogger {
            tag: crate::global::maillog::mail_task(Some(conf), "smtpd"),
        }
    }

    /// The same with the tag worked out already (once per process).
    pub fn with_tag(tag: String) -> MaillogLogger {
        MaillogLogger { tag }
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }
}

impl Logger for MaillogLogger {
    fn log(&mut self, text: &str) {
        // set_tag does nothing when the tag is already ours (cleanup's
        // lines in between change it).
        crate::global::maillog::set_tag(&self.tag);
        match text.strip_prefix("warning: ") {
            Some(w) => crate::global::maillog::log("warning", w),
            None => crate::global::maillog::log("info", text),
        }
    }
}

/// A UNIX-domain connection (a `unix` service in master.cf).
pub struct UnixConn<'a>(pub &'a mut std::os::unix::net::UnixStream);

impl Conn for UnixConn<'_> {
    fn read_timeout(&mut self, buf: &mut [u8], t: Duration) -> std::io::Result<Option<usize>> {
        self.0
            .set_read_timeout(Some(t.max(Duration::from_millis(1))))?;
        match self.0.read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
    fn write_all_timeout(&mut self, data: &[u8], t: Duration) -> std::io::Result<()> {
        self.0
            .set_write_timeout(Some(t.max(Duration::from_millis(1))))?;
        self.0.write_all(data)
    }
    fn pending(&mut self) -> Vec<u8> {
        Vec::new()
    }
}

/// A connection: read with a timeout, write everything.
pub trait Conn {
    /// Ok(None) is a timeout, Ok(Some(0)) end of input.
    fn read_timeout(&mut self, buf: &mut [u8], t: Duration) -> std::io::Result<Option<usize>>;
    fn write_all_timeout(&mut self, data: &[u8], t: Duration) -> std::io::Result<()>;
    /// What the client sent already, without waiting.
    fn pending(&mut self) -> Vec<u8>;
}

impl Conn for TcpStream {
    fn read_timeout(&mut self, buf: &mut [u8], t: Duration) -> std::io::Result<Option<usize>> {
        self.set_read_timeout(Some(t.max(Duration::from_millis(1))))?;
        match self.read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(Some(0)),
            Err(e) => Err(e),
        }
    }
    fn write_all_timeout(&mut self, data: &[u8], t: Duration) -> std::io::Result<()> {
        self.set_write_timeout(Some(t.max(Duration::from_millis(1))))?;
        self.write_all(data)?;
        self.flush()
    }
    fn pending(&mut self) -> Vec<u8> {
        // One non-blocking recv (MSG_DONTWAIT) instead of toggling the
        // descriptor's O_NONBLOCK around a read.
        // Usually nothing is there: a small buffer to zero, and more
        // reads (up to 4096 bytes in all) only when it fills.
        const MAX: usize = 4096;
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        while out.len() < MAX {
            let want = buf.len().min(MAX - out.len());
            match crate::sys::net::recv_nowait(self.as_raw_fd(), &mut buf[..want]) {
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    if n < want {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        out
    }
}

/// A TCP connection that sets its socket timeouts only when they change
/// (one setsockopt per session instead of one per read and write).
pub struct TimedTcp<'a> {
    pub s: &'a mut TcpStream,
    read: Option<Duration>,
    write: Option<Duration>,
}

impl<'a> TimedTcp<'a> {
    pub fn new(s: &'a mut TcpStream) -> TimedTcp<'a> {
        TimedTcp {
            s,
            read: None,
            write: None,
        }
    }
}

impl Conn for TimedTcp<'_> {
    fn read_timeout(&mut self, buf: &mut [u8], t: Duration) -> std::io::Result<Option<usize>> {
        let t = t.max(Duration::from_millis(1));
        if self.read != Some(t) {
            self.s.set_read_timeout(Some(t))?;
            self.read = Some(t);
        }
        match self.s.read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(Some(0)),
            Err(e) => Err(e),
        }
    }
    fn write_all_timeout(&mut self, data: &[u8], t: Duration) -> std::io::Result<()> {
        let t = t.max(Duration::from_millis(1));
        if self.write != Some(t) {
            self.s.set_write_timeout(Some(t))?;
            self.write = Some(t);
        }
        self.s.write_all(data)
    }
    fn pending(&mut self) -> Vec<u8> {
        self.s.pending()
    }
}

/// stdin/stdout (`smtpd -S`, `sendmail -bs`).
pub struct StdioConn;

impl Conn for StdioConn {
    fn read_timeout(&mut self, buf: &mut [u8], t: Duration) -> std::io::Result<Option<usize>> {
        let fd = std::io::stdin().as_raw_fd();
        if !crate::sys::net::wait_readable(fd, t)? {
            return Ok(None);
        }
        // Read straight from fd 0: Stdin's own buffer would hide data
        // from the next poll.
        crate::sys::net::read_fd(fd, buf).map(Some)
    }
    fn write_all_timeout(&mut self, data: &[u8], _t: Duration) -> std::io::Result<()> {
        let mut o = std::io::stdout().lock();
        o.write_all(data)?;
        o.flush()
    }
    fn pending(&mut self) -> Vec<u8> {
        Vec::new()
    }
}

/// Serve one session to its end.
pub fn serve(
    cfg: &mut Config,
    ck: &mut Checker,
    sink: &mut dyn Sink,
    peer: Peer,
    conn: &mut dyn Conn,
    log: &mut dyn Logger,
) {
    let timeout = cfg.timeout;
    let mut s = Session::new(cfg, ck, sink, peer);
    // The read buffer outlives the session: a fresh zeroed 64 KB per
    // connection was a measurable memset.
    let mut buf = READ_BUF.with(|b| std::mem::take(&mut *b.borrow_mut()));
    buf.resize(READ_BUF_SIZE, 0);
    let mut out: Vec<u8> = Vec::new();
    serve_loop(&mut s, &mut buf, &mut out, conn, log, timeout);
    READ_BUF.with(|b| *b.borrow_mut() = buf);
}

const READ_BUF_SIZE: usize = 65536;

thread_local! {
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn serve_loop(
    s: &mut Session,
    buf: &mut [u8],
    out: &mut Vec<u8>,
    conn: &mut dyn Conn,
    log: &mut dyn Logger,
    timeout: Duration,
) {
    let first = conn.pending();
    let mut ev = s.start(&first);
    loop {
        let mut close = false;
        for e in ev.drain(..) {
            match e {
                Event::Reply(b) => out.extend_from_slice(&b),
                Event::Log(t) => log.log(&t),
                Event::Sleep(d) => {
                    if !out.is_empty() && conn.write_all_timeout(out, timeout).is_err() {
                        close = true;
                    }
                    out.clear();
                    std::thread::sleep(d);
                }
                Event::Close => close = true,
            }
        }
        if !out.is_empty() {
            let r = conn.write_all_timeout(out, timeout);
            out.clear();
            if r.is_err() && !close {
                ev = s.eof();
                continue;
            }
        }
        if close || s.closed() {
            return;
        }
        ev = match conn.read_timeout(buf, timeout) {
            Ok(Some(0)) | Err(_) => s.eof(),
            Ok(Some(n)) => s.input(&buf[..n]),
            Ok(None) => s.timeout(),
        };
    }
}

/// Look up the client's name as Postfix's smtpd_peer does: reverse lookup
/// (/etc/hosts, then PTR), then a forward lookup in the client's address
/// family that must give the address back. Returns (name, reverse name,
/// name status, reverse name status); `lookup = false` is
/// `smtpd_peername_lookup = no`.
pub fn lookup_peer(
    ip: IpAddr,
    lookup: bool,
    log: &mut dyn Logger,
) -> (String, String, PeerCode, PeerCode) {
    use crate::global::dns::{self, Family};
    let ip = match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(a)),
        a => a,
    };
    let unknown = |st: PeerCode| ("unknown".to_string(), "unknown".to_string(), st, st);
    if !lookup {
        return unknown(PeerCode::Perm);
    }
    let addr = crate::global::hostinfo::format_addr(&ip);
    let name = match dns::addr_name(ip) {
        Err(e) => {
            return unknown(if e.is_temp() {
                PeerCode::Temp
            } else {
                PeerCode::Perm
            });
        }
        Ok(n) => n,
    };
    // getnameinfo() names that are numeric or malformed count as not found.
    if crate::util::valid_hostname::valid_hostaddr(&name, false) {
        log.log(&format!("warning: numeric hostname: {name}"));
        return unknown(PeerCode::Perm);
    }
    if !crate::util::valid_hostname::valid_hostname(&name, true) {
        return unknown(PeerCode::Perm);
    }
    let family = if ip.is_ipv4() { Family::V4 } else { Family::V6 };
    match dns::host_addrs(&name, family) {
        Err(e) => {
            log.log(&format!(
                "warning: hostname {name} does not resolve to address {addr}: {}",
                e.text()
            ));
            let st = if e.is_temp() {
                PeerCode::Temp
            } else {
                PeerCode::Forged
            };
            ("unknown".into(), name, st, PeerCode::Ok)
        }
        Ok(list) => {
            if list.contains(&ip) {
                (name.clone(), name, PeerCode::Ok, PeerCode::Ok)
            } else {
                log.log(&format!(
                    "warning: hostname {name} does not resolve to address {addr}"
                ));
                ("unknown".into(), name, PeerCode::Forged, PeerCode::Ok)
            }
        }
    }
}

/// The peer of an accepted TCP connection.
pub fn tcp_peer(stream: &TcpStream, peername_lookup: bool, log: &mut dyn Logger) -> Peer {
    let (pa, la) = (stream.peer_addr().ok(), stream.local_addr().ok());
    let fix = |ip: IpAddr| match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(a)),
        a => a,
    };
    let Some(pa) = pa else {
        return Peer::stand_alone();
    };
    let ip = fix(pa.ip());
    let (name, reverse_name, name_status, reverse_name_status) =
        crate::global::dns::with_hosts_pinned(|| lookup_peer(ip, peername_lookup, log));
    Peer {
        name,
        reverse_name,
        addr: crate::global::hostinfo::format_addr(&ip),
        port: pa.port().to_string(),
        server_addr: la
            .map(|a| crate::global::hostinfo::format_addr(&fix(a.ip())))
            .unwrap_or_default(),
        server_port: la.map(|a| a.port().to_string()).unwrap_or_default(),
        name_status,
        reverse_name_status,
        stand_alone: false,
    }
}
