//! The local delivery agent as a library: [`LocalAgent::deliver`] takes a
//! [`DeliveryRequest`] and returns one [`RecipientResult`] per final
//! recipient, with Postfix's reason texts and log lines.

use crate::global::deliver_request::{
    DeliveryRequest, Dsn, Outcome, Recipient, RecipientResult, flags, log_line, notify, now,
};
use crate::global::dict::flags as dflags;
use crate::global::expand::{self, Mode};
use crate::global::mail_conf::{ConfError, MailConf};
use crate::global::maps::Maps;
use crate::global::mbox::{self, CopyAttr, CopyError, LockParams, LockStyle, copy};
use crate::global::msg;
use crate::global::pipe_command::{PipeArgs, PipeStatus, pipe_command};
use crate::global::quote_822_local::{SplitParams, split_addr};
use crate::global::record::QueueStream;
use crate::global::tok822::{self, Token};
use crate::sys::privsep;
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

const EXP_ALIAS: u32 = 1;
const EXP_FWD: u32 = 2;
const EXP_INCL: u32 = 4;

const HDR_CMD: u32 = 1;
const HDR_FILE: u32 = 2;
const HDR_FWD: u32 = 4;

/// A password entry as the agent needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pw {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub dir: String,
    pub shell: String,
}

/// What trivial-rewrite answers for an address (resolve_clnt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// transport, nexthop, recipient.
    Ok(String, String, String),
    /// The resolver failed (defer).
    Fail,
    /// Bad address syntax (bounce), with the recipient as rewritten.
    Error(String),
}

/// Forwarding failed (the cleanup service is unavailable or refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardError;

/// What the agent asks its surroundings: the password database, the
/// address resolver, the cleanup service (forwarding) and other transports
/// (mailbox_transport, fallback_transport).
pub trait Env {
    /// getpwnam: Ok(None) for an unknown user, Err(errno) on error.
    fn getpwnam(&self, name: &str) -> Result<Option<Pw>, i32>;
    fn getpwuid(&self, uid: u32) -> Result<Option<Pw>, i32>;
    /// Rewrite to canonical form and resolve (tok822_rewrite + resolve).
    fn resolve(&mut self, addr: &str) -> Resolved;
    /// Resubmit the message to `rcpts` with `sender` (forward.c); returns
    /// the new queue ID, or Err when the message cannot be forwarded.
    fn forward(
        &mut self,
        req: &DeliveryRequest,
        sender: &str,
        delivered: &str,
        rcpts: &[Recipient],
    ) -> Result<String, ForwardError>;
    /// Hand a recipient to another transport (deliver_pass); returns the
    /// outcome and DSN that transport reported.
    fn pass(&mut self, transport: &str, req: &DeliveryRequest, rcpt: &Recipient) -> (Outcome, Dsn);
}

/// The system environment: the real password database, a resolver that
/// knows only `mydestination` (local addresses are delivered here, others
/// need a forwarding service), no cleanup and no other transports yet.
pub struct SystemEnv<'c> {
    pub relay: String,
    pub myorigin: String,
    pub mydestination: Vec<String>,
    /// cleanup as a library for forwarding; None: forwarding defers.
    /// Built on first use (most deliveries never forward).
    pub forwarder: Lazy<'c, Forwarder>,
    /// trivial-rewrite as a library; None: only `mydestination` is local.
    /// Built on first use.
    pub resolver: Lazy<'c, crate::daemons::trivial_rewrite::TrivialRewrite>,
}

/// A value built when it is first needed.
pub enum Lazy<'c, T> {
    Pending(Box<dyn FnOnce() -> Option<T> + 'c>),
    Ready(Option<T>),
}

impl<'c, T> Lazy<'c, T> {
    /// A value to build with `f` on first use.
    pub fn new(f: impl FnOnce() -> Option<T> + 'c) -> Lazy<'c, T> {
        Lazy::Pending(Box::new(f))
    }

    /// The value, built now if it was not yet.
    pub fn get(&mut self) -> Option<&mut T> {
        if matches!(self, Lazy::Pending(_)) {
            let Lazy::Pending(f) = std::mem::replace(self, Lazy::Ready(None)) else {
                unreachable!()
            };
            *self = Lazy::Ready(f());
        }
        match self {
            Lazy::Ready(v) => v.as_mut(),
            Lazy::Pending(_) => None,
        }
    }
}

/// What forwarding needs (forward.c): cleanup with its configuration and
/// log, the identity queue files are written as (mail_owner; the work
/// runs with that effective identity, see privsep::run_as), and the texts of the
/// Received: header.
pub struct Forwarder {
    pub cleanup: crate::daemons::cleanup::Cleanup,
    pub log: crate::daemons::logsink::MailLog,
    pub owner: (u32, u32),
    pub myhostname: String,
    pub mail_name: String,
    /// `forward` is in prepend_delivered_header.
    pub delivered_to: bool,
    /// Whom to wake when a message was queued (public/<queue_service_name>).
    pub queue_service: String,
}

impl Forwarder {
    /// Queue one copy of the request's message from `sender` to `rcpts`
    /// (forward_open + forward_append + forward_send).
    fn send(
        &mut self,
        req: &DeliveryRequest,
        sender: &str,
        delivered: &str,
        rcpts: &[Recipient],
    ) -> Result<String, ForwardError> {
        use crate::daemons::cleanup::{NoBouncer, flag as cflag};
        use crate::global::rec_type as rt;
        use crate::global::record::{Rec, rec_get};
        use crate::util::latin1;
        // The message content, as records, up to the extracted segment.
        let path = req.queue_file.to_string_lossy().to_string();
        let mut fp = QueueStream::open(&path).map_err(|_| ForwardError)?;
        fp.seek_set(req.data_offset as i64)
            .map_err(|_| ForwardError)?;
        let mut content: Vec<(u8, Vec<u8>)> = Vec::new();
        let mut buf = Vec::new();
        loop {
            match rec_get(&mut fp, &mut buf, 0) {
                Rec::Type(t) if t == rt::NORM || t == rt::CONT => content.push((t, buf.clone())),
                Rec::Type(t) if t == rt::XTRA => break,
                other => {
                    msg::warn(&format!(
                        "{}: bad record type: {} in message content",
                        req.queue_id,
                        match other {
                            Rec::Type(t) => t as i32,
                            _ => -1,
                        }
                    ));
                    return Err(ForwardError);
                }
            }
        }
        let mut flags = cflag::BOUNCE | cflag::MASK_INTERNAL;
        if req.smtputf8 {
            flags |= cflag::SMTPUTF8;
        }
        let (uid, gid) = self.owner;
        let cleanup = &mut self.cleanup;
        let log = &mut self.log;
        let myhostname = self.myhostname.clone();
        let mail_name = self.mail_name.clone();
        let delivered_to = self.delivered_to;
        let out = privsep::run_as(uid, gid, move || {
            let Ok(mut s) = cleanup.open(log, flags) else {
                return Vec::new();
            };
            let id = s.queue_id.clone();
            let t = now();
            let mut recs: Vec<(u8, Vec<u8>)> = vec![
                (rt::TIME, rt::time_payload(t.0, t.1).into_bytes()),
                (rt::FROM, latin1::encode(sender)),
            ];
            let attr = |n: &str, v: &str| (rt::ATTR, latin1::encode(&format!("{n}={v}")));
            if req.dsn_ret != 0 {
                recs.push(attr("ret_flags", &req.dsn_ret.to_string()));
            }
            if !req.dsn_envid.is_empty() {
                recs.push(attr("envelope_id", &req.dsn_envid));
            }
            for (n, v) in [
                ("log_client_name", &req.client.name),
                ("log_client_address", &req.client.addr),
                ("log_protocol_name", &req.client.proto),
                ("log_helo_name", &req.client.helo),
                ("sasl_method", &req.client.sasl_method),
                ("sasl_username", &req.client.sasl_username),
                ("sasl_sender", &req.client.sasl_sender),
                ("log_ident", &req.queue_id),
            ] {
                if !v.is_empty() {
                    recs.push(attr(n, v));
                }
            }
            recs.push(attr("rewrite_context", "remote"));
            for r in rcpts {
                if !r.dsn_orcpt.is_empty() {
                    recs.push(attr("dsn_orig_rcpt", &r.dsn_orcpt));
                }
                if r.dsn_notify != 0 {
                    recs.push(attr("notify_flags", &r.dsn_notify.to_string()));
                }
                if !r.orig_addr.is_empty() {
                    recs.push((rt::ORCP, latin1::encode(&r.orig_addr)));
                }
                recs.push((rt::RCPT, latin1::encode(&r.address)));
            }
            recs.push((rt::MESG, Vec::new()));
            recs.push((
                rt::NORM,
                latin1::encode(&format!("Received: by {myhostname} ({mail_name})")),
            ));
            recs.push((
                rt::NORM,
                latin1::encode(&format!(
                    "\tid {id}; {}",
                    crate::global::mail_date::mail_date(t.0)
                )),
            ));
            if delivered_to {
                recs.push((
                    rt::NORM,
                    latin1::encode(&format!(
                        "Delivered-To: {}",
                        crate::util::casefold::casefold(delivered)
                    )),
                ));
            }
            recs.extend(content);
            recs.push((rt::XTRA, Vec::new()));
            recs.push((rt::END, Vec::new()));
            for (t, d) in &recs {
                if !s.out_ok() {
                    break;
                }
                s.record(*t, d);
            }
            let o = s.finish(&mut NoBouncer);
            if o.status == 0 {
                o.queue_id.into_bytes()
            } else {
                Vec::new()
            }
        });
        match out {
            Ok(id) if !id.is_empty() => {
                crate::global::mail_trigger::trigger(
                    &format!("public/{}", self.queue_service),
                    crate::global::mail_trigger::WAKEUP,
                );
                Ok(String::from_utf8_lossy(&id).into_owned())
            }
            _ => Err(ForwardError),
        }
    }
}

/// Postfix's mypwd cache (mypwnam_err, mypwuid_err): the last password
/// entry found, by name or by uid, answers every later lookup of the same
/// name (or uid) for the rest of the process's life, until a lookup of
/// another user replaces it. A miss or an error is not remembered, and
/// forgets the entry as any lookup of another user does. So a local
/// process keeps delivering to a user as the passwd entry was when it
/// first looked, while a user added later is seen at once.
#[derive(Debug, Default)]
pub struct LastPw(Option<Pw>);

impl LastPw {
    /// The entry for `name`: the remembered one, or `lookup`'s.
    pub fn by_name(
        &mut self,
        name: &str,
        lookup: impl FnOnce(&str) -> Result<Option<Pw>, i32>,
    ) -> Result<Option<Pw>, i32> {
        match &self.0 {
            Some(pw) if pw.name == name => return Ok(Some(pw.clone())),
            _ => self.0 = None,
        }
        let pw = lookup(name)?;
        self.0.clone_from(&pw);
        Ok(pw)
    }

