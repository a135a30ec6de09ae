//! `memcache:/path/file` (or `memcache:prefix` for main.cf parameters): the
//! memcache client of Postfix 3.7 (dict_memcache with memcache_proto),
//! speaking memcached's text protocol (`get`, `set`, `delete`) to one
//! server, with an optional persistent `backup` table behind the cache.
//!
//! Parameters (cfg_parser rules, see [`crate::global::cfg_parser`]):
//! `memcache` (default `inet:localhost:11211`; `unix:`/`local:` paths too),
//! `backup`, `key_format` (`%s`, db_common templates), `domain`, `ttl`
//! (3600), `flags` (0), `timeout` (2 s, connect and each read/write),
//! `max_try` (2), `retry_pause` (1 s), `line_size_limit` (1024),
//! `data_size_limit` (10240).
//!
//! As Postfix: a failed request is retried on a new connection (up to
//! `max_try`, pausing `retry_pause` seconds between tries) and only the
//! failures after the first are warned about; a server that refuses the
//! connection ends the tries at once. A lookup that misses the cache asks
//! the backup and stores its answer in the cache; with a backup, updates and
//! deletes go to both and the backup's result counts. Keys that are empty,
//! outside `domain`, or contain white space are skipped (a warning for an
//! update). What Postfix prints as `%m` after a failure is tracked in
//! `errno` (see [`super::DictError`]).
//!
//! Trusts: the server's replies are bounded (line and data limits).

use super::connect::{Stream, Tracked, in_progress, inet_connect, unix_connect};
use super::{Dict, DictError, OpenError, OpenMode, Seq, Status, flags};
use crate::global::cfg_parser::CfgParser;
use crate::global::db_common::{DbCommon, DomainCheck};
use crate::global::maps::open_or_surrogate;
use crate::global::msg;
use crate::util::latin1;
use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

const DEF_MEMCACHE: &str = "inet:localhost:11211";
const DEF_KEY_FMT: &str = "%s";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Inet,
    Unix,
}

/// One memcache table.
pub struct Memcache {
    name: String,
    flags: u32,
    writable: bool,
    key_format: String,
    timeout: i32,
    ttl: i32,
    mc_flags: i32,
    err_pause: i32,
    max_tries: i32,
    max_line: usize,
    max_data: usize,
    transport: Transport,
    endpoint: String,
    conn: Option<BufReader<Tracked<Stream>>>,
    /// What Postfix's `%m` would show now ("" = errno 0).
    errno: String,
    dbc: DbCommon,
    backup: Option<Box<dyn Dict>>,
    /// The key as sent to the server.
    key_buf: String,
}

/// Why one request failed (the warning shown after the first try).
enum Failure {
    /// The connection could not be made: stop trying.
    Connect,
    /// A read or write failed: `I/O error`.
    Io,
    /// The server said something else: the warning text.
    Reply(String),
}

/// Postfix's `%.30s` of a server reply.
fn first30(s: &str) -> String {
    s.chars().take(30).collect()
}

/// C's isspace() on an ASCII character.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{0b}' | '\u{0c}' | '\r')
}

/// sscanf(line, "VALUE %*s %*s %ld"): the byte count, when the line
/// matches.
fn value_length(line: &str) -> Option<i64> {
    let rest = line.strip_prefix("VALUE")?;
    let mut rest = rest;
    for _ in 0..2 {
        rest = rest.trim_start_matches(is_c_space);
        if rest.is_empty() {
            return None;
        }
        let end = rest.find(is_c_space).unwrap_or(rest.len());
        rest = &rest[end..];
    }
    let rest = rest.trim_start_matches(is_c_space);
    let (neg, digits) = match rest.as_bytes().first() {
        Some(b'-') => (true, &rest[1..]),
        Some(b'+') => (false, &rest[1..]),
        _ => (false, rest),
    };
    let n = digits.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 {
        return None;
    }
    let v = digits[..n].parse::<i64>().unwrap_or(i64::MAX);
    Some(if neg { -v } else { v })
}

