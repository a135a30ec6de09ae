//! virtual(8) against Postfix 3.7.11: queue files accepted and delivered by
//! a real Postfix (tests/golden/local/, recorded by
//! compat/record-local-delivery.sh) go through our virtual agent with the
//! same virtual_mailbox_maps; mailboxes, maildirs and log lines must match.
//!
//! A plain `main` (harness = false): as root the agent writes in a forked
//! child as the mailbox owner, and fork is refused in a threaded process.

use rostfix::daemons::virtual_agent::{VirtualAgent, VirtualConfig};
use rostfix::global::deliver_request::DeliveryRequest;
use rostfix::global::mail_conf::MailConf;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/local")
}

fn ids() -> (u32, u32) {
    if rostfix::sys::geteuid() == 0 {
        (65534, 65534)
    } else {
        (rostfix::sys::geteuid(), rostfix::sys::getegid())
    }
}

fn norm(text: &str, root: &str) -> String {
    let mut out = String::new();
    for line in text.replace(root, "/tmp/t6-local").split_inclusive('\n') {
        match line.split_once("  ") {
            Some((who, _)) if line.starts_with("From ") => out.push_str(&format!("{who}  DATE\n")),
            _ => out.push_str(line),
        }
    }
    out
}

fn norm_log(line: &str) -> String {
    let l = line
        .split_once(": to=")
        .map(|(_, r)| format!("to={r}"))
        .unwrap_or(line.into());
    l.split(", ")
        .filter(|p| !p.starts_with("delay=") && !p.starts_with("delays="))
        .collect::<Vec<_>>()
        .join(", ")
        .replace("relay=virtual2", "relay=virtual")
}

fn run(name: &str, id: &str) -> Result<(), String> {
    let root = std::env::temp_dir().join(format!("rostfix-virtual-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let r = root.to_str().unwrap().to_string();
    let (uid, gid) = ids();
    for d in ["spool", "virtual/virt.test", "virtual/vbig.test"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::set_permissions(root.join("virtual"), std::fs::Permissions::from_mode(0o755)).unwrap();
    for d in ["virtual/virt.test", "virtual/vbig.test"] {
        std::os::unix::fs::chown(root.join(d), Some(uid), Some(gid)).unwrap();
    }
    if name == "vbig" {
        let p = root.join("virtual/vbig.test/d");
        std::fs::write(&p, "x".repeat(2400)).unwrap();
        std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
    }
    let maps = root.join("vmailbox");
    std::fs::write(
        &maps,
        "a@virt.test  virt.test/a\nb@virt.test  virt.test/b/\nd@vbig.test  vbig.test/d\ne@virt.test  nodir/e\n",
    )
    .unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&maps)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let mut text = format!(
        "virtual_mailbox_base = {r}/virtual\nvirtual_mailbox_maps = texthash:{r}/vmailbox\n\
         virtual_uid_maps = static:{uid}\nvirtual_gid_maps = static:{gid}\nvirtual_minimum_uid = 1\n"
    );
    let service = if name == "vbig" {
        "virtual2"
    } else {
        "virtual"
    };
    if name == "vbig" {
        text.push_str("virtual_mailbox_limit = 2500\nmessage_size_limit = 2000\n");
    }
    let cfg = VirtualConfig::from_conf(&MailConf::from_text(&r, &text)).map_err(|e| e.0)?;
    let qf = root.join("spool").join(id);
    std::fs::copy(golden().join("queue").join(name), &qf).unwrap();
    let req = DeliveryRequest::from_queue_file(&qf, "active", id, service, "").map_err(|e| e.0)?;
    let res = VirtualAgent::new(cfg, service).deliver(&req);
    let ours: Vec<String> = res.iter().map(|x| norm_log(&norm(&x.log, &r))).collect();
    let want: Vec<String> =
        std::fs::read_to_string(golden().join("queue").join(format!("{name}.log")))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(": to="))
            .map(norm_log)
            .collect();
    if ours != want {
        return Err(format!(
            "{name}: log differs\n ours: {ours:?}\n want: {want:?}"
        ));
    }
    if let Ok(rd) = std::fs::read_dir(golden().join("out").join(name)) {
        for e in rd.flatten() {
            let rel = e.file_name().to_string_lossy().replace("__", "/");
            if name == "vbig" {
                continue;
            }
            let path = match rel.strip_suffix("/MSG") {
                Some(dir) => {
                    let d = root.join(dir);
                    let mut it = std::fs::read_dir(&d).map_err(|e| format!("{name}: {e}"))?;
                    let f = it.next().ok_or(format!("{name}: empty {}", d.display()))?;
                    let f = f.map_err(|e| e.to_string())?.path();
                    let fname = f.file_name().unwrap().to_string_lossy().to_string();
                    // SEC.VdevIinoMusec.HOST
                    let ok = fname
                        .split('.')
                        .nth(1)
                        .is_some_and(|p| p.starts_with('V') && p.contains('I') && p.contains('M'));
                    if !ok {
                        return Err(format!("{name}: bad maildir file name {fname}"));
                    }
                    f
                }
                None => root.join(&rel),
            };
            let ours = std::fs::read_to_string(&path)
                .map_err(|e| format!("{name}: {}: {e}", path.display()))?;
            let want = std::fs::read_to_string(e.path()).unwrap();
            if norm(&ours, &r) != norm(&want, "/tmp/t6-local") {
                return Err(format!("{name}: {rel} differs\n{ours}\n---\n{want}"));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

fn main() {
    let cases = std::fs::read_to_string(golden().join("cases")).unwrap_or_default();
    if cases.is_empty() {
        eprintln!("notice: no golden cases; run compat/record-local-delivery.sh");
        return;
    }
    let mut failures = Vec::new();
    let mut n = 0;
    for l in cases.lines() {
        let mut it = l.split_whitespace();
        let (Some(name), Some(id)) = (it.next(), it.next()) else {
            continue;
        };
        if !["va", "vb", "vc", "ve", "vbig"].contains(&name) {
            continue;
        }
        n += 1;
        if let Err(e) = run(name, id) {
            failures.push(e);
        }
    }
    if !failures.is_empty() {
        eprintln!("{}", failures.join("\n\n"));
        std::process::exit(1);
    }
    println!("virtual: {n} cases match Postfix 3.7.11");
}
