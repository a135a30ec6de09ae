//! Replaces anvil(8) of Postfix 3.7: the connection count and rate
//! keeper that smtpd asks before it serves a client, sends a message or
//! takes a recipient.
//!
//! Trusts its clients (local daemons on a private socket) for nothing but
//! the protocol: each request is `request=NAME`, `ident=SERVICE:ADDR`, an
//! empty line; each answer `status=0` and the counters. Runs as mail_owner
//! under master's multi-client skeleton, one process (`anvil unix - - y -
//! 1 anvil`). Reads anvil_rate_time_unit (the rate window: counters
//! restart when it has passed) and anvil_status_update_time (how often the
//! peaks are logged as `statistics: ...`, also logged at exit).

use crate::global::msg;
use crate::master::server::{DropClient, MultiService, Server};
use std::collections::HashMap;
use std::ffi::OsString;
use std::time::{Duration, Instant};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Counters for one remote client of one service.
#[derive(Debug, Clone, Default)]
struct Remote {
    count: u32,
    rate: u32,
    mail: u32,
    rcpt: u32,
    ntls: u32,
    auth: u32,
    start: i64,
    /// When a remote with no connections left is forgotten.
    expire: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Rate,
    Mail,
    Rcpt,
    Ntls,
    Auth,
}

impl Remote {
    fn reset_rates(&mut self, start: i64) {
        self.rate = 0;
        self.mail = 0;
        self.rcpt = 0;
        self.ntls = 0;
        self.auth = 0;
        self.start = start;
    }
    fn incr(&mut self, w: Which, unit: i64, t: i64) -> u32 {
        if self.start + unit < t {
            self.reset_rates(t);
        }
        let f = match w {
            Which::Rate => &mut self.rate,
            Which::Mail => &mut self.mail,
            Which::Rcpt => &mut self.rcpt,
            Which::Ntls => &mut self.ntls,
            Which::Auth => &mut self.auth,
        };
        *f = f.saturating_add(1).min(i32::MAX as u32);
        *f
    }
}

/// A peak value, who reached it and when.
#[derive(Debug, Clone, Default)]
struct Max {
    value: u32,
    ident: String,
    when: i64,
}

impl Max {
    fn update(&mut self, v: u32, ident: &str, t: i64) {
        if v > self.value {
            self.value = v;
            self.ident = ident.to_string();
            self.when = t;
        }
    }
}

/// The anvil state: pure, no I/O (tests drive it directly).
pub struct Anvil {
    unit: i64,
    remotes: HashMap<String, Remote>,
    /// Each local client's (smtpd's) current remote.
    locals: HashMap<u64, Option<String>>,
    max_conn_count: Max,
    max_conn_rate: Max,
    max_mail: Max,
    max_rcpt: Max,
    max_ntls: Max,
    max_auth: Max,
    max_cache: u32,
    max_cache_time: i64,
    stat_every: Duration,
    next_stat: Instant,
}

fn stamp(t: i64) -> String {
    crate::sys::time::asctime_local(t)
        .map(|s| s.get(4..19).unwrap_or("").to_string())
        .unwrap_or_default()
}

fn answer(pairs: &[(&str, i64)]) -> Vec<u8> {
    let mut s = String::new();
    for (k, v) in pairs {
        s.push_str(&format!("{k}={v}\n"));
    }
    s.push('\n');
    s.into_bytes()
}

impl Anvil {
    pub fn new(unit_secs: i64, stat_every: Duration) -> Anvil {
        Anvil {
            unit: unit_secs.max(1),
            remotes: HashMap::new(),
            locals: HashMap::new(),
            max_conn_count: Max::default(),
            max_conn_rate: Max::default(),
            max_mail: Max::default(),
            max_rcpt: Max::default(),
            max_ntls: Max::default(),
            max_auth: Max::default(),
            max_cache: 0,
            max_cache_time: 0,
            stat_every,
            next_stat: Instant::now() + stat_every,
        }
    }

