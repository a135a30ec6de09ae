//! Network interface and name-service wrappers: getifaddrs(3),
//! getaddrinfo(3) and a socket(2) probe for address-family support.

use std::ffi::CString;
use std::net::{Ipv4Addr, Ipv6Addr};

pub use libc::{AF_INET, AF_INET6, AF_UNSPEC};

/// The interface is up (IFF_UP).
pub const IFF_UP: u32 = libc::IFF_UP as u32;

/// An address as the kernel reports it: IPv4, IPv6, or another family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockAddr {
    Inet(Ipv4Addr),
    Inet6(Ipv6Addr),
    Other(i32),
}

impl SockAddr {
    /// The address family number (AF_INET ...).
    pub fn family(&self) -> i32 {
        match self {
            SockAddr::Inet(_) => AF_INET,
            SockAddr::Inet6(_) => AF_INET6,
            SockAddr::Other(f) => *f,
        }
    }
}

/// One entry of the interface address list, in the order getifaddrs(3)
/// returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfAddr {
    pub name: String,
    pub flags: u32,
    pub addr: Option<SockAddr>,
    pub netmask: Option<SockAddr>,
}

/// Convert a `struct sockaddr` pointer into a [`SockAddr`].
///
/// # Safety
/// `sa` must be null or point to a valid socket address whose storage is
/// large enough for its family (as getifaddrs and getaddrinfo guarantee).
unsafe fn from_sockaddr(sa: *const libc::sockaddr) -> Option<SockAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: sa is non-null and points to a sockaddr (caller's contract).
    let family = i32::from(unsafe { (*sa).sa_family });
    Some(match family {
        AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let sin = unsafe { &*(sa as *const libc::sockaddr_in) };
            SockAddr::Inet(Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()))
        }
        AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let sin6 = unsafe { &*(sa as *const libc::sockaddr_in6) };
            SockAddr::Inet6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
        }
        f => SockAddr::Other(f),
    })
}

/// The system's interface address list (getifaddrs(3)).
pub fn interfaces() -> std::io::Result<Vec<IfAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: head is a valid out-pointer; on success it receives a list that
    // we release with freeifaddrs below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut p = head;
    while !p.is_null() {
        // SAFETY: p is a non-null node of the list getifaddrs returned, which
        // stays valid until freeifaddrs.
        let ifa = unsafe { &*p };
        let name = if ifa.ifa_name.is_null() {
            String::new()
        } else {
            // SAFETY: ifa_name is a NUL-terminated string owned by the list.
            let c = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
            crate::util::latin1::decode(c.to_bytes())
        };
        // SAFETY: the address pointers are null or valid for their family.
        let addr = unsafe { from_sockaddr(ifa.ifa_addr) };
        // SAFETY: as above. On Linux the netmask carries the address's family.
        let netmask = unsafe { from_sockaddr(ifa.ifa_netmask) };
        out.push(IfAddr {
            name,
            flags: ifa.ifa_flags,
            addr,
            netmask,
        });
        p = ifa.ifa_next;
    }
    // SAFETY: head came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// A getaddrinfo(3) failure: its EAI_* code, and errno for EAI_SYSTEM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GaiError {
    pub code: i32,
    pub errno: i32,
}

impl GaiError {
    /// gai_strerror(3) text (strerror for EAI_SYSTEM).
    pub fn text(&self) -> String {
        if self.code == libc::EAI_SYSTEM {
            return super::strerror(self.errno);
        }
        // SAFETY: gai_strerror returns a pointer to a static NUL-terminated
        // string for any code.
        let p = unsafe { libc::gai_strerror(self.code) };
        if p.is_null() {
            return format!("Unknown error {}", self.code);
        }
        // SAFETY: p is non-null and NUL-terminated (see above).
        let c = unsafe { std::ffi::CStr::from_ptr(p) };
        crate::util::latin1::decode(c.to_bytes())
    }
}

