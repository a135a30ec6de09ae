//! Replays the fuzz corpus through the fuzz target bodies in a plain
//! `cargo test`, so the seeds and every input that once crashed a parser
//! (fuzz/regressions/TARGET/) run in CI without cargo-fuzz. The targets
//! are in src/fuzzing.rs; the fuzzing itself is described in fuzz/README.md.
//!
//! Also replays the third-party table and config files of
//! ../shared/corpus/configs through the matching targets when that
//! directory is there (they are not committed here).

use rostfix::fuzzing::{TARGETS, target};
use std::fs;
use std::path::{Path, PathBuf};

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    v.retain(|p| p.is_file());
    v.sort();
    v
}

/// Run every file of `fuzz/<sub>/<target>/` through its target; the number
/// of inputs run.
fn replay(sub: &str, name: &str) -> usize {
    let f = target(name).unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(sub)
        .join(name);
    let files = files_in(&dir);
    for p in &files {
        let data = fs::read(p).unwrap();
        eprintln!("{}", p.display());
        f(&data);
    }
    files.len()
}

#[test]
fn every_target_has_a_corpus_and_its_inputs_pass() {
    let mut total = 0;
    for (name, _) in TARGETS {
        let n = replay("corpus", name);
        assert!(n > 0, "no seed corpus for {name} in fuzz/corpus/{name}/");
        total += n;
    }
    println!("{total} corpus inputs replayed");
}

#[test]
fn regressions_pass() {
    let mut total = 0;
    for (name, _) in TARGETS {
        total += replay("regressions", name);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    for d in fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
    {
        let n = d.file_name().to_string_lossy().to_string();
        assert!(
            !d.path().is_dir() || target(&n).is_some(),
            "fuzz/regressions/{n}: no such target"
        );
    }
    println!("{total} regression inputs replayed");
}

#[test]
fn fuzz_binaries_match_the_target_list() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
    let mut bins: Vec<String> = files_in(&dir)
        .iter()
        .filter_map(|p| Some(p.file_stem()?.to_string_lossy().to_string()))
        .collect();
    bins.sort();
    let names: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(bins, names);
    let manifest =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml")).unwrap();
    for n in &names {
        assert!(
            manifest.contains(&format!("name = \"{n}\"")),
            "fuzz/Cargo.toml lacks [[bin]] {n}"
        );
    }
}

/// Which target reads a file of the shared corpus, by its name.
fn shared_target(file: &str) -> Option<&'static str> {
    if file == "main.cf" {
        Some("main_cf")
    } else if file == "master.cf" {
        Some("master_cf")
    } else if file.ends_with(".pcre") || file.contains("header") {
        Some("pcre_table")
    } else if file.ends_with(".md") {
        None
    } else {
        // Other table sources: not a pattern table, but regexp: still
        // reads them (each line is a pattern or an error).
        Some("regexp_table")
    }
}

#[test]
fn shared_corpus_configs_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/configs");
    if !dir.is_dir() {
        println!(
            "SKIPPED: no {} (third-party corpus not present)",
            dir.display()
        );
        return;
    }
    let mut n = 0;
    for d in files_in(&dir).into_iter().chain(
        fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .flat_map(|p| files_in(&p)),
    ) {
        let name = d.file_name().unwrap().to_string_lossy().to_string();
        let Some(t) = shared_target(&name) else {
            continue;
        };
        let data = fs::read(&d).unwrap();
        target(t).unwrap()(&data);
        if t == "regexp_table" || t == "pcre_table" {
            // Every pattern table type reads every table file.
            for other in ["regexp_table", "pcre_table", "cidr_table"] {
                target(other).unwrap()(&data);
            }
        }
        n += 1;
    }
    assert!(n > 0, "no files in {}", dir.display());
    println!("{n} shared corpus files replayed");
}

