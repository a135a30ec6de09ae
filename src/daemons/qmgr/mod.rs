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
//! Per-recipient deferrals that qmgr decides itself go to the defer log
//! through the bounce client ([`crate::daemons::bounce::client`]); at the
//! end of a message qmgr asks the bounce, defer and trace services for the
//! sender's notices (non-delivery, expiry, delay warning with the queue
//! file's `W` record, success), as Postfix's qmgr_active_done does.
//! Destinations whose deliveries fail at the site level are throttled by
//! the failed-cohort rule; their mail goes to the `retry` transport with
//! "delivery temporarily suspended: ..." until minimal_backoff_time has
//! passed. A transport that cannot be reached is throttled for
//! transport_retry_time.
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
//! defer_service_name, trace_service_name, transport_retry_time,
//! double_bounce_sender, soft_bounce.

pub mod conns;
pub mod sched;

use crate::daemons::bounce::client::{
    NoticeMessage, NoticeRequest, REC_DLY_SENT, StatusLogs, notice_request,
};
use crate::daemons::bounce::log::DsnInfo;
use crate::daemons::trivial_rewrite::{self as tr, Personality, TrivialRewrite};
use crate::global::deliver_proto::{self, Reply};
use crate::global::deliver_request::{DeliveryRequest, Dsn, Recipient, flags, log_line, now};
use crate::global::mail_conf::MailConf;
use crate::global::mail_queue::QueueConf;
use crate::global::msg;
use crate::master::server::{self, Server, TriggerService};
use sched::{Dest, Feedback, Limits};
use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
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
    pub trace_service: String,
    pub transport_retry: i64,
    pub double_bounce: String,
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
            trace_service: s("trace_service_name").unwrap_or_else(|_| "trace".into()),
            transport_retry: t("transport_retry_time")?.max(1),
            double_bounce: s("double_bounce_sender")?,
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
    /// The `W` record: when to send a delay warning (0: never, -1: sent),
    /// and where the record is, to update it.
    warn_time: i64,
    warn_offset: i64,
    /// DEL_REQ trace flags from the `trace_flags` attribute.
    tflags: u32,
    /// Some recipient asked for NOTIFY=SUCCESS.
    notify_success: bool,
    /// `postsuper -e`/`-f` marked the file (group execute bit).
    force_expire: bool,
    /// Moved in by `postqueue -i`/`-s` or `postsuper -r` (group read bit):
    /// revive dead destinations and ignore defer_transports.
    flush_each: bool,
}

/// MAIL_QUEUE_STAT_UNTHROTTLE and MAIL_QUEUE_STAT_EXPIRE.
const STAT_UNTHROTTLE: u32 = 0o040;
const STAT_EXPIRE: u32 = 0o010;
/// DEL_REQ_FLAG_MTA_VRFY | USR_VRFY | RECORD | REC_DLY_SENT.
const TRACE_FLAGS_MASK: u32 = flags::MTA_VRFY | flags::USR_VRFY | flags::RECORD | REC_DLY_SENT;
/// The prefix of a throttled destination's reason (qmgr_deliver.c).
const SUSPENDED: &str = "delivery temporarily suspended: ";

/// Rewrite the `W` record at `offset` as sent (-1): no further warnings
/// (qmgr_message_update_warn).
fn update_warn(path: &str, offset: i64) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::File::options().write(true).open(path)?;
    f.seek(SeekFrom::Start(offset as u64))?;
    let mut rec = Vec::new();
    crate::global::record::rec_put_warn(&mut rec, -1)?;
    f.write_all(&rec)?;
    f.sync_data()
}

/// One delivery job: some recipients of one message for one destination.
struct Entry {
    id: String,
    transport: String,
    nexthop: String,
    rcpt: Vec<Recipient>,
}

