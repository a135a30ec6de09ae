use super::*;
use crate::global::deliver_request::Recipient;
use std::path::{Path, PathBuf};

struct FakeIds;

impl Ids for FakeIds {
    fn user(&self, name: &str) -> Option<(u32, u32)> {
        match name {
            "nobody" => Some((65534, 65534)),
            "postfix" => Some((994, 994)),
            "root" => Some((0, 0)),
            _ => None,
        }
    }
    fn group(&self, name: &str) -> Option<u32> {
        match name {
            "nogroup" => Some(65534),
            "postdrop" => Some(995),
            "wheel" => Some(0),
            _ => None,
        }
    }
}

fn forbid() -> Forbidden {
    Forbidden {
        owner_uid: 994,
        owner_gid: 994,
        sgid_gid: 995,
    }
}

fn v(s: &str) -> Vec<String> {
    s.split(' ').map(str::to_string).collect()
}

fn attr(s: &str) -> Result<PipeAttr, String> {
    parse_attr(&v(s), &FakeIds, forbid(), "postfix", "postdrop")
}

#[test]
fn attributes() {
    let a = attr("flags=DRXhuq.>BFO user=nobody:nogroup size=100 eol=\\r\\n null_sender= directory=/tmp argv=/bin/x ${recipient} a").unwrap();
    assert_eq!(a.command, v("/bin/x ${recipient} a"));
    assert_eq!((a.uid, a.gid, a.size_limit), (65534, 65534, 100));
    assert_eq!(a.eol, "\r\n");
    assert_eq!(a.null_sender, "");
    assert_eq!(a.exec_dir.as_deref(), Some("/tmp"));
    assert_eq!(a.flags.count_ones(), 11);
    // Attribute names are case-insensitive; argv= takes the rest verbatim.
    let a = attr("USER=nobody ARGV=/bin/x user=root").unwrap();
    assert_eq!(a.command, v("/bin/x user=root"));
    assert_eq!(a.null_sender, "MAILER-DAEMON");
    for (line, err) in [
        ("flags=Z user=nobody argv=x", "unknown flag: Z (ignored)"),
        ("user=nobody", "missing argv= command-line attribute"),
        ("argv=x", "missing user= command-line attribute"),
        (
            "user=bogus argv=x",
            "get_service_attr: unknown username: bogus",
        ),
        (
            "user=nobody:bogus argv=x",
            "get_service_attr: unknown group: bogus",
        ),
        (
            "user=root argv=x",
            "user= command-line attribute specifies root privileges",
        ),
        (
            "user=postfix argv=x",
            "user= command-line attribute specifies mail system owner postfix",
        ),
        (
            "user=nobody:wheel argv=x",
            "user= command-line attribute specifies privileged group id 0",
        ),
        (
            "user=nobody:postdrop argv=x",
            "user= command-line attribute specifies mail system postdrop group id 995",
        ),
        (
            "user=nobody size=1k argv=x",
            "get_service_attr: bad size= value: 1k",
        ),
        (
            "bogus=1 user=nobody argv=x",
            "unknown attribute name: bogus=1",
        ),
    ] {
        assert_eq!(attr(line).unwrap_err(), err, "{line}");
    }
    // "user=nobody:" means the user's own group.
    assert_eq!(attr("user=nobody: argv=x").unwrap().gid, 65534);
}

fn req(rcpts: &[(&str, &str)]) -> DeliveryRequest {
    DeliveryRequest {
        queue_id: "ABC".into(),
        nexthop: "Example.COM".into(),
        sender: "S@x".into(),
        data_size: 42,
        rcpt: rcpts
            .iter()
            .map(|(a, o)| Recipient {
                address: a.to_string(),
                orig_addr: o.to_string(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn expand(cmd: &str, r: &DeliveryRequest, flags: u32) -> Option<Vec<String>> {
    let mut vars = HashMap::new();
    vars.insert("nexthop", r.nexthop.clone());
    vars.insert("sender", r.sender.clone());
    let split = SplitParams {
        delimiters: "+".into(),
        ..Default::default()
    };
    expand_argv("svc", "/etc/postfix", &v(cmd), r, &mut vars, flags, &split)
}

#[test]
fn argv_expansion() {
    let r = req(&[("Joe+Ext@Example.COM", "o@x"), ("+bb@y", ""), ("@z", "")]);
    assert_eq!(
        expand("/p $$x ${nexthop} $(sender)", &r, 0).unwrap(),
        v("/p $x Example.COM S@x")
    );
    // One argument per recipient; ${user} skips an empty user.
    assert_eq!(
        expand("/p -d ${recipient}", &r, 0).unwrap(),
        v("/p -d Joe+Ext@Example.COM +bb@y @z")
    );
    assert_eq!(
        expand("/p u=${user}", &r, flag::FOLD_ALL).unwrap(),
        v("/p u=joe u=+bb")
    );
    assert_eq!(
        expand(
            "/p e=${extension},m=${mailbox},d=$domain",
            &r,
            flag::FOLD_USER
        )
        .unwrap(),
        v("/p e=ext,m=joe+ext,d=Example.COM e=,m=+bb,d=y e=,m=,d=z")
    );
    assert_eq!(
        expand("/p ${recipient}", &r, flag::FOLD_HOST).unwrap()[1],
        "Joe+Ext@example.com"
    );
    let q = req(&[("a b@x", "")]);
    assert_eq!(
        expand("/p ${recipient} ${user}", &q, flag::QUOTE_LOCAL).unwrap(),
        ["/p", "\"a b\"@x", "a b"]
    );
    // Unknown and malformed macros are configuration errors.
    assert_eq!(expand("/p ${bogus}", &r, 0), None);
    assert_eq!(expand("/p ${recipient?x}", &r, 0), None);
    assert_eq!(expand("/p ${recipient", &r, 0), None);
    assert_eq!(expand("/p $", &r, 0), None);
}

/// The pipe lines of the recorded master.cf, joined.
fn services(master: &str) -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    let mut cur: Option<(String, Vec<String>)> = None;
    for line in master.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, a)) = cur.as_mut() {
                // master.cf's `{ ... }` argument grouping (no spaces in
                // the recorded file's groups).
                a.extend(line.split_whitespace().map(|w| {
                    match w.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
                        Some(inner) => inner.trim().to_string(),
                        None => w.to_string(),
                    }
                }));
            }
        } else if !line.is_empty() && !line.starts_with("--") {
            if let Some((n, a)) = cur.take() {
                out.insert(n, a);
            }
            let name = line.split_whitespace().next().unwrap_or("").to_string();
            cur = Some((name, Vec::new()));
        }
    }
    if let Some((n, a)) = cur.take() {
        out.insert(n, a);
    }
    out
}

