//! Replaces master(8) of Postfix 3.7: the resident process that runs the
//! services of master.cf.
//!
//! Reads main.cf (`-c DIR` or MAIL_CONFIG) and master.cf, opens each
//! service's listeners (inet, unix, unix-dgram, fifo, pass), and fork+execs
//! `$daemon_directory/COMMAND` with the argv Postfix's master builds, the
//! listeners at descriptors 6.., a status channel at 5 and a flow-control
//! pipe at 3/4 (`master_proto.h`). Enforces the process limit, wakeup
//! triggers, throttles a service whose process dies before serving anyone
//! (`service_throttle_time`), reloads on SIGHUP, stops on SIGTERM. Holds
//! `$queue_directory/pid/master.pid` and `$data_directory/master.lock`
//! (flock, as Postfix's INTERNAL_LOCK on Linux).
//!
//! Trust: main.cf and master.cf (root-owned). Privilege: root; it creates
//! local sockets as mail_owner, and children drop privileges themselves.
//! Non-root mode (DESIGN.md §2): started by another user, master and its
//! children run as that user and nothing is chrooted.
//!
//! Parameters: config_directory, queue_directory, data_directory,
//! daemon_directory, default_process_limit, service_throttle_time,
//! master_service_disable, inet_interfaces, inet_protocols,
//! import_environment, mail_owner, known_tcp_ports, maillog_file,
//! syslog_name, syslog_facility, mail_version.

pub mod ent;
pub mod server;
pub mod testd;

