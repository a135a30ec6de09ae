//! Differential tests of the table types against Postfix 3.7.11's
//! `postmap -q KEY TYPE:NAME`: ours is run through [`driver`], this test
//! binary re-executed (the same open flags, output, messages and exit
//! status as `postmap -q`).
//!
//! Every case is compared with golden output recorded from the real postmap
//! (tests/golden/dict_query.txt) and, when the real Postfix is available
//! (/tmp/pfroot or $ROSTFIX_REFERENCE), with a live run of it. Re-record the
//! golden file with `ROSTFIX_RECORD=1 cargo test --test dict_query`.
//!
//! The socketmap and tcp clients talk to small servers this test starts on
//! 127.0.0.1 (ports picked by the kernel; `@PORT@`/`@TPORT@` in the golden
//! file). Temporary files live in a fresh directory (`@DIR@`).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The driver: `dict_query [-f] [-F] KEY TYPE:NAME` does what Postfix's
/// `postmap -q KEY TYPE:NAME` does (same open flags, output, messages and
/// exit status) with rostfix's table layer. This test binary runs itself
/// in this mode when $ROSTFIX_DICT_QUERY is set.
fn driver() -> ! {
    use rostfix::global::dict::registry::dict_open;
    use rostfix::global::dict::{DictError, OpenMode, flags};
    use rostfix::global::{msg, out};
    use rostfix::util::latin1;

    msg::init("postmap");
    // smtputf8_enable is on by default (compatibility level >= 1).
    msg::set_utf8_enable(true);
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| latin1::from_os(&a))
        .collect();
    let mut dict_flags = flags::DUP_WARN | flags::FOLD_FIX | flags::UTF8_REQUEST | flags::LOCK;
    let mut rest = Vec::new();
    for a in args {
        match a.as_str() {
            "-f" => dict_flags &= !flags::FOLD_FIX,
            "-F" => dict_flags |= flags::SRC_RHS_IS_FILE,
            _ => rest.push(a),
        }
    }
    if rest.len() != 2 {
        msg::fatal("usage: dict_query [-f] [-F] KEY TYPE:NAME");
    }
    let (key, spec) = (&rest[0], &rest[1]);
    let mut dict = match dict_open(spec, OpenMode::ReadOnly, dict_flags) {
        Ok(d) => d,
        Err(e) => msg::fatal(&e.0),
    };
    let (ty, name) = (dict.type_name().to_string(), dict.name().to_string());
    let result = dict.lookup(key);
    // postmap -F: the table holds BASE64 of file contents; show them decoded.
    let result = match result {
        Ok(Some(v)) if dict_flags & flags::SRC_RHS_IS_FILE != 0 => {
            match rostfix::util::stringops::base64_decode(&v) {
                Some(b) => Ok(Some(latin1::decode(&b))),
                None => {
                    let shown: String = v.chars().take(30).collect();
                    msg::warn(&format!(
                        "table {ty}:{name}: key {key}: malformed BASE64 value: {shown}"
                    ));
                    Err(DictError::Config(String::new()))
                }
            }
        }
        r => r,
    };
    let found = match result {
        Ok(Some(v)) => {
            if v.is_empty() {
                msg::warn(&format!(
                    "table {ty}:{name}: key {key}: empty string result is not allowed"
                ));
                msg::warn(&format!(
                    "table {ty}:{name} should return NO RESULT in case of NOT FOUND"
                ));
            }
            out::print(&v);
            out::print("\n");
            true
        }
        Ok(None) => false,
        Err(DictError::Config(_)) => msg::fatal(&format!("table {ty}:{name}: query error")),
        Err(DictError::Fatal(m)) => msg::fatal(&m),
        Err(e @ DictError::Retry(_)) => msg::fatal(&format!(
            "table {ty}:{name}: query error: {}",
            rostfix::global::mkmap::errno_text(&e)
        )),
    };
    out::flush();
    std::process::exit(if found { 0 } else { 1 });
}

