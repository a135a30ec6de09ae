//! Replaces virtual(8) of Postfix 3.7: delivery to mailboxes and maildirs
//! under `virtual_mailbox_base`, named by `virtual_mailbox_maps`, owned by
//! the uid/gid that `virtual_uid_maps`/`virtual_gid_maps` give.
//!
//! Trust: the request comes from the queue manager, the tables from the
//! administrator. Privilege: started as root; each write runs as the
//! mailbox's uid/gid (privsep::run_as: the effective ids switched
//! in-process while single-threaded, else in a child process).
//!
//! Parameters: virtual_mailbox_base, virtual_mailbox_maps,
//! virtual_uid_maps, virtual_gid_maps, virtual_minimum_uid,
//! virtual_mailbox_limit, virtual_mailbox_lock, strict_mailbox_ownership,
//! enable_original_recipient, recipient_delimiter,
//! delay_logging_resolution_limit, deliver_lock_attempts,
//! deliver_lock_delay, stale_lock_time.

use crate::daemons::local::agent::{WriteResult, WriteTarget, write_target};
use crate::global::deliver_request::{
    DeliveryRequest, Dsn, Outcome, RecipientResult, flags, log_line, now,
};
use crate::global::dict::flags as dflags;
use crate::global::mail_conf::{ConfError, MailConf};
use crate::global::maps::Maps;
use crate::global::mbox::{CopyAttr, LockParams, LockStyle, copy};
use crate::global::msg;
use crate::global::quote_822_local::{SplitParams, strip_addr};
use crate::global::record::QueueStream;
use crate::sys::privsep;
use std::collections::HashSet;

/// The virtual agent's parameters.
#[derive(Debug, Clone)]
pub struct VirtualConfig {
    pub mailbox_base: String,
    pub mailbox_maps: String,
    pub uid_maps: String,
    pub gid_maps: String,
    pub minimum_uid: i64,
    pub mailbox_limit: u64,
    pub lock: LockStyle,
    pub lock_params: LockParams,
    pub strict_mailbox_ownership: bool,
    pub enable_orcpt: bool,
    pub recipient_delimiter: String,
    pub delay_max_res: u32,
    pub hostname: String,
}

impl VirtualConfig {
    /// Read the parameters; errors are Postfix's fatal texts.
    pub fn from_conf(conf: &MailConf) -> Result<VirtualConfig, ConfError> {
        let s = |n: &str| conf.get_str(n, 0, 0);
        let lock_text = s("virtual_mailbox_lock")?;
        let lock = LockStyle::parse(&lock_text).map_err(|w| {
            ConfError(format!(
                "unrecognized virtual_mailbox_lock value \"{w}\" in \"{lock_text}\""
            ))
        })?;
        let mailbox_limit = conf.get_long("virtual_mailbox_limit", 0, 0)? as u64;
        let message_limit = conf.get_long("message_size_limit", 0, 0)? as u64;
        if mailbox_limit > 0 {
            if message_limit == 0 {
                return Err(ConfError(
                    "configuration error: virtual_mailbox_limit is limited but message_size_limit is unlimited".into(),
                ));
            }
            if mailbox_limit < message_limit {
                return Err(ConfError(
                    "configuration error: virtual_mailbox_limit is smaller than message_size_limit"
                        .into(),
                ));
            }
        }
        Ok(VirtualConfig {
            mailbox_base: s("virtual_mailbox_base")?,
            mailbox_maps: s("virtual_mailbox_maps")?,
            uid_maps: s("virtual_uid_maps")?,
            gid_maps: s("virtual_gid_maps")?,
            minimum_uid: conf.get_long("virtual_minimum_uid", 1, 0)?,
            mailbox_limit,
            lock,
            lock_params: LockParams {
                tries: conf.get_int("deliver_lock_attempts", 1, 0)? as u32,
                delay_secs: conf.get_time("deliver_lock_delay", 's', 1, 0)? as u64,
                stale_secs: conf.get_time("stale_lock_time", 's', 1, 0)?,
            },
            strict_mailbox_ownership: conf.get_bool("strict_mailbox_ownership")?,
            enable_orcpt: conf.get_bool("enable_original_recipient")?,
            recipient_delimiter: s("recipient_delimiter")?,
            delay_max_res: conf.get_int("delay_logging_resolution_limit", 0, 6)? as u32,
            hostname: crate::sys::hostname(),
        })
    }
}

