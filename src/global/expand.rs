//! `$name` expansion in parameter values, as Postfix 3.7 does it.
//!
//! Forms: `$name`, `${name}`, `$(name)`, `$$` (a literal `$`), `${name?text}`,
//! `${name:text}`, `${name?{t1}:{t2}}`, and relational expressions
//! `${{a} OP {b} ? {t} : {f}}` with `== != < <= > >=` (numeric when both sides
//! are all digits), plus the compatibility-level operators `<level` etc.
//! Syntax errors produce Postfix's warnings and set [`PARSE_ERROR`]; the
//! caller decides whether that is fatal.

use crate::global::msg;

/// A syntax error was found (a warning was logged).
pub const PARSE_ERROR: u32 = 1 << 0;
/// A `$name` referred to an undefined name.
pub const PARSE_UNDEF: u32 = 1 << 1;

/// Expand looked-up values again.
pub const FLAG_RECURSE: u32 = 1 << 0;
/// Keep what is already in the result buffer.
pub const FLAG_APPEND: u32 = 1 << 1;
/// Only scan: call the lookup for every name in every branch, produce nothing.
pub const FLAG_SCAN: u32 = 1 << 2;
/// Replace unprintable characters in looked-up values by `_`.
pub const FLAG_PRINTABLE: u32 = 1 << 3;

/// Why a name is looked up: to use its value, or to test it (`?` and `:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Use,
    Test,
}

/// The lookup callback: a name's value, or `None` when undefined.
pub type Lookup<'a> = dyn FnMut(&str, Mode) -> Option<String> + 'a;

const WHITESPACE: &[char] = &[' ', '\t', '\r', '\n'];

fn is_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Token {
    Literal,
    Expr,
}

/// Split a value into literal text and `$` expressions, calling `action` for
/// each piece. Returns the OR of the action results and parse errors.
fn mac_parse(value: &str, action: &mut dyn FnMut(Token, &str) -> u32) -> u32 {
    let v: Vec<char> = value.chars().collect();
    let mut buf = String::new();
    let mut status = 0;
    let mut i = 0;
    while i < v.len() {
        if v[i] != '$' {
            buf.push(v[i]);
            i += 1;
        } else if i + 1 < v.len() && v[i + 1] == '$' {
            buf.push('$');
            i += 2;
        } else {
            if !buf.is_empty() {
                status |= action(Token::Literal, &buf);
                buf.clear();
            }
            i += 1;
            if i < v.len() && (v[i] == '{' || v[i] == '(') {
                let open = v[i];
                let close = if open == '{' { '}' } else { ')' };
                let mut level = 1;
                i += 1;
                let start = i;
                let mut ep = i;
                let mut truncated = false;
                while level > 0 {
                    if ep >= v.len() {
                        msg::warn(&format!("truncated macro reference: \"{value}\""));
                        status |= PARSE_ERROR;
                        truncated = true;
                        break;
                    }
                    if v[ep] == open {
                        level += 1;
                    }
                    if v[ep] == close {
                        level -= 1;
                    }
                    ep += 1;
                }
                if truncated {
                    break;
                }
                buf.extend(&v[start..ep - 1]);
                i = ep;
            } else {
                let start = i;
                while i < v.len() && (is_alnum(v[i]) || v[i] == '_') {
                    i += 1;
                }
                buf.extend(&v[start..i]);
            }
            if buf.is_empty() {
                status |= PARSE_ERROR;
                msg::warn(&format!("empty macro name: \"{value}\""));
                break;
            }
            status |= action(Token::Expr, &buf);
            buf.clear();
        }
    }
    if !buf.is_empty() && status & PARSE_ERROR == 0 {
        status |= action(Token::Literal, &buf);
    }
    status
}

struct Ctx<'a, 'b> {
    result: &'a mut String,
    flags: u32,
    filter: Option<&'a str>,
    lookup: &'a mut Lookup<'b>,
    status: u32,
    level: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Ge,
    Gt,
}

fn op_from(s: &str) -> Option<Op> {
    Some(match s {
        "==" => Op::Eq,
        "!=" => Op::Ne,
        "<" => Op::Lt,
        "<=" => Op::Le,
        ">=" => Op::Ge,
        ">" => Op::Gt,
        _ => return None,
    })
}

