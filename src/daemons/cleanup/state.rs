//! One message going through cleanup: the record state machine (initial
//! envelope, content, extracted envelope), the queue file output, and the
//! final SIZE record, fsync and hand-off (Postfix's cleanup_api.c,
//! cleanup_envelope.c, cleanup_extracted.c, cleanup_out.c,
//! cleanup_out_recipient.c, cleanup_final.c).

use super::config::{CANON_ENV_FROM, CANON_ENV_RCPT, Config, EXT_PROP_CANONICAL};
use super::interim::{self, quote, unquote};
use super::{flag, stat};
use crate::daemons::logsink::MailLog;
use crate::global::mail_queue::{self, INCOMING};
use crate::global::mime_state::MimeState;
use crate::global::rec_type;
use crate::global::record;
use crate::global::rewrite_clnt::{self, Context};
use crate::util::latin1;
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};

/// The queue file's stream buffer: 4096 bytes (Postfix's VSTREAM size)
/// took 25 write(2)s for a 100 KB message.
const QUEUE_FILE_BUFSIZE: usize = 32768;

/// The first SIZE record: six `%15ld` zeros, updated in place at the end.
const SIZE_PLACEHOLDER: &str = concat!(
    "              0 ",
    "              0 ",
    "              0 ",
    "              0 ",
    "              0 ",
    "              0"
);

const SMTPUTF8_REQUESTED: i64 = 1 << 0;
const SMTPUTF8_HEADER: i64 = 1 << 1;
const SMTPUTF8_SENDER: i64 = 1 << 2;

const FLAG_INRCPT: u32 = 1 << 16;
const FLAG_WARN_SEEN: u32 = 1 << 17;
const FLAG_END_SEEN: u32 = 1 << 18;

const DSN_NOTIFY_NEVER: i32 = 1;
const DSN_NOTIFY_SUCCESS: i32 = 2;
const DSN_NOTIFY_ANY: i32 = 2 | 4 | 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Start,
    Envelope,
    Message,
    Body,
    ExtractedStart,
    Extracted,
    Done,
}

/// The queue file being written, with its write offset.
pub(super) struct Dst {
    pub w: BufWriter<File>,
    pub off: u64,
}

/// Borrowed by the caller (pickup) or owned by the session (smtpd, whose
/// transaction outlives any borrow): the configuration and the log.
pub enum Own<'a, T> {
    Ref(&'a mut T),
    Boxed(Box<T>),
}

impl<T> std::ops::Deref for Own<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            Own::Ref(r) => r,
            Own::Boxed(b) => b,
        }
    }
}

impl<T> std::ops::DerefMut for Own<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        match self {
            Own::Ref(r) => r,
            Own::Boxed(b) => b,
        }
    }
}

/// Per-message state (Postfix's CLEANUP_STATE).
pub struct Session<'a> {
    pub(super) cf: Own<'a, Config>,
    pub(super) log: Own<'a, MailLog>,
    pub(super) dst: Option<Dst>,
    pub(super) queue_name: String,
    pub queue_id: String,
    pub(super) path: String,
    pub(super) ctime: (i64, i64),
    pub(super) phase: Phase,
    pub arrival: (i64, i64),
    pub(super) fullname: Option<String>,
    pub sender: Option<String>,
    pub recip: Option<String>,
    pub(super) orig_rcpt: Option<String>,
    pub(super) hbc_rcpt: Vec<String>,
    pub flags: u32,
    pub(super) tflags: i32,
    pub(super) qmgr_opts: i64,
    pub errs: u32,
    pub(super) err_mask: u32,
    pub(super) headers_seen: u64,
    pub(super) hop_count: i64,
    pub(super) resent: &'static str,
    pub(super) dups: HashSet<String>,
    pub(super) data_offset: i64,
    pub(super) xtra_offset: i64,
    pub(super) cont_length: i64,
    pub rcpt_count: i64,
    pub reason: Option<String>,
    pub(super) attr: Attrs,
    pub(super) mime: Option<MimeState>,
    pub(super) mime_errs: u32,
    pub(super) hdr_rewrite_context: Option<Context>,
    pub(super) filter: Option<String>,
    pub(super) redirect: Option<String>,
    pub(super) dsn_envid: Option<String>,
    pub(super) dsn_ret: i32,
    pub(super) dsn_notify: i32,
    pub(super) dsn_orcpt: Option<String>,
    pub(super) verp_delims: Option<String>,
    pub smtputf8: i64,
    pub(super) size_warned: bool,
    /// Bytes refused by the size limit: where a buffered writer's file
    /// would now end (to tell when Postfix's cleanup sees EFBIG).
    pub(super) size_over: u64,
}

/// The message's named attributes (cleanup's attr table), in arrival
/// order. The strings of a finished message's table serve the next
/// message in this process: no allocation per attribute.
pub(super) struct Attrs {
    slots: Vec<(String, String)>,
    len: usize,
}

