//! Replaces postcat(1) of Postfix 3.7: show the records of queue files.
//!
//! Trusts: its command line and main.cf (it is not set-uid). Privilege: that
//! of the invoking user; with `-q` it reads the queue directory, so it needs
//! the access that Postfix's postcat needs. Reads queue_directory,
//! hash_queue_names, hash_queue_depth from main.cf (MAIL_CONFIG or `-c`).
//!
//! The output is byte for byte that of Postfix 3.7.11's postcat, including
//! the segment markers, the asctime(3) times in the local time zone, the
//! `-o` offsets (a pipe has none: `%9lu` of -1), the `-d` decimal types and
//! the raw records of `-v`, and the same warnings and fatal errors for
//! malformed input.

use crate::global::mail_conf::MailConf;
use crate::global::mail_queue::{self, QueueConf};
use crate::global::msg;
use crate::global::rec_type::{self, rec_type_name};
use crate::global::record::{self, QueueStream, Rec, errtext};
use crate::util::latin1;
use std::ffi::OsString;

const SEARCH_QUEUE: u32 = 1 << 0;
const PRINT_OFFSET: u32 = 1 << 1;
const PRINT_ENV: u32 = 1 << 2;
const PRINT_HEADER: u32 = 1 << 3;
const PRINT_BODY: u32 = 1 << 4;
const PRINT_RTYPE_DEC: u32 = 1 << 5;
const RAW: u32 = 1 << 7;
const MASK_PRINT_TEXT: u32 = PRINT_HEADER | PRINT_BODY;
const MASK_PRINT_ALL: u32 = PRINT_ENV | MASK_PRINT_TEXT;

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Env,
    Header,
    Body,
}

/// The queues `-q` searches, in order.
pub const SEARCH_QUEUES: &[&str] = &[
    mail_queue::MAILDROP,
    mail_queue::INCOMING,
    mail_queue::ACTIVE,
    mail_queue::DEFERRED,
    mail_queue::HOLD,
    mail_queue::SAVED,
];

/// Options for [`postcat`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// PC_FLAG_* bits.
    pub flags: u32,
    /// `-s offset`.
    pub start_offset: i64,
    /// `-v` given (raw records: no pointer following, padding shown).
    pub verbose: bool,
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// Postfix's is_header on a C string: a non-empty run of printable ASCII
/// (no blanks inside), optional blanks, then ':'.
pub fn is_header(s: &[u8]) -> bool {
    let mut len = 0usize;
    let mut state = 0; // 0 init, 1 in name, 2 in blanks after name
    for &c in s {
        match c {
            b' ' | b'\t' => {
                if state == 1 {
                    state = 2;
                }
                if state != 2 {
                    return false;
                }
            }
            b':' => return (state == 1 || state == 2) && len > 0,
            _ => {
                if !(0x20..0x7f).contains(&c) {
                    return false;
                }
                if state == 0 {
                    state = 1;
                }
                if state != 1 {
                    return false;
                }
                len += 1;
            }
        }
    }
    false
}

/// Postfix's split_nameval: `name = value` with blanks trimmed.
pub fn split_nameval(s: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    let mut np = 0;
    while np < s.len() && is_space(s[np]) {
        np += 1;
    }
    if np >= s.len() || s[np] == b'=' {
        return Err("missing attribute name");
    }
    let mut ep = np;
    while ep < s.len() && !is_space(s[ep]) && s[ep] != b'=' {
        ep += 1;
    }
    let mut cp = ep;
    while cp < s.len() && is_space(s[cp]) {
        cp += 1;
    }
    if cp >= s.len() || s[cp] != b'=' {
        return Err("missing '=' after attribute name");
    }
    cp += 1;
    while cp < s.len() && is_space(s[cp]) {
        cp += 1;
    }
    let mut end = s.len();
    while end > cp && is_space(s[end - 1]) {
        end -= 1;
    }
    Ok((&s[np..ep], &s[cp..end]))
}

