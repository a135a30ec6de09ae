//! transport_maps lookups (Postfix's transport.c): the full recipient, the
//! recipient without its extension, then the domain and its parents
//! (`example.com` or `.example.com` per parent_domain_matches_subdomains),
//! then the `*` wildcard. An entry is `transport:nexthop`, `transport`,
//! `transport:`, `:nexthop` or `:`.

use crate::global::dict::{DictError, flags};
use crate::global::mail_addr_find::{self, Params, strategy};
use crate::global::maps::Maps;
use std::time::{Duration, Instant};

/// A transport table with its cached wildcard entry.
pub struct Transport {
    pub maps: Maps,
    parent_matches_subdomains: bool,
    /// The `*` entry: None when absent; refreshed every 30 seconds.
    wildcard: Result<Option<(String, String)>, DictError>,
    expire: Instant,
}

/// Apply a table entry to channel and nexthop. An empty channel keeps the
/// channel (and the nexthop unless one is given); a new channel resets the
/// nexthop to the recipient domain (or a fixed text for error/retry).
fn update_entry(
    new_channel: &str,
    new_nexthop: &str,
    rcpt_domain: &str,
    channel: &mut String,
    nexthop: &mut String,
) {
    if new_channel.is_empty() {
        if !new_nexthop.is_empty() {
            *nexthop = new_nexthop.to_string();
        }
    } else {
        *channel = new_channel.to_string();
        if !new_nexthop.is_empty() {
            *nexthop = new_nexthop.to_string();
        } else if channel != "error" && channel != "retry" {
            *nexthop = rcpt_domain.to_string();
        } else {
            *nexthop = "Address is undeliverable".to_string();
        }
    }
}

fn split_entry(value: &str) -> (&str, &str) {
    value.split_once(':').unwrap_or((value, ""))
}

impl Transport {
    /// Open `transport_maps` (named `title` in messages).
    pub fn new(title: &str, map_names: &str, parent_domain_matches_subdomains: &str) -> Transport {
        let maps = Maps::create(
            title,
            map_names,
            flags::LOCK | flags::FOLD_FIX | flags::NO_REGSUB | flags::UTF8_REQUEST,
        );
        Transport::from_maps(
            maps,
            crate::global::match_list::match_parent_style(
                parent_domain_matches_subdomains,
                "transport_maps",
            ) != 0,
        )
    }

    /// From tables that are already open.
    pub fn from_maps(maps: Maps, parent_matches_subdomains: bool) -> Transport {
        let mut t = Transport {
            maps,
            parent_matches_subdomains,
            wildcard: Ok(None),
            expire: Instant::now(),
        };
        t.wildcard_init();
        t
    }

    fn wildcard_init(&mut self) {
        self.wildcard = self.maps.find("*", 0).map(|v| {
            v.map(|v| {
                let (c, h) = split_entry(&v);
                let (mut ch, mut nh) = (String::new(), String::new());
                update_entry(c, h, "", &mut ch, &mut nh);
                (ch, nh)
            })
        });
        self.expire = Instant::now() + Duration::from_secs(30);
    }

