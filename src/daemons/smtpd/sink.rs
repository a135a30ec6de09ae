//! Where smtpd hands a message: the cleanup service in Postfix. The engine
//! opens a transaction at the first accepted recipient (that is when Postfix
//! learns the queue ID and logs `QUEUEID: client=...`), adds each accepted
//! recipient, then writes the content as queue-file records (`N` for a
//! complete line, `L` for a piece of a longer one) and asks for the final
//! status, which decides the reply to the end of DATA/BDAT.
//!
//! cleanup (src/daemons/cleanup/) implements [`Sink`] for real; [`MemorySink`]
//! records what it got, for tests.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Postfix's CLEANUP_STAT_* bits (global/cleanup_user.h).
pub mod stat {
    pub const OK: u32 = 0;
    pub const BAD: u32 = 1 << 0;
    pub const WRITE: u32 = 1 << 1;
    pub const SIZE: u32 = 1 << 2;
    pub const CONT: u32 = 1 << 3;
    pub const HOPS: u32 = 1 << 4;
    pub const RCPT: u32 = 1 << 6;
    pub const PROXY: u32 = 1 << 7;
    pub const DEFER: u32 = 1 << 8;
    pub const NOPERM: u32 = 1 << 9;
    pub const BARE_LF: u32 = 1 << 16;
}

/// Postfix's CLEANUP_FLAG_* bits that smtpd sets (global/cleanup_user.h).
pub mod flags {
    pub const HOLD: u32 = 1 << 2;
    pub const DISCARD: u32 = 1 << 3;
}

/// The client, as smtpd records it in the queue file (`log_*` and actual
/// attributes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub name: String,
    pub reverse_name: String,
    pub addr: String,
    pub port: String,
    pub server_addr: String,
    pub server_port: String,
    pub helo: Option<String>,
    pub protocol: String,
    /// AF_INET (2) or AF_INET6 (10); 0 when unknown.
    pub addr_family: u32,
    /// `name[addr]`.
    pub namaddr: String,
    /// The up-stream client an XFORWARD command named (the `log_*`
    /// attributes), when it forwarded client attributes.
    pub forwarded: Option<ForwardedClient>,
    /// XFORWARD IDENT: the up-stream message identifier (`log_ident`).
    pub forwarded_ident: Option<String>,
}

/// XFORWARD client attributes (Postfix's FORWARD_NAME, FORWARD_ADDR, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardedClient {
    pub name: String,
    /// The address as logged (`IPv6:` form for IPv6).
    pub rfc_addr: String,
    pub port: String,
    pub namaddr: String,
    pub helo: Option<String>,
    pub protocol: String,
}

/// What the engine knows when it opens a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailStart {
    pub sender: String,
    /// `7bit` / `8bit` from BODY=.
    pub encoding: Option<String>,
    pub dsn_envid: Option<String>,
    /// RET=FULL (1) or HDRS (2), 0 when not given.
    pub dsn_ret: u32,
    pub rewrite_context: String,
    pub client: ClientInfo,
    pub arrival_time: SystemTime,
    /// Stand-alone (`sendmail -bs`): Postfix then writes no client attributes.
    pub stand_alone: bool,
    pub smtputf8: bool,
}

/// One accepted recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub address: String,
    /// `type;address`, e.g. `rfc822;u@example.com`.
    pub orcpt: String,
    /// DSN NOTIFY bits, 0 when not given.
    pub notify: u32,
}

/// A content record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A complete line (REC_TYPE_NORM, `N`).
    Norm,
    /// A piece of a longer line (REC_TYPE_CONT, `L`).
    Cont,
}

/// What follows the content (REC_TYPE_XTRA and on).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndInfo {
    pub filter: Option<String>,
    pub redirect: Option<String>,
    pub bcc: Vec<String>,
    pub flags: u32,
}

/// The outcome of a transaction: CLEANUP_STAT_* bits and, optionally, the
/// text cleanup gave (an SMTP reply such as `550 5.7.1 ...` from
/// header_checks, or a reason).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Finish {
    pub status: u32,
    pub why: String,
}

/// Why a transaction could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkError(pub String);

/// The cleanup service.
pub trait Sink {
    fn open(&mut self, start: &MailStart) -> Result<Box<dyn Transaction>, SinkError>;
}

/// One message in progress.
pub trait Transaction {
    fn queue_id(&self) -> String;
    fn recipient(&mut self, rcpt: &Recipient);
    /// Start of content (REC_TYPE_MESG), with the HOLD/DISCARD flags so far.
    fn begin_content(&mut self, flags: u32);
    fn record(&mut self, kind: RecordKind, data: &[u8]);
    /// End of content; the message is safe on disk when this returns OK.
    fn finish(self: Box<Self>, end: &EndInfo) -> Finish;
    /// Drop the message.
    fn abort(self: Box<Self>);
}

/// A message as [`MemorySink`] recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub queue_id: String,
    pub start: MailStart,
    pub recipients: Vec<Recipient>,
    pub begin_flags: Option<u32>,
    pub records: Vec<(RecordKind, Vec<u8>)>,
    pub end: Option<EndInfo>,
    pub aborted: bool,
}

impl Recorded {
    /// The content as text lines (`L` pieces joined to their line).
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = Vec::new();
        for (k, d) in &self.records {
            cur.extend_from_slice(d);
            if *k == RecordKind::Norm {
                out.push(crate::util::latin1::decode(&cur));
                cur.clear();
            }
        }
        out
    }
}

/// A test sink: records every transaction; the final status is `result`.
#[derive(Clone, Default)]
pub struct MemorySink {
    pub messages: Arc<Mutex<Vec<Recorded>>>,
    pub result: Finish,
    counter: Arc<Mutex<u32>>,
}

impl MemorySink {
    pub fn new() -> MemorySink {
        MemorySink::default()
    }
    /// A copy of what was recorded.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

struct MemTx {
    sink: MemorySink,
    idx: usize,
}

impl MemTx {
    fn with<R>(&self, f: impl FnOnce(&mut Recorded) -> R) -> R {
        let mut m = self.sink.messages.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut m[self.idx])
    }
}

impl Sink for MemorySink {
    fn open(&mut self, start: &MailStart) -> Result<Box<dyn Transaction>, SinkError> {
        let n = {
            let mut c = self.counter.lock().unwrap_or_else(|e| e.into_inner());
            *c += 1;
            *c
        };
        let mut m = self.messages.lock().unwrap_or_else(|e| e.into_inner());
        m.push(Recorded {
            queue_id: format!("{:011X}", 0x1000 + n),
            start: start.clone(),
            recipients: Vec::new(),
            begin_flags: None,
            records: Vec::new(),
            end: None,
            aborted: false,
        });
        Ok(Box::new(MemTx {
            sink: self.clone(),
            idx: m.len() - 1,
        }))
    }
}

impl Transaction for MemTx {
    fn queue_id(&self) -> String {
        self.with(|r| r.queue_id.clone())
    }
    fn recipient(&mut self, rcpt: &Recipient) {
        self.with(|r| r.recipients.push(rcpt.clone()));
    }
    fn begin_content(&mut self, flags: u32) {
        self.with(|r| r.begin_flags = Some(flags));
    }
    fn record(&mut self, kind: RecordKind, data: &[u8]) {
        self.with(|r| r.records.push((kind, data.to_vec())));
    }
    fn finish(self: Box<Self>, end: &EndInfo) -> Finish {
        self.with(|r| r.end = Some(end.clone()));
        self.sink.result.clone()
    }
    fn abort(self: Box<Self>) {
        self.with(|r| r.aborted = true);
    }
}
