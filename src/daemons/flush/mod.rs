//! Replaces flush(8) of Postfix 3.7: the fast flush service. It keeps one
//! log per eligible destination (fast_flush_domains) in
//! `$queue_directory/flush/` with the IDs of mail deferred for it, and on
//! ETRN / `postqueue -s` / `sendmail -qR` moves those messages from the
//! deferred queue to the incoming queue and wakes up the queue manager.
//!
//! Protocol (attr_print0): the server announces
//! `protocol=queue_flush_protocol`; the client sends `request=add` (with
//! site, queue_id), `send_site` (site), `send_file` (queue_id), `rfrsh`,
//! `purge`, or a bare wakeup trigger `W`; the server answers `status=N`
//! (0 ok, 3 bad request, 4 denied, -1 failed).
//!
//! Trust: requests come from local mail system processes. Privilege:
//! mail_owner. Parameters: fast_flush_domains, fast_flush_purge_time,
//! fast_flush_refresh_time, parent_domain_matches_subdomains,
//! queue_service_name, ipc_timeout.

use crate::global::flush_clnt::{self, STAT_BAD, STAT_DENY, STAT_FAIL, STAT_OK};
use crate::global::mail_conf::MailConf;
use crate::global::mail_queue::{QueueConf, id_ok};
use crate::global::match_list::MatchList;
use crate::global::msg;
use crate::master::server::{Conn, Server};
use crate::sys::lock::{LockOp, flock};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::time::{Duration, SystemTime};

/// Map a site name to its log file name (flush_site_to_path): ASCII
/// letters and digits lowercased, everything else `_`. `None` for a
/// name that cannot be made ASCII.
pub fn site_to_path(site: &str) -> Option<String> {
    if !site.is_ascii() {
        return None;
    }
    Some(
        site.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    b.to_ascii_lowercase() as char
                } else {
                    '_'
                }
            })
            .collect(),
    )
}

/// The service state.
pub struct Flush {
    pub queue: QueueConf,
    pub domains: MatchList,
    pub qmgr_service: String,
    pub refresh_time: u64,
    pub purge_time: u64,
}

impl Flush {
    pub fn from_conf(conf: &MailConf) -> Flush {
        let mut queue = QueueConf::from_conf(conf).unwrap_or_else(|e| msg::fatal(&e.0));
        // The server runs in the queue directory (possibly chrooted there).
        queue.queue_directory = ".".into();
        let t = |n: &str| {
            conf.get_time(n, 's', 1, 0)
                .unwrap_or_else(|e| msg::fatal(&e.0)) as u64
        };
        Flush {
            queue,
            domains: flush_clnt::flush_domains(conf),
            qmgr_service: conf
                .lookup_eval("queue_service_name")
                .ok()
                .flatten()
                .unwrap_or_else(|| "qmgr".into()),
            refresh_time: t("fast_flush_refresh_time"),
            purge_time: t("fast_flush_purge_time"),
        }
    }

    fn eligible(&mut self, site: &str) -> Result<String, i32> {
        if !self.domains.matches(&[site]) {
            return Err(if self.domains.error {
                STAT_FAIL
            } else {
                STAT_DENY
            });
        }
        site_to_path(site).ok_or(STAT_DENY)
    }

    fn log_path(&self, name: &str) -> std::path::PathBuf {
        self.queue.abs_path("flush", name)
    }

    fn trigger(&self, bytes: &[u8]) {
        let dir = crate::util::latin1::to_path(&self.queue.queue_directory);
        trigger(
            &std::path::Path::new(&dir)
                .join("public")
                .join(&self.qmgr_service),
            bytes,
        );
    }

