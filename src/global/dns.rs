//! DNS and host-name lookups shared by smtp and smtpd, through
//! hickory-resolver, with the outcomes Postfix's own layers give:
//!
//! - [`lookup`] / [`lookup_types`] are Postfix's dns_lookup() and
//!   dns_lookup_l(): the DNS only (no /etc/hosts), with the statuses
//!   DNS_OK / NOTFOUND / RETRY / FAIL / NULLMX and the "why" texts.
//! - [`host_addrs`] and [`addr_name`] are what getaddrinfo() and
//!   getnameinfo() give a Postfix program on Debian (nsswitch `files dns`):
//!   /etc/hosts first, then A/AAAA or PTR records, with the gai error texts.
//!
//! [`lookup`] is a small synchronous stub resolver, as libc's res_query():
//! hickory-proto builds and parses the messages, the name servers,
//! timeout and attempts come from /etc/resolv.conf through hickory's
//! parser, UDP first and TCP when the answer is truncated, the next server
//! after SERVFAIL/REFUSED, no cache, no threads. hickory-resolver's own
//! lookup is not used here because it answers every 127.0.0.0/8 PTR query
//! and every "localhost" query itself (RFC 6761), where libc asks the DNS:
//! a client at 127.0.0.2 would become "localhost" and then "forged".
//! [`resolver`] is the shared hickory resolver the smtp client uses (made
//! on first use, after a daemon's privilege drop and chroot, without
//! hickory's cache and hosts file).
//!
//! Test hooks (environment, rostfix-only): `ROSTFIX_DNS_SERVER=IP:PORT[,..]`
//! replaces resolv.conf's name servers (and uses a 2 s timeout, one
//! attempt); `ROSTFIX_HOSTS_FILE=PATH` replaces /etc/hosts.

use crate::util::valid_hostname::{valid_hostaddr, valid_hostname_flags};
use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_resolver::Resolver;
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Record types the mail programs ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RrType {
    A,
    Aaaa,
    Mx,
    Ns,
    Txt,
    Ptr,
}

impl RrType {
    /// Postfix's dns_strtype().
    pub fn name(self) -> &'static str {
        match self {
            RrType::A => "A",
            RrType::Aaaa => "AAAA",
            RrType::Mx => "MX",
            RrType::Ns => "NS",
            RrType::Txt => "TXT",
            RrType::Ptr => "PTR",
        }
    }
    fn hickory(self) -> RecordType {
        match self {
            RrType::A => RecordType::A,
            RrType::Aaaa => RecordType::AAAA,
            RrType::Mx => RecordType::MX,
            RrType::Ns => RecordType::NS,
            RrType::Txt => RecordType::TXT,
            RrType::Ptr => RecordType::PTR,
        }
    }
}

/// One answer record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rr {
    /// A or AAAA.
    Addr(IpAddr),
    /// MX (preference, host), NS and PTR (preference 0, host); host
    /// without the trailing dot, "" for a null MX.
    Host(u16, String),
    /// TXT: the character strings, concatenated.
    Txt(String),
}

/// Postfix's DNS_* lookup statuses that are not DNS_OK, in Postfix's
/// order (a later one is "better" when several types are asked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DnsStatus {
    /// NXDOMAIN or no data (h_errno HOST_NOT_FOUND / NO_DATA).
    NotFound,
    /// A null MX record.
    NullMx,
    /// A non-recoverable server answer (REFUSED, FORMERR ...).
    Fail,
    /// A malformed reply.
    Inval,
    /// SERVFAIL, timeout, no server reachable: try again later.
    Retry,
}

/// Why a lookup gave no records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsError {
    pub status: DnsStatus,
    /// NXDOMAIN (rather than no data), for NotFound.
    pub nxdomain: bool,
    /// Postfix's "why" text.
    pub why: String,
}

impl DnsError {
    /// Postfix's dns_strerror(h_errno) text for this outcome.
    pub fn strerror(&self) -> &'static str {
        match self.status {
            DnsStatus::NotFound if self.nxdomain => "Host not found",
            DnsStatus::NotFound | DnsStatus::NullMx => {
                "Host found but no data record of requested type"
            }
            DnsStatus::Retry => "Host not found, try again",
            DnsStatus::Fail | DnsStatus::Inval => "Non-recoverable error",
        }
    }
}

/// getaddrinfo()/getnameinfo() errors (glibc's EAI_* values that occur).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AiError {
    /// EAI_NONAME.
    NoName,
    /// EAI_NODATA: the name exists without address records.
    NoData,
    /// EAI_AGAIN.
    Again,
    /// EAI_FAIL.
    Fail,
}