impl Memcache {
    /// Connect if not connected (auto_clnt_access); a failure is warned
    /// about here, as Postfix does.
    fn access(&mut self) -> bool {
        if self.conn.is_some() {
            return true;
        }
        let timeout = Duration::from_secs(self.timeout.max(0) as u64);
        let stream = match self.transport {
            Transport::Inet => inet_connect(&self.endpoint, timeout).map(Stream::Tcp),
            Transport::Unix => unix_connect(&self.endpoint).map(Stream::Unix),
        };
        match stream {
            Ok(s) => {
                if self.timeout > 0 {
                    s.set_timeout(timeout);
                }
                // Postfix's %m after a later failure shows the errno its
                // connect left behind: EINPROGRESS from the timed TCP
                // connect; a UNIX-socket connect leaves errno alone (in
                // postmap it holds ENOENT from start-up).
                self.errno = match s {
                    Stream::Tcp(_) if self.timeout > 0 => in_progress(),
                    Stream::Tcp(_) => std::mem::take(&mut self.errno),
                    Stream::Unix(_) => crate::sys::strerror(libc::ENOENT),
                };
                self.conn = Some(BufReader::new(Tracked::new(s)));
                true
            }
            Err(e) => {
                msg::warn(&format!("connect to {}: {e}", self.endpoint));
                self.errno = e;
                false
            }
        }
    }

    /// Drop the connection (auto_clnt_recover).
    fn recover(&mut self) {
        self.conn = None;
    }

    fn note_errno(&mut self) {
        if let Some(c) = self.conn.as_mut()
            && let Some(e) = c.get_mut().last_errno.take()
        {
            self.errno = e;
        }
    }

    /// Send one request (a command line, and data for `set`).
    fn send(&mut self, line: &str, data: Option<&str>) -> Result<(), ()> {
        let mut buf = latin1::encode(line);
        buf.extend_from_slice(b"\r\n");
        if let Some(d) = data {
            buf.extend_from_slice(&latin1::encode(d));
            buf.extend_from_slice(b"\r\n");
        }
        let c = self.conn.as_mut().ok_or(())?;
        let r = c
            .get_mut()
            .write_all(&buf)
            .and_then(|_| c.get_mut().flush());
        self.note_errno();
        r.map_err(|_| ())
    }

    /// Read one reply line of at most `line_size_limit` bytes including
    /// its newline (memcache_get); CR LF or LF ends it.
    fn get_line(&mut self) -> Result<String, ()> {
        let bound = self.max_line;
        let c = self.conn.as_mut().ok_or(())?;
        let mut line: Vec<u8> = Vec::new();
        let mut last: Option<u8> = None;
        while line.len() < bound {
            let buf = match c.fill_buf() {
                Ok(b) => b,
                Err(_) => break,
            };
            let Some(&b) = buf.first() else {
                break;
            };
            c.consume(1);
            line.push(b);
            last = Some(b);
            if b == b'\n' {
                break;
            }
        }
        let ok = match last {
            Some(b'\n') => true,
            // The limit fell between CR and LF.
            Some(b'\r') if line.len() >= bound => match c.fill_buf() {
                Ok(buf) if buf.first() == Some(&b'\n') => {
                    c.consume(1);
                    line.push(b'\n');
                    true
                }
                _ => false,
            },
            _ => false,
        };
        self.note_errno();
        if !ok {
            return Err(());
        }
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(latin1::decode(&line))
    }

    /// Read a value of `len` bytes and its CR LF (memcache_fread).
    fn get_data(&mut self, len: usize) -> Result<String, ()> {
        let c = self.conn.as_mut().ok_or(())?;
        let mut data = vec![0u8; len + 2];
        let r = std::io::Read::read_exact(c, &mut data);
        self.note_errno();
        if r.is_err() || &data[len..] != b"\r\n" {
            return Err(());
        }
        data.truncate(len);
        // The value is a C string from here on.
        if let Some(i) = data.iter().position(|&b| b == 0) {
            data.truncate(i);
        }
        Ok(latin1::decode(&data))
    }

    /// Try one request up to max_try times; `attempt` returns the result or
    /// what went wrong.
    fn with_retries<T>(
        &mut self,
        mut attempt: impl FnMut(&mut Self) -> Result<T, Failure>,
    ) -> Result<T, DictError> {
        for count in 0..self.max_tries {
            if count > 0 {
                std::thread::sleep(Duration::from_secs(self.err_pause as u64));
            }
            match attempt(self) {
                Ok(v) => return Ok(v),
                Err(Failure::Connect) => break,
                Err(Failure::Io) => {
                    if count > 0 {
                        if self.errno.is_empty() {
                            msg::warn(&format!("database memcache:{}: I/O error", self.name));
                        } else {
                            msg::warn(&format!(
                                "database memcache:{}: I/O error: {}",
                                self.name, self.errno
                            ));
                        }
                    }
                }
                Err(Failure::Reply(text)) => {
                    if count > 0 {
                        msg::warn(&text);
                    }
                }
            }
            self.recover();
        }
        Err(DictError::Retry(self.errno.clone()))
    }

