//! Replaces pickup(8) of Postfix 3.7: local mail pickup.
//!
//! pickup scans `maildrop/` for files that postdrop has finished (mode
//! 0700, a valid queue name), opens each without following links, and
//! feeds its records to cleanup (run in-process, DESIGN.md §2): the
//! envelope (only the record types Postfix allows there), a Received
//! header of its own (`Received: by $myhostname ($mail_name, from userid
//! N)` / `\tid QUEUEID; DATE`), the content, the extracted segment. The
//! maildrop file is removed only after cleanup reports the queue file
//! complete and fsynced, or when cleanup refused the message for good.
//! It logs `QUEUEID: uid=N from=<sender>` as Postfix does.
//!
//! Trusts: nothing in maildrop files (they are written by local users
//! through postdrop); records are limited to line_length_limit. A file
//! whose records are malformed is moved to `corrupt/` with Postfix's
//! warning, never half-queued (Postfix deletes it; see
//! compat/DIVERGENCES.md). Privilege: mail_owner.
//!
//! Parameters: queue_directory, content_filter, line_length_limit,
//! myhostname, mail_name, mail_owner, smtputf8_autodetect_classes, and
//! those of cleanup.

use crate::daemons::cleanup::{self, Bouncer, Cleanup, Outcome, flag, stat};
use crate::daemons::logsink::MailLog;
use crate::global::mail_conf::{ConfError, MailConf};
use crate::global::mail_date::mail_date;
use crate::global::mail_queue::{self, MAILDROP};
use crate::global::msg;
use crate::global::rec_type;
use crate::global::record::{self, QueueStream, Rec};
use crate::util::latin1;
use std::ffi::OsString;
use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

/// What to do with a maildrop file after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Queued (or refused for good): the maildrop file is removed.
    Remove(Option<Outcome>),
    /// Try again later.
    Keep,
    /// Malformed: moved to corrupt/.
    Corrupt,
}

/// pickup's settings plus the cleanup it feeds.
pub struct Pickup {
    pub cleanup: Cleanup,
    queue_directory: String,
    /// Where queue paths are resolved: queue_directory, or "." once the
    /// working directory is the queue (a master-run pickup, maybe chrooted).
    base: String,
    filter_xport: String,
    line_limit: i64,
    myhostname: String,
    mail_name: String,
    owner_uid: Option<u32>,
    autoutf8: bool,
}

struct Info {
    id: String,
    path: String,
    uid: u32,
    mode: u32,
    mtime: i64,
    sender: Option<String>,
}

impl Pickup {
    pub fn new(conf: &MailConf) -> Result<Pickup, ConfError> {
        let cleanup = Cleanup::new(conf)?;
        let owner = conf.get_str("mail_owner", 1, 0)?;
        Ok(Pickup {
            autoutf8: cleanup.cf.autoutf8_sendmail,
            cleanup,
            queue_directory: conf.get_str("queue_directory", 1, 0)?,
            base: conf.get_str("queue_directory", 1, 0)?,
            filter_xport: conf.get_str("content_filter", 0, 0)?,
            line_limit: conf.get_int("line_length_limit", 2, 0)?,
            myhostname: conf.get_str("myhostname", 1, 0)?,
            mail_name: conf.get_str("mail_name", 1, 0)?,
            owner_uid: crate::sys::ids::user_uid(&owner),
        })
    }

    fn abs(&self, rel: &str) -> PathBuf {
        latin1::to_path(&self.base).join(latin1::to_path(rel))
    }

