//! smtpd access restrictions (Postfix's smtpd_check.c): the restriction
//! lists smtpd_{client,helo,sender,relay,recipient,data,end_of_data,etrn}_
//! restrictions, restriction classes, access(5) tables and their actions,
//! the reply texts and log lines Postfix gives.
//!
//! DNS-based checks (reject_unknown_*_hostname/domain, reject_rbl_client,
//! reject_rhsbl_*, permit_dnswl_client, permit_rhswl_client,
//! check_*_{mx,ns,a}_access, permit_mx_backup) ask a [`Dns`]
//! implementation; the default one is the shared hickory resolver of
//! src/global/dns.rs (DNS only for dns_lookup(), /etc/hosts then DNS where
//! Postfix calls getaddrinfo()). check_policy_service is in
//! [`super::policy`] and [`super::policy_hook`]. reject_unverified_* is
//! not implemented: it logs a warning and gives Postfix's "Server
//! configuration error".

use super::conf::Conf;
use super::resolve::{
    Resolved, Resolver, rflags, valid_hostaddr, valid_hostname, valid_mailhost_addr,
};
use super::state::{Defer, PeerCode, State, error_class};
use crate::global::dict::{DictError, flags as dflags};
use crate::global::dns::{self as gdns, AiError, DnsError, DnsStatus, Rr, RrType};
use crate::global::mail_addr_find::{self, Params, strategy};
use crate::global::maps::Maps;
use crate::global::match_list::MatchList;
use crate::global::quote_822_local::SplitParams;
use crate::util::stringops::{COMMA_SP, split_q};
use std::collections::HashMap;
use std::net::IpAddr;

/// A restriction verdict (SMTPD_CHECK_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Dunno,
    Ok,
    Reject,
}

/// Early exit with the verdict (Postfix's longjmp out of the checks).
pub(super) type R = Result<Status, Status>;

/// Host and DNSBL lookups.
pub trait Dns {
    /// Postfix's dns_lookup_l(): these record types in turn (stopping at
    /// the first that has records with `stop_ok`).
    fn lookup(&mut self, name: &str, types: &[RrType], stop_ok: bool) -> Result<Vec<Rr>, DnsError>;
    /// getaddrinfo(name), any address family.
    fn host_addrs(&mut self, name: &str) -> Result<Vec<IpAddr>, AiError>;
}

/// The shared resolver (src/global/dns.rs).
pub struct SystemDns;

impl Dns for SystemDns {
    fn lookup(&mut self, name: &str, types: &[RrType], stop_ok: bool) -> Result<Vec<Rr>, DnsError> {
        gdns::lookup_types(name, types, stop_ok)
    }
    fn host_addrs(&mut self, name: &str) -> Result<Vec<IpAddr>, AiError> {
        gdns::host_addrs(name, gdns::Family::Any)
    }
}

/// A DNSxL answer (Postfix's SMTPD_RBL_STATE), cached per process as
/// Postfix's ctable does (100 entries).
#[derive(Debug, Clone)]
enum Dnsxl {
    /// Not listed (or filtered out).
    Hard,
    /// Lookup error: give the benefit of the doubt.
    Soft,
    /// Listed: the A records and the TXT text.
    Listed(Vec<std::net::Ipv4Addr>, Option<String>),
}

