//! The C entry point of the binaries (`c_main!`). Rust's own start-up
//! (std's `lang_start`) is skipped: to guard the main thread's stack it asks
//! glibc for the stack's bounds, and glibc's pthread_getattr_np finds them
//! by reading and parsing /proc/self/maps, about an eighth of the
//! instructions of a whole sendmail or postdrop run (each message submitted
//! by sendmail starts both). [`init`] does the rest of what `lang_start`
//! does for a program: SIGPIPE ignored (a write to a closed socket or pipe
//! fails with EPIPE instead of killing the process; std still restores the
//! default disposition in the children it spawns), and descriptors 0-2
//! opened on /dev/null when closed (Postfix's programs do the same, so that
//! no file or socket lands on them). What is lost: a stack overflow in the
//! main thread is a plain SIGSEGV, without std's "has overflowed its
//! stack" message.

/// Defines the C `main` of a binary (whose crate root says `#![no_main]`):
/// [`init`], then `$run()`, which returns the exit status or exits itself.
#[macro_export]
macro_rules! c_main {
    ($run:path) => {
        // SAFETY: the one definition of the C symbol `main` in the binary
        // (the crate root has #![no_main], so std defines none); the C
        // runtime calls it once, with glibc's argc/argv, which std reads for
        // args_os() on its own (.init_array) and which are not used here.
        #[unsafe(no_mangle)]
        extern "C" fn main(
            _argc: ::std::ffi::c_int,
            _argv: *const *const ::std::ffi::c_char,
        ) -> ::std::ffi::c_int {
            $crate::sys::start::init();
            $run()
        }
    };
}

/// What Rust's start-up would have done for the process: see the module
/// documentation.
pub fn init() {
    super::proc::ignore_signal(libc::SIGPIPE);
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: fds is a live array of three pollfd; a zero timeout returns
    // at once.
    let polled = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) } >= 0;
    for p in fds {
        let closed = if polled {
            p.revents & libc::POLLNVAL != 0
        } else {
            // SAFETY: F_GETFD only queries the descriptor's flags.
            let flags = unsafe { libc::fcntl(p.fd, libc::F_GETFD) };
            flags < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF)
        };
        // SAFETY: the path is a NUL-terminated literal; open returns the
        // lowest free descriptor, which is this closed one (the lower ones
        // are open by now).
        if closed && unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) } != p.fd {
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn init_keeps_open_descriptors_and_ignores_sigpipe() {
        super::init();
        assert!(super::super::proc::signal_ignored(libc::SIGPIPE));
        for fd in 0..3 {
            // SAFETY: F_GETFD only queries the descriptor's flags.
            assert!(unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0, "fd {fd}");
        }
    }
}
