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
use master_scratch::{Scratch, is_root, scratch_dir};

fn golden(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/qmgr")
            .join(name),
    )
    .unwrap()
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
                "postfix/bounce",
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
    let dir = scratch_dir("qmgr");
    let extra = format!(
        "transport_maps = texthash:{}/conf/transport\n",
        dir.display()
    );
    let s = master_scratch::start(
        dir,
        &golden("master.cf"),
        &extra,
        &[("transport", &golden("transport"))],
    );

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
    // Sizes are blanked: a queue ID's length (it is in the Received:
    // header) varies with the queue file's inode number.
    assert_eq!(norm_log(&s.log(), true), norm_log(&want_log, true));
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

/// A scratch instance of ours with pickup, cleanup, qmgr, error/retry,
/// discard, smtp and the bounce/defer/trace services; `extra` goes into
/// main.cf, `transport` into the transport table.
fn instance(tag: &str, extra: &str, transport: &str) -> Scratch {
    let dir = scratch_dir(&format!("qmgr-{tag}"));
    let extra = format!(
        "transport_maps = texthash:{}/conf/transport\n{extra}\n",
        dir.display()
    );
    master_scratch::start(
        dir,
        &master_scratch::services(
            "discard unix - - n - - discard\n\
             smtp unix - - n - - smtp\n\
             flush unix n - n - 0 flush\n",
        ),
        &extra,
        &[("transport", transport)],
    )
}

/// Files in a hashed queue directory.
fn queue_count(s: &Scratch, queue: &str) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(s.dir.join("q").join(queue))
        .into_iter()
        .flatten()
        .flatten()
    {
        if e.path().is_dir() {
            n += std::fs::read_dir(e.path()).map(|d| d.count()).unwrap_or(0);
        } else {
            n += 1;
        }
    }
    n
}

/// Wait up to `secs` for `f`; panic with the log when it never holds.
fn wait_long(s: &Scratch, secs: u64, what: &str, mut f: impl FnMut(&str) -> bool) {
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if f(&s.log()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}; log:\n{}", s.log());
}

/// The queue ID a log line starts with after `postfix/PROG[PID]: `.
fn line_id(line: &str) -> Option<&str> {
    let rest = &line[line.find("]: ")? + 3..];
    rest.split(':').next()
}

/// An SMTP sink that accepts everything and records how many RCPT
/// commands each mail transaction had.
fn rcpt_sink() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<usize>>>) {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let rec = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let r2 = rec.clone();
    std::thread::spawn(move || {
        for c in l.incoming().take(20) {
            let Ok(c) = c else { return };
            let r2 = r2.clone();
            std::thread::spawn(move || {
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut w = c.try_clone().unwrap();
                let mut r = BufReader::new(c);
                let _ = w.write_all(b"220 sink.test ESMTP\r\n");
                let mut rcpts = 0;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let v = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply = match v.as_str() {
                        "EHLO" => "250-sink.test\r\n250 PIPELINING\r\n",
                        "MAIL" => {
                            rcpts = 0;
                            "250 2.1.0 Ok\r\n"
                        }
                        "RCPT" => {
                            rcpts += 1;
                            "250 2.1.5 Ok\r\n"
                        }
                        "DATA" => {
                            let _ = w.write_all(b"354 go ahead\r\n");
                            loop {
                                let mut l = String::new();
                                if r.read_line(&mut l).unwrap_or(0) == 0 || l == ".\r\n" {
                                    break;
                                }
                            }
                            r2.lock().unwrap().push(rcpts);
                            "250 2.0.0 Ok: queued as SINK\r\n"
                        }
                        "QUIT" => {
                            let _ = w.write_all(b"221 2.0.0 Bye\r\n");
                            break;
                        }
                        _ => "250 2.0.0 Ok\r\n",
                    };
                    if w.write_all(reply.as_bytes()).is_err() {
                        break;
                    }
                }
            });
        }
    });
    (port, rec)
}

