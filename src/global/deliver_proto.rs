//! The queue manager ↔ delivery agent protocol of Postfix 3.7
//! (deliver_request.c on the agent side, qmgr_deliver.c / deliver_pass.c on
//! the client side), in the null-terminated attribute encoding of
//! [`crate::global::attr0`]:
//!
//! 1. the agent announces `protocol=delivery_request_protocol`;
//! 2. the client sends one group with the message attributes (the time
//!    stamps as `time`, the binary MSG_STATS structure in BASE64) ending
//!    with `recipient_count`, then one group per recipient
//!    (`original_recipient recipient offset dsn_orig_rcpt notify_flags`);
//! 3. the agent delivers, marks finished recipients done in the queue file
//!    itself, appends deferred/bounced recipients to the defer/bounce logs,
//!    and answers one group: the hop status (`status diag_type diag_text
//!    mta_type mta_mname action reason`) and the integer `status` (0: every
//!    recipient delivered or bounced and the bookkeeping done, otherwise
//!    [`DEL_STAT_DEFER`], as Postfix's agents: a deferred recipient makes it
//!    non-zero);
//! 4. the agent waits for the client to close; or, when it may serve
//!    another request (its use count is below max_use and master is still
//!    there), it sends a fresh announcement together with the answer and
//!    waits for the next request on the same connection (step 2), until
//!    the client closes. Postfix makes one connection per delivery; the
//!    reuse saves the connect/accept, the accept lock and two status
//!    messages to master per delivery (compat/DIVERGENCES.md).
//!
//! Per-recipient outcomes never travel on the wire: the queue file (done
//! marks) and the defer/bounce logs carry them, as in Postfix.
//!
//! [`serve`] is the agent side every delivery agent calls.

use crate::global::attr0;
use crate::global::deliver_request::{
    DeliveryRequest, Dsn, MsgStats, Outcome, Recipient, RecipientResult, TimeVal, log_line, now,
};
use crate::global::mail_queue::{self, QueueConf};
use crate::global::msg;
use crate::global::rec_type;
use crate::util::stringops::{base64_decode, base64_encode};
use std::io::{self, BufRead, BufReader, Read, Write};

/// The protocol name the agent announces.
pub const PROTO_DELIVER: &str = "delivery_request_protocol";
/// The final status: everything recorded.
pub const DEL_STAT_FINAL: i32 = 0;
/// The final status: some bookkeeping failed, try again.
pub const DEL_STAT_DEFER: i32 = 1;
/// The size of Postfix's MSG_STATS on LP64 (5 timevals and an int, padded).
const MSG_STATS_SIZE: usize = 88;

/// A site- or transport-level status the agent reports (dsn_print).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HopStatus {
    pub status: String,
    pub dtype: String,
    pub dtext: String,
    pub mtype: String,
    pub mname: String,
    pub action: String,
    pub reason: String,
}

/// What the agent answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    pub hop: HopStatus,
    pub status: i32,
}

/// The MSG_STATS structure as Postfix sends it (native byte order).
pub fn stats_encode(s: &MsgStats) -> String {
    let mut b = Vec::with_capacity(MSG_STATS_SIZE);
    for t in [
        s.incoming_arrival,
        s.active_arrival,
        s.agent_handoff,
        s.conn_setup_done,
        s.deliver_done,
    ] {
        b.extend_from_slice(&t.0.to_ne_bytes());
        b.extend_from_slice(&t.1.to_ne_bytes());
    }
    b.resize(MSG_STATS_SIZE, 0);
    base64_encode(&b)
}

/// The inverse of [`stats_encode`].
pub fn stats_decode(text: &str) -> Option<MsgStats> {
    let b = base64_decode(text)?;
    if b.len() != MSG_STATS_SIZE {
        return None;
    }
    let tv = |i: usize| -> TimeVal {
        let o = i * 16;
        let s = i64::from_ne_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
        let u = i64::from_ne_bytes(b[o + 8..o + 16].try_into().unwrap_or([0; 8]));
        (s, u)
    };
    Some(MsgStats {
        incoming_arrival: tv(0),
        active_arrival: tv(1),
        agent_handoff: tv(2),
        conn_setup_done: tv(3),
        deliver_done: tv(4),
    })
}

