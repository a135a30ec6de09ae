//! Logical lines of Postfix configuration files (main.cf, master.cf, tables).
//!
//! A logical line starts with a non-blank character; following lines that start
//! with whitespace continue it. The newline is dropped and the continuation's
//! leading whitespace is kept. Empty lines, all-blank lines and lines whose first
//! non-blank character is `#` are skipped, also in the middle of a logical line.

use crate::global::msg;

/// One logical line and where it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalLine {
    pub text: String,
    /// Physical line number of the logical line's first line.
    pub first_line: usize,
    /// Physical line number of its last line.
    pub last_line: usize,
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// Split text into logical lines. Text that continues nothing (a first line
/// starting with whitespace) is dropped with Postfix's warning, naming `path`.
pub fn read_logical_lines(data: &str, path: &str) -> Vec<LogicalLine> {
    read_logical_lines_with(data, path, &mut |w| msg::warn(&w))
}

/// [`read_logical_lines`], with the warnings given to `warn` (the text after
/// `warning: `) instead of stderr.
pub fn read_logical_lines_with(
    data: &str,
    path: &str,
    warn: &mut dyn FnMut(String),
) -> Vec<LogicalLine> {
    let mut out = Vec::new();
    let mut cur: Option<LogicalLine> = None;
    let mut lineno = 0usize;
    let mut rest = data;
    while !rest.is_empty() {
        let (line, next) = match rest.find('\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        rest = next;
        lineno += 1;
        let trimmed = line.trim_start_matches(is_space);
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let starts_blank = line.starts_with(is_space);
        match (&mut cur, starts_blank) {
            (Some(c), true) => {
                c.text.push_str(line);
                c.last_line = lineno;
            }
            (_, _) => {
                if let Some(c) = cur.take() {
                    out.push(c);
                }
                cur = Some(LogicalLine {
                    text: line.to_string(),
                    first_line: lineno,
                    last_line: lineno,
                });
            }
        }
    }
    if let Some(c) = cur.take() {
        out.push(c);
    }
    // Postfix's reader returns text up to the first NUL (a C string); its
    // warning shows up to 30 bytes of that and "..." when the whole logical
    // line (NULs and all) is longer.
    out.retain_mut(|l| {
        let full_len = l.text.chars().count();
        if let Some(i) = l.text.find('\0') {
            l.text.truncate(i);
        }
        if l.text.starts_with(is_space) {
            let shown: String = l.text.chars().take(30).collect();
            let more = if full_len > 30 { "..." } else { "" };
            warn(format!(
                "{path}: logical line must not start with whitespace: \"{shown}{more}\""
            ));
            false
        } else {
            true
        }
    });
    out
}

/// Split `name = value`: blanks around the name, the `=` and the value are
/// dropped. The errors are Postfix's texts.
pub fn split_nameval(s: &str) -> Result<(String, String), &'static str> {
    let s = s.trim_start_matches(is_space);
    if s.is_empty() || s.starts_with('=') {
        return Err("missing attribute name");
    }
    let name_end = s.find(|c: char| is_space(c) || c == '=').unwrap_or(s.len());
    let name = &s[..name_end];
    let after = s[name_end..].trim_start_matches(is_space);
    let Some(value) = after.strip_prefix('=') else {
        return Err("missing '=' after attribute name");
    };
    let value = value
        .trim_start_matches(is_space)
        .trim_end_matches(is_space);
    Ok((name.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_keeps_whitespace_and_skips_comments() {
        let l = read_logical_lines("a = b\n  c\n# x\n\td\n\n \ne=f # g\n", "t");
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].text, "a = b  c\td");
        assert_eq!((l[0].first_line, l[0].last_line), (1, 4));
        assert_eq!(l[1].text, "e=f # g");
        assert_eq!(l[1].first_line, 7);
    }

    #[test]
    fn nameval() {
        assert_eq!(
            split_nameval("  a =  b c  "),
            Ok(("a".to_string(), "b c".to_string()))
        );
        assert_eq!(split_nameval("a=").unwrap().1, "");
        assert_eq!(split_nameval("=x"), Err("missing attribute name"));
        assert_eq!(
            split_nameval("a b = c"),
            Err("missing '=' after attribute name")
        );
        assert_eq!(
            split_nameval("{% if x %}"),
            Err("missing '=' after attribute name")
        );
    }
}
