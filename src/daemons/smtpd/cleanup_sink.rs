//! The cleanup service inside smtpd (DESIGN.md §2): each transaction is a
//! cleanup [`Session`] fed with the record stream Postfix's smtpd writes to
//! its cleanup server (mail_open_stream, rcpt_cmd, the start and the end of
//! DATA/BDAT), so that the queue file is the one Postfix writes.
//!
//! The work is done in the name of the service `cleanup_service_name`: the
//! `-o` overrides of that master.cf entry apply to cleanup's parameters
//! (not smtpd's own), and cleanup's log lines say `cleanup`. The reply to
//! the end of data is sent only after [`Session::finish`] has fsynced the
//! file.

use super::sink::{
    EndInfo, Finish, MailStart, Recipient, RecordKind, Sink, SinkError, Transaction,
};
use crate::daemons::cleanup::{self, Config, NoBouncer, Session, flag};
use crate::daemons::logsink::MailLog;
use crate::global::mail_conf::MailConf;
use crate::global::rec_type;
use std::cell::RefCell;
use std::rc::Rc;

use crate::util::stringops::decimal;

/// What a finished or aborted transaction hands back for the next one.
type Parts = (Box<Config>, Box<MailLog>);

/// Postfix's input_transp_cleanup(): the CLEANUP_FLAG_* bits left after
/// `receive_override_options`.
pub fn input_transp_cleanup(flags: u32, receive_override_options: &str) -> u32 {
    let mut f = flags;
    for w in receive_override_options
        .split([' ', ',', '\t', '\r', '\n'])
        .filter(|w| !w.is_empty())
    {
        match w.to_ascii_lowercase().as_str() {
            "no_address_mappings" => f &= !(flag::BCC_OK | flag::MAP_OK),
            "no_header_body_checks" => f &= !flag::FILTER,
            "no_milters" => f &= !flag::MILTER,
            _ => {}
        }
    }
    f
}

/// Postfix's smtputf8_autodetect(MAIL_SRC_MASK_SMTPD).
pub fn smtputf8_autodetect_smtpd(conf: &MailConf) -> u32 {
    if !conf.get_bool("smtputf8_enable").unwrap_or(true) {
        return 0;
    }
    let classes = conf
        .lookup_eval("smtputf8_autodetect_classes")
        .ok()
        .flatten()
        .unwrap_or_default();
    let hit = classes
        .split([' ', ',', '\t', '\r', '\n'])
        .any(|w| w.eq_ignore_ascii_case("smtpd") || w.eq_ignore_ascii_case("all"));
    if hit { flag::AUTOUTF8 } else { 0 }
}

/// The `-o name=value` settings of the `NAME unix` entry in master.cf.
pub fn service_overrides(conf: &MailConf, name: &str) -> Vec<(String, String)> {
    let dir = conf
        .lookup_eval("config_directory")
        .ok()
        .flatten()
        .unwrap_or_else(|| "/etc/postfix".into());
    let path = format!("{dir}/master.cf");
    let Ok(data) = std::fs::read(crate::util::latin1::to_path(&path)) else {
        return Vec::new();
    };
    let text = crate::util::latin1::decode(&data);
    for line in crate::global::readlline::read_logical_lines(&text, &path) {
        let mut argv = crate::global::master_cf::split_quoted(&line.text, " \t\r\n");
        if argv.len() < 8 || argv[0] != name || argv[1] != "unix" {
            continue;
        }
        crate::commands::postconf::master::normalize_daemon_args(&mut argv);
        return crate::commands::postconf::master::option_settings(&argv);
    }
    Vec::new()
}

/// cleanup's configuration as the cleanup service would have it: main.cf
/// plus the `-o` overrides of its master.cf entry.
pub fn cleanup_conf(base: &MailConf) -> MailConf {
    let mut conf = base.clone();
    let name = base
        .lookup_eval("cleanup_service_name")
        .ok()
        .flatten()
        .unwrap_or_else(|| "cleanup".into());
    for (n, v) in service_overrides(base, &name) {
        conf.set(&n, &v);
    }
    conf
}

/// The in-process cleanup service.
pub struct CleanupSink {
    conf: MailConf,
    syslog_name: String,
    spare: Rc<RefCell<Option<Parts>>>,
    /// smtpd's content_filter (REC_TYPE_FILT at the start).
    filter_xport: String,
    /// CLEANUP_FLAG_* before the per-message SMTPUTF8 bits.
    flags: u32,
    autoutf8: u32,
}

