//! The mail log, as Postfix's maillog_client: every message of a daemon
//! (and the log copy of a command's messages) goes either to syslog (the
//! `mail` facility, or `syslog_facility`) as `postfix/NAME[PID]: text`, or,
//! when `maillog_file` is set, to the postlog service, which appends it to
//! that file as the line Postfix's msg_logger formats:
//!
//! ```text
//! Nov 25 19:09:07 host postfix/master[300]: daemon started -- version 3.7.11, ...
//! Nov 25 19:09:14 host postfix/master[300]: warning: process ... exit status 1
//! ```
//!
//! (local time `%b %d %H:%M:%S`, the first label of myhostname, the tag, the
//! pid, then `warning: `, `error: `, `fatal: ` or `panic: ` for those
//! levels; the text made printable, then cut at 2000 bytes). The line is
//! built in a buffer kept between lines, the date text once a second and
//! the `host tag[pid]: ` part when the tag or pid changes: a line costs
//! one clock read and one send, and no allocation. Each line is one datagram, without
//! the newline, to `$queue_directory/public/$postlog_service_name` (the
//! `postlog unix-dgram` service of master.cf, run by postlogd(8)); the
//! socket is connected before a daemon chroots and drops privileges.
//! When the service cannot be reached, the line is appended to the file
//! directly (Postfix's logwriter fallback: master, postfix, postsuper; see
//! compat/DIVERGENCES.md for the other programs). postlogd itself writes
//! the file ([`set_fallback_only`]).
//!
//! Reusable by every daemon: call [`init`] with the process's tag once the
//! configuration is read (and again after a reload).

use crate::global::mail_conf::MailConf;
use crate::global::msg;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::Mutex;

/// Postfix's MSG_LOGGER_RECLEN: the longest text a line carries.
const RECLEN: usize = 2000;

enum Target {
    Syslog,
    Postlog {
        /// maillog_file, for the direct-write fallback.
        path: String,
        file: Option<std::fs::File>,
        /// The postlog service's socket path, and the socket once connected.
        service: String,
        sock: Option<UnixDatagram>,
        /// Write the file directly (postlogd itself).
        fallback_only: bool,
    },
}

struct State {
    tag: String,
    host: String,
    target: Target,
    /// The line being built, kept for the next one.
    line: Vec<u8>,
    /// The second that `stamp` shows, and its `Mon DD HH:MM:SS` text
    /// (recomputed when the second changes).
    stamp_at: i64,
    stamp: String,
    /// ` host tag[pid]: `, and the pid it was made for (0: make it again).
    head: Vec<u8>,
    head_pid: u32,
    /// The same for the last other tag a line was logged under with
    /// [`log_as`] (cleanup's lines inside smtpd or pickup), and its tag.
    alt_tag: String,
    alt_head: Vec<u8>,
    alt_pid: u32,
}

impl State {
    fn new(tag: &str, host: String, target: Target) -> State {
        State {
            tag: tag.to_string(),
            host,
            target,
            line: Vec::new(),
            stamp_at: i64::MIN,
            stamp: String::new(),
            head: Vec::new(),
            head_pid: 0,
            alt_tag: String::new(),
            alt_head: Vec::new(),
            alt_pid: 0,
        }
    }
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
    *STATE.lock().unwrap_or_else(|e| e.into_inner()) =
        Some(State::new(tag, String::new(), Target::Syslog));
    msg::set_sink(Some(sink));
}

/// Choose the log from the configuration: `maillog_file` (which must start
/// with one of `maillog_file_prefixes`) through the postlog service, else
/// syslog. The error is Postfix's fatal text.
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
        let queue = conf
            .lookup_eval("queue_directory")
            .ok()
            .flatten()
            .unwrap_or_default();
        let name = conf
            .lookup_eval("postlog_service_name")
            .ok()
            .flatten()
            .unwrap_or_else(|| "postlog".into());
        let service = format!("{queue}/public/{name}");
        // Connect now, before a daemon chroots and drops privileges.
        let sock = connect(&service);
        // The fallback file is opened now for the same reason.
        let f = if sock.is_some() || file == "/dev/stdout" || file == "/dev/stderr" {
            None
        } else {
            open_log(&file)
        };
        Target::Postlog {
            path: file,
            file: f,
            service,
            sock,
            fallback_only: false,
        }
    };
    *STATE.lock().unwrap_or_else(|e| e.into_inner()) = Some(State::new(tag, host, target));
    msg::set_sink(Some(sink));
    Ok(())
}

