//! sendmail and postdrop against Postfix 3.7.11: the same command line and
//! input go through Postfix's sendmail (whose command_directory holds
//! Postfix's postdrop) and through ours (with our postdrop), each into its
//! own scratch queue; then the exit status, stdout, stderr and the
//! maildrop files (mode and every record, the postdrop time record
//! normalised) must be identical.
//!
//! Cases: the flag combinations cron, mutt (with and without DSN),
//! git-send-email, bsd-mailx and scripts (`-t -oi`) use; -t with Bcc and
//! Resent- headers; -bv and -v (trace records); VERP; message edge cases
//! (From_ lines, a lone ".", CRLF, long lines, no final newline, NUL
//! bytes, an empty message); bad input (unknown options, bad -N/-R/-B/-V
//! values, no recipients, a message over message_size_limit); and the
//! modes that run another program (-bp, -q, -qR, -qI, -bs, -bi), which
//! fail identically when that program is missing.
//!
//! Live when a reference exists; otherwise our outcome must equal the
//! golden file compat/golden/sendmail/cases<N>.out and postdrop.out (re-record with
//! `ROSTFIX_RECORD=1 cargo test --test sendmail`).

mod common;
use common::queue::{Scratch, owner_and_group, reference};

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Impl {
    Ours,
    Postfix,
}

/// One side's scratch instance: config dir and queue.
struct Side {
    conf: PathBuf,
    queue: PathBuf,
}

