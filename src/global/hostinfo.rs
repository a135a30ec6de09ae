//! Host-derived parameter defaults: myhostname, mydomain, mynetworks.
//!
//! `mynetworks` is computed as Postfix 3.7 does on Linux: the protocols
//! named by inet_protocols (IPv4 before IPv6), the interface addresses of
//! inet_interfaces (`all`, `loopback-only`, or names and addresses resolved
//! with getaddrinfo and matched against the interface list, which glibc's
//! getifaddrs(3) provides with netmasks for both families), then one
//! network pattern per address according to mynetworks_style (`host`,
//! `subnet` or `class`), in interface order without repeats. The fatal
//! errors and warnings are Postfix's texts.

use crate::global::msg;
use crate::sys::net::{self, AF_INET, AF_INET6, AF_UNSPEC, SockAddr};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The kernel host name.
pub fn kernel_hostname() -> String {
    crate::sys::hostname()
}

/// Separators of name_mask(3) lists.
const MASK_DELIMS: &[char] = &[',', ' ', '\t', '\r', '\n'];

/// Postfix's name_mask with NAME_MASK_FATAL: OR the masks of the
/// (case-sensitive) names in `names`; an unknown name is fatal.
fn name_mask(context: &str, table: &[(&str, u32)], names: &str) -> u32 {
    let mut result = 0;
    for word in names.split(MASK_DELIMS).filter(|w| !w.is_empty()) {
        match table.iter().find(|(n, _)| *n == word) {
            Some((_, m)) => result |= m,
            None => msg::fatal(&format!(
                "unknown {context} value \"{word}\" in \"{names}\""
            )),
        }
    }
    result
}

const PROTO_IPV4: u32 = 1 << 0;
const PROTO_IPV6: u32 = 1 << 1;

/// The address families that inet_protocols enables, in Postfix's order
/// (IPv4 first), as inet_proto_init(3): a protocol the kernel lacks is
/// disabled with a warning.
pub fn inet_proto_families(protocols: &str) -> Vec<i32> {
    const CONTEXT: &str = "inet_protocols";
    let table = [
        ("all", PROTO_IPV4 | PROTO_IPV6),
        ("ipv6", PROTO_IPV6),
        ("ipv4", PROTO_IPV4),
    ];
    let mut mask = name_mask(CONTEXT, &table, protocols);
    for (bit, family, name) in [
        (PROTO_IPV6, AF_INET6, "IPv6"),
        (PROTO_IPV4, AF_INET, "IPv4"),
    ] {
        if mask & bit == 0 {
            continue;
        }
        if let Err(e) = net::probe_socket(family) {
            if e == libc::EAFNOSUPPORT || e == libc::EPROTONOSUPPORT {
                msg::warn(&format!(
                    "{CONTEXT}: disabling {name} name/address support: {}",
                    crate::sys::strerror(e)
                ));
                mask &= !bit;
            } else {
                msg::fatal(&format!("socket: {}", crate::sys::strerror(e)));
            }
        }
    }
    let mut families = Vec::new();
    if mask & PROTO_IPV4 != 0 {
        families.push(AF_INET);
    }
    if mask & PROTO_IPV6 != 0 {
        families.push(AF_INET6);
    }
    families
}

/// The getaddrinfo family hint for a protocol list (PF_UNSPEC for both).
fn family_hint(families: &[i32]) -> i32 {
    match families {
        [one] => *one,
        _ => AF_UNSPEC,
    }
}

fn ip_of(sa: &SockAddr) -> Option<IpAddr> {
    match sa {
        SockAddr::Inet(a) => Some(IpAddr::V4(*a)),
        SockAddr::Inet6(a) => Some(IpAddr::V6(*a)),
        SockAddr::Other(_) => None,
    }
}

/// One address with its netmask.
pub type AddrMask = (IpAddr, IpAddr);

