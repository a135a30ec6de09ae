//! pipe(8) end to end under the queue manager: a running instance of ours
//! and, when the reference exists and we are root, a running Postfix
//! 3.7.11 instance with the same main.cf and master.cf get the same mail
//! through their own `sendmail`. transport_maps routes each domain to a
//! pipe service whose command is a test script that records its argv, its
//! environment, its identity and its standard input:
//!
//! - `pipeone`: Dovecot-deliver style (`flags=DRhuO user=... -f ${sender}
//!   -d ${recipient}`, recipient limit 1: one command per recipient);
//! - `pipemany`: every `${...}` macro, several recipients in one command,
//!   `flags=Fq.>B`, `eol=\r\n`, `size=`, a `user=name:group`;
//! - `pipefail`/`pipedefer`: exit 67 (EX_NOUSER: bounce) and exit 75 with
//!   a `4.2.2` status on the output (defer);
//! - `pipeslow`: `pipeslow_time_limit = 1s` against a command that sleeps;
//! - `pipesink`: where the non-delivery notice goes (`null_sender=`);
//! - local(8) hands `demo@local.example` to `pipemapped` through
//!   `mailbox_transport_maps`, other local users to `pipembox`
//!   (`mailbox_transport`), and forwards `fwd@` (an alias to two remote
//!   addresses) as a new message through cleanup;
//! - smtp(8) gets 550 replies from a scripted server: the notice carries
//!   Remote-MTA and the smtp Diagnostic-Code.
//!
//! Our side must log Postfix's lines (checked literally below, and
//! compared with Postfix's own after normalising queue IDs, delays and
//! pids); the recorded invocations must be identical on both sides.

mod common;
use common::instance::{Instance, Side, is_root, wait_for};
use common::queue::reference;
use std::path::Path;
use std::time::Duration;

const SCRIPT: &str = "#!/bin/sh\n\
out=@OUT@/$(od -An -N6 -tx1 /dev/urandom | tr -d ' \\n')\n\
{\n\
echo argv:\n\
for a in \"$0\" \"$@\"; do echo \"[$a]\"; done\n\
echo env:\n\
env | grep -v '^PWD=' | sort\n\
echo id: $(id -un) $(id -gn)\n\
echo stdin:\n\
cat\n\
} > $out.tmp\n\
mv $out.tmp $out\n\
case \"$1\" in\n\
exit=75) echo '4.2.2 mailbox full'; exit 75;;\n\
exit=*) echo 'no such mailbox here'; exit ${1#exit=};;\n\
sleep) sleep 5;;\n\
esac\n\
exit 0\n";

/// An SMTP server on 127.0.0.1 that refuses every recipient with a 550
/// (multi-line for `ml@`); for the Remote-MTA and Diagnostic-Code of
/// the notice.
fn smtp_server() -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming().take(20) {
            let Ok(c) = c else { return };
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut w = c.try_clone().unwrap();
            let mut r = BufReader::new(c);
            let _ = w.write_all(b"220 mx.remote.test ESMTP\r\n");
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let v = line.get(..4).unwrap_or("").to_ascii_uppercase();
                let reply = match v.as_str() {
                    "EHLO" => "250-mx.remote.test\r\n250 PIPELINING\r\n",
                    "MAIL" => "250 2.1.0 Ok\r\n",
                    "RCPT" if line.contains("<ml@") => {
                        "550-5.1.1 first line\r\n550 5.1.1 second line\r\n"
                    }
                    "RCPT" => {
                        "550 5.1.1 <r@remote.example>: Recipient address rejected: no such user\r\n"
                    }
                    "DATA" => "554 5.5.1 Error: no valid recipients\r\n",
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
        }
    });
    port
}

