//! Replaces qmgr(8) of Postfix 3.7: moves mail from incoming/ and
//! deferred/ (alternating between them) into active/, resolves each
//! recipient with the trivial-rewrite library, groups recipients by
//! transport and destination, and hands them to the delivery agents on
//! private/<transport> with the delivery protocol
//! ([`crate::global::deliver_proto`]), within per-destination concurrency
//! windows ([`sched`]). Afterwards a message is removed (`removed`), or
//! moved to deferred/ with its time stamps set to the next attempt, or
//! returned to the sender when it has been queued too long.
//!
//! Triggers on public/qmgr: `I`/`W` scan incoming, `D` scan deferred, `A`
//! scan ignoring time stamps, `F` revive dead destinations.
//!
//! Trust: queue files are written by cleanup; a corrupt file is moved to
//! corrupt/. Privilege: runs as mail_owner (master.cf `n` unprivileged
//! column is `-` for qmgr); deliveries run in threads of this process (no
//! identity changes here).
//!
//! Parameters: queue_run_delay, minimal_backoff_time, maximal_backoff_time,
//! maximal_queue_lifetime, bounce_queue_lifetime, defer_transports,
//! qmgr_message_active_limit, default_process_limit,
//! initial_destination_concurrency, default_destination_concurrency_limit,
//! default_destination_concurrency_positive_feedback,
//! default_destination_concurrency_negative_feedback,
//! default_destination_concurrency_failed_cohort_limit,
//! default_destination_recipient_limit, default_destination_rate_delay and
//! their `<transport>_` forms, delay_logging_resolution_limit,
//! hash_queue_names, hash_queue_depth, bounce_service_name,
//! defer_service_name.

pub mod sched;

use crate::daemons::trivial_rewrite::{self as tr, Personality, TrivialRewrite};
use crate::global::deliver_proto::{self, Reply, log_append};
use crate::global::deliver_request::{
    DeliveryRequest, Dsn, Outcome, Recipient, flags, log_line, now,
};
use crate::global::mail_conf::MailConf;
use crate::global::mail_queue::QueueConf;
use crate::global::msg;
use crate::global::record::{QueueStream, Rec, rec_get};
use crate::master::server::{self, Server, TriggerService};
use sched::{Dest, Feedback, Limits};
use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// DEL_REQ_FLAG_SUCCESS | DEL_REQ_FLAG_BOUNCE.
const DEL_REQ_FLAG_DEFLT: u32 = flags::SUCCESS | 1 << 1;

/// The settings qmgr reads once.
#[derive(Debug, Clone)]
pub struct QmgrConfig {
    pub queue_run_delay: i64,
    pub min_backoff: i64,
    pub max_backoff: i64,
    pub max_queue_life: i64,
    pub bounce_queue_life: i64,
    pub defer_transports: Vec<String>,
    pub active_limit: usize,
    pub max_res: u32,
    pub bounce_service: String,
    pub defer_service: String,
}

impl QmgrConfig {
    pub fn from_conf(conf: &MailConf) -> Result<QmgrConfig, String> {
        let t = |n: &str| conf.get_time(n, 's', 0, 0).map_err(|e| e.0);
        let i = |n: &str| conf.get_int(n, 0, 0).map_err(|e| e.0);
        let s = |n: &str| conf.get_str(n, 0, 0).map_err(|e| e.0);
        let max_life = conf
            .get_time("maximal_queue_lifetime", 'd', 0, 0)
            .map_err(|e| e.0)?;
        let mut bounce_life = conf
            .get_time("bounce_queue_lifetime", 'd', 0, 0)
            .map_err(|e| e.0)?;
        if bounce_life > max_life {
            msg::warn(
                "bounce_queue_lifetime is larger than maximal_queue_lifetime - adjusting bounce_queue_lifetime",
            );
            bounce_life = max_life;
        }
        Ok(QmgrConfig {
            queue_run_delay: t("queue_run_delay")?.max(1),
            min_backoff: t("minimal_backoff_time")?,
            max_backoff: t("maximal_backoff_time")?,
            max_queue_life: max_life,
            bounce_queue_life: bounce_life,
            defer_transports: s("defer_transports")?
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|w| !w.is_empty())
                .map(|w| w.to_string())
                .collect(),
            active_limit: i("qmgr_message_active_limit")?.max(1) as usize,
            max_res: i("delay_logging_resolution_limit")?.clamp(0, 6) as u32,
            bounce_service: s("bounce_service_name").unwrap_or_else(|_| "bounce".into()),
            defer_service: s("defer_service_name").unwrap_or_else(|_| "defer".into()),
        })
    }
}

