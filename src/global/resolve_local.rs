//! Is a domain this machine's own (Postfix's resolve_local)? A domain is
//! local when `mydestination` lists it, or when it is an address literal
//! `[addr]` (`[IPv6:addr]`) of an interface in `inet_interfaces` or an
//! address in `proxy_interfaces`. One trailing dot is ignored.
//!
//! Also the mail-host address syntax checks that go with it (Postfix's
//! valid_mailhost_addr / valid_mailhost_literal).

use crate::global::hostinfo;
use crate::global::mail_conf::{ConfError, MailConf};
use crate::global::match_list::{self, MatchList};
use crate::util::valid_hostname::{valid_ipv4_hostaddr, valid_ipv6_hostaddr};
use std::net::IpAddr;

/// The address inside a mail-host literal (without the brackets), with an
/// optional `IPv6:` prefix (any case) that selects IPv6 syntax. Returns the
/// bare address when valid.
pub fn valid_mailhost_addr(addr: &str, gripe: bool) -> Option<&str> {
    let bare = match addr.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("IPv6:") => Some(&addr[5..]),
        _ => None,
    };
    match bare {
        Some(b) => valid_ipv6_hostaddr(b, gripe).then_some(b),
        None => valid_ipv4_hostaddr(addr, gripe).then_some(addr),
    }
}

/// `[addr]` with nothing after the `]`, `addr` as [`valid_mailhost_addr`].
pub fn valid_mailhost_literal(addr: &str, gripe: bool) -> bool {
    const ME: &str = "valid_mailhost_literal";
    let warn = |t: String| {
        if gripe {
            crate::global::msg::warn(&t);
        }
    };
    let shown: String = addr.chars().take(100).collect();
    let Some(rest) = addr.strip_prefix('[') else {
        warn(format!("{ME}: '[' expected at start: {shown}"));
        return false;
    };
    let Some(end) = rest.find(']') else {
        warn(format!("{ME}: ']' expected at end: {shown}"));
        return false;
    };
    if end + 1 != rest.len() {
        warn(format!("{ME}: unexpected text after ']': {shown}"));
        return false;
    }
    // MAI_HOSTADDR_STR holds INET6_ADDRSTRLEN (46) bytes with the NUL.
    if end >= 46 {
        warn(format!("{ME}: too much text: {shown}"));
        return false;
    }
    valid_mailhost_addr(&rest[..end], gripe).is_some()
}

/// A mydestination table lookup failed: the caller defers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupError;

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mydestination lookup failure")
    }
}

impl std::error::Error for LookupError {}

/// The lists resolve_local consults, built from main.cf.
pub struct ResolveLocal {
    mydestination: MatchList,
    inet_interfaces: String,
    proxy_interfaces: String,
    families: Vec<i32>,
    /// inet_interfaces and proxy_interfaces addresses, found on first use
    /// (as Postfix's own_inet_addr does).
    addrs: Option<(Vec<IpAddr>, Vec<IpAddr>)>,
}

impl ResolveLocal {
    /// From main.cf: mydestination, inet_interfaces, proxy_interfaces,
    /// inet_protocols.
    pub fn new(conf: &MailConf) -> Result<ResolveLocal, ConfError> {
        let get = |n: &str| conf.lookup_eval(n).map(|v| v.unwrap_or_default());
        let mydest = get("mydestination")?;
        Ok(ResolveLocal {
            mydestination: match_list::string_list(
                "mydestination",
                match_list::FLAG_RETURN,
                &mydest,
            ),
            inet_interfaces: get("inet_interfaces")?,
            proxy_interfaces: get("proxy_interfaces")?,
            families: hostinfo::inet_proto_families(&get("inet_protocols")?),
            addrs: None,
        })
    }

    /// Build from explicit values (tests): the interface addresses are
    /// given instead of being looked up.
    pub fn with_addrs(mydestination: &str, own: Vec<IpAddr>, proxy: Vec<IpAddr>) -> ResolveLocal {
        ResolveLocal {
            mydestination: match_list::string_list(
                "mydestination",
                match_list::FLAG_RETURN,
                mydestination,
            ),
            inet_interfaces: String::new(),
            proxy_interfaces: String::new(),
            families: vec![libc::AF_INET, libc::AF_INET6],
            addrs: Some((own, proxy)),
        }
    }

