//! Local time conversion with the C library (localtime_r(3), honouring TZ),
//! and the asctime(3) text that Postfix's tools print.

/// Broken-down local time: the fields asctime uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTime {
    pub sec: i32,
    pub min: i32,
    pub hour: i32,
    pub mday: i32,
    pub mon: i32,
    pub year: i32,
    pub wday: i32,
    /// Day of the year (0-365).
    pub yday: i32,
    /// Offset from UTC in seconds (east positive).
    pub gmtoff: i64,
    /// The time zone abbreviation (`%Z`).
    pub zone: String,
}

/// localtime(3) of `t`, or `None` when the C library cannot convert it.
pub fn localtime(t: i64) -> Option<LocalTime> {
    let tt: libc::time_t = t as libc::time_t;
    // SAFETY: an all-zero struct tm is a valid value for every field.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: tzset only (re)reads TZ into the C library's own state.
    unsafe { tzset() };
    // SAFETY: both pointers refer to live, properly aligned locals;
    // localtime_r writes only into `tm`.
    let r = unsafe { libc::localtime_r(&tt, &mut tm) };
    if r.is_null() {
        return None;
    }
    Some(LocalTime {
        sec: tm.tm_sec,
        min: tm.tm_min,
        hour: tm.tm_hour,
        mday: tm.tm_mday,
        mon: tm.tm_mon,
        year: tm.tm_year,
        wday: tm.tm_wday,
        yday: tm.tm_yday,
        gmtoff: tm.tm_gmtoff,
        zone: zone_name(tm.tm_zone),
    })
}

unsafe extern "C" {
    fn tzset();
}

fn zone_name(p: *const libc::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: tm_zone points at a NUL-terminated string owned by the C
    // library's time zone state, valid until the next tzset().
    let c = unsafe { std::ffi::CStr::from_ptr(p) };
    crate::util::latin1::decode(c.to_bytes())
}

/// Broken-down UTC time (gmtime_r), with the same fields.
pub fn gmtime(t: i64) -> Option<LocalTime> {
    let tt: libc::time_t = t as libc::time_t;
    // SAFETY: an all-zero struct tm is a valid value for every field.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers refer to live, properly aligned locals;
    // gmtime_r writes only into `tm`.
    let r = unsafe { libc::gmtime_r(&tt, &mut tm) };
    if r.is_null() {
        return None;
    }
    Some(LocalTime {
        sec: tm.tm_sec,
        min: tm.tm_min,
        hour: tm.tm_hour,
        mday: tm.tm_mday,
        mon: tm.tm_mon,
        year: tm.tm_year,
        wday: tm.tm_wday,
        yday: tm.tm_yday,
        gmtoff: 0,
        zone: "GMT".to_string(),
    })
}

/// asctime(3) as glibc formats it, with the trailing newline; `None` when
/// the year does not fit.
pub fn asctime(tm: &LocalTime) -> Option<String> {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    if tm.year > i32::MAX - 1900 {
        return None;
    }
    let day = usize::try_from(tm.wday)
        .ok()
        .and_then(|i| DAYS.get(i))
        .unwrap_or(&"???");
    let mon = usize::try_from(tm.mon)
        .ok()
        .and_then(|i| MONTHS.get(i))
        .unwrap_or(&"???");
    Some(format!(
        "{day} {mon}{:>3} {:02}:{:02}:{:02} {}\n",
        tm.mday,
        tm.hour,
        tm.min,
        tm.sec,
        1900 + tm.year as i64
    ))
}

/// `asctime(localtime(&t))`.
pub fn asctime_local(t: i64) -> Option<String> {
    localtime(t).and_then(|tm| asctime(&tm))
}
