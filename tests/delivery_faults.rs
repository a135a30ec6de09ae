//! Fault tests of the delivery path, on a scratch instance of ours run by
//! our master (pickup, cleanup, qmgr, local, smtp, bounce): kill -9 of
//! qmgr and of a local delivery agent in the middle of a run, a full
//! disk under the mailbox, a mailbox that is a symbolic link, a
//! destination that answers 4xx and then 2xx, and one that never
//! answers. Nothing may be lost or delivered to the wrong place, and the
//! deferral texts are Postfix 3.7.11's (local/mailbox.c,
//! global/mbox_open.c mbox_dsn, qmgr/qmgr_deliver.c, smtp/smtp_proto.c
//! and smtp_trouble.c).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/master_scratch.rs"]
mod master_scratch;
use master_scratch::{Scratch, is_root};

/// The local recipient: demo as root (deliveries run as demo), else us.
fn user() -> String {
    if is_root() {
        return "demo".into();
    }
    std::env::var("USER")
        .ok()
        .or_else(|| std::env::var("LOGNAME").ok())
        .unwrap_or_else(|| "nobody".into())
}

/// Start our master on a fresh instance under /tmp with these main.cf
/// lines added; the mail spool is `DIR/spool` (mode 1777).
fn start(tag: &str, extra: &str) -> Scratch {
    start_in(
        master_scratch::scratch_dir(&format!("faults-{tag}")),
        extra,
        "-",
    )
}

/// [`start`] in `dir`, with the maxproc column of the local service.
fn start_in(dir: PathBuf, extra: &str, local_maxproc: &str) -> Scratch {
    master_scratch::start(
        dir,
        &master_scratch::services(&format!(
            "local unix - n n - {local_maxproc} local\n\
             smtp unix - - n - - smtp\n"
        )),
        &format!("biff = no\n{extra}"),
        &[],
    )
}

/// Submit one message with our sendmail.
fn send(s: &Scratch, rcpt: &str, subject: &str, body: &str) {
    let mut c = Command::new(s.dir.join("bin/sendmail"))
        .args(["-f", "sender@test.example", rcpt])
        .env("MAIL_CONFIG", s.dir.join("conf"))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(format!("Subject: {subject}\n\n{body}\n").as_bytes())
        .unwrap();
    assert_eq!(c.wait().unwrap().code(), Some(0));
}

/// Pids of the master's children whose argv[0] is `name`.
fn children(s: &Scratch, name: &str) -> Vec<i32> {
    let master = s.master.as_ref().unwrap().id() as i32;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid: i32 = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let argv0 = std::fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .split(|b| *b == 0)
            .next()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .unwrap_or_default();
        if ppid == master && argv0 == name {
            out.push(pid);
        }
    }
    out
}

fn kill9(pid: i32) {
    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
}

fn queue_files(s: &Scratch, queues: &[&str]) -> usize {
    queue_paths(s, queues).len()
}

fn queue_paths(s: &Scratch, queues: &[&str]) -> Vec<PathBuf> {
    let mut n = Vec::new();
    for q in queues {
        let mut stack = vec![s.dir.join("q").join(q)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    n.push(e.path());
                }
            }
        }
    }
    n
}

/// Wait up to `secs` for `f`; panic with the log when it never holds.
fn wait_long(s: &Scratch, secs: u64, what: &str, mut f: impl FnMut(&Scratch) -> bool) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        if f(s) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}; log:\n{}", s.log());
}

fn mailbox(s: &Scratch, user: &str) -> String {
    String::from_utf8_lossy(&std::fs::read(s.dir.join("spool").join(user)).unwrap_or_default())
        .into_owned()
}

