//! RFC 822 tokens as Postfix's tokenizer sees them (its tok822 module): the
//! flat token list, and conversion back to text in internal (unquoted) and
//! external (quoted) form.
//!
//! Token rules: blanks, tabs, CR and LF separate tokens; `(...)` is a
//! comment (nested, kept verbatim with its parentheses); `[...]` a domain
//! literal; `"..."` a quoted string; each of `|%!()<>@,;:\".[]` is an
//! operator; anything else is an atom, where a backslash escapes the next
//! character. An atom that holds a blank, a control character or an
//! operator character (after unescaping) becomes a quoted string, so that it
//! is quoted again when externalised.
//!
//! Text is one-char-per-byte; a NUL ends the input as in C.

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A single-character operator.
    Op(char),
    Atom(String),
    /// A quoted string's contents, without the quotes and escapes.
    QString(String),
    /// A domain literal's contents, without the brackets.
    DomLit(String),
    /// A comment, verbatim with its parentheses.
    Comment(String),
}

/// Is `c` one of the operator characters `|%!()<>@,;:\".[]`?
fn is_opchar(c: char) -> bool {
    matches!(
        c,
        '|' | '%'
            | '!'
            | '('
            | ')'
            | '<'
            | '>'
            | '@'
            | ','
            | ';'
            | ':'
            | '\\'
            | '"'
            | '.'
            | '['
            | ']'
    )
}

fn is_space_tab_cr_lf(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_cntrl(c: char) -> bool {
    (c as u32) < 32 || c as u32 == 127
}

/// The input of [`scan`]: text up to its first NUL, one char per position.
/// ASCII text (the usual case) is read in place; other text is decoded to
/// chars once.
trait Chars {
    fn len(&self) -> usize;
    fn at(&self, i: usize) -> char;
}

impl Chars for [u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
    fn at(&self, i: usize) -> char {
        self[i] as char
    }
}

impl Chars for [char] {
    fn len(&self) -> usize {
        <[char]>::len(self)
    }
    fn at(&self, i: usize) -> char {
        self[i]
    }
}

/// Collect characters while `cond` holds; a backslash takes the next
/// character literally. Blanks are stored as a space. Returns the index
/// where collection stopped.
fn collect<S: Chars + ?Sized>(
    s: &S,
    mut i: usize,
    out: &mut String,
    cond: impl Fn(char) -> bool,
) -> usize {
    // The plain run first, to size the token once.
    let mut j = i;
    while j < s.len() && s.at(j) != '\\' && cond(s.at(j)) {
        j += 1;
    }
    out.reserve(j - i);
    while i < s.len() {
        let mut c = s.at(i);
        if c == '\\' {
            i += 1;
            if i >= s.len() {
                break;
            }
            c = s.at(i);
        } else if !cond(c) {
            break;
        }
        out.push(if is_space_tab_cr_lf(c) { ' ' } else { c });
        i += 1;
    }
    i
}

/// Split text into tokens (Postfix's tok822_scan).
pub fn scan(text: &str) -> Vec<Token> {
    let text = match text.find('\0') {
        Some(n) => &text[..n],
        None => text,
    };
    if text.is_ascii() {
        scan_chars(text.as_bytes())
    } else {
        let mut s = Vec::with_capacity(text.len());
        s.extend(text.chars());
        scan_chars(&s[..])
    }
}

fn scan_chars<S: Chars + ?Sized>(s: &S) -> Vec<Token> {
    let mut out = Vec::with_capacity(8);
    let mut i = 0;
    while i < s.len() {
        let c = s.at(i);
        i += 1;
        if is_space_tab_cr_lf(c) {
            continue;
        }
        if c == '(' {
            let mut v = String::from("(");
            let mut level = 1;
            while i < s.len() {
                let ch = s.at(i);
                v.push(ch);
                i += 1;
                if ch == '(' {
                    level += 1;
                } else if ch == ')' {
                    level -= 1;
                    if level == 0 {
                        break;
                    }
                } else if ch == '\\' {
                    if i >= s.len() {
                        break;
                    }
                    v.push(s.at(i));
                    i += 1;
                }
            }
            out.push(Token::Comment(v));
        } else if c == '[' {
            let mut v = String::new();
            i = collect(s, i, &mut v, |c| c != ']');
            if i < s.len() {
                i += 1;
            }
            out.push(Token::DomLit(v));
        } else if c == '"' {
            let mut v = String::new();
            i = collect(s, i, &mut v, |c| c != '"');
            if i < s.len() {
                i += 1;
            }
            out.push(Token::QString(v));
        } else if c != '\\' && is_opchar(c) {
            out.push(Token::Op(c));
        } else {
            let mut v = String::new();
            i = collect(s, i - 1, &mut v, |c| {
                !is_space_tab_cr_lf(c) && !is_opchar(c)
            });
            if v.chars().any(|c| c == ' ' || is_cntrl(c) || is_opchar(c)) {
                out.push(Token::QString(v));
            } else {
                out.push(Token::Atom(v));
            }
        }
    }
    out
}

fn non_operator(t: &Token) -> bool {
    !matches!(t, Token::Op(_))
}

/// Whether a space goes between `t` and the token after it.
fn space_after(t: &Token, next: Option<&Token>) -> bool {
    let Some(next) = next else {
        return false;
    };
    if matches!(t, Token::Op(',')) || matches!(next, Token::Op('<')) {
        return true;
    }
    non_operator(t) && non_operator(next)
}

/// About how long the tokens are as text: the output's first allocation.
fn text_len(tokens: &[Token]) -> usize {
    tokens
        .iter()
        .map(|t| match t {
            Token::Op(_) => 2,
            Token::Atom(v) | Token::QString(v) | Token::DomLit(v) | Token::Comment(v) => {
                v.len() + 3
            }
        })
        .sum()
}

/// Tokens back to text in internal form (quoted strings unquoted).
pub fn internalize(tokens: &[Token]) -> String {
    let mut out = String::with_capacity(text_len(tokens));
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Token::Op(c) => out.push(*c),
            Token::Atom(v) | Token::QString(v) | Token::Comment(v) => out.push_str(v),
            Token::DomLit(v) => {
                out.push('[');
                out.push_str(v);
                out.push(']');
            }
        }
        if space_after(t, tokens.get(i + 1)) {
            out.push(' ');
        }
    }
    out
}

