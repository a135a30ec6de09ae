//! Bounce message templates, as Postfix 3.7's bounce daemon holds them
//! (bounce_template.c, bounce_templates.c): the four built-in templates
//! (failure, delay, success, verify), the `bounce_template_file` parser
//! with its warnings, and the expansion of template text (`$name`s from the
//! bounce daemon's parameters, `$delay_warning_time_hours` and friends,
//! UTF-8 host names with smtputf8_enable).
//!
//! Used by the bounce daemon to build notices and by `postconf -b/-t`.

use crate::global::expand;
use crate::global::msg;
use crate::util::latin1;
use std::collections::HashMap;

/// One built-in template (the text mail users see in notifications).
pub struct Builtin {
    class: &'static str,
    subject: &'static str,
    postmaster_subject: Option<&'static str>,
    body: &'static [&'static str],
}

const BUILTIN_CHARSET: &str = "us-ascii";
const BUILTIN_STD_FROM: &str = "Mail Delivery System <MAILER-DAEMON>";
const BUILTIN_OBS_FROM: &str = "MAILER-DAEMON (Mail Delivery System)";
const BUILTIN_ORIGIN: &str = "[built-in]";

pub const FAILURE: Builtin = Builtin {
    class: "failure",
    subject: "Undelivered Mail Returned to Sender",
    postmaster_subject: Some("Postmaster Copy: Undelivered Mail"),
    body: &[
        "This is the mail system at host $myhostname.",
        "",
        "I'm sorry to have to inform you that your message could not",
        "be delivered to one or more recipients. It's attached below.",
        "",
        "For further assistance, please send mail to postmaster.",
        "",
        "If you do so, please include this problem report. You can",
        "delete your own text from the attached returned message.",
        "",
        "                   The mail system",
    ],
};

pub const DELAY: Builtin = Builtin {
    class: "delay",
    subject: "Delayed Mail (still being retried)",
    postmaster_subject: Some("Postmaster Warning: Delayed Mail"),
    body: &[
        "This is the mail system at host $myhostname.",
        "",
        "####################################################################",
        "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #",
        "####################################################################",
        "",
        "Your message could not be delivered for more than $delay_warning_time_hours hour(s).",
        "It will be retried until it is $maximal_queue_lifetime_days day(s) old.",
        "",
        "For further assistance, please send mail to postmaster.",
        "",
        "If you do so, please include this problem report. You can",
        "delete your own text from the attached returned message.",
        "",
        "                   The mail system",
    ],
};

pub const SUCCESS: Builtin = Builtin {
    class: "success",
    subject: "Successful Mail Delivery Report",
    postmaster_subject: None,
    body: &[
        "This is the mail system at host $myhostname.",
        "",
        "Your message was successfully delivered to the destination(s)",
        "listed below. If the message was delivered to mailbox you will",
        "receive no further notifications. Otherwise you may still receive",
        "notifications of mail delivery errors from other systems.",
        "",
        "                   The mail system",
    ],
};

pub const VERIFY: Builtin = Builtin {
    class: "verify",
    subject: "Mail Delivery Status Report",
    postmaster_subject: None,
    body: &[
        "This is the mail system at host $myhostname.",
        "",
        "Enclosed is the mail delivery report that you requested.",
        "",
        "                   The mail system",
    ],
};