thread_local! {
    static SPARE_ATTRS: std::cell::RefCell<Vec<(String, String)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl Attrs {
    /// A table holding `log_message_origin=local` (cleanup_state_alloc),
    /// in the strings a previous message left, if any.
    fn recycled() -> Attrs {
        let slots = SPARE_ATTRS.with(|s| std::mem::take(&mut *s.borrow_mut()));
        let mut a = Attrs { slots, len: 0 };
        a.update("log_message_origin", "local");
        a
    }

    /// Hand the strings to the next message.
    fn keep_for_next(&mut self) {
        let slots = std::mem::take(&mut self.slots);
        self.len = 0;
        SPARE_ATTRS.with(|s| *s.borrow_mut() = slots);
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn find(&self, name: &str) -> Option<&str> {
        self.slots[..self.len]
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn update(&mut self, name: &str, value: &str) {
        if let Some(e) = self.slots[..self.len].iter_mut().find(|(n, _)| n == name) {
            e.1.clear();
            e.1.push_str(value);
            return;
        }
        match self.slots.get_mut(self.len) {
            Some((n, v)) => {
                n.clear();
                n.push_str(name);
                v.clear();
                v.push_str(value);
            }
            None => self.slots.push((name.to_string(), value.to_string())),
        }
        self.len += 1;
    }
}

fn split_nameval(buf: &str) -> Result<(&str, &str), &'static str> {
    // All separators are ASCII: byte offsets are char boundaries.
    let ws = |c: u8| c.is_ascii_whitespace();
    let b = buf.as_bytes();
    let start = b.iter().position(|&c| !ws(c)).unwrap_or(b.len());
    let s = &b[start..];
    if s.is_empty() || s[0] == b'=' {
        return Err("missing attribute name");
    }
    let name_end = s
        .iter()
        .position(|&c| ws(c) || c == b'=')
        .unwrap_or(s.len());
    let after = start + name_end;
    let eq = after
        + b[after..]
            .iter()
            .position(|&c| !ws(c))
            .unwrap_or(b.len() - after);
    if b.get(eq) != Some(&b'=') {
        return Err("missing '=' after attribute name");
    }
    let value = buf[eq + 1..].trim_matches(|c: char| c.is_ascii_whitespace());
    Ok((&buf[start..after], value))
}

/// rec_attr_map: attribute names that stand for pseudo record types.
fn rec_attr_map(name: &str) -> Option<u8> {
    match name {
        "envelope_id" => Some(rec_type::DSN_ENVID),
        "notify_flags" => Some(rec_type::DSN_NOTIFY),
        "dsn_orig_rcpt" => Some(rec_type::DSN_ORCPT),
        "ret_flags" => Some(rec_type::DSN_RET),
        "create_time" => Some(rec_type::CTIME),
        _ => None,
    }
}

fn alldig(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn atoi(s: &str) -> i32 {
    rec_type::atol(s.as_bytes()) as i32
}

fn dsn_notify_ok(v: i32) -> bool {
    v == DSN_NOTIFY_NEVER || v == (v & DSN_NOTIFY_ANY)
}

fn now() -> (i64, i64) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_micros() as i64)
}

fn valid_utf8(s: &str) -> bool {
    std::str::from_utf8(&latin1::encode(s)).is_ok()
}

impl<'a> Session<'a> {
    /// cleanup_open: create the incoming queue file, remove spurious
    /// logfiles of the same ID, and take the client's flags.
    pub fn open(
        cf: &'a mut Config,
        log: &'a mut MailLog,
        flags: u32,
    ) -> std::io::Result<Session<'a>> {
        Session::open_with(Own::Ref(cf), Own::Ref(log), flags).map_err(|(e, _, _)| e)
    }

    /// [`Session::open`] with the configuration and log owned by the
    /// session; on failure they come back with the error.
    pub fn open_owned(
        cf: Box<Config>,
        log: Box<MailLog>,
        flags: u32,
    ) -> Result<Session<'static>, (std::io::Error, Box<Config>, Box<MailLog>)> {
        match Session::open_with(Own::Boxed(cf), Own::Boxed(log), flags) {
            Ok(s) => Ok(s),
            Err((e, Own::Boxed(c), Own::Boxed(l))) => Err((e, c, l)),
            Err(_) => unreachable!("owned parts come back owned"),
        }
    }

    /// The owned configuration and log back (after finish or abort).
    pub fn into_owned(mut self) -> Option<(Box<Config>, Box<MailLog>)> {
        self.attr.keep_for_next();
        match (self.cf, self.log) {
            (Own::Boxed(c), Own::Boxed(l)) => Some((c, l)),
            _ => None,
        }
    }

    #[allow(clippy::type_complexity)]
    fn open_with(
        cf: Own<'a, Config>,
        mut log: Own<'a, MailLog>,
        flags: u32,
    ) -> Result<Session<'a>, (std::io::Error, Own<'a, Config>, Own<'a, MailLog>)> {
        let nq = match cf.queue.enter(INCOMING, 0o600) {
            Ok(nq) => nq,
            Err(e) => return Err((e, cf, log)),
        };
        for q in [mail_queue::DEFER, mail_queue::BOUNCE, mail_queue::TRACE] {
            match cf.queue.remove(q, &nq.id) {
                Ok(()) => log.warn("cleanup", &format!("{q}: removed spurious {} log", nq.id)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    let _ = cf.queue.remove(INCOMING, &nq.id);
                    let e = std::io::Error::other(format!(
                        "{q}: remove {} log: {}",
                        nq.id,
                        record::errtext(&e)
                    ));
                    return Err((e, cf, log));
                }
            }
        }
        let mut s = Session {
            cf,
            log,
            dst: Some(Dst {
                w: BufWriter::with_capacity(QUEUE_FILE_BUFSIZE, nq.file),
                off: 0,
            }),
            queue_name: INCOMING.to_string(),
            queue_id: nq.id,
            path: nq.path,
            ctime: nq.time,
            phase: Phase::Start,
            arrival: (0, 0),
            fullname: None,
            sender: None,
            recip: None,
            orig_rcpt: None,
            hbc_rcpt: Vec::new(),
            flags: 0,
            tflags: 0,
            qmgr_opts: 0,
            errs: 0,
            err_mask: 0,
            headers_seen: 0,
            hop_count: 0,
            resent: "",
            dups: HashSet::new(),
            data_offset: -1,
            xtra_offset: -1,
            cont_length: 0,
            rcpt_count: 0,
            reason: None,
            attr: Attrs::recycled(),
            mime: None,
            mime_errs: 0,
            hdr_rewrite_context: Some(Context::Local),
            filter: None,
            redirect: None,
            dsn_envid: None,
            dsn_ret: 0,
            dsn_notify: 0,
            dsn_orcpt: None,
            verp_delims: None,
            smtputf8: 0,
            size_warned: false,
            size_over: 0,
        };
        s.control(flags);
        Ok(s)
    }

    /// cleanup_control.
    fn control(&mut self, flags: u32) {
        self.flags = flags;
        self.err_mask = if flags & flag::BOUNCE != 0 {
            stat::MASK_INCOMPLETE
        } else {
            !0
        };
        if flags & flag::SMTPUTF8 != 0 {
            self.smtputf8 = SMTPUTF8_REQUESTED;
        }
    }

    /// The queue file path relative to the queue directory.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub(super) fn attr_find(&self, name: &str) -> Option<&str> {
        self.attr.find(name)
    }

    fn attr_update(&mut self, name: &str, value: &str) {
        self.attr.update(name, value);
    }

    /// CLEANUP_OUT_OK.
    pub fn out_ok(&self) -> bool {
        self.errs & self.err_mask == 0 && self.flags & flag::DISCARD == 0
    }

    // ------------------------------------------------------------ output

    fn put(&mut self, t: u8, data: &[u8]) {
        let Some(dst) = &mut self.dst else {
            return;
        };
        // The record's type and length straight into the stream buffer,
        // then its data: no record copy per line.
        let mut hdr = [0u8; 11];
        let hlen = record::rec_encode_header(&mut hdr, t, data.len());
        let rec_len = hlen + data.len();
        let limit = self.cf.message_limit;
        if limit > 0 && dst.off.max(self.size_over) + rec_len as u64 > limit {
            // As with the file size resource limit that Postfix sets on
            // its cleanup: its 4096-byte stream buffer meets EFBIG (and
            // it warns) only when the buffer that crosses the limit is
            // written; a message that stops before that shows the error
            // when the stream is closed (see `abort` and `flush`).
            self.size_over = dst.off.max(self.size_over) + rec_len as u64;
            if !self.size_warned && self.size_over >= limit.div_ceil(4096) * 4096 {
                self.size_warned = true;
                let id = self.queue_id.clone();
                self.log
                    .warn("cleanup", &format!("{id}: queue file size limit exceeded"));
            }
            self.errs |= stat::SIZE;
            return;
        }
        match dst
            .w
            .write_all(&hdr[..hlen])
            .and_then(|_| dst.w.write_all(data))
        {
            Ok(()) => dst.off += rec_len as u64,
            Err(e) => {
                let id = self.queue_id.clone();
                self.log.warn(
                    "cleanup",
                    &format!("{id}: write queue file: {}", record::errtext(&e)),
                );
                self.errs |= stat::WRITE;
            }
        }
    }

    /// cleanup_out: one record, text records split at line_length_limit.
    pub(super) fn out(&mut self, t: u8, text: &str) {
        if !self.out_ok() {
            return;
        }
        let bytes = latin1::encode_cow(text);
        let mut rest: &[u8] = &bytes;
        let limit = self.cf.line_limit.max(1);
        loop {
            if rest.len() > limit && (t == rec_type::NORM || t == rec_type::CONT) {
                self.put(rec_type::CONT, &rest[..limit]);
                rest = &rest[limit..];
                if self.errs & (stat::WRITE | stat::SIZE) != 0 {
                    break;
                }
            } else {
                self.put(t, rest);
                break;
            }
        }
    }

    /// vstream_ftell on the output.
    pub(super) fn ftell(&self) -> i64 {
        self.dst.as_ref().map(|d| d.off as i64).unwrap_or(-1)
    }

    /// cleanup_out_header: a multi-line header as records, continuation
    /// lines indented, cut at header_size_limit.
    pub(super) fn out_header(&mut self, header: &str) {
        // Postfix handles the collected header as a C string: whatever
        // follows a NUL byte is not written (its lines included).
        let header = header.split('\0').next().unwrap_or("");
        if self.cf.smtputf8_enable && !header.is_empty() && !header.is_ascii() {
            self.smtputf8 |= SMTPUTF8_HEADER;
            if self.flags & flag::AUTOUTF8 != 0 {
                self.smtputf8 |= SMTPUTF8_REQUESTED;
            }
        }
        let limit = self.cf.header_limit;
        // Positions count chars (one per original byte); ASCII text needs
        // no table from char positions to string offsets.
        let ascii = header.is_ascii();
        let offs: Vec<usize> = if ascii {
            Vec::new()
        } else {
            header
                .char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(header.len()))
                .collect()
        };
        let off = |i: usize| if ascii { i } else { offs[i] };
        let pos = |b: usize| {
            if ascii {
                b
            } else {
                offs.binary_search(&b).unwrap_or_else(|i| i)
            }
        };
        let nchars = if ascii { header.len() } else { offs.len() - 1 };
        let mut start = 0usize;
        loop {
            let from = off(start);
            let nl = header[from..].find('\n').map(|b| pos(from + b));
            let line_end = nl.unwrap_or(nchars);
            let mut next = nl.map(|n| n + 1);
            let mut end = line_end;
            if line_end > limit {
                if start as f64 > 0.9 * limit as f64 {
                    break;
                }
                end = limit.max(start);
                next = None;
            }
            let line = &header[off(start)..off(end)];
            if start == 0 || line.starts_with([' ', '\t']) {
                self.out(rec_type::NORM, line);
            } else {
                self.out(rec_type::NORM, &format!("\t{line}"));
            }
            match next {
                Some(n) => start = n,
                None => break,
            }
        }
    }

    // ------------------------------------------------------------ records

    /// Process one record from the client (CLEANUP_RECORD).
    pub fn record(&mut self, t: u8, data: &[u8]) {
        if record::hidden_type(t) && self.phase != Phase::Done {
            let id = self.queue_id.clone();
            self.log.warn(
                "cleanup",
                &format!("{id}: record type {t} not allowed - discarding this message"),
            );
            self.errs |= stat::BAD;
            return;
        }
        let text = latin1::decode_cow(data);
        match self.phase {
            Phase::Start => {
                // The SIZE record goes first so it can be updated in place.
                self.out(rec_type::SIZE, SIZE_PLACEHOLDER);
                self.phase = Phase::Envelope;
                self.envelope(t, &text);
            }
            Phase::Envelope => self.envelope(t, &text),
            Phase::Message => {
                self.message_start();
                self.phase = Phase::Body;
                self.headerbody(t, &text);
            }
            Phase::Body => self.headerbody(t, &text),
            Phase::ExtractedStart => {
                self.out(rec_type::XTRA, "");
                self.phase = Phase::Extracted;
                self.extracted(t, &text);
            }
            Phase::Extracted => self.extracted(t, &text),
            Phase::Done => {}
        }
    }

    fn warn_id(&mut self, text: &str) {
        let line = format!("{}: {text}", self.queue_id);
        self.log.warn("cleanup", &line);
    }

    fn envelope(&mut self, t: u8, buf: &str) {
        let mut mapped_type = t;
        let mut mapped_buf: &str = buf;
        let mut attr_nv: Option<(&str, &str)> = None;
        if t == rec_type::FLGS {
            let extra = atoi(buf) as u32;
            if extra & !flag::MASK_EXTRA != 0 {
                self.warn_id(&format!("ignoring bad extra flags: 0x{extra:x}"));
            } else {
                self.flags |= extra;
            }
            return;
        }
        if t == rec_type::MILT_COUNT {
            return;
        }
        if t == rec_type::ATTR {
            match split_nameval(buf) {
                Err(e) => {
                    let b: String = buf.chars().take(100).collect();
                    self.warn_id(&format!("message rejected: malformed attribute: {e}: {b}"));
                    self.errs |= stat::BAD;
                    return;
                }
                Ok((n, v)) => {
                    if v.is_empty() {
                        self.warn_id(&format!(
                            "spurious null attribute value for \"{n}\" -- ignored"
                        ));
                        return;
                    }
                    if let Some(m) = rec_attr_map(n) {
                        mapped_buf = v;
                        mapped_type = m;
                    }
                    attr_nv = Some((n, v));
                }
            }
        }
        if !rec_type::in_set(rec_type::ENVELOPE, t) {
            self.warn_id(&format!(
                "message rejected: unexpected record type {t} in envelope"
            ));
            self.errs |= stat::BAD;
            return;
        }
        if self.flags & FLAG_INRCPT == 0 && rec_type::in_set(rec_type::ENV_RECIPIENT, t) {
            if self.sender.is_none() {
                self.warn_id("message rejected: missing sender envelope record");
                self.errs |= stat::BAD;
                return;
            }
            if self.arrival.0 == 0 {
                self.warn_id("message rejected: missing time envelope record");
                self.errs |= stat::BAD;
                return;
            }
            if self.flags & FLAG_WARN_SEEN == 0
                && self.sender.as_deref().is_some_and(|s| !s.is_empty())
                && self.cf.delay_warn_time > 0
            {
                let when = self.arrival.0 + self.cf.delay_warn_time;
                self.out(rec_type::WARN, &rec_type::long15_payload(when));
            }
            self.flags |= FLAG_INRCPT;
        }
        if t == rec_type::RCPT {
            self.rcpt_record(buf);
            return;
        }
        if t == rec_type::DONE || t == rec_type::DRCP {
            self.orig_rcpt = None;
            self.dsn_orcpt = None;
            self.dsn_notify = 0;
            return;
        }
        if mapped_type == rec_type::DSN_ORCPT {
            if let Some(o) = self.dsn_orcpt.take() {
                let o: String = o.chars().take(200).collect();
                self.warn_id(&format!(
                    "ignoring out-of-order DSN original recipient record <{o}>"
                ));
            }
            self.dsn_orcpt = Some(mapped_buf.to_string());
            return;
        }
        if mapped_type == rec_type::DSN_NOTIFY {
            if self.dsn_notify != 0 {
                let n = self.dsn_notify;
                self.warn_id(&format!("ignoring out-of-order DSN notify record <{n}>"));
                self.dsn_notify = 0;
            }
            let v = atoi(mapped_buf);
            if !alldig(mapped_buf) || v == 0 || !dsn_notify_ok(v) {
                let b: String = buf.chars().take(200).collect();
                self.warn_id(&format!("ignoring malformed DSN notify record <{b}>"));
            } else {
                self.dsn_notify = v;
                self.qmgr_opts |= (v as i64) << 1;
            }
            return;
        }
        if t == rec_type::ORCP {
            if let Some(o) = self.orig_rcpt.take() {
                let o: String = o.chars().take(200).collect();
                self.warn_id(&format!(
                    "ignoring out-of-order original recipient record <{o}>"
                ));
            }
            self.orig_rcpt = Some(buf.to_string());
            return;
        }
        if t == rec_type::MESG {
            self.phase = Phase::Message;
            self.flags &= !FLAG_INRCPT;
            return;
        }
        if self.flags & FLAG_INRCPT != 0 {
            self.qmgr_opts |= 1;
        }
        if t == rec_type::SIZE {
            // Keep only the client's SMTPUTF8_REQUESTED flag.
            let f: Vec<&str> = buf.split_ascii_whitespace().collect();
            if let Some(v) = f.get(5) {
                self.smtputf8 = (atoi(v) as i64) & SMTPUTF8_REQUESTED;
            }
            return;
        }
        if mapped_type == rec_type::CTIME {
            return;
        }
        if t == rec_type::TIME {
            if self.arrival.0 == 0 {
                self.arrival = rec_type::time_scan(buf.as_bytes());
                self.out(t, buf);
            }
            let created = now().0;
            let mut a = String::with_capacity(32);
            a.push_str("create_time=");
            match u32::try_from(created) {
                Ok(n) => a.push_str(crate::util::stringops::decimal(&mut [0; 10], n)),
                Err(_) => a.push_str(&created.to_string()),
            }
            self.out(rec_type::ATTR, &a);
            return;
        }
        if t == rec_type::FULL {
            if self.fullname.is_none() {
                self.fullname = Some(buf.to_string());
                self.out(t, buf);
            }
            return;
        }
        if t == rec_type::FROM {
            if self.sender.is_some() {
                self.warn_id("message rejected: multiple envelope sender records");
                self.errs |= stat::BAD;
                return;
            }
            self.addr_sender(buf);
            return;
        }
        if mapped_type == rec_type::DSN_ENVID {
            if !mapped_buf.chars().all(|c| (' '..='~').contains(&c)) || mapped_buf.is_empty() {
                self.warn_id("message rejected: bad DSN envelope ID record");
                self.errs |= stat::BAD;
                return;
            }
            self.dsn_envid = Some(mapped_buf.to_string());
            self.out(t, buf);
            return;
        }
        if mapped_type == rec_type::DSN_RET {
            let v = atoi(mapped_buf);
            if !alldig(mapped_buf) || v == 0 || !(v == 1 || v == 2) {
                let b: String = buf.chars().take(200).collect();
                self.warn_id(&format!("message rejected: bad DSN RET record <{b}>"));
                self.errs |= stat::BAD;
                return;
            }
            self.dsn_ret = v;
            self.out(t, buf);
            return;
        }
        if t == rec_type::WARN {
            if self.flags & FLAG_WARN_SEEN == 0 {
                self.flags |= FLAG_WARN_SEEN;
                self.out(t, buf);
            }
            return;
        }
        if t == rec_type::VERP {
            if self.verp_delims.is_none() {
                if self.sender.as_deref().unwrap_or("").is_empty() {
                    self.warn_id("ignoring VERP request for null sender");
                } else if !verp_delims_ok(buf) {
                    let b: String = buf.chars().take(100).collect();
                    self.warn_id(&format!("ignoring bad VERP request: \"{b}\""));
                } else {
                    self.verp_delims = Some(buf.to_string());
                    self.out(t, buf);
                }
            }
            return;
        }
        if t == rec_type::ATTR {
            let (n, v) = attr_nv.unwrap_or_default();
            if self.attr.len() >= self.cf.qattr_count_limit {
                let lim = self.cf.qattr_count_limit;
                self.warn_id(&format!(
                    "message rejected: attribute count exceeds limit {lim}"
                ));
                self.errs |= stat::BAD;
                return;
            }
            if n == "rewrite_context" {
                if v == "local" {
                    self.hdr_rewrite_context = Some(Context::Local);
                } else if v == "remote" {
                    self.hdr_rewrite_context = if self.cf.rewrite.remote_domain.is_empty() {
                        None
                    } else {
                        Some(Context::Remote)
                    };
                } else {
                    let b: String = v.chars().take(100).collect();
                    self.warn_id(&format!("message rejected: bad rewriting context: {b}"));
                    self.errs |= stat::BAD;
                    return;
                }
            }
            if n == "trace_flags" {
                if !alldig(v) {
                    let b: String = buf.chars().take(200).collect();
                    self.warn_id(&format!("message rejected: bad TFLAG record <{b}>"));
                    self.errs |= stat::BAD;
                    return;
                }
                if self.tflags == 0 {
                    self.tflags = atoi(v);
                }
            }
            self.attr_update(n, v);
            self.out(t, buf);
            return;
        }
        self.out(t, buf);
    }

    fn rcpt_record(&mut self, buf: &str) {
        if self.sender.is_none() {
            self.warn_id("message rejected: envelope recipient precedes sender");
            self.errs |= stat::BAD;
            return;
        }
        if self.orig_rcpt.is_none() {
            self.orig_rcpt = Some(buf.to_string());
        }
        self.addr_recipient(buf);
        self.orig_rcpt = None;
        self.dsn_orcpt = None;
        self.dsn_notify = 0;
    }

    fn extracted(&mut self, t: u8, buf: &str) {
        let mut t = t;
        let mut buf = buf.to_string();
        if t == rec_type::FLGS {
            let extra = atoi(&buf) as u32;
            if extra & !flag::MASK_EXTRA != 0 {
                self.warn_id(&format!("ignoring bad extra flags: 0x{extra:x}"));
            } else {
                self.flags |= extra;
            }
            return;
        }
        if !rec_type::in_set(rec_type::EXTRACT, t) {
            self.warn_id(&format!(
                "message rejected: unexpected record type {t} in extracted envelope"
            ));
            self.errs |= stat::BAD;
            return;
        }
        if t == rec_type::ATTR {
            let mapped = match split_nameval(&buf) {
                Err(e) => {
                    let b: String = buf.chars().take(100).collect();
                    self.warn_id(&format!("message rejected: malformed attribute: {e}: {b}"));
                    self.errs |= stat::BAD;
                    return;
                }
                Ok((n, v)) => {
                    if v.is_empty() {
                        self.warn_id(&format!(
                            "spurious null attribute value for \"{n}\" -- ignored"
                        ));
                        return;
                    }
                    rec_attr_map(n).map(|m| (m, v.to_string()))
                }
            };
            if let Some((m, v)) = mapped {
                buf = v;
                t = m;
            }
        }
        if self.flags & FLAG_INRCPT == 0 && rec_type::in_set(rec_type::EXT_RECIPIENT, t) {
            if let Some(f) = self.filter.clone() {
                self.out(rec_type::FILT, &f);
            }
            if let Some(r) = self.redirect.clone() {
                self.out(rec_type::RDR, &r);
            }
            if let Some(e) = self.attr_find("encoding").map(|s| s.to_string()) {
                self.out(rec_type::ATTR, &format!("encoding={e}"));
            }
            self.flags |= FLAG_INRCPT;
        }
        if t == rec_type::RCPT {
            self.rcpt_record(&buf);
            return;
        }
        if t == rec_type::DONE || t == rec_type::DRCP {
            self.orig_rcpt = None;
            self.dsn_orcpt = None;
            self.dsn_notify = 0;
            return;
        }
        if t == rec_type::DSN_ORCPT {
            if let Some(o) = self.dsn_orcpt.take() {
                let o: String = o.chars().take(200).collect();
                self.warn_id(&format!(
                    "ignoring out-of-order DSN original recipient record <{o}>"
                ));
            }
            self.dsn_orcpt = Some(buf);
            return;
        }
        if t == rec_type::DSN_NOTIFY {
            if self.dsn_notify != 0 {
                let n = self.dsn_notify;
                self.warn_id(&format!("ignoring out-of-order DSN notify record <{n}>"));
                self.dsn_notify = 0;
            }
            let v = atoi(&buf);
            if !alldig(&buf) || v == 0 || !dsn_notify_ok(v) {
                let b: String = buf.chars().take(200).collect();
                self.warn_id(&format!("ignoring malformed dsn notify record <{b}>"));
            } else {
                self.dsn_notify = v;
                self.qmgr_opts |= (v as i64) << 1;
            }
            return;
        }
        if t == rec_type::ORCP {
            if self.orig_rcpt.is_some() {
                let b: String = buf.chars().take(200).collect();
                self.warn_id(&format!(
                    "ignoring out-of-order original recipient record <{b}>"
                ));
            }
            self.orig_rcpt = Some(buf);
            return;
        }
        if t == rec_type::END {
            self.flags &= !FLAG_INRCPT;
            self.flags |= FLAG_END_SEEN;
            self.extracted_finish();
            self.phase = Phase::Done;
            return;
        }
        if self.flags & FLAG_INRCPT != 0 {
            self.qmgr_opts |= 1;
        }
        self.out(t, &buf);
    }

    fn extracted_finish(&mut self) {
        if self.flags & flag::BCC_OK != 0 && self.recip.is_some() && !self.cf.always_bcc.is_empty()
        {
            let b = self.cf.always_bcc.clone();
            self.addr_bcc(&b);
        }
        if !self.hbc_rcpt.is_empty() {
            let list = std::mem::take(&mut self.hbc_rcpt);
            if self.out_ok() && self.recip.is_some() {
                for b in list {
                    self.addr_bcc(&b);
                }
            }
        }
        self.out(rec_type::END, "");
    }

    // ------------------------------------------------------------ addresses

    /// cleanup_rewrite_internal in the local context.
    pub(super) fn rewrite_internal(&self, ctx: Context, addr: &str) -> String {
        unquote(&rewrite_clnt::rewrite_external(
            &self.cf.rewrite,
            ctx,
            &quote(addr),
        ))
    }

    fn canon_internal(&mut self, addr: &mut String, which: u8) {
        // which: 0 common, 1 sender, 2 recipient
        let ext = quote(addr);
        let mut a = ext;
        self.map11_external(
            &mut a,
            which,
            self.cf.ext_prop_mask & EXT_PROP_CANONICAL != 0,
        );
        *addr = unquote(&a);
    }

    /// cleanup_map11_external: one-to-one table rewriting, at most 10
    /// rounds. Returns whether the address changed.
    pub(super) fn map11_external(&mut self, addr: &mut String, which: u8, propagate: bool) -> bool {
        let mut did = false;
        for _ in 0..10 {
            let mut warns = Vec::new();
            let fc = self.cf.find.clone();
            let rc = self.cf.rewrite.clone();
            let maps = match which {
                0 => self.cf.comm_canon.as_mut(),
                1 => self.cf.send_canon.as_mut(),
                _ => self.cf.rcpt_canon.as_mut(),
            };
            let Some(maps) = maps else {
                return did;
            };
            let title = maps.title.clone();
            let r = addr_map(maps, addr, true, propagate, &fc, &rc, &mut |w| {
                warns.push(w.to_string())
            });
            let err = maps.error;
            for w in warns {
                self.log.warn("cleanup", &w);
            }
            match r {
                Some(v) => {
                    if v.len() > 1 {
                        let id = self.queue_id.clone();
                        self.log.warn(
                            "cleanup",
                            &format!("{id}: multi-valued {title} entry for {addr}"),
                        );
                    }
                    let new = v.into_iter().next().unwrap_or_default();
                    did |= new != *addr;
                    let same = new.to_lowercase() == addr.to_lowercase();
                    *addr = new;
                    if same {
                        return did;
                    }
                }
                None => {
                    if err {
                        let id = self.queue_id.clone();
                        self.log.warn("cleanup", &format!(
                            "{id}: {title} map lookup problem for {addr} -- message not accepted, try again later"
                        ));
                        self.errs |= stat::WRITE;
                    }
                    return did;
                }
            }
        }
        let id = self.queue_id.clone();
        let title = match which {
            0 => "canonical_maps",
            1 => "sender_canonical_maps",
            _ => "recipient_canonical_maps",
        };
        self.log.warn(
            "cleanup",
            &format!("{id}: unreasonable {title} map nesting for {addr} -- message not accepted, try again later"),
        );
        did
    }

    /// cleanup_masquerade_external. Returns whether the address changed.
    pub(super) fn masquerade_external(&mut self, addr: &mut String) -> bool {
        let Some(domains) = self.cf.masq_domains.clone() else {
            return false;
        };
        let Some(at) = addr.rfind('@') else {
            return false;
        };
        let name = &addr[..at];
        let domain = addr[at + 1..].to_lowercase();
        if self
            .cf
            .masq_exceptions
            .iter()
            .any(|e| e.eq_ignore_ascii_case(name))
        {
            return false;
        }
        for m in &domains {
            let mut masq = m.as_str();
            let mut truncate = true;
            while let Some(r) = masq.strip_prefix('!') {
                truncate = !truncate;
                masq = r;
            }
            let masq = masq.to_lowercase();
            if masq.is_empty() {
                continue;
            }
            if masq.len() == domain.len() {
                if masq == domain {
                    break;
                }
            } else if masq.len() < domain.len() {
                let parent = &domain[domain.len() - masq.len()..];
                if domain.as_bytes()[domain.len() - masq.len() - 1] == b'.' && parent == masq {
                    if truncate {
                        addr.truncate(at + 1);
                        addr.push_str(&masq);
                        return true;
                    }
                    break;
                }
            }
        }
        false
    }

    fn masquerade_internal(&mut self, addr: &mut String) {
        let mut q = quote(addr);
        self.masquerade_external(&mut q);
        *addr = unquote(&q);
    }

    fn addr_sender(&mut self, buf: &str) {
        let mut clean = self.rewrite_internal(Context::Local, buf);
        if clean.len() > 14 && clean[..14].eq_ignore_ascii_case("MAILER-DAEMON@") {
            let md = self.rewrite_internal(Context::Local, "MAILER-DAEMON");
            if clean.eq_ignore_ascii_case(&md) {
                clean.clear();
            }
        }
        if self.flags & flag::MAP_OK != 0 {
            if self.cf.send_canon.is_some() && self.cf.send_canon_flags & CANON_ENV_FROM != 0 {
                self.canon_internal(&mut clean, 1);
            }
            if self.cf.comm_canon.is_some() && self.cf.comm_canon_flags & CANON_ENV_FROM != 0 {
                self.canon_internal(&mut clean, 0);
            }
            if self.cf.masq_domains.is_some() && self.cf.masq_flags & CANON_ENV_FROM != 0 {
                self.masquerade_internal(&mut clean);
            }
        }
        if self.cf.smtputf8_enable && !clean.is_empty() && !clean.is_ascii() && valid_utf8(&clean) {
            self.smtputf8 |= SMTPUTF8_SENDER;
            if self.flags & flag::AUTOUTF8 != 0 {
                self.smtputf8 |= SMTPUTF8_REQUESTED;
            }
        }
        self.out(rec_type::FROM, &clean);
        self.sender = Some(clean.clone());
        if self.flags & flag::BCC_OK != 0 && !clean.is_empty() && self.cf.send_bcc.is_some() {
            self.bcc_lookup(&clean, true);
        }
    }

    fn bcc_lookup(&mut self, addr: &str, sender: bool) {
        let fc = self.cf.find.clone();
        let mut warns = Vec::new();
        let maps = if sender {
            self.cf.send_bcc.as_mut()
        } else {
            self.cf.rcpt_bcc.as_mut()
        };
        let Some(maps) = maps else {
            return;
        };
        let r = interim::find_addr(maps, addr, &fc, &mut |w| warns.push(w.to_string()));
        let err = maps.error;
        let title = maps.title.clone();
        for w in warns {
            self.log.warn("cleanup", &w);
        }
        match r {
            Some((v, _)) => {
                let v = unquote(&v);
                self.addr_bcc(&v);
            }
            None if err => {
                let id = self.queue_id.clone();
                self.log.warn(
                    "cleanup",
                    &format!(
                        "{id}: {title} map lookup problem -- message not accepted, try again later"
                    ),
                );
                self.errs |= stat::WRITE;
            }
            None => {}
        }
    }

    fn rcpt_rewrite(&mut self, clean: &mut String) {
        if self.flags & flag::MAP_OK != 0 {
            if self.cf.rcpt_canon.is_some() && self.cf.rcpt_canon_flags & CANON_ENV_RCPT != 0 {
                self.canon_internal(clean, 2);
            }
            if self.cf.comm_canon.is_some() && self.cf.comm_canon_flags & CANON_ENV_RCPT != 0 {
                self.canon_internal(clean, 0);
            }
            if self.cf.masq_domains.is_some() && self.cf.masq_flags & CANON_ENV_RCPT != 0 {
                self.masquerade_internal(clean);
            }
        }
        if self.cf.smtputf8_enable
            && !clean.is_empty()
            && !clean.is_ascii()
            && valid_utf8(clean)
            && self.flags & flag::AUTOUTF8 != 0
        {
            self.smtputf8 |= SMTPUTF8_REQUESTED;
        }
    }

    fn addr_recipient(&mut self, buf: &str) {
        let input = if buf.is_empty() {
            self.cf.empty_addr.clone()
        } else {
            buf.to_string()
        };
        let mut clean = self.rewrite_internal(Context::Local, &input);
        self.rcpt_rewrite(&mut clean);
        if self.dsn_orcpt.is_none() && !clean.is_empty() {
            let kind = if !clean.is_ascii() && self.smtputf8 & SMTPUTF8_REQUESTED != 0 {
                "utf-8"
            } else {
                "rfc822"
            };
            self.dsn_orcpt = Some(format!("{kind};{clean}"));
        }
        let dsn_orcpt = self.dsn_orcpt.clone();
        let orcpt = self.orig_rcpt.clone().unwrap_or_default();
        self.out_recipient(dsn_orcpt.as_deref(), self.dsn_notify, &orcpt, &clean);
        self.recip = Some(clean.clone());
        if self.flags & flag::BCC_OK != 0 && !clean.is_empty() && self.cf.rcpt_bcc.is_some() {
            self.bcc_lookup(&clean, false);
        }
    }

    /// cleanup_addr_bcc: an automatic BCC recipient, no DSN.
    pub(super) fn addr_bcc(&mut self, bcc: &str) {
        let mut clean = self.rewrite_internal(Context::Local, bcc);
        self.rcpt_rewrite(&mut clean);
        self.out_recipient(None, DSN_NOTIFY_NEVER, &clean.clone(), &clean);
    }

    fn been_here(&mut self, key: String) -> bool {
        if self.dups.contains(&key) {
            return true;
        }
        if self.cf.dup_filter_limit == 0 || self.dups.len() < self.cf.dup_filter_limit {
            self.dups.insert(key);
        }
        false
    }

    fn dup_key(&self, dsn_orcpt: &str, notify: i32, orcpt: &str, recip: &str) -> String {
        let mut key = String::with_capacity(dsn_orcpt.len() + orcpt.len() + recip.len() + 16);
        if self.cf.enable_orcpt {
            key.push_str(dsn_orcpt);
            key.push('\n');
            if notify >= 0 {
                key.push_str(crate::util::stringops::decimal(&mut [0; 10], notify as u32));
            } else {
                key.push_str(&notify.to_string());
            }
            key.push('\n');
            key.push_str(orcpt);
            key.push('\n');
        }
        key.push_str(recip);
        if key.is_ascii() {
            key.make_ascii_lowercase();
            key
        } else {
            key.to_lowercase()
        }
    }

    fn write_rcpt(&mut self, dsn_orcpt: &str, notify: i32, orcpt: &str, recip: &str) {
        if notify != 0 {
            self.out(rec_type::ATTR, &format!("notify_flags={notify}"));
        }
        if !dsn_orcpt.is_empty() {
            let mut a = String::with_capacity(14 + dsn_orcpt.len());
            a.push_str("dsn_orig_rcpt=");
            a.push_str(dsn_orcpt);
            self.out(rec_type::ATTR, &a);
        }
        self.out(rec_type::ORCP, orcpt);
        self.out(rec_type::RCPT, recip);
        self.rcpt_count += 1;
    }

    /// cleanup_out_recipient: duplicate filter and virtual alias expansion.
    fn out_recipient(&mut self, dsn_orcpt: Option<&str>, notify: i32, orcpt: &str, recip: &str) {
        let dsn_orcpt = dsn_orcpt.unwrap_or("").to_string();
        if self.flags & flag::MAP_OK == 0 || self.cf.virt_alias.is_none() {
            let key = self.dup_key(&dsn_orcpt, notify, orcpt, recip);
            if !self.been_here(key) {
                self.write_rcpt(&dsn_orcpt, notify, orcpt, recip);
            }
            return;
        }
        let list = self.map1n_internal(recip);
        let mut notify = notify;
        if notify & DSN_NOTIFY_SUCCESS != 0 && (list.len() > 1 || list[0] != recip) {
            // TODO(trace): Postfix appends an "expanded" record to the
            // trace logfile here (DSN SUCCESS for alias expansion).
            notify = if notify == DSN_NOTIFY_SUCCESS {
                DSN_NOTIFY_NEVER
            } else {
                notify & !DSN_NOTIFY_SUCCESS
            };
        }
        for r in list {
            let key = self.dup_key(&dsn_orcpt, notify, orcpt, &r);
            if !self.been_here(key) {
                self.write_rcpt(&dsn_orcpt, notify, orcpt, &r);
            }
        }
    }

    /// cleanup_map1n_internal: virtual alias expansion with the recursion,
    /// expansion and address length limits.
    fn map1n_internal(&mut self, addr: &str) -> Vec<String> {
        let mut argv = vec![addr.to_string()];
        let mut been: HashSet<String> = HashSet::new();
        let propagate = self.cf.ext_prop_mask & super::config::EXT_PROP_VIRTUAL != 0;
        let fc = self.cf.find.clone();
        let rc = self.cf.rewrite.clone();
        let mut arg = 0;
        let fail = |s: &mut Session, text: String, bits: u32| -> Vec<String> {
            s.log.warn("cleanup", &text);
            s.errs |= bits;
            s.reason = Some("4.6.0 Alias expansion error".into());
            vec![addr.to_string()]
        };
        while arg < argv.len() {
            let title = self
                .cf
                .virt_alias
                .as_ref()
                .map(|m| m.title.clone())
                .unwrap_or_default();
            if argv.len() > self.cf.virt_expan_limit {
                let id = self.queue_id.clone();
                return fail(
                    self,
                    format!(
                        "{id}: unreasonable {title} map expansion size for {addr} -- message not accepted, try again later"
                    ),
                    stat::DEFER,
                );
            }
            let mut count = 0;
            loop {
                if been.contains(&argv[arg].to_lowercase()) {
                    break;
                }
                if count >= self.cf.virt_recur_limit {
                    let id = self.queue_id.clone();
                    return fail(
                        self,
                        format!(
                            "{id}: unreasonable {title} map nesting for {addr} -- message not accepted, try again later"
                        ),
                        stat::DEFER,
                    );
                }
                count += 1;
                let mut warns = Vec::new();
                let Some(maps) = self.cf.virt_alias.as_mut() else {
                    break;
                };
                let r = addr_map(maps, &argv[arg], false, propagate, &fc, &rc, &mut |w| {
                    warns.push(w.to_string())
                });
                let err = maps.error;
                for w in warns {
                    self.log.warn("cleanup", &w);
                }
                match r {
                    Some(lookup) => {
                        let saved = argv[arg].clone();
                        for (i, l) in lookup.iter().enumerate() {
                            if l.len() > self.cf.virt_addrlen_limit {
                                let id = self.queue_id.clone();
                                let l: String = l.chars().take(300).collect();
                                return fail(
                                    self,
                                    format!(
                                        "{id}: unreasonable {title} result {l}... -- message not accepted, try again later"
                                    ),
                                    stat::DEFER,
                                );
                            }
                            if i == 0 {
                                argv[arg] = l.clone();
                            } else {
                                argv.push(l.clone());
                            }
                            if saved.to_lowercase() == l.to_lowercase() {
                                been.insert(saved.to_lowercase());
                            }
                        }
                    }
                    None => {
                        if err {
                            let id = self.queue_id.clone();
                            return fail(
                                self,
                                format!(
                                    "{id}: {title} map lookup problem for {addr} -- message not accepted, try again later"
                                ),
                                stat::WRITE,
                            );
                        }
                        break;
                    }
                }
            }
            arg += 1;
        }
        argv
    }

    // ------------------------------------------------------------ finish

    /// cleanup_final: rewrite the SIZE record with the real values.
    fn finalize_size(&mut self) {
        let fields = [
            self.xtra_offset - self.data_offset,
            self.data_offset,
            self.rcpt_count,
            self.qmgr_opts,
            self.cont_length,
            self.smtputf8,
        ];
        let Some(dst) = &mut self.dst else {
            return;
        };
        // pwrite(2) at offset 0: the file position stays at the end, so
        // neither a seek to the start nor one back is needed.
        let r = dst.w.flush().and_then(|_| {
            use std::os::unix::fs::FileExt;
            let mut rec = Vec::with_capacity(128);
            record::rec_put_size(&mut rec, fields)?;
            dst.w.get_ref().write_all_at(&rec, 0)
        });
        if let Err(e) = r {
            let id = self.queue_id.clone();
            self.log.warn(
                "cleanup",
                &format!("{id}: write queue file: {}", record::errtext(&e)),
            );
            self.errs |= stat::WRITE;
        }
    }

    /// cleanup_flush: finish the queue file (or remove it) and return the
    /// status bits (0: the message is safely queued).
    pub fn flush(&mut self, bouncer: &mut dyn super::Bouncer) -> u32 {
        if self.out_ok() {
            if self.recip.is_none() {
                self.errs |= stat::RCPT;
            }
            if self.flags & FLAG_END_SEEN == 0 {
                self.errs |= stat::BAD;
            }
        }
        if self.flags & flag::DISCARD != 0 {
            self.errs = 0;
        }
        if self.errs & stat::SIZE != 0 && !self.size_warned {
            // The final flush of the stream buffer meets the limit.
            self.size_warned = true;
            let id = self.queue_id.clone();
            self.log
                .warn("cleanup", &format!("{id}: queue file size limit exceeded"));
        }
        if self.out_ok() {
            self.finalize_size();
        }
        let can_bounce = self.errs & stat::MASK_CANT_BOUNCE == 0
            && self.sender.is_some()
            && self.flags & flag::BOUNCE != 0;
        if self.errs != 0 && can_bounce {
            self.bounce(bouncer);
        }
        let mut dst = self.dst.take();
        if self.errs == 0 && self.flags & flag::DISCARD == 0 {
            let mut extra = 0;
            if self.flags & flag::HOLD != 0 {
                match self
                    .cf
                    .queue
                    .rename(&self.queue_id, &self.queue_name, mail_queue::HOLD)
                {
                    Ok(()) => {
                        self.queue_name = mail_queue::HOLD.into();
                        self.path = self.cf.queue.path(mail_queue::HOLD, &self.queue_id);
                    }
                    Err(e) => {
                        let id = self.queue_id.clone();
                        self.log.warn(
                            "cleanup",
                            &format!("{id}: rename to hold queue: {}", record::errtext(&e)),
                        );
                        self.errs |= stat::WRITE;
                    }
                }
                extra = 0;
            }
            if self.errs == 0
                && let Some(d) = dst.as_mut()
            {
                let r =
                    d.w.flush()
                        .and_then(|_| mail_queue::finish(d.w.get_ref(), extra));
                if let Err(e) = r {
                    let id = self.queue_id.clone();
                    self.log.warn(
                        "cleanup",
                        &format!("{id}: write queue file: {}", record::errtext(&e)),
                    );
                    self.errs |= stat::WRITE;
                }
            }
        }
        drop(dst);
        // A message queued in incoming/ (not held, not discarded): ask the
        // queue manager to look, as Postfix's cleanup does.
        if self.errs == 0
            && self.flags & (flag::DISCARD | flag::HOLD) == 0
            && self.queue_name == mail_queue::INCOMING
        {
            self.cf.queue.trigger(&self.cf.queue_service, b'W');
        }
        if (self.errs != 0 || self.flags & flag::DISCARD != 0)
            && let Err(e) = self.cf.queue.remove(&self.queue_name, &self.queue_id)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            let p = self.path.clone();
            self.log
                .warn("cleanup", &format!("remove {p}: {}", record::errtext(&e)));
        }
        self.phase = Phase::Done;
        self.errs
    }

    /// Abandon the message: remove the queue file (the client went away).
    pub fn abort(&mut self) {
        if self.errs & stat::SIZE != 0 && !self.size_warned {
            self.size_warned = true;
            self.log.warn("cleanup", "mail_stream_cleanup: close error");
        }
        self.dst = None;
        let _ = self.cf.queue.remove(&self.queue_name, &self.queue_id);
        self.phase = Phase::Done;
    }

    /// cleanup_bounce: hand every recipient to the bounce service; on
    /// success the message is discarded, else the error is a write error.
    fn bounce(&mut self, bouncer: &mut dyn super::Bouncer) {
        let (status, text) = match &self.reason {
            Some(r) => super::dsn_split("5.0.0", r),
            None => {
                let d = super::stat_detail(self.errs);
                (d.1.to_string(), d.2.to_string())
            }
        };
        let rcpts = self.recipients_in_file();
        let (nsec, nusec) = now();
        let delay = format_tv(nsec - self.arrival.0, nusec - self.arrival.1);
        for (orig, rcpt) in &rcpts {
            let mut line = format!("{}: to=<{rcpt}>", self.queue_id);
            if !orig.is_empty() && orig.to_lowercase() != rcpt.to_lowercase() {
                line.push_str(&format!(", orig_to=<{orig}>"));
            }
            line.push_str(&format!(
                ", relay=none, delay={delay}, delays={delay}/0/0/0, dsn={status}, status=bounced ({text})"
            ));
            self.log.info("cleanup", &line);
        }
        let ok = bouncer.bounce(&super::BounceRequest {
            recipients: rcpts,
            queue_id: self.queue_id.clone(),
            queue_name: self.queue_name.clone(),
            sender: self.sender.clone().unwrap_or_default(),
            status,
            text,
            dsn_envid: self.dsn_envid.clone().unwrap_or_default(),
            dsn_ret: if self.errs & (stat::CONT | stat::SIZE) != 0 {
                2
            } else {
                self.dsn_ret
            },
            encoding: self.attr_find("encoding").unwrap_or("").to_string(),
            smtputf8: self.smtputf8,
            verp: if self.cf.verp_bounce_off {
                None
            } else {
                self.verp_delims.clone()
            },
        });
        if ok {
            self.errs = 0;
            self.flags |= flag::DISCARD;
        } else {
            let id = self.queue_id.clone();
            self.log
                .warn("cleanup", &format!("{id}: bounce message failure"));
            self.errs = stat::WRITE;
        }
    }
}