fn copy_quoted(out: &mut String, text: &str, quote_set: &str) {
    for c in text.chars() {
        if quote_set.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Tokens back to text in external form (quoted strings quoted again);
/// a comma is followed by a space.
pub fn externalize(tokens: &[Token]) -> String {
    let mut out = String::with_capacity(text_len(tokens));
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Token::Op(',') => {
                out.push_str(", ");
                continue;
            }
            Token::Op(c) => out.push(*c),
            Token::Atom(v) | Token::Comment(v) => out.push_str(v),
            Token::QString(v) => {
                out.push('"');
                copy_quoted(&mut out, v, "\"\\\r\n");
                out.push('"');
            }
            Token::DomLit(v) => {
                out.push('[');
                copy_quoted(&mut out, v, "\\\r\n");
                out.push(']');
            }
        }
        if space_after(t, tokens.get(i + 1)) {
            out.push(' ');
        }
    }
    out
}

/// A node of the parse tree that Postfix's tok822_parse builds: tokens,
/// address groups and the start of a named group, in a doubly linked list
/// (kept in an arena, linked by index).
#[derive(Debug, Clone)]
enum Kind {
    Sentinel,
    Tok(Token),
    Addr,
    StartGrp,
}

#[derive(Debug, Clone)]
struct Node {
    kind: Kind,
    prev: Option<usize>,
    next: Option<usize>,
    head: Option<usize>,
    tail: Option<usize>,
    owner: Option<usize>,
}

/// The parse tree (tok822_parse): a token list where the tokens of each
/// address are grouped under an address node.
#[derive(Debug, Clone)]
pub struct Tree {
    nodes: Vec<Node>,
    first: Option<usize>,
}

impl Tree {
    fn alloc(&mut self, kind: Kind) -> usize {
        self.nodes.push(Node {
            kind,
            prev: None,
            next: None,
            head: None,
            tail: None,
            owner: None,
        });
        self.nodes.len() - 1
    }

