//! The queue listing (`postqueue -p`, `postqueue -j`, `mailq`) against
//! Postfix 3.7.11 on the same scratch queue: incoming, active (`*`),
//! deferred with defer logs (new and old style entries, reasons, duplicate
//! recipients), hold (`!`), forced expiry (`#`), incomplete files, maildrop
//! files, odd addresses, and long queue IDs.
//!
//! With no mail system running, Postfix's postqueue (as root) warns "Mail
//! system is down -- accessing queue directly" and runs its showq program;
//! ours warns the same way and lists the queue itself. Both run here as
//! root. Live when a reference exists; otherwise our output must equal the
//! golden file compat/golden/postqueue/<case>.out (record with
//! `ROSTFIX_RECORD=1 cargo test --test mailq`).

mod common;
use common::queue::*;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn put(qdir: &Path, rel: &str, bytes: &[u8], mode: u32, mtime: u64) {
    let p = qdir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime))
        .unwrap();
}

fn with_time(mut q: QFile, t: &str) -> QFile {
    q.main[1] = rec(b'T', t.as_bytes());
    q
}

fn build_queue(qdir: &Path, long: bool) {
    for d in [
        "maildrop", "incoming", "active", "deferred", "hold", "defer", "saved", "public",
    ] {
        std::fs::create_dir_all(qdir.join(d)).unwrap();
    }
    let id = |n: u64, usec: u64| {
        if long {
            rostfix::global::mail_queue::long_queue_id(1795624000 + n, usec, 1000 + n)
        } else {
            rostfix::global::mail_queue::short_queue_id(usec, 0x9900 + n)
        }
    };
    let qc = rostfix::global::mail_queue::QueueConf {
        queue_directory: qdir.display().to_string(),
        ..Default::default()
    };
    // incoming: plain message.
    let i1 = id(1, 0x11111);
    let q = smtp_message(
        &i1,
        "testuser@mx.example.test",
        &["root@mx.example.test"],
        &[b"hi"],
    );
    put(
        qdir,
        &qc.path("incoming", &i1),
        &with_time(q, "1795624001 5").bytes(),
        0o700,
        1795624001,
    );
    // active, unthrottled bit, two recipients, empty sender.
    let i2 = id(2, 0x22222);
    let q = smtp_message(&i2, "", &["a@example.com", "odd user@example.com"], &[b"x"]);
    put(
        qdir,
        &qc.path("active", &i2),
        &with_time(q, "1795624002 0").bytes(),
        0o740,
        1795624002,
    );
    // deferred with a defer log.
    let i3 = id(3, 0x9A5B5);
    let q = smtp_message(
        &i3,
        "testuser@mx.example.test",
        &[
            "someone@defer.test",
            "other@defer.test",
            "third@example.org",
            "fourth@example.org",
        ],
        &[b"x"],
    );
    put(
        qdir,
        &qc.path("deferred", &i3),
        &with_time(q, "1795624347 1").bytes(),
        0o700,
        1795624347,
    );
    let log = "\n<someone@defer.test>: address resolver failure\nrecipient=someone@defer.test\n\
offset=256\ndsn_orig_rcpt=rfc822;someone@defer.test\nstatus=4.3.0\naction=delayed\n\
reason=address resolver failure\n\nrecipient=other@defer.test\nstatus=4.4.1\n\
reason=connect to defer.test[192.0.2.1]:25: Connection timed out, a very long reason that is longer than seventy-six characters\n\n\
<third@example.org>: old style only\n\nrecipient=\nreason=\n\nbogus line\nrecipient=x@y\nunknownkey=1\n\n";
    put(
        qdir,
        &qc.path("defer", &i3),
        log.as_bytes(),
        0o600,
        1795624347,
    );
    // hold, forced expire.
    let i4 = id(4, 0x90742);
    let q = smtp_message(
        &i4,
        "caf\u{e9}@example.com",
        &["root@mx.example.test"],
        &[b"x"],
    );
    put(
        qdir,
        &qc.path("hold", &i4),
        &with_time(q, "1795624322 582767").bytes(),
        0o710,
        1795624322,
    );
    // deferred, forced expire, no T record: the file's mtime is used.
    let i5 = id(5, 0x9A5B6);
    let mut q = smtp_message(&i5, "s@x", &["r@x"], &[b"x"]);
    q.main.remove(1);
    put(
        qdir,
        &qc.path("deferred", &i5),
        &q.bytes(),
        0o710,
        1795620000,
    );
    // incomplete (0600): not listed.
    let i6 = id(6, 0x11112);
    let q = smtp_message(&i6, "s@x", &["r@x"], &[b"x"]);
    put(
        qdir,
        &qc.path("incoming", &i6),
        &q.bytes(),
        0o600,
        1795624000,
    );
    // maildrop file as postdrop writes it (no SIZE record).
    let i7 = id(7, 0x77777);
    let md = QFile {
        main: vec![
            rec(b'T', b"1795624100 0"),
            rec(b'F', b"Root"),
            rec(b'S', b"root"),
            rec(b'R', b"user@example.com"),
            rec(b'M', b""),
            rec(b'N', b"Subject: x"),
            rec(b'X', b""),
            rec(b'E', b""),
        ],
        heap: Vec::new(),
        raw_size: false,
    };
    put(
        qdir,
        &format!("maildrop/{i7}"),
        &md.bytes(),
        0o700,
        1795624100,
    );
    // bogus file names are skipped.
    put(qdir, "maildrop/608487.6650", b"junk", 0o700, 1795624100);
    // malformed size record: the file size is used.
    let i8 = id(8, 0x88888);
    let mut q = smtp_message(&i8, "s@x", &["r@x"], &[b"x"]);
    q.main[0] = rec(b'C', b"12x 3");
    q.raw_size = true;
    put(
        qdir,
        &qc.path("hold", &i8),
        &with_time(q, "1795624200 0").bytes(),
        0o700,
        1795624200,
    );
}

