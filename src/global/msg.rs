//! Diagnostics in Postfix's format: `program: warning: text` on stderr.
//!
//! Postfix's command-line programs print their messages to stderr prefixed with
//! argv[0] exactly as invoked; a fatal error exits with status 1.

use crate::util::latin1;
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

static PROGNAME: Mutex<String> = Mutex::new(String::new());
static VERBOSE: AtomicU32 = AtomicU32::new(0);

/// Set the name that prefixes every message (argv[0] as invoked).
pub fn init(progname: &str) {
    *PROGNAME.lock().unwrap_or_else(|e| e.into_inner()) = progname.to_string();
}

/// The message prefix.
pub fn progname() -> String {
    PROGNAME.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Current verbosity (the number of -v options).
pub fn verbose() -> u32 {
    VERBOSE.load(Ordering::Relaxed)
}

/// Raise verbosity by one.
pub fn more_verbose() {
    VERBOSE.fetch_add(1, Ordering::Relaxed);
}

fn emit(level: &str, text: &str) {
    crate::global::out::flush();
    let mut line = latin1::encode(&progname());
    line.extend_from_slice(b": ");
    line.extend_from_slice(level.as_bytes());
    line.extend_from_slice(&latin1::encode(text));
    line.push(b'\n');
    let _ = std::io::stderr().write_all(&line);
}

/// `program: warning: text`.
pub fn warn(text: &str) {
    emit("warning: ", text);
}

/// `program: text`, only when verbose.
pub fn info(text: &str) {
    emit("", text);
}

/// `program: fatal: text`, then exit status 1.
pub fn fatal(text: &str) -> ! {
    emit("fatal: ", text);
    crate::global::out::flush();
    std::process::exit(1);
}

/// `program: panic: text`, then exit status 2 (a software error).
pub fn panic(text: &str) -> ! {
    emit("panic: ", text);
    crate::global::out::flush();
    std::process::exit(2);
}
