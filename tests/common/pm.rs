//! A small harness for table tests that run our `postmap`/`postalias` and
//! the real Postfix 3.7.11 ones side by side, with golden files recorded
//! from Postfix.
//!
//! The reference is $ROSTFIX_REFERENCE or /tmp/pfroot. A golden file holds
//! one block per case (`### name` then `rc N`, `out ...`, `err ...` and any
//! extra lines a test adds). Ours must equal the golden file; when the
//! reference is present, Postfix must equal it too (so the file stays
//! Postfix's behaviour). `ROSTFIX_RECORD=1` rewrites the file from Postfix.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The real Postfix's root directory, when present.
pub fn reference() -> Option<PathBuf> {
    let root = std::env::var_os("ROSTFIX_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/pfroot"));
    root.join("usr/sbin/postmap").exists().then_some(root)
}

/// A fresh scratch directory for one test.
pub fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rostfix-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Set a file's modification time an hour back (Postfix re-reads files
/// changed within the last second).
pub fn age(path: &Path) {
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    if let Ok(f) = fs::File::options().append(true).open(path) {
        let _ = f.set_modified(old);
    }
}

/// Write a file and age it.
pub fn put(path: &Path, data: &[u8]) {
    fs::write(path, data).unwrap();
    age(path);
}

/// A configuration directory `dir` with main.cf (`extra` appended) and, for
/// the reference, a dynamicmaps.cf naming its cdb, lmdb and pcre plugins.
pub fn make_conf(dir: &Path, extra: &str) {
    fs::create_dir_all(dir).unwrap();
    let main = format!(
        "compatibility_level = 3.6\nmeta_directory = {}\n{extra}",
        dir.display()
    );
    put(&dir.join("main.cf"), main.as_bytes());
    let mut dm = String::new();
    if let Some(root) = reference() {
        for (ty, mk) in [("cdb", true), ("lmdb", true), ("pcre", false)] {
            let so = root.join(format!("usr/lib/postfix/postfix-{ty}.so"));
            if so.exists() {
                let mk = if mk {
                    format!(" mkmap_{ty}_open")
                } else {
                    String::new()
                };
                dm.push_str(&format!("{ty} {} dict_{ty}_open{mk}\n", so.display()));
            }
        }
    }
    put(&dir.join("dynamicmaps.cf"), dm.as_bytes());
}

/// One run's observable result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub rc: i32,
    pub out: String,
    pub err: String,
}

impl Run {
    /// The golden-file form, with `dir` shown as `@DIR@`.
    pub fn text(&self, dir: &Path) -> String {
        let d = dir.to_str().unwrap();
        let mut t = format!("rc {}\n", self.rc);
        for l in self.out.lines() {
            t.push_str(&format!("out {}\n", l.replace(d, "@DIR@")));
        }
        for l in self.err.lines() {
            t.push_str(&format!("err {}\n", l.replace(d, "@DIR@")));
        }
        t
    }
}

/// Run `prog` (postmap, postalias) with `-c conf`: the real one when `pf`,
/// else ours; in `cwd`.
pub fn run<A: AsRef<std::ffi::OsStr>>(
    pf: bool,
    prog: &str,
    conf: &Path,
    cwd: &Path,
    args: &[A],
    stdin: &[u8],
) -> Run {
    let mut cmd = if pf {
        let root = reference().expect("reference");
        let mut c = Command::new(root.join("usr/sbin").join(prog));
        c.arg0(prog);
        c.env(
            "LD_LIBRARY_PATH",
            format!(
                "{r}/usr/lib/postfix:{r}/usr/lib/x86_64-linux-gnu:{r}/lib/x86_64-linux-gnu",
                r = root.display()
            ),
        );
        c.env("NORANDOMIZE", "1");
        c
    } else {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rostfix"));
        c.arg0(prog);
        c
    };
    cmd.current_dir(cwd)
        .env_remove("MAIL_CONFIG")
        .env_remove("MAIL_VERBOSE")
        .arg("-c")
        .arg(conf)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {prog}: {e}"));
    {
        let mut si = child.stdin.take().unwrap();
        let _ = si.write_all(stdin);
    }
    let o = child.wait_with_output().unwrap();
    Run {
        rc: o.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Parse a golden file into name -> text.
pub fn read_golden(path: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let Ok(data) = fs::read_to_string(path) else {
        return m;
    };
    let mut name: Option<String> = None;
    let mut text = String::new();
    for line in data.lines() {
        if let Some(n) = line.strip_prefix("### ") {
            if let Some(prev) = name.take() {
                m.insert(prev, std::mem::take(&mut text));
            }
            name = Some(n.to_string());
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    if let Some(prev) = name {
        m.insert(prev, text);
    }
    m
}

/// Compare ours (and Postfix's, when run) with the golden file, or record
/// it from Postfix with ROSTFIX_RECORD=1. `cases` is (name, ours, pf).
pub fn check_golden(path: &str, cases: &[(String, String, Option<String>)]) {
    let record = std::env::var_os("ROSTFIX_RECORD").is_some();
    if record {
        let mut out = String::new();
        for (name, _, pf) in cases {
            let pf = pf.as_ref().expect("ROSTFIX_RECORD needs the reference");
            out.push_str(&format!("### {name}\n{pf}"));
        }
        fs::write(path, out).unwrap();
        eprintln!("{path}: recorded {} cases from Postfix", cases.len());
    }
    let golden = read_golden(path);
    let mut failures = Vec::new();
    for (name, ours, pf) in cases {
        let Some(want) = golden.get(name) else {
            failures.push(format!("{name}: not in {path}"));
            continue;
        };
        if let Some(pf) = pf
            && pf != want
        {
            failures.push(format!(
                "{name}: Postfix no longer matches {path}:\n--- golden\n{want}--- Postfix\n{pf}"
            ));
        }
        if ours != want {
            failures.push(format!(
                "{name}: rostfix differs from Postfix ({path}):\n--- Postfix\n{want}--- rostfix\n{ours}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    if cases.iter().all(|c| c.2.is_none()) {
        eprintln!(
            "NOTICE: no Postfix reference (/tmp/pfroot or $ROSTFIX_REFERENCE): {path} checked against its recorded outputs only"
        );
    }
}