/// Give the queue to mail_owner: Postfix's showq reads it with that
/// user's rights.
fn chown_tree(dir: &Path) {
    let (user, _) = owner_and_group();
    let uid = rostfix::sys::ids::user_uid(&user).expect("mail_owner uid");
    std::os::unix::fs::lchown(dir, Some(uid), None).unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            chown_tree(&p);
        } else {
            std::os::unix::fs::lchown(&p, Some(uid), None).unwrap();
        }
    }
}

fn compare(tag: &str, long: bool) {
    if rostfix::sys::ids::geteuid() != 0 {
        eprintln!("SKIP {tag}: Postfix's postqueue lists a stopped queue only for root");
        return;
    }
    let s = Scratch::new(tag);
    let qdir = s.path("q");
    build_queue(&qdir, long);
    let extra = if long {
        "enable_long_queue_ids = yes\n"
    } else {
        ""
    };
    write_conf(&s.path("conf"), &qdir.display().to_string(), extra);
    chown_tree(&qdir);
    let conf = s.path("conf").display().to_string();
    let live = reference().is_some();
    if !live {
        eprintln!("SKIP live part of {tag}: no Postfix 3.7.11 reference; golden only");
    }
    let golden_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("compat/golden/postqueue")
        .join(format!("{tag}.out"));
    let mut record = String::new();
    let mut ours_all = String::new();
    for flag in ["-p", "-j"] {
        let args = vec!["-c".to_string(), conf.clone(), flag.to_string()];
        let ours = run(Impl::Ours, "postqueue", &args, None, &s.0);
        ours_all.push_str(&format!("=== postqueue {flag}\n{}", ours.text()));
        if live {
            let theirs = run(Impl::Postfix, "postqueue", &args, None, &s.0);
            assert_eq!(
                ours.text(),
                theirs.text(),
                "postqueue {flag} differs\n=== ours\n{}=== postfix\n{}",
                ours.text(),
                theirs.text()
            );
            record.push_str(&format!("=== postqueue {flag}\n{}", theirs.text()));
        }
    }
    // mailq (sendmail -bp) runs $command_directory/postqueue -p.
    let bin = s.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_rostfix"), bin.join("postqueue")).unwrap();
    let text = std::fs::read_to_string(s.path("conf/main.cf")).unwrap();
    std::fs::write(
        s.path("conf/main.cf"),
        format!("{text}command_directory = {}\n", bin.display()),
    )
    .unwrap();
    let mq = run(
        Impl::Ours,
        "mailq",
        &["-C".into(), conf.clone()],
        None,
        &s.0,
    );
    let p = run(
        Impl::Ours,
        "postqueue",
        &["-c".into(), conf.clone(), "-p".into()],
        None,
        &s.0,
    );
    assert_eq!(mq, p);
    if std::env::var_os("ROSTFIX_RECORD").is_some() && live {
        std::fs::create_dir_all(golden_path.parent().unwrap()).unwrap();
        std::fs::write(&golden_path, &record).unwrap();
    }
    let golden = std::fs::read_to_string(&golden_path).expect("golden file");
    if live {
        assert_eq!(ours_all, golden);
    } else {
        // Directory order depends on the file system: compare messages as
        // a multiset when the golden file was made elsewhere.
        assert_eq!(unordered(&ours_all), unordered(&golden));
    }
}

