//! Running a delivery command with the message on its standard input, as
//! Postfix's pipe_command() does for local(8): a new process group, the
//! recipient's uid/gid, a clean environment (export_environment, PATH,
//! the delivery variables), a time limit, at most 4096 bytes of output
//! kept for the reason text, and the exit status mapped to a DSN
//! (`D.S.N text` output, <sysexits.h> codes, "Command died with ...").

use crate::global::deliver_request::Dsn;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The outcome class, as PIPE_STAT_*.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipeStatus {
    /// Success; the reason holds the command output.
    Ok(String),
    Defer(Dsn),
    Bounce(Dsn),
    /// The queue file content was corrupt.
    Corrupt,
}

/// How to run the command.
pub struct PipeArgs<'a> {
    pub command: &'a str,
    /// None: no identity change (non-root mode).
    pub ids: Option<(u32, u32)>,
    pub env: Vec<(String, String)>,
    /// Names of variables kept from our environment (export_environment).
    pub export: Vec<String>,
    /// local_command_shell (empty: exec directly when there are no shell
    /// metacharacters, else /bin/sh -c).
    pub shell: &'a str,
    pub cwd: Option<&'a str>,
    pub time_limit: Duration,
    /// pipe(8): run this argument vector directly (execvp), ignoring
    /// `command` and `shell`; `command` is then what reason texts quote
    /// (Postfix uses argv[0]).
    pub argv: Option<&'a [String]>,
}

/// <sysexits.h> codes with their DSN and text (sys_exits.c).
pub fn sys_exits_detail(code: i32) -> Option<(&'static str, &'static str)> {
    Some(match code {
        64 => ("5.3.0", "command line usage error"),
        65 => ("5.6.0", "data format error"),
        66 => ("5.3.0", "cannot open input"),
        67 => ("5.1.1", "user unknown"),
        68 => ("5.1.2", "host name unknown"),
        69 => ("5.3.0", "service unavailable"),
        70 => ("5.3.0", "internal software error"),
        71 => ("4.3.0", "system resource problem"),
        72 => ("5.3.0", "critical OS file missing"),
        73 => ("5.2.0", "can't create user output file"),
        74 => ("5.3.0", "input/output error"),
        75 => ("4.3.0", "temporary failure"),
        76 => ("5.5.0", "remote error in protocol"),
        77 => ("5.7.0", "permission denied"),
        78 => ("5.3.5", "local configuration error"),
        _ => return None,
    })
}

/// The length of a leading `D.S.N` code followed by a blank or the end.
pub fn dsn_valid(text: &str) -> usize {
    let b = text.as_bytes();
    if b.is_empty() || !matches!(b[0], b'2' | b'4' | b'5') || b.get(1) != Some(&b'.') {
        return 0;
    }
    let mut i = 2;
    for part in 0..2 {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i - start > 3 {
            return 0;
        }
        if part == 0 {
            if b.get(i) != Some(&b'.') {
                return 0;
            }
            i += 1;
        }
    }
    if i < b.len() && !matches!(b[i], b' ' | b'\t') {
        return 0;
    }
    i
}

const OK_CHARS: &str =
    "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ \t";

fn build_command(args: &PipeArgs) -> Command {
    let cmd = args.command;
    let mut c = if let Some(v) = args.argv.filter(|v| !v.is_empty()) {
        let mut c = Command::new(&v[0]);
        c.args(&v[1..]);
        c
    } else if !args.shell.is_empty() {
        let mut v: Vec<&str> = args
            .shell
            .split([' ', '\t'])
            .filter(|s| !s.is_empty())
            .collect();
        v.push(cmd);
        let mut c = Command::new(v[0]);
        c.args(&v[1..]);
        c
    } else if cmd.chars().all(|ch| OK_CHARS.contains(ch))
        && !cmd.trim_matches([' ', '\t']).is_empty()
    {
        let v: Vec<&str> = cmd.split([' ', '\t']).filter(|s| !s.is_empty()).collect();
        if v[0].contains('/') || which(v[0]) {
            let mut c = Command::new(v[0]);
            c.args(&v[1..]);
            c
        } else {
            let mut c = Command::new("/bin/sh");
            c.arg0("sh").arg("-c").arg(cmd);
            c
        }
    } else {
        let mut c = Command::new("/bin/sh");
        c.arg0("sh").arg("-c").arg(cmd);
        c
    };
    c.env_clear();
    for name in &args.export {
        if let Some((n, v)) = name.split_once('=') {
            c.env(n, v);
        } else if let Some(v) = std::env::var_os(name) {
            c.env(name, v);
        }
    }
    c.env("PATH", "/usr/bin:/bin");
    for (n, v) in &args.env {
        c.env(n, v);
    }
    if let Some(d) = args.cwd {
        c.current_dir(d);
    }
    if let Some((u, g)) = args.ids {
        c.uid(u).gid(g);
    }
    c.process_group(0);
    c.stdin(Stdio::piped());
    c
}