fn services(dir: &Path) -> String {
    let s = dir.join("script.sh");
    let s = s.display();
    format!(
        "qmgr unix n - n 300 1 qmgr\n\
         smtp unix - - n - - smtp\n\
         local unix - n n - - local\n\
         pipembox unix - n n - - pipe user=demo argv={s} mbox ${{recipient}} ${{user}}\n\
         pipemapped unix - n n - - pipe user=demo argv={s} mapped ${{recipient}} ${{nexthop}}\n\
         bounce unix - - n - 0 bounce\n\
         defer unix - - n - 0 bounce\n\
         trace unix - - n - 0 bounce\n\
         pipeone unix - n n - - pipe flags=DRhuO user=demo argv={s} -f ${{sender}} -d ${{recipient}} -o ${{original_recipient}}\n\
         pipemany unix - n n - - pipe\n  flags=Fq.>B user=demo:nogroup eol=\\r\\n size=100000\n  \
         argv={s} many ${{nexthop}} ${{sender}} ${{recipient}} ${{user}}\n  \
         x${{extension}}x ${{mailbox}} ${{domain}} ${{size}} ${{client_address}} ${{client_hostname}}\n  \
         ${{client_helo}} ${{client_protocol}} ${{sasl_method}} ${{sasl_username}} ${{sasl_sender}} $$literal\n\
         pipefail unix - n n - - pipe user=demo argv={s} exit=67 ${{recipient}}\n\
         pipedefer unix - n n - - pipe user=demo argv={s} exit=75 ${{recipient}}\n\
         pipeslow unix - n n - - pipe user=demo argv={s} sleep\n\
         pipesink unix - n n - - pipe flags=R null_sender= user=demo argv={s} sink ${{sender}} ${{recipient}}\n"
    )
}

const EXTRA: &str = "mydestination = local.example\n\
mailbox_transport = pipembox\n\
mailbox_transport_maps = texthash:${config_directory}/mbox_transport\n\
alias_maps = texthash:${config_directory}/aliases\n\
alias_database =\n\
transport_maps = texthash:${config_directory}/transport\n\
pipeone_destination_recipient_limit = 1\n\
pipeslow_time_limit = 1s\n\
bounce_notice_recipient = postmaster@sink.example\n";

const TRANSPORT: &str = "one.example pipeone:\n\
many.example pipemany:nh.example\n\
bounce.example pipefail:\n\
defer.example pipedefer:\n\
slow.example pipeslow:\n\
sink.example pipesink:\n\
remote.example smtp:[127.0.0.1]:@PORT@\n";

struct Run {
    log: String,
    captures: Vec<String>,
}

