//! The client side of Postfix's policy delegation protocol
//! (check_policy_service): `name=value` lines ending with an empty line,
//! answered by `action=...` and an empty line, over `inet:host:port` or
//! `unix:path` (relative to the queue directory, where smtpd runs).
//!
//! Behaves as Postfix's attr_clnt/auto_clnt: one connection per policy
//! server, kept across requests and sessions of this smtpd process until
//! max_idle, max_ttl or request_limit; try_limit attempts with retry_delay
//! between them; the same warnings. The server is an outside program and
//! is trusted for nothing: every read has the timeout, every line a bound.

use crate::global::mail_conf::MailConf;
use crate::util::stringops::{extpar, split_q};
use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

/// Postfix's default for smtpd_policy_service_default_action.
pub const DEF_DEFAULT_ACTION: &str = "451 4.3.5 Server configuration problem";

/// The longest answer line we accept (bytes).
const LINE_LIMIT: usize = 100_000;

/// Settings of one policy client (main.cf, then `{name, opt=value}`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub timeout: Duration,
    pub max_idle: Duration,
    pub max_ttl: Duration,
    pub try_delay: Duration,
    pub req_limit: u32,
    pub try_limit: u32,
    pub default_action: String,
    pub context: String,
}

impl Settings {
    pub fn from_conf(mc: &MailConf) -> Result<Settings, String> {
        let t = |n: &str| -> Result<Duration, String> {
            mc.get_time(n, 's', 1, 0)
                .map(|v| Duration::from_secs(v.max(0) as u64))
                .map_err(|e| e.0)
        };
        let s = |n: &str| -> Result<String, String> {
            mc.lookup_eval(n)
                .map(|v| v.unwrap_or_default())
                .map_err(|e| e.0)
        };
        Ok(Settings {
            timeout: t("smtpd_policy_service_timeout")?,
            max_idle: t("smtpd_policy_service_max_idle")?,
            max_ttl: t("smtpd_policy_service_max_ttl")?,
            try_delay: t("smtpd_policy_service_retry_delay")?,
            req_limit: mc
                .get_int("smtpd_policy_service_request_limit", 0, 0)
                .map_err(|e| e.0)?
                .max(0) as u32,
            try_limit: mc
                .get_int("smtpd_policy_service_try_limit", 1, 0)
                .map_err(|e| e.0)?
                .max(0) as u32,
            default_action: s("smtpd_policy_service_default_action")?,
            context: s("smtpd_policy_service_policy_context")?,
        })
    }
}

/// Parse a check_policy_service argument: `inet:host:port`, `unix:path`,
/// or `{ name, timeout=10s, default_action=DUNNO, ... }` (Postfix 3.0
/// per-service overrides). Errors are Postfix's fatal texts.
pub fn parse_service(arg: &str, base: &Settings) -> Result<(String, Settings), String> {
    let mut set = base.clone();
    if !arg.starts_with('{') {
        return Ok((arg.to_string(), set));
    }
    let (inner, err) = extpar(arg);
    if let Some(e) = err {
        return Err(format!("policy service syntax error: {e}"));
    }
    let mut items = split_q(&inner, ", \t\r\n").into_iter();
    let Some(name) = items.next() else {
        return Err(format!("empty policy service: \"{arg}\""));
    };
    for item in items {
        let nameval = if item.starts_with('{') {
            match extpar(&item) {
                (v, None) => v,
                (_, Some(e)) => return Err(format!("{e} in \"{item}\"")),
            }
        } else {
            item.clone()
        };
        let Some((k, v)) = nameval.split_once('=') else {
            return Err(format!(
                "malformed option: missing '=' after attribute name: \"...{nameval}...\""
            ));
        };
        let (k, v) = (k.trim(), v.trim());
        let time = |v: &str| -> Result<Duration, String> {
            match crate::global::mail_conf::conv_time(v, 's') {
                Some(n) if n >= 1 => Ok(Duration::from_secs(n as u64)),
                _ => Err(format!("{k}: bad time value or unit: {v}")),
            }
        };
        let int = |v: &str, min: i64| -> Result<u32, String> {
            match v.parse::<i64>() {
                Ok(n) if n >= min => Ok(n as u32),
                _ => Err(format!("bad numerical configuration: {k} = {v}")),
            }
        };
        match k {
            "timeout" => set.timeout = time(v)?,
            "max_idle" => set.max_idle = time(v)?,
            "max_ttl" => set.max_ttl = time(v)?,
            "retry_delay" => set.try_delay = time(v)?,
            "request_limit" => set.req_limit = int(v, 0)?,
            "try_limit" => set.try_limit = int(v, 1)?,
            "default_action" => set.default_action = v.to_string(),
            "policy_context" => set.context = v.to_string(),
            _ => return Err(format!("unknown option: \"{k} = {v}\"")),
        }
    }
    Ok((name, set))
}

