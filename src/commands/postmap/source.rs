//! Reading table source files as postmap and postalias do: logical lines
//! (Postfix's readllines), postmap's `key whitespace value` split, and
//! postalias's `name: value` split through the RFC 822 tokenizer.

use crate::global::tok822::{self, Token};

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// What the logical-line reader produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A logical line (raw bytes, continuation lines joined without their
    /// newlines) and the number of its first physical line.
    Line(Vec<u8>, usize),
    /// Text that continues nothing: Postfix's warning text (without the
    /// program prefix); the text is skipped.
    Warning(String),
}

/// Logical lines of a source file: comment lines (first non-blank `#`) and
/// blank lines are skipped, also between continuation lines; a line starting
/// with whitespace continues the previous one.
pub struct LogicalLines<'a> {
    data: &'a [u8],
    pos: usize,
    lineno: usize,
    path: String,
}

impl<'a> LogicalLines<'a> {
    pub fn new(data: &'a [u8], path: &str) -> LogicalLines<'a> {
        LogicalLines {
            data,
            pos: 0,
            lineno: 0,
            path: path.to_string(),
        }
    }

    fn read_one(&mut self) -> Option<(Vec<u8>, usize)> {
        let mut buf: Vec<u8> = Vec::new();
        let mut first = 0;
        loop {
            if self.pos >= self.data.len() {
                break;
            }
            let start = buf.len();
            let rest = &self.data[self.pos..];
            let (line, had_nl) = match memchr(b'\n', rest) {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            self.pos += line.len() + usize::from(had_nl);
            if had_nl || !line.is_empty() {
                self.lineno += 1;
            }
            buf.extend_from_slice(line);
            let content = &buf[start..];
            match content.iter().position(|&b| !is_space(b)) {
                None => buf.truncate(start),
                Some(i) if content[i] == b'#' => buf.truncate(start),
                Some(_) => {
                    if start == 0 {
                        first = self.lineno;
                    }
                }
            }
            if self.pos >= self.data.len() {
                break;
            }
            if !buf.is_empty() {
                let next = self.data[self.pos];
                if next != b'#' && !is_space(next) {
                    break;
                }
            }
        }
        if buf.is_empty() {
            None
        } else {
            Some((buf, first))
        }
    }
}

fn memchr(b: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

impl Iterator for LogicalLines<'_> {
    type Item = Item;
    fn next(&mut self) -> Option<Item> {
        let (buf, first) = self.read_one()?;
        if is_space(buf[0]) {
            let shown: Vec<u8> = buf.iter().take(30).copied().collect();
            let more = if buf.len() > 30 { "..." } else { "" };
            // Text up to a NUL, as C prints it.
            let end = shown.iter().position(|&b| b == 0).unwrap_or(shown.len());
            return Some(Item::Warning(format!(
                "{}: logical line must not start with whitespace: \"{}{more}\"",
                self.path,
                crate::util::latin1::decode(&shown[..end])
            )));
        }
        Some(Item::Line(buf, first))
    }
}

/// Whether a logical line fails the UTF-8 check postmap makes when the
/// UTF-8 layer is active (non-ASCII before any NUL, and not valid UTF-8).
pub fn bad_utf8(line: &[u8]) -> bool {
    let upto = line.iter().position(|&b| b == 0).unwrap_or(line.len());
    !line[..upto].is_ascii() && std::str::from_utf8(line).is_err()
}

/// The text of a line as C sees it: up to the first NUL.
pub fn c_text(line: &[u8]) -> String {
    let end = line.iter().position(|&b| b == 0).unwrap_or(line.len());
    crate::util::latin1::decode(&line[..end])
}

/// Why a postmap source line was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostmapLine {
    /// `key`, `value`, and whether the key ends in `:` (an aliases file?).
    Entry(String, String, bool),
    /// An unbalanced `"`.
    Unbalanced,
    /// A missing key or value.
    BadFormat,
}

/// Split a postmap source line: the key ends at the first blank outside
/// quotes (a backslash protects the next character); the value is the rest
/// without surrounding blanks.
pub fn split_postmap(text: &str) -> PostmapLine {
    let c: Vec<char> = text.chars().collect();
    let mut in_quotes = false;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '\\' {
            i += 1;
            if i >= c.len() {
                break;
            }
        } else if ch.is_ascii() && is_space(ch as u8) {
            if !in_quotes {
                break;
            }
        } else if ch == '"' {
            in_quotes = !in_quotes;
        }
        i += 1;
    }
    if in_quotes {
        return PostmapLine::Unbalanced;
    }
    let key: String = c[..i.min(c.len())].iter().collect();
    let value: String = if i < c.len() {
        c[i + 1..].iter().collect()
    } else {
        String::new()
    };
    let sp = |ch: char| ch.is_ascii() && is_space(ch as u8);
    let value = value
        .trim_start_matches(sp)
        .trim_end_matches(sp)
        .to_string();
    if key.is_empty() || value.is_empty() {
        return PostmapLine::BadFormat;
    }
    let colon = key.ends_with(':');
    PostmapLine::Entry(key, value, colon)
}

