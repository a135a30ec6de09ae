//! The address classes smtpd needs from trivial-rewrite's resolver: is a
//! recipient local (mydestination, our own address literals), a virtual
//! alias or mailbox domain, a relay domain, or elsewhere; was it routed
//! through us (`user%elsewhere@here`, `elsewhere!user@here`, source routes);
//! and is its syntax valid. Postfix asks the trivial-rewrite daemon; rostfix
//! computes the same answer in process (DESIGN.md §2). Transport maps,
//! relocated maps and sender-dependent transports are not consulted here.

use crate::global::match_list::MatchList;
use std::net::IpAddr;

/// RESOLVE_FLAG_* and RESOLVE_CLASS_* bits.
pub mod rflags {
    pub const ROUTED: u32 = 1 << 1;
    pub const ERROR: u32 = 1 << 2;
    pub const FAIL: u32 = 1 << 3;
    pub const CLASS_LOCAL: u32 = 1 << 8;
    pub const CLASS_ALIAS: u32 = 1 << 9;
    pub const CLASS_VIRTUAL: u32 = 1 << 10;
    pub const CLASS_RELAY: u32 = 1 << 11;
    pub const CLASS_DEFAULT: u32 = 1 << 12;
    pub const CLASS_FINAL: u32 = CLASS_LOCAL | CLASS_ALIAS | CLASS_VIRTUAL;
    pub const CLASS_MASK: u32 = CLASS_FINAL | CLASS_RELAY | CLASS_DEFAULT;
}

/// The resolver's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The recipient after rewriting (always `local@domain`).
    pub recipient: String,
    pub flags: u32,
    /// `local`, `virtual`, `relay`, `smtp`, or `error`.
    pub transport: String,
    pub nexthop: String,
}

/// What the resolver needs from main.cf.
pub struct Resolver {
    pub myhostname: String,
    pub mydestination: MatchList,
    pub relay_domains: MatchList,
    pub virtual_alias_domains: MatchList,
    pub virtual_mailbox_domains: MatchList,
    /// inet_interfaces and proxy_interfaces addresses.
    pub own_addrs: Vec<IpAddr>,
    pub percent_hack: bool,
    pub swap_bangpath: bool,
    pub resolve_dequoted: bool,
    pub resolve_numeric_domain: bool,
    pub resolve_null_domain: bool,
    pub allow_min_user: bool,
    pub show_unk_rcpt_table: bool,
    pub smtputf8_enable: bool,
}

/// Postfix's valid_hostname (DONT_GRIPE).
pub fn valid_hostname(name: &str) -> bool {
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    let mut all_num = true;
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return false;
        }
        if label.starts_with('-') || label.ends_with('-') {
            return false;
        }
        for c in label.chars() {
            if !(c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return false;
            }
            if !c.is_ascii_digit() {
                all_num = false;
            }
        }
    }
    !all_num
}

/// Postfix's valid_hostaddr: an IPv4 or IPv6 address (no brackets).
pub fn valid_hostaddr(addr: &str) -> bool {
    if addr.contains(':') {
        addr.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        valid_ipv4(addr)
    }
}

fn valid_ipv4(addr: &str) -> bool {
    let parts: Vec<&str> = addr.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u32>().is_ok_and(|n| n <= 255)
        })
}