enum Stream {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Stream {
    fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
    fn set_timeouts(&self, t: Duration) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
            Stream::Unix(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
        }
    }
}

impl std::io::Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(b),
            Stream::Unix(s) => s.read(b),
        }
    }
}

impl std::io::Write for Stream {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(b),
            Stream::Unix(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Open {
    r: BufReader<Stream>,
    /// A read failed or timed out: Postfix's stream keeps its error flag
    /// and every later write on it fails until the connection is closed.
    broken: bool,
    opened: Instant,
    last: Instant,
}

/// One policy server endpoint and its (lazily opened) connection.
pub struct Client {
    /// `inet` or `unix` (`local` is taken as `unix`).
    transport: String,
    /// What follows `transport:`; also the name in warnings.
    pub endpoint: String,
    pub set: Settings,
    conn: Option<Open>,
    req_count: u32,
}

/// Why a read of the answer failed (for the warning text).
enum ReadEnd {
    Eof,
    Timeout,
    Error(std::io::Error),
}

fn os_error_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(c) => crate::sys::strerror(c),
        None => e.to_string(),
    }
}

impl Client {
    /// `inet:host:port` or `unix:path`; Postfix's fatal text otherwise.
    pub fn new(service: &str, set: Settings) -> Result<Client, String> {
        let (transport, endpoint) = match service.split_once(':') {
            Some((t, e)) if !t.is_empty() && !e.is_empty() => (t, e),
            _ => {
                return Err(format!(
                    "need service transport:endpoint instead of \"{service}\""
                ));
            }
        };
        if !matches!(transport, "inet" | "unix" | "local") {
            return Err(format!(
                "invalid transport name: {transport} in service: {service}"
            ));
        }
        Ok(Client {
            transport: transport.to_string(),
            endpoint: endpoint.to_string(),
            set,
            conn: None,
            req_count: 0,
        })
    }

