//! Delivery status notices (bounce_notify_service.c, bounce_warn_service.c,
//! bounce_trace_service.c, bounce_notify_util.c): the non-delivery notice
//! (`flush`), the delay warning (`warn`), the success / verification report
//! (`trace`), with their postmaster copies per `notify_classes`.
//!
//! A notice is built as the content records Postfix's bounce daemon sends
//! to cleanup (headers, the template text with one `<rcpt>: reason` line per
//! logged recipient, the message/delivery-status part, the returned
//! message or its headers) and is submitted through cleanup in-process;
//! cleanup adds Message-Id and qualifies the addresses as it does for
//! Postfix.

use super::log::{self, Entry};
use super::template::{self, DELAY, Dict, Expander, FAILURE, SUCCESS, Template, VERIFY};
use crate::daemons::cleanup::{self, Cleanup, NoBouncer};
use crate::daemons::logsink::MailLog;
use crate::global::deliver_request::notify;
use crate::global::mail_conf::{ConfError, MailConf};
use crate::global::mail_date::mail_date;
use crate::global::mail_queue::{self, QueueConf};
use crate::global::quote_822_local::{quote_822_local, quote_822_local_flags};
use crate::global::rec_type;
use crate::global::record::{self, QueueStream, Rec};
use crate::util::latin1;
use std::collections::HashMap;
use std::io::{self, Write};

/// notify_classes bits (mail_error.h).
pub mod class {
    pub const POLICY: u32 = 1 << 0;
    pub const PROTOCOL: u32 = 1 << 1;
    pub const BOUNCE: u32 = 1 << 2;
    pub const SOFTWARE: u32 = 1 << 3;
    pub const RESOURCE: u32 = 1 << 4;
    pub const BOUNCE2: u32 = 1 << 5;
    pub const DELAY: u32 = 1 << 6;
    pub const DATA: u32 = 1 << 7;
}

/// DSN RET values.
pub const RET_FULL: i32 = 1;
pub const RET_HDRS: i32 = 2;

/// Delivery request flags that select the verify template for `trace`.
const NON_DSN_FLAGS: u32 =
    crate::global::deliver_request::flags::USR_VRFY | crate::global::deliver_request::flags::RECORD;

/// DSN_NOTIFY_OVERRIDE: every recipient, whatever it asked for.
const NOTIFY_OVERRIDE: i32 = notify::NEVER | notify::SUCCESS | notify::FAILURE | notify::DELAY;

/// The notify_classes mask (name_mask with Postfix's names).
pub fn notify_mask(value: &str) -> Result<u32, String> {
    let mut mask = 0;
    for w in value
        .split([',', ' ', '\t', '\r', '\n'])
        .filter(|w| !w.is_empty())
    {
        mask |= match w.to_ascii_lowercase().as_str() {
            "bounce" => class::BOUNCE,
            "2bounce" => class::BOUNCE2,
            "data" => class::DATA,
            "delay" => class::DELAY,
            "policy" => class::POLICY,
            "protocol" => class::PROTOCOL,
            "resource" => class::RESOURCE,
            "software" => class::SOFTWARE,
            _ => {
                return Err(format!(
                    "unknown notify_classes value \"{w}\" in \"{value}\""
                ));
            }
        };
    }
    Ok(mask)
}

/// The bounce daemon's settings and templates.
pub struct Notifier {
    pub queue: QueueConf,
    pub myhostname: String,
    /// mail_name with RFC 822 specials made `-` (the X-<name>- prefix).
    pub mail_name: String,
    pub notify_mask: u32,
    pub bounce_rcpt: String,
    pub bounce2_rcpt: String,
    pub delay_rcpt: String,
    pub double_bounce: String,
    pub bounce_size_limit: i64,
    pub max_queue_time: i64,
    pub threaded: bool,
    pub smtputf8_enable: bool,
    pub oldlog_compat: bool,
    pub templates: [Template; 4],
    pub expander: Expander,
    /// Time stamp source (seconds); tests fix it.
    pub now: fn() -> i64,
}

fn system_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Which template a notice uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Failure,
    Delay,
    Success,
    Verify,
}

impl Notifier {
    /// Read the settings from main.cf (with Postfix's checks).
    pub fn new(conf: &MailConf) -> Result<Notifier, ConfError> {
        let mut dict = Dict::new();
        for name in template::BOUNCE_PARAMS {
            if let Ok(Some(v)) = conf.lookup_eval(name) {
                dict.insert(name.to_string(), v);
            }
        }
        let myhostname = conf.get_str("myhostname", 1, 0)?;
        dict.insert("myhostname".into(), myhostname.clone());
        if let Ok(d) = conf.get_str("mydomain", 1, 0) {
            dict.insert("mydomain".into(), d);
        }
        let max_queue_time = conf.get_time("maximal_queue_lifetime", 'd', 0, 8_640_000)?;
        let delay_warning_time = conf.get_time("delay_warning_time", 'h', 0, 0)?;
        let smtputf8_enable = conf.get_bool("smtputf8_enable")?;
        let mut templates = [
            Template::builtin(&FAILURE),
            Template::builtin(&DELAY),
            Template::builtin(&SUCCESS),
            Template::builtin(&VERIFY),
        ];
        let tfile = conf.get_str("bounce_template_file", 0, 0)?;
        if !tfile.is_empty() {
            template::load_template_file(&tfile, &mut templates);
        }
        let hfrom = conf.get_str("header_from_format", 1, 0)?;
        let use_obsolete_from = hfrom.eq_ignore_ascii_case("obsolete");
        if !use_obsolete_from && !hfrom.eq_ignore_ascii_case("standard") {
            return Err(ConfError(format!(
                "invalid setting: \"header_from_format = {hfrom}\""
            )));
        }
        let mail_name: String = conf
            .get_str("mail_name", 1, 0)?
            .chars()
            .map(|c| {
                if " \t\r\n()<>@,;:\\\".[]".contains(c) {
                    '-'
                } else {
                    c
                }
            })
            .collect();
        let notify_classes = conf.get_str("notify_classes", 0, 0)?;
        Ok(Notifier {
            queue: QueueConf::from_conf(conf)?,
            mail_name,
            notify_mask: notify_mask(&notify_classes).map_err(ConfError)?,
            bounce_rcpt: conf.get_str("bounce_notice_recipient", 1, 0)?,
            bounce2_rcpt: conf.get_str("2bounce_notice_recipient", 1, 0)?,
            delay_rcpt: conf.get_str("delay_notice_recipient", 1, 0)?,
            double_bounce: format!(
                "{}@{}",
                conf.get_str("double_bounce_sender", 1, 0)?,
                myhostname
            ),
            myhostname,
            bounce_size_limit: conf.get_int("bounce_size_limit", 1, 0)?,
            max_queue_time,
            threaded: conf.get_bool("enable_threaded_bounces")?,
            smtputf8_enable,
            oldlog_compat: conf.get_bool("backwards_bounce_logfile_compatibility")?,
            templates,
            expander: Expander {
                dict,
                delay_warning_time,
                maximal_queue_lifetime: max_queue_time,
                smtputf8: smtputf8_enable,
                idna: HashMap::new(),
                use_obsolete_from,
            },
            now: system_now,
        })
    }

