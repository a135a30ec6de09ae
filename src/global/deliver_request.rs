//! The delivery request a queue manager hands to a delivery agent, and what
//! the agent reports back per recipient (Postfix's deliver_request.c,
//! log_adhoc.c, format_tv.c, dsn_util.c in spirit).
//!
//! The request names a queue file and where its content starts; the agent
//! reads the content from the file itself. Results carry their class and
//! enhanced status code as data ([`Dsn`]); [`log_line`] renders the
//! `to=<...>, relay=..., delay=..., delays=..., dsn=..., status=...` text
//! exactly as Postfix logs it.

use crate::global::rec_type;
use crate::global::record::{QueueStream, Rec, rec_get};
use std::path::PathBuf;

/// Request flags (DEL_REQ_FLAG_*).
pub mod flags {
    /// Address verification only: report what would happen.
    pub const MTA_VRFY: u32 = 1 << 8;
    /// User-requested verification (sendmail -bv).
    pub const USR_VRFY: u32 = 1 << 9;
    /// Report success (delivered records are marked done).
    pub const SUCCESS: u32 = 1 << 0;
    /// Record the delivery in the trace log (sendmail -v).
    pub const RECORD: u32 = 1 << 10;
}

/// DSN NOTIFY bits (dsn_mask.h).
pub mod notify {
    pub const NEVER: i32 = 1 << 0;
    pub const SUCCESS: i32 = 1 << 1;
    pub const FAILURE: i32 = 1 << 2;
    pub const DELAY: i32 = 1 << 3;
}

/// One recipient of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipient {
    /// The original recipient address (`O` record), possibly empty.
    pub orig_addr: String,
    /// The recipient address.
    pub address: String,
    /// The queue-file offset of its `R` record (-1: none).
    pub offset: i64,
    /// DSN ORCPT (`type;address`), possibly empty.
    pub dsn_orcpt: String,
    /// DSN NOTIFY bits, 0 when not given.
    pub dsn_notify: i32,
}

/// A (seconds, microseconds) time stamp; (0, 0) means "not stamped".
pub type TimeVal = (i64, i64);

/// The message time stamps log lines are computed from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MsgStats {
    /// When the message entered the incoming queue.
    pub incoming_arrival: TimeVal,
    /// When the queue manager moved it to the active queue.
    pub active_arrival: TimeVal,
    /// When the queue manager handed it to the delivery agent.
    pub agent_handoff: TimeVal,
    /// When a connection was set up (network agents), if any.
    pub conn_setup_done: TimeVal,
    /// When delivery finished (stamped by the agent), if any.
    pub deliver_done: TimeVal,
}

/// Client attributes passed on to commands (`CLIENT_*`, `SASL_*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub name: String,
    pub addr: String,
    /// The client port (`${client_port}` of pipe(8)).
    pub port: String,
    pub helo: String,
    pub proto: String,
    pub sasl_method: String,
    pub sasl_username: String,
    pub sasl_sender: String,
}

/// What the queue manager asks a delivery agent to do.
#[derive(Debug, Clone, Default)]
pub struct DeliveryRequest {
    /// The queue the file is in (`active` normally).
    pub queue_name: String,
    /// The queue ID.
    pub queue_id: String,
    /// The queue file.
    pub queue_file: PathBuf,
    /// Where the message content (first `N`/`L` record) starts.
    pub data_offset: u64,
    /// The content size.
    pub data_size: u64,
    /// The transport name as qmgr resolved it (the service name, e.g. `local`).
    pub transport: String,
    /// The next-hop destination.
    pub nexthop: String,
    /// The content encoding (`7bit`, `8bit`, ...), possibly empty.
    pub encoding: String,
    /// SMTPUTF8 requested.
    pub smtputf8: bool,
    /// The envelope sender ("" for the null sender).
    pub sender: String,
    /// DSN ENVID, possibly empty.
    pub dsn_envid: String,
    /// DSN RET (0: not given).
    pub dsn_ret: i32,
    /// DEL_REQ_FLAG_* bits.
    pub flags: u32,
    pub client: ClientInfo,
    pub stats: MsgStats,
    /// The recipients to deliver.
    pub rcpt: Vec<Recipient>,
}

