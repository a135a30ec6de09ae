//! Small string operations that Postfix's table syntax relies on: brace
//! grouping (`{a b}`), quoted `name = value` splitting, `%XX` quoting,
//! printable-ization and BASE64. Text is one-char-per-byte (see
//! [`crate::util::latin1`]).

/// Postfix's list separators (CHARS_COMMA_SP).
pub const COMMA_SP: &str = ", \t\r\n";
/// Postfix's word separators (CHARS_SPACE).
pub const SPACE: &str = " \t\r\n";

/// isspace(3) in the C locale.
pub fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// Length of the balanced `{...}` group at the start of `s` (both braces
/// included), or 0 when `s` does not start with `{` or the group is not closed.
pub fn balpar(s: &str) -> usize {
    let mut chars = s.char_indices();
    match chars.next() {
        Some((_, '{')) => {}
        _ => return 0,
    }
    let mut level = 1;
    for (i, c) in chars {
        if c == '}' {
            level -= 1;
            if level == 0 {
                return i + 1;
            }
        } else if c == '{' {
            level += 1;
        }
    }
    0
}

/// Remove the `{...}` around `s` and the blanks inside. On error the text
/// Postfix reports is returned together with what remains.
pub fn extpar(s: &str) -> (String, Option<String>) {
    if !s.starts_with('{') {
        return (
            trim_blanks(s).to_string(),
            Some(format!("no '{{' at start of text in \"{s}\"")),
        );
    }
    let len = balpar(s);
    if len == 0 {
        return (
            trim_blanks(&s[1..]).to_string(),
            Some(format!("missing '}}' in \"{s}\"")),
        );
    }
    let inner = trim_blanks(&s[1..len - 1]).to_string();
    if len != s.len() {
        (inner, Some(format!("syntax error after '}}' in \"{s}\"")))
    } else {
        (inner, None)
    }
}

/// Strip leading and trailing C-locale whitespace.
pub fn trim_blanks(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// Split `s` into tokens separated by any of `sep`, keeping `{...}` groups
/// (with their braces) together, as Postfix's mystrtokq.
pub fn split_q(s: &str, sep: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches(|c| sep.contains(c));
        if rest.is_empty() {
            return out;
        }
        let mut level = 0usize;
        let mut end = rest.len();
        let mut next = rest.len();
        for (i, c) in rest.char_indices() {
            if c == '{' {
                level += 1;
            } else if level > 0 && c == '}' {
                level -= 1;
            } else if level == 0 && sep.contains(c) {
                end = i;
                next = i + c.len_utf8();
                break;
            }
        }
        out.push(rest[..end].to_string());
        rest = &rest[next..];
    }
}

/// Split `key = value` where the key may hold `"quoted"` text and backslash
/// escapes (kept as they are). The errors are Postfix's texts.
pub fn split_qnameval(buf: &str) -> Result<(String, String), &'static str> {
    let key = buf.trim_start_matches(is_space);
    if key.is_empty() {
        return Err("no key found; expected format: key = value");
    }
    let chars: Vec<(usize, char)> = key.char_indices().collect();
    let mut in_quotes = false;
    let mut k = 0;
    let mut key_end = key.len();
    while k < chars.len() {
        let c = chars[k].1;
        if c == '\\' {
            k += 1;
            if k >= chars.len() {
                break;
            }
        } else if is_space(c) || c == '=' {
            if !in_quotes {
                key_end = chars[k].0;
                break;
            }
        } else if c == '"' {
            in_quotes = !in_quotes;
        }
        k += 1;
    }
    if in_quotes {
        return Err("unbalanced '\"'");
    }
    let after = key[key_end..].trim_start_matches(is_space);
    let Some(value) = after.strip_prefix('=') else {
        return Err("missing '=' after attribute name");
    };
    let value = value
        .trim_start_matches(is_space)
        .trim_end_matches(is_space);
    Ok((key[..key_end].to_string(), value.to_string()))
}

/// Replace what is not printable ASCII (nor, with `utf8`, a UTF-8 sequence
/// lead plus continuation bytes) by `repl`, as Postfix's printable().
pub fn printable(s: &str, repl: char, utf8: bool) -> String {
    let b: Vec<u32> = s.chars().map(|c| c as u32).collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        let cont = |j: usize| j < b.len() && (128..192).contains(&b[j]);
        if (0x20..0x7f).contains(&ch) {
            out.push(char::from_u32(ch).unwrap_or(repl));
        } else if utf8 && (194..=254).contains(&ch) && cont(i + 1) {
            out.push(char::from_u32(ch).unwrap_or(repl));
            while cont(i + 1) {
                i += 1;
                out.push(char::from_u32(b[i]).unwrap_or(repl));
            }
        } else {
            out.push(repl);
        }
        i += 1;
    }
    out
}

