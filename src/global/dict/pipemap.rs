//! `pipemap:{type:name, ...}`: the result of each table is the key for the
//! next; the last result is the answer (Postfix's dict_pipe).

use super::unionmap::open_members;
use super::{Dict, DictError, OpenError, OpenMode};

struct Pipe {
    name: String,
    flags: u32,
    members: Vec<Box<dyn Dict>>,
}

impl Dict for Pipe {
    fn type_name(&self) -> &str {
        "pipemap"
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
        let mut q = key.to_string();
        for m in &mut self.members {
            match m.lookup(&q)? {
                Some(v) => q = v,
                None => return Ok(None),
            }
        }
        Ok(Some(q))
    }
}

/// Open `pipemap:{...}`.
pub fn open(name: &str, mode: OpenMode, dict_flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    let (members, match_flags) = open_members("pipemap", name, mode, dict_flags)?;
    Ok(Box::new(Pipe {
        name: name.to_string(),
        flags: dict_flags | match_flags,
        members,
    }))
}
