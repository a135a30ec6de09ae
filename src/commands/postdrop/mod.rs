//! Replaces postdrop(1) of Postfix 3.7: copy a queue-file record stream
//! from stdin into a new file in the maildrop queue, then wake up pickup.
//!
//! Trusts: nothing from its caller (it is meant to run set-gid postdrop):
//! the record stream is checked record by record, the caller's time is
//! replaced, attribute records are limited to the few a submission may
//! carry, and the environment is reduced to import_environment. Privilege:
//! the invoking user plus group setgid_group. Reads: queue_directory,
//! authorized_submit_users, message_size_limit, line_length_limit,
//! import_environment, pickup_service_name. Honours MAIL_CONFIG and `-c`.
//!
//! The file is `maildrop/<queue id>`, mode 0644 while it is written and
//! 0744 once complete (the owner x bit says "complete"; the read bits let
//! the unprivileged pickup read it), fsynced before postdrop reports
//! success. A signal, a fatal error or the end of input before the END
//! record removes it. The protocol with sendmail is Postfix's: first
//! `protocol=postdrop_protocol, queue_id=ID`, at the end `status=N,
//! reason=TEXT`, in the null-terminated attribute format; the exit status
//! is the cleanup status (0 for success).

use crate::global::attr0;
use crate::global::mail_conf::MailConf;
use crate::global::mail_queue::QueueConf;
use crate::global::msg;
use crate::global::rec_type;
use crate::global::record::{QueueStream, Rec, errtext, rec_get_raw, rec_put};
use crate::util::getopt::{self, Getopt, Opt};
use crate::util::latin1;
use std::ffi::OsString;
use std::io::Write;

const STAT_BAD: u32 = 1 << 0;
const STAT_WRITE: u32 = 1 << 1;
const STAT_SIZE: u32 = 1 << 2;

/// The run-time error handler: remove the unfinished file, then exit 1.
fn fatal(text: &str) -> ! {
    crate::sys::proc::remove_registered();
    msg::fatal(text)
}

/// split_nameval: `name = value` with blanks trimmed, or an error text.
pub fn split_nameval(text: &str) -> Result<(String, String), &'static str> {
    let is_space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c');
    let s = text.trim_start_matches(is_space);
    if s.is_empty() || s.starts_with('=') {
        return Err("missing attribute name");
    }
    let name_end = s.find(|c: char| is_space(c) || c == '=').unwrap_or(s.len());
    let after = s[name_end..].trim_start_matches(is_space);
    let Some(value) = after.strip_prefix('=') else {
        return Err("missing '=' after attribute name");
    };
    let value = value
        .trim_start_matches(is_space)
        .trim_end_matches(is_space);
    Ok((s[..name_end].to_string(), value.to_string()))
}

/// Whether a submission may carry this attribute.
fn attr_allowed(name: &str, value: &str) -> bool {
    match name {
        "encoding" => matches!(value, "7bit" | "8bit" | ""),
        "rewrite_context" => matches!(value, "local" | "remote"),
        "envelope_id" | "notify_flags" | "dsn_orig_rcpt" | "ret_flags" | "create_time"
        | "trace_flags" => true,
        _ => false,
    }
}

/// Wake up the pickup service (mail_trigger): a `W` on its FIFO or UNIX
/// socket; a warning when it cannot be found.
fn trigger(path: &str) {
    use std::os::unix::fs::FileTypeExt;
    let st = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            msg::warn(&format!("unable to look up {path}: {}", errtext(&e)));
            return;
        }
    };
    let ft = st.file_type();
    if ft.is_fifo() {
        use std::os::unix::fs::OpenOptionsExt;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            let _ = f.write_all(b"W");
        }
    } else if ft.is_socket() {
        if let Ok(mut s) = std::os::unix::net::UnixStream::connect(path) {
            let _ = s.write_all(b"W\0");
        }
    } else {
        msg::warn(&format!("{path} is not a socket or a fifo"));
    }
}