/// Select the addresses of one family from an interface list, as Postfix's
/// getifaddrs-based inet_addr_local: interfaces that are up, with an
/// address of that family that is not the wildcard; an interface without a
/// netmask is skipped with a warning.
fn local_of_family(list: &[net::IfAddr], family: i32, out: &mut Vec<AddrMask>) {
    for ifa in list {
        if ifa.flags & net::IFF_UP == 0 {
            continue;
        }
        let Some(sa) = ifa.addr else { continue };
        if sa.family() != family {
            continue;
        }
        let Some(mask) = ifa.netmask else {
            msg::warn(&format!(
                "ignoring interface with null netmask, address family {}",
                sa.family()
            ));
            continue;
        };
        let Some(addr) = ip_of(&sa) else { continue };
        if addr.is_unspecified() {
            continue;
        }
        let mask = match (addr, ip_of(&mask)) {
            (IpAddr::V4(_), Some(IpAddr::V4(m))) => IpAddr::V4(m),
            (IpAddr::V6(_), Some(IpAddr::V6(m))) => IpAddr::V6(m),
            // The netmask's family field is not trusted: take its bytes as
            // the address's family would have them. Linux always sets it.
            (IpAddr::V4(_), _) => IpAddr::V4(Ipv4Addr::BROADCAST),
            (IpAddr::V6(_), _) => IpAddr::V6(Ipv6Addr::from([0xff; 16])),
        };
        out.push((addr, mask));
    }
}

/// All local addresses of the given families, IPv4 first.
fn inet_addr_local(list: &[net::IfAddr], families: &[i32]) -> Vec<AddrMask> {
    let mut out = Vec::new();
    for &f in families {
        local_of_family(list, f, &mut out);
    }
    out
}

fn system_interfaces() -> Vec<net::IfAddr> {
    match net::interfaces() {
        Ok(l) => l,
        Err(e) => msg::fatal(&format!(
            "inet_addr_local[getifaddrs]: getifaddrs: {}",
            crate::global::config_file::errno_text(&e)
        )),
    }
}

fn local_addrs_or_die(families: &[i32]) -> Vec<AddrMask> {
    let local = inet_addr_local(&system_interfaces(), families);
    if local.is_empty() {
        msg::fatal("could not find any active network interfaces");
    }
    local
}

