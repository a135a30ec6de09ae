//! `socketmap:inet:host:port:name` and `socketmap:unix:/path:name`: the
//! Sendmail socketmap protocol client (Postfix's dict_sockmap). A request is
//! the netstring `name key`; the reply is a netstring `OK value`,
//! `NOTFOUND `, `TEMP reason`, `TIMEOUT reason` or `PERM reason`.
//!
//! Mapping, as Postfix: OK gives the value (an `OK` without a space is "not
//! found"); NOTFOUND is "not found"; TEMP, TIMEOUT and anything unknown are
//! temporary errors; PERM is a configuration error. A broken connection is
//! retried once on a new one. Limits: 100 s for connect/read/write, replies
//! up to 100000 bytes, a connection idle for 10 s or older than 100 s is
//! replaced before the next request.

use super::connect::{Stream, Tracked, in_progress, inet_connect, unix_connect};
use super::helpers::{fold_if, require_read_only};
use super::{Dict, DictError, OpenError, OpenMode, flags};
use crate::global::msg;
use crate::util::netstring::{self, NetstringError};
use crate::util::{latin1, stringops};
use std::io::BufReader;
use std::time::{Duration, Instant};

/// Time limits and sizes (Postfix's defaults).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub max_reply: usize,
    pub max_idle: Duration,
    pub max_ttl: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(100),
            max_reply: 100_000,
            max_idle: Duration::from_secs(10),
            max_ttl: Duration::from_secs(100),
        }
    }
}

enum Transport {
    Inet,
    Unix,
}

struct Conn {
    stream: BufReader<Tracked<Stream>>,
    opened: Instant,
    used: Instant,
}

struct Sockmap {
    name: String,
    flags: u32,
    transport: Transport,
    endpoint: String,
    map: String,
    limits: Limits,
    conn: Option<Conn>,
    /// What Postfix's `%m` would show (its errno) after the last failure.
    errno: String,
}

impl Sockmap {
    fn connect(&mut self) -> Result<(), String> {
        if let Some(c) = &self.conn
            && (c.used.elapsed() >= self.limits.max_idle
                || c.opened.elapsed() >= self.limits.max_ttl)
        {
            self.conn = None;
        }
        if self.conn.is_some() {
            return Ok(());
        }
        let stream = match self.transport {
            Transport::Inet => inet_connect(&self.endpoint, self.limits.timeout).map(Stream::Tcp),
            Transport::Unix => unix_connect(&self.endpoint).map(Stream::Unix),
        };
        match stream {
            Ok(s) => {
                s.set_timeout(self.limits.timeout);
                // Postfix's `%m` after a later failure shows the errno its
                // connect left behind: EINPROGRESS from the non-blocking TCP
                // connect; for a UNIX socket the connect leaves errno alone,
                // so it holds whatever start-up left: 0 ("Application error")
                // on a host where mail_owner exists, as on every Postfix host.
                self.errno = match s {
                    Stream::Tcp(_) => in_progress(),
                    Stream::Unix(_) => super::fail::APPLICATION_ERROR.to_string(),
                };
                let now = Instant::now();
                self.conn = Some(Conn {
                    stream: BufReader::new(Tracked::new(s)),
                    opened: now,
                    used: now,
                });
                Ok(())
            }
            Err(e) => {
                msg::warn(&format!("connect to {}: {e}", self.endpoint));
                self.errno = e.clone();
                Err(e)
            }
        }
    }

    fn exchange(&mut self, request: &[u8]) -> Result<Vec<u8>, NetstringError> {
        let max = self.limits.max_reply;
        let c = self.conn.as_mut().ok_or(NetstringError::Eof)?;
        c.used = Instant::now();
        let r = netstring::put(c.stream.get_mut(), request)
            .and_then(|_| netstring::get(&mut c.stream, max));
        if let Some(e) = c.stream.get_mut().last_errno.take() {
            self.errno = e;
        }
        r
    }
}