fn run(side: Side, base: &Path, port: u16) -> Run {
    let dir = base.join(match side {
        Side::Ours => "ours",
        Side::Postfix => "postfix",
    });
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // The instance folder is made by Instance; the script and its output
    // folder live beside it.
    let out = base.join(format!("out-{side:?}"));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let script_dir = base.join(format!("bin-{side:?}"));
    std::fs::create_dir_all(&script_dir).unwrap();
    std::fs::set_permissions(&script_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = script_dir.join("script.sh");
    std::fs::write(&script, SCRIPT.replace("@OUT@", &out.display().to_string())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let master = format!(
        "postlog unix-dgram n - n - 1 postlogd\n\
         pickup unix n - n 60 1 pickup\n\
         cleanup unix n - n - 0 cleanup\n\
         rewrite unix - - n - - trivial-rewrite\n{}",
        services(&script_dir)
    );
    let mut inst = Instance::with_master(
        side,
        &dir,
        EXTRA,
        Some(&master),
        &[
            ("transport", &TRANSPORT.replace("@PORT@", &port.to_string())),
            ("aliases", "fwd a2@one.example, x2@many.example\n"),
            ("mbox_transport", "demo pipemapped:mapped.nexthop\n"),
        ],
    );
    inst.start();
    let submit = |args: &[&str], body: &str| {
        let (st, _, err) = inst.run("sendmail", args, body.as_bytes());
        assert_eq!(st, 0, "{side:?} sendmail {args:?}: {err}");
    };
    submit(
        &["-f", "s@sink.example", "a@one.example", "B+Ext@One.Example"],
        "Subject: one\nX-Test: 1\n\nline\n.dot\nFrom here\n",
    );
    submit(
        &[
            "-f",
            "s@sink.example",
            "x@many.example",
            "Y.z+Tag@Many.Example",
        ],
        "Subject: many\n\nline\n.dot\nFrom here\n>From there\n",
    );
    submit(
        &["-f", "s@sink.example", "u@bounce.example"],
        "Subject: fail\n\nbody\n",
    );
    submit(
        &["-f", "s@sink.example", "v@defer.example"],
        "Subject: defer\n\nbody\n",
    );
    submit(
        &["-f", "s@sink.example", "w@slow.example"],
        "Subject: slow\n\nbody\n",
    );
    submit(
        &[
            "-f",
            "s@sink.example",
            "r@remote.example",
            "ml@remote.example",
        ],
        "Subject: remote\n\nbody\n",
    );
    submit(
        &[
            "-f",
            "s@sink.example",
            "demo@local.example",
            "nosuch@local.example",
            "fwd@local.example",
        ],
        "Subject: local\n\nbody\n",
    );
    // Three messages with bounced recipients (u@, w@, r@ and ml@) each
    // give a notice to s@sink.example: 9 invocations in all (a, B, many,
    // u, v, w, 3 notices, demo, nosuch, a2, x2) and 17 status lines
    // (fwd: forwarded as a new message to a2 and x2).
    wait_for(
        &format!("{side:?} deliveries"),
        Duration::from_secs(30),
        || {
            let log = inst.log();
            log.matches(" status=").count() >= 17
                && std::fs::read_dir(&out)
                    .map(|d| {
                        d.flatten()
                            .filter(|e| !e.file_name().to_string_lossy().ends_with(".tmp"))
                            .count()
                    })
                    .unwrap_or(0)
                    >= 13
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    let log = inst.log();
    inst.stop();
    let mut captures = Vec::new();
    for e in std::fs::read_dir(&out).unwrap().flatten() {
        if e.file_name().to_string_lossy().ends_with(".tmp") {
            continue;
        }
        let t = String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned();
        captures.push(t);
    }
    let _ = std::fs::remove_dir_all(&out);
    let norm = |t: &str| {
        t.replace(&script_dir.display().to_string(), "BIN")
            .replace(&dir.display().to_string(), "DIR")
            .replace(&format!(":{port}"), ":PORT")
    };
    Run {
        log: norm(&log),
        captures: captures.iter().map(|c| norm(c)).collect(),
    }
}

/// Replace every run of 10+ upper-case hex digits (a queue ID) by Q.
fn ids(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let mut j = i;
        while j < b.len() && (b[j].is_ascii_digit() || (b'A'..=b'F').contains(&b[j])) {
            j += 1;
        }
        if j - i >= 10 {
            out.push('Q');
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

fn blank(line: &str, key: &str) -> String {
    match line.find(key) {
        Some(p) => {
            let rest = &line[p + key.len()..];
            let end = rest.find([',', ' ']).unwrap_or(rest.len());
            format!("{}{}X{}", &line[..p], key, &rest[end..])
        }
        None => line.to_string(),
    }
}

/// The pipe and qmgr delivery lines, normalised and sorted.
fn norm_log(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let p = l.find("postfix/")?;
            let l = &l[p..];
            let prog = &l[..l.find('[')?];
            if ![
                "postfix/pipe",
                "postfix/qmgr",
                "postfix/bounce",
                "postfix/smtp",
            ]
            .contains(&prog)
            {
                return None;
            }
            let rest = &l[l.find("]: ")? + 3..];
            let mut s = format!("{prog}: {}", ids(rest));
            for k in ["delay=", "delays=", "size="] {
                s = blank(&s, k);
            }
            Some(s)
        })
        .collect();
    v.sort();
    v
}

/// An invocation with its volatile parts (queue IDs, dates, message
/// ids, the notice's boundary, the environment's MAIL_CONFIG) masked.
fn norm_capture(t: &str) -> String {
    let mut out = Vec::new();
    for l in ids(t).lines() {
        let l = if l.starts_with("Date: ")
            || l.starts_with("Arrival-Date: ")
            || l.starts_with("Message-Id: ")
            || l.starts_with("From MAILER-DAEMON ")
            || l.starts_with("From s@sink.example ")
            || l.starts_with("\tby test.example (Postfix) with ESMTP id")
            || l.starts_with("\tfor <")
            || l.starts_with("\tid Q;")
        {
            l.split(' ').next().unwrap_or("").to_string() + " X"
        } else {
            l.to_string()
        };
        out.push(l);
    }
    out.join("\n")
}

fn captures(r: &Run) -> Vec<String> {
    let mut v: Vec<String> = r.captures.iter().map(|c| norm_capture(c)).collect();
    v.sort();
    v
}

fn has(log: &str, needle: &str) {
    assert!(
        log.lines().any(|l| l.contains(needle)),
        "missing log line with {needle:?}:\n{log}"
    );
}

#[test]
fn pipe_services_under_qmgr_match_postfix() {
    if !std::path::Path::new("/usr/bin/id").exists() || !has_user("demo") {
        panic!("this test needs the users demo and nobody (see .ci/run)");
    }
    let base = std::env::temp_dir().join(format!("rostfix-pipe-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = smtp_server();
    let ours = run(Side::Ours, &base, port);
    let Some(_) = reference() else {
        eprintln!("pipe_e2e: no reference Postfix; checked our side only");
        return ours_only(&ours);
    };
    if !is_root() {
        eprintln!("pipe_e2e: not root; Postfix's master cannot run; checked our side only");
        return ours_only(&ours);
    }
    let theirs = run(Side::Postfix, &base, port);
    let _ = std::fs::remove_dir_all(&base);
    assert_eq!(
        norm_log(&ours.log),
        norm_log(&theirs.log),
        "log lines differ"
    );
    assert_eq!(captures(&ours), captures(&theirs), "invocations differ");
    ours_only(&ours);
}

/// What our side must show, whatever the reference (Postfix's texts).
fn ours_only(ours: &Run) {
    let log = &ours.log;
    // Postfix's wording, checked literally.
    has(log, "postfix/pipe[");
    has(log, "to=<a@one.example>, relay=pipeone, delay=");
    has(log, "to=<B+Ext@One.Example>, relay=pipeone, delay=");
    has(
        log,
        "dsn=2.0.0, status=sent (delivered via pipeone service)",
    );
    has(
        log,
        "dsn=2.0.0, status=sent (delivered via pipemany service)",
    );
    has(log, "to=<u@bounce.example>, relay=pipefail, delay=");
    has(
        log,
        "dsn=5.1.1, status=bounced (user unknown. Command output: no such mailbox here )",
    );
    has(log, "to=<v@defer.example>, relay=pipedefer, delay=");
    has(log, "dsn=4.2.2, status=deferred (mailbox full )");
    has(
        log,
        "dsn=5.3.0, status=bounced (Command time limit exceeded: \"BIN/script.sh\")",
    );
    let caps = captures(ours);
    assert_eq!(caps.len(), 13, "{caps:#?}");
    has(log, "to=<fwd@local.example>, relay=local, delay=");
    has(log, "dsn=2.0.0, status=sent (forwarded as ");
    has(
        log,
        "to=<a2@one.example>, orig_to=<fwd@local.example>, relay=pipeone, delay=",
    );
    // mailbox_transport: local passes the recipient to the pipe service,
    // which logs the delivery.
    has(
        log,
        ": passing <demo@local.example> to transport=pipemapped",
    );
    has(
        log,
        ": passing <nosuch@local.example> to transport=pipembox",
    );
    assert!(
        caps.iter()
            .any(|c| c.contains("[mapped]\n[demo@local.example]\n[mapped.nexthop]\n")),
        "{caps:#?}"
    );
    has(log, "to=<nosuch@local.example>, relay=pipembox, delay=");
    assert!(
        caps.iter().any(|c| c.contains(
            "Final-Recipient: rfc822; r@remote.example\n\
             Original-Recipient: rfc822;r@remote.example\n\
             Action: failed\n\
             Status: 5.1.1\n\
             Remote-MTA: dns; 127.0.0.1\n\
             Diagnostic-Code: smtp; 550 5.1.1 <r@remote.example>: Recipient address\n    \
             rejected: no such user\n"
        )),
        "{caps:#?}"
    );
    assert!(
        caps.iter().any(|c| c.contains(
            "argv:\n[BIN/script.sh]\n[-f]\n[s@sink.example]\n[-d]\n[b+ext@one.example]\n[-o]\n[b+ext@one.example]\n"
        )),
        "{caps:#?}"
    );
    assert!(
        caps.iter()
            .any(|c| c.contains("Delivered-To: a@one.example\n")
                && c.contains("Return-Path: <s@sink.example>\n")),
        "{caps:#?}"
    );
    assert!(
        ours.captures
            .iter()
            .any(|c| c.contains(
                "[many]\n[nh.example]\n[s@sink.example]\n[Y.z+Tag@Many.Example]\n[x@many.example]\n"
            ) && c.contains("\r\n..dot\r\n>From here\r\n>From there\r\n\r\n")),
        "{caps:#?}"
    );
    if is_root() {
        assert!(caps.iter().all(|c| c.contains("id: demo ")), "{caps:#?}");
    }
}

fn has_user(name: &str) -> bool {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with(&format!("{name}:")))
}
