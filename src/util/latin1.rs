//! Byte-exact text handling.
//!
//! Postfix treats configuration text as bytes: a main.cf line may hold any byte
//! except NUL and newline, and postconf prints it back unchanged. We keep such
//! text in a `String` where each byte is one `char` in U+0000..=U+00FF, so that
//! ordinary string code works and the bytes round-trip exactly on output.

/// Bytes to a string of one char per byte.
pub fn decode(bytes: &[u8]) -> String {
    if bytes.is_ascii() {
        // ASCII is the same in both encodings: a plain copy.
        return String::from_utf8(bytes.to_vec()).unwrap_or_default();
    }
    bytes.iter().map(|&b| b as char).collect()
}

/// [`decode`] taking the buffer: no copy when it is ASCII.
pub fn decode_owned(bytes: Vec<u8>) -> String {
    if bytes.is_ascii() {
        return String::from_utf8(bytes).unwrap_or_default();
    }
    decode(&bytes)
}

/// [`encode`] appending to `out` (no allocation of its own).
pub fn encode_into(s: &str, out: &mut Vec<u8>) {
    if s.is_ascii() {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    for c in s.chars() {
        let u = c as u32;
        if u < 256 {
            out.push(u as u8);
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
}

/// [`encode`] borrowing the text when it is ASCII.
pub fn encode_cow(s: &str) -> std::borrow::Cow<'_, [u8]> {
    if s.is_ascii() {
        std::borrow::Cow::Borrowed(s.as_bytes())
    } else {
        std::borrow::Cow::Owned(encode(s))
    }
}

/// A one-char-per-byte string back to its bytes. Chars above U+00FF (which
/// `decode` never produces) are written as UTF-8.
pub fn encode(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    encode_into(s, &mut out);
    out
}

/// [`decode`] without a copy when the bytes are ASCII (the common case for
/// mail content).
pub fn decode_cow(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    if bytes.is_ascii()
        && let Ok(s) = std::str::from_utf8(bytes)
    {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(decode(bytes))
}

/// An OS string (a command-line argument, an environment value) as a
/// one-char-per-byte string.
pub fn from_os(s: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    decode(s.as_bytes())
}

/// A one-char-per-byte string as a path.
pub fn to_path(s: &str) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStringExt;
    std::path::PathBuf::from(std::ffi::OsString::from_vec(encode(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_bytes() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(encode(&decode(&all)), all);
    }
}
