//! A scratch rostfix instance whose master a test started: stopped and
//! removed when dropped. Shared by the end-to-end delivery tests
//! (tests/qmgr.rs, tests/smtp_e2e.rs), which include it with `#[path]`.

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The instance's directory (queue under `q/`, log in `maillog`) and the
/// master process, if the test started it directly.
pub struct Scratch {
    pub dir: PathBuf,
    pub master: Option<Child>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(mut c) = self.master.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let pid: Option<i32> = std::fs::read_to_string(self.dir.join("q/pid/master.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        if let Some(pid) = pid {
            // SAFETY: kill has no memory arguments; the pid is our master's.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        std::thread::sleep(Duration::from_millis(200));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Scratch {
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default()
    }

    /// Wait up to 10 s for `f`; panic with the log when it never holds.
    pub fn wait(&self, what: &str, mut f: impl FnMut(&Scratch) -> bool) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if f(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}; log:\n{}", self.log());
    }
}