    fn connect(&self) -> std::io::Result<Stream> {
        let t = self.set.timeout;
        let s = if self.transport == "inet" {
            let (host, port) = match self.endpoint.rsplit_once(':') {
                Some((h, p)) => (h.trim_start_matches('[').trim_end_matches(']'), p),
                None => ("localhost", self.endpoint.as_str()),
            };
            let host = if host.is_empty() { "localhost" } else { host };
            let port: u16 = match port.parse() {
                Ok(p) => p,
                Err(_) => {
                    return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
                }
            };
            use std::net::ToSocketAddrs;
            let addrs: Vec<std::net::SocketAddr> = (host, port)
                .to_socket_addrs()
                .map_err(|_| std::io::Error::from_raw_os_error(libc::EHOSTUNREACH))?
                .collect();
            let mut last = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
            let mut got = None;
            for a in addrs {
                match std::net::TcpStream::connect_timeout(&a, t) {
                    Ok(s) => {
                        got = Some(s);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            match got {
                Some(s) => Stream::Tcp(s),
                None => return Err(last),
            }
        } else {
            Stream::Unix(std::os::unix::net::UnixStream::connect(
                crate::util::latin1::to_path(&self.endpoint),
            )?)
        };
        s.set_timeouts(t)?;
        Ok(s)
    }

    /// Drop a connection that has been idle or alive too long (Postfix's
    /// timer events, which fire between sessions).
    fn expire(&mut self) {
        if let Some(c) = &self.conn {
            let now = Instant::now();
            if now.duration_since(c.last) >= self.set.max_idle
                || now.duration_since(c.opened) >= self.set.max_ttl
            {
                self.conn = None;
            }
        }
    }

    /// Read one line (without the newline), the bytes before a `=` when
    /// `name` is set: (text, ended at '=').
    fn read_item(
        r: &mut BufReader<Stream>,
        name: bool,
    ) -> Result<(Vec<u8>, bool), (ReadEnd, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            let buf = match r.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err((ReadEnd::Timeout, out));
                }
                Err(e) => return Err((ReadEnd::Error(e), out)),
            };
            if buf.is_empty() {
                return Err((ReadEnd::Eof, out));
            }
            let stop = buf.iter().position(|&b| b == b'\n' || (name && b == b'='));
            match stop {
                Some(i) => {
                    let eq = buf[i] == b'=';
                    out.extend_from_slice(&buf[..i]);
                    r.consume(i + 1);
                    return Ok((out, eq));
                }
                None => {
                    let n = buf.len();
                    if out.len() < LINE_LIMIT {
                        out.extend_from_slice(buf);
                    }
                    r.consume(n);
                }
            }
        }
    }