use crate::global::mail_conf::MailConf;
use crate::global::{maillog, msg};
use crate::sys::epoll::{Epoll, Events};
use crate::sys::lock::{LockOp, flock_try};
use crate::sys::process::{self, ExitStatus, Fork};
use ent::{Kind, ServiceDef};
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{Seek, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Descriptor numbers of the master-child protocol.
pub const FLOW_READ: RawFd = 3;
pub const FLOW_WRITE: RawFd = 4;
pub const STATUS_FD: RawFd = 5;
pub const LISTEN_FD: RawFd = 6;
/// Status messages a child sends: busy, idle.
pub const STAT_TAKEN: i32 = 0;
pub const STAT_AVAIL: i32 = 1;
/// The environment variable with the child's generation (octal).
pub const GEN_NAME: &str = "GENERATION";

/// The size of one status record: pid, generation, status (native ints).
const STATUS_SIZE: usize = 12;
/// Status records read at once from one channel.
const STATUS_BATCH: usize = 64;

/// epoll tokens: the signal self-pipe is 0; a service's descriptors carry
/// its id above SLOT_BITS, and a slot below: 0 for the status channel, n+1
/// for listener n.
const SIG_TOKEN: u64 = 0;
const SLOT_BITS: u32 = 16;

fn token(id: u64, slot: usize) -> u64 {
    (id << SLOT_BITS) | slot as u64
}

const USAGE: &str = "usage: {} [-c config_dir] [-D (debug)] [-d (don't detach from terminal)] [-e exit_time] [-t (test)] [-v] [-w (wait for initialization)]";

struct Proc {
    serv: u64,
    generation: u32,
    avail: bool,
    use_count: u32,
}

struct Serv {
    id: u64,
    def: ServiceDef,
    listen: Vec<OwnedFd>,
    status: (OwnedFd, OwnedFd),
    throttle_delay: u64,
    throttled_until: Option<Instant>,
    avail: u32,
    total: u32,
    next_wakeup: Option<Instant>,
    stress_expire: Option<Instant>,
    busy_warn: Option<Instant>,
    mark: bool,
    deleting: bool,
    /// The listeners are registered with epoll (a connection there makes
    /// master start a process).
    watching: bool,
    /// Something that decides `watching` changed since it was last set.
    dirty: bool,
}

struct Master {
    conf: MailConf,
    tag: String,
    ctx: ent::Context,
    services: Vec<Serv>,
    procs: HashMap<i32, Proc>,
    next_id: u64,
    generation: u32,
    flow: (OwnedFd, OwnedFd),
    owner: Option<(u32, u32)>,
    throttle_time: u64,
    saved_watch: Vec<(&'static str, String)>,
    version: String,
    /// Every status channel, the signal pipe, and the listeners of the
    /// services that wait for a connection to start a process.
    ep: Epoll,
}

fn strerror(e: &std::io::Error) -> String {
    crate::global::config_file::errno_text(e)
}

fn fatal(text: &str) -> ! {
    msg::fatal(text)
}

/// Read main.cf and the values master itself uses.
fn read_conf(config_dir: Option<&str>) -> MailConf {
    let conf = MailConf::read(config_dir).unwrap_or_else(|e| fatal(&e.0));
    if let Err(e) = conf.get_time("service_throttle_time", 's', 1, 0) {
        fatal(&e.0);
    }
    conf
}

fn str_param(conf: &MailConf, name: &str) -> String {
    conf.lookup_eval(name)
        .unwrap_or_else(|e| fatal(&e.0))
        .unwrap_or_default()
}

/// Postfix's clean_env(): keep only the listed variables, set `NAME=value`
/// entries.
pub fn clean_env(spec: &str) {
    let mut keep: Vec<(String, Option<String>)> = Vec::new();
    for item in spec
        .split([' ', '\t', '\r', '\n', ','])
        .filter(|s| !s.is_empty())
    {
        match item.split_once('=') {
            Some((n, v)) => keep.push((n.to_string(), Some(v.to_string()))),
            None => keep.push((item.to_string(), None)),
        }
    }
    let current: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    for (name, _) in &current {
        let n = crate::util::latin1::from_os(name);
        if !keep.iter().any(|(k, _)| *k == n) {
            crate::sys::unsetenv(&n);
        }
    }
    for (n, v) in keep {
        if let Some(v) = v {
            crate::sys::setenv(&n, &v);
        }
    }
}

fn context_from(conf: &MailConf, no_detach: bool, saved_interfaces: Option<&str>) -> ent::Context {
    let protocols = str_param(conf, "inet_protocols");
    let interfaces = str_param(conf, "inet_interfaces");
    let limit = conf
        .get_int("default_process_limit", 1, 0)
        .unwrap_or_else(|e| fatal(&e.0));
    let level = conf.compat_level().unwrap_or_else(|e| fatal(&e.0));
    ent::Context {
        path: format!("{}/master.cf", conf.config_dir),
        daemon_directory: str_param(conf, "daemon_directory"),
        default_process_limit: limit as u32,
        no_detach,
        verbose: msg::verbose() > 0,
        chroot_default_yes: level < (1 << 20),
        saved_interfaces: saved_interfaces.unwrap_or(&interfaces).to_string(),
        inet_interfaces: interfaces,
        families: crate::global::hostinfo::inet_proto_families(&protocols),
        disable: str_param(conf, "master_service_disable")
            .split([' ', '\t', ',', '\r', '\n'])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        known_tcp_ports: str_param(conf, "known_tcp_ports"),
        inet_protocols: protocols,
    }
}

/// Open and lock a file as Postfix's open_lock: created 0644 (less the
/// umask), exclusive flock without waiting.
fn open_lock(path: &str) -> Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(crate::util::latin1::to_path(path))
        .map_err(|e| format!("cannot open file: {}", strerror(&e)))?;
    match flock_try(&f, LockOp::Exclusive) {
        Ok(true) => Ok(f),
        Ok(false) => Err(format!(
            "unable to set exclusive lock: {}",
            crate::sys::strerror(libc::EAGAIN)
        )),
        Err(e) => Err(format!("unable to set exclusive lock: {}", strerror(&e))),
    }
}

/// Write the pid as Postfix does: right-aligned in 32 columns, newline.
fn write_pid(f: &mut std::fs::File, path: &str) {
    let line = format!("{:>32}\n", std::process::id());
    if f.rewind()
        .and_then(|_| f.write_all(line.as_bytes()))
        .is_err()
    {
        fatal(&format!(
            "cannot update lock file {path}: {}",
            strerror(&std::io::Error::last_os_error())
        ));
    }
}

/// Entry point: `master [-Ddistvw] [-c dir] [-e secs]`.
pub fn main(args: Vec<OsString>) -> i32 {
    let args: Vec<String> = args
        .iter()
        .map(|a| crate::util::latin1::from_os(a))
        .collect();
    crate::sys::set_umask(0o077);
    let _ = process::ignore_signal(libc::SIGPIPE);
    let progname = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_else(|| "master".into());
    msg::init(&progname);
    if std::env::var_os("MAIL_VERBOSE").is_some() {
        msg::more_verbose();
    }
    let mut debug_me = std::env::var_os("MAIL_DEBUG").is_some();
    process::close_from(3);
    msg::set_stderr(false);
    msg::set_fatal_sleep(true);
    let early_tag = maillog::mail_task(None, &progname);
    maillog::init_syslog(&early_tag);
    if crate::sys::getuid() != crate::sys::geteuid() {
        fatal("the master command must not run as a set-uid process");
    }
    let mut detach = true;
    let mut init_mode = false;
    let mut keep_stdout = false;
    let mut test_lock = false;
    let mut wait_flag = false;
    let mut exit_time: Option<u64> = None;
    let mut config_dir: Option<String> = None;
    let mut g = crate::util::getopt::Getopt::new(&args, "c:Dde:istvw");
    while let Some(o) = g.next_opt() {
        use crate::util::getopt::Opt;
        match o {
            Opt::Flag('c', Some(d)) => {
                crate::sys::setenv("MAIL_CONFIG", &d);
                config_dir = Some(d);
            }
            Opt::Flag('d', _) => detach = false,
            Opt::Flag('e', Some(s)) => exit_time = Some(s.trim().parse().unwrap_or(0)),
            Opt::Flag('i', _) => {
                if process::getpid() != 1 {
                    fatal("-i is allowed only for PID 1 process");
                }
                init_mode = true;
                keep_stdout = true;
            }
            Opt::Flag('D', _) => debug_me = true,
            Opt::Flag('s', _) => keep_stdout = true,
            Opt::Flag('t', _) => test_lock = true,
            Opt::Flag('v', _) => msg::more_verbose(),
            Opt::Flag('w', _) => wait_flag = true,
            _ => fatal(&USAGE.replace("{}", &args[0])),
        }
    }
    if g.optind < args.len() {
        fatal(&USAGE.replace("{}", &args[0]));
    }
    if test_lock && wait_flag {
        fatal("the -t and -w options cannot be used together");
    }
    if init_mode && (debug_me || !detach || wait_flag) {
        fatal("the -i option cannot be used with -D, -d, or -w");
    }
    let monitor = if wait_flag { Some(monitor(100)) } else { None };
    if detach && let Err(e) = process::detach_stdio(keep_stdout) {
        fatal(&format!("open /dev/null: {}", strerror(&e)));
    }
    if !init_mode
        && !debug_me
        && detach
        && process::setsid().is_err()
        && !process::is_session_leader()
    {
        fatal(&format!(
            "unable to set session and process group ID: {}",
            strerror(&std::io::Error::last_os_error())
        ));
    }
    let conf = read_conf(config_dir.as_deref());
    let tag = maillog::mail_task(Some(&conf), &progname);
    if let Err(e) = maillog::init(&tag, &conf) {
        fatal(&e);
    }
    let ids = crate::global::mail_params::run_ids(&conf).unwrap_or_else(|e| fatal(&e));
    let non_root = crate::global::mail_params::non_root_mode();
    let ctx = context_from(&conf, !detach, None);
    clean_env(&str_param(&conf, "import_environment"));
    let queue_dir = str_param(&conf, "queue_directory");
    if let Err(e) = std::env::set_current_dir(crate::util::latin1::to_path(&queue_dir)) {
        fatal(&format!("chdir {queue_dir}: {}", strerror(&e)));
    }
    let pid_dir = str_param(&conf, "process_id_directory");
    let lock_path = format!("{pid_dir}/{progname}.pid");
    if test_lock {
        if !std::path::Path::new(&lock_path).exists() {
            std::process::exit(0);
        }
        std::process::exit(if open_lock(&lock_path).is_ok() { 0 } else { 1 });
    }
    let mut lock_fp = open_lock(&lock_path)
        .unwrap_or_else(|why| fatal(&format!("open lock file {lock_path}: {why}")));
    write_pid(&mut lock_fp, &lock_path);
    let data_dir = str_param(&conf, "data_directory");
    let data_lock_path = format!("{data_dir}/{progname}.lock");
    let owner = (!non_root).then_some((ids.owner_uid, ids.owner_gid));
    if let Some((u, gid)) = owner
        && let Err(e) = crate::sys::set_eugid(u, gid)
    {
        fatal(&e);
    }
    let data_lock = open_lock(&data_lock_path);
    if owner.is_some() {
        let _ = process::restore_ugid();
    }
    let mut data_lock_fp =
        data_lock.unwrap_or_else(|why| fatal(&format!("open lock file {data_lock_path}: {why}")));
    write_pid(&mut data_lock_fp, &data_lock_path);
    let flow = process::pipe().unwrap_or_else(|e| fatal(&format!("pipe: {}", strerror(&e))));
    let sig_fd = process::master_signals()
        .unwrap_or_else(|e| fatal(&format!("sigaction: {}", strerror(&e))));
    let throttle_time = conf
        .get_time("service_throttle_time", 's', 1, 0)
        .unwrap_or(60) as u64;
    let version = str_param(&conf, "mail_version");
    let saved_watch = vec![
        ("config_directory", conf.config_dir.clone()),
        ("queue_directory", queue_dir.clone()),
        ("inet_protocols", str_param(&conf, "inet_protocols")),
    ];
    let mut m = Master {
        conf,
        tag,
        ctx,
        services: Vec::new(),
        procs: HashMap::new(),
        next_id: 1,
        generation: 0,
        flow,
        owner,
        throttle_time,
        saved_watch,
        version,
        ep: Epoll::new().unwrap_or_else(|e| fatal(&format!("epoll_create: {}", strerror(&e)))),
    };
    m.config();
    msg::info(&format!(
        "daemon started -- version {}, configuration {}",
        m.version, m.conf.config_dir
    ));
    if let Some(fd) = monitor {
        let _ = process::write_fd(fd.as_raw_fd(), b"\0");
        drop(fd);
    }
    let deadline = exit_time.map(|s| Instant::now() + Duration::from_secs(s));
    m.run(sig_fd, deadline, init_mode);
}

/// `-w`: fork; the foreground process waits for the daemon's word that it
/// initialised, and exits 0, or fails after `limit` seconds.
fn monitor(limit: u64) -> OwnedFd {
    let (r, w) = process::pipe().unwrap_or_else(|e| fatal(&format!("pipe: {}", strerror(&e))));
    match process::fork() {
        Err(e) => fatal(&format!("fork: {}", strerror(&e))),
        Ok(Fork::Child) => {
            drop(r);
            w
        }
        Ok(Fork::Parent(pid)) => {
            drop(w);
            let ready =
                process::poll_read(&[r.as_raw_fd()], (limit * 1000) as i32).unwrap_or_default();
            let mut buf = [0u8; 1];
            let n = if ready.first() == Some(&true) {
                process::read_fd(r.as_raw_fd(), &mut buf).unwrap_or(0)
            } else {
                msg::warn("Connection timed out while waiting for daemon initialization");
                let _ = process::kill(pid, libc::SIGKILL);
                0
            };
            if n == 1 {
                std::process::exit(0);
            }
            fatal("daemon initialization failure -- see logs for details");
        }
    }
}

impl Master {
    fn serv_mut(&mut self, id: u64) -> Option<&mut Serv> {
        let i = self.index_of(id)?;
        Some(&mut self.services[i])
    }

    /// The index of the service with this id: ids only grow, services are
    /// appended and removed in place, so the list stays sorted by id.
    fn index_of(&self, id: u64) -> Option<usize> {
        self.services.binary_search_by_key(&id, |s| s.id).ok()
    }

    fn ep_add(&self, fd: RawFd, tok: u64) {
        if let Err(e) = self.ep.add(fd, tok) {
            fatal(&format!("epoll_ctl: {}", strerror(&e)));
        }
    }

    fn ep_del(&self, fd: RawFd) {
        match self.ep.delete(fd) {
            Ok(()) => {}
            // Not registered: nothing to undo.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => fatal(&format!("epoll_ctl: {}", strerror(&e))),
        }
    }

    /// Watch or stop watching the listeners of service `i`, as Postfix's
    /// master_avail_listen: only while it needs another process.
    fn update_listen(&mut self, i: usize, now: Instant) {
        let want = Self::listening(&mut self.services[i], now);
        let s = &self.services[i];
        if want == s.watching {
            return;
        }
        for (n, fd) in s.listen.iter().enumerate() {
            if want {
                self.ep_add(fd.as_raw_fd(), token(s.id, n + 1));
            } else {
                self.ep_del(fd.as_raw_fd());
            }
        }
        self.services[i].watching = want;
    }

    /// Read master.cf and start, update or (after a reload) stop services.
    fn config(&mut self) {
        let path = self.ctx.path.clone();
        let text = match std::fs::read(crate::util::latin1::to_path(&path)) {
            Ok(d) => crate::util::latin1::decode(&d),
            Err(e) => fatal(&format!("open {path}: {}", strerror(&e))),
        };
        let parsed = ent::parse(&self.ctx, &text).unwrap_or_else(|e| fatal(&e));
        for (warn, text) in parsed.infos {
            if warn {
                msg::warn(&text);
            } else {
                msg::info(&text);
            }
        }
        for def in parsed.services {
            let found = self
                .services
                .iter()
                .position(|s| s.def.name == def.name && s.def.kind == def.kind);
            match found {
                None => self.start_service(def),
                Some(i) => {
                    let s = &mut self.services[i];
                    if !s.mark {
                        msg::warn(&format!(
                            "duplicate master.cf entry for service \"{}\" ({}) -- using the last entry",
                            s.def.ext_name, s.def.name
                        ));
                    } else {
                        s.mark = false;
                    }
                    let listen_count = s.def.inet_addrs.len();
                    let addrs = s.def.inet_addrs.clone();
                    s.def = def;
                    // The listeners stay as they are (Postfix keeps them).
                    if s.def.kind == Kind::Inet && s.def.inet_addrs.len() != listen_count {
                        s.def.inet_addrs = addrs;
                    }
                    s.throttle_delay = self.throttle_time;
                    self.restart_service(i);
                }
            }
        }
    }

    fn listen(&self, def: &ServiceDef) -> Vec<OwnedFd> {
        let backlog = (def.max_proc.max(self.ctx.default_process_limit)) as i32;
        let as_owner = |f: &dyn Fn() -> Result<OwnedFd, String>| -> OwnedFd {
            if let Some((u, g)) = self.owner
                && let Err(e) = crate::sys::set_eugid(u, g)
            {
                fatal(&e);
            }
            let r = f();
            if self.owner.is_some() {
                let _ = process::restore_ugid();
            }
            r.unwrap_or_else(|e| fatal(&e))
        };
        let path = def.name.clone();
        match def.kind {
            Kind::Unix | Kind::Pass => vec![as_owner(&|| unix_listen(&path, backlog))],
            Kind::UnixDgram => vec![as_owner(&|| unix_dgram_listen(&path))],
            Kind::Fifo => vec![as_owner(&|| fifo_listen(&path))],
            Kind::Inet => def
                .inet_addrs
                .iter()
                .map(|a| match process::inet_listen(a, backlog) {
                    Ok(fd) => fd,
                    Err(e) => fatal(&inet_listen_error(a, e)),
                })
                .collect(),
        }
    }

    fn start_service(&mut self, def: ServiceDef) {
        let listen = self.listen(&def);
        let status = status_pipe();
        let id = self.next_id;
        self.next_id += 1;
        let mut s = Serv {
            id,
            def,
            listen,
            status,
            throttle_delay: self.throttle_time,
            throttled_until: None,
            avail: 0,
            total: 0,
            next_wakeup: None,
            stress_expire: None,
            busy_warn: None,
            mark: false,
            deleting: false,
            watching: false,
            dirty: true,
        };
        wakeup_init(&mut s);
        self.ep_add(s.status.0.as_raw_fd(), token(id, 0));
        self.services.push(s);
    }

    fn restart_service(&mut self, i: usize) {
        self.ep_del(self.services[i].status.0.as_raw_fd());
        let status = status_pipe();
        self.ep_add(status.0.as_raw_fd(), token(self.services[i].id, 0));
        let s = &mut self.services[i];
        s.status = status;
        s.dirty = true;
        s.next_wakeup = None;
        wakeup_init(s);
    }

    fn stop_service(&mut self, i: usize) {
        let id = self.services[i].id;
        self.services[i].deleting = true;
        self.services[i].throttled_until = Some(Instant::now() + Duration::from_secs(3600));
        let pids: Vec<i32> = self
            .procs
            .iter()
            .filter(|(_, p)| p.serv == id)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in &pids {
            let _ = process::kill(*pid, libc::SIGTERM);
        }
        let start = Instant::now();
        while self.procs.values().any(|p| p.serv == id) {
            if !self.reap_children() {
                if start.elapsed() > Duration::from_secs(10) {
                    for pid in &pids {
                        let _ = process::kill(*pid, libc::SIGKILL);
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let s = &self.services[i];
        if s.watching {
            for fd in &s.listen {
                self.ep_del(fd.as_raw_fd());
            }
        }
        self.ep_del(s.status.0.as_raw_fd());
        self.services.remove(i);
    }

    /// SIGHUP: re-read main.cf and master.cf.
    fn reload(&mut self) {
        msg::info(&format!(
            "reload -- version {}, configuration {}",
            self.version, self.conf.config_dir
        ));
        let conf = read_conf(Some(&self.conf.config_dir.clone()));
        for (name, old) in &self.saved_watch {
            let new = if *name == "config_directory" {
                conf.config_dir.clone()
            } else {
                str_param(&conf, name)
            };
            if *old != new {
                msg::warn(&format!("ignoring {name} parameter value change"));
                msg::warn(&format!("old value: \"{old}\", new value: \"{new}\""));
                msg::warn(&format!("to change {name}, stop and start Postfix"));
            }
        }
        let saved_if = self.ctx.saved_interfaces.clone();
        self.ctx = context_from(&conf, self.ctx.no_detach, Some(&saved_if));
        self.throttle_time = conf
            .get_time("service_throttle_time", 's', 1, 0)
            .unwrap_or(60) as u64;
        self.tag = maillog::mail_task(Some(&conf), "master");
        self.conf = conf;
        for s in &mut self.services {
            s.mark = true;
        }
        self.config();
        while let Some(i) = self.services.iter().position(|s| s.mark) {
            self.stop_service(i);
        }
        maillog::reopen();
        if let Err(e) = maillog::init(&self.tag, &self.conf) {
            fatal(&e);
        }
    }

    fn throttle(&mut self, id: u64) {
        if let Some(s) = self.serv_mut(id)
            && s.throttled_until.is_none()
        {
            s.throttled_until = Some(Instant::now() + Duration::from_secs(s.throttle_delay));
            s.dirty = true;
            if msg::verbose() > 0 {
                msg::info(&format!("throttling command {}", s.def.path));
            }
        }
    }

    /// Whether the service's listeners should be watched now; warns when a
    /// public service is at its process limit.
    fn listening(s: &mut Serv, now: Instant) -> bool {
        if s.throttled_until.is_some() || s.avail > 0 {
            return false;
        }
        if s.def.max_proc == 0 || s.total < s.def.max_proc {
            return true;
        }
        if s.def.stress_arg.is_some()
            && s.busy_warn
                .is_none_or(|t| now.duration_since(t) > Duration::from_secs(1000))
        {
            s.busy_warn = Some(now);
            msg::warn(&format!(
                "service \"{}\" ({}) has reached its process limit \"{}\": new clients may experience noticeable delays",
                s.def.ext_name, s.def.name, s.def.max_proc
            ));
            msg::warn(
                "to avoid this condition, increase the process count in master.cf or reduce the service time per client",
            );
            msg::warn(
                "see http://www.postfix.org/STRESS_README.html for examples of stress-adapting configuration settings",
            );
        }
        false
    }

    /// A listener is readable: start a process.
    fn spawn(&mut self, i: usize) {
        let now = Instant::now();
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        // Entering stress mode restarts the service (a new status channel),
        // so that the processes it has now exit when their client is done
        // and are replaced by stress-mode ones, as Postfix's master_avail.
        let entering = {
            let s = &self.services[i];
            s.def.stress_arg.is_some()
                && s.def.max_proc != 0
                && s.total + 1 >= s.def.max_proc
                && s.stress_expire.is_none_or(|t| t < now)
        };
        if entering {
            self.restart_service(i);
        }
        let s = &mut self.services[i];
        let mut args = s.def.args.clone();
        if let Some(k) = s.def.stress_arg {
            if s.def.max_proc != 0 && s.total + 1 >= s.def.max_proc {
                s.stress_expire = Some(now + Duration::from_secs(1000));
            }
            if s.stress_expire.is_some_and(|t| t > now) {
                args[k] = "stress=yes".into();
            }
        }
        let mut pairs = vec![
            (self.flow.0.as_raw_fd(), FLOW_READ),
            (self.flow.1.as_raw_fd(), FLOW_WRITE),
            (s.status.1.as_raw_fd(), STATUS_FD),
        ];
        for (n, fd) in s.listen.iter().enumerate() {
            pairs.push((fd.as_raw_fd(), LISTEN_FD + n as RawFd));
        }
        let first_free = LISTEN_FD + s.listen.len() as RawFd;
        let path = s.def.path.clone();
        match process::fork() {
            Err(e) => {
                msg::warn(&format!(
                    "master_spawn: fork: {} -- throttling",
                    strerror(&e)
                ));
                let id = s.id;
                self.throttle(id);
            }
            Ok(Fork::Child) => {
                crate::sys::syslog::close();
                maillog::reopen();
                let _ = process::default_signal(libc::SIGPIPE);
                for sig in [
                    libc::SIGHUP,
                    libc::SIGCHLD,
                    libc::SIGTERM,
                    libc::SIGINT,
                    libc::SIGQUIT,
                ] {
                    let _ = process::default_signal(sig);
                }
                if let Err(e) = process::place_fds(&pairs) {
                    fatal(&format!("master_spawn: dup2: {}", strerror(&e)));
                }
                process::close_from(first_free);
                crate::sys::setenv(GEN_NAME, &format!("{generation:o}"));
                let e = process::execv(&path, &args);
                fatal(&format!("master_spawn: exec {path}: {}", strerror(&e)));
            }
            Ok(Fork::Parent(pid)) => {
                if msg::verbose() > 0 {
                    msg::info(&format!("spawn command {path}; pid {pid}"));
                }
                let id = s.id;
                s.total += 1;
                s.avail += 1;
                s.dirty = true;
                if s.def.condwake {
                    s.def.condwake = false;
                    wakeup_init(s);
                }
                self.procs.insert(
                    pid,
                    Proc {
                        serv: id,
                        generation,
                        avail: true,
                        use_count: 0,
                    },
                );
            }
        }
    }

    /// Collect dead children; returns whether any was reaped.
    fn reap_children(&mut self) -> bool {
        let mut any = false;
        while let Some((pid, st)) = process::reap_any() {
            any = true;
            if msg::verbose() > 0 {
                msg::info(&format!("master_reap_child: pid {pid}"));
            }
            let Some(proc_) = self.procs.get(&pid) else {
                continue;
            };
            let id = proc_.serv;
            let use_count = proc_.use_count;
            let Some(s) = self.index_of(id).map(|i| &self.services[i]) else {
                self.procs.remove(&pid);
                continue;
            };
            let path = s.def.path.clone();
            let deleting = s.deleting;
            let throttled = s.throttled_until.is_some();
            match st {
                ExitStatus::Stopped(sig) => {
                    msg::warn(&format!("process {path} pid {pid} stopped by signal {sig}"));
                    continue;
                }
                ExitStatus::Exited(0) => {}
                ExitStatus::Exited(code) => {
                    msg::warn(&format!("process {path} pid {pid} exit status {code}"));
                }
                ExitStatus::Signaled(sig) => {
                    if !(deleting && sig == libc::SIGTERM) {
                        msg::warn(&format!("process {path} pid {pid} killed by signal {sig}"));
                    }
                }
            }
            if st != ExitStatus::Exited(0) && use_count == 0 && !throttled {
                msg::warn(&format!("{path}: bad command startup -- throttling"));
                self.throttle(id);
            }
            let p = self.procs.remove(&pid);
            if let Some(s) = self.serv_mut(id) {
                s.dirty = true;
                s.total -= 1;
                if p.is_some_and(|p| p.avail) {
                    s.avail -= 1;
                }
            }
        }
        any
    }

    /// Status messages from the children of service `i`: every whole
    /// record the channel holds, a batch per read.
    fn status_event(&mut self, i: usize) {
        let fd = self.services[i].status.0.as_raw_fd();
        let mut buf = [0u8; STATUS_SIZE * STATUS_BATCH];
        loop {
            let n = match process::read_fd(fd, &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::WouldBlock {
                        msg::warn(&format!("master_status_event: read: {}", strerror(&e)));
                    }
                    return;
                }
            };
            let (records, partial) = split_status(&buf[..n]);
            for rec in records {
                self.status_record(i, rec);
            }
            if let Some((pid, len)) = partial {
                // What Postfix reports when a read returns less than a
                // whole record: the child wrote a short status message.
                let s = &self.services[i];
                msg::warn(&format!(
                    "service {}({}): child (pid {pid}) sent partial status update ({len} bytes)",
                    s.def.ext_name, s.def.name
                ));
                return;
            }
            if n < buf.len() {
                return;
            }
        }
    }

    /// One status record from a child of service `i`.
    fn status_record(&mut self, i: usize, rec: Status) {
        let id = self.services[i].id;
        let Status {
            pid,
            generation,
            avail,
        } = rec;
        let Some(p) = self.procs.get_mut(&pid) else {
            return;
        };
        if p.generation != generation {
            msg::info(&format!(
                "ignoring status update from child pid {pid} generation {generation}"
            ));
            return;
        }
        if p.serv != id {
            return;
        }
        if (avail == STAT_AVAIL || avail == STAT_TAKEN) && p.avail == (avail == STAT_AVAIL) {
            return;
        }
        match avail {
            STAT_AVAIL => {
                p.use_count += 1;
                p.avail = true;
                self.services[i].avail += 1;
                self.services[i].dirty = true;
            }
            STAT_TAKEN => {
                p.avail = false;
                self.services[i].avail -= 1;
                self.services[i].dirty = true;
            }
            _ => msg::warn(&format!(
                "master_status_event: ignoring unknown status: {pid} allegedly from pid: {avail}"
            )),
        }
    }

    fn wakeup(&mut self, i: usize) {
        let s = &mut self.services[i];
        s.next_wakeup = Some(Instant::now() + Duration::from_secs(u64::from(s.def.wakeup)));
        if s.throttled_until.is_some() {
            return;
        }
        let r = trigger(&s.def);
        if let Err(e) = r {
            msg::warn(&format!(
                "master_wakeup_timer_event: service {}({}): {}",
                s.def.ext_name,
                s.def.name,
                strerror(&e)
            ));
        }
    }

    /// A terminating signal: stop the children and die of the signal.
    fn die(&mut self, sig: i32) -> ! {
        let _ = process::ignore_signal(libc::SIGTERM);
        for pid in self.procs.keys() {
            let _ = process::kill(*pid, libc::SIGTERM);
        }
        if process::is_session_leader() {
            let _ = process::kill(-process::getpid(), libc::SIGTERM);
        }
        msg::info(&format!("terminating on signal {sig}"));
        let _ = process::default_signal(sig);
        let _ = process::kill(process::getpid(), sig);
        std::thread::sleep(Duration::from_millis(100));
        std::process::exit(0);
    }

    fn run(&mut self, sig_fd: OwnedFd, deadline: Option<Instant>, init_mode: bool) -> ! {
        self.ep_add(sig_fd.as_raw_fd(), SIG_TOKEN);
        let mut events = Events::with_capacity(64);
        let mut spawn_ids: Vec<u64> = Vec::with_capacity(8);
        loop {
            let now = Instant::now();
            // Timers (throttles, wakeups, exit time), and which listeners
            // to watch.
            let mut next = now + Duration::from_millis(500);
            for i in 0..self.services.len() {
                let s = &mut self.services[i];
                if let Some(t) = s.throttled_until
                    && t <= now
                    && !s.deleting
                {
                    s.throttled_until = None;
                    s.dirty = true;
                    if msg::verbose() > 0 {
                        msg::info(&format!("throttle released for command {}", s.def.path));
                    }
                }
                if s.next_wakeup.is_some_and(|t| t <= now) {
                    self.wakeup(i);
                }
                if self.services[i].dirty {
                    self.services[i].dirty = false;
                    self.update_listen(i, now);
                }
                let s = &self.services[i];
                for t in [s.throttled_until, s.next_wakeup].into_iter().flatten() {
                    next = next.min(t);
                }
            }
            if deadline.is_some_and(|d| d <= now) {
                msg::info("master exit time has arrived");
                std::process::exit(0);
            }
            if let Some(d) = deadline {
                next = next.min(d);
            }
            let timeout = next.saturating_duration_since(Instant::now()).as_millis() as i32;
            if let Err(e) = self.ep.wait(&mut events, timeout.max(1)) {
                fatal(&format!("epoll_wait: {}", strerror(&e)));
            }
            // Status channels first, then the listeners of services that
            // still need a process.
            let mut sig_ready = false;
            spawn_ids.clear();
            for tok in events.iter() {
                if tok == SIG_TOKEN {
                    sig_ready = true;
                    continue;
                }
                let id = tok >> SLOT_BITS;
                let Some(i) = self.index_of(id) else {
                    continue;
                };
                if tok & ((1 << SLOT_BITS) - 1) == 0 {
                    self.status_event(i);
                } else if !spawn_ids.contains(&id) {
                    spawn_ids.push(id);
                }
            }
            for &id in &spawn_ids {
                if let Some(i) = self.index_of(id)
                    && Self::listening(&mut self.services[i], Instant::now())
                {
                    self.spawn(i);
                }
            }
            if sig_ready {
                let mut b = [0u8; 64];
                while matches!(process::read_fd(sig_fd.as_raw_fd(), &mut b), Ok(n) if n > 0) {}
            }
            let sigs = process::take_signals();
            if sigs.death != 0 {
                if init_mode {
                    msg::info(&format!("terminating on signal {}", sigs.death));
                    std::process::exit(0);
                }
                self.die(sigs.death);
            }
            if sigs.hup {
                self.reload();
            }
            // SIGCHLD says when to reap; an idle tick reaps too, in case a
            // signal was merged or missed.
            if sigs.chld || (events.is_empty() && !self.procs.is_empty()) {
                self.reap_children();
            }
        }
    }
}

/// One status record: pid, generation, status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Status {
    pid: i32,
    generation: u32,
    avail: i32,
}

/// Split what one read of a status channel returned into whole records
/// and, when it ends short (or is empty: end of file), the pid bytes and
/// length of the short rest.
fn split_status(data: &[u8]) -> (impl Iterator<Item = Status> + '_, Option<(i32, usize)>) {
    let chunks = data.chunks_exact(STATUS_SIZE);
    let rest = chunks.remainder();
    let partial = (data.is_empty() || !rest.is_empty()).then(|| {
        let mut b = [0u8; 4];
        let k = rest.len().min(4);
        b[..k].copy_from_slice(&rest[..k]);
        (i32::from_ne_bytes(b), rest.len())
    });
    let records = chunks.map(|r| Status {
        pid: i32::from_ne_bytes([r[0], r[1], r[2], r[3]]),
        generation: u32::from_ne_bytes([r[4], r[5], r[6], r[7]]),
        avail: i32::from_ne_bytes([r[8], r[9], r[10], r[11]]),
    });
    (records, partial)
}

fn status_pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) =
        process::duplex_pipe().unwrap_or_else(|e| fatal(&format!("pipe: {}", strerror(&e))));
    let _ = process::set_nonblocking(r.as_raw_fd(), true);
    (r, w)
}

fn wakeup_init(s: &mut Serv) {
    if s.def.wakeup == 0 || s.def.condwake {
        s.next_wakeup = None;
        return;
    }
    // Postfix fires the first trigger at once, then every `wakeup` seconds.
    s.next_wakeup = Some(Instant::now());
}

/// Send the wakeup request ("W") to a service, briefly.
fn trigger(def: &ServiceDef) -> std::io::Result<()> {
    use std::io::Write as _;
    match def.kind {
        Kind::Unix | Kind::Pass => {
            let mut c = std::os::unix::net::UnixStream::connect(&def.name)?;
            c.set_nonblocking(true)?;
            c.write_all(b"W")
        }
        Kind::Inet => {
            let a = def
                .inet_addrs
                .first()
                .copied()
                .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EADDRNOTAVAIL))?;
            let a = if a.ip().is_unspecified() {
                std::net::SocketAddr::new(
                    if a.is_ipv4() {
                        std::net::Ipv4Addr::LOCALHOST.into()
                    } else {
                        std::net::Ipv6Addr::LOCALHOST.into()
                    },
                    a.port(),
                )
            } else {
                a
            };
            let mut c = process::tcp_connect(&a, Duration::from_secs(1))?;
            c.set_nonblocking(true)?;
            c.write_all(b"W")
        }
        Kind::Fifo => {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&def.name)?;
            f.write_all(b"W")
        }
        Kind::UnixDgram => Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP)),
    }
}

