//! Differential tests: rostfix against Postfix 3.7.11, the oracle.
//!
//! Cases come from `compat/cases/*.txt` (format described in `compat/cases/README.md`). Each
//! case runs a command (`postconf -c {dir} -n`, ...) in a fresh temporary copy of a config
//! folder, and its outcome is stdout, stderr, exit status and every file the command changed in
//! that folder.
//!
//! Modes:
//! - live: when the reference exists (`$ROSTFIX_REFERENCE`, else
//!   `$HOME/.cache/rostfix/postfix-3.7.11`, made by `compat/reference.sh`), each case runs under
//!   both implementations and the outcomes must be equal;
//! - golden: otherwise (or with `ROSTFIX_GOLDEN=1`), rostfix's outcome must equal the recorded
//!   `compat/golden/<case>.out`;
//! - record: `ROSTFIX_RECORD=1` (see `compat/record-golden.sh`) rewrites the golden files from
//!   the reference.
//!
//! Other knobs: `ROSTFIX_CASE=sub1,sub2` runs only cases whose name contains one of them;
//! `ROSTFIX_UNDER_TEST=PATH` tests another binary (a multi-call file, or a folder holding one
//! program per name: pointing it at the reference's `bin/` must make every case pass);
//! `ROSTFIX_CORPUS=DIR` moves the config corpus (default `../shared/corpus/configs`);
//! `ROSTFIX_JOBS=N` sets the parallelism.
//!
//! Normalisation: the temporary paths become `{dir}` and `{daemon_directory}`, `process_id = N`
//! values are masked, and stderr is compared as a sorted multiset of lines (Postfix's hash tables
//! order some warnings at random). In golden mode only, the host's name, the `myhostname`,
//! `mydomain` derived from it and the `mynetworks` values found from its interfaces become
//! placeholders, so that golden files recorded on one machine check another.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A command still running after this long is killed and reported.
const TIMEOUT: Duration = Duration::from_secs(20);

/// After this many timed-out commands the remaining cases are failed without running them, so
/// that an implementation that hangs everywhere fails in minutes, not hours.
const MAX_TIMEOUTS: usize = 10;
static TIMEOUTS: AtomicUsize = AtomicUsize::new(0);

/// The modification time given to every file copied into a case's folder (2024-01-01).
const FIXED_MTIME: Duration = Duration::from_secs(1_704_067_200);

/// Where the reference's unpacked packages keep their shared libraries.
const REF_LIB_DIRS: &[&str] = &[
    "usr/lib/postfix",
    "usr/lib/x86_64-linux-gnu",
    "lib/x86_64-linux-gnu",
];

/// Commands a case may run; in the under-test folder each is a link to the binary under test.
const PROGRAMS: &[&str] = &[
    "postconf",
    "postmap",
    "postalias",
    "postcat",
    "postqueue",
    "postsuper",
    "postdrop",
    "postfix",
    "postlog",
    "postkick",
    "postlock",
    "postmulti",
    "sendmail",
    "mailq",
    "newaliases",
];

/// Daemons that commands start from `$daemon_directory` (`postconf -b` runs `bounce`).
const DAEMONS: &[&str] = &[
    "anvil",
    "bounce",
    "cleanup",
    "discard",
    "dnsblog",
    "error",
    "flush",
    "lmtp",
    "local",
    "master",
    "nqmgr",
    "oqmgr",
    "pickup",
    "pipe",
    "postlogd",
    "postscreen",
    "proxymap",
    "qmgr",
    "qmqpd",
    "scache",
    "showq",
    "smtp",
    "smtpd",
    "spawn",
    "tlsmgr",
    "tlsproxy",
    "trivial-rewrite",
    "verify",
    "virtual",
];

fn note(msg: &str) {
    // Straight to the process's stderr: cargo's test harness does not capture this, so skip
    // notices and the summary are seen even when the test passes.
    let mut e = io::stderr().lock();
    let _ = e.write_all(msg.as_bytes());
    let _ = e.write_all(b"\n");
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// Case files
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum ConfigSrc {
    /// compat/cases/fixtures/NAME: `{dir}` and `{daemon_directory}` in its text files are filled in.
    Fixture(String),
    /// A corpus set, copied as it is; Debian's master.cf is added when it has none.
    Corpus(String),
    /// An empty folder.
    Empty,
    /// A folder with an empty main.cf and master.cf (for probing defaults).
    EmptyFiles,
}

#[derive(Clone, Debug)]
struct Case {
    name: String,
    config: ConfigSrc,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<String>,
    origin: String,
}

/// Splits a command line into words: whitespace separates, '...' is literal, "..." allows
/// backslash escapes, a backslash outside quotes escapes the next character, and an unquoted
/// `|` is a word of its own (it separates the command from the options).
fn split_words(s: &str) -> Result<Vec<(String, bool)>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push((std::mem::take(&mut cur), false));
                    in_word = false;
                }
            }
            '|' if !in_word => words.push(("|".to_string(), true)),
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated '".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('n') => cur.push('\n'),
                            Some('t') => cur.push('\t'),
                            Some(c) => cur.push(c),
                            None => return Err("trailing backslash".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated \"".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err("trailing backslash".into()),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push((cur, false));
    }
    Ok(words)
}

fn case_files(root: &Path) -> Vec<PathBuf> {
    let dir = root.join("compat/cases");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    files
}

