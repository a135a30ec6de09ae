//! `memcache:` against Postfix 3.7.11: `postmap -q`, `-d`, `-s` on tables
//! whose parameter files point at a tiny memcached-protocol server this
//! test runs on 127.0.0.1 (a kernel-picked port). Every case runs against a
//! fresh server for each side; the requests the server received are part of
//! the compared output, so the protocol bytes must match Postfix's too.
//!
//! Golden file: tests/golden/memcache.txt (re-record with
//! `ROSTFIX_RECORD=1 cargo test --test memcache`). The cases run in
//! parallel: failures take retry_pause (1 s) and Postfix sleeps 1 s before
//! a fatal exit.

mod common;

use common::pm;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const GOLDEN: &str = "tests/golden/memcache.txt";

/// A memcached text-protocol server with a few misbehaving keys.
struct Server {
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

fn initial_store() -> HashMap<Vec<u8>, Vec<u8>> {
    let mut m = HashMap::new();
    for (k, v) in [
        ("foo", "bar"),
        ("k1", "v1"),
        ("user@example.com", "mapped"),
        ("pfx-foo", "prefixed"),
        ("a.b.c.d.d.c.%", "templated"),
        ("nul", "x\0y"),
        ("\u{e4}\u{f6}\u{fc}@example.com", "umlaut"),
    ] {
        m.insert(k.as_bytes().to_vec(), v.as_bytes().to_vec());
    }
    m
}

fn serve(
    stream: TcpStream,
    store: Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>>,
    log: Arc<Mutex<Vec<String>>>,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
            return;
        }
        log.lock()
            .unwrap()
            .push(String::from_utf8_lossy(&line).escape_debug().to_string());
        let text = line.strip_suffix(b"\r\n").unwrap_or(&line).to_vec();
        let parts: Vec<&[u8]> = text.split(|&b| b == b' ').collect();
        let key = parts.get(1).copied().unwrap_or(b"").to_vec();
        let reply: Vec<u8> = match parts[0] {
            b"get" => match &key[..] {
                b"drop" => return,
                b"garbage" => b"HUH what is this reply that goes on and on\r\n".to_vec(),
                b"big" => b"VALUE big 0 99999\r\n".to_vec(),
                b"neg" => b"VALUE neg 0 -1\r\n".to_vec(),
                b"slow" => {
                    std::thread::sleep(Duration::from_millis(2500));
                    b"END\r\n".to_vec()
                }
                b"noend" => b"VALUE noend 0 3\r\nabc\r\nXX\r\n".to_vec(),
                b"short" => {
                    let _ = w.write_all(b"VALUE short 0 10\r\nabc");
                    return;
                }
                b"longline" => [vec![b'X'; 3000], b"\r\n".to_vec()].concat(),
                b"empty" => b"VALUE empty 0 0\r\n\r\nEND\r\n".to_vec(),
                b"barelf" => b"VALUE barelf 0 2\nok\r\nEND\n".to_vec(),
                b"edge9" => b"VALUE e 0 2\r\nok\r\nEND\r\n".to_vec(),
                _ => match store.lock().unwrap().get(&key) {
                    Some(v) => [
                        format!("VALUE {} 0 {}\r\n", String::from_utf8_lossy(&key), v.len())
                            .into_bytes(),
                        v.clone(),
                        b"\r\nEND\r\n".to_vec(),
                    ]
                    .concat(),
                    None => b"END\r\n".to_vec(),
                },
            },
            b"set" => {
                let n: usize = parts
                    .get(4)
                    .and_then(|s| std::str::from_utf8(s).ok())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let mut data = vec![0u8; n + 2];
                if r.read_exact(&mut data).is_err() {
                    return;
                }
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&data).escape_debug().to_string());
                if key == b"nostore" {
                    b"NOT_STORED\r\n".to_vec()
                } else {
                    data.truncate(n);
                    store.lock().unwrap().insert(key, data);
                    b"STORED\r\n".to_vec()
                }
            }
            b"delete" => {
                if key == b"weird" {
                    b"SERVER_ERROR oops\r\n".to_vec()
                } else if store.lock().unwrap().remove(&key).is_some() {
                    b"DELETED\r\n".to_vec()
                } else {
                    b"NOT_FOUND\r\n".to_vec()
                }
            }
            _ => b"ERROR\r\n".to_vec(),
        };
        if w.write_all(&reply).is_err() {
            return;
        }
    }
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let store = Arc::new(Mutex::new(initial_store()));
        let (l2, s2) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s2.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (st, lg) = (store.clone(), l2.clone());
                std::thread::spawn(move || serve(conn, st, lg));
            }
        });
        Server { port, log, stop }
    }

    fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A port nobody listens on (bound, then released).
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    /// The parameter file; `@PORT@` is the server's port, `@CLOSED@` a
    /// port nobody listens on, `@DIR@` the case directory.
    params: &'static str,
    args: &'static [&'static str],
}