/// Why an aliases line was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasLine {
    /// Nothing but blanks.
    Empty,
    /// The name (internal form) and the value (external form).
    Entry(String, String),
    /// "need name:value pair".
    NeedPair,
    /// "name must be local".
    NotLocal,
}

/// Split an aliases(5) line: tokenize, the name is what comes before the
/// first `:` (one address, no `,`, no `@` or `%`), the value what follows,
/// written back in quoted form.
pub fn split_alias(text: &str) -> AliasLine {
    let toks = tok822::scan(text);
    if toks.is_empty() {
        return AliasLine::Empty;
    }
    let Some(colon) = toks.iter().position(|t| *t == Token::Op(':')) else {
        return AliasLine::NeedPair;
    };
    if colon == 0 || colon + 1 >= toks.len() || toks[..colon].contains(&Token::Op(',')) {
        return AliasLine::NeedPair;
    }
    if toks[..colon]
        .iter()
        .any(|t| *t == Token::Op('@') || *t == Token::Op('%'))
    {
        return AliasLine::NotLocal;
    }
    AliasLine::Entry(
        tok822::internalize(&toks[..colon]),
        tok822::externalize(&toks[colon + 1..]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<Item> {
        LogicalLines::new(s.as_bytes(), "f").collect()
    }

    #[test]
    fn logical_lines_and_numbers() {
        assert_eq!(
            lines("# c\na b\n  c\n#x\n\td\n\n \ne f"),
            vec![
                Item::Line(b"a b  c\td".to_vec(), 2),
                Item::Line(b"e f".to_vec(), 8)
            ]
        );
        assert_eq!(
            lines("  lead x\nk v\n"),
            vec![
                Item::Warning(
                    "f: logical line must not start with whitespace: \"  lead x\"".into()
                ),
                Item::Line(b"k v".to_vec(), 2)
            ]
        );
        assert_eq!(lines("k v\r\n"), vec![Item::Line(b"k v\r".to_vec(), 1)]);
    }

    #[test]
    fn postmap_split() {
        assert_eq!(
            split_postmap("key  value with  blanks \r"),
            PostmapLine::Entry("key".into(), "value with  blanks".into(), false)
        );
        assert_eq!(
            split_postmap("\"a b\"\\ c d"),
            PostmapLine::Entry("\"a b\"\\ c".into(), "d".into(), false)
        );
        assert_eq!(split_postmap("\"a b"), PostmapLine::Unbalanced);
        assert_eq!(split_postmap("keyonly"), PostmapLine::BadFormat);
        assert_eq!(split_postmap("key\\"), PostmapLine::BadFormat);
        assert_eq!(
            split_postmap("root: x"),
            PostmapLine::Entry("root:".into(), "x".into(), true)
        );
    }

    #[test]
    fn alias_split() {
        assert_eq!(
            split_alias("\"Foo Bar\": x, \"|cmd a\", /f, :include:/l"),
            AliasLine::Entry("Foo Bar".into(), "x, \"|cmd a\", /f, :include:/l".into())
        );
        assert_eq!(split_alias("a@b: c"), AliasLine::NotLocal);
        assert_eq!(split_alias("a, b: c"), AliasLine::NeedPair);
        assert_eq!(split_alias("a:"), AliasLine::NeedPair);
        assert_eq!(split_alias(": a"), AliasLine::NeedPair);
        assert_eq!(split_alias("noval"), AliasLine::NeedPair);
    }
}
