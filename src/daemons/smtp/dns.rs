//! Next-hop parsing and host lookup for the smtp/lmtp client (Postfix's
//! smtp_parse_destination, smtp_addr.c): `[host]:port`, `host:port`,
//! `inet:host:port`, `unix:/path`; MX lookup unless the host is bracketed
//! (never for LMTP), MX preference order with equal preferences shuffled,
//! then address records; `smtp_host_lookup = dns` goes through the shared
//! hickory resolver of src/global/dns.rs (after /etc/hosts, as before),
//! `native` through the system's getaddrinfo.

use crate::global::deliver_request::Dsn;
use std::net::{IpAddr, ToSocketAddrs};

/// A parsed destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// A UNIX-domain socket path (LMTP).
    Unix(String),
    /// A host (bracketed: no MX lookup) and port.
    Inet {
        host: String,
        port: u16,
        no_mx: bool,
    },
}

/// Well-known service names for ports.
fn service_port(s: &str) -> Option<u16> {
    if let Ok(n) = s.parse::<u16>() {
        return Some(n);
    }
    match s {
        "smtp" => Some(25),
        "lmtp" => Some(24),
        "submission" => Some(587),
        "smtps" | "submissions" => Some(465),
        _ => None,
    }
}

/// Parse a next hop; `def_service` is smtp_tcp_port / lmtp_tcp_port.
pub fn parse_destination(dest: &str, def_service: &str, lmtp: bool) -> Result<Dest, String> {
    let mut d = dest;
    if lmtp && let Some(p) = d.strip_prefix("unix:") {
        return Ok(Dest::Unix(p.to_string()));
    }
    if let Some(rest) = d.strip_prefix("inet:") {
        d = rest;
    }
    let (host, service, bracketed) = if let Some(rest) = d.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| format!("{dest}: missing \"]\""))?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        let service = match after.strip_prefix(':') {
            Some(s) => s,
            None if after.is_empty() => def_service,
            None => return Err(format!("{dest}: garbage after \"]\"")),
        };
        (host.to_string(), service.to_string(), true)
    } else {
        match d.rsplit_once(':') {
            Some((h, s)) if !h.contains(':') => (h.to_string(), s.to_string(), false),
            _ => (d.to_string(), def_service.to_string(), false),
        }
    };
    let service = if service.is_empty() {
        def_service.to_string()
    } else {
        service
    };
    let port = service_port(&service).ok_or_else(|| format!("unknown service: {service}/tcp"))?;
    let host = host
        .strip_prefix("ipv6:")
        .or_else(|| host.strip_prefix("IPv6:"))
        .unwrap_or(&host)
        .to_string();
    Ok(Dest::Inet {
        host,
        port,
        no_mx: bracketed || lmtp,
    })
}

/// One address to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAddr {
    pub name: String,
    pub addr: IpAddr,
    pub pref: u32,
}

/// Lookup settings.
#[derive(Debug, Clone)]
pub struct LookupConf {
    /// Use DNS (hickory).
    pub dns: bool,
    /// Use the system resolver (getaddrinfo, /etc/hosts).
    pub native: bool,
    /// smtp_mx_address_limit (0: unlimited).
    pub mx_address_limit: usize,
    /// Name servers to ask instead of /etc/resolv.conf's (tests).
    pub nameservers: Vec<std::net::SocketAddr>,
}

fn name_error(name: &str, rtype: &str, soft: bool) -> Dsn {
    Dsn::new(
        if soft { "4.4.3" } else { "5.4.4" },
        format!(
            "Host or domain name not found. Name service error for name={name} type={rtype}: {}",
            if soft {
                "Host not found, try again"
            } else {
                "Host not found"
            }
        ),
    )
}

type Resolver = hickory_resolver::Resolver;

/// Run `f` with the resolver for these settings: the process's shared one
/// (src/global/dns.rs), or one for the configured name servers.
fn with_resolver<T>(conf: &LookupConf, f: impl FnOnce(&Resolver) -> T) -> Option<T> {
    if conf.nameservers.is_empty() {
        return crate::global::dns::resolver().map(f);
    }
    let r = crate::global::dns::make_resolver(&conf.nameservers)?;
    Some(f(&r))
}

