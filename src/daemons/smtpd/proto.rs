//! The SMTP protocol engine: bytes from the client in, [`Event`]s (replies,
//! pauses, log lines, close) out. No I/O here: the caller reads with a
//! timeout, feeds [`Session::input`], and calls [`Session::eof`] or
//! [`Session::timeout`] when the client goes away or goes quiet.

use super::anvil_clnt;
use super::check::{Checker, is_header};
use super::conf::Conf;
use super::sink::{self, EndInfo, MailStart, Recipient, RecordKind, Sink, Transaction, stat};
use super::state::{Event, State, cat, error_class};
use super::token::{Token, tokenize};
use crate::global::match_list::{
    FLAG_RETURN, MatchList, match_parent_style, namadr_list, string_list,
};
use crate::util::latin1;
use crate::util::stringops::decimal;
use std::time::{Duration, SystemTime};

/// EHLO_MASK_* bits (global/ehlo_mask.h), in ehlo_mask_table order.
const EHLO_NAMES: &[(&str, u32)] = &[
    ("8BITMIME", 1 << 0),
    ("AUTH", 1 << 5),
    ("ETRN", 1 << 4),
    ("PIPELINING", 1 << 1),
    ("SIZE", 1 << 2),
    ("VERP", 1 << 6),
    ("VRFY", 1 << 3),
    ("XCLIENT", 1 << 8),
    ("XFORWARD", 1 << 9),
    ("STARTTLS", 1 << 7),
    ("ENHANCEDSTATUSCODES", 1 << 10),
    ("DSN", 1 << 11),
    ("SMTPUTF8", 1 << 12),
    ("CHUNKING", 1 << 13),
    ("SILENT-DISCARD", 1 << 15),
];
const M_PIPELINING: u32 = 1 << 1;
const M_SIZE: u32 = 1 << 2;
const M_VRFY: u32 = 1 << 3;
const M_ETRN: u32 = 1 << 4;
const M_XCLIENT: u32 = 1 << 8;
const M_XFORWARD: u32 = 1 << 9;
const M_ESC: u32 = 1 << 10;
const M_DSN: u32 = 1 << 11;
const M_SMTPUTF8: u32 = 1 << 12;
const M_CHUNKING: u32 = 1 << 13;
const M_SILENT: u32 = 1 << 15;

/// Translate smtpd_discard_ehlo_keywords into a mask (unknown names ignored).
pub fn ehlo_mask(words: &str) -> u32 {
    let mut m = 0;
    for w in words
        .split([' ', ',', '\t', '\r', '\n'])
        .filter(|w| !w.is_empty())
    {
        if let Some((_, b)) = EHLO_NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(w)) {
            m |= b;
        }
    }
    m
}

fn str_ehlo_mask(mask: u32) -> String {
    EHLO_NAMES
        .iter()
        .filter(|(_, b)| mask & b != 0)
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The smtpd settings the engine needs.
pub struct Config {
    pub myhostname: String,
    pub banner: String,
    pub mail_name: String,
    pub message_size_limit: u64,
    pub line_limit: usize,
    pub rcpt_limit: u32,
    pub rcpt_overlim: u32,
    pub hard_erlim: u32,
    pub soft_erlim: u32,
    pub err_sleep: Duration,
    pub junk_limit: u32,
    pub disable_vrfy: bool,
    pub ehlo_discard: u32,
    /// smtpd_reject_footer and smtpd_expansion_filter.
    pub reject_footer: String,
    /// queue_minfree and where the queue is (for the free-space check).
    pub queue_minfree: u64,
    pub queue_directory: String,
    pub expansion_filter: String,
    /// smtpd_discard_ehlo_keyword_address_maps: client address -> keywords.
    pub ehlo_discard_maps: Option<crate::global::maps::Maps>,
    pub smtputf8_enable: bool,
    pub helo_required: bool,
    pub delay_reject: bool,
    pub strict_rfc821: bool,
    pub bare_lf_mask: u32,
    pub bare_lf_excl: MatchList,
    pub bare_lf_code: u32,
    pub forbid_unauth_pipe: bool,
    pub noop_cmds: MatchList,
    pub forbid_cmds: MatchList,
    pub forbid_cmds_set: bool,
    pub soft_bounce: bool,
    pub flush_domains: MatchList,
    pub xclient_hosts: MatchList,
    pub xforward_hosts: MatchList,
    pub timeout: Duration,
    /// Client limits (anvil): connection count and rate, message and
    /// recipient rate; 0 is no limit.
    pub cconn_limit: u32,
    pub crate_limit: u32,
    pub cmail_limit: u32,
    pub crcpt_limit: u32,
    /// Is any limit set (then anvil is told about every client)?
    pub anvil: bool,
    /// smtpd_client_event_limit_exceptions.
    pub hogger: MatchList,
    /// The master.cf service name (anvil's ident, the limit warnings).
    pub service: String,
    pub ipc_timeout: Duration,
}

/// Bare-newline flags (smtpd_forbid_bare_newline).
pub const BARE_LF_WANT_STD_EOD: u32 = 1;
pub const BARE_LF_REPLY_REJECT: u32 = 2;

impl Config {
    pub fn from_conf(c: &Conf) -> Config {
        let pdms = c.str("parent_domain_matches_subdomains");
        let bare = c.str("smtpd_forbid_bare_newline");
        let bare_lf_mask = match bare.to_ascii_lowercase().as_str() {
            "normalize" | "yes" => BARE_LF_WANT_STD_EOD,
            "reject" => BARE_LF_WANT_STD_EOD | BARE_LF_REPLY_REJECT,
            "no" => 0,
            _ => crate::global::msg::fatal(&format!(
                "bad parameter value: 'smtpd_forbid_bare_newline = {bare}'"
            )),
        };
        let forbid = c.str("smtpd_forbidden_commands");
        Config {
            myhostname: c.str("myhostname"),
            banner: c.str("smtpd_banner"),
            mail_name: c.str("mail_name"),
            message_size_limit: c.long("message_size_limit"),
            line_limit: {
                let v = c.int("line_length_limit");
                if v < 512 {
                    crate::global::msg::fatal(&format!(
                        "invalid line_length_limit parameter value {v} < 512"
                    ));
                }
                v as usize
            },
            rcpt_limit: c.int("smtpd_recipient_limit"),
            rcpt_overlim: c.int("smtpd_recipient_overshoot_limit"),
            hard_erlim: c.int("smtpd_hard_error_limit"),
            soft_erlim: c.int("smtpd_soft_error_limit"),
            err_sleep: Duration::from_secs(c.time("smtpd_error_sleep_time")),
            junk_limit: c.int("smtpd_junk_command_limit"),
            disable_vrfy: c.bool("disable_vrfy_command"),
            ehlo_discard: ehlo_mask(&c.str("smtpd_discard_ehlo_keywords")),
            reject_footer: c.raw("smtpd_reject_footer"),
            queue_minfree: c.long("queue_minfree"),
            queue_directory: c.str("queue_directory"),
            expansion_filter: latin1::decode(&crate::daemons::cleanup::config::unescape(
                &c.raw("smtpd_expansion_filter"),
            )),
            ehlo_discard_maps: {
                let m = c.str("smtpd_discard_ehlo_keyword_address_maps");
                (!m.trim().is_empty()).then(|| {
                    crate::global::maps::Maps::create(
                        "smtpd_discard_ehlo_keyword_address_maps",
                        &m,
                        crate::global::dict::flags::LOCK,
                    )
                })
            },
            smtputf8_enable: c.bool("smtputf8_enable"),
            helo_required: c.bool("smtpd_helo_required"),
            delay_reject: c.bool("smtpd_delay_reject"),
            strict_rfc821: c.bool("strict_rfc821_envelopes"),
            bare_lf_mask,
            bare_lf_excl: namadr_list(
                "smtpd_forbid_bare_newline_exclusions",
                FLAG_RETURN | match_parent_style(&pdms, "mynetworks"),
                &c.str("smtpd_forbid_bare_newline_exclusions"),
            ),
            bare_lf_code: {
                let v = c.int("smtpd_forbid_bare_newline_reject_code");
                let n = "smtpd_forbid_bare_newline_reject_code";
                if v < 500 {
                    crate::global::msg::fatal(&format!("invalid {n} parameter value {v} < 500"));
                }
                if v > 599 {
                    crate::global::msg::fatal(&format!("invalid {n} parameter value {v} > 599"));
                }
                v
            },
            forbid_unauth_pipe: c.bool("smtpd_forbid_unauth_pipelining"),
            noop_cmds: string_list(
                "smtpd_noop_commands",
                FLAG_RETURN,
                &c.str("smtpd_noop_commands"),
            ),
            forbid_cmds_set: !forbid.trim().is_empty(),
            forbid_cmds: string_list("smtpd_forbidden_commands", FLAG_RETURN, &forbid),
            soft_bounce: c.bool("soft_bounce"),
            flush_domains: crate::global::match_list::domain_list(
                "fast_flush_domains",
                FLAG_RETURN | match_parent_style(&pdms, "fast_flush_domains"),
                &c.str("fast_flush_domains"),
            ),
            xclient_hosts: namadr_list(
                "smtpd_authorized_xclient_hosts",
                FLAG_RETURN,
                &c.str("smtpd_authorized_xclient_hosts"),
            ),
            xforward_hosts: namadr_list(
                "smtpd_authorized_xforward_hosts",
                FLAG_RETURN,
                &c.str("smtpd_authorized_xforward_hosts"),
            ),
            timeout: Duration::from_secs(c.time("smtpd_timeout")),
            cconn_limit: c.int("smtpd_client_connection_count_limit"),
            crate_limit: c.int("smtpd_client_connection_rate_limit"),
            cmail_limit: c.int("smtpd_client_message_rate_limit"),
            crcpt_limit: c.int("smtpd_client_recipient_rate_limit"),
            anvil: [
                "smtpd_client_connection_count_limit",
                "smtpd_client_connection_rate_limit",
                "smtpd_client_message_rate_limit",
                "smtpd_client_recipient_rate_limit",
                "smtpd_client_new_tls_session_rate_limit",
                "smtpd_client_auth_rate_limit",
            ]
            .iter()
            .any(|n| c.int(n) != 0),
            hogger: namadr_list(
                "smtpd_client_event_limit_exceptions",
                FLAG_RETURN | match_parent_style(&pdms, "smtpd_client_event_limit_exceptions"),
                &c.str("smtpd_client_event_limit_exceptions"),
            ),
            service: "smtpd".into(),
            ipc_timeout: Duration::from_secs(c.time("ipc_timeout")),
        }
    }
}

/// Who the client is, as the I/O layer found out.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    pub name: String,
    pub reverse_name: String,
    pub addr: String,
    pub port: String,
    pub server_addr: String,
    pub server_port: String,
    pub name_status: super::state::PeerCode,
    pub reverse_name_status: super::state::PeerCode,
    /// `sendmail -bs`: not a network client.
    pub stand_alone: bool,
}