/// smtp_destination_recipient_limit = 2: five recipients for one
/// destination travel in transactions of 2, 2 and 1.
#[test]
fn recipient_limit_splits_deliveries() {
    let (port, rec) = rcpt_sink();
    let s = instance(
        "rcptlimit",
        "smtp_destination_recipient_limit = 2",
        &format!("remote.example smtp:[127.0.0.1]:{port}\n"),
    );
    let rcpts: Vec<String> = (1..=5).map(|i| format!("u{i}@remote.example")).collect();
    let mut args = vec!["-f", "sender@test.example"];
    args.extend(rcpts.iter().map(|r| r.as_str()));
    assert_eq!(s.run("sendmail", &args, "Subject: split\n\nbody\n"), 0);
    wait_long(&s, 15, "removed", |l| l.contains(": removed"));
    let log = s.log();
    assert_eq!(
        log.matches("status=sent (250 2.0.0 Ok: queued as SINK)")
            .count(),
        5,
        "{log}"
    );
    let mut got = rec.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, vec![1, 2, 2], "{log}");
}

/// A deferring destination is retried on the backoff schedule, and when
/// maximal_queue_lifetime has passed the message is returned to the
/// sender, with Postfix's log lines.
#[test]
fn retries_then_expires_and_bounces() {
    let s = instance(
        "expire",
        "minimal_backoff_time = 1s\nmaximal_backoff_time = 1s\nqueue_run_delay = 1s\n\
         maximal_queue_lifetime = 4s\nbounce_queue_lifetime = 4s",
        "retry.example retry:4.4.4 try later\ndiscard.example discard:\n",
    );
    assert_eq!(
        s.run(
            "sendmail",
            &["-f", "sender@discard.example", "nobody@retry.example"],
            "Subject: expire\n\nbody\n",
        ),
        0
    );
    // The first attempt defers; the file waits in deferred/ with its time
    // stamp set to the next attempt (now + minimal_backoff_time).
    wait_long(&s, 10, "first deferral", |l| l.contains("(try later)"));
    wait_long(&s, 10, "deferred/", |_| queue_count(&s, "deferred") == 1);
    wait_long(&s, 20, "expiry", |l| l.contains("returned to sender"));
    wait_long(&s, 10, "notice delivered", |l| {
        l.contains("to=<sender@discard.example>") && l.matches(": removed").count() == 2
    });
    let log = s.log();
    let tries = log.matches("status=deferred (try later)").count();
    assert!(tries >= 2, "retried {tries} times:\n{log}");
    let exp = log
        .lines()
        .find(|l| l.contains("returned to sender"))
        .unwrap();
    assert!(exp.contains("postfix/qmgr["), "{exp}");
    let id = line_id(exp).unwrap();
    assert!(
        exp.ends_with(&format!(
            "{id}: from=<sender@discard.example>, status=expired, returned to sender"
        )),
        "{exp}"
    );
    let notice = log
        .lines()
        .find(|l| l.contains("sender non-delivery notification: "))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(notice.contains("postfix/bounce["), "{notice}");
    assert_eq!(line_id(notice), Some(id));
    let new_id = notice.rsplit(": ").next().unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("{new_id}: from=<>, size="))),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("postfix/discard[")
            && l.contains(&format!("{new_id}: to=<sender@discard.example>"))),
        "{log}"
    );
    // The expiry line comes after the last attempt and before "removed".
    let pos = |pat: &str| log.find(pat).unwrap();
    assert!(pos("returned to sender") < pos(&format!("{id}: removed")));
    assert_eq!(queue_count(&s, "deferred"), 0);
    assert_eq!(
        queue_count(&s, "defer"),
        0,
        "defer log removed with the file"
    );
}

/// delay_warning_time: one delay notice ("sender delay notification"),
/// sent through the defer service, and no second one (the W record is
/// marked as sent).
#[test]
fn delay_warning_sent_once() {
    let s = instance(
        "warn",
        "minimal_backoff_time = 1s\nmaximal_backoff_time = 1s\nqueue_run_delay = 1s\n\
         delay_warning_time = 1s",
        "retry.example retry:4.4.4 try later\ndiscard.example discard:\n",
    );
    assert_eq!(
        s.run(
            "sendmail",
            &["-f", "sender@discard.example", "nobody@retry.example"],
            "Subject: warn\n\nbody\n",
        ),
        0
    );
    wait_long(&s, 20, "three attempts", |l| {
        l.matches("(try later)").count() >= 3
    });
    let log = s.log();
    let warn: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("sender delay notification: "))
        .collect();
    assert_eq!(warn.len(), 1, "{log}");
    assert!(warn[0].contains("postfix/bounce["), "{}", warn[0]);
    let first = log.lines().find(|l| l.contains("(queue active)")).unwrap();
    assert_eq!(line_id(warn[0]), line_id(first));
    let new_id = warn[0].rsplit(": ").next().unwrap();
    wait_long(&s, 10, "notice delivered", |l| {
        l.contains(&format!("{new_id}: to=<sender@discard.example>"))
    });
    assert!(!log.contains("returned to sender"), "{log}");
}