fn connect(path: &str) -> Option<UnixDatagram> {
    let s = UnixDatagram::unbound().ok()?;
    s.connect(crate::util::latin1::to_path(path)).ok()?;
    // Never block on a full service queue for long: see send_line.
    let _ = s.set_write_timeout(Some(std::time::Duration::from_secs(2)));
    Some(s)
}

/// Stop using the postlog service and write `maillog_file` directly, with
/// `file` open already (postlogd, Postfix's MSG_LOGGER_CTL_FALLBACK_ONLY).
pub fn set_fallback_only(file: std::fs::File) {
    let mut g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(State {
        target:
            Target::Postlog {
                file: f,
                sock,
                fallback_only,
                ..
            },
        ..
    }) = g.as_mut()
    {
        *f = Some(file);
        *sock = None;
        *fallback_only = true;
    }
}

/// Does this process write `maillog_file` itself (postlogd after
/// [`set_fallback_only`])?
pub fn writes_file() -> bool {
    let g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    matches!(
        g.as_ref(),
        Some(State {
            target: Target::Postlog {
                fallback_only: true,
                ..
            },
            ..
        })
    )
}

/// Append records that clients formatted, each already followed by its
/// newline, to the file this process writes directly (postlogd after
/// [`set_fallback_only`]), in one write; false when there is none.
pub fn write_lines(lines: &[u8]) -> bool {
    let mut g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    match g.as_mut() {
        Some(State {
            target:
                Target::Postlog {
                    path,
                    file,
                    fallback_only: true,
                    ..
                },
            ..
        }) => {
            write_bytes(path, file.as_mut(), lines);
            true
        }
        _ => false,
    }
}

/// Wait (at most `limit`) until postlogd has read every line this process
/// sent: a command that is about to stop master (and with it postlogd)
/// calls this so that its own last lines are not lost.
pub fn drain(limit: std::time::Duration) {
    use std::os::fd::AsRawFd;
    let fd = {
        let g = STATE.lock().unwrap_or_else(|e| e.into_inner());
        match g.as_ref() {
            Some(State {
                target: Target::Postlog { sock: Some(s), .. },
                ..
            }) => s.as_raw_fd(),
            _ => return,
        }
    };
    let t = std::time::Instant::now();
    while matches!(crate::sys::net::unread_output(fd), Ok(n) if n > 0) && t.elapsed() < limit {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
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
        if st.tag == tag {
            return;
        }
        st.tag.clear();
        st.tag.push_str(tag);
        st.head_pid = 0;
        if let Target::Syslog = st.target {
            crate::sys::syslog::open(tag, libc::LOG_MAIL);
        }
    }
}

/// Forget the open log file and service socket (a child after fork, or
/// before a reload).
pub fn reopen() {
    let mut g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(State {
        target: Target::Postlog { file, sock, .. },
        ..
    }) = g.as_mut()
    {
        *file = None;
        *sock = None;
    }
}

/// Open `maillog_file` as Postfix's logwriter does (append, create 0644).
pub fn open_log(path: &str) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(crate::util::latin1::to_path(path))
        .ok()
}

