//! What the pattern tables (`regexp:`, `pcre:`, `cidr:`) share: reading the
//! table source (a file, or the inline `{ {rule}, {rule} }` form), C-library
//! character classes and number parsing as Postfix uses them, `$number`
//! replacement text (Postfix's mac_parse rules), and `postmap -F` file
//! contents.
//!
//! Text is handled as bytes here (the tables are C strings in Postfix) and
//! converted to one-char-per-byte strings at the edges.

use super::OpenError;
use crate::global::msg;
use crate::global::readlline::{LogicalLine, read_logical_lines_with};
use crate::util::latin1;
use std::io::Read;

/// Where warnings go: stderr through [`msg::warn`], or a list (tests).
#[derive(Debug, Default)]
pub struct Diag {
    collected: Option<Vec<String>>,
}

impl Diag {
    /// Warnings go to stderr as `program: warning: text`.
    pub fn stderr() -> Diag {
        Diag { collected: None }
    }

    /// Warnings are kept; see [`Diag::take`].
    pub fn collect() -> Diag {
        Diag {
            collected: Some(Vec::new()),
        }
    }

    /// Report one warning (the text after `warning: `).
    pub fn warn(&mut self, text: String) {
        match &mut self.collected {
            Some(v) => v.push(text),
            None => msg::warn(&text),
        }
    }

    /// The warnings collected so far (empty when they went to stderr).
    pub fn take(&mut self) -> Vec<String> {
        match &mut self.collected {
            Some(v) => std::mem::take(v),
            None => Vec::new(),
        }
    }
}

/// C's isspace() in the C locale, as Postfix's ISSPACE.
pub fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// C's isalnum() in the C locale, as Postfix's ISALNUM.
pub fn is_alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

/// Postfix's alldig(): non-empty and all ASCII digits.
pub fn all_digits(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(u8::is_ascii_digit)
}

/// glibc's atoi(): `(int) strtol(s, 0, 10)`, i.e. leading blanks, an
/// optional sign, digits; saturating at the `long` range, then truncated to
/// `int` as the cast does.
pub fn c_atoi(s: &[u8]) -> i32 {
    let mut i = 0;
    while i < s.len() && is_space(s[i]) {
        i += 1;
    }
    let mut neg = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        neg = s[i] == b'-';
        i += 1;
    }
    let mut v: i128 = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        v = (v * 10 + i128::from(s[i] - b'0')).min(i128::from(i64::MAX) + 1);
        i += 1;
    }
    if neg {
        v = -v;
    }
    let long = v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    long as i32
}

/// Skip C whitespace from `p`.
pub fn skip_space(s: &[u8], mut p: usize) -> usize {
    while p < s.len() && is_space(s[p]) {
        p += 1;
    }
    p
}

/// Postfix's trimblanks(): the length without trailing whitespace.
pub fn trimmed_len(s: &[u8]) -> usize {
    let mut n = s.len();
    while n > 0 && is_space(s[n - 1]) {
        n -= 1;
    }
    n
}

/// `strncasecmp(p, kw, len) == 0 && !ISALNUM(p[len])`: the keyword (IF,
/// ENDIF) is present; returns the position after it.
pub fn keyword(s: &[u8], kw: &str) -> Option<usize> {
    let k = kw.as_bytes();
    if s.len() >= k.len()
        && s[..k.len()].eq_ignore_ascii_case(k)
        && !s.get(k.len()).is_some_and(|&c| is_alnum(c))
    {
        Some(k.len())
    } else {
        None
    }
}

/// Bytes to a one-char-per-byte string.
pub fn text(b: &[u8]) -> String {
    latin1::decode(b)
}

/// The table source as logical lines (each a C string: cut at its first
/// NUL), plus a read error after a successful open (Postfix's cidr table
/// makes that fatal; the others ignore it).
pub struct Source {
    pub lines: Vec<LogicalLine>,
    pub read_error: Option<String>,
}

