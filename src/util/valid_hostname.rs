//! Syntax checks for host names and numeric addresses, with the rules and
//! the warning texts of Postfix's valid_hostname(3): a host name has labels
//! of letters, digits, `_` and inner `-`, at most 63 characters each and 255
//! in all, and is not all-numeric; an IPv4 address has four decimal octets;
//! an IPv6 address has at most eight hex fields with at most one `::` and
//! an optional IPv4 tail.
//!
//! With `gripe`, the reason for a rejection is logged as a warning (as
//! Postfix's DO_GRIPE).

use crate::global::msg;

/// The longest host name (RFC 1035).
pub const HOSTNAME_LEN: usize = 255;
/// The longest label (RFC 1035).
pub const LABEL_LEN: usize = 63;

fn gripe_warn(gripe: bool, text: String) {
    if gripe {
        msg::warn(&text);
    }
}

/// A syntactically valid host name; with `wildcard`, `*` may be the whole
/// first label (Postfix's DO_WILDCARD).
pub fn valid_hostname_flags(name: &str, gripe: bool, wildcard: bool) -> bool {
    const ME: &str = "valid_hostname";
    let b: Vec<char> = name.chars().take_while(|&c| c != '\0').collect();
    if b.is_empty() {
        gripe_warn(gripe, format!("{ME}: empty hostname"));
        return false;
    }
    let shown = || b.iter().take(100).collect::<String>();
    let mut label_length = 0usize;
    let mut label_count = 0usize;
    let mut non_numeric = false;
    for (i, &ch) in b.iter().enumerate() {
        let next = b.get(i + 1).copied();
        if ch.is_ascii_alphanumeric() || ch == '_' {
            if label_length == 0 {
                label_count += 1;
            }
            label_length += 1;
            if label_length > LABEL_LEN {
                gripe_warn(gripe, format!("{ME}: hostname label too long: {}", shown()));
                return false;
            }
            if !ch.is_ascii_digit() {
                non_numeric = true;
            }
        } else if wildcard && ch == '*' {
            if label_length > 0 || label_count > 0 || next.is_some_and(|c| c != '.') {
                gripe_warn(
                    gripe,
                    format!("{ME}: '*' can be the first label only: {}", shown()),
                );
                return false;
            }
            label_count += 1;
            label_length += 1;
            non_numeric = true;
        } else if ch == '.' {
            if label_length == 0 || next.is_none() {
                gripe_warn(gripe, format!("{ME}: misplaced delimiter: {}", shown()));
                return false;
            }
            label_length = 0;
        } else if ch == '-' {
            non_numeric = true;
            label_length += 1;
            if label_length == 1 || next.is_none() || next == Some('.') {
                gripe_warn(gripe, format!("{ME}: misplaced hyphen: {}", shown()));
                return false;
            }
        } else {
            gripe_warn(
                gripe,
                format!(
                    "{ME}: invalid character {}(decimal): {}",
                    ch as u32 & 0xff,
                    shown()
                ),
            );
            return false;
        }
    }
    if !non_numeric {
        gripe_warn(gripe, format!("{ME}: numeric hostname: {}", shown()));
        return false;
    }
    if b.len() > HOSTNAME_LEN {
        gripe_warn(
            gripe,
            format!("{ME}: bad length {} for {}...", b.len(), shown()),
        );
        return false;
    }
    true
}

/// A syntactically valid host name (no wildcard).
pub fn valid_hostname(name: &str, gripe: bool) -> bool {
    valid_hostname_flags(name, gripe, false)
}

/// A numeric IPv4 or IPv6 address (IPv6 when it holds a `:`).
pub fn valid_hostaddr(addr: &str, gripe: bool) -> bool {
    if addr.is_empty() {
        gripe_warn(gripe, "valid_hostaddr: empty address".to_string());
        return false;
    }
    if addr.contains(':') {
        valid_ipv6_hostaddr(addr, gripe)
    } else {
        valid_ipv4_hostaddr(addr, gripe)
    }
}

