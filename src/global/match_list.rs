//! Pattern lists as main.cf writes them (Postfix's match_list with
//! domain_list, string_list and namadr_list on top): items separated by
//! commas or whitespace, `!` negates, `/file/name` inserts the file's
//! items, `type:table` is looked up; the first matching item decides.
//!
//! Host names: `example.com` matches itself and, with parent-domain
//! matching (`parent_domain_matches_subdomains` naming the feature), its
//! subdomains; without it `.example.com` matches subdomains. Tables are
//! looked up with the name and, for fixed-string tables, its parent
//! domains. Text is compared case-insensitively: patterns and arguments are
//! case folded as Postfix's casefold() does, with Unicode case folding when
//! SMTPUTF8 support is on (`smtputf8_enable`, see
//! [`crate::util::casefold::utf8_enable`]), else ASCII lower-casing. Tables
//! are opened with DICT_FLAG_UTF8_REQUEST (they fold keys themselves).

use crate::global::dict::{Dict, DictError, OpenMode, flags};
use crate::global::maps::{open_or_surrogate, surrogate};
use crate::global::msg;
use crate::util::latin1;
use crate::util::stringops::{COMMA_SP, split_q};
use std::net::IpAddr;

/// Parent domains match subdomains (MATCH_FLAG_PARENT).
pub const FLAG_PARENT: u32 = 1 << 0;
/// Warn and report an error instead of a fatal error (MATCH_FLAG_RETURN).
pub const FLAG_RETURN: u32 = 1 << 1;

/// How one argument is compared with one pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matcher {
    /// Exact text (string_list).
    String,
    /// Host name with parent domains (domain_list, namadr_list's first).
    Hostname,
    /// Host address, `[addr]` and CIDR `net/len` (namadr_list's second).
    Hostaddr,
}

enum Item {
    Text(Text),
    Table(Box<dyn Dict>),
}

/// A literal pattern, case folded, with what host address matching needs
/// of it worked out once (Postfix parses a CIDR pattern at every match;
/// the outcome, error text included, is the same each time).
struct Text {
    text: String,
    /// Could be a CIDR block (`net/len`, `[net]/len`, a bare IPv6
    /// address): only these reach [`cidr_parse`].
    cidr_form: bool,
    /// [`cidr_parse`] of the text, computed at the first match that
    /// needs it.
    cidr: std::cell::OnceCell<Result<(IpAddr, u32), String>>,
}

impl Text {
    fn new(text: String) -> Text {
        const V4: &str = "01234567890.";
        let cidr_form = text.contains([':', '/'])
            && !text.chars().all(|c| V4.contains(c))
            && text
                .chars()
                .all(|c| V4.contains(c) || "abcdefABCDEF:[]/".contains(c));
        Text {
            text,
            cidr_form,
            cidr: std::cell::OnceCell::new(),
        }
    }
}

struct Pattern {
    negate: bool,
    item: Item,
}

/// A parsed list.
pub struct MatchList {
    pname: String,
    flags: u32,
    matchers: Vec<Matcher>,
    patterns: Vec<Pattern>,
    /// Set when the last match stopped on a table error or a bad pattern.
    pub error: bool,
    /// Fold with Unicode case folding (SMTPUTF8 support on).
    utf8: bool,
}

// A `type:name` item (an address in brackets is not one).
fn is_table(p: &str) -> bool {
    !p.starts_with('[') && p.contains(':')
}

impl MatchList {
    /// Parse `patterns` for arguments compared by `matchers` (one per
    /// argument given to [`MatchList::matches`]).
    pub fn new(pname: &str, flags: u32, patterns: &str, matchers: &[Matcher]) -> MatchList {
        let utf8 = crate::util::casefold::utf8_enable();
        MatchList::with_utf8(pname, flags, patterns, matchers, utf8)
    }