impl Session<'_> {
    /// The (original, final) recipients written so far, read back from the
    /// queue file as cleanup_bounce does; ("", "unknown") when none.
    fn recipients_in_file(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(d) = &mut self.dst {
            let _ = d.w.flush();
        }
        let abs = self.cf.queue.abs_path(&self.queue_name, &self.queue_id);
        if let Ok(f) = File::open(&abs) {
            let mut qs = record::QueueStream::new(f, &self.path);
            qs.collect_warnings();
            let mut buf = Vec::new();
            let mut orig: Option<String> = None;
            while let record::Rec::Type(t) = record::rec_get(&mut qs, &mut buf, 0) {
                if t == rec_type::END {
                    break;
                }
                let text = latin1::decode(&buf);
                match t {
                    rec_type::ORCP => orig = Some(text),
                    rec_type::RCPT => {
                        let o = orig.take().unwrap_or_else(|| text.clone());
                        out.push((o, text));
                    }
                    rec_type::DRCP | rec_type::DONE => orig = None,
                    _ => {}
                }
            }
        }
        if out.is_empty() {
            out.push((String::new(), "unknown".to_string()));
        }
        out
    }
}

/// Postfix's format_tv with two significant digits and a resolution of
/// 10 ms (delay_logging_resolution_limit = 2).
fn format_tv(sec: i64, usec: i64) -> String {
    let (mut sec, mut usec) = (sec, usec);
    while usec < 0 {
        usec += 1_000_000;
        sec -= 1;
    }
    if sec < 0 {
        return "0".into();
    }
    if sec >= 10 {
        return sec.to_string();
    }
    if sec >= 1 {
        let tenth = usec / 100_000;
        return if tenth == 0 {
            sec.to_string()
        } else {
            format!("{sec}.{tenth}")
        };
    }
    let hundredths = usec / 10_000;
    if hundredths == 0 {
        return "0".into();
    }
    let s = format!("0.{hundredths:02}");
    s.trim_end_matches('0').to_string()
}

