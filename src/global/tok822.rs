//! RFC 822 tokens as Postfix's tokenizer sees them (its tok822 module): the
//! flat token list, and conversion back to text in internal (unquoted) and
//! external (quoted) form.
//!
//! Token rules: blanks, tabs, CR and LF separate tokens; `(...)` is a
//! comment (nested, kept verbatim with its parentheses); `[...]` a domain
//! literal; `"..."` a quoted string; each of `|%!()<>@,;:\".[]` is an
//! operator; anything else is an atom, where a backslash escapes the next
//! character. An atom that holds a blank, a control character or an
//! operator character (after unescaping) becomes a quoted string, so that it
//! is quoted again when externalised.
//!
//! Text is one-char-per-byte; a NUL ends the input as in C.

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A single-character operator.
    Op(char),
    Atom(String),
    /// A quoted string's contents, without the quotes and escapes.
    QString(String),
    /// A domain literal's contents, without the brackets.
    DomLit(String),
    /// A comment, verbatim with its parentheses.
    Comment(String),
}

const OPCHARS: &str = "|%!()<>@,;:\\\".[]";

fn is_space_tab_cr_lf(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_cntrl(c: char) -> bool {
    (c as u32) < 32 || c as u32 == 127
}

/// Collect characters while `cond` holds; a backslash takes the next
/// character literally. Blanks are stored as a space. Returns the index
/// where collection stopped.
fn collect(s: &[char], mut i: usize, out: &mut String, cond: impl Fn(char) -> bool) -> usize {
    while i < s.len() {
        let mut c = s[i];
        if c == '\\' {
            i += 1;
            if i >= s.len() {
                break;
            }
            c = s[i];
        } else if !cond(c) {
            break;
        }
        out.push(if is_space_tab_cr_lf(c) { ' ' } else { c });
        i += 1;
    }
    i
}

/// Split text into tokens (Postfix's tok822_scan).
pub fn scan(text: &str) -> Vec<Token> {
    let s: Vec<char> = text.chars().take_while(|&c| c != '\0').collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        i += 1;
        if is_space_tab_cr_lf(c) {
            continue;
        }
        if c == '(' {
            let mut v = String::from("(");
            let mut level = 1;
            while i < s.len() {
                let ch = s[i];
                v.push(ch);
                i += 1;
                if ch == '(' {
                    level += 1;
                } else if ch == ')' {
                    level -= 1;
                    if level == 0 {
                        break;
                    }
                } else if ch == '\\' {
                    if i >= s.len() {
                        break;
                    }
                    v.push(s[i]);
                    i += 1;
                }
            }
            out.push(Token::Comment(v));
        } else if c == '[' {
            let mut v = String::new();
            i = collect(&s, i, &mut v, |c| c != ']');
            if i < s.len() {
                i += 1;
            }
            out.push(Token::DomLit(v));
        } else if c == '"' {
            let mut v = String::new();
            i = collect(&s, i, &mut v, |c| c != '"');
            if i < s.len() {
                i += 1;
            }
            out.push(Token::QString(v));
        } else if c != '\\' && OPCHARS.contains(c) {
            out.push(Token::Op(c));
        } else {
            let mut v = String::new();
            i = collect(&s, i - 1, &mut v, |c| {
                !is_space_tab_cr_lf(c) && !OPCHARS.contains(c)
            });
            if v.chars()
                .any(|c| c == ' ' || is_cntrl(c) || OPCHARS.contains(c))
            {
                out.push(Token::QString(v));
            } else {
                out.push(Token::Atom(v));
            }
        }
    }
    out
}

fn non_operator(t: &Token) -> bool {
    !matches!(t, Token::Op(_))
}

/// Whether a space goes between `t` and the token after it.
fn space_after(t: &Token, next: Option<&Token>) -> bool {
    let Some(next) = next else {
        return false;
    };
    if matches!(t, Token::Op(',')) || matches!(next, Token::Op('<')) {
        return true;
    }
    non_operator(t) && non_operator(next)
}

/// Tokens back to text in internal form (quoted strings unquoted).
pub fn internalize(tokens: &[Token]) -> String {
    let mut out = String::new();
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Token::Op(c) => out.push(*c),
            Token::Atom(v) | Token::QString(v) | Token::Comment(v) => out.push_str(v),
            Token::DomLit(v) => {
                out.push('[');
                out.push_str(v);
                out.push(']');
            }
        }
        if space_after(t, tokens.get(i + 1)) {
            out.push(' ');
        }
    }
    out
}

fn copy_quoted(out: &mut String, text: &str, quote_set: &str) {
    for c in text.chars() {
        if quote_set.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Tokens back to text in external form (quoted strings quoted again);
/// a comma is followed by a space.
pub fn externalize(tokens: &[Token]) -> String {
    let mut out = String::new();
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Token::Op(',') => {
                out.push_str(", ");
                continue;
            }
            Token::Op(c) => out.push(*c),
            Token::Atom(v) | Token::Comment(v) => out.push_str(v),
            Token::QString(v) => {
                out.push('"');
                copy_quoted(&mut out, v, "\"\\\r\n");
                out.push('"');
            }
            Token::DomLit(v) => {
                out.push('[');
                copy_quoted(&mut out, v, "\\\r\n");
                out.push(']');
            }
        }
        if space_after(t, tokens.get(i + 1)) {
            out.push(' ');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_kinds() {
        assert_eq!(
            scan(r#"a\ b "q\"s" [1.2] (c (d)) |x"#),
            vec![
                Token::QString("a b".into()),
                Token::QString("q\"s".into()),
                Token::DomLit("1.2".into()),
                Token::Comment("(c (d))".into()),
                Token::Op('|'),
                Token::Atom("x".into()),
            ]
        );
    }

    #[test]
    fn round_trips() {
        let t = scan(r#"Bar, "|/bin/x" continued: a,  b"#);
        assert_eq!(externalize(&t), r#"Bar, "|/bin/x" continued:a, b"#);
        let t = scan(r#"\|cmd arg, /file, :include: /x"#);
        assert_eq!(externalize(&t), r#""|cmd" arg, /file, :include:/x"#);
        assert_eq!(internalize(&scan(r#""foo bar""#)), "foo bar");
        assert_eq!(internalize(&scan("a.b@c")), "a.b@c");
        assert_eq!(externalize(&scan("x <y@z>")), "x <y@z>");
    }
}
