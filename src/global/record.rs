//! Queue-file records as Postfix 3.7 writes and reads them (`record.c`).
//!
//! A record is one type byte, the payload length in 7-bit groups (low group
//! first, bit 0x80 set on every group but the last), then the payload.
//! Writing: [`rec_put`] and friends, on any `Write`. Reading: [`QueueStream`]
//! is a buffered reader over an open file (or stdin) that keeps Postfix's
//! VSTREAM semantics for `ftell`/`fseek` on pipes, and [`rec_get_raw`] reads
//! one record with Postfix's options and warning texts. A record's payload
//! is read in bounded chunks, so memory grows only with data that is really
//! there, and never beyond `maxsize` when one is given.

use crate::global::msg;
use crate::global::rec_type;
use crate::util::latin1;
use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// Follow PTR records.
pub const FLAG_FOLLOW_PTR: u32 = 1 << 0;
/// Skip DTXT (padding) records.
pub const FLAG_SKIP_DTXT: u32 = 1 << 1;
/// After the END record, seek to the end of the file.
pub const FLAG_SEEK_END: u32 = 1 << 2;
/// No transparency: every record is returned as it is.
pub const FLAG_NONE: u32 = 0;
/// What `rec_get` does.
pub const FLAG_DEFAULT: u32 = FLAG_FOLLOW_PTR | FLAG_SKIP_DTXT | FLAG_SEEK_END;

/// Records that `rec_get` hides from its caller.
pub fn hidden_type(t: u8) -> bool {
    t == rec_type::PTR || t == rec_type::DTXT
}

/// The outcome of reading one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rec {
    /// A record of this type; the payload is in the caller's buffer.
    Type(u8),
    /// End of input before a type byte.
    Eof,
    /// A malformed record (a warning has been reported).
    Error,
}

// ---------------------------------------------------------------- writing

/// The total size of a record with a payload of `len` bytes.
pub fn rec_space_need(len: usize) -> usize {
    let mut c = 1;
    let mut l = len >> 7;
    while l != 0 {
        c += 1;
        l >>= 7;
    }
    1 + c + len
}

/// A record's type byte and length (base-128, low bits first) into `out`;
/// returns how many bytes that took (at most 11).
pub fn rec_encode_header(out: &mut [u8; 11], t: u8, len: usize) -> usize {
    out[0] = t;
    let mut n = 1;
    let mut rest = len;
    loop {
        let mut b = (rest & 0x7f) as u8;
        rest >>= 7;
        if rest != 0 {
            b |= 0x80;
        }
        out[n] = b;
        n += 1;
        if rest == 0 {
            return n;
        }
    }
}