/// How one recipient's delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered (`status=sent`).
    Sent,
    /// Try again later (`status=deferred`).
    Deferred,
    /// Failed permanently (`status=bounced`).
    Bounced,
}

impl Outcome {
    /// The word used in log lines.
    pub fn status_word(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Deferred => "deferred",
            Outcome::Bounced => "bounced",
        }
    }

    /// The DSN action.
    pub fn action(self) -> &'static str {
        match self {
            Outcome::Sent => "delivered",
            Outcome::Deferred => "delayed",
            Outcome::Bounced => "failed",
        }
    }
}

/// An enhanced status code with its reason text, and the optional formal
/// parts of Postfix's DSN structure: the diagnostic (type `smtp` with the
/// server's reply, type `x-unix` with a command's output) and the remote
/// MTA (type `dns` with its host name) that bounce notices show as
/// `Diagnostic-Code:` and `Remote-MTA:`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dsn {
    /// `x.y.z`.
    pub status: String,
    /// The free text.
    pub reason: String,
    /// The formal parts, when there are any (boxed: most DSNs have none).
    pub formal: Option<Box<DsnFormal>>,
}

/// The formal parts of a DSN.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DsnFormal {
    /// Diagnostic type (`smtp`, `x-unix`) and text, both or neither.
    pub dtype: String,
    pub dtext: String,
    /// Remote MTA type (`dns`) and name, both or neither.
    pub mtype: String,
    pub mname: String,
}

impl Dsn {
    pub fn new(status: &str, reason: impl Into<String>) -> Dsn {
        Dsn {
            status: status.to_string(),
            reason: reason.into(),
            formal: None,
        }
    }

    /// With a UNIX diagnostic (dsb_unix): a command's output or exit text.
    pub fn unix(status: &str, dtext: impl Into<String>, reason: impl Into<String>) -> Dsn {
        Dsn {
            status: status.to_string(),
            reason: reason.into(),
            formal: Some(Box::new(DsnFormal {
                dtype: "x-unix".into(),
                dtext: dtext.into(),
                ..Default::default()
            })),
        }
    }

    /// With the remote MTA (`dns; name`) and, when there was one, its reply
    /// as an SMTP diagnostic (dsb_formal in the SMTP client).
    pub fn with_mta(mut self, mname: &str, reply: Option<&str>) -> Dsn {
        let f = self.formal.get_or_insert_with(Default::default);
        f.mtype = "dns".into();
        f.mname = mname.to_string();
        if let Some(r) = reply {
            f.dtype = "smtp".into();
            f.dtext = r.to_string();
        }
        self
    }

    /// The formal parts (empty strings when there are none).
    pub fn formal(&self) -> DsnFormal {
        self.formal.as_deref().cloned().unwrap_or_default()
    }

    /// A 4.x.x status.
    pub fn is_soft(&self) -> bool {
        self.status.starts_with('4')
    }
}

/// The result for one (possibly expanded) recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientResult {
    /// The recipient as logged (after alias expansion, `to=<...>`).
    pub rcpt: Recipient,
    /// The index of the request recipient this result belongs to.
    pub index: usize,
    pub outcome: Outcome,
    pub dsn: Dsn,
    /// The relay name logged (`relay=local`).
    pub relay: String,
    /// The sender that a bounce for this result goes to, when an owner-
    /// alias took over (Postfix's bounce_one); `None`: the message sender.
    pub bounce_to: Option<String>,
    /// The log line (without program prefix), as Postfix's log_adhoc.
    pub log: String,
}