fn apply(op: Op, delta: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Op::Eq => delta == Equal,
        Op::Ne => delta != Equal,
        Op::Lt => delta == Less,
        Op::Le => delta != Greater,
        Op::Ge => delta != Less,
        Op::Gt => delta == Greater,
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
}

/// The default relational operator: numeric when both sides are digits.
fn eval_default(left: &str, op: Op, right: &str) -> bool {
    if all_digits(left) && all_digits(right) {
        let l: i64 = left
            .parse()
            .unwrap_or_else(|_| msg::fatal(&format!("mac_exp_eval: bad conversion: {left}")));
        let r: i64 = right
            .parse()
            .unwrap_or_else(|_| msg::fatal(&format!("mac_exp_eval: bad conversion: {right}")));
        apply(op, (l - r).cmp(&0))
    } else {
        apply(op, left.as_bytes().cmp(right.as_bytes()))
    }
}

/// Parse a compatibility level `major[.minor[.patch]]` into one number.
/// Postfix's warning is given on bad syntax.
pub fn compat_level_from_string(s: &str) -> Option<i64> {
    fn num(s: &str) -> Option<(i64, &str)> {
        // strtol: optional blanks and sign, then digits.
        let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
        let (neg, t2) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        let n = t2.bytes().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        let v: i64 = t2[..n].parse().ok()?;
        Some((if neg { -v } else { v }, &t2[n..]))
    }
    let bad = || {
        msg::warn(&format!("malformed compatibility level syntax: \"{s}\""));
        None
    };
    let Some((major, rest)) = num(s) else {
        return bad();
    };
    if !(rest.is_empty() || rest.starts_with('.')) || !(0..=(i64::MAX >> 20)).contains(&major) {
        return bad();
    }
    let mut res = major << 20;
    if rest.is_empty() {
        return Some(res);
    }
    let Some((minor, rest)) = num(&rest[1..]) else {
        return bad();
    };
    if !(rest.is_empty() || rest.starts_with('.')) || !(0..=0x3ff).contains(&minor) {
        return bad();
    }
    res |= minor << 10;
    if rest.is_empty() {
        return Some(res);
    }
    let Some((patch, rest)) = num(&rest[1..]) else {
        return bad();
    };
    if !rest.is_empty() || !(0..=0x3ff).contains(&patch) {
        return bad();
    }
    Some(res | patch)
}

/// Take `{payload}` at the start of `s` (which starts with `{`), balancing
/// braces; returns the payload and the rest after trailing whitespace.
fn extract_curly<'s>(ctx: &mut Ctx, s: &'s str) -> Option<(&'s str, &'s str)> {
    let mut level = 0;
    for (i, c) in s.char_indices() {
        if c == '{' {
            level += 1;
        } else if c == '}' {
            level -= 1;
            if level <= 0 {
                let payload = &s[1..i];
                let rest = s[i + 1..].trim_start_matches(WHITESPACE);
                return Some((payload, rest));
            }
        }
    }
    parse_error(
        ctx,
        &format!("unbalanced {{}} in attribute expression: \"{s}\""),
    );
    None
}

fn parse_error(ctx: &mut Ctx, text: &str) -> u32 {
    msg::warn(text);
    ctx.status |= PARSE_ERROR;
    ctx.status
}

/// Whitespace then `{`: the position of the `{`.
fn find_left_curly(s: &str) -> Option<&str> {
    let t = s.trim_start_matches(WHITESPACE);
    if t.starts_with('{') { Some(t) } else { None }
}

fn trunc20(s: &str) -> String {
    s.chars().take(20).collect()
}

