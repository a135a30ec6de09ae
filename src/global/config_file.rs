//! Reading name=value configuration files (main.cf, database client files)
//! exactly as Postfix does: logical lines, `name = value`, the "overriding
//! earlier entry" warning, and re-reading a file that is still being written.

use crate::global::msg;
use crate::global::namevalues::NameValues;
use crate::global::readlline;

/// Read a name=value file into `dict`, with Postfix's warnings and fatal
/// errors; re-read while the file is "hot" (modified within the last second).
/// Returns false when the file cannot be opened.
pub fn load_file(path: &str, dict: &mut NameValues) -> bool {
    use std::time::{SystemTime, UNIX_EPOCH};
    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    };
    let mut before = now();
    loop {
        let data = match std::fs::read(crate::util::latin1::to_path(path)) {
            Ok(d) => d,
            Err(e) => {
                if e.kind() == std::io::ErrorKind::IsADirectory
                    || e.raw_os_error() == Some(libc::EISDIR)
                {
                    // Postfix opens a directory fine and then fails to read it.
                    msg::fatal(&format!("read {path}: Is a directory"));
                }
                set_errno(e.raw_os_error().unwrap_or(libc::EIO));
                return false;
            }
        };
        load_text(path, &crate::util::latin1::decode(&data), dict);
        let mtime = std::fs::metadata(crate::util::latin1::to_path(path))
            .map(|m| {
                use std::os::unix::fs::MetadataExt;
                m.mtime()
            })
            .unwrap_or(0);
        let after = now();
        if mtime < before - 1 || mtime > after {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        before = after;
    }
}

/// Load name=value text into `dict`, as Postfix's dict_load_fp.
pub fn load_text(path: &str, text: &str, dict: &mut NameValues) {
    for line in readlline::read_logical_lines(text, path) {
        match readlline::split_nameval(&line.text) {
            Err(e) => msg::fatal(&format!(
                "{path}, line {}: {e}: \"{}\"",
                line.first_line, line.text
            )),
            Ok((name, value)) => {
                if let Some(old) = dict.get(&name)
                    && old != value
                {
                    msg::warn(&format!(
                        "{path}, line {}: overriding earlier entry: {name}={old}",
                        line.first_line
                    ));
                }
                dict.set(&name, &value);
            }
        }
    }
}

thread_local! {
    static LAST_ERRNO: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

fn set_errno(e: i32) {
    LAST_ERRNO.with(|c| c.set(e));
}

/// The text of the last error recorded by [`load_file`], as strerror(3).
pub fn last_error_text() -> String {
    let e = LAST_ERRNO.with(|c| c.get());
    errno_text(&std::io::Error::from_raw_os_error(e))
}

/// An I/O error's text as C's strerror gives it ("No such file or directory").
pub fn errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => crate::sys::strerror(code),
        None => e.to_string(),
    }
}
