//! The single-threaded server skeleton every master-run daemon uses
//! (Postfix's single_server.c): parse the options master passes, read
//! main.cf with the `-o` overrides, drop privileges (chroot with `-c`,
//! mail_owner with `-u`, only when running as root), then accept one
//! connection at a time on the inherited listeners, telling master over the
//! status channel when it is busy and idle; exit after `max_use`
//! connections, after `max_idle` seconds without one, or when master goes
//! away. A delivery agent may serve several requests of the queue manager
//! on one connection; each counts against `max_use`.
//!
//! Trust: the argv and descriptors come from master. Privilege: starts with
//! master's, drops them before accepting anything.

use super::{LISTEN_FD, STAT_AVAIL, STAT_TAKEN, STATUS_FD};
use crate::global::mail_conf::MailConf;
use crate::global::{maillog, msg};
use crate::sys::lock::{LockOp, flock};
use crate::sys::process;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

/// The options master passes (`cdDi:lm:n:o:r:s:St:uvVz`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub service_name: String,
    pub transport: Option<String>,
    pub chroot: bool,
    pub no_detach: bool,
    pub debug: bool,
    pub max_idle: Option<String>,
    pub alone: bool,
    pub max_use: Option<String>,
    pub overrides: Vec<(String, String)>,
    pub socket_count: usize,
    pub stream: bool,
    pub unprivileged: bool,
    pub verbose: u32,
    pub zerolimit: bool,
    /// Arguments after the options.
    pub args: Vec<String>,
}

/// Parse a daemon's argv; `Err` is Postfix's fatal text.
pub fn parse_options(argv: &[String], progname: &str) -> Result<Options, String> {
    let mut o = Options {
        service_name: progname.to_string(),
        socket_count: 1,
        ..Options::default()
    };
    let mut g = crate::util::getopt::Getopt::new(argv, "cdDi:lm:n:o:r:s:St:uvVz");
    while let Some(opt) = g.next_opt() {
        use crate::util::getopt::Opt;
        match opt {
            Opt::Flag('c', _) => o.chroot = true,
            Opt::Flag('d', _) => o.no_detach = true,
            Opt::Flag('D', _) => o.debug = true,
            Opt::Flag('i', v) => o.max_idle = v,
            Opt::Flag('l', _) => o.alone = true,
            Opt::Flag('m', v) => o.max_use = v,
            Opt::Flag('n', Some(v)) => o.service_name = v,
            Opt::Flag('o', Some(v)) => {
                let (n, val) = crate::global::readlline::split_nameval(&v)
                    .map_err(|e| format!("invalid \"-o {v}\" option value: {e}"))?;
                o.overrides.push((n, val));
            }
            Opt::Flag('r', _) => {}
            Opt::Flag('s', Some(v)) => {
                o.socket_count = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("invalid socket_count: {v}"))?;
            }
            Opt::Flag('S', _) => o.stream = true,
            Opt::Flag('t', Some(v)) => o.transport = Some(v),
            Opt::Flag('u', _) => o.unprivileged = true,
            Opt::Flag('v', _) => o.verbose += 1,
            Opt::Flag('V', _) => {}
            Opt::Flag('z', _) => o.zerolimit = true,
            Opt::Flag(c, _) | Opt::Invalid(c) | Opt::MissingArg(c) => {
                return Err(format!("invalid option: {c}"));
            }
        }
    }
    o.args = argv[g.optind.min(argv.len())..].to_vec();
    Ok(o)
}

/// One accepted client connection.
pub enum Conn {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Conn {
    fn raw_fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        match self {
            Conn::Tcp(s) => s.as_raw_fd(),
            Conn::Unix(s) => s.as_raw_fd(),
        }
    }
}

/// The single-server skeleton's use accounting, shared with the delivery
/// protocol's connection reuse ([`crate::global::deliver_proto::AgentConn`]):
/// a delivery agent may serve several requests on one connection, and each
/// of them counts against max_use as a connection does in Postfix (where
/// every delivery is a connection of its own).
mod reuse {
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
    /// Requests served by this process (connections, plus the follow-on
    /// requests of reused connections).
    pub static USES: AtomicI64 = AtomicI64::new(0);
    pub static MAX_USE: AtomicI64 = AtomicI64::new(0);
    pub static MAX_IDLE: AtomicI64 = AtomicI64::new(0);
    /// Set by the single-server loop: only its connections are reusable.
    pub static ENABLED: AtomicBool = AtomicBool::new(false);
    /// Master went away (stop or reload) while a connection was open.
    pub static STOPPING: AtomicBool = AtomicBool::new(false);
    /// Master has been told at least once that this process finished a
    /// request (it counts uses by "available" reports: a process that
    /// dies before its first one is a bad start-up to master).
    pub static REPORTED: AtomicBool = AtomicBool::new(false);
    pub static GENERATION: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    pub fn get(a: &AtomicI64) -> i64 {
        a.load(Ordering::Relaxed)
    }
    pub fn flag(a: &AtomicBool) -> bool {
        a.load(Ordering::Relaxed)
    }
    pub fn set_flag(a: &AtomicBool) {
        a.store(true, Ordering::Relaxed)
    }
    pub fn add(a: &AtomicI64) {
        a.fetch_add(1, Ordering::Relaxed);
    }
}