/// The parameters that Postfix's bounce daemon has in its configuration
/// dictionary besides main.cf settings (global, server-skeleton and bounce
/// parameters): a template may name these, any other `$name` is undefined.
/// Recorded from Postfix 3.7.11's bounce daemon.
pub const BOUNCE_PARAMS: &[&str] = &[
    "2bounce_notice_recipient",
    "address_verify_negative_cache",
    "address_verify_service_name",
    "alias_database",
    "alternate_config_directories",
    "application_event_drain_time",
    "backwards_bounce_logfile_compatibility",
    "berkeley_db_create_buffer_size",
    "berkeley_db_read_buffer_size",
    "bounce_notice_recipient",
    "bounce_service_name",
    "bounce_size_limit",
    "bounce_template_file",
    "cleanup_service_name",
    "command_directory",
    "compatibility_level",
    "config_directory",
    "daemon_directory",
    "daemon_table_open_error_is_fatal",
    "daemon_timeout",
    "data_directory",
    "debug_peer_level",
    "debug_peer_list",
    "default_database_type",
    "default_delivery_status_filter",
    "default_privs",
    "default_process_limit",
    "default_verp_delimiters",
    "defer_service_name",
    "delay_logging_resolution_limit",
    "delay_notice_recipient",
    "delay_warning_time",
    "deliver_lock_attempts",
    "deliver_lock_delay",
    "disable_dns_lookups",
    "disable_mime_input_processing",
    "disable_mime_output_conversion",
    "dns_ncache_ttl_fix_enable",
    "dnssec_probe",
    "dont_remove",
    "double_bounce_sender",
    "enable_idna2003_compatibility",
    "enable_long_queue_ids",
    "enable_original_recipient",
    "enable_threaded_bounces",
    "error_service_name",
    "export_environment",
    "fast_flush_domains",
    "fault_injection_code",
    "flush_service_name",
    "fork_attempts",
    "fork_delay",
    "hash_queue_depth",
    "hash_queue_names",
    "header_address_token_limit",
    "header_from_format",
    "header_size_limit",
    "helpful_warnings",
    "import_environment",
    "in_flow_delay",
    "inet_interfaces",
    "inet_protocols",
    "info_log_address_format",
    "internal_mail_filter_classes",
    "ipc_idle",
    "ipc_timeout",
    "ipc_ttl",
    "known_tcp_ports",
    "line_length_limit",
    "lmdb_map_size",
    "mail_name",
    "mail_owner",
    "mail_release_date",
    "mail_version",
    "maillog_file",
    "maillog_file_compressor",
    "maillog_file_prefixes",
    "maillog_file_rotate_suffix",
    "max_idle",
    "max_use",
    "maximal_queue_lifetime",
    "message_drop_headers",
    "message_size_limit",
    "meta_directory",
    "mime_boundary_length_limit",
    "mime_nesting_limit",
    "multi_instance_directories",
    "multi_instance_enable",
    "multi_instance_group",
    "multi_instance_name",
    "multi_instance_wrapper",
    "mydestination",
    "mydomain",
    "myhostname",
    "mynetworks",
    "mynetworks_style",
    "myorigin",
    "notify_classes",
    "owner_request_special",
    "parent_domain_matches_subdomains",
    "pickup_service_name",
    "postlog_service_name",
    "process_id_directory",
    "proxy_interfaces",
    "proxymap_service_name",
    "proxywrite_service_name",
    "queue_directory",
    "queue_service_name",
    "recipient_delimiter",
    "relay_domains",
    "relayhost",
    "respectful_logging",
    "rewrite_service_name",
    "send_cyrus_sasl_authzid",
    "setgid_group",
    "shlib_directory",
    "showq_service_name",
    "smtputf8_autodetect_classes",
    "smtputf8_enable",
    "soft_bounce",
    "stale_lock_time",
    "strict_7bit_headers",
    "strict_8bitmime",
    "strict_8bitmime_body",
    "strict_mime_encoding_domain",
    "strict_smtputf8",
    "syslog_facility",
    "syslog_name",
    "tcp_windowsize",
    "trace_service_name",
    "trigger_timeout",
    "verp_delimiter_filter",
];

/// Name-value dictionary of the (simulated) bounce process.
pub type Dict = HashMap<String, String>;

/// mail_conf_lookup_eval: a name's value, `$name`-expanded recursively
/// against the dictionary; `None` when the name is undefined.
pub fn dict_eval(d: &Dict, name: &str) -> Option<String> {
    let raw = d.get(name)?;
    Some(dict_expand(d, raw))
}

/// Expand text recursively against the dictionary (undefined names expand
/// to nothing); a syntax error is fatal as in Postfix's dict_eval.
pub fn dict_expand(d: &Dict, text: &str) -> String {
    let mut out = String::new();
    let st = expand::mac_expand(&mut out, text, expand::FLAG_RECURSE, None, &mut |n, _| {
        d.get(n).cloned()
    });
    if st & expand::PARSE_ERROR != 0 {
        msg::fatal("dictionary mail_dict: macro processing error");
    }
    out
}

