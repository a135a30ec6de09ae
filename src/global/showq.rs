//! The queue listing of Postfix 3.7's showq(8) daemon, as a library: walk
//! maildrop, active, incoming, deferred and hold under the queue directory,
//! read each complete queue file and its defer log, and produce for each
//! message what showq sends to postqueue (queue, ID, arrival time, size,
//! forced expiry, sender, recipients with the reasons from the defer log).
//!
//! Postfix's postqueue asks the showq daemon over `public/showq`; rostfix
//! has no master yet, so postqueue calls [`list_queue`] directly. A future
//! showq service calls the same function. Warnings that showq would log
//! are handed to the caller.

use crate::global::mail_conf::{ConfError, MailConf};
use crate::global::mail_queue::{self, QueueConf};
use crate::global::msg::printable;
use crate::global::rec_type;
use crate::global::record::{self, QueueStream, Rec};
use crate::util::latin1;
use std::collections::HashSet;
use std::io::{BufRead, SeekFrom};
use std::os::unix::fs::MetadataExt;

/// One message as showq reports it. Text fields are one-char-per-byte and
/// already made printable as showq does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    pub queue: String,
    pub id: String,
    pub arrival_time: i64,
    pub size: i64,
    pub forced_expire: bool,
    pub sender: String,
    /// (address, reason); the reason is empty when none is known.
    pub recipients: Vec<(String, String)>,
}

/// The settings showq uses.
#[derive(Debug, Clone)]
pub struct ShowqConf {
    pub queue: QueueConf,
    /// smtputf8_enable (Postfix's util_utf8_enable).
    pub utf8: bool,
    /// empty_address_recipient.
    pub empty_addr: String,
    /// duplicate_filter_limit.
    pub dup_filter_limit: usize,
}

impl ShowqConf {
    /// From main.cf.
    pub fn from_conf(conf: &MailConf) -> Result<ShowqConf, ConfError> {
        Ok(ShowqConf {
            queue: QueueConf::from_conf(conf)?,
            utf8: conf.get_bool("smtputf8_enable")?,
            empty_addr: conf.get_str("empty_address_recipient", 1, 0)?,
            dup_filter_limit: conf.get_int("duplicate_filter_limit", 0, 0)? as usize,
        })
    }
}

/// The queues showq lists, in its order.
pub const SHOWQ_QUEUES: &[&str] = &[
    mail_queue::MAILDROP,
    mail_queue::ACTIVE,
    mail_queue::INCOMING,
    mail_queue::DEFERRED,
    mail_queue::HOLD,
];

/// Postfix's quote_822_local (8-bit clean): quote the local part when it is
/// not a dot-string.
pub fn quote_822_local(addr: &str) -> String {
    let b: Vec<u32> = addr.chars().map(|c| c as u32).collect();
    let start = if b.first() == Some(&(b'@' as u32)) {
        match b.iter().position(|&c| c == b':' as u32) {
            Some(i) => i + 1,
            None => 0,
        }
    } else {
        0
    };
    let end = match b[start..].iter().rposition(|&c| c == b'@' as u32) {
        Some(i) => start + i,
        None => b.len(),
    };
    let local = &b[start..end];
    let dot_string = {
        let mut ok = !local.is_empty() && local[0] != b'.' as u32;
        if ok {
            for (i, &c) in local.iter().enumerate() {
                if c == b'.' as u32 && local.get(i + 1) == Some(&(b'.' as u32)) {
                    ok = false;
                    break;
                }
                if c == b' ' as u32 || c < 0x20 || c == 0x7f {
                    ok = false;
                    break;
                }
                if c < 0x80 && b"()<>@,;:\\\"[]".contains(&(c as u8)) {
                    ok = false;
                    break;
                }
            }
            if ok && local.last() == Some(&(b'.' as u32)) {
                ok = false;
            }
        }
        ok
    };
    if dot_string {
        return addr.to_string();
    }
    let mut out: String = addr.chars().take(start).collect();
    out.push('"');
    for &c in local {
        if c == b'"' as u32 || c == b'\\' as u32 || c == b'\r' as u32 {
            out.push('\\');
        }
        out.push(char::from_u32(c).unwrap_or('?'));
    }
    out.push('"');
    out.extend(addr.chars().skip(end));
    out
}