/// Strip one balanced `{...}` pair as Postfix's extpar(); `strip` also trims
/// whitespace inside. Returns the payload, or Postfix's error text.
fn extpar(s: &[u8], strip: bool) -> Result<Vec<u8>, String> {
    if s.first() != Some(&b'{') {
        return Err(format!("no '{{' at start of text in \"{}\"", text(s)));
    }
    let mut level = 0usize;
    let mut close = None;
    for (i, &c) in s.iter().enumerate().skip(1) {
        if c == b'}' {
            if level == 0 {
                close = Some(i);
                break;
            }
            level -= 1;
        } else if c == b'{' {
            level += 1;
        }
    }
    let Some(close) = close else {
        return Err(format!("missing '}}' in \"{}\"", text(s)));
    };
    if close + 1 != s.len() {
        return Err(format!("syntax error after '}}' in \"{}\"", text(s)));
    }
    let mut inner = &s[1..close];
    if strip {
        inner = &inner[..trimmed_len(inner)];
        let lead = skip_space(inner, 0);
        inner = &inner[lead..];
    }
    Ok(inner.to_vec())
}

/// Postfix's mystrtokq(): the next token separated by `, \t\r\n` outside
/// braces; advances `pos`.
fn next_token<'a>(s: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let is_sep = |c: u8| matches!(c, b',' | b' ' | b'\t' | b'\r' | b'\n');
    while *pos < s.len() && is_sep(s[*pos]) {
        *pos += 1;
    }
    if *pos >= s.len() {
        return None;
    }
    let start = *pos;
    let mut level = 0usize;
    while *pos < s.len() {
        let c = s[*pos];
        if c == b'{' {
            level += 1;
        } else if level > 0 && c == b'}' {
            level -= 1;
        } else if level == 0 && is_sep(c) {
            let tok = &s[start..*pos];
            *pos += 1;
            return Some(tok);
        }
        *pos += 1;
    }
    Some(&s[start..])
}

/// The inline form `{ {rule}, {rule} ... }` as the text of a table file.
fn inline_to_text(mapname: &[u8]) -> Result<Vec<u8>, String> {
    let body = extpar(mapname, false)?;
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(tok) = next_token(&body, &mut pos) {
        let rule = extpar(tok, true)?;
        out.extend_from_slice(&rule);
        out.push(b'\n');
    }
    Ok(out)
}

/// Open and read a pattern table source as Postfix's dict_stream_open()
/// does: a file, or the rules inside an inline `{...}` name.
pub fn read_source(dict_type: &str, mapname: &str, diag: &mut Diag) -> Result<Source, OpenError> {
    let name = latin1::encode(mapname);
    // A C string: Postfix sees the name up to its first NUL.
    let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
    let (data, path, read_error) = if name.first() == Some(&b'{') {
        let data = inline_to_text(name).map_err(|e| OpenError(format!("{dict_type} map: {e}")))?;
        (data, "unknown_stream".to_string(), None)
    } else {
        let path = latin1::to_path(&text(name));
        let mut f = std::fs::File::open(&path).map_err(|e| {
            OpenError(format!(
                "open {}: {}",
                text(name),
                crate::sys::strerror(e.raw_os_error().unwrap_or(0))
            ))
        })?;
        let mut data = Vec::new();
        let err = f
            .read_to_end(&mut data)
            .err()
            .map(|e| crate::sys::strerror(e.raw_os_error().unwrap_or(0)));
        (data, text(name), err)
    };
    let mut src = source_from_bytes(&data, &path, diag);
    src.read_error = read_error;
    Ok(src)
}

/// Table source text already in memory, as [`read_source`] splits a file:
/// `path` names it in warnings.
pub fn source_from_bytes(data: &[u8], path: &str, diag: &mut Diag) -> Source {
    Source {
        lines: read_logical_lines_with(&latin1::decode(data), path, &mut |w| diag.warn(w)),
        read_error: None,
    }
}

/// Open a read-only pattern table source: Postfix's access-mode check,
/// then [`read_source`].
pub fn open_source(
    dict_type: &str,
    mapname: &str,
    mode: super::OpenMode,
    diag: &mut Diag,
) -> Result<Source, OpenError> {
    require_read_only(dict_type, mapname, mode)?;
    read_source(dict_type, mapname, diag)
}

/// Report a warning about one table line, as the pattern tables word it:
/// `TYPE map NAME, line N: what`.
pub fn warn_line(diag: &mut Diag, dict_type: &str, mapname: &str, lineno: usize, what: &str) {
    diag.warn(format!("{dict_type} map {mapname}, line {lineno}: {what}"));
}

/// Skip blanks and `!` characters from `*p`, as the pattern tables do before
/// a pattern; each `!` inverts the match. Returns whether the pattern must
/// match (`true`) or not match (`false`).
pub fn negations(line: &[u8], p: &mut usize) -> bool {
    let mut matched = true;
    while *p < line.len() {
        if line[*p] == b'!' {
            matched = !matched;
        } else if !is_space(line[*p]) {
            break;
        }
        *p += 1;
    }
    matched
}

