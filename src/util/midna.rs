//! Conversion of a UTF-8 domain name to its ASCII (A-label) form, as
//! Postfix's midna_domain_to_ascii does with ICU's UTS #46 processing:
//! labels are case-folded and Punycode-encoded (`bücher` → `xn--bcher-kva`),
//! and the checks UTS #46 makes on labels give ICU's error names in
//! Postfix's warning ("UIDNA_ERROR_LEADING_HYPHEN", ...). Results are
//! cached per process; a failure is logged once, when first seen.
//!
//! Divergence: ICU's full mapping and validity tables (NFC normalisation,
//! disallowed code points, combining marks, Bidi and ContextJ rules) are not
//! reproduced; any non-control character is accepted and mapped by Unicode
//! lower-casing.

use crate::global::msg;
use std::cell::RefCell;
use std::collections::HashMap;

const CACHE_SIZE: usize = 256;

thread_local! {
    static CACHE: RefCell<HashMap<String, Option<String>>> = RefCell::new(HashMap::new());
}

/// RFC 3492 Punycode encoding of one label.
pub fn punycode_encode(input: &str) -> Option<String> {
    const BASE: u32 = 36;
    const TMIN: u32 = 1;
    const TMAX: u32 = 26;
    const SKEW: u32 = 38;
    const DAMP: u32 = 700;
    fn adapt(mut delta: u32, numpoints: u32, first: bool) -> u32 {
        delta = if first { delta / DAMP } else { delta / 2 };
        delta += delta / numpoints;
        let mut k = 0;
        while delta > ((BASE - TMIN) * TMAX) / 2 {
            delta /= BASE - TMIN;
            k += BASE;
        }
        k + (BASE - TMIN + 1) * delta / (delta + SKEW)
    }
    fn digit(d: u32) -> char {
        (if d < 26 {
            b'a' + d as u8
        } else {
            b'0' + (d - 26) as u8
        }) as char
    }
    let cps: Vec<u32> = input.chars().map(|c| c as u32).collect();
    let mut out: String = input.chars().filter(|c| c.is_ascii()).collect();
    let b = out.len() as u32;
    let mut h = b;
    if b > 0 {
        out.push('-');
    }
    let (mut n, mut delta, mut bias) = (128u32, 0u32, 72u32);
    while (h as usize) < cps.len() {
        let m = *cps.iter().filter(|&&c| c >= n).min()?;
        delta = delta.checked_add((m - n).checked_mul(h + 1)?)?;
        n = m;
        for &c in &cps {
            if c < n {
                delta = delta.checked_add(1)?;
            }
            if c == n {
                let mut q = delta;
                let mut k = BASE;
                loop {
                    let t = if k <= bias {
                        TMIN
                    } else if k >= bias + TMAX {
                        TMAX
                    } else {
                        k - bias
                    };
                    if q < t {
                        break;
                    }
                    out.push(digit(t + (q - t) % (BASE - t)));
                    q = (q - t) / (BASE - t);
                    k += BASE;
                }
                out.push(digit(q));
                bias = adapt(delta, h + 1, h == b);
                delta = 0;
                h += 1;
            }
        }
        delta += 1;
        n += 1;
    }
    Some(out)
}

const ERR_EMPTY_LABEL: u32 = 1 << 0;
const ERR_LABEL_TOO_LONG: u32 = 1 << 1;
const ERR_DOMAIN_NAME_TOO_LONG: u32 = 1 << 2;
const ERR_LEADING_HYPHEN: u32 = 1 << 3;
const ERR_TRAILING_HYPHEN: u32 = 1 << 4;
const ERR_HYPHEN_3_4: u32 = 1 << 5;
const ERR_DISALLOWED: u32 = 1 << 7;

