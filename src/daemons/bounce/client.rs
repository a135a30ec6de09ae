//! What a delivery agent or the queue manager does with one recipient's
//! result, in-process (the client side of Postfix's bounce, defer, trace
//! and sent calls: global/bounce.c, defer.c, trace.c, sent.c): which log
//! the recipient goes to, with which action and status, and which status
//! word the `to=<...>, ..., status=...` log line then carries.
//!
//! The caller writes that log line (deliver_request::log_line) when
//! [`Appended::log_status`] is set. Address verification probes
//! (DEL_REQ_FLAG_MTA_VRFY) belong to verify(8), which is not here.

use super::log::{self, DsnInfo};
use crate::global::deliver_request::{Recipient, flags, notify};
use crate::global::mail_conf::{ConfError, MailConf};
use crate::global::mail_queue::{self, QueueConf};

/// DEL_REQ_FLAG_REC_DLY_SENT: record delayed deliveries in the trace log.
pub const REC_DLY_SENT: u32 = 1 << 13;

/// The relay name that means "no relay" (NO_RELAY_AGENT).
pub const NO_RELAY: &str = "none";

/// The logs and the settings that shape appends.
#[derive(Debug, Clone)]
pub struct StatusLogs {
    pub queue: QueueConf,
    pub oldlog_compat: bool,
    pub soft_bounce: bool,
}

/// The outcome of one append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// 0: done (the recipient is finished, or deferred as asked); -1:
    /// not done (the recipient stays in the queue; with soft_bounce a
    /// bounce is a deferral).
    pub status: i32,
    /// The word for the log line (`bounced`, `SOFTBOUNCE`, `deferred`,
    /// `sent`, `deliverable`, `undeliverable`), or None when nothing is
    /// logged.
    pub log_status: Option<String>,
    /// The status as logged (action and status adjusted).
    pub dsn: DsnInfo,
}

impl StatusLogs {
    pub fn from_conf(conf: &MailConf) -> Result<StatusLogs, ConfError> {
        Ok(StatusLogs {
            queue: QueueConf::from_conf(conf)?,
            oldlog_compat: conf.get_bool("backwards_bounce_logfile_compatibility")?,
            soft_bounce: conf.get_bool("soft_bounce")?,
        })
    }

    fn append(&self, service: &str, id: &str, rcpt: &Recipient, dsn: &DsnInfo) -> bool {
        match log::append(&self.queue, service, id, rcpt, dsn, self.oldlog_compat) {
            Ok(()) => true,
            Err(e) => {
                crate::global::msg::warn(&format!("{id}: {service} service failure: {e}"));
                false
            }
        }
    }

    /// trace_append: the trace log entry reads `delivery via RELAY: reason`.
    pub fn trace_append(
        &self,
        req_flags: u32,
        id: &str,
        rcpt: &Recipient,
        relay: &str,
        dsn: &DsnInfo,
    ) -> Appended {
        let mut my = dsn.clone();
        if relay != NO_RELAY {
            my.reason = format!("delivery via {relay}: {}", dsn.reason);
        }
        let ok = self.append(mail_queue::TRACE, id, rcpt, &my);
        Appended {
            status: if ok { 0 } else { -1 },
            log_status: (ok && req_flags & flags::USR_VRFY != 0).then(|| dsn.action.clone()),
            dsn: dsn.clone(),
        }
    }

    /// defer_append: the recipient goes to the defer log (`delayed`).
    pub fn defer_append(
        &self,
        req_flags: u32,
        id: &str,
        rcpt: &Recipient,
        relay: &str,
        dsn: &DsnInfo,
    ) -> Appended {
        let mut my = dsn.clone();
        if req_flags & flags::USR_VRFY != 0 {
            my.action = "undeliverable".into();
            return self.trace_append(req_flags, id, rcpt, relay, &my);
        }
        my.action = "delayed".into();
        self.append(mail_queue::DEFER, id, rcpt, &my);
        if req_flags & flags::RECORD != 0 {
            self.trace_append(req_flags, id, rcpt, relay, &my);
        }
        Appended {
            status: -1,
            log_status: Some("deferred".into()),
            dsn: my,
        }
    }

