//! Mail logging for the daemons that run as library calls inside another
//! process (cleanup inside pickup): every line keeps the name of the
//! Postfix program whose work produced it, so that `postfix/cleanup[pid]:`
//! stays right.
//!
//! A [`MailLog`] either writes through [`crate::global::maillog`] (syslog
//! or `maillog_file`, as Postfix's daemons log), switching the tag per
//! line, or keeps the lines for the caller (tests, and pickup, which logs
//! its own lines before cleanup's).

use crate::global::maillog;

/// One logged line: program name and text (with `warning: ` when it is
/// one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub program: String,
    pub text: String,
}

impl Line {
    /// `program: text`.
    pub fn display(&self) -> String {
        format!("{}: {}", self.program, self.text)
    }
}

/// Where log lines go.
pub struct MailLog {
    capture: Option<Vec<Line>>,
    syslog_name: String,
    /// `syslog_name/program` for the last program a line was logged for
    /// (kept between lines).
    tag: String,
}

impl MailLog {
    /// Lines go to the mail log; [`maillog::init`] must have been called.
    pub fn daemon(syslog_name: &str) -> MailLog {
        MailLog {
            capture: None,
            syslog_name: syslog_name.to_string(),
            tag: String::new(),
        }
    }

    /// Lines are kept in memory.
    pub fn capture() -> MailLog {
        MailLog {
            capture: Some(Vec::new()),
            syslog_name: "postfix".into(),
            tag: String::new(),
        }
    }

    /// The lines kept so far.
    pub fn take(&mut self) -> Vec<Line> {
        self.capture
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// `syslog_name/program`, made again only when the program changes.
    fn tag_for(&mut self, program: &str) -> &str {
        let n = self.syslog_name.len();
        let same = self.tag.len() == n + 1 + program.len()
            && self.tag.as_bytes()[n] == b'/'
            && self.tag.ends_with(program)
            && self.tag.starts_with(self.syslog_name.as_str());
        if !same {
            self.tag.clear();
            self.tag.push_str(&self.syslog_name);
            self.tag.push('/');
            self.tag.push_str(program);
        }
        &self.tag
    }

    /// One line, `warning: ` first when `warning`.
    fn emit(&mut self, program: &str, warning: bool, text: &str) {
        if let Some(v) = &mut self.capture {
            v.push(Line {
                program: program.to_string(),
                text: if warning {
                    format!("warning: {text}")
                } else {
                    text.to_string()
                },
            });
            return;
        }
        // The line carries the name of the program whose work it reports;
        // the host program's own lines keep their tag. An info text that
        // starts with `warning: ` is logged as a warning, as before.
        let (level, text) = match (warning, text.strip_prefix("warning: ")) {
            (true, _) => ("warning", text),
            (false, Some(rest)) => ("warning", rest),
            (false, None) => ("info", text),
        };
        let tag = self.tag_for(program);
        maillog::log_as(tag, level, text);
    }

    /// An informational line.
    pub fn info(&mut self, program: &str, text: &str) {
        self.emit(program, false, text);
    }

    /// A `warning: ` line.
    pub fn warn(&mut self, program: &str, text: &str) {
        self.emit(program, true, text);
    }
}