    fn mc_get(&mut self) -> Result<Option<String>, DictError> {
        let request = format!("get {}", self.key_buf);
        self.with_retries(|mc| {
            if !mc.access() {
                return Err(Failure::Connect);
            }
            mc.send(&request, None).map_err(|_| Failure::Io)?;
            let line = mc.get_line().map_err(|_| Failure::Io)?;
            if line == "END" {
                return Ok(None);
            }
            let len = match value_length(&line) {
                Some(n) if n >= 0 && n as u64 <= mc.max_data as u64 => n as usize,
                _ => {
                    return Err(Failure::Reply(format!(
                        "{}: unexpected memcache server reply: {}",
                        mc.name,
                        first30(&line)
                    )));
                }
            };
            let Ok(value) = mc.get_data(len) else {
                return Err(Failure::Reply(format!(
                    "{}: EOF receiving memcache server reply",
                    mc.name
                )));
            };
            if mc.get_line().ok().as_deref() != Some("END") {
                mc.recover();
            }
            Ok(Some(value))
        })
    }

    fn mc_set(&mut self, value: &str) -> Result<Status, DictError> {
        if value.len() > self.max_data {
            msg::warn(&format!(
                "database memcache:{}: data for key {} is too long (data_size_limit={}) -- not stored",
                self.name, self.key_buf, self.max_data
            ));
            return Ok(Status::Fail);
        }
        let request = format!(
            "set {} {} {} {}",
            self.key_buf,
            self.mc_flags,
            self.ttl,
            value.len()
        );
        self.with_retries(|mc| {
            if !mc.access() {
                return Err(Failure::Connect);
            }
            mc.send(&request, Some(value)).map_err(|_| Failure::Io)?;
            let line = mc.get_line().map_err(|_| Failure::Io)?;
            if line != "STORED" {
                return Err(Failure::Reply(format!(
                    "database memcache:{}: update failed: {}",
                    mc.name,
                    first30(&line)
                )));
            }
            Ok(Status::Success)
        })
    }

    fn mc_del(&mut self) -> Result<Status, DictError> {
        let request = format!("delete {}", self.key_buf);
        self.with_retries(|mc| {
            if !mc.access() {
                return Err(Failure::Connect);
            }
            mc.send(&request, None).map_err(|_| Failure::Io)?;
            let line = mc.get_line().map_err(|_| Failure::Io)?;
            match line.as_str() {
                "DELETED" => Ok(Status::Success),
                "NOT_FOUND" => Ok(Status::Fail),
                _ => Err(Failure::Reply(format!(
                    "database memcache:{}: delete failed: {}",
                    mc.name,
                    first30(&line)
                ))),
            }
        })
    }

    /// Check the key and build the request key (dict_memcache_valid_key):
    /// `Ok(false)` to skip it, logged as a warning when `warn`, else only
    /// with -v.
    fn valid_key(&mut self, name: &str, operation: &str, warn: bool) -> Result<bool, DictError> {
        let skip = |why: &str| {
            let text = format!(
                "{}: skipping {operation} for name \"{name}\": {why}",
                self.name
            );
            if warn {
                msg::warn(&text);
            } else if msg::verbose() > 0 {
                msg::info(&text);
            }
            Ok(false)
        };
        if name.is_empty() {
            return skip("empty lookup key");
        }
        match self.dbc.check_domain(name) {
            DomainCheck::Yes => {}
            DomainCheck::No => return skip("domain mismatch"),
            DomainCheck::Error => return Err(DictError::Retry(self.errno.clone())),
        }
        let folded = if self.flags & flags::FOLD_FIX != 0 {
            name.to_ascii_lowercase()
        } else {
            name.to_string()
        };
        self.key_buf = if self.key_format != DEF_KEY_FMT {
            match self.dbc.expand(&self.key_format, &folded) {
                Some(k) => k,
                None => return skip("empty lookup key expansion"),
            }
        } else {
            folded
        };
        if self.key_buf.is_empty() {
            return skip("empty lookup key expansion");
        }
        if self.key_buf.chars().any(is_c_space) {
            return skip("name contains space");
        }
        Ok(true)
    }

    fn unsupported(&self, op: &str) -> DictError {
        DictError::Fatal(format!(
            "table memcache:{}: {op} operation is not supported",
            self.name
        ))
    }
}

