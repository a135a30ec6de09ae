//! Replaces sendmail(1) of Postfix 3.7 (also run as `mailq` and
//! `newaliases`): mail submission through `$command_directory/postdrop`,
//! and the other modes by running the program that does the work, as
//! Postfix does: `postqueue -p` (-bp, mailq), `postqueue -f` (-q),
//! `postqueue -s`/`-i` (-qR, -qI), `postalias` (-bi, -I, newaliases),
//! `postfix start` (-bd), `$daemon_directory/smtpd -S` (-bs).
//!
//! Trusts: its command line, stdin and main.cf. Privilege: the invoking user
//! (it is not set-uid). Reads: queue_directory, command_directory,
//! daemon_directory, alias_database, import_environment,
//! export_environment, authorized_submit_users, sendmail_fix_line_endings,
//! line_length_limit, message_size_limit, header_size_limit,
//! verp_delimiter_filter, default_verp_delimiters. Honours MAIL_CONFIG
//! (which `-C` sets), MAIL_VERBOSE and NAME (the full name).
//!
//! Every fatal error exits with status 75 (EX_TEMPFAIL): Postfix's
//! sendmail installs a clean-up handler that turns each fatal exit status
//! into that one.

use crate::global::mail_conf::MailConf;
use crate::global::msg;
use crate::util::getopt::{self, Getopt, Opt};
use crate::util::latin1;
use std::ffi::OsString;
use std::io::Write;

mod enqueue;

const EX_TEMPFAIL: i32 = 75;

/// Flags of a submission (Postfix's SM_FLAG_* and DEL_REQ_FLAG_*).
pub mod flag {
    /// A line with only "." ends the message.
    pub const AEOF: u32 = 1 << 0;
    /// Recipients come from the headers (-t).
    pub const XRCPT: u32 = 1 << 1;
    /// User-requested address verification (-bv).
    pub const USR_VRFY: u32 = 1 << 9;
    /// Record and deliver (-v once).
    pub const RECORD: u32 = 1 << 10;
    /// The delivery-request trace flags.
    pub const TRACE_MASK: u32 = (1 << 8) | USR_VRFY | RECORD;
}

const GETOPT_LIST: &str = "A:B:C:F:GIL:N:O:R:UV:X:b:ce:f:h:imno:p:r:q:tvx";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Enqueue,
    NewAlias,
    Mailq,
    FlushQ,
    Daemon,
    User,
    Ignore,
}

/// Every fatal error of sendmail exits with EX_TEMPFAIL.
fn fatal(text: &str) -> ! {
    msg::fatal_status(EX_TEMPFAIL, text)
}

fn errno_text(e: &std::io::Error) -> String {
    crate::global::config_file::errno_text(e)
}

