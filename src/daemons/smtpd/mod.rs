//! Replaces smtpd(8) of Postfix 3.7: the SMTP server.
//!
//! Trusts nothing from the client: every line is bounded by
//! line_length_limit, every message by message_size_limit, every session by
//! the error limits and smtpd_timeout. Runs as mail_owner (master drops
//! privileges before exec; `smtpd -S` runs as the invoking user for
//! `sendmail -bs`). Reads main.cf (MAIL_CONFIG) with master.cf `-o`
//! overrides: smtpd_*, mynetworks*, mydestination, relay_domains,
//! virtual_*_domains/maps, local_recipient_maps, message_size_limit,
//! line_length_limit, smtputf8_enable, disable_vrfy_command,
//! fast_flush_domains, soft_bounce and the *_reject_code parameters.
//!
//! Layers: [`token`] and [`proto`] are the protocol state machine (bytes in,
//! [`state::Event`]s out), [`check`] the restrictions, [`sink`] where
//! messages go (cleanup), [`server`] the I/O loop.
//!
//! Modes: `smtpd -S` serves one session on stdin/stdout (stand-alone, as
//! `sendmail -bs` uses it); `smtpd -L 127.0.0.1:PORT` listens by itself
//! until master hands it sockets (rostfix extension, for tests).

pub mod anvil_clnt;
pub mod check;
pub mod cleanup_sink;
pub mod conf;
pub mod expand;
pub mod inbuf;
pub mod policy;
pub mod policy_hook;
pub mod proto;
pub mod resolve;
pub mod server;
pub mod sink;
pub mod state;
pub mod token;

#[cfg(test)]
mod tests;

use crate::global::mail_conf::MailConf;
use crate::global::msg;
use sink::{EndInfo, Finish, MailStart, Recipient, RecordKind, Sink, SinkError, Transaction};
use std::ffi::OsString;
use std::io::Write;

/// A sink that writes each finished message to `DIR/QUEUEID` as text
/// (envelope lines, then the content), fsynced before the 250 reply.
/// Used until cleanup is joined in (ROSTFIX_SMTPD_DUMP=DIR).
pub struct DumpSink {
    pub dir: std::path::PathBuf,
    pub seq: u32,
}

struct DumpTx {
    path: std::path::PathBuf,
    text: Vec<u8>,
    qid: String,
}

impl Sink for DumpSink {
    fn open(&mut self, start: &MailStart) -> Result<Box<dyn Transaction>, SinkError> {
        self.seq += 1;
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        let qid = format!(
            "{:05X}{:06X}",
            (t / 1_000_000) & 0xfffff,
            (u128::from(std::process::id()) << 8 | u128::from(self.seq)) & 0xffffff
        );
        let mut text = format!(
            "sender={}\nclient={}\nhelo={}\nprotocol={}\n",
            start.sender,
            start.client.namaddr,
            start.client.helo.clone().unwrap_or_default(),
            start.client.protocol
        )
        .into_bytes();
        if let Some(e) = &start.encoding {
            text.extend_from_slice(format!("encoding={e}\n").as_bytes());
        }
        Ok(Box::new(DumpTx {
            path: self.dir.join(&qid),
            text,
            qid,
        }))
    }
}

impl Transaction for DumpTx {
    fn queue_id(&self) -> String {
        self.qid.clone()
    }
    fn recipient(&mut self, r: &Recipient) {
        self.text.extend_from_slice(
            format!(
                "recipient={} orcpt={} notify={}\n",
                r.address, r.orcpt, r.notify
            )
            .as_bytes(),
        );
    }
    fn begin_content(&mut self, flags: u32) {
        self.text
            .extend_from_slice(format!("flags={flags}\n\n").as_bytes());
    }
    fn record(&mut self, kind: RecordKind, data: &[u8]) {
        self.text.extend_from_slice(data);
        if kind == RecordKind::Norm {
            self.text.push(b'\n');
        }
    }
    fn finish(self: Box<Self>, _end: &EndInfo) -> Finish {
        let tmp = self.path.with_extension("tmp");
        let r = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&self.text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        match r {
            Ok(()) => Finish::default(),
            Err(_) => Finish {
                status: sink::stat::WRITE,
                why: String::new(),
            },
        }
    }
    fn abort(self: Box<Self>) {}
}

