//! Two-way interop of our `cdb:` and `lmdb:` tables with Postfix 3.7.11's
//! (Debian's postfix-cdb with tinycdb 0.78, postfix-lmdb with liblmdb
//! 0.9.24): tables we build are queried with Postfix's `postmap -q` / `-s`,
//! tables Postfix builds are read with ours, and the outputs must be equal.
//!
//! The reference is `$ROSTFIX_REFERENCE`, else
//! `$HOME/.cache/rostfix/postfix-3.7.11` (made by compat/reference.sh), else
//! `/tmp/pfroot`. Without one, each test prints a SKIP notice and checks only
//! what needs no Postfix.

use rostfix::global::dict::{self, Dict, OpenMode, Seq, Status, flags};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// postmap's flags when it builds a table: warn on duplicates, fold case,
/// one bulk transaction.
const BUILD: u32 = flags::DUP_WARN | flags::FOLD_FIX | flags::BULK_UPDATE;
/// postmap's flags when it queries.
const QUERY: u32 = flags::FOLD_FIX | flags::LOCK;

fn reference() -> Option<PathBuf> {
    let mut cands = Vec::new();
    if let Some(r) = std::env::var_os("ROSTFIX_REFERENCE") {
        cands.push(PathBuf::from(r));
    }
    if let Some(h) = std::env::var_os("HOME") {
        cands.push(Path::new(&h).join(".cache/rostfix/postfix-3.7.11"));
    }
    cands.push(PathBuf::from("/tmp/pfroot"));
    cands.into_iter().find(|r| {
        r.join("usr/sbin/postmap").exists()
            && r.join("usr/lib/postfix/postfix-cdb.so").exists()
            && r.join("usr/lib/postfix/postfix-lmdb.so").exists()
    })
}

/// A scratch folder, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("rostfix-cdblmdb-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Postfix's postmap with a scratch configuration that loads the plugins.
struct Postfix {
    root: PathBuf,
    conf: Scratch,
}

