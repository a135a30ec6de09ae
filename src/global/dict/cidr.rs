//! `cidr:` tables: network address patterns, as Postfix 3.7's dict_cidr
//! and cidr_match (cidr_table(5)).
//!
//! Syntax, one rule per logical line:
//! - `network/prefix result`, a bare address (all bits), IPv6 the same way;
//!   `[addr]`, `[addr]/prefix` and `[addr/prefix]` are accepted too.
//! - `!pattern result`: the rule applies when the address does not match.
//! - `if pattern` ... `endif`, nested; `if !pattern`.
//!
//! Address text is converted with the C library's inet_pton()/inet_ntop()
//! (see [`crate::sys::inet`]), so what is accepted, and how a suggested
//! network is printed, is what Postfix does on the same host.

use super::pattern_util::{self as pu, Diag, all_digits, is_space, keyword, skip_space, text};
use super::{Dict, DictError, OpenError, OpenMode, Seq, Status, flags};
use crate::sys::inet::{self, Family};
use std::ffi::CString;

const TYPE: &str = "cidr";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Match,
    If,
    Endif,
}

/// One parsed pattern (Postfix's CIDR_MATCH).
#[derive(Debug, Clone)]
struct Pattern {
    family: Family,
    net: [u8; 16],
    mask: [u8; 16],
    matched: bool,
}

#[derive(Debug, Clone)]
struct Entry {
    op: Op,
    /// `None` for ENDIF.
    pattern: Option<Pattern>,
    value: String,
    /// For IF: the index of the matching ENDIF.
    block_end: Option<usize>,
}

impl pu::BlockRule for Entry {
    fn block(&self) -> pu::Block {
        match self.op {
            Op::If => pu::Block::If,
            Op::Endif => pu::Block::Endif,
            Op::Match => pu::Block::Other,
        }
    }

    fn set_endif(&mut self, at: usize) {
        self.block_end = Some(at);
    }
}

/// Family as Postfix guesses it: a ':' anywhere means IPv6.
fn family_of(s: &[u8]) -> Family {
    if s.contains(&b':') {
        Family::V6
    } else {
        Family::V4
    }
}

fn pton(family: Family, s: &[u8]) -> Option<[u8; 16]> {
    let c = CString::new(s.to_vec()).ok()?;
    inet::pton(family, &c)
}

/// Postfix's mask_addr(): keep the first `bits` bits of `addr`.
fn mask_addr(addr: &mut [u8; 16], count: usize, bits: u8) {
    let bits = bits as usize;
    let mut p = bits / 8;
    let rem = bits % 8;
    if rem != 0 && p < count {
        addr[p] &= (0xffu32 << (8 - rem)) as u8;
        p += 1;
    }
    while p < count {
        addr[p] = 0;
        p += 1;
    }
}

/// Parse an address pattern as Postfix's cidr_match_parse(): the pattern, or
/// the reason it is bad.
fn parse_pattern(pattern: &[u8], matched: bool) -> Result<Pattern, String> {
    // Strip [] from [addr/len] or [addr]/len; find where "/len" may start.
    let (addr, mask): (&[u8], Option<&[u8]>) = if pattern.first() == Some(&b'[') {
        let inner = &pattern[1..];
        let Some(close) = inner.iter().position(|&c| c == b']') else {
            return Err(format!("missing ']' character after \"[{}\"", text(inner)));
        };
        let addr = &inner[..close];
        let after = &inner[close + 1..];
        if after.first() == Some(&b'/') {
            (addr, Some(&after[1..]))
        } else if !after.is_empty() {
            return Err(format!("garbage after \"[{}]\"", text(addr)));
        } else {
            split_slash(addr)
        }
    } else {
        split_slash(pattern)
    };
    let family = family_of(addr);
    let bit_count = (family.bytes() * 8) as u8;
    let count = family.bytes();
    match mask {
        Some(mask) => {
            let mut shift = 0u8;
            let error = if !all_digits(mask) {
                Some("bad mask value")
            } else {
                // Postfix stores atoi()'s result in an unsigned char.
                shift = pu::c_atoi(mask) as u8;
                if shift > bit_count {
                    Some("bad mask length")
                } else {
                    None
                }
            };
            let net = match error {
                Some(e) => Err(e),
                None => pton(family, addr).ok_or("bad network value"),
            };
            let mut net = net.map_err(|e| format!("{e} in \"{}/{}\"", text(addr), text(mask)))?;
            let mut mask_bytes = [0u8; 16];
            if shift > 0 {
                mask_bytes[..count].fill(0xff);
                mask_addr(&mut mask_bytes, count, shift);
            }
            if (0..count).any(|i| net[i] & !mask_bytes[i] != 0) {
                mask_addr(&mut net, count, shift);
                return Err(format!(
                    "non-null host address bits in \"{}/{}\", perhaps you should use \"{}/{}\" instead",
                    text(addr),
                    text(mask),
                    inet::ntop(family, &net),
                    shift
                ));
            }
            Ok(Pattern {
                family,
                net,
                mask: mask_bytes,
                matched,
            })
        }
        None => {
            let Some(net) = pton(family, addr) else {
                return Err(format!("bad address pattern: \"{}\"", text(addr)));
            };
            let mut mask_bytes = [0u8; 16];
            mask_bytes[..count].fill(0xff);
            Ok(Pattern {
                family,
                net,
                mask: mask_bytes,
                matched,
            })
        }
    }
}