/// Every message `fault-0`..`fault-{n-1}` is in the mailbox (at least
/// once), each copy complete, and nothing else is.
fn assert_all_delivered(s: &Scratch, user: &str, n: usize) {
    let mb = mailbox(s, user);
    for i in 0..n {
        assert!(
            mb.contains(&format!("Subject: fault-{i}\n"))
                && mb.contains(&format!("\nbody of {i}\n")),
            "message {i} missing from the mailbox; log:\n{}",
            s.log()
        );
    }
    let froms = mb.lines().filter(|l| l.starts_with("From ")).count();
    let subjects = mb
        .lines()
        .filter(|l| l.starts_with("Subject: fault-"))
        .count();
    assert_eq!(
        froms, subjects,
        "a partial or foreign message in the mailbox"
    );
    let others: Vec<_> = std::fs::read_dir(s.dir.join("spool"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != user && !n.ends_with(".lock"))
        .collect();
    assert!(others.is_empty(), "delivered elsewhere: {others:?}");
}

/// kill -9 of qmgr while it has mail in flight: master logs the crash
/// and starts a new qmgr, which recovers active/; every message arrives.
#[test]
fn qmgr_killed_mid_run() {
    let s = start("qmgr", "");
    let u = user();
    let n = 30;
    for i in 0..n {
        send(
            &s,
            &format!("{u}@test.example"),
            &format!("fault-{i}"),
            &format!("body of {i}"),
        );
        if i == 5 {
            s.wait("first deliveries", |s| s.log().contains("status=sent"));
            let q = children(&s, "qmgr");
            assert_eq!(q.len(), 1, "one qmgr: {q:?}");
            kill9(q[0]);
            s.wait("master noticing the crash", |s| {
                s.log()
                    .contains(&format!("pid {} killed by signal 9", q[0]))
            });
        }
    }
    wait_long(&s, 30, "every message delivered", |s| {
        queue_files(s, &["incoming", "active", "deferred", "maildrop"]) == 0
            && mailbox(s, &u).matches("Subject: fault-").count() >= n
    });
    assert_all_delivered(&s, &u, n);
    let log = s.log();
    assert!(
        log.lines().any(|l| l.contains("postfix/master[")
            && l.contains("warning: process ")
            && l.contains("/qmgr pid ")
            && l.contains(" killed by signal 9")),
        "{log}"
    );
    // qmgr reports busy/available to master for its first trigger only
    // (compat/DIVERGENCES.md); that is enough for master to know it had
    // worked: its death is not a bad start-up.
    assert!(!log.contains("/qmgr: bad command startup"), "{log}");
}

/// kill -9 of the local delivery agent in the middle of a delivery: as
/// Postfix's qmgr_deliver.c (the agent's reply cannot be read: "malformed
/// response", DELIVER_STAT_CRASH), the destination is throttled with
/// "delivery temporarily suspended: unknown mail transport error", the
/// message goes back to deferred/ (no recipient line: the crashed
/// entry's recipients are not logged) and is delivered on a later run.
#[test]
fn local_agent_killed_mid_delivery() {
    let dir_marker =
        std::env::temp_dir().join(format!("rostfix-faults-mark-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir_marker);
    let script =
        std::env::temp_dir().join(format!("rostfix-faults-slow-{}.sh", std::process::id()));
    let out = std::env::temp_dir().join(format!("rostfix-faults-out-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o1777)).unwrap();
    // Slow until the marker exists; then a copy per delivery.
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ -e {m} ]; then cat > {o}/msg.$$; exit 0; fi\nsleep 4\nexit 75\n",
            m = dir_marker.display(),
            o = out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = start(
        "local",
        &format!(
            "mailbox_command = {}\nminimal_backoff_time = 1s\nmaximal_backoff_time = 2s\n\
             queue_run_delay = 1s\nservice_throttle_time = 1s\n",
            script.display()
        ),
    );
    let u = user();
    send(&s, &format!("{u}@test.example"), "fault-0", "body of 0");
    let mut pids = Vec::new();
    let t = Instant::now();
    while pids.is_empty() && t.elapsed() < Duration::from_secs(10) {
        // The agent is busy once its command runs.
        pids = children(&s, "local")
            .into_iter()
            .filter(|p| {
                std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
                    std::fs::read_to_string(e.path().join("stat"))
                        .ok()
                        .and_then(|st| {
                            st.rsplit(')').next().and_then(|r| {
                                r.split_whitespace().nth(1).map(|x| x == p.to_string())
                            })
                        })
                        .unwrap_or(false)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!pids.is_empty(), "no busy local agent; log:\n{}", s.log());
    std::fs::write(&dir_marker, "").unwrap();
    kill9(pids[0]);
    wait_long(&s, 30, "delivery after the crash", |s| {
        s.log().contains("status=sent (delivered to command: ")
            && queue_files(s, &["incoming", "active", "deferred"]) == 0
    });
    let log = s.log();
    assert!(
        log.lines().any(|l| l.contains("postfix/qmgr[")
            && l.ends_with(": warning: private/local socket: malformed response")),
        "{log}"
    );
    // Deferred, then taken into the active queue a second time.
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("postfix/qmgr[") && l.ends_with("(queue active)"))
            .count(),
        2,
        "{log}"
    );
    // A recipient deferred while the destination is throttled gets
    // Postfix's text; the crashed delivery itself logs no deferral.
    for l in log.lines().filter(|l| l.contains("status=deferred")) {
        assert!(
            l.contains(&format!("to=<{u}@test.example>"))
                && l.ends_with(
                    "status=deferred (delivery temporarily suspended: unknown mail transport error)"
                ),
            "{log}"
        );
    }
    // As Postfix's master: a child that dies before it finished its first
    // request counts as a bad startup and throttles the service.
    assert!(
        log.contains(&format!(
            "warning: process {}/bin/local pid {} killed by signal 9",
            s.dir.display(),
            pids[0]
        )) && log.contains("/bin/local: bad command startup -- throttling"),
        "{log}"
    );
    // Exactly one copy by the command, none in the spool.
    std::thread::sleep(Duration::from_secs(1));
    let copies: Vec<_> = std::fs::read_dir(&out).unwrap().flatten().collect();
    assert_eq!(copies.len(), 1, "{log}");
    let text = std::fs::read_to_string(copies[0].path()).unwrap();
    assert!(
        text.contains("Subject: fault-0\n") && text.contains("\nbody of 0\n"),
        "{text}"
    );
    assert!(!s.dir.join("spool").join(&u).exists());
    let _ = std::fs::remove_file(&dir_marker);
    let _ = std::fs::remove_file(&script);
    let _ = std::fs::remove_dir_all(&out);
}

/// A mailbox on a full file system: deferred with "cannot update mailbox
/// ... error writing message: No space left on device" (4.3.0, Postfix's
/// mbox_dsn for ENOSPC), the mailbox left as it was; delivered once there
/// is room again. Needs root (a 1 MB tmpfs under the spool).
#[test]
fn full_disk_under_the_mailbox() {
    if !is_root() {
        eprintln!("skipped: needs root to mount a tmpfs");
        return;
    }
    let s = start(
        "full",
        "minimal_backoff_time = 1s\nmaximal_backoff_time = 2s\nqueue_run_delay = 1s\n",
    );
    let spool = s.dir.join("spool");
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m,mode=1777", "tmpfs"])
        .arg(&spool)
        .status()
        .unwrap();
    assert!(st.success());
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _um = Unmount(spool.clone());
    let u = user();
    send(&s, &format!("{u}@test.example"), "fault-0", "body of 0");
    s.wait("first delivery", |s| s.log().contains("status=sent"));
    let before = mailbox(&s, &u);
    // Fill the file system, then send a message bigger than what is left.
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=4k", "count=1000"])
        .arg(format!("of={}", spool.join("filler").display()))
        .stderr(Stdio::null())
        .status();
    let big = "x".repeat(70);
    let body: String = (0..200).map(|_| format!("{big}\n")).collect();
    send(
        &s,
        &format!("{u}@test.example"),
        "fault-1",
        &format!("body of 1\n{body}"),
    );
    let mb = spool.join(&u).display().to_string();
    let want = format!(
        "status=deferred (cannot update mailbox {mb} for user {u}. \
         error writing message: No space left on device)"
    );
    s.wait("the deferral", |s| s.log().contains(&want));
    assert!(
        s.log()
            .contains("dsn=4.3.0, status=deferred (cannot update mailbox")
    );
    assert_eq!(
        mailbox(&s, &u),
        before,
        "mailbox changed by a failed delivery"
    );
    assert_eq!(queue_files(&s, &["deferred"]), 1);
    std::fs::remove_file(spool.join("filler")).unwrap();
    wait_long(&s, 30, "the delivery after space was freed", |s| {
        queue_files(s, &["incoming", "active", "deferred"]) == 0
            && mailbox(s, &u).contains("Subject: fault-1")
    });
    assert_all_delivered(&s, &u, 2);
}

/// One local agent process delivers to demo, then daemon, then demo
/// again (mbox in the spool, then Maildir): it writes each file as the
/// recipient with its effective identity switched in-process, so each
/// file must belong to its recipient, and between deliveries the agent
/// must be root again (a process stuck as demo could not become daemon;
/// /proc shows its ids once it is idle).
#[test]
fn deliveries_as_each_recipient_in_one_agent() {
    if !is_root() {
        eprintln!("skipped: needs root (deliveries as other users)");
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let ids = |u: &str| {
        let out = Command::new("id").args(["-u", u]).output().unwrap();
        let uid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let out = Command::new("id").args(["-g", u]).output().unwrap();
        let gid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        (uid, gid)
    };
    let users = ["demo", "daemon", "demo"];
    for maildir in [false, true] {
        let tag = if maildir { "eugid-md" } else { "eugid-mbox" };
        let dir = master_scratch::scratch_dir(&format!("faults-{tag}"));
        let extra = if maildir {
            format!("mail_spool_directory = {}/spool/\n", dir.display())
        } else {
            String::new()
        };
        let s = start_in(dir, &extra, "1");
        for (i, u) in users.iter().enumerate() {
            send(
                &s,
                &format!("{u}@test.example"),
                &format!("fault-{i}"),
                &format!("body of {i}"),
            );
            s.wait("the delivery", |s| {
                s.log().matches("status=sent").count() > i
            });
        }
        let log = s.log();
        let pids: std::collections::BTreeSet<&str> = log
            .lines()
            .filter(|l| l.contains("status=sent"))
            .filter_map(|l| l.split("postfix/local[").nth(1))
            .filter_map(|r| r.split(']').next())
            .collect();
        assert_eq!(pids.len(), 1, "not one agent process:\n{log}");
        for u in ["demo", "daemon"] {
            let (uid, gid) = ids(u);
            let p = s.dir.join("spool").join(u);
            let files: Vec<PathBuf> = if maildir {
                std::fs::read_dir(p.join("new"))
                    .unwrap()
                    .flatten()
                    .map(|e| e.path())
                    .collect()
            } else {
                vec![p.clone()]
            };
            let want = if u == "demo" && maildir { 2 } else { 1 };
            assert_eq!(files.len(), want, "{u}: {files:?}\n{log}");
            for f in &files {
                let m = std::fs::symlink_metadata(f).unwrap();
                assert_eq!((m.uid(), m.gid()), (uid, gid), "owner of {}", f.display());
                let text = std::fs::read_to_string(f).unwrap();
                assert!(
                    text.contains(&format!("Delivered-To: {u}@test.example")),
                    "{text}"
                );
            }
            if !maildir {
                let text = std::fs::read_to_string(&p).unwrap();
                let n = text.lines().filter(|l| l.starts_with("From ")).count();
                assert_eq!(n, if u == "demo" { 2 } else { 1 }, "{text}");
            }
        }
        // The agent, idle now, is root again: real, effective, saved and
        // file-system ids, and root's own groups.
        let pid = pids.into_iter().next().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(field("Uid:"), "0 0 0 0", "{status}");
        assert_eq!(field("Gid:"), "0 0 0 0", "{status}");
        // Its groups are those it started with (master's).
        let master = s.master.as_ref().unwrap().id();
        let mstatus = std::fs::read_to_string(format!("/proc/{master}/status")).unwrap();
        let groups = |st: &str| {
            st.lines()
                .find(|l| l.starts_with("Groups:"))
                .map(str::to_string)
        };
        assert_eq!(groups(&status), groups(&mstatus), "{status}");
    }
}

/// A mailbox that is a symbolic link is refused as Postfix's safe_open
/// refuses it, and the link's target is left alone.
#[test]
fn mailbox_symlink_refused() {
    let s = start("symlink", "");
    let u = user();
    let target = s.dir.join("target");
    std::fs::write(&target, "").unwrap();
    // Writable by the recipient, so that only the link itself is wrong.
    let _ = Command::new("chown").arg(&u).arg(&target).status();
    std::os::unix::fs::symlink(&target, s.dir.join("spool").join(&u)).unwrap();
    send(&s, &format!("{u}@test.example"), "fault-0", "body of 0");
    let mb = s.dir.join("spool").join(&u).display().to_string();
    let want = format!(
        "dsn=5.2.0, status=bounced (cannot update mailbox {mb} for user {u}. \
         file is a symbolic link)"
    );
    s.wait("the refusal", |s| s.log().contains(&want));
    assert_eq!(std::fs::read(&target).unwrap(), b"");
    assert!(
        std::fs::symlink_metadata(s.dir.join("spool").join(&u))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

/// A scripted SMTP server: `script(conn, line)` gives the reply to each
/// command of connection number `conn` (None: say nothing, hold on).
/// What a scripted server saw: when, and each line (or `connect N`).
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(Instant, String)>>>;

fn sink(greet: bool, script: impl Fn(usize, &str) -> String + Send + 'static) -> (u16, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let rec = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let r2 = rec.clone();
    std::thread::spawn(move || {
        for (n, c) in l.incoming().take(10).enumerate() {
            let Ok(c) = c else { return };
            r2.lock()
                .unwrap()
                .push((Instant::now(), format!("connect {n}")));
            if !greet {
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_secs(10));
                    drop(c);
                });
                continue;
            }
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut w = c.try_clone().unwrap();
            let mut r = BufReader::new(c);
            let _ = w.write_all(b"220 sink.test ESMTP\r\n");
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                r2.lock().unwrap().push((Instant::now(), line.clone()));
                if line.eq_ignore_ascii_case("DATA\r\n") {
                    let _ = w.write_all(b"354 go ahead\r\n");
                    loop {
                        let mut l = String::new();
                        if r.read_line(&mut l).unwrap_or(0) == 0 || l == ".\r\n" {
                            break;
                        }
                        r2.lock().unwrap().push((Instant::now(), l));
                    }
                }
                let reply = script(n, &line);
                if w.write_all(reply.as_bytes()).is_err() || reply.starts_with("221") {
                    break;
                }
            }
        }
    });
    (port, rec)
}

fn smtp_reply(line: &str) -> String {
    match line.get(..4).unwrap_or("").to_ascii_uppercase().as_str() {
        "EHLO" => "250-sink.test\r\n250 PIPELINING\r\n".into(),
        "QUIT" => "221 2.0.0 Bye\r\n".into(),
        "." | "DATA" => "250 2.0.0 Ok: queued as SINK\r\n".into(),
        _ => "250 2.0.0 Ok\r\n".into(),
    }
}

/// 4xx on the first try, 2xx on the retry: deferred with the server's
/// text, then retried after the backoff. As Postfix's qmgr_active.c: the
/// deferred file's time stamp is set to now + the backoff (whole
/// seconds), and a queue scan takes a file whose time stamp is at most
/// one second ahead; so with minimal_backoff_time = 4s the retry comes
/// more than 2 s (4 s - 1 s slack - 1 s truncation) after the deferral.
#[test]
fn destination_4xx_then_2xx() {
    let (port, rec) = sink(true, |n, line| {
        if n == 0 && line.to_ascii_uppercase().starts_with("RCPT") {
            "451 4.3.0 try again later\r\n".into()
        } else {
            smtp_reply(line)
        }
    });
    let s = start(
        "4xx",
        &format!(
            "relayhost = [127.0.0.1]:{port}\nminimal_backoff_time = 4s\n\
             maximal_backoff_time = 8s\nqueue_run_delay = 1s\n\
             smtp_connection_cache_on_demand = no\n"
        ),
    );
    send(&s, "rcpt@remote.example", "fault-0", "body of 0");
    s.wait("the deferral", |s| {
        s.log().contains(
            "status=deferred (host 127.0.0.1[127.0.0.1] said: 451 4.3.0 try again later \
             (in reply to RCPT TO command))",
        )
    });
    let deferred_at = Instant::now();
    // The deferred file's time stamp: now + 4 s, in whole seconds.
    wait_long(&s, 5, "the deferred file", |s| {
        queue_files(s, &["deferred"]) == 1
    });
    let unix = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
    };
    let f = &queue_paths(&s, &["deferred"])[0];
    let ahead = unix(std::fs::metadata(f).unwrap().modified().unwrap())
        - unix(std::time::SystemTime::now());
    assert!((3..=4).contains(&ahead), "{ahead} s ahead; {}", s.log());
    wait_long(&s, 30, "the retry", |s| {
        s.log()
            .contains("status=sent (250 2.0.0 Ok: queued as SINK)")
            && queue_files(s, &["incoming", "active", "deferred"]) == 0
    });
    let r = rec.lock().unwrap();
    let connects: Vec<Instant> = r
        .iter()
        .filter(|(_, l)| l.starts_with("connect "))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(connects.len(), 2, "{:?}", *r);
    assert!(
        connects[1].duration_since(connects[0]) >= Duration::from_millis(2000),
        "retried before minimal_backoff_time: {:?}",
        connects[1].duration_since(connects[0])
    );
    assert!(deferred_at.elapsed() < Duration::from_secs(30));
    assert_eq!(
        r.iter()
            .filter(|(_, l)| l == "Subject: fault-0\r\n")
            .count(),
        1,
        "{:?}",
        *r
    );
}

/// A server that accepts the connection and never greets: deferred with
/// Postfix's "conversation with ... timed out while receiving the
/// initial server greeting", the mail stays in the queue.
#[test]
fn destination_never_answers() {
    let (port, _rec) = sink(false, |_, l| smtp_reply(l));
    let s = start(
        "silent",
        &format!(
            "relayhost = [127.0.0.1]:{port}\nsmtp_connect_timeout = 1s\n\
             smtp_helo_timeout = 1s\nsmtp_connection_cache_on_demand = no\n"
        ),
    );
    send(&s, "rcpt@remote.example", "fault-0", "body of 0");
    wait_long(&s, 15, "the deferral", |s| {
        s.log()
            .contains(&format!("relay=127.0.0.1[127.0.0.1]:{port}, delay="))
            && s.log().contains(
                "dsn=4.4.2, status=deferred (conversation with 127.0.0.1[127.0.0.1] timed out \
             while receiving the initial server greeting)",
            )
    });
    assert_eq!(queue_files(&s, &["deferred"]), 1, "{}", s.log());
}

/// The pid in a `postfix/NAME[PID]:` log line.
fn line_pid(line: &str, name: &str) -> Option<i32> {
    let tag = format!("postfix/{name}[");
    let rest = &line[line.find(&tag)? + tag.len()..];
    rest[..rest.find(']')?].parse().ok()
}

/// qmgr reuses its connection to a delivery agent for the next delivery
/// (compat/DIVERGENCES.md), and the agent counts deliveries against
/// max_use as Postfix's agents count connections: with `-o max_use=3`
/// and one delivery at a time (two recipients each: with a recipient
/// limit of 1 each recipient would be a destination of its own), ten
/// deliveries are made by at least four discard processes, none making
/// more than three, over fewer connections than deliveries (the skeleton
/// logs each one with -v).
#[test]
fn agent_connection_reused_up_to_max_use() {
    let s = master_scratch::start(
        master_scratch::scratch_dir("faults-reuse"),
        &master_scratch::services("discard unix - - n - - discard -v -o max_use=3\n"),
        "biff = no\ndefault_transport = discard\n\
         discard_destination_recipient_limit = 2\n\
         discard_destination_concurrency_limit = 1\n",
        &[],
    );
    let n = 20;
    let rcpts: Vec<String> = (0..n).map(|i| format!("r{i}@remote.example")).collect();
    let mut c = Command::new(s.dir.join("bin/sendmail"))
        .args(["-f", "sender@test.example"])
        .args(&rcpts)
        .env("MAIL_CONFIG", s.dir.join("conf"))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"Subject: reuse\n\nbody\n")
        .unwrap();
    assert_eq!(c.wait().unwrap().code(), Some(0));
    wait_long(&s, 30, "every recipient delivered", |s| {
        s.log()
            .lines()
            .filter(|l| l.contains("status=sent"))
            .count()
            == n
            && queue_files(s, &["incoming", "active", "deferred", "maildrop"]) == 0
    });
    let log = s.log();
    let mut per_pid = std::collections::BTreeMap::<i32, usize>::new();
    for i in 0..n {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains(&format!("to=<r{i}@remote.example>")) && l.contains("status=sent")
            })
            .collect();
        assert_eq!(lines.len(), 1, "recipient {i}:\n{log}");
        let pid = line_pid(lines[0], "discard").unwrap_or_else(|| panic!("{log}"));
        *per_pid.entry(pid).or_default() += 1;
    }
    // Two recipients per delivery, at most three deliveries per process.
    assert!(per_pid.values().all(|&k| k <= 6), "{per_pid:?}\n{log}");
    assert!(per_pid.len() >= 4, "{per_pid:?}\n{log}");
    let connections = log
        .lines()
        .filter(|l| l.contains("postfix/discard[") && l.ends_with(": connection established"))
        .count();
    assert!(
        connections >= per_pid.len() && connections < n / 2,
        "{connections} connections for {} deliveries:\n{log}",
        n / 2
    );
    assert!(!log.contains("warning:"), "{log}");
}

