//! trivial-rewrite against Postfix 3.7.11: every query of
//! `compat/trivial-rewrite/cases.txt` (format described there) is answered
//! by rostfix's rewriting/resolving library in-process and by the
//! `trivial-rewrite -S` program, and both must match Postfix's
//! trivial-rewrite in stand-alone mode: the reply attributes and the log
//! lines.
//!
//! Modes (as tests/differential.rs):
//! - golden (default): compare with `compat/trivial-rewrite/golden/NAME.out`;
//! - live: `ROSTFIX_LIVE=1` and the reference (`$ROSTFIX_REFERENCE`, else
//!   `$HOME/.cache/rostfix/postfix-3.7.11`, made by compat/reference.sh):
//!   run Postfix's trivial-rewrite too and compare with it;
//! - record: `ROSTFIX_RECORD=1` rewrites the golden files from the reference
//!   (compat/record-trivial-rewrite.sh). `ROSTFIX_CASE=SUB` runs only the
//!   sections whose name contains SUB.

use rostfix::daemons::trivial_rewrite::{TrivialRewrite, flag_names, server};
use rostfix::global::mail_conf::MailConf;
use rostfix::util::latin1;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const COMMON: &str = "queue_directory = {dir}/q
data_directory = {dir}/q
meta_directory = {dir}
myhostname = host.example.com
mydomain = example.com
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
";

struct Section {
    name: String,
    main_cf: String,
    files: Vec<(String, String)>,
    queries: Vec<String>,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn parse_cases(text: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    let mut in_queries = false;
    let mut in_file: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some((name, body)) = in_file.as_mut() {
            if line == "@end" {
                let f = (name.clone(), body.clone());
                out.last_mut().expect("section").files.push(f);
                in_file = None;
            } else {
                body.push_str(line);
                body.push('\n');
            }
            continue;
        }
        if let Some(name) = line.strip_prefix("== ") {
            out.push(Section {
                name: name.trim().to_string(),
                main_cf: COMMON.to_string(),
                files: Vec::new(),
                queries: Vec::new(),
            });
            in_queries = false;
            continue;
        }
        if line.starts_with('#') || (line.is_empty() && !in_queries) {
            continue;
        }
        let Some(sec) = out.last_mut() else {
            panic!("line before the first section: {line}");
        };
        if in_queries {
            if !line.is_empty() {
                sec.queries.push(line.to_string());
            }
        } else if line == "--" {
            in_queries = true;
        } else if let Some(name) = line.strip_prefix("@file ") {
            in_file = Some((name.to_string(), String::new()));
        } else {
            sec.main_cf.push_str(line);
            sec.main_cf.push('\n');
        }
    }
    out
}

fn unempty(s: &str) -> &str {
    if s == "<>" { "" } else { s }
}

/// A query as protocol attributes.
fn request(q: &str) -> Vec<(String, String)> {
    let (cmd, rest) = q.split_once(' ').unwrap_or((q, ""));
    let (a, b) = rest.split_once(' ').unwrap_or((rest, ""));
    let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
    match cmd {
        "rewrite" => vec![
            pair("request", "rewrite"),
            pair("rule", a),
            pair("address", unempty(b)),
        ],
        "resolve" | "verify" => vec![
            pair("request", cmd),
            pair("sender", unempty(a)),
            pair("address", unempty(b)),
        ],
        _ => panic!("bad query: {q}"),
    }
}

fn encode(attrs: &[(String, String)]) -> Vec<u8> {
    let a: Vec<(&str, &str)> = attrs
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    server::write_group(&a)
}

