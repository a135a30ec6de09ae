//! postsuper against Postfix 3.7.11: the same queue tree (files in every
//! queue: ready, active, forced-expired, incomplete and stale, a file
//! whose name no longer matches its inode, a long ID where long IDs are
//! off, a file in the wrong hash directory, a bogus name, a defer log) is
//! built twice; Postfix's postsuper runs on one copy and ours on the
//! other, with the same arguments (IDs mapped to each copy's names); the
//! output, exit status and resulting trees must be identical once queue
//! IDs are replaced by the file labels.
//!
//! postsuper is root-only (as in Postfix): the test is skipped for other
//! users. Without a reference, our outcome must equal the golden file
//! compat/golden/postsuper/cases<N>.out (re-record with
//! `ROSTFIX_RECORD=1 cargo test --test postsuper`).

mod common;
use common::queue::{Scratch, owner_and_group, reference, write_conf};

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Impl {
    Ours,
    Postfix,
}

/// Put a file with content `label` in `queue` and name it after its
/// inode (short ID from `usec`, or long ID); returns the ID.
fn put(q: &Path, queue: &str, label: &str, usec: u64, mode: u32, how: &str) -> String {
    let tmp = q.join(queue).join(format!("tmp-{label}"));
    std::fs::write(&tmp, format!("{label}\n")).unwrap();
    let ino = std::fs::metadata(&tmp).unwrap().ino();
    let id = match how {
        "long" => rostfix::global::mail_queue::long_queue_id(1795624000, usec, ino),
        "mismatch" => rostfix::global::mail_queue::short_queue_id(usec, ino + 0x1000),
        _ => rostfix::global::mail_queue::short_queue_id(usec, ino),
    };
    let qc = rostfix::global::mail_queue::QueueConf::default();
    let rel = if how == "unhashed" {
        format!("{queue}/{id}")
    } else {
        qc.path(queue, &id)
    };
    let dst = q.join(&rel);
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    std::fs::rename(&tmp, &dst).unwrap();
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode)).unwrap();
    id
}

/// Build the queue; returns label -> ID.
fn build(q: &Path) -> BTreeMap<String, String> {
    let _ = std::fs::remove_dir_all(q);
    for d in [
        "maildrop", "incoming", "active", "deferred", "hold", "defer", "bounce", "trace", "flush",
        "corrupt", "saved", "public", "private",
    ] {
        std::fs::create_dir_all(q.join(d)).unwrap();
    }
    let mut m = BTreeMap::new();
    let mut add = |label: &str, id: String| {
        m.insert(label.to_string(), id);
    };
    add("in1", put(q, "incoming", "in1", 0x11111, 0o700, ""));
    add("act1", put(q, "active", "act1", 0x22222, 0o740, ""));
    let d1 = put(q, "deferred", "def1", 0x33333, 0o700, "");
    let log = q.join(rostfix::global::mail_queue::QueueConf::default().path("defer", &d1));
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    std::fs::write(&log, "defer-log\n").unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o600)).unwrap();
    add("def1", d1);
    add("def2", put(q, "deferred", "def2", 0x44444, 0o710, ""));
    add("hold1", put(q, "hold", "hold1", 0x55555, 0o700, ""));
    add("hold2", put(q, "hold", "hold2", 0x66666, 0o700, ""));
    add("drop1", put(q, "maildrop", "drop1", 0x77777, 0o744, ""));
    add("partial", put(q, "incoming", "partial", 0x88888, 0o600, ""));
    let stale_id = put(q, "incoming", "stale", 0x99999, 0o600, "");
    let stale = q.join("incoming").join(&stale_id);
    add("stale", stale_id);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(8 * 86400))
        .unwrap();
    add(
        "misnamed",
        put(q, "hold", "misnamed", 0xABCDE, 0o700, "mismatch"),
    );
    add(
        "longid",
        put(q, "deferred", "longid", 0x12345, 0o700, "long"),
    );
    add(
        "unhashed",
        put(q, "deferred", "unhashed", 0xBCDEF, 0o700, "unhashed"),
    );
    std::fs::write(q.join("incoming/bad.name"), "bogus\n").unwrap();
    std::fs::set_permissions(
        q.join("incoming/bad.name"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let (user, _) = owner_and_group();
    let uid = rostfix::sys::ids::user_uid(&user).expect("mail_owner uid");
    chown_tree(q, uid);
    m
}

fn chown_tree(dir: &Path, uid: u32) {
    std::os::unix::fs::lchown(dir, Some(uid), None).unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            chown_tree(&p, uid);
        } else {
            std::os::unix::fs::lchown(&p, Some(uid), None).unwrap();
        }
    }
}

