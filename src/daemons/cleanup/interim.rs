//! Interim helpers until the shared table-list code lands on main.
//!
//! TODO(maps): replace [`Maps`] with `crate::global::maps::Maps` and
//! [`find_addr`] with `crate::global::mail_addr_find::mail_addr_find_opt`
//! (and the quoting with `crate::global::quote_822_local`) once they are
//! merged; this file is deliberately minimal: the table list search, the
//! MA_FIND_DEFAULT search order (user+ext@domain, user@domain, user when
//! the domain is local, @domain) and Postfix's internal/external address
//! forms.

use crate::global::dict::{self, Dict, DictError, OpenMode, flags};
use crate::global::tok822_tree::quote_822_local_flags;

/// A list of tables searched in order (Postfix's MAPS).
pub struct Maps {
    pub title: String,
    dicts: Vec<Result<Box<dyn Dict>, String>>,
    /// Set after a lookup that failed (Postfix's maps->error).
    pub error: bool,
}

impl Maps {
    /// Open every `type:name` in `spec` (comma/space separated).
    pub fn create(title: &str, spec: &str, dict_flags: u32) -> Maps {
        let dicts = spec
            .split([',', ' ', '\t', '\r', '\n'])
            .filter(|s| !s.is_empty())
            .map(|s| {
                dict::registry::dict_open(s, OpenMode::ReadOnly, dict_flags)
                    .map_err(|e| format!("{s} is unavailable. {}", e.0))
            })
            .collect();
        Maps {
            title: title.to_string(),
            dicts,
            error: false,
        }
    }

    /// Search the tables; `fixed_only` skips pattern tables (for partial
    /// keys). Table problems are reported through `warn`.
    pub fn find(
        &mut self,
        key: &str,
        fixed_only: bool,
        warn: &mut dyn FnMut(&str),
    ) -> Option<String> {
        self.error = false;
        if key.is_empty() {
            return None;
        }
        for d in &mut self.dicts {
            match d {
                Err(why) => {
                    warn(why);
                    self.error = true;
                    return None;
                }
                Ok(d) => {
                    if fixed_only && d.flags() & flags::FIXED == 0 {
                        continue;
                    }
                    match d.lookup(key) {
                        Ok(Some(v)) => return Some(v),
                        Ok(None) => {}
                        Err(e) => {
                            let _: &DictError = &e;
                            warn(&format!(
                                "{}:{} lookup error for \"{key}\"",
                                d.type_name(),
                                d.name()
                            ));
                            self.error = true;
                            return None;
                        }
                    }
                }
            }
        }
        None
    }
}

/// Postfix's quote_822_local (8-bit clean).
pub fn quote(addr: &str) -> String {
    quote_822_local_flags(addr, true, false)
}

/// Postfix's unquote_822_local.
pub fn unquote(mbox: &str) -> String {
    let (prefix, start) = if mbox.starts_with('@') {
        match mbox.find(':') {
            Some(c) => (&mbox[..c + 1], c + 1),
            None => ("", 0),
        }
    } else {
        ("", 0)
    };
    let mut dst = String::from(prefix);
    let mut in_quote = false;
    let mut bare_at: Option<(usize, usize)> = None;
    let chars: Vec<(usize, char)> = mbox[start..].char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        if c == '\0' {
            break;
        }
        if c == '"' {
            in_quote = !in_quote;
            i += 1;
            continue;
        } else if c == '@' {
            if !in_quote {
                bare_at = Some((dst.len(), start + pos));
            }
        } else if c == '\\' {
            if i + 1 >= chars.len() {
                i += 1;
                continue;
            }
            i += 1;
            dst.push(chars[i].1);
            i += 1;
            continue;
        }
        dst.push(c);
        i += 1;
    }
    if let Some((dpos, spos)) = bare_at {
        dst.truncate(dpos);
        dst.push_str(&mbox[spos..]);
    }
    dst
}

/// What the address search needs from main.cf.
#[derive(Debug, Clone, Default)]
pub struct FindConf {
    pub recipient_delimiter: String,
    pub myorigin: String,
    /// mydestination, split (only literal domain names are matched here).
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

/// Split `user+ext@domain` into (`user@domain`, `+ext`).
fn strip_ext(addr: &str, delims: &str) -> Option<(String, String)> {
    if delims.is_empty() {
        return None;
    }
    let at = addr.rfind('@').unwrap_or(addr.len());
    let local = &addr[..at];
    let p = local.find(|c| delims.contains(c))?;
    if p == 0 {
        return None;
    }
    Some((
        format!("{}{}", &local[..p], &addr[at..]),
        local[p..].to_string(),
    ))
}

/// Search `maps` for an internal-form address with Postfix's default
/// strategy, queries in external form. Returns the value and the
/// extension that had to be removed for the match.
pub fn find_addr(
    maps: &mut Maps,
    addr: &str,
    fc: &FindConf,
    warn: &mut dyn FnMut(&str),
) -> Option<(String, Option<String>)> {
    let q = |a: &str, bare: bool| quote_822_local_flags(a, true, bare);
    if let Some(v) = maps.find(&q(addr, false), false, warn) {
        return Some((v, None));
    }
    if maps.error {
        return None;
    }
    let bare = strip_ext(addr, &fc.recipient_delimiter);
    if let Some((b, ext)) = &bare {
        if let Some(v) = maps.find(&q(b, false), true, warn) {
            return Some((v, Some(ext.clone())));
        }
        if maps.error {
            return None;
        }
    }
    if let Some(at) = addr.rfind('@') {
        if fc.is_local(&addr[at + 1..]) {
            if let Some(v) = maps.find(&q(&addr[..at], true), true, warn) {
                return Some((v, None));
            }
            if maps.error {
                return None;
            }
            if let Some((b, ext)) = &bare
                && let Some(bat) = b.rfind('@')
            {
                if let Some(v) = maps.find(&q(&b[..bat], true), true, warn) {
                    return Some((v, Some(ext.clone())));
                }
                if maps.error {
                    return None;
                }
            }
        }
        if let Some(v) = maps.find(&addr[at..], true, warn) {
            return Some((v, None));
        }
    }
    None
}