/// Encode a request as the client sends it (the common group and one group
/// per recipient).
pub fn encode_request(req: &DeliveryRequest) -> Vec<u8> {
    let flags = req.flags.to_string();
    let off = req.data_offset.to_string();
    let size = req.data_size.to_string();
    let utf8 = if req.smtputf8 { "1" } else { "0" };
    let ret = req.dsn_ret.to_string();
    let stats = stats_encode(&req.stats);
    let count = req.rcpt.len().to_string();
    let mut out = attr0::encode(&[
        ("flags", &flags),
        ("queue_name", &req.queue_name),
        ("queue_id", &req.queue_id),
        ("offset", &off),
        ("size", &size),
        ("nexthop", &req.nexthop),
        ("encoding", &req.encoding),
        ("smtputf8", utf8),
        ("sender", &req.sender),
        ("envelope_id", &req.dsn_envid),
        ("ret_flags", &ret),
        ("time", &stats),
        ("log_client_name", &req.client.name),
        ("log_client_address", &req.client.addr),
        ("log_client_port", ""),
        ("log_protocol_name", &req.client.proto),
        ("log_helo_name", &req.client.helo),
        ("sasl_method", &req.client.sasl_method),
        ("sasl_username", &req.client.sasl_username),
        ("sasl_sender", &req.client.sasl_sender),
        ("log_ident", &req.queue_id),
        ("rewrite_context", "remote"),
        ("recipient_count", &count),
    ]);
    for r in &req.rcpt {
        let off = r.offset.to_string();
        let notify = r.dsn_notify.to_string();
        attr0::encode_into(
            &[
                ("original_recipient", &r.orig_addr),
                ("recipient", &r.address),
                ("offset", &off),
                ("dsn_orig_rcpt", &r.dsn_orcpt),
                ("notify_flags", &notify),
            ],
            &mut out,
        );
    }
    out
}

fn strict<'a>(g: &'a [(String, String)], names: &[&str]) -> Result<Vec<&'a str>, String> {
    if g.len() != names.len() {
        return Err(format!(
            "expected {} attributes, got {}",
            names.len(),
            g.len()
        ));
    }
    let mut v = Vec::new();
    for ((n, val), want) in g.iter().zip(names) {
        if n != want {
            return Err(format!("unexpected attribute {n} (expected {want})"));
        }
        v.push(val.as_str());
    }
    Ok(v)
}

fn num<T: std::str::FromStr>(s: &str, name: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("bad numerical attribute {name}: {s}"))
}

/// Read a request as the agent receives it (deliver_request_get), without
/// the queue file checks. Postfix's warning text on failure.
pub fn read_request<R: BufRead + ?Sized>(r: &mut R) -> Result<DeliveryRequest, String> {
    const COMMON: [&str; 23] = [
        "flags",
        "queue_name",
        "queue_id",
        "offset",
        "size",
        "nexthop",
        "encoding",
        "smtputf8",
        "sender",
        "envelope_id",
        "ret_flags",
        "time",
        "log_client_name",
        "log_client_address",
        "log_client_port",
        "log_protocol_name",
        "log_helo_name",
        "sasl_method",
        "sasl_username",
        "sasl_sender",
        "log_ident",
        "rewrite_context",
        "recipient_count",
    ];
    let bad = || "deliver_request_get: error receiving common attributes".to_string();
    let g = attr0::scan(r).map_err(|_| bad())?.ok_or_else(bad)?;
    let v = strict(&g, &COMMON).map_err(|_| bad())?;
    let mut req = DeliveryRequest {
        flags: num(v[0], "flags").map_err(|_| bad())?,
        queue_name: v[1].to_string(),
        queue_id: v[2].to_string(),
        data_offset: num(v[3], "offset").map_err(|_| bad())?,
        data_size: num(v[4], "size").map_err(|_| bad())?,
        nexthop: v[5].to_string(),
        encoding: v[6].to_string(),
        smtputf8: v[7] != "0",
        sender: v[8].to_string(),
        dsn_envid: v[9].to_string(),
        dsn_ret: num(v[10], "ret_flags").map_err(|_| bad())?,
        stats: stats_decode(v[11]).ok_or_else(bad)?,
        ..Default::default()
    };
    req.client.name = v[12].to_string();
    req.client.addr = v[13].to_string();
    req.client.proto = v[15].to_string();
    req.client.helo = v[16].to_string();
    req.client.sasl_method = v[17].to_string();
    req.client.sasl_username = v[18].to_string();
    req.client.sasl_sender = v[19].to_string();
    let count: i64 = num(v[22], "recipient_count").map_err(|_| bad())?;
    let rbad = || "deliver_request_get: error receiving recipient attributes".to_string();
    for _ in 0..count.clamp(0, 100_000) {
        let g = attr0::scan(r).map_err(|_| rbad())?.ok_or_else(rbad)?;
        let v = strict(
            &g,
            &[
                "original_recipient",
                "recipient",
                "offset",
                "dsn_orig_rcpt",
                "notify_flags",
            ],
        )
        .map_err(|_| rbad())?;
        req.rcpt.push(Recipient {
            orig_addr: v[0].to_string(),
            address: v[1].to_string(),
            offset: num(v[2], "offset").map_err(|_| rbad())?,
            dsn_orcpt: v[3].to_string(),
            dsn_notify: num(v[4], "notify_flags").map_err(|_| rbad())?,
        });
    }
    if req.rcpt.is_empty() {
        return Err(format!(
            "{}: no recipients in delivery request for destination {}",
            req.queue_id, req.nexthop
        ));
    }
    Ok(req)
}

