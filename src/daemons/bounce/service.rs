//! The bounce, defer and trace services on their UNIX sockets, speaking
//! Postfix's delivery status protocol (bounce.c): the server announces
//! `protocol=delivery_status_protocol`, the client sends one request
//! (`nrequest` and the command's attributes, null-terminated attribute
//! encoding), the server answers `status=N` (-1 as the unsigned 4294967295,
//! as Postfix prints it).
//!
//! Commands: APPEND (0) adds a recipient to the service's log; FLUSH (1)
//! returns the log to the sender as a non-delivery notice; WARN (2) sends a
//! delay warning; TRACE (5) sends a success or verification report; ONE
//! (4) returns one recipient that is in no log; VERP (3) returns each
//! logged recipient in its own notice to the VERP form of the sender.

use super::log::{self as blog, DsnInfo, Entry};
use super::notify::{Notifier, Poster, Request};
use crate::daemons::logsink::MailLog;
use crate::global::attr0;
use crate::global::deliver_request::Recipient;
use crate::global::mail_queue;
use std::io::{BufRead, Write};

pub const CMD_APPEND: i64 = 0;
pub const CMD_FLUSH: i64 = 1;
pub const CMD_WARN: i64 = 2;
pub const CMD_VERP: i64 = 3;
pub const CMD_ONE: i64 = 4;
pub const CMD_TRACE: i64 = 5;

/// The attribute names of each request, in protocol order.
const APPEND_ATTRS: &[&str] = &[
    "flags",
    "queue_id",
    "original_recipient",
    "recipient",
    "offset",
    "dsn_orig_rcpt",
    "notify_flags",
    "status",
    "diag_type",
    "diag_text",
    "mta_type",
    "mta_mname",
    "action",
    "reason",
];
const NOTIFY_ATTRS: &[&str] = &[
    "flags",
    "queue_name",
    "queue_id",
    "encoding",
    "smtputf8",
    "sender",
    "envelope_id",
    "ret_flags",
];

/// Postfix's printable(): control and non-ASCII characters become `?`.
fn neuter(s: &str) -> String {
    s.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect()
}

fn int(v: &str) -> Option<i64> {
    v.trim().parse().ok()
}

/// The values of the expected attributes, as mail_command_server scans
/// them (ATTR_FLAG_MISSING): other attributes are skipped, a missing one
/// is reported and ends the scan.
fn expect<'a>(
    attrs: &'a [(String, String)],
    names: &[&str],
    service: &str,
    log: &mut MailLog,
) -> Option<Vec<&'a str>> {
    let mut out = Vec::with_capacity(names.len());
    let mut it = attrs.iter();
    for want in names {
        match it.by_ref().find(|(n, _)| n == want) {
            Some((_, v)) => out.push(v.as_str()),
            None => {
                log.warn(
                    "bounce",
                    &format!("missing attribute {want} in input from {service} socket"),
                );
                return None;
            }
        }
    }
    Some(out)
}

/// Handle one request from `stream`. Returns the status sent back.
pub fn serve<S: BufRead + Write>(
    stream: &mut S,
    service: &str,
    n: &mut Notifier,
    poster: &mut dyn Poster,
    log: &mut MailLog,
) -> i64 {
    if attr0::print(stream, &[("protocol", "delivery_status_protocol")]).is_err() {
        return -1;
    }
    let status = match attr0::scan(stream) {
        Ok(Some(attrs)) => dispatch(&attrs, service, n, poster, log),
        _ => {
            log.warn("bounce", "malformed request");
            -1
        }
    };
    let shown = if status < 0 {
        (status as i32 as u32).to_string()
    } else {
        status.to_string()
    };
    let _ = attr0::print(stream, &[("status", &shown)]);
    status
}