/// How a parsed rule takes part in IF/ENDIF nesting.
pub enum Block {
    If,
    Endif,
    Other,
}

/// A rule of a table with IF/ENDIF blocks.
pub trait BlockRule {
    /// Is this an IF, an ENDIF, or another rule?
    fn block(&self) -> Block;
    /// For an IF: record the index of its matching ENDIF in the rule list.
    fn set_endif(&mut self, at: usize);
}

/// The rules of a pattern table, built by [`build_rules`].
pub struct RuleList<R> {
    pub rules: Vec<R>,
    /// Line numbers of the IF rules that have no matching ENDIF, in the order
    /// Postfix reports them (innermost first).
    pub unclosed: Vec<usize>,
}

impl<R> RuleList<R> {
    /// Postfix's warning for each IF without ENDIF, in order.
    pub fn warn_unclosed(&self, diag: &mut Diag, dict_type: &str, mapname: &str) {
        for &lineno in &self.unclosed {
            warn_line(diag, dict_type, mapname, lineno, "IF has no matching ENDIF");
        }
    }
}

/// The rule list from the table's logical lines: `parse(lineno, line,
/// nesting)` gets each line's bytes (not trimmed), its first line number and
/// the current IF nesting depth, and returns the rule or `None` to skip the
/// line (having given its own warnings). Each IF is linked to its ENDIF.
pub fn build_rules<R: BlockRule>(
    lines: &[LogicalLine],
    mut parse: impl FnMut(usize, &[u8], usize) -> Option<R>,
) -> RuleList<R> {
    let mut rules: Vec<R> = Vec::new();
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for line in lines {
        let bytes = latin1::encode(&line.text);
        let Some(rule) = parse(line.first_line, &bytes, stack.len()) else {
            continue;
        };
        match rule.block() {
            Block::If => stack.push((rules.len(), line.first_line)),
            Block::Endif => {
                let here = rules.len();
                if let Some((i, _)) = stack.pop() {
                    rules[i].set_endif(here);
                }
            }
            Block::Other => {}
        }
        rules.push(rule);
    }
    let unclosed = stack.iter().rev().map(|&(_, lineno)| lineno).collect();
    RuleList { rules, unclosed }
}

/// Base64 as Postfix's base64_encode() (standard alphabet, `=` padding).
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for ch in data.chunks(3) {
        let b = [ch[0], *ch.get(1).unwrap_or(&0), *ch.get(2).unwrap_or(&0)];
        out.push(A[(b[0] >> 2) as usize] as char);
        out.push(A[(((b[0] & 3) << 4) | (b[1] >> 4)) as usize] as char);
        out.push(if ch.len() > 1 {
            A[(((b[1] & 15) << 2) | (b[2] >> 6)) as usize] as char
        } else {
            '='
        });
        out.push(if ch.len() > 2 {
            A[(b[2] & 63) as usize] as char
        } else {
            '='
        });
    }
    out
}

/// `postmap -F`: the named files' contents (comma/space separated list,
/// joined with newlines), base64-encoded; or Postfix's error text.
pub fn file_to_b64(pathnames: &[u8]) -> Result<Vec<u8>, String> {
    let names: Vec<&[u8]> = pathnames
        .split(|&c| matches!(c, b',' | b' ' | b'\t' | b'\r' | b'\n'))
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() {
        return Err(format!("empty pathname list: >>{}<<'", text(pathnames)));
    }
    let mut buf = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let path = latin1::to_path(&text(n));
        let errno = |e: std::io::Error| crate::sys::strerror(e.raw_os_error().unwrap_or(0));
        let mut f =
            std::fs::File::open(&path).map_err(|e| format!("open {}: {}", text(n), errno(e)))?;
        f.read_to_end(&mut buf)
            .map_err(|e| format!("read {}: {}", text(n), errno(e)))?;
        if i + 1 < names.len() {
            buf.push(b'\n');
        }
    }
    Ok(base64(&buf).into_bytes())
}

/// mac_parse() result bit: a syntax error was reported.
pub const PARSE_ERROR: u32 = 1;
/// mac_parse() result bit: a `$number` had no value.
pub const PARSE_UNDEF: u32 = 2;

