//! The differential transcript test that judges smtpd (issue #5, "How it is judged").
//!
//! The dialogues in `compat/smtpd/dialogues/*.txt` (format: `compat/smtpd/dialogues/README.md`)
//! run against a whole Postfix 3.7.11 and a whole rostfix, each started in a scratch folder with
//! the same main.cf and the same master.cf: one smtpd inet service per dialogue on its own
//! 127.0.0.1 port, with the dialogue's `-o` overrides and `syslog_name = postfix/NAME` (so that
//! each dialogue's log lines can be told apart), and, when a dialogue sets cleanup parameters,
//! its own cleanup service. No qmgr runs: accepted mail stays in incoming/ or hold/. Clients
//! connect from 127.0.0.2 (mynetworks = 127.0.0.1/32) unless the dialogue says otherwise.
//!
//! Compared, per dialogue, after normalising queue IDs, dates and pids: (a) every reply byte;
//! (b) each accepted message's queue file under Postfix's `postcat`; (c) the dialogue's log
//! lines (smtpd and its cleanup). Then pflogsumm's report of both whole logs.
//!
//! Modes: live when the reference (ROSTFIX_REFERENCE or ~/.cache/rostfix/postfix-3.7.11) exists
//! and we are root; otherwise golden: rostfix's transcripts must equal those recorded from
//! Postfix in `compat/golden/smtpd/NAME.txt` (ROSTFIX_RECORD=1 rewrites them, see
//! `compat/record-smtpd-dialogues.sh`). Known differences (`compat/smtpd/known-differences.txt`,
//! one `NAME reason` per line) are reported but do not fail; every other difference fails, and so
//! does a known difference that went away (so the list stays true).
//! ROSTFIX_DIALOGUE=sub1,sub2 runs only the dialogues whose name contains one of them.

mod common;

use common::instance::{Instance, Side, is_root};
use common::queue::reference;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One step of a dialogue.
#[derive(Clone, Debug)]
enum Step {
    /// Bytes to send; `wait` says whether to wait for the reply afterwards.
    Send { bytes: Vec<u8>, wait: bool },
    /// Wait this long for whatever the server still says.
    Pause(Duration),
}

#[derive(Clone, Debug, Default)]
struct Dialogue {
    name: String,
    smtpd: Vec<(String, String)>,
    cleanup: Vec<(String, String)>,
    files: Vec<(String, String)>,
    from: String,
    steps: Vec<Step>,
}

/// `\r`, `\n`, `\t`, `\\` and `\xNN` escapes.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'r' => out.push(b'\r'),
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'\\' => out.push(b'\\'),
                b'x' if i + 4 <= b.len() => {
                    let h = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
                    out.push(u8::from_str_radix(h, 16).expect("bad \\x escape"));
                    i += 4;
                    continue;
                }
                c => panic!("bad escape \\{}", c as char),
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn parse_setting(s: &str) -> (String, String) {
    let (k, v) = s
        .split_once('=')
        .unwrap_or_else(|| panic!("bad setting {s}"));
    (k.trim().to_string(), v.trim().to_string())
}

fn parse_dialogues(text: &str, file: &str) -> Vec<Dialogue> {
    let mut out: Vec<Dialogue> = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix("=== ") {
            out.push(Dialogue {
                name: name.trim().to_string(),
                from: "127.0.0.2".into(),
                ..Default::default()
            });
            continue;
        }
        let d = out
            .last_mut()
            .unwrap_or_else(|| panic!("{file}: line before the first ===: {line}"));
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        match tag {
            "-o" => d.smtpd.push(parse_setting(rest)),
            "-c" => d.cleanup.push(parse_setting(rest)),
            "from" => d.from = rest.trim().to_string(),
            "file" => {
                let mut body = String::new();
                for l in lines.by_ref() {
                    if l == "end" {
                        break;
                    }
                    body.push_str(l);
                    body.push('\n');
                }
                d.files.push((rest.trim().to_string(), body));
            }
            "C:" | "P:" => {
                let mut b = rest.as_bytes().to_vec();
                b.extend_from_slice(b"\r\n");
                d.steps.push(Step::Send {
                    bytes: b,
                    wait: tag == "C:",
                });
            }
            "R:" | "Q:" => d.steps.push(Step::Send {
                bytes: unescape(rest),
                wait: tag == "R:",
            }),
            "W:" => d.steps.push(Step::Pause(Duration::from_millis(
                rest.trim().parse().unwrap_or(1200),
            ))),
            _ if line == "C:" || line == "P:" => d.steps.push(Step::Send {
                bytes: b"\r\n".to_vec(),
                wait: line == "C:",
            }),
            _ => panic!("{file}: bad line: {line}"),
        }
    }
    out
}

