//! The per-recipient logs in `bounce/`, `defer/` (hashed) and `trace/`:
//! appending one entry (the bounce/defer/trace services'
//! bounce_append_service) and reading the entries back (bounce_log.c).
//!
//! An entry is a blank line, the legacy `<recipient>: reason` line (with
//! backwards_bounce_logfile_compatibility), `name=value` lines, and a blank
//! line. An append is done under an exclusive lock and fsynced; a failed
//! append truncates the file to its old length.

use crate::global::deliver_request::Recipient;
use crate::global::mail_queue::{self, QueueConf};
use crate::global::quote_822_local::quote_822_local;
use crate::sys::lock::{LockOp, flock};
use crate::util::latin1;
use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;

/// The delivery status of one recipient as the logs record it (Postfix's
/// DSN structure).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DsnInfo {
    /// `x.y.z`.
    pub status: String,
    /// `failed`, `delayed`, `delivered`, `relayed`, `expanded`,
    /// `deliverable`, `undeliverable`.
    pub action: String,
    /// The free text.
    pub reason: String,
    /// Diagnostic type (`smtp`) and text (the remote reply), or empty.
    pub dtype: String,
    pub dtext: String,
    /// Remote MTA type (`dns`) and name, or empty.
    pub mtype: String,
    pub mname: String,
}

impl DsnInfo {
    /// A status with its action and reason, no remote MTA.
    pub fn new(status: &str, action: &str, reason: &str) -> DsnInfo {
        DsnInfo {
            status: status.into(),
            action: action.into(),
            reason: reason.into(),
            ..Default::default()
        }
    }
}

/// One log entry read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub rcpt: Recipient,
    pub dsn: DsnInfo,
}

/// Postfix's strcasecmp_utf8 for the orig_rcpt test (ASCII folding is what
/// matters for addresses; UTF-8 is compared as is otherwise).
fn same_address(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The text of one entry, as the services write it.
pub fn format_entry(rcpt: &Recipient, dsn: &DsnInfo, oldlog_compat: bool) -> String {
    let mut out = String::from("\n");
    let quoted = if rcpt.address.is_empty() {
        String::new()
    } else {
        quote_822_local(&rcpt.address)
    };
    if oldlog_compat {
        out.push_str(&format!("<{quoted}>: {}\n", dsn.reason));
    }
    out.push_str(&format!(
        "recipient={}\n",
        if rcpt.address.is_empty() {
            "<>"
        } else {
            &quoted
        }
    ));
    if !rcpt.orig_addr.is_empty() && !same_address(&rcpt.address, &rcpt.orig_addr) {
        out.push_str(&format!(
            "original_recipient={}\n",
            quote_822_local(&rcpt.orig_addr)
        ));
    }
    if rcpt.offset > 0 {
        out.push_str(&format!("offset={}\n", rcpt.offset));
    }
    if !rcpt.dsn_orcpt.is_empty() {
        out.push_str(&format!("dsn_orig_rcpt={}\n", rcpt.dsn_orcpt));
    }
    if rcpt.dsn_notify != 0 {
        out.push_str(&format!("notify_flags={}\n", rcpt.dsn_notify));
    }
    if !dsn.status.is_empty() {
        out.push_str(&format!("status={}\n", dsn.status));
    }
    if !dsn.action.is_empty() {
        out.push_str(&format!("action={}\n", dsn.action));
    }
    if !dsn.dtype.is_empty() && !dsn.dtext.is_empty() {
        out.push_str(&format!(
            "diag_type={}\ndiag_text={}\n",
            dsn.dtype, dsn.dtext
        ));
    }
    if !dsn.mtype.is_empty() && !dsn.mname.is_empty() {
        out.push_str(&format!(
            "mta_type={}\nmta_mname={}\n",
            dsn.mtype, dsn.mname
        ));
    }
    if !dsn.reason.is_empty() {
        out.push_str(&format!("reason={}\n", dsn.reason));
    }
    out.push('\n');
    out
}

/// Append one entry to the `service` log (`bounce`, `defer`, `trace`) of
/// a message. Errors carry Postfix's fatal texts (`open file defer ID`...)
/// so that callers can log them and back off.
pub fn append(
    queue: &QueueConf,
    service: &str,
    queue_id: &str,
    rcpt: &Recipient,
    dsn: &DsnInfo,
    oldlog_compat: bool,
) -> io::Result<()> {
    let ctx = |what: &str, e: io::Error| {
        io::Error::new(
            e.kind(),
            format!(
                "{what} file {service} {queue_id}: {}",
                crate::global::record::errtext(&e)
            ),
        )
    };
    let path = queue.abs_path(service, queue_id);
    let open = || {
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
    };
    let mut f = match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            queue
                .mkdirs(&queue.path(service, queue_id))
                .map_err(|e| ctx("open", e))?;
            open()
        }
        r => r,
    }
    .map_err(|e| ctx("open", e))?;
    flock(&f, LockOp::Exclusive).map_err(|e| ctx("lock", e))?;
    let orig_len = f.seek(SeekFrom::End(0)).map_err(|e| ctx("seek", e))?;
    let text = latin1::encode(&format_entry(rcpt, dsn, oldlog_compat));
    if let Err(e) = f.write_all(&text).and_then(|_| f.sync_all()) {
        f.set_len(orig_len).map_err(|e| ctx("truncate", e))?;
        return Err(ctx("append", e));
    }
    Ok(())
}