    /// One service request: scan maildrop/ until a pass removes nothing.
    /// Returns the number of files handled.
    pub fn scan(&mut self, log: &mut MailLog, bouncer: &mut dyn Bouncer) -> usize {
        let mut total = 0;
        loop {
            let mut count = 0;
            let dir = self.abs(MAILDROP);
            let mut names: Vec<String> = match std::fs::read_dir(&dir) {
                Ok(rd) => rd
                    .filter_map(|e| e.ok())
                    .map(|e| latin1::from_os(&e.file_name()))
                    .collect(),
                Err(e) => {
                    log.warn(
                        "pickup",
                        &format!("open directory {MAILDROP}: {}", record::errtext(&e)),
                    );
                    return total;
                }
            };
            names.sort();
            for name in names {
                if !mail_queue::id_ok(&name) {
                    continue;
                }
                match self.pickup_one(&name, log, bouncer) {
                    Some(Disposition::Remove(_)) | Some(Disposition::Corrupt) => count += 1,
                    _ => {}
                }
            }
            total += count;
            if count == 0 {
                return total;
            }
        }
    }

    /// mail_open_ok + pickup_file + removal for one maildrop entry; None
    /// when the file is not ready (or gone).
    pub fn pickup_one(
        &mut self,
        name: &str,
        log: &mut MailLog,
        bouncer: &mut dyn Bouncer,
    ) -> Option<Disposition> {
        let path = format!("{MAILDROP}/{name}");
        let abs = self.abs(&path);
        let st = match std::fs::symlink_metadata(&abs) {
            Ok(m) => m,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log.warn("pickup", &format!("{path}: {}", record::errtext(&e)));
                }
                return None;
            }
        };
        if !st.file_type().is_file() {
            log.warn(
                "pickup",
                &format!("{path}: uid {}: not a regular file", st.uid()),
            );
            return None;
        }
        if st.mode() & 0o700 != mail_queue::STAT_READY {
            return None;
        }
        if st.nlink() > 1 {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            if st.ctime() < now - 60 {
                log.warn(
                    "pickup",
                    &format!("{path}: uid {}: file has {} links", st.uid(), st.nlink()),
                );
            }
        }
        let mut info = Info {
            id: String::new(),
            path: path.clone(),
            uid: st.uid(),
            mode: st.mode(),
            mtime: st.mtime(),
            sender: None,
        };
        let d = self.pickup_file(&mut info, &abs, log, bouncer);
        match &d {
            Disposition::Remove(_) => {
                if let Err(e) = std::fs::remove_file(&abs) {
                    log.warn("pickup", &format!("remove {path}: {}", record::errtext(&e)));
                    return Some(Disposition::Keep);
                }
            }
            Disposition::Corrupt => {
                let to = self.abs(&format!("{}/{name}", mail_queue::CORRUPT));
                if let Err(e) = std::fs::rename(&abs, &to) {
                    log.warn(
                        "pickup",
                        &format!(
                            "rename {path} to {}/{name}: {}",
                            mail_queue::CORRUPT,
                            record::errtext(&e)
                        ),
                    );
                    return Some(Disposition::Keep);
                }
                log.warn(
                    "pickup",
                    &format!(
                        "saving corrupt file \"{path}\" as \"{}/{name}\"",
                        mail_queue::CORRUPT
                    ),
                );
            }
            Disposition::Keep => {}
        }
        Some(d)
    }

    fn open_safe(abs: &PathBuf) -> Result<File, String> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
            .open(abs)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    "file is a symbolic link".to_string()
                } else {
                    record::errtext(&e)
                }
            })?;
        let m = f.metadata().map_err(|e| record::errtext(&e))?;
        if !m.file_type().is_file() {
            return Err("file is not a regular file".into());
        }
        if m.nlink() != 1 {
            return Err(format!("file has {} hard links", m.nlink()));
        }
        Ok(f)
    }

    fn pickup_file(
        &mut self,
        info: &mut Info,
        abs: &PathBuf,
        log: &mut MailLog,
        bouncer: &mut dyn Bouncer,
    ) -> Disposition {
        let file = match Self::open_safe(abs) {
            Ok(f) => f,
            Err(why) => {
                log.warn("pickup", &format!("open input file {}: {why}", info.path));
                return if why == record::errtext(&std::io::Error::from_raw_os_error(libc::EACCES)) {
                    log.warn("pickup", &format!(
                        "if this file was created by Postfix < 1.1, then you may have to chmod a+r {}/{}",
                        self.queue_directory, info.path
                    ));
                    Disposition::Keep
                } else {
                    Disposition::Remove(None)
                };
            }
        };
        let requeued = Some(info.uid) == self.owner_uid && info.mode & 0o004 == 0;
        let mut flags = flag::BOUNCE | flag::MASK_EXTERNAL;
        if requeued {
            flags &= !flag::MILTER;
        } else if self.autoutf8 {
            flags |= flag::AUTOUTF8;
        }
        let mut qf = QueueStream::new(file, &info.path);
        qf.collect_warnings();
        let filter = self.filter_xport.clone();
        let received1 = format!(
            "Received: by {} ({}, from userid {})",
            self.myhostname, self.mail_name, info.uid
        );
        let line_limit = self.line_limit;
        let mut clog = MailLog::capture();
        let mut session = match self.cleanup.open(&mut clog, flags) {
            Ok(s) => s,
            Err(e) => {
                // cleanup could not create a queue file: try again later.
                msg::warn(&format!("cleanup: {}", record::errtext(&e)));
                return Disposition::Keep;
            }
        };
        info.id = session.queue_id.clone();
        let mut feed = |s: &mut cleanup::Session, t: u8, d: &[u8]| {
            if s.out_ok() {
                s.record(t, d);
            }
        };

        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut early: Vec<(bool, String)> = Vec::new();
        if info.mtime > now + 2 * 3600 {
            early.push((
                true,
                format!(
                    "{}: message dated {} seconds into the future",
                    info.id,
                    info.mtime - now
                ),
            ));
            info.mtime = now;
        } else if info.mtime < now - 86400 {
            early.push((
                true,
                format!(
                    "{}: message has been queued for {} days",
                    info.id,
                    (now - info.mtime) / 86400
                ),
            ));
        }
        if !filter.is_empty() {
            feed(&mut session, rec_type::FILT, filter.as_bytes());
        }

        // The envelope segment.
        let mut ok = copy_segment(
            &mut qf,
            &mut session,
            info,
            rec_type::ENVELOPE,
            line_limit,
            &mut feed,
        );
        let mut pending: Vec<(bool, String)> = early;
        if ok.is_ok() && info.sender.is_none() {
            pending.push((
                true,
                format!("{}: uid={}: no envelope sender", info.id, info.uid),
            ));
            ok = Err(None);
        }
        if ok.is_ok() {
            let sender = info.sender.clone().unwrap_or_default();
            let line = if requeued {
                let name = info
                    .path
                    .rsplit('/')
                    .next()
                    .unwrap_or(&info.path)
                    .to_string();
                format!(
                    "{}: uid={} from=<{sender}> orig_id={name}",
                    info.id, info.uid
                )
            } else {
                format!("{}: uid={} from=<{sender}>", info.id, info.uid)
            };
            pending.push((false, line));
            feed(&mut session, rec_type::MESG, b"");
            feed(&mut session, rec_type::NORM, &latin1::encode(&received1));
            let received2 = format!("\tid {}; {}", info.id, mail_date(info.mtime));
            feed(&mut session, rec_type::NORM, &latin1::encode(&received2));
            ok = copy_segment(
                &mut qf,
                &mut session,
                info,
                rec_type::CONTENT,
                line_limit,
                &mut feed,
            );
        }
        if ok.is_ok() {
            feed(&mut session, rec_type::XTRA, b"");
            ok = copy_segment(
                &mut qf,
                &mut session,
                info,
                rec_type::EXTRACT,
                line_limit,
                &mut feed,
            );
        }
        // Log pickup's lines before cleanup's, as the two processes do.
        for w in qf.take_warnings() {
            pending.push((true, w));
        }
        match ok {
            Err(t) => {
                session.abort();
                drop(session);
                let cleanup_lines = clog.take();
                for (w, l) in pending {
                    if w {
                        log.warn("pickup", &l);
                    } else {
                        log.info("pickup", &l);
                    }
                }
                replay(log, cleanup_lines);
                if let Some(t) = t {
                    log.warn(
                        "pickup",
                        &format!("uid={}: unexpected or malformed record type {t}", info.uid),
                    );
                    return Disposition::Corrupt;
                }
                return Disposition::Remove(None);
            }
            Ok(()) => {
                feed(&mut session, rec_type::END, b"");
            }
        }
        let out = session.finish(bouncer);
        drop(session);
        let cleanup_lines = clog.take();
        for (w, l) in pending {
            if w {
                log.warn("pickup", &l);
            } else {
                log.info("pickup", &l);
            }
        }
        replay(log, cleanup_lines);
        if out.status != 0 {
            if out.reason.as_deref().unwrap_or("").is_empty() {
                log.warn(
                    "pickup",
                    &format!(
                        "{}: error writing {}: {}",
                        info.path,
                        info.id,
                        cleanup::strerror(out.status)
                    ),
                );
            }
            if out.status & (stat::BAD | stat::RCPT) != 0 {
                return Disposition::Remove(Some(out));
            }
            return Disposition::Keep;
        }
        Disposition::Remove(Some(out))
    }
}

