//! Replaces postqueue(1) of Postfix 3.7: the queue listing (`-p`, which
//! `mailq` / `sendmail -bp` run) and its JSON form (`-j`), and the flush requests (`-f`, `-i`,
//! `-s`).
//!
//! Trusts: nothing from the invoking user beyond validated arguments (in
//! Postfix it is set-gid postdrop). Privilege: the invoker's. Reads
//! queue_directory, mail_owner, smtputf8_enable, enable_long_queue_ids,
//! hash_queue_names, hash_queue_depth, empty_address_recipient,
//! duplicate_filter_limit, fast_flush_domains, mail_name,
//! showq_service_name, flush_service_name, queue_service_name,
//! pickup_service_name.
//!
//! Like Postfix's postqueue, the listing comes from the showq service on
//! `public/showq` when one answers (the attribute protocol is spoken as a
//! client). When none answers, the superuser (and, in rostfix's non-root
//! mode, the mail_owner) gets the listing read from the queue directly,
//! after Postfix's "Mail system is down" warning; Postfix runs its showq
//! program for that, we call the same library function a showq service
//! will use ([`crate::global::showq::list_queue`]).

use crate::global::mail_conf::MailConf;
use crate::global::mail_queue;
use crate::global::msg;
use crate::global::out;
use crate::global::record::errtext;
use crate::global::showq::{self, QueueEntry, ShowqConf};
use crate::util::latin1;
use std::ffi::OsString;
use std::io::Read;

/// sysexits(3) codes used here.
const EX_USAGE: i32 = 64;
const EX_UNAVAILABLE: i32 = 69;

/// Postfix's postqueue installs a cleanup hook that turns every fatal exit
/// into EX_UNAVAILABLE; so do we.
fn fatal(text: &str) -> ! {
    msg::fatal_status(EX_UNAVAILABLE, text)
}

