//! Postfix's user access lists (user_acl.c over a string_list):
//! `authorized_submit_users` and friends. A list is separated by commas
//! and blanks; `!` negates; `/file` patterns are read from the file;
//! `type:table` patterns are looked up; other patterns match the user name
//! exactly, ignoring case. The first matching pattern decides; no match
//! denies.

use crate::global::dict::{self, OpenMode};

/// Why a list could not be evaluated (a fatal error in Postfix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclError(pub String);

fn parse(
    pname: &str,
    text: &str,
    negate: bool,
    out: &mut Vec<(bool, String)>,
) -> Result<(), AclError> {
    let mut rest = text.to_string();
    while let Some(tok) = crate::commands::postconf::user::mystrtokq(&mut rest, ", \t\r\n") {
        if tok.starts_with('#') {
            crate::global::msg::warn(&format!(
                "{pname}: comment at end of line is not supported: {tok} {rest}"
            ));
            break;
        }
        let mut m = !negate;
        let mut item = tok.as_str();
        while let Some(r) = item.strip_prefix('!') {
            m = !m;
            item = r;
        }
        if item.is_empty() {
            return Err(AclError(format!("{pname}: no pattern after '!'")));
        }
        if item.starts_with('/') {
            match std::fs::read(crate::util::latin1::to_path(item)) {
                Ok(b) => {
                    let t = crate::util::latin1::decode(&b);
                    for line in t.split_inclusive('\n') {
                        if !line.starts_with('#') {
                            parse(pname, line, !m, out)?;
                        }
                    }
                }
                Err(e) => out.push((
                    m,
                    format!(
                        "\0open file {item}: {}",
                        crate::global::config_file::errno_text(&e)
                    ),
                )),
            }
        } else if item.contains(':') {
            out.push((m, item.to_string()));
        } else {
            out.push((m, item.to_ascii_lowercase()));
        }
    }
    Ok(())
}

/// Whether `name` matches the list `acl` (string_list_match).
pub fn string_list_match(pname: &str, acl: &str, name: &str) -> Result<bool, AclError> {
    let mut pats = Vec::new();
    parse(pname, acl, false, &mut pats)?;
    let key = name.to_ascii_lowercase();
    for (m, p) in pats {
        if let Some(why) = p.strip_prefix('\0') {
            crate::global::msg::warn(why);
            return Ok(false);
        }
        if p.contains(':') {
            let mut d = dict::registry::dict_open(&p, OpenMode::ReadOnly, dict::flags::LOCK)
                .map_err(|e| AclError(e.0))?;
            match d.lookup(&key) {
                Ok(Some(_)) => return Ok(m),
                Ok(None) => {}
                Err(_) => {
                    let (t, n) = dict::split_spec(&p).unwrap_or(("", ""));
                    crate::global::msg::warn(&format!("{pname}: {t}:{n}: table lookup problem"));
                    return Ok(false);
                }
            }
        } else if p == key {
            return Ok(m);
        }
    }
    Ok(false)
}

/// check_user_acl_byuid: `None` when the user may proceed, else the name
/// that was refused (`unknown` for a UID without a password entry).
pub fn check_byuid(pname: &str, acl: &str, uid: u32) -> Result<Option<String>, AclError> {
    if acl.starts_with("static:") {
        return Ok(None);
    }
    let name = crate::sys::proc::getpwuid(uid)
        .map(|p| p.name)
        .unwrap_or_else(|| "unknown".into());
    Ok((!string_list_match(pname, acl, &name)?).then_some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        assert!(string_list_match("x", "root, bin", "ROOT").unwrap());
        assert!(!string_list_match("x", "!root, root", "root").unwrap());
        assert!(!string_list_match("x", "bin", "root").unwrap());
        assert!(string_list_match("x", "!!root", "root").unwrap());
        assert!(string_list_match("x", "!", "root").is_err());
        assert_eq!(check_byuid("x", "static:anyone", 0).unwrap(), None);
    }
}