fn dialogues() -> Vec<Dialogue> {
    let dir = Path::new(ROOT).join("compat/smtpd/dialogues");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    names.sort();
    let mut all = Vec::new();
    for p in names {
        let t = std::fs::read_to_string(&p).unwrap();
        all.extend(parse_dialogues(&t, &p.display().to_string()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for d in &all {
        assert!(seen.insert(d.name.clone()), "duplicate dialogue {}", d.name);
        assert!(
            d.name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
            "bad dialogue name {}",
            d.name
        );
    }
    all
}

/// Does `buf` end with a complete final reply line (`NNN text\r\n`)?
fn complete(buf: &[u8]) -> bool {
    if !buf.ends_with(b"\r\n") {
        return false;
    }
    let body = &buf[..buf.len() - 2];
    let start = body
        .windows(2)
        .rposition(|w| w == b"\r\n")
        .map_or(0, |p| p + 2);
    let l = &body[start..];
    l.len() >= 3 && l[..3].iter().all(u8::is_ascii_digit) && (l.len() == 3 || l[3] == b' ')
}

/// Run one dialogue against `port`: every byte the server sent.
fn talk(d: &Dialogue, port: u16) -> Vec<u8> {
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut s: TcpStream = rostfix::sys::net::connect_from(d.from.parse().unwrap(), to).unwrap();
    let mut out = Vec::new();
    let mut closed = false;
    // Read until a complete reply arrived and the line stayed quiet for a
    // moment, or `max` passed.
    let drain = |s: &mut TcpStream, out: &mut Vec<u8>, closed: &mut bool, max: Duration| {
        let start = out.len();
        let t = Instant::now();
        let mut buf = [0u8; 65536];
        while !*closed && t.elapsed() < max {
            let idle = if out.len() > start && complete(out) {
                Duration::from_millis(60)
            } else {
                max.saturating_sub(t.elapsed())
                    .max(Duration::from_millis(5))
            };
            s.set_read_timeout(Some(idle)).unwrap();
            match s.read(&mut buf) {
                Ok(0) => *closed = true,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    if out.len() > start && complete(out) {
                        return;
                    }
                }
                Err(_) => *closed = true,
            }
        }
    };
    drain(&mut s, &mut out, &mut closed, Duration::from_secs(5));
    let mut pending: Vec<u8> = Vec::new();
    for step in &d.steps {
        if closed {
            break;
        }
        match step {
            Step::Send { bytes, wait } => {
                pending.extend_from_slice(bytes);
                if *wait {
                    if s.write_all(&pending).is_err() {
                        break;
                    }
                    pending.clear();
                    drain(&mut s, &mut out, &mut closed, Duration::from_secs(5));
                }
            }
            Step::Pause(t) => {
                if !pending.is_empty() {
                    let _ = s.write_all(&pending);
                    pending.clear();
                }
                let t0 = Instant::now();
                while t0.elapsed() < *t && !closed {
                    drain(&mut s, &mut out, &mut closed, *t - t0.elapsed());
                }
            }
        }
    }
    if !closed && !pending.is_empty() {
        let _ = s.write_all(&pending);
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
    let t = Instant::now();
    while !closed && t.elapsed() < Duration::from_secs(5) {
        drain(&mut s, &mut out, &mut closed, Duration::from_secs(5));
    }
    out
}

/// The main.cf lines common to both sides.
fn main_cf(conf: &str) -> String {
    format!(
        "mynetworks = 127.0.0.1/32\n\
         smtpd_error_sleep_time = 0\n\
         smtpd_client_connection_count_limit = 0\n\
         smtpd_timeout = 10s\n\
         mydestination = test.example, localhost, $myhostname\n\
         local_recipient_maps = texthash:{conf}/local_users\n\
         alias_maps =\n\
         relay_domains = relay.example\n\
         relay_recipient_maps =\n\
         virtual_alias_domains = valias.example\n\
         virtual_alias_maps = texthash:{conf}/virtual_alias\n\
         virtual_mailbox_domains = vmbox.example\n\
         virtual_mailbox_maps = texthash:{conf}/virtual_mailbox\n\
         smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n"
    )
}

const COMMON_FILES: &[(&str, &str)] = &[
    ("local_users", "alice x\nbob x\npostmaster x\n"),
    (
        "virtual_alias",
        "info@valias.example alice@test.example\nsales@valias.example bob@test.example\n",
    ),
    (
        "virtual_mailbox",
        "joe@vmbox.example joe/\nann@vmbox.example ann/\n",
    ),
];

fn brace(k: &str, v: &str) -> String {
    if v.is_empty() || v.contains(' ') || v.contains('{') || v.contains(',') {
        format!(" -o {{ {k} = {v} }}")
    } else {
        format!(" -o {k}={v}")
    }
}

/// master.cf services for these dialogues on these ports; `conf` replaces `{conf}`.
fn services(ds: &[Dialogue], ports: &[u16], conf: &str) -> String {
    let mut m = String::new();
    for (d, port) in ds.iter().zip(ports) {
        let mut line = format!(
            "127.0.0.1:{port} inet n - n - - smtpd -o syslog_name=postfix/{}",
            d.name
        );
        if !d.cleanup.is_empty() {
            line.push_str(&format!(" -o cleanup_service_name=cl-{}", d.name));
        }
        for (k, v) in &d.smtpd {
            line.push_str(&brace(k, &v.replace("{conf}", conf)));
        }
        m.push_str(&line);
        m.push('\n');
        if !d.cleanup.is_empty() {
            let mut c = format!(
                "cl-{} unix n - n - 0 cleanup -o syslog_name=postfix/{}",
                d.name, d.name
            );
            for (k, v) in &d.cleanup {
                c.push_str(&brace(k, &v.replace("{conf}", conf)));
            }
            m.push_str(&c);
            m.push('\n');
        }
    }
    m
}

fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    ls.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

fn start(side: Side, dir: &Path, ds: &[Dialogue], ports: &[u16]) -> Instance {
    let conf = dir.join("conf").display().to_string();
    let mut files: Vec<(String, String)> = COMMON_FILES
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    for d in ds {
        for (n, t) in &d.files {
            files.push((format!("{}-{}", d.name, n), t.replace("{conf}", &conf)));
        }
    }
    let fr: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    // Table names in settings: {conf}/NAME-file.
    let ds2: Vec<Dialogue> = ds
        .iter()
        .map(|d| {
            let mut d = d.clone();
            let fix = |v: &String| v.replace("{t}/", &format!("{conf}/{}-", d.name));
            d.smtpd = d.smtpd.iter().map(|(k, v)| (k.clone(), fix(v))).collect();
            d.cleanup = d.cleanup.iter().map(|(k, v)| (k.clone(), fix(v))).collect();
            d
        })
        .collect();
    // The same master.cf on both sides: postlogd, pickup, cleanup,
    // trivial-rewrite and the dialogues' smtpd (and cleanup) services.
    let master = format!(
        "postlog unix-dgram n - n - 1 postlogd\n\
         pickup unix n - n 60 1 pickup\n\
         cleanup unix n - n - 0 cleanup\n\
         rewrite unix - - n - - trivial-rewrite\n{}",
        services(&ds2, ports, &conf)
    );
    let mut i = Instance::with_master(side, dir, &main_cf(&conf), Some(&master), &fr);
    i.start();
    i
}

/// Everything one run of a dialogue produced, normalised.
fn transcript(inst: &Instance, d: &Dialogue, replies: &[u8], postcat: &Postcat) -> String {
    let conf = inst.conf();
    let tag = format!(" postfix/{}/", d.name);
    // Log lines of this dialogue; wait for its smtpd's disconnect line.
    let t = Instant::now();
    let log = loop {
        // Postfix's cleanup warns when it cannot wake up the qmgr that
        // these instances do not run; ours does not: not compared.
        let log = inst
            .log()
            .lines()
            .filter(|l| !l.contains("unable to look up public/qmgr"))
            .filter_map(|l| l.split_once(&tag).map(|(_, r)| r.to_string()))
            .collect::<Vec<_>>();
        if log.iter().any(|l| l.contains(": disconnect from "))
            || t.elapsed() > Duration::from_secs(6)
        {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Queue IDs, in order of appearance.
    let mut qids: Vec<String> = Vec::new();
    let text = String::from_utf8_lossy(replies).into_owned();
    let mut note = |q: &str| {
        if q.len() >= 6
            && q != "NOQUEUE"
            && q.bytes().all(|c| c.is_ascii_alphanumeric())
            && q.bytes().any(|c| c.is_ascii_digit())
            && !qids.iter().any(|x| x == q)
        {
            qids.push(q.to_string());
        }
    };
    for l in &log {
        // "smtpd[PID]: QID: client=..." / "cleanup[PID]: QID: ..."
        if let Some((_, r)) = l.split_once("]: ")
            && let Some((q, _)) = r.split_once(": ")
        {
            note(q);
        }
    }
    let mut queued = Vec::new();
    for (i, _) in text.match_indices("queued as ") {
        let q: String = text[i + 10..]
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        note(&q);
        queued.push(q);
    }
    let mut out = String::new();
    out.push_str("--- replies\n");
    out.push_str(&escape_replies(replies));
    out.push_str("--- log\n");
    for l in &log {
        let l = match l.find('[').zip(l.find("]: ")) {
            Some((a, b)) if a < b => format!("{}{}", &l[..a], &l[b + 1..]),
            _ => l.clone(),
        };
        out.push_str(&l);
        out.push('\n');
    }
    for q in &queued {
        for sub in ["incoming", "hold", "active", "deferred"] {
            let p = inst.queue().join(sub).join(q);
            if p.exists() {
                out.push_str(&format!("--- queue file {sub}\n"));
                out.push_str(&postcat.run(&p, &conf));
            }
        }
    }
    normalise(&out, &qids, &conf, &inst.dir.display().to_string())
}

fn escape_replies(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b {
        match c {
            b'\n' => s.push_str("\\n\n"),
            b'\r' => s.push_str("\\r"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

fn normalise(s: &str, qids: &[String], conf: &str, dir: &str) -> String {
    let mut s = s.replace(conf, "{conf}").replace(dir, "{dir}");
    // Longest first, so that no ID is a prefix of a longer one's mask.
    let mut order: Vec<(usize, &String)> = qids.iter().enumerate().collect();
    order.sort_by_key(|(_, q)| std::cmp::Reverse(q.len()));
    for (i, q) in order.iter() {
        s = replace_word(&s, q, &format!("QID{}", i + 1));
    }
    let mut out = String::new();
    for line in s.lines() {
        // A header cut at header_size_limit may end in the first bytes of a queue ID
        // (the Received: header's "id QUEUEID"): mask the prefix, keeping its length.
        let mut line = line.to_string();
        for (i, q) in order.iter() {
            let cut = (5..q.len()).rev().find(|&n| {
                line.ends_with(&q[..n])
                    && !line[..line.len() - n]
                        .chars()
                        .last()
                        .is_some_and(|c| c.is_ascii_alphanumeric())
            });
            if let Some(n) = cut {
                line = format!("{}QID{}[..{n}]", &line[..line.len() - n], i + 1);
                break;
            }
        }
        out.push_str(&mask_line(&line));
        out.push('\n');
    }
    out
}

/// Replace `w` where it is not part of a longer alphanumeric word.
fn replace_word(s: &str, w: &str, by: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(w) {
        let before = rest[..i].chars().last();
        let after = rest[i + w.len()..].chars().next();
        out.push_str(&rest[..i]);
        if before.is_some_and(|c| c.is_ascii_alphanumeric())
            || after.is_some_and(|c| c.is_ascii_alphanumeric())
        {
            out.push_str(w);
        } else {
            out.push_str(by);
        }
        rest = &rest[i + w.len()..];
    }
    out.push_str(rest);
    out
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Dates ("Wed, 25 Nov 2026 20:46:54 +0000 (UTC)", "Wed Nov 25 20:46:54 2026"), times and the
/// time-dependent postcat fields.
fn mask_line(l: &str) -> String {
    for f in [
        "message_arrival_time: ",
        "create_time: ",
        "named_attribute: create_time=",
        "named_attribute: client_port=",
        "named_attribute: log_client_port=",
        "named_attribute: server_port=",
    ] {
        if l.starts_with(f) {
            return format!("{f}DATE");
        }
    }
    if let Some(r) = l.strip_prefix("message_size: ") {
        // size (varies with the queue ID's length in Received:), data offset: masked.
        let f: Vec<&str> = r.split_whitespace().collect();
        return format!(
            "message_size: SIZE OFF {}",
            f.get(2..).unwrap_or(&[]).join(" ")
        );
    }
    let mut out = l.to_string();
    // The free space of the queue file system changes from moment to moment.
    if let Some(i) = out.find("not enough free space in mail queue: ")
        && let Some(j) = out[i..].find(" bytes")
    {
        out.replace_range(i + 37..i + j, "N");
    }
    if let Some(i) = out.find("Message-Id: <")
        && out.len() > i + 27
        && out[i + 13..i + 27].bytes().all(|c| c.is_ascii_digit())
    {
        out.replace_range(i + 13..i + 27, "DATE");
    }
    for d in DAYS {
        let pat = format!("{d}, ");
        if let Some(i) = out.find(&pat) {
            // "Day, D Mon YYYY HH:MM:SS +ZZZZ (TZ)" to the end of the line.
            let tail = &out[i..];
            if tail.len() > 20 && tail.contains(':') {
                out = format!("{}DATE", &out[..i]);
            }
        }
    }
    out
}

/// Postfix's postcat (or ours in golden mode).
struct Postcat {
    cmd: PathBuf,
    lib: Option<String>,
}

impl Postcat {
    fn run(&self, file: &Path, conf: &str) -> String {
        let mut c = Command::new(&self.cmd);
        if self.cmd.ends_with("rostfix") {
            use std::os::unix::process::CommandExt;
            c.arg0("postcat");
        }
        if let Some(l) = &self.lib {
            c.env("LD_LIBRARY_PATH", l);
        }
        let o = c
            .env("MAIL_CONFIG", conf)
            .env("TZ", "UTC")
            .arg(file)
            .output()
            .unwrap();
        let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
        s.push_str(&String::from_utf8_lossy(&o.stderr));
        s.replace(&file.display().to_string(), "FILE")
    }
}

fn known_differences() -> BTreeMap<String, String> {
    let p = Path::new(ROOT).join("compat/smtpd/known-differences.txt");
    let t = std::fs::read_to_string(p).unwrap_or_default();
    t.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (n, r) = l.split_once(' ').unwrap_or((l, ""));
            (n.to_string(), r.trim().to_string())
        })
        .collect()
}

/// Run every dialogue against one instance, `jobs` at a time.
fn run_all(inst: &Instance, ds: &[Dialogue], ports: &[u16], pc: &Postcat) -> Vec<String> {
    let results: Arc<Mutex<Vec<Option<String>>>> = Arc::new(Mutex::new(vec![None; ds.len()]));
    let next = Arc::new(Mutex::new(0usize));
    std::thread::scope(|sc| {
        for _ in 0..12 {
            let results = results.clone();
            let next = next.clone();
            sc.spawn(move || {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap();
                        let i = *n;
                        *n += 1;
                        i
                    };
                    if i >= ds.len() {
                        break;
                    }
                    let r = talk(&ds[i], ports[i]);
                    let t = transcript(inst, &ds[i], &r, pc);
                    results.lock().unwrap()[i] = Some(t);
                }
            });
        }
    });
    let r = results.lock().unwrap();
    r.iter().map(|x| x.clone().unwrap()).collect()
}

fn selected(ds: Vec<Dialogue>) -> Vec<Dialogue> {
    match std::env::var("ROSTFIX_DIALOGUE") {
        Ok(f) if !f.is_empty() => ds
            .into_iter()
            .filter(|d| f.split(',').any(|s| d.name.contains(s)))
            .collect(),
        _ => ds,
    }
}

/// A line diff (LCS): "-" Postfix only, "+" rostfix only.
fn diff(a: &str, b: &str) -> String {
    let al: Vec<&str> = a.lines().collect();
    let bl: Vec<&str> = b.lines().collect();
    let (n, m) = (al.len(), bl.len());
    let mut t = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            t[i][j] = if al[i] == bl[j] {
                t[i + 1][j + 1] + 1
            } else {
                t[i + 1][j].max(t[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && al[i] == bl[j] {
            i += 1;
            j += 1;
        } else if j < m && (i == n || t[i][j + 1] >= t[i + 1][j]) {
            out.push_str(&format!("  + {}\n", bl[j]));
            j += 1;
        } else {
            out.push_str(&format!("  - {}\n", al[i]));
            i += 1;
        }
    }
    out
}

fn scratch(name: &str) -> PathBuf {
    // maillog_file must be under a maillog_file_prefixes entry; the
    // instance sets that to its own folder.
    let d = PathBuf::from(format!(
        "/var/tmp/rostfix-smtpd-diff-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn smtpd_dialogues_match_postfix() {
    let all = dialogues();
    assert!(
        all.len() >= 150 || std::env::var_os("ROSTFIX_DIALOGUE").is_some(),
        "only {} dialogues, the contract asks for at least 150",
        all.len()
    );
    let ds = selected(all);
    let known = known_differences();
    for k in known.keys() {
        assert!(
            ds.iter().any(|d| &d.name == k) || std::env::var("ROSTFIX_DIALOGUE").is_ok(),
            "known-differences.txt names {k}, which is no dialogue"
        );
    }
    let golden_dir = Path::new(ROOT).join("compat/golden/smtpd");
    let live = reference().is_some() && is_root() && std::env::var_os("ROSTFIX_GOLDEN").is_none();
    let record = std::env::var_os("ROSTFIX_RECORD").is_some();
    assert!(live || !record, "recording needs the reference and root");
    if !live && !is_root() {
        eprintln!("smtpd_differential: not root: cannot start an instance, nothing to check");
        // Our master and smtpd run as any user, but the queue file
        // ownership and mail_owner checks of a scratch instance assume root.
        return;
    }

    let ports_o = free_ports(ds.len());
    let mut ours = start(Side::Ours, &scratch("ours"), &ds, &ports_o);
    let ours_pc = Postcat {
        cmd: PathBuf::from(env!("CARGO_BIN_EXE_rostfix")),
        lib: None,
    };
    let mut theirs_out = None;
    let mut pf_inst = None;
    if live {
        let r = reference().unwrap();
        let pc = Postcat {
            cmd: r.join("usr/sbin/postcat"),
            lib: Some(format!(
                "{0}/usr/lib/postfix:{0}/usr/lib/x86_64-linux-gnu",
                r.display()
            )),
        };
        let ports_p = free_ports(ds.len());
        let pf = start(Side::Postfix, &scratch("pf"), &ds, &ports_p);
        let (a, b) = std::thread::scope(|sc| {
            let h = sc.spawn(|| run_all(&pf, &ds, &ports_p, &pc));
            let o = run_all(&ours, &ds, &ports_o, &pc);
            (h.join().unwrap(), o)
        });
        theirs_out = Some(a);
        pf_inst = Some((pf, b));
    }
    let (pf_t, our_t): (Vec<String>, Vec<String>) = match (theirs_out, pf_inst.as_ref()) {
        (Some(a), Some((_, b))) => (a, b.clone()),
        _ => {
            let o = run_all(&ours, &ds, &ports_o, &ours_pc);
            let g = ds
                .iter()
                .map(|d| {
                    std::fs::read_to_string(golden_dir.join(format!("{}.txt", d.name)))
                        .unwrap_or_else(|_| panic!("no golden transcript for {}", d.name))
                })
                .collect();
            (g, o)
        }
    };
    if record {
        std::fs::create_dir_all(&golden_dir).unwrap();
        for (d, t) in ds.iter().zip(&pf_t) {
            std::fs::write(golden_dir.join(format!("{}.txt", d.name)), t).unwrap();
        }
    }
    let mut failures = Vec::new();
    let mut known_seen = Vec::new();
    let mut same = 0;
    for ((d, p), o) in ds.iter().zip(&pf_t).zip(&our_t) {
        if std::env::var_os("ROSTFIX_SHOW").is_some() {
            eprintln!("=== {}\n{p}", d.name);
        }
        if p == o {
            same += 1;
            if known.contains_key(&d.name) {
                failures.push(format!(
                    "{}: listed in known-differences.txt but now identical: remove the entry\n",
                    d.name
                ));
            }
            continue;
        }
        let text = format!("=== {}\n{}", d.name, diff(p, o));
        if let Some(r) = known.get(&d.name) {
            known_seen.push(format!("{text}  (known: {r})\n"));
        } else {
            failures.push(text);
        }
    }
    eprintln!(
        "smtpd_differential: {} dialogues ({}), {same} identical, {} known differences, {} new",
        ds.len(),
        if live { "live" } else { "golden" },
        known_seen.len(),
        failures.len()
    );
    for k in &known_seen {
        eprintln!("{k}");
    }

    // pflogsumm reads both logs alike.
    if let Some((pf, _)) = &pf_inst
        && std::env::var_os("ROSTFIX_DIALOGUE").is_none()
    {
        // The known differences would show in the report too: left out.
        let names: Vec<String> = ds
            .iter()
            .filter(|d| !known.contains_key(&d.name))
            .map(|d| d.name.clone())
            .collect();
        match pflogsumm_both(pf, &ours, &names) {
            Ok(()) => {}
            Err(e) => failures.push(e),
        }
    }
    ours.stop();
    if let Some((mut pf, _)) = pf_inst {
        pf.stop();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A log as pflogsumm is given it: the dialogues' lines only (smtpd and their cleanup),
/// grouped by dialogue in name order (the dialogues ran in parallel), with one time stamp and
/// host, the per-dialogue syslog names folded into "postfix", queue IDs renumbered in order of
/// appearance, the instance folder and the free space masked.
fn pflog_input(log: &str, names: &[String], dir: &str) -> String {
    let mut by: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for l in log.lines() {
        let Some(i) = l.find(" postfix/") else {
            continue;
        };
        let rest = &l[i + 9..];
        let Some((name, tail)) = rest.split_once('/') else {
            continue;
        };
        if !names.iter().any(|n| n == name) || l.contains("unable to look up public/qmgr") {
            continue;
        }
        let Some((prog, msg)) = tail.split_once('[') else {
            continue;
        };
        let Some((_, msg)) = msg.split_once("]: ") else {
            continue;
        };
        let msg = mask_line(&msg.replace(dir, "{dir}"));
        by.entry(names.iter().find(|n| *n == name).unwrap())
            .or_default()
            .push(format!("{prog}[1]: {msg}"));
    }
    let mut qids: Vec<String> = Vec::new();
    let mut out = String::new();
    for lines in by.values() {
        for l in lines {
            let mut o = String::new();
            let mut word = String::new();
            let flush = |w: &mut String, o: &mut String, qids: &mut Vec<String>| {
                if (8..=12).contains(&w.len())
                    && w.bytes()
                        .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c))
                    && w.bytes().any(|c| c.is_ascii_digit())
                {
                    let n = match qids.iter().position(|q| q == w) {
                        Some(n) => n,
                        None => {
                            qids.push(w.clone());
                            qids.len() - 1
                        }
                    };
                    o.push_str(&format!("{:010X}", 0xA000000000u64 + n as u64));
                } else {
                    o.push_str(w);
                }
                w.clear();
            };
            for c in l.chars() {
                if c.is_ascii_alphanumeric() {
                    word.push(c);
                } else {
                    flush(&mut word, &mut o, &mut qids);
                    o.push(c);
                }
            }
            flush(&mut word, &mut o, &mut qids);
            out.push_str(&format!("Nov 25 12:00:00 test postfix/{o}\n"));
        }
    }
    out
}

fn pflogsumm_both(pf: &Instance, ours: &Instance, names: &[String]) -> Result<(), String> {
    if Command::new("pflogsumm").arg("--help").output().is_err() {
        return Err("pflogsumm is not installed (apt-get install pflogsumm)".into());
    }
    let run = |inst: &Instance| -> String {
        let log = inst.log();
        let input = pflog_input(&log, names, &inst.dir.display().to_string());
        let dir = std::env::temp_dir().join(format!("pflog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join(format!("{:?}.log", inst.side));
        std::fs::write(&f, input).unwrap();
        let o = Command::new("pflogsumm")
            .arg("--detail")
            .arg("99")
            .arg("--problems-first")
            .arg(&f)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&f);
        // Entries with equal counts come in hash order: compare the
        // report as a sorted list of lines.
        let mut lines: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        lines.join("\n")
    };
    let (a, b) = (run(pf), run(ours));
    assert!(
        a.contains("Grand Totals"),
        "pflogsumm printed no report:\n{a}"
    );
    if a == b {
        Ok(())
    } else {
        Err(format!("pflogsumm reports differ:\n{}", diff(&a, &b)))
    }
}
