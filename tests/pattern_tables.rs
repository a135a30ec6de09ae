//! `regexp:`, `pcre:` and `cidr:` tables against Postfix 3.7.11.
//!
//! Each case is a table (a file under tests/pattern/, a table from the shared
//! config corpus, or an inline `{...}` name) and a list of keys. The test
//! replays what `postmap -q - TYPE:NAME` does with those keys (keys holding a
//! newline, like multi-line headers, as separate `postmap -q KEY TYPE:NAME`
//! runs) through our Dict API, and compares the transcript (stdout, the
//! warnings on stderr, the exit status) with:
//! - the golden file tests/pattern/golden/CASE.txt, always;
//! - the real Postfix postmap, when the reference tree is present
//!   ($ROSTFIX_REFERENCE, else /tmp/pfroot; see compat/reference.sh).
//!   Without it the live comparison is skipped with a notice.
//!
//! Re-record the golden files from the reference with
//! `ROSTFIX_RECORD_GOLDEN=1 cargo test --test pattern_tables`.
//!
//! Postmap-level warnings about empty results ("empty string result is not
//! allowed") belong to postmap, not to the tables, and are left out of both
//! sides' transcripts.

use rostfix::global::dict::cidr::CidrDict;
use rostfix::global::dict::pattern_util::Diag;
use rostfix::global::dict::pcre::PcreDict;
use rostfix::global::dict::regexp::RegexpDict;
use rostfix::global::dict::{Dict, OpenError, OpenMode, flags};
use rostfix::global::msg::printable;
use rostfix::util::latin1;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The flags `postmap -q` opens tables with.
const POSTMAP_FLAGS: u32 = flags::DUP_WARN | flags::FOLD_FIX | flags::UTF8_REQUEST | flags::LOCK;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------- text helpers

/// Keys files: one key per line, with `\n`, `\t`, `\r`, `\\`, `\0` and `\xHH`.
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 1 < s.len() {
            i += 1;
            match s[i] {
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'r' => out.push(b'\r'),
                b'0' => out.push(0),
                b'\\' => out.push(b'\\'),
                b'x' if i + 2 < s.len() => {
                    let h = std::str::from_utf8(&s[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(h, 16).unwrap());
                    i += 2;
                }
                c => {
                    out.push(b'\\');
                    out.push(c);
                }
            }
        } else {
            out.push(s[i]);
        }
        i += 1;
    }
    out
}

/// Transcript lines are ASCII: escape everything else.
fn escape(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s
}

fn cstr(b: &[u8]) -> &[u8] {
    &b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())]
}

// ---------------------------------------------------------------- cases

struct Case {
    /// Golden file name (without .txt).
    id: String,
    ty: &'static str,
    /// Table name as given after `type:` (relative to the package root).
    name: String,
    keys: Vec<Vec<u8>>,
    /// Extra DICT_FLAG bits (postmap -F).
    extra_flags: u32,
}

fn keys_file(rel: &str) -> Vec<Vec<u8>> {
    let data = std::fs::read(manifest_dir().join(rel)).unwrap();
    let mut v: Vec<Vec<u8>> = data.split(|&c| c == b'\n').map(unescape).collect();
    if data.ends_with(b"\n") {
        v.pop();
    }
    v
}

fn keys(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|k| unescape(k.as_bytes())).collect()
}

