//! Replaces proxymap(8) of Postfix 3.7: the table lookup proxy. Clients
//! (the `proxy:type:name` table, see [`crate::global::dict::proxy`]) send
//! their lookups to `private/proxymap`, and updates to `private/proxywrite`;
//! this server opens each table once, with its own privileges, and answers
//! many clients over persistent connections.
//!
//! Protocol (attr_print0): on connect the server announces
//! `protocol=proxymap_protocol`. Each request is one attribute group
//! `request=open|lookup|update|delete|sequence`, `table`, `flags`, then
//! `key` (lookup, delete), `key`+`value` (update) or `function`
//! (sequence: 0 first, 1 next). Replies: `status` (0 ok, 1 no key,
//! 2 retry, 3 bad request, 4 denied, 5 configuration error) followed by
//! `flags` (open), `value` (lookup) or `key`+`value` (sequence).
//!
//! Only tables listed as `proxy:type:name` in proxy_read_maps (service
//! proxymap) or proxy_write_maps (service proxywrite) are served; others
//! get status 4 and a warning naming the parameter to change. Updates and
//! deletes are refused on the read-only service.
//!
//! Trust: requests come from local mail system processes through the
//! private socket. Privilege: mail_owner (master.cf's unprivileged
//! default), chroot as master.cf says. Parameters: proxy_read_maps,
//! proxy_write_maps, ipc_timeout, and the table parameters that
//! proxy_read_maps names.

use crate::global::attr0;
use crate::global::dict::{Dict, DictError, OpenMode, Seq, Status, flags};
use crate::global::msg;
use crate::master::server::{RequestService, Server};
use crate::util::stringops::{COMMA_SP, extpar, split_q};
use std::collections::HashSet;
use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, SystemTime};

/// PROXY_STAT_* reply codes.
pub const STAT_OK: i32 = 0;
pub const STAT_NOKEY: i32 = 1;
pub const STAT_RETRY: i32 = 2;
pub const STAT_BAD: i32 = 3;
pub const STAT_DENY: i32 = 4;
pub const STAT_CONFIG: i32 = 5;

/// The protocol name the server announces.
pub const PROTO: &str = "proxymap_protocol";

/// Requestor flags the client may change per request (DICT_FLAG_RQST_MASK).
pub const RQST_MASK: u32 = flags::FOLD_ANY
    | flags::LOCK
    | flags::DUP_REPLACE
    | flags::DUP_WARN
    | flags::DUP_IGNORE
    | flags::SYNC_UPDATE
    | flags::NO_REGSUB
    | flags::NO_PROXY
    | flags::NO_UNAUTH
    | flags::UTF8_REQUEST;
/// Flags the table implementation sets (DICT_FLAG_IMPL_MASK).
pub const IMPL_MASK: u32 = flags::FIXED | flags::PATTERN | flags::MULTI_WRITER;
/// Flags that select a table instance (DICT_FLAG_INST_MASK).
pub const INST_MASK: u32 = !(IMPL_MASK | RQST_MASK);

/// Strip any number of leading `proxy:`.
pub fn strip_proxy(mut name: &str) -> &str {
    while let Some(r) = name.strip_prefix("proxy:") {
        name = r;
    }
    name
}

/// The `type:name` tables that a proxy_read_maps / proxy_write_maps value
/// approves (Postfix's authorize_proxied_maps): every `proxy:type:name`,
/// also inside `{ ... }` and inside unionmap:{...} / pipemap:{...}.
pub fn approved(value: &str, param: &str, out: &mut HashSet<String>) {
    for tok in split_q(value, COMMA_SP) {
        let mut type_name = tok.clone();
        if tok.starts_with('{') {
            let (inner, err) = extpar(&tok);
            if let Some(e) = err {
                msg::warn(&format!("bad {param} parameter value: {e}"));
                continue;
            }
            match split_q(&inner, COMMA_SP).into_iter().next() {
                Some(t) => type_name = t,
                None => continue,
            }
        }
        let nested = ["unionmap:", "pipemap:"]
            .iter()
            .find_map(|p| type_name.strip_prefix(p));
        if let Some(nested) = nested {
            if !nested.starts_with('{') {
                continue;
            }
            let (inner, err) = extpar(nested);
            if let Some(e) = err {
                msg::warn(&format!("bad {param} parameter value: {e}"));
                continue;
            }
            approved(&inner, param, out);
            continue;
        }
        if !type_name.starts_with("proxy:") {
            continue;
        }
        let t = strip_proxy(&type_name);
        if t.contains(':') {
            out.insert(t.to_string());
        }
    }
}