    /// As [`MatchList::new`], with UTF-8 case folding on or off whatever
    /// the process-wide SMTPUTF8 setting (tests).
    pub fn with_utf8(
        pname: &str,
        flags: u32,
        patterns: &str,
        matchers: &[Matcher],
        utf8: bool,
    ) -> MatchList {
        let mut list = MatchList {
            pname: pname.to_string(),
            flags,
            matchers: matchers.to_vec(),
            patterns: Vec::new(),
            error: false,
            utf8,
        };
        list.parse(patterns, false);
        list
    }

    /// [`MatchList::casefold`], without a copy when folding changes nothing.
    fn fold_arg<'a>(&self, a: &'a str) -> std::borrow::Cow<'a, str> {
        if a.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
            std::borrow::Cow::Borrowed(a)
        } else {
            std::borrow::Cow::Owned(self.casefold(a))
        }
    }

    /// Postfix's casefold() with this list's mode.
    fn casefold(&self, s: &str) -> String {
        if self.utf8 {
            crate::util::casefold::casefold_utf8(s)
        } else {
            crate::util::casefold::lowercase_ascii(s)
        }
    }

    fn parse(&mut self, text: &str, negated: bool) {
        let items = split_q(text, COMMA_SP);
        for (i, start) in items.iter().enumerate() {
            if start.starts_with('#') {
                let rest = items[i + 1..].join(" ");
                msg::warn(&format!(
                    "{}: comment at end of line is not supported: {start} {rest}",
                    self.pname
                ));
                break;
            }
            let item = start.trim_start_matches('!');
            let negate = negated ^ ((start.len() - item.len()) % 2 == 1);
            if item.is_empty() {
                msg::fatal(&format!("{}: no pattern after '!'", self.pname));
            }
            if item.starts_with('/') {
                match std::fs::read(latin1::to_path(item)) {
                    Ok(data) => {
                        let data = latin1::decode(&data);
                        for line in data.split_inclusive('\n') {
                            if !line.starts_with('#') {
                                self.parse(line, negate);
                            }
                        }
                    }
                    Err(e) => {
                        let reason = format!(
                            "open file {item}: {}",
                            crate::sys::strerror(e.raw_os_error().unwrap_or(0))
                        );
                        let spec = format!("non-existent:{item}");
                        let d = surrogate(&spec, flags::LOCK | flags::UTF8_REQUEST, &reason);
                        self.patterns.push(Pattern {
                            negate,
                            item: Item::Table(d),
                        });
                    }
                }
            } else if is_table(item) {
                let d =
                    open_or_surrogate(item, OpenMode::ReadOnly, flags::LOCK | flags::UTF8_REQUEST);
                self.patterns.push(Pattern {
                    negate,
                    item: Item::Table(d),
                });
            } else {
                let folded = self.casefold(item);
                self.patterns.push(Pattern {
                    negate,
                    item: Item::Text(Text::new(folded)),
                });
            }
        }
    }

    fn match_error(&mut self, text: &str) -> bool {
        self.error = true;
        if self.flags & FLAG_RETURN != 0 {
            msg::warn(&format!("{}: {text}", self.pname));
        } else {
            msg::fatal(&format!("{}: {text}", self.pname));
        }
        false
    }

    /// Does the list match? `args` pairs with the matchers given to
    /// [`MatchList::new`]. On a table error or bad pattern, the result is
    /// false and [`MatchList::error`] is set.
    pub fn matches(&mut self, args: &[&str]) -> bool {
        self.error = false;
        if self.patterns.is_empty() {
            return false;
        }
        // Arguments that folding leaves unchanged (lower-case ASCII, the
        // usual case) are not copied; one or two arguments (the usual
        // case) need no vector either.
        let mut pair: [std::borrow::Cow<str>; 2] = Default::default();
        let many: Vec<std::borrow::Cow<str>>;
        let folded: &[std::borrow::Cow<str>] = if args.len() <= 2 {
            for (slot, a) in pair.iter_mut().zip(args) {
                *slot = self.fold_arg(a);
            }
            &pair[..args.len()]
        } else {
            many = args.iter().map(|a| self.fold_arg(a)).collect();
            &many
        };
        for pi in 0..self.patterns.len() {
            for (mi, arg) in folded.iter().enumerate() {
                let matcher = self.matchers[mi];
                let hit = match matcher {
                    Matcher::String => self.match_string(pi, arg),
                    Matcher::Hostname => self.match_hostname(pi, arg),
                    Matcher::Hostaddr => self.match_hostaddr(pi, arg),
                };
                if hit {
                    return !self.patterns[pi].negate;
                }
                if self.error {
                    return false;
                }
            }
        }
        false
    }

    fn lookup(&mut self, pi: usize, key: &str) -> bool {
        let Item::Table(d) = &mut self.patterns[pi].item else {
            return false;
        };
        match d.lookup(key) {
            Ok(Some(_)) => true,
            Ok(None) => false,
            // Postfix's table code would have ended the program.
            Err(DictError::Fatal(text)) => msg::fatal(&text),
            Err(_) => {
                let t = format!("{}:{}: table lookup problem", d.type_name(), d.name());
                self.match_error(&t)
            }
        }
    }

    fn match_string(&mut self, pi: usize, s: &str) -> bool {
        match &self.patterns[pi].item {
            Item::Table(_) => self.lookup(pi, s),
            Item::Text(p) => p.text == s,
        }
    }

    fn match_hostname(&mut self, pi: usize, name: &str) -> bool {
        let parent = self.flags & FLAG_PARENT != 0;
        match &self.patterns[pi].item {
            Item::Table(d) => {
                let fixed = d.flags() & flags::FIXED != 0;
                let mut entry = 0;
                loop {
                    if entry == 0 || fixed {
                        if self.lookup(pi, &name[entry..]) {
                            return true;
                        }
                        if self.error {
                            return false;
                        }
                    }
                    let Some(dot) = name[entry + 1..].find('.').map(|i| entry + 1 + i) else {
                        return false;
                    };
                    entry = if parent { dot + 1 } else { dot };
                    if entry >= name.len() {
                        return false;
                    }
                }
            }
            Item::Text(Text { text: p, .. }) => {
                if name == p {
                    return true;
                }
                if parent {
                    name.len() > p.len()
                        && name.ends_with(p.as_str())
                        && name.as_bytes()[name.len() - p.len() - 1] == b'.'
                } else {
                    p.starts_with('.') && name.len() > p.len() && name.ends_with(p.as_str())
                }
            }
        }
    }

    fn match_hostaddr(&mut self, pi: usize, addr: &str) -> bool {
        const V4: &str = "01234567890.";
        if !addr
            .chars()
            .all(|c| V4.contains(c) || "abcdefABCDEF:".contains(c))
        {
            return false;
        }
        let t = match &self.patterns[pi].item {
            Item::Table(_) => return self.lookup(pi, addr),
            Item::Text(t) => t,
        };
        let p = t.text.as_str();
        if !p.starts_with('[') {
            if addr == p {
                return true;
            }
        } else if p.len() == addr.len() + 2 && p[1..].starts_with(addr) && p.ends_with(']') {
            return true;
        }
        if addr.contains(':') != p.contains(':') || !t.cidr_form {
            return false;
        }
        match t.cidr.get_or_init(|| cidr_parse(p)) {
            Err(why) => {
                let why = why.clone();
                self.match_error(&why)
            }
            Ok((net, len)) => match addr.parse::<IpAddr>() {
                Ok(a) => cidr_contains(net, *len, &a),
                Err(_) => false,
            },
        }
    }
}

