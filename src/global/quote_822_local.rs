//! Quoting of an address's local part per RFC 822 (Postfix's
//! quote_822_local): `aa bb@example` (internal form) is `"aa bb"@example`
//! (external form). Also the address-extension splitting Postfix does with
//! `recipient_delimiter` (split_addr, strip_addr).

/// Leave 8-bit characters unquoted (QUOTE_FLAG_8BITCLEAN).
pub const FLAG_8BITCLEAN: u32 = 1 << 0;
/// `@` is ordinary text (QUOTE_FLAG_EXPOSE_AT).
pub const FLAG_EXPOSE_AT: u32 = 1 << 1;
/// The whole input is a local part, no `@domain` (QUOTE_FLAG_BARE_LOCALPART).
pub const FLAG_BARE_LOCALPART: u32 = 1 << 3;
/// Postfix's QUOTE_FLAG_DEFAULT.
pub const FLAG_DEFAULT: u32 = FLAG_8BITCLEAN;

fn is_dot_string(lp: &[char], flags: u32) -> bool {
    if lp.is_empty() || lp[0] == '.' || lp[0] == '\0' {
        return false;
    }
    let mut last = ' ';
    for (i, &c) in lp.iter().enumerate() {
        if c == '\0' {
            break;
        }
        let u = c as u32;
        if c == '.' && lp.get(i + 1) == Some(&'.') {
            return false;
        }
        if u > 127 && flags & FLAG_8BITCLEAN == 0 {
            return false;
        }
        if c == ' ' || u < 32 || u == 127 {
            return false;
        }
        if matches!(
            c,
            '(' | ')' | '<' | '>' | ',' | ';' | ':' | '\\' | '"' | '[' | ']'
        ) || (c == '@' && flags & FLAG_EXPOSE_AT == 0)
        {
            return false;
        }
        last = c;
    }
    last != '.'
}

/// Quote the local part of `mbox` if it is not an RFC 822 dot-string.
pub fn quote_822_local_flags(mbox: &str, flags: u32) -> String {
    let chars: Vec<char> = mbox.chars().collect();
    let start = if chars.first() == Some(&'@') {
        chars
            .iter()
            .position(|&c| c == ':')
            .map(|i| i + 1)
            .unwrap_or(0)
    } else {
        0
    };
    let end = if flags & FLAG_BARE_LOCALPART != 0 {
        chars.len()
    } else {
        chars[start..]
            .iter()
            .rposition(|&c| c == '@')
            .map(|i| start + i)
            .unwrap_or(chars.len())
    };
    if is_dot_string(&chars[start..end], flags) {
        return mbox.to_string();
    }
    let mut out: String = chars[..start].iter().collect();
    out.push('"');
    for &c in &chars[start..end] {
        if c == '\0' {
            break;
        }
        if (c as u32 > 127 && flags & FLAG_8BITCLEAN == 0) || matches!(c, '"' | '\\' | '\r') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out.extend(&chars[end..]);
    out
}

/// [`quote_822_local_flags`] with the default flags.
pub fn quote_822_local(mbox: &str) -> String {
    quote_822_local_flags(mbox, FLAG_DEFAULT)
}

/// Remove RFC 822 quoting from the local part (text after the last
/// unquoted `@` is kept as it is).
pub fn unquote_822_local(mbox: &str) -> String {
    let chars: Vec<char> = mbox.chars().collect();
    let (mut out, start) = if chars.first() == Some(&'@') {
        match chars.iter().position(|&c| c == ':') {
            Some(i) => (chars[..=i].iter().collect::<String>(), i + 1),
            None => (String::new(), 0),
        }
    } else {
        (String::new(), 0)
    };
    let mut in_quote = false;
    let mut bare_at: Option<(usize, usize)> = None;
    let mut i = start;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            in_quote = !in_quote;
            i += 1;
            continue;
        } else if c == '@' {
            if !in_quote {
                bare_at = Some((out.len(), i));
            }
        } else if c == '\\' {
            if i + 1 >= chars.len() {
                i += 1;
                continue;
            }
            i += 1;
        }
        out.push(chars[i]);
        i += 1;
    }
    if let Some((dst, src)) = bare_at {
        out.truncate(dst);
        out.extend(&chars[src..]);
    }
    out
}

/// What split_addr needs from main.cf.
#[derive(Debug, Clone)]
pub struct SplitParams {
    /// `recipient_delimiter`: a set of delimiter characters.
    pub delimiters: String,
    /// `double_bounce_sender`.
    pub double_bounce_sender: String,
    /// `owner_request_special`.
    pub owner_request_special: bool,
}

