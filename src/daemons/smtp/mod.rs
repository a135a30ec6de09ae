//! Replaces smtp(8) and lmtp(8) of Postfix 3.7: delivery over SMTP or LMTP
//! to the next hop a delivery request names (one implementation; the
//! program name, `smtp` or `lmtp`, picks the protocol and the parameter
//! prefix).
//!
//! Trust: the request comes from the queue manager; everything the server
//! says is untrusted (bounded line length, non-printable bytes censored).
//! Privilege: runs as mail_owner (unprivileged), network-facing.
//!
//! Parameters (`smtp_` or `lmtp_` prefix): helo_name (`lmtp_lhlo_name`),
//! connect_timeout, helo_timeout (`lmtp_lhlo_timeout`), mail_timeout,
//! rcpt_timeout, data_init_timeout, data_xfer_timeout, data_done_timeout,
//! rset_timeout, quit_timeout, skip_5xx_greeting, skip_quit_response,
//! always_send_ehlo, never_send_ehlo, fallback_relay, host_lookup,
//! dns_support_level, mx_address_limit, mx_session_limit, tcp_port,
//! discard_ehlo_keywords, tls_security_level, line_length_limit; and
//! myhostname, disable_dns_lookups, disable_mime_output_conversion,
//! soft_bounce, delay_logging_resolution_limit, line_length_limit.

pub mod dns;
pub mod mime;
pub mod reply;

use crate::global::deliver_request::{
    DeliveryRequest, Dsn, Outcome, Recipient, RecipientResult, log_line, notify, now,
};
use crate::global::mail_conf::{ConfError, MailConf};
use crate::global::rec_type;
use crate::global::record::{QueueStream, Rec, rec_get};
use dns::{Dest, HostAddr, LookupConf};
use reply::Reply;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// The connection-cache request flags (DEL_REQ_FLAG_CONN_LOAD/STORE).
pub mod flags_conn {
    /// Look for a cached connection.
    pub const LOAD: u32 = 1 << 11;
    /// Cache the connection when done.
    pub const STORE: u32 = 1 << 12;
}

/// The client's parameters.
#[derive(Debug, Clone)]
pub struct Conf {
    pub lmtp: bool,
    pub myhostname: String,
    pub helo_name: String,
    pub connect_timeout: u64,
    pub helo_timeout: u64,
    pub mail_timeout: u64,
    pub rcpt_timeout: u64,
    pub data_init_timeout: u64,
    pub data_xfer_timeout: u64,
    pub data_done_timeout: u64,
    pub rset_timeout: u64,
    pub quit_timeout: u64,
    pub skip_5xx_greeting: bool,
    pub skip_quit_response: bool,
    pub always_ehlo: bool,
    pub never_ehlo: bool,
    pub fallback_relay: Vec<String>,
    pub lookup: LookupConf,
    pub mx_session_limit: usize,
    pub tcp_port: String,
    pub discard_ehlo: Vec<String>,
    pub tls_level: String,
    pub line_length_limit: usize,
    pub disable_mime_oconv: bool,
    pub soft_bounce: bool,
    pub delay_max_res: u32,
    /// smtp_connection_cache_on_demand
    pub cache_on_demand: bool,
    /// smtp_connection_cache_destinations (next hops, matched without case)
    pub cache_destinations: Vec<String>,
    /// smtp_connection_cache_time_limit (idle time in the cache)
    pub cache_time_limit: u64,
    /// smtp_connection_reuse_time_limit
    pub reuse_time_limit: u64,
    /// smtp_connection_reuse_count_limit (0: none)
    pub reuse_count_limit: u32,
}

impl Conf {
    /// Read the parameters for `smtp` or `lmtp`.
    pub fn from_conf(conf: &MailConf, lmtp: bool) -> Result<Conf, ConfError> {
        let pfx = if lmtp { "lmtp_" } else { "smtp_" };
        let n = |base: &str| -> String {
            match (lmtp, base) {
                (true, "helo_name") => "lmtp_lhlo_name".into(),
                (true, "helo_timeout") => "lmtp_lhlo_timeout".into(),
                _ => format!("{pfx}{base}"),
            }
        };
        let time = |base: &str| conf.get_time(&n(base), 's', 0, 0).map(|v| v.max(0) as u64);
        let list = |s: String| -> Vec<String> {
            s.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect()
        };
        let host_lookup = conf.get_str(&n("host_lookup"), 0, 0)?.to_ascii_lowercase();
        let dns_level = conf.get_str(&n("dns_support_level"), 0, 0)?;
        let disable_dns = conf.get_bool("disable_dns_lookups")?;
        let dns_off = dns_level == "disabled" || (dns_level.is_empty() && disable_dns);
        let lookup_words = list(host_lookup);
        let mut dns = lookup_words.iter().any(|w| w == "dns") && !dns_off;
        let mut native = lookup_words.iter().any(|w| w == "native");
        if dns_off && !native {
            native = true;
        }
        if !dns && !native {
            dns = true;
        }
        let (always_ehlo, never_ehlo) = if lmtp {
            (true, false)
        } else {
            (
                conf.get_bool("smtp_always_send_ehlo")?,
                conf.get_bool("smtp_never_send_ehlo")?,
            )
        };
        Ok(Conf {
            lmtp,
            myhostname: conf.get_str("myhostname", 1, 0)?,
            helo_name: conf.get_str(&n("helo_name"), 1, 0)?,
            connect_timeout: time("connect_timeout")?,
            helo_timeout: time("helo_timeout")?,
            mail_timeout: time("mail_timeout")?,
            rcpt_timeout: time("rcpt_timeout")?,
            data_init_timeout: time("data_init_timeout")?,
            data_xfer_timeout: time("data_xfer_timeout")?,
            data_done_timeout: time("data_done_timeout")?,
            rset_timeout: time("rset_timeout")?,
            quit_timeout: time("quit_timeout")?,
            skip_5xx_greeting: conf.get_bool(&n("skip_5xx_greeting"))?,
            skip_quit_response: conf.get_bool(&n("skip_quit_response"))?,
            always_ehlo,
            never_ehlo,
            fallback_relay: list(conf.get_str(&n("fallback_relay"), 0, 0)?),
            lookup: LookupConf {
                dns,
                native,
                mx_address_limit: conf.get_int(&n("mx_address_limit"), 0, 0)?.max(0) as usize,
                nameservers: Vec::new(),
            },
            mx_session_limit: conf.get_int(&n("mx_session_limit"), 0, 0)?.max(0) as usize,
            tcp_port: conf.get_str(&n("tcp_port"), 0, 0)?,
            discard_ehlo: list(conf.get_str(&n("discard_ehlo_keywords"), 0, 0)?)
                .into_iter()
                .map(|w| w.to_ascii_uppercase())
                .collect(),
            tls_level: conf
                .get_str(&n("tls_security_level"), 0, 0)?
                .to_ascii_lowercase(),
            line_length_limit: conf.get_int(&n("line_length_limit"), 0, 0)?.max(0) as usize,
            disable_mime_oconv: conf.get_bool("disable_mime_output_conversion")?,
            soft_bounce: conf.get_bool("soft_bounce")?,
            delay_max_res: conf.get_int("delay_logging_resolution_limit", 0, 6)? as u32,
            cache_on_demand: conf.get_bool(&n("connection_cache_on_demand"))?,
            cache_destinations: list(conf.get_str(&n("connection_cache_destinations"), 0, 0)?),
            cache_time_limit: time("connection_cache_time_limit")?,
            reuse_time_limit: time("connection_reuse_time_limit")?,
            reuse_count_limit: conf
                .get_int(&n("connection_reuse_count_limit"), 0, 0)?
                .max(0) as u32,
        })
    }
}