/// How long an agent waits at least for a follow-on request after master
/// went away or when max_idle is short: longer than the queue manager
/// keeps an unused connection (1 s), so that the agent never closes a
/// connection the queue manager may be about to use.
const REUSE_GRACE: Duration = Duration::from_secs(3);

impl crate::global::deliver_proto::AgentConn for Conn {
    fn may_reuse(&mut self) -> bool {
        let max_use = reuse::get(&reuse::MAX_USE);
        reuse::flag(&reuse::ENABLED)
            && !reuse::flag(&reuse::STOPPING)
            && (max_use <= 0 || reuse::get(&reuse::USES) < max_use)
    }

    fn wait_next(&mut self) -> bool {
        if !reuse::flag(&reuse::REPORTED) {
            // The first request of this process is done, but the
            // connection stays open: tell master so (available, then busy
            // again), or an agent that dies later on this connection
            // would count as a bad start-up and throttle the service.
            let generation = reuse::GENERATION.load(std::sync::atomic::Ordering::Relaxed);
            notify(generation, STAT_AVAIL);
            notify(generation, STAT_TAKEN);
            reuse::set_flag(&reuse::REPORTED);
        }
        let max_idle = reuse::get(&reuse::MAX_IDLE);
        let limit = if max_idle > 0 {
            Some(Duration::from_secs(max_idle as u64).max(REUSE_GRACE))
        } else {
            None
        };
        let start = Instant::now();
        loop {
            let stopping = reuse::flag(&reuse::STOPPING);
            let limit = if stopping {
                Some(limit.map_or(REUSE_GRACE, |l| l.min(REUSE_GRACE)))
            } else {
                limit
            };
            let left = match limit {
                Some(l) => {
                    let left = l.saturating_sub(start.elapsed());
                    if left.is_zero() {
                        return false;
                    }
                    Some(left)
                }
                None => None,
            };
            let mut fds = vec![self.raw_fd()];
            if !stopping {
                fds.push(STATUS_FD);
            }
            let ready = match process::poll_read(&fds, poll_ms(left)) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            };
            if ready.first() == Some(&true) {
                return true;
            }
            if ready.get(1) == Some(&true) {
                // Master went away: the request the queue manager may be
                // sending now is still served, but no other after it.
                if msg::verbose() > 0 {
                    msg::info("master disconnect -- finishing connection");
                }
                reuse::set_flag(&reuse::STOPPING);
            }
        }
    }

    fn count_use(&mut self) {
        reuse::add(&reuse::USES);
    }
}

/// What a service routine gets besides the connection.
pub struct Server {
    pub options: Options,
    pub conf: MailConf,
    pub progname: String,
    /// Listener descriptor numbers inherited from master.
    pub listen_fds: Vec<i32>,
}

enum Listener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
    Fifo(OwnedFd),
    Dgram(std::os::unix::net::UnixDatagram),
}

fn notify(generation: u32, status: i32) -> bool {
    let mut b = Vec::with_capacity(12);
    b.extend_from_slice(&(crate::sys::process::pid() as i32).to_ne_bytes());
    b.extend_from_slice(&generation.to_ne_bytes());
    b.extend_from_slice(&status.to_ne_bytes());
    matches!(process::write_fd(STATUS_FD, &b), Ok(12))
}

/// Run a single-threaded server: `service` handles one connection at a
/// time. Returns the exit status.
pub fn single_server(args: Vec<std::ffi::OsString>, service: fn(&mut Conn, &Server)) -> i32 {
    single_server_init(args, None, service)
}

/// [`single_server`] with a pre-jail hook: `pre_init` runs with the
/// configuration after the chdir to the queue directory and before the
/// chroot and privilege drop (where Postfix daemons open their tables).
struct Setup {
    server: Server,
    /// The status channel to master, kept open while serving.
    _status: Option<OwnedFd>,
    listeners: Vec<Listener>,
    lock: Option<std::fs::File>,
    generation: u32,
    max_idle: i64,
    max_use: i64,
}

/// What every skeleton does before serving: options, configuration,
/// logging, the lock file, chdir, privileges, the inherited descriptors.
fn setup(
    args: Vec<std::ffi::OsString>,
    pre_init: Option<fn(&MailConf)>,
    allow_fifo: bool,
) -> Setup {
    setup_kind(args, pre_init, allow_fifo, false)
}

