//! Processes, descriptors, signals and credentials for master and the server
//! skeleton: fork/exec with descriptors at fixed numbers, waitpid, kill,
//! self-pipe signal delivery, poll(2), listening sockets, user and group
//! lookups, setuid/setgid/chroot.
//!
//! Everything here is a thin wrapper; policy lives in `src/master`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The number of threads of this process (from /proc/self/status), so that
/// callers can refuse to fork or change credentials in a threaded process.
pub fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(1)
}

/// The outcome of fork(2).
pub enum Fork {
    /// In the parent: the child's pid.
    Parent(i32),
    /// In the child.
    Child,
}

/// fork(2). Callers must be single-threaded (master and the server
/// skeletons are); the function refuses otherwise.
pub fn fork() -> io::Result<Fork> {
    if thread_count() > 1 {
        return Err(io::Error::other("fork refused in a multi-threaded process"));
    }
    // SAFETY: the process has a single thread (checked above), so the child
    // inherits no lock held by another thread and may run ordinary code.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Fork::Child),
        p => Ok(Fork::Parent(p)),
    }
}

fn cstrings(v: &[String]) -> io::Result<Vec<CString>> {
    v.iter()
        .map(|s| {
            CString::new(crate::util::latin1::encode(s))
                .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
        })
        .collect()
}

/// execv(2) with `argv`; the environment is the current one. Returns only
/// on failure.
pub fn execv(path: &str, argv: &[String]) -> io::Error {
    let cpath = match CString::new(crate::util::latin1::encode(path)) {
        Ok(p) => p,
        Err(_) => return io::Error::from_raw_os_error(libc::ENOENT),
    };
    let cargs = match cstrings(argv) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let mut ptrs: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: cpath and every argument are NUL-terminated strings that live
    // until the call returns; the pointer array is NULL-terminated.
    unsafe { libc::execv(cpath.as_ptr(), ptrs.as_ptr()) };
    io::Error::last_os_error()
}

/// execvp(3): run `argv[0]` found on PATH. Returns only on failure.
pub fn execvp(argv: &[String]) -> io::Error {
    let cargs = match cstrings(argv) {
        Ok(a) if !a.is_empty() => a,
        Ok(_) => return io::Error::from_raw_os_error(libc::EINVAL),
        Err(e) => return e,
    };
    let mut ptrs: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: every argument is NUL-terminated and outlives the call; the
    // pointer array is NULL-terminated.
    unsafe { libc::execvp(cargs[0].as_ptr(), ptrs.as_ptr()) };
    io::Error::last_os_error()
}

/// Move descriptors to fixed numbers: each `(from, to)` pair makes `to` a
/// copy of `from` (without close-on-exec). Sources are first copied above
/// every target so that no pair clobbers another's source.
pub fn place_fds(pairs: &[(RawFd, RawFd)]) -> io::Result<()> {
    let floor = pairs.iter().map(|p| p.1).max().unwrap_or(0) + 1;
    let mut tmp = Vec::new();
    for &(from, _) in pairs {
        // SAFETY: F_DUPFD_CLOEXEC on a descriptor number: an invalid one
        // yields EBADF.
        let fd = cvt(unsafe { libc::fcntl(from, libc::F_DUPFD_CLOEXEC, floor) })?;
        tmp.push(fd);
    }
    for (i, &(_, to)) in pairs.iter().enumerate() {
        // SAFETY: dup2 between descriptor numbers; the target is replaced,
        // which is the point. dup2 clears close-on-exec on the target.
        cvt(unsafe { libc::dup2(tmp[i], to) })?;
    }
    for fd in tmp {
        // SAFETY: fd is a temporary copy made above and closed once.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// Close every descriptor from `first` up (close_range(2), or a loop).
pub fn close_from(first: RawFd) {
    // SAFETY: close_range only closes descriptors of this process; callers
    // own every descriptor at or above `first` (fresh child or start-up).
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first as u32, u32::MAX, 0u32) };
    if rc != 0 {
        for fd in first..1024 {
            // SAFETY: as above; EBADF for unused numbers is harmless.
            unsafe { libc::close(fd) };
        }
    }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
    Stopped(i32),
}

