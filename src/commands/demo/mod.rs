//! `rostfix demo`: a first try that needs no root.
//!
//! Writes an embedded default configuration to `./rostfix-demo/` (main.cf and
//! master.cf; existing files are kept) and shows it through rostfix's own
//! configuration engine. Runs as the invoking user; touches nothing outside
//! that directory.

use std::ffi::OsString;
use std::io::Write;

const MAIN_CF: &str = include_str!("main.cf");
const MASTER_CF: &str = include_str!("master.cf");

/// Entry point: `rostfix demo [DIR]`.
pub fn main(args: Vec<OsString>) -> i32 {
    let dir = std::path::PathBuf::from(
        args.get(1)
            .cloned()
            .unwrap_or_else(|| OsString::from("rostfix-demo")),
    );
    let dir = match std::path::absolute(&dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("rostfix demo: {}: {e}", dir.display());
            return 1;
        }
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("rostfix demo: create {}: {e}", dir.display());
        return 1;
    }
    for (name, text) in [("main.cf", MAIN_CF), ("master.cf", MASTER_CF)] {
        let path = dir.join(name);
        if path.exists() {
            continue;
        }
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("rostfix demo: write {}: {e}", path.display());
            return 1;
        }
    }
    let exe = std::env::current_exe().unwrap_or_else(|_| "rostfix".into());
    let d = dir.display();
    println!("rostfix demo: configuration in {d}");
    println!("effective settings (rostfix postconf -n):");
    let _ = std::io::stdout().flush();
    let status = std::process::Command::new(&exe)
        .arg("postconf")
        .arg("-c")
        .arg(&dir)
        .arg("-n")
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        eprintln!("rostfix demo: postconf failed");
        return 1;
    }
    let e = exe.display();
    println!();
    println!("explore it:");
    println!("  {e} postconf -c {d} -x mydestination     # expanded value");
    println!("  {e} postconf -c {d} -M                    # master.cf services");
    println!("  {e} postconf -c {d} -e relayhost=[smtp.example]:587   # edit main.cf");
    println!();
    println!("The SMTP listener on 127.0.0.1:2525 (master, smtpd) is not built yet;");
    println!("see the status table in README.md.");
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::global::mail_conf::MailConf;

    #[test]
    fn embedded_config_is_safe_and_local() {
        let c = MailConf::from_text("/tmp/d", MAIN_CF);
        assert_eq!(
            c.lookup_eval("inet_interfaces").unwrap().unwrap(),
            "127.0.0.1"
        );
        assert_eq!(
            c.lookup_eval("queue_directory").unwrap().unwrap(),
            "/tmp/d/queue"
        );
        assert_eq!(
            c.lookup_eval("smtpd_forbid_bare_newline").unwrap().unwrap(),
            "normalize"
        );
        assert_eq!(c.compat_level().unwrap(), (3 << 20) | (6 << 10));
        assert!(
            MASTER_CF
                .lines()
                .any(|l| l.starts_with("127.0.0.1:2525 inet"))
        );
    }
}