const MC: &str = "memcache = inet:127.0.0.1:@PORT@\n";

fn cases() -> Vec<Case> {
    let c = |name, params, args| Case { name, params, args };
    vec![
        c("hit", MC, &["-q", "foo", "memcache:@DIR@/mc.cf"]),
        c("hit-folded", MC, &["-q", "FOO", "memcache:@DIR@/mc.cf"]),
        c(
            "hit-no-fold",
            MC,
            &["-f", "-q", "FOO", "memcache:@DIR@/mc.cf"],
        ),
        c("miss", MC, &["-q", "nokey", "memcache:@DIR@/mc.cf"]),
        c(
            "address",
            MC,
            &["-q", "User@Example.COM", "memcache:@DIR@/mc.cf"],
        ),
        c(
            "utf8-folded",
            MC,
            &["-q", "ÄÖÜ@Example.COM", "memcache:@DIR@/mc.cf"],
        ),
        c("nul-in-value", MC, &["-q", "nul", "memcache:@DIR@/mc.cf"]),
        c("space-skipped", MC, &["-q", "a b", "memcache:@DIR@/mc.cf"]),
        c("empty-key", MC, &["-q", "", "memcache:@DIR@/mc.cf"]),
        c("empty-value", MC, &["-q", "empty", "memcache:@DIR@/mc.cf"]),
        c("bare-lf", MC, &["-q", "barelf", "memcache:@DIR@/mc.cf"]),
        c(
            "no-end-after-value",
            MC,
            &["-q", "noend", "memcache:@DIR@/mc.cf"],
        ),
        c("stdin-keys", MC, &["-q", "-", "memcache:@DIR@/mc.cf"]),
        c(
            "key-format",
            "memcache = inet:127.0.0.1:@PORT@\nkey_format = pfx-%s\n",
            &["-q", "foo", "memcache:@DIR@/mc.cf"],
        ),
        c(
            "key-format-parts",
            "memcache = inet:127.0.0.1:@PORT@\nkey_format = %u.%d.%1.%2.%%\n",
            &["-q", "a@b.c.d", "memcache:@DIR@/mc.cf"],
        ),
        c(
            "key-format-too-few-labels",
            "memcache = inet:127.0.0.1:@PORT@\nkey_format = %u.%d.%1.%2.%%\n",
            &["-q", "a@b", "memcache:@DIR@/mc.cf"],
        ),
        c(
            "domain-match",
            "memcache = inet:127.0.0.1:@PORT@\ndomain = example.com\n",
            &["-q", "user@EXAMPLE.com", "memcache:@DIR@/mc.cf"],
        ),
        c(
            "domain-mismatch",
            "memcache = inet:127.0.0.1:@PORT@\ndomain = example.com\n",
            &["-q", "foo", "memcache:@DIR@/mc.cf"],
        ),
        c(
            "backup-hit-is-cached",
            "memcache = inet:127.0.0.1:@PORT@\nbackup = inline:{bk1=backupval}\nttl = 77\nflags = 5\n",
            &["-q", "bk1", "memcache:@DIR@/mc.cf"],
        ),
        c(
            "backup-value-too-long",
            "memcache = inet:127.0.0.1:@PORT@\nbackup = inline:{bk1=backupval}\ndata_size_limit = 5\n",
            &["-q", "bk1", "memcache:@DIR@/mc.cf"],
        ),
        c(
            "backup-after-failure",
            "memcache = inet:127.0.0.1:@CLOSED@\nbackup = inline:{bk1=backupval}\n",
            &["-q", "bk1", "memcache:@DIR@/mc.cf"],
        ),
        c(
            "line-limit-edge",
            "memcache = inet:127.0.0.1:@PORT@\nline_size_limit = 12\n",
            &["-q", "edge9", "memcache:@DIR@/mc.cf"],
        ),
        c(
            "refused",
            "memcache = inet:127.0.0.1:@CLOSED@\n",
            &["-q", "foo", "memcache:@DIR@/mc.cf"],
        ),
        c(
            "unix-missing",
            "memcache = unix:@DIR@/nosocket\n",
            &["-q", "foo", "memcache:@DIR@/mc.cf"],
        ),
        c("dropped", MC, &["-q", "drop", "memcache:@DIR@/mc.cf"]),
        c("garbage", MC, &["-q", "garbage", "memcache:@DIR@/mc.cf"]),
        c("too-big", MC, &["-q", "big", "memcache:@DIR@/mc.cf"]),
        c(
            "negative-length",
            MC,
            &["-q", "neg", "memcache:@DIR@/mc.cf"],
        ),
        c("short-value", MC, &["-q", "short", "memcache:@DIR@/mc.cf"]),
        c(
            "line-too-long",
            MC,
            &["-q", "longline", "memcache:@DIR@/mc.cf"],
        ),
        c(
            "garbage-three-tries",
            "memcache = inet:127.0.0.1:@PORT@\nmax_try = 3\n",
            &["-q", "garbage", "memcache:@DIR@/mc.cf"],
        ),
        c(
            "garbage-one-try",
            "memcache = inet:127.0.0.1:@PORT@\nmax_try = 1\n",
            &["-q", "garbage", "memcache:@DIR@/mc.cf"],
        ),
        c(
            "timeout",
            "memcache = inet:127.0.0.1:@PORT@\ntimeout = 1\n",
            &["-q", "slow", "memcache:@DIR@/mc.cf"],
        ),
        c("delete", MC, &["-d", "k1", "memcache:@DIR@/mc.cf"]),
        c("delete-folded", MC, &["-d", "FOO", "memcache:@DIR@/mc.cf"]),
        c("delete-miss", MC, &["-d", "nokey", "memcache:@DIR@/mc.cf"]),
        c("delete-error", MC, &["-d", "weird", "memcache:@DIR@/mc.cf"]),
        c(
            "sequence-without-backup",
            MC,
            &["-s", "memcache:@DIR@/mc.cf"],
        ),
        c(
            "sequence-backup",
            "memcache = inet:127.0.0.1:@PORT@\nbackup = inline:{b=1}\n",
            &["-s", "memcache:@DIR@/mc.cf"],
        ),
        c("build-refused", MC, &["memcache:@DIR@/mc.cf"]),
        c(
            "no-parameter-file",
            MC,
            &["-q", "foo", "memcache:@DIR@/nofile.cf"],
        ),
        c(
            "bad-number",
            "ttl = 1x\n",
            &["-q", "foo", "memcache:@DIR@/mc.cf"],
        ),
        c(
            "below-minimum",
            "max_try = 0\n",
            &["-q", "foo", "memcache:@DIR@/mc.cf"],
        ),
        c(
            "bad-template",
            "key_format = %x\n",
            &["-q", "foo", "memcache:@DIR@/mc.cf"],
        ),
        c("bad-line", "junk\n", &["-q", "foo", "memcache:@DIR@/mc.cf"]),
        c(
            "bad-transport",
            "memcache = foo:bar\n",
            &["-q", "foo", "memcache:@DIR@/mc.cf"],
        ),
        c(
            "no-endpoint",
            "memcache = inet\n",
            &["-q", "foo", "memcache:@DIR@/mc.cf"],
        ),
        c("main-cf-prefix", "", &["-q", "foo", "memcache:mcp"]),
        c("main-cf-prefix-bad", "", &["-q", "foo", "memcache:mcq"]),
    ]
}