fn setup(root: &Path, which: Impl, extra: &str) -> Side {
    let (user, group) = owner_and_group();
    let conf = root.join("conf");
    let queue = root.join("q");
    for d in [
        "maildrop", "public", "incoming", "hold", "deferred", "active",
    ] {
        std::fs::create_dir_all(queue.join(d)).unwrap();
    }
    std::fs::create_dir_all(&conf).unwrap();
    let cmd_dir = match which {
        Impl::Postfix => reference().unwrap().join("usr/sbin"),
        Impl::Ours => {
            let bin = root.join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            let _ = std::fs::remove_file(bin.join("postdrop"));
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_postdrop"), bin.join("postdrop"))
                .unwrap();
            bin
        }
    };
    let cmd_line = if extra.contains("command_directory") {
        String::new()
    } else {
        format!("command_directory = {}\n", cmd_dir.display())
    };
    let text = format!(
        "compatibility_level = 3.6\nmail_owner = {user}\nsetgid_group = {group}\n\
queue_directory = {}\n{cmd_line}daemon_directory = /nonexistent/daemon\n\
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C NORANDOMIZE LD_LIBRARY_PATH\n\
export_environment = TZ MAIL_CONFIG LANG LD_LIBRARY_PATH\nmyhostname = host.example.test\n{extra}",
        queue.display(),
    );
    std::fs::write(conf.join("main.cf"), text).unwrap();
    std::fs::write(conf.join("master.cf"), "").unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(conf.join("main.cf"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    Side { conf, queue }
}

/// Decode a record stream into (type, payload) pairs.
fn records(b: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut v = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let t = b[i];
        i += 1;
        let mut len = 0usize;
        let mut shift = 0;
        loop {
            let c = b[i];
            i += 1;
            len |= ((c & 0x7f) as usize) << shift;
            shift += 7;
            if c & 0x80 == 0 {
                break;
            }
        }
        v.push((t, b[i..i + len].to_vec()));
        i += len;
    }
    v
}

/// What one submission did, in a comparable text form.
fn outcome(which: Impl, side: &Side, args: &[&str], input: &[u8], prog: &str) -> String {
    for e in std::fs::read_dir(side.queue.join("maildrop")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let mut cmd = match which {
        Impl::Ours => {
            let mut c = Command::new(env!("CARGO_BIN_EXE_rostfix"));
            c.arg0(prog);
            c
        }
        Impl::Postfix => {
            let root = reference().unwrap();
            let mut c = Command::new(root.join("usr/sbin/sendmail"));
            c.arg0(prog);
            c.env(
                "LD_LIBRARY_PATH",
                format!(
                    "{0}/usr/lib/postfix:{0}/usr/lib/x86_64-linux-gnu:{0}/lib/x86_64-linux-gnu",
                    root.display()
                ),
            );
            c
        }
    };
    cmd.args(args)
        .env("MAIL_CONFIG", &side.conf)
        .env("TZ", "UTC")
        .env("NORANDOMIZE", "1")
        .env_remove("NAME")
        .env_remove("MAIL_VERBOSE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(&data);
    });
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let status = o
        .status
        .code()
        .unwrap_or_else(|| 128 + o.status.signal().unwrap_or(0));
    let mut text = format!(
        "--- status {status}\n--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // Postfix's postdrop may still be removing a cancelled file.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut files: Vec<PathBuf> = std::fs::read_dir(side.queue.join("maildrop"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let md = std::fs::metadata(&f).unwrap();
        text.push_str(&format!(
            "--- maildrop file, mode {:o}\n",
            md.permissions().mode() & 0o7777
        ));
        for (t, d) in records(&std::fs::read(&f).unwrap()) {
            let shown = if t == b'T' {
                "<time>".to_string()
            } else {
                String::from_utf8_lossy(&d).escape_debug().to_string()
            };
            text.push_str(&format!("{} {shown}\n", t as char));
        }
    }
    text
}

/// (name, argv0, args, stdin, extra main.cf)
type Case = (
    &'static str,
    &'static str,
    Vec<&'static str>,
    Vec<u8>,
    &'static str,
);

fn cases() -> Vec<Case> {
    let msg = b"Subject: test\nFrom: me@x.test\n\nbody line\n".to_vec();
    let mut long = b"Subject: long\n\n".to_vec();
    long.extend(std::iter::repeat_n(b'a', 5000));
    long.extend(b"\nshort\n");
    let mut big = b"Subject: big\n\n".to_vec();
    for i in 0..40 {
        big.extend(format!("line {i} xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n").as_bytes());
    }
    let tmsg = b"To: a@x.test, \"B\" <b@x.test>\nCc: c@x.test (C)\nBcc: hidden@x.test\nSubject: t\n\nbody\n".to_vec();
    vec![
        (
            "plain",
            "sendmail",
            vec!["-f", "me@x.test", "you@y.test"],
            msg.clone(),
            "",
        ),
        (
            "cron",
            "sendmail",
            vec!["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"],
            msg.clone(),
            "",
        ),
        (
            "mutt",
            "sendmail",
            vec!["-oem", "-oi", "--", "a@b.test", "c@d.test"],
            msg.clone(),
            "",
        ),
        (
            "mutt-dsn",
            "sendmail",
            vec![
                "-oem",
                "-oi",
                "-N",
                "failure,delay",
                "-R",
                "hdrs",
                "-V",
                "env1",
                "-f",
                "me@x.test",
                "--",
                "a@b.test",
            ],
            msg.clone(),
            "",
        ),
        (
            "git-send-email",
            "sendmail",
            vec![
                "-i",
                "-f",
                "Me <me@x.test>",
                "a@b.test",
                "Some One <c@d.test>",
            ],
            msg.clone(),
            "",
        ),
        (
            "bsd-mailx",
            "sendmail",
            vec!["-i", "--", "user"],
            msg.clone(),
            "",
        ),
        ("t-oi", "sendmail", vec!["-t", "-oi"], tmsg.clone(), ""),
        (
            "t-with-args",
            "sendmail",
            vec!["-t", "-i", "extra@x.test"],
            tmsg.clone(),
            "",
        ),
        (
            "t-resent",
            "sendmail",
            vec!["-t"],
            b"To: a@x.test\nResent-To: r@x.test\nResent-Cc: s@x.test\nCc: c@x.test\n\nx\n".to_vec(),
            "",
        ),
        (
            "t-no-blank-line",
            "sendmail",
            vec!["-t"],
            b"To: a@x.test\nno header here\n".to_vec(),
            "",
        ),
        (
            "t-folded",
            "sendmail",
            vec!["-t", "-N", "success"],
            b"To: a@x.test,\n\tb@x.test\nSubject: s\n\nx".to_vec(),
            "",
        ),
        (
            "t-none",
            "sendmail",
            vec!["-t"],
            b"Subject: x\n\nbody\n".to_vec(),
            "",
        ),
        ("no-recipient", "sendmail", vec![], msg.clone(), ""),
        (
            "bv",
            "sendmail",
            vec!["-bv", "a@b.test", "c@d.test"],
            Vec::new(),
            "",
        ),
        (
            "v-record",
            "sendmail",
            vec!["-v", "-f", "me@x.test", "a@b.test"],
            msg.clone(),
            "",
        ),
        (
            "verp",
            "sendmail",
            vec!["-XV", "-f", "me@x.test", "a@b.test"],
            msg.clone(),
            "",
        ),
        (
            "verp-chars",
            "sendmail",
            vec!["-XV-=", "-f", "me@x.test", "a@b.test"],
            msg.clone(),
            "",
        ),
        (
            "verp-bad",
            "sendmail",
            vec!["-XVab", "-f", "me@x.test", "a@b.test"],
            msg.clone(),
            "",
        ),
        (
            "verp-deprecated",
            "sendmail",
            vec!["-V+=", "-f", "me@x.test", "a@b.test"],
            msg.clone(),
            "",
        ),
        (
            "verp-null-sender",
            "sendmail",
            vec!["-XV", "-f", "<>", "a@b.test"],
            msg.clone(),
            "",
        ),
        (
            "gateway-r",
            "sendmail",
            vec!["-G", "-r", "me@x.test", "-F", "Full Name", "a@b.test"],
            msg.clone(),
            "",
        ),
        (
            "n-never-r-full",
            "sendmail",
            vec!["-N", "never", "-R", "full", "-B", "7BIT", "a@b.test"],
            msg.clone(),
            "",
        ),
        (
            "bad-n-r-v",
            "sendmail",
            vec!["-N", "foo,never", "-R", "bad", "-V", "a\tb", "a@b.test"],
            msg.clone(),
            "",
        ),
        (
            "n-never-success",
            "sendmail",
            vec!["-N", "never,success", "a@b.test"],
            msg.clone(),
            "",
        ),
        (
            "bad-b",
            "sendmail",
            vec!["-Bfoo", "a@b.test"],
            msg.clone(),
            "",
        ),
        (
            "unknown-option",
            "sendmail",
            vec!["-Z", "a@b.test"],
            msg.clone(),
            "",
        ),
        (
            "n-option",
            "sendmail",
            vec!["-n", "a@b.test"],
            msg.clone(),
            "",
        ),
        (
            "ignored-options",
            "sendmail",
            vec![
                "-Am", "-U", "-h", "5", "-L", "x", "-O", "a=b", "-o7", "-om", "-ox", "-m", "-c",
                "-e", "x", "-x", "a@b.test",
            ],
            msg.clone(),
            "",
        ),
        (
            "recipient-forms",
            "sendmail",
            vec![
                "a@b.test, c@d.test",
                "Name <n@x.test>",
                "",
                "<>",
                "g: x@y.test;",
            ],
            msg.clone(),
            "",
        ),
        (
            "malformed-sender",
            "sendmail",
            vec!["-f", "a b", "x@y.test"],
            msg.clone(),
            "",
        ),
        (
            "empty-sender",
            "sendmail",
            vec!["-f", "", "x@y.test"],
            msg.clone(),
            "",
        ),
        (
            "dot-ends",
            "sendmail",
            vec!["a@b.test"],
            b"Subject: d\n\nbefore\n.\nafter\n".to_vec(),
            "",
        ),
        (
            "dot-i",
            "sendmail",
            vec!["-oi", "a@b.test"],
            b"Subject: d\n\nbefore\n.\n..\nafter\n".to_vec(),
            "",
        ),
        (
            "dot-no-newline",
            "sendmail",
            vec!["a@b.test"],
            b"Subject: d\n\nx\n.".to_vec(),
            "",
        ),
        (
            "from-lines",
            "sendmail",
            vec!["a@b.test"],
            b"From me Mon Jan 1\n>From x\nSubject: f\n\nFrom body\n".to_vec(),
            "",
        ),
        (
            "crlf",
            "sendmail",
            vec!["a@b.test"],
            b"Subject: c\r\n\r\nline\r\r\n".to_vec(),
            "",
        ),
        (
            "crlf-strict",
            "sendmail",
            vec!["a@b.test"],
            b"Subject: c\n\nline\r\n".to_vec(),
            "sendmail_fix_line_endings = strict\n",
        ),
        (
            "crlf-never",
            "sendmail",
            vec!["a@b.test"],
            b"Subject: c\r\n\r\nline\r\n".to_vec(),
            "sendmail_fix_line_endings = never\n",
        ),
        (
            "fix-eol-bad",
            "sendmail",
            vec!["a@b.test"],
            msg.clone(),
            "sendmail_fix_line_endings = sometimes\n",
        ),
        ("long-lines", "sendmail", vec!["a@b.test"], long.clone(), ""),
        (
            "long-lines-t",
            "sendmail",
            vec!["-t"],
            [
                b"To: a@x.test\nX-Long: ".to_vec(),
                vec![b'h'; 4100],
                b"\n\nbody".to_vec(),
            ]
            .concat(),
            "",
        ),
        (
            "no-final-newline",
            "sendmail",
            vec!["a@b.test"],
            b"Subject: n\n\nlast".to_vec(),
            "",
        ),
        (
            "nul-bytes",
            "sendmail",
            vec!["a@b.test"],
            b"Subject: \0nul\n\nbo\0dy\n".to_vec(),
            "",
        ),
        (
            "empty-message",
            "sendmail",
            vec!["a@b.test"],
            Vec::new(),
            "",
        ),
        (
            "eight-bit",
            "sendmail",
            vec!["-B", "8BITMIME", "a@b.test"],
            "Subject: caf\u{e9}\n\nna\u{ef}ve\n".as_bytes().to_vec(),
            "",
        ),
        (
            "size-limit",
            "sendmail",
            vec!["a@b.test"],
            big.clone(),
            "message_size_limit = 400\n",
        ),
        (
            "acl-denied",
            "sendmail",
            vec!["a@b.test"],
            msg.clone(),
            "authorized_submit_users = nosuchuser\n",
        ),
        (
            "bs-acl-denied",
            "sendmail",
            vec!["-bs"],
            msg.clone(),
            "authorized_submit_users = !root, nosuchuser\n",
        ),
        (
            "header-size-t",
            "sendmail",
            vec!["-t"],
            [
                b"To: a@x.test\nX: ".to_vec(),
                vec![b'h'; 2000],
                b"\n\nbody\n".to_vec(),
            ]
            .concat(),
            "header_size_limit = 1000\n",
        ),
        // Modes that run another program: identical failures when it is missing.
        ("bs", "sendmail", vec!["-bs"], Vec::new(), ""),
        ("bs-recipient", "sendmail", vec!["-bs", "x"], Vec::new(), ""),
        (
            "bp",
            "sendmail",
            vec!["-bp"],
            Vec::new(),
            "command_directory = /nonexistent/cmd\n",
        ),
        (
            "mailq",
            "mailq",
            vec![],
            Vec::new(),
            "command_directory = /nonexistent/cmd\n",
        ),
        ("mailq-rcpt", "mailq", vec!["x"], Vec::new(), ""),
        (
            "q",
            "sendmail",
            vec!["-q"],
            Vec::new(),
            "command_directory = /nonexistent/cmd\n",
        ),
        ("q-interval", "sendmail", vec!["-q30m"], Vec::new(), ""),
        (
            "qR",
            "sendmail",
            vec!["-qRexample.com", "-v"],
            Vec::new(),
            "command_directory = /nonexistent/cmd\n",
        ),
        (
            "qI",
            "sendmail",
            vec!["-qIABCDEF"],
            Vec::new(),
            "command_directory = /nonexistent/cmd\n",
        ),
        ("qR-empty", "sendmail", vec!["-qR"], Vec::new(), ""),
        ("qX", "sendmail", vec!["-qX"], Vec::new(), ""),
        (
            "bi",
            "sendmail",
            vec!["-bi"],
            Vec::new(),
            "command_directory = /nonexistent/cmd\n",
        ),
        ("newaliases-rcpt", "newaliases", vec!["x"], Vec::new(), ""),
        ("bh", "sendmail", vec!["-bh"], Vec::new(), ""),
        ("bx", "sendmail", vec!["-bx"], Vec::new(), ""),
        ("t-bp", "sendmail", vec!["-t", "-bp"], Vec::new(), ""),
        ("bv-t", "sendmail", vec!["-bv", "-t"], Vec::new(), ""),
        ("bv-v", "sendmail", vec!["-bv", "-v", "a@b"], Vec::new(), ""),
        (
            "postdrop-missing",
            "sendmail",
            vec!["a@b.test"],
            msg.clone(),
            "command_directory = /nonexistent/cmd\n",
        ),
    ]
}

const GROUPS: usize = 3;

#[test]
fn sendmail_group0() {
    check(0);
}

#[test]
fn sendmail_group1() {
    check(1);
}

#[test]
fn sendmail_group2() {
    check(2);
}

/// Cases run in groups, in parallel.
fn check(group: usize) {
    let live = reference().is_some();
    if !live {
        eprintln!(
            "SKIP live part of sendmail group {group}: no Postfix 3.7.11 reference; golden only"
        );
    }
    let s = Scratch::new(&format!("sendmail{group}"));
    let mut record = String::new();
    let mut ours_all = String::new();
    let mut failures = Vec::new();
    let all = cases();
    let per = all.len().div_ceil(GROUPS);
    for (name, prog, args, input, extra) in all.into_iter().skip(group * per).take(per) {
        let ours_side = setup(&s.path(&format!("ours-{name}")), Impl::Ours, extra);
        let ours = outcome(Impl::Ours, &ours_side, &args, &input, prog);
        ours_all.push_str(&format!("=== {name}\n{ours}"));
        if live {
            let pf_side = setup(&s.path(&format!("pf-{name}")), Impl::Postfix, extra);
            let theirs = outcome(Impl::Postfix, &pf_side, &args, &input, prog);
            if theirs != ours {
                failures.push(format!(
                    "case {name}\n--- postfix:\n{theirs}--- ours:\n{ours}"
                ));
            }
            record.push_str(&format!("=== {name}\n{theirs}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let golden_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("compat/golden/sendmail/cases{group}.out"));
    if std::env::var_os("ROSTFIX_RECORD").is_some() && live {
        std::fs::create_dir_all(golden_path.parent().unwrap()).unwrap();
        std::fs::write(&golden_path, &record).unwrap();
    }
    // The golden file was made as root (full name "root", uid 0).
    if rostfix::sys::ids::getuid() == 0 {
        let golden = std::fs::read_to_string(&golden_path).expect("golden file");
        assert_eq!(ours_all, golden);
    } else {
        eprintln!("SKIP golden comparison: recorded as root");
    }
}

/// postdrop on its own: a record stream with bad records, records it
/// must drop, and an interrupted stream.
#[test]
fn postdrop_like_postfix() {
    let live = reference().is_some();
    let s = Scratch::new("postdrop");
    let rec = |t: u8, d: &[u8]| {
        let mut v = Vec::new();
        rostfix::global::record::rec_encode(&mut v, t, d);
        v
    };
    let good = [
        rec(b'T', b"1 2"),
        rec(b'A', b"rewrite_context=local"),
        rec(b'A', b"bogus=1"),
        rec(b'A', b" encoding = 8bit "),
        rec(b'A', b"novalue"),
        rec(b'A', b"envelope_id=x"),
        rec(b'S', b"me@x"),
        rec(b'R', b"a@b"),
        rec(b'M', b""),
        rec(b'N', b"Subject: x"),
        rec(b'L', b"part"),
        rec(b'N', b"end"),
        rec(b'X', b""),
        rec(b'A', b"notify_flags=2"),
        rec(b'R', b"c@d"),
        rec(b'E', b""),
    ]
    .concat();
    let streams: Vec<(&str, Vec<u8>)> = vec![
        ("time-record-refused", good.clone()),
        ("good", good[rec(b'T', b"1 2").len()..].to_vec()),
        (
            "no-recipient",
            [
                rec(b'S', b"me"),
                rec(b'M', b""),
                rec(b'X', b""),
                rec(b'E', b""),
            ]
            .concat(),
        ),
        (
            "no-sender",
            [
                rec(b'R', b"a"),
                rec(b'M', b""),
                rec(b'X', b""),
                rec(b'E', b""),
            ]
            .concat(),
        ),
        (
            "wrong-segment",
            [rec(b'S', b"me"), rec(b'N', b"x"), rec(b'E', b"")].concat(),
        ),
        ("pointer", [rec(b'S', b"me"), rec(b'p', b"0")].concat()),
        (
            "truncated",
            [rec(b'S', b"me"), vec![b'R', 10, b'a']].concat(),
        ),
        (
            "eof-before-end",
            [rec(b'S', b"me"), rec(b'R', b"a")].concat(),
        ),
        (
            "too-long",
            [rec(b'S', b"me"), rec(b'R', &[b'a'; 3000])].concat(),
        ),
    ];
    let mut ours_all = String::new();
    let mut record = String::new();
    // Each stream in its own thread: Postfix's postdrop pauses a second
    // after a fatal error.
    let results: Vec<(String, Option<String>)> = std::thread::scope(|sc| {
        let handles: Vec<_> = streams
            .iter()
            .map(|(name, data)| {
                let s = &s;
                sc.spawn(move || {
                    let run = |which: Impl| -> String {
                        let side = setup(&s.path(&format!("{name}-{}", which as u8)), which, "");
                        let (prog, lib) = match which {
                            Impl::Ours => {
                                (PathBuf::from(env!("CARGO_BIN_EXE_postdrop")), String::new())
                            }
                            Impl::Postfix => {
                                let r = reference().unwrap();
                                (
                                    r.join("usr/sbin/postdrop"),
                                    format!(
                                        "{0}/usr/lib/postfix:{0}/usr/lib/x86_64-linux-gnu",
                                        r.display()
                                    ),
                                )
                            }
                        };
                        let mut cmd = Command::new(prog);
                        cmd.arg("-r")
                            .env("MAIL_CONFIG", &side.conf)
                            .env("LD_LIBRARY_PATH", lib)
                            .stdin(Stdio::piped())
                            .stdout(Stdio::piped())
                            .stderr(Stdio::piped());
                        let mut child = cmd.spawn().unwrap();
                        {
                            use std::io::Write;
                            let mut i = child.stdin.take().unwrap();
                            let _ = i.write_all(data);
                        }
                        let o = child.wait_with_output().unwrap();
                        // The queue ID in the first reply varies: keep its shape.
                        let mut out = o.stdout.clone();
                        if let Some(p) = out.windows(9).position(|w| w == b"queue_id\0") {
                            let start = p + 9;
                            let end = start + out[start..].iter().position(|&b| b == 0).unwrap();
                            out.splice(start..end, b"ID".iter().copied());
                        }
                        let mut text = format!(
                            "--- status {:?}\n--- stdout {}\n--- stderr\n{}",
                            o.status.code(),
                            String::from_utf8_lossy(&out).escape_debug(),
                            String::from_utf8_lossy(&o.stderr)
                        );
                        for e in std::fs::read_dir(side.queue.join("maildrop")).unwrap() {
                            let p = e.unwrap().path();
                            let md = std::fs::metadata(&p).unwrap();
                            text.push_str(&format!(
                                "--- file mode {:o}\n",
                                md.permissions().mode() & 0o7777
                            ));
                            for (t, d) in records(&std::fs::read(&p).unwrap()) {
                                let shown = if t == b'T' {
                                    "<time>".into()
                                } else {
                                    String::from_utf8_lossy(&d).to_string()
                                };
                                text.push_str(&format!("{} {shown}\n", t as char));
                            }
                        }
                        text
                    };
                    let ours = run(Impl::Ours);
                    let theirs = live.then(|| run(Impl::Postfix));
                    (ours, theirs)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for ((name, _), (ours, theirs)) in streams.iter().zip(results) {
        ours_all.push_str(&format!("=== {name}\n{ours}"));
        if let Some(theirs) = theirs {
            assert_eq!(ours, theirs, "postdrop case {name}");
            record.push_str(&format!("=== {name}\n{theirs}"));
        }
    }
    let golden_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("compat/golden/sendmail/postdrop.out");
    if std::env::var_os("ROSTFIX_RECORD").is_some() && live {
        std::fs::create_dir_all(golden_path.parent().unwrap()).unwrap();
        std::fs::write(&golden_path, &record).unwrap();
    }
    if rostfix::sys::ids::getuid() == 0 {
        let golden = std::fs::read_to_string(&golden_path).expect("golden file");
        assert_eq!(ours_all, golden);
    }
}
