//! `proxy:type:name` (Postfix's dict_proxy.c): the table is looked up by
//! the proxymap service (read-only opens) or updated by the proxywrite
//! service (read-write opens), see [`crate::daemons::proxymap`]. The
//! client connects to `private/SERVICE` relative to the current directory
//! when that exists (daemons run in the queue directory), otherwise to
//! `$queue_directory/private/SERVICE`; one connection per service is
//! shared by all proxied tables of the process, closed after `ipc_idle`
//! idle seconds or `ipc_ttl` seconds of life, and re-made when the server
//! goes away. As in Postfix, a service that cannot be reached is retried
//! (`connect #N to subsystem ...` every 10 s, fatal at the 11th try), and
//! a request that fails is retried every second; a table the server does
//! not approve (`proxy_read_maps`, `proxy_write_maps`) is fatal.
//!
//! With DICT_FLAG_NO_PROXY, and inside the proxymap server itself, the
//! inner table is opened directly.

use super::registry::dict_open;
use super::{Dict, DictError, OpenError, OpenMode, Seq, Status, flags};
use crate::global::attr0;
use crate::global::msg;
use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const STAT_OK: i32 = 0;
const STAT_NOKEY: i32 = 1;
const STAT_RETRY: i32 = 2;
const STAT_BAD: i32 = 3;
const STAT_DENY: i32 = 4;
const STAT_CONFIG: i32 = 5;

const RQST_MASK: u32 = crate::daemons::proxymap::RQST_MASK;
const IMPL_MASK: u32 = crate::daemons::proxymap::IMPL_MASK;
const INST_MASK: u32 = crate::daemons::proxymap::INST_MASK;

static IN_SERVER: AtomicBool = AtomicBool::new(false);

/// The proxymap server opens `proxy:` tables (nested in unionmap and the
/// like) directly, as Postfix's proxymap does.
pub fn set_in_server() {
    IN_SERVER.store(true, Ordering::Relaxed);
}

struct ClientConf {
    queue_dir: String,
    read_service: String,
    write_service: String,
    idle: Duration,
    ttl: Duration,
    timeout: Duration,
}

fn conf() -> &'static ClientConf {
    static C: OnceLock<ClientConf> = OnceLock::new();
    C.get_or_init(|| {
        let c = crate::global::mail_conf::MailConf::read(None).unwrap_or_default();
        let s = |n: &str, d: &str| {
            c.lookup_eval(n)
                .ok()
                .flatten()
                .unwrap_or_else(|| d.to_string())
        };
        let t = |n: &str, d: i64| {
            Duration::from_secs(c.get_time(n, 's', 1, 0).unwrap_or(d).max(1) as u64)
        };
        ClientConf {
            queue_dir: s("queue_directory", "/var/spool/postfix"),
            read_service: s("proxymap_service_name", "proxymap"),
            write_service: s("proxywrite_service_name", "proxywrite"),
            idle: t("ipc_idle", 5),
            ttl: t("ipc_ttl", 1000),
            timeout: t("ipc_timeout", 3600),
        }
    })
}

/// One shared client stream (Postfix's clnt_stream).
struct Stream {
    class: String,
    service: String,
    conn: Option<(BufReader<UnixStream>, Instant, Instant)>,
}

fn streams() -> &'static Mutex<Vec<Stream>> {
    static S: OnceLock<Mutex<Vec<Stream>>> = OnceLock::new();
    S.get_or_init(|| Mutex::new(Vec::new()))
}

fn errno_text(e: &std::io::Error) -> String {
    crate::global::config_file::errno_text(e)
}

impl Stream {
    /// clnt_stream_access: the connected stream, (re)connecting as needed.
    fn access(&mut self) -> Option<&mut BufReader<UnixStream>> {
        let c = conf();
        if let Some((r, born, used)) = &self.conn {
            use std::os::fd::AsRawFd;
            let gone = crate::sys::process::poll_read(&[r.get_ref().as_raw_fd()], 0)
                .map(|v| v[0])
                .unwrap_or(true);
            if gone || used.elapsed() >= c.idle || born.elapsed() >= c.ttl {
                self.conn = None;
            }
        }
        if self.conn.is_none() {
            let s = self.connect_wait();
            let _ = s.set_read_timeout(Some(c.timeout));
            let _ = s.set_write_timeout(Some(c.timeout));
            let mut r = BufReader::new(s);
            // The handshake: the server announces its protocol.
            match attr0::scan(&mut r) {
                Ok(Some(v))
                    if v.len() == 1
                        && v[0].0 == "protocol"
                        && v[0].1 == crate::daemons::proxymap::PROTO => {}
                _ => return None,
            }
            let now = Instant::now();
            self.conn = Some((r, now, now));
        }
        let (r, _, used) = self.conn.as_mut()?;
        *used = Instant::now();
        Some(r)
    }