/// sscanf("%ld %ld"): how many fields converted, and their values.
fn scan_two_longs(s: &[u8]) -> (i32, i64, i64) {
    fn one(s: &[u8], i: &mut usize) -> Option<i64> {
        while *i < s.len() && is_space(s[*i]) {
            *i += 1;
        }
        let start = *i;
        let mut j = *i;
        if j < s.len() && (s[j] == b'-' || s[j] == b'+') {
            j += 1;
        }
        let d = j;
        while j < s.len() && s[j].is_ascii_digit() {
            j += 1;
        }
        if j == d {
            return None;
        }
        *i = j;
        Some(rec_type::atol(&s[start..j]))
    }
    let mut i = 0;
    let rest = &s[i..];
    if rest.iter().all(|&c| is_space(c)) {
        return (-1, -1, -1);
    }
    let Some(a) = one(s, &mut i) else {
        return (0, -1, -1);
    };
    // The space in the format matches any amount of white space, even none.
    if i >= s.len() || s[i..].iter().all(|&c| is_space(c)) {
        return (1, a, -1);
    }
    match one(s, &mut i) {
        Some(b) => (2, a, b),
        None => (1, a, -1),
    }
}

fn time_text(t: i64) -> Option<String> {
    crate::sys::time::asctime_local(t)
}

/// Standard output as Postfix's VSTREAM_OUT: written only at the points
/// where postcat flushes, and lost when a fatal error ends the program.
#[derive(Default)]
pub struct Output {
    buf: Vec<u8>,
}

impl Output {
    fn print(&mut self, text: &str) {
        self.buf.extend_from_slice(&latin1::encode(text));
    }

