//! smtpd's client of the anvil(8) service (Postfix's anvil_clnt): one
//! connection to `private/anvil` per smtpd process, opened on first use
//! and kept; each request is `request=...`, `ident=SERVICE:ADDR`, an empty
//! line; the answer `status=0` plus the counters asked for. When anvil
//! cannot be reached the limits are simply not enforced, as in Postfix.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// The endpoint, relative to the queue directory.
pub const ANVIL_PATH: &str = "private/anvil";

pub struct AnvilClient {
    conn: Option<BufReader<UnixStream>>,
    timeout: Duration,
    /// The errno of the last failed attempt (Postfix's %m).
    errno: Option<i32>,
}

fn read_attrs(r: &mut BufReader<UnixStream>) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for _ in 0..64 {
        let mut line = Vec::new();
        let n = r.read_until(b'\n', &mut line).ok()?;
        if n == 0 || line.last() != Some(&b'\n') {
            return None;
        }
        line.pop();
        if line.is_empty() {
            return Some(out);
        }
        let l = crate::util::latin1::decode(&line);
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        out.push((k.to_string(), v.to_string()));
    }
    None
}

impl AnvilClient {
    pub fn new(timeout: Duration) -> AnvilClient {
        AnvilClient {
            conn: None,
            timeout,
            errno: None,
        }
    }

    fn open(&mut self, warn: &mut dyn FnMut(String)) -> bool {
        if self.conn.is_some() {
            return true;
        }
        match UnixStream::connect(ANVIL_PATH) {
            Ok(s) => {
                let _ = s.set_read_timeout(Some(self.timeout));
                let _ = s.set_write_timeout(Some(self.timeout));
                let mut r = BufReader::new(s);
                match read_attrs(&mut r) {
                    Some(a) if a.iter().any(|(k, v)| k == "protocol" && v == "anvil") => {
                        self.conn = Some(r);
                        true
                    }
                    _ => {
                        warn(format!("{ANVIL_PATH}: unexpected protocol handshake"));
                        false
                    }
                }
            }
            Err(e) => {
                self.errno = e.raw_os_error();
                warn(format!(
                    "connect to {ANVIL_PATH}: {}",
                    crate::sys::strerror(e.raw_os_error().unwrap_or(0))
                ));
                false
            }
        }
    }

    fn once(&mut self, req: &[u8]) -> Option<Vec<(String, String)>> {
        let c = self.conn.as_mut()?;
        c.get_mut().write_all(req).ok()?;
        read_attrs(c)
    }

    /// One request; the answer's attributes when status is 0. Two tries
    /// with a one-second pause, as Postfix's attr_clnt.
    pub fn request(
        &mut self,
        request: &str,
        ident: &str,
        warn: &mut dyn FnMut(String),
    ) -> Option<Vec<(String, String)>> {
        let ident: String = ident
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        let req = format!("request={request}\nident={ident}\n\n").into_bytes();
        for attempt in 0..2 {
            self.errno = None;
            if self.open(warn)
                && let Some(a) = self.once(&req)
            {
                let ok = a.iter().any(|(k, v)| k == "status" && v == "0");
                return ok.then_some(a);
            }
            self.conn = None;
            let quiet = matches!(
                self.errno,
                None | Some(libc::EPIPE) | Some(libc::ENOENT) | Some(libc::ECONNRESET)
            );
            if attempt == 1 || !quiet {
                let text = match self.errno {
                    Some(e) => crate::sys::strerror(e),
                    None => "Application error".to_string(),
                };
                warn(format!("problem talking to server {ANVIL_PATH}: {text}"));
            }
            if attempt == 1 {
                return None;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        None
    }

    /// `connect`: (count, rate).
    pub fn connect(&mut self, ident: &str, warn: &mut dyn FnMut(String)) -> Option<(u32, u32)> {
        let a = self.request("connect", ident, warn)?;
        Some((get(&a, "count"), get(&a, "rate")))
    }

    /// `message`, `recipient`, `newtls`, `auth`: the rate.
    pub fn rate(&mut self, what: &str, ident: &str, warn: &mut dyn FnMut(String)) -> Option<u32> {
        let a = self.request(what, ident, warn)?;
        Some(get(&a, "rate"))
    }

    pub fn disconnect(&mut self, ident: &str, warn: &mut dyn FnMut(String)) {
        let _ = self.request("disconnect", ident, warn);
    }
}

fn get(a: &[(String, String)], k: &str) -> u32 {
    a.iter()
        .find(|(n, _)| n == k)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

thread_local! {
    static CLIENT: std::cell::RefCell<Option<AnvilClient>> = const { std::cell::RefCell::new(None) };
}

/// Run `f` with this process's anvil client.
pub fn with<T>(timeout: Duration, f: impl FnOnce(&mut AnvilClient) -> T) -> T {
    CLIENT.with(|c| {
        let mut c = c.borrow_mut();
        let cl = c.get_or_insert_with(|| AnvilClient::new(timeout));
        f(cl)
    })
}
