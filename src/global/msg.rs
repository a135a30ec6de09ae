//! Diagnostics in Postfix's format: `program: warning: text` on stderr.
//!
//! Postfix's command-line programs print their messages to stderr prefixed with
//! argv[0] exactly as invoked; a fatal error exits with status 1.

use crate::util::latin1;
use std::cell::RefCell;
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

static PROGNAME: Mutex<String> = Mutex::new(String::new());
static VERBOSE: AtomicU32 = AtomicU32::new(0);
static STDERR_ON: AtomicBool = AtomicBool::new(true);
static FATAL_SLEEP: AtomicBool = AtomicBool::new(false);

/// A log writer that receives every message: its level (`info`, `warning`,
/// `error`, `fatal`, `panic`) and its text as given; the writer makes it
/// [`printable`] (see [`crate::global::maillog`]).
pub type Sink = fn(&str, &str);

static SINK: Mutex<Option<Sink>> = Mutex::new(None);

/// Send every message to `sink` as well (or stop doing so with `None`).
pub fn set_sink(sink: Option<Sink>) {
    *SINK.lock().unwrap_or_else(|e| e.into_inner()) = sink;
}

/// Print messages on stderr (the default) or not (daemons, and commands
/// whose stderr is not a terminal, as Postfix's msg_vstream_init).
pub fn set_stderr(on: bool) {
    STDERR_ON.store(on, Ordering::Relaxed);
}

/// Sleep one second before a fatal exit, as Postfix daemons do (so that a
/// crashing daemon does not spin).
pub fn set_fatal_sleep(on: bool) {
    FATAL_SLEEP.store(on, Ordering::Relaxed);
}

/// Keep UTF-8 sequences in messages (Postfix's util_utf8_enable, set from
/// smtputf8_enable once main.cf is read); otherwise they become `?`. This
/// is the one process-wide switch: it also selects UTF-8 case folding and
/// the UTF-8 layer on tables (see [`crate::util::casefold::set_utf8_enable`]).
pub fn set_utf8_enable(on: bool) {
    crate::util::casefold::set_utf8_enable(on);
}

/// Is SMTPUTF8 support (util_utf8_enable) on?
pub fn utf8_enable() -> bool {
    crate::util::casefold::utf8_enable()
}

/// Postfix's printable(): every byte that is not printable ASCII becomes
/// `?`, except (with `utf8`) the bytes of what looks like a UTF-8 sequence.
/// Postfix applies this to every message text before output.
pub fn printable(text: &str, utf8: bool) -> String {
    let mut out = String::with_capacity(text.len());
    printable_each(text, utf8, |c| out.push(c));
    out
}

/// [`printable`] appended to `out` as bytes, one per char (the message's
/// Latin-1 view), without an intermediate string.
pub fn printable_into(text: &str, utf8: bool, out: &mut Vec<u8>) {
    if all_printable_ascii(text.as_bytes()) {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    // Every char printable_each passes on is below U+00FF.
    printable_each(text, utf8, |c| out.push(c as u32 as u8));
}

/// Is every byte printable ASCII (0x20 to 0x7e)? Eight bytes at a time:
/// this runs over every log line.
fn all_printable_ascii(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let x = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
        // A byte below 0x20: the borrow of x - 0x20 reaches its top bit
        // while its own top bit is clear (exact as a test for "any").
        let low = x.wrapping_sub(0x20 * ONES) & !x & HIGH;
        // A byte of 0x7f or more: its top bit is set, or adding one sets
        // it (a carry out of 0xff only matters when that byte is caught).
        let high = (x | x.wrapping_add(ONES)) & HIGH;
        if low | high != 0 {
            return false;
        }
    }
    words.remainder().iter().all(|b| (0x20..0x7f).contains(b))
}

/// The chars of `text` as [`printable`] leaves them, one by one.
fn printable_each(text: &str, utf8: bool, mut put: impl FnMut(char)) {
    let cont = |c: &char| (128..192).contains(&(*c as u32));
    let mut it = text.chars().peekable();
    while let Some(c) = it.next() {
        let ch = c as u32;
        if (0x20..0x7f).contains(&ch) {
            put(c);
        } else if utf8 && (194..=254).contains(&ch) && it.peek().is_some_and(cont) {
            put(c);
            while let Some(n) = it.next_if(cont) {
                put(n);
            }
        } else {
            put('?');
        }
    }
}

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