/// One template as the bounce daemon holds it.
#[derive(Clone)]
pub struct Template {
    pub proto: &'static Builtin,
    pub origin: String,
    pub charset: String,
    pub std_from: String,
    pub obs_from: String,
    pub subject: String,
    pub postmaster_subject: Option<String>,
    pub text: Vec<String>,
    /// The text has non-ASCII characters (8bit MIME encoding).
    pub eight_bit: bool,
    /// Text loaded from a file and not parsed yet.
    pub pending: Option<String>,
}

pub fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// Postfix's is_header: the length of a header label followed by optional
/// blanks and a colon, or 0.
pub fn is_header(line: &str) -> usize {
    #[derive(PartialEq)]
    enum St {
        Init,
        InChar,
        InCharSpace,
    }
    let mut st = St::Init;
    let mut len = 0;
    for c in line.chars() {
        match c {
            ':' => return if st == St::Init { 0 } else { len },
            ' ' | '\t' => {
                if st == St::InChar {
                    st = St::InCharSpace;
                }
                if st != St::InCharSpace {
                    return 0;
                }
            }
            _ => {
                if c == '\0' || !c.is_ascii() || c.is_ascii_control() {
                    return 0;
                }
                if st == St::Init {
                    st = St::InChar;
                }
                if st != St::InChar {
                    return 0;
                }
                len += 1;
            }
        }
    }
    0
}

pub fn all_ascii(s: &str) -> bool {
    !s.is_empty() && s.is_ascii()
}

fn all_space(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_space)
}

impl Template {
    pub fn builtin(proto: &'static Builtin) -> Template {
        Template {
            proto,
            origin: BUILTIN_ORIGIN.to_string(),
            charset: BUILTIN_CHARSET.to_string(),
            std_from: BUILTIN_STD_FROM.to_string(),
            obs_from: BUILTIN_OBS_FROM.to_string(),
            subject: proto.subject.to_string(),
            postmaster_subject: proto.postmaster_subject.map(|s| s.to_string()),
            text: proto.body.iter().map(|s| s.to_string()).collect(),
            pending: None,
            eight_bit: false,
        }
    }

    pub fn class(&self) -> &'static str {
        self.proto.class
    }

    /// Replace the template with file text (parsed when first used).
    fn load(&mut self, origin: &str, text: String) {
        *self = Template::builtin(self.proto);
        self.origin = origin.to_string();
        self.pending = Some(text);
    }

    fn reset(&mut self) {
        *self = Template::builtin(self.proto);
    }

    /// Parse loaded text, with Postfix's warnings; an unusable template is
    /// replaced by the built-in one.
    pub fn parse(&mut self) {
        let Some(buf) = self.pending.take() else {
            return;
        };
        let lines: Vec<&str> = buf.split('\n').collect();
        let class = self.class();
        let mut cur: Option<usize> = None;
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i];
            let hlen = is_header(line);
            if hlen == 0 {
                cur = Some(i);
                break;
            }
            i += 1;
            let label = &line[..hlen];
            let value = line[hlen..].trim_start_matches(|c: char| c == ':' || is_space(c));
            if value.is_empty() {
                msg::warn(&format!(
                    "{}: empty \"{label}\" header value in {class} template -- ignoring this template",
                    self.origin
                ));
                return self.reset();
            }
            if !all_ascii(value) {
                msg::warn(&format!(
                    "{}: non-ASCII \"{label}\" header value in {class} template -- ignoring this template",
                    self.origin
                ));
                return self.reset();
            }
            match label.to_ascii_lowercase().as_str() {
                "charset" => self.charset = value.to_string(),
                "from" => {
                    self.std_from = value.to_string();
                    self.obs_from = value.to_string();
                }
                "subject" => self.subject = value.to_string(),
                "postmaster-subject" => {
                    if self.postmaster_subject.is_none() {
                        msg::warn(&format!(
                            "{}: inapplicable \"{label}\" header label in {class} template -- ignoring this template",
                            self.origin
                        ));
                        return self.reset();
                    }
                    self.postmaster_subject = Some(value.to_string());
                }
                _ => {
                    msg::warn(&format!(
                        "{}: unknown \"{label}\" header label in {class} template -- ignoring this template",
                        self.origin
                    ));
                    return self.reset();
                }
            }
        }
        while let Some(c) = cur {
            if lines[c].is_empty() || all_space(lines[c]) {
                cur = if c + 1 < lines.len() {
                    Some(c + 1)
                } else {
                    None
                };
            } else {
                break;
            }
        }
        let Some(first) = cur else {
            msg::warn(&format!(
                "{}: missing message text in {class} template -- ignoring this template",
                self.origin
            ));
            return self.reset();
        };
        if lines[first..].iter().any(|l| !l.is_ascii())
            && self.charset.eq_ignore_ascii_case("us-ascii")
        {
            msg::warn(&format!(
                "{}: 8-bit message text in {class} template",
                self.origin
            ));
            msg::warn("please specify a charset value other than us-ascii");
            msg::warn("-- ignoring this template for now");
            return self.reset();
        }
        self.eight_bit = lines[first..].iter().any(|l| !l.is_ascii());
        self.text = lines[first..].iter().map(|s| s.to_string()).collect();
    }
}