    /// bounce_append: the recipient goes to the bounce log (`failed`), or
    /// with soft_bounce to the defer log as 4.x.x (`SOFTBOUNCE`).
    pub fn bounce_append(
        &self,
        req_flags: u32,
        id: &str,
        rcpt: &Recipient,
        relay: &str,
        dsn: &DsnInfo,
    ) -> Appended {
        let mut my = dsn.clone();
        if req_flags & flags::USR_VRFY != 0 {
            my.action = "undeliverable".into();
            return self.trace_append(req_flags, id, rcpt, relay, &my);
        }
        let service = if self.soft_bounce {
            if !my.status.is_empty() {
                my.status.replace_range(..1, "4");
            }
            my.action = "delayed".into();
            mail_queue::DEFER
        } else {
            my.action = "failed".into();
            mail_queue::BOUNCE
        };
        let ok = self.append(service, id, rcpt, &my)
            && (req_flags & flags::RECORD == 0
                || self.trace_append(req_flags, id, rcpt, relay, &my).status == 0);
        if ok {
            return Appended {
                status: if self.soft_bounce { -1 } else { 0 },
                log_status: Some(
                    if self.soft_bounce {
                        "SOFTBOUNCE"
                    } else {
                        "bounced"
                    }
                    .into(),
                ),
                dsn: my,
            };
        }
        let fail = DsnInfo {
            status: "4.3.0".into(),
            reason: "bounce or trace service failure".into(),
            ..my
        };
        self.defer_append(req_flags, id, rcpt, relay, &fail)
    }

    /// sent: a delivered recipient is traced when the request records
    /// deliveries or the recipient asked for NOTIFY=SUCCESS.
    pub fn sent(
        &self,
        req_flags: u32,
        id: &str,
        rcpt: &Recipient,
        relay: &str,
        dsn: &DsnInfo,
    ) -> Appended {
        let mut my = dsn.clone();
        if !my.status.starts_with('2') {
            crate::global::msg::warn(&format!("sent: ignoring dsn code \"{}\"", my.status));
            my.status = "2.0.0".into();
        }
        if req_flags & flags::USR_VRFY != 0 {
            my.action = "deliverable".into();
            return self.trace_append(req_flags, id, rcpt, relay, &my);
        }
        if my.action.is_empty() {
            my.action = "delivered".into();
        }
        let rec_all = req_flags & flags::RECORD != 0;
        let rec_dly = req_flags & REC_DLY_SENT != 0
            && (rcpt.dsn_notify == 0 || rcpt.dsn_notify & notify::DELAY != 0);
        let ok = ((!rec_all && !rec_dly)
            || self.trace_append(req_flags, id, rcpt, relay, &my).status == 0)
            && (rcpt.dsn_notify & notify::SUCCESS == 0
                || self.trace_append(req_flags, id, rcpt, relay, &my).status == 0);
        if ok {
            return Appended {
                status: 0,
                log_status: Some("sent".into()),
                dsn: my,
            };
        }
        let fail = DsnInfo {
            status: "4.3.0".into(),
            reason: format!("{id}: trace service failed"),
            ..my
        };
        self.defer_append(req_flags, id, rcpt, relay, &fail)
    }
}

/// The bounce service requests a queue manager makes at the end of a
/// message (abounce_flush, adefer_flush, adefer_warn, atrace_flush).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeRequest {
    /// Send the non-delivery (bounce service) or expiry (defer service)
    /// notice for the logged recipients.
    Flush,
    /// Send a delay warning (defer service).
    Warn,
    /// Send the delivery report or success notice (trace service).
    Trace,
}

/// The message a notice request is about.
#[derive(Debug, Clone, Default)]
pub struct NoticeMessage<'a> {
    pub queue_name: &'a str,
    pub queue_id: &'a str,
    pub encoding: &'a str,
    pub smtputf8: bool,
    pub sender: &'a str,
    pub dsn_envid: &'a str,
    pub dsn_ret: i32,
}

