//! master.cf as master reads it (Postfix's master_ent.c): one service per
//! logical line, its endpoint, its limits and the command line master builds
//! for its processes. Errors are Postfix's fatal texts, with
//! `FILE: line N:` context.

use crate::global::master_cf::{extract_braced, split_quoted};
use crate::global::readlline;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The transport types of master.cf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Unix,
    Inet,
    Fifo,
    Pass,
    UnixDgram,
}

impl Kind {
    /// The master.cf name of the type.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Unix => "unix",
            Kind::Inet => "inet",
            Kind::Fifo => "fifo",
            Kind::Pass => "pass",
            Kind::UnixDgram => "unix-dgram",
        }
    }
}

/// One master.cf service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDef {
    /// The service field as written.
    pub ext_name: String,
    /// The canonical endpoint: `[addr]:port` or `port` for inet,
    /// `private/NAME` or `public/NAME` (relative to the queue directory)
    /// otherwise. A service is identified by this and its kind.
    pub name: String,
    pub kind: Kind,
    /// inet: the addresses to listen on (with the port).
    pub inet_addrs: Vec<SocketAddr>,
    /// The wakeup interval in seconds (0: none).
    pub wakeup: u32,
    /// `N?`: no wakeup until the service was used.
    pub condwake: bool,
    /// The process limit (0: none).
    pub max_proc: u32,
    /// `$daemon_directory/command`.
    pub path: String,
    /// The argv master passes (argv[0] is the command as written).
    pub args: Vec<String>,
    /// Index in `args` of the `stress=` value, for public inet services.
    pub stress_arg: Option<usize>,
    /// Only local clients (unix types, or inet on loopback addresses).
    pub local_only: bool,
}

/// What parsing needs from main.cf and master's options.
#[derive(Debug, Clone)]
pub struct Context {
    /// master.cf's path, for error context.
    pub path: String,
    pub daemon_directory: String,
    pub default_process_limit: u32,
    /// master runs with -d: children get -d.
    pub no_detach: bool,
    pub verbose: bool,
    /// The chroot default is `y` (compatibility_level < 1).
    pub chroot_default_yes: bool,
    /// inet_interfaces as it was when master started, and now.
    pub saved_interfaces: String,
    pub inet_interfaces: String,
    /// Address families that inet_protocols enables (AF_INET, AF_INET6).
    pub families: Vec<i32>,
    /// master_service_disable patterns.
    pub disable: Vec<String>,
    /// known_tcp_ports value.
    pub known_tcp_ports: String,
    /// inet_protocols value, for the warning when it enables nothing.
    pub inet_protocols: String,
}

/// A parse result: the services, plus informational and warning messages
/// to log (in order).
#[derive(Debug, Default)]
pub struct Parsed {
    pub services: Vec<ServiceDef>,
    pub infos: Vec<(bool, String)>,
}

fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n' | '\x0b' | '\x0c')
}

/// mystrtok on blanks: the next field and the rest.
fn next_field(s: &str) -> Option<(&str, &str)> {
    let t = s.trim_start_matches(is_blank);
    if t.is_empty() {
        return None;
    }
    let end = t.find(is_blank).unwrap_or(t.len());
    Some((&t[..end], &t[end..]))
}

/// Postfix's match_service: `name/type` or a bare `type` pattern.
fn disabled(patterns: &[String], name: &str, kind: &str) -> bool {
    let full = format!("{name}/{kind}");
    patterns.iter().any(|p| {
        if p.contains('/') {
            p.eq_ignore_ascii_case(&full)
        } else {
            p.eq_ignore_ascii_case(kind)
        }
    })
}

