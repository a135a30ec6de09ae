//! proxymap(8): our proxymap/proxywrite service and our `proxy:` client,
//! each against itself and against Postfix 3.7.11's counterpart. A scratch
//! instance of either side runs master with
//! `proxymap unix - - n - - proxymap` and `proxywrite unix - - n - 1 proxymap`;
//! clients are `postmap -q` / `postmap -s` of either side (Postfix's
//! postmap, like every Postfix program, always goes through the service)
//! and a raw protocol client that sends the same requests to both servers
//! and compares the replies.

mod common;
use common::instance::{Instance, Side, is_root};
use common::queue::reference;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

const MASTER: &str = "postlog unix-dgram n - n - 1 postlogd\n\
                      proxymap unix - - n - - proxymap\n\
                      proxywrite unix - - n - 1 proxymap\n";

fn instance(side: Side, tag: &str) -> Instance {
    let dir = std::env::temp_dir().join(format!(
        "rostfix-proxymap-{}-{tag}-{side:?}",
        std::process::id()
    ));
    let d = dir.display().to_string();
    let extra = format!(
        "virtual_alias_maps = proxy:hash:{d}/conf/valias\n\
         relocated_maps = proxy:hash:{d}/conf/missing\n\
         proxy_write_maps = proxy:btree:{d}/data/wmap\n"
    );
    let mut inst = Instance::with_master(
        side,
        &dir,
        &extra,
        Some(MASTER),
        &[
            (
                "valias",
                "alice alice@example.org\nbob bob@example.net\ncarol carol@x\n",
            ),
            ("other", "alice secret\n"),
        ],
    );
    for t in ["valias", "other"] {
        let (st, _, err) = inst.run("postmap", &[&format!("hash:{d}/conf/{t}")], b"");
        assert_eq!(st, 0, "{side:?} postmap {t}: {err}");
    }
    inst.start();
    let q = inst.queue();
    common::instance::wait_for("proxymap sockets", Duration::from_secs(10), || {
        q.join("private/proxymap").exists() && q.join("private/proxywrite").exists()
    });
    inst
}

/// The sides that can run a whole instance here: ours always, Postfix's
/// with root and the reference binaries.
fn sides() -> Vec<Side> {
    let mut v = vec![Side::Ours];
    if is_root() && reference().is_some() {
        v.push(Side::Postfix);
    } else {
        eprintln!("proxymap: Postfix 3.7.11 side skipped (needs root and the reference)");
    }
    v
}

/// A client of `side` whose main.cf is `server`'s (same queue directory).
fn client(side: Side, server: &Instance) -> Instance {
    Instance::attach(side, &server.dir)
}

