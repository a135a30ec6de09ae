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
    let notifier = notify::Notifier::new(conf).unwrap_or_else(|e| msg::fatal(&e.0));
    let cleanup = Cleanup::new(conf).unwrap_or_else(|e| msg::fatal(&e.0));
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
        let mut poster = notify::CleanupPoster {
            cleanup: &mut st.cleanup,
            myhostname,
            mail_name,
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
    });
}

/// The `bounce` program, run by master for the bounce, defer and trace
/// services.
pub fn main(args: Vec<OsString>) -> i32 {
    crate::master::server::single_server_init(args, Some(pre_init), serve)
}
