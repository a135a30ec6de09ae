//! The mail log, as Postfix's maillog_client: every message of a daemon
//! (and the log copy of a command's messages) goes either to syslog (the
//! `mail` facility, or `syslog_facility`) as `postfix/NAME[PID]: text`, or,
//! when `maillog_file` is set, to that file as the line Postfix's
//! msg_logger/postlogd writes:
//!
//! ```text
//! Nov 25 19:09:07 host postfix/master[300]: daemon started -- version 3.7.11, ...
//! Nov 25 19:09:14 host postfix/master[300]: warning: process ... exit status 1
//! ```
//!
//! (local time `%b %d %H:%M:%S`, the first label of myhostname, the tag, the
//! pid, then `warning: `, `error: `, `fatal: ` or `panic: ` for those
//! levels). Postfix sends such lines to its postlogd service, which appends
//! them to the file; rostfix processes append them to the file themselves
//! (O_APPEND, one write per line), which gives the same file.
//!
//! Reusable by every daemon: call [`init`] with the process's tag once the
//! configuration is read (and again after a reload).

use crate::global::mail_conf::MailConf;
use crate::global::msg;
use std::io::Write;
use std::sync::Mutex;

enum Target {
    Syslog,
    File(String, Option<std::fs::File>),
}

struct State {
    tag: String,
    host: String,
    target: Target,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// Postfix's mail_task(): `syslog_name/progname`, or the program name when
/// it already has a slash. MAIL_LOGTAG overrides syslog_name before main.cf
/// is read.
pub fn mail_task(conf: Option<&MailConf>, progname: &str) -> String {
    if progname.contains('/') {
        return progname.to_string();
    }
    let name = conf
        .and_then(|c| c.lookup_eval("syslog_name").ok().flatten())
        .or_else(|| std::env::var("MAIL_LOGTAG").ok())
        .unwrap_or_else(|| "postfix".to_string());
    format!("{name}/{progname}")
}

fn sink(level: &str, text: &str) {
    log(level, text);
}

/// Log to syslog under `tag` before the configuration is known.
pub fn init_syslog(tag: &str) {
    crate::sys::syslog::open(tag, libc::LOG_MAIL);
    *STATE.lock().unwrap_or_else(|e| e.into_inner()) = Some(State {
        tag: tag.to_string(),
        host: String::new(),
        target: Target::Syslog,
    });
    msg::set_sink(Some(sink));
}

/// Choose the log from the configuration: `maillog_file` (which must start
/// with one of `maillog_file_prefixes`), else syslog. The error is
/// Postfix's fatal text.
pub fn init(tag: &str, conf: &MailConf) -> Result<(), String> {
    let file = conf
        .lookup_eval("maillog_file")
        .map_err(|e| e.0)?
        .unwrap_or_default();
    let host = conf
        .lookup_eval("myhostname")
        .ok()
        .flatten()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "amnesiac".to_string());
    let host = host.split('.').next().unwrap_or("").to_string();
    let target = if file.is_empty() {
        let fac = conf
            .lookup_eval("syslog_facility")
            .ok()
            .flatten()
            .and_then(|f| crate::sys::syslog::facility(&f))
            .unwrap_or(libc::LOG_MAIL);
        crate::sys::syslog::open(tag, fac);
        Target::Syslog
    } else {
        let prefixes = conf
            .lookup_eval("maillog_file_prefixes")
            .map_err(|e| e.0)?
            .unwrap_or_default();
        if !prefixes
            .split([',', ' ', '\t', '\r', '\n'])
            .filter(|p| !p.is_empty())
            .any(|p| file.starts_with(p))
        {
            return Err(format!(
                "maillog_file value '{file}' does not match any prefix in maillog_file_prefixes"
            ));
        }
        // Open now, before a daemon drops privileges.
        let f = if file == "/dev/stdout" || file == "/dev/stderr" {
            None
        } else {
            open_log(&file)
        };
        Target::File(file, f)
    };
    *STATE.lock().unwrap_or_else(|e| e.into_inner()) = Some(State {
        tag: tag.to_string(),
        host,
        target,
    });
    msg::set_sink(Some(sink));
    Ok(())
}