thread_local! {
    static RBL_CACHE: std::cell::RefCell<Vec<(String, Dnsxl)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A tempfail action (defer_if_permit or defer).
fn tempfail_action(c: &Conf, name: &str) -> bool {
    let v = c.str(name);
    match v.as_str() {
        "defer_if_permit" => true,
        "defer" => false,
        _ => crate::global::msg::fatal(&format!("bad configuration: {name} = {v}")),
    }
}

/// Reply classes (SMTPD_NAME_*).
pub const NAME_CLIENT: &str = "Client host";
pub const NAME_REV_CLIENT: &str = "Unverified Client host";
pub const NAME_HELO: &str = "Helo command";
pub const NAME_SENDER: &str = "Sender address";
pub const NAME_RECIPIENT: &str = "Recipient address";
pub const NAME_ETRN: &str = "Etrn command";
pub const NAME_DATA: &str = "Data command";
pub const NAME_EOD: &str = "End-of-data";

/// Reply codes from main.cf.
#[derive(Debug, Clone)]
pub struct Codes {
    pub reject: u32,
    pub defer: u32,
    pub map_reject: u32,
    pub map_defer: u32,
    pub relay: u32,
    pub unk_addr: u32,
    pub unk_name: u32,
    pub unk_client: u32,
    pub bad_name: u32,
    pub non_fqdn: u32,
    pub local_rcpt: u32,
    pub virt_alias: u32,
    pub virt_mailbox: u32,
    pub relay_rcpt: u32,
    pub maps_rbl: u32,
    pub mul_rcpt: u32,
    pub plaintext: u32,
}

/// The restrictions and everything they consult.
pub struct Checker {
    pub client: Vec<String>,
    pub helo: Vec<String>,
    pub sender: Vec<String>,
    pub relay: Vec<String>,
    pub recipient: Vec<String>,
    pub data: Vec<String>,
    pub eod: Vec<String>,
    pub etrn: Vec<String>,
    pub classes: HashMap<String, Vec<String>>,
    pub relay_before_rcpt: bool,
    pub delay_reject: bool,
    pub codes: Codes,
    pub soft_bounce: bool,
    pub mynetworks: MatchList,
    /// smtpd's own view (its -o overrides): resolve_local, check_relay_domains,
    /// permit_mx_backup.
    pub resolver: Resolver,
    /// What trivial-rewrite answers (main.cf only): the address class of a
    /// resolved address.
    pub tr: Resolver,
    pub tables: HashMap<String, Maps>,
    pub local_rcpt_maps: Option<Maps>,
    pub virt_alias_maps: Option<Maps>,
    pub virt_mailbox_maps: Option<Maps>,
    pub relay_rcpt_maps: Option<Maps>,
    pub canonical_maps: Option<Maps>,
    pub rcpt_canon_maps: Option<Maps>,
    pub send_canon_maps: Option<Maps>,
    pub split: SplitParams,
    pub myorigin: String,
    pub double_bounce_sender: String,
    pub null_key: String,
    pub access_parent: bool,
    pub reject_unlisted_sender: bool,
    pub reject_unlisted_recipient: bool,
    pub show_unk_rcpt_table: bool,
    pub allow_untrusted_routing: bool,
    pub rbl_reply: String,
    pub rbl_reply_maps: Option<Maps>,
    pub expand_filter: String,
    pub myhostname: String,
    pub unk_name_tf_defer_if_permit: bool,
    pub unk_addr_tf_defer_if_permit: bool,
    pub perm_mx_networks: Option<MatchList>,
    /// inet_protocols: IPv4, IPv6.
    pub inet_v4: bool,
    pub inet_v6: bool,
    pub dns_rr_list_limit: usize,
    pub dns: Box<dyn Dns>,
    /// `stress` (master's `-o stress=yes`), sent to policy servers.
    pub stress: String,
    pub smtputf8_enable: bool,
    /// Default-action nesting of check_policy_service.
    pub policy_nesting: u32,
}

fn parse_list(text: &str) -> Vec<String> {
    split_q(text, COMMA_SP)
}

/// Postfix's has_required(): does this restriction list (or a restriction
/// class it names) contain one that stops open relaying?
fn has_required(list: &[String], classes: &HashMap<String, Vec<String>>) -> bool {
    const REQUIRED: &[&str] = &[
        "reject_unauth_destination",
        "defer_unauth_destination",
        "reject",
        "defer",
        "defer_if_permit",
        "check_relay_domains",
    ];
    let mut i = 0;
    while i < list.len() {
        let r = &list[i];
        if r.eq_ignore_ascii_case("warn_if_reject") && i + 1 < list.len() {
            i += 2;
            continue;
        }
        if r.eq_ignore_ascii_case("permit") {
            return false;
        }
        if REQUIRED.iter().any(|q| r.eq_ignore_ascii_case(q)) {
            return true;
        }
        if let Some(exp) = classes.get(r.as_str())
            && has_required(exp, classes)
        {
            return true;
        }
        i += 1;
    }
    false
}

fn open_maps(title: &str, names: &str) -> Option<Maps> {
    if names.trim().is_empty() {
        None
    } else {
        Some(Maps::create(
            title,
            names,
            dflags::LOCK | dflags::FOLD_FIX | dflags::UTF8_REQUEST,
        ))
    }
}

// Restrictions that take a table argument.
const MAP_COMMANDS: &[&str] = &[
    "check_client_access",
    "check_reverse_client_hostname_access",
    "check_helo_access",
    "check_sender_access",
    "check_recipient_access",
    "check_etrn_access",
    "check_client_mx_access",
    "check_client_ns_access",
    "check_client_a_access",
    "check_reverse_client_hostname_mx_access",
    "check_reverse_client_hostname_ns_access",
    "check_reverse_client_hostname_a_access",
    "check_helo_mx_access",
    "check_helo_ns_access",
    "check_helo_a_access",
    "check_sender_mx_access",
    "check_sender_ns_access",
    "check_sender_a_access",
    "check_recipient_mx_access",
    "check_recipient_ns_access",
    "check_recipient_a_access",
    "check_ccert_access",
    "check_sasl_access",
];

/// The resolver part of a configuration: what trivial-rewrite would use with `c`.
fn resolver_from(c: &Conf) -> Resolver {
    use crate::global::match_list::{FLAG_RETURN, domain_list};
    let pdms = c.str("parent_domain_matches_subdomains");
    let parent = |name: &str| crate::global::match_list::match_parent_style(&pdms, name);
    let mut own_addrs: Vec<std::net::IpAddr> = Vec::new();
    let fams = crate::global::hostinfo::inet_proto_families(&c.str("inet_protocols"));
    for (a, _) in crate::global::hostinfo::own_inet_addr_list(&c.str("inet_interfaces"), &fams) {
        own_addrs.push(a);
    }
    for item in parse_list(&c.str("proxy_interfaces")) {
        if let Ok(a) = item.parse() {
            own_addrs.push(a);
        }
    }
    Resolver {
        myhostname: c.str("myhostname"),
        mydestination: domain_list(
            "mydestination",
            FLAG_RETURN | parent("mydestination"),
            &c.str("mydestination"),
        ),
        relay_domains: domain_list(
            "relay_domains",
            FLAG_RETURN | parent("relay_domains"),
            &c.str("relay_domains"),
        ),
        virtual_alias_domains: domain_list(
            "virtual_alias_domains",
            FLAG_RETURN | parent("virtual_alias_domains"),
            &c.str("virtual_alias_domains"),
        ),
        virtual_mailbox_domains: domain_list(
            "virtual_mailbox_domains",
            FLAG_RETURN | parent("virtual_mailbox_domains"),
            &c.str("virtual_mailbox_domains"),
        ),
        own_addrs,
        percent_hack: c.bool("allow_percent_hack"),
        swap_bangpath: c.bool("swap_bangpath"),
        resolve_dequoted: c.bool("resolve_dequoted_address"),
        resolve_numeric_domain: c.bool("resolve_numeric_domain"),
        resolve_null_domain: c.bool("resolve_null_domain"),
        allow_min_user: c.bool("allow_min_user"),
        show_unk_rcpt_table: c.bool("show_user_unknown_table_name"),
        smtputf8_enable: c.bool("smtputf8_enable"),
    }
}

impl Checker {
    /// Build from main.cf (with the service's -o overrides).
    pub fn from_conf(c: &Conf) -> Checker {
        Checker::from_confs(c, c)
    }

    /// Build from smtpd's configuration `c` (main.cf with the service's -o overrides)
    /// and `main` (main.cf alone): addresses are resolved with `main`'s settings,
    /// as Postfix's smtpd asks trivial-rewrite, which does not see smtpd's -o overrides.
    pub fn from_confs(c: &Conf, main: &Conf) -> Checker {
        let pdms = c.str("parent_domain_matches_subdomains");
        let parent = |name: &str| crate::global::match_list::match_parent_style(&pdms, name);
        use crate::global::match_list::{FLAG_RETURN, namadr_list};
        let mut classes = HashMap::new();
        for name in parse_list(&c.str("smtpd_restriction_classes")) {
            classes.insert(name.clone(), parse_list(&c.str(&name)));
        }
        let relay_list = parse_list(&c.str("smtpd_relay_restrictions"));
        let rcpt_list = parse_list(&c.str("smtpd_recipient_restrictions"));
        if !has_required(&rcpt_list, &classes) && !has_required(&relay_list, &classes) {
            crate::global::msg::fatal(
                "in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, \
                 specify at least one working instance of: reject_unauth_destination, \
                 defer_unauth_destination, reject, defer, defer_if_permit or check_relay_domains",
            );
        }
        let fams = crate::global::hostinfo::inet_proto_families(&c.str("inet_protocols"));
        let mut ck = Checker {
            client: parse_list(&c.str("smtpd_client_restrictions")),
            helo: parse_list(&c.str("smtpd_helo_restrictions")),
            sender: parse_list(&c.str("smtpd_sender_restrictions")),
            relay: parse_list(&c.str("smtpd_relay_restrictions")),
            recipient: parse_list(&c.str("smtpd_recipient_restrictions")),
            data: parse_list(&c.str("smtpd_data_restrictions")),
            eod: parse_list(&c.str("smtpd_end_of_data_restrictions")),
            etrn: parse_list(&c.str("smtpd_etrn_restrictions")),
            classes,
            relay_before_rcpt: c.bool("smtpd_relay_before_recipient_restrictions"),
            delay_reject: c.bool("smtpd_delay_reject"),
            codes: Codes {
                reject: c.int("reject_code"),
                defer: c.int("defer_code"),
                map_reject: c.int("access_map_reject_code"),
                map_defer: c.int("access_map_defer_code"),
                relay: c.int("relay_domains_reject_code"),
                unk_addr: c.int("unknown_address_reject_code"),
                unk_name: c.int("unknown_hostname_reject_code"),
                unk_client: c.int("unknown_client_reject_code"),
                bad_name: c.int("invalid_hostname_reject_code"),
                non_fqdn: c.int("non_fqdn_reject_code"),
                local_rcpt: c.int("unknown_local_recipient_reject_code"),
                virt_alias: c.int("unknown_virtual_alias_reject_code"),
                virt_mailbox: c.int("unknown_virtual_mailbox_reject_code"),
                relay_rcpt: c.int("unknown_relay_recipient_reject_code"),
                maps_rbl: c.int("maps_rbl_reject_code"),
                mul_rcpt: c.int("multi_recipient_bounce_reject_code"),
                plaintext: c.int("plaintext_reject_code"),
            },
            soft_bounce: c.bool("soft_bounce"),
            mynetworks: namadr_list(
                "mynetworks",
                FLAG_RETURN | parent("mynetworks"),
                &c.mynetworks(),
            ),
            resolver: resolver_from(c),
            tr: Resolver {
                show_unk_rcpt_table: c.bool("show_user_unknown_table_name"),
                smtputf8_enable: c.bool("smtputf8_enable"),
                ..resolver_from(main)
            },
            tables: HashMap::new(),
            local_rcpt_maps: open_maps("local_recipient_maps", &c.str("local_recipient_maps")),
            virt_alias_maps: open_maps("virtual_alias_maps", &c.str("virtual_alias_maps")),
            virt_mailbox_maps: open_maps("virtual_mailbox_maps", &c.str("virtual_mailbox_maps")),
            relay_rcpt_maps: open_maps("relay_recipient_maps", &c.str("relay_recipient_maps")),
            canonical_maps: open_maps("canonical_maps", &c.str("canonical_maps")),
            rcpt_canon_maps: open_maps(
                "recipient_canonical_maps",
                &c.str("recipient_canonical_maps"),
            ),
            send_canon_maps: open_maps("sender_canonical_maps", &c.str("sender_canonical_maps")),
            split: SplitParams {
                delimiters: c.str("recipient_delimiter"),
                double_bounce_sender: c.str("double_bounce_sender"),
                owner_request_special: c.bool("owner_request_special"),
            },
            myorigin: c.myorigin(),
            double_bounce_sender: c.str("double_bounce_sender"),
            null_key: c.str("smtpd_null_access_lookup_key"),
            access_parent: parent("smtpd_access_maps") != 0,
            reject_unlisted_sender: c.bool("smtpd_reject_unlisted_sender"),
            reject_unlisted_recipient: c.bool("smtpd_reject_unlisted_recipient"),
            show_unk_rcpt_table: c.bool("show_user_unknown_table_name"),
            allow_untrusted_routing: c.bool("allow_untrusted_routing"),
            rbl_reply: c.raw("default_rbl_reply"),
            rbl_reply_maps: open_maps("rbl_reply_maps", &c.str("rbl_reply_maps")),
            expand_filter: super::expand::filter(&c.raw("smtpd_expansion_filter")),
            myhostname: c.str("myhostname"),
            unk_name_tf_defer_if_permit: tempfail_action(
                c,
                "unknown_helo_hostname_tempfail_action",
            ),
            unk_addr_tf_defer_if_permit: tempfail_action(c, "unknown_address_tempfail_action"),
            perm_mx_networks: {
                let v = c.str("permit_mx_backup_networks");
                (!v.trim().is_empty()).then(|| {
                    namadr_list(
                        "permit_mx_backup_networks",
                        FLAG_RETURN | parent("permit_mx_backup_networks"),
                        &v,
                    )
                })
            },
            inet_v4: fams.contains(&crate::sys::net::AF_INET),
            inet_v6: fams.contains(&crate::sys::net::AF_INET6),
            // Postfix's var_dns_rr_list_limit (not a main.cf parameter).
            dns_rr_list_limit: 100,
            dns: Box::new(SystemDns),
            stress: c.str("stress"),
            smtputf8_enable: c.bool("smtputf8_enable"),
            policy_nesting: 0,
        };
        // Open every table named in a restriction list now, as Postfix does
        // before it drops privileges.
        let lists: Vec<Vec<String>> = [
            &ck.client,
            &ck.helo,
            &ck.sender,
            &ck.relay,
            &ck.recipient,
            &ck.data,
            &ck.eod,
            &ck.etrn,
        ]
        .into_iter()
        .cloned()
        .chain(ck.classes.values().cloned())
        .collect();
        super::policy_hook::register_all(c, &lists);
        for list in lists {
            for (i, name) in list.iter().enumerate() {
                if i > 0 && list[i - 1].eq_ignore_ascii_case("check_policy_service") {
                    continue;
                }
                let table = if name.contains(':') {
                    Some(name.clone())
                } else if MAP_COMMANDS.iter().any(|m| m.eq_ignore_ascii_case(name)) {
                    list.get(i + 1).cloned()
                } else {
                    None
                };
                if let Some(t) = table
                    && t.contains(':')
                    && !ck.tables.contains_key(&t)
                {
                    ck.tables.insert(
                        t.clone(),
                        Maps::create(
                            &t,
                            &t,
                            dflags::LOCK | dflags::FOLD_FIX | dflags::UTF8_REQUEST,
                        ),
                    );
                }
            }
        }
        ck
    }

    // ---------------------------------------------------------------- replies

    /// Postfix's smtpd_check_reject(): format, log, and return REJECT (or
    /// DUNNO under warn_if_reject).
    fn reject(&mut self, st: &mut State, class: u32, code: u32, dsn: &str, text: String) -> Status {
        let warn = st.warn_if_reject != 0
            && class != error_class::SOFTWARE
            && class != error_class::RESOURCE
            && class != error_class::DATA;
        let whatsup = if warn { "reject_warning" } else { "reject" };
        st.error_mask |= class;
        let mut t = format!("{code} {dsn} {text}");
        if !(400..=599).contains(&code) {
            st.warn(format!("SMTP reply code configuration error: {t}"));
            t = "450 4.7.1 Service unavailable".into();
        }
        if !dsn_valid(dsn) {
            st.warn(format!("DSN detail code configuration error: {t}"));
            t = "450 4.7.1 Service unavailable".into();
        }
        if t.len() > 510 {
            t.truncate(510);
        }
        // Postfix's printable(text, ' '): control characters become spaces
        // (a '?' in the text stays).
        let t: String = t
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if !warn && st.defer_if_reject.active && t.starts_with('5') {
            st.warn_if_reject = 0;
            st.defer_if_reject.active = false;
            let d = st.defer_if_reject.clone();
            return self.reject(st, error_class::POLICY, d.code, &d.dsn, d.reason);
        }
        let mut b: Vec<char> = t.chars().collect();
        if self.soft_bounce && b[0] == '5' {
            b[0] = '4';
        }
        if b.len() > 4 {
            b[4] = b[0];
        }
        let t: String = b.into_iter().collect();
        st.log_whatsup(whatsup, &t);
        st.error_text = t;
        if warn { Status::Dunno } else { Status::Reject }
    }

    fn dict_retry(&mut self, st: &mut State, reply_name: &str) -> Status {
        self.reject(
            st,
            error_class::DATA,
            451,
            "4.3.0",
            format!("<{reply_name}>: Temporary lookup failure"),
        )
    }

    pub(super) fn server_error(&mut self, st: &mut State) -> Status {
        self.reject(
            st,
            error_class::SOFTWARE,
            451,
            "4.3.5",
            "Server configuration error".into(),
        )
    }

    fn lookup_error(&mut self, st: &mut State, e: &DictError, reply_name: &str) -> Status {
        match e {
            DictError::Retry(_) => self.dict_retry(st, reply_name),
            _ => self.server_error(st),
        }
    }

    fn defer_if(d: &mut Defer, code: u32, dsn: &str, reason: String) -> Status {
        if !d.active {
            *d = Defer {
                active: true,
                code,
                dsn: dsn.to_string(),
                reason,
            };
        }
        Status::Dunno
    }

    fn permit(&mut self, _st: &mut State) -> Status {
        Status::Ok
    }

    // ---------------------------------------------------------- entry points

    fn reset(st: &mut State) {
        st.recursion = 0;
        st.warn_if_reject = 0;
        st.defer_if_reject.active = false;
    }

    fn run(
        &mut self,
        st: &mut State,
        list: &[String],
        reply_name: &str,
        class: &str,
        def_acl: &str,
    ) -> Status {
        if list.is_empty() {
            return Status::Dunno;
        }
        match self.generic(st, list, reply_name, class, def_acl) {
            Ok(s) | Err(s) => s,
        }
    }

    fn answer(st: &State, s: Status) -> Option<String> {
        (s == Status::Reject).then(|| st.error_text.clone())
    }

    /// smtpd_check_client().
    pub fn check_client(&mut self, st: &mut State) -> Option<String> {
        st.defer_if_permit.active = false;
        Self::reset(st);
        let list = self.client.clone();
        let na = st.namaddr.clone();
        let s = self.run(st, &list, &na, NAME_CLIENT, "check_client_access");
        st.defer_if_permit_client = st.defer_if_permit.active;
        Self::answer(st, s)
    }

    /// smtpd_check_helo().
    pub fn check_helo(&mut self, st: &mut State, helo: Option<&str>) -> Option<String> {
        let helo = helo?.to_string();
        let saved = st.helo_name.replace(helo.clone());
        st.defer_if_permit.active = st.defer_if_permit_client;
        Self::reset(st);
        let list = self.helo.clone();
        let s = self.run(st, &list, &helo, NAME_HELO, "check_helo_access");
        st.defer_if_permit_helo = st.defer_if_permit.active;
        st.helo_name = saved;
        Self::answer(st, s)
    }

    /// smtpd_check_mail().
    pub fn check_mail(&mut self, st: &mut State, sender: Option<&str>) -> Option<String> {
        let sender = sender?.to_string();
        let saved = st.sender.replace(sender.clone());
        st.defer_if_permit.active = st.defer_if_permit_client | st.defer_if_permit_helo;
        st.sender_rcptmap_checked = false;
        Self::reset(st);
        let list = self.sender.clone();
        let mut s = self.run(st, &list, &sender, NAME_SENDER, "check_sender_access");
        st.defer_if_permit_sender = st.defer_if_permit.active;
        if self.reject_unlisted_sender
            && s != Status::Reject
            && !st.sender_rcptmap_checked
            && !st.discard
            && !sender.is_empty()
        {
            s = match self.check_sender_rcpt_maps(st, &sender) {
                Ok(s) | Err(s) => s,
            };
        }
        st.sender = saved;
        Self::answer(st, s)
    }

    /// smtpd_check_rcpt().
    pub fn check_rcpt(&mut self, st: &mut State, recipient: &str) -> Option<String> {
        if recipient.eq_ignore_ascii_case("postmaster") {
            return None;
        }
        let saved = st.recipient.replace(recipient.to_string());
        let out = self.check_rcpt_inner(st, recipient);
        st.recipient = saved;
        out
    }

    fn check_rcpt_inner(&mut self, st: &mut State, recipient: &str) -> Option<String> {
        st.recipient_rcptmap_checked = false;
        if self.delay_reject {
            if let Some(e) = self.check_client(st) {
                return Some(e);
            }
            let helo = st.helo_name.clone();
            if let Some(e) = self.check_helo(st, helo.as_deref()) {
                return Some(e);
            }
            let sender = st.sender.clone();
            if let Some(e) = self.check_mail(st, sender.as_deref()) {
                return Some(e);
            }
        }
        st.defer_if_permit.active = st.defer_if_permit_sender;
        Self::reset(st);
        let lists = if self.relay_before_rcpt {
            [self.relay.clone(), self.recipient.clone()]
        } else {
            [self.recipient.clone(), self.relay.clone()]
        };
        let mut s = Status::Dunno;
        for list in &lists {
            s = self.run(
                st,
                list,
                recipient,
                NAME_RECIPIENT,
                "check_recipient_access",
            );
            if s == Status::Reject {
                break;
            }
        }
        if s != Status::Reject && st.defer_if_permit.active {
            let d = st.defer_if_permit.clone();
            s = self.reject(st, error_class::POLICY, d.code, &d.dsn, d.reason);
        }
        if self.reject_unlisted_recipient
            && s != Status::Reject
            && !st.recipient_rcptmap_checked
            && !st.discard
        {
            s = match self.check_recipient_rcpt_maps(st, recipient) {
                Ok(s) | Err(s) => s,
            };
        }
        Self::answer(st, s)
    }

    /// smtpd_check_etrn().
    pub fn check_etrn(&mut self, st: &mut State, domain: &str) -> Option<String> {
        let saved = st.etrn_name.replace(domain.to_string());
        let out = (|| {
            if self.delay_reject {
                if let Some(e) = self.check_client(st) {
                    return Some(e);
                }
                let helo = st.helo_name.clone();
                if let Some(e) = self.check_helo(st, helo.as_deref()) {
                    return Some(e);
                }
            }
            st.defer_if_permit.active = st.defer_if_permit_client | st.defer_if_permit_helo;
            Self::reset(st);
            let list = self.etrn.clone();
            let mut s = self.run(st, &list, domain, NAME_ETRN, "check_etrn_access");
            if s != Status::Reject && st.defer_if_permit.active {
                let d = st.defer_if_permit.clone();
                s = self.reject(st, error_class::POLICY, d.code, &d.dsn, d.reason);
            }
            Self::answer(st, s)
        })();
        st.etrn_name = saved;
        out
    }

    /// smtpd_check_data() / smtpd_check_eod().
    pub fn check_data(&mut self, st: &mut State, eod: bool) -> Option<String> {
        let list = if eod {
            self.eod.clone()
        } else {
            self.data.clone()
        };
        if list.is_empty() {
            return None;
        }
        // With one recipient, the recipient is known to the checks.
        let saved = if st.rcpt_count == 1 {
            None
        } else {
            Some(st.recipient.take())
        };
        st.defer_if_permit.active = false;
        Self::reset(st);
        let (name, class) = if eod {
            ("END-OF-MESSAGE", NAME_EOD)
        } else {
            ("DATA", NAME_DATA)
        };
        let mut s = self.run(st, &list, name, class, "check_recipient_access");
        if s != Status::Reject && st.defer_if_permit.active {
            let d = st.defer_if_permit.clone();
            s = self.reject(st, error_class::POLICY, d.code, &d.dsn, d.reason);
        }
        if let Some(r) = saved {
            st.recipient = r;
        }
        Self::answer(st, s)
    }

    /// smtpd_check_addr(): address syntax the resolver accepts.
    pub fn check_addr(&mut self, addr: &str, smtputf8: bool) -> bool {
        if addr.is_empty() {
            return true;
        }
        let r = self.tr.resolve(addr);
        if r.flags & rflags::ERROR != 0 {
            return false;
        }
        if !smtputf8 && let Some(i) = r.recipient.rfind('@') {
            let d = &r.recipient[i + 1..];
            if !d.is_empty() && !d.is_ascii() {
                return false;
            }
        }
        true
    }

    /// Postfix's permit_mynetworks as a plain test (local_header_rewrite_clients).
    pub fn in_mynetworks(&mut self, st: &State) -> bool {
        self.mynetworks.matches(&[&st.name, &st.addr])
    }

    // ------------------------------------------------------- generic checks

    fn generic(
        &mut self,
        st: &mut State,
        list: &[String],
        reply_name: &str,
        class: &str,
        def_acl: &str,
    ) -> R {
        let saved_recursion = st.recursion;
        st.recursion += 1;
        let mut status = Status::Dunno;
        let mut i = 0;
        while i < list.len() {
            if st.discard {
                break;
            }
            let mut name = list[i].as_str();
            if name.eq_ignore_ascii_case("warn_if_reject") {
                if st.warn_if_reject == 0 {
                    st.warn_if_reject = st.recursion;
                }
                i += 1;
                continue;
            }
            let mut table_arg: Option<String> = None;
            if name.contains(':') {
                table_arg = Some(name.to_string());
                name = def_acl;
            } else if MAP_COMMANDS.iter().any(|m| m.eq_ignore_ascii_case(name)) {
                match list.get(i + 1) {
                    Some(t) => {
                        table_arg = Some(t.clone());
                        i += 1;
                    }
                    None => {
                        st.warn(format!("restriction {name} requires table argument"));
                        return Err(self.server_error(st));
                    }
                }
            }
            let lname = name.to_ascii_lowercase();
            let next = list.get(i + 1).cloned();
            status = match lname.as_str() {
                "permit" => {
                    if let Some(n) = &next {
                        st.warn(format!("restriction `{n}' after `permit' is ignored"));
                    }
                    self.permit(st)
                }
                "defer" => {
                    let s = self.reject(
                        st,
                        error_class::POLICY,
                        self.codes.defer,
                        "4.3.2",
                        format!("<{reply_name}>: {class} rejected: Try again later"),
                    );
                    if let Some(n) = &next
                        && st.warn_if_reject == 0
                    {
                        st.warn(format!("restriction `{n}' after `defer' is ignored"));
                    }
                    s
                }
                "reject" => {
                    let s = self.reject(
                        st,
                        error_class::POLICY,
                        self.codes.reject,
                        "5.7.1",
                        format!("<{reply_name}>: {class} rejected: Access denied"),
                    );
                    if let Some(n) = &next
                        && st.warn_if_reject == 0
                    {
                        st.warn(format!("restriction `{n}' after `reject' is ignored"));
                    }
                    s
                }
                "reject_unauth_pipelining" => {
                    if st.ill_pipelining {
                        self.reject(
                            st,
                            error_class::PROTOCOL,
                            503,
                            "5.5.0",
                            format!("<{reply_name}>: {class} rejected: Improper use of SMTP command pipelining"),
                        )
                    } else {
                        Status::Dunno
                    }
                }
                "defer_if_permit" => Self::defer_if(
                    &mut st.defer_if_permit,
                    450,
                    "4.7.0",
                    format!("<{reply_name}>: {class} rejected: defer_if_permit requested"),
                ),
                "defer_if_reject" => Self::defer_if(
                    &mut st.defer_if_reject,
                    450,
                    "4.7.0",
                    format!("<{reply_name}>: {class} rejected: defer_if_reject requested"),
                ),
                "sleep" => match next
                    .as_deref()
                    .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                {
                    Some(n) => {
                        let secs: u64 = n.parse().unwrap_or(0);
                        st.events
                            .push(super::state::Event::Sleep(std::time::Duration::from_secs(
                                secs,
                            )));
                        i += 1;
                        Status::Dunno
                    }
                    None => {
                        st.warn("restriction sleep must be followed by number".into());
                        return Err(self.server_error(st));
                    }
                },
                "reject_plaintext_session" => {
                    let c = self.codes.plaintext;
                    self.reject(
                        st,
                        error_class::POLICY,
                        c,
                        "4.7.1",
                        "Session encryption is required".into(),
                    )
                }
                "reject_unknown_client_hostname" | "reject_unknown_client" => {
                    if st.name_status != PeerCode::Ok {
                        let code = if matches!(st.name_status, PeerCode::Perm | PeerCode::Forged) {
                            self.codes.unk_client
                        } else {
                            450
                        };
                        let a = st.addr.clone();
                        self.reject(
                            st,
                            error_class::POLICY,
                            code,
                            "4.7.25",
                            format!("Client host rejected: cannot find your hostname, [{a}]"),
                        )
                    } else {
                        Status::Dunno
                    }
                }
                "reject_unknown_reverse_client_hostname" => {
                    if st.reverse_name_status != PeerCode::Ok {
                        let code = if st.reverse_name_status == PeerCode::Perm {
                            self.codes.unk_client
                        } else {
                            450
                        };
                        let a = st.addr.clone();
                        self.reject(
                            st,
                            error_class::POLICY,
                            code,
                            "4.7.1",
                            format!(
                                "Client host rejected: cannot find your reverse hostname, [{a}]"
                            ),
                        )
                    } else {
                        Status::Dunno
                    }
                }
                "permit_mynetworks" => {
                    if self.mynetworks.matches(&[&st.name, &st.addr]) {
                        Status::Ok
                    } else if self.mynetworks.error {
                        return Err(self.server_error(st));
                    } else {
                        Status::Dunno
                    }
                }
                "permit_inet_interfaces" => {
                    let own = st
                        .addr
                        .parse()
                        .is_ok_and(|a| self.resolver.own_addrs.contains(&a));
                    if own { Status::Ok } else { Status::Dunno }
                }
                "check_client_access" => {
                    let t = table_arg.unwrap_or_default();
                    let (n, a, na) = (st.name.clone(), st.addr.clone(), st.namaddr.clone());
                    self.check_namadr_access(st, &t, &n, &a, &na, NAME_CLIENT, def_acl)?
                }
                "check_reverse_client_hostname_access" => {
                    let t = table_arg.unwrap_or_default();
                    let (n, a) = (st.reverse_name.clone(), st.addr.clone());
                    self.check_namadr_access(st, &t, &n, &a, &n, NAME_REV_CLIENT, def_acl)?
                }
                "reject_rbl_client"
                | "reject_rbl"
                | "permit_dnswl_client"
                | "reject_rhsbl_client"
                | "permit_rhswl_client"
                | "reject_rhsbl_reverse_client"
                | "reject_rhsbl_helo"
                | "reject_rhsbl_sender"
                | "reject_rhsbl_recipient" => match next.clone() {
                    None => {
                        st.warn(format!("restriction {name} requires domain name argument"));
                        Status::Dunno
                    }
                    Some(d) => {
                        i += 1;
                        self.dnsxl_restriction(st, &lname, &d)?
                    }
                },
                _ if lname.starts_with("check_")
                    && (lname.ends_with("_mx_access")
                        || lname.ends_with("_ns_access")
                        || lname.ends_with("_a_access")) =>
                {
                    let t = table_arg.unwrap_or_default();
                    self.server_access_restriction(st, &lname, name, &t, def_acl)?
                }
                "permit_mx_backup" => match st.recipient.clone() {
                    Some(r) => self.permit_mx_backup(st, &r)?,
                    None => Status::Dunno,
                },
                "check_helo_access" => {
                    let t = table_arg.unwrap_or_default();
                    match st.helo_name.clone() {
                        Some(h) => {
                            self.check_domain_access(st, &t, &h, &h, NAME_HELO, def_acl)?
                                .0
                        }
                        None => Status::Dunno,
                    }
                }
                "reject_invalid_helo_hostname" | "reject_invalid_hostname" => {
                    match st.helo_name.clone() {
                        Some(h) if !h.starts_with('[') => {
                            let t = h
                                .strip_suffix('.')
                                .filter(|_| !h.ends_with(".."))
                                .unwrap_or(&h);
                            if !valid_hostname(t) && !valid_hostaddr(t) {
                                let c = self.codes.bad_name;
                                self.reject(
                                    st,
                                    error_class::POLICY,
                                    c,
                                    "5.5.2",
                                    format!("<{h}>: {NAME_HELO} rejected: Invalid name"),
                                )
                            } else {
                                Status::Dunno
                            }
                        }
                        Some(h) => self.reject_invalid_hostaddr(st, &h),
                        None => Status::Dunno,
                    }
                }
                "reject_non_fqdn_helo_hostname" | "reject_non_fqdn_hostname" => {
                    match st.helo_name.clone() {
                        Some(h) if !h.starts_with('[') => {
                            let t = h
                                .strip_suffix('.')
                                .filter(|_| !h.ends_with(".."))
                                .unwrap_or(&h);
                            if !valid_hostname_utf8(t, st.smtputf8) || !t.contains('.') {
                                let c = self.codes.non_fqdn;
                                self.reject(
                                    st,
                                    error_class::POLICY,
                                    c,
                                    "5.5.2",
                                    format!(
                                        "<{h}>: {NAME_HELO} rejected: need fully-qualified hostname"
                                    ),
                                )
                            } else {
                                Status::Dunno
                            }
                        }
                        Some(h) => self.reject_invalid_hostaddr(st, &h),
                        None => Status::Dunno,
                    }
                }
                "reject_unknown_helo_hostname" | "reject_unknown_hostname" => {
                    match st.helo_name.clone() {
                        Some(h) if !h.starts_with('[') => self.reject_unknown_hostname(st, &h),
                        Some(h) => self.reject_invalid_hostaddr(st, &h),
                        None => Status::Dunno,
                    }
                }
                "check_sender_access" => {
                    let t = table_arg.unwrap_or_default();
                    match st.sender.clone() {
                        Some(s) if !s.is_empty() => {
                            self.check_mail_access(st, &t, &s, NAME_SENDER, def_acl)?
                        }
                        Some(s) => {
                            let key = self.null_key.clone();
                            self.check_access(st, &t, &key, &s, NAME_SENDER, def_acl)?.0
                        }
                        None => Status::Dunno,
                    }
                }
                "reject_unknown_sender_domain" | "reject_unknown_address" => {
                    match st.sender.clone() {
                        Some(s) if !s.is_empty() => {
                            self.reject_unknown_address(st, &s, NAME_SENDER)?
                        }
                        _ => Status::Dunno,
                    }
                }
                "reject_non_fqdn_sender" => match st.sender.clone() {
                    Some(s) if !s.is_empty() => self.reject_non_fqdn_address(st, &s, NAME_SENDER),
                    _ => Status::Dunno,
                },
                "reject_unlisted_sender" => match st.sender.clone() {
                    Some(s) if !s.is_empty() => self.check_sender_rcpt_maps(st, &s)?,
                    _ => Status::Dunno,
                },
                "reject_authenticated_sender_login_mismatch"
                | "reject_known_sender_login_mismatch"
                | "reject_unauthenticated_sender_login_mismatch"
                | "reject_sender_login_mismatch" => {
                    st.warn(format!("restriction `{name}' ignored: no SASL support"));
                    Status::Dunno
                }
                "permit_sasl_authenticated" => Status::Dunno,
                "permit_tls_all_clientcerts" | "permit_tls_clientcerts" => Status::Dunno,
                "check_recipient_access" => {
                    let t = table_arg.unwrap_or_default();
                    match st.recipient.clone() {
                        Some(r) => self.check_mail_access(st, &t, &r, NAME_RECIPIENT, def_acl)?,
                        None => Status::Dunno,
                    }
                }
                "permit_auth_destination" => match st.recipient.clone() {
                    Some(r) => self.permit_auth_destination(st, &r)?,
                    None => Status::Dunno,
                },
                "reject_unauth_destination" | "defer_unauth_destination" => {
                    match st.recipient.clone() {
                        Some(r) => {
                            if self.permit_auth_destination(st, &r)? == Status::Ok {
                                Status::Dunno
                            } else {
                                let (code, dsn) = if lname == "reject_unauth_destination" {
                                    (self.codes.relay, "5.7.1")
                                } else {
                                    (self.codes.relay.saturating_sub(100), "4.7.1")
                                };
                                self.reject(
                                    st,
                                    error_class::POLICY,
                                    code,
                                    dsn,
                                    format!("<{r}>: Relay access denied"),
                                )
                            }
                        }
                        None => Status::Dunno,
                    }
                }
                "check_relay_domains" => match st.recipient.clone() {
                    Some(r) => {
                        let n = st.name.clone();
                        if self.resolver.relay_domains.matches(&[&n])
                            || self.permit_auth_destination(st, &r)? == Status::Ok
                        {
                            Status::Ok
                        } else {
                            let c = self.codes.relay;
                            self.reject(
                                st,
                                error_class::POLICY,
                                c,
                                "5.7.1",
                                format!("<{r}>: {NAME_RECIPIENT} rejected: Relay access denied"),
                            )
                        }
                    }
                    None => Status::Dunno,
                },
                "reject_unknown_recipient_domain" => match st.recipient.clone() {
                    Some(r) => self.reject_unknown_address(st, &r, NAME_RECIPIENT)?,
                    None => Status::Dunno,
                },
                "reject_non_fqdn_recipient" => match st.recipient.clone() {
                    Some(r) => self.reject_non_fqdn_address(st, &r, NAME_RECIPIENT),
                    None => Status::Dunno,
                },
                "check_recipient_maps" | "reject_unlisted_recipient" => {
                    match st.recipient.clone() {
                        Some(r) if !r.is_empty() => self.check_recipient_rcpt_maps(st, &r)?,
                        _ => Status::Dunno,
                    }
                }
                "reject_multi_recipient_bounce" => {
                    let threshold = u32::from(st.where_ != "RCPT");
                    if st.sender.as_deref() == Some("") && st.rcpt_count > threshold {
                        let c = self.codes.mul_rcpt;
                        self.reject(
                            st,
                            error_class::POLICY,
                            c,
                            "5.5.3",
                            format!("<{reply_name}>: {class} rejected: Multi-recipient bounce"),
                        )
                    } else {
                        Status::Dunno
                    }
                }
                "check_etrn_access" => {
                    let t = table_arg.unwrap_or_default();
                    match st.etrn_name.clone() {
                        Some(d) => {
                            self.check_domain_access(st, &t, &d, &d, NAME_ETRN, def_acl)?
                                .0
                        }
                        None => Status::Dunno,
                    }
                }
                "check_policy_service" => match next.clone().filter(|n| n.contains(':')) {
                    None => {
                        st.warn(
                            "restriction check_policy_service must be followed by transport:server"
                                .into(),
                        );
                        return Err(self.server_error(st));
                    }
                    Some(server) => {
                        i += 1;
                        self.check_policy_service(st, &server, reply_name, class, def_acl)?
                    }
                },
                _ => {
                    if let Some(l) = self.classes.get(name).cloned() {
                        self.generic(st, &l, reply_name, class, def_acl)?
                    } else if MAP_COMMANDS.iter().any(|m| m.eq_ignore_ascii_case(name))
                        || lname.starts_with("reject_unverified_")
                    {
                        st.warn(format!(
                            "restriction `{name}' is not supported by this smtpd"
                        ));
                        return Err(self.server_error(st));
                    } else {
                        st.warn(format!("unknown smtpd restriction: \"{name}\""));
                        return Err(self.server_error(st));
                    }
                }
            };
            if st.warn_if_reject >= st.recursion {
                st.warn_if_reject = 0;
            }
            if status != Status::Dunno {
                break;
            }
            if st.defer_if_permit.active && st.defer_if_reject.active {
                break;
            }
            i += 1;
        }
        st.recursion = saved_recursion;
        if st.warn_if_reject >= st.recursion {
            st.warn_if_reject = 0;
        }
        Ok(status)
    }

    // ------------------------------------------------------------ helpers

    fn reject_invalid_hostaddr(&mut self, st: &mut State, h: &str) -> Status {
        let inner = if h.len() > 2 && h.starts_with('[') && h.ends_with(']') {
            &h[1..h.len() - 1]
        } else {
            h
        };
        if !valid_mailhost_addr(inner) {
            let c = self.codes.bad_name;
            self.reject(
                st,
                error_class::POLICY,
                c,
                "5.5.2",
                format!("<{h}>: {NAME_HELO} rejected: invalid ip address"),
            )
        } else {
            Status::Dunno
        }
    }

    /// reject_unknown_hostname(): the HELO name needs an A, AAAA or MX
    /// record (a null MX is fine).
    fn reject_unknown_hostname(&mut self, st: &mut State, h: &str) -> Status {
        let e = match self
            .dns
            .lookup(h, &[RrType::A, RrType::Aaaa, RrType::Mx], true)
        {
            Ok(_) => return Status::Dunno,
            Err(e) => e,
        };
        match e.status {
            DnsStatus::NullMx => Status::Dunno,
            DnsStatus::Retry => {
                let text = format!("<{h}>: {NAME_HELO} rejected: Host not found");
                if st.warn_if_reject == 0 && self.unk_name_tf_defer_if_permit {
                    Self::defer_if(&mut st.defer_if_permit, 450, "4.7.1", text)
                } else {
                    self.reject(st, error_class::POLICY, 450, "4.7.1", text)
                }
            }
            s => {
                let c = self.codes.unk_name;
                let why = if s == DnsStatus::Inval {
                    "Malformed DNS server reply"
                } else {
                    "Host not found"
                };
                self.reject(
                    st,
                    error_class::POLICY,
                    c,
                    "4.7.1",
                    format!("<{h}>: {NAME_HELO} rejected: {why}"),
                )
            }
        }
    }

    fn reject_non_fqdn_address(&mut self, st: &mut State, addr: &str, class: &str) -> Status {
        let domain = addr.rfind('@').map(|i| &addr[i + 1..]).unwrap_or("");
        if domain.starts_with('[') && domain.ends_with(']') {
            return Status::Dunno;
        }
        let t = if domain.len() > 1 && domain.ends_with('.') && !domain.ends_with("..") {
            &domain[..domain.len() - 1]
        } else {
            domain
        };
        if t.is_empty() || !valid_hostname_utf8(t, st.smtputf8) || !t.contains('.') {
            let c = self.codes.non_fqdn;
            self.reject(
                st,
                error_class::POLICY,
                c,
                "4.5.2",
                format!("<{addr}>: {class} rejected: need fully-qualified address"),
            )
        } else {
            Status::Dunno
        }
    }

    fn resolve(&mut self, st: &mut State, addr: &str) -> Result<Resolved, Status> {
        let r = self.tr.resolve(addr);
        if r.flags & rflags::FAIL != 0 {
            return Err(self.dict_retry(st, addr));
        }
        Ok(r)
    }

    fn reject_unknown_address(&mut self, st: &mut State, addr: &str, class: &str) -> R {
        let r = self.resolve(st, addr)?;
        let Some(i) = r.recipient.rfind('@') else {
            return Ok(Status::Dunno);
        };
        let domain = r.recipient[i + 1..].to_string();
        if r.flags & rflags::CLASS_FINAL != 0 || (domain.starts_with('[') && domain.ends_with(']'))
        {
            return Ok(Status::Dunno);
        }
        Ok(self.reject_unknown_mailhost(st, &domain, addr, class))
    }

    /// reject_unknown_mailhost(): the domain needs an MX, A or AAAA record
    /// and no null MX.
    fn reject_unknown_mailhost(
        &mut self,
        st: &mut State,
        domain: &str,
        reply_name: &str,
        class: &str,
    ) -> Status {
        let aname = ascii_domain(domain);
        let e = match self
            .dns
            .lookup(&aname, &[RrType::Mx, RrType::A, RrType::Aaaa], true)
        {
            Ok(_) => return Status::Dunno,
            Err(e) => e,
        };
        let sender = class == NAME_SENDER;
        match e.status {
            DnsStatus::NullMx => self.reject(
                st,
                error_class::POLICY,
                if sender { 550 } else { 556 },
                if sender { "4.7.27" } else { "4.1.10" },
                format!(
                    "<{reply_name}>: {class} rejected: Domain {aname} does not accept mail (nullMX)"
                ),
            ),
            DnsStatus::Retry => {
                let text = format!("<{reply_name}>: {class} rejected: Domain not found");
                let dsn = if sender { "4.1.8" } else { "4.1.2" };
                if st.warn_if_reject == 0 && self.unk_addr_tf_defer_if_permit {
                    Self::defer_if(&mut st.defer_if_permit, 450, dsn, text)
                } else {
                    self.reject(st, error_class::POLICY, 450, dsn, text)
                }
            }
            s => {
                let c = self.codes.unk_addr;
                let why = if s == DnsStatus::Inval {
                    "Malformed DNS server reply"
                } else {
                    "Domain not found"
                };
                self.reject(
                    st,
                    error_class::POLICY,
                    c,
                    if sender { "4.1.8" } else { "4.1.2" },
                    format!("<{reply_name}>: {class} rejected: {why}"),
                )
            }
        }
    }

    fn permit_auth_destination(&mut self, st: &mut State, rcpt: &str) -> R {
        let r = self.resolve(st, rcpt)?;
        if !r.recipient.contains('@') {
            return Ok(Status::Ok);
        }
        if !self.allow_untrusted_routing && r.flags & rflags::ROUTED != 0 {
            return Ok(Status::Dunno);
        }
        if r.flags & (rflags::CLASS_FINAL | rflags::CLASS_RELAY) != 0 {
            return Ok(Status::Ok);
        }
        Ok(Status::Dunno)
    }

    fn maps_find(
        &mut self,
        table: &str,
        key: &str,
        partial: bool,
    ) -> Result<Option<String>, DictError> {
        let m = self.tables.entry(table.to_string()).or_insert_with(|| {
            Maps::create(
                table,
                table,
                dflags::LOCK | dflags::FOLD_FIX | dflags::UTF8_REQUEST,
            )
        });
        m.find(key, if partial { dflags::FIXED } else { 0 })
    }

    /// check_access(): one key. Returns (status, found).
    fn check_access(
        &mut self,
        st: &mut State,
        table: &str,
        key: &str,
        reply_name: &str,
        class: &str,
        def_acl: &str,
    ) -> Result<(Status, bool), Status> {
        match self.maps_find(table, key, false) {
            Ok(Some(v)) => Ok((
                self.table_result(st, table, &v, key, reply_name, class, def_acl)?,
                true,
            )),
            Ok(None) => Ok((Status::Dunno, false)),
            Err(_) => Ok((
                self.table_result(
                    st,
                    table,
                    "451 4.3.5 Server configuration error",
                    key,
                    reply_name,
                    class,
                    def_acl,
                )?,
                true,
            )),
        }
    }

    /// check_domain_access(): the name, then its parent domains.
    fn check_domain_access(
        &mut self,
        st: &mut State,
        table: &str,
        domain: &str,
        reply_name: &str,
        class: &str,
        def_acl: &str,
    ) -> Result<(Status, bool), Status> {
        let mut name = domain.to_string();
        let mut partial = false;
        let numeric = valid_hostaddr(domain);
        loop {
            match self.maps_find(table, &name, partial) {
                Ok(Some(v)) => {
                    return Ok((
                        self.table_result(st, table, &v, domain, reply_name, class, def_acl)?,
                        true,
                    ));
                }
                Ok(None) => {}
                Err(_) => {
                    return Ok((
                        self.table_result(
                            st,
                            table,
                            "451 4.3.5 Server configuration error",
                            domain,
                            reply_name,
                            class,
                            def_acl,
                        )?,
                        true,
                    ));
                }
            }
            if numeric {
                break;
            }
            let Some(j) = name[1.min(name.len())..].find('.').map(|j| j + 1) else {
                break;
            };
            name = if self.access_parent {
                name[j + 1..].to_string()
            } else {
                name[j..].to_string()
            };
            if name.is_empty() {
                break;
            }
            partial = true;
        }
        Ok((Status::Dunno, false))
    }

    /// check_addr_access(): the address, then shorter prefixes.
    fn check_addr_access(
        &mut self,
        st: &mut State,
        table: &str,
        address: &str,
        reply_name: &str,
        class: &str,
        def_acl: &str,
    ) -> Result<(Status, bool), Status> {
        let delim = if address.contains(':') { ':' } else { '.' };
        let mut addr = address.to_string();
        let mut partial = false;
        loop {
            match self.maps_find(table, &addr, partial) {
                Ok(Some(v)) => {
                    return Ok((
                        self.table_result(st, table, &v, address, reply_name, class, def_acl)?,
                        true,
                    ));
                }
                Ok(None) => {}
                Err(_) => {
                    return Ok((
                        self.table_result(
                            st,
                            table,
                            "451 4.3.5 Server configuration error",
                            address,
                            reply_name,
                            class,
                            def_acl,
                        )?,
                        true,
                    ));
                }
            }
            partial = true;
            match addr.rfind(delim) {
                Some(j) => addr.truncate(j),
                None => break,
            }
        }
        Ok((Status::Dunno, false))
    }

    #[allow(clippy::too_many_arguments)]
    fn check_namadr_access(
        &mut self,
        st: &mut State,
        table: &str,
        name: &str,
        addr: &str,
        reply_name: &str,
        class: &str,
        def_acl: &str,
    ) -> R {
        let (s, found) = self.check_domain_access(st, table, name, reply_name, class, def_acl)?;
        if s != Status::Dunno || found {
            return Ok(s);
        }
        let (s, _) = self.check_addr_access(st, table, addr, reply_name, class, def_acl)?;
        Ok(s)
    }

    fn check_mail_access(
        &mut self,
        st: &mut State,
        table: &str,
        addr: &str,
        class: &str,
        def_acl: &str,
    ) -> R {
        let r = self.resolve(st, addr)?;
        if !r.recipient.contains('@') {
            st.warn(format!(
                "check_mail_access: no @domain in address: {}",
                r.recipient
            ));
            return Ok(Status::Dunno);
        }
        let suspicious = !self.allow_untrusted_routing
            && r.flags & rflags::ROUTED != 0
            && class == NAME_RECIPIENT;
        let bits = strategy::FULL
            | strategy::NOEXT
            | strategy::DOMAIN
            | strategy::LOCALPART_AT
            | if self.access_parent {
                strategy::PDMS
            } else {
                strategy::PDDMDS
            };
        let myorigin = self.myorigin.clone();
        let split = self.split.clone();
        let dom = r
            .recipient
            .rfind('@')
            .map(|i| r.recipient[i + 1..].to_string())
            .unwrap_or_default();
        let dom_local = self.resolver.is_local(&dom);
        let m = self.tables.entry(table.to_string()).or_insert_with(|| {
            Maps::create(
                table,
                table,
                dflags::LOCK | dflags::FOLD_FIX | dflags::UTF8_REQUEST,
            )
        });
        let local_check = move |_: &str| -> Result<bool, DictError> { Ok(dom_local) };
        let p = Params {
            split,
            myorigin,
            is_local: &local_check,
        };
        let found = mail_addr_find::mail_addr_find_strategy(m, &r.recipient, &p, bits);
        match found {
            Ok(Some(f)) => {
                let s =
                    self.table_result(st, table, &f.value, &r.recipient, addr, class, def_acl)?;
                Ok(if s == Status::Ok && suspicious {
                    Status::Dunno
                } else {
                    s
                })
            }
            Ok(None) => Ok(Status::Dunno),
            Err(_) => self.table_result(
                st,
                table,
                "451 4.3.5 Server configuration error",
                &r.recipient,
                addr,
                class,
                def_acl,
            ),
        }
    }

    /// check_table_result(): act on an access(5) table value.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn table_result(
        &mut self,
        st: &mut State,
        table: &str,
        value: &str,
        datum: &str,
        reply_name: &str,
        class: &str,
        def_acl: &str,
    ) -> R {
        let cmd_len = value.find([' ', '\t']).unwrap_or(value.len());
        let cmd = &value[..cmd_len];
        let text = value[cmd_len..].trim_start();
        let is = |w: &str| cmd.eq_ignore_ascii_case(w);
        if is("DUNNO") {
            return Ok(Status::Dunno);
        }
        if is("REJECT") || is("DEFER") {
            let (code, def) = if is("REJECT") {
                (self.codes.map_reject, "5.7.1")
            } else {
                (self.codes.map_defer, "4.7.1")
            };
            let (dsn, t) = dsn_split(def, text);
            let dsn = dsn_fix(&dsn, class);
            let t = if t.is_empty() { "Access denied" } else { t };
            return Ok(self.reject(
                st,
                error_class::POLICY,
                code,
                &dsn,
                format!("<{reply_name}>: {class} rejected: {t}"),
            ));
        }
        if is("HANGUP") {
            st.log_whatsup("hangup", text);
            return Err(Status::Reject);
        }
        if is("INFO") || is("WARN") {
            st.log_whatsup(&cmd.to_ascii_lowercase(), text);
            return Ok(Status::Dunno);
        }
        if is("FILTER") {
            if text.is_empty() {
                st.warn(format!(
                    "access table {table} entry \"{datum}\" has FILTER entry without value"
                ));
            } else if !text.contains(':') {
                st.warn(format!(
                    "access table {table} entry \"{datum}\" requires transport:destination"
                ));
            } else {
                st.log_whatsup(
                    "filter",
                    &format!("<{reply_name}>: {class} triggers FILTER {text}"),
                );
                st.saved_filter = Some(text.to_string());
            }
            return Ok(Status::Dunno);
        }
        if is("HOLD") {
            if st.saved_flags & super::sink::flags::HOLD == 0 {
                let t = if text.is_empty() {
                    "triggers HOLD action"
                } else {
                    text
                };
                st.log_whatsup("hold", &format!("<{reply_name}>: {class} {t}"));
                st.saved_flags |= super::sink::flags::HOLD;
            }
            return Ok(Status::Dunno);
        }
        if is("DISCARD") {
            let t = if text.is_empty() {
                "triggers DISCARD action"
            } else {
                text
            };
            st.log_whatsup("discard", &format!("<{reply_name}>: {class} {t}"));
            st.saved_flags |= super::sink::flags::DISCARD;
            st.discard = true;
            return Ok(Status::Ok);
        }
        if is("REDIRECT") || is("BCC") {
            if !text.contains('@') {
                st.warn(format!(
                    "access table {table} entry \"{datum}\" requires user@domain target"
                ));
            } else if is("REDIRECT") {
                st.log_whatsup(
                    "redirect",
                    &format!("<{reply_name}>: {class} triggers REDIRECT {text}"),
                );
                st.saved_redirect = Some(text.to_string());
            } else {
                st.log_whatsup(
                    "bcc",
                    &format!("<{reply_name}>: {class} triggers BCC {text}"),
                );
                st.saved_bcc.push(text.to_string());
            }
            return Ok(Status::Dunno);
        }
        if is("DEFER_IF_PERMIT") || is("DEFER_IF_REJECT") {
            let (dsn, t) = dsn_split("4.7.1", text);
            let dsn = dsn_fix(&dsn, class);
            let t = if t.is_empty() {
                "Service unavailable"
            } else {
                t
            };
            let reason = format!("<{reply_name}>: {class} rejected: {t}");
            let code = self.codes.map_defer;
            let d = if is("DEFER_IF_PERMIT") {
                &mut st.defer_if_permit
            } else {
                &mut st.defer_if_reject
            };
            return Ok(Self::defer_if(d, code, &dsn, reason));
        }
        if is("PREPEND") {
            if class == NAME_CLIENT || class == NAME_HELO {
                // Postfix refuses PREPEND in client/helo restrictions
                // unless smtpd_delay_reject delays them to RCPT time.
                if !self.delay_reject {
                    st.warn(format!("access table {table}: with smtpd_delay_reject = no, action PREPEND is available only for sender, recipient or data restrictions"));
                    return Ok(Status::Dunno);
                }
            }
            if st.where_ == "END-OF-MESSAGE" {
                st.warn(format!("access table {table}: action PREPEND must be used before smtpd_end_of_data_restrictions"));
            } else if text.is_empty() || !is_header(text) {
                st.warn(format!(
                    "access table {table} entry \"{datum}\" requires header: text"
                ));
            } else {
                st.prepend.push(text.to_string());
            }
            return Ok(Status::Dunno);
        }
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Status::Ok);
        }
        let vb = value.as_bytes();
        if cmd_len == 3
            && !text.is_empty()
            && (vb[0] == b'4' || vb[0] == b'5')
            && vb[1].is_ascii_digit()
            && vb[2].is_ascii_digit()
        {
            let code: u32 = cmd.parse().unwrap_or(450);
            let def = if vb[0] == b'4' { "4.7.1" } else { "5.7.1" };
            let (dsn, t) = dsn_split(def, text);
            let dsn = dsn_fix(&dsn, class);
            let t = if t.is_empty() { "Access denied" } else { t };
            return Ok(self.reject(
                st,
                error_class::POLICY,
                code,
                &dsn,
                format!("<{reply_name}>: {class} rejected: {t}"),
            ));
        }
        if is("OK") || is("RELAY") {
            return Ok(Status::Ok);
        }
        if value.contains(':') {
            st.warn(format!(
                "access table {table} has entry with lookup table: {value}"
            ));
            st.warn("do not specify lookup tables inside SMTPD access maps".into());
            st.warn("define a restriction class and specify its name instead.".into());
            return Err(self.server_error(st));
        }
        if st.recursion > 100 {
            st.warn(format!(
                "access table {table} entry {value} causes unreasonable recursion"
            ));
            return Err(self.server_error(st));
        }
        let list = parse_list(value);
        if list.is_empty() {
            st.warn(format!(
                "access table {table} entry {value} has empty value"
            ));
            return Ok(Status::Ok);
        }
        self.generic(st, &list, reply_name, class, def_acl)
    }

    // ----------------------------------------------- recipient table checks

    fn check_recipient_rcpt_maps(&mut self, st: &mut State, rcpt: &str) -> R {
        if st.recipient_rcptmap_checked {
            return Ok(Status::Dunno);
        }
        if st.warn_if_reject == 0 {
            st.recipient_rcptmap_checked = true;
        }
        self.check_rcpt_maps(st, rcpt, NAME_RECIPIENT)
    }

    fn check_sender_rcpt_maps(&mut self, st: &mut State, sender: &str) -> R {
        if st.sender_rcptmap_checked {
            return Ok(Status::Dunno);
        }
        if st.warn_if_reject == 0 {
            st.sender_rcptmap_checked = true;
        }
        self.check_rcpt_maps(st, sender, NAME_SENDER)
    }

    fn addr_find(
        &mut self,
        st: &mut State,
        which: u8,
        addr: &str,
        reply_name: &str,
    ) -> Result<bool, Status> {
        let myorigin = self.myorigin.clone();
        let split = self.split.clone();
        let mydest_local = {
            let r = &mut self.resolver;
            let dom = addr
                .rfind('@')
                .map(|i| addr[i + 1..].to_string())
                .unwrap_or_default();
            r.is_local(&dom)
        };
        let maps = match which {
            0 => self.rcpt_canon_maps.as_mut(),
            1 => self.send_canon_maps.as_mut(),
            2 => self.canonical_maps.as_mut(),
            3 => self.virt_alias_maps.as_mut(),
            4 => self.local_rcpt_maps.as_mut(),
            5 => self.virt_mailbox_maps.as_mut(),
            _ => self.relay_rcpt_maps.as_mut(),
        };
        let Some(m) = maps else { return Ok(false) };
        let local_check = move |_: &str| -> Result<bool, DictError> { Ok(mydest_local) };
        let p = Params {
            split,
            myorigin,
            is_local: &local_check,
        };
        match mail_addr_find::mail_addr_find_int_to_ext(m, addr, &p) {
            Ok(f) => Ok(f.is_some()),
            Err(e) => Err(self.lookup_error(st, &e, reply_name)),
        }
    }

    fn check_rcpt_maps(&mut self, st: &mut State, addr: &str, class: &str) -> R {
        let r = self.resolve(st, addr)?;
        let rr = r.recipient.clone();
        if self.addr_find(st, 0, &rr, addr)?
            || (class == NAME_SENDER && self.addr_find(st, 1, &rr, addr)?)
            || self.addr_find(st, 2, &rr, addr)?
            || self.addr_find(st, 3, &rr, addr)?
        {
            return Ok(Status::Dunno);
        }
        let sender = class == NAME_SENDER;
        if r.transport == "error" {
            let (dsn, t) = dsn_split(if sender { "5.1.0" } else { "5.1.1" }, &r.nexthop);
            let dsn = dsn_fix(&dsn, class);
            let code = if r.flags & rflags::CLASS_ALIAS != 0 {
                self.codes.virt_alias
            } else {
                550
            };
            return Ok(self.reject(
                st,
                error_class::BOUNCE,
                code,
                &dsn,
                format!("<{addr}>: {class} rejected: {t}"),
            ));
        }
        let dsn = if sender { "5.1.0" } else { "5.1.1" };
        let tn = |s: &Self, t: &str| {
            if s.show_unk_rcpt_table {
                format!(" in {t} table")
            } else {
                String::new()
            }
        };
        match r.flags & rflags::CLASS_MASK {
            rflags::CLASS_LOCAL => {
                let lp_is = |who: &str| {
                    rr.len() > who.len()
                        && rr[..who.len()].eq_ignore_ascii_case(who)
                        && rr.as_bytes()[who.len()] == b'@'
                };
                if self.local_rcpt_maps.is_some()
                    && !lp_is(&self.double_bounce_sender.clone())
                    && !lp_is("postmaster")
                    && !lp_is("MAILER-DAEMON")
                    && !self.addr_find(st, 4, &rr, addr)?
                {
                    let c = self.codes.local_rcpt;
                    let t = tn(self, "local recipient");
                    return Ok(self.reject(
                        st,
                        error_class::BOUNCE,
                        c,
                        dsn,
                        format!("<{addr}>: {class} rejected: User unknown{t}"),
                    ));
                }
            }
            rflags::CLASS_VIRTUAL | rflags::CLASS_RELAY => {
                let virt = r.flags & rflags::CLASS_MASK == rflags::CLASS_VIRTUAL;
                let (set, which, c, tname) = if virt {
                    (
                        self.virt_mailbox_maps.is_some(),
                        5,
                        self.codes.virt_mailbox,
                        "virtual mailbox",
                    )
                } else {
                    (
                        self.relay_rcpt_maps.is_some(),
                        6,
                        self.codes.relay_rcpt,
                        "relay recipient",
                    )
                };
                if set && !self.addr_find(st, which, &rr, addr)? {
                    let t = tn(self, tname);
                    return Ok(self.reject(
                        st,
                        error_class::BOUNCE,
                        c,
                        dsn,
                        format!("<{addr}>: {class} rejected: User unknown{t}"),
                    ));
                }
            }
            _ => {}
        }
        Ok(Status::Dunno)
    }

    // ---------------------------------------------------------------- DNSBL

    /// The DNSBL/DNSWL restrictions with their domain argument.
    fn dnsxl_restriction(&mut self, st: &mut State, lname: &str, arg: &str) -> R {
        let known = |n: &str| !n.eq_ignore_ascii_case("unknown");
        Ok(match lname {
            "reject_rbl_client" | "reject_rbl" => {
                let a = st.addr.clone();
                self.reject_rbl_addr(st, arg, &a, NAME_CLIENT)?
            }
            "permit_dnswl_client" => {
                if st.where_ == "RCPT"
                    && let Some(r) = st.recipient.clone()
                    && self.permit_auth_destination(st, &r)? != Status::Ok
                {
                    return Ok(Status::Dunno);
                }
                let a = st.addr.clone();
                match self.find_dnsxl_addr(st, arg, &a) {
                    Dnsxl::Hard => Status::Dunno,
                    Dnsxl::Soft => Self::defer_if(
                        &mut st.defer_if_reject,
                        450,
                        "4.7.1",
                        format!("<{a}>: {NAME_CLIENT} rejected: Service unavailable"),
                    ),
                    Dnsxl::Listed(..) => Status::Ok,
                }
            }
            "reject_rhsbl_client" if known(&st.name) => {
                let n = st.name.clone();
                self.reject_rbl_domain(st, arg, &n, NAME_CLIENT)?
            }
            "permit_rhswl_client" if known(&st.name) => {
                if st.where_ == "RCPT"
                    && let Some(r) = st.recipient.clone()
                    && self.permit_auth_destination(st, &r)? != Status::Ok
                {
                    return Ok(Status::Dunno);
                }
                let n = st.name.clone();
                match self.find_dnsxl_domain(st, arg, &n) {
                    Dnsxl::Hard => Status::Dunno,
                    Dnsxl::Soft => Self::defer_if(
                        &mut st.defer_if_reject,
                        450,
                        "4.7.1",
                        format!("<{n}>: {NAME_CLIENT} rejected: Service unavailable"),
                    ),
                    Dnsxl::Listed(..) => Status::Ok,
                }
            }
            "reject_rhsbl_reverse_client" if known(&st.reverse_name) => {
                let n = st.reverse_name.clone();
                self.reject_rbl_domain(st, arg, &n, NAME_REV_CLIENT)?
            }
            "reject_rhsbl_helo" => match st.helo_name.clone() {
                Some(h) => self.reject_rbl_domain(st, arg, &h, NAME_HELO)?,
                None => Status::Dunno,
            },
            "reject_rhsbl_sender" => match st.sender.clone() {
                Some(s) if !s.is_empty() => self.reject_rbl_domain(st, arg, &s, NAME_SENDER)?,
                _ => Status::Dunno,
            },
            "reject_rhsbl_recipient" => match st.recipient.clone() {
                Some(r) => self.reject_rbl_domain(st, arg, &r, NAME_RECIPIENT)?,
                None => Status::Dunno,
            },
            _ => Status::Dunno,
        })
    }

    /// rbl_pagein() through the per-process cache: the A records of the
    /// query, then its TXT records.
    fn dnsxl_query(&mut self, st: &mut State, query: &str) -> Dnsxl {
        if let Some(hit) = RBL_CACHE.with(|c| {
            c.borrow()
                .iter()
                .find(|(q, _)| q == query)
                .map(|(_, r)| r.clone())
        }) {
            return hit;
        }
        let result = match self.dns.lookup(query, &[RrType::A], false) {
            Err(e) if e.status == DnsStatus::NotFound => Dnsxl::Hard,
            Err(e) => {
                st.warn(format!("{query}: RBL lookup error: {}", e.why));
                Dnsxl::Soft
            }
            Ok(v) => {
                let addrs: Vec<std::net::Ipv4Addr> = v
                    .iter()
                    .filter_map(|r| match r {
                        Rr::Addr(IpAddr::V4(a)) => Some(*a),
                        _ => None,
                    })
                    .collect();
                let txt = match self.dns.lookup(query, &[RrType::Txt], false) {
                    Ok(t) => {
                        const LIMIT: usize = 500;
                        let parts: Vec<&str> = t
                            .iter()
                            .filter_map(|r| match r {
                                Rr::Txt(s) => Some(s.as_str()),
                                _ => None,
                            })
                            .collect();
                        let mut buf = String::new();
                        for (k, part) in parts.iter().enumerate() {
                            let left = LIMIT.saturating_sub(buf.len());
                            if left == 0 {
                                break;
                            }
                            buf.extend(part.chars().take(left));
                            if k + 1 < parts.len() && LIMIT.saturating_sub(buf.len()) > 3 {
                                buf.push_str(" / ");
                            }
                        }
                        Some(buf)
                    }
                    Err(_) => None,
                };
                Dnsxl::Listed(addrs, txt)
            }
        };
        RBL_CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() >= 100 {
                c.remove(0);
            }
            c.push((query.to_string(), result.clone()));
        });
        result
    }

    /// Look up `query` (which may end in `=pattern`) and apply the filter.
    fn dnsxl_find(&mut self, st: &mut State, query: &str) -> Dnsxl {
        let (q, want) = match query.find('=') {
            Some(i) => (&query[..i], Some(&query[i + 1..])),
            None => (query, None),
        };
        match self.dnsxl_query(st, q) {
            Dnsxl::Listed(a, t) => match want {
                Some(w) if !a.iter().any(|x| rbl_match(w, x)) => Dnsxl::Hard,
                _ => Dnsxl::Listed(a, t),
            },
            other => other,
        }
    }

    /// find_dnsxl_addr(): the client address, reversed, under the domain.
    fn find_dnsxl_addr(&mut self, st: &mut State, rbl_domain: &str, addr: &str) -> Dnsxl {
        let Ok(ip) = addr.parse::<IpAddr>() else {
            return Dnsxl::Hard;
        };
        let rev = gdns::reverse_name(ip);
        let prefix = rev
            .strip_suffix("in-addr.arpa")
            .or_else(|| rev.strip_suffix("ip6.arpa"))
            .unwrap_or(&rev);
        let query = format!("{prefix}{rbl_domain}");
        self.dnsxl_find(st, &query)
    }

    /// find_dnsxl_domain(): the domain of a name or address under the
    /// RHSBL domain.
    fn find_dnsxl_domain(&mut self, st: &mut State, rbl_domain: &str, what: &str) -> Dnsxl {
        let domain = match what.rfind('@') {
            Some(i) => {
                let d = &what[i + 1..];
                if d.starts_with('[') {
                    return Dnsxl::Hard;
                }
                d
            }
            None => what,
        };
        if domain.is_empty() {
            return Dnsxl::Hard;
        }
        let last = domain.rsplit('.').next().unwrap_or(domain);
        if last.bytes().all(|b| b.is_ascii_digit()) {
            return Dnsxl::Hard;
        }
        let domain = ascii_domain(domain);
        if domain.is_empty() || !crate::util::valid_hostname::valid_hostname(&domain, false) {
            return Dnsxl::Hard;
        }
        let query = format!("{domain}.{rbl_domain}");
        self.dnsxl_find(st, &query)
    }

    fn reject_rbl_addr(&mut self, st: &mut State, rbl_domain: &str, addr: &str, class: &str) -> R {
        match self.find_dnsxl_addr(st, rbl_domain, addr) {
            Dnsxl::Listed(_, txt) => self.rbl_reject_reply(st, txt, rbl_domain, addr, class),
            _ => Ok(Status::Dunno),
        }
    }

    fn reject_rbl_domain(
        &mut self,
        st: &mut State,
        rbl_domain: &str,
        what: &str,
        class: &str,
    ) -> R {
        match self.find_dnsxl_domain(st, rbl_domain, what) {
            Dnsxl::Listed(_, txt) => self.rbl_reject_reply(st, txt, rbl_domain, what, class),
            _ => Ok(Status::Dunno),
        }
    }

    /// rbl_reject_reply(): the rbl_reply_maps template for the domain (as
    /// written in the restriction), else default_rbl_reply, expanded.
    fn rbl_reject_reply(
        &mut self,
        st: &mut State,
        txt: Option<String>,
        rbl_domain: &str,
        what: &str,
        class: &str,
    ) -> R {
        let mut template = None;
        if let Some(m) = self.rbl_reply_maps.as_mut() {
            match m.find(rbl_domain, 0) {
                Ok(v) => template = v,
                Err(_) => return Err(self.server_error(st)),
            }
        }
        let domain = rbl_domain.split('=').next().unwrap_or("").to_string();
        let txt = txt.unwrap_or_default();
        let code = self.codes.maps_rbl.to_string();
        let filter = self.expand_filter.clone();
        let myhostname = self.myhostname.clone();
        let why = loop {
            let t = template.clone().unwrap_or_else(|| self.rbl_reply.clone());
            let mut extra = |n: &str| -> Option<String> {
                match n {
                    "rbl_code" => Some(code.clone()),
                    "rbl_domain" => Some(domain.clone()),
                    "rbl_reason" | "rbl_txt" => Some(txt.clone()),
                    "rbl_what" => Some(what.to_string()),
                    "rbl_class" => Some(class.to_string()),
                    _ => None,
                }
            };
            match super::expand::expand(&t, &filter, &mut extra, st, &myhostname) {
                Some(w) => break w,
                None => {
                    if template.is_none() {
                        crate::global::msg::fatal(&format!(
                            "rbl_reject_reply: bad default rbl reply template: {}",
                            self.rbl_reply
                        ));
                    }
                    st.warn(format!(
                        "rbl_reject_reply: bad rbl reply template for domain {rbl_domain}: {t}"
                    ));
                    template = None;
                }
            }
        };
        let b = why.as_bytes();
        if b.len() < 4
            || !(b[0] == b'4' || b[0] == b'5')
            || !b[1].is_ascii_digit()
            || !b[2].is_ascii_digit()
            || b[3] != b' '
        {
            st.warn(format!("rbl response code configuration error: {why}"));
            return Ok(self.reject(
                st,
                error_class::POLICY,
                450,
                "4.7.1",
                "Service unavailable".into(),
            ));
        }
        let code: u32 = why[..3].parse().unwrap_or(450);
        let (dsn, text) = dsn_split("4.7.1", &why[4..]);
        let dsn = dsn_fix(&dsn, class);
        let text = if text.is_empty() {
            "Service unavailable".to_string()
        } else {
            text.to_string()
        };
        Ok(self.reject(st, error_class::POLICY, code, &dsn, text))
    }

    // --------------------------------------------- check_*_{mx,ns,a}_access

    /// check_{client,reverse_client_hostname,helo,sender,recipient}_{mx,ns,a}_access.
    fn server_access_restriction(
        &mut self,
        st: &mut State,
        lname: &str,
        name: &str,
        table: &str,
        def_acl: &str,
    ) -> R {
        let (who, rtype) = if let Some(w) = lname.strip_suffix("_mx_access") {
            (w, RrType::Mx)
        } else if let Some(w) = lname.strip_suffix("_ns_access") {
            (w, RrType::Ns)
        } else {
            (lname.strip_suffix("_a_access").unwrap_or(lname), RrType::A)
        };
        let known = |n: &str| !n.eq_ignore_ascii_case("unknown");
        let (target, reply_name, class) = match who {
            "check_client" if known(&st.name) => (st.name.clone(), st.namaddr.clone(), NAME_CLIENT),
            "check_reverse_client_hostname" if known(&st.reverse_name) => (
                st.reverse_name.clone(),
                st.reverse_name.clone(),
                NAME_REV_CLIENT,
            ),
            "check_helo" => match st.helo_name.clone() {
                Some(h) => (h.clone(), h, NAME_HELO),
                None => return Ok(Status::Dunno),
            },
            "check_sender" => match st.sender.clone() {
                Some(s) if !s.is_empty() => (s.clone(), s, NAME_SENDER),
                _ => return Ok(Status::Dunno),
            },
            "check_recipient" => match st.recipient.clone() {
                Some(r) if !r.is_empty() => (r.clone(), r, NAME_RECIPIENT),
                _ => return Ok(Status::Dunno),
            },
            _ => return Ok(Status::Dunno),
        };
        let status =
            self.check_server_access(st, table, &target, rtype, &reply_name, class, def_acl)?;
        self.forbid_allowlist(st, name, status, &target)?;
        Ok(status)
    }

    /// forbid_allowlist(): these restrictions must not return OK.
    fn forbid_allowlist(&mut self, st: &mut State, name: &str, status: Status, target: &str) -> R {
        if !st.discard && status == Status::Ok {
            st.warn(format!("restriction {name} returns OK for {target}"));
            st.warn("this is not allowed for security reasons".into());
            st.warn("use DUNNO instead of OK if you want to make an exception".into());
            return Err(self.server_error(st));
        }
        Ok(Status::Dunno)
    }

    /// check_server_access(): the MX or NS hosts of a domain (or the domain
    /// itself for A), by name then by address, in an access table.
    #[allow(clippy::too_many_arguments)]
    fn check_server_access(
        &mut self,
        st: &mut State,
        table: &str,
        name: &str,
        rtype: RrType,
        reply_name: &str,
        class: &str,
        def_acl: &str,
    ) -> R {
        let domain = match name.rfind('@') {
            Some(i) => &name[i + 1..],
            None => name,
        };
        if let Some(inner) = domain.strip_prefix('[') {
            if rtype != RrType::A && rtype != RrType::Mx {
                return Ok(Status::Dunno);
            }
            let Some(inner) = inner.strip_suffix(']') else {
                return Ok(Status::Dunno);
            };
            if !valid_mailhost_addr(inner) {
                return Ok(Status::Dunno);
            }
            let bare = inner
                .strip_prefix("IPv6:")
                .or_else(|| inner.strip_prefix("ipv6:"))
                .unwrap_or(inner);
            let (s, _) = self.check_addr_access(st, table, bare, reply_name, class, def_acl)?;
            return Ok(s);
        }
        let mut domain = ascii_domain(domain);
        let servers: Vec<String> = if rtype == RrType::A {
            vec![domain.clone()]
        } else {
            let mut res = self.dns.lookup(&domain, &[rtype], false);
            if let Err(e) = &res {
                if e.status == DnsStatus::NullMx {
                    return Ok(Status::Dunno);
                }
                if e.status == DnsStatus::NotFound {
                    if rtype == RrType::Mx {
                        res = Ok(vec![Rr::Host(0, domain.clone())]);
                    } else {
                        // No NS record: try the parent domains.
                        let mut d = domain.clone();
                        let mut exhausted = true;
                        while let Some(k) = d.find('.') {
                            if k + 1 >= d.len() {
                                break;
                            }
                            d = d[k + 1..].to_string();
                            res = self.dns.lookup(&d, &[rtype], false);
                            if !matches!(&res, Err(e) if e.status == DnsStatus::NotFound) {
                                exhausted = false;
                                break;
                            }
                        }
                        domain = if exhausted { name.to_string() } else { d };
                    }
                }
            }
            match res {
                Ok(v) => v
                    .into_iter()
                    .filter_map(|r| match r {
                        Rr::Host(_, h) => Some(h),
                        _ => None,
                    })
                    .collect(),
                Err(e) => {
                    st.warn(format!(
                        "Unable to look up {} host for {domain}: {}",
                        rtype.name(),
                        e.strerror()
                    ));
                    return Ok(Status::Dunno);
                }
            }
        };
        let mut count = 0;
        for server in &servers {
            if valid_hostaddr(server) {
                let (s, found) =
                    self.check_addr_access(st, table, server, reply_name, class, def_acl)?;
                if s != Status::Dunno || found {
                    return Ok(s);
                }
                continue;
            }
            if rtype != RrType::A {
                let (s, found) =
                    self.check_domain_access(st, table, server, reply_name, class, def_acl)?;
                if s != Status::Dunno || found {
                    return Ok(s);
                }
            }
            let addrs = match self.dns.host_addrs(server) {
                Ok(a) => a,
                Err(e) => {
                    if rtype != RrType::A {
                        st.warn(format!(
                            "Unable to look up {} host {server} for {class} {reply_name}: {}",
                            rtype.name(),
                            e.text()
                        ));
                    }
                    continue;
                }
            };
            for a in addrs {
                count += 1;
                if count > self.dns_rr_list_limit {
                    st.warn(format!(
                        "check_server_access: {} server address count limit ({}) exceeded for {class} {reply_name} -- ignoring the remainder",
                        rtype.name(),
                        self.dns_rr_list_limit
                    ));
                    return Ok(Status::Dunno);
                }
                if (a.is_ipv4() && !self.inet_v4) || (a.is_ipv6() && !self.inet_v6) {
                    continue;
                }
                let text = crate::global::hostinfo::format_addr(&a);
                let (s, found) =
                    self.check_addr_access(st, table, &text, reply_name, class, def_acl)?;
                if s != Status::Dunno || found {
                    return Ok(s);
                }
            }
        }
        Ok(Status::Dunno)
    }

    // --------------------------------------------------------- permit_mx_backup

    fn permit_mx_backup(&mut self, st: &mut State, rcpt: &str) -> R {
        let r = self.resolve(st, rcpt)?;
        let Some(i) = r.recipient.rfind('@') else {
            return Ok(Status::Ok);
        };
        let domain = r.recipient[i + 1..].to_string();
        if !self.allow_untrusted_routing && r.flags & rflags::ROUTED != 0 {
            return Ok(Status::Dunno);
        }
        if r.flags & (rflags::CLASS_FINAL | rflags::CLASS_RELAY) != 0 {
            return Ok(Status::Ok);
        }
        if domain.starts_with('[') && domain.ends_with(']') {
            return Ok(Status::Dunno);
        }
        let domain = ascii_domain(&domain);
        let mut mx: Vec<(u16, String)> = match self.dns.lookup(&domain, &[RrType::Mx], false) {
            Ok(v) => v
                .into_iter()
                .filter_map(|r| match r {
                    Rr::Host(p, h) => Some((p, h)),
                    _ => None,
                })
                .collect(),
            Err(e) => {
                if e.status == DnsStatus::Retry {
                    Self::defer_if(
                        &mut st.defer_if_reject,
                        450,
                        "4.4.4",
                        format!(
                            "<{rcpt}>: {NAME_RECIPIENT} rejected: Unable to look up mail exchanger information: {}",
                            e.strerror()
                        ),
                    );
                }
                return Ok(Status::Dunno);
            }
        };
        mx.sort_by_key(|m| m.0);
        let best = mx.first().map(|m| m.0).unwrap_or(0);
        let split = mx.iter().position(|m| m.0 != best).unwrap_or(mx.len());
        let rest: Vec<String> = mx[split..].iter().map(|m| m.1.clone()).collect();
        let primaries: Vec<String> = mx[..split].iter().map(|m| m.1.clone()).collect();
        if self.i_am_mx(st, &primaries, rcpt) {
            return Ok(Status::Dunno);
        }
        if rest.is_empty() || !self.i_am_mx(st, &rest, rcpt) {
            return Ok(Status::Dunno);
        }
        if self.perm_mx_networks.is_some() {
            for h in &primaries {
                if !self.all_auth_mx_addr(st, h, rcpt) {
                    return Ok(Status::Dunno);
                }
            }
        }
        Ok(Status::Ok)
    }

    /// i_am_mx(): one of these hosts is this machine (by name, then by
    /// address).
    fn i_am_mx(&mut self, st: &mut State, hosts: &[String], rcpt: &str) -> bool {
        if hosts.iter().any(|h| self.resolver.is_local(h)) {
            return true;
        }
        for h in hosts {
            match self.dns.host_addrs(h) {
                Err(e) => {
                    Self::defer_if(
                        &mut st.defer_if_reject,
                        450,
                        "4.4.4",
                        format!(
                            "<{rcpt}>: {NAME_RECIPIENT} rejected: Unable to look up mail exchanger host {h}: {}",
                            e.text()
                        ),
                    );
                }
                Ok(addrs) => {
                    for a in addrs {
                        if (a.is_ipv4() && !self.inet_v4) || (a.is_ipv6() && !self.inet_v6) {
                            continue;
                        }
                        if self.resolver.own_addrs.contains(&a) {
                            return true;
                        }
                    }
                }
            }
        }
        false
    }

    /// all_auth_mx_addr(): every address of the host is in
    /// permit_mx_backup_networks.
    fn all_auth_mx_addr(&mut self, st: &mut State, host: &str, rcpt: &str) -> bool {
        let mut types = Vec::new();
        if self.inet_v4 {
            types.push(RrType::A);
        }
        if self.inet_v6 {
            types.push(RrType::Aaaa);
        }
        let addrs = match self.dns.lookup(host, &types, false) {
            Ok(v) => v,
            Err(e) => {
                Self::defer_if(
                    &mut st.defer_if_reject,
                    450,
                    "4.4.4",
                    format!(
                        "<{rcpt}>: {NAME_RECIPIENT} rejected: Unable to look up host {host} as mail exchanger: {}",
                        e.strerror()
                    ),
                );
                return false;
            }
        };
        for r in addrs {
            let Rr::Addr(a) = r else { continue };
            let text = crate::global::hostinfo::format_addr(&a);
            let Some(nets) = self.perm_mx_networks.as_mut() else {
                return true;
            };
            if !nets.matches(&[host, &text]) {
                if nets.error {
                    st.warn(format!(
                        "all_auth_mx_addr: permit_mx_backup_networks lookup error for address {text} for {host}"
                    ));
                    Self::defer_if(
                        &mut st.defer_if_reject,
                        450,
                        "4.4.4",
                        format!(
                            "<{rcpt}>: {NAME_RECIPIENT} rejected: Unable to verify host {host} as mail exchanger"
                        ),
                    );
                }
                return false;
            }
        }
        true
    }
}

