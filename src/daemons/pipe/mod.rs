//! Replaces pipe(8) of Postfix 3.7: delivery to an external command named
//! by the master.cf `argv=` attribute, with `${...}` macros expanded from
//! the delivery request.
//!
//! Trust: the delivery request comes from the queue manager; the command
//! line comes from master.cf (trusted). Privilege: started as root by
//! master (unprivileged column `n`); the command runs in a child process
//! as the `user=` identity, never as root, mail_owner or the setgid group.
//! In non-root mode everything runs as the invoking user.
//!
//! Parameters: command_time_limit and `<service>_time_limit`,
//! delay_logging_resolution_limit, enable_original_recipient,
//! export_environment, mail_owner, recipient_delimiter, setgid_group.

use crate::global::deliver_request::{
    DeliveryRequest, Dsn, Outcome, RecipientResult, flags as req_flags, log_line, now,
};
use crate::global::mail_conf::{ConfError, MailConf};
use crate::global::mbox::{self, CopyAttr, CopyError, copy};
use crate::global::msg;
use crate::global::pipe_command::{PipeArgs, PipeStatus, pipe_command};
use crate::global::quote_822_local::{SplitParams, quote_822_local, split_addr};
use crate::global::rec_type;
use crate::global::record::{QueueStream, Rec, rec_get};
use std::collections::HashMap;
use std::time::Duration;

/// `flags=` letters.
pub mod flag {
    pub const BLANK: u32 = 1 << 0; // B
    pub const DELIVERED: u32 = 1 << 1; // D
    pub const FROM: u32 = 1 << 2; // F
    pub const ORIG_RCPT: u32 = 1 << 3; // O
    pub const RETURN_PATH: u32 = 1 << 4; // R
    pub const FINAL: u32 = 1 << 5; // X
    pub const DOT: u32 = 1 << 6; // .
    pub const QUOTE: u32 = 1 << 7; // >
    pub const FOLD_HOST: u32 = 1 << 8; // h
    pub const QUOTE_LOCAL: u32 = 1 << 9; // q
    pub const FOLD_USER: u32 = 1 << 10; // u
    pub const FOLD_ALL: u32 = FOLD_HOST | FOLD_USER;
}

/// The master.cf command-line attributes of a pipe service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeAttr {
    pub command: Vec<String>,
    pub uid: u32,
    pub gid: u32,
    pub flags: u32,
    pub exec_dir: Option<String>,
    pub chroot_dir: Option<String>,
    pub eol: String,
    pub null_sender: String,
    pub size_limit: u64,
}

/// The identities the `user=` attribute must not name.
#[derive(Debug, Clone, Copy, Default)]
pub struct Forbidden {
    pub owner_uid: u32,
    pub owner_gid: u32,
    pub sgid_gid: u32,
}

/// Resolve user and group names (getpwnam/getgrnam), replaceable in tests.
pub trait Ids {
    fn user(&self, name: &str) -> Option<(u32, u32)>;
    fn group(&self, name: &str) -> Option<u32>;
}

pub struct SystemIds;

impl Ids for SystemIds {
    fn user(&self, name: &str) -> Option<(u32, u32)> {
        crate::sys::process::getpwnam(name).map(|p| (p.uid, p.gid))
    }
    fn group(&self, name: &str) -> Option<u32> {
        crate::sys::process::getgrnam(name).map(|g| g.gid)
    }
}

fn strip_prefix_ci<'a>(s: &'a str, p: &str) -> Option<&'a str> {
    (s.len() >= p.len() && s.is_char_boundary(p.len()) && s[..p.len()].eq_ignore_ascii_case(p))
        .then(|| &s[p.len()..])
}

