//! The fast flush client (Postfix's flush_clnt.c): ask the flush service
//! on `public/$flush_service_name` to log a queue ID for a site, deliver a
//! site's or one queue file's mail, or refresh its logs. Used by smtpd
//! (ETRN), postqueue -s/-i, sendmail -qR and the delivery agents.

use crate::global::mail_conf::MailConf;
use crate::global::match_list::{FLAG_RETURN, MatchList, domain_list, match_parent_style};
use crate::global::msg;
use std::io::{BufReader, Write};
use std::time::Duration;

/// FLUSH_STAT_* reply codes.
pub const STAT_FAIL: i32 = -1;
pub const STAT_OK: i32 = 0;
pub const STAT_BAD: i32 = 3;
pub const STAT_DENY: i32 = 4;

/// The protocol name the server announces.
pub const PROTO: &str = "queue_flush_protocol";

/// fast_flush_domains as a domain list (flush_init).
pub fn flush_domains(conf: &MailConf) -> MatchList {
    let s = |n: &str| conf.lookup_eval(n).ok().flatten().unwrap_or_default();
    let flags = FLAG_RETURN
        | match_parent_style(&s("parent_domain_matches_subdomains"), "fast_flush_domains");
    domain_list("fast_flush_domains", flags, &s("fast_flush_domains"))
}

/// One request/reply exchange (mail_command_client); -1 when the service
/// cannot be reached or misbehaves (with Postfix's warning).
pub fn command(queue_dir: &str, service: &str, attrs: &[(&str, &str)]) -> i32 {
    let path = format!("{queue_dir}/public/{service}");
    let shown = format!("public/{service}");
    let mut s = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) => {
            msg::warn(&format!(
                "connect to {shown}: {}",
                crate::global::config_file::errno_text(&e)
            ));
            return -1;
        }
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3600)));
    let mut r = BufReader::new(match s.try_clone() {
        Ok(c) => c,
        Err(_) => return -1,
    });
    match crate::global::attr0::scan(&mut r) {
        Ok(Some(v)) if v.len() == 1 && v[0].0 == "protocol" && v[0].1 == PROTO => {}
        _ => {
            msg::warn(&format!("read {shown}: Success"));
            return -1;
        }
    }
    if s.write_all(&crate::global::attr0::encode(attrs)).is_err() {
        msg::warn(&format!("write {shown}: Broken pipe"));
        return -1;
    }
    match crate::global::attr0::scan(&mut r) {
        Ok(Some(v)) if v.len() == 1 && v[0].0 == "status" => v[0].1.parse().unwrap_or(-1),
        _ => {
            msg::warn(&format!("write/read {shown}: Success"));
            -1
        }
    }
}

fn service_and_queue(conf: &MailConf) -> (String, String) {
    let s = |n: &str, d: &str| {
        conf.lookup_eval(n)
            .ok()
            .flatten()
            .unwrap_or_else(|| d.to_string())
    };
    (
        s("flush_service_name", "flush"),
        s("queue_directory", "/var/spool/postfix"),
    )
}

/// The "using backwards-compatible default setting" notice applies.
fn compat_notice(conf: &MailConf) -> bool {
    conf.compat_warnings()
        .map(|w| w.flush_domains)
        .unwrap_or(false)
}

/// flush_send_site: deliver mail queued for `site`.
pub fn send_site(conf: &MailConf, list: &mut MatchList, site: &str) -> i32 {
    if list.matches(&[site]) {
        if compat_notice(conf) {
            msg::info(&format!(
                "using backwards-compatible default setting relay_domains=$mydestination to flush mail for domain \"{site}\""
            ));
        }
        let (svc, q) = service_and_queue(conf);
        command(&q, &svc, &[("request", "send_site"), ("site", site)])
    } else if !list.error {
        STAT_DENY
    } else {
        STAT_FAIL
    }
}

/// flush_send_file: deliver one queue file.
pub fn send_file(conf: &MailConf, queue_id: &str) -> i32 {
    let (svc, q) = service_and_queue(conf);
    command(
        &q,
        &svc,
        &[("request", "send_file"), ("queue_id", queue_id)],
    )
}

/// flush_add: log `queue_id` for `site`.
pub fn add(conf: &MailConf, list: &mut MatchList, site: &str, queue_id: &str) -> i32 {
    if list.matches(&[site]) {
        if compat_notice(conf) {
            msg::info(&format!(
                "using backwards-compatible default setting relay_domains=$mydestination to update fast-flush logfile for domain \"{site}\""
            ));
        }
        let (svc, q) = service_and_queue(conf);
        command(
            &q,
            &svc,
            &[("request", "add"), ("site", site), ("queue_id", queue_id)],
        )
    } else if !list.error {
        STAT_DENY
    } else {
        STAT_FAIL
    }
}

fn simple(conf: &MailConf, req: &str) -> i32 {
    let ffd = conf
        .lookup_eval("fast_flush_domains")
        .ok()
        .flatten()
        .unwrap_or_default();
    if ffd.is_empty() {
        return STAT_DENY;
    }
    let (svc, q) = service_and_queue(conf);
    command(&q, &svc, &[("request", req)])
}

/// flush_refresh: refresh logs older than fast_flush_refresh_time.
pub fn refresh(conf: &MailConf) -> i32 {
    simple(conf, "rfrsh")
}

/// flush_purge: refresh all logs.
pub fn purge(conf: &MailConf) -> i32 {
    simple(conf, "purge")
}