/// The per-transport limits: `<transport>_destination_*`, else the
/// `default_destination_*` values.
pub fn transport_limits(conf: &MailConf, transport: &str) -> Limits {
    let get = |suffix: &str| -> Option<String> {
        conf.lookup_eval(&format!("{transport}_{suffix}"))
            .ok()
            .flatten()
            .or_else(|| {
                conf.lookup_eval(&format!("default_{suffix}"))
                    .ok()
                    .flatten()
            })
    };
    let num = |suffix: &str, def: i64| -> i64 {
        get(suffix)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(def)
    };
    let d = Limits::default();
    let initial = conf
        .lookup_eval(&format!("{transport}_initial_destination_concurrency"))
        .ok()
        .flatten()
        .or_else(|| {
            conf.lookup_eval("initial_destination_concurrency")
                .ok()
                .flatten()
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(5);
    let rate = get("destination_rate_delay")
        .and_then(|v| crate::global::mail_conf::conv_time(&v, 's'))
        .unwrap_or(0);
    Limits {
        initial_concurrency: initial,
        concurrency_limit: num("destination_concurrency_limit", 20).max(0) as u32,
        positive: get("destination_concurrency_positive_feedback")
            .and_then(|v| Feedback::parse(&v))
            .unwrap_or(d.positive),
        negative: get("destination_concurrency_negative_feedback")
            .and_then(|v| Feedback::parse(&v))
            .unwrap_or(d.negative),
        failed_cohort_limit: num("destination_concurrency_failed_cohort_limit", 1).max(0) as u32,
        recipient_limit: num("destination_recipient_limit", 50).max(0) as usize,
        rate_delay: Duration::from_secs(rate.max(0) as u64),
        process_limit: conf
            .lookup_eval(&format!("{transport}_process_limit"))
            .ok()
            .flatten()
            .or_else(|| conf.lookup_eval("default_process_limit").ok().flatten())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(100),
    }
}

/// A message in the active queue.
struct Msg {
    base: DeliveryRequest,
    create_time: i64,
    /// Deliveries queued or in progress.
    pending: usize,
    /// Some bookkeeping failed: defer the whole message.
    defer_flag: bool,
}

/// One delivery job: some recipients of one message for one destination.
struct Entry {
    id: String,
    transport: String,
    nexthop: String,
    rcpt: Vec<Recipient>,
}

type Key = (String, String);

enum Done {
    Reply(Reply),
    Unavailable(String),
    Broken(String),
}

struct Finished {
    entry: Entry,
    key: Key,
    result: Done,
}

/// The queue manager's state.
pub struct Qmgr {
    cfg: QmgrConfig,
    conf: MailConf,
    qc: QueueConf,
    resolver: Option<TrivialRewrite>,
    msgs: HashMap<String, Msg>,
    todo: HashMap<Key, VecDeque<Entry>>,
    order: VecDeque<Key>,
    dests: HashMap<Key, Dest>,
    limits: HashMap<String, Limits>,
    transport_busy: HashMap<String, u32>,
    transport_dead: HashMap<String, (Instant, Dsn)>,
    in_flight: usize,
    tx: mpsc::Sender<Finished>,
    rx: mpsc::Receiver<Finished>,
    scan_incoming: bool,
    scan_deferred: bool,
    scan_all: bool,
    next_deferred_scan: Instant,
}

/// Walk a queue directory (with its hashed subdirectories).
fn queue_files(dir: &str, depth: usize, out: &mut Vec<(String, String)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<_> = rd.flatten().collect();
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let name = e.file_name().to_string_lossy().to_string();
        let path = format!("{dir}/{name}");
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() && depth > 0 && name.len() == 1 {
            queue_files(&path, depth - 1, out);
        } else if ft.is_file() && crate::global::mail_queue::id_ok(&name) {
            out.push((name, path));
        }
    }
}

fn mtime_secs(path: &str) -> Option<(i64, u32)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.mtime(), m.mode()))
}

