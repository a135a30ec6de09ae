//! `environ:name`: the process environment as a table (Postfix's dict_env).
//! With key folding on (postmap's default), `postmap -q HOME environ:x`
//! looks up `home`, as Postfix does.

use super::helpers::fold_if;
use super::{Dict, DictError, OpenError, OpenMode, Status, flags};
use crate::util::latin1;

struct Environ {
    name: String,
    flags: u32,
}

impl Dict for Environ {
    fn type_name(&self) -> &str {
        "environ"
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
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Ok(None);
        }
        Ok(std::env::var_os(latin1::to_path(&key).as_os_str()).map(|v| latin1::from_os(&v)))
    }
    fn update(&mut self, key: &str, value: &str) -> Result<Status, DictError> {
        let key = fold_if(self.flags, flags::FOLD_FIX, key);
        if let Err(e) = crate::sys::env::setenv(&key, value) {
            crate::global::msg::fatal(&format!("setenv: {e}"));
        }
        Ok(Status::Success)
    }
}

/// Open `environ:name`.
pub fn open(name: &str, _mode: OpenMode, dict_flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    Ok(Box::new(Environ {
        name: name.to_string(),
        flags: dict_flags | flags::FIXED,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_environment_with_folding() {
        // PATH is set in any test environment; with folding the key is
        // lower-cased and `path` is normally unset.
        let mut d = open("x", OpenMode::ReadOnly, 0).unwrap();
        assert!(d.lookup("PATH").unwrap().is_some());
        assert_eq!(d.lookup("").unwrap(), None);
        assert_eq!(d.lookup("A=B").unwrap(), None);
        let mut d = open("x", OpenMode::ReadOnly, flags::FOLD_FIX).unwrap();
        if std::env::var_os("path").is_none() {
            assert_eq!(d.lookup("PATH").unwrap(), None);
        }
    }
}
