//! qmgr end to end against Postfix 3.7.11: our master runs pickup,
//! cleanup, qmgr, local (to a scratch mail_spool_directory), error/retry
//! and discard; mail submitted with our sendmail must be delivered, and the
//! mailbox and the log lines must match what Postfix did with the same
//! configuration and input (tests/golden/qmgr/postfix.*, recorded by
//! compat/record-qmgr.sh) after normalising queue IDs, dates, delays and
//! pids. Two messages: one with a local, a discarded and a deferred
//! (`retry`) recipient, one that is fully delivered (`removed`), then
//! `postqueue -f` brings the deferred one back.
//!
//! As root, master runs in its normal mode (services drop to nobody) and
//! mail goes to root; as any other user, in non-root mode to that user.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "common/master_scratch.rs"]
mod master_scratch;
use master_scratch::{Scratch, is_root};

const BIN: &str = env!("CARGO_BIN_EXE_rostfix");

fn golden(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/qmgr")
            .join(name),
    )
    .unwrap()
}

fn age(path: &Path) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
}

impl Scratch {
    fn run(&self, prog: &str, args: &[&str], input: &str) -> i32 {
        use std::io::Write;
        let mut c = Command::new(self.dir.join("bin").join(prog))
            .args(args)
            .env("MAIL_CONFIG", self.dir.join("conf"))
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        c.wait().unwrap().code().unwrap_or(-1)
    }
}

fn user() -> (String, u32) {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let pw = std::fs::read_to_string("/etc/passwd").unwrap();
    let name = pw
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
        })
        .unwrap();
    (name, uid)
}

/// Replace every run of 10+ upper-case hex digits (a queue ID) by Q<n>,
/// numbered in order of first appearance.
fn ids(text: &str, seen: &mut Vec<String>) -> String {
    let b = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let mut j = i;
        while j < b.len() && (b[j].is_ascii_digit() || (b'A'..=b'F').contains(&b[j])) {
            j += 1;
        }
        if j - i >= 10 {
            let id = &text[i..j];
            let n = match seen.iter().position(|s| s == id) {
                Some(n) => n,
                None => {
                    seen.push(id.to_string());
                    seen.len() - 1
                }
            };
            out.push_str(&format!("Q{n}"));
            i = j;
        } else if j > i {
            out.push_str(&text[i..j]);
            i = j;
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Cut `key=` values up to the next `, ` (delays, sizes in non-root mode).
fn blank(line: &str, key: &str) -> String {
    match line.find(key) {
        Some(p) => {
            let rest = &line[p + key.len()..];
            let end = rest.find(", ").unwrap_or(rest.len());
            format!("{}{}X{}", &line[..p], key, &rest[end..])
        }
        None => line.to_string(),
    }
}

/// The delivery-related log lines, normalised and sorted.
fn norm_log(text: &str, nonroot: bool) -> Vec<String> {
    let mut seen = Vec::new();
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let p = l.find("postfix/")?;
            let l = &l[p..];
            let prog_end = l.find('[')?;
            let prog = &l[..prog_end];
            if ![
                "postfix/pickup",
                "postfix/cleanup",
                "postfix/qmgr",
                "postfix/local",
                "postfix/error",
                "postfix/discard",
            ]
            .contains(&prog)
            {
                return None;
            }
            let rest = &l[l.find("]: ")? + 3..];
            let mut s = format!("{prog}: {}", ids(rest, &mut seen));
            s = blank(&s, "delay=");
            s = blank(&s, "delays=");
            if nonroot {
                s = blank(&s, "size=");
                s = blank(&s, "uid=");
            }
            if let Some(p) = s.find("message-id=<") {
                s = format!("{}message-id=<MID>", &s[..p]);
            }
            Some(s)
        })
        .collect();
    v.sort();
    v
}

