//! pickup + cleanup against Postfix 3.7.11.
//!
//! compat/cleanup-record.sh ran each message of compat/cases/cleanup/
//! through Postfix's sendmail (keeping the maildrop file it wrote), then
//! through Postfix's pickup and cleanup, and kept `postcat -v` of the
//! queue file and the pickup/cleanup log lines. Here the same maildrop
//! file goes through our pickup and cleanup with the same settings; the
//! queue file is printed with Postfix's postcat when the reference is
//! installed (else with ours), and both outputs must be identical once
//! queue IDs, times and uids are normalised.

mod common;

use common::queue::{Scratch, reference};
use rostfix::daemons::cleanup::{BounceRequest, Bouncer};
use rostfix::daemons::logsink::MailLog;
use rostfix::daemons::pickup::{Disposition, Pickup};
use rostfix::global::mail_conf::MailConf;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Accepts every bounce, as a working bounce service would.
struct AcceptBounces(Vec<BounceRequest>);

impl Bouncer for AcceptBounces {
    fn bounce(&mut self, req: &BounceRequest) -> bool {
        self.0.push(req.clone());
        true
    }
}

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn setup(s: &Scratch) -> (PathBuf, PathBuf) {
    let conf = s.path("conf");
    let spool = s.path("spool");
    std::fs::create_dir_all(&conf).unwrap();
    for d in [
        "incoming", "maildrop", "corrupt", "hold", "defer", "bounce", "trace", "deferred", "active",
    ] {
        std::fs::create_dir_all(spool.join(d)).unwrap();
    }
    let cases = manifest().join("compat/cases/cleanup");
    let extra = std::fs::read_to_string(cases.join("main.cf.in"))
        .unwrap()
        .replace("@DIR@", cases.to_str().unwrap());
    common::queue::write_conf(&conf, spool.to_str().unwrap(), &extra);
    (conf, spool)
}

fn replace_all_digits_after(text: &str, marker: &str, with: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(marker) {
        out.push_str(&rest[..i + marker.len()]);
        rest = &rest[i + marker.len()..];
        let n = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if n > 0 {
            out.push_str(with);
        }
        rest = &rest[n..];
    }
    out.push_str(rest);
    out
}

/// Replace RFC 5322 dates ("Wed, 25 Nov 2026 19:21:34 +0000 (UTC)").
fn strip_dates(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    'outer: loop {
        for (i, _) in rest.char_indices() {
            let r = &rest[i..];
            if [
                "Mon, ", "Tue, ", "Wed, ", "Thu, ", "Fri, ", "Sat, ", "Sun, ",
            ]
            .iter()
            .any(|d| r.starts_with(d))
                && let Some(close) = r.find(')')
                && close < 40
                && r[..close].contains(':')
            {
                out.push_str(&rest[..i]);
                out.push_str("DATE");
                rest = &r[close + 1..];
                continue 'outer;
            }
        }
        out.push_str(rest);
        return out;
    }
}

fn stamps(text: &str) -> String {
    // <YYYYMMDDHHMMSS.QID@ -> <STAMP.QID@
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(".QID@") {
        let head = &rest[..i];
        let digits = head
            .bytes()
            .rev()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 14 {
            out.push_str(&head[..head.len() - 14]);
            out.push_str("STAMP");
        } else {
            out.push_str(head);
        }
        out.push_str(".QID@");
        rest = &rest[i + 5..];
    }
    out.push_str(rest);
    out
}