/// One piece of replacement text.
pub enum Piece<'a> {
    /// Literal text, `$$` already reduced to `$`.
    Literal(&'a [u8]),
    /// The name inside `$name`, `${name}` or `$(name)`.
    Var(&'a [u8]),
}

/// Split `value` into literal text and `$` references, as Postfix's
/// mac_parse() (including its two warnings), calling `action` for each.
pub fn mac_parse(
    value: &[u8],
    diag: &mut Diag,
    action: &mut dyn FnMut(Piece<'_>, &mut Diag) -> u32,
) -> u32 {
    let mut buf: Vec<u8> = Vec::new();
    let mut status = 0;
    let mut i = 0;
    while i < value.len() {
        if value[i] != b'$' {
            buf.push(value[i]);
            i += 1;
        } else if value.get(i + 1) == Some(&b'$') {
            buf.push(b'$');
            i += 2;
        } else {
            if !buf.is_empty() {
                status |= action(Piece::Literal(&buf), diag);
                buf.clear();
            }
            i += 1;
            if let Some(&open) = value.get(i).filter(|&&c| c == b'{' || c == b'(') {
                let close = if open == b'{' { b'}' } else { b')' };
                let mut level = 1;
                i += 1;
                let start = i;
                let mut ep = i;
                while level > 0 {
                    let Some(&c) = value.get(ep) else {
                        diag.warn(format!("truncated macro reference: \"{}\"", text(value)));
                        status |= PARSE_ERROR;
                        break;
                    };
                    if c == open {
                        level += 1;
                    }
                    if c == close {
                        level -= 1;
                    }
                    ep += 1;
                }
                if status & PARSE_ERROR != 0 {
                    break;
                }
                buf.extend_from_slice(&value[start..ep - 1]);
                i = ep;
            } else {
                let start = i;
                while i < value.len() && (is_alnum(value[i]) || value[i] == b'_') {
                    i += 1;
                }
                buf.extend_from_slice(&value[start..i]);
            }
            if buf.is_empty() {
                status |= PARSE_ERROR;
                diag.warn(format!("empty macro name: \"{}\"", text(value)));
                break;
            }
            status |= action(Piece::Var(&buf), diag);
            buf.clear();
        }
    }
    if !buf.is_empty() && status & PARSE_ERROR == 0 {
        status |= action(Piece::Literal(&buf), diag);
    }
    status
}

/// Result text of a match rule, checked when the table was read.
#[derive(Debug, Clone)]
pub struct Replacement {
    /// With `max_sub` 0: the final result (`$$` reduced). Otherwise the raw
    /// text, expanded at lookup time.
    pub text: Vec<u8>,
    /// The largest `$number` in the text (0: none).
    pub max_sub: usize,
}

/// `$number` as Postfix reads it: `(size_t) atoi(text)`.
fn sub_index(s: &[u8]) -> usize {
    c_atoi(s) as i64 as usize
}

/// Check the `$number` references of replacement text as Postfix's
/// regexp/pcre prescan does. `what` is "regexp" or "pcre"; `range_word` is
/// how that table spells "out-of-range". On error the warnings are given and
/// the caller reports "bad replacement syntax" (`None`).
pub fn prescan(
    what: &str,
    mapname: &str,
    lineno: usize,
    range_word: &str,
    value: &[u8],
    diag: &mut Diag,
) -> Option<Replacement> {
    let mut max_sub = 0usize;
    let mut literal: Option<Vec<u8>> = None;
    let status = mac_parse(value, diag, &mut |piece, diag| match piece {
        Piece::Var(name) => {
            literal = None;
            if !all_digits(name) {
                diag.warn(format!(
                    "{what} map {mapname}, line {lineno}: non-numeric replacement index \"{}\"",
                    text(name)
                ));
                return PARSE_ERROR;
            }
            let n = sub_index(name);
            if n < 1 {
                diag.warn(format!(
                    "{what} map {mapname}, line {lineno}: {range_word} replacement index \"{}\"",
                    text(name)
                ));
                return PARSE_ERROR;
            }
            max_sub = max_sub.max(n);
            0
        }
        Piece::Literal(t) => {
            if max_sub == 0 {
                literal = Some(t.to_vec());
            }
            0
        }
    });
    if status & PARSE_ERROR != 0 {
        return None;
    }
    Some(match literal {
        Some(t) if max_sub == 0 => Replacement { text: t, max_sub },
        _ => Replacement {
            text: value.to_vec(),
            max_sub,
        },
    })
}

/// Expand `$number` references in a rule's result: `group(n)` gives the
/// text of subexpression n, or `None` when it is unset or empty.
pub fn expand(repl: &Replacement, group: &mut dyn FnMut(usize) -> Option<Vec<u8>>) -> Vec<u8> {
    if repl.max_sub == 0 {
        return repl.text.clone();
    }
    let mut out = Vec::new();
    let mut sink = Diag::collect();
    mac_parse(&repl.text, &mut sink, &mut |piece, _| match piece {
        Piece::Literal(t) => {
            out.extend_from_slice(t);
            0
        }
        Piece::Var(name) => match group(sub_index(name)) {
            Some(t) => {
                out.extend_from_slice(&t);
                0
            }
            None => PARSE_UNDEF,
        },
    });
    out
}

/// Read-only tables: Postfix's error for other open modes.
pub fn require_read_only(
    dict_type: &str,
    mapname: &str,
    mode: super::OpenMode,
) -> Result<(), OpenError> {
    if mode == super::OpenMode::ReadOnly {
        Ok(())
    } else {
        Err(OpenError(format!(
            "{dict_type}:{mapname} map requires O_RDONLY access mode"
        )))
    }
}

/// Postfix's error for an operation a table type does not have.
pub fn unsupported(dict_type: &str, mapname: &str, op: &str) -> super::DictError {
    super::DictError::Fatal(format!(
        "table {dict_type}:{mapname}: {op} operation is not supported"
    ))
}

/// A lookup key as Postfix sees it: a C string (up to the first NUL),
/// lower-cased (ASCII) when the table was opened with FOLD_MUL.
pub fn lookup_key(key: &str, flags: u32) -> Vec<u8> {
    let mut k = latin1::encode(key);
    if let Some(i) = k.iter().position(|&b| b == 0) {
        k.truncate(i);
    }
    if flags & super::flags::FOLD_MUL != 0 {
        k.make_ascii_lowercase();
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atoi_like_glibc() {
        assert_eq!(c_atoi(b"12"), 12);
        assert_eq!(c_atoi(b" -3x"), -3);
        assert_eq!(c_atoi(b""), 0);
        assert_eq!(c_atoi(b"4294967297"), 1);
        assert_eq!(c_atoi(b"99999999999999999999999"), -1);
        assert_eq!(c_atoi(b"-99999999999999999999999"), 0);
    }

    #[test]
    fn inline_source() {
        assert_eq!(
            inline_to_text(b"{{/a/ b}, { /c/ d },{e}}").unwrap(),
            b"/a/ b\n/c/ d\ne\n"
        );
        assert_eq!(
            inline_to_text(b"{/a/ b}").unwrap_err(),
            "no '{' at start of text in \"/a/\""
        );
        assert_eq!(
            inline_to_text(b"{{/a/ b}x}").unwrap_err(),
            "syntax error after '}' in \"{/a/ b}x\""
        );
        assert_eq!(
            inline_to_text(b"{{/a/ b}").unwrap_err(),
            "missing '}' in \"{{/a/ b}\""
        );
        assert_eq!(inline_to_text(b"{, }").unwrap(), b"");
    }

    #[test]
    fn base64_like_postfix() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
    }

    fn pieces(v: &[u8]) -> (Vec<String>, u32, Vec<String>) {
        let mut out = Vec::new();
        let mut d = Diag::collect();
        let st = mac_parse(v, &mut d, &mut |p, _| {
            out.push(match p {
                Piece::Literal(t) => format!("L{}", text(t)),
                Piece::Var(t) => format!("V{}", text(t)),
            });
            0
        });
        (out, st, d.take())
    }

    #[test]
    fn mac_parse_forms() {
        assert_eq!(
            pieces(b"a$1-b${22}c$(3)$$d").0,
            ["La", "V1", "L-b", "V22", "Lc", "V3", "L$d"]
        );
        // A name runs over letters, digits and '_'.
        assert_eq!(pieces(b"$1b_2.").0, ["V1b_2", "L."]);
        let (p, st, w) = pieces(b"x$");
        assert_eq!((p, st), (vec!["Lx".to_string()], PARSE_ERROR));
        assert_eq!(w, ["empty macro name: \"x$\""]);
        let (p, st, w) = pieces(b"x${1");
        assert_eq!((p, st), (vec!["Lx".to_string()], PARSE_ERROR));
        assert_eq!(w, ["truncated macro reference: \"x${1\""]);
        assert_eq!(pieces(b"${a{b}c}").0, ["Va{b}c"]);
    }
}