/// Header lines as header_checks and friends see them (multi-line ones too).
fn header_keys() -> Vec<Vec<u8>> {
    let mut k = keys(&[
        "Received: from client.example.com (client.example.com [192.0.2.1])\\n\\tby mx.example.org (Postfix) with ESMTPSA id ABC123\\n\\tfor <user@example.org>; Mon, 1 Jan 2024 00:00:00 +0000",
        "Received: from localhost (localhost [127.0.0.1])\\n\\tby mx.example.org (amavisd-new, port 10024)",
        "received: from x by y with ESMTPSA",
        "Received: from [127.0.0.1] by x",
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64)",
        "user-agent: lower",
        "X-Mailer: Foo 1.0",
        "X-Originating-IP: [192.0.2.1]",
        "Mime-Version: 1.0 (Mac OS X Mail 8.1 \\\\(2010.6\\\\))",
        "MIME-Version: 1.0",
        "Message-Id: <abc@example.com>",
        "Message-ID: <ABC@EXAMPLE.COM>",
        "X-Enigmail: v1.0",
        "X-Pgp-Agent: x",
        "X-MS-Reactions: allow",
        "Subject: hello",
        "  X-Mailer: indented",
        "",
        "x",
    ]);
    // A long folded header: 40 lines of 1000 bytes.
    let mut long = b"Received: from big".to_vec();
    for i in 0..40 {
        long.extend_from_slice(b"\n\t");
        long.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, 1000));
    }
    k.push(long);
    k
}

fn shared_dir() -> Option<PathBuf> {
    let mut c = Vec::new();
    if let Some(s) = std::env::var_os("ROSTFIX_SHARED") {
        c.push(PathBuf::from(s));
    }
    c.push(manifest_dir().join("../shared"));
    c.push(PathBuf::from("/work/shared"));
    c.into_iter().find(|p| p.join("corpus/configs").is_dir())
}