    fn template_index(kind: Kind) -> usize {
        match kind {
            Kind::Failure => 0,
            Kind::Delay => 1,
            Kind::Success => 2,
            Kind::Verify => 3,
        }
    }
}

/// What the original queue file tells (bounce_mail_alloc).
pub struct Original {
    fp: Option<QueueStream>,
    pub sender: String,
    pub arrival_time: i64,
    pub orig_offs: i64,
    pub message_size: i64,
    pub orig_msgid: String,
}

impl Original {
    /// Read the envelope of `queue_name/queue_id`; a missing file gives
    /// an empty description (the notice says the message is unavailable).
    pub fn read(n: &Notifier, queue_name: &str, queue_id: &str) -> io::Result<Original> {
        let mut o = Original {
            fp: None,
            sender: String::new(),
            arrival_time: 0,
            orig_offs: 0,
            message_size: 0,
            orig_msgid: String::new(),
        };
        let path = n.queue.abs_path(queue_name, queue_id);
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(o),
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("open {queue_name} {queue_id}: {}", record::errtext(&e)),
                ));
            }
        };
        if !crate::sys::lock::flock_try(&file, crate::sys::lock::LockOp::Shared)? {
            return Err(io::Error::other(format!(
                "cannot get shared lock on {}: Resource temporarily unavailable",
                n.queue.path(queue_name, queue_id)
            )));
        }
        let mut fp = QueueStream::new(file, &n.queue.path(queue_name, queue_id));
        fp.collect_warnings();
        let mut buf = Vec::new();
        let mut prev_type = 0u8;
        let mut all_headers_seen = false;
        let mut skip_segment = false;
        let mut in_envelope = true;
        loop {
            let t = match record::rec_get(&mut fp, &mut buf, 0) {
                Rec::Type(t) if t > 0 => t,
                _ => break,
            };
            let text = latin1::decode(&buf);
            match t {
                rec_type::SIZE => {
                    if o.message_size == 0 {
                        let mut it = text.split_whitespace();
                        if let Some(v) = it.next().and_then(|v| v.parse::<i64>().ok()) {
                            o.message_size = v;
                            if let Some(w) = it.next().and_then(|v| v.parse::<i64>().ok()) {
                                o.orig_offs = w;
                            }
                        }
                    }
                    o.message_size = o.message_size.max(0);
                    o.orig_offs = o.orig_offs.max(0);
                }
                rec_type::TIME if o.arrival_time == 0 => {
                    o.arrival_time = rec_type::time_scan(&buf).0.max(0);
                }
                rec_type::FROM => {
                    let s = if text.is_empty() {
                        format!("MAILER-DAEMON@{}", n.myhostname)
                    } else {
                        text.clone()
                    };
                    o.sender = quote_822_local_flags(&s, 0);
                }
                rec_type::MESG => {
                    o.orig_offs = fp.ftell();
                    if n.threaded {
                        in_envelope = false;
                    } else {
                        skip_segment = true;
                    }
                }
                rec_type::NORM | rec_type::CONT if !in_envelope => {
                    if !n.threaded || all_headers_seen || prev_type == rec_type::CONT {
                    } else if crate::daemons::cleanup::headers::is_header(&text) {
                        let name_len = text.find(':').unwrap_or(0);
                        if text[..name_len]
                            .trim_end()
                            .eq_ignore_ascii_case("message-id")
                        {
                            let v = text[name_len + 1..]
                                .trim_end_matches([' ', '\t', '\r', '\n'])
                                .trim_start_matches([' ', '\t', '\r', '\n']);
                            if v.starts_with('<') && v.ends_with('>') {
                                o.orig_msgid = v.to_string();
                            }
                        }
                    } else if text.starts_with([' ', '\t']) {
                    } else {
                        all_headers_seen = true;
                        skip_segment = true;
                    }
                }
                rec_type::XTRA => {
                    if o.orig_msgid.is_empty() && n.threaded {
                        all_headers_seen = true;
                    }
                    in_envelope = true;
                }
                _ => {}
            }
            if o.orig_offs > 0
                && o.arrival_time > 0
                && !o.sender.is_empty()
                && (!n.threaded || all_headers_seen || !o.orig_msgid.is_empty())
            {
                break;
            }
            if skip_segment {
                let _ = fp.seek_set(o.orig_offs + o.message_size);
                skip_segment = false;
            }
            prev_type = t;
        }
        o.fp = Some(fp);
        Ok(o)
    }

    /// Mark the logged recipients done in the queue file
    /// (bounce_delrcpt / deliver_completed).
    pub fn delete_recipients(&mut self, entries: &[Entry]) {
        let Some(fp) = &self.fp else { return };
        for e in entries {
            if e.rcpt.offset > 0 {
                let _ = mark_done(fp.file(), e.rcpt.offset);
            }
        }
    }
}