/// dict_flags_str: the flag names joined with `|` (unknown bits in hex).
pub fn flags_str(f: u32) -> String {
    const NAMES: [&str; 21] = [
        "warn_dup",
        "ignore_dup",
        "try0null",
        "try1null",
        "fixed",
        "pattern",
        "lock",
        "replace",
        "sync_update",
        "debug",
        "",
        "no_regsub",
        "no_proxy",
        "no_unauth",
        "fold_fix",
        "fold_mul",
        "open_lock",
        "bulk_update",
        "multi_writer",
        "utf8_request",
        "utf8_active",
    ];
    let mut out: Vec<String> = Vec::new();
    let mut rest = f;
    for (i, n) in NAMES.iter().enumerate() {
        if !n.is_empty() && f & (1 << i) != 0 {
            out.push(n.to_string());
            rest &= !(1 << i);
        }
    }
    if rest & flags::SRC_RHS_IS_FILE != 0 {
        out.push("src_rhs_is_file".into());
        rest &= !flags::SRC_RHS_IS_FILE;
    }
    if rest != 0 {
        out.push(format!("0x{rest:x}"));
    }
    out.join("|")
}

/// One open table and the file whose change makes a reader restart.
struct Open {
    dict: Box<dyn Dict>,
    stamp: Option<(std::path::PathBuf, Option<SystemTime>)>,
}

/// The service state.
pub struct Proxymap {
    pub writer: bool,
    pub approved: HashSet<String>,
    tables: Vec<((String, u32), Open)>,
    timeout: Duration,
}

fn param_name(writer: bool) -> &'static str {
    if writer {
        "proxy_write_maps"
    } else {
        "proxy_read_maps"
    }
}

/// The file behind a file-based table, for change detection.
fn stamp_of(spec: &str) -> Option<(std::path::PathBuf, Option<SystemTime>)> {
    let (ty, name) = spec.split_once(':')?;
    let cands: Vec<String> = match ty {
        "hash" | "btree" => vec![format!("{name}.db")],
        "lmdb" => vec![format!("{name}.lmdb")],
        "cdb" => vec![format!("{name}.cdb")],
        "dbm" | "sdbm" => vec![format!("{name}.pag")],
        "texthash" | "regexp" | "pcre" | "cidr" => vec![name.to_string()],
        _ => return None,
    };
    let p = crate::util::latin1::to_path(&cands[0]);
    let m = std::fs::metadata(&p).and_then(|m| m.modified()).ok();
    Some((p, m))
}

impl Proxymap {
    pub fn new(writer: bool, maps_value: &str, timeout: Duration) -> Proxymap {
        let mut set = HashSet::new();
        approved(maps_value, param_name(writer), &mut set);
        Proxymap {
            writer,
            approved: set,
            tables: Vec::new(),
            timeout,
        }
    }