impl Dict for Memcache {
    fn type_name(&self) -> &str {
        "memcache"
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn flags(&self) -> u32 {
        self.flags
    }
    fn set_flags(&mut self, f: u32) {
        self.flags = f;
    }

    fn lookup(&mut self, key: &str) -> Result<Option<String>, DictError> {
        if !self.valid_key(key, "lookup", false)? {
            return Ok(None);
        }
        let cached = self.mc_get();
        let Some(mut backup) = self.backup.take() else {
            return cached;
        };
        // A cache miss or failure: ask the backup, and cache what it says.
        let result = match cached {
            Ok(Some(v)) => Ok(Some(v)),
            Ok(None) | Err(_) => match backup.lookup(key) {
                Ok(Some(v)) => {
                    let _ = self.mc_set(&v);
                    Ok(Some(v))
                }
                other => other,
            },
        };
        self.backup = Some(backup);
        result
    }

    fn update(&mut self, key: &str, value: &str) -> Result<Status, DictError> {
        if !self.writable {
            return Err(self.unsupported("update"));
        }
        if !self.valid_key(key, "update", true)? {
            return Ok(Status::Fail);
        }
        let result = self.mc_set(value);
        match self.backup.as_mut() {
            Some(b) => b.update(key, value),
            None => result,
        }
    }

    fn delete(&mut self, key: &str) -> Result<Status, DictError> {
        if !self.writable {
            return Err(self.unsupported("delete"));
        }
        if !self.valid_key(key, "delete", false)? {
            return Ok(Status::Fail);
        }
        let result = self.mc_del();
        match self.backup.as_mut() {
            Some(b) => b.delete(key),
            None => result,
        }
    }

    fn sequence(&mut self, how: Seq) -> Result<Option<(String, String)>, DictError> {
        match self.backup.as_mut() {
            Some(b) => b.sequence(how),
            None => {
                msg::warn(&format!(
                    "database memcache:{}: first/next support requires backup database",
                    self.name
                ));
                Ok(None)
            }
        }
    }

    fn close(self: Box<Self>) -> Result<(), DictError> {
        match self.backup {
            Some(b) => b.close(),
            None => Ok(()),
        }
    }
}

/// Open `memcache:name` (read-only, or read-write for updates and
/// deletes).
pub fn open(name: &str, mode: OpenMode, dict_flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    if dict_flags & flags::NO_UNAUTH != 0 {
        return Err(OpenError(format!(
            "memcache:{name} map is not allowed for security-sensitive data"
        )));
    }
    let parser = CfgParser::open(name).map_err(|e| OpenError(format!("open {name}: {e}")))?;
    let key_format = parser
        .get_str("key_format", Some(DEF_KEY_FMT), 0, 0)
        .unwrap_or_default();
    let timeout = parser.get_int("timeout", 2, 0, 0);
    let ttl = parser.get_int("ttl", 3600, 0, 0);
    let mc_flags = parser.get_int("flags", 0, 0, 0);
    let err_pause = parser.get_int("retry_pause", 1, 1, 0);
    let max_tries = parser.get_int("max_try", 2, 1, 0);
    let max_line = parser.get_int("line_size_limit", 1024, 1, 0);
    let max_data = parser.get_int("data_size_limit", 10240, 1, 0);
    let memcache = parser
        .get_str("memcache", Some(DEF_MEMCACHE), 0, 0)
        .unwrap_or_default();
    let (transport, endpoint) = match memcache.split_once(':') {
        Some((t, e)) if !t.is_empty() && !e.is_empty() => (t, e),
        _ => msg::fatal(&format!(
            "need service transport:endpoint instead of \"{memcache}\""
        )),
    };
    let transport = match transport {
        "inet" => Transport::Inet,
        "unix" | "local" => Transport::Unix,
        _ => msg::fatal(&format!(
            "invalid transport name: {transport} in service: {memcache}"
        )),
    };
    let backup = parser
        .get_str("backup", None, 0, 0)
        .map(|spec| open_or_surrogate(&spec, mode, dict_flags));
    let mut dbc = DbCommon::parse("memcache", name, &key_format);
    dbc.parse_domain(&parser);
    Ok(Box::new(Memcache {
        name: name.to_string(),
        flags: dict_flags | flags::FIXED | flags::MULTI_WRITER,
        writable: mode != OpenMode::ReadOnly,
        key_format,
        timeout,
        ttl,
        mc_flags,
        err_pause,
        max_tries,
        max_line: max_line as usize,
        max_data: max_data as usize,
        transport,
        endpoint: endpoint.to_string(),
        conn: None,
        errno: String::new(),
        dbc,
        backup,
        key_buf: String::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_line_as_sscanf() {
        assert_eq!(value_length("VALUE k 0 12"), Some(12));
        assert_eq!(value_length("VALUE  k  0   +7junk"), Some(7));
        assert_eq!(value_length("VALUE k 0 -5"), Some(-5));
        assert_eq!(value_length("VALUEk 0 3"), Some(3));
        assert_eq!(value_length("VALUE k 0"), None);
        assert_eq!(value_length("VALUE k 0 x"), None);
        assert_eq!(value_length("HUH"), None);
    }
}
