//! RFC 822 address lists parsed into a tree, as Postfix's tok822_parse
//! does: the flat token list (see [`crate::global::tok822`]) is walked from
//! right to left, comments are moved to the right of the address they
//! belong to, and the tokens of each address are grouped under an address
//! node. Route addresses (`phrase <addr>`), groups (`name: a, b;`) and
//! missing commas are handled the way Postfix handles them.
//!
//! The result is a top-level list of [`Item`]s: plain tokens (phrases,
//! comments, commas, angle brackets, group markers) and addresses. An
//! address's tokens may be replaced (after rewriting) and the list turned
//! back into header text with [`externalize`], in Postfix's header form
//! (one address per line, non-address text limited to 250 bytes per
//! address expression).

use crate::global::tok822::{self, Token};

/// A top-level element of a parsed address list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Tok(Token),
    /// The `:` that starts a named group.
    StartGroup,
    /// An address. `owned` is true while the tokens are those the parser
    /// grouped (no spaces are put between them on output); a rewritten
    /// address holds freshly scanned tokens, which may get spaces.
    Addr {
        toks: Vec<Token>,
        owned: bool,
    },
}

// ---------------------------------------------------------------- arena

const ATOM: u32 = 256;
const QSTRING: u32 = 257;
const COMMENT: u32 = 258;
const DOMLIT: u32 = 259;
const ADDR: u32 = 260;
const STARTGRP: u32 = 261;

#[derive(Clone)]
struct Node {
    ty: u32,
    text: String,
    prev: Option<usize>,
    next: Option<usize>,
    head: Option<usize>,
    tail: Option<usize>,
    owner: Option<usize>,
}

struct Arena {
    n: Vec<Node>,
}

impl Arena {
    fn alloc(&mut self, ty: u32, text: &str) -> usize {
        self.n.push(Node {
            ty,
            text: text.to_string(),
            prev: None,
            next: None,
            head: None,
            tail: None,
            owner: None,
        });
        self.n.len() - 1
    }

    fn ty(&self, i: usize) -> u32 {
        self.n[i].ty
    }

    /// Insert the list starting at t2 after t1; returns the list's tail.
    fn append(&mut self, t1: usize, t2: usize) -> usize {
        let next = self.n[t1].next;
        let owner = self.n[t1].owner;
        self.n[t1].next = Some(t2);
        self.n[t2].prev = Some(t1);
        self.n[t2].owner = owner;
        let mut t = t2;
        while let Some(nx) = self.n[t].next {
            t = nx;
            self.n[t].owner = owner;
        }
        self.n[t].next = next;
        if let Some(nx) = next {
            self.n[nx].prev = Some(t);
        }
        t
    }

    /// Insert the list starting at t2 before t1; returns the list's tail.
    fn prepend(&mut self, t1: usize, t2: usize) -> usize {
        let prev = self.n[t1].prev;
        let owner = self.n[t1].owner;
        if let Some(p) = prev {
            self.n[p].next = Some(t2);
        }
        self.n[t2].prev = prev;
        self.n[t2].owner = owner;
        let mut t = t2;
        while let Some(nx) = self.n[t].next {
            t = nx;
            self.n[t].owner = owner;
        }
        self.n[t].next = Some(t1);
        self.n[t1].prev = Some(t);
        t
    }

    fn cut_before(&mut self, tp: usize) -> Option<usize> {
        let prev = self.n[tp].prev;
        if let Some(p) = prev {
            self.n[p].next = None;
            self.n[tp].prev = None;
        }
        prev
    }

    fn unlink(&mut self, tp: usize) -> Option<usize> {
        let prev = self.n[tp].prev;
        let next = self.n[tp].next;
        if let Some(p) = prev {
            self.n[p].next = next;
        }
        if let Some(nx) = next {
            self.n[nx].prev = prev;
        }
        self.n[tp].prev = None;
        self.n[tp].next = None;
        prev
    }