    /// proxy_map_find: the approved, open table, or the reply status.
    fn find(&mut self, table: &str, req_flags: u32) -> Result<&mut Box<dyn Dict>, i32> {
        let name = strip_proxy(table);
        if !name.contains(':') {
            return Err(STAT_BAD);
        }
        if !self.approved.contains(name) {
            msg::warn(&format!("request for unapproved table: \"{name}\""));
            msg::warn(&format!(
                "to approve this table for {} access, list proxy:{name} in main.cf:{}",
                if self.writer {
                    "read-write"
                } else {
                    "read-only"
                },
                param_name(self.writer)
            ));
            return Err(STAT_DENY);
        }
        let inst = req_flags & INST_MASK;
        // A handful of tables: a scan costs less than building a key.
        let at = match self
            .tables
            .iter()
            .position(|((n, f), _)| *f == inst && n == name)
        {
            Some(i) => i,
            None => {
                let mode = if self.writer {
                    OpenMode::ReadWrite
                } else {
                    OpenMode::ReadOnly
                };
                let dict = crate::global::maps::open_or_surrogate(name, mode, req_flags);
                let stamp = if self.writer { None } else { stamp_of(name) };
                self.tables
                    .push(((name.to_string(), inst), Open { dict, stamp }));
                self.tables.len() - 1
            }
        };
        Ok(&mut self.tables[at].1.dict)
    }

    /// Handle one request group; the reply attributes.
    pub fn request(&mut self, attrs: &[(String, String)]) -> Vec<(&'static str, String)> {
        let names: Vec<&str> = attrs.iter().map(|(n, _)| n.as_str()).collect();
        let val = |i: usize| attrs[i].1.as_str();
        let int = |i: usize| crate::global::mail_conf::parse_strtol(&attrs[i].1);
        let req = val(0).to_string();
        let status_only = |s: i32| vec![("status", s.to_string())];
        match req.as_str() {
            "lookup" => {
                let (st, v) = if names[1..] != ["table", "flags", "key"] || int(2).is_none() {
                    (STAT_BAD, String::new())
                } else {
                    let fl = int(2).unwrap() as u32;
                    match self.find(val(1), fl) {
                        Err(s) => (s, String::new()),
                        Ok(d) => {
                            d.set_flags((d.flags() & !RQST_MASK) | (fl & RQST_MASK));
                            match d.lookup(val(3)) {
                                Ok(Some(v)) => (STAT_OK, v),
                                Ok(None) => (STAT_NOKEY, String::new()),
                                Err(e) => (err_status(&e), String::new()),
                            }
                        }
                    }
                };
                vec![("status", st.to_string()), ("value", v)]
            }
            "update" | "delete" => {
                let update = req == "update";
                let want: &[&str] = if update {
                    &["table", "flags", "key", "value"]
                } else {
                    &["table", "flags", "key"]
                };
                if names[1..] != *want || int(2).is_none() {
                    return status_only(STAT_BAD);
                }
                if !self.writer {
                    msg::warn(&format!(
                        "refusing {} {req} request on non-proxywrite service",
                        val(1)
                    ));
                    return status_only(STAT_DENY);
                }
                let fl = int(2).unwrap() as u32;
                let st = match self.find(val(1), fl) {
                    Err(s) => s,
                    Ok(d) => {
                        let mut f =
                            (d.flags() & !RQST_MASK) | (fl & RQST_MASK) | flags::SYNC_UPDATE;
                        if update {
                            f |= flags::DUP_REPLACE;
                        }
                        d.set_flags(f);
                        let r = if update {
                            d.update(val(3), val(4))
                        } else {
                            d.delete(val(3))
                        };
                        match r {
                            Ok(Status::Success) => STAT_OK,
                            Ok(Status::Fail) => STAT_NOKEY,
                            Err(e) => err_status(&e),
                        }
                    }
                };
                status_only(st)
            }
            "sequence" => {
                let func = if names.len() == 4 { int(3) } else { None };
                let (st, k, v) = if names[1..] != ["table", "flags", "function"]
                    || int(2).is_none()
                    || !matches!(func, Some(0) | Some(1))
                {
                    (STAT_BAD, String::new(), String::new())
                } else {
                    let fl = int(2).unwrap() as u32;
                    match self.find(val(1), fl) {
                        Err(s) => (s, String::new(), String::new()),
                        Ok(d) => {
                            d.set_flags((d.flags() & !RQST_MASK) | (fl & RQST_MASK));
                            let how = if func == Some(0) {
                                Seq::First
                            } else {
                                Seq::Next
                            };
                            match d.sequence(how) {
                                Ok(Some((k, v))) => (STAT_OK, k, v),
                                Ok(None) => (STAT_NOKEY, String::new(), String::new()),
                                Err(e) => (err_status(&e), String::new(), String::new()),
                            }
                        }
                    }
                };
                vec![("status", st.to_string()), ("key", k), ("value", v)]
            }
            "open" => {
                let (st, f) = if names[1..] != ["table", "flags"] || int(2).is_none() {
                    (STAT_BAD, 0)
                } else {
                    match self.find(val(1), int(2).unwrap() as u32) {
                        Err(s) => (s, 0),
                        Ok(d) => (STAT_OK, d.flags()),
                    }
                };
                vec![
                    ("status", st.to_string()),
                    ("flags", (f as i32).to_string()),
                ]
            }
            other => {
                msg::warn(&format!("unrecognized request: \"{other}\", ignored"));
                status_only(STAT_BAD)
            }
        }
    }