/// A fake delivery agent on private/<name>: it answers every request with
/// "deferred" and a hop status (a site failure), and counts requests.
fn fake_dead_agent(s: &Scratch, name: &str) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use rostfix::global::{attr0, deliver_proto};
    use std::io::{BufReader, Write};
    use std::os::unix::fs::PermissionsExt;
    let path = s.dir.join("q/private").join(name);
    let _ = std::fs::remove_file(&path);
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n2 = n.clone();
    std::thread::spawn(move || {
        for c in l.incoming().take(50) {
            let Ok(mut c) = c else { return };
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let _ = c.write_all(&attr0::encode(&[(
                "protocol",
                deliver_proto::PROTO_DELIVER,
            )]));
            let mut r = BufReader::new(c.try_clone().unwrap());
            if deliver_proto::read_request(&mut r).is_err() {
                continue;
            }
            n2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let reply = deliver_proto::Reply {
                hop: deliver_proto::HopStatus {
                    status: "4.4.1".into(),
                    action: "delayed".into(),
                    reason: "connect to dead.example: Connection refused".into(),
                    ..Default::default()
                },
                status: deliver_proto::DEL_STAT_DEFER,
            };
            let _ = c.write_all(&deliver_proto::encode_reply(&reply));
        }
    });
    n
}

/// A destination whose delivery fails at the site level is throttled:
/// mail for it goes to the retry transport with "delivery temporarily
/// suspended: ..." and the agent sees no request until `postqueue -f`
/// revives it.
#[test]
fn dead_destination_defers_through_retry() {
    let s = instance(
        "dead",
        // One failure at window 1 is a whole failed pseudo-cohort.
        "minimal_backoff_time = 300s\nqueue_run_delay = 300s\n\
         fake_initial_destination_concurrency = 1",
        "dead.example fake:dead.example\n",
    );
    let calls = fake_dead_agent(&s, "fake");
    let send = |rcpt: &str| {
        assert_eq!(
            s.run(
                "sendmail",
                &["-f", "sender@test.example", rcpt],
                "Subject: dead\n\nbody\n"
            ),
            0
        )
    };
    send("a@dead.example");
    wait_long(&s, 10, "first attempt", |_| {
        calls.load(std::sync::atomic::Ordering::SeqCst) == 1 && queue_count(&s, "deferred") == 1
    });
    send("b@dead.example");
    wait_long(&s, 10, "retry deferral", |l| {
        l.contains(
            "to=<b@dead.example>, relay=none, delay=",
        ) && l.contains("status=deferred (delivery temporarily suspended: connect to dead.example: Connection refused)")
    });
    wait_long(&s, 10, "both deferred", |_| {
        queue_count(&s, "deferred") == 2
    });
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "{}",
        s.log()
    );
    let log = s.log();
    let line = log
        .lines()
        .find(|l| l.contains("to=<b@dead.example>"))
        .unwrap();
    assert!(
        line.contains("postfix/error[") || line.contains("postfix/retry["),
        "{line}"
    );
    assert!(line.contains(", dsn=4.4.1, "), "{line}");
    // postqueue -f revives dead destinations: the agent is asked again.
    assert_eq!(s.run("postqueue", &["-f"], ""), 0);
    wait_long(&s, 10, "revived", |_| {
        calls.load(std::sync::atomic::Ordering::SeqCst) >= 2
    });
    if std::env::var_os("QMGR_TEST_SHOW_LOG").is_some() {
        eprintln!("{}", s.log());
    }
}

