//! The only place for `unsafe`: thin wrappers around system calls.

pub mod dir;
pub mod env;
pub mod epoll;
pub mod ids;
pub mod inet;
pub mod net;
pub mod pcre;
pub mod proc;
pub mod pwd;
pub mod regex;
pub mod resolve;
pub mod start;
pub mod time;

/// The kernel's host name (gethostname(2)), as one-char-per-byte text.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is a valid writable buffer of the given length; gethostname
    // writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    crate::util::latin1::decode(&buf[..n])
}

/// Set the process umask.
pub fn set_umask(mask: u32) {
    // SAFETY: umask(2) cannot fail and only changes this process's mask.
    unsafe {
        libc::umask(mask as libc::mode_t);
    }
}

/// strerror(3) text for an errno value, as C programs print it.
pub fn strerror(code: i32) -> String {
    // SAFETY: strerror returns a pointer to a NUL-terminated string that stays
    // valid until the next strerror call on this thread; we copy it at once.
    let p = unsafe { libc::strerror(code) };
    if p.is_null() {
        return format!("Unknown error {code}");
    }
    // SAFETY: p is non-null and NUL-terminated (see above).
    let s = unsafe { std::ffi::CStr::from_ptr(p) };
    crate::util::latin1::decode(s.to_bytes())
}

pub mod lmdb;
pub mod lock;
pub mod privsep;
pub mod process;
pub mod syslog;
pub mod tcp;

/// Set the process umask and return the previous one.
pub fn umask_swap(mask: u32) -> u32 {
    // SAFETY: umask(2) cannot fail and only changes this process's mask.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

/// The real user ID (getuid(2)).
pub fn getuid() -> u32 {
    // SAFETY: getuid(2) has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// The effective user ID (geteuid(2)).
pub fn geteuid() -> u32 {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The effective group ID (getegid(2)).
pub fn getegid() -> u32 {
    // SAFETY: getegid(2) has no preconditions and cannot fail.
    unsafe { libc::getegid() }
}

/// Postfix's set_eugid(): become `uid`/`gid` as effective IDs (with `gid` as
/// the only supplementary group), going through root when needed. The error
/// is Postfix's fatal text.
pub fn set_eugid(uid: u32, gid: u32) -> Result<(), String> {
    let err = || {
        strerror(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EPERM),
        )
    };
    // SAFETY: seteuid/setegid/setgroups only change this process's
    // credentials; the groups array outlives the call. The process is
    // single-threaded when commands call this, and glibc applies the change
    // to every thread anyway.
    unsafe {
        if libc::geteuid() != 0 && libc::seteuid(0) != 0 {
            return Err(format!("set_eugid: seteuid(0): {}", err()));
        }
        if libc::setegid(gid) != 0 {
            return Err(format!("set_eugid: setegid({gid}): {}", err()));
        }
        let groups = [gid as libc::gid_t];
        if libc::setgroups(1, groups.as_ptr()) != 0 {
            return Err(format!("set_eugid: setgroups({gid}): {}", err()));
        }
        if uid != 0 && libc::seteuid(uid) != 0 {
            return Err(format!("set_eugid: seteuid({uid}): {}", err()));
        }
    }
    Ok(())
}

/// Set an environment variable. Only for single-threaded command start-up
/// (import_environment, MAIL_CONFIG), as Postfix's setenv calls.
pub fn setenv(name: &str, value: &str) {
    let n = crate::util::latin1::to_path(name);
    let v = crate::util::latin1::to_path(value);
    // SAFETY: called by commands before they start any thread, so no other
    // thread can read the environment concurrently.
    unsafe { std::env::set_var(n, v) };
}

/// Remove an environment variable. Only for single-threaded start-up (the
/// import_environment filter), like [`setenv`].
pub fn unsetenv(name: &str) {
    let n = crate::util::latin1::to_path(name);
    // SAFETY: called by single-threaded programs before they start any
    // thread, so no other thread can read the environment concurrently.
    unsafe { std::env::remove_var(n) };
}
