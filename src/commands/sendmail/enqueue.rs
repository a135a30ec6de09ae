//! sendmail's submission mode: write the message as a queue-file record
//! stream to `$command_directory/postdrop -r`, which makes the maildrop
//! file; the records are the ones Postfix's sendmail writes, in its order:
//!
//! `A envelope_id=` (-V), `A ret_flags=` (-R), `A rewrite_context=`,
//! `F` full name, `S` sender, `A encoding=` (-B), `A trace_flags=` (-bv,
//! -v), `V` VERP delimiters (-XV), per command-line recipient
//! [`A notify_flags=`] `R`, `M`, the message lines as `N` (complete line)
//! and `L` (line longer than line_length_limit, or a last line without a
//! newline) records, `X`, the -t recipients, `E`.
//!
//! The two programs talk Postfix's null-terminated attribute protocol:
//! postdrop first sends `protocol=postdrop_protocol` and `queue_id`, and at
//! the end `status` and `reason`.

use super::{fatal, flag};
use crate::global::mail_conf::MailConf;
use crate::global::mime_state::{self, HeaderClass, MimeSink, MimeState, Rec};
use crate::global::msg;
use crate::global::record::rec_put;
use crate::global::{attr0, tok822};
use crate::util::latin1;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    pub flags: u32,
    pub encoding: Option<String>,
    pub dsn_envid: Option<String>,
    pub dsn_ret: i32,
    pub dsn_notify: i32,
    pub rewrite_context: String,
    pub sender: Option<String>,
    pub full_name: Option<String>,
    pub verp_delims: Option<String>,
    pub recipients: Vec<String>,
}

/// cleanup_strerror: the text of the first status bit, in Postfix's order.
pub fn cleanup_strerror(status: u32) -> &'static str {
    const MAP: &[(u32, &str)] = &[
        (1 << 8, "service unavailable"),
        (1 << 7, "queue file write error"),
        (1 << 0, "internal protocol error"),
        (1 << 6, "no recipients specified"),
        (1 << 4, "too many hops"),
        (1 << 2, "message file too big"),
        (1 << 3, "message content rejected"),
        (1 << 1, "queue file write error"),
        (1 << 9, "service denied"),
        (1 << 16, "bare <LF> received"),
    ];
    if status == 0 {
        return "Success";
    }
    MAP.iter()
        .find(|(b, _)| status & b != 0)
        .map(|(_, t)| *t)
        .unwrap_or("unknown status")
}

/// The postdrop child and the two ends of its protocol.
struct Postdrop {
    child: Child,
    dst: Option<BufWriter<ChildStdin>>,
    src: BufReader<ChildStdout>,
}

impl Postdrop {
    /// A fatal error: let postdrop see the end of its input (it then
    /// removes its file), wait for it, and exit.
    fn die(&mut self, text: &str) -> ! {
        self.dst = None;
        let _ = self.child.wait();
        fatal(text)
    }
}

/// Postfix's clean_env(export_environment) for a child: only the listed
/// variables (or `name=value` settings) pass.
fn export_env(cmd: &mut Command, list: &str) {
    cmd.env_clear();
    for item in list
        .split([',', ' ', '\t', '\r', '\n'])
        .filter(|s| !s.is_empty())
    {
        match item.find('=') {
            Some(i) => {
                cmd.env(latin1::to_path(&item[..i]), latin1::to_path(&item[i + 1..]));
            }
            None => {
                if let Some(v) = std::env::var_os(latin1::to_path(item)) {
                    cmd.env(latin1::to_path(item), v);
                }
            }
        }
    }
}