/// Parses one case file. `corpus:*` lines become one case per corpus set (`corpus_sets`; when
/// the corpus is absent they are counted in `skipped` instead).
fn parse_case_file(
    path: &Path,
    corpus_sets: Option<&[String]>,
    skipped: &mut Vec<String>,
) -> Result<Vec<Case>, String> {
    let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut cases = Vec::new();
    for (lineno, line) in text.lines().enumerate() {
        let origin = format!("{}:{}", path.display(), lineno + 1);
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(3, '|');
        let (Some(name), Some(config), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "{origin}: expected NAME | CONFIG | COMMAND [| OPTIONS]"
            ));
        };
        let name = name.trim();
        let config = config.trim();
        if name.is_empty() || name.contains(char::is_whitespace) || name.contains("..") {
            return Err(format!("{origin}: bad case name {name:?}"));
        }
        let words = split_words(rest).map_err(|e| format!("{origin}: {e}"))?;
        let mut argv = Vec::new();
        let mut env = Vec::new();
        let mut stdin = None;
        let mut in_options = false;
        for (w, is_bar) in words {
            if is_bar {
                if in_options {
                    return Err(format!("{origin}: more than one | in the command"));
                }
                in_options = true;
            } else if !in_options {
                argv.push(w);
            } else if let Some(kv) = w.strip_prefix("env:") {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| format!("{origin}: env:NAME=VALUE expected, got {w}"))?;
                env.push((k.to_string(), v.to_string()));
            } else if let Some(f) = w.strip_prefix("stdin:") {
                stdin = Some(f.to_string());
            } else {
                return Err(format!("{origin}: unknown option {w:?}"));
            }
        }
        if argv.is_empty() {
            return Err(format!("{origin}: empty command"));
        }
        let mut sources: Vec<(String, ConfigSrc)> = Vec::new();
        for config in config.split(',').map(str::trim) {
            if config == "corpus:*" {
                match corpus_sets {
                    Some(sets) => sources.extend(
                        sets.iter()
                            .map(|s| (format!("corpus/{s}"), ConfigSrc::Corpus(s.clone()))),
                    ),
                    None => skipped.push(format!("{stem}/corpus/*/{name}")),
                }
            } else if let Some(set) = config.strip_prefix("corpus:") {
                match corpus_sets {
                    Some(_) => {
                        sources.push((format!("corpus/{set}"), ConfigSrc::Corpus(set.to_string())))
                    }
                    None => skipped.push(format!("{stem}/corpus/{set}/{name}")),
                }
            } else if let Some(f) = config.strip_prefix("fixture:") {
                sources.push((format!("fixtures/{f}"), ConfigSrc::Fixture(f.to_string())));
            } else if config == "empty" {
                sources.push(("empty".to_string(), ConfigSrc::Empty));
            } else {
                return Err(format!("{origin}: unknown config {config:?}"));
            }
        }
        for (label, src) in sources {
            cases.push(Case {
                name: format!("{stem}/{label}/{name}"),
                config: src,
                argv: argv.clone(),
                env: env.clone(),
                stdin: stdin.clone(),
                origin: origin.clone(),
            });
        }
    }
    Ok(cases)
}

// ---------------------------------------------------------------------------------------------
// Implementations
// ---------------------------------------------------------------------------------------------

/// How to start one implementation's programs.
struct Impl {
    label: &'static str,
    /// program name -> executable
    programs: BTreeMap<String, PathBuf>,
    /// Folder given to cases as `{daemon_directory}`: the same length for both implementations.
    daemon_dir: PathBuf,
    /// Extra environment (the reference's LD_LIBRARY_PATH).
    env: Vec<(String, String)>,
}

impl Impl {
    fn reference(root: &Path, work: &Path) -> Impl {
        let mut programs = BTreeMap::new();
        for p in PROGRAMS {
            for sub in ["usr/sbin", "usr/bin"] {
                let path = root.join(sub).join(p);
                if path.exists() {
                    programs.insert(p.to_string(), path);
                    break;
                }
            }
        }
        let daemon_dir = work.join("daemons-ref");
        symlink(root.join("usr/lib/postfix/sbin"), &daemon_dir).expect("symlink daemons-ref");
        let lib: Vec<String> = REF_LIB_DIRS
            .iter()
            .map(|d| root.join(d).to_string_lossy().into_owned())
            .collect();
        Impl {
            label: "postfix",
            programs,
            daemon_dir,
            env: vec![("LD_LIBRARY_PATH".into(), lib.join(":"))],
        }
    }

