//! Queue-file record types of Postfix 3.7 (`rec_type.h`): the one-byte type
//! codes, their printable names as postcat shows them, the record sets that
//! each queue-file segment may hold, and the fixed-width formats of records
//! that are rewritten in place.

/// Arrival information: first record, written by cleanup, rewritten in place.
pub const SIZE: u8 = b'C';
/// Arrival time `"sec usec"` (required).
pub const TIME: u8 = b'T';
/// Queue file creation time (optional).
pub const CTIME: u8 = b'c';
/// Sender full name.
pub const FULL: u8 = b'F';
/// Inspector transport.
pub const INSP: u8 = b'I';
/// Content filter (loop filter) transport; same code as [`CONT`].
pub const FILT: u8 = b'L';
/// Sender address (required).
pub const FROM: u8 = b'S';
/// Delivered recipient.
pub const DONE: u8 = b'D';
/// To-do recipient.
pub const RCPT: u8 = b'R';
/// Original recipient.
pub const ORCP: u8 = b'O';
/// Cancelled recipient.
pub const DRCP: u8 = b'/';
/// Time of the next "delayed mail" warning (`%15ld`).
pub const WARN: u8 = b'W';
/// Named attribute `name=value`.
pub const ATTR: u8 = b'A';
/// Killed record.
pub const KILL: u8 = b'K';
/// Redirect target.
pub const RDR: u8 = b'>';
/// Cleanup processing flags.
pub const FLGS: u8 = b'f';
/// Cleanup delay upon arrival.
pub const DELAY: u8 = b'd';
/// Start of the message content.
pub const MESG: u8 = b'M';
/// Content line without end of line (continued in the next record).
pub const CONT: u8 = b'L';
/// Content line.
pub const NORM: u8 = b'N';
/// Padding (formerly deleted text).
pub const DTXT: u8 = b'w';
/// Start of the extracted segment.
pub const XTRA: u8 = b'X';
/// Return-receipt address from headers.
pub const RRTO: u8 = b'r';
/// Errors-to address from headers.
pub const ERTO: u8 = b'e';
/// Priority.
pub const PRIO: u8 = b'P';
/// Pointer to another record (`%15ld`).
pub const PTR: u8 = b'p';
/// VERP delimiters.
pub const VERP: u8 = b'V';
/// DSN RET (full/hdrs).
pub const DSN_RET: u8 = b'<';
/// DSN envelope ID.
pub const DSN_ENVID: u8 = b'i';
/// DSN original recipient.
pub const DSN_ORCPT: u8 = b'o';
/// DSN NOTIFY flags.
pub const DSN_NOTIFY: u8 = b'n';
/// Milter count.
pub const MILT_COUNT: u8 = b'm';
/// End of the queue file (required).
pub const END: u8 = b'E';

/// A "pure recipient" run at the end of the initial envelope, with its
/// segment terminator.
pub const ENV_RECIPIENT: &[u8] = b"MDRO/Kon";
/// The same for the extracted segment.
pub const EXT_RECIPIENT: &[u8] = b"EDRO/Kon";

/// Records allowed in the envelope segment; the first ends the segment.
pub const ENVELOPE: &[u8] = b"MCTcFILSDRO/WVA>K<ion";
/// Records allowed in the content segment; the first ends the segment.
pub const CONTENT: &[u8] = b"XLNw";
/// Records allowed in the extracted segment; the first ends the segment.
pub const EXTRACT: &[u8] = b"EDRO/PreAFIL>Kon";

/// Envelope records that postdrop accepts from a local submitter.
pub const POST_ENVELOPE: &[u8] = b"MFSRVAin";
/// Content records that postdrop accepts.
pub const POST_CONTENT: &[u8] = b"XLN";
/// Extracted records that postdrop accepts.
pub const POST_EXTRACT: &[u8] = b"EAR";

/// Payload size of a fixed-width pointer record (`%15ld`).
pub const PTR_PAYL_SIZE: usize = 15;

/// Is `t` one of the record types in `set`?
pub fn in_set(set: &[u8], t: u8) -> bool {
    set.contains(&t)
}

/// The SIZE record payload: six `%15ld` fields separated by spaces
/// (content size, data offset, recipient count, qmgr flags, content
/// length, SMTPUTF8 flags).
pub fn size_payload(fields: [i64; 6]) -> String {
    let f = fields;
    format!(
        "{:>15} {:>15} {:>15} {:>15} {:>15} {:>15}",
        f[0], f[1], f[2], f[3], f[4], f[5]
    )
}