/// Overwrite a recipient record's type with DONE (deliver_completed).
pub fn mark_done(file: &std::fs::File, offset: i64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(&[rec_type::DONE], offset as u64)?;
    file.sync_data()
}

/// line_wrap with bounce_print: lines of at most 79 columns where words
/// allow, continuation lines indented by 4.
pub fn wrap(text: &str, out: &mut Vec<String>) {
    const LEN: usize = 79;
    const INDENT: usize = 4;
    let b = text.as_bytes();
    let is_sp = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c');
    let mut curr_indent = 0usize;
    let mut curr_len = LEN as isize;
    let mut start = 0usize;
    let mut word = Some(0usize);
    let emit = |s: usize, e: usize, indent: usize, out: &mut Vec<String>| {
        let mut e = e;
        while e > s && is_sp(b[e - 1]) {
            e -= 1;
        }
        out.push(format!("{}{}", " ".repeat(indent), &text[s..e]));
    };
    while let Some(mut w) = word {
        let next_space = w + b[w..]
            .iter()
            .position(|&c| c == b' ' || c == b'\t')
            .unwrap_or(b.len() - w);
        if w > start && (next_space - start) as isize > curr_len {
            emit(start, w, curr_indent, out);
            while w < b.len() && is_sp(b[w]) {
                w += 1;
            }
            if start == 0 {
                curr_indent += INDENT;
                curr_len -= INDENT as isize;
            }
            start = w;
        }
        word = if next_space < b.len() {
            Some(next_space + 1)
        } else {
            None
        };
    }
    emit(start, b.len(), curr_indent, out);
}

/// verp_sender: `prefix@origin` becomes `prefix+user=domain@origin` for
/// the recipient (its original address when known).
pub fn verp_sender(
    delims: &str,
    sender: &str,
    rcpt: &crate::global::deliver_request::Recipient,
) -> String {
    let d: Vec<char> = delims.chars().collect();
    let (s_local, s_rest) = match sender.rfind('@') {
        Some(i) => (&sender[..i], &sender[i..]),
        None => (sender, ""),
    };
    let recipient = if rcpt.orig_addr.is_empty() {
        &rcpt.address
    } else {
        &rcpt.orig_addr
    };
    let (r_local, r_rest) = match recipient.rfind('@') {
        Some(i) => (&recipient[..i], &recipient[i..]),
        None => (recipient.as_str(), ""),
    };
    let mut out = format!("{s_local}{}{r_local}", d.first().copied().unwrap_or('+'));
    if r_rest.len() > 1 {
        out.push(d.get(1).copied().unwrap_or('='));
        out.push_str(&r_rest[1..]);
    }
    if s_rest.len() > 1 {
        out.push('@');
        out.push_str(&s_rest[1..]);
    }
    out
}

/// A notice being built: content records for cleanup.
struct Body {
    recs: Vec<(u8, Vec<u8>)>,
}

impl Body {
    fn line(&mut self, text: &str) {
        self.recs.push((rec_type::NORM, latin1::encode(text)));
    }
}

/// One notice's parameters.
struct Job<'a> {
    kind: Kind,
    queue_id: &'a str,
    boundary: String,
    mime_encoding: Option<&'static str>,
    smtputf8: i32,
    dsn_envid: &'a str,
}

fn is_utf8_address(s: &str) -> bool {
    !s.is_empty() && !s.is_ascii() && std::str::from_utf8(&latin1::encode(s)).is_ok()
}

impl Notifier {
    fn header(&mut self, b: &mut Body, job: &Job, orig: &Original, dest: &str, pm_copy: bool) {
        let ti = Self::template_index(job.kind);
        let tp = &mut self.templates[ti];
        tp.parse();
        let from = self.expander.from_header(tp).to_string();
        b.line(&format!("From: {from}"));
        let subject = match (&tp.postmaster_subject, pm_copy) {
            (Some(p), true) => p.clone(),
            _ => tp.subject.clone(),
        };
        b.line(&format!("Subject: {subject}"));
        b.line(&format!("To: {}", quote_822_local(dest)));
        if !orig.orig_msgid.is_empty() {
            b.line(&format!("References: {}", orig.orig_msgid));
            b.line(&format!("In-Reply-To: {}", orig.orig_msgid));
        }
        b.line(&format!(
            "Auto-Submitted: {}",
            if pm_copy {
                "auto-generated"
            } else {
                "auto-replied"
            }
        ));
        b.line("MIME-Version: 1.0");
        b.line("Content-Type: multipart/report; report-type=delivery-status;");
        b.line(&format!("\tboundary=\"{}\"", job.boundary));
        let tp_encoding = if tp.eight_bit { "8bit" } else { "7bit" };
        if let Some(enc) = job.mime_encoding {
            b.line(&format!(
                "Content-Transfer-Encoding: {}",
                if enc.eq_ignore_ascii_case("7bit") {
                    tp_encoding
                } else {
                    enc
                }
            ));
        }
        b.line("");
        b.line("This is a MIME-encapsulated message.");
        b.line("");
        b.line(&format!("--{}", job.boundary));
        b.line("Content-Description: Notification");
        let not_7bit = job
            .mime_encoding
            .is_some_and(|e| !e.eq_ignore_ascii_case("7bit"));
        let charset = if !tp.charset.eq_ignore_ascii_case("us-ascii") {
            tp.charset.clone()
        } else if not_7bit {
            "utf-8".into()
        } else {
            "us-ascii".into()
        };
        b.line(&format!("Content-Type: text/plain; charset={charset}"));
        if not_7bit {
            b.line(&format!(
                "Content-Transfer-Encoding: {}",
                job.mime_encoding.unwrap_or("")
            ));
        }
        b.line("");
    }