fn verp_delims_ok(s: &str) -> bool {
    let c: Vec<char> = s.chars().collect();
    c.len() == 2 && c.iter().all(|&x| "-=+".contains(x))
}

/// mail_addr_map_opt: look up an address (external form when `external`,
/// else internal) and return the result list in the same form, with an
/// unmatched extension propagated when asked.
pub(super) fn addr_map(
    maps: &mut interim::Maps,
    address: &str,
    external: bool,
    propagate: bool,
    fc: &interim::FindConf,
    rc: &rewrite_clnt::RewriteConf,
    warn: &mut dyn FnMut(&str),
) -> Option<Vec<String>> {
    let int_addr = if external {
        unquote(address)
    } else {
        address.to_string()
    };
    let (mut string, extension) = interim::find_addr(maps, &int_addr, fc, warn)?;
    if string.starts_with('@') {
        let mut buffer = match int_addr.rfind('@') {
            Some(i) => int_addr[..i].to_string(),
            None => int_addr.clone(),
        };
        if let Some(e) = &extension {
            buffer.truncate(buffer.len().saturating_sub(e.len()));
        }
        buffer.push_str(&string);
        string = quote(&buffer);
    }
    let ext = if propagate {
        extension.as_deref()
    } else {
        None
    };
    let out = crunch(&string, ext, rc, external);
    if out.is_empty() {
        warn(&format!(
            "{} lookup of {address} returns non-address result \"{string}\"",
            maps.title
        ));
        maps.error = true;
        return None;
    }
    Some(out)
}

