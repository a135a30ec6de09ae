//! postmap, postalias and newaliases end to end: our binary against the real
//! Postfix 3.7.11 (differential), on generated sources, an aliases file with
//! every aliases(5) form, and the table files of the shared config corpus.
//!
//! The reference is $ROSTFIX_REFERENCE or /tmp/pfroot (see
//! compat/reference.sh); without it the differential tests print a SKIP
//! notice. Table types that our registry does not have yet are skipped with a
//! notice too, so these tests start running as the types land.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rostfix::global::dict::registry;

fn reference() -> Option<PathBuf> {
    let root = std::env::var_os("ROSTFIX_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/pfroot"));
    if root.join("usr/sbin/postmap").exists() {
        Some(root)
    } else {
        None
    }
}

fn have(ty: &str) -> bool {
    registry::type_names().contains(&ty)
}

/// One run's observable result.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    out: String,
    err: String,
    rc: i32,
}

struct Env {
    dir: PathBuf,
    conf: PathBuf,
    pf_bin: Option<PathBuf>,
    our_bin: PathBuf,
}

fn pick_user(names: &[&str]) -> Option<(String, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    for n in names {
        for l in passwd.lines() {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() > 3 && f[0] == *n {
                return Some((n.to_string(), f[3].parse().ok()?));
            }
        }
    }
    None
}

fn pick_group(names: &[&str], avoid: &[u32]) -> Option<String> {
    let group = fs::read_to_string("/etc/group").ok()?;
    for n in names {
        for l in group.lines() {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() > 2 && f[0] == *n && !avoid.contains(&f[2].parse().unwrap_or(u32::MAX)) {
                return Some(n.to_string());
            }
        }
    }
    None
}