/// Replace IDs by labels; other ID-like words (new names) by NEWID.
fn normalise(text: &str, ids: &BTreeMap<String, String>) -> String {
    let mut t = text.to_string();
    for (label, id) in ids {
        t = t.replace(id, &format!("<{label}>"));
    }
    let mut out = String::new();
    for word in t.split_inclusive(['/', ' ', '\n', ':', '#']) {
        let core = word.trim_end_matches(['/', ' ', '\n', ':', '#']);
        if core.len() >= 8
            && core.chars().all(|c| c.is_ascii_alphanumeric())
            && core.chars().any(|c| c.is_ascii_digit())
        {
            out.push_str("NEWID");
            out.push_str(&word[core.len()..]);
        } else {
            out.push_str(word);
        }
    }
    out
}

/// The tree: mode, path (IDs normalised) and the file's label.
fn listing(q: &Path, ids: &BTreeMap<String, String>) -> String {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>, ids: &BTreeMap<String, String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let rel = normalise(&rel, ids);
            if md.is_dir() {
                out.push(format!("{:o} {rel}/", md.mode() & 0o7777));
                walk(base, &p, out, ids);
            } else {
                let content = std::fs::read_to_string(&p).unwrap_or_default();
                out.push(format!(
                    "{:o} {rel} = {}",
                    md.mode() & 0o7777,
                    content.trim_end()
                ));
            }
        }
    }
    let mut v = Vec::new();
    walk(q, q, &mut v, ids);
    v.sort();
    v.join("\n") + "\n"
}

fn run(which: Impl, conf: &Path, args: &[String], stdin: &str) -> (String, i32) {
    let mut cmd = match which {
        Impl::Ours => {
            let mut c = Command::new(env!("CARGO_BIN_EXE_rostfix"));
            c.arg0("postsuper");
            c
        }
        Impl::Postfix => {
            let r = reference().unwrap();
            let mut c = Command::new(r.join("usr/sbin/postsuper"));
            c.arg0("postsuper");
            c.env(
                "LD_LIBRARY_PATH",
                format!(
                    "{0}/usr/lib/postfix:{0}/usr/lib/x86_64-linux-gnu",
                    r.display()
                ),
            );
            c
        }
    };
    cmd.args(args)
        .env("MAIL_CONFIG", conf)
        .env_remove("MAIL_VERBOSE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut i = child.stdin.take().unwrap();
        let _ = i.write_all(stdin.as_bytes());
    }
    let o = child.wait_with_output().unwrap();
    (
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        o.status.code().unwrap_or(-1),
    )
}

/// (case name, args with {label} placeholders, stdin with placeholders, extra main.cf)
fn cases() -> Vec<(&'static str, Vec<&'static str>, &'static str, &'static str)> {
    vec![
        ("default", vec![], "", ""),
        ("s", vec!["-s"], "", ""),
        ("S", vec!["-S"], "", ""),
        ("p", vec!["-p"], "", ""),
        ("d-all", vec!["-d", "ALL"], "", ""),
        ("d-all-deferred", vec!["-d", "ALL", "deferred"], "", ""),
        ("h-all", vec!["-h", "ALL"], "", ""),
        ("H-all", vec!["-H", "ALL"], "", ""),
        ("r-all", vec!["-r", "ALL"], "", ""),
        ("e-all", vec!["-e", "ALL"], "", ""),
        ("f-all", vec!["-f", "ALL"], "", ""),
        (
            "d-ids",
            vec![
                "-d",
                "{def1}",
                "-d",
                "{hold1}",
                "-d",
                "{drop1}",
                "-d",
                "{partial}",
            ],
            "",
            "",
        ),
        ("d-bad", vec!["-d", "bad.id", "-d", "ABCDEF0123"], "", ""),
        (
            "d-stdin",
            vec!["-d", "-"],
            "{in1}\n{act1}\nnot-an-id\n{hold2}",
            "",
        ),
        (
            "d-queue",
            vec!["-d", "{in1}", "-d", "{def1}", "deferred"],
            "",
            "",
        ),
        (
            "h-ids",
            vec![
                "-h", "{in1}", "-h", "{drop1}", "-h", "{hold1}", "-h", "{def1}",
            ],
            "",
            "",
        ),
        ("H-ids", vec!["-H", "{hold1}", "-H", "{def1}"], "", ""),
        (
            "r-ids",
            vec!["-r", "{hold1}", "-r", "{act1}", "-r", "{drop1}"],
            "",
            "",
        ),
        (
            "e-ids",
            vec![
                "-e", "{def1}", "-e", "{def2}", "-e", "{hold2}", "-e", "{drop1}",
            ],
            "",
            "",
        ),
        ("f-ids", vec!["-f", "{hold1}", "-f", "{def2}"], "", ""),
        (
            "mixed-order",
            vec!["-h", "{in1}", "-d", "{in1}", "-H", "ALL", "-r", "{hold2}"],
            "",
            "",
        ),
        ("s-then-id", vec!["-s", "-d", "{def1}"], "", ""),
        ("bad-queue", vec!["-h", "ALL", "bogus"], "", ""),
        ("bad-queue-H", vec!["-H", "{hold1}", "bogus"], "", ""),
        (
            "hashed-maildrop",
            vec!["-s"],
            "",
            "hash_queue_names = maildrop\n",
        ),
        (
            "deeper-hash",
            vec!["-s"],
            "",
            "hash_queue_depth = 2\nhash_queue_names = deferred, defer, hold\n",
        ),
        (
            "long-ids-on",
            vec!["-s"],
            "",
            "enable_long_queue_ids = yes\n",
        ),
        (
            "long-ids-S",
            vec!["-S"],
            "",
            "enable_long_queue_ids = yes\n",
        ),
        ("unknown-option", vec!["-x"], "", ""),
        ("relative-c", vec!["-c", "rel"], "", ""),
    ]
}

