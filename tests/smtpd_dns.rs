//! smtpd's DNS-based checks against a test DNS server (tests/common/
//! dns_server.rs): the client name lookup at connect (reverse, then a
//! forward lookup that must confirm it; /etc/hosts first), the
//! reject_unknown_* restrictions with their codes and tempfail actions,
//! DNSBL/RHSBL/DNSWL with reply filters, TXT text, rbl_reply_maps and
//! default_rbl_reply, check_*_{mx,ns,a}_access and permit_mx_backup.
//!
//! smtpd runs as `smtpd -L` (listens by itself) with
//! `ROSTFIX_DNS_SERVER` pointing at the test server and
//! `ROSTFIX_HOSTS_FILE` replacing /etc/hosts. Clients connect from
//! 127.0.0.x so that each test address has its own PTR record.
//!
//! The expected replies and log lines are Postfix 3.7.11's: the texts of
//! smtpd_check.c and smtpd_peer.c; `postfix_in_namespace` (below) runs the
//! same kind of dialogue against the real Postfix where a private network
//! namespace is available.

mod common;

use common::dns_server::{DnsServer, Zone};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BASE_CF: &str = "compatibility_level = 3.6\nmyhostname = mx.example.test\n\
smtpd_banner = $myhostname ESMTP $mail_name\ninet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n\
mynetworks = 127.0.0.1/32\nmydestination = $myhostname, localhost\nlocal_recipient_maps =\n\
alias_maps =\nsmtpd_timeout = 10s\nmaillog_file = /dev/stderr\nmaillog_file_prefixes = /dev\n";

/// The test zone shared by most tests.
fn zone() -> Zone {
    Zone::new()
        // 127.0.0.2: name and address agree.
        .ptr("127.0.0.2", "good.example.test")
        .a("good.example.test", "127.0.0.2")
        .mx("good.example.test", 10, "mx.good.example.test")
        .a("mx.good.example.test", "192.0.2.10")
        .ns("good.example.test", "ns1.good.example.test")
        .a("ns1.good.example.test", "192.0.2.53")
        // 127.0.0.3: the name points elsewhere.
        .ptr("127.0.0.3", "forged.example.test")
        .a("forged.example.test", "192.0.2.1")
        // 127.0.0.4: no PTR record (NXDOMAIN).
        // 127.0.0.5: the PTR lookup fails (SERVFAIL).
        .servfail("5.0.0.127.in-addr.arpa")
        // 127.0.0.6: the name has no address record.
        .ptr("127.0.0.6", "noaddr.example.test")
        .mx("noaddr.example.test", 10, "mx.good.example.test")
        // 127.0.0.8: the forward lookup fails (SERVFAIL).
        .ptr("127.0.0.8", "flaky.example.test")
        .servfail("flaky.example.test")
        // Domains.
        .mx("mxonly.example.test", 10, "mx.good.example.test")
        .mx("nullmx.example.test", 0, "")
        .servfail("servfail.example.test")
        .a("aonly.example.test", "192.0.2.20")
        .mx("badmx.example.test", 10, "mx.bad.test")
        .a("mx.bad.test", "192.0.2.66")
        .ns("sub.zone.test", "ns.bad.test")
        .a("ns.bad.test", "192.0.2.67")
        .a("deep.sub.zone.test", "192.0.2.68")
        // A domain we are backup MX for, and one we are primary for.
        .mx("backup.example.test", 10, "primary.example.test")
        .mx("backup.example.test", 20, "mx.example.test")
        .mx("backup.example.test", 30, "test.example")
        .a("primary.example.test", "192.0.2.30")
        .mx("notours.example.test", 10, "primary.example.test")
        // DNSBL: 127.0.0.2 listed with a reason, 127.0.0.3 listed as .3.
        .a("2.0.0.127.bl.test", "127.0.0.2")
        .txt("2.0.0.127.bl.test", "Listed, see http://bl.test/?127.0.0.2")
        .a("3.0.0.127.bl.test", "127.0.0.3")
        .servfail("6.0.0.127.bl.test")
        // RHSBL: spam.example.test listed.
        .a("spam.example.test.rhs.test", "127.0.0.2")
        .txt("spam.example.test.rhs.test", "spammer")
        .a("good.example.test.rhs.test", "127.0.0.4")
        // DNSWL: 127.0.0.2 allowed.
        .a("2.0.0.127.wl.test", "127.0.0.5")
}

const HOSTS: &str = "127.0.0.1 localhost\n127.0.0.7 hosts-only.example.test hostsalias\n";