    /// The entry for `uid`: the remembered one, or `lookup`'s.
    pub fn by_uid(
        &mut self,
        uid: u32,
        lookup: impl FnOnce(u32) -> Result<Option<Pw>, i32>,
    ) -> Result<Option<Pw>, i32> {
        match &self.0 {
            Some(pw) if pw.uid == uid => return Ok(Some(pw.clone())),
            _ => self.0 = None,
        }
        let pw = lookup(uid)?;
        self.0.clone_from(&pw);
        Ok(pw)
    }
}

thread_local! {
    /// The system password database's [`LastPw`] (per process: agents are
    /// single-threaded).
    static SYSTEM_PW: std::cell::RefCell<LastPw> = std::cell::RefCell::new(LastPw::default());
}

fn system_getpwnam(name: &str) -> Result<Option<Pw>, i32> {
    Ok(crate::sys::pwd::getpwnam(name)?.map(|p| Pw {
        name: p.name,
        uid: p.uid,
        gid: p.gid,
        dir: p.dir,
        shell: p.shell,
    }))
}

impl Env for SystemEnv<'_> {
    fn getpwnam(&self, name: &str) -> Result<Option<Pw>, i32> {
        SYSTEM_PW.with(|c| c.borrow_mut().by_name(name, system_getpwnam))
    }
    fn getpwuid(&self, uid: u32) -> Result<Option<Pw>, i32> {
        SYSTEM_PW.with(|c| {
            c.borrow_mut()
                .by_uid(uid, |uid| match crate::sys::process::getpwuid(uid) {
                    Some(p) => system_getpwnam(&p.name),
                    None => Ok(None),
                })
        })
    }
    fn resolve(&mut self, addr: &str) -> Resolved {
        use crate::daemons::trivial_rewrite::{self as tr, Personality, RewriteContext};
        if let Some(t) = self.resolver.get() {
            // deliver_resolve_tree: rewrite to canonical form in the local
            // context, then resolve the internal form.
            let canon = t.rewrite(RewriteContext::Local, addr);
            let internal = crate::global::quote_822_local::unquote_822_local(&canon);
            let rep = t.resolve(Personality::Regular, "", &internal);
            if rep.flags & tr::FLAG_FAIL != 0 {
                return Resolved::Fail;
            }
            if rep.flags & tr::FLAG_ERROR != 0 {
                return Resolved::Error(rep.recipient);
            }
            return Resolved::Ok(rep.transport, rep.nexthop, rep.recipient);
        }
        let full = if addr.contains('@') {
            addr.to_string()
        } else {
            format!("{addr}@{}", self.myorigin)
        };
        let domain = full.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        if self
            .mydestination
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
        {
            Resolved::Ok(self.relay.clone(), domain.to_string(), full)
        } else {
            Resolved::Ok("smtp".into(), domain.to_string(), full)
        }
    }
    fn forward(
        &mut self,
        req: &DeliveryRequest,
        sender: &str,
        delivered: &str,
        rcpts: &[Recipient],
    ) -> Result<String, ForwardError> {
        match self.forwarder.get() {
            Some(f) => f.send(req, sender, delivered, rcpts),
            None => Err(ForwardError),
        }
    }
    /// deliver_pass: one recipient over private/<transport> with the
    /// delivery protocol. (Sent, _): done; (Deferred, empty status): the
    /// transport deferred and recorded it; (Deferred, dsn): unreachable.
    fn pass(&mut self, service: &str, req: &DeliveryRequest, rcpt: &Recipient) -> (Outcome, Dsn) {
        let (transport, nexthop) = match service.split_once(':') {
            Some((t, n)) if !n.is_empty() => (t, n.to_string()),
            Some((t, _)) => (t, req.nexthop.clone()),
            None => (service, req.nexthop.clone()),
        };
        if transport.is_empty() {
            msg::fatal(&format!("missing transport name in \"{service}\""));
        }
        msg::info(&format!(
            "{}: passing <{}> to transport={transport}",
            req.queue_id, rcpt.address
        ));
        let unavailable = || {
            (
                Outcome::Deferred,
                Dsn::new("4.3.0", "mail transport unavailable"),
            )
        };
        let path = format!("private/{transport}");
        let stream = match std::os::unix::net::UnixStream::connect(&path) {
            Ok(s) => s,
            Err(e) => {
                msg::warn(&format!(
                    "connect to transport {path}: {}",
                    crate::global::config_file::errno_text(&e)
                ));
                return unavailable();
            }
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(3600)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(300)));
        let mut one = req.clone();
        one.nexthop = nexthop;
        one.rcpt = vec![rcpt.clone()];
        match crate::global::deliver_proto::deliver_via(stream, &one) {
            Ok(r) if r.status == 0 => (Outcome::Sent, Dsn::default()),
            Ok(_) => (Outcome::Deferred, Dsn::default()),
            Err(e) if e == "bad protocol greeting" => {
                msg::warn(&format!("{path}: malformed response"));
                unavailable()
            }
            Err(_) => {
                msg::warn(&format!("{path}: malformed response"));
                (
                    Outcome::Deferred,
                    Dsn::new("4.3.0", "unknown mail transport error"),
                )
            }
        }
    }
}

/// The local agent's parameters.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub alias_maps: String,
    pub allow_files: u32,
    pub allow_commands: u32,
    pub deliver_hdr: u32,
    pub cmd_exp_filter: String,
    pub fwd_exp_filter: String,
    pub exec_exp_filter: String,
    pub command_time_limit: u64,
    pub default_uid: u32,
    pub default_gid: u32,
    pub delay_max_res: u32,
    pub lock: LockStyle,
    pub lock_params: LockParams,
    pub dup_filter_limit: usize,
    pub enable_orcpt: bool,
    pub expand_owner_alias: bool,
    pub fallback_transport: String,
    pub fallback_transport_maps: String,
    pub mailbox_transport_maps: String,
    pub forward_path: String,
    pub frozen_delivered: bool,
    pub home_mailbox: String,
    pub local_command_shell: String,
    pub luser_relay: String,
    pub mail_spool_directory: String,
    pub mailbox_command: String,
    pub mailbox_command_maps: String,
    pub mailbox_limit: u64,
    pub mailbox_transport: String,
    pub owner_request_special: bool,
    pub recipient_delimiter: String,
    pub reset_owner_alias: bool,
    pub strict_mailbox_ownership: bool,
    /// require_home_directory: defer when the recipient's home directory
    /// cannot be looked at (as the recipient).
    pub require_home_dir: bool,
    pub export_environment: Vec<String>,
    pub exec_directory: String,
    pub queue_directory: String,
    pub hostname: String,
    pub double_bounce_sender: String,
}

impl LocalConfig {
    /// `forward` is in prepend_delivered_header.
    pub fn deliver_hdr_forward(&self) -> bool {
        self.deliver_hdr & HDR_FWD != 0
    }
}

fn name_mask(param: &str, value: &str, names: &[(&str, u32)]) -> Result<u32, ConfError> {
    let mut m = 0;
    for w in value.split(|c: char| c == ',' || c.is_whitespace()) {
        if w.is_empty() {
            continue;
        }
        match names.iter().find(|(n, _)| n.eq_ignore_ascii_case(w)) {
            Some((_, b)) => m |= b,
            None => {
                return Err(ConfError(format!(
                    "unknown {param} value \"{w}\" in \"{value}\""
                )));
            }
        }
    }
    Ok(m)
}

impl LocalConfig {
    /// Read the parameters (with the `-o` overrides already applied to
    /// `conf`). Errors are Postfix's fatal texts.
    pub fn from_conf(conf: &MailConf) -> Result<LocalConfig, ConfError> {
        let s = |n: &str| conf.get_str(n, 0, 0);
        let raw = |n: &str| conf.raw(n).unwrap_or_default();
        let exp = [
            ("alias", EXP_ALIAS),
            ("forward", EXP_FWD),
            ("include", EXP_INCL),
        ];
        let hdr = [
            ("command", HDR_CMD),
            ("file", HDR_FILE),
            ("forward", HDR_FWD),
        ];
        let lock_text = s("mailbox_delivery_lock")?;
        let lock = LockStyle::parse(&lock_text).map_err(|w| {
            ConfError(format!(
                "unrecognized mailbox_delivery_lock value \"{w}\" in \"{lock_text}\""
            ))
        })?;
        if !(lock.fcntl || lock.flock || lock.dotlock) {
            return Err(ConfError(
                "parameter mailbox_delivery_lock specifies no applicable mailbox locking method"
                    .into(),
            ));
        }
        let mailbox_limit = conf.get_long("mailbox_size_limit", 0, 0)? as u64;
        let message_limit = conf.get_long("message_size_limit", 0, 0)? as u64;
        if mailbox_limit > 0 {
            if message_limit == 0 {
                return Err(ConfError(
                    "configuration error: mailbox_size_limit is limited but message_size_limit is unlimited".into(),
                ));
            }
            if mailbox_limit < message_limit {
                return Err(ConfError(
                    "configuration error: mailbox_size_limit is smaller than message_size_limit"
                        .into(),
                ));
            }
        }
        let privs = s("default_privs")?;
        let (default_uid, default_gid) = match crate::sys::pwd::getpwnam(&privs) {
            Ok(Some(p)) => (p.uid, p.gid),
            _ if crate::global::mail_params::non_root_mode() => {
                (crate::sys::geteuid(), crate::sys::getegid())
            }
            _ => {
                return Err(ConfError(format!(
                    "file {}/main.cf: parameter default_privs: unknown user name value: {privs}",
                    conf.config_dir
                )));
            }
        };
        Ok(LocalConfig {
            alias_maps: s("alias_maps")?,
            allow_files: name_mask("allow_mail_to_files", &s("allow_mail_to_files")?, &exp)?,
            allow_commands: name_mask(
                "allow_mail_to_commands",
                &s("allow_mail_to_commands")?,
                &exp,
            )?,
            deliver_hdr: name_mask(
                "prepend_delivered_header",
                &s("prepend_delivered_header")?,
                &hdr,
            )?,
            cmd_exp_filter: s("command_expansion_filter")?,
            fwd_exp_filter: s("forward_expansion_filter")?,
            exec_exp_filter: s("execution_directory_expansion_filter")?,
            command_time_limit: conf.get_time("command_time_limit", 's', 1, 0)? as u64,
            default_uid,
            default_gid,
            delay_max_res: conf.get_int("delay_logging_resolution_limit", 0, 6)? as u32,
            lock,
            lock_params: LockParams {
                tries: conf.get_int("deliver_lock_attempts", 1, 0)? as u32,
                delay_secs: conf.get_time("deliver_lock_delay", 's', 1, 0)? as u64,
                stale_secs: conf.get_time("stale_lock_time", 's', 1, 0)?,
            },
            dup_filter_limit: conf.get_int("duplicate_filter_limit", 0, 0)? as usize,
            enable_orcpt: conf.get_bool("enable_original_recipient")?,
            expand_owner_alias: conf.get_bool("expand_owner_alias")?,
            fallback_transport: s("fallback_transport")?,
            fallback_transport_maps: s("fallback_transport_maps")?,
            mailbox_transport_maps: s("mailbox_transport_maps")?,
            forward_path: raw("forward_path"),
            frozen_delivered: conf.get_bool("frozen_delivered_to")?,
            home_mailbox: s("home_mailbox")?,
            local_command_shell: s("local_command_shell")?,
            luser_relay: raw("luser_relay"),
            mail_spool_directory: s("mail_spool_directory")?,
            mailbox_command: raw("mailbox_command"),
            mailbox_command_maps: s("mailbox_command_maps")?,
            mailbox_limit,
            mailbox_transport: s("mailbox_transport")?,
            owner_request_special: conf.get_bool("owner_request_special")?,
            recipient_delimiter: s("recipient_delimiter")?,
            reset_owner_alias: conf.get_bool("reset_owner_alias")?,
            strict_mailbox_ownership: conf.get_bool("strict_mailbox_ownership")?,
            require_home_dir: conf.get_bool("require_home_directory")?,
            export_environment: s("export_environment")?
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect(),
            exec_directory: raw("command_execution_directory"),
            queue_directory: s("queue_directory")?,
            hostname: crate::sys::hostname(),
            double_bounce_sender: s("double_bounce_sender")?,
        })
    }
}