fn own_cases() -> Vec<Case> {
    let mut v = Vec::new();
    let mut add = |id: &str, ty: &'static str, name: &str, keys: Vec<Vec<u8>>, extra_flags: u32| {
        v.push(Case {
            id: id.to_string(),
            ty,
            name: name.to_string(),
            keys,
            extra_flags,
        });
    };
    add(
        "features.regexp",
        "regexp",
        "tests/pattern/features.regexp",
        keys_file("tests/pattern/features.keys"),
        0,
    );
    add(
        "features.pcre",
        "pcre",
        "tests/pattern/features.pcre",
        keys_file("tests/pattern/features.pcre.keys"),
        0,
    );
    add(
        "features.cidr",
        "cidr",
        "tests/pattern/features.cidr",
        keys_file("tests/pattern/features.cidr.keys"),
        0,
    );
    let err_keys = keys(&["a", "b", "x", "", "abc\\0def", "ok"]);
    add(
        "errors.regexp",
        "regexp",
        "tests/pattern/errors.regexp",
        err_keys.clone(),
        0,
    );
    add(
        "errors.pcre",
        "pcre",
        "tests/pattern/errors.pcre",
        err_keys,
        0,
    );
    add(
        "errors.cidr",
        "cidr",
        "tests/pattern/errors.cidr",
        keys(&["192.0.2.5", "192.0.2.10", "192.0.2.7", "10.0.0.1", "::1"]),
        0,
    );
    add(
        "lookup_errors.pcre",
        "pcre",
        "tests/pattern/lookup_errors.pcre",
        keys(&[
            "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb!",
            "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbd",
            "x",
            "caf\\xe9",
            "cafe",
            "x\\xc3\\xa9",
            "\\xc3\\xa9t\\xc3\\xa9",
            "bb",
        ]),
        0,
    );
    add(
        "more.regexp",
        "regexp",
        "tests/pattern/more.regexp",
        keys_file("tests/pattern/more.keys"),
        0,
    );
    // The feature tables read by the other engine: same syntax, other rules.
    add(
        "features.regexp-as-pcre",
        "pcre",
        "tests/pattern/features.regexp",
        keys_file("tests/pattern/features.keys"),
        0,
    );
    add(
        "features.pcre-as-regexp",
        "regexp",
        "tests/pattern/features.pcre",
        keys_file("tests/pattern/features.pcre.keys"),
        0,
    );
    // Line layout: leading whitespace, CR LF, NUL bytes, continuation
    // around comments, trailing blanks, 8-bit bytes, no final newline.
    for ty in ["regexp", "pcre"] {
        add(
            &format!("layout.{ty}"),
            ty,
            &format!("tests/pattern/layout.{ty}"),
            keys_file("tests/pattern/layout.keys"),
            0,
        );
    }
    add(
        "layout.cidr",
        "cidr",
        "tests/pattern/layout.cidr",
        keys(&["1.2.3.4", "1.2.3.5", "1.2.3.6", "1.2.3.7", "1.2.3.8"]),
        0,
    );
    // Inline tables and their errors; a missing file; a directory.
    let ik = keys(&["a", "c", "x"]);
    add(
        "inline.regexp",
        "regexp",
        "{{/a/ b}, { /c/ d },{/(x)/ x=$1}}",
        ik.clone(),
        0,
    );
    add(
        "inline.pcre",
        "pcre",
        "{{/a/ b}, { /c/ d },{/(x)/ x=$1}}",
        ik.clone(),
        0,
    );
    add("inline-nobrace.regexp", "regexp", "{/a/ b}", ik.clone(), 0);
    add("inline-garbage.pcre", "pcre", "{{/a/ b}x}", ik.clone(), 0);
    add(
        "inline-unbalanced.cidr",
        "cidr",
        "{{1.2.3.4 x}",
        ik.clone(),
        0,
    );
    add(
        "inline.cidr",
        "cidr",
        "{{1.2.3.4 one}, {!1.2.3.0/24 other}, {1.2.3.0/24 same net}}",
        keys(&["1.2.3.4", "1.2.3.5", "1.2.4.5"]),
        0,
    );
    add(
        "missing.regexp",
        "regexp",
        "tests/pattern/no-such-file",
        ik.clone(),
        0,
    );
    add(
        "missing.pcre",
        "pcre",
        "tests/pattern/no-such-file",
        ik.clone(),
        0,
    );
    add(
        "missing.cidr",
        "cidr",
        "tests/pattern/no-such-file",
        ik.clone(),
        0,
    );
    add("directory.regexp", "regexp", "tests/pattern", ik.clone(), 0);
    add(
        "directory.cidr",
        "cidr",
        "tests/pattern",
        keys(&["1.2.3.4"]),
        0,
    );
    // postmap -F: results are the base64 of the named files.
    add(
        "rhs-file.regexp",
        "regexp",
        "tests/pattern/rhs-file.regexp",
        keys(&["a", "b", "c", "d"]),
        flags::SRC_RHS_IS_FILE,
    );
    add(
        "rhs-file.pcre",
        "pcre",
        "tests/pattern/rhs-file.regexp",
        keys(&["a", "b", "c", "d"]),
        flags::SRC_RHS_IS_FILE,
    );
    add(
        "rhs-file.cidr",
        "cidr",
        "tests/pattern/rhs-file.cidr",
        keys(&["1.2.3.4", "1.2.3.5"]),
        flags::SRC_RHS_IS_FILE,
    );
    v
}

/// The regexp/pcre tables of the shared config corpus, each read as both
/// types, queried with header lines.
fn corpus_cases(shared: &Path) -> Vec<Case> {
    let files = [
        "01-docker-mailserver/sender_header_filter.pcre",
        "04-mailu/outclean_header_filter.cf",
        "06-hardware-mailserver/header_checks",
        "08-grapheneos/submission_header_checks",
        "09-grapheneos-2022-stock-comments/submission_header_checks",
        "20-sovereign-dspam-opendkim/smtp_header_checks.pcre",
        "20-sovereign-dspam-opendkim/dspam_filter_access",
    ];
    let mut v = Vec::new();
    for f in files {
        let path = shared.join("corpus/configs").join(f);
        if !path.is_file() {
            continue;
        }
        for ty in ["regexp", "pcre"] {
            v.push(Case {
                id: format!("corpus-{}.{ty}", f.replace('/', "-")),
                ty,
                name: path.to_string_lossy().into_owned(),
                keys: header_keys(),
                extra_flags: 0,
            });
        }
    }
    v
}

// ---------------------------------------------------------------- our side

