//! cleanup's view of the shared table-list code: [`Maps`] keeps Postfix's
//! "maps->error" flag beside `crate::global::maps::Maps`, and
//! [`find_addr`] is the MA_FIND_DEFAULT search
//! (`crate::global::mail_addr_find`) with internal-form input and
//! external-form queries, as cleanup's mail_addr_map and
//! mail_addr_find_to_internal calls use it.

use crate::global::mail_addr_find::{self, Form, Params, strategy};
use crate::global::maps;
use crate::global::quote_822_local::{self as q822, SplitParams};

/// A list of tables searched in order (Postfix's MAPS).
pub struct Maps {
    pub title: String,
    inner: maps::Maps,
    /// Set after a lookup that failed (Postfix's maps->error).
    pub error: bool,
}

impl Maps {
    /// Open every `type:name` in `spec` (comma/space separated).
    pub fn create(title: &str, spec: &str, dict_flags: u32) -> Maps {
        Maps {
            title: title.to_string(),
            inner: maps::Maps::create(title, spec, dict_flags),
            error: false,
        }
    }

    /// Search the tables (pattern tables included). The shared code
    /// reports table problems itself; `_warn` is kept for callers that
    /// collect messages.
    pub fn find(
        &mut self,
        key: &str,
        fixed_only: bool,
        _warn: &mut dyn FnMut(&str),
    ) -> Option<String> {
        let only = if fixed_only {
            crate::global::dict::flags::FIXED
        } else {
            0
        };
        match self.inner.find(key, only) {
            Ok(v) => {
                self.error = false;
                v
            }
            Err(_) => {
                self.error = true;
                None
            }
        }
    }
}

/// Postfix's quote_822_local.
pub fn quote(addr: &str) -> String {
    q822::quote_822_local(addr)
}

/// Postfix's unquote_822_local.
pub fn unquote(mbox: &str) -> String {
    q822::unquote_822_local(mbox)
}

/// What the address search needs from main.cf.
#[derive(Debug, Clone, Default)]
pub struct FindConf {
    pub recipient_delimiter: String,
    pub double_bounce_sender: String,
    pub owner_request_special: bool,
    pub myorigin: String,
    /// mydestination, split (only literal domain names are matched here;
    /// TODO: resolve_local with tables, inet_interfaces, proxy_interfaces).
    pub mydestination: Vec<String>,
}

impl FindConf {
    fn is_local(&self, domain: &str) -> bool {
        domain.eq_ignore_ascii_case(&self.myorigin)
            || self
                .mydestination
                .iter()
                .any(|d| d.eq_ignore_ascii_case(domain))
    }
}

/// Search `maps` for an internal-form address with Postfix's default
/// strategy, queries in external form. Returns the value (external form)
/// and the extension that had to be removed for the match.
pub fn find_addr(
    maps: &mut Maps,
    addr: &str,
    fc: &FindConf,
    _warn: &mut dyn FnMut(&str),
) -> Option<(String, Option<String>)> {
    let is_local = |d: &str| Ok(fc.is_local(d));
    let p = Params {
        split: SplitParams {
            delimiters: fc.recipient_delimiter.clone(),
            double_bounce_sender: fc.double_bounce_sender.clone(),
            owner_request_special: fc.owner_request_special,
        },
        myorigin: fc.myorigin.clone(),
        is_local: &is_local,
    };
    match mail_addr_find::mail_addr_find_opt(
        &mut maps.inner,
        addr,
        &p,
        Form::Internal,
        Form::External,
        Form::External,
        strategy::DEFAULT,
    ) {
        Ok(Some(f)) => {
            maps.error = false;
            Some((f.value, f.extension))
        }
        Ok(None) => {
            maps.error = false;
            None
        }
        Err(_) => {
            maps.error = true;
            None
        }
    }
}