    fn addrs(&mut self) -> &(Vec<IpAddr>, Vec<IpAddr>) {
        if self.addrs.is_none() {
            let own = hostinfo::own_inet_addr_list(&self.inet_interfaces, &self.families)
                .into_iter()
                .map(|(a, _)| a)
                .collect();
            let mut proxy = Vec::new();
            for host in self
                .proxy_interfaces
                .split([' ', '\t', '\r', '\n', ','])
                .filter(|h| !h.is_empty())
            {
                let found = hostinfo::inet_addr_host(host, &self.families);
                if found.is_empty() {
                    crate::global::msg::fatal(&format!(
                        "config variable proxy_interfaces: host not found: {host}"
                    ));
                }
                proxy.extend(found);
            }
            self.addrs = Some((own, proxy));
        }
        self.addrs.as_ref().expect("set above")
    }

    /// `Ok(true)`: local; `Ok(false)`: remote or malformed; `Err`: a
    /// mydestination table failed (the caller defers).
    pub fn resolve_local(&mut self, domain: &str) -> Result<bool, LookupError> {
        let mut d = domain;
        if d.is_empty() {
            return Ok(false);
        }
        if let Some(s) = d.strip_suffix('.') {
            d = s;
        }
        if d.is_empty() || d.ends_with('.') {
            return Ok(false);
        }
        if self.mydestination.matches(&[d]) {
            return Ok(true);
        }
        if self.mydestination.error {
            return Err(LookupError);
        }
        if d.len() >= 2 && d.starts_with('[') && d.ends_with(']') {
            let inner = &d[1..d.len() - 1];
            if let Some(bare) = valid_mailhost_addr(inner, true)
                && let Ok(ip) = bare.parse::<IpAddr>()
            {
                let fam = if ip.is_ipv4() {
                    libc::AF_INET
                } else {
                    libc::AF_INET6
                };
                if self.families.contains(&fam) {
                    let (own, proxy) = self.addrs();
                    if own.contains(&ip) || proxy.contains(&ip) {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        assert_eq!(valid_mailhost_addr("1.2.3.4", false), Some("1.2.3.4"));
        assert_eq!(valid_mailhost_addr("ipv6:::1", false), Some("::1"));
        assert_eq!(valid_mailhost_addr("::1", false), None);
        assert!(valid_mailhost_literal("[1.2.3.4]", false));
        assert!(valid_mailhost_literal("[IPv6:fe80::1]", false));
        assert!(!valid_mailhost_literal("[1.2.3.4]x", false));
        assert!(!valid_mailhost_literal("[1.2.3]", false));
        assert!(!valid_mailhost_literal("1.2.3.4", false));
    }

    #[test]
    fn local_domains() {
        let own = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        let proxy = vec!["192.0.2.1".parse().unwrap()];
        let mut r = ResolveLocal::with_addrs("example.com, localhost", own, proxy);
        assert_eq!(r.resolve_local("Example.COM"), Ok(true));
        assert_eq!(r.resolve_local("example.com."), Ok(true));
        assert_eq!(r.resolve_local("example.com.."), Ok(false));
        assert_eq!(r.resolve_local("sub.example.com"), Ok(false));
        assert_eq!(r.resolve_local("[127.0.0.1]"), Ok(true));
        assert_eq!(r.resolve_local("[192.0.2.1]"), Ok(true));
        assert_eq!(r.resolve_local("[IPv6:::1]"), Ok(true));
        assert_eq!(r.resolve_local("[192.0.2.2]"), Ok(false));
        assert_eq!(r.resolve_local(""), Ok(false));
        let (res, logs) = crate::global::msg::sandbox(|| r.resolve_local("[1.2.3]"));
        assert_eq!(res.ok(), Some(Ok(false)));
        assert_eq!(
            logs,
            ["warning: valid_ipv4_hostaddr: invalid octet count: 1.2.3"]
        );
    }
}
