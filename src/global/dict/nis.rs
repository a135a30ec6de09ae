//! `nis:map`: NIS (YP) lookups. rostfix has no NIS client. Where the NIS
//! domain is not set (the normal case on Debian, and Debian's default
//! `alias_maps` names `nis:mail.aliases`), Postfix warns once and every
//! lookup is "not found"; we do the same. Where a domain is set, we behave as
//! Postfix does when ypbind cannot be reached: a warning per lookup and a
//! temporary error (listed in compat/DIVERGENCES.md).

use super::helpers::{fold_if, require_read_only};
use super::{Dict, DictError, OpenError, OpenMode, flags};
use crate::global::msg;
use std::sync::OnceLock;

static DOMAIN: OnceLock<Option<String>> = OnceLock::new();

fn domain() -> Option<String> {
    DOMAIN
        .get_or_init(|| {
            let d = crate::sys::pwd::nis_domain();
            if d.is_empty() || d.eq_ignore_ascii_case("(none)") {
                msg::warn("dict_nis_init: NIS domain name not set - NIS lookups disabled");
                None
            } else {
                Some(d)
            }
        })
        .clone()
}

struct Nis {
    name: String,
    flags: u32,
    domain: Option<String>,
}

impl Dict for Nis {
    fn type_name(&self) -> &str {
        "nis"
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
        let Some(domain) = &self.domain else {
            return Ok(None);
        };
        let key = fold_if(self.flags, flags::FOLD_FIX, key);
        msg::warn(&format!(
            "lookup {key}, NIS domain {domain}, map {}: can't bind to server on this domain",
            self.name
        ));
        Err(DictError::retry())
    }
}

/// Open `nis:map`.
pub fn open(name: &str, mode: OpenMode, dict_flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    require_read_only("nis", name, mode)?;
    let mut f = dict_flags | flags::FIXED;
    if f & (flags::TRY0NULL | flags::TRY1NULL) == 0 {
        f |= flags::TRY0NULL | flags::TRY1NULL;
    }
    Ok(Box::new(Nis {
        name: name.to_string(),
        flags: f,
        domain: domain(),
    }))
}
