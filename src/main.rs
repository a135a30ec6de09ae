//! rostfix: a mail transport agent that replaces Postfix 3.7 in place.
//!
//! One multi-call binary: the program to run is chosen by the base name it was
//! started under (`postconf`, `postmap`, ...), or given as the first argument
//! (`rostfix postconf -n`). The C runtime enters through `c_main!`
//! (src/sys/start.rs: Rust's own start-up is skipped).

#![no_main]

use rostfix::{commands, daemons, global, master};
use std::ffi::OsString;

/// The programs this binary implements, by name.
/// A program's entry point: its argv, returning the exit status.
type Entry = fn(Vec<OsString>) -> i32;

const PROGRAMS: &[(&str, Entry)] = &[
    ("anvil", daemons::anvil::main),
    ("bounce", daemons::bounce::main),
    ("cleanup", daemons::cleanup::main),
    ("demo", commands::demo::main),
    ("discard", daemons::agents::discard_main),
    ("error", daemons::agents::error_main),
    ("flush", daemons::flush::main),
    ("local", daemons::agents::local_main),
    ("lmtp", daemons::smtp::main),
    ("mailq", commands::sendmail::main),
    ("master", master::main),
    ("newaliases", commands::sendmail::main),
    ("pickup", daemons::pickup::main),
    ("pipe", daemons::pipe::main),
    ("postalias", commands::postalias::main),
    ("postcat", commands::postcat::main),
    ("postconf", commands::postconf::main),
    ("postfix", commands::postfix::main),
    ("postlogd", daemons::postlogd::main),
    ("postmap", commands::postmap::main),
    ("postmulti", commands::postmulti::main),
    ("postqueue", commands::postqueue::main),
    ("postsuper", commands::postsuper::main),
    ("proxymap", daemons::proxymap::main),
    ("qmgr", daemons::qmgr::main),
    ("sendmail", commands::sendmail::main),
    ("showq", daemons::showq::main),
    ("smtp", daemons::smtp::main),
    ("smtpd", daemons::smtpd::main),
    ("testd", master::testd::main),
    ("trivial-rewrite", daemons::trivial_rewrite::server::main),
    ("virtual", daemons::agents::virtual_main),
];

fn usage() -> i32 {
    let names: Vec<&str> = PROGRAMS.iter().map(|(n, _)| *n).collect();
    eprintln!(
        "usage: rostfix PROGRAM [ARGS...]\n       (or run it under a program's name)\nprograms: {}",
        names.join(" ")
    );
    1
}

rostfix::c_main!(run);

fn run() -> std::ffi::c_int {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let argv0 = args.first().cloned().unwrap_or_default();
    let base = std::path::Path::new(&argv0)
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let code = if let Some((_, f)) = PROGRAMS.iter().find(|(n, _)| *n == base) {
        f(args)
    } else if base == "rostfix" || base.starts_with("rostfix") {
        if args.len() < 2 {
            usage()
        } else {
            let prog = args[1].to_string_lossy().into_owned();
            match PROGRAMS.iter().find(|(n, _)| *n == prog) {
                Some((_, f)) => {
                    args.remove(0);
                    f(args)
                }
                None => {
                    eprintln!("rostfix: unknown program: {prog}");
                    usage()
                }
            }
        }
    } else {
        eprintln!("rostfix: unknown program name: {base}");
        usage()
    };
    global::out::flush();
    std::process::exit(code);
}