/// Four decimal octets separated by dots; `0.0.0.0` is allowed but no
/// other address with a zero first octet.
pub fn valid_ipv4_hostaddr(addr: &str, gripe: bool) -> bool {
    const ME: &str = "valid_ipv4_hostaddr";
    let b: Vec<char> = addr.chars().collect();
    let shown = || b.iter().take(100).collect::<String>();
    let mut in_byte = false;
    let mut byte_count = 0;
    let mut byte_val: u32 = 0;
    for (i, &ch) in b.iter().enumerate() {
        if ch.is_ascii_digit() {
            if !in_byte {
                in_byte = true;
                byte_val = 0;
                byte_count += 1;
            }
            byte_val = byte_val * 10 + (ch as u32 - '0' as u32);
            if byte_val > 255 {
                gripe_warn(gripe, format!("{ME}: invalid octet value: {}", shown()));
                return false;
            }
        } else if ch == '.' {
            if !in_byte || i + 1 == b.len() {
                gripe_warn(gripe, format!("{ME}: misplaced dot: {}", shown()));
                return false;
            }
            if byte_count == 1 && byte_val == 0 && b.iter().any(|&c| c != '0' && c != '.') {
                gripe_warn(gripe, format!("{ME}: bad initial octet value: {}", shown()));
                return false;
            }
            in_byte = false;
        } else {
            gripe_warn(
                gripe,
                format!(
                    "{ME}: invalid character {}(decimal): {}",
                    ch as u32 & 0xff,
                    shown()
                ),
            );
            return false;
        }
    }
    if byte_count != 4 {
        gripe_warn(gripe, format!("{ME}: invalid octet count: {}", shown()));
        return false;
    }
    true
}

/// An IPv6 address in text form: hex fields of at most four digits, at
/// least two and at most seven `:`, one `::` at most, optionally ending in
/// an IPv4 address.
pub fn valid_ipv6_hostaddr(addr: &str, gripe: bool) -> bool {
    const ME: &str = "valid_ipv6_hostaddr";
    let b: Vec<char> = addr.chars().collect();
    let shown = || b.iter().take(100).collect::<String>();
    let mut null_field = 0;
    let mut field = 0;
    let mut len = 0usize;
    let mut i = 0usize;
    loop {
        match b.get(i).copied() {
            None => {
                if field < 2 {
                    gripe_warn(
                        gripe,
                        format!("{ME}: too few `:' in IPv6 address: {}", shown()),
                    );
                    return false;
                } else if len == 0 && null_field != field - 1 {
                    gripe_warn(
                        gripe,
                        format!("{ME}: bad null last field in IPv6 address: {}", shown()),
                    );
                    return false;
                }
                return true;
            }
            Some('.') => {
                if !(2..=6).contains(&field) {
                    gripe_warn(
                        gripe,
                        format!("{ME}: malformed IPv4-in-IPv6 address: {}", shown()),
                    );
                    return false;
                }
                let tail: String = b[i - len..].iter().collect();
                return valid_ipv4_hostaddr(&tail, gripe);
            }
            Some(':') => {
                if field == 0 && len == 0 && b.get(i + 1).is_some_and(|c| c.is_ascii_alphanumeric())
                {
                    gripe_warn(
                        gripe,
                        format!("{ME}: bad null first field in IPv6 address: {}", shown()),
                    );
                    return false;
                }
                field += 1;
                if field > 7 {
                    gripe_warn(
                        gripe,
                        format!("{ME}: too many `:' in IPv6 address: {}", shown()),
                    );
                    return false;
                }
                i += 1;
                len = 0;
                if b.get(i) == Some(&':') {
                    if null_field > 0 {
                        gripe_warn(
                            gripe,
                            format!("{ME}: too many `::' in IPv6 address: {}", shown()),
                        );
                        return false;
                    }
                    null_field = field;
                }
            }
            Some(c) => {
                len = b[i..].iter().take_while(|c| c.is_ascii_hexdigit()).count();
                if len > 4 {
                    gripe_warn(gripe, format!("{ME}: malformed IPv6 address: {}", shown()));
                    return false;
                }
                if len == 0 {
                    gripe_warn(
                        gripe,
                        format!(
                            "{ME}: invalid character {}(decimal) in IPv6 address: {}",
                            c as u32 & 0xff,
                            shown()
                        ),
                    );
                    return false;
                }
                i += len;
            }
        }
    }
}