impl AiError {
    /// glibc's gai_strerror() text.
    pub fn text(self) -> &'static str {
        match self {
            AiError::NoName => "Name or service not known",
            AiError::NoData => "No address associated with hostname",
            AiError::Again => "Temporary failure in name resolution",
            AiError::Fail => "Non-recoverable failure in name resolution",
        }
    }
    /// A temporary error (Postfix's TEMP_AI_ERROR).
    pub fn is_temp(self) -> bool {
        self == AiError::Again
    }
}

/// The name servers of the test hook, if set.
pub fn server_override() -> Option<Vec<SocketAddr>> {
    let v = std::env::var("ROSTFIX_DNS_SERVER").ok()?;
    let list: Vec<SocketAddr> = v
        .split([',', ' '])
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    (!list.is_empty()).then_some(list)
}

/// A resolver asking these servers (empty: resolv.conf's).
pub fn make_resolver(servers: &[SocketAddr]) -> Option<Resolver> {
    let (config, mut opts) = if servers.is_empty() {
        hickory_resolver::system_conf::read_system_conf().unwrap_or_else(|_| {
            (
                ResolverConfig::from_parts(None, vec![], NameServerConfigGroup::new()),
                ResolverOpts::default(),
            )
        })
    } else {
        let mut group = NameServerConfigGroup::new();
        for ns in servers {
            group.merge(NameServerConfigGroup::from_ips_clear(
                &[ns.ip()],
                ns.port(),
                true,
            ));
        }
        let mut opts = ResolverOpts::default();
        opts.attempts = 1;
        opts.timeout = std::time::Duration::from_secs(2);
        (ResolverConfig::from_parts(None, vec![], group), opts)
    };
    opts.cache_size = 0;
    opts.use_hosts_file = false;
    opts.preserve_intermediates = true;
    Resolver::new(config, opts).ok()
}

static RESOLVER: OnceLock<Option<Resolver>> = OnceLock::new();

/// The process's resolver (made on first use).
pub fn resolver() -> Option<&'static Resolver> {
    RESOLVER
        .get_or_init(|| make_resolver(&server_override().unwrap_or_default()))
        .as_ref()
}

fn absolute(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

fn why_text(name: &str, t: RrType, e: &DnsError) -> String {
    format!(
        "Host or domain name not found. Name service error for name={name} type={}: {}",
        t.name(),
        e.strerror()
    )
}

fn error(name: &str, t: RrType, status: DnsStatus, nxdomain: bool) -> DnsError {
    let mut e = DnsError {
        status,
        nxdomain,
        why: String::new(),
    };
    e.why = why_text(name, t, &e);
    e
}

/// Where and how the stub resolver asks.
struct StubConf {
    servers: Vec<SocketAddr>,
    timeout: Duration,
    attempts: usize,
}

static STUB: OnceLock<StubConf> = OnceLock::new();

fn stub_conf() -> &'static StubConf {
    STUB.get_or_init(|| {
        if let Some(servers) = server_override() {
            return StubConf {
                servers,
                timeout: Duration::from_secs(2),
                attempts: 1,
            };
        }
        // libc's defaults: 127.0.0.1, 5 s, 2 attempts.
        let mut conf = StubConf {
            servers: vec![SocketAddr::from(([127, 0, 0, 1], 53))],
            timeout: Duration::from_secs(5),
            attempts: 2,
        };
        if let Ok((config, opts)) = hickory_resolver::system_conf::read_system_conf() {
            let mut servers: Vec<SocketAddr> = Vec::new();
            for ns in config.name_servers() {
                if !servers.contains(&ns.socket_addr) {
                    servers.push(ns.socket_addr);
                }
            }
            if !servers.is_empty() {
                conf.servers = servers;
            }
            conf.timeout = opts.timeout;
            conf.attempts = opts.attempts.max(1);
        }
        conf
    })
}

/// One exchange with one server: UDP, then TCP if truncated. None on a
/// timeout or network error.
fn exchange(server: SocketAddr, query: &[u8], id: u16, timeout: Duration) -> Option<Message> {
    use std::io::{Read, Write};
    let bind: SocketAddr = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let sock = std::net::UdpSocket::bind(bind).ok()?;
    sock.connect(server).ok()?;
    sock.send(query).ok()?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65535];
    let reply = loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        let n = sock.recv(&mut buf).ok()?;
        match Message::from_vec(&buf[..n]) {
            Ok(m) if m.id() == id && m.message_type() == MessageType::Response => break m,
            _ => continue,
        }
    };
    if !reply.truncated() {
        return Some(reply);
    }
    let left = deadline
        .checked_duration_since(Instant::now())
        .unwrap_or(Duration::from_millis(1))
        .max(timeout / 2);
    let mut s = std::net::TcpStream::connect_timeout(&server, left).ok()?;
    s.set_read_timeout(Some(left)).ok()?;
    s.set_write_timeout(Some(left)).ok()?;
    let mut out = (query.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(query);
    s.write_all(&out).ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut data = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut data).ok()?;
    Message::from_vec(&data).ok().filter(|m| m.id() == id)
}

