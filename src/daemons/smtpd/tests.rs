//! Byte-level transcripts: client bytes in, exact server replies and log
//! lines out. Expected texts are Postfix 3.7.11's, recorded from the real
//! smtpd on the same main.cf (see compat/smtpd/README.md for the commands)
//! and from ../shared/reference/postfix-3.7-samples.txt.

use super::check::Checker;
use super::conf::Conf;
use super::proto::{Config, Peer, Session};
use super::sink::{MemorySink, RecordKind};
use super::state::{Event, PeerCode};
use crate::global::mail_conf::MailConf;

const BASE: &str = "compatibility_level = 3.6
myhostname = mx.example.test
mydomain = example.test
smtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU)
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
mydestination = $myhostname, localhost
local_recipient_maps =
alias_maps =
smtpd_error_sleep_time = 0
smtpd_client_connection_count_limit = 0
";

// The connection count limit is off: these sessions run without an anvil
// service (with one, the limit of 50 is never reached here).
const EHLO: &str = "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n";
const BANNER: &str = "220 mx.example.test ESMTP Postfix (Debian/GNU)\r\n";

fn peer2() -> Peer {
    Peer {
        name: "unknown".into(),
        reverse_name: "unknown".into(),
        addr: "127.0.0.2".into(),
        port: "40000".into(),
        server_addr: "127.0.0.1".into(),
        server_port: "25".into(),
        name_status: PeerCode::Perm,
        reverse_name_status: PeerCode::Perm,
        stand_alone: false,
    }
}

fn localhost() -> Peer {
    Peer {
        name: "localhost".into(),
        reverse_name: "localhost".into(),
        addr: "127.0.0.1".into(),
        port: "40000".into(),
        server_addr: "127.0.0.1".into(),
        server_port: "25".into(),
        ..Peer::default()
    }
}

struct Out {
    replies: String,
    logs: Vec<String>,
    sleeps: usize,
    sink: MemorySink,
}

/// Run a session: each chunk is one read; then EOF (unless `eof` is false,
/// in which case the session times out).
fn run(extra: &str, peer: Peer, chunks: &[&[u8]], eof: bool) -> Out {
    let mc = MailConf::from_text("/nonexistent", &format!("{BASE}{extra}"));
    let c = Conf::new(mc);
    let mut cfg = Config::from_conf(&c);
    let mut ck = Checker::from_conf(&c);
    let sink = MemorySink::new();
    let mut sk = sink.clone();
    let mut s = Session::new(&mut cfg, &mut ck, &mut sk, peer);
    let mut ev = s.start(b"");
    for ch in chunks {
        ev.extend(s.input(ch));
    }
    ev.extend(if eof { s.eof() } else { s.timeout() });
    let mut out = Out {
        replies: String::new(),
        logs: Vec::new(),
        sleeps: 0,
        sink,
    };
    let mut closes = 0;
    for e in ev {
        match e {
            Event::Reply(b) => out.replies.push_str(&crate::util::latin1::decode(&b)),
            Event::Log(l) => out.logs.push(l),
            Event::Sleep(_) => out.sleeps += 1,
            Event::Close => closes += 1,
        }
    }
    assert_eq!(closes, 1, "one close per session");
    out
}

fn lines(s: &str) -> Vec<&str> {
    s.split_inclusive("\r\n").collect()
}

