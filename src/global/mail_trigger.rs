//! mail_trigger of Postfix 3.7: a one-byte wakeup request to a public
//! service, whether it listens on a FIFO or a UNIX socket (the queue
//! manager after a new queue file, pickup after postdrop).

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};

/// The wakeup request.
pub const WAKEUP: &[u8] = b"W";

/// Send `data` to the trigger at `path` (relative to the queue directory,
/// e.g. `public/qmgr`). Best effort, never blocks: a service that is not
/// running picks the work up on its own timer.
pub fn trigger(path: &str, data: &[u8]) {
    let Ok(m) = std::fs::metadata(path) else {
        return;
    };
    if m.file_type().is_fifo() {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            let _ = f.write_all(data);
        }
    } else if let Ok(mut c) = std::os::unix::net::UnixStream::connect(path) {
        let _ = c.set_write_timeout(Some(std::time::Duration::from_secs(1)));
        let _ = c.write_all(data);
    }
}

/// Wake the queue manager (`public/<queue_service_name>`).
pub fn wake_qmgr(conf: &crate::global::mail_conf::MailConf) {
    let svc = conf
        .get_str("queue_service_name", 1, 0)
        .unwrap_or_else(|_| "qmgr".into());
    trigger(&format!("public/{svc}"), WAKEUP);
}