fn normalize_postcat(text: &str, qid: &str) -> String {
    let t = if qid.is_empty() {
        text.to_string()
    } else {
        text.replace(qid, "QID")
    };
    let t: Vec<String> = t
        .lines()
        .map(|l| {
            if l.starts_with("message_arrival_time: ") {
                "message_arrival_time: TIME".to_string()
            } else if l.starts_with("create_time: ") {
                "create_time: TIME".to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    let t = t.join("\n");
    let t = replace_all_digits_after(&t, "from userid ", "UID");
    stamps(&strip_dates(&t))
}

fn is_queue_id(s: &str) -> bool {
    s.len() >= 8
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase())
}

/// Keep pickup/cleanup lines about this message, as "program: text".
fn normalize_log(lines: &[(String, String)], qid: &str) -> String {
    let mut out = Vec::new();
    for (prog, text) in lines {
        if prog != "pickup" && prog != "cleanup" {
            continue;
        }
        if text.contains("public/qmgr") {
            continue;
        }
        if let Some((first, _)) = text.split_once(": ")
            && is_queue_id(first)
            && first != qid
        {
            continue;
        }
        let mut t = if qid.is_empty() {
            text.clone()
        } else {
            text.replace(qid, "QID")
        };
        if let (Some(a), Some(b)) = (t.find("delay="), t.find(", dsn=")) {
            t.replace_range(a..b, "delay=D, delays=D");
        }
        let t = replace_all_digits_after(&t, "uid=", "U");
        out.push(format!("{prog}: {}", stamps(&t)));
    }
    out.join("\n")
}

/// Postfix's maillog lines as (program, text).
fn parse_maillog(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let p = l.find(" postfix/")? + 9;
            let b = l[p..].find('[')? + p;
            let e = l[b..].find("]: ")? + b;
            Some((l[p..b].to_string(), l[e + 3..].to_string()))
        })
        .collect()
}

