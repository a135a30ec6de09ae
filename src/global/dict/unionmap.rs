//! `unionmap:{type:name, ...}` and the shared parsing of composite table
//! names: every table is queried with the same key and the results are
//! joined with commas (Postfix's dict_union).

use super::helpers::require_read_only;
use super::registry::dict_open;
use super::{Dict, DictError, OpenError, OpenMode, flags};
use crate::util::stringops::{COMMA_SP, balpar, split_q};

/// Open the member tables of `{type:name, ...}` for the composite type `ty`.
pub fn open_members(
    ty: &str,
    name: &str,
    mode: OpenMode,
    dict_flags: u32,
) -> Result<(Vec<Box<dyn Dict>>, u32), OpenError> {
    require_read_only(ty, name, mode)?;
    let syntax = || {
        OpenError(format!(
            "bad syntax: \"{ty}:{name}\"; need \"{ty}:{{type:name...}}\""
        ))
    };
    let len = balpar(name);
    if len == 0 || len != name.len() || len == 2 {
        return Err(syntax());
    }
    let specs = split_q(&name[1..len - 1], COMMA_SP);
    if specs.is_empty() {
        return Err(syntax());
    }
    let mut members = Vec::with_capacity(specs.len());
    let mut match_flags = 0;
    for spec in &specs {
        if !spec.contains(':') {
            return Err(syntax());
        }
        let d = dict_open(spec, mode, dict_flags)?;
        if members.is_empty() {
            match_flags = d.flags() & (flags::FIXED | flags::PATTERN);
        }
        members.push(d);
    }
    Ok((members, match_flags))
}

struct Union {
    name: String,
    flags: u32,
    members: Vec<Box<dyn Dict>>,
}

impl Dict for Union {
    fn type_name(&self) -> &str {
        "unionmap"
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
        let mut out = String::new();
        for m in &mut self.members {
            if let Some(v) = m.lookup(key)? {
                if !out.is_empty() {
                    out.push(',');
                }
                out.push_str(&v);
            }
        }
        Ok(if out.is_empty() { None } else { Some(out) })
    }
}

/// Open `unionmap:{...}`.
pub fn open(name: &str, mode: OpenMode, dict_flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    let (members, match_flags) = open_members("unionmap", name, mode, dict_flags)?;
    Ok(Box::new(Union {
        name: name.to_string(),
        flags: dict_flags | match_flags,
        members,
    }))
}