    /// Read the answer: Ok(Some(action)), Ok(None) when it has no action
    /// (0 conversions), Err on malformed or broken input. Warnings as
    /// Postfix's attr_scan_plain. The error is the errno for the later
    /// "problem talking" warning.
    fn scan(
        &mut self,
        warn: &mut dyn FnMut(String),
    ) -> Result<Option<Vec<u8>>, Option<std::io::Error>> {
        let path = self.endpoint.clone();
        let Some(c) = self.conn.as_mut() else {
            return Err(None);
        };
        let r = &mut c.r;
        // An answer that starts with end-of-input (or a timeout or error,
        // which look the same to Postfix's reader) is "no answer".
        match r.fill_buf() {
            Ok([]) => return Ok(None),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                c.broken = true;
                return Err(Some(std::io::Error::from_raw_os_error(libc::ETIMEDOUT)));
            }
            Err(e) => {
                c.broken = true;
                return Err(Some(e));
            }
        }
        let broken = &mut c.broken;
        let mut fail = |end: ReadEnd, what: &str, warn: &mut dyn FnMut(String)| {
            if !matches!(end, ReadEnd::Eof) {
                *broken = true;
            }
            let (how, err) = match end {
                ReadEnd::Timeout => (
                    "timeout",
                    Some(std::io::Error::from_raw_os_error(libc::ETIMEDOUT)),
                ),
                ReadEnd::Eof => ("premature end-of-input", None),
                ReadEnd::Error(e) => ("premature end-of-input", Some(e)),
            };
            warn(format!("{how} on {path} while reading {what}"));
            err
        };
        let mut action: Option<Vec<u8>> = None;
        loop {
            let (name, eq) = match Self::read_item(r, true) {
                Ok(x) => x,
                Err((end, _)) => return Err(fail(end, "input attribute name", warn)),
            };
            if !eq && name.is_empty() {
                if action.is_none() {
                    warn(format!("missing attribute action in input from {path}"));
                }
                return Ok(action);
            }
            if action.is_none() && name == b"action" {
                if !eq {
                    warn(format!(
                        "missing value for string attribute action from {path}"
                    ));
                    return Err(None);
                }
                match Self::read_item(r, false) {
                    Ok((v, _)) => action = Some(v),
                    Err((end, _)) => return Err(fail(end, "input attribute value", warn)),
                }
                continue;
            }
            if eq {
                // Skip the value of an attribute nobody asked for.
                if let Err((ReadEnd::Error(e), _)) = Self::read_item(r, false) {
                    return Err(Some(e));
                }
            }
        }
    }

    /// One request: the attributes in order. Returns the action, or None
    /// after try_limit failed attempts (the caller applies default_action).
    pub fn request(
        &mut self,
        attrs: &[(&str, String)],
        warn: &mut dyn FnMut(String),
    ) -> Option<Vec<u8>> {
        let mut req = Vec::new();
        for (n, v) in attrs {
            req.extend_from_slice(n.as_bytes());
            req.push(b'=');
            req.extend_from_slice(&crate::util::latin1::encode(v));
            req.push(b'\n');
        }
        req.push(b'\n');
        let mut count = 0u32;
        loop {
            let mut errno: Option<std::io::Error> = None;
            self.expire();
            if self.conn.is_none() {
                match self.connect() {
                    Ok(s) => {
                        let now = Instant::now();
                        self.conn = Some(Open {
                            r: BufReader::new(s),
                            broken: false,
                            opened: now,
                            last: now,
                        });
                    }
                    Err(e) => {
                        warn(format!(
                            "connect to {}: {}",
                            self.endpoint,
                            os_error_text(&e)
                        ));
                        errno = Some(e);
                    }
                }
            }
            if let Some(c) = self.conn.as_mut() {
                c.last = Instant::now();
                let fd = c.r.get_ref().fd();
                // Like Postfix, look at the socket only, not at what is
                // buffered already.
                let readable = crate::sys::net::wait_readable(fd, Duration::ZERO).unwrap_or(true);
                if !readable {
                    // Switching the stream to writing drops what was read
                    // ahead (Postfix's vstream does the same).
                    let n = c.r.buffer().len();
                    c.r.consume(n);
                    let w = if c.broken {
                        Err(None)
                    } else {
                        c.r.get_mut().write_all(&req).map_err(Some)
                    };
                    match w {
                        Err(None) => {}
                        Err(Some(e)) => {
                            c.broken = true;
                            errno = Some(if e.kind() == std::io::ErrorKind::WouldBlock {
                                std::io::Error::from_raw_os_error(libc::ETIMEDOUT)
                            } else {
                                e
                            });
                        }
                        Ok(()) => match self.scan(warn) {
                            Ok(Some(a)) => {
                                if self.set.req_limit > 0 {
                                    self.req_count += 1;
                                    if self.req_count >= self.set.req_limit {
                                        self.conn = None;
                                        self.req_count = 0;
                                    }
                                }
                                if let Some(c) = self.conn.as_mut() {
                                    c.last = Instant::now();
                                }
                                return Some(a);
                            }
                            Ok(None) => {}
                            Err(e) => errno = e,
                        },
                    }
                }
            }
            count += 1;
            let quiet = |e: &std::io::Error| {
                matches!(
                    e.raw_os_error(),
                    Some(libc::EPIPE) | Some(libc::ENOENT) | Some(libc::ECONNRESET)
                ) || e.kind() == std::io::ErrorKind::BrokenPipe
            };
            let last = self.set.try_limit > 0 && count >= self.set.try_limit;
            if last || errno.as_ref().is_some_and(|e| !quiet(e)) {
                let text = match &errno {
                    Some(e) => os_error_text(e),
                    // Postfix's %m with errno 0.
                    None => "Application error".to_string(),
                };
                warn(format!(
                    "problem talking to server {}: {text}",
                    self.endpoint
                ));
            }
            if last {
                return None;
            }
            std::thread::sleep(self.set.try_delay);
            self.conn = None;
            self.req_count = 0;
        }
    }
}

