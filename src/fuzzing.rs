//! Fuzz target bodies: one function per target, each feeding arbitrary bytes
//! to a real parser of this crate. The property is that none panics, loops
//! or allocates without bound; where an oracle exists (a writer whose output
//! the reader must read back, a formatter whose output the parser must
//! re-parse to the same thing) the target also asserts the round trip.
//!
//! Called by the cargo-fuzz binaries in `fuzz/` and by `tests/fuzz_smoke.rs`,
//! which replays the committed seed corpus and regression inputs in a plain
//! `cargo test`. Not part of the stable API.
//!
//! Postfix makes some bad input fatal (a main.cf line without `=`, a bad
//! master.cf field, a numeric comparison that overflows). Those paths call
//! [`msg::fatal`], which inside [`msg::sandbox`] unwinds back to the target
//! instead of exiting: a fatal error with Postfix's text is an accepted
//! outcome, a Rust panic is not.

use crate::commands::postconf::master;
use crate::global::dict::cdb;
use crate::global::dict::cidr::CidrDict;
use crate::global::dict::db::{self, Kind};
use crate::global::dict::pattern_util::Diag;
use crate::global::dict::pcre::PcreDict;
use crate::global::dict::regexp::RegexpDict;
use crate::global::dict::{Dict, OpenMode, flags};
use crate::global::expand;
use crate::global::mail_conf::{self, MailConf};
use crate::global::msg;
use crate::global::readlline;
use crate::util::latin1;
use std::collections::{HashMap, HashSet};

/// A target body.
pub type Target = fn(&[u8]);

/// Every target, by the name of its fuzz binary and corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("cdb_reader", cdb_reader),
    ("cdb_roundtrip", cdb_roundtrip),
    ("cidr_table", cidr_table),
    ("db_reader", db_reader),
    ("db_roundtrip", db_roundtrip),
    ("expand", expand),
    ("inline_texthash", inline_texthash),
    ("main_cf", main_cf),
    ("master_cf", master_cf),
    ("pcre_table", pcre_table),
    ("queue_file", queue_file),
    ("regexp_table", regexp_table),
    ("table_source", table_source),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Separates a table from the keys to look up in it: `TABLE\n%%\nKEY\nKEY...`.
const QUERY_MARK: &[u8] = b"\n%%\n";

/// Keys looked up when the input names none: hits and misses for the
/// corpus tables, addresses of both families, odd bytes.
const DEFAULT_QUERIES: &[&[u8]] = &[
    b"",
    b"a",
    b"user@example.com",
    b"User@Example.COM",
    b"postmaster",
    b"example.com",
    b"Subject: hello",
    b"From: x@y",
    b"192.0.2.1",
    b"10.1.2.3",
    b"127.0.0.1",
    b"::1",
    b"2001:db8::1",
    b"::ffff:192.0.2.1",
    b"\x00\xff\xc3\xa9",
];