/// Encode the agent's final answer.
pub fn encode_reply(reply: &Reply) -> Vec<u8> {
    let st = reply.status.to_string();
    let h = &reply.hop;
    attr0::encode(&[
        ("status", &h.status),
        ("diag_type", &h.dtype),
        ("diag_text", &h.dtext),
        ("mta_type", &h.mtype),
        ("mta_mname", &h.mname),
        ("action", &h.action),
        ("reason", &h.reason),
        ("status", &st),
    ])
}

/// Decode the agent's final answer.
pub fn read_reply<R: BufRead + ?Sized>(r: &mut R) -> Result<Reply, String> {
    let g = attr0::scan(r)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "unexpected end of input".to_string())?;
    let v = strict(
        &g,
        &[
            "status",
            "diag_type",
            "diag_text",
            "mta_type",
            "mta_mname",
            "action",
            "reason",
            "status",
        ],
    )?;
    Ok(Reply {
        hop: HopStatus {
            status: v[0].into(),
            dtype: v[1].into(),
            dtext: v[2].into(),
            mtype: v[3].into(),
            mname: v[4].into(),
            action: v[5].into(),
            reason: v[6].into(),
        },
        status: num(v[7], "status")?,
    })
}

/// [`read_reply`] over one complete attribute group (up to and including
/// its final NUL, as qmgr's event loop collects it): the values are taken
/// straight from the buffer. Anything unexpected is left to
/// [`read_reply`], for its error text.
pub fn parse_reply(group: &[u8]) -> Result<Reply, String> {
    const NAMES: [&[u8]; 8] = [
        b"status",
        b"diag_type",
        b"diag_text",
        b"mta_type",
        b"mta_mname",
        b"action",
        b"reason",
        b"status",
    ];
    let mut v: [&[u8]; 8] = [b""; 8];
    let mut it = group.split(|&b| b == 0);
    let mut ok = true;
    for (k, want) in NAMES.iter().enumerate() {
        match (it.next(), it.next()) {
            (Some(n), Some(val)) if n == *want => v[k] = val,
            _ => {
                ok = false;
                break;
            }
        }
    }
    // The group's end (an empty name), then nothing.
    ok = ok && it.next() == Some(b"") && it.next() == Some(b"") && it.next().is_none();
    let status = std::str::from_utf8(v[7]).ok().and_then(|t| t.parse().ok());
    let (true, Some(status)) = (ok, status) else {
        let mut r = group;
        return read_reply(&mut r);
    };
    let text = crate::util::latin1::decode;
    Ok(Reply {
        hop: HopStatus {
            status: text(v[0]),
            dtype: text(v[1]),
            dtext: text(v[2]),
            mtype: text(v[3]),
            mname: text(v[4]),
            action: text(v[5]),
            reason: text(v[6]),
        },
        status,
    })
}

/// The client side over a connected stream (qmgr_deliver): check the
/// greeting, send the request, wait for the reply.
pub fn deliver_via<S: Read + Write>(stream: S, req: &DeliveryRequest) -> Result<Reply, String> {
    let mut r = BufReader::new(stream);
    let g = attr0::scan(&mut r)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "unexpected end of input".to_string())?;
    if g.len() != 1 || g[0].0 != "protocol" || g[0].1 != PROTO_DELIVER {
        return Err("bad protocol greeting".into());
    }
    r.get_mut()
        .write_all(&encode_request(req))
        .and_then(|_| r.get_mut().flush())
        .map_err(|e| e.to_string())?;
    read_reply(&mut r)
}

