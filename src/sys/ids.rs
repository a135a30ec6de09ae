//! User and group IDs of the process, and user lookups by name.

/// getuid(2).
pub fn getuid() -> u32 {
    // SAFETY: getuid cannot fail and has no side effects.
    unsafe { libc::getuid() }
}

/// geteuid(2).
pub fn geteuid() -> u32 {
    // SAFETY: geteuid cannot fail and has no side effects.
    unsafe { libc::geteuid() }
}

/// The user ID of a login name (getpwnam_r(3)), if it exists.
pub fn user_uid(name: &str) -> Option<u32> {
    let cname = std::ffi::CString::new(crate::util::latin1::encode(name)).ok()?;
    let mut buf = vec![0u8; 16384];
    // SAFETY: an all-zero passwd is a valid value (null pointers, zero ids).
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to a live local of the right type and the
    // buffer length is its real size; getpwnam_r writes only into them.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pw,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    Some(pw.pw_uid)
}