/// Line reading as Postfix's vstring_get_nonl on a VSTREAM, including the
/// reuse of one line buffer (whose stale bytes a diagnostic can show).
struct LineReader<'a> {
    data: &'a [u8],
    pos: usize,
    eof: bool,
    /// The shared line buffer: the last line and a NUL, over older bytes.
    buf: Vec<u8>,
    /// Length of the last line read.
    len: usize,
}

impl<'a> LineReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        LineReader {
            data,
            pos: 0,
            eof: false,
            buf: Vec::new(),
            len: 0,
        }
    }

    /// Read a line; the result is what the C loop tests: > 0 to go on.
    fn next_line(&mut self) -> i32 {
        let rest = &self.data[self.pos..];
        let (line, result) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.pos += i + 1;
                (&rest[..i], i32::from(b'\n'))
            }
            None => {
                self.pos = self.data.len();
                self.eof = true;
                // The last character, as a (signed) C char.
                let r = rest.last().map(|&b| i32::from(b as i8)).unwrap_or(-1);
                (rest, r)
            }
        };
        if self.buf.len() < line.len() + 1 {
            self.buf.resize(line.len() + 1, 0);
        }
        self.buf[..line.len()].copy_from_slice(line);
        self.buf[line.len()] = 0;
        self.len = line.len();
        result
    }

    /// The NUL-terminated string at an offset of the line buffer.
    fn cstr_at(&self, off: usize) -> String {
        let tail = self.buf.get(off..).unwrap_or(&[]);
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        latin1::decode(&tail[..end])
    }

    /// The current line as a C string.
    fn line(&self) -> String {
        let end = self.buf[..self.len]
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.len);
        latin1::decode(&self.buf[..end])
    }
}

fn is_space_byte(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Postfix's split_nameval on a line, returning (name end, value start,
/// value end) byte offsets, or its error text.
fn split_nameval_offsets(line: &[u8]) -> Result<(usize, usize, usize, usize), &'static str> {
    let np = line
        .iter()
        .position(|&b| !is_space_byte(b))
        .unwrap_or(line.len());
    if np == line.len() || line[np] == b'=' {
        return Err("missing attribute name");
    }
    let ep = np
        + line[np..]
            .iter()
            .position(|&b| is_space_byte(b) || b == b'=')
            .unwrap_or(line.len() - np);
    let cp = ep
        + line[ep..]
            .iter()
            .position(|&b| !is_space_byte(b))
            .unwrap_or(line.len() - ep);
    if cp >= line.len() || line[cp] != b'=' {
        return Err("missing '=' after attribute name");
    }
    let vp = cp
        + 1
        + line[cp + 1..]
            .iter()
            .position(|&b| !is_space_byte(b))
            .unwrap_or(line.len() - cp - 1);
    let mut ve = line.len();
    while ve > vp && is_space_byte(line[ve - 1]) {
        ve -= 1;
    }
    Ok((np, ep, vp, ve))
}

