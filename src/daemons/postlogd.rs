//! Replaces postlogd(8) of Postfix 3.7: the postlog service that appends
//! the daemons' log records to `maillog_file`.
//!
//! Runs from master.cf as `postlog unix-dgram n - n - 1 postlogd`: not
//! chrooted and as root (unprivileged = n), so that it can write a
//! root-owned file that the unprivileged daemons cannot. Each datagram is
//! one record formatted by its sender ([`crate::global::maillog`]); it is
//! appended as it is, with a newline. The records already queued when one
//! arrives (up to 64 lines or 64 KB) go out with it in one write, in
//! arrival order (taken up to 16 at a time with recvmmsg(2)); a record is
//! never held back to wait for others. Trusts its senders as Postfix's
//! does: whoever can reach public/ can add lines.
//!
//! When `maillog_file` is empty (after a reload that turned file logging
//! off), records from processes that still use the old setting go to
//! syslog, with their `date host` prefix removed and their `name[pid]`
//! kept as the syslog tag.
//!
//! Parameters: maillog_file, maillog_file_prefixes, postlog_service_name,
//! syslog_name, syslog_facility, max_idle (max_use does not apply).

use crate::global::mail_conf::MailConf;
use crate::global::{maillog, msg};
use std::ffi::OsString;

fn pre_init(conf: &MailConf) {
    let path = conf
        .lookup_eval("maillog_file")
        .unwrap_or_else(|e| msg::fatal(&e.0))
        .unwrap_or_default();
    if path.is_empty() {
        return;
    }
    let file = if path == "/dev/stdout" || path == "/dev/stderr" {
        None
    } else {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .open(crate::util::latin1::to_path(&path))
        {
            Ok(f) => Some(f),
            Err(e) => msg::fatal(&format!(
                "open logfile '{path}': cannot open file: {}",
                crate::global::config_file::errno_text(&e)
            )),
        }
    };
    match file {
        Some(f) => maillog::set_fallback_only(f),
        None => {
            // The standard streams: any handle will do, records go to
            // this process's own stdout/stderr.
            if let Ok(f) = std::fs::OpenOptions::new().append(true).open("/dev/null") {
                maillog::set_fallback_only(f);
            }
        }
    }
}

/// Split a record into its `name[pid]` and its text, past the date and
/// host that the sender put first.
pub fn strip_prefix(rec: &str) -> (Option<&str>, &str) {
    let mut rest = rec;
    for _ in 0..4 {
        rest = rest.trim_start_matches([' ', '\t', '\r', '\n']);
        let end = rest.find([' ', '\t', '\r', '\n']).unwrap_or(rest.len());
        rest = &rest[end..];
    }
    rest = rest.trim_start_matches([' ', '\t', '\r', '\n']);
    let end = rest
        .find([':', ' ', '\t', '\r', '\n'])
        .unwrap_or(rest.len());
    let name = &rest[..end];
    let mut text = &rest[end..];
    if !text.is_empty() {
        text = &text[1..];
    }
    let text = text.trim_start_matches([' ', '\t', '\r', '\n']);
    ((!name.is_empty()).then_some(name), text)
}

/// The most records one write carries: what was queued when the first
/// arrived, up to this many lines or bytes.
const BATCH_LINES: usize = 64;
const BATCH_BYTES: usize = 64 * 1024;

/// How many queued records one recvmmsg(2) takes (each in a slot of
/// DGRAM_BUF_SIZE bytes).
const SLOTS: usize = 16;

thread_local! {
    /// The lines of one write, the receive slots and their lengths (kept
    /// between calls).
    static BATCH: std::cell::RefCell<(Vec<u8>, Vec<u8>, [usize; SLOTS])> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new(), [0; SLOTS])) };
}

/// Append `rec` and what is queued behind it; true when the socket was
/// found empty.
fn service(rec: &[u8], srv: &crate::master::server::Server) -> bool {
    if !maillog::writes_file() {
        to_syslog(rec);
        return false;
    }
    // Take the records that are queued already and append them all with
    // one write, in the order they arrived; never wait for more. With one
    // listener (master.cf gives postlogd one), what follows this record
    // in arrival order is on that socket. They come SLOTS at a time, with
    // one system call.
    let fd = match srv.listen_fds.as_slice() {
        [fd] => Some(*fd),
        _ => None,
    };
    BATCH.with(|b| {
        let (out, slab, lens) = &mut *b.borrow_mut();
        out.clear();
        out.extend_from_slice(rec);
        out.push(b'\n');
        let mut empty = false;
        if let Some(fd) = fd {
            let slot = crate::master::server::DGRAM_BUF_SIZE;
            slab.resize(SLOTS * slot, 0);
            let mut lines = 1;
            while lines < BATCH_LINES && out.len() < BATCH_BYTES {
                let room = (BATCH_BYTES - out.len()) / slot;
                let want = SLOTS.min(BATCH_LINES - lines).min(room.max(1));
                match crate::sys::net::recv_queued_many(fd, slab, slot, &mut lens[..want]) {
                    Ok(n) => {
                        for (k, len) in lens[..n].iter().enumerate() {
                            out.extend_from_slice(&slab[k * slot..k * slot + len]);
                            out.push(b'\n');
                        }
                        lines += n;
                        if n < want {
                            empty = true;
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        maillog::write_lines(out);
        if out.capacity() > 2 * BATCH_BYTES {
            *out = Vec::new();
        }
        empty
    })
}

/// A record for syslog (maillog_file was turned off): its own `name[pid]`
/// as the tag for this one line.
fn to_syslog(rec: &[u8]) {
    let rec = crate::util::latin1::decode(rec);
    let (name, text) = strip_prefix(&rec);
    let own = maillog::tag();
    if let Some(n) = name {
        maillog::set_tag(n);
    }
    maillog::log("info", text);
    if let Some(t) = own {
        maillog::set_tag(&t);
    }
}

/// Run by master.
pub fn main(args: Vec<OsString>) -> i32 {
    crate::master::server::dgram_server(args, Some(pre_init), true, true, service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_date_host_and_colon() {
        assert_eq!(
            strip_prefix("Nov 25 19:09:07 host postfix/smtpd[12]: connect from x"),
            (Some("postfix/smtpd[12]"), "connect from x")
        );
        assert_eq!(strip_prefix("Nov  5 1:2:3 h"), (None, ""));
    }
}
