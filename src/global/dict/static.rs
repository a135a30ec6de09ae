//! `static:value` and `static:{value with spaces}`: every lookup returns the
//! value (Postfix's dict_static).

use super::helpers::{file_to_b64, rhs_is_file};
use super::{Dict, DictError, OpenError, OpenMode, flags};
use crate::util::stringops::extpar;

struct Static {
    name: String,
    flags: u32,
    value: String,
}

impl Dict for Static {
    fn type_name(&self) -> &str {
        "static"
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
    fn lookup(&mut self, _key: &str) -> Result<Option<String>, DictError> {
        Ok(Some(self.value.clone()))
    }
}

/// Open `static:name`. Any open mode is accepted, as in Postfix.
pub fn open(name: &str, _mode: OpenMode, dict_flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    let mut value = if name.starts_with('{') {
        match extpar(name) {
            (v, None) => v,
            (_, Some(err)) => {
                return Err(OpenError(format!("bad static:name syntax: {err}")));
            }
        }
    } else {
        name.to_string()
    };
    if rhs_is_file(dict_flags) {
        value = file_to_b64(&value).map_err(OpenError)?;
    }
    Ok(Box::new(Static {
        name: name.to_string(),
        flags: dict_flags | flags::FIXED,
        value,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str) -> Result<Option<String>, String> {
        let mut d = open(name, OpenMode::ReadOnly, flags::FOLD_FIX).map_err(|e| e.0)?;
        Ok(d.lookup("anything").unwrap())
    }

    #[test]
    fn values_and_errors() {
        assert_eq!(q("a b").unwrap().as_deref(), Some("a b"));
        assert_eq!(q("{ a b }").unwrap().as_deref(), Some("a b"));
        assert_eq!(q("{}").unwrap().as_deref(), Some(""));
        assert_eq!(q("Foo").unwrap().as_deref(), Some("Foo"));
        assert_eq!(
            q("{a}b").unwrap_err(),
            "bad static:name syntax: syntax error after '}' in \"{a}b\""
        );
        assert_eq!(
            q("{a").unwrap_err(),
            "bad static:name syntax: missing '}' in \"{a\""
        );
    }
}