fn spawn_postdrop(conf: &MailConf, command: &str, who: &str) -> (Postdrop, String) {
    let words: Vec<&str> = command
        .split([' ', '\t'])
        .filter(|s| !s.is_empty())
        .collect();
    let mut cmd = Command::new(latin1::to_path(words[0]));
    for w in &words[1..] {
        cmd.arg(latin1::to_path(w));
    }
    let export = conf
        .lookup_eval("export_environment")
        .unwrap_or_else(|e| fatal(&e.0))
        .unwrap_or_default();
    export_env(&mut cmd, &export);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    let unable = |status: i32| -> ! {
        if status != 0 {
            msg::warn(&format!(
                "command \"{command}\" exited with status {status}"
            ));
        }
        fatal(&format!(
            "{who}: unable to execute {command}: Application error"
        ))
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            // Postfix's forked child reports the exec failure, then exits 1.
            msg::emit_fatal_text(&format!(
                "execvp {}: {}",
                words[0],
                crate::global::config_file::errno_text(&e)
            ));
            unable(1)
        }
    };
    let dst = child
        .stdin
        .take()
        .map(|s| BufWriter::with_capacity(4096, s));
    let src = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut pd = Postdrop { child, dst, src };
    let id = match attr0::scan(&mut pd.src) {
        Ok(Some(v))
            if v.len() == 2
                && v[0].0 == "protocol"
                && v[0].1 == "postdrop_protocol"
                && v[1].0 == "queue_id" =>
        {
            v[1].1.clone()
        }
        _ => {
            pd.dst = None;
            let status = match pd.child.wait() {
                Ok(s) => {
                    use std::os::unix::process::ExitStatusExt;
                    s.code().unwrap_or_else(|| s.signal().unwrap_or(0))
                }
                Err(_) => -1,
            };
            unable(status)
        }
    };
    (pd, id)
}

/// rec_streamlf_get: one line of at most `limit` bytes; `N` when it ended
/// with a newline (not included), `L` otherwise; `None` at the end.
struct LineReader<R: Read> {
    inner: BufReader<R>,
    error: Option<std::io::Error>,
}

impl<R: Read> LineReader<R> {
    fn get(&mut self, buf: &mut Vec<u8>, limit: usize) -> Option<u8> {
        buf.clear();
        loop {
            let avail = match self.inner.fill_buf() {
                Ok(a) => a,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.error = Some(e);
                    &[][..]
                }
            };
            if avail.is_empty() {
                return (!buf.is_empty()).then_some(b'L');
            }
            let room = limit - buf.len();
            let scan = &avail[..avail.len().min(room)];
            if let Some(i) = scan.iter().position(|&b| b == b'\n') {
                buf.extend_from_slice(&scan[..i]);
                self.inner.consume(i + 1);
                return Some(b'N');
            }
            let n = scan.len();
            buf.extend_from_slice(scan);
            self.inner.consume(n);
            if buf.len() >= limit {
                return Some(b'L');
            }
        }
    }
}

/// Recipient extraction for -t, fed by the MIME parser.
struct Extract<'a, W: Write> {
    dst: &'a mut W,
    recipients: Vec<String>,
    resent_recip: Vec<String>,
    resent: bool,
    line_limit: usize,
    failed: Option<std::io::Error>,
}

impl<W: Write> Extract<'_, W> {
    fn put(&mut self, t: u8, data: &[u8]) {
        if self.failed.is_none()
            && let Err(e) = rec_put(self.dst, t, data)
        {
            self.failed = Some(e);
        }
    }
}

/// The headers whose addresses -t collects, and whether they are Resent-.
fn extract_header(name: &str) -> Option<(&'static str, bool)> {
    const H: &[(&str, bool)] = &[
        ("Bcc", false),
        ("Cc", false),
        ("To", false),
        ("Resent-Bcc", true),
        ("Resent-Cc", true),
        ("Resent-To", true),
    ];
    H.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(n, r)| (*n, *r))
}