/// [`deliver_via`] sending the request before the agent's announcement
/// arrives (the agent reads the request only after it wrote that, so the
/// request simply waits in the socket): the agent never waits a round trip
/// for the client, and is free sooner. The announcement is still checked.
pub fn deliver_via_pipelined<S: Read + Write>(
    mut stream: S,
    req: &DeliveryRequest,
) -> Result<Reply, String> {
    stream
        .write_all(&encode_request(req))
        .and_then(|_| stream.flush())
        .map_err(|e| e.to_string())?;
    let mut r = BufReader::with_capacity(1024, stream);
    let g = attr0::scan(&mut r)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "unexpected end of input".to_string())?;
    if g.len() != 1 || g[0].0 != "protocol" || g[0].1 != PROTO_DELIVER {
        return Err("bad protocol greeting".into());
    }
    read_reply(&mut r)
}

/// The client side on a connection that may serve several requests: send
/// the request (before reading anything, as [`deliver_via_pipelined`]),
/// read the agent's announcement when `greeting` (a new connection; on a
/// reused one it came with the previous answer), then the answer. Returns
/// the answer and whether the agent offered the connection for another
/// request: its fresh announcement arrived with the answer (one write) and
/// has been consumed.
pub fn deliver_on<S: Read + Write>(
    r: &mut BufReader<S>,
    req: &DeliveryRequest,
    greeting: bool,
) -> Result<(Reply, bool), String> {
    let s = r.get_mut();
    s.write_all(&encode_request(req))
        .and_then(|_| s.flush())
        .map_err(|e| e.to_string())?;
    if greeting {
        let g = attr0::scan(r)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "unexpected end of input".to_string())?;
        if g.len() != 1 || g[0].0 != "protocol" || g[0].1 != PROTO_DELIVER {
            return Err("bad protocol greeting".into());
        }
    }
    let reply = read_reply(r)?;
    let hello = attr0::encode(&[("protocol", PROTO_DELIVER)]);
    let again = r.buffer() == hello.as_slice();
    if again {
        r.consume(hello.len());
    }
    Ok((reply, again))
}

/// Append one recipient to a defer/bounce log (bounce_append_service's
/// format: a blank line, the legacy `<rcpt>: reason` line, the key=value
/// lines, a blank line). `service` is `defer` or `bounce`.
pub fn log_append(
    qc: &QueueConf,
    service: &str,
    id: &str,
    rcpt: &Recipient,
    dsn: &Dsn,
    action: &str,
) -> io::Result<()> {
    use crate::global::quote_822_local::quote_822_local;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::fs::OpenOptionsExt;
    let rel = qc.path(service, id);
    // Files and directories belong to the owner of the log's queue
    // directory (mail_owner), also when a root agent such as local writes.
    let owner = std::fs::metadata(service).ok().map(|m| (m.uid(), m.gid()));
    let chown = |p: &str| {
        if crate::sys::geteuid() == 0
            && let Some((u, g)) = owner
        {
            let _ = crate::sys::process::chown(p, Some(u), Some(g));
        }
    };
    if let Some(dir) = std::path::Path::new(&rel).parent()
        && !dir.exists()
    {
        let _ = std::fs::create_dir_all(dir);
        chown(&dir.to_string_lossy());
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&rel)?;
    chown(&rel);
    crate::sys::lock::flock(&f, crate::sys::lock::LockOp::Exclusive)?;
    // What the bounce daemon does to everything it is given (printable()
    // with '?'): a multi-line server reply stays on one line.
    let neuter = |t: &str| -> String {
        t.chars()
            .map(|c| {
                if c.is_ascii() && !(' '..='~').contains(&c) {
                    '?'
                } else {
                    c
                }
            })
            .collect()
    };
    let rcpt = &Recipient {
        address: neuter(&rcpt.address),
        orig_addr: neuter(&rcpt.orig_addr),
        dsn_orcpt: neuter(&rcpt.dsn_orcpt),
        ..rcpt.clone()
    };
    let fm = dsn.formal();
    let dsn = &Dsn {
        status: neuter(&dsn.status),
        reason: neuter(&dsn.reason),
        formal: None,
    };
    let (dtype, dtext, mtype, mname) = (
        neuter(&fm.dtype),
        neuter(&fm.dtext),
        neuter(&fm.mtype),
        neuter(&fm.mname),
    );
    let action = neuter(action);
    let q = |a: &str| {
        if a.is_empty() {
            String::new()
        } else {
            quote_822_local(a)
        }
    };
    let mut s = String::from("\n");
    s.push_str(&format!("<{}>: {}\n", q(&rcpt.address), dsn.reason));
    s.push_str(&format!(
        "recipient={}\n",
        if rcpt.address.is_empty() {
            "<>".to_string()
        } else {
            q(&rcpt.address)
        }
    ));
    if !rcpt.orig_addr.is_empty() && !rcpt.orig_addr.eq_ignore_ascii_case(&rcpt.address) {
        s.push_str(&format!("original_recipient={}\n", q(&rcpt.orig_addr)));
    }
    if rcpt.offset > 0 {
        s.push_str(&format!("offset={}\n", rcpt.offset));
    }
    if !rcpt.dsn_orcpt.is_empty() {
        s.push_str(&format!("dsn_orig_rcpt={}\n", rcpt.dsn_orcpt));
    }
    if rcpt.dsn_notify != 0 {
        s.push_str(&format!("notify_flags={}\n", rcpt.dsn_notify));
    }
    if !dsn.status.is_empty() {
        s.push_str(&format!("status={}\n", dsn.status));
    }
    s.push_str(&format!("action={action}\n"));
    if !dtype.is_empty() && !dtext.is_empty() {
        s.push_str(&format!("diag_type={dtype}\ndiag_text={dtext}\n"));
    }
    if !mtype.is_empty() && !mname.is_empty() {
        s.push_str(&format!("mta_type={mtype}\nmta_mname={mname}\n"));
    }
    if !dsn.reason.is_empty() {
        s.push_str(&format!("reason={}\n", dsn.reason));
    }
    s.push('\n');
    f.write_all(&crate::util::latin1::encode(&s))?;
    f.sync_all()
}

