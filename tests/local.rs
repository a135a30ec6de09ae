//! local(8) against Postfix 3.7.11: the queue files in tests/golden/local/
//! were accepted by a real Postfix instance and then delivered by its
//! local(8); compat/record-local-delivery.sh re-records them (root, the
//! unpacked Postfix binaries). Here the same queue files go through our
//! local agent, with the same configuration under a temporary directory,
//! and the mailboxes, files, command input and log lines must match after
//! normalising dates, delays and the scratch path.

use rostfix::daemons::local::{Env, LocalAgent, LocalConfig, Pw, Resolved};
use rostfix::global::deliver_request::{DeliveryRequest, Dsn, Outcome, Recipient};
use rostfix::global::mail_conf::MailConf;
use std::path::{Path, PathBuf};

const SCRATCH: &str = "/tmp/t6-local";

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/local")
}

struct TestEnv {
    root: String,
    service: String,
    forwarded: Vec<(String, Vec<Recipient>)>,
}

impl Env for TestEnv {
    fn getpwnam(&self, name: &str) -> Result<Option<Pw>, i32> {
        if name == "t6user" || name == "t6fwd" {
            return Ok(Some(Pw {
                name: name.into(),
                uid: rostfix::sys::geteuid(),
                gid: rostfix::sys::getegid(),
                dir: format!("{}/home/{name}", self.root),
                shell: "/bin/sh".into(),
            }));
        }
        Ok(None)
    }
    fn getpwuid(&self, _uid: u32) -> Result<Option<Pw>, i32> {
        self.getpwnam("t6user")
    }
    fn resolve(&mut self, addr: &str) -> Resolved {
        let full = if addr.contains('@') {
            addr.to_string()
        } else {
            format!("{addr}@mx.example.test")
        };
        let dom = full.rsplit_once('@').unwrap().1.to_lowercase();
        if dom == "mx.example.test" || dom == "localhost" {
            Resolved::Ok("local".into(), dom, full)
        } else {
            Resolved::Ok("error".into(), dom, full)
        }
    }
    fn forward(
        &mut self,
        _req: &DeliveryRequest,
        sender: &str,
        _delivered: &str,
        rcpts: &[Recipient],
    ) -> Result<String, rostfix::daemons::local::ForwardError> {
        self.forwarded.push((sender.to_string(), rcpts.to_vec()));
        Ok("FORWARDID".into())
    }
    fn pass(&mut self, _t: &str, _req: &DeliveryRequest, _r: &Recipient) -> (Outcome, Dsn) {
        (
            Outcome::Deferred,
            Dsn::new("4.3.0", "mail transport unavailable"),
        )
    }
}

fn setup(root: &Path) {
    let r = root.to_str().unwrap();
    let _ = std::fs::remove_dir_all(root);
    for d in [
        "mail",
        "home/t6user",
        "home/t6fwd",
        "files",
        "bin",
        "spool",
        "virtual",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::Permissions::from_mode(0o1777);
        std::fs::set_permissions(root.join("mail"), mode).unwrap();
    }
    let w = |p: &str, t: String, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(root.join(p), t).unwrap();
        std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(mode)).unwrap();
    };
    w(
        "bin/envdump",
        format!(
            "#!/bin/sh\nout={r}/files/envdump.$USER\n{{ echo \"argv: $*\"; env | LC_ALL=C sort; echo \"--- stdin\"; cat; }} > \"$out\"\n"
        ),
        0o755,
    );
    w(
        "bin/fail1",
        "#!/bin/sh\necho \"oops: it failed\"\nexit 1\n".into(),
        0o755,
    );
    w(
        "bin/fail75",
        "#!/bin/sh\necho \"try later\"\nexit 75\n".into(),
        0o755,
    );
    w(
        "bin/fail67",
        "#!/bin/sh\necho \"no such user here\"\nexit 67\n".into(),
        0o755,
    );
    w("files/inc.list", "t6fwd\n".into(), 0o644);
    w(
        "home/t6fwd/.forward",
        format!("\\t6fwd, {r}/files/fwd.out, \"|{r}/bin/envdump fwdcmd\"\n"),
        0o644,
    );
    // texthash: (postmap format) stands in for the hash: aliases file.
    w(
        "aliases",
        format!(
            "postmaster root\nroot {r}/files/root.out\nafile {r}/files/afile.out\n\
             acmd \"|{r}/bin/envdump alias arg\"\nafail1 |{r}/bin/fail1\n\
             afail75 |{r}/bin/fail75\nafail67 |{r}/bin/fail67\n\
             alist t6user, afile, :include:{r}/files/inc.list\nowner-alist t6user\n\
             aloop aloop2\naloop2 aloop\naremote someone@elsewhere.example\n"
        ),
        0o644,
    );
    // An old mtime: texthash waits for a file modified in the last second.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(root.join("aliases"))
        .and_then(|f| f.set_modified(old))
        .unwrap();
}