impl Env {
    fn new(tag: &str) -> Env {
        let dir =
            std::env::temp_dir().join(format!("rostfix-postmap-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let conf = dir.join("conf");
        fs::create_dir_all(&conf).unwrap();
        fs::create_dir_all(dir.join("pf")).unwrap();
        fs::create_dir_all(dir.join("our")).unwrap();
        fs::create_dir_all(dir.join("queue")).unwrap();
        let our_bin = dir.join("ourbin");
        fs::create_dir_all(&our_bin).unwrap();
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_rostfix"));
        for p in ["postmap", "postalias", "sendmail", "newaliases"] {
            std::os::unix::fs::symlink(&exe, our_bin.join(p)).unwrap();
        }
        let pf_bin = reference().map(|root| {
            let bin = dir.join("pfbin");
            fs::create_dir_all(&bin).unwrap();
            for (name, target) in [
                ("postmap", "postmap"),
                ("postalias", "postalias"),
                ("sendmail", "sendmail"),
                ("newaliases", "sendmail"),
            ] {
                let script = format!(
                    "#!/bin/bash\nexport LD_LIBRARY_PATH={r}/usr/lib/postfix:{r}/usr/lib/x86_64-linux-gnu:{r}/lib/x86_64-linux-gnu\nexec -a {name} {r}/usr/sbin/{target} \"$@\"\n",
                    r = root.display()
                );
                let p = bin.join(name);
                fs::write(&p, script).unwrap();
                fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
            }
            let mut dm = String::new();
            for (ty, mk) in [("cdb", true), ("lmdb", true), ("pcre", false)] {
                let so = root.join(format!("usr/lib/postfix/postfix-{ty}.so"));
                if so.exists() {
                    dm.push_str(&format!(
                        "{ty} {} dict_{ty}_open{}\n",
                        so.display(),
                        if mk { format!(" mkmap_{ty}_open") } else { String::new() }
                    ));
                }
            }
            fs::write(conf.join("dynamicmaps.cf"), dm).unwrap();
            bin
        });
        let (owner, owner_gid) = pick_user(&["postfix", "mail", "daemon", "bin"]).unwrap();
        let nobody_gid = pick_user(&["nobody"]).map(|u| u.1).unwrap_or(65534);
        let group = pick_group(
            &["postdrop", "adm", "staff", "users"],
            &[owner_gid, nobody_gid],
        )
        .unwrap();
        let main_cf = format!(
            "compatibility_level = 3.6\nmeta_directory = {c}\nmail_owner = {owner}\nsetgid_group = {group}\nqueue_directory = {q}\nmyhostname = host.example.org\nalias_database = lmdb:{q}/aliases\n",
            c = conf.display(),
            q = dir.join("queue").display()
        );
        fs::write(conf.join("main.cf"), main_cf).unwrap();
        // Postfix re-reads a main.cf changed within the last second.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for f in ["main.cf", "dynamicmaps.cf"] {
            if let Ok(fh) = fs::File::options().append(true).open(conf.join(f)) {
                let _ = fh.set_modified(old);
            }
        }
        Env {
            dir,
            conf,
            pf_bin,
            our_bin,
        }
    }

    fn side(&self, pf: bool) -> PathBuf {
        self.dir.join(if pf { "pf" } else { "our" })
    }

    /// Run a program on one side, in that side's directory.
    fn run(&self, pf: bool, prog: &str, args: &[&str], stdin: &[u8]) -> Run {
        let bin = if pf {
            self.pf_bin.as_ref().expect("reference")
        } else {
            &self.our_bin
        };
        let mut cmd = Command::new(bin.join(prog));
        cmd.current_dir(self.side(pf))
            .env_remove("MAIL_CONFIG")
            .env_remove("MAIL_VERBOSE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if prog == "sendmail" || prog == "newaliases" {
            cmd.arg("-C").arg(&self.conf);
        } else {
            cmd.arg("-c").arg(&self.conf);
        }
        cmd.args(args);
        // A script written by a parallel test may still be open in a child
        // that another thread forked (ETXTBSY): try again briefly.
        let mut tries = 0;
        let mut child = loop {
            match cmd.spawn() {
                Ok(c) => break c,
                Err(e) if e.raw_os_error() == Some(26) && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("spawn {prog}: {e}"),
            }
        };
        {
            use std::io::Write;
            let mut si = child.stdin.take().unwrap();
            let _ = si.write_all(stdin);
        }
        let o = child.wait_with_output().unwrap();
        Run {
            out: String::from_utf8_lossy(&o.stdout).into_owned(),
            err: String::from_utf8_lossy(&o.stderr).into_owned(),
            rc: o.status.code().unwrap_or(-1),
        }
    }

    /// Put the same file on both sides.
    fn put(&self, name: &str, data: &[u8]) {
        for pf in [true, false] {
            fs::write(self.side(pf).join(name), data).unwrap();
        }
    }

    /// Run on both sides and require identical stdout, stderr and status.
    fn same(&self, prog: &str, args: &[&str], stdin: &[u8]) -> Run {
        let a = self.run(true, prog, args, stdin);
        let b = self.run(false, prog, args, stdin);
        assert_eq!(a, b, "{prog} {args:?}: Postfix (left) vs rostfix (right)");
        b
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn skip(what: &str) {
    eprintln!("SKIP: {what}");
}

fn with_reference(tag: &str) -> Option<Env> {
    if reference().is_none() {
        skip(&format!(
            "{tag}: no Postfix 3.7.11 reference at $ROSTFIX_REFERENCE or /tmp/pfroot"
        ));
        return None;
    }
    Some(Env::new(tag))
}

/// The shared config corpus: $ROSTFIX_SHARED/corpus/configs, else
/// ../shared beside the repository (or beside its worktree folder).
fn corpus_root() -> PathBuf {
    if let Some(d) = std::env::var_os("ROSTFIX_SHARED") {
        return PathBuf::from(d).join("corpus/configs");
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for up in ["../shared", "../../shared"] {
        let p = repo.join(up).join("corpus/configs");
        if p.is_dir() {
            return p;
        }
    }
    repo.join("../shared/corpus/configs")
}

fn sorted(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(str::to_string).collect();
    v.sort();
    v
}

/// A generated postmap source: upper-case keys, duplicates, continuation
/// lines, comments, blank lines, bad lines, 8-bit text.
fn generated_source(n: usize) -> Vec<u8> {
    let mut s = String::from("# generated\n\n");
    for i in 0..n {
        match i % 11 {
            0 => s.push_str(&format!("User{i}@Example.COM  Target{i}@example.net\n")),
            1 => s.push_str(&format!("key{i} value {i}\n   continued {i}\n")),
            2 => s.push_str(&format!("key{} duplicate of {}\n", i - 1, i - 1)),
            3 => s.push_str(&format!("  # comment {i}\nKEY{} dup upper\n", i - 3)),
            4 => s.push_str(&format!("\"quoted {i}\" v{i}\n")),
            5 => s.push_str(&format!("onlykey{i}\n")),
            6 => s.push_str(&format!("colon{i}: looks like alias\n")),
            7 => s.push_str(&format!("t\u{e4}st{i} \u{fc}mlaut\n")),
            8 => s.push_str(&format!("\"unbalanced{i} x\n")),
            9 => s.push_str(&format!("domain{i}.example OK\n\n\n")),
            _ => s.push_str(&format!("k{i}\tv{i}  \r\n")),
        }
    }
    s.push_str("  lead whitespace line\n");
    let mut b = s.into_bytes();
    b.extend_from_slice(b"bad\xff utf8\n");
    b
}

fn query_keys(n: usize) -> Vec<u8> {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "user{i}@example.com\nUSER{i}@EXAMPLE.COM\nkey{i}\nnope{i}\n\"quoted {i}\"\nt\u{c4}ST{i}\ncolon{i}:\n"
        ));
    }
    s.into_bytes()
}

const ALIASES: &str = r#"# aliases(5) forms
postmaster: root
root: admin@Example.COM, "|/usr/bin/procmail -a $EXT", /var/mail/archive
"Quoted Name": someone
Foo: Bar, "|/bin/x"
  continued: a,
	b
include-list: :include:/etc/mail/list.txt
pipe: |/usr/local/bin/filter arg
escaped: \root, \|notpipe
comment (a comment): x (real name)
MixedCase: Target
dup: first
DUP: second
bad line without colon
a@b: not local
c%d: not local
e, f: multiple names
nothing:
:novalue
empty: ""
domlit: user@[192.168.1.1]
route: <@a,@b:user@c>
group: list: a, b;
  leading-ws: x
angle: Display Name <dn@example.com>
back\slash: x
"#;

#[test]
fn command_line_errors_match_postfix() {
    let Some(env) = with_reference("cli") else {
        return;
    };
    env.put("src", b"k v\n");
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("postmap", &[], &[]),
        ("postmap", &["-x"], &[]),
        ("postmap", &["-q"], &[]),
        ("postmap", &["-q", "x"], &[]),
        ("postmap", &["-s", "-q", "x", "src"], &[]),
        ("postmap", &["-q", "x", "-s", "src"], &[]),
        ("postmap", &["-d", "x", "-q", "y", "src"], &[]),
        ("postmap", &["-b", "src"], &[]),
        ("postmap", &["-q", "x", "hash:"], &[]),
        ("postmap", &["-q", "x", ":src"], &[]),
        ("postmap", &["foo:src"], &[]),
        ("postmap", &["-q", "x", "foo:src"], &[]),
        ("postmap", &["-s", "foo:src"], &[]),
        ("postmap", &["nonexistent"], &[]),
        ("postmap", &["proxy:hash:src"], &[]),
        ("postmap", &["-s", "proxy:hash:src"], &[]),
        ("postmap", &["texthash:src"], &["texthash"]),
        ("postmap", &["regexp:src"], &["regexp"]),
        ("postmap", &["-q", "x", "static:{}"], &["static"]),
        ("postmap", &["-s", "static:foo"], &["static"]),
        ("postmap", &["-q", "x", "inline:{x=}"], &["inline"]),
        ("postmap", &["-s", "inline:{x=,y=z}"], &["inline"]),
        ("postmap", &["fail:src"], &["fail"]),
        ("postmap", &["-q", "x", "fail:src"], &["fail"]),
        ("postmap", &["-s", "fail:src"], &["fail"]),
        ("postmap", &["-d", "x", "fail:src"], &["fail"]),
        ("postmap", &["-d", "x", "texthash:src"], &["texthash"]),
        ("postmap", &["-s", "cdb:src"], &["cdb"]),
        ("postmap", &["-d", "x", "cdb:src"], &["cdb"]),
        ("postmap", &["-d", "x", "lmdb:nonexist"], &["lmdb"]),
        ("postalias", &[], &[]),
        ("postalias", &["-b", "src"], &[]),
        ("postalias", &["-F", "src"], &[]),
        ("postalias", &["-q", "x", "foo:src"], &[]),
        ("postalias", &["-q", "x", "fail:src"], &["fail"]),
        ("postalias", &["-s", "inline:{x=}"], &["inline"]),
    ];
    // Postfix sleeps a second after a fatal error: run the cases in parallel.
    std::thread::scope(|s| {
        for (prog, args, needs) in cases {
            if let Some(t) = needs.iter().find(|t| !have(t)) {
                skip(&format!(
                    "{prog} {args:?}: table type {t} not registered yet"
                ));
                continue;
            }
            let env = &env;
            s.spawn(move || {
                if args.first() == Some(&"-s") && args.len() == 2 {
                    // The walk order of in-memory tables (inline:) is the table
                    // type's business: compare the entries, sorted.
                    let a = env.run(true, prog, args, b"");
                    let b = env.run(false, prog, args, b"");
                    assert_eq!((&a.err, a.rc), (&b.err, b.rc), "{prog} {args:?}");
                    assert_eq!(sorted(&a.out), sorted(&b.out), "{prog} {args:?}");
                } else {
                    env.same(prog, args, b"");
                }
            });
        }
    });
}