/// The delivery rights in effect (USER_ATTR).
#[derive(Debug, Clone, Default)]
struct UserAttr {
    uid: u32,
    gid: u32,
    home: Option<String>,
    #[allow(dead_code)]
    logname: Option<String>,
    shell: Option<String>,
}

impl UserAttr {
    fn set(pw: &Pw) -> UserAttr {
        UserAttr {
            uid: pw.uid,
            gid: pw.gid,
            home: Some(pw.dir.clone()),
            logname: Some(pw.name.clone()),
            shell: Some(pw.shell.clone()),
        }
    }
}

/// The per-expansion message attributes (DELIVER_ATTR), passed by value.
#[derive(Debug, Clone, Default)]
struct State {
    level: u32,
    index: usize,
    rcpt: Recipient,
    delivered: Option<String>,
    local: String,
    domain: Option<String>,
    user: String,
    extension: Option<String>,
    unmatched: Option<String>,
    exp_type: u32,
    exp_from: Option<String>,
    owner: Option<String>,
    sender: String,
}

/// Status of a (sub)delivery: 0 done (sent or bounced), 1 defer.
type Status = i32;
const DEFER: Status = 1;

/// The local delivery agent.
pub struct LocalAgent<'e> {
    pub cfg: LocalConfig,
    /// The service name (`relay=` in logs, and the transport that means
    /// "deliver here").
    pub service: String,
    env: &'e mut dyn Env,
    alias_maps: Maps,
    results: Vec<RecipientResult>,
    dup: HashSet<String>,
    loop_info: HashSet<String>,
    fp: Option<QueueStream>,
    forwards: Vec<(String, String, Recipient, usize)>,
    /// Request recipients another transport deferred (deliver_pass).
    passed_deferred: Vec<usize>,
    /// mailbox_transport_maps and fallback_transport_maps, opened on
    /// first use.
    transport_maps: [Option<Maps>; 2],
    /// mailbox_command_maps, opened on first use.
    command_maps: Option<Maps>,
}

impl<'e> LocalAgent<'e> {
    pub fn new(cfg: LocalConfig, service: &str, env: &'e mut dyn Env) -> LocalAgent<'e> {
        let alias_maps = Maps::create(
            "alias_maps",
            &cfg.alias_maps,
            dflags::LOCK | dflags::FOLD_FIX | dflags::UTF8_REQUEST,
        );
        LocalAgent {
            cfg,
            service: service.to_string(),
            env,
            alias_maps,
            results: Vec::new(),
            dup: HashSet::new(),
            loop_info: HashSet::new(),
            fp: None,
            forwards: Vec::new(),
            passed_deferred: Vec::new(),
            transport_maps: [None, None],
            command_maps: None,
        }
    }

    fn getpwnam(&mut self, name: &str) -> Result<Option<Pw>, i32> {
        self.env.getpwnam(name)
    }

    fn getpwuid(&mut self, uid: u32) -> Result<Option<Pw>, i32> {
        self.env.getpwuid(uid)
    }

    /// The request recipients (indices) of the last [`LocalAgent::deliver`]
    /// that another transport took over and deferred: that agent wrote the
    /// defer record; they must stay undone in the queue file.
    pub fn take_passed_deferred(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.passed_deferred)
    }

    /// Deliver every recipient of the request. Returns one result per
    /// final recipient (an alias can expand into several) and logs each.
    pub fn deliver(&mut self, req: &DeliveryRequest) -> Vec<RecipientResult> {
        self.results.clear();
        self.passed_deferred.clear();
        let path = req.queue_file.to_string_lossy().to_string();
        match QueueStream::open(&path) {
            Ok(fp) => self.fp = Some(fp),
            Err(e) => {
                msg::warn(&format!("open {path}: {}", mbox::errtext(&e)));
                for (i, r) in req.rcpt.iter().enumerate() {
                    let st = self.state0(req, i, r);
                    self.report(
                        req,
                        &st,
                        Outcome::Deferred,
                        Dsn::new("4.3.0", "queue file read error"),
                    );
                }
                return std::mem::take(&mut self.results);
            }
        }
        self.loop_info = self.delivered_headers(req);
        for (i, r) in req.rcpt.iter().enumerate() {
            self.dup.clear();
            self.forwards.clear();
            let st = self.state0(req, i, r);
            let usr = UserAttr::default();
            let status = self.deliver_recipient(req, st.clone(), usr);
            self.forward_finish(req, &st, status);
        }
        self.fp = None;
        std::mem::take(&mut self.results)
    }

    fn state0(&self, req: &DeliveryRequest, i: usize, r: &Recipient) -> State {
        State {
            index: i,
            rcpt: r.clone(),
            sender: req.sender.clone(),
            ..Default::default()
        }
    }

    fn report(&mut self, req: &DeliveryRequest, st: &State, outcome: Outcome, dsn: Dsn) -> Status {
        let log = log_line(
            &req.queue_id,
            &req.stats,
            &st.rcpt,
            &self.service,
            &dsn,
            outcome.status_word(),
            now(),
            self.cfg.delay_max_res,
        );
        msg::info(&log);
        let bounce_to = (st.sender != req.sender).then(|| st.sender.clone());
        self.results.push(RecipientResult {
            rcpt: st.rcpt.clone(),
            index: st.index,
            outcome,
            dsn,
            relay: self.service.clone(),
            bounce_to,
            log,
        });
        if outcome == Outcome::Deferred {
            DEFER
        } else {
            0
        }
    }

    fn sent(&mut self, req: &DeliveryRequest, st: &State, reason: String) -> Status {
        self.report(req, st, Outcome::Sent, Dsn::new("2.0.0", reason))
    }

    fn fail(&mut self, req: &DeliveryRequest, st: &State, dsn: Dsn) -> Status {
        let o = if dsn.is_soft() {
            Outcome::Deferred
        } else {
            Outcome::Bounced
        };
        self.report(req, st, o, dsn)
    }

    fn been_here(&mut self, key: String) -> bool {
        let k = key.to_lowercase();
        if self.dup.contains(&k) {
            return true;
        }
        if self.cfg.dup_filter_limit == 0 || self.dup.len() < self.cfg.dup_filter_limit {
            self.dup.insert(k);
        }
        false
    }

    /// The Delivered-To: addresses in the message headers (delivered_hdr).
    fn delivered_headers(&mut self, req: &DeliveryRequest) -> HashSet<String> {
        let mut set = HashSet::new();
        let Some(fp) = self.fp.as_mut() else {
            return set;
        };
        if fp.seek_set(req.data_offset as i64).is_err() {
            return set;
        }
        let mut buf = Vec::new();
        let mut cur: Option<String> = None;
        let flush = |h: Option<String>, set: &mut HashSet<String>| {
            if let Some(h) = h
                && let Some((name, value)) = h.split_once(':')
                && name.trim_end().eq_ignore_ascii_case("delivered-to")
            {
                set.insert(value.trim().to_lowercase());
            }
        };
        loop {
            match crate::global::record::rec_get(fp, &mut buf, 0) {
                crate::global::record::Rec::Type(t)
                    if t == crate::global::rec_type::NORM || t == crate::global::rec_type::CONT =>
                {
                    let line = crate::util::latin1::decode(&buf);
                    if line.starts_with([' ', '\t']) && cur.is_some() {
                        if let Some(c) = cur.as_mut() {
                            c.push_str(&line);
                        }
                        continue;
                    }
                    flush(cur.take(), &mut set);
                    let is_hdr = line
                        .find(':')
                        .map(|i| {
                            i > 0
                                && line[..i]
                                    .trim_end()
                                    .bytes()
                                    .all(|b| b.is_ascii_graphic() && b != b':')
                        })
                        .unwrap_or(false);
                    if !is_hdr {
                        break;
                    }
                    cur = Some(line);
                }
                _ => break,
            }
        }
        flush(cur, &mut set);
        set
    }

    fn split_params(&self) -> SplitParams {
        SplitParams {
            delimiters: self.cfg.recipient_delimiter.clone(),
            double_bounce_sender: self.cfg.double_bounce_sender.clone(),
            owner_request_special: self.cfg.owner_request_special,
        }
    }