/// Format a time interval as Postfix's format_tv with 2 significant digits
/// and `delay_logging_resolution_limit` decimals.
pub fn format_tv(mut sec: i64, mut usec: i64, sig_dig: u32, max_dig: u32) -> String {
    const MILLION: i64 = 1_000_000;
    let pow10 = |n: u32| 10i64.pow(n);
    let mut ures = MILLION / pow10(max_dig.min(6));
    let wid = pow10(sig_dig);
    if ures < MILLION {
        if sec > 0 {
            let mut n = 1;
            while sec >= n && n <= wid / 10 {
                n *= 10;
            }
            ures = (MILLION / wid) * n;
        } else {
            while usec >= wid * ures {
                ures *= 10;
            }
        }
    }
    if ures > 1 {
        usec += ures / 2;
        if usec >= MILLION {
            sec += 1;
            usec -= MILLION;
        }
    }
    let mut out = sec.to_string();
    if usec >= ures {
        out.push('.');
        let mut rem = usec;
        let mut n = MILLION / 10;
        while rem >= ures && n > 0 {
            out.push(char::from(b'0' + (rem / n) as u8));
            rem %= n;
            n /= 10;
        }
    }
    out
}

fn delta(a: TimeVal, b: TimeVal) -> TimeVal {
    let mut sec = a.0 - b.0;
    let mut usec = a.1 - b.1;
    while usec < 0 {
        usec += 1_000_000;
        sec -= 1;
    }
    while usec >= 1_000_000 {
        usec -= 1_000_000;
        sec += 1;
    }
    if sec < 0 { (0, 0) } else { (sec, usec) }
}

fn stamped(t: TimeVal) -> bool {
    t.0 > 0
}

/// The current time as a [`TimeVal`].
pub fn now() -> TimeVal {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_micros() as i64)
}

/// The log text for one recipient: `ID: to=<...>, orig_to=<...>, relay=...,
/// delay=..., delays=a/b/c/d, dsn=..., status=... (reason)`.
/// `max_res` is delay_logging_resolution_limit.
#[allow(clippy::too_many_arguments)]
pub fn log_line(
    id: &str,
    stats: &MsgStats,
    rcpt: &Recipient,
    relay: &str,
    dsn: &Dsn,
    status: &str,
    now: TimeVal,
    max_res: u32,
) -> String {
    let mut buf = format!("{id}: to=<{}>", rcpt.address);
    if !rcpt.orig_addr.is_empty() && !rcpt.orig_addr.eq_ignore_ascii_case(&rcpt.address) {
        buf.push_str(&format!(", orig_to=<{}>", rcpt.orig_addr));
    }
    buf.push_str(&format!(", relay={relay}"));
    let now = if stamped(stats.deliver_done) {
        stats.deliver_done
    } else {
        now
    };
    let delay = delta(now, stats.incoming_arrival);
    let (mut adelay, mut sdelay, mut xdelay) = ((0, 0), (0, 0), (0, 0));
    let pdelay;
    if stamped(stats.active_arrival) {
        pdelay = delta(stats.active_arrival, stats.incoming_arrival);
        if stamped(stats.agent_handoff) {
            adelay = delta(stats.agent_handoff, stats.active_arrival);
            if stamped(stats.conn_setup_done) {
                sdelay = delta(stats.conn_setup_done, stats.agent_handoff);
                xdelay = delta(now, stats.conn_setup_done);
            } else {
                xdelay = delta(now, stats.agent_handoff);
            }
        } else {
            adelay = delta(now, stats.active_arrival);
        }
    } else {
        pdelay = delta(now, stats.incoming_arrival);
    }
    let f = |t: TimeVal| format_tv(t.0, t.1, 2, max_res);
    buf.push_str(&format!(
        ", delay={}, delays={}/{}/{}/{}",
        f(delay),
        f(pdelay),
        f(adelay),
        f(sdelay),
        f(xdelay)
    ));
    buf.push_str(&format!(
        ", dsn={}, status={} ({})",
        dsn.status, status, dsn.reason
    ));
    buf
}

/// Errors reading a queue file into a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueFileError(pub String);

