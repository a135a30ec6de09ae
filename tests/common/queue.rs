//! Shared helpers for the queue tests: the reference Postfix, scratch
//! folders, a queue-file builder that writes records the way cleanup lays
//! them out, and running a program under both implementations.

#![allow(dead_code)]

use rostfix::global::record::{rec_encode, rec_put_ptr};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The reference Postfix, unless `ROSTFIX_GOLDEN=1` asks for golden files only.
pub fn reference() -> Option<PathBuf> {
    if std::env::var_os("ROSTFIX_GOLDEN").is_some() {
        return None;
    }
    let mut cands = Vec::new();
    if let Some(r) = std::env::var_os("ROSTFIX_REFERENCE") {
        cands.push(PathBuf::from(r));
    }
    if let Some(h) = std::env::var_os("HOME") {
        cands.push(Path::new(&h).join(".cache/rostfix/postfix-3.7.11"));
    }
    cands.push(PathBuf::from("/tmp/pfroot"));
    cands
        .into_iter()
        .find(|r| r.join("usr/sbin/postcat").exists())
}

/// A scratch folder, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("rostfix-queue-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn s(&self) -> String {
        self.0.to_str().unwrap().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A user and group that exist, that are not root and whose group ids
/// differ (Postfix insists on that for mail_owner / setgid_group).
pub fn owner_and_group() -> (String, String) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let mut user = ("nobody".to_string(), 65534u32);
    for l in passwd.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() > 3 && f[2] != "0" && (f[0] == "mail" || f[0] == "nobody") {
            user = (f[0].to_string(), f[3].parse().unwrap_or(0));
            break;
        }
    }
    let mut grp = "staff".to_string();
    for l in group.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() > 2 && f[2] != "0" && f[2].parse::<u32>().ok() != Some(user.1) {
            grp = f[0].to_string();
            if matches!(f[0], "staff" | "nogroup" | "users") {
                break;
            }
        }
    }
    (user.0, grp)
}

/// A config folder with main.cf (modified an hour ago, as Postfix wants).
pub fn write_conf(dir: &Path, queue_dir: &str, extra: &str) {
    let (user, group) = owner_and_group();
    std::fs::create_dir_all(dir).unwrap();
    let root = reference()
        .map(|r| r.display().to_string())
        .unwrap_or_default();
    let text = format!(
        "compatibility_level = 3.6\nmail_owner = {user}\nsetgid_group = {group}\n\
queue_directory = {queue_dir}\ndaemon_directory = {root}/usr/lib/postfix/sbin\n\
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C NORANDOMIZE LD_LIBRARY_PATH\n{extra}"
    );
    std::fs::write(dir.join("main.cf"), text).unwrap();
    std::fs::write(dir.join("master.cf"), "").unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let f = std::fs::File::options()
        .write(true)
        .open(dir.join("main.cf"))
        .unwrap();
    f.set_modified(old).unwrap();
}

/// What a program did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Exit status, or 128 + signal.
    pub status: i32,
}

impl Outcome {
    pub fn text(&self) -> String {
        format!(
            "--- stdout\n{}--- stderr\n{}--- status {}\n",
            String::from_utf8_lossy(&self.stdout),
            String::from_utf8_lossy(&self.stderr),
            self.status
        )
    }
}

/// Which implementation to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    Ours,
    Postfix,
}

/// Run `prog args` with `stdin` bytes (None: /dev/null), TZ fixed.
pub fn run(which: Impl, prog: &str, args: &[String], stdin: Option<&Path>, cwd: &Path) -> Outcome {
    let mut cmd = match which {
        Impl::Ours => {
            let mut c = Command::new(env!("CARGO_BIN_EXE_rostfix"));
            c.arg0(prog);
            c
        }
        Impl::Postfix => {
            let root = reference().expect("reference");
            let lib = format!(
                "{0}/usr/lib/postfix:{0}/usr/lib/x86_64-linux-gnu:{0}/lib/x86_64-linux-gnu",
                root.display()
            );
            let mut c = Command::new(root.join("usr/sbin").join(prog));
            c.arg0(prog);
            c.env("LD_LIBRARY_PATH", lib);
            c
        }
    };
    cmd.args(args)
        .current_dir(cwd)
        .env("TZ", "UTC")
        .env("NORANDOMIZE", "1")
        .env_remove("MAIL_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match stdin {
        Some(p) => cmd.stdin(std::fs::File::open(p).unwrap()),
        None => cmd.stdin(Stdio::null()),
    };
    let o = cmd.output().unwrap();
    let status = o
        .status
        .code()
        .unwrap_or_else(|| 128 + o.status.signal().unwrap_or(0));
    Outcome {
        stdout: o.stdout,
        stderr: o.stderr,
        status,
    }
}

/// One queue-file record, or a pointer placeholder.
#[derive(Debug, Clone)]
pub enum Item {
    Rec(u8, Vec<u8>),
    /// A fixed-width pointer to the heap record list with this index (or 0).
    Ptr(Option<usize>),
}