/// The addresses of one inet_interfaces host or address, as Postfix's
/// inet_addr_host: `[addr]` loses its brackets; results of a family that is
/// not enabled, or that the kernel cannot open sockets for, are skipped.
pub fn inet_addr_host(host: &str, families: &[i32]) -> Vec<IpAddr> {
    let name = if host.len() >= 2 && host.starts_with('[') && host.ends_with(']') {
        &host[1..host.len() - 1]
    } else {
        host
    };
    let Ok(found) = net::resolve(name, family_hint(families)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for sa in found {
        if !families.contains(&sa.family()) {
            msg::info(&format!(
                "inet_addr_host: skipping address family {} for host \"{host}\"",
                sa.family()
            ));
            continue;
        }
        if let Err(e) = net::probe_socket(sa.family()) {
            msg::warn(&format!(
                "inet_addr_host: skipping address family {}: {}",
                sa.family(),
                crate::sys::strerror(e)
            ));
            continue;
        }
        if let Some(ip) = ip_of(&sa) {
            out.push(ip);
        }
    }
    out
}

/// Postfix's sock_addr_cmp_addr: family first (AF_INET < AF_INET6), then the
/// IPv4 address as a difference of network-order words (as C computes it),
/// or the IPv6 bytes.
fn cmp_addr(a: &IpAddr, b: &IpAddr) -> i32 {
    match (a, b) {
        (IpAddr::V4(x), IpAddr::V4(y)) => {
            let x = u32::from_ne_bytes(x.octets());
            let y = u32::from_ne_bytes(y.octets());
            x.wrapping_sub(y) as i32
        }
        (IpAddr::V6(x), IpAddr::V6(y)) => match x.octets().cmp(&y.octets()) {
            std::cmp::Ordering::Less => -1,
            std::cmp::Ordering::Equal => 0,
            std::cmp::Ordering::Greater => 1,
        },
        (IpAddr::V4(_), IpAddr::V6(_)) => AF_INET - AF_INET6,
        (IpAddr::V6(_), IpAddr::V4(_)) => AF_INET6 - AF_INET,
    }
}

/// glibc's qsort for small arrays: a top-down merge sort that takes from
/// the left run while cmp <= 0. Reproduces the order even for the
/// non-transitive IPv4 comparison above.
fn msort(v: &mut [IpAddr]) {
    if v.len() <= 1 {
        return;
    }
    let n1 = v.len() / 2;
    msort(&mut v[..n1]);
    msort(&mut v[n1..]);
    let (left, right) = (v[..n1].to_vec(), v[n1..].to_vec());
    let (mut i, mut j, mut k) = (0, 0, 0);
    while i < left.len() && j < right.len() {
        if cmp_addr(&left[i], &right[j]) <= 0 {
            v[k] = left[i];
            i += 1;
        } else {
            v[k] = right[j];
            j += 1;
        }
        k += 1;
    }
    for x in left[i..].iter().chain(right[j..].iter()) {
        v[k] = *x;
        k += 1;
    }
}

/// Postfix's inet_addr_list_uniq: sort, then drop adjacent duplicates.
fn uniq(list: &mut Vec<IpAddr>) {
    msort(list);
    list.dedup_by(|b, a| cmp_addr(a, b) == 0);
}

fn same_addr(a: &IpAddr, b: &IpAddr) -> bool {
    a == b
}

/// The addresses and netmasks that Postfix considers its own for an
/// inet_interfaces value (own_inet_addr_list / own_inet_mask_list).
pub fn own_inet_addr_list(interfaces: &str, families: &[i32]) -> Vec<AddrMask> {
    if families.is_empty() {
        return Vec::new();
    }
    if interfaces == "all" {
        return local_addrs_or_die(families);
    }
    if interfaces == "loopback-only" {
        return local_addrs_or_die(families)
            .into_iter()
            .filter(|(a, _)| is_loopback(a))
            .collect();
    }
    let mut addrs = Vec::new();
    for host in interfaces.split([' ', '\t', ',']).filter(|h| !h.is_empty()) {
        let found = inet_addr_host(host, families);
        if found.is_empty() {
            msg::fatal(&format!(
                "config variable inet_interfaces: host not found: {host}"
            ));
        }
        addrs.extend(found);
    }
    uniq(&mut addrs);
    let local = local_addrs_or_die(families);
    let mut out = Vec::new();
    for a in addrs {
        match local.iter().find(|(l, _)| same_addr(l, &a)) {
            Some((_, m)) => out.push((a, *m)),
            None => msg::fatal(&format!(
                "parameter inet_interfaces: no local interface found for {}",
                format_addr(&a)
            )),
        }
    }
    out
}

/// Postfix's sock_addr_in_loopback: 127/8, or ::1.
fn is_loopback(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => v.octets()[0] == 127,
        IpAddr::V6(v) => *v == Ipv6Addr::LOCALHOST,
    }
}

/// An address as Postfix prints it (getnameinfo NI_NUMERICHOST without the
/// scope): dotted quad, or glibc's inet_ntop form for IPv6.
pub fn format_addr(a: &IpAddr) -> String {
    match a {
        IpAddr::V4(v) => v.to_string(),
        IpAddr::V6(v) => format_ipv6(v),
    }
}