impl Peer {
    /// The `localhost[127.0.0.1]` peer Postfix assumes for a non-socket.
    pub fn stand_alone() -> Peer {
        Peer {
            name: "localhost".into(),
            reverse_name: "localhost".into(),
            addr: "127.0.0.1".into(),
            port: "unknown".into(),
            server_addr: "127.0.0.1".into(),
            server_port: "unknown".into(),
            stand_alone: true,
            ..Peer::default()
        }
    }
}

// The command table, in smtpd_cmd_table order (it is the order of the
// disconnect statistics).
const CMDS: &[(&str, u32)] = &[
    ("HELO", F_LIMIT | F_LAST),
    ("EHLO", F_LIMIT | F_LAST),
    ("XCLIENT", 0),
    ("XFORWARD", 0),
    ("STARTTLS", 0),
    ("AUTH", 0),
    ("MAIL", 0),
    ("RCPT", 0),
    ("DATA", F_LAST),
    ("BDAT", 0),
    ("RSET", F_LIMIT),
    ("NOOP", F_LIMIT | F_LAST),
    ("VRFY", F_LIMIT | F_LAST),
    ("ETRN", F_LIMIT),
    ("QUIT", 0),
];
const F_LIMIT: u32 = 1;
const F_LAST: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Command,
    Data,
    /// Reading a BDAT chunk: bytes left, LAST, discarding (after an error).
    Bdat {
        left: u64,
        last: bool,
        skip: bool,
    },
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BdatState {
    None,
    Ok,
    Error,
}

/// One SMTP session.
pub struct Session<'a> {
    cfg: &'a mut Config,
    ck: &'a mut Checker,
    sink: &'a mut dyn Sink,
    pub st: State,
    inbuf: super::inbuf::InBuf,
    /// The buffer the next input line is read into.
    line_buf: Vec<u8>,
    mode: Mode,
    tx: Option<Box<dyn Transaction>>,
    counts: [(u32, u32); 16],
    junk_cmds: u32,
    reason: Option<&'static str>,
    hangup: bool,
    access_denied: Option<String>,
    pending_cmd: Option<Vec<u8>>,
    skipping: bool,
    ehlo_discard: u32,
    xclient_allowed: bool,
    xforward_allowed: bool,
    /// What XFORWARD commands set since the last transaction reset.
    xforward: XForward,
    detect_bare_lf: u32,
    got_bare_lf: u32,
    // Message state.
    msg_size: u64,
    act_size: u64,
    encoding: Option<String>,
    dsn_envid: Option<String>,
    dsn_ret: u32,
    arrival: SystemTime,
    err: u32,
    rewrite_context: String,
    /// Do not account the current command (successful XCLIENT).
    skip_account: bool,
    data_first: bool,
    prev_cont: bool,
    prev_got_bare_lf: u32,
    bdat_state: BdatState,
    bdat_line: Vec<u8>,
    bdat_received: u64,
    bdat_chunk: u64,
    skip_reply: Option<String>,
    rcpt_overshoot: u32,
    /// anvil's ident (`service:addr`) when this client is rate-controlled.
    anvil_ident: Option<String>,
}

fn now() -> SystemTime {
    SystemTime::now()
}