/// waitpid(-1, WNOHANG): a child that changed state, if any.
pub fn reap_any() -> Option<(i32, ExitStatus)> {
    let mut status: libc::c_int = 0;
    // SAFETY: status is a valid out-pointer.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::WUNTRACED) };
    if pid <= 0 {
        return None;
    }
    let st = if libc::WIFEXITED(status) {
        ExitStatus::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        ExitStatus::Signaled(libc::WTERMSIG(status))
    } else {
        ExitStatus::Stopped(libc::WSTOPSIG(status))
    };
    Some((pid, st))
}

/// kill(2).
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill has no memory arguments.
    cvt(unsafe { libc::kill(pid, sig) }).map(|_| ())
}

/// setsid(2).
pub fn setsid() -> io::Result<()> {
    // SAFETY: setsid has no arguments.
    cvt(unsafe { libc::setsid() }).map(|_| ())
}

/// getsid(0) == getpid(): already a session leader.
pub fn is_session_leader() -> bool {
    // SAFETY: getsid/getpid have no memory arguments.
    unsafe { libc::getsid(0) == libc::getpid() }
}

/// getpid(2).
pub fn getpid() -> i32 {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

/// This process's ID, asked of the kernel once and remembered (log lines
/// carry it; glibc no longer caches it). A child made by fork(2) forgets
/// the parent's value through a pthread_atfork handler.
pub fn pid() -> u32 {
    static PID: AtomicI32 = AtomicI32::new(0);
    static REGISTER: std::sync::Once = std::sync::Once::new();
    extern "C" fn forget() {
        PID.store(0, Ordering::Relaxed);
    }
    let p = PID.load(Ordering::Relaxed);
    if p != 0 {
        return p as u32;
    }
    REGISTER.call_once(|| {
        // SAFETY: `forget` is an extern "C" function without arguments
        // that only stores into an atomic (async-signal-safe).
        unsafe {
            libc::pthread_atfork(None, None, Some(forget));
        }
    });
    let p = getpid();
    PID.store(p, Ordering::Relaxed);
    p as u32
}

/// getgid(2).
pub fn getgid() -> u32 {
    // SAFETY: getgid cannot fail.
    unsafe { libc::getgid() }
}

/// isatty(3).
pub fn isatty(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor number.
    unsafe { libc::isatty(fd) == 1 }
}

/// Whether a descriptor number is open.
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only inspects the descriptor number.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Take ownership of an inherited descriptor number (fds master hands to a
/// child). Returns `None` when the number is not open.
pub fn take_fd(fd: RawFd) -> Option<OwnedFd> {
    if !fd_is_open(fd) {
        return None;
    }
    // SAFETY: the descriptor is open and, by the master protocol, belongs to
    // this process's caller alone; it is wrapped exactly once.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reopen descriptors 0-2 on /dev/null (those in `keep` stay).
pub fn detach_stdio(keep_stdout: bool) -> io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..3 {
        if fd == 1 && keep_stdout {
            continue;
        }
        // SAFETY: dup2 replaces a standard descriptor with /dev/null.
        cvt(unsafe { libc::dup2(null.as_raw_fd(), fd) })?;
    }
    Ok(())
}

/// Set or clear O_NONBLOCK.
pub fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a descriptor number.
    let fl = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    let nfl = if on {
        fl | libc::O_NONBLOCK
    } else {
        fl & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, nfl) }).map(|_| ())
}

/// Set or clear FD_CLOEXEC.
pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    let v = if on { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: F_SETFD on a descriptor number.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, v) }).map(|_| ())
}