    fn write(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Write out what is buffered.
    pub fn flush(&mut self) {
        use std::io::Write;
        let mut so = std::io::stdout().lock();
        let _ = so.write_all(&self.buf);
        let _ = so.flush();
        self.buf.clear();
    }
}

/// Print one queue file (Postfix's postcat() routine).
pub fn postcat(fp: &mut QueueStream, opts: &Options, is_stdin: bool, out: &mut Output) {
    let flags = opts.flags;
    let rec_flags = if opts.verbose {
        record::FLAG_NONE
    } else {
        record::FLAG_DEFAULT
    };
    let path = fp.path().to_string();
    let mut prev_type: i32 = 0;
    let mut buf: Vec<u8> = Vec::new();
    let mut offset: i64 = 0;

    if opts.start_offset > 0 {
        if is_stdin {
            for n in 0..opts.start_offset {
                if fp.getc().is_none() {
                    msg::fatal(&format!(
                        "{path}: skip {} bytes failed after {n}",
                        opts.start_offset
                    ));
                }
            }
        } else if let Err(e) = fp.seek_set(opts.start_offset) {
            msg::fatal(&format!(
                "{path}: seek to {}: {}",
                opts.start_offset,
                errtext(&e)
            ));
        }
    }

    if opts.start_offset == 0
        && let Some(ch) = fp.getc()
    {
        // C's strchr also finds the terminating NUL: a 0 byte passes.
        if !rec_type::ENVELOPE.contains(&ch) && ch != 0 {
            msg::warn(&format!("{path}: input is not a valid queue file"));
            return;
        }
        fp.ungetc();
    }

    if opts.start_offset == 0 && flags & PRINT_ENV != 0 {
        out.print(&format!("*** ENVELOPE RECORDS {path} ***\n"));
    }
    let mut state = State::Env;
    let mut do_print = flags & PRINT_ENV != 0;
    let mut data_offset: i64 = -1;
    let mut data_size: i64 = -1;

    let prefix = |offset: i64, t: i32| {
        let mut s = String::new();
        if flags & PRINT_OFFSET != 0 {
            s.push_str(&format!("{:>9} ", offset as u64));
        }
        if flags & PRINT_RTYPE_DEC != 0 {
            s.push_str(&format!("{t:>3} "));
        }
        s
    };
    let marker = |out: &mut Output, offset: i64, t: u8, text: &str| {
        out.print(&format!(
            "{}*** {text} {path} ***\n",
            prefix(offset, t as i32)
        ));
        out.flush();
    };

    loop {
        if flags & PRINT_OFFSET != 0 {
            offset = fp.ftell();
        }
        let t = match record::rec_get_raw(fp, &mut buf, 0, rec_flags) {
            Rec::Error => msg::fatal("record read error"),
            Rec::Eof => break,
            Rec::Type(t) => t,
        };
        let mut rec = t as i32;
        let text_record = t == rec_type::CONT || t == rec_type::NORM;

        if text_record {
            let cs = record::c_str(&buf);
            if state == State::Header
                && flags & MASK_PRINT_TEXT != 0
                && prev_type != rec_type::CONT as i32
                && !(is_header(cs) || cs.first().is_some_and(|&c| c == b' ' || c == b'\t'))
            {
                state = State::Body;
                do_print = flags & PRINT_BODY != 0;
                if !do_print && flags & PRINT_ENV == 0 {
                    break;
                }
                if !do_print
                    && flags & PRINT_ENV != 0
                    && data_offset >= 0
                    && data_size >= 0
                    && let Err(e) = fp.seek_set(data_offset.wrapping_add(data_size))
                {
                    msg::fatal(&format!("seek error: {}", errtext(&e)));
                }
            }
        } else if t == rec_type::MESG {
            if state != State::Env {
                msg::warn(&format!("{path}: out-of-order message content marker"));
            }
            if flags & PRINT_ENV != 0 {
                marker(out, offset, t, "MESSAGE CONTENTS");
            }
            if flags & MASK_PRINT_TEXT == 0
                && data_offset >= 0
                && data_size >= 0
                && let Err(e) = fp.seek_set(data_offset.wrapping_add(data_size))
            {
                msg::fatal(&format!("seek error: {}", errtext(&e)));
            }
            state = State::Header;
            do_print = flags & PRINT_HEADER != 0;
            continue;
        } else if t == rec_type::XTRA {
            if state != State::Header && state != State::Body {
                msg::warn(&format!("{path}: out-of-order extracted segment marker"));
            }
            if do_print && prev_type == rec_type::CONT as i32 {
                out.print("\n");
            }
            if flags & PRINT_ENV != 0 {
                marker(out, offset, t, "HEADER EXTRACTED");
            }
            state = State::Env;
            do_print = flags & PRINT_ENV != 0;
            if !do_print {
                break;
            }
            continue;
        } else if t == rec_type::END {
            if state != State::Env {
                msg::warn(&format!("{path}: out-of-order message end marker"));
            }
            if flags & PRINT_ENV != 0 {
                marker(out, offset, t, "MESSAGE FILE END");
            }
            if flags & RAW != 0 {
                continue;
            }
            break;
        } else if t == rec_type::PTR {
            if do_print {
                print_record(out, &prefix(offset, rec), rec, &buf);
            }
            if flags & RAW == 0 && !record::rec_goto(fp, &buf) {
                msg::fatal("bad pointer record, or input is not seekable");
            }
            continue;
        } else if t == rec_type::SIZE {
            if do_print {
                print_record(out, &prefix(offset, rec), rec, &buf);
            }
            if data_size >= 0 || data_offset >= 0 {
                msg::warn("file contains multiple size records");
            } else {
                let cs = record::c_str(&buf);
                let (n, a, b) = scan_two_longs(cs);
                if n >= 1 {
                    data_size = a;
                }
                if n >= 2 {
                    data_offset = b;
                }
                if n != 2 || data_offset <= 0 || data_size <= 0 {
                    let shown: Vec<u8> = cs.iter().take(100).copied().collect();
                    msg::warn(&format!("invalid size record: {}", latin1::decode(&shown)));
                }
                if flags & PRINT_ENV == 0 {
                    if let Err(e) = fp.seek_set(data_offset) {
                        msg::fatal(&format!("seek error: {}", errtext(&e)));
                    }
                    state = State::Header;
                    do_print = flags & PRINT_HEADER != 0;
                }
            }
            continue;
        }

        if !do_print {
            continue;
        }
        let mut line = prefix(offset, rec);
        match t {
            rec_type::TIME | rec_type::WARN => {
                let secs = if t == rec_type::TIME {
                    rec_type::time_scan(record::c_str(&buf)).0
                } else {
                    rec_type::atol(record::c_str(&buf))
                };
                match time_text(secs) {
                    Some(tt) => {
                        line.push_str(&format!("{}: {tt}", rec_type_name(rec)));
                        out.print(&line);
                    }
                    // Postfix's postcat crashes here (asctime of NULL).
                    None => msg::fatal(&format!(
                        "{path}: {}: time value out of range: {secs}",
                        rec_type_name(rec)
                    )),
                }
            }
            rec_type::CONT => {
                if state == State::Env {
                    line.push_str(&format!("{}: ", rec_type_name(rec)));
                } else if opts.verbose {
                    line.push_str("unterminated_text: ");
                }
                out.print(&line);
                out.write(&buf);
                if state == State::Env || opts.verbose || flags & PRINT_OFFSET != 0 {
                    rec = 0;
                    out.print("\n");
                }
            }
            rec_type::NORM => {
                if opts.verbose {
                    line.push_str(&format!("{}: ", rec_type_name(rec)));
                }
                out.print(&line);
                out.write(&buf);
                out.print("\n");
            }
            rec_type::DTXT => {
                line.push_str(&format!("{}: ", rec_type_name(rec)));
                out.print(&line);
                out.write(&buf);
                out.print("\n");
            }
            rec_type::ATTR => {
                out.print(&line);
                let cs = record::c_str(&buf);
                match split_nameval(cs) {
                    Err(why) => {
                        let shown: Vec<u8> = cs.iter().take(100).copied().collect();
                        msg::warn(&format!(
                            "{path}: malformed attribute: {why}: {}",
                            latin1::decode(&shown)
                        ));
                    }
                    Ok((name, value)) => {
                        if name == b"create_time" {
                            let secs = rec_type::atol(value);
                            match time_text(secs) {
                                Some(tt) => out.print(&format!("create_time: {tt}")),
                                None => msg::fatal(&format!(
                                    "{path}: create_time: time value out of range: {secs}"
                                )),
                            }
                        } else {
                            out.print(&format!(
                                "{}: {}={}\n",
                                rec_type_name(rec),
                                latin1::decode(name),
                                latin1::decode(value)
                            ));
                        }
                    }
                }
            }
            _ => {
                out.print(&line);
                out.print(&format!(
                    "{}: {}\n",
                    rec_type_name(rec),
                    latin1::decode(record::c_str(&buf))
                ));
            }
        }
        prev_type = rec;
        out.flush();
    }
}

fn print_record(out: &mut Output, prefix: &str, rec: i32, buf: &[u8]) {
    out.print(&format!(
        "{prefix}{}: {}\n",
        rec_type_name(rec),
        latin1::decode(record::c_str(buf))
    ));
    out.flush();
}

fn usage(myname: &str) -> ! {
    msg::fatal(&format!(
        "usage: {myname} [-b (body text)] [-c config_dir] [-d (decimal record type)] \
[-e (envelope records)] [-h (header text)] [-q (access queue)] [-v] [file(s)...]"
    ))
}

fn eprint_raw(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(&latin1::encode(text));
}

/// postcat's entry point.
pub fn main(args: Vec<OsString>) -> i32 {
    let args: Vec<String> = args.iter().map(|a| latin1::from_os(a)).collect();
    let argv0 = args.first().cloned().unwrap_or_else(|| "postcat".into());
    msg::init(&argv0);

    let mut opts = Options::default();
    let mut config_dir: Option<String> = None;

    // getopt(3) with "+bc:dehoqrs:v".
    let mut optind = 1;
    'outer: while optind < args.len() {
        let arg = &args[optind];
        if arg == "--" {
            optind += 1;
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            break;
        }
        let chars: Vec<char> = arg.chars().collect();
        let mut j = 1;
        while j < chars.len() {
            let ch = chars[j];
            j += 1;
            let needs_arg = matches!(ch, 'c' | 's');
            let mut optarg = String::new();
            if needs_arg {
                if j < chars.len() {
                    optarg = chars[j..].iter().collect();
                } else if optind + 1 < args.len() {
                    optind += 1;
                    optarg = args[optind].clone();
                } else {
                    eprint_raw(&format!("{argv0}: option requires an argument -- '{ch}'\n"));
                    usage(&argv0);
                }
            }
            match ch {
                'b' => opts.flags |= PRINT_BODY,
                'c' => config_dir = Some(optarg),
                'd' => opts.flags |= PRINT_RTYPE_DEC,
                'e' => opts.flags |= PRINT_ENV,
                'h' => opts.flags |= PRINT_HEADER,
                'o' => opts.flags |= PRINT_OFFSET,
                'q' => opts.flags |= SEARCH_QUEUE,
                'r' => opts.flags |= RAW,
                's' => {
                    if optarg.is_empty() || !optarg.bytes().all(|b| b.is_ascii_digit()) {
                        msg::fatal(&format!("bad offset: {optarg}"));
                    }
                    opts.start_offset = rec_type::atol(optarg.as_bytes());
                }
                'v' => {
                    opts.verbose = true;
                    msg::more_verbose();
                }
                _ => {
                    eprint_raw(&format!("{argv0}: invalid option -- '{ch}'\n"));
                    usage(&argv0);
                }
            }
            if needs_arg {
                optind += 1;
                continue 'outer;
            }
        }
        optind += 1;
    }
    if opts.flags & MASK_PRINT_ALL == 0 {
        opts.flags |= MASK_PRINT_ALL;
    }