/// Append the log line for a message, without the newline, to `out`:
/// `stamp` (`Mon DD HH:MM:SS`), then `head` (` host tag[pid]: `), `warning: `
/// (or the other level) unless it is `info`, and the text made printable
/// and cut at Postfix's record length (in bytes, as Postfix's `%.*s`).
fn build_line(out: &mut Vec<u8>, stamp: &str, head: &[u8], level: &str, text: &str) {
    out.extend_from_slice(stamp.as_bytes());
    out.extend_from_slice(head);
    if !matches!(level, "info" | "") {
        out.extend_from_slice(level.as_bytes());
        out.extend_from_slice(b": ");
    }
    let start = out.len();
    msg::printable_into(text, msg::utf8_enable(), out);
    out.truncate(start + RECLEN);
}

/// ` host tag[pid]: `.
fn make_head(out: &mut Vec<u8>, host: &str, tag: &str, pid: u32) {
    out.clear();
    out.push(b' ');
    out.extend_from_slice(&crate::util::latin1::encode_cow(host));
    out.push(b' ');
    out.extend_from_slice(&crate::util::latin1::encode_cow(tag));
    // Without the formatting machinery: this runs for every line.
    out.push(b'[');
    out.extend_from_slice(crate::util::stringops::decimal(&mut [0u8; 10], pid).as_bytes());
    out.extend_from_slice(b"]: ");
}

/// The log line for a message, without the newline: `Mon DD HH:MM:SS host
/// tag[pid]: text`.
pub fn format_record(now: i64, host: &str, tag: &str, pid: u32, level: &str, text: &str) -> String {
    let mut head = Vec::new();
    make_head(&mut head, host, tag, pid);
    let mut l = Vec::new();
    build_line(
        &mut l,
        &crate::sys::syslog::timestamp(now),
        &head,
        level,
        text,
    );
    crate::util::latin1::decode(&l)
}

/// The file line for a message: [`format_record`] and a newline.
pub fn format_line(now: i64, host: &str, tag: &str, pid: u32, level: &str, text: &str) -> String {
    let mut l = format_record(now, host, tag, pid, level, text);
    l.push('\n');
    l
}

/// Append one record and its newline to `maillog_file` (postlogd's
/// logwriter): the standard streams are the ones this process has (master
/// -s passes its own on), anything else the open file.
pub fn write_record(path: &str, file: Option<&mut std::fs::File>, record: &[u8]) {
    let mut b = Vec::with_capacity(record.len() + 1);
    b.extend_from_slice(record);
    b.push(b'\n');
    write_bytes(path, file, &b);
}

/// Append complete lines to `maillog_file` with one write (more when the
/// kernel takes part of it); errors are ignored, as Postfix's logwriter
/// does.
fn write_bytes(path: &str, file: Option<&mut std::fs::File>, b: &[u8]) {
    let _ = match path {
        "/dev/stdout" => {
            let mut o = std::io::stdout().lock();
            o.write_all(b).and_then(|_| o.flush())
        }
        "/dev/stderr" => std::io::stderr().write_all(b),
        _ => match file {
            Some(f) => f.write_all(b),
            None => Ok(()),
        },
    };
}

/// The time in whole seconds: one clock read.
fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Log one message (level `info`, `warning`, `error`, `fatal`, `panic`);
/// the text is made printable here, as Postfix's msg functions do.
pub fn log(level: &str, text: &str) {
    let mut g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(st) = g.as_mut() {
        log_locked(st, None, level, text);
    }
}

/// Log one message under `tag` instead of the process's tag, which stays
/// as it is (a daemon that does another program's work inside its own
/// process, as cleanup inside smtpd: `postfix/cleanup[pid]: ...`). The
/// same line as [`set_tag`], [`log`] and [`set_tag`] back would give,
/// without their work per line.
pub fn log_as(tag: &str, level: &str, text: &str) {
    let mut g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(st) = g.as_mut() {
        let other = (st.tag != tag).then_some(tag);
        log_locked(st, other, level, text);
    }
}

