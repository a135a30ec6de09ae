//! SMTP command tokenizer, as Postfix's smtpd_token(): words separated by
//! white space, where `<...>` and `"..."` groups (with nesting and backslash
//! escapes) stay whole, and `to:` / `from:` end a token of their own so that
//! `MAIL FROM:<a@b>` gives `MAIL`, `FROM:`, `<a@b>`.
//!
//! Text is one-char-per-byte (latin1), as everywhere in rostfix.

/// One token; `error` when a quoted or bracketed group was not closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub error: bool,
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// Copy a quoted group starting after `start`; returns the index after it.
fn quoted(s: &[char], mut i: usize, tok: &mut Token, start: char, last: char) -> usize {
    let mut stack = vec![last];
    tok.text.push(start);
    while let Some(&c) = s.get(i) {
        i += 1;
        tok.text.push(c);
        let wanted = *stack.last().unwrap_or(&last);
        if c == '\\' {
            let Some(&c2) = s.get(i) else { break };
            i += 1;
            tok.text.push(c2);
        } else if c == wanted {
            if stack.len() == 1 {
                return i;
            }
            stack.pop();
        } else if c == '"' {
            stack.push('"');
        } else if c == '<' && wanted == '>' {
            stack.push('>');
        }
    }
    tok.error = true;
    i
}

/// Split a command line into tokens.
pub fn tokenize(line: &str) -> Vec<Token> {
    let line = match line.find('\0') {
        Some(n) => &line[..n],
        None => line,
    };
    let mut s: Vec<char> = Vec::with_capacity(line.len());
    s.extend(line.chars());
    let mut out = Vec::with_capacity(4);
    let mut i = 0;
    loop {
        // Sized for the rest of the line: one allocation per token.
        let mut tok = Token {
            text: String::with_capacity(line.len() - i.min(line.len())),
            error: false,
        };
        while let Some(&c) = s.get(i) {
            i += 1;
            if is_space(c) {
                while s.get(i).is_some_and(|&c| is_space(c)) {
                    i += 1;
                }
                if !tok.text.is_empty() {
                    break;
                }
            } else if c == '<' {
                i = quoted(&s, i, &mut tok, c, '>');
            } else if c == '"' {
                i = quoted(&s, i, &mut tok, c, c);
            } else if c == ':' {
                tok.text.push(c);
                if tok.text.eq_ignore_ascii_case("to:") || tok.text.eq_ignore_ascii_case("from:") {
                    break;
                }
            } else {
                if c == '\\' {
                    tok.text.push(c);
                    let Some(&c2) = s.get(i) else { break };
                    i += 1;
                    tok.text.push(c2);
                    continue;
                }
                tok.text.push(c);
            }
        }
        if tok.text.is_empty() {
            return out;
        }
        out.push(tok);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &str) -> Vec<String> {
        tokenize(line).into_iter().map(|t| t.text).collect()
    }

    /// Cases from Postfix's smtpd_token.in / smtpd_token.ref.
    #[test]
    fn like_postfix_token_ref() {
        let cases: &[(&str, &[&str])] = &[
            (
                "mail from:<wietse@porcupine.org>",
                &["mail", "from:", "<wietse@porcupine.org>"],
            ),
            (
                "mail from:<\"wietse venema\"@porcupine.org>",
                &["mail", "from:", "<\"wietse venema\"@porcupine.org>"],
            ),
            (
                "mail from:wietse@porcupine.org",
                &["mail", "from:", "wietse@porcupine.org"],
            ),
            (
                "mail from:<wietse @ porcupine.org>",
                &["mail", "from:", "<wietse @ porcupine.org>"],
            ),
            (
                "mail from:<\"wietse venema\"@porcupine.org (\"wietse ) venema\")>",
                &[
                    "mail",
                    "from:",
                    "<\"wietse venema\"@porcupine.org (\"wietse ) venema\")>",
                ],
            ),
            (
                "mail from:<\"wietse venema\" <wietse@porcupine.org>>",
                &[
                    "mail",
                    "from:",
                    "<\"wietse venema\" <wietse@porcupine.org>>",
                ],
            ),
            (
                "mail from:\"wietse venema\"@porcupine.org",
                &["mail", "from:", "\"wietse venema\"@porcupine.org"],
            ),
            (
                "mail from:wietse\\ venema@porcupine.org",
                &["mail", "from:", "wietse\\ venema@porcupine.org"],
            ),
            (
                "MAIL FROM: <a@b> SIZE=10",
                &["MAIL", "FROM:", "<a@b>", "SIZE=10"],
            ),
            ("  NOOP  ", &["NOOP"]),
            ("", &[]),
        ];
        for (line, want) in cases {
            assert_eq!(texts(line), *want, "{line}");
        }
        let t = tokenize("mail to:<\"wietse venema>");
        assert!(t[2].error);
        let t = tokenize("mail to:<wietse@[stuff>");
        assert!(!t[2].error);
        assert!(!tokenize("rcpt to:<a@b>")[2].error);
        // "x:" is not a separator unless it is to: or from:
        assert_eq!(texts("a:b c"), ["a:b", "c"]);
        assert_eq!(texts("t:x"), ["t:x"]);
    }
}