/// Postfix's printable() with `?` for control and non-ASCII bytes.
fn sanitize(line: &[u8]) -> String {
    line.iter()
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

/// Parse a log's text into entries, as bounce_log_read does (old- and
/// new-style lines, place holders for missing fields). `compat_defer`
/// selects the defaults for old-style entries (4.0.0/delayed for the
/// defer log, 5.0.0/failed otherwise). Warnings go to `warn`.
pub fn parse(
    data: &[u8],
    compat_defer: bool,
    path: &str,
    warn: &mut dyn FnMut(String),
) -> Vec<Entry> {
    let (compat_status, compat_action) = if compat_defer {
        ("4.0.0", "delayed")
    } else {
        ("5.0.0", "failed")
    };
    let mut out = Vec::new();
    let mut cur: Option<Entry> = None;
    let finish = |e: Entry| -> Entry {
        let mut e = e;
        if e.rcpt.address.is_empty() {
            e.rcpt.address = "(recipient address unavailable)".into();
        }
        if e.dsn.status.is_empty() {
            e.dsn.status = compat_status.into();
        }
        if e.dsn.action.is_empty() {
            e.dsn.action = compat_action.into();
        }
        if e.dsn.reason.is_empty() {
            e.dsn.reason = "(description unavailable)".into();
        }
        e
    };
    let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    // A final line without newline still counts; the empty tail does not.
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    for raw in lines {
        if raw.is_empty() {
            if let Some(e) = cur.take() {
                out.push(finish(e));
            }
            continue;
        }
        let line = sanitize(raw);
        let e = cur.get_or_insert_with(Entry::default);
        if line.as_bytes()[0].is_ascii_alphanumeric() {
            let Some((name, value)) = split_nameval(&line) else {
                warn(format!(
                    "{path}: malformed record: missing '=' after attribute name"
                ));
                continue;
            };
            let or_daemon = |v: &str| {
                if v.is_empty() {
                    "(MAILER-DAEMON)".to_string()
                } else {
                    v.to_string()
                }
            };
            match name {
                "recipient" => e.rcpt.address = or_daemon(value),
                "original_recipient" => e.rcpt.orig_addr = or_daemon(value),
                "dsn_orig_rcpt" => e.rcpt.dsn_orcpt = value.into(),
                "notify_flags" => {
                    let n = atoi(value) as i32;
                    if n > 0 && n & !0xf == 0 {
                        e.rcpt.dsn_notify = n;
                    }
                }
                "offset" => {
                    let n = atoi(value);
                    if n > 0 {
                        e.rcpt.offset = n;
                    }
                }
                "status" => e.dsn.status = value.into(),
                "action" => e.dsn.action = value.into(),
                "diag_type" => e.dsn.dtype = value.into(),
                "diag_text" => e.dsn.dtext = value.into(),
                "mta_type" => e.dsn.mtype = value.into(),
                "mta_mname" => e.dsn.mname = value.into(),
                "reason" => e.dsn.reason = value.into(),
                _ => warn(format!("{path}: unknown attribute name: {name}, ignored")),
            }
            continue;
        }
        let short = |s: &str| s.chars().take(30).collect::<String>();
        let Some(rest) = line.strip_prefix('<') else {
            warn(format!("{path}: malformed record: {}...", short(&line)));
            continue;
        };
        let Some(i) = rest.find(">: ") else {
            warn(format!("{path}: malformed record: {}...", short(&line)));
            continue;
        };
        e.rcpt.address = if i == 0 {
            "(MAILER-DAEMON)".into()
        } else {
            rest[..i].into()
        };
        e.dsn.reason = rest[i + 2..]
            .trim_start_matches(|c: char| c.is_ascii_whitespace())
            .into();
    }
    // Postfix returns an entry only at its terminating blank line.
    out
}

/// split_nameval: `name = value` with blanks trimmed around both.
fn split_nameval(line: &str) -> Option<(&str, &str)> {
    let (n, v) = line.split_once('=')?;
    let n = n.trim();
    if n.is_empty() {
        return None;
    }
    Some((n, v.trim()))
}

fn atoi(s: &str) -> i64 {
    crate::global::mail_conf::parse_strtol(s.trim()).unwrap_or_else(|| {
        let d: String = s
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        d.parse().unwrap_or(0)
    })
}

/// Read a message's `service` log. `Ok(None)` when there is none.
pub fn read(
    queue: &QueueConf,
    service: &str,
    queue_id: &str,
    warn: &mut dyn FnMut(String),
) -> io::Result<Option<Vec<Entry>>> {
    let rel = queue.path(service, queue_id);
    let mut f = match queue.open(service, queue_id) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut data = Vec::new();
    f.read_to_end(&mut data)?;
    Ok(Some(parse(&data, service == mail_queue::DEFER, &rel, warn)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcpt(addr: &str) -> Recipient {
        Recipient {
            address: addr.into(),
            orig_addr: addr.into(),
            offset: 256,
            dsn_orcpt: format!("rfc822;{addr}"),
            dsn_notify: 0,
        }
    }

    #[test]
    fn entry_matches_postfix_defer_log() {
        // From postfix-3.7-samples.txt: SPOOL/defer/9/<ID>.
        let e = format_entry(
            &rcpt("someone@defer.test"),
            &DsnInfo::new("4.3.0", "delayed", "address resolver failure"),
            true,
        );
        assert_eq!(
            e,
            "\n<someone@defer.test>: address resolver failure\n\
             recipient=someone@defer.test\n\
             offset=256\n\
             dsn_orig_rcpt=rfc822;someone@defer.test\n\
             status=4.3.0\n\
             action=delayed\n\
             reason=address resolver failure\n\n"
        );
    }

    #[test]
    fn remote_fields_and_orig_rcpt() {
        let mut r = rcpt("a@b.example");
        r.orig_addr = "alias@b.example".into();
        r.dsn_notify = 6;
        let d = DsnInfo {
            status: "5.1.1".into(),
            action: "failed".into(),
            reason: "host x[1.2.3.4] said: 550 no".into(),
            dtype: "smtp".into(),
            dtext: "550 no".into(),
            mtype: "dns".into(),
            mname: "x".into(),
        };
        let text = format_entry(&r, &d, false);
        assert!(text.starts_with("\nrecipient=a@b.example\noriginal_recipient=alias@b.example\n"));
        assert!(text.contains("notify_flags=6\n"));
        assert!(text.contains("diag_type=smtp\ndiag_text=550 no\nmta_type=dns\nmta_mname=x\n"));
        let mut warns = Vec::new();
        let back = parse(text.as_bytes(), false, "bounce/X", &mut |w| warns.push(w));
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].rcpt, r);
        assert_eq!(back[0].dsn, d);
        assert!(warns.is_empty());
    }

    #[test]
    fn old_style_and_place_holders() {
        let mut warns = Vec::new();
        let v = parse(
            b"\n<x@y>: gone away\n\n\nbogus line\n\n\nfoo=bar\n\n",
            true,
            "defer/A/ABC",
            &mut |w| warns.push(w),
        );
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].rcpt.address, "x@y");
        assert_eq!(v[0].dsn.status, "4.0.0");
        assert_eq!(v[0].dsn.action, "delayed");
        assert_eq!(v[0].dsn.reason, "gone away");
        assert_eq!(v[1].rcpt.address, "(recipient address unavailable)");
        assert_eq!(v[1].dsn.reason, "(description unavailable)");
        assert_eq!(
            warns,
            vec![
                "defer/A/ABC: malformed record: missing '=' after attribute name".to_string(),
                "defer/A/ABC: unknown attribute name: foo, ignored".to_string()
            ]
        );
    }

    #[test]
    fn append_creates_hashed_dirs_and_appends() {
        let dir = std::env::temp_dir().join(format!("bouncelog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let q = QueueConf {
            queue_directory: dir.to_string_lossy().into(),
            ..Default::default()
        };
        let d = DsnInfo::new("4.4.1", "delayed", "connect timeout");
        append(&q, "defer", "9A5B5990152", &rcpt("a@x"), &d, true).unwrap();
        append(&q, "defer", "9A5B5990152", &rcpt("b@x"), &d, true).unwrap();
        let p = dir.join("defer/9/9A5B5990152");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let v = read(&q, "defer", "9A5B5990152", &mut |_| {})
            .unwrap()
            .unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].rcpt.address, "b@x");
        assert!(
            read(&q, "bounce", "9A5B5990152", &mut |_| {})
                .unwrap()
                .is_none()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