/// Postfix's host_port() with an empty default host and no default port.
pub fn host_port(s: &str) -> Result<(String, String), &'static str> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (inner, ipv6) = match rest.get(..5) {
            Some(p) if p.eq_ignore_ascii_case("ipv6:") => (&rest[5..], true),
            _ => (rest, false),
        };
        let Some(close) = inner.find(']') else {
            return Err("missing \"]\"");
        };
        let host = &inner[..close];
        let after = &inner[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => p,
            None if after.is_empty() => "",
            None => return Err("garbage after \"]\""),
        };
        if ipv6 && host.parse::<Ipv6Addr>().is_err() {
            return Err("malformed IPv6 address");
        }
        if port.is_empty() {
            return Err("missing service information");
        }
        (host.to_string(), port.to_string())
    } else if let Some(i) = s.rfind(':') {
        let port = &s[i + 1..];
        if port.is_empty() {
            return Err("missing service information");
        }
        (s[..i].to_string(), port.to_string())
    } else {
        if s.is_empty() {
            return Err("missing service information");
        }
        (String::new(), s.to_string())
    };
    if !host.is_empty() && !valid_host_or_addr(&host) {
        return Err("valid hostname or network address required");
    }
    if port.starts_with(|c: char| c.is_ascii_digit()) && !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("garbage after numerical service");
    }
    Ok((host, port))
}

fn valid_host_or_addr(h: &str) -> bool {
    if h.parse::<IpAddr>().is_ok() {
        return true;
    }
    !h.is_empty()
        && h.len() <= 255
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && !h.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// A numeric or symbolic TCP port: known_tcp_ports, then /etc/services.
pub fn port_number(port: &str, known: &str) -> Option<u16> {
    if port.bytes().all(|b| b.is_ascii_digit()) {
        return port.parse().ok();
    }
    for item in known
        .split([',', ' ', '\t', '\n'])
        .filter(|i| !i.is_empty())
    {
        let parts: Vec<&str> = item.split('=').map(str::trim).collect();
        if let Some((num, names)) = parts.split_last()
            && names.contains(&port)
        {
            return num.parse().ok();
        }
    }
    let services = std::fs::read_to_string("/etc/services").ok()?;
    for line in services.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut f = line.split_whitespace();
        let (Some(name), Some(pp)) = (f.next(), f.next()) else {
            continue;
        };
        let Some(num) = pp.strip_suffix("/tcp") else {
            continue;
        };
        if name == port || f.any(|a| a == port) {
            return num.parse().ok();
        }
    }
    None
}

