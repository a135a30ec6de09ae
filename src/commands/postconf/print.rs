//! Output lines with normalised whitespace and optional folding (-f).

use super::mode::*;

/// Print `text` with runs of whitespace collapsed to one space; with
/// FOLD_LINE, break lines before 80 columns and indent continuations by 4.
pub fn print_line(mode: u32, text: &str) {
    let mut out = String::with_capacity(text.len() + 1);
    let mut line_len = 0usize;
    for word in text.split(SEPARATORS).filter(|w| !w.is_empty()) {
        let word_len = word.chars().count();
        if line_len > 0 {
            if mode & FOLD_LINE == 0 || line_len + word_len < LINE_LIMIT {
                out.push(' ');
                line_len += 1;
            } else {
                out.push('\n');
                out.push_str(INDENT_TEXT);
                line_len = INDENT_LEN;
            }
        }
        out.push_str(word);
        line_len += word_len;
    }
    out.push('\n');
    crate::global::out::print(&out);
}