fn usage() -> ! {
    let _ = EX_USAGE;
    fatal(
        "usage: postqueue -f | postqueue -i queueid | postqueue -j | postqueue -p | postqueue -s site",
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Default,
    List,
    FlushQueue,
    FlushSite,
    FlushFile,
    Json,
}

/// Postfix's valid_hostname without diagnostics.
pub fn valid_hostname(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() {
        return false;
    }
    let mut label_len = 0;
    let mut non_numeric = false;
    for (i, &c) in b.iter().enumerate() {
        let next = b.get(i + 1).copied();
        if c.is_ascii_alphanumeric() || c == b'_' {
            label_len += 1;
            if label_len > 63 {
                return false;
            }
            if !c.is_ascii_digit() {
                non_numeric = true;
            }
        } else if c == b'.' {
            if label_len == 0 || next.is_none() {
                return false;
            }
            label_len = 0;
        } else if c == b'-' {
            non_numeric = true;
            label_len += 1;
            if label_len == 1 || next.is_none() || next == Some(b'.') {
                return false;
            }
        } else {
            return false;
        }
    }
    non_numeric && name.chars().count() <= 255
}

/// Postfix's valid_mailhost_literal without diagnostics: `[ipv4]` or
/// `[ipv6:addr]`.
pub fn valid_mailhost_literal(name: &str) -> bool {
    let Some(inner) = name.strip_prefix('[').and_then(|s| s.strip_suffix(']')) else {
        return false;
    };
    if inner.contains(']') {
        return false;
    }
    if let Some(v6) = inner
        .strip_prefix("IPv6:")
        .or_else(|| inner.strip_prefix("ipv6:"))
    {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    inner.parse::<std::net::Ipv4Addr>().is_ok()
        && inner.split('.').count() == 4
        && inner.split('.').all(|p| !p.is_empty() && p.len() <= 3)
}

// ------------------------------------------------------------ formatting

/// asctime(localtime()) for the listing; C prints "(null)" when the time
/// cannot be converted.
fn arrival_text(t: i64) -> String {
    crate::sys::time::asctime_local(t).unwrap_or_else(|| "(null)".into())
}

/// The classic listing (showq_compat), for entries as showq sends them.
pub fn format_compat(entries: &[QueueEntry], long_ids: bool) -> String {
    let mut o = String::new();
    let mut total: u64 = 0;
    for (n, e) in entries.iter().enumerate() {
        if n > 0 {
            o.push('\n');
        } else if long_ids {
            o.push_str(&format!(
                "{:<17} {:>8} {:<19} {}\n",
                "----Queue ID-----", "--Size--", "---Arrival Time----", "--Sender/Recipient------"
            ));
        } else {
            o.push_str(&format!(
                "{:<11} {:>7} {:<20} {}\n",
                "-Queue ID-", "--Size--", "----Arrival Time----", "-Sender/Recipient-------"
            ));
        }
        let mut status = e.id.clone();
        if e.queue == mail_queue::ACTIVE {
            status.push('*');
        } else if e.queue == mail_queue::HOLD {
            status.push('!');
        }
        if e.forced_expire {
            status.push('#');
        }
        let when: String = arrival_text(e.arrival_time).chars().collect();
        if long_ids {
            let w: String = when.chars().take(19).collect();
            o.push_str(&format!(
                "{status:<17} {:>8} {w:>19} {}\n",
                e.size, e.sender
            ));
        } else {
            let w: String = when.chars().take(20).collect();
            o.push_str(&format!(
                "{status:<11} {:>7} {w:>20} {}\n",
                e.size, e.sender
            ));
        }
        let mut saved_reason = String::new();
        for (addr, why) in &e.recipients {
            if *why != saved_reason {
                saved_reason = why.clone();
                let show = if why.is_empty() {
                    "reason unavailable"
                } else {
                    why.as_str()
                };
                let pad = 76usize.saturating_sub(show.chars().count());
                o.push_str(&format!("{:pad$}({show})\n", ""));
            }
            if long_ids {
                o.push_str(&format!("{:<17} {:>8} {:<19} {addr}\n", "", "", ""));
            } else {
                o.push_str(&format!("{:<11} {:>7} {:<20} {addr}\n", "", "", ""));
            }
        }
        total = total.wrapping_add(e.size as u64);
    }
    if entries.is_empty() {
        o.push_str("Mail queue is empty\n");
    } else {
        o.push_str(&format!(
            "\n-- {} Kbytes in {} Request{}.\n",
            total / 1024,
            entries.len(),
            if entries.len() == 1 { "" } else { "s" }
        ));
    }
    o
}

/// Postfix's json_quote: escapes, then printable().
pub fn json_quote(text: &str, utf8: bool) -> String {
    let mut r = String::new();
    for c in text.chars() {
        let u = c as u32;
        if u < 0x20 || u == 0x7f {
            match c {
                '\u{8}' => r.push_str("\\b"),
                '\u{c}' => r.push_str("\\f"),
                '\n' => r.push_str("\\n"),
                '\r' => r.push_str("\\r"),
                '\t' => r.push_str("\\t"),
                _ => r.push_str(&format!("\\u{u:04X}")),
            }
        } else {
            if c == '\\' || c == '"' {
                r.push('\\');
            }
            r.push(c);
        }
    }
    msg::printable(&r, utf8)
}

/// One JSON line per message (showq_json).
pub fn format_json(entries: &[QueueEntry], utf8: bool) -> String {
    let mut o = String::new();
    for e in entries {
        o.push_str(&format!(
            "{{\"queue_name\": \"{}\", \"queue_id\": \"{}\", \"arrival_time\": {}, \
\"message_size\": {}, \"forced_expire\": {}, \"sender\": \"{}\", \"recipients\": [",
            json_quote(&e.queue, utf8),
            json_quote(&e.id, utf8),
            e.arrival_time,
            e.size,
            e.forced_expire,
            json_quote(&e.sender, utf8)
        ));
        for (i, (addr, why)) in e.recipients.iter().enumerate() {
            if i > 0 {
                o.push_str(", ");
            }
            o.push_str(&format!("{{\"address\": \"{}\"", json_quote(addr, utf8)));
            if !why.is_empty() {
                o.push_str(&format!(
                    ", \"delay_reason\": \"{}\"",
                    json_quote(why, utf8)
                ));
            }
            o.push('}');
        }
        o.push_str("]}\n");
    }
    o
}

// ------------------------------------------------------------ showq client

/// A reader of Postfix's attribute protocol (attr_print0 format:
/// `name\0value\0` pairs, a lone `\0` ends a group).
struct Attr0<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Attr0<'_> {
    fn string(&mut self) -> Option<String> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().position(|&b| b == 0)?;
        self.pos += n + 1;
        Some(latin1::decode(&rest[..n]))
    }

    /// The next group has more attributes (true), or a terminator was
    /// consumed (false).
    fn more(&mut self) -> Option<bool> {
        match self.data.get(self.pos) {
            None => None,
            Some(0) => {
                self.pos += 1;
                Some(false)
            }
            Some(_) => Some(true),
        }
    }

    fn expect(&mut self, name: &str, utf8: bool) -> Option<String> {
        let n = self.string()?;
        if n != name {
            return None;
        }
        self.string().map(|v| msg::printable(&v, utf8))
    }
}