/// postdrop's entry point.
pub fn main(args: Vec<OsString>) -> i32 {
    crate::sys::set_umask(0o022);
    msg::init("postdrop");
    let mut args: Vec<String> = args.iter().map(|a| latin1::from_os(a)).collect();
    if args.is_empty() {
        args.push("postdrop".into());
    }
    args[0] = "postdrop".into();
    let mut g = Getopt::new(&args, "c:rv");
    while let Some(o) = g.next_opt() {
        match o {
            Opt::Flag('c', Some(dir)) => crate::sys::setenv("MAIL_CONFIG", &dir),
            Opt::Flag('r', _) => {}
            Opt::Flag('v', _) => {
                if crate::sys::geteuid() == 0 {
                    msg::more_verbose();
                }
            }
            bad => {
                if let Some(t) = getopt::error_text("postdrop", &bad) {
                    let mut e = latin1::encode(&t);
                    e.push(b'\n');
                    let _ = std::io::stderr().write_all(&e);
                }
                msg::fatal("usage: postdrop [-c config_dir] [-v]");
            }
        }
    }
    crate::global::maillog::init_syslog(&crate::global::maillog::mail_task(None, "postdrop"));
    let conf = MailConf::read(None).unwrap_or_else(|e| msg::fatal(&e.0));
    let tag = crate::global::maillog::mail_task(Some(&conf), "postdrop");
    if let Err(e) = crate::global::maillog::init(&tag, &conf) {
        msg::fatal(&e);
    }
    let get = |name: &str| -> String {
        conf.lookup_eval(name)
            .unwrap_or_else(|e| msg::fatal(&e.0))
            .unwrap_or_default()
    };
    if let Err(e) = crate::global::mail_params::check_accounts(&conf) {
        msg::fatal(&e);
    }
    let size_limit = conf
        .get_long("message_size_limit", 0, 0)
        .unwrap_or_else(|e| msg::fatal(&e.0));
    if size_limit > 0 && crate::sys::proc::file_limit().is_none_or(|l| l > size_limit as u64) {
        let _ = crate::sys::proc::set_file_limit(size_limit as u64);
    }
    let line_limit = conf
        .get_int("line_length_limit", 1, 0)
        .unwrap_or_else(|e| msg::fatal(&e.0));
    let pickup = get("pickup_service_name");
    let acl = get("authorized_submit_users");
    let qc = QueueConf::from_conf(&conf).unwrap_or_else(|e| msg::fatal(&e.0));

    // A set-gid program keeps only the environment main.cf asks for.
    let import = get("import_environment");
    let keep: Vec<(String, Option<String>)> = import
        .split([',', ' ', '\t', '\r', '\n'])
        .filter(|s| !s.is_empty())
        .map(|item| match item.find('=') {
            Some(i) => (item[..i].to_string(), Some(item[i + 1..].to_string())),
            None => (
                item.to_string(),
                std::env::var_os(latin1::to_path(item)).map(|v| latin1::from_os(&v)),
            ),
        })
        .collect();
    for (k, _) in std::env::vars_os() {
        crate::sys::unsetenv(&latin1::from_os(&k));
    }
    for (k, v) in keep {
        if let Some(v) = v {
            crate::sys::setenv(&k, &v);
        }
    }

    let queue_dir = qc.queue_directory.clone();
    if let Err(e) = std::env::set_current_dir(latin1::to_path(&queue_dir)) {
        msg::fatal(&format!("chdir {queue_dir}: {}", errtext(&e)));
    }
    if msg::verbose() > 0 {
        msg::info(&format!("chdir {queue_dir}"));
    }

    crate::sys::proc::ignore_signal(libc::SIGPIPE);
    crate::sys::proc::ignore_signal(libc::SIGXFSZ);
    crate::sys::proc::remove_on_signal(
        &[libc::SIGINT, libc::SIGQUIT],
        &[libc::SIGTERM, libc::SIGHUP],
    );

    let uid = crate::sys::ids::getuid();
    match crate::global::user_acl::check_byuid("authorized_submit_users", &acl, uid) {
        Ok(None) => {}
        Ok(Some(who)) => msg::fatal(&format!("User {who}({uid}) is not allowed to submit mail")),
        Err(e) => msg::fatal(&e.0),
    }

    // Don't trust the caller's time.
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();

    let nf = loop {
        match qc.enter("maildrop", 0o644) {
            Ok(nf) => break nf,
            Err(e) => {
                let usec = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .subsec_micros();
                msg::warn(&format!(
                    "mail_queue_enter: create file maildrop/{usec}.{}: {}",
                    std::process::id(),
                    errtext(&e)
                ));
                crate::sys::proc::sleep(10);
            }
        }
    };
    if msg::verbose() > 0 {
        msg::info(&format!("open {}", nf.path));
    }
    let path = nf.path.clone();
    crate::sys::proc::set_remove_path(Some(&path));
    {
        let mut out = std::io::stdout().lock();
        let _ = attr0::print(
            &mut out,
            &[("protocol", "postdrop_protocol"), ("queue_id", &nf.id)],
        );
    }
    let file = nf.file;
    let mut dst = std::io::BufWriter::with_capacity(4096, &file);
    let mut write_error: Option<std::io::Error> = None;
    let mut put = |dst: &mut std::io::BufWriter<&std::fs::File>, t: u8, d: &[u8]| {
        if write_error.is_none()
            && let Err(e) = rec_put(dst, t, d)
        {
            write_error = Some(e);
        }
        write_error.is_none()
    };
    put(
        &mut dst,
        rec_type::TIME,
        latin1::encode(&rec_type::time_payload(
            start.as_secs() as i64,
            start.subsec_micros() as i64,
        ))
        .as_slice(),
    );

    let mut src =
        QueueStream::stdin().unwrap_or_else(|e| fatal(&format!("stdin: {}", errtext(&e))));
    let segments: [&[u8]; 4] = [
        rec_type::POST_ENVELOPE,
        rec_type::POST_CONTENT,
        rec_type::POST_EXTRACT,
        b"",
    ];
    let mut seg = 0usize;
    let mut buf = Vec::new();
    let status: u32 = 0;
    let mut from_count = 0;
    let mut rcpt_count = 0;
    let mut validate_input = true;
    loop {
        let t = match rec_get_raw(&mut src, &mut buf, line_limit, 0) {
            Rec::Eof => {
                // The request was cancelled.
                drop(dst);
                crate::sys::proc::set_remove_path(None);
                match std::fs::remove_file(latin1::to_path(&path)) {
                    Err(e) => msg::warn(&format!("uid={uid}: remove {path}: {}", errtext(&e))),
                    Ok(()) => {
                        if msg::verbose() > 0 {
                            msg::info(&format!("remove {path}"));
                        }
                    }
                }
                crate::global::out::flush();
                std::process::exit(0);
            }
            Rec::Error => fatal(&format!("uid={uid}: malformed input")),
            Rec::Type(t) => t,
        };
        // A NUL type byte matches the C string's terminator: it passes.
        if t != 0 && !segments[seg].contains(&t) {
            fatal(&format!("uid={uid}: unexpected record type: {t}"));
        }
        if segments[seg].first() == Some(&t) {
            seg += 1;
        }
        if t == rec_type::TIME {
            continue;
        }
        if t == rec_type::FROM {
            // check_login_sender_acl: the default local_login_sender_maps
            // (static:*) allows every sender.
            from_count += 1;
        }
        if t == rec_type::RCPT {
            rcpt_count += 1;
        }
        if t == rec_type::ATTR {
            let text = latin1::decode(crate::global::record::c_str(&buf));
            match split_nameval(&text) {
                Err(why) => {
                    let shown: String = text.chars().take(200).collect();
                    msg::warn(&format!(
                        "uid={uid}: ignoring malformed record: {why}: {shown}"
                    ));
                }
                Ok((name, value)) => {
                    if attr_allowed(&name, &value) {
                        put(
                            &mut dst,
                            rec_type::ATTR,
                            &latin1::encode(&format!("{name}={value}")),
                        );
                    } else {
                        let n: String = name.chars().take(200).collect();
                        let v: String = value.chars().take(200).collect();
                        msg::warn(&format!("uid={uid}: ignoring attribute record: {n}={v}"));
                    }
                }
            }
            continue;
        }
        if status != 0 || !put(&mut dst, t, &buf) {
            // Read the rest so that the client does not see a broken pipe.
            loop {
                match rec_get_raw(&mut src, &mut buf, line_limit, 0) {
                    Rec::Type(rec_type::END) | Rec::Eof => break,
                    Rec::Error => fatal(&format!("uid={uid}: malformed input")),
                    Rec::Type(_) => {}
                }
            }
            validate_input = false;
            break;
        }
        if t == rec_type::END {
            break;
        }
    }

    let mut status = status;
    let reason = String::new();
    if validate_input && (from_count == 0 || rcpt_count == 0) {
        status |= STAT_BAD;
    }
    if status != 0 {
        // As Postfix: the unfinished file stays (pickup ignores it, and
        // postsuper -p purges it later).
        drop(dst);
        crate::sys::proc::set_remove_path(None);
    } else {
        let flushed = dst.flush().and(write_error.map_or(Ok(()), Err));
        drop(dst);
        let res = flushed.and_then(|()| crate::global::mail_queue::finish(&file, 0o044));
        if let Err(e) = res {
            status = if e.raw_os_error() == Some(libc::EFBIG) {
                STAT_SIZE
            } else {
                STAT_WRITE
            };
            msg::warn(&format!("uid={uid}: {}", errtext(&e)));
            crate::sys::proc::remove_registered();
        } else {
            drop(file);
            trigger(&format!("public/{pickup}"));
        }
    }
    crate::sys::proc::set_remove_path(None);
    {
        let mut out = std::io::stdout().lock();
        let st = status.to_string();
        let _ = attr0::print(&mut out, &[("status", &st), ("reason", &reason)]);
    }
    status as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameval() {
        assert_eq!(
            split_nameval("  a = b c  ").unwrap(),
            ("a".to_string(), "b c".to_string())
        );
        assert_eq!(split_nameval("=x"), Err("missing attribute name"));
        assert_eq!(
            split_nameval("a b=c"),
            Err("missing '=' after attribute name")
        );
        assert_eq!(split_nameval("a="), Ok(("a".into(), "".into())));
    }
}
