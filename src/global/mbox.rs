//! Appending mail to files the way Postfix's local and virtual agents do:
//! safe_open (refuse symlinks, hard links, directories, files replaced
//! under us), dotlock files, kernel locks (mbox_open), the mailbox DSN codes
//! (mbox_dsn) and the copy of a queue file's content with the From_ line
//! and the Return-Path:, X-Original-To: and Delivered-To: headers
//! (mail_copy).
//!
//! Everything here runs with whatever credentials the calling process has;
//! callers switch identity in a child process first (see
//! `crate::sys::privsep`).

use crate::global::deliver_request::Dsn;
use crate::global::quote_822_local::quote_822_local;
use crate::global::rec_type;
use crate::global::record::{QueueStream, Rec, rec_get};
use crate::sys::lock;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

/// The text of an errno, as `%m` prints it.
pub fn errtext(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => crate::sys::strerror(code),
        None => e.to_string(),
    }
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// Postfix's mbox_dsn: the enhanced status for an errno.
pub fn mbox_dsn(err: i32, def: &str) -> &str {
    match err {
        libc::EAGAIN | libc::ESTALE => "4.2.0",
        libc::ENOSPC => "4.3.0",
        libc::EDQUOT | libc::EFBIG => "5.2.2",
        _ => def,
    }
}

/// mailbox_delivery_lock / virtual_mailbox_lock methods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockStyle {
    pub flock: bool,
    pub fcntl: bool,
    pub dotlock: bool,
    /// A dotlock that cannot be created is only a warning (file delivery).
    pub dot_may_fail: bool,
}

impl LockStyle {
    /// Parse a lock list (`fcntl, dotlock`); `Err` names the bad word.
    pub fn parse(text: &str) -> Result<LockStyle, String> {
        let mut s = LockStyle::default();
        for w in text.split(|c: char| c == ',' || c.is_whitespace()) {
            match w {
                "" => {}
                "flock" => s.flock = true,
                "fcntl" => s.fcntl = true,
                "dotlock" => s.dotlock = true,
                _ => return Err(w.to_string()),
            }
        }
        Ok(s)
    }
}

/// Lock retry parameters (deliver_lock_attempts, deliver_lock_delay,
/// stale_lock_time).
#[derive(Debug, Clone, Copy)]
pub struct LockParams {
    pub tries: u32,
    pub delay_secs: u64,
    pub stale_secs: i64,
}

impl Default for LockParams {
    fn default() -> Self {
        LockParams {
            tries: 20,
            delay_secs: 1,
            stale_secs: 500,
        }
    }
}

fn rand_sleep(base_secs: u64) {
    // Postfix sleeps delay +/- delay/2; a fixed fraction is close enough and
    // keeps tests deterministic.
    let ms = base_secs * 1000;
    let jitter = (std::process::id() as u64 % 1000) * ms / 2000;
    std::thread::sleep(std::time::Duration::from_millis(ms / 2 + jitter));
}

/// Create `path.lock` exclusively (Postfix's dot_lockfile). The error text
/// is "unable to create lock file X: %m".
pub fn dot_lockfile(path: &str, p: &LockParams) -> Result<(), (io::Error, String)> {
    let lock = format!("{path}.lock");
    let mut count = 1;
    loop {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o000)
            .open(crate::util::latin1::to_path(&lock))
        {
            Ok(_) => return Ok(()),
            Err(e) => {
                if count >= p.tries || e.raw_os_error() != Some(libc::EEXIST) {
                    let t = format!("unable to create lock file {lock}: {}", errtext(&e));
                    return Err((e, t));
                }
                if let Ok(md) = std::fs::metadata(crate::util::latin1::to_path(&lock)) {
                    let now = crate::global::deliver_request::now().0;
                    if now > md.ctime() + p.stale_secs
                        && let Err(e2) = std::fs::remove_file(crate::util::latin1::to_path(&lock))
                        && e2.kind() != io::ErrorKind::NotFound
                    {
                        let t = format!("unable to create lock file {lock}: {}", errtext(&e));
                        return Err((e, t));
                    }
                }
            }
        }
        count += 1;
        rand_sleep(p.delay_secs);
    }
}

/// Remove `path.lock`.
pub fn dot_unlockfile(path: &str) {
    let _ = std::fs::remove_file(crate::util::latin1::to_path(&format!("{path}.lock")));
}