fn norm_mailbox(text: &str) -> String {
    let mut seen = Vec::new();
    text.lines()
        .map(|l| {
            if l.starts_with("From ") {
                l.rsplitn(6, ' ').last().unwrap_or(l).to_string()
            } else if l.starts_with("Date: ") {
                "Date: DATE".into()
            } else if l.starts_with("Message-Id: ") {
                "Message-Id: MID".into()
            } else if l.starts_with("\tid ") {
                format!("{}; DATE", ids(l.split(';').next().unwrap(), &mut seen))
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn qmgr_delivers_like_postfix() {
    let dir = std::env::temp_dir().join(format!("rostfix-qmgr-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for d in ["conf", "q", "data", "bin", "spool"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.join("spool"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    for p in [
        "master",
        "pickup",
        "cleanup",
        "qmgr",
        "local",
        "error",
        "discard",
        "sendmail",
        "postqueue",
    ] {
        std::os::unix::fs::symlink(BIN, dir.join("bin").join(p)).unwrap();
    }
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_postdrop"),
        dir.join("bin").join("postdrop"),
    )
    .unwrap();
    let d = dir.display();
    let mut main_cf = format!(
        "compatibility_level = 3.6\n\
         queue_directory = {d}/q\n\
         data_directory = {d}/data\n\
         daemon_directory = {d}/bin\n\
         command_directory = {d}/bin\n\
         maillog_file = {d}/maillog\n\
         maillog_file_prefixes = {d}\n\
         inet_interfaces = 127.0.0.1\n\
         inet_protocols = ipv4\n\
         myhostname = test.example\n\
         mydestination = test.example, localhost\n\
         mail_spool_directory = {d}/spool\n\
         alias_maps =\n\
         alias_database =\n\
         transport_maps = texthash:{d}/conf/transport\n"
    );
    if is_root() {
        main_cf.push_str("mail_owner = nobody\ndefault_privs = daemon\nsetgid_group = mail\n");
    }
    std::fs::write(dir.join("conf/main.cf"), main_cf).unwrap();
    std::fs::write(dir.join("conf/master.cf"), golden("master.cf")).unwrap();
    std::fs::write(dir.join("conf/transport"), golden("transport")).unwrap();
    for f in ["main.cf", "master.cf", "transport"] {
        age(&dir.join("conf").join(f));
    }
    let mut s = Scratch { dir, master: None };
    let out = Command::new(BIN)
        .args(["postfix", "-c"])
        .arg(s.dir.join("conf"))
        .arg("set-permissions")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.master = Some(
        Command::new(s.dir.join("bin/master"))
            .arg("-d")
            .arg("-c")
            .arg(s.dir.join("conf"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    s.wait("master", |s| s.log().contains("daemon started"));

    let (name, uid) = if is_root() {
        ("root".to_string(), 0)
    } else {
        user()
    };
    let rcpt = format!("{name}@test.example");
    let args = [
        "-f",
        "sender@test.example",
        &rcpt,
        "nobody@discard.example",
        "nobody@retry.example",
    ];
    assert_eq!(s.run("sendmail", &args, "Subject: hello\n\nbody line\n"), 0);
    s.wait("first message", |s| {
        s.log().contains("status=deferred (try later)")
            && s.log().contains("status=sent (delivered to mailbox)")
            && s.log().contains("status=sent (discard.example)")
    });
    assert_eq!(s.run("sendmail", &args[..4], "Subject: two\n\nsecond\n"), 0);
    s.wait("second message", |s| s.log().contains(": removed"));
    // The deferred message is waiting for its backoff time...
    let deferred = |s: &Scratch| {
        let mut n = 0;
        for e in std::fs::read_dir(s.dir.join("q/deferred"))
            .unwrap()
            .flatten()
        {
            n += std::fs::read_dir(e.path()).map(|d| d.count()).unwrap_or(0);
        }
        n
    };
    assert_eq!(deferred(&s), 1, "{}", s.log());
    // ...until postqueue -f asks for it.
    assert_eq!(s.run("postqueue", &["-f"], ""), 0);
    s.wait("flush", |s| s.log().matches("(try later)").count() == 2);
    s.wait("deferred again", |s| deferred(s) == 1);

    let nonroot = !is_root();
    let mut want_log = golden("postfix.maillog");
    let mut want_box = golden("postfix.mailbox");
    if nonroot {
        want_log = want_log.replace("root@test.example", &rcpt);
        want_box = want_box
            .replace("root@test.example", &rcpt)
            .replace("from userid 0", &format!("from userid {uid}"));
    }
    assert_eq!(norm_log(&s.log(), nonroot), norm_log(&want_log, nonroot));
    let got_box = std::fs::read_to_string(s.dir.join("spool").join(&name)).unwrap();
    let (gb, wb) = (norm_mailbox(&got_box), norm_mailbox(&want_box));
    if nonroot {
        // The From: full name is the submitting user's.
        let strip = |t: &str| {
            t.lines()
                .filter(|l| !l.starts_with("From: "))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(strip(&gb), strip(&wb));
    } else {
        assert_eq!(gb, wb);
    }
}
