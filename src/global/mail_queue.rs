//! Queue names, queue IDs and queue file paths of Postfix 3.7
//! (`mail_queue.c`, `dir_forest.c`, `safe_ultostr.c`, `file_id.c`).
//!
//! Paths are relative to `queue_directory` as in Postfix (whose programs
//! chdir there); the functions that touch the file system take the queue
//! directory explicitly.
//!
//! Queue IDs:
//! - short: the microseconds as `%05X`, then the inode number as `%lX`;
//! - long (`enable_long_queue_ids`): the seconds in base 52 (at least six
//!   digits), the microseconds in base 52 (exactly four), `z`, the inode in
//!   base 51, with the vowel-free alphabet of `safe_ultostr`.
//!
//! A queue file is complete when its owner bits are rwx (0700); while it is
//! written it is 0600. Group bits mark qmgr states (`S_IRGRP` active /
//! unthrottled, `S_IXGRP` forced expiry).

use crate::global::mail_conf::{ConfError, MailConf};
use crate::global::msg;
use crate::util::latin1;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const MAILDROP: &str = "maildrop";
pub const HOLD: &str = "hold";
pub const INCOMING: &str = "incoming";
pub const ACTIVE: &str = "active";
pub const DEFERRED: &str = "deferred";
pub const TRACE: &str = "trace";
pub const DEFER: &str = "defer";
pub const BOUNCE: &str = "bounce";
pub const CORRUPT: &str = "corrupt";
pub const FLUSH: &str = "flush";
pub const SAVED: &str = "saved";

/// Owner rwx: the file is complete.
pub const STAT_READY: u32 = 0o700;
/// Owner read only: a corrupt file.
pub const STAT_CORRUPT: u32 = 0o400;
/// Group read: unthrottled (active).
pub const STAT_UNTHROTTLE: u32 = 0o040;
/// Group execute: forced expiry.
pub const STAT_EXPIRE: u32 = 0o010;

/// Longest queue ID (or fast-flush log name) accepted.
pub const VALID_HOSTNAME_LEN: usize = 255;

const SAFE_CHARS: &[u8] = b"0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz";

/// Long-ID field widths and bases.
pub const LG_SEC_BASE: u32 = 52;
pub const LG_SEC_PAD: usize = 6;
pub const LG_USEC_BASE: u32 = 52;
pub const LG_USEC_PAD: usize = 4;
pub const LG_TIME_PAD: usize = LG_SEC_PAD + LG_USEC_PAD;
pub const LG_INUM_SEP: u8 = b'z';
pub const LG_INUM_BASE: u32 = 51;
/// Short-ID microseconds width.
pub const SH_USEC_PAD: usize = 5;

/// The queue settings that shape paths and IDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConf {
    /// queue_directory.
    pub queue_directory: String,
    /// hash_queue_names, split.
    pub hash_names: Vec<String>,
    /// hash_queue_depth.
    pub hash_depth: usize,
    /// enable_long_queue_ids.
    pub long_ids: bool,
}

impl Default for QueueConf {
    fn default() -> Self {
        QueueConf {
            queue_directory: "/var/spool/postfix".into(),
            hash_names: vec![DEFERRED.into(), DEFER.into()],
            hash_depth: 1,
            long_ids: false,
        }
    }
}

impl QueueConf {
    /// The settings from main.cf (with Postfix's range checks).
    pub fn from_conf(conf: &MailConf) -> Result<QueueConf, ConfError> {
        let names = conf.get_str("hash_queue_names", 0, 0)?;
        Ok(QueueConf {
            queue_directory: conf.get_str("queue_directory", 1, 0)?,
            hash_names: names
                .split([',', ' ', '\t', '\r', '\n'])
                .filter(|s| !s.is_empty())
                .map(|s| s.to_string())
                .collect(),
            hash_depth: conf.get_int("hash_queue_depth", 1, 0)? as usize,
            long_ids: conf.get_bool("enable_long_queue_ids")?,
        })
    }

    fn hashed(&self, queue: &str) -> bool {
        self.hash_names
            .iter()
            .any(|n| n.eq_ignore_ascii_case(queue))
    }

    /// `queue/` plus the hashed subdirectories for `id` (mail_queue_dir).
    pub fn dir(&self, queue: &str, id: &str) -> String {
        // Room for the ID too: `path` appends it.
        let mut out = String::with_capacity(queue.len() + 1 + 2 * self.hash_depth + id.len());
        out.push_str(queue);
        out.push('/');
        if self.hashed(queue) {
            let key = match long_id_separator(id) {
                Some(z) => hex_usec_of_long(id, z),
                None => id.to_string(),
            };
            out.push_str(&dir_forest(&key, self.hash_depth.max(1)));
        }
        out
    }

