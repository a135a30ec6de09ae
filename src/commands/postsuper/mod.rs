//! Replaces postsuper(1) of Postfix 3.7: queue maintenance by the
//! superuser. Deletes (-d), holds (-h), releases (-H), requeues (-r),
//! force-expires (-e, -f) messages by queue ID, `ALL`, or IDs read from
//! stdin (`-`), optionally limited to named queues; repairs the queue
//! structure (-s, -S: file names that no longer match their inode, files
//! in the wrong hash directory) and purges stale temporary files (-p).
//! With no action it does -s and -p.
//!
//! Trusts: its command line (root only) and main.cf; not the queue
//! contents (it runs as mail_owner once main.cf is read, so that a
//! compromised queue cannot lure it elsewhere). Reads: queue_directory,
//! hash_queue_names, hash_queue_depth, enable_long_queue_ids,
//! import_environment, mail_owner.
//!
//! Reports go to stderr as Postfix's do (`postsuper: ID: removed`,
//! `postsuper: Deleted: N messages`, ...).

use crate::global::mail_conf::MailConf;
use crate::global::mail_queue::{self, QueueConf};
use crate::global::msg;
use crate::global::record::errtext;
use crate::util::getopt::{self, Getopt, Opt};
use crate::util::latin1;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::atomic::{AtomicBool, Ordering};

const MAX_TEMP_AGE: i64 = 7 * 60 * 60 * 24;
const SUFFIX: &str = "#FIX";

const STRUCT: u32 = 1 << 0;
const PURGE: u32 = 1 << 1;
const DELETE_ONE: u32 = 1 << 2;
const DELETE_ALL: u32 = 1 << 3;
const REQUEUE_ONE: u32 = 1 << 4;
const REQUEUE_ALL: u32 = 1 << 5;
const HOLD_ONE: u32 = 1 << 6;
const HOLD_ALL: u32 = 1 << 7;
const RELEASE_ONE: u32 = 1 << 8;
const RELEASE_ALL: u32 = 1 << 9;
const STRUCT_RED: u32 = 1 << 10;
const EXPIRE_ONE: u32 = 1 << 11;
const EXPIRE_ALL: u32 = 1 << 12;
const EXP_REL_ONE: u32 = 1 << 13;
const EXP_REL_ALL: u32 = 1 << 14;

const BY_QUEUE_ID: u32 =
    DELETE_ONE | REQUEUE_ONE | HOLD_ONE | RELEASE_ONE | EXPIRE_ONE | EXP_REL_ONE;
const BY_WILDCARD: u32 =
    DELETE_ALL | REQUEUE_ALL | HOLD_ALL | RELEASE_ALL | EXPIRE_ALL | EXP_REL_ALL;
const FOR_REPAIR: u32 = PURGE | STRUCT | STRUCT_RED;

/// The queues postsuper knows: (name, holds messages, may have subdirectories).
const QUEUE_INFO: &[(&str, bool, bool)] = &[
    ("maildrop", true, false),
    ("incoming", true, true),
    ("active", true, true),
    ("deferred", true, true),
    ("hold", true, true),
    ("trace", false, true),
    ("defer", false, true),
    ("bounce", false, true),
    ("flush", false, true),
];

const LOG_QUEUES: &[&str] = &["bounce", "defer", "trace"];

const DEFAULT_QUEUES: &[&str] = &[
    "defer", "bounce", "maildrop", "incoming", "active", "deferred", "hold", "flush",
];

/// Set when a structure repair was started, for the warning on a fatal exit.
static REPAIRING: AtomicBool = AtomicBool::new(false);