enum Opened {
    Regexp(RegexpDict),
    Pcre(PcreDict),
    Cidr(CidrDict),
}

impl Opened {
    fn open(ty: &str, name: &str, fl: u32) -> Result<Opened, OpenError> {
        let m = OpenMode::ReadOnly;
        Ok(match ty {
            "regexp" => Opened::Regexp(RegexpDict::open(name, m, fl, Diag::collect())?),
            "pcre" => Opened::Pcre(PcreDict::open(name, m, fl, Diag::collect())?),
            "cidr" => Opened::Cidr(CidrDict::open(name, m, fl, Diag::collect())?),
            _ => unreachable!(),
        })
    }

    fn take_warnings(&mut self) -> Vec<String> {
        match self {
            Opened::Regexp(d) => d.take_warnings(),
            Opened::Pcre(d) => d.take_warnings(),
            Opened::Cidr(d) => d.take_warnings(),
        }
    }

    fn lookup(&mut self, key: &str) -> Option<String> {
        let r = match self {
            Opened::Regexp(d) => d.lookup(key),
            Opened::Pcre(d) => d.lookup(key),
            Opened::Cidr(d) => d.lookup(key),
        };
        r.expect("pattern tables have no lookup errors")
    }
}

/// A run of postmap: exit status, stdout bytes, stderr lines.
#[derive(Debug, PartialEq, Eq, Default)]
struct Run {
    rc: i32,
    out: Vec<u8>,
    err: Vec<String>,
}

/// `postmap -F` prints the decoded value; our tables return the base64.
fn b64_decode(s: &[u8]) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => 0,
        }
    };
    let mut out = Vec::new();
    for ch in s.chunks(4) {
        let n = ch.iter().take_while(|&&c| c != b'=').count();
        let v = ch.iter().take(n).fold(0u32, |a, &c| (a << 6) | val(c)) << (6 * (4 - n as u32));
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        out.extend_from_slice(&bytes[..n.saturating_sub(1)]);
    }
    out
}

/// Our answer to `postmap -q - TYPE:NAME` (batch) or `postmap -q KEY`.
fn ours(case: &Case, keys: &[Vec<u8>], batch: bool) -> Run {
    let mut run = Run {
        rc: 1,
        ..Run::default()
    };
    let fl = POSTMAP_FLAGS | case.extra_flags;
    let mut dict = match Opened::open(case.ty, &case.name, fl) {
        Ok(d) => d,
        Err(e) => {
            run.err
                .push(format!("postmap: fatal: {}", printable(&e.0, false)));
            return run;
        }
    };
    let warn = |run: &mut Run, w: Vec<String>| {
        run.err.extend(
            w.into_iter()
                .map(|w| format!("postmap: warning: {}", printable(&w, false))),
        );
    };
    let w = dict.take_warnings();
    warn(&mut run, w);
    for k in keys {
        let key = latin1::decode(cstr(k));
        let v = dict.lookup(&key);
        let w = dict.take_warnings();
        warn(&mut run, w);
        if let Some(v) = v {
            let mut v = latin1::encode(&v);
            if case.extra_flags & flags::SRC_RHS_IS_FILE != 0 {
                v = b64_decode(&v);
            }
            if batch {
                run.out.extend_from_slice(cstr(k));
                run.out.push(b'\t');
            }
            run.out.extend_from_slice(cstr(&v));
            run.out.push(b'\n');
            run.rc = 0;
            if !batch {
                break;
            }
        }
    }
    run
}

// ---------------------------------------------------------------- Postfix side

struct Reference {
    postmap: PathBuf,
    libpath: String,
    conf: tempdir::Dir,
}

mod tempdir {
    use std::path::{Path, PathBuf};

