//! `testd`: a diagnostic service for master.cf (rostfix only, no Postfix
//! counterpart). Run by master like any daemon on the single-server
//! skeleton, it answers each connection with one line describing how it was
//! started, then closes:
//!
//! ```text
//! testd service=NAME uid=U gid=G cwd=DIR fds=3,4,5,6 argv=testd -n NAME -t inet -u
//! ```
//!
//! With `-o testd_exit=N` set (in master.cf) it exits with status N before
//! serving, to exercise master's throttling. Trust: master. Privilege: as
//! the skeleton leaves it.

use super::server::{Conn, Server};
use std::ffi::OsString;
use std::io::Write;

fn answer(conn: &mut Conn, s: &Server) {
    let fds: Vec<String> = (3..32)
        .filter(|fd| crate::sys::process::fd_is_open(*fd))
        .map(|fd| fd.to_string())
        .collect();
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let argv: Vec<String> = std::env::args().collect();
    let line = format!(
        "testd service={} uid={} gid={} cwd={} fds={} argv={}\n",
        s.options.service_name,
        crate::sys::geteuid(),
        crate::sys::getegid(),
        cwd,
        fds.join(","),
        argv.join(" ")
    );
    let _ = conn.write_all(line.as_bytes());
}

/// Entry point.
pub fn main(args: Vec<OsString>) -> i32 {
    let argv: Vec<String> = args
        .iter()
        .map(|a| crate::util::latin1::from_os(a))
        .collect();
    if let Some(i) = argv.iter().position(|a| a.starts_with("testd_exit=")) {
        let code: i32 = argv[i]["testd_exit=".len()..].parse().unwrap_or(1);
        std::process::exit(code);
    }
    super::server::single_server(args, answer)
}