const GOLDEN: &str = "tests/golden/dict_query.txt";

fn reference_root() -> Option<PathBuf> {
    let root = std::env::var_os("ROSTFIX_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/pfroot"));
    root.join("usr/sbin/postmap").exists().then_some(root)
}

fn ours() -> PathBuf {
    std::env::current_exe().unwrap()
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    rc: i32,
    out: Vec<u8>,
    err: Vec<u8>,
}

struct Env {
    dir: PathBuf,
    port: u16,
    tport: u16,
}

impl Env {
    fn expand(&self, s: &str) -> String {
        s.replace("@DIR@", self.dir.to_str().unwrap())
            .replace("@PORT@", &self.port.to_string())
            .replace("@TPORT@", &self.tport.to_string())
    }
    fn unexpand(&self, b: &[u8]) -> Vec<u8> {
        let s = String::from_utf8_lossy(b).into_owned();
        if s.as_bytes() != b {
            // Non-UTF-8 output: replace only the directory, bytewise.
            return replace_bytes(b, self.dir.to_str().unwrap().as_bytes(), b"@DIR@");
        }
        s.replace(self.dir.to_str().unwrap(), "@DIR@")
            .replace(&format!(":{}", self.tport), ":@TPORT@")
            .replace(&format!(":{}", self.port), ":@PORT@")
            .into_bytes()
    }
}

fn replace_bytes(h: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < h.len() {
        if h[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(h[i]);
            i += 1;
        }
    }
    out
}

fn run(mut cmd: Command) -> Outcome {
    cmd.env("FOO", "bar").env("foo", "lower");
    let o = cmd.output().expect("run");
    Outcome {
        rc: o.status.code().unwrap_or(-1),
        out: o.stdout,
        err: o.stderr,
    }
}

fn run_ours(env: &Env, args: &[String]) -> Outcome {
    let mut cmd = Command::new(ours());
    cmd.env("ROSTFIX_DICT_QUERY", "1");
    let (flags, rest) = split_flags(args);
    cmd.args(flags).args(rest.iter().map(|a| env.expand(a)));
    run(cmd)
}

fn split_flags(args: &[String]) -> (Vec<String>, Vec<String>) {
    let n = args.iter().take_while(|a| a.starts_with('-')).count();
    (args[..n].to_vec(), args[n..].to_vec())
}

fn run_real(root: &Path, conf: &Path, env: &Env, args: &[String]) -> Outcome {
    let mut cmd = Command::new(root.join("usr/sbin/postmap"));
    cmd.arg0("postmap");
    let lib = format!(
        "{}:{}",
        root.join("usr/lib/postfix").display(),
        root.join("usr/lib/x86_64-linux-gnu").display()
    );
    cmd.env("LD_LIBRARY_PATH", lib).env("NORANDOMIZE", "1");
    let (flags, rest) = split_flags(args);
    cmd.arg("-c").arg(conf).args(flags).arg("-q");
    cmd.args(rest.iter().map(|a| env.expand(a)));
    run(cmd)
}

fn make_conf(dir: &Path) -> PathBuf {
    let conf = dir.join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    let main = conf.join("main.cf");
    std::fs::write(
        &main,
        "compatibility_level = 3.6\nmail_owner = daemon\nsetgid_group = mail\n",
    )
    .unwrap();
    age(&main);
    conf
}

/// Postfix re-reads a file changed within the last second; make it old.
fn age(p: &Path) {
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
}

fn write_fixtures(dir: &Path) {
    let t1 = dir.join("t1");
    std::fs::write(
        &t1,
        b"  leading continuation\nfoo bar\nFoo dup\n# comment\nkey   value with  spaces   \n  continued here\n\"quoted key\" qv\n\"unbalanced x\nnovalue\nalias: x\nback\\ slash v\nutf \xc3\xa9t\xc3\xa9\nbad \xff\nfoo third\n",
    )
    .unwrap();
    age(&t1);
    let t2 = dir.join("t2");
    std::fs::write(&t2, b"a 1\nb 2\n").unwrap();
    age(&t2);
    let f = dir.join("file1");
    std::fs::write(&f, b"hello\n").unwrap();
    age(&f);
}