    fn deliver_recipient(&mut self, req: &DeliveryRequest, mut st: State, usr: UserAttr) -> Status {
        st.level += 1;
        if self.been_here(format!("recipient {} {}", st.level, st.rcpt.address)) {
            return 0;
        }
        if self.loop_info.contains(&st.rcpt.address.to_lowercase()) {
            let d = Dsn::new(
                "5.4.6",
                format!("mail forwarding loop for {}", st.rcpt.address),
            );
            return self.bounce_workaround(req, st, d);
        }
        if st.delivered.is_none() {
            st.delivered = Some(st.rcpt.address.clone());
        }
        let mut local = st.rcpt.address.to_lowercase();
        st.domain = match local.rfind('@') {
            Some(i) => {
                let d = local[i + 1..].to_string();
                local.truncate(i);
                Some(d)
            }
            None => {
                msg::warn(&format!("no @ in recipient address: {local}"));
                None
            }
        };
        st.user = local.clone();
        st.extension = None;
        if !self.cfg.recipient_delimiter.is_empty()
            && let Some(i) = split_addr(&local, &self.split_params())
        {
            let ext = local[i + 1..].to_string();
            if ext.contains('/') {
                msg::warn(&format!(
                    "{}: address with illegal extension: {local}",
                    req.queue_id
                ));
                local.truncate(i);
            } else {
                st.extension = Some(ext);
            }
            st.user = local[..i].to_string();
        }
        st.local = local;
        st.unmatched = st.extension.clone();
        if st.user.is_empty() {
            let d = Dsn::new("5.1.3", format!("null username in \"{}\"", st.rcpt.address));
            return self.fail(req, &st, d);
        }
        self.deliver_switch(req, st, usr)
    }

    fn deliver_switch(&mut self, req: &DeliveryRequest, mut st: State, usr: UserAttr) -> Status {
        st.level += 1;
        if let Some(rest) = st.rcpt.address.strip_prefix('\\') {
            st.rcpt.address = rest.to_string();
            st.local = st.local.trim_start_matches('\\').to_string();
            st.user = st.user.trim_start_matches('\\').to_string();
            return match self.deliver_mailbox(req, st.clone(), usr.clone()) {
                Some(s) => s,
                None => self.deliver_unknown(req, st, usr),
            };
        }
        st.unmatched = None;
        let local = st.local.clone();
        if let Some(s) = self.deliver_alias(req, st.clone(), usr.clone(), &local) {
            return s;
        }
        if st.extension.is_some() {
            let user = st.user.clone();
            // propagate_unmatched_extensions includes "canonical, virtual"
            // by default, not "alias": the extension is not spliced in.
            if let Some(s) = self.deliver_alias(req, st.clone(), usr.clone(), &user) {
                return s;
            }
            st.unmatched = st.extension.clone();
        }
        if let Some(owner) = &st.owner
            && !owner.eq_ignore_ascii_case(&st.user)
        {
            return self.deliver_indirect(req, st);
        }
        if st.exp_type == EXP_INCL {
            return self.deliver_indirect(req, st);
        }
        // Back off when the home directory cannot be looked at, only with
        // require_home_directory (default no).
        let home = if self.cfg.require_home_dir {
            self.getpwnam(&st.user)
        } else {
            Ok(None)
        };
        match home {
            Err(e) => {
                msg::warn(&format!(
                    "error looking up passwd info for {}: {}",
                    st.user,
                    crate::sys::strerror(e)
                ));
                return self.fail(req, &st, Dsn::new("4.0.0", "user lookup error"));
            }
            Ok(Some(pw)) => {
                if let Err(e) = stat_as(&pw.dir, pw.uid, pw.gid) {
                    let d = Dsn::new(
                        "4.3.0",
                        format!(
                            "cannot access home directory {}: {}",
                            pw.dir,
                            mbox::errtext(&e)
                        ),
                    );
                    return self.fail(req, &st, d);
                }
            }
            Ok(None) => {}
        }
        if let Some(s) = self.deliver_dotforward(req, st.clone(), usr.clone()) {
            return s;
        }
        match self.deliver_mailbox(req, st.clone(), usr.clone()) {
            Some(s) => s,
            None => self.deliver_unknown(req, st, usr),
        }
    }

    fn alias_owner_uid(&self, spec: &str) -> Option<u32> {
        // The owner of the table's file decides the rights (Postfix's
        // dict owner); root (or a non-file table) is "trusted".
        let (ty, name) = spec.split_once(':')?;
        let file = match ty {
            "hash" | "btree" => format!("{name}.db"),
            "lmdb" => format!("{name}.lmdb"),
            "cdb" => format!("{name}.cdb"),
            "texthash" | "regexp" | "pcre" | "cidr" => name.to_string(),
            _ => return None,
        };
        std::fs::metadata(file).ok().map(|m| m.uid())
    }

    fn deliver_alias(
        &mut self,
        req: &DeliveryRequest,
        mut st: State,
        _usr: UserAttr,
        name: &str,
    ) -> Option<Status> {
        let usr;
        st.level += 1;
        if let Some(from) = &st.exp_from
            && from.eq_ignore_ascii_case(name)
        {
            return None;
        }
        if st.level > 100 {
            msg::warn(&format!("alias database loop for {name}"));
            let d = Dsn::new("5.4.6", format!("alias database loop for {name}"));
            return Some(self.fail(req, &st, d));
        }
        st.exp_from = Some(name.to_string());
        let specs: Vec<String> = crate::util::stringops::split_q(&self.cfg.alias_maps, ", \t\r\n");
        for k in 0..self.alias_maps.dicts.len() {
            let looked = self.alias_maps.dicts[k].lookup(name);
            let value = match looked {
                Ok(Some(v)) => v,
                Ok(None) => continue,
                Err(_) => {
                    let d = &self.alias_maps.dicts[k];
                    msg::warn(&format!(
                        "{}:{}: lookup of '{name}' failed",
                        d.type_name(),
                        d.name()
                    ));
                    return Some(self.fail(
                        req,
                        &st,
                        Dsn::new("4.3.0", "alias database unavailable"),
                    ));
                }
            };
            if req.flags & flags::MTA_VRFY != 0 {
                return Some(self.sent(req, &st, format!("aliased to {value}")));
            }
            st.exp_type = EXP_ALIAS;
            let owner_uid = specs
                .get(k)
                .and_then(|s| self.alias_owner_uid(s))
                .unwrap_or(0);
            if owner_uid == 0 {
                usr = UserAttr::default();
            } else {
                match self.getpwuid(owner_uid) {
                    Ok(Some(pw)) => usr = UserAttr::set(&pw),
                    _ => {
                        msg::warn(&format!(
                            "cannot find alias database owner for {}",
                            specs.get(k).cloned().unwrap_or_default()
                        ));
                        return Some(self.fail(
                            req,
                            &st,
                            Dsn::new("4.3.0", "cannot find alias database owner"),
                        ));
                    }
                }
            }
            let mut canon_owner = None;
            if self.cfg.owner_request_special {
                let owner = format!("owner-{name}");
                match self.alias_maps.find(&owner, 0) {
                    Ok(Some(rhs)) => {
                        let o = if self.cfg.expand_owner_alias {
                            rhs
                        } else {
                            owner
                        };
                        let o = self.canon_internal(&o);
                        st.owner = Some(o.clone());
                        st.sender = o.clone();
                        canon_owner = Some(o);
                    }
                    Ok(None) => {
                        if self.cfg.reset_owner_alias {
                            st.owner = None;
                        }
                    }
                    Err(_) => {
                        return Some(self.fail(
                            req,
                            &st,
                            Dsn::new("4.3.0", "alias database unavailable"),
                        ));
                    }
                }
            }
            if !self.cfg.frozen_delivered {
                st.delivered = Some(st.rcpt.address.clone());
            }
            let saved_notify = st.rcpt.dsn_notify;
            st.rcpt.dsn_notify = if saved_notify == notify::SUCCESS {
                notify::NEVER
            } else {
                saved_notify & !notify::SUCCESS
            };
            if canon_owner.is_some() {
                st.rcpt.dsn_orcpt.clear();
                st.rcpt.orig_addr.clear();
            }
            let mut count = 0;
            let status =
                self.deliver_token_string(req, st.clone(), usr.clone(), &value, &mut count);
            if count < 1 {
                msg::warn(&format!("no recipient in alias lookup result for {name}"));
                return Some(self.fail(req, &st, Dsn::new("4.3.0", "alias database unavailable")));
            }
            return Some(status);
        }
        None
    }

    fn canon_internal(&self, addr: &str) -> String {
        if addr.contains('@') {
            addr.to_string()
        } else {
            match self.env_resolve_domain() {
                Some(d) => format!("{addr}@{d}"),
                None => addr.to_string(),
            }
        }
    }

    fn env_resolve_domain(&self) -> Option<String> {
        None
    }

    /// Parse a list of addresses into their token groups (tok822_parse,
    /// simplified: top-level commas separate addresses; `<...>` selects the
    /// route address).
    fn parse_addresses(text: &str) -> Vec<Vec<Token>> {
        let toks = tok822::scan(text);
        let mut out = Vec::new();
        let mut cur: Vec<Token> = Vec::new();
        let mut angle = 0;
        let push = |cur: &mut Vec<Token>, out: &mut Vec<Vec<Token>>| {
            let group: Vec<Token> = std::mem::take(cur)
                .into_iter()
                .filter(|t| !matches!(t, Token::Comment(_)))
                .collect();
            if group.is_empty() {
                return;
            }
            if let Some(lt) = group.iter().position(|t| *t == Token::Op('<')) {
                let gt = group
                    .iter()
                    .rposition(|t| *t == Token::Op('>'))
                    .unwrap_or(group.len());
                if gt > lt + 1 {
                    out.push(group[lt + 1..gt].to_vec());
                }
                return;
            }
            out.push(group);
        };
        for t in toks {
            match t {
                Token::Op('<') => {
                    angle += 1;
                    cur.push(t);
                }
                Token::Op('>') => {
                    angle -= 1;
                    cur.push(t);
                }
                Token::Op(',') if angle <= 0 => push(&mut cur, &mut out),
                _ => cur.push(t),
            }
        }
        push(&mut cur, &mut out);
        out
    }

    fn deliver_token_string(
        &mut self,
        req: &DeliveryRequest,
        st: State,
        usr: UserAttr,
        text: &str,
        count: &mut usize,
    ) -> Status {
        let mut status = 0;
        for addr in Self::parse_addresses(text) {
            *count += 1;
            status |= self.deliver_token(req, st.clone(), usr.clone(), &addr);
        }
        status
    }