/// A pipe, both ends close-on-exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds is a valid array of two ints.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 returned two fresh descriptors that we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A connected pair of stream sockets (Postfix's duplex pipe), both ends
/// close-on-exec.
pub fn duplex_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds is a valid array of two ints.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair returned two fresh descriptors that we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// read(2) on a raw descriptor.
pub fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for writes of its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// write(2) on a raw descriptor.
pub fn write_fd(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for reads of its length.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// poll(2)'s readable event.
pub const POLLIN: i16 = libc::POLLIN;
/// poll(2)'s writable event.
pub const POLLOUT: i16 = libc::POLLOUT;

/// Wait until one of `fds` (descriptor, wanted events) is ready or
/// `timeout_ms` passed (negative: no limit); each entry's events are
/// replaced by the returned ones (0: not ready; all 0 after a signal).
pub fn poll_events(fds: &mut [(RawFd, i16)], timeout_ms: i32) -> io::Result<()> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, events)| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    // SAFETY: pfds is a valid array of pollfd of the given length.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    for (f, p) in fds.iter_mut().zip(&pfds) {
        f.1 = if rc < 0 { 0 } else { p.revents };
    }
    Ok(())
}

/// poll(2) for readability. Returns, for each descriptor, whether it is
/// readable (or hung up / in error). EINTR counts as "nothing ready".
pub fn poll_read(fds: &[RawFd], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: pfds is a valid array of pollfd of the given length.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(e);
    }
    Ok(pfds.iter().map(|p| p.revents != 0).collect())
}

// ---- signals ----

static SIG_PIPE_FD: AtomicI32 = AtomicI32::new(-1);
static GOT_HUP: AtomicBool = AtomicBool::new(false);
static GOT_CHLD: AtomicBool = AtomicBool::new(false);
static GOT_DEATH: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    match sig {
        libc::SIGHUP => GOT_HUP.store(true, Ordering::SeqCst),
        libc::SIGCHLD => GOT_CHLD.store(true, Ordering::SeqCst),
        s => GOT_DEATH.store(s, Ordering::SeqCst),
    }
    let fd = SIG_PIPE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let b = [0u8; 1];
        // SAFETY: write(2) is async-signal-safe; errno is saved and restored
        // around it so the interrupted code sees its own errno.
        unsafe {
            let saved = *libc::__errno_location();
            libc::write(fd, b.as_ptr().cast(), 1);
            *libc::__errno_location() = saved;
        }
    }
}

fn set_handler(sig: i32, handler: libc::sighandler_t, flags: i32) -> io::Result<()> {
    // SAFETY: sigaction is a plain C struct; all-zero is a valid start.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = handler;
    sa.sa_flags = flags;
    // SAFETY: sa.sa_mask is a valid sigset_t to initialise.
    unsafe { libc::sigemptyset(&mut sa.sa_mask) };
    // SAFETY: sa is fully initialised; the handler (if any) only touches
    // atomics and calls write(2).
    cvt(unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) }).map(|_| ())
}

/// Ignore a signal (SIGPIPE).
pub fn ignore_signal(sig: i32) -> io::Result<()> {
    set_handler(sig, libc::SIG_IGN, 0)
}

/// Restore a signal's default action.
pub fn default_signal(sig: i32) -> io::Result<()> {
    set_handler(sig, libc::SIG_DFL, 0)
}

/// What the master's signal handlers recorded.
#[derive(Debug, Default, Clone, Copy)]
pub struct Signals {
    pub hup: bool,
    pub chld: bool,
    /// A terminating signal (SIGTERM, SIGINT, SIGQUIT), or 0.
    pub death: i32,
}