    /// Look up `addr` (internal form, with a domain). `Ok(true)`: channel
    /// and nexthop were updated; `Ok(false)`: no entry; `Err`: a table
    /// failed.
    pub fn lookup(
        &mut self,
        addr: &str,
        rcpt_domain: &str,
        p: &Params,
        channel: &mut String,
        nexthop: &mut String,
    ) -> Result<bool, DictError> {
        if addr.is_empty() {
            crate::global::msg::warn("transport_lookup: null address - skipping table lookup");
            return Ok(false);
        }
        let bits = strategy::FULL
            | strategy::NOEXT
            | strategy::DOMAIN
            | if self.parent_matches_subdomains {
                strategy::PDMS
            } else {
                strategy::PDDMDS
            };
        if let Some(found) = mail_addr_find::mail_addr_find_strategy(&mut self.maps, addr, p, bits)?
        {
            let (c, h) = split_entry(&found.value);
            update_entry(c, h, rcpt_domain, channel, nexthop);
            return Ok(true);
        }
        if self.wildcard.is_err() || Instant::now() > self.expire {
            self.wildcard_init();
        }
        match &self.wildcard {
            Err(e) => Err(e.clone()),
            Ok(Some((c, h))) => {
                update_entry(c, h, rcpt_domain, channel, nexthop);
                Ok(true)
            }
            Ok(None) => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::global::quote_822_local::SplitParams;

    fn params(is_local: &dyn Fn(&str) -> Result<bool, DictError>) -> Params<'_> {
        Params {
            split: SplitParams {
                delimiters: "+".into(),
                ..Default::default()
            },
            myorigin: "localhost.localdomain".into(),
            is_local,
        }
    }

    // The cases of Postfix's transport.in test script, with its expected
    // results (transport.ref).
    #[test]
    fn postfix_transport_test() {
        let not_local = |_: &str| Ok(false);
        let p = params(&not_local);
        let run = |table: &str, cases: &[(&str, Option<(&str, &str)>)]| {
            let maps = Maps::create("transport map", table, flags::FOLD_FIX);
            let mut t = Transport::from_maps(maps, false);
            for (addr, want) in cases {
                let dom = &addr[addr.rfind('@').unwrap() + 1..];
                let (mut c, mut h) = ("DEFAULT".to_string(), dom.to_string());
                let found = t.lookup(addr, dom, &p, &mut c, &mut h).unwrap();
                match want {
                    Some((wc, wh)) => {
                        assert!(found, "{table} {addr}");
                        assert_eq!((c.as_str(), h.as_str()), (*wc, *wh), "{table} {addr}");
                    }
                    None => assert!(!found, "{table} {addr}"),
                }
            }
        };
        run(
            "inline:{rcpt1@example1.com=channel1:nexthop1, rcpt2@example2=channel2:, example3=channel3}",
            &[
                ("rcpt1@example1.com", Some(("channel1", "nexthop1"))),
                ("rcpt1+ext1@example1.com", Some(("channel1", "nexthop1"))),
                ("rcpt2@example2", Some(("channel2", "example2"))),
                ("rcpt@example3", Some(("channel3", "example3"))),
            ],
        );
        run(
            "inline:{*=channel0:nexthop0, rcpt1@example1.com=channel1:nexthop1}",
            &[
                ("rcpt1@example1.com", Some(("channel1", "nexthop1"))),
                ("rcpt2@example2", Some(("channel0", "nexthop0"))),
            ],
        );
        run(
            "inline:{*=channel0, rcpt1@example1.com=channel1:nexthop1}",
            &[
                ("rcpt1@example1.com", Some(("channel1", "nexthop1"))),
                ("rcpt2@example2", Some(("channel0", "example2"))),
            ],
        );
        run(
            "inline:{*=:nexthop0, rcpt1@example1.com=channel1:nexthop1}",
            &[
                ("rcpt1@example1.com", Some(("channel1", "nexthop1"))),
                ("rcpt2@example2", Some(("DEFAULT", "nexthop0"))),
            ],
        );
        run(
            "inline:{*=:, rcpt1@example1.com=channel1:nexthop1}",
            &[
                ("rcpt1@example1.com", Some(("channel1", "nexthop1"))),
                ("rcpt2@example2", Some(("DEFAULT", "example2"))),
            ],
        );
        run(
            "inline:{example=:example-result,.example=:dot-example-result}",
            &[
                ("plain1+ext@other-example", None),
                ("foo@example", Some(("DEFAULT", "example-result"))),
                ("foo@sub.example", Some(("DEFAULT", "dot-example-result"))),
                (
                    "foo@sub.sub.example",
                    Some(("DEFAULT", "dot-example-result")),
                ),
            ],
        );
    }
}
