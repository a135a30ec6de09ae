//! `inline:{key=value, {key = value with spaces}, ...}`: a table written in
//! main.cf itself (Postfix's dict_inline), with Postfix's error texts.

use super::helpers::{file_to_b64, require_read_only, rhs_is_file};
use super::internal::HtDict;
use super::{Dict, OpenError, OpenMode, utf8};
use crate::util::casefold;
use crate::util::latin1;
use crate::util::stringops::{COMMA_SP, balpar, extpar, split_q, split_qnameval};

/// Is the one-char-per-byte text valid UTF-8 (or plain ASCII)?
pub fn valid_utf8(s: &str) -> bool {
    s.is_ascii() || std::str::from_utf8(&latin1::encode(s)).is_ok()
}

/// Open `inline:{...}`.
pub fn open(name: &str, mode: OpenMode, dict_flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    require_read_only("inline", name, mode)?;
    let utf8 = utf8::needed(casefold::utf8_enable(), dict_flags);
    if utf8 && !valid_utf8(name) {
        return Err(OpenError(format!(
            "bad UTF-8 syntax: \"inline:{name}\"; need \"inline:{{name=value...}}\""
        )));
    }
    let len = balpar(name);
    if len == 0 || len != name.len() || len == 2 {
        return Err(OpenError(format!(
            "bad syntax: \"inline:{name}\"; need \"inline:{{name=value...}}\""
        )));
    }
    // With SMTPUTF8 support on, the table is behind the UTF-8 layer from
    // the start (keys stored with Unicode case folding), as in Postfix.
    let mut dict: Box<dyn Dict> = Box::new(HtDict::new("inline", name, dict_flags));
    if utf8 {
        dict = utf8::activate(dict);
    }
    let mut count = 0;
    let mut err: Option<String> = None;
    for item in split_q(&name[1..len - 1], COMMA_SP) {
        let item = if item.starts_with('{') {
            match extpar(&item) {
                (inner, None) => inner,
                (_, Some(e)) => {
                    err = Some(e);
                    break;
                }
            }
        } else {
            item
        };
        let (key, mut value) = match split_qnameval(&item) {
            Ok(kv) => kv,
            Err(e) => {
                err = Some(e.to_string());
                break;
            }
        };
        if rhs_is_file(dict_flags) {
            match file_to_b64(&value) {
                Ok(b) => value = b,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        // An in-memory table's update does not fail.
        let _ = dict.update(&key, &value);
        count += 1;
    }
    if err.is_some() || count == 0 {
        let what = if rhs_is_file(dict_flags) {
            "filename"
        } else {
            "value"
        };
        return Err(OpenError(format!(
            "{}: \"inline:{name}\"; need \"inline:{{name={what}...}}\"",
            err.as_deref().unwrap_or("empty table")
        )));
    }
    Ok(dict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::global::dict::flags;

    fn q(name: &str, key: &str) -> Result<Option<String>, String> {
        let f = flags::FOLD_FIX | flags::UTF8_REQUEST;
        let mut d = open(name, OpenMode::ReadOnly, f).map_err(|e| e.0)?;
        Ok(d.lookup(key).unwrap())
    }

    #[test]
    fn lookups() {
        let t = "{a=b, {C = d e }, {\"x y\"=z},e=}";
        assert_eq!(q(t, "a").unwrap().as_deref(), Some("b"));
        assert_eq!(q(t, "c").unwrap().as_deref(), Some("d e"));
        assert_eq!(q(t, "C").unwrap().as_deref(), Some("d e"));
        assert_eq!(q(t, "\"x y\"").unwrap().as_deref(), Some("z"));
        assert_eq!(q(t, "x y").unwrap(), None);
        assert_eq!(q(t, "e").unwrap().as_deref(), Some(""));
        assert_eq!(q("{=b}", "").unwrap().as_deref(), Some("b"));
        // A later duplicate replaces an earlier one.
        assert_eq!(q("{a=1,a=2}", "a").unwrap().as_deref(), Some("2"));
    }

    #[test]
    fn errors_as_postfix() {
        // Texts recorded from Postfix 3.7.11's postmap -q.
        let cases = [
            (
                "{}",
                "bad syntax: \"inline:{}\"; need \"inline:{name=value...}\"",
            ),
            (
                "a=b",
                "bad syntax: \"inline:a=b\"; need \"inline:{name=value...}\"",
            ),
            (
                "{a=b}x",
                "bad syntax: \"inline:{a=b}x\"; need \"inline:{name=value...}\"",
            ),
            (
                "{{a=b}",
                "bad syntax: \"inline:{{a=b}\"; need \"inline:{name=value...}\"",
            ),
            (
                "{ }",
                "empty table: \"inline:{ }\"; need \"inline:{name=value...}\"",
            ),
            (
                "{a}",
                "missing '=' after attribute name: \"inline:{a}\"; need \"inline:{name=value...}\"",
            ),
            (
                "{{a=b}x}",
                "syntax error after '}' in \"{a=b}x\": \"inline:{{a=b}x}\"; need \"inline:{name=value...}\"",
            ),
            (
                "{\"a=b}",
                "unbalanced '\"': \"inline:{\"a=b}\"; need \"inline:{name=value...}\"",
            ),
        ];
        for (name, want) in cases {
            assert_eq!(q(name, "a").unwrap_err(), want, "{name}");
        }
        assert_eq!(
            open("{a=b}", OpenMode::ReadWrite, 0).err().unwrap().0,
            "inline:{a=b} map requires O_RDONLY access mode"
        );
        // Non-UTF-8 values depend on the process-wide SMTPUTF8 switch, which
        // other unit tests in this process change: tests/table_utf8.rs checks
        // both settings through postmap, one process per run.
    }
}
