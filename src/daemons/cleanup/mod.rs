//! Replaces cleanup(8) of Postfix 3.7: canonicalize and enqueue a message.
//!
//! cleanup takes a message as the record stream of Postfix's cleanup
//! protocol (initial envelope, `M`, content lines, `X`, extracted envelope,
//! `E`), rewrites and checks it, and writes the queue file that the queue
//! manager reads, record for record in the order Postfix's cleanup writes:
//! the SIZE record, arrival time, attributes, sender, recipients with their
//! original-recipient and DSN attributes, the content with the headers it
//! adds (Message-Id, Date, From, To), the extracted segment. The file is
//! created in `incoming/` (0600), finished with fsync and mode 0700, and
//! only then is success reported (DESIGN.md §3).
//!
//! It runs as a library inside the programs that receive mail (pickup,
//! smtpd: DESIGN.md §2): [`Cleanup::submit`] / [`Session`] take the records
//! and return the queue ID, or Postfix's status bits and reason. Its log
//! lines still carry the name `cleanup`.
//!
//! Trusts: nothing in the records; every limit is enforced with Postfix's
//! outcome (line_length_limit, header_size_limit, hopcount_limit,
//! message_size_limit, queue_file_attribute_count_limit,
//! virtual_alias_{recursion,expansion,address_length}_limit,
//! header_address_token_limit). Privilege: mail_owner.
//!
//! Parameters: the address rewriting ones (myorigin, mydomain,
//! append_at_myorigin, append_dot_mydomain, swap_bangpath,
//! allow_percent_hack, remote_header_rewrite_domain), canonical_maps,
//! sender_canonical_maps, recipient_canonical_maps, canonical_classes,
//! sender_canonical_classes, recipient_canonical_classes,
//! masquerade_domains, masquerade_classes, masquerade_exceptions,
//! virtual_alias_maps, header_checks, mime_header_checks,
//! nested_header_checks, body_checks, body_checks_size_limit, always_bcc,
//! sender_bcc_maps, recipient_bcc_maps, enable_original_recipient,
//! always_add_missing_headers, undisclosed_recipients_header,
//! message_drop_headers, header_from_format, detect_8bit_encoding_header,
//! cleanup_replace_stray_cr_lf, message_reject_characters,
//! message_strip_characters, delay_warning_time, duplicate_filter_limit,
//! empty_address_recipient, propagate_unmatched_extensions,
//! recipient_delimiter, smtputf8_enable, smtputf8_autodetect_classes,
//! strict_* MIME options, disable_mime_input_processing,
//! enable_long_queue_ids, myhostname, queue_directory, hash_queue_*.

pub mod config;
pub mod headers;
pub mod interim;
mod message;
pub mod state;

pub use config::Config;
pub use state::Session;

use crate::daemons::logsink::MailLog;
use crate::global::mail_conf::MailConf;
use crate::global::msg;
use crate::global::record::{self, QueueStream, Rec};
use crate::util::latin1;
use std::ffi::OsString;

/// Client processing flags (CLEANUP_FLAG_*).
pub mod flag {
    pub const BOUNCE: u32 = 1 << 0;
    pub const FILTER: u32 = 1 << 1;
    pub const HOLD: u32 = 1 << 2;
    pub const DISCARD: u32 = 1 << 3;
    pub const BCC_OK: u32 = 1 << 4;
    pub const MAP_OK: u32 = 1 << 5;
    pub const MILTER: u32 = 1 << 6;
    pub const SMTP_REPLY: u32 = 1 << 7;
    pub const SMTPUTF8: u32 = 1 << 8;
    pub const AUTOUTF8: u32 = 1 << 9;
    pub const FILTER_ALL: u32 = FILTER | MILTER;
    /// What mail from outside gets.
    pub const MASK_EXTERNAL: u32 = FILTER_ALL | BCC_OK | MAP_OK;
    /// What forwarded or internally generated mail gets.
    pub const MASK_INTERNAL: u32 = MAP_OK;
    /// What a FLGS record may add.
    pub const MASK_EXTRA: u32 = HOLD | DISCARD;
}