    /// A directory removed on drop.
    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(tag: &str) -> Dir {
            let p = std::env::temp_dir().join(format!(
                "rostfix-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// An unprivileged user and a group of another gid, for the scratch main.cf
/// (postmap insists on a sane mail_owner and setgid_group).
fn owner_and_group() -> Option<(String, String)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let group = std::fs::read_to_string("/etc/group").ok()?;
    let users: Vec<(String, u32, u32)> = passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((
                f.first()?.to_string(),
                f.get(2)?.parse().ok()?,
                f.get(3)?.parse().ok()?,
            ))
        })
        .collect();
    let nobody_gid = users
        .iter()
        .find(|u| u.0 == "nobody")
        .map(|u| u.2)
        .unwrap_or(65534);
    let (user, _, ugid) = users
        .iter()
        .find(|u| u.1 > 0 && u.1 < 65534 && u.0 != "nobody" && u.2 != nobody_gid)?
        .clone();
    let g = group.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        let gid: u32 = f.get(2)?.parse().ok()?;
        (gid > 0 && gid != ugid && gid != nobody_gid && gid < 65534).then(|| f[0].to_string())
    })?;
    Some((user, g))
}

fn reference() -> Option<Reference> {
    let root = std::env::var_os("ROSTFIX_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/pfroot"));
    let postmap = root.join("usr/sbin/postmap");
    if !postmap.is_file() {
        return None;
    }
    let (user, group) = owner_and_group()?;
    let conf = tempdir::Dir::new("pattern-ref");
    let c = conf.path();
    std::fs::write(
        c.join("main.cf"),
        format!(
            "meta_directory = {}\nmail_owner = {user}\nsetgid_group = {group}\n",
            c.display()
        ),
    )
    .unwrap();
    std::fs::write(
        c.join("dynamicmaps.cf"),
        format!(
            "pcre {} dict_pcre_open\n",
            root.join("usr/lib/postfix/postfix-pcre.so").display()
        ),
    )
    .unwrap();
    // Postfix re-reads a main.cf changed within the last second.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for f in ["main.cf", "dynamicmaps.cf"] {
        std::fs::File::options()
            .write(true)
            .open(c.join(f))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let libpath = format!(
        "{}:{}:{}",
        root.join("usr/lib/postfix").display(),
        root.join("usr/lib/x86_64-linux-gnu").display(),
        root.join("lib/x86_64-linux-gnu").display()
    );
    Some(Reference {
        postmap,
        libpath,
        conf,
    })
}

impl Reference {
    fn run(&self, case: &Case, args: &[&[u8]], stdin: &[u8]) -> Run {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(&self.postmap);
        cmd.arg0("postmap")
            .env("LD_LIBRARY_PATH", &self.libpath)
            .env("NORANDOMIZE", "1")
            .current_dir(manifest_dir())
            .arg("-c")
            .arg(self.conf.path());
        if case.extra_flags & flags::SRC_RHS_IS_FILE != 0 {
            cmd.arg("-F");
        }
        for a in args {
            cmd.arg(std::ffi::OsStr::from_bytes(a));
        }
        let spec = format!("{}:{}", case.ty, case.name);
        cmd.arg(std::ffi::OsStr::from_bytes(&latin1::encode(&spec)));
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the reference postmap");
        let mut input = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        let err = out
            .stderr
            .split(|&c| c == b'\n')
            .filter(|l| !l.is_empty())
            .map(latin1::decode)
            .filter(|l| {
                !l.contains("empty string result is not allowed")
                    && !l.contains("should return NO RESULT in case of NOT FOUND")
            })
            .collect();
        Run {
            rc: out.status.code().unwrap_or(-1),
            out: out.stdout,
            err,
        }
    }

    fn batch(&self, case: &Case, keys: &[Vec<u8>]) -> Run {
        let mut input = Vec::new();
        for k in keys {
            input.extend_from_slice(k);
            input.push(b'\n');
        }
        self.run(case, &[b"-q", b"-"], &input)
    }

    fn single(&self, case: &Case, key: &[u8]) -> Run {
        self.run(case, &[b"-q", key], b"")
    }
}

// ---------------------------------------------------------------- transcripts

