//! `$name` expansion of smtpd reply templates (Postfix's smtpd_expand.c):
//! the names a template may use ($client, $client_address, $helo_name,
//! $sender, $recipient_domain ...), nothing from main.cf except
//! $server_name (myhostname), values limited to smtpd_expansion_filter.

use super::state::State;

/// Postfix's smtpd_expand_lookup(): a name's value, or `None` (with a
/// warning) for a name it does not know.
pub fn lookup(st: &mut State, myhostname: &str, name: &str) -> Option<String> {
    let addr = |a: &Option<String>, suffix: &str, st: &mut State| -> Option<String> {
        let Some(a) = a else {
            return Some(String::new());
        };
        match suffix {
            "" => Some(if a.is_empty() { "<>".into() } else { a.clone() }),
            "_name" => Some(if a.is_empty() {
                "<>".into()
            } else {
                a.rfind('@')
                    .map(|i| a[..i].to_string())
                    .unwrap_or(a.clone())
            }),
            "_domain" => Some(
                a.rfind('@')
                    .map(|i| a[i + 1..].to_string())
                    .unwrap_or_default(),
            ),
            _ => {
                unknown(st, name);
                None
            }
        }
    };
    match name {
        "server_name" => Some(myhostname.to_string()),
        "client" => Some(st.namaddr.clone()),
        "client_port" => Some(st.port.clone()),
        "client_address" => Some(st.addr.clone()),
        "client_name" => Some(st.name.clone()),
        "reverse_client_name" => Some(st.reverse_name.clone()),
        "helo_name" => Some(st.helo_name.clone().unwrap_or_default()),
        "localtime" => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            Some(
                crate::sys::time::asctime_local(now)
                    .map(|s| s[4..19].to_string())
                    .unwrap_or_default(),
            )
        }
        _ if name.starts_with("sender") => {
            let s = st.sender.clone();
            addr(&s, &name["sender".len()..], st)
        }
        _ if name.starts_with("recipient") => {
            let r = st.recipient.clone();
            addr(&r, &name["recipient".len()..], st)
        }
        _ => {
            unknown(st, name);
            None
        }
    }
}

fn unknown(st: &mut State, name: &str) {
    st.warn(format!(
        "unknown macro name \"{name}\" in expansion request"
    ));
}

/// smtpd_expansion_filter, unescaped.
pub fn filter(raw: &str) -> String {
    crate::util::latin1::decode(&crate::daemons::cleanup::config::unescape(raw))
}

/// Expand a template. `None` on a syntax error or an unknown name.
pub fn expand(
    template: &str,
    filter: &str,
    extra: &mut dyn FnMut(&str) -> Option<String>,
    st: &mut State,
    myhostname: &str,
) -> Option<String> {
    use crate::global::expand::{PARSE_ERROR, PARSE_UNDEF, mac_expand};
    let mut out = String::new();
    let status = mac_expand(&mut out, template, 0, Some(filter), &mut |name, _mode| {
        extra(name).or_else(|| lookup(st, myhostname, name))
    });
    (status & (PARSE_ERROR | PARSE_UNDEF) == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let mut st = State {
            name: "mail.example.test".into(),
            addr: "192.0.2.7".into(),
            namaddr: "mail.example.test[192.0.2.7]".into(),
            sender: Some("joe@example.test".into()),
            ..State::default()
        };
        let f = filter(
            "\\t\\40!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\\\]^_`abcdefghijklmnopqrstuvwxyz{|}~",
        );
        let t = expand(
            "$client_address $sender_name at ${sender_domain} rcpt=$recipient ($x)",
            &f,
            &mut |n| (n == "x").then(|| "a\u{7}b".to_string()),
            &mut st,
            "mx.test",
        )
        .unwrap();
        assert_eq!(t, "192.0.2.7 joe at example.test rcpt= (a_b)");
        assert!(expand("$nosuch", &f, &mut |_| None, &mut st, "mx.test").is_none());
        assert!(st.events.iter().any(|e| matches!(e,
            super::super::state::Event::Log(l) if l == "warning: unknown macro name \"nosuch\" in expansion request")));
    }
}
