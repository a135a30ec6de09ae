//! Changing the process environment (setenv(3)).

use crate::util::latin1;
use std::ffi::CString;

/// setenv(name, value, 1). `Err` is the strerror text.
pub fn setenv(name: &str, value: &str) -> Result<(), String> {
    let n = CString::new(latin1::encode(name)).map_err(|_| super::strerror(libc::EINVAL))?;
    let v = CString::new(latin1::encode(value)).map_err(|_| super::strerror(libc::EINVAL))?;
    // SAFETY: both strings are NUL-terminated. setenv is not thread-safe with
    // concurrent getenv; Postfix programs call it only from their single
    // main thread, and so do we.
    let rc = unsafe { libc::setenv(n.as_ptr(), v.as_ptr(), 1) };
    if rc != 0 {
        let code = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        return Err(super::strerror(code));
    }
    Ok(())
}