fn split_slash(s: &[u8]) -> (&[u8], Option<&[u8]>) {
    match s.iter().position(|&c| c == b'/') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

/// Does the address match the pattern (taking `!` into account)?
fn entry_match(p: &Pattern, addr: &[u8; 16]) -> bool {
    let count = p.family.bytes();
    let hit = (0..count).all(|i| addr[i] & p.mask[i] == p.net[i]);
    if hit { p.matched } else { !p.matched }
}

/// An open `cidr:` table.
pub struct CidrDict {
    name: String,
    flags: u32,
    entries: Vec<Entry>,
    diag: Diag,
}

/// Open `cidr:name` (the opener registered for "cidr").
pub fn open(name: &str, mode: OpenMode, dict_flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    Ok(Box::new(CidrDict::open(
        name,
        mode,
        dict_flags,
        Diag::stderr(),
    )?))
}

impl CidrDict {
    /// Open with warnings sent to `diag` (stderr, or collected for tests).
    pub fn open(
        name: &str,
        mode: OpenMode,
        dict_flags: u32,
        diag: Diag,
    ) -> Result<CidrDict, OpenError> {
        let mut diag = diag;
        let src = pu::open_source(TYPE, name, mode, &mut diag)?;
        Self::from_source(name, dict_flags, diag, src)
    }

    /// A table from source text in memory, as if read from a file: `name`
    /// stands for the file name in messages (fuzzing, tests).
    pub fn from_bytes(
        name: &str,
        data: &[u8],
        dict_flags: u32,
        diag: Diag,
    ) -> Result<CidrDict, OpenError> {
        let mut diag = diag;
        let src = pu::source_from_bytes(data, name, &mut diag);
        Self::from_source(name, dict_flags, diag, src)
    }

    fn from_source(
        name: &str,
        dict_flags: u32,
        diag: Diag,
        src: pu::Source,
    ) -> Result<CidrDict, OpenError> {
        let mut d = CidrDict {
            name: name.to_string(),
            flags: dict_flags | flags::PATTERN,
            entries: Vec::new(),
            diag,
        };
        let list = pu::build_rules(&src.lines, |lineno, bytes, nesting| {
            match d.parse_rule(bytes, nesting) {
                Ok(e) => Some(e),
                Err(why) => {
                    let what = format!("{why}: skipping this rule");
                    pu::warn_line(&mut d.diag, TYPE, &d.name, lineno, &what);
                    None
                }
            }
        });
        list.warn_unclosed(&mut d.diag, TYPE, &d.name);
        d.entries = list.rules;
        if let Some(e) = src.read_error {
            return Err(OpenError(format!("{TYPE} map {name}: read error: {e}")));
        }
        Ok(d)
    }

    /// Warnings given so far (when opened with [`Diag::collect`]).
    pub fn take_warnings(&mut self) -> Vec<String> {
        self.diag.take()
    }

    fn parse_rule(&mut self, line: &[u8], nesting: usize) -> Result<Entry, String> {
        let (op, pattern, mut value): (Op, Option<Pattern>, Vec<u8>) =
            if let Some(n) = keyword(line, "IF") {
                let mut p = n;
                let matched = pu::negations(line, &mut p);
                if p >= line.len() {
                    return Err("no address pattern".into());
                }
                let pat = &line[p..];
                let pat = &pat[..pu::trimmed_len(pat)];
                (Op::If, Some(parse_pattern(pat, matched)?), Vec::new())
            } else if let Some(n) = keyword(line, "ENDIF") {
                if skip_space(line, n) < line.len() {
                    return Err("garbage after ENDIF".into());
                }
                if nesting == 0 {
                    return Err("ENDIF without IF".into());
                }
                (Op::Endif, None, Vec::new())
            } else {
                let mut p = 0;
                let matched = pu::negations(line, &mut p);
                let start = p;
                while p < line.len() && !is_space(line[p]) {
                    p += 1;
                }
                let pat = &line[start..p];
                let v = &line[skip_space(line, p)..];
                let v = &v[..pu::trimmed_len(v)];
                if pat.is_empty() {
                    return Err("no address pattern".into());
                }
                let parsed = parse_pattern(pat, matched)?;
                if v.is_empty() {
                    return Err("no lookup result".into());
                }
                (Op::Match, Some(parsed), v.to_vec())
            };
        if self.flags & flags::SRC_RHS_IS_FILE != 0 {
            value = pu::file_to_b64(&value)?;
        }
        Ok(Entry {
            op,
            pattern,
            value: text(&value),
            block_end: None,
        })
    }
}

impl Dict for CidrDict {
    fn type_name(&self) -> &str {
        TYPE
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn flags(&self) -> u32 {
        self.flags
    }

    fn set_flags(&mut self, flags: u32) {
        self.flags = flags;
    }

    fn lookup(&mut self, key: &str) -> Result<Option<String>, DictError> {
        if crate::global::msg::verbose() > 0 {
            crate::global::msg::info(&format!("dict_cidr_lookup: {}: {key}", self.name));
        }
        // Addresses are not case-folded: inet_pton() takes either case.
        let k = pu::lookup_key(key, 0);
        let family = family_of(&k);
        let Some(addr) = pton(family, &k) else {
            return Ok(None);
        };
        let mut i = 0;
        while i < self.entries.len() {
            let e = &self.entries[i];
            match e.op {
                Op::Match => {
                    if let Some(p) = &e.pattern
                        && p.family == family
                        && entry_match(p, &addr)
                    {
                        return Ok(Some(e.value.clone()));
                    }
                    i += 1;
                }
                Op::If => {
                    if let Some(p) = &e.pattern
                        && p.family == family
                        && entry_match(p, &addr)
                    {
                        i += 1;
                        continue;
                    }
                    match e.block_end {
                        Some(end) => i = end + 1,
                        None => return Ok(None),
                    }
                }
                Op::Endif => i += 1,
            }
        }
        Ok(None)
    }

    fn update(&mut self, _key: &str, _value: &str) -> Result<Status, DictError> {
        Err(pu::unsupported(TYPE, &self.name, "update"))
    }

    fn delete(&mut self, _key: &str) -> Result<Status, DictError> {
        Err(pu::unsupported(TYPE, &self.name, "delete"))
    }

    fn sequence(&mut self, _how: Seq) -> Result<Option<(String, String)>, DictError> {
        Err(pu::unsupported(TYPE, &self.name, "sequence"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_inline(rules: &str) -> CidrDict {
        CidrDict::open(rules, OpenMode::ReadOnly, 0, Diag::collect()).unwrap()
    }

    #[test]
    fn networks_negation_and_blocks() {
        let mut d = open_inline(
            "{{192.0.2.0/24 doc}, {if !10.0.0.0/8}, {0.0.0.0/0 not-ten}, {endif}, {::/0 v6}}",
        );
        assert!(d.take_warnings().is_empty());
        assert_eq!(d.lookup("192.0.2.9").unwrap().as_deref(), Some("doc"));
        assert_eq!(d.lookup("10.1.1.1").unwrap(), None);
        assert_eq!(d.lookup("11.1.1.1").unwrap().as_deref(), Some("not-ten"));
        assert_eq!(d.lookup("2001:db8::1").unwrap().as_deref(), Some("v6"));
        assert_eq!(d.lookup("not-an-address").unwrap(), None);
    }

    #[test]
    fn bad_networks_are_skipped_with_postfix_texts() {
        let mut d = open_inline("{{192.0.2.1/24 x}, {1.2.3.0/280 wraps}}");
        assert_eq!(
            d.take_warnings(),
            [
                "cidr map {{192.0.2.1/24 x}, {1.2.3.0/280 wraps}}, line 1: non-null host address bits in \"192.0.2.1/24\", perhaps you should use \"192.0.2.0/24\" instead: skipping this rule"
            ]
        );
        // Postfix keeps the prefix length in an unsigned char: 280 is /24.
        assert_eq!(d.lookup("1.2.3.99").unwrap().as_deref(), Some("wraps"));
    }

    #[test]
    fn read_only() {
        let e = CidrDict::open("{{1.2.3.4 x}}", OpenMode::ReadWrite, 0, Diag::collect())
            .err()
            .unwrap();
        assert_eq!(e.0, "cidr:{{1.2.3.4 x}} map requires O_RDONLY access mode");
    }
}