fn fatal(text: &str) -> ! {
    msg::emit_fatal_text(text);
    if REPAIRING.load(Ordering::Relaxed) {
        msg::warn("OPERATION INCOMPLETE -- RERUN COMMAND TO FIX THE QUEUE FIRST");
    }
    crate::global::out::flush();
    std::process::exit(1);
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn is_ready(mode: u32) -> bool {
    mode & 0o700 == mail_queue::STAT_READY
}

/// C's strtoul(s, &end, 16) for the short-ID inode: (value, error).
fn strtoul16(s: &str) -> (u64, bool) {
    let b = s.as_bytes();
    let mut i = 0;
    if b.len() >= 2
        && b[0] == b'0'
        && (b[1] == b'x' || b[1] == b'X')
        && b.get(2).is_some_and(|c| c.is_ascii_hexdigit())
    {
        i = 2;
    }
    let start = i;
    let mut v: u64 = 0;
    let mut over = false;
    while i < b.len() && b[i].is_ascii_hexdigit() {
        let d = (b[i] as char).to_digit(16).unwrap_or(0) as u64;
        match v.checked_mul(16).and_then(|x| x.checked_add(d)) {
            Some(x) => v = x,
            None => {
                over = true;
                v = u64::MAX;
            }
        }
        i += 1;
    }
    if i == start {
        // No conversion: the end is the start of the string.
        return (0, !b.is_empty());
    }
    (v, i != b.len() || over)
}

/// MQID_GET_INUM: (inode, long form, error).
fn queue_id_inum(id: &str) -> (u64, bool, bool) {
    match mail_queue::long_id_separator(id) {
        Some(z) => {
            let tail = &id.as_bytes()[z + 1..];
            let (v, used, over) = mail_queue::safe_strtoul(tail, mail_queue::LG_INUM_BASE);
            let err = if used == 0 {
                !tail.is_empty()
            } else {
                used != tail.len() || over
            };
            (v, true, err)
        }
        None => {
            let tail = id.get(mail_queue::SH_USEC_PAD..).unwrap_or("");
            let (v, err) = strtoul16(tail);
            (v, false, err)
        }
    }
}

/// An operation on one queue ID.
type OneOp = fn(&mut Super, &[String], &str);

struct Super {
    qc: QueueConf,
    hash_names: Vec<String>,
    requeued: u32,
    held: u32,
    released: u32,
    deleted: u32,
    expired: u32,
    inode_fixed: u32,
    inode_mismatch: u32,
    position_mismatch: u32,
}

fn queue_info(name: &str) -> (bool, bool) {
    match QUEUE_INFO.iter().find(|(n, _, _)| *n == name) {
        Some((_, m, r)) => (*m, *r),
        None => fatal(&format!("invalid directory name: {name}")),
    }
}

fn postremove(path: &str) -> bool {
    match fs::remove_file(latin1::to_path(path)) {
        Ok(()) => {
            if msg::verbose() > 0 {
                msg::info(&format!("removed file {path}"));
            }
            true
        }
        Err(e) => {
            if e.kind() != io::ErrorKind::NotFound {
                // remove(3) also removes an empty directory.
                if e.raw_os_error() == Some(libc::EISDIR)
                    && fs::remove_dir(latin1::to_path(path)).is_ok()
                {
                    return true;
                }
                fatal(&format!("remove file {path}: {}", errtext(&e)));
            }
            false
        }
    }
}

fn mkdirs(path: &str) -> io::Result<()> {
    let Some(i) = path.rfind('/') else {
        return Ok(());
    };
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    use std::os::unix::fs::DirBuilderExt;
    b.mode(0o700);
    b.create(latin1::to_path(&path[..i]))
}

fn postrename(old: &str, new: &str) -> bool {
    let ren = || fs::rename(latin1::to_path(old), latin1::to_path(new));
    match ren() {
        Ok(()) => {
            if msg::verbose() > 0 {
                msg::info(&format!("renamed file {old} as {new}"));
            }
            true
        }
        Err(e) => {
            let e = if e.kind() == io::ErrorKind::NotFound {
                match mkdirs(new) {
                    Err(e2) => e2,
                    Ok(()) => match ren() {
                        Ok(()) => return true,
                        Err(e3) => e3,
                    },
                }
            } else {
                e
            };
            if e.kind() != io::ErrorKind::NotFound {
                fatal(&format!("rename file {old} as {new}: {}", errtext(&e)));
            }
            false
        }
    }
}

fn postrmdir(path: &str) {
    match fs::remove_dir(latin1::to_path(path)) {
        Ok(()) => {
            if msg::verbose() > 0 {
                msg::info(&format!("remove directory {path}"));
            }
        }
        Err(e) => {
            if e.kind() != io::ErrorKind::NotFound {
                fatal(&format!("remove directory {path}: {}", errtext(&e)));
            }
        }
    }
}

/// Set the forced-expiry bit of a ready queue file.
fn postexpire(path: &str) -> bool {
    let f = match fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(latin1::to_path(path))
    {
        Ok(f) => f,
        Err(e) => {
            if e.kind() != io::ErrorKind::NotFound {
                msg::warn(&format!(
                    "expire file {path}: cannot open file: {}",
                    errtext(&e)
                ));
            }
            return false;
        }
    };
    let st = match f.metadata() {
        Ok(m) => m,
        Err(e) => fatal(&format!("{path}: bad open file status: {}", errtext(&e))),
    };
    if st.nlink() != 1 {
        msg::warn(&format!(
            "expire file {path}: file has {} hard links",
            st.nlink()
        ));
        return false;
    }
    let mode = st.mode();
    if !is_ready(mode) || mode & mail_queue::STAT_EXPIRE != 0 {
        return false;
    }
    if let Err(e) = f.set_permissions(fs::Permissions::from_mode(
        (mode | mail_queue::STAT_EXPIRE) & 0o7777,
    )) {
        msg::warn(&format!(
            "expire file {path}: cannot set permission: {}",
            errtext(&e)
        ));
        return false;
    }
    true
}

impl Super {
    /// mail_open_ok: the path of a ready queue file, or `None`.
    fn open_ok(&self, queue: &str, id: &str) -> Option<String> {
        if !mail_queue::name_ok(queue) {
            msg::warn(&format!("bad mail queue name: {queue}"));
            return None;
        }
        if !mail_queue::id_ok(id) {
            return None;
        }
        let path = self.qc.path(queue, id);
        let st = match fs::symlink_metadata(latin1::to_path(&path)) {
            Ok(m) => m,
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    msg::warn(&format!("{path}: {}", errtext(&e)));
                }
                return None;
            }
        };
        if !st.file_type().is_file() {
            msg::warn(&format!("{path}: uid {}: not a regular file", st.uid()));
            return None;
        }
        if !is_ready(st.mode()) {
            return None;
        }
        if st.nlink() > 1 {
            if msg::verbose() > 0 {
                msg::info(&format!(
                    "{path}: uid {}: file has {} links",
                    st.uid(),
                    st.nlink()
                ));
            } else if st.ctime() < now() - 60 {
                msg::warn(&format!(
                    "{path}: uid {}: file has {} links",
                    st.uid(),
                    st.nlink()
                ));
            }
        }
        Some(path)
    }

    fn delete_one(&mut self, queues: &[String], id: &str) {
        if !mail_queue::id_ok(id) {
            msg::warn(&format!("invalid mail queue id: {id}"));
            return;
        }
        let mut found = false;
        for _ in 0..2 {
            for q in queues {
                if !queue_info(q).0 {
                    continue;
                }
                let Some(path) = self.open_ok(q, id) else {
                    continue;
                };
                for lq in LOG_QUEUES {
                    postremove(&self.qc.path(lq, id));
                }
                if postremove(&path) {
                    found = true;
                    msg::info(&format!("{id}: removed"));
                    break;
                }
            }
            if found {
                break;
            }
        }
        self.deleted += found as u32;
    }

    fn requeue_one(&mut self, queues: &[String], id: &str) {
        if !mail_queue::id_ok(id) {
            msg::warn(&format!("invalid mail queue id: {id}"));
            return;
        }
        let mut found = false;
        for _ in 0..2 {
            for q in queues {
                if q == "maildrop" || !queue_info(q).0 {
                    continue;
                }
                let Some(old) = self.open_ok(q, id) else {
                    continue;
                };
                let new = self.qc.path("maildrop", id);
                if postrename(&old, &new) {
                    if let Err(e) = crate::sys::proc::utime(&new, now()) {
                        msg::warn(&format!("{new}: reset time stamps: {}", errtext(&e)));
                    }
                    msg::info(&format!("{id}: requeued"));
                    found = true;
                    break;
                }
            }
            if found {
                break;
            }
        }
        self.requeued += found as u32;
    }

    fn hold_one(&mut self, queues: &[String], id: &str) {
        if !mail_queue::id_ok(id) {
            msg::warn(&format!("invalid mail queue id: {id}"));
            return;
        }
        let mut found = false;
        for _ in 0..2 {
            for q in queues {
                if q == "maildrop" || q == "hold" || !queue_info(q).0 {
                    continue;
                }
                let Some(old) = self.open_ok(q, id) else {
                    continue;
                };
                let new = self.qc.path("hold", id);
                if postrename(&old, &new) {
                    msg::info(&format!("{id}: placed on hold"));
                    found = true;
                    break;
                }
            }
            if found {
                break;
            }
        }
        self.held += found as u32;
    }

    fn release_one(&mut self, queues: &[String], id: &str) {
        if !mail_queue::id_ok(id) {
            msg::warn(&format!("invalid mail queue id: {id}"));
            return;
        }
        let mut found = false;
        for q in queues {
            if q != "hold" {
                continue;
            }
            let Some(old) = self.open_ok(q, id) else {
                continue;
            };
            let new = self.qc.path("deferred", id);
            if postrename(&old, &new) {
                msg::info(&format!("{id}: released from hold"));
                found = true;
                break;
            }
        }
        self.released += found as u32;
    }

    fn expire_one(&mut self, queues: &[String], id: &str) {
        if !mail_queue::id_ok(id) {
            msg::warn(&format!("invalid mail queue id: {id}"));
            return;
        }
        let mut found = false;
        for _ in 0..2 {
            for q in queues {
                if !queue_info(q).0 || q == "maildrop" {
                    continue;
                }
                let Some(path) = self.open_ok(q, id) else {
                    continue;
                };
                if postexpire(&path) {
                    found = true;
                    msg::info(&format!("{id}: expired"));
                    break;
                }
            }
            if found {
                break;
            }
        }
        self.expired += found as u32;
    }

    fn exp_rel_one(&mut self, queues: &[String], id: &str) {
        self.expire_one(queues, id);
        self.release_one(queues, id);
    }

    /// Rename a message file (and its logs) after its inode, with the
    /// `#FIX` suffix that a second pass strips.
    fn fix_queue_id(&self, actual_path: &str, queue: &str, id: &str, ino: u64) {
        let new_id = match mail_queue::long_id_separator(id) {
            None => {
                let head: String = id.chars().take(mail_queue::SH_USEC_PAD).collect();
                format!("{head}{ino:X}")
            }
            Some(z) if self.qc.long_ids => format!(
                "{}z{}",
                &id[..z],
                mail_queue::safe_ultostr(ino, mail_queue::LG_INUM_BASE, 0)
            ),
            Some(z) => {
                let field = &id.as_bytes()[z - mail_queue::LG_USEC_PAD..z];
                let (v, used, over) = mail_queue::safe_strtoul(field, mail_queue::LG_USEC_BASE);
                let err = if used == 0 {
                    !field.is_empty()
                } else {
                    used != field.len() || over
                };
                let usec = if err { 0 } else { v };
                format!("{:05X}{ino:X}", usec as u32 as i32)
            }
        };
        for lq in LOG_QUEUES {
            let old = self.qc.path(lq, id);
            let new = format!("{}{SUFFIX}", self.qc.path(lq, &new_id));
            postrename(&old, &new);
        }
        let new = format!("{}{SUFFIX}", self.qc.path(queue, &new_id));
        postrename(actual_path, &new);
    }

    /// Structure checks, clean-up and the mass operations (super()).
    fn scan(&mut self, queues: &[String], mut action: u32) {
        for queue in queues {
            if msg::verbose() > 0 {
                msg::info(&format!("queue: {queue}"));
            }
            let (message_queue, recurse) = queue_info(queue);
            let wanted_depth = if self.hash_names.iter().any(|n| n == queue) {
                self.qc.hash_depth
            } else {
                0
            };
            if wanted_depth > 0 && !recurse {
                fatal(&format!("{queue} queue must not be hashed"));
            }
            let open = |dir: &str| -> fs::ReadDir {
                match fs::read_dir(latin1::to_path(dir)) {
                    Ok(r) => r,
                    Err(e) => fatal(&format!("open directory {dir}: {}", errtext(&e))),
                }
            };
            let mut stack: Vec<(String, fs::ReadDir)> = vec![(queue.clone(), open(queue))];
            while let Some((dir, rd)) = stack.last_mut() {
                let Some(ent) = rd.next() else {
                    let depth = stack.len() - 1;
                    if depth == 0 {
                        break;
                    }
                    let (d, _) = stack.pop().expect("non-empty");
                    if depth > wanted_depth {
                        postrmdir(&d);
                    }
                    continue;
                };
                let Ok(ent) = ent else { continue };
                let mut name = latin1::from_os(&ent.file_name());
                let dir = dir.clone();
                if name.chars().count() == 1 && recurse {
                    let sub = format!("{dir}/{name}");
                    let rd = open(&sub);
                    stack.push((sub, rd));
                    continue;
                }
                let mut actual_path = format!("{dir}/{name}");
                let Ok(st) = fs::symlink_metadata(latin1::to_path(&actual_path)) else {
                    continue;
                };
                if st.file_type().is_dir() {
                    match fs::remove_dir(latin1::to_path(&actual_path)) {
                        Ok(()) => {
                            if msg::verbose() > 0 {
                                msg::info(&format!("remove subdirectory {actual_path}"));
                            }
                        }
                        Err(e) => {
                            if e.kind() != io::ErrorKind::NotFound {
                                msg::warn(&format!(
                                    "remove subdirectory {actual_path}: {}",
                                    errtext(&e)
                                ));
                            }
                        }
                    }
                    continue;
                }
                if action & DELETE_ALL != 0 {
                    if postremove(&actual_path) && message_queue && is_ready(st.mode()) {
                        self.deleted += 1;
                    }
                    continue;
                }
                if !st.file_type().is_file()
                    || (action & PURGE != 0
                        && message_queue
                        && !is_ready(st.mode())
                        && now() > st.mtime() + MAX_TEMP_AGE)
                {
                    postremove(&actual_path);
                    continue;
                }
                if action & STRUCT != 0 && name.len() >= SUFFIX.len() && name.ends_with(SUFFIX) {
                    name.truncate(name.len() - SUFFIX.len());
                    if !mail_queue::id_ok(&name) {
                        msg::warn(&format!("bogus file name: {actual_path}"));
                        continue;
                    }
                    if message_queue {
                        let (inum, _, err) = queue_id_inum(&name);
                        if err {
                            msg::warn(&format!("bogus file name: {actual_path}"));
                            continue;
                        }
                        if inum != st.ino() {
                            msg::warn(&format!("name/inode mismatch: {actual_path}"));
                            continue;
                        }
                    }
                    let wanted = self.qc.path(queue, &name);
                    if !postrename(&actual_path, &wanted) {
                        continue;
                    }
                    if message_queue {
                        self.inode_fixed += 1;
                        REPAIRING.store(true, Ordering::Relaxed);
                    }
                    actual_path = wanted;
                }
                if !mail_queue::id_ok(&name) {
                    msg::warn(&format!("bogus file name: {actual_path}"));
                    continue;
                }
                if action & STRUCT != 0 && message_queue {
                    let (inum, long_name, err) = queue_id_inum(&name);
                    if err {
                        msg::warn(&format!("bogus file name: {actual_path}"));
                        continue;
                    }
                    if (long_name && !self.qc.long_ids)
                        || (inum != st.ino() && (!long_name || action & STRUCT_RED != 0))
                    {
                        self.inode_mismatch += 1;
                        REPAIRING.store(true, Ordering::Relaxed);
                        action &= !BY_WILDCARD;
                        self.fix_queue_id(&actual_path, queue, &name, st.ino());
                        continue;
                    }
                }
                if action & REQUEUE_ALL != 0 && message_queue && queue != "maildrop" {
                    let wanted = self.qc.path("maildrop", &name);
                    if postrename(&actual_path, &wanted) {
                        self.requeued += 1;
                    }
                    continue;
                }
                if action & (EXPIRE_ALL | EXP_REL_ALL) != 0
                    && message_queue
                    && is_ready(st.mode())
                    && queue != "maildrop"
                    && postexpire(&actual_path)
                {
                    self.expired += 1;
                }
                if action & HOLD_ALL != 0 && message_queue && queue != "maildrop" && queue != "hold"
                {
                    let wanted = self.qc.path("hold", &name);
                    if postrename(&actual_path, &wanted) {
                        self.held += 1;
                    }
                    continue;
                }
                if action & (RELEASE_ALL | EXP_REL_ALL) != 0 && queue == "hold" {
                    let wanted = self.qc.path("deferred", &name);
                    if postrename(&actual_path, &wanted) {
                        self.released += 1;
                    }
                    continue;
                }
                if action & STRUCT != 0 {
                    let wanted = self.qc.path(queue, &name);
                    if actual_path != wanted {
                        self.position_mismatch += 1;
                        REPAIRING.store(true, Ordering::Relaxed);
                        postrename(&actual_path, &wanted);
                        continue;
                    }
                }
            }
        }
    }

    fn operate_stream(&mut self, op: OneOp, queues: &[String]) {
        let stdin = io::stdin();
        let mut lock = stdin.lock();
        let mut line = Vec::new();
        loop {
            line.clear();
            match io::BufRead::read_until(&mut lock, b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            op(self, queues, &latin1::decode(&line));
        }
    }
}