    fn sub_append(&mut self, t1: usize, t2: usize) -> usize {
        if let Some(tail) = self.n[t1].tail {
            let t = self.append(tail, t2);
            self.n[t1].tail = Some(t);
            t
        } else {
            self.n[t1].head = Some(t2);
            self.n[t2].owner = Some(t1);
            let mut t = t2;
            while let Some(nx) = self.n[t].next {
                t = nx;
                self.n[t].owner = Some(t1);
            }
            self.n[t1].tail = Some(t);
            t
        }
    }

    /// Cluster the tokens strictly between left and right under a new
    /// address node; optionally insert a resynchronising comma.
    fn group(&mut self, left: usize, right: usize, add_comma: bool) -> usize {
        if left != right
            && let Some(first) = self.n[left].next
            && first != right
        {
            self.cut_before(right);
            self.cut_before(first);
            let group = self.alloc(ADDR, "");
            self.sub_append(group, first);
            self.append(left, group);
            self.append(group, right);
            if add_comma {
                let sync = self.alloc(b',' as u32, "");
                self.append(left, sync);
            }
        }
        left
    }

    fn prev(&self, i: usize) -> usize {
        // The list is bracketed by sentinels of type 0, so walking left
        // always ends at the head sentinel.
        self.n[i].prev.unwrap_or(i)
    }
}

fn token_node(a: &mut Arena, t: &Token) -> usize {
    match t {
        Token::Op(c) => a.alloc(*c as u32, ""),
        Token::Atom(v) => a.alloc(ATOM, v),
        Token::QString(v) => a.alloc(QSTRING, v),
        Token::DomLit(v) => a.alloc(DOMLIT, v),
        Token::Comment(v) => a.alloc(COMMENT, v),
    }
}

fn node_token(n: &Node) -> Token {
    match n.ty {
        ATOM => Token::Atom(n.text.clone()),
        QSTRING => Token::QString(n.text.clone()),
        DOMLIT => Token::DomLit(n.text.clone()),
        COMMENT => Token::Comment(n.text.clone()),
        c => Token::Op(char::from_u32(c).unwrap_or('?')),
    }
}

/// Parse header text into a list of items (Postfix's tok822_parse_limit;
/// `limit` > 0 bounds the number of tokens).
pub fn parse(text: &str, limit: usize) -> Vec<Item> {
    let mut toks = tok822::scan(text);
    if limit > 0 && toks.len() > limit {
        toks.truncate(limit);
    }
    if toks.is_empty() {
        return Vec::new();
    }
    let mut a = Arena { n: Vec::new() };
    let head = a.alloc(0, "");
    let mut last = head;
    for t in &toks {
        let i = token_node(&mut a, t);
        a.n[last].next = Some(i);
        a.n[i].prev = Some(last);
        last = i;
    }
    let tail = a.alloc(0, "");
    a.n[last].next = Some(tail);
    a.n[tail].prev = Some(last);

    const DO_WORD: u32 = 1;
    const DO_GROUP: u32 = 2;
    let mut state = DO_WORD;
    let mut right = tail;
    let mut tp = a.prev(tail);
    let is_op = |a: &Arena, i: usize, set: &str| {
        let t = a.ty(i);
        t <= 0xff && set.contains(char::from_u32(t).unwrap_or('\0'))
    };
    while a.ty(tp) != 0 {
        let t = a.ty(tp);
        if t == COMMENT {
            let prev = a.unlink(tp).unwrap_or(head);
            right = {
                a.prepend(right, tp);
                tp
            };
            tp = prev;
            continue;
        } else if t == b';' as u32 {
            right = a.group(tp, right, true);
            state = DO_GROUP | DO_WORD;
        } else if t == b':' as u32 && state & DO_GROUP != 0 {
            a.n[tp].ty = STARTGRP;
            a.group(tp, right, false);
            while a.ty(tp) != 0 && a.ty(tp) != b',' as u32 {
                tp = a.prev(tp);
            }
            right = tp;
            continue;
        } else if t == b'>' as u32 {
            right = a.group(tp, right, true);
            // Skip to the '<', moving comments out of the route address.
            while a.ty(tp) != 0 && a.ty(tp) != b'<' as u32 {
                if a.ty(tp) == COMMENT {
                    let prev = a.unlink(tp).unwrap_or(head);
                    a.prepend(right, tp);
                    right = tp;
                    tp = prev;
                    continue;
                }
                tp = a.prev(tp);
            }
            a.group(tp, right, false);
            while a.ty(tp) != 0 && (a.ty(tp) > 0xff || !is_op(&a, tp, ">;,:")) {
                tp = a.prev(tp);
            }
            right = tp;
            state |= DO_WORD;
            continue;
        } else if t == ATOM || t == QSTRING || t == DOMLIT {
            if state & DO_WORD == 0 {
                let l = a.group(tp, right, true);
                right = a.n[l].next.unwrap_or(right);
            }
            state &= !DO_WORD;
        } else if t == b',' as u32 {
            right = a.group(tp, right, false);
            state |= DO_WORD;
        } else {
            state |= DO_WORD;
        }
        tp = a.prev(tp);
    }
    a.group(tp, right, false);

    // Collect the top level between the sentinels.
    let mut out = Vec::new();
    let mut cur = a.n[head].next;
    while let Some(i) = cur {
        if i == tail {
            break;
        }
        let n = &a.n[i];
        match n.ty {
            ADDR => {
                let mut toks = Vec::new();
                let mut c = n.head;
                while let Some(j) = c {
                    toks.push(node_token(&a.n[j]));
                    c = a.n[j].next;
                }
                out.push(Item::Addr { toks, owned: true });
            }
            STARTGRP => out.push(Item::StartGroup),
            _ => out.push(Item::Tok(node_token(n))),
        }
        cur = n.next;
    }
    out
}