    /// The token "type" as Postfix compares it: an operator character,
    /// 0 for a sentinel, or a value above 0xff for the other kinds.
    fn ty(&self, i: usize) -> u32 {
        match &self.nodes[i].kind {
            Kind::Sentinel => 0,
            Kind::Tok(Token::Op(c)) => *c as u32,
            Kind::Tok(Token::Atom(_)) => 0x100,
            Kind::Tok(Token::QString(_)) => 0x101,
            Kind::Tok(Token::DomLit(_)) => 0x102,
            Kind::Tok(Token::Comment(_)) => 0x103,
            Kind::Addr => 0x104,
            Kind::StartGrp => 0x105,
        }
    }

    fn is_word(&self, i: usize) -> bool {
        matches!(
            self.nodes[i].kind,
            Kind::Tok(Token::Atom(_) | Token::QString(_) | Token::DomLit(_))
        )
    }

    fn is_comment(&self, i: usize) -> bool {
        matches!(self.nodes[i].kind, Kind::Tok(Token::Comment(_)))
    }

    fn cut_before(&mut self, tp: usize) -> Option<usize> {
        let prev = self.nodes[tp].prev;
        if let Some(p) = prev {
            self.nodes[p].next = None;
            self.nodes[tp].prev = None;
        }
        prev
    }

    fn set_owner_chain(&mut self, mut t: usize, owner: Option<usize>) -> usize {
        self.nodes[t].owner = owner;
        while let Some(n) = self.nodes[t].next {
            t = n;
            self.nodes[t].owner = owner;
        }
        t
    }

    fn append(&mut self, t1: usize, t2: usize) -> usize {
        let next = self.nodes[t1].next;
        self.nodes[t1].next = Some(t2);
        self.nodes[t2].prev = Some(t1);
        let owner = self.nodes[t1].owner;
        let last = self.set_owner_chain(t2, owner);
        self.nodes[last].next = next;
        if let Some(n) = next {
            self.nodes[n].prev = Some(last);
        }
        last
    }

    fn prepend(&mut self, t1: usize, t2: usize) -> usize {
        let prev = self.nodes[t1].prev;
        if let Some(p) = prev {
            self.nodes[p].next = Some(t2);
        }
        self.nodes[t2].prev = prev;
        let owner = self.nodes[t1].owner;
        let last = self.set_owner_chain(t2, owner);
        self.nodes[last].next = Some(t1);
        self.nodes[t1].prev = Some(last);
        last
    }

    fn unlink(&mut self, tp: usize) -> Option<usize> {
        let (prev, next) = (self.nodes[tp].prev, self.nodes[tp].next);
        if let Some(p) = prev {
            self.nodes[p].next = next;
        }
        if let Some(n) = next {
            self.nodes[n].prev = prev;
        }
        self.nodes[tp].prev = None;
        self.nodes[tp].next = None;
        prev
    }

    fn sub_append(&mut self, t1: usize, t2: usize) {
        let last = match self.nodes[t1].tail {
            Some(tail) if self.nodes[t1].head.is_some() => self.append(tail, t2),
            _ => {
                self.nodes[t1].head = Some(t2);
                self.set_owner_chain(t2, Some(t1))
            }
        };
        self.nodes[t1].tail = Some(last);
    }

    /// Group the tokens strictly between `left` and `right` under a new
    /// address node, optionally inserting a comma after `left`.
    fn group(&mut self, left: usize, right: usize, add_comma: bool) -> usize {
        if left != right
            && let Some(first) = self.nodes[left].next
            && first != right
        {
            self.cut_before(right);
            self.cut_before(first);
            let g = self.alloc(Kind::Addr);
            self.sub_append(g, first);
            self.append(left, g);
            self.append(g, right);
            if add_comma {
                let sync = self.alloc(Kind::Tok(Token::Op(',')));
                self.append(left, sync);
            }
        }
        left
    }

    fn prev(&self, i: usize) -> usize {
        self.nodes[i].prev.unwrap_or(i)
    }

