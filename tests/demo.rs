//! `rostfix demo` end to end, as the README tells a newcomer to run it: it
//! must start, accept a message over SMTP on 127.0.0.1, deliver it to the
//! invoking user's mbox under the demo directory with Postfix's log lines
//! on its standard output, and stop cleanly on SIGTERM. The listener's port is moved to a free one
//! by writing the demo's master.cf before the first start (the demo keeps
//! existing files).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MASTER_CF: &str = include_str!("../src/commands/demo/master.cf");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Demo {
    dir: PathBuf,
    child: Option<Child>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new(env!("CARGO_BIN_EXE_rostfix"))
            .arg("postfix")
            .arg("-c")
            .arg(&self.dir)
            .arg("stop")
            .env("MAIL_CONFIG", &self.dir)
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn connect(port: u16, limit: Duration) -> TcpStream {
    let start = Instant::now();
    loop {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            return s;
        }
        assert!(start.elapsed() < limit, "demo never listened on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn reply(r: &mut BufReader<TcpStream>) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        all.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return all;
        }
    }
}

#[test]
fn demo_delivers_mail_and_stops() {
    let dir = std::env::temp_dir().join(format!("rostfix-demo-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let master_cf = MASTER_CF.replace("127.0.0.1:2525 ", &format!("127.0.0.1:{port} "));
    assert_ne!(master_cf, MASTER_CF);
    std::fs::write(dir.join("master.cf"), master_cf).unwrap();
    let exe = env!("CARGO_BIN_EXE_rostfix");
    // The demo is for a non-root user (README). Under root (as in CI), run
    // it as the test user demo (as tests/delivery_faults.rs does: local(8)
    // needs the recipient's home directory to exist), in a directory demo
    // owns, reaching the binary through a copy demo can read.
    let root = unsafe_free_getuid() == 0;
    let (uid, gid) = if root {
        passwd_ids("demo")
    } else {
        (unsafe_free_getuid(), 0)
    };
    let owner = format!("{uid}:{gid}");
    let mut cmd = if root {
        let bin = dir.join("rostfix-bin");
        std::fs::create_dir_all(&bin).unwrap();
        let copy = bin.join("rostfix");
        std::fs::copy(exe, &copy).unwrap();
        for p in [&dir, &bin] {
            Command::new("chown").arg(&owner).arg(p).status().unwrap();
        }
        Command::new("chown")
            .arg(&owner)
            .arg(dir.join("master.cf"))
            .status()
            .unwrap();
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--clear-groups")
            .arg(&copy)
            .arg("demo")
            .arg(&dir);
        c
    } else {
        let mut c = Command::new(exe);
        c.arg("demo").arg(&dir);
        c
    };
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // What the demo prints: its hints, then the log lines (maillog_file is
    // /dev/stdout).
    let out = Arc::new(Mutex::new(String::new()));
    let mut pipe = BufReader::new(child.stdout.take().unwrap());
    let out2 = out.clone();
    std::thread::spawn(move || {
        let mut line = String::new();
        while pipe.read_line(&mut line).unwrap_or(0) > 0 {
            out2.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    let mut demo = Demo {
        dir: dir.clone(),
        child: Some(child),
    };

    let s = connect(port, Duration::from_secs(20));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    assert!(reply(&mut r).starts_with("220 demo.rostfix.invalid ESMTP"));
    for (cmd, want) in [
        ("EHLO client.example", "250"),
        ("MAIL FROM:<a@example.com>", "250 2.1.0 Ok"),
        ("RCPT TO:<you@localhost>", "250 2.1.5 Ok"),
        ("DATA", "354 "),
    ] {
        w.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        let got = reply(&mut r);
        assert!(got.starts_with(want), "{cmd}: {got}");
    }
    w.write_all(b"Subject: hi\r\n\r\nhello\r\n.\r\n").unwrap();
    let got = reply(&mut r);
    assert!(got.starts_with("250 2.0.0 Ok: queued as "), "{got}");
    let id = got.trim_end().rsplit(' ').next().unwrap().to_string();
    w.write_all(b"QUIT\r\n").unwrap();
    assert!(reply(&mut r).starts_with("221 "));

    // Delivered by qmgr and local (luser_relay: any local name) to the
    // invoking user's mbox in the demo's mail/ folder.
    let user = user_name(uid);
    let mbox = dir.join("mail").join(&user);
    let log_has = |want: &[&str]| {
        let out = out.lock().unwrap();
        out.lines().any(|l| want.iter().all(|w| l.contains(w)))
    };
    let output = || out.lock().unwrap().clone();
    let start = Instant::now();
    while !log_has(&["postfix/qmgr[", &format!(": {id}: removed")]) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not delivered; demo output:\n{}",
            output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out_text = output();
    assert!(
        out_text.contains(&format!(
            "mail to other names @localhost is delivered to {}",
            mbox.display()
        )),
        "{out_text}"
    );
    for want in [
        vec![
            "postfix/qmgr[",
            &format!(": {id}: from=<a@example.com>, size="),
            ", nrcpt=1 (queue active)",
        ],
        vec![
            "postfix/local[",
            &format!(
                ": {id}: to=<{user}@demo.rostfix.invalid>, orig_to=<you@localhost>, relay=local, delay="
            ),
            ", dsn=2.0.0, status=sent (delivered to mailbox)",
        ],
    ] {
        assert!(log_has(&want), "{want:?} not in:\n{out_text}");
    }
    let text = std::fs::read_to_string(&mbox).unwrap_or_else(|e| panic!("{}: {e}", mbox.display()));
    assert!(text.starts_with("From a@example.com "), "{text}");
    for want in [
        "Return-Path: <a@example.com>\n",
        "X-Original-To: you@localhost\n",
        &format!(" with ESMTP id {id}\n"),
        "\nSubject: hi\n",
        "\n\nhello\n",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
    // Nothing is left in the queue.
    for q in ["maildrop", "incoming", "active", "deferred", "hold"] {
        let mut stack = vec![dir.join("queue").join(q)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                assert!(p.is_dir(), "left in the queue: {}", p.display());
                stack.push(p);
            }
        }
    }

    // SIGTERM stops master and everything it started.
    let mut child = demo.child.take().unwrap();
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "demo did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "listener still open"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(demo);
}

/// `id ARGS`: a user's name or ids.
fn id(args: &[&str]) -> String {
    let out = Command::new("id").args(args).output().unwrap();
    assert!(out.status.success(), "id {args:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn user_name(uid: u32) -> String {
    id(&["-nu", &uid.to_string()])
}

fn passwd_ids(name: &str) -> (u32, u32) {
    let n = |flag| id(&[flag, name]).parse().unwrap();
    (n("-u"), n("-g"))
}

/// The real uid, from /proc (no unsafe in tests).
fn unsafe_free_getuid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}