/// Set the verbosity.
pub fn set_verbose(level: u32) {
    VERBOSE.store(level, Ordering::Relaxed);
}

/// Print `program: fatal: text` without exiting (what a forked child of
/// a Postfix program prints before it exits on its own).
pub fn emit_fatal_text(text: &str) {
    emit("fatal: ", text);
}

/// Raise verbosity by one.
pub fn more_verbose() {
    VERBOSE.fetch_add(1, Ordering::Relaxed);
}

fn emit(level: &str, text: &str) {
    if SANDBOX.with(|s| s.borrow().is_some()) {
        let line = format!("{level}{}", printable(text, utf8_enable()));
        SANDBOX.with(|s| {
            if let Some(v) = s.borrow_mut().as_mut() {
                v.push(line);
            }
        });
        return;
    }
    let stderr_on = STDERR_ON.load(Ordering::Relaxed);
    // Standard output comes out before a message on stderr; a process
    // that writes neither (a daemon) skips this for every log line.
    if stderr_on || crate::global::out::used() {
        crate::global::out::flush();
    }
    let sink = *SINK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(sink) = sink {
        let name = match level {
            "" => "info",
            l => l.trim_end_matches(": "),
        };
        sink(name, text);
    }
    if !stderr_on {
        return;
    }
    let mut line = latin1::encode(&progname());
    line.extend_from_slice(b": ");
    line.extend_from_slice(level.as_bytes());
    line.extend_from_slice(&latin1::encode(&printable(text, utf8_enable())));
    line.push(b'\n');
    let _ = std::io::stderr().write_all(&line);
}

/// `program: warning: text`.
pub fn warn(text: &str) {
    emit("warning: ", text);
}

/// `program: error: text` (Postfix's msg_error: a problem that does not
/// stop the program).
pub fn error(text: &str) {
    emit("error: ", text);
}

/// `program: text`, only when verbose.
pub fn info(text: &str) {
    emit("", text);
}