/// res_query(): ask the servers in turn until one answers with something
/// other than SERVFAIL/REFUSED/NOTIMP. Err(()) when none did.
fn res_query(name: &str, t: RrType) -> Result<Message, ()> {
    let conf = stub_conf();
    let qname = Name::from_ascii(absolute(name)).map_err(|_| ())?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let id = ((nanos ^ (std::process::id() << 7)) & 0xffff) as u16;
    let mut msg = Message::new();
    msg.set_id(id);
    msg.set_message_type(MessageType::Query);
    msg.set_recursion_desired(true);
    msg.add_query(Query::query(qname, t.hickory()));
    let query = msg.to_vec().map_err(|_| ())?;
    for _ in 0..conf.attempts {
        for &server in &conf.servers {
            if let Some(reply) = exchange(server, &query, id, conf.timeout) {
                match reply.response_code() {
                    ResponseCode::ServFail | ResponseCode::Refused | ResponseCode::NotImp => {
                        continue;
                    }
                    _ => return Ok(reply),
                }
            }
        }
    }
    Err(())
}

/// Postfix's dns_lookup() for one type: the DNS only.
pub fn lookup(name: &str, t: RrType) -> Result<Vec<Rr>, DnsError> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    if valid_hostaddr(bare, false) || (name != "." && !valid_hostname_flags(bare, false, true)) {
        return Err(DnsError {
            status: DnsStatus::NotFound,
            nxdomain: true,
            why: format!("Name service error for {name}: invalid host or domain name"),
        });
    }
    let Ok(reply) = res_query(bare, t) else {
        return Err(error(name, t, DnsStatus::Retry, false));
    };
    match reply.response_code() {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return Err(error(name, t, DnsStatus::NotFound, true)),
        _ => return Err(error(name, t, DnsStatus::Fail, false)),
    }
    let mut out = Vec::new();
    for rec in reply.answers() {
        if rec.record_type() != t.hickory() {
            continue;
        }
        let Some(d) = rec.data() else { continue };
        let host = |n: &Name| n.to_utf8().trim_end_matches('.').to_string();
        match d {
            RData::A(a) => out.push(Rr::Addr(IpAddr::V4(a.0))),
            RData::AAAA(a) => out.push(Rr::Addr(IpAddr::V6(a.0))),
            RData::MX(m) => out.push(Rr::Host(m.preference(), host(m.exchange()))),
            RData::NS(n) => out.push(Rr::Host(0, host(&n.0))),
            RData::PTR(p) => out.push(Rr::Host(0, host(&p.0))),
            RData::TXT(txt) => {
                let mut s = String::new();
                for part in txt.txt_data() {
                    s.push_str(&crate::util::latin1::decode(part));
                }
                out.push(Rr::Txt(s));
            }
            _ => {}
        }
    }
    if out.is_empty() {
        return Err(error(name, t, DnsStatus::NotFound, false));
    }
    if t == RrType::Mx
        && out
            .iter()
            .any(|r| matches!(r, Rr::Host(_, h) if h.is_empty()))
    {
        return Err(DnsError {
            status: DnsStatus::NullMx,
            nxdomain: false,
            why: format!("Domain {name} does not accept mail (nullMX)"),
        });
    }
    Ok(out)
}

/// Postfix's dns_lookup_l(): several types in turn, all records found;
/// with `stop_ok` the first type that has records ends the search. On
/// failure, the "best" status (Postfix's ordering) with its text.
pub fn lookup_types(name: &str, types: &[RrType], stop_ok: bool) -> Result<Vec<Rr>, DnsError> {
    let mut out = Vec::new();
    let mut best: Option<DnsError> = None;
    for &t in types {
        match lookup(name, t) {
            Ok(v) => {
                out.extend(v);
                if stop_ok {
                    break;
                }
            }
            Err(e) => {
                if e.status == DnsStatus::NullMx {
                    return Err(e);
                }
                if best.as_ref().is_none_or(|b| e.status >= b.status) {
                    best = Some(e);
                }
            }
        }
    }
    if out.is_empty() {
        Err(best.unwrap_or_else(|| error(name, RrType::A, DnsStatus::NotFound, false)))
    } else {
        Ok(out)
    }
}