fn conf(root: &Path, service: &str) -> LocalConfig {
    let r = root.to_str().unwrap();
    let mut text = format!(
        "myhostname = mx.example.test\nmydestination = $myhostname, localhost\n\
         mail_spool_directory = {r}/mail\nalias_maps = texthash:{r}/aliases\n\
         recipient_delimiter = +\nqueue_directory = {r}/spool\nbiff = no\n"
    );
    match service {
        "local2" => text.push_str("home_mailbox = Maildir/\n"),
        "local3" => text.push_str("message_size_limit = 2000\nmailbox_size_limit = 2500\n"),
        "local4" => text.push_str(&format!(
            "mailbox_command = {r}/bin/envdump mbcmd ${{extension}}\n"
        )),
        // A table that cannot be opened: as in the local daemon (which
        // allows surrogate tables, as Postfix's do), lookups fail and the
        // recipient is deferred.
        "local6" => text.push_str(&format!(
            "mailbox_command_maps = texthash:{r}/no-such-table\n"
        )),
        // The "cmd" case's command given by mailbox_command_maps, which
        // wins over mailbox_command (Postfix's deliver_mailbox): the
        // outcome must be what Postfix recorded with local4.
        "local5" => {
            std::fs::write(
                root.join("cmdmap"),
                format!("t6user {r}/bin/envdump mbcmd ${{extension}}\n"),
            )
            .unwrap();
            text.push_str(&format!(
                "mailbox_command_maps = texthash:{r}/cmdmap\nmailbox_command = /bin/false\n"
            ));
        }
        _ => {}
    }
    let mc = MailConf::from_text(r, &text);
    let mut cfg = LocalConfig::from_conf(&mc).expect("config");
    // Tests run in a threaded process: deliver as ourselves.
    cfg.default_uid = rostfix::sys::geteuid();
    cfg.default_gid = rostfix::sys::getegid();
    cfg
}

/// Replace the From_ line date, drop delays, and map the scratch root.
fn norm(text: &str, root: &str) -> String {
    let mut out = String::new();
    for line in text.replace(root, SCRATCH).split_inclusive('\n') {
        if line.starts_with("From ") && line.contains("  ") {
            let (who, _) = line.split_once("  ").unwrap();
            out.push_str(&format!("{who}  DATE\n"));
        } else {
            out.push_str(line);
        }
    }
    out
}

fn norm_log(line: &str) -> String {
    let l = line
        .split_once(": to=")
        .map(|(_, r)| format!("to={r}"))
        .unwrap_or(line.into());
    let mut out = String::new();
    for part in l.split(", ") {
        if part.starts_with("delay=") || part.starts_with("delays=") {
            continue;
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(part);
    }
    out.replace("relay=local2", "relay=local")
        .replace("relay=local3", "relay=local")
        .replace("relay=local4", "relay=local")
        .replace("relay=local5", "relay=local")
}

fn cases() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(golden().join("cases")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((
                it.next()?.to_string(),
                it.next()?.to_string(),
                l.to_string(),
            ))
        })
        .collect()
}

fn service_for(case: &str) -> &'static str {
    match case {
        "maildir" => "local2",
        "big" => "local3",
        "cmd" => "local4",
        _ => "local",
    }
}