/// A domain in ASCII form for DNS queries (IDNA for UTF-8 names).
fn ascii_domain(d: &str) -> String {
    if d.is_ascii() {
        d.to_string()
    } else {
        crate::util::midna::domain_to_ascii(d).unwrap_or_else(|| d.to_string())
    }
}

fn rbl_match(pattern: &str, a: &std::net::Ipv4Addr) -> bool {
    let o = a.octets();
    // Split at dots outside [...] groups.
    let mut parts: Vec<&str> = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in pattern.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            '.' if depth == 0 => {
                parts.push(&pattern[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&pattern[start..]);
    parts.len() == 4
        && parts.iter().zip(o.iter()).all(|(p, b)| {
            if let Some(inner) = p.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
                inner.split(';').any(|r| match r.split_once("..") {
                    Some((lo, hi)) => lo
                        .parse::<u8>()
                        .is_ok_and(|lo| hi.parse::<u8>().is_ok_and(|hi| (lo..=hi).contains(b))),
                    None => r.parse::<u8>() == Ok(*b),
                })
            } else {
                p.parse::<u8>() == Ok(*b)
            }
        })
}

fn valid_hostname_utf8(name: &str, utf8: bool) -> bool {
    valid_hostname(name) || (utf8 && !name.is_ascii() && !name.is_empty())
}

/// Is this `Name: value` (Postfix's is_header)?
pub fn is_header(s: &str) -> bool {
    for (n, c) in s.chars().enumerate() {
        if c == ':' {
            return n > 0;
        }
        if c.is_ascii_control() || c == ' ' || (c as u32) > 126 {
            return false;
        }
    }
    false
}

/// A status code x.y.z (Postfix's dsn_valid).
pub fn dsn_valid(dsn: &str) -> bool {
    let b = dsn.as_bytes();
    if b.is_empty() || !(b[0] == b'2' || b[0] == b'4' || b[0] == b'5') || b.get(1) != Some(&b'.') {
        return false;
    }
    let rest = &dsn[2..];
    let end = rest.find(' ').unwrap_or(rest.len());
    let parts: Vec<&str> = rest[..end].split('.').collect();
    parts.len() == 2
        && parts[0].len() <= 3
        && parts[1].len() <= 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
}

/// Postfix's dsn_split(): a leading `x.y.z ` in the text wins over the default.
pub fn dsn_split<'a>(def: &str, text: &'a str) -> (String, &'a str) {
    let end = text.find([' ', '\t']).unwrap_or(text.len());
    let head = &text[..end];
    if dsn_valid(head) {
        let mut dsn = head.to_string();
        // The class digit follows the default's (reply code decides).
        dsn.replace_range(0..1, &def[0..1]);
        (dsn, text[end..].trim_start())
    } else {
        (def.to_string(), text)
    }
}