/// Encode a record into bytes.
pub fn rec_encode(out: &mut Vec<u8>, t: u8, data: &[u8]) {
    out.push(t);
    let mut rest = data.len();
    loop {
        let mut b = (rest & 0x7f) as u8;
        rest >>= 7;
        if rest != 0 {
            b |= 0x80;
        }
        out.push(b);
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(data);
}

/// Write one record.
pub fn rec_put<W: Write + ?Sized>(w: &mut W, t: u8, data: &[u8]) -> io::Result<()> {
    if msg::verbose() > 2 {
        msg::info(&format!(
            "rec_put: type {} len {} data {}",
            t as char,
            data.len(),
            c_prefix(data, 10)
        ));
    }
    let mut rec = Vec::with_capacity(rec_space_need(data.len()));
    rec_encode(&mut rec, t, data);
    w.write_all(&rec)
}

/// Write one record whose payload is one-char-per-byte text.
pub fn rec_fputs<W: Write + ?Sized>(w: &mut W, t: u8, text: &str) -> io::Result<()> {
    rec_put(w, t, &latin1::encode(text))
}

/// Write a padding record of `len` bytes in total (payload: a right-aligned
/// "0", at least one byte).
pub fn rec_pad<W: Write + ?Sized>(w: &mut W, t: u8, len: i64) -> io::Result<()> {
    let width = (len - 2).max(1) as usize;
    rec_put(w, t, format!("{:>width$}", "0").as_bytes())
}

/// Overwrite the type byte of the record at `offset` (used to kill records
/// in place).
pub fn rec_put_type<W: Write + Seek + ?Sized>(w: &mut W, t: u8, offset: u64) -> io::Result<()> {
    w.seek(SeekFrom::Start(offset))?;
    w.write_all(&[t])
}

/// Write the SIZE record (always 97 bytes in total).
pub fn rec_put_size<W: Write + ?Sized>(w: &mut W, fields: [i64; 6]) -> io::Result<()> {
    match size_payload(fields) {
        Some(b) => rec_put(w, rec_type::SIZE, &b),
        None => rec_put(w, rec_type::SIZE, rec_type::size_payload(fields).as_bytes()),
    }
}

/// The SIZE record payload, six `%15ld` fields separated by blanks, as
/// [`rec_type::size_payload`] writes it but without a formatter; `None`
/// for a negative value or one wider than its field (the formatter's
/// case).
pub fn size_payload(fields: [i64; 6]) -> Option<[u8; 95]> {
    let mut out = [b' '; 95];
    for (k, &v) in fields.iter().enumerate() {
        if !(0..=999_999_999_999_999).contains(&v) {
            return None;
        }
        crate::util::stringops::decimal_tail(&mut out[k * 16..k * 16 + 15], v as u64);
    }
    Some(out)
}

/// Rewrite the SIZE record at the start of a queue file in place.
pub fn rec_rewrite_size<W: Write + Seek + ?Sized>(w: &mut W, fields: [i64; 6]) -> io::Result<()> {
    w.seek(SeekFrom::Start(0))?;
    rec_put_size(w, fields)
}

/// Write a PTR record with a fixed-width target (0 is a dummy pointer).
pub fn rec_put_ptr<W: Write + ?Sized>(w: &mut W, target: i64) -> io::Result<()> {
    rec_put(
        w,
        rec_type::PTR,
        rec_type::long15_payload(target).as_bytes(),
    )
}

/// Write a WARN record with a fixed-width time.
pub fn rec_put_warn<W: Write + ?Sized>(w: &mut W, when: i64) -> io::Result<()> {
    rec_put(w, rec_type::WARN, rec_type::long15_payload(when).as_bytes())
}

/// Write a TIME record.
pub fn rec_put_time<W: Write + ?Sized>(w: &mut W, sec: i64, usec: i64) -> io::Result<()> {
    rec_put(
        w,
        rec_type::TIME,
        rec_type::time_payload(sec, usec).as_bytes(),
    )
}

/// The first `max` bytes of a payload up to any NUL, as C's `%.Ns` shows it.
fn c_prefix(data: &[u8], max: usize) -> String {
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    latin1::decode(&data[..end.min(max)])
}

/// A payload as C code sees it: up to the first NUL.
pub fn c_str(data: &[u8]) -> &[u8] {
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    &data[..end]
}

// ---------------------------------------------------------------- reading

const BUFSIZE: usize = 8192;
/// A stream that keeps reading whole buffers (a big file read straight
/// through, such as a large message's content) doubles its buffer up to this.
const BUFSIZE_MAX: usize = 64 * 1024;

/// Where reader warnings go.
enum Sink {
    /// `program: warning: ...` on stderr.
    Stderr,
    /// Kept for the caller (a daemon logs them its own way).
    Collect(Vec<String>),
}

thread_local! {
    /// The read buffer of the last stream dropped, for the next one: a
    /// daemon opens one queue file after another, and a fresh zeroed 8 KB
    /// per file was measurable in the delivery agents (only the bytes below
    /// `len` are ever read, so the old contents do not matter).
    static SPARE_BUF: std::cell::RefCell<Option<Box<[u8]>>> = const { std::cell::RefCell::new(None) };
}

impl Drop for QueueStream {
    fn drop(&mut self) {
        if self.buf.len() == BUFSIZE {
            let buf = std::mem::take(&mut self.buf);
            // try_with: a stream dropped while the thread's locals are
            // being destroyed just frees its buffer.
            let _ = SPARE_BUF.try_with(|b| *b.borrow_mut() = Some(buf));
        }
    }
}

/// A buffered, seekable-if-possible input stream with a name for messages,
/// like Postfix's VSTREAM opened for reading.
pub struct QueueStream {
    file: File,
    path: String,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    nseek: bool,
    sink: Sink,
    /// The file's own position (the end of the buffered data) when known,
    /// so that `ftell` needs no system call.
    fpos: Option<i64>,
}

impl QueueStream {
    /// Wrap an open file; `path` names it in messages.
    pub fn new(file: File, path: &str) -> QueueStream {
        QueueStream {
            file,
            path: path.to_string(),
            buf: SPARE_BUF
                .try_with(|b| b.borrow_mut().take())
                .ok()
                .flatten()
                .unwrap_or_else(|| vec![0u8; BUFSIZE].into_boxed_slice()),
            pos: 0,
            len: 0,
            nseek: false,
            sink: Sink::Stderr,
            fpos: None,
        }
    }

    /// Open a file read-only.
    pub fn open(path: &str) -> io::Result<QueueStream> {
        let f = File::open(latin1::to_path(path))?;
        let mut s = QueueStream::new(f, path);
        // A file just opened is at offset 0: ftell needs no lseek.
        s.fpos = Some(0);
        Ok(s)
    }

    /// Standard input (a duplicate of descriptor 0).
    pub fn stdin() -> io::Result<QueueStream> {
        use std::os::fd::AsFd;
        let fd = io::stdin().as_fd().try_clone_to_owned()?;
        Ok(QueueStream::new(File::from(fd), "stdin"))
    }

    /// Keep warnings instead of printing them; [`Self::take_warnings`]
    /// returns them.
    pub fn collect_warnings(&mut self) {
        self.sink = Sink::Collect(Vec::new());
    }

    /// The warnings kept so far.
    pub fn take_warnings(&mut self) -> Vec<String> {
        match &mut self.sink {
            Sink::Collect(v) => std::mem::take(v),
            Sink::Stderr => Vec::new(),
        }
    }

    /// Report a warning.
    pub fn warn(&mut self, text: &str) {
        match &mut self.sink {
            Sink::Stderr => msg::warn(text),
            Sink::Collect(v) => v.push(text.to_string()),
        }
    }

    /// The name used in messages.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The underlying file.
    pub fn file(&self) -> &File {
        &self.file
    }

    fn fill(&mut self) -> bool {
        if self.len == self.buf.len() && self.len < BUFSIZE_MAX {
            // Everything buffered was consumed: nothing is lost.
            self.buf = vec![0u8; self.len * 2].into_boxed_slice();
            self.pos = 0;
            self.len = 0;
        }
        loop {
            match self.file.read(&mut self.buf) {
                Ok(0) => return false,
                Ok(n) => {
                    self.pos = 0;
                    self.len = n;
                    if let Some(p) = &mut self.fpos {
                        *p += n as i64;
                    }
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }

    /// One byte, or `None` at end of input (or on a read error).
    pub fn getc(&mut self) -> Option<u8> {
        if self.pos >= self.len && !self.fill() {
            return None;
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Some(b)
    }

    /// Push back the byte that [`Self::getc`] just returned.
    pub fn ungetc(&mut self) {
        if self.pos > 0 {
            self.pos -= 1;
        }
    }

    /// Append up to `n` bytes to `out`; returns how many were read. Memory
    /// grows only with the data actually read.
    pub fn read_into(&mut self, out: &mut Vec<u8>, n: usize) -> usize {
        let mut got = 0;
        while got < n {
            if self.pos >= self.len && !self.fill() {
                break;
            }
            let take = (self.len - self.pos).min(n - got);
            out.extend_from_slice(&self.buf[self.pos..self.pos + take]);
            self.pos += take;
            got += take;
        }
        got
    }

    /// The logical read position, or -1 when the input cannot seek (as
    /// vstream_ftell: a pipe has no position).
    pub fn ftell(&mut self) -> i64 {
        if self.nseek {
            return -1;
        }
        if let Some(p) = self.fpos {
            return p - (self.len - self.pos) as i64;
        }
        match self.file.stream_position() {
            Ok(p) => {
                self.fpos = Some(p as i64);
                p as i64 - (self.len - self.pos) as i64
            }
            Err(_) => {
                self.nseek = true;
                -1
            }
        }
    }

    /// Reposition; unread buffered input is discarded.
    pub fn fseek(&mut self, offset: i64, whence: SeekFrom) -> io::Result<i64> {
        let unread = (self.len - self.pos) as i64;
        self.pos = 0;
        self.len = 0;
        if self.nseek {
            return Err(io::Error::from_raw_os_error(libc::ESPIPE));
        }
        let target = match whence {
            SeekFrom::Start(_) => {
                if offset < 0 {
                    return Err(io::Error::from_raw_os_error(libc::EINVAL));
                }
                SeekFrom::Start(offset as u64)
            }
            SeekFrom::Current(_) => SeekFrom::Current(offset - unread),
            SeekFrom::End(_) => SeekFrom::End(offset),
        };
        self.fpos = None;
        match self.file.seek(target) {
            Ok(p) => {
                self.fpos = Some(p as i64);
                Ok(p as i64)
            }
            Err(e) => {
                if e.raw_os_error() == Some(libc::ESPIPE) {
                    self.nseek = true;
                }
                Err(e)
            }
        }
    }

    /// Seek to an absolute offset.
    pub fn seek_set(&mut self, offset: i64) -> io::Result<i64> {
        self.fseek(offset, SeekFrom::Start(0))
    }
}

/// C's `%m` for an I/O error.
pub fn errtext(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => crate::sys::strerror(code),
        None => e.to_string(),
    }
}

/// Read one record into `buf` (replacing its contents). `maxsize` > 0 limits
/// the payload length; `flags` are the FLAG_* transparency options.
pub fn rec_get_raw(fp: &mut QueueStream, buf: &mut Vec<u8>, maxsize: i64, flags: u32) -> Rec {
    loop {
        let Some(t) = fp.getc() else {
            return Rec::Eof;
        };
        let mut len: i64 = 0;
        let mut shift: u32 = 0;
        loop {
            if shift >= 32 {
                let text = format!("{}: too many length bits, record type {}", fp.path, t);
                fp.warn(&text);
                return Rec::Error;
            }
            let Some(b) = fp.getc() else {
                let text = format!(
                    "{}: unexpected EOF reading length, record type {}",
                    fp.path, t
                );
                fp.warn(&text);
                return Rec::Error;
            };
            // As C computes it: an int shift, sign-extended into the length.
            len |= (((b & 0x7f) as u32).wrapping_shl(shift) as i32) as i64;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        if len < 0 || (maxsize > 0 && len > maxsize) {
            let text = format!("{}: illegal length {}, record type {}", fp.path, len, t);
            fp.warn(&text);
            let mut n = len;
            while n > 0 && fp.getc().is_some() {
                n -= 1;
            }
            return Rec::Error;
        }
        buf.clear();
        if fp.read_into(buf, len as usize) as i64 != len {
            let text = format!(
                "{}: unexpected EOF in data, record type {} length {}",
                fp.path, t, len
            );
            fp.warn(&text);
            return Rec::Error;
        }
        if msg::verbose() > 2 {
            msg::info(&format!(
                "rec_get: type {} len {} data {}",
                t as char,
                len,
                c_prefix(buf, 10)
            ));
        }
        if flags == 0 {
            return Rec::Type(t);
        }
        if t == rec_type::PTR && flags & FLAG_FOLLOW_PTR != 0 {
            let target = buf.clone();
            if rec_goto(fp, &target) {
                continue;
            }
            return Rec::Error;
        }
        if t == rec_type::DTXT && flags & FLAG_SKIP_DTXT != 0 {
            continue;
        }
        if t == rec_type::END
            && flags & FLAG_SEEK_END != 0
            && let Err(e) = fp.fseek(0, SeekFrom::End(0))
        {
            {
                let text = format!(
                    "{}: seek error after reading END record: {}",
                    fp.path,
                    errtext(&e)
                );
                fp.warn(&text);
                return Rec::Error;
            }
        }
        return Rec::Type(t);
    }
}

/// Read one record with the default options (follow pointers, skip padding,
/// stop at the END record).
pub fn rec_get(fp: &mut QueueStream, buf: &mut Vec<u8>, maxsize: i64) -> Rec {
    rec_get_raw(fp, buf, maxsize, FLAG_DEFAULT)
}

/// Reverse jumps allowed per file before a loop is suspected.
pub const REVERSE_JUMP_LIMIT: u32 = 10000;

struct GotoState {
    path: Option<String>,
    offset: i64,
    reverse: u32,
}

thread_local! {
    // Postfix keeps this per process and resets it when the file name
    // changes; so do we, per thread.
    static GOTO: RefCell<GotoState> = const {
        RefCell::new(GotoState { path: None, offset: 0, reverse: 0 })
    };
}

/// Postfix's off_cvt_string: digits only, no overflow; -1 otherwise.
fn off_cvt(s: &[u8]) -> i64 {
    let mut r: i64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return -1;
        }
        let d = (c - b'0') as i64;
        match r.checked_mul(10).and_then(|x| x.checked_add(d)) {
            Some(x) => r = x,
            None => return -1,
        }
    }
    r
}

/// Follow a pointer record's payload; false (with a warning) on a malformed
/// pointer, a suspected loop or a seek error. A zero pointer is a no-op.
pub fn rec_goto(fp: &mut QueueStream, payload: &[u8]) -> bool {
    let path = fp.path.clone();
    let (offset, reverse_over, saved_offset) = GOTO.with(|g| {
        let mut g = g.borrow_mut();
        if g.path.as_deref() != Some(path.as_str()) {
            g.path = Some(path.clone());
            g.reverse = 0;
            g.offset = 0;
        }
        let s = c_str(payload);
        let i = s
            .iter()
            .take_while(|&&c| matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r'))
            .count();
        (off_cvt(&s[i..]), (s, i), g.offset)
    });
    let (s, i) = reverse_over;
    if offset < 0 {
        let text = format!(
            "{}: malformed pointer record value: {}",
            fp.path,
            latin1::decode(&s[i..])
        );
        fp.warn(&text);
        return false;
    }
    if offset == 0 {
        return true;
    }
    if offset <= saved_offset {
        let over = GOTO.with(|g| {
            let mut g = g.borrow_mut();
            g.reverse += 1;
            g.reverse > REVERSE_JUMP_LIMIT
        });
        if over {
            let text = format!("{}: too many reverse jump records", fp.path);
            fp.warn(&text);
            return false;
        }
    }
    if let Err(e) = fp.seek_set(offset) {
        let text = format!(
            "{}: seek error after pointer record: {}",
            fp.path,
            errtext(&e)
        );
        fp.warn(&text);
        return false;
    }
    GOTO.with(|g| g.borrow_mut().offset = offset);
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn size_payload_matches_the_formatter() {
        for f in [
            [0, 0, 0, 0, 0, 0],
            [308, 746, 1, 12, 308, 0],
            [999_999_999_999_999, 1, 10, 100, 7, 3],
        ] {
            let fast = super::size_payload(f).expect("fits");
            assert_eq!(
                &fast[..],
                crate::global::rec_type::size_payload(f).as_bytes()
            );
        }
        assert!(super::size_payload([-1, 0, 0, 0, 0, 0]).is_none());
        assert!(super::size_payload([1_000_000_000_000_000, 0, 0, 0, 0, 0]).is_none());
    }

    use super::*;

    fn stream(tag: &str, data: &[u8]) -> (QueueStream, std::path::PathBuf) {
        let p = std::env::temp_dir().join(format!("rostfix-record-{}-{tag}", std::process::id()));
        std::fs::write(&p, data).unwrap();
        let s = QueueStream::open(p.to_str().unwrap()).unwrap();
        (s, p)
    }

    #[test]
    fn length_encoding() {
        let mut v = Vec::new();
        rec_encode(&mut v, b'N', &[b'x'; 300]);
        assert_eq!(&v[..3], &[b'N', 0xac, 0x02]);
        assert_eq!(v.len(), rec_space_need(300));
        let mut v = Vec::new();
        rec_encode(&mut v, b'M', b"");
        assert_eq!(v, b"M\0");
        let mut v = Vec::new();
        rec_pad(&mut v, b'w', 10).unwrap();
        assert_eq!(v, b"w\x08       0");
        let mut v = Vec::new();
        rec_pad(&mut v, b'w', 0).unwrap();
        assert_eq!(v, b"w\x010");
    }

    #[test]
    fn a_reused_buffer_shows_only_the_new_file() {
        // The first stream fills its buffer with one file; the next stream
        // (which takes that buffer over) must see only its own bytes.
        let mut long = Vec::new();
        rec_encode(&mut long, b'N', &[b'x'; 5000]);
        let (mut a, pa) = stream("reuse-a", &long);
        let mut buf = Vec::new();
        assert_eq!(rec_get(&mut a, &mut buf, 0), Rec::Type(b'N'));
        drop(a);
        let mut short = Vec::new();
        rec_encode(&mut short, b'T', b"1 2");
        let (mut b, pb) = stream("reuse-b", &short);
        assert_eq!(rec_get(&mut b, &mut buf, 0), Rec::Type(b'T'));
        assert_eq!(buf, b"1 2");
        assert_eq!(rec_get(&mut b, &mut buf, 0), Rec::Eof);
        std::fs::remove_file(&pa).unwrap();
        std::fs::remove_file(&pb).unwrap();
    }

    #[test]
    fn read_back_and_errors() {
        let mut data = Vec::new();
        rec_encode(&mut data, b'T', b"1 2");
        rec_encode(&mut data, b'w', b"pad");
        rec_encode(&mut data, b'E', b"");
        data.extend_from_slice(b"junk after end");
        let (mut s, p) = stream("a", &data);
        s.collect_warnings();
        let mut buf = Vec::new();
        assert_eq!(rec_get(&mut s, &mut buf, 0), Rec::Type(b'T'));
        assert_eq!(buf, b"1 2");
        assert_eq!(rec_get(&mut s, &mut buf, 0), Rec::Type(b'E'));
        assert_eq!(rec_get(&mut s, &mut buf, 0), Rec::Eof);
        std::fs::remove_file(&p).unwrap();

        for (bytes, max, want) in [
            (
                &b"N\x80\x80\x80\x80\x80"[..],
                0,
                "too many length bits, record type 78",
            ),
            (
                &b"N\x80"[..],
                0,
                "unexpected EOF reading length, record type 78",
            ),
            (
                &b"N\x05ab"[..],
                0,
                "unexpected EOF in data, record type 78 length 5",
            ),
            (&b"N\x05abcde"[..], 4, "illegal length 5, record type 78"),
            (
                &b"N\x80\x80\x80\x80\x7f"[..],
                0,
                "illegal length -268435456, record type 78",
            ),
        ] {
            let (mut s, p) = stream("b", bytes);
            s.collect_warnings();
            assert_eq!(rec_get_raw(&mut s, &mut buf, max, 0), Rec::Error);
            let w = s.take_warnings();
            assert_eq!(w, vec![format!("{}: {want}", p.display())]);
            std::fs::remove_file(&p).unwrap();
        }
    }

    #[test]
    fn pointers() {
        let mut data = Vec::new();
        rec_encode(&mut data, b'T', b"1 2");
        let ptr_at = data.len();
        rec_put_ptr(&mut data, 0).unwrap();
        rec_encode(&mut data, b'E', b"");
        let target = data.len();
        rec_encode(&mut data, b'R', b"heap@example");
        rec_put_ptr(&mut data, (ptr_at + 17) as i64).unwrap();
        // Patch the first pointer to jump into the heap.
        let mut patched = Vec::new();
        rec_put_ptr(&mut patched, target as i64).unwrap();
        data[ptr_at..ptr_at + 17].copy_from_slice(&patched);
        let (mut s, p) = stream("c", &data);
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        while let Rec::Type(t) = rec_get(&mut s, &mut buf, 0) {
            seen.push(t);
        }
        assert_eq!(seen, b"TRE");
        std::fs::remove_file(&p).unwrap();

        let (mut s, p) = stream("d", b"p\x03x12");
        s.collect_warnings();
        assert_eq!(rec_get(&mut s, &mut buf, 0), Rec::Error);
        assert_eq!(
            s.take_warnings(),
            vec![format!(
                "{}: malformed pointer record value: x12",
                p.display()
            )]
        );
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn reverse_jump_limit() {
        // A pointer that points at itself loops until the limit.
        let data = {
            let mut d = Vec::new();
            rec_encode(&mut d, b'T', b"1 2");
            let at = d.len() as i64;
            rec_put_ptr(&mut d, at).unwrap();
            d
        };
        let (mut s, p) = stream("e", &data);
        s.collect_warnings();
        let mut buf = Vec::new();
        assert_eq!(rec_get(&mut s, &mut buf, 0), Rec::Type(b'T'));
        assert_eq!(rec_get(&mut s, &mut buf, 0), Rec::Error);
        assert_eq!(
            s.take_warnings(),
            vec![format!("{}: too many reverse jump records", p.display())]
        );
        std::fs::remove_file(&p).unwrap();
    }
}