/// One defer-log entry: recipient and reason (bounce_log_read).
fn read_defer_log(
    file: std::fs::File,
    path: &str,
    utf8: bool,
    warn: &mut dyn FnMut(&str),
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rd = std::io::BufReader::new(file);
    let mut found = false;
    let mut addr = String::new();
    let mut reason = String::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match rd.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return out,
            Ok(_) => {}
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let raw = record::c_str(&line);
        if raw.is_empty() {
            if found {
                if addr.is_empty() {
                    addr = "(recipient address unavailable)".into();
                }
                if reason.is_empty() {
                    reason = "(description unavailable)".into();
                }
                out.push((std::mem::take(&mut addr), std::mem::take(&mut reason)));
                found = false;
            }
            continue;
        }
        let text = printable(&latin1::decode(raw), utf8);
        found = true;
        let first = text.chars().next().unwrap_or(' ');
        if first.is_ascii_alphanumeric() {
            let tb = latin1::encode(&text);
            match crate::commands::postcat::split_nameval(&tb) {
                Err(e) => warn(&format!("{path}: malformed record: {e}")),
                Ok((name, value)) => {
                    let value = latin1::decode(value);
                    match name {
                        b"recipient" => {
                            addr = if value.is_empty() {
                                "(MAILER-DAEMON)".into()
                            } else {
                                value
                            }
                        }
                        b"reason" => reason = value,
                        b"original_recipient"
                        | b"dsn_orig_rcpt"
                        | b"notify_flags"
                        | b"offset"
                        | b"status"
                        | b"action"
                        | b"diag_type"
                        | b"diag_text"
                        | b"mta_type"
                        | b"mta_mname" => {}
                        _ => warn(&format!(
                            "{path}: unknown attribute name: {}, ignored",
                            latin1::decode(name)
                        )),
                    }
                }
            }
            continue;
        }
        if first != '<' {
            let shown: String = text.chars().take(30).collect();
            warn(&format!("{path}: malformed record: {shown}..."));
            continue;
        }
        let rest = &text[1..];
        let Some(i) = rest.find(">: ") else {
            let shown: String = text.chars().take(30).collect();
            warn(&format!("{path}: malformed record: {shown}..."));
            continue;
        };
        let rcpt = &rest[..i];
        addr = if rcpt.is_empty() {
            "(MAILER-DAEMON)".into()
        } else {
            rcpt.to_string()
        };
        reason = rest[i + 2..]
            .trim_start_matches(|c: char| c.is_ascii_whitespace())
            .to_string();
    }
}

/// Read one queue file as showq_report does.
fn report(
    sc: &ShowqConf,
    queue: &str,
    id: &str,
    fp: &mut QueueStream,
    st: &std::fs::Metadata,
    warn: &mut dyn FnMut(&str),
) -> Option<QueueEntry> {
    let mut buf = Vec::new();
    let mut arrival: i64 = 0;
    let mut msg_size: i64 = st.size() as i64;
    let mut size_ok = false;
    let mut entry: Option<QueueEntry> = None;
    let mut dup: Option<HashSet<String>> = None;
    loop {
        let t = match record::rec_get(fp, &mut buf, 0) {
            Rec::Type(t) if t > 0 => t,
            _ => break,
        };
        for w in fp.take_warnings() {
            warn(&w);
        }
        let start = latin1::decode(record::c_str(&buf));
        match t {
            rec_type::TIME if arrival == 0 => {
                arrival = rec_type::atol(start.as_bytes());
            }
            rec_type::SIZE if !size_ok => {
                let well_formed = start.bytes().all(|c| c.is_ascii_digit() || c == b' ');
                let v = rec_type::atol(&latin1::encode(&start));
                size_ok = well_formed && v >= 0;
                if size_ok {
                    msg_size = v;
                } else {
                    let shown: String = start.chars().take(100).collect();
                    warn(&format!(
                        "{id}: malformed size record: {} -- using file size instead",
                        printable(&shown, sc.utf8)
                    ));
                    msg_size = st.size() as i64;
                }
            }
            rec_type::FROM => {
                let addr = if start.is_empty() {
                    sc.empty_addr.clone()
                } else {
                    start.clone()
                };
                let quoted = printable(&quote_822_local(&addr), sc.utf8);
                if entry.is_some() {
                    warn(&format!(
                        "{id}: duplicate sender address: {quoted} -- skipping remainder of this file"
                    ));
                    return entry;
                }
                let mut e = QueueEntry {
                    queue: queue.to_string(),
                    id: id.to_string(),
                    arrival_time: if arrival > 0 { arrival } else { st.mtime() },
                    size: msg_size,
                    forced_expire: st.mode() & mail_queue::STAT_EXPIRE != 0,
                    sender: quoted,
                    recipients: Vec::new(),
                };
                // Reasons from the defer log come first.
                let rel = sc.queue.path(mail_queue::DEFER, id);
                if let Ok(f) = sc.queue.open(mail_queue::DEFER, id) {
                    let mut seen = HashSet::new();
                    for (a, r) in read_defer_log(f, &rel, sc.utf8, warn) {
                        if sc.dup_filter_limit == 0 || seen.len() < sc.dup_filter_limit {
                            seen.insert(a.clone());
                        }
                        e.recipients.push((a, r));
                    }
                    dup = Some(seen);
                }
                entry = Some(e);
            }
            rec_type::RCPT => {
                let Some(e) = entry.as_mut() else {
                    warn(&format!(
                        "{id}: missing sender address:  -- skipping remainder of this file"
                    ));
                    return None;
                };
                let addr = if start.is_empty() {
                    sc.empty_addr.clone()
                } else {
                    start.clone()
                };
                let quoted = printable(&quote_822_local(&addr), sc.utf8);
                if dup.as_ref().is_none_or(|d| !d.contains(&quoted)) {
                    e.recipients.push((quoted, String::new()));
                }
            }
            rec_type::MESG => {
                if size_ok && let Err(err) = fp.fseek(msg_size, SeekFrom::Current(0)) {
                    warn(&format!(
                        "seek file {}: {}",
                        fp.path(),
                        record::errtext(&err)
                    ));
                    return entry;
                }
            }
            _ => {}
        }
    }
    for w in fp.take_warnings() {
        warn(&w);
    }
    entry
}

