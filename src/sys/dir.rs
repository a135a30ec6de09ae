//! A directory stream that stays open: listing the same directory again
//! costs a rewind and the reads, not an open, a stat and a close (qmgr
//! lists incoming/ once per queue run, hundreds of times a second under
//! load).

use std::ffi::CString;
use std::io;
use std::ptr::NonNull;

/// An open directory stream (opendir(3)).
pub struct Dir(NonNull<libc::DIR>);

/// What an entry is, from its d_type (Unknown: the file system does not
/// say; ask lstat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Other,
    Unknown,
}

impl Dir {
    /// Open `path` for listing.
    pub fn open(path: &str) -> io::Result<Dir> {
        let c = CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: c is a valid NUL-terminated string; opendir returns a
        // stream we own or NULL.
        let p = unsafe { libc::opendir(c.as_ptr()) };
        NonNull::new(p)
            .map(Dir)
            .ok_or_else(io::Error::last_os_error)
    }

    /// Start over: the next entries are read afresh from the directory.
    pub fn rewind(&mut self) {
        // SAFETY: self.0 is an open stream of ours.
        unsafe { libc::rewinddir(self.0.as_ptr()) }
    }

    /// Call `f` with each entry's name and kind ("." and ".." skipped),
    /// from the current position to the end.
    pub fn each(&mut self, mut f: impl FnMut(&[u8], Kind)) {
        loop {
            // SAFETY: self.0 is an open stream of ours; the entry readdir
            // returns stays valid until the next readdir on this stream,
            // and it is used only before that.
            let ent = unsafe { libc::readdir(self.0.as_ptr()) };
            if ent.is_null() {
                return;
            }
            // SAFETY: ent is non-null and points to a dirent whose d_name
            // is NUL-terminated.
            let (name, t) = unsafe {
                let e = &*ent;
                (
                    std::ffi::CStr::from_ptr(e.d_name.as_ptr()).to_bytes(),
                    e.d_type,
                )
            };
            if name == b"." || name == b".." {
                continue;
            }
            let kind = match t {
                libc::DT_REG => Kind::File,
                libc::DT_DIR => Kind::Dir,
                libc::DT_UNKNOWN => Kind::Unknown,
                _ => Kind::Other,
            };
            f(name, kind);
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        // SAFETY: self.0 is an open stream of ours, closed only here.
        unsafe {
            libc::closedir(self.0.as_ptr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_again_after_a_rewind() {
        let d = std::env::temp_dir().join(format!("rostfix-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("a"), b"x").unwrap();
        let mut dir = Dir::open(d.to_str().unwrap()).unwrap();
        let list = |dir: &mut Dir| {
            let mut v = Vec::new();
            dir.each(|n, k| v.push((String::from_utf8_lossy(n).to_string(), k)));
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let first = list(&mut dir);
        assert!(
            first
                .iter()
                .any(|(n, k)| n == "a" && matches!(k, Kind::File | Kind::Unknown))
        );
        assert!(
            first
                .iter()
                .any(|(n, k)| n == "sub" && matches!(k, Kind::Dir | Kind::Unknown))
        );
        std::fs::write(d.join("b"), b"y").unwrap();
        dir.rewind();
        let names: Vec<String> = list(&mut dir).into_iter().map(|x| x.0).collect();
        assert_eq!(names, ["a", "b", "sub"]);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