fn error_names(errors: u32) -> String {
    let table = [
        (ERR_EMPTY_LABEL, "UIDNA_ERROR_EMPTY_LABEL"),
        (ERR_LABEL_TOO_LONG, "UIDNA_ERROR_LABEL_TOO_LONG"),
        (ERR_DOMAIN_NAME_TOO_LONG, "UIDNA_ERROR_DOMAIN_NAME_TOO_LONG"),
        (ERR_LEADING_HYPHEN, "UIDNA_ERROR_LEADING_HYPHEN"),
        (ERR_TRAILING_HYPHEN, "UIDNA_ERROR_TRAILING_HYPHEN"),
        (ERR_HYPHEN_3_4, "UIDNA_ERROR_HYPHEN_3_4"),
        (ERR_DISALLOWED, "UIDNA_ERROR_DISALLOWED"),
    ];
    table
        .iter()
        .filter(|(b, _)| errors & b != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

/// UTS #46 ToASCII of a UTF-8 name: the A-label form, or ICU's error names.
fn to_ascii_uncached(name: &str) -> Result<String, String> {
    let mut errors = 0;
    let mut labels = Vec::new();
    let parts: Vec<&str> = name.split('.').collect();
    for (i, label) in parts.iter().enumerate() {
        let mapped: String = label.chars().flat_map(|c| c.to_lowercase()).collect();
        if mapped.is_empty() {
            // A trailing dot (the root) is allowed.
            if i + 1 != parts.len() || parts.len() == 1 {
                errors |= ERR_EMPTY_LABEL;
            }
            labels.push(String::new());
            continue;
        }
        if mapped.chars().any(|c| c.is_control() || c.is_whitespace()) {
            errors |= ERR_DISALLOWED;
        }
        if mapped.starts_with('-') {
            errors |= ERR_LEADING_HYPHEN;
        }
        if mapped.ends_with('-') {
            errors |= ERR_TRAILING_HYPHEN;
        }
        if mapped.chars().nth(2) == Some('-') && mapped.chars().nth(3) == Some('-') {
            errors |= ERR_HYPHEN_3_4;
        }
        let ascii = if mapped.is_ascii() {
            mapped
        } else {
            match punycode_encode(&mapped) {
                Some(p) => format!("xn--{p}"),
                None => {
                    errors |= ERR_DISALLOWED;
                    String::new()
                }
            }
        };
        if ascii.len() > 63 {
            errors |= ERR_LABEL_TOO_LONG;
        }
        labels.push(ascii);
    }
    let out = labels.join(".");
    let len = out.strip_suffix('.').unwrap_or(&out).len();
    if len > 253 {
        errors |= ERR_DOMAIN_NAME_TOO_LONG;
    }
    if errors != 0 {
        return Err(error_names(errors));
    }
    Ok(out)
}

/// Postfix's midna_domain_to_ascii: the ASCII form of a (UTF-8, in
/// one-char-per-byte text) domain name, or `None` after logging why not.
pub fn domain_to_ascii(name: &str) -> Option<String> {
    if let Some(hit) = CACHE.with(|c| c.borrow().get(name).cloned()) {
        return hit;
    }
    let result = convert(name);
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= CACHE_SIZE {
            c.clear();
        }
        c.insert(name.to_string(), result.clone());
    });
    result
}

fn convert(name: &str) -> Option<String> {
    const ME: &str = "midna_domain_to_ascii_create";
    let shown: String = name.chars().take(100).collect();
    let bytes = crate::util::latin1::encode(name);
    let Ok(utf8) = std::str::from_utf8(&bytes) else {
        msg::warn(&format!(
            "{ME}: Problem translating domain \"{shown}\" to ASCII form: malformed UTF-8"
        ));
        return None;
    };
    match to_ascii_uncached(utf8) {
        Ok(a) if !a.is_empty() => {
            if !crate::util::valid_hostname::valid_hostname(&a, false) {
                msg::warn(&format!(
                    "{ME}: Problem translating domain \"{shown}\" to ASCII form: malformed ASCII label(s)"
                ));
                return None;
            }
            Some(a)
        }
        Ok(_) => {
            msg::warn(&format!(
                "{ME}: Problem translating domain \"{shown}\" to ASCII form: UIDNA_ERROR_EMPTY_LABEL"
            ));
            None
        }
        Err(e) => {
            msg::warn(&format!(
                "{ME}: Problem translating domain \"{shown}\" to ASCII form: {e}"
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn punycode_rfc3492_samples() {
        assert_eq!(punycode_encode("bücher").as_deref(), Some("bcher-kva"));
        assert_eq!(punycode_encode("münchen").as_deref(), Some("mnchen-3ya"));
        assert_eq!(punycode_encode("☃").as_deref(), Some("n3h"));
        assert_eq!(
            punycode_encode("他们为什么不说中文").as_deref(),
            Some("ihqwcrb4cv8a8dqg056pqjye")
        );
    }

    #[test]
    fn to_ascii() {
        let l = |s: &str| crate::util::latin1::decode(s.as_bytes());
        assert_eq!(
            domain_to_ascii(&l("Bücher.Example")).as_deref(),
            Some("xn--bcher-kva.example")
        );
        let (r, logs) = msg::sandbox(|| domain_to_ascii(&l("-bücher.example")));
        assert_eq!(r.ok(), Some(None));
        assert_eq!(logs.len(), 1);
        assert!(logs[0].ends_with("to ASCII form: UIDNA_ERROR_LEADING_HYPHEN"));
        assert_eq!(
            to_ascii_uncached("bü..x"),
            Err("UIDNA_ERROR_EMPTY_LABEL".into())
        );
        assert_eq!(
            to_ascii_uncached("-bü-"),
            Err("UIDNA_ERROR_LEADING_HYPHEN,UIDNA_ERROR_TRAILING_HYPHEN".into())
        );
    }
}