/// A WARN or PTR record payload: one `%15ld` field.
pub fn long15_payload(v: i64) -> String {
    format!("{v:>15}")
}

/// The TIME record payload `"sec usec"`.
pub fn time_payload(sec: i64, usec: i64) -> String {
    format!("{sec} {usec}")
}

/// C's atol(3): optional white space and sign, then digits; stops at the
/// first other byte; saturates on overflow.
pub fn atol(s: &[u8]) -> i64 {
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r') {
        i += 1;
    }
    let mut neg = false;
    if i < s.len() && (s[i] == b'-' || s[i] == b'+') {
        neg = s[i] == b'-';
        i += 1;
    }
    let mut v: i64 = 0;
    let mut over = false;
    while i < s.len() && s[i].is_ascii_digit() {
        let d = (s[i] - b'0') as i64;
        if !over {
            match v.checked_mul(10).and_then(|x| {
                if neg {
                    x.checked_sub(d)
                } else {
                    x.checked_add(d)
                }
            }) {
                Some(x) => v = x,
                None => {
                    over = true;
                    v = if neg { i64::MIN } else { i64::MAX };
                }
            }
        }
        i += 1;
    }
    v
}

/// Parse a TIME record payload as Postfix does: seconds with atol, skip the
/// digits, then microseconds with atol of the rest.
pub fn time_scan(s: &[u8]) -> (i64, i64) {
    let sec = atol(s);
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    (sec, atol(&s[n..]))
}

/// The printable name of a record type, as `postcat` shows it; negative
/// values are the reader's end-of-file and error codes.
pub fn rec_type_name(t: i32) -> &'static str {
    if t == -1 {
        return "end-of-file";
    }
    if t == -2 {
        return "error";
    }
    let Ok(b) = u8::try_from(t) else {
        return "unknown_record_type";
    };
    match b {
        SIZE => "message_size",
        TIME => "message_arrival_time",
        CTIME => "queue_file_create_time",
        FULL => "sender_fullname",
        INSP => "content_inspector",
        FILT => "content_filter",
        FROM => "sender",
        DONE => "done_recipient",
        DRCP => "canceled_recipient",
        RCPT => "recipient",
        ORCP => "original_recipient",
        WARN => "warning_message_time",
        ATTR => "named_attribute",
        PTR => "pointer_record",
        KILL => "killed_record",
        MESG => "message_content",
        NORM => "regular_text",
        DTXT => "padding",
        XTRA => "extracted_info",
        RRTO => "return_receipt",
        ERTO => "errors_to",
        PRIO => "priority",
        VERP => "verp_delimiters",
        END => "message_end",
        RDR => "redirect_to",
        FLGS => "flags",
        DSN_RET => "dsn_return_flags",
        DSN_ENVID => "dsn_envelope_id",
        DSN_ORCPT => "dsn_original_recipient",
        DSN_NOTIFY => "dsn_notify_flags",
        _ => "unknown_record_type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_like_postfix() {
        assert_eq!(rec_type_name(b'L' as i32), "content_filter");
        assert_eq!(rec_type_name(b'm' as i32), "unknown_record_type");
        assert_eq!(rec_type_name(b'd' as i32), "unknown_record_type");
        assert_eq!(rec_type_name(-1), "end-of-file");
        assert_eq!(rec_type_name(-2), "error");
        assert_eq!(rec_type_name(0), "unknown_record_type");
    }

    #[test]
    fn fixed_width_payloads() {
        let s = size_payload([308, 746, 1, 12, 308, 0]);
        assert_eq!(s.len(), 95);
        assert_eq!(
            s,
            "            308             746               1              12             308               0"
        );
        assert_eq!(long15_payload(0).len(), PTR_PAYL_SIZE);
        assert_eq!(long15_payload(-5), "             -5");
    }

    #[test]
    fn atol_and_time_scan() {
        assert_eq!(atol(b"  -12x"), -12);
        assert_eq!(atol(b"99999999999999999999999"), i64::MAX);
        assert_eq!(atol(b"-99999999999999999999999"), i64::MIN);
        assert_eq!(atol(b"x1"), 0);
        assert_eq!(time_scan(b"1795624322 582767"), (1795624322, 582767));
        // Digits are skipped from the start only, as Postfix does.
        assert_eq!(time_scan(b" 5 6"), (5, 5));
    }
}