fn set_times(path: &str, when: i64) {
    let t = std::time::UNIX_EPOCH + Duration::from_secs(when.max(0) as u64);
    if let Ok(f) = std::fs::File::options().write(true).open(path) {
        let _ = f.set_times(std::fs::FileTimes::new().set_accessed(t).set_modified(t));
    }
}

/// The fields of the SIZE record (the first record of a queue file).
fn size_fields(path: &str) -> Option<Vec<i64>> {
    let mut fp = QueueStream::open(path).ok()?;
    let mut buf = Vec::new();
    match rec_get(&mut fp, &mut buf, 0) {
        Rec::Type(crate::global::rec_type::SIZE) => Some(
            String::from_utf8_lossy(&buf)
                .split_whitespace()
                .map(|v| v.parse().unwrap_or(0))
                .collect(),
        ),
        _ => None,
    }
}

/// Talk to the bounce or defer service (abounce_flush): ask it to send
/// the notice for the logged recipients. `Err` when it is unreachable.
fn bounce_flush(service: &str, m: &DeliveryRequest) -> Result<i32, String> {
    use crate::global::attr0;
    use std::io::{BufReader, Write};
    let path = format!("private/{service}");
    let s = std::os::unix::net::UnixStream::connect(&path).map_err(|e| e.to_string())?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    let mut r = BufReader::new(s);
    attr0::scan(&mut r)
        .map_err(|e| e.to_string())?
        .ok_or("no greeting")?;
    let smtputf8 = if m.smtputf8 { "1" } else { "0" };
    let ret = m.dsn_ret.to_string();
    r.get_mut()
        .write_all(&attr0::encode(&[
            ("nrequest", "1"),
            ("flags", "0"),
            ("queue_name", &m.queue_name),
            ("queue_id", &m.queue_id),
            ("encoding", &m.encoding),
            ("smtputf8", smtputf8),
            ("sender", &m.sender),
            ("envelope_id", &m.dsn_envid),
            ("ret_flags", &ret),
        ]))
        .map_err(|e| e.to_string())?;
    let g = attr0::scan(&mut r)
        .map_err(|e| e.to_string())?
        .ok_or("no reply")?;
    g.iter()
        .find(|(n, _)| n == "status")
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| "malformed reply".to_string())
}

impl Qmgr {
    pub fn new(conf: &MailConf) -> Result<Qmgr, String> {
        let (tx, rx) = mpsc::channel();
        Ok(Qmgr {
            cfg: QmgrConfig::from_conf(conf)?,
            conf: conf.clone(),
            qc: QueueConf::from_conf(conf).map_err(|e| e.0)?,
            resolver: None,
            msgs: HashMap::new(),
            todo: HashMap::new(),
            order: VecDeque::new(),
            dests: HashMap::new(),
            limits: HashMap::new(),
            transport_busy: HashMap::new(),
            transport_dead: HashMap::new(),
            in_flight: 0,
            tx,
            rx,
            scan_incoming: true,
            scan_deferred: true,
            scan_all: false,
            next_deferred_scan: Instant::now(),
        })
    }

    /// Put messages left in active/ by a crash back into incoming/
    /// (qmgr's start-up recovery).
    pub fn recover_active(&self) {
        let mut files = Vec::new();
        queue_files("active", self.qc.hash_depth, &mut files);
        for (id, _) in files {
            if let Err(e) = self.qc.rename(&id, "active", "incoming") {
                msg::warn(&format!("{id}: rename from active to incoming: {e}"));
            }
        }
    }

    fn limits(&mut self, transport: &str) -> Limits {
        if let Some(l) = self.limits.get(transport) {
            return l.clone();
        }
        let l = transport_limits(&self.conf, transport);
        self.limits.insert(transport.to_string(), l.clone());
        l
    }

    /// Handle a trigger's bytes.
    pub fn request(&mut self, data: &[u8]) {
        for b in data {
            match b {
                b'I' | b'W' => self.scan_incoming = true,
                b'D' => self.scan_deferred = true,
                b'A' => {
                    self.scan_all = true;
                    self.scan_incoming = true;
                    self.scan_deferred = true;
                }
                b'F' => {
                    self.transport_dead.clear();
                    for d in self.dests.values_mut() {
                        d.dead_until = None;
                        d.dead_reason = None;
                    }
                }
                _ => {}
            }
        }
    }