/// `%XX`-quote `%`, whitespace and non-printable bytes (Postfix hex_quote).
pub fn hex_quote(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        let u = c as u32;
        if c != '%' && !is_space(c) && (0x21..0x7f).contains(&u) {
            out.push(c);
        } else {
            out.push_str(&format!("%{:02X}", u & 0xff));
        }
    }
    out
}

/// Undo [`hex_quote`]; `None` for a malformed `%XX`.
pub fn hex_unquote(hex: &str) -> Option<String> {
    let b: Vec<char> = hex.chars().collect();
    let mut out = String::with_capacity(hex.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == '%' {
            let hi = b.get(i + 1).and_then(|c| c.to_digit(16))?;
            let lo = b.get(i + 2).and_then(|c| c.to_digit(16))?;
            out.push(char::from_u32(hi << 4 | lo)?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard BASE64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = match chunk.len() {
            1 => (chunk[0] as u32) << 16,
            2 => (chunk[0] as u32) << 16 | (chunk[1] as u32) << 8,
            _ => (chunk[0] as u32) << 16 | (chunk[1] as u32) << 8 | chunk[2] as u32,
        };
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            B64[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            B64[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// Decode standard BASE64 (length a multiple of 4, `=` padding only at the
/// end); `None` when malformed.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let t = text.as_bytes();
    if !t.len().is_multiple_of(4) {
        return None;
    }
    const INV: [u8; 256] = {
        let mut t = [255u8; 256];
        let mut i = 0;
        while i < 64 {
            t[B64[i] as usize] = i as u8;
            i += 1;
        }
        t
    };
    let val = |c: u8| match INV[c as usize] {
        255 => None,
        v => Some(v as u32),
    };
    let mut out = Vec::with_capacity(t.len() / 4 * 3);
    for (n, q) in t.chunks(4).enumerate() {
        let last = n == t.len() / 4 - 1;
        let a = val(q[0])?;
        let b = val(q[1])?;
        out.push((a << 2 | b >> 4) as u8);
        if q[2] == b'=' {
            if q[3] != b'=' || !last {
                return None;
            }
            continue;
        }
        let c = val(q[2])?;
        out.push(((b & 15) << 4 | c >> 2) as u8);
        if q[3] == b'=' {
            if !last {
                return None;
            }
            continue;
        }
        let d = val(q[3])?;
        out.push(((c & 3) << 6 | d) as u8);
    }
    Some(out)
}

/// `n` in decimal, written into `buf` without the formatting machinery
/// (for per-line and per-record hot paths).
pub fn decimal(buf: &mut [u8; 10], n: u32) -> &str {
    let i = decimal_tail(buf, u64::from(n));
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

/// Write `n` in decimal at the end of `buf` (right-aligned; the bytes
/// before the digits are left alone) and return where the digits start.
/// `buf` must hold the digits: 20 bytes take any u64.
pub fn decimal_tail(buf: &mut [u8], mut n: u64) -> usize {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_q_cases() {
        // The cases of Postfix's mystrtok test driver.
        let sp = SPACE;
        assert!(split_q("", sp).is_empty());
        assert_eq!(split_q("foo bar", sp), ["foo", "bar"]);
        assert_eq!(split_q("{ bar }  ", sp), ["{ bar }"]);
        assert_eq!(split_q("foo { bar } baz", sp), ["foo", "{ bar }", "baz"]);
        assert_eq!(split_q("foo{ bar } baz", sp), ["foo{ bar }", "baz"]);
        assert_eq!(split_q("foo { bar }baz", sp), ["foo", "{ bar }baz"]);
        assert_eq!(split_q("a,,b, {c,d}", COMMA_SP), ["a", "b", "{c,d}"]);
    }

    #[test]
    fn extpar_cases() {
        assert_eq!(extpar("{ a b }"), ("a b".to_string(), None));
        assert_eq!(
            extpar("{a}b").1.unwrap(),
            "syntax error after '}' in \"{a}b\""
        );
        assert_eq!(extpar("{a").1.unwrap(), "missing '}' in \"{a\"");
        assert_eq!(extpar("a").1.unwrap(), "no '{' at start of text in \"a\"");
        assert_eq!(balpar("{a{b}c}d"), 7);
        assert_eq!(balpar("{a{b}c"), 0);
    }

    #[test]
    fn qnameval() {
        assert_eq!(split_qnameval(" a = b c "), Ok(("a".into(), "b c".into())));
        assert_eq!(
            split_qnameval("\"a b\"=x"),
            Ok(("\"a b\"".into(), "x".into()))
        );
        assert_eq!(split_qnameval("=b"), Ok(("".into(), "b".into())));
        assert_eq!(split_qnameval("a"), Err("missing '=' after attribute name"));
        assert_eq!(split_qnameval("\"a=b"), Err("unbalanced '\"'"));
        assert_eq!(
            split_qnameval("  "),
            Err("no key found; expected format: key = value")
        );
        assert_eq!(split_qnameval("a\\ b=c"), Ok(("a\\ b".into(), "c".into())));
    }

    #[test]
    fn hex() {
        assert_eq!(hex_quote("a b%c\u{e9}\n"), "a%20b%25c%E9%0A");
        assert_eq!(hex_unquote("a%20b%25c%e9").unwrap(), "a b%c\u{e9}");
        assert_eq!(hex_unquote("%2"), None);
        assert_eq!(hex_unquote("%zz"), None);
    }

    #[test]
    fn printable_cases() {
        assert_eq!(printable("a\tb\u{7f}", '?', false), "a?b?");
        // \xc3\xa9 is UTF-8 é: kept with utf8, replaced without.
        assert_eq!(printable("\u{c3}\u{a9}x", '?', true), "\u{c3}\u{a9}x");
        assert_eq!(printable("\u{c3}\u{a9}x", '?', false), "??x");
    }

    #[test]
    fn b64() {
        for s in ["", "f", "fo", "foo", "foob", "fooba", "foobar"] {
            let e = base64_encode(s.as_bytes());
            assert_eq!(base64_decode(&e).unwrap(), s.as_bytes());
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_decode("Zm8"), None);
        assert_eq!(base64_decode("Z=8="), None);
    }
}

/// The index of the first `needle` in `hay`, eight bytes at a time (the
/// newline search in message text; `iter().position` went byte by byte).
pub fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pat = LO.wrapping_mul(u64::from(needle));
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ pat;
        // A zero byte in w is a match; the lowest flagged byte is exact.
        let z = w.wrapping_sub(LO) & !w & HI;
        if z != 0 {
            return Some(base + (z.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|i| base + i)
}

/// Whether `hay` holds a carriage return or a newline, eight bytes at a
/// time.
pub fn has_cr_or_lf(hay: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const CR: u64 = LO * b'\r' as u64;
    const LF: u64 = LO * b'\n' as u64;
    let mut chunks = hay.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let (a, b) = (w ^ CR, w ^ LF);
        // Non-zero exactly when a or b has a zero byte (the borrow may
        // flag a wrong byte, never a wrong word).
        if ((a.wrapping_sub(LO) & !a) | (b.wrapping_sub(LO) & !b)) & HI != 0 {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| b == b'\r' || b == b'\n')
}

#[cfg(test)]
mod find_tests {
    use super::*;

    #[test]
    fn find_byte_matches_position() {
        let samples: [&[u8]; 7] = [
            b"",
            b"\n",
            b"abc",
            b"abcdefg\n",
            b"abcdefgh\nij\n",
            b"\x80\x81\xff\x0a\x0b",
            b"0123456789abcdef0123456789\r\n",
        ];
        for s in samples {
            for n in [b'\n', b'\r', 0x80, 0xff, b'a', 0] {
                assert_eq!(find_byte(s, n), s.iter().position(|&b| b == n), "{s:?} {n}");
            }
            assert_eq!(has_cr_or_lf(s), s.iter().any(|&b| b == b'\r' || b == b'\n'));
        }
        // Every position in a long buffer, including after a 0x0b/0x09 byte
        // (a borrow from the byte below must not fake a match).
        for i in 0..40 {
            let mut v = vec![0x0bu8; 40];
            v[i] = b'\n';
            assert_eq!(find_byte(&v, b'\n'), Some(i));
            for (fill, c) in [(0x0bu8, b'\r'), (0x0e, b'\r'), (0x0b, b'\n'), (0x0c, b'\n')] {
                let mut v = vec![fill; 40];
                assert!(!has_cr_or_lf(&v[..i]));
                v[i] = c;
                assert!(has_cr_or_lf(&v));
                assert!(!has_cr_or_lf(&v[..i]));
            }
            let mut w = vec![0x09u8; 40];
            w[i] = b'\n';
            assert_eq!(find_byte(&w, b'\n'), Some(i));
        }
    }
}