    fn deliver_token(
        &mut self,
        req: &DeliveryRequest,
        st: State,
        usr: UserAttr,
        addr: &[Token],
    ) -> Status {
        let text = tok822::internalize(addr);
        if text.starts_with('/') {
            self.deliver_file(req, st, usr, &text)
        } else if let Some(after) = text.strip_prefix('~') {
            if !after.starts_with('/') {
                msg::warn(&format!("bad home directory syntax for: {text}"));
                return self.fail(
                    req,
                    &st,
                    Dsn::new("5.3.5", "mail system configuration error"),
                );
            }
            match usr.home.clone() {
                None => {
                    msg::warn(&format!("unknown home directory for: {text}"));
                    self.fail(
                        req,
                        &st,
                        Dsn::new("5.3.5", "mail system configuration error"),
                    )
                }
                Some(h) if h == "/" => self.deliver_file(req, st, usr, after),
                Some(h) => {
                    let p = format!("{h}{after}");
                    self.deliver_file(req, st, usr, &p)
                }
            }
        } else if let Some(cmd) = text.strip_prefix('|') {
            if self.cfg.allow_commands & st.exp_type == 0 {
                return self.fail(req, &st, Dsn::new("5.7.1", "mail to command is restricted"));
            }
            let cmd = cmd.to_string();
            self.deliver_command(req, st, usr, &cmd)
        } else if text.len() >= 9 && text[..9].eq_ignore_ascii_case(":include:") {
            let p = text[9..].to_string();
            self.deliver_include(req, st, usr, &p)
        } else {
            self.deliver_resolve(req, st, usr, &text)
        }
    }

    fn deliver_resolve(
        &mut self,
        req: &DeliveryRequest,
        mut st: State,
        usr: UserAttr,
        addr: &str,
    ) -> Status {
        st.level += 1;
        match self.env.resolve(addr) {
            Resolved::Fail => self.fail(req, &st, Dsn::new("4.3.0", "address resolver failure")),
            Resolved::Error(r) => self.fail(
                req,
                &st,
                Dsn::new("5.1.3", format!("bad recipient address syntax: {r}")),
            ),
            Resolved::Ok(transport, _nexthop, mut rcpt) => {
                if let Some(ext) = &st.unmatched {
                    let delim = st.local[st.user.len()..].chars().next().unwrap_or('+');
                    match rcpt.rfind('@') {
                        Some(at) => rcpt.insert_str(at, &format!("{delim}{ext}")),
                        None => rcpt.push_str(&format!("{delim}{ext}")),
                    }
                }
                st.rcpt.address = rcpt;
                if transport == self.service {
                    self.deliver_recipient(req, st, usr)
                } else {
                    self.deliver_indirect(req, st)
                }
            }
        }
    }

    fn deliver_indirect(&mut self, req: &DeliveryRequest, st: State) -> Status {
        if self.been_here(format!("indirect {}", st.rcpt.address)) {
            return 0;
        }
        if req.flags & flags::MTA_VRFY != 0 {
            return self.sent(req, &st, format!("forwards to {}", st.rcpt.address));
        }
        let delivered = st.delivered.clone().unwrap_or_default();
        self.forwards
            .push((st.sender.clone(), delivered, st.rcpt.clone(), st.index));
        0
    }

    /// Resubmit what was queued for forwarding (forward_finish): one
    /// message per (sender, delivered) pair; log "forwarded as ID".
    fn forward_finish(&mut self, req: &DeliveryRequest, st: &State, _status: Status) {
        let fw = std::mem::take(&mut self.forwards);
        if fw.is_empty() {
            return;
        }
        let mut groups: Vec<(String, String, Vec<Recipient>)> = Vec::new();
        for (sender, delivered, r, _) in fw {
            match groups
                .iter_mut()
                .find(|g| g.0 == sender && g.1 == delivered)
            {
                Some(g) => g.2.push(r),
                None => groups.push((sender, delivered, vec![r])),
            }
        }
        for (sender, delivered, rcpts) in groups {
            let r = self.env.forward(req, &sender, &delivered, &rcpts);
            let mut top = st.clone();
            top.rcpt = req.rcpt[st.index].clone();
            match r {
                Ok(id) => {
                    self.sent(req, &top, format!("forwarded as {id}"));
                }
                Err(ForwardError) => {
                    self.fail(req, &top, Dsn::new("4.3.0", "unable to forward message"));
                }
            }
        }
    }

    fn bounce_workaround(&mut self, req: &DeliveryRequest, mut st: State, dsn: Dsn) -> Status {
        if self.cfg.owner_request_special {
            let lhs = |a: &str| {
                let mut o = format!("owner-{a}");
                if let Some(i) = o.rfind('@') {
                    o.truncate(i);
                }
                o
            };
            let mut owner = lhs(&st.rcpt.address);
            let mut found = self.alias_maps.find(&owner, 0);
            if let Ok(None) = found
                && let Some((stripped, _)) = crate::global::quote_822_local::strip_addr(
                    &st.rcpt.address,
                    &self.split_params(),
                )
            {
                owner = lhs(&stripped);
                found = self.alias_maps.find(&owner, 0);
            }
            match found {
                Err(_) => {
                    return self.fail(req, &st, Dsn::new("4.3.0", "alias database unavailable"));
                }
                Ok(Some(rhs)) => {
                    let o = if self.cfg.expand_owner_alias {
                        rhs
                    } else {
                        owner
                    };
                    let o = self.canon_internal(&o);
                    st.owner = Some(o.clone());
                    st.sender = o;
                }
                Ok(None) => {}
            }
        }
        self.fail(req, &st, dsn)
    }

    fn local_expand(
        &self,
        pattern: &str,
        st: &State,
        usr: &UserAttr,
        filter: Option<&str>,
    ) -> (String, u32, bool) {
        let mut out = String::new();
        let mut ext_matched = false;
        let st2 = st.clone();
        let usr2 = usr.clone();
        let status =
            expand::mac_expand(&mut out, pattern, 0, filter, &mut |name, mode| match name {
                "user" => Some(st2.user.clone()),
                "home" => usr2.home.clone(),
                "shell" => usr2.shell.clone(),
                "domain" => st2.domain.clone(),
                "local" | "mailbox" => Some(st2.local.clone()),
                "recipient" => Some(st2.rcpt.address.clone()),
                "extension" => {
                    if mode == Mode::Use {
                        ext_matched = true;
                    }
                    st2.extension.clone()
                }
                "recipient_delimiter" => {
                    let c = st2.local[st2.user.len().min(st2.local.len())..]
                        .chars()
                        .next()
                        .or_else(|| self.cfg.recipient_delimiter.chars().next());
                    c.map(|c| c.to_string())
                }
                _ => None,
            });
        (out, status, ext_matched)
    }

    fn deliver_dotforward(
        &mut self,
        req: &DeliveryRequest,
        mut st: State,
        _usr: UserAttr,
    ) -> Option<Status> {
        st.level += 1;
        if self.cfg.forward_path.is_empty() {
            return None;
        }
        let pw = match self.getpwnam(&st.user) {
            Err(e) => {
                msg::warn(&format!(
                    "error looking up passwd info for {}: {}",
                    st.user,
                    crate::sys::strerror(e)
                ));
                return Some(self.fail(req, &st, Dsn::new("4.0.0", "user lookup error")));
            }
            Ok(None) => return None,
            Ok(Some(pw)) => pw,
        };
        if !self.cfg.frozen_delivered {
            st.delivered = Some(st.rcpt.address.clone());
        }
        let usr = UserAttr::set(&pw);
        st.exp_type = EXP_FWD;
        st.owner = Some(st.user.clone());
        let mut found_path: Option<(String, std::fs::Metadata)> = None;
        let fp = self.cfg.forward_path.clone();
        let filter = self.cfg.fwd_exp_filter.clone();
        for lhs in fp
            .split([',', ' ', '\t', '\r', '\n'])
            .filter(|s| !s.is_empty())
        {
            let (path, status, ext_matched) = self.local_expand(lhs, &st, &usr, Some(&filter));
            if status & (expand::PARSE_ERROR | expand::PARSE_UNDEF) == 0 {
                let p2 = path.clone();
                let md = privsep::run_as(usr.uid, usr.gid, move || {
                    std::fs::symlink_metadata(&p2)
                        .map(|_| vec![1])
                        .unwrap_or_default()
                })
                .ok()
                .filter(|v| !v.is_empty())
                .and_then(|_| std::fs::symlink_metadata(&path).ok());
                if let Some(md) = md {
                    // propagate_unmatched_extensions has no "forward" by default.
                    let _ = ext_matched;
                    st.unmatched = None;
                    found_path = Some((path, md));
                    break;
                }
            }
        }
        let (path, md) = found_path?;
        if req.flags & flags::MTA_VRFY != 0 {
            return Some(self.sent(req, &st, format!("forward via file: {path}")));
        }
        if self.been_here(format!("forward {path}")) {
            let done = self
                .dup
                .contains(&format!("forward-done {path}").to_lowercase());
            return done.then_some(0);
        }
        st.exp_from = Some(st.local.clone());
        if !md.file_type().is_file() {
            msg::warn(&format!("file {path} is not a regular file"));
            return None;
        }
        if md.uid() != 0 && md.uid() != usr.uid {
            msg::warn(&format!("file {path} has bad owner uid {}", md.uid()));
            return None;
        }
        if md.mode() & 0o002 != 0 {
            msg::warn(&format!("file {path} is world writable"));
            return None;
        }
        let p2 = path.clone();
        let content = privsep::run_as(usr.uid, usr.gid, move || match std::fs::read(&p2) {
            Ok(mut v) => {
                v.insert(0, 1);
                v
            }
            Err(e) => {
                let mut v = vec![0];
                v.extend_from_slice(mbox::errtext(&e).as_bytes());
                v
            }
        })
        .unwrap_or_default();
        if content.first() != Some(&1) {
            msg::warn(&format!(
                "cannot open file {path}: {}",
                String::from_utf8_lossy(content.get(1..).unwrap_or_default())
            ));
            return None;
        }
        let saved_notify = st.rcpt.dsn_notify;
        st.rcpt.dsn_notify = if saved_notify == notify::SUCCESS {
            notify::NEVER
        } else {
            saved_notify & !notify::SUCCESS
        };
        let mut count = 0;
        let status = self.deliver_token_stream(req, st.clone(), usr, &content[1..], &mut count);
        if count > 0 {
            self.been_here(format!("forward-done {path}"));
            return Some(status);
        }
        None
    }

