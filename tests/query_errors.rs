//! What postmap prints when a table operation fails, for each kind of
//! failure (see the rule on `DictError` in src/global/dict/mod.rs), against
//! Postfix 3.7.11's postmap:
//!
//! - a temporary error: `table T:N: query error: %m` (also `delete error`,
//!   `sequence error`), with the errno text Postfix holds (fail, unionmap,
//!   pipemap, socketmap; memcache in tests/memcache.rs, tcp in
//!   tests/dict_query.rs: Postfix's tcp client tries 10 times a second
//!   apart);
//! - a configuration error: `table T:N: query error` (a non-UTF-8 value
//!   behind the UTF-8 layer, a malformed BASE64 value with -F);
//! - a table that ends the program itself: its own message (a damaged cdb
//!   file, operations a type does not have);
//! - table types we do not have, and types that cannot be built.
//!
//! Golden file: tests/golden/query_errors.txt (re-record with
//! `ROSTFIX_RECORD=1 cargo test --test query_errors`).

mod common;

use common::pm;
use std::net::TcpListener;
use std::path::Path;

const GOLDEN: &str = "tests/golden/query_errors.txt";

fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn side(dir: &Path, pf: bool, closed: u16) -> Vec<(String, String)> {
    let conf = dir.join("conf");
    let conf_ascii = dir.join("conf-ascii");
    pm::make_conf(&conf, "");
    pm::make_conf(&conf_ascii, "smtputf8_enable = no\n");
    let mut out = Vec::new();
    // A table with a value that is not UTF-8, built with SMTPUTF8 off.
    pm::put(
        &dir.join("nonutf8"),
        b"k \xffval\nb aGVsbG8=\nc !!!notb64\n",
    );
    let r = pm::run(pf, "postmap", &conf_ascii, dir, &["hash:nonutf8"], b"");
    assert_eq!(r.rc, 0, "{r:?}");
    // A cdb file cut short.
    let lines: String = (1..300).map(|i| format!("key{i} value{i}\n")).collect();
    pm::put(&dir.join("short"), lines.as_bytes());
    let r = pm::run(pf, "postmap", &conf, dir, &["cdb:short"], b"");
    assert_eq!(r.rc, 0, "{r:?}");
    let data = std::fs::read(dir.join("short.cdb")).unwrap();
    std::fs::write(dir.join("short.cdb"), &data[..data.len() / 2]).unwrap();
    pm::put(&dir.join("re"), b"/a/ b\n");
    pm::put(&dir.join("ci"), b"10.0.0.0/8 x\n");
    let cases: Vec<Vec<String>> = [
        "-q x fail:foo",
        "-d x fail:foo",
        "-s fail:foo",
        "-q x unionmap:{static:y,fail:x}",
        "-q x pipemap:{static:y,fail:x}",
        "-q k hash:nonutf8",
        "-F -q c hash:nonutf8",
        "-F -q b hash:nonutf8",
        "-q key1 cdb:short",
        "-s regexp:re",
        "-d x regexp:re",
        "-s static:x",
        "-d x static:x",
        "-s cidr:ci",
        "-s environ:x",
        "-s unix:passwd.byname",
        "-s cdb:short",
        "-q x socketmap:inet:127.0.0.1:@CLOSED@:map",
        "-q x socketmap:unix:@DIR@/nosocket:map",
        "-q x btree:@DIR@/nofile",
        "-q x ldap:@DIR@/ldap.cf",
        "-q x sdbm:@DIR@/x",
        "-q x nosuchtype:x",
        "ldap:@DIR@/src",
        "sdbm:@DIR@/src",
        "regexp:@DIR@/re",
        "nosuchtype:@DIR@/src",
    ]
    .iter()
    .map(|c| {
        c.split(' ')
            .map(|a| {
                a.replace("@CLOSED@", &closed.to_string())
                    .replace("@DIR@", dir.to_str().unwrap())
            })
            .collect()
    })
    .collect();
    pm::put(&dir.join("src"), b"a b\n");
    // In parallel: Postfix sleeps a second before each fatal exit.
    let conf = &conf;
    let runs: Vec<pm::Run> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|args| s.spawn(move || pm::run(pf, "postmap", conf, dir, args, b"")))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (args, r) in cases.iter().zip(runs) {
        let name = args
            .join(" ")
            .replace(dir.to_str().unwrap(), "@DIR@")
            .replace(&format!(":{closed}"), ":@CLOSED@");
        out.push((
            name,
            r.text(dir).replace(&format!(":{closed}"), ":@CLOSED@"),
        ));
    }
    out
}

#[test]
fn failing_operations_like_postfix() {
    let base = pm::scratch("query-errors");
    let closed = closed_port();
    let pf = pm::reference().map(|_| {
        let dir = base.join("pf");
        std::thread::spawn(move || side(&dir, true, closed))
    });
    let ours = side(&base.join("our"), false, closed);
    let pf = pf.map(|h| h.join().unwrap());
    let cases: Vec<(String, String, Option<String>)> = ours
        .into_iter()
        .enumerate()
        .map(|(i, (name, text))| {
            let pf_text = pf.as_ref().map(|p| p[i].1.clone());
            (name, text, pf_text)
        })
        .collect();
    pm::check_golden(GOLDEN, &cases);
    let _ = std::fs::remove_dir_all(&base);
}
