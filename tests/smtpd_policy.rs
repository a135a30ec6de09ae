//! smtpd's check_policy_service, client rate/concurrency limits (anvil) and
//! stress mode, compared with Postfix 3.7.11: both run as whole instances
//! (master, smtpd, cleanup) with the same main.cf, a scripted policy
//! server answers both, dialogues come from 127.0.0.2 with mynetworks =
//! 127.0.0.1/32, and the replies, the smtpd log lines and the policy
//! requests must be the same after normalising queue IDs, pids, ports and
//! dates. Needs root and the reference binaries (CI has both); without
//! the reference the tests fail rather than pass silently, unless
//! ROSTFIX_NO_REFERENCE=1 says to skip them.

mod common;

use common::instance::{Instance, Side, is_root};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn reference_available() -> bool {
    if common::queue::reference().is_some() && is_root() {
        return true;
    }
    if std::env::var_os("ROSTFIX_NO_REFERENCE").is_some() {
        eprintln!("skipped: no Postfix reference / not root");
        return false;
    }
    panic!(
        "Postfix 3.7.11 reference binaries and root are required (ROSTFIX_NO_REFERENCE=1 to skip)"
    );
}

fn scratch(tag: &str) -> std::path::PathBuf {
    // maillog_file must be under a prefix Postfix accepts: Instance sets
    // maillog_file_prefixes to the instance dir.
    std::path::PathBuf::from(format!("/tmp/s5-policy-tests/{}-{tag}", std::process::id()))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

type Request = Vec<(String, String)>;

/// The scripted policy server: the answer depends on the recipient's
/// local part. Records every request (attributes in order).
struct PolicyServer {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    connections: Arc<Mutex<u32>>,
}

fn answer_for(req: &[(String, String)]) -> Option<String> {
    let get = |n: &str| {
        req.iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let state = get("protocol_state");
    let rcpt = get("recipient");
    let local = rcpt.split('@').next().unwrap_or("").to_string();
    if state == "DATA" || state == "END-OF-MESSAGE" {
        let sender = get("sender");
        let a = match (state.as_str(), sender.split('@').next().unwrap_or("")) {
            ("END-OF-MESSAGE", "eodreject") => "REJECT too big for me",
            ("END-OF-MESSAGE", "eodprepend") => "PREPEND X-Late: yes",
            ("DATA", "datadefer") => "DEFER come back later",
            _ => "DUNNO",
        };
        return Some(format!("action={a}\n\n"));
    }
    Some(match local.as_str() {
        "reject" => "action=REJECT not today\n\n".into(),
        "reject-plain" => "action=REJECT\n\n".into(),
        "defer" => "action=DEFER 4.7.9 later please\n\n".into(),
        "code550" => "action=550 5.7.0 custom policy text\n\n".into(),
        "code450" => "action=450 no dsn here\n\n".into(),
        "ok" => "action=OK\n\n".into(),
        "hold" => "action=HOLD held by policy\n\n".into(),
        "discard" => "action=DISCARD\n\n".into(),
        "prepend" => "action=PREPEND X-Policy: seen\n\n".into(),
        "filter" => "action=FILTER smtp:[127.0.0.1]:10025\n\n".into(),
        "redirect" => "action=REDIRECT other@example.org\n\n".into(),
        "dip" => "action=DEFER_IF_PERMIT wait a bit\n\n".into(),
        "class" => "action=policy_class\n\n".into(),
        "extra" => "foo=bar\naction=REJECT with extras\nbaz=1\n\n".into(),
        "noaction" => "foo=bar\n\n".into(),
        "warn" => "action=WARN looked at it\n\n".into(),
        "info" => "action=INFO noted\n\n".into(),
        "bogus" => "action=WHATEVER\n\n".into(),
        "noeq" => "action\n\n".into(),
        "close" => return None,
        "slow" => {
            std::thread::sleep(Duration::from_millis(2500));
            "action=DUNNO\n\n".into()
        }
        _ => "action=DUNNO\n\n".into(),
    })
}

impl PolicyServer {
    fn start() -> PolicyServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (rq, cn) = (requests.clone(), connections.clone());
        std::thread::spawn(move || {
            for s in l.incoming().take(500) {
                let Ok(s) = s else { continue };
                *cn.lock().unwrap() += 1;
                let rq = rq.clone();
                let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                let r = BufReader::new(s.try_clone().unwrap());
                std::thread::spawn(move || serve_policy(r, s, rq));
            }
        });
        PolicyServer {
            port,
            requests,
            connections,
        }
    }
    /// Also answer on a UNIX socket at `path`, into the same request list.
    fn also_unix(&self, path: &std::path::Path) {
        let l = std::os::unix::net::UnixListener::bind(path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let (rq, cn) = (self.requests.clone(), self.connections.clone());
        std::thread::spawn(move || {
            for s in l.incoming().take(500) {
                let Ok(s) = s else { continue };
                *cn.lock().unwrap() += 1;
                let rq = rq.clone();
                let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                let r = BufReader::new(s.try_clone().unwrap());
                std::thread::spawn(move || serve_policy(r, s, rq));
            }
        });
    }
    fn take(&self) -> Vec<Vec<(String, String)>> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

/// Answer policy requests on one connection.
fn serve_policy<S: Read + Write>(mut r: BufReader<S>, mut w: S, rq: Arc<Mutex<Vec<Request>>>) {
    for _ in 0..1000 {
        let mut req = Vec::new();
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = line.trim_end_matches('\n');
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once('=').unwrap_or((line, ""));
            req.push((k.to_string(), v.to_string()));
        }
        rq.lock().unwrap().push(req.clone());
        match answer_for(&req) {
            Some(a) => {
                if w.write_all(a.as_bytes()).is_err() {
                    return;
                }
            }
            None => return,
        }
    }
}

/// One side: an instance with smtpd (and anvil) in master.cf.
fn instance(side: Side, tag: &str, main: &str, smtpd_port: u16, master_extra: &str) -> Instance {
    let dir = scratch(&format!("{tag}-{side:?}"));
    let inst = Instance::new(side, &dir, main, &[]);
    let mut mcf = std::fs::read_to_string(dir.join("conf/master.cf")).unwrap();
    // master_extra "-anvil" leaves the anvil service out.
    let (anvil, master_extra) = match master_extra.strip_prefix("-anvil") {
        Some(rest) => ("", rest),
        None => ("anvil unix - - n - 1 anvil\n", master_extra),
    };
    mcf.push_str(&format!(
        "127.0.0.1:{smtpd_port} inet n - n - - smtpd\n{anvil}{master_extra}"
    ));
    if side == Side::Ours {
        for p in ["smtpd", "anvil"] {
            let _ =
                std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_rostfix"), dir.join("bin").join(p));
        }
    } else {
        // Postfix's trivial-rewrite is its "rewrite" service, already there.
    }
    std::fs::write(dir.join("conf/master.cf"), mcf).unwrap();
    let f = std::fs::File::options()
        .write(true)
        .open(dir.join("conf/master.cf"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    inst
}

fn connect(port: u16) -> TcpStream {
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t = Instant::now();
    loop {
        match rostfix::sys::net::connect_from("127.0.0.2".parse().unwrap(), to) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
                return s;
            }
            Err(e) => {
                assert!(t.elapsed() < Duration::from_secs(10), "connect: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn read_reply(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        let n = s.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        let t = String::from_utf8_lossy(&out);
        if let Some(last) = t.trim_end_matches("\r\n").rsplit("\r\n").next()
            && t.ends_with("\r\n")
            && last.as_bytes().get(3) == Some(&b' ')
        {
            break;
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

/// Run a dialogue: each command, its reply. Returns the transcript.
fn dialogue(port: u16, cmds: &[&str]) -> Vec<String> {
    let mut s = connect(port);
    let mut out = vec![read_reply(&mut s)];
    for c in cmds {
        if s.write_all(format!("{c}\r\n").as_bytes()).is_err() {
            out.push(format!("{c} -> (write failed)"));
            break;
        }
        let r = read_reply(&mut s);
        out.push(format!("{c} -> {r}"));
        if r.is_empty() {
            break;
        }
    }
    out
}

/// Normalise queue IDs, pids and dates.
fn norm(s: &str) -> String {
    // A maillog_file date: "Mon DD HH:MM:SS host ".
    let mut s = s.to_string();
    let b = s.as_bytes();
    if b.len() > 16
        && b[3] == b' '
        && b[6] == b' '
        && b[9] == b':'
        && b[12] == b':'
        && let Some(i) = s[16..].find(' ')
    {
        s = s[16 + i + 1..].to_string();
    }
    let mut out = String::new();
    let mut rest = s.as_str();
    // "[digits]:" -> "[PID]:"
    while let Some(i) = rest.find('[') {
        let after = &rest[i + 1..];
        let n = after.bytes().take_while(|c| c.is_ascii_digit()).count();
        if n > 0 && after[n..].starts_with("]:") {
            out.push_str(&rest[..i]);
            out.push_str("[PID]:");
            rest = &after[n + 2..];
        } else {
            out.push_str(&rest[..=i]);
            rest = after;
        }
    }
    out.push_str(rest);
    // Queue IDs: words of 10-12 upper-case hex digits.
    let mut res = String::new();
    let mut word = String::new();
    let flush = |w: &mut String, res: &mut String| {
        let qid = (10..=12).contains(&w.len())
            && w.bytes()
                .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c));
        res.push_str(if qid { "QUEUEID" } else { w });
        w.clear();
    };
    for c in out.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut res);
            res.push(c);
        }
    }
    flush(&mut word, &mut res);
    res
}

/// The smtpd and anvil log lines (normalised), minus start-up noise.
fn smtpd_log(inst: &Instance) -> Vec<String> {
    inst.log()
        .lines()
        .filter(|l| l.contains("/smtpd[") || l.contains("/anvil[") || l.contains("/master["))
        .filter(|l| !l.contains("daemon started") && !l.contains("terminating on signal"))
        .map(norm)
        .collect()
}

fn norm_requests(reqs: Vec<Vec<(String, String)>>) -> Vec<String> {
    reqs.into_iter()
        .map(|r| {
            r.into_iter()
                .map(|(k, v)| {
                    let v = match k.as_str() {
                        "client_port" | "server_port" => "PORT".into(),
                        "instance" if !v.is_empty() => "INSTANCE".into(),
                        "queue_id" if !v.is_empty() => "QUEUEID".into(),
                        _ => v,
                    };
                    format!("{k}={v}")
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

struct Run {
    replies: Vec<Vec<String>>,
    log: Vec<String>,
    requests: Vec<String>,
    connections: u32,
}

fn run_side(
    side: Side,
    tag: &str,
    main: &dyn Fn(u16) -> String,
    dialogues: &[Vec<&str>],
    settle: Duration,
) -> Run {
    let pol = PolicyServer::start();
    let port = free_port();
    let mut inst = instance(side, tag, &main(pol.port), port, "");
    inst.start();
    let mut replies = Vec::new();
    for d in dialogues {
        replies.push(dialogue(port, d).into_iter().map(|r| norm(&r)).collect());
        // Let smtpd log the disconnect before the next session.
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(settle);
    inst.stop();
    let log = smtpd_log(&inst)
        .into_iter()
        .map(|l| l.replace(&format!(":{}", pol.port), ":POLPORT"))
        .collect();
    Run {
        replies,
        log,
        requests: norm_requests(pol.take()),
        connections: *pol.connections.lock().unwrap(),
    }
}

fn compare(tag: &str, a: &Run, b: &Run) {
    for (x, y) in [("Postfix", a), ("ours", b)] {
        eprintln!(
            "== {tag} {x} replies:\n{}",
            y.replies
                .iter()
                .flatten()
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        eprintln!("== {tag} {x} log:\n{}", y.log.join("\n"));
    }
    assert_eq!(
        a.replies, b.replies,
        "{tag}: replies (Postfix left, ours right)"
    );
    assert_eq!(a.requests, b.requests, "{tag}: policy requests");
    assert_eq!(a.log, b.log, "{tag}: log lines");
}

const BASE: &str = "mynetworks = 127.0.0.1/32\n\
                    smtpd_client_event_limit_exceptions = 127.0.0.0/8\n\
                    smtpd_restriction_classes = policy_class\n\
                    policy_class = reject_unauth_destination, permit\n\
                    smtpd_policy_service_retry_delay = 1s\n\
                    relay_domains = example.com\n\
                    mydestination =\n\
                    local_recipient_maps =\n\
                    alias_maps =\n";

#[test]
fn policy_actions_match_postfix() {
    if !reference_available() {
        return;
    }
    let main = |p: u16| {
        format!(
            "{BASE}smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:{p}, \
             reject_unauth_destination\n\
             smtpd_data_restrictions = check_policy_service inet:127.0.0.1:{p}\n"
        )
    };
    let rcpts = [
        "reject",
        "reject-plain",
        "defer",
        "code550",
        "code450",
        "ok",
        "hold",
        "discard",
        "prepend",
        "filter",
        "redirect",
        "dip",
        "class",
        "extra",
        "warn",
        "info",
        "bogus",
        "dunno",
    ];
    let mut dialogues: Vec<Vec<&str>> = Vec::new();
    let cmds: Vec<String> = rcpts
        .iter()
        .map(|r| format!("RCPT TO:<{r}@example.com>"))
        .collect();
    let mut d1 = vec!["EHLO client.example", "MAIL FROM:<s@example.net> SIZE=1234"];
    for c in &cmds[..9] {
        d1.push(c);
    }
    d1.push("RSET");
    d1.push("MAIL FROM:<s@example.net>");
    for c in &cmds[9..] {
        d1.push(c);
    }
    d1.push("QUIT");
    dialogues.push(d1);
    dialogues.push(vec![
        "HELO h.example",
        "MAIL FROM:<>",
        "RCPT TO:<dunno@example.com>",
        "DATA",
        "Subject: x\r\n\r\nbody\r\n.",
        "QUIT",
    ]);
    let pf = run_side(
        Side::Postfix,
        "act",
        &main,
        &dialogues,
        Duration::from_millis(300),
    );
    let us = run_side(
        Side::Ours,
        "act",
        &main,
        &dialogues,
        Duration::from_millis(300),
    );
    assert!(pf.requests.len() >= rcpts.len(), "{:?}", pf.requests);
    compare("actions", &pf, &us);
    // One connection to the policy server for the whole process life.
    assert_eq!(us.connections, pf.connections);
}

#[test]
fn policy_server_failures_match_postfix() {
    if !reference_available() {
        return;
    }
    let dead = free_port();
    let main = move |p: u16| {
        format!(
            "{BASE}smtpd_policy_service_timeout = 1s\n\
             smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:{p}, \
             check_policy_service {{ inet:127.0.0.1:{dead}, default_action=DUNNO, try_limit=1 }}, \
             reject_unauth_destination\n\
             smtpd_data_restrictions = check_policy_service unix:private/nowhere\n"
        )
    };
    let dialogues = vec![vec![
        "EHLO client.example",
        "MAIL FROM:<s@example.net>",
        "RCPT TO:<noaction@example.com>",
        "RCPT TO:<close@example.com>",
        "RCPT TO:<slow@example.com>",
        "RCPT TO:<noeq@example.com>",
        "RCPT TO:<dunno@example.com>",
        "DATA",
        "QUIT",
    ]];
    let pf = run_side(
        Side::Postfix,
        "fail",
        &main,
        &dialogues,
        Duration::from_millis(300),
    );
    let us = run_side(
        Side::Ours,
        "fail",
        &main,
        &dialogues,
        Duration::from_millis(300),
    );
    compare("failures", &pf, &us);
}

/// A connection that has read the banner.
struct Open(TcpStream);

impl Open {
    fn new(port: u16) -> (Open, String) {
        let mut s = connect(port);
        let b = read_reply(&mut s);
        (Open(s), norm(&b))
    }
    fn cmd(&mut self, c: &str) -> String {
        let _ = self.0.write_all(format!("{c}\r\n").as_bytes());
        format!("{c} -> {}", norm(&read_reply(&mut self.0)))
    }
}

fn run_limits(side: Side, stats_wait: Duration) -> (Vec<String>, Vec<String>) {
    run_limits_with(side, stats_wait, "anvil_status_update_time = 1h\n", true)
}

fn run_limits_with(
    side: Side,
    stats_wait: Duration,
    extra: &str,
    all: bool,
) -> (Vec<String>, Vec<String>) {
    let port = free_port();
    let main = "mynetworks = 127.0.0.1/32\n\
                mydestination =\nlocal_recipient_maps =\nalias_maps =\n\
                relay_domains = example.com\n\
                smtpd_client_connection_count_limit = 2\n\
                smtpd_client_connection_rate_limit = 5\n\
                smtpd_client_message_rate_limit = 2\n\
                smtpd_client_recipient_rate_limit = 3\n";
    let main = format!("{main}{extra}");
    let tag = if all { "limits" } else { "stats" };
    let mut inst = instance(side, tag, &main, port, "");
    inst.start();
    let pause = || std::thread::sleep(Duration::from_millis(300));
    let mut t = Vec::new();
    let svc = format!("127.0.0.1:{port}");
    let fix = |v: Vec<String>| -> Vec<String> {
        v.into_iter().map(|l| l.replace(&svc, "SERVICE")).collect()
    };
    if !all {
        let (mut a, ba) = Open::new(port);
        t.push(ba);
        t.push(a.cmd("QUIT"));
        std::thread::sleep(stats_wait);
        inst.stop();
        return (fix(t), fix(smtpd_log(&inst)));
    }
    // Concurrency: two sessions open, the third is turned away.
    let (mut a, ba) = Open::new(port);
    t.push(ba);
    pause();
    let (mut b, bb) = Open::new(port);
    t.push(bb);
    pause();
    let (mut c, bc) = Open::new(port);
    t.push(bc);
    pause();
    t.push(c.cmd("QUIT"));
    pause();
    t.push(a.cmd("QUIT"));
    pause();
    t.push(b.cmd("QUIT"));
    pause();
    // Message and recipient rates.
    let (mut d, bd) = Open::new(port);
    t.push(bd);
    for cmd in [
        "EHLO client.example",
        "MAIL FROM:<s@example.net>",
        "RCPT TO:<a@example.com>",
        "RCPT TO:<b@example.com>",
        "RCPT TO:<c@example.com>",
        "RCPT TO:<d@example.com>",
        "VRFY e@example.com",
        "RSET",
        "MAIL FROM:<s@example.net>",
        "RSET",
        "MAIL FROM:<s@example.net>",
        "QUIT",
    ] {
        t.push(d.cmd(cmd));
    }
    pause();
    // Connection rate: this is the 5th connection, the 6th is refused.
    for _ in 0..2 {
        let (mut e, be) = Open::new(port);
        t.push(be);
        t.push(e.cmd("QUIT"));
        pause();
    }
    std::thread::sleep(stats_wait);
    inst.stop();
    std::thread::sleep(Duration::from_millis(300));
    (fix(t), fix(smtpd_log(&inst)))
}

#[test]
fn client_limits_match_postfix() {
    if !reference_available() {
        return;
    }
    let (pt, pl) = run_limits(Side::Postfix, Duration::from_millis(300));
    let (ot, ol) = run_limits(Side::Ours, Duration::from_millis(300));
    eprintln!("== Postfix:\n{}\n{}", pt.join("\n"), pl.join("\n"));
    eprintln!("== ours:\n{}\n{}", ot.join("\n"), ol.join("\n"));
    assert_eq!(pt, ot, "replies");
    assert_eq!(pl, ol, "log");
}

#[test]
fn anvil_statistics_match_postfix() {
    if !reference_available() {
        return;
    }
    let extra = "anvil_status_update_time = 2s\n";
    let wait = Duration::from_millis(3000);
    let (pt, pl) = run_limits_with(Side::Postfix, wait, extra, false);
    let (ot, ol) = run_limits_with(Side::Ours, wait, extra, false);
    // The dates in the statistics lines differ; their text must not.
    let undate = |v: Vec<String>| -> Vec<String> {
        v.into_iter()
            .map(|l| match l.find(" at ") {
                Some(i) if l.contains("statistics:") => format!("{} at DATE", &l[..i]),
                _ => l,
            })
            .collect()
    };
    let (pl, ol) = (undate(pl), undate(ol));
    assert!(
        pl.iter()
            .any(|l| l.contains("statistics: max connection rate 1/60s for (SERVICE:127.0.0.2)")),
        "{pl:?}"
    );
    assert_eq!(pt, ot, "replies");
    assert_eq!(pl, ol, "log");
}

#[test]
fn policy_data_states_match_postfix() {
    if !reference_available() {
        return;
    }
    let run = |side: Side| -> Run {
        let pol = PolicyServer::start();
        let port = free_port();
        let p = pol.port;
        let main = format!(
            "{BASE}smtpd_recipient_restrictions = check_policy_service \
             {{ inet:127.0.0.1:{p}, {{policy_context = rcpt ctx}}, request_limit=2 }}, \
             reject_unauth_destination\n\
             smtpd_data_restrictions = check_policy_service inet:127.0.0.1:{p}\n\
             smtpd_end_of_data_restrictions = check_policy_service unix:private/policy\n"
        );
        let mut inst = instance(side, "data", &main, port, "");
        inst.start();
        pol.also_unix(&inst.queue().join("private/policy"));
        let dialogues: Vec<Vec<&str>> = vec![vec![
            "EHLO client.example",
            "MAIL FROM:<s@example.net> SIZE=500",
            "RCPT TO:<a@example.com>",
            "RCPT TO:<hold@example.com>",
            "RCPT TO:<prepend@example.com>",
            "DATA",
            "Subject: one\r\n\r\nbody\r\n.",
            "MAIL FROM:<eodprepend@example.net>",
            "RCPT TO:<b@example.com>",
            "BDAT 21 LAST\r\nSubject: three\r\n\r\nx",
            "MAIL FROM:<datadefer@example.net>",
            "RCPT TO:<b@example.com>",
            "DATA",
            "RSET",
            "MAIL FROM:<eodreject@example.net>",
            "RCPT TO:<b@example.com>",
            "DATA",
            "Subject: two\r\n\r\nbody\r\n.",
            "MAIL FROM:<again@example.net>",
            "QUIT",
        ]];
        let mut replies = Vec::new();
        for d in &dialogues {
            replies.push(dialogue(port, d).into_iter().map(|r| norm(&r)).collect());
        }
        std::thread::sleep(Duration::from_millis(500));
        let queued = inst.files(&["incoming", "hold"]);
        inst.stop();
        let mut log: Vec<String> = smtpd_log(&inst)
            .into_iter()
            .map(|l| l.replace(&format!(":{p}"), ":POLPORT"))
            .collect();
        // Where the messages went (hold/ for HOLD).
        log.extend(
            queued
                .iter()
                .map(|f| format!("queue: {}", f.split('/').next().unwrap_or(""))),
        );
        Run {
            replies,
            log,
            requests: norm_requests(pol.take()),
            connections: *pol.connections.lock().unwrap(),
        }
    };
    let pf = run(Side::Postfix);
    let us = run(Side::Ours);
    assert!(
        pf.requests
            .iter()
            .any(|r| r.contains("protocol_state=END-OF-MESSAGE")),
        "{:?}\n{:?}",
        pf.requests,
        pf.log
    );
    compare("data", &pf, &us);
    assert_eq!(pf.connections, us.connections, "policy connections");
}

/// Stress mode as master hands it over (`-o stress=yes`; master does so
/// only for services that listen on non-loopback addresses, which tests
/// may not use): smtpd_hard_error_limit becomes 1, smtpd_junk_command_limit
/// 1 and smtpd_timeout 10s, and policy servers are told `stress=yes`.
#[test]
fn stress_mode_matches_postfix() {
    if !reference_available() {
        return;
    }
    let run = |side: Side| -> Run {
        let pol = PolicyServer::start();
        let port = free_port();
        let p = pol.port;
        let main = format!(
            "{BASE}smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:{p}, \
             reject_unauth_destination\n"
        );
        let inst = instance(side, "stress", &main, port, "");
        let mcf_path = inst.dir.join("conf/master.cf");
        let mcf = std::fs::read_to_string(&mcf_path).unwrap().replace(
            &format!("127.0.0.1:{port} inet n - n - - smtpd"),
            &format!("127.0.0.1:{port} inet n - n - - smtpd -o stress=yes"),
        );
        std::fs::write(&mcf_path, mcf).unwrap();
        let f = std::fs::File::options()
            .write(true)
            .open(&mcf_path)
            .unwrap();
        f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        let mut inst = inst;
        inst.start();
        let mut t = Vec::new();
        let (mut b, bb) = Open::new(port);
        t.push(bb);
        for c in [
            "EHLO client.example",
            "MAIL FROM:<s@example.net>",
            "RCPT TO:<dunno@example.com>",
            "BOGUS",
            "NOOP",
            "NOOP",
            "NOOP",
        ] {
            t.push(b.cmd(c));
        }
        std::thread::sleep(Duration::from_millis(500));
        inst.stop();
        Run {
            replies: vec![t],
            log: smtpd_log(&inst),
            requests: norm_requests(pol.take()),
            connections: 0,
        }
    };
    let pf = run(Side::Postfix);
    let us = run(Side::Ours);
    assert!(
        pf.requests.iter().any(|r| r.contains("stress=yes")),
        "{:?}",
        pf.requests
    );
    compare("stress", &pf, &us);
}

/// Without an anvil service in master.cf, smtpd warns and serves the
/// client without limits, as Postfix does.
#[test]
fn missing_anvil_matches_postfix() {
    if !reference_available() {
        return;
    }
    let run = |side: Side| -> (Vec<String>, Vec<String>) {
        let port = free_port();
        let main = "mynetworks = 127.0.0.1/32\n\
                    mydestination =\nlocal_recipient_maps =\nalias_maps =\n\
                    relay_domains = example.com\n\
                    smtpd_client_message_rate_limit = 2\n";
        let mut inst = instance(side, "noanvil", main, port, "-anvil");
        inst.start();
        let (mut a, ba) = Open::new(port);
        let mut t = vec![ba];
        for c in ["HELO client.example", "MAIL FROM:<s@example.net>", "QUIT"] {
            t.push(a.cmd(c));
        }
        std::thread::sleep(Duration::from_millis(300));
        inst.stop();
        (t, smtpd_log(&inst))
    };
    let (pt, pl) = run(Side::Postfix);
    let (ot, ol) = run(Side::Ours);
    eprintln!("== Postfix:\n{}\n{}", pt.join("\n"), pl.join("\n"));
    eprintln!("== ours:\n{}\n{}", ot.join("\n"), ol.join("\n"));
    assert_eq!(pt, ot, "replies");
    assert_eq!(pl, ol, "log");
}
