//! cleanup's parameters and tables, read once per process (Postfix's
//! cleanup_init.c tables and cleanup_pre_jail/cleanup_post_jail).

use super::headers::HeaderTable;
use super::interim::{FindConf, Maps};
use crate::global::dict::flags;
use crate::global::mail_conf::{ConfError, MailConf};
use crate::global::mail_queue::QueueConf;
use crate::global::mime_state::Limits;
use crate::global::rewrite_clnt::RewriteConf;

pub const CANON_ENV_FROM: u32 = 1 << 0;
pub const CANON_ENV_RCPT: u32 = 1 << 1;
pub const CANON_HDR_FROM: u32 = 1 << 2;
pub const CANON_HDR_RCPT: u32 = 1 << 3;

pub const EXT_PROP_CANONICAL: u32 = 1 << 0;
pub const EXT_PROP_VIRTUAL: u32 = 1 << 1;

/// Everything cleanup reads from main.cf, plus its open tables.
pub struct Config {
    pub queue: QueueConf,
    pub rewrite: RewriteConf,
    pub find: FindConf,
    /// queue_service_name: the qmgr woken when a message is queued.
    pub queue_service: String,
    pub myhostname: String,
    pub mail_name: String,
    pub line_limit: usize,
    pub header_limit: usize,
    pub hopcount_limit: i64,
    pub message_limit: u64,
    pub delay_warn_time: i64,
    pub qattr_count_limit: usize,
    pub dup_filter_limit: usize,
    pub virt_recur_limit: usize,
    pub virt_expan_limit: usize,
    pub virt_addrlen_limit: usize,
    pub body_check_len: i64,
    pub empty_addr: String,
    pub always_bcc: String,
    pub rcpt_witheld: String,
    pub always_add_hdrs: bool,
    pub auto_8bit_enc_hdr: bool,
    pub mask_stray_cr_lf: bool,
    pub enable_orcpt: bool,
    pub smtputf8_enable: bool,
    pub long_queue_ids: bool,
    pub disable_mime_input: bool,
    pub strict_8bitmime: bool,
    pub strict_7bit_hdrs: bool,
    pub strict_8bit_body: bool,
    pub strict_encoding: bool,
    pub verp_bounce_off: bool,
    pub hfrom_std: bool,
    pub headers: HeaderTable,
    pub mime_limits: Limits,
    pub token_limit: usize,
    pub comm_canon: Option<Maps>,
    pub send_canon: Option<Maps>,
    pub rcpt_canon: Option<Maps>,
    pub comm_canon_flags: u32,
    pub send_canon_flags: u32,
    pub rcpt_canon_flags: u32,
    pub virt_alias: Option<Maps>,
    pub masq_domains: Option<Vec<String>>,
    pub masq_exceptions: Vec<String>,
    pub masq_flags: u32,
    pub header_checks: Option<Maps>,
    pub mimehdr_checks: Option<Maps>,
    pub nesthdr_checks: Option<Maps>,
    pub body_checks: Option<Maps>,
    pub send_bcc: Option<Maps>,
    pub rcpt_bcc: Option<Maps>,
    pub reject_chars: Option<Vec<u8>>,
    pub strip_chars: Option<Vec<u8>>,
    pub ext_prop_mask: u32,
    /// `smtputf8_autodetect_classes` includes `sendmail`.
    pub autoutf8_sendmail: bool,
    /// Names of the check tables as configured (for the REPORT_NESTING
    /// decision, which looks at the parameter text).
    pub any_header_checks: bool,
}

fn list(s: &str) -> Vec<String> {
    s.split([',', ' ', '\t', '\r', '\n'])
        .filter(|x| !x.is_empty())
        .map(|x| x.to_string())
        .collect()
}

fn name_mask(param: &str, table: &[(&str, u32)], value: &str) -> Result<u32, ConfError> {
    let mut m = 0;
    for w in list(value) {
        match table.iter().find(|(n, _)| n.eq_ignore_ascii_case(&w)) {
            Some((_, b)) => m |= b,
            None => {
                return Err(ConfError(format!(
                    "unknown {param} value \"{w}\" in \"{value}\""
                )));
            }
        }
    }
    Ok(m)
}