fn normalize_log(l: &str, dir: &str) -> String {
    let l = l.replace(dir, "/var/tmp/t6-pipe");
    let mut out = String::new();
    let mut rest = l.as_str();
    if let Some(i) = rest.find(", delay=") {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(j) = rest.find(", dsn=") {
            out.push_str(", DELAYS");
            rest = &rest[j..];
        }
    }
    out.push_str(rest);
    out
}

/// Deliver the queue files Postfix 3.7.11 delivered through pipe(8)
/// (compat/pipe/record.sh) and compare what the command received (argv,
/// environment, stdin) and the log lines.
#[test]
fn differential_against_postfix() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("compat/pipe/golden");
    let tmp = std::env::temp_dir().join(format!("rostfix-pipe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("out")).unwrap();
    let dir = tmp.to_string_lossy().to_string();
    let script = std::fs::read_to_string(golden.join("../rec.sh"))
        .unwrap()
        .replace("/var/tmp/t6-pipe", &dir);
    let rec = tmp.join("rec.sh");
    std::fs::write(&rec, script).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&rec, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(tmp.join("outdir"), format!("{dir}/out\n")).unwrap();
    let master = std::fs::read_to_string(golden.join("master.cf"))
        .unwrap()
        .replace("/var/tmp/t6-pipe", &dir);
    let svcs = services(&master);
    let mut ours = Vec::new();
    let mut ids = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(golden.join("queue"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 15);
    for f in &files {
        let id = f.file_name().unwrap().to_string_lossy().to_string();
        ids.push(id.clone());
        let probe = DeliveryRequest::from_queue_file(f, "deferred", &id, "x", "x").unwrap();
        let domain = probe.rcpt[0]
            .address
            .rsplit('@')
            .next()
            .unwrap()
            .to_ascii_lowercase();
        let transport = match domain.as_str() {
            "t2.test" => "rec2",
            "t3.test" => "rec3",
            "t4.test" => "rec4",
            "t5.test" => "rec5",
            "dovecot.test" => "dovecot",
            _ => "rec1",
        };
        let r = DeliveryRequest::from_queue_file(f, "deferred", &id, transport, &domain).unwrap();
        let a = parse_attr(&svcs[transport], &FakeIds, forbid(), "postfix", "postdrop").unwrap();
        let conf = PipeConf {
            service: transport.to_string(),
            time_limit: if transport == "rec5" { 2 } else { 100 },
            split: SplitParams {
                delimiters: "+".into(),
                ..Default::default()
            },
            export_environment: vec!["LANG=C".into(), "MAIL_CONFIG=/var/tmp/t6-pipe/pf".into()],
            enable_orcpt: true,
            delay_max_res: 2,
            switch_ids: false,
            config_dir: "/var/tmp/t6-pipe/pf".into(),
        };
        for res in deliver(&r, &a, &conf) {
            ours.push(normalize_log(&res.log, &dir));
        }
    }
    ours.sort();
    let theirs: Vec<String> = std::fs::read_to_string(golden.join("pipe.log"))
        .unwrap()
        .lines()
        .filter(|l| ids.iter().any(|id| l.starts_with(&format!("{id}:"))))
        .map(|l| normalize_log(l, &dir))
        .collect();
    assert_eq!(ours, theirs);
    // What the command received.
    let mut compared = 0;
    for e in std::fs::read_dir(golden.join("out")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let want = std::fs::read(&p).unwrap();
        let got = std::fs::read(tmp.join("out").join(&name))
            .unwrap_or_else(|_| panic!("command did not record {name}"));
        if name.ends_with(".stdin") {
            // The From_ line carries the delivery time.
            let strip = |b: &[u8]| -> Vec<u8> {
                let s = String::from_utf8_lossy(b).to_string();
                s.lines()
                    .map(|l| {
                        if l.starts_with("From ") && l.len() > 24 {
                            l[..l.len() - 24].to_string()
                        } else {
                            l.to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
                    .into_bytes()
            };
            assert_eq!(
                String::from_utf8_lossy(&strip(&got)),
                String::from_utf8_lossy(&strip(&want)),
                "{name}"
            );
        } else {
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "{name}"
            );
        }
        compared += 1;
    }
    assert!(compared >= 40);
    let _ = std::fs::remove_dir_all(&tmp);
}