impl Dict for Sockmap {
    fn type_name(&self) -> &str {
        "socketmap"
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
        let key = fold_if(self.flags, flags::FOLD_MUL, key);
        let request = latin1::encode(&format!("{} {}", self.map, key));
        let mut attempt = 0;
        let reply = loop {
            if let Err(e) = self.connect() {
                msg::warn(&format!("table socketmap:{} lookup error: {e}", self.name));
                return Err(DictError::Retry(e));
            }
            match self.exchange(&request) {
                Ok(r) => break r,
                Err(e) => {
                    self.conn = None;
                    if attempt == 0 && e == NetstringError::Eof {
                        attempt += 1;
                        continue;
                    }
                    msg::warn(&format!(
                        "table socketmap:{} lookup error: {}",
                        self.name,
                        e.text()
                    ));
                    return Err(DictError::Retry(self.errno.clone()));
                }
            }
        };
        let mut reply = latin1::decode(&reply);
        if let Some(i) = reply.find('\0') {
            reply.truncate(i);
        }
        let (status, payload) = match reply.find(' ') {
            Some(i) => (&reply[..i], Some(&reply[i + 1..])),
            None => (reply.as_str(), None),
        };
        let (class, err) = match status {
            "OK" => return Ok(payload.map(str::to_string)),
            "NOTFOUND" => return Ok(None),
            "TEMP" => ("temporary", DictError::Retry(String::new())),
            "TIMEOUT" => ("timeout", DictError::Retry(String::new())),
            "PERM" => ("permanent", DictError::Config(String::new())),
            _ => ("unknown", DictError::Retry(String::new())),
        };
        let payload = payload
            .unwrap_or("")
            .trim_start_matches(stringops::is_space);
        let mut shown = stringops::printable(payload, '?', true);
        if shown.len() > 200 {
            let cut = shown
                .char_indices()
                .nth(200)
                .map(|(i, _)| i)
                .unwrap_or(shown.len());
            shown.truncate(cut);
        }
        msg::warn(&format!(
            "socketmap:{} socketmap server {class} error{}{shown}",
            self.name,
            if payload.is_empty() { "" } else { ": " }
        ));
        Err(match err {
            DictError::Retry(_) => DictError::Retry(self.errno.clone()),
            _ => DictError::Config(self.errno.clone()),
        })
    }
}

/// Open a socketmap client with explicit limits (tests use short ones).
pub fn open_with(
    name: &str,
    mode: OpenMode,
    dict_flags: u32,
    limits: Limits,
) -> Result<Box<dyn Dict>, OpenError> {
    require_read_only("socketmap", name, mode)?;
    if dict_flags & flags::NO_UNAUTH != 0 {
        return Err(OpenError(format!(
            "socketmap:{name} map is not allowed for security-sensitive data"
        )));
    }
    let Some(i) = name.rfind(':') else {
        return Err(OpenError(
            "socketmap requires server:socketmap argument".to_string(),
        ));
    };
    let (server, map) = (&name[..i], &name[i + 1..]);
    let (transport, endpoint) = match server.find(':') {
        Some(j) if j > 0 && j + 1 < server.len() => (&server[..j], &server[j + 1..]),
        _ => {
            return Err(OpenError(format!(
                "need service transport:endpoint instead of \"{server}\""
            )));
        }
    };
    let transport = match transport {
        "inet" => Transport::Inet,
        "unix" | "local" => Transport::Unix,
        _ => {
            return Err(OpenError(format!(
                "invalid transport name: {transport} in service: {server}"
            )));
        }
    };
    Ok(Box::new(Sockmap {
        name: name.to_string(),
        flags: dict_flags | flags::PATTERN,
        transport,
        endpoint: endpoint.to_string(),
        map: map.to_string(),
        limits,
        conn: None,
        errno: super::fail::APPLICATION_ERROR.to_string(),
    }))
}

/// Open `socketmap:transport:endpoint:name`.
pub fn open(name: &str, mode: OpenMode, dict_flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    open_with(name, mode, dict_flags, Limits::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_errors() {
        let e = |n: &str| open(n, OpenMode::ReadOnly, 0).err().unwrap().0;
        assert_eq!(e("foo"), "socketmap requires server:socketmap argument");
        assert_eq!(
            e("bar:x:foo"),
            "invalid transport name: bar in service: bar:x"
        );
        assert_eq!(
            e("inet::foo"),
            "need service transport:endpoint instead of \"inet:\""
        );
        assert_eq!(
            open("inet:h:1:m", OpenMode::ReadOnly, flags::NO_UNAUTH)
                .err()
                .unwrap()
                .0,
            "socketmap:inet:h:1:m map is not allowed for security-sensitive data"
        );
    }
}