fn transcript(case: &Case, mut run_one: impl FnMut(&[Vec<u8>], bool) -> Run) -> String {
    let (multi, batch): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
        case.keys.iter().cloned().partition(|k| k.contains(&b'\n'));
    let mut t = String::new();
    let mut section = |title: String, r: Run| {
        t.push_str(&format!("== {title}\nrc {}\n", r.rc));
        for l in r.out.split(|&c| c == b'\n') {
            t.push_str(&format!("out {}\n", escape(l)));
        }
        for e in r.err {
            t.push_str(&format!("err {}\n", escape(&latin1::encode(&e))));
        }
    };
    if !batch.is_empty() {
        section("postmap -q -".into(), run_one(&batch, true));
    }
    for k in &multi {
        let shown = if k.len() > 80 {
            format!("{}... ({} bytes)", escape(&k[..80]), k.len())
        } else {
            escape(k)
        };
        section(
            format!("postmap -q {shown}"),
            run_one(std::slice::from_ref(k), false),
        );
    }
    // Table names differ between machines (the corpus location).
    t.replace(&escape(case.name.as_bytes()), "$TABLE")
}

fn golden_path(case: &Case) -> PathBuf {
    manifest_dir()
        .join("tests/pattern/golden")
        .join(format!("{}.txt", case.id))
}

