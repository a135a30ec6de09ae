//! The `trivial-rewrite` program: Postfix's attribute protocol (the
//! attr_print0 encoding, `name\0value\0` pairs ending with a lone `\0`) on
//! the `rewrite` service socket, and with `-S` on stdin/stdout for one
//! request (Postfix's stand-alone mode, which the differential tests use).
//!
//! Requests, as Postfix's rewrite_clnt and resolve_clnt send them:
//! - `request=rewrite rule=local|remote address=ADDR` → `flags=0 address=RESULT`
//! - `request=resolve|verify sender=S address=ADDR` → `flags=0 transport=T
//!   nexthop=H recipient=R flags=F`
//!
//! On connect the server announces `protocol=trivial_rewrite_protocol`.

use super::{Personality, RewriteContext, TrivialRewrite};
use crate::global::mail_conf::MailConf;
use crate::global::{maillog, msg};
use crate::master::server::{self, Conn, Server};
use crate::util::latin1;
use std::cell::RefCell;
use std::ffi::OsString;
use std::io::{Read, Write};

/// The most bytes one request may hold.
const MAX_REQUEST: usize = 100 * 1024;

/// One attribute group: its name/value pairs in order.
pub type Attrs = Vec<(String, String)>;

/// Why a group could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// End of input before a group started.
    Eof,
    /// End of input inside a group, or a group over the size limit.
    Broken,
}

/// Read one attribute group from a byte stream.
pub fn read_group(r: &mut impl Read) -> Result<Attrs, ReadError> {
    let mut attrs = Vec::new();
    let mut field = Vec::new();
    let mut name: Option<String> = None;
    let mut total = 0usize;
    let mut byte = [0u8; 1];
    loop {
        match r.read(&mut byte) {
            Ok(0) | Err(_) => {
                return Err(if total == 0 {
                    ReadError::Eof
                } else {
                    ReadError::Broken
                });
            }
            Ok(_) => {}
        }
        total += 1;
        if total > MAX_REQUEST {
            return Err(ReadError::Broken);
        }
        if byte[0] != 0 {
            field.push(byte[0]);
            continue;
        }
        let text = latin1::decode(&field);
        field.clear();
        match name.take() {
            None if text.is_empty() => return Ok(attrs),
            None => name = Some(text),
            Some(n) => attrs.push((n, text)),
        }
    }
}

/// Encode one attribute group.
pub fn write_group(attrs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in attrs {
        out.extend_from_slice(&latin1::encode(n));
        out.push(0);
        out.extend_from_slice(&latin1::encode(v));
        out.push(0);
    }
    out.push(0);
    out
}

/// Answer one request group; `None` means the connection should be closed
/// (a malformed request, logged as Postfix logs it).
pub fn handle(tr: &mut TrivialRewrite, attrs: &Attrs) -> Option<Vec<u8>> {
    let get = |i: usize, name: &str| -> Option<&str> {
        attrs
            .get(i)
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let command = get(0, "request")?;
    match command {
        "rewrite" => {
            let (Some(rule), Some(addr), 3) = (get(1, "rule"), get(2, "address"), attrs.len())
            else {
                return None;
            };
            let Some(ctx) = RewriteContext::from_name(rule) else {
                msg::warn(&format!("unknown context: {rule}"));
                return None;
            };
            let result = tr.rewrite(ctx, addr);
            if msg::verbose() > 0 {
                msg::info(&format!("`{rule}' `{addr}' -> `{result}'"));
            }
            Some(write_group(&[("flags", "0"), ("address", &result)]))
        }
        "resolve" | "verify" => {
            let (Some(sender), Some(addr), 3) = (get(1, "sender"), get(2, "address"), attrs.len())
            else {
                return None;
            };
            let p = if command == "resolve" {
                Personality::Regular
            } else {
                Personality::Verify
            };
            let r = tr.resolve(p, sender, addr);
            if msg::verbose() > 0 {
                msg::info(&format!(
                    "`{sender}' -> `{addr}' -> (`{}' `{}' `{}' `{}')",
                    r.transport, r.nexthop, r.recipient, r.flags
                ));
            }
            Some(write_group(&[
                ("flags", "0"),
                ("transport", &r.transport),
                ("nexthop", &r.nexthop),
                ("recipient", &r.recipient),
                ("flags", &r.flags.to_string()),
            ]))
        }
        other => {
            let shown: String = other.chars().take(30).collect();
            msg::warn(&format!("bad command {}", msg::printable(&shown, false)));
            None
        }
    }
}

thread_local! {
    static ENGINE: RefCell<Option<TrivialRewrite>> = const { RefCell::new(None) };
}

fn engine_init(conf: &MailConf) {
    msg::set_utf8_enable(conf.get_bool("smtputf8_enable").unwrap_or(false));
    crate::global::maps::set_allow_surrogate(true);
    match TrivialRewrite::new(conf) {
        Ok(tr) => ENGINE.with(|e| *e.borrow_mut() = Some(tr)),
        Err(e) => msg::fatal(&e.0),
    }
}

fn serve(conn: &mut Conn, _s: &Server) {
    let hello = write_group(&[("protocol", "trivial_rewrite_protocol")]);
    if conn.write_all(&hello).is_err() {
        return;
    }
    ENGINE.with(|e| {
        let mut guard = e.borrow_mut();
        let Some(tr) = guard.as_mut() else {
            return;
        };
        let mut reader = std::io::BufReader::new(ConnReader(conn));
        loop {
            let Ok(attrs) = read_group(&mut reader) else {
                return;
            };
            let Some(reply) = handle(tr, &attrs) else {
                return;
            };
            if reader.get_mut().0.write_all(&reply).is_err() {
                msg::warn("write resolver reply: broken pipe");
                return;
            }
        }
    });
}

struct ConnReader<'a>(&'a mut Conn);