// ------------------------------------------------------------ hosts file

/// The hosts file's text. The last text read is kept with the file's
/// identity (device, inode, size, modification and change times) and used
/// again while one stat(2) says the file is the same: smtpd looks its
/// client up twice per connection (name, then address), and reading the
/// file both times cost five system calls each.
fn hosts_text() -> std::sync::Arc<str> {
    let pinned = HOSTS_PIN.with(|p| p.borrow().clone());
    match pinned {
        Some(Some(text)) => text,
        Some(None) => {
            let text = hosts_text_now();
            HOSTS_PIN.with(|p| *p.borrow_mut() = Some(Some(text.clone())));
            text
        }
        None => hosts_text_now(),
    }
}

thread_local! {
    /// Inside [`with_hosts_pinned`]: the hosts file's text once read.
    static HOSTS_PIN: std::cell::RefCell<Option<Option<std::sync::Arc<str>>>> =
        const { std::cell::RefCell::new(None) };
}

/// Run `f` with the hosts file looked at (stat, read when changed) at
/// most once: smtpd's client lookup (name, then address) is one look at
/// the file, not two.
pub fn with_hosts_pinned<R>(f: impl FnOnce() -> R) -> R {
    let outer = HOSTS_PIN.with(|p| p.borrow_mut().replace(None));
    let r = f();
    HOSTS_PIN.with(|p| *p.borrow_mut() = outer);
    r
}

fn hosts_path() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        std::env::var("ROSTFIX_HOSTS_FILE").unwrap_or_else(|_| "/etc/hosts".to_string())
    })
}

fn hosts_text_now() -> std::sync::Arc<str> {
    use std::os::unix::fs::MetadataExt;
    type Key = (&'static str, u64, u64, u64, i64, i64, i64, i64);
    static CACHE: std::sync::Mutex<Option<(Key, std::sync::Arc<str>)>> =
        std::sync::Mutex::new(None);
    let path = hosts_path();
    let Ok(m) = std::fs::metadata(path) else {
        return std::sync::Arc::from("");
    };
    let key: Key = (
        path,
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    );
    let mut g = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((k, text)) = g.as_ref()
        && *k == key
    {
        return text.clone();
    }
    let Ok(text) = std::fs::read_to_string(key.0) else {
        return std::sync::Arc::from("");
    };
    let text: std::sync::Arc<str> = text.into();
    *g = Some((key, text.clone()));
    text
}

/// The lines of a hosts file: (address, names) for each line with an
/// address and at least one name.
fn hosts_lines(text: &str) -> impl Iterator<Item = (IpAddr, std::str::SplitWhitespace<'_>)> {
    text.lines().filter_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut f = line.split_whitespace();
        let ip = f.next()?.parse::<IpAddr>().ok()?;
        f.clone().next()?;
        Some((ip, f))
    })
}

/// Parse a hosts file: (address, names) per line.
pub fn parse_hosts(text: &str) -> Vec<(IpAddr, Vec<String>)> {
    hosts_lines(text)
        .map(|(ip, names)| (ip, names.map(|s| s.to_string()).collect()))
        .collect()
}

fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// The hosts file's addresses for a name (every line that lists it).
pub fn hosts_addrs(text: &str, name: &str) -> Vec<IpAddr> {
    let mut v = Vec::new();
    for (ip, mut names) in hosts_lines(text) {
        if names.any(|n| same_name(n, name)) && !v.contains(&ip) {
            v.push(ip);
        }
    }
    v
}

/// The hosts file's canonical name for an address (the first line's first
/// name).
pub fn hosts_name(text: &str, ip: IpAddr) -> Option<String> {
    hosts_lines(text)
        .find(|(a, _)| *a == ip)
        .and_then(|(_, mut n)| n.next().map(str::to_string))
}

/// Address families for [`host_addrs`] (PF_UNSPEC, PF_INET, PF_INET6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Any,
    V4,
    V6,
}

impl Family {
    fn wants(self, ip: &IpAddr) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => ip.is_ipv4(),
            Family::V6 => ip.is_ipv6(),
        }
    }
}

