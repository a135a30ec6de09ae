//! Case folding of non-ASCII keys, as Postfix 3.7.11 does it with
//! `smtputf8_enable = yes` (Unicode case folding through the UTF-8 layer that
//! dict_open puts in front of every table, keys and values checked for
//! UTF-8) and with `smtputf8_enable = no` (ASCII lower-casing only): the
//! same `postmap` builds and `postmap -q` queries run with ours and with
//! Postfix's, over hash, btree, cdb, lmdb (each side builds its own file),
//! texthash, inline, regexp, pcre, unionmap and pipemap.
//!
//! Golden file: tests/golden/table_utf8.txt (re-record with
//! `ROSTFIX_RECORD=1 cargo test --test table_utf8`).

mod common;

use common::pm;
use std::path::Path;

const GOLDEN: &str = "tests/golden/table_utf8.txt";

/// A postmap source with upper case, sharp s, and a line that is not
/// UTF-8.
const SOURCE: &[u8] = b"\xc3\x84\xc3\x96\xc3\x9c@Example.COM umlaut-upper\n\
stra\xc3\x9fe sharp-s\n\
Strasse ss\n\
\xc3\xa4\xc3\xb6\xc3\xbc@example.com umlaut-lower\n\
\xffbad not-utf8-key\n\
ok \xfevalue\n\
Gr\xc3\xbc\xc3\x9fe@Example.ORG gruesse\n";

const REGEXP: &[u8] = b"/^\xc3\x84\xc3\x96\xc3\x9c@example\\.com$/ re-umlaut\n\
/^stra\xc3\x9fe$/ re-sharp-s\n\
/^strasse$/ re-ss\n\
/^(gr\xc3\xbc)/ re-$1\n";

const KEYS: &[&str] = &[
    "ÄÖÜ@Example.COM",
    "äöü@example.com",
    "ÄöÜ@EXAMPLE.com",
    "STRASSE",
    "STRAẞE",
    "straße",
    "Straße",
    "GRÜSSE@example.org",
    "grüße@EXAMPLE.ORG",
    "ok",
    "OK",
];

fn keys_stdin() -> Vec<u8> {
    let mut v = Vec::new();
    for k in KEYS {
        v.extend_from_slice(k.as_bytes());
        v.push(b'\n');
    }
    // Not UTF-8.
    v.extend_from_slice(b"\xffbad\n\xffBAD\n");
    v
}

fn side(dir: &Path, pf: bool, utf8: bool) -> Vec<(String, String)> {
    let conf = dir.join("conf");
    pm::make_conf(
        &conf,
        if utf8 {
            "smtputf8_enable = yes\n"
        } else {
            "smtputf8_enable = no\n"
        },
    );
    pm::put(&dir.join("src"), SOURCE);
    pm::put(&dir.join("re"), REGEXP);
    let mut out = Vec::new();
    let mut record = |name: String, r: pm::Run| out.push((name, r.text(dir)));
    for ty in ["hash", "btree", "cdb", "lmdb"] {
        let file = format!("{ty}-src");
        pm::put(&dir.join(&file), SOURCE);
        let spec = format!("{ty}:{file}");
        record(
            format!("build {spec}"),
            pm::run(pf, "postmap", &conf, dir, &[&spec], b""),
        );
        record(
            format!("query {spec}"),
            pm::run(
                pf,
                "postmap",
                &conf,
                dir,
                &["-q", "-", &spec],
                &keys_stdin(),
            ),
        );
    }
    let tables = [
        "texthash:src".to_string(),
        "regexp:re".to_string(),
        "pcre:re".to_string(),
        "inline:{ÄÖÜ@example.com=i1, straße=i2, {STRASSE = i3}}".to_string(),
        "unionmap:{inline:{ÄÖÜ@example.com=u1}, texthash:src}".to_string(),
        "pipemap:{inline:{ÄÖÜ@example.com=ẞ}, inline:{SS=p2}}".to_string(),
    ];
    for spec in &tables {
        record(
            format!("query {spec}"),
            pm::run(pf, "postmap", &conf, dir, &["-q", "-", spec], &keys_stdin()),
        );
    }
    // Exit status and a single key; -f turns folding off.
    for args in [
        &["-q", "STRAẞE", "texthash:src"][..],
        &["-f", "-q", "STRAẞE", "texthash:src"][..],
        &["-q", "ÄÖÜ@EXAMPLE.COM", "inline:{äöü@example.com=x}"][..],
    ] {
        record(
            args.join(" "),
            pm::run(pf, "postmap", &conf, dir, args, b""),
        );
    }
    // An inline table that is not UTF-8.
    {
        use std::os::unix::ffi::OsStrExt;
        let args = [
            std::ffi::OsStr::new("-q"),
            std::ffi::OsStr::new("a"),
            std::ffi::OsStr::from_bytes(b"inline:{a=\xff}"),
        ];
        record(
            "-q a inline:{a=\\xff}".to_string(),
            pm::run(pf, "postmap", &conf, dir, &args, b""),
        );
    }
    // A key and a value that are not UTF-8.
    record(
        "non-UTF-8 key".to_string(),
        pm::run(
            pf,
            "postmap",
            &conf,
            dir,
            &["-q", "-", "texthash:src"],
            b"\xffbad\n",
        ),
    );
    out
}

#[test]
fn utf8_folding_like_postfix() {
    let base = pm::scratch("table-utf8");
    let reference = pm::reference().is_some();
    let mut cases = Vec::new();
    for utf8 in [true, false] {
        let tag = if utf8 { "utf8" } else { "ascii" };
        let ours = side(&base.join(format!("our-{tag}")), false, utf8);
        let pf = reference.then(|| side(&base.join(format!("pf-{tag}")), true, utf8));
        for (i, (name, text)) in ours.into_iter().enumerate() {
            let pf_text = pf.as_ref().map(|p| {
                assert_eq!(p[i].0, name);
                p[i].1.clone()
            });
            cases.push((format!("{tag}: {name}"), text, pf_text));
        }
    }
    pm::check_golden(GOLDEN, &cases);
    let _ = std::fs::remove_dir_all(&base);
}