/// Where a recipient goes.
struct Route {
    transport: String,
    nexthop: String,
    qname: String,
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

/// What a delivery in flight carries: its entry and queue.
struct Delivery {
    entry: Entry,
    key: Key,
}

/// The queue manager's state.
pub struct Qmgr {
    cfg: QmgrConfig,
    conf: MailConf,
    qc: QueueConf,
    resolver: Option<TrivialRewrite>,
    logs: StatusLogs,
    msgs: HashMap<String, Msg>,
    todo: HashMap<Key, VecDeque<Entry>>,
    order: VecDeque<Key>,
    dests: HashMap<Key, Dest>,
    limits: HashMap<String, Limits>,
    transport_busy: HashMap<String, u32>,
    transport_dead: HashMap<String, (Instant, Dsn)>,
    in_flight: usize,
    /// incoming/, kept open between listings.
    incoming_dir: Option<(crate::sys::dir::Dir, Instant)>,
    /// Deliveries that ended, to be handled by the next round.
    ended: Vec<(Delivery, conns::Attempt)>,
    /// Written by a delivery thread after it sent its result: wakes the
    /// main loop's poll at once (an in-process self-pipe).
    scan_incoming: bool,
    scan_deferred: bool,
    scan_all: bool,
    next_deferred_scan: Instant,
    /// Files found by the last scans, not yet looked at: a few are moved
    /// to active/ per round, so that finished deliveries and dispatching
    /// are not held up behind a long directory (Postfix's qmgr also feeds
    /// one file per event-loop round).
    feed: VecDeque<Feed>,
    feed_ids: std::collections::HashSet<String>,
    /// Messages whose last delivery finished (or that needed none): the
    /// candidates for finish_messages, so that it does not walk every
    /// active message each round.
    done_ids: Vec<String>,
    /// The threads that run deliveries.
    /// Delivery agent connections waiting for another request.
    agents: conns::Agents<Delivery>,
}

/// A queue file to look at: queue, id, path, ignore its time stamp.
struct Feed {
    queue: &'static str,
    id: String,
    path: String,
    all: bool,
}

/// Files moved to active/ per round of the main loop.
const FEED_BATCH: usize = 8;

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

/// How long qmgr keeps incoming/ open between its listings (a directory
/// replaced meanwhile is picked up after this long at most).
const DIR_KEEP: Duration = Duration::from_secs(1);

/// List incoming/ (as [`queue_files`]) through a directory stream that is
/// kept open for [`DIR_KEEP`]: a listing costs a rewind and the reads.
fn incoming_files(
    cache: &mut Option<(crate::sys::dir::Dir, Instant)>,
    depth: usize,
    out: &mut Vec<(String, String)>,
) {
    use crate::sys::dir::{Dir, Kind};
    const DIR: &str = "incoming";
    match cache {
        Some((d, since)) if since.elapsed() < DIR_KEEP => d.rewind(),
        _ => match Dir::open(DIR) {
            Ok(d) => *cache = Some((d, Instant::now())),
            Err(_) => {
                *cache = None;
                return;
            }
        },
    }
    let Some((dir, _)) = cache.as_mut() else {
        return;
    };
    let mut names: Vec<(String, Kind)> = Vec::new();
    dir.each(|name, kind| {
        if let Ok(n) = std::str::from_utf8(name) {
            names.push((n.to_string(), kind));
        }
    });
    names.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, kind) in names {
        let path = format!("{DIR}/{name}");
        let kind = match kind {
            Kind::Unknown => match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_file() => Kind::File,
                Ok(m) if m.is_dir() => Kind::Dir,
                Ok(_) => Kind::Other,
                Err(_) => continue,
            },
            k => k,
        };
        if kind == Kind::Dir && depth > 0 && name.len() == 1 {
            queue_files(&path, depth - 1, out);
        } else if kind == Kind::File && crate::global::mail_queue::id_ok(&name) {
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

impl Qmgr {
    pub fn new(conf: &MailConf) -> Result<Qmgr, String> {
        Ok(Qmgr {
            cfg: QmgrConfig::from_conf(conf)?,
            conf: conf.clone(),
            qc: QueueConf::from_conf(conf).map_err(|e| e.0)?,
            resolver: None,
            logs: StatusLogs::from_conf(conf).map_err(|e| e.0)?,
            msgs: HashMap::new(),
            todo: HashMap::new(),
            order: VecDeque::new(),
            dests: HashMap::new(),
            limits: HashMap::new(),
            transport_busy: HashMap::new(),
            transport_dead: HashMap::new(),
            in_flight: 0,
            incoming_dir: None,
            ended: Vec::new(),
            scan_incoming: true,
            scan_deferred: true,
            scan_all: false,
            next_deferred_scan: Instant::now(),
            feed: VecDeque::new(),
            feed_ids: std::collections::HashSet::new(),
            done_ids: Vec::new(),
            agents: conns::Agents::new(),
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
                    for (key, d) in self.dests.iter_mut() {
                        if d.dead_until.is_some() {
                            let l = self.limits.get(&key.0).cloned().unwrap_or_default();
                            d.revive(&l);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Move ready files from incoming/ and deferred/ (alternately) into
    /// active/ and read them.
    fn scan(&mut self) {
        let mut inc = Vec::new();
        let mut def = Vec::new();
        if self.scan_incoming {
            incoming_files(&mut self.incoming_dir, self.qc.hash_depth, &mut inc);
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
            let a = inc.next().map(|x| ("incoming", x));
            let b = def.next().map(|x| ("deferred", x));
            if a.is_none() && b.is_none() {
                break;
            }
            for (queue, (id, path)) in [a, b].into_iter().flatten() {
                if self.feed_ids.insert(id.clone()) {
                    self.feed.push_back(Feed {
                        queue,
                        id,
                        path,
                        all,
                    });
                } else if all {
                    for f in self.feed.iter_mut().filter(|f| f.id == id) {
                        f.all = true;
                    }
                }
            }
        }
    }

    /// Move up to `n` of the files found by the scans into active/ and
    /// read them.
    fn feed_some(&mut self, n: usize) {
        let now_s = now().0;
        let mut done = 0;
        while done < n && self.msgs.len() < self.cfg.active_limit {
            let Some(Feed {
                queue,
                id,
                path,
                all,
            }) = self.feed.pop_front()
            else {
                break;
            };
            self.feed_ids.remove(&id);
            let Some((mtime, mode)) = mtime_secs(&path) else {
                continue;
            };
            // Only complete files (cleanup sets the owner x bit).
            if mode & 0o700 != 0o700 {
                continue;
            }
            // Files with time stamps in the future cool down.
            if !all && mtime > now_s + 1 {
                continue;
            }
            if self.msgs.contains_key(&id) {
                continue;
            }
            if let Err(e) = self.qc.rename(&id, queue, "active") {
                if e.kind() != std::io::ErrorKind::NotFound {
                    msg::fatal(&format!(
                        "qmgr_active_feed: {id}: rename from {queue} to active: {e}"
                    ));
                }
                msg::warn(&format!(
                    "qmgr_active_feed: {id}: rename from {queue} to active: {e}"
                ));
                continue;
            }
            self.activate(&id, mode);
            done += 1;
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

    fn notice_msg(m: &Msg) -> NoticeMessage<'_> {
        NoticeMessage {
            queue_name: &m.base.queue_name,
            queue_id: &m.base.queue_id,
            encoding: &m.base.encoding,
            smtputf8: m.base.smtputf8,
            sender: &m.base.sender,
            dsn_envid: &m.base.dsn_envid,
            dsn_ret: m.base.dsn_ret,
        }
    }

    /// Read a message that just entered active/, resolve its recipients and
    /// queue its deliveries (qmgr_message_alloc).
    fn activate(&mut self, id: &str, mode: u32) {
        let path = self.qc.path("active", id);
        // One pass over the file: the request, the SIZE fields, the
        // envelope's W record and trace flags.
        let (mut base, info) = match DeliveryRequest::from_queue_file_info(
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
        let sizes = &info.size_fields;
        let tflags = info.trace_flags & TRACE_FLAGS_MASK;
        let cont_length = match sizes.get(4) {
            Some(&n) if n > 0 => n,
            _ => base.data_size as i64,
        };
        base.stats.active_arrival = now();
        base.flags = tflags | DEL_REQ_FLAG_DEFLT;
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
        // The file is valid: clear the one-shot "unthrottle" mode bit.
        if mode & STAT_UNTHROTTLE != 0 {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(
                &path,
                std::fs::Permissions::from_mode(mode & 0o7777 & !STAT_UNTHROTTLE),
            );
        }
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
            warn_time: info.warn_time,
            warn_offset: info.warn_offset,
            tflags,
            notify_success: rcpts
                .iter()
                .any(|r| r.dsn_notify & crate::global::deliver_request::notify::SUCCESS != 0),
            force_expire: mode & STAT_EXPIRE != 0,
            flush_each: mode & STAT_UNTHROTTLE != 0,
        };
        // A forced expiry with a defer log: use that log, deliver nothing.
        let defer_log = self.qc.path("defer", id);
        if m.force_expire && std::fs::metadata(&defer_log).is_ok_and(|st| st.len() > 0) {
            m.defer_flag = true;
            self.msgs.insert(id.to_string(), m);
            self.done_ids.push(id.to_string());
            return;
        }
        // A new life in the active queue: forget the old deferral reasons.
        if let Err(e) = std::fs::remove_file(&defer_log)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            msg::fatal(&format!("qmgr_message_alloc: {id}: remove defer {id}: {e}"));
        }
        // Resolve and group, in Postfix's recipient order (qmgr_message_sort):
        // by transport and queue, then by domain, then by address.
        let mut rcpts = rcpts;
        rcpts.sort_by(|a, b| sched::rcpt_order(&a.address, &b.address));
        let mut groups: Vec<(Key, String, String, Vec<Recipient>)> = Vec::new();
        for r in rcpts {
            let Some(route) = self.route(&mut m, &r) else {
                continue;
            };
            let key = (route.transport.clone(), route.qname);
            match groups.iter_mut().find(|g| g.0 == key) {
                Some(g) => g.3.push(r),
                None => groups.push((key, route.transport, route.nexthop, vec![r])),
            }
        }
        groups.sort_by(|a, b| a.0.cmp(&b.0));
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
        if m.pending == 0 {
            self.done_ids.push(id.to_string());
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

    /// Whether a transport is throttled now (an expired throttle is lifted).
    fn transport_throttled(&mut self, transport: &str) -> Option<Dsn> {
        match self.transport_dead.get(transport) {
            Some((until, dsn)) if *until > Instant::now() => Some(dsn.clone()),
            Some(_) => {
                self.transport_dead.remove(transport);
                None
            }
            None => None,
        }
    }

    /// Whether a destination queue is throttled now, with its reason.
    fn queue_throttled(&mut self, key: &Key) -> Option<Dsn> {
        let l = self.limits(&key.0);
        let d = self.dests.get_mut(key)?;
        if !d.is_dead(&l, Instant::now()) {
            return None;
        }
        d.dead_reason
            .as_ref()
            .map(|(st, r)| Dsn::new(st, r.clone()))
    }

    /// The retry transport's queue for a deferral reason
    /// (qmgr_error_queue), or None when that transport or queue is itself
    /// throttled.
    fn retry_route(&mut self, dsn: &Dsn) -> Option<Route> {
        if self.transport_throttled("retry").is_some() {
            return None;
        }
        let nexthop = format!("{} {}", dsn.status, dsn.reason);
        let key = ("retry".to_string(), nexthop.to_ascii_lowercase());
        if self.queue_throttled(&key).is_some() {
            return None;
        }
        Some(Route {
            transport: key.0,
            nexthop,
            qname: key.1,
        })
    }

    /// Where a recipient goes (qmgr_message_resolve), or None when qmgr
    /// finished it here (deferred or discarded).
    fn route(&mut self, m: &mut Msg, r: &Recipient) -> Option<Route> {
        if self.resolver.is_none() {
            match TrivialRewrite::new(&self.conf) {
                Ok(t) => self.resolver = Some(t),
                Err(e) => msg::fatal(&e.0),
            }
        }
        let Some(res) = self.resolver.as_mut() else {
            unreachable!()
        };
        let rep = res.resolve(Personality::Regular, &m.base.sender, &r.address);
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
        let redirected = rep.flags & (tr::FLAG_FAIL | tr::FLAG_ERROR) != 0;
        if r.address.is_empty() {
            transport = "error".into();
            nexthop = "5.1.3 null recipient address".into();
        }
        if m.force_expire {
            transport = "retry".into();
            nexthop = "4.7.0 message is administratively expired".into();
        }
        // Mail to the local double-bounce address is discarded here.
        if !redirected && rep.flags & tr::CLASS_LOCAL != 0 {
            let local = rep
                .recipient
                .rsplit_once('@')
                .map(|(l, _)| l)
                .unwrap_or(&rep.recipient);
            if local.eq_ignore_ascii_case(&self.cfg.double_bounce) {
                let dsn = DsnInfo::new(
                    "2.0.0",
                    "",
                    "undeliverable postmaster notification discarded",
                );
                let a = self.logs.sent(m.tflags, &m.base.queue_id, r, "none", &dsn);
                self.log_status(m, r, &a);
                if a.status == 0 {
                    if let Ok(mut f) = std::fs::File::options()
                        .read(true)
                        .write(true)
                        .open(self.qc.path("active", &m.base.queue_id))
                    {
                        let _ = deliver_proto::mark_done(&mut f, r.offset);
                    }
                } else {
                    m.defer_flag = true;
                }
                return None;
            }
        }
        if !m.flush_each && self.cfg.defer_transports.contains(&transport) {
            transport = "retry".into();
            nexthop = "4.3.2 deferred transport".into();
        }
        if m.flush_each {
            self.transport_dead.remove(&transport);
        }
        if let Some(dsn) = self.transport_throttled(&transport) {
            match self.retry_route(&dsn) {
                Some(route) => return Some(route),
                None => {
                    self.defer_rcpt(m, r, &dsn);
                    return None;
                }
            }
        }
        let l = self.limits(&transport);
        let qname = if transport != "error" && transport != "retry" && l.recipient_limit == 1 {
            // One queue per recipient local part, as Postfix does.
            let mut local = rep
                .recipient
                .rsplit_once('@')
                .map(|(l, _)| l)
                .unwrap_or(&rep.recipient)
                .to_string();
            let delim = self
                .conf
                .get_str("recipient_delimiter", 0, 0)
                .unwrap_or_default();
            if !delim.is_empty()
                && let Some(p) = local.find(|c: char| delim.contains(c))
                && p > 0
            {
                local.truncate(p);
            }
            format!("{}@{}", local, nexthop).to_ascii_lowercase()
        } else {
            nexthop.to_ascii_lowercase()
        };
        let key = (transport.clone(), qname.clone());
        if m.flush_each
            && let Some(d) = self.dests.get_mut(&key)
            && d.dead_until.is_some()
        {
            d.revive(&l);
        }
        if let Some(dsn) = self.queue_throttled(&key) {
            return match self.retry_route(&dsn) {
                Some(route) => Some(route),
                None => {
                    self.defer_rcpt(m, r, &dsn);
                    None
                }
            };
        }
        Some(Route {
            transport,
            nexthop,
            qname,
        })
    }

    /// Log a recipient status that qmgr itself decided (relay=none).
    fn log_status(&self, m: &Msg, r: &Recipient, a: &crate::daemons::bounce::client::Appended) {
        if let Some(word) = &a.log_status {
            msg::info(&log_line(
                &m.base.queue_id,
                &m.base.stats,
                r,
                "none",
                &Dsn::new(&a.dsn.status, a.dsn.reason.clone()),
                word,
                now(),
                self.cfg.max_res,
            ));
        }
    }

    /// qmgr_defer_recipient: the defer log through the bounce client,
    /// and the `status=deferred` line with `relay=none`.
    fn defer_rcpt(&self, m: &mut Msg, r: &Recipient, dsn: &Dsn) {
        let info = DsnInfo::new(&dsn.status, "", &dsn.reason);
        let a = self
            .logs
            .defer_append(m.tflags, &m.base.queue_id, r, "none", &info);
        self.log_status(m, r, &a);
        m.defer_flag = true;
    }

    fn defer_rcpts(&mut self, id: &str, rcpts: &[Recipient], dsn: &Dsn) {
        let Some(mut m) = self.msgs.remove(id) else {
            return;
        };
        for r in rcpts {
            self.defer_rcpt(&mut m, r, dsn);
        }
        self.msgs.insert(id.to_string(), m);
    }

    /// Start the deliveries the windows allow.
    fn dispatch(&mut self) {
        let now_i = Instant::now();
        let keys: Vec<Key> = self.order.iter().cloned().collect();
        for key in keys {
            let transport = key.0.clone();
            let l = self.limits(&transport);
            if let Some(dsn) = self.transport_throttled(&transport) {
                self.defer_todo(&key, &dsn);
                continue;
            }
            if let Some(dsn) = self.queue_throttled(&key) {
                self.defer_todo(&key, &dsn);
                continue;
            }
            loop {
                if self.todo.get(&key).is_none_or(|q| q.is_empty()) {
                    break;
                }
                let dest = self
                    .dests
                    .entry(key.clone())
                    .or_insert_with(|| Dest::new(&l));
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

    /// qmgr_defer_todo: what waits for a throttled destination goes to
    /// the retry transport with the reason, or is deferred here when that
    /// is throttled too.
    fn defer_todo(&mut self, key: &Key, dsn: &Dsn) {
        let entries: Vec<Entry> = self
            .todo
            .get_mut(key)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default();
        if entries.is_empty() {
            return;
        }
        match self.retry_route(dsn) {
            Some(route) if route.transport != key.0 || route.qname != key.1 => {
                let rkey = (route.transport.clone(), route.qname.clone());
                for mut e in entries {
                    e.transport = route.transport.clone();
                    e.nexthop = route.nexthop.clone();
                    self.enqueue(rkey.clone(), e);
                }
            }
            _ => {
                for e in entries {
                    self.defer_rcpts(&e.id, &e.rcpt, dsn);
                    self.entry_done(&e.id);
                }
            }
        }
    }

    /// qmgr_defer_transport: every destination of a throttled transport.
    fn defer_transport(&mut self, transport: &str, dsn: &Dsn) {
        let keys: Vec<Key> = self
            .todo
            .keys()
            .filter(|k| k.0 == transport)
            .cloned()
            .collect();
        for k in keys {
            self.defer_todo(&k, dsn);
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
        self.in_flight += 1;
        let path = format!("private/{}", e.transport);
        // An attempt that ended at once is handled by the next round (as
        // one that ends later), never inside this dispatch.
        if let Some(ended) = self.agents.start(&path, &req, Delivery { entry: e, key }) {
            self.ended.push(ended);
        }
    }

    fn entry_done(&mut self, id: &str) {
        if let Some(m) = self.msgs.get_mut(id) {
            m.pending = m.pending.saturating_sub(1);
            if m.pending == 0 {
                self.done_ids.push(id.to_string());
            }
        }
    }

    /// Throttle a destination after a site-level failure; what waits
    /// for it is then deferred.
    fn throttle_queue(&mut self, key: &Key, status: &str, reason: &str) {
        let l = self.limits(&key.0);
        let retry = Duration::from_secs(self.cfg.min_backoff.max(1) as u64);
        let dead = match self.dests.get_mut(key) {
            Some(d) => d.throttle(&l, Instant::now(), retry, status, reason),
            None => false,
        };
        if dead {
            self.defer_todo(key, &Dsn::new(status, reason.to_string()));
        }
    }

    fn finished(&mut self, f: Finished) {
        self.in_flight -= 1;
        let transport = f.entry.transport.clone();
        if let Some(b) = self.transport_busy.get_mut(&transport) {
            *b = b.saturating_sub(1);
        }
        let l = self.limits(&transport);
        if let Some(d) = self.dests.get_mut(&f.key) {
            d.release();
        }
        match f.result {
            Done::Reply(r) => {
                if r.status != deliver_proto::DEL_STAT_FINAL
                    && let Some(m) = self.msgs.get_mut(&f.entry.id)
                {
                    m.defer_flag = true;
                }
                // A site-level failure: the agent deferred with a hop
                // status. (Our agents answer "final" when their deferrals
                // are logged, so a 4.x.x hop status counts as well.)
                if !r.hop.status.is_empty()
                    && (r.status != deliver_proto::DEL_STAT_FINAL || r.hop.status.starts_with('4'))
                {
                    let status = if crate::global::pipe_command::dsn_valid(&r.hop.status) > 0 {
                        r.hop.status.clone()
                    } else {
                        "4.0.0".to_string()
                    };
                    let reason = if r.hop.reason.is_empty() {
                        "unknown error"
                    } else {
                        &r.hop.reason
                    };
                    self.throttle_queue(&f.key, &status, &format!("{SUSPENDED}{reason}"));
                }
                self.transport_dead.remove(&transport);
                if r.hop.reason.is_empty()
                    && let Some(d) = self.dests.get_mut(&f.key)
                {
                    d.success(&l);
                }
            }
            Done::Unavailable(text) => {
                // The agent was never reached: these recipients wait with
                // the others of the transport.
                msg::warn(&text);
                let dsn = Dsn::new("4.3.0", "mail transport unavailable");
                let until = Instant::now() + Duration::from_secs(self.cfg.transport_retry as u64);
                self.transport_dead
                    .entry(transport.clone())
                    .or_insert((until, dsn.clone()));
                let key = f.key.clone();
                self.todo
                    .entry(key.clone())
                    .or_default()
                    .push_front(f.entry);
                if !self.order.contains(&key) {
                    self.order.push_back(key);
                }
                self.defer_transport(&transport, &dsn);
                return;
            }
            Done::Broken(text) => {
                msg::warn(&format!("private/{transport} socket: malformed response"));
                if msg::verbose() > 0 {
                    msg::info(&text);
                }
                if let Some(m) = self.msgs.get_mut(&f.entry.id) {
                    m.defer_flag = true;
                }
                self.throttle_queue(
                    &f.key,
                    "4.3.0",
                    &format!("{SUSPENDED}unknown mail transport error"),
                );
            }
        }
        self.entry_done(&f.entry.id);
    }

    /// Messages with nothing left to do: bounce, defer or remove.
    fn finish_messages(&mut self) {
        let done = std::mem::take(&mut self.done_ids);
        for id in done {
            if self.msgs.get(&id).is_some_and(|m| m.pending == 0)
                && let Some(m) = self.msgs.remove(&id)
            {
                self.active_done(m);
            }
        }
    }

    /// Ask a notice service; a failure to reach it counts as a failed
    /// request (the message stays queued).
    fn notice(&mut self, service: &str, what: NoticeRequest, m: &Msg) -> i32 {
        match notice_request(
            service,
            what,
            0,
            &Self::notice_msg(m),
            Duration::from_secs(300),
        ) {
            Ok(st) => {
                // The notice is in incoming/ now: the bounce service posts
                // it through an in-process cleanup, which does not wake us
                // as Postfix's cleanup does.
                self.scan_incoming = true;
                st
            }
            Err(e) => {
                msg::warn(&format!("connect to transport private/{service}: {e}"));
                -1
            }
        }
    }

    /// qmgr_active_done: the sender's notices, then remove the file or
    /// put it in deferred/ until its next attempt.
    fn active_done(&mut self, mut m: Msg) {
        let id = m.base.queue_id.clone();
        let bounce_path = self.qc.path("bounce", &id);
        if let Ok(md) = std::fs::metadata(&bounce_path) {
            if md.len() == 0 {
                if let Err(e) = std::fs::remove_file(&bounce_path) {
                    msg::fatal(&format!("remove bounce {id}: {e}"));
                }
            } else if self.notice(&self.cfg.bounce_service.clone(), NoticeRequest::Flush, &m) != 0 {
                m.defer_flag = true;
            }
        }
        // Recipients deferred in this pass are known without looking at the
        // defer log (as Postfix's qmgr_active_done): an agent that deferred
        // one answers "deferred", a broken conversation and qmgr's own
        // deferrals set the flag, and activation removed any older log.
        let active = self.qc.path("active", &id);
        if m.defer_flag && mtime_secs(&active).is_none_or(|(_, mode)| mode & 0o700 != 0o700) {
            self.corrupt(&id);
            return;
        }
        if (m.tflags & (flags::USR_VRFY | flags::RECORD | REC_DLY_SENT) != 0 || m.notify_success)
            && self.notice(&self.cfg.trace_service.clone(), NoticeRequest::Trace, &m) != 0
        {
            m.defer_flag = true;
        }
        let now_s = now().0;
        if m.defer_flag {
            let expire = if m.force_expire {
                Some("force-expired")
            } else if sched::expired(
                now_s - m.create_time,
                m.base.sender.is_empty(),
                self.cfg.max_queue_life,
                self.cfg.bounce_queue_life,
            ) {
                Some("expired")
            } else {
                None
            };
            if let Some(word) = expire {
                msg::info(&format!(
                    "{id}: from=<{}>, status={word}, returned to sender",
                    m.base.sender
                ));
                m.defer_flag =
                    self.notice(&self.cfg.defer_service.clone(), NoticeRequest::Flush, &m) != 0;
            } else if m.warn_time > 0
                && now_s >= m.warn_time - 1
                && self.notice(&self.cfg.defer_service.clone(), NoticeRequest::Warn, &m) == 0
                && let Err(e) = update_warn(&active, m.warn_offset)
            {
                msg::fatal(&format!("update queue file {active}: {e}"));
            }
        }
        if m.defer_flag {
            let delay = sched::backoff(
                now_s - m.create_time,
                self.cfg.min_backoff,
                self.cfg.max_backoff,
            );
            set_times(&active, now_s + delay);
            if let Err(e) = self.qc.rename(&id, "active", "deferred") {
                if e.kind() != std::io::ErrorKind::NotFound {
                    msg::fatal(&format!(
                        "qmgr_active_defer: rename {id} from active to deferred: {e}"
                    ));
                }
                msg::warn(&format!(
                    "qmgr_active_defer: rename {id} from active to deferred: {e}"
                ));
            }
        } else {
            match std::fs::remove_file(&active) {
                Ok(()) => msg::info(&format!("{id}: removed")),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => msg::warn(&format!(
                    "qmgr_active_done_3_generic: remove {id} from active: {e}"
                )),
                Err(e) => msg::fatal(&format!(
                    "qmgr_active_done_3_generic: remove {id} from active: {e}"
                )),
            }
        }
    }

    /// One round of work: collect finished deliveries, scan, dispatch,
    /// retire messages. Returns how long to wait at most.
    pub fn run_once(&mut self) -> Option<Duration> {
        let mut freed = false;
        for (d, attempt) in std::mem::take(&mut self.ended) {
            let result = match attempt {
                conns::Attempt::Reply(r) => Done::Reply(r),
                conns::Attempt::Unavailable(t) => Done::Unavailable(t),
                conns::Attempt::Broken(t) => Done::Broken(t),
            };
            self.finished(Finished {
                entry: d.entry,
                key: d.key,
                result,
            });
            freed = true;
        }
        if freed {
            // Refill the freed delivery slots before reading more files.
            self.dispatch();
        }
        // A new scan only once the files of the last one are taken in:
        // triggers that arrive meanwhile are remembered (as Postfix's
        // qmgr restarts a scan only after it completed), so that a backlog
        // in incoming/ is listed once, not once per arriving message.
        if self.feed.is_empty()
            && (self.scan_incoming
                || self.scan_deferred
                || Instant::now() >= self.next_deferred_scan)
        {
            self.scan();
        }
        self.feed_some(FEED_BATCH);
        self.dispatch();
        self.finish_messages();
        if !self.ended.is_empty()
            || (!self.feed.is_empty() && self.msgs.len() < self.cfg.active_limit)
        {
            // More files to take in: come back at once.
            return Some(Duration::ZERO);
        }
        // Agent answers end the wait through the polled connections.
        let mut wait = self
            .next_deferred_scan
            .saturating_duration_since(Instant::now());
        let now_i = Instant::now();
        for d in self.dests.values() {
            for t in [d.dead_until, d.next_start].into_iter().flatten() {
                wait = wait.min(t.saturating_duration_since(now_i));
            }
        }
        for (until, _) in self.transport_dead.values() {
            wait = wait.min(until.saturating_duration_since(now_i));
        }
        if !self.order.is_empty() {
            wait = wait.min(Duration::from_secs(1));
        }
        // Unused agent connections are closed when due, and agents that
        // do not answer in time are given up.
        let mut ended = std::mem::take(&mut self.ended);
        if let Some(due) = self.agents.expire(&mut ended) {
            wait = wait.min(due);
        }
        self.ended = ended;
        if !self.ended.is_empty() {
            return Some(Duration::ZERO);
        }
        Some(wait.max(Duration::from_millis(10)))
    }

    /// The agent connections the main loop polls.
    pub fn poll_fds(&self, out: &mut Vec<(std::os::fd::RawFd, i16)>) {
        self.agents.poll_fds(out);
    }

    /// Handle the agent connections that poll reported ready.
    pub fn poll_ready(&mut self, ready: &[(std::os::fd::RawFd, i16)]) {
        let mut ended = std::mem::take(&mut self.ended);
        for &(fd, _) in ready {
            self.agents.ready(fd, &mut ended);
        }
        self.ended = ended;
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
    fn poll_fds(&self, out: &mut Vec<(std::os::fd::RawFd, i16)>) {
        if let Some(q) = &self.q {
            q.poll_fds(out);
        }
    }
    fn poll_ready(&mut self, ready: &[(std::os::fd::RawFd, i16)], s: &Server) {
        self.q(s).poll_ready(ready);
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