/// Parse `{a} OP {b}` at the start of `s`. On success, returns the truth value
/// as a fake lookup result ("true" or "") and the rest of the text.
fn parse_relational<'s>(ctx: &mut Ctx, s: &'s str) -> Result<(Option<String>, &'s str), ()> {
    let Some((left, cp)) = extract_curly(ctx, s) else {
        return Err(());
    };
    let op_len = cp
        .find(|c: char| !"<>!=?+-*/~&|%".contains(c))
        .unwrap_or(cp.len());
    let op_str = &cp[..op_len];
    let Some(op) = op_from(op_str) else {
        parse_error(
            ctx,
            &format!(
                "\"==\" or \"!=\"\" or \"<\"\" or \"<=\"\" or \">=\"\" or \">\" expected at: \"...{left}}}>>>{}\"",
                trunc20(cp)
            ),
        );
        return Err(());
    };
    let mut cp = &cp[op_len..];
    let mut compat = false;
    if cp.starts_with(is_alnum) {
        let type_len = cp.find(|c: char| !is_alnum(c)).unwrap_or(cp.len());
        let suffix = &cp[..type_len];
        if suffix == "level" {
            compat = true;
            cp = &cp[type_len..];
        } else {
            parse_error(
                ctx,
                &format!("bad operator suffix at: \"...{op_str}>>>{suffix}\""),
            );
            return Err(());
        }
    }
    let Some(rcp) = find_left_curly(cp) else {
        parse_error(
            ctx,
            &format!(
                "\"{{expression}}\" expected at: \"...{{{left}}} {op_str}>>>{}\"",
                trunc20(cp)
            ),
        );
        return Err(());
    };
    let Some((right, rest)) = extract_curly(ctx, rcp) else {
        return Err(());
    };
    let mut lbuf = String::new();
    let mut rbuf = String::new();
    let (flags, filter) = (ctx.flags & !FLAG_APPEND, ctx.filter);
    // The operands are expanded at this nesting level, not afresh: a value
    // that compares itself (`a = ${{$a} == {x}}`) must hit the nesting
    // limit rather than recurse until the stack overflows (Postfix 3.7
    // restarts the count at 0 there, and crashes).
    // Past the nesting limit, stop at once: expanding the right operand
    // too would descend to the limit again at every level, 2^100 times.
    ctx.status |= expand_at(&mut lbuf, left, flags, filter, ctx.lookup, ctx.level);
    if ctx.status & NESTING != 0 {
        return Err(());
    }
    ctx.status |= expand_at(&mut rbuf, right, flags, filter, ctx.lookup, ctx.level);
    let mut result = None;
    if ctx.flags & FLAG_SCAN == 0 {
        let truth = if compat {
            match (
                compat_level_from_string(&lbuf),
                compat_level_from_string(&rbuf),
            ) {
                (Some(l), Some(r)) => Some(apply(op, l.cmp(&r))),
                _ => None,
            }
        } else {
            Some(eval_default(&lbuf, op, &rbuf))
        };
        match truth {
            None => ctx.status |= PARSE_ERROR,
            Some(t) => result = Some(if t { "true" } else { "" }.to_string()),
        }
    }
    if ctx.status & PARSE_ERROR != 0 {
        return Err(());
    }
    Ok((result, rest))
}