/// Postfix's smtpd_dsn_fix(): x.1.y codes suit the address kind.
pub fn dsn_fix(status: &str, class: &str) -> String {
    let b = status.as_bytes();
    if b.len() < 5 || !b[0].is_ascii_digit() || &status[1..4] != ".1." {
        return status.to_string();
    }
    let micro = &status[4..];
    let map: &[(&str, &str, &str)] = &[
        ("1", "4.1.0", "4.1.1"),
        ("2", "4.1.8", "4.1.2"),
        ("3", "4.1.7", "4.1.3"),
        ("4", "4.1.0", "4.1.4"),
        ("5", "4.1.0", "4.1.5"),
        ("6", "4.1.0", "4.1.6"),
        ("7", "4.1.7", "4.1.3"),
        ("8", "4.1.8", "4.1.2"),
    ];
    let ent = map.iter().find(|(m, _, _)| *m == micro);
    let r = if class == NAME_SENDER {
        ent.map(|e| e.1).unwrap_or("4.1.0")
    } else if class == NAME_RECIPIENT {
        ent.map(|e| e.2).unwrap_or("4.1.0")
    } else {
        "4.0.0"
    };
    // The class digit is set from the reply code later (smtpd_check_reject).
    format!("{}{}", &status[0..1], &r[1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_helpers() {
        assert_eq!(
            dsn_split("5.7.1", "4.7.2 go away"),
            ("5.7.2".to_string(), "go away")
        );
        assert_eq!(
            dsn_split("5.7.1", "go away"),
            ("5.7.1".to_string(), "go away")
        );
        assert_eq!(dsn_fix("5.1.1", NAME_SENDER), "5.1.0");
        assert_eq!(dsn_fix("5.1.1", NAME_RECIPIENT), "5.1.1");
        assert_eq!(dsn_fix("5.1.1", NAME_CLIENT), "5.0.0");
        assert_eq!(dsn_fix("5.7.1", NAME_CLIENT), "5.7.1");
        assert!(dsn_valid("4.7.1"));
        assert!(!dsn_valid("4.7"));
        assert!(is_header("X-Foo: bar"));
        assert!(!is_header("X Foo: bar"));
        assert!(rbl_match("127.0.0.[2..11]", &"127.0.0.4".parse().unwrap()));
        assert!(!rbl_match("127.0.0.2", &"127.0.0.4".parse().unwrap()));
    }
}