thread_local! {
    /// The policy clients of this smtpd process, by their restriction
    /// argument, kept across sessions (connection reuse).
    static CLIENTS: std::cell::RefCell<std::collections::HashMap<String, Client>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Register a policy server named in a restriction list (at start-up, as
/// Postfix's smtpd_check_init does); a bad name is fatal.
pub fn register(arg: &str, base: &Settings) -> Result<(), String> {
    if CLIENTS.with(|c| c.borrow().contains_key(arg)) {
        return Ok(());
    }
    let (name, set) = parse_service(arg, base)?;
    let cl = Client::new(&name, set)?;
    CLIENTS.with(|c| c.borrow_mut().insert(arg.to_string(), cl));
    Ok(())
}

/// Ask the policy server registered as `arg`: Some(action), or
/// Err(default_action) when it cannot be reached or answers badly.
pub fn query(
    arg: &str,
    attrs: &[(&str, String)],
    warn: &mut dyn FnMut(String),
) -> Option<Result<Vec<u8>, String>> {
    CLIENTS.with(|c| {
        let mut map = c.borrow_mut();
        let cl = map.get_mut(arg)?;
        Some(match cl.request(attrs, warn) {
            Some(a) => Ok(a),
            None => Err(cl.set.default_action.clone()),
        })
    })
}

/// The policy_context configured for `arg`.
pub fn context(arg: &str) -> Option<String> {
    CLIENTS.with(|c| c.borrow().get(arg).map(|cl| cl.set.context.clone()))
}

/// The default action configured for `arg`.
pub fn default_action(arg: &str) -> Option<String> {
    CLIENTS.with(|c| c.borrow().get(arg).map(|cl| cl.set.default_action.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Settings {
        Settings {
            timeout: Duration::from_secs(100),
            max_idle: Duration::from_secs(300),
            max_ttl: Duration::from_secs(1000),
            try_delay: Duration::from_secs(1),
            req_limit: 0,
            try_limit: 2,
            default_action: DEF_DEFAULT_ACTION.into(),
            context: String::new(),
        }
    }

    #[test]
    fn service_overrides() {
        let (n, s) = parse_service(
            "{ inet:127.0.0.1:9998, timeout=10s, default_action=DUNNO, try_limit=1, {policy_context = a b} }",
            &base(),
        )
        .unwrap();
        assert_eq!(n, "inet:127.0.0.1:9998");
        assert_eq!(s.timeout, Duration::from_secs(10));
        assert_eq!(s.default_action, "DUNNO");
        assert_eq!(s.try_limit, 1);
        assert_eq!(s.context, "a b");
        assert_eq!(
            parse_service("{ inet:x:1, bogus=1 }", &base())
                .err()
                .unwrap(),
            "unknown option: \"bogus = 1\""
        );
        assert!(Client::new("foo", base()).is_err());
        assert_eq!(
            Client::new("tcp:x:1", base()).err().unwrap(),
            "invalid transport name: tcp in service: tcp:x:1"
        );
    }

    #[test]
    fn request_and_answer() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            let mut got = Vec::new();
            for _ in 0..2 {
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    if line == "\n" {
                        break;
                    }
                    got.push(line);
                }
                w.write_all(b"foo=bar\naction=REJECT go away\nx=y\n\n")
                    .unwrap();
            }
            got
        });
        let mut c = Client::new(&format!("inet:127.0.0.1:{port}"), base()).unwrap();
        let mut warns = Vec::new();
        let attrs = [("request", "smtpd_access_policy".to_string())];
        for _ in 0..2 {
            let a = c.request(&attrs, &mut |w| warns.push(w));
            assert_eq!(a.as_deref(), Some(&b"REJECT go away"[..]));
        }
        assert!(warns.is_empty(), "{warns:?}");
        let got = t.join().unwrap();
        assert_eq!(got, vec!["request=smtpd_access_policy\n"; 2]);
    }
}
