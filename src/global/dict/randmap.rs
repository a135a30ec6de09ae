//! `randmap:{value, value, ...}`: every lookup returns one of the values at
//! random (Postfix's dict_random). Braces around a value are kept, as in
//! Postfix.

use super::helpers::{file_to_b64, require_read_only, rhs_is_file};
use super::{Dict, DictError, OpenError, OpenMode, flags};
use crate::util::stringops::{COMMA_SP, balpar, split_q};
use std::hash::{BuildHasher, Hasher};

struct Random {
    name: String,
    flags: u32,
    replies: Vec<String>,
}

fn random_index(n: usize) -> usize {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    (h.finish() % n as u64) as usize
}

impl Dict for Random {
    fn type_name(&self) -> &str {
        "randmap"
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
        Ok(Some(self.replies[random_index(self.replies.len())].clone()))
    }
}

/// Open `randmap:{...}`.
pub fn open(name: &str, mode: OpenMode, dict_flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    require_read_only("randmap", name, mode)?;
    let syntax = || {
        OpenError(format!(
            "bad syntax: \"randmap:{name}\"; need \"randmap:{{value...}}\""
        ))
    };
    let len = balpar(name);
    if len == 0 || len != name.len() || len == 2 {
        return Err(syntax());
    }
    let mut replies = Vec::new();
    for item in split_q(&name[1..len - 1], COMMA_SP) {
        if rhs_is_file(dict_flags) {
            replies.push(file_to_b64(&item).map_err(OpenError)?);
        } else {
            replies.push(item);
        }
    }
    if replies.is_empty() {
        return Err(syntax());
    }
    Ok(Box::new(Random {
        name: name.to_string(),
        flags: dict_flags | flags::PATTERN,
        replies,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_errors() {
        let mut d = open("{a, {b c}}", OpenMode::ReadOnly, 0).unwrap();
        for _ in 0..50 {
            let v = d.lookup("x").unwrap().unwrap();
            assert!(v == "a" || v == "{b c}", "{v}");
        }
        for bad in ["{}", "{,}", "a", "{a}x", "{a"] {
            assert_eq!(
                open(bad, OpenMode::ReadOnly, 0).err().unwrap().0,
                format!("bad syntax: \"randmap:{bad}\"; need \"randmap:{{value...}}\"")
            );
        }
    }
}