fn wildcard_addrs(families: &[i32]) -> Vec<IpAddr> {
    let mut v = Vec::new();
    if families.contains(&libc::AF_INET) {
        v.push(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }
    if families.contains(&libc::AF_INET6) {
        v.push(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    }
    v
}

fn is_loopback(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => v.octets()[0] == 127,
        IpAddr::V6(v) => *v == Ipv6Addr::LOCALHOST,
    }
}

/// The next field; `-` gives the default (and `true`).
fn take(
    rest: &mut &str,
    field: &str,
    def: Option<&str>,
    path: &str,
    lineno: usize,
) -> Result<(String, bool), String> {
    match next_field(rest) {
        None => Err(format!("{path}: line {lineno}: missing \"{field}\" field")),
        Some((v, r)) => {
            *rest = r;
            if v == "-" {
                match def {
                    None => Err(format!(
                        "{path}: line {lineno}: field \"{field}\" has no default value"
                    )),
                    Some(d) => Ok((d.to_string(), true)),
                }
            } else {
                Ok((v.to_string(), false))
            }
        }
    }
}

/// Parse master.cf text. `Err` is the fatal text.
pub fn parse(ctx: &Context, text: &str) -> Result<Parsed, String> {
    let mut out = Parsed::default();
    let mut disable = ctx.disable.clone();
    if ctx.families.is_empty() {
        out.infos.push((
            true,
            format!(
                "all network protocols are disabled (inet_protocols = {})",
                ctx.inet_protocols
            ),
        ));
        out.infos.push((
            true,
            "disabling all type \"inet\" services in master.cf".to_string(),
        ));
        disable.push("inet".to_string());
    }
    let mut warns = Vec::new();
    let lines = readlline::read_logical_lines_with(text, &ctx.path, &mut |w| warns.push(w));
    for w in warns {
        out.infos.push((true, w));
    }
    for line in lines {
        let lineno = line.first_line;
        let context = |t: String| format!("{}: line {}: {}", ctx.path, lineno, t);
        let Some((name, rest)) = next_field(&line.text) else {
            continue;
        };
        let Some((transport, mut rest)) = next_field(rest) else {
            return Err(context("missing \"transport type\" field".into()));
        };
        if transport == "-" {
            return Err(context(
                "field \"transport type\" has no default value".into(),
            ));
        }
        if disabled(&disable, name, transport) {
            continue;
        }
        let path = ctx.path.as_str();
        let mut get = |field: &str, def: Option<&str>| take(&mut rest, field, def, path, lineno);
        let kind = match transport {
            "inet" => Kind::Inet,
            "unix" => Kind::Unix,
            "unix-dgram" => Kind::UnixDgram,
            "fifo" => Kind::Fifo,
            "pass" => Kind::Pass,
            t => return Err(context(format!("bad transport type: {t}"))),
        };
        let mut inet_addrs = Vec::new();
        let mut local_only = kind != Kind::Pass;
        let mut host_port_parts = None;
        if kind == Kind::Inet {
            if ctx.saved_interfaces != ctx.inet_interfaces {
                out.infos.push((
                    true,
                    format!("service {name}: ignoring inet_interfaces change"),
                ));
                out.infos.push((
                    true,
                    "to change inet_interfaces, stop and start Postfix".to_string(),
                ));
            }
            let (host, port) =
                host_port(name).map_err(|e| context(format!("{e} in \"{name}\"")))?;
            let addrs: Vec<IpAddr> = if !host.is_empty() {
                let mut v = crate::global::hostinfo::inet_addr_host(&host, &ctx.families);
                if v.is_empty() {
                    return Err(context(format!("bad hostname or network address: {name}")));
                }
                v.sort_by_key(|a| (matches!(a, IpAddr::V6(_)), *a));
                v.dedup();
                v
            } else if ctx.saved_interfaces.eq_ignore_ascii_case("all") {
                wildcard_addrs(&ctx.families)
            } else {
                crate::global::hostinfo::own_inet_addr_list(&ctx.saved_interfaces, &ctx.families)
                    .into_iter()
                    .map(|(a, _)| a)
                    .collect()
            };
            local_only = addrs.iter().all(is_loopback);
            host_port_parts = Some((host, port, addrs));
        }
        let private = match get("private", Some("y"))?.0.as_str() {
            "y" => true,
            "n" => false,
            v => return Err(context(format!("field \"private\": bad value: \"{v}\""))),
        };
        let canon = match &host_port_parts {
            Some((host, port, addrs)) => {
                if private {
                    return Err(context("inet service cannot be private".into()));
                }
                let num = port_number(port, &ctx.known_tcp_ports);
                if let Some(num) = num {
                    inet_addrs = addrs.iter().map(|a| SocketAddr::new(*a, num)).collect();
                }
                match (host.is_empty(), num, host.parse::<IpAddr>()) {
                    (true, Some(n), _) => n.to_string(),
                    (false, Some(n), Ok(ip)) => {
                        format!("[{}]:{n}", crate::global::hostinfo::format_addr(&ip))
                    }
                    (false, Some(n), Err(_)) => format!("[{host}]:{n}"),
                    (_, None, _) => name.to_string(),
                }
            }
            None => format!("{}/{}", if private { "private" } else { "public" }, name),
        };
        if kind == Kind::Inet && host_port_parts.as_ref().is_some_and(|p| p.2.is_empty()) {
            return Err(context(format!("no valid IP address found: {name}")));
        }
        let bool_field = |v: String, field: &str| -> Result<bool, String> {
            match v.as_str() {
                "y" => Ok(true),
                "n" => Ok(false),
                _ => Err(format!(
                    "{}: line {}: field \"{field}\": bad value: \"{v}\"",
                    ctx.path, lineno
                )),
            }
        };
        let v = get("unprivileged", Some("y"))?.0;
        let unprivileged = bool_field(v, "unprivileged")?;
        let chroot_def = if ctx.chroot_default_yes { "y" } else { "n" };
        let (v, raw_chroot) = get("chroot", Some(chroot_def))?;
        if raw_chroot && ctx.chroot_default_yes {
            out.infos.push((
                false,
                format!(
                    "{}: line {}: using backwards-compatible default setting chroot=y",
                    ctx.path, lineno
                ),
            ));
        }
        let chroot = bool_field(v, "chroot")?;
        let int_field = |v: String, field: &str| -> Result<u32, String> {
            let digits: String = v.chars().take_while(|c| c.is_ascii_digit()).collect();
            if digits.is_empty() {
                return Err(format!(
                    "{}: line {}: field \"{field}\": bad value: \"{v}\"",
                    ctx.path, lineno
                ));
            }
            Ok(digits
                .parse::<u64>()
                .unwrap_or(u64::from(u32::MAX))
                .min(i32::MAX as u64) as u32)
        };
        let wv = get("wakeup_time", Some("0"))?.0;
        let wakeup = int_field(wv.clone(), "wakeup_time")?;
        let condwake = wakeup > 0 && wv.ends_with('?');
        let limit = ctx.default_process_limit.to_string();
        let pv = get("max_proc", Some(&limit))?.0;
        let max_proc = int_field(pv, "max_proc")?;
        let command = get("command", None)?.0;
        let path = format!("{}/{}", ctx.daemon_directory, command);
        let mut args = vec![command.clone()];
        if max_proc == 1 {
            args.push("-l".into());
        }
        if max_proc == 0 {
            args.push("-z".into());
        }
        let base = command.rsplit('/').next().unwrap_or(&command);
        if base != name {
            args.push("-n".into());
            args.push(name.to_string());
        }
        args.push("-t".into());
        args.push(transport.to_string());
        if ctx.no_detach {
            args.push("-d".into());
        }
        if ctx.verbose {
            args.push("-v".into());
        }
        if unprivileged {
            args.push("-u".into());
        }
        if chroot {
            args.push("-c".into());
        }
        let mut stress_arg = None;
        if !local_only && max_proc > 1 {
            args.push("-o".into());
            args.push("stress=".into());
            stress_arg = Some(args.len() - 1);
        }
        let fd_count = if kind == Kind::Inet {
            inet_addrs.len().max(1)
        } else {
            1
        };
        if fd_count > 1 {
            args.push("-s".into());
            args.push(fd_count.to_string());
        }
        for tok in split_quoted(rest, " \t\r\n\x0b\x0c") {
            if tok.starts_with('{') {
                let (inner, err) = extract_braced(&tok);
                if let Some(e) = err {
                    return Err(context(e));
                }
                args.push(inner);
            } else {
                args.push(tok);
            }
        }
        out.services.push(ServiceDef {
            ext_name: name.to_string(),
            name: canon,
            kind,
            inet_addrs,
            wakeup,
            condwake,
            max_proc,
            path,
            args,
            stress_arg,
            local_only,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context {
            path: "/etc/postfix/master.cf".into(),
            daemon_directory: "/usr/lib/postfix/sbin".into(),
            default_process_limit: 100,
            no_detach: false,
            verbose: false,
            chroot_default_yes: false,
            saved_interfaces: "all".into(),
            inet_interfaces: "all".into(),
            families: vec![libc::AF_INET],
            disable: vec![],
            known_tcp_ports: "lmtp=24, smtp=25, smtps=submissions=465, submission=587".into(),
            inet_protocols: "ipv4".into(),
        }
    }

    #[test]
    fn argv_as_postfix_builds_it() {
        let p = parse(
            &ctx(),
            "# c\nsmtp      inet  n       -       y       -       -       smtpd\n\
             pickup    unix  n       -       y       60      1       pickup\n\
             cleanup   unix  n       -       y       -       0       cleanup\n\
             qmgr      unix  n       -       n       300?    1       qmgr\n\
             submission inet n       -       y       -       -       smtpd\n  -o syslog_name=postfix/submission\n  -o { smtpd_tls_security_level = encrypt }\n\
             127.0.0.1:10025 inet n - n - 10 smtpd -o x=y\n",
        )
        .unwrap();
        let s = &p.services;
        assert_eq!(s[0].name, "25");
        assert_eq!(
            s[0].args,
            [
                "smtpd", "-n", "smtp", "-t", "inet", "-u", "-c", "-o", "stress="
            ]
        );
        assert_eq!(s[0].path, "/usr/lib/postfix/sbin/smtpd");
        assert_eq!(s[1].name, "public/pickup");
        assert_eq!(s[1].args, ["pickup", "-l", "-t", "unix", "-u", "-c"]);
        assert_eq!(s[1].wakeup, 60);
        assert!(!s[1].condwake);
        assert_eq!(s[2].args, ["cleanup", "-z", "-t", "unix", "-u", "-c"]);
        assert!(s[3].condwake);
        assert_eq!(s[3].wakeup, 300);
        assert_eq!(s[4].name, "587");
        assert_eq!(
            &s[4].args[9..],
            [
                "-o",
                "syslog_name=postfix/submission",
                "-o",
                "smtpd_tls_security_level = encrypt"
            ]
        );
        assert_eq!(s[5].name, "[127.0.0.1]:10025");
        assert!(s[5].local_only);
        assert_eq!(s[5].stress_arg, None);
        assert_eq!(
            s[5].args,
            [
                "smtpd",
                "-n",
                "127.0.0.1:10025",
                "-t",
                "inet",
                "-u",
                "-o",
                "x=y"
            ]
        );
    }

    #[test]
    fn errors_as_postfix() {
        let e = |t: &str| parse(&ctx(), t).unwrap_err();
        assert_eq!(
            e("foo bar n - n - - x\n"),
            "/etc/postfix/master.cf: line 1: bad transport type: bar"
        );
        assert_eq!(
            e("\nfoo inet y - n - - x\n"),
            "/etc/postfix/master.cf: line 2: inet service cannot be private"
        );
        assert_eq!(
            e("foo unix q - n - - x\n"),
            "/etc/postfix/master.cf: line 1: field \"private\": bad value: \"q\""
        );
        assert_eq!(
            e("foo unix n - n x - x\n"),
            "/etc/postfix/master.cf: line 1: field \"wakeup_time\": bad value: \"x\""
        );
        assert_eq!(
            e("foo unix n - n - -\n"),
            "/etc/postfix/master.cf: line 1: missing \"command\" field"
        );
        assert_eq!(
            e("foo unix n - n - - -\n"),
            "/etc/postfix/master.cf: line 1: field \"command\" has no default value"
        );
        assert_eq!(
            e("[1.2.3.4:25 inet n - n - - x\n"),
            "/etc/postfix/master.cf: line 1: missing \"]\" in \"[1.2.3.4:25\""
        );
        assert_eq!(
            e("x inet n - n - - smtpd {a\n"),
            "/etc/postfix/master.cf: line 1: missing '}' in \"{a\""
        );
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(host_port("25"), Ok(("".into(), "25".into())));
        assert_eq!(host_port("[::1]:25"), Ok(("::1".into(), "25".into())));
        assert_eq!(
            host_port("h.example:smtp"),
            Ok(("h.example".into(), "smtp".into()))
        );
        assert_eq!(host_port("h:"), Err("missing service information"));
        assert_eq!(
            host_port("1.2.3.4:25x"),
            Err("garbage after numerical service")
        );
        assert_eq!(port_number("submission", &ctx().known_tcp_ports), Some(587));
        assert_eq!(port_number("smtps", &ctx().known_tcp_ports), Some(465));
    }
}
