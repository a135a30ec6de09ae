//! qmgr's delivery agent conversations, driven by its one event loop (as
//! Postfix's qmgr does with its event handlers): a delivery writes its
//! request on a non-blocking connection, the loop polls the connection,
//! and the agent's answer, once complete, finishes the delivery. No thread
//! per delivery: a delivery costs no thread wake-ups, no hand-over through
//! a channel and no wake-up socket.
//!
//! An agent that may serve another delivery on its connection sends a
//! fresh announcement with its answer ([`deliver_proto::serve_ext`]); the
//! connection then waits here, by endpoint (`private/<transport>`), for the
//! next delivery to the same transport. An idle connection is not a
//! delivery: the concurrency accounting never sees it. Idle connections are
//! polled too: one that turns readable (the agent exited, or sent
//! garbage) is closed at once. Connections unused for [`IDLE_CLOSE`] are
//! closed (far below any agent's max_idle, so that the agent does not give
//! up a connection the queue manager is about to use), and all of them when
//! the queue manager exits.

use crate::global::deliver_proto::{self, Reply};
use crate::global::deliver_request::DeliveryRequest;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// How long an unused connection is kept.
pub const IDLE_CLOSE: Duration = Duration::from_secs(1);
/// How long an agent may take to accept the request.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an agent may take to answer.
const READ_TIMEOUT: Duration = Duration::from_secs(1000);
use crate::sys::process::{POLLIN, POLLOUT};

/// How a delivery attempt ended.
pub enum Attempt {
    /// The agent answered.
    Reply(Reply),
    /// The agent could not be reached (connect failed).
    Unavailable(String),
    /// The conversation broke (after the request was sent, or a bad
    /// answer).
    Broken(String),
}

/// One delivery in flight.
struct Busy<T> {
    stream: UnixStream,
    path: String,
    /// The request, and how much of it is written.
    out: Vec<u8>,
    sent: usize,
    /// What the agent sent so far.
    input: Vec<u8>,
    /// A new connection: the agent's announcement comes first.
    greeting: bool,
    deadline: Instant,
    tag: T,
}

/// The agent connections, busy and idle. `T` is what the caller attaches
/// to a delivery (handed back with its outcome).
pub struct Agents<T> {
    busy: Vec<Busy<T>>,
    idle: HashMap<String, Vec<(UnixStream, Instant)>>,
    hello: Vec<u8>,
    /// Where answers are read to (zeroed once, not per read).
    scratch: Box<[u8]>,
}

impl<T> Default for Agents<T> {
    fn default() -> Self {
        Agents {
            busy: Vec::new(),
            idle: HashMap::new(),
            hello: crate::global::attr0::encode(&[("protocol", deliver_proto::PROTO_DELIVER)]),
            scratch: vec![0u8; 4096].into_boxed_slice(),
        }
    }
}

/// The length of the first complete attribute group in `buf` (NUL-ended
/// names and values, ended by an empty name), or None while incomplete.
fn group_len(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    let mut name = true;
    loop {
        let end = i + buf.get(i..)?.iter().position(|&b| b == 0)?;
        if name && end == i {
            return Some(i + 1);
        }
        name = !name;
        i = end + 1;
    }
}

impl<T> Agents<T> {
    pub fn new() -> Agents<T> {
        Agents::default()
    }

    /// Deliveries in flight.
    pub fn busy(&self) -> usize {
        self.busy.len()
    }

    /// How many connections wait (tests).
    pub fn idle_count(&self) -> usize {
        self.idle.values().map(Vec::len).sum()
    }

    /// Start delivering `req` through the agent on `path`: on an idle
    /// connection when there is one, else on a new one. A failure on a
    /// reused connection is reported as on a new one (it is never retried:
    /// the agent may have delivered). An attempt that ends at once is
    /// handed back.
    pub fn start(&mut self, path: &str, req: &DeliveryRequest, tag: T) -> Option<(T, Attempt)> {
        let reused = self.idle.get_mut(path).and_then(Vec::pop);
        if self.idle.get(path).is_some_and(Vec::is_empty) {
            self.idle.remove(path);
        }
        let (stream, greeting) = match reused {
            Some((s, _)) => (s, false),
            None => match UnixStream::connect(path) {
                Err(err) => {
                    return Some((
                        tag,
                        Attempt::Unavailable(format!(
                            "connect to transport {path}: {}",
                            crate::global::config_file::errno_text(&err)
                        )),
                    ));
                }
                Ok(s) => {
                    if let Err(e) = s.set_nonblocking(true) {
                        return Some((tag, Attempt::Broken(e.to_string())));
                    }
                    (s, true)
                }
            },
        };
        let mut b = Busy {
            stream,
            path: path.to_string(),
            out: deliver_proto::encode_request(req),
            sent: 0,
            input: Vec::new(),
            greeting,
            deadline: Instant::now() + WRITE_TIMEOUT,
            tag,
        };
        if let Err(e) = write_some(&mut b) {
            return Some((b.tag, Attempt::Broken(e)));
        }
        self.busy.push(b);
        None
    }

