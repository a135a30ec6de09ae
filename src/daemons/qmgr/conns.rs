//! Delivery agent connections kept for another request. An agent that may
//! serve another delivery on its connection sends a fresh announcement
//! with its answer ([`deliver_proto::serve_ext`]); the connection then
//! waits here, by endpoint (`private/<transport>`), for the next delivery
//! to the same transport. An idle connection is not a delivery: the
//! concurrency accounting never sees it. Connections unused for
//! [`IDLE_CLOSE`] are closed (far below any agent's max_idle, so that the
//! agent does not give up a connection the queue manager is about to
//! use), and all of them when the queue manager exits.

use crate::global::deliver_proto::{self, Reply};
use crate::global::deliver_request::DeliveryRequest;
use std::collections::HashMap;
use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an unused connection is kept.
pub const IDLE_CLOSE: Duration = Duration::from_secs(1);

type Agent = BufReader<UnixStream>;

/// The idle connections, newest last per endpoint.
#[derive(Default)]
pub struct Conns {
    idle: Mutex<HashMap<String, Vec<(Agent, Instant)>>>,
}

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

impl Conns {
    pub fn new() -> Conns {
        Conns::default()
    }

    /// An idle connection to `path` that is still open (the agent did not
    /// exit meanwhile), or None.
    fn take(&self, path: &str) -> Option<Agent> {
        loop {
            let (agent, since) = {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                let list = idle.get_mut(path)?;
                let got = list.pop();
                if list.is_empty() {
                    idle.remove(path);
                }
                got?
            };
            // The announcement was consumed with the last answer: anything
            // readable now is the agent's close (or garbage).
            if since.elapsed() < IDLE_CLOSE && agent.buffer().is_empty() && !readable(&agent) {
                return Some(agent);
            }
        }
    }

    fn put(&self, path: &str, agent: Agent) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.entry(path.to_string())
            .or_default()
            .push((agent, Instant::now()));
    }

    /// Close the connections unused for [`IDLE_CLOSE`]; how long until
    /// the next one is due (None: none left).
    pub fn expire(&self) -> Option<Duration> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.is_empty() {
            return None;
        }
        let mut next: Option<Duration> = None;
        idle.retain(|_, list| {
            list.retain(|(_, since)| since.elapsed() < IDLE_CLOSE);
            for (_, since) in list.iter() {
                let left = IDLE_CLOSE.saturating_sub(since.elapsed());
                next = Some(next.map_or(left, |n| n.min(left)));
            }
            !list.is_empty()
        });
        next
    }

    /// How many connections wait (tests).
    pub fn idle_count(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.values().map(Vec::len).sum()
    }

    /// Deliver `req` through the agent on `path`: on an idle connection
    /// when there is one, else on a new one. A failure on a reused
    /// connection is reported as on a new one (it is never retried: the
    /// agent may have delivered).
    pub fn deliver(&self, path: &str, req: &DeliveryRequest) -> Attempt {
        let (mut agent, greeting) = match self.take(path) {
            Some(a) => (a, false),
            None => match UnixStream::connect(path) {
                Err(err) => {
                    return Attempt::Unavailable(format!(
                        "connect to transport {path}: {}",
                        crate::global::config_file::errno_text(&err)
                    ));
                }
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(1000)));
                    let _ = s.set_write_timeout(Some(Duration::from_secs(60)));
                    (BufReader::with_capacity(1024, s), true)
                }
            },
        };
        match deliver_proto::deliver_on(&mut agent, req, greeting) {
            Ok((reply, again)) => {
                if again {
                    self.put(path, agent);
                }
                Attempt::Reply(reply)
            }
            Err(e) => Attempt::Broken(e),
        }
    }
}

/// Whether the connection has input (or its end) waiting.
fn readable(agent: &Agent) -> bool {
    use std::os::fd::AsRawFd;
    match crate::sys::process::poll_read(&[agent.get_ref().as_raw_fd()], 0) {
        Ok(r) => r.first() == Some(&true),
        Err(_) => true,
    }
}