fn parse_showq(data: &[u8], utf8: bool) -> Option<Vec<QueueEntry>> {
    let mut a = Attr0 { data, pos: 0 };
    if a.expect("protocol", utf8)? != "mail_queue_list_protocol" || a.more()? {
        return None;
    }
    let mut out = Vec::new();
    while a.more()? {
        let queue = a.expect("queue_name", utf8)?;
        let id = a.expect("queue_id", utf8)?;
        let time = a.expect("time", utf8)?.parse().ok()?;
        let size = a.expect("size", utf8)?.parse().ok()?;
        let fe: i64 = a.expect("forced_expire", utf8)?.parse().ok()?;
        let sender = a.expect("sender", utf8)?;
        let mut e = QueueEntry {
            queue,
            id,
            arrival_time: time,
            size,
            forced_expire: fe != 0,
            sender,
            recipients: Vec::new(),
        };
        while a.more()? {
            let r = a.expect("recipient", utf8)?;
            let w = a.expect("reason", utf8)?;
            e.recipients.push((r, w));
        }
        out.push(e);
    }
    Some(out)
}

fn show_queue(conf: &MailConf, mode: Mode) {
    let sc = match ShowqConf::from_conf(conf) {
        Ok(s) => s,
        Err(e) => fatal(&e.0),
    };
    let mail_name = conf
        .lookup_eval("mail_name")
        .ok()
        .flatten()
        .unwrap_or_default();
    let service = conf
        .lookup_eval("showq_service_name")
        .ok()
        .flatten()
        .unwrap_or_else(|| "showq".into());
    let entries = match std::os::unix::net::UnixStream::connect(format!("public/{service}")) {
        Ok(mut s) => {
            let mut data = Vec::new();
            let _ = s.read_to_end(&mut data);
            match parse_showq(&data, sc.utf8) {
                Some(e) => e,
                None => fatal("malformed showq server response"),
            }
        }
        Err(e) => {
            let why = errtext(&e);
            let code = e.raw_os_error();
            if code == Some(libc::EACCES) || code == Some(libc::EPERM) {
                fatal(&format!(
                    "Connect to the {mail_name} {service} service: {why}"
                ));
            }
            let owner = conf
                .lookup_eval("mail_owner")
                .ok()
                .flatten()
                .and_then(|n| crate::sys::ids::user_uid(&n));
            let euid = crate::sys::ids::geteuid();
            if euid != 0 && Some(euid) != owner {
                fatal(&format!(
                    "Queue report unavailable - mail system is down (Connect to the {mail_name} {service} service: {why})"
                ));
            }
            msg::warn(&format!(
                "Mail system is down -- accessing queue directly (Connect to the {mail_name} {service} service: {why})"
            ));
            let mut v = Vec::new();
            // showq logs its warnings; we have no log yet, so they are dropped.
            let r = showq::list_queue(&sc, &mut |_w| {}, &mut |e| v.push(e));
            if r.is_err() {
                fatal("malformed showq server response");
            }
            v
        }
    };
    let text = match mode {
        Mode::Json => format_json(&entries, sc.utf8),
        _ => format_compat(&entries, sc.queue.long_ids),
    };
    out::print(&text);
    out::flush();
}