    fn drop_one(&mut self, ident: &str, t: i64) {
        if let Some(r) = self.remotes.get_mut(ident)
            && r.count > 0
        {
            r.count -= 1;
            if r.count == 0 {
                r.expire = Some(t + self.unit);
            }
        }
    }

    /// A new connection of `ident` for local client `id`.
    fn conn_update(&mut self, id: u64, ident: &str, t: i64) {
        let unit = self.unit;
        match self.remotes.get_mut(ident) {
            None => {
                self.remotes.insert(
                    ident.to_string(),
                    Remote {
                        count: 1,
                        rate: 1,
                        start: t,
                        ..Remote::default()
                    },
                );
                let n = self.remotes.len() as u32;
                if n > self.max_cache {
                    self.max_cache = n;
                    self.max_cache_time = t;
                }
            }
            Some(r) => {
                r.incr(Which::Rate, unit, t);
                r.expire = None;
                r.count += 1;
            }
        }
        // One remote per local client: a new connect releases the old one.
        if let Some(Some(old)) = self.locals.insert(id, Some(ident.to_string())) {
            self.drop_one(&old, t);
        }
    }

    /// Handle one request from local client `id`: the answer bytes.
    pub fn request(&mut self, id: u64, req: &str, ident: &str, t: i64) -> Vec<u8> {
        let unit = self.unit;
        match req {
            "connect" => {
                self.conn_update(id, ident, t);
                let r = &self.remotes[ident];
                let (count, rate) = (r.count, r.rate);
                self.max_conn_rate.update(rate, ident, t);
                self.max_conn_count.update(count, ident, t);
                answer(&[
                    ("status", 0),
                    ("count", count as i64),
                    ("rate", rate as i64),
                ])
            }
            "message" | "recipient" | "newtls" | "auth" => {
                if !self.remotes.contains_key(ident) {
                    self.conn_update(id, ident, t);
                }
                let w = match req {
                    "message" => Which::Mail,
                    "recipient" => Which::Rcpt,
                    "newtls" => Which::Ntls,
                    _ => Which::Auth,
                };
                let v = self
                    .remotes
                    .get_mut(ident)
                    .map(|r| r.incr(w, unit, t))
                    .unwrap_or(0);
                match w {
                    Which::Mail => self.max_mail.update(v, ident, t),
                    Which::Rcpt => self.max_rcpt.update(v, ident, t),
                    Which::Ntls => self.max_ntls.update(v, ident, t),
                    _ => self.max_auth.update(v, ident, t),
                }
                answer(&[("status", 0), ("rate", v as i64)])
            }
            "newtls_status" => {
                let v = match self.remotes.get_mut(ident) {
                    None => 0,
                    Some(r) => {
                        if r.start != 0 && r.start + unit < t {
                            r.reset_rates(0);
                        }
                        r.ntls
                    }
                };
                answer(&[("status", 0), ("rate", v as i64)])
            }
            "disconnect" => {
                let linked = self.locals.get(&id).and_then(|o| o.as_deref()) == Some(ident);
                if linked && self.remotes.contains_key(ident) {
                    self.drop_one(ident, t);
                    self.locals.insert(id, None);
                }
                answer(&[("status", 0)])
            }
            "lookup" => match self.remotes.get_mut(ident) {
                None => answer(&[
                    ("status", 0),
                    ("count", 0),
                    ("rate", 0),
                    ("mail", 0),
                    ("rcpt", 0),
                    ("newtls", 0),
                    ("auth", 0),
                ]),
                Some(r) => {
                    if r.start != 0 && r.start + unit < t {
                        r.reset_rates(0);
                    }
                    answer(&[
                        ("status", 0),
                        ("count", r.count as i64),
                        ("rate", r.rate as i64),
                        ("mail", r.mail as i64),
                        ("rcpt", r.rcpt as i64),
                        ("newtls", r.ntls as i64),
                        ("auth", r.auth as i64),
                    ])
                }
            },
            _ => {
                msg::warn(&format!("unrecognized request: \"{req}\", ignored"));
                answer(&[("status", -1)])
            }
        }
    }

