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
}

impl MailLog {
    /// Lines go to the mail log; [`maillog::init`] must have been called.
    pub fn daemon(syslog_name: &str) -> MailLog {
        MailLog {
            capture: None,
            syslog_name: syslog_name.to_string(),
        }
    }

    /// Lines are kept in memory.
    pub fn capture() -> MailLog {
        MailLog {
            capture: Some(Vec::new()),
            syslog_name: "postfix".into(),
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
        // The line carries the name of the program whose work it reports;
        // the host program's own lines keep their tag.
        let saved = maillog::tag();
        maillog::set_tag(&format!("{}/{program}", self.syslog_name));
        match text.strip_prefix("warning: ") {
            Some(rest) => maillog::log("warning", rest),
            None => maillog::log("info", &text),
        }
        if let Some(t) = saved {
            maillog::set_tag(&t);
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