    /// Move ready files from incoming/ and deferred/ (alternately) into
    /// active/ and read them.
    fn scan(&mut self) {
        let now_s = now().0;
        let mut inc = Vec::new();
        let mut def = Vec::new();
        if self.scan_incoming {
            queue_files("incoming", self.qc.hash_depth, &mut inc);
        }
        if self.scan_deferred || Instant::now() >= self.next_deferred_scan {
            queue_files("deferred", self.qc.hash_depth, &mut def);
            self.next_deferred_scan =
                Instant::now() + Duration::from_secs(self.cfg.queue_run_delay as u64);
        }
        let all = std::mem::take(&mut self.scan_all);
        self.scan_incoming = false;
        self.scan_deferred = false;
        let mut inc = inc.into_iter();
        let mut def = def.into_iter();
        loop {
            if self.msgs.len() >= self.cfg.active_limit {
                break;
            }
            let a = inc.next().map(|x| ("incoming", x));
            let b = def.next().map(|x| ("deferred", x));
            if a.is_none() && b.is_none() {
                break;
            }
            for (queue, (id, path)) in [a, b].into_iter().flatten() {
                let Some((mtime, mode)) = mtime_secs(&path) else {
                    continue;
                };
                // Only complete files (cleanup sets the owner x bit).
                if mode & 0o700 != 0o700 {
                    continue;
                }
                if queue == "deferred" && !all && mtime > now_s {
                    continue;
                }
                if self.msgs.contains_key(&id) {
                    continue;
                }
                if let Err(e) = self.qc.rename(&id, queue, "active") {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        msg::warn(&format!(
                            "qmgr_active_feed: {id}: rename from {queue} to active: {e}"
                        ));
                    }
                    continue;
                }
                self.activate(&id);
            }
        }
    }

    fn corrupt(&self, id: &str) {
        match self.qc.rename(id, "active", "corrupt") {
            Ok(()) => msg::warn(&format!(
                "saving corrupt file \"{id}\" from queue \"active\" to queue \"corrupt\""
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => msg::fatal(&format!(
                "qmgr_active_corrupt: save corrupt file queue active id {id}: {e}"
            )),
        }
    }

    /// Read a message that just entered active/, resolve its recipients and
    /// queue its deliveries.
    fn activate(&mut self, id: &str) {
        let path = self.qc.path("active", id);
        // A new life in the active queue: forget the old deferral reasons.
        let _ = std::fs::remove_file(self.qc.path("defer", id));
        let mut base = match DeliveryRequest::from_queue_file(
            std::path::Path::new(&path),
            "active",
            id,
            "",
            "",
        ) {
            Ok(r) => r,
            Err(_) => {
                self.corrupt(id);
                return;
            }
        };
        let sizes = size_fields(&path).unwrap_or_default();
        let cont_length = match sizes.get(4) {
            Some(&n) if n > 0 => n,
            _ => base.data_size as i64,
        };
        base.stats.active_arrival = now();
        base.flags = DEL_REQ_FLAG_DEFLT;
        // nrcpt is the recipient count of the SIZE record (all recipients,
        // delivered ones included), as Postfix logs it.
        let nrcpt = match sizes.get(2) {
            Some(&n) if n > 0 => n,
            _ => base.rcpt.len() as i64,
        };
        msg::info(&format!(
            "{id}: from=<{}>, size={cont_length}, nrcpt={nrcpt} (queue active)",
            base.sender
        ));
        let create_time = if base.stats.incoming_arrival.0 > 0 {
            base.stats.incoming_arrival.0
        } else {
            now().0
        };
        let rcpts = std::mem::take(&mut base.rcpt);
        let mut m = Msg {
            base,
            create_time,
            pending: 0,
            defer_flag: false,
        };
        // Resolve and group.
        let mut groups: Vec<(Key, String, String, Vec<Recipient>)> = Vec::new();
        for r in rcpts {
            let (transport, nexthop, qname) = self.resolve(&m.base.sender, &r.address);
            let key = (transport.clone(), qname);
            match groups.iter_mut().find(|g| g.0 == key) {
                Some(g) => g.3.push(r),
                None => groups.push((key, transport, nexthop, vec![r])),
            }
        }
        for (key, transport, nexthop, list) in groups {
            let l = self.limits(&transport);
            for batch in sched::batches(&list, l.recipient_limit) {
                m.pending += 1;
                self.enqueue(
                    key.clone(),
                    Entry {
                        id: id.to_string(),
                        transport: transport.clone(),
                        nexthop: nexthop.clone(),
                        rcpt: batch,
                    },
                );
            }
        }
        self.msgs.insert(id.to_string(), m);
    }

    fn enqueue(&mut self, key: Key, e: Entry) {
        let q = self.todo.entry(key.clone()).or_default();
        if q.is_empty() && !self.order.contains(&key) {
            self.order.push_back(key);
        }
        q.push_back(e);
    }

    /// (transport, nexthop, queue name) for a recipient.
    fn resolve(&mut self, sender: &str, addr: &str) -> (String, String, String) {
        if self.resolver.is_none() {
            match TrivialRewrite::new(&self.conf) {
                Ok(t) => self.resolver = Some(t),
                Err(e) => msg::fatal(&e.0),
            }
        }
        let Some(res) = self.resolver.as_mut() else {
            unreachable!()
        };
        let rep = res.resolve(Personality::Regular, sender, addr);
        let (mut transport, mut nexthop) = if rep.flags & tr::FLAG_FAIL != 0 {
            (
                "retry".to_string(),
                "4.3.0 address resolver failure".to_string(),
            )
        } else if rep.flags & tr::FLAG_ERROR != 0 {
            ("error".to_string(), "5.1.3 bad address syntax".to_string())
        } else {
            (rep.transport.clone(), rep.nexthop.clone())
        };
        if self.cfg.defer_transports.contains(&transport) {
            transport = "retry".into();
            nexthop = "4.3.2 deferred transport".into();
        }
        let l = self.limits(&transport);
        let qname = if l.recipient_limit == 1 {
            // One queue per recipient local part, as Postfix does.
            let local = rep
                .recipient
                .rsplit_once('@')
                .map(|(l, _)| l)
                .unwrap_or(&rep.recipient);
            format!(
                "{}@{}",
                local.to_ascii_lowercase(),
                nexthop.to_ascii_lowercase()
            )
        } else {
            nexthop.to_ascii_lowercase()
        };
        (transport, nexthop, qname)
    }

    /// qmgr's own deferral of recipients it cannot hand to an agent
    /// (qmgr_defer_recipient): logged from qmgr with `relay=none`.
    fn defer_rcpts(&mut self, id: &str, rcpts: &[Recipient], dsn: &Dsn) {
        let Some(m) = self.msgs.get_mut(id) else {
            return;
        };
        let t = now();
        for r in rcpts {
            msg::info(&log_line(
                id,
                &m.base.stats,
                r,
                "none",
                dsn,
                Outcome::Deferred.status_word(),
                t,
                self.cfg.max_res,
            ));
            if log_append(&self.qc, "defer", id, r, dsn, "delayed").is_err() {
                m.defer_flag = true;
            }
        }
    }

    /// Start the deliveries the windows allow.
    fn dispatch(&mut self) {
        let now_i = Instant::now();
        let keys: Vec<Key> = self.order.iter().cloned().collect();
        for key in keys {
            let transport = key.0.clone();
            let l = self.limits(&transport);
            // A dead transport: defer everything queued for it.
            if let Some((until, dsn)) = self.transport_dead.get(&transport).cloned() {
                if until > now_i {
                    self.defer_queue(&key, &dsn);
                    continue;
                }
                self.transport_dead.remove(&transport);
            }
            loop {
                if self.todo.get(&key).is_none_or(|q| q.is_empty()) {
                    break;
                }
                let dest = self
                    .dests
                    .entry(key.clone())
                    .or_insert_with(|| Dest::new(&l));
                if dest.is_dead(now_i) {
                    let reason = dest.dead_reason.clone();
                    if let Some((st, text)) = reason {
                        self.defer_queue(&key, &Dsn::new(&st, text));
                    }
                    break;
                }
                if !dest.may_start(&l, now_i) {
                    break;
                }
                let busy = self.transport_busy.entry(transport.clone()).or_insert(0);
                if *busy >= l.process_limit.max(1) {
                    break;
                }
                *busy += 1;
                dest.start(&l, now_i);
                let Some(e) = self.todo.get_mut(&key).and_then(|q| q.pop_front()) else {
                    break;
                };
                self.start_delivery(key.clone(), e);
            }
        }
        self.order
            .retain(|k| self.todo.get(k).is_some_and(|q| !q.is_empty()));
    }

    fn defer_queue(&mut self, key: &Key, dsn: &Dsn) {
        let entries: Vec<Entry> = self
            .todo
            .get_mut(key)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default();
        for e in entries {
            self.defer_rcpts(&e.id, &e.rcpt, dsn);
            self.entry_done(&e.id);
        }
    }

    fn start_delivery(&mut self, key: Key, e: Entry) {
        let Some(m) = self.msgs.get(&e.id) else {
            return;
        };
        let mut req = m.base.clone();
        req.nexthop = e.nexthop.clone();
        req.transport = e.transport.clone();
        req.rcpt = e.rcpt.clone();
        let tx = self.tx.clone();
        self.in_flight += 1;
        let path = format!("private/{}", e.transport);
        std::thread::spawn(move || {
            let result = match std::os::unix::net::UnixStream::connect(&path) {
                Err(err) => Done::Unavailable(format!(
                    "connect to transport {path}: {}",
                    crate::global::config_file::errno_text(&err)
                )),
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(1000)));
                    let _ = s.set_write_timeout(Some(Duration::from_secs(60)));
                    match deliver_proto::deliver_via(s, &req) {
                        Ok(r) => Done::Reply(r),
                        Err(err) => Done::Broken(err),
                    }
                }
            };
            let _ = tx.send(Finished {
                entry: e,
                key,
                result,
            });
        });
    }

    fn entry_done(&mut self, id: &str) {
        if let Some(m) = self.msgs.get_mut(id) {
            m.pending = m.pending.saturating_sub(1);
        }
    }

    fn finished(&mut self, f: Finished) {
        self.in_flight -= 1;
        let transport = f.entry.transport.clone();
        if let Some(b) = self.transport_busy.get_mut(&transport) {
            *b = b.saturating_sub(1);
        }
        let l = self.limits(&transport);
        let retry = Duration::from_secs(self.cfg.min_backoff.max(1) as u64);
        let now_i = Instant::now();
        match f.result {
            Done::Reply(r) => {
                let ok = r.hop.reason.is_empty();
                if let Some(d) = self.dests.get_mut(&f.key) {
                    let dead = d.done(&l, ok, now_i, retry);
                    if dead {
                        d.dead_reason = Some((
                            if r.hop.status.is_empty() {
                                "4.0.0".into()
                            } else {
                                r.hop.status.clone()
                            },
                            r.hop.reason.clone(),
                        ));
                    }
                }
                if r.status != deliver_proto::DEL_STAT_FINAL
                    && let Some(m) = self.msgs.get_mut(&f.entry.id)
                {
                    m.defer_flag = true;
                }
            }
            Done::Unavailable(text) => {
                msg::warn(&text);
                if let Some(d) = self.dests.get_mut(&f.key) {
                    d.busy = d.busy.saturating_sub(1);
                }
                let dsn = Dsn::new("4.3.0", "mail transport unavailable");
                self.transport_dead
                    .insert(transport.clone(), (now_i + retry, dsn.clone()));
                self.defer_rcpts(&f.entry.id, &f.entry.rcpt, &dsn);
            }
            Done::Broken(text) => {
                msg::warn(&format!("private/{transport} socket: malformed response"));
                if msg::verbose() > 0 {
                    msg::info(&text);
                }
                if let Some(d) = self.dests.get_mut(&f.key) {
                    d.busy = d.busy.saturating_sub(1);
                }
                let dsn = Dsn::new("4.3.0", "unknown mail transport error");
                self.transport_dead
                    .insert(transport.clone(), (now_i + retry, dsn.clone()));
                self.defer_rcpts(&f.entry.id, &f.entry.rcpt, &dsn);
            }
        }
        self.entry_done(&f.entry.id);
    }

    /// Messages with nothing left to do: bounce, defer or remove.
    fn finish_messages(&mut self) {
        let done: Vec<String> = self
            .msgs
            .iter()
            .filter(|(_, m)| m.pending == 0)
            .map(|(id, _)| id.clone())
            .collect();
        for id in done {
            if let Some(m) = self.msgs.remove(&id) {
                self.active_done(m);
            }
        }
    }

    fn active_done(&mut self, mut m: Msg) {
        let id = m.base.queue_id.clone();
        let bounce_path = self.qc.path("bounce", &id);
        if let Ok(md) = std::fs::metadata(&bounce_path) {
            if md.len() == 0 {
                let _ = std::fs::remove_file(&bounce_path);
            } else {
                match bounce_flush(&self.cfg.bounce_service, &m.base) {
                    Ok(0) => {}
                    Ok(_) => m.defer_flag = true,
                    Err(e) => {
                        msg::warn(&format!(
                            "connect to transport private/{}: {e}",
                            self.cfg.bounce_service
                        ));
                        m.defer_flag = true;
                    }
                }
            }
        }
        let defer_path = self.qc.path("defer", &id);
        if std::fs::metadata(&defer_path).is_ok() {
            m.defer_flag = true;
        }
        let now_s = now().0;
        let age = now_s - m.create_time;
        if m.defer_flag
            && sched::expired(
                age,
                m.base.sender.is_empty(),
                self.cfg.max_queue_life,
                self.cfg.bounce_queue_life,
            )
        {
            msg::info(&format!(
                "{id}: from=<{}>, status=expired, returned to sender",
                m.base.sender
            ));
            match bounce_flush(&self.cfg.defer_service, &m.base) {
                Ok(0) => m.defer_flag = false,
                Ok(_) => {}
                Err(e) => msg::warn(&format!(
                    "connect to transport private/{}: {e}",
                    self.cfg.defer_service
                )),
            }
        }
        let active = self.qc.path("active", &id);
        if m.defer_flag {
            let delay = sched::backoff(age, self.cfg.min_backoff, self.cfg.max_backoff);
            set_times(&active, now_s + delay);
            if let Err(e) = self.qc.rename(&id, "active", "deferred") {
                msg::warn(&format!(
                    "qmgr_active_defer: rename {id} from active to deferred: {e}"
                ));
            }
        } else {
            match std::fs::remove_file(&active) {
                Ok(()) => msg::info(&format!("{id}: removed")),
                Err(e) => msg::warn(&format!(
                    "qmgr_active_done_3_generic: remove {id} from active: {e}"
                )),
            }
        }
    }

    /// One round of work: collect finished deliveries, scan, dispatch,
    /// retire messages. Returns how long to wait at most.
    pub fn run_once(&mut self) -> Option<Duration> {
        while let Ok(f) = self.rx.try_recv() {
            self.finished(f);
        }
        if self.scan_incoming || self.scan_deferred || Instant::now() >= self.next_deferred_scan {
            self.scan();
        }
        self.dispatch();
        self.finish_messages();
        if self.in_flight > 0 {
            // Deliveries report through the channel: look again soon.
            return Some(Duration::from_millis(20));
        }
        let mut wait = self
            .next_deferred_scan
            .saturating_duration_since(Instant::now());
        let now_i = Instant::now();
        for d in self.dests.values() {
            for t in [d.dead_until, d.next_start].into_iter().flatten() {
                wait = wait.min(t.saturating_duration_since(now_i));
            }
        }
        if !self.order.is_empty() {
            wait = wait.min(Duration::from_secs(1));
        }
        Some(wait.max(Duration::from_millis(10)))
    }

    /// Whether nothing is queued, in flight or active (tests).
    pub fn idle(&self) -> bool {
        self.msgs.is_empty() && self.in_flight == 0
    }
}

struct Service {
    q: Option<Qmgr>,
}

impl TriggerService for Service {
    fn trigger(&mut self, data: &[u8], s: &Server) {
        self.q(s).request(data);
    }
    fn tick(&mut self, s: &Server) -> Option<Duration> {
        self.q(s).run_once()
    }
    fn unlimited(&self) -> bool {
        true
    }
}

impl Service {
    fn q(&mut self, s: &Server) -> &mut Qmgr {
        if self.q.is_none() {
            let q = Qmgr::new(&s.conf).unwrap_or_else(|e| msg::fatal(&e));
            q.recover_active();
            self.q = Some(q);
        }
        let Some(q) = self.q.as_mut() else {
            unreachable!()
        };
        q
    }
}

/// The `qmgr` program (started by master).
pub fn main(args: Vec<OsString>) -> i32 {
    let mut svc = Service { q: None };
    server::trigger_server(args, None, &mut svc)
}