const USAGE: &str = "[-c config_dir] [-d queue_id (delete)] [-e queue_id (expire)] [-f queue_id (expire and/or un-hold)] [-h queue_id (hold)] [-H queue_id (un-hold)] [-p (purge temporary files)] [-r queue_id (requeue)] [-s (structure fix)] [-S (redundant structure fix)][-v (verbose)] [queue...]";

/// postsuper's entry point.
pub fn main(args: Vec<OsString>) -> i32 {
    crate::sys::set_umask(0o022);
    let mut args: Vec<String> = args.iter().map(|a| latin1::from_os(a)).collect();
    if args.is_empty() {
        args.push("postsuper".into());
    }
    if std::env::var_os("MAIL_VERBOSE").is_some() {
        msg::set_verbose(1);
    }
    let prog = match args[0].rfind('/') {
        Some(i) if i + 1 < args[0].len() => args[0][i + 1..].to_string(),
        _ => args[0].clone(),
    };
    args[0] = prog.clone();
    msg::init(&prog);
    if crate::sys::proc::privileged_exec() {
        fatal("this postfix command must not run as a set-uid process");
    }
    if crate::sys::ids::getuid() != 0 {
        fatal("use of this command is reserved for the superuser");
    }

    // First pass: which actions, without doing them.
    let mut action = 0u32;
    let mut ops: Vec<(char, String)> = Vec::new();
    let mut g = Getopt::new(&args, "c:d:e:f:h:H:pr:sSv");
    while let Some(o) = g.next_opt() {
        let (c, arg) = match o {
            Opt::Flag(c, a) => (c, a.unwrap_or_default()),
            bad => {
                if let Some(t) = getopt::error_text(&prog, &bad) {
                    let mut e = latin1::encode(&t);
                    e.push(b'\n');
                    let _ = io::stderr().write_all(&e);
                }
                fatal(&format!("usage: {prog} {USAGE}"));
            }
        };
        let all = arg == "ALL";
        match c {
            'c' => {
                if !arg.starts_with('/') {
                    fatal("-c requires absolute pathname");
                }
                crate::sys::setenv("MAIL_CONFIG", &arg);
            }
            'd' => action |= if all { DELETE_ALL } else { DELETE_ONE },
            'e' => action |= if all { EXPIRE_ALL } else { EXPIRE_ONE },
            'f' => action |= if all { EXP_REL_ALL } else { EXP_REL_ONE },
            'h' => action |= if all { HOLD_ALL } else { HOLD_ONE },
            'H' => action |= if all { RELEASE_ALL } else { RELEASE_ONE },
            'p' => action |= PURGE,
            'r' => action |= if all { REQUEUE_ALL } else { REQUEUE_ONE },
            'S' => action |= STRUCT_RED | STRUCT,
            's' => action |= STRUCT,
            'v' => msg::more_verbose(),
            _ => {}
        }
        if "defhHr".contains(c) {
            ops.push((c, arg));
        }
    }
    let optind = g.optind;

    crate::global::maillog::init_syslog(&crate::global::maillog::mail_task(None, &prog));
    let conf = MailConf::read(None).unwrap_or_else(|e| fatal(&e.0));
    let tag = crate::global::maillog::mail_task(Some(&conf), &prog);
    if let Err(e) = crate::global::maillog::init(&tag, &conf) {
        fatal(&e);
    }
    let ids = crate::global::mail_params::check_accounts(&conf).unwrap_or_else(|e| fatal(&e));
    if let Ok(Some(v)) = conf.lookup_eval("import_environment") {
        for item in v
            .split([',', ' ', '\t', '\r', '\n'])
            .filter(|s| !s.is_empty())
        {
            if let Some(i) = item.find('=') {
                crate::sys::setenv(&item[..i], &item[i + 1..]);
            }
        }
    }
    let qc = QueueConf::from_conf(&conf).unwrap_or_else(|e| fatal(&e.0));
    let names = conf
        .lookup_eval("hash_queue_names")
        .unwrap_or_else(|e| fatal(&e.0))
        .unwrap_or_default();
    let hash_names: Vec<String> = names
        .split([',', ' ', '\t', '\r', '\n'])
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let queue_dir = qc.queue_directory.clone();
    if let Err(e) = std::env::set_current_dir(latin1::to_path(&queue_dir)) {
        fatal(&format!("chdir {queue_dir}: {}", errtext(&e)));
    }
    if let Err(e) = crate::sys::proc::set_ugid(ids.owner_uid, ids.owner_gid) {
        fatal(&e);
    }

    if action == 0 {
        action = STRUCT | PURGE;
    }
    let queues: Vec<String> = if optind < args.len() {
        args[optind..].to_vec()
    } else {
        DEFAULT_QUEUES.iter().map(|s| s.to_string()).collect()
    };
    let mut s = Super {
        qc,
        hash_names,
        requeued: 0,
        held: 0,
        released: 0,
        deleted: 0,
        expired: 0,
        inode_fixed: 0,
        inode_mismatch: 0,
        position_mismatch: 0,
    };
    if action & FOR_REPAIR != 0 {
        s.scan(&queues, action & FOR_REPAIR);
    }
    if s.inode_mismatch > 0 {
        s.scan(&queues, action & FOR_REPAIR);
    }
    if action & BY_QUEUE_ID != 0 && (s.inode_mismatch > 0 || s.inode_fixed > 0) {
        msg::error("QUEUE FILE NAMES WERE CHANGED TO MATCH INODE NUMBERS");
        fatal("CHECK YOUR QUEUE IDS AND RE-ISSUE THE COMMAND");
    }

    for (c, arg) in &ops {
        let (all_action, op): (u32, OneOp) = match c {
            'd' => (DELETE_ALL, Super::delete_one),
            'e' => (EXPIRE_ALL, Super::expire_one),
            'f' => (EXP_REL_ALL, Super::exp_rel_one),
            'h' => (HOLD_ALL, Super::hold_one),
            'H' => (RELEASE_ALL, Super::release_one),
            _ => (REQUEUE_ALL, Super::requeue_one),
        };
        if arg == "ALL" {
            s.scan(&queues, all_action);
        } else if arg == "-" {
            s.operate_stream(op, &queues);
        } else {
            op(&mut s, &queues, arg);
        }
    }

    let plural = |n: u32| if n != 1 { "s" } else { "" };
    if action & (REQUEUE_ONE | REQUEUE_ALL) != 0 {
        msg::info(&format!(
            "Requeued: {} message{}",
            s.requeued,
            plural(s.requeued)
        ));
    }
    if action & (DELETE_ONE | DELETE_ALL) != 0 {
        msg::info(&format!(
            "Deleted: {} message{}",
            s.deleted,
            plural(s.deleted)
        ));
    }
    if action & (EXPIRE_ONE | EXPIRE_ALL | EXP_REL_ONE | EXP_REL_ALL) != 0 {
        msg::info(&format!(
            "Force-expired: {} message{}",
            s.expired,
            plural(s.expired)
        ));
    }
    if action & (HOLD_ONE | HOLD_ALL) != 0 {
        msg::info(&format!(
            "Placed on hold: {} message{}",
            s.held,
            plural(s.held)
        ));
    }
    if action & (RELEASE_ONE | RELEASE_ALL | EXP_REL_ONE | EXP_REL_ALL) != 0 {
        msg::info(&format!(
            "Released from hold: {} message{}",
            s.released,
            plural(s.released)
        ));
    }
    if s.inode_fixed > 0 {
        msg::info(&format!(
            "Renamed to match inode number: {} message{}",
            s.inode_fixed,
            plural(s.inode_fixed)
        ));
    }
    if s.inode_mismatch > 0 || s.inode_fixed > 0 {
        msg::warn("QUEUE FILE NAMES WERE CHANGED TO MATCH INODE NUMBERS");
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inode_from_ids() {
        assert_eq!(queue_id_inum("8E46F9900EC"), (0x9900ec, false, false));
        assert_eq!(queue_id_inum("8E46F"), (0, false, false));
        assert_eq!(queue_id_inum("8E46F0x1a"), (0x1a, false, false));
        assert!(queue_id_inum("8E46FXYZ").2);
        let id = mail_queue::long_queue_id(1795624322, 582767, 1234567);
        assert_eq!(queue_id_inum(&id), (1234567, true, false));
    }
}