impl Postfix {
    fn new(tag: &str, extra_main_cf: &str) -> Option<Postfix> {
        let Some(root) = reference() else {
            eprintln!(
                "SKIP {tag}: no Postfix 3.7.11 reference (set ROSTFIX_REFERENCE or run compat/reference.sh); Postfix half not checked"
            );
            return None;
        };
        let conf = Scratch::new(&format!("{tag}-conf"));
        let dir = conf.0.to_str().unwrap();
        let lib = root.join("usr/lib/postfix");
        std::fs::write(
            conf.0.join("main.cf"),
            format!(
                "meta_directory = {dir}\ncompatibility_level = 3.6\nmail_owner = mail\n\
                 setgid_group = staff\n{extra_main_cf}"
            ),
        )
        .unwrap();
        std::fs::write(
            conf.0.join("dynamicmaps.cf"),
            format!(
                "cdb {l}/postfix-cdb.so dict_cdb_open mkmap_cdb_open\n\
                 lmdb {l}/postfix-lmdb.so dict_lmdb_open mkmap_lmdb_open\n",
                l = lib.display()
            ),
        )
        .unwrap();
        // Postfix re-reads a main.cf changed within the last second.
        for f in ["main.cf", "dynamicmaps.cf"] {
            let t = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
            std::fs::File::options()
                .write(true)
                .open(conf.0.join(f))
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        Some(Postfix { root, conf })
    }

    fn postmap(&self, args: &[&str], stdin: &[u8]) -> Output {
        let libs = [
            self.root.join("usr/lib/postfix"),
            self.root.join("usr/lib/x86_64-linux-gnu"),
            self.root.join("lib/x86_64-linux-gnu"),
        ]
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
        let mut child = Command::new(self.root.join("usr/sbin/postmap"))
            .arg0("postmap")
            .arg("-c")
            .arg(&self.conf.0)
            .args(args)
            .env("LD_LIBRARY_PATH", libs)
            .env("NORANDOMIZE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        let feeder = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        out
    }
}

/// Compare long texts, reporting the first differing line instead of
/// megabytes of output.
#[track_caller]
fn same(got: &str, want: &str, what: &str) {
    if got == want {
        return;
    }
    let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
    let i = g
        .iter()
        .zip(&w)
        .position(|(a, b)| a != b)
        .unwrap_or(g.len().min(w.len()));
    let cut = |s: Option<&&str>| s.map(|s| s.chars().take(200).collect::<String>());
    panic!(
        "{what}: {} lines vs {} expected; first difference at line {}:\n got: {:?}\nwant: {:?}",
        g.len(),
        w.len(),
        i + 1,
        cut(g.get(i)),
        cut(w.get(i))
    );
}

/// Several postmap runs at once: each fatal error costs Postfix a second's
/// sleep before it exits.
fn postmap_all(pf: &Postfix, runs: &[&[&str]]) -> Vec<Output> {
    std::thread::scope(|sc| {
        let hs: Vec<_> = runs
            .iter()
            .map(|args| sc.spawn(move || pf.postmap(args, b"")))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Test entries: upper-case keys (folded on build), a long value, keys with
/// odd bytes, and `n` generated entries.
fn entries(n: usize) -> Vec<(String, String)> {
    let mut v = vec![
        (
            "Upper@Example.COM".to_string(),
            "Mixed Case Value".to_string(),
        ),
        (
            "root".to_string(),
            "admin@example.org, other@example.org".to_string(),
        ),
        ("long".to_string(), "x".repeat(70_000) + "end"),
        ("tab\tkey".to_string(), "v".to_string()),
    ];
    for i in 0..n {
        v.push((
            format!("User{i}@Dom{}.example", i % 97),
            format!("value-{i}-{}", "y".repeat(i % 300)),
        ));
    }
    v
}

/// The postmap source text for entries (no key contains a space).
fn source(e: &[(String, String)]) -> String {
    e.iter()
        .filter(|(k, _)| !k.contains(['\t', ' ']))
        .map(|(k, v)| format!("{k} {v}\n"))
        .collect()
}

fn build_ours(ty: &str, path: &str, e: &[(String, String)], extra: u32) {
    let mut d = dict::registry::dict_open(&format!("{ty}:{path}"), OpenMode::Create, BUILD | extra)
        .unwrap();
    for (k, v) in e {
        assert_eq!(d.update(k, v).unwrap(), Status::Success, "{k}");
    }
    d.close().unwrap();
}

/// `postmap -q -` output for these keys, as Postfix prints it.
fn expected_q(e: &[(String, String)], keys: &[String]) -> String {
    let m: BTreeMap<String, &String> = e.iter().map(|(k, v)| (k.to_lowercase(), v)).collect();
    keys.iter()
        .filter_map(|k| m.get(&k.to_lowercase()).map(|v| format!("{k}\t{v}\n")))
        .collect()
}

fn query_keys(e: &[(String, String)]) -> Vec<String> {
    let mut keys: Vec<String> = e
        .iter()
        .filter(|(k, _)| !k.contains(['\t', ' ']))
        .map(|(k, _)| k.clone())
        .collect();
    keys.push("USER7@DOM7.EXAMPLE".into());
    keys.push("missing@nowhere".into());
    keys.push("ROOT".into());
    keys
}

fn our_lookups(ty: &str, path: &str, keys: &[String]) -> String {
    let mut d =
        dict::registry::dict_open(&format!("{ty}:{path}"), OpenMode::ReadOnly, QUERY).unwrap();
    let mut out = String::new();
    for k in keys {
        if let Some(v) = d.lookup(k).unwrap() {
            out.push_str(&format!("{k}\t{v}\n"));
        }
    }
    out
}

fn check_ours_read_by_postfix(ty: &str, extra: u32) {
    let tag = format!("{ty}-ours{extra}");
    let s = Scratch::new(&tag);
    let mut e = entries(20_000);
    // Empty values only go in through the API (postmap refuses them).
    e.push(("Empty".into(), String::new()));
    let table = s.path("t");
    build_ours(ty, &table, &e, extra);
    let mut keys = query_keys(&e);
    keys.push("EMPTY".into());
    let want = expected_q(&e, &keys);
    assert!(want.contains("\nEMPTY\t\n"));
    // Our own reader agrees with the model.
    same(&our_lookups(ty, &table, &keys), &want, "our reader");
    let Some(pf) = Postfix::new(&tag, "") else {
        return;
    };
    let spec = format!("{ty}:{table}");
    let out = pf.postmap(&["-q", "-", &spec], keys.join("\n").as_bytes());
    assert!(out.status.success());
    // postmap reports an empty result as an error of the table, under the
    // table's name (which for cdb includes the suffix, as ours does).
    let d = dict::registry::dict_open(&spec, OpenMode::ReadOnly, QUERY).unwrap();
    let table_name = format!("{}:{}", d.type_name(), d.name());
    let mut want_err = String::new();
    for k in ["Empty", "EMPTY"] {
        want_err += &format!(
            "postmap: warning: table {table_name}: key {k}: empty string result is not allowed\n\
             postmap: warning: table {table_name} should return NO RESULT in case of NOT FOUND\n"
        );
    }
    assert_eq!(text(&out.stderr), want_err);
    // ... and still prints it.
    same(&text(&out.stdout), &want, "Postfix's postmap -q -");
    // A key with a tab goes in through the API only, too.
    let out = pf.postmap(&["-q", "tab\tKEY", &spec], b"");
    assert_eq!(text(&out.stdout), "v\n");
}

#[test]
fn cdb_ours_read_by_postfix() {
    check_ours_read_by_postfix("cdb", 0);
}

#[test]
fn cdb_ours_with_nul_read_by_postfix() {
    check_ours_read_by_postfix("cdb", flags::TRY1NULL);
}

#[test]
fn lmdb_ours_read_by_postfix() {
    check_ours_read_by_postfix("lmdb", 0);
}

#[test]
fn lmdb_ours_without_nul_read_by_postfix() {
    check_ours_read_by_postfix("lmdb", flags::TRY0NULL);
}

fn check_postfix_read_by_ours(ty: &str, build_flag: Option<&str>) {
    let tag = format!("{ty}-pf{}", build_flag.unwrap_or(""));
    let Some(pf) = Postfix::new(&tag, "") else {
        return;
    };
    let s = Scratch::new(&tag);
    let e = entries(20_000);
    let table = s.path("t");
    std::fs::write(&table, source(&e)).unwrap();
    let mut args: Vec<&str> = build_flag.into_iter().collect();
    let spec = format!("{ty}:{table}");
    args.push(&spec);
    let out = pf.postmap(&args, b"");
    assert_eq!(text(&out.stderr), "");
    assert!(out.status.success());
    let keys = query_keys(&e);
    let want = expected_q(&e, &keys);
    same(&our_lookups(ty, &table, &keys), &want, "our reader");
    // Postfix agrees on what it built.
    let out = pf.postmap(&["-q", "-", &spec], keys.join("\n").as_bytes());
    same(&text(&out.stdout), &want, "Postfix's postmap -q -");
}

#[test]
fn cdb_postfix_read_by_ours() {
    check_postfix_read_by_ours("cdb", None);
}

#[test]
fn cdb_postfix_with_nul_read_by_ours() {
    check_postfix_read_by_ours("cdb", Some("-N"));
}

#[test]
fn lmdb_postfix_read_by_ours() {
    check_postfix_read_by_ours("lmdb", None);
}

#[test]
fn lmdb_postfix_without_nul_read_by_ours() {
    check_postfix_read_by_ours("lmdb", Some("-n"));
}

/// The same source gives the same cdb bytes as tinycdb, with and without
/// -N, and with duplicates under -w (kept) and -r (replaced).
#[test]
fn cdb_bytes_identical_to_postfix() {
    let Some(pf) = Postfix::new("cdb-bytes", "") else {
        return;
    };
    let s = Scratch::new("cdb-bytes");
    let mut e = entries(3000);
    e.retain(|(k, _)| !k.contains('\t'));
    // Duplicates, differing in case only.
    e.push(("ROOT".into(), "second".into()));
    e.push(("user5@dom5.example".into(), "replaced".into()));
    let table = s.path("t");
    std::fs::write(&table, source(&e)).unwrap();
    let ours = s.path("o");
    for (pf_flag, extra) in [
        ("-w", flags::DUP_IGNORE),
        ("-r", flags::DUP_REPLACE),
        ("-N", flags::TRY1NULL | flags::DUP_IGNORE),
    ] {
        let spec = format!("cdb:{table}");
        let mut args = vec![pf_flag, &spec];
        if pf_flag == "-N" {
            args.insert(0, "-w");
        }
        let out = pf.postmap(&args, b"");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let mut flags_now = BUILD | extra;
        if extra & (flags::DUP_IGNORE | flags::DUP_REPLACE) != 0 {
            flags_now &= !flags::DUP_WARN;
        }
        let mut d =
            dict::registry::dict_open(&format!("cdb:{ours}"), OpenMode::Create, flags_now).unwrap();
        for (k, v) in &e {
            d.update(k, v).unwrap();
        }
        d.close().unwrap();
        let a = std::fs::read(format!("{table}.cdb")).unwrap();
        let b = std::fs::read(format!("{ours}.cdb")).unwrap();
        assert_eq!(a.len(), b.len(), "{pf_flag}");
        assert!(a == b, "cdb bytes differ with {pf_flag}");
        assert!(!Path::new(&format!("{ours}.cdb.tmp")).exists());
    }
    // Duplicates: by default the first wins, and the second is refused.
    let mut d = dict::registry::dict_open(&format!("cdb:{ours}"), OpenMode::Create, BUILD).unwrap();
    for (k, v) in &e {
        let want = if k == "ROOT" || v == "replaced" {
            Status::Fail
        } else {
            Status::Success
        };
        assert_eq!(d.update(k, v).unwrap(), want, "{k}");
    }
    d.close().unwrap();
    let mut d =
        dict::registry::dict_open(&format!("cdb:{ours}"), OpenMode::ReadOnly, QUERY).unwrap();
    assert_eq!(
        d.lookup("root").unwrap().as_deref(),
        Some("admin@example.org, other@example.org")
    );
}

/// Duplicate warnings, -s, -d and -i errors: Postfix's words.
#[test]
fn cdb_messages_match_postfix() {
    let s = Scratch::new("cdb-msg");
    let table = s.path("d");
    std::fs::write(&table, "a 1\nA 2\n").unwrap();
    // Ours, through the API.
    let mut d =
        dict::registry::dict_open(&format!("cdb:{table}"), OpenMode::Create, BUILD).unwrap();
    assert_eq!(d.update("a", "1").unwrap(), Status::Success);
    assert_eq!(d.update("A", "2").unwrap(), Status::Fail);
    d.close().unwrap();
    let mut q =
        dict::registry::dict_open(&format!("cdb:{table}"), OpenMode::ReadOnly, QUERY).unwrap();
    let seq_err = q.sequence(Seq::First).unwrap_err().to_string();
    assert_eq!(
        seq_err,
        format!("table cdb:{table}.cdb: sequence operation is not supported")
    );
    let rw_err = match dict::registry::dict_open(&format!("cdb:{table}"), OpenMode::ReadWrite, 0) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("cdb opened read-write"),
    };
    let missing = match dict::registry::dict_open(&format!("cdb:{table}x"), OpenMode::ReadOnly, 0) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("missing cdb opened"),
    };
    assert_eq!(
        missing,
        format!("open database {table}x.cdb: No such file or directory")
    );
    // Postfix's.
    let Some(pf) = Postfix::new("cdb-msg", "") else {
        return;
    };
    let spec = format!("cdb:{table}");
    let out = pf.postmap(&[&spec], b"");
    assert_eq!(
        text(&out.stderr),
        format!("postmap: warning: {table}: duplicate entry: \"a\"\n")
    );
    let spec_x = format!("cdb:{table}x");
    let outs = postmap_all(
        &pf,
        &[&["-s", &spec], &["-d", "a", &spec], &["-q", "a", &spec_x]],
    );
    for (out, err) in outs.iter().zip([&seq_err, &rw_err, &missing]) {
        assert_eq!(text(&out.stderr), format!("postmap: fatal: {err}\n"));
        assert_eq!(out.status.code(), Some(1));
    }
}

/// A walk of an lmdb table gives Postfix's `postmap -s` output, both ways.
#[test]
fn lmdb_sequence_matches_postfix() {
    let s = Scratch::new("lmdb-seq");
    let mut e = entries(2000);
    e.push(("empty".into(), String::new()));
    let ours = s.path("o");
    build_ours("lmdb", &ours, &e, 0);
    let walk = |path: &str| {
        let mut d =
            dict::registry::dict_open(&format!("lmdb:{path}"), OpenMode::ReadOnly, QUERY).unwrap();
        let mut out = String::new();
        let mut how = Seq::First;
        while let Some((k, v)) = d.sequence(how).unwrap() {
            out.push_str(&format!("{k}\t{v}\n"));
            how = Seq::Next;
        }
        out
    };
    let mine = walk(&ours);
    // LMDB orders keys bytewise; keys are stored folded, with a NUL.
    let mut model: Vec<(String, String)> = e
        .iter()
        .map(|(k, v)| (k.to_lowercase(), v.clone()))
        .collect();
    model.sort_by_key(|(k, _)| k.clone() + "\0");
    let want: String = model.iter().map(|(k, v)| format!("{k}\t{v}\n")).collect();
    same(&mine, &want, "check at line 445");
    let Some(pf) = Postfix::new("lmdb-seq", "") else {
        return;
    };
    let out = pf.postmap(&["-s", &format!("lmdb:{ours}")], b"");
    assert!(out.status.success());
    same(&text(&out.stdout), &want, "check at line 451");
    // Postfix's table, our walk.
    let theirs = s.path("p");
    std::fs::write(&theirs, source(&e)).unwrap();
    let out = pf.postmap(&[&format!("lmdb:{theirs}")], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = pf.postmap(&["-s", &format!("lmdb:{theirs}")], b"");
    same(&walk(&theirs), &text(&out.stdout), "check at line 458");
}

/// A tiny lmdb_map_size forces MDB_MAP_FULL: the bulk build grows the map
/// and replays; Postfix, with its own tiny map size, still reads the result.
#[test]
fn lmdb_map_growth() {
    let s = Scratch::new("lmdb-grow");
    let e = entries(20_000);
    let table = s.path("g");
    let mut d: Box<dyn Dict> = Box::new(
        dict::lmdb::LmdbDict::open_sized(
            &table,
            OpenMode::Create,
            BUILD | flags::BULK_UPDATE,
            64 * 1024,
        )
        .unwrap(),
    );
    for (k, v) in &e {
        d.update(k, v).unwrap();
    }
    d.close().unwrap();
    // Incremental updates outside a bulk transaction grow the map too.
    let mut d: Box<dyn Dict> = Box::new(
        dict::lmdb::LmdbDict::open_sized(
            &table,
            OpenMode::ReadWrite,
            flags::DUP_WARN | flags::FOLD_FIX | flags::LOCK,
            64 * 1024,
        )
        .unwrap(),
    );
    let big = "z".repeat(3 << 20);
    assert_eq!(d.update("big", &big).unwrap(), Status::Success);
    assert_eq!(d.delete("ROOT").unwrap(), Status::Success);
    assert_eq!(d.delete("root").unwrap(), Status::Fail);
    d.close().unwrap();
    let keys = query_keys(&e);
    let e2: Vec<(String, String)> = e.iter().filter(|(k, _)| k != "root").cloned().collect();
    let want = expected_q(&e2, &keys);
    same(
        &our_lookups("lmdb", &table, &keys),
        &want,
        "check at line 499",
    );
    let Some(pf) = Postfix::new("lmdb-grow", "lmdb_map_size = 65536\n") else {
        return;
    };
    let out = pf.postmap(
        &["-q", "-", &format!("lmdb:{table}")],
        keys.join("\n").as_bytes(),
    );
    assert_eq!(text(&out.stderr), "");
    same(&text(&out.stdout), &want, "check at line 508");
    let out = pf.postmap(&["-q", "big", &format!("lmdb:{table}")], b"");
    assert_eq!(out.stdout.len(), big.len() + 1);
    // And Postfix's own growth, read by us. Lower-case keys only: after an
    // MDB_MAP_FULL restart, Postfix 3.7.11's postmap (with smtputf8_enable)
    // stores the keys of the replayed source unfolded.
    let theirs = s.path("p");
    let e: Vec<(String, String)> = e
        .iter()
        .map(|(k, v)| (k.to_lowercase(), v.clone()))
        .collect();
    let keys = query_keys(&e);
    std::fs::write(&theirs, source(&e)).unwrap();
    let out = pf.postmap(&[&format!("lmdb:{theirs}")], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    same(
        &our_lookups("lmdb", &theirs, &keys),
        &expected_q(&e, &keys),
        "check at line 516",
    );
}

/// Truncated and corrupted cdb files from Postfix: our reader gives a clean
/// error or answer, and Postfix's error texts for the two kinds of damage.
#[test]
fn cdb_corrupt_files() {
    let s = Scratch::new("cdb-bad");
    let e = entries(300);
    let table = s.path("t");
    build_ours("cdb", &table, &e, 0);
    let good = std::fs::read(format!("{table}.cdb")).unwrap();
    let keys = query_keys(&e);
    let bad = s.path("b");
    let mut outcomes = (0, 0, 0);
    let step = good.len() / 97;
    for cut in (0..good.len()).step_by(step.max(1)) {
        std::fs::write(format!("{bad}.cdb"), &good[..cut]).unwrap();
        match dict::registry::dict_open(&format!("cdb:{bad}"), OpenMode::ReadOnly, QUERY) {
            Err(err) => {
                assert_eq!(
                    err.to_string(),
                    format!("dict_cdbq_open: unable to init {bad}.cdb: Protocol error")
                );
                outcomes.0 += 1;
            }
            Ok(mut d) => {
                for k in &keys {
                    match d.lookup(k) {
                        Ok(_) => outcomes.1 += 1,
                        Err(err) => {
                            assert_eq!(
                                err.to_string(),
                                format!("error reading {bad}.cdb: Protocol error")
                            );
                            outcomes.2 += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(outcomes.0 > 0 && outcomes.2 > 0, "{outcomes:?}");
    let Some(pf) = Postfix::new("cdb-bad", "") else {
        return;
    };
    let short = s.path("short");
    std::fs::write(format!("{short}.cdb"), &good[..2000]).unwrap();
    std::fs::write(format!("{bad}.cdb"), &good[..good.len() - 8]).unwrap();
    let (short_spec, bad_spec) = (format!("cdb:{short}"), format!("cdb:{bad}"));
    let (out, short_out) = std::thread::scope(|sc| {
        let h = sc.spawn(|| pf.postmap(&["-q", "root", &short_spec], b""));
        let out = pf.postmap(&["-q", "-", &bad_spec], keys.join("\n").as_bytes());
        (out, h.join().unwrap())
    });
    assert_eq!(
        text(&short_out.stderr),
        format!("postmap: fatal: dict_cdbq_open: unable to init {short}.cdb: Protocol error\n")
    );
    let mut d =
        dict::registry::dict_open(&format!("cdb:{bad}"), OpenMode::ReadOnly, QUERY).unwrap();
    let mut ours = String::new();
    let mut err = String::new();
    for k in &keys {
        match d.lookup(k) {
            Ok(Some(v)) => ours.push_str(&format!("{k}\t{v}\n")),
            Ok(None) => {}
            Err(e) => {
                err = format!("postmap: fatal: {e}\n");
                break;
            }
        }
    }
    // Postfix's fatal exit loses what stdout still buffered: its output
    // is a prefix of ours, and it dies at the same key with the same text.
    let theirs = text(&out.stdout);
    assert!(
        ours.starts_with(&theirs),
        "Postfix's output is not a prefix of ours"
    );
    assert!(ours.len() - theirs.len() < 8192);
    assert!(!err.is_empty());
    assert_eq!(text(&out.stderr), err);
}

/// lmdb messages: duplicates, a missing file, a file that is not LMDB.
#[test]
fn lmdb_messages_match_postfix() {
    let s = Scratch::new("lmdb-msg");
    let table = s.path("d");
    std::fs::write(&table, "a 1\nA 2\n").unwrap();
    let junk = s.path("j");
    std::fs::write(format!("{junk}.lmdb"), vec![7u8; 8192]).unwrap();
    let open_err = |spec: &str| match dict::registry::dict_open(spec, OpenMode::ReadOnly, QUERY) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{spec} opened"),
    };
    let missing = open_err(&format!("lmdb:{table}x"));
    assert_eq!(
        missing,
        format!("open database {table}x.lmdb: No such file or directory")
    );
    let invalid = open_err(&format!("lmdb:{junk}"));
    assert_eq!(
        invalid,
        format!("open database {junk}.lmdb: MDB_INVALID: File is not an LMDB file")
    );
    let Some(pf) = Postfix::new("lmdb-msg", "") else {
        return;
    };
    let out = pf.postmap(&[&format!("lmdb:{table}")], b"");
    assert_eq!(
        text(&out.stderr),
        format!("postmap: warning: lmdb:{table}: duplicate entry: \"a\"\n")
    );
    let (spec_x, spec_j) = (format!("lmdb:{table}x"), format!("lmdb:{junk}"));
    let outs = postmap_all(&pf, &[&["-q", "a", &spec_x], &["-q", "a", &spec_j]]);
    for (out, err) in outs.iter().zip([&missing, &invalid]) {
        assert_eq!(text(&out.stderr), format!("postmap: fatal: {err}\n"));
        assert_eq!(out.status.code(), Some(1));
    }
}

/// While we rebuild a table, Postfix still reads the old one; after close,
/// the new one. (cdb: the new file is renamed into place; lmdb: one bulk
/// transaction.)
#[test]
fn readers_see_old_table_during_rebuild() {
    let s = Scratch::new("rebuild");
    for ty in ["cdb", "lmdb"] {
        let table = s.path(ty);
        let spec = format!("{ty}:{table}");
        build_ours(ty, &table, &[("k".into(), "old".into())], 0);
        let mut d = dict::registry::dict_open(&spec, OpenMode::Create, BUILD).unwrap();
        assert_eq!(d.update("k", "new").unwrap(), Status::Success);
        assert_eq!(d.update("other", "x").unwrap(), Status::Success);
        // Our reader, meanwhile.
        let mut r = dict::registry::dict_open(&spec, OpenMode::ReadOnly, QUERY).unwrap();
        assert_eq!(r.lookup("k").unwrap().as_deref(), Some("old"), "{ty}");
        assert_eq!(r.lookup("other").unwrap(), None, "{ty}");
        drop(r);
        let pf = Postfix::new(&format!("rebuild-{ty}"), "");
        if let Some(pf) = &pf {
            let out = pf.postmap(&["-q", "k", &spec], b"");
            assert_eq!(text(&out.stdout), "old\n", "{ty}: {}", text(&out.stderr));
        }
        d.close().unwrap();
        let mut r = dict::registry::dict_open(&spec, OpenMode::ReadOnly, QUERY).unwrap();
        assert_eq!(r.lookup("k").unwrap().as_deref(), Some("new"), "{ty}");
        if let Some(pf) = &pf {
            let out = pf.postmap(&["-q", "-", &spec], b"k\nother\n");
            assert_eq!(text(&out.stdout), "k\tnew\nother\tx\n", "{ty}");
        }
    }
}

/// 1,000,000 entries, both ways, for both types (slow: run with
/// `cargo test --release -- --ignored million`).
#[test]
#[ignore]
fn million_entries_both_ways() {
    let Some(pf) = Postfix::new("million", "") else {
        return;
    };
    let s = Scratch::new("million");
    let e: Vec<(String, String)> = (0..1_000_000u32)
        .map(|i| (format!("u{i}@d{}.example", i % 1000), format!("v{i}")))
        .collect();
    let src = s.path("src");
    std::fs::write(&src, source(&e)).unwrap();
    let keys: Vec<String> = (0..1_000_000u32)
        .step_by(997)
        .map(|i| format!("U{i}@D{}.example", i % 1000))
        .collect();
    let want = expected_q(&e, &keys);
    for ty in ["cdb", "lmdb"] {
        let t0 = std::time::Instant::now();
        let ours = s.path(&format!("o{ty}"));
        build_ours(ty, &ours, &e, 0);
        let t1 = t0.elapsed();
        let out = pf.postmap(
            &["-q", "-", &format!("{ty}:{ours}")],
            keys.join("\n").as_bytes(),
        );
        same(&text(&out.stdout), &want, "Postfix reading ours");
        let t2 = std::time::Instant::now();
        let out = pf.postmap(&[&format!("{ty}:{src}")], b"");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let t3 = t2.elapsed();
        same(
            &our_lookups(ty, &src, &keys),
            &want,
            "ours reading Postfix's",
        );
        eprintln!("{ty}: 1,000,000 entries built in {t1:?} by us, {t3:?} by Postfix");
    }
}