/// Load a template file's text into the templates, as the bounce daemon's
/// bounce_templates_load (including its line numbers, which count from 2).
pub fn load_templates(path: &str, data: &[u8], ts: &mut [Template]) {
    let mut r = LineReader::new(data);
    let mut lineno = 1;
    while r.next_line() > 0 {
        lineno += 1;
        let line = r.line();
        let lb = latin1::encode(&line);
        let t = line.trim_start_matches(is_space);
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let (np, ep, vp, ve) = match split_nameval_offsets(&lb) {
            Ok(o) => o,
            Err(e) => msg::fatal(&format!("{path}, line {lineno}: {e}: \"{line}\"")),
        };
        // split_nameval terminates the name and the value in place.
        r.buf[ep] = 0;
        r.buf[ve] = 0;
        let member = latin1::decode(&lb[np..ep]);
        let mut value = latin1::decode(&lb[vp..ve]);
        if value.starts_with("<<") {
            let mut m = vp + 2;
            while m < ve && is_space_byte(lb[m]) {
                m += 1;
            }
            if m == ve {
                msg::fatal(&format!(
                    "{path}, line {lineno}: missing end marker after <<"
                ));
            }
            if !lb[m].is_ascii_alphanumeric() {
                msg::fatal(&format!(
                    "{path}, line {lineno}: malformed end marker after <<"
                ));
            }
            let marker = latin1::decode(&lb[m..ve]);
            let mut text = String::new();
            while r.next_line() > 0 {
                lineno += 1;
                let l = r.line();
                if l == marker {
                    break;
                }
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&l);
            }
            if r.eof {
                // Postfix names the marker through a pointer into the line
                // buffer, which later lines may have overwritten.
                msg::warn(&format!(
                    "{path}, line {lineno}: missing \"{}\" end marker",
                    r.cstr_at(m)
                ));
            }
            value = text;
        }
        match ts
            .iter_mut()
            .find(|t| format!("{}_template", t.class()) == member)
        {
            Some(t) => t.load(path, value),
            None => msg::warn(&format!(
                "{path}, line {lineno}: unknown template name: {member} -- ignoring this template"
            )),
        }
    }
}

/// Read the template file as Postfix's load_file: read it again while it is
/// being modified (mtime within the last second).
pub fn load_template_file(path: &str, ts: &mut [Template]) {
    use std::os::unix::fs::MetadataExt;
    use std::time::{SystemTime, UNIX_EPOCH};
    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    };
    let p = latin1::to_path(path);
    let mut before = now();
    loop {
        let mut file = match std::fs::File::open(&p) {
            Ok(f) => f,
            Err(e) => msg::fatal(&format!(
                "open {path}: {}",
                crate::global::config_file::errno_text(&e)
            )),
        };
        let mut data = Vec::new();
        let read = std::io::Read::read_to_end(&mut file, &mut data);
        load_templates(path, &data, ts);
        let mtime = match file.metadata() {
            Ok(m) => m.mtime(),
            Err(e) => msg::fatal(&format!(
                "fstat {path}: {}",
                crate::global::config_file::errno_text(&e)
            )),
        };
        if let Err(e) = read {
            msg::fatal(&format!(
                "read {path}: {}",
                crate::global::config_file::errno_text(&e)
            ));
        }
        let after = now();
        if mtime < before - 1 || mtime > after {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        before = after;
    }
}

/// Postfix's printable(): unprintable characters become `_`; with UTF-8
/// enabled, well-formed-looking multi-byte sequences are kept.
pub fn printable(s: &str, utf8: bool) -> String {
    let b = latin1::encode(s);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        if (0x20..0x7f).contains(&ch) {
            out.push(ch);
        } else if utf8
            && (194..=254).contains(&ch)
            && b.get(i + 1).is_some_and(|&c| (128..192).contains(&c))
        {
            out.push(ch);
            while b.get(i + 1).is_some_and(|&c| (128..192).contains(&c)) {
                i += 1;
                out.push(b[i]);
            }
        } else {
            out.push(b'_');
        }
        i += 1;
    }
    latin1::decode(&out)
}