/// Mark a recipient done in the queue file (deliver_completed).
pub fn mark_done(file: &mut std::fs::File, offset: i64) -> io::Result<()> {
    if offset <= 0 {
        return Ok(());
    }
    // One pwrite(2): no seek before the write (the file position is not
    // used afterwards).
    use std::os::unix::fs::FileExt;
    file.write_all_at(&[rec_type::DONE], offset as u64)
}

/// Record what a delivery agent did (the agent halves of sent(),
/// defer_append(), bounce_append() and deliver_completed()): defer/bounce
/// log entries, and done marks for every request recipient none of whose
/// results was deferred. The agents log their own lines. Returns the final
/// status for the client.
pub fn record_results(qc: &QueueConf, req: &DeliveryRequest, results: &[RecipientResult]) -> i32 {
    record_results_keep(qc, req, results, &[])
}

/// [`record_results`], leaving the recipients in `keep` (indices) undone.
pub fn record_results_keep(
    qc: &QueueConf,
    req: &DeliveryRequest,
    results: &[RecipientResult],
    keep: &[usize],
) -> i32 {
    let mut status = if keep.is_empty() {
        DEL_STAT_FINAL
    } else {
        DEL_STAT_DEFER
    };
    let mut deferred = vec![false; req.rcpt.len()];
    for &k in keep {
        if let Some(d) = deferred.get_mut(k) {
            *d = true;
        }
    }
    let mut failed = vec![false; req.rcpt.len()];
    for r in results {
        let (service, action) = match r.outcome {
            Outcome::Sent => continue,
            Outcome::Deferred => ("defer", "delayed"),
            Outcome::Bounced => ("bounce", "failed"),
        };
        if r.outcome == Outcome::Deferred {
            // As Postfix's defer_append(): a deferred recipient makes the
            // reply "deferred" even when its log entry was written.
            status = DEL_STAT_DEFER;
            if let Some(d) = deferred.get_mut(r.index) {
                *d = true;
            }
        }
        if let Err(e) = log_append(qc, service, &req.queue_id, &r.rcpt, &r.dsn, action) {
            msg::warn(&format!(
                "{}: append file {service} {}: {e}",
                req.queue_id, req.queue_id
            ));
            status = DEL_STAT_DEFER;
            if let Some(f) = failed.get_mut(r.index) {
                *f = true;
            }
        }
    }
    let path = qc.path(&req.queue_name, &req.queue_id);
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
    {
        Ok(mut f) => {
            for (i, r) in req.rcpt.iter().enumerate() {
                if deferred[i] || failed[i] {
                    continue;
                }
                if let Err(e) = mark_done(&mut f, r.offset) {
                    msg::warn(&format!("{}: update queue file: {e}", req.queue_id));
                    status = DEL_STAT_DEFER;
                }
            }
            // Written, not fsynced, as Postfix's deliver_completed(): after
            // a crash a recipient is at worst delivered twice, never lost.
        }
        Err(e) => {
            msg::warn(&format!("open {path}: {e}"));
            status = DEL_STAT_DEFER;
        }
    }
    status
}