fn escape(data: &[u8]) -> String {
    let mut s = String::new();
    for &b in data {
        match b {
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            7 => s.push_str("\\a"),
            8 => s.push_str("\\b"),
            12 => s.push_str("\\f"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            11 => s.push_str("\\v"),
            _ => s.push_str(&format!("\\{b:03o}")),
        }
    }
    s
}

fn alldig(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// XFORWARD attributes (Postfix's SMTPD_XFORWARD_ATTR): the client ones
/// start as "unknown" once any XFORWARD command was accepted; they replace
/// the real client's in the `log_*` queue file attributes only when at least
/// one client attribute (NAME, ADDR, PORT, PROTO, HELO) was forwarded.
#[derive(Debug, Default)]
struct XForward {
    /// Whether an XFORWARD command initialised the attributes.
    active: bool,
    /// Whether a client attribute was forwarded.
    client: bool,
    client_attr: sink::ForwardedClient,
    addr: String,
    ident: Option<String>,
    domain: Option<String>,
}

impl XForward {
    fn preset(&mut self) {
        *self = XForward {
            active: true,
            client: false,
            client_attr: sink::ForwardedClient {
                name: "unknown".into(),
                rfc_addr: "unknown".into(),
                port: "unknown".into(),
                namaddr: "unknown".into(),
                helo: None,
                protocol: "unknown".into(),
            },
            addr: "unknown".into(),
            ident: None,
            domain: None,
        };
    }
}

/// Postfix's neuter(): replace the characters that could confuse headers.
fn xforward_neuter(v: &str) -> String {
    v.chars()
        .map(|c| if " <>()\\\";@".contains(c) { '?' } else { c })
        .collect()
}

/// Postfix's xtext_unquote: `+XX` hex escapes; None on bad syntax.
fn xtext_unquote(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'+' {
            let h = s.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(h, 16).ok()?;
            if !h
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
            {
                return None;
            }
            out.push(v as char);
            i += 3;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    Some(out)
}

fn dsn_notify_mask(s: &str) -> u32 {
    let mut m = 0;
    for w in s.split(',').filter(|w| !w.is_empty()) {
        let bit = match w.to_ascii_uppercase().as_str() {
            "NEVER" => 1,
            "SUCCESS" => 2,
            "FAILURE" => 4,
            "DELAY" => 8,
            _ => return 0,
        };
        m |= bit;
    }
    if m & 1 != 0 && m != 1 { 0 } else { m }
}

impl<'a> Session<'a> {
    pub fn new(
        cfg: &'a mut Config,
        ck: &'a mut Checker,
        sink: &'a mut dyn Sink,
        peer: Peer,
    ) -> Session<'a> {
        let v6 = peer.addr.contains(':');
        let mut st = State {
            namaddr: cat(&[&peer.name, "[", &peer.addr, "]"]),
            rfc_addr: if v6 {
                format!("IPv6:{}", peer.addr)
            } else {
                peer.addr.clone()
            },
            name: peer.name,
            reverse_name: peer.reverse_name,
            addr: peer.addr,
            port: peer.port,
            server_addr: peer.server_addr,
            server_port: peer.server_port,
            addr_family: if v6 { 10 } else { 2 },
            name_status: peer.name_status,
            reverse_name_status: peer.reverse_name_status,
            stand_alone: peer.stand_alone,
            protocol: "SMTP".into(),
            where_: "CONNECT".into(),
            ..State::default()
        };
        if peer.stand_alone {
            st.addr_family = 0;
        }
        let xclient_allowed = !peer.stand_alone && cfg.xclient_hosts.matches(&[&st.name, &st.addr]);
        let xforward_allowed =
            !peer.stand_alone && cfg.xforward_hosts.matches(&[&st.name, &st.addr]);
        let detect_bare_lf = if !peer.stand_alone
            && cfg.bare_lf_mask != 0
            && !cfg.bare_lf_excl.matches(&[&st.name, &st.addr])
        {
            cfg.bare_lf_mask
        } else {
            0
        };
        // The client's address picks the EHLO keywords to suppress.
        let ehlo_discard = match cfg.ehlo_discard_maps.as_mut() {
            Some(m) if !peer.stand_alone => match m.find(&st.addr, 0) {
                Ok(Some(w)) => ehlo_mask(&w),
                _ => cfg.ehlo_discard,
            },
            _ => cfg.ehlo_discard,
        };
        Session {
            cfg,
            ck,
            sink,
            st,
            inbuf: super::inbuf::InBuf::new(),
            line_buf: Vec::new(),
            mode: Mode::Command,
            tx: None,
            counts: [(0, 0); 16],
            junk_cmds: 0,
            reason: None,
            hangup: false,
            access_denied: None,
            pending_cmd: None,
            skipping: false,
            ehlo_discard,
            xclient_allowed,
            xforward_allowed,
            xforward: XForward::default(),
            detect_bare_lf,
            got_bare_lf: 0,
            msg_size: 0,
            act_size: 0,
            encoding: None,
            dsn_envid: None,
            dsn_ret: 0,
            arrival: now(),
            err: 0,
            rewrite_context: "remote".into(),
            data_first: true,
            prev_cont: false,
            prev_got_bare_lf: 0,
            bdat_state: BdatState::None,
            bdat_line: Vec::new(),
            bdat_received: 0,
            bdat_chunk: 0,
            skip_reply: None,
            rcpt_overshoot: 0,
            skip_account: false,
            anvil_ident: None,
        }
    }

    /// Tell anvil about a message/recipient event; the rate it reports.
    fn anvil_rate(&mut self, what: &str) -> Option<u32> {
        let ident = self.anvil_ident.clone()?;
        let mut warns = Vec::new();
        let r = anvil_clnt::with(self.cfg.ipc_timeout, |a| {
            a.rate(what, &ident, &mut |w| warns.push(w))
        });
        for w in warns {
            self.st.warn(w);
        }
        r
    }

    /// smtpd_client_recipient_rate_limit (RCPT and VRFY).
    fn rcpt_rate_exceeded(&mut self) -> bool {
        if self.cfg.crcpt_limit > 0
            && let Some(rate) = self.anvil_rate("recipient")
            && rate > self.cfg.crcpt_limit
        {
            self.st.error_mask |= error_class::POLICY;
            let (na, svc) = (self.st.namaddr.clone(), self.cfg.service.clone());
            self.st.warn(format!(
                "Recipient address rate limit exceeded: {rate} from {na} for service {svc}"
            ));
            let t = format!("450 4.7.1 Error: too many recipients from {}", self.st.addr);
            self.reply(&t);
            return true;
        }
        false
    }

    fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.st.events)
    }

    /// Is the session over?
    pub fn closed(&self) -> bool {
        self.mode == Mode::Closed
    }

    /// Send a reply (Postfix's smtpd_chat_reply).
    fn reply(&mut self, text: &str) {
        if self.st.error_count >= self.cfg.soft_erlim && !self.cfg.err_sleep.is_zero() {
            self.st.events.push(Event::Sleep(self.cfg.err_sleep));
        }
        let full;
        let text = if (text.starts_with('4') || text.starts_with('5'))
            && !self.cfg.reject_footer.is_empty()
        {
            full = self.with_footer(text);
            full.as_str()
        } else {
            text
        };
        let mut b: Vec<u8> = Vec::with_capacity(text.len() + 2);
        for line in text.split("\r\n") {
            let start = b.len();
            latin1::encode_into(line, &mut b);
            let l = &mut b[start..];
            if self.cfg.soft_bounce && l.first() == Some(&b'5') {
                l[0] = b'4';
                if l.get(4) == Some(&b'5') {
                    l[4] = b'4';
                }
            }
            b.extend_from_slice(b"\r\n");
        }
        let hang = b.starts_with(b"421") || b.starts_with(b"521");
        self.st.events.push(Event::Reply(b));
        if hang {
            self.hangup = true;
        }
    }

    /// Postfix's smtpd_check_queue: is there room in the queue file system
    /// for queue_minfree and 1.5 times message_size_limit?
    fn check_queue(&mut self) -> Option<String> {
        let (bsize, bfree) =
            crate::sys::proc::fsspace(&self.cfg.queue_directory).unwrap_or_else(|e| {
                crate::global::msg::fatal(&format!("statfs {}: {e}", self.cfg.queue_directory))
            });
        let bsize = bsize.max(1);
        let blocks = |x: u64| x / bsize;
        if blocks(self.cfg.queue_minfree) >= bfree
            || blocks(self.cfg.message_size_limit) as f64 >= bfree as f64 / 1.5
        {
            let t = "452 4.3.1 Insufficient system storage".to_string();
            self.st.error_mask |= error_class::RESOURCE;
            self.st.log_whatsup("reject", &t);
            self.st.log(format!(
                "warning: not enough free space in mail queue: {} bytes < 1.5*message size limit",
                bfree.saturating_mul(bsize)
            ));
            return Some(t);
        }
        None
    }

    /// Postfix's smtp_reply_footer: the reply with smtpd_reject_footer
    /// appended (`\n` starts a new line, a leading `\c` continues the
    /// last one), each added line with the reply code and status code.
    fn with_footer(&self, text: &str) -> String {
        let b = text.as_bytes();
        if b.len() < 4 || !b[..3].iter().all(u8::is_ascii_digit) || (b[3] != b' ' && b[3] != b'-') {
            return text.to_string();
        }
        let code = &text[..3];
        let rest = &text[4..];
        let dsn: String = {
            let d: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let ok = d.split('.').count() == 3
                && d.split('.').all(|p| !p.is_empty())
                && (d.starts_with('2') || d.starts_with('4') || d.starts_with('5'))
                && rest[d.len()..].starts_with(' ');
            if ok { d } else { String::new() }
        };
        let st = &self.st;
        let myhost = self.cfg.myhostname.clone();
        let mut lookup = |name: &str, _m: crate::global::expand::Mode| -> Option<String> {
            Some(match name {
                "server_name" => myhost.clone(),
                "client" => st.namaddr.clone(),
                "client_port" => st.port.clone(),
                "client_address" => st.addr.clone(),
                "client_name" => st.name.clone(),
                "reverse_client_name" => st.reverse_name.clone(),
                "helo_name" => st.helo_name.clone().unwrap_or_default(),
                _ => return None,
            })
        };
        let mut out = text.to_string();
        let undo = out.len();
        let tmpl = self.cfg.reject_footer.clone();
        let parts: Vec<&str> = tmpl.split("\\n").collect();
        let mut added = false;
        for (i, part) in parts.iter().enumerate() {
            let mut p: &str = part;
            if i == 0 && p.starts_with("\\c") {
                p = &p[2..];
            } else {
                out.push_str("\r\n");
                out.push_str(code);
                out.push(if i + 1 < parts.len() { '-' } else { ' ' });
                if !dsn.is_empty() {
                    out.push_str(&dsn);
                    out.push(' ');
                }
                added = true;
            }
            let st = crate::global::expand::mac_expand(
                &mut out,
                p,
                crate::global::expand::FLAG_APPEND,
                Some(&self.cfg.expansion_filter),
                &mut lookup,
            );
            if st & crate::global::expand::PARSE_ERROR != 0 {
                out.truncate(undo);
                return out;
            }
        }
        if added {
            out.replace_range(3..4, "-");
        }
        out
    }

    /// The connection is up: log it and greet (`pending` is what the client
    /// already sent before the greeting, if anything).
    pub fn start(&mut self, pending: &[u8]) -> Vec<Event> {
        let line = cat(&["connect from ", &self.st.namaddr]);
        self.st.log(line);
        self.inbuf.extend_from_slice(pending);
        if !self.st.stand_alone && !self.inbuf.is_empty() {
            self.flag_ill_pipelining();
            if self.cfg.forbid_unauth_pipe {
                self.reply("554 5.5.0 Error: SMTP protocol synchronization");
                self.finish();
                return self.take_events();
            }
        }
        if !self.st.stand_alone
            && !self.xclient_allowed
            && self.cfg.anvil
            && !self.cfg.hogger.matches(&[&self.st.name, &self.st.addr])
        {
            let ident = cat(&[&self.cfg.service, ":", &self.st.addr]);
            self.anvil_ident = Some(ident.clone());
            let mut warns = Vec::new();
            let r = anvil_clnt::with(self.cfg.ipc_timeout, |a| {
                a.connect(&ident, &mut |w| warns.push(w))
            });
            for w in warns {
                self.st.warn(w);
            }
            if let Some((count, rate)) = r {
                let (na, svc) = (self.st.namaddr.clone(), self.cfg.service.clone());
                let too_many = format!(
                    "421 4.7.0 {} Error: too many connections from {}",
                    self.cfg.myhostname, self.st.addr
                );
                if self.cfg.cconn_limit > 0 && count > self.cfg.cconn_limit {
                    self.st.error_mask |= error_class::POLICY;
                    self.st.warn(format!(
                        "Connection concurrency limit exceeded: {count} from {na} for service {svc}"
                    ));
                    self.reply(&too_many);
                    self.finish();
                    return self.take_events();
                }
                if self.cfg.crate_limit > 0 && rate > self.cfg.crate_limit {
                    self.st.warn(format!(
                        "Connection rate limit exceeded: {rate} from {na} for service {svc}"
                    ));
                    self.reply(&too_many);
                    self.finish();
                    return self.take_events();
                }
            }
        }
        if !self.st.stand_alone && !self.cfg.delay_reject {
            if let Some(err) = self.ck.check_client(&mut self.st) {
                self.st.error_mask |= error_class::POLICY;
                self.access_denied = Some(err.clone());
                self.reply(&err);
                self.st.error_count += 1;
            } else {
                let b = cat(&["220 ", &self.cfg.banner]);
                self.reply(&b);
            }
        } else {
            let b = cat(&["220 ", &self.cfg.banner]);
            self.reply(&b);
        }
        self.run();
        self.take_events()
    }

    /// Bytes from the client.
    pub fn input(&mut self, data: &[u8]) -> Vec<Event> {
        if self.mode != Mode::Closed {
            self.inbuf.extend_from_slice(data);
            self.run();
        }
        self.take_events()
    }

    /// The client closed the connection.
    pub fn eof(&mut self) -> Vec<Event> {
        if self.mode != Mode::Closed {
            self.reason = Some("lost connection");
            self.finish();
        }
        self.take_events()
    }

    /// No input for smtpd_timeout.
    pub fn timeout(&mut self) -> Vec<Event> {
        if self.mode != Mode::Closed {
            self.reason = Some("timeout");
            let t = format!("421 4.4.2 {} Error: timeout exceeded", self.cfg.myhostname);
            self.reply(&t);
            self.finish();
        }
        self.take_events()
    }

    fn flag_ill_pipelining(&mut self) -> bool {
        if self.inbuf.is_empty() {
            return false;
        }
        let n = self.inbuf.len().min(100);
        let text = escape(&self.inbuf[..n]);
        let (w, na) = (self.st.where_.clone(), self.st.namaddr.clone());
        self.st.log(format!(
            "improper command pipelining after {w} from {na}: {text}"
        ));
        self.st.ill_pipelining = true;
        true
    }

    /// End of session: the abnormal-termination line and the statistics.
    fn finish(&mut self) {
        if self.mode == Mode::Closed {
            return;
        }
        if let Some(ident) = self.anvil_ident.take() {
            let mut warns = Vec::new();
            anvil_clnt::with(self.cfg.ipc_timeout, |a| {
                a.disconnect(&ident, &mut |w| warns.push(w))
            });
            for w in warns {
                self.st.warn(w);
            }
        }
        if let Some(reason) = self.reason {
            let w = self.st.where_.clone();
            let na = self.st.namaddr.clone();
            if w == "DATA content" {
                // Postfix counts what it wrote plus what sits unread in its stream
                // buffer; a partial line has already left that buffer.
                let n = self.act_size;
                self.st
                    .log(format!("{reason} after DATA ({n} bytes) from {na}"));
            } else if w == "BDAT content" {
                let n = self.act_size + self.bdat_line.len() as u64;
                self.st
                    .log(format!("{reason} after BDAT ({n} bytes) from {na}"));
            } else if w != "END-OF-MESSAGE" || reason != "lost connection" {
                self.st.log(format!("{reason} after {w} from {na}"));
            }
        }
        self.mail_reset();
        self.rcpt_reset();
        let stats = self.format_stats();
        let line = cat(&["disconnect from ", &self.st.namaddr, &stats]);
        self.st.log(line);
        self.st.events.push(Event::Close);
        self.mode = Mode::Closed;
    }

    fn format_stats(&self) -> String {
        let mut s = String::with_capacity(64);
        let (mut ok, mut total) = (0, 0);
        let num = |s: &mut String, n: u32| s.push_str(decimal(&mut [0; 10], n));
        for (i, (succ, tot)) in self.counts.iter().enumerate() {
            if *tot > 0 {
                s.push(' ');
                match CMDS.get(i) {
                    Some(c) => {
                        for b in c.0.chars() {
                            s.push(b.to_ascii_lowercase());
                        }
                    }
                    None => s.push_str("unknown"),
                }
                s.push('=');
                num(&mut s, *succ);
                if succ != tot {
                    s.push('/');
                    num(&mut s, *tot);
                }
                ok += succ;
                total += tot;
            }
        }
        s.push_str(" commands=");
        num(&mut s, ok);
        if ok != total || total == 0 {
            s.push('/');
            num(&mut s, total);
        }
        s
    }

    // ------------------------------------------------------------ input

    /// Postfix's smtp_get for one line, bounded by `limit`. Returns the
    /// line (CR/LF handling done) and whether it was complete; None when
    /// more input is needed.
    fn get_line(&mut self, limit: usize) -> Option<(Vec<u8>, bool)> {
        let scan = self.inbuf.len().min(limit);
        // The line goes into the buffer that the last content line gave
        // back (no allocation per line of message content).
        let take = |s: &mut Self, n: usize| {
            let mut l = std::mem::take(&mut s.line_buf);
            l.clear();
            l.extend_from_slice(&s.inbuf[..n]);
            s.inbuf.drain(..n);
            l
        };
        let (mut line, complete) =
            if let Some(i) = crate::util::stringops::find_byte(&self.inbuf[..scan], b'\n') {
                (take(self, i + 1), true)
            } else if self.inbuf.len() >= limit {
                if self.inbuf[limit - 1] == b'\r' {
                    if self.inbuf.len() == limit {
                        return None;
                    }
                    if self.inbuf[limit] == b'\n' {
                        let mut l = take(self, limit);
                        l.push(b'\n');
                        self.inbuf.drain(..1);
                        (l, true)
                    } else {
                        (take(self, limit), false)
                    }
                } else {
                    (take(self, limit), false)
                }
            } else {
                return None;
            };
        self.got_bare_lf = 0;
        if complete {
            line.pop();
            if self.detect_bare_lf != 0 {
                if line.last() != Some(&b'\r') {
                    self.got_bare_lf = self.detect_bare_lf;
                } else {
                    line.pop();
                }
            } else {
                while line.last() == Some(&b'\r') {
                    line.pop();
                }
            }
        }
        Some((line, complete))
    }

    fn run(&mut self) {
        loop {
            match self.mode {
                Mode::Closed => return,
                Mode::Command => {
                    if self.hangup {
                        self.finish();
                        return;
                    }
                    if self.st.error_count >= self.cfg.hard_erlim {
                        self.reason = Some("too many errors");
                        self.st.error_mask |= error_class::PROTOCOL;
                        let t = format!("421 4.7.0 {} Error: too many errors", self.cfg.myhostname);
                        self.reply(&t);
                        self.finish();
                        return;
                    }
                    if self.skipping {
                        match crate::util::stringops::find_byte(&self.inbuf, b'\n') {
                            Some(i) => {
                                self.inbuf.drain(..i + 1);
                                self.skipping = false;
                            }
                            None => {
                                self.inbuf.clear();
                                return;
                            }
                        }
                        let line = self.pending_cmd.take().unwrap_or_default();
                        self.command(line);
                        continue;
                    }
                    let limit = self.cfg.line_limit;
                    let Some((line, complete)) = self.get_line(limit) else {
                        return;
                    };
                    if !complete {
                        let na = self.st.namaddr.clone();
                        let head: String = crate::global::msg::printable(
                            &latin1::decode(&line[..line.len().min(30)]),
                            false,
                        );
                        self.st
                            .warn(format!("{na}: request longer than {limit}: {head}..."));
                        self.pending_cmd = Some(line);
                        self.skipping = true;
                        continue;
                    }
                    self.command(line);
                }
                Mode::Data => {
                    let limit = self.cfg.line_limit;
                    let Some((line, complete)) = self.get_line(limit) else {
                        return;
                    };
                    self.data_line(&line, complete);
                    self.line_buf = line;
                }
                Mode::Bdat { .. } => {
                    if !self.bdat_input() {
                        return;
                    }
                }
            }
        }
    }

    // --------------------------------------------------------- commands

    fn command(&mut self, raw: Vec<u8>) {
        if self.got_bare_lf & BARE_LF_REPLY_REJECT != 0 {
            self.st.log_whatsup("reject", "bare <LF> received");
            self.st.error_mask |= error_class::PROTOCOL;
            let t = format!(
                "{} 5.5.2 {} Error: bare <LF> received",
                self.cfg.bare_lf_code, self.cfg.myhostname
            );
            self.reply(&t);
            self.finish();
            return;
        }
        let raw_nul = raw
            .iter()
            .position(|&b| b == 0)
            .map(|i| raw[..i].to_vec())
            .unwrap_or(raw);
        if self.cfg.smtputf8_enable && std::str::from_utf8(&raw_nul).is_err() {
            self.st.error_mask |= error_class::PROTOCOL;
            self.reply("500 5.5.2 Error: bad UTF-8 syntax");
            self.st.error_count += 1;
            return;
        }
        let line = latin1::decode(&raw_nul);
        let argv = tokenize(&line);
        if argv.is_empty() {
            self.st.error_mask |= error_class::PROTOCOL;
            self.reply("500 5.5.2 Error: bad syntax");
            self.st.error_count += 1;
            return;
        }
        let verb = argv[0].text.clone();
        if self.cfg.noop_cmds.matches(&[&verb]) {
            self.reply("250 2.0.0 Ok");
            let j = self.junk_cmds;
            self.junk_cmds += 1;
            if j > self.cfg.junk_limit {
                self.st.error_count += 1;
            }
            return;
        }
        let idx = CMDS.iter().position(|(n, _)| n.eq_ignore_ascii_case(&verb));
        let slot = idx.unwrap_or(15);
        self.counts[slot].1 += 1;
        if idx.is_none() {
            self.st.where_ = "UNKNOWN".into();
            if is_header(&verb)
                || (self.cfg.forbid_cmds_set && self.cfg.forbid_cmds.matches(&[&verb]))
            {
                let na = self.st.namaddr.clone();
                let mut e = escape(&raw_nul);
                e.truncate(100);
                self.st.warn(format!("non-SMTP command from {na}: {e}"));
                self.reply("221 2.7.0 Error: I can break rules, too. Goodbye.");
                self.finish();
                return;
            }
        }
        if let Some(denied) = self.access_denied.clone()
            && idx != Some(14)
        {
            if denied.get(1..3) == Some("21") {
                self.reply(&denied);
                return;
            }
            let t = format!("503 5.7.0 Error: access denied for {}", self.st.namaddr);
            self.reply(&t);
            self.st.error_count += 1;
            return;
        }
        let Some(idx) = idx else {
            self.reply("500 5.5.2 Error: command not recognized");
            self.st.error_mask |= error_class::PROTOCOL;
            self.st.error_count += 1;
            return;
        };
        let (name, flags) = CMDS[idx];
        self.st.where_ = name.to_string();
        if !self.st.stand_alone
            && (!self.st.protocol.eq_ignore_ascii_case("ESMTP") || flags & F_LAST != 0)
            && !self.st.ill_pipelining
            && self.flag_ill_pipelining()
            && self.cfg.forbid_unauth_pipe
        {
            self.reply("554 5.5.0 Error: SMTP protocol synchronization");
            self.finish();
            return;
        }
        let ok = match name {
            "HELO" => self.helo(&argv, false),
            "EHLO" => self.helo(&argv, true),
            "XCLIENT" => self.xclient(&argv),
            "XFORWARD" => self.xforward(&argv),
            "STARTTLS" => self.starttls(&argv),
            "AUTH" => self.auth(),
            "MAIL" => self.mail(&argv),
            "RCPT" => self.rcpt(&argv),
            "DATA" => self.data(&argv),
            "BDAT" => self.bdat(&argv, &line),
            "RSET" => self.rset(&argv),
            "NOOP" => {
                self.reply("250 2.0.0 Ok");
                true
            }
            "VRFY" => self.vrfy(&argv),
            "ETRN" => self.etrn(&argv),
            _ => {
                self.reply("221 2.0.0 Bye");
                true
            }
        };
        // DATA/BDAT finish their accounting when the content is in.
        if matches!(self.mode, Mode::Data | Mode::Bdat { .. }) {
            return;
        }
        if std::mem::take(&mut self.skip_account) {
            // A successful XCLIENT restarts the session (Postfix longjmps
            // past its command accounting): counted as tried, not done.
        } else {
            self.account(idx, ok);
        }
        if name == "QUIT" && self.mode != Mode::Closed {
            self.finish();
        }
    }

    fn account(&mut self, idx: usize, ok: bool) {
        if ok {
            self.counts[idx].0 += 1;
        } else {
            self.st.error_count += 1;
        }
        if CMDS[idx].1 & F_LIMIT != 0 {
            let j = self.junk_cmds;
            self.junk_cmds += 1;
            if j > self.cfg.junk_limit {
                self.st.error_count += 1;
            }
        }
    }

    fn helo_reset(&mut self) {
        self.st.helo_name = None;
    }

    fn mail_reset(&mut self) {
        self.msg_size = 0;
        self.act_size = 0;
        self.st.size = 0;
        self.st.instance.clear();
        if let Some(tx) = self.tx.take() {
            tx.abort();
        }
        self.err = 0;
        self.st.queue_id = None;
        self.st.sender = None;
        self.st.saved_filter = None;
        self.st.saved_redirect = None;
        self.st.saved_bcc.clear();
        self.st.saved_flags = 0;
        self.st.discard = false;
        self.st.prepend.clear();
        self.dsn_envid = None;
        self.bdat_state = BdatState::None;
        self.bdat_line.clear();
        self.st.smtputf8 = false;
        self.xforward = XForward::default();
    }

    fn rcpt_reset(&mut self) {
        self.st.recipient = None;
        self.st.rcpt_count = 0;
        self.rcpt_overshoot = 0;
    }

    fn helo(&mut self, argv: &[Token], ehlo: bool) -> bool {
        if argv.len() < 2 {
            self.st.error_mask |= error_class::PROTOCOL;
            self.reply(if ehlo {
                "501 Syntax: EHLO hostname"
            } else {
                "501 Syntax: HELO hostname"
            });
            return false;
        }
        let arg = argv[1..]
            .iter()
            .map(|t| t.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        if !self.st.stand_alone
            && !self.cfg.delay_reject
            && let Some(err) = self.ck.check_helo(&mut self.st, Some(&arg))
        {
            self.reply(&err);
            return false;
        }
        self.helo_reset();
        self.mail_reset();
        self.rcpt_reset();
        let name: String = crate::global::msg::printable(&arg, true)
            .chars()
            .map(|c| if c == '<' || c == '>' { '?' } else { c })
            .collect();
        self.st.helo_name = Some(name);
        if ehlo {
            self.st.protocol = "ESMTP".into();
        } else if !self.st.protocol.eq_ignore_ascii_case("ESMTP")
            && !self.st.protocol.eq_ignore_ascii_case("SMTP")
        {
            self.st.protocol = "SMTP".into();
        }
        if !ehlo {
            let t = format!("250 {}", self.cfg.myhostname);
            self.reply(&t);
            return true;
        }
        let discard = self.ehlo_discard;
        if discard & M_ESC == 0 && discard != 0 && discard & M_SILENT == 0 {
            self.st.log(format!(
                "discarding EHLO keywords: {}",
                str_ehlo_mask(discard)
            ));
        }
        let mut words = vec![self.cfg.myhostname.clone()];
        if discard & M_PIPELINING == 0 {
            words.push("PIPELINING".into());
        }
        if discard & M_SIZE == 0 {
            if self.cfg.message_size_limit > 0 {
                words.push(format!("SIZE {}", self.cfg.message_size_limit));
            } else {
                words.push("SIZE".into());
            }
        }
        if discard & M_VRFY == 0 && !self.cfg.disable_vrfy {
            words.push("VRFY".into());
        }
        if discard & M_ETRN == 0 {
            words.push("ETRN".into());
        }
        if discard & M_XCLIENT == 0 && self.xclient_allowed {
            words.push(
                "XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT".into(),
            );
        }
        if discard & M_XFORWARD == 0 && self.xforward_allowed {
            words.push("XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT".into());
        }
        if discard & M_ESC == 0 {
            words.push("ENHANCEDSTATUSCODES".into());
        }
        if discard & 1 == 0 {
            words.push("8BITMIME".into());
        }
        if discard & M_DSN == 0 {
            words.push("DSN".into());
        }
        if self.cfg.smtputf8_enable && discard & M_SMTPUTF8 == 0 {
            words.push("SMTPUTF8".into());
        }
        if discard & M_CHUNKING == 0 {
            words.push("CHUNKING".into());
        }
        let n = words.len();
        for (i, w) in words.into_iter().enumerate() {
            let t = format!("250{}{w}", if i + 1 < n { '-' } else { ' ' });
            self.reply(&t);
        }
        true
    }

    fn starttls(&mut self, argv: &[Token]) -> bool {
        self.st.error_mask |= error_class::PROTOCOL;
        if argv.len() != 1 {
            self.reply("501 5.5.4 Syntax: STARTTLS");
        } else {
            self.reply("502 5.5.1 Error: command not implemented");
        }
        false
    }

    fn auth(&mut self) -> bool {
        if self.cfg.helo_required && self.st.helo_name.is_none() {
            self.st.error_mask |= error_class::POLICY;
            self.reply("503 5.5.1 Error: send HELO/EHLO first");
            return false;
        }
        self.st.error_mask |= error_class::PROTOCOL;
        self.reply("503 5.5.1 Error: authentication not enabled");
        false
    }

    /// extract_addr(): the address inside the argument, or None after the
    /// "Illegal address syntax" warning.
    fn extract_addr(
        &mut self,
        arg: &str,
        allow_empty: bool,
        strict: bool,
        smtputf8: bool,
    ) -> Option<String> {
        let mut text = if arg.len() >= 2 && arg.starts_with('<') && arg.ends_with('>') {
            &arg[1..arg.len() - 1]
        } else {
            arg
        };
        if text.starts_with('@')
            && let Some(i) = text.find(':')
        {
            text = &text[i + 1..];
        }
        let toks = crate::global::tok822::scan(text);
        use crate::global::tok822::Token as T;
        // Group into addresses at top-level commas, ignoring comments and angle brackets.
        let mut groups: Vec<Vec<T>> = vec![Vec::new()];
        let mut non_addr = 0;
        let mut depth = 0;
        // tok822_parse inserts the missing comma between two adjacent words.
        let mut prev_word = false;
        for t in toks {
            let word = matches!(t, T::Atom(_) | T::QString(_) | T::DomLit(_));
            match &t {
                T::Op('<') => depth += 1,
                T::Op('>') => depth -= 1,
                T::Op(',') if depth == 0 => groups.push(Vec::new()),
                T::Comment(_) => {
                    non_addr += 1;
                    continue;
                }
                _ => {
                    if word && prev_word && depth == 0 {
                        groups.push(Vec::new());
                    }
                    if let Some(g) = groups.last_mut() {
                        g.push(t)
                    }
                }
            }
            prev_word = word;
        }
        let naddr = groups.iter().filter(|g| !g.is_empty()).count();
        let warn = |s: &mut Self| {
            let (na, w) = (s.st.namaddr.clone(), s.st.where_.clone());
            let p = crate::global::msg::printable(arg, true);
            s.st.warn(format!(
                "Illegal address syntax from {na} in {w} command: {p}"
            ));
        };
        if naddr > 1 || (strict && (non_addr > 0 || !arg.starts_with('<'))) {
            warn(self);
            return None;
        }
        let addr = groups
            .into_iter()
            .find(|g| !g.is_empty())
            .map(|g| crate::global::tok822::internalize(&g))
            .unwrap_or_default();
        if (addr.is_empty() && !allow_empty)
            || (strict && addr.starts_with('@'))
            || (!self.st.stand_alone && !self.ck.check_addr(&addr, smtputf8))
        {
            warn(self);
            return None;
        }
        Some(addr)
    }

    fn mail(&mut self, argv: &[Token]) -> bool {
        self.st.smtputf8 = false;
        self.encoding = None;
        self.dsn_ret = 0;
        if self.cfg.helo_required && self.st.helo_name.is_none() {
            self.st.error_mask |= error_class::POLICY;
            self.reply("503 5.5.1 Error: send HELO/EHLO first");
            return false;
        }
        if self.st.sender.is_some() {
            self.st.error_mask |= error_class::PROTOCOL;
            self.reply("503 5.5.1 Error: nested MAIL command");
            return false;
        }
        if self.bdat_state != BdatState::None {
            self.st.error_mask |= error_class::PROTOCOL;
            self.reply("503 5.5.1 Error: MAIL after BDAT");
            return false;
        }
        if argv.len() < 3 || !argv[1].text.eq_ignore_ascii_case("from:") {
            self.st.error_mask |= error_class::PROTOCOL;
            self.reply("501 5.5.4 Syntax: MAIL FROM:<address>");
            return false;
        }
        if self.cfg.cmail_limit > 0
            && let Some(rate) = self.anvil_rate("message")
            && rate > self.cfg.cmail_limit
        {
            self.st.error_mask |= error_class::POLICY;
            let t = format!("450 4.7.1 Error: too much mail from {}", self.st.addr);
            self.reply(&t);
            let (na, svc) = (self.st.namaddr.clone(), self.cfg.service.clone());
            self.st.warn(format!(
                "Message delivery request rate limit exceeded: {rate} from {na} for service {svc}"
            ));
            return false;
        }
        if argv[2].error {
            self.st.error_mask |= error_class::PROTOCOL;
            self.reply("501 5.1.7 Bad sender address syntax");
            return false;
        }
        let utf8_ok = self.cfg.smtputf8_enable && self.ehlo_discard & M_SMTPUTF8 == 0;
        if utf8_ok
            && argv[3..]
                .iter()
                .any(|t| t.text.eq_ignore_ascii_case("SMTPUTF8"))
        {
            self.st.smtputf8 = true;
        }
        let Some(addr) = self.extract_addr(
            &argv[2].text,
            true,
            self.cfg.strict_rfc821,
            self.st.smtputf8,
        ) else {
            self.st.error_mask |= error_class::PROTOCOL;
            self.reply("501 5.1.7 Bad sender address syntax");
            return false;
        };
        let mut envid = None;
        let mut auth_seen = false;
        for t in &argv[3..] {
            let a = t.text.as_str();
            let up = a.to_ascii_uppercase();
            if up.starts_with("AUTH=") {
                // Postfix (built with SASL) accepts AUTH=sender and does not
                // keep it; only a second AUTH= is an error.
                if auth_seen {
                    self.st.error_mask |= error_class::PROTOCOL;
                    self.reply("503 5.5.4 Error: multiple AUTH= options");
                    return false;
                }
                auth_seen = a[5..] != *"<>";
            } else if up == "BODY=8BITMIME" {
                self.encoding = Some("8bit".into());
            } else if up == "BODY=7BIT" {
                self.encoding = Some("7bit".into());
            } else if up.starts_with("SIZE=") {
                if !alldig(&a[5..]) {
                    self.st.error_mask |= error_class::PROTOCOL;
                    self.reply("501 5.5.4 Bad message size syntax");
                    return false;
                }
                match a[5..].parse::<i64>() {
                    Ok(n) => {
                        self.msg_size = n as u64;
                        self.st.size = self.msg_size;
                    }
                    Err(_) => {
                        self.st.error_mask |= error_class::POLICY;
                        self.reply("552 5.3.4 Message size exceeds file system imposed limit");
                        return false;
                    }
                }
            } else if utf8_ok && up == "SMTPUTF8" {
            } else if let Some(ret) = up.strip_prefix("RET=") {
                if self.ehlo_discard & M_DSN != 0 {
                    self.st.error_mask |= error_class::PROTOCOL;
                    self.reply("501 5.7.1 DSN support is disabled");
                    return false;
                }
                let code = match ret {
                    "FULL" => 1,
                    "HDRS" => 2,
                    _ => 0,
                };
                if self.dsn_ret != 0 || code == 0 {
                    self.st.error_mask |= error_class::PROTOCOL;
                    self.reply("501 5.5.4 Bad RET parameter syntax");
                    return false;
                }
                self.dsn_ret = code;
            } else if up.starts_with("ENVID=") {
                if self.ehlo_discard & M_DSN != 0 {
                    self.st.error_mask |= error_class::PROTOCOL;
                    self.reply("501 5.7.1 DSN support is disabled");
                    return false;
                }
                match xtext_unquote(&a[6..])
                    .filter(|v| envid.is_none() && v.chars().all(|c| (' '..='~').contains(&c)))
                {
                    Some(v) => envid = Some(v),
                    None => {
                        self.st.error_mask |= error_class::PROTOCOL;
                        self.reply("501 5.5.4 Bad ENVID parameter syntax");
                        return false;
                    }
                }
            } else {
                self.st.error_mask |= error_class::PROTOCOL;
                let t = format!("555 5.5.4 Unsupported option: {a}");
                self.reply(&t);
                return false;
            }
        }
        if self.cfg.message_size_limit > 0 && self.msg_size > self.cfg.message_size_limit {
            let saved = self.st.sender.replace(addr.clone());
            self.st.error_mask |= error_class::POLICY;
            let t = "552 5.3.4 Message size exceeds fixed limit".to_string();
            self.st.log_whatsup("reject", &t);
            self.st.sender = saved;
            self.reply(&t);
            return false;
        }
        if !self.st.stand_alone
            && !self.cfg.delay_reject
            && let Some(err) = self.ck.check_mail(&mut self.st, Some(&addr))
        {
            self.mail_reset();
            self.reply(&err);
            return false;
        }
        if !self.st.stand_alone
            && let Some(err) = self.check_queue()
        {
            self.mail_reset();
            self.reply(&err);
            return false;
        }
        if !self.st.stand_alone {
            self.rewrite_context = if self.ck.in_mynetworks(&self.st) {
                "local".into()
            } else {
                "remote".into()
            };
        }
        self.arrival = now();
        let t = self
            .arrival
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.st.instance = format!(
            "{:x}.{:x}.{:x}.{:x}",
            crate::sys::process::pid(),
            t.as_secs(),
            t.subsec_micros(),
            self.st.seqno
        );
        self.st.seqno += 1;
        self.st.sender = Some(addr);
        self.dsn_envid = envid;
        self.reply("250 2.1.0 Ok");
        true
    }

    fn rcpt(&mut self, argv: &[Token]) -> bool {
        if self.st.sender.is_none() {
            self.st.error_mask |= error_class::PROTOCOL;
            self.reply("503 5.5.1 Error: need MAIL command");
            return false;
        }
        if self.bdat_state != BdatState::None {
            self.st.error_mask |= error_class::PROTOCOL;
            self.reply("503 5.5.1 Error: RCPT after BDAT");
            return false;
        }
        if argv.len() < 3 || !argv[1].text.eq_ignore_ascii_case("to:") {
            self.st.error_mask |= error_class::PROTOCOL;
            self.reply("501 5.5.4 Syntax: RCPT TO:<address>");
            return false;
        }
        if self.rcpt_rate_exceeded() {
            return false;
        }
        if argv[2].error {
            self.st.error_mask |= error_class::PROTOCOL;
            self.reply("501 5.1.3 Bad recipient address syntax");
            return false;
        }
        let utf8 = self.st.smtputf8;
        let Some(addr) = self.extract_addr(&argv[2].text, false, self.cfg.strict_rfc821, utf8)
        else {
            self.st.error_mask |= error_class::PROTOCOL;
            self.reply("501 5.1.3 Bad recipient address syntax");
            return false;
        };
        let mut notify = 0;
        let mut orcpt: Option<String> = None;
        for t in &argv[3..] {
            let a = t.text.as_str();
            let up = a.to_ascii_uppercase();
            if up.starts_with("NOTIFY=") {
                if self.ehlo_discard & M_DSN != 0 {
                    self.st.error_mask |= error_class::PROTOCOL;
                    self.reply("501 5.7.1 DSN support is disabled");
                    return false;
                }
                let m = dsn_notify_mask(&a[7..]);
                if m == 0
                    && let Some(bad) = a[7..].split(',').find(|w| {
                        !["NEVER", "SUCCESS", "FAILURE", "DELAY"]
                            .iter()
                            .any(|n| n.eq_ignore_ascii_case(w))
                    })
                    && !bad.is_empty()
                {
                    let w = format!(
                        "warning: unknown DSN NOTIFY command value \"{bad}\" in \"{}\"",
                        &a[7..]
                    );
                    self.st.log(w);
                }
                if notify != 0 || m == 0 {
                    self.st.error_mask |= error_class::PROTOCOL;
                    self.reply("501 5.5.4 Error: Bad NOTIFY parameter syntax");
                    return false;
                }
                notify = m;
            } else if up.starts_with("ORCPT=") {
                if self.ehlo_discard & M_DSN != 0 {
                    self.st.error_mask |= error_class::PROTOCOL;
                    self.reply("501 5.7.1 DSN support is disabled");
                    return false;
                }
                let v = &a[6..];
                let parsed = v
                    .split_once(';')
                    .filter(|(ty, _)| !ty.is_empty())
                    .and_then(|(ty, coded)| xtext_unquote(coded).map(|d| format!("{ty};{d}")));
                match parsed {
                    Some(p) if orcpt.is_none() => orcpt = Some(p),
                    _ => {
                        self.st.error_mask |= error_class::PROTOCOL;
                        self.reply("501 5.5.4 Error: Bad ORCPT parameter syntax");
                        return false;
                    }
                }
            } else {
                self.st.error_mask |= error_class::PROTOCOL;
                let t = format!("555 5.5.4 Unsupported option: {a}");
                self.reply(&t);
                return false;
            }
        }
        if self.cfg.rcpt_limit > 0 && self.st.rcpt_count >= self.cfg.rcpt_limit {
            self.reply("452 4.5.3 Error: too many recipients");
            let o = self.rcpt_overshoot;
            self.rcpt_overshoot += 1;
            if o < self.cfg.rcpt_overlim {
                return true;
            }
            self.st.error_mask |= error_class::POLICY;
            return false;
        }
        if !self.st.stand_alone
            && let Some(err) = self.ck.check_rcpt(&mut self.st, &addr)
        {
            self.reply(&err);
            return false;
        }
        if self.tx.is_none() && !self.open_stream() {
            return false;
        }
        self.st.rcpt_count += 1;
        if self.st.recipient.is_none() {
            self.st.recipient = Some(addr.clone());
        }
        let orcpt = orcpt.unwrap_or_else(|| {
            let a = &argv[2].text;
            let inner = if a.len() >= 2 && a.starts_with('<') && a.ends_with('>') {
                &a[1..a.len() - 1]
            } else {
                a.as_str()
            };
            format!("rfc822;{inner}")
        });
        if let Some(tx) = self.tx.as_mut() {
            tx.recipient(&Recipient {
                address: addr,
                orcpt,
                notify,
            });
        }
        self.reply("250 2.1.5 Ok");
        true
    }

    fn open_stream(&mut self) -> bool {
        let start = MailStart {
            sender: self.st.sender.clone().unwrap_or_default(),
            encoding: self.encoding.clone(),
            dsn_envid: self.dsn_envid.clone(),
            dsn_ret: self.dsn_ret,
            rewrite_context: self
                .xforward
                .domain
                .clone()
                .unwrap_or_else(|| self.rewrite_context.clone()),
            client: sink::ClientInfo {
                name: self.st.name.clone(),
                reverse_name: self.st.reverse_name.clone(),
                addr: self.st.addr.clone(),
                port: self.st.port.clone(),
                server_addr: self.st.server_addr.clone(),
                server_port: self.st.server_port.clone(),
                helo: self.st.helo_name.clone(),
                protocol: self.st.protocol.clone(),
                addr_family: self.st.addr_family,
                namaddr: self.st.namaddr.clone(),
                forwarded: self
                    .xforward
                    .client
                    .then(|| self.xforward.client_attr.clone()),
                forwarded_ident: self.xforward.ident.clone(),
            },
            arrival_time: self.arrival,
            stand_alone: self.st.stand_alone,
            smtputf8: self.st.smtputf8,
        };
        match self.sink.open(&start) {
            Ok(tx) => {
                let qid = tx.queue_id();
                self.st.queue_id = Some(qid.clone());
                self.tx = Some(tx);
                let mut line = cat(&[&qid, ": client=", &self.st.namaddr]);
                if let Some(i) = &self.xforward.ident {
                    line.push_str(&format!(", orig_queue_id={i}"));
                }
                if self.xforward.client {
                    line.push_str(&format!(
                        ", orig_client={}",
                        self.xforward.client_attr.namaddr
                    ));
                }
                self.st.log(line);
                true
            }
            Err(e) => {
                self.st.warn(format!(
                    "unable to connect to the public cleanup service: {}",
                    e.0
                ));
                let t = format!("451 4.3.0 {} Server local error", self.cfg.myhostname);
                self.reply(&t);
                false
            }
        }
    }

    fn rset(&mut self, argv: &[Token]) -> bool {
        if argv.len() != 1 {
            self.st.error_mask |= error_class::PROTOCOL;
            self.reply("501 5.5.4 Syntax: RSET");
            return false;
        }
        self.mail_reset();
        self.rcpt_reset();
        self.reply("250 2.0.0 Ok");
        true
    }

    fn vrfy(&mut self, argv: &[Token]) -> bool {
        if self.cfg.disable_vrfy {
            self.st.error_mask |= error_class::POLICY;
            self.reply("502 5.5.1 VRFY command is disabled");
            return false;
        }
        let mut argc = argv.len();
        let mut smtputf8 = false;
        if self.cfg.smtputf8_enable
            && self.ehlo_discard & M_SMTPUTF8 == 0
            && argc > 1
            && argv[argc - 1].text.eq_ignore_ascii_case("SMTPUTF8")
        {
            argc -= 1;
            smtputf8 = true;
        }
        if argc < 2 {
            self.st.error_mask |= error_class::PROTOCOL;
            let t = format!(
                "501 5.5.4 Syntax: VRFY address{}",
                if self.cfg.smtputf8_enable {
                    " [SMTPUTF8]"
                } else {
                    ""
                }
            );
            self.reply(&t);
            return false;
        }
        if self.rcpt_rate_exceeded() {
            return false;
        }
        let arg = argv[1..argc]
            .iter()
            .map(|t| t.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let Some(addr) = self.extract_addr(&arg, false, false, smtputf8) else {
            self.st.error_mask |= error_class::PROTOCOL;
            self.reply("501 5.1.3 Bad recipient address syntax");
            return false;
        };
        if !self.st.stand_alone {
            let saved = self.st.smtputf8;
            self.st.smtputf8 |= smtputf8;
            let err = self.ck.check_rcpt(&mut self.st, &addr);
            self.st.smtputf8 = saved;
            if let Some(err) = err {
                self.reply(&err);
                return false;
            }
        }
        let t = format!("252 2.0.0 {arg}");
        self.reply(&t);
        true
    }

    fn etrn(&mut self, argv: &[Token]) -> bool {
        if self.cfg.helo_required && self.st.helo_name.is_none() {
            self.st.error_mask |= error_class::POLICY;
            self.reply("503 Error: send HELO/EHLO first");
            return false;
        }
        if self.st.sender.is_some() {
            self.st.error_mask |= error_class::PROTOCOL;
            self.reply("503 Error: MAIL transaction in progress");
            return false;
        }
        if argv.len() != 2 {
            self.st.error_mask |= error_class::PROTOCOL;
            self.reply("500 Syntax: ETRN domain");
            return false;
        }
        let mut d = argv[1].text.as_str();
        if d.starts_with('@') || d.starts_with('#') {
            d = &d[1..];
        }
        let d = d.to_string();
        if !super::resolve::valid_hostname(&d) && !super::resolve::valid_mailhost_literal(&d) {
            self.st.error_mask |= error_class::PROTOCOL;
            self.reply("501 Error: invalid parameter syntax");
            return false;
        }
        if self.st.stand_alone {
            self.st
                .warn("do not use ETRN in \"sendmail -bs\" mode".into());
            self.reply("458 Unable to queue messages");
            return false;
        }
        if let Some(err) = self.ck.check_etrn(&mut self.st, &d) {
            self.reply(&err);
            return false;
        }
        let na = self.st.namaddr.clone();
        if !self.cfg.flush_domains.matches(&[&d]) {
            let short: String = d.chars().take(100).collect();
            self.st.warn(format!("reject: ETRN {short}... from {na}"));
            let t = format!("459 <{d}>: service unavailable");
            self.reply(&t);
            return false;
        }
        // TODO: the flush service does not exist yet.
        self.st.warn("unable to talk to fast flush service".into());
        self.reply("458 Unable to queue messages");
        false
    }

    fn xclient(&mut self, argv: &[Token]) -> bool {
        if self.st.sender.is_some() {
            self.st.error_mask |= error_class::PROTOCOL;
            self.reply("503 5.5.1 Error: MAIL transaction in progress");
            return false;
        }
        if argv.len() < 2 {
            self.st.error_mask |= error_class::PROTOCOL;
            self.reply("501 5.5.4 Syntax: XCLIENT attribute=value...");
            return false;
        }
        if !self.xclient_allowed {
            self.st.error_mask |= error_class::POLICY;
            self.reply("550 5.7.0 Error: insufficient authorization");
            return false;
        }
        for t in &argv[1..] {
            let Some((k, v)) = t.text.split_once('=') else {
                self.st.error_mask |= error_class::PROTOCOL;
                self.reply("501 5.5.4 Error: attribute=value expected");
                return false;
            };
            let Some(v) = xtext_unquote(v) else {
                self.st.error_mask |= error_class::PROTOCOL;
                let r = format!("501 5.5.4 Bad {k} syntax: {v}");
                self.reply(&r);
                return false;
            };
            let unavailable =
                v.eq_ignore_ascii_case("[UNAVAILABLE]") || v.eq_ignore_ascii_case("[TEMPUNAVAIL]");
            match k.to_ascii_uppercase().as_str() {
                "NAME" => {
                    if unavailable {
                        self.st.name = "unknown".into();
                    } else {
                        self.st.reverse_name = v.clone();
                        self.st.name = v;
                    }
                }
                "REVERSE_NAME" => {
                    self.st.reverse_name = if unavailable { "unknown".into() } else { v };
                }
                "ADDR" if v == "[UNAVAILABLE]" => {
                    self.st.addr = "unknown".into();
                    self.st.rfc_addr = "unknown".into();
                }
                "ADDR" => {
                    let parsed = xclient_addr(&v);
                    let Some(ip) = parsed else {
                        self.st.error_mask |= error_class::PROTOCOL;
                        let r = format!("501 5.5.4 Bad ADDR syntax: {v}");
                        self.reply(&r);
                        return false;
                    };
                    let a = match ip {
                        std::net::IpAddr::V6(x) => match x.to_ipv4_mapped() {
                            Some(m) => m.to_string(),
                            None => x.to_string(),
                        },
                        std::net::IpAddr::V4(x) => x.to_string(),
                    };
                    self.st.rfc_addr = if a.contains(':') {
                        format!("IPv6:{a}")
                    } else {
                        a.clone()
                    };
                    self.st.addr_family = if a.contains(':') { 10 } else { 2 };
                    self.st.addr = a;
                }
                "PORT" if v == "[UNAVAILABLE]" => self.st.port = "unknown".into(),
                "PORT" => {
                    if v.is_empty() || v.len() > 5 || !v.bytes().all(|c| c.is_ascii_digit()) {
                        self.st.error_mask |= error_class::PROTOCOL;
                        let r = format!("501 5.5.4 Bad PORT syntax: {v}");
                        self.reply(&r);
                        return false;
                    }
                    self.st.port = v;
                }
                "HELO" => self.st.helo_name = if unavailable { None } else { Some(v) },
                "PROTO" => self.st.protocol = v.to_ascii_uppercase(),
                "DESTADDR" => self.st.server_addr = v,
                "DESTPORT" => self.st.server_port = v,
                "LOGIN" => {}
                _ => {
                    self.st.error_mask |= error_class::PROTOCOL;
                    let r = format!("501 5.5.4 Bad XCLIENT attribute name: {k}");
                    self.reply(&r);
                    return false;
                }
            }
        }
        self.st.namaddr = format!("{}[{}]", self.st.name, self.st.addr);
        self.mail_reset();
        self.rcpt_reset();
        self.xclient_allowed = {
            let (n, a) = (self.st.name.clone(), self.st.addr.clone());
            self.cfg.xclient_hosts.matches(&[&n, &a])
        };
        let t = format!("220 {}", self.cfg.banner);
        self.reply(&t);
        self.skip_account = true;
        true
    }

    fn xforward(&mut self, argv: &[Token]) -> bool {
        if self.st.sender.is_some() {
            self.st.error_mask |= error_class::PROTOCOL;
            self.reply("503 5.5.1 Error: MAIL transaction in progress");
            return false;
        }
        if argv.len() < 2 {
            self.st.error_mask |= error_class::PROTOCOL;
            self.reply("501 5.5.4 Syntax: XFORWARD attribute=value...");
            return false;
        }
        if !self.xforward_allowed {
            self.st.error_mask |= error_class::POLICY;
            self.reply("550 5.7.0 Error: insufficient authorization");
            return false;
        }
        if !self.xforward.active {
            self.xforward.preset();
        }
        let (mut client, mut namaddr_changed) = (false, false);
        for t in &argv[1..] {
            let (k, raw) = match t.text.split_once('=') {
                Some((k, v)) if !v.is_empty() => (k, v),
                _ => {
                    self.st.error_mask |= error_class::PROTOCOL;
                    self.reply("501 5.5.4 Error: attribute=value expected");
                    return false;
                }
            };
            if raw.len() > 255 {
                self.st.error_mask |= error_class::PROTOCOL;
                self.reply("501 5.5.4 Error: attribute value too long");
                return false;
            }
            let v = xtext_unquote(raw).unwrap_or_else(|| raw.to_string());
            let v = crate::util::stringops::printable(&v, '?', false);
            let unavailable = v == "[UNAVAILABLE]";
            let bad = |s: &mut Self, what: &str, v: &str| {
                s.st.error_mask |= error_class::PROTOCOL;
                let r = format!("501 5.5.4 Bad {what} syntax: {v}");
                s.reply(&r);
                false
            };
            let xf = &mut self.xforward;
            match k.to_ascii_uppercase().as_str() {
                "NAME" => {
                    let v = if unavailable {
                        "unknown".into()
                    } else {
                        xforward_neuter(&v)
                    };
                    if !unavailable && !crate::util::valid_hostname::valid_hostname(&v, false) {
                        return bad(self, "NAME", &v);
                    }
                    xf.client_attr.name = v;
                    (client, namaddr_changed) = (true, true);
                }
                "ADDR" if unavailable => {
                    xf.addr = "unknown".into();
                    (client, namaddr_changed) = (true, true);
                }
                "ADDR" => {
                    let v = xforward_neuter(&v);
                    let parsed = xclient_addr(&v);
                    let Some(ip) = parsed else {
                        return bad(self, "ADDR", &v);
                    };
                    let a = match ip {
                        std::net::IpAddr::V6(x) => match x.to_ipv4_mapped() {
                            Some(m) => m.to_string(),
                            None => x.to_string(),
                        },
                        std::net::IpAddr::V4(x) => x.to_string(),
                    };
                    xf.client_attr.rfc_addr = if a.contains(':') {
                        format!("IPv6:{a}")
                    } else {
                        a.clone()
                    };
                    xf.addr = a;
                    (client, namaddr_changed) = (true, true);
                }
                "PORT" => {
                    if !unavailable && (v.len() > 5 || !v.bytes().all(|c| c.is_ascii_digit())) {
                        return bad(self, "PORT", &v);
                    }
                    xf.client_attr.port = if unavailable { "unknown".into() } else { v };
                    (client, namaddr_changed) = (true, true);
                }
                "HELO" => {
                    xf.client_attr.helo = (!unavailable).then(|| xforward_neuter(&v));
                    client = true;
                }
                "PROTO" => {
                    if !unavailable && v.len() > 64 {
                        return bad(self, "PROTO", &v);
                    }
                    xf.client_attr.protocol = if unavailable {
                        "unknown".into()
                    } else {
                        xforward_neuter(&v)
                    };
                    client = true;
                }
                "IDENT" => {
                    xf.ident = (!unavailable).then(|| xforward_neuter(&v));
                }
                "SOURCE" => {
                    let v = if unavailable { "LOCAL".to_string() } else { v };
                    let ctx = if v.eq_ignore_ascii_case("LOCAL") {
                        "local"
                    } else if v.eq_ignore_ascii_case("REMOTE") {
                        "remote"
                    } else {
                        return bad(self, "SOURCE", &v);
                    };
                    xf.domain = Some(ctx.into());
                }
                _ => {
                    self.st.error_mask |= error_class::PROTOCOL;
                    let r = format!("501 5.5.4 Bad XFORWARD attribute name: {k}");
                    self.reply(&r);
                    return false;
                }
            }
        }
        let xf = &mut self.xforward;
        xf.client |= client;
        if namaddr_changed {
            xf.client_attr.namaddr = if xf.addr != "unknown" {
                format!("{}[{}]", xf.client_attr.name, xf.addr)
            } else {
                xf.client_attr.name.clone()
            };
        }
        self.reply("250 2.0.0 Ok");
        true
    }

    // ------------------------------------------------------------ content

    fn pre_message(&mut self) {
        let flags = self.st.saved_flags;
        let prepend = self.st.prepend.clone();
        let helo = self
            .st
            .helo_name
            .clone()
            .unwrap_or_else(|| self.st.name.clone());
        let with = if self.st.smtputf8 {
            "UTF8SMTP".to_string()
        } else {
            self.st.protocol.clone()
        };
        let qid = self.st.queue_id.clone().unwrap_or_default();
        let secs = self
            .arrival
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let date = crate::global::mail_date::mail_date(secs);
        let mut lines: Vec<String> = prepend;
        lines.push(cat(&[
            "Received: from ",
            &helo,
            " (",
            &self.st.name,
            " [",
            &self.st.rfc_addr,
            "])",
        ]));
        let by = [
            "\tby ",
            &self.cfg.myhostname,
            " (",
            &self.cfg.mail_name,
            ") with ",
            &with,
            " id ",
            &qid,
        ];
        if self.st.rcpt_count == 1
            && let Some(r) = &self.st.recipient
        {
            lines.push(cat(&by));
            let r = crate::global::quote_822_local::quote_822_local(r);
            lines.push(cat(&["\tfor <", &r, ">; ", &date]));
        } else {
            let mut l = cat(&by);
            l.push(';');
            lines.push(l);
            lines.push(cat(&["\t", &date]));
        }
        if let Some(tx) = self.tx.as_mut() {
            tx.begin_content(flags);
            for l in lines {
                tx.record(RecordKind::Norm, &latin1::encode(&l));
            }
        }
        self.data_first = true;
        self.prev_cont = false;
        self.prev_got_bare_lf = 0;
    }

    fn data(&mut self, argv: &[Token]) -> bool {
        if self.bdat_state != BdatState::None {
            self.st.error_mask |= error_class::PROTOCOL;
            self.reply("503 5.5.1 Error: DATA after BDAT");
            return false;
        }
        if self.st.rcpt_count == 0 {
            if self.st.sender.is_none() {
                self.st.error_mask |= error_class::PROTOCOL;
                self.reply("503 5.5.1 Error: need RCPT command");
            } else {
                self.reply("554 5.5.1 Error: no valid recipients");
            }
            return false;
        }
        if argv.len() != 1 {
            self.st.error_mask |= error_class::PROTOCOL;
            self.reply("501 5.5.4 Syntax: DATA");
            return false;
        }
        if !self.st.stand_alone
            && let Some(err) = self.ck.check_data(&mut self.st, false)
        {
            self.reply(&err);
            return false;
        }
        self.pre_message();
        self.reply("354 End data with <CR><LF>.<CR><LF>");
        self.st.where_ = "DATA content".into();
        self.mode = Mode::Data;
        true
    }

    fn put_content(&mut self, kind: RecordKind, data: &[u8]) {
        if self.err != stat::OK {
            return;
        }
        let len = data.len() as u64;
        if self.cfg.message_size_limit > 0
            && self.cfg.message_size_limit.saturating_sub(self.act_size) < len + 2
        {
            self.err = stat::SIZE;
            let q = self.st.queue_id.clone().unwrap_or_else(|| "NOQUEUE".into());
            self.st.warn(format!("{q}: queue file size limit exceeded"));
        } else {
            self.act_size += len + 2;
            self.st.size = self.act_size;
            if let Some(tx) = self.tx.as_mut() {
                tx.record(kind, data);
            }
        }
    }

    fn data_line(&mut self, line: &[u8], complete: bool) {
        let kind = if complete {
            RecordKind::Norm
        } else {
            RecordKind::Cont
        };
        if self.got_bare_lf & BARE_LF_REPLY_REJECT != 0 {
            self.err |= stat::BARE_LF;
        }
        let got = self.got_bare_lf;
        let prev_got = std::mem::replace(&mut self.prev_got_bare_lf, got);
        let prev_cont = std::mem::replace(&mut self.prev_cont, !complete);
        let mut start: &[u8] = line;
        if self.data_first {
            let skip = start.iter().take_while(|&&b| b == b'>').count();
            if start[skip..].starts_with(b"From ") {
                let mut l = b"X-Mailbox-Line: ".to_vec();
                l.extend_from_slice(start);
                if let Some(tx) = self.tx.as_mut() {
                    tx.record(kind, &l);
                }
                return;
            }
            self.data_first = false;
            if matches!(start.first(), Some(b' ' | b'\t'))
                && let Some(tx) = self.tx.as_mut()
            {
                tx.record(RecordKind::Norm, b"");
            }
        }
        if !prev_cont && start.first() == Some(&b'.') {
            if start.len() == 1
                && self.detect_bare_lf & BARE_LF_WANT_STD_EOD != 0
                && (got != 0 || prev_got != 0)
            {
                return;
            }
            start = &start[1..];
            if start.is_empty() {
                self.st.where_ = "END-OF-MESSAGE".into();
                self.end_of_message(8);
                return;
            }
        }
        self.put_content(kind, start);
    }

    /// common_post_message_handling(). `cmd` is the command table index.
    fn end_of_message(&mut self, cmd: usize) {
        self.mode = Mode::Command;
        let bdat = self.bdat_state != BdatState::None;
        if self.err == stat::OK
            && !self.st.stand_alone
            && let Some(err) = self.ck.check_data(&mut self.st, true)
        {
            self.reply(&err);
            if let Some(tx) = self.tx.take() {
                tx.abort();
            }
            // Postfix (common_post_message_handling) drops the queue file
            // but leaves the transaction as it was: a MAIL now is "nested".
            self.account(cmd, false);
            return;
        }
        let mut why = String::new();
        if self.err == stat::OK {
            let end = EndInfo {
                filter: self.st.saved_filter.clone(),
                redirect: self.st.saved_redirect.clone(),
                bcc: self.st.saved_bcc.clone(),
                flags: self.st.saved_flags,
            };
            match self.tx.take() {
                Some(tx) => {
                    let f = tx.finish(&end);
                    self.err = f.status;
                    why = f.why;
                }
                None => self.err = stat::WRITE,
            }
        } else if let Some(tx) = self.tx.take() {
            tx.abort();
        }
        let is_reject = |s: &str| {
            let b = s.as_bytes();
            b.len() >= 3
                && (b[0] == b'4' || b[0] == b'5')
                && b[1].is_ascii_digit()
                && b[2].is_ascii_digit()
                && matches!(b.get(3), None | Some(b' ') | Some(b'-'))
        };
        let ok = self.err == stat::OK;
        if ok {
            self.st.error_count = 0;
            self.st.error_mask = 0;
            self.junk_cmds = 0;
            let qid = self.st.queue_id.clone().unwrap_or_default();
            let t = if bdat {
                format!("250 2.0.0 Ok: {} bytes queued as {qid}", self.act_size)
            } else {
                cat(&["250 2.0.0 Ok: queued as ", &qid])
            };
            self.reply(&t);
        } else if self.err & stat::BARE_LF != 0 {
            self.st.error_mask |= error_class::PROTOCOL;
            self.st.log_whatsup("reject", "bare <LF> received");
            let t = format!(
                "{} 5.5.2 {} Error: bare <LF> received",
                self.cfg.bare_lf_code, self.cfg.myhostname
            );
            self.reply(&t);
        } else if is_reject(&why) {
            self.st.error_mask |= error_class::POLICY;
            self.reply(&why);
        } else {
            let (code, dsn, text, class) = if self.err & stat::DEFER != 0 {
                (451, "4.7.1", "service unavailable", error_class::POLICY)
            } else if self.err & stat::BAD != 0 {
                (451, "4.3.0", "", error_class::SOFTWARE)
            } else if self.err & stat::SIZE != 0 {
                (552, "5.3.4", "message file too big", error_class::BOUNCE)
            } else if self.err & stat::HOPS != 0 {
                (554, "5.4.0", "too many hops", error_class::BOUNCE)
            } else if self.err & stat::CONT != 0 {
                (
                    550,
                    "5.7.1",
                    "message content rejected",
                    error_class::POLICY,
                )
            } else if self.err & stat::WRITE != 0 {
                (
                    451,
                    "4.3.0",
                    "queue file write error",
                    error_class::RESOURCE,
                )
            } else {
                (451, "4.3.0", "", error_class::SOFTWARE)
            };
            self.st.error_mask |= class;
            let t = if text.is_empty() {
                format!("{code} {dsn} Error: internal error {}", self.err)
            } else if (self.err & (stat::DEFER | stat::CONT)) != 0 && !why.is_empty() {
                format!("{code} {why}")
            } else {
                format!("{code} {dsn} Error: {text}")
            };
            self.reply(&t);
        }
        self.mail_reset();
        self.rcpt_reset();
        self.account(cmd, ok);
    }

    fn skip_bdat(&mut self, size: u64, last: bool, reply: String) -> bool {
        self.mode = Mode::Bdat {
            left: size,
            last,
            skip: true,
        };
        self.skip_reply = Some(reply);
        false
    }

    fn bdat(&mut self, argv: &[Token], line: &str) -> bool {
        if self.ehlo_discard & M_CHUNKING != 0 {
            self.st.error_mask |= error_class::PROTOCOL;
            self.reply("521 5.5.1 Error: command not implemented");
            return false;
        }
        let size = argv
            .get(1)
            .filter(|t| alldig(&t.text))
            .and_then(|t| t.text.parse::<u64>().ok());
        let last = argv.len() == 3;
        let (Some(size), true) = (
            size,
            (2..=3).contains(&argv.len()) && (!last || argv[2].text.eq_ignore_ascii_case("LAST")),
        ) else {
            self.st.error_mask |= error_class::PROTOCOL;
            let q = self.st.queue_id.clone().unwrap_or_else(|| "NOQUEUE".into());
            let na = self.st.namaddr.clone();
            let p: String = crate::global::msg::printable(line, false)
                .chars()
                .take(100)
                .collect();
            self.st
                .warn(format!("{q}: malformed BDAT command syntax from {na}: {p}"));
            self.reply("521 5.5.4 Syntax: BDAT count [LAST]");
            return false;
        };
        let q = self.st.queue_id.clone().unwrap_or_else(|| "NOQUEUE".into());
        if size == 0 && !last {
            let na = self.st.namaddr.clone();
            self.st.warn(format!("{q}: null BDAT request from {na}"));
            return self.skip_bdat(size, last, "551 5.7.1 Null BDAT request".into());
        }
        if self.bdat_state == BdatState::Error {
            return self.skip_bdat(
                size,
                last,
                format!("551 5.0.0 Discarded {size} bytes after earlier error"),
            );
        }
        if self.bdat_state == BdatState::None {
            if self.st.rcpt_count == 0 {
                if self.st.sender.is_none() {
                    self.st.error_mask |= error_class::PROTOCOL;
                    return self.skip_bdat(size, last, "503 5.5.1 Error: need RCPT command".into());
                }
                return self.skip_bdat(size, last, "554 5.5.1 Error: no valid recipients".into());
            }
            if !self.st.stand_alone
                && let Some(err) = self.ck.check_data(&mut self.st, false)
            {
                return self.skip_bdat(size, last, err);
            }
        }
        if self.cfg.message_size_limit > 0
            && self.act_size.saturating_add(size) > self.cfg.message_size_limit
        {
            self.st.error_mask |= error_class::POLICY;
            let na = self.st.namaddr.clone();
            self.st.warn(format!(
                "{q}: BDAT request from {na} exceeds message size limit"
            ));
            return self.skip_bdat(
                size,
                last,
                "552 5.3.4 Chunk exceeds message size limit".into(),
            );
        }
        if self.bdat_state == BdatState::None {
            self.pre_message();
            self.bdat_line.clear();
            self.prev_cont = false;
        }
        self.bdat_state = BdatState::Ok;
        self.st.where_ = "BDAT content".into();
        self.bdat_received = 0;
        self.bdat_chunk = size;
        self.mode = Mode::Bdat {
            left: size,
            last,
            skip: false,
        };
        true
    }

    /// Consume BDAT chunk bytes; false when more input is needed.
    fn bdat_input(&mut self) -> bool {
        let Mode::Bdat { left, last, skip } = self.mode else {
            return true;
        };
        let n = (left as usize).min(self.inbuf.len());
        let chunk: Vec<u8> = self.inbuf.drain(..n).collect();
        let left = left - n as u64;
        self.bdat_received += n as u64;
        if skip {
            if left > 0 {
                self.mode = Mode::Bdat { left, last, skip };
                return false;
            }
            self.mode = Mode::Command;
            let r = self.skip_reply.take().unwrap_or_default();
            self.reply(&r);
            if last {
                self.mail_reset();
            } else {
                self.bdat_state = BdatState::Error;
            }
            self.account(9, false);
            return true;
        }
        // Split into lines bounded by line_length_limit.
        let limit = self.cfg.line_limit;
        for &b in &chunk {
            self.bdat_line.push(b);
            if b == b'\n' {
                let mut l = std::mem::take(&mut self.bdat_line);
                l.pop();
                let mut got = 0;
                if self.detect_bare_lf != 0 {
                    if l.last() != Some(&b'\r') {
                        got = self.detect_bare_lf;
                    } else {
                        l.pop();
                    }
                } else {
                    while l.last() == Some(&b'\r') {
                        l.pop();
                    }
                }
                if got & BARE_LF_REPLY_REJECT != 0 {
                    self.err |= stat::BARE_LF;
                }
                self.put_content(RecordKind::Norm, &l);
                self.prev_cont = false;
            } else if self.bdat_line.len() > limit {
                let extra = self.bdat_line.pop().unwrap_or(0);
                let l = std::mem::replace(&mut self.bdat_line, vec![extra]);
                self.put_content(RecordKind::Cont, &l);
                self.prev_cont = true;
            }
        }
        self.bdat_received = 0;
        if left > 0 {
            self.bdat_received = 0;
            self.mode = Mode::Bdat { left, last, skip };
            return false;
        }
        if last {
            if !self.bdat_line.is_empty() {
                let l = std::mem::take(&mut self.bdat_line);
                self.put_content(RecordKind::Norm, &l);
            }
            self.st.where_ = "END-OF-MESSAGE".into();
            self.end_of_message(9);
        } else if self.err != stat::OK {
            self.mode = Mode::Command;
            self.end_of_message(9);
            self.bdat_state = BdatState::Error;
        } else {
            self.mode = Mode::Command;
            let t = format!("250 2.0.0 Ok: {} bytes", self.bdat_chunk);
            self.reply(&t);
            self.account(9, true);
        }
        true
    }
}

/// The address of an XCLIENT/XFORWARD ADDR attribute: dotted IPv4, or
/// IPv6 behind an `IPV6:` prefix (any case).
fn xclient_addr(v: &str) -> Option<std::net::IpAddr> {
    match v.get(..5) {
        Some(p) if v.len() > 5 && p.eq_ignore_ascii_case("ipv6:") => v[5..]
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(std::net::IpAddr::V6),
        _ => v
            .parse::<std::net::Ipv4Addr>()
            .ok()
            .map(std::net::IpAddr::V4),
    }
}
