//! `rostfix demo`: a first try that needs no root.
//!
//! Writes an embedded default configuration to `./rostfix-demo/` (main.cf and
//! master.cf; existing files are kept), links the programs into
//! `libexec/` (daemon_directory) and `bin/` (command_directory) there, and
//! runs `postfix start-fg` on it: master in the foreground, as the invoking
//! user, with SMTP on 127.0.0.1:2525 and Postfix's default services (qmgr,
//! local, bounce ...): mail for a local domain is delivered to mboxes in
//! `mail/` (names that are no account: the invoking user's, through
//! luser_relay); mail for other domains is returned
//! by the error transport. Ctrl-C stops it. Nothing outside that directory
//! is touched.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

const MAIN_CF: &str = include_str!("main.cf");
const MASTER_CF: &str = include_str!("master.cf");

/// Daemons master may start (daemon_directory).
const DAEMONS: &[&str] = &[
    "master",
    "smtpd",
    "anvil",
    "pickup",
    "cleanup",
    "qmgr",
    "trivial-rewrite",
    "bounce",
    "showq",
    "error",
    "discard",
    "local",
    "virtual",
    "smtp",
    "lmtp",
    "pipe",
    "flush",
    "postlogd",
];

/// Commands (command_directory).
const COMMANDS: &[&str] = &[
    "postfix",
    "postconf",
    "postmap",
    "postalias",
    "postcat",
    "postqueue",
    "postsuper",
    "sendmail",
    "mailq",
    "newaliases",
];

fn link(target: &Path, link: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(link) {
        Ok(_) => std::fs::remove_file(link)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::os::unix::fs::symlink(target, link)
}

/// The main.cf lines that name the invoking user. Mail for local names
/// that are no account goes to that user's mailbox (luser_relay). Run by someone other than
/// root, everything runs as that user: mail_owner and setgid_group name
/// them so that the programs' ownership checks agree.
fn owner_settings() -> String {
    let uid = crate::sys::ids::geteuid();
    let user = crate::sys::process::getpwuid(uid).map(|p| p.name);
    let mut s = String::new();
    if let Some(u) = &user {
        s.push_str(&format!("luser_relay = {u}\n"));
    }
    if uid == 0 {
        return s;
    }
    let group = crate::sys::process::getgrgid(crate::sys::getegid()).map(|g| g.name);
    s.push_str("# The invoking user owns the demo.\n");
    if let Some(u) = user.filter(|u| u != "nobody") {
        s.push_str(&format!("mail_owner = {u}\n"));
    }
    if let Some(g) = group.filter(|_| uid != 65534) {
        s.push_str(&format!("setgid_group = {g}\n"));
    }
    s
}

/// Lay out the demo directory. Returns the absolute config directory.
pub fn prepare(dir: &Path, exe: &Path) -> Result<PathBuf, String> {
    let dir = std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for sub in ["", "libexec", "bin", "mail"] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| format!("create {}: {e}", d.display()))?;
    }
    for (name, text) in [("main.cf", MAIN_CF), ("master.cf", MASTER_CF)] {
        let path = dir.join(name);
        if !path.exists() {
            let mut text = text.to_string();
            if name == "main.cf" {
                text.push_str(&owner_settings());
            }
            std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
        }
    }
    for name in DAEMONS {
        link(exe, &dir.join("libexec").join(name)).map_err(|e| format!("link {name}: {e}"))?;
    }
    for name in COMMANDS {
        link(exe, &dir.join("bin").join(name)).map_err(|e| format!("link {name}: {e}"))?;
    }
    // postdrop is its own (set-gid) program, built next to rostfix.
    if let Some(pd) = exe.parent().map(|p| p.join("postdrop"))
        && pd.exists()
    {
        link(&pd, &dir.join("bin").join("postdrop")).map_err(|e| format!("link postdrop: {e}"))?;
    }
    Ok(dir)
}