impl<W: Write> MimeSink for Extract<'_, W> {
    fn header(&mut self, class: HeaderClass, text: &str) {
        if class == HeaderClass::Primary {
            let colon = text.find(':').unwrap_or(text.len());
            let name = text[..colon].trim_end_matches([' ', '\t']);
            if let Some((canon, rr)) = extract_header(name)
                && (!self.resent || rr)
            {
                if rr && !self.resent {
                    self.resent = true;
                }
                let value = text.get(canon.len() + 1..).unwrap_or("");
                let addrs = tok822::parse_addresses(value);
                if rr {
                    self.resent_recip.extend(addrs);
                } else {
                    self.recipients.extend(addrs);
                }
            }
        }
        // The header goes out unchanged, one record per line, long lines
        // chopped at line_length_limit.
        let bytes = latin1::encode(text);
        for line in bytes.split(|&b| b == b'\n') {
            let mut rest = line;
            while rest.len() > self.line_limit {
                let (a, b) = rest.split_at(self.line_limit);
                self.put(b'L', a);
                rest = b;
            }
            self.put(b'N', rest);
        }
    }

    fn body(&mut self, rec: Rec, text: &str) {
        let t = if rec == Rec::Cont { b'L' } else { b'N' };
        self.put(t, &latin1::encode(text));
    }
}