fn callback(ctx: &mut Ctx, token: Token, buf: &str) -> u32 {
    let level = ctx.level;
    ctx.level += 1;
    if level > 100 {
        parse_error(ctx, &format!("unreasonable macro call nesting: \"{buf}\""));
        ctx.status |= NESTING;
    }
    if ctx.status & PARSE_ERROR != 0 {
        return ctx.status;
    }
    if token == Token::Literal {
        if ctx.flags & FLAG_SCAN == 0 {
            ctx.result.push_str(buf);
        }
        ctx.level -= 1;
        return ctx.status;
    }
    let lookup: Option<String>;
    let mut cp: &str;
    let ch: Option<char>;
    if let Some(rel) = find_left_curly(buf) {
        match parse_relational(ctx, rel) {
            Err(()) => return ctx.status,
            Ok((l, rest)) => {
                lookup = l;
                cp = rest;
            }
        }
        match cp.chars().next() {
            None => ch = None,
            Some(c) if c == '?' || c == ':' => {
                ch = Some(c);
                cp = &cp[1..];
            }
            Some(_) => {
                parse_error(
                    ctx,
                    &format!("\"?\" or \":\" expected at: \"...}}>>>{}\"", trunc20(cp)),
                );
                return ctx.status;
            }
        }
    } else {
        let start_off = buf.len() - buf.trim_start_matches(WHITESPACE).len();
        let s = &buf[start_off..];
        let mut name_end = s.len();
        let mut found: Option<char> = None;
        let mut rest = "";
        for (i, c) in s.char_indices() {
            let t = s[i..].trim_start_matches(WHITESPACE);
            match t.chars().next() {
                None => {
                    name_end = i;
                    break;
                }
                Some(q) if q == '?' || q == ':' => {
                    name_end = i;
                    found = Some(q);
                    rest = &t[1..];
                    break;
                }
                _ => {}
            }
            if !(is_alnum(c) || c == '_') {
                let before = &buf[..start_off + i];
                parse_error(
                    ctx,
                    &format!(
                        "attribute name syntax error at: \"...{before}>>>{}\"",
                        trunc20(&s[i..])
                    ),
                );
                return ctx.status;
            }
        }
        let name = &s[..name_end];
        let mode = if found.is_some() {
            Mode::Test
        } else {
            Mode::Use
        };
        lookup = (ctx.lookup)(name, mode);
        ch = found;
        cp = rest;
    }
    let nonempty = lookup.as_deref().is_some_and(|l| !l.is_empty());
    let scan = ctx.flags & FLAG_SCAN != 0;
    match ch {
        Some('?') | Some(':') => {
            if ch == Some('?') {
                let iftrue;
                if let Some(c) = find_left_curly(cp) {
                    match extract_curly(ctx, c) {
                        None => return ctx.status,
                        Some((p, rest)) => {
                            iftrue = p;
                            cp = rest;
                        }
                    }
                } else {
                    iftrue = cp;
                    cp = "";
                }
                if nonempty || scan {
                    ctx.status |= mac_parse(iftrue, &mut |t, b| callback(ctx, t, b));
                }
                if cp.is_empty() {
                    ctx.level -= 1;
                    return ctx.status;
                }
                if !cp.starts_with(':') {
                    parse_error(
                        ctx,
                        &format!("\":\" expected at: \"...{iftrue}}}>>>{}\"", trunc20(cp)),
                    );
                    return ctx.status;
                }
                cp = &cp[1..];
            }
            let iffalse;
            if let Some(c) = find_left_curly(cp) {
                match extract_curly(ctx, c) {
                    None => return ctx.status,
                    Some((p, rest)) => {
                        iffalse = p;
                        cp = rest;
                    }
                }
            } else {
                iffalse = cp;
                cp = "";
            }
            if !nonempty || scan {
                ctx.status |= mac_parse(iffalse, &mut |t, b| callback(ctx, t, b));
            }
            if !cp.is_empty() {
                parse_error(
                    ctx,
                    &format!("unexpected input at: \"...{iffalse}}}>>>{}\"", trunc20(cp)),
                );
                return ctx.status;
            }
        }
        _ => match lookup {
            None => ctx.status |= PARSE_UNDEF,
            Some(l) if l.is_empty() || scan => {}
            Some(l) => {
                if ctx.flags & FLAG_RECURSE != 0 {
                    ctx.status |= mac_parse(&l, &mut |t, b| callback(ctx, t, b));
                } else if ctx.flags & FLAG_PRINTABLE != 0 {
                    ctx.result.extend(
                        l.chars()
                            .map(|c| if (' '..='~').contains(&c) { c } else { '_' }),
                    );
                } else if let Some(f) = ctx.filter {
                    ctx.result
                        .extend(l.chars().map(|c| if f.contains(c) { c } else { '_' }));
                } else {
                    ctx.result.push_str(&l);
                }
            }
        },
    }
    ctx.level -= 1;
    ctx.status
}

/// Expand `pattern` into `result` (cleared first unless [`FLAG_APPEND`] or
/// [`FLAG_SCAN`]). Returns the status bits [`PARSE_ERROR`] / [`PARSE_UNDEF`].
pub fn mac_expand(
    result: &mut String,
    pattern: &str,
    flags: u32,
    filter: Option<&str>,
    lookup: &mut Lookup,
) -> u32 {
    expand_at(result, pattern, flags, filter, lookup, 0) & !NESTING
}

/// Internal status bit: the nesting limit was hit (with PARSE_ERROR).
const NESTING: u32 = 1 << 30;