fn bytes(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

fn masked(b: &[u8], len: u32) -> Vec<u8> {
    b.iter()
        .enumerate()
        .map(|(i, &x)| {
            let bits = len.saturating_sub(8 * i as u32).min(8);
            if bits == 0 {
                0
            } else {
                x & (0xffu8 << (8 - bits))
            }
        })
        .collect()
}

/// Parse `net/len`, `[net]/len`, `[net/len]` or a bare address with
/// Postfix's cidr_match_parse error texts.
pub fn cidr_parse(pattern: &str) -> Result<(IpAddr, u32), String> {
    let (pat, mask_part): (String, Option<String>) = if let Some(rest) = pattern.strip_prefix('[') {
        let Some(close) = rest.find(']') else {
            return Err(format!("missing ']' character after \"[{rest}\""));
        };
        let (inner, after) = (&rest[..close], &rest[close + 1..]);
        if let Some(m) = after.strip_prefix('/') {
            (inner.to_string(), Some(m.to_string()))
        } else if !after.is_empty() {
            return Err(format!("garbage after \"[{inner}]\""));
        } else {
            match inner.split_once('/') {
                Some((a, m)) => (a.to_string(), Some(m.to_string())),
                None => (inner.to_string(), None),
            }
        }
    } else {
        match pattern.split_once('/') {
            Some((a, m)) => (a.to_string(), Some(m.to_string())),
            None => (pattern.to_string(), None),
        }
    };
    let v6 = pat.contains(':');
    let bits = if v6 { 128 } else { 32 };
    let parse = |s: &str| -> Option<IpAddr> {
        if v6 {
            s.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
        } else {
            s.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
        }
    };
    match mask_part {
        Some(m) => {
            let err = |e: &str| Err(format!("{e} in \"{pat}/{m}\""));
            if !m.chars().all(|c| c.is_ascii_digit()) {
                return err("bad mask value");
            }
            let len: u32 = m.parse().unwrap_or(u32::MAX);
            if len > bits {
                return err("bad mask length");
            }
            let Some(net) = parse(&pat) else {
                return err("bad network value");
            };
            let b = bytes(&net);
            let mb = masked(&b, len);
            if mb != b {
                let shown = match net {
                    IpAddr::V4(_) => {
                        IpAddr::V4(std::net::Ipv4Addr::new(mb[0], mb[1], mb[2], mb[3]))
                    }
                    IpAddr::V6(_) => {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(&mb);
                        IpAddr::V6(std::net::Ipv6Addr::from(a))
                    }
                };
                return Err(format!(
                    "non-null host address bits in \"{pat}/{m}\", perhaps you should use \"{shown}/{len}\" instead"
                ));
            }
            Ok((net, len))
        }
        None => match parse(&pat) {
            Some(net) => Ok((net, bits)),
            None => Err(format!("bad address pattern: \"{pat}\"")),
        },
    }
}

fn cidr_contains(net: &IpAddr, len: u32, a: &IpAddr) -> bool {
    if net.is_ipv4() != a.is_ipv4() {
        return false;
    }
    masked(&bytes(a), len) == bytes(net)
}

/// A domain list (relay_domains, mydestination-style host name lists).
pub fn domain_list(pname: &str, flags: u32, patterns: &str) -> MatchList {
    MatchList::new(pname, flags, patterns, &[Matcher::Hostname])
}

/// A string list (exact text).
pub fn string_list(pname: &str, flags: u32, patterns: &str) -> MatchList {
    MatchList::new(pname, flags, patterns, &[Matcher::String])
}

/// A host name/address list (mynetworks, debug_peer_list): match with
/// `matches(&[name, addr])`.
pub fn namadr_list(pname: &str, flags: u32, patterns: &str) -> MatchList {
    MatchList::new(
        pname,
        flags,
        patterns,
        &[Matcher::Hostname, Matcher::Hostaddr],
    )
}

/// Postfix's match_parent_style: FLAG_PARENT when `name` (a parameter
/// name) is listed in `parent_domain_matches_subdomains`.
pub fn match_parent_style(parent_domain_matches_subdomains: &str, name: &str) -> u32 {
    let mut l = string_list(
        "parent_domain_matches_subdomains",
        0,
        parent_domain_matches_subdomains,
    );
    if l.matches(&[name]) { FLAG_PARENT } else { 0 }
}

#[cfg(test)]
mod tests;