/// Write a trigger to a public service; false when nobody listens.
fn trigger(service: &str, bytes: &[u8]) -> bool {
    use std::io::Write;
    let path = format!("public/{service}");
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) => {
            msg::warn(&format!("unable to look up {path}: {}", errtext(&e)));
            return false;
        }
    };
    use std::os::unix::fs::FileTypeExt;
    if meta.file_type().is_fifo() {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(mut f) => f.write_all(bytes).is_ok(),
            Err(e) => {
                msg::warn(&format!("fifo_trigger: open {path}: {}", errtext(&e)));
                false
            }
        }
    } else {
        match std::os::unix::net::UnixStream::connect(&path) {
            Ok(mut s) => s.write_all(bytes).is_ok(),
            Err(e) => {
                msg::warn(&format!("connect to {path}: {}", errtext(&e)));
                false
            }
        }
    }
}

/// postqueue's entry point (`mailq` passes `-p`).
pub fn main(args: Vec<OsString>) -> i32 {
    let args: Vec<String> = args.iter().map(|a| latin1::from_os(a)).collect();
    // Postfix censors the process name: it is provided by the user.
    msg::init("postqueue");
    let mut mode = Mode::Default;
    let mut config_dir: Option<String> = None;
    let mut site: Option<String> = None;
    let mut id: Option<String> = None;

    // getopt(3) with "+c:fi:jps:v".
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
            let needs_arg = matches!(ch, 'c' | 'i' | 's');
            let mut optarg = String::new();
            if needs_arg {
                if j < chars.len() {
                    optarg = chars[j..].iter().collect();
                } else if optind + 1 < args.len() {
                    optind += 1;
                    optarg = args[optind].clone();
                } else {
                    eprint_raw(&format!(
                        "postqueue: option requires an argument -- '{ch}'\n"
                    ));
                    usage();
                }
            }
            let set = |m: &mut Mode, new: Mode| {
                if *m != Mode::Default {
                    usage();
                }
                *m = new;
            };
            match ch {
                'c' => config_dir = Some(optarg),
                'f' => set(&mut mode, Mode::FlushQueue),
                'i' => {
                    set(&mut mode, Mode::FlushFile);
                    id = Some(optarg);
                }
                'j' => set(&mut mode, Mode::Json),
                'p' => set(&mut mode, Mode::List),
                's' => {
                    set(&mut mode, Mode::FlushSite);
                    site = Some(optarg);
                }
                'v' => {
                    if crate::sys::ids::geteuid() == 0 {
                        msg::more_verbose();
                    }
                }
                _ => {
                    eprint_raw(&format!("postqueue: invalid option -- '{ch}'\n"));
                    usage();
                }
            }
            if needs_arg {
                optind += 1;
                continue 'outer;
            }
        }
        optind += 1;
    }
    if args.len() > optind {
        usage();
    }

    let conf = match MailConf::read(config_dir.as_deref()) {
        Ok(c) => c,
        Err(e) => fatal(&e.0),
    };
    msg::set_utf8_enable(conf.get_bool("smtputf8_enable").unwrap_or(false));
    let queue_dir = match conf.get_str("queue_directory", 1, 0) {
        Ok(q) => q,
        Err(e) => fatal(&e.0),
    };
    if let Err(e) = std::env::set_current_dir(latin1::to_path(&queue_dir)) {
        fatal(&format!("chdir {queue_dir}: {}", errtext(&e)));
    }

    if let Some(s) = &site {
        let bad = if s.starts_with('[') {
            !valid_mailhost_literal(s)
        } else {
            !valid_hostname(s)
        };
        if bad {
            let shown: String = s.chars().take(100).collect();
            fatal(&format!(
                "Cannot flush mail queue - invalid destination: \"{shown}{}\"",
                if s.chars().count() > 100 { "..." } else { "" }
            ));
        }
    }
    if let Some(i) = &id
        && !mail_queue::id_ok(i)
    {
        let shown: String = i.chars().take(100).collect();
        fatal(&format!(
            "Cannot flush queue ID - invalid name: \"{shown}{}\"",
            if i.chars().count() > 100 { "..." } else { "" }
        ));
    }

    let svc = |name: &str, def: &str| {
        conf.lookup_eval(name)
            .ok()
            .flatten()
            .unwrap_or_else(|| def.to_string())
    };
    match mode {
        Mode::List | Mode::Json => show_queue(&conf, mode),
        Mode::FlushQueue => {
            if !trigger(&svc("queue_service_name", "qmgr"), b"FADI")
                || !trigger(&svc("pickup_service_name", "pickup"), b"W")
            {
                fatal("Cannot flush mail queue - mail system is down");
            }
        }
        Mode::FlushSite => {
            let s = site.unwrap_or_default();
            let mut list = crate::global::flush_clnt::flush_domains(&conf);
            match crate::global::flush_clnt::send_site(&conf, &mut list, &s) {
                crate::global::flush_clnt::STAT_OK => {}
                crate::global::flush_clnt::STAT_BAD => fatal(&format!("Invalid request: \"{s}\"")),
                crate::global::flush_clnt::STAT_FAIL => {
                    fatal("Cannot flush mail queue - mail system is down")
                }
                crate::global::flush_clnt::STAT_DENY => fatal(&format!(
                    "Flush service is not configured for destination \"{s}\""
                )),
                n => fatal(&format!("Unknown flush server reply status {n}")),
            }
        }
        Mode::FlushFile => {
            let id = id.unwrap_or_default();
            match crate::global::flush_clnt::send_file(&conf, &id) {
                crate::global::flush_clnt::STAT_OK => {}
                crate::global::flush_clnt::STAT_BAD => fatal(&format!("Invalid request: \"{id}\"")),
                crate::global::flush_clnt::STAT_FAIL => {
                    fatal("Cannot flush mail queue - mail system is down")
                }
                n => fatal(&format!("Unexpected flush server reply status {n}")),
            }
        }
        Mode::Default => usage(),
    }
    out::flush();
    0
}

