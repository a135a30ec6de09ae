//! master.cf tokenising shared by master and postconf: fields split on
//! blanks where `{ }` groups text (Postfix's mystrtokq), and the inside of a
//! `{ }` field (Postfix's extpar with stripping).

/// Split text on runs of `delims` where `{ }` protects delimiters
/// (Postfix's mystrtokq): never returns empty tokens.
pub fn split_quoted(text: &str, delims: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut level = 0usize;
    let mut in_token = false;
    for c in text.chars() {
        if !in_token {
            if delims.contains(c) {
                continue;
            }
            in_token = true;
        }
        if c == '{' {
            level += 1;
        } else if level > 0 && c == '}' {
            level -= 1;
        } else if level == 0 && delims.contains(c) {
            out.push(std::mem::take(&mut cur));
            in_token = false;
            continue;
        }
        cur.push(c);
    }
    if in_token {
        out.push(cur);
    }
    out
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// Postfix's extpar with stripping: the text inside a leading `{ }` pair,
/// without blanks at either end, and an error text for a missing `}` or
/// text after it.
pub fn extract_braced(s: &str) -> (String, Option<String>) {
    let chars: Vec<char> = s.chars().collect();
    let (inner, err): (String, Option<String>) = if chars.first() != Some(&'{') {
        (
            s.to_string(),
            Some(format!("no '{{' at start of text in \"{s}\"")),
        )
    } else {
        let mut level = 0usize;
        let mut close = None;
        for (i, &c) in chars.iter().enumerate() {
            if c == '}' {
                level -= 1;
                if level == 0 {
                    close = Some(i);
                    break;
                }
            } else if c == '{' {
                level += 1;
            }
        }
        match close {
            None => (
                chars[1..].iter().collect(),
                Some(format!("missing '}}' in \"{s}\"")),
            ),
            Some(i) => {
                let err = if i + 1 < chars.len() {
                    Some(format!("syntax error after '}}' in \"{s}\""))
                } else {
                    None
                };
                (chars[1..i].iter().collect(), err)
            }
        }
    };
    (inner.trim_matches(is_space).to_string(), err)
}