#[test]
fn sample_session_replies_and_statistics() {
    // The session in postfix-3.7-samples.txt (first postmaster transcript),
    // with mynetworks trust from localhost.
    let o = run(
        "",
        localhost(),
        &[b"EHLO client.example.org\r\n", b"HELO client.example.org\r\n", b"MAIL FROM:<sender@example.org> SIZE=100\r\nRCPT TO:<root@mx.example.test>\r\n",
          b"DATA\r\n",
          b"Subject: test\r\nFrom: a@example.org\r\n\r\nhello\r\n.\r\n",
          b"RSET\r\n", b"NOOP\r\n", b"VRFY root\r\n", b"EXPN root\r\nHELP\r\nFOOBAR\r\nMAIL FROM:<bad\r\nMAIL FROM:<x@example.org>\r\nMAIL FROM:<y@example.org>\r\nRCPT TO:<>\r\nRSET\r\n", b"DATA\r\n", b"QUIT\r\n"],
        true,
    );
    let want = format!(
        "{BANNER}{EHLO}250 mx.example.test\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as 00000001001\r\n\
250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n252 2.0.0 root\r\n500 5.5.2 Error: command not recognized\r\n500 5.5.2 Error: command not recognized\r\n\
500 5.5.2 Error: command not recognized\r\n501 5.1.7 Bad sender address syntax\r\n250 2.1.0 Ok\r\n503 5.5.1 Error: nested MAIL command\r\n\
501 5.1.3 Bad recipient address syntax\r\n250 2.0.0 Ok\r\n503 5.5.1 Error: need RCPT command\r\n221 2.0.0 Bye\r\n"
    );
    assert_eq!(lines(&o.replies), lines(&want));
    assert_eq!(o.logs[0], "connect from localhost[127.0.0.1]");
    assert_eq!(o.logs[1], "00000001001: client=localhost[127.0.0.1]");
    assert!(
        o.logs.contains(
            &"warning: Illegal address syntax from localhost[127.0.0.1] in RCPT command: <>"
                .to_string()
        )
    );
    assert_eq!(
        o.logs.last().unwrap(),
        "disconnect from localhost[127.0.0.1] helo=1 ehlo=1 mail=2/4 rcpt=1/2 data=1/2 rset=2 noop=1 vrfy=1 quit=1 unknown=0/3 commands=11/18"
    );
    let m = &o.sink.recorded()[0];
    assert_eq!(m.start.sender, "sender@example.org");
    assert_eq!(m.recipients[0].address, "root@mx.example.test");
    assert_eq!(m.recipients[0].orcpt, "rfc822;root@mx.example.test");
    let l = m.lines();
    assert_eq!(
        l[0],
        "Received: from client.example.org (localhost [127.0.0.1])"
    );
    assert_eq!(
        l[1],
        "\tby mx.example.test (Postfix) with ESMTP id 00000001001"
    );
    assert!(
        l[2].starts_with("\tfor <root@mx.example.test>; "),
        "{}",
        l[2]
    );
    assert_eq!(
        &l[3..],
        ["Subject: test", "From: a@example.org", "", "hello"]
    );
}

#[test]
fn relay_denied_from_outside_mynetworks() {
    let o = run(
        "",
        peer2(),
        &[
            b"EHLO x\r\n",
            b"MAIL FROM:<a@b.c>\r\n",
            b"RCPT TO:<x@y.z>\r\n",
            b"RCPT TO:<u%elsewhere.example@mx.example.test>\r\n",
            b"RCPT TO:<elsewhere.example!u@mx.example.test>\r\n",
            b"RCPT TO:<\"u@elsewhere.example\"@mx.example.test>\r\n",
            b"RCPT TO:<@a.example,@b.example:u@elsewhere.example>\r\n",
            b"RCPT TO:<u@[127.0.0.1]>\r\n",
            b"RCPT TO:<u@mx.example.test>\r\n",
            b"QUIT\r\n",
        ],
        true,
    );
    let want = format!(
        "{BANNER}{EHLO}250 2.1.0 Ok\r\n454 4.7.1 <x@y.z>: Relay access denied\r\n454 4.7.1 <u%elsewhere.example@mx.example.test>: Relay access denied\r\n\
454 4.7.1 <elsewhere.example!u@mx.example.test>: Relay access denied\r\n454 4.7.1 <u@elsewhere.example@mx.example.test>: Relay access denied\r\n\
454 4.7.1 <u@elsewhere.example>: Relay access denied\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n221 2.0.0 Bye\r\n"
    );
    assert_eq!(lines(&o.replies), lines(&want));
    assert_eq!(
        o.logs[1],
        "NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 454 4.7.1 <x@y.z>: Relay access denied; from=<a@b.c> to=<x@y.z> proto=ESMTP helo=<x>"
    );
    assert!(o.logs.contains(&"NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 454 4.7.1 <u@elsewhere.example@mx.example.test>: Relay access denied; from=<a@b.c> to=<\"u@elsewhere.example\"@mx.example.test> proto=ESMTP helo=<x>".to_string()));
    assert_eq!(
        o.logs.last().unwrap(),
        "disconnect from unknown[127.0.0.2] ehlo=1 mail=1 rcpt=2/7 quit=1 commands=5/10"
    );
    // reject_unauth_destination gives 554 5.7.1.
    let o = run(
        "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n",
        peer2(),
        &[
            b"HELO x\r\n",
            b"MAIL FROM:<a@b.c>\r\n",
            b"RCPT TO:<x@y.z>\r\n",
        ],
        true,
    );
    assert!(
        o.replies
            .ends_with("554 5.7.1 <x@y.z>: Relay access denied\r\n")
    );
    assert!(o.logs.iter().any(|l| l.ends_with("proto=SMTP helo=<x>")));
    assert_eq!(
        o.logs[o.logs.len() - 2],
        "lost connection after RCPT from unknown[127.0.0.2]"
    );
}

