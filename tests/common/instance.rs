//! A whole running mail system in a scratch folder: ours (`postfix -c DIR
//! start` with our master, pickup and cleanup) or Postfix 3.7.11's (its
//! master, pickup, cleanup and trivial-rewrite), each with its own
//! `sendmail`. With `new`, no qmgr runs, so submitted mail stays in
//! incoming/ (or hold/); `with_master` takes a whole master.cf (the same
//! text for both sides: qmgr, local, virtual, pipe, smtp, bounce ...) and
//! delivers (tests/delivery_e2e.rs). Postfix's side needs root (its master
//! refuses otherwise) and the reference binaries.

#![allow(dead_code)]

use super::queue::{owner_and_group, reference};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    Ours,
    Postfix,
}

pub struct Instance {
    pub side: Side,
    pub dir: PathBuf,
    running: bool,
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

fn age(path: &Path) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
}

fn lib_path(root: &Path) -> String {
    format!(
        "{0}/usr/lib/postfix:{0}/usr/lib/x86_64-linux-gnu:{0}/lib/x86_64-linux-gnu",
        root.display()
    )
}

impl Instance {
    /// Create (not start) an instance under `dir` with these extra main.cf
    /// lines and extra files (name, text) in its config folder.
    pub fn new(side: Side, dir: &Path, extra: &str, files: &[(&str, &str)]) -> Instance {
        Instance::with_master(side, dir, extra, None, files)
    }

    /// Like `new`, with this master.cf (the same text for either side)
    /// instead of the minimal pickup + cleanup one; every daemon rostfix
    /// has is linked into our side's daemon_directory.
    pub fn with_master(
        side: Side,
        dir: &Path,
        extra: &str,
        master: Option<&str>,
        files: &[(&str, &str)],
    ) -> Instance {
        let _ = std::fs::remove_dir_all(dir);
        for d in ["conf", "q", "data", "bin"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let d = dir.display();
        let (user, group) = owner_and_group();
        let mut main_cf = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {d}/q\n\
             data_directory = {d}/data\n\
             maillog_file = {d}/maillog\n\
             maillog_file_prefixes = {d}\n\
             meta_directory = {d}/conf\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             myhostname = test.example\n\
             mydomain = example\n"
        );
        if is_root() {
            main_cf.push_str(&format!(
                "mail_owner = {user}\nsetgid_group = {group}\ndefault_privs = daemon\n"
            ));
        }
        let master_cf = match side {
            Side::Ours => {
                let bin = dir.join("bin");
                for p in [
                    "master",
                    "pickup",
                    "cleanup",
                    "sendmail",
                    "postqueue",
                    "postsuper",
                    "postcat",
                    "postalias",
                    "postmap",
                    "qmgr",
                    "trivial-rewrite",
                    "local",
                    "virtual",
                    "pipe",
                    "smtp",
                    "lmtp",
                    "smtpd",
                    "bounce",
                    "error",
                    "discard",
                    "showq",
                    "flush",
                    "postlogd",
                    "proxymap",
                ] {
                    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_rostfix"), bin.join(p)).unwrap();
                }
                std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_postdrop"), bin.join("postdrop"))
                    .unwrap();
                main_cf.push_str(&format!(
                    "daemon_directory = {d}/bin\ncommand_directory = {d}/bin\n"
                ));
                "postlog unix-dgram n - n - 1 postlogd\n\
                 pickup unix n - n 60 1 pickup\n\
                 cleanup unix n - n - 0 cleanup\n"
                    .to_string()
            }
            Side::Postfix => {
                let r = reference().expect("reference");
                let rd = r.display();
                main_cf.push_str(&format!(
                    "daemon_directory = {rd}/usr/lib/postfix/sbin\n\
                     command_directory = {rd}/usr/sbin\n\
                     shlib_directory = {rd}/usr/lib/postfix\n\
                     import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C \
                     NORANDOMIZE LD_LIBRARY_PATH={}\n",
                    lib_path(&r)
                ));
                if let Ok(t) = std::fs::read(r.join("etc/postfix/postfix-files")) {
                    std::fs::write(dir.join("conf/postfix-files"), t).unwrap();
                }
                std::fs::write(dir.join("conf/dynamicmaps.cf"), "").unwrap();
                "postlog unix-dgram n - n - 1 postlogd\n\
                 pickup unix n - n 60 1 pickup\n\
                 cleanup unix n - n - 0 cleanup\n\
                 rewrite unix - - n - - trivial-rewrite\n"
                    .to_string()
            }
        };
        let master_cf = master.map(str::to_string).unwrap_or(master_cf);
        main_cf.push_str(extra);
        std::fs::write(dir.join("conf/main.cf"), main_cf).unwrap();
        std::fs::write(dir.join("conf/master.cf"), master_cf).unwrap();
        for (n, t) in files {
            std::fs::write(dir.join("conf").join(n), t).unwrap();
        }
        for e in std::fs::read_dir(dir.join("conf")).unwrap() {
            age(&e.unwrap().path());
        }
        if is_root() {
            let _ = Command::new("chown")
                .arg(&user)
                .arg(dir.join("data"))
                .status();
        }
        Instance {
            side,
            dir: dir.to_path_buf(),
            running: false,
        }
    }