    /// The queue file's path relative to the queue directory
    /// (mail_queue_path).
    pub fn path(&self, queue: &str, id: &str) -> String {
        let mut p = self.dir(queue, id);
        p.push_str(id);
        p
    }

    /// Send a one-byte wakeup request to the public trigger service
    /// `public/SERVICE` (a UNIX socket, or a FIFO) without waiting: what
    /// Postfix's mail_trigger does after a message is queued. Errors are
    /// ignored (the service's own timer finds the mail anyway).
    pub fn trigger(&self, service: &str, req: u8) {
        use std::io::Write;
        use std::os::unix::fs::FileTypeExt;
        let path = Path::new(&latin1::to_path(&self.queue_directory))
            .join("public")
            .join(latin1::to_path(service));
        // The socket first (the usual case, and no stat(2) for it): one
        // byte into a freshly connected socket's empty buffer never blocks.
        // A FIFO refuses the connect; then it is written without waiting.
        match std::os::unix::net::UnixStream::connect(&path) {
            Ok(mut c) => {
                let _ = c.write_all(&[req]);
            }
            Err(_) => {
                let Ok(m) = std::fs::metadata(&path) else {
                    return;
                };
                if m.file_type().is_fifo()
                    && let Ok(mut f) = std::fs::OpenOptions::new()
                        .write(true)
                        .custom_flags(libc::O_NONBLOCK)
                        .open(&path)
                {
                    let _ = f.write_all(&[req]);
                }
            }
        }
    }

    /// The absolute path of a queue file.
    pub fn abs_path(&self, queue: &str, id: &str) -> PathBuf {
        self.abs(&self.path(queue, id))
    }

    /// `queue_directory/rel` (what Path::join makes of the two: `rel` is
    /// never absolute here), built in one buffer.
    fn abs(&self, rel: &str) -> PathBuf {
        use std::os::unix::ffi::OsStringExt;
        let qd = &self.queue_directory;
        if rel.starts_with('/') {
            return latin1::to_path(rel);
        }
        let mut b = Vec::with_capacity(qd.len() + 1 + rel.len());
        latin1::encode_into(qd, &mut b);
        if !b.is_empty() && !b.ends_with(b"/") {
            b.push(b'/');
        }
        latin1::encode_into(rel, &mut b);
        PathBuf::from(std::ffi::OsString::from_vec(b))
    }

    /// Open an existing queue file (mail_queue_open without O_CREAT).
    pub fn open(&self, queue: &str, id: &str) -> io::Result<File> {
        File::open(self.abs_path(queue, id))
    }

    /// Create the missing directories above a queue path, mode 0700.
    pub fn mkdirs(&self, rel_path: &str) -> io::Result<()> {
        let dir = match rel_path.rfind('/') {
            Some(i) => &rel_path[..i],
            None => return Ok(()),
        };
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
        b.create(self.abs(dir))
    }