/// Completion status bits (CLEANUP_STAT_*).
pub mod stat {
    pub const OK: u32 = 0;
    pub const BAD: u32 = 1 << 0;
    pub const WRITE: u32 = 1 << 1;
    pub const SIZE: u32 = 1 << 2;
    pub const CONT: u32 = 1 << 3;
    pub const HOPS: u32 = 1 << 4;
    pub const RCPT: u32 = 1 << 6;
    pub const PROXY: u32 = 1 << 7;
    pub const DEFER: u32 = 1 << 8;
    pub const NOPERM: u32 = 1 << 9;
    pub const MASK_CANT_BOUNCE: u32 = BAD | WRITE | DEFER | RCPT;
    pub const MASK_INCOMPLETE: u32 = BAD | WRITE | SIZE | DEFER;
}

/// The (SMTP code, enhanced status, text) of the first status bit set, in
/// Postfix's order (cleanup_stat_detail).
pub fn stat_detail(status: u32) -> (u32, &'static str, &'static str) {
    const T: &[(u32, u32, &str, &str)] = &[
        (stat::DEFER, 451, "4.7.1", "service unavailable"),
        (stat::PROXY, 451, "4.3.0", "queue file write error"),
        (stat::BAD, 451, "4.3.0", "internal protocol error"),
        (stat::RCPT, 550, "5.1.0", "no recipients specified"),
        (stat::HOPS, 554, "5.4.0", "too many hops"),
        (stat::SIZE, 552, "5.3.4", "message file too big"),
        (stat::CONT, 550, "5.7.1", "message content rejected"),
        (stat::WRITE, 451, "4.3.0", "queue file write error"),
        (stat::NOPERM, 550, "5.7.1", "service denied"),
    ];
    for (bit, code, dsn, text) in T {
        if status & bit != 0 {
            return (*code, dsn, text);
        }
    }
    (250, "2.0.0", "Success")
}

/// cleanup_strerror.
pub fn strerror(status: u32) -> &'static str {
    stat_detail(status).2
}

/// The length of an RFC 3463 status code at the start of `t`, or 0.
fn dsn_valid(t: &str) -> usize {
    let b = t.as_bytes();
    if b.len() < 2 || !matches!(b[0], b'2' | b'4' | b'5') || b[1] != b'.' {
        return 0;
    }
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let n2 = digits(2);
    if !(1..=3).contains(&n2) || b.get(2 + n2) != Some(&b'.') {
        return 0;
    }
    let p3 = 3 + n2;
    let n3 = digits(p3);
    if !(1..=3).contains(&n3) {
        return 0;
    }
    match b.get(p3 + n3) {
        None => p3 + n3,
        Some(c) if c.is_ascii_whitespace() => p3 + n3,
        _ => 0,
    }
}

/// dsn_split: the status code at the start of `text` (or `def`), and the
/// rest of the text.
pub fn dsn_split(def: &str, text: &str) -> (String, String) {
    let t = text.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let n = dsn_valid(t);
    if n > 0 {
        let rest = t[n..].trim_start_matches(|c: char| c.is_ascii_whitespace());
        (t[..n].to_string(), rest.to_string())
    } else {
        (def[..dsn_valid(def)].to_string(), t.to_string())
    }
}

/// What cleanup asks of the bounce service when it must return a message
/// it refused (CLEANUP_FLAG_BOUNCE).
#[derive(Debug, Clone)]
pub struct BounceRequest {
    pub queue_id: String,
    /// (original recipient, recipient) pairs from the queue file.
    pub recipients: Vec<(String, String)>,
    pub queue_name: String,
    pub sender: String,
    pub status: String,
    pub text: String,
    pub dsn_envid: String,
    pub dsn_ret: i32,
    pub encoding: String,
    pub smtputf8: i64,
    pub verp: Option<String>,
}

/// The bounce service as cleanup sees it. Returns true when the sender
/// has been (or will be) notified.
pub trait Bouncer {
    fn bounce(&mut self, req: &BounceRequest) -> bool;
}

/// No bounce service: as when Postfix's bounce daemon is unreachable, the
/// message is not accepted (the submitter keeps it and retries).
pub struct NoBouncer;

impl Bouncer for NoBouncer {
    fn bounce(&mut self, _req: &BounceRequest) -> bool {
        false
    }
}

/// The result of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub queue_id: String,
    /// 0: queued (or discarded, or bounced); otherwise the status bits.
    pub status: u32,
    /// Postfix's reason text when there is one.
    pub reason: Option<String>,
    /// Where the queue file ended up (`incoming`, `hold`), when queued.
    pub queue_name: Option<String>,
}

/// cleanup as a library: its configuration and open tables.
pub struct Cleanup {
    pub cf: Config,
}

