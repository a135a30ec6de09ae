//! Interim mail logging for the daemons that run as library calls.
//!
//! TODO(maillog): route through `crate::global::maillog` when the logging
//! work (syslog / `maillog_file` / postlogd) lands on main. Until then a
//! [`MailLog`] either prints `program: text` on stderr (as Postfix's
//! programs do when they run stand-alone) and appends syslog-style lines
//! to `maillog_file` when one is configured, or keeps the lines for the
//! caller (tests).
//!
//! Every line is kept with the name of the Postfix program whose work
//! produced it (`cleanup`, `pickup`), so that `postfix/cleanup[pid]:` stays
//! right when cleanup runs inside pickup.

use crate::util::latin1;
use std::io::Write;

/// One logged line: program name, severity prefix (`""` or `"warning: "`),
/// and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub program: String,
    pub text: String,
}

impl Line {
    /// `program: text` as the syslog message body without the pid.
    pub fn display(&self) -> String {
        format!("{}: {}", self.program, self.text)
    }
}

/// Where log lines go.
pub struct MailLog {
    capture: Option<Vec<Line>>,
    file: Option<String>,
    syslog_name: String,
    host: String,
}

impl MailLog {
    /// Lines go to stderr (and `maillog_file` when given).
    pub fn stderr(maillog_file: Option<String>, syslog_name: &str, host: &str) -> MailLog {
        MailLog {
            capture: None,
            file: maillog_file.filter(|f| !f.is_empty()),
            syslog_name: syslog_name.to_string(),
            host: host.to_string(),
        }
    }

    /// Lines are kept in memory.
    pub fn capture() -> MailLog {
        MailLog {
            capture: Some(Vec::new()),
            file: None,
            syslog_name: "postfix".into(),
            host: String::new(),
        }
    }

    /// The lines kept so far.
    pub fn take(&mut self) -> Vec<Line> {
        self.capture
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn emit(&mut self, program: &str, text: String) {
        if let Some(v) = &mut self.capture {
            v.push(Line {
                program: program.to_string(),
                text,
            });
            return;
        }
        let shown = crate::global::msg::printable(&text, true);
        let mut line = latin1::encode(&format!("{program}: {shown}"));
        line.push(b'\n');
        let _ = std::io::stderr().write_all(&line);
        if let Some(f) = &self.file {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            let stamp = crate::sys::time::localtime(now)
                .map(|t| {
                    const M: [&str; 12] = [
                        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                        "Nov", "Dec",
                    ];
                    format!(
                        "{} {:>2} {:02}:{:02}:{:02}",
                        M[t.mon.clamp(0, 11) as usize],
                        t.mday,
                        t.hour,
                        t.min,
                        t.sec
                    )
                })
                .unwrap_or_default();
            let host = self.host.split('.').next().unwrap_or("").to_string();
            let text = format!(
                "{stamp} {host} {}/{program}[{}]: {shown}\n",
                self.syslog_name,
                std::process::id()
            );
            if let Ok(mut fh) = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(latin1::to_path(f))
            {
                let _ = fh.write_all(&latin1::encode(&text));
            }
        }
    }

    /// An informational line.
    pub fn info(&mut self, program: &str, text: &str) {
        self.emit(program, text.to_string());
    }

    /// A `warning: ` line.
    pub fn warn(&mut self, program: &str, text: &str) {
        self.emit(program, format!("warning: {text}"));
    }
}