/// Postfix's unescape(): C escapes in reject/strip character lists.
pub fn unescape(s: &str) -> Vec<u8> {
    let b = crate::util::latin1::encode(s);
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        i += 1;
        if c != b'\\' || i >= b.len() {
            out.push(c);
            continue;
        }
        let e = b[i];
        i += 1;
        match e {
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = (e - b'0') as u32;
                let mut n = 1;
                while n < 3 && i < b.len() && (b'0'..=b'7').contains(&b[i]) {
                    v = v * 8 + (b[i] - b'0') as u32;
                    i += 1;
                    n += 1;
                }
                out.push(v as u8);
            }
            other => out.push(other),
        }
    }
    out
}

impl Config {
    /// Read the parameters and open the tables.
    pub fn from_conf(conf: &MailConf) -> Result<Config, ConfError> {
        // As Postfix's mail_params_init: SMTPUTF8 support (util_utf8_enable)
        // decides UTF-8 case folding and the UTF-8 layer on the tables
        // opened below.
        crate::global::msg::set_utf8_enable(conf.get_bool("smtputf8_enable")?);
        let s = |n: &str| conf.get_str(n, 0, 0);
        let maps = |title: &str, f: u32| -> Result<Option<Maps>, ConfError> {
            let v = conf.get_str(title, 0, 0)?;
            Ok(if v.trim().is_empty() {
                None
            } else {
                Some(Maps::create(title, &v, f))
            })
        };
        let addr_flags = flags::LOCK | flags::FOLD_FIX | flags::UTF8_REQUEST;
        let canon_all = [
            ("envelope_sender", CANON_ENV_FROM),
            ("envelope_recipient", CANON_ENV_RCPT),
            ("header_sender", CANON_HDR_FROM),
            ("header_recipient", CANON_HDR_RCPT),
        ];
        let send_tab = [
            ("envelope_sender", CANON_ENV_FROM),
            ("header_sender", CANON_HDR_FROM),
        ];
        let rcpt_tab = [
            ("envelope_recipient", CANON_ENV_RCPT),
            ("header_recipient", CANON_HDR_RCPT),
        ];
        let prop = name_mask(
            "propagate_unmatched_extensions",
            &[
                ("canonical", EXT_PROP_CANONICAL),
                ("virtual", EXT_PROP_VIRTUAL),
                ("alias", 1 << 2),
                ("forward", 1 << 3),
                ("include", 1 << 4),
                ("generic", 1 << 5),
            ],
            &s("propagate_unmatched_extensions")?,
        )?;
        let chars = |n: &str| -> Result<Option<Vec<u8>>, ConfError> {
            let v = s(n)?;
            Ok(if v.is_empty() {
                None
            } else {
                Some(unescape(&v))
            })
        };
        let masq = s("masquerade_domains")?;
        let hfrom = s("header_from_format")?;
        let autoclass = s("smtputf8_autodetect_classes")?;
        let checks_text = format!(
            "{}{}{}",
            s("header_checks")?,
            s("mime_header_checks")?,
            s("nested_header_checks")?
        );
        Ok(Config {
            queue: QueueConf::from_conf(conf)?,
            rewrite: RewriteConf::from_conf(conf)?,
            find: FindConf {
                recipient_delimiter: s("recipient_delimiter")?,
                double_bounce_sender: s("double_bounce_sender")?,
                owner_request_special: conf.get_bool("owner_request_special")?,
                myorigin: conf.myorigin()?,
                mydestination: list(&s("mydestination")?),
            },
            queue_service: conf.get_str("queue_service_name", 1, 0)?,
            myhostname: conf.get_str("myhostname", 1, 0)?,
            mail_name: s("mail_name")?,
            line_limit: conf.get_int("line_length_limit", 2, 0)? as usize,
            header_limit: conf.get_int("header_size_limit", 1, 0)? as usize,
            hopcount_limit: conf.get_int("hopcount_limit", 1, 0)?,
            message_limit: conf.get_long("message_size_limit", 0, 0)?.max(0) as u64,
            delay_warn_time: conf.get_time("delay_warning_time", 'h', 0, 0)?,
            qattr_count_limit: conf.get_int("queue_file_attribute_count_limit", 1, 0)? as usize,
            dup_filter_limit: conf.get_int("duplicate_filter_limit", 0, 0)? as usize,
            virt_recur_limit: conf.get_int("virtual_alias_recursion_limit", 1, 0)? as usize,
            virt_expan_limit: conf.get_int("virtual_alias_expansion_limit", 1, 0)? as usize,
            virt_addrlen_limit: conf.get_int("virtual_alias_address_length_limit", 1, 0)? as usize,
            body_check_len: conf.get_int("body_checks_size_limit", 0, 0)?,
            empty_addr: conf.get_str("empty_address_recipient", 1, 0)?,
            always_bcc: s("always_bcc")?,
            rcpt_witheld: s("undisclosed_recipients_header")?,
            always_add_hdrs: conf.get_bool("always_add_missing_headers")?,
            auto_8bit_enc_hdr: conf.get_bool("detect_8bit_encoding_header")?,
            mask_stray_cr_lf: conf.get_bool("cleanup_replace_stray_cr_lf")?,
            enable_orcpt: conf.get_bool("enable_original_recipient")?,
            smtputf8_enable: conf.get_bool("smtputf8_enable")?,
            long_queue_ids: conf.get_bool("enable_long_queue_ids")?,
            disable_mime_input: conf.get_bool("disable_mime_input_processing")?,
            strict_8bitmime: conf.get_bool("strict_8bitmime")?,
            strict_7bit_hdrs: conf.get_bool("strict_7bit_headers")?,
            strict_8bit_body: conf.get_bool("strict_8bitmime_body")?,
            strict_encoding: conf.get_bool("strict_mime_encoding_domain")?,
            verp_bounce_off: conf.get_bool("disable_verp_bounces")?,
            hfrom_std: !hfrom.eq_ignore_ascii_case("obsolete"),
            headers: HeaderTable::new(&s("message_drop_headers")?),
            mime_limits: Limits {
                header_size_limit: conf.get_int("header_size_limit", 1, 0)? as usize,
                mime_boundary_length_limit: conf.get_int("mime_boundary_length_limit", 1, 0)?
                    as usize,
                mime_nesting_limit: conf.get_int("mime_nesting_limit", 1, 0)?,
            },
            token_limit: conf.get_int("header_address_token_limit", 1, 0)? as usize,
            comm_canon: maps("canonical_maps", addr_flags)?,
            send_canon: maps("sender_canonical_maps", addr_flags)?,
            rcpt_canon: maps("recipient_canonical_maps", addr_flags)?,
            comm_canon_flags: name_mask("canonical_classes", &canon_all, &s("canonical_classes")?)?,
            send_canon_flags: name_mask(
                "canonical_classes",
                &send_tab,
                &s("sender_canonical_classes")?,
            )?,
            rcpt_canon_flags: name_mask(
                "canonical_classes",
                &rcpt_tab,
                &s("recipient_canonical_classes")?,
            )?,
            virt_alias: maps("virtual_alias_maps", addr_flags)?,
            masq_domains: if masq.trim().is_empty() {
                None
            } else {
                Some(list(&masq))
            },
            masq_exceptions: list(&s("masquerade_exceptions")?),
            masq_flags: name_mask("masquerade_classes", &canon_all, &s("masquerade_classes")?)?,
            header_checks: maps("header_checks", flags::LOCK)?,
            mimehdr_checks: maps("mime_header_checks", flags::LOCK)?,
            nesthdr_checks: maps("nested_header_checks", flags::LOCK)?,
            body_checks: maps("body_checks", flags::LOCK)?,
            send_bcc: maps("sender_bcc_maps", addr_flags)?,
            rcpt_bcc: maps("recipient_bcc_maps", addr_flags)?,
            reject_chars: chars("message_reject_characters")?,
            strip_chars: chars("message_strip_characters")?,
            ext_prop_mask: prop,
            autoutf8_sendmail: list(&autoclass)
                .iter()
                .any(|c| c.eq_ignore_ascii_case("sendmail") || c.eq_ignore_ascii_case("all")),
            any_header_checks: !checks_text.trim().is_empty(),
        })
    }
}