/// Session features from the EHLO reply.
#[derive(Debug, Clone, Default)]
struct Features {
    esmtp: bool,
    pipelining: bool,
    size: bool,
    eightbit: bool,
    dsn: bool,
    smtputf8: bool,
    starttls: bool,
}

/// How an I/O operation failed.
enum IoErr {
    Eof,
    Timeout,
}

fn classify(e: &io::Error) -> IoErr {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => IoErr::Timeout,
        _ => IoErr::Eof,
    }
}

trait Conn: Read + Write + Send {
    /// The send timeout (0: none).
    fn set_write_timeout_secs(&self, t: u64);
    /// Send what fits in the socket buffer now, never waiting (0: full).
    fn send_nowait(&self, b: &[u8]) -> io::Result<usize>;
    /// Turn Nagle's algorithm off (TCP only).
    fn set_nodelay(&self);
}

/// One socket shared by the reading and the writing half (one descriptor,
/// no duplicate).
struct Shared<T>(std::sync::Arc<T>);

macro_rules! shared_socket {
    ($t:ty, $nodelay:expr) => {
        impl Read for Shared<$t> {
            fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
                (&*self.0).read(b)
            }
        }

        impl Write for Shared<$t> {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                (&*self.0).write(b)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }

        impl Conn for Shared<$t> {
            fn set_write_timeout_secs(&self, t: u64) {
                let _ = self
                    .0
                    .set_write_timeout((t > 0).then(|| Duration::from_secs(t)));
            }
            fn send_nowait(&self, b: &[u8]) -> io::Result<usize> {
                use std::os::fd::AsRawFd;
                crate::sys::tcp::send_nowait(self.0.as_raw_fd(), b)
            }
            fn set_nodelay(&self) {
                $nodelay(&self.0);
            }
        }

        impl ConnRead for Shared<$t> {
            fn set_timeout(&self, t: u64) {
                let _ = self
                    .0
                    .set_read_timeout((t > 0).then(|| Duration::from_secs(t)));
            }
            fn idle_alive(&mut self) -> bool {
                let c = self.0.clone();
                idle_alive_via(self, |on| c.set_nonblocking(on))
            }
        }
    };
}

shared_socket!(TcpStream, |s: &TcpStream| {
    let _ = s.set_nodelay(true);
});
shared_socket!(UnixStream, |_: &UnixStream| {});

/// An open connection with the names Postfix logs.
struct Session {
    rd: BufReader<Timed>,
    wr: Box<dyn Conn>,
    out: Vec<u8>,
    /// `host[addr]`
    namaddr: String,
    /// `host[addr]:port` (no port for UNIX sockets)
    namaddrport: String,
    features: Features,
    size_limit: u64,
    /// May this session go to the connection cache when done?
    cacheable: bool,
    /// QUIT was sent or the connection broke.
    closed: bool,
    /// How often it was reused.
    reuse_count: u32,
    /// No more reuse after this (smtp_connection_reuse_time_limit).
    expire: std::time::Instant,
    /// The cache key of the endpoint (`addr:port` or the socket path).
    endpoint: String,
    /// A UNIX-domain socket (TLS levels are downgraded to none there, as
    /// Postfix does without a client certificate).
    unix: bool,
    /// The send timeout now set on the socket (u64::MAX: none yet), so
    /// that a step with the same timeout costs no system call.
    wr_timeout: u64,
    /// A reply line being read (kept for its buffer).
    line: Vec<u8>,
    /// Nagle's algorithm is off. It is turned off only before output that
    /// is not followed by a wait for a reply (a body written in pieces, a
    /// send that did not fit the socket buffer): a group of commands or a
    /// whole message written at once and then answered cannot be held back.
    nodelay: bool,
}

/// The reading half with its timeout, applied to the socket only when a
/// read really goes to the socket (a reply already buffered costs no
/// system call) and only when it changed.
struct Timed {
    inner: Box<dyn ConnRead>,
    /// The timeout for the next read.
    want: u64,
    /// The timeout set on the socket (u64::MAX: none yet).
    set: u64,
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.want != self.set {
            self.inner.set_timeout(self.want);
            self.set = self.want;
        }
        self.inner.read(buf)
    }
}

impl Session {
    /// The server's host name (session->host): `namaddr` without `[addr]`.
    fn host(&self) -> String {
        match self.namaddr.find('[') {
            Some(i) => self.namaddr[..i].to_string(),
            None => self.namaddr.clone(),
        }
    }
}

trait ConnRead: Read + Send {
    fn set_timeout(&self, t: u64);
    /// Is the connection still open with nothing unread (a cached session)?
    fn idle_alive(&mut self) -> bool;
}

