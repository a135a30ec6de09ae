//! Replaces trivial-rewrite(8) of Postfix 3.7: address rewriting and
//! resolution, as a library that smtpd, cleanup, qmgr and the other
//! same-privilege components call in-process (DESIGN.md §2), and as the
//! `trivial-rewrite` program that master runs for the `rewrite` service.
//!
//! - Rewriting ([`TrivialRewrite::rewrite`]): an address to the canonical
//!   `user@fqdn` form in the `local` context (myorigin, mydomain) or the
//!   `remote` context (remote_header_rewrite_domain).
//! - Resolution ([`TrivialRewrite::resolve`]): a recipient to (transport,
//!   nexthop, recipient, flags), by its domain's address class: local
//!   (mydestination, inet_interfaces, proxy_interfaces), virtual alias,
//!   virtual mailbox, relay, or default; then transport_maps and
//!   relocated_maps. The `verify` personality uses the address_verify_*
//!   parameters.
//!
//! Trust: addresses come from untrusted mail; they are handled as text and
//! bounded by their own length. Privilege: none needed (the program runs as
//! mail_owner, chrooted when master.cf says so).
//!
//! Parameters: myhostname, mydomain, myorigin, mydestination,
//! inet_interfaces, proxy_interfaces, inet_protocols, swap_bangpath,
//! allow_percent_hack, append_at_myorigin, append_dot_mydomain,
//! remote_header_rewrite_domain, resolve_dequoted_address,
//! resolve_null_domain, resolve_numeric_domain, allow_min_user,
//! empty_address_recipient, virtual_alias_domains, virtual_mailbox_domains,
//! relay_domains, parent_domain_matches_subdomains, local_transport,
//! virtual_transport, relay_transport, default_transport, relayhost,
//! transport_maps, sender_dependent_relayhost_maps,
//! sender_dependent_default_transport_maps,
//! empty_address_relayhost_maps_lookup_key,
//! empty_address_default_transport_maps_lookup_key, relocated_maps,
//! show_user_unknown_table_name, helpful_warnings, smtputf8_enable,
//! recipient_delimiter, owner_request_special, double_bounce_sender, and the
//! address_verify_* counterparts of the transport and relayhost settings.

mod resolve;
pub mod rewrite;
pub mod server;
pub mod transport;

use crate::global::dict::flags;
use crate::global::mail_conf::{ConfError, MailConf};
use crate::global::maps::Maps;
use crate::global::match_list::{self, MatchList};
use crate::global::quote_822_local::{self, SplitParams};
use crate::global::resolve_local::{LookupError, ResolveLocal};
use crate::global::tok822;
use rewrite::{Context, Switches};
use std::cell::RefCell;
use transport::Transport;

/// Final delivery (RESOLVE_FLAG_FINAL).
pub const FLAG_FINAL: u32 = 1 << 0;
/// The local part holds routing operators (RESOLVE_FLAG_ROUTED).
pub const FLAG_ROUTED: u32 = 1 << 1;
/// Bad destination syntax (RESOLVE_FLAG_ERROR).
pub const FLAG_ERROR: u32 = 1 << 2;
/// The request failed: a table lookup error (RESOLVE_FLAG_FAIL); defer.
pub const FLAG_FAIL: u32 = 1 << 3;
/// mydestination, inet_interfaces, proxy_interfaces.
pub const CLASS_LOCAL: u32 = 1 << 8;
/// virtual_alias_domains.
pub const CLASS_ALIAS: u32 = 1 << 9;
/// virtual_mailbox_domains.
pub const CLASS_VIRTUAL: u32 = 1 << 10;
/// relay_domains.
pub const CLASS_RELAY: u32 = 1 << 11;
/// Everything else.
pub const CLASS_DEFAULT: u32 = 1 << 12;
/// The classes where this machine delivers.
pub const CLASS_FINAL: u32 = CLASS_LOCAL | CLASS_ALIAS | CLASS_VIRTUAL;
/// All classes.
pub const CLASS_MASK: u32 = CLASS_FINAL | CLASS_RELAY | CLASS_DEFAULT;

/// The rewriting contexts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewriteContext {
    /// myorigin and mydomain (envelope addresses, local headers).
    Local,
    /// remote_header_rewrite_domain (headers of remote clients' mail).
    Remote,
}