/// A decimal TCP port number without leading zero, at most 65535.
pub fn valid_hostport(s: &str, gripe: bool) -> bool {
    const ME: &str = "valid_hostport";
    if s.starts_with('0') && s.len() > 1 {
        gripe_warn(gripe, format!("{ME}: leading zero in port number: {s}"));
        return false;
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        gripe_warn(gripe, format!("{ME}: non-numeric port number: {s}"));
        return false;
    }
    if s.len() > 5 || s.parse::<u32>().map_or(true, |p| p > 65535) {
        gripe_warn(gripe, format!("{ME}: out-of-range port number: {s}"));
        return false;
    }
    true
}

/// Is this one-char-per-byte text well-formed UTF-8 (Postfix's
/// valid_utf8_string)?
pub fn valid_utf8_string(s: &str) -> bool {
    std::str::from_utf8(&crate::util::latin1::encode(s)).is_ok()
}

/// Postfix's valid_utf8_hostname: with SMTPUTF8 enabled, a non-ASCII name
/// is valid when it converts to an ASCII name ([`crate::util::midna`],
/// which logs why a conversion fails); otherwise [`valid_hostname`]
/// decides.
pub fn valid_utf8_hostname(enable_utf8: bool, name: &str, gripe: bool) -> bool {
    if name.is_empty() {
        gripe_warn(gripe, "valid_utf8_hostname: empty domain name".to_string());
        return false;
    }
    if enable_utf8 && !name.is_ascii() {
        if crate::util::midna::domain_to_ascii(name).is_none() {
            gripe_warn(
                gripe,
                "valid_utf8_hostname: malformed UTF-8 domain name".to_string(),
            );
            return false;
        }
        return true;
    }
    valid_hostname(name, gripe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        for ok in ["example.com", "a", "a-b.c", "_x.y", "1a.2", "x.123"] {
            assert!(valid_hostname(ok, false), "{ok}");
        }
        for bad in [
            "", "1.2.3.4", "123", "a..b", ".a", "a.", "-a", "a-", "a-.b", "a b", "a@b",
        ] {
            assert!(!valid_hostname(bad, false), "{bad}");
        }
        assert!(!valid_hostname(&"a".repeat(64), false));
        assert!(valid_hostname(&"a".repeat(63), false));
        let long = vec!["abc"; 65].join(".");
        assert!(!valid_hostname(&long, false));
        assert!(valid_hostname_flags("*.example", false, true));
        assert!(!valid_hostname_flags("a.*.example", false, true));
        let (r, logs) = msg::sandbox(|| valid_hostname("a_b..c", true));
        assert_eq!(r.ok(), Some(false));
        assert_eq!(
            logs,
            ["warning: valid_hostname: misplaced delimiter: a_b..c"]
        );
    }

    #[test]
    fn addresses() {
        for ok in [
            "1.2.3.4",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "1:2:3:4:5:6:7:8",
            "::ffff:1.2.3.4",
            "1:2:3:4:5:6:1.2.3.4",
        ] {
            assert!(valid_hostaddr(ok, false), "{ok}");
        }
        for bad in [
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "0.1.2.3",
            "1.2.3.",
            ".1.2.3",
            "1:2",
            ":1:2",
            "1:2:3:4:5:6:7:8:9",
            "1::2::3",
            "12345::",
            "1:2:3:4:5:6:7:1.2.3.4",
            "g::1",
        ] {
            assert!(!valid_hostaddr(bad, false), "{bad}");
        }
        let (_, logs) = msg::sandbox(|| valid_hostaddr("1.2.3", true));
        assert_eq!(
            logs,
            ["warning: valid_ipv4_hostaddr: invalid octet count: 1.2.3"]
        );
    }

    #[test]
    fn ports_and_utf8() {
        assert!(valid_hostport("25", false));
        assert!(valid_hostport("65535", false));
        assert!(!valid_hostport("65536", false));
        assert!(!valid_hostport("025", false));
        assert!(!valid_hostport("x", false));
        assert!(valid_utf8_string("abc"));
        assert!(valid_utf8_string(&crate::util::latin1::decode(
            "é".as_bytes()
        )));
        assert!(!valid_utf8_string("\u{e9}"));
        let idn = crate::util::latin1::decode("bücher.example".as_bytes());
        assert!(valid_utf8_hostname(true, &idn, false));
        assert!(!valid_utf8_hostname(false, &idn, false));
        let (r, _) = msg::sandbox(|| valid_utf8_hostname(true, "\u{e9}x.example", false));
        assert_eq!(r.ok(), Some(false));
    }
}