#[test]
fn usage_texts_without_reference() {
    // Recorded from Postfix 3.7.11; runs without the reference.
    let env = Env::new("usage");
    let r = env.run(false, "postmap", &["-x"], b"");
    assert_eq!(
        r.err,
        "postmap: invalid option -- 'x'\npostmap: fatal: usage: postmap [-bfFhimnNoprsuUvw] [-c config_dir] [-d key] [-q key] [map_type:]file...\n"
    );
    assert_eq!(r.rc, 1);
    let r = env.run(false, "postalias", &["-q", "x", "foo:bar"], b"");
    assert_eq!(
        r.err,
        "postalias: fatal: unsupported dictionary type: foo\n"
    );
    let r = env.run(false, "postmap", &["-m", "-q", "k", "x"], b"");
    assert_eq!(
        r.err,
        "postmap: fatal: specify -b -h or -m only with \"-q -\"\n"
    );
    let r = env.run(false, "sendmail", &["-bi", "rcpt"], b"");
    assert_eq!(
        (r.err.as_str(), r.rc),
        (
            "sendmail: fatal: alias initialization mode requires no recipient\n",
            75
        )
    );
}

/// Build with both, then compare build messages, `-s` output (sorted) of
/// both files by both programs, and `-q -` answers.
fn build_compare(
    env: &Env,
    prog: &str,
    ty: &str,
    name: &str,
    data: &[u8],
    keys: &[u8],
    flags: &[&str],
) {
    env.put(name, data);
    let spec = format!("{ty}:{name}");
    let mut args: Vec<&str> = flags.to_vec();
    args.push(&spec);
    env.same(prog, &args, b"");
    let other = |pf: bool| env.side(!pf).join(name);
    let cross_spec_our = format!("{ty}:{}", other(false).display());
    if ty == "cdb" {
        // cdb has no walk (see the command-line test for -s): compare the
        // files through lookups only.
        for q in [&["-q", "-"][..], &["-fq", "-"][..]] {
            let mut a: Vec<&str> = q.to_vec();
            a.push(&spec);
            env.same(prog, &a, keys);
            let pf_on_pf = env.run(true, prog, &a, keys);
            let mut a: Vec<&str> = q.to_vec();
            a.push(&cross_spec_our);
            assert_eq!(
                env.run(false, prog, &a, keys),
                pf_on_pf,
                "ours querying Postfix's {spec}"
            );
        }
        return;
    }
    let seq_pf = env.run(true, prog, &["-s", &spec], b"");
    let seq_our = env.run(false, prog, &["-s", &spec], b"");
    assert_eq!(seq_pf.rc, 0, "{}", seq_pf.err);
    // Cross-read: each program reads the file the other one wrote.
    let cross_spec_pf = format!("{ty}:{}", other(true).display());
    let cross_pf = env.run(true, prog, &["-s", &cross_spec_pf], b"");
    let cross_our = env.run(false, prog, &["-s", &cross_spec_our], b"");
    let want = sorted(&seq_pf.out);
    // YP_LAST_MODIFIED differs by the second the files were built.
    let strip = |v: Vec<String>| -> Vec<String> {
        v.into_iter()
            .filter(|l| !l.starts_with("YP_LAST_MODIFIED"))
            .collect()
    };
    assert_eq!(
        strip(sorted(&seq_our.out)),
        strip(want.clone()),
        "{prog} -s {spec}: ours"
    );
    assert_eq!(
        strip(sorted(&cross_pf.out)),
        strip(want.clone()),
        "Postfix reading our {spec}"
    );
    assert_eq!(
        strip(sorted(&cross_our.out)),
        strip(want),
        "ours reading Postfix's {spec}"
    );
    assert_eq!(seq_our.err, seq_pf.err);
    for q in [&["-q", "-"][..], &["-fq", "-"][..]] {
        let mut a: Vec<&str> = q.to_vec();
        a.push(&spec);
        env.same(prog, &a, keys);
        let mut a: Vec<&str> = q.to_vec();
        a.push(&cross_spec_our);
        let ours_on_pf = env.run(false, prog, &a, keys);
        let mut a: Vec<&str> = q.to_vec();
        a.push(&spec);
        let pf_on_pf = env.run(true, prog, &a, keys);
        assert_eq!(ours_on_pf, pf_on_pf, "ours querying Postfix's {spec}");
    }
}