impl RewriteContext {
    /// From the protocol's name (`local`, `remote`).
    pub fn from_name(s: &str) -> Option<RewriteContext> {
        match s {
            "local" => Some(RewriteContext::Local),
            "remote" => Some(RewriteContext::Remote),
            _ => None,
        }
    }
}

/// The resolver personalities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Personality {
    /// Ordinary delivery (`resolve`).
    Regular,
    /// Address verification probes (`verify`): the address_verify_*
    /// transports, relayhost and maps.
    Verify,
}

/// A resolved recipient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolveReply {
    /// The master.cf service to deliver with.
    pub transport: String,
    /// Where it sends to (host, `[host]:port`, domain, or the error text).
    pub nexthop: String,
    /// The recipient in internal form, `user@domain`.
    pub recipient: String,
    /// FLAG_* and CLASS_* bits.
    pub flags: u32,
}

/// A `name = value` parameter, named in messages.
#[derive(Debug, Clone)]
struct Param {
    name: &'static str,
    value: String,
}

/// The parameters one personality resolves with.
struct ResContext {
    local_transport: Param,
    virt_transport: Param,
    relay_transport: Param,
    def_transport: Param,
    snd_def_xport_maps_name: &'static str,
    snd_def_xport_maps: Option<Maps>,
    relayhost: Param,
    snd_relay_maps_name: &'static str,
    snd_relay_maps: Option<Maps>,
    transport_maps_name: &'static str,
    transport: Option<Transport>,
}

/// Domain class lists (shared with the rewriter's compatibility message).
struct Classes {
    local: ResolveLocal,
    virt_alias_doms: Option<MatchList>,
    virt_mailbox_doms: Option<MatchList>,
    relay_domains: Option<MatchList>,
}

impl Classes {
    /// Postfix's resolve_class: the class bit, or -1 on a lookup error.
    fn class_of(&mut self, domain: &str) -> i32 {
        match self.local.resolve_local(domain) {
            Ok(true) => return CLASS_LOCAL as i32,
            Ok(false) => {}
            Err(LookupError) => return -1,
        }
        for (list, class) in [
            (&mut self.virt_alias_doms, CLASS_ALIAS),
            (&mut self.virt_mailbox_doms, CLASS_VIRTUAL),
            (&mut self.relay_domains, CLASS_RELAY),
        ] {
            if let Some(l) = list {
                if l.matches(&[domain]) {
                    return class as i32;
                }
                if l.error {
                    return -1;
                }
            }
        }
        CLASS_DEFAULT as i32
    }
}

/// Everything else resolution reads from main.cf.
struct Settings {
    config_dir: String,
    myhostname: String,
    myorigin: String,
    empty_addr: String,
    resolve_dequoted: bool,
    resolve_nulldom: bool,
    resolve_num_dom: bool,
    allow_min_user: bool,
    show_unk_rcpt_table: bool,
    helpful_warnings: bool,
    smtputf8_enable: bool,
    null_relay_maps_key: String,
    null_def_xport_maps_key: String,
    split: SplitParams,
}

/// The rewriting and resolving engine, built once from main.cf.
pub struct TrivialRewrite {
    switches: Switches,
    local_context: Context,
    remote_context: Context,
    settings: Settings,
    classes: RefCell<Classes>,
    relocated_maps: Option<Maps>,
    regular: ResContext,
    verify: ResContext,
}

const MAP_FLAGS: u32 = flags::LOCK | flags::FOLD_FIX | flags::NO_REGSUB | flags::UTF8_REQUEST;