/// List the queue: every complete message in maildrop, active, incoming,
/// deferred and hold, in showq's order (directory order within a queue).
/// `warn` receives what showq would log.
pub fn list_queue(
    sc: &ShowqConf,
    warn: &mut dyn FnMut(&str),
    emit: &mut dyn FnMut(QueueEntry),
) -> std::io::Result<()> {
    let top = latin1::to_path(&sc.queue.queue_directory);
    for &queue in SHOWQ_QUEUES {
        let recurse = queue != mail_queue::MAILDROP;
        // A stack of directories, as scan_dir: descend into one-letter names.
        let mut stack = vec![(queue.to_string(), std::fs::read_dir(top.join(queue))?)];
        let mut saved_id: Option<String> = None;
        while let Some((dir, it)) = stack.last_mut() {
            let Some(ent) = it.next() else {
                stack.pop();
                continue;
            };
            let Ok(ent) = ent else { continue };
            let name = latin1::from_os(&ent.file_name());
            if recurse && name.chars().count() == 1 {
                let sub = format!("{dir}/{name}");
                if let Ok(rd) = std::fs::read_dir(top.join(latin1::to_path(&sub))) {
                    stack.push((sub, rd));
                }
                continue;
            }
            if saved_id.as_deref() == Some(name.as_str()) {
                warn(&format!("readdir loop on queue {queue} id {name}"));
                break;
            }
            saved_id = Some(name.clone());
            // mail_open_ok
            if !mail_queue::id_ok(&name) {
                continue;
            }
            let rel = sc.queue.path(queue, &name);
            let abs = top.join(latin1::to_path(&rel));
            let st = match std::fs::symlink_metadata(&abs) {
                Ok(st) => st,
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        warn(&format!("{rel}: {}", record::errtext(&e)));
                    }
                    continue;
                }
            };
            if !st.file_type().is_file() {
                warn(&format!("{rel}: uid {}: not a regular file", st.uid()));
                continue;
            }
            if st.mode() & 0o700 != mail_queue::STAT_READY {
                continue;
            }
            if st.nlink() > 1 {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                if st.ctime() < now - 60 {
                    warn(&format!(
                        "{rel}: uid {}: file has {} links",
                        st.uid(),
                        st.nlink()
                    ));
                }
            }
            match std::fs::File::open(&abs) {
                Ok(f) => {
                    let mut fp = QueueStream::new(f, &rel);
                    fp.collect_warnings();
                    if let Some(e) = report(sc, queue, &name, &mut fp, &st, warn) {
                        emit(e);
                    }
                }
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        warn(&format!("open {queue} {name}: {}", record::errtext(&e)));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_822_local("a.b@example.com"), "a.b@example.com");
        assert_eq!(quote_822_local("a b@example.com"), "\"a b\"@example.com");
        assert_eq!(quote_822_local("a..b@x"), "\"a..b\"@x");
        assert_eq!(quote_822_local(".a@x"), "\".a\"@x");
        assert_eq!(quote_822_local("a\"b@x"), "\"a\\\"b\"@x");
        assert_eq!(quote_822_local("@r:a b@x"), "@r:\"a b\"@x");
        assert_eq!(quote_822_local("MAILER-DAEMON"), "MAILER-DAEMON");
        assert_eq!(quote_822_local(""), "\"\"");
        assert_eq!(quote_822_local("caf\u{e9}@x"), "caf\u{e9}@x");
    }
}