    fn boilerplate(&mut self, b: &mut Body, kind: Kind) {
        let ti = Self::template_index(kind);
        let mut tp = self.templates[ti].clone();
        for l in self.expander.expand(&mut tp) {
            b.line(&l);
        }
        self.templates[ti] = tp;
    }

    fn diagnostic_log(b: &mut Body, kind: Kind, entries: Option<&[Entry]>, filter: i32) -> usize {
        let Some(entries) = entries else {
            if kind == Kind::Failure {
                b.line("");
                b.line("\t--- Delivery report unavailable ---");
                return 1;
            }
            return 0;
        };
        let mut count = 0;
        for e in entries {
            if e.rcpt.dsn_notify == 0 || e.rcpt.dsn_notify & filter != 0 {
                count += 1;
                b.line("");
                let text = if !e.rcpt.orig_addr.is_empty() {
                    format!(
                        "<{}> (expanded from <{}>): {}",
                        e.rcpt.address, e.rcpt.orig_addr, e.dsn.reason
                    )
                } else {
                    format!("<{}>: {}", e.rcpt.address, e.dsn.reason)
                };
                let mut lines = Vec::new();
                wrap(&text, &mut lines);
                for l in lines {
                    b.line(&l);
                }
            }
        }
        count
    }

    fn header_dsn(&self, b: &mut Body, job: &Job, orig: &Original) {
        let requested = job.smtputf8 & SMTPUTF8_REQUESTED != 0;
        b.line("");
        b.line(&format!("--{}", job.boundary));
        b.line("Content-Description: Delivery report");
        b.line(&format!(
            "Content-Type: message/{}delivery-status",
            if requested { "global-" } else { "" }
        ));
        if let Some(enc) = job.mime_encoding
            && !enc.eq_ignore_ascii_case("7bit")
            && requested
        {
            b.line(&format!("Content-Transfer-Encoding: {enc}"));
        }
        b.line("");
        b.line(&format!("Reporting-MTA: dns; {}", self.myhostname));
        if !job.dsn_envid.is_empty() {
            b.line(&format!("Original-Envelope-Id: {}", job.dsn_envid));
        }
        b.line(&format!("X-{}-Queue-ID: {}", self.mail_name, job.queue_id));
        if !orig.sender.is_empty() {
            b.line(&format!(
                "X-{}-Sender: {}; {}",
                self.mail_name,
                if job.smtputf8 != 0 && is_utf8_address(&orig.sender) {
                    "utf-8"
                } else {
                    "rfc822"
                },
                orig.sender
            ));
        }
        if orig.arrival_time > 0 {
            b.line(&format!("Arrival-Date: {}", mail_date(orig.arrival_time)));
        }
    }

    fn diagnostic_dsn(
        &self,
        b: &mut Body,
        job: &Job,
        orig: &Original,
        entries: Option<&[Entry]>,
        filter: i32,
    ) -> usize {
        let Some(entries) = entries else {
            return usize::from(job.kind == Kind::Failure);
        };
        let mut count = 0;
        for e in entries {
            if !(e.rcpt.dsn_notify == 0 || e.rcpt.dsn_notify & filter != 0) {
                continue;
            }
            count += 1;
            let kind = |a: &str| {
                if job.smtputf8 != 0 && is_utf8_address(a) {
                    "utf-8"
                } else {
                    "rfc822"
                }
            };
            b.line("");
            b.line(&format!(
                "Final-Recipient: {}; {}",
                kind(&e.rcpt.address),
                e.rcpt.address
            ));
            if !e.rcpt.dsn_orcpt.is_empty() {
                b.line(&format!("Original-Recipient: {}", e.rcpt.dsn_orcpt));
            } else if !e.rcpt.orig_addr.is_empty() {
                b.line(&format!(
                    "Original-Recipient: {}; {}",
                    kind(&e.rcpt.orig_addr),
                    e.rcpt.orig_addr
                ));
            }
            b.line(&format!(
                "Action: {}",
                if job.kind == Kind::Failure {
                    "failed"
                } else {
                    &e.dsn.action
                }
            ));
            b.line(&format!("Status: {}", e.dsn.status));
            let mut lines = Vec::new();
            if !e.dsn.mtype.is_empty() && !e.dsn.mname.is_empty() {
                wrap(
                    &format!("Remote-MTA: {}; {}", e.dsn.mtype, e.dsn.mname),
                    &mut lines,
                );
            }
            if !e.dsn.dtype.is_empty() && !e.dsn.dtext.is_empty() {
                wrap(
                    &format!("Diagnostic-Code: {}; {}", e.dsn.dtype, e.dsn.dtext),
                    &mut lines,
                );
            } else {
                wrap(
                    &format!("Diagnostic-Code: X-{}; {}", self.mail_name, e.dsn.reason),
                    &mut lines,
                );
            }
            for l in lines {
                b.line(&l);
            }
            if job.kind == Kind::Delay {
                b.line(&format!(
                    "Will-Retry-Until: {}",
                    mail_date(orig.arrival_time + self.max_queue_time)
                ));
            }
        }
        count
    }