    /// A local client went away: release its remote.
    pub fn local_gone(&mut self, id: u64, t: i64) {
        if let Some(Some(ident)) = self.locals.remove(&id) {
            self.drop_one(&ident, t);
        }
    }

    /// Forget remotes whose last connection ended a time unit ago.
    pub fn expire(&mut self, t: i64) {
        self.remotes
            .retain(|_, r| !(r.count == 0 && r.expire.is_some_and(|e| e <= t)));
    }

    /// The peak statistics lines (and reset the peaks).
    pub fn status_lines(&mut self) -> Vec<String> {
        let unit = self.unit;
        let mut out = Vec::new();
        let mut rate = |m: &mut Max, name: &str| {
            if m.value > 0 {
                out.push(format!(
                    "statistics: max {name} rate {}/{unit}s for ({}) at {}",
                    m.value,
                    m.ident,
                    stamp(m.when)
                ));
                m.value = 0;
            }
        };
        rate(&mut self.max_conn_rate, "connection");
        if self.max_conn_count.value > 0 {
            let m = &mut self.max_conn_count;
            out.push(format!(
                "statistics: max connection count {} for ({}) at {}",
                m.value,
                m.ident,
                stamp(m.when)
            ));
            m.value = 0;
        }
        let mut rate = |m: &mut Max, name: &str| {
            if m.value > 0 {
                out.push(format!(
                    "statistics: max {name} rate {}/{unit}s for ({}) at {}",
                    m.value,
                    m.ident,
                    stamp(m.when)
                ));
                m.value = 0;
            }
        };
        rate(&mut self.max_mail, "message");
        rate(&mut self.max_rcpt, "recipient");
        rate(&mut self.max_ntls, "newtls");
        rate(&mut self.max_auth, "auth");
        if self.max_cache > 0 {
            out.push(format!(
                "statistics: max cache size {} at {}",
                self.max_cache,
                stamp(self.max_cache_time)
            ));
            self.max_cache = 0;
        }
        out
    }
}

/// Split complete requests off the front of `buf`: (request, ident)
/// pairs, or Err when a request is malformed.
fn take_requests(buf: &mut Vec<u8>) -> Result<Vec<(String, String)>, DropClient> {
    let mut out = Vec::new();
    loop {
        let Some(end) = buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2) else {
            // A lone empty line is a request without attributes.
            if buf.first() == Some(&b'\n') {
                return Err(DropClient);
            }
            return Ok(out);
        };
        let text = crate::util::latin1::decode(&buf[..end]);
        buf.drain(..end);
        let mut req = None;
        let mut ident = None;
        for (k, line) in text.lines().filter(|l| !l.is_empty()).enumerate() {
            let (n, v) = line.split_once('=').ok_or(DropClient)?;
            match (k, n) {
                (0, "request") => req = Some(v.to_string()),
                (1, "ident") => ident = Some(v.to_string()),
                _ => {
                    msg::warn(&format!(
                        "unexpected attribute {n} from {} socket (expecting: {})",
                        "private/anvil",
                        if k == 0 { "request" } else { "ident" }
                    ));
                    return Err(DropClient);
                }
            }
        }
        match (req, ident) {
            (Some(r), Some(i)) => out.push((r, i)),
            _ => return Err(DropClient),
        }
    }
}

struct Service {
    anvil: Anvil,
}