/// How a hickory lookup failed: Some(true) no such name, Some(false) no
/// records of that type, None anything else (server failure, timeout).
fn miss_kind(e: &hickory_resolver::error::ResolveError) -> Option<bool> {
    use hickory_resolver::error::ResolveErrorKind;
    use hickory_resolver::proto::op::ResponseCode;
    match e.kind() {
        ResolveErrorKind::NoRecordsFound { response_code, .. } => {
            Some(*response_code == ResponseCode::NXDomain)
        }
        _ => None,
    }
}

/// The hosts file as last read, with the size and modification time it
/// had then.
type HostsCache = Option<(u64, std::time::SystemTime, String)>;

static HOSTS: std::sync::Mutex<HostsCache> = std::sync::Mutex::new(None);

/// /etc/hosts's addresses for a name. The file is read again only when its
/// size or modification time changed (one stat per lookup instead of an
/// open and reads, for a relay host named in every delivery request).
fn hosts_file_addrs(host: &str) -> Vec<IpAddr> {
    const PATH: &str = "/etc/hosts";
    let meta = std::fs::metadata(PATH)
        .ok()
        .and_then(|m| Some((m.len(), m.modified().ok()?)));
    let mut c = HOSTS.lock().unwrap_or_else(|e| e.into_inner());
    match (meta, c.as_ref()) {
        (Some((len, mtime)), Some((l, t, _))) if *l == len && *t == mtime => {}
        (Some((len, mtime)), _) => {
            let text = std::fs::read_to_string(PATH).unwrap_or_default();
            *c = Some((len, mtime, text));
        }
        (None, _) => {
            *c = None;
            return Vec::new();
        }
    }
    let text = c.as_ref().map(|x| x.2.as_str()).unwrap_or("");
    crate::global::dns::hosts_addrs(text, host)
}

/// The addresses of one host, in the order found.
pub fn host_addrs(host: &str, pref: u32, conf: &LookupConf) -> Result<Vec<HostAddr>, Dsn> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![HostAddr {
            name: ip.to_string(),
            addr: ip,
            pref,
        }]);
    }
    let mut why = name_error(host, "A", false);
    if conf.dns {
        // /etc/hosts first, as hickory's own hosts file did.
        let from_file = hosts_file_addrs(host);
        if !from_file.is_empty() {
            return Ok(from_file
                .into_iter()
                .map(|addr| HostAddr {
                    name: host.to_string(),
                    addr,
                    pref,
                })
                .collect());
        }
        match with_resolver(conf, |r| r.lookup_ip(host)) {
            Some(Ok(l)) => {
                let v: Vec<HostAddr> = l
                    .iter()
                    .map(|addr| HostAddr {
                        name: host.to_string(),
                        addr,
                        pref,
                    })
                    .collect();
                if !v.is_empty() {
                    return Ok(v);
                }
            }
            Some(Err(e)) if miss_kind(&e).is_some() => {}
            _ => why = name_error(host, "A", true),
        }
    }
    if conf.native
        && let Ok(it) = (host, 0u16).to_socket_addrs()
    {
        let mut v: Vec<HostAddr> = Vec::new();
        for sa in it {
            if !v.iter().any(|h| h.addr == sa.ip()) {
                v.push(HostAddr {
                    name: host.to_string(),
                    addr: sa.ip(),
                    pref,
                });
            }
        }
        if !v.is_empty() {
            return Ok(v);
        }
    }
    Err(why)
}

/// Shuffle a list in place (Postfix randomises addresses before sorting
/// them by preference, so equal preferences come out in random order).
pub fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let j = (seed % ((i + 1) as u64)) as usize;
        v.swap(i, j);
    }
}

/// What a domain lookup found: the addresses, and warnings to log.
pub type Found = (Vec<HostAddr>, Vec<String>);