    /// An instance that already exists on disk (not started by us).
    pub fn attach(side: Side, dir: &Path) -> Instance {
        Instance {
            side,
            dir: dir.to_path_buf(),
            running: false,
        }
    }

    pub fn conf(&self) -> String {
        self.dir.join("conf").display().to_string()
    }

    pub fn queue(&self) -> PathBuf {
        self.dir.join("q")
    }

    pub fn log(&self) -> String {
        let mut b = std::fs::read(self.dir.join("maillog")).unwrap_or_default();
        // A last line without its newline is a write still in progress (a
        // reader may see part of postlogd's append): leave it for later.
        b.truncate(b.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1));
        String::from_utf8_lossy(&b).into_owned()
    }

    /// A command of this side's: `prog args`, with stdin bytes.
    pub fn command(&self, prog: &str) -> Command {
        let mut c = match self.side {
            Side::Ours => {
                let mut c = Command::new(if prog == "postdrop" {
                    env!("CARGO_BIN_EXE_postdrop")
                } else {
                    env!("CARGO_BIN_EXE_rostfix")
                });
                c.arg0(prog);
                c
            }
            Side::Postfix => {
                let r = reference().unwrap();
                let mut c = Command::new(r.join("usr/sbin").join(prog));
                c.arg0(prog);
                c.env("LD_LIBRARY_PATH", lib_path(&r));
                c
            }
        };
        c.env("TZ", "UTC")
            .env("NORANDOMIZE", "1")
            .env("MAIL_CONFIG", self.conf())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Run `prog args` with `input` on stdin: (status, stdout, stderr).
    pub fn run(&self, prog: &str, args: &[&str], input: &[u8]) -> (i32, Vec<u8>, String) {
        let mut c = self.command(prog);
        c.args(args).stdin(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let data = input.to_vec();
        let w = std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&data);
        });
        let o = child.wait_with_output().unwrap();
        let _ = w.join();
        let st = o
            .status
            .code()
            .unwrap_or_else(|| 128 + o.status.signal().unwrap_or(0));
        (
            st,
            o.stdout,
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    pub fn start(&mut self) {
        let (st, _, err) = self.run("postfix", &["-c", &self.conf(), "start"], b"");
        assert_eq!(
            st,
            0,
            "{:?} postfix start: {err}\n{}",
            self.side,
            self.log()
        );
        self.running = true;
        let pidfile = self.queue().join("pid/master.pid");
        wait_for("master pid file", Duration::from_secs(10), || {
            pidfile.exists()
        });
    }

    pub fn stop(&mut self) {
        if self.running {
            let _ = self.run("postfix", &["-c", &self.conf(), "stop"], b"");
            self.running = false;
        }
    }

    /// Every queue file (relative path) in these queues.
    pub fn files(&self, queues: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for q in queues {
            let mut stack = vec![self.queue().join(q)];
            while let Some(d) = stack.pop() {
                let Ok(rd) = std::fs::read_dir(&d) else {
                    continue;
                };
                for e in rd.flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        stack.push(p);
                    } else {
                        out.push(p.strip_prefix(self.queue()).unwrap().display().to_string());
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// Wait until a queue file not in `known` appears, complete (mode
    /// 0700), in incoming/ or hold/; None after `limit`.
    pub fn wait_new(&self, known: &[String], limit: Duration) -> Option<String> {
        let t = Instant::now();
        while t.elapsed() < limit {
            for f in self.files(&["incoming", "hold"]) {
                if known.contains(&f) {
                    continue;
                }
                use std::os::unix::fs::PermissionsExt;
                if let Ok(m) = std::fs::metadata(self.queue().join(&f))
                    && m.permissions().mode() & 0o700 == 0o700
                {
                    return Some(f);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.stop();
        if let Some(pid) = std::fs::read_to_string(self.queue().join("pid/master.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
        if std::env::var_os("ROSTFIX_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