/// Resolve a host name or numeric address with getaddrinfo(3): no service,
/// SOCK_STREAM, the given family (AF_UNSPEC for any). Results keep the
/// resolver's order.
pub fn resolve(host: &str, family: i32) -> Result<Vec<SockAddr>, GaiError> {
    let Ok(chost) = CString::new(crate::util::latin1::encode(host)) else {
        return Err(GaiError {
            code: libc::EAI_NONAME,
            errno: 0,
        });
    };
    // SAFETY: addrinfo is a plain C struct; all-zero is a valid "no hints".
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = family;
    hints.ai_socktype = libc::SOCK_STREAM;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: chost is NUL-terminated, hints is initialised, res is a valid
    // out-pointer; a successful result is released with freeaddrinfo below.
    let rc = unsafe { libc::getaddrinfo(chost.as_ptr(), std::ptr::null(), &hints, &mut res) };
    if rc != 0 {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        return Err(GaiError { code: rc, errno });
    }
    let mut out = Vec::new();
    let mut p = res;
    while !p.is_null() {
        // SAFETY: p is a node of the list getaddrinfo returned.
        let ai = unsafe { &*p };
        // SAFETY: ai_addr is null or a valid address of ai_family.
        if let Some(sa) = unsafe { from_sockaddr(ai.ai_addr) } {
            out.push(sa);
        }
        p = ai.ai_next;
    }
    // SAFETY: res came from a successful getaddrinfo and is freed once.
    unsafe { libc::freeaddrinfo(res) };
    Ok(out)
}

/// Whether the kernel supports stream sockets of an address family: create
/// one and close it. Returns the errno of a failure.
pub fn probe_socket(family: i32) -> Result<(), i32> {
    // SAFETY: socket(2) with constant arguments; the descriptor is closed
    // right away.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    // SAFETY: fd is a descriptor we own and close once.
    unsafe { libc::close(fd) };
    Ok(())
}

/// The host name of an address (getnameinfo(3) with NI_NAMEREQD).
/// `Err` is the EAI_* code (EAI_AGAIN is temporary).
pub fn reverse_name(ip: std::net::IpAddr) -> Result<String, i32> {
    let mut host = [0u8; 1025];
    let rc = match ip {
        std::net::IpAddr::V4(a) => {
            // SAFETY: sockaddr_in is a plain C struct; all-zero is valid.
            let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
            // SAFETY: sa is a valid sockaddr_in of the given length; host is
            // a writable buffer of the given length; no service is asked for.
            unsafe {
                libc::getnameinfo(
                    (&sa as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    host.as_mut_ptr().cast(),
                    host.len() as libc::socklen_t,
                    std::ptr::null_mut(),
                    0,
                    libc::NI_NAMEREQD,
                )
            }
        }
        std::net::IpAddr::V6(a) => {
            // SAFETY: sockaddr_in6 is a plain C struct; all-zero is valid.
            let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sa.sin6_addr.s6_addr = a.octets();
            // SAFETY: as above, for sockaddr_in6.
            unsafe {
                libc::getnameinfo(
                    (&sa as *const libc::sockaddr_in6).cast(),
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                    host.as_mut_ptr().cast(),
                    host.len() as libc::socklen_t,
                    std::ptr::null_mut(),
                    0,
                    libc::NI_NAMEREQD,
                )
            }
        }
    };
    if rc != 0 {
        return Err(rc);
    }
    let n = host.iter().position(|&b| b == 0).unwrap_or(host.len());
    Ok(crate::util::latin1::decode(&host[..n]))
}

/// Wait until `fd` is readable (or at EOF/error) for at most `timeout`.
/// Ok(false) is a timeout.
pub fn wait_readable(fd: i32, timeout: std::time::Duration) -> std::io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: p is one valid pollfd; the count is 1.
        let rc = unsafe { libc::poll(&mut p, 1, ms) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(rc > 0);
    }
}

/// recv(2) with MSG_DONTWAIT: what a socket holds already, without
/// waiting and without changing the descriptor's O_NONBLOCK flag. Nothing
/// to read is Ok(0), like the end of input.
pub fn recv_nowait(fd: i32, buf: &mut [u8]) -> std::io::Result<usize> {
    Ok(recv_queued(fd, buf)?.unwrap_or(0))
}

/// One datagram that is queued on `fd` already, without waiting: its
/// length (0 for an empty datagram), or None when nothing is queued.
pub fn recv_queued(fd: i32, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
    loop {
        // SAFETY: buf is a valid writable buffer of the given length; recv
        // writes at most that many bytes.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock => return Ok(None),
                _ => return Err(e),
            }
        }
        return Ok(Some(n as usize));
    }
}

