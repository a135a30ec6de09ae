//! `unix:passwd.byname` and `unix:group.byname`: the system user and group
//! databases as tables (Postfix's dict_unix). Values are formatted as
//! passwd(5) and group(5) lines.

use super::helpers::{fold_if, require_read_only};
use super::{Dict, DictError, OpenError, OpenMode, flags};
use crate::global::msg;
use crate::sys::pwd;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone, Copy)]
enum Which {
    Passwd,
    Group,
}

struct Unix {
    name: String,
    flags: u32,
    which: Which,
}

// Postfix checks once per process, after the first miss, whether the
// database is reachable at all (by looking up uid/gid 0).
static PW_CHECKED: AtomicBool = AtomicBool::new(false);
static GR_CHECKED: AtomicBool = AtomicBool::new(false);

/// The `passwd.byname` value for a user.
pub fn passwd_line(p: &pwd::Passwd) -> String {
    format!(
        "{}:{}:{}:{}:{}:{}:{}",
        p.name, p.passwd, p.uid, p.gid, p.gecos, p.dir, p.shell
    )
}

/// The `group.byname` value for a group.
pub fn group_line(g: &pwd::Group) -> String {
    format!("{}:{}:{}:{}", g.name, g.passwd, g.gid, g.members.join(","))
}

impl Unix {
    fn miss(&self, checked: &AtomicBool) -> Result<Option<String>, DictError> {
        if checked.swap(true, Ordering::Relaxed) {
            return Ok(None);
        }
        let (probe, what) = match self.which {
            Which::Passwd => (pwd::uid_exists(0), "password"),
            Which::Group => (pwd::gid_exists(0), "group"),
        };
        match probe {
            Ok(true) => Ok(None),
            Ok(false) | Err(_) => {
                let errno = match probe {
                    Err(code) => crate::sys::strerror(code),
                    _ => String::new(),
                };
                let text = if errno.is_empty() {
                    super::fail::APPLICATION_ERROR
                } else {
                    &errno
                };
                msg::warn(&format!("cannot access UNIX {what} database: {text}"));
                Err(DictError::Retry(errno))
            }
        }
    }
}

impl Dict for Unix {
    fn type_name(&self) -> &str {
        "unix"
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn flags(&self) -> u32 {
        self.flags
    }
    fn set_flags(&mut self, f: u32) {
        self.flags = f;
    }
    fn lookup(&mut self, key: &str) -> Result<Option<String>, DictError> {
        let key = fold_if(self.flags, flags::FOLD_FIX, key);
        match self.which {
            Which::Passwd => match pwd::getpwnam(&key) {
                Ok(Some(p)) => {
                    PW_CHECKED.store(true, Ordering::Relaxed);
                    Ok(Some(passwd_line(&p)))
                }
                _ => self.miss(&PW_CHECKED),
            },
            Which::Group => match pwd::getgrnam(&key) {
                Ok(Some(g)) => {
                    GR_CHECKED.store(true, Ordering::Relaxed);
                    Ok(Some(group_line(&g)))
                }
                _ => self.miss(&GR_CHECKED),
            },
        }
    }
}

/// Open `unix:passwd.byname` or `unix:group.byname`.
pub fn open(name: &str, mode: OpenMode, dict_flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    require_read_only("unix", name, mode)?;
    let which = match name {
        "passwd.byname" => Which::Passwd,
        "group.byname" => Which::Group,
        _ => return Err(OpenError(format!("unknown table: unix:{name}"))),
    };
    Ok(Box::new(Unix {
        name: name.to_string(),
        flags: dict_flags | flags::FIXED,
        which,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_misses() {
        let mut d = open("passwd.byname", OpenMode::ReadOnly, flags::FOLD_FIX).unwrap();
        let v = d.lookup("ROOT").unwrap().unwrap();
        assert!(v.starts_with("root:") && v.contains(":0:0:"), "{v}");
        assert_eq!(d.lookup("no-such-user-xyzzy").unwrap(), None);
        let mut d = open("passwd.byname", OpenMode::ReadOnly, 0).unwrap();
        assert_eq!(d.lookup("ROOT").unwrap(), None);
        let mut g = open("group.byname", OpenMode::ReadOnly, 0).unwrap();
        assert!(g.lookup("root").unwrap().unwrap().starts_with("root:"));
        assert_eq!(
            open("foo", OpenMode::ReadOnly, 0).err().unwrap().0,
            "unknown table: unix:foo"
        );
        assert_eq!(
            open("passwd.byname", OpenMode::ReadWrite, 0)
                .err()
                .unwrap()
                .0,
            "unix:passwd.byname map requires O_RDONLY access mode"
        );
    }

    #[test]
    fn formats() {
        let g = pwd::Group {
            name: "g".into(),
            passwd: "x".into(),
            gid: 7,
            members: vec!["a".into(), "b".into()],
        };
        assert_eq!(group_line(&g), "g:x:7:a,b");
    }
}
