//! The user and group databases (getpwnam(3), getgrnam(3)) and the NIS
//! domain name, as one-char-per-byte text.

use crate::util::latin1;
use std::ffi::{CStr, CString};

/// A passwd entry's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passwd {
    pub name: String,
    pub passwd: String,
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
    pub dir: String,
    pub shell: String,
}

/// A group entry's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub passwd: String,
    pub gid: u32,
    pub members: Vec<String>,
}

fn text(p: *const libc::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: p is non-null and points to a NUL-terminated string owned by
    // the entry we are copying from.
    latin1::decode(unsafe { CStr::from_ptr(p) }.to_bytes())
}

/// One reentrant database lookup (getpw*_r, getgr*_r): `call(entry, buf,
/// len, result)` runs with a buffer on the stack first (it fits any
/// ordinary entry) and a heap buffer that doubles while the call answers
/// ERANGE; `convert` copies the entry out while the buffer is alive. The
/// buffers are not zeroed: the library writes every byte the entry points
/// at (a zeroed 16-64 KB buffer per lookup was a fifth of a sendmail
/// start-up). `Err` carries errno when the lookup itself failed.
fn lookup<E, T>(
    call: impl Fn(*mut E, *mut libc::c_char, usize, *mut *mut E) -> libc::c_int,
    convert: impl FnOnce(&E) -> T,
) -> Result<Option<T>, i32> {
    let mut small = [std::mem::MaybeUninit::<libc::c_char>::uninit(); 2048];
    let mut heap: Vec<libc::c_char> = Vec::new();
    let mut entry = std::mem::MaybeUninit::<E>::uninit();
    loop {
        let (buf, len) = if heap.capacity() == 0 {
            (small.as_mut_ptr().cast::<libc::c_char>(), small.len())
        } else {
            (heap.as_mut_ptr(), heap.capacity())
        };
        let mut res: *mut E = std::ptr::null_mut();
        let rc = call(entry.as_mut_ptr(), buf, len, &mut res);
        if rc == libc::ERANGE && len < 1 << 24 {
            heap = Vec::with_capacity(len * 2);
            continue;
        }
        if rc != 0 {
            return Err(rc);
        }
        if res.is_null() {
            return Ok(None);
        }
        // SAFETY: a zero return with a non-null result means the library
        // filled the entry (res points at it), its strings in buf, which is
        // still alive.
        return Ok(Some(convert(unsafe { &*res })));
    }
}

fn passwd(pw: &libc::passwd) -> Passwd {
    Passwd {
        name: text(pw.pw_name),
        passwd: text(pw.pw_passwd),
        uid: pw.pw_uid,
        gid: pw.pw_gid,
        gecos: text(pw.pw_gecos),
        dir: text(pw.pw_dir),
        shell: text(pw.pw_shell),
    }
}

fn group(gr: &libc::group) -> Group {
    let mut members = Vec::new();
    let mut p = gr.gr_mem;
    if !p.is_null() {
        loop {
            // SAFETY: gr_mem is a NULL-terminated array of pointers into the
            // lookup's buffer, which is still alive.
            let m = unsafe { *p };
            if m.is_null() {
                break;
            }
            members.push(text(m));
            // SAFETY: the terminating NULL has not been reached yet, so the
            // next element is within the array.
            p = unsafe { p.add(1) };
        }
    }
    Group {
        name: text(gr.gr_name),
        passwd: text(gr.gr_passwd),
        gid: gr.gr_gid,
        members,
    }
}

/// Look up a user by name. `Err` carries errno when the lookup itself failed.
pub fn getpwnam(name: &str) -> Result<Option<Passwd>, i32> {
    let Ok(c) = CString::new(latin1::encode(name)) else {
        return Ok(None);
    };
    lookup(
        // SAFETY: lookup passes an entry, a buffer of the stated length and
        // a result pointer, all live for the call; c is NUL-terminated.
        |pw, buf, len, res| unsafe { libc::getpwnam_r(c.as_ptr(), pw, buf, len, res) },
        passwd,
    )
}

/// Look up a user by uid. `Err` carries errno when the lookup itself failed.
pub fn getpwuid(uid: u32) -> Result<Option<Passwd>, i32> {
    lookup(
        // SAFETY: as in getpwnam.
        |pw, buf, len, res| unsafe { libc::getpwuid_r(uid, pw, buf, len, res) },
        passwd,
    )
}

/// Is there a user with this uid? `Err` carries errno on a failed lookup.
pub fn uid_exists(uid: u32) -> Result<bool, i32> {
    Ok(getpwuid(uid)?.is_some())
}

/// Look up a group by name. `Err` carries errno when the lookup failed.
pub fn getgrnam(name: &str) -> Result<Option<Group>, i32> {
    let Ok(c) = CString::new(latin1::encode(name)) else {
        return Ok(None);
    };
    lookup(
        // SAFETY: as in getpwnam.
        |gr, buf, len, res| unsafe { libc::getgrnam_r(c.as_ptr(), gr, buf, len, res) },
        group,
    )
}

/// Look up a group by gid. `Err` carries errno when the lookup failed.
pub fn getgrgid(gid: u32) -> Result<Option<Group>, i32> {
    lookup(
        // SAFETY: as in getpwnam.
        |gr, buf, len, res| unsafe { libc::getgrgid_r(gid, gr, buf, len, res) },
        group,
    )
}

/// Is there a group with this gid? `Err` carries errno on a failed lookup.
pub fn gid_exists(gid: u32) -> Result<bool, i32> {
    Ok(getgrgid(gid)?.is_some())
}

/// The NIS domain name (getdomainname(2)); empty when unset.
pub fn nis_domain() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its full length; getdomainname writes at
    // most that many bytes.
    let rc = unsafe { libc::getdomainname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    latin1::decode(&buf[..n])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn lookup_grows_the_buffer_while_erange() {
        let calls = Cell::new(0);
        let r = lookup(
            |e: *mut usize, _buf, len, res| {
                calls.set(calls.get() + 1);
                if len < 10_000 {
                    return libc::ERANGE;
                }
                // SAFETY: lookup passes a live entry and result pointer.
                unsafe {
                    e.write(len);
                    *res = e;
                }
                0
            },
            |e| *e,
        );
        assert_eq!(r, Ok(Some(16384)));
        assert_eq!(calls.get(), 4, "2048, 4096, 8192, 16384 bytes");
    }

    #[test]
    fn lookup_gives_up_and_reports_errors() {
        let r = lookup(|_: *mut usize, _, _, _| libc::ERANGE, |e| *e);
        assert_eq!(r, Err(libc::ERANGE));
        let r = lookup(|_: *mut usize, _, _, _| libc::EIO, |e| *e);
        assert_eq!(r, Err(libc::EIO));
        let r = lookup(|_: *mut usize, _, _, _| 0, |e| *e);
        assert_eq!(r, Ok(None), "no entry: a null result");
    }

    #[test]
    fn real_databases() {
        let root = getpwuid(0).unwrap().unwrap();
        assert_eq!((root.name.as_str(), root.uid), ("root", 0));
        assert_eq!(getpwnam("root").unwrap().unwrap().dir, root.dir);
        assert_eq!(getpwnam("no-such-user.rostfix").unwrap(), None);
        let g = getgrgid(0).unwrap().unwrap();
        assert_eq!(getgrnam(&g.name).unwrap().unwrap().gid, 0);
        assert!(uid_exists(0).unwrap() && gid_exists(0).unwrap());
    }
}
