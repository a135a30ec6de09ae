//! The address search order for access, virtual and canonical tables
//! (Postfix's mail_addr_find): `user+ext@domain`, `user@domain`, then (for
//! a local domain) `user+ext` and `user`, then `@domain`, and optionally the
//! bare domain and its parents.

use crate::global::dict::{DictError, flags};
use crate::global::maps::Maps;
use crate::global::quote_822_local::{
    FLAG_BARE_LOCALPART, FLAG_DEFAULT, SplitParams, quote_822_local_flags, strip_addr,
    unquote_822_local,
};

/// Address forms (Postfix's MA_FORM_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Unquoted: `aa bb@example`.
    Internal,
    /// Quoted: `"aa bb"@example`.
    External,
    /// Query with the quoted form, then the unquoted form if different.
    ExternalFirst,
    /// Query with the unquoted form, then the quoted form if different.
    InternalFirst,
}

impl Form {
    /// The names Postfix's test driver uses.
    pub fn from_name(s: &str) -> Option<Form> {
        Some(match s {
            "internal" => Form::Internal,
            "external" => Form::External,
            "external-first" => Form::ExternalFirst,
            "internal-first" => Form::InternalFirst,
            _ => return None,
        })
    }
}

/// Search strategy bits (Postfix's MA_FIND_*), tried in this order.
pub mod strategy {
    /// `localpart+ext@domain`.
    pub const FULL: u32 = 1 << 0;
    /// `localpart@domain`, without the extension.
    pub const NOEXT: u32 = 1 << 1;
    /// `localpart+ext`, then `localpart`, when the domain is local.
    pub const LOCALPART_IF_LOCAL: u32 = 1 << 2;
    /// `localpart+ext@`, then `localpart@`, when the domain is local.
    pub const LOCALPART_AT_IF_LOCAL: u32 = 1 << 3;
    /// `@domain`.
    pub const AT_DOMAIN: u32 = 1 << 4;
    /// `domain`.
    pub const DOMAIN: u32 = 1 << 5;
    /// With DOMAIN: `example.com` also matches subdomains.
    pub const PDMS: u32 = 1 << 6;
    /// With DOMAIN: `.example.com` matches subdomains.
    pub const PDDMDS: u32 = 1 << 7;
    /// `localpart@`, whatever the domain.
    pub const LOCALPART_AT: u32 = 1 << 8;
    /// FULL | NOEXT | LOCALPART_IF_LOCAL | AT_DOMAIN.
    pub const DEFAULT: u32 = FULL | NOEXT | LOCALPART_IF_LOCAL | AT_DOMAIN;

    /// Parse `full|noext|...` as Postfix's test driver does.
    pub fn from_names(s: &str) -> Option<u32> {
        let mut m = 0;
        for n in s.split('|').filter(|n| !n.is_empty()) {
            m |= match n.to_ascii_lowercase().as_str() {
                "full" => FULL,
                "noext" => NOEXT,
                "localpart_if_local" => LOCALPART_IF_LOCAL,
                "localpart_at_if_local" => LOCALPART_AT_IF_LOCAL,
                "at_domain" => AT_DOMAIN,
                "domain" => DOMAIN,
                "pdms" => PDMS,
                "pddms" => PDDMDS,
                "localpart_at" => LOCALPART_AT,
                "default" => DEFAULT,
                _ => return None,
            };
        }
        Some(m)
    }
}

/// What the search needs from main.cf.
pub struct Params<'a> {
    /// recipient_delimiter, double_bounce_sender, owner_request_special.
    pub split: SplitParams,
    /// `myorigin`.
    pub myorigin: String,
    /// Is this domain local (Postfix's resolve_local: mydestination,
    /// inet_interfaces, proxy_interfaces)? `Err` defers the search.
    pub is_local: &'a dyn Fn(&str) -> Result<bool, DictError>,
}

/// A successful search: the table's value and, when the match needed the
/// extension to be removed, that extension (with its delimiter, internal
/// form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub value: String,
    pub extension: Option<String>,
}

// Partial keys are looked up in fixed-string tables only, so that regexp
// tables never see a bare `user` or `@domain`.
const FULL_KEY: u32 = 0;
const PARTIAL_KEY: u32 = flags::FIXED;

fn find_addr(
    maps: &mut Maps,
    address: &str,
    only: u32,
    with_domain: bool,
    query: Form,
) -> Result<Option<String>, DictError> {
    let quote = |a: &str| {
        quote_822_local_flags(
            a,
            if with_domain {
                FLAG_DEFAULT
            } else {
                FLAG_DEFAULT | FLAG_BARE_LOCALPART
            },
        )
    };
    match query {
        Form::External | Form::ExternalFirst => {
            let ext = quote(address);
            let r = maps.find(&ext, only)?;
            if r.is_some() || query != Form::ExternalFirst || ext == address {
                return Ok(r);
            }
            maps.find(address, only)
        }
        Form::Internal | Form::InternalFirst => {
            let r = maps.find(address, only)?;
            if r.is_some() || query != Form::InternalFirst {
                return Ok(r);
            }
            let ext = quote(address);
            if ext == address {
                return Ok(None);
            }
            maps.find(&ext, only)
        }
    }
}