/// Why safe_open refused, with the errno it reports.
#[derive(Debug)]
pub struct OpenFail {
    pub errno: i32,
    pub text: String,
}

fn open_exist(path: &str, append: bool) -> Result<(File, Metadata), OpenFail> {
    let pb = crate::util::latin1::to_path(path);
    let f = OpenOptions::new()
        .write(true)
        .append(append)
        .custom_flags(libc::O_NONBLOCK)
        .open(&pb)
        .map_err(|e| OpenFail {
            errno: errno(&e),
            text: format!("cannot open file: {}", errtext(&e)),
        })?;
    let fst = f.metadata().map_err(|e| OpenFail {
        errno: errno(&e),
        text: format!("cannot open file: {}", errtext(&e)),
    })?;
    let fail = |errno: i32, text: String| Err(OpenFail { errno, text });
    if fst.nlink() != 1 {
        return fail(libc::EPERM, format!("file has {} hard links", fst.nlink()));
    }
    if fst.is_dir() {
        return fail(libc::EISDIR, "file is a directory".into());
    }
    let lst = match std::fs::symlink_metadata(&pb) {
        Ok(m) => m,
        Err(e) => {
            return fail(
                libc::EPERM,
                format!("file status changed unexpectedly: {}", errtext(&e)),
            );
        }
    };
    if lst.file_type().is_symlink() {
        if lst.uid() == 0 {
            let parent = std::path::Path::new(&pb)
                .parent()
                .map(|p| {
                    if p.as_os_str().is_empty() {
                        std::path::Path::new(".")
                    } else {
                        p
                    }
                })
                .unwrap_or(std::path::Path::new("/"));
            if let Ok(ps) = std::fs::metadata(parent)
                && ps.uid() == 0
                && ps.mode() & 0o022 == 0
            {
                return Ok((f, fst));
            }
        }
        return fail(libc::EPERM, "file is a symbolic link".into());
    }
    if fst.dev() != lst.dev()
        || fst.ino() != lst.ino()
        || fst.nlink() != lst.nlink()
        || fst.mode() != lst.mode()
    {
        return fail(libc::EPERM, "file status changed unexpectedly".into());
    }
    Ok((f, fst))
}

fn open_create(
    path: &str,
    mode: u32,
    chown: Option<(u32, u32)>,
    append: bool,
) -> Result<(File, Metadata), OpenFail> {
    let f = OpenOptions::new()
        .write(true)
        .append(append)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NONBLOCK)
        .open(crate::util::latin1::to_path(path))
        .map_err(|e| OpenFail {
            errno: errno(&e),
            text: format!("cannot create file exclusively: {}", errtext(&e)),
        })?;
    if let Some((u, g)) = chown
        && let Err(e) = std::os::unix::fs::fchown(&f, Some(u), Some(g))
    {
        crate::global::msg::warn(&format!(
            "{path}: cannot change file ownership: {}",
            errtext(&e)
        ));
        return Err(OpenFail {
            errno: errno(&e),
            text: String::new(),
        });
    }
    let md = f.metadata().map_err(|e| OpenFail {
        errno: errno(&e),
        text: errtext(&e),
    })?;
    Ok((f, md))
}

/// Postfix's safe_open with O_CREAT (open or create) and O_APPEND.
pub fn safe_open_append(
    path: &str,
    mode: u32,
    chown: Option<(u32, u32)>,
) -> Result<(File, Metadata), OpenFail> {
    match open_exist(path, true) {
        Err(e) if e.errno == libc::ENOENT => match open_create(path, mode, chown, true) {
            Err(e2) if e2.errno == libc::EEXIST => open_exist(path, true),
            r => r,
        },
        r => r,
    }
}

/// An open, locked mailbox.
pub struct Mbox {
    pub path: String,
    pub file: File,
    pub meta: Metadata,
    dotlocked: bool,
}

impl Drop for Mbox {
    fn drop(&mut self) {
        if self.dotlocked {
            dot_unlockfile(&self.path);
        }
    }
}