struct Smtpd {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
    dir: std::path::PathBuf,
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(tag: &str, dns: &DnsServer, extra: &str, files: &[(&str, &str)]) -> Smtpd {
    let dir = std::env::temp_dir().join(format!("rostfix-smtpd-dns-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("dump")).unwrap();
    let d = dir.display().to_string();
    std::fs::write(
        dir.join("main.cf"),
        format!("{BASE_CF}{}", extra.replace("$DIR", &d)),
    )
    .unwrap();
    std::fs::write(dir.join("hosts"), HOSTS).unwrap();
    for (n, t) in files {
        std::fs::write(dir.join(n), t).unwrap();
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_rostfix"))
        .args(["smtpd", "-L", &format!("127.0.0.1:{port}")])
        .env("MAIL_CONFIG", &dir)
        .env("ROSTFIX_SMTPD_DUMP", dir.join("dump"))
        .env("ROSTFIX_DNS_SERVER", dns.addr.to_string())
        .env("ROSTFIX_HOSTS_FILE", dir.join("hosts"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let mut err = child.stderr.take().unwrap();
    let l = log.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            l.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t0 = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "smtpd -L did not listen"
        );
        std::thread::sleep(Duration::from_millis(30));
    }
    Smtpd {
        child,
        addr,
        log,
        dir,
    }
}

fn read_reply(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(8) {
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
    String::from_utf8_lossy(&out)
        .trim_end_matches("\r\n")
        .to_string()
}

/// One session from `from`: the greeting, then one reply per command (a
/// final QUIT is added). Returns the replies (the greeting first).
fn session(smtpd: &Smtpd, from: &str, cmds: &[&str]) -> Vec<String> {
    let mut s = rostfix::sys::net::connect_from(from.parse().unwrap(), smtpd.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let mut out = vec![read_reply(&mut s)];
    for c in cmds.iter().chain(["QUIT"].iter()) {
        s.write_all(format!("{c}\r\n").as_bytes()).unwrap();
        out.push(read_reply(&mut s));
    }
    out
}

/// The log so far, once it has a line containing `want` (bounded wait).
fn log_with(smtpd: &Smtpd, want: &str) -> String {
    let t0 = Instant::now();
    loop {
        let l = smtpd.log.lock().unwrap().clone();
        if l.contains(want) || t0.elapsed() > Duration::from_secs(5) {
            return l;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The log lines without the `postfix/smtpd[pid]: ` prefix.
fn lines(log: &str) -> Vec<String> {
    log.lines()
        .map(|l| match l.find("]: ") {
            Some(i) => l[i + 3..].to_string(),
            None => l.to_string(),
        })
        .collect()
}

#[test]
fn client_name_lookup_at_connect() {
    let dns = DnsServer::start(zone());
    let m = start(
        "peer",
        &dns,
        "unknown_client_reject_code = 550\n\
         smtpd_recipient_restrictions = reject_unknown_client_hostname, permit\n",
        &[],
    );
    let dialogue = [
        "HELO client.test",
        "MAIL FROM:<a@good.example.test>",
        "RCPT TO:<u@mx.example.test>",
    ];
    // Confirmed name.
    let r = session(&m, "127.0.0.2", &dialogue);
    assert_eq!(r[3], "250 2.1.5 Ok");
    // A name that does not give the address back: "unknown", 5xx.
    let r = session(&m, "127.0.0.3", &dialogue);
    assert_eq!(
        r[3],
        "550 5.7.25 Client host rejected: cannot find your hostname, [127.0.0.3]"
    );
    // No PTR record: 5xx.
    let r = session(&m, "127.0.0.4", &dialogue);
    assert_eq!(
        r[3],
        "550 5.7.25 Client host rejected: cannot find your hostname, [127.0.0.4]"
    );
    // PTR lookup fails temporarily: always 450.
    let r = session(&m, "127.0.0.5", &dialogue);
    assert_eq!(
        r[3],
        "450 4.7.25 Client host rejected: cannot find your hostname, [127.0.0.5]"
    );
    // The name has no address: forged (5xx).
    let r = session(&m, "127.0.0.6", &dialogue);
    assert_eq!(
        r[3],
        "550 5.7.25 Client host rejected: cannot find your hostname, [127.0.0.6]"
    );
    // The forward lookup fails temporarily: 450.
    let r = session(&m, "127.0.0.8", &dialogue);
    assert_eq!(
        r[3],
        "450 4.7.25 Client host rejected: cannot find your hostname, [127.0.0.8]"
    );
    // /etc/hosts answers first (the first name of the line).
    let r = session(&m, "127.0.0.7", &dialogue);
    assert_eq!(r[3], "250 2.1.5 Ok");
    let log = lines(&log_with(
        &m,
        "disconnect from hosts-only.example.test[127.0.0.7]",
    ));
    let has = |l: &str| log.iter().any(|x| x == l);
    assert!(has("connect from good.example.test[127.0.0.2]"), "{log:#?}");
    assert!(
        has("warning: hostname forged.example.test does not resolve to address 127.0.0.3"),
        "{log:#?}"
    );
    assert!(has("connect from unknown[127.0.0.3]"), "{log:#?}");
    assert!(has("connect from unknown[127.0.0.4]"), "{log:#?}");
    assert!(
        has(
            "warning: hostname noaddr.example.test does not resolve to address 127.0.0.6: No address associated with hostname"
        ),
        "{log:#?}"
    );
    assert!(
        has(
            "warning: hostname flaky.example.test does not resolve to address 127.0.0.8: Temporary failure in name resolution"
        ),
        "{log:#?}"
    );
    assert!(
        has(
            "NOQUEUE: reject: RCPT from unknown[127.0.0.3]: 550 5.7.25 Client host rejected: cannot find your hostname, [127.0.0.3]; from=<a@good.example.test> to=<u@mx.example.test> proto=SMTP helo=<client.test>"
        ),
        "{log:#?}"
    );
    assert!(
        has("connect from hosts-only.example.test[127.0.0.7]"),
        "{log:#?}"
    );
}

#[test]
fn reverse_client_name_and_peername_lookup() {
    let dns = DnsServer::start(zone());
    let m = start(
        "rev",
        &dns,
        "smtpd_client_restrictions = reject_unknown_reverse_client_hostname\n\
         smtpd_delay_reject = no\n",
        &[],
    );
    // A forged name still has a reverse name.
    let r = session(&m, "127.0.0.3", &["HELO x"]);
    assert_eq!(r[0], "220 mx.example.test ESMTP Postfix");
    let r = session(&m, "127.0.0.4", &[]);
    assert_eq!(
        r[0],
        "450 4.7.1 Client host rejected: cannot find your reverse hostname, [127.0.0.4]"
    );
    drop(m);
    // smtpd_peername_lookup = no: every client is unknown (permanently).
    let m = start(
        "nolookup",
        &dns,
        "smtpd_peername_lookup = no\nunknown_client_reject_code = 554\n\
         smtpd_client_restrictions = reject_unknown_client_hostname\nsmtpd_delay_reject = no\n",
        &[],
    );
    let r = session(&m, "127.0.0.2", &[]);
    assert_eq!(
        r[0],
        "554 5.7.25 Client host rejected: cannot find your hostname, [127.0.0.2]"
    );
    let log = lines(&log_with(&m, "connect from unknown[127.0.0.2]"));
    assert!(
        log.iter().any(|l| l == "connect from unknown[127.0.0.2]"),
        "{log:#?}"
    );
}

#[test]
fn unknown_helo_sender_and_recipient_domains() {
    let dns = DnsServer::start(zone());
    let m = start(
        "unk",
        &dns,
        "smtpd_helo_required = yes\nsmtpd_relay_restrictions = permit\n\
         smtpd_helo_restrictions = reject_unknown_helo_hostname\n\
         smtpd_sender_restrictions = reject_unknown_sender_domain\n\
         smtpd_recipient_restrictions = reject_unknown_recipient_domain, check_client_access static:OK, reject\n",
        &[],
    );
    let r = session(
        &m,
        "127.0.0.2",
        &[
            "HELO nx.example.test",
            "MAIL FROM:<a@good.example.test>",
            "RCPT TO:<u@mx.example.test>",
        ],
    );
    assert_eq!(
        r[3],
        "450 4.7.1 <nx.example.test>: Helo command rejected: Host not found"
    );
    // An MX record is enough for a HELO name, and so is a null MX.
    for helo in [
        "mxonly.example.test",
        "nullmx.example.test",
        "aonly.example.test",
        "[127.0.0.2]",
    ] {
        let r = session(
            &m,
            "127.0.0.2",
            &[
                &format!("HELO {helo}"),
                "MAIL FROM:<a@good.example.test>",
                "RCPT TO:<u@mx.example.test>",
            ],
        );
        assert_eq!(r[3], "250 2.1.5 Ok", "{helo}");
    }
    // Sender domains.
    let rcpt = |from: &str, to: &str| {
        session(
            &m,
            "127.0.0.2",
            &[
                "HELO good.example.test",
                &format!("MAIL FROM:<{from}>"),
                &format!("RCPT TO:<{to}>"),
            ],
        )[3]
        .clone()
    };
    assert_eq!(
        rcpt("a@nx.example.test", "u@mx.example.test"),
        "450 4.1.8 <a@nx.example.test>: Sender address rejected: Domain not found"
    );
    assert_eq!(
        rcpt("a@nullmx.example.test", "u@mx.example.test"),
        "550 5.7.27 <a@nullmx.example.test>: Sender address rejected: Domain nullmx.example.test does not accept mail (nullMX)"
    );
    assert_eq!(
        rcpt("a@aonly.example.test", "u@mx.example.test"),
        "250 2.1.5 Ok"
    );
    assert_eq!(rcpt("a@[192.0.2.1]", "u@mx.example.test"), "250 2.1.5 Ok");
    // A temporary failure: defer_if_permit, so the final permit gives 450.
    assert_eq!(
        rcpt("a@servfail.example.test", "u@mx.example.test"),
        "450 4.1.8 <a@servfail.example.test>: Sender address rejected: Domain not found"
    );
    // Recipient domains.
    assert_eq!(
        rcpt("a@good.example.test", "b@nx.example.test"),
        "450 4.1.2 <b@nx.example.test>: Recipient address rejected: Domain not found"
    );
    assert_eq!(
        rcpt("a@good.example.test", "b@nullmx.example.test"),
        "556 5.1.10 <b@nullmx.example.test>: Recipient address rejected: Domain nullmx.example.test does not accept mail (nullMX)"
    );
    assert_eq!(
        rcpt("a@good.example.test", "b@mxonly.example.test"),
        "250 2.1.5 Ok"
    );
    let log = lines(&log_with(
        &m,
        "Domain not found; from=<a@good.example.test> to=<b@nx.example.test>",
    ));
    assert!(log.iter().any(|l| l == "NOQUEUE: reject: RCPT from good.example.test[127.0.0.2]: 450 4.1.2 <b@nx.example.test>: Recipient address rejected: Domain not found; from=<a@good.example.test> to=<b@nx.example.test> proto=SMTP helo=<good.example.test>"), "{log:#?}");
}

#[test]
fn unknown_codes_and_tempfail_actions() {
    let dns = DnsServer::start(zone());
    let m = start(
        "codes",
        &dns,
        "unknown_address_reject_code = 550\nunknown_hostname_reject_code = 554\n\
         unknown_helo_hostname_tempfail_action = defer\n\
         smtpd_helo_restrictions = reject_unknown_helo_hostname\n\
         smtpd_sender_restrictions = reject_unknown_sender_domain\n",
        &[],
    );
    let r = session(
        &m,
        "127.0.0.2",
        &[
            "HELO nx.example.test",
            "MAIL FROM:<a@nx.example.test>",
            "RCPT TO:<u@mx.example.test>",
        ],
    );
    assert_eq!(
        r[3],
        "554 5.7.1 <nx.example.test>: Helo command rejected: Host not found"
    );
    let r = session(
        &m,
        "127.0.0.2",
        &[
            "HELO good.example.test",
            "MAIL FROM:<a@nx.example.test>",
            "RCPT TO:<u@mx.example.test>",
        ],
    );
    assert_eq!(
        r[3],
        "550 5.1.8 <a@nx.example.test>: Sender address rejected: Domain not found"
    );
    // With "defer", a temporary failure is a 450 even with nothing after it.
    let r = session(
        &m,
        "127.0.0.2",
        &[
            "HELO servfail.example.test",
            "MAIL FROM:<a@good.example.test>",
            "RCPT TO:<u@mx.example.test>",
        ],
    );
    assert_eq!(
        r[3],
        "450 4.7.1 <servfail.example.test>: Helo command rejected: Host not found"
    );
    // defer_if_permit (the default for addresses) does nothing when the
    // recipient is rejected anyway, and defers a permit.
    let r = session(
        &m,
        "127.0.0.4",
        &[
            "HELO good.example.test",
            "MAIL FROM:<a@servfail.example.test>",
            "RCPT TO:<u@elsewhere.test>",
            "RCPT TO:<u@mx.example.test>",
        ],
    );
    assert_eq!(r[3], "454 4.7.1 <u@elsewhere.test>: Relay access denied");
    assert_eq!(
        r[4],
        "450 4.1.8 <a@servfail.example.test>: Sender address rejected: Domain not found"
    );
}

#[test]
fn dnsbl_rhsbl_and_dnswl() {
    let dns = DnsServer::start(zone());
    let m = start(
        "rbl",
        &dns,
        "smtpd_client_restrictions = permit_dnswl_client wl.test=127.0.0.[4..5], reject_rbl_client bl.test=127.0.0.[2;3], \
         reject_rbl_client bl.test\n\
         smtpd_sender_restrictions = reject_rhsbl_sender rhs.test=127.0.0.2\n\
         smtpd_helo_restrictions = reject_rhsbl_helo rhs.test\n\
         smtpd_delay_reject = no\n",
        &[],
    );
    // Listed in the allow list: permitted before the block list.
    let r = session(
        &m,
        "127.0.0.2",
        &["HELO x.test", "MAIL FROM:<a@good.example.test>"],
    );
    assert_eq!(r[0], "220 mx.example.test ESMTP Postfix");
    assert_eq!(r[2], "250 2.1.0 Ok");
    // Listed, with a TXT reason.
    let r = session(&m, "127.0.0.3", &[]);
    assert_eq!(
        r[0],
        "554 5.7.1 Service unavailable; Client host [127.0.0.3] blocked using bl.test"
    );
    // A lookup error gives the benefit of the doubt (and is logged).
    let r = session(
        &m,
        "127.0.0.6",
        &[
            "HELO good.example.test",
            "MAIL FROM:<a@spam.example.test>",
            "MAIL FROM:<a@good.example.test>",
        ],
    );
    assert_eq!(r[0], "220 mx.example.test ESMTP Postfix");
    assert_eq!(
        r[1],
        "554 5.7.1 Service unavailable; Helo command [good.example.test] blocked using rhs.test"
    );
    let r = session(
        &m,
        "127.0.0.6",
        &[
            "HELO mxonly.example.test",
            "MAIL FROM:<a@spam.example.test>",
            "MAIL FROM:<a@good.example.test>",
        ],
    );
    assert_eq!(
        r[2],
        "554 5.7.1 Service unavailable; Sender address [a@spam.example.test] blocked using rhs.test; spammer"
    );
    assert_eq!(r[3], "250 2.1.0 Ok");
    let log = lines(&log_with(&m, "blocked using rhs.test; spammer"));
    assert!(log.iter().any(|l| l == "warning: 6.0.0.127.bl.test: RBL lookup error: Host or domain name not found. Name service error for name=6.0.0.127.bl.test type=A: Host not found, try again"), "{log:#?}");
    assert!(log.iter().any(|l| l == "NOQUEUE: reject: CONNECT from unknown[127.0.0.3]: 554 5.7.1 Service unavailable; Client host [127.0.0.3] blocked using bl.test; from=<> to=<> proto=SMTP"
        || l.starts_with("NOQUEUE: reject: CONNECT from unknown[127.0.0.3]: 554 5.7.1 Service unavailable; Client host [127.0.0.3] blocked using bl.test;")), "{log:#?}");
}

#[test]
fn rbl_reply_templates() {
    let dns = DnsServer::start(zone());
    let m = start(
        "rblreply",
        &dns,
        "smtpd_recipient_restrictions = reject_rbl_client bl.test, permit\n\
         rbl_reply_maps = texthash:$DIR/rbl_reply\n\
         maps_rbl_reject_code = 550\n",
        &[(
            "rbl_reply",
            "bl.test $rbl_code 5.7.2 Go away $client_address ($rbl_class $rbl_what via $rbl_domain: $rbl_reason)\n",
        )],
    );
    let r = session(
        &m,
        "127.0.0.2",
        &[
            "HELO x.test",
            "MAIL FROM:<a@good.example.test>",
            "RCPT TO:<u@mx.example.test>",
        ],
    );
    assert_eq!(
        r[3],
        "550 5.7.2 Go away 127.0.0.2 (Client host 127.0.0.2 via bl.test: Listed, see http://bl.test/?127.0.0.2)"
    );
    drop(m);
    let m = start(
        "rbldefault",
        &dns,
        "smtpd_recipient_restrictions = reject_rbl_client bl.test, permit\n\
         default_rbl_reply = $rbl_code Blocked by $rbl_domain${rbl_reason?: $rbl_reason}\n",
        &[],
    );
    let r = session(
        &m,
        "127.0.0.2",
        &[
            "HELO x.test",
            "MAIL FROM:<a@good.example.test>",
            "RCPT TO:<u@mx.example.test>",
        ],
    );
    assert_eq!(
        r[3],
        "554 5.7.1 Blocked by bl.test: Listed, see http://bl.test/?127.0.0.2"
    );
}

#[test]
fn server_access_checks() {
    let dns = DnsServer::start(zone());
    let m = start(
        "mxns",
        &dns,
        "smtpd_sender_restrictions = check_sender_mx_access inline:{ {mx.bad.test=REJECT bad mail server} }, \
         check_sender_ns_access inline:{ {192.0.2.67=REJECT bad name server} }, \
         check_sender_a_access inline:{ {192.0.2.20=REJECT bad address} }\n\
         smtpd_client_restrictions = check_client_mx_access inline:{192.0.2.10=DUNNO}, \
         check_client_ns_access inline:{ns1.good.example.test=OK}\n",
        &[],
    );
    let rcpt = |from: &str| {
        session(
            &m,
            "127.0.0.4",
            &[
                "HELO x.test",
                &format!("MAIL FROM:<{from}>"),
                "RCPT TO:<u@mx.example.test>",
            ],
        )[3]
        .clone()
    };
    assert_eq!(
        rcpt("a@badmx.example.test"),
        "554 5.7.1 <a@badmx.example.test>: Sender address rejected: bad mail server"
    );
    // NS records are looked for in the parent domains.
    assert_eq!(
        rcpt("a@deep.sub.zone.test"),
        "554 5.7.1 <a@deep.sub.zone.test>: Sender address rejected: bad name server"
    );
    assert_eq!(
        rcpt("a@aonly.example.test"),
        "554 5.7.1 <a@aonly.example.test>: Sender address rejected: bad address"
    );
    assert_eq!(rcpt("a@good.example.test"), "250 2.1.5 Ok");
    // OK from a server access table is refused, for security.
    let r = session(
        &m,
        "127.0.0.2",
        &[
            "HELO x.test",
            "MAIL FROM:<a@good.example.test>",
            "RCPT TO:<u@mx.example.test>",
        ],
    );
    assert_eq!(r[3], "451 4.3.5 Server configuration error");
    let log = lines(&log_with(&m, "use DUNNO instead of OK"));
    for w in [
        "warning: restriction check_client_ns_access returns OK for good.example.test",
        "warning: this is not allowed for security reasons",
        "warning: use DUNNO instead of OK if you want to make an exception",
    ] {
        assert!(log.iter().any(|l| l == w), "{w}: {log:#?}");
    }
}

#[test]
fn permit_mx_backup_for_listed_domains() {
    let dns = DnsServer::start(zone());
    let m = start(
        "backup",
        &dns,
        "smtpd_relay_restrictions =\nsmtpd_recipient_restrictions = permit_mx_backup, reject\n",
        &[],
    );
    let rcpt = |to: &str| {
        session(
            &m,
            "127.0.0.4",
            &[
                "HELO x.test",
                "MAIL FROM:<a@good.example.test>",
                &format!("RCPT TO:<{to}>"),
            ],
        )[3]
        .clone()
    };
    assert_eq!(rcpt("u@backup.example.test"), "250 2.1.5 Ok");
    assert_eq!(
        rcpt("u@notours.example.test"),
        "554 5.7.1 <u@notours.example.test>: Recipient address rejected: Access denied"
    );
    assert_eq!(rcpt("u@mx.example.test"), "250 2.1.5 Ok");
    drop(m);
    // The primary MX must be inside permit_mx_backup_networks when set.
    let m = start(
        "backupnets",
        &dns,
        "smtpd_relay_restrictions =\nsmtpd_recipient_restrictions = permit_mx_backup, reject\n\
         permit_mx_backup_networks = 198.51.100.0/24\n",
        &[],
    );
    let r = session(
        &m,
        "127.0.0.4",
        &[
            "HELO x.test",
            "MAIL FROM:<a@good.example.test>",
            "RCPT TO:<u@backup.example.test>",
        ],
    );
    assert_eq!(
        r[3],
        "554 5.7.1 <u@backup.example.test>: Recipient address rejected: Access denied"
    );
}

// ------------------------------------------------------------------
// Live comparison with Postfix 3.7.11.
//
// Postfix asks the DNS through libc (port 53 of the resolv.conf servers)
// and reads /etc/hosts. The test re-runs itself under `unshare -n -m`: in
// a private network namespace with loopback up, the test DNS server
// listens on 127.0.0.1:53, and /etc/resolv.conf and /etc/hosts are
// bind-mounted over with the test's own. Both systems (Postfix's master
// with its smtpd, ours) then get the same dialogues from 127.0.0.x, and
// the replies and smtpd log lines must be identical. Without unshare or
// the reference, ours (through ROSTFIX_DNS_SERVER) is compared with
// tests/golden/smtpd_dns/postfix.txt, recorded from such a live run
// (ROSTFIX_RECORD_GOLDEN=1 rewrites it).

use common::instance::{Instance, Side};

const CLASS_CF: &str = "mydestination = $myhostname, localhost\nmynetworks = 127.0.0.1/32\n\
local_recipient_maps =\nalias_maps =\nalias_database =\nsmtpd_client_connection_count_limit = 0\n\
smtpd_relay_restrictions = check_client_access inline:{ 127.0.0.2=OK, 127.0.0.3=OK, \
127.0.0.4=OK, 127.0.0.5=OK, 127.0.0.6=OK, 127.0.0.7=OK, 127.0.0.8=OK }, reject\n\
unknown_client_reject_code = 550\n\
smtpd_restriction_classes = c_client c_reverse c_helo c_sender c_rcptdom c_rbl c_rhsbl c_mx c_ns c_a c_backup\n\
c_client = reject_unknown_client_hostname\n\
c_reverse = reject_unknown_reverse_client_hostname\n\
c_helo = reject_unknown_helo_hostname\n\
c_sender = reject_unknown_sender_domain\n\
c_rcptdom = reject_unknown_recipient_domain\n\
c_rbl = reject_rbl_client bl.test=127.0.0.[2;3], reject_rbl_client bl.test\n\
c_rhsbl = reject_rhsbl_sender rhs.test=127.0.0.2, reject_rhsbl_helo rhs.test\n\
c_mx = check_sender_mx_access inline:{ {mx.bad.test=REJECT bad mail server} }\n\
c_ns = check_sender_ns_access inline:{ {192.0.2.67=REJECT bad name server} }\n\
c_a = check_sender_a_access inline:{ {192.0.2.20=REJECT bad address} }\n\
c_backup = permit_mx_backup, reject\n\
smtpd_recipient_restrictions = check_recipient_access inline:{ \
client@mx.example.test=c_client, reverse@mx.example.test=c_reverse, helo@mx.example.test=c_helo, \
sender@mx.example.test=c_sender, nx.example.test=c_rcptdom, nullmx.example.test=c_rcptdom, \
servfail.example.test=c_rcptdom, rbl@mx.example.test=c_rbl, rhsbl@mx.example.test=c_rhsbl, \
mx@mx.example.test=c_mx, ns@mx.example.test=c_ns, a@mx.example.test=c_a, \
backup.example.test=c_backup, notours.example.test=c_backup }, permit\n";

/// (client address, HELO name, sender, recipient)
const CASES: &[(&str, &str, &str, &str)] = &[
    (
        "127.0.0.2",
        "good.example.test",
        "a@good.example.test",
        "client@mx.example.test",
    ),
    (
        "127.0.0.3",
        "good.example.test",
        "a@good.example.test",
        "client@mx.example.test",
    ),
    (
        "127.0.0.4",
        "good.example.test",
        "a@good.example.test",
        "client@mx.example.test",
    ),
    (
        "127.0.0.5",
        "good.example.test",
        "a@good.example.test",
        "client@mx.example.test",
    ),
    (
        "127.0.0.6",
        "good.example.test",
        "a@good.example.test",
        "client@mx.example.test",
    ),
    (
        "127.0.0.7",
        "good.example.test",
        "a@good.example.test",
        "client@mx.example.test",
    ),
    (
        "127.0.0.8",
        "good.example.test",
        "a@good.example.test",
        "client@mx.example.test",
    ),
    (
        "127.0.0.3",
        "good.example.test",
        "a@good.example.test",
        "reverse@mx.example.test",
    ),
    (
        "127.0.0.4",
        "good.example.test",
        "a@good.example.test",
        "reverse@mx.example.test",
    ),
    (
        "127.0.0.2",
        "nx.example.test",
        "a@good.example.test",
        "helo@mx.example.test",
    ),
    (
        "127.0.0.2",
        "mxonly.example.test",
        "a@good.example.test",
        "helo@mx.example.test",
    ),
    (
        "127.0.0.2",
        "servfail.example.test",
        "a@good.example.test",
        "helo@mx.example.test",
    ),
    (
        "127.0.0.2",
        "good.example.test",
        "a@nx.example.test",
        "sender@mx.example.test",
    ),
    (
        "127.0.0.2",
        "good.example.test",
        "a@nullmx.example.test",
        "sender@mx.example.test",
    ),
    (
        "127.0.0.2",
        "good.example.test",
        "a@servfail.example.test",
        "sender@mx.example.test",
    ),
    (
        "127.0.0.2",
        "good.example.test",
        "a@aonly.example.test",
        "sender@mx.example.test",
    ),
    (
        "127.0.0.2",
        "good.example.test",
        "a@good.example.test",
        "b@nx.example.test",
    ),
    (
        "127.0.0.2",
        "good.example.test",
        "a@good.example.test",
        "b@nullmx.example.test",
    ),
    (
        "127.0.0.2",
        "good.example.test",
        "a@good.example.test",
        "b@servfail.example.test",
    ),
    (
        "127.0.0.2",
        "x.test",
        "a@good.example.test",
        "rbl@mx.example.test",
    ),
    (
        "127.0.0.3",
        "x.test",
        "a@good.example.test",
        "rbl@mx.example.test",
    ),
    (
        "127.0.0.6",
        "x.test",
        "a@good.example.test",
        "rbl@mx.example.test",
    ),
    (
        "127.0.0.4",
        "x.test",
        "a@spam.example.test",
        "rhsbl@mx.example.test",
    ),
    (
        "127.0.0.4",
        "good.example.test",
        "a@good.example.test",
        "rhsbl@mx.example.test",
    ),
    (
        "127.0.0.4",
        "x.test",
        "a@badmx.example.test",
        "mx@mx.example.test",
    ),
    (
        "127.0.0.4",
        "x.test",
        "a@deep.sub.zone.test",
        "ns@mx.example.test",
    ),
    (
        "127.0.0.4",
        "x.test",
        "a@aonly.example.test",
        "ns@mx.example.test",
    ),
    (
        "127.0.0.4",
        "x.test",
        "a@aonly.example.test",
        "a@mx.example.test",
    ),
    (
        "127.0.0.4",
        "x.test",
        "a@good.example.test",
        "u@backup.example.test",
    ),
    (
        "127.0.0.4",
        "x.test",
        "a@good.example.test",
        "u@notours.example.test",
    ),
];

fn live_transcripts(side: Side, base: &std::path::Path, port: u16) -> (Vec<String>, Vec<String>) {
    let dir = base.join(match side {
        Side::Ours => "ours",
        Side::Postfix => "postfix",
    });
    let mut inst = Instance::new(side, &dir, CLASS_CF, &[]);
    if side == Side::Ours && !dir.join("bin/smtpd").exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_rostfix"), dir.join("bin/smtpd")).unwrap();
    }
    let mcf = dir.join("conf/master.cf");
    let mut text = std::fs::read_to_string(&mcf).unwrap();
    text.push_str(&format!("127.0.0.1:{port} inet n - n - - smtpd\n"));
    std::fs::write(&mcf, text).unwrap();
    let f = std::fs::File::options().write(true).open(&mcf).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    inst.start();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t0 = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{side:?} smtpd did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let fake = Smtpd {
        child: Command::new("true").spawn().unwrap(),
        addr,
        log: Arc::new(Mutex::new(String::new())),
        dir: base.join("none"),
    };
    let mut replies = Vec::new();
    for (from, helo, sender, rcpt) in CASES {
        let r = session(
            &fake,
            from,
            &[
                &format!("HELO {helo}"),
                &format!("MAIL FROM:<{sender}>"),
                &format!("RCPT TO:<{rcpt}>"),
            ],
        );
        replies.push(format!("{from} {helo} {sender} {rcpt}: {}", r.join(" | ")));
    }
    let t0 = Instant::now();
    let mut log = String::new();
    while t0.elapsed() < Duration::from_secs(10) {
        log = inst.log();
        // Every case's session has ended (the listener probe from
        // 127.0.0.1 logs a disconnect of its own: not counted).
        let ended = log
            .lines()
            .filter(|l| l.contains(": disconnect from ") && !l.contains("[127.0.0.1]"))
            .count();
        if ended >= CASES.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    inst.stop();
    // The smtpd lines, without the queue IDs; the instances run no anvil
    // service (Postfix's smtpd warns about that on every connection).
    let mut smtpd_lines: Vec<String> = log
        .lines()
        .filter(|l| l.contains("/smtpd[") && !l.contains("private/anvil"))
        .map(|l| {
            let t = &l[l.find("]: ").map(|i| i + 3).unwrap_or(0)..];
            match t.split_once(": client=") {
                Some((q, rest)) if q.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    format!("QID: client={rest}")
                }
                _ => t.to_string(),
            }
        })
        .collect();
    smtpd_lines.sort();
    (replies, smtpd_lines)
}

fn golden_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/smtpd_dns/postfix.txt")
}

/// The child side: inside the private namespaces.
fn namespace_child() {
    let base = std::env::temp_dir().join(format!("rostfix-smtpd-dns-ns-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    assert!(
        Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .unwrap()
            .success()
    );
    std::fs::write(
        base.join("resolv.conf"),
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    )
    .unwrap();
    std::fs::write(base.join("hosts"), HOSTS).unwrap();
    for (src, dst) in [("resolv.conf", "/etc/resolv.conf"), ("hosts", "/etc/hosts")] {
        let ok = Command::new("mount")
            .arg("--bind")
            .arg(base.join(src))
            .arg(dst)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount --bind {dst}");
    }
    let _dns =
        DnsServer::start_on(zone(), "127.0.0.1:53".parse().unwrap()).expect("bind 127.0.0.1:53");
    let (pr, pl) = live_transcripts(Side::Postfix, &base, 2525);
    let (or, ol) = live_transcripts(Side::Ours, &base, 2526);
    let mut out = String::new();
    for l in pr.iter().chain(["--".to_string()].iter()).chain(pl.iter()) {
        out.push_str(l);
        out.push('\n');
    }
    std::fs::write(base.join("postfix.txt"), &out).unwrap();
    println!("NSRESULT {}", base.join("postfix.txt").display());
    assert_eq!(or, pr, "replies differ from Postfix 3.7.11's");
    assert_eq!(ol, pl, "smtpd log lines differ from Postfix 3.7.11's");
    let _ = std::fs::remove_dir_all(base.join("ours"));
    let _ = std::fs::remove_dir_all(base.join("postfix"));
}

#[test]
fn postfix_in_namespace() {
    if std::env::var_os("ROSTFIX_DNS_NS_CHILD").is_some() {
        namespace_child();
        return;
    }
    let can_live = common::instance::is_root()
        && common::queue::reference().is_some()
        && Command::new("unshare")
            .args(["-n", "-m", "true"])
            .status()
            .is_ok_and(|s| s.success());
    if can_live {
        let mut child = Command::new("unshare")
            .args(["-n", "-m", "--"])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "postfix_in_namespace",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("ROSTFIX_DNS_NS_CHILD", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if t0.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "namespace run failed:\n{text}");
        if std::env::var_os("ROSTFIX_RECORD_GOLDEN").is_some()
            && let Some(p) = text
                .lines()
                .find_map(|l| l.find("NSRESULT ").map(|i| l[i + 9..].trim().to_string()))
        {
            std::fs::create_dir_all(golden_path().parent().unwrap()).unwrap();
            std::fs::copy(&p, golden_path()).unwrap();
        }
        if let Some(p) = text
            .lines()
            .find_map(|l| l.find("NSRESULT ").map(|i| l[i + 9..].trim().to_string()))
            && let Some(d) = std::path::Path::new(&p).parent()
        {
            let _ = std::fs::remove_dir_all(d);
        }
        return;
    }
    // Fallback: ours against the recorded replies.
    let golden = std::fs::read_to_string(golden_path()).expect("golden transcript");
    let want: Vec<&str> = golden.lines().take_while(|l| *l != "--").collect();
    let dns = DnsServer::start(zone());
    // The instances' myhostname.
    let m = start(
        "golden",
        &dns,
        &format!("{CLASS_CF}myhostname = test.example\n"),
        &[],
    );
    let mut got = Vec::new();
    for (from, helo, sender, rcpt) in CASES {
        let r = session(
            &m,
            from,
            &[
                &format!("HELO {helo}"),
                &format!("MAIL FROM:<{sender}>"),
                &format!("RCPT TO:<{rcpt}>"),
            ],
        );
        got.push(format!("{from} {helo} {sender} {rcpt}: {}", r.join(" | ")));
    }
    assert_eq!(got, want);
}