    /// Parse text into a tree (Postfix's tok822_parse).
    pub fn parse(text: &str) -> Tree {
        let mut t = Tree {
            nodes: Vec::new(),
            first: None,
        };
        let toks = scan(text);
        if toks.is_empty() {
            return t;
        }
        let head = t.alloc(Kind::Sentinel);
        let mut last = head;
        for tok in toks {
            let n = t.alloc(Kind::Tok(tok));
            t.nodes[last].next = Some(n);
            t.nodes[n].prev = Some(last);
            last = n;
        }
        let tail = t.alloc(Kind::Sentinel);
        t.nodes[last].next = Some(tail);
        t.nodes[tail].prev = Some(last);

        const DO_WORD: u32 = 1;
        const DO_GROUP: u32 = 2;
        let mut state = DO_WORD;
        let mut right = tail;
        let mut tp = t.prev(tail);
        while t.ty(tp) != 0 {
            let ty = t.ty(tp);
            if t.is_comment(tp) {
                let prev = t.unlink(tp).unwrap_or(head);
                right = t.prepend(right, tp);
                tp = prev;
                continue;
            } else if ty == ';' as u32 {
                right = t.group(tp, right, true);
                state = DO_GROUP | DO_WORD;
            } else if ty == ':' as u32 && state & DO_GROUP != 0 {
                t.nodes[tp].kind = Kind::StartGrp;
                t.group(tp, right, false);
                while t.ty(tp) != 0 && t.ty(tp) != ',' as u32 {
                    tp = t.prev(tp);
                }
                right = tp;
                continue;
            } else if ty == '>' as u32 {
                right = t.group(tp, right, true);
                while t.ty(tp) != 0 && t.ty(tp) != '<' as u32 {
                    if t.is_comment(tp) {
                        let prev = t.unlink(tp).unwrap_or(head);
                        right = t.prepend(right, tp);
                        tp = prev;
                        continue;
                    }
                    tp = t.prev(tp);
                }
                t.group(tp, right, false);
                while t.ty(tp) != 0 {
                    let y = t.ty(tp);
                    let stop = y <= 0xff && ">;,:".contains(char::from_u32(y).unwrap_or('\0'));
                    if stop {
                        break;
                    }
                    tp = t.prev(tp);
                }
                right = tp;
                state |= DO_WORD;
                continue;
            } else if t.is_word(tp) {
                if state & DO_WORD == 0 {
                    let l = t.group(tp, right, true);
                    right = t.nodes[l].next.unwrap_or(right);
                }
                state &= !DO_WORD;
            } else if ty == ',' as u32 {
                right = t.group(tp, right, false);
                state |= DO_WORD;
            } else {
                state |= DO_WORD;
            }
            tp = t.prev(tp);
        }
        t.group(tp, right, false);
        let first = t.nodes[head].next.filter(|&n| n != tail);
        if let Some(f) = first {
            t.cut_before(f);
        }
        t.cut_before(tail);
        t.first = first;
        t
    }

    fn space_after(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        let Some(next) = n.next else { return false };
        if n.owner.is_some() {
            return false;
        }
        let ty = self.ty(i);
        if ty == ',' as u32 || matches!(n.kind, Kind::StartGrp) || self.ty(next) == '<' as u32 {
            return true;
        }
        let non_op = |k: &Kind| {
            matches!(
                k,
                Kind::Tok(
                    Token::Atom(_) | Token::QString(_) | Token::Comment(_) | Token::DomLit(_)
                ) | Kind::Addr
            )
        };
        non_op(&n.kind) && non_op(&self.nodes[next].kind)
    }

    fn internalize_from(&self, start: Option<usize>, out: &mut String) {
        let mut cur = start;
        while let Some(i) = cur {
            match &self.nodes[i].kind {
                Kind::Tok(Token::Op(c)) => out.push(*c),
                Kind::Tok(Token::Atom(v) | Token::QString(v) | Token::Comment(v)) => {
                    out.push_str(v)
                }
                Kind::Tok(Token::DomLit(v)) => {
                    out.push('[');
                    out.push_str(v);
                    out.push(']');
                }
                Kind::Addr => self.internalize_from(self.nodes[i].head, out),
                Kind::StartGrp => out.push(':'),
                Kind::Sentinel => {}
            }
            if self.space_after(i) {
                out.push(' ');
            }
            cur = self.nodes[i].next;
        }
    }