fn unix_listen(path: &str, backlog: i32) -> Result<OwnedFd, String> {
    let _ = backlog; // std uses the system's maximum backlog
    if path.len() >= 108 {
        return Err(format!("unix-domain name too long: {path}"));
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("remove {path}: {}", strerror(&e))),
    }
    let l = std::os::unix::net::UnixListener::bind(path)
        .map_err(|e| format!("bind: {path}: {}", strerror(&e)))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| format!("chmod socket {path}: {}", strerror(&e)))?;
    l.set_nonblocking(true)
        .map_err(|e| format!("listen: {}", strerror(&e)))?;
    Ok(OwnedFd::from(l))
}

fn unix_dgram_listen(path: &str) -> Result<OwnedFd, String> {
    if path.len() >= 108 {
        return Err(format!(
            "unix_dgram_listen: unix-domain name too long: {path}"
        ));
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("remove {path}: {}", strerror(&e))),
    }
    let s = std::os::unix::net::UnixDatagram::bind(path)
        .map_err(|e| format!("bind: {path}: {}", strerror(&e)))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| format!("chmod socket {path}: {}", strerror(&e)))?;
    let _ = s.set_nonblocking(true);
    Ok(OwnedFd::from(s))
}

fn fifo_listen(path: &str) -> Result<OwnedFd, String> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("fifo_listen: remove {path}: {}", strerror(&e))),
    }
    process::mkfifo(path, 0o622)
        .map_err(|e| format!("fifo_listen: create fifo {path}: {}", strerror(&e)))?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| format!("fifo_listen: open {path}: {}", strerror(&e)))?;
    use std::os::unix::fs::PermissionsExt;
    let _ = f.set_permissions(std::fs::Permissions::from_mode(0o622));
    Ok(OwnedFd::from(f))
}