/// A sink that cannot deliver: cleanup is not reachable.
pub struct NoCleanup;

impl Sink for NoCleanup {
    fn open(&mut self, _start: &MailStart) -> Result<Box<dyn Transaction>, SinkError> {
        Err(SinkError("cleanup service not available".into()))
    }
}

fn make_sink(smtpd: &MailConf) -> Box<dyn Sink> {
    if let Some(d) = std::env::var_os("ROSTFIX_SMTPD_DUMP") {
        return Box::new(DumpSink {
            dir: d.into(),
            seq: 0,
        });
    }
    let mut base = MailConf::read(None).unwrap_or_else(|_| smtpd.clone());
    // smtpd's own -o cleanup_service_name picks the cleanup service.
    if let Ok(Some(name)) = smtpd.lookup_eval("cleanup_service_name") {
        base.set("cleanup_service_name", &name);
    }
    match cleanup_sink::CleanupSink::new(cleanup_sink::cleanup_conf(&base), smtpd) {
        Ok(s) => Box::new(s),
        Err(e) => msg::fatal(&e),
    }
}

thread_local! {
    /// The cleanup service of this smtpd process, opened before the
    /// privilege drop (as Postfix's cleanup opens its tables) and kept
    /// across connections.
    static SINK: std::cell::RefCell<Option<Box<dyn Sink>>> = const { std::cell::RefCell::new(None) };
}

/// What one smtpd process keeps from connection to connection, as
/// Postfix's smtpd: the protocol settings, the restrictions with their
/// tables (opened before the privilege drop) and the cleanup service.
struct Resident {
    cfg: proto::Config,
    ck: check::Checker,
    peername_lookup: bool,
    /// The log tag (syslog_name/smtpd).
    tag: String,
}

impl Resident {
    fn new(conf: &MailConf) -> Resident {
        let c = conf::Conf::new(conf.clone());
        Resident {
            cfg: proto::Config::from_conf(&c),
            ck: check::Checker::from_confs(&c, &main_cf(conf)),
            peername_lookup: c.bool("smtpd_peername_lookup"),
            tag: server::MaillogLogger::new(conf).tag().to_string(),
        }
    }
}

thread_local! {
    static RESIDENT: std::cell::RefCell<Option<Resident>> = const { std::cell::RefCell::new(None) };
}

/// main.cf without the service's master.cf -o overrides: what trivial-rewrite
/// sees when smtpd asks it to resolve an address.
fn main_cf(conf: &MailConf) -> conf::Conf {
    conf::Conf::new(MailConf::read(Some(&conf.config_dir)).unwrap_or_else(|_| conf.clone()))
}

fn pre_init(conf: &MailConf) {
    let sink = make_sink(conf);
    SINK.with(|s| *s.borrow_mut() = Some(sink));
    let r = Resident::new(conf);
    RESIDENT.with(|s| *s.borrow_mut() = Some(r));
}

/// The mail log of `smtpd -S` and `smtpd -L`: the same as under master
/// (the postlog service when maillog_file is set, else syslog).
fn logger(c: &conf::Conf) -> server::MaillogLogger {
    let tag = crate::global::maillog::mail_task(Some(&c.mc), "smtpd");
    if let Err(e) = crate::global::maillog::init(&tag, &c.mc) {
        msg::fatal(&e);
    }
    server::MaillogLogger::new(&c.mc)
}

/// Serve one connection that master's single-server skeleton accepted.
fn service_conn(conn: &mut crate::master::server::Conn, srv: &crate::master::server::Server) {
    let mut res = RESIDENT
        .with(|s| s.borrow_mut().take())
        .unwrap_or_else(|| Resident::new(&srv.conf));
    res.cfg.service = srv.options.service_name.clone();
    let mut sink = SINK
        .with(|s| s.borrow_mut().take())
        .unwrap_or_else(|| make_sink(&srv.conf));
    let mut log = server::MaillogLogger::with_tag(res.tag.clone());
    let (cfg, ck) = (&mut res.cfg, &mut res.ck);
    match conn {
        crate::master::server::Conn::Tcp(s) => {
            let peer = server::tcp_peer(s, res.peername_lookup, &mut log);
            let mut t = server::TimedTcp::new(s);
            server::serve(cfg, ck, sink.as_mut(), peer, &mut t, &mut log);
        }
        crate::master::server::Conn::Unix(s) => {
            let mut u = server::UnixConn(s);
            server::serve(
                cfg,
                ck,
                sink.as_mut(),
                proto::Peer::stand_alone(),
                &mut u,
                &mut log,
            );
        }
    }
    SINK.with(|s| *s.borrow_mut() = Some(sink));
    RESIDENT.with(|s| *s.borrow_mut() = Some(res));
}

