//! Replaces sendmail(1) of Postfix 3.7 — for now only its alias-database
//! mode: `newaliases`, `sendmail -bi`, `sendmail -I`, with `-oA` and `-C`.
//! Every other mode (mail submission, mailq, -bd, -q) ends with a clear
//! fatal message and exit status 75 (EX_TEMPFAIL), so that a caller retries.
//!
//! Trusts: its command line and main.cf. Privilege: the invoking user (it is
//! not set-uid). Reads: queue_directory, command_directory, alias_database,
//! import_environment. Honours MAIL_CONFIG (which `-C` sets).
//!
//! As Postfix, it parses every sendmail option, changes to the queue
//! directory, and for newaliases runs `$command_directory/postalias` with
//! the alias_database tables (or the `-oA` one). Every fatal error exits
//! with status 75, as Postfix's sendmail does.

use crate::global::mail_conf::MailConf;
use crate::global::msg;
use crate::util::getopt::{self, Getopt, Opt};
use crate::util::latin1;
use std::ffi::OsString;
use std::io::Write;

const EX_TEMPFAIL: i32 = 75;

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
    let conf = match MailConf::read(config_dir.as_deref()) {
        Ok(c) => c,
        Err(e) => fatal(&e.0),
    };
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
    let mut alias_map: Option<String> = None;
    let mut qtime = false;
    let mut xrcpt = false;
    let mut site_to_flush = false;
    let mut id_to_flush = false;
    let mut verify = false;
    let mut dsn_notify = false;
    let mut dsn_ret = false;
    let mut g = Getopt::new(&args, GETOPT_LIST);
    loop {
        let word = args.get(g.optind).cloned();
        if g.at_word_start() {
            match word.as_deref() {
                Some("-q") => {
                    if mode == Mode::Daemon {
                        msg::warn("ignoring -q option in daemon mode");
                    } else {
                        mode = Mode::FlushQ;
                    }
                    g.optind += 1;
                    continue;
                }
                Some("-XV") => {
                    g.optind += 1;
                    continue;
                }
                Some("-V")
                    if args
                        .get(g.optind + 1)
                        .is_some_and(|n| n.chars().count() == 2) =>
                {
                    msg::warn("option -V is deprecated with Postfix 2.3; specify -XV instead");
                    g.optind += 1;
                    continue;
                }
                Some(w) if w.starts_with("-V") && w.chars().count() == 4 => {
                    msg::warn(&format!(
                        "option {w} is deprecated with Postfix 2.3; specify -X{} instead",
                        &w[1..]
                    ));
                    g.optind += 1;
                    continue;
                }
                _ => {}
            }
        }
        let Some(o) = g.next_opt() else { break };
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
            'B' if arg != "8BITMIME" && arg != "7BIT" => {
                fatal("-B option needs 8BITMIME or 7BIT");
            }
            'I' => mode = Mode::NewAlias,
            'N' => dsn_notify = true,
            'R' => dsn_ret = true,
            'V' => {
                if arg.chars().count() > 100 {
                    msg::warn("too long -V option value -- ignored");
                } else if arg.chars().any(|c| (c as u32) < 32 || c as u32 == 127) {
                    msg::warn("bad syntax in -V option value -- ignored");
                }
            }
            'X' => match first {
                Some('V') => {}
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
                Some('v') => verify = true,
                _ => fatal(&format!("unsupported: -{c}{}", first.unwrap_or('\0'))),
            },
            'o' if first == Some('A') => {
                if arg.chars().count() == 1 {
                    fatal("-oA requires pathname");
                }
                alias_map = Some(arg[1..].to_string());
            }
            'q' => match first {
                Some(d) if d.is_ascii_digit() => qtime = true,
                Some('R') => {
                    if arg.len() == 1 {
                        fatal("specify: -qRsitename");
                    }
                    site_to_flush = true;
                }
                Some('I') => {
                    if arg.len() == 1 {
                        fatal("specify: -qIqueueid");
                    }
                    id_to_flush = true;
                }
                _ => fatal(&format!("-q{} is not implemented", first.unwrap_or('\0'))),
            },
            't' => xrcpt = true,
            'v' => msg::more_verbose(),
            _ => {}
        }
    }
    let rest: Vec<String> = args[g.optind..].to_vec();

    if xrcpt && mode != Mode::Enqueue {
        fatal("-t can be used only in delivery mode");
    }
    if site_to_flush && mode != Mode::Enqueue {
        fatal("-qR can be used only in delivery mode");
    }
    if id_to_flush && mode != Mode::Enqueue {
        fatal("-qI can be used only in delivery mode");
    }
    if verify {
        if xrcpt {
            fatal("-t option cannot be used with -bv");
        }
        if dsn_notify {
            fatal("-N option cannot be used with -bv");
        }
        if dsn_ret {
            fatal("-R option cannot be used with -bv");
        }
        if msg::verbose() == 1 {
            fatal("-v option cannot be used with -bv");
        }
    }
    if qtime && mode != Mode::Daemon {
        return 0;
    }
    match mode {
        Mode::Ignore => 0,
        Mode::NewAlias => {
            if !rest.is_empty() {
                fatal("alias initialization mode requires no recipient");
            }
            let db = get("alias_database");
            if alias_map.is_none() && db.is_empty() {
                return 0;
            }
            let mut argv: Vec<String> = vec!["postalias".into()];
            for _ in 0..msg::verbose() {
                argv.push("-v".into());
            }
            argv.push("--".into());
            match alias_map {
                Some(m) => argv.push(m),
                None => argv.extend(
                    db.split([',', ' ', '\t', '\r', '\n'])
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                ),
            }
            let path = format!("{}/postalias", get("command_directory"));
            let err = exec(&path, &argv);
            fatal(&format!("execv {path}: {}", errno_text(&err)))
        }
        Mode::Mailq => {
            if !rest.is_empty() {
                msg::fatal_status(64, "display queue mode requires no recipient");
            }
            let mut argv: Vec<String> = vec!["postqueue".into(), "-p".into()];
            for _ in 0..msg::verbose() {
                argv.push("-v".into());
            }
            let path = format!("{}/postqueue", get("command_directory"));
            let err = exec(&path, &argv);
            fatal(&format!("execv {path}: {}", errno_text(&err)))
        }
        _ => fatal(
            "mail submission, mailq, queue flush and daemon modes of sendmail are not implemented yet in rostfix (only newaliases / -bi / -I)",
        ),
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
