//! PCRE2 (8-bit) through libpcre2-8, as Debian's postfix-pcre uses it:
//! `pcre2_compile` with a NUL-terminated pattern, `pcre2_match` without JIT
//! and with the default match context, error texts from
//! `pcre2_get_error_message`. With Debian's libpcre2-dev installed the system
//! library (the one postfix-pcre links) is used; otherwise pcre2-sys builds
//! its bundled copy.

use pcre2_sys as ffi;
use std::ptr::NonNull;

pub const CASELESS: u32 = ffi::PCRE2_CASELESS;
pub const MULTILINE: u32 = ffi::PCRE2_MULTILINE;
pub const DOTALL: u32 = ffi::PCRE2_DOTALL;
pub const EXTENDED: u32 = ffi::PCRE2_EXTENDED;
pub const ANCHORED: u32 = ffi::PCRE2_ANCHORED;
pub const DOLLAR_ENDONLY: u32 = ffi::PCRE2_DOLLAR_ENDONLY;
pub const UNGREEDY: u32 = ffi::PCRE2_UNGREEDY;

/// pcre2_match() found nothing.
pub const ERROR_NOMATCH: i32 = ffi::PCRE2_ERROR_NOMATCH;

/// A compile failure: PCRE2's error code and the offset in the pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileError {
    pub code: i32,
    pub offset: usize,
}

/// The text for a PCRE2 error code, as Postfix gets it (a 256-byte buffer;
/// anything PCRE2 cannot put there is "unexpected pcre2 error code N").
pub fn error_message(code: i32) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its full length, which is what we pass;
    // PCRE2 writes at most that many code units.
    let len = unsafe { ffi::pcre2_get_error_message_8(code, buf.as_mut_ptr(), buf.len()) };
    if len > 0 {
        crate::util::latin1::decode(&buf[..len as usize])
    } else {
        format!("unexpected pcre2 error code {code}")
    }
}

/// A compiled pattern with its own match data (sized from the pattern).
pub struct Code {
    code: NonNull<ffi::pcre2_code_8>,
    md: NonNull<ffi::pcre2_match_data_8>,
    pairs: usize,
}

// SAFETY: the compiled code is immutable after compilation and the match
// data is only touched through &mut self; neither has thread affinity.
unsafe impl Send for Code {}

impl Code {
    /// Compile `pattern` (text up to its first NUL) with PCRE2 options.
    pub fn new(pattern: &[u8], options: u32) -> Result<Code, CompileError> {
        let end = pattern
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(pattern.len());
        let mut pat = pattern[..end].to_vec();
        pat.push(0);
        let mut code = 0i32;
        let mut offset = 0usize;
        // SAFETY: pat is NUL-terminated (PCRE2_ZERO_TERMINATED = usize::MAX);
        // code and offset are valid out-pointers; a null compile context
        // selects the defaults.
        let raw = unsafe {
            ffi::pcre2_compile_8(
                pat.as_ptr(),
                usize::MAX,
                options,
                &mut code,
                &mut offset,
                std::ptr::null_mut(),
            )
        };
        let Some(code_ptr) = NonNull::new(raw) else {
            return Err(CompileError { code, offset });
        };
        // SAFETY: code_ptr is a valid compiled pattern; null selects the
        // default general context.
        let md = unsafe {
            ffi::pcre2_match_data_create_from_pattern_8(code_ptr.as_ptr(), std::ptr::null_mut())
        };
        let Some(md) = NonNull::new(md) else {
            // SAFETY: code_ptr came from pcre2_compile and is freed once.
            unsafe { ffi::pcre2_code_free_8(code_ptr.as_ptr()) };
            return Err(CompileError {
                code: -48, // PCRE2_ERROR_NOMEMORY
                offset: 0,
            });
        };
        // SAFETY: md is a valid match data block.
        let pairs = unsafe { ffi::pcre2_get_ovector_count_8(md.as_ptr()) } as usize;
        Ok(Code {
            code: code_ptr,
            md,
            pairs,
        })
    }

    /// The number of capturing groups (PCRE2_INFO_CAPTURECOUNT).
    pub fn capture_count(&self) -> u32 {
        let mut n: u32 = 0;
        // SAFETY: the code is valid and CAPTURECOUNT writes one uint32_t.
        let rc = unsafe {
            ffi::pcre2_pattern_info_8(
                self.code.as_ptr(),
                ffi::PCRE2_INFO_CAPTURECOUNT,
                (&mut n as *mut u32).cast(),
            )
        };
        if rc != 0 { 0 } else { n }
    }

    /// Match `subject` from offset 0: Ok(true) on a match, Ok(false) on no
    /// match, Err(code) on a matching error (match limit and the like).
    pub fn exec(&mut self, subject: &[u8]) -> Result<bool, i32> {
        // SAFETY: code and match data are valid; subject is readable for
        // subject.len() bytes (a dangling but non-null pointer for an empty
        // slice is fine since PCRE2 reads no byte of an empty subject).
        let rc = unsafe {
            ffi::pcre2_match_8(
                self.code.as_ptr(),
                subject.as_ptr(),
                subject.len(),
                0,
                0,
                self.md.as_ptr(),
                std::ptr::null_mut(),
            )
        };
        if rc > 0 {
            Ok(true)
        } else if rc == ERROR_NOMATCH {
            Ok(false)
        } else {
            Err(rc)
        }
    }

    /// After a successful [`exec`](Self::exec): the (start, end) offsets of
    /// group `n` as PCRE2 left them in the ovector (PCRE2_UNSET for an unset
    /// group), or `None` when the ovector has no such pair.
    pub fn group(&self, n: usize) -> Option<(usize, usize)> {
        if n >= self.pairs {
            return None;
        }
        // SAFETY: md is valid and its ovector has `pairs` pairs; n < pairs.
        unsafe {
            let ov = ffi::pcre2_get_ovector_pointer_8(self.md.as_ptr());
            Some((*ov.add(2 * n), *ov.add(2 * n + 1)))
        }
    }
}

impl Drop for Code {
    fn drop(&mut self) {
        // SAFETY: both blocks were allocated by PCRE2 and are freed once.
        unsafe {
            ffi::pcre2_match_data_free_8(self.md.as_ptr());
            ffi::pcre2_code_free_8(self.code.as_ptr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_match_groups() {
        let mut c = Code::new(b"^(a+)(x)?b$", CASELESS).unwrap();
        assert_eq!(c.capture_count(), 2);
        assert_eq!(c.exec(b"AAB"), Ok(true));
        assert_eq!(c.group(1), Some((0, 2)));
        assert_eq!(c.group(2), Some((usize::MAX, usize::MAX)));
        assert_eq!(c.exec(b"x"), Ok(false));
    }

    #[test]
    fn compile_error() {
        let e = Code::new(b"a(b", 0).err().unwrap();
        assert_eq!(e.offset, 3);
        assert_eq!(error_message(e.code), "missing closing parenthesis");
        assert_eq!(error_message(-9999), "unexpected pcre2 error code -9999");
    }
}
