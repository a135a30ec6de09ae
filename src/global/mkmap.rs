//! Opening tables for the table commands (postmap, postalias), as Postfix's
//! dict_open3() and mkmap_open(): the `type:name` checks, the fatal texts when
//! a table cannot be opened, the table types that can be built in bulk, and
//! the UTF-8 layer when SMTPUTF8 is on.
//!
//! The table types themselves come from [`crate::global::dict::registry`];
//! [`Tables`] holds the opener so that tests can substitute their own.

use crate::global::dict::{self, Dict, DictError, OpenError, OpenMode, flags, registry};
use crate::global::msg;

/// Opens a table of one type (name after `type:`, mode, DICT_FLAG_* bits).
pub type Opener = fn(&str, OpenMode, u32) -> Result<Box<dyn Dict>, OpenError>;

/// Table types that Postfix 3.7 (with the Debian plugins) can build in bulk.
pub const BULK_TYPES: &[&str] = &["btree", "cdb", "fail", "hash", "lmdb"];

/// Where tables come from, and whether SMTPUTF8 (the UTF-8 layer) is on.
#[derive(Clone)]
pub struct Tables {
    /// Opens `type:name`.
    pub open: Opener,
    /// The supported type names (postconf -m).
    pub type_names: fn() -> Vec<&'static str>,
    /// util_utf8_enable: smtputf8_enable from main.cf.
    pub utf8_enable: bool,
}

impl Tables {
    /// The registered table types.
    pub fn registry(utf8_enable: bool) -> Tables {
        Tables {
            open: registry::dict_open,
            type_names: registry::type_names,
            utf8_enable,
        }
    }

    /// Open a table for queries, deletes or walks; every failure is fatal
    /// with Postfix's text (as dict_open3 without surrogates).
    pub fn open_dict(
        &self,
        ty: &str,
        name: &str,
        mode: OpenMode,
        dict_flags: u32,
    ) -> Box<dyn Dict> {
        if ty.is_empty() || name.is_empty() {
            msg::fatal(&format!(
                "open dictionary: expecting \"type:name\" form instead of \"{ty}:{name}\""
            ));
        }
        let d = match (self.open)(&format!("{ty}:{name}"), mode, dict_flags) {
            Ok(d) => d,
            Err(e) => msg::fatal(&e.0),
        };
        if msg::verbose() > 0 {
            msg::info(&format!("dict_open: {ty}:{name}"));
        }
        self.maybe_utf8(d, dict_flags)
    }

    fn maybe_utf8(&self, d: Box<dyn Dict>, dict_flags: u32) -> Box<dyn Dict> {
        if d.flags() & flags::UTF8_ACTIVE == 0 && dict::utf8::needed(self.utf8_enable, dict_flags) {
            dict::utf8::activate(d)
        } else {
            d
        }
    }

    /// Open a table to build it (`create`: anew, else incremental), as
    /// mkmap_open: only bulk-capable types; fatal errors otherwise.
    pub fn mkmap_open(&self, ty: &str, path: &str, create: bool, dict_flags: u32) -> Box<dyn Dict> {
        let known = (self.type_names)();
        if !BULK_TYPES.contains(&ty) || !known.contains(&ty) {
            if known.contains(&ty) {
                msg::fatal(&format!(
                    "unsupported dictionary type: {ty} does not support bulk-mode creation."
                ));
            }
            msg::fatal(&format!(
                "unsupported dictionary type: {ty}. Is the postfix-{ty} package installed?"
            ));
        }
        if msg::verbose() > 0 {
            msg::info(&format!("open {ty} {path}"));
        }
        let mode = if create {
            OpenMode::Create
        } else {
            OpenMode::ReadWrite
        };
        let mut d = match (self.open)(&format!("{ty}:{path}"), mode, dict_flags) {
            Ok(d) => d,
            Err(e) => msg::fatal(&e.0),
        };
        let f = d.flags();
        d.set_flags(f | flags::DUP_WARN);
        self.maybe_utf8(d, dict_flags)
    }
}

/// The text Postfix prints for `%m` after a failed table operation (see
/// [`DictError`]): the error's text, "Application error" for errno 0.
pub fn errno_text(e: &DictError) -> String {
    match e {
        DictError::Retry(s) | DictError::Config(s) if !s.is_empty() => s.clone(),
        _ => "Application error".to_string(),
    }
}

/// End the program after a failed table operation, as Postfix would.
///
/// A [`DictError::Fatal`] is Postfix's table code's own fatal message: it is
/// printed as it is. Otherwise the caller's message is printed, `table
/// T:N: WHAT` followed by the `%m` text, or without it for a configuration
/// error when `config_plain` (postmap's query messages).
pub fn table_fatal(d: &dyn Dict, e: &DictError, op: &str, what: &str, config_plain: bool) -> ! {
    let _ = op;
    let (t, n) = (d.type_name(), d.name());
    match e {
        DictError::Fatal(s) => msg::fatal(s),
        DictError::Config(_) if config_plain => msg::fatal(&format!("table {t}:{n}: {what}")),
        _ => msg::fatal(&format!("table {t}:{n}: {what}: {}", errno_text(e))),
    }
}

/// If an error says that the table does not implement `op` ("update",
/// "delete", "sequence"), Postfix's fatal text for it
/// (`table type:name: op operation is not supported`, as every table says).
pub fn unsupported_text(d: &dyn Dict, e: &DictError, op: &str) -> Option<String> {
    let _ = d;
    let DictError::Fatal(s) = e else {
        return None;
    };
    if s.starts_with("table ") && s.ends_with(&format!(": {op} operation is not supported")) {
        return Some(s.clone());
    }
    None
}

/// Make an unsupported operation fatal, as Postfix's default methods do.
pub fn fatal_if_unsupported(d: &dyn Dict, e: &DictError, op: &str) {
    if let Some(t) = unsupported_text(d, e, op) {
        msg::fatal(&t);
    }
}