impl Cleanup {
    pub fn new(conf: &MailConf) -> Result<Cleanup, crate::global::mail_conf::ConfError> {
        Ok(Cleanup {
            cf: Config::from_conf(conf)?,
        })
    }

    /// Start a message (cleanup_open + cleanup_control).
    pub fn open<'a>(
        &'a mut self,
        log: &'a mut MailLog,
        flags: u32,
    ) -> std::io::Result<Session<'a>> {
        Session::open(&mut self.cf, log, flags)
    }

    /// Process a whole record stream: `(type, payload)` pairs ending with
    /// an END record.
    pub fn submit(
        &mut self,
        log: &mut MailLog,
        bouncer: &mut dyn Bouncer,
        flags: u32,
        records: &[(u8, Vec<u8>)],
    ) -> std::io::Result<Outcome> {
        let mut s = self.open(log, flags)?;
        for (t, d) in records {
            if !s.out_ok() {
                break;
            }
            s.record(*t, d);
            if *t == crate::global::rec_type::END {
                break;
            }
        }
        Ok(s.finish(bouncer))
    }
}

impl Session<'_> {
    /// cleanup_flush, as an [`Outcome`].
    pub fn finish(&mut self, bouncer: &mut dyn Bouncer) -> Outcome {
        let status = self.flush(bouncer);
        let discarded = self.flags & flag::DISCARD != 0;
        Outcome {
            queue_id: self.queue_id.clone(),
            status,
            reason: self.reason.clone(),
            queue_name: if status == 0 && !discarded {
                Some(self.queue_name_str().to_string())
            } else {
                None
            },
        }
    }

    fn queue_name_str(&self) -> &str {
        let p = self.path();
        p.split('/').next().unwrap_or("")
    }
}

/// The `cleanup` program: reads one message as a record stream on stdin
/// (what a client sends after the flags), queues it, and prints
/// `queue_id=ID status=N reason=TEXT` on stdout. `-c DIR` chooses the
/// configuration, `-f FLAGS` the client flags (decimal; default: what
/// pickup sends), `-v` more logging. Exit status 0 when queued.
pub fn main(args: Vec<OsString>) -> i32 {
    let args: Vec<String> = args.iter().map(|a| latin1::from_os(a)).collect();
    msg::init("cleanup");
    let mut config_dir: Option<String> = None;
    let mut flags = flag::BOUNCE | flag::MASK_EXTERNAL;
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "-c" if i + 1 < args.len() => {
                config_dir = Some(args[i + 1].clone());
                i += 1;
            }
            "-f" if i + 1 < args.len() => {
                flags = args[i + 1].parse().unwrap_or(flags);
                i += 1;
            }
            "-v" => msg::more_verbose(),
            a => msg::fatal(&format!("unexpected command-line argument: {a}")),
        }
        i += 1;
    }
    let conf = match MailConf::read(config_dir.as_deref()) {
        Ok(c) => c,
        Err(e) => msg::fatal(&e.0),
    };
    let mut cleanup = match Cleanup::new(&conf) {
        Ok(c) => c,
        Err(e) => msg::fatal(&e.0),
    };
    let syslog_name = conf
        .get_str("syslog_name", 1, 0)
        .unwrap_or_else(|_| "postfix".into());
    if let Err(e) = crate::global::maillog::init(&format!("{syslog_name}/cleanup"), &conf) {
        msg::fatal(&e);
    }
    let mut log = MailLog::daemon(&syslog_name);
    let mut input = match QueueStream::stdin() {
        Ok(s) => s,
        Err(e) => msg::fatal(&format!("stdin: {}", record::errtext(&e))),
    };
    let mut s = match cleanup.open(&mut log, flags) {
        Ok(s) => s,
        Err(e) => msg::fatal(&format!("open queue file: {}", record::errtext(&e))),
    };
    let mut buf = Vec::new();
    loop {
        if !s.out_ok() {
            break;
        }
        match record::rec_get_raw(&mut input, &mut buf, 0, record::FLAG_NONE) {
            Rec::Type(t) => {
                s.record(t, &buf);
                if t == crate::global::rec_type::END {
                    break;
                }
            }
            _ => {
                s.errs |= stat::BAD;
                break;
            }
        }
    }
    let out = s.finish(&mut NoBouncer);
    println!(
        "queue_id={} status={} reason={}",
        out.queue_id,
        out.status,
        out.reason.clone().unwrap_or_default()
    );
    if out.status == 0 { 0 } else { 1 }
}