fn setup_kind(
    args: Vec<std::ffi::OsString>,
    pre_init: Option<fn(&MailConf)>,
    allow_fifo: bool,
    dgram: bool,
) -> Setup {
    let argv: Vec<String> = args
        .iter()
        .map(|a| crate::util::latin1::from_os(a))
        .collect();
    let progname = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    msg::init(&progname);
    msg::set_stderr(false);
    msg::set_fatal_sleep(true);
    maillog::init_syslog(&maillog::mail_task(None, &progname));
    let opts = parse_options(&argv, &progname).unwrap_or_else(|e| msg::fatal(&e));
    for _ in 0..opts.verbose {
        msg::more_verbose();
    }
    let mut conf = MailConf::read(None).unwrap_or_else(|e| msg::fatal(&e.0));
    for (n, v) in &opts.overrides {
        conf.set(n, v);
    }
    let tag = maillog::mail_task(Some(&conf), &progname);
    if let Err(e) = maillog::init(&tag, &conf) {
        msg::fatal(&e);
    }
    if opts.stream {
        msg::fatal("stand-alone mode (-S) is not supported by this service");
    }
    if process::isatty(0) {
        msg::set_stderr(true);
        msg::fatal("do not run this command by hand");
    }
    let Some(transport) = opts.transport.clone() else {
        msg::fatal("no transport type specified");
    };
    let is_inet = transport.eq_ignore_ascii_case("inet");
    let is_fifo = transport.eq_ignore_ascii_case("fifo");
    let known = if dgram {
        transport.eq_ignore_ascii_case("unix-dgram")
    } else {
        is_inet
            || transport.eq_ignore_ascii_case("unix")
            || transport.eq_ignore_ascii_case("pass")
            || (allow_fifo && is_fifo)
    };
    if !known {
        msg::fatal(&format!("unsupported transport type: {transport}"));
    }
    let generation = match std::env::var(super::GEN_NAME) {
        Ok(g) => {
            if g.is_empty() || !g.bytes().all(|b| b.is_ascii_digit()) {
                msg::fatal(&format!("bad generation: {g}"));
            }
            u32::from_str_radix(&g, 8).unwrap_or(0)
        }
        Err(_) => 0,
    };
    let max_idle = match &opts.max_idle {
        Some(v) => crate::global::mail_conf::conv_time(v, 's').unwrap_or(0),
        None => conf
            .get_time("max_idle", 's', 1, 0)
            .unwrap_or_else(|e| msg::fatal(&e.0)),
    };
    let max_use = match &opts.max_use {
        Some(v) => v.parse::<i64>().unwrap_or(0),
        None => conf
            .get_int("max_use", 1, 0)
            .unwrap_or_else(|e| msg::fatal(&e.0)),
    };
    let str_param = |n: &str| {
        conf.lookup_eval(n)
            .unwrap_or_else(|e| msg::fatal(&e.0))
            .unwrap_or_default()
    };
    let lock = if !opts.alone {
        let path = format!(
            "{}/{}.{}",
            str_param("process_id_directory"),
            transport,
            opts.service_name
        );
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => Some(f),
            Err(e) => msg::fatal(&format!(
                "open lock file {path}: cannot open file: {}",
                crate::global::config_file::errno_text(&e)
            )),
        }
    } else {
        None
    };
    let queue_dir = str_param("queue_directory");
    if let Err(e) = std::env::set_current_dir(crate::util::latin1::to_path(&queue_dir)) {
        msg::fatal(&format!(
            "chdir(\"{queue_dir}\"): {}",
            crate::global::config_file::errno_text(&e)
        ));
    }
    if let Some(f) = pre_init {
        f(&conf);
    }
    // Drop privileges: only root can, and only root needs to.
    if crate::sys::geteuid() == 0 {
        let root = opts.chroot.then(|| queue_dir.clone());
        let ids = if opts.unprivileged {
            let owner = str_param("mail_owner");
            match process::getpwnam(&owner) {
                Some(pw) => Some((pw.uid, pw.gid)),
                None => msg::fatal(&format!(
                    "file {}/main.cf: parameter mail_owner: unknown user name value: {owner}",
                    conf.config_dir
                )),
            }
        } else {
            None
        };
        if let Err(e) = process::chroot_uid(root.as_deref(), ids) {
            msg::fatal(&e);
        }
    }
    let mut listeners = Vec::new();
    let mut listen_fds = Vec::new();
    for n in 0..opts.socket_count {
        let fd = LISTEN_FD + n as i32;
        let Some(owned) = process::take_fd(fd) else {
            msg::fatal(&format!("no listener at descriptor {fd}"));
        };
        let _ = process::set_cloexec(fd, true);
        listen_fds.push(fd);
        listeners.push(if dgram {
            Listener::Dgram(std::os::unix::net::UnixDatagram::from(owned))
        } else if is_fifo {
            Listener::Fifo(owned)
        } else if is_inet {
            Listener::Tcp(std::net::TcpListener::from(owned))
        } else {
            Listener::Unix(std::os::unix::net::UnixListener::from(owned))
        });
    }
    let status: Option<OwnedFd> = process::take_fd(STATUS_FD);
    let _ = process::set_cloexec(STATUS_FD, true);
    let _ = process::set_cloexec(super::FLOW_READ, true);
    let _ = process::set_cloexec(super::FLOW_WRITE, true);
    let server = Server {
        options: opts,
        conf,
        progname,
        listen_fds,
    };
    Setup {
        server,
        _status: status,
        listeners,
        lock,
        generation,
        max_idle,
        max_use,
    }
}