fn which(name: &str) -> bool {
    ["/usr/bin", "/bin"]
        .iter()
        .any(|d| std::path::Path::new(d).join(name).exists())
}

/// Run the command with `input` (the already formatted message) on its
/// standard input.
pub fn pipe_command(args: &PipeArgs, input: &[u8]) -> PipeStatus {
    // Standard output and standard error share one pipe, as in Postfix,
    // so the captured text keeps the order the command wrote it in.
    let (out_r, out_w) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => {
            return PipeStatus::Defer(Dsn::new(
                "4.3.0",
                format!("Delivery failed: {}", crate::global::mbox::errtext(&e)),
            ));
        }
    };
    let spawned = {
        let mut cmd = build_command(args);
        match out_w.try_clone() {
            Ok(w2) => {
                cmd.stdout(out_w).stderr(w2);
            }
            Err(_) => {
                cmd.stdout(out_w).stderr(Stdio::null());
            }
        }
        cmd.spawn()
    };
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            if let Some(v) = args.argv {
                // Postfix's child reports a failed execvp() on its output
                // as a fatal error and exits with EX_TEMPFAIL.
                let text = format!(
                    "pipe: fatal: pipe_command: execvp {}: {} ",
                    v.first().map(String::as_str).unwrap_or(""),
                    crate::global::mbox::errtext(&e)
                );
                return PipeStatus::Defer(Dsn::new(
                    "4.3.0",
                    format!("temporary failure. Command output: {text}"),
                ));
            }
            return PipeStatus::Defer(Dsn::new(
                "4.3.0",
                format!("Delivery failed: {}", crate::global::mbox::errtext(&e)),
            ));
        }
    };
    let pid = child.id() as i32;
    let mut stdin = child.stdin.take();
    let mut stdout = Some(out_r);
    let deadline = Instant::now() + args.time_limit;
    let mut log: Vec<u8> = Vec::new();
    let mut timed_out = false;
    let mut write_err: Option<std::io::Error> = None;
    let write_done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let done = &write_done;
        let writer = s.spawn(move || {
            let r = if let Some(mut w) = stdin.take() {
                w.write_all(input).err()
            } else {
                None
            };
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            r
        });
        // Read the output (limited) until it closes or time runs out.
        let fd = stdout.as_ref().map(fd_of).unwrap_or(-1);
        let mut open = true;
        while open {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                timed_out = true;
                break;
            }
            let ready = crate::sys::process::poll_read(&[fd], left.as_millis().min(1000) as i32)
                .unwrap_or_default();
            if !ready.first().copied().unwrap_or(false) {
                continue;
            }
            let mut buf = [0u8; 4096];
            match stdout.as_mut().map(|r| r.read(&mut buf)).unwrap_or(Ok(0)) {
                Ok(0) | Err(_) => open = false,
                Ok(n) => {
                    let room = 4096usize.saturating_sub(log.len());
                    log.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        if timed_out {
            // Which side was waiting, as Postfix's warning tells.
            if write_done.load(std::sync::atomic::Ordering::SeqCst) {
                crate::global::msg::warn("pipe_command_read: read time limit exceeded");
            } else {
                crate::global::msg::warn("pipe_command_write: write time limit exceeded");
            }
            let _ = crate::sys::process::kill(-pid, libc::SIGKILL);
            let _ = crate::sys::process::kill(pid, libc::SIGKILL);
        }
        write_err = writer.join().unwrap_or(None);
    });
    drop(stdout);
    // Wait, with a bound: a command that closed its output but keeps
    // running is killed with its process group.
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) => {
                if Instant::now() >= deadline {
                    timed_out = true;
                    let _ = crate::sys::process::kill(-pid, libc::SIGKILL);
                    let _ = child.kill();
                    break child.wait().ok();
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => break None,
        }
    };
    let mut text: String = log
        .iter()
        .map(|&b| match b {
            b'\t' | b'\n' => ' ',
            0x20..=0x7e => b as char,
            _ => '_',
        })
        .collect();
    if text.len() > 4096 {
        text.truncate(4096);
    }
    let has = !text.is_empty();
    let out = |t: &str| {
        if has {
            format!(". Command output: {t}")
        } else {
            String::new()
        }
    };
    let command = args.command;
    // The diagnostic text bounce notices show: the output, else the
    // <sysexits.h> text.
    let diag = |dflt: &str| if has { text.clone() } else { dflt.to_string() };
    if timed_out {
        return PipeStatus::Bounce(Dsn::unix(
            "5.3.0",
            diag("internal software error"),
            format!("Command time limit exceeded: \"{command}\"{}", out(&text)),
        ));
    }
    let Some(status) = status else {
        return PipeStatus::Defer(Dsn::unix(
            "4.3.0",
            "system resource problem",
            "Delivery failed: wait error",
        ));
    };
    if let Some(sig) = status.signal() {
        return PipeStatus::Defer(Dsn::unix(
            "4.3.0",
            diag("internal software error"),
            format!(
                "Command died with signal {sig}: \"{command}\"{}",
                out(&text)
            ),
        ));
    }
    let code = status.code().unwrap_or(0);
    if code != 0 {
        let n = dsn_valid(&text);
        if n > 0 {
            let dsn = &text[..n];
            let rest = text[n..].trim_start_matches([' ', '\t']);
            let d = Dsn::unix(dsn, rest, rest);
            return if dsn.starts_with('4') {
                PipeStatus::Defer(d)
            } else {
                PipeStatus::Bounce(d)
            };
        }
        if let Some((dsn, t)) = sys_exits_detail(code) {
            let d = Dsn::unix(dsn, diag(t), format!("{t}{}", out(&text)));
            return if dsn.starts_with('4') {
                PipeStatus::Defer(d)
            } else {
                PipeStatus::Bounce(d)
            };
        }
        return PipeStatus::Bounce(Dsn::unix(
            "5.3.0",
            diag(&format!("unknown mail system error {code}")),
            format!(
                "Command died with status {code}: \"{command}\"{}",
                out(&text)
            ),
        ));
    }
    if let Some(e) = write_err
        && e.raw_os_error() != Some(libc::EPIPE)
    {
        return PipeStatus::Bounce(Dsn::new(
            "5.3.0",
            format!(
                "Command failed: error writing message: {}: \"{command}\"",
                crate::global::mbox::errtext(&e)
            ),
        ));
    }
    PipeStatus::Ok(text)
}

