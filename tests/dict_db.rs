//! `hash:` and `btree:` tables through the Dict API: Postfix's semantics
//! (NUL terminators, folding, duplicates, updates, walks, build aside), a
//! damaged-file sweep, and two-way interoperability with Postfix 3.7.11's
//! postmap (libdb 5.3). The interop tests need the reference binaries
//! (`$ROSTFIX_REFERENCE`, else /tmp/pfroot, as compat/reference.sh unpacks
//! them) and print a SKIP notice when they are absent.

use rostfix::global::dict::db::{Kind, Reader};
use rostfix::global::dict::registry::dict_open;
use rostfix::global::dict::{Dict, DictError, OpenMode, Seq, Status, flags};
use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "rostfix-dictdb-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
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

fn open(spec: &str, mode: OpenMode, fl: u32) -> Box<dyn Dict> {
    match dict_open(spec, mode, fl) {
        Ok(d) => d,
        Err(e) => panic!("open {spec}: {e}"),
    }
}

fn walk(d: &mut dyn Dict) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut how = Seq::First;
    while let Some(kv) = d.sequence(how).unwrap() {
        out.push(kv);
        how = Seq::Next;
    }
    out
}

/// The raw pairs of NAME.db, as stored.
fn raw(kind: Kind, name: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let f = std::fs::File::open(format!("{name}.db")).unwrap();
    let mut v = Reader::open_file(f, kind).unwrap().read_all().unwrap();
    v.sort();
    v
}

const POSTMAP_FLAGS: u32 = flags::DUP_WARN | flags::FOLD_FIX;

#[test]
fn keys_and_values_get_a_nul_and_keys_are_folded() {
    for (ty, kind) in [("hash", Kind::Hash), ("btree", Kind::Btree)] {
        let s = Scratch::new("nul");
        let name = s.path("map");
        let mut d = open(&format!("{ty}:{name}"), OpenMode::Create, POSTMAP_FLAGS);
        assert_eq!(
            d.update("Foo@Example.COM", "Bar Baz").unwrap(),
            Status::Success
        );
        assert_eq!(d.update("empty", "").unwrap(), Status::Success);
        // The first update decided: with NUL.
        assert_eq!(
            d.flags() & (flags::TRY0NULL | flags::TRY1NULL),
            flags::TRY1NULL
        );
        assert_eq!(d.name(), format!("{name}.db"));
        assert_eq!(d.type_name(), ty);
        d.close().unwrap();
        assert_eq!(
            raw(kind, &name),
            vec![
                (b"empty\0".to_vec(), b"\0".to_vec()),
                (b"foo@example.com\0".to_vec(), b"Bar Baz\0".to_vec()),
            ]
        );
        let mut d = open(&format!("{ty}:{name}"), OpenMode::ReadOnly, flags::FOLD_FIX);
        assert_eq!(
            d.lookup("FOO@example.com").unwrap().as_deref(),
            Some("Bar Baz")
        );
        assert_eq!(d.lookup("empty").unwrap().as_deref(), Some(""));
        assert_eq!(d.lookup("nothing").unwrap(), None);
        assert_eq!(
            d.flags() & (flags::TRY0NULL | flags::TRY1NULL),
            flags::TRY1NULL
        );
        // Without folding, an upper-case query misses.
        let mut d = open(&format!("{ty}:{name}"), OpenMode::ReadOnly, 0);
        assert_eq!(d.lookup("FOO@example.com").unwrap(), None);
    }
}

#[test]
fn no_nul_with_try0null_and_readers_adapt() {
    let s = Scratch::new("nonul");
    let name = s.path("map");
    let mut d = open(
        &format!("hash:{name}"),
        OpenMode::Create,
        POSTMAP_FLAGS | flags::TRY0NULL,
    );
    d.update("key", "value").unwrap();
    d.close().unwrap();
    assert_eq!(
        raw(Kind::Hash, &name),
        vec![(b"key".to_vec(), b"value".to_vec())]
    );
    let mut d = open(&format!("hash:{name}"), OpenMode::ReadOnly, flags::FOLD_FIX);
    assert_eq!(d.lookup("KEY").unwrap().as_deref(), Some("value"));
    assert_eq!(
        d.flags() & (flags::TRY0NULL | flags::TRY1NULL),
        flags::TRY0NULL
    );
}