fn idle_alive_via<S: Read>(s: &mut S, nb: impl Fn(bool) -> io::Result<()>) -> bool {
    if nb(true).is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    let alive = matches!(s.read(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
    alive && nb(false).is_ok()
}

/// A session kept open for the next request (Postfix keeps these in the
/// scache service; here they stay in the agent process that made them).
struct Cached {
    /// The next hop it was first used for, if any.
    dest: Option<String>,
    /// Drop it after this.
    idle_deadline: std::time::Instant,
    sess: Session,
}

static CACHE: std::sync::Mutex<Vec<Cached>> = std::sync::Mutex::new(Vec::new());

/// Take a live cached session by next hop or by endpoint.
fn cache_take(dest: Option<&str>, endpoint: Option<&str>) -> Option<Session> {
    let mut c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let t = std::time::Instant::now();
    c.retain(|x| x.idle_deadline > t);
    let i = c.iter().position(|x| {
        (dest.is_some() && x.dest.as_deref() == dest)
            || (endpoint.is_some() && Some(x.sess.endpoint.as_str()) == endpoint)
    })?;
    let mut x = c.remove(i);
    if x.sess.rd.buffer().is_empty() && x.sess.rd.get_mut().inner.idle_alive() {
        Some(x.sess)
    } else {
        None
    }
}

fn cache_save(dest: Option<String>, sess: Session, conf: &Conf) {
    let mut c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    c.push(Cached {
        dest,
        idle_deadline: std::time::Instant::now() + Duration::from_secs(conf.cache_time_limit),
        sess,
    });
}

/// Close every cached session without QUIT, as Postfix's scache does
/// when a cached connection expires.
pub fn cache_close_all() {
    CACHE.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

const LINE_LIMIT: usize = 2048;

/// Message body output is written in pieces of about this size.
const BODY_WRITE: usize = 64 * 1024;

impl Session {
    fn cmd(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn flush(&mut self, timeout: u64) -> Result<(), IoErr> {
        if self.out.is_empty() {
            return Ok(());
        }
        // What fits in the socket buffer goes out without waiting, so no
        // send timeout is needed; only the rest waits, under the timeout.
        let sent = match self.wr.send_nowait(&self.out) {
            Ok(n) => n,
            Err(e) => {
                self.out.clear();
                return Err(classify(&e));
            }
        };
        if sent == self.out.len() {
            self.out.clear();
            return Ok(());
        }
        self.no_delay();
        if self.wr_timeout != timeout {
            self.wr.set_write_timeout_secs(timeout);
            self.wr_timeout = timeout;
        }
        let r = self.wr.write_all(&self.out[sent..]);
        self.out.clear();
        r.map_err(|e| classify(&e))
    }

    /// Turn Nagle's algorithm off (once).
    fn no_delay(&mut self) {
        if !self.nodelay {
            self.wr.set_nodelay();
            self.nodelay = true;
        }
    }

    /// Read one reply with the given timeout (flushing pending output first).
    fn reply(&mut self, timeout: u64) -> Result<Reply, IoErr> {
        self.flush(timeout)?;
        self.rd.get_mut().want = timeout;
        // The kept lines joined with newlines, and where the last one starts.
        let mut text = String::new();
        let mut last_start = 0;
        let mut nlines = 0;
        let mut total = 0;
        let mut buf = std::mem::take(&mut self.line);
        let r = loop {
            buf.clear();
            let n = match (&mut self.rd)
                .take(LINE_LIMIT as u64)
                .read_until(b'\n', &mut buf)
            {
                Ok(0) => break Err(IoErr::Eof),
                Ok(n) => n,
                Err(e) => break Err(classify(&e)),
            };
            let _ = n;
            if buf.last() == Some(&b'\n') {
                buf.pop();
            } else {
                // Skip the rest of an over-long line.
                let mut rest = Vec::new();
                if let Err(e) = (&mut self.rd).take(1 << 20).read_until(b'\n', &mut rest) {
                    break Err(classify(&e));
                }
            }
            while buf.last() == Some(&b'\r') {
                buf.pop();
            }
            let last = reply::is_last_line_bytes(&buf);
            if total < LINE_LIMIT {
                total += buf.len() + 1;
                if nlines > 0 {
                    text.push('\n');
                }
                last_start = text.len();
                reply::printable_into(&mut text, &buf);
                nlines += 1;
            }
            if last || nlines > 1000 {
                break Ok(reply::from_text(text, last_start));
            }
        };
        self.line = buf;
        r
    }
}

/// Per-request state while delivering.
struct State<'a> {
    req: &'a DeliveryRequest,
    conf: &'a Conf,
    stats: crate::global::deliver_request::MsgStats,
    /// Indexes of request recipients not yet finished.
    pending: Vec<usize>,
    results: Vec<RecipientResult>,
    /// Is the current server the last one we will try?
    final_server: bool,
    /// Informational log lines (without program prefix).
    pub info: Vec<String>,
    /// The current session's reuse count (logged as conn_use=N+1).
    reuse_count: u32,
    /// Set by a site failure: the destination should be throttled.
    hop_status: Option<Dsn>,
}

impl State<'_> {
    fn finish(&mut self, idx: usize, dsn: Dsn, relay: &str) {
        let mut dsn = dsn;
        let outcome = if dsn.status.starts_with('2') {
            Outcome::Sent
        } else if dsn.status.starts_with('4') {
            Outcome::Deferred
        } else if self.conf.soft_bounce {
            dsn.status.replace_range(0..1, "4");
            Outcome::Deferred
        } else {
            Outcome::Bounced
        };
        let rcpt: &Recipient = &self.req.rcpt[idx];
        let mut log = log_line(
            &self.req.queue_id,
            &self.stats,
            rcpt,
            relay,
            &dsn,
            outcome.status_word(),
            now(),
            self.conf.delay_max_res,
        );
        if self.reuse_count > 0 {
            let at = format!(", relay={relay}");
            log = log.replacen(&at, &format!("{at}, conn_use={}", self.reuse_count + 1), 1);
        }
        self.info.push(log.clone());
        self.results.push(RecipientResult {
            rcpt: rcpt.clone(),
            index: idx,
            outcome,
            dsn,
            relay: relay.to_string(),
            bounce_to: None,
            log,
        });
        self.pending.retain(|&i| i != idx);
    }

    /// A failure for one recipient (smtp_rcpt_fail). Returns true when
    /// the recipient was kept for the next server.
    fn rcpt_fail(&mut self, idx: usize, dsn: Dsn, relay: &str) -> bool {
        let soft =
            dsn.status.starts_with('4') || (dsn.status.starts_with('5') && self.conf.soft_bounce);
        if soft && !self.final_server {
            self.info
                .push(format!("{}: {}", self.req.queue_id, dsn.reason));
            return true;
        }
        self.finish(idx, dsn, relay);
        false
    }

    /// A site failure (connection, greeting, handshake, lost or timed-out
    /// conversation): besides failing the recipients, it sets the hop status
    /// that tells the queue manager to throttle the destination.
    fn site_fail(&mut self, which: &[usize], dsn: Dsn, relay: &str) {
        let before = self.results.len();
        self.bulk_fail(which, dsn.clone(), relay);
        // Postfix keeps it only when some recipient was deferred (a
        // bounced recipient's status is final).
        if self.results[before..]
            .iter()
            .any(|r| r.outcome == Outcome::Deferred)
            && self.hop_status.is_none()
        {
            self.hop_status = Some(dsn);
        }
    }

    /// A failure for every unfinished recipient among `which` (smtp_bulk_fail).
    fn bulk_fail(&mut self, which: &[usize], dsn: Dsn, relay: &str) {
        let soft =
            dsn.status.starts_with('4') || (dsn.status.starts_with('5') && self.conf.soft_bounce);
        if soft && !self.final_server {
            self.info
                .push(format!("{}: {}", self.req.queue_id, dsn.reason));
            return;
        }
        let t = now();
        if self.stats.conn_setup_done.0 == 0 {
            self.stats.conn_setup_done = t;
        }
        self.stats.deliver_done = t;
        for &i in which {
            if self.pending.contains(&i) {
                self.finish(i, dsn.clone(), relay);
            }
        }
    }
}

/// The text for a reply-based failure, with Postfix's protocol-error rule.
/// The remote MTA and the server's reply go with it (Remote-MTA and
/// Diagnostic-Code in notices), as Postfix's smtp_rcpt_fail/smtp_site_fail;
/// the reply's lines are joined with spaces (Postfix flattens the reply
/// buffer in place before the diagnostic is copied).
fn reply_dsn(sess: &Session, resp: &Reply, reason: String) -> Dsn {
    let d = if !resp.dsn.starts_with('4') && !resp.dsn.starts_with('5') {
        Dsn::new("5.5.0", format!("Protocol error: {reason}"))
    } else {
        Dsn::new(&resp.dsn, reason)
    };
    d.with_mta(&sess.host(), Some(&resp.flat()))
}

/// Quote an envelope address for MAIL FROM/RCPT TO (smtp_quote_821_address).
fn quote_addr(addr: &str) -> String {
    if addr.is_empty() {
        return String::new();
    }
    crate::global::quote_822_local::quote_822_local(addr)
}

fn xtext(s: &str, special: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b <= b' ' || b >= 0x7f || b == b'+' || special.as_bytes().contains(&b) {
            out.push_str(&format!("+{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

fn notify_str(mask: i32) -> String {
    let mut v = Vec::new();
    for (bit, name) in [
        (notify::NEVER, "NEVER"),
        (notify::SUCCESS, "SUCCESS"),
        (notify::FAILURE, "FAILURE"),
        (notify::DELAY, "DELAY"),
    ] {
        if mask & bit != 0 {
            v.push(name);
        }
    }
    v.join(",")
}

/// The message content in the queue file, read record by record for each
/// session (as Postfix's smtp client does): no copy of the message is
/// kept in memory, whatever its size.
struct Content {
    fp: QueueStream,
    offset: u64,
    /// The current content record's payload.
    buf: Vec<u8>,
    /// The SMTPUTF8 flags of the queue file (the sixth field of its size
    /// record).
    utf8_flags: i32,
    /// The stream stands at the start of the content already (reached by
    /// reading on from the size record, without a seek that would throw
    /// the buffered file away and read it again).
    at_content: bool,
}

/// How far past the size record the content may start for `Content::open`
/// to read up to it rather than seek (the envelope records between them).
const SKIP_LIMIT: u64 = 4096;

/// Why the content could not be read.
fn corrupt() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "corrupt queue file")
}

impl Content {
    /// Open the queue file and read its size record.
    fn open(req: &DeliveryRequest) -> io::Result<Content> {
        let path = req.queue_file.to_string_lossy().to_string();
        let mut fp = QueueStream::open(&path)?;
        let mut buf = Vec::new();
        // The size record comes first (it is read here byte by byte, so
        // that its end, and so the stream's position, is known exactly).
        let mut utf8_flags = 0;
        let mut pos = None;
        if fp.getc() == Some(rec_type::SIZE) {
            let (mut len, mut shift, mut n) = (0u64, 0u32, 1u64);
            while let Some(b) = fp.getc() {
                n += 1;
                len |= u64::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    pos = Some(n + len);
                    break;
                }
                if shift >= 32 {
                    break;
                }
            }
            if let Some(p) = pos
                && len <= 1024
                && fp.read_into(&mut buf, len as usize) as u64 == len
            {
                utf8_flags = String::from_utf8_lossy(&buf)
                    .split_whitespace()
                    .nth(5)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                pos = Some(p);
            } else {
                pos = None;
            }
        }
        // Reading on to the content costs nothing when it is buffered
        // already (a small message is read whole by the first read).
        let mut at_content = false;
        if let Some(p) = pos
            && req.data_offset >= p
            && req.data_offset - p <= SKIP_LIMIT
        {
            let gap = (req.data_offset - p) as usize;
            buf.clear();
            at_content = fp.read_into(&mut buf, gap) == gap;
        }
        Ok(Content {
            fp,
            offset: req.data_offset,
            buf,
            utf8_flags,
            at_content,
        })
    }

    /// Go to the start of the content (each session sends it from there).
    fn rewind(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.at_content) {
            return Ok(());
        }
        self.fp.seek_set(self.offset as i64).map(|_| ())
    }

    /// Read the next content line into `self.buf`: Some(complete) (false:
    /// it continues in the next record), None after the last one.
    fn next_line(&mut self) -> io::Result<Option<bool>> {
        loop {
            match rec_get(&mut self.fp, &mut self.buf, 0) {
                Rec::Type(t) if t == rec_type::NORM || t == rec_type::CONT => {
                    return Ok(Some(t == rec_type::NORM));
                }
                Rec::Type(t) if t == rec_type::XTRA || t == rec_type::END => return Ok(None),
                Rec::Type(_) => {}
                _ => return Err(corrupt()),
            }
        }
    }

    /// All content lines (for the 8-bit downgrade, which needs whole
    /// header blocks).
    fn lines(&mut self) -> io::Result<Vec<mime::Line>> {
        let mut out = Vec::new();
        while let Some(complete) = self.next_line()? {
            out.push((self.buf.clone(), complete));
        }
        Ok(out)
    }
}

/// Write one content record for DATA: dot-stuffing at the start of a line,
/// and lines longer than `limit` (usize::MAX: no limit) broken with CRLF SPACE, as
/// Postfix's smtp_text_out. `space_left` carries the room left on the
/// current output line between records. Returns true when a line was broken.
fn text_out(
    out: &mut Vec<u8>,
    space_left: &mut usize,
    limit: usize,
    text: &[u8],
    complete: bool,
) -> bool {
    let mut data = text;
    let mut broke = false;
    loop {
        if *space_left == limit && data.first() == Some(&b'.') {
            out.push(b'.');
        }
        if data.len() >= *space_left {
            out.extend_from_slice(&data[..*space_left]);
            out.extend_from_slice(b"\r\n");
            data = &data[*space_left..];
            *space_left = limit;
            if !data.is_empty() || !complete {
                out.push(b' ');
                *space_left -= 1;
                broke = true;
            }
        } else {
            out.extend_from_slice(data);
            if complete {
                out.extend_from_slice(b"\r\n");
                *space_left = limit;
            } else {
                *space_left = space_left.saturating_sub(data.len());
            }
            break;
        }
        if data.is_empty() {
            break;
        }
    }
    broke
}

/// Where a connection goes.
enum Target {
    Tcp(HostAddr, u16),
    Unix(String),
}

/// The two halves of a connection.
type Halves = (Box<dyn ConnRead>, Box<dyn Conn>);

fn connect(conf: &Conf, t: &Target) -> Result<Halves, Dsn> {
    match t {
        Target::Tcp(h, port) => {
            let sa = SocketAddr::new(h.addr, *port);
            // The connect timeout is the socket's send timeout (the session
            // records it as the send timeout in force).
            let r = crate::sys::tcp::connect_timed(
                sa,
                (conf.connect_timeout > 0).then(|| Duration::from_secs(conf.connect_timeout)),
            );
            match r {
                Ok(s) => {
                    let s = std::sync::Arc::new(s);
                    Ok((Box::new(Shared(s.clone())), Box::new(Shared(s))))
                }
                Err(e) => Err(Dsn::new(
                    "4.4.1",
                    format!("connect to {}[{}]:{port}: {}", h.name, h.addr, errtext(&e)),
                )),
            }
        }
        Target::Unix(path) => match UnixStream::connect(path) {
            Ok(s) => {
                let s = std::sync::Arc::new(s);
                Ok((Box::new(Shared(s.clone())), Box::new(Shared(s))))
            }
            Err(e) => Err(Dsn::new(
                "4.4.1",
                format!("connect to {}[{path}]: {}", conf.myhostname, errtext(&e)),
            )),
        },
    }
}

/// The C library's text for an I/O error (`Connection refused`).
fn errtext(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::TimedOut && e.raw_os_error().is_none() {
        return "Connection timed out".into();
    }
    crate::global::record::errtext(e)
}

/// What a session attempt left behind.
enum SessEnd {
    /// The conversation ran (recipients may remain for the next server).
    Done,
    /// The queue file's content could not be read: the connection was
    /// dropped without ending the message, no other server is tried.
    BadContent(io::Error),
}

/// The deferral for an unreadable queue file.
fn content_error(e: &io::Error) -> Dsn {
    Dsn::new("4.3.0", format!("error reading message: {e}"))
}

/// What a delivery attempt produced.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// One result per request recipient, in the order they were decided.
    pub results: Vec<RecipientResult>,
    /// Every log line in order (connect failures, non-final soft errors,
    /// warnings and the per-recipient status lines), without program prefix.
    pub log: Vec<String>,
    /// Set when a site failure means the queue manager should throttle the
    /// destination (Postfix's hop_status).
    pub hop_status: Option<Dsn>,
}

/// Deliver a request; see [`Delivered`].
pub fn deliver_full(req: &DeliveryRequest, conf: &Conf) -> Delivered {
    let (results, log, hop_status) = deliver_inner(req, conf);
    Delivered {
        results,
        log,
        hop_status,
    }
}

/// Deliver a request: the results and the log lines (see [`Delivered`]).
pub fn deliver_logged(req: &DeliveryRequest, conf: &Conf) -> (Vec<RecipientResult>, Vec<String>) {
    let (r, l, _) = deliver_inner(req, conf);
    (r, l)
}

type Inner = (Vec<RecipientResult>, Vec<String>, Option<Dsn>);

fn deliver_inner(req: &DeliveryRequest, conf: &Conf) -> Inner {
    let mut st = State {
        req,
        conf,
        stats: req.stats,
        pending: (0..req.rcpt.len()).collect(),
        results: Vec::new(),
        final_server: false,
        info: Vec::new(),
        reuse_count: 0,
        hop_status: None,
    };
    let mut content = match Content::open(req) {
        Ok(c) => c,
        Err(e) => {
            st.final_server = true;
            let all = st.pending.clone();
            st.bulk_fail(&all, content_error(&e), "none");
            return (st.results, st.info, st.hop_status);
        }
    };
    let def_service = conf.tcp_port.clone();
    let mut dests = vec![req.nexthop.clone()];
    if !conf.lmtp {
        dests.extend(conf.fallback_relay.iter().cloned());
    }
    let mut why: Option<Dsn> = None;
    let ndest = dests.len();
    let (mut load, mut store) = (false, false);
    'dests: for (di, dest) in dests.iter().enumerate() {
        if st.pending.is_empty() {
            break;
        }
        let last_dest = di + 1 == ndest;
        let cache_name;
        let targets: Vec<Target> = match dns::parse_destination(dest, &def_service, conf.lmtp) {
            Err(e) => {
                why = Some(Dsn::new("4.3.5", e));
                continue;
            }
            Ok(Dest::Unix(p)) => {
                cache_name = p.clone();
                vec![Target::Unix(p)]
            }
            Ok(Dest::Inet { host, port, no_mx }) => {
                cache_name = host.clone();
                match dns::domain_addrs(&host, no_mx, &conf.lookup) {
                    Ok((v, warnings)) => {
                        st.info.extend(warnings);
                        v.into_iter().map(|h| Target::Tcp(h, port)).collect()
                    }
                    Err(d) => {
                        why = Some(d);
                        continue;
                    }
                }
            }
        };
        // The cache policy comes from the first next hop's domain (or
        // socket path) and holds for the fall-back relays too.
        if di == 0 {
            (load, store) = if conf
                .cache_destinations
                .iter()
                .any(|d| d.eq_ignore_ascii_case(&cache_name))
            {
                (true, true)
            } else if conf.cache_on_demand {
                (
                    req.flags & flags_conn::LOAD != 0,
                    req.flags & flags_conn::STORE != 0,
                )
            } else {
                (false, false)
            };
        }
        let n = targets.len();
        let mut sessions = 0;
        let mut dest_label = (store && di == 0).then(|| cache_name.clone());
        for (ti, t) in targets.iter().enumerate() {
            if st.pending.is_empty() {
                break;
            }
            st.final_server = last_dest
                && (ti + 1 == n
                    || (conf.mx_session_limit > 0 && sessions + 1 == conf.mx_session_limit));
            // The cache key (needed only when sessions are cached).
            let endpoint = match t {
                _ if !load && !store => String::new(),
                Target::Tcp(h, port) => format!("{}:{port}", SocketAddr::new(h.addr, *port)),
                Target::Unix(p) => p.clone(),
            };
            let cached = if load {
                cache_take(
                    (ti == 0 && di == 0).then_some(cache_name.as_str()),
                    Some(&endpoint),
                )
            } else {
                None
            };
            // An RSET probe tells whether a cached session is still good.
            let cached = cached.and_then(|mut c| {
                c.cmd("RSET");
                match c.reply(conf.rset_timeout) {
                    Ok(r) if r.code / 100 == 2 => Some(c),
                    _ => None,
                }
            });
            let (mut sess, reused) = match cached {
                Some(mut c) => {
                    c.reuse_count += 1;
                    c.cacheable = store;
                    (c, true)
                }
                None => match connect(conf, t) {
                    Err(d) => {
                        st.info.push(d.reason.clone());
                        why = Some(d);
                        continue;
                    }
                    Ok((rd, wr)) => {
                        let (namaddr, namaddrport) = match t {
                            Target::Tcp(h, port) => {
                                let namaddr = format!("{}[{}]", h.name, h.addr);
                                let namaddrport = format!("{namaddr}:{port}");
                                (namaddr, namaddrport)
                            }
                            Target::Unix(p) => (
                                format!("{}[{p}]", conf.myhostname),
                                format!("{}[{p}]", conf.myhostname),
                            ),
                        };
                        (
                            Session {
                                // Replies are short: a page holds most
                                // of them, pipelined groups included.
                                rd: BufReader::with_capacity(
                                    4096,
                                    Timed {
                                        inner: rd,
                                        want: 0,
                                        set: u64::MAX,
                                    },
                                ),
                                wr,
                                out: Vec::new(),
                                namaddr,
                                namaddrport,
                                features: Features::default(),
                                size_limit: 0,
                                cacheable: store,
                                closed: false,
                                reuse_count: 0,
                                expire: std::time::Instant::now()
                                    + Duration::from_secs(conf.reuse_time_limit),
                                unix: matches!(t, Target::Unix(_)),
                                endpoint,
                                wr_timeout: match t {
                                    Target::Tcp(..) => conf.connect_timeout,
                                    Target::Unix(_) => u64::MAX,
                                },
                                nodelay: false,
                                line: Vec::new(),
                            },
                            false,
                        )
                    }
                },
            };
            sessions += 1;
            st.reuse_count = sess.reuse_count;
            let end = run_session(&mut st, &mut sess, &mut content, reused);
            why = None;
            if let SessEnd::BadContent(e) = end {
                // The session was dropped without ending the message.
                st.final_server = true;
                let all = st.pending.clone();
                st.bulk_fail(&all, content_error(&e), "none");
                break 'dests;
            }
            if conf.reuse_count_limit > 0 && sess.reuse_count + 1 >= conf.reuse_count_limit {
                sess.cacheable = false;
            }
            if sess.cacheable && !sess.closed && std::time::Instant::now() < sess.expire {
                cache_save(dest_label.take(), sess, conf);
            } else if !sess.closed {
                let _ = quit(&mut sess, conf);
            }
            if conf.mx_session_limit > 0 && sessions >= conf.mx_session_limit {
                break;
            }
        }
    }
    if !st.pending.is_empty() {
        st.final_server = true;
        let d = why
            .unwrap_or_else(|| Dsn::new("4.3.0", "server unavailable or unable to receive mail"));
        let all = st.pending.clone();
        st.site_fail(&all, d, "none");
    }
    (st.results, st.info, st.hop_status)
}