/// Entry point: `rostfix demo [DIR]`.
pub fn main(args: Vec<OsString>) -> i32 {
    let dir = PathBuf::from(
        args.get(1)
            .cloned()
            .unwrap_or_else(|| OsString::from("rostfix-demo")),
    );
    let exe = std::env::current_exe().unwrap_or_else(|_| "rostfix".into());
    let dir = match prepare(&dir, &exe) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("rostfix demo: {e}");
            return 1;
        }
    };
    let d = dir.display();
    println!("rostfix demo: configuration and queue in {d}");
    println!("SMTP on 127.0.0.1:2525; logs below; Ctrl-C stops it.");
    println!("try, from another terminal:");
    println!(
        "  printf 'HELO me\\r\\nMAIL FROM:<a@example.com>\\r\\nRCPT TO:<you@localhost>\\r\\nDATA\\r\\nSubject: hi\\r\\n\\r\\nhello\\r\\n.\\r\\nQUIT\\r\\n' | nc 127.0.0.1 2525"
    );
    println!("  {d}/bin/sendmail -C {d} you@localhost < message.txt");
    if let Some(u) = crate::sys::process::getpwuid(crate::sys::ids::geteuid()) {
        println!(
            "mail to other names @localhost is delivered to {d}/mail/{}",
            u.name
        );
    }
    println!("  {d}/bin/mailq -C {d}          # the queue");
    println!("  {d}/bin/postconf -c {d} -n    # the settings");
    // Ctrl-C or SIGTERM stops the whole system: master runs in its own
    // session (as Postfix's does), so the signal is not enough by itself.
    if let Err(e) = crate::sys::process::master_signals() {
        eprintln!("rostfix demo: signals: {e}");
        return 1;
    }
    let mut child = match std::process::Command::new(&exe)
        .arg("postfix")
        .arg("-c")
        .arg(&dir)
        .arg("start-fg")
        .env("MAIL_CONFIG", &dir)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rostfix demo: run postfix start-fg: {e}");
            return 1;
        }
    };
    let mut stopping = false;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return if stopping { 0 } else { st.code().unwrap_or(1) },
            Ok(None) => {}
            Err(e) => {
                eprintln!("rostfix demo: wait: {e}");
                return 1;
            }
        }
        if !stopping && crate::sys::process::take_signals().death != 0 {
            stopping = true;
            let _ = std::process::Command::new(&exe)
                .arg("postfix")
                .arg("-c")
                .arg(&dir)
                .arg("stop")
                .env("MAIL_CONFIG", &dir)
                .status();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
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
            c.lookup_eval("daemon_directory").unwrap().unwrap(),
            "/tmp/d/libexec"
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
        // Everything delivery needs is in master.cf, and linked.
        for svc in [
            "qmgr", "local", "bounce", "defer", "error", "cleanup", "rewrite",
        ] {
            let line = MASTER_CF
                .lines()
                .find(|l| l.split_whitespace().next() == Some(svc))
                .unwrap_or_else(|| panic!("no {svc} in master.cf"));
            let prog = line.split_whitespace().nth(7).unwrap();
            assert!(DAEMONS.contains(&prog), "{prog}");
        }
    }

    #[test]
    fn prepare_lays_out_links() {
        let base = std::env::temp_dir().join(format!("rostfix-demo-test-{}", std::process::id()));
        let dir = prepare(&base, Path::new("/bin/true")).unwrap();
        for p in [
            "main.cf",
            "master.cf",
            "libexec/smtpd",
            "bin/sendmail",
            "mail",
        ] {
            assert!(dir.join(p).symlink_metadata().is_ok(), "{p}");
        }
        assert_eq!(
            std::fs::read_link(dir.join("libexec/master")).unwrap(),
            Path::new("/bin/true")
        );
        // A second run keeps an edited main.cf.
        std::fs::write(dir.join("main.cf"), "x = 1\n").unwrap();
        prepare(&base, Path::new("/bin/true")).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("main.cf")).unwrap(),
            "x = 1\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
