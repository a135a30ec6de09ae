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

/// Look up a user by name. `Err` carries errno when the lookup itself failed.
pub fn getpwnam(name: &str) -> Result<Option<Passwd>, i32> {
    let Ok(c) = CString::new(latin1::encode(name)) else {
        return Ok(None);
    };
    let mut pw: libc::passwd = zeroed_passwd();
    // A stack buffer first (it fits any ordinary entry), a growing heap
    // buffer when the entry does not fit: a large allocation per lookup
    // costs the proxymap server more than the lookup itself.
    let mut small = [0 as libc::c_char; 2048];
    let mut heap: Vec<libc::c_char> = Vec::new();
    loop {
        let buf: &mut [libc::c_char] = if heap.is_empty() {
            &mut small
        } else {
            &mut heap
        };
        let mut res: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer refers to live storage of the stated size;
        // getpwnam_r fills pw using buf and sets res to &pw or null.
        let rc =
            unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut res) };
        if rc == libc::ERANGE && buf.len() < 1 << 22 {
            let n = buf.len() * 2;
            heap.resize(n, 0);
            continue;
        }
        if rc != 0 {
            return Err(rc);
        }
        if res.is_null() {
            return Ok(None);
        }
        return Ok(Some(Passwd {
            name: text(pw.pw_name),
            passwd: text(pw.pw_passwd),
            uid: pw.pw_uid,
            gid: pw.pw_gid,
            gecos: text(pw.pw_gecos),
            dir: text(pw.pw_dir),
            shell: text(pw.pw_shell),
        }));
    }
}

/// Is there a user with this uid? `Err` carries errno on a failed lookup.
pub fn uid_exists(uid: u32) -> Result<bool, i32> {
    let mut pw: libc::passwd = zeroed_passwd();
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut res: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: as in getpwnam.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut res) };
    if rc != 0 {
        return Err(rc);
    }
    Ok(!res.is_null())
}

fn zeroed_passwd() -> libc::passwd {
    // SAFETY: libc::passwd is a plain C struct of integers and pointers, for
    // which all-zero bytes are a valid value.
    unsafe { std::mem::zeroed() }
}

fn zeroed_group() -> libc::group {
    // SAFETY: libc::group is a plain C struct of integers and pointers, for
    // which all-zero bytes are a valid value.
    unsafe { std::mem::zeroed() }
}

/// Look up a group by name. `Err` carries errno when the lookup failed.
pub fn getgrnam(name: &str) -> Result<Option<Group>, i32> {
    let Ok(c) = CString::new(latin1::encode(name)) else {
        return Ok(None);
    };
    let mut gr = zeroed_group();
    let mut buf = vec![0 as libc::c_char; 16384];
    loop {
        let mut res: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer refers to live storage of the stated size;
        // getgrnam_r fills gr using buf and sets res to &gr or null.
        let rc =
            unsafe { libc::getgrnam_r(c.as_ptr(), &mut gr, buf.as_mut_ptr(), buf.len(), &mut res) };
        if rc == libc::ERANGE && buf.len() < 1 << 24 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(rc);
        }
        if res.is_null() {
            return Ok(None);
        }
        let mut members = Vec::new();
        let mut p = gr.gr_mem;
        if !p.is_null() {
            loop {
                // SAFETY: gr_mem is a NULL-terminated array of pointers into
                // buf, which is still alive.
                let m = unsafe { *p };
                if m.is_null() {
                    break;
                }
                members.push(text(m));
                // SAFETY: the terminating NULL has not been reached yet, so
                // the next element is within the array.
                p = unsafe { p.add(1) };
            }
        }
        return Ok(Some(Group {
            name: text(gr.gr_name),
            passwd: text(gr.gr_passwd),
            gid: gr.gr_gid,
            members,
        }));
    }
}

/// Is there a group with this gid? `Err` carries errno on a failed lookup.
pub fn gid_exists(gid: u32) -> Result<bool, i32> {
    let mut gr = zeroed_group();
    let mut buf = vec![0 as libc::c_char; 65536];
    let mut res: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in getgrnam.
    let rc = unsafe { libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr(), buf.len(), &mut res) };
    if rc != 0 {
        return Err(rc);
    }
    Ok(!res.is_null())
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