    /// Move a queue file to another queue (mail_queue_rename), creating
    /// hash directories as needed.
    pub fn rename(&self, id: &str, old_queue: &str, new_queue: &str) -> io::Result<()> {
        let old = self.path(old_queue, id);
        let new = self.path(new_queue, id);
        match std::fs::rename(self.abs(&old), self.abs(&new)) {
            Ok(()) => Ok(()),
            Err(e) => {
                if self.mkdirs(&new).is_ok() {
                    std::fs::rename(self.abs(&old), self.abs(&new))
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Remove a queue file.
    pub fn remove(&self, queue: &str, id: &str) -> io::Result<()> {
        std::fs::remove_file(self.abs_path(queue, id))
    }

    /// Create a new queue file the way mail_queue_enter does: a unique
    /// temporary name `queue/usec.pid` with `mode` (0600 while writing),
    /// then a rename to the ID made of the time and the file's inode.
    pub fn enter(&self, queue: &str, mode: u32) -> io::Result<NewQueueFile> {
        let pid = crate::sys::process::pid();
        let (file, temp) = loop {
            let (_, usec) = now();
            let mut temp = String::with_capacity(queue.len() + 24);
            temp.push_str(queue);
            temp.push('/');
            temp.push_str(crate::util::stringops::decimal(&mut [0; 10], usec as u32));
            temp.push('.');
            temp.push_str(crate::util::stringops::decimal(&mut [0; 10], pid));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(self.abs(&temp))
            {
                Ok(f) => break (f, temp),
                Err(e)
                    if e.kind() == io::ErrorKind::AlreadyExists
                        || e.raw_os_error() == Some(libc::EISDIR) =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            }
        };
        use std::os::unix::fs::MetadataExt;
        let ino = file.metadata()?.ino();
        let mut count = 0;
        let mut last_path = String::new();
        loop {
            let (sec, usec) = now();
            let id = if self.long_ids {
                long_queue_id(sec as u64, usec as u64, ino)
            } else {
                short_queue_id(usec as u64, ino)
            };
            let path = self.path(queue, &id);
            last_path.clone_from(&path);
            match std::fs::rename(self.abs(&temp), self.abs(&path)) {
                Ok(()) => {
                    return Ok(NewQueueFile {
                        file,
                        id,
                        path,
                        time: (sec, usec),
                    });
                }
                Err(e)
                    if e.raw_os_error() == Some(libc::EPERM)
                        || e.raw_os_error() == Some(libc::EISDIR) => {}
                Err(e) => {
                    if e.kind() != io::ErrorKind::NotFound || self.mkdirs(&path).is_err() {
                        msg::warn(&format!(
                            "mail_queue_enter: rename {temp} to {path}: {}",
                            crate::global::record::errtext(&e)
                        ));
                    }
                }
            }
            count += 1;
            if count > 1000 {
                let _ = std::fs::remove_file(self.abs(&temp));
                return Err(io::Error::other(format!(
                    "mail_queue_enter: rename {temp} to {last_path}: giving up"
                )));
            }
        }
    }
}

/// A queue file just created by [`QueueConf::enter`].
#[derive(Debug)]
pub struct NewQueueFile {
    /// Open read-write.
    pub file: File,
    /// Its queue ID.
    pub id: String,
    /// Its path relative to the queue directory.
    pub path: String,
    /// The time used in the ID (seconds, microseconds).
    pub time: (i64, i64),
}

/// Make a written queue file count: flush, mode 0700 plus `extra` group
/// bits, fsync (mail_stream_finish).
pub fn finish(file: &File, extra: u32) -> io::Result<()> {
    file.set_permissions(std::fs::Permissions::from_mode(STAT_READY | extra))?;
    file.sync_all()
}

fn now() -> (i64, i64) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_micros() as i64)
}

/// A queue name is 1-100 alphanumerics.
pub fn name_ok(name: &str) -> bool {
    !name.is_empty() && name.len() <= 100 && name.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A queue ID (or fast-flush log name): 1-255 alphanumerics or `_`.
pub fn id_ok(id: &str) -> bool {
    let n = id.chars().count();
    n > 0 && n <= VALID_HOSTNAME_LEN && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// safe_ultostr: `val` in `base` (2..=52) with the vowel-free alphabet,
/// left-padded with '0' to `pad`.
pub fn safe_ultostr(mut val: u64, base: u32, pad: usize) -> String {
    let base = base.clamp(2, 52) as u64;
    let mut digits = Vec::new();
    while val != 0 {
        digits.push(SAFE_CHARS[(val % base) as usize]);
        val /= base;
    }
    while digits.len() < pad {
        digits.push(b'0');
    }
    digits.reverse();
    latin1::decode(&digits)
}

/// safe_strtoul: the value, the number of bytes used (after leading white
/// space), and whether it overflowed.
pub fn safe_strtoul(s: &[u8], base: u32) -> (u64, usize, bool) {
    let base = base.clamp(2, 52) as u64;
    let val_of = |c: u8| SAFE_CHARS.iter().position(|&x| x == c).map(|v| v as u64);
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r') {
        i += 1;
    }
    let start = i;
    let mut sum: u64 = 0;
    let mut overflow = false;
    while i < s.len() {
        let Some(v) = val_of(s[i]).filter(|&v| v < base) else {
            break;
        };
        match sum.checked_mul(base).and_then(|x| x.checked_add(v)) {
            Some(x) => sum = x,
            None => {
                overflow = true;
                sum = u64::MAX;
                while i + 1 < s.len() && val_of(s[i + 1]).is_some_and(|v| v < base) {
                    i += 1;
                }
                i += 1;
                break;
            }
        }
        i += 1;
    }
    if i == start {
        return (0, 0, false);
    }
    (sum, i, overflow)
}

/// A short queue ID.
pub fn short_queue_id(usec: u64, inode: u64) -> String {
    format!("{:05X}{:X}", usec as u32 as i32, inode)
}

/// A long queue ID.
pub fn long_queue_id(sec: u64, usec: u64, inode: u64) -> String {
    format!(
        "{}{}z{}",
        safe_ultostr(sec, LG_SEC_BASE, LG_SEC_PAD),
        safe_ultostr(usec, LG_USEC_BASE, LG_USEC_PAD),
        safe_ultostr(inode, LG_INUM_BASE, 0)
    )
}

/// The position of the long-ID `z` separator, if `id` has the long form.
pub fn long_id_separator(id: &str) -> Option<usize> {
    let z = id.rfind('z')?;
    (z >= LG_TIME_PAD).then_some(z)
}

/// For a long ID, its microseconds as 5-digit hex (what hashing uses); 0
/// when they do not decode.
fn hex_usec_of_long(id: &str, z: usize) -> String {
    let b = id.as_bytes();
    let field = &b[z - LG_USEC_PAD..z];
    let (v, used, over) = safe_strtoul(field, LG_USEC_BASE);
    let ok = used == field.len() && !over;
    let usec = if ok { v } else { 0 };
    format!("{:05X}", usec as u32 as i32)
}

/// The inode number encoded in a queue ID, when it decodes.
pub fn id_inode(id: &str) -> Option<u64> {
    match long_id_separator(id) {
        Some(z) => {
            let tail = &id.as_bytes()[z + 1..];
            let (v, used, over) = safe_strtoul(tail, LG_INUM_BASE);
            (used == tail.len() && !over && !tail.is_empty()).then_some(v)
        }
        None => {
            let tail = id.get(SH_USEC_PAD..)?;
            u64::from_str_radix(tail, 16).ok()
        }
    }
}

/// dir_forest: one `c/` level per depth from the leading characters,
/// `_` when the name is too short.
pub fn dir_forest(path: &str, depth: usize) -> String {
    let mut out = String::new();
    let mut chars = path.chars();
    for _ in 0..depth {
        let c = chars.next().unwrap_or('_');
        out.push(c);
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(short_queue_id(0x907429 & 0xfffff, 0x900EC), "07429900EC");
        assert_eq!(short_queue_id(582767, 0x9900ec), "8E46F9900EC");
        assert_eq!(short_queue_id(5, 0x1a), "000051A");
        assert_eq!(safe_ultostr(0, 52, 6), "000000");
        assert_eq!(safe_ultostr(51, 52, 0), "z");
        assert_eq!(safe_ultostr(52, 52, 0), "10");
        assert_eq!(safe_ultostr(50, 51, 0), "y");
        let id = long_queue_id(1795624322, 582767, 1234567);
        assert!(id_ok(&id));
        assert_eq!(id_inode(&id), Some(1234567));
        assert_eq!(id_inode("8E46F9900EC"), Some(0x9900ec));
        assert!(id_ok("example_com"));
        assert!(!id_ok("a.b"));
        assert!(!id_ok(""));
        assert!(!id_ok(&"a".repeat(256)));
        assert!(name_ok("deferred") && !name_ok("de-ferred") && !name_ok(""));
    }

    #[test]
    fn hashed_paths() {
        let mut q = QueueConf::default();
        assert_eq!(q.path("deferred", "9A5B5990152"), "deferred/9/9A5B5990152");
        assert_eq!(q.path("defer", "9A5B5990152"), "defer/9/9A5B5990152");
        assert_eq!(q.path("hold", "9A5B5990152"), "hold/9A5B5990152");
        q.hash_depth = 3;
        q.hash_names = vec!["HOLD".into()];
        assert_eq!(q.path("hold", "AB"), "hold/A/B/_/AB");
        // A long ID hashes by its microseconds in hex.
        let id = long_queue_id(1795624322, 0x12345, 77);
        assert_eq!(q.dir("hold", &id), "hold/1/2/3/");
        assert_eq!(dir_forest("x", 2), "x/_/");
    }

    #[test]
    fn enter_and_finish() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("rostfix-mq-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("incoming")).unwrap();
        for long in [false, true] {
            let q = QueueConf {
                queue_directory: dir.display().to_string(),
                hash_names: vec!["incoming".into()],
                hash_depth: 2,
                long_ids: long,
            };
            let nf = q.enter("incoming", 0o600).unwrap();
            let md = std::fs::metadata(q.abs_path("incoming", &nf.id)).unwrap();
            assert_eq!(md.mode() & 0o777, 0o600);
            assert_eq!(id_inode(&nf.id), Some(md.ino()));
            assert!(id_ok(&nf.id));
            assert_eq!(nf.path, q.path("incoming", &nf.id));
            if !long {
                assert_eq!(nf.id, short_queue_id(nf.time.1 as u64, md.ino()));
            }
            finish(&nf.file, STAT_UNTHROTTLE).unwrap();
            let md = std::fs::metadata(q.abs_path("incoming", &nf.id)).unwrap();
            assert_eq!(md.mode() & 0o777, 0o740);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn strtoul() {
        assert_eq!(safe_strtoul(b"10", 52), (52, 2, false));
        assert_eq!(safe_strtoul(b"  1z", 51), (1, 3, false));
        assert_eq!(safe_strtoul(b"a", 52), (0, 0, false));
        let (v, _, over) = safe_strtoul(b"zzzzzzzzzzzzzzzzzzzz", 52);
        assert!(over && v == u64::MAX);
    }
}