/// Ask the bounce, defer or trace service on `private/<service>` (relative
/// to the queue directory, the current directory of a daemon) for a
/// notice; `flags` is BOUNCE_FLAG_* (0 keeps the queue file, as qmgr
/// asks). Returns the service's status (0: done), or an error text when
/// the service cannot be reached or answers nonsense.
pub fn notice_request(
    service: &str,
    what: NoticeRequest,
    flags: u32,
    m: &NoticeMessage,
    timeout: std::time::Duration,
) -> Result<i32, String> {
    use crate::global::attr0;
    use std::io::{BufReader, Write};
    let path = format!("private/{service}");
    let s = std::os::unix::net::UnixStream::connect(&path)
        .map_err(|e| crate::global::config_file::errno_text(&e))?;
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    let mut r = BufReader::new(s);
    attr0::scan(&mut r)
        .map_err(|e| e.to_string())?
        .ok_or("no greeting")?;
    let cmd = match what {
        NoticeRequest::Flush => super::service::CMD_FLUSH,
        NoticeRequest::Warn => super::service::CMD_WARN,
        NoticeRequest::Trace => super::service::CMD_TRACE,
    }
    .to_string();
    let flags = flags.to_string();
    let ret = m.dsn_ret.to_string();
    r.get_mut()
        .write_all(&attr0::encode(&[
            ("nrequest", cmd.as_str()),
            ("flags", &flags),
            ("queue_name", m.queue_name),
            ("queue_id", m.queue_id),
            ("encoding", m.encoding),
            ("smtputf8", if m.smtputf8 { "1" } else { "0" }),
            ("sender", m.sender),
            ("envelope_id", m.dsn_envid),
            ("ret_flags", &ret),
        ]))
        .map_err(|e| e.to_string())?;
    let g = attr0::scan(&mut r)
        .map_err(|e| e.to_string())?
        .ok_or("no reply")?;
    g.iter()
        .find(|(n, _)| n == "status")
        .and_then(|(_, v)| v.parse::<i64>().ok())
        .map(|v| v as i32)
        .ok_or_else(|| "malformed reply".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> (std::path::PathBuf, StatusLogs) {
        let dir = std::env::temp_dir().join(format!("bounce-client-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let logs = StatusLogs {
            queue: QueueConf {
                queue_directory: dir.to_string_lossy().into(),
                ..Default::default()
            },
            oldlog_compat: true,
            soft_bounce: false,
        };
        (dir, logs)
    }

    fn rcpt(notify: i32) -> Recipient {
        Recipient {
            address: "u@example.com".into(),
            orig_addr: "u@example.com".into(),
            offset: 200,
            dsn_orcpt: String::new(),
            dsn_notify: notify,
        }
    }

    #[test]
    fn bounce_and_soft_bounce() {
        let (dir, mut logs) = scratch("bounce");
        let d = DsnInfo::new("5.1.1", "", "unknown user");
        let a = logs.bounce_append(0, "ABC", &rcpt(0), "local", &d);
        assert_eq!(a.status, 0);
        assert_eq!(a.log_status.as_deref(), Some("bounced"));
        let text = std::fs::read_to_string(dir.join("bounce/ABC")).unwrap();
        assert!(text.contains("status=5.1.1\naction=failed\n"), "{text}");
        logs.soft_bounce = true;
        let a = logs.bounce_append(0, "ABD", &rcpt(0), "local", &d);
        assert_eq!(a.status, -1);
        assert_eq!(a.log_status.as_deref(), Some("SOFTBOUNCE"));
        assert_eq!(a.dsn.status, "4.1.1");
        let text = std::fs::read_to_string(dir.join("defer/A/ABD")).unwrap();
        assert!(text.contains("status=4.1.1\naction=delayed\n"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sent_traces_notify_success_only() {
        let (dir, logs) = scratch("sent");
        let d = DsnInfo::new("2.0.0", "", "delivered to mailbox");
        let a = logs.sent(0, "ABC", &rcpt(0), "local", &d);
        assert_eq!(a.log_status.as_deref(), Some("sent"));
        assert!(!dir.join("trace/ABC").exists());
        logs.sent(0, "ABC", &rcpt(notify::SUCCESS), "local", &d);
        let text = std::fs::read_to_string(dir.join("trace/ABC")).unwrap();
        assert!(
            text.contains("action=delivered\nreason=delivery via local: delivered to mailbox\n"),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn user_verify_goes_to_trace() {
        let (dir, logs) = scratch("vrfy");
        let d = DsnInfo::new("5.1.1", "", "unknown user");
        let a = logs.bounce_append(flags::USR_VRFY, "ABC", &rcpt(0), "local", &d);
        assert_eq!(a.log_status.as_deref(), Some("undeliverable"));
        assert!(!dir.join("bounce/ABC").exists());
        assert!(dir.join("trace/ABC").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