pub fn single_server_init(
    args: Vec<std::ffi::OsString>,
    pre_init: Option<fn(&MailConf)>,
    service: fn(&mut Conn, &Server),
) -> i32 {
    let Setup {
        server,
        _status,
        listeners,
        lock,
        generation,
        max_idle,
        max_use,
    } = setup(args, pre_init, false);
    reuse::MAX_USE.store(max_use, std::sync::atomic::Ordering::Relaxed);
    reuse::MAX_IDLE.store(max_idle, std::sync::atomic::Ordering::Relaxed);
    reuse::GENERATION.store(generation, std::sync::atomic::Ordering::Relaxed);
    reuse::set_flag(&reuse::ENABLED);
    let mut idle_since = Instant::now();
    while max_use == 0 || reuse::get(&reuse::USES) < max_use {
        if let Some(f) = &lock
            && let Err(e) = flock(f, LockOp::Exclusive)
        {
            msg::fatal(&format!(
                "select lock: {}",
                crate::global::config_file::errno_text(&e)
            ));
        }
        let mut fds: Vec<i32> = server.listen_fds.clone();
        fds.push(STATUS_FD);
        let Ok(left) = idle_left(max_idle, idle_since) else {
            return idle_exit();
        };
        let wait = poll_ms(left);
        let ready = process::poll_read(&fds, wait).unwrap_or_else(|e| {
            msg::fatal(&format!(
                "select: {}",
                crate::global::config_file::errno_text(&e)
            ))
        });
        if ready.last() == Some(&true) {
            if msg::verbose() > 0 {
                msg::info("master disconnect -- exiting");
            }
            return 0;
        }
        let mut conn = None;
        for (k, r) in ready.iter().enumerate().take(listeners.len()) {
            if !r {
                continue;
            }
            conn = match &listeners[k] {
                Listener::Tcp(l) => l.accept().ok().map(|(s, _)| {
                    accepted_blocking(|b| s.set_nonblocking(b));
                    Conn::Tcp(s)
                }),
                Listener::Unix(l) => l.accept().ok().map(|(s, _)| {
                    accepted_blocking(|b| s.set_nonblocking(b));
                    Conn::Unix(s)
                }),
                Listener::Fifo(_) | Listener::Dgram(_) => None,
            };
            if conn.is_some() {
                break;
            }
        }
        if let Some(f) = &lock
            && let Err(e) = flock(f, LockOp::Unlock)
        {
            msg::fatal(&format!(
                "select unlock: {}",
                crate::global::config_file::errno_text(&e)
            ));
        }
        let Some(mut conn) = conn else {
            continue;
        };
        if msg::verbose() > 0 {
            msg::info("connection established");
        }
        notify(generation, STAT_TAKEN);
        // The connection's first request counts here; a delivery agent
        // counts the follow-on requests it serves on the same connection.
        reuse::add(&reuse::USES);
        service(&mut conn, &server);
        drop(conn);
        reuse::set_flag(&reuse::REPORTED);
        if !notify(generation, STAT_AVAIL) || reuse::flag(&reuse::STOPPING) {
            return 0;
        }
        if msg::verbose() > 0 {
            msg::info("connection closed");
        }
        idle_since = Instant::now();
    }
    0
}

/// A trigger-driven service (Postfix's trigger_server): master's wakeup
/// and the `postqueue`/`postsuper`/`sendmail` kicks arrive as a few bytes
/// on the listener (a FIFO, or a UNIX socket that the client writes and
/// closes).
pub trait TriggerService {
    /// Handle one trigger's bytes.
    fn trigger(&mut self, data: &[u8], server: &Server);
    /// Do pending work; return how long the skeleton may wait for the next
    /// trigger before calling again (`None`: indefinitely).
    fn tick(&mut self, server: &Server) -> Option<Duration>;
    /// Whether max_idle and max_use do not apply (qmgr).
    fn unlimited(&self) -> bool {
        false
    }
    /// Descriptors of the service's own (with their poll events) that
    /// also end the wait: qmgr's delivery agent connections.
    fn poll_fds(&self, _out: &mut Vec<(std::os::fd::RawFd, i16)>) {}
    /// Those of the service's descriptors that poll reported ready (with
    /// their returned events), before the triggers that came meanwhile.
    fn poll_ready(&mut self, _ready: &[(std::os::fd::RawFd, i16)], _server: &Server) {}
}

/// Make an accepted connection blocking. Linux's accept(2) never passes
/// the listener's O_NONBLOCK on to the new socket, so there this costs no
/// system call; elsewhere the flag is cleared explicitly.
fn accepted_blocking(set_nonblocking: impl FnOnce(bool) -> std::io::Result<()>) {
    if !cfg!(target_os = "linux") {
        let _ = set_nonblocking(false);
    }
}

