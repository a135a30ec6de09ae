//! postcat against Postfix 3.7.11's postcat, on queue files written with
//! our record writer: ordinary messages, several recipients, long lines in
//! L records, 8-bit content, attributes, DSN and legacy records, pointer
//! records into a heap after the END record, padding, and malformed files
//! (not a queue file, truncated, bad pointer, multiple or invalid size
//! records, out-of-order markers), for every flag combination, from a file,
//! from stdin and through `-q`.
//!
//! Live mode (a reference exists: `$ROSTFIX_REFERENCE`,
//! `~/.cache/rostfix/postfix-3.7.11` or `/tmp/pfroot`): both run and must
//! agree byte for byte (stdout, stderr, exit status). Always: our outcome
//! must equal the golden file compat/golden/postcat/<case>.out, recorded
//! from Postfix with `ROSTFIX_RECORD=1 cargo test --test postcat`.

mod common;
use common::queue::*;

use std::path::{Path, PathBuf};
use std::sync::Arc;

const FLAGS: &[&str] = &[
    "", "-e", "-h", "-b", "-eh", "-hb", "-eb", "-o", "-d", "-v", "-rv", "-odv", "-hbo", "-eo",
    "-bd", "-ov", "-ovr",
];

/// The cases: name and file bytes.
fn cases() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = Vec::new();
    let long = vec![b'x'; 5000];
    let body8: &[u8] = b"caf\xc3\xa9 \xff\xfe 8-bit";
    v.push((
        "basic".into(),
        smtp_message(
            "907429900EC",
            "testuser@mx.example.test",
            &["root@mx.example.test"],
            &[b"body"],
        )
        .bytes(),
    ));
    v.push((
        "multi".into(),
        smtp_message(
            "ABCDE12345",
            "",
            &["a@example.com", "b@example.com", "\"odd user\"@example.com"],
            &[
                b"line one",
                b"",
                b" starts with space",
                &long,
                b"Subject: not a header",
                body8,
            ],
        )
        .bytes(),
    ));
    // Headers only, long header split, continuation lines.
    let mut q = smtp_message("X1", "s@x", &["r@x"], &[]);
    let mi = q
        .main
        .iter()
        .position(|i| matches!(i, Item::Rec(b'M', _)))
        .unwrap();
    let mut h = b"X-Long: ".to_vec();
    h.extend(std::iter::repeat_n(b'y', 3000));
    q.main
        .splice(mi + 1..mi + 1, content(&[&h, b"\tcontinued"], 2048));
    v.push(("long-header".into(), q.bytes()));
    // Every envelope/extracted record type.
    let mut q = smtp_message("X2", "s@x", &["r@x"], &[b"b"]);
    let extra: Vec<Item> = vec![
        rec(b'c', b"1795624000"),
        rec(b'F', b"Full Name"),
        rec(b'I', b"inspector:host"),
        rec(b'L', b"smtp:[127.0.0.1]:10025"),
        rec(b'W', b"     1795628000"),
        rec(b'D', b"done@x"),
        rec(b'/', b"cancelled@x"),
        rec(b'K', b"killed"),
        rec(b'>', b"redirect@x"),
        rec(b'f', b"1234"),
        rec(b'd', b"5"),
        rec(b'm', b"2"),
        rec(b'V', b"+="),
        rec(b'<', b"2"),
        rec(b'i', b"envid"),
        rec(b'o', b"rfc822;o@x"),
        rec(b'n', b"6"),
        rec(b'A', b"create_time=garbage"),
        rec(b'A', b"  spaced   =  value  "),
        rec(b'A', b"noequals"),
        rec(b'A', b"=novalue"),
        rec(b'A', b"nul=a\0b"),
        rec(b'w', b"padding"),
        rec(b'Z', b"unknown\0type"),
        rec(0, b"zero type"),
        rec(0xff, b"high type"),
    ];
    q.main.splice(5..5, extra);
    let xi = q
        .main
        .iter()
        .position(|i| matches!(i, Item::Rec(b'X', _)))
        .unwrap();
    q.main.splice(
        xi + 1..xi + 1,
        vec![
            rec(b'r', b"rr@x"),
            rec(b'e', b"err@x"),
            rec(b'P', b"5"),
            rec(b'R', b"extracted@x"),
            rec(b'w', b"  pad"),
        ],
    );
    v.push(("all-types".into(), q.bytes()));
    // Pointer records: recipients appended in the heap, a header replaced.
    let mut q = smtp_message("X3", "s@x", &["r@x"], &[b"body line"]);
    let mi = q
        .main
        .iter()
        .position(|i| matches!(i, Item::Rec(b'M', _)))
        .unwrap();
    q.main.insert(mi, Item::Ptr(Some(0)));
    q.heap
        .push((vec![rec(b'R', b"heap1@x"), rec(b'R', b"heap2@x")], mi + 1));
    let hi = mi + 3; // the "Subject: test" header, after M and Received (2 lines)
    q.main.insert(hi, Item::Ptr(Some(1)));
    q.heap.push((vec![rec(b'N', b"Subject: replaced")], hi + 1));
    let xi = q
        .main
        .iter()
        .position(|i| matches!(i, Item::Rec(b'X', _)))
        .unwrap();
    q.main.insert(xi, Item::Ptr(None));
    v.push(("pointers".into(), q.bytes()));
    // Padding in the content, and an unterminated L before X.
    let mut q = smtp_message("X4", "s@x", &["r@x"], &[b"a"]);
    let xi = q
        .main
        .iter()
        .position(|i| matches!(i, Item::Rec(b'X', _)))
        .unwrap();
    q.main.splice(
        xi..xi,
        vec![rec(b'w', b"        0"), rec(b'L', b"dangling")],
    );
    v.push(("padding".into(), q.bytes()));

    // Malformed files.
    v.push(("not-queue-file".into(), b"Zhello".to_vec()));
    v.push(("empty".into(), Vec::new()));
    let good = smtp_message("X5", "s@x", &["r@x"], &[b"b"]).bytes();
    v.push(("truncated-data".into(), good[..good.len() / 2].to_vec()));
    v.push(("truncated-length".into(), b"T\x85".to_vec()));
    v.push((
        "too-many-length-bits".into(),
        b"T\x80\x80\x80\x80\x80\x01".to_vec(),
    ));
    v.push((
        "negative-length".into(),
        b"T\x80\x80\x80\x80\x7fabc".to_vec(),
    ));
    v.push(("no-end".into(), good[..good.len() - 2].to_vec()));
    let mut bp = smtp_message("X6", "s@x", &["r@x"], &[b"b"]);
    bp.main.insert(6, rec(b'p', b"12x"));
    v.push(("bad-pointer".into(), bp.bytes()));
    let mut bp = smtp_message("X7", "s@x", &["r@x"], &[b"b"]);
    bp.main.insert(6, rec(b'p', b"999999"));
    v.push(("pointer-past-eof".into(), bp.bytes()));
    let mut ms = smtp_message("X8", "s@x", &["r@x"], &[b"b"]);
    ms.main.insert(3, rec(b'C', b"  1 2 3"));
    v.push(("multiple-size".into(), ms.bytes()));
    let mut is = smtp_message("X9", "s@x", &["r@x"], &[b"b"]);
    is.main[0] = rec(b'C', b"abc");
    is.raw_size = true;
    v.push(("invalid-size".into(), is.bytes()));
    let mut is = smtp_message("XA", "s@x", &["r@x"], &[b"b"]);
    is.main[0] = rec(b'C', b"12");
    is.raw_size = true;
    v.push(("half-size".into(), is.bytes()));
    let mut oo = smtp_message("XB", "s@x", &["r@x"], &[b"b"]);
    oo.main.insert(4, rec(b'X', b""));
    oo.main.insert(5, rec(b'M', b""));
    oo.main.insert(6, rec(b'E', b""));
    v.push(("out-of-order".into(), oo.bytes()));
    let mut hg = smtp_message("XC", "s@x", &["r@x"], &[b"b"]);
    hg.main.insert(1, rec(b'T', b"99999999999999999999 1"));
    v.push(("huge-time".into(), hg.bytes()));
    v
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("compat/golden/postcat")
}