fn fatal_pause() {
    if FATAL_SLEEP.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// `program: fatal: text` without exiting, as Postfix's postlog -p fatal
/// (which pauses one second, like a fatal error).
pub fn emit_fatal_no_exit(text: &str) {
    emit("fatal: ", text);
    crate::global::out::flush();
    std::thread::sleep(std::time::Duration::from_secs(1));
}

/// `program: fatal: text`, then exit status 1.
pub fn fatal(text: &str) -> ! {
    emit("fatal: ", text);
    leave_sandbox(Exit::Fatal(text.to_string()));
    crate::global::out::flush();
    fatal_pause();
    std::process::exit(1);
}

/// `program: fatal: text`, then the given exit status (Postfix's
/// msg_fatal_status).
pub fn fatal_status(status: i32, text: &str) -> ! {
    emit("fatal: ", text);
    crate::global::out::flush();
    fatal_pause();
    std::process::exit(status);
}

/// `program: panic: text`, then exit status 2 (a software error).
pub fn panic(text: &str) -> ! {
    emit("panic: ", text);
    leave_sandbox(Exit::Panic(text.to_string()));
    crate::global::out::flush();
    std::process::exit(2);
}

thread_local! {
    /// Messages of the innermost [`sandbox`] running on this thread.
    static SANDBOX: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// How a [`sandbox`]ed call ended early: [`fatal`] or [`panic`] was called
/// (the text is the message, without `fatal: `).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Fatal(String),
    Panic(String),
}

/// Inside a sandbox, unwind to it instead of exiting. `resume_unwind` does
/// not run the panic hook, so a fuzzer or test harness does not see this
/// as a crash.
fn leave_sandbox(how: Exit) {
    if SANDBOX.with(|s| s.borrow().is_some()) {
        std::panic::resume_unwind(Box::new(how));
    }
}

/// Run `f` with this thread's messages collected instead of written to
/// stderr (each as `warning: text`, `fatal: text` ..., without the program
/// name), and with [`fatal`] and [`panic`] returning here as `Err` instead
/// of exiting the process. For fuzz targets and tests of code whose errors
/// are fatal, as Postfix's are. A real panic in `f` is passed on.
pub fn sandbox<T>(f: impl FnOnce() -> T) -> (Result<T, Exit>, Vec<String>) {
    let outer = SANDBOX.with(|s| s.borrow_mut().replace(Vec::new()));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let messages = SANDBOX.with(|s| std::mem::replace(&mut *s.borrow_mut(), outer));
    let messages = messages.unwrap_or_default();
    match result {
        Ok(v) => (Ok(v), messages),
        Err(payload) => match payload.downcast::<Exit>() {
            Ok(how) => (Err(*how), messages),
            Err(payload) => std::panic::resume_unwind(payload),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_like_postfix() {
        assert_eq!(printable("a\tb\x01c\u{7f}", false), "a?b?c?");
        // "é" as UTF-8 bytes, one char per byte.
        assert_eq!(printable("caf\u{c3}\u{a9}!", false), "caf??!");
        assert_eq!(printable("caf\u{c3}\u{a9}!", true), "caf\u{c3}\u{a9}!");
        assert_eq!(printable("\u{e9}t\u{e9}", true), "?t?");
        for (t, utf8) in [
            ("a\tb\x01c\u{7f}", false),
            ("caf\u{c3}\u{a9}!", false),
            ("caf\u{c3}\u{a9}!", true),
            ("\u{e9}t\u{e9}", true),
            ("\u{c3}\u{a9}\u{a9}\u{ff}\u{100}x\u{2603}", true),
            ("plain ascii", true),
        ] {
            let mut b = b"pre ".to_vec();
            printable_into(t, utf8, &mut b);
            let mut want = b"pre ".to_vec();
            want.extend(crate::util::latin1::encode(&printable(t, utf8)));
            assert_eq!(b, want, "{t:?}");
        }
    }

    #[test]
    fn printable_ascii_test_agrees_bytewise() {
        // Every byte value in every position of a word, and in the tail.
        for len in [7usize, 8, 9, 16, 23] {
            for pos in 0..len {
                for v in 0..=255u8 {
                    let mut b = vec![b'a'; len];
                    b[pos] = v;
                    let want = b.iter().all(|c| (0x20..0x7f).contains(c));
                    assert_eq!(all_printable_ascii(&b), want, "{len} {pos} {v}");
                }
            }
        }
        // Neighbours that borrow or carry into each other.
        for (a, c) in [(0x00u8, 0x20u8), (0xff, 0x20), (0x7e, 0x7f), (0x20, 0xff)] {
            let mut b = [b' '; 8];
            b[3] = a;
            b[4] = c;
            assert!(!all_printable_ascii(&b));
        }
        assert!(all_printable_ascii(b" ~~~~~~~ ~~~~ x"));
        assert!(all_printable_ascii(b""));
    }

    #[test]
    fn sandbox_collects_messages_and_stops_fatal() {
        let (r, m) = sandbox(|| {
            warn("one\x01");
            fatal("two");
        });
        assert_eq!(r, Err::<(), _>(Exit::Fatal("two".into())));
        assert_eq!(m, vec!["warning: one?".to_string(), "fatal: two".into()]);
        // Nested sandboxes keep their own messages; after them, none is active.
        let (r, m) = sandbox(|| {
            warn("outer");
            let inner = sandbox(|| panic("deep"));
            assert_eq!(inner.0, Err(Exit::Panic("deep".into())));
            assert_eq!(inner.1, vec!["panic: deep".to_string()]);
            7
        });
        assert_eq!((r, m), (Ok(7), vec!["warning: outer".to_string()]));
        assert!(SANDBOX.with(|s| s.borrow().is_none()));
    }

    #[test]
    fn sandbox_passes_real_panics_on() {
        let r = std::panic::catch_unwind(|| sandbox(|| -> () { std::panic::panic_any(5u8) }));
        assert_eq!(
            r.err().and_then(|p| p.downcast::<u8>().ok()).as_deref(),
            Some(&5)
        );
        assert!(SANDBOX.with(|s| s.borrow().is_none()));
    }
}
