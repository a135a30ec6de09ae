//! Buffered standard output of one-char-per-byte text.

use crate::util::latin1;
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static BUF: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Has [`print`] ever been called in this process? A daemon never prints:
/// its every log message then skips the flush (a lock and a look at the
/// standard output per message).
static USED: AtomicBool = AtomicBool::new(false);

/// Append text to standard output.
pub fn print(text: &str) {
    USED.store(true, Ordering::Relaxed);
    let mut b = BUF.lock().unwrap_or_else(|e| e.into_inner());
    b.extend_from_slice(&latin1::encode(text));
    if b.len() > 1 << 16 {
        let _ = std::io::stdout().write_all(&b);
        b.clear();
    }
}

/// Could [`print`] have left text that [`flush`] would write out?
pub fn used() -> bool {
    USED.load(Ordering::Relaxed)
}

/// Write out everything buffered so far.
pub fn flush() {
    let mut b = BUF.lock().unwrap_or_else(|e| e.into_inner());
    let mut so = std::io::stdout();
    let _ = so.write_all(&b);
    let _ = so.flush();
    b.clear();
}