/// Deliver a request; see [`deliver_logged`].
pub fn deliver(req: &DeliveryRequest, conf: &Conf) -> Vec<RecipientResult> {
    deliver_logged(req, conf).0
}

/// End a session that failed or will not be cached; a cacheable one stays
/// open without QUIT.
fn end_session(sess: &mut Session, conf: &Conf) {
    if !sess.cacheable {
        let _ = quit(sess, conf);
    }
}

/// Does this smtp_tls_security_level require TLS?
fn tls_required(level: &str) -> bool {
    matches!(
        level,
        "encrypt" | "dane-only" | "fingerprint" | "verify" | "secure"
    )
}

/// A stream exception (smtp_stream_except).
fn except(st: &mut State, sess: &mut Session, e: IoErr, where_: &str) {
    sess.closed = true;
    sess.cacheable = false;
    let reason = match e {
        IoErr::Eof => format!("lost connection with {} while {where_}", sess.namaddr),
        IoErr::Timeout => format!(
            "conversation with {} timed out while {where_}",
            sess.namaddr
        ),
    };
    let all = st.pending.clone();
    st.site_fail(&all, Dsn::new("4.4.2", reason), &sess.namaddrport.clone());
}

fn said(sess: &Session, resp: &Reply, what: &str) -> String {
    format!(
        "host {} said: {} (in reply to {what})",
        sess.namaddr,
        resp.flat()
    )
}