    /// flush_add_service.
    pub fn add(&mut self, site: &str, queue_id: &str) -> i32 {
        let name = match self.eligible(site) {
            Ok(n) => n,
            Err(s) => return s,
        };
        let path = self.log_path(&name);
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = match std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) => msg::fatal(&format!(
                "flush_add_path: open fast flush logfile {name}: {}",
                crate::global::config_file::errno_text(&e)
            )),
        };
        if let Err(e) = flock(&f, LockOp::Exclusive) {
            msg::fatal(&format!(
                "flush_add_path: lock fast flush logfile {name}: {}",
                crate::global::config_file::errno_text(&e)
            ));
        }
        if let Err(e) = writeln!(f, "{queue_id}").and_then(|_| f.flush()) {
            msg::warn(&format!(
                "write fast flush logfile {name}: {}",
                crate::global::config_file::errno_text(&e)
            ));
        }
        let _ = flock(&f, LockOp::Unlock);
        STAT_OK
    }

    /// Make one deferred message eligible for delivery now
    /// (flush_one_file): touch it and move it to the incoming queue.
    fn one_file(&self, queue_id: &str) -> bool {
        let now = SystemTime::now();
        for queue in ["deferred", "incoming"] {
            let path = self.queue.abs_path(queue, queue_id);
            let touched = std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| {
                    f.set_times(
                        std::fs::FileTimes::new()
                            .set_accessed(now)
                            .set_modified(now),
                    )
                });
            match touched {
                Ok(()) => {
                    if queue == "deferred"
                        && let Err(e) = self.queue.rename(queue_id, queue, "incoming")
                        && e.kind() != std::io::ErrorKind::NotFound
                    {
                        msg::warn(&format!(
                            "{}: rename from {queue} to incoming: {}",
                            path.display(),
                            crate::global::config_file::errno_text(&e)
                        ));
                    }
                    return true;
                }
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        msg::warn(&format!(
                            "flush_one_file: update {} time stamps: {}",
                            path.display(),
                            crate::global::config_file::errno_text(&e)
                        ));
                    }
                }
            }
        }
        false
    }

    /// flush_send_path: deliver what a log lists, then empty it.
    fn send_path(&self, name: &str, unthrottle: bool) -> i32 {
        if !id_ok(name) {
            return STAT_BAD;
        }
        let path = self.log_path(name);
        let mut f = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return STAT_OK,
            Err(e) => msg::fatal(&format!(
                "flush_send_path: open fast flush logfile {name}: {}",
                crate::global::config_file::errno_text(&e)
            )),
        };
        if let Err(e) = flock(&f, LockOp::Exclusive) {
            msg::fatal(&format!(
                "flush_send_path: lock fast flush logfile {name}: {}",
                crate::global::config_file::errno_text(&e)
            ));
        }
        if unthrottle {
            self.trigger(b"F");
        }
        let mut text = Vec::new();
        let _ = f.read_to_end(&mut text);
        let mut seen = HashSet::new();
        let mut count = 0;
        for line in text.split(|&b| b == b'\n') {
            let id = String::from_utf8_lossy(line).to_string();
            if line.is_empty() {
                continue;
            }
            count += 1;
            if !id_ok(&id) {
                let shown: String = id.chars().take(30).collect();
                msg::warn(&format!(
                    "bad queue id \"{shown}...\" in fast flush logfile {name}"
                ));
                continue;
            }
            if seen.len() >= 10000 || seen.insert(id.clone()) {
                self.one_file(&id);
            }
        }
        if count > 0 {
            let _ = f.set_len(0);
            let _ = f.rewind();
        }
        let now = SystemTime::now();
        let _ = f.set_times(
            std::fs::FileTimes::new()
                .set_accessed(now)
                .set_modified(now),
        );
        let _ = flock(&f, LockOp::Unlock);
        if count > 0 {
            self.trigger(b"I");
        }
        STAT_OK
    }

    /// flush_send_service.
    pub fn send_site(&mut self, site: &str) -> i32 {
        match self.eligible(site) {
            Ok(n) => self.send_path(&n, true),
            Err(s) => s,
        }
    }

    /// flush_send_file_service.
    pub fn send_file(&self, queue_id: &str) -> i32 {
        if !id_ok(queue_id) {
            return STAT_BAD;
        }
        // UNTHROTTLE_AFTER: the group read bit tells qmgr to revive the
        // message's dead destinations and ignore defer_transports once.
        for queue in ["deferred", "incoming"] {
            use std::os::unix::fs::PermissionsExt;
            let path = self.queue.abs_path(queue, queue_id);
            if let Ok(m) = std::fs::metadata(&path) {
                let mode = m.permissions().mode() & 0o7777;
                let _ =
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode | 0o040));
                break;
            }
        }
        if self.one_file(queue_id) {
            self.trigger(b"I");
        }
        STAT_OK
    }

    /// flush_refresh_service: flush logs not read for `max_age` seconds,
    /// remove empty ones unchanged for fast_flush_purge_time.
    pub fn refresh(&self, max_age: u64) {
        let dir = std::path::Path::new(&crate::util::latin1::to_path(&self.queue.queue_directory))
            .join("flush");
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let now = SystemTime::now();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !id_ok(&name) {
                continue;
            }
            let Ok(st) = e.metadata() else { continue };
            let age = |t: std::io::Result<SystemTime>| {
                t.ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .unwrap_or(Duration::ZERO)
                    .as_secs()
            };
            if st.len() == 0 {
                if age(st.modified()) >= self.purge_time
                    && let Err(e) = std::fs::remove_file(e.path())
                {
                    msg::warn(&format!(
                        "remove logfile {name}: {}",
                        crate::global::config_file::errno_text(&e)
                    ));
                }
                continue;
            }
            if age(st.accessed()) >= max_age {
                self.send_path(&name, false);
            }
        }
    }
}

