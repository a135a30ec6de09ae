//! The daemon entries of the delivery agents that run on the single-server
//! skeleton and speak the delivery protocol ([`deliver_proto::serve`]):
//! local(8), virtual(8), and error(8)/retry and discard(8) of Postfix 3.7.
//!
//! error: every recipient bounces (`retry`: is deferred) with the reason
//! in the next-hop field (`5.0.0`/`4.0.0` unless it starts with a status
//! code), `relay=none`. discard: every recipient is reported sent with the
//! next-hop text (`2.0.0`), `relay=none`.
//!
//! Trust: requests come from the queue manager over private/<service>.
//! Privilege: local runs as root (as master.cf says) and writes mailboxes as
//! the recipient (effective ids switched in-process, see local/mod.rs); the
//! others drop to mail_owner.
//! Parameters: delay_logging_resolution_limit, and each agent's own.

use crate::daemons::local::agent::Lazy;
use crate::daemons::local::{LocalAgent, LocalConfig, SystemEnv};
use crate::daemons::virtual_agent::{VirtualAgent, VirtualConfig};
use crate::global::deliver_proto::{self, all_recipients, dsn_split};
use crate::global::deliver_request::{DeliveryRequest, Dsn, Outcome, RecipientResult};
use crate::global::mail_conf::MailConf;
use crate::global::mail_queue::QueueConf;
use crate::global::msg;
use crate::master::server::{self, Conn, Server};
use std::ffi::OsString;

/// The queue settings, computed once per process (the configuration of a
/// server process does not change while it runs).
fn queue_conf(conf: &MailConf) -> QueueConf {
    static QC: std::sync::OnceLock<QueueConf> = std::sync::OnceLock::new();
    QC.get_or_init(|| QueueConf::from_conf(conf).unwrap_or_else(|e| msg::fatal(&e.0)))
        .clone()
}

fn max_res(conf: &MailConf) -> u32 {
    static RES: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *RES.get_or_init(|| {
        conf.get_int("delay_logging_resolution_limit", 0, 0)
            .unwrap_or(2)
            .clamp(0, 6) as u32
    })
}

fn no_args(s: &Server) {
    if let Some(a) = s.options.args.first() {
        msg::fatal(&format!("unexpected command-line argument: {a}"));
    }
}

fn serve_with(
    conn: &mut Conn,
    s: &Server,
    deliver: &mut dyn FnMut(&DeliveryRequest) -> Vec<RecipientResult>,
) {
    let qc = queue_conf(&s.conf);
    deliver_proto::serve(conn, &qc, &s.options.service_name, deliver);
}

fn check_nexthop(req: &DeliveryRequest) {
    if req.nexthop.is_empty() {
        msg::fatal("empty nexthop hostname");
    }
}

fn error_service(conn: &mut Conn, s: &Server) {
    no_args(s);
    let res = max_res(&s.conf);
    let service = s.options.service_name.clone();
    // Postfix picks the behaviour by the master.cf service name.
    let (def, outcome) = match service.as_str() {
        "error" => ("5.0.0", Outcome::Bounced),
        "retry" => ("4.0.0", Outcome::Deferred),
        other => msg::fatal(&format!("bad error service name: {other}")),
    };
    serve_with(conn, s, &mut |req| {
        check_nexthop(req);
        let (status, text) = dsn_split(def, &req.nexthop);
        all_recipients(req, outcome, &Dsn::new(&status, text), "none", res)
    });
}

fn discard_service(conn: &mut Conn, s: &Server) {
    no_args(s);
    let res = max_res(&s.conf);
    serve_with(conn, s, &mut |req| {
        check_nexthop(req);
        let (status, text) = dsn_split("2.0.0", &req.nexthop);
        all_recipients(req, Outcome::Sent, &Dsn::new(&status, text), "none", res)
    });
}