/// Look up `full` and then `bare` (the address without its extension) cut
/// after the last `@` (`offs` 1: keep the `@`; 0: local part only).
fn find_local(
    maps: &mut Maps,
    full: &str,
    bare: Option<&(String, String)>,
    offs: usize,
    query: Form,
) -> Result<Option<Found>, DictError> {
    let cut = |a: &str| -> Option<String> { a.rfind('@').map(|i| a[..i + offs].to_string()) };
    let with_domain = offs != 0;
    if let Some(key) = cut(full)
        && let Some(v) = find_addr(maps, &key, PARTIAL_KEY, with_domain, query)?
    {
        return Ok(Some(Found {
            value: v,
            extension: None,
        }));
    }
    if let Some((bare, ext)) = bare
        && let Some(key) = cut(bare)
        && let Some(v) = find_addr(maps, &key, PARTIAL_KEY, with_domain, query)?
    {
        return Ok(Some(Found {
            value: v,
            extension: Some(ext.clone()),
        }));
    }
    Ok(None)
}

/// Search `maps` for `address` (Postfix's mail_addr_find_opt). `Ok(None)`
/// is "not found"; `Err` is a table error (the caller defers).
pub fn mail_addr_find_opt(
    maps: &mut Maps,
    address: &str,
    p: &Params,
    in_form: Form,
    query: Form,
    out_form: Form,
    strategy_bits: u32,
) -> Result<Option<Found>, DictError> {
    use strategy::*;
    let int_addr = if in_form == Form::External {
        unquote_822_local(address)
    } else {
        address.to_string()
    };
    let full = int_addr;
    let bare = if p.split.delimiters.is_empty() || strategy_bits & NOEXT == 0 {
        None
    } else {
        strip_addr(&full, &p.split)
    };
    let mut found: Option<Found> = None;
    if strategy_bits & FULL != 0 {
        found = find_addr(maps, &full, FULL_KEY, true, query)?.map(|v| Found {
            value: v,
            extension: None,
        });
    }
    if found.is_none()
        && let Some((b, ext)) = &bare
        && let Some(v) = find_addr(maps, b, PARTIAL_KEY, true, query)?
    {
        found = Some(Found {
            value: v,
            extension: Some(ext.clone()),
        });
    }
    let at = full.rfind('@');
    if found.is_none()
        && let Some(at) = at
        && strategy_bits & (LOCALPART_IF_LOCAL | LOCALPART_AT_IF_LOCAL) != 0
    {
        let domain = &full[at + 1..];
        // strcasecmp_utf8(): Unicode folding when SMTPUTF8 support is on.
        let same =
            crate::util::casefold::casefold(domain) == crate::util::casefold::casefold(&p.myorigin);
        if same || (p.is_local)(domain)? {
            if strategy_bits & LOCALPART_IF_LOCAL != 0 {
                found = find_local(maps, &full, bare.as_ref(), 0, query)?;
            }
            if found.is_none() && strategy_bits & LOCALPART_AT_IF_LOCAL != 0 {
                found = find_local(maps, &full, bare.as_ref(), 1, query)?;
            }
        }
    }
    if found.is_none()
        && let Some(at) = at
        && strategy_bits & AT_DOMAIN != 0
    {
        found = maps.find(&full[at..], PARTIAL_KEY)?.map(|v| Found {
            value: v,
            extension: None,
        });
    }
    if found.is_none()
        && let Some(at) = at
        && strategy_bits & DOMAIN != 0
    {
        if strategy_bits & PDMS != 0 && strategy_bits & PDDMDS != 0 {
            crate::global::msg::warn(
                "mail_addr_find_opt: do not specify both MA_FIND_PDMS and MA_FIND_PDDMDS",
            );
        }
        let mut name = &full[at + 1..];
        while !name.is_empty() {
            if let Some(v) = maps.find(name, PARTIAL_KEY)? {
                found = Some(Found {
                    value: v,
                    extension: None,
                });
                break;
            }
            if strategy_bits & (PDMS | PDDMDS) == 0 {
                break;
            }
            let Some(dot) = name[1..].find('.').map(|i| i + 1) else {
                break;
            };
            name = if strategy_bits & PDDMDS == 0 {
                &name[dot + 1..]
            } else {
                &name[dot..]
            };
        }
    }
    if found.is_none() && strategy_bits & LOCALPART_AT != 0 && at.is_some() {
        found = find_local(maps, &full, bare.as_ref(), 1, query)?;
    }
    if out_form == Form::Internal
        && let Some(f) = &mut found
    {
        f.value = unquote_822_local(&f.value);
    }
    Ok(found)
}

/// The common form: internal input, external-form query, result as found
/// (Postfix's mail_addr_find_int_to_ext with MA_FIND_DEFAULT).
pub fn mail_addr_find_int_to_ext(
    maps: &mut Maps,
    address: &str,
    p: &Params,
) -> Result<Option<Found>, DictError> {
    mail_addr_find_opt(
        maps,
        address,
        p,
        Form::Internal,
        Form::External,
        Form::External,
        strategy::DEFAULT,
    )
}

/// The legacy form with a strategy (Postfix's mail_addr_find_strategy):
/// external-form query first, then internal form.
pub fn mail_addr_find_strategy(
    maps: &mut Maps,
    address: &str,
    p: &Params,
    strategy_bits: u32,
) -> Result<Option<Found>, DictError> {
    mail_addr_find_opt(
        maps,
        address,
        p,
        Form::Internal,
        Form::ExternalFirst,
        Form::External,
        strategy_bits,
    )
}

#[cfg(test)]
mod tests;