/// The addresses for a domain: MX hosts by preference (equal preferences
/// in random order), or the domain's own addresses when it has no MX
/// record (or with `no_mx`).
pub fn domain_addrs(domain: &str, no_mx: bool, conf: &LookupConf) -> Result<Found, Dsn> {
    let mut warnings = Vec::new();
    let mut out = if no_mx || !conf.dns || domain.parse::<IpAddr>().is_ok() {
        host_addrs(domain, 0, conf)?
    } else {
        let mx = with_resolver(conf, |r| {
            r.mx_lookup(domain).map(|l| {
                l.iter()
                    .map(|m| {
                        (
                            m.preference() as u32,
                            m.exchange().to_utf8().trim_end_matches('.').to_string(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        });
        match mx {
            Some(Ok(hosts)) if !hosts.is_empty() => {
                if hosts.iter().any(|(_, h)| h.is_empty()) {
                    return Err(Dsn::new(
                        "5.1.0",
                        format!("Domain {domain} does not accept mail (nullMX)"),
                    ));
                }
                let mut v = Vec::new();
                let mut last_err = None;
                for (pref, h) in hosts {
                    match host_addrs(&h, pref, conf) {
                        Ok(a) => v.extend(a),
                        Err(e) => last_err = Some(e),
                    }
                }
                if v.is_empty() {
                    warnings.push(format!(
                        "warning: no MX host for {domain} has a valid address record"
                    ));
                    return Err(last_err.unwrap_or_else(|| name_error(domain, "MX", true)));
                }
                let seed = crate::global::deliver_request::now().1 as u64 | 1;
                shuffle(&mut v, seed);
                v.sort_by_key(|h| h.pref);
                v
            }
            Some(Ok(_)) => host_addrs(domain, 0, conf)?,
            Some(Err(e)) if miss_kind(&e).is_some() => host_addrs(domain, 0, conf)?,
            _ => return Err(name_error(domain, "MX", true)),
        }
    };
    if conf.mx_address_limit > 0 {
        out.truncate(conf.mx_address_limit);
    }
    Ok((out, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        let p = |d: &str| parse_destination(d, "smtp", false).unwrap();
        assert_eq!(
            p("[127.0.0.1]:2525"),
            Dest::Inet {
                host: "127.0.0.1".into(),
                port: 2525,
                no_mx: true
            }
        );
        assert_eq!(
            p("example.com"),
            Dest::Inet {
                host: "example.com".into(),
                port: 25,
                no_mx: false
            }
        );
        assert_eq!(
            p("inet:mx.example.com:submission"),
            Dest::Inet {
                host: "mx.example.com".into(),
                port: 587,
                no_mx: false
            }
        );
        assert_eq!(
            p("[ipv6:::1]"),
            Dest::Inet {
                host: "::1".into(),
                port: 25,
                no_mx: true
            }
        );
        assert_eq!(
            parse_destination("unix:private/dovecot-lmtp", "lmtp", true).unwrap(),
            Dest::Unix("private/dovecot-lmtp".into())
        );
        assert_eq!(
            parse_destination("localhost", "lmtp", true).unwrap(),
            Dest::Inet {
                host: "localhost".into(),
                port: 24,
                no_mx: true
            }
        );
        assert!(parse_destination("[x", "smtp", false).is_err());
    }

    #[test]
    fn shuffle_keeps_preference_order() {
        let mut v: Vec<(u32, u32)> = (0..20).map(|i| (i / 5, i)).collect();
        shuffle(&mut v, 12345);
        v.sort_by_key(|x| x.0);
        for (i, x) in v.iter().enumerate() {
            assert_eq!(x.0, (i / 5) as u32);
        }
        let mut ids: Vec<u32> = v.iter().map(|x| x.1).collect();
        ids.sort();
        assert_eq!(ids, (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn numeric_and_hosts_file() {
        let c = LookupConf {
            dns: true,
            native: false,
            mx_address_limit: 5,
            nameservers: vec![],
        };
        let v = host_addrs("127.0.0.1", 0, &c).unwrap();
        assert_eq!(v[0].addr, "127.0.0.1".parse::<IpAddr>().unwrap());
        // /etc/hosts has localhost on every machine this runs on.
        let v = domain_addrs("localhost", true, &c).unwrap().0;
        assert!(v.iter().any(|h| h.addr.is_loopback()), "{v:?}");
    }
}