/// Encode pairs in the format of the roundtrip targets (see
/// `pairs_from` in src/fuzzing.rs): `K VV key fill`.
fn encode_pairs(pairs: &[(&[u8], u16, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, vlen, fill) in pairs {
        out.push(k.len() as u8);
        out.extend_from_slice(&vlen.to_le_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(fill);
    }
    out
}

/// Rewrites the generated part of fuzz/corpus/ from our writers and the
/// repository's own fixtures: `cargo test --test fuzz_smoke -- --ignored`.
#[test]
#[ignore]
fn regenerate_seed_corpus() {
    use rostfix::global::dict::cdb;
    use rostfix::global::dict::db::{self, Kind};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let put = |t: &str, name: &str, data: &[u8]| {
        let d = root.join("fuzz/corpus").join(t);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(name), data).unwrap();
    };
    // Tables as Postfix stores them: keys and values with a trailing NUL.
    let small: Vec<(&[u8], &[u8])> = vec![
        (b"user@example.com\0", b"OK\0"),
        (b"postmaster\0", b"root\0"),
        (b"example.com\0", b"relay:[mx.example.net]\0"),
        (b"10.1.2.3\0", b"REJECT\0"),
    ];
    let big_value = vec![b'v'; 9000];
    let big_key = vec![b'k'; 3000];
    let mut overflow = small.clone();
    overflow.push((b"big\0", &big_value));
    overflow.push((&big_key, b"bigkey\0"));
    let many_owned: Vec<(Vec<u8>, Vec<u8>)> = (0..300)
        .map(|i| {
            (
                format!("key{i}\0").into_bytes(),
                format!("value{i}\0").into_bytes(),
            )
        })
        .collect();
    let many: Vec<(&[u8], &[u8])> = many_owned
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    for (label, pairs) in [
        ("empty", vec![]),
        ("small", small),
        ("overflow", overflow),
        ("many", many),
    ] {
        for (kind, ext) in [(Kind::Hash, "hash"), (Kind::Btree, "btree")] {
            let mut p = pairs.clone();
            let mut out = Vec::new();
            db::write(&mut out, kind, &mut p, &[1; 20]).unwrap();
            put("db_reader", &format!("{label}.{ext}.db"), &out);
        }
        let mut w = cdb::Writer::new();
        for (k, v) in &pairs {
            w.put(k, v, cdb::PutMode::Add).unwrap();
        }
        put("cdb_reader", &format!("{label}.cdb"), &w.finish());
    }
    let rt_small = encode_pairs(&[(b"a", 1, b"1"), (b"b", 5, b"xy"), (b"", 0, b"")]);
    let rt_big = encode_pairs(&[(b"key", 9000, b"0123456789abcdef"), (b"k2", 300, b"z")]);
    let rt_dup = encode_pairs(&[(b"a", 1, b"1"), (b"a", 1, b"2"), (b"b", 1, b"3")]);
    for t in ["db_roundtrip", "cdb_roundtrip"] {
        // The cdb target's first byte picks the put mode.
        for (i, (label, data)) in [("small", &rt_small), ("big", &rt_big), ("dup", &rt_dup)]
            .into_iter()
            .enumerate()
        {
            let mut d = Vec::new();
            if t == "cdb_roundtrip" {
                d.push(i as u8);
            }
            d.extend_from_slice(data);
            put(t, label, &d);
        }
    }
    // Pattern tables and their query keys from tests/pattern/.
    let pat = root.join("tests/pattern");
    for p in files_in(&pat) {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let (stem, ext) = match name.rsplit_once('.') {
            Some(x) => x,
            None => continue,
        };
        let t = match ext {
            "regexp" => "regexp_table",
            "pcre" => "pcre_table",
            "cidr" => "cidr_table",
            _ => continue,
        };
        let mut data = fs::read(&p).unwrap();
        let keys = [format!("{name}.keys"), format!("{stem}.keys")]
            .into_iter()
            .map(|k| pat.join(k))
            .find(|k| k.is_file());
        if let Some(k) = keys {
            data.extend_from_slice(b"\n%%\n");
            data.extend_from_slice(&fs::read(k).unwrap());
        }
        put(t, &name, &data);
    }
    // main.cf and master.cf files of the compatibility fixtures (small,
    // distinct ones).
    let mut seen = std::collections::HashSet::new();
    let fx = root.join("compat/cases/fixtures");
    let mut dirs: Vec<PathBuf> = fs::read_dir(&fx)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for d in dirs {
        for (file, t) in [("main.cf", "main_cf"), ("master.cf", "master_cf")] {
            let Ok(data) = fs::read(d.join(file)) else {
                continue;
            };
            if data.len() <= 16384 && seen.insert(data.clone()) {
                let label = d.file_name().unwrap().to_string_lossy().to_string();
                put(t, &label, &data);
            }
        }
    }
    // Queue files, written with our record writer: a plain message, and
    // one whose recipient list continues through a pointer record.
    {
        use rostfix::global::rec_type as rt;
        use rostfix::global::record;
        let mut q: Vec<u8> = Vec::new();
        record::rec_put_size(&mut q, [120, 200, 1, 1, 120, 0]).unwrap();
        record::rec_put_time(&mut q, 1795624000, 12345).unwrap();
        record::rec_fputs(&mut q, rt::FROM, "sender@example.com").unwrap();
        record::rec_fputs(&mut q, rt::RCPT, "user@example.com").unwrap();
        record::rec_put(&mut q, rt::MESG, b"").unwrap();
        record::rec_fputs(&mut q, rt::NORM, "Subject: hello").unwrap();
        record::rec_fputs(&mut q, rt::NORM, "").unwrap();
        record::rec_fputs(&mut q, rt::NORM, "body").unwrap();
        record::rec_put(&mut q, rt::XTRA, b"").unwrap();
        record::rec_put(&mut q, rt::END, b"").unwrap();
        put("queue_file", "plain", &q);
        let mut p: Vec<u8> = Vec::new();
        record::rec_fputs(&mut p, rt::FROM, "a@b").unwrap();
        let ptr_at = p.len();
        record::rec_fputs(&mut p, rt::PTR, "000000000000000").unwrap();
        record::rec_put(&mut p, rt::END, b"").unwrap();
        let target = p.len();
        record::rec_fputs(&mut p, rt::RCPT, "c@d").unwrap();
        record::rec_fputs(&mut p, rt::PTR, &format!("{:015}", ptr_at + 17)).unwrap();
        // Point the first pointer at the recipient, as cleanup does.
        let mut fixed = Vec::new();
        record::rec_fputs(&mut fixed, rt::PTR, &format!("{target:015}")).unwrap();
        p[ptr_at..ptr_at + fixed.len()].copy_from_slice(&fixed);
        put("queue_file", "pointer", &p);
    }
    // postmap and postalias sources.
    put(
        "table_source",
        "postmap",
        b"# comment\nuser@example.com OK\n\"quoted key\" value\n  continued\nkey\\ with\\ blanks v\nnovalue\n\"unbalanced v\n",
    );
    put(
        "table_source",
        "aliases",
        b"postmaster: root\nroot: user, \"|/usr/bin/prog arg\", /var/mail/file, :include:/etc/list\n\"quoted name\": x@example.com\nbad@remote: y\nnocolon\nfoo: (comment) <a@b>, \"q\\\"x\"@c\n",
    );
    // Expansion: flags byte, pattern, name=value lines.
    for (label, data) in [
        ("plain", &b"\x01x$a.${b}$(c)$$\na=A\nb=$a$a\nc=\n"[..]),
        (
            "cond",
            b"\x01${a?{yes $b}:{no}}${e:empty}${u?x}\na=1\nb=B\ne=\n",
        ),
        (
            "relational",
            b"\x01${{$a} <= {10} ? {small} : {big}}${{$v} <level {3.6}?{old}}\na=9\nv=3.5\n",
        ),
        ("self", b"\x01$a\na=$a\n"),
        ("scan", b"\x05${a?{$b}:{$c}}\na=x\n"),
        ("printable", b"\x09$a\na=\x01\xe9z\n"),
    ] {
        put("expand", label, data);
    }
}

/// The db_reader seeds are valid files (ours, libdb's, Postfix's): each
/// must open as the kind its name says and walk to the end, every walked
/// key found again by a lookup.
#[test]
fn db_seeds_are_read_whole() {
    use rostfix::global::dict::db::{Kind, Reader};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/db_reader");
    let mut n = 0;
    for p in files_in(&dir) {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let kind = if name.contains("hash") {
            Kind::Hash
        } else {
            Kind::Btree
        };
        let mut r = Reader::open_bytes(fs::read(&p).unwrap(), kind)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let all = r.read_all().unwrap_or_else(|e| panic!("{name}: {e}"));
        if !name.starts_with("empty") {
            assert!(!all.is_empty(), "{name}: no pairs");
        }
        for (k, _) in &all {
            assert!(r.get(k).unwrap().is_some(), "{name}: {k:?} not found");
        }
        n += 1;
    }
    assert!(n >= 8, "only {n} db seeds");
}