/// Punycode (RFC 3492) decoding of one label's ACE part.
fn punycode_decode(input: &str) -> Option<Vec<char>> {
    const BASE: u32 = 36;
    const TMIN: u32 = 1;
    const TMAX: u32 = 26;
    let (basic, rest) = match input.rfind('-') {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => ("", input),
    };
    if !basic.is_ascii() {
        return None;
    }
    let mut out: Vec<char> = basic.chars().collect();
    let (mut n, mut i, mut bias) = (128u32, 0u32, 72u32);
    let digits: Vec<u8> = rest.bytes().collect();
    let mut p = 0;
    while p < digits.len() {
        let old_i = i;
        let mut w = 1u32;
        let mut k = BASE;
        loop {
            let c = *digits.get(p)?;
            p += 1;
            let d = match c {
                b'a'..=b'z' => c - b'a',
                b'A'..=b'Z' => c - b'A',
                b'0'..=b'9' => c - b'0' + 26,
                _ => return None,
            } as u32;
            i = i.checked_add(d.checked_mul(w)?)?;
            let t = if k <= bias {
                TMIN
            } else if k >= bias + TMAX {
                TMAX
            } else {
                k - bias
            };
            if d < t {
                break;
            }
            w = w.checked_mul(BASE - t)?;
            k += BASE;
        }
        let len = out.len() as u32 + 1;
        // Bias adaptation.
        let mut delta = if old_i == 0 {
            (i - old_i) / 700
        } else {
            (i - old_i) / 2
        };
        delta += delta / len;
        let mut kk = 0;
        while delta > ((BASE - TMIN) * TMAX) / 2 {
            delta /= BASE - TMIN;
            kk += BASE;
        }
        bias = kk + (BASE - TMIN + 1) * delta / (delta + 38);
        n = n.checked_add(i / len)?;
        i %= len;
        let c = char::from_u32(n)?;
        out.insert(i as usize, c);
        i += 1;
    }
    Some(out)
}

/// A simplified UTS #46 ToUnicode for ASCII domain names, as Postfix's
/// midna_domain_to_utf8 gives it: lower case, A-labels decoded. Returns the
/// UTF-8 bytes (as one-char-per-byte text) or the ICU error names.
pub fn domain_to_utf8(name: &str) -> Result<String, String> {
    let lower = name.to_ascii_lowercase();
    let mut labels = Vec::new();
    let mut errors: Vec<&str> = Vec::new();
    for label in lower.split('.') {
        if let Some(ace) = label.strip_prefix("xn--") {
            match punycode_decode(ace) {
                None => errors.push("UIDNA_ERROR_PUNYCODE"),
                Some(chars) => {
                    let bad = chars.is_empty()
                        || chars.iter().all(|c| c.is_ascii())
                        || chars.iter().any(|&c| {
                            (c as u32) < 0x20
                                || (0x7f..0xa0).contains(&(c as u32))
                                || c.is_ascii_uppercase()
                                || c == '.'
                        });
                    if bad {
                        errors.push("UIDNA_ERROR_INVALID_ACE_LABEL");
                    } else {
                        let s: String = chars.into_iter().collect();
                        labels.push(latin1::decode(s.as_bytes()));
                    }
                }
            }
        } else {
            if label.len() >= 4 && &label[2..4] == "--" {
                errors.push("UIDNA_ERROR_HYPHEN_3_4");
            }
            labels.push(label.to_string());
        }
    }
    if errors.is_empty() {
        Ok(labels.join("."))
    } else {
        errors.dedup();
        Err(errors.join(","))
    }
}

/// The bounce daemon's view: its configuration dictionary, the time values
/// it converted, and UTF-8 presentation of host names.
pub struct Expander {
    pub dict: Dict,
    pub delay_warning_time: i64,
    pub maximal_queue_lifetime: i64,
    pub smtputf8: bool,
    pub idna: HashMap<String, Option<String>>,
    pub use_obsolete_from: bool,
}