#[test]
fn duplicates_warn_ignore_replace_or_fail() {
    let s = Scratch::new("dup");
    let name = s.path("map");
    let spec = format!("btree:{name}");
    let mut d = open(&spec, OpenMode::Create, flags::FOLD_FIX | flags::DUP_WARN);
    assert_eq!(d.update("a", "1").unwrap(), Status::Success);
    assert_eq!(d.update("A", "2").unwrap(), Status::Fail);
    assert_eq!(d.lookup("a").unwrap().as_deref(), Some("1"));
    d.set_flags(d.flags() & !flags::DUP_WARN | flags::DUP_IGNORE);
    assert_eq!(d.update("a", "3").unwrap(), Status::Fail);
    d.set_flags(d.flags() & !flags::DUP_IGNORE | flags::DUP_REPLACE);
    assert_eq!(d.update("a", "4").unwrap(), Status::Success);
    assert_eq!(d.lookup("a").unwrap().as_deref(), Some("4"));
    d.set_flags(d.flags() & !flags::DUP_REPLACE);
    assert_eq!(
        d.update("A", "5"),
        Err(DictError::Fatal(format!(
            "{name}.db: duplicate entry: \"a\""
        )))
    );
    d.close().unwrap();
    assert_eq!(
        raw(Kind::Btree, &name),
        vec![(b"a\0".to_vec(), b"4\0".to_vec())]
    );
}

#[test]
fn update_delete_and_walk_an_existing_table() {
    for ty in ["hash", "btree"] {
        let s = Scratch::new("rw");
        let name = s.path("map");
        let spec = format!("{ty}:{name}");
        let mut d = open(&spec, OpenMode::Create, POSTMAP_FLAGS);
        for i in 0..500 {
            d.update(&format!("k{i}"), &format!("v{i}")).unwrap();
        }
        d.close().unwrap();

        let mut d = open(&spec, OpenMode::ReadWrite, POSTMAP_FLAGS);
        assert_eq!(d.lookup("k7").unwrap().as_deref(), Some("v7"));
        assert_eq!(d.delete("K7").unwrap(), Status::Success);
        assert_eq!(d.delete("k7").unwrap(), Status::Fail);
        assert_eq!(d.update("new", "entry").unwrap(), Status::Success);
        // A walk may delete as it goes (Postfix's cache cleanup does).
        let mut how = Seq::First;
        let mut seen = 0;
        while let Some((k, _)) = d.sequence(how).unwrap() {
            seen += 1;
            if k.ends_with('5') {
                assert_eq!(d.delete(&k).unwrap(), Status::Success);
            }
            how = Seq::Next;
        }
        assert_eq!(seen, 500);
        d.close().unwrap();

        let mut d = open(&spec, OpenMode::ReadOnly, POSTMAP_FLAGS);
        let all = walk(&mut *d);
        assert_eq!(all.len(), 500 - 50);
        assert_eq!(d.lookup("k7").unwrap(), None);
        assert_eq!(d.lookup("k15").unwrap(), None);
        assert_eq!(d.lookup("k16").unwrap().as_deref(), Some("v16"));
        assert_eq!(d.lookup("new").unwrap().as_deref(), Some("entry"));
        if ty == "btree" {
            let keys: Vec<&String> = all.iter().map(|(k, _)| k).collect();
            let mut sorted = keys.clone();
            sorted.sort();
            assert_eq!(keys, sorted);
        }
        // Read-only tables refuse changes with libdb's errno text.
        assert_eq!(
            d.update("x", "y"),
            Err(DictError::Fatal(format!(
                "error writing {name}.db: Permission denied"
            )))
        );
    }
}

