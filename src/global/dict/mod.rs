//! Lookup tables ("dictionaries"), as Postfix's dict layer: one interface for
//! every table type (`hash:`, `btree:`, `lmdb:`, `cdb:`, `texthash:`,
//! `inline:`, `static:`, `regexp:`, `pcre:`, `cidr:` ...).
//!
//! A lookup has three outcomes, as in Postfix: found, not found, and error
//! (temporary, or a configuration error). A temporary error makes the caller
//! defer; it never bounces.
//!
//! Each table type lives in its own module and registers an opener in
//! [`registry`]. Key folding and the NUL-terminator conventions are flags
//! (Postfix's DICT_FLAG_*), interpreted by each implementation.

pub mod cdb;
pub mod cidr;
pub mod connect;
pub mod db;
pub mod dict_db;
pub mod environ;
pub mod fail;
pub mod helpers;
pub mod inline;
pub mod internal;
pub mod lmdb;
pub mod memcache;
pub mod nis;
pub mod pattern_util;
pub mod pcre;
pub mod pipemap;
pub mod proxy;
pub mod randmap;
pub mod regexp;
pub mod registry;
pub mod socketmap;
pub mod r#static;
pub mod tcp;
pub mod texthash;
pub mod unionmap;
pub mod unix;
pub mod utf8;

use std::fmt;

/// Postfix's DICT_FLAG_* bits (same values as Postfix 3.7's dict.h).
pub mod flags {
    pub const NONE: u32 = 0;
    /// Warn about duplicate keys when building.
    pub const DUP_WARN: u32 = 1 << 0;
    /// Ignore duplicate keys silently.
    pub const DUP_IGNORE: u32 = 1 << 1;
    /// Try keys/values without a trailing NUL.
    pub const TRY0NULL: u32 = 1 << 2;
    /// Try keys/values with a trailing NUL.
    pub const TRY1NULL: u32 = 1 << 3;
    /// A fixed-string table (hash, btree, cdb, lmdb, texthash ...).
    pub const FIXED: u32 = 1 << 4;
    /// A pattern table (regexp, pcre, cidr).
    pub const PATTERN: u32 = 1 << 5;
    /// Lock the file around each access.
    pub const LOCK: u32 = 1 << 6;
    /// Replace duplicate keys.
    pub const DUP_REPLACE: u32 = 1 << 7;
    /// fsync after updates.
    pub const SYNC_UPDATE: u32 = 1 << 8;
    /// Log every access.
    pub const DEBUG: u32 = 1 << 9;
    /// Forbid `$1` substitution in results.
    pub const NO_REGSUB: u32 = 1 << 11;
    /// Forbid proxy: access.
    pub const NO_PROXY: u32 = 1 << 12;
    /// Forbid unauthenticated data (DNS, network tables).
    pub const NO_UNAUTH: u32 = 1 << 13;
    /// Lower-case the key, for a fixed-string table.
    pub const FOLD_FIX: u32 = 1 << 14;
    /// Lower-case the key, for a pattern table.
    pub const FOLD_MUL: u32 = 1 << 15;
    pub const FOLD_ANY: u32 = FOLD_FIX | FOLD_MUL;
    /// Hold a lock while open, unless multi-writer safe.
    pub const OPEN_LOCK: u32 = 1 << 16;
    /// Optimise for bulk updates (postmap building a table).
    pub const BULK_UPDATE: u32 = 1 << 17;
    /// The table is safe for concurrent writers.
    pub const MULTI_WRITER: u32 = 1 << 18;
    /// Activate UTF-8 handling if possible.
    pub const UTF8_REQUEST: u32 = 1 << 19;
    pub const UTF8_ACTIVE: u32 = 1 << 20;
    /// The source file's right-hand sides are file names (postmap -F).
    pub const SRC_RHS_IS_FILE: u32 = 1 << 21;
}

/// Open modes, as open(2) flags that matter to tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read-only (O_RDONLY).
    ReadOnly,
    /// Read-write, create if missing (O_RDWR | O_CREAT).
    ReadWrite,
    /// Create anew, empty (O_RDWR | O_CREAT | O_TRUNC): postmap's build.
    Create,
}