    fn deliver_token_stream(
        &mut self,
        req: &DeliveryRequest,
        st: State,
        usr: UserAttr,
        data: &[u8],
        count: &mut usize,
    ) -> Status {
        let text = crate::util::latin1::decode(data);
        // Logical lines: a line starting with white space continues the
        // previous one (vstring_fgets_bound reads physical lines; Postfix's
        // tokenizer treats newlines as white space within one line only).
        for line in text.split('\n') {
            if line.starts_with('#') {
                continue;
            }
            let s = self.deliver_token_string(req, st.clone(), usr.clone(), line, count);
            if s != 0 {
                return s;
            }
        }
        0
    }

    fn deliver_include(
        &mut self,
        req: &DeliveryRequest,
        mut st: State,
        mut usr: UserAttr,
        path: &str,
    ) -> Status {
        st.level += 1;
        if self.been_here(format!("include {} {path}", usr.uid)) {
            return 0;
        }
        st.exp_from = Some(st.local.clone());
        let cfgerr = Dsn::new("5.3.5", "mail system configuration error");
        if !path.starts_with('/') {
            msg::warn(&format!(":include:{path} uses a relative path"));
            return self.fail(req, &st, cfgerr);
        }
        let md = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                msg::warn(&format!(
                    "unable to lookup :include: file {path}: {}",
                    mbox::errtext(&e)
                ));
                return self.fail(req, &st, cfgerr);
            }
        };
        if !md.file_type().is_file() {
            msg::warn(&format!(":include: file {path} is not a regular file"));
            return self.fail(req, &st, cfgerr);
        }
        if md.mode() & 0o002 != 0 {
            msg::warn(&format!(":include: file {path} is world writable"));
            return self.fail(req, &st, cfgerr);
        }
        st.exp_type = EXP_INCL;
        if usr.uid == 0 {
            match self.getpwuid(md.uid()) {
                Ok(Some(pw)) => {
                    if pw.uid != 0 {
                        usr = UserAttr::set(&pw);
                    }
                }
                _ => {
                    msg::warn(&format!("cannot find username for uid {}", md.uid()));
                    msg::warn(&format!(
                        "{path}: cannot find :include: file owner username"
                    ));
                    return self.fail(
                        req,
                        &st,
                        Dsn::new("4.3.5", "mail system configuration error"),
                    );
                }
            }
        }
        if st.owner.is_none() {
            st.owner = Some(st.rcpt.address.clone());
        }
        let p2 = path.to_string();
        let (uid, gid) = if usr.uid == 0 {
            (crate::sys::geteuid(), crate::sys::getegid())
        } else {
            (usr.uid, usr.gid)
        };
        let content = privsep::run_as(uid, gid, move || match std::fs::read(&p2) {
            Ok(mut v) => {
                v.insert(0, 1);
                v
            }
            Err(e) => {
                let mut v = vec![0];
                v.extend_from_slice(mbox::errtext(&e).as_bytes());
                v
            }
        })
        .unwrap_or_default();
        if content.first() != Some(&1) {
            msg::warn(&format!(
                "cannot open include file {path}: {}",
                String::from_utf8_lossy(content.get(1..).unwrap_or_default())
            ));
            return self.fail(req, &st, cfgerr);
        }
        st.unmatched = None;
        let mut count = 0;
        self.deliver_token_stream(req, st, usr, &content[1..], &mut count)
    }

    fn deliver_unknown(&mut self, req: &DeliveryRequest, mut st: State, usr: UserAttr) -> Status {
        st.level += 1;
        if self.been_here(format!("deliver_unknown {}", st.local)) {
            return 0;
        }
        if let Some(s) = self.map_transport(req, &st, 1) {
            return s;
        }
        if !self.cfg.fallback_transport.is_empty() {
            let t = self.cfg.fallback_transport.clone();
            return self.pass(req, &st, &t);
        }
        if !self.cfg.luser_relay.is_empty() {
            st.unmatched = None;
            let (exp, _, _) = self.local_expand(&self.cfg.luser_relay.clone(), &st, &usr, None);
            let canon = self.canon_internal(&exp);
            if canon.eq_ignore_ascii_case(&st.rcpt.address) {
                let d = Dsn::new("5.1.1", format!("unknown user: \"{}\"", st.user));
                return self.fail(req, &st, d);
            }
            return self.deliver_resolve(req, st, usr, &exp);
        }
        if st.user.eq_ignore_ascii_case("MAILER-DAEMON")
            || st.user.eq_ignore_ascii_case("postmaster")
        {
            msg::warn(&format!("required alias not found: {}", st.user));
            return self.sent(req, &st, "discarded".into());
        }
        let d = Dsn::new("5.1.1", format!("unknown user: \"{}\"", st.user));
        self.fail(req, &st, d)
    }

    /// mailbox_transport_maps (`which` 0) or fallback_transport_maps (1),
    /// looked up by the user name: the hand-off when the table names a
    /// transport, a deferral when the lookup failed, None otherwise.
    fn map_transport(&mut self, req: &DeliveryRequest, st: &State, which: usize) -> Option<Status> {
        let (title, spec) = if which == 0 {
            (
                "mailbox_transport_maps",
                self.cfg.mailbox_transport_maps.clone(),
            )
        } else {
            (
                "fallback_transport_maps",
                self.cfg.fallback_transport_maps.clone(),
            )
        };
        if spec.is_empty() {
            return None;
        }
        let maps = self.transport_maps[which].get_or_insert_with(|| {
            Maps::create(
                title,
                &spec,
                dflags::LOCK | dflags::NO_REGSUB | dflags::UTF8_REQUEST,
            )
        });
        match maps.find(&st.user, 0) {
            Ok(Some(t)) => Some(self.pass(req, st, &t)),
            Ok(None) => None,
            Err(_) => Some(self.fail(req, st, Dsn::new("4.3.0", "table lookup failure"))),
        }
    }

    /// Hand the recipient to another transport (deliver_pass): that agent
    /// logs and records the outcome itself. Only when it cannot be reached
    /// is the recipient deferred here, with `relay=none`.
    fn pass(&mut self, req: &DeliveryRequest, st: &State, transport: &str) -> Status {
        // The -1 offset: the other agent must not mark the recipient done;
        // this agent does when the hand-off succeeded (Postfix's hint to
        // deliver_completed).
        let mut rcpt = st.rcpt.clone();
        rcpt.offset = -1;
        let (outcome, dsn) = self.env.pass(transport, req, &rcpt);
        match outcome {
            Outcome::Deferred if dsn.status.is_empty() => {
                self.passed_deferred.push(st.index);
                DEFER
            }
            Outcome::Deferred => {
                let saved = std::mem::replace(&mut self.service, "none".into());
                let r = self.report(req, st, Outcome::Deferred, dsn);
                self.service = saved;
                r
            }
            _ => 0,
        }
    }

    fn deliver_mailbox(
        &mut self,
        req: &DeliveryRequest,
        mut st: State,
        usr: UserAttr,
    ) -> Option<Status> {
        st.level += 1;
        if self.been_here(format!("mailbox {}", st.local)) {
            return Some(0);
        }
        if let Some(s) = self.map_transport(req, &st, 0) {
            return Some(s);
        }
        if !self.cfg.mailbox_transport.is_empty() {
            let t = self.cfg.mailbox_transport.clone();
            return Some(self.pass(req, &st, &t));
        }
        let pw = match self.getpwnam(&st.user) {
            Err(e) => {
                msg::warn(&format!(
                    "error looking up passwd info for {}: {}",
                    st.user,
                    crate::sys::strerror(e)
                ));
                return Some(self.fail(req, &st, Dsn::new("4.0.0", "user lookup error")));
            }
            Ok(None) => return None,
            Ok(Some(pw)) => pw,
        };
        let _ = usr;
        let usr = UserAttr::set(&pw);
        if !self.cfg.mailbox_command_maps.is_empty() {
            let spec = self.cfg.mailbox_command_maps.clone();
            let maps = self.command_maps.get_or_insert_with(|| {
                Maps::create(
                    "mailbox_command_maps",
                    &spec,
                    dflags::LOCK
                        | dflags::NO_REGSUB
                        | dflags::NO_PROXY
                        | dflags::NO_UNAUTH
                        | dflags::UTF8_REQUEST,
                )
            });
            match maps.find(&st.user, 0) {
                Ok(Some(c)) => return Some(self.deliver_command(req, st, usr, &c)),
                Ok(None) => {}
                Err(_) => {
                    return Some(self.fail(req, &st, Dsn::new("4.3.0", "table lookup failure")));
                }
            }
        }
        if !self.cfg.mailbox_command.is_empty() {
            let c = self.cfg.mailbox_command.clone();
            return Some(self.deliver_command(req, st, usr, &c));
        }
        if self.cfg.home_mailbox.ends_with('/') {
            let p = format!("{}/{}", pw.dir, self.cfg.home_mailbox);
            return Some(self.deliver_maildir(req, st, usr, &p));
        }
        if self.cfg.mail_spool_directory.ends_with('/') {
            let p = format!("{}{}/", self.cfg.mail_spool_directory, st.user);
            return Some(self.deliver_maildir(req, st, usr, &p));
        }
        Some(self.deliver_mailbox_file(req, st, usr))
    }

    fn copy_attr_flags(&self, base: u32, hdr: u32) -> u32 {
        if self.cfg.deliver_hdr & hdr == 0 {
            base & !copy::DELIVERED
        } else {
            base
        }
    }

    fn deliver_mailbox_file(
        &mut self,
        req: &DeliveryRequest,
        mut st: State,
        usr: UserAttr,
    ) -> Status {
        st.level += 1;
        if req.flags & flags::MTA_VRFY != 0 {
            return self.sent(req, &st, "delivers to mailbox".into());
        }
        if !self.cfg.frozen_delivered {
            st.delivered = Some(st.rcpt.address.clone());
        }
        let (spool_dir, mailbox) = if !self.cfg.home_mailbox.is_empty() {
            (
                None,
                format!(
                    "{}/{}",
                    usr.home.clone().unwrap_or_default(),
                    self.cfg.home_mailbox
                ),
            )
        } else {
            (
                Some(self.cfg.mail_spool_directory.clone()),
                format!("{}/{}", self.cfg.mail_spool_directory, st.user),
            )
        };
        let (spool_uid, spool_gid) = match spool_dir.as_ref().map(std::fs::metadata) {
            None | Some(Err(_)) => (usr.uid, usr.gid),
            Some(Ok(m)) if m.mode() & 0o002 != 0 => (usr.uid, usr.gid),
            Some(Ok(m)) if m.mode() & 0o020 != 0 => (usr.uid, m.gid()),
            Some(Ok(_)) => (0, 0),
        };
        let chown = (spool_uid != usr.uid).then_some((usr.uid, usr.gid));
        let flags = self.copy_attr_flags(copy::MBOX, HDR_FILE);
        let delivered = st.delivered.clone().unwrap_or_default();
        let res = self.write_as(
            req,
            spool_uid,
            spool_gid,
            &st,
            &delivered,
            flags,
            WriteTarget::Mailbox {
                path: mailbox.clone(),
                chown,
                strict_uid: self.cfg.strict_mailbox_ownership.then_some(usr.uid),
            },
        );
        match res {
            WriteResult::Ok => self.sent(req, &st, "delivered to mailbox".into()),
            WriteResult::Corrupt => DEFER,
            WriteResult::Fail(d, warn) => {
                if let Some(w) = warn {
                    msg::warn(&w);
                }
                let d = Dsn::new(
                    &d.status,
                    format!(
                        "cannot update mailbox {mailbox} for user {}. {}",
                        st.user, d.reason
                    ),
                );
                self.fail(req, &st, d)
            }
        }
    }

    fn deliver_maildir(
        &mut self,
        req: &DeliveryRequest,
        mut st: State,
        usr: UserAttr,
        path: &str,
    ) -> Status {
        st.level += 1;
        if req.flags & flags::MTA_VRFY != 0 {
            return self.sent(req, &st, "delivers to maildir".into());
        }
        if !self.cfg.frozen_delivered {
            st.delivered = Some(st.rcpt.address.clone());
        }
        let flags = self.copy_attr_flags(
            copy::TOFILE | copy::RETURN_PATH | copy::ORIG_RCPT | copy::DELIVERED,
            HDR_FILE,
        );
        let delivered = st.delivered.clone().unwrap_or_default();
        let res = self.write_as(
            req,
            usr.uid,
            usr.gid,
            &st,
            &delivered,
            flags,
            WriteTarget::Maildir {
                path: path.to_string(),
                hostname: self.cfg.hostname.clone(),
            },
        );
        match res {
            WriteResult::Ok => self.sent(req, &st, "delivered to maildir".into()),
            WriteResult::Corrupt => DEFER,
            WriteResult::Fail(d, eacces) => {
                if eacces.is_some() {
                    msg::warn(&format!(
                        "maildir access problem for UID/GID={}/{}: {}",
                        usr.uid, usr.gid, d.reason
                    ));
                    msg::warn("perhaps you need to create the maildirs in advance");
                }
                let d = Dsn::new(&d.status, format!("maildir delivery failed: {}", d.reason));
                self.fail(req, &st, d)
            }
        }
    }

    fn deliver_file(
        &mut self,
        req: &DeliveryRequest,
        mut st: State,
        mut usr: UserAttr,
        path: &str,
    ) -> Status {
        st.level += 1;
        if self.been_here(format!("file {} {path}", usr.uid)) {
            return 0;
        }
        if self.cfg.allow_files & st.exp_type == 0 {
            return self.bounce_workaround(
                req,
                st,
                Dsn::new("5.7.1", "mail to file is restricted"),
            );
        }
        if req.flags & flags::MTA_VRFY != 0 {
            return self.sent(req, &st, format!("delivers to file: {path}"));
        }
        if usr.uid == 0 {
            usr.uid = self.cfg.default_uid;
        }
        if usr.gid == 0 {
            usr.gid = self.cfg.default_gid;
        }
        if path.ends_with('/') {
            return self.deliver_maildir(req, st, usr, path);
        }
        let flags = self.copy_attr_flags(copy::MBOX, HDR_FILE);
        let delivered = st.delivered.clone().unwrap_or_default();
        let res = self.write_as(
            req,
            usr.uid,
            usr.gid,
            &st,
            &delivered,
            flags,
            WriteTarget::File {
                path: path.to_string(),
            },
        );
        match res {
            WriteResult::Ok => self.sent(req, &st, format!("delivered to file: {path}")),
            WriteResult::Corrupt => DEFER,
            WriteResult::Fail(d, warn) => {
                if let Some(w) = warn {
                    msg::warn(&w);
                }
                let d = Dsn::new(
                    &d.status,
                    format!("cannot append message to file {path}: {}", d.reason),
                );
                self.bounce_workaround(req, st, d)
            }
        }
    }

    fn deliver_command(
        &mut self,
        req: &DeliveryRequest,
        mut st: State,
        mut usr: UserAttr,
        command: &str,
    ) -> Status {
        st.level += 1;
        if self.been_here(format!("command {}:{} {command}", st.user, usr.uid)) {
            return 0;
        }
        if req.flags & flags::MTA_VRFY != 0 {
            return self.sent(req, &st, format!("delivers to command: {command}"));
        }
        if usr.uid == 0 {
            usr.uid = self.cfg.default_uid;
        }
        if usr.gid == 0 {
            usr.gid = self.cfg.default_gid;
        }
        let flags = self.copy_attr_flags(
            copy::FROM | copy::RETURN_PATH | copy::ORIG_RCPT | copy::DELIVERED,
            HDR_CMD,
        );
        let mut env: Vec<(String, String)> = Vec::new();
        if let Some(h) = &usr.home {
            env.push(("HOME".into(), h.clone()));
        }
        env.push(("LOGNAME".into(), st.user.clone()));
        env.push(("USER".into(), st.user.clone()));
        env.push(("SENDER".into(), st.sender.clone()));
        env.push(("RECIPIENT".into(), st.rcpt.address.clone()));
        env.push(("LOCAL".into(), st.local.clone()));
        if let Some(s) = &usr.shell {
            env.push(("SHELL".into(), s.clone()));
        }
        if let Some(d) = &st.domain {
            env.push(("DOMAIN".into(), d.clone()));
        }
        if let Some(e) = &st.extension {
            env.push(("EXTENSION".into(), e.clone()));
        }
        if !st.rcpt.orig_addr.is_empty() {
            env.push(("ORIGINAL_RECIPIENT".into(), st.rcpt.orig_addr.clone()));
        }
        for (n, v) in [
            ("CLIENT_HOSTNAME", &req.client.name),
            ("CLIENT_ADDRESS", &req.client.addr),
            ("CLIENT_HELO", &req.client.helo),
            ("CLIENT_PROTOCOL", &req.client.proto),
            ("SASL_METHOD", &req.client.sasl_method),
            ("SASL_SENDER", &req.client.sasl_sender),
            ("SASL_USERNAME", &req.client.sasl_username),
        ] {
            if !v.is_empty() {
                env.push((n.into(), v.clone()));
            }
        }
        let filter = &self.cfg.cmd_exp_filter;
        for (_, v) in env.iter_mut() {
            *v = v
                .chars()
                .map(|c| if filter.contains(c) { c } else { '_' })
                .collect();
        }
        let (exec_dir, est, _) = self.local_expand(
            &self.cfg.exec_directory.clone(),
            &st,
            &usr,
            Some(&self.cfg.exec_exp_filter.clone()),
        );
        if est & expand::PARSE_ERROR != 0 {
            msg::warn(&format!(
                "bad parameter value syntax for command_execution_directory: {}",
                self.cfg.exec_directory
            ));
            return self.bounce_workaround(
                req,
                st,
                Dsn::new("4.3.5", "mail system configuration error"),
            );
        }
        // The message as the command will read it.
        let delivered = st.delivered.clone().unwrap_or_default();
        let mut input = Vec::new();
        let copied = {
            let fp = self.fp.as_mut().expect("queue file open");
            let _ = fp.seek_set(req.data_offset as i64);
            mbox::mail_copy(
                &CopyAttr {
                    sender: &st.sender,
                    orig_rcpt: &st.rcpt.orig_addr,
                    delivered: &delivered,
                    enable_orcpt: self.cfg.enable_orcpt,
                },
                fp,
                &mut input,
                None,
                flags,
                "\n",
            )
        };
        if copied == Err(CopyError::Corrupt) {
            return DEFER;
        }
        let ids = privsep::needs_switch(usr.uid, usr.gid).then_some((usr.uid, usr.gid));
        let cwd = if exec_dir.is_empty() {
            Some(self.cfg.queue_directory.clone()).filter(|d| std::path::Path::new(d).is_dir())
        } else {
            Some(exec_dir)
        };
        let status = pipe_command(
            &PipeArgs {
                command,
                ids,
                env,
                export: self.cfg.export_environment.clone(),
                shell: &self.cfg.local_command_shell.clone(),
                cwd: cwd.as_deref(),
                time_limit: Duration::from_secs(self.cfg.command_time_limit),
                argv: None,
            },
            &input,
        );
        match status {
            PipeStatus::Ok(_) => self.sent(req, &st, format!("delivered to command: {command}")),
            PipeStatus::Bounce(d) | PipeStatus::Defer(d) => self.bounce_workaround(req, st, d),
            PipeStatus::Corrupt => DEFER,
        }
    }

    /// Write the message to a mailbox, file or maildir as uid/gid (with
    /// the effective identity switched, see privsep::run_as).
    #[allow(clippy::too_many_arguments)]
    fn write_as(
        &mut self,
        req: &DeliveryRequest,
        uid: u32,
        gid: u32,
        st: &State,
        delivered: &str,
        flags: u32,
        target: WriteTarget,
    ) -> WriteResult {
        let cfg = &self.cfg;
        let fp = self.fp.as_mut().expect("queue file open");
        let attr_sender = st.sender.clone();
        let orig = st.rcpt.orig_addr.clone();
        let delivered = delivered.to_string();
        let enable_orcpt = cfg.enable_orcpt;
        let lock = cfg.lock;
        let lock_params = cfg.lock_params;
        let limit = (cfg.mailbox_limit > 0).then_some(cfg.mailbox_limit);
        let offset = req.data_offset as i64;
        let out = privsep::run_as(uid, gid, move || {
            let attr = CopyAttr {
                sender: &attr_sender,
                orig_rcpt: &orig,
                delivered: &delivered,
                enable_orcpt,
            };
            let _ = fp.seek_set(offset);
            write_target(&target, &attr, fp, flags, lock, &lock_params, limit).encode()
        });
        match out {
            Ok(bytes) => WriteResult::decode(&bytes),
            Err(e) => WriteResult::Fail(Dsn::new("4.3.0", e.to_string()), None),
        }
    }
}