/// Parse the attributes after the service options (get_service_attr).
/// The error is the fatal message Postfix logs. `owner_name`/`sgid_name`
/// are mail_owner and setgid_group, for those messages.
pub fn parse_attr(
    argv: &[String],
    ids: &dyn Ids,
    forbid: Forbidden,
    owner_name: &str,
    sgid_name: &str,
) -> Result<PipeAttr, String> {
    let mut a = PipeAttr {
        command: Vec::new(),
        uid: 0,
        gid: 0,
        flags: 0,
        exec_dir: None,
        chroot_dir: None,
        eol: "\n".to_string(),
        null_sender: "MAILER-DAEMON".to_string(),
        size_limit: 0,
    };
    let mut have_user = false;
    let mut have_cmd = false;
    for (i, arg) in argv.iter().enumerate() {
        if let Some(v) = strip_prefix_ci(arg, "flags=") {
            for c in v.chars() {
                a.flags |= match c {
                    'B' => flag::BLANK,
                    'D' => flag::DELIVERED,
                    'F' => flag::FROM,
                    'O' => flag::ORIG_RCPT,
                    'R' => flag::RETURN_PATH,
                    'X' => flag::FINAL,
                    '.' => flag::DOT,
                    '>' => flag::QUOTE,
                    'h' => flag::FOLD_HOST,
                    'q' => flag::QUOTE_LOCAL,
                    'u' => flag::FOLD_USER,
                    _ => return Err(format!("unknown flag: {c} (ignored)")),
                };
            }
        } else if let Some(v) = strip_prefix_ci(arg, "user=") {
            have_user = true;
            let (user, group) = match v.split_once(':') {
                Some((u, g)) if !g.is_empty() => (u, Some(g)),
                Some((u, _)) => (u, None),
                None => (v, None),
            };
            let Some((uid, gid)) = ids.user(user) else {
                return Err(format!("get_service_attr: unknown username: {user}"));
            };
            a.uid = uid;
            a.gid = match group {
                Some(g) => ids
                    .group(g)
                    .ok_or_else(|| format!("get_service_attr: unknown group: {g}"))?,
                None => gid,
            };
        } else if let Some(v) = strip_prefix_ci(arg, "directory=") {
            a.exec_dir = Some(v.to_string());
        } else if let Some(v) = strip_prefix_ci(arg, "chroot=") {
            a.chroot_dir = Some(v.to_string());
        } else if let Some(v) = strip_prefix_ci(arg, "eol=") {
            a.eol = crate::util::latin1::decode(&crate::daemons::cleanup::config::unescape(v));
        } else if let Some(v) = strip_prefix_ci(arg, "null_sender=") {
            a.null_sender = v.to_string();
        } else if let Some(v) = strip_prefix_ci(arg, "size=") {
            match off_cvt(v) {
                Some(n) => a.size_limit = n,
                None => return Err(format!("get_service_attr: bad size= value: {v}")),
            }
        } else if let Some(v) = strip_prefix_ci(arg, "argv=") {
            a.command.push(v.to_string());
            a.command.extend(argv[i + 1..].iter().cloned());
            have_cmd = true;
            break;
        } else {
            return Err(format!("unknown attribute name: {arg}"));
        }
    }
    if !have_user {
        return Err("missing user= command-line attribute".into());
    }
    if !have_cmd {
        return Err("missing argv= command-line attribute".into());
    }
    if a.uid == 0 {
        return Err("user= command-line attribute specifies root privileges".into());
    }
    if a.uid == forbid.owner_uid {
        return Err(format!(
            "user= command-line attribute specifies mail system owner {owner_name}"
        ));
    }
    if a.gid == 0 {
        return Err("user= command-line attribute specifies privileged group id 0".into());
    }
    if a.gid == forbid.owner_gid {
        return Err(format!(
            "user= command-line attribute specifies mail system owner {owner_name} group id {}",
            a.gid
        ));
    }
    if a.gid == forbid.sgid_gid {
        return Err(format!(
            "user= command-line attribute specifies mail system {sgid_name} group id {}",
            a.gid
        ));
    }
    Ok(a)
}

/// off_cvt_string: decimal digits only, no overflow.
fn off_cvt(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok().map(|n| n as u64)
}

/// main.cf settings a pipe service uses.
#[derive(Debug, Clone)]
pub struct PipeConf {
    /// The master.cf service name (relay= in logs, `<service>_time_limit`).
    pub service: String,
    pub time_limit: u64,
    pub split: SplitParams,
    pub export_environment: Vec<String>,
    pub enable_orcpt: bool,
    pub delay_max_res: u32,
    /// false: do not change identity (non-root mode).
    pub switch_ids: bool,
    /// For the "unknown macro name" warning.
    pub config_dir: String,
}