/// glibc's inet_ntop(AF_INET6): lower-case hex, the first longest run of
/// two or more zero words as `::`, and `::a.b.c.d` / `::ffff:a.b.c.d` for
/// IPv4-compatible and -mapped addresses.
pub fn format_ipv6(a: &Ipv6Addr) -> String {
    let w = a.segments();
    let (mut best_base, mut best_len) = (None::<usize>, 0usize);
    let mut i = 0;
    while i < 8 {
        if w[i] == 0 {
            let start = i;
            while i < 8 && w[i] == 0 {
                i += 1;
            }
            let len = i - start;
            if len >= 2 && len > best_len {
                best_base = Some(start);
                best_len = len;
            }
        } else {
            i += 1;
        }
    }
    let mut out = String::new();
    let mut i = 0;
    while i < 8 {
        if let Some(b) = best_base
            && i >= b
            && i < b + best_len
        {
            if i == b {
                out.push(':');
            }
            i += 1;
            continue;
        }
        if i != 0 {
            out.push(':');
        }
        if i == 6 && best_base == Some(0) && (best_len == 6 || (best_len == 5 && w[5] == 0xffff)) {
            let o = a.octets();
            out.push_str(&format!("{}.{}.{}.{}", o[12], o[13], o[14], o[15]));
            return out;
        }
        out.push_str(&format!("{:x}", w[i]));
        i += 1;
    }
    if let Some(b) = best_base
        && b + best_len == 8
    {
        out.push(':');
    }
    out
}

const STYLE_CLASS: u32 = 1 << 0;
const STYLE_SUBNET: u32 = 1 << 1;
const STYLE_HOST: u32 = 1 << 2;

/// The mask style bit of a mynetworks_style value (fatal unless exactly one).
fn mask_style(style: &str) -> u32 {
    let table = [
        ("class", STYLE_CLASS),
        ("subnet", STYLE_SUBNET),
        ("host", STYLE_HOST),
    ];
    let m = name_mask("mynetworks mask style", &table, style);
    if m.count_ones() != 1 {
        msg::fatal(&format!(
            "bad mynetworks_style value: {style}; specify exactly one value"
        ));
    }
    m
}

/// Clear all bits after the first `bits` of an address.
fn mask_bytes(bytes: &mut [u8], bits: u32) {
    for (i, b) in bytes.iter_mut().enumerate() {
        let start = i as u32 * 8;
        if start + 8 <= bits {
            continue;
        }
        if start >= bits {
            *b = 0;
        } else {
            *b &= 0xffu8 << (8 - (bits - start));
        }
    }
}

/// One network pattern for an address and netmask in a mask style.
fn network_pattern(style: u32, addr: &IpAddr, mask: &IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => {
            let addr = u32::from(*a);
            let (mask, prefix) = match style {
                STYLE_CLASS => {
                    if addr & 0x8000_0000 == 0 {
                        (0xff00_0000, 8)
                    } else if addr & 0xc000_0000 == 0x8000_0000 {
                        (0xffff_0000, 16)
                    } else if addr & 0xe000_0000 == 0xc000_0000 {
                        (0xffff_ff00, 24)
                    } else if addr & 0xf000_0000 == 0xe000_0000 {
                        (0xf000_0000, 4)
                    } else {
                        msg::fatal(&format!("mynetworks_core: unknown address class: {a}"))
                    }
                }
                STYLE_SUBNET => {
                    let m = match mask {
                        IpAddr::V4(m) => u32::from(*m),
                        IpAddr::V6(_) => u32::MAX,
                    };
                    // The prefix runs to the last 1 bit, holes and all.
                    let prefix = if m == 0 { 0 } else { 32 - m.trailing_zeros() };
                    (m, prefix)
                }
                _ => (u32::MAX, 32),
            };
            format!("{}/{prefix}", Ipv4Addr::from(addr & mask))
        }
        IpAddr::V6(a) => {
            let prefix = match style {
                STYLE_HOST => 128,
                _ => {
                    let m = match mask {
                        IpAddr::V6(m) => m.octets(),
                        IpAddr::V4(_) => [0xff; 16],
                    };
                    let mut prefix = 0;
                    for b in m {
                        if b == 0xff {
                            prefix += 8;
                            continue;
                        }
                        if b != 0 {
                            prefix += 8 - b.trailing_zeros();
                        }
                        break;
                    }
                    prefix
                }
            };
            let mut o = a.octets();
            mask_bytes(&mut o, prefix);
            format!("[{}]/{prefix}", format_ipv6(&Ipv6Addr::from(o)))
        }
    }
}

