//! check_policy_service inside the restrictions (Postfix's
//! smtpd_check.c check_policy_service): the request attributes Postfix
//! 3.7.11 (built with SASL and TLS, as Debian's) sends, and the answer
//! acted on as an access(5) table value with the table name being the
//! service and the lookup key "policy query".

use super::check::{Checker, R};
use super::conf::Conf;
use super::policy;
use super::state::State;
use crate::global::msg;

/// Register every `check_policy_service ARG` of these restriction lists
/// (fatal on a bad service, as Postfix at start-up).
pub fn register_all(c: &Conf, lists: &[Vec<String>]) {
    let mut base: Option<policy::Settings> = None;
    for list in lists {
        for w in list.windows(2) {
            if w[0].eq_ignore_ascii_case("check_policy_service") {
                let b = base.get_or_insert_with(|| match policy::Settings::from_conf(&c.mc) {
                    Ok(s) => s,
                    Err(e) => msg::fatal(&e),
                });
                if let Err(e) = policy::register(&w[1], b) {
                    msg::fatal(&e);
                }
            }
        }
    }
}

/// The request attributes, in Postfix's order.
pub fn request_attrs(ck: &Checker, st: &State, context: &str) -> Vec<(&'static str, String)> {
    let w = st.where_.as_str();
    let data_like = ["DATA", "BDAT", "END-OF-MESSAGE"]
        .iter()
        .any(|x| w.eq_ignore_ascii_case(x));
    vec![
        ("request", "smtpd_access_policy".into()),
        (
            "protocol_state",
            if w == "BDAT" { "DATA".into() } else { w.into() },
        ),
        ("protocol_name", st.protocol.clone()),
        ("client_address", st.addr.clone()),
        ("client_name", st.name.clone()),
        ("client_port", st.port.clone()),
        ("reverse_client_name", st.reverse_name.clone()),
        ("server_address", st.server_addr.clone()),
        ("server_port", st.server_port.clone()),
        ("helo_name", st.helo_name.clone().unwrap_or_default()),
        ("sender", st.sender.clone().unwrap_or_default()),
        ("recipient", st.recipient.clone().unwrap_or_default()),
        (
            "recipient_count",
            if data_like { st.rcpt_count } else { 0 }.to_string(),
        ),
        ("queue_id", st.queue_id.clone().unwrap_or_default()),
        ("instance", st.instance.clone()),
        ("size", st.size.to_string()),
        ("etrn_domain", st.etrn_name.clone().unwrap_or_default()),
        ("stress", ck.stress.clone()),
        ("sasl_method", String::new()),
        ("sasl_username", String::new()),
        ("sasl_sender", String::new()),
        ("ccert_subject", String::new()),
        ("ccert_issuer", String::new()),
        ("ccert_fingerprint", String::new()),
        ("ccert_pubkey_fingerprint", String::new()),
        ("encryption_protocol", String::new()),
        ("encryption_cipher", String::new()),
        ("encryption_keysize", "0".into()),
        ("policy_context", context.to_string()),
    ]
}

impl Checker {
    /// check_policy_service SERVER.
    pub(super) fn check_policy_service(
        &mut self,
        st: &mut State,
        server: &str,
        reply_name: &str,
        class: &str,
        def_acl: &str,
    ) -> R {
        let context = policy::context(server).unwrap_or_default();
        let attrs = request_attrs(self, st, &context);
        let mut warns = Vec::new();
        let answer = policy::query(server, &attrs, &mut |w| warns.push(w));
        for w in warns {
            st.warn(w);
        }
        let action = match answer {
            Some(Ok(a)) => {
                if self.smtputf8_enable && std::str::from_utf8(&a).is_err() {
                    st.warn(format!(
                        "malformed UTF-8 in policy server {server} response: \"{}\"",
                        crate::util::latin1::decode(&a)
                    ));
                    None
                } else if self.smtputf8_enable {
                    Some(String::from_utf8_lossy(&a).into_owned())
                } else {
                    Some(crate::util::latin1::decode(&a))
                }
            }
            Some(Err(_)) | None => None,
        };
        match action {
            Some(a) => {
                self.table_result(st, server, &a, "policy query", reply_name, class, def_acl)
            }
            None => {
                // The default action, which must not lead back here.
                self.policy_nesting += 1;
                let def = if self.policy_nesting == 1 {
                    policy::default_action(server)
                        .unwrap_or_else(|| policy::DEF_DEFAULT_ACTION.to_string())
                } else {
                    policy::DEF_DEFAULT_ACTION.to_string()
                };
                let r =
                    self.table_result(st, server, &def, "policy query", reply_name, class, def_acl);
                self.policy_nesting -= 1;
                r
            }
        }
    }
}