/// A golden file: sections `=== name` followed by an outcome's text.
fn read_golden(path: &Path) -> std::collections::BTreeMap<String, String> {
    let mut m = std::collections::BTreeMap::new();
    let Ok(text) = std::fs::read(path) else {
        return m;
    };
    let text = String::from_utf8_lossy(&text).into_owned();
    let mut cur: Option<String> = None;
    let mut body = String::new();
    for line in text.split_inclusive('\n') {
        if let Some(name) = line.strip_prefix("=== ").filter(|_| {
            body.is_empty()
                || body.ends_with("--- status 0\n")
                || body.ends_with("--- status 1\n")
                || body.ends_with("--- status 69\n")
        }) {
            if let Some(c) = cur.take() {
                m.insert(c, std::mem::take(&mut body));
            }
            cur = Some(name.trim_end().to_string());
        } else {
            body.push_str(line);
        }
    }
    if let Some(c) = cur {
        m.insert(c, body);
    }
    m
}

/// Drop the main.cf processing diagnostics Postfix prints with -v (they
/// depend on the host's interfaces).
fn filter_verbose(o: &mut Outcome) {
    let text = String::from_utf8_lossy(&o.stderr).into_owned();
    let kept: Vec<&str> = text
        .split_inclusive('\n')
        .filter(|l| {
            ![
                "name_mask:",
                "inet_addr_local:",
                "been_here:",
                "mynetworks_core:",
            ]
            .iter()
            .any(|p| l.starts_with(&format!("postcat: {p}")))
        })
        .collect();
    o.stderr = kept.concat().into_bytes();
}

