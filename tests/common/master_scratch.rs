//! A scratch rostfix instance whose master a test started: stopped and
//! removed when dropped. Shared by the end-to-end delivery tests
//! (tests/qmgr.rs, tests/delivery_faults.rs, tests/smtp_e2e.rs), which
//! include it with `#[path]`; [`start`] builds and starts one.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rostfix");

/// The programs linked into every instance's `bin/` (daemon_directory and
/// command_directory); master.cf decides which of the daemons run.
const PROGRAMS: &[&str] = &[
    "master",
    "postlogd",
    "pickup",
    "cleanup",
    "qmgr",
    "local",
    "error",
    "discard",
    "smtp",
    "lmtp",
    "bounce",
    "flush",
    "sendmail",
    "postqueue",
    "postsuper",
];

/// Backdate a configuration file: a main.cf modified less than a second
/// ago is read again by every program.
pub fn age(path: &Path) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
}

/// A master.cf with the services every delivery test needs (postlog,
/// pickup, cleanup, qmgr, the bounce/defer/trace services, error and
/// retry) followed by `agents` (one master.cf line each).
#[allow(dead_code)]
pub fn services(agents: &str) -> String {
    format!(
        "postlog unix-dgram n - n - 1 postlogd\n\
         pickup unix n - n 60 1 pickup\n\
         cleanup unix n - n - 0 cleanup\n\
         qmgr unix n - n 300 1 qmgr\n\
         bounce unix - - n - 0 bounce\n\
         defer unix - - n - 0 bounce\n\
         trace unix - - n - 0 bounce\n\
         error unix - - n - - error\n\
         retry unix - - n - - error\n\
         {agents}"
    )
}

/// A fresh (emptied) instance folder `rostfix-<tag>-<pid>` in the
/// temporary directory, for [`start`].
pub fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rostfix-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Build an instance in `dir` and start its master (`master -d`): the
/// programs linked into `bin/`, the queue in `q/`, the log in `maillog`,
/// the mail spool in `spool/` (mode 1777); main.cf is the common part
/// plus `extra_main_cf` (which may set its own mail_spool_directory),
/// master.cf is `master_cf`, `conf_files` (name,
/// text) go beside them in `conf/`. As root, services run as nobody.
/// Returns once master has logged that it started.
pub fn start(
    dir: PathBuf,
    master_cf: &str,
    extra_main_cf: &str,
    conf_files: &[(&str, &str)],
) -> Scratch {
    for d in ["conf", "q", "data", "bin", "spool"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.join("spool"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    for p in PROGRAMS {
        std::os::unix::fs::symlink(BIN, dir.join("bin").join(p)).unwrap();
    }
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_postdrop"),
        dir.join("bin").join("postdrop"),
    )
    .unwrap();
    let d = dir.display();
    let mut main_cf = format!(
        "compatibility_level = 3.6\n\
         queue_directory = {d}/q\n\
         data_directory = {d}/data\n\
         daemon_directory = {d}/bin\n\
         command_directory = {d}/bin\n\
         maillog_file = {d}/maillog\n\
         maillog_file_prefixes = {d}\n\
         inet_interfaces = 127.0.0.1\n\
         inet_protocols = ipv4\n\
         myhostname = test.example\n\
         mydestination = test.example, localhost\n\
         alias_maps =\n\
         alias_database =\n"
    );
    if !extra_main_cf.contains("mail_spool_directory =") {
        main_cf.push_str(&format!("mail_spool_directory = {d}/spool\n"));
    }
    if is_root() {
        main_cf.push_str("mail_owner = nobody\ndefault_privs = daemon\nsetgid_group = mail\n");
    }
    main_cf.push_str(extra_main_cf);
    let conf = dir.join("conf");
    for (name, text) in [("main.cf", main_cf.as_str()), ("master.cf", master_cf)]
        .into_iter()
        .chain(conf_files.iter().copied())
    {
        std::fs::write(conf.join(name), text).unwrap();
        age(&conf.join(name));
    }
    let mut s = Scratch { dir, master: None };
    let out = Command::new(BIN)
        .args(["postfix", "-c"])
        .arg(&conf)
        .arg("set-permissions")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.master = Some(
        Command::new(s.dir.join("bin/master"))
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    s.wait("master", |s| s.log().contains("daemon started"));
    s
}

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
        let mut b = std::fs::read(self.dir.join("maillog")).unwrap_or_default();
        // A last line without its newline is a write still in progress (a
        // reader may see part of postlogd's append): leave it for later.
        b.truncate(b.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1));
        String::from_utf8_lossy(&b).into_owned()
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