    /// dict_changed_name: a read-only table whose file changed.
    fn changed(&self) -> Option<String> {
        for ((name, inst), open) in &self.tables {
            if open.dict.flags() & flags::MULTI_WRITER != 0 {
                continue;
            }
            if let Some((p, m)) = &open.stamp {
                let now = std::fs::metadata(p).and_then(|m| m.modified()).ok();
                if now != *m {
                    // The name the table is registered under.
                    return Some(format!("{name}:{}", flags_str(*inst)));
                }
            }
        }
        None
    }
}

fn err_status(e: &DictError) -> i32 {
    match e {
        DictError::Retry(_) => STAT_RETRY,
        DictError::Config(_) => STAT_CONFIG,
        DictError::Fatal(t) => msg::fatal(t),
    }
}

impl RequestService for Proxymap {
    fn pre_accept(&mut self, _server: &Server) -> bool {
        if !self.writer
            && let Some(t) = self.changed()
        {
            msg::info(&format!("table {t} has changed -- restarting"));
            return false;
        }
        true
    }

    fn post_accept(&mut self, conn: &mut UnixStream, _server: &Server) {
        let _ = conn.set_read_timeout(Some(self.timeout));
        let _ = conn.set_write_timeout(Some(self.timeout));
        let _ = conn.write_all(&attr0::encode(&[("protocol", PROTO)]));
    }

    fn serve(&mut self, reader: &mut BufReader<UnixStream>, _server: &Server) -> bool {
        let attrs = match attr0::scan(reader) {
            Ok(Some(a)) => a,
            _ => return false,
        };
        if attrs.first().map(|(n, _)| n.as_str()) != Some("request") {
            let what = attrs.first().map(|(n, _)| n.clone()).unwrap_or_default();
            msg::warn(&format!(
                "unexpected attribute {what} from private/proxymap socket (expecting: request)"
            ));
            return false;
        }
        let reply = self.request(&attrs);
        let pairs: Vec<(&str, &str)> = reply.iter().map(|(n, v)| (*n, v.as_str())).collect();
        reader.get_mut().write_all(&attr0::encode(&pairs)).is_ok()
    }
}

