//! Host and service name resolution with getaddrinfo(3)'s own error texts
//! (gai_strerror), which Postfix prints in its warnings.

use crate::util::latin1;
use std::ffi::{CStr, CString};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Resolve `host` and `service` for a TCP stream socket. `Err` is the
/// gai_strerror text.
pub fn resolve_stream(host: &str, service: &str) -> Result<Vec<SocketAddr>, String> {
    let h =
        CString::new(latin1::encode(host)).map_err(|_| "Name or service not known".to_string())?;
    let s = CString::new(latin1::encode(service))
        .map_err(|_| "Servname not supported for ai_socktype".to_string())?;
    // SAFETY: addrinfo is a plain C struct; all-zero is a valid "no hints".
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = libc::AF_UNSPEC;
    hints.ai_socktype = libc::SOCK_STREAM;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: h and s are NUL-terminated; hints is initialised; res receives
    // a list we free below.
    let rc = unsafe { libc::getaddrinfo(h.as_ptr(), s.as_ptr(), &hints, &mut res) };
    if rc != 0 {
        // SAFETY: gai_strerror returns a static NUL-terminated string.
        let msg = unsafe { CStr::from_ptr(libc::gai_strerror(rc)) };
        return Err(latin1::decode(msg.to_bytes()));
    }
    let mut out = Vec::new();
    let mut p = res;
    while !p.is_null() {
        // SAFETY: p is a node of the list getaddrinfo returned.
        let ai = unsafe { &*p };
        if !ai.ai_addr.is_null() {
            if ai.ai_family == libc::AF_INET {
                // SAFETY: for AF_INET, ai_addr points to a sockaddr_in.
                let sin = unsafe { &*(ai.ai_addr as *const libc::sockaddr_in) };
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                out.push(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(sin.sin_port),
                )));
            } else if ai.ai_family == libc::AF_INET6 {
                // SAFETY: for AF_INET6, ai_addr points to a sockaddr_in6.
                let sin6 = unsafe { &*(ai.ai_addr as *const libc::sockaddr_in6) };
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                out.push(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )));
            }
        }
        p = ai.ai_next;
    }
    // SAFETY: res came from a successful getaddrinfo and is freed once.
    unsafe { libc::freeaddrinfo(res) };
    Ok(out)
}

/// Is `ip` a numeric address literal (no resolution needed)?
pub fn is_numeric(ip: &str) -> bool {
    ip.parse::<IpAddr>().is_ok()
}