// ---- tiny servers -------------------------------------------------------

struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn serve(
    stop: Arc<AtomicBool>,
    handle: impl Fn(TcpStream) + Send + Sync + 'static,
) -> (u16, std::thread::JoinHandle<()>) {
    let handle = Arc::new(handle);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    l.set_nonblocking(true).unwrap();
    let t = std::thread::spawn(move || {
        // Bounded: the test ends within minutes; stop when told.
        let deadline = Instant::now() + Duration::from_secs(600);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            match l.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let h = handle.clone();
                    std::thread::spawn(move || h(s));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    (port, t)
}

fn read_netstring(r: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut len = Vec::new();
    r.read_until(b':', &mut len).ok()?;
    if len.pop() != Some(b':') {
        return None;
    }
    let n: usize = std::str::from_utf8(&len).ok()?.parse().ok()?;
    let mut data = vec![0; n + 1];
    r.read_exact(&mut data).ok()?;
    data.pop();
    Some(data)
}

fn netstring(data: &[u8]) -> Vec<u8> {
    let mut v = format!("{}:", data.len()).into_bytes();
    v.extend_from_slice(data);
    v.push(b',');
    v
}

/// A socketmap server: the reply depends on the key.
fn sockmap_handler(closed_once: Arc<AtomicBool>) -> impl Fn(TcpStream) + Send + Sync + 'static {
    move |s: TcpStream| {
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        while let Some(req) = read_netstring(&mut r) {
            let req_s = String::from_utf8_lossy(&req).into_owned();
            let key = req_s.split_once(' ').map(|x| x.1).unwrap_or("");
            let reply: Vec<u8> = match key {
                "ok" => b"OK found it".to_vec(),
                "okbare" => b"OK".to_vec(),
                "okempty" => b"OK ".to_vec(),
                "notfound" => b"NOTFOUND ".to_vec(),
                "temp" => b"TEMP try again later".to_vec(),
                "tempbare" => b"TEMP".to_vec(),
                "timeout" => b"TIMEOUT   too slow".to_vec(),
                "perm" => b"PERM no such map".to_vec(),
                "weird" => b"WHAT ever".to_vec(),
                "ctl" => b"TEMP bad\x01char \xc3\xa9 \xff".to_vec(),
                "nul" => b"OK abc\0def".to_vec(),
                "close" => return,
                "closeonce" => {
                    if !closed_once.swap(true, Ordering::Relaxed) {
                        return;
                    }
                    closed_once.store(false, Ordering::Relaxed);
                    b"OK second try".to_vec()
                }
                "garbage" => {
                    let _ = w.write_all(b"xyz,");
                    return;
                }
                "big" => {
                    let _ = w.write_all(&netstring(&vec![b'x'; 100_001]));
                    return;
                }
                _ => {
                    let mut v = b"OK echo ".to_vec();
                    v.extend_from_slice(&req);
                    v
                }
            };
            if w.write_all(&netstring(&reply)).is_err() {
                return;
            }
        }
    }
}

/// A tcp_table server: `get KEY` lines, replies by key.
fn tcp_handler(s: TcpStream) {
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
        let req = line.trim_end_matches('\n').to_string();
        line.clear();
        let key = req.strip_prefix("get ").unwrap_or("");
        let reply = match key {
            "ok" => "200 found%20it\n".to_string(),
            "nf" => "500 not found\n".to_string(),
            "soft" => "400 try later\n".to_string(),
            "bad" => "600 what\n".to_string(),
            "mal" => "20x y\n".to_string(),
            "short" => "200\n".to_string(),
            "hexbad" => "200 %zz\n".to_string(),
            "ctl" => "299 a%01b\n".to_string(),
            "eof" => return,
            "long" => format!("200 {}\n", "x".repeat(5000)),
            _ => format!("200 {key}\n"),
        };
        if w.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn serve_unix(
    stop: Arc<AtomicBool>,
    path: &Path,
    handle: impl Fn(TcpStream) + Send + Sync + 'static,
) -> std::thread::JoinHandle<()> {
    let handle = Arc::new(handle);
    // Relay each UNIX-domain connection to the TCP handler through a
    // loopback pair, so that one handler serves both transports.
    let l = std::os::unix::net::UnixListener::bind(path).unwrap();
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(600);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            match l.accept() {
                Ok((u, _)) => {
                    u.set_nonblocking(false).unwrap();
                    let pl = TcpListener::bind("127.0.0.1:0").unwrap();
                    let a = TcpStream::connect(pl.local_addr().unwrap()).unwrap();
                    let (b, _) = pl.accept().unwrap();
                    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut u2 = u.try_clone().unwrap();
                    let mut a2 = a.try_clone().unwrap();
                    let mut u_r = u;
                    let mut a_w = a;
                    let t1 = std::thread::spawn(move || {
                        let _ = std::io::copy(&mut u_r, &mut a_w);
                        let _ = a_w.shutdown(std::net::Shutdown::Write);
                    });
                    let t2 = std::thread::spawn(move || {
                        let _ = std::io::copy(&mut a2, &mut u2);
                        let _ = u2.shutdown(std::net::Shutdown::Both);
                    });
                    let h = handle.clone();
                    std::thread::spawn(move || {
                        h(b);
                        let _ = t1.join();
                        let _ = t2.join();
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    })
}

fn start_servers(dir: &Path) -> (Servers, u16, u16) {
    let stop = Arc::new(AtomicBool::new(false));
    let t3 = serve_unix(
        stop.clone(),
        &dir.join("sock"),
        sockmap_handler(Arc::new(AtomicBool::new(false))),
    );
    let (port, t1) = serve(
        stop.clone(),
        sockmap_handler(Arc::new(AtomicBool::new(false))),
    );
    let (tport, t2) = serve(stop.clone(), tcp_handler);
    (
        Servers {
            stop,
            threads: vec![t1, t2, t3],
        },
        port,
        tport,
    )
}

// ---- the cases ----------------------------------------------------------

fn cases() -> Vec<Vec<String>> {
    let raw: &[&[&str]] = &[
        // fail, internal, environ, static
        &["x", "fail:foo"],
        &["x", "fail:"],
        &["x", ":foo"],
        &["x", "nosuch:x"],
        &["x", "internal:foo"],
        &["FOO", "environ:x"],
        &["-f", "FOO", "environ:x"],
        &["nope", "environ:x"],
        &["x", "static:"],
        &["x", "static:{ a b }"],
        &["x", "static:{a}b"],
        &["x", "static:{a"],
        &["x", "static:a b"],
        &["x", "static:{}"],
        &["x", "static:Mixed Case"],
        &["-F", "x", "static:@DIR@/file1"],
        &["-F", "x", "static:@DIR@/nofile"],
        // inline
        &["A", "inline:{a=b}"],
        &["-f", "A", "inline:{a=b}"],
        &["x", "inline:{}"],
        &["x", "inline:{ }"],
        &["x", "inline:{a}"],
        &["", "inline:{=b}"],
        &["a", "inline:{a=}"],
        &["x", "inline:a=b"],
        &["x", "inline:{a=b}x"],
        &["x", "inline:{{a=b}x}"],
        &["x", "inline:{{a=b}"],
        &["c", "inline:{{a = b c }, x=y}"],
        &["a", "inline:{{a = b c }, x=y}"],
        &["\"x y\"", "inline:{{\"x y\"=z}}"],
        &["x", "inline:{\"x=y}"],
        &["a", "inline:{a=1,a=2}"],
        &["x", "inline:{a=\u{e9}}"],
        &["-F", "a", "inline:{a=@DIR@/file1}"],
        &["-F", "a", "inline:{a=@DIR@/nofile}"],
        // texthash
        &["foo", "texthash:@DIR@/t1"],
        &["FOO", "texthash:@DIR@/t1"],
        &["-f", "FOO", "texthash:@DIR@/t1"],
        &["key", "texthash:@DIR@/t1"],
        &["\"quoted key\"", "texthash:@DIR@/t1"],
        &["alias:", "texthash:@DIR@/t1"],
        &["back\\ slash", "texthash:@DIR@/t1"],
        &["utf", "texthash:@DIR@/t1"],
        &["bad", "texthash:@DIR@/t1"],
        &["b", "texthash:@DIR@/t2"],
        &["x", "texthash:@DIR@/nofile"],
        // unix, nis
        &["root", "unix:passwd.byname"],
        &["ROOT", "unix:passwd.byname"],
        &["-f", "ROOT", "unix:passwd.byname"],
        &["nosuchuser", "unix:passwd.byname"],
        &["root", "unix:group.byname"],
        &["x", "unix:foo"],
        &["x", "unix:"],
        &["x", "nis:mail.aliases"],
        // unionmap, pipemap, randmap
        &["x", "unionmap:{static:a, static:{b c}}"],
        &["x", "unionmap:{inline:{x=1}, static:{b c}}"],
        &["y", "unionmap:{inline:{x=1}, inline:{y=2}}"],
        &["z", "unionmap:{inline:{x=1}, inline:{y=2}}"],
        &["X", "unionmap:{inline:{x=1}, texthash:@DIR@/t2}"],
        &["x", "pipemap:{inline:{x=1}, inline:{1=ok}}"],
        &["x", "pipemap:{inline:{x=1}, inline:{2=ok}}"],
        &["x", "unionmap:{}"],
        &["x", "unionmap:{a}"],
        &["x", "unionmap:foo"],
        &["x", "pipemap:{ }"],
        &["x", "unionmap:{fail:x, static:y}"],
        &["x", "unionmap:{static:y, fail:x}"],
        &["x", "pipemap:{static:y, fail:x}"],
        &["x", "pipemap:{nosuch:y, fail:x}"],
        &["x", "pipemap:{inline:{}, fail:x}"],
        &["x", "randmap:{a}"],
        &["x", "randmap:{{b c}}"],
        &["x", "randmap:{}"],
        &["x", "randmap:{,}"],
        &["x", "randmap:a"],
        // socketmap: errors without a server
        &["x", "socketmap:foo"],
        &["x", "socketmap:bar:x:foo"],
        &["x", "socketmap:inet:127.0.0.1:foo"],
        &["x", "socketmap:inet::foo"],
        &["x", "socketmap:unix:/nonexistent/socket:foo"],
        &["x", "socketmap:inet:nosuchhost.invalid:99:foo"],
        &["x", "socketmap:inet:127.0.0.1:nosuchsvc:foo"],
        &["x", "socketmap:inet:[127.0.0.1:9:foo"],
        // socketmap against our server
        &["ok", "socketmap:inet:127.0.0.1:@PORT@:mymap"],
        &["OK", "socketmap:inet:127.0.0.1:@PORT@:mymap"],
        &["okbare", "socketmap:inet:127.0.0.1:@PORT@:mymap"],
        &["okempty", "socketmap:inet:127.0.0.1:@PORT@:mymap"],
        &["notfound", "socketmap:inet:127.0.0.1:@PORT@:mymap"],
        &["temp", "socketmap:inet:127.0.0.1:@PORT@:mymap"],
        &["tempbare", "socketmap:inet:127.0.0.1:@PORT@:mymap"],
        &["timeout", "socketmap:inet:127.0.0.1:@PORT@:mymap"],
        &["perm", "socketmap:inet:127.0.0.1:@PORT@:mymap"],
        &["weird", "socketmap:inet:127.0.0.1:@PORT@:mymap"],
        &["ctl", "socketmap:inet:127.0.0.1:@PORT@:mymap"],
        &["nul", "socketmap:inet:127.0.0.1:@PORT@:mymap"],
        &["close", "socketmap:inet:127.0.0.1:@PORT@:mymap"],
        &["closeonce", "socketmap:inet:127.0.0.1:@PORT@:mymap"],
        &["garbage", "socketmap:inet:127.0.0.1:@PORT@:mymap"],
        &["big", "socketmap:inet:127.0.0.1:@PORT@:mymap"],
        &["Mixed Key", "socketmap:inet:127.0.0.1:@PORT@:mymap"],
        &["ok", "socketmap:unix:@DIR@/sock:mymap"],
        &["temp", "socketmap:unix:@DIR@/sock:mymap"],
        &["close", "socketmap:unix:@DIR@/sock:mymap"],
        &["Key", "socketmap:unix:@DIR@/sock:map2"],
        // tcp against our server
        &["ok", "tcp:127.0.0.1:@TPORT@"],
        &["nf", "tcp:127.0.0.1:@TPORT@"],
        &["soft", "tcp:127.0.0.1:@TPORT@"],
        &["bad", "tcp:127.0.0.1:@TPORT@"],
        &["mal", "tcp:127.0.0.1:@TPORT@"],
        &["short", "tcp:127.0.0.1:@TPORT@"],
        &["hexbad", "tcp:127.0.0.1:@TPORT@"],
        &["ctl", "tcp:127.0.0.1:@TPORT@"],
        &["A b%c\u{e9}", "tcp:127.0.0.1:@TPORT@"],
        &["x", "tcp:[1.2.3.4"],
    ];
    raw.iter()
        .map(|c| c.iter().map(|s| s.to_string()).collect())
        .collect()
}

fn case_name(args: &[String]) -> String {
    args.join(" | ")
}

fn format_outcome(args: &[String], o: &Outcome) -> Vec<u8> {
    let mut v = format!("### {}\nrc {}\n", case_name(args), o.rc).into_bytes();
    for (tag, data) in [("out", &o.out), ("err", &o.err)] {
        for line in data.split_inclusive(|&b| b == b'\n') {
            v.extend_from_slice(tag.as_bytes());
            v.push(b' ');
            v.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                v.extend_from_slice(b"\\no-newline\n");
            }
        }
    }
    v
}

fn parse_golden(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for line in data.split_inclusive(|&b| b == b'\n') {
        if let Some(name) = line.strip_prefix(b"### ") {
            let name = String::from_utf8_lossy(name)
                .trim_end_matches('\n')
                .to_string();
            out.push((name, line.to_vec()));
        } else if let Some(last) = out.last_mut() {
            last.1.extend_from_slice(line);
        }
    }
    out
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Run one case with ours and (when present) the real postmap; the outputs
/// are formatted for comparison, with temporary names replaced.
/// Our formatted outcome and, when Postfix is present, its outcome.
type CaseResult = (Vec<u8>, Option<Vec<u8>>);

fn run_case(env: &Env, root: Option<&Path>, conf: &Path, args: &[String]) -> CaseResult {
    let timing = std::env::var_os("ROSTFIX_TIMING").is_some();
    let name = case_name(args);
    let started = Instant::now();
    let mine = run_ours(env, args);
    if timing {
        eprintln!("{:?} ours {name}", started.elapsed());
    }
    let mine_text = format_outcome(
        args,
        &Outcome {
            rc: mine.rc,
            out: env.unexpand(&mine.out),
            err: env.unexpand(&mine.err),
        },
    );
    let real_text = root.map(|root| {
        let started = Instant::now();
        let real = run_real(root, conf, env, args);
        if timing {
            eprintln!("{:?} real {name}", started.elapsed());
        }
        format_outcome(
            args,
            &Outcome {
                rc: real.rc,
                out: env.unexpand(&real.out),
                err: env.unexpand(&real.err),
            },
        )
    });
    (mine_text, real_text)
}

fn check(fast: bool) {
    let tmp = std::env::temp_dir().join(format!(
        "rostfix-dictq-{}-{}",
        std::process::id(),
        if fast { "f" } else { "s" }
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    write_fixtures(&tmp);
    let (_servers, port, tport) = start_servers(&tmp);
    let env = Env {
        dir: tmp.clone(),
        port,
        tport,
    };
    let root = reference_root();
    if root.is_none() {
        println!(
            "NOTICE: real Postfix not found (/tmp/pfroot, $ROSTFIX_REFERENCE): live comparison skipped, golden file only"
        );
    }
    let conf = make_conf(&tmp);
    let record = std::env::var_os("ROSTFIX_RECORD").is_some() && root.is_some() && fast;
    let golden = parse_golden(&std::fs::read(GOLDEN).unwrap_or_default());
    let mut recorded = Vec::new();
    let mut failures = Vec::new();
    let the_cases = if fast { cases() } else { slow_cases() };
    // Run the cases in parallel (Postfix sleeps a second before each fatal
    // exit); compare in order.
    let results: Vec<CaseResult> = {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let slots: Vec<std::sync::Mutex<Option<CaseResult>>> = the_cases
            .iter()
            .map(|_| std::sync::Mutex::new(None))
            .collect();
        std::thread::scope(|sc| {
            for _ in 0..24 {
                sc.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(args) = the_cases.get(i) else {
                            break;
                        };
                        let r = run_case(&env, root.as_deref(), &conf, args);
                        *slots[i].lock().unwrap() = Some(r);
                    }
                });
            }
        });
        slots
            .into_iter()
            .map(|m| m.into_inner().unwrap().unwrap())
            .collect()
    };
    for (args, (mine_text, real_text)) in the_cases.iter().zip(results) {
        let name = case_name(args);
        if let Some(real_text) = real_text {
            if record {
                recorded.extend_from_slice(&real_text);
            }
            if real_text != mine_text {
                failures.push(format!(
                    "LIVE DIFF {name}\n--- postfix\n{}--- ours\n{}",
                    show(&real_text),
                    show(&mine_text)
                ));
            }
        }
        if fast && !record {
            match golden.iter().find(|(n, _)| *n == name) {
                Some((_, g)) if *g == mine_text => {}
                Some((_, g)) => failures.push(format!(
                    "GOLDEN DIFF {name}\n--- golden\n{}--- ours\n{}",
                    show(g),
                    show(&mine_text)
                )),
                None => failures.push(format!("no golden entry for {name}")),
            }
        }
    }
    if record {
        std::fs::write(GOLDEN, &recorded).unwrap();
        println!("recorded {GOLDEN}");
    }
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Cases where Postfix retries for ~10 s (tcp: 10 attempts, 1 s apart).
fn slow_cases() -> Vec<Vec<String>> {
    let raw: &[&[&str]] = &[
        &["eof", "tcp:127.0.0.1:@TPORT@"],
        &["long", "tcp:127.0.0.1:@TPORT@"],
        &["x", "tcp:127.0.0.1:9"],
        &["x", "tcp:127.0.0.1:garbage1"],
    ];
    raw.iter()
        .map(|c| c.iter().map(|s| s.to_string()).collect())
        .collect()
}

/// A test binary without libtest (harness = false): it is also the driver.
/// `--ignored` (or `--include-ignored`) adds the slow tcp retry cases
/// (Postfix's tcp client retries 10 times a second apart: ~60 s).
fn main() {
    if std::env::var_os("ROSTFIX_DICT_QUERY").is_some() {
        driver();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("postmap_q_matches_postfix: test");
        return;
    }
    let slow = args
        .iter()
        .any(|a| a == "--ignored" || a == "--include-ignored");
    if !slow || args.iter().any(|a| a == "--include-ignored") {
        check(true);
        println!("test postmap_q_matches_postfix ... ok");
    }
    if slow {
        check(false);
        println!("test postmap_q_tcp_retries_match_postfix ... ok");
    }
}
