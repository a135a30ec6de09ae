//! Durability under SIGKILL: postdrop (what sendmail runs) and pickup
//! (with cleanup in its process) are killed at random points, a bounded
//! number of times. Afterwards:
//! - every maildrop file that looks complete (mode 0744) and every
//!   incoming file that looks complete (mode 0700) holds a whole message:
//!   records parse, the last one is the end record, the body's last line
//!   is there;
//! - every message postdrop acknowledged (exit 0) is in maildrop/ complete;
//! - every message is, at every point, either still in maildrop/ or in a
//!   complete incoming/ file (pickup removes the maildrop file only after
//!   cleanup's fsync; a kill in between may leave both: a duplicate, never
//!   a loss).

mod common;
use common::instance::{Instance, Side};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn put_rec(v: &mut Vec<u8>, t: u8, d: &[u8]) {
    v.push(t);
    let mut n = d.len();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            v.push(b);
            break;
        }
        v.push(b | 0x80);
    }
    v.extend_from_slice(d);
}

/// The record stream sendmail hands postdrop, for message `n` (~100 KB).
fn submission(n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    put_rec(&mut v, b'S', b"alice");
    put_rec(&mut v, b'R', b"bob@example.com");
    put_rec(&mut v, b'M', b"");
    put_rec(&mut v, b'N', format!("Subject: msg-{n}").as_bytes());
    put_rec(&mut v, b'N', b"");
    let line = "y".repeat(70);
    for _ in 0..1400 {
        put_rec(&mut v, b'N', line.as_bytes());
    }
    put_rec(&mut v, b'N', format!("END-OF-MESSAGE-{n}").as_bytes());
    put_rec(&mut v, b'X', b"");
    put_rec(&mut v, b'E', b"");
    v
}

/// Parse a queue file; Some(message number) when it is whole.
fn whole(bytes: &[u8]) -> Option<usize> {
    let mut i = 0;
    let mut last = 0u8;
    let mut subject = None;
    let mut end_seen = None;
    while i < bytes.len() {
        let t = bytes[i];
        i += 1;
        let mut len = 0usize;
        let mut shift = 0;
        loop {
            let b = *bytes.get(i)?;
            i += 1;
            len |= ((b & 0x7f) as usize) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
            if shift > 35 {
                return None;
            }
        }
        let d = bytes.get(i..i + len)?;
        i += len;
        last = t;
        if let Some(s) = d.strip_prefix(b"Subject: msg-") {
            subject = std::str::from_utf8(s).ok()?.parse().ok();
        }
        if let Some(s) = d.strip_prefix(b"END-OF-MESSAGE-") {
            end_seen = std::str::from_utf8(s).ok()?.parse().ok();
        }
    }
    if last != b'E' || subject.is_none() || subject != end_seen {
        return None;
    }
    subject
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0)
}

/// Check every complete-looking file; return the messages found whole in
/// maildrop/ and in incoming/.
fn audit(inst: &Instance) -> (BTreeSet<usize>, BTreeSet<usize>) {
    let mut md = BTreeSet::new();
    let mut inc = BTreeSet::new();
    for f in inst.files(&["maildrop", "incoming"]) {
        let p = inst.queue().join(&f);
        let m = mode(&p);
        let complete = if f.starts_with("maildrop") {
            m == 0o744
        } else {
            m & 0o700 == 0o700
        };
        if !complete {
            continue;
        }
        let Ok(bytes) = std::fs::read(&p) else {
            continue; // removed meanwhile
        };
        let n = whole(&bytes).unwrap_or_else(|| panic!("{f} (mode {m:o}) is not a whole message"));
        if f.starts_with("maildrop") {
            md.insert(n);
        } else {
            inc.insert(n);
        }
    }
    (md, inc)
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[test]
fn sigkill_never_leaves_partial_complete_files_or_loses_acknowledged_mail() {
    let dir = std::env::temp_dir().join(format!("rostfix-durability-{}", std::process::id()));
    let inst = Instance::new(Side::Ours, &dir, "", &[]);
    for d in ["maildrop", "incoming", "public", "corrupt", "hold", "pid"] {
        std::fs::create_dir_all(inst.queue().join(d)).unwrap();
    }
    let s = seed();
    eprintln!("seed {s}");
    let mut rng = Rng(s);
    let started = Instant::now();
    let mut acked = BTreeSet::new();
    // 1. postdrop, killed at random points while it copies the message.
    for n in 0..40 {
        let data = submission(n);
        let mut c = inst.command("postdrop");
        c.args(["-c", &inst.conf()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = c.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let w = std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&data);
        });
        let delay = rng.next(4000);
        std::thread::sleep(Duration::from_micros(delay));
        let killed = n % 4 != 3; // every fourth runs to completion
        if killed {
            let _ = child.kill();
        }
        let st = child.wait().unwrap();
        let _ = w.join();
        if st.success() {
            acked.insert(n);
        }
        let (md, _) = audit(&inst);
        for a in &acked {
            assert!(
                md.contains(a),
                "acknowledged message {a} is not in maildrop/"
            );
        }
    }
    assert!(
        acked.len() >= 10,
        "too few completed submissions: {acked:?}"
    );
    // 2. pickup (+ cleanup), killed at random points, until maildrop/ is
    // drained.
    let mut pending: BTreeSet<usize> = audit(&inst).0;
    let mut runs = 0;
    while !audit(&inst).0.is_empty() && runs < 60 {
        runs += 1;
        let mut c = inst.command("pickup");
        c.args(["-c", &inst.conf()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = c.spawn().unwrap();
        let delay = if runs > 40 {
            1_000_000
        } else {
            rng.next(15000)
        };
        let t = Instant::now();
        while t.elapsed() < Duration::from_micros(delay) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let _ = child.kill();
        let _ = child.wait();
        let (md, inc) = audit(&inst);
        for p in &pending {
            assert!(
                md.contains(p) || inc.contains(p),
                "message {p} lost after a pickup kill (run {runs})"
            );
        }
        pending = pending.union(&md).copied().collect();
    }
    let (md, inc) = audit(&inst);
    let leftovers = inst.files(&["maildrop", "incoming"]).len();
    eprintln!(
        "postdrop acknowledged {} of 40; pickup runs {runs}; files left {leftovers}; queued {}",
        acked.len(),
        inc.len()
    );
    assert!(md.is_empty(), "maildrop not drained: {md:?}");
    for a in &acked {
        assert!(inc.contains(a), "acknowledged message {a} never queued");
    }
    assert!(started.elapsed() < Duration::from_secs(30));
}