fn run_case(case: &Case, dir: &Path, pf: bool) -> String {
    let server = Server::start();
    let closed = closed_port();
    let expand = |s: &str| {
        s.replace("@PORT@", &server.port.to_string())
            .replace("@CLOSED@", &closed.to_string())
            .replace("@DIR@", dir.to_str().unwrap())
    };
    let conf = dir.join("conf");
    pm::make_conf(
        &conf,
        &expand(
            "mcp_memcache = inet:127.0.0.1:$mcport\nmcport = @PORT@\nmcp_key_format = pfx-%s\nmcq_ttl = abc\n",
        ),
    );
    pm::put(&dir.join("mc.cf"), expand(case.params).as_bytes());
    let args: Vec<String> = case.args.iter().map(|a| expand(a)).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stdin: &[u8] = if case.name == "stdin-keys" {
        b"foo\nnokey\nk1\n"
    } else {
        b""
    };
    let r = pm::run(pf, "postmap", &conf, dir, &args, stdin);
    // Port numbers differ between runs.
    let mut text = r
        .text(dir)
        .replace(&format!(":{}", server.port), ":@PORT@")
        .replace(&format!(":{closed}"), ":@CLOSED@");
    for req in server.requests() {
        text.push_str(&format!("request {req}\n"));
    }
    text
}

#[test]
fn memcache_like_postfix() {
    let base = pm::scratch("memcache");
    let reference = pm::reference().is_some();
    let cases = cases();
    let results: Vec<(String, String, Option<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .enumerate()
            .map(|(i, case)| {
                let base = base.clone();
                s.spawn(move || {
                    let ours_dir: PathBuf = base.join(format!("our{i}"));
                    let pf_dir: PathBuf = base.join(format!("pf{i}"));
                    std::fs::create_dir_all(&ours_dir).unwrap();
                    std::fs::create_dir_all(&pf_dir).unwrap();
                    // Both sides at once: each has its own server.
                    let pf = std::thread::spawn({
                        let pf_dir = pf_dir.clone();
                        let case = Case { ..*case };
                        move || reference.then(|| run_case(&case, &pf_dir, true))
                    });
                    let ours = run_case(case, &ours_dir, false);
                    (case.name.to_string(), ours, pf.join().unwrap())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    pm::check_golden(GOLDEN, &results);
    let _ = std::fs::remove_dir_all(&base);
}