const FIXED_TYPES: &[&str] = &["hash", "btree", "lmdb", "cdb"];

#[test]
fn postmap_builds_generated_tables_like_postfix() {
    let Some(env) = with_reference("gen") else {
        return;
    };
    let src = generated_source(200);
    let keys = query_keys(200);
    let mut flags_done = false;
    for ty in FIXED_TYPES {
        if !have(ty) {
            skip(&format!("postmap {ty}: table type not registered yet"));
            continue;
        }
        build_compare(&env, "postmap", ty, &format!("gen-{ty}"), &src, &keys, &[]);
        // The flag variants on one type only, to keep the test short.
        if !flags_done {
            flags_done = true;
            for flags in [&["-f"][..], &["-w"], &["-r"], &["-N"], &["-n"], &["-u"]] {
                build_compare(
                    &env,
                    "postmap",
                    ty,
                    &format!("gen-{ty}"),
                    &src,
                    &keys,
                    flags,
                );
            }
        }
        // Single-key queries, several maps, exit status.
        for q in ["user0@example.com", "KEY1", "nope"] {
            let spec = format!("{ty}:gen-{ty}");
            env.same("postmap", &["-q", q, &spec], b"");
            if have("inline") {
                env.same("postmap", &["-q", q, "inline:{nope=inl}", &spec], b"");
            }
        }
    }
}