    fn original(&self, b: &mut Body, job: &Job, orig: &mut Original, mut headers_only: i32) {
        if self.bounce_size_limit > 0
            && orig.fp.is_some()
            && (orig.message_size <= 0 || orig.message_size > self.bounce_size_limit)
        {
            headers_only = RET_HDRS;
        }
        let hdrs = headers_only == RET_HDRS;
        b.line("");
        b.line(&format!("--{}", job.boundary));
        b.line(&format!(
            "Content-Description: {}{}",
            if matches!(job.kind, Kind::Failure | Kind::Delay) {
                "Undelivered "
            } else {
                ""
            },
            if hdrs { "Message Headers" } else { "Message" }
        ));
        if job.smtputf8 & SMTPUTF8_REQUESTED != 0 {
            b.line(&format!(
                "Content-Type: message/{}",
                if hdrs { "global-headers" } else { "global" }
            ));
        } else {
            b.line(&format!(
                "Content-Type: {}",
                if hdrs {
                    "text/rfc822-headers"
                } else {
                    "message/rfc822"
                }
            ));
        }
        if let Some(enc) = job.mime_encoding
            && !enc.eq_ignore_ascii_case("7bit")
        {
            b.line(&format!("Content-Transfer-Encoding: {enc}"));
        }
        b.line("");
        let positioned = orig.orig_offs != 0
            && orig
                .fp
                .as_mut()
                .is_some_and(|fp| fp.seek_set(orig.orig_offs).is_ok());
        if !positioned {
            b.line("\t--- Undelivered message unavailable ---");
            return;
        }
        b.line(&format!("Return-Path: <{}>", orig.sender));
        let fp = orig.fp.as_mut().expect("positioned");
        let mut buf = Vec::new();
        while let Rec::Type(t) = record::rec_get(fp, &mut buf, 0) {
            if t != rec_type::NORM && t != rec_type::CONT {
                break;
            }
            if hdrs {
                let text = latin1::decode(&buf);
                let is_hdr = text.starts_with([' ', '\t'])
                    || crate::daemons::cleanup::headers::is_header(&text);
                if !is_hdr {
                    break;
                }
            }
            b.recs.push((t, buf.clone()));
        }
        b.line("");
        b.line(&format!("--{}--", job.boundary));
    }

    /// Build one complete notice body; None when no recipient applies
    /// (count == 0: cancel quietly; the caller decides).
    #[allow(clippy::too_many_arguments)]
    fn build(
        &mut self,
        job: &Job,
        orig: &mut Original,
        entries: Option<&[Entry]>,
        dest: &str,
        pm_copy: bool,
        filter: i32,
        ret: i32,
    ) -> Option<Body> {
        let mut b = Body { recs: Vec::new() };
        self.header(&mut b, job, orig, dest, pm_copy);
        if !pm_copy {
            self.boilerplate(&mut b, job.kind);
        }
        if Self::diagnostic_log(&mut b, job.kind, entries, filter) == 0 {
            return None;
        }
        self.header_dsn(&mut b, job, orig);
        if self.diagnostic_dsn(&mut b, job, orig, entries, filter) == 0 {
            return None;
        }
        self.original(&mut b, job, orig, ret);
        Some(b)
    }

    fn job<'a>(
        &self,
        kind: Kind,
        queue_id: &'a str,
        encoding: &str,
        smtputf8: i32,
        dsn_envid: &'a str,
        log: &mut MailLog,
    ) -> Job<'a> {
        let mime_encoding = if self.smtputf8_enable || encoding == "8bit" {
            Some("8bit")
        } else if encoding == "7bit" {
            Some("7bit")
        } else {
            if !encoding.is_empty() {
                log.warn(
                    "bounce",
                    &format!("{queue_id}: unknown encoding: {encoding:.200}"),
                );
            }
            None
        };
        Job {
            kind,
            queue_id,
            boundary: format!("{queue_id}.{}/{}", (self.now)(), self.myhostname),
            mime_encoding,
            smtputf8,
            dsn_envid,
        }
    }
}

/// Content records (type, payload).
pub type Records = Vec<(u8, Vec<u8>)>;

/// SMTPUTF8_FLAG_REQUESTED.
pub const SMTPUTF8_REQUESTED: i32 = 1 << 0;

/// Where notices go: cleanup in-process.
pub trait Poster {
    /// Submit a notice from `sender` to `recipient` with these content
    /// records; returns the new queue ID.
    fn post(
        &mut self,
        log: &mut MailLog,
        sender: &str,
        recipient: &str,
        smtputf8: i32,
        content: Records,
    ) -> Result<String, String>;
}

/// post_mail through cleanup as a library.
pub struct CleanupPoster<'c> {
    pub cleanup: &'c mut Cleanup,
    pub myhostname: String,
    pub mail_name: String,
}

impl Poster for CleanupPoster<'_> {
    fn post(
        &mut self,
        log: &mut MailLog,
        sender: &str,
        recipient: &str,
        smtputf8: i32,
        content: Records,
    ) -> Result<String, String> {
        let mut flags = cleanup::flag::MASK_INTERNAL;
        if smtputf8 & SMTPUTF8_REQUESTED != 0 {
            flags |= cleanup::flag::SMTPUTF8;
        }
        let mut s = self
            .cleanup
            .open(log, flags)
            .map_err(|e| format!("unable to contact the cleanup service: {e}"))?;
        let id = s.queue_id.clone();
        let now = crate::global::deliver_request::now();
        let date = mail_date(now.0);
        let mut recs: Vec<(u8, Vec<u8>)> = vec![
            (
                rec_type::TIME,
                rec_type::time_payload(now.0, now.1).into_bytes(),
            ),
            (rec_type::ATTR, b"log_message_origin=local".to_vec()),
            (rec_type::ATTR, b"trace_flags=0".to_vec()),
            (rec_type::FROM, latin1::encode(sender)),
            (rec_type::RCPT, latin1::encode(recipient)),
            (rec_type::MESG, Vec::new()),
            (
                rec_type::NORM,
                latin1::encode(&format!(
                    "Received: by {} ({})",
                    self.myhostname, self.mail_name
                )),
            ),
            (
                rec_type::NORM,
                latin1::encode(&format!("\tid {id}; {date}")),
            ),
            (rec_type::NORM, latin1::encode(&format!("Date: {date}"))),
        ];
        recs.extend(content);
        recs.push((rec_type::XTRA, Vec::new()));
        recs.push((rec_type::END, Vec::new()));
        for (t, d) in &recs {
            if !s.out_ok() {
                break;
            }
            s.record(*t, d);
        }
        let out = s.finish(&mut NoBouncer);
        if out.status != 0 {
            return Err(out
                .reason
                .unwrap_or_else(|| cleanup::strerror(out.status).to_string()));
        }
        Ok(out.queue_id)
    }
}