/// Run compat/record-qmgr-expire.sh against Debian's installed Postfix
/// (root only) and return its log; None when that cannot be done.
fn live_expire_log() -> Option<String> {
    if !is_root() || !Path::new("/usr/sbin/postfix").exists() {
        return None;
    }
    let out = std::env::temp_dir().join(format!("rostfix-qmgr-live-{}", std::process::id()));
    std::fs::create_dir_all(&out).ok()?;
    let st = Command::new("sh")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("compat/record-qmgr-expire.sh"))
        .env("OUT", &out)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    let log = std::fs::read_to_string(out.join("expire.maillog")).ok();
    let _ = std::fs::remove_dir_all(&out);
    if !st.success() {
        return None;
    }
    log
}

/// The expiry scenario against Postfix 3.7.11's log
/// (live when root and Debian's postfix are there, else
/// tests/golden/qmgr/expire.maillog; both from compat/record-qmgr-expire.sh): a delay warning after the first attempt,
/// retries every second, expiry after 4 s with the non-delivery notice,
/// and the notices delivered. The distinct log lines must be the same
/// after normalising queue IDs, delays and pids (the number of retries
/// depends on timing).
#[test]
fn expiry_and_warning_log_like_postfix() {
    let live = std::thread::spawn(live_expire_log);
    let s = instance(
        "golden-expire",
        "minimal_backoff_time = 1s\nmaximal_backoff_time = 1s\nqueue_run_delay = 1s\n\
         maximal_queue_lifetime = 4s\nbounce_queue_lifetime = 4s\ndelay_warning_time = 1s",
        &golden("expire.transport"),
    );
    assert_eq!(
        s.run(
            "sendmail",
            &["-f", "sender@discard.example", "nobody@retry.example"],
            "Subject: expire\n\nbody\n",
        ),
        0
    );
    wait_long(&s, 20, "all removed", |l| {
        l.matches(": removed").count() == 3
    });
    // Sizes are blanked: queue IDs (in the Received: header and the
    // notices) vary in length with the queue file's inode number.
    let distinct = |text: &str| {
        let mut v = norm_log(text, true);
        v.dedup();
        v
    };
    let want = live
        .join()
        .unwrap()
        .unwrap_or_else(|| golden("expire.maillog"));
    let got = s.log();
    assert_eq!(distinct(&got), distinct(&want), "ours:\n{got}");
}

/// defer_transports holds mail for a transport; `postqueue -i ID` marks
/// the file (group read bit) so that qmgr delivers it once anyway.
#[test]
fn defer_transports_and_postqueue_i() {
    let s = instance(
        "defxport",
        "defer_transports = fake\nminimal_backoff_time = 300s\nqueue_run_delay = 300s",
        "dead.example fake:dead.example\n",
    );
    let calls = fake_dead_agent(&s, "fake");
    assert_eq!(
        s.run(
            "sendmail",
            &["-f", "sender@test.example", "a@dead.example"],
            "Subject: held\n\nbody\n"
        ),
        0
    );
    wait_long(&s, 10, "deferred transport", |l| {
        l.contains("to=<a@dead.example>, relay=none, delay=")
            && l.contains("status=deferred (deferred transport)")
    });
    wait_long(&s, 10, "deferred/", |_| queue_count(&s, "deferred") == 1);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    let log = s.log();
    let id = line_id(log.lines().find(|l| l.contains("(queue active)")).unwrap())
        .unwrap()
        .to_string();
    assert_eq!(s.run("postqueue", &["-i", &id], ""), 0);
    wait_long(&s, 10, "delivery attempt", |_| {
        calls.load(std::sync::atomic::Ordering::SeqCst) == 1 && queue_count(&s, "deferred") == 1
    });
    // The mark is for one attempt only.
    use std::os::unix::fs::PermissionsExt;
    let mut mode = None;
    for e in std::fs::read_dir(s.dir.join("q/deferred"))
        .unwrap()
        .flatten()
    {
        for f in std::fs::read_dir(e.path()).into_iter().flatten().flatten() {
            mode = Some(f.metadata().unwrap().permissions().mode() & 0o777);
        }
    }
    assert_eq!(mode, Some(0o700), "{}", s.log());
}