/// The current tag, if the log is set up.
pub fn tag() -> Option<String> {
    let g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    g.as_ref().map(|st| st.tag.clone())
}

/// Change the tag (a server learns its service name after start-up).
pub fn set_tag(tag: &str) {
    let mut g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(st) = g.as_mut() {
        st.tag = tag.to_string();
        if let Target::Syslog = st.target {
            crate::sys::syslog::open(tag, libc::LOG_MAIL);
        }
    }
}

/// Forget the open log file (a child after fork, or before a reload).
pub fn reopen() {
    let mut g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(State {
        target: Target::File(_, f),
        ..
    }) = g.as_mut()
    {
        *f = None;
    }
}

fn open_log(path: &str) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(crate::util::latin1::to_path(path))
        .ok()
}

/// The file line for a message: `Mon DD HH:MM:SS host tag[pid]: text`.
pub fn format_line(now: i64, host: &str, tag: &str, pid: u32, level: &str, text: &str) -> String {
    let prefix = match level {
        "info" | "" => String::new(),
        l => format!("{l}: "),
    };
    format!(
        "{} {host} {tag}[{pid}]: {prefix}{text}\n",
        crate::sys::syslog::timestamp(now)
    )
}

/// Log one message (level `info`, `warning`, `error`, `fatal`, `panic`).
pub fn log(level: &str, text: &str) {
    let mut g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(st) = g.as_mut() else {
        return;
    };
    match &mut st.target {
        Target::Syslog => {
            use crate::sys::syslog::*;
            let prio = match level {
                "warning" => LOG_WARNING,
                "error" => LOG_ERR,
                "fatal" | "panic" => LOG_CRIT,
                _ => LOG_INFO,
            };
            let line = if level == "info" {
                text.to_string()
            } else {
                format!("{level}: {text}")
            };
            send(prio, &line);
        }
        Target::File(path, file) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            let line = format_line(now, &st.host, &st.tag, std::process::id(), level, text);
            // The standard streams are the ones this process has (master
            // -s passes its own on): reopening /dev/stdout would need
            // permission on whatever it is, which an unprivileged process
            // may lack.
            if path == "/dev/stdout" || path == "/dev/stderr" {
                let b = crate::util::latin1::encode(&line);
                let _ = if path == "/dev/stdout" {
                    let mut o = std::io::stdout().lock();
                    o.write_all(&b).and_then(|_| o.flush())
                } else {
                    std::io::stderr().write_all(&b)
                };
                return;
            }
            if file.is_none() {
                *file = open_log(path);
            }
            if let Some(f) = file.as_mut() {
                let _ = f.write_all(&crate::util::latin1::encode(&line));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format() {
        let l = format_line(0, "pf", "postfix/master", 300, "warning", "x y");
        assert!(
            l.ends_with(" pf postfix/master[300]: warning: x y\n"),
            "{l}"
        );
        let l = format_line(0, "pf", "postfix/master", 300, "info", "daemon started");
        assert!(
            l.ends_with(" pf postfix/master[300]: daemon started\n"),
            "{l}"
        );
        // "%b %d %H:%M:%S": a month name, a two-digit day, a time.
        assert_eq!(&l[3..4], " ");
        assert_eq!(&l[6..7], " ");
        assert_eq!(l[7..15].matches(':').count(), 2);
    }

    #[test]
    fn mail_task_uses_syslog_name() {
        let c = MailConf::from_text("/x", "syslog_name = postfix-out\n");
        assert_eq!(mail_task(Some(&c), "master"), "postfix-out/master");
        let c = MailConf::from_text("/x", "");
        assert_eq!(mail_task(Some(&c), "smtpd"), "postfix/smtpd");
        assert_eq!(mail_task(Some(&c), "a/b"), "a/b");
    }

    #[test]
    fn prefix_check() {
        let c = MailConf::from_text("/x", "maillog_file = /tmp/x.log\n");
        assert_eq!(
            init("postfix/test", &c).unwrap_err(),
            "maillog_file value '/tmp/x.log' does not match any prefix in maillog_file_prefixes"
        );
    }
}