    /// The implementation under test: `$ROSTFIX_UNDER_TEST` (a multi-call file or a folder of
    /// programs) or the crate's own `rostfix` binary.
    fn under_test(work: &Path) -> Result<Impl, String> {
        let (target, is_dir) = match env_nonempty("ROSTFIX_UNDER_TEST") {
            Some(p) => {
                let p = PathBuf::from(p);
                let is_dir = p.is_dir();
                if !p.exists() {
                    return Err(format!("ROSTFIX_UNDER_TEST={} does not exist", p.display()));
                }
                (p, is_dir)
            }
            None => match option_env!("CARGO_BIN_EXE_rostfix") {
                Some(p) => (PathBuf::from(p), false),
                None => return Err("the crate has no `rostfix` binary target".into()),
            },
        };
        let bin = work.join("bin-ours");
        let daemons = work.join("daemons-our");
        fs::create_dir_all(&bin).unwrap();
        let mut programs = BTreeMap::new();
        if is_dir {
            for p in PROGRAMS {
                let path = target.join(p);
                if path.exists() {
                    programs.insert(p.to_string(), path);
                }
            }
            // A reference tree's bin/ (see compat/reference.sh): use its daemons too.
            let ref_daemons = target.join("../usr/lib/postfix/sbin");
            if ref_daemons.is_dir() {
                symlink(&ref_daemons, &daemons).unwrap();
            } else {
                fs::create_dir_all(&daemons).unwrap();
            }
        } else {
            // Separate set-gid programs, when the crate builds them, replace the multi-call one.
            let own: &[(&str, Option<&str>)] = &[
                ("postdrop", option_env!("CARGO_BIN_EXE_postdrop")),
                ("postqueue", option_env!("CARGO_BIN_EXE_postqueue")),
                ("postlog", option_env!("CARGO_BIN_EXE_postlog")),
            ];
            for p in PROGRAMS {
                let t = own
                    .iter()
                    .find(|(n, _)| n == p)
                    .and_then(|(_, e)| e.map(PathBuf::from))
                    .unwrap_or_else(|| target.clone());
                let link = bin.join(p);
                symlink(&t, &link).unwrap();
                programs.insert(p.to_string(), link);
            }
            fs::create_dir_all(&daemons).unwrap();
            for d in DAEMONS {
                symlink(&target, daemons.join(d)).unwrap();
            }
        }
        Ok(Impl {
            label: "rostfix",
            programs,
            daemon_dir: daemons,
            env: Vec::new(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Running a case
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Exit {
    Code(i32),
    Signal(i32),
    Timeout,
    SpawnError,
}

struct Outcome {
    exit: Exit,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// Files of the config folder that the command added, changed or removed.
    files: Vec<(String, FileChange)>,
}

enum FileChange {
    Added(Vec<u8>),
    /// Old and new content.
    Changed(Vec<u8>, Vec<u8>),
    /// A symlink or other non-file is now a regular file with this content.
    Replaced(Vec<u8>),
    Removed,
    Other(String),
}

#[derive(PartialEq)]
enum Entry {
    File(Vec<u8>),
    Link(PathBuf),
    Dir,
    Other,
}

fn snapshot(dir: &Path) -> BTreeMap<String, Entry> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Entry>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let Ok(md) = fs::symlink_metadata(&p) else {
                continue;
            };
            let ft = md.file_type();
            if ft.is_symlink() {
                out.insert(rel, Entry::Link(fs::read_link(&p).unwrap_or_default()));
            } else if ft.is_dir() {
                out.insert(rel, Entry::Dir);
                walk(base, &p, out);
            } else if ft.is_file() {
                out.insert(rel, Entry::File(fs::read(&p).unwrap_or_default()));
            } else {
                out.insert(rel, Entry::Other);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Writes a file and gives it an old, fixed mtime: Postfix re-reads a file whose mtime is within
/// a second of "now" after a one-second pause (it may still be being written), which would slow
/// every case down and repeat its warnings a varying number of times.
fn write_old_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(data)?;
    f.set_modified(std::time::UNIX_EPOCH + FIXED_MTIME)
}

fn copy_tree(src: &Path, dst: &Path, fill: &dyn Fn(Vec<u8>) -> Vec<u8>) -> io::Result<()> {
    fs::create_dir_all(dst)?;
    for e in fs::read_dir(src)? {
        let e = e?;
        let from = e.path();
        let to = dst.join(e.file_name());
        let md = fs::symlink_metadata(&from)?;
        if md.file_type().is_symlink() {
            symlink(fs::read_link(&from)?, &to)?;
        } else if md.is_dir() {
            copy_tree(&from, &to, fill)?;
        } else {
            write_old_file(&to, &fill(fs::read(&from)?))?;
            fs::set_permissions(&to, fs::Permissions::from_mode(md.permissions().mode()))?;
        }
    }
    Ok(())
}

fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    if from.is_empty() || hay.len() < from.len() {
        return hay.to_vec();
    }
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// Like `replace_all`, but only where `from` stands as a whole host name: not touching a
/// letter, digit, `-` or `_` on either side.
fn replace_word(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let is_name = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if from.is_empty() || hay.len() < from.len() {
        return hay.to_vec();
    }
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from)
            && (i == 0 || !is_name(hay[i - 1]))
            && hay.get(i + from.len()).is_none_or(|&b| !is_name(b))
        {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// Replaces the number `n` where it stands alone (no digit on either side): the process id of
/// the command, which `$process_id` expansions put into values. A literal number that happens
/// to equal the pid is replaced too; the callers run a differing case a second time (with
/// another pid) before they report it.
fn replace_number(hay: &[u8], n: u32, to: &[u8]) -> Vec<u8> {
    let digits = n.to_string();
    let from = digits.as_bytes();
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from)
            && (i == 0 || !hay[i - 1].is_ascii_digit())
            && hay.get(i + from.len()).is_none_or(|b| !b.is_ascii_digit())
        {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// Masks `process_id = 12345` (as printed by `postconf -d`, `-x` and friends).
fn mask_process_id(hay: &[u8]) -> Vec<u8> {
    let key = b"process_id = ";
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(key) && (i == 0 || hay[i - 1] == b'\n') {
            out.extend_from_slice(key);
            i += key.len();
            let start = i;
            while i < hay.len() && hay[i].is_ascii_digit() {
                i += 1;
            }
            if i > start {
                out.push(b'N');
            }
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// Host-dependent strings and their placeholders, applied in golden mode only.
#[derive(Clone, Default)]
struct HostValues {
    /// (value, placeholder, whole-word only), longest values first.
    subst: Vec<(Vec<u8>, Vec<u8>, bool)>,
}

impl HostValues {
    fn apply(&self, data: &[u8]) -> Vec<u8> {
        let mut d = data.to_vec();
        for (from, to, word) in &self.subst {
            d = if *word {
                replace_word(&d, from, to)
            } else {
                replace_all(&d, from, to)
            };
        }
        d
    }
}

struct Runner<'a> {
    root: PathBuf,
    corpus: Option<PathBuf>,
    master_cf_dist: Option<PathBuf>,
    work: PathBuf,
    imp: &'a Impl,
}

impl Runner<'_> {
    /// Runs `case` as case number `idx` and returns its normalised outcome. The scratch paths
    /// have the same length for both implementations (`-f` folds long lines).
    fn run(&self, idx: usize, case: &Case) -> Result<Outcome, String> {
        let tag = if self.imp.label == "postfix" {
            "ref"
        } else {
            "our"
        };
        let case_root = self.work.join(format!("{idx:05}-{tag}"));
        let dir = case_root.join("cfg");
        let dir_s = dir.to_string_lossy().into_owned();
        let dd_s = self.imp.daemon_dir.to_string_lossy().into_owned();
        let fill = |data: Vec<u8>| -> Vec<u8> {
            let d = replace_all(&data, b"{daemon_directory}", dd_s.as_bytes());
            replace_all(&d, b"{dir}", dir_s.as_bytes())
        };
        let fill_str = |s: &str| {
            s.replace("{daemon_directory}", &dd_s)
                .replace("{dir}", &dir_s)
        };
        match &case.config {
            ConfigSrc::Fixture(f) => {
                let src = self.root.join("compat/cases/fixtures").join(f);
                if !src.is_dir() {
                    return Err(format!("no fixture folder {}", src.display()));
                }
                copy_tree(&src, &dir, &fill).map_err(|e| format!("copy {f}: {e}"))?;
            }
            ConfigSrc::Corpus(set) => {
                let corpus = self.corpus.as_ref().ok_or("no corpus")?;
                let src = corpus.join(set);
                if !src.is_dir() {
                    return Err(format!("no corpus set {}", src.display()));
                }
                copy_tree(&src, &dir, &|d| d).map_err(|e| format!("copy {set}: {e}"))?;
                if !dir.join("master.cf").exists() {
                    let dist = self
                        .master_cf_dist
                        .as_ref()
                        .ok_or("corpus set without master.cf, and no Debian master.cf.dist")?;
                    fs::read(dist)
                        .and_then(|d| write_old_file(&dir.join("master.cf"), &d))
                        .map_err(|e| e.to_string())?;
                }
            }
            ConfigSrc::Empty => fs::create_dir_all(&dir).map_err(|e| e.to_string())?,
            ConfigSrc::EmptyFiles => {
                fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                for f in ["main.cf", "master.cf"] {
                    write_old_file(&dir.join(f), b"").map_err(|e| e.to_string())?;
                }
            }
        }
        let before = snapshot(&dir);

        let prog = &case.argv[0];
        let exe = self
            .imp
            .programs
            .get(prog)
            .ok_or_else(|| format!("{} has no program {prog}", self.imp.label))?;
        let stdout_path = case_root.join("stdout");
        let stderr_path = case_root.join("stderr");
        let mut cmd = Command::new(exe);
        cmd.arg0(prog)
            .args(case.argv[1..].iter().map(|a| fill_str(a)))
            .current_dir(&case_root)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("NORANDOMIZE", "1")
            .env("TZ", "UTC")
            .env("LC_ALL", "C")
            .stdout(fs::File::create(&stdout_path).map_err(|e| e.to_string())?)
            .stderr(fs::File::create(&stderr_path).map_err(|e| e.to_string())?)
            .process_group(0);
        if let Ok(home) = std::env::var("HOME") {
            cmd.env("HOME", home);
        }
        for (k, v) in &self.imp.env {
            cmd.env(k, v);
        }
        for (k, v) in &case.env {
            cmd.env(k, fill_str(v));
        }
        match &case.stdin {
            Some(f) => {
                let file = fs::File::open(dir.join(f)).map_err(|e| format!("stdin {f}: {e}"))?;
                cmd.stdin(file);
            }
            None => {
                cmd.stdin(Stdio::null());
            }
        }
        let mut pid = None;
        let exit = match cmd.spawn() {
            Err(e) => {
                fs::write(&stderr_path, format!("spawn {}: {e}\n", exe.display())).ok();
                Exit::SpawnError
            }
            Ok(mut child) => {
                pid = Some(child.id());
                let start = Instant::now();
                loop {
                    match child.try_wait() {
                        Ok(Some(st)) => {
                            break match (st.code(), st.signal()) {
                                (Some(c), _) => Exit::Code(c),
                                (None, Some(s)) => Exit::Signal(s),
                                (None, None) => Exit::Signal(0),
                            };
                        }
                        Ok(None) if start.elapsed() > TIMEOUT => {
                            // The whole process group: postconf -b runs a bounce child.
                            let _ = Command::new("kill")
                                .args(["-KILL", "--", &format!("-{}", child.id())])
                                .stderr(Stdio::null())
                                .status();
                            let _ = child.kill();
                            let _ = child.wait();
                            TIMEOUTS.fetch_add(1, Ordering::SeqCst);
                            break Exit::Timeout;
                        }
                        Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                        Err(e) => return Err(format!("wait: {e}")),
                    }
                }
            }
        };
        let after = snapshot(&dir);
        let mut files = Vec::new();
        for (name, entry) in &after {
            let change = match (before.get(name), entry) {
                (Some(old), new) if old == new => continue,
                (_, Entry::Dir) if matches!(before.get(name), Some(Entry::Dir)) => continue,
                (None, Entry::File(d)) => FileChange::Added(d.clone()),
                (Some(Entry::File(old)), Entry::File(d)) => {
                    FileChange::Changed(old.clone(), d.clone())
                }
                (Some(_), Entry::File(d)) => FileChange::Replaced(d.clone()),
                (_, Entry::Link(t)) => FileChange::Other(format!("symlink to {}", t.display())),
                (_, Entry::Dir) => FileChange::Other("directory".into()),
                (_, Entry::Other) => FileChange::Other("special file".into()),
            };
            files.push((name.clone(), change));
        }
        for name in before.keys() {
            if !after.contains_key(name) {
                files.push((name.clone(), FileChange::Removed));
            }
        }
        files.sort_by(|a, b| a.0.cmp(&b.0));

        let read = |p: &Path| {
            let mut v = Vec::new();
            if let Ok(mut f) = fs::File::open(p) {
                let _ = f.read_to_end(&mut v);
            }
            v
        };
        let norm = |d: &[u8]| {
            let d = replace_all(d, dd_s.as_bytes(), b"{daemon_directory}");
            let d = replace_all(&d, dir_s.as_bytes(), b"{dir}");
            let d = match pid {
                Some(pid) => replace_number(&d, pid, b"{pid}"),
                None => d,
            };
            mask_process_id(&d)
        };
        let outcome = Outcome {
            exit,
            stdout: norm(&read(&stdout_path)),
            stderr: norm(&read(&stderr_path)),
            files: files
                .into_iter()
                .map(|(n, c)| {
                    let c = match c {
                        FileChange::Added(d) => FileChange::Added(norm(&d)),
                        FileChange::Changed(old, d) => FileChange::Changed(norm(&old), norm(&d)),
                        FileChange::Replaced(d) => FileChange::Replaced(norm(&d)),
                        other => other,
                    };
                    (n, c)
                })
                .collect(),
        };
        let _ = fs::remove_dir_all(&case_root);
        Ok(outcome)
    }
}

/// The text form compared and stored as a golden file: exit status, stdout exactly, stderr as
/// sorted lines, then each changed file. Lengths make the sections unambiguous for any bytes.
fn render(case: &Case, o: &Outcome, host: Option<&HostValues>) -> Vec<u8> {
    let h = |d: &[u8]| match host {
        Some(hv) => hv.apply(d),
        None => d.to_vec(),
    };
    let mut out = Vec::new();
    let cmd: Vec<String> = case
        .argv
        .iter()
        .map(|a| {
            if a.contains(char::is_control) {
                format!("\"{}\"", a.escape_default())
            } else if a.is_empty()
                || a.contains(|c: char| c.is_whitespace() || "'\"\\|$#*?".contains(c))
            {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a.clone()
            }
        })
        .collect();
    out.extend_from_slice(
        format!("# case {}\n# command {}\n", case.name, cmd.join(" ")).as_bytes(),
    );
    for (k, v) in &case.env {
        out.extend_from_slice(format!("# env {k}={v}\n").as_bytes());
    }
    if let Some(s) = &case.stdin {
        out.extend_from_slice(format!("# stdin {s}\n").as_bytes());
    }
    let exit = match o.exit {
        Exit::Code(c) => format!("exit {c}"),
        Exit::Signal(s) => format!("killed by signal {s}"),
        Exit::Timeout => format!("timed out after {} s", TIMEOUT.as_secs()),
        Exit::SpawnError => "could not start".to_string(),
    };
    out.extend_from_slice(format!("{exit}\n").as_bytes());
    let section = |out: &mut Vec<u8>, title: &str, data: &[u8]| {
        out.extend_from_slice(format!("=== {title}: {} bytes\n", data.len()).as_bytes());
        out.extend_from_slice(data);
        if !data.is_empty() && !data.ends_with(b"\n") {
            out.extend_from_slice(b"\n=== (no newline at end)");
        }
        if !data.is_empty() {
            out.push(b'\n');
        }
    };
    section(&mut out, "stdout", &h(&o.stdout));
    let stderr = h(&o.stderr);
    let mut lines: Vec<&[u8]> = stderr.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines.sort();
    let mut sorted = lines.join(&b'\n');
    if !sorted.is_empty() {
        sorted.push(b'\n');
    }
    section(&mut out, "stderr (lines sorted)", &sorted);
    for (name, change) in &o.files {
        match change {
            FileChange::Added(d) => section(&mut out, &format!("file {name} added"), &h(d)),
            FileChange::Changed(old, d) => {
                let d = h(d);
                let title = format!("file {name} changed, now {} bytes; diff", d.len());
                section(&mut out, &title, &file_delta(&h(old), &d));
            }
            FileChange::Replaced(d) => section(
                &mut out,
                &format!("file {name} is now a regular file"),
                &h(d),
            ),
            FileChange::Removed => {
                out.extend_from_slice(format!("=== file {name} removed\n").as_bytes())
            }
            FileChange::Other(what) => {
                out.extend_from_slice(format!("=== file {name} is now a {what}\n").as_bytes())
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Host values (golden mode)
// ---------------------------------------------------------------------------------------------

/// Placeholders for what a host contributes to Postfix's defaults: its name, `myhostname` and
/// `mydomain` as Postfix derives them from it, and the `mynetworks` values that the
/// implementation `imp` computes from the interfaces (for each mynetworks_style and
/// inet_protocols; the value comes from the implementation itself, since reading interfaces
/// here would need a second implementation of that logic).
fn host_values(runner: &Runner) -> HostValues {
    let hostname = fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mut subst: Vec<(Vec<u8>, Vec<u8>, bool)> = Vec::new();
    let mut words = Vec::new();
    if !hostname.is_empty() {
        let myhostname = if hostname.contains('.') {
            hostname.clone()
        } else {
            format!("{hostname}.localdomain")
        };
        let mydomain = match myhostname.split_once('.') {
            Some((_, rest)) if rest.contains('.') => rest.to_string(),
            _ => "localdomain".to_string(),
        };
        let short = hostname.split('.').next().unwrap_or("").to_string();
        words.push((myhostname, "{myhostname}"));
        words.push((mydomain, "{mydomain}"));
        words.push((hostname.clone(), "{hostname}"));
        words.push((short, "{hostname}"));
    }
    let mut nets: Vec<String> = Vec::new();
    for style in ["subnet", "host", "class"] {
        for proto in ["all", "ipv4", "ipv6"] {
            let case = Case {
                name: "host-values".into(),
                config: ConfigSrc::EmptyFiles,
                argv: vec![
                    "postconf".into(),
                    "-c".into(),
                    "{dir}".into(),
                    "-o".into(),
                    format!("mynetworks_style={style}"),
                    "-o".into(),
                    format!("inet_protocols={proto}"),
                    "-h".into(),
                    "mynetworks".into(),
                ],
                env: Vec::new(),
                stdin: None,
                origin: String::new(),
            };
            if let Ok(o) = runner.run(90000 + nets.len(), &case) {
                let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
                if matches!(o.exit, Exit::Code(0)) && !v.is_empty() && !v.contains('\n') {
                    nets.push(v);
                }
            }
        }
    }
    nets.sort_by_key(|v| std::cmp::Reverse(v.len()));
    nets.dedup();
    for n in nets {
        subst.push((n.into_bytes(), b"{mynetworks}".to_vec(), false));
    }
    for (v, p) in words {
        if !v.is_empty() && !subst.iter().any(|(f, _, _)| f == v.as_bytes()) {
            subst.push((v.into_bytes(), p.as_bytes().to_vec(), true));
        }
    }
    HostValues { subst }
}

// ---------------------------------------------------------------------------------------------
// Diff and report
// ---------------------------------------------------------------------------------------------

fn show_line(prefix: char, line: &[u8]) -> String {
    const MAX: usize = 160;
    let s = String::from_utf8_lossy(line);
    let mut shown: String = s.chars().take(MAX).collect();
    let total = s.chars().count();
    if total > MAX {
        shown.push_str(&format!("...[{} more chars]", total - MAX));
    }
    format!("    {prefix}{}", shown.escape_debug())
}

/// The edit script turning `la` into `lb`: (' ', line), ('-', line), ('+', line). Common head
/// and tail are matched first; the middle is an LCS when small enough, else all-minus-all-plus.
fn edit_script<'a>(la: &[&'a [u8]], lb: &[&'a [u8]]) -> Vec<(char, &'a [u8])> {
    let mut pre = 0;
    while pre < la.len() && pre < lb.len() && la[pre] == lb[pre] {
        pre += 1;
    }
    let mut suf = 0;
    while suf < la.len() - pre
        && suf < lb.len() - pre
        && la[la.len() - 1 - suf] == lb[lb.len() - 1 - suf]
    {
        suf += 1;
    }
    let ma = &la[pre..la.len() - suf];
    let mb = &lb[pre..lb.len() - suf];
    let mut ops: Vec<(char, &[u8])> = la[..pre].iter().map(|l| (' ', *l)).collect();
    if ma.len() * mb.len() <= 4_000_000 {
        let (n, m) = (ma.len(), mb.len());
        let mut t = vec![0u32; (n + 1) * (m + 1)];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                t[i * (m + 1) + j] = if ma[i] == mb[j] {
                    t[(i + 1) * (m + 1) + j + 1] + 1
                } else {
                    t[(i + 1) * (m + 1) + j].max(t[i * (m + 1) + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && ma[i] == mb[j] {
                ops.push((' ', ma[i]));
                i += 1;
                j += 1;
            } else if i < n && (j == m || t[(i + 1) * (m + 1) + j] >= t[i * (m + 1) + j + 1]) {
                ops.push(('-', ma[i]));
                i += 1;
            } else {
                ops.push(('+', mb[j]));
                j += 1;
            }
        }
    } else {
        ops.extend(ma.iter().map(|l| ('-', *l)));
        ops.extend(mb.iter().map(|l| ('+', *l)));
    }
    ops.extend(la[la.len() - suf..].iter().map(|l| (' ', *l)));
    ops
}

fn lines(data: &[u8]) -> Vec<&[u8]> {
    data.split(|&c| c == b'\n').collect()
}

/// A unified-style diff of the first differences between `a` (expected) and `b` (actual).
fn diff(a: &[u8], b: &[u8], max_lines: usize) -> Vec<String> {
    let (la, lb) = (lines(a), lines(b));
    let ops = edit_script(&la, &lb);
    let first = ops.iter().position(|o| o.0 != ' ').unwrap_or(0);
    let mut out = vec![format!("    @@ line {} @@", first + 1)];
    let mut shown = 0;
    let mut since_change = 0;
    for (op, l) in &ops[first.saturating_sub(2)..] {
        if shown >= max_lines {
            out.push("    ...".into());
            break;
        }
        if *op == ' ' {
            since_change += 1;
            if since_change > 2 {
                continue;
            }
        } else {
            since_change = 0;
        }
        out.push(show_line(*op, l));
        shown += 1;
    }
    out
}

/// How a file changed, as hunks without context (`@@ -OLD,N +NEW,M @@`, then `-`/`+` lines):
/// golden files hold what a command changed, not a copy of the config it was given.
fn file_delta(old: &[u8], new: &[u8]) -> Vec<u8> {
    let (la, lb) = (lines(old), lines(new));
    let ops = edit_script(&la, &lb);
    let mut out = Vec::new();
    let (mut i, mut j, mut k) = (0, 0, 0);
    while k < ops.len() {
        if ops[k].0 == ' ' {
            i += 1;
            j += 1;
            k += 1;
            continue;
        }
        let start = k;
        while k < ops.len() && ops[k].0 != ' ' {
            k += 1;
        }
        let hunk = &ops[start..k];
        let dels = hunk.iter().filter(|o| o.0 == '-').count();
        let adds = hunk.len() - dels;
        out.extend_from_slice(format!("@@ -{},{dels} +{},{adds} @@\n", i + 1, j + 1).as_bytes());
        for (op, l) in hunk {
            out.push(*op as u8);
            out.extend_from_slice(l);
            out.push(b'\n');
        }
        i += dels;
        j += adds;
    }
    out
}

fn golden_path(root: &Path, case: &Case) -> PathBuf {
    root.join("compat/golden")
        .join(format!("{}.out", case.name))
}

fn find_reference() -> Option<PathBuf> {
    if let Some(r) = env_nonempty("ROSTFIX_REFERENCE") {
        let r = PathBuf::from(r);
        assert!(
            r.join("usr/sbin/postconf").exists(),
            "ROSTFIX_REFERENCE={} holds no usr/sbin/postconf (run compat/reference.sh)",
            r.display()
        );
        return Some(r);
    }
    let home = std::env::var("HOME").ok()?;
    let r = PathBuf::from(home).join(".cache/rostfix/postfix-3.7.11");
    r.join("usr/sbin/postconf").exists().then_some(r)
}

/// Ok, or a one-line reason followed by diff lines.
type CaseResult = Result<(), Vec<String>>;

#[derive(PartialEq, Clone, Copy)]
enum Mode {
    Live,
    Golden,
    Record,
}

#[test]
fn differential() {
    let root = repo_root();
    let reference = find_reference();
    let record = env_nonempty("ROSTFIX_RECORD").is_some_and(|v| v != "0");
    let force_golden = env_nonempty("ROSTFIX_GOLDEN").is_some_and(|v| v != "0");
    let mode = if record {
        assert!(
            reference.is_some(),
            "ROSTFIX_RECORD needs the reference: run compat/reference.sh"
        );
        Mode::Record
    } else if reference.is_some() && !force_golden {
        Mode::Live
    } else {
        Mode::Golden
    };

    let corpus_dir = env_nonempty("ROSTFIX_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/corpus/configs"));
    let corpus = corpus_dir.is_dir().then(|| corpus_dir.clone());
    let corpus_sets: Option<Vec<String>> = corpus.as_ref().map(|c| {
        let mut v: Vec<String> = fs::read_dir(c)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    });
    let master_cf_dist = [
        reference
            .as_ref()
            .map(|r| r.join("usr/share/postfix/master.cf.dist")),
        Some(PathBuf::from("/usr/share/postfix/master.cf.dist")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file());

    let mut skipped = Vec::new();
    let mut cases = Vec::new();
    for f in case_files(&root) {
        match parse_case_file(&f, corpus_sets.as_deref(), &mut skipped) {
            Ok(c) => cases.extend(c),
            Err(e) => panic!("{e}"),
        }
    }
    let mut seen = std::collections::HashSet::new();
    for c in &cases {
        assert!(
            seen.insert(c.name.clone()),
            "{}: duplicate case name {}",
            c.origin,
            c.name
        );
    }
    let all_names: std::collections::HashSet<PathBuf> =
        cases.iter().map(|c| golden_path(&root, c)).collect();
    let filter: Vec<String> = env_nonempty("ROSTFIX_CASE")
        .map(|f| f.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    if !filter.is_empty() {
        cases.retain(|c| filter.iter().any(|f| c.name.contains(f.as_str())));
        skipped.retain(|s| filter.iter().any(|f| s.contains(f.as_str())));
    }
    // Corpus sets without master.cf need Debian's; without it those cases cannot run.
    if master_cf_dist.is_none()
        && let (Some(c), Some(_)) = (&corpus, &corpus_sets)
    {
        cases.retain(|case| match &case.config {
            ConfigSrc::Corpus(set) if !c.join(set).join("master.cf").exists() => {
                skipped.push(format!("{} (needs Debian's master.cf.dist)", case.name));
                false
            }
            _ => true,
        });
    }

    let pid = std::process::id();
    let work = PathBuf::from(format!("/tmp/rostfix-difftest-{pid:010}"));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).unwrap();

    let reference_impl = reference.as_ref().map(|r| Impl::reference(r, &work));
    let ours = match mode {
        Mode::Record => None,
        _ => match Impl::under_test(&work) {
            Ok(i) => Some(i),
            Err(e) => panic!("{e}"),
        },
    };
    let mk_runner = |imp| Runner {
        root: root.clone(),
        corpus: corpus.clone(),
        master_cf_dist: master_cf_dist.clone(),
        work: work.clone(),
        imp,
    };
    let ref_runner = reference_impl.as_ref().map(mk_runner);
    let our_runner = ours.as_ref().map(mk_runner);

    note(&format!(
        "differential: {} mode, {} cases{}{}",
        match mode {
            Mode::Live => "live",
            Mode::Golden => "golden",
            Mode::Record => "record",
        },
        cases.len(),
        reference
            .as_ref()
            .map(|r| format!(", reference {}", r.display()))
            .unwrap_or_default(),
        env_nonempty("ROSTFIX_UNDER_TEST")
            .map(|u| format!(", under test {u}"))
            .unwrap_or_default(),
    ));
    if corpus.is_none() {
        note(&format!(
            "differential: SKIPPED {} case lines over the config corpus: no corpus at {} \
             (set ROSTFIX_CORPUS, or put shared/ beside the repository)",
            skipped.len(),
            corpus_dir.display()
        ));
    } else if !skipped.is_empty() {
        note(&format!("differential: SKIPPED {} cases:", skipped.len()));
    }
    if corpus.is_some() {
        for s in &skipped {
            note(&format!("  skipped {s}"));
        }
    }

    let host = match mode {
        Mode::Record => Some(host_values(ref_runner.as_ref().unwrap())),
        Mode::Golden => Some(host_values(our_runner.as_ref().unwrap())),
        Mode::Live => None,
    };

    let jobs = env_nonempty("ROSTFIX_JOBS")
        .and_then(|j| j.parse().ok())
        .unwrap_or_else(|| {
            // Postfix sleeps a second before a fatal exit: run well past the core count.
            std::thread::available_parallelism().map_or(2, |n| n.get()) * 8
        })
        .max(1);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, CaseResult)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(case) = cases.get(i) else { break };
                    let r = run_case(
                        mode,
                        &root,
                        i,
                        case,
                        ref_runner.as_ref(),
                        our_runner.as_ref(),
                        host.as_ref(),
                    );
                    results.lock().unwrap().push((i, r));
                }
            });
        }
    });
    let _ = fs::remove_dir_all(&work);
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|r| r.0);

    if mode == Mode::Record {
        // Remove golden files that no case produces any more (only on a full, unfiltered run).
        if filter.is_empty() && corpus.is_some() {
            let mut stale = Vec::new();
            collect_files(&root.join("compat/golden"), &mut stale);
            for p in stale {
                if p.extension().is_some_and(|e| e == "out") && !all_names.contains(&p) {
                    note(&format!("differential: removing stale {}", p.display()));
                    let _ = fs::remove_file(&p);
                }
            }
        }
        note(&format!(
            "differential: recorded {} golden files",
            results.len()
        ));
    }

    // Known differences (compat/cases/known-differences.list) are reported but do not fail.
    let known = load_known_differences(&root);
    let known_reason = |name: &str| {
        known
            .iter()
            .find(|(pat, _)| match pat.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == pat,
            })
            .map(|(_, reason)| reason.as_str())
    };
    let mut failed = Vec::new();
    let mut known_failed = 0;
    let mut passed = 0;
    for (i, r) in &results {
        let case = &cases[*i];
        match (r, known_reason(&case.name)) {
            (Ok(()), None) => passed += 1,
            (Ok(()), Some(_)) => {
                passed += 1;
                if mode != Mode::Record {
                    note(&format!(
                        "note: {} passes: take it out of compat/cases/known-differences.list",
                        case.name
                    ));
                }
            }
            (Err(_), Some(reason)) if mode != Mode::Record => {
                known_failed += 1;
                note(&format!("KNOWN {}: {reason}", case.name));
            }
            (Err(lines), _) => failed.push((case, lines)),
        }
    }
    let detailed = 60;
    for (n, (case, lines)) in failed.iter().enumerate() {
        note(&format!(
            "FAIL {} ({}): {}",
            case.name, case.origin, lines[0]
        ));
        if n < detailed {
            for l in &lines[1..] {
                note(l);
            }
        }
    }
    if failed.len() > detailed {
        note(&format!(
            "(diffs shown for the first {detailed} failures; use ROSTFIX_CASE=name to see others)"
        ));
    }
    if known_failed > 0 {
        note(&format!(
            "differential: {known_failed} known differences (compat/cases/known-differences.list)"
        ));
    }
    note(&format!(
        "differential: {passed} passed, {} failed, {} skipped",
        failed.len(),
        skipped.len()
    ));
    assert!(
        failed.is_empty(),
        "{} differential cases failed",
        failed.len()
    );
}

/// `compat/cases/known-differences.list`: `CASE-NAME | reason` per line, `#` comments; a name
/// ending in `*` matches every case name starting with the rest.
fn load_known_differences(root: &Path) -> Vec<(String, String)> {
    let path = root.join("compat/cases/known-differences.list");
    let Ok(text) = fs::read_to_string(&path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('|') {
            Some((name, reason)) if !reason.trim().is_empty() => {
                out.push((name.trim().to_string(), reason.trim().to_string()))
            }
            _ => panic!("{}:{}: expected CASE-NAME | reason", path.display(), n + 1),
        }
    }
    out
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                collect_files(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

/// Runs one case in the given mode. Err holds a one-line reason and then the diff lines.
/// A case that differs is run once more (a number in the output may have equalled the pid by
/// chance); one that then matches passes, with a note, since it may also be nondeterministic.
fn run_case(
    mode: Mode,
    root: &Path,
    idx: usize,
    case: &Case,
    reference: Option<&Runner>,
    ours: Option<&Runner>,
    host: Option<&HostValues>,
) -> CaseResult {
    let golden = golden_path(root, case);
    if TIMEOUTS.load(Ordering::SeqCst) >= MAX_TIMEOUTS {
        return Err(vec![format!(
            "not run: {MAX_TIMEOUTS} commands have timed out already"
        )]);
    }
    let timed_out = |o: &Outcome| matches!(o.exit, Exit::Timeout);
    match mode {
        Mode::Record => {
            let reference = reference.unwrap();
            let mut renders: Vec<Vec<u8>> = Vec::new();
            let text = loop {
                let o = reference.run(idx, case).map_err(|e| vec![e])?;
                if timed_out(&o) {
                    return Err(vec!["Postfix timed out: not recorded".into()]);
                }
                let r = render(case, &o, host);
                if renders.contains(&r) {
                    break r;
                }
                if renders.len() == 3 {
                    return Err(vec![
                        "Postfix gives a different outcome at every run: not recorded".into(),
                    ]);
                }
                renders.push(r);
            };
            fs::create_dir_all(golden.parent().unwrap()).map_err(|e| vec![e.to_string()])?;
            fs::write(&golden, text).map_err(|e| vec![format!("{}: {e}", golden.display())])?;
            Ok(())
        }
        Mode::Live => {
            let (reference, ours) = (reference.unwrap(), ours.unwrap());
            let mut first = None;
            for _ in 0..2 {
                let want = reference.run(idx, case).map_err(|e| vec![e])?;
                let got = ours.run(idx, case).map_err(|e| vec![e])?;
                let r = compare(
                    &render(case, &want, None),
                    &render(case, &got, None),
                    "differs from Postfix 3.7.11 (- postfix, + rostfix)",
                );
                if r.is_err() && (timed_out(&want) || timed_out(&got)) {
                    return r;
                }
                if r.is_ok() {
                    if first.is_some() {
                        note(&format!("note: {} differed once, then matched", case.name));
                    }
                    return Ok(());
                }
                first.get_or_insert(r);
            }
            first.unwrap()
        }
        Mode::Golden => {
            let want = fs::read(&golden).map_err(|e| {
                vec![format!(
                    "no golden file {} ({e}); record it with compat/record-golden.sh",
                    golden.display()
                )]
            })?;
            let ours = ours.unwrap();
            let mut first = None;
            for _ in 0..2 {
                let got = ours.run(idx, case).map_err(|e| vec![e])?;
                let r = compare(
                    &want,
                    &render(case, &got, host),
                    "differs from its golden file (- golden, + rostfix)",
                );
                if r.is_err() && timed_out(&got) {
                    return r;
                }
                if r.is_ok() {
                    if first.is_some() {
                        note(&format!("note: {} differed once, then matched", case.name));
                    }
                    return Ok(());
                }
                first.get_or_insert(r);
            }
            first.unwrap()
        }
    }
}

fn compare(want: &[u8], got: &[u8], what: &str) -> CaseResult {
    if want == got {
        return Ok(());
    }
    let mut lines = vec![what.to_string()];
    lines.extend(diff(want, got, 12));
    Err(lines)
}