pub fn rec(t: u8, d: &[u8]) -> Item {
    Item::Rec(t, d.to_vec())
}

/// A queue file in the making: main records, then records placed in the
/// heap after the END record (reached through pointers, each heap list
/// ending with a pointer back to `back` = index of a main item).
#[derive(Debug, Clone, Default)]
pub struct QFile {
    pub main: Vec<Item>,
    /// Heap lists: (items, index of the main item to return to).
    pub heap: Vec<(Vec<Item>, usize)>,
    /// Skip the SIZE record fix-up (to keep a broken one).
    pub raw_size: bool,
}

impl QFile {
    /// Lay the file out: compute pointer targets and the SIZE record.
    pub fn bytes(&self) -> Vec<u8> {
        // Two passes: offsets do not depend on pointer values (fixed width).
        let mut offsets = Vec::new();
        let mut heap_offsets = Vec::new();
        let len_of = |it: &Item| match it {
            Item::Rec(_, d) => rostfix::global::record::rec_space_need(d.len()),
            Item::Ptr(_) => 17,
        };
        let mut pos = 0;
        for it in &self.main {
            offsets.push(pos);
            pos += len_of(it);
        }
        for (items, _) in &self.heap {
            heap_offsets.push(pos);
            for it in items {
                pos += len_of(it);
            }
            pos += 17;
        }
        // Content size and data offset as cleanup computes them.
        let mut mesg = None;
        let mut xtra = None;
        let mut nrcpt = 0;
        for (i, it) in self.main.iter().enumerate() {
            if let Item::Rec(t, _) = it {
                match t {
                    b'M' if mesg.is_none() => mesg = Some(i),
                    b'X' if xtra.is_none() => xtra = Some(i),
                    b'R' => nrcpt += 1,
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        let emit = |out: &mut Vec<u8>, it: &Item| match it {
            Item::Rec(t, d) => rec_encode(out, *t, d),
            Item::Ptr(None) => rec_put_ptr(out, 0).unwrap(),
            Item::Ptr(Some(h)) => rec_put_ptr(out, heap_offsets[*h] as i64).unwrap(),
        };
        for it in &self.main {
            match it {
                Item::Rec(b'C', d) if !self.raw_size && d.is_empty() => {
                    let data_off = mesg
                        .map(|m| offsets[m] + len_of(&self.main[m]))
                        .unwrap_or(0);
                    let size = match (mesg, xtra) {
                        (Some(_), Some(x)) => offsets[x].saturating_sub(data_off),
                        _ => 0,
                    };
                    rostfix::global::record::rec_put_size(
                        &mut out,
                        [size as i64, data_off as i64, nrcpt, 0, size as i64, 0],
                    )
                    .unwrap();
                }
                _ => emit(&mut out, it),
            }
        }
        for (items, back) in &self.heap {
            for it in items {
                emit(&mut out, it);
            }
            rec_put_ptr(&mut out, offsets[*back] as i64).unwrap();
        }
        out
    }
}

/// Content lines as cleanup stores them: lines longer than `limit` are
/// split into L records followed by a final N.
pub fn content(lines: &[&[u8]], limit: usize) -> Vec<Item> {
    let mut v = Vec::new();
    for l in lines {
        let mut rest: &[u8] = l;
        while rest.len() > limit {
            v.push(rec(b'L', &rest[..limit]));
            rest = &rest[limit..];
        }
        v.push(rec(b'N', rest));
    }
    v
}

/// A typical SMTP message as cleanup writes it (cf. the captured sample).
pub fn smtp_message(id: &str, sender: &str, rcpts: &[&str], body: &[&[u8]]) -> QFile {
    let mut m = vec![
        rec(b'C', b""),
        rec(b'T', b"1795624322 582767"),
        rec(b'A', b"create_time=1795624322"),
        rec(b'A', format!("log_ident={id}").as_bytes()),
        rec(b'A', b"rewrite_context=local"),
        rec(b'S', sender.as_bytes()),
        rec(b'A', b"log_client_name=localhost"),
        rec(b'A', b"client_address=127.0.0.1"),
        rec(b'A', b"protocol_name=ESMTP"),
    ];
    for r in rcpts {
        m.push(rec(b'A', b"notify_flags=6"));
        m.push(rec(b'A', format!("dsn_orig_rcpt=rfc822;{r}").as_bytes()));
        m.push(rec(b'O', r.as_bytes()));
        m.push(rec(b'R', r.as_bytes()));
    }
    m.push(rec(b'M', b""));
    let mut lines: Vec<&[u8]> = vec![
        b"Received: from [127.0.0.1] (localhost [127.0.0.1])",
        b"\tby mx.example.test (Postfix) with ESMTP id 907429900EC",
        b"Subject: test",
        b"From: testuser@mx.example.test",
        b"",
    ];
    lines.extend_from_slice(body);
    m.extend(content(&lines, 2048));
    m.push(rec(b'X', b""));
    m.push(rec(b'A', b"encoding=8bit"));
    m.push(rec(b'E', b""));
    QFile {
        main: m,
        heap: Vec::new(),
        raw_size: false,
    }
}