/// Install master's handlers: SIGHUP and SIGCHLD (restarting), SIGTERM,
/// SIGINT and SIGQUIT; each writes a byte to a non-blocking self-pipe whose
/// read end is returned for poll(2).
pub fn master_signals() -> io::Result<OwnedFd> {
    let (r, w) = pipe()?;
    set_nonblocking(r.as_raw_fd(), true)?;
    set_nonblocking(w.as_raw_fd(), true)?;
    SIG_PIPE_FD.store(w.as_raw_fd(), Ordering::SeqCst);
    std::mem::forget(w); // the handler writes to it for the process lifetime
    let h = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for s in [libc::SIGTERM, libc::SIGINT, libc::SIGQUIT] {
        set_handler(s, h, 0)?;
    }
    set_handler(libc::SIGHUP, h, libc::SA_RESTART)?;
    set_handler(libc::SIGCHLD, h, libc::SA_RESTART | libc::SA_NOCLDSTOP)?;
    Ok(r)
}

/// Take (and clear) what the handlers recorded.
pub fn take_signals() -> Signals {
    Signals {
        hup: GOT_HUP.swap(false, Ordering::SeqCst),
        chld: GOT_CHLD.swap(false, Ordering::SeqCst),
        death: GOT_DEATH.swap(0, Ordering::SeqCst),
    }
}

// ---- sockets ----

fn sockaddr_of(addr: &std::net::SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        std::net::SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a
            // sockaddr_in.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        std::net::SocketAddr::V6(a) => {
            // SAFETY: as above, for a sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// What failed while creating a listener, for Postfix's fatal texts.
#[derive(Debug)]
pub enum ListenError {
    Socket(io::Error),
    V6Only(io::Error),
    ReuseAddr(io::Error),
    Bind(io::Error),
    Listen(io::Error),
}

/// A non-blocking, close-on-exec TCP listener as Postfix's inet_listen:
/// SO_REUSEADDR, IPV6_V6ONLY for IPv6.
pub fn inet_listen(addr: &std::net::SocketAddr, backlog: i32) -> Result<OwnedFd, ListenError> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(ListenError::Socket(io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh descriptor that we own from here on.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let on: libc::c_int = 1;
    let setopt = |level, name| {
        // SAFETY: `on` is a valid int that outlives the call.
        cvt(unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })
    };
    if family == libc::AF_INET6 {
        setopt(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)
            .map_err(|_| ListenError::V6Only(io::Error::last_os_error()))?;
    }
    setopt(libc::SOL_SOCKET, libc::SO_REUSEADDR)
        .map_err(|_| ListenError::ReuseAddr(io::Error::last_os_error()))?;
    let (ss, len) = sockaddr_of(addr);
    // SAFETY: ss holds a valid socket address of length len.
    if unsafe { libc::bind(fd, (&ss as *const libc::sockaddr_storage).cast(), len) } < 0 {
        return Err(ListenError::Bind(io::Error::last_os_error()));
    }
    // SAFETY: listen on our own descriptor.
    if unsafe { libc::listen(fd, backlog) } < 0 {
        return Err(ListenError::Listen(io::Error::last_os_error()));
    }
    Ok(owned)
}

/// Connect a TCP socket with a short timeout, for wakeup triggers.
pub fn tcp_connect(
    addr: &std::net::SocketAddr,
    timeout: std::time::Duration,
) -> io::Result<std::net::TcpStream> {
    std::net::TcpStream::connect_timeout(addr, timeout)
}

/// mkfifo(3).
pub fn mkfifo(path: &str, mode: u32) -> io::Result<()> {
    let c = CString::new(crate::util::latin1::encode(path))
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: c is NUL-terminated.
    cvt(unsafe { libc::mkfifo(c.as_ptr(), mode as libc::mode_t) }).map(|_| ())
}

/// Listen backlog Postfix would use; the kernel caps it anyway.
pub fn somaxconn() -> i32 {
    libc::SOMAXCONN
}

// ---- users, groups, credentials ----

pub use super::pwd::{Group, Passwd};

/// getpwnam(3): the entry, or `None` for an unknown user or a failed lookup.
pub fn getpwnam(name: &str) -> Option<Passwd> {
    super::pwd::getpwnam(name).ok().flatten()
}

/// getpwuid(3): as [`getpwnam`].
pub fn getpwuid(uid: u32) -> Option<Passwd> {
    super::pwd::getpwuid(uid).ok().flatten()
}

/// getgrnam(3): the entry, or `None` for an unknown group or a failed lookup.
pub fn getgrnam(name: &str) -> Option<Group> {
    super::pwd::getgrnam(name).ok().flatten()
}

/// getgrgid(3): as [`getgrnam`].
pub fn getgrgid(gid: u32) -> Option<Group> {
    super::pwd::getgrgid(gid).ok().flatten()
}

/// Postfix's chroot_uid(): optionally chroot to `root_dir`, then
/// permanently become `uid`/`gid` (with `gid` as the only group). Refused
/// in a multi-threaded process.
pub fn chroot_uid(root_dir: Option<&str>, ids: Option<(u32, u32)>) -> Result<(), String> {
    if thread_count() > 1 {
        return Err("chroot_uid: refused in a multi-threaded process".into());
    }
    let err = || {
        super::strerror(
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EPERM),
        )
    };
    if let Some((_, gid)) = ids {
        // SAFETY: setgid/initgroups-style calls change only this (single-
        // threaded) process's credentials; the groups array outlives the call.
        unsafe {
            if libc::setgid(gid) < 0 {
                return Err(format!("setgid({gid}): {}", err()));
            }
            let groups = [gid as libc::gid_t];
            if libc::setgroups(1, groups.as_ptr()) < 0 {
                return Err(format!("setgroups: {}", err()));
            }
        }
    }
    if let Some(dir) = root_dir {
        let c = CString::new(crate::util::latin1::encode(dir)).map_err(|_| "chroot: bad path")?;
        // SAFETY: c is NUL-terminated; chroot/chdir affect only this process.
        unsafe {
            if libc::chroot(c.as_ptr()) < 0 {
                return Err(format!("chroot({dir}): {}", err()));
            }
            if libc::chdir(c"/".as_ptr()) < 0 {
                return Err(format!("chdir(/): {}", err()));
            }
        }
    }
    if let Some((uid, _)) = ids {
        // SAFETY: setuid changes only this single-threaded process's uid.
        if unsafe { libc::setuid(uid) } < 0 {
            return Err(format!("setuid({uid}): {}", err()));
        }
    }
    Ok(())
}