impl PipeConf {
    pub fn from_conf(conf: &MailConf, service: &str) -> Result<PipeConf, ConfError> {
        let s =
            |n: &str| -> Result<String, ConfError> { Ok(conf.lookup_eval(n)?.unwrap_or_default()) };
        let base = conf.get_time("command_time_limit", 's', 1, 0)?;
        let name = format!("{service}_time_limit");
        let time_limit = if conf.raw(&name).is_some() {
            conf.get_time(&name, 's', 1, 0)?
        } else {
            base
        };
        Ok(PipeConf {
            service: service.to_string(),
            time_limit: time_limit.max(1) as u64,
            split: SplitParams {
                delimiters: s("recipient_delimiter")?,
                double_bounce_sender: s("double_bounce_sender")?,
                owner_request_special: conf.get_bool("owner_request_special")?,
            },
            export_environment: s("export_environment")?
                .split([' ', '\t', '\n', '\r', ','])
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect(),
            enable_orcpt: conf.get_bool("enable_original_recipient")?,
            delay_max_res: conf.get_int("delay_logging_resolution_limit", 0, 6)? as u32,
            switch_ids: crate::sys::geteuid() == 0,
            config_dir: conf.config_dir.clone(),
        })
    }
}

/// One piece of a command-line argument.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    Var(String),
}

/// Split an argument into literal text and macro references as Postfix's
/// mac_parse: `$$` is `$`, `$name`, `${name}`, `$(name)`. The error is the
/// warning Postfix logs.
fn mac_segments(value: &str) -> Result<Vec<Seg>, String> {
    let b: Vec<char> = value.chars().collect();
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != '$' {
            lit.push(b[i]);
            i += 1;
            continue;
        }
        if b.get(i + 1) == Some(&'$') {
            lit.push('$');
            i += 2;
            continue;
        }
        if !lit.is_empty() {
            out.push(Seg::Lit(std::mem::take(&mut lit)));
        }
        i += 1;
        let name: String;
        if let Some(&open) = b.get(i).filter(|c| **c == '{' || **c == '(') {
            let close = if open == '{' { '}' } else { ')' };
            let mut level = 1;
            let start = i + 1;
            let mut j = start;
            loop {
                let Some(&c) = b.get(j) else {
                    return Err(format!("truncated macro reference: \"{value}\""));
                };
                if c == open {
                    level += 1;
                }
                if c == close {
                    level -= 1;
                }
                j += 1;
                if level == 0 {
                    break;
                }
            }
            name = b[start..j - 1].iter().collect();
            i = j;
        } else {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            name = b[start..i].iter().collect();
        }
        if name.is_empty() {
            return Err(format!("empty macro name: \"{value}\""));
        }
        out.push(Seg::Var(name));
    }
    if !lit.is_empty() {
        out.push(Seg::Lit(lit));
    }
    Ok(out)
}

const F_RCPT: u32 = 1;
const F_USER: u32 = 2;
const F_EXT: u32 = 4;
const F_MAILBOX: u32 = 8;
const F_DOMAIN: u32 = 16;
const F_ORIG: u32 = 32;

/// The macro names pipe(8) knows, with the per-recipient flag.
const MACROS: &[(&str, u32)] = &[
    ("nexthop", 0),
    ("recipient", F_RCPT),
    ("original_recipient", F_ORIG),
    ("sender", 0),
    ("user", F_USER),
    ("extension", F_EXT),
    ("mailbox", F_MAILBOX),
    ("domain", F_DOMAIN),
    ("size", 0),
    ("client_address", 0),
    ("client_hostname", 0),
    ("client_port", 0),
    ("client_protocol", 0),
    ("client_helo", 0),
    ("sasl_method", 0),
    ("sasl_username", 0),
    ("sasl_sender", 0),
    ("queue_id", 0),
];

fn fold(addr: &str, flags: u32) -> String {
    let fold = crate::util::casefold::casefold;
    match (flags & flag::FOLD_USER != 0, flags & flag::FOLD_HOST != 0) {
        (true, true) => fold(addr),
        (false, false) => addr.to_string(),
        (user, _host) => match addr.rfind('@') {
            Some(at) if user => format!("{}{}", fold(&addr[..at]), &addr[at..]),
            Some(at) => format!("{}{}", &addr[..=at], fold(&addr[at + 1..])),
            None if user => fold(addr),
            None => addr.to_string(),
        },
    }
}

fn morph(addr: &str, flags: u32) -> String {
    let q = if flags & flag::QUOTE_LOCAL != 0 {
        quote_822_local(addr)
    } else {
        addr.to_string()
    };
    fold(&q, flags)
}

