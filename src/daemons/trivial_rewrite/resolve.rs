//! Recipient resolution (Postfix's resolve.c): strip every local domain,
//! undo routing forms (percent hack, bang paths, quoted local parts with
//! routing operators), then pick the transport and nexthop from the
//! recipient domain's address class, the relayhost settings,
//! transport_maps and relocated_maps.

use super::rewrite::{Context, Switches, rewrite_tree, rfind_op};
use super::{
    CLASS_ALIAS, CLASS_DEFAULT, CLASS_LOCAL, CLASS_RELAY, CLASS_VIRTUAL, Classes, FLAG_ERROR,
    FLAG_FAIL, FLAG_ROUTED, Personality, ResContext, ResolveReply, Settings, TrivialRewrite,
};
use crate::global::dict::DictError;
use crate::global::mail_addr_find::{self, Params};
use crate::global::msg;
use crate::global::quote_822_local::quote_822_local;
use crate::global::resolve_local::{LookupError, valid_mailhost_literal};
use crate::global::tok822::{Token, internalize, scan};
use crate::util::valid_hostname::{valid_hostaddr, valid_utf8_hostname, valid_utf8_string};
use std::cell::RefCell;

fn fail(reply: &mut ResolveReply) -> ResolveReply {
    reply.flags |= FLAG_FAIL;
    std::mem::take(reply)
}

/// Search parameters for mail_addr_find with resolve_local as the
/// local-domain test.
fn find_params<'a>(
    settings: &Settings,
    is_local: &'a dyn Fn(&str) -> Result<bool, DictError>,
) -> Params<'a> {
    Params {
        split: settings.split.clone(),
        myorigin: settings.myorigin.clone(),
        is_local,
    }
}

pub(super) fn resolve_addr(
    tr: &mut TrivialRewrite,
    personality: Personality,
    sender: &str,
    addr: &str,
) -> ResolveReply {
    let TrivialRewrite {
        ref switches,
        ref local_context,
        ref settings,
        ref classes,
        ref mut relocated_maps,
        ref mut regular,
        ref mut verify,
        ..
    } = *tr;
    let rp = match personality {
        Personality::Regular => regular,
        Personality::Verify => verify,
    };
    resolve_inner(
        switches,
        local_context,
        settings,
        classes,
        relocated_maps,
        rp,
        sender,
        addr,
    )
}

fn resolve_local(classes: &RefCell<Classes>, domain: &str) -> Result<bool, LookupError> {
    classes.borrow_mut().local.resolve_local(domain)
}

fn rewrite_local(ctx: &Context, sw: &Switches, classes: &RefCell<Classes>, toks: &mut Vec<Token>) {
    rewrite_tree(ctx, sw, toks, &mut |d| classes.borrow_mut().class_of(d));
}