/// sendmail's entry point (also `newaliases`, `mailq`).
pub fn main(args: Vec<OsString>) -> i32 {
    let mut args: Vec<String> = args.iter().map(|a| latin1::from_os(a)).collect();
    if args.is_empty() {
        args.push("sendmail".into());
    }
    let prog = match args[0].rfind('/') {
        Some(i) if i + 1 < args[0].len() => args[0][i + 1..].to_string(),
        _ => args[0].clone(),
    };
    args[0] = prog.clone();
    msg::init(&prog);
    crate::sys::set_umask(0o022);
    if std::env::var_os("MAIL_VERBOSE").is_some() {
        msg::more_verbose();
    }

    // Pre-scan for -C so that the right main.cf is read.
    let mut config_dir: Option<String> = None;
    {
        let mut g = Getopt::new(&args, GETOPT_LIST);
        loop {
            if args.get(g.optind).map(String::as_str) == Some("-q") && g.at_word_start() {
                g.optind += 1;
                continue;
            }
            match g.next_opt() {
                Some(Opt::Flag('C', Some(v))) => {
                    let dir = if v.rsplit('/').next() == Some("main.cf") {
                        match v.rfind('/') {
                            Some(0) => "/".to_string(),
                            Some(i) => v[..i].to_string(),
                            None => ".".to_string(),
                        }
                    } else {
                        v
                    };
                    crate::sys::setenv("MAIL_CONFIG", &dir);
                    config_dir = Some(dir);
                }
                Some(bad @ (Opt::Invalid(_) | Opt::MissingArg(_))) => {
                    // glibc complains here too: Postfix scans the options twice.
                    if let Some(t) = getopt::error_text(&prog, &bad) {
                        let mut e = latin1::encode(&t);
                        e.push(b'\n');
                        let _ = std::io::stderr().write_all(&e);
                    }
                }
                Some(_) => {}
                None => break,
            }
        }
    }
    crate::global::maillog::init_syslog(&crate::global::maillog::mail_task(None, "sendmail"));
    let conf = match MailConf::read(config_dir.as_deref()) {
        Ok(c) => c,
        Err(e) => fatal(&e.0),
    };
    let tag = crate::global::maillog::mail_task(Some(&conf), "sendmail");
    if let Err(e) = crate::global::maillog::init(&tag, &conf) {
        fatal(&e);
    }
    if let Ok(Some(v)) = conf.lookup_eval("import_environment") {
        for item in v
            .split([',', ' ', '\t', '\r', '\n'])
            .filter(|s| !s.is_empty())
        {
            if let Some(i) = item.find('=') {
                crate::sys::setenv(&item[..i], &item[i + 1..]);
            }
        }
    }
    if let Err(e) = crate::global::mail_params::check_accounts(&conf) {
        fatal(&e);
    }
    let get = |name: &str| -> String {
        conf.lookup_eval(name)
            .unwrap_or_else(|e| fatal(&e.0))
            .unwrap_or_default()
    };
    let queue_dir = get("queue_directory");
    if let Err(e) = std::env::set_current_dir(latin1::to_path(&queue_dir)) {
        fatal(&format!("chdir {queue_dir}: {}", errno_text(&e)));
    }

    let mut mode = match prog.as_str() {
        "mailq" => Mode::Mailq,
        "newaliases" => Mode::NewAlias,
        "smtpd" => Mode::Daemon,
        _ => Mode::Enqueue,
    };
    let mut sub = enqueue::Submission {
        flags: flag::AEOF,
        rewrite_context: "local".into(),
        ..Default::default()
    };
    let mut alias_map: Option<String> = None;
    let mut qtime = false;
    let mut site_to_flush: Option<String> = None;
    let mut id_to_flush: Option<String> = None;
    // Option words that Postfix rewrites before getopt sees them.
    let mut g_optind = 1usize;
    let mut g_pos = 0usize;
    loop {
        if g_pos == 0 {
            let word = args.get(g_optind).cloned();
            match word.as_deref() {
                Some("-q") => {
                    if mode == Mode::Daemon {
                        msg::warn("ignoring -q option in daemon mode");
                    } else {
                        mode = Mode::FlushQ;
                    }
                    g_optind += 1;
                    continue;
                }
                Some("-V")
                    if args
                        .get(g_optind + 1)
                        .is_some_and(|n| n.chars().count() == 2) =>
                {
                    msg::warn("option -V is deprecated with Postfix 2.3; specify -XV instead");
                    args[g_optind] = "-XV".into();
                }
                _ => {}
            }
            if let Some(w) = args.get(g_optind).cloned()
                && w.starts_with("-V")
                && w.chars().count() == 4
            {
                msg::warn(&format!(
                    "option {w} is deprecated with Postfix 2.3; specify -X{} instead",
                    &w[1..]
                ));
                args[g_optind] = format!("-X{}", &w[1..]);
            }
            if args.get(g_optind).map(String::as_str) == Some("-XV") {
                sub.verp_delims = Some(get("default_verp_delimiters"));
                g_optind += 1;
                continue;
            }
        }
        let mut g = Getopt::new(&args, GETOPT_LIST);
        g.optind = g_optind;
        g.set_pos(g_pos);
        let next = g.next_opt();
        g_optind = g.optind;
        g_pos = g.pos();
        let Some(o) = next else { break };
        let (c, arg) = match o {
            Opt::Flag(c, a) => (c, a.unwrap_or_default()),
            bad => {
                if let Some(t) = getopt::error_text(&prog, &bad) {
                    let mut e = latin1::encode(&t);
                    e.push(b'\n');
                    let _ = std::io::stderr().write_all(&e);
                }
                fatal(&format!("usage: {prog} [options]"));
            }
        };
        let first = arg.chars().next();
        match c {
            'n' => fatal(&format!("-{c} option not supported")),
            'B' => match arg.as_str() {
                "8BITMIME" => sub.encoding = Some("8bit".into()),
                "7BIT" => sub.encoding = Some("7bit".into()),
                _ => fatal("-B option needs 8BITMIME or 7BIT"),
            },
            'F' => sub.full_name = Some(arg),
            'G' => sub.rewrite_context = "remote".into(),
            'I' => mode = Mode::NewAlias,
            'N' => {
                sub.dsn_notify = dsn_notify_mask(&arg);
                if sub.dsn_notify == 0 {
                    msg::warn("bad -N option value -- ignored");
                }
            }
            'R' => {
                sub.dsn_ret = match arg.to_ascii_uppercase().as_str() {
                    "FULL" => 1,
                    "HDRS" => 2,
                    _ => 0,
                };
                if sub.dsn_ret == 0 {
                    msg::warn("bad -R option value -- ignored");
                }
            }
            'V' => {
                if arg.len() > 100 {
                    msg::warn("too long -V option value -- ignored");
                } else if arg.chars().any(|c| (c as u32) < 32 || c as u32 == 127) {
                    msg::warn("bad syntax in -V option value -- ignored");
                } else {
                    sub.dsn_envid = Some(arg);
                }
            }
            'X' => match first {
                Some('V') => {
                    let d = &arg[1..];
                    let filter = get("verp_delimiter_filter");
                    let ok = d.chars().count() == 2 && d.chars().all(|c| filter.contains(c));
                    if !ok {
                        fatal(&format!("-V requires two characters from {filter}"));
                    }
                    sub.verp_delims = Some(d.to_string());
                }
                _ => fatal(&format!("unsupported: -{c}{}", first.unwrap_or('\0'))),
            },
            'b' => match first {
                Some('d') | Some('l') => {
                    if mode == Mode::FlushQ {
                        msg::warn("ignoring -q option in daemon mode");
                    }
                    mode = Mode::Daemon;
                }
                Some('h') | Some('H') => mode = Mode::Ignore,
                Some('i') => mode = Mode::NewAlias,
                Some('m') => mode = Mode::Enqueue,
                Some('p') => mode = Mode::Mailq,
                Some('s') => mode = Mode::User,
                Some('v') => sub.flags |= flag::USR_VRFY,
                _ => fatal(&format!("unsupported: -{c}{}", first.unwrap_or('\0'))),
            },
            'f' | 'r' => sub.sender = Some(arg),
            'i' => sub.flags &= !flag::AEOF,
            'o' => match first {
                Some('A') => {
                    if arg.chars().count() == 1 {
                        fatal("-oA requires pathname");
                    }
                    alias_map = Some(arg[1..].to_string());
                }
                Some('7') | Some('8') | Some('m') => {}
                Some('i') => sub.flags &= !flag::AEOF,
                _ => {
                    if msg::verbose() > 0 {
                        msg::info(&format!("-{c}{} option ignored", first.unwrap_or('\0')));
                    }
                }
            },
            'q' => match first {
                Some(d) if d.is_ascii_digit() => qtime = true,
                Some('R') => {
                    if arg.len() == 1 {
                        fatal("specify: -qRsitename");
                    }
                    site_to_flush = Some(arg[1..].to_string());
                }
                Some('I') => {
                    if arg.len() == 1 {
                        fatal("specify: -qIqueueid");
                    }
                    id_to_flush = Some(arg[1..].to_string());
                }
                _ => fatal(&format!("-q{} is not implemented", first.unwrap_or('\0'))),
            },
            't' => sub.flags |= flag::XRCPT,
            'v' => msg::more_verbose(),
            _ => {
                if msg::verbose() > 0 {
                    msg::info(&format!("-{c} option ignored"));
                }
            }
        }
    }
    let rest: Vec<String> = args[g_optind.min(args.len())..].to_vec();

    if sub.flags & flag::XRCPT != 0 && mode != Mode::Enqueue {
        fatal("-t can be used only in delivery mode");
    }
    if site_to_flush.is_some() && mode != Mode::Enqueue {
        fatal("-qR can be used only in delivery mode");
    }
    if id_to_flush.is_some() && mode != Mode::Enqueue {
        fatal("-qI can be used only in delivery mode");
    }
    if sub.flags & flag::USR_VRFY != 0 {
        if sub.flags & flag::XRCPT != 0 {
            fatal("-t option cannot be used with -bv");
        }
        if sub.dsn_notify != 0 {
            fatal("-N option cannot be used with -bv");
        }
        if sub.dsn_ret != 0 {
            fatal("-R option cannot be used with -bv");
        }
        if msg::verbose() == 1 {
            fatal("-v option cannot be used with -bv");
        }
    }
    // One -v asks for a delivery record; more ask for verbose logging.
    if msg::verbose() == 1 && mode == Mode::Enqueue {
        msg::set_verbose(0);
        sub.flags |= flag::RECORD;
    }
    if qtime && mode != Mode::Daemon {
        return 0;
    }
    let verbose_args =
        || -> Vec<String> { (0..msg::verbose()).map(|_| "-v".to_string()).collect() };
    let command_dir = get("command_directory");
    let replace = |argv: Vec<String>| -> ! {
        let path = format!("{command_dir}/{}", argv[0]);
        let err = exec(&path, &argv);
        fatal(&format!("execv {path}: {}", errno_text(&err)))
    };
    match mode {
        Mode::Ignore => 0,
        Mode::Enqueue => {
            if let Some(site) = site_to_flush {
                if !rest.is_empty() {
                    fatal("flush site requires no recipient");
                }
                let mut argv = vec!["postqueue".to_string(), "-s".into(), site];
                argv.extend(verbose_args());
                replace(argv);
            }
            if let Some(id) = id_to_flush {
                if !rest.is_empty() {
                    fatal("flush queue_id requires no recipient");
                }
                let mut argv = vec!["postqueue".to_string(), "-i".into(), id];
                argv.extend(verbose_args());
                replace(argv);
            }
            sub.recipients = rest;
            enqueue::enqueue(&conf, &sub);
            0
        }
        Mode::NewAlias => {
            if !rest.is_empty() {
                fatal("alias initialization mode requires no recipient");
            }
            let db = get("alias_database");
            if alias_map.is_none() && db.is_empty() {
                return 0;
            }
            let mut argv: Vec<String> = vec!["postalias".into()];
            argv.extend(verbose_args());
            argv.push("--".into());
            match alias_map {
                Some(m) => argv.push(m),
                None => argv.extend(
                    db.split([',', ' ', '\t', '\r', '\n'])
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                ),
            }
            replace(argv)
        }
        Mode::Mailq => {
            if !rest.is_empty() {
                fatal("display queue mode requires no recipient");
            }
            let mut argv: Vec<String> = vec!["postqueue".into(), "-p".into()];
            argv.extend(verbose_args());
            replace(argv)
        }
        Mode::FlushQ => {
            if !rest.is_empty() {
                fatal("flush queue mode requires no recipient");
            }
            let mut argv: Vec<String> = vec!["postqueue".into(), "-f".into()];
            argv.extend(verbose_args());
            replace(argv)
        }
        Mode::Daemon => {
            if !rest.is_empty() {
                fatal("daemon mode requires no recipient");
            }
            let mut argv: Vec<String> = vec!["postfix".into()];
            argv.extend(verbose_args());
            argv.push("start".into());
            // Run in the background; a child that cannot run the program
            // reports it, the parent exits 0 either way.
            let path = format!("{command_dir}/postfix");
            let mut cmd = std::process::Command::new(latin1::to_path(&path));
            use std::os::unix::process::CommandExt;
            cmd.arg0(latin1::to_path(&argv[0]));
            for a in &argv[1..] {
                cmd.arg(latin1::to_path(a));
            }
            if let Err(e) = cmd.spawn() {
                msg::emit_fatal_text(&format!("execv {path}: {}", errno_text(&e)));
            }
            0
        }
        Mode::User => {
            if !rest.is_empty() {
                fatal("stand-alone mode requires no recipient");
            }
            let uid = crate::sys::ids::getuid();
            let acl = get("authorized_submit_users");
            match crate::global::user_acl::check_byuid("authorized_submit_users", &acl, uid) {
                Ok(None) => {}
                Ok(Some(who)) => fatal(&format!("User {who}({uid}) is not allowed to submit mail")),
                Err(e) => fatal(&e.0),
            }
            let mut argv: Vec<String> = vec!["smtpd".into(), "-S".into()];
            argv.extend(verbose_args());
            let path = format!("{}/smtpd", get("daemon_directory"));
            let err = exec(&path, &argv);
            fatal(&format!("execv {path}: {}", errno_text(&err)))
        }
    }
}

/// dsn_notify_mask: `never`, or a list of `success`, `failure`, `delay`
/// (any case); 0 for a bad value, with a warning for an unknown word.
pub fn dsn_notify_mask(text: &str) -> i32 {
    let mut mask = 0;
    for w in text
        .split([',', ' ', '\t', '\r', '\n'])
        .filter(|w| !w.is_empty())
    {
        let bit = match w.to_ascii_uppercase().as_str() {
            "NEVER" => 1,
            "SUCCESS" => 2,
            "FAILURE" => 4,
            "DELAY" => 8,
            _ => {
                msg::warn(&format!(
                    "unknown DSN NOTIFY command value \"{w}\" in \"{text}\""
                ));
                return 0;
            }
        };
        mask |= bit;
    }
    if mask == 1 || (mask != 0 && mask & !14 == 0) {
        mask
    } else {
        0
    }
}

/// execv(2): replace this process; returns only on failure.
fn exec(path: &str, argv: &[String]) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(latin1::to_path(path));
    cmd.arg0(latin1::to_path(&argv[0]));
    for a in &argv[1..] {
        cmd.arg(latin1::to_path(a));
    }
    cmd.exec()
}