/// Send a one-byte request to a public trigger service (fifo or socket).
fn trigger(path: &std::path::Path, bytes: &[u8]) {
    let path = path.display().to_string();
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let ok = match std::fs::metadata(&path) {
        Ok(m) if m.file_type().is_fifo() => std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .and_then(|mut f| f.write_all(bytes))
            .is_ok(),
        Ok(_) => std::os::unix::net::UnixStream::connect(&path)
            .and_then(|mut s| s.write_all(bytes))
            .is_ok(),
        Err(_) => false,
    };
    if !ok && msg::verbose() > 0 {
        msg::info(&format!("trigger {path} failed"));
    }
}

fn read_str(r: &mut dyn BufRead) -> Option<String> {
    let mut b = Vec::new();
    let n = r.read_until(0, &mut b).ok()?;
    if n == 0 || b.pop() != Some(0) {
        return None;
    }
    Some(crate::util::latin1::decode(&b))
}

/// What the client asked for.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub request: String,
    pub attrs: Vec<(String, String)>,
}

/// Read a request (flush_request_receive): a bare trigger string, or
/// `request` plus attributes up to the terminator.
pub fn read_request(r: &mut dyn BufRead) -> Option<Request> {
    let first = read_str(r)?;
    if first != "request" {
        return Some(Request {
            request: first,
            attrs: Vec::new(),
        });
    }
    let request = read_str(r)?;
    let mut attrs = Vec::new();
    loop {
        let n = read_str(r)?;
        if n.is_empty() {
            break;
        }
        let v = read_str(r)?;
        attrs.push((n, v));
        if attrs.len() > 10 {
            return None;
        }
    }
    Some(Request { request, attrs })
}

/// Serve one request; returns the reply and whether to refresh
/// afterwards (max age).
pub fn handle(f: &mut Flush, req: Option<Request>) -> (i32, Option<u64>) {
    let Some(req) = req else {
        return (STAT_BAD, None);
    };
    let get = |names: &[&str]| -> Option<Vec<String>> {
        if req.attrs.len() != names.len() {
            return None;
        }
        names
            .iter()
            .zip(&req.attrs)
            .map(|(n, (an, av))| (n == an).then(|| av.clone()))
            .collect()
    };
    match req.request.as_str() {
        "add" => match get(&["site", "queue_id"]) {
            Some(v) if id_ok(&v[1]) => (f.add(&v[0], &v[1]), None),
            _ => (STAT_BAD, None),
        },
        "send_site" => match get(&["site"]) {
            Some(v) => (f.send_site(&v[0]), None),
            None => (STAT_BAD, None),
        },
        "send_file" => match get(&["queue_id"]) {
            Some(v) => (f.send_file(&v[0]), None),
            None => (STAT_BAD, None),
        },
        "rfrsh" | "W" => (STAT_OK, Some(f.refresh_time)),
        "purge" => (STAT_OK, Some(0)),
        _ => (STAT_BAD, None),
    }
}

fn service(conn: &mut Conn, server: &Server) {
    if let Some(a) = server.options.args.first() {
        msg::fatal(&format!("unexpected command-line argument: {a}"));
    }
    let mut f = Flush::from_conf(&server.conf);
    let mut hello = Vec::new();
    hello.extend_from_slice(b"protocol\0");
    hello.extend_from_slice(flush_clnt::PROTO.as_bytes());
    hello.extend_from_slice(b"\0\0");
    if conn.write_all(&hello).is_err() {
        return;
    }
    let ipc = server
        .conf
        .get_time("ipc_timeout", 's', 1, 0)
        .unwrap_or(3600)
        .max(1) as u64;
    if let Conn::Unix(s) = &*conn {
        let _ = s.set_read_timeout(Some(Duration::from_secs(ipc)));
    }
    let req = {
        let mut r = BufReader::new(&mut *conn);
        read_request(&mut r)
    };
    let (status, refresh) = handle(&mut f, req);
    let reply = format!("status\0{status}\0\0");
    let _ = conn.write_all(reply.as_bytes());
    let _ = conn.flush();
    if let Some(age) = refresh {
        f.refresh(age);
    }
}

/// The daemon entry.
pub fn main(args: Vec<std::ffi::OsString>) -> i32 {
    crate::master::server::single_server(args, service)
}

#[cfg(test)]
mod tests;
