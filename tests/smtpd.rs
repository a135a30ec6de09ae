//! smtpd as a program: `smtpd -S` on stdin/stdout, and the listening mode
//! on 127.0.0.1 (a client bound to 127.0.0.2 is outside mynetworks).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_rostfix")
}

fn scratch(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("rostfix-smtpd-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("dump")).unwrap();
    std::fs::write(
        d.join("main.cf"),
        "compatibility_level = 3.6\nmyhostname = mx.example.test\nsmtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU)\n\
inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\nmynetworks = 127.0.0.1/32\nmydestination = $myhostname, localhost\n\
local_recipient_maps =\nalias_maps =\nsmtpd_timeout = 5s\nmaillog_file = /dev/stderr\nmaillog_file_prefixes = /dev/stderr\n",
    )
    .unwrap();
    d
}

#[test]
fn stand_alone_session_on_stdin() {
    let d = scratch("s");
    let mut child = Command::new(bin())
        .args(["smtpd", "-S"])
        .env("MAIL_CONFIG", &d)
        .env("ROSTFIX_SMTPD_DUMP", d.join("dump"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"HELO client\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@elsewhere.example>\r\nDATA\r\nSubject: hi\r\n\r\n..dot\r\n.\r\nQUIT\r\n")
        .unwrap();
    let start = Instant::now();
    let out = loop {
        if let Some(_st) = child.try_wait().unwrap() {
            break child.wait_with_output().unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "smtpd -S did not finish"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines[0], "220 mx.example.test ESMTP Postfix (Debian/GNU)");
    assert_eq!(lines[1], "250 mx.example.test");
    assert_eq!(lines[2], "250 2.1.0 Ok");
    // Stand-alone mode applies no relay restrictions (as Postfix).
    assert_eq!(lines[3], "250 2.1.5 Ok");
    assert_eq!(lines[4], "354 End data with <CR><LF>.<CR><LF>");
    let qid = lines[5]
        .strip_prefix("250 2.0.0 Ok: queued as ")
        .expect(lines[5]);
    assert_eq!(lines[6], "221 2.0.0 Bye");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("postfix/smtpd["), "{err}");
    assert!(
        err.contains("]: connect from localhost[127.0.0.1]\n"),
        "{err}"
    );
    assert!(
        err.contains(&format!("]: {qid}: client=localhost[127.0.0.1]\n")),
        "{err}"
    );
    assert!(err.contains("]: disconnect from localhost[127.0.0.1] helo=1 mail=1 rcpt=1 data=1 quit=1 commands=5\n"), "{err}");
    let msg = std::fs::read_to_string(d.join("dump").join(qid)).unwrap();
    assert!(
        msg.contains("Received: from client (localhost [127.0.0.1])\n"),
        "{msg}"
    );
    assert!(msg.ends_with("Subject: hi\n\n.dot\n"), "{msg}");
    let _ = std::fs::remove_dir_all(&d);
}

fn read_reply(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
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

#[test]
fn listening_mode_denies_relay_outside_mynetworks() {
    let d = scratch("l");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new(bin())
        .args(["smtpd", "-L", &format!("127.0.0.1:{port}")])
        .env("MAIL_CONFIG", &d)
        .env("ROSTFIX_SMTPD_DUMP", d.join("dump"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let start = Instant::now();
    let mut s = loop {
        // Connect from 127.0.0.2 so that mynetworks does not trust us.
        let sock = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200));
        if sock.is_ok() {
            drop(sock);
            let raw = socket2_connect_from("127.0.0.2", addr);
            break raw;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "smtpd -L did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(
        read_reply(&mut s),
        "220 mx.example.test ESMTP Postfix (Debian/GNU)\r\n"
    );
    s.write_all(b"HELO x\r\n").unwrap();
    assert_eq!(read_reply(&mut s), "250 mx.example.test\r\n");
    s.write_all(b"MAIL FROM:<a@b.c>\r\n").unwrap();
    assert_eq!(read_reply(&mut s), "250 2.1.0 Ok\r\n");
    s.write_all(b"RCPT TO:<x@elsewhere.example>\r\n").unwrap();
    assert_eq!(
        read_reply(&mut s),
        "454 4.7.1 <x@elsewhere.example>: Relay access denied\r\n"
    );
    s.write_all(b"RCPT TO:<u@mx.example.test>\r\n").unwrap();
    assert_eq!(read_reply(&mut s), "250 2.1.5 Ok\r\n");
    s.write_all(b"QUIT\r\n").unwrap();
    assert_eq!(read_reply(&mut s), "221 2.0.0 Bye\r\n");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&d);
}

/// A TCP connection whose local address is `src` (Linux routes all of
/// 127/8 to loopback).
fn socket2_connect_from(src: &str, to: SocketAddr) -> TcpStream {
    rostfix::sys::net::connect_from(src.parse().unwrap(), to).unwrap()
}