/// Why a lookup, update, delete or walk did not complete.
///
/// The rule for the text each variant carries follows what Postfix prints:
///
/// - A table that fails an operation in Postfix sets `dict->error` and
///   leaves `errno` behind; the caller prints its own message ending in
///   `%m`: postmap's `table TYPE:NAME: query error: %m` (`delete error`,
///   `sequence error`, `write error`). [`DictError::Retry`] and
///   [`DictError::Config`] carry exactly that `%m` text, nothing more:
///   `Connection refused`, `Operation now in progress`, or the empty string
///   for errno 0 (printed as `Application error`, see
///   [`crate::global::mkmap::errno_text`]). Whatever the table says about
///   the failure itself it logs as its own warnings (e.g. `connect to
///   HOST:PORT: Connection refused`) before returning the error.
/// - A table whose Postfix code ends the program itself (`msg_fatal` inside
///   dict_db.c, dict_cdb.c, dict_lmdb.c, and the generic "operation is not
///   supported" methods) returns [`DictError::Fatal`] with the complete
///   message, e.g. `error reading /etc/postfix/virtual.db: Input/output
///   error` or `table regexp:/x: update operation is not supported`.
///   Commands print it as `program: fatal: TEXT`; a daemon, which Postfix
///   would also stop here, does the same (master restarts it).
///
/// postmap prints a Config error of a lookup without `%m` (`table
/// TYPE:NAME: query error`), as Postfix does for DICT_ERR_CONFIG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DictError {
    /// Try again later (DICT_ERR_RETRY): the caller defers. The text is the
    /// `%m` Postfix would print after the failure ("" = errno 0).
    Retry(String),
    /// The table is misconfigured (DICT_ERR_CONFIG). The text is the `%m`
    /// Postfix would print after the failure ("" = errno 0).
    Config(String),
    /// Postfix's own table code would end the program with this complete
    /// message (its `msg_fatal`).
    Fatal(String),
}

impl DictError {
    /// A temporary error with the `%m` text for errno 0.
    pub fn retry() -> DictError {
        DictError::Retry(String::new())
    }
}

impl fmt::Display for DictError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DictError::Retry(s) | DictError::Config(s) | DictError::Fatal(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for DictError {}

/// Why a table could not be opened: the message is Postfix's text (the
/// caller makes it fatal or a warning as Postfix does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenError(pub String);

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OpenError {}

/// The result of an update or delete that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Done (DICT_STAT_SUCCESS).
    Success,
    /// Not done: key not found (delete), or duplicate not replaced (update).
    Fail,
}

/// Which element to return from a walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seq {
    First,
    Next,
}

/// One open table. Text is one-char-per-byte (see [`crate::util::latin1`]).
pub trait Dict {
    /// The table type (`hash`).
    fn type_name(&self) -> &str;
    /// The table name (`/etc/postfix/virtual`).
    fn name(&self) -> &str;
    /// Current DICT_FLAG_* bits (an implementation may change TRY0NULL /
    /// TRY1NULL after the first successful lookup, as Postfix does).
    fn flags(&self) -> u32;
    /// Replace the requestor flags (FOLD_*, DUP_*, TRY*NULL ...).
    fn set_flags(&mut self, flags: u32);
    /// Look up a key. The key is folded per FOLD_FIX/FOLD_MUL by the table.
    fn lookup(&mut self, key: &str) -> Result<Option<String>, DictError>;
    /// Add or replace a key (duplicates per DUP_* flags).
    fn update(&mut self, key: &str, value: &str) -> Result<Status, DictError> {
        let _ = (key, value);
        Err(DictError::Fatal(format!(
            "table {}:{}: update operation is not supported",
            self.type_name(),
            self.name()
        )))
    }
    /// Delete a key.
    fn delete(&mut self, key: &str) -> Result<Status, DictError> {
        let _ = key;
        Err(DictError::Fatal(format!(
            "table {}:{}: delete operation is not supported",
            self.type_name(),
            self.name()
        )))
    }
    /// Walk the table: `First` restarts, `Next` continues; `None` at the end.
    fn sequence(&mut self, how: Seq) -> Result<Option<(String, String)>, DictError> {
        let _ = how;
        Err(DictError::Fatal(format!(
            "table {}:{}: sequence operation is not supported",
            self.type_name(),
            self.name()
        )))
    }
    /// Flush and close (rename a table built aside into place, release locks).
    fn close(self: Box<Self>) -> Result<(), DictError> {
        Ok(())
    }
}

/// Lower-case a key as Postfix's fixed-string tables do (ASCII folding; with
/// UTF-8 enabled Postfix folds Unicode too, handled where UTF8 flags are set).
pub fn fold_key(key: &str) -> String {
    key.to_ascii_lowercase()
}

/// Split `type:name` into its parts; Postfix's error when there is no `:`.
pub fn split_spec(spec: &str) -> Result<(&str, &str), OpenError> {
    match spec.find(':') {
        Some(i) => Ok((&spec[..i], &spec[i + 1..])),
        None => Err(OpenError(format!(
            "open dictionary: expecting \"type:name\" form instead of \"{spec}\""
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec() {
        assert_eq!(
            split_spec("hash:/etc/aliases").unwrap(),
            ("hash", "/etc/aliases")
        );
        assert_eq!(split_spec("inline:{a=b}").unwrap(), ("inline", "{a=b}"));
        assert!(split_spec("noColon").is_err());
    }
}
