//! Netstrings (`LEN:DATA,`), as Postfix's socketmap client speaks them, and
//! the exceptions Postfix names in its warnings.

use std::io::{self, BufRead, Write};

/// Why a netstring could not be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetstringError {
    /// Unexpected disconnect (also any other I/O error).
    Eof,
    /// The time limit expired.
    Time,
    /// Not a netstring.
    Format,
    /// Longer than the limit.
    Size,
}

impl NetstringError {
    /// Postfix's text for the error (netstring_strerror).
    pub fn text(self) -> &'static str {
        match self {
            NetstringError::Eof => "unexpected disconnect",
            NetstringError::Time => "time limit exceeded",
            NetstringError::Format => "input format error",
            NetstringError::Size => "input exceeds size limit",
        }
    }
}

fn io_class(e: &io::Error) -> NetstringError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => NetstringError::Time,
        _ => NetstringError::Eof,
    }
}

fn getc<R: BufRead>(r: &mut R) -> Result<u8, NetstringError> {
    loop {
        match r.fill_buf() {
            Ok([]) => return Err(NetstringError::Eof),
            Ok(b) => {
                let c = b[0];
                r.consume(1);
                return Ok(c);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_class(&e)),
        }
    }
}

/// Encode one netstring.
pub fn encode(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.push(b',');
    out
}

/// Write one netstring and flush.
pub fn put<W: Write>(w: &mut W, data: &[u8]) -> Result<(), NetstringError> {
    w.write_all(&encode(data)).map_err(|e| io_class(&e))?;
    w.flush().map_err(|e| io_class(&e))
}

/// Read one netstring of at most `limit` bytes (0: no limit).
pub fn get<R: BufRead>(r: &mut R, limit: usize) -> Result<Vec<u8>, NetstringError> {
    let mut len: usize = 0;
    loop {
        let c = getc(r)?;
        if c == b':' {
            break;
        }
        if !c.is_ascii_digit() {
            return Err(NetstringError::Format);
        }
        len = len
            .checked_mul(10)
            .and_then(|l| l.checked_add((c - b'0') as usize))
            .filter(|&l| l <= isize::MAX as usize)
            .ok_or(NetstringError::Size)?;
    }
    if limit > 0 && len > limit {
        return Err(NetstringError::Size);
    }
    let mut data = Vec::with_capacity(len.min(1 << 20));
    while data.len() < len {
        let avail = match r.fill_buf() {
            Ok([]) => return Err(NetstringError::Eof),
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_class(&e)),
        };
        let n = avail.len().min(len - data.len());
        data.extend_from_slice(&avail[..n]);
        r.consume(n);
    }
    if getc(r)? != b',' {
        return Err(NetstringError::Format);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        assert_eq!(encode(b"hello"), b"5:hello,");
        let mut r: &[u8] = b"5:hello,0:,";
        assert_eq!(get(&mut r, 0).unwrap(), b"hello");
        assert_eq!(get(&mut r, 0).unwrap(), b"");
        assert_eq!(get(&mut r, 0), Err(NetstringError::Eof));
        let mut r: &[u8] = b"5x";
        assert_eq!(get(&mut r, 0), Err(NetstringError::Format));
        let mut r: &[u8] = b"5:hellox";
        assert_eq!(get(&mut r, 0), Err(NetstringError::Format));
        let mut r: &[u8] = b"5:hel";
        assert_eq!(get(&mut r, 0), Err(NetstringError::Eof));
        let mut r: &[u8] = b"6:hello!,";
        assert_eq!(get(&mut r, 5), Err(NetstringError::Size));
        let mut r: &[u8] = b"99999999999999999999999:";
        assert_eq!(get(&mut r, 0), Err(NetstringError::Size));
    }
}
