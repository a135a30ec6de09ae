//! Case folding as Postfix's casefold(): ASCII lower-casing for all-ASCII
//! text, and Unicode full case folding (what ICU's u_strFoldCase does with
//! the default options) for UTF-8 text when SMTPUTF8 support is on.
//!
//! Text is one-char-per-byte (see [`crate::util::latin1`]). Bytes that are
//! not valid UTF-8 are copied unchanged, as ICU does.

use std::sync::atomic::{AtomicBool, Ordering};

/// Postfix's util_utf8_enable: SMTPUTF8 support is on (set from
/// `smtputf8_enable` once main.cf is read). It chooses UTF-8 or ASCII case
/// folding in [`casefold`], whether tables get the UTF-8 layer, and how
/// messages show non-ASCII text.
static UTIL_UTF8_ENABLE: AtomicBool = AtomicBool::new(false);

/// Turn SMTPUTF8 support (Postfix's util_utf8_enable) on or off.
pub fn set_utf8_enable(on: bool) {
    UTIL_UTF8_ENABLE.store(on, Ordering::Relaxed);
}

/// Is SMTPUTF8 support (Postfix's util_utf8_enable) on?
pub fn utf8_enable() -> bool {
    UTIL_UTF8_ENABLE.load(Ordering::Relaxed)
}

/// Postfix's casefold(): Unicode case folding of UTF-8 text when SMTPUTF8
/// support is on, else ASCII lower-casing.
pub fn casefold(text: &str) -> String {
    if utf8_enable() {
        casefold_utf8(text)
    } else {
        lowercase_ascii(text)
    }
}

/// Postfix's valid_utf8_string(): RFC 3629 UTF-8 (no surrogates, no
/// over-long forms, nothing above U+10FFFF).
pub fn valid_utf8(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok()
}

/// Postfix's allascii(): true when every byte before the first NUL is ASCII.
pub fn all_ascii(text: &str) -> bool {
    text.chars()
        .take_while(|&c| c != '\0')
        .all(|c| c.is_ascii())
}

/// Lower-case ASCII letters only (Postfix's lowercase()).
pub fn lowercase_ascii(text: &str) -> String {
    text.to_ascii_lowercase()
}

/// Full Unicode case folding of one character.
fn fold_char(c: char, out: &mut String) {
    let cp = c as u32;
    if cp < 0x80 {
        out.push(c.to_ascii_lowercase());
        return;
    }
    if let Ok(i) = FOLD_EXCEPTIONS.binary_search_by(|(k, _)| k.cmp(&cp)) {
        out.push_str(FOLD_EXCEPTIONS[i].1);
        return;
    }
    out.extend(c.to_lowercase());
}

/// casefold() with UTF-8 enabled, on one-char-per-byte text: ASCII text is
/// lower-cased; other text is decoded as UTF-8 and folded, invalid byte
/// sequences are kept as they are.
pub fn casefold_utf8(text: &str) -> String {
    if all_ascii(text) {
        return lowercase_ascii(text);
    }
    let bytes = crate::util::latin1::encode(text);
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut rest: &[u8] = &bytes;
    while !rest.is_empty() {
        let (good, bad) = match std::str::from_utf8(rest) {
            Ok(_) => (rest.len(), 0),
            Err(e) => (
                e.valid_up_to(),
                e.error_len().unwrap_or(rest.len() - e.valid_up_to()),
            ),
        };
        if let Ok(s) = std::str::from_utf8(&rest[..good]) {
            let mut folded = String::with_capacity(s.len());
            for c in s.chars() {
                fold_char(c, &mut folded);
            }
            out.extend_from_slice(folded.as_bytes());
        }
        out.extend_from_slice(&rest[good..good + bad]);
        rest = &rest[good + bad..];
    }
    crate::util::latin1::decode(&out)
}