/// The listing with its message blocks (and JSON lines) sorted.
fn unordered(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .split("\n\n")
        .flat_map(|b| {
            b.split('\n')
                .filter(|l| l.starts_with('{'))
                .map(String::from)
                .chain(std::iter::once(
                    b.lines()
                        .filter(|l| !l.starts_with('{'))
                        .collect::<Vec<_>>()
                        .join("\n"),
                ))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn listing_short_ids() {
    compare("short-ids", false);
}

#[test]
fn listing_long_ids() {
    compare("long-ids", true);
}

#[test]
fn empty_queue_and_errors() {
    if rostfix::sys::ids::geteuid() != 0 {
        eprintln!("SKIP empty_queue_and_errors: needs root as Postfix's postqueue does");
        return;
    }
    let s = Scratch::new("pq-empty");
    let qdir = s.path("q");
    for d in [
        "maildrop", "incoming", "active", "deferred", "hold", "public",
    ] {
        std::fs::create_dir_all(qdir.join(d)).unwrap();
    }
    write_conf(&s.path("conf"), &qdir.display().to_string(), "");
    let conf = s.path("conf").display().to_string();
    let live = reference().is_some();
    for extra in [
        vec!["-p"],
        vec!["-j"],
        vec!["-f"],
        vec!["-i", "ABC"],
        vec!["-i", "a.b"],
        vec!["-s", "example.com"],
        vec!["-s", "bad..x"],
        vec!["-p", "-j"],
        vec![],
        vec!["-x"],
        vec!["-p", "extra"],
    ] {
        let mut args = vec!["-c".to_string(), conf.clone()];
        args.extend(extra.iter().map(|a| a.to_string()));
        let ours = run(Impl::Ours, "postqueue", &args, None, &s.0);
        if live {
            let theirs = run(Impl::Postfix, "postqueue", &args, None, &s.0);
            assert_eq!(ours.text(), theirs.text(), "postqueue {extra:?}");
        }
        if extra == ["-p"] {
            assert_eq!(ours.stdout, b"Mail queue is empty\n");
        }
        if extra.is_empty() {
            assert_eq!(ours.status, 69);
        }
    }
}

/// The listing through `public/showq` served by our showq daemon under our
/// master equals the direct listing, for our postqueue and (when the
/// reference exists) for Postfix's postqueue as a client of our showq.
#[test]
fn listing_through_our_showq_service() {
    if rostfix::sys::ids::geteuid() != 0 {
        eprintln!("SKIP listing_through_our_showq_service: needs root (master, chown)");
        return;
    }
    let s = Scratch::new("showq-sock");
    let qdir = s.path("q");
    build_queue(&qdir, false);
    for d in ["public", "private", "pid"] {
        std::fs::create_dir_all(qdir.join(d)).unwrap();
    }
    let bin = s.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for p in ["master", "showq", "postlogd"] {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_rostfix"), bin.join(p)).unwrap();
    }
    let d = s.s();
    write_conf(
        &s.path("conf"),
        &qdir.display().to_string(),
        &format!(
            "data_directory = {d}/data\nmaillog_file = {d}/maillog\n\
maillog_file_prefixes = {d}\ninet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n"
        ),
    );
    let main_cf = s.path("conf/main.cf");
    let text: String = std::fs::read_to_string(&main_cf)
        .unwrap()
        .lines()
        .map(|l| {
            if l.starts_with("daemon_directory") {
                format!("daemon_directory = {d}/bin\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&main_cf, text).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&main_cf)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
        .unwrap();
    std::fs::create_dir_all(s.path("data")).unwrap();
    chown_tree(&qdir);
    chown_tree(&s.path("data"));
    std::fs::set_permissions(&s.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let conf = s.path("conf").display().to_string();
    let direct: Vec<Outcome> = ["-p", "-j"]
        .iter()
        .map(|f| {
            let args = vec!["-c".to_string(), conf.clone(), f.to_string()];
            run(Impl::Ours, "postqueue", &args, None, &s.0)
        })
        .collect();
    assert!(
        String::from_utf8_lossy(&direct[0].stderr).contains("Mail system is down"),
        "{}",
        direct[0].text()
    );
    std::fs::write(
        s.path("conf/master.cf"),
        "postlog unix-dgram n - n - 1 postlogd\nshowq unix n - n - - showq\n",
    )
    .unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(s.path("conf/master.cf"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let mut master = std::process::Command::new(bin.join("master"))
        .args(["-d", "-c", &conf])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !qdir.join("public/showq").exists() && start.elapsed() < std::time::Duration::from_secs(5)
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut impls = vec![Impl::Ours];
    if reference().is_some() {
        impls.push(Impl::Postfix);
    }
    let mut failure = None;
    'outer: for which in impls {
        for (k, f) in ["-p", "-j"].iter().enumerate() {
            let args = vec!["-c".to_string(), conf.clone(), f.to_string()];
            let got = run(which, "postqueue", &args, None, &s.0);
            if got.stdout != direct[k].stdout || !got.stderr.is_empty() || got.status != 0 {
                failure = Some(format!(
                    "{which:?} postqueue {f} through showq\n{}=== direct\n{}=== log\n{}",
                    got.text(),
                    direct[k].text(),
                    std::fs::read_to_string(s.path("maillog")).unwrap_or_default()
                ));
                break 'outer;
            }
        }
    }
    let _ = master.kill();
    let _ = master.wait();
    if let Ok(pid) = std::fs::read_to_string(qdir.join("pid/master.pid"))
        && let Ok(pid) = pid.trim().parse::<i32>()
    {
        // SAFETY: kill has no memory arguments; the pid is our master's.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    if let Some(f) = failure {
        panic!("{f}");
    }
}