impl Expander {
    /// bounce_template_lookup: a template `$name`'s value (already made
    /// printable), or `None` when undefined.
    pub fn lookup(&mut self, tp: &Template, key: &str) -> Option<String> {
        for (pname, value) in [
            ("delay_warning_time", self.delay_warning_time),
            ("maximal_queue_lifetime", self.maximal_queue_lifetime),
        ] {
            let Some(suffix) = key.strip_prefix(pname).and_then(|r| r.strip_prefix('_')) else {
                continue;
            };
            let divisor: i64 = match suffix {
                "seconds" => 1,
                "minutes" => 60,
                "hours" => 3600,
                "days" => 86400,
                "weeks" => 7 * 86400,
                _ => msg::fatal(&format!(
                    "{}: unrecognized suffix \"{suffix}\" in parameter \"{key}\"",
                    tp.origin
                )),
            };
            let result = value / divisor;
            let class = tp.class();
            if result > 999 && divisor < 86400 {
                msg::warn(&format!(
                    "{}: excessive result \"{result}\" in {class} template conversion of parameter \"{key}\"",
                    tp.origin
                ));
                msg::warn(&format!(
                    "please increase time unit \"{suffix}\" of \"{key}\" in {class} template"
                ));
                msg::warn("for instructions see the bounce(5) manual");
            } else if result == 0 && value != 0 && divisor > 1 {
                msg::warn(&format!(
                    "{}: zero result in {class} template conversion of parameter \"{key}\"",
                    tp.origin
                ));
                msg::warn(&format!(
                    "please reduce time unit \"{suffix}\" of \"{key}\" in {class} template"
                ));
                msg::warn("for instructions see the bounce(5) manual");
            }
            return Some(result.to_string());
        }
        if self.smtputf8 && (key == "myhostname" || key == "mydomain") {
            let asc = dict_eval(&self.dict, key).unwrap_or_default();
            if !all_ascii(&asc) {
                msg::warn(&format!(
                    "{}: conversion \"{key}\" failed: non-ASCII input value: \"{asc}\"",
                    tp.origin
                ));
                return Some(printable(&asc, self.smtputf8));
            }
            let conv = match self.idna.get(&asc) {
                Some(c) => c.clone(),
                None => {
                    let c = match domain_to_utf8(&asc) {
                        Ok(u) => Some(u),
                        Err(e) => {
                            let shown: String = asc.chars().take(100).collect();
                            msg::warn(&format!(
                                "midna_domain_to_utf8_create: Problem translating domain \"{shown}\" to UTF8 form: {e}"
                            ));
                            None
                        }
                    };
                    self.idna.insert(asc.clone(), c.clone());
                    c
                }
            };
            return Some(printable(
                &match conv {
                    Some(u) => u,
                    None => {
                        msg::warn(&format!(
                            "{}: conversion \"{key}\" failed: input value: \"{asc}\"",
                            tp.origin
                        ));
                        asc
                    }
                },
                self.smtputf8,
            ));
        }
        dict_eval(&self.dict, key).map(|v| printable(&v, self.smtputf8))
    }

    /// Expand one template's text: one output line per text line.
    pub fn expand(&mut self, tp: &mut Template) -> Vec<String> {
        tp.parse();
        let mut out = Vec::with_capacity(tp.text.len());
        for line in tp.text.clone() {
            let mut buf = String::new();
            let t = tp.clone();
            let st = expand::mac_expand(&mut buf, &line, 0, None, &mut |n, _| self.lookup(&t, n));
            if st & expand::PARSE_ERROR != 0 {
                msg::fatal(&format!(
                    "{}: bad $name syntax in {} template: {line}",
                    tp.origin,
                    tp.class()
                ));
            }
            if st & expand::PARSE_UNDEF != 0 {
                msg::fatal(&format!(
                    "{}: undefined $name in {} template: {line}",
                    tp.origin,
                    tp.class()
                ));
            }
            out.push(buf);
        }
        out
    }

    /// One template's headers and raw text, as `postconf -t` shows it.
    pub fn dump(&self, tp: &mut Template) -> String {
        tp.parse();
        let mut out = format!("Charset: {}\n", tp.charset);
        let from = if self.use_obsolete_from {
            &tp.obs_from
        } else {
            &tp.std_from
        };
        out.push_str(&format!("From: {from}\n"));
        out.push_str(&format!("Subject: {}\n", tp.subject));
        if let Some(p) = &tp.postmaster_subject {
            out.push_str(&format!("Postmaster-Subject: {p}\n"));
        }
        out.push('\n');
        for l in &tp.text {
            out.push_str(l);
            out.push('\n');
        }
        out
    }