/// Read what one trigger client sends, briefly and boundedly.
fn read_trigger(l: &Listener) -> Option<Vec<u8>> {
    let mut buf = [0u8; 1024];
    match l {
        Listener::Fifo(fd) => {
            use std::os::fd::AsRawFd;
            match process::read_fd(fd.as_raw_fd(), &mut buf) {
                Ok(n) if n > 0 => Some(buf[..n].to_vec()),
                _ => None,
            }
        }
        Listener::Unix(u) => {
            let (mut s, _) = u.accept().ok()?;
            accepted_blocking(|b| s.set_nonblocking(b));
            // The client writes its request as soon as it connected: it is
            // usually there already, and then no read timeout needs
            // setting.
            use std::os::fd::AsRawFd;
            if let Ok(Some(n)) = crate::sys::net::recv_queued(s.as_raw_fd(), &mut buf) {
                return Some(buf[..n].to_vec());
            }
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let n = s.read(&mut buf).unwrap_or(0);
            Some(buf[..n].to_vec())
        }
        Listener::Dgram(d) => {
            let n = d.recv(&mut buf).ok()?;
            Some(buf[..n].to_vec())
        }
        Listener::Tcp(t) => {
            let (mut s, _) = t.accept().ok()?;
            accepted_blocking(|b| s.set_nonblocking(b));
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let n = s.read(&mut buf).unwrap_or(0);
            Some(buf[..n].to_vec())
        }
    }
}

/// Run a trigger server. Returns the exit status.
pub fn trigger_server(
    args: Vec<std::ffi::OsString>,
    pre_init: Option<fn(&MailConf)>,
    service: &mut dyn TriggerService,
) -> i32 {
    let Setup {
        server,
        _status,
        listeners,
        lock: _lock,
        generation,
        max_idle,
        max_use,
    } = setup(args, pre_init, true);
    let unlimited = service.unlimited();
    let mut use_count = 0i64;
    let mut idle_since = Instant::now();
    let mut own: Vec<(std::os::fd::RawFd, i16)> = Vec::new();
    let mut fds: Vec<(std::os::fd::RawFd, i16)> = Vec::new();
    loop {
        let next = service.tick(&server);
        if !unlimited && max_use > 0 && use_count >= max_use {
            return 0;
        }
        let mut wait: Option<Duration> = next;
        if !unlimited {
            match idle_left(max_idle, idle_since) {
                Err(()) => return idle_exit(),
                Ok(Some(left)) => wait = Some(wait.map_or(left, |w| w.min(left))),
                Ok(None) => {}
            }
        }
        let ms = poll_ms(wait);
        own.clear();
        service.poll_fds(&mut own);
        fds.clear();
        fds.extend(server.listen_fds.iter().map(|&fd| (fd, process::POLLIN)));
        fds.push((STATUS_FD, process::POLLIN));
        fds.extend_from_slice(&own);
        process::poll_events(&mut fds, ms).unwrap_or_else(|e| {
            msg::fatal(&format!(
                "select: {}",
                crate::global::config_file::errno_text(&e)
            ))
        });
        let nl = server.listen_fds.len();
        if fds[nl].1 != 0 {
            if msg::verbose() > 0 {
                msg::info("master disconnect -- exiting");
            }
            return 0;
        }
        own.clear();
        own.extend(fds[nl + 1..].iter().filter(|f| f.1 != 0));
        if !own.is_empty() {
            service.poll_ready(&own, &server);
        }
        for (k, &(_, r)) in fds.iter().enumerate().take(listeners.len()) {
            if r == 0 {
                continue;
            }
            if let Some(data) = read_trigger(&listeners[k]) {
                // Busy/available is reported for the first trigger only:
                // master learns that the process works (no "bad command
                // startup" when it dies later), and a trigger service runs
                // one process (qmgr, pickup: process limit 1), so later
                // reports would only wake master twice per trigger
                // (compat/DIVERGENCES.md).
                let report = use_count == 0;
                if report {
                    notify(generation, STAT_TAKEN);
                }
                service.trigger(&data, &server);
                if report {
                    notify(generation, STAT_AVAIL);
                }
                use_count += 1;
                idle_since = Instant::now();
            }
        }
    }
}

/// A service that keeps several clients connected at once (Postfix's
/// multi_server): each readable client gets one request handled, in turn.
pub trait RequestService {
    /// Called before the skeleton waits for the next event (Postfix's
    /// pre_accept hook); returning `false` makes the process exit.
    fn pre_accept(&mut self, _server: &Server) -> bool {
        true
    }
    /// Just after a client connects (announce the protocol).
    fn post_accept(&mut self, conn: &mut std::os::unix::net::UnixStream, server: &Server);
    /// Handle one request from a readable client; `false` drops it.
    fn serve(
        &mut self,
        reader: &mut std::io::BufReader<std::os::unix::net::UnixStream>,
        server: &Server,
    ) -> bool;
}

/// Run a [`RequestService`] on UNIX-domain listeners with the
/// multi-client skeleton (`multi_loop`): the service reads each request
/// itself through a buffered reader.
pub fn request_server(
    args: Vec<std::ffi::OsString>,
    pre_init: Option<fn(&MailConf)>,
    service: &mut dyn RequestService,
) -> i32 {
    multi_loop(setup(args, pre_init, false), &mut RequestClients(service))
}

