//! POSIX regular expressions through the C library's regcomp(3)/regexec(3),
//! so that `regexp:` tables match exactly as Postfix's do on the same host
//! (glibc's ERE/BRE dialect, its GNU extensions such as `\s` and `\b`, its
//! case folding in the C locale).

use std::ffi::{CStr, c_char, c_int, c_ulong, c_void};

/// regcomp() flag: POSIX extended syntax.
pub const REG_EXTENDED: i32 = libc::REG_EXTENDED;
/// regcomp() flag: ignore case.
pub const REG_ICASE: i32 = libc::REG_ICASE;
/// regcomp() flag: newline-sensitive matching.
pub const REG_NEWLINE: i32 = libc::REG_NEWLINE;
/// regcomp() flag: do not report subexpression positions.
pub const REG_NOSUB: i32 = libc::REG_NOSUB;

/// glibc's `regex_t` with its fields visible (the libc crate hides
/// `re_nsub`, which we need). Same layout as `libc::regex_t`.
#[repr(C)]
struct RawRegex {
    buffer: *mut c_void,
    allocated: usize,
    used: usize,
    syntax: c_ulong,
    fastmap: *mut c_char,
    translate: *mut c_char,
    re_nsub: usize,
    bits: u8,
}

const _: () = assert!(std::mem::size_of::<RawRegex>() == std::mem::size_of::<libc::regex_t>());
const _: () = assert!(std::mem::align_of::<RawRegex>() == std::mem::align_of::<libc::regex_t>());

/// A regcomp() or regexec() failure: the error code and regerror()'s text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegexError {
    pub code: i32,
    pub message: String,
}

/// One compiled regular expression.
pub struct Regex {
    raw: Box<RawRegex>,
}

// SAFETY: a compiled regex_t owns its heap data and has no thread affinity;
// glibc's regexec() serialises access to the shared DFA with its own lock.
unsafe impl Send for Regex {}

fn empty_raw() -> Box<RawRegex> {
    Box::new(RawRegex {
        buffer: std::ptr::null_mut(),
        allocated: 0,
        used: 0,
        syntax: 0,
        fastmap: std::ptr::null_mut(),
        translate: std::ptr::null_mut(),
        re_nsub: 0,
        bits: 0,
    })
}

/// regerror() text for `code`, at most 255 bytes as in a 256-byte buffer.
fn error_text(code: c_int, raw: *const RawRegex) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its full length and regerror() writes at
    // most that many bytes, NUL-terminated; glibc's regerror does not
    // dereference the regex_t pointer.
    unsafe {
        libc::regerror(
            code,
            raw.cast::<libc::regex_t>(),
            buf.as_mut_ptr().cast::<c_char>(),
            buf.len(),
        );
    }
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    crate::util::latin1::decode(&buf[..n])
}

impl Regex {
    /// Compile `pattern` (text up to its first NUL) with regcomp() flags.
    pub fn new(pattern: &[u8], cflags: i32) -> Result<Regex, RegexError> {
        let end = pattern
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(pattern.len());
        let pat = std::ffi::CString::new(&pattern[..end]).unwrap_or_default();
        let mut raw = empty_raw();
        let ptr: *mut RawRegex = &mut *raw;
        // SAFETY: ptr points to a live, properly sized and aligned regex_t;
        // pat is a valid NUL-terminated string that outlives the call.
        let rc = unsafe { libc::regcomp(ptr.cast::<libc::regex_t>(), pat.as_ptr(), cflags) };
        if rc != 0 {
            // regcomp() frees its partial work on failure: nothing to regfree.
            return Err(RegexError {
                code: rc,
                message: error_text(rc, ptr),
            });
        }
        Ok(Regex { raw })
    }

    /// The number of parenthesised subexpressions.
    pub fn nsub(&self) -> usize {
        self.raw.re_nsub
    }

    /// Match `subject`. With `nmatch` > 0 the positions of the whole match
    /// and the first `nmatch - 1` subexpressions are returned (`None` for a
    /// subexpression that did not participate).
    #[allow(clippy::type_complexity)]
    pub fn exec(
        &self,
        subject: &CStr,
        nmatch: usize,
    ) -> Result<Option<Vec<Option<(usize, usize)>>>, RegexError> {
        let mut pm = vec![
            libc::regmatch_t {
                rm_so: -1,
                rm_eo: -1
            };
            nmatch
        ];
        let ptr: *const RawRegex = &*self.raw;
        // SAFETY: the regex_t was compiled successfully and is not freed until
        // drop; subject is NUL-terminated; pm holds exactly nmatch entries.
        let rc = unsafe {
            libc::regexec(
                ptr.cast::<libc::regex_t>(),
                subject.as_ptr(),
                nmatch,
                if nmatch > 0 {
                    pm.as_mut_ptr()
                } else {
                    std::ptr::null_mut()
                },
                0,
            )
        };
        if rc == 0 {
            Ok(Some(
                pm.iter()
                    .map(|m| {
                        if m.rm_so < 0 || m.rm_eo < m.rm_so {
                            None
                        } else {
                            Some((m.rm_so as usize, m.rm_eo as usize))
                        }
                    })
                    .collect(),
            ))
        } else if rc == libc::REG_NOMATCH {
            Ok(None)
        } else {
            Err(RegexError {
                code: rc,
                message: error_text(rc, ptr),
            })
        }
    }
}

impl Drop for Regex {
    fn drop(&mut self) {
        let ptr: *mut RawRegex = &mut *self.raw;
        // SAFETY: the regex_t was successfully compiled by regcomp() and is
        // freed exactly once, here.
        unsafe { libc::regfree(ptr.cast::<libc::regex_t>()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> std::ffi::CString {
        std::ffi::CString::new(s).unwrap()
    }

    #[test]
    fn compile_match_groups() {
        let re = Regex::new(b"^(a+)(x)?b$", REG_EXTENDED).unwrap();
        assert_eq!(re.nsub(), 2);
        let m = re.exec(&c("aab"), 3).unwrap().unwrap();
        assert_eq!(m, vec![Some((0, 3)), Some((0, 2)), None]);
        assert_eq!(re.exec(&c("b"), 0).unwrap(), None);
    }

    #[test]
    fn icase_and_gnu_extensions() {
        let re = Regex::new(b"^\\s*x-mailer:", REG_EXTENDED | REG_ICASE).unwrap();
        assert!(re.exec(&c("  X-Mailer: y"), 0).unwrap().is_some());
    }

    #[test]
    fn errors_are_glibc_texts() {
        let e = Regex::new(b"a(", REG_EXTENDED).err().unwrap();
        assert_eq!(e.message, "Unmatched ( or \\(");
        let e = Regex::new(b"[a", REG_EXTENDED).err().unwrap();
        assert_eq!(e.message, "Unmatched [, [^, [:, [., or [=");
    }
}