    let conf = match MailConf::read(config_dir.as_deref()) {
        Ok(c) => c,
        Err(e) => msg::fatal(&e.0),
    };
    match conf.get_bool("smtputf8_enable") {
        Ok(b) => msg::set_utf8_enable(b),
        Err(e) => msg::fatal(&e.0),
    }
    let operands = &args[optind..];
    let mut out = Output::default();

    if operands.is_empty() {
        let mut fp = match QueueStream::stdin() {
            Ok(f) => f,
            Err(e) => msg::fatal(&format!("open stdin: {}", errtext(&e))),
        };
        postcat(&mut fp, &opts, true, &mut out);
    } else if opts.flags & SEARCH_QUEUE != 0 {
        let qc = match QueueConf::from_conf(&conf) {
            Ok(q) => q,
            Err(e) => msg::fatal(&e.0),
        };
        if let Err(e) = std::env::set_current_dir(latin1::to_path(&qc.queue_directory)) {
            msg::fatal(&format!("chdir {}: {}", qc.queue_directory, errtext(&e)));
        }
        for id in operands {
            if !mail_queue::id_ok(id) {
                msg::fatal(&format!("bad mail queue ID: {id}"));
            }
            let mut found = None;
            let mut last_err = None;
            'tries: for _ in 0..2 {
                for q in SEARCH_QUEUES {
                    let rel = qc.path(q, id);
                    match std::fs::File::open(latin1::to_path(&rel)) {
                        Ok(f) => {
                            found = Some(QueueStream::new(f, &rel));
                            break 'tries;
                        }
                        Err(e) => last_err = Some(e),
                    }
                }
            }
            let Some(mut fp) = found else {
                let e = last_err.unwrap_or_else(|| std::io::Error::from_raw_os_error(libc::ENOENT));
                msg::fatal(&format!("open queue file {id}: {}", errtext(&e)));
            };
            postcat(&mut fp, &opts, false, &mut out);
        }
    } else {
        for name in operands {
            let mut fp = match QueueStream::open(name) {
                Ok(f) => f,
                Err(e) => msg::fatal(&format!("open {name}: {}", errtext(&e))),
            };
            postcat(&mut fp, &opts, false, &mut out);
        }
    }
    // Postfix exits without flushing its output stream: whatever was not
    // flushed after a record (the header of an empty file, say) is lost.
    drop(out);
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_detection() {
        assert!(is_header(b"Subject: x"));
        assert!(is_header(b"Subject : x"));
        assert!(!is_header(b"Sub ject: x"));
        assert!(!is_header(b": x"));
        assert!(!is_header(b"body"));
        assert!(!is_header(b""));
        assert!(!is_header(b"X\x80: y"));
    }

    #[test]
    fn nameval() {
        assert_eq!(split_nameval(b" a = b "), Ok((&b"a"[..], &b"b"[..])));
        assert_eq!(split_nameval(b"=1"), Err("missing attribute name"));
        assert_eq!(
            split_nameval(b" n m = v "),
            Err("missing '=' after attribute name")
        );
        assert_eq!(split_nameval(b"x="), Ok((&b"x"[..], &b""[..])));
    }

    #[test]
    fn size_scan() {
        assert_eq!(scan_two_longs(b"  308  746 1"), (2, 308, 746));
        assert_eq!(scan_two_longs(b"5"), (1, 5, -1));
        assert_eq!(scan_two_longs(b"x"), (0, -1, -1));
        assert_eq!(scan_two_longs(b""), (-1, -1, -1));
        assert_eq!(scan_two_longs(b"1-2"), (2, 1, -2));
    }
}
