//! Buffered standard output of one-char-per-byte text.

use crate::util::latin1;
use std::io::Write;
use std::sync::Mutex;

static BUF: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Append text to standard output.
pub fn print(text: &str) {
    let mut b = BUF.lock().unwrap_or_else(|e| e.into_inner());
    b.extend_from_slice(&latin1::encode(text));
    if b.len() > 1 << 16 {
        let _ = std::io::stdout().write_all(&b);
        b.clear();
    }
}

/// Write out everything buffered so far.
pub fn flush() {
    let mut b = BUF.lock().unwrap_or_else(|e| e.into_inner());
    let mut so = std::io::stdout();
    let _ = so.write_all(&b);
    let _ = so.flush();
    b.clear();
}