/// `smtpd -S` (stdin/stdout), `smtpd -L host:port` (listen by itself), or,
/// without those, run by master with Postfix's daemon options.
pub fn main(args: Vec<OsString>) -> i32 {
    let raw = args.clone();
    let args: Vec<String> = args
        .iter()
        .map(|a| crate::util::latin1::from_os(a))
        .collect();
    if !args.iter().any(|a| a == "-S" || a == "-L") {
        return crate::master::server::single_server_init(raw, Some(pre_init), service_conn);
    }
    msg::init("smtpd");
    let mut stream = false;
    let mut listen: Option<String> = None;
    let mut overrides: Vec<(String, String)> = Vec::new();
    let mut i = 1;
    while i < args.len() {
        let a = args[i].as_str();
        let mut val = || {
            i += 1;
            args.get(i).cloned().unwrap_or_else(|| {
                msg::fatal(&format!("option requires an argument -- '{}'", &a[1..]))
            })
        };
        match a {
            "-S" => stream = true,
            "-L" => listen = Some(val()),
            "-o" => {
                let v = val();
                match v.split_once('=') {
                    Some((n, x)) => overrides.push((n.trim().to_string(), x.trim().to_string())),
                    None => msg::fatal(&format!("invalid \"-o {v}\" option value: missing '='")),
                }
            }
            "-n" | "-t" | "-s" | "-i" | "-m" | "-r" => {
                val();
            }
            "-c" | "-d" | "-D" | "-l" | "-u" | "-z" | "-V" => {}
            "-v" => msg::more_verbose(),
            _ if a.starts_with('-') => msg::fatal(&format!("invalid option: {}", &a[1..])),
            _ => msg::fatal(&format!("unexpected command-line argument: {a}")),
        }
        i += 1;
    }
    let mut mc = match MailConf::read(None) {
        Ok(m) => m,
        Err(e) => msg::fatal(&e.0),
    };
    let main = conf::Conf::new(mc.clone());
    for (n, v) in &overrides {
        mc.set(n, v);
    }
    let c = conf::Conf::new(mc);
    msg::set_utf8_enable(c.bool("smtputf8_enable"));
    if let Some(addr) = listen {
        return listen_loop(&c, &addr);
    }
    if !stream {
        msg::fatal("no transport type specified");
    }
    let mut cfg = proto::Config::from_conf(&c);
    let mut ck = check::Checker::from_confs(&c, &main);
    let mut sink = make_sink(&c.mc);
    let mut log = logger(&c);
    let mut conn = server::StdioConn;
    server::serve(
        &mut cfg,
        &mut ck,
        sink.as_mut(),
        proto::Peer::stand_alone(),
        &mut conn,
        &mut log,
    );
    0
}

fn listen_loop(c: &conf::Conf, addr: &str) -> i32 {
    let l = match std::net::TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => msg::fatal(&format!("bind {addr}: {e}")),
    };
    let _ = logger(c);
    let mc = std::sync::Arc::new(c.mc.clone());
    for s in l.incoming() {
        let Ok(mut s) = s else { continue };
        let mc = mc.clone();
        std::thread::spawn(move || {
            let c = conf::Conf::new((*mc).clone());
            let mut cfg = proto::Config::from_conf(&c);
            let mut ck = check::Checker::from_conf(&c);
            let mut sink = make_sink(&c.mc);
            let mut log = server::MaillogLogger::new(&c.mc);
            let peer = server::tcp_peer(&s, c.bool("smtpd_peername_lookup"), &mut log);
            server::serve(&mut cfg, &mut ck, sink.as_mut(), peer, &mut s, &mut log);
        });
    }
    0
}