/// One request to the bounce service (the attributes of Postfix's
/// bounce_flush / bounce_warn / bounce_trace requests).
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The service whose log is used (`bounce`, `defer`, `trace`); empty:
    /// the usual one for the command.
    pub service: String,
    pub flags: u32,
    pub queue_name: String,
    pub queue_id: String,
    pub encoding: String,
    pub smtputf8: i32,
    /// The notice recipient: the original sender ("" for the null sender).
    pub sender: String,
    pub dsn_envid: String,
    pub dsn_ret: i32,
}

fn service_or<'a>(req: &'a Request, def: &'a str) -> &'a str {
    if req.service.is_empty() {
        def
    } else {
        &req.service
    }
}

/// Delete-recipients flag of a flush request (BOUNCE_FLAG_DELRCPT).
pub const FLAG_DELRCPT: u32 = 1 << 1;

impl Notifier {
    fn is_double_bounce(&self, addr: &str) -> bool {
        addr.eq_ignore_ascii_case(&self.double_bounce)
    }

    fn read_log(&self, service: &str, id: &str, log: &mut MailLog) -> Option<Vec<Entry>> {
        let mut warns = Vec::new();
        let r = log::read(&self.queue, service, id, &mut |w| warns.push(w));
        for w in warns {
            log.warn("bounce", &w);
        }
        match r {
            Ok(v) => v,
            Err(e) => {
                log.warn(
                    "bounce",
                    &format!("open {service} {id}: {}", record::errtext(&e)),
                );
                None
            }
        }
    }