/// Postfix's valid_mailhost_addr: an address, `IPv6:` before IPv6 ones.
pub fn valid_mailhost_addr(addr: &str) -> bool {
    if let Some(v6) = addr
        .strip_prefix("IPv6:")
        .or_else(|| addr.strip_prefix("ipv6:"))
        .or_else(|| {
            addr.get(..5)
                .filter(|p| p.eq_ignore_ascii_case("ipv6:"))
                .map(|_| &addr[5..])
        })
    {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    valid_ipv4(addr)
}

/// Postfix's valid_mailhost_literal: `[address]`.
pub fn valid_mailhost_literal(lit: &str) -> bool {
    lit.len() > 2
        && lit.starts_with('[')
        && lit.ends_with(']')
        && valid_mailhost_addr(&lit[1..lit.len() - 1])
}

fn literal_addr(lit: &str) -> Option<IpAddr> {
    let inner = lit.strip_prefix('[')?.strip_suffix(']')?;
    let inner = if inner.len() > 5 && inner[..5].eq_ignore_ascii_case("ipv6:") {
        &inner[5..]
    } else {
        inner
    };
    inner.parse().ok()
}

/// Split at the last `@` that is not inside a quoted string.
fn split_last_at(addr: &str) -> Option<(&str, &str)> {
    let mut inq = false;
    let mut esc = false;
    let mut pos = None;
    for (i, c) in addr.char_indices() {
        if esc {
            esc = false;
            continue;
        }
        match c {
            '\\' => esc = true,
            '"' => inq = !inq,
            '@' if !inq => pos = Some(i),
            _ => {}
        }
    }
    pos.map(|i| (&addr[..i], &addr[i + 1..]))
}

impl Resolver {
    /// Postfix's resolve_local(): is this domain (or address literal) ours?
    pub fn is_local(&mut self, domain: &str) -> bool {
        let d = domain.strip_suffix('.').unwrap_or(domain);
        if d.is_empty() {
            return false;
        }
        if self.mydestination.matches(&[d]) {
            return true;
        }
        if let Some(ip) = literal_addr(d) {
            return self.own_addrs.contains(&ip);
        }
        false
    }

    /// Resolve an address (internal form) as trivial-rewrite would for smtpd.
    pub fn resolve(&mut self, addr: &str) -> Resolved {
        let mut a = addr.to_string();
        let mut saved_domain: Option<String> = None;
        let mut remote_domain: Option<String> = None;
        let max = addr.len() + 100;
        let mut n = 0;
        loop {
            n += 1;
            if n > max {
                return Resolved {
                    recipient: addr.to_string(),
                    flags: rflags::FAIL,
                    transport: String::new(),
                    nexthop: String::new(),
                };
            }
            // Strip one trailing dot from the domain.
            if let Some((l, d)) = split_last_at(&a)
                && d.len() > 1
                && d.ends_with('.')
                && !d.ends_with("..")
            {
                a = format!("{l}@{}", &d[..d.len() - 1]);
            }
            if self.resolve_null_domain && a.ends_with('@') {
                a.pop();
            }
            if let Some((l, d)) = split_last_at(&a) {
                let (l, d) = (l.to_string(), d.to_string());
                if !d.is_empty() && !self.is_local(&d) {
                    remote_domain = Some(d);
                    a = l;
                    break;
                }
                saved_domain = Some(d);
                a = l;
            }
            // Routing operators in what is left of the local part.
            if split_last_at(&a).is_some() {
                continue;
            }
            if self.swap_bangpath
                && !a.starts_with('"')
                && let Some(i) = a.find('!')
            {
                a = format!("{}@{}", &a[i + 1..], &a[..i]);
                continue;
            }
            if self.percent_hack
                && !a.starts_with('"')
                && let Some(i) = a.rfind('%')
            {
                a = format!("{}@{}", &a[..i], &a[i + 1..]);
                continue;
            }
            if self.resolve_dequoted && a.len() >= 2 && a.starts_with('"') && a.ends_with('"') {
                let inner = unescape(&a[1..a.len() - 1]);
                if inner.contains('@')
                    || (self.percent_hack && inner.contains('%'))
                    || (self.swap_bangpath && inner.contains('!'))
                {
                    a = if let Some(i) = inner.rfind('@') {
                        format!("{}@{}", &inner[..i], &inner[i + 1..])
                    } else if self.percent_hack && inner.contains('%') {
                        let i = inner.rfind('%').unwrap_or(0);
                        format!("{}@{}", &inner[..i], &inner[i + 1..])
                    } else {
                        inner
                    };
                    continue;
                }
            }
            if a.is_empty() || a == "\"\"" {
                a = "MAILER-DAEMON".to_string();
                continue;
            }
            if saved_domain.is_none() {
                saved_domain = Some(self.myhostname.clone());
            }
            break;
        }
        let local_class = remote_domain.is_none();
        let domain = remote_domain
            .or(saved_domain)
            .unwrap_or_else(|| self.myhostname.clone());
        let mut recipient = format!("{a}@{domain}");
        let mut flags = 0;
        let mut rcpt_domain = domain.clone();
        let mut local_class = local_class;
        if rcpt_domain.starts_with('[') {
            if !valid_mailhost_literal(&rcpt_domain) {
                flags |= rflags::ERROR;
            }
        } else if !(valid_hostname(&rcpt_domain) || self.smtputf8_enable && !rcpt_domain.is_ascii())
        {
            if self.resolve_numeric_domain && valid_hostaddr(&rcpt_domain) {
                rcpt_domain = format!("[{rcpt_domain}]");
                recipient = format!("{a}@{rcpt_domain}");
                if self.is_local(&rcpt_domain) {
                    local_class = true;
                }
            } else {
                flags |= rflags::ERROR;
            }
        }
        if flags & rflags::ERROR != 0 {
            return Resolved {
                recipient,
                flags: flags | rflags::CLASS_DEFAULT,
                transport: String::new(),
                nexthop: String::new(),
            };
        }
        let first = recipient.find(['@', '!', '%']).unwrap_or(recipient.len());
        if recipient.get(first + 1..) != Some(rcpt_domain.as_str()) {
            flags |= rflags::ROUTED;
        }
        let (transport, nexthop);
        if local_class {
            flags |= rflags::CLASS_LOCAL;
            transport = "local".to_string();
            nexthop = rcpt_domain.clone();
        } else if self.virtual_alias_domains.matches(&[&rcpt_domain]) {
            flags |= rflags::CLASS_ALIAS;
            transport = "error".to_string();
            nexthop = format!(
                "5.1.1 User unknown{}",
                if self.show_unk_rcpt_table {
                    " in virtual alias table"
                } else {
                    ""
                }
            );
        } else if self.virtual_alias_domains.error {
            flags |= rflags::FAIL;
            transport = String::new();
            nexthop = String::new();
        } else if self.virtual_mailbox_domains.matches(&[&rcpt_domain]) {
            flags |= rflags::CLASS_VIRTUAL;
            transport = "virtual".to_string();
            nexthop = rcpt_domain.clone();
        } else if self.relay_domains.matches(&[&rcpt_domain]) {
            flags |= rflags::CLASS_RELAY;
            transport = "relay".to_string();
            nexthop = rcpt_domain.clone();
        } else if self.relay_domains.error || self.virtual_mailbox_domains.error {
            flags |= rflags::FAIL;
            transport = String::new();
            nexthop = String::new();
        } else {
            flags |= rflags::CLASS_DEFAULT;
            transport = "smtp".to_string();
            nexthop = rcpt_domain.clone();
        }
        if !self.allow_min_user && recipient.starts_with('-') {
            flags |= rflags::ERROR;
        }
        Resolved {
            recipient,
            flags,
            transport,
            nexthop,
        }
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in s.chars() {
        if esc {
            out.push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::global::match_list::{FLAG_PARENT, FLAG_RETURN, domain_list};

    fn r() -> Resolver {
        Resolver {
            myhostname: "mx.example.test".into(),
            mydestination: domain_list("mydestination", FLAG_RETURN, "mx.example.test, localhost"),
            relay_domains: domain_list("relay_domains", FLAG_RETURN | FLAG_PARENT, "relay.test"),
            virtual_alias_domains: domain_list("virtual_alias_domains", FLAG_RETURN, "valias.test"),
            virtual_mailbox_domains: domain_list(
                "virtual_mailbox_domains",
                FLAG_RETURN,
                "vmbox.test",
            ),
            own_addrs: vec!["127.0.0.1".parse().unwrap()],
            percent_hack: true,
            swap_bangpath: true,
            resolve_dequoted: true,
            resolve_numeric_domain: false,
            resolve_null_domain: false,
            allow_min_user: false,
            show_unk_rcpt_table: true,
            smtputf8_enable: true,
        }
    }

    #[test]
    fn classes() {
        let mut r = r();
        let cases: &[(&str, &str, u32)] = &[
            (
                "u@mx.example.test",
                "u@mx.example.test",
                rflags::CLASS_LOCAL,
            ),
            (
                "u@MX.example.test.",
                "u@mx.example.test",
                rflags::CLASS_LOCAL,
            ),
            ("u", "u@mx.example.test", rflags::CLASS_LOCAL),
            ("u@[127.0.0.1]", "u@[127.0.0.1]", rflags::CLASS_LOCAL),
            (
                "u@elsewhere.example",
                "u@elsewhere.example",
                rflags::CLASS_DEFAULT,
            ),
            ("u@sub.relay.test", "u@sub.relay.test", rflags::CLASS_RELAY),
            ("u@valias.test", "u@valias.test", rflags::CLASS_ALIAS),
            ("u@vmbox.test", "u@vmbox.test", rflags::CLASS_VIRTUAL),
            (
                "u%elsewhere.example@mx.example.test",
                "u@elsewhere.example",
                rflags::CLASS_DEFAULT,
            ),
            (
                "elsewhere.example!u@mx.example.test",
                "u@elsewhere.example",
                rflags::CLASS_DEFAULT,
            ),
            (
                "u%elsewhere.example@relay.test",
                "u%elsewhere.example@relay.test",
                rflags::CLASS_RELAY | rflags::ROUTED,
            ),
            (
                "\"u@elsewhere.example\"@localhost",
                "u@elsewhere.example",
                rflags::CLASS_DEFAULT,
            ),
        ];
        for (a, want, fl) in cases {
            let got = r.resolve(a);
            // the recipient keeps the case given, except the dropped dot
            assert_eq!(got.recipient.to_lowercase(), want.to_lowercase(), "{a}");
            assert_eq!(got.flags, *fl, "{a}");
        }
        assert!(r.resolve("u@bad..domain").flags & rflags::ERROR != 0);
        assert!(r.resolve("u@[1.2.3]").flags & rflags::ERROR != 0);
        assert!(valid_hostname("a-b.c_d.example"));
        assert!(!valid_hostname("1.2.3.4"));
        assert!(!valid_hostname("-a.example"));
        assert!(valid_mailhost_literal("[IPv6:::1]"));
    }
}