/// Split `TABLE\n%%\nQUERIES` into the table and at most 32 query keys.
fn table_and_queries(data: &[u8]) -> (&[u8], Vec<&[u8]>) {
    match find(data, QUERY_MARK) {
        Some(i) => (
            &data[..i],
            data[i + QUERY_MARK.len()..]
                .split(|&b| b == b'\n')
                .take(32)
                .collect(),
        ),
        None => (data, DEFAULT_QUERIES.to_vec()),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Key/value pairs decoded from bytes: each pair is `K VV key fill`, where
/// K's low 7 bits give the key length (the high bit repeats the key 64
/// times, making keys larger than a page), VV (little-endian) the value
/// length modulo 20000, and up to 16 fill bytes repeat to that length.
/// At most 300 pairs; keys unique when `unique`.
fn pairs_from(data: &[u8], unique: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut i = 0;
    while i + 3 <= data.len() && out.len() < 300 {
        let k = data[i];
        let vlen = u16::from_le_bytes([data[i + 1], data[i + 2]]) as usize % 20000;
        i += 3;
        let take = |i: &mut usize, n: usize| {
            let s = &data[*i..(*i + n).min(data.len())];
            *i += s.len();
            s
        };
        let kpart = take(&mut i, (k & 0x7f) as usize);
        let key = if k & 0x80 != 0 {
            kpart.repeat(64)
        } else {
            kpart.to_vec()
        };
        let fill = take(&mut i, vlen.min(16));
        let value: Vec<u8> = if fill.is_empty() {
            vec![0; vlen]
        } else {
            fill.iter().copied().cycle().take(vlen).collect()
        };
        if !unique || seen.insert(key.clone()) {
            out.push((key, value));
        }
    }
    out
}

/// A Berkeley DB file of any content, opened as `hash:` and as `btree:`:
/// look keys up (the query keys and the first keys a walk returns, with and
/// without a trailing NUL, as Postfix tries them) and walk it to the end.
pub fn db_reader(data: &[u8]) {
    for kind in [Kind::Hash, Kind::Btree] {
        let Ok(mut r) = db::Reader::open_bytes(data.to_vec(), kind) else {
            continue;
        };
        let mut keys: Vec<Vec<u8>> = DEFAULT_QUERIES.iter().map(|k| k.to_vec()).collect();
        let mut c = r.cursor();
        // A damaged file may chain buckets into each other, so a walk can
        // repeat pairs; it must still end (every chain walk is bounded).
        let mut n = 0usize;
        while let Ok(Some((k, _))) = r.next(&mut c) {
            if n < 8 {
                keys.push(k);
            }
            n += 1;
        }
        for k in keys {
            let _ = r.get(&k);
            let mut with_nul = k.clone();
            with_nul.push(0);
            let _ = r.get(&with_nul);
        }
    }
}

/// Pairs decoded from the input, written as `hash:` and `btree:` files by
/// our writer: reading them back must give every value, and a walk must
/// give exactly the pairs, in the order [`db::walk_order`] predicts.
pub fn db_roundtrip(data: &[u8]) {
    let owned = pairs_from(data, true);
    let pairs: Vec<(&[u8], &[u8])> = owned
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    for kind in [Kind::Hash, Kind::Btree] {
        let mut sorted = pairs.clone();
        let mut file = Vec::new();
        db::write(&mut file, kind, &mut sorted, &[7; 20]).expect("write to memory");
        let mut r = db::Reader::open_bytes(file, kind)
            .unwrap_or_else(|e| panic!("{kind:?}: our own file does not open: {e}"));
        for (k, v) in &pairs {
            match r.get(k) {
                Ok(Some(got)) => assert!(got == *v, "{kind:?}: wrong value for key {k:?}"),
                other => panic!("{kind:?}: key {k:?} not found: {other:?}"),
            }
        }
        let walked = r
            .read_all()
            .unwrap_or_else(|e| panic!("{kind:?}: walk failed: {e}"));
        let order = db::walk_order(kind, &pairs);
        assert_eq!(walked.len(), pairs.len(), "{kind:?}: walk length");
        for (got, &i) in walked.iter().zip(&order) {
            let (k, v) = pairs[i as usize];
            assert!(got.0 == k && got.1 == v, "{kind:?}: walk order");
        }
        let missing: &[u8] = b"\x01no such key\x02";
        if !pairs.iter().any(|(k, _)| *k == missing) {
            assert!(matches!(r.get(missing), Ok(None)), "{kind:?}: phantom key");
        }
    }
}

/// A cdb file of any content: look keys up (the query keys and those of
/// the first records) and list every record.
pub fn cdb_reader(data: &[u8]) {
    let Ok(r) = cdb::Reader::new(data.to_vec()) else {
        return;
    };
    let mut keys: Vec<Vec<u8>> = DEFAULT_QUERIES.iter().map(|k| k.to_vec()).collect();
    if let Ok(recs) = r.records() {
        keys.extend(recs.into_iter().take(8).map(|(k, _)| k));
    }
    for k in keys {
        let _ = r.find(&k);
    }
}

/// Pairs decoded from the input (duplicates allowed), put into our cdb
/// writer with the mode the first byte picks: the reader must find the
/// first value of each key (the last with `Replace`), and list the records
/// in the order they were kept.
pub fn cdb_roundtrip(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let mode = match sel % 3 {
        0 => cdb::PutMode::Add,
        1 => cdb::PutMode::Replace,
        _ => cdb::PutMode::Insert,
    };
    let mut w = cdb::Writer::new();
    // The records we expect, in file order.
    let mut kept: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (k, v) in pairs_from(rest, false) {
        let present = kept.iter().any(|(kk, _)| *kk == k);
        let found = w.put(&k, &v, mode).expect("small table");
        assert_eq!(found, present && mode != cdb::PutMode::Add, "put result");
        match mode {
            cdb::PutMode::Insert if present => {}
            cdb::PutMode::Replace => {
                kept.retain(|(kk, _)| *kk != k);
                kept.push((k, v));
            }
            _ => kept.push((k, v)),
        }
    }
    assert_eq!(w.len(), kept.len());
    let r = cdb::Reader::new(w.finish()).expect("our own file opens");
    assert_eq!(r.records().expect("our own records"), kept, "records");
    let mut first: HashMap<&[u8], &[u8]> = HashMap::new();
    for (k, v) in &kept {
        first.entry(k).or_insert(v);
    }
    for (k, v) in first {
        assert_eq!(r.find(k).expect("lookup"), Some(v.to_vec()), "key {k:?}");
    }
}

/// DICT_FLAG_* sets a pattern table is opened with (chosen by input length).
const PATTERN_FLAGS: [u32; 4] = [
    flags::FOLD_MUL,
    0,
    flags::FOLD_MUL | flags::NO_REGSUB,
    flags::FOLD_MUL | flags::UTF8_REQUEST,
];

/// Open a pattern table from the input (as a file's text, and when it
/// starts with `{` also as an inline `{...}` table name), then look the
/// query keys up.
fn pattern_table<D: Dict>(
    data: &[u8],
    from_bytes: fn(&str, &[u8], u32, Diag) -> Result<D, crate::global::dict::OpenError>,
    open: fn(&str, OpenMode, u32, Diag) -> Result<D, crate::global::dict::OpenError>,
) {
    let (table, queries) = table_and_queries(data);
    let fl = PATTERN_FLAGS[data.len() % PATTERN_FLAGS.len()];
    let run = |d: Result<D, _>| {
        if let Ok(mut d) = d {
            for q in &queries {
                let _ = d.lookup(&latin1::decode(q));
            }
        }
    };
    let (r, _) = msg::sandbox(|| {
        run(from_bytes("fuzz.tbl", table, fl, Diag::collect()));
        if table.first() == Some(&b'{') {
            run(open(
                &latin1::decode(table),
                OpenMode::ReadOnly,
                fl,
                Diag::collect(),
            ));
        }
    });
    if let Err(e) = r {
        panic!("pattern table exited: {e:?}");
    }
}

/// Whether a table holds regular expressions on which glibc's regcomp()
/// itself takes memory exponential in their length: stacked repetition
/// operators (`a+++`: twice the memory per operator, 700 MB for twenty) or
/// large repeat counts (`(a{999}){999}`). Postfix calls the same regcomp()
/// and fails the same way (3 GB and 11 s for `/l++...+/` with 22 `+` in
/// `postmap -q`), so these are not parser bugs of ours; the target skips
/// them to stay within its memory limit.
pub fn regcomp_blowup(table: &[u8]) -> bool {
    let mut run = 0;
    for (i, &c) in table.iter().enumerate() {
        if b"*+?".contains(&c) {
            run += 1;
            if run >= 4 {
                return true;
            }
        } else {
            run = 0;
        }
        if (c == b'{' || c == b',') && i + 1 < table.len() {
            let digits: Vec<u8> = table[i + 1..]
                .iter()
                .copied()
                .take_while(u8::is_ascii_digit)
                .take(4)
                .collect();
            if digits.len() >= 3 {
                return true;
            }
        }
    }
    false
}

/// A `regexp:` table source (POSIX regular expressions, if/endif).
pub fn regexp_table(data: &[u8]) {
    if regcomp_blowup(data) {
        return;
    }
    pattern_table(data, RegexpDict::from_bytes, RegexpDict::open);
}

/// A `pcre:` table source (PCRE2, if/endif).
pub fn pcre_table(data: &[u8]) {
    pattern_table(data, PcreDict::from_bytes, PcreDict::open);
}

/// A `cidr:` table source (address patterns, if/endif).
pub fn cidr_table(data: &[u8]) {
    pattern_table(data, CidrDict::from_bytes, CidrDict::open);
}

/// Check what the logical-line reader returns for `text`: lines that start
/// with a non-blank, hold no newline or NUL, and come in order. (A line may
/// be empty: Postfix cuts each at its first NUL, and `\0x` becomes "".)
fn check_logical_lines(text: &str) -> Vec<readlline::LogicalLine> {
    let mut warnings = Vec::new();
    let lines = readlline::read_logical_lines_with(text, "fuzz.cf", &mut |w| warnings.push(w));
    let mut last = 0;
    for l in &lines {
        assert!(!l.text.contains(['\n', '\0']), "newline or NUL kept");
        assert!(
            !l.text.starts_with([' ', '\t', '\r', '\x0b', '\x0c', '#']),
            "bad first character: {:?}",
            l.text
        );
        assert!(last < l.first_line && l.first_line <= l.last_line, "order");
        last = l.last_line;
    }
    lines
}

/// main.cf text: logical lines, `name = value`, then every setting expanded
/// (`$name` recursively against main.cf and the built-in defaults) and read
/// with the typed getters.
pub fn main_cf(data: &[u8]) {
    let text = latin1::decode(data);
    check_logical_lines(&text);
    let (r, _) = msg::sandbox(|| {
        let conf = MailConf::from_text("/etc/postfix", &text);
        let names: Vec<String> = conf.settings.iter().map(|(n, _)| n.to_string()).collect();
        for n in names.iter().take(64) {
            let _ = conf.lookup_eval(n);
            let _ = conf.get_str(n, 0, 0);
            let _ = conf.get_int(n, 0, i64::MAX);
            let _ = conf.get_bool(n);
            let _ = conf.get_time(n, 's', 0, i64::MAX);
            if let Some(v) = conf.raw(n) {
                let _ = mail_conf::conv_time(&v, 's');
            }
        }
        let _ = conf.compat_level();
        let _ = conf.compat_warnings();
        // Not myorigin(): a value starting with `/` names a file to read.
    });
    if let Err(msg::Exit::Panic(e)) = r {
        panic!("main.cf: panic exit: {e}");
    }
}

/// `$name` expansion of arbitrary text. The input is `FLAGS PATTERN` and
/// then `name=value` lines, the table the lookup reads (at most 16).
/// Expansion must end (nesting is bounded) and, with [`expand::FLAG_SCAN`],
/// produce nothing.
///
/// Like any macro expander, Postfix's is exponential by design when values
/// refer to others several times (`a=$b$b`, `b=$c$c` ...: "billion
/// laughs"); inputs with more than 24 `$` are skipped so that the fuzzer
/// looks for bugs rather than rediscovering that.
pub fn expand(data: &[u8]) {
    let Some((&fl, rest)) = data.split_first() else {
        return;
    };
    if rest.iter().filter(|&&b| b == b'$').count() > 24 {
        return;
    }
    let flags = u32::from(fl)
        & (expand::FLAG_RECURSE | expand::FLAG_SCAN | expand::FLAG_PRINTABLE | expand::FLAG_APPEND);
    let text = latin1::decode(rest);
    let mut lines = text.split('\n');
    let pattern = lines.next().unwrap_or("");
    let table: HashMap<&str, &str> = lines
        .take(16)
        .map(|l| l.split_once('=').unwrap_or((l, "")))
        .collect();
    let filter = (fl & 0x80 != 0).then_some("abcdefghijklmnopqrstuvwxyz.@$");
    let (r, _) = msg::sandbox(|| {
        let mut out = String::from("keep");
        let st = expand::mac_expand(&mut out, pattern, flags, filter, &mut |name, _| {
            table.get(name).map(|v| v.to_string())
        });
        if flags & expand::FLAG_SCAN != 0 {
            assert_eq!(out, "keep", "FLAG_SCAN produced output");
        } else if flags & expand::FLAG_APPEND != 0 {
            assert!(out.starts_with("keep"), "FLAG_APPEND lost the buffer");
        }
        st
    });
    if let Err(msg::Exit::Panic(e)) = r {
        panic!("expand: panic exit: {e}");
    }
}

/// Whether every field of an entry survives printing and re-reading
/// unchanged: printable ASCII, blanks only inside values (which are then
/// printed in braces), and no braces or `#` of its own. Nor blanks in the
/// first argument after the daemon options: Postfix prints that one
/// without braces (`smtpd {a b} {c d}` comes out as `smtpd a b {c d}`),
/// and so do we.
fn reprintable(argv: &[String]) -> bool {
    let plain = argv.iter().all(|a| {
        !a.is_empty()
            && a.bytes()
                .all(|b| (b' '..=b'~').contains(&b) && !b"{}#".contains(&b))
            && !a.starts_with(' ')
            && !a.ends_with(' ')
    });
    let mut i = master::MIN_FIELDS;
    while i < argv.len() {
        let a = &argv[i];
        if !a.starts_with('-') || a == "--" {
            return plain && !a.contains(' ');
        }
        // An option that takes a value (`-o`, and `-` alone) skips it. A
        // `-o` value with blanks is printed in braces, and braces make the
        // reader normalise `name = value` to `name=value`: it must be in
        // that form already (it is not when it came without braces, as
        // from `-o{x y` split at a later `o`; Postfix does the same).
        if a.len() == 1 || a.as_bytes()[1] == b'o' {
            if a == "-o"
                && let Some(v) = argv.get(i + 1)
                && v.contains(' ')
                && readlline::split_nameval(v).is_ok_and(|(n, x)| format!("{n}={x}") != *v)
            {
                return false;
            }
            i += 1;
        }
        i += 1;
    }
    plain
}

/// master.cf text: logical lines, each parsed as an entry (a bad field is
/// fatal, as in Postfix). An entry printed as `postconf -M` prints it (with
/// and without line folding) must parse back to the same fields.
pub fn master_cf(data: &[u8]) {
    let text = latin1::decode(data);
    for line in check_logical_lines(&text).into_iter().take(64) {
        let (r, _) = msg::sandbox(|| master::parse_master_entry(&line.text));
        let ent = match r {
            Ok(Ok(ent)) => ent,
            Ok(Err(_)) | Err(msg::Exit::Fatal(_)) => continue,
            Err(msg::Exit::Panic(e)) => panic!("master.cf: panic exit: {e}"),
        };
        if !reprintable(&ent.argv) {
            continue;
        }
        for mode in [0, crate::commands::postconf::mode::FOLD_LINE] {
            let printed = master::format_master_entry(mode, &ent.argv, &mut |v| v.to_string());
            let again = readlline::read_logical_lines_with(&printed, "printed", &mut |_| {});
            assert_eq!(
                again.len(),
                1,
                "printed entry is one logical line: {printed:?}"
            );
            let (r, m) = msg::sandbox(|| master::parse_master_entry(&again[0].text));
            match r {
                Ok(Ok(back)) => assert_eq!(back.argv, ent.argv, "printed: {printed:?}"),
                other => panic!("printed entry {printed:?} does not parse: {other:?} {m:?}"),
            }
        }
    }
}

/// A postmap or postalias source file (landed after the first targets):
/// logical lines, each split as `key value` (postmap) and as
/// `name: value` through the RFC 822 tokenizer (postalias), whose tokens
/// are also internalized and externalized again.
pub fn table_source(data: &[u8]) {
    use crate::commands::postmap::source::{self, Item};
    use crate::global::tok822;
    for item in source::LogicalLines::new(data, "fuzz.src").take(256) {
        let Item::Line(line, _) = item else {
            continue;
        };
        let _ = source::bad_utf8(&line);
        let text = source::c_text(&line);
        let _ = source::split_postmap(&text);
        let _ = source::split_alias(&text);
        let toks = tok822::scan(&text);
        let _ = tok822::externalize(&toks);
        let _ = tok822::internalize(&toks);
    }
}

/// A queue file of any content, read record by record as the queue
/// manager and postcat read it: with pointer records followed (a loop is
/// cut off after 10000 reverse jumps) and without. The reader needs a file:
/// the input is written to a temporary one, under a new name each time
/// (the jump counter is kept per file name, as in Postfix).
pub fn queue_file(data: &[u8]) {
    use crate::global::record::{self, QueueStream, Rec};
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "rostfix-fuzz-queue-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, data).expect("temporary file");
    let file = std::fs::File::open(&path).expect("temporary file");
    let _ = std::fs::remove_file(&path);
    let name = path.to_string_lossy().to_string();
    for flags in [record::FLAG_DEFAULT, record::FLAG_NONE] {
        let mut fp = QueueStream::new(file.try_clone().expect("dup"), &name);
        fp.collect_warnings();
        let _ = fp.seek_set(0);
        let mut buf = Vec::new();
        let mut n = 0u32;
        while let Rec::Type(_) = record::rec_get_raw(&mut fp, &mut buf, 1 << 20, flags) {
            n += 1;
            // Every record takes at least two bytes of the file, and
            // pointers may revisit at most 10000 times.
            assert!(
                n as usize <= (data.len() / 2 + 1) * 10001,
                "record reader does not advance"
            );
        }
    }
}

/// `texthash:` source text (postmap's format, loaded in memory) and
/// `inline:{...}` table names: both parsed (a warning or open error is
/// fine) and the query keys looked up.
pub fn inline_texthash(data: &[u8]) {
    use crate::global::dict::{inline, texthash};
    let (table, queries) = table_and_queries(data);
    let text = latin1::decode(table);
    let fl = PATTERN_FLAGS[data.len() % PATTERN_FLAGS.len()] | flags::FOLD_FIX;
    let (r, _) = msg::sandbox(|| {
        if let Ok(mut d) = texthash::load("fuzz.txt", &text, fl) {
            for q in &queries {
                let _ = d.lookup(&latin1::decode(q));
            }
        }
        for line in text.split('\n').take(64) {
            let _ = texthash::split_key_value(line);
        }
        if let Ok(mut d) = inline::open(&text, OpenMode::ReadOnly, fl) {
            for q in &queries {
                let _ = d.lookup(&latin1::decode(q));
            }
        }
    });
    if let Err(msg::Exit::Panic(e)) = r {
        panic!("inline/texthash: panic exit: {e}");
    }
}
