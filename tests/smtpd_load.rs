//! Load: 500 concurrent SMTP sessions from Postfix's own smtp-source
//! against a running instance of ours (`postfix -c DIR start`: master,
//! smtpd with cleanup inside, postlogd), with every message put on HOLD by
//! an access rule so that nothing is delivered.
//!
//! Asserts what an operator would check after such a burst: smtp-source
//! saw no error reply (it exits non-zero on any non-2xx reply or lost
//! connection), every accepted message is a complete file in hold/,
//! master never ran more smtpd processes than the master.cf process limit
//! (sampled from /proc while the burst runs), and master's and the whole
//! instance's memory stayed bounded (sampled likewise).
//!
//! Needs Debian's smtp-source (package postfix; CI installs it). Without
//! it the test fails, unless ROSTFIX_NO_SMTP_SOURCE=1 says to skip it.

mod common;
use common::instance::{Instance, Side};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const SESSIONS: usize = 500;
const MESSAGES: usize = 1000;
const PROC_LIMIT: usize = 40;
/// Bounds on resident memory, in kB: master, one smtpd, the instance.
const MASTER_RSS_MAX: u64 = 32 * 1024;
const SMTPD_RSS_MAX: u64 = 64 * 1024;
const TOTAL_RSS_MAX: u64 = 1024 * 1024;

fn smtp_source() -> Option<String> {
    if let Ok(p) = std::env::var("SMTP_SOURCE") {
        return Some(p);
    }
    ["/usr/sbin/smtp-source", "/usr/bin/smtp-source"]
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| p.to_string())
}

/// (pid, parent pid, command name, RSS in kB) of every process.
fn processes() -> Vec<(i32, i32, String, u64)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let ppid = field("PPid:").parse().unwrap_or(0);
        let rss = field("VmRSS:")
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        out.push((pid, ppid, field("Name:"), rss));
    }
    out
}

#[derive(Default, Debug)]
struct Peak {
    smtpd: usize,
    master_rss: u64,
    smtpd_rss: u64,
    total_rss: u64,
    samples: usize,
}

fn sample(master: i32, peak: &mut Peak) {
    let ps = processes();
    let children: Vec<_> = ps.iter().filter(|p| p.1 == master).collect();
    let smtpd = children.iter().filter(|p| p.2 == "smtpd").count();
    let master_rss = ps.iter().find(|p| p.0 == master).map_or(0, |p| p.3);
    let total = master_rss + children.iter().map(|p| p.3).sum::<u64>();
    peak.smtpd = peak.smtpd.max(smtpd);
    peak.master_rss = peak.master_rss.max(master_rss);
    peak.smtpd_rss = peak.smtpd_rss.max(
        children
            .iter()
            .filter(|p| p.2 == "smtpd")
            .map(|p| p.3)
            .max()
            .unwrap_or(0),
    );
    peak.total_rss = peak.total_rss.max(total);
    peak.samples += 1;
}

fn complete_files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                use std::os::unix::fs::PermissionsExt;
                if std::fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o700 == 0o700) {
                    n += 1;
                }
            }
        }
    }
    n
}

#[test]
fn five_hundred_concurrent_sessions() {
    let Some(source) = smtp_source() else {
        if std::env::var_os("ROSTFIX_NO_SMTP_SOURCE").is_some() {
            eprintln!("smtpd_load: skipped (ROSTFIX_NO_SMTP_SOURCE set, no smtp-source)");
            return;
        }
        panic!(
            "smtp-source not found (install Debian's postfix package, set SMTP_SOURCE=path, \
             or set ROSTFIX_NO_SMTP_SOURCE=1 to skip this test)"
        );
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("rostfix-smtpd-load-{}", std::process::id()));
    let extra = format!(
        "mydestination = $myhostname, localhost\n\
         alias_maps =\n\
         local_recipient_maps =\n\
         smtpd_client_restrictions = check_client_access cidr:{}/conf/access\n",
        dir.display()
    );
    let mut inst = Instance::new(
        Side::Ours,
        &dir,
        &extra,
        &[("access", "127.0.0.0/8 HOLD\n")],
    );
    let _ = std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_rostfix"), dir.join("bin/smtpd"));
    std::fs::write(
        dir.join("conf/master.cf"),
        format!(
            "127.0.0.1:{port} inet n - n - {PROC_LIMIT} smtpd\n\
             postlog unix-dgram n - n - 1 postlogd\n\
             cleanup unix n - n - 0 cleanup\n"
        ),
    )
    .unwrap();
    inst.start();
    let master: i32 = std::fs::read_to_string(dir.join("q/pid/master.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = Peak::default();
            while !done.load(Ordering::Relaxed) {
                sample(master, &mut peak);
                std::thread::sleep(Duration::from_millis(50));
            }
            sample(master, &mut peak);
            peak
        })
    };
    let start = Instant::now();
    let mut child = Command::new(&source)
        .args([
            "-s",
            &SESSIONS.to_string(),
            "-m",
            &MESSAGES.to_string(),
            "-l",
            "2048",
            "-f",
            "load@test.example",
            "-t",
            "rcpt@test.example",
            &format!("127.0.0.1:{port}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    // Queue files are complete before their 250 reply.
    let held = complete_files(&dir.join("q/hold"));
    done.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    // postlogd writes what the daemons logged, a little later.
    let t = Instant::now();
    let mut log = inst.log();
    while log.matches(": client=").count() < held && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
        log = inst.log();
    }
    let tail: String = log
        .lines()
        .filter(|l| l.contains("warning") || l.contains("fatal") || l.contains("panic"))
        .take(20)
        .collect::<Vec<_>>()
        .join("\n");
    let status = status.unwrap_or_else(|| {
        panic!("smtp-source did not finish in 90 s; {held} held; log problems:\n{tail}")
    });
    assert!(
        status.success(),
        "smtp-source reported an error ({status}): {err}\nlog problems:\n{tail}"
    );
    assert_eq!(held, MESSAGES, "messages in hold/; log problems:\n{tail}");
    assert_eq!(complete_files(&dir.join("q/incoming")), 0);
    assert!(peak.samples > 1, "{peak:?}");
    assert!(peak.smtpd >= 1, "no smtpd seen while sampling: {peak:?}");
    assert!(
        peak.smtpd <= PROC_LIMIT,
        "more smtpd processes than the process limit {PROC_LIMIT}: {peak:?}"
    );
    assert!(peak.master_rss <= MASTER_RSS_MAX, "master RSS: {peak:?}");
    assert!(peak.smtpd_rss <= SMTPD_RSS_MAX, "smtpd RSS: {peak:?}");
    assert!(peak.total_rss <= TOTAL_RSS_MAX, "total RSS: {peak:?}");
    // Every accepted message was logged as Postfix logs it.
    assert_eq!(
        log.matches(": client=localhost[127.0.0.1]\n").count(),
        MESSAGES,
        "client= lines"
    );
    assert!(
        !log.contains(": fatal: ") && !log.contains(": panic: "),
        "{tail}"
    );
    eprintln!(
        "smtpd_load: {MESSAGES} messages in {:.1} s, {peak:?}",
        start.elapsed().as_secs_f64()
    );
}