fn eval(segs: &[Seg], vars: &HashMap<&'static str, String>) -> String {
    let mut s = String::new();
    for seg in segs {
        match seg {
            Seg::Lit(l) => s.push_str(l),
            Seg::Var(n) => {
                if let Some(v) = vars.get(n.as_str()) {
                    s.push_str(v);
                }
            }
        }
    }
    s
}

/// Expand the command's arguments (expand_argv): an argument with a
/// per-recipient macro becomes one argument per recipient. Warnings are
/// logged; `None` means a bad macro (a configuration error).
pub fn expand_argv(
    service: &str,
    config_dir: &str,
    command: &[String],
    req: &DeliveryRequest,
    vars: &mut HashMap<&'static str, String>,
    flags: u32,
    split: &SplitParams,
) -> Option<Vec<String>> {
    let mut result = Vec::new();
    for arg in command {
        let segs = match mac_segments(arg) {
            Ok(s) => s,
            Err(w) => {
                msg::warn(&w);
                return None;
            }
        };
        let mut eflag = 0;
        for s in &segs {
            if let Seg::Var(n) = s {
                match MACROS.iter().find(|(m, _)| m == n) {
                    Some((_, f)) => eflag |= f,
                    None => {
                        msg::warn(&format!(
                            "file {config_dir}/master.cf: service {service}: unknown macro name: \"{n}\""
                        ));
                        return None;
                    }
                }
            }
        }
        if eflag == 0 {
            result.push(eval(&segs, vars));
            continue;
        }
        for r in &req.rcpt {
            if eflag & F_RCPT != 0 {
                vars.insert("recipient", morph(&r.address, flags));
            }
            if eflag & F_ORIG != 0 {
                vars.insert("original_recipient", morph(&r.orig_addr, flags));
            }
            let local_part = || {
                let m = morph(&r.address, flags & flag::FOLD_ALL);
                match m.rfind('@') {
                    Some(at) => (m[..at].to_string(), Some(m[at + 1..].to_string())),
                    None => {
                        msg::warn(&format!("no @ in recipient address: {}", r.address));
                        (m, None)
                    }
                }
            };
            if eflag & F_USER != 0 {
                let (mut lp, _) = local_part();
                if let Some(i) = split_addr(&lp, split) {
                    lp.truncate(i);
                }
                if lp.is_empty() {
                    continue;
                }
                vars.insert("user", lp);
            }
            if eflag & F_EXT != 0 {
                let (lp, _) = local_part();
                let ext = match split_addr(&lp, split) {
                    Some(i) => lp[i + 1..].to_string(),
                    None => String::new(),
                };
                vars.insert("extension", ext);
            }
            if eflag & F_MAILBOX != 0 {
                let (lp, _) = local_part();
                vars.insert("mailbox", lp);
            }
            if eflag & F_DOMAIN != 0 {
                let (_, dom) = local_part();
                vars.insert("domain", dom.unwrap_or_default());
            }
            result.push(eval(&segs, vars));
        }
    }
    Some(result)
}

/// The Delivered-To: addresses in the message headers, folded.
fn delivered_headers(fp: &mut QueueStream, offset: u64) -> Vec<String> {
    let mut found = Vec::new();
    if fp.seek_set(offset as i64).is_err() {
        return found;
    }
    let mut buf = Vec::new();
    let mut line = Vec::new();
    let mut count = 0;
    while let Rec::Type(t) = rec_get(fp, &mut buf, 0) {
        if t != rec_type::NORM && t != rec_type::CONT {
            break;
        }
        line.extend_from_slice(&buf);
        if t == rec_type::CONT {
            continue;
        }
        let text = crate::util::latin1::decode(&line);
        line.clear();
        if text.is_empty() {
            break;
        }
        if text.starts_with([' ', '\t']) {
            continue;
        }
        let Some((name, value)) = text.split_once(':') else {
            break;
        };
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || name.contains([' ', '\t']) {
            break;
        }
        count += 1;
        if count > 1000 {
            break;
        }
        if name.eq_ignore_ascii_case("delivered-to") {
            found.push(crate::util::casefold::casefold(
                value.trim_matches([' ', '\t', '\r']),
            ));
        }
    }
    found
}