impl Read for ConnReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

/// Entry point.
pub fn main(args: Vec<OsString>) -> i32 {
    let argv: Vec<String> = args.iter().map(|a| latin1::from_os(a)).collect();
    let progname = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_else(|| "trivial-rewrite".into());
    let Ok(opts) = server::parse_options(&argv, &progname) else {
        return server::single_server_init(args, Some(engine_init), serve);
    };
    if !opts.stream {
        return server::single_server_init(args, Some(engine_init), serve);
    }
    // Stand-alone mode: one request on stdin, the reply on stdout.
    msg::init(&progname);
    msg::set_stderr(argv.iter().any(|a| a == "-V"));
    for _ in 0..opts.verbose {
        msg::more_verbose();
    }
    let mut conf = MailConf::read(None).unwrap_or_else(|e| msg::fatal(&e.0));
    for (n, v) in &opts.overrides {
        conf.set(n, v);
    }
    let tag = maillog::mail_task(Some(&conf), &progname);
    if let Err(e) = maillog::init(&tag, &conf) {
        msg::fatal(&e);
    }
    msg::init(&tag);
    if let Some(a) = opts.args.first() {
        msg::fatal(&format!("unexpected command-line argument: {a}"));
    }
    let queue_dir = conf
        .lookup_eval("queue_directory")
        .ok()
        .flatten()
        .unwrap_or_default();
    if let Err(e) = std::env::set_current_dir(latin1::to_path(&queue_dir)) {
        msg::fatal(&format!(
            "chdir(\"{queue_dir}\"): {}",
            crate::global::config_file::errno_text(&e)
        ));
    }
    msg::set_utf8_enable(conf.get_bool("smtputf8_enable").unwrap_or(false));
    crate::global::maps::set_allow_surrogate(true);
    let mut tr = TrivialRewrite::new(&conf).unwrap_or_else(|e| msg::fatal(&e.0));
    let mut stdin = std::io::BufReader::new(std::io::stdin().lock());
    if let Ok(attrs) = read_group(&mut stdin)
        && let Some(reply) = handle(&mut tr, &attrs)
    {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&reply);
        let _ = out.flush();
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_groups() {
        let data = b"request\0rewrite\0rule\0local\0address\0a@b\0\0rest";
        let mut r = &data[..];
        let g = read_group(&mut r).unwrap();
        assert_eq!(
            g,
            [
                ("request".to_string(), "rewrite".to_string()),
                ("rule".into(), "local".into()),
                ("address".into(), "a@b".into())
            ]
        );
        assert_eq!(r, b"rest");
        assert_eq!(read_group(&mut &b""[..]), Err(ReadError::Eof));
        assert_eq!(read_group(&mut &b"a\0b"[..]), Err(ReadError::Broken));
        assert_eq!(
            write_group(&[("flags", "0"), ("address", "x")]),
            b"flags\x000\x00address\x00x\x00\x00"
        );
    }
}

#[cfg(test)]
mod socket_tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    // The service side of a connection: the protocol announcement, then
    // any number of requests until the client closes; a bad request ends
    // the connection.
    #[test]
    fn serves_a_connection() {
        let (client, server_end) = UnixStream::pair().unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let t = std::thread::spawn(move || {
            let conf = MailConf::from_text(
                "/nonexistent",
                "myhostname = host.example.com\nmydomain = example.com\n\
                 inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n\
                 compatibility_level = 3.6\n",
            );
            engine_init(&conf);
            let s = Server {
                options: server::Options::default(),
                conf,
                progname: "trivial-rewrite".into(),
                listen_fds: Vec::new(),
            };
            let mut conn = Conn::Unix(server_end);
            serve(&mut conn, &s);
        });
        let mut c = client;
        let hello = read_group(&mut c).unwrap();
        assert_eq!(
            hello,
            [(
                "protocol".to_string(),
                "trivial_rewrite_protocol".to_string()
            )]
        );
        c.write_all(&write_group(&[
            ("request", "rewrite"),
            ("rule", "local"),
            ("address", "user"),
        ]))
        .unwrap();
        let r = read_group(&mut c).unwrap();
        assert_eq!(r[1], ("address".into(), "user@host.example.com".into()));
        c.write_all(&write_group(&[
            ("request", "resolve"),
            ("sender", ""),
            ("address", "user@remote.example"),
        ]))
        .unwrap();
        let r = read_group(&mut c).unwrap();
        let v: Vec<&str> = r.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(
            v,
            ["0", "smtp", "remote.example", "user@remote.example", "4096"]
        );
        // An unknown request closes the connection.
        c.write_all(&write_group(&[("request", "bogus")])).unwrap();
        assert_eq!(read_group(&mut c), Err(ReadError::Eof));
        t.join().unwrap();
    }
}
