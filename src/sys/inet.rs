//! Address text conversion with the C library's inet_pton(3)/inet_ntop(3),
//! so that what Postfix accepts (and how it prints an address) is exactly
//! what we accept and print.

use std::ffi::{CStr, c_char, c_int, c_void};

unsafe extern "C" {
    fn inet_pton(af: c_int, src: *const c_char, dst: *mut c_void) -> c_int;
    fn inet_ntop(af: c_int, src: *const c_void, dst: *mut c_char, size: u32) -> *const c_char;
}

/// Address family, as the C constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn af(self) -> c_int {
        match self {
            Family::V4 => libc::AF_INET,
            Family::V6 => libc::AF_INET6,
        }
    }

    /// Address length in bytes.
    pub fn bytes(self) -> usize {
        match self {
            Family::V4 => 4,
            Family::V6 => 16,
        }
    }
}

/// inet_pton(): the address bytes (4 or 16 of the 16 returned), or `None`
/// when the text is not an address of that family.
pub fn pton(family: Family, text: &CStr) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    // SAFETY: text is NUL-terminated; out has room for an IPv6 address, the
    // largest either family writes.
    let rc = unsafe { inet_pton(family.af(), text.as_ptr(), out.as_mut_ptr().cast()) };
    (rc == 1).then_some(out)
}

/// inet_ntop(): the printable form of the first `family.bytes()` of `addr`.
pub fn ntop(family: Family, addr: &[u8; 16]) -> String {
    let mut buf = [0u8; 64];
    // SAFETY: addr holds at least the family's address length; buf is
    // writable for the size we pass, which exceeds INET6_ADDRSTRLEN.
    let p = unsafe {
        inet_ntop(
            family.af(),
            addr.as_ptr().cast(),
            buf.as_mut_ptr().cast(),
            buf.len() as u32,
        )
    };
    if p.is_null() {
        return String::new();
    }
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> std::ffi::CString {
        std::ffi::CString::new(s).unwrap()
    }

    #[test]
    fn round_trips() {
        let a = pton(Family::V4, &c("192.0.2.1")).unwrap();
        assert_eq!(&a[..4], &[192, 0, 2, 1]);
        assert_eq!(ntop(Family::V4, &a), "192.0.2.1");
        assert!(pton(Family::V4, &c("192.0.2.01")).is_none());
        assert!(pton(Family::V4, &c("1.2.3")).is_none());
        let a = pton(Family::V6, &c("::102:304")).unwrap();
        assert_eq!(ntop(Family::V6, &a), "::1.2.3.4");
        let a = pton(Family::V6, &c("2001:db8:0:0:1:0:0:0")).unwrap();
        assert_eq!(ntop(Family::V6, &a), "2001:db8:0:0:1::");
    }
}