/// The datagrams queued on `fd` already, several with one recvmmsg(2),
/// without waiting: `slab` is cut into slots of `slot` bytes, datagram k
/// lands in slot k (cut to the slot's size, as recv(2) cuts it) and its
/// length goes to `lens[k]`. Returns how many arrived (0 when nothing is
/// queued); fewer than the slots (or `lens`) hold means the queue was
/// emptied.
pub fn recv_queued_many(
    fd: i32,
    slab: &mut [u8],
    slot: usize,
    lens: &mut [usize],
) -> std::io::Result<usize> {
    const MAX: usize = 64;
    let count = slab
        .len()
        .checked_div(slot)
        .unwrap_or(0)
        .min(lens.len())
        .min(MAX);
    if count == 0 {
        return Ok(0);
    }
    // SAFETY: iovec and mmsghdr are plain C structs for which all-zero
    // bytes are a valid value.
    let mut iov: [libc::iovec; MAX] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; MAX] = unsafe { std::mem::zeroed() };
    for (k, chunk) in slab.chunks_exact_mut(slot).take(count).enumerate() {
        iov[k].iov_base = chunk.as_mut_ptr().cast();
        iov[k].iov_len = slot;
        hdrs[k].msg_hdr.msg_iov = &mut iov[k];
        hdrs[k].msg_hdr.msg_iovlen = 1;
    }
    loop {
        // SAFETY: hdrs[..count] each point at one iovec that describes a
        // distinct writable slot of `slab`, all alive for this call; the
        // kernel writes at most iov_len bytes into each and fills in
        // msg_len. No address or control buffers are given.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock => return Ok(0),
                _ => return Err(e),
            }
        }
        let n = n as usize;
        for k in 0..n {
            lens[k] = (hdrs[k].msg_len as usize).min(slot);
        }
        return Ok(n);
    }
}

/// read(2) on a descriptor the caller does not own (stdin).
pub fn read_fd(fd: i32, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        // SAFETY: buf is a valid writable buffer of the given length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(n as usize);
    }
}

/// A TCP connection from a chosen local IPv4 address (bind, then connect):
/// test clients use 127.0.0.2 to be outside mynetworks.
pub fn connect_from(
    src: std::net::Ipv4Addr,
    to: std::net::SocketAddr,
) -> std::io::Result<std::net::TcpStream> {
    use std::os::fd::FromRawFd;
    let std::net::SocketAddr::V4(to) = to else {
        return Err(std::io::Error::from(std::io::ErrorKind::Unsupported));
    };
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket we own; the TcpStream takes ownership
    // and closes it on every path below.
    let stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    let sin = |a: std::net::Ipv4Addr, port: u16| {
        // SAFETY: sockaddr_in is a plain C struct; all-zero is valid.
        let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = port.to_be();
        sa.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
        sa
    };
    let local = sin(src, 0);
    // SAFETY: fd is a valid socket; local is a valid sockaddr_in of that size.
    let rc = unsafe {
        libc::bind(
            fd,
            (&local as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let remote = sin(*to.ip(), to.port());
    // SAFETY: as above, for the remote address.
    let rc = unsafe {
        libc::connect(
            fd,
            (&remote as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stream)
}

/// Bytes this socket sent that its peer has not read yet (SIOCOUTQ; for
/// a UNIX datagram socket, the datagrams still queued at the receiver).
pub fn unread_output(fd: i32) -> std::io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int through the valid pointer.
    let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recv_queued_many_takes_what_is_queued() {
        use std::os::fd::AsRawFd;
        let (a, b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let fd = b.as_raw_fd();
        let mut slab = vec![0u8; 4 * 8];
        let mut lens = [0usize; 4];
        assert_eq!(recv_queued_many(fd, &mut slab, 8, &mut lens).unwrap(), 0);
        for m in [&b"one"[..], b"", b"much too long", b"four", b"five"] {
            a.send(m).unwrap();
        }
        // Four slots: four datagrams, the long one cut to its slot.
        assert_eq!(recv_queued_many(fd, &mut slab, 8, &mut lens).unwrap(), 4);
        assert_eq!(lens, [3, 0, 8, 4]);
        assert_eq!(&slab[..3], b"one");
        assert_eq!(&slab[16..24], b"much too");
        assert_eq!(&slab[24..28], b"four");
        // Fewer than asked for: the queue is empty now.
        assert_eq!(
            recv_queued_many(fd, &mut slab, 8, &mut lens[..2]).unwrap(),
            1
        );
        assert_eq!(&slab[..lens[0]], b"five");
        assert_eq!(recv_queued_many(fd, &mut slab, 8, &mut lens).unwrap(), 0);
    }

    #[test]
    fn loopback_is_listed_and_resolves() {
        let list = interfaces().unwrap();
        assert!(
            list.iter()
                .any(|i| i.addr == Some(SockAddr::Inet(Ipv4Addr::LOCALHOST)))
        );
        assert_eq!(
            resolve("127.0.0.1", AF_UNSPEC).unwrap(),
            vec![SockAddr::Inet(Ipv4Addr::LOCALHOST)]
        );
        assert!(probe_socket(AF_INET).is_ok());
    }
}