fn run_session(st: &mut State, sess: &mut Session, content: &mut Content, reused: bool) -> SessEnd {
    if !reused && !handshake(st, sess) {
        return SessEnd::Done;
    }
    xfer(st, sess, content)
}

/// The greeting and EHLO/HELO/LHLO; false when the session ended.
fn handshake(st: &mut State, sess: &mut Session) -> bool {
    let conf = st.conf;
    let relay = sess.namaddrport.clone();
    let all = st.pending.clone();
    // Greeting.
    let resp = match sess.reply(conf.helo_timeout) {
        Ok(r) => r,
        Err(e) => {
            except(st, sess, e, "receiving the initial server greeting");
            return false;
        }
    };
    let site_fail = |st: &mut State, sess: &mut Session, resp: &Reply| {
        let mut dsn = reply_dsn(
            sess,
            resp,
            format!(
                "host {} refused to talk to me: {}",
                sess.namaddr,
                resp.flat()
            ),
        );
        if resp.code / 100 == 5 && conf.skip_5xx_greeting && dsn.status.starts_with('5') {
            dsn.status.replace_range(0..1, "4");
        }
        st.site_fail(&all, dsn, &relay);
        sess.cacheable = false;
    };
    if resp.code / 100 != 2 {
        site_fail(st, sess, &resp);
        let _ = quit(sess, conf);
        return false;
    }
    // EHLO / HELO / LHLO.
    sess.features.esmtp = conf.lmtp || (conf.always_ehlo && !conf.never_ehlo) || {
        let first = resp.text.lines().next().unwrap_or("");
        first
            .split_whitespace()
            .any(|w| w.eq_ignore_ascii_case("ESMTP"))
            && !conf.never_ehlo
    };
    let mut ehlo_resp = None;
    if conf.lmtp {
        sess.cmd(&format!("LHLO {}", conf.helo_name));
        match sess.reply(conf.helo_timeout) {
            Err(e) => {
                except(st, sess, e, "performing the LHLO handshake");
                return false;
            }
            Ok(r) if r.code / 100 != 2 => {
                site_fail(st, sess, &r);
                let _ = quit(sess, conf);
                return false;
            }
            Ok(r) => ehlo_resp = Some(r),
        }
    } else {
        if sess.features.esmtp {
            sess.cmd(&format!("EHLO {}", conf.helo_name));
            match sess.reply(conf.helo_timeout) {
                Err(e) => {
                    except(st, sess, e, "performing the EHLO handshake");
                    return false;
                }
                Ok(r) if r.code == 421 => {
                    site_fail(st, sess, &r);
                    let _ = quit(sess, conf);
                    return false;
                }
                Ok(r) if r.code / 100 != 2 => sess.features.esmtp = false,
                Ok(r) => ehlo_resp = Some(r),
            }
        }
        if !sess.features.esmtp {
            sess.cmd(&format!("HELO {}", conf.helo_name));
            match sess.reply(conf.helo_timeout) {
                Err(e) => {
                    except(st, sess, e, "performing the HELO handshake");
                    return false;
                }
                Ok(r) if r.code / 100 != 2 => {
                    site_fail(st, sess, &r);
                    let _ = quit(sess, conf);
                    return false;
                }
                Ok(_) => {}
            }
        }
    }
    if let Some(r) = &ehlo_resp {
        for (n, line) in r.text.lines().enumerate() {
            if n == 0 {
                continue;
            }
            let rest = line.get(4..).unwrap_or("");
            let mut words = rest.split([' ', '\t', '=']).filter(|w| !w.is_empty());
            let Some(kw) = words.next() else { continue };
            let kw = kw.to_ascii_uppercase();
            if conf.discard_ehlo.contains(&kw) {
                continue;
            }
            match kw.as_str() {
                "8BITMIME" => sess.features.eightbit = true,
                "PIPELINING" => sess.features.pipelining = true,
                "SIZE" => {
                    sess.features.size = true;
                    if let Some(w) = words.next() {
                        if w.bytes().all(|c| c.is_ascii_digit()) {
                            sess.size_limit = w.parse().unwrap_or(0);
                        } else {
                            st.info.push(format!(
                                "warning: bad EHLO SIZE limit \"{w}\" from {}",
                                sess.namaddrport
                            ));
                        }
                    }
                }
                "STARTTLS" => sess.features.starttls = true,
                "DSN" => sess.features.dsn = true,
                "SMTPUTF8" => sess.features.smtputf8 = true,
                _ => {}
            }
        }
    }
    // TLS comes with a later change: opportunistic levels go on in
    // plaintext, levels that require TLS fail as Postfix does without it.
    if tls_required(&conf.tls_level) && !sess.unix {
        let dsn = if sess.features.starttls {
            Dsn::new(
                "4.7.5",
                "TLS is required, but our TLS engine is unavailable",
            )
        } else {
            Dsn::new(
                "4.7.4",
                format!(
                    "TLS is required, but was not offered by host {}",
                    sess.namaddr
                ),
            )
        };
        st.site_fail(&all, dsn, &relay);
        sess.cacheable = false;
        let _ = quit(sess, conf);
        return false;
    }
    if sess.features.smtputf8 && !sess.features.eightbit {
        st.info.push(format!(
            "host {} offers SMTPUTF8 support, but not 8BITMIME",
            sess.namaddr
        ));
        sess.features.eightbit = true;
    }
    true
}

