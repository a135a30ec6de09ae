//! `tcp:host:port`: Postfix's simple TCP lookup client (dict_tcp). The
//! request is `get KEY\n`, the reply `200 VALUE\n` (found), `500 TEXT\n`
//! (not found) or `400 TEXT\n` (temporary error); key and value are
//! `%XX`-quoted. A connection that fails is retried up to 10 times, one
//! second apart; replies are limited to 4096 bytes; I/O times out after
//! 100 s.

use super::connect::{Tracked, in_progress, inet_connect};
use super::helpers::{fold_if, require_read_only};
use super::{Dict, DictError, OpenError, OpenMode, flags};
use crate::global::msg;
use crate::util::latin1;
use crate::util::stringops::{hex_quote, hex_unquote, is_space, printable};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Retry and time limits (Postfix's defaults).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_try: u32,
    pub pause: Duration,
    pub timeout: Duration,
    pub max_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_try: 10,
            pause: Duration::from_secs(1),
            timeout: Duration::from_secs(100),
            max_len: 4096,
        }
    }
}

struct Tcp {
    name: String,
    flags: u32,
    limits: Limits,
    conn: Option<BufReader<Tracked<TcpStream>>>,
    /// What Postfix's `%m` would show after the last failure.
    last_errno: String,
}

/// How a bounded line read ended.
enum LineEnd {
    Newline,
    /// End of file or an I/O error.
    Eof,
    TooLong,
}

fn read_line_bounded<R: BufRead>(r: &mut R, max: usize, out: &mut Vec<u8>) -> LineEnd {
    out.clear();
    while out.len() < max {
        let buf = match r.fill_buf() {
            Ok([]) => return LineEnd::Eof,
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return LineEnd::Eof,
        };
        let room = max - out.len();
        let take = buf.len().min(room);
        if let Some(i) = buf[..take].iter().position(|&b| b == b'\n') {
            out.extend_from_slice(&buf[..i]);
            r.consume(i + 1);
            return LineEnd::Newline;
        }
        out.extend_from_slice(&buf[..take]);
        r.consume(take);
    }
    // Postfix reads at most `max` bytes; a reply that ends (without a
    // newline) exactly at a read boundary also counts as too long.
    LineEnd::TooLong
}

impl Tcp {
    fn connect(&mut self) -> bool {
        match inet_connect(&self.name, self.limits.timeout) {
            Ok(s) => {
                let _ = s.set_read_timeout(Some(self.limits.timeout));
                let _ = s.set_write_timeout(Some(self.limits.timeout));
                self.conn = Some(BufReader::new(Tracked::new(s)));
                self.last_errno = in_progress();
                true
            }
            Err(e) => {
                msg::warn(&format!("connect to TCP map {}: {e}", self.name));
                self.last_errno = e;
                false
            }
        }
    }
}

impl Dict for Tcp {
    fn type_name(&self) -> &str {
        "tcp"
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
        let request = latin1::encode(&format!("get {}\n", hex_quote(&key)));
        let mut line = Vec::new();
        let mut tries = 0;
        loop {
            if self.conn.is_some() || self.connect() {
                let Some(c) = self.conn.as_mut() else {
                    continue;
                };
                let sent = c
                    .get_mut()
                    .write_all(&request)
                    .and_then(|_| c.get_mut().flush());
                let end = match sent {
                    Ok(()) => read_line_bounded(c, self.limits.max_len, &mut line),
                    Err(_) => LineEnd::Eof,
                };
                if let Some(e) = c.get_mut().last_errno.take() {
                    self.last_errno = e;
                }
                match end {
                    LineEnd::Newline => break,
                    LineEnd::Eof => msg::warn(&format!(
                        "read TCP map reply from {}: unexpected EOF ({})",
                        self.name, self.last_errno
                    )),
                    LineEnd::TooLong => msg::warn(&format!(
                        "read TCP map reply from {}: text longer than {}",
                        self.name, self.limits.max_len
                    )),
                }
                self.conn = None;
            }
            tries += 1;
            if tries >= self.limits.max_try {
                return Err(DictError::Retry(self.last_errno.clone()));
            }
            std::thread::sleep(self.limits.pause);
        }
        let mut text = latin1::decode(&line);
        if let Some(i) = text.find('\0') {
            text.truncate(i);
        }
        let b: Vec<char> = text.chars().collect();
        let shown = || {
            let p = printable(&text, '_', true);
            p.chars().take(100).collect::<String>()
        };
        let well_formed =
            b.len() >= 4 && b[..3].iter().all(|c| c.is_ascii_digit()) && is_space(b[3]);
        let value = if well_formed {
            hex_unquote(&text[4..])
        } else {
            None
        };
        let Some(value) = value else {
            msg::warn(&format!(
                "read TCP map reply from {}: malformed reply: {}",
                self.name,
                shown()
            ));
            self.conn = None;
            return Err(DictError::Retry(self.last_errno.clone()));
        };
        match b[0] {
            '2' => Ok(Some(value)),
            '5' => Ok(None),
            '4' => {
                self.conn = None;
                Err(DictError::Retry(self.last_errno.clone()))
            }
            _ => {
                msg::warn(&format!(
                    "read TCP map reply from {}: bad status code: {}",
                    self.name,
                    shown()
                ));
                self.conn = None;
                Err(DictError::Retry(self.last_errno.clone()))
            }
        }
    }
}

/// Open a tcp client with explicit limits (tests use short ones).
pub fn open_with(
    name: &str,
    mode: OpenMode,
    dict_flags: u32,
    limits: Limits,
) -> Result<Box<dyn Dict>, OpenError> {
    if dict_flags & flags::NO_UNAUTH != 0 {
        return Err(OpenError(format!(
            "tcp:{name} map is not allowed for security sensitive data"
        )));
    }
    require_read_only("tcp", name, mode)?;
    Ok(Box::new(Tcp {
        name: name.to_string(),
        flags: dict_flags | flags::PATTERN,
        limits,
        conn: None,
        last_errno: super::fail::APPLICATION_ERROR.to_string(),
    }))
}

/// Open `tcp:host:port`.
pub fn open(name: &str, mode: OpenMode, dict_flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    open_with(name, mode, dict_flags, Limits::default())
}