    /// The top-level address nodes, each in internal form (what
    /// tok822_grep(tree, TOK822_ADDR) plus tok822_internalize give).
    pub fn addresses(&self) -> Vec<String> {
        let mut v = Vec::new();
        let mut cur = self.first;
        while let Some(i) = cur {
            if matches!(self.nodes[i].kind, Kind::Addr) {
                let mut s = String::new();
                self.internalize_from(self.nodes[i].head, &mut s);
                v.push(s);
            }
            cur = self.nodes[i].next;
        }
        v
    }

    /// The whole tree in internal form.
    pub fn internalize(&self) -> String {
        let mut s = String::new();
        self.internalize_from(self.first, &mut s);
        s
    }
}

/// The addresses in a header value or command-line argument, in internal
/// form, as Postfix's tok822_parse finds them.
pub fn parse_addresses(text: &str) -> Vec<String> {
    Tree::parse(text).addresses()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opchars() {
        for b in 0u8..=255 {
            let c = b as char;
            assert_eq!(is_opchar(c), "|%!()<>@,;:\\\".[]".contains(c), "{b}");
        }
    }

    #[test]
    fn scan_kinds() {
        assert_eq!(
            scan(r#"a\ b "q\"s" [1.2] (c (d)) |x"#),
            vec![
                Token::QString("a b".into()),
                Token::QString("q\"s".into()),
                Token::DomLit("1.2".into()),
                Token::Comment("(c (d))".into()),
                Token::Op('|'),
                Token::Atom("x".into()),
            ]
        );
        // Non-ASCII text (one char per byte) and a NUL, which ends it.
        let r = |s: &str| Token::Atom(s.into());
        assert_eq!(
            scan("j\u{e9}r\u{f4}me@[\u{ff}\\]x\0y"),
            vec![
                r("j\u{e9}r\u{f4}me"),
                Token::Op('@'),
                Token::DomLit("\u{ff}]x".into())
            ]
        );
        assert_eq!(scan("a\0b"), vec![r("a")]);
        assert_eq!(
            scan("x\\\u{e9}"),
            vec![Token::QString("x\u{e9}".into())]
                .into_iter()
                .map(|t| match t {
                    Token::QString(v) => r(&v),
                    t => t,
                })
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn round_trips() {
        let t = scan(r#"Bar, "|/bin/x" continued: a,  b"#);
        assert_eq!(externalize(&t), r#"Bar, "|/bin/x" continued:a, b"#);
        let t = scan(r#"\|cmd arg, /file, :include: /x"#);
        assert_eq!(externalize(&t), r#""|cmd" arg, /file, :include:/x"#);
        assert_eq!(internalize(&scan(r#""foo bar""#)), "foo bar");
        assert_eq!(internalize(&scan("a.b@c")), "a.b@c");
        assert_eq!(externalize(&scan("x <y@z>")), "x <y@z>");
    }

    #[test]
    fn parse_groups_addresses() {
        assert_eq!(parse_addresses("a@b, c@d"), vec!["a@b", "c@d"]);
        assert_eq!(parse_addresses("Name <a@b>"), vec!["a@b"]);
        assert_eq!(
            parse_addresses("\"J. Doe\" <j@x> (c), k@y"),
            vec!["j@x", "k@y"]
        );
        assert_eq!(parse_addresses("a b"), vec!["a", "b"]);
        assert_eq!(parse_addresses("grp: a@b, N <c@d>;"), vec!["a@b", "c@d"]);
        assert_eq!(parse_addresses("<>"), Vec::<String>::new());
        assert_eq!(parse_addresses(""), Vec::<String>::new());
        assert_eq!(
            parse_addresses("\"odd user\"@x (comment)"),
            vec!["odd user@x"]
        );
        assert_eq!(parse_addresses("<@r:a@b>"), vec!["@r:a@b"]);
        assert_eq!(Tree::parse("N <a@b>").internalize(), "N <a@b>");
    }
}