/// Lock and open (or create) a mailbox file (Postfix's mbox_open). The
/// error is the DSN with Postfix's reason text.
pub fn mbox_open(
    path: &str,
    mode: u32,
    chown: Option<(u32, u32)>,
    style: LockStyle,
    params: &LockParams,
    def_dsn: &str,
) -> Result<Mbox, Dsn> {
    let mut dotlocked = false;
    let pb = crate::util::latin1::to_path(path);
    if style.dotlock {
        let regular_or_missing = match std::fs::metadata(&pb) {
            Err(_) => true,
            Ok(m) => m.file_type().is_file(),
        };
        if regular_or_missing {
            match dot_lockfile(path, params) {
                Ok(()) => dotlocked = true,
                Err((e, text)) => {
                    if errno(&e) == libc::EEXIST {
                        return Err(Dsn::new(mbox_dsn(libc::EAGAIN, def_dsn), text));
                    } else if style.dot_may_fail {
                        crate::global::msg::warn(&text);
                    } else {
                        return Err(Dsn::new(mbox_dsn(errno(&e), def_dsn), text));
                    }
                }
            }
        }
    }
    let unlock = |dl: bool| {
        if dl {
            dot_unlockfile(path);
        }
    };
    let (file, meta) = match safe_open_append(path, mode, chown) {
        Ok(v) => v,
        Err(e) => {
            unlock(dotlocked);
            return Err(Dsn::new(mbox_dsn(e.errno, def_dsn), e.text));
        }
    };
    if meta.file_type().is_file() {
        let mut lock_err = None;
        if style.flock {
            lock_err = try_lock(&file, params, true).err();
        }
        if lock_err.is_none() && style.fcntl {
            lock_err = try_lock(&file, params, false).err();
        }
        if let Some(e) = lock_err {
            unlock(dotlocked);
            return Err(Dsn::new(
                mbox_dsn(errno(&e), def_dsn),
                format!("unable to lock for exclusive access: {}", errtext(&e)),
            ));
        }
        match file.metadata() {
            Ok(m) if m.nlink() == 1 => {}
            _ => {
                unlock(dotlocked);
                crate::global::msg::warn(&format!("{path}: file status changed unexpectedly"));
                return Err(Dsn::new(
                    mbox_dsn(libc::EAGAIN, def_dsn),
                    "target file status changed unexpectedly",
                ));
            }
        }
    }
    Ok(Mbox {
        path: path.to_string(),
        file,
        meta,
        dotlocked,
    })
}

fn try_lock(file: &File, params: &LockParams, flock_style: bool) -> io::Result<()> {
    let mut i = 1;
    loop {
        let got = if flock_style {
            lock::flock_try(file, lock::LockOp::Exclusive)?
        } else {
            lock::fcntl_try_exclusive(file.as_raw_fd())?
        };
        if got {
            return Ok(());
        }
        if i >= params.tries {
            return Err(io::Error::from_raw_os_error(libc::EAGAIN));
        }
        i += 1;
        rand_sleep(params.delay_secs);
    }
}

/// mail_copy flags.
pub mod copy {
    pub const QUOTE: u32 = 1 << 0;
    pub const TOFILE: u32 = 1 << 1;
    pub const FROM: u32 = 1 << 2;
    pub const DELIVERED: u32 = 1 << 3;
    pub const RETURN_PATH: u32 = 1 << 4;
    pub const DOT: u32 = 1 << 5;
    pub const BLANK: u32 = 1 << 6;
    pub const ORIG_RCPT: u32 = 1 << 7;
    pub const MBOX: u32 = FROM | QUOTE | TOFILE | DELIVERED | RETURN_PATH | BLANK | ORIG_RCPT;
}

/// What mail_copy reports.
#[derive(Debug, PartialEq, Eq)]
pub enum CopyError {
    /// The queue file content is corrupt (defer without a reason).
    Corrupt,
    /// Reading or writing failed; the DSN has Postfix's reason.
    Io(Dsn),
}

/// The envelope facts mail_copy writes into headers.
pub struct CopyAttr<'a> {
    pub sender: &'a str,
    pub orig_rcpt: &'a str,
    pub delivered: &'a str,
    /// enable_original_recipient.
    pub enable_orcpt: bool,
}

/// A writer that refuses to let a file grow past a limit (EFBIG), as the
/// RLIMIT_FSIZE that Postfix sets does.
pub struct Limited<W: Write> {
    pub inner: W,
    pub written: u64,
    pub limit: Option<u64>,
}