#[test]
fn access_map_actions() {
    let dir = std::env::temp_dir().join(format!("rostfix-smtpd-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let w = |n: &str, t: &str| {
        std::fs::write(dir.join(n), t).unwrap();
        format!("texthash:{}", dir.join(n).display())
    };
    let helo = w("helo", "bad.helo REJECT\nhold.helo HOLD\n");
    let snd = w(
        "snd",
        "spammer@example.org REJECT\nexample.net 550 5.7.9 No thanks\nwarn.example WARN watch it\ndefer.example DEFER_IF_PERMIT later\nuser@ 554 localpart match\n",
    );
    let rcpt = w(
        "rcpt",
        "hold@mx.example.test HOLD\nclass@elsewhere.example myclass\nok@elsewhere.example OK\nlater@mx.example.test 451 4.3.2 try later\nsub.example OK\n",
    );
    let extra = format!(
        "smtpd_helo_restrictions = check_helo_access {helo}, warn_if_reject reject_non_fqdn_helo_hostname\n\
smtpd_sender_restrictions = check_sender_access {snd}, reject_non_fqdn_sender\n\
smtpd_recipient_restrictions = check_recipient_access {rcpt}, reject_non_fqdn_recipient\n\
smtpd_restriction_classes = myclass\nmyclass = reject_unauth_destination\n"
    );
    let o = run(
        &extra,
        peer2(),
        &[
            b"EHLO bad.helo\r\n",
            b"MAIL FROM:<a@b.c>\r\n",
            b"RCPT TO:<u@mx.example.test>\r\n",
            b"RSET\r\n",
            b"EHLO hold.helo\r\n",
            b"MAIL FROM:<spammer@example.org>\r\n",
            b"RCPT TO:<u@mx.example.test>\r\n",
            b"RSET\r\n",
            b"MAIL FROM:<x@sub.example.net>\r\n",
            b"RCPT TO:<u@mx.example.test>\r\n",
            b"RSET\r\n",
            b"MAIL FROM:<x@defer.example>\r\n",
            b"RCPT TO:<u@mx.example.test>\r\n",
            b"RCPT TO:<ok@elsewhere.example>\r\n",
            b"RSET\r\n",
            b"MAIL FROM:<user@foo.example>\r\n",
            b"RCPT TO:<u@mx.example.test>\r\n",
            b"RSET\r\n",
            b"MAIL FROM:<nodots>\r\n",
            b"RCPT TO:<u@mx.example.test>\r\n",
            b"RSET\r\n",
            b"MAIL FROM:<a@b.c>\r\n",
            b"RCPT TO:<class@elsewhere.example>\r\n",
            b"RCPT TO:<later@mx.example.test>\r\n",
            b"RCPT TO:<a@x.sub.example>\r\n",
            b"RCPT TO:<nodot>\r\n",
            b"QUIT\r\n",
        ],
        true,
    );
    let want = format!(
        "{BANNER}{EHLO}250 2.1.0 Ok\r\n554 5.7.1 <bad.helo>: Helo command rejected: Access denied\r\n250 2.0.0 Ok\r\n\
{EHLO}250 2.1.0 Ok\r\n554 5.7.1 <spammer@example.org>: Sender address rejected: Access denied\r\n250 2.0.0 Ok\r\n\
250 2.1.0 Ok\r\n550 5.7.9 <x@sub.example.net>: Sender address rejected: No thanks\r\n250 2.0.0 Ok\r\n\
250 2.1.0 Ok\r\n450 4.7.1 <x@defer.example>: Sender address rejected: later\r\n454 4.7.1 <ok@elsewhere.example>: Relay access denied\r\n250 2.0.0 Ok\r\n\
250 2.1.0 Ok\r\n554 5.7.1 <user@foo.example>: Sender address rejected: localpart match\r\n250 2.0.0 Ok\r\n\
250 2.1.0 Ok\r\n504 5.5.2 <nodots>: Sender address rejected: need fully-qualified address\r\n250 2.0.0 Ok\r\n\
250 2.1.0 Ok\r\n454 4.7.1 <class@elsewhere.example>: Relay access denied\r\n451 4.3.2 <later@mx.example.test>: Recipient address rejected: try later\r\n\
454 4.7.1 <a@x.sub.example>: Relay access denied\r\n504 5.5.2 <nodot>: Recipient address rejected: need fully-qualified address\r\n221 2.0.0 Bye\r\n"
    );
    assert_eq!(lines(&o.replies), lines(&want));
    let has = |s: &str| o.logs.iter().any(|l| l == s);
    assert!(has(
        "NOQUEUE: hold: RCPT from unknown[127.0.0.2]: <hold.helo>: Helo command triggers HOLD action; from=<spammer@example.org> to=<u@mx.example.test> proto=ESMTP helo=<hold.helo>"
    ));
    assert!(!has(
        "NOQUEUE: warn: RCPT from unknown[127.0.0.2]: watch it; from=<x@defer.example> to=<u@mx.example.test> proto=ESMTP helo=<hold.helo>"
    ));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn pipelining_and_reject_unauth_pipelining() {
    let o = run(
        "smtpd_data_restrictions = reject_unauth_pipelining\n",
        peer2(),
        &[
            b"EHLO x\r\n",
            b"MAIL FROM:<a@b.c>\r\n",
            b"RCPT TO:<u@mx.example.test>\r\n",
            b"DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n",
            b"RSET\r\n",
            b"MAIL FROM:<a@b.c>\r\nRCPT TO:<u@mx.example.test>\r\nDATA\r\n",
            b"x\r\n.\r\nQUIT\r\n",
        ],
        true,
    );
    // "Subject: x" after the refused DATA is a header: Postfix hangs up.
    let want = format!(
        "{BANNER}{EHLO}250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n503 5.5.0 <DATA>: Data command rejected: Improper use of SMTP command pipelining\r\n\
221 2.7.0 Error: I can break rules, too. Goodbye.\r\n"
    );
    assert_eq!(lines(&o.replies), lines(&want));
    assert!(o.logs.iter().any(|l| l == "improper command pipelining after DATA from unknown[127.0.0.2]: Subject: x\\r\\n\\r\\nbody\\r\\n.\\r\\n"), "{:#?}", o.logs);
    assert!(o.replies.contains(
        "503 5.5.0 <DATA>: Data command rejected: Improper use of SMTP command pipelining\r\n"
    ));
    // Pipelining before the greeting is flagged "after CONNECT".
    let mc = MailConf::from_text("/nonexistent", BASE);
    let c = Conf::new(mc);
    let (mut cfg, mut ck, mut sk) = (
        Config::from_conf(&c),
        Checker::from_conf(&c),
        MemorySink::new(),
    );
    let mut s = Session::new(&mut cfg, &mut ck, &mut sk, peer2());
    let ev = s.start(b"EHLO x\r\n");
    assert!(ev.contains(&Event::Log(
        "improper command pipelining after CONNECT from unknown[127.0.0.2]: EHLO x\\r\\n".into()
    )));
}

#[test]
fn bare_newline_smuggling() {
    let smuggle: &[&[u8]] = &[
        b"EHLO x\r\n",
        b"MAIL FROM:<a@b.c>\r\n",
        b"RCPT TO:<u@mx.example.test>\r\n",
        b"DATA\r\n",
        b"Subject: x\n\nbody\n.\nMAIL FROM:<evil@x.y>\r\n.\r\n",
        b"QUIT\r\n",
    ];
    // Postfix 3.7.11's default: <LF>.<LF> ends the message.
    let o = run("", peer2(), smuggle, true);
    assert!(
        o.replies
            .contains("250 2.0.0 Ok: queued as 00000001001\r\n250 2.1.0 Ok\r\n"),
        "{}",
        o.replies
    );
    // normalize: only <CR><LF>.<CR><LF> ends it.
    let o = run(
        "smtpd_forbid_bare_newline = normalize\nsmtpd_forbid_bare_newline_exclusions =\n",
        peer2(),
        smuggle,
        true,
    );
    assert!(o.replies.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as 00000001001\r\n221 2.0.0 Bye\r\n"), "{}", o.replies);
    let m = &o.sink.recorded()[0];
    assert!(m.lines().contains(&"MAIL FROM:<evil@x.y>".to_string()));
    // reject: the message is refused after its end.
    let o = run(
        "smtpd_forbid_bare_newline = reject\nsmtpd_forbid_bare_newline_exclusions =\n",
        peer2(),
        smuggle,
        true,
    );
    assert!(o.replies.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n550 5.5.2 mx.example.test Error: bare <LF> received\r\n221 2.0.0 Bye\r\n"), "{}", o.replies);
    assert!(o.logs.iter().any(|l| l == "00000001001: reject: END-OF-MESSAGE from unknown[127.0.0.2]: bare <LF> received; from=<a@b.c> to=<u@mx.example.test> proto=ESMTP helo=<x>"), "{:#?}", o.logs);
    // A bare LF command with reject: reply and hang up.
    let o = run(
        "smtpd_forbid_bare_newline = reject\nsmtpd_forbid_bare_newline_exclusions =\n",
        peer2(),
        &[b"EHLO x\r\n", b"NOOP\n"],
        true,
    );
    assert!(
        o.replies
            .ends_with("550 5.5.2 mx.example.test Error: bare <LF> received\r\n")
    );
    assert_eq!(
        o.logs.last().unwrap(),
        "disconnect from unknown[127.0.0.2] ehlo=1 commands=1"
    );
}

#[test]
fn overlong_lines() {
    let mut cmd = b"NOOP ".to_vec();
    cmd.extend(std::iter::repeat_n(b'a', 3000));
    cmd.extend_from_slice(b"\r\n");
    let mut body = b"Subject: y\r\n\r\n".to_vec();
    body.extend(std::iter::repeat_n(b'b', 5000));
    body.extend_from_slice(b"\r\n.\r\n");
    let o = run(
        "",
        peer2(),
        &[
            b"EHLO x\r\n",
            &cmd,
            b"MAIL FROM:<a@b.c>\r\n",
            b"RCPT TO:<u@mx.example.test>\r\n",
            b"DATA\r\n",
            &body,
            b"QUIT\r\n",
        ],
        true,
    );
    assert!(
        o.replies
            .contains(&format!("{EHLO}250 2.0.0 Ok\r\n250 2.1.0 Ok"))
    );
    assert_eq!(
        o.logs[1],
        "warning: unknown[127.0.0.2]: request longer than 2048: NOOP aaaaaaaaaaaaaaaaaaaaaaaaa..."
    );
    let m = &o.sink.recorded()[0];
    let kinds: Vec<(RecordKind, usize)> =
        m.records[3..].iter().map(|(k, d)| (*k, d.len())).collect();
    assert_eq!(
        kinds,
        [
            (RecordKind::Norm, 10),
            (RecordKind::Norm, 0),
            (RecordKind::Cont, 2048),
            (RecordKind::Cont, 2048),
            (RecordKind::Norm, 904)
        ]
    );
}

#[test]
fn errors_until_the_hard_limit() {
    let mut input: Vec<Vec<u8>> = vec![b"EHLO x\r\n".to_vec()];
    for i in 1..=22 {
        input.push(format!("FOO{i}\r\n").into_bytes());
    }
    let refs: Vec<&[u8]> = input.iter().map(|v| v.as_slice()).collect();
    let o = run("smtpd_error_sleep_time = 1s\n", peer2(), &refs, true);
    assert_eq!(
        o.replies
            .matches("500 5.5.2 Error: command not recognized\r\n")
            .count(),
        20
    );
    assert!(o.replies.ends_with("500 5.5.2 Error: command not recognized\r\n421 4.7.0 mx.example.test Error: too many errors\r\n"));
    // Sleeps before replies once error_count reaches the soft limit (10).
    assert_eq!(o.sleeps, 11);
    assert_eq!(
        o.logs[1],
        "too many errors after UNKNOWN from unknown[127.0.0.2]"
    );
    assert_eq!(
        o.logs[2],
        "disconnect from unknown[127.0.0.2] ehlo=1 unknown=0/20 commands=1/21"
    );
}

#[test]
fn bdat_chunks_and_errors() {
    let o = run(
        "",
        peer2(),
        &[
            b"EHLO x\r\n",
            b"MAIL FROM:<a@b.c>\r\n",
            b"RCPT TO:<u@mx.example.test>\r\n",
            b"BDAT 3\r\nabcBDAT 3 LAST\r\ndef",
            b"BDAT 2 LAST\r\n",
            b"xy",
            b"BDAT x\r\n",
            b"BDAT 5 LAST\r\n",
            b"abcde",
            b"MAIL FROM:<a@b.c>\r\n",
            b"RCPT TO:<u@mx.example.test>\r\n",
            b"BDAT 0 LAST\r\n",
            b"QUIT\r\n",
        ],
        true,
    );
    let want = format!(
        "{BANNER}{EHLO}250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: 3 bytes\r\n250 2.0.0 Ok: 8 bytes queued as 00000001001\r\n\
503 5.5.1 Error: need RCPT command\r\n521 5.5.4 Syntax: BDAT count [LAST]\r\n"
    );
    assert_eq!(lines(&o.replies), lines(&want));
    assert_eq!(o.sink.recorded()[0].lines()[3..], ["abcdef".to_string()]);
    assert!(
        o.logs.iter().any(|l| l
            == "warning: NOQUEUE: malformed BDAT command syntax from unknown[127.0.0.2]: BDAT x")
    );
    // Connection lost inside a chunk.
    let o = run("", localhost(), &[b"EHLO [127.0.0.1]\r\nMAIL FROM:<t@mx.example.test>\r\nRCPT TO:<root@mx.example.test>\r\n", b"BDAT 55 LAST\r\n", &[b'x'; 52], b"\r\n"], true);
    assert_eq!(
        o.logs[o.logs.len() - 2],
        "lost connection after BDAT (54 bytes) from localhost[127.0.0.1]"
    );
    assert_eq!(
        o.logs.last().unwrap(),
        "disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt=1 bdat=0/1 commands=3/4"
    );
}

#[test]
fn misc_commands_and_timeout() {
    let o = run(
        "",
        peer2(),
        &[
            b"EHLO x\r\nMAIL FROM:<a@b> FOO=bar\r\n",
            b"AUTH PLAIN AAAA\r\n",
            b"STARTTLS\r\n",
            b"XCLIENT ADDR=1.2.3.4\r\n",
            b"ETRN example.test\r\n",
            b"VRFY\r\n",
            b"HELO\r\n",
            b"MAIL\r\n",
            b"MAIL FROM:<a@b> SIZE=x\r\n",
            b"MAIL FROM:<a@b> SIZE=99999999999\r\n",
            b"GET / HTTP/1.0\r\n",
        ],
        true,
    );
    let want = format!(
        "{BANNER}{EHLO}555 5.5.4 Unsupported option: FOO=bar\r\n503 5.5.1 Error: authentication not enabled\r\n502 5.5.1 Error: command not implemented\r\n\
550 5.7.0 Error: insufficient authorization\r\n459 <example.test>: service unavailable\r\n501 5.5.4 Syntax: VRFY address [SMTPUTF8]\r\n\
501 Syntax: HELO hostname\r\n501 5.5.4 Syntax: MAIL FROM:<address>\r\n501 5.5.4 Bad message size syntax\r\n552 5.3.4 Message size exceeds fixed limit\r\n\
221 2.7.0 Error: I can break rules, too. Goodbye.\r\n"
    );
    assert_eq!(lines(&o.replies), lines(&want));
    assert!(
        o.logs
            .iter()
            .any(|l| l == "warning: reject: ETRN example.test... from unknown[127.0.0.2]")
    );
    assert!(
        o.logs
            .iter()
            .any(|l| l == "warning: non-SMTP command from unknown[127.0.0.2]: GET / HTTP/1.0")
    );
    let o = run(
        "",
        peer2(),
        &[b"EHLO x\r\n", b"MAIL FROM:<a@b.c>\r\n"],
        false,
    );
    assert!(
        o.replies
            .ends_with("250 2.1.0 Ok\r\n421 4.4.2 mx.example.test Error: timeout exceeded\r\n")
    );
    assert_eq!(o.logs[1], "timeout after MAIL from unknown[127.0.0.2]");
    // Stand-alone (sendmail -bs): no restrictions, localhost[127.0.0.1].
    let o = run(
        "smtpd_recipient_restrictions = reject\n",
        Peer::stand_alone(),
        &[b"HELO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nQUIT\r\n"],
        true,
    );
    assert!(o.replies.ends_with("250 2.1.5 Ok\r\n221 2.0.0 Bye\r\n"));
}

#[test]
fn ehlo_keywords_discarded() {
    let o = run(
        "smtpd_discard_ehlo_keywords = pipelining, dsn, chunking\ndisable_vrfy_command = yes\nmessage_size_limit = 0\n",
        peer2(),
        &[b"EHLO x\r\n", b"VRFY u\r\n"],
        true,
    );
    assert!(o.replies.contains("250-mx.example.test\r\n250-SIZE\r\n250-ETRN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n502 5.5.1 VRFY command is disabled\r\n"), "{}", o.replies);
    assert_eq!(
        o.logs[1],
        "discarding EHLO keywords: PIPELINING DSN CHUNKING"
    );
}