/// One mail transaction on an open session.
fn xfer(st: &mut State, sess: &mut Session, content: &mut Content) -> SessEnd {
    let conf = st.conf;
    let req = st.req;
    let relay = sess.namaddrport.clone();
    let all = st.pending.clone();
    // Required when the sender asked for SMTPUTF8 and the envelope or a
    // header has UTF-8 (SMTPUTF8_FLAG_REQUESTED plus any other flag).
    let utf8_flags = content.utf8_flags;
    let requested = req.smtputf8 || utf8_flags & 1 != 0;
    let required = requested && (utf8_flags & !1 != 0 || (utf8_flags == 0 && req.smtputf8));
    if !sess.features.smtputf8 && required {
        let dsn = Dsn::new(
            "5.6.7",
            format!(
                "SMTPUTF8 is required, but was not offered by host {}",
                sess.namaddr
            ),
        );
        st.bulk_fail(&all, dsn, &relay);
        end_session(sess, conf);
        return SessEnd::Done;
    }
    let downgrade = !conf.disable_mime_oconv && !sess.features.eightbit && req.encoding != "7bit";
    // The message size limit announced by the server.
    if sess.features.size && sess.size_limit > 0 && req.data_size > sess.size_limit {
        let dsn = Dsn::new(
            "5.3.4",
            format!(
                "message size {} exceeds size limit {} of server {}",
                req.data_size, sess.size_limit, sess.namaddr
            ),
        );
        st.bulk_fail(&all, dsn, &relay);
        end_session(sess, conf);
        return SessEnd::Done;
    }
    // MAIL FROM.
    st.stats.conn_setup_done = now();
    let mut mail = format!("MAIL FROM:<{}>", quote_addr(&req.sender));
    if sess.features.size && !downgrade {
        mail.push_str(&format!(" SIZE={}", req.data_size));
    }
    if sess.features.eightbit {
        if req.encoding == "8bit" {
            mail.push_str(" BODY=8BITMIME");
        } else if req.encoding == "7bit" {
            mail.push_str(" BODY=7BIT");
        }
    }
    if sess.features.dsn {
        if !req.dsn_envid.is_empty() {
            mail.push_str(&format!(" ENVID={}", xtext(&req.dsn_envid, "+=")));
        }
        match req.dsn_ret {
            1 => mail.push_str(" RET=FULL"),
            2 => mail.push_str(" RET=HDRS"),
            _ => {}
        }
    }
    if sess.features.smtputf8 && requested {
        mail.push_str(" SMTPUTF8");
    }
    let rcpts: Vec<usize> = st.pending.clone();
    let has_dsn = sess.features.dsn;
    let rcpt_cmd = |i: usize| -> String {
        let r = &req.rcpt[i];
        let mut c = format!("RCPT TO:<{}>", quote_addr(&r.address));
        if has_dsn {
            let mut orcpt = r.dsn_orcpt.clone();
            if orcpt.is_empty() && !r.orig_addr.is_empty() {
                let q = crate::global::quote_822_local::quote_822_local(&r.orig_addr);
                let ty = if requested && !q.is_ascii() {
                    "utf-8"
                } else {
                    "rfc822"
                };
                orcpt = format!("{ty};{q}");
            }
            if !orcpt.is_empty() {
                c.push_str(&format!(" ORCPT={}", xtext(&orcpt, "=")));
            }
            if r.dsn_notify != 0 {
                c.push_str(&format!(" NOTIFY={}", notify_str(r.dsn_notify)));
            }
        }
        c
    };
    let mut accepted: Vec<usize> = Vec::new();
    let mut mail_rejected = false;
    let pipelining = sess.features.pipelining;
    // Receive the MAIL reply.
    macro_rules! recv {
        ($t:expr, $where:expr) => {
            match sess.reply($t) {
                Ok(r) => r,
                Err(e) => {
                    except(st, sess, e, $where);
                    return SessEnd::Done;
                }
            }
        };
    }
    let abort = |st: &mut State, sess: &mut Session| {
        sess.cmd("RSET");
        if !sess.cacheable {
            // Pipelined with the RSET, as Postfix does.
            let _ = quit(sess, conf);
            return;
        }
        match sess.reply(conf.rset_timeout) {
            Ok(r) if r.code / 100 == 2 => {}
            _ => {
                sess.cacheable = false;
                sess.closed = true;
            }
        }
        let _ = st;
    };
    sess.cmd(&mail);
    if pipelining {
        for &i in &rcpts {
            sess.cmd(&rcpt_cmd(i));
        }
        sess.cmd("DATA");
    }
    let r = recv!(conf.mail_timeout, "sending MAIL FROM");
    if r.code / 100 != 2 {
        let dsn = reply_dsn(sess, &r, said(sess, &r, "MAIL FROM command"));
        st.bulk_fail(&all, dsn, &relay);
        mail_rejected = true;
        if !pipelining {
            abort(st, sess);
            return SessEnd::Done;
        }
    }
    for &i in &rcpts {
        if !pipelining {
            sess.cmd(&rcpt_cmd(i));
        }
        let r = recv!(conf.rcpt_timeout, "sending RCPT TO");
        if mail_rejected {
            continue;
        }
        if r.code / 100 == 2 {
            accepted.push(i);
        } else {
            let dsn = reply_dsn(sess, &r, said(sess, &r, "RCPT TO command"));
            st.rcpt_fail(i, dsn, &relay);
        }
    }
    if !pipelining {
        if accepted.is_empty() {
            abort(st, sess);
            return SessEnd::Done;
        }
        sess.cmd("DATA");
    }
    let r = recv!(conf.data_init_timeout, "sending DATA command");
    if r.code / 100 != 3 {
        if !accepted.is_empty() {
            let dsn = reply_dsn(sess, &r, said(sess, &r, "DATA command"));
            st.bulk_fail(&accepted, dsn, &relay);
        }
        abort(st, sess);
        return SessEnd::Done;
    }
    if mail_rejected || accepted.is_empty() {
        // A pipelining server said 354 although nothing was accepted: end
        // the (empty) message as Postfix does, ignoring its reply.
        sess.cmd(".");
        sess.cacheable = false;
        sess.closed = true;
        sess.cmd("QUIT");
        if sess.reply(conf.data_done_timeout).is_ok() && !conf.skip_quit_response {
            let _ = sess.reply(conf.quit_timeout);
        }
        return SessEnd::Done;
    }
    // The message, from the queue file (converted whole when the server
    // needs 7-bit content).
    let limit = match conf.line_length_limit {
        0 => usize::MAX,
        n => n,
    };
    let mut space_left = limit;
    let mut logged_break = false;
    let mut converted = None;
    let read = content.rewind().and_then(|_| {
        if downgrade {
            converted = Some(mime::downgrade(&content.lines()?).into_iter());
        }
        Ok(())
    });
    if let Err(e) = read {
        return drop_session(sess, e);
    }
    // Room for the message as it goes out in one write (or the first
    // piece), so that the output buffer does not grow step by step.
    let want = req.data_size.min(BODY_WRITE as u64) as usize;
    sess.out.reserve(want + want / 32 + 16);
    loop {
        let line = match &mut converted {
            Some(it) => it.next().map(|(text, complete)| {
                content.buf = text;
                complete
            }),
            None => match content.next_line() {
                Ok(l) => l,
                Err(e) => return drop_session(sess, e),
            },
        };
        let Some(complete) = line else { break };
        if text_out(
            &mut sess.out,
            &mut space_left,
            limit,
            &content.buf,
            complete,
        ) && !logged_break
        {
            logged_break = true;
            st.info.push(format!(
                "{}: breaking line > {limit} bytes with <CR><LF>SPACE",
                req.queue_id
            ));
        }
        if sess.out.len() >= BODY_WRITE
            && let Err(e) = {
                // More output follows without a reply in between: the
                // last small piece must not wait for the peer's delayed ACK.
                sess.no_delay();
                sess.flush(conf.data_xfer_timeout)
            }
        {
            except(st, sess, e, "sending message body");
            return SessEnd::Done;
        }
    }
    if space_left != limit {
        sess.out.extend_from_slice(b"\r\n");
    }
    // The rest of the body goes out with the "." (and QUIT) in one write,
    // under the end-of-data timeout, as Postfix's buffered stream does.
    sess.cmd(".");
    let cache = sess.cacheable && std::time::Instant::now() < sess.expire;
    if pipelining && !cache {
        sess.cmd("QUIT");
    }
    const DOT_WHERE: &str = "sending end of data -- message may be sent more than once";
    if conf.lmtp {
        for &i in &accepted {
            let r = recv!(conf.data_done_timeout, DOT_WHERE);
            st.stats.deliver_done = now();
            if r.code / 100 == 2 {
                let d = Dsn::new(&r.dsn, r.flat()).with_mta(&sess.host(), Some(&r.flat()));
                st.finish(i, d, &relay);
            } else {
                let dsn = reply_dsn(sess, &r, said(sess, &r, "end of DATA command"));
                st.rcpt_fail(i, dsn, &relay);
            }
        }
    } else {
        let r = recv!(conf.data_done_timeout, DOT_WHERE);
        st.stats.deliver_done = now();
        if r.code / 100 == 2 {
            for &i in &accepted {
                let d = Dsn::new(&r.dsn, r.flat()).with_mta(&sess.host(), Some(&r.flat()));
                st.finish(i, d, &relay);
            }
        } else {
            let dsn = reply_dsn(sess, &r, said(sess, &r, "end of DATA command"));
            st.bulk_fail(&accepted, dsn, &relay);
        }
    }
    if cache && sess.cacheable {
        return SessEnd::Done;
    }
    sess.cacheable = false;
    sess.closed = true;
    if !pipelining || cache {
        sess.cmd("QUIT");
    }
    if conf.skip_quit_response {
        let _ = sess.flush(conf.quit_timeout);
    } else {
        let _ = sess.reply(conf.quit_timeout);
    }
    SessEnd::Done
}