impl CleanupSink {
    /// `cleanup` is cleanup's configuration ([`cleanup_conf`]), `smtpd`
    /// smtpd's (content_filter, receive_override_options and the SMTPUTF8
    /// autodetection are smtpd's side of the protocol).
    pub fn new(cleanup: MailConf, smtpd: &MailConf) -> Result<CleanupSink, String> {
        let cf = Config::from_conf(&cleanup).map_err(|e| e.0)?;
        let syslog_name = cleanup
            .lookup_eval("syslog_name")
            .ok()
            .flatten()
            .unwrap_or_else(|| "postfix".into());
        let log = MailLog::daemon(&syslog_name);
        let opt = |n: &str| smtpd.lookup_eval(n).ok().flatten().unwrap_or_default();
        Ok(CleanupSink {
            conf: cleanup,
            spare: Rc::new(RefCell::new(Some((Box::new(cf), Box::new(log))))),
            syslog_name,
            filter_xport: opt("content_filter"),
            flags: input_transp_cleanup(flag::MASK_EXTERNAL, &opt("receive_override_options"))
                | flag::SMTP_REPLY,
            autoutf8: smtputf8_autodetect_smtpd(smtpd),
        })
    }

    /// The same, with captured log lines (tests).
    pub fn capture_log(mut self) -> CleanupSink {
        if let Some((_, log)) = self.spare.borrow_mut().as_mut() {
            **log = MailLog::capture();
        }
        self.syslog_name = "postfix".into();
        self
    }

    /// The log lines captured so far (see [`CleanupSink::capture_log`]).
    pub fn take_log(&mut self) -> Vec<crate::daemons::logsink::Line> {
        match self.spare.borrow_mut().as_mut() {
            Some((_, log)) => log.take(),
            None => Vec::new(),
        }
    }

    fn parts(&mut self) -> Result<Parts, SinkError> {
        if let Some(p) = self.spare.borrow_mut().take() {
            return Ok(p);
        }
        let cf = Config::from_conf(&self.conf).map_err(|e| SinkError(e.0))?;
        Ok((Box::new(cf), Box::new(MailLog::daemon(&self.syslog_name))))
    }
}

impl Sink for CleanupSink {
    fn open(&mut self, start: &MailStart) -> Result<Box<dyn Transaction>, SinkError> {
        let (cf, log) = self.parts()?;
        let flags = self.flags
            | if start.smtputf8 {
                flag::SMTPUTF8
            } else {
                self.autoutf8
            };
        let s = match Session::open_owned(cf, log, flags) {
            Ok(s) => s,
            Err((e, cf, log)) => {
                *self.spare.borrow_mut() = Some((cf, log));
                return Err(SinkError(crate::global::record::errtext(&e)));
            }
        };
        let mut tx = CleanupTx {
            s: Some(s),
            buf: Vec::with_capacity(128),
            spare: self.spare.clone(),
            stand_alone: start.stand_alone,
        };
        tx.open_records(start, &self.filter_xport);
        Ok(Box::new(tx))
    }
}

struct CleanupTx {
    s: Option<Session<'static>>,
    /// Scratch space for attribute records.
    buf: Vec<u8>,
    spare: Rc<RefCell<Option<Parts>>>,
    stand_alone: bool,
}

impl CleanupTx {
    fn put(&mut self, t: u8, data: &[u8]) {
        if let Some(s) = self.s.as_mut()
            && s.out_ok()
        {
            s.record(t, data);
        }
    }

    fn attr(&mut self, name: &str, value: &str) {
        // name=value assembled in a buffer kept for the transaction.
        let mut b = std::mem::take(&mut self.buf);
        b.clear();
        b.extend_from_slice(name.as_bytes());
        b.push(b'=');
        b.extend_from_slice(value.as_bytes());
        self.put(rec_type::ATTR, &b);
        self.buf = b;
    }

