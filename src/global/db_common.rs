//! Query templates and the `domain` restriction shared by the database
//! clients (Postfix's db_common): `%s` the key, `%u` its local part, `%d`
//! its domain, `%[1-9]` the domain's labels from the right, `%%` a `%`
//! (`%S`, `%U`, `%D` are the same for a query). A key that lacks what the
//! template needs (no domain for `%d`, an empty local part for `%u`, too few
//! labels for `%3`) is not looked up.

use crate::global::cfg_parser::CfgParser;
use crate::global::match_list::{self, MatchList};
use crate::global::msg;

const KEY_DOMAIN: u32 = 1 << 0;
const KEY_USER: u32 = 1 << 1;
const KEY_PARTIAL: u32 = 1 << 4;

/// A parsed query template and the optional domain list.
pub struct DbCommon {
    dict_type: String,
    dict_name: String,
    flags: u32,
    nparts: usize,
    domain: Option<MatchList>,
}

/// What [`DbCommon::check_domain`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainCheck {
    /// Look the key up.
    Yes,
    /// Skip the key (no domain, or a domain not in the list).
    No,
    /// The domain list had a table error.
    Error,
}

impl DbCommon {
    /// Validate a query template (db_common_parse with query=1); an invalid
    /// `%` sequence is fatal with Postfix's text.
    pub fn parse(dict_type: &str, dict_name: &str, format: &str) -> DbCommon {
        let mut c = DbCommon {
            dict_type: dict_type.to_string(),
            dict_name: dict_name.to_string(),
            flags: 0,
            nparts: 0,
            domain: None,
        };
        let b = format.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                i += 1;
                match b.get(i) {
                    Some(b'%') | Some(b's') | Some(b'S') => {}
                    Some(b'u') | Some(b'U') => c.flags |= KEY_USER | KEY_PARTIAL,
                    Some(d @ b'1'..=b'9') => {
                        c.nparts = c.nparts.max((d - b'0') as usize);
                        c.flags |= KEY_DOMAIN | KEY_PARTIAL;
                    }
                    Some(b'd') | Some(b'D') => c.flags |= KEY_DOMAIN | KEY_PARTIAL,
                    _ => msg::fatal(&format!(
                        "db_common_parse: {dict_name}: Invalid query template: {format}"
                    )),
                }
            }
            i += 1;
        }
        c
    }

    /// Read the `domain` parameter (db_common_parse_domain).
    pub fn parse_domain(&mut self, parser: &CfgParser) {
        let list = parser.get_str("domain", Some(""), 0, 0).unwrap_or_default();
        if !list.is_empty() {
            self.domain = Some(match_list::string_list(
                parser.name(),
                match_list::FLAG_RETURN,
                &list,
            ));
        }
    }

    /// Is the key's domain in the `domain` list (when there is one)?
    pub fn check_domain(&mut self, addr: &str) -> DomainCheck {
        let Some(list) = self.domain.as_mut() else {
            return DomainCheck::Yes;
        };
        let Some(at) = addr.rfind('@') else {
            return DomainCheck::No;
        };
        if at == 0 {
            return DomainCheck::No;
        }
        if list.matches(&[&addr[at + 1..]]) {
            DomainCheck::Yes
        } else if list.error {
            DomainCheck::Error
        } else {
            DomainCheck::No
        }
    }

    /// Expand the query template for `value` (the lookup key); `None` when
    /// the key cannot fill the template (db_common_expand without quoting).
    pub fn expand(&self, format: &str, value: &str) -> Option<String> {
        if value.is_empty() {
            msg::warn(&format!(
                "table \"{}:{}\": empty query string -- ignored",
                self.dict_type, self.dict_name
            ));
            return None;
        }
        let domain_at = if self.flags & (KEY_DOMAIN | KEY_USER) != 0 {
            value.rfind('@')
        } else {
            None
        };
        let vdomain = domain_at.map(|i| &value[i + 1..]);
        if (vdomain.is_none_or(str::is_empty) && self.flags & KEY_DOMAIN != 0)
            || (domain_at == Some(0) && self.flags & KEY_USER != 0)
        {
            return None;
        }
        let mut parts: Vec<&str> = Vec::new();
        if self.nparts > 0 {
            parts = vdomain.unwrap_or("").split('.').collect();
            if parts.len() < self.nparts {
                return None;
            }
            if (0..self.nparts).any(|i| parts[parts.len() - i - 1].is_empty()) {
                return None;
            }
        }
        let user = domain_at.map(|i| &value[..i]).unwrap_or(value);
        let mut out = String::new();
        let mut chars = format.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => out.push('%'),
                Some('s') | Some('S') => out.push_str(value),
                Some('u') | Some('U') => out.push_str(user),
                Some('d') | Some('D') => out.push_str(vdomain.unwrap_or("")),
                Some(d @ '1'..='9') => {
                    let n = d as usize - '0' as usize;
                    out.push_str(parts[parts.len() - n]);
                }
                // parse() has rejected anything else.
                _ => {}
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let c = DbCommon::parse("x", "t", "%u.%d.%1.%2.%%");
        assert_eq!(
            c.expand("%u.%d.%1.%2.%%", "a@b.c.d").as_deref(),
            Some("a.b.c.d.d.c.%")
        );
        assert_eq!(c.expand("%u.%d.%1.%2.%%", "a@b"), None);
        assert_eq!(c.expand("%u.%d.%1.%2.%%", "@b.c"), None);
        assert_eq!(c.expand("%u.%d.%1.%2.%%", "a@"), None);
        assert_eq!(c.expand("%u.%d.%1.%2.%%", "a@b..c"), None);
        assert_eq!(
            c.expand("%u.%d.%1.%2.%%", "a@.b.c").as_deref(),
            Some("a..b.c.c.b.%")
        );
        let c = DbCommon::parse("x", "t", "pfx-%s");
        assert_eq!(c.expand("pfx-%s", "Foo").as_deref(), Some("pfx-Foo"));
        let c = DbCommon::parse("x", "t", "%u");
        assert_eq!(c.expand("%u", "nodomain").as_deref(), Some("nodomain"));
        assert_eq!(c.expand("%u", "x@y").as_deref(), Some("x"));
        assert_eq!(c.expand("%u", "@y"), None);
    }
}
