//! Replaces bounce(8) of Postfix 3.7 (services `bounce`, `defer`, `trace`).
//!
//! The per-recipient logs in `bounce/`, `defer/` and `trace/` ([`log`]),
//! and the notices built from them ([`notify`]): non-delivery, delay
//! warning, success (DSN NOTIFY=SUCCESS) and address verification reports
//! as RFC 3464 multipart/report messages, with the postmaster copies that
//! `notify_classes` asks for. Notices are submitted through cleanup
//! in-process, as Postfix's bounce daemon submits them to cleanup.
//!
//! Trusts: the queue files and logs it reads (written by mail_owner).
//! Privilege: mail_owner.
//!
//! Parameters: bounce_notice_recipient, 2bounce_notice_recipient,
//! delay_notice_recipient, error_notice_recipient, double_bounce_sender,
//! notify_classes, bounce_size_limit, bounce_template_file,
//! header_from_format, maximal_queue_lifetime, delay_warning_time,
//! enable_threaded_bounces, backwards_bounce_logfile_compatibility,
//! mail_name, myhostname, myorigin, smtputf8_enable.

pub mod client;
pub mod log;
pub mod notify;
pub mod service;
pub mod template;

use crate::daemons::cleanup::Cleanup;
use crate::daemons::logsink::MailLog;
use crate::global::mail_conf::MailConf;
use crate::global::msg;
use crate::master::server::{Conn, Server};
use std::cell::RefCell;
use std::ffi::OsString;
use std::io::{BufReader, Read, Write};

struct State {
    notifier: notify::Notifier,
    cleanup: Cleanup,
    log: MailLog,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// Load the templates and settings before the privilege drop, as Postfix's
/// bounce does in its pre-jail initialisation.
fn pre_init(conf: &MailConf) {
    let mut notifier = notify::Notifier::new(conf).unwrap_or_else(|e| msg::fatal(&e.0));
    let mut cleanup = Cleanup::new(conf).unwrap_or_else(|e| msg::fatal(&e.0));
    // The skeleton has made the queue directory the current directory and
    // may chroot to it: queue paths are relative, as in Postfix.
    notifier.queue.queue_directory = ".".into();
    cleanup.cf.queue.queue_directory = ".".into();
    let syslog_name = conf
        .get_str("syslog_name", 1, 0)
        .unwrap_or_else(|_| "postfix".into());
    STATE.with(|s| {
        *s.borrow_mut() = Some(State {
            notifier,
            cleanup,
            log: MailLog::daemon(&syslog_name),
        })
    });
}

/// A connection as a buffered reader that can also be written to.
struct Stream<'a> {
    r: BufReader<&'a mut Conn>,
}

impl Read for Stream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.r.read(buf)
    }
}

impl std::io::BufRead for Stream<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.r.fill_buf()
    }
    fn consume(&mut self, n: usize) {
        self.r.consume(n)
    }
}

impl Write for Stream<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.r.get_mut().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.r.get_mut().flush()
    }
}

fn serve(conn: &mut Conn, server: &Server) {
    let service_name = server.options.service_name.clone();
    if !crate::global::mail_queue::name_ok(&service_name) {
        msg::fatal(&format!("malformed service name: {service_name}"));
    }
    STATE.with(|s| {
        let mut guard = s.borrow_mut();
        let st = guard.as_mut().expect("bounce: pre_init ran");
        let myhostname = st.notifier.myhostname.clone();
        let mail_name = server
            .conf
            .get_str("mail_name", 1, 0)
            .unwrap_or_else(|_| "Postfix".into());
        let mut poster = WakingPoster {
            inner: notify::CleanupPoster {
                cleanup: &mut st.cleanup,
                myhostname,
                mail_name,
            },
            posted: false,
        };
        let mut stream = Stream {
            r: BufReader::new(conn),
        };
        service::serve(
            &mut stream,
            &service_name,
            &mut st.notifier,
            &mut poster,
            &mut st.log,
        );
        // As cleanup does after a new queue file (mail_stream_finish).
        if poster.posted {
            crate::global::mail_trigger::wake_qmgr(&server.conf);
        }
    });
}