    /// Send one notice; Ok(0) sent or nothing to send, Ok(1) failed.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        poster: &mut dyn Poster,
        log: &mut MailLog,
        job: &Job,
        orig: &mut Original,
        entries: Option<&[Entry]>,
        env_sender: &str,
        dest: &str,
        pm_copy: bool,
        filter: i32,
        ret: i32,
        what: &str,
    ) -> i32 {
        let Some(body) = self.build(job, orig, entries, dest, pm_copy, filter, ret) else {
            // No applicable recipients: cancel this notice.
            return 0;
        };
        let recs = body.recs;
        match poster.post(log, env_sender, dest, job.smtputf8, recs) {
            Ok(new_id) => {
                log.info("bounce", &format!("{}: {what}: {new_id}", job.queue_id));
                0
            }
            Err(e) => {
                log.warn("bounce", &format!("{}: {e}", job.queue_id));
                1
            }
        }
    }

    /// bounce_notify_service: return the failed recipients of the bounce
    /// log to the sender (and the postmaster copies). 0 when done.
    pub fn flush(&mut self, poster: &mut dyn Poster, log: &mut MailLog, req: &Request) -> i32 {
        let service = service_or(req, mail_queue::BOUNCE);
        let entries = self.read_log(service, &req.queue_id, log);
        let mut orig = match Original::read(self, &req.queue_name, &req.queue_id) {
            Ok(o) => o,
            Err(e) => {
                log.warn("bounce", &e.to_string());
                return 1;
            }
        };
        let job = self.job(
            Kind::Failure,
            &req.queue_id,
            &req.encoding,
            req.smtputf8,
            &req.dsn_envid,
            log,
        );
        let ents = entries.as_deref();
        let mut bounce_status;
        let any_bounce = self.notify_mask & (class::BOUNCE | class::BOUNCE2) != 0;
        if self.is_double_bounce(&req.sender) {
            log.warn(
                "bounce",
                &format!(
                    "{}: undeliverable postmaster notification discarded",
                    req.queue_id
                ),
            );
            bounce_status = 0;
        } else if req.sender.is_empty() {
            if !any_bounce {
                bounce_status = 0;
            } else {
                let pm = self.bounce2_rcpt.clone();
                let db = self.double_bounce.clone();
                bounce_status = self.send(
                    poster,
                    log,
                    &job,
                    &mut orig,
                    ents,
                    &db,
                    &pm,
                    true,
                    NOTIFY_OVERRIDE,
                    RET_FULL,
                    "postmaster non-delivery notification",
                );
            }
        } else {
            bounce_status = self.send(
                poster,
                log,
                &job,
                &mut orig,
                ents,
                "",
                &req.sender,
                false,
                notify::FAILURE,
                if req.dsn_ret != 0 {
                    req.dsn_ret
                } else {
                    RET_FULL
                },
                "sender non-delivery notification",
            );
            if bounce_status == 0 && self.notify_mask & class::BOUNCE != 0 {
                let pm = self.bounce_rcpt.clone();
                let db = self.double_bounce.clone();
                let st = self.send(
                    poster,
                    log,
                    &job,
                    &mut orig,
                    ents,
                    &db,
                    &pm,
                    true,
                    NOTIFY_OVERRIDE,
                    RET_HDRS,
                    "postmaster non-delivery notification",
                );
                if st != 0 {
                    log.warn(
                        "bounce",
                        &format!(
                            "{}: postmaster notice failed while bouncing to {}",
                            req.queue_id, req.sender
                        ),
                    );
                }
            }
        }
        if bounce_status == 0 && req.flags & FLAG_DELRCPT != 0 {
            orig.delete_recipients(ents.unwrap_or(&[]));
        }
        if bounce_status == 0 {
            match self.queue.remove(service, &req.queue_id) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    log.warn(
                        "bounce",
                        &format!("remove {service} {}: {}", req.queue_id, record::errtext(&e)),
                    );
                    bounce_status = 1;
                }
            }
        }
        bounce_status
    }

    /// bounce_one_service: a non-delivery notice for one recipient that
    /// is not in any log (a delivery agent's bounce_one, e.g. local's
    /// owner- alias handling). 0 when done.
    pub fn one(
        &mut self,
        poster: &mut dyn Poster,
        log: &mut MailLog,
        req: &Request,
        entry: &Entry,
    ) -> i32 {
        let mut orig = match Original::read(self, &req.queue_name, &req.queue_id) {
            Ok(o) => o,
            Err(e) => {
                log.warn("bounce", &e.to_string());
                return 1;
            }
        };
        let job = self.job(
            Kind::Failure,
            &req.queue_id,
            &req.encoding,
            req.smtputf8,
            &req.dsn_envid,
            log,
        );
        let ents = std::slice::from_ref(entry);
        let db = self.double_bounce.clone();
        let bounce_status = if self.is_double_bounce(&req.sender) {
            log.warn(
                "bounce",
                &format!(
                    "{}: undeliverable postmaster notification discarded",
                    req.queue_id
                ),
            );
            0
        } else if req.sender.is_empty() {
            if self.notify_mask & (class::BOUNCE | class::BOUNCE2) == 0 {
                0
            } else {
                let pm = self.bounce2_rcpt.clone();
                self.send(
                    poster,
                    log,
                    &job,
                    &mut orig,
                    Some(ents),
                    &db,
                    &pm,
                    true,
                    NOTIFY_OVERRIDE,
                    RET_FULL,
                    "postmaster non-delivery notification",
                )
            }
        } else {
            let n = entry.rcpt.dsn_notify;
            let st = if n != 0 && n & notify::FAILURE == 0 {
                0
            } else {
                self.send(
                    poster,
                    log,
                    &job,
                    &mut orig,
                    Some(ents),
                    "",
                    &req.sender,
                    false,
                    NOTIFY_OVERRIDE,
                    if req.dsn_ret != 0 {
                        req.dsn_ret
                    } else {
                        RET_FULL
                    },
                    "sender non-delivery notification",
                )
            };
            if st == 0 && self.notify_mask & class::BOUNCE != 0 {
                let pm = self.bounce_rcpt.clone();
                let ps = self.send(
                    poster,
                    log,
                    &job,
                    &mut orig,
                    Some(ents),
                    &db,
                    &pm,
                    true,
                    NOTIFY_OVERRIDE,
                    RET_HDRS,
                    "postmaster non-delivery notification",
                );
                if ps != 0 {
                    log.warn(
                        "bounce",
                        &format!(
                            "{}: postmaster notice failed while bouncing to {}",
                            req.queue_id, req.sender
                        ),
                    );
                }
            }
            st
        };
        if bounce_status == 0 && req.flags & FLAG_DELRCPT != 0 {
            orig.delete_recipients(ents);
        }
        bounce_status
    }

    /// bounce_notify_verp: one non-delivery notice per logged recipient,
    /// each to the VERP form of the sender (`prefix+user=domain@origin`
    /// with `delims`). 0 when done.
    pub fn flush_verp(
        &mut self,
        poster: &mut dyn Poster,
        log: &mut MailLog,
        req: &Request,
        delims: &str,
    ) -> i32 {
        let service = service_or(req, mail_queue::BOUNCE);
        let Some(entries) = self.read_log(service, &req.queue_id, log) else {
            let entry = Entry {
                rcpt: crate::global::deliver_request::Recipient {
                    address: "(recipient address unavailable)".into(),
                    ..Default::default()
                },
                dsn: super::log::DsnInfo::new("5.0.0", "failed", "(error report unavailable)"),
            };
            return self.one(poster, log, req, &entry);
        };
        let mut orig = match Original::read(self, &req.queue_name, &req.queue_id) {
            Ok(o) => o,
            Err(e) => {
                log.warn("bounce", &e.to_string());
                return 1;
            }
        };
        let job = self.job(
            Kind::Failure,
            &req.queue_id,
            &req.encoding,
            req.smtputf8,
            &req.dsn_envid,
            log,
        );
        let db = self.double_bounce.clone();
        let mut bounce_status = 0;
        for entry in &entries {
            let ents = std::slice::from_ref(entry);
            let n = entry.rcpt.dsn_notify;
            if n != 0 && n & notify::FAILURE == 0 {
                bounce_status = 0;
            } else {
                let to = verp_sender(delims, &req.sender, &entry.rcpt);
                bounce_status = self.send(
                    poster,
                    log,
                    &job,
                    &mut orig,
                    Some(ents),
                    "",
                    &to,
                    false,
                    NOTIFY_OVERRIDE,
                    if req.dsn_ret != 0 {
                        req.dsn_ret
                    } else {
                        RET_FULL
                    },
                    "sender non-delivery notification",
                );
                if bounce_status != 0 {
                    break;
                }
                if req.flags & FLAG_DELRCPT != 0 {
                    orig.delete_recipients(ents);
                }
            }
            if self.notify_mask & class::BOUNCE != 0 {
                let pm = self.bounce_rcpt.clone();
                let ps = self.send(
                    poster,
                    log,
                    &job,
                    &mut orig,
                    Some(ents),
                    &db,
                    &pm,
                    true,
                    NOTIFY_OVERRIDE,
                    RET_HDRS,
                    "postmaster non-delivery notification",
                );
                if ps != 0 {
                    log.warn(
                        "bounce",
                        &format!(
                            "{}: postmaster notice failed while bouncing to {}",
                            req.queue_id, req.sender
                        ),
                    );
                }
            }
        }
        if bounce_status == 0 {
            match self.queue.remove(service, &req.queue_id) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    log.warn(
                        "bounce",
                        &format!("remove {service} {}: {}", req.queue_id, record::errtext(&e)),
                    );
                    bounce_status = 1;
                }
            }
        }
        bounce_status
    }

    /// A VERP request from the null or double-bounce sender is served as
    /// a plain flush, with Postfix's warning.
    pub fn verp_request(
        &mut self,
        poster: &mut dyn Poster,
        log: &mut MailLog,
        req: &Request,
        delims: &str,
    ) -> i32 {
        if req.sender.is_empty() || self.is_double_bounce(&req.sender) {
            log.warn(
                "bounce",
                "request to send VERP-style notification of bounced mail",
            );
            self.flush(poster, log, req)
        } else {
            self.flush_verp(poster, log, req, delims)
        }
    }

    /// bounce_warn_service: the delay warning from the defer log.
    pub fn warn(&mut self, poster: &mut dyn Poster, log: &mut MailLog, req: &Request) -> i32 {
        let entries = self.read_log(service_or(req, mail_queue::DEFER), &req.queue_id, log);
        let mut orig = match Original::read(self, &req.queue_name, &req.queue_id) {
            Ok(o) => o,
            Err(e) => {
                log.warn("bounce", &e.to_string());
                return 1;
            }
        };
        let job = self.job(
            Kind::Delay,
            &req.queue_id,
            &req.encoding,
            req.smtputf8,
            &req.dsn_envid,
            log,
        );
        let ents = entries.as_deref();
        let send_pm = self.notify_mask & class::DELAY != 0;
        let pm = self.delay_rcpt.clone();
        let db = self.double_bounce.clone();
        if self.is_double_bounce(&req.sender) {
            log.warn(
                "bounce",
                &format!(
                    "{}: undeliverable postmaster notification discarded",
                    req.queue_id
                ),
            );
            0
        } else if req.sender.is_empty() {
            if !send_pm {
                return 0;
            }
            self.send(
                poster,
                log,
                &job,
                &mut orig,
                ents,
                &db,
                &pm,
                true,
                NOTIFY_OVERRIDE,
                RET_FULL,
                "postmaster delay notification",
            )
        } else {
            let st = self.send(
                poster,
                log,
                &job,
                &mut orig,
                ents,
                "",
                &req.sender,
                false,
                notify::DELAY,
                RET_HDRS,
                "sender delay notification",
            );
            if st == 0 && send_pm {
                let ps = self.send(
                    poster,
                    log,
                    &job,
                    &mut orig,
                    ents,
                    &db,
                    &pm,
                    true,
                    NOTIFY_OVERRIDE,
                    RET_HDRS,
                    "postmaster delay notification",
                );
                if ps != 0 {
                    log.warn(
                        "bounce",
                        &format!(
                            "{}: postmaster notice failed while warning {}",
                            req.queue_id, req.sender
                        ),
                    );
                }
            }
            st
        }
    }

    /// bounce_trace_service: the success (or `sendmail -bv` / `-v`)
    /// report from the trace log.
    pub fn trace(&mut self, poster: &mut dyn Poster, log: &mut MailLog, req: &Request) -> i32 {
        let service = service_or(req, mail_queue::TRACE);
        let (sender, recipient) = if self.is_double_bounce(&req.sender) {
            log.info(
                "bounce",
                &format!(
                    "{}: not sending trace/success notification for double-bounce message",
                    req.queue_id
                ),
            );
            return 0;
        } else if req.sender.is_empty() {
            if self.notify_mask & class::BOUNCE2 != 0 {
                (self.double_bounce.clone(), self.bounce2_rcpt.clone())
            } else {
                log.info(
                    "bounce",
                    &format!(
                        "{}: not sending trace/success notification for single-bounce message",
                        req.queue_id
                    ),
                );
                let _ = self.queue.remove(service, &req.queue_id);
                return 0;
            }
        } else {
            (String::new(), req.sender.clone())
        };
        let kind = if req.flags & NON_DSN_FLAGS != 0 {
            Kind::Verify
        } else {
            Kind::Success
        };
        let Some(entries) = self.read_log(service, &req.queue_id, log) else {
            return 0;
        };
        let mut orig = match Original::read(self, &req.queue_name, &req.queue_id) {
            Ok(o) => o,
            Err(e) => {
                log.warn("bounce", &e.to_string());
                return 1;
            }
        };
        let job = self.job(
            kind,
            &req.queue_id,
            &req.encoding,
            req.smtputf8,
            &req.dsn_envid,
            log,
        );
        let st = self.send(
            poster,
            log,
            &job,
            &mut orig,
            Some(&entries),
            &sender,
            &recipient,
            false,
            NOTIFY_OVERRIDE,
            RET_HDRS,
            "sender delivery status notification",
        );
        if st == 0 {
            let _ = self.queue.remove(service, &req.queue_id);
        }
        st
    }

    /// Render a notice without submitting it (for tests and tools): the
    /// content records as text lines.
    pub fn render_lines(recs: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (t, d) in recs {
            out.extend_from_slice(d);
            if *t == rec_type::NORM {
                out.push(b'\n');
            }
        }
        let _ = out.flush();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_like_line_wrap() {
        let mut v = Vec::new();
        wrap("<a@b>: short", &mut v);
        assert_eq!(v, vec!["<a@b>: short"]);
        let long = "<someone@example.com>: host mx.example.com[192.0.2.1] said: 550 5.1.1 <someone@example.com>: Recipient address rejected: User unknown (in reply to RCPT TO command)";
        let mut v = Vec::new();
        wrap(long, &mut v);
        assert_eq!(
            v,
            vec![
                "<someone@example.com>: host mx.example.com[192.0.2.1] said: 550 5.1.1",
                "    <someone@example.com>: Recipient address rejected: User unknown (in reply",
                "    to RCPT TO command)",
            ]
        );
    }

    #[test]
    fn verp_addresses() {
        let r = crate::global::deliver_request::Recipient {
            address: "user@example.com".into(),
            ..Default::default()
        };
        assert_eq!(
            verp_sender("+=", "owner-list@lists.example", &r),
            "owner-list+user=example.com@lists.example"
        );
        let r2 = crate::global::deliver_request::Recipient {
            address: "x@y".into(),
            orig_addr: "alias".into(),
            ..Default::default()
        };
        assert_eq!(verp_sender("+=", "bare", &r2), "bare+alias");
    }

    #[test]
    fn notify_classes_names() {
        assert_eq!(
            notify_mask("resource, software").unwrap(),
            class::RESOURCE | class::SOFTWARE
        );
        assert!(notify_mask("bogus").is_err());
    }
}