/// mail_addr_crunch: split a table result into addresses, canonicalise
/// each (local rewriting context), append the extension.
fn crunch(
    string: &str,
    extension: Option<&str>,
    rc: &rewrite_clnt::RewriteConf,
    external: bool,
) -> Vec<String> {
    let s = if string.is_empty() || string == "<>" {
        "\"\""
    } else {
        string
    };
    let items = crate::global::tok822_tree::parse(s, 0);
    let mut out = Vec::new();
    for it in items {
        if let crate::global::tok822_tree::Item::Addr { toks, owned } = it {
            let ext = crate::global::tok822_tree::addr_external(&toks, owned);
            let canon = rewrite_clnt::rewrite_external(rc, Context::Local, &ext);
            let mut int = unquote(&canon);
            if let Some(e) = extension {
                match int.rfind('@') {
                    Some(i) => int.insert_str(i, e),
                    None => int.push_str(e),
                }
            }
            out.push(if external { quote(&int) } else { int });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn size_placeholder_is_six_zero_fields() {
        assert_eq!(
            super::SIZE_PLACEHOLDER,
            crate::global::rec_type::size_payload([0; 6])
        );
    }

    #[test]
    fn split_nameval_cases() {
        use super::split_nameval as f;
        assert_eq!(f("a=b"), Ok(("a", "b")));
        assert_eq!(f("  name \t= value  "), Ok(("name", "value")));
        assert_eq!(f("x="), Ok(("x", "")));
        assert_eq!(f("x=y=z"), Ok(("x", "y=z")));
        assert_eq!(f("   "), Err("missing attribute name"));
        assert_eq!(f(" =v"), Err("missing attribute name"));
        assert_eq!(f("name value"), Err("missing '=' after attribute name"));
        assert_eq!(f("name"), Err("missing '=' after attribute name"));
        assert_eq!(
            f("n\u{e9}=\u{e9}t\u{e9} "),
            Ok(("n\u{e9}", "\u{e9}t\u{e9}"))
        );
    }
}