impl<W: Write> Write for Limited<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut n = buf.len();
        if let Some(l) = self.limit {
            let room = l.saturating_sub(self.written);
            if room == 0 && !buf.is_empty() {
                return Err(io::Error::from_raw_os_error(libc::EFBIG));
            }
            n = n.min(room as usize);
        }
        let w = self.inner.write(&buf[..n])?;
        self.written += w as u64;
        Ok(w)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The From_ line Postfix writes: `From sender  Wed Nov 25 16:25:34 2026`.
pub fn from_line(sender: &str, now: i64, eol: &str) -> String {
    let who = if sender.is_empty() {
        "MAILER-DAEMON".to_string()
    } else {
        quote_822_local(sender)
    };
    let date = crate::sys::time::asctime_local(now).unwrap_or_default();
    let date: String = date.chars().take(24).collect();
    format!("From {who}  {date}{eol}")
}

/// Copy the message content from `src` (positioned at the content) to
/// `dst`, prepending the headers `flags` ask for (Postfix's mail_copy).
/// With `copy::TOFILE`, `dst_file` is fsynced and truncated back on error.
pub fn mail_copy(
    attr: &CopyAttr,
    src: &mut QueueStream,
    dst: &mut dyn Write,
    dst_file: Option<&File>,
    flags: u32,
    eol: &str,
) -> Result<(), CopyError> {
    let orig_len = match (flags & copy::TOFILE != 0, dst_file) {
        (true, Some(mut f)) => f.seek(SeekFrom::End(0)).ok(),
        _ => None,
    };
    // The output and record buffers live on in this thread: an agent
    // process delivers many messages, and a fresh large buffer each time
    // makes malloc consolidate its free lists on every delivery.
    let (mut out, mut buf) = COPY_BUFS.with(|b| std::mem::take(&mut *b.borrow_mut()));
    out.clear();
    let latin1 = crate::util::latin1::encode_into;
    if flags & (copy::FROM | copy::RETURN_PATH) != 0 {
        let q = quote_822_local(attr.sender);
        if flags & copy::FROM != 0 {
            latin1(
                &from_line(attr.sender, crate::global::deliver_request::now().0, eol),
                &mut out,
            );
        }
        if flags & copy::RETURN_PATH != 0 {
            let rp = if attr.sender.is_empty() { "" } else { &q };
            out.extend_from_slice(b"Return-Path: <");
            latin1(rp, &mut out);
            out.push(b'>');
            latin1(eol, &mut out);
        }
    }
    if flags & copy::ORIG_RCPT != 0 && attr.enable_orcpt && !attr.orig_rcpt.is_empty() {
        out.extend_from_slice(b"X-Original-To: ");
        latin1(&quote_822_local(attr.orig_rcpt), &mut out);
        latin1(eol, &mut out);
    }
    if flags & copy::DELIVERED != 0 {
        out.extend_from_slice(b"Delivered-To: ");
        latin1(&quote_822_local(attr.delivered), &mut out);
        latin1(eol, &mut out);
    }
    let result = copy_body(src, dst, dst_file, flags, eol, orig_len, &mut out, &mut buf);
    if out.capacity() <= KEEP_BUF && buf.capacity() <= KEEP_BUF {
        COPY_BUFS.with(|b| *b.borrow_mut() = (out, buf));
    }
    result
}

/// Buffers larger than this are not kept for the next delivery.
const KEEP_BUF: usize = 1 << 20;

thread_local! {
    static COPY_BUFS: std::cell::RefCell<(Vec<u8>, Vec<u8>)> =
        std::cell::RefCell::new((Vec::with_capacity(8192), Vec::new()));
}