#[test]
fn open_errors_read_as_postfix_prints_them() {
    let s = Scratch::new("err");
    let name = s.path("map");
    let e = dict_open(&format!("hash:{name}"), OpenMode::ReadOnly, 0)
        .err()
        .unwrap();
    assert_eq!(
        e.0,
        format!("open database {name}.db: No such file or directory")
    );
    std::fs::write(format!("{name}.db"), b"hello").unwrap();
    let e = dict_open(&format!("hash:{name}"), OpenMode::ReadOnly, 0)
        .err()
        .unwrap();
    assert_eq!(e.0, format!("open database {name}.db: Invalid argument"));
    // A hash file cannot be opened or updated as a btree ...
    let mut d = open(&format!("hash:{name}"), OpenMode::Create, POSTMAP_FLAGS);
    d.update("a", "b").unwrap();
    d.close().unwrap();
    for mode in [OpenMode::ReadOnly, OpenMode::ReadWrite] {
        let e = dict_open(&format!("btree:{name}"), mode, 0).err().unwrap();
        assert_eq!(e.0, format!("open database {name}.db: Invalid argument"));
    }
    // ... but a build replaces it, as `postmap btree:FILE` over a hash file does.
    let mut d = open(&format!("btree:{name}"), OpenMode::Create, POSTMAP_FLAGS);
    d.update("c", "d").unwrap();
    d.close().unwrap();
    let mut d = open(&format!("btree:{name}"), OpenMode::ReadOnly, POSTMAP_FLAGS);
    assert_eq!(d.lookup("c").unwrap().as_deref(), Some("d"));
    assert_eq!(d.lookup("a").unwrap(), None);
    // Garbage is simply replaced by a build, as libdb does.
    std::fs::write(format!("{name}.db"), vec![0u8; 8192]).unwrap();
    let d = open(&format!("btree:{name}"), OpenMode::Create, POSTMAP_FLAGS);
    d.close().unwrap();
    assert_eq!(raw(Kind::Btree, &name), vec![]);
}