#[allow(clippy::too_many_arguments)]
fn resolve_inner(
    sw: &Switches,
    local_context: &Context,
    settings: &Settings,
    classes: &RefCell<Classes>,
    relocated_maps: &mut Option<super::Maps>,
    rp: &mut ResContext,
    sender: &str,
    addr: &str,
) -> ResolveReply {
    let mut reply = ResolveReply {
        transport: "CHANNEL NOT UPDATED".to_string(),
        nexthop: "NEXTHOP NOT UPDATED".to_string(),
        recipient: "NEXTRCPT NOT UPDATED".to_string(),
        flags: 0,
    };

    // Work on the quoted form, and dequote the local part only where a
    // routing operator hides in it (see the loop).
    let addr_len = addr.chars().count();
    let mut tree = scan(&quote_822_local(addr));
    let mut saved_domain: Option<Vec<Token>> = None;
    // Set when the loop stops at a remote domain.
    let mut domain: Option<usize> = None;

    let loop_max = addr_len + 100;
    let mut loop_count = 0usize;
    loop {
        if loop_count > loop_max {
            msg::warn(&format!(
                "resolve_addr: <{addr}>: giving up after {loop_count} iterations"
            ));
            return fail(&mut reply);
        }
        loop_count += 1;

        // Strip a trailing dot, but not dot-dot or @-dot.
        let n = tree.len();
        if n >= 2
            && super::rewrite::is_op(&tree[n - 1], '.')
            && rfind_op(&tree, '@').is_some()
            && !super::rewrite::is_op(&tree[n - 2], '.')
            && !super::rewrite::is_op(&tree[n - 2], '@')
        {
            tree.pop();
        }
        // Strip a trailing @.
        if settings.resolve_nulldom && tree.last().is_some_and(|t| super::rewrite::is_op(t, '@')) {
            tree.pop();
        }
        // Strip (and save) @domain when the domain is local.
        if let Some(at) = rfind_op(&tree, '@') {
            if at + 1 < tree.len() {
                match resolve_local(classes, &internalize(&tree[at + 1..])) {
                    Err(LookupError) => return fail(&mut reply),
                    Ok(false) => {
                        domain = Some(at);
                        break;
                    }
                    Ok(true) => {}
                }
            }
            saved_domain = Some(tree.split_off(at));
        }
        // Then replace foo%bar by foo@bar and site!user by user@site, and
        // try again.
        if rfind_op(&tree, '@').is_some()
            || (sw.swap_bangpath && rfind_op(&tree, '!').is_some())
            || (sw.percent_hack && rfind_op(&tree, '%').is_some())
        {
            rewrite_local(local_context, sw, classes, &mut tree);
            continue;
        }
        // A quoted local part with routing operators is cracked open (not
        // strictly right, but it stops user@domain@domain relay attempts).
        if settings.resolve_dequoted
            && tree.len() == 1
            && let Token::QString(local) = &tree[0]
        {
            let oper = local
                .rfind('@')
                .or_else(|| sw.percent_hack.then(|| local.rfind('%')).flatten())
                .or_else(|| sw.swap_bangpath.then(|| local.rfind('!')).flatten());
            if let Some(i) = oper {
                let mut text = local.clone();
                let op = text.as_bytes()[i];
                if op == b'%' {
                    text.replace_range(i..i + 1, "@");
                }
                if op == b'%' || op == b'@' {
                    text = quote_822_local(&text);
                }
                tree = scan(&text);
                rewrite_local(local_context, sw, classes, &mut tree);
                continue;
            }
        }
        // An empty local part becomes the local MAILER-DAEMON (resolved
        // again, in case it has a domain).
        if tree.len() == 1 && matches!(&tree[0], Token::QString(s) if s.is_empty()) {
            tree.clear();
        }
        if tree.is_empty() {
            tree = scan(&settings.empty_addr);
            continue;
        }
        // No domain at all: resolve again with @$myhostname.
        if saved_domain.is_none() {
            tree.push(Token::Op('@'));
            tree.extend(scan(&settings.myhostname));
            continue;
        }
        break;
    }

    // The recipient has the user@domain form: a local domain that was
    // stripped comes back.
    if domain.is_none() {
        match saved_domain.take() {
            Some(d) => tree.extend(d),
            None => {
                tree.push(Token::Op('@'));
                tree.extend(scan(&settings.myhostname));
            }
        }
    }

    let mut nextrcpt = internalize(&tree);
    let Some(at) = nextrcpt.rfind('@') else {
        // Postfix panics ("no @ in address"); cannot happen.
        return fail(&mut reply);
    };
    let mut rcpt_domain = nextrcpt[at + 1..].to_string();
    let mut flags = 0;
    if rcpt_domain.starts_with('[') {
        if !valid_mailhost_literal(&rcpt_domain, false) {
            flags |= FLAG_ERROR;
        }
    } else if settings.smtputf8_enable && !valid_utf8_string(&nextrcpt) {
        flags |= FLAG_ERROR;
    } else if !valid_utf8_hostname(settings.smtputf8_enable, &rcpt_domain, false) {
        if settings.resolve_num_dom && valid_hostaddr(&rcpt_domain, false) {
            nextrcpt = format!("{}[{rcpt_domain}]", &nextrcpt[..at + 1]);
            rcpt_domain = format!("[{rcpt_domain}]");
            match resolve_local(classes, &rcpt_domain) {
                Ok(true) => domain = None,
                Ok(false) => {}
                Err(LookupError) => {
                    reply.recipient = nextrcpt;
                    return fail(&mut reply);
                }
            }
        } else {
            flags |= FLAG_ERROR;
        }
    }
    reply.recipient = nextrcpt.clone();
    reply.flags = flags;

    // Bad syntax: no further work.
    if reply.flags & FLAG_ERROR != 0 {
        reply.flags |= CLASS_DEFAULT;
        return reply;
    }

    // Routing operators in the local part (whatever the local
    // swap_bangpath and percent hack settings) make the address routed.
    let first_op = nextrcpt.find(['@', '!', '%']).unwrap_or(nextrcpt.len());
    if nextrcpt.get(first_op + 1..).unwrap_or("") != rcpt_domain {
        reply.flags |= FLAG_ROUTED;
    }

    let is_local = |d: &str| -> Result<bool, DictError> {
        resolve_local(classes, d).map_err(|LookupError| DictError::Retry("mydestination".into()))
    };
    let params = find_params(settings, &is_local);
    // Channel and nexthop live in the reply as they are decided: a failed
    // request returns what was decided so far, as Postfix's does.
    let blame: &str;
    let helpful = settings.helpful_warnings;

    if domain.is_some() {
        let mut cl = classes.borrow_mut();
        let cl = &mut *cl;
        let alias_match = list_match(&mut cl.virt_alias_doms, &rcpt_domain);
        if alias_match == Some(true) {
            if helpful {
                if list_match(&mut cl.virt_mailbox_doms, &rcpt_domain) == Some(true) {
                    msg::warn(&format!(
                        "do not list domain {rcpt_domain} in BOTH virtual_alias_domains and virtual_mailbox_domains"
                    ));
                }
                if list_match(&mut cl.relay_domains, &rcpt_domain) == Some(true) {
                    msg::warn(&format!(
                        "do not list domain {rcpt_domain} in BOTH virtual_alias_domains and relay_domains"
                    ));
                }
            }
            reply.transport = "error".to_string();
            reply.nexthop = format!(
                "5.1.1 User unknown{}",
                if settings.show_unk_rcpt_table {
                    " in virtual alias table"
                } else {
                    ""
                }
            );
            blame = "";
            reply.flags |= CLASS_ALIAS;
        } else if alias_match.is_none() {
            msg::warn("virtual_alias_domains lookup failure");
            return fail(&mut reply);
        } else {
            let mm = list_match(&mut cl.virt_mailbox_doms, &rcpt_domain);
            if mm == Some(true) {
                if helpful && list_match(&mut cl.relay_domains, &rcpt_domain) == Some(true) {
                    msg::warn(&format!(
                        "do not list domain {rcpt_domain} in BOTH virtual_mailbox_domains and relay_domains"
                    ));
                }
                reply.transport = rp.virt_transport.value.clone();
                reply.nexthop = rcpt_domain.clone();
                blame = rp.virt_transport.name;
                reply.flags |= CLASS_VIRTUAL;
            } else if mm.is_none() {
                msg::warn("virtual_mailbox_domains lookup failure");
                return fail(&mut reply);
            } else {
                let rm = list_match(&mut cl.relay_domains, &rcpt_domain);
                if rm == Some(true) {
                    reply.transport = rp.relay_transport.value.clone();
                    blame = rp.relay_transport.name;
                    reply.flags |= CLASS_RELAY;
                } else if rm.is_none() {
                    msg::warn("relay_domains lookup failure");
                    return fail(&mut reply);
                } else {
                    let sender_key = if sender.is_empty() {
                        settings.null_def_xport_maps_key.as_str()
                    } else {
                        sender
                    };
                    let found = match rp.snd_def_xport_maps.as_mut() {
                        None => None,
                        Some(m) => {
                            // mail_addr_find asks resolve_local: release
                            // the class lists first.
                            match find_unlocked(cl, m, sender_key, settings) {
                                Ok(f) => f,
                                Err(_) => {
                                    msg::warn(&format!(
                                        "{} lookup failure",
                                        rp.snd_def_xport_maps_name
                                    ));
                                    return fail(&mut reply);
                                }
                            }
                        }
                    };
                    match found {
                        Some(mut xport) => {
                            if xport.is_empty() {
                                msg::warn(&format!(
                                    "{}: ignoring null lookup result for {sender_key}",
                                    rp.snd_def_xport_maps_name
                                ));
                                xport = "DUNNO".to_string();
                            }
                            reply.transport = if xport.eq_ignore_ascii_case("DUNNO") {
                                rp.def_transport.value.clone()
                            } else {
                                xport
                            };
                            blame = rp.snd_def_xport_maps_name;
                        }
                        None => {
                            reply.transport = rp.def_transport.value.clone();
                            blame = rp.def_transport.name;
                        }
                    }
                    reply.flags |= CLASS_DEFAULT;
                }
                // Off-host delivery: the sender-dependent relayhost, else
                // relayhost, else the recipient domain.
                let sender_key = if sender.is_empty() {
                    settings.null_relay_maps_key.as_str()
                } else {
                    sender
                };
                let relay = match rp.snd_relay_maps.as_mut() {
                    None => None,
                    Some(m) => match find_unlocked(cl, m, sender_key, settings) {
                        Ok(Some(r)) if r.is_empty() => {
                            msg::warn(&format!(
                                "{}: ignoring null lookup result for {sender_key}",
                                rp.snd_relay_maps_name
                            ));
                            None
                        }
                        Ok(Some(r)) if r.eq_ignore_ascii_case("DUNNO") => None,
                        Ok(r) => r,
                        Err(_) => {
                            msg::warn(&format!("{} lookup failure", rp.snd_relay_maps_name));
                            return fail(&mut reply);
                        }
                    },
                };
                reply.nexthop = match relay {
                    Some(r) => r,
                    None if !rp.relayhost.value.is_empty() => rp.relayhost.value.clone(),
                    None => rcpt_domain.clone(),
                };
            }
        }
    } else {
        if helpful {
            let mut cl = classes.borrow_mut();
            if cl
                .virt_alias_doms
                .as_mut()
                .is_some_and(|l| l.matches(&[&rcpt_domain]))
            {
                msg::warn(&format!(
                    "do not list domain {rcpt_domain} in BOTH mydestination and virtual_alias_domains"
                ));
            }
            if cl
                .virt_mailbox_doms
                .as_mut()
                .is_some_and(|l| l.matches(&[&rcpt_domain]))
            {
                msg::warn(&format!(
                    "do not list domain {rcpt_domain} in BOTH mydestination and virtual_mailbox_domains"
                ));
            }
        }
        reply.transport = rp.local_transport.value.clone();
        reply.nexthop = rcpt_domain.clone();
        blame = rp.local_transport.name;
        reply.flags |= CLASS_LOCAL;
    }

    // transport:nexthop in main.cf overrides the nexthop.
    if let Some(i) = reply.transport.find(':') {
        let dest = reply.transport[i + 1..].to_string();
        reply.transport.truncate(i);
        if !dest.is_empty() {
            reply.nexthop = dest;
        }
    }
    if reply.transport.is_empty() {
        msg::warn(&format!(
            "file {}/main.cf: parameter {blame}: null transport is not allowed",
            settings.config_dir
        ));
        return fail(&mut reply);
    }

    // transport_maps may override either (not for virtual alias domains).
    if reply.flags & CLASS_ALIAS == 0
        && let Some(t) = rp.transport.as_mut()
        && t.lookup(
            &nextrcpt,
            &rcpt_domain,
            &params,
            &mut reply.transport,
            &mut reply.nexthop,
        )
        .is_err()
    {
        msg::warn(&format!("{} lookup failure", rp.transport_maps_name));
        return fail(&mut reply);
    }

    // Recipients that have moved bounce, whatever their class.
    if let Some(m) = relocated_maps.as_mut() {
        match mail_addr_find::mail_addr_find_strategy(
            m,
            &nextrcpt,
            &params,
            mail_addr_find::strategy::DEFAULT,
        ) {
            Ok(Some(f)) => {
                reply.transport = "error".to_string();
                reply.nexthop = format!("5.1.6 User has moved to {}", f.value);
            }
            Ok(None) => {}
            Err(_) => {
                msg::warn("relocated_maps lookup failure");
                return fail(&mut reply);
            }
        }
    }

    // A recipient starting with `-` could pass for a command option.
    if !settings.allow_min_user && nextrcpt.starts_with('-') {
        reply.flags |= FLAG_ERROR;
    }
    reply
}

/// Match a domain list that may be absent: `Some(false)` when absent or
/// not matched, `None` on a lookup error.
fn list_match(l: &mut Option<crate::global::match_list::MatchList>, d: &str) -> Option<bool> {
    match l {
        None => Some(false),
        Some(l) => {
            let m = l.matches(&[d]);
            if !m && l.error { None } else { Some(m) }
        }
    }
}

/// Search a sender-dependent table while the class lists are borrowed:
/// the local-domain test mail_addr_find needs goes through the same lists,
/// so it is given a view of them.
fn find_unlocked(
    cl: &mut Classes,
    maps: &mut super::Maps,
    key: &str,
    settings: &Settings,
) -> Result<Option<String>, DictError> {
    let local = RefCell::new(&mut cl.local);
    let is_local = |d: &str| -> Result<bool, DictError> {
        local
            .borrow_mut()
            .resolve_local(d)
            .map_err(|LookupError| DictError::Retry("mydestination".into()))
    };
    let params = find_params(settings, &is_local);
    Ok(mail_addr_find::mail_addr_find_strategy(
        maps,
        key,
        &params,
        mail_addr_find::strategy::DEFAULT,
    )?
    .map(|f| f.value))
}