fn log_locked(st: &mut State, other: Option<&str>, level: &str, text: &str) {
    let State {
        tag,
        host,
        target,
        line,
        stamp_at,
        stamp,
        head,
        head_pid,
        alt_tag,
        alt_head,
        alt_pid,
    } = st;
    match target {
        Target::Syslog => {
            use crate::sys::syslog::*;
            let prio = match level {
                "warning" => LOG_WARNING,
                "error" => LOG_ERR,
                "fatal" | "panic" => LOG_CRIT,
                _ => LOG_INFO,
            };
            let text = msg::printable(text, msg::utf8_enable());
            let line = if level == "info" {
                text
            } else {
                format!("{level}: {text}")
            };
            // Another tag: syslog takes it from openlog, for this line.
            if let Some(o) = other {
                open(o, libc::LOG_MAIL);
            }
            send(prio, &line);
            if other.is_some() {
                open(tag, libc::LOG_MAIL);
            }
        }
        Target::Postlog {
            path,
            file,
            service,
            sock,
            fallback_only,
        } => {
            // The date text changes once a second, the head when the tag
            // changes or after a fork: build them only then.
            let now = now_secs();
            if *stamp_at != now {
                *stamp = crate::sys::syslog::timestamp(now);
                *stamp_at = now;
            }
            let pid = crate::sys::process::pid();
            let head = match other {
                None => {
                    if *head_pid != pid {
                        make_head(head, host, tag, pid);
                        *head_pid = pid;
                    }
                    head
                }
                Some(o) => {
                    if *alt_pid != pid || alt_tag != o {
                        alt_tag.clear();
                        alt_tag.push_str(o);
                        make_head(alt_head, host, o, pid);
                        *alt_pid = pid;
                    }
                    alt_head
                }
            };
            line.clear();
            build_line(line, stamp, head, level, text);
            if !*fallback_only {
                if sock.is_none() {
                    *sock = connect(service);
                }
                if let Some(s) = sock.as_ref() {
                    match s.send(line) {
                        Ok(_) => return,
                        // The service went away: fall back for this line,
                        // reconnect for the next.
                        Err(_) => *sock = None,
                    }
                }
            }
            if file.is_none() && path != "/dev/stdout" && path != "/dev/stderr" {
                *file = open_log(path);
            }
            line.push(b'\n');
            write_bytes(path, file.as_mut(), line);
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
    fn lines_through_the_service_socket() {
        let dir = std::env::temp_dir().join(format!("rostfix-maillog-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("q/public")).unwrap();
        let srv = UnixDatagram::bind(dir.join("q/public/postlog")).unwrap();
        srv.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let d = dir.display();
        let c = MailConf::from_text(
            "/x",
            &format!(
                "maillog_file = {d}/maillog\nmaillog_file_prefixes = {d}\n\
                 queue_directory = {d}/q\nmyhostname = host.example\n"
            ),
        );
        init("postfix/smtpd", &c).unwrap();
        log("info", "connect from x\x01y");
        log("warning", &"z".repeat(2500));
        set_tag("postfix/cleanup");
        log("info", "message-id=<a@b>");
        log_as("postfix/bounce", "warning", "other\x02");
        log_as("postfix/cleanup", "info", "same");
        log("info", "own tag kept");
        *STATE.lock().unwrap() = None;
        msg::set_sink(None);
        let pid = crate::sys::process::pid();
        let want = [
            format!(" host postfix/smtpd[{pid}]: connect from x?y"),
            format!(" host postfix/smtpd[{pid}]: warning: {}", "z".repeat(2000)),
            format!(" host postfix/cleanup[{pid}]: message-id=<a@b>"),
            format!(" host postfix/bounce[{pid}]: warning: other?"),
            format!(" host postfix/cleanup[{pid}]: same"),
            format!(" host postfix/cleanup[{pid}]: own tag kept"),
        ];
        let mut b = [0u8; 4096];
        let mut found = 0;
        // Other tests' messages may come in between: look for ours in order.
        while found < want.len() {
            let n = srv.recv(&mut b).expect("a log line");
            let l = String::from_utf8_lossy(&b[..n]).into_owned();
            if l.len() > 15 && l[15..] == want[found] {
                assert_eq!(l.as_bytes()[3], b' ', "{l}");
                assert_eq!(&l[9..10], ":", "{l}");
                found += 1;
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
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