fn replay(log: &mut MailLog, lines: Vec<crate::daemons::logsink::Line>) {
    for l in lines {
        log.info(&l.program, &l.text);
    }
}

/// copy_segment: forward records until the segment's end marker. Err(Some
/// type) for a malformed or unexpected record (type -1: end of file, -2:
/// malformed), Err(None) for other refusals.
fn copy_segment(
    qf: &mut QueueStream,
    s: &mut cleanup::Session,
    info: &mut Info,
    expected: &[u8],
    line_limit: i64,
    feed: &mut dyn FnMut(&mut cleanup::Session, u8, &[u8]),
) -> Result<(), Option<i32>> {
    let check_first = expected[0] == rec_type::CONTENT[0];
    let mut check_first = check_first;
    let mut time_seen = false;
    let mut buf = Vec::new();
    loop {
        let t = match record::rec_get(qf, &mut buf, line_limit) {
            Rec::Type(t) => t,
            Rec::Eof => return Err(Some(-1)),
            Rec::Error => return Err(Some(-2)),
        };
        if !rec_type::in_set(expected, t) {
            return Err(Some(t as i32));
        }
        if t == expected[0] {
            return Ok(());
        }
        if t == rec_type::FROM {
            if info.sender.is_none() {
                info.sender = Some(latin1::decode(record::c_str(&buf)));
            }
            if !time_seen {
                feed(s, rec_type::TIME, info.mtime.to_string().as_bytes());
            }
        }
        if t == rec_type::TIME {
            time_seen = true;
        }
        if expected[0] != rec_type::CONTENT[0] && (t == rec_type::FILT || t == rec_type::RDR) {
            continue;
        }
        if expected[0] == rec_type::EXTRACT[0] {
            if t == rec_type::RRTO || t == rec_type::ERTO {
                continue;
            }
            if t == rec_type::ATTR {
                let text = latin1::decode(record::c_str(&buf));
                let skip = match text.split_once('=') {
                    Some((n, _)) => !matches!(
                        n.trim(),
                        "envelope_id"
                            | "notify_flags"
                            | "dsn_orig_rcpt"
                            | "ret_flags"
                            | "create_time"
                    ),
                    None => false,
                };
                if skip {
                    continue;
                }
            }
        }
        if check_first && (t == rec_type::NORM || t == rec_type::CONT) {
            check_first = false;
            if matches!(buf.first(), Some(b' ') | Some(b'\t')) {
                feed(s, rec_type::NORM, b"");
            }
        }
        feed(s, t, &buf);
    }
}