// Unicode 14.0.0: 297 entries.
static FOLD_EXCEPTIONS: &[(u32, &str)] = &[
    (0x00b5, "\u{03bc}"),
    (0x00df, "\u{0073}\u{0073}"),
    (0x0149, "\u{02bc}\u{006e}"),
    (0x017f, "\u{0073}"),
    (0x01f0, "\u{006a}\u{030c}"),
    (0x0345, "\u{03b9}"),
    (0x0390, "\u{03b9}\u{0308}\u{0301}"),
    (0x03b0, "\u{03c5}\u{0308}\u{0301}"),
    (0x03c2, "\u{03c3}"),
    (0x03d0, "\u{03b2}"),
    (0x03d1, "\u{03b8}"),
    (0x03d5, "\u{03c6}"),
    (0x03d6, "\u{03c0}"),
    (0x03f0, "\u{03ba}"),
    (0x03f1, "\u{03c1}"),
    (0x03f5, "\u{03b5}"),
    (0x0587, "\u{0565}\u{0582}"),
    (0x13a0, "\u{13a0}"),
    (0x13a1, "\u{13a1}"),
    (0x13a2, "\u{13a2}"),
    (0x13a3, "\u{13a3}"),
    (0x13a4, "\u{13a4}"),
    (0x13a5, "\u{13a5}"),
    (0x13a6, "\u{13a6}"),
    (0x13a7, "\u{13a7}"),
    (0x13a8, "\u{13a8}"),
    (0x13a9, "\u{13a9}"),
    (0x13aa, "\u{13aa}"),
    (0x13ab, "\u{13ab}"),
    (0x13ac, "\u{13ac}"),
    (0x13ad, "\u{13ad}"),
    (0x13ae, "\u{13ae}"),
    (0x13af, "\u{13af}"),
    (0x13b0, "\u{13b0}"),
    (0x13b1, "\u{13b1}"),
    (0x13b2, "\u{13b2}"),
    (0x13b3, "\u{13b3}"),
    (0x13b4, "\u{13b4}"),
    (0x13b5, "\u{13b5}"),
    (0x13b6, "\u{13b6}"),
    (0x13b7, "\u{13b7}"),
    (0x13b8, "\u{13b8}"),
    (0x13b9, "\u{13b9}"),
    (0x13ba, "\u{13ba}"),
    (0x13bb, "\u{13bb}"),
    (0x13bc, "\u{13bc}"),
    (0x13bd, "\u{13bd}"),
    (0x13be, "\u{13be}"),
    (0x13bf, "\u{13bf}"),
    (0x13c0, "\u{13c0}"),
    (0x13c1, "\u{13c1}"),
    (0x13c2, "\u{13c2}"),
    (0x13c3, "\u{13c3}"),
    (0x13c4, "\u{13c4}"),
    (0x13c5, "\u{13c5}"),
    (0x13c6, "\u{13c6}"),
    (0x13c7, "\u{13c7}"),
    (0x13c8, "\u{13c8}"),
    (0x13c9, "\u{13c9}"),
    (0x13ca, "\u{13ca}"),
    (0x13cb, "\u{13cb}"),
    (0x13cc, "\u{13cc}"),
    (0x13cd, "\u{13cd}"),
    (0x13ce, "\u{13ce}"),
    (0x13cf, "\u{13cf}"),
    (0x13d0, "\u{13d0}"),
    (0x13d1, "\u{13d1}"),
    (0x13d2, "\u{13d2}"),
    (0x13d3, "\u{13d3}"),
    (0x13d4, "\u{13d4}"),
    (0x13d5, "\u{13d5}"),
    (0x13d6, "\u{13d6}"),
    (0x13d7, "\u{13d7}"),
    (0x13d8, "\u{13d8}"),
    (0x13d9, "\u{13d9}"),
    (0x13da, "\u{13da}"),
    (0x13db, "\u{13db}"),
    (0x13dc, "\u{13dc}"),
    (0x13dd, "\u{13dd}"),
    (0x13de, "\u{13de}"),
    (0x13df, "\u{13df}"),
    (0x13e0, "\u{13e0}"),
    (0x13e1, "\u{13e1}"),
    (0x13e2, "\u{13e2}"),
    (0x13e3, "\u{13e3}"),
    (0x13e4, "\u{13e4}"),
    (0x13e5, "\u{13e5}"),
    (0x13e6, "\u{13e6}"),
    (0x13e7, "\u{13e7}"),
    (0x13e8, "\u{13e8}"),
    (0x13e9, "\u{13e9}"),
    (0x13ea, "\u{13ea}"),
    (0x13eb, "\u{13eb}"),
    (0x13ec, "\u{13ec}"),
    (0x13ed, "\u{13ed}"),
    (0x13ee, "\u{13ee}"),
    (0x13ef, "\u{13ef}"),
    (0x13f0, "\u{13f0}"),
    (0x13f1, "\u{13f1}"),
    (0x13f2, "\u{13f2}"),
    (0x13f3, "\u{13f3}"),
    (0x13f4, "\u{13f4}"),
    (0x13f5, "\u{13f5}"),
    (0x13f8, "\u{13f0}"),
    (0x13f9, "\u{13f1}"),
    (0x13fa, "\u{13f2}"),
    (0x13fb, "\u{13f3}"),
    (0x13fc, "\u{13f4}"),
    (0x13fd, "\u{13f5}"),
    (0x1c80, "\u{0432}"),
    (0x1c81, "\u{0434}"),
    (0x1c82, "\u{043e}"),
    (0x1c83, "\u{0441}"),
    (0x1c84, "\u{0442}"),
    (0x1c85, "\u{0442}"),
    (0x1c86, "\u{044a}"),
    (0x1c87, "\u{0463}"),
    (0x1c88, "\u{a64b}"),
    (0x1e96, "\u{0068}\u{0331}"),
    (0x1e97, "\u{0074}\u{0308}"),
    (0x1e98, "\u{0077}\u{030a}"),
    (0x1e99, "\u{0079}\u{030a}"),
    (0x1e9a, "\u{0061}\u{02be}"),
    (0x1e9b, "\u{1e61}"),
    (0x1e9e, "\u{0073}\u{0073}"),
    (0x1f50, "\u{03c5}\u{0313}"),
    (0x1f52, "\u{03c5}\u{0313}\u{0300}"),
    (0x1f54, "\u{03c5}\u{0313}\u{0301}"),
    (0x1f56, "\u{03c5}\u{0313}\u{0342}"),
    (0x1f80, "\u{1f00}\u{03b9}"),
    (0x1f81, "\u{1f01}\u{03b9}"),
    (0x1f82, "\u{1f02}\u{03b9}"),
    (0x1f83, "\u{1f03}\u{03b9}"),
    (0x1f84, "\u{1f04}\u{03b9}"),
    (0x1f85, "\u{1f05}\u{03b9}"),
    (0x1f86, "\u{1f06}\u{03b9}"),
    (0x1f87, "\u{1f07}\u{03b9}"),
    (0x1f88, "\u{1f00}\u{03b9}"),
    (0x1f89, "\u{1f01}\u{03b9}"),
    (0x1f8a, "\u{1f02}\u{03b9}"),
    (0x1f8b, "\u{1f03}\u{03b9}"),
    (0x1f8c, "\u{1f04}\u{03b9}"),
    (0x1f8d, "\u{1f05}\u{03b9}"),
    (0x1f8e, "\u{1f06}\u{03b9}"),
    (0x1f8f, "\u{1f07}\u{03b9}"),
    (0x1f90, "\u{1f20}\u{03b9}"),
    (0x1f91, "\u{1f21}\u{03b9}"),
    (0x1f92, "\u{1f22}\u{03b9}"),
    (0x1f93, "\u{1f23}\u{03b9}"),
    (0x1f94, "\u{1f24}\u{03b9}"),
    (0x1f95, "\u{1f25}\u{03b9}"),
    (0x1f96, "\u{1f26}\u{03b9}"),
    (0x1f97, "\u{1f27}\u{03b9}"),
    (0x1f98, "\u{1f20}\u{03b9}"),
    (0x1f99, "\u{1f21}\u{03b9}"),
    (0x1f9a, "\u{1f22}\u{03b9}"),
    (0x1f9b, "\u{1f23}\u{03b9}"),
    (0x1f9c, "\u{1f24}\u{03b9}"),
    (0x1f9d, "\u{1f25}\u{03b9}"),
    (0x1f9e, "\u{1f26}\u{03b9}"),
    (0x1f9f, "\u{1f27}\u{03b9}"),
    (0x1fa0, "\u{1f60}\u{03b9}"),
    (0x1fa1, "\u{1f61}\u{03b9}"),
    (0x1fa2, "\u{1f62}\u{03b9}"),
    (0x1fa3, "\u{1f63}\u{03b9}"),
    (0x1fa4, "\u{1f64}\u{03b9}"),
    (0x1fa5, "\u{1f65}\u{03b9}"),
    (0x1fa6, "\u{1f66}\u{03b9}"),
    (0x1fa7, "\u{1f67}\u{03b9}"),
    (0x1fa8, "\u{1f60}\u{03b9}"),
    (0x1fa9, "\u{1f61}\u{03b9}"),
    (0x1faa, "\u{1f62}\u{03b9}"),
    (0x1fab, "\u{1f63}\u{03b9}"),
    (0x1fac, "\u{1f64}\u{03b9}"),
    (0x1fad, "\u{1f65}\u{03b9}"),
    (0x1fae, "\u{1f66}\u{03b9}"),
    (0x1faf, "\u{1f67}\u{03b9}"),
    (0x1fb2, "\u{1f70}\u{03b9}"),
    (0x1fb3, "\u{03b1}\u{03b9}"),
    (0x1fb4, "\u{03ac}\u{03b9}"),
    (0x1fb6, "\u{03b1}\u{0342}"),
    (0x1fb7, "\u{03b1}\u{0342}\u{03b9}"),
    (0x1fbc, "\u{03b1}\u{03b9}"),
    (0x1fbe, "\u{03b9}"),
    (0x1fc2, "\u{1f74}\u{03b9}"),
    (0x1fc3, "\u{03b7}\u{03b9}"),
    (0x1fc4, "\u{03ae}\u{03b9}"),
    (0x1fc6, "\u{03b7}\u{0342}"),
    (0x1fc7, "\u{03b7}\u{0342}\u{03b9}"),
    (0x1fcc, "\u{03b7}\u{03b9}"),
    (0x1fd2, "\u{03b9}\u{0308}\u{0300}"),
    (0x1fd3, "\u{03b9}\u{0308}\u{0301}"),
    (0x1fd6, "\u{03b9}\u{0342}"),
    (0x1fd7, "\u{03b9}\u{0308}\u{0342}"),
    (0x1fe2, "\u{03c5}\u{0308}\u{0300}"),
    (0x1fe3, "\u{03c5}\u{0308}\u{0301}"),
    (0x1fe4, "\u{03c1}\u{0313}"),
    (0x1fe6, "\u{03c5}\u{0342}"),
    (0x1fe7, "\u{03c5}\u{0308}\u{0342}"),
    (0x1ff2, "\u{1f7c}\u{03b9}"),
    (0x1ff3, "\u{03c9}\u{03b9}"),
    (0x1ff4, "\u{03ce}\u{03b9}"),
    (0x1ff6, "\u{03c9}\u{0342}"),
    (0x1ff7, "\u{03c9}\u{0342}\u{03b9}"),
    (0x1ffc, "\u{03c9}\u{03b9}"),
    (0xab70, "\u{13a0}"),
    (0xab71, "\u{13a1}"),
    (0xab72, "\u{13a2}"),
    (0xab73, "\u{13a3}"),
    (0xab74, "\u{13a4}"),
    (0xab75, "\u{13a5}"),
    (0xab76, "\u{13a6}"),
    (0xab77, "\u{13a7}"),
    (0xab78, "\u{13a8}"),
    (0xab79, "\u{13a9}"),
    (0xab7a, "\u{13aa}"),
    (0xab7b, "\u{13ab}"),
    (0xab7c, "\u{13ac}"),
    (0xab7d, "\u{13ad}"),
    (0xab7e, "\u{13ae}"),
    (0xab7f, "\u{13af}"),
    (0xab80, "\u{13b0}"),
    (0xab81, "\u{13b1}"),
    (0xab82, "\u{13b2}"),
    (0xab83, "\u{13b3}"),
    (0xab84, "\u{13b4}"),
    (0xab85, "\u{13b5}"),
    (0xab86, "\u{13b6}"),
    (0xab87, "\u{13b7}"),
    (0xab88, "\u{13b8}"),
    (0xab89, "\u{13b9}"),
    (0xab8a, "\u{13ba}"),
    (0xab8b, "\u{13bb}"),
    (0xab8c, "\u{13bc}"),
    (0xab8d, "\u{13bd}"),
    (0xab8e, "\u{13be}"),
    (0xab8f, "\u{13bf}"),
    (0xab90, "\u{13c0}"),
    (0xab91, "\u{13c1}"),
    (0xab92, "\u{13c2}"),
    (0xab93, "\u{13c3}"),
    (0xab94, "\u{13c4}"),
    (0xab95, "\u{13c5}"),
    (0xab96, "\u{13c6}"),
    (0xab97, "\u{13c7}"),
    (0xab98, "\u{13c8}"),
    (0xab99, "\u{13c9}"),
    (0xab9a, "\u{13ca}"),
    (0xab9b, "\u{13cb}"),
    (0xab9c, "\u{13cc}"),
    (0xab9d, "\u{13cd}"),
    (0xab9e, "\u{13ce}"),
    (0xab9f, "\u{13cf}"),
    (0xaba0, "\u{13d0}"),
    (0xaba1, "\u{13d1}"),
    (0xaba2, "\u{13d2}"),
    (0xaba3, "\u{13d3}"),
    (0xaba4, "\u{13d4}"),
    (0xaba5, "\u{13d5}"),
    (0xaba6, "\u{13d6}"),
    (0xaba7, "\u{13d7}"),
    (0xaba8, "\u{13d8}"),
    (0xaba9, "\u{13d9}"),
    (0xabaa, "\u{13da}"),
    (0xabab, "\u{13db}"),
    (0xabac, "\u{13dc}"),
    (0xabad, "\u{13dd}"),
    (0xabae, "\u{13de}"),
    (0xabaf, "\u{13df}"),
    (0xabb0, "\u{13e0}"),
    (0xabb1, "\u{13e1}"),
    (0xabb2, "\u{13e2}"),
    (0xabb3, "\u{13e3}"),
    (0xabb4, "\u{13e4}"),
    (0xabb5, "\u{13e5}"),
    (0xabb6, "\u{13e6}"),
    (0xabb7, "\u{13e7}"),
    (0xabb8, "\u{13e8}"),
    (0xabb9, "\u{13e9}"),
    (0xabba, "\u{13ea}"),
    (0xabbb, "\u{13eb}"),
    (0xabbc, "\u{13ec}"),
    (0xabbd, "\u{13ed}"),
    (0xabbe, "\u{13ee}"),
    (0xabbf, "\u{13ef}"),
    (0xfb00, "\u{0066}\u{0066}"),
    (0xfb01, "\u{0066}\u{0069}"),
    (0xfb02, "\u{0066}\u{006c}"),
    (0xfb03, "\u{0066}\u{0066}\u{0069}"),
    (0xfb04, "\u{0066}\u{0066}\u{006c}"),
    (0xfb05, "\u{0073}\u{0074}"),
    (0xfb06, "\u{0073}\u{0074}"),
    (0xfb13, "\u{0574}\u{0576}"),
    (0xfb14, "\u{0574}\u{0565}"),
    (0xfb15, "\u{0574}\u{056b}"),
    (0xfb16, "\u{057e}\u{0576}"),
    (0xfb17, "\u{0574}\u{056d}"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::latin1::{decode, encode};

    fn fold(s: &str) -> String {
        String::from_utf8(encode(&casefold_utf8(&decode(s.as_bytes())))).unwrap()
    }

    #[test]
    fn folds_like_icu() {
        assert_eq!(fold("ABC"), "abc");
        assert_eq!(fold("BÄR"), "bär");
        assert_eq!(fold("Straße"), "strasse");
        assert_eq!(fold("ΣΊΣΥΦΟΣ"), "σίσυφοσ");
        assert_eq!(fold("µ"), "μ");
        assert!(FOLD_EXCEPTIONS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn keeps_invalid_bytes() {
        let s = decode(b"A\xffB\xc3\x84");
        assert_eq!(encode(&casefold_utf8(&s)), b"a\xffb\xc3\xa4");
        assert!(!valid_utf8(b"\xed\xa0\x80"));
        assert!(valid_utf8("ä".as_bytes()));
    }
}
