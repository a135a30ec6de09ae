//! Replaces showq(8) of Postfix 3.7: the service behind `public/showq`
//! that lists the mail queue for postqueue/mailq.
//!
//! Protocol (attr_print0, as in Postfix): the announcement
//! `protocol=mail_queue_list_protocol` with its terminator, then per
//! message the attributes queue_name, queue_id, time, size, forced_expire,
//! sender and (recipient, reason) pairs without terminators, the message
//! ended by a lone terminator, and a final lone terminator. The same
//! stream serves `postqueue -p` and `postqueue -j`: the client formats.
//!
//! Trust: reads the queue files (trusted, written by cleanup). Privilege:
//! mail_owner (unprivileged), chrooted when master.cf says so.
//! Parameters: duplicate_filter_limit, empty_address_recipient,
//! smtputf8_enable, queue_directory, enable_long_queue_ids.

use crate::global::msg;
use crate::global::showq::{QueueEntry, ShowqConf, list_queue};
use crate::master::server::{Conn, Server};
use crate::util::latin1;
use std::io::Write;

fn put(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.extend_from_slice(&latin1::encode(value));
    out.push(0);
}

/// The protocol announcement.
pub fn announcement() -> Vec<u8> {
    let mut b = Vec::new();
    put(&mut b, "protocol", "mail_queue_list_protocol");
    b.push(0);
    b
}

/// One message as showq_report sends it.
pub fn encode_entry(e: &QueueEntry) -> Vec<u8> {
    let mut b = Vec::new();
    put(&mut b, "queue_name", &e.queue);
    put(&mut b, "queue_id", &e.id);
    put(&mut b, "time", &e.arrival_time.to_string());
    put(&mut b, "size", &e.size.to_string());
    put(
        &mut b,
        "forced_expire",
        if e.forced_expire { "1" } else { "0" },
    );
    put(&mut b, "sender", &e.sender);
    for (r, why) in &e.recipients {
        put(&mut b, "recipient", r);
        put(&mut b, "reason", why);
    }
    b.push(0);
    b
}

/// Stream the listing of the queue under the current directory.
pub fn serve(sc: &ShowqConf, w: &mut dyn Write) -> std::io::Result<()> {
    w.write_all(&announcement())?;
    let mut err: Option<std::io::Error> = None;
    let r = list_queue(sc, &mut |t| msg::warn(t), &mut |e| {
        if err.is_none()
            && let Err(x) = w.write_all(&encode_entry(&e))
        {
            err = Some(x);
        }
    });
    if let Err(e) = r {
        msg::fatal(&format!(
            "open directory: {}",
            crate::global::config_file::errno_text(&e)
        ));
    }
    if let Some(e) = err {
        return Err(e);
    }
    w.write_all(&[0])?;
    w.flush()
}

fn service(conn: &mut Conn, server: &Server) {
    if let Some(a) = server.options.args.first() {
        msg::fatal(&format!("unexpected command-line argument: {a}"));
    }
    let mut sc = ShowqConf::from_conf(&server.conf).unwrap_or_else(|e| msg::fatal(&e.0));
    // The server runs in the queue directory (possibly chrooted there).
    sc.queue.queue_directory = ".".into();
    let _ = serve(&sc, conn);
}

/// The daemon entry.
pub fn main(args: Vec<std::ffi::OsString>) -> i32 {
    crate::master::server::single_server(args, service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        let e = QueueEntry {
            queue: "deferred".into(),
            id: "ABC".into(),
            arrival_time: 5,
            size: 10,
            forced_expire: false,
            sender: "s@x".into(),
            recipients: vec![("r@y".into(), "why".into())],
        };
        let mut b = announcement();
        b.extend(encode_entry(&e));
        b.push(0);
        assert_eq!(
            b,
            b"protocol\0mail_queue_list_protocol\0\0queue_name\0deferred\0queue_id\0ABC\0time\x005\0size\x0010\0forced_expire\x000\0sender\0s@x\0recipient\0r@y\0reason\0why\0\0\0"
        );
    }
}