/// A poster that remembers whether a notice was queued.
struct WakingPoster<'c> {
    inner: notify::CleanupPoster<'c>,
    posted: bool,
}

impl notify::Poster for WakingPoster<'_> {
    fn post(
        &mut self,
        log: &mut MailLog,
        sender: &str,
        recipient: &str,
        smtputf8: i32,
        content: notify::Records,
    ) -> Result<String, String> {
        let r = self.inner.post(log, sender, recipient, smtputf8, content);
        if r.is_ok() {
            self.posted = true;
        }
        r
    }
}

/// The `bounce` program, run by master for the bounce, defer and trace
/// services.
pub fn main(args: Vec<OsString>) -> i32 {
    crate::master::server::single_server_init(args, Some(pre_init), serve)
}

/// The bounce service as cleanup uses it for mail it must return
/// (cleanup_bounce): every recipient of the refused queue file goes to the
/// bounce log with the refusal's status and text, and the log is returned
/// to the sender at once (VERP style when the message asked for it).
/// Notices go through a cleanup of their own.
pub struct CleanupBouncer {
    pub notifier: notify::Notifier,
    pub cleanup: Cleanup,
    pub log: MailLog,
    pub myhostname: String,
    pub mail_name: String,
}

impl CleanupBouncer {
    pub fn new(
        conf: &MailConf,
        log: MailLog,
    ) -> Result<CleanupBouncer, crate::global::mail_conf::ConfError> {
        Ok(CleanupBouncer {
            notifier: notify::Notifier::new(conf)?,
            cleanup: Cleanup::new(conf)?,
            log,
            myhostname: conf.get_str("myhostname", 1, 0)?,
            mail_name: conf.get_str("mail_name", 1, 0)?,
        })
    }
}

impl crate::daemons::cleanup::Bouncer for CleanupBouncer {
    fn bounce(&mut self, req: &crate::daemons::cleanup::BounceRequest) -> bool {
        use crate::global::deliver_request::{DeliveryRequest, Recipient};
        let n = &mut self.notifier;
        // The recipients with their offsets and DSN attributes, as
        // cleanup_bounce reads them from the queue file.
        let path = n.queue.abs_path(&req.queue_name, &req.queue_id);
        let mut rcpts: Vec<Recipient> =
            match DeliveryRequest::from_queue_file(&path, &req.queue_name, &req.queue_id, "", "") {
                Ok(r) => r.rcpt,
                Err(_) => req
                    .recipients
                    .iter()
                    .map(|(o, r)| Recipient {
                        orig_addr: if o.is_empty() { r.clone() } else { o.clone() },
                        address: r.clone(),
                        ..Default::default()
                    })
                    .collect(),
            };
        for r in rcpts.iter_mut() {
            if r.orig_addr.is_empty() {
                r.orig_addr = r.address.clone();
            }
        }
        if rcpts.is_empty() {
            rcpts.push(Recipient {
                address: "unknown".into(),
                ..Default::default()
            });
        }
        let dsn = log::DsnInfo::new(&req.status, "failed", &req.text);
        for r in &rcpts {
            if let Err(e) = log::append(
                &n.queue,
                crate::global::mail_queue::BOUNCE,
                &req.queue_id,
                r,
                &dsn,
                n.oldlog_compat,
            ) {
                self.log.warn("cleanup", &format!("{}: {e}", req.queue_id));
                return false;
            }
        }
        let mut poster = notify::CleanupPoster {
            cleanup: &mut self.cleanup,
            myhostname: self.myhostname.clone(),
            mail_name: self.mail_name.clone(),
        };
        let request = notify::Request {
            service: crate::global::mail_queue::BOUNCE.into(),
            flags: 0,
            queue_name: req.queue_name.clone(),
            queue_id: req.queue_id.clone(),
            encoding: req.encoding.clone(),
            smtputf8: req.smtputf8 as i32,
            sender: req.sender.clone(),
            dsn_envid: req.dsn_envid.clone(),
            dsn_ret: req.dsn_ret,
        };
        let st = match &req.verp {
            Some(d) => n.verp_request(&mut poster, &mut self.log, &request, d),
            None => n.flush(&mut poster, &mut self.log, &request),
        };
        st == 0
    }
}