/// [`mac_expand`] starting at nesting `level`.
fn expand_at(
    result: &mut String,
    pattern: &str,
    flags: u32,
    filter: Option<&str>,
    lookup: &mut Lookup,
    level: u32,
) -> u32 {
    if flags & (FLAG_APPEND | FLAG_SCAN) == 0 {
        result.clear();
    }
    let mut ctx = Ctx {
        result,
        flags,
        filter,
        lookup,
        status: 0,
        level,
    };
    mac_parse(pattern, &mut |t, b| callback(&mut ctx, t, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn exp(pattern: &str, vars: &[(&str, &str)]) -> (String, u32) {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let mut out = String::new();
        let st = mac_expand(&mut out, pattern, FLAG_RECURSE, None, &mut |n, _| {
            m.get(n).cloned()
        });
        (out, st)
    }

    #[test]
    fn table() {
        let v = [("a", "A"), ("e", ""), ("r", "$a$a"), ("cl", "3.6")];
        let cases: &[(&str, &str, u32)] = &[
            ("x$a.y", "xA.y", 0),
            ("${a}${e}$(a)", "AA", 0),
            ("$$a", "$a", 0),
            ("$r", "AA", 0),
            ("${a?yes}", "yes", 0),
            ("${e?yes}", "", 0),
            ("${e:no}", "no", 0),
            ("${a:no}", "", 0),
            ("${a?{t}:{f}}", "t", 0),
            ("${e?{t}:{f}}", "f", 0),
            ("${u?{t}:{f}}", "f", 0),
            ("${{1} < {2}?y:n}", "y:n", 0),
            ("${{10} < {9}?{y}:{n}}", "n", 0),
            ("${{b} > {a}?{y}:{n}}", "y", 0),
            ("${{$cl} <level {2} ? {a} : {b}}", "b", 0),
            ("${{$cl} <level {3.10} ? {a} : {b}}", "a", 0),
            ("${{1} == {1}}", "true", 0),
            ("$u", "", PARSE_UNDEF),
            ("${a", "", PARSE_ERROR),
            ("x$", "x", PARSE_ERROR),
            ("${{a} =~ {b}?x}", "", PARSE_ERROR),
            ("${a.b}", "", PARSE_ERROR),
        ];
        for (p, want, st) in cases {
            assert_eq!(exp(p, &v), (want.to_string(), *st), "pattern {p}");
        }
    }

    #[test]
    fn recursion_is_bounded() {
        let (_, st) = exp("$a", &[("a", "$a")]);
        assert_eq!(st & PARSE_ERROR, PARSE_ERROR);
    }

    #[test]
    fn recursion_through_relational_operands_is_bounded() {
        // Found by fuzzing (fuzz/regressions/expand/): each operand used to
        // be expanded with a fresh nesting count, so this recursed until
        // the stack overflowed.
        let (_, m) = crate::global::msg::sandbox(|| {
            let (out, st) = exp("$a", &[("a", "${{$a} == {x}}")]);
            assert_eq!((out.as_str(), st & PARSE_ERROR), ("", PARSE_ERROR));
        });
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].starts_with("warning: unreasonable macro call nesting: "),
            "{m:?}"
        );
        // Two self-references per level used to take 2^100 steps (each
        // operand descending to the limit again): now the first one to hit
        // the limit ends the expansion.
        let (_, m) = crate::global::msg::sandbox(|| {
            let (out, st) = exp("$a", &[("a", "${{$a} <= {$a$a}}")]);
            assert_eq!((out.as_str(), st), ("", PARSE_ERROR));
        });
        assert_eq!(m.len(), 1, "{m:?}");
        // Legitimate nesting through operands still works.
        let (out, st) = exp(
            "${{$b} == {1} ? {one} : {other}}",
            &[("b", "${{$c} < {2}?{1}:{0}}"), ("c", "1")],
        );
        assert_eq!((out.as_str(), st), ("one", 0));
    }

    #[test]
    fn compat_levels() {
        assert_eq!(compat_level_from_string("2"), Some(2 << 20));
        assert_eq!(compat_level_from_string("3.6"), Some((3 << 20) | (6 << 10)));
        assert_eq!(
            compat_level_from_string("3.6.1"),
            Some((3 << 20) | (6 << 10) | 1)
        );
        assert_eq!(compat_level_from_string("x"), None);
        assert_eq!(compat_level_from_string("3.x"), None);
    }
}