/// Deliver one request through the command (deliver_message).
pub fn deliver(req: &DeliveryRequest, attr: &PipeAttr, conf: &PipeConf) -> Vec<RecipientResult> {
    let service = conf.service.as_str();
    let report = |outcome: Outcome, dsn: Dsn, status_word: &str| -> Vec<RecipientResult> {
        req.rcpt
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let log = log_line(
                    &req.queue_id,
                    &req.stats,
                    r,
                    service,
                    &dsn,
                    status_word,
                    now(),
                    conf.delay_max_res,
                );
                msg::info(&log);
                RecipientResult {
                    rcpt: r.clone(),
                    index: i,
                    outcome,
                    dsn: dsn.clone(),
                    relay: service.to_string(),
                    bounce_to: None,
                    log,
                }
            })
            .collect()
    };
    let fail = |dsn: Dsn| {
        if dsn.status.starts_with('4') {
            report(Outcome::Deferred, dsn, "deferred")
        } else {
            report(Outcome::Bounced, dsn, "bounced")
        }
    };
    if req.nexthop.is_empty() {
        msg::fatal("empty nexthop hostname");
    }
    if req.rcpt.is_empty() {
        msg::fatal("recipient count: 0");
    }
    for (f, c) in [(flag::DELIVERED, 'D'), (flag::ORIG_RCPT, 'O')] {
        if attr.flags & f != 0 && req.rcpt.len() > 1 {
            let r = fail(Dsn::new("4.3.5", "mail system configuration error"));
            msg::warn(&format!(
                "pipe flag `{c}' requires {service}_destination_recipient_limit = 1"
            ));
            return r;
        }
    }
    if attr.size_limit != 0 && req.data_size > attr.size_limit {
        return fail(Dsn::new("5.2.3", "message too large"));
    }
    if req.flags & (req_flags::MTA_VRFY | req_flags::USR_VRFY) != 0 {
        let word = if req.flags & req_flags::MTA_VRFY != 0 {
            "deliverable"
        } else {
            "sent"
        };
        return report(
            Outcome::Sent,
            Dsn::new(
                "2.0.0",
                format!(
                    "delivers to command: {}",
                    attr.command.first().map(String::as_str).unwrap_or("")
                ),
            ),
            word,
        );
    }
    let path = req.queue_file.to_string_lossy().to_string();
    let mut fp = match QueueStream::open(&path) {
        Ok(f) => f,
        Err(e) => msg::fatal(&format!(
            "open {path}: {}",
            crate::global::mbox::errtext(&e)
        )),
    };
    if attr.flags & flag::DELIVERED != 0 {
        let seen = delivered_headers(&mut fp, req.data_offset);
        let me = crate::util::casefold::casefold(&req.rcpt[0].address);
        if seen.contains(&me) {
            return fail(Dsn::new(
                "5.4.6",
                format!("mail forwarding loop for {}", req.rcpt[0].address),
            ));
        }
    }
    // The macro values.
    let sender = if req.sender.is_empty() {
        attr.null_sender.clone()
    } else {
        req.sender.clone()
    };
    let mut vars: HashMap<&'static str, String> = HashMap::new();
    vars.insert(
        "sender",
        if !sender.is_empty() && attr.flags & flag::QUOTE_LOCAL != 0 {
            quote_822_local(&sender)
        } else {
            sender.clone()
        },
    );
    vars.insert(
        "nexthop",
        if attr.flags & flag::FOLD_HOST != 0 {
            crate::util::casefold::casefold(&req.nexthop)
        } else {
            req.nexthop.clone()
        },
    );
    vars.insert("size", req.data_size.to_string());
    vars.insert("client_address", req.client.addr.clone());
    vars.insert("client_helo", req.client.helo.clone());
    vars.insert("client_hostname", req.client.name.clone());
    vars.insert("client_port", req.client.port.clone());
    vars.insert("client_protocol", req.client.proto.clone());
    vars.insert("sasl_method", req.client.sasl_method.clone());
    vars.insert("sasl_username", req.client.sasl_username.clone());
    vars.insert("sasl_sender", req.client.sasl_sender.clone());
    vars.insert("queue_id", req.queue_id.clone());
    let Some(argv) = expand_argv(
        service,
        &conf.config_dir,
        &attr.command,
        req,
        &mut vars,
        attr.flags,
        &conf.split,
    ) else {
        return fail(Dsn::new("4.3.5", "mail system configuration error"));
    };
    // The message as the command reads it.
    let mut cflags = 0;
    for (p, c) in [
        (flag::BLANK, copy::BLANK),
        (flag::DELIVERED, copy::DELIVERED),
        (flag::FROM, copy::FROM),
        (flag::ORIG_RCPT, copy::ORIG_RCPT),
        (flag::RETURN_PATH, copy::RETURN_PATH),
        (flag::DOT, copy::DOT),
        (flag::QUOTE, copy::QUOTE),
    ] {
        if attr.flags & p != 0 {
            cflags |= c;
        }
    }
    let mut input = Vec::new();
    let _ = fp.seek_set(req.data_offset as i64);
    let copied = mbox::mail_copy(
        &CopyAttr {
            sender: &sender,
            orig_rcpt: &req.rcpt[0].orig_addr,
            delivered: &req.rcpt[0].address,
            enable_orcpt: conf.enable_orcpt,
        },
        &mut fp,
        &mut input,
        None,
        cflags,
        &attr.eol,
    );
    if copied == Err(CopyError::Corrupt) {
        // Postfix defers without a per-recipient record.
        return Vec::new();
    }
    let command0 = argv.first().cloned().unwrap_or_default();
    let status = pipe_command(
        &PipeArgs {
            command: &command0,
            ids: conf.switch_ids.then_some((attr.uid, attr.gid)),
            env: Vec::new(),
            export: conf.export_environment.clone(),
            shell: "",
            cwd: attr.exec_dir.as_deref(),
            time_limit: Duration::from_secs(conf.time_limit),
            argv: Some(&argv),
        },
        &input,
    );
    match status {
        PipeStatus::Ok(text) => {
            let text = text.trim_end_matches([' ', '\t', '\n', '\r']);
            let saved = if text.is_empty() {
                String::new()
            } else {
                format!(" ({})", text.chars().take(100).collect::<String>())
            };
            report(
                Outcome::Sent,
                Dsn::new("2.0.0", format!("delivered via {service} service{saved}")),
                "sent",
            )
        }
        PipeStatus::Defer(d) => report(Outcome::Deferred, d, "deferred"),
        PipeStatus::Bounce(d) => report(Outcome::Bounced, d, "bounced"),
        PipeStatus::Corrupt => Vec::new(),
    }
}