/// The env lines of an envdump output that do not depend on who ran it.
fn envdump_view(text: &str, skip_home: bool) -> String {
    let mut out = String::new();
    let mut body = false;
    for l in text.lines() {
        if l == "--- stdin" {
            body = true;
        }
        if body || l.starts_with("argv:") {
            out.push_str(l);
            out.push('\n');
            continue;
        }
        let keep = [
            "DOMAIN=",
            "EXTENSION=",
            "LOCAL=",
            "LOGNAME=",
            "ORIGINAL_RECIPIENT=",
            "RECIPIENT=",
            "SENDER=",
            "USER=",
            "PATH=",
        ];
        let keep_home = ["HOME=", "SHELL="];
        if keep.iter().any(|k| l.starts_with(k))
            || (!skip_home && keep_home.iter().any(|k| l.starts_with(k)))
        {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

fn run_case(name: &str, id: &str) -> Result<(), String> {
    run_case_as(name, id, service_for(name))
}

fn run_case_as(name: &str, id: &str, service: &str) -> Result<(), String> {
    let root = std::env::temp_dir().join(format!(
        "rostfix-local-{}-{name}-{service}",
        std::process::id()
    ));
    setup(&root);
    let r = root.to_str().unwrap().to_string();
    if name == "big" {
        std::fs::write(root.join("mail/t6user"), "x".repeat(2400)).unwrap();
    }
    let qf = root.join("spool").join(id);
    std::fs::copy(golden().join("queue").join(name), &qf).unwrap();
    let req = DeliveryRequest::from_queue_file(&qf, "active", id, service, "mx.example.test")
        .map_err(|e| e.to_string())?;
    let mut env = TestEnv {
        root: r.clone(),
        service: service.into(),
        forwarded: vec![],
    };
    let _ = &env.service;
    let mut agent = LocalAgent::new(conf(&root, service), service, &mut env);
    let results = agent.deliver(&req);
    let mut ours: Vec<String> = results
        .iter()
        .map(|x| norm_log(&norm(&x.log, &r)))
        .collect();
    ours.sort();
    let gold_log = std::fs::read_to_string(golden().join("queue").join(format!("{name}.log")))
        .unwrap_or_default();
    let mut want: Vec<String> = gold_log
        .lines()
        .filter(|l| l.contains(": to="))
        .map(norm_log)
        .collect();
    want.sort();
    let ours_fw: Vec<String> = ours.iter().map(|l| strip_fwd_id(l)).collect();
    let want_fw: Vec<String> = want.iter().map(|l| strip_fwd_id(l)).collect();
    if ours_fw != want_fw {
        return Err(format!(
            "{name}: log lines differ\n ours: {ours:#?}\n want: {want:#?}"
        ));
    }
    // Files.
    let out_dir = golden().join("out").join(name);
    if let Ok(rd) = std::fs::read_dir(&out_dir) {
        for e in rd.flatten() {
            let gname = e.file_name().to_string_lossy().to_string();
            if gname == "mail__t6user" && name == "big" {
                continue;
            }
            let mut rel = gname.replace("__", "/");
            if rel == "files/envdump.nobody" {
                // Postfix's script named it by `id -un` (default_privs).
                rel = "files/envdump.acmd".into();
            }
            let want = std::fs::read_to_string(e.path()).unwrap();
            let ours_path = if let Some(dir) = rel.strip_suffix("/MSG") {
                let d = root.join(dir);
                match std::fs::read_dir(&d)
                    .ok()
                    .and_then(|mut it| it.next())
                    .and_then(|e| e.ok())
                {
                    Some(f) => f.path(),
                    None => return Err(format!("{name}: no file in {}", d.display())),
                }
            } else {
                root.join(&rel)
            };
            let ours = std::fs::read_to_string(&ours_path)
                .map_err(|e| format!("{name}: {}: {e}", ours_path.display()))?;
            let (o, w) = if rel.contains("envdump") {
                let skip_home = name == "acmd";
                (
                    envdump_view(&norm(&ours, &r), skip_home),
                    envdump_view(&norm(&want, SCRATCH), skip_home),
                )
            } else {
                (norm(&ours, &r), norm(&want, SCRATCH))
            };
            if o != w {
                return Err(format!(
                    "{name}: {rel} differs\n--- ours\n{o}\n--- want\n{w}"
                ));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

fn strip_fwd_id(l: &str) -> String {
    match l.find("forwarded as ") {
        Some(i) => format!("{}forwarded as ID)", &l[..i]),
        None => l.to_string(),
    }
}

const LOCAL_CASES: &[&str] = &[
    "mbox",
    "ext",
    "maildir",
    "unknown",
    "afile",
    "acmd",
    "afail1",
    "afail75",
    "afail67",
    "forward",
    "loop",
    "aloop",
    "big",
    "cmd",
    "multi",
    "nullsender",
    "aremote",
];

#[test]
fn local_deliveries_match_postfix() {
    let all = cases();
    if all.is_empty() {
        eprintln!("notice: tests/golden/local/cases missing; run compat/record-local-delivery.sh");
        return;
    }
    let mut failures = Vec::new();
    for (name, id, _) in &all {
        if !LOCAL_CASES.contains(&name.as_str()) {
            continue;
        }
        let t = std::time::Instant::now();
        let r = run_case(name, id);
        eprintln!("case {name}: {:?}", t.elapsed());
        if let Err(e) = r {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn mailbox_command_maps_wins_over_mailbox_command() {
    let all = cases();
    let Some((_, id, _)) = all.iter().find(|c| c.0 == "cmd") else {
        eprintln!("notice: tests/golden/local/cases missing; run compat/record-local-delivery.sh");
        return;
    };
    if let Err(e) = run_case_as("cmd", id, "local5") {
        panic!("{e}");
    }
}

#[test]
fn mailbox_command_maps_lookup_failure_defers() {
    let all = cases();
    let Some((_, id, _)) = all.iter().find(|c| c.0 == "cmd") else {
        return;
    };
    rostfix::global::maps::set_allow_surrogate(true);
    let root = std::env::temp_dir().join(format!("rostfix-local-{}-cmdfail", std::process::id()));
    setup(&root);
    let r = root.to_str().unwrap().to_string();
    let qf = root.join("spool").join(id);
    std::fs::copy(golden().join("queue/cmd"), &qf).unwrap();
    let req = DeliveryRequest::from_queue_file(&qf, "active", id, "local6", "").unwrap();
    let mut env = TestEnv {
        root: r.clone(),
        service: "local6".into(),
        forwarded: vec![],
    };
    let mut agent = LocalAgent::new(conf(&root, "local6"), "local6", &mut env);
    let results = agent.deliver(&req);
    assert!(!results.is_empty());
    for x in &results {
        assert!(
            x.log.contains("dsn=4.3.0") && x.log.contains("status=deferred (table lookup failure)"),
            "{}",
            x.log
        );
    }
    assert!(!root.join("files/envdump.mbcmd").exists());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn symlinked_and_hard_linked_mailboxes_are_refused() {
    let all = cases();
    let Some((_, id, _)) = all.iter().find(|c| c.0 == "mbox") else {
        return;
    };
    let root = std::env::temp_dir().join(format!("rostfix-local-{}-links", std::process::id()));
    setup(&root);
    let r = root.to_str().unwrap().to_string();
    let qf = root.join("spool").join(id);
    std::fs::copy(golden().join("queue/mbox"), &qf).unwrap();
    let req = DeliveryRequest::from_queue_file(&qf, "active", id, "local", "").unwrap();
    std::fs::write(root.join("files/target"), "").unwrap();
    std::os::unix::fs::symlink(root.join("files/target"), root.join("mail/t6user")).unwrap();
    let mut env = TestEnv {
        root: r.clone(),
        service: "local".into(),
        forwarded: vec![],
    };
    let res = LocalAgent::new(conf(&root, "local"), "local", &mut env).deliver(&req);
    assert_eq!(res.len(), 1);
    assert_eq!(res[0].outcome, Outcome::Bounced);
    assert_eq!(
        res[0].dsn.reason,
        format!("cannot update mailbox {r}/mail/t6user for user t6user. file is a symbolic link")
    );
    std::fs::remove_file(root.join("mail/t6user")).unwrap();
    std::fs::hard_link(root.join("files/target"), root.join("mail/t6user")).unwrap();
    let res = LocalAgent::new(conf(&root, "local"), "local", &mut env).deliver(&req);
    assert_eq!(
        res[0].dsn.reason,
        format!("cannot update mailbox {r}/mail/t6user for user t6user. file has 2 hard links")
    );
    assert_eq!(res[0].dsn.status, "5.2.0");
    // A dotlock held by someone else makes the delivery wait, then defer.
    std::fs::remove_file(root.join("mail/t6user")).unwrap();
    std::fs::write(root.join("mail/t6user.lock"), "").unwrap();
    let mut cfg = conf(&root, "local");
    cfg.lock_params.tries = 1;
    let res = LocalAgent::new(cfg, "local", &mut env).deliver(&req);
    assert_eq!(res[0].outcome, Outcome::Deferred);
    assert_eq!(res[0].dsn.status, "4.2.0");
    assert!(
        res[0].dsn.reason.ends_with("t6user.lock: File exists"),
        "{}",
        res[0].dsn.reason
    );
    let _ = std::fs::remove_dir_all(&root);
}
