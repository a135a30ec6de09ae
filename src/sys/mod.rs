//! The only place for `unsafe`: thin wrappers around system calls.

pub mod inet;
pub mod net;
pub mod pcre;
pub mod regex;

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