impl TrivialRewrite {
    /// Read the parameters and open the tables. Table open errors are
    /// handled as the maps module does (fatal, or a surrogate table in a
    /// daemon); parameter errors are returned.
    pub fn new(conf: &MailConf) -> Result<TrivialRewrite, ConfError> {
        let s = |n: &str| conf.lookup_eval(n).map(|v| v.unwrap_or_default());
        let s1 = |n: &'static str| -> Result<Param, ConfError> {
            Ok(Param {
                name: n,
                value: conf.get_str(n, 1, 0)?,
            })
        };
        let s0 = |n: &'static str| -> Result<Param, ConfError> {
            Ok(Param {
                name: n,
                value: s(n)?,
            })
        };
        let b = |n: &str| conf.get_bool(n);
        let compat = conf.compat_warnings()?;
        let mydomain = s("mydomain")?;
        let remote_domain = s("remote_header_rewrite_domain")?;
        let switches = Switches {
            swap_bangpath: b("swap_bangpath")?,
            percent_hack: b("allow_percent_hack")?,
            append_at_myorigin: b("append_at_myorigin")?,
            append_dot_mydomain: b("append_dot_mydomain")?,
            warn_compat_append_dot_mydomain: compat.append_dot_mydomain,
            mydomain: mydomain.clone(),
        };
        let myorigin = conf.myorigin()?;
        let pdms = s("parent_domain_matches_subdomains")?;
        let list = |name: &str, value: String| -> Option<MatchList> {
            (!value.is_empty())
                .then(|| match_list::string_list(name, match_list::FLAG_RETURN, &value))
        };
        let relay_domains = s("relay_domains")?;
        let classes = Classes {
            local: ResolveLocal::new(conf)?,
            virt_alias_doms: list("virtual_alias_domains", s("virtual_alias_domains")?),
            virt_mailbox_doms: list("virtual_mailbox_domains", s("virtual_mailbox_domains")?),
            relay_domains: (!relay_domains.is_empty()).then(|| {
                match_list::domain_list(
                    "relay_domains",
                    match_list::FLAG_RETURN
                        | match_list::match_parent_style(&pdms, "relay_domains"),
                    &relay_domains,
                )
            }),
        };
        let maps = |title: &'static str, value: String| -> Option<Maps> {
            (!value.is_empty()).then(|| Maps::create(title, &value, MAP_FLAGS))
        };
        let transport = |title: &'static str, value: String| -> Option<Transport> {
            (!value.is_empty()).then(|| Transport::new(title, &value, &pdms))
        };
        let regular = ResContext {
            local_transport: s1("local_transport")?,
            virt_transport: s1("virtual_transport")?,
            relay_transport: s1("relay_transport")?,
            def_transport: s1("default_transport")?,
            snd_def_xport_maps_name: "sender_dependent_default_transport_maps",
            snd_def_xport_maps: maps(
                "sender_dependent_default_transport_maps",
                s("sender_dependent_default_transport_maps")?,
            ),
            relayhost: s0("relayhost")?,
            snd_relay_maps_name: "sender_dependent_relayhost_maps",
            snd_relay_maps: maps(
                "sender_dependent_relayhost_maps",
                s("sender_dependent_relayhost_maps")?,
            ),
            transport_maps_name: "transport_maps",
            transport: transport("transport_maps", s("transport_maps")?),
        };
        let verify = ResContext {
            local_transport: s1("address_verify_local_transport")?,
            virt_transport: s1("address_verify_virtual_transport")?,
            relay_transport: s1("address_verify_relay_transport")?,
            def_transport: s1("address_verify_default_transport")?,
            snd_def_xport_maps_name: "address_verify_sender_dependent_default_transport_maps",
            snd_def_xport_maps: maps(
                "address_verify_sender_dependent_default_transport_maps",
                s("address_verify_sender_dependent_default_transport_maps")?,
            ),
            relayhost: s0("address_verify_relayhost")?,
            snd_relay_maps_name: "address_verify_sender_dependent_relayhost_maps",
            snd_relay_maps: maps(
                "address_verify_sender_dependent_relayhost_maps",
                s("address_verify_sender_dependent_relayhost_maps")?,
            ),
            transport_maps_name: "address_verify_transport_maps",
            transport: transport(
                "address_verify_transport_maps",
                s("address_verify_transport_maps")?,
            ),
        };
        let settings = Settings {
            config_dir: conf.config_dir.clone(),
            myhostname: s("myhostname")?,
            myorigin: myorigin.clone(),
            empty_addr: conf.get_str("empty_address_recipient", 1, 0)?,
            resolve_dequoted: b("resolve_dequoted_address")?,
            resolve_nulldom: b("resolve_null_domain")?,
            resolve_num_dom: b("resolve_numeric_domain")?,
            allow_min_user: b("allow_min_user")?,
            show_unk_rcpt_table: b("show_user_unknown_table_name")?,
            helpful_warnings: b("helpful_warnings")?,
            smtputf8_enable: b("smtputf8_enable")?,
            null_relay_maps_key: conf.get_str("empty_address_relayhost_maps_lookup_key", 1, 0)?,
            null_def_xport_maps_key: conf.get_str(
                "empty_address_default_transport_maps_lookup_key",
                1,
                0,
            )?,
            split: SplitParams {
                delimiters: s("recipient_delimiter")?,
                double_bounce_sender: s("double_bounce_sender")?,
                owner_request_special: b("owner_request_special")?,
            },
        };
        Ok(TrivialRewrite {
            switches,
            local_context: Context {
                origin: myorigin,
                domain: mydomain,
            },
            remote_context: Context {
                origin: remote_domain.clone(),
                domain: remote_domain,
            },
            settings,
            classes: RefCell::new(classes),
            relocated_maps: maps("relocated_maps", s("relocated_maps")?),
            regular,
            verify,
        })
    }

    fn context(&self, ctx: RewriteContext) -> &Context {
        match ctx {
            RewriteContext::Local => &self.local_context,
            RewriteContext::Remote => &self.remote_context,
        }
    }

    /// Rewrite one address in external (quoted) form, as the `rewrite`
    /// request does. An empty address stays empty (with a warning, as
    /// Postfix's server logs).
    pub fn rewrite(&self, ctx: RewriteContext, addr: &str) -> String {
        if addr.is_empty() {
            crate::global::msg::warn("rewrite_addr: null address");
            return String::new();
        }
        let mut toks = tok822::scan(addr);
        if toks.is_empty() {
            // Only blanks: Postfix's tree is empty and it would panic; the
            // address stays as it was.
            return addr.to_string();
        }
        self.rewrite_tokens(ctx, &mut toks);
        quote_822_local::quote_822_local(&tok822::internalize(&toks))
    }

    /// Rewrite one address in internal (unquoted) form (Postfix's
    /// rewrite_clnt_internal): quoted, rewritten, unquoted. The empty
    /// address is the empty address.
    pub fn rewrite_internal(&self, ctx: RewriteContext, addr: &str) -> String {
        let ext = quote_822_local::quote_822_local(addr);
        quote_822_local::unquote_822_local(&self.rewrite(ctx, &ext))
    }

    fn rewrite_tokens(&self, ctx: RewriteContext, toks: &mut Vec<tok822::Token>) {
        let c = self.context(ctx);
        rewrite::rewrite_tree(c, &self.switches, toks, &mut |d| {
            self.classes.borrow_mut().class_of(d)
        });
    }

    /// Resolve a recipient (internal form) for `sender` (internal form,
    /// empty for the null sender).
    pub fn resolve(&mut self, personality: Personality, sender: &str, addr: &str) -> ResolveReply {
        resolve::resolve_addr(self, personality, sender, addr)
    }

    /// The address class of a domain: a CLASS_* bit, or `None` when a
    /// table lookup failed (Postfix's resolve_class).
    pub fn resolve_class(&self, domain: &str) -> Option<u32> {
        let c = self.classes.borrow_mut().class_of(domain);
        (c >= 0).then_some(c as u32)
    }

    /// Is this domain local (Postfix's resolve_local)? `None` on a table
    /// error.
    pub fn resolve_local(&self, domain: &str) -> Option<bool> {
        self.classes.borrow_mut().local.resolve_local(domain).ok()
    }
}

/// The flags as Postfix's resolve_clnt test program prints them.
pub fn flag_names(flags: u32) -> String {
    let table = [
        (FLAG_FINAL, "FLAG_FINAL"),
        (FLAG_ROUTED, "FLAG_ROUTED"),
        (FLAG_ERROR, "FLAG_ERROR"),
        (FLAG_FAIL, "FLAG_FAIL"),
        (CLASS_LOCAL, "CLASS_LOCAL"),
        (CLASS_ALIAS, "CLASS_ALIAS"),
        (CLASS_VIRTUAL, "CLASS_VIRTUAL"),
        (CLASS_RELAY, "CLASS_RELAY"),
        (CLASS_DEFAULT, "CLASS_DEFAULT"),
    ];
    let mut out = String::new();
    let mut left = flags;
    for (bit, name) in table {
        if flags & bit != 0 {
            out.push_str(name);
            out.push(' ');
            left &= !bit;
        }
    }
    if left != 0 {
        out.push_str(&format!("Unknown flag 0x{left:x}"));
    }
    out
}