/// Postfix's set_ugid() back to the real IDs after set_eugid().
pub fn restore_ugid() -> Result<(), String> {
    // SAFETY: restoring the real IDs as effective IDs; the process is
    // single-threaded when master calls this.
    unsafe {
        if libc::geteuid() != 0 && libc::seteuid(0) != 0 {
            return Err(format!(
                "seteuid(0): {}",
                super::strerror(io::Error::last_os_error().raw_os_error().unwrap_or(0))
            ));
        }
        let gid = libc::getgid();
        libc::setegid(gid);
        let groups = [gid];
        libc::setgroups(1, groups.as_ptr());
        libc::seteuid(libc::getuid());
    }
    Ok(())
}

/// chown(2) by path.
pub fn chown(path: &str, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    std::os::unix::fs::chown(crate::util::latin1::to_path(path), uid, gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_pipes() {
        let root = getpwuid(0).unwrap();
        assert_eq!(root.name, "root");
        assert_eq!(getpwnam("root").unwrap().uid, 0);
        assert!(getpwnam("no-such-user-xyz").is_none());
        assert_eq!(getgrgid(0).unwrap().gid, 0);
        let (a, b) = duplex_pipe().unwrap();
        assert_eq!(write_fd(a.as_raw_fd(), b"x").unwrap(), 1);
        let ready = poll_read(&[b.as_raw_fd()], 1000).unwrap();
        assert!(ready[0]);
        let mut buf = [0u8; 4];
        assert_eq!(read_fd(b.as_raw_fd(), &mut buf).unwrap(), 1);
    }
}