impl MultiService for Service {
    fn accept(&mut self, id: u64) -> Vec<u8> {
        self.anvil.locals.insert(id, None);
        b"protocol=anvil\n\n".to_vec()
    }
    fn input(&mut self, id: u64, input: &mut Vec<u8>) -> Result<Vec<u8>, DropClient> {
        let reqs = take_requests(input)?;
        let t = now();
        let mut out = Vec::new();
        for (r, i) in reqs {
            out.extend(self.anvil.request(id, &r, &i, t));
        }
        Ok(out)
    }
    fn disconnect(&mut self, id: u64) {
        self.anvil.local_gone(id, now());
    }
    fn tick(&mut self, _server: &Server) -> Option<Duration> {
        let t = now();
        self.anvil.expire(t);
        let n = Instant::now();
        if n >= self.anvil.next_stat {
            for l in self.anvil.status_lines() {
                msg::info(&l);
            }
            self.anvil.next_stat = n + self.anvil.stat_every;
        }
        let until_stat = self.anvil.next_stat.saturating_duration_since(n);
        Some(until_stat.min(Duration::from_secs(1)))
    }
    fn exit(&mut self) {
        for l in self.anvil.status_lines() {
            msg::info(&l);
        }
    }
    fn min_idle(&self, _server: &Server) -> i64 {
        self.anvil.unit
    }
}

/// anvil(8), run by master.
pub fn main(args: Vec<OsString>) -> i32 {
    // The configuration is read by the skeleton; the times are needed
    // before the service exists, so read them here the same way.
    let conf = crate::global::mail_conf::MailConf::read(None).ok();
    let mut overrides = Vec::new();
    let argv: Vec<String> = args
        .iter()
        .map(|a| crate::util::latin1::from_os(a))
        .collect();
    for w in argv.windows(2) {
        if w[0] == "-o"
            && let Some((n, v)) = w[1].split_once('=')
        {
            overrides.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    let (unit, stat) = match conf {
        Some(mut c) => {
            for (n, v) in &overrides {
                c.set(n, v);
            }
            (
                c.get_time("anvil_rate_time_unit", 's', 1, 0).unwrap_or(60),
                c.get_time("anvil_status_update_time", 's', 1, 0)
                    .unwrap_or(600),
            )
        }
        None => (60, 600),
    };
    let mut svc = Service {
        anvil: Anvil::new(unit, Duration::from_secs(stat.max(1) as u64)),
    };
    crate::master::server::multi_server(args, None, &mut svc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(b: Vec<u8>) -> String {
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn counts_and_rates() {
        let mut a = Anvil::new(60, Duration::from_secs(600));
        assert_eq!(
            s(a.request(1, "connect", "smtp:1.2.3.4", 100)),
            "status=0\ncount=1\nrate=1\n\n"
        );
        assert_eq!(
            s(a.request(2, "connect", "smtp:1.2.3.4", 101)),
            "status=0\ncount=2\nrate=2\n\n"
        );
        assert_eq!(
            s(a.request(1, "message", "smtp:1.2.3.4", 101)),
            "status=0\nrate=1\n\n"
        );
        assert_eq!(
            s(a.request(1, "disconnect", "smtp:1.2.3.4", 102)),
            "status=0\n\n"
        );
        // The window passed: the rate starts again, the count does not.
        assert_eq!(
            s(a.request(3, "connect", "smtp:1.2.3.4", 200)),
            "status=0\ncount=2\nrate=1\n\n"
        );
        assert!(s(a.request(3, "bogus", "x", 200)).starts_with("status=-1"));
        a.local_gone(2, 201);
        a.local_gone(3, 201);
        a.expire(300);
        assert_eq!(
            s(a.request(9, "lookup", "smtp:1.2.3.4", 300)),
            "status=0\ncount=0\nrate=0\nmail=0\nrcpt=0\nnewtls=0\nauth=0\n\n"
        );
        let lines = a.status_lines();
        assert!(
            lines[0].starts_with("statistics: max connection rate 2/60s for (smtp:1.2.3.4) at ")
        );
        assert!(lines[1].starts_with("statistics: max connection count 2 for (smtp:1.2.3.4) at "));
        assert!(a.status_lines().is_empty());
    }

    #[test]
    fn request_framing() {
        let mut b = b"request=connect\nident=smtp:x\n\nrequest=disc".to_vec();
        assert_eq!(
            take_requests(&mut b).unwrap(),
            vec![("connect".to_string(), "smtp:x".to_string())]
        );
        assert_eq!(b, b"request=disc");
        let mut b = b"ident=x\nrequest=y\n\n".to_vec();
        assert!(take_requests(&mut b).is_err());
    }
}