fn eprint_raw(text: &str) {
    use std::io::Write;
    out::flush();
    let _ = std::io::stderr().write_all(&latin1::encode(text));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(queue: &str, id: &str, rcpts: &[(&str, &str)]) -> QueueEntry {
        QueueEntry {
            queue: queue.into(),
            id: id.into(),
            arrival_time: 0,
            size: 277,
            forced_expire: false,
            sender: "testuser@mx.example.test".into(),
            recipients: rcpts
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        }
    }

    #[test]
    fn empty_and_json() {
        assert_eq!(format_compat(&[], false), "Mail queue is empty\n");
        assert_eq!(format_json(&[], false), "");
        let e = entry(
            "deferred",
            "9A5B5990152",
            &[("someone@defer.test", "address resolver failure")],
        );
        assert_eq!(
            format_json(&[e], false),
            "{\"queue_name\": \"deferred\", \"queue_id\": \"9A5B5990152\", \"arrival_time\": 0, \"message_size\": 277, \"forced_expire\": false, \"sender\": \"testuser@mx.example.test\", \"recipients\": [{\"address\": \"someone@defer.test\", \"delay_reason\": \"address resolver failure\"}]}\n"
        );
        assert_eq!(
            json_quote("a\"b\\c\u{1}\u{e9}", false),
            "a\\\"b\\\\c\\u0001?"
        );
    }

    #[test]
    fn hostnames() {
        assert!(valid_hostname("example.com"));
        assert!(!valid_hostname("bad..x"));
        assert!(!valid_hostname("1.2.3.4"));
        assert!(!valid_hostname("-a.b"));
        assert!(valid_mailhost_literal("[1.2.3.4]"));
        assert!(valid_mailhost_literal("[IPv6:::1]"));
        assert!(!valid_mailhost_literal("[1.2.3]"));
    }
}