impl Default for SplitParams {
    fn default() -> Self {
        SplitParams {
            delimiters: String::new(),
            double_bounce_sender: "double-bounce".to_string(),
            owner_request_special: true,
        }
    }
}

/// Where to split a local part at its first delimiter, as Postfix's
/// split_addr: never for postmaster, MAILER-DAEMON, the double-bounce
/// sender, owner-* and *-request (when `-` is a delimiter and
/// owner_request_special is on), nor when the base would be empty.
pub fn split_addr(localpart: &str, p: &SplitParams) -> Option<usize> {
    if localpart.eq_ignore_ascii_case("postmaster")
        || localpart.eq_ignore_ascii_case("MAILER-DAEMON")
        || localpart.eq_ignore_ascii_case(&p.double_bounce_sender)
    {
        return None;
    }
    if p.delimiters.contains('-') && p.owner_request_special {
        if localpart.len() >= 6 && localpart[..6].eq_ignore_ascii_case("owner-") {
            return None;
        }
        if localpart.len() > 8 && localpart[localpart.len() - 8..].eq_ignore_ascii_case("-request")
        {
            return None;
        }
    }
    match localpart.find(|c| p.delimiters.contains(c)) {
        Some(0) | None => None,
        Some(i) => Some(i),
    }
}

/// Remove the extension from an address (internal form): returns the
/// address without it and the extension with its delimiter, or `None` when
/// there is nothing to strip (Postfix's strip_addr_internal).
pub fn strip_addr(full: &str, p: &SplitParams) -> Option<(String, String)> {
    if p.delimiters.is_empty() || !full.contains(|c| p.delimiters.contains(c)) {
        return None;
    }
    let (local, domain) = match full.rfind('@') {
        Some(i) => (&full[..i], &full[i..]),
        None => (full, ""),
    };
    let i = split_addr(local, p)?;
    Some((format!("{}{domain}", &local[..i]), local[i..].to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_822_local("plain@example"), "plain@example");
        assert_eq!(quote_822_local("aa bb@cc.example"), "\"aa bb\"@cc.example");
        assert_eq!(quote_822_local("a@b@localhost"), "\"a@b\"@localhost");
        assert_eq!(quote_822_local("a.b.@x"), "\"a.b.\"@x");
        assert_eq!(quote_822_local(".a@x"), "\".a\"@x");
        assert_eq!(quote_822_local("a..b@x"), "\"a..b\"@x");
        assert_eq!(quote_822_local("a\"b@x"), "\"a\\\"b\"@x");
        assert_eq!(quote_822_local("@r:aa bb@x"), "@r:\"aa bb\"@x");
        assert_eq!(quote_822_local("@x"), "\"\"@x");
        assert_eq!(
            quote_822_local_flags("a@b", FLAG_DEFAULT | FLAG_BARE_LOCALPART),
            "\"a@b\""
        );
        assert_eq!(
            unquote_822_local("\"aa bb\"@cc.example"),
            "aa bb@cc.example"
        );
        assert_eq!(unquote_822_local("\"a@b\"@x"), "a@b@x");
        assert_eq!(unquote_822_local("\"a\\\"b\"@x"), "a\"b@x");
        assert_eq!(unquote_822_local("x@\"y\""), "x@\"y\"");
        assert_eq!(
            unquote_822_local("\"dd ee\"@dd.example"),
            "dd ee@dd.example"
        );
    }

    #[test]
    fn stripping() {
        let p = SplitParams {
            delimiters: "+-".into(),
            ..Default::default()
        };
        assert_eq!(strip_addr("a+b@x", &p), Some(("a@x".into(), "+b".into())));
        assert_eq!(
            strip_addr("a-b+c@x", &p),
            Some(("a@x".into(), "-b+c".into()))
        );
        assert_eq!(strip_addr("a+b", &p), Some(("a".into(), "+b".into())));
        assert_eq!(strip_addr("+b@x", &p), None);
        assert_eq!(strip_addr("a@x+y", &p), None);
        assert_eq!(strip_addr("owner-list@x", &p), None);
        assert_eq!(strip_addr("list-request@x", &p), None);
        assert_eq!(
            strip_addr("postmaster+x@y", &p),
            Some(("postmaster@y".into(), "+x".into()))
        );
        assert_eq!(strip_addr("double-bounce@x", &p), None);
        assert_eq!(strip_addr("a", &p), None);
        let p = SplitParams {
            delimiters: "+".into(),
            ..Default::default()
        };
        assert_eq!(
            strip_addr("owner-list+x@y", &p),
            Some(("owner-list@y".into(), "+x".into()))
        );
    }
}
