//! Process credentials, the password entry with its GECOS field (for
//! sendmail's full name; sys::process has the other lookups), resource
//! limits, signal dispositions and file times: what the submission commands
//! (sendmail, postdrop) and postsuper need from the kernel and the C library.

use crate::util::latin1;
use std::ffi::CString;
use std::sync::atomic::{AtomicPtr, Ordering};

pub use super::pwd::Passwd;

/// getpwuid(3): the entry, or `None` for an unknown uid or a failed lookup.
pub fn getpwuid(uid: u32) -> Option<Passwd> {
    super::pwd::getpwuid(uid).ok().flatten()
}

/// Whether the process runs with set-uid/set-gid privileges (Postfix's
/// unsafe(): real and effective IDs differ).
pub fn privileged_exec() -> bool {
    // SAFETY: these calls cannot fail and have no side effects.
    unsafe { libc::geteuid() != libc::getuid() || libc::getegid() != libc::getgid() }
}

/// Postfix's set_ugid(): permanently become `uid`/`gid` with `gid` as the
/// only supplementary group. The error is Postfix's fatal text.
pub fn set_ugid(uid: u32, gid: u32) -> Result<(), String> {
    let err = || crate::sys::strerror(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    // SAFETY: these calls only change this process's credentials; the groups
    // array outlives the call. Commands call this while single-threaded.
    unsafe {
        if libc::geteuid() != 0 && libc::seteuid(0) < 0 {
            return Err(format!("seteuid(0): {}", err()));
        }
        if libc::setgid(gid) < 0 {
            return Err(format!("setgid({gid}): {}", err()));
        }
        let groups = [gid as libc::gid_t];
        if libc::setgroups(1, groups.as_ptr()) < 0 {
            return Err(format!("setgroups(1, &{gid}): {}", err()));
        }
        if libc::setuid(uid) < 0 {
            return Err(format!("setuid({uid}): {}", err()));
        }
    }
    Ok(())
}

/// The soft RLIMIT_FSIZE (get_file_limit), or `None` when unlimited.
pub fn file_limit() -> Option<u64> {
    // SAFETY: an all-zero rlimit is a valid value.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: rl is a live local of the right type.
    if unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut rl) } < 0 {
        return None;
    }
    (rl.rlim_cur != libc::RLIM_INFINITY).then_some(rl.rlim_cur)
}

/// Set the soft and hard RLIMIT_FSIZE (set_file_limit).
pub fn set_file_limit(limit: u64) -> std::io::Result<()> {
    let rl = libc::rlimit {
        rlim_cur: limit as libc::rlim_t,
        rlim_max: limit as libc::rlim_t,
    };
    // SAFETY: rl is a live local of the right type.
    if unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &rl) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Ignore a signal (SIG_IGN).
pub fn ignore_signal(sig: i32) {
    // SAFETY: installing SIG_IGN has no memory-safety requirements.
    unsafe {
        libc::signal(sig, libc::SIG_IGN);
    }
}

/// Whether a signal is currently ignored (the disposition inherited from the
/// parent), without changing it.
pub fn signal_ignored(sig: i32) -> bool {
    // SAFETY: an all-zero sigaction is valid; passing a null new action
    // only queries the current one.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: see above; old is a live local of the right type.
    let rc = unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) };
    rc == 0 && old.sa_sigaction == libc::SIG_IGN
}

/// The file that [`remove_on_signal`] deletes, as a leaked C string (or null).
static REMOVE_PATH: AtomicPtr<libc::c_char> = AtomicPtr::new(std::ptr::null_mut());

extern "C" fn remove_and_exit(sig: libc::c_int) {
    // Only async-signal-safe calls here: signal(2), unlink(2), _exit(2).
    // SAFETY: signal() with SIG_IGN is async-signal-safe; the SIGINT
    // disposition doubles as a guard against nested calls (as in Postfix).
    unsafe {
        if libc::signal(libc::SIGINT, libc::SIG_IGN) != libc::SIG_IGN {
            libc::signal(libc::SIGQUIT, libc::SIG_IGN);
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            let p = REMOVE_PATH.swap(std::ptr::null_mut(), Ordering::SeqCst);
            if !p.is_null() {
                libc::unlink(p);
            }
            libc::_exit(sig);
        }
    }
}

/// Catch `sigs` so that the file registered with [`set_remove_path`] is
/// removed and the process exits with the signal number as its status. A
/// signal in `if_not_ignored` is caught only when the parent did not
/// ignore it.
pub fn remove_on_signal(sigs: &[i32], if_not_ignored: &[i32]) {
    let handler = remove_and_exit as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for &s in sigs {
        // SAFETY: the handler only makes async-signal-safe calls.
        unsafe {
            libc::signal(s, handler);
        }
    }
    for &s in if_not_ignored {
        if !signal_ignored(s) {
            // SAFETY: as above.
            unsafe {
                libc::signal(s, handler);
            }
        }
    }
}

/// Register (or, with `None`, forget) the file to remove on a signal.
pub fn set_remove_path(path: Option<&str>) {
    let new = match path.and_then(|p| CString::new(latin1::encode(p)).ok()) {
        Some(c) => c.into_raw(),
        None => std::ptr::null_mut(),
    };
    let old = REMOVE_PATH.swap(new, Ordering::SeqCst);
    if !old.is_null() {
        // SAFETY: `old` came from CString::into_raw above and nobody else
        // holds it any more (the swap took it out of the static).
        drop(unsafe { CString::from_raw(old) });
    }
}

/// Remove the registered file now (the run-time error handler), as the
/// signal handler would, without exiting. Returns whether one was set.
pub fn remove_registered() -> bool {
    let p = REMOVE_PATH.swap(std::ptr::null_mut(), Ordering::SeqCst);
    if p.is_null() {
        return false;
    }
    // SAFETY: p came from CString::into_raw and is now exclusively ours.
    let c = unsafe { CString::from_raw(p) };
    // SAFETY: c is a valid NUL-terminated path.
    unsafe {
        libc::unlink(c.as_ptr());
    }
    true
}

/// utime(2) with both times set to `t` (seconds since the epoch).
pub fn utime(path: &str, t: i64) -> std::io::Result<()> {
    let c = CString::new(latin1::encode(path))
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let buf = libc::utimbuf {
        actime: t as libc::time_t,
        modtime: t as libc::time_t,
    };
    // SAFETY: c and buf are live locals of the right types.
    if unsafe { libc::utime(c.as_ptr(), &buf) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// sleep(3) for whole seconds (Postfix's fatal-error pause).
pub fn sleep(secs: u64) {
    std::thread::sleep(std::time::Duration::from_secs(secs));
}

/// Free space of the file system that holds `path`: (block size, blocks
/// available to unprivileged users), as Postfix's fsspace() reports it.
pub fn fsspace(path: &str) -> std::io::Result<(u64, u64)> {
    let c = CString::new(path.as_bytes()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    // SAFETY: statvfs is plain old data; all-zero bytes are a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable
    // statvfs the call fills in; neither outlives this function.
    let r = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.f_frsize as u64, st.f_bavail as u64))
}
