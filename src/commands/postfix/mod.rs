//! Replaces postfix(1) of Postfix 3.7, together with the parts of its
//! postfix-script and post-install that the public commands use: start,
//! start-fg, stop, quick-stop, abort, reload, status, check, flush,
//! set-permissions, upgrade-configuration, start_msg, stop_msg.
//!
//! Messages are Postfix's: the command's own as `postfix: ...`, the
//! script's as `postfix/postfix-script: ...`, printed on stderr when it is a
//! terminal and always logged (syslog or maillog_file); exit statuses as
//! postfix-script's. Postfix runs these steps as a shell script; rostfix
//! runs them in-process (compat/DIVERGENCES.md).
//!
//! Trust: main.cf. Privilege: root (Postfix refuses anyone else); in
//! rostfix's non-root mode the invoking user, for whom everything (queue,
//! data directory, master and its children) is that user's.
//!
//! Parameters: config_directory, command_directory, daemon_directory,
//! queue_directory, data_directory, meta_directory, mail_owner,
//! setgid_group, default_privs, maillog_file, postlog_service_name,
//! compatibility_level, import_environment, process_id_directory.

use crate::global::mail_conf::MailConf;
use crate::global::{maillog, msg};
use crate::sys::process;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;

const UNKNOWN: &str = "Usage: postfix start (or stop, reload, abort, flush, check, status, set-permissions, upgrade-configuration, logrotate)";

/// Whether master is running, judged as `master -t` does: the pid file
/// exists and another process holds its lock. Returns the pid file's first
/// line (trimmed) when running.
pub fn master_running(queue_dir: &str, pid_dir: &str) -> Option<String> {
    let path = format!("{queue_dir}/{pid_dir}/master.pid");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(crate::util::latin1::to_path(&path))
        .ok()?;
    match crate::sys::lock::flock_try(&f, crate::sys::lock::LockOp::Exclusive) {
        Ok(false) => {
            let text = std::fs::read_to_string(crate::util::latin1::to_path(&path)).ok()?;
            Some(text.lines().next().unwrap_or("").trim().to_string())
        }
        _ => None,
    }
}

struct Script {
    conf: MailConf,
    non_root: bool,
    owner: (u32, u32),
    sgid: u32,
}

fn info(t: &str) {
    msg::info(t);
}

fn fatal_exit(t: &str) -> i32 {
    msg::emit_fatal_no_exit(t);
    1
}

impl Script {
    fn p(&self, name: &str) -> String {
        self.conf
            .lookup_eval(name)
            .unwrap_or_else(|e| msg::fatal(&e.0))
            .unwrap_or_default()
    }

    fn running(&self) -> Option<String> {
        master_running(&self.p("queue_directory"), &self.p("process_id_directory"))
    }