/// The `pickup` program. Run by master (`pickup -l -t unix ...`), it is a
/// trigger server: every connection to public/pickup (master's wakeup
/// timer, postdrop) makes it scan maildrop/. By hand, `pickup [-c DIR]
/// [-v] [-w SECONDS]` serves one request (one scan) and exits; with `-w`
/// it scans again every SECONDS.
pub fn main(args: Vec<OsString>) -> i32 {
    // Started by master (it always passes the transport type): run on the
    // trigger-server skeleton.
    if args.iter().any(|a| a == "-t") {
        return master_main(args);
    }
    let args: Vec<String> = args.iter().map(|a| latin1::from_os(a)).collect();
    msg::init("pickup");
    let mut config_dir: Option<String> = None;
    let mut wakeup: Option<u64> = None;
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "-c" if i + 1 < args.len() => {
                config_dir = Some(args[i + 1].clone());
                i += 1;
            }
            "-w" if i + 1 < args.len() => {
                wakeup = args[i + 1].parse().ok();
                i += 1;
            }
            "-v" => msg::more_verbose(),
            a => msg::fatal(&format!("unexpected command-line argument: {a}")),
        }
        i += 1;
    }
    let conf = match MailConf::read(config_dir.as_deref()) {
        Ok(c) => c,
        Err(e) => msg::fatal(&e.0),
    };
    let mut p = match Pickup::new(&conf) {
        Ok(p) => p,
        Err(e) => msg::fatal(&e.0),
    };
    let syslog_name = conf
        .get_str("syslog_name", 1, 0)
        .unwrap_or_else(|_| "postfix".into());
    if let Err(e) = crate::global::maillog::init(&format!("{syslog_name}/pickup"), &conf) {
        msg::fatal(&e);
    }
    let mut log = MailLog::daemon(&syslog_name);
    // Mail that cleanup refuses is returned by the bounce code in-process.
    let mut bouncer =
        crate::daemons::bounce::CleanupBouncer::new(&conf, MailLog::daemon(&syslog_name))
            .unwrap_or_else(|e| msg::fatal(&e.0));
    loop {
        p.scan(&mut log, &mut bouncer);
        match wakeup {
            Some(s) => std::thread::sleep(std::time::Duration::from_secs(s.max(1))),
            None => return 0,
        }
    }
}