fn inet_listen_error(a: &std::net::SocketAddr, e: process::ListenError) -> String {
    use process::ListenError::*;
    match e {
        Socket(e) => format!("socket: {}", strerror(&e)),
        V6Only(e) => format!("setsockopt(IPV6_V6ONLY): {}", strerror(&e)),
        ReuseAddr(e) => format!("setsockopt(SO_REUSEADDR): {}", strerror(&e)),
        Bind(e) => format!(
            "bind {} port {}: {}",
            crate::global::hostinfo::format_addr(&a.ip()),
            a.port(),
            strerror(&e)
        ),
        Listen(e) => format!("listen: {}", strerror(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(pid: i32, generation: u32, avail: i32) -> Vec<u8> {
        [
            pid.to_ne_bytes(),
            generation.to_ne_bytes(),
            avail.to_ne_bytes(),
        ]
        .concat()
    }

    #[test]
    fn a_read_of_several_status_records_yields_each() {
        let mut data = rec(101, 7, STAT_TAKEN);
        data.extend(rec(102, 8, STAT_AVAIL));
        data.extend(rec(101, 7, STAT_AVAIL));
        let (records, partial) = split_status(&data);
        assert_eq!(
            records.collect::<Vec<_>>(),
            [
                Status {
                    pid: 101,
                    generation: 7,
                    avail: STAT_TAKEN
                },
                Status {
                    pid: 102,
                    generation: 8,
                    avail: STAT_AVAIL
                },
                Status {
                    pid: 101,
                    generation: 7,
                    avail: STAT_AVAIL
                },
            ]
        );
        assert_eq!(partial, None);
    }

    #[test]
    fn a_short_status_record_is_reported_with_its_length() {
        let mut data = rec(101, 7, STAT_TAKEN);
        data.extend(&rec(555, 1, STAT_AVAIL)[..5]);
        let (records, partial) = split_status(&data);
        assert_eq!(records.count(), 1);
        assert_eq!(partial, Some((555, 5)));
        let (records, partial) = split_status(&[9, 0]);
        assert_eq!(records.count(), 0);
        assert_eq!(partial, Some((9, 2)));
        let (records, partial) = split_status(&[]);
        assert_eq!(records.count(), 0);
        assert_eq!(partial, Some((0, 0)));
    }
}