/// The rest of [`mail_copy`]: the content records after the prepended
/// headers already in `out`.
#[allow(clippy::too_many_arguments)]
fn copy_body(
    src: &mut QueueStream,
    dst: &mut dyn Write,
    dst_file: Option<&File>,
    flags: u32,
    eol: &str,
    orig_len: Option<u64>,
    out: &mut Vec<u8>,
    buf: &mut Vec<u8>,
) -> Result<(), CopyError> {
    let mut write_err: Option<io::Error> = None;
    let mut read_err = false;
    let mut corrupt = false;
    let mut prev = rec_type::NORM;
    let mut last: u8;
    let eolb = eol.as_bytes();
    loop {
        let t = match rec_get(src, buf, 0) {
            Rec::Type(t) => t,
            Rec::Eof => {
                read_err = false;
                last = 0;
                break;
            }
            Rec::Error => {
                last = 0;
                break;
            }
        };
        last = t;
        if t != rec_type::NORM && t != rec_type::CONT {
            break;
        }
        if prev == rec_type::NORM {
            if flags & copy::QUOTE != 0 && buf.starts_with(b"From ") {
                out.push(b'>');
            }
            if flags & copy::DOT != 0 && buf.first() == Some(&b'.') {
                out.push(b'.');
            }
        }
        out.extend_from_slice(buf);
        if t == rec_type::NORM {
            out.extend_from_slice(eolb);
        }
        prev = t;
        if out.len() >= 65536 {
            if let Err(e) = dst.write_all(out) {
                write_err = Some(e);
                break;
            }
            out.clear();
        }
    }
    if write_err.is_none() {
        if last != rec_type::XTRA {
            crate::global::msg::warn(&format!(
                "bad record type: {} in message content",
                last as i32
            ));
            corrupt = true;
        }
        if prev != rec_type::NORM {
            out.extend_from_slice(eolb);
        }
        if flags & copy::BLANK != 0 {
            out.extend_from_slice(eolb);
        }
        if let Err(e) = dst.write_all(out).and_then(|_| dst.flush()) {
            write_err = Some(e);
        }
    }
    if write_err.is_none()
        && flags & copy::TOFILE != 0
        && let Some(f) = dst_file
        && let Err(e) = f.sync_all()
    {
        write_err = Some(e);
    }
    if (corrupt || read_err || write_err.is_some())
        && let (Some(len), Some(f)) = (orig_len, dst_file)
    {
        let _ = f.set_len(len);
    }
    if let Some(e) = write_err {
        return Err(CopyError::Io(Dsn::new(
            mbox_dsn(errno(&e), "5.3.0"),
            format!("error writing message: {}", errtext(&e)),
        )));
    }
    if corrupt {
        return Err(CopyError::Corrupt);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_style_and_dsn() {
        let s = LockStyle::parse("fcntl, dotlock").unwrap();
        assert!(s.fcntl && s.dotlock && !s.flock);
        assert_eq!(LockStyle::parse("fcntl, bogus"), Err("bogus".into()));
        assert_eq!(mbox_dsn(libc::EFBIG, "5.2.0"), "5.2.2");
        assert_eq!(mbox_dsn(libc::EAGAIN, "5.2.0"), "4.2.0");
        assert_eq!(mbox_dsn(libc::ENOSPC, "5.2.0"), "4.3.0");
        assert_eq!(mbox_dsn(libc::EPERM, "5.2.0"), "5.2.0");
    }

    #[test]
    fn safe_open_refuses_links() {
        let d = std::env::temp_dir().join(format!("rostfix-mbox-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        {
            // A world-writable directory, like a mail spool: links in it are
            // never trusted.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
        }
        let p = |n: &str| d.join(n).to_string_lossy().to_string();
        std::fs::write(p("target"), b"").unwrap();
        std::os::unix::fs::symlink(p("target"), p("link")).unwrap();
        std::fs::hard_link(p("target"), p("hard")).unwrap();
        std::fs::create_dir(p("dir")).unwrap();
        let e = safe_open_append(&p("link"), 0o600, None).unwrap_err();
        // The target has two links, which is checked first.
        assert_eq!(e.text, "file has 2 hard links");
        std::fs::remove_file(p("hard")).unwrap();
        let e = safe_open_append(&p("link"), 0o600, None).unwrap_err();
        assert_eq!(e.text, "file is a symbolic link");
        if crate::sys::geteuid() == 0 {
            // A root-owned link in a root-owned, not group/world-writable
            // directory is followed, as Postfix allows.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
            assert!(safe_open_append(&p("link"), 0o600, None).is_ok());
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
        }
        let e = safe_open_append(&p("dir"), 0o600, None).unwrap_err();
        assert!(
            e.text.starts_with("cannot open file: Is a directory"),
            "{}",
            e.text
        );
        assert!(safe_open_append(&p("new"), 0o600, None).is_ok());
        assert!(safe_open_append(&p("new"), 0o600, None).is_ok());
        let m = mbox_open(
            &p("box"),
            0o600,
            None,
            LockStyle::parse("fcntl, dotlock").unwrap(),
            &LockParams::default(),
            "5.2.0",
        )
        .unwrap();
        assert!(d.join("box.lock").exists());
        drop(m);
        assert!(!d.join("box.lock").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