/// Submit one message (Postfix's enqueue()); exits on every error.
pub fn enqueue(conf: &MailConf, sub: &Submission) {
    let get = |name: &str| -> String {
        conf.lookup_eval(name)
            .unwrap_or_else(|e| fatal(&e.0))
            .unwrap_or_default()
    };
    let uid = crate::sys::ids::getuid();
    let acl = get("authorized_submit_users");
    match crate::global::user_acl::check_byuid("authorized_submit_users", &acl, uid) {
        Ok(None) => {}
        Ok(Some(who)) => fatal(&format!("User {who}({uid}) is not allowed to submit mail")),
        Err(e) => fatal(&e.0),
    }

    // Stop run-away accidents: no queue file beyond message_size_limit.
    let size_limit = conf
        .get_long("message_size_limit", 0, 0)
        .unwrap_or_else(|e| fatal(&e.0));
    if size_limit > 0 && crate::sys::proc::file_limit().is_none_or(|l| l > size_limit as u64) {
        let _ = crate::sys::proc::set_file_limit(size_limit as u64);
    }

    let saved_sender = match &sub.sender {
        Some(s) => {
            let addrs = tok822::parse_addresses(s);
            if addrs.len() > 1 {
                msg::warn(&format!("-f option specified malformed sender: {s}"));
            }
            addrs.into_iter().next().unwrap_or_default()
        }
        None => match crate::sys::proc::getpwuid(uid) {
            Some(p) => p.name,
            None => fatal(&format!("no login name found for user ID {uid}")),
        },
    };
    let who = format!("{saved_sender}({uid})");

    let mut command = format!("{}/postdrop -r", get("command_directory"));
    for _ in 0..msg::verbose() {
        command.push_str(" -v");
    }
    let (mut pd, _queue_id) = spawn_postdrop(conf, &command, &who);
    let write_failed = |pd: &mut Postdrop, e: std::io::Error| -> ! {
        let t = format!(
            "{who}: error writing queue file: {}",
            crate::global::config_file::errno_text(&e)
        );
        pd.die(&t)
    };
    macro_rules! put {
        ($t:expr, $d:expr) => {{
            let r = rec_put(pd.dst.as_mut().expect("open"), $t, $d);
            if let Err(e) = r {
                write_failed(&mut pd, e);
            }
        }};
    }

    let enc = |s: &str| latin1::encode(s);
    if let Some(envid) = &sub.dsn_envid {
        put!(b'A', &enc(&format!("envelope_id={envid}")));
    }
    if sub.dsn_ret != 0 {
        put!(b'A', &enc(&format!("ret_flags={}", sub.dsn_ret)));
    }
    put!(
        b'A',
        &enc(&format!("rewrite_context={}", sub.rewrite_context))
    );
    let full_name = sub.full_name.clone().or_else(fullname);
    if let Some(f) = &full_name {
        put!(b'F', &enc(f));
    }
    put!(b'S', &enc(&saved_sender));
    if sub.verp_delims.is_some() && saved_sender.is_empty() {
        pd.die(&format!(
            "{who}: -V option requires non-null sender address"
        ));
    }
    if let Some(e) = &sub.encoding {
        put!(b'A', &enc(&format!("encoding={e}")));
    }
    let trace = sub.flags & flag::TRACE_MASK;
    if trace != 0 {
        put!(b'A', &enc(&format!("trace_flags={trace}")));
    }
    if let Some(v) = &sub.verp_delims {
        put!(b'V', &enc(v));
    }
    let mut rcpt_count = 0usize;
    for r in &sub.recipients {
        let addrs = tok822::parse_addresses(r);
        for a in &addrs {
            if sub.dsn_notify != 0 {
                put!(b'A', &enc(&format!("notify_flags={}", sub.dsn_notify)));
            }
            put!(b'R', &enc(a));
            rcpt_count += 1;
        }
        if addrs.is_empty() {
            put!(b'R', b"");
            rcpt_count += 1;
        }
    }

    put!(b'M', b"");
    let line_limit = conf
        .get_int("line_length_limit", 1, 0)
        .unwrap_or_else(|e| fatal(&e.0))
        .max(1) as usize;
    let mut input_error: Option<std::io::Error> = None;
    let mut extracted: Option<(Vec<String>, Vec<String>, bool)> = None;
    if sub.flags & (flag::USR_VRFY | (1 << 8)) != 0 {
        if sub.flags & flag::XRCPT != 0 {
            pd.die(&format!("{who}: -t option cannot be used with -bv"));
        }
        if !saved_sender.is_empty() {
            put!(b'N', &enc(&format!("From: {saved_sender}")));
        }
        put!(b'N', b"Subject: probe");
        if !sub.recipients.is_empty() {
            put!(b'L', b"To:");
            let n = sub.recipients.len();
            for (i, r) in sub.recipients.iter().enumerate() {
                let sep = if i + 1 < n { "," } else { "" };
                put!(b'N', &enc(&format!("\t{r}{sep}")));
            }
        }
    } else {
        let fix_eol = get("sendmail_fix_line_endings");
        // 0: decide on the first line, 1: strip, 2: keep.
        let mut strip_cr = match fix_eol.as_str() {
            "always" => 1,
            "strict" => 0,
            "never" => 2,
            _ => pd.die(&format!(
                "invalid sendmail_fix_line_endings value: {fix_eol}"
            )),
        };
        let mut mime = (sub.flags & flag::XRCPT != 0).then(|| {
            let limits = mime_state::Limits {
                header_size_limit: conf
                    .get_int("header_size_limit", 0, 0)
                    .unwrap_or_else(|e| fatal(&e.0))
                    .max(0) as usize,
                ..Default::default()
            };
            MimeState::new(
                mime_state::opt::DISABLE_MIME | mime_state::opt::REPORT_TRUNC_HEADER,
                limits,
            )
        });
        let mut ext = Extract {
            dst: pd.dst.as_mut().expect("open"),
            recipients: Vec::new(),
            resent_recip: Vec::new(),
            resent: false,
            line_limit,
            failed: None,
        };
        let mut reader = LineReader {
            inner: BufReader::with_capacity(65536, std::io::stdin()),
            error: None,
        };
        let mut buf = Vec::with_capacity(line_limit.min(65536));
        let mut skip_from = true;
        let mut prev_type = 0u8;
        let mut mime_err = 0u32;
        while let Some(t) = reader.get(&mut buf, line_limit) {
            let this = t;
            if strip_cr == 0 && t == b'N' {
                strip_cr = if buf.last() == Some(&b'\r') { 1 } else { 2 };
            }
            if skip_from {
                if t == b'N' {
                    let start = buf.iter().position(|&b| b != b'>').unwrap_or(buf.len());
                    if buf[start..].starts_with(b"From ") {
                        prev_type = this;
                        continue;
                    }
                }
                skip_from = false;
            }
            if strip_cr == 1 && t == b'N' {
                while buf.last() == Some(&b'\r') {
                    buf.pop();
                }
            }
            if sub.flags & flag::AEOF != 0 && prev_type != b'L' && buf == b"." {
                break;
            }
            prev_type = this;
            match mime.as_mut() {
                Some(m) => {
                    let rec = if t == b'L' { Rec::Cont } else { Rec::Norm };
                    mime_err = m.update(&mut ext, rec, &latin1::decode(&buf));
                    if mime_err != 0 || ext.failed.is_some() {
                        break;
                    }
                }
                None => {
                    if let Err(e) = rec_put(ext.dst, t, &buf) {
                        ext.failed = Some(e);
                        break;
                    }
                }
            }
        }
        if mime_err == 0
            && ext.failed.is_none()
            && let Some(m) = mime.as_mut()
        {
            mime_err = m.update(&mut ext, Rec::End, "");
        }
        input_error = reader.error.take();
        let failed = ext.failed.take();
        if mime.is_some() {
            extracted = Some((
                std::mem::take(&mut ext.recipients),
                std::mem::take(&mut ext.resent_recip),
                ext.resent,
            ));
        }
        if let Some(e) = failed {
            write_failed(&mut pd, e);
        }
        if mime_err != 0 {
            let (_, text) = mime_state::err::detail(mime_err);
            pd.die(&format!("{who}: unable to extract recipients: {text}"));
        }
    }

    put!(b'X', b"");
    if let Some((recipients, resent_recip, resent)) = &extracted {
        let list = if *resent { resent_recip } else { recipients };
        for r in list {
            if sub.dsn_notify != 0 {
                put!(b'A', &enc(&format!("notify_flags={}", sub.dsn_notify)));
            }
            put!(b'R', &enc(r));
            rcpt_count += 1;
        }
    }
    if rcpt_count == 0 {
        pd.die(&if sub.flags & flag::XRCPT != 0 {
            format!("{who}: No recipient addresses found in message header")
        } else {
            format!("{who}: Recipient addresses must be specified on the command line or via the -t option")
        });
    }
    put!(b'E', b"");
    if let Some(e) = input_error {
        pd.die(&format!(
            "{who}: error reading input: {}",
            crate::global::config_file::errno_text(&e)
        ));
    }

    // Collect postdrop's verdict.
    let mut status: u32 = 2;
    let mut why = String::new();
    let flushed = pd.dst.as_mut().map(|d| d.flush().is_ok()).unwrap_or(false);
    if flushed
        && let Ok(Some(v)) = attr0::scan(&mut pd.src)
        && v.len() == 2
        && v[0].0 == "status"
        && v[1].0 == "reason"
        && let Ok(n) = v[0].1.parse::<u32>()
    {
        status = n;
        why = v[1].1.clone();
    }
    pd.dst = None;
    let closed_ok = pd.child.wait().map(|s| s.success()).unwrap_or(false);
    if !closed_ok {
        msg::warn("mail_stream_cleanup: close error");
    }
    if status != 0 {
        let text = if why.is_empty() {
            cleanup_strerror(status).to_string()
        } else {
            why
        };
        fatal(&format!("{who}: {text}"));
    }
    if trace != 0 {
        crate::global::out::print(&format!(
            "Mail Delivery Status Report will be mailed to <{saved_sender}>.\n"
        ));
        crate::global::out::flush();
    }
}

/// fullname(): $NAME, else the password file's GECOS field up to the first
/// `,`, `;` or `%`, with `&` replaced by the capitalised login name.
fn fullname() -> Option<String> {
    if let Some(n) = std::env::var_os("NAME") {
        return Some(latin1::from_os(&n));
    }
    let pw = crate::sys::proc::getpwuid(crate::sys::ids::getuid())?;
    let mut out = String::new();
    for c in pw.gecos.chars() {
        if matches!(c, ',' | ';' | '%') {
            break;
        }
        if c == '&' {
            let mut n = pw.name.chars();
            if let Some(f) = n.next() {
                out.push(f.to_ascii_uppercase());
                out.extend(n);
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}
