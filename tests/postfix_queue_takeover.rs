//! A queue written by a running Postfix 3.7.11 (deferred mail: qmgr with
//! `defer_transports = smtp`; hold mail: header_checks HOLD; incoming) is
//! handled by our tools exactly as by Postfix's: `postqueue -p` / `-j`,
//! `postcat -q`, then `postsuper -h`, `-H`, `-r`, `-d` (IDs and ALL) run on
//! two copies of that queue, Postfix's tools on one and ours on the other;
//! outputs, exit statuses and the resulting trees must be identical.
//!
//! Needs root and the reference Postfix (its master); otherwise SKIP.

mod common;
use common::instance::{Instance, Side, is_root, wait_for};
use common::queue::reference;
use std::path::Path;
use std::time::Duration;

fn tree(q: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for d in [
        "incoming", "active", "deferred", "hold", "maildrop", "defer", "corrupt",
    ] {
        let mut stack = vec![q.join(d)];
        while let Some(p) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&p) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    use std::os::unix::fs::PermissionsExt;
                    let m = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
                    let bytes = std::fs::read(&p).unwrap();
                    out.push(format!(
                        "{} {m:o} {}",
                        p.strip_prefix(q).unwrap().display(),
                        bytes.len()
                    ));
                }
            }
        }
    }
    out.sort();
    out
}

fn copy_instance(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    assert!(
        std::process::Command::new("cp")
            .args(["-a", from.to_str().unwrap(), to.to_str().unwrap()])
            .status()
            .unwrap()
            .success()
    );
    let cf = to.join("conf/main.cf");
    let t = std::fs::read_to_string(&cf)
        .unwrap()
        .replace(from.to_str().unwrap(), to.to_str().unwrap());
    std::fs::write(&cf, t).unwrap();
    // Postfix's postsuper appends to maillog_file as mail_owner.
    let (user, _) = common::queue::owner_and_group();
    let log = to.join("maillog");
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log);
    let _ = std::process::Command::new("chown")
        .arg(&user)
        .arg(&log)
        .status();
    let f = std::fs::File::options().write(true).open(&cf).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
}

#[test]
fn our_tools_handle_a_postfix_queue_like_postfix() {
    if reference().is_none() || !is_root() {
        eprintln!("SKIP: needs root and the reference Postfix 3.7.11");
        return;
    }
    let base = std::env::temp_dir().join(format!("rostfix-takeover-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let dir = base.join("pf");
    let mut pf = Instance::new(
        Side::Postfix,
        &dir,
        "header_checks = regexp:${config_directory}/header_checks\n\
         defer_transports = smtp\nrelayhost = [192.0.2.1]\n",
        &[("header_checks", "/^X-Hold:/ HOLD\n")],
    );
    let mcf = dir.join("conf/master.cf");
    let mut m = std::fs::read_to_string(&mcf).unwrap();
    m.push_str(
        "qmgr unix n - n 300 1 qmgr\ndefer unix - - n - 0 bounce\n\
         bounce unix - - n - 0 bounce\ntrace unix - - n - 0 bounce\n",
    );
    std::fs::write(&mcf, m).unwrap();
    let f = std::fs::File::options().write(true).open(&mcf).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    pf.start();
    for (i, hold) in [(0, false), (1, true), (2, false), (3, true)] {
        let h = if hold { "X-Hold: yes\n" } else { "" };
        let input = format!("{h}Subject: m{i}\n\nbody {i}\n");
        let (st, _, err) = pf.run(
            "sendmail",
            &[
                "-C",
                &pf.conf(),
                "-f",
                "alice",
                &format!("r{i}@example.com"),
            ],
            input.as_bytes(),
        );
        assert_eq!(st, 0, "{err}");
    }
    wait_for("2 deferred + 2 held", Duration::from_secs(15), || {
        pf.files(&["deferred"]).len() == 2 && pf.files(&["hold"]).len() == 2
    });
    pf.stop();
    std::thread::sleep(Duration::from_millis(300));
    let q = pf.queue();
    let ids = |w: &str| -> Vec<String> {
        pf.files(&[w])
            .iter()
            .map(|f| f.rsplit('/').next().unwrap().to_string())
            .collect()
    };
    let deferred = ids("deferred");
    let held = ids("hold");
    assert_eq!(pf.files(&["defer"]).len(), 2, "defer logs");

    // Two copies: one for Postfix's tools, one for ours.
    let a = base.join("a");
    let b = base.join("b");
    copy_instance(&dir, &a);
    copy_instance(&dir, &b);
    let ia = Instance::attach(Side::Postfix, &a);
    let ib = Instance::attach(Side::Ours, &b);
    let steps: Vec<(&str, Vec<String>)> = vec![
        ("postqueue", vec!["-p".into()]),
        ("postqueue", vec!["-j".into()]),
        ("postcat", vec!["-q".into(), deferred[0].clone()]),
        ("postcat", vec!["-q".into(), held[0].clone()]),
        ("postcat", vec!["-eq".into(), deferred[1].clone()]),
        ("postcat", vec!["-bhq".into(), held[1].clone()]),
        ("postsuper", vec!["-h".into(), deferred[0].clone()]),
        ("postqueue", vec!["-p".into()]),
        ("postsuper", vec!["-H".into(), "ALL".into()]),
        ("postqueue", vec!["-p".into()]),
        ("postsuper", vec!["-r".into(), held[1].clone()]),
        ("postsuper", vec!["-d".into(), deferred[1].clone()]),
        ("postsuper", vec!["-d".into(), "NOSUCHID".into()]),
        ("postqueue", vec!["-j".into()]),
        ("postsuper", vec!["-r".into(), "ALL".into()]),
        ("postsuper", vec!["-d".into(), "ALL".into()]),
        ("postqueue", vec!["-p".into()]),
    ];
    for (prog, args) in steps {
        let mut outs = Vec::new();
        for inst in [&ia, &ib] {
            let mut full = vec!["-c".to_string(), inst.conf()];
            full.extend(args.iter().cloned());
            let fa: Vec<&str> = full.iter().map(|s| s.as_str()).collect();
            let (st, out, err) = inst.run(prog, &fa, b"");
            let text =
                String::from_utf8_lossy(&out).replace(&inst.dir.display().to_string(), "DIR");
            let err = err.replace(&inst.dir.display().to_string(), "DIR");
            outs.push((st, text, err, tree(&inst.queue())));
        }
        assert_eq!(
            outs[1], outs[0],
            "{prog} {args:?}: ours (left) vs Postfix (right)"
        );
    }
    let _ = q;
    drop(ia);
    drop(ib);
    drop(pf);
    let _ = std::fs::remove_dir_all(&base);
}