impl std::fmt::Display for QueueFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl DeliveryRequest {
    /// Build a request for every pending recipient of a queue file, as a
    /// queue manager would (the envelope records up to the content, then
    /// the extracted records after it). `transport`/`nexthop` are what the
    /// resolver chose.
    pub fn from_queue_file(
        path: &std::path::Path,
        queue_name: &str,
        queue_id: &str,
        transport: &str,
        nexthop: &str,
    ) -> Result<DeliveryRequest, QueueFileError> {
        Self::from_queue_file_info(path, queue_name, queue_id, transport, nexthop).map(|(r, _)| r)
    }

    /// [`Self::from_queue_file`], also returning what a queue manager reads
    /// from the envelope besides the request ([`EnvelopeInfo`]), in the same
    /// single pass over the file.
    pub fn from_queue_file_info(
        path: &std::path::Path,
        queue_name: &str,
        queue_id: &str,
        transport: &str,
        nexthop: &str,
    ) -> Result<(DeliveryRequest, EnvelopeInfo), QueueFileError> {
        let mut info = EnvelopeInfo::default();
        let p = path.to_string_lossy().to_string();
        let mut fp = QueueStream::open(&p).map_err(|e| QueueFileError(format!("open {p}: {e}")))?;
        fp.collect_warnings();
        let mut req = DeliveryRequest {
            queue_name: queue_name.to_string(),
            queue_id: queue_id.to_string(),
            queue_file: path.to_path_buf(),
            transport: transport.to_string(),
            nexthop: nexthop.to_string(),
            ..Default::default()
        };
        let mut buf = Vec::new();
        let mut orig = String::new();
        let mut dsn_orcpt = String::new();
        let mut dsn_notify = 0;
        let mut in_content = false;
        let mut have_log_attr = false;
        // Before the content: where a queue manager's envelope extras are.
        let mut envelope = true;
        let mut first = true;
        loop {
            let off = fp.ftell();
            let t = match rec_get(&mut fp, &mut buf, 0) {
                Rec::Type(t) => t,
                Rec::Eof | Rec::Error => {
                    return Err(QueueFileError(format!("{p}: corrupt queue file")));
                }
            };
            if in_content {
                // Message content: only its end matters here.
                if t == rec_type::XTRA {
                    in_content = false;
                }
                continue;
            }
            let is_first = std::mem::take(&mut first);
            if envelope && t == rec_type::WARN && info.warn_offset == 0 {
                info.warn_offset = off;
                info.warn_time = rec_type::atol(&buf);
            }
            let text = crate::util::latin1::decode(&buf);
            match t {
                rec_type::SIZE => {
                    let f: Vec<i64> = text
                        .split_whitespace()
                        .map(|v| v.parse().unwrap_or(0))
                        .collect();
                    req.data_size = f.first().copied().unwrap_or(0).max(0) as u64;
                    req.data_offset = f.get(1).copied().unwrap_or(0).max(0) as u64;
                    if is_first {
                        info.size_fields = f;
                    }
                }
                rec_type::TIME => {
                    let (s, u) = rec_type::time_scan(&buf);
                    req.stats.incoming_arrival = (s, u);
                }
                rec_type::FROM => req.sender = text,
                rec_type::ATTR => {
                    if let Some((n, v)) = text.split_once('=') {
                        if envelope && n == "trace_flags" && info.trace_flags == 0 {
                            info.trace_flags = rec_type::atol(v.as_bytes()) as u32;
                        }
                        if n.starts_with("log_") {
                            have_log_attr = true;
                        }
                        match n {
                            "encoding" => req.encoding = v.to_string(),
                            "envelope_id" => req.dsn_envid = v.to_string(),
                            "ret_flags" => req.dsn_ret = v.parse().unwrap_or(0),
                            "notify_flags" => dsn_notify = v.parse().unwrap_or(0),
                            "dsn_orig_rcpt" => dsn_orcpt = v.to_string(),
                            // The log_* (original client) attributes win
                            // over the actual client ones, as in qmgr.
                            "client_name" | "client_address" | "client_port" | "helo_name"
                            | "protocol_name"
                                if have_log_attr => {}
                            "client_name" | "log_client_name" => req.client.name = v.to_string(),
                            "client_address" | "log_client_address" => {
                                req.client.addr = v.to_string()
                            }
                            "client_port" | "log_client_port" => req.client.port = v.to_string(),
                            "helo_name" | "log_helo_name" => req.client.helo = v.to_string(),
                            "protocol_name" | "log_protocol_name" => {
                                req.client.proto = v.to_string()
                            }
                            "sasl_method" => req.client.sasl_method = v.to_string(),
                            "sasl_username" => req.client.sasl_username = v.to_string(),
                            "sasl_sender" => req.client.sasl_sender = v.to_string(),
                            "smtputf8" => req.smtputf8 = v != "0",
                            _ => {}
                        }
                    }
                }
                rec_type::DSN_ORCPT => dsn_orcpt = text,
                rec_type::DSN_NOTIFY => dsn_notify = text.parse().unwrap_or(0),
                rec_type::ORCP => orig = text,
                rec_type::RCPT => {
                    req.rcpt.push(Recipient {
                        orig_addr: std::mem::take(&mut orig),
                        address: text,
                        offset: off,
                        dsn_orcpt: std::mem::take(&mut dsn_orcpt),
                        dsn_notify: std::mem::take(&mut dsn_notify),
                    });
                }
                rec_type::DONE | rec_type::DRCP => {
                    orig.clear();
                    dsn_orcpt.clear();
                    dsn_notify = 0;
                }
                rec_type::MESG => {
                    envelope = false;
                    let here = fp.ftell();
                    if req.data_offset == 0 {
                        req.data_offset = here as u64;
                    }
                    in_content = true;
                }
                rec_type::END => break,
                _ => {}
            }
        }
        Ok((req, info))
    }
}