    /// What mail_open_stream writes.
    fn open_records(&mut self, st: &MailStart, filter_xport: &str) {
        let enc = crate::util::latin1::encode;
        if !st.stand_alone {
            let d = st
                .arrival_time
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            self.put(
                rec_type::TIME,
                format!("{} {}", d.as_secs(), d.subsec_micros()).as_bytes(),
            );
            if !filter_xport.is_empty() {
                self.put(rec_type::FILT, &enc(filter_xport));
            }
            // The message's log identifier: XFORWARD IDENT or our queue ID.
            let ident = st
                .client
                .forwarded_ident
                .clone()
                .unwrap_or_else(|| self.queue_id());
            if !ident.is_empty() {
                self.attr("log_ident", &ident);
            }
            self.attr("rewrite_context", &st.rewrite_context);
            if let Some(e) = &st.dsn_envid {
                self.attr("envelope_id", e);
            }
            if st.dsn_ret != 0 {
                self.attr("ret_flags", &st.dsn_ret.to_string());
            }
        }
        self.put(rec_type::FROM, &enc(&st.sender));
        if let Some(e) = &st.encoding {
            self.attr("encoding", e);
        }
        if !st.stand_alone {
            let c = &st.client;
            let (name, addr, port, origin, helo, proto) = match &c.forwarded {
                Some(f) => (
                    &f.name,
                    &f.rfc_addr,
                    &f.port,
                    &f.namaddr,
                    &f.helo,
                    &f.protocol,
                ),
                None => (&c.name, &c.addr, &c.port, &c.namaddr, &c.helo, &c.protocol),
            };
            self.attr("log_client_name", name);
            self.attr("log_client_address", addr);
            self.attr("log_client_port", port);
            self.attr("log_message_origin", origin);
            if let Some(h) = helo {
                self.attr("log_helo_name", h);
            }
            self.attr("log_protocol_name", proto);
            self.attr("client_name", &c.name);
            self.attr("reverse_client_name", &c.reverse_name);
            self.attr("client_address", &c.addr);
            self.attr("client_port", &c.port);
            self.attr("server_address", &c.server_addr);
            self.attr("server_port", &c.server_port);
            if let Some(h) = &c.helo {
                self.attr("helo_name", h);
            }
            self.attr("protocol_name", &c.protocol);
            self.attr("client_address_type", decimal(&mut [0; 10], c.addr_family));
        }
    }

    fn give_back(&mut self) {
        if let Some(s) = self.s.take()
            && let Some(p) = s.into_owned()
        {
            *self.spare.borrow_mut() = Some(p);
        }
    }
}

impl Transaction for CleanupTx {
    fn queue_id(&self) -> String {
        self.s
            .as_ref()
            .map(|s| s.queue_id.clone())
            .unwrap_or_default()
    }

    fn recipient(&mut self, r: &Recipient) {
        if r.notify != 0 {
            self.attr("notify_flags", &r.notify.to_string());
        }
        self.attr("dsn_orig_rcpt", &r.orcpt);
        self.put(rec_type::RCPT, &crate::util::latin1::encode(&r.address));
    }

    fn begin_content(&mut self, flags: u32) {
        if !self.stand_alone && flags != 0 {
            self.put(rec_type::FLGS, flags.to_string().as_bytes());
        }
        self.put(rec_type::MESG, b"");
    }

    fn record(&mut self, kind: RecordKind, data: &[u8]) {
        let t = match kind {
            RecordKind::Norm => rec_type::NORM,
            RecordKind::Cont => rec_type::CONT,
        };
        self.put(t, data);
    }

    fn finish(mut self: Box<Self>, end: &EndInfo) -> Finish {
        let enc = crate::util::latin1::encode;
        self.put(rec_type::XTRA, b"");
        if let Some(f) = &end.filter {
            self.put(rec_type::FILT, &enc(f));
        }
        if let Some(r) = &end.redirect {
            self.put(rec_type::RDR, &enc(r));
        }
        for b in &end.bcc {
            self.put(rec_type::RCPT, &enc(b));
            self.attr("notify_flags", "1");
        }
        if end.flags != 0 {
            self.put(rec_type::FLGS, end.flags.to_string().as_bytes());
        }
        self.put(rec_type::END, b"");
        let out = match self.s.as_mut() {
            Some(s) => s.finish(&mut NoBouncer),
            None => {
                return Finish {
                    status: cleanup::stat::WRITE,
                    why: String::new(),
                };
            }
        };
        self.give_back();
        Finish {
            status: out.status,
            why: out.reason.unwrap_or_default(),
        }
    }

    fn abort(mut self: Box<Self>) {
        if let Some(s) = self.s.as_mut() {
            s.abort();
        }
        self.give_back();
    }
}

impl Drop for CleanupTx {
    fn drop(&mut self) {
        if let Some(s) = self.s.as_mut() {
            s.abort();
        }
        self.give_back();
    }
}