    /// post-install create-missing: the queue and data directories with
    /// Postfix's owners and modes (postfix-files).
    fn create_missing(&self, set_perms: bool) -> Result<(), String> {
        let q = self.p("queue_directory");
        let (ou, og) = self.owner;
        let root = if self.non_root { ou } else { 0 };
        let root_g = if self.non_root { og } else { 0 };
        let mut dirs: Vec<(String, u32, u32, u32)> = vec![
            (q.clone(), root, root_g, 0o755),
            (
                self.p("data_directory"),
                ou,
                if self.non_root { og } else { root_g },
                0o700,
            ),
        ];
        for d in [
            "active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming",
            "private", "saved", "trace",
        ] {
            dirs.push((format!("{q}/{d}"), ou, root_g, 0o700));
        }
        dirs.push((format!("{q}/maildrop"), ou, self.sgid, 0o730));
        dirs.push((format!("{q}/public"), ou, self.sgid, 0o710));
        dirs.push((format!("{q}/pid"), root, root_g, 0o755));
        for (path, uid, gid, mode) in dirs {
            let p = crate::util::latin1::to_path(&path);
            let existed = p.is_dir();
            if !existed {
                std::fs::create_dir_all(&p).map_err(|e| {
                    format!(
                        "mkdir {path}: {}",
                        crate::global::config_file::errno_text(&e)
                    )
                })?;
            }
            if !existed || set_perms {
                if !self.non_root {
                    process::chown(&path, Some(uid), Some(gid)).map_err(|e| {
                        format!(
                            "chown {path}: {}",
                            crate::global::config_file::errno_text(&e)
                        )
                    })?;
                }
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).map_err(
                    |e| {
                        format!(
                            "chmod {path}: {}",
                            crate::global::config_file::errno_text(&e)
                        )
                    },
                )?;
            }
        }
        Ok(())
    }

    /// check-fatal.
    fn check_fatal(&self) -> bool {
        if let Err(e) = self.create_missing(false) {
            msg::warn(&e);
            fatal_exit("unable to create missing queue directories");
            return false;
        }
        let cf = format!("{}/master.cf", self.conf.config_dir);
        if !std::path::Path::new(&cf).is_file() {
            fatal_exit(&format!("no {cf} file found"));
            return false;
        }
        if !self.p("maillog_file").is_empty() {
            let text = std::fs::read(&cf)
                .map(|d| crate::util::latin1::decode(&d))
                .unwrap_or_default();
            let has_postlog = text.lines().any(|l| {
                let mut f = l.split_whitespace();
                f.next() == Some("postlog") && f.next() == Some("unix-dgram")
            });
            if !has_postlog {
                fatal_exit(
                    "missing 'postlog' service in master.cf - run 'postfix upgrade-configuration'",
                );
                return false;
            }
        }
        true
    }

    fn master_path(&self) -> String {
        format!("{}/master", self.p("daemon_directory"))
    }

    fn run_master(&self, args: &[&str]) -> std::process::ExitStatus {
        let mut cmd = std::process::Command::new(crate::util::latin1::to_path(&self.master_path()));
        cmd.args(args);
        cmd.env("MAIL_CONFIG", &self.conf.config_dir);
        match cmd.status() {
            Ok(s) => s,
            Err(e) => msg::fatal(&format!(
                "{}: {}",
                self.master_path(),
                crate::global::config_file::errno_text(&e)
            )),
        }
    }

    fn kill_master(&self, pid: &str, sig: i32) {
        if let Ok(p) = pid.parse::<i32>() {
            let _ = process::kill(p, sig);
        }
    }

    fn command(&self, cmd: &str) -> i32 {
        match cmd {
            "start_msg" => {
                println!("Start postfix");
                0
            }
            "stop_msg" => {
                println!("Stop postfix");
                0
            }
            "start" | "start-fg" => {
                if self.running().is_some() {
                    return fatal_exit("the Postfix mail system is already running");
                }
                let quick = format!("{}/quick-start", self.p("queue_directory"));
                if std::path::Path::new(&quick).exists() {
                    let _ = std::fs::remove_file(&quick);
                } else if !self.check_fatal() {
                    return fatal_exit("Postfix integrity check failed!");
                }
                info("starting the Postfix mail system");
                if cmd == "start" {
                    if !self.run_master(&["-w"]).success() {
                        return fatal_exit("mail system startup failed");
                    }
                    0
                } else {
                    let st = self.run_master(&["-s"]);
                    use std::os::unix::process::ExitStatusExt;
                    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
                }
            }
            "stop" | "quick-stop" => {
                let Some(pid) = self.running() else {
                    return fatal_exit("the Postfix mail system is not running");
                };
                info("stopping the Postfix mail system");
                maillog::drain(std::time::Duration::from_secs(1));
                self.kill_master(&pid, libc::SIGTERM);
                for _ in 0..5 {
                    // The script's check runs a program: give master as long.
                    for _ in 0..25 {
                        if self.running().is_none() {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    if self.running().is_none() {
                        if cmd == "quick-stop" {
                            let _ = std::fs::write(
                                format!("{}/quick-start", self.p("queue_directory")),
                                "",
                            );
                        }
                        return 0;
                    }
                    info("waiting for the Postfix mail system to terminate");
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
                msg::warn("stopping the Postfix mail system with force");
                if let Ok(p) = pid.parse::<i32>() {
                    let _ = process::kill(-p, libc::SIGKILL);
                }
                0
            }
            "abort" => {
                let Some(pid) = self.running() else {
                    return fatal_exit("the Postfix mail system is not running");
                };
                info("aborting the Postfix mail system");
                maillog::drain(std::time::Duration::from_secs(1));
                self.kill_master(&pid, libc::SIGTERM);
                0
            }
            "reload" => {
                let Some(pid) = self.running() else {
                    return fatal_exit("the Postfix mail system is not running");
                };
                info("refreshing the Postfix mail system");
                self.kill_master(&pid, libc::SIGHUP);
                0
            }
            "status" => match self.running() {
                None => {
                    info("the Postfix mail system is not running");
                    1
                }
                Some(pid) => {
                    info(&format!("the Postfix mail system is running: PID: {pid}"));
                    0
                }
            },
            "check" => {
                if !self.check_fatal() {
                    return 1;
                }
                0
            }
            "flush" => self.flush(),
            "logrotate" => self.logrotate(),
            "set-permissions" | "upgrade-configuration" => match self.create_missing(true) {
                Ok(()) => 0,
                Err(e) => {
                    msg::error(&e);
                    1
                }
            },
            other => fatal_exit(&format!("unknown command: '{other}'. {UNKNOWN}")),
        }
    }

    /// `postfix logrotate`: rename maillog_file with the date suffix, make
    /// master restart postlogd (a reload), then compress the old file, as
    /// postfix-script does.
    fn logrotate(&self) -> i32 {
        let mut vals = Vec::new();
        for name in [
            "maillog_file",
            "maillog_file_compressor",
            "maillog_file_rotate_suffix",
        ] {
            let v = self.p(name);
            if v.is_empty() {
                return fatal_exit(&format!(
                    "empty '{name}' parameter value - logfile rotation failed"
                ));
            }
            vals.push(v);
        }
        let (file, compressor, suffix) = (&vals[0], &vals[1], &vals[2]);
        if file.starts_with("/dev/") {
            return fatal_exit(&format!("not rotating '{file}'"));
        }
        let r = (|| -> Result<(), String> {
            let out = std::process::Command::new("date")
                .arg(format!("+{suffix}"))
                .output()
                .map_err(|e| format!("date: {e}"))?;
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).trim_end().to_string());
            }
            let stamp = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
            let old = format!("{file}.{stamp}");
            std::fs::rename(
                crate::util::latin1::to_path(file),
                crate::util::latin1::to_path(&old),
            )
            .map_err(|e| {
                format!(
                    "mv: cannot move '{file}' to '{old}': {}",
                    crate::global::config_file::errno_text(&e)
                )
            })?;
            if let Some(pid) = self.running() {
                self.kill_master(&pid, libc::SIGHUP);
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
            let out = std::process::Command::new(compressor)
                .arg(&old)
                .output()
                .map_err(|e| format!("{compressor}: {e}"))?;
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).trim_end().to_string());
            }
            Ok(())
        })();
        match r {
            Ok(()) => 0,
            Err(e) => fatal_exit(&format!("logfile '{file}' rotation failed: {e}")),
        }
    }

    /// `postqueue -f` (rostfix's, in-process; it always prints on stderr).
    fn flush(&self) -> i32 {
        maillog::set_tag(&maillog::mail_task(Some(&self.conf), "postqueue"));
        msg::set_stderr(true);
        crate::sys::setenv("MAIL_CONFIG", &self.conf.config_dir);
        crate::commands::postqueue::main(vec![OsString::from("postqueue"), OsString::from("-f")])
    }
}