/// kill -9 of a delivery agent whose connection qmgr keeps for the next
/// delivery: the next delivery notices the closed connection before it
/// sends anything and goes out on a new one: nothing lost, nothing
/// delivered twice, no deferral, and master does not take the dead agent
/// for a bad start-up (it had finished a delivery).
#[test]
fn pooled_agent_killed_between_deliveries() {
    let s = master_scratch::start(
        master_scratch::scratch_dir("faults-pooled"),
        &master_scratch::services("local unix - n n - - local -v\n"),
        "biff = no\n",
        &[],
    );
    let u = user();
    let n = 4;
    for i in 0..n {
        send(
            &s,
            &format!("{u}@test.example"),
            &format!("fault-{i}"),
            &format!("body of {i}"),
        );
        let mut pid = None;
        wait_long(&s, 20, "the delivery", |s| {
            pid = s
                .log()
                .lines()
                .filter(|l| l.contains("status=sent") && l.contains("postfix/local["))
                .nth(i)
                .and_then(|l| line_pid(l, "local"));
            pid.is_some()
        });
        if i % 2 == 0 {
            // The agent now waits on qmgr's idle connection (for up to a
            // second): kill it there; the next message comes at once.
            let pid = pid.unwrap();
            // Its connection is still open (the skeleton logs the end of
            // each connection with -v).
            let closed = format!("postfix/local[{pid}]: connection closed");
            assert!(!s.log().contains(&closed), "{}", s.log());
            kill9(pid);
            s.wait("master noticing the kill", |s| {
                s.log().contains(&format!("pid {pid} killed by signal 9"))
            });
        }
    }
    wait_long(&s, 30, "every message delivered", |s| {
        queue_files(s, &["incoming", "active", "deferred", "maildrop"]) == 0
            && mailbox(s, &u).matches("Subject: fault-").count() >= n
    });
    assert_all_delivered(&s, &u, n);
    let log = s.log();
    assert_eq!(
        mailbox(&s, &u).matches("Subject: fault-").count(),
        n,
        "{log}"
    );
    assert_eq!(log.matches("status=sent").count(), n, "{log}");
    assert!(!log.contains("status=deferred"), "{log}");
    assert!(!log.contains("malformed response"), "{log}");
    assert!(!log.contains("bad command startup"), "{log}");
}