fn fd_of<T: std::os::fd::AsRawFd>(t: &T) -> i32 {
    t.as_raw_fd()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cmd: &str, limit: u64) -> PipeStatus {
        pipe_command(
            &PipeArgs {
                command: cmd,
                ids: None,
                env: vec![("FOO".into(), "bar".into())],
                export: vec![],
                shell: "",
                cwd: None,
                time_limit: Duration::from_secs(limit),
                argv: None,
            },
            b"hello\n",
        )
    }

    #[test]
    fn statuses() {
        assert_eq!(run("/bin/cat", 5), PipeStatus::Ok("hello ".into()));
        assert_eq!(
            run("echo $FOO; cat >/dev/null", 5),
            PipeStatus::Ok("bar ".into())
        );
        assert_eq!(
            run("echo oops; exit 1", 5),
            PipeStatus::Bounce(Dsn::unix(
                "5.3.0",
                "oops ",
                "Command died with status 1: \"echo oops; exit 1\". Command output: oops "
            ))
        );
        assert_eq!(
            run("exit 75", 5),
            PipeStatus::Defer(Dsn::unix("4.3.0", "temporary failure", "temporary failure"))
        );
        assert_eq!(
            run("echo 4.7.1 go away; exit 1", 5),
            PipeStatus::Defer(Dsn::unix("4.7.1", "go away ", "go away "))
        );
        let t = Instant::now();
        assert_eq!(
            run("sleep 30", 1),
            PipeStatus::Bounce(Dsn::unix(
                "5.3.0",
                "internal software error",
                "Command time limit exceeded: \"sleep 30\""
            ))
        );
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn dsn_codes() {
        assert_eq!(dsn_valid("5.1.1 x"), 5);
        assert_eq!(dsn_valid("4.3.0"), 5);
        assert_eq!(dsn_valid("3.1.1 x"), 0);
        assert_eq!(dsn_valid("5.1.1x"), 0);
    }
}