fn postcat(conf: &Path, spool: &Path, rel: &str) -> String {
    let out = match reference() {
        Some(root) => {
            let lib = format!(
                "{0}/usr/lib/postfix:{0}/usr/lib/x86_64-linux-gnu:{0}/lib/x86_64-linux-gnu",
                root.display()
            );
            Command::new(root.join("usr/sbin/postcat"))
                .arg0("postcat")
                .env("LD_LIBRARY_PATH", lib)
                .args(["-c", conf.to_str().unwrap(), "-v", rel])
                .current_dir(spool)
                .output()
                .unwrap()
        }
        None => Command::new(env!("CARGO_BIN_EXE_rostfix"))
            .arg0("postcat")
            .args(["-c", conf.to_str().unwrap(), "-v", rel])
            .current_dir(spool)
            .output()
            .unwrap(),
    };
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

struct Case {
    name: String,
    maildrop: Vec<u8>,
    postcat: String,
    log: String,
}

fn golden_cases() -> Vec<Case> {
    let dir = manifest().join("compat/golden/cleanup");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter_map(|n| n.strip_suffix(".maildrop").map(|s| s.to_string()))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .map(|n| Case {
            maildrop: std::fs::read(dir.join(format!("{n}.maildrop"))).unwrap(),
            postcat: String::from_utf8_lossy(
                &std::fs::read(dir.join(format!("{n}.postcat"))).unwrap(),
            )
            .trim_end()
            .to_string(),
            log: std::fs::read_to_string(dir.join(format!("{n}.log"))).unwrap_or_default(),
            name: n,
        })
        .collect()
}

fn postfix_qid(log: &str) -> String {
    for (prog, text) in parse_maillog(log) {
        if prog == "pickup"
            && let Some((id, rest)) = text.split_once(": ")
            && rest.starts_with("uid=")
        {
            return id.to_string();
        }
    }
    String::new()
}

#[test]
fn pickup_and_cleanup_match_postfix() {
    if reference().is_none() {
        eprintln!(
            "SKIP (partly): no reference Postfix; comparing with golden files and our postcat"
        );
    }
    let cases = golden_cases();
    assert!(cases.len() >= 40, "golden cases missing: {}", cases.len());
    let s = Scratch::new("cleanup-diff");
    let (conf_dir, spool) = setup(&s);
    let conf = MailConf::read(Some(conf_dir.to_str().unwrap())).unwrap();
    let mut pickup = Pickup::new(&conf).unwrap();
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let name = format!("M{i:04}X");
        let path = spool.join("maildrop").join(&name);
        std::fs::write(&path, &c.maildrop).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o744)).unwrap();
        let mut log = MailLog::capture();
        let mut b = AcceptBounces(Vec::new());
        let d = pickup.pickup_one(&name, &mut log, &mut b);
        let lines: Vec<(String, String)> = log
            .take()
            .into_iter()
            .map(|l| (l.program, l.text))
            .collect();
        let (ours_pc, our_qid) = match &d {
            Some(Disposition::Remove(Some(out))) => {
                let pc = match &out.queue_name {
                    Some(q) => {
                        let rel = format!("{q}/{}", out.queue_id);
                        let t = postcat(&conf_dir, &spool, &rel);
                        let _ = std::fs::remove_file(spool.join(&rel));
                        t
                    }
                    None => "no queue file".to_string(),
                };
                (pc, out.queue_id.clone())
            }
            Some(Disposition::Keep) => (
                "no queue file (maildrop file kept)".to_string(),
                String::new(),
            ),
            _ => ("no queue file".to_string(), String::new()),
        };
        let our_qid = if our_qid.is_empty() {
            lines
                .iter()
                .find(|(p, t)| p == "pickup" && t.contains(": uid="))
                .and_then(|(_, t)| t.split_once(": ").map(|(id, _)| id.to_string()))
                .unwrap_or_default()
        } else {
            our_qid
        };
        let pf_qid = postfix_qid(&c.log);
        let want_pc = normalize_postcat(&c.postcat, &pf_qid);
        let got_pc = normalize_postcat(&ours_pc, &our_qid);
        let want_log = normalize_log(&parse_maildrop_log(&c.log), &pf_qid);
        let got_log = normalize_log(&lines, &our_qid);
        if want_pc != got_pc {
            failures.push(format!(
                "== {}: postcat differs\n--- postfix\n{want_pc}\n--- ours\n{got_pc}",
                c.name
            ));
        }
        if want_log != got_log {
            failures.push(format!(
                "== {}: log differs\n--- postfix\n{want_log}\n--- ours\n{got_log}",
                c.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn parse_maildrop_log(log: &str) -> Vec<(String, String)> {
    parse_maillog(log)
}

#[test]
fn corrupt_maildrop_file_goes_to_corrupt() {
    let s = Scratch::new("cleanup-corrupt");
    let (conf_dir, spool) = setup(&s);
    let conf = MailConf::read(Some(conf_dir.to_str().unwrap())).unwrap();
    let mut pickup = Pickup::new(&conf).unwrap();
    // A valid envelope start, then a record that claims more data than
    // the file has.
    let mut data = Vec::new();
    rostfix::global::record::rec_encode(&mut data, b'T', b"1700000000 0");
    rostfix::global::record::rec_encode(&mut data, b'S', b"alice");
    rostfix::global::record::rec_encode(&mut data, b'R', b"bob@example.org");
    data.extend_from_slice(b"N\x7fshort");
    let path = spool.join("maildrop/BAD1");
    std::fs::write(&path, &data).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o744)).unwrap();
    let mut log = MailLog::capture();
    let d = pickup.pickup_one("BAD1", &mut log, &mut AcceptBounces(Vec::new()));
    assert_eq!(d, Some(Disposition::Corrupt));
    assert!(spool.join("corrupt/BAD1").exists());
    assert!(!path.exists());
    assert_eq!(
        std::fs::read_dir(spool.join("incoming")).unwrap().count(),
        0
    );
    let lines: Vec<String> = log.take().iter().map(|l| l.display()).collect();
    assert!(
        lines.contains(&format!(
            "pickup: warning: uid={}: unexpected or malformed record type -2",
            rostfix::sys::getuid()
        )),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("unexpected EOF in data, record type 78 length 127")),
        "{lines:?}"
    );
}
