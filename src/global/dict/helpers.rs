//! Pieces shared by the table types in this directory: key folding, the
//! read-only check, and `-F` (right-hand side is a file) support.

use super::{OpenError, OpenMode, flags};
use crate::util::{latin1, stringops};

/// Lower-case `key` (ASCII, as Postfix's lowercase()) when `flags` has `fold`.
pub fn fold_if(dict_flags: u32, fold: u32, key: &str) -> String {
    if dict_flags & fold != 0 {
        key.to_ascii_lowercase()
    } else {
        key.to_string()
    }
}

/// Postfix's refusal of a read-write open for a read-only table type.
pub fn require_read_only(ty: &str, name: &str, mode: OpenMode) -> Result<(), OpenError> {
    if mode == OpenMode::ReadOnly {
        Ok(())
    } else {
        Err(OpenError(format!(
            "{ty}:{name} map requires O_RDONLY access mode"
        )))
    }
}

/// Is the `-F` flag (values are file names) in effect?
pub fn rhs_is_file(dict_flags: u32) -> bool {
    dict_flags & flags::SRC_RHS_IS_FILE != 0
}

/// The BASE64 of the contents of the files named in `pathnames` (comma or
/// space separated, joined with a newline), as Postfix's dict_file_to_b64;
/// `Err` is Postfix's text.
pub fn file_to_b64(pathnames: &str) -> Result<String, String> {
    let names: Vec<&str> = pathnames
        .split(|c| stringops::COMMA_SP.contains(c))
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() {
        return Err(format!("empty pathname list: >>{pathnames}<<'"));
    }
    let mut buf = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match std::fs::read(latin1::to_path(name)) {
            Ok(data) => buf.extend_from_slice(&data),
            Err(e) => {
                let code = e.raw_os_error().unwrap_or(0);
                return Err(format!("open {name}: {}", crate::sys::strerror(code)));
            }
        }
        if i + 1 < names.len() {
            buf.push(b'\n');
        }
    }
    Ok(stringops::base64_encode(&buf))
}