/// cleanup for local's forwarding, as the cleanup service would run it
/// (its master.cf `-o` overrides, mail_owner's identity).
fn forwarder(conf: &MailConf, delivered_to: bool) -> Option<crate::daemons::local::Forwarder> {
    let cconf = crate::daemons::smtpd::cleanup_sink::cleanup_conf(conf);
    let mut cleanup = match crate::daemons::cleanup::Cleanup::new(&cconf) {
        Ok(c) => c,
        Err(e) => {
            msg::warn(&format!("cleanup configuration: {}", e.0));
            return None;
        }
    };
    // The skeleton made the queue directory the current directory.
    cleanup.cf.queue.queue_directory = ".".into();
    let s = |n: &str| conf.get_str(n, 0, 0).unwrap_or_default();
    let owner = crate::sys::process::getpwnam(&s("mail_owner"))
        .map(|p| (p.uid, p.gid))
        .unwrap_or_else(|| (crate::sys::geteuid(), crate::sys::getegid()));
    let syslog_name = conf
        .get_str("syslog_name", 1, 0)
        .unwrap_or_else(|_| "postfix".into());
    Some(crate::daemons::local::Forwarder {
        cleanup,
        log: crate::daemons::logsink::MailLog::daemon(&syslog_name),
        owner,
        myhostname: s("myhostname"),
        mail_name: s("mail_name"),
        delivered_to,
        queue_service: conf
            .get_str("queue_service_name", 1, 0)
            .unwrap_or_else(|_| "qmgr".into()),
    })
}

/// What local(8) computes from the configuration once per process (the
/// configuration of a process never changes; tables are opened per
/// request).
struct LocalStatic {
    cfg: LocalConfig,
    qc: QueueConf,
    myorigin: String,
    mydestination: Vec<String>,
}

thread_local! {
    static LOCAL_STATIC: std::cell::OnceCell<LocalStatic> = const { std::cell::OnceCell::new() };
}

fn local_service(conn: &mut Conn, s: &Server) {
    no_args(s);
    let (cfg, qc, myorigin, mydestination) = LOCAL_STATIC.with(|c| {
        let st = c.get_or_init(|| {
            let cfg = LocalConfig::from_conf(&s.conf).unwrap_or_else(|e| msg::fatal(&e.0));
            let s_ = |n: &str| {
                s.conf
                    .lookup_eval(n)
                    .unwrap_or_else(|e| msg::fatal(&e.0))
                    .unwrap_or_default()
            };
            LocalStatic {
                cfg,
                qc: queue_conf(&s.conf),
                myorigin: s_("myorigin"),
                mydestination: s_("mydestination")
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|w| !w.is_empty())
                    .map(|w| w.to_string())
                    .collect(),
            }
        });
        (
            st.cfg.clone(),
            st.qc.clone(),
            st.myorigin.clone(),
            st.mydestination.clone(),
        )
    });
    let deliver_hdr_forward = cfg.deliver_hdr_forward();
    let conf = &s.conf;
    // The agent and its tables are made for each request (a connection
    // may carry several): a table rebuilt between two deliveries is used
    // by the second, as Postfix's local, which looks for changed tables
    // before each delivery, does.
    deliver_proto::serve_ext(conn, &qc, &s.options.service_name, &mut |req| {
        let mut env = SystemEnv {
            relay: s.options.service_name.clone(),
            myorigin: myorigin.clone(),
            mydestination: mydestination.clone(),
            forwarder: Lazy::new(move || forwarder(conf, deliver_hdr_forward)),
            resolver: Lazy::new(
                move || match crate::daemons::trivial_rewrite::TrivialRewrite::new(conf) {
                    Ok(t) => Some(t),
                    Err(e) => msg::fatal(&e.0),
                },
            ),
        };
        let mut agent = LocalAgent::new(cfg.clone(), &s.options.service_name, &mut env);
        let results = agent.deliver(req);
        deliver_proto::AgentDone {
            results,
            keep: agent.take_passed_deferred(),
            ..Default::default()
        }
    });
}

fn virtual_service(conn: &mut Conn, s: &Server) {
    no_args(s);
    let cfg = VirtualConfig::from_conf(&s.conf).unwrap_or_else(|e| msg::fatal(&e.0));
    // Tables opened for each request, as in local_service.
    serve_with(conn, s, &mut |req| {
        VirtualAgent::new(cfg.clone(), &s.options.service_name).deliver(req)
    });
}

/// error(8) and its `retry` personality.
pub fn error_main(args: Vec<OsString>) -> i32 {
    server::single_server(args, error_service)
}

/// discard(8).
pub fn discard_main(args: Vec<OsString>) -> i32 {
    server::single_server(args, discard_service)
}

/// local(8).
pub fn local_main(args: Vec<OsString>) -> i32 {
    server::single_server(args, local_service)
}

/// virtual(8).
pub fn virtual_main(args: Vec<OsString>) -> i32 {
    server::single_server(args, virtual_service)
}