    /// The descriptors to poll, with their events.
    pub fn poll_fds(&self, out: &mut Vec<(RawFd, i16)>) {
        for b in &self.busy {
            let ev = if b.sent < b.out.len() {
                POLLOUT
            } else {
                POLLIN
            };
            out.push((b.stream.as_raw_fd(), ev));
        }
        for list in self.idle.values() {
            for (s, _) in list {
                out.push((s.as_raw_fd(), POLLIN));
            }
        }
    }

    /// Handle a descriptor that poll reported ready; finished deliveries
    /// are appended to `done`.
    pub fn ready(&mut self, fd: RawFd, done: &mut Vec<(T, Attempt)>) {
        if let Some(k) = self.busy.iter().position(|b| b.stream.as_raw_fd() == fd) {
            let b = &mut self.busy[k];
            let outcome = if b.sent < b.out.len() {
                match write_some(b) {
                    Ok(()) => None,
                    Err(e) => Some(Attempt::Broken(e)),
                }
            } else {
                read_some(b, &self.hello, &mut self.scratch)
            };
            if let Some(outcome) = outcome {
                let b = self.busy.swap_remove(k);
                let again = matches!(outcome, Attempt::Reply(_)) && b.input == self.hello;
                if again {
                    self.idle
                        .entry(b.path)
                        .or_default()
                        .push((b.stream, Instant::now()));
                }
                done.push((b.tag, outcome));
            }
            return;
        }
        // An idle connection with input: the agent's close (or garbage).
        for list in self.idle.values_mut() {
            list.retain(|(s, _)| s.as_raw_fd() != fd);
        }
        self.idle.retain(|_, list| !list.is_empty());
    }

    /// Close the connections unused for [`IDLE_CLOSE`] and break the
    /// conversations past their deadline (appended to `done`); how long
    /// until the next one is due (None: none left).
    pub fn expire(&mut self, done: &mut Vec<(T, Attempt)>) -> Option<Duration> {
        let now = Instant::now();
        let mut next: Option<Duration> = None;
        let mut at = |d: Duration| next = Some(next.map_or(d, |n: Duration| n.min(d)));
        if !self.idle.is_empty() {
            self.idle.retain(|_, list| {
                list.retain(|(_, since)| now.duration_since(*since) < IDLE_CLOSE);
                !list.is_empty()
            });
            for list in self.idle.values() {
                for (_, since) in list {
                    at(IDLE_CLOSE.saturating_sub(now.duration_since(*since)));
                }
            }
        }
        let mut k = 0;
        while k < self.busy.len() {
            if self.busy[k].deadline <= now {
                let b = self.busy.swap_remove(k);
                done.push((b.tag, Attempt::Broken("timeout".into())));
            } else {
                at(self.busy[k].deadline - now);
                k += 1;
            }
        }
        next
    }
}

/// Write what the socket takes of the request.
fn write_some<T>(b: &mut Busy<T>) -> Result<(), String> {
    while b.sent < b.out.len() {
        match (&b.stream).write(&b.out[b.sent..]) {
            Ok(0) => return Err("write: end of file".into()),
            Ok(n) => b.sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    // All written: now the answer is awaited.
    b.out = Vec::new();
    b.sent = 0;
    b.deadline = Instant::now() + READ_TIMEOUT;
    Ok(())
}

/// Read what the agent sent; the outcome once its answer is complete.
/// What follows the answer stays in `b.input`.
fn read_some<T>(b: &mut Busy<T>, hello: &[u8], buf: &mut [u8]) -> Option<Attempt> {
    match (&b.stream).read(buf) {
        Ok(0) => return Some(Attempt::Broken("unexpected end of input".into())),
        Ok(n) => b.input.extend_from_slice(&buf[..n]),
        Err(e)
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::Interrupted =>
        {
            return None;
        }
        Err(e) => return Some(Attempt::Broken(e.to_string())),
    }
    let mut at = 0;
    if b.greeting {
        let g = group_len(&b.input)?;
        if b.input[..g] != *hello {
            return Some(Attempt::Broken("bad protocol greeting".into()));
        }
        at = g;
    }
    let r = group_len(&b.input[at..])?;
    let outcome = match deliver_proto::parse_reply(&b.input[at..at + r]) {
        Ok(reply) => Attempt::Reply(reply),
        Err(e) => Attempt::Broken(e),
    };
    b.input.drain(..at + r);
    Some(outcome)
}

#[cfg(test)]
mod tests {
    use super::group_len;

    #[test]
    fn attribute_groups_are_complete_only_with_their_end() {
        assert_eq!(group_len(b""), None);
        assert_eq!(group_len(b"\0"), Some(1));
        assert_eq!(group_len(b"status\0"), None);
        assert_eq!(group_len(b"status\0\0"), None);
        assert_eq!(group_len(b"status\0\0\0"), Some(9));
        assert_eq!(group_len(b"a\0b\0c\0d\0\0rest"), Some(9));
        assert_eq!(group_len(b"a\0b\0c\0d\0"), None);
    }
}