/// Cases run in groups (tests run in parallel; each Postfix fatal error
/// costs a second).
fn check(group: usize) {
    if rostfix::sys::ids::geteuid() != 0 {
        eprintln!("SKIP postsuper group {group}: postsuper is for the superuser only");
        return;
    }
    let live = reference().is_some();
    if !live {
        eprintln!(
            "SKIP live part of postsuper_like_postfix: no Postfix 3.7.11 reference; golden only"
        );
    }
    let s = Scratch::new(&format!("postsuper{group}"));
    let mut ours_all = String::new();
    let mut record = String::new();
    let mut failures = Vec::new();
    let all = cases();
    let per = all.len().div_ceil(GROUPS);
    for (name, args, stdin, extra) in all.into_iter().skip(group * per).take(per) {
        let outcome = |which: Impl| -> String {
            let root = s.path(&format!("{name}-{}", which as u8));
            let q = root.join("q");
            let ids = build(&q);
            write_conf(&root.join("conf"), &q.display().to_string(), extra);
            let fill = |t: &str| {
                let mut t = t.to_string();
                for (l, id) in &ids {
                    t = t.replace(&format!("{{{l}}}"), id);
                }
                t
            };
            let args: Vec<String> = args.iter().map(|a| fill(a)).collect();
            let (out, status) = run(which, &root.join("conf"), &args, &fill(stdin));
            format!(
                "--- status {status}\n--- output\n{}--- tree\n{}",
                normalise(&out, &ids),
                listing(&q, &ids)
            )
        };
        let ours = outcome(Impl::Ours);
        ours_all.push_str(&format!("=== {name}\n{ours}"));
        if live {
            let theirs = outcome(Impl::Postfix);
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
        .join(format!("compat/golden/postsuper/cases{group}.out"));
    if std::env::var_os("ROSTFIX_RECORD").is_some() && live {
        std::fs::create_dir_all(golden_path.parent().unwrap()).unwrap();
        std::fs::write(&golden_path, &record).unwrap();
    }
    let golden = std::fs::read_to_string(&golden_path).expect("golden file");
    assert_eq!(ours_all, golden);
}

const GROUPS: usize = 4;

#[test]
fn postsuper_group0() {
    check(0);
}

#[test]
fn postsuper_group1() {
    check(1);
}

#[test]
fn postsuper_group2() {
    check(2);
}

#[test]
fn postsuper_group3() {
    check(3);
}

#[test]
fn postsuper_refuses_non_root() {
    // As Postfix: the check comes before main.cf is read.
    let out = Command::new(env!("CARGO_BIN_EXE_rostfix"))
        .arg0("postsuper")
        .env("MAIL_CONFIG", "/nonexistent")
        .output()
        .unwrap();
    if rostfix::sys::ids::getuid() == 0 {
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "postsuper: fatal: open /nonexistent/main.cf: No such file or directory\n"
        );
    } else {
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "postsuper: fatal: use of this command is reserved for the superuser\n"
        );
    }
    assert_eq!(out.status.code(), Some(1));
}
