//! Address rewriting to the canonical `user@fully.qualified.domain` form
//! (Postfix's rewrite.c), on the flat token list of one address.

use crate::global::msg;
use crate::global::tok822::{Token, scan};

/// One rewriting context: what is appended to an address without a domain
/// (`origin`) and to a domain without a dot (`domain`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    pub origin: String,
    pub domain: String,
}

/// The main.cf switches rewriting obeys.
#[derive(Debug, Clone, Default)]
pub struct Switches {
    pub swap_bangpath: bool,
    pub percent_hack: bool,
    pub append_at_myorigin: bool,
    pub append_dot_mydomain: bool,
    /// append_dot_mydomain is on only through the compatibility-level
    /// safety net: say so when it is used.
    pub warn_compat_append_dot_mydomain: bool,
    /// `mydomain`, named in the compatibility message whatever the context.
    pub mydomain: String,
}

pub(crate) fn is_op(t: &Token, c: char) -> bool {
    matches!(t, Token::Op(o) if *o == c)
}

/// The last token that is operator `c`.
pub(crate) fn rfind_op(toks: &[Token], c: char) -> Option<usize> {
    toks.iter().rposition(|t| is_op(t, c))
}

/// The first token that is operator `c`.
pub(crate) fn find_op(toks: &[Token], c: char) -> Option<usize> {
    toks.iter().position(|t| is_op(t, c))
}

/// The text of a non-operator token.
fn token_text(t: &Token) -> Option<&str> {
    match t {
        Token::Op(_) => None,
        Token::Atom(s) | Token::QString(s) | Token::DomLit(s) | Token::Comment(s) => Some(s),
    }
}

/// Rewrite one address in place. `resolve_class` tells the address class
/// of a domain (only asked for `localhost`, for the compatibility message).
pub fn rewrite_tree(
    ctx: &Context,
    sw: &Switches,
    toks: &mut Vec<Token>,
    resolve_class: &mut dyn FnMut(&str) -> i32,
) {
    if toks.is_empty() {
        // Postfix panics here; every caller passes a non-empty list.
        return;
    }
    // The empty address stays empty.
    if toks.len() == 1 && matches!(&toks[0], Token::QString(s) if s.is_empty()) {
        return;
    }
    // A lone @ is the empty address.
    if toks.len() == 1 && is_op(&toks[0], '@') {
        toks[0] = Token::QString(String::new());
        return;
    }
    // Strip a source route: @a,@b:user@domain.
    if is_op(&toks[0], '@')
        && let Some(colon) = find_op(toks, ':')
        && colon + 1 != toks.len()
    {
        toks.drain(..=colon);
    }
    // Forms without @.
    if rfind_op(toks, '@').is_none() {
        if sw.swap_bangpath
            && let Some(bang) = find_op(toks, '!')
        {
            // site!user becomes user@site.
            let local: Vec<Token> = toks.split_off(bang + 1);
            toks.truncate(bang);
            let mut out = local;
            out.push(Token::Op('@'));
            out.append(toks);
            *toks = out;
        } else if sw.percent_hack
            && let Some(pct) = rfind_op(toks, '%')
        {
            toks[pct] = Token::Op('@');
        } else if sw.append_at_myorigin && !ctx.origin.is_empty() {
            toks.push(Token::Op('@'));
            toks.extend(scan(&ctx.origin));
        }
    }
    // Append .domain to a domain without a dot; leave forms ending in @
    // and address literals alone.
    if sw.append_dot_mydomain
        && !ctx.domain.is_empty()
        && let Some(at) = rfind_op(toks, '@')
        && at + 1 != toks.len()
        && !toks[at..].iter().any(|t| matches!(t, Token::DomLit(_)))
        && !toks[at..].iter().any(|t| is_op(t, '.'))
    {
        if sw.warn_compat_append_dot_mydomain
            && let Some(name) = token_text(&toks[at + 1])
        {
            if !name.eq_ignore_ascii_case("localhost") {
                msg::info(&format!(
                    "using backwards-compatible default setting append_dot_mydomain=yes \
                     to rewrite \"{name}\" to \"{name}.{}\"",
                    sw.mydomain
                ));
            } else if resolve_class("localhost") == super::CLASS_DEFAULT as i32 {
                msg::info(&format!(
                    "using backwards-compatible default setting append_dot_mydomain=yes \
                     to rewrite \"{name}\" to \"{name}.{}\"; please add \"localhost\" to \
                     mydestination or other address class",
                    sw.mydomain
                ));
            }
        }
        toks.push(Token::Op('.'));
        toks.extend(scan(&ctx.domain));
    }
    // Strip one trailing dot, but not dot-dot or @-dot.
    let n = toks.len();
    if n >= 2 && is_op(&toks[n - 1], '.') && !is_op(&toks[n - 2], '.') && !is_op(&toks[n - 2], '@')
    {
        toks.pop();
    }
}