#[test]
fn postmap_corpus_tables_like_postfix() {
    let Some(env) = with_reference("corpus") else {
        return;
    };
    let root = corpus_root();
    let Ok(dirs) = fs::read_dir(&root) else {
        skip("corpus: ../shared/corpus/configs not found");
        return;
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for d in dirs.flatten() {
        for name in [
            "virtual",
            "transport",
            "dspam_filter_access",
            "local_recipient",
        ] {
            let p = d.path().join(name);
            if p.exists() {
                files.push(p);
            }
        }
    }
    assert!(!files.is_empty());
    for ty in FIXED_TYPES {
        if !have(ty) {
            skip(&format!("corpus {ty}: table type not registered yet"));
            continue;
        }
        for f in &files {
            let data = fs::read(f).unwrap();
            let mut keys = Vec::new();
            for l in String::from_utf8_lossy(&data).lines() {
                if let Some(k) = l.split_whitespace().next()
                    && !l.starts_with([' ', '\t', '#'])
                {
                    keys.extend_from_slice(k.as_bytes());
                    keys.push(b'\n');
                    keys.extend_from_slice(k.to_uppercase().as_bytes());
                    keys.push(b'\n');
                }
            }
            keys.extend_from_slice(b"no-such-key\n");
            build_compare(
                &env,
                "postmap",
                ty,
                &format!("corpus-{ty}"),
                &data,
                &keys,
                &[],
            );
        }
    }
}

#[test]
fn postmap_incremental_delete_and_files_like_postfix() {
    let Some(env) = with_reference("incr") else {
        return;
    };
    env.put("f1", b"file one\n");
    env.put("f2", b"two\0x\n");
    for ty in ["hash", "btree", "lmdb"] {
        if !have(ty) {
            skip(&format!(
                "postmap -i/-d {ty}: table type not registered yet"
            ));
            continue;
        }
        let spec = format!("{ty}:t-{ty}");
        env.put(&format!("t-{ty}"), b"a 1\nb 2\nc 3\n");
        env.same("postmap", &[&spec], b"");
        env.same("postmap", &["-i", &spec], b"d 4\na again\nbad\n");
        env.same("postmap", &["-ri", &spec], b"a replaced\n");
        env.same("postmap", &["-d", "b", &spec], b"");
        env.same("postmap", &["-d", "b", &spec], b"");
        env.same("postmap", &["-d", "-", &spec], b"c\nzz\n");
        let a = env.run(true, "postmap", &["-s", &spec], b"");
        let b = env.run(false, "postmap", &["-s", &spec], b"");
        assert_eq!(sorted(&a.out), sorted(&b.out));
        // -F: values are base64 of the named files.
        env.put(
            &format!("fsrc-{ty}"),
            b"k1 f1\nk2 f1, f2\nk3 missing\nk4 ,\n",
        );
        let fspec = format!("{ty}:fsrc-{ty}");
        env.same("postmap", &["-F", &fspec], b"");
        env.same("postmap", &["-Fq", "k2", &fspec], b"");
        env.same("postmap", &["-Fq", "-", &fspec], b"k1\nk2\nzz\n");
        let a = env.run(true, "postmap", &["-Fs", &fspec], b"");
        let b = env.run(false, "postmap", &["-Fs", &fspec], b"");
        assert_eq!(sorted(&a.out), sorted(&b.out));
    }
}

#[test]
fn postmap_keeps_source_permissions_like_postfix() {
    let Some(env) = with_reference("perm") else {
        return;
    };
    for ty in ["hash", "lmdb", "cdb"] {
        if !have(ty) {
            skip(&format!("permissions {ty}: table type not registered yet"));
            continue;
        }
        for (flag, mode) in [(None, 0o640), (Some("-p"), 0o640), (None, 0o600)] {
            env.put("p", b"k v\n");
            for pf in [true, false] {
                fs::set_permissions(env.side(pf).join("p"), fs::Permissions::from_mode(mode))
                    .unwrap();
                let suffix = ["db", "lmdb", "cdb"];
                for s in suffix {
                    let _ = fs::remove_file(env.side(pf).join(format!("p.{s}")));
                }
            }
            let spec = format!("{ty}:p");
            let mut args = Vec::new();
            if let Some(f) = flag {
                args.push(f);
            }
            args.push(&spec);
            env.same("postmap", &args, b"");
            let ext = if ty == "hash" { "db" } else { ty };
            let m = |pf: bool| {
                fs::metadata(env.side(pf).join(format!("p.{ext}")))
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o777
            };
            assert_eq!(m(false), m(true), "{ty} {flag:?} mode {mode:o}");
        }
    }
}

/// More aliases(5) forms: separators, quoting, comments, CR LF, UTF-8 and
/// long names, a value over a page.
fn aliases_more() -> Vec<u8> {
    let mut s = b"# more forms\n\
spaced : before colon\n\
\"a:b\": colon in quotes\n\
\"x\\\"y\": escaped quote\n\
qcomma: \"quoted, comma\", other\n\
cmdq: |\"/usr/bin/cmd with spaces\"\n\
hashmid: value # not a comment\n\
tabsep:\tvalue-after-tab\n\
nospace:value\n\
trailing: a, b,\n\
owner-list: admin\n\
list: :include:/etc/mail/list.txt, \"|/x y\"\n\
\n\
# comment then continuation\n\
  after-comment: x\n\
withcrlf: crlf\r\n\
J\xc3\xb6rg: utf8\n\
UPPER@LOCAL: x\n\
emptyq: \"\"\n\
parens: x (Full (nested) Name)\n\
angle2: <a@b>, \"Name\" <c@d>\n\
dq: \"a b\"@example.com\n\
backtail: x\\\n\
continued:\n  a,\n  b\n\
\tstarts-with-tab: x\n\
slashname/x: y\n"
        .to_vec();
    s.extend_from_slice(b"longv: ");
    let users: Vec<String> = (0..400).map(|i| format!("user{i}@example.com")).collect();
    s.extend_from_slice(users.join(", ").as_bytes());
    s.push(b'\n');
    s
}

#[test]
fn postalias_aliases_file_like_postfix() {
    let Some(env) = with_reference("alias") else {
        return;
    };
    let mut src = ALIASES.as_bytes().to_vec();
    src.extend_from_slice(b"badutf8: \xff\n");
    src.extend_from_slice(&aliases_more());
    let keys = b"root\nROOT\nquoted name\nfoo\n@\nYP_MASTER_NAME\nyp_master_name\nnope\nescaped\n\
spaced\na:b\n\"a:b\"\nx\"y\nqcomma\ncmdq\nhashmid\ntabsep\nnospace\ntrailing\nlist\n\
after-comment\nwithcrlf\nj\xc3\xb6rg\nJ\xc3\x96RG\nupper@local\nlongv\nemptyq\nparens\nangle2\ndq\n\
backtail\ncontinued\nstarts-with-tab\nslashname/x\n";
    for ty in FIXED_TYPES {
        if !have(ty) {
            skip(&format!("postalias {ty}: table type not registered yet"));
            continue;
        }
        build_compare(
            &env,
            "postalias",
            ty,
            &format!("aliases-{ty}"),
            &src,
            keys,
            &[],
        );
        for q in ["root", "pipe", "@", "YP_MASTER_NAME", "nope"] {
            env.same("postalias", &["-q", q, &format!("{ty}:aliases-{ty}")], b"");
        }
    }
}

#[test]
fn header_body_queries_like_postfix() {
    let Some(env) = with_reference("mime") else {
        return;
    };
    let msg = b"From: a@example.com\nSubject : Hello\n World\nContent-Type: multipart/mixed; boundary=\"BB\"\nX-Spam: yes\n\npreamble\n--BB\nContent-Type: message/rfc822\n\nSubject: nested\nFrom: n@x\n\nnested body\n--BB\nContent-Type: text/plain\n\npart body with VIAGRA\n--BB--\nepilogue\n";
    let root = corpus_root();
    let mut tables: Vec<(String, Vec<u8>)> = vec![(
        "regexp".into(),
        b"/^Subject:.*Hello/ REJECT hello\n/^From:/ WARN from\n/^Content-Type:/ INFO ct\n/viagra/ DISCARD\n/^--BB/ INFO boundary\n/^$/ INFO empty\n".to_vec(),
    )];
    for f in [
        "06-hardware-mailserver/header_checks",
        "08-grapheneos/submission_header_checks",
    ] {
        if let Ok(d) = fs::read(root.join(f)) {
            tables.push(("regexp".into(), d));
        }
    }
    if let Ok(d) = fs::read(root.join("01-docker-mailserver/sender_header_filter.pcre")) {
        tables.push(("pcre".into(), d));
    }
    for (i, (ty, data)) in tables.iter().enumerate() {
        if !have(ty) {
            skip(&format!(
                "header/body queries: table type {ty} not registered yet"
            ));
            continue;
        }
        let name = format!("checks{i}");
        env.put(&name, data);
        let spec = format!("{ty}:{name}");
        for o in ["-h", "-b", "-hb", "-hm", "-bm", "-hbm", "-m", "-hU"] {
            env.same("postmap", &[o, "-q", "-", &spec], msg);
        }
    }
}

#[test]
fn newaliases_runs_postalias_like_postfix() {
    let Some(env) = with_reference("newaliases") else {
        return;
    };
    if !have("lmdb") {
        skip("newaliases: table type lmdb not registered yet");
        return;
    }
    // Each side's sendmail runs the postalias of its own command_directory.
    let q = env.dir.join("queue");
    for (pf, args) in [
        (true, &["-bi"][..]),
        (false, &["-bi"][..]),
        (true, &["-I"][..]),
        (false, &["-I"][..]),
    ] {
        fs::write(q.join("aliases"), ALIASES).unwrap();
        let _ = fs::remove_file(q.join("aliases.lmdb"));
        let bin = if pf {
            env.pf_bin.clone().unwrap()
        } else {
            env.our_bin.clone()
        };
        let main = fs::read_to_string(env.conf.join("main.cf")).unwrap();
        let main: String = main
            .lines()
            .filter(|l| !l.starts_with("command_directory"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            + &format!("command_directory = {}\n", bin.display());
        fs::write(env.conf.join("main.cf"), main).unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        fs::File::options()
            .append(true)
            .open(env.conf.join("main.cf"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let r = env.run(pf, "sendmail", args, b"");
        assert_eq!(r.rc, 0, "{}", r.err);
        assert!(r.err.contains("need name:value pair"), "{}", r.err);
        let s = env.run(
            true,
            "postalias",
            &["-q", "root", &format!("lmdb:{}/aliases", q.display())],
            b"",
        );
        assert_eq!(
            s.out,
            "admin@Example.COM, \"|/usr/bin/procmail -a $EXT\", /var/mail/archive\n"
        );
    }
}