fn non_operator(i: &Item) -> bool {
    match i {
        Item::Addr { .. } => true,
        Item::StartGroup => false,
        Item::Tok(t) => !matches!(t, Token::Op(_)),
    }
}

fn item_space_after(i: &Item, next: Option<&Item>) -> bool {
    let Some(next) = next else {
        return false;
    };
    if matches!(i, Item::Tok(Token::Op(',')) | Item::StartGroup)
        || matches!(next, Item::Tok(Token::Op('<')))
    {
        return true;
    }
    non_operator(i) && non_operator(next)
}

/// An address's tokens in internal form (unquoted).
pub fn addr_internal(toks: &[Token], owned: bool) -> String {
    if owned {
        let mut s = String::new();
        for t in toks {
            match t {
                Token::Op(c) => s.push(*c),
                Token::Atom(v) | Token::QString(v) | Token::Comment(v) => s.push_str(v),
                Token::DomLit(v) => {
                    s.push('[');
                    s.push_str(v);
                    s.push(']');
                }
            }
        }
        s
    } else {
        tok822::internalize(toks)
    }
}

/// An address's tokens in external form (the DEFL form that Postfix hands
/// to the rewriting and mapping code).
pub fn addr_external(toks: &[Token], owned: bool) -> String {
    if owned {
        let mut s = String::new();
        for t in toks {
            s.push_str(&tok822::externalize(std::slice::from_ref(t)));
        }
        s
    } else {
        tok822::externalize(toks)
    }
}

/// Postfix's quote_822_local with the 8-bit-clean flag: quote the local
/// part when it is not a valid dot-string.
pub fn quote_local_8bit(addr: &str) -> String {
    crate::global::tok822_tree::quote_822_local_flags(addr, true, false)
}

/// quote_822_local_flags: `eight_bit_clean` allows 8-bit bytes unquoted,
/// `bare` treats the whole text as a local part.
pub fn quote_822_local_flags(mbox: &str, eight_bit_clean: bool, bare: bool) -> String {
    use crate::global::quote_822_local as q;
    let mut flags = 0;
    if eight_bit_clean {
        flags |= q::FLAG_8BITCLEAN;
    }
    if bare {
        flags |= q::FLAG_BARE_LOCALPART;
    }
    q::quote_822_local_flags(mbox, flags)
}

