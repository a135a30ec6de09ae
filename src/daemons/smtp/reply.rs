//! Server replies as the smtp client sees them (Postfix's smtp_chat_resp):
//! the lines of a (multi-line) reply are joined with newlines, non-printable
//! bytes become `?`, the three-digit code is taken from the last line, and
//! the enhanced status code comes from the last line when it is valid and
//! agrees with the reply class, otherwise `2.0.0`/`4.0.0`/`5.0.0` (`5.5.0`
//! for anything that is not a 2xx, 4xx or 5xx reply). Pure: no I/O.

/// One complete server reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code (0 when the last line had none).
    pub code: u32,
    /// The enhanced status code (`x.y.z`).
    pub dsn: String,
    /// The reply lines, joined with `\n`.
    pub text: String,
}

impl Reply {
    /// The reply text with newlines turned into spaces, as logged.
    pub fn flat(&self) -> String {
        self.text.replace('\n', " ")
    }
}

/// The length of a valid enhanced status code at the start of `s` (Postfix's
/// dsn_valid): `[245].d{1,3}.d{1,3}` followed by end, space or tab.
pub fn dsn_valid(s: &[u8]) -> usize {
    if s.is_empty() || !matches!(s[0], b'2' | b'4' | b'5') || s.get(1) != Some(&b'.') {
        return 0;
    }
    let mut i = 2;
    for part in 0..2 {
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i - start > 3 {
            return 0;
        }
        if part == 0 {
            if s.get(i) != Some(&b'.') {
                return 0;
            }
            i += 1;
        }
    }
    match s.get(i) {
        None | Some(b' ') | Some(b'\t') => i,
        _ => 0,
    }
}

/// Replace bytes that are not printable ASCII by `?` (Postfix's printable()).
pub fn printable(line: &[u8]) -> String {
    let mut s = String::with_capacity(line.len());
    printable_into(&mut s, line);
    s
}

/// [`printable`], appended to `out`.
pub fn printable_into(out: &mut String, line: &[u8]) {
    let ok = |b: u8| (0x20..0x7f).contains(&b) || b == b'\t';
    if line.iter().all(|&b| ok(b))
        && let Ok(text) = std::str::from_utf8(line)
    {
        out.push_str(text);
        return;
    }
    out.extend(line.iter().map(|&b| {
        if (0x20..0x7f).contains(&b) || b == b'\t' {
            b as char
        } else {
            '?'
        }
    }));
}

/// [`is_last_line`] on the raw bytes (the test only looks at ASCII digits
/// and `-`, which printable() keeps).
pub fn is_last_line_bytes(b: &[u8]) -> bool {
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    !(digits == 3 && b.get(3) == Some(&b'-'))
}

/// Is this line the last of a reply (`ddd ` or `ddd` alone; anything that is
/// not a `ddd-` continuation ends the reply, as in Postfix)?
pub fn is_last_line(line: &str) -> bool {
    let b = line.as_bytes();
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    !(digits == 3 && b.get(3) == Some(&b'-'))
}

/// Build a reply from its lines (without CRLF).
pub fn from_lines(lines: &[String]) -> Reply {
    let text = lines.join("\n");
    let last_start = text.len() - lines.last().map(String::len).unwrap_or(0);
    from_text(text, last_start)
}

/// Build a reply from its lines already joined with `\n`; the last line
/// starts at `last_start`.
pub fn from_text(text: String, last_start: usize) -> Reply {
    let last = &text[last_start..];
    let b = last.as_bytes();
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    let three = digits == 3 && matches!(b.get(3), None | Some(b' ') | Some(b'-'));
    let mut dsn = "5.5.0".to_string();
    let code = if three {
        let code: u32 = last[..3].parse().unwrap_or(0);
        if matches!(b[0], b'2' | b'4' | b'5') {
            let mut i = 4.min(b.len());
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            let n = dsn_valid(&b[i..]);
            if n > 0 && b[i] == b[0] {
                dsn = last[i..i + n].to_string();
            } else {
                dsn = format!("{}.0.0", b[0] as char);
            }
        }
        code
    } else {
        0
    };
    Reply { code, dsn, text }
}

/// A reply made up locally (SMTP_RESP_FAKE).
pub fn fake(dsn: &str) -> Reply {
    Reply {
        code: 0,
        dsn: dsn.to_string(),
        text: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(lines: &[&str]) -> Reply {
        from_lines(&lines.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn replies() {
        let t = [
            (vec!["250 2.1.0 Ok"], 250, "2.1.0"),
            (vec!["250 Ok"], 250, "2.0.0"),
            (vec!["550 5.1.1 <a@b>: nope"], 550, "5.1.1"),
            (vec!["550 4.1.1 mismatch"], 550, "5.0.0"),
            (vec!["451-first", "451 4.3.0 second"], 451, "4.3.0"),
            (vec!["354 go ahead"], 354, "5.5.0"),
            (vec!["hello"], 0, "5.5.0"),
            (vec!["250 2.0.0x"], 250, "2.0.0"),
            (vec!["421"], 421, "4.0.0"),
        ];
        for (lines, code, dsn) in t {
            let x = r(&lines);
            assert_eq!((x.code, x.dsn.as_str()), (code, dsn), "{lines:?}");
        }
        assert_eq!(r(&["250-a", "250 b"]).flat(), "250-a 250 b");
        assert!(!is_last_line("250-x"));
        assert!(is_last_line("250 x"));
        assert!(is_last_line("250"));
        assert!(is_last_line("junk"));
        assert_eq!(printable(b"a\x01\xff"), "a??");
    }
}