/// What a queue manager reads from a queue file besides the delivery
/// request: the fields of the SIZE record (when it is the first record),
/// and from the envelope (before the content) the first `W` record (its
/// value and offset) and the first non-zero `trace_flags` attribute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvelopeInfo {
    pub size_fields: Vec<i64>,
    pub warn_time: i64,
    pub warn_offset: i64,
    pub trace_flags: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_tv_matches_postfix() {
        // delay_logging_resolution_limit = 2
        assert_eq!(format_tv(0, 0, 2, 2), "0");
        assert_eq!(format_tv(0, 4_000, 2, 2), "0");
        assert_eq!(format_tv(0, 5_000, 2, 2), "0.01");
        assert_eq!(format_tv(0, 17_000, 2, 2), "0.02");
        assert_eq!(format_tv(0, 170_000, 2, 2), "0.17");
        assert_eq!(format_tv(1, 250_000, 2, 2), "1.3");
        assert_eq!(format_tv(24, 400_000, 2, 2), "24");
        assert_eq!(format_tv(123, 0, 2, 2), "123");
    }

    #[test]
    fn log_line_shape() {
        let st = MsgStats {
            incoming_arrival: (100, 0),
            active_arrival: (100, 10_000),
            agent_handoff: (100, 20_000),
            ..Default::default()
        };
        let r = Recipient {
            orig_addr: "root@localhost".into(),
            address: "testuser@mx.example.test".into(),
            ..Default::default()
        };
        let l = log_line(
            "E99A1990232",
            &st,
            &r,
            "local",
            &Dsn::new("2.0.0", "delivered to maildir"),
            "sent",
            (100, 30_000),
            2,
        );
        assert_eq!(
            l,
            "E99A1990232: to=<testuser@mx.example.test>, orig_to=<root@localhost>, relay=local, delay=0.03, delays=0.01/0.01/0/0.01, dsn=2.0.0, status=sent (delivered to maildir)"
        );
    }
}
