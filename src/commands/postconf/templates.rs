//! postconf -b / -t: show the bounce message templates, expanded (-b) or
//! raw (-t).
//!
//! Postfix's postconf reads main.cf (with the parameter checks of
//! mail_params_init) and then runs its bounce daemon as
//! `bounce -SVnexpand_templates` (or `dump_templates`), which loads the
//! template file (the operand, else bounce_template_file) and prints the four
//! templates. rostfix does both steps in-process and produces what an
//! installed Postfix 3.7.11 prints: the daemon's messages carry the prefix
//! `$syslog_name/bounce`, template `$name`s expand against the parameters
//! the bounce daemon knows, `$delay_warning_time_hours` and the like are
//! converted as bounce(5) describes, and with smtputf8_enable the host and
//! domain names are shown in UTF-8 form.

use super::core::Pcf;
use super::mode::EXP_DSN_TEMPL;
use crate::global::expand;
use crate::global::hostinfo;
use crate::global::msg;
use crate::global::params;
use crate::util::latin1;
use std::collections::HashMap;
use std::io::Write;

/// One built-in template (the text mail users see in notifications).
struct Builtin {
    class: &'static str,
    subject: &'static str,
    postmaster_subject: Option<&'static str>,
    body: &'static [&'static str],
}

const BUILTIN_CHARSET: &str = "us-ascii";
const BUILTIN_STD_FROM: &str = "Mail Delivery System <MAILER-DAEMON>";
const BUILTIN_OBS_FROM: &str = "MAILER-DAEMON (Mail Delivery System)";
const BUILTIN_ORIGIN: &str = "[built-in]";