/// post_jail_init: which service we are, and the approved tables.
pub fn main(args: Vec<std::ffi::OsString>) -> i32 {
    crate::global::maps::set_allow_surrogate(true);
    crate::global::dict::proxy::set_in_server();
    let argv: Vec<String> = args
        .iter()
        .map(|a| crate::util::latin1::from_os(a))
        .collect();
    let progname = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    let opts = crate::master::server::parse_options(&argv, &progname).unwrap_or_default();
    let mut conf = crate::global::mail_conf::MailConf::read(None).unwrap_or_default();
    for (n, v) in &opts.overrides {
        conf.set(n, v);
    }
    let writer = match opts.service_name.as_str() {
        "proxywrite" => true,
        "proxymap" => false,
        _ => {
            msg::init(&progname);
            msg::fatal("service name must be one of proxymap or proxymap")
        }
    };
    let maps = conf
        .lookup_eval(param_name(writer))
        .ok()
        .flatten()
        .unwrap_or_default();
    let timeout = conf
        .get_time("ipc_timeout", 's', 1, 0)
        .unwrap_or(3600)
        .max(1) as u64;
    let mut svc = Proxymap::new(writer, &maps, Duration::from_secs(timeout));
    if writer {
        // Never be killed with master's process group in mid-update.
        let _ = crate::sys::process::setsid();
    }
    crate::master::server::request_server(args, None, &mut svc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(n, x)| (n.to_string(), x.to_string()))
            .collect()
    }

    #[test]
    fn approval_list() {
        let mut s = HashSet::new();
        approved(
            "hash:/a, proxy:hash:/b proxy:proxy:btree:/c {proxy:inline:{x=y} a=b} \
             unionmap:{proxy:cdb:/d, hash:/e} proxy:nocolon pipemap:cdb:/f",
            "proxy_read_maps",
            &mut s,
        );
        let mut v: Vec<_> = s.into_iter().collect();
        v.sort();
        assert_eq!(v, ["btree:/c", "cdb:/d", "hash:/b", "inline:{x=y}"]);
    }

    #[test]
    fn requests() {
        let mut p = Proxymap::new(false, "proxy:inline:{k=v}", Duration::from_secs(5));
        let r = p.request(&a(&[
            ("request", "lookup"),
            ("table", "inline:{k=v}"),
            ("flags", "0"),
            ("key", "k"),
        ]));
        assert_eq!(r, [("status", "0".to_string()), ("value", "v".to_string())]);
        let r = p.request(&a(&[
            ("request", "lookup"),
            ("table", "proxy:inline:{k=v}"),
            ("flags", "0"),
            ("key", "x"),
        ]));
        assert_eq!(r[0].1, "1");
        let r = p.request(&a(&[
            ("request", "lookup"),
            ("table", "inline:{k=w}"),
            ("flags", "0"),
            ("key", "k"),
        ]));
        assert_eq!(r[0].1, "4");
        let r = p.request(&a(&[
            ("request", "lookup"),
            ("table", "nocolon"),
            ("flags", "0"),
            ("key", "k"),
        ]));
        assert_eq!(r[0].1, "3");
        let r = p.request(&a(&[
            ("request", "lookup"),
            ("table", "inline:{k=v}"),
            ("flags", "x"),
            ("key", "k"),
        ]));
        assert_eq!(r[0].1, "3");
        let r = p.request(&a(&[
            ("request", "update"),
            ("table", "inline:{k=v}"),
            ("flags", "0"),
            ("key", "k"),
            ("value", "z"),
        ]));
        assert_eq!(r, [("status", "4".to_string())]);
        let r = p.request(&a(&[
            ("request", "sequence"),
            ("table", "inline:{k=v}"),
            ("flags", "0"),
            ("function", "0"),
        ]));
        assert_eq!(r[0].1, "0");
        assert_eq!(r[1].1, "k");
        let r = p.request(&a(&[
            ("request", "sequence"),
            ("table", "inline:{k=v}"),
            ("flags", "0"),
            ("function", "1"),
        ]));
        assert_eq!(r[0].1, "1");
        let r = p.request(&a(&[
            ("request", "open"),
            ("table", "inline:{k=v}"),
            ("flags", "0"),
        ]));
        assert_eq!(r[0].1, "0");
        assert_ne!(r[1].1.parse::<u32>().unwrap() & flags::FIXED, 0);
        let r = p.request(&a(&[("request", "frob")]));
        assert_eq!(r, [("status", "3".to_string())]);
    }
}