#[test]
fn a_build_happens_aside_and_lands_whole() {
    let s = Scratch::new("aside");
    let name = s.path("map");
    let spec = format!("hash:{name}");
    let mut d = open(&spec, OpenMode::Create, POSTMAP_FLAGS);
    d.update("old", "1").unwrap();
    d.close().unwrap();
    let files = || {
        let mut v: Vec<String> = std::fs::read_dir(&s.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(files(), vec!["map.db".to_string()]);

    let mut d = open(&spec, OpenMode::Create, POSTMAP_FLAGS);
    d.update("new", "2").unwrap();
    // Meanwhile readers see the old table.
    let mut r = open(&spec, OpenMode::ReadOnly, POSTMAP_FLAGS);
    assert_eq!(r.lookup("old").unwrap().as_deref(), Some("1"));
    assert_eq!(
        files(),
        vec![
            "map.db".to_string(),
            format!("map.db.{}.tmp", std::process::id())
        ]
    );
    d.close().unwrap();
    assert_eq!(files(), vec!["map.db".to_string()]);
    // The reader keeps its consistent old view; a new reader sees the new one.
    assert_eq!(r.lookup("old").unwrap().as_deref(), Some("1"));
    let mut r = open(&spec, OpenMode::ReadOnly, POSTMAP_FLAGS);
    assert_eq!(r.lookup("old").unwrap(), None);
    assert_eq!(r.lookup("new").unwrap().as_deref(), Some("2"));

    // An abandoned build leaves the table as it was.
    let mut d = open(&spec, OpenMode::Create, POSTMAP_FLAGS);
    d.update("other", "3").unwrap();
    drop(d);
    assert_eq!(files(), vec!["map.db".to_string()]);
    let mut r = open(&spec, OpenMode::ReadOnly, POSTMAP_FLAGS);
    assert_eq!(r.lookup("new").unwrap().as_deref(), Some("2"));

    // A zero-length NAME.db is removed and rebuilt (Postfix warns about it).
    std::fs::write(format!("{name}.db"), b"").unwrap();
    let d = open(&spec, OpenMode::Create, POSTMAP_FLAGS);
    d.close().unwrap();
    assert_eq!(
        std::fs::metadata(format!("{name}.db")).unwrap().len(),
        3 * 4096
    );
}

#[test]
fn damaged_files_give_errors_not_crashes() {
    for ty in ["hash", "btree"] {
        let s = Scratch::new("damage");
        let name = s.path("map");
        let spec = format!("{ty}:{name}");
        let mut d = open(&spec, OpenMode::Create, POSTMAP_FLAGS);
        for i in 0..300 {
            let v = if i % 100 == 0 {
                "x".repeat(9000)
            } else {
                format!("v{i}")
            };
            d.update(&format!("key{i}"), &v).unwrap();
        }
        d.close().unwrap();
        let good = std::fs::read(format!("{name}.db")).unwrap();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..300 {
            let mut b = good.clone();
            if round % 10 == 9 {
                b.truncate(rnd() as usize % good.len());
            } else {
                for _ in 0..1 + rnd() % 3 {
                    let pos = if round % 2 == 0 {
                        // Page headers and index arrays.
                        (rnd() as usize % (good.len() / 4096)) * 4096 + rnd() as usize % 64
                    } else {
                        rnd() as usize % good.len()
                    };
                    b[pos] = rnd() as u8;
                }
            }
            std::fs::write(format!("{name}.db"), &b).unwrap();
            let Ok(mut d) = dict_open(&spec, OpenMode::ReadOnly, POSTMAP_FLAGS) else {
                continue;
            };
            for k in ["key0", "key1", "key150", "key299", "nothing"] {
                let _ = d.lookup(k);
            }
            let mut how = Seq::First;
            for _ in 0..10_000 {
                match d.sequence(how) {
                    Ok(Some(_)) => how = Seq::Next,
                    _ => break,
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Interoperability with Postfix 3.7.11 (libdb 5.3).

struct Postfix {
    root: PathBuf,
    conf: Scratch,
}

impl Postfix {
    fn find() -> Option<Postfix> {
        let root = std::env::var_os("ROSTFIX_REFERENCE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp/pfroot"));
        if !root.join("usr/sbin/postmap").is_file() {
            eprintln!(
                "SKIP: Postfix reference binaries not found in {} (set ROSTFIX_REFERENCE or run compat/reference.sh)",
                root.display()
            );
            return None;
        }
        let conf = Scratch::new("conf");
        // Postfix refuses a root mail_owner; any unprivileged account will do.
        let root_user = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout == b"0\n")
            .unwrap_or(false);
        let main_cf = if root_user {
            "mail_owner = nobody\ndefault_privs = daemon\nsetgid_group = mail\n".to_string()
        } else {
            let user =
                String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
            format!("mail_owner = {}\ndefault_privs = nobody\n", user.trim())
        };
        std::fs::write(
            conf.0.join("main.cf"),
            format!("compatibility_level = 3.6\n{main_cf}"),
        )
        .unwrap();
        // Postfix re-reads a main.cf changed within the last second.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(conf.0.join("main.cf"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        Some(Postfix { root, conf })
    }

    fn postmap(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let lib = format!(
            "{}:{}",
            self.root.join("usr/lib/postfix").display(),
            self.root.join("usr/lib/x86_64-linux-gnu").display()
        );
        let mut c = Command::new(self.root.join("usr/sbin/postmap"));
        c.arg0("postmap")
            .env("LD_LIBRARY_PATH", lib)
            .arg("-c")
            .arg(&self.conf.0)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        if let Some(input) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// `postmap -q KEY TYPE:NAME`: (exit status, stdout).
    fn query(&self, key: &str, spec: &str) -> (i32, String) {
        let o = self.postmap(&["-q", key, spec], None);
        assert!(
            o.stderr.is_empty(),
            "postmap -q stderr: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        (
            o.status.code().unwrap(),
            String::from_utf8(o.stdout).unwrap(),
        )
    }

    /// `postmap -s TYPE:NAME` as a set of (key, value).
    fn walk(&self, spec: &str) -> BTreeSet<(String, String)> {
        let o = self.postmap(&["-s", spec], None);
        assert!(
            o.status.success(),
            "postmap -s: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let (k, v) = l.split_once('\t').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect()
    }
}

/// db_verify from db5.3-util, when installed: the file must verify.
fn db_verify(path: &str) {
    for tool in ["db5.3_verify", "db_verify"] {
        if let Ok(o) = Command::new(tool).arg(path).output() {
            assert!(
                o.status.success(),
                "{tool} {path}: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            return;
        }
    }
    eprintln!("note: db_verify not installed; {path} not verified");
}

/// 25,000 entries: upper-case keys, long values (overflow pages), an empty
/// value and a long key. Keys as given (not folded) and values.
fn dataset() -> Vec<(String, String)> {
    let mut v = Vec::new();
    for i in 0..25_000 {
        let key = format!("User{i:05}.{}@Example.COM", "abcdefgh".repeat(i % 4));
        let value = if i % 1000 == 7 {
            format!("long-{i}-{}", "L".repeat(4000 + i % 5000))
        } else {
            format!("smtp:[Relay{}.example.net]:25 {i}", i % 37)
        };
        v.push((key, value));
    }
    v.push((
        format!("LongKey{}", "k".repeat(2000)),
        "long key value".to_string(),
    ));
    v
}

fn expected(data: &[(String, String)]) -> BTreeSet<(String, String)> {
    data.iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect()
}

#[test]
fn postfix_reads_tables_we_write() {
    let Some(pf) = Postfix::find() else { return };
    for ty in ["hash", "btree"] {
        let s = Scratch::new("ours");
        let name = s.path("table");
        let spec = format!("{ty}:{name}");
        let mut data = dataset();
        data.push(("Empty".to_string(), String::new()));
        let mut d = open(&spec, OpenMode::Create, POSTMAP_FLAGS);
        for (k, v) in &data {
            assert_eq!(d.update(k, v).unwrap(), Status::Success);
        }
        d.close().unwrap();
        db_verify(&format!("{name}.db"));

        let (k, v) = &data[42];
        assert_eq!(
            pf.query(&k.to_ascii_uppercase(), &spec),
            (0, format!("{v}\n"))
        );
        assert_eq!(v, "smtp:[Relay5.example.net]:25 42");
        let (k, v) = &data[1007];
        assert_eq!(pf.query(k, &spec), (0, format!("{v}\n")));
        assert!(v.len() > 4096);
        let (k, v) = &data[25_000];
        assert_eq!(pf.query(k, &spec), (0, format!("{v}\n")));
        // Postfix's dict layer complains about empty results (our Dict
        // returns them; the shared lookup layer has to apply this rule).
        let o = pf.postmap(&["-q", "empty", &spec], None);
        assert_eq!((o.status.code(), &o.stdout[..]), (Some(0), &b"\n"[..]));
        assert_eq!(
            String::from_utf8_lossy(&o.stderr),
            format!(
                "postmap: warning: table {spec}: key empty: empty string result is not allowed\n\
                 postmap: warning: table {spec} should return NO RESULT in case of NOT FOUND\n"
            )
        );
        assert_eq!(pf.query("nobody@example.com", &spec), (1, String::new()));
        assert_eq!(pf.walk(&spec), expected(&data));

        // libdb updates our file in place (bucket splits, page splits), and
        // we read its result.
        let mut more = String::new();
        for i in 0..5000 {
            more.push_str(&format!("Added{i}@Example.ORG added {i}\n"));
        }
        let o = pf.postmap(&["-i", &spec], Some(more.as_bytes()));
        assert!(
            o.status.success(),
            "postmap -i: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let gone = data[1].0.to_ascii_lowercase();
        let o = pf.postmap(&["-d", &gone, &spec], None);
        assert!(
            o.status.success(),
            "postmap -d: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        db_verify(&format!("{name}.db"));
        let mut d = open(&spec, OpenMode::ReadOnly, POSTMAP_FLAGS);
        assert_eq!(
            d.lookup("Added4999@example.org").unwrap().as_deref(),
            Some("added 4999")
        );
        assert_eq!(d.lookup(&gone).unwrap(), None);
        let (k, v) = &data[1007];
        assert_eq!(d.lookup(k).unwrap().as_ref(), Some(v));
        assert_eq!(walk(&mut *d).len(), data.len() + 5000 - 1);
    }
}

#[test]
fn we_read_tables_postfix_writes() {
    let Some(pf) = Postfix::find() else { return };
    let data = dataset();
    let mut source = String::new();
    for (k, v) in &data {
        source.push_str(&format!("{k} {v}\n"));
    }
    // A duplicate: Postfix keeps the first and warns.
    let dup = data[3].0.to_ascii_uppercase();
    source.push_str(&format!("{dup} duplicate\n"));
    for ty in ["hash", "btree"] {
        let s = Scratch::new("theirs");
        let name = s.path("table");
        std::fs::write(&name, &source).unwrap();
        let spec = format!("{ty}:{name}");
        let o = pf.postmap(&[&spec], None);
        assert!(
            o.status.success(),
            "postmap: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&o.stderr),
            format!(
                "postmap: warning: {name}.db: duplicate entry: \"{}\"\n",
                dup.to_ascii_lowercase()
            )
        );

        let mut d = open(&spec, OpenMode::ReadOnly, POSTMAP_FLAGS);
        for (k, v) in &data {
            assert_eq!(d.lookup(k).unwrap().as_ref(), Some(v), "{ty} {k}");
        }
        assert_eq!(d.lookup("nobody@example.com").unwrap(), None);
        assert_eq!(
            d.flags() & (flags::TRY0NULL | flags::TRY1NULL),
            flags::TRY1NULL
        );
        let ours: BTreeSet<(String, String)> = walk(&mut *d).into_iter().collect();
        assert_eq!(ours, expected(&data));
        // Same walk order as postmap -s.
        let o = pf.postmap(&["-s", &spec], None);
        let theirs: Vec<String> = String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        let mine: Vec<String> = walk(&mut *d)
            .into_iter()
            .map(|(k, v)| format!("{k}\t{v}"))
            .collect();
        assert_eq!(mine, theirs);

        // We update Postfix's file; Postfix reads the result.
        let mut d = open(&spec, OpenMode::ReadWrite, POSTMAP_FLAGS);
        let gone = data[2].0.to_ascii_lowercase();
        assert_eq!(
            d.delete(&gone.to_ascii_uppercase()).unwrap(),
            Status::Success
        );
        assert_eq!(
            d.update("Fresh@Example.COM", "new value").unwrap(),
            Status::Success
        );
        d.close().unwrap();
        db_verify(&format!("{name}.db"));
        assert_eq!(
            pf.query("fresh@example.com", &spec),
            (0, "new value\n".into())
        );
        assert_eq!(pf.query(&gone, &spec).0, 1);
        assert_eq!(pf.walk(&spec).len(), data.len());
    }
}

#[test]
fn postfix_and_we_agree_on_no_nul_tables() {
    let Some(pf) = Postfix::find() else { return };
    let s = Scratch::new("n");
    let name = s.path("table");
    std::fs::write(&name, "Alpha one\nbeta two\n").unwrap();
    let spec = format!("hash:{name}");
    let o = pf.postmap(&["-n", &spec], None);
    assert!(o.status.success());
    assert_eq!(
        raw(Kind::Hash, &name),
        vec![
            (b"alpha".to_vec(), b"one".to_vec()),
            (b"beta".to_vec(), b"two".to_vec())
        ]
    );
    let mut d = open(&spec, OpenMode::ReadOnly, POSTMAP_FLAGS);
    assert_eq!(d.lookup("ALPHA").unwrap().as_deref(), Some("one"));
    assert_eq!(
        d.flags() & (flags::TRY0NULL | flags::TRY1NULL),
        flags::TRY0NULL
    );
}

// ---------------------------------------------------------------------------
// Files other libdb 5.3 programs write: other page sizes, fill factors, page
// checksums, duplicates (db_load / db_dump from db5.3-util, when installed).

/// Parse `db_dump -p` output into pairs, in dump order.
fn parse_dump(text: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let text = String::from_utf8_lossy(text);
    let mut items = Vec::new();
    let mut in_data = false;
    for line in text.lines() {
        if line == "HEADER=END" {
            in_data = true;
            continue;
        }
        if line == "DATA=END" {
            break;
        }
        if !in_data {
            continue;
        }
        let s = line.strip_prefix(' ').unwrap().as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < s.len() {
            if s[i] == b'\\' && s.get(i + 1) == Some(&b'\\') {
                out.push(b'\\');
                i += 2;
            } else if s[i] == b'\\' {
                out.push(
                    u8::from_str_radix(std::str::from_utf8(&s[i + 1..i + 3]).unwrap(), 16).unwrap(),
                );
                i += 3;
            } else {
                out.push(s[i]);
                i += 1;
            }
        }
        items.push(out);
    }
    items
        .chunks(2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect()
}

#[test]
fn files_from_db_load_read_like_db_dump() {
    let (load, dump) = ("db5.3_load", "db5.3_dump");
    if Command::new(load).arg("-V").output().is_err() {
        eprintln!("SKIP: {load} not installed (apt-get install db5.3-util)");
        return;
    }
    let s = Scratch::new("dbload");
    let mut plain = String::from("VERSION=3\nformat=print\ntype=hash\nHEADER=END\n");
    for i in 0..3000 {
        plain.push_str(&format!(
            " key{i:05}\n value{i}{}\\00\n",
            "z".repeat(i % 1500)
        ));
    }
    plain.push_str("DATA=END\n");
    let mut dups = String::from("VERSION=3\nformat=print\ntype=hash\nHEADER=END\n");
    for i in 0..400 {
        for j in 0..if i % 10 == 0 { 80 } else { 1 } {
            dups.push_str(&format!(" key{i:05}\n dup{i}-{j}{}\n", "q".repeat(i % 50)));
        }
    }
    dups.push_str("DATA=END\n");
    std::fs::write(s.path("plain.txt"), &plain).unwrap();
    std::fs::write(s.path("dups.txt"), &dups).unwrap();
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "hash",
            &["-c", "db_pagesize=512", "-c", "h_ffactor=20"],
            "plain",
        ),
        ("hash", &["-c", "db_pagesize=65536"], "plain"),
        ("hash", &["-c", "chksum=1"], "plain"),
        ("hash", &["-c", "duplicates=1"], "dups"),
        ("btree", &["-c", "db_pagesize=512"], "plain"),
        ("btree", &["-c", "db_pagesize=65536"], "plain"),
        ("btree", &["-c", "chksum=1"], "plain"),
        ("btree", &["-c", "duplicates=1"], "dups"),
    ];
    for (n, (ty, opts, input)) in cases.iter().enumerate() {
        let db = s.path(&format!("f{n}.db"));
        let o = Command::new(load)
            .args(["-t", ty])
            .args(*opts)
            .args(["-f", &s.path(&format!("{input}.txt")), &db])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{load}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let o = Command::new(dump).args(["-p", &db]).output().unwrap();
        assert!(o.status.success());
        let want = parse_dump(&o.stdout);
        let kind = if *ty == "hash" {
            Kind::Hash
        } else {
            Kind::Btree
        };
        let mut r = Reader::open_file(std::fs::File::open(&db).unwrap(), kind).unwrap();
        let got = r.read_all().unwrap();
        if *input == "plain" {
            assert_eq!(got.len(), 3000, "case {n}");
            assert!(got == want, "case {n}: walk differs from db_dump's");
            for (k, v) in &want {
                assert_eq!(r.get(k).unwrap().as_ref(), Some(v), "case {n}");
            }
        } else {
            // Duplicates: a lookup returns the first one, as libdb's get.
            let mut first: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            for (k, v) in &want {
                if first.last().map(|f| &f.0) != Some(k) {
                    first.push((k.clone(), v.clone()));
                }
            }
            for (k, v) in &first {
                assert_eq!(r.get(k).unwrap().as_ref(), Some(v), "case {n}");
            }
            let keys: BTreeSet<&Vec<u8>> = got.iter().map(|p| &p.0).collect();
            assert_eq!(keys.len(), 400, "case {n}");
        }
    }
}

#[test]
fn a_linked_table_is_replaced_at_the_link_target() {
    let s = Scratch::new("link");
    std::fs::create_dir(s.0.join("real")).unwrap();
    let real = s.path("real/map");
    let mut d = open(&format!("hash:{real}"), OpenMode::Create, POSTMAP_FLAGS);
    d.update("a", "1").unwrap();
    d.close().unwrap();
    let link = s.path("map");
    std::os::unix::fs::symlink(format!("{real}.db"), format!("{link}.db")).unwrap();
    let mut d = open(&format!("hash:{link}"), OpenMode::Create, POSTMAP_FLAGS);
    d.update("b", "2").unwrap();
    d.close().unwrap();
    let meta = std::fs::symlink_metadata(format!("{link}.db")).unwrap();
    assert!(meta.file_type().is_symlink(), "the link stays a link");
    assert_eq!(
        raw(Kind::Hash, &real),
        vec![(b"b\0".to_vec(), b"2\0".to_vec())]
    );
}

#[test]
fn a_table_in_a_closed_directory_is_rewritten_in_place() {
    let uid = Command::new("id").arg("-u").output().unwrap().stdout;
    if uid == b"0\n" {
        eprintln!("SKIP: running as root, directory permissions do not apply");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new("closed");
    let name = s.path("map");
    let mut d = open(&format!("btree:{name}"), OpenMode::Create, POSTMAP_FLAGS);
    d.update("a", "1").unwrap();
    d.close().unwrap();
    std::fs::set_permissions(&s.0, std::fs::Permissions::from_mode(0o555)).unwrap();
    let mut d = open(&format!("btree:{name}"), OpenMode::ReadWrite, POSTMAP_FLAGS);
    d.update("b", "2").unwrap();
    let r = d.close();
    std::fs::set_permissions(&s.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    r.unwrap();
    assert_eq!(
        raw(Kind::Btree, &name),
        vec![
            (b"a\0".to_vec(), b"1\0".to_vec()),
            (b"b\0".to_vec(), b"2\0".to_vec())
        ]
    );
}
