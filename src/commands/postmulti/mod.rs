//! Replaces postmulti(1) of Postfix 3.7 in its minimal form: the default
//! instance only, as Debian's systemd unit and init script use it
//! (`postmulti -i - -p start|stop|reload`, `postmulti -i - -x postfix
//! CMD`). Multi-instance management (-e, -l, -a, -g, other instances) is
//! not implemented and says so.
//!
//! Trust: its caller (root). Privilege: as invoked.

use crate::global::msg;
use std::ffi::OsString;

/// Entry point.
pub fn main(args: Vec<OsString>) -> i32 {
    let argv: Vec<String> = args
        .iter()
        .map(|a| crate::util::latin1::from_os(a))
        .collect();
    let progname = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_else(|| "postmulti".into());
    msg::init(&progname);
    let mut g = crate::util::getopt::Getopt::new(&argv, "ae:g:i:G:I:lpRvx");
    let mut instance: Option<String> = None;
    let mut action: Option<char> = None;
    while let Some(o) = g.next_opt() {
        use crate::util::getopt::Opt;
        match o {
            Opt::Flag('i', Some(v)) => instance = Some(v),
            Opt::Flag(c @ ('p' | 'x'), _) => {
                if action.is_some() {
                    msg::fatal("Specify exactly one of '-e', '-l', '-p', '-x'");
                }
                action = Some(c);
            }
            Opt::Flag('v', _) => msg::more_verbose(),
            Opt::Flag(c, _) => msg::fatal(&format!(
                "option -{c} is not supported by rostfix's postmulti (default instance only)"
            )),
            _ => msg::fatal(&format!("Usage: {progname} -i - -p command | -x command")),
        }
    }
    let Some(action) = action else {
        msg::fatal("Specify exactly one of '-e', '-l', '-p', '-x'");
    };
    match instance.as_deref() {
        None | Some("-") | Some("postfix") => {}
        Some(other) => msg::fatal(&format!("No instance named {other}")),
    }
    let rest: Vec<String> = argv[g.optind..].to_vec();
    if rest.is_empty() {
        msg::fatal(&format!("Usage: {progname} -i - -p command | -x command"));
    }
    match action {
        'p' => {
            let mut a: Vec<OsString> = vec![OsString::from("postfix")];
            a.extend(
                rest.iter()
                    .map(|s| crate::util::latin1::to_path(s).into_os_string()),
            );
            crate::commands::postfix::main(a)
        }
        _ => {
            let e = crate::sys::process::execvp(&rest);
            msg::fatal(&format!(
                "execvp {}: {}",
                rest[0],
                crate::global::config_file::errno_text(&e)
            ))
        }
    }
}