/// Check the queue name and ID (mail_open_ok) and point the request at the
/// file.
pub fn check_queue_file(qc: &QueueConf, req: &mut DeliveryRequest) -> Result<(), String> {
    if !mail_queue::name_ok(&req.queue_name) || !mail_queue::id_ok(&req.queue_id) {
        return Err(format!(
            "mail_open_ok: bad queue file name: {}/{}",
            req.queue_name, req.queue_id
        ));
    }
    let path = qc.path(&req.queue_name, &req.queue_id);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(format!("mail_open_ok: {path}: not a regular file")),
        Err(e) => return Err(format!("mail_open_ok: {path}: {e}")),
    }
    req.queue_file = std::path::PathBuf::from(path);
    Ok(())
}

/// What an agent hands back for one request beyond the per-recipient
/// results.
#[derive(Debug, Clone, Default)]
pub struct AgentDone {
    pub results: Vec<RecipientResult>,
    /// The site-level status (request->hop_status): set when the agent
    /// throttled the destination (the queue manager then defers the rest
    /// of the destination's mail with it).
    pub hop: HopStatus,
    /// The request could not be processed (a corrupt queue file): nothing
    /// is marked done and the final status is [`DEL_STAT_DEFER`].
    pub incomplete: bool,
    /// Request recipients (by index) that another agent deferred and
    /// recorded (deliver_pass): not marked done, nothing logged here.
    pub keep: Vec<usize>,
}

/// What an agent's connection offers beyond reading and writing: whether
/// the agent may take another request on it, and the wait for that
/// request. The defaults serve one request per connection.
pub trait AgentConn: Read + Write {
    /// Whether another request may follow the one just served (the use
    /// count is below max_use, and the agent is not stopping).
    fn may_reuse(&mut self) -> bool {
        false
    }
    /// Wait for the next request (or the client's close): `false` when the
    /// agent should give up the connection (idle too long).
    fn wait_next(&mut self) -> bool {
        true
    }
    /// One more request is being served on this connection.
    fn count_use(&mut self) {}
}

impl AgentConn for std::os::unix::net::UnixStream {}

/// The agent side of one connection: greet, read the request, let
/// `deliver` do the work and return the per-recipient results (the agent
/// logs them), record them, answer, wait for the client to close. A
/// malformed request is logged and the connection dropped, as Postfix does.
pub fn serve<S: AgentConn>(
    stream: &mut S,
    qc: &QueueConf,
    transport: &str,
    deliver: &mut dyn FnMut(&DeliveryRequest) -> Vec<RecipientResult>,
) {
    serve_ext(stream, qc, transport, &mut |req| AgentDone {
        results: deliver(req),
        ..Default::default()
    })
}

/// [`serve`] for agents that also report a hop status or an incomplete
/// request. When the connection allows it ([`AgentConn::may_reuse`]), the
/// answer carries a fresh announcement and the next request is read from
/// the same connection; a client that closes instead ends the connection
/// quietly.
pub fn serve_ext<S: AgentConn>(
    stream: &mut S,
    qc: &QueueConf,
    transport: &str,
    deliver: &mut dyn FnMut(&DeliveryRequest) -> AgentDone,
) {
    let hello = attr0::encode(&[("protocol", PROTO_DELIVER)]);
    if stream
        .write_all(&hello)
        .and_then(|_| stream.flush())
        .is_err()
    {
        return;
    }
    let mut r = BufReader::with_capacity(4096, &mut *stream);
    let mut first = true;
    loop {
        if !first {
            // A follow-on request, or the client's close.
            if r.buffer().is_empty() && !r.get_mut().wait_next() {
                return;
            }
            match r.fill_buf() {
                Ok(b) if !b.is_empty() => {}
                _ => return,
            }
            r.get_mut().count_use();
        }
        first = false;
        let mut req = match read_request(&mut r) {
            Ok(q) => q,
            Err(e) => {
                msg::warn(&e);
                return;
            }
        };
        if let Err(e) = check_queue_file(qc, &mut req) {
            msg::warn(&e);
            return;
        }
        req.transport = transport.to_string();
        if req.stats.agent_handoff.0 == 0 {
            req.stats.agent_handoff = now();
        }
        let done = deliver(&req);
        let status = if done.incomplete {
            DEL_STAT_DEFER
        } else {
            record_results_keep(qc, &req, &done.results, &done.keep)
        };
        let reply = Reply {
            hop: done.hop,
            status,
        };
        let more = r.get_mut().may_reuse();
        let mut out = encode_reply(&reply);
        if more {
            // One write: the client finds the announcement with the answer.
            out.extend_from_slice(&hello);
        }
        let w = r.get_mut();
        if w.write_all(&out).and_then(|_| w.flush()).is_err() {
            return;
        }
        if !more {
            let mut b = [0u8; 1];
            let _ = r.read(&mut b);
            return;
        }
    }
}