/// A client broke the protocol: drop it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropClient;

/// A service with many concurrent clients in one process (Postfix's
/// multi_server), such as anvil.
pub trait MultiService {
    /// A client connected: what to send it first (a protocol greeting).
    fn accept(&mut self, id: u64) -> Vec<u8>;
    /// Bytes arrived from a client: consume the complete requests at the
    /// front of `input` and return the replies; `Err` drops the client.
    fn input(&mut self, id: u64, input: &mut Vec<u8>) -> Result<Vec<u8>, DropClient>;
    /// A client went away.
    fn disconnect(&mut self, id: u64);
    /// Periodic work; how long until the next call (`None`: no timer).
    fn tick(&mut self, server: &Server) -> Option<Duration>;
    /// The process is about to exit (idle, or master went away).
    fn exit(&mut self);
    /// The smallest max_idle the service accepts (seconds).
    fn min_idle(&self, _server: &Server) -> i64 {
        0
    }
}

/// Run a [`MultiService`] with the multi-client skeleton (`multi_loop`):
/// the skeleton reads what arrives and hands the bytes over. There is no
/// use limit (as Postfix's anvil sets none); max_idle is at least the
/// service's `min_idle`. Returns the exit status.
pub fn multi_server(
    args: Vec<std::ffi::OsString>,
    pre_init: Option<fn(&MailConf)>,
    service: &mut dyn MultiService,
) -> i32 {
    let mut s = setup(args, pre_init, false);
    if s.max_idle > 0 {
        s.max_idle = s.max_idle.max(service.min_idle(&s.server));
    }
    s.max_use = 0;
    multi_loop(
        s,
        &mut ByteClients {
            service,
            next_id: 0,
        },
    )
}

/// What the multi-client skeleton needs from a service: the per-client
/// input handling; the waiting, accepting and exiting are the skeleton's.
trait MultiClients {
    type Client;
    /// Before each wait: `None` to exit, else how long until the service
    /// wants to run again even with no event (`None`: no timer).
    fn before_wait(&mut self, server: &Server) -> Option<Option<Duration>>;
    /// A client connected; `None` when it is already gone.
    fn connect(&mut self, conn: Conn, server: &Server) -> Option<Self::Client>;
    fn fd(client: &Self::Client) -> i32;
    /// Input already read and waiting to be served without a wait.
    fn buffered(_client: &Self::Client) -> bool {
        false
    }
    /// The client is readable (or has buffered input): `false` drops it.
    fn input(&mut self, client: &mut Self::Client, server: &Server) -> bool;
    fn disconnect(&mut self, client: Self::Client);
    /// The process is about to exit.
    fn exit(&mut self) {}
}

/// [`RequestService`] clients: a buffered reader each, one request served
/// per wake-up.
struct RequestClients<'a>(&'a mut dyn RequestService);

impl MultiClients for RequestClients<'_> {
    type Client = std::io::BufReader<std::os::unix::net::UnixStream>;
    fn before_wait(&mut self, server: &Server) -> Option<Option<Duration>> {
        self.0.pre_accept(server).then_some(None)
    }
    fn connect(&mut self, conn: Conn, server: &Server) -> Option<Self::Client> {
        let Conn::Unix(mut s) = conn else {
            return None;
        };
        self.0.post_accept(&mut s, server);
        Some(std::io::BufReader::new(s))
    }
    fn fd(client: &Self::Client) -> i32 {
        use std::os::fd::AsRawFd;
        client.get_ref().as_raw_fd()
    }
    fn buffered(client: &Self::Client) -> bool {
        !client.buffer().is_empty()
    }
    fn input(&mut self, client: &mut Self::Client, server: &Server) -> bool {
        self.0.serve(client, server)
    }
    fn disconnect(&mut self, _client: Self::Client) {}
}

/// [`MultiService`] clients: an id, the connection and the bytes read
/// but not yet consumed (at most 1 MB).
struct ByteClients<'a> {
    service: &'a mut dyn MultiService,
    next_id: u64,
}

impl MultiClients for ByteClients<'_> {
    type Client = (u64, Conn, Vec<u8>);
    fn before_wait(&mut self, server: &Server) -> Option<Option<Duration>> {
        Some(self.service.tick(server))
    }
    fn connect(&mut self, mut conn: Conn, _server: &Server) -> Option<Self::Client> {
        self.next_id += 1;
        let hello = self.service.accept(self.next_id);
        if !hello.is_empty() && conn.write_all(&hello).is_err() {
            self.service.disconnect(self.next_id);
            return None;
        }
        Some((self.next_id, conn, Vec::new()))
    }
    fn fd(client: &Self::Client) -> i32 {
        use std::os::fd::AsRawFd;
        match &client.1 {
            Conn::Tcp(s) => s.as_raw_fd(),
            Conn::Unix(s) => s.as_raw_fd(),
        }
    }
    fn input(&mut self, (id, conn, buf): &mut Self::Client, _server: &Server) -> bool {
        let mut tmp = [0u8; 4096];
        let n = conn.read(&mut tmp).unwrap_or(0);
        if n == 0 {
            return false;
        }
        buf.extend_from_slice(&tmp[..n]);
        if buf.len() > 1 << 20 {
            return false;
        }
        match self.service.input(*id, buf) {
            Ok(out) => out.is_empty() || conn.write_all(&out).is_ok(),
            Err(DropClient) => false,
        }
    }
    fn disconnect(&mut self, (id, _, _): Self::Client) {
        self.service.disconnect(id);
    }
    fn exit(&mut self) {
        self.service.exit();
    }
}