/// The virtual delivery agent.
pub struct VirtualAgent {
    pub cfg: VirtualConfig,
    pub service: String,
    mailbox_maps: Maps,
    uid_maps: Maps,
    gid_maps: Maps,
}

enum Found {
    Value(String),
    None,
    Error,
}

impl VirtualAgent {
    pub fn new(cfg: VirtualConfig, service: &str) -> VirtualAgent {
        let f = dflags::LOCK | dflags::FOLD_FIX | dflags::UTF8_REQUEST;
        VirtualAgent {
            mailbox_maps: Maps::create("virtual_mailbox_maps", &cfg.mailbox_maps, f),
            uid_maps: Maps::create("virtual_uid_maps", &cfg.uid_maps, f),
            gid_maps: Maps::create("virtual_gid_maps", &cfg.gid_maps, f),
            service: service.to_string(),
            cfg,
        }
    }

    /// mail_addr_find with the default strategy for a full address:
    /// `user+ext@domain`, `user@domain`, `@domain`.
    fn addr_find(maps: &mut Maps, addr: &str, split: &SplitParams) -> Found {
        let mut keys = vec![addr.to_string()];
        if let Some((stripped, _)) = strip_addr(addr, split) {
            keys.push(stripped);
        }
        if let Some(i) = addr.rfind('@') {
            keys.push(addr[i..].to_string());
        }
        for k in keys {
            match maps.find(&k, 0) {
                Ok(Some(v)) => return Found::Value(v),
                Ok(None) => {}
                Err(_) => return Found::Error,
            }
        }
        Found::None
    }

    /// Deliver every recipient of the request.
    pub fn deliver(&mut self, req: &DeliveryRequest) -> Vec<RecipientResult> {
        let mut results = Vec::new();
        let path = req.queue_file.to_string_lossy().to_string();
        let mut fp = match QueueStream::open(&path) {
            Ok(fp) => fp,
            Err(e) => {
                msg::warn(&format!(
                    "open {path}: {}",
                    crate::global::mbox::errtext(&e)
                ));
                for (i, r) in req.rcpt.iter().enumerate() {
                    let d = Dsn::new("4.3.0", "queue file read error");
                    results.push(self.report(req, i, r, Outcome::Deferred, d));
                }
                return results;
            }
        };
        let loop_info = delivered_set(&mut fp, req.data_offset);
        for (i, r) in req.rcpt.iter().enumerate() {
            let (o, d) = self.deliver_one(req, &mut fp, r, &loop_info);
            results.push(self.report(req, i, r, o, d));
        }
        results
    }

    fn report(
        &self,
        req: &DeliveryRequest,
        i: usize,
        r: &crate::global::deliver_request::Recipient,
        o: Outcome,
        d: Dsn,
    ) -> RecipientResult {
        let log = log_line(
            &req.queue_id,
            &req.stats,
            r,
            &self.service,
            &d,
            o.status_word(),
            now(),
            self.cfg.delay_max_res,
        );
        msg::info(&log);
        RecipientResult {
            rcpt: r.clone(),
            index: i,
            outcome: o,
            dsn: d,
            relay: self.service.clone(),
            bounce_to: None,
            log,
        }
    }

    fn fail(d: Dsn) -> (Outcome, Dsn) {
        if d.is_soft() {
            (Outcome::Deferred, d)
        } else {
            (Outcome::Bounced, d)
        }
    }