const FAILURE: Builtin = Builtin {
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

const DELAY: Builtin = Builtin {
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

const SUCCESS: Builtin = Builtin {
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

const VERIFY: Builtin = Builtin {
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
const BOUNCE_PARAMS: &[&str] = &[
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
type Dict = HashMap<String, String>;

/// The configuration dictionary: the bounce parameters' defaults (host
/// defaults computed), overlaid with main.cf settings.
fn base_dict(pcf: &mut Pcf) -> Dict {
    if pcf.params.is_empty() {
        pcf.register_builtin_parameters();
    }
    let mut d = Dict::new();
    for name in BOUNCE_PARAMS {
        if pcf.main.get(name).is_some() {
            continue;
        }
        let value = match *name {
            // Computed when used (their errors come in Postfix's order).
            "myhostname" | "mydomain" | "mynetworks" => continue,
            _ => params::builtin(name).map(|p| p.default).unwrap_or(""),
        };
        d.insert(name.to_string(), value.to_string());
    }
    for (n, v) in pcf.main.iter() {
        d.insert(n.to_string(), v.to_string());
    }
    d
}

/// A host-derived default, if main.cf does not set the name.
fn add_host_default(pcf: &mut Pcf, d: &mut Dict, name: &str) {
    if d.contains_key(name) {
        return;
    }
    if let Some(node) = pcf.params.get(name).cloned() {
        let v = pcf.convert_param_node(name, &node);
        d.insert(name.to_string(), v);
    }
}

/// mail_conf_lookup_eval: a name's value, `$name`-expanded recursively
/// against the dictionary; `None` when the name is undefined.
fn dict_eval(d: &Dict, name: &str) -> Option<String> {
    let raw = d.get(name)?;
    Some(dict_expand(d, raw))
}

/// Expand text recursively against the dictionary (undefined names expand
/// to nothing); a syntax error is fatal as in Postfix's dict_eval.
fn dict_expand(d: &Dict, text: &str) -> String {
    let mut out = String::new();
    let st = expand::mac_expand(&mut out, text, expand::FLAG_RECURSE, None, &mut |n, _| {
        d.get(n).cloned()
    });
    if st & expand::PARSE_ERROR != 0 {
        msg::fatal("dictionary mail_dict: macro processing error");
    }
    out
}

/// The value of a parameter as a Postfix program sees it: main.cf,
/// expanded, else the default. Used by -m for meta_directory.
pub fn conf_value(pcf: &mut Pcf, name: &str) -> String {
    let d = base_dict(pcf);
    dict_eval(&d, name).unwrap_or_default()
}

/// Postfix's valid_hostname with warnings (DO_GRIPE).
fn valid_hostname(name: &str) -> bool {
    let warn = |why: &str| {
        let shown: String = name.chars().take(100).collect();
        msg::warn(&format!("valid_hostname: {why}: {shown}"));
        false
    };
    if name.is_empty() {
        msg::warn("valid_hostname: empty hostname");
        return false;
    }
    let b = latin1::encode(name);
    let mut label_length = 0;
    let mut non_numeric = false;
    for (i, &ch) in b.iter().enumerate() {
        let next = b.get(i + 1).copied();
        if ch.is_ascii_alphanumeric() || ch == b'_' {
            label_length += 1;
            if label_length > 63 {
                return warn("hostname label too long");
            }
            if !ch.is_ascii_digit() {
                non_numeric = true;
            }
        } else if ch == b'.' {
            if label_length == 0 || next.is_none() {
                return warn("misplaced delimiter");
            }
            label_length = 0;
        } else if ch == b'-' {
            non_numeric = true;
            label_length += 1;
            if label_length == 1 || next.is_none() || next == Some(b'.') {
                return warn("misplaced hyphen");
            }
        } else {
            return warn(&format!("invalid character {ch}(decimal)"));
        }
    }
    if !non_numeric {
        return warn("numeric hostname");
    }
    if b.len() > 255 {
        let shown: String = name.chars().take(100).collect();
        msg::warn(&format!(
            "valid_hostname: bad length {} for {shown}...",
            b.len()
        ));
        return false;
    }
    true
}

/// Postfix's strtol-based conversions: optional blanks and sign, digits,
/// nothing after.
fn c_strtol(s: &str) -> Option<i64> {
    let t = s.trim_start_matches(is_space);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i64 = digits.parse().ok()?;
    Some(if neg { -v } else { v })
}

/// get_mail_conf_str's length check.
fn check_str(d: &Dict, name: &str, min: usize, max: usize) {
    let v = dict_eval(d, name).unwrap_or_default();
    let len = latin1::encode(&v).len();
    if min != 0 && len < min {
        msg::fatal(&format!("bad string length {len} < {min}: {name} = {v}"));
    }
    if max != 0 && len > max {
        msg::fatal(&format!("bad string length {len} > {max}: {name} = {v}"));
    }
}

/// get_mail_conf_bool / _nbool.
fn check_bool(d: &Dict, name: &str) -> bool {
    let v = dict_eval(d, name).unwrap_or_default();
    if v.eq_ignore_ascii_case("yes") {
        true
    } else if v.eq_ignore_ascii_case("no") {
        false
    } else {
        msg::fatal(&format!("bad boolean configuration: {name} = {v}"));
    }
}

/// get_mail_conf_int (`long` false) or get_mail_conf_long.
fn check_int(d: &Dict, name: &str, min: i64, max: i64, long: bool) -> i64 {
    let v = dict_eval(d, name).unwrap_or_default();
    let n = match c_strtol(&v) {
        Some(n) if long || i32::try_from(n).is_ok() => n,
        _ => msg::fatal(&format!("bad numerical configuration: {name} = {v}")),
    };
    if min != 0 && n < min {
        msg::fatal(&format!("invalid {name} parameter value {n} < {min}"));
    }
    if max != 0 && n > max {
        msg::fatal(&format!("invalid {name} parameter value {n} > {max}"));
    }
    n
}

/// get_mail_conf_time: the default unit is the first letter of the default.
fn check_time(d: &Dict, name: &str, min: i64, max: i64) -> i64 {
    let def_unit = params::builtin(name)
        .and_then(|p| p.default.chars().find(|c| c.is_ascii_alphabetic()))
        .unwrap_or('s');
    let v = dict_eval(d, name).unwrap_or_default();
    let Some(secs) = crate::global::mail_conf::conv_time(&v, def_unit) else {
        msg::fatal(&format!("parameter {name}: bad time value or unit: {v}"));
    };
    if min != 0 && secs < min {
        msg::fatal(&format!("invalid {name}: {secs} (min {min})"));
    }
    if max != 0 && secs > max {
        msg::fatal(&format!("invalid {name}: {secs} (max {max})"));
    }
    secs
}

/// The first line of a file, blanks trimmed, opened as Postfix's
/// safe_open does for an existing file (Debian's myorigin = /file).
fn read_param_from_file(path: &str) -> String {
    use std::os::unix::fs::MetadataExt;
    let p = latin1::to_path(path);
    let fail = |why: String| -> ! { msg::fatal(&format!("{path}: {why}")) };
    let file = match std::fs::File::open(&p) {
        Ok(f) => f,
        Err(e) => fail(format!(
            "cannot open file: {}",
            crate::global::config_file::errno_text(&e)
        )),
    };
    let st = match file.metadata() {
        Ok(m) => m,
        Err(e) => msg::fatal(&format!(
            "{path}: bad open file status: {}",
            crate::global::config_file::errno_text(&e)
        )),
    };
    if st.nlink() != 1 {
        fail(format!("file has {} hard links", st.nlink()));
    }
    if st.is_dir() {
        fail("file is a directory".to_string());
    }
    match std::fs::symlink_metadata(&p) {
        Err(e) => fail(format!(
            "file status changed unexpectedly: {}",
            crate::global::config_file::errno_text(&e)
        )),
        Ok(l) if l.file_type().is_symlink() => {
            let parent_ok = l.uid() == 0
                && p.parent()
                    .map(|d| {
                        if d.as_os_str().is_empty() {
                            std::path::Path::new(".")
                        } else {
                            d
                        }
                    })
                    .and_then(|d| std::fs::metadata(d).ok())
                    .is_some_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0);
            if !parent_ok {
                fail("file is a symbolic link".to_string());
            }
        }
        Ok(l) if l.dev() != st.dev() || l.ino() != st.ino() || l.mode() != st.mode() => {
            fail("file status changed unexpectedly".to_string());
        }
        Ok(_) => {}
    }
    let mut data = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(&mut &file, &mut data) {
        msg::fatal(&format!(
            "{path}: read error: {}",
            crate::global::config_file::errno_text(&e)
        ));
    }
    let first = data.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let first = match first.iter().position(|&b| b == 0) {
        Some(i) => &first[..i],
        None => first,
    };
    latin1::decode(first).trim_matches(is_space).to_string()
}

/// Syslog facility names on Linux.
const SYSLOG_FACILITIES: &[&str] = &[
    "auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news", "syslog", "user",
    "uucp", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
];

/// The checks of Postfix's mail_params_init that postconf -b, -t and -m
/// perform after reading main.cf, in Postfix's order.
pub fn mail_params_init(pcf: &mut Pcf) {
    let mut d = base_dict(pcf);
    let config_dir = dict_eval(&d, "config_directory").unwrap_or_default();
    for (name, min) in [
        ("mail_version", 1),
        ("syslog_facility", 1),
        ("maillog_file_prefixes", 1),
        ("maillog_file_compressor", 1),
        ("maillog_file_rotate_suffix", 1),
        ("postlog_service_name", 1),
    ] {
        check_str(&d, name, min, 0);
    }
    let facility = dict_eval(&d, "syslog_facility").unwrap_or_default();
    if !SYSLOG_FACILITIES.contains(&facility.as_str()) {
        msg::fatal(&format!(
            "file {config_dir}/main.cf: parameter syslog_facility: unrecognized value: {facility}"
        ));
    }
    for name in [
        "daemon_table_open_error_is_fatal",
        "dns_ncache_ttl_fix_enable",
        "smtputf8_enable",
        "enable_idna2003_compatibility",
        "respectful_logging",
    ] {
        check_bool(&d, name);
    }
    let protocols = dict_eval(&d, "inet_protocols").unwrap_or_default();
    let families = hostinfo::inet_proto_families(&protocols);
    for name in ["myhostname", "mydomain"] {
        add_host_default(pcf, &mut d, name);
        check_str(&d, name, 1, 0);
        let v = dict_eval(&d, name).unwrap_or_default();
        if !valid_hostname(&v) {
            msg::fatal(&format!(
                "file {config_dir}/main.cf: parameter {name}: bad parameter value: {v}"
            ));
        }
    }
    for name in [
        "mail_name",
        "syslog_name",
        "mail_owner",
        "setgid_group",
        "myorigin",
        "daemon_directory",
        "data_directory",
        "command_directory",
        "meta_directory",
        "queue_directory",
        "shlib_directory",
        "process_id_directory",
        "double_bounce_sender",
        "default_privs",
        "mail_release_date",
        "default_database_type",
        "hash_queue_names",
        "mynetworks_style",
        "verp_delimiter_filter",
        "bounce_service_name",
        "cleanup_service_name",
        "defer_service_name",
        "pickup_service_name",
        "queue_service_name",
        "rewrite_service_name",
        "showq_service_name",
        "error_service_name",
        "flush_service_name",
        "address_verify_service_name",
        "trace_service_name",
        "proxymap_service_name",
        "proxywrite_service_name",
        "smtputf8_autodetect_classes",
        "info_log_address_format",
    ] {
        check_str(&d, name, 1, 0);
    }
    check_str(&d, "default_verp_delimiters", 2, 2);
    let mut myorigin = dict_eval(&d, "myorigin").unwrap_or_default();
    if myorigin.starts_with('/') {
        // Debian's MYORIGIN_FROM_FILE: the value is the file's first line.
        myorigin = read_param_from_file(&myorigin);
        if myorigin.is_empty() {
            let path = dict_eval(&d, "myorigin").unwrap_or_default();
            msg::fatal(&format!("myorigin file {path} is empty"));
        }
    }
    for (name, min, max) in [
        ("default_process_limit", 1, 0),
        ("max_use", 1, 0),
        ("dont_remove", 0, 0),
        ("line_length_limit", 512, 0),
        ("hash_queue_depth", 1, 0),
        ("fork_attempts", 1, 0),
        ("deliver_lock_attempts", 1, 0),
        ("debug_peer_level", 1, 0),
        ("fault_injection_code", 0, 0),
        ("berkeley_db_create_buffer_size", 1, 0),
        ("berkeley_db_read_buffer_size", 1, 0),
        ("header_size_limit", 1, 0),
        ("header_address_token_limit", 1, 0),
        ("mime_nesting_limit", 1, 0),
        ("mime_boundary_length_limit", 1, 0),
        ("delay_logging_resolution_limit", 0, 6),
        ("tcp_windowsize", 0, 0),
    ] {
        check_int(&d, name, min, max, false);
    }
    check_int(&d, "message_size_limit", 0, 0, true);
    check_int(&d, "lmdb_map_size", 1, 0, true);
    for name in [
        "disable_dns_lookups",
        "soft_bounce",
        "owner_request_special",
        "strict_8bitmime",
        "strict_7bit_headers",
        "strict_8bitmime_body",
        "strict_mime_encoding_domain",
        "disable_mime_input_processing",
        "disable_mime_output_conversion",
        "address_verify_negative_cache",
        "backwards_bounce_logfile_compatibility",
        "helpful_warnings",
        "send_cyrus_sasl_authzid",
        "multi_instance_enable",
        "enable_long_queue_ids",
        "strict_smtputf8",
        "enable_original_recipient",
    ] {
        check_bool(&d, name);
    }
    for (name, min, max) in [
        ("application_event_drain_time", 1, 0),
        ("max_idle", 1, 0),
        ("ipc_timeout", 1, 0),
        ("ipc_idle", 1, 0),
        ("ipc_ttl", 1, 0),
        ("trigger_timeout", 1, 0),
        ("fork_delay", 1, 0),
        ("deliver_lock_delay", 1, 0),
        ("stale_lock_time", 1, 0),
        ("daemon_timeout", 1, 0),
        ("in_flow_delay", 0, 10),
    ] {
        check_time(&d, name, min, max);
    }
    // check_default_privs, check_mail_owner, check_sgid_group, check_overlap
    // (skipped in rostfix's non-root mode, where these accounts are unused).
    if !crate::global::mail_params::non_root_mode() {
        let conf = crate::global::mail_conf::MailConf {
            config_dir: pcf.config_dir.clone(),
            settings: pcf.main.clone(),
        };
        if let Err(e) = crate::global::mail_params::check_accounts(&conf) {
            msg::fatal(&e);
        }
    }
    if !families.is_empty() {
        add_host_default(pcf, &mut d, "mynetworks");
        let interfaces = dict_eval(&d, "inet_interfaces").unwrap_or_default();
        hostinfo::own_inet_addr_list(&interfaces, &families);
    }
    let myhostname = dict_eval(&d, "myhostname").unwrap_or_default();
    let relayhost = dict_eval(&d, "relayhost").unwrap_or_default();
    if myhostname.eq_ignore_ascii_case(&relayhost) {
        msg::fatal(&format!(
            "myhostname and relayhost parameter settings must not be identical: {myhostname}"
        ));
    }
    if myorigin.contains([',', ' ', '\t', '\r', '\n']) {
        msg::fatal(&format!(
            "myorigin parameter setting must not contain multiple values: {myorigin}"
        ));
    }
    let delims = dict_eval(&d, "default_verp_delimiters").unwrap_or_default();
    let filter = dict_eval(&d, "verp_delimiter_filter").unwrap_or_default();
    let dc: Vec<char> = delims.chars().collect();
    let why = if dc.len() != 2 {
        Some("bad VERP delimiter character count")
    } else if !filter.contains(dc[0]) {
        Some("bad first VERP delimiter character")
    } else if !filter.contains(dc[1]) {
        Some("bad second VERP delimiter character")
    } else {
        None
    };
    if let Some(why) = why {
        msg::fatal(&format!(
            "file {config_dir}/main.cf: parameters default_verp_delimiters and verp_delimiter_filter: {why}"
        ));
    }
}

/// One template as the bounce daemon holds it.
#[derive(Clone)]
struct Template {
    proto: &'static Builtin,
    origin: String,
    charset: String,
    std_from: String,
    obs_from: String,
    subject: String,
    postmaster_subject: Option<String>,
    text: Vec<String>,
    /// Text loaded from a file and not parsed yet.
    pending: Option<String>,
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// Postfix's is_header: the length of a header label followed by optional
/// blanks and a colon, or 0.
fn is_header(line: &str) -> usize {
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

fn all_ascii(s: &str) -> bool {
    !s.is_empty() && s.is_ascii()
}

fn all_space(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_space)
}

impl Template {
    fn builtin(proto: &'static Builtin) -> Template {
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
        }
    }

    fn class(&self) -> &'static str {
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
    fn parse(&mut self) {
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
fn load_templates(path: &str, data: &[u8], ts: &mut [Template]) {
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
fn load_template_file(path: &str, ts: &mut [Template]) {
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

/// Standard output as a VSTREAM writes it: in 4096-byte blocks, the rest at
/// the end (a fatal error loses what is still buffered).
struct BlockOut {
    buf: Vec<u8>,
}

const VSTREAM_BUFSIZE: usize = 4096;

impl BlockOut {
    fn put(&mut self, text: &str) {
        self.buf.extend(latin1::encode(text));
        while self.buf.len() >= VSTREAM_BUFSIZE {
            let mut so = std::io::stdout();
            let _ = so.write_all(&self.buf[..VSTREAM_BUFSIZE]);
            let _ = so.flush();
            self.buf.drain(..VSTREAM_BUFSIZE);
        }
    }

    fn finish(self) {
        let mut so = std::io::stdout();
        let _ = so.write_all(&self.buf);
        let _ = so.flush();
    }
}

/// Postfix's printable(): unprintable characters become `_`; with UTF-8
/// enabled, well-formed-looking multi-byte sequences are kept.
fn printable(s: &str, utf8: bool) -> String {
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
fn domain_to_utf8(name: &str) -> Result<String, String> {
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
struct Bounce {
    dict: Dict,
    delay_warning_time: i64,
    maximal_queue_lifetime: i64,
    smtputf8: bool,
    idna: HashMap<String, Option<String>>,
    use_obsolete_from: bool,
}

impl Bounce {
    /// bounce_template_lookup: a template `$name`'s value (already made
    /// printable), or `None` when undefined.
    fn lookup(&mut self, tp: &Template, key: &str) -> Option<String> {
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

    /// Expand one template's text, one output line per text line.
    fn expand(&mut self, tp: &mut Template, out: &mut BlockOut) {
        tp.parse();
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
            out.put(&buf);
            out.put("\n");
        }
    }

    /// Print one template's headers and raw text.
    fn dump(&self, tp: &mut Template, out: &mut BlockOut) {
        tp.parse();
        out.put(&format!("Charset: {}\n", tp.charset));
        let from = if self.use_obsolete_from {
            &tp.obs_from
        } else {
            &tp.std_from
        };
        out.put(&format!("From: {from}\n"));
        out.put(&format!("Subject: {}\n", tp.subject));
        if let Some(p) = &tp.postmaster_subject {
            out.put(&format!("Postmaster-Subject: {p}\n"));
        }
        out.put("\n");
        for l in &tp.text {
            out.put(l);
            out.put("\n");
        }
    }
}

/// Show the bounce templates (expanded with -b, raw with -t). Returns the
/// exit status.
/// Whether execv(2) could start `path`: the strerror text of why not.
fn exec_check(path: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(crate::util::latin1::to_path(path)) {
        Err(e) => Err(crate::global::config_file::errno_text(&e)),
        Ok(m) if m.is_dir() || m.permissions().mode() & 0o111 == 0 => {
            Err(crate::sys::strerror(libc::EACCES))
        }
        Ok(_) => Ok(()),
    }
}

pub fn show_templates(pcf: &mut Pcf, file: Option<&str>) -> i32 {
    let expand_mode = pcf.mode & EXP_DSN_TEMPL != 0;
    // postconf's own part: main.cf and the global parameter checks.
    pcf.read_parameters();
    pcf.register_builtin_parameters();
    mail_params_init(pcf);

    // Postfix's postconf now execs $daemon_directory/bounce to do the work;
    // we do it in-process, but fail where that exec would fail.
    let daemon_dir = pcf
        .main_lookup_eval("daemon_directory")
        .unwrap_or_else(|| "/usr/lib/postfix/sbin".to_string());
    let bounce = format!("{daemon_dir}/bounce");
    if let Err(e) = exec_check(&bounce) {
        msg::fatal(&format!("execv {bounce}: {e}"));
    }

    // The bounce daemon's part.
    let mut dict = base_dict(pcf);
    for name in ["myhostname", "mydomain", "mynetworks"] {
        add_host_default(pcf, &mut dict, name);
    }
    dict.entry("process_name".into())
        .or_insert_with(|| "bounce".into());
    if let Some(f) = file {
        dict.insert("bounce_template_file".into(), f.to_string());
    }
    dict.insert("queue_directory".into(), ".".into());
    dict.insert(
        "service_name".into(),
        if expand_mode {
            "expand_templates"
        } else {
            "dump_templates"
        }
        .into(),
    );
    dict.insert("process_id".into(), std::process::id().to_string());
    let syslog_name = dict_eval(&dict, "syslog_name").unwrap_or_default();
    msg::init(&format!("{syslog_name}/bounce"));

    let smtputf8 = check_bool(&dict, "smtputf8_enable");
    check_int(&dict, "bounce_size_limit", 1, 0, false);
    for (name, min) in [
        ("notify_classes", 0),
        ("bounce_notice_recipient", 1),
        ("2bounce_notice_recipient", 1),
        ("delay_notice_recipient", 1),
        ("bounce_template_file", 0),
        ("header_from_format", 1),
    ] {
        check_str(&dict, name, min, 0);
    }
    let maximal_queue_lifetime = check_time(&dict, "maximal_queue_lifetime", 0, 8_640_000);
    let delay_warning_time = check_time(&dict, "delay_warning_time", 0, 0);
    check_bool(&dict, "enable_threaded_bounces");

    let mut ts = [
        Template::builtin(&FAILURE),
        Template::builtin(&DELAY),
        Template::builtin(&SUCCESS),
        Template::builtin(&VERIFY),
    ];
    let template_file = dict_eval(&dict, "bounce_template_file").unwrap_or_default();
    if !template_file.is_empty() {
        load_template_file(&template_file, &mut ts);
    }
    let hfrom = dict_eval(&dict, "header_from_format").unwrap_or_default();
    let use_obsolete_from = if hfrom.eq_ignore_ascii_case("standard") {
        false
    } else if hfrom.eq_ignore_ascii_case("obsolete") {
        true
    } else {
        msg::fatal(&format!(
            "invalid setting: \"header_from_format = {hfrom}\""
        ));
    };

    let mut bounce = Bounce {
        dict,
        delay_warning_time,
        maximal_queue_lifetime,
        smtputf8,
        idna: HashMap::new(),
        use_obsolete_from,
    };
    let mut out = BlockOut { buf: Vec::new() };
    let n = ts.len();
    for (i, tp) in ts.iter_mut().enumerate() {
        if expand_mode {
            out.put(&format!("expanded_{}_text = <<EOF\n", tp.class()));
            bounce.expand(tp, &mut out);
        } else {
            out.put(&format!("{}_template = <<EOF\n", tp.class()));
            bounce.dump(tp, &mut out);
        }
        out.put(if i + 1 < n { "EOF\n\n" } else { "EOF\n" });
    }
    out.finish();
    0
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

    #[test]
    fn hostname_validation() {
        assert!(valid_hostname("mail.example.com"));
        assert!(valid_hostname("foo_bar.example"));
        assert!(!valid_hostname("1.2.3.4"));
        assert!(!valid_hostname("foo..bar"));
        assert!(!valid_hostname("-foo.bar"));
    }
}