/// Drop a session in the middle of the message (the queue file became
/// unreadable): nothing more is sent, not even QUIT.
fn drop_session(sess: &mut Session, e: io::Error) -> SessEnd {
    sess.out.clear();
    sess.closed = true;
    sess.cacheable = false;
    SessEnd::BadContent(e)
}

fn quit(sess: &mut Session, conf: &Conf) -> Result<(), IoErr> {
    sess.closed = true;
    sess.cacheable = false;
    sess.cmd("QUIT");
    if conf.skip_quit_response {
        sess.flush(conf.quit_timeout)
    } else {
        sess.reply(conf.quit_timeout).map(|_| ())
    }
}

fn smtp_service(conn: &mut crate::master::server::Conn, s: &crate::master::server::Server) {
    use crate::global::msg;
    if let Some(a) = s.options.args.first() {
        msg::fatal(&format!("unexpected command-line argument: {a}"));
    }
    // The parameters do not change for the life of the process: read them
    // at the first request only.
    static CONF: std::sync::OnceLock<(Conf, crate::global::mail_queue::QueueConf)> =
        std::sync::OnceLock::new();
    let (conf, qc) = CONF.get_or_init(|| {
        let lmtp = s.progname == "lmtp";
        let conf = Conf::from_conf(&s.conf, lmtp).unwrap_or_else(|e| msg::fatal(&e.0));
        let qc = crate::global::mail_queue::QueueConf::from_conf(&s.conf)
            .unwrap_or_else(|e| msg::fatal(&e.0));
        (conf, qc)
    });
    crate::global::deliver_proto::serve_ext(conn, qc, &s.options.service_name, &mut |req| {
        if req.nexthop.is_empty() {
            msg::fatal("empty nexthop hostname");
        }
        let d = deliver_full(req, conf);
        for l in &d.log {
            match l.strip_prefix("warning: ") {
                Some(w) => msg::warn(w),
                None => msg::info(l),
            }
        }
        // The site-level status goes back to the queue manager (it throttles
        // the destination with it), with the formal DSN parts.
        let hop = d
            .hop_status
            .map(|h| {
                let f = h.formal();
                crate::global::deliver_proto::HopStatus {
                    status: h.status,
                    dtype: f.dtype,
                    dtext: f.dtext,
                    mtype: f.mtype,
                    mname: f.mname,
                    action: String::new(),
                    reason: h.reason,
                }
            })
            .unwrap_or_default();
        crate::global::deliver_proto::AgentDone {
            results: d.results,
            hop,
            ..Default::default()
        }
    });
}

/// smtp(8) and lmtp(8): the program name picks the protocol. Runs on the
/// single-server skeleton and speaks the delivery protocol with qmgr.
pub fn main(args: Vec<std::ffi::OsString>) -> i32 {
    crate::master::server::single_server(args, smtp_service)
}