/// Split `4.x.y text` in a nexthop into (status, text), or use `def`
/// (dsn_split).
pub fn dsn_split(def: &str, text: &str) -> (String, String) {
    let t = text.trim_start();
    let code_len = {
        let b = t.as_bytes();
        let mut i = 0;
        let mut ok = matches!(b.first(), Some(b'2' | b'4' | b'5')) && b.get(1) == Some(&b'.');
        if ok {
            i = 2;
            for part in 0..2 {
                let s = i;
                while i < b.len() && b[i].is_ascii_digit() && i - s < 3 {
                    i += 1;
                }
                if i == s {
                    ok = false;
                    break;
                }
                if part == 0 {
                    if b.get(i) != Some(&b'.') {
                        ok = false;
                        break;
                    }
                    i += 1;
                }
            }
            if ok && i < b.len() && !b[i].is_ascii_whitespace() {
                ok = false;
            }
        }
        if ok { i } else { 0 }
    };
    if code_len > 0 {
        (
            t[..code_len].to_string(),
            t[code_len..].trim_start().to_string(),
        )
    } else {
        (def.to_string(), t.to_string())
    }
}

/// A result for every request recipient with the same outcome (the
/// error, retry and discard agents), logged as Postfix logs it.
pub fn all_recipients(
    req: &DeliveryRequest,
    outcome: Outcome,
    dsn: &Dsn,
    relay: &str,
    max_res: u32,
) -> Vec<RecipientResult> {
    let t = now();
    req.rcpt
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let log = log_line(
                &req.queue_id,
                &req.stats,
                r,
                relay,
                dsn,
                outcome.status_word(),
                t,
                max_res,
            );
            msg::info(&log);
            RecipientResult {
                rcpt: r.clone(),
                index: i,
                outcome,
                dsn: dsn.clone(),
                relay: relay.to_string(),
                bounce_to: None,
                log,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parse_reply_agrees_with_read_reply() {
        let full = encode_reply(&Reply {
            hop: HopStatus {
                status: "4.4.1".into(),
                dtype: "x".into(),
                dtext: "t\u{e9}xt".into(),
                mtype: "dns".into(),
                mname: "host".into(),
                action: "delayed".into(),
                reason: "conn refused".into(),
            },
            status: 1,
        });
        let a = parse_reply(&full).unwrap();
        let b = read_reply(&mut &full[..]).unwrap();
        assert_eq!(a, b);
        assert_eq!((a.status, a.hop.dtext.as_str()), (1, "t\u{e9}xt"));
        let plain = encode_reply(&Reply::default());
        assert_eq!(parse_reply(&plain).unwrap().status, 0);
        // Wrong, missing or extra attributes: read_reply's errors.
        for bad in [
            &full[..full.len() - 1],
            b"status\0x\0\0".as_slice(),
            b"\0".as_slice(),
        ] {
            assert_eq!(
                parse_reply(bad).err(),
                read_reply(&mut &bad[..]).err(),
                "{bad:?}"
            );
        }
    }

    use super::*;

    #[test]
    fn request_round_trip() {
        let req = DeliveryRequest {
            flags: 1,
            queue_name: "active".into(),
            queue_id: "ABCDEF123".into(),
            data_offset: 300,
            data_size: 42,
            nexthop: "example.com".into(),
            sender: "s@example.org".into(),
            stats: MsgStats {
                incoming_arrival: (1_700_000_000, 5),
                active_arrival: (1_700_000_001, 6),
                ..Default::default()
            },
            rcpt: vec![Recipient {
                orig_addr: "o@x".into(),
                address: "r@x".into(),
                offset: 200,
                dsn_orcpt: "rfc822;o@x".into(),
                dsn_notify: 6,
            }],
            ..Default::default()
        };
        let b = encode_request(&req);
        assert!(b.starts_with(b"flags\x001\x00queue_name\x00active\x00"));
        let got = read_request(&mut &b[..]).unwrap();
        assert_eq!(got.queue_id, "ABCDEF123");
        assert_eq!(got.data_offset, 300);
        assert_eq!(got.stats, req.stats);
        assert_eq!(got.rcpt, req.rcpt);
        // A truncated request is refused.
        assert!(read_request(&mut &b[..b.len() - 3]).is_err());
    }

    #[test]
    fn reply_round_trip() {
        let r = Reply {
            hop: HopStatus {
                status: "4.4.1".into(),
                reason: "connect failed".into(),
                ..Default::default()
            },
            status: 1,
        };
        let b = encode_reply(&r);
        assert!(b.starts_with(b"status\x004.4.1\x00diag_type\x00\x00"));
        assert!(b.ends_with(b"status\x001\x00\x00"));
        assert_eq!(read_reply(&mut &b[..]).unwrap(), r);
    }

    #[test]
    fn pipelined_client_against_an_agent() {
        // An agent that announces itself, reads the request and answers.
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            let mut b = b;
            b.write_all(&attr0::encode(&[("protocol", PROTO_DELIVER)]))
                .unwrap();
            let req = read_request(&mut BufReader::new(&b)).unwrap();
            let reply = Reply {
                hop: HopStatus {
                    status: "4.4.1".into(),
                    reason: req.rcpt[0].address.clone(),
                    ..Default::default()
                },
                status: DEL_STAT_DEFER,
            };
            b.write_all(&encode_reply(&reply)).unwrap();
            // Wait for the client to close, as agents do.
            let mut x = [0u8; 1];
            let _ = b.read(&mut x);
        });
        let req = DeliveryRequest {
            queue_name: "active".into(),
            queue_id: "ABCDEF123".into(),
            rcpt: vec![Recipient {
                address: "r@x".into(),
                offset: 5,
                ..Default::default()
            }],
            ..Default::default()
        };
        let got = deliver_via_pipelined(&a, &req).unwrap();
        drop(a);
        t.join().unwrap();
        assert_eq!(got.status, DEL_STAT_DEFER);
        assert_eq!(got.hop.reason, "r@x");
        // A peer that is not a delivery agent is refused.
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut b2 = &b;
        b2.write_all(&attr0::encode(&[("protocol", "other")]))
            .unwrap();
        assert_eq!(
            deliver_via_pipelined(&a, &req).unwrap_err(),
            "bad protocol greeting"
        );
    }

    #[test]
    fn reused_connection_serves_two_requests() {
        // An agent that offers the connection again after the first
        // answer (announcement in the same write) and not after the
        // second.
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            let hello = attr0::encode(&[("protocol", PROTO_DELIVER)]);
            let mut w = &b;
            w.write_all(&hello).unwrap();
            let mut r = BufReader::new(&b);
            let mut got = Vec::new();
            for more in [true, false] {
                let req = read_request(&mut r).unwrap();
                got.push(req.rcpt[0].address.clone());
                let mut out = encode_reply(&Reply::default());
                if more {
                    out.extend_from_slice(&hello);
                }
                w.write_all(&out).unwrap();
            }
            got
        });
        let mut req = DeliveryRequest {
            queue_name: "active".into(),
            queue_id: "ABCDEF123".into(),
            rcpt: vec![Recipient {
                address: "one@x".into(),
                offset: 5,
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut r = BufReader::new(a);
        let (reply, again) = deliver_on(&mut r, &req, true).unwrap();
        assert_eq!((reply.status, again), (0, true));
        assert!(r.buffer().is_empty());
        req.rcpt[0].address = "two@x".into();
        let (_, again) = deliver_on(&mut r, &req, false).unwrap();
        assert!(!again);
        assert_eq!(t.join().unwrap(), ["one@x", "two@x"]);
    }

    #[test]
    fn dsn_split_forms() {
        assert_eq!(
            dsn_split("5.0.0", "5.1.1 User unknown"),
            ("5.1.1".into(), "User unknown".into())
        );
        assert_eq!(
            dsn_split("4.0.0", "5.1.1 gone"),
            ("5.1.1".into(), "gone".into())
        );
        assert_eq!(
            dsn_split("5.0.0", "mail for x loops back"),
            ("5.0.0".into(), "mail for x loops back".into())
        );
    }
}