/// Reply bytes and log lines as the golden text.
fn render(q: &str, reply: &[u8], logs: &[String]) -> String {
    let mut o = format!("> {q}\n");
    let mut r = reply;
    match server::read_group(&mut r) {
        Ok(attrs) => {
            let mut parts: Vec<String> = attrs.iter().map(|(n, v)| format!("{n}={v}")).collect();
            if let Some((_, f)) = attrs.iter().rev().find(|(n, _)| n == "flags")
                && attrs.len() == 5
            {
                let names = flag_names(f.parse().unwrap_or(0));
                parts.push(format!("({})", names.trim_end()));
            }
            o.push_str(&parts.join("\t"));
            o.push('\n');
        }
        Err(_) => {
            o.push_str(&format!("(no reply: {} bytes)\n", reply.len()));
        }
    }
    for l in logs {
        o.push_str(&format!("log: {l}\n"));
    }
    o
}

fn setup(sec: &Section, dir: &Path) -> String {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir.join("q")).unwrap();
    let d = dir.to_str().unwrap();
    let main_cf = sec.main_cf.replace("{dir}", d);
    fs::write(dir.join("main.cf"), latin1::encode(&main_cf)).unwrap();
    for (n, body) in &sec.files {
        fs::write(dir.join(n), latin1::encode(&body.replace("{dir}", d))).unwrap();
    }
    // Postfix refuses table files newer than main.cf... no: it checks
    // tables against their source; give everything an old mtime anyway.
    let _ = Command::new("touch")
        .arg("-d")
        .arg("2024-01-01")
        .args(fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()))
        .status();
    main_cf
}

/// Log lines of a stand-alone run: stderr minus the program prefix.
fn stderr_logs(stderr: &[u8], dir: &Path) -> Vec<String> {
    let text = latin1::decode(stderr);
    text.lines()
        .map(|l| {
            let l = l
                .strip_prefix("postfix/trivial-rewrite: ")
                .or_else(|| l.strip_prefix("trivial-rewrite: "))
                .unwrap_or(l);
            l.replace(dir.to_str().unwrap(), "{dir}")
        })
        .collect()
}

