//! UTF-8 checks and Unicode case folding in front of any table, as Postfix
//! puts them when SMTPUTF8 support is on (`smtputf8_enable = yes`) and the
//! caller asks for it (DICT_FLAG_UTF8_REQUEST): keys must be valid UTF-8 and
//! are folded here (Unicode full case folding) instead of by the table;
//! values must be valid UTF-8.
//!
//! Lookup with a malformed key: a warning, "not found". Lookup returning a
//! malformed value: a warning and a configuration error. Update with a
//! malformed key or value: a warning and the entry is skipped. Delete with a
//! malformed key: a warning, skipped. Walks are passed through unchanged.

use super::{Dict, DictError, Seq, Status, flags};
use crate::global::msg;
use crate::util::casefold;

const UTF8_ERR: &str = "malformed UTF-8 or invalid codepoint";

/// A table with the UTF-8 layer in front of it.
pub struct Utf8Dict {
    inner: Box<dyn Dict>,
}

/// Whether Postfix would add the UTF-8 layer: SMTPUTF8 on, requested, and
/// not already active.
pub fn needed(smtputf8_enable: bool, dict_flags: u32) -> bool {
    smtputf8_enable && dict_flags & flags::UTF8_REQUEST != 0
}

/// Put the UTF-8 layer in front of `dict` (unless it already has one).
pub fn activate(mut dict: Box<dyn Dict>) -> Box<dyn Dict> {
    let f = dict.flags();
    if f & flags::UTF8_ACTIVE != 0 {
        return dict;
    }
    dict.set_flags(f | flags::UTF8_ACTIVE);
    Box::new(Utf8Dict { inner: dict })
}

fn valid(text: &str) -> bool {
    casefold::all_ascii(text) || casefold::valid_utf8(&crate::util::latin1::encode(text))
}

impl Utf8Dict {
    /// Validate and fold a key per the table's FOLD flags; `None` if invalid.
    fn check_fold(&self, key: &str) -> Option<String> {
        if !valid(key) {
            return None;
        }
        let f = self.inner.flags();
        let fold = f & flags::FOLD_ANY;
        let wanted = if f & flags::FIXED != 0 {
            flags::FOLD_FIX
        } else {
            flags::FOLD_MUL
        };
        if fold & wanted != 0 {
            Some(casefold::casefold_utf8(key))
        } else {
            Some(key.to_string())
        }
    }

    /// Run `op` on the inner table with its folding turned off.
    fn unfolded<T>(&mut self, op: impl FnOnce(&mut dyn Dict) -> T) -> T {
        let saved = self.inner.flags() & flags::FOLD_ANY;
        let f = self.inner.flags();
        self.inner.set_flags(f & !flags::FOLD_ANY);
        let r = op(self.inner.as_mut());
        let f = self.inner.flags();
        self.inner.set_flags(f | saved);
        r
    }

    fn warn_key(&self, key: &str) {
        msg::warn(&format!(
            "{}:{}: non-UTF-8 key \"{key}\": {UTF8_ERR}",
            self.inner.type_name(),
            self.inner.name()
        ));
    }

    fn warn_value(&self, key: &str, value: &str) {
        msg::warn(&format!(
            "{}:{}: key \"{key}\": non-UTF-8 value \"{value}\": {UTF8_ERR}",
            self.inner.type_name(),
            self.inner.name()
        ));
    }
}

impl Dict for Utf8Dict {
    fn type_name(&self) -> &str {
        self.inner.type_name()
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn flags(&self) -> u32 {
        self.inner.flags() | flags::UTF8_ACTIVE
    }
    fn set_flags(&mut self, f: u32) {
        self.inner.set_flags(f | flags::UTF8_ACTIVE);
    }
    fn lookup(&mut self, key: &str) -> Result<Option<String>, DictError> {
        let Some(folded) = self.check_fold(key) else {
            self.warn_key(key);
            return Ok(None);
        };
        let value = self.unfolded(|d| d.lookup(&folded))?;
        match value {
            Some(v) if !valid(&v) => {
                self.warn_value(key, &v);
                Err(DictError::Config(String::new()))
            }
            other => Ok(other),
        }
    }
    fn update(&mut self, key: &str, value: &str) -> Result<Status, DictError> {
        let Some(folded) = self.check_fold(key) else {
            self.warn_key(key);
            return Ok(Status::Success);
        };
        if !valid(value) {
            self.warn_value(key, value);
            return Ok(Status::Success);
        }
        self.unfolded(|d| d.update(&folded, value))
    }
    fn delete(&mut self, key: &str) -> Result<Status, DictError> {
        let Some(folded) = self.check_fold(key) else {
            self.warn_key(key);
            return Ok(Status::Success);
        };
        self.unfolded(|d| d.delete(&folded))
    }
    fn sequence(&mut self, how: Seq) -> Result<Option<(String, String)>, DictError> {
        self.inner.sequence(how)
    }
    fn close(self: Box<Self>) -> Result<(), DictError> {
        self.inner.close()
    }
}
