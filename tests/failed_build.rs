//! A build that fails part way (here: the file size limit is reached, with
//! SIGXFSZ ignored so that writes fail with EFBIG) leaves the old table in
//! place and no half-written file behind (cdb keeps `NAME.cdb.tmp`, as
//! tinycdb does). The fatal message for hash and btree is Postfix's
//! (`flush database NAME.db: File too large`); Postfix's own hash and btree
//! builds lose the old table here (they rewrite it in place; see
//! compat/DIVERGENCES.md, "Builds happen aside").

mod common;

use common::pm;
use std::path::Path;
use std::process::Command;

/// Run `postmap ARGS` under `ulimit -f 100` (51200 bytes) with SIGXFSZ
/// ignored.
fn limited(pf: bool, conf: &Path, dir: &Path, args: &[&str]) -> pm::Run {
    let (prog, pre) = if pf {
        let root = pm::reference().unwrap();
        (
            root.join("usr/sbin/postmap"),
            format!(
                "export LD_LIBRARY_PATH={r}/usr/lib/postfix:{r}/usr/lib/x86_64-linux-gnu; ",
                r = root.display()
            ),
        )
    } else {
        (
            Path::new(env!("CARGO_BIN_EXE_rostfix")).to_path_buf(),
            String::new(),
        )
    };
    let script = format!("{pre}trap '' XFSZ; ulimit -f 100; exec -a postmap \"$0\" \"$@\"");
    let o = Command::new("bash")
        .current_dir(dir)
        .arg("-c")
        .arg(script)
        .arg(prog)
        .arg("-c")
        .arg(conf)
        .args(args)
        .output()
        .unwrap();
    pm::Run {
        rc: o.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn a_failed_build_keeps_the_old_table() {
    let dir = pm::scratch("failed-build");
    let conf = dir.join("conf");
    pm::make_conf(&conf, "");
    let big: String = (0..20000).map(|i| format!("key{i} value{i}\n")).collect();
    for (ty, ext, msg) in [
        (
            "hash",
            "db",
            Some("postmap: fatal: flush database t-hash.db: File too large\n"),
        ),
        (
            "btree",
            "db",
            Some("postmap: fatal: flush database t-btree.db: File too large\n"),
        ),
        (
            "cdb",
            "cdb",
            Some("postmap: fatal: finish database t-cdb.cdb.tmp: File too large\n"),
        ),
        (
            "lmdb",
            "lmdb",
            Some("postmap: fatal: close database t-lmdb.lmdb: Input/output error\n"),
        ),
    ] {
        let name = format!("t-{ty}");
        let spec = format!("{ty}:{name}");
        pm::put(&dir.join(&name), b"old 1\n");
        let r = pm::run(false, "postmap", &conf, &dir, &[&spec], b"");
        assert_eq!(r.rc, 0, "{r:?}");
        pm::put(&dir.join(&name), big.as_bytes());
        let r = limited(false, &conf, &dir, &[&spec]);
        assert_eq!(r.rc, 1, "{ty}: {r:?}");
        if let Some(m) = msg {
            assert_eq!(r.err, m, "{ty}");
        }
        // The old table answers.
        let q = pm::run(false, "postmap", &conf, &dir, &["-q", "old", &spec], b"");
        assert_eq!((q.rc, q.out.as_str()), (0, "1\n"), "{ty}: old table");
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("{name}.")))
            .collect();
        left.sort();
        let mut want = vec![format!("{name}.{ext}")];
        if ty == "cdb" {
            want.push(format!("{name}.cdb.tmp"));
        }
        assert_eq!(left, want, "{ty}: files left");
        for f in left {
            let _ = std::fs::remove_file(dir.join(f));
        }
    }
    // Postfix's message for hash and btree is the same.
    if pm::reference().is_some() {
        for ty in ["hash", "btree"] {
            let name = format!("p-{ty}");
            pm::put(&dir.join(&name), big.as_bytes());
            let r = limited(true, &conf, &dir, &[&format!("{ty}:{name}")]);
            let fatal: Vec<&str> = r
                .err
                .lines()
                .filter(|l| l.starts_with("postmap:"))
                .collect();
            assert_eq!(
                fatal,
                [format!(
                    "postmap: fatal: flush database {name}.db: File too large"
                )],
                "Postfix {ty}"
            );
        }
    } else {
        eprintln!("NOTICE: no Postfix reference: its failed-build messages not checked");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