fn dispatch(
    attrs: &[(String, String)],
    service: &str,
    n: &mut Notifier,
    poster: &mut dyn Poster,
    log: &mut MailLog,
) -> i64 {
    let command = match attrs.first() {
        Some((name, v)) if name == "nrequest" => match int(v) {
            Some(c) => c,
            None => {
                log.warn("bounce", "malformed request");
                return -1;
            }
        },
        Some((name, _)) => {
            log.warn(
                "bounce",
                &format!("unexpected attribute {name} from {service} socket (expecting: nrequest)"),
            );
            log.warn("bounce", "malformed request");
            return -1;
        }
        None => {
            log.warn(
                "bounce",
                &format!("missing attribute nrequest in input from {service} socket"),
            );
            log.warn("bounce", "malformed request");
            return -1;
        }
    };
    let rest = &attrs[1..];
    match command {
        CMD_APPEND => append(rest, service, n, log),
        CMD_FLUSH | CMD_WARN | CMD_TRACE => {
            let Some(v) = expect(rest, NOTIFY_ATTRS, service, log) else {
                log.warn("bounce", "malformed request");
                return -1;
            };
            let (Some(flags), Some(smtputf8), Some(ret)) = (int(v[0]), int(v[4]), int(v[7])) else {
                log.warn("bounce", "malformed request");
                return -1;
            };
            if !mail_queue::name_ok(v[1]) {
                log.warn("bounce", &format!("malformed queue name: {}", neuter(v[1])));
                return -1;
            }
            if !mail_queue::id_ok(v[2]) {
                log.warn("bounce", &format!("malformed queue id: {}", neuter(v[2])));
                return -1;
            }
            let req = Request {
                service: service.to_string(),
                flags: flags as u32,
                queue_name: v[1].to_string(),
                queue_id: v[2].to_string(),
                encoding: neuter(v[3]),
                smtputf8: smtputf8 as i32,
                sender: neuter(v[5]),
                dsn_envid: neuter(v[6]),
                dsn_ret: ret as i32,
            };
            i64::from(match command {
                CMD_FLUSH => n.flush(poster, log, &req),
                CMD_WARN => n.warn(poster, log, &req),
                _ => n.trace(poster, log, &req),
            })
        }
        CMD_ONE => one(rest, service, n, poster, log),
        CMD_VERP => verp(rest, service, n, poster, log),
        _ => {
            log.warn("bounce", &format!("unknown command: {command}"));
            -1
        }
    }
}

fn verp(
    attrs: &[(String, String)],
    service: &str,
    n: &mut Notifier,
    poster: &mut dyn Poster,
    log: &mut MailLog,
) -> i64 {
    let mut names = NOTIFY_ATTRS.to_vec();
    names.push("verp_delimiters");
    let Some(v) = expect(attrs, &names, service, log) else {
        log.warn("bounce", "malformed request");
        return -1;
    };
    let (Some(flags), Some(smtputf8), Some(ret)) = (int(v[0]), int(v[4]), int(v[7])) else {
        log.warn("bounce", "malformed request");
        return -1;
    };
    if !mail_queue::name_ok(v[1]) {
        log.warn("bounce", &format!("malformed queue name: {}", neuter(v[1])));
        return -1;
    }
    if !mail_queue::id_ok(v[2]) {
        log.warn("bounce", &format!("malformed queue id: {}", neuter(v[2])));
        return -1;
    }
    let delims = neuter(v[8]);
    if delims.len() != 2 {
        log.warn(
            "bounce",
            &format!("malformed verp delimiter string: {delims}"),
        );
        return -1;
    }
    let req = Request {
        service: service.to_string(),
        flags: flags as u32,
        queue_name: v[1].to_string(),
        queue_id: v[2].to_string(),
        encoding: neuter(v[3]),
        smtputf8: smtputf8 as i32,
        sender: neuter(v[5]),
        dsn_envid: neuter(v[6]),
        dsn_ret: ret as i32,
    };
    i64::from(n.verp_request(poster, log, &req, &delims))
}

