//! smtp(8) and lmtp(8) end to end: our master runs pickup, cleanup, qmgr
//! and the smtp and lmtp clients; mail submitted with our sendmail must
//! reach a scripted SMTP and a scripted LMTP server on 127.0.0.1 (ports
//! picked by the kernel), with Postfix's log lines for each recipient.
//! As root, master runs in its normal mode (services drop to nobody); as
//! any other user, in non-root mode.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[path = "common/master_scratch.rs"]
mod master_scratch;

/// A server that accepts everything except RCPT TO:<bad@...>; LMTP gives
/// one reply per accepted recipient after DATA. Records what it received.
fn server(lmtp: bool) -> (u16, Arc<Mutex<Vec<u8>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let rec = Arc::new(Mutex::new(Vec::new()));
    let r2 = rec.clone();
    std::thread::spawn(move || {
        for c in l.incoming().take(5) {
            let Ok(c) = c else { return };
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut w = c.try_clone().unwrap();
            let mut r = BufReader::new(c);
            let _ = w.write_all(b"220 sink.test ESMTP\r\n");
            let mut accepted = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                r2.lock().unwrap().extend_from_slice(line.as_bytes());
                let v = line.get(..4).unwrap_or("").to_ascii_uppercase();
                let reply: String = match v.as_str() {
                    "EHLO" | "LHLO" => "250-sink.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n".into(),
                    "MAIL" => "250 2.1.0 Ok\r\n".into(),
                    "RCPT" if line.contains("<bad@") => "550 5.1.1 <bad>: no such user\r\n".into(),
                    "RCPT" => {
                        accepted += 1;
                        "250 2.1.5 Ok\r\n".into()
                    }
                    "DATA" => {
                        let _ = w.write_all(b"354 go ahead\r\n");
                        loop {
                            let mut l = String::new();
                            if r.read_line(&mut l).unwrap_or(0) == 0 || l == ".\r\n" {
                                break;
                            }
                            r2.lock().unwrap().extend_from_slice(l.as_bytes());
                        }
                        let n = if lmtp { accepted } else { 1 };
                        "250 2.0.0 Ok: queued as SINK1\r\n".repeat(n)
                    }
                    "QUIT" => {
                        let _ = w.write_all(b"221 2.0.0 Bye\r\n");
                        break;
                    }
                    _ => "250 2.0.0 Ok\r\n".into(),
                };
                if w.write_all(reply.as_bytes()).is_err() {
                    break;
                }
            }
        }
    });
    (port, rec)
}

#[test]
fn smtp_and_lmtp_deliver_through_qmgr() {
    let (sport, srec) = server(false);
    let (lport, lrec) = server(true);
    let dir = master_scratch::scratch_dir("smtp-e2e");
    let extra = format!(
        "transport_maps = texthash:{}/conf/transport\n",
        dir.display()
    );
    let transport = format!(
        "remote.example smtp:[127.0.0.1]:{sport}\n\
         lmtp.example lmtp:[127.0.0.1]:{lport}\n"
    );
    let s = master_scratch::start(
        dir,
        "postlog unix-dgram n - n - 1 postlogd\n\
         pickup unix n - n 60 1 pickup\n\
         cleanup unix n - n - 0 cleanup\n\
         qmgr unix n - n 300 1 qmgr\n\
         smtp unix - - n - - smtp\n\
         lmtp unix - - n - - lmtp\n",
        &extra,
        &[("transport", &transport)],
    );
    let mut c = Command::new(s.dir.join("bin/sendmail"))
        .args([
            "-f",
            "sender@test.example",
            "a@remote.example",
            "bad@remote.example",
            "b@lmtp.example",
            "c@lmtp.example",
        ])
        .env("MAIL_CONFIG", s.dir.join("conf"))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"Subject: e2e\n\n.leading dot\nbody\n")
        .unwrap();
    assert_eq!(c.wait().unwrap().code(), Some(0));
    s.wait("deliveries", |s| {
        let l = s.log();
        l.matches("status=sent (250 2.0.0 Ok: queued as SINK1)").count() == 3
            && l.contains("status=bounced (host 127.0.0.1[127.0.0.1] said: 550 5.1.1 <bad>: no such user (in reply to RCPT TO command))")
    });
    let log = s.log();
    assert!(
        log.lines().any(|l| l.contains("postfix/smtp[")
            && l.contains("to=<a@remote.example>")
            && l.contains(&format!("relay=127.0.0.1[127.0.0.1]:{sport}, delay="))),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("postfix/lmtp[")
            && l.contains("to=<c@lmtp.example>")
            && l.contains(&format!("relay=127.0.0.1[127.0.0.1]:{lport}, delay="))),
        "{log}"
    );
    let stext = String::from_utf8_lossy(&srec.lock().unwrap()).into_owned();
    assert!(
        stext.starts_with("EHLO test.example\r\nMAIL FROM:<sender@test.example>"),
        "{stext}"
    );
    assert!(stext.contains("\r\n..leading dot\r\n"), "{stext}");
    let ltext = String::from_utf8_lossy(&lrec.lock().unwrap()).into_owned();
    assert!(ltext.starts_with("LHLO test.example\r\n"), "{ltext}");
}
