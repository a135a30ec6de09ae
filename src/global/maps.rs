//! Lists of lookup tables searched in order (Postfix's maps): the first
//! table with an answer wins; a table error stops the search and is
//! returned, so that the caller defers instead of using a later table's
//! answer.

use crate::global::dict::registry::dict_open;
use crate::global::dict::{Dict, DictError, OpenMode, flags};
use crate::global::msg;
use crate::util::stringops::{COMMA_SP, split_q};
use std::sync::atomic::{AtomicBool, Ordering};

static ALLOW_SURROGATE: AtomicBool = AtomicBool::new(false);

/// Daemons set this (Postfix's dict_allow_surrogate): a table that cannot
/// be opened is logged as an error and replaced by one whose lookups fail
/// with a temporary error. Commands leave it off: the open error is fatal.
pub fn set_allow_surrogate(on: bool) {
    ALLOW_SURROGATE.store(on, Ordering::Relaxed);
}

/// Postfix's dict_surrogate: stands in for a table that could not be opened.
pub struct Surrogate {
    type_name: String,
    name: String,
    flags: u32,
    reason: String,
}

impl Dict for Surrogate {
    fn type_name(&self) -> &str {
        &self.type_name
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
        msg::warn(&format!(
            "{}:{} is unavailable. {}",
            self.type_name, self.name, self.reason
        ));
        // Postfix leaves errno as it was: nothing prints it after a
        // surrogate's lookup (maps log "lookup error for ..." without %m).
        Err(DictError::retry())
    }
}

/// Open `spec`; when that fails, log the reason (an error, or fatal unless
/// surrogates are allowed) and return a [`Surrogate`].
pub fn open_or_surrogate(spec: &str, mode: OpenMode, dict_flags: u32) -> Box<dyn Dict> {
    match dict_open(spec, mode, dict_flags) {
        Ok(d) => d,
        Err(e) => surrogate(spec, dict_flags, &e.0),
    }
}

/// Log `reason` and make a surrogate table for `type:name`.
pub fn surrogate(spec: &str, dict_flags: u32, reason: &str) -> Box<dyn Dict> {
    if ALLOW_SURROGATE.load(Ordering::Relaxed) {
        msg::error(reason);
    } else {
        msg::fatal(reason);
    }
    let (t, n) = spec.split_once(':').unwrap_or((spec, ""));
    Box::new(Surrogate {
        type_name: t.to_string(),
        name: n.to_string(),
        flags: dict_flags | flags::PATTERN,
        reason: reason.to_string(),
    })
}

/// A search list of tables, named for messages by `title` (usually the
/// parameter name, e.g. `virtual_alias_maps`).
pub struct Maps {
    pub title: String,
    pub dicts: Vec<Box<dyn Dict>>,
}

impl Maps {
    /// Open every `type:name` in `map_names` (comma/space separated, `{}`
    /// grouping) read-only with `dict_flags`.
    pub fn create(title: &str, map_names: &str, dict_flags: u32) -> Maps {
        let dicts = split_q(map_names, COMMA_SP)
            .iter()
            .map(|spec| open_or_surrogate(spec, OpenMode::ReadOnly, dict_flags))
            .collect();
        Maps {
            title: title.to_string(),
            dicts,
        }
    }

    /// Build from tables that are already open (tests, callers with their
    /// own tables).
    pub fn from_dicts(title: &str, dicts: Vec<Box<dyn Dict>>) -> Maps {
        Maps {
            title: title.to_string(),
            dicts,
        }
    }

    /// Search the tables in order. `only` restricts the search to tables
    /// with one of these DICT_FLAG bits (e.g. `flags::FIXED` for partial
    /// address keys that must not reach regexp tables); 0 searches all.
    /// An empty key is never looked up. An empty result is a configuration
    /// error, as in Postfix.
    pub fn find(&mut self, name: &str, only: u32) -> Result<Option<String>, DictError> {
        if name.is_empty() {
            return Ok(None);
        }
        for d in &mut self.dicts {
            if only != 0 && d.flags() & only == 0 {
                continue;
            }
            match d.lookup(name) {
                Ok(Some(v)) if v.is_empty() => {
                    msg::warn(&format!(
                        "{} lookup of {name} returns an empty string result",
                        self.title
                    ));
                    msg::warn(&format!(
                        "{} should return NO RESULT in case of NOT FOUND",
                        self.title
                    ));
                    return Err(DictError::Config(String::new()));
                }
                Ok(Some(v)) => return Ok(Some(v)),
                Ok(None) => {}
                // Postfix's table code would have ended the program.
                Err(DictError::Fatal(text)) => msg::fatal(&text),
                Err(e) => {
                    msg::warn(&format!(
                        "{}:{} lookup error for \"{name}\"",
                        d.type_name(),
                        d.name()
                    ));
                    return Err(e);
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maps(names: &str) -> Maps {
        Maps::create("test_maps", names, flags::FOLD_FIX)
    }

    #[test]
    fn first_hit_wins_and_errors_stop_the_search() {
        let mut m = maps("inline:{a=1}, inline:{a=2, b=3}");
        assert_eq!(m.find("a", 0).unwrap().as_deref(), Some("1"));
        assert_eq!(m.find("B", 0).unwrap().as_deref(), Some("3"));
        assert_eq!(m.find("c", 0).unwrap(), None);
        assert_eq!(m.find("", 0).unwrap(), None);
        // An error in an earlier table hides a later table's answer.
        let mut m = maps("inline:{a=1} fail:x inline:{b=2}");
        assert_eq!(m.find("a", 0).unwrap().as_deref(), Some("1"));
        assert!(matches!(m.find("b", 0), Err(DictError::Retry(_))));
        // An empty result is a configuration error.
        let mut m = maps("inline:{a=}");
        assert!(matches!(m.find("a", 0), Err(DictError::Config(_))));
        // Restricting to fixed-string tables skips pattern tables.
        let mut m = maps("static:s inline:{a=1}");
        assert_eq!(m.find("a", flags::FIXED).unwrap().as_deref(), Some("s"));
        let mut m = maps("randmap:{r} inline:{a=1}");
        assert_eq!(m.find("a", flags::FIXED).unwrap().as_deref(), Some("1"));
        assert_eq!(m.find("a", 0).unwrap().as_deref(), Some("r"));
        // Braces group a table name that holds separators.
        let m = maps("inline:{{a = b c}, d=e}, static:{x y}");
        assert_eq!(m.dicts.len(), 2);
    }

    #[test]
    fn surrogate_fails_temporarily() {
        set_allow_surrogate(true);
        let mut m = maps("nosuchtype:x, inline:{a=1}");
        assert_eq!(m.dicts[0].type_name(), "nosuchtype");
        // Postfix logs the reason; nothing prints %m after the lookup.
        assert_eq!(m.find("a", 0), Err(DictError::Retry(String::new())));
    }
}
