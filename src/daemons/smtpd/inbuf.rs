//! smtpd's input buffer: bytes the client sent and the protocol has not
//! consumed yet. Taking a line from the front moves a read offset instead
//! of shifting the rest of the buffer (a 64 KB read holds ~900 lines of
//! message text; shifting after each was the largest cost of a big
//! message). Reads as a `[u8]` of the unconsumed bytes.

/// The unconsumed input.
#[derive(Debug, Default, Clone)]
pub struct InBuf {
    buf: Vec<u8>,
    pos: usize,
}

impl InBuf {
    pub fn new() -> InBuf {
        InBuf::default()
    }

    /// Append input, first dropping what was consumed when that is most
    /// of the buffer.
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        if self.pos == self.buf.len() {
            // Everything consumed: start over without moving anything.
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Consume the first `r.end` bytes, returning them (as `Vec::drain`,
    /// they may be ignored).
    pub fn drain(&mut self, r: std::ops::RangeTo<usize>) -> Drained<'_> {
        let start = self.pos;
        let end = start + r.end;
        assert!(end <= self.buf.len(), "InBuf::drain past the end");
        self.pos = end;
        Drained(self.buf[start..end].iter())
    }

    /// Consume everything.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.pos = 0;
    }
}

/// The bytes [`InBuf::drain`] consumed.
pub struct Drained<'a>(std::slice::Iter<'a, u8>);

impl Iterator for Drained<'_> {
    type Item = u8;
    fn next(&mut self) -> Option<u8> {
        self.0.next().copied()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl std::ops::Deref for InBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[self.pos..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumes_from_the_front() {
        let mut b = InBuf::new();
        b.extend_from_slice(b"one\r\ntwo\r\nthree");
        let first: Vec<u8> = b.drain(..5).collect();
        assert_eq!(first, b"one\r\n");
        assert_eq!(&b[..], b"two\r\nthree");
        assert_eq!(b.iter().position(|&c| c == b'\n'), Some(4));
        b.drain(..5);
        b.extend_from_slice(b"!\r\n");
        assert_eq!(&b[..], b"three!\r\n");
        assert_eq!(b.len(), 8);
        let all: Vec<u8> = b.drain(..8).collect();
        assert_eq!(all, b"three!\r\n");
        assert!(b.is_empty());
        b.extend_from_slice(b"x");
        b.clear();
        assert!(b.is_empty());
    }
}