fn check(cases: &[Case], reference: Option<&Reference>) {
    let record = std::env::var_os("ROSTFIX_RECORD_GOLDEN").is_some();
    // Postfix sleeps a second before a fatal exit: run the cases side by side.
    let theirs: Vec<Option<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|case| {
                s.spawn(move || {
                    reference.map(|r| {
                        transcript(case, |keys, batch| {
                            if batch {
                                r.batch(case, keys)
                            } else {
                                r.single(case, &keys[0])
                            }
                        })
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut failures = Vec::new();
    for (case, theirs) in cases.iter().zip(theirs) {
        let mine = transcript(case, |keys, batch| ours(case, keys, batch));
        if let Some(theirs) = theirs {
            if record {
                std::fs::create_dir_all(golden_path(case).parent().unwrap()).unwrap();
                std::fs::write(golden_path(case), &theirs).unwrap();
            }
            if theirs != mine {
                failures.push(format!(
                    "{}: differs from Postfix\n--- postfix\n{theirs}--- ours\n{mine}",
                    case.id
                ));
            }
        } else if record {
            panic!("ROSTFIX_RECORD_GOLDEN needs the Postfix reference");
        }
        match std::fs::read_to_string(golden_path(case)) {
            Ok(g) if g == mine => {}
            Ok(g) => failures.push(format!(
                "{}: differs from golden file\n--- golden\n{g}--- ours\n{mine}",
                case.id
            )),
            Err(e) => failures.push(format!(
                "{}: no golden file {} ({e}); record with ROSTFIX_RECORD_GOLDEN=1",
                case.id,
                golden_path(case).display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn reference_or_notice() -> Option<Reference> {
    let r = reference();
    if r.is_none() {
        eprintln!(
            "NOTICE: Postfix 3.7.11 reference not found ($ROSTFIX_REFERENCE or /tmp/pfroot): \
             live comparison skipped, golden files only"
        );
    }
    r
}

#[test]
fn own_tables_match_postfix() {
    let r = reference_or_notice();
    check(&own_cases(), r.as_ref());
}

#[test]
fn corpus_tables_match_postfix() {
    let Some(shared) = shared_dir() else {
        eprintln!("NOTICE: shared config corpus not found: corpus tables skipped");
        return;
    };
    let cases = corpus_cases(&shared);
    assert!(
        !cases.is_empty(),
        "no regexp/pcre tables found in the corpus"
    );
    let r = reference_or_notice();
    check(&cases, r.as_ref());
}

// ---------------------------------------------------------------- fuzzing

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Bytes biased toward the tables' syntax.
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        const PIECES: &[&[u8]] = &[
            b"/",
            b"!",
            b"$",
            b"${",
            b"}",
            b"$(",
            b")",
            b"(",
            b"[",
            b"]",
            b"\\",
            b" ",
            b"\t",
            b"\n",
            b"\n ",
            b"#",
            b"if ",
            b"endif",
            b"IF",
            b"i",
            b"m",
            b"x",
            b"s",
            b"A",
            b"E",
            b"U",
            b"X",
            b"1",
            b"9",
            b"0",
            b"a",
            b"b",
            b".",
            b"*",
            b"+",
            b"?",
            b"|",
            b"^",
            b"$1",
            b"{",
            b":",
            b"::",
            b"1.2.3.4",
            b"/24",
            b"/0",
            b"/128",
            b"2001:db8::",
            b"\x00",
            b"\xff",
            b"\xe9",
            b"(?",
            b"\\1",
            b"{1,",
            b"[[:alpha:]]",
            b"\r",
            b"@",
        ];
        let n = self.below(max + 1);
        let mut v = Vec::new();
        for _ in 0..n {
            if self.below(4) == 0 {
                v.push(self.next() as u8);
            } else {
                v.extend_from_slice(PIECES[self.below(PIECES.len())]);
            }
        }
        v
    }
}

impl Rng {
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }

    /// A table of mostly well-formed rules.
    fn table(&mut self, ty: &str) -> Vec<u8> {
        let mut t = String::new();
        for _ in 0..self.below(8) + 1 {
            let line = match ty {
                "cidr" => {
                    let neg = if self.below(5) == 0 { "!" } else { "" };
                    let net = if self.below(3) == 0 {
                        format!("2001:db8::{:x}", self.below(4) * 16)
                    } else {
                        format!("10.{}.{}.0", self.below(3), self.below(3) * 64)
                    };
                    let mask =
                        self.pick(&["", "/8", "/16", "/24", "/26", "/32", "/64", "/0", "/120"]);
                    match self.below(10) {
                        0 => format!("if {neg}{net}{mask}"),
                        1 => "endif".to_string(),
                        _ => format!("{neg}{net}{mask} r{}", self.below(100)),
                    }
                }
                _ => {
                    let mut re = String::new();
                    for _ in 0..self.below(5) + 1 {
                        re.push_str(self.pick(&[
                            "a",
                            "b",
                            "B",
                            "(a)",
                            "(b|a)",
                            "(a*)",
                            "[ab]",
                            "*",
                            "+",
                            "?",
                            "|",
                            "^",
                            "$",
                            ".",
                            "\\1",
                            "{1,2}",
                            "\\s",
                            "\\w",
                            "[[:alpha:]]",
                            "\\(",
                            "\\)",
                            "(",
                            ")",
                            "\\/",
                            "-",
                        ]));
                    }
                    let neg = if self.below(6) == 0 { "!" } else { "" };
                    let flags = self.pick(&["", "", "i", "m", "x", "s", "A", "E", "U", "X", "ix"]);
                    let mut res = format!("r{}", self.below(100));
                    for _ in 0..self.below(3) {
                        res.push_str(self.pick(&["$1", "${2}", "$$", "-", "$(1)", "$3"]));
                    }
                    match self.below(10) {
                        0 => format!("if {neg}/{re}/{flags}"),
                        1 => "endif".to_string(),
                        _ => format!("{neg}/{re}/{flags} {res}"),
                    }
                }
            };
            t.push_str(&line);
            t.push('\n');
        }
        t.into_bytes()
    }

    /// A key that such a table may match.
    fn key(&mut self, ty: &str) -> Vec<u8> {
        match ty {
            "cidr" => {
                if self.below(3) == 0 {
                    format!("2001:db8::{:x}", self.below(80)).into_bytes()
                } else {
                    format!(
                        "10.{}.{}.{}",
                        self.below(3),
                        self.below(256),
                        self.below(256)
                    )
                    .into_bytes()
                }
            }
            _ => {
                let n = self.below(7);
                (0..n)
                    .map(|_| *b"aabbAB -/(".get(self.below(10)).unwrap())
                    .collect()
            }
        }
    }
}

#[test]
fn random_tables_and_keys_never_panic() {
    let dir = tempdir::Dir::new("pattern-fuzz");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let start = std::time::Instant::now();
    let mut opened = 0;
    for round in 0..600 {
        let ty = ["regexp", "pcre", "cidr"][round % 3];
        let table = rng.bytes(60);
        let path = dir.path().join(format!("t{round}"));
        std::fs::write(&path, &table).unwrap();
        let mut names = vec![path.to_string_lossy().into_owned()];
        // The inline form too.
        let mut inline = b"{{".to_vec();
        inline.extend_from_slice(&rng.bytes(12));
        inline.extend_from_slice(b"}}");
        names.push(latin1::decode(&inline));
        for name in names {
            for fl in [
                POSTMAP_FLAGS,
                flags::FOLD_MUL,
                flags::NO_REGSUB | flags::SRC_RHS_IS_FILE,
            ] {
                let Ok(mut d) = Opened::open(ty, &name, fl) else {
                    continue;
                };
                opened += 1;
                d.take_warnings();
                for _ in 0..8 {
                    let key = latin1::decode(&rng.bytes(10));
                    let _ = d.lookup(&key);
                }
            }
        }
    }
    assert!(opened > 1000, "only {opened} tables opened");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(20),
        "fuzz round too slow: {:?}",
        start.elapsed()
    );
}

/// Random tables and keys through both implementations. Slow (a postmap run
/// per table): `cargo test --test pattern_tables -- --ignored`, with
/// ROSTFIX_FUZZ_SEED and ROSTFIX_FUZZ_ROUNDS to vary it.
#[test]
#[ignore]
fn random_tables_match_postfix() {
    let Some(r) = reference_or_notice() else {
        return;
    };
    let seed: u64 = std::env::var("ROSTFIX_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let rounds: usize = std::env::var("ROSTFIX_FUZZ_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let dir = tempdir::Dir::new("pattern-difffuzz");
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut cases = Vec::new();
    for round in 0..rounds {
        let ty = ["regexp", "pcre", "cidr"][round % 3];
        let table = if round % 2 == 0 {
            let mut t = Vec::new();
            for _ in 0..rng.below(6) + 1 {
                t.extend_from_slice(&rng.bytes(12));
                t.push(b'\n');
            }
            t
        } else {
            rng.table(ty)
        };
        let path = dir.path().join(format!("t{round}"));
        std::fs::write(&path, &table).unwrap();
        let mut keys = Vec::new();
        for _ in 0..6 {
            // postmap -q - reads lines: no newline inside a batch key.
            let k: Vec<u8> = if round % 2 == 0 {
                rng.bytes(6).into_iter().filter(|&c| c != b'\n').collect()
            } else {
                rng.key(ty)
            };
            keys.push(k);
        }
        cases.push(Case {
            id: format!("random-{seed}-{round}"),
            ty,
            name: path.to_string_lossy().into_owned(),
            keys,
            extra_flags: 0,
        });
    }
    let mut failures = Vec::new();
    let mut hits = 0;
    for chunk in cases.chunks(16) {
        let theirs: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = chunk
                .iter()
                .map(|c| {
                    let r = &r;
                    s.spawn(move || transcript(c, |keys, _| r.batch(c, keys)))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (c, theirs) in chunk.iter().zip(theirs) {
            hits += theirs
                .lines()
                .filter(|l| l.starts_with("out ") && l.len() > 4)
                .count();
            let mine = transcript(c, |keys, batch| ours(c, keys, batch));
            if mine != theirs {
                let table = std::fs::read(&c.name).unwrap();
                failures.push(format!(
                    "{} ({}) table {:?}\n--- postfix\n{theirs}--- ours\n{mine}",
                    c.id,
                    c.ty,
                    escape(&table)
                ));
            }
        }
    }
    eprintln!("{rounds} random tables, {hits} keys found");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
