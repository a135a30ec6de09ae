//! Address rewriting in the `local` and `remote` contexts, as
//! trivial-rewrite(8) of Postfix 3.7 does it for its rewrite_clnt clients
//! (`trivial-rewrite/rewrite.c`), run in-process (DESIGN.md §2: cleanup
//! calls it as a library). Input and output are addresses in external
//! (quoted) form.
//!
//! Steps, in order: strip a source route (`@a,@b:user@c`), swap
//! `domain!user` to `user@domain` (`swap_bangpath`), promote `user%domain`
//! (`allow_percent_hack`), append `@$myorigin` (`append_at_myorigin`),
//! append `.$mydomain` to a dotless domain (`append_dot_mydomain`), drop a
//! trailing dot.
//!
//! Parameters: myorigin, mydomain, swap_bangpath, allow_percent_hack,
//! append_at_myorigin, append_dot_mydomain, remote_header_rewrite_domain.

use crate::global::mail_conf::{ConfError, MailConf};
use crate::global::tok822::{self, Token};

/// The parameters the rewriting reads.
#[derive(Debug, Clone, Default)]
pub struct RewriteConf {
    pub myorigin: String,
    pub mydomain: String,
    pub remote_domain: String,
    pub swap_bangpath: bool,
    pub percent_hack: bool,
    pub append_at_myorigin: bool,
    pub append_dot_mydomain: bool,
}

impl RewriteConf {
    pub fn from_conf(conf: &MailConf) -> Result<RewriteConf, ConfError> {
        Ok(RewriteConf {
            myorigin: conf.myorigin()?,
            mydomain: conf.get_str("mydomain", 1, 0)?,
            remote_domain: conf.get_str("remote_header_rewrite_domain", 0, 0)?,
            swap_bangpath: conf.get_bool("swap_bangpath")?,
            percent_hack: conf.get_bool("allow_percent_hack")?,
            append_at_myorigin: conf.get_bool("append_at_myorigin")?,
            append_dot_mydomain: conf.get_bool("append_dot_mydomain")?,
        })
    }
}

/// The rewriting contexts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Local,
    Remote,
}

impl Context {
    pub fn name(self) -> &'static str {
        match self {
            Context::Local => "local",
            Context::Remote => "remote",
        }
    }
}

fn rfind_op(t: &[Token], c: char) -> Option<usize> {
    t.iter().rposition(|x| *x == Token::Op(c))
}

fn find_op(t: &[Token], c: char) -> Option<usize> {
    t.iter().position(|x| *x == Token::Op(c))
}

/// Rewrite a flat token list in place (rewrite_tree).
pub fn rewrite_tokens(rc: &RewriteConf, ctx: Context, t: &mut Vec<Token>) {
    let (origin, domain) = match ctx {
        Context::Local => (rc.myorigin.as_str(), rc.mydomain.as_str()),
        Context::Remote => (rc.remote_domain.as_str(), rc.remote_domain.as_str()),
    };
    if t.is_empty() {
        return;
    }
    if t.len() == 1 && t[0] == Token::QString(String::new()) {
        return;
    }
    if t.len() == 1 && t[0] == Token::Op('@') {
        t.clear();
        t.push(Token::QString(String::new()));
        return;
    }
    if t[0] == Token::Op('@')
        && let Some(colon) = find_op(t, ':')
        && colon != t.len() - 1
    {
        t.drain(..=colon);
    }
    if rfind_op(t, '@').is_none() {
        if rc.swap_bangpath
            && let Some(bang) = find_op(t, '!')
        {
            let local: Vec<Token> = t.drain(bang + 1..).collect();
            t.truncate(bang);
            let mut n = local;
            n.push(Token::Op('@'));
            n.append(t);
            *t = n;
        } else if rc.percent_hack
            && let Some(pct) = rfind_op(t, '%')
        {
            t[pct] = Token::Op('@');
        } else if rc.append_at_myorigin && !origin.is_empty() {
            t.push(Token::Op('@'));
            t.extend(tok822::scan(origin));
        }
    }
    if rc.append_dot_mydomain
        && !domain.is_empty()
        && let Some(at) = rfind_op(t, '@')
        && at != t.len() - 1
        && !t[at..].iter().any(|x| matches!(x, Token::DomLit(_)))
        && !t[at..].contains(&Token::Op('.'))
    {
        t.push(Token::Op('.'));
        t.extend(tok822::scan(domain));
    }
    let n = t.len();
    if n >= 2
        && t[n - 1] == Token::Op('.')
        && t[n - 2] != Token::Op('.')
        && t[n - 2] != Token::Op('@')
    {
        t.pop();
    }
}

/// Rewrite an address in external form; the empty address stays empty.
pub fn rewrite_external(rc: &RewriteConf, ctx: Context, addr: &str) -> String {
    if addr.is_empty() {
        return String::new();
    }
    let mut t = tok822::scan(addr);
    rewrite_tokens(rc, ctx, &mut t);
    tok822::externalize(&t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rc() -> RewriteConf {
        RewriteConf {
            myorigin: "mx.example.test".into(),
            mydomain: "example.test".into(),
            remote_domain: String::new(),
            swap_bangpath: true,
            percent_hack: true,
            append_at_myorigin: true,
            append_dot_mydomain: false,
        }
    }

    #[test]
    fn local_context() {
        let r = rc();
        let l = Context::Local;
        assert_eq!(rewrite_external(&r, l, "alice"), "alice@mx.example.test");
        assert_eq!(rewrite_external(&r, l, "host!bob"), "bob@host");
        assert_eq!(rewrite_external(&r, l, "bob%host"), "bob@host");
        assert_eq!(rewrite_external(&r, l, "@a,@b:c@d"), "c@d");
        assert_eq!(rewrite_external(&r, l, "c@d."), "c@d");
        assert_eq!(rewrite_external(&r, l, "\"\""), "\"\"");
        assert_eq!(rewrite_external(&r, l, "@"), "\"\"");
        assert_eq!(
            rewrite_external(&r, l, "\"a b\""),
            "\"a b\"@mx.example.test"
        );
        let mut r2 = rc();
        r2.append_dot_mydomain = true;
        assert_eq!(rewrite_external(&r2, l, "u@host"), "u@host.example.test");
        assert_eq!(rewrite_external(&r2, l, "u@[1.2.3.4]"), "u@[1.2.3.4]");
    }
}
