//! The start-up checks of Postfix's mail_params_init() that concern
//! accounts: mail_owner, setgid_group and default_privs must exist, must
//! not be privileged, and must not share IDs. Errors are Postfix's fatal
//! texts.
//!
//! In rostfix's non-root mode (the process was not started by root)
//! everything runs as the invoking user and these accounts are not used;
//! [`run_ids`] then answers with the invoking user's IDs.

use crate::global::mail_conf::MailConf;
use crate::sys::process;

/// The accounts the mail system runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub owner_uid: u32,
    pub owner_gid: u32,
    pub sgid_gid: u32,
    pub default_uid: u32,
    pub default_gid: u32,
}

/// Whether rostfix runs in non-root mode: the real user is not root.
pub fn non_root_mode() -> bool {
    crate::sys::getuid() != 0
}

fn param(conf: &MailConf, name: &str) -> Result<String, String> {
    conf.lookup_eval(name)
        .map_err(|e| e.0)
        .map(|v| v.unwrap_or_default())
}

/// Postfix's check_default_privs, check_mail_owner, check_sgid_group and
/// check_overlap, in that order.
pub fn check_accounts(conf: &MailConf) -> Result<Ids, String> {
    let file = format!("{}/main.cf", conf.config_dir);
    let default_privs = param(conf, "default_privs")?;
    let mail_owner = param(conf, "mail_owner")?;
    let sgid_group = param(conf, "setgid_group")?;
    let user = |name: &str, pname: &str| -> Result<(u32, u32), String> {
        let pw = process::getpwnam(name).ok_or_else(|| {
            format!("file {file}: parameter {pname}: unknown user name value: {name}")
        })?;
        if pw.uid == 0 {
            return Err(format!(
                "file {file}: parameter {pname}: user {name} has privileged user ID"
            ));
        }
        if pw.gid == 0 {
            return Err(format!(
                "file {file}: parameter {pname}: user {name} has privileged group ID"
            ));
        }
        Ok((pw.uid, pw.gid))
    };
    let (default_uid, default_gid) = user(&default_privs, "default_privs")?;
    let (owner_uid, owner_gid) = user(&mail_owner, "mail_owner")?;
    if let Some(pw) = process::getpwuid(owner_uid)
        && pw.name != mail_owner
    {
        return Err(format!(
            "file {file}: parameter mail_owner: user {mail_owner} has same user ID as {}",
            pw.name
        ));
    }
    let gr = process::getgrnam(&sgid_group).ok_or_else(|| {
        format!("file {file}: parameter setgid_group: unknown group name: {sgid_group}")
    })?;
    if gr.gid == 0 {
        return Err(format!(
            "file {file}: parameter setgid_group: group {sgid_group} has privileged group ID"
        ));
    }
    let sgid_gid = gr.gid;
    if let Some(g) = process::getgrgid(sgid_gid)
        && g.name != sgid_group
    {
        return Err(format!(
            "file {file}: parameter setgid_group: group {sgid_group} has same group ID as {}",
            g.name
        ));
    }
    if default_privs == mail_owner {
        return Err(format!(
            "file {file}: parameters default_privs and mail_owner specify the same user {default_privs}"
        ));
    }
    if default_uid == owner_uid {
        return Err(format!(
            "file {file}: parameters default_privs and mail_owner: users {default_privs} and {mail_owner} have the same user ID: {owner_uid}"
        ));
    }
    if default_gid == owner_gid {
        return Err(format!(
            "file {file}: parameters default_privs and mail_owner: users {default_privs} and {mail_owner} have the same group ID: {owner_gid}"
        ));
    }
    if default_gid == sgid_gid {
        return Err(format!(
            "file {file}: parameters default_privs and setgid_group: user {default_privs} and group {sgid_group} have the same group ID: {sgid_gid}"
        ));
    }
    if owner_gid == sgid_gid {
        return Err(format!(
            "file {file}: parameters mail_owner and setgid_group: user {mail_owner} and group {sgid_group} have the same group ID: {sgid_gid}"
        ));
    }
    Ok(Ids {
        owner_uid,
        owner_gid,
        sgid_gid,
        default_uid,
        default_gid,
    })
}

/// The IDs to run with: the checked accounts as root, the invoking user's
/// IDs in non-root mode.
pub fn run_ids(conf: &MailConf) -> Result<Ids, String> {
    if non_root_mode() {
        let uid = crate::sys::getuid();
        let gid = process::getgid();
        return Ok(Ids {
            owner_uid: uid,
            owner_gid: gid,
            sgid_gid: gid,
            default_uid: uid,
            default_gid: gid,
        });
    }
    check_accounts(conf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_refused() {
        let c = MailConf::from_text("/cf", "mail_owner = root\ndefault_privs = root\n");
        assert_eq!(
            check_accounts(&c).unwrap_err(),
            "file /cf/main.cf: parameter default_privs: user root has privileged user ID"
        );
        let c = MailConf::from_text("/cf", "mail_owner = nonesuch-xyz\n");
        if process::getpwnam("nobody").is_some() {
            assert_eq!(
                check_accounts(&c).unwrap_err(),
                "file /cf/main.cf: parameter mail_owner: unknown user name value: nonesuch-xyz"
            );
        }
    }
}