    /// The From: header text of a notice.
    pub fn from_header<'t>(&self, tp: &'t Template) -> &'t str {
        if self.use_obsolete_from {
            &tp.obs_from
        } else {
            &tp.std_from
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(text: &str) -> Vec<Template> {
        let mut ts = vec![
            Template::builtin(&FAILURE),
            Template::builtin(&DELAY),
            Template::builtin(&SUCCESS),
            Template::builtin(&VERIFY),
        ];
        load_templates("t.cf", text.as_bytes(), &mut ts);
        for t in ts.iter_mut() {
            t.parse();
        }
        ts
    }

    #[test]
    fn custom_template_headers_and_text() {
        let ts = loaded(
            "# comment\n\
             failure_template = <<EOF\n\
             \n\
             Charset: iso-8859-1\n\
             From: Postmaster <postmaster@example.com>\n\
             Subject:: Returned\n\
             Postmaster-Subject: Copy\n\
             \n\
             \n\
             Sorry.\n\
             \n\
             Bye.\n\
             EOF\n",
        );
        let f = &ts[0];
        assert_eq!(f.origin, "t.cf");
        assert_eq!(f.charset, "iso-8859-1");
        assert_eq!(f.std_from, "Postmaster <postmaster@example.com>");
        assert_eq!(f.subject, "Returned");
        assert_eq!(f.postmaster_subject.as_deref(), Some("Copy"));
        assert_eq!(f.text, vec!["Sorry.", "", "Bye."]);
        // The others keep the built-in text.
        assert_eq!(ts[3].origin, "[built-in]");
        assert_eq!(ts[3].text.len(), 5);
    }

    #[test]
    fn bad_templates_fall_back_to_builtin() {
        let ts = loaded(
            "success_template = <<EOF\nPostmaster-Subject: x\n\ntext\nEOF\n\
             verify_template = <<EOF\nSubject: x\n\n\u{e9}\nEOF\n\
             delay_template = Subject: only\n",
        );
        for t in &ts[1..] {
            assert_eq!(t.origin, "[built-in]", "{}", t.class());
        }
    }

    #[test]
    fn header_detection() {
        assert_eq!(is_header("Subject: x"), 7);
        assert_eq!(is_header("Subject :x"), 7);
        assert_eq!(is_header("Two words: x"), 0);
        assert_eq!(is_header(": x"), 0);
        assert_eq!(is_header("no colon"), 0);
    }

    #[test]
    fn missing_marker_shows_stale_buffer() {
        // The marker name is read from the reused line buffer: a longer
        // later line shows through.
        let data = b"failure_template = <<EOF\nThis is a line longer than the first one\n";
        let mut r = LineReader::new(data);
        r.next_line();
        r.next_line();
        assert_eq!(r.cstr_at(21), " than the first one");
        assert!(!r.eof);
        assert_eq!(r.next_line(), -1);
        assert!(r.eof);
    }

    #[test]
    fn nameval_offsets() {
        assert_eq!(split_nameval_offsets(b" a = <<EOF "), Ok((1, 2, 5, 10)));
        assert_eq!(
            split_nameval_offsets(b"junk line"),
            Err("missing '=' after attribute name")
        );
        assert_eq!(
            split_nameval_offsets(b" = x"),
            Err("missing attribute name")
        );
    }

    #[test]
    fn idna_and_printable() {
        assert_eq!(
            domain_to_utf8("xn--bcher-kva.Example").unwrap(),
            latin1::decode("bücher.example".as_bytes())
        );
        assert_eq!(
            domain_to_utf8("xn--80ak6aa92e.com").unwrap(),
            latin1::decode("аррӏе.com".as_bytes())
        );
        assert_eq!(
            domain_to_utf8("xn--zz.example").unwrap_err(),
            "UIDNA_ERROR_PUNYCODE"
        );
        assert_eq!(
            domain_to_utf8("xn--abc").unwrap_err(),
            "UIDNA_ERROR_INVALID_ACE_LABEL"
        );
        assert_eq!(
            domain_to_utf8("ab--cd.x").unwrap_err(),
            "UIDNA_ERROR_HYPHEN_3_4"
        );
        let u = latin1::decode("bücher\x01".as_bytes());
        assert_eq!(printable(&u, true), latin1::decode("bücher_".as_bytes()));
        assert_eq!(printable(&u, false), "b__cher_");
    }
}