/// getaddrinfo(name) with nsswitch `files dns`: the hosts file, then A
/// and/or AAAA records.
pub fn host_addrs(name: &str, family: Family) -> Result<Vec<IpAddr>, AiError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return if family.wants(&ip) {
            Ok(vec![ip])
        } else {
            Err(AiError::NoName)
        };
    }
    let mut from_file = hosts_addrs(&hosts_text(), name);
    from_file.retain(|ip| family.wants(ip));
    if !from_file.is_empty() {
        return Ok(from_file);
    }
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() || !valid_hostname_flags(bare, false, false) {
        return Err(AiError::NoName);
    }
    let types: &[RrType] = match family {
        Family::Any => &[RrType::A, RrType::Aaaa],
        Family::V4 => &[RrType::A],
        Family::V6 => &[RrType::Aaaa],
    };
    let mut out = Vec::new();
    let (mut again, mut nodata, mut fail) = (0, 0, 0);
    for &t in types {
        match lookup(bare, t) {
            Ok(v) => out.extend(v.into_iter().filter_map(|r| match r {
                Rr::Addr(a) => Some(a),
                _ => None,
            })),
            Err(e) => match e.status {
                DnsStatus::Retry => again += 1,
                DnsStatus::NotFound if !e.nxdomain => nodata += 1,
                DnsStatus::NotFound => {}
                _ => fail += 1,
            },
        }
    }
    if !out.is_empty() {
        Ok(out)
    } else if again > 0 {
        Err(AiError::Again)
    } else if fail > 0 {
        Err(AiError::Fail)
    } else if nodata == types.len() {
        Err(AiError::NoData)
    } else {
        Err(AiError::NoName)
    }
}

/// The reverse-lookup name of an address (in-addr.arpa / ip6.arpa).
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(a) => {
            let mut s = String::new();
            for b in a.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 15, b >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

/// getnameinfo(addr, NI_NAMEREQD) with nsswitch `files dns`: the hosts
/// file, then the first PTR record.
pub fn addr_name(ip: IpAddr) -> Result<String, AiError> {
    if let Some(n) = hosts_name(&hosts_text(), ip) {
        return Ok(n);
    }
    match lookup(&reverse_name(ip), RrType::Ptr) {
        Ok(v) => v
            .into_iter()
            .find_map(|r| match r {
                Rr::Host(_, h) => Some(h),
                _ => None,
            })
            .ok_or(AiError::NoName),
        Err(e) => Err(match e.status {
            DnsStatus::Retry => AiError::Again,
            DnsStatus::Fail => AiError::Fail,
            _ => AiError::NoName,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file() {
        let t = "# c\n127.0.0.1 localhost runsc\n::1 localhost ip6-localhost\n\
                 192.0.2.7 Mail.Example.TEST mail # alias\n192.0.2.8 mail.example.test\n";
        assert_eq!(
            hosts_addrs(t, "mail.example.test"),
            vec![
                "192.0.2.7".parse::<IpAddr>().unwrap(),
                "192.0.2.8".parse().unwrap()
            ]
        );
        assert_eq!(hosts_addrs(t, "localhost.").len(), 2);
        assert_eq!(
            hosts_name(t, "127.0.0.1".parse().unwrap()).as_deref(),
            Some("localhost")
        );
        assert_eq!(
            hosts_name(t, "192.0.2.7".parse().unwrap()).as_deref(),
            Some("Mail.Example.TEST")
        );
        assert_eq!(hosts_name(t, "192.0.2.9".parse().unwrap()), None);
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("192.0.2.7".parse().unwrap()),
            "7.2.0.192.in-addr.arpa"
        );
        assert!(reverse_name("2001:db8::1".parse().unwrap()).starts_with("1.0.0.0.0.0.0.0."));
        assert!(
            reverse_name("2001:db8::1".parse().unwrap()).ends_with(".8.b.d.0.1.0.0.2.ip6.arpa")
        );
    }

    #[test]
    fn invalid_names_are_not_asked() {
        let e = lookup("1.2.3.4", RrType::A).unwrap_err();
        assert_eq!(e.status, DnsStatus::NotFound);
        assert_eq!(
            e.why,
            "Name service error for 1.2.3.4: invalid host or domain name"
        );
        assert_eq!(
            lookup("a..b", RrType::A).unwrap_err().status,
            DnsStatus::NotFound
        );
        assert_eq!(host_addrs("a b", Family::Any), Err(AiError::NoName));
    }

    #[test]
    fn status_texts() {
        let e = error("x.test", RrType::Mx, DnsStatus::Retry, false);
        assert_eq!(
            e.why,
            "Host or domain name not found. Name service error for name=x.test type=MX: Host not found, try again"
        );
        assert!(DnsStatus::Retry > DnsStatus::NotFound);
        assert!(DnsStatus::Fail > DnsStatus::NullMx);
    }
}
