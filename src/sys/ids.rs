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
    super::pwd::getpwnam(name).ok().flatten().map(|p| p.uid)
}
