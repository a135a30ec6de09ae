//! `texthash:/path`: a postmap source file read into memory at open time,
//! no `.db` file (Postfix's dict_thash), with postmap's line syntax and
//! Postfix's warnings.

use super::helpers::{file_to_b64, require_read_only, rhs_is_file};
use super::inline::valid_utf8;
use super::internal::HtDict;
use super::{Dict, OpenError, OpenMode, flags, utf8};
use crate::global::msg;
use crate::global::readlline::read_logical_lines;
use crate::util::casefold;
use crate::util::latin1;
use crate::util::stringops::is_space;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source line with an odd number of `"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnbalancedQuote;

/// Split a texthash/postmap source line into key and value: the key ends at
/// the first whitespace outside `"..."` (a backslash escapes one character);
/// the value's surrounding blanks are removed. `Err` for an unbalanced
/// quote.
pub fn split_key_value(line: &str) -> Result<(String, String), UnbalancedQuote> {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut in_quotes = false;
    let mut end = line.len();
    let mut k = 0;
    while k < chars.len() {
        let c = chars[k].1;
        if c == '\\' {
            k += 1;
            if k >= chars.len() {
                break;
            }
        } else if is_space(c) {
            if !in_quotes {
                end = chars[k].0;
                break;
            }
        } else if c == '"' {
            in_quotes = !in_quotes;
        }
        k += 1;
    }
    if in_quotes {
        return Err(UnbalancedQuote);
    }
    let key = &line[..end];
    let rest = if end < line.len() {
        &line[end + 1..]
    } else {
        ""
    };
    let value = rest.trim_start_matches(is_space).trim_end_matches(is_space);
    Ok((key.to_string(), value.to_string()))
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Read the source text into an in-memory table. With SMTPUTF8 support on
/// (and requested), the table is behind the UTF-8 layer from the start, as
/// in Postfix: lines that are not UTF-8 are skipped, keys are stored and
/// compared (duplicates) with Unicode case folding.
pub(crate) fn load(path: &str, data: &str, dict_flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    let utf8 = utf8::needed(casefold::utf8_enable(), dict_flags);
    let mut dict: Box<dyn Dict> = Box::new(HtDict::new("texthash", path, dict_flags));
    if utf8 {
        dict = utf8::activate(dict);
    }
    for line in read_logical_lines(data, path) {
        let lineno = line.first_line;
        let text = &line.text;
        if utf8 && !valid_utf8(text) {
            msg::warn(&format!(
                "{path}, line {lineno}: non-UTF-8 input \"{text}\" -- ignoring this line"
            ));
            continue;
        }
        let Ok((key, mut value)) = split_key_value(text) else {
            msg::warn(&format!(
                "{path}, line {lineno}: unbalanced '\"' in '{text}' -- ignoring this line"
            ));
            continue;
        };
        if key.is_empty() || value.is_empty() {
            msg::warn(&format!(
                "{path}, line {lineno}: expected format: key whitespace value -- ignoring this line"
            ));
            continue;
        }
        if key.ends_with(':') {
            msg::warn(&format!(
                "{path}, line {lineno}: record is in \"key: value\" format; is this an alias file?"
            ));
        }
        if rhs_is_file(dict_flags) {
            match file_to_b64(&value) {
                Ok(b) => value = b,
                Err(e) => {
                    msg::warn(&format!("{path}, line {lineno}: {e}: skipping this entry"));
                    continue;
                }
            }
        }
        // An in-memory table's lookup and update do not fail.
        if matches!(dict.lookup(&key), Ok(Some(_))) {
            if dict_flags & flags::DUP_IGNORE != 0 {
            } else if dict_flags & flags::DUP_REPLACE != 0 {
                let _ = dict.update(&key, &value);
            } else if dict_flags & flags::DUP_WARN != 0 {
                msg::warn(&format!(
                    "{path}, line {lineno}: duplicate entry: \"{key}\""
                ));
            } else {
                return Err(OpenError(format!(
                    "{path}, line {lineno}: duplicate entry: \"{key}\""
                )));
            }
        } else {
            let _ = dict.update(&key, &value);
        }
    }
    Ok(dict)
}

/// Open `texthash:/path`. A file changed within the last second is read
/// again until it is quiet, as Postfix does.
pub fn open(path: &str, mode: OpenMode, dict_flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    require_read_only("texthash", path, mode)?;
    let fspath = latin1::to_path(path);
    let mut before = now_secs();
    loop {
        let data = std::fs::read(&fspath).map_err(|e| {
            OpenError(format!(
                "open database {path}: {}",
                crate::sys::strerror(e.raw_os_error().unwrap_or(0))
            ))
        })?;
        let dict = load(path, &latin1::decode(&data), dict_flags)?;
        let mtime = std::fs::metadata(&fspath)
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let after = now_secs();
        if mtime < before - 1 || mtime > after {
            return Ok(dict);
        }
        std::thread::sleep(Duration::from_millis(300));
        before = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split() {
        assert_eq!(
            split_key_value("key   value  here  "),
            Ok(("key".into(), "value  here".into()))
        );
        assert_eq!(
            split_key_value("\"a b\" c"),
            Ok(("\"a b\"".into(), "c".into()))
        );
        assert_eq!(split_key_value("a\\ b c"), Ok(("a\\ b".into(), "c".into())));
        assert_eq!(split_key_value("key"), Ok(("key".into(), "".into())));
        assert_eq!(split_key_value("\"a b c"), Err(UnbalancedQuote));
    }
}
