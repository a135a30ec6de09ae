//! Per-session state shared by the protocol engine and the restrictions,
//! and the events the engine hands to its I/O layer.

use std::time::Duration;

/// The pieces joined, in one allocation (per-session log lines and
/// replies; the formatting machinery costs more than the copying).
pub fn cat(parts: &[&str]) -> String {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        s.push_str(p);
    }
    s
}

/// What the engine asks its I/O layer to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Send these bytes (one or more complete reply lines, CRLF-terminated).
    Reply(Vec<u8>),
    /// Flush what was sent so far, then pause (error tarpit, `sleep N`).
    Sleep(Duration),
    /// A log line (without the `postfix/smtpd[pid]: ` prefix).
    Log(String),
    /// Close the connection.
    Close,
}

/// A deferred reply (defer_if_permit / defer_if_reject).
#[derive(Debug, Clone, Default)]
pub struct Defer {
    pub active: bool,
    pub code: u32,
    pub dsn: String,
    pub reason: String,
}

/// Reverse/forward lookup outcome of the client name (SMTPD_PEER_CODE_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeerCode {
    #[default]
    Ok,
    Temp,
    Perm,
    /// Forward lookup did not confirm the name.
    Forged,
}

/// The session: who the client is and where the dialogue stands.
#[derive(Debug, Default)]
pub struct State {
    pub name: String,
    pub reverse_name: String,
    pub addr: String,
    pub port: String,
    pub server_addr: String,
    pub server_port: String,
    pub namaddr: String,
    /// `[addr]` for the Received header (`IPv6:` prefixed for IPv6).
    pub rfc_addr: String,
    pub addr_family: u32,
    pub name_status: PeerCode,
    pub reverse_name_status: PeerCode,
    pub stand_alone: bool,

    pub helo_name: Option<String>,
    pub protocol: String,
    pub sender: Option<String>,
    pub recipient: Option<String>,
    pub etrn_name: Option<String>,
    pub where_: String,
    pub queue_id: Option<String>,
    pub rcpt_count: u32,
    /// The mail transaction's instance id (policy `instance`), set at MAIL.
    pub instance: String,
    /// Per-session transaction counter for `instance`.
    pub seqno: u32,
    /// SIZE= or the bytes received so far (policy `size`).
    pub size: u64,
    pub ill_pipelining: bool,
    pub smtputf8: bool,

    pub error_count: u32,
    pub error_mask: u32,

    // Restriction bookkeeping.
    pub warn_if_reject: u32,
    pub recursion: u32,
    pub defer_if_permit: Defer,
    pub defer_if_reject: Defer,
    pub defer_if_permit_client: bool,
    pub defer_if_permit_helo: bool,
    pub defer_if_permit_sender: bool,
    pub sender_rcptmap_checked: bool,
    pub recipient_rcptmap_checked: bool,
    pub saved_flags: u32,
    pub saved_filter: Option<String>,
    pub saved_redirect: Option<String>,
    pub saved_bcc: Vec<String>,
    pub prepend: Vec<String>,
    pub discard: bool,
    /// The reply text of the last rejecting restriction.
    pub error_text: String,

    pub events: Vec<Event>,
}

impl State {
    /// Log a line.
    pub fn log(&mut self, text: String) {
        self.events.push(Event::Log(text));
    }
    /// Log a warning.
    pub fn warn(&mut self, text: String) {
        self.events.push(Event::Log(format!("warning: {text}")));
    }
    /// Postfix's log_whatsup(): `QID: what: WHERE from namaddr: text; from=<..> to=<..> proto=.. helo=<..>`.
    pub fn log_whatsup(&mut self, what: &str, text: &str) {
        let mut s = String::with_capacity(160);
        for p in [
            self.queue_id.as_deref().unwrap_or("NOQUEUE"),
            ": ",
            what,
            ": ",
            &self.where_,
            " from ",
            &self.namaddr,
            ": ",
            text,
            ";",
        ] {
            s.push_str(p);
        }
        if let Some(f) = &self.sender {
            s.push_str(" from=<");
            s.push_str(&log_form(f));
            s.push('>');
        }
        if let Some(t) = &self.recipient {
            s.push_str(" to=<");
            s.push_str(&log_form(t));
            s.push('>');
        }
        if !self.protocol.is_empty() {
            s.push_str(" proto=");
            s.push_str(&self.protocol);
        }
        if let Some(h) = &self.helo_name {
            s.push_str(" helo=<");
            s.push_str(h);
            s.push('>');
        }
        self.log(s);
    }
}

/// MAIL_ERROR_* classes (notify_classes), as Postfix's mail_error.h.
pub mod error_class {
    pub const POLICY: u32 = 1 << 0;
    pub const PROTOCOL: u32 = 1 << 1;
    pub const BOUNCE: u32 = 1 << 2;
    pub const SOFTWARE: u32 = 1 << 3;
    pub const RESOURCE: u32 = 1 << 4;
    pub const DELAY: u32 = 1 << 5;
    pub const DATA: u32 = 1 << 6;
}

/// info_log_addr_form: an address as logged (external form; the null
/// address stays empty).
fn log_form(a: &str) -> std::borrow::Cow<'_, str> {
    if a.is_empty() {
        std::borrow::Cow::Borrowed("")
    } else {
        std::borrow::Cow::Owned(crate::global::quote_822_local::quote_822_local(a))
    }
}
