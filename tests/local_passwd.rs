//! local(8)'s password lookups against Postfix 3.7.11, in a whole running
//! instance of each (one after the other: they share the passwd entries).
//!
//! - require_home_directory = no (the default): a user whose home folder
//!   does not exist still gets mail;
//! - require_home_directory = yes: the home folder is looked at, and a
//!   missing one defers;
//! - the password cache of a local process (Postfix's mypwnam): the last
//!   entry found stays, so a home folder that changes in passwd is not
//!   seen while the process keeps delivering to the same user; a lookup of
//!   another user forgets it; a user added while the process runs is seen
//!   at once (misses are not remembered).
//!
//! The test creates the users `rfx-pw-1`, `rfx-pw-2` and `rfx-pw-3` (root
//! only; the last is deleted first and added midway) and changes the
//! home of `rfx-pw-1` between messages. The `localh` service
//! (require_home_directory = yes, one process) gets the mail for
//! `home.test`. Every outcome (status and reason of each delivery) is
//! compared with Postfix's when the reference is there, and always with
//! the outcomes recorded from it below. Without root: SKIP (no users, no
//! Postfix master).

mod common;
use common::instance::{Instance, Side, is_root, wait_for};
use common::queue::reference;
use std::process::Command;
use std::time::Duration;

const WORLD: &str = "/var/tmp/rostfix-local-passwd";
const GONE: &str = "/var/tmp/rostfix-local-passwd/gone";

/// (recipient, home of rfx-pw-1 before it is sent: true = existing).
const STEPS: [(&str, Option<bool>); 8] = [
    ("rfx-pw-1@test.example", Some(false)),
    ("rfx-pw-1@home.test", Some(true)),
    ("rfx-pw-1@home.test", Some(false)),
    ("rfx-pw-2@home.test", None),
    ("rfx-pw-1@home.test", None),
    ("rfx-pw-3@home.test", None),
    // rfx-pw-3 is added before this one.
    ("rfx-pw-3@home.test", None),
    ("rfx-pw-1@test.example", None),
];

/// What Postfix 3.7.11 logged for each step (relay, status, reason).
const POSTFIX: [&str; 8] = [
    "relay=local status=sent (delivered to maildir)",
    "relay=localh status=sent (delivered to maildir)",
    "relay=localh status=sent (delivered to maildir)",
    "relay=localh status=sent (delivered to maildir)",
    "relay=localh status=deferred (cannot access home directory /var/tmp/rostfix-local-passwd/gone: No such file or directory)",
    "relay=localh status=bounced (unknown user: \"rfx-pw-3\")",
    "relay=localh status=sent (delivered to maildir)",
    "relay=local status=sent (delivered to maildir)",
];

fn home(user: &str) -> String {
    format!("{WORLD}/home/{user}")
}

fn sh(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd).args(args).status().unwrap();
    assert!(st.success(), "{cmd} {args:?}");
}

fn exists(user: &str) -> bool {
    Command::new("id")
        .arg(user)
        .output()
        .unwrap()
        .status
        .success()
}

fn set_home(user: &str, dir: &str) {
    sh("usermod", &["-d", dir, user]);
}

fn add_user(user: &str) {
    if exists(user) {
        set_home(user, &home(user));
    } else {
        sh("useradd", &["-M", "-s", "/bin/sh", "-d", &home(user), user]);
    }
    std::fs::create_dir_all(home(user)).unwrap();
    sh("chown", &[user, &home(user)]);
}

/// The log line's relay, status and reason for `rcpt`'s n-th outcome.
fn outcome(log: &str, rcpt: &str, n: usize) -> Option<String> {
    let line = log
        .lines()
        .filter(|l| l.contains(&format!(" to=<{rcpt}>")) && l.contains(" status="))
        .nth(n)?;
    let relay = line.split(" relay=").nth(1)?.split(',').next()?;
    let status = line.split(" status=").nth(1)?;
    Some(format!("relay={relay} status={status}"))
}

fn run_side(side: Side) -> Vec<String> {
    let _ = std::fs::remove_dir_all(WORLD);
    std::fs::create_dir_all(WORLD).unwrap();
    for u in ["rfx-pw-1", "rfx-pw-2"] {
        add_user(u);
    }
    if exists("rfx-pw-3") {
        sh("userdel", &["rfx-pw-3"]);
    }
    let dir = std::env::temp_dir().join(format!(
        "rostfix-local-passwd-{}-{side:?}",
        std::process::id()
    ));
    let d = dir.display().to_string();
    let main = format!(
        "mydestination = test.example, home.test, localhost\n\
         mail_spool_directory = {d}/spool/\n\
         alias_maps =\nalias_database =\nlocal_recipient_maps =\n\
         transport_maps = texthash:{d}/conf/transport\n\
         biff = no\n"
    );
    let master = "postlog unix-dgram n - n - 1 postlogd\n\
         pickup unix n - n 60 1 pickup\n\
         cleanup unix n - n - 0 cleanup\n\
         qmgr unix n - n 300 1 qmgr\n\
         rewrite unix - - n - - trivial-rewrite\n\
         bounce unix - - n - 0 bounce\n\
         defer unix - - n - 0 bounce\n\
         trace unix - - n - 0 bounce\n\
         local unix - n n - - local\n\
         localh unix - n n - 1 local -o require_home_directory=yes\n\
         error unix - - n - - error\n\
         retry unix - - n - - error\n\
         discard unix - - n - - discard\n";
    let mut inst = Instance::with_master(
        side,
        &dir,
        &main,
        Some(master),
        &[("transport", "home.test localh:\n")],
    );
    std::fs::create_dir_all(dir.join("spool")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("spool"), std::fs::Permissions::from_mode(0o1777))
            .unwrap();
    }
    inst.start();
    let mut out = Vec::new();
    for (i, (rcpt, home1)) in STEPS.iter().enumerate() {
        match home1 {
            Some(true) => set_home("rfx-pw-1", &home("rfx-pw-1")),
            Some(false) => set_home("rfx-pw-1", GONE),
            None => {}
        }
        if i == 6 {
            add_user("rfx-pw-3");
        }
        let n = STEPS[..i].iter().filter(|(r, _)| r == rcpt).count();
        let msg = format!("Subject: step {i}\n\nstep {i}\n");
        let (st, _, err) = inst.run(
            "sendmail",
            &["-f", "rfx-pw-2@test.example", rcpt],
            msg.as_bytes(),
        );
        assert_eq!(st, 0, "{side:?} sendmail: {err}");
        let mut got = None;
        wait_for(
            &format!("{side:?} step {i}: {rcpt}"),
            Duration::from_secs(20),
            || {
                got = outcome(&inst.log(), rcpt, n);
                got.is_some()
            },
        );
        out.push(got.unwrap());
    }
    inst.stop();
    set_home("rfx-pw-1", &home("rfx-pw-1"));
    out
}

#[test]
fn passwd_lookups_match_postfix() {
    if !is_root() {
        eprintln!("SKIP: needs root (test users, Postfix's master)");
        return;
    }
    // One test process at a time owns the users.
    let lock = std::fs::File::create("/var/tmp/rostfix-local-passwd.lock").unwrap();
    lock.lock().unwrap();
    let ours = run_side(Side::Ours);
    if reference().is_some() {
        let theirs = run_side(Side::Postfix);
        assert_eq!(ours, theirs, "ours (left) vs Postfix 3.7.11 (right)");
    } else {
        eprintln!("no Postfix 3.7.11 reference: comparing with the recorded outcomes");
    }
    assert_eq!(ours, POSTFIX, "ours (left) vs recorded from Postfix 3.7.11");
}