fn run_program(cmd: &mut Command, dir: &Path, input: &[u8]) -> (Vec<u8>, Vec<String>) {
    let mut child = cmd
        .env_clear()
        .env("MAIL_CONFIG", dir)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .args(["-S", "-V"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn trivial-rewrite");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = wait_bounded(child);
    (out.stdout, stderr_logs(&out.stderr, dir))
}

fn wait_bounded(mut child: std::process::Child) -> std::process::Output {
    let start = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > std::time::Duration::from_secs(10) {
            let _ = child.kill();
            panic!("trivial-rewrite did not finish in 10s");
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

fn reference() -> Option<PathBuf> {
    if let Some(r) = std::env::var_os("ROSTFIX_REFERENCE").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(r));
    }
    let home = std::env::var("HOME").ok()?;
    let r = PathBuf::from(home).join(".cache/rostfix/postfix-3.7.11");
    r.join("usr/lib/postfix/sbin/trivial-rewrite")
        .exists()
        .then_some(r)
}

fn postfix_command(root: &Path) -> Command {
    let libpath = format!(
        "{0}/usr/lib/postfix:{0}/usr/lib/x86_64-linux-gnu:{0}/lib/x86_64-linux-gnu",
        root.display()
    );
    let mut c = Command::new(root.join("usr/lib/postfix/sbin/trivial-rewrite"));
    std::os::unix::process::CommandExt::arg0(&mut c, "trivial-rewrite");
    c.env("LD_LIBRARY_PATH", libpath);
    c
}

fn rostfix_command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rostfix"));
    std::os::unix::process::CommandExt::arg0(&mut c, "trivial-rewrite");
    c
}

/// Answer a query with the library, in-process: the reply and every
/// message logged while the engine was built and answered.
fn library_answer(main_cf: &str, dir: &Path, q: &str) -> (Vec<u8>, Vec<String>) {
    let conf = MailConf::from_text(dir.to_str().unwrap(), main_cf);
    rostfix::global::maps::set_allow_surrogate(true);
    // What a daemon does once it has read main.cf.
    rostfix::global::msg::set_utf8_enable(conf.get_bool("smtputf8_enable").unwrap_or(false));
    let attrs = request(q);
    let (reply, logs) = rostfix::global::msg::sandbox(|| {
        let mut tr = TrivialRewrite::new(&conf).ok()?;
        server::handle(&mut tr, &attrs)
    });
    (reply.ok().flatten().unwrap_or_default(), logs)
}

#[test]
fn trivial_rewrite_against_postfix() {
    let root = repo_root();
    let cases = latin1::decode(&fs::read(root.join("compat/trivial-rewrite/cases.txt")).unwrap());
    let sections = parse_cases(&cases);
    assert!(sections.len() > 20, "cases file parsed to too few sections");
    let record = std::env::var("ROSTFIX_RECORD").is_ok_and(|v| v != "0");
    let live = std::env::var("ROSTFIX_LIVE").is_ok_and(|v| v != "0");
    let reference = reference();
    if record || live {
        assert!(
            reference.is_some(),
            "the reference is needed: run compat/reference.sh"
        );
    }
    let only = std::env::var("ROSTFIX_CASE").unwrap_or_default();
    let work = std::env::temp_dir().join(format!("rostfix-trivial-rewrite-{}", std::process::id()));
    let mut failures = Vec::new();
    let mut count = 0;
    for sec in &sections {
        if !only.is_empty() && !sec.name.contains(&only) {
            continue;
        }
        let dir = work.join(&sec.name);
        let main_cf = setup(sec, &dir);
        let golden_path = root
            .join("compat/trivial-rewrite/golden")
            .join(format!("{}.out", sec.name));
        let expected = if record || live {
            let r = reference.as_ref().unwrap();
            let mut text = String::new();
            for q in &sec.queries {
                let (reply, logs) =
                    run_program(&mut postfix_command(r), &dir, &encode(&request(q)));
                text.push_str(&render(q, &reply, &logs));
            }
            if record {
                fs::create_dir_all(golden_path.parent().unwrap()).unwrap();
                fs::write(&golden_path, latin1::encode(&text)).unwrap();
            }
            text
        } else {
            latin1::decode(
                &fs::read(&golden_path)
                    .unwrap_or_else(|e| panic!("{}: {e}", golden_path.display())),
            )
        };
        // The library, in-process: a fresh engine per query, as each
        // stand-alone run starts afresh (its start-up messages count).
        let mut lib_text = String::new();
        for q in &sec.queries {
            let (reply, logs) = library_answer(&main_cf, &dir, q);
            let logs: Vec<String> = logs
                .iter()
                .map(|l| l.replace(dir.to_str().unwrap(), "{dir}"))
                .collect();
            lib_text.push_str(&render(q, &reply, &logs));
        }
        if lib_text != expected {
            failures.push(diff(
                &format!("{} (library)", sec.name),
                &expected,
                &lib_text,
            ));
        }
        // The program, stand-alone.
        let mut prog_text = String::new();
        for q in &sec.queries {
            let (reply, logs) = run_program(&mut rostfix_command(), &dir, &encode(&request(q)));
            prog_text.push_str(&render(q, &reply, &logs));
            count += 1;
        }
        if prog_text != expected {
            failures.push(diff(
                &format!("{} (program)", sec.name),
                &expected,
                &prog_text,
            ));
        }
    }
    let _ = fs::remove_dir_all(&work);
    assert!(
        failures.is_empty(),
        "{} of the sections differ from Postfix:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(count > 0 || !only.is_empty(), "no query ran");
}

fn diff(name: &str, want: &str, got: &str) -> String {
    let w: Vec<&str> = want.lines().collect();
    let g: Vec<&str> = got.lines().collect();
    let mut o = format!("--- {name}: Postfix (-) vs rostfix (+)\n");
    let n = w.len().max(g.len());
    for i in 0..n {
        let (a, b) = (w.get(i), g.get(i));
        if a != b {
            if let Some(a) = a {
                o.push_str(&format!("- {a}\n"));
            }
            if let Some(b) = b {
                o.push_str(&format!("+ {b}\n"));
            }
        }
    }
    o
}

/// The `rewrite` service under rostfix's master: the protocol announcement,
/// then several requests on one connection, with transport_maps opened
/// before the service drops privileges.
#[test]
fn rewrite_service_under_master() {
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};
    let bin = env!("CARGO_BIN_EXE_rostfix");
    let dir = std::env::temp_dir().join(format!("rostfix-rewrite-svc-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    for d in ["conf", "q", "data", "bin"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    for p in ["master", "trivial-rewrite", "postlogd"] {
        std::os::unix::fs::symlink(bin, dir.join("bin").join(p)).unwrap();
    }
    let d = dir.display();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut main_cf = format!(
        "compatibility_level = 3.6\nqueue_directory = {d}/q\ndata_directory = {d}/data\n\
         daemon_directory = {d}/bin\nmaillog_file = {d}/maillog\nmaillog_file_prefixes = {d}\n\
         inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\nmyhostname = test.example\n\
         transport_maps = texthash:{d}/conf/transport\n"
    );
    if root {
        main_cf.push_str("mail_owner = nobody\ndefault_privs = daemon\nsetgid_group = mail\n");
    }
    fs::write(dir.join("conf/main.cf"), main_cf).unwrap();
    fs::write(
        dir.join("conf/transport"),
        "remote.example smtp:[gw.example]:2525\n",
    )
    .unwrap();
    fs::write(
        dir.join("conf/master.cf"),
        "rewrite unix - - n - - trivial-rewrite\n",
    )
    .unwrap();
    for f in ["main.cf", "master.cf", "transport"] {
        let f = fs::File::options()
            .write(true)
            .open(dir.join("conf").join(f))
            .unwrap();
        f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
    }
    let conf = dir.join("conf");
    let st = Command::new(bin)
        .arg("postfix")
        .arg("-c")
        .arg(&conf)
        .arg("set-permissions")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let mut master = Command::new(dir.join("bin/master"))
        .arg("-d")
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let sock = dir.join("q/private/rewrite");
    let start = Instant::now();
    let conn = loop {
        if let Ok(c) = UnixStream::connect(&sock) {
            break Some(c);
        }
        if start.elapsed() > Duration::from_secs(5) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let result = std::panic::catch_unwind(|| {
        let mut c = conn.expect("private/rewrite did not appear");
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let hello = server::read_group(&mut c).unwrap();
        assert_eq!(hello[0].1, "trivial_rewrite_protocol");
        let mut ask = |attrs: &[(&str, &str)]| -> Vec<String> {
            c.write_all(&server::write_group(attrs)).unwrap();
            server::read_group(&mut c)
                .unwrap()
                .into_iter()
                .map(|(_, v)| v)
                .collect()
        };
        assert_eq!(
            ask(&[
                ("request", "rewrite"),
                ("rule", "local"),
                ("address", "joe")
            ]),
            ["0", "joe@test.example"]
        );
        assert_eq!(
            ask(&[
                ("request", "resolve"),
                ("sender", ""),
                ("address", "joe@remote.example")
            ]),
            [
                "0",
                "smtp",
                "[gw.example]:2525",
                "joe@remote.example",
                "4096"
            ]
        );
        assert_eq!(
            ask(&[
                ("request", "verify"),
                ("sender", ""),
                ("address", "joe@test.example")
            ]),
            ["0", "local", "test.example", "joe@test.example", "256"]
        );
    });
    let _ = master.kill();
    let _ = master.wait();
    if let Ok(pid) = fs::read_to_string(dir.join("q/pid/master.pid"))
        && let Ok(pid) = pid.trim().parse::<i32>()
    {
        // SAFETY: kill has no memory arguments; the pid is our master's.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = fs::remove_dir_all(&dir);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
