//! syslog(3) and local time formatting for the mail log.

use std::ffi::CString;
use std::sync::Mutex;

static IDENT: Mutex<Option<CString>> = Mutex::new(None);

/// Syslog priorities, as Postfix maps its message levels.
pub const LOG_INFO: i32 = libc::LOG_INFO;
pub const LOG_WARNING: i32 = libc::LOG_WARNING;
pub const LOG_ERR: i32 = libc::LOG_ERR;
pub const LOG_CRIT: i32 = libc::LOG_CRIT;

/// A syslog facility by name (`mail`, `local0`...); `None` if unknown.
pub fn facility(name: &str) -> Option<i32> {
    Some(match name.to_ascii_lowercase().as_str() {
        "auth" => libc::LOG_AUTH,
        "authpriv" => libc::LOG_AUTHPRIV,
        "cron" => libc::LOG_CRON,
        "daemon" => libc::LOG_DAEMON,
        "kern" => libc::LOG_KERN,
        "lpr" => libc::LOG_LPR,
        "mail" => libc::LOG_MAIL,
        "news" => libc::LOG_NEWS,
        "syslog" => libc::LOG_SYSLOG,
        "user" => libc::LOG_USER,
        "uucp" => libc::LOG_UUCP,
        "local0" => libc::LOG_LOCAL0,
        "local1" => libc::LOG_LOCAL1,
        "local2" => libc::LOG_LOCAL2,
        "local3" => libc::LOG_LOCAL3,
        "local4" => libc::LOG_LOCAL4,
        "local5" => libc::LOG_LOCAL5,
        "local6" => libc::LOG_LOCAL6,
        "local7" => libc::LOG_LOCAL7,
        _ => return None,
    })
}

/// openlog(3) with LOG_PID and LOG_NDELAY under `ident`.
pub fn open(ident: &str, facility: i32) {
    let Ok(c) = CString::new(crate::util::latin1::encode(ident)) else {
        return;
    };
    let mut guard = IDENT.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: openlog keeps the ident pointer; the CString is stored in a
    // static and replaced only after closelog, so the pointer stays valid
    // while syslog may use it.
    unsafe {
        libc::closelog();
        libc::openlog(c.as_ptr(), libc::LOG_PID | libc::LOG_NDELAY, facility);
    }
    *guard = Some(c);
}

/// syslog(3) one message at a priority.
pub fn send(priority: i32, text: &str) {
    let Ok(c) = CString::new(crate::util::latin1::encode(text)) else {
        return;
    };
    // SAFETY: the format is a constant "%s" and its one argument is a valid
    // NUL-terminated string.
    unsafe { libc::syslog(priority, c"%s".as_ptr(), c.as_ptr()) };
}

/// closelog(3) (a child process before exec).
pub fn close() {
    // SAFETY: closelog has no arguments.
    unsafe { libc::closelog() };
}

/// Local time as strftime(3) `%b %d %H:%M:%S` (C locale month names).
pub fn timestamp(now: i64) -> String {
    // The text changes once a second: compute it (and the time zone work
    // of localtime_r) once per second and thread.
    thread_local! {
        static LAST: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    LAST.with(|l| {
        let mut l = l.borrow_mut();
        if l.0 != now {
            *l = (now, timestamp_uncached(now));
        }
        l.1.clone()
    })
}

fn timestamp_uncached(now: i64) -> String {
    // SAFETY: tm is plain old data; localtime_r fills it from a valid time_t.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let t: libc::time_t = now as libc::time_t;
    // SAFETY: both pointers are valid for the call.
    unsafe { libc::localtime_r(&t, &mut tm) };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {:02} {:02}:{:02}:{:02}",
        MONTHS[tm.tm_mon.clamp(0, 11) as usize],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}
