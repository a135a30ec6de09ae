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
use crate::daemons::bounce::template::{
    BOUNCE_PARAMS, DELAY, Dict, Expander, FAILURE, SUCCESS, Template, VERIFY, dict_eval, is_space,
    load_template_file,
};
use crate::global::hostinfo;
use crate::global::msg;
use crate::global::params;
use crate::util::latin1;
use std::collections::HashMap;
use std::io::Write;

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

    let mut bounce = Expander {
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
            for line in bounce.expand(tp) {
                out.put(&line);
                out.put("\n");
            }
        } else {
            out.put(&format!("{}_template = <<EOF\n", tp.class()));
            let text = bounce.dump(tp);
            out.put(&text);
        }
        out.put(if i + 1 < n { "EOF\n\n" } else { "EOF\n" });
    }
    out.finish();
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_validation() {
        assert!(valid_hostname("mail.example.com"));
        assert!(valid_hostname("foo_bar.example"));
        assert!(!valid_hostname("1.2.3.4"));
        assert!(!valid_hostname("foo..bar"));
        assert!(!valid_hostname("-foo.bar"));
    }
}