impl Listener {
    /// Accept a connection on a stream listener, made blocking.
    fn accept_conn(&self) -> Option<Conn> {
        match self {
            Listener::Tcp(l) => l.accept().ok().map(|(s, _)| {
                let _ = s.set_nonblocking(false);
                Conn::Tcp(s)
            }),
            Listener::Unix(l) => l.accept().ok().map(|(s, _)| {
                let _ = s.set_nonblocking(false);
                Conn::Unix(s)
            }),
            Listener::Fifo(_) | Listener::Dgram(_) => None,
        }
    }
}

/// The multi-client skeleton (Postfix's multi_server): accept clients,
/// serve whichever is readable (buffered input first), tell master
/// around each accept, serialise accepting with the service's other
/// processes while this one has no client; exit after max_idle seconds
/// with no client, after max_use connections once all clients are gone,
/// when the service says so, or when master goes away.
fn multi_loop<C: MultiClients>(s: Setup, service: &mut C) -> i32 {
    let Setup {
        server,
        _status,
        listeners,
        lock,
        generation,
        max_idle,
        max_use,
    } = s;
    for l in &listeners {
        // Several processes may wake for one client: never block in accept.
        let _ = match l {
            Listener::Unix(u) => u.set_nonblocking(true),
            Listener::Tcp(t) => t.set_nonblocking(true),
            Listener::Fifo(_) | Listener::Dgram(_) => Ok(()),
        };
    }
    let mut clients: Vec<C::Client> = Vec::new();
    let mut use_count = 0i64;
    let mut idle_since = Instant::now();
    let exit = |service: &mut C, why: &str| {
        if !why.is_empty() && msg::verbose() > 0 {
            msg::info(why);
        }
        service.exit();
        0
    };
    loop {
        if clients.is_empty() && max_use > 0 && use_count >= max_use {
            return exit(service, "");
        }
        let Some(timer) = service.before_wait(&server) else {
            return exit(service, "");
        };
        // Requests already buffered are served before waiting again.
        let mut k = 0;
        while k < clients.len() {
            if C::buffered(&clients[k]) && !service.input(&mut clients[k], &server) {
                service.disconnect(clients.swap_remove(k));
                idle_since = Instant::now();
                continue;
            }
            k += 1;
        }
        let accepting = max_use == 0 || use_count < max_use;
        let mut fds: Vec<i32> = if accepting {
            server.listen_fds.clone()
        } else {
            Vec::new()
        };
        let nlisten = fds.len();
        fds.extend(clients.iter().map(C::fd));
        fds.push(STATUS_FD);
        let mut wait = timer;
        if clients.iter().any(C::buffered) {
            wait = Some(Duration::ZERO);
        } else if clients.is_empty() {
            match idle_left(max_idle, idle_since) {
                Err(()) => return exit(service, "idle timeout -- exiting"),
                Ok(Some(left)) => wait = Some(wait.map_or(left, |w| w.min(left))),
                Ok(None) => {}
            }
        }
        let wait = poll_ms(wait);
        // Serialise accepting with the other processes of this service.
        let locked = accepting && clients.is_empty() && lock.is_some();
        if locked
            && let Some(f) = &lock
            && let Err(e) = flock(f, LockOp::Exclusive)
        {
            msg::fatal(&format!(
                "select lock: {}",
                crate::global::config_file::errno_text(&e)
            ));
        }
        let ready = process::poll_read(&fds, wait).unwrap_or_else(|e| {
            msg::fatal(&format!(
                "select: {}",
                crate::global::config_file::errno_text(&e)
            ))
        });
        if ready.last() == Some(&true) {
            return exit(service, "master disconnect -- exiting");
        }
        for (k, r) in ready.iter().enumerate().take(nlisten) {
            let Some(conn) = r.then(|| listeners[k].accept_conn()).flatten() else {
                continue;
            };
            notify(generation, STAT_TAKEN);
            if msg::verbose() > 0 {
                msg::info("connection established");
            }
            if let Some(c) = service.connect(conn, &server) {
                clients.push(c);
            }
            use_count += 1;
            notify(generation, STAT_AVAIL);
        }
        if locked
            && let Some(f) = &lock
            && let Err(e) = flock(f, LockOp::Unlock)
        {
            msg::fatal(&format!(
                "select unlock: {}",
                crate::global::config_file::errno_text(&e)
            ));
        }
        // Clients that were readable; walk from the end so removal keeps
        // the earlier indices valid.
        let readable: Vec<usize> = (0..fds.len() - 1 - nlisten)
            .filter(|i| ready[nlisten + i])
            .collect();
        for &i in readable.iter().rev() {
            if i < clients.len() && !service.input(&mut clients[i], &server) {
                service.disconnect(clients.remove(i));
                if msg::verbose() > 0 {
                    msg::info("connection closed");
                }
                idle_since = Instant::now();
            }
        }
    }
}