/// pickup as master runs it: a trigger service on public/pickup, woken by
/// master's timer and by postdrop; after queueing mail it wakes the queue
/// manager (mail_stream_finish's trigger).
struct MasterPickup {
    p: Option<(Pickup, MailLog)>,
    pending: bool,
}

impl crate::master::server::TriggerService for MasterPickup {
    fn trigger(&mut self, _data: &[u8], _s: &crate::master::server::Server) {
        self.pending = true;
    }
    fn tick(&mut self, s: &crate::master::server::Server) -> Option<std::time::Duration> {
        if !self.pending {
            return None;
        }
        self.pending = false;
        if self.p.is_none() {
            let p = Pickup::new(&s.conf).unwrap_or_else(|e| msg::fatal(&e.0));
            let name = s
                .conf
                .get_str("syslog_name", 1, 0)
                .unwrap_or_else(|_| "postfix".into());
            self.p = Some((p, MailLog::daemon(&name)));
        }
        if let Some((p, log)) = self.p.as_mut()
            && p.scan(log, &mut cleanup::NoBouncer) > 0
        {
            let svc = s
                .conf
                .get_str("queue_service_name", 1, 0)
                .unwrap_or_else(|_| "qmgr".into());
            crate::global::mail_trigger::trigger(
                &format!("public/{svc}"),
                crate::global::mail_trigger::WAKEUP,
            );
        }
        None
    }
}

fn master_main(args: Vec<OsString>) -> i32 {
    let mut svc = MasterPickup {
        p: None,
        pending: true,
    };
    crate::master::server::trigger_server(args, None, &mut svc)
}