    /// mail_connect_wait.
    fn connect_wait(&self) -> UnixStream {
        let path = format!("{}/{}", self.class, self.service);
        let mut count = 0;
        loop {
            match UnixStream::connect(crate::util::latin1::to_path(&path)) {
                Ok(s) => return s,
                Err(e) => {
                    count += 1;
                    let text = format!(
                        "connect #{count} to subsystem {}/{}: {}",
                        self.class,
                        self.service,
                        errno_text(&e)
                    );
                    if count > 10 {
                        msg::fatal(&text);
                    }
                    msg::warn(&text);
                    std::thread::sleep(Duration::from_secs(10));
                }
            }
        }
    }

    /// One request and its reply, or the error that broke the exchange.
    fn exchange(&mut self, req: &[(&str, &str)]) -> Result<Vec<(String, String)>, std::io::Error> {
        let Some(r) = self.access() else {
            return Err(std::io::Error::from_raw_os_error(0));
        };
        r.get_mut().write_all(&attr0::encode(req))?;
        match attr0::scan(r)? {
            Some(v) => Ok(v),
            None => Err(std::io::Error::from_raw_os_error(0)),
        }
    }
}

/// Run `req` on `service` until a well-formed reply with these attribute
/// names arrives (Postfix retries forever, one second apart).
fn call(service: &str, op: &str, req: &[(&str, &str)], reply: &[&str]) -> Vec<String> {
    let mut count = 0;
    loop {
        count += 1;
        let res = {
            let mut all = streams().lock().unwrap_or_else(|e| e.into_inner());
            let k = all
                .iter()
                .position(|s| s.service == service)
                .unwrap_or_else(|| {
                    let rel = format!("private/{service}");
                    let class = if std::path::Path::new(&rel).exists() {
                        "private".to_string()
                    } else {
                        format!("{}/private", conf().queue_dir)
                    };
                    all.push(Stream {
                        class,
                        service: service.to_string(),
                        conn: None,
                    });
                    all.len() - 1
                });
            let r = all[k].exchange(req);
            if r.is_err() {
                all[k].conn = None;
            }
            r
        };
        match res {
            Ok(v) if v.len() == reply.len() && v.iter().zip(reply).all(|((n, _), w)| n == w) => {
                return v.into_iter().map(|(_, x)| x).collect();
            }
            Ok(_) => {
                msg::warn(&format!("dict_proxy_{op}: service {service}: Success"));
            }
            Err(e) => {
                let quiet = matches!(
                    e.raw_os_error(),
                    Some(0) | Some(libc::EPIPE) | Some(libc::ENOENT)
                );
                if count > 1 || !quiet {
                    msg::warn(&format!(
                        "dict_proxy_{op}: service {service}: {}",
                        errno_text(&e)
                    ));
                }
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

struct Proxy {
    name: String,
    service: String,
    inst_flags: u32,
    flags: u32,
}

impl Proxy {
    fn req_flags(&self) -> String {
        ((self.inst_flags | (self.flags & RQST_MASK)) as i32).to_string()
    }
}

fn status_of(s: &str) -> i32 {
    crate::global::mail_conf::parse_strtol(s).unwrap_or(-1) as i32
}

impl Dict for Proxy {
    fn type_name(&self) -> &str {
        "proxy"
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
        loop {
            let fl = self.req_flags();
            let v = call(
                &self.service,
                "lookup",
                &[
                    ("request", "lookup"),
                    ("table", &self.name),
                    ("flags", &fl),
                    ("key", key),
                ],
                &["status", "value"],
            );
            let (svc, name) = (&self.service, &self.name);
            match status_of(&v[0]) {
                STAT_BAD => {
                    return Err(DictError::Fatal(format!(
                        "{svc} lookup failed for table \"{name}\" key \"{key}\": invalid request"
                    )));
                }
                STAT_DENY => {
                    return Err(DictError::Fatal(format!(
                        "{svc} service is not configured for table \"{name}\""
                    )));
                }
                STAT_OK => return Ok(Some(v[1].clone())),
                STAT_NOKEY => return Ok(None),
                STAT_RETRY => return Err(DictError::retry()),
                STAT_CONFIG => return Err(DictError::Config(String::new())),
                s => msg::warn(&format!(
                    "{svc} lookup failed for table \"{name}\" key \"{key}\": unexpected reply status {s}"
                )),
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    fn update(&mut self, key: &str, value: &str) -> Result<Status, DictError> {
        self.modify("update", key, Some(value))
    }
    fn delete(&mut self, key: &str) -> Result<Status, DictError> {
        self.modify("delete", key, None)
    }
    fn sequence(&mut self, how: Seq) -> Result<Option<(String, String)>, DictError> {
        let func = if how == Seq::First { "0" } else { "1" };
        loop {
            let fl = self.req_flags();
            let v = call(
                &self.service,
                "sequence",
                &[
                    ("request", "sequence"),
                    ("table", &self.name),
                    ("flags", &fl),
                    ("function", func),
                ],
                &["status", "key", "value"],
            );
            let (svc, name) = (&self.service, &self.name);
            match status_of(&v[0]) {
                STAT_BAD => {
                    return Err(DictError::Fatal(format!(
                        "{svc} sequence failed for table \"{name}\" function {func}: invalid request"
                    )));
                }
                STAT_DENY => {
                    return Err(DictError::Fatal(format!(
                        "{svc} service is not configured for table \"{name}\""
                    )));
                }
                STAT_OK => return Ok(Some((v[1].clone(), v[2].clone()))),
                STAT_NOKEY => return Ok(None),
                STAT_RETRY => return Err(DictError::retry()),
                STAT_CONFIG => return Err(DictError::Config(String::new())),
                s => msg::warn(&format!(
                    "{svc} sequence failed for table \"{name}\" function {func}: unexpected reply status {s}"
                )),
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

impl Proxy {
    fn modify(&mut self, op: &str, key: &str, value: Option<&str>) -> Result<Status, DictError> {
        loop {
            let fl = self.req_flags();
            let mut req = vec![
                ("request", op),
                ("table", &self.name),
                ("flags", &fl),
                ("key", key),
            ];
            if let Some(v) = value {
                req.push(("value", v));
            }
            let v = call(&self.service, op, &req, &["status"]);
            let (svc, name) = (&self.service, &self.name);
            match status_of(&v[0]) {
                STAT_BAD => {
                    return Err(DictError::Fatal(format!(
                        "{svc} {op} failed for table \"{name}\" key \"{key}\": invalid request"
                    )));
                }
                STAT_DENY => {
                    return Err(DictError::Fatal(format!(
                        "{svc} update access is not configured for table \"{name}\""
                    )));
                }
                STAT_OK => return Ok(Status::Success),
                STAT_NOKEY => return Ok(Status::Fail),
                STAT_RETRY => return Err(DictError::retry()),
                STAT_CONFIG => return Err(DictError::Config(String::new())),
                s => msg::warn(&format!(
                    "{svc} {op} failed for table \"{name}\" key \"{key}\": unexpected reply status {s}"
                )),
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// Open `proxy:type:name` through the proxymap (read-only) or proxywrite
/// (read-write) service.
pub fn open(name: &str, mode: OpenMode, dict_flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    if dict_flags & flags::NO_PROXY != 0 {
        return dict_open(name, mode, dict_flags);
    }
    if IN_SERVER.load(Ordering::Relaxed) {
        let mut n = name;
        while let Some(r) = n.strip_prefix("proxy:") {
            n = r;
        }
        return dict_open(n, mode, dict_flags);
    }
    let c = conf();
    let service = match mode {
        OpenMode::ReadOnly => c.read_service.clone(),
        OpenMode::ReadWrite | OpenMode::Create => c.write_service.clone(),
    };
    let inst_flags = dict_flags & INST_MASK;
    loop {
        let v = call(
            &service,
            "open",
            &[
                ("request", "open"),
                ("table", name),
                ("flags", &(inst_flags as i32).to_string()),
            ],
            &["status", "flags"],
        );
        match status_of(&v[0]) {
            STAT_BAD => msg::fatal(&format!(
                "{service} open failed for table \"{name}\": invalid request"
            )),
            STAT_DENY => msg::fatal(&format!(
                "{service} service is not configured for table \"{name}\""
            )),
            STAT_OK => {
                let server_flags = status_of(&v[1]) as u32;
                return Ok(Box::new(Proxy {
                    name: name.to_string(),
                    service,
                    inst_flags,
                    flags: (dict_flags & !IMPL_MASK) | (server_flags & IMPL_MASK),
                }));
            }
            s => msg::warn(&format!(
                "{service} open failed for table \"{name}\": unexpected status {s}"
            )),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}