fn one(
    attrs: &[(String, String)],
    service: &str,
    n: &mut Notifier,
    poster: &mut dyn Poster,
    log: &mut MailLog,
) -> i64 {
    let names: Vec<&str> = NOTIFY_ATTRS
        .iter()
        .chain(APPEND_ATTRS[2..].iter())
        .copied()
        .collect();
    let Some(v) = expect(attrs, &names, service, log) else {
        log.warn("bounce", "malformed request");
        return -1;
    };
    let (Some(flags), Some(smtputf8), Some(ret), Some(offset), Some(notify)) =
        (int(v[0]), int(v[4]), int(v[7]), int(v[10]), int(v[12]))
    else {
        log.warn("bounce", "malformed request");
        return -1;
    };
    if service != mail_queue::BOUNCE {
        log.warn(
            "bounce",
            &format!("wrong service name \"{service}\" for one-recipient bouncing"),
        );
        return -1;
    }
    if !mail_queue::name_ok(v[1]) {
        log.warn("bounce", &format!("malformed queue name: {}", neuter(v[1])));
        return -1;
    }
    if !mail_queue::id_ok(v[2]) {
        log.warn("bounce", &format!("malformed queue id: {}", neuter(v[2])));
        return -1;
    }
    let req = Request {
        service: service.to_string(),
        flags: flags as u32,
        queue_name: v[1].to_string(),
        queue_id: v[2].to_string(),
        encoding: neuter(v[3]),
        smtputf8: smtputf8 as i32,
        sender: neuter(v[5]),
        dsn_envid: neuter(v[6]),
        dsn_ret: ret as i32,
    };
    let entry = Entry {
        rcpt: Recipient {
            orig_addr: neuter(v[8]),
            address: neuter(v[9]),
            offset,
            dsn_orcpt: neuter(v[11]),
            dsn_notify: notify as i32,
        },
        dsn: DsnInfo {
            status: neuter(v[13]),
            dtype: neuter(v[14]),
            dtext: neuter(v[15]),
            mtype: neuter(v[16]),
            mname: neuter(v[17]),
            action: neuter(v[18]),
            reason: neuter(v[19]),
        },
    };
    i64::from(n.one(poster, log, &req, &entry))
}

fn append(attrs: &[(String, String)], service: &str, n: &Notifier, log: &mut MailLog) -> i64 {
    let Some(v) = expect(attrs, APPEND_ATTRS, service, log) else {
        log.warn("bounce", "malformed request");
        return -1;
    };
    let (Some(_flags), Some(offset), Some(notify)) = (int(v[0]), int(v[4]), int(v[6])) else {
        log.warn("bounce", "malformed request");
        return -1;
    };
    if !mail_queue::id_ok(v[1]) {
        log.warn("bounce", &format!("malformed queue id: {}", neuter(v[1])));
        return -1;
    }
    let rcpt = Recipient {
        orig_addr: neuter(v[2]),
        address: neuter(v[3]),
        offset,
        dsn_orcpt: neuter(v[5]),
        dsn_notify: notify as i32,
    };
    let dsn = DsnInfo {
        status: neuter(v[7]),
        dtype: neuter(v[8]),
        dtext: neuter(v[9]),
        mtype: neuter(v[10]),
        mname: neuter(v[11]),
        action: neuter(v[12]),
        reason: neuter(v[13]),
    };
    match blog::append(&n.queue, service, v[1], &rcpt, &dsn, n.oldlog_compat) {
        Ok(()) => 0,
        Err(e) => {
            // Postfix raises a fatal error here to force a backoff.
            crate::global::msg::fatal(&e.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_attribute_order() {
        let mut log = MailLog::capture();
        let a = vec![("flags".to_string(), "0".to_string())];
        assert!(expect(&a, &["flags", "queue_id"], "defer", &mut log).is_none());
        let lines: Vec<String> = log.take().into_iter().map(|l| l.display()).collect();
        assert!(lines[0].contains("missing attribute queue_id in input from defer socket"));
    }
}