/// Where [`LocalAgent::write_as`] writes.
pub(crate) enum WriteTarget {
    Mailbox {
        path: String,
        chown: Option<(u32, u32)>,
        strict_uid: Option<u32>,
    },
    File {
        path: String,
    },
    Maildir {
        path: String,
        hostname: String,
    },
}

/// The result of a write, as it crosses the pipe from the child.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WriteResult {
    Ok,
    Corrupt,
    /// The DSN, and a warning to log (or, for maildir, Some when EACCES).
    Fail(Dsn, Option<String>),
}

impl WriteResult {
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            WriteResult::Ok => b"O".to_vec(),
            WriteResult::Corrupt => b"C".to_vec(),
            WriteResult::Fail(d, w) => {
                let mut v = format!("F{}\0{}\0", d.status, d.reason).into_bytes();
                if let Some(w) = w {
                    v.extend_from_slice(w.as_bytes());
                }
                v
            }
        }
    }

    pub(crate) fn decode(b: &[u8]) -> WriteResult {
        match b.first() {
            Some(b'O') => WriteResult::Ok,
            Some(b'C') => WriteResult::Corrupt,
            Some(b'F') => {
                let s = String::from_utf8_lossy(&b[1..]).to_string();
                let mut it = s.splitn(3, '\0');
                let status = it.next().unwrap_or("4.3.0").to_string();
                let reason = it.next().unwrap_or("").to_string();
                let w = it.next().filter(|w| !w.is_empty()).map(str::to_string);
                WriteResult::Fail(Dsn::new(&status, reason), w)
            }
            _ => WriteResult::Fail(Dsn::new("4.3.0", "delivery process failed"), None),
        }
    }
}