/// Entry point: `postfix [-c config_dir] [-Dv] command`.
pub fn main(args: Vec<OsString>) -> i32 {
    let args: Vec<String> = args
        .iter()
        .map(|a| crate::util::latin1::from_os(a))
        .collect();
    crate::sys::set_umask(0o022);
    let progname = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_else(|| "postfix".into());
    let tty = process::isatty(2);
    msg::init(&progname);
    msg::set_stderr(tty);
    maillog::init_syslog(&progname);
    let non_root = crate::global::mail_params::non_root_mode();
    if crate::sys::getuid() != crate::sys::geteuid() {
        msg::fatal("the postfix command must not run as a set-uid process");
    }
    let mut g = crate::util::getopt::Getopt::new(&args, "c:Dv");
    let mut config_dir = None;
    while let Some(o) = g.next_opt() {
        use crate::util::getopt::Opt;
        match o {
            Opt::Flag('c', Some(d)) => {
                if !d.starts_with('/') {
                    msg::fatal("-c requires absolute pathname");
                }
                crate::sys::setenv("MAIL_CONFIG", &d);
                config_dir = Some(d);
            }
            Opt::Flag('D', _) => crate::sys::setenv("MAIL_DEBUG", ""),
            Opt::Flag('v', _) => {
                msg::more_verbose();
                crate::sys::setenv("MAIL_VERBOSE", "");
            }
            o => {
                if let Some(t) = crate::util::getopt::error_text(&progname, &o) {
                    eprintln!("{t}");
                }
                msg::fatal(&format!("usage: {progname} [-c config_dir] [-Dv] command"));
            }
        }
    }
    let conf = MailConf::read(config_dir.as_deref()).unwrap_or_else(|e| msg::fatal(&e.0));
    if let Err(e) = maillog::init(&progname, &conf) {
        msg::fatal(&e);
    }
    let ids = crate::global::mail_params::run_ids(&conf).unwrap_or_else(|e| msg::fatal(&e));
    if conf.compat_level().unwrap_or(0) < (3 << 20 | 6 << 10) {
        msg::info("Postfix is using backwards-compatible default settings");
        msg::info("See http://www.postfix.org/COMPATIBILITY_README.html for details");
        msg::info(
            "To disable backwards compatibility use \"postconf compatibility_level=3.6\" and \"postfix reload\"",
        );
    }
    crate::master::clean_env(
        &conf
            .lookup_eval("import_environment")
            .ok()
            .flatten()
            .unwrap_or_default(),
    );
    let p = |n: &str| {
        conf.lookup_eval(n)
            .unwrap_or_else(|e| msg::fatal(&e.0))
            .unwrap_or_default()
    };
    let queue_dir = p("queue_directory");
    if non_root {
        // Non-root mode: a newcomer's scratch directory may not exist yet.
        let _ = std::fs::create_dir_all(crate::util::latin1::to_path(&queue_dir));
    }
    for dir in [
        p("command_directory"),
        p("daemon_directory"),
        queue_dir.clone(),
    ] {
        if let Err(e) = std::env::set_current_dir(crate::util::latin1::to_path(&dir)) {
            msg::fatal(&format!(
                "chdir({dir}): {}",
                crate::global::config_file::errno_text(&e)
            ));
        }
    }
    // From here on, postfix-script speaks.
    let script_tag = format!("{}/postfix-script", p("syslog_name"));
    msg::init(&script_tag);
    maillog::set_tag(&script_tag);
    let Some(cmd) = args.get(g.optind) else {
        return fatal_exit(&format!("unknown command: ''. {UNKNOWN}"));
    };
    let daemon_dir = p("daemon_directory");
    if !std::path::Path::new(&format!("{daemon_dir}/master")).is_file() {
        return fatal_exit(&format!("no Postfix master program {daemon_dir}/master!"));
    }
    let s = Script {
        conf,
        non_root,
        owner: (ids.owner_uid, ids.owner_gid),
        sgid: ids.sgid_gid,
    };
    s.command(cmd)
}