    fn deliver_one(
        &mut self,
        req: &DeliveryRequest,
        fp: &mut QueueStream,
        r: &crate::global::deliver_request::Recipient,
        loop_info: &HashSet<String>,
    ) -> (Outcome, Dsn) {
        let user = r.address.to_lowercase();
        if loop_info.contains(&user) {
            return Self::fail(Dsn::new(
                "5.4.6",
                format!("mail forwarding loop for {}", r.address),
            ));
        }
        if !self.cfg.mailbox_base.starts_with('/') {
            msg::fatal(&format!(
                "do not specify relative pathname: virtual_mailbox_base = {}",
                self.cfg.mailbox_base
            ));
        }
        let split = SplitParams {
            delimiters: self.cfg.recipient_delimiter.clone(),
            ..Default::default()
        };
        let cfgerr = || Dsn::new("4.3.5", "mail system configuration error");
        let mailbox = match Self::addr_find(&mut self.mailbox_maps, &user, &split) {
            Found::Value(v) => format!("{}/{v}", self.cfg.mailbox_base),
            Found::None => {
                return Self::fail(Dsn::new("5.1.1", format!("unknown user: \"{user}\"")));
            }
            Found::Error => {
                msg::warn(&format!(
                    "table {}: lookup {user}: Resource temporarily unavailable",
                    self.mailbox_maps.title
                ));
                return Self::fail(cfgerr());
            }
        };
        let uid = match Self::addr_find(&mut self.uid_maps, &user, &split) {
            Found::Value(v) => {
                let n = crate::global::rec_type::atol(v.as_bytes());
                if n < self.cfg.minimum_uid {
                    msg::warn(&format!(
                        "recipient {user}: bad uid {v} in {}",
                        self.uid_maps.title
                    ));
                    return Self::fail(cfgerr());
                }
                n as u32
            }
            _ => {
                msg::warn(&format!(
                    "recipient {user}: not found in {}",
                    self.uid_maps.title
                ));
                return Self::fail(cfgerr());
            }
        };
        let gid = match Self::addr_find(&mut self.gid_maps, &user, &split) {
            Found::Value(v) => {
                let n = crate::global::rec_type::atol(v.as_bytes());
                if n <= 0 {
                    msg::warn(&format!(
                        "recipient {user}: bad gid {v} in {}",
                        self.gid_maps.title
                    ));
                    return Self::fail(cfgerr());
                }
                n as u32
            }
            _ => {
                msg::warn(&format!(
                    "recipient {user}: not found in {}",
                    self.gid_maps.title
                ));
                return Self::fail(cfgerr());
            }
        };
        let maildir = mailbox.ends_with('/');
        if req.flags & flags::MTA_VRFY != 0 {
            let t = if maildir {
                "delivers to maildir"
            } else {
                "delivers to mailbox"
            };
            return (Outcome::Sent, Dsn::new("2.0.0", t));
        }
        let target = if maildir {
            WriteTarget::Maildir {
                path: mailbox.clone(),
                hostname: self.cfg.hostname.clone(),
            }
        } else {
            WriteTarget::Mailbox {
                path: mailbox.clone(),
                chown: None,
                strict_uid: self.cfg.strict_mailbox_ownership.then_some(uid),
            }
        };
        let flags = if maildir {
            copy::TOFILE | copy::RETURN_PATH | copy::DELIVERED | copy::ORIG_RCPT
        } else {
            copy::MBOX
        };
        let sender = req.sender.clone();
        let orig = r.orig_addr.clone();
        let delivered = r.address.clone();
        let enable_orcpt = self.cfg.enable_orcpt;
        let lock = self.cfg.lock;
        let lock_params = self.cfg.lock_params;
        let limit = (self.cfg.mailbox_limit > 0).then_some(self.cfg.mailbox_limit);
        let offset = req.data_offset as i64;
        let out = privsep::run_as(uid, gid, move || {
            let attr = CopyAttr {
                sender: &sender,
                orig_rcpt: &orig,
                delivered: &delivered,
                enable_orcpt,
            };
            let _ = fp.seek_set(offset);
            let res = match &target {
                WriteTarget::Maildir { path, hostname } => {
                    crate::daemons::local::agent::maildir_write(
                        path, hostname, &attr, fp, flags, "4.2.0",
                    )
                }
                WriteTarget::Mailbox {
                    path, strict_uid, ..
                } => {
                    match crate::global::mbox::mbox_open(
                        path,
                        0o600,
                        None,
                        lock,
                        &lock_params,
                        "4.2.0",
                    ) {
                        Err(d) => WriteResult::Fail(d, None),
                        Ok(m) if !m.meta.file_type().is_file() => WriteResult::Fail(
                            Dsn::new("5.3.5", "mail system configuration error"),
                            Some(format!(
                                "recipient {delivered}: destination {path} is not a regular file"
                            )),
                        ),
                        Ok(m) => {
                            use std::os::unix::fs::MetadataExt;
                            if let Some(u) = strict_uid
                                && m.meta.uid() != *u
                            {
                                WriteResult::Fail(
                                    Dsn::new("4.2.0", format!("destination {path} is not owned by recipient")),
                                    Some("specify \"strict_mailbox_ownership = no\" to ignore mailbox ownership mismatch".into()),
                                )
                            } else {
                                crate::daemons::local::agent::copy_into(&m, &attr, fp, flags, limit)
                            }
                        }
                    }
                }
                other => write_target(other, &attr, fp, flags, lock, &lock_params, limit),
            };
            res.encode()
        });
        let res = match out {
            Ok(b) => WriteResult::decode(&b),
            Err(e) => WriteResult::Fail(Dsn::new("4.3.0", e.to_string()), None),
        };
        match res {
            WriteResult::Ok => (
                Outcome::Sent,
                Dsn::new(
                    "2.0.0",
                    if maildir {
                        "delivered to maildir"
                    } else {
                        "delivered to mailbox"
                    },
                ),
            ),
            WriteResult::Corrupt => (Outcome::Deferred, Dsn::new("4.3.0", "queue file corrupt")),
            WriteResult::Fail(d, w) => {
                if maildir {
                    if w.is_some() {
                        msg::warn(&format!(
                            "maildir access problem for UID/GID={uid}/{gid}: {}",
                            d.reason
                        ));
                        msg::warn("perhaps you need to create the maildirs in advance");
                    }
                    Self::fail(Dsn::new(
                        &d.status,
                        format!("maildir delivery failed: {}", d.reason),
                    ))
                } else {
                    if let Some(w) = w {
                        msg::warn(&w);
                    }
                    if d.status == "5.3.5" {
                        return Self::fail(d);
                    }
                    Self::fail(Dsn::new(
                        &d.status,
                        format!("delivery failed to mailbox {mailbox}: {}", d.reason),
                    ))
                }
            }
        }
    }
}

/// The lowercased Delivered-To: addresses of the message headers.
pub fn delivered_set(fp: &mut QueueStream, offset: u64) -> HashSet<String> {
    use crate::global::rec_type;
    use crate::global::record::{Rec, rec_get};
    let mut set = HashSet::new();
    if fp.seek_set(offset as i64).is_err() {
        return set;
    }
    let mut buf = Vec::new();
    while let Rec::Type(t) = rec_get(fp, &mut buf, 0) {
        if t != rec_type::NORM && t != rec_type::CONT {
            break;
        }
        let line = crate::util::latin1::decode(&buf);
        if line.is_empty() {
            break;
        }
        if let Some((n, v)) = line.split_once(':')
            && n.eq_ignore_ascii_case("delivered-to")
        {
            set.insert(v.trim().to_lowercase());
        }
    }
    set
}