/// Append the message to a mailbox or file, or write a maildir file
/// (Postfix's deliver_mailbox_file, deliver_file, deliver_maildir, the
/// part that runs with the recipient's rights).
pub(crate) fn write_target(
    target: &WriteTarget,
    attr: &CopyAttr,
    fp: &mut QueueStream,
    flags: u32,
    lock: LockStyle,
    lock_params: &LockParams,
    limit: Option<u64>,
) -> WriteResult {
    match target {
        WriteTarget::Mailbox {
            path,
            chown,
            strict_uid,
        } => {
            let m = match mbox::mbox_open(path, 0o600, *chown, lock, lock_params, "5.2.0") {
                Ok(m) => m,
                Err(d) => return WriteResult::Fail(d, None),
            };
            if !m.meta.file_type().is_file() {
                return WriteResult::Fail(
                    Dsn::new("5.2.0", format!("destination {path} is not a regular file")),
                    None,
                );
            }
            if let Some(u) = strict_uid
                && m.meta.uid() != *u
            {
                return WriteResult::Fail(
                    Dsn::new("4.2.0", format!("destination {path} is not owned by recipient")),
                    Some("specify \"strict_mailbox_ownership = no\" to ignore mailbox ownership mismatch".into()),
                );
            }
            copy_into(&m, attr, fp, flags, limit)
        }
        WriteTarget::File { path } => {
            let lock = LockStyle {
                dot_may_fail: true,
                ..lock
            };
            let m = match mbox::mbox_open(path, 0o600, None, lock, lock_params, "5.2.0") {
                Ok(m) => m,
                Err(d) => return WriteResult::Fail(d, None),
            };
            if m.meta.file_type().is_file() && m.meta.mode() & 0o111 != 0 {
                return WriteResult::Fail(Dsn::new("5.7.1", "file is executable"), None);
            }
            let flags = if m.meta.file_type().is_file() {
                flags
            } else {
                flags & !copy::TOFILE
            };
            copy_into(&m, attr, fp, flags, limit)
        }
        WriteTarget::Maildir { path, hostname } => {
            maildir_write(path, hostname, attr, fp, flags, "5.2.0")
        }
    }
}

pub(crate) fn copy_into(
    m: &mbox::Mbox,
    attr: &CopyAttr,
    fp: &mut QueueStream,
    flags: u32,
    limit: Option<u64>,
) -> WriteResult {
    let size = m.file.metadata().map(|md| md.len()).unwrap_or(0);
    let mut w = mbox::Limited {
        inner: &m.file,
        written: size,
        limit,
    };
    match mbox::mail_copy(attr, fp, &mut w, Some(&m.file), flags, "\n") {
        Ok(()) => WriteResult::Ok,
        Err(CopyError::Corrupt) => WriteResult::Corrupt,
        Err(CopyError::Io(d)) => WriteResult::Fail(d, None),
    }
}

/// Deliver into a maildir: `tmp/SEC.PPID.HOST`, then a hard link to
/// `new/SEC.VDEVIINOMUSEC.HOST` (Postfix's naming).
pub(crate) fn maildir_write(
    path: &str,
    hostname: &str,
    attr: &CopyAttr,
    fp: &mut QueueStream,
    flags: u32,
    def_dsn: &str,
) -> WriteResult {
    use std::os::unix::fs::OpenOptionsExt;
    let (sec, usec) = now();
    let newdir = format!("{path}new/");
    let tmpdir = format!("{path}tmp/");
    let curdir = format!("{path}cur/");
    let tmpfile = format!("{tmpdir}{sec}.P{}.{hostname}", std::process::id());
    let open = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmpfile)
    };
    let eacces = |e: &std::io::Error| (e.raw_os_error() == Some(libc::EACCES)).then(String::new);
    let f = match open() {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match make_dirs(&tmpdir).and_then(|_| open()) {
                Ok(f) => f,
                Err(e) => {
                    return WriteResult::Fail(
                        Dsn::new(
                            mbox::mbox_dsn(e.raw_os_error().unwrap_or(0), def_dsn),
                            format!("create maildir file {tmpfile}: {}", mbox::errtext(&e)),
                        ),
                        eacces(&e),
                    );
                }
            }
        }
        Err(e) => {
            return WriteResult::Fail(
                Dsn::new(
                    mbox::mbox_dsn(e.raw_os_error().unwrap_or(0), def_dsn),
                    format!("create maildir file {tmpfile}: {}", mbox::errtext(&e)),
                ),
                eacces(&e),
            );
        }
    };
    let md = match f.metadata() {
        Ok(m) => m,
        Err(e) => {
            return WriteResult::Fail(Dsn::new("4.3.0", format!("fstat {tmpfile}: {e}")), None);
        }
    };
    let newfile = format!(
        "{newdir}{sec}.V{:x}I{:x}M{usec}.{hostname}",
        md.dev(),
        md.ino()
    );
    let mut w = &f;
    let mut result = match mbox::mail_copy(attr, fp, &mut w, Some(&f), flags, "\n") {
        Ok(()) => WriteResult::Ok,
        Err(CopyError::Corrupt) => WriteResult::Corrupt,
        Err(CopyError::Io(d)) => WriteResult::Fail(d, None),
    };
    drop(f);
    if result == WriteResult::Ok {
        let link = || std::fs::hard_link(&tmpfile, &newfile);
        if let Err(e) = link() {
            let retry = if e.kind() == std::io::ErrorKind::NotFound {
                let _ = make_dirs(&curdir);
                make_dirs(&newdir).and_then(|_| link())
            } else {
                Err(e)
            };
            if let Err(e) = retry {
                result = WriteResult::Fail(
                    Dsn::new(
                        mbox::mbox_dsn(e.raw_os_error().unwrap_or(0), def_dsn),
                        format!("create maildir file {newfile}: {}", mbox::errtext(&e)),
                    ),
                    eacces(&e),
                );
            }
        }
    }
    if let Err(e) = std::fs::remove_file(&tmpfile) {
        msg::warn(&format!("remove {tmpfile}: {}", mbox::errtext(&e)));
    }
    result
}

/// stat(2) of `path` as `uid`/`gid` (Postfix's stat_as).
fn stat_as(path: &str, uid: u32, gid: u32) -> std::io::Result<()> {
    let out = privsep::run_as(uid, gid, || match std::fs::metadata(path) {
        Ok(_) => Vec::new(),
        Err(e) => e.raw_os_error().unwrap_or(libc::EIO).to_ne_bytes().to_vec(),
    })?;
    match <[u8; 4]>::try_from(out.as_slice()) {
        Ok(b) => Err(std::io::Error::from_raw_os_error(i32::from_ne_bytes(b))),
        Err(_) => Ok(()),
    }
}

fn make_dirs(path: &str) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(name: &str, uid: u32, dir: &str) -> Pw {
        Pw {
            name: name.into(),
            uid,
            gid: uid,
            dir: dir.into(),
            shell: "/bin/sh".into(),
        }
    }

    #[test]
    fn last_pw_is_postfix_mypwd() {
        let mut c = LastPw::default();
        let calls = std::cell::Cell::new(0);
        let db = |n: &str, dir: &str| {
            calls.set(calls.get() + 1);
            Ok(Some(pw(n, if n == "a" { 1 } else { 2 }, dir)))
        };
        assert_eq!(
            c.by_name("a", |n| db(n, "/old")).unwrap().unwrap().dir,
            "/old"
        );
        // The same name again: the remembered entry, not the database.
        assert_eq!(
            c.by_name("a", |n| db(n, "/new")).unwrap().unwrap().dir,
            "/old"
        );
        // By uid too.
        assert_eq!(
            c.by_uid(1, |_| db("a", "/new")).unwrap().unwrap().dir,
            "/old"
        );
        // Another user replaces it.
        assert_eq!(c.by_name("b", |n| db(n, "/b")).unwrap().unwrap().dir, "/b");
        assert_eq!(
            c.by_name("a", |n| db(n, "/new")).unwrap().unwrap().dir,
            "/new"
        );
        assert_eq!(calls.get(), 3);
        // A miss is not remembered, and forgets the last entry.
        assert_eq!(c.by_name("x", |_| Ok(None)).unwrap(), None);
        assert_eq!(
            c.by_name("x", |n| Ok(Some(pw(n, 9, "/x"))))
                .unwrap()
                .unwrap()
                .uid,
            9
        );
        assert_eq!(c.by_name("y", |_| Err(libc::EIO)), Err(libc::EIO));
        assert_eq!(
            c.by_name("x", |n| Ok(Some(pw(n, 9, "/x2"))))
                .unwrap()
                .unwrap()
                .dir,
            "/x2"
        );
    }

    #[test]
    fn stat_as_reports_errno() {
        let me = crate::sys::geteuid();
        assert!(stat_as("/", me, crate::sys::getegid()).is_ok());
        let e = stat_as("/nonexistent-rostfix-x", me, crate::sys::getegid()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    }
}