/// Run one invocation under one implementation.
fn one(which: Impl, dir: &Path, args: &[String], stdin: Option<&Path>) -> Outcome {
    let mut o = run(which, "postcat", args, stdin, dir);
    filter_verbose(&mut o);
    o
}

/// Run all invocations of a case under both, in parallel (Postfix sleeps a
/// second after a fatal error).
fn check_all(tag: &str, dir: &Path, invocations: Vec<(String, Vec<String>, Option<PathBuf>)>) {
    let live = reference().is_some();
    if !live {
        eprintln!(
            "SKIP live part of {tag}: no Postfix 3.7.11 reference; checking golden files only"
        );
    }
    let dir = Arc::new(dir.to_path_buf());
    let handles: Vec<_> = invocations
        .into_iter()
        .map(|(name, args, stdin)| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let ours = one(Impl::Ours, &dir, &args, stdin.as_deref());
                let theirs = live.then(|| one(Impl::Postfix, &dir, &args, stdin.as_deref()));
                (name, args, ours, theirs)
            })
        })
        .collect();
    let record = std::env::var_os("ROSTFIX_RECORD").is_some();
    let golden_file = golden_dir().join(format!("{tag}.out"));
    let golden = read_golden(&golden_file);
    let mut recorded = std::collections::BTreeMap::new();
    let mut failures = Vec::new();
    for h in handles {
        let (name, args, ours, theirs) = h.join().unwrap();
        if let Some(t) = &theirs {
            // Postfix crashes (SIGSEGV) on a time it cannot convert: we
            // exit with a fatal error instead (compat/DIVERGENCES.md).
            if t.status == 139 {
                assert_eq!(ours.status, 1, "{name}: {}", ours.text());
                continue;
            }
            recorded.insert(name.clone(), t.text());
            if &ours != t {
                failures.push(format!(
                    "{name} (postcat {}):\n=== ours\n{}=== postfix\n{}",
                    args.join(" "),
                    ours.text(),
                    t.text()
                ));
                continue;
            }
        }
        match golden.get(&name) {
            Some(g) if *g != ours.text() => failures.push(format!(
                "{name}: differs from {}:\n{}=== golden\n{g}",
                golden_file.display(),
                ours.text()
            )),
            Some(_) => {}
            None if record => {}
            None if ours.status == 1
                && String::from_utf8_lossy(&ours.stderr).contains("out of range") => {}
            None => failures.push(format!("{name}: not in {}", golden_file.display())),
        }
    }
    if record {
        std::fs::create_dir_all(golden_dir()).unwrap();
        let mut text = String::new();
        for (k, v) in &recorded {
            text.push_str(&format!("=== {k}\n{v}"));
        }
        std::fs::write(&golden_file, text).unwrap();
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn postcat_files_every_flag() {
    let s = Scratch::new("postcat-files");
    write_conf(&s.path("conf"), &s.path("q").display().to_string(), "");
    let conf = s.path("conf").display().to_string();
    let mut inv = Vec::new();
    for (name, bytes) in cases() {
        std::fs::write(s.path(&name), &bytes).unwrap();
        for f in FLAGS {
            let mut args = vec!["-c".to_string(), conf.clone()];
            if !f.is_empty() {
                args.push(f.to_string());
            }
            args.push(name.clone());
            let tag = format!(
                "{name}{}",
                if f.is_empty() {
                    String::new()
                } else {
                    format!("_{}", &f[1..])
                }
            );
            inv.push((tag, args, None));
        }
        // From stdin (a file: seekable) with offsets.
        inv.push((
            format!("{name}_stdin_o"),
            vec!["-c".into(), conf.clone(), "-o".into()],
            Some(s.path(&name)),
        ));
    }
    check_all("postcat_files_every_flag", &s.0, inv);
}

#[test]
fn postcat_start_offset_and_args() {
    let s = Scratch::new("postcat-offset");
    write_conf(&s.path("conf"), &s.path("q").display().to_string(), "");
    let conf = s.path("conf").display().to_string();
    let q = smtp_message(
        "907429900EC",
        "testuser@mx.example.test",
        &["root@mx.example.test"],
        &[b"body"],
    );
    std::fs::write(s.path("msg"), q.bytes()).unwrap();
    let mut inv = Vec::new();
    for (tag, extra) in [
        ("offset97", vec!["-s", "97", "-o", "msg"]),
        ("offset0", vec!["-s", "0", "msg"]),
        ("offset-mid", vec!["-s", "100", "msg"]),
        ("offset-bad", vec!["-s", "1x", "msg"]),
        ("offset-big", vec!["-s", "100000", "-e", "msg"]),
        ("bad-option", vec!["-x", "msg"]),
        ("missing-arg", vec!["-s"]),
        ("missing-file", vec!["nonexistent"]),
        ("two-files", vec!["-e", "msg", "msg"]),
        ("dashdash", vec!["--", "msg"]),
    ] {
        let mut args = vec!["-c".to_string(), conf.clone()];
        args.extend(extra.iter().map(|a| a.to_string()));
        inv.push((format!("args-{tag}"), args, None));
    }
    inv.push((
        "args-stdin-offset".into(),
        vec!["-c".into(), conf.clone(), "-s".into(), "97".into()],
        Some(s.path("msg")),
    ));
    check_all("postcat_start_offset_and_args", &s.0, inv);
}

#[test]
fn postcat_queue_search() {
    let s = Scratch::new("postcat-q");
    let qdir = s.path("q");
    for d in [
        "maildrop",
        "incoming",
        "active",
        "deferred/9",
        "hold",
        "saved",
    ] {
        std::fs::create_dir_all(qdir.join(d)).unwrap();
    }
    write_conf(&s.path("conf"), &qdir.display().to_string(), "");
    let conf = s.path("conf").display().to_string();
    let q = smtp_message("9A5B5990152", "a@x", &["b@x"], &[b"deferred body"]);
    std::fs::write(qdir.join("deferred/9/9A5B5990152"), q.bytes()).unwrap();
    let q = smtp_message("907429900EC", "a@x", &["b@x"], &[b"held body"]);
    std::fs::write(qdir.join("hold/907429900EC"), q.bytes()).unwrap();
    let mut inv = Vec::new();
    for (tag, extra) in [
        ("deferred", vec!["-q", "9A5B5990152"]),
        ("hold-headers", vec!["-q", "-h", "907429900EC"]),
        ("both", vec!["-q", "907429900EC", "9A5B5990152"]),
        ("missing", vec!["-q", "ABCDEF"]),
        ("bad-id", vec!["-q", "a.b"]),
    ] {
        let mut args = vec!["-c".to_string(), conf.clone()];
        args.extend(extra.iter().map(|a| a.to_string()));
        inv.push((format!("queue-{tag}"), args, None));
    }
    check_all("postcat_queue_search", &s.0, inv);
}

/// Random bytes and truncations: never a panic; when Postfix exits
/// normally or with a fatal error, the same outcome.
#[test]
fn postcat_corrupt_input() {
    let s = Scratch::new("postcat-corrupt");
    write_conf(&s.path("conf"), &s.path("q").display().to_string(), "");
    let conf = s.path("conf").display().to_string();
    let mut seed: u64 = 0x2545F4914F6CDD1D;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let good = smtp_message("X", "s@x", &["r@x", "q@x"], &[b"hello", b"world"]).bytes();
    let mut files = Vec::new();
    for i in 0..40 {
        let mut b = good.clone();
        match i % 3 {
            0 => b.truncate((next() as usize) % good.len()),
            1 => {
                for _ in 0..3 {
                    let at = (next() as usize) % b.len();
                    b[at] = next() as u8;
                }
            }
            _ => {
                let n = (next() as usize) % 300;
                b = (0..n).map(|_| next() as u8).collect();
                if let Some(f) = b.first_mut() {
                    *f = b"CTSRAM"[(next() as usize) % 6];
                }
            }
        }
        let name = format!("corrupt{i}");
        std::fs::write(s.path(&name), &b).unwrap();
        files.push((name, b));
    }
    let live = reference().is_some();
    let handles: Vec<_> = files
        .into_iter()
        .map(|(name, _)| {
            let dir = s.0.clone();
            let args = vec![
                "-c".to_string(),
                conf.clone(),
                "-ov".to_string(),
                name.clone(),
            ];
            std::thread::spawn(move || {
                let ours = one(Impl::Ours, &dir, &args, None);
                let theirs = live.then(|| one(Impl::Postfix, &dir, &args, None));
                (name, ours, theirs)
            })
        })
        .collect();
    for h in handles {
        let (name, ours, theirs) = h.join().unwrap();
        assert!(
            ours.status == 0 || ours.status == 1,
            "{name}: {}",
            ours.text()
        );
        assert!(
            !String::from_utf8_lossy(&ours.stderr).contains("panicked"),
            "{name}"
        );
        if let Some(t) = theirs
            && t.status < 128
        {
            assert_eq!(ours, t, "{name}:\n{}\n{}", ours.text(), t.text());
        }
    }
}

/// The queue file captured from a real Postfix 3.7.11 instance
/// (../shared/reference/postfix-3.7-samples.txt: its records and its
/// `postcat -o -v` output) must print the same with our postcat.
#[test]
fn captured_postfix_queue_file() {
    let sample =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/postfix-3.7-samples.txt");
    let Ok(text) = std::fs::read_to_string(&sample) else {
        eprintln!("SKIP captured_postfix_queue_file: no {}", sample.display());
        return;
    };
    let mut bytes = Vec::new();
    let mut expect = String::new();
    let mut section = "";
    for line in text.lines() {
        if line.starts_with("=== ") {
            section = if line.starts_with("=== raw queue file") {
                "raw"
            } else if line.starts_with("=== postcat -o -v") {
                "postcat"
            } else {
                ""
            };
            continue;
        }
        match section {
            "raw" if line.starts_with('\'') => {
                let t = line.as_bytes()[1];
                let start = line.find("b'").unwrap() + 2;
                let body = &line[start..line.len() - 1];
                let mut payload = Vec::new();
                let mut chars = body.bytes();
                while let Some(c) = chars.next() {
                    if c == b'\\' {
                        match chars.next() {
                            Some(b't') => payload.push(b'\t'),
                            Some(o) => payload.push(o),
                            None => {}
                        }
                    } else {
                        payload.push(c);
                    }
                }
                rostfix::global::record::rec_encode(&mut bytes, t, &payload);
            }
            "postcat" if !line.is_empty() => {
                expect.push_str(line);
                expect.push('\n');
            }
            _ => {}
        }
    }
    assert!(!bytes.is_empty() && !expect.is_empty());
    let s = Scratch::new("captured");
    std::fs::create_dir_all(s.path("SPOOL/hold")).unwrap();
    std::fs::write(s.path("SPOOL/hold/907429900EC"), &bytes).unwrap();
    write_conf(&s.path("conf"), &s.path("q").display().to_string(), "");
    let args = vec![
        "-c".to_string(),
        s.path("conf").display().to_string(),
        "-o".into(),
        "-v".into(),
        "SPOOL/hold/907429900EC".into(),
    ];
    let ours = run(Impl::Ours, "postcat", &args, None, &s.0);
    assert_eq!(String::from_utf8_lossy(&ours.stdout), expect);
    assert_eq!(ours.status, 0);
}
