//! Postfix's null-terminated attribute protocol (attr_print0/attr_scan0),
//! which sendmail and postdrop speak over postdrop's stdin/stdout: each
//! attribute is `name NUL value NUL`, numbers in decimal, and a lone NUL
//! ends a group.

use std::io::{self, BufRead, Write};

/// Encode one attribute group.
pub fn encode(attrs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        attrs
            .iter()
            .map(|(n, v)| n.len() + v.len() + 2)
            .sum::<usize>()
            + 1,
    );
    encode_into(attrs, &mut out);
    out
}

/// [`encode`] appending to `out`.
pub fn encode_into(attrs: &[(&str, &str)], out: &mut Vec<u8>) {
    for (n, v) in attrs {
        crate::util::latin1::encode_into(n, out);
        out.push(0);
        crate::util::latin1::encode_into(v, out);
        out.push(0);
    }
    out.push(0);
}

/// Write one attribute group and flush.
pub fn print<W: Write + ?Sized>(w: &mut W, attrs: &[(&str, &str)]) -> io::Result<()> {
    w.write_all(&encode(attrs))?;
    w.flush()
}

fn read_string<R: BufRead + ?Sized>(r: &mut R) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = r.read_until(0, &mut buf)?;
    if n == 0 || buf.last() != Some(&0) {
        return Ok(None);
    }
    buf.pop();
    Ok(Some(crate::util::latin1::decode_owned(buf)))
}

/// Read one attribute group: the (name, value) pairs up to the
/// terminator; `None` on a premature end of input.
pub fn scan<R: BufRead + ?Sized>(r: &mut R) -> io::Result<Option<Vec<(String, String)>>> {
    let mut v = Vec::new();
    loop {
        let Some(name) = read_string(r)? else {
            return Ok(None);
        };
        if name.is_empty() {
            return Ok(Some(v));
        }
        let Some(value) = read_string(r)? else {
            return Ok(None);
        };
        v.push((name, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let b = encode(&[("protocol", "postdrop_protocol"), ("queue_id", "ABC")]);
        assert_eq!(b, b"protocol\0postdrop_protocol\0queue_id\0ABC\0\0");
        let mut r = &b[..];
        let v = scan(&mut r).unwrap().unwrap();
        assert_eq!(v[1], ("queue_id".into(), "ABC".into()));
        let mut r = &b"status\x000"[..];
        assert!(scan(&mut r).unwrap().is_none());
    }
}