/// The items back to header text (TOK822_STR_HEAD): a newline after each
/// comma, addresses quoted as needed, and an address expression whose
/// non-address text exceeds 250 bytes reduced to `<address>` (with a
/// warning through `warn`).
pub fn externalize_head(items: &[Item], warn: &mut dyn FnMut(&str)) -> String {
    const MAX_NONADDR: usize = 250;
    let mut vp = String::new();
    let mut start = 0usize;
    let mut addr: Option<Option<usize>> = None; // Some(Some(i)): address item i; Some(None): "<>"
    let mut addr_len = 0usize;
    let enforce = |vp: &mut String,
                   start: usize,
                   addr: &Option<Option<usize>>,
                   addr_len: usize,
                   warn: &mut dyn FnMut(&str)| {
        if let Some(a) = addr
            && vp.len() - addr_len > start + MAX_NONADDR
        {
            warn(&format!(
                "stripping too many comments from address: {}...",
                crate::global::msg::printable(
                    &vp[start..].chars().take(100).collect::<String>(),
                    false
                )
            ));
            vp.truncate(start);
            vp.push('<');
            if let Some(i) = a
                && let Some(Item::Addr { toks, owned }) = items.get(*i)
            {
                vp.push_str(&quote_822_local_flags(
                    &addr_internal(toks, *owned),
                    true,
                    false,
                ));
            }
            vp.push('>');
        }
    };
    for (i, it) in items.iter().enumerate() {
        match it {
            Item::Tok(Token::Op(',')) => {
                enforce(&mut vp, start, &addr, addr_len, warn);
                vp.push_str(",\n");
                start = vp.len();
                addr = None;
                addr_len = 0;
                continue;
            }
            Item::Addr { toks, owned } => {
                addr = Some(Some(i));
                let q = quote_822_local_flags(&addr_internal(toks, *owned), true, false);
                addr_len = q.len();
                vp.push_str(&q);
            }
            Item::StartGroup => vp.push(':'),
            Item::Tok(Token::Op('<')) => {
                if matches!(items.get(i + 1), Some(Item::Tok(Token::Op('>')))) {
                    addr = Some(None);
                    addr_len = 0;
                }
                vp.push('<');
            }
            Item::Tok(t) => vp.push_str(&tok822::externalize(std::slice::from_ref(t))),
        }
        if item_space_after(it, items.get(i + 1)) {
            vp.push(' ');
        }
    }
    enforce(&mut vp, start, &addr, addr_len, warn);
    vp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Addr { toks, owned } => Some(addr_external(toks, *owned)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn parse_shapes() {
        let p = parse("John Doe <john@example.com>, jane@example.org (Jane)", 0);
        assert_eq!(addrs(&p), vec!["john@example.com", "jane@example.org"]);
        let mut w = |_: &str| {};
        assert_eq!(
            externalize_head(&p, &mut w),
            "John Doe <john@example.com>,\njane@example.org (Jane)"
        );
        let p = parse("list: a@b, c@d;", 0);
        assert_eq!(addrs(&p), vec!["a@b", "c@d"]);
        assert_eq!(externalize_head(&p, &mut w), "list: a@b,\nc@d;");
        // A missing comma is put back.
        let p = parse("a@b c@d", 0);
        assert_eq!(addrs(&p), vec!["a@b", "c@d"]);
        let p = parse("(comment) user", 0);
        assert_eq!(addrs(&p), vec!["user"]);
        assert_eq!(externalize_head(&p, &mut w), "user (comment)");
        let p = parse("\"a b\"@c", 0);
        assert_eq!(externalize_head(&p, &mut w), "\"a b\"@c");
        let p = parse("<>", 0);
        assert_eq!(externalize_head(&p, &mut w), "<>");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_822_local_flags("a b@c", true, false), "\"a b\"@c");
        assert_eq!(quote_822_local_flags("a.b@c", true, false), "a.b@c");
        assert_eq!(
            quote_822_local_flags("@r:a..b@c", true, false),
            "@r:\"a..b\"@c"
        );
        assert_eq!(quote_822_local_flags("", true, false), "\"\"");
    }
}