/// The mynetworks text for a list of own addresses: each pattern followed by
/// a space, repeats dropped (first occurrence kept).
fn networks_text(style: u32, list: &[AddrMask]) -> String {
    let patterns: Vec<String> = list
        .iter()
        .map(|(a, m)| network_pattern(style, a, m))
        .collect();
    let mut out = String::new();
    let mut seen = std::collections::HashSet::new();
    for p in &patterns {
        if patterns.len() > 1 && !seen.insert(p.clone()) {
            continue;
        }
        out.push_str(p);
        out.push(' ');
    }
    out
}

/// The default of mynetworks for a mynetworks_style, inet_interfaces and
/// inet_protocols value, as Postfix computes it (with its trailing space).
/// Bad values are fatal with Postfix's messages.
pub fn mynetworks(style: &str, interfaces: &str, protocols: &str) -> String {
    let families = inet_proto_families(protocols);
    if families.is_empty() {
        return String::new();
    }
    let style = mask_style(style);
    let list = own_inet_addr_list(interfaces, &families);
    networks_text(style, &list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().unwrap())
    }
    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().unwrap())
    }

    fn sample() -> Vec<AddrMask> {
        vec![
            (v4("127.0.0.1"), v4("255.0.0.0")),
            (v4("192.0.2.2"), v4("255.255.255.0")),
            (v6("::1"), v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
            (v6("fd00::2"), v6("ffff:ffff:ffff:ffff::")),
            (v6("fe80::fc:ff:fe00:1"), v6("ffff:ffff:ffff:ffff::")),
        ]
    }

    #[test]
    fn styles_match_postfix_output() {
        assert_eq!(
            networks_text(STYLE_SUBNET, &sample()),
            "127.0.0.0/8 192.0.2.0/24 [::1]/128 [fd00::]/64 [fe80::]/64 "
        );
        assert_eq!(
            networks_text(STYLE_CLASS, &sample()),
            "127.0.0.0/8 192.0.2.0/24 [::1]/128 [fd00::]/64 [fe80::]/64 "
        );
        assert_eq!(
            networks_text(STYLE_HOST, &sample()),
            "127.0.0.1/32 192.0.2.2/32 [::1]/128 [fd00::2]/128 [fe80::fc:ff:fe00:1]/128 "
        );
    }

    #[test]
    fn classes_and_odd_masks() {
        let list = vec![
            (v4("10.1.2.3"), v4("255.255.255.0")),
            (v4("172.16.5.4"), v4("255.255.255.0")),
            (v4("10.9.9.9"), v4("255.255.255.0")),
            (v4("224.1.1.1"), v4("255.255.255.0")),
        ];
        assert_eq!(
            networks_text(STYLE_CLASS, &list),
            "10.0.0.0/8 172.16.0.0/16 224.0.0.0/4 "
        );
        // A netmask with a hole counts to its last 1 bit.
        let odd = vec![(v4("192.168.255.7"), v4("255.255.0.255"))];
        assert_eq!(networks_text(STYLE_SUBNET, &odd), "192.168.0.7/32 ");
        let v6odd = vec![(v6("2001:db8:abcd::1"), v6("ffff:ffff:fff0::"))];
        assert_eq!(networks_text(STYLE_SUBNET, &v6odd), "[2001:db8:abc0::]/44 ");
        // A single pattern is never filtered; repeats are dropped.
        let twice = vec![
            (v4("192.0.2.1"), v4("255.255.255.0")),
            (v4("192.0.2.9"), v4("255.255.255.0")),
        ];
        assert_eq!(networks_text(STYLE_SUBNET, &twice), "192.0.2.0/24 ");
    }

    #[test]
    fn ipv6_text_is_glibc_inet_ntop() {
        for (i, o) in [
            ("::2", "::2"),
            ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
            ("::1.2.3.4", "::1.2.3.4"),
            ("::0.0.0.1", "::1"),
            ("1:0:0:1:0:0:0:1", "1:0:0:1::1"),
            ("1:0:1:0:1:0:1:0", "1:0:1:0:1:0:1:0"),
            ("::ffff:0:1.2.3.4", "::ffff:0:102:304"),
            ("0:0:0:0:0:ffff:0:0", "::ffff:0.0.0.0"),
            ("::", "::"),
            ("1::", "1::"),
            ("fe80::1:0:0", "fe80::1:0:0"),
            ("0:0:0:0:0:1:0:0", "::1:0:0"),
        ] {
            assert_eq!(format_ipv6(&i.parse().unwrap()), o, "{i}");
        }
    }

    #[test]
    fn local_selection_skips_down_and_wildcard() {
        let ifs = vec![
            net::IfAddr {
                name: "lo".into(),
                flags: net::IFF_UP,
                addr: Some(SockAddr::Inet(Ipv4Addr::LOCALHOST)),
                netmask: Some(SockAddr::Inet(Ipv4Addr::new(255, 0, 0, 0))),
            },
            net::IfAddr {
                name: "down0".into(),
                flags: 0,
                addr: Some(SockAddr::Inet(Ipv4Addr::new(10, 0, 0, 1))),
                netmask: Some(SockAddr::Inet(Ipv4Addr::new(255, 0, 0, 0))),
            },
            net::IfAddr {
                name: "lo".into(),
                flags: net::IFF_UP,
                addr: Some(SockAddr::Inet6(Ipv6Addr::LOCALHOST)),
                netmask: Some(SockAddr::Inet6(Ipv6Addr::from([0xff; 16]))),
            },
            net::IfAddr {
                name: "any".into(),
                flags: net::IFF_UP,
                addr: Some(SockAddr::Inet(Ipv4Addr::UNSPECIFIED)),
                netmask: Some(SockAddr::Inet(Ipv4Addr::UNSPECIFIED)),
            },
            net::IfAddr {
                name: "pkt".into(),
                flags: net::IFF_UP,
                addr: Some(SockAddr::Other(17)),
                netmask: None,
            },
        ];
        assert_eq!(
            inet_addr_local(&ifs, &[AF_INET6, AF_INET]),
            vec![
                (v6("::1"), v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
                (v4("127.0.0.1"), v4("255.0.0.0")),
            ]
        );
    }

    #[test]
    fn explicit_interfaces_sort_like_qsort() {
        let mut l = vec![v6("::1"), v4("192.0.2.2"), v4("127.0.0.1"), v4("192.0.2.2")];
        uniq(&mut l);
        assert_eq!(l, vec![v4("127.0.0.1"), v4("192.0.2.2"), v6("::1")]);
        // IPv4 compares network-order words by C subtraction: on a
        // little-endian machine the last octet weighs most.
        let mut m = vec![v4("1.0.0.2"), v4("2.0.0.1")];
        uniq(&mut m);
        let want = if cfg!(target_endian = "little") {
            vec![v4("2.0.0.1"), v4("1.0.0.2")]
        } else {
            vec![v4("1.0.0.2"), v4("2.0.0.1")]
        };
        assert_eq!(m, want);
    }

    #[test]
    fn loopback_only_and_protocol_selection() {
        // These use the machine's interfaces; loopback is always there.
        assert!(mynetworks("host", "loopback-only", "ipv4").starts_with("127.0.0.1/32 "));
        assert_eq!(mynetworks("subnet", "all", ""), "");
        assert_eq!(mynetworks("subnet", "127.0.0.1", "ipv4"), "127.0.0.0/8 ");
    }
}