/// The identity limits from main.cf (mail_owner, setgid_group).
pub fn forbidden(conf: &MailConf) -> (Forbidden, String, String) {
    let s = |n: &str| conf.lookup_eval(n).ok().flatten().unwrap_or_default();
    let owner = s("mail_owner");
    let sgid = s("setgid_group");
    let (ou, og) = SystemIds.user(&owner).unwrap_or((u32::MAX, u32::MAX));
    let sg = SystemIds.group(&sgid).unwrap_or(u32::MAX);
    (
        Forbidden {
            owner_uid: ou,
            owner_gid: og,
            sgid_gid: sg,
        },
        owner,
        sgid,
    )
}

/// The daemon entry: a single-server daemon that speaks the delivery
/// protocol with the queue manager on private/<service>.
pub fn main(args: Vec<std::ffi::OsString>) -> i32 {
    crate::master::server::single_server(args, service)
}

fn service(conn: &mut crate::master::server::Conn, server: &crate::master::server::Server) {
    let (forbid, owner, sgid) = forbidden(&server.conf);
    // As Postfix, the attributes are checked for every request: a bad
    // master.cf entry is a fatal error.
    let attr = match parse_attr(&server.options.args, &SystemIds, forbid, &owner, &sgid) {
        Ok(a) => a,
        Err(e) => msg::fatal(&e),
    };
    let service = server.options.service_name.clone();
    let conf = PipeConf::from_conf(&server.conf, &service).unwrap_or_else(|e| msg::fatal(&e.0));
    let qc = crate::global::mail_queue::QueueConf::from_conf(&server.conf)
        .unwrap_or_else(|e| msg::fatal(&e.0));
    crate::global::deliver_proto::serve_ext(conn, &qc, &service, &mut |req| {
        let results = deliver(req, &attr, &conf);
        // No result at all: the queue file is corrupt; Postfix defers the
        // request without a per-recipient record.
        crate::global::deliver_proto::AgentDone {
            incomplete: results.is_empty(),
            results,
            ..Default::default()
        }
    });
}

#[cfg(test)]
mod tests;