/// Postfix's DGRAM_BUF_SIZE: the longest datagram a dgram server reads.
pub const DGRAM_BUF_SIZE: usize = 4096;

/// A datagram service (Postfix's dgram_server, for postlogd): `service`
/// gets each datagram that arrives on the inherited `unix-dgram` listener.
/// It may take further queued datagrams from the listener itself and
/// returns true when it found none left (the loop then polls again instead
/// of trying another receive). `solitary` services need a process limit
/// of 1 (`-l`); with `unlimited`, `max_use` does not apply (max_idle
/// does). Returns the exit status.
pub fn dgram_server(
    args: Vec<std::ffi::OsString>,
    pre_init: Option<fn(&MailConf)>,
    solitary: bool,
    unlimited: bool,
    service: fn(&[u8], &Server) -> bool,
) -> i32 {
    let Setup {
        server,
        _status,
        listeners,
        lock: _lock,
        generation,
        max_idle,
        max_use,
    } = setup_kind(args, pre_init, false, true);
    if solitary && !server.options.alone {
        msg::fatal(&format!(
            "service {} requires a process limit of 1",
            server.options.service_name
        ));
    }
    let mut use_count = 0i64;
    let mut idle_since = Instant::now();
    let mut buf = vec![0u8; DGRAM_BUF_SIZE];
    for l in &listeners {
        if let Listener::Dgram(d) = l {
            let _ = d.set_nonblocking(true);
        }
    }
    loop {
        if !unlimited && max_use > 0 && use_count >= max_use {
            return 0;
        }
        let Ok(left) = idle_left(max_idle, idle_since) else {
            return idle_exit();
        };
        let ms = poll_ms(left);
        let mut fds: Vec<i32> = server.listen_fds.clone();
        fds.push(STATUS_FD);
        let ready = process::poll_read(&fds, ms).unwrap_or_else(|e| {
            msg::fatal(&format!(
                "select: {}",
                crate::global::config_file::errno_text(&e)
            ))
        });
        for (k, r) in ready.iter().enumerate().take(listeners.len()) {
            let (true, Listener::Dgram(d)) = (*r, &listeners[k]) else {
                continue;
            };
            // The listener is non-blocking: take every datagram queued
            // now. A solitary service does not report busy and idle to
            // master (with one process allowed, master would start no
            // other anyway): for postlogd that saves two master wake-ups
            // per log line.
            if !solitary {
                notify(generation, STAT_TAKEN);
            }
            while let Ok(n) = d.recv(&mut buf) {
                let empty = service(&buf[..n], &server);
                use_count = use_count.saturating_add(1);
                if empty {
                    break;
                }
            }
            if !solitary && !notify(generation, STAT_AVAIL) {
                return 0;
            }
            idle_since = Instant::now();
        }
        if ready.last() == Some(&true) {
            if msg::verbose() > 0 {
                msg::info("master disconnect -- exiting");
            }
            return 0;
        }
    }
}

/// What is left of a server's idle time (`max_idle` seconds since
/// `idle_since`): None without a limit, Err when it has run out.
fn idle_left(max_idle: i64, idle_since: Instant) -> Result<Option<Duration>, ()> {
    if max_idle <= 0 {
        return Ok(None);
    }
    let left = Duration::from_secs(max_idle as u64).saturating_sub(idle_since.elapsed());
    if left.is_zero() {
        return Err(());
    }
    Ok(Some(left))
}

/// A poll(2) timeout in milliseconds (-1: wait forever).
fn poll_ms(wait: Option<Duration>) -> i32 {
    wait.map_or(-1, |w| w.as_millis().min(i32::MAX as u128) as i32)
}

/// Log (when verbose) that the idle time ran out.
fn idle_exit() -> i32 {
    if msg::verbose() > 0 {
        msg::info("idle timeout -- exiting");
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options_master_passes() {
        let o = parse_options(
            &v(&[
                "smtpd", "-n", "smtp", "-t", "inet", "-u", "-c", "-o", "stress=", "-s", "2", "x",
            ]),
            "smtpd",
        )
        .unwrap();
        assert_eq!(o.service_name, "smtp");
        assert_eq!(o.transport.as_deref(), Some("inet"));
        assert!(o.unprivileged && o.chroot && !o.alone);
        assert_eq!(o.overrides, [("stress".to_string(), String::new())]);
        assert_eq!(o.socket_count, 2);
        assert_eq!(o.args, ["x"]);
        let o = parse_options(&v(&["pickup", "-l", "-t", "unix"]), "pickup").unwrap();
        assert_eq!(o.service_name, "pickup");
        assert!(o.alone);
        assert_eq!(
            parse_options(&v(&["x", "-s", "0"]), "x").unwrap_err(),
            "invalid socket_count: 0"
        );
    }
}
