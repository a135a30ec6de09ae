//! RFC 5322 dates as Postfix writes them in headers (`mail_date.c`):
//! `Wed, 25 Nov 2026 16:32:02 +0000 (UTC)` in local time, the day of the
//! month space-padded (`%e`), the UTC offset, then the zone name.
//!
//! Also the GMT stamp `YYYYMMDDHHMMSS` that cleanup puts in the
//! Message-Id it adds.

use crate::sys::time::{LocalTime, gmtime, localtime};

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn name(table: &[&'static str], i: i32) -> &'static str {
    usize::try_from(i)
        .ok()
        .and_then(|i| table.get(i).copied())
        .unwrap_or("?")
}

/// The offset in minutes as Postfix computes it: from the differences of
/// the broken-down local and UTC times, not from tm_gmtoff.
fn offset_minutes(lt: &LocalTime, gmt: &LocalTime) -> i64 {
    let mut off = (lt.hour - gmt.hour) as i64 * 60 + (lt.min - gmt.min) as i64;
    if lt.year < gmt.year {
        off -= 24 * 60;
    } else if lt.year > gmt.year {
        off += 24 * 60;
    } else if lt.yday < gmt.yday {
        off -= 24 * 60;
    } else if lt.yday > gmt.yday {
        off += 24 * 60;
    }
    if lt.sec <= gmt.sec - 60 {
        off -= 1;
    } else if lt.sec >= gmt.sec + 60 {
        off += 1;
    }
    off
}

/// The header date of `when` (seconds since the epoch), in local time.
pub fn mail_date(when: i64) -> String {
    let (Some(lt), Some(gmt)) = (localtime(when), gmtime(when)) else {
        return String::new();
    };
    let off = offset_minutes(&lt, &gmt);
    let sign = if off < 0 { '-' } else { '+' };
    format!(
        "{}, {:>2} {} {} {:02}:{:02}:{:02} {}{:02}{:02} ({})",
        name(&DAYS, lt.wday),
        lt.mday,
        name(&MONTHS, lt.mon),
        1900 + lt.year as i64,
        lt.hour,
        lt.min,
        lt.sec,
        sign,
        off.abs() / 60,
        off.abs() % 60,
        lt.zone
    )
}

/// `%Y%m%d%H%M%S` of `when` in UTC.
pub fn gmt_stamp(when: i64) -> String {
    match gmtime(when) {
        Some(t) => format!(
            "{}{:02}{:02}{:02}{:02}{:02}",
            1900 + t.year as i64,
            t.mon + 1,
            t.mday,
            t.hour,
            t.min,
            t.sec
        ),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        // Whatever the local zone, the UTC stamp is fixed.
        assert_eq!(gmt_stamp(1795624322), "20261125163202");
        let d = mail_date(1795624322);
        assert!(d.contains(" Nov 2026 "), "{d}");
        assert!(d.ends_with(')'), "{d}");
        // A single-digit day is space-padded, as %e does.
        let d = mail_date(1_788_220_800 + 12 * 3600); // 2026-09-01 12:00 UTC
        assert!(
            d.starts_with("Tue,  1 Sep 2026 ")
                || d.contains(",  1 Sep")
                || d.contains(", 31 Aug")
                || d.contains(",  2 Sep"),
            "{d}"
        );
    }
}