fn postmap(side: Side, server: &Instance, args: &[&str]) -> (i32, String, String) {
    let c = client(side, server);
    let mut cmd = c.command("postmap");
    cmd.args(args);
    let o = cmd.output().unwrap();
    std::mem::forget(c); // attach: not ours to stop or remove
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn postmap_through_the_service_both_ways() {
    let sides = sides();
    for &srv in &sides {
        let inst = instance(srv, "q");
        let d = inst.dir.display().to_string();
        let valias = format!("proxy:hash:{d}/conf/valias");
        let other = format!("proxy:hash:{d}/conf/other");
        for &cli in &sides {
            let who = format!("{cli:?} client, {srv:?} server");
            let (st, out, err) = postmap(cli, &inst, &["-q", "bob", &valias]);
            assert_eq!(
                (st, out.as_str(), err.as_str()),
                (0, "bob@example.net\n", ""),
                "{who}"
            );
            let (st, out, _) = postmap(cli, &inst, &["-q", "nobody", &valias]);
            assert_eq!((st, out.as_str()), (1, ""), "{who}");
            // postmap refuses to walk a proxied table (the sequence request
            // is tested on the wire below).
            let (st, _, err) = postmap(cli, &inst, &["-s", &valias]);
            assert_eq!(
                (st, err.as_str()),
                (
                    1,
                    "postmap: fatal: can't sequence maps via the proxy service\n"
                ),
                "{who}"
            );
            // Not in proxy_read_maps: the server refuses, the client dies.
            let (st, out, err) = postmap(cli, &inst, &["-q", "alice", &other]);
            assert_eq!(st, 1, "{who}: {out} {err}");
            assert_eq!(
                err,
                format!(
                    "postmap: fatal: proxymap service is not configured for table \"hash:{d}/conf/other\"\n"
                ),
                "{who}"
            );
        }
        // A changed table makes the read-only server restart, and the
        // client, retrying, gets the new contents.
        std::fs::write(inst.dir.join("conf/valias"), "bob bob@changed\n").unwrap();
        let (st, _, err) = inst.run("postmap", &[&format!("hash:{d}/conf/valias")], b"");
        assert_eq!(st, 0, "{err}");
        let later = std::time::SystemTime::now() + Duration::from_secs(30);
        std::fs::File::options()
            .write(true)
            .open(inst.dir.join("conf/valias.db"))
            .unwrap()
            .set_modified(later)
            .unwrap();
        let (st, out, _) = postmap(Side::Ours, &inst, &["-q", "bob", &valias]);
        assert_eq!((st, out.as_str()), (0, "bob@changed\n"), "{srv:?}");
        let log = inst.log();
        assert!(
            log.contains("postfix/proxymap[")
                && log.contains(&format!(
                    ": table hash:{d}/conf/valias: has changed -- restarting"
                )),
            "{srv:?}: {log}"
        );
        let tag = format!("hash:{d}/conf/other");
        assert!(
            log.contains("postfix/proxymap[")
                && log.contains(&format!("warning: request for unapproved table: \"{tag}\"")),
            "{srv:?}: {log}"
        );
        assert!(
            log.contains(&format!(
                "warning: to approve this table for read-only access, list proxy:{tag} in main.cf:proxy_read_maps"
            )),
            "{srv:?}: {log}"
        );
    }
}

/// A raw protocol client: each request is one attribute group.
struct Raw {
    r: BufReader<UnixStream>,
}

fn scan(r: &mut BufReader<UnixStream>) -> Vec<(String, String)> {
    let mut v = Vec::new();
    loop {
        let mut n = Vec::new();
        r.read_until(0, &mut n).unwrap();
        assert_eq!(n.pop(), Some(0), "premature end of reply");
        if n.is_empty() {
            return v;
        }
        let mut x = Vec::new();
        r.read_until(0, &mut x).unwrap();
        assert_eq!(x.pop(), Some(0));
        v.push((
            String::from_utf8_lossy(&n).into_owned(),
            String::from_utf8_lossy(&x).into_owned(),
        ));
    }
}

impl Raw {
    fn connect(q: &Path, service: &str) -> Raw {
        let s = UnixStream::connect(q.join("private").join(service)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut r = BufReader::new(s);
        let hello = scan(&mut r);
        assert_eq!(
            hello,
            [("protocol".to_string(), "proxymap_protocol".to_string())]
        );
        Raw { r }
    }
    fn ask(&mut self, req: &[(&str, &str)]) -> String {
        let mut b = Vec::new();
        for (n, v) in req {
            b.extend_from_slice(n.as_bytes());
            b.push(0);
            b.extend_from_slice(v.as_bytes());
            b.push(0);
        }
        b.push(0);
        self.r.get_mut().write_all(&b).unwrap();
        scan(&mut self.r)
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The same requests to each side's proxymap and proxywrite; the replies
/// with the server's paths replaced by DIR.
fn raw_session(inst: &Instance) -> Vec<String> {
    let d = inst.dir.display().to_string();
    let valias = format!("hash:{d}/conf/valias");
    let other = format!("hash:{d}/conf/other");
    let missing = format!("hash:{d}/conf/missing");
    let wmap = format!("btree:{d}/data/wmap");
    let mut out = Vec::new();
    let mut m = Raw::connect(&inst.queue(), "proxymap");
    let mut push =
        |what: &str, reply: String| out.push(format!("{what}: {}", reply.replace(&d, "DIR")));
    // The open reply carries the table's flags: only the implementation
    // bits (fixed, pattern, multi-writer) matter to a client.
    let open = m.ask(&[("request", "open"), ("table", &valias), ("flags", "0")]);
    let f: u32 = open.rsplit('=').next().unwrap().parse::<i64>().unwrap() as u32;
    push(
        "open",
        format!(
            "{} impl={:#x}",
            open.split(' ').next().unwrap(),
            f & 0x40030
        ),
    );
    for (what, req) in [
        (
            "lookup",
            vec![
                ("request", "lookup"),
                ("table", valias.as_str()),
                ("flags", "16384"),
                ("key", "alice"),
            ],
        ),
        (
            "lookup folded",
            vec![
                ("request", "lookup"),
                ("table", valias.as_str()),
                ("flags", "16384"),
                ("key", "ALICE"),
            ],
        ),
        (
            "lookup proxy:proxy:",
            vec![
                ("request", "lookup"),
                ("table", &format!("proxy:proxy:{valias}")),
                ("flags", "0"),
                ("key", "bob"),
            ],
        ),
        (
            "lookup missing",
            vec![
                ("request", "lookup"),
                ("table", valias.as_str()),
                ("flags", "0"),
                ("key", "zed"),
            ],
        ),
        (
            "lookup unapproved",
            vec![
                ("request", "lookup"),
                ("table", other.as_str()),
                ("flags", "0"),
                ("key", "alice"),
            ],
        ),
        (
            "lookup table missing",
            vec![
                ("request", "lookup"),
                ("table", missing.as_str()),
                ("flags", "0"),
                ("key", "alice"),
            ],
        ),
        (
            "lookup no colon",
            vec![
                ("request", "lookup"),
                ("table", "nocolon"),
                ("flags", "0"),
                ("key", "alice"),
            ],
        ),
        (
            "lookup no key",
            vec![
                ("request", "lookup"),
                ("table", valias.as_str()),
                ("flags", "0"),
            ],
        ),
        (
            "update on proxymap",
            vec![
                ("request", "update"),
                ("table", valias.as_str()),
                ("flags", "0"),
                ("key", "k"),
                ("value", "v"),
            ],
        ),
        (
            "delete on proxymap",
            vec![
                ("request", "delete"),
                ("table", valias.as_str()),
                ("flags", "0"),
                ("key", "k"),
            ],
        ),
        (
            "sequence bad function",
            vec![
                ("request", "sequence"),
                ("table", valias.as_str()),
                ("flags", "0"),
                ("function", "7"),
            ],
        ),
        ("unknown request", vec![("request", "frob")]),
    ] {
        let r = m.ask(&req);
        push(what, r);
    }
    // Two requests in one write: ours answers both. (Postfix's
    // multi_server only looks at the socket, so the second request waits
    // in its buffer until the client sends more; its clients never
    // pipeline. See compat/DIVERGENCES.md.)
    if inst.side == Side::Ours {
        let mut two = Vec::new();
        for key in ["alice", "carol"] {
            for (n, v) in [
                ("request", "lookup"),
                ("table", valias.as_str()),
                ("flags", "0"),
                ("key", key),
            ] {
                two.extend_from_slice(n.as_bytes());
                two.push(0);
                two.extend_from_slice(v.as_bytes());
                two.push(0);
            }
            two.push(0);
        }
        m.r.get_mut().write_all(&two).unwrap();
        let a = scan(&mut m.r);
        let b = scan(&mut m.r);
        assert_eq!(a[1].1, "alice@example.org");
        assert_eq!(b[1].1, "carol@x");
    }
    let mut seen = Vec::new();
    let mut func = "0";
    for _ in 0..10 {
        let r = m.ask(&[
            ("request", "sequence"),
            ("table", &valias),
            ("flags", "0"),
            ("function", func),
        ]);
        func = "1";
        let end = r.starts_with("status=1");
        seen.push(r);
        if end {
            break;
        }
    }
    seen.sort();
    push("sequence", seen.join(" | "));
    let mut w = Raw::connect(&inst.queue(), "proxywrite");
    for (what, req) in [
        (
            "w open",
            vec![
                ("request", "open"),
                ("table", wmap.as_str()),
                ("flags", "0"),
            ],
        ),
        (
            "w update",
            vec![
                ("request", "update"),
                ("table", wmap.as_str()),
                ("flags", "0"),
                ("key", "k1"),
                ("value", "v1"),
            ],
        ),
        (
            "w update again",
            vec![
                ("request", "update"),
                ("table", wmap.as_str()),
                ("flags", "0"),
                ("key", "k1"),
                ("value", "v2"),
            ],
        ),
        (
            "w lookup",
            vec![
                ("request", "lookup"),
                ("table", wmap.as_str()),
                ("flags", "0"),
                ("key", "k1"),
            ],
        ),
        (
            "w delete",
            vec![
                ("request", "delete"),
                ("table", wmap.as_str()),
                ("flags", "0"),
                ("key", "k1"),
            ],
        ),
        (
            "w delete again",
            vec![
                ("request", "delete"),
                ("table", wmap.as_str()),
                ("flags", "0"),
                ("key", "k1"),
            ],
        ),
        (
            "w update unapproved",
            vec![
                ("request", "update"),
                ("table", valias.as_str()),
                ("flags", "0"),
                ("key", "k"),
                ("value", "v"),
            ],
        ),
    ] {
        let mut r = w.ask(&req);
        if what == "w open" {
            r = r.split(' ').next().unwrap().to_string();
        }
        push(what, r);
    }
    out
}

#[test]
fn protocol_replies_match_postfix() {
    let ours = raw_session(&instance(Side::Ours, "raw"));
    let expect = [
        "open: status=0 impl=0x10",
        "lookup: status=0 value=alice@example.org",
        "lookup folded: status=0 value=alice@example.org",
        "lookup proxy:proxy:: status=0 value=bob@example.net",
        "lookup missing: status=1 value=",
        "lookup unapproved: status=4 value=",
        "lookup table missing: status=2 value=",
        "lookup no colon: status=3 value=",
        "lookup no key: status=3 value=",
        "update on proxymap: status=4",
        "delete on proxymap: status=4",
        "sequence bad function: status=3 key= value=",
        "unknown request: status=3",
    ];
    assert_eq!(&ours[..expect.len()], &expect[..], "{ours:#?}");
    if is_root() && reference().is_some() {
        let theirs = raw_session(&instance(Side::Postfix, "raw"));
        assert_eq!(ours, theirs);
    } else {
        eprintln!("proxymap: Postfix 3.7.11 comparison skipped (needs root and the reference)");
    }
}

/// With no proxymap running, a `proxy:` client retries the connection
/// (every 10 s, fatal at the 11th try) after a warning: compare the first
/// second of stderr of both sides' `postmap -q`.
#[test]
fn no_service_retries_like_postfix() {
    let dir = std::env::temp_dir().join(format!("rostfix-proxymap-{}-down", std::process::id()));
    let d = dir.display().to_string();
    let inst = Instance::with_master(Side::Ours, &dir, "", Some(MASTER), &[("t", "a b\n")]);
    let table = format!("proxy:texthash:{d}/conf/t");
    let mut sides = vec![Side::Ours];
    if reference().is_some() {
        sides.push(Side::Postfix);
    }
    let mut seen = Vec::new();
    for side in sides {
        let c = Instance::attach(side, &inst.dir);
        let mut cmd = c.command("postmap");
        std::mem::forget(c);
        cmd.args(["-q", "a", &table]);
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        let still_running = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(still_running, "{side:?}: {err}");
        seen.push(err.replace(&d, "DIR"));
    }
    assert_eq!(
        seen[0],
        "postmap: warning: connect #1 to subsystem DIR/q/private/proxymap: No such file or directory\n"
    );
    if seen.len() > 1 {
        assert_eq!(seen[0], seen[1]);
    }
}
