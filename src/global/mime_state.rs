//! The MIME parser that Postfix's cleanup daemon runs over a message (its
//! mime_state module): it reassembles folded header lines, recognises
//! primary, multipart and nested (message/rfc822) header blocks, tracks
//! Content-Type boundaries and hands each logical header and each body line
//! to the caller.
//!
//! Records are text lines without their newline; `Norm` is a complete line,
//! `Cont` a line that continues in the next record, `End` the end of input.
//! Limits: `header_size_limit` (a longer header is truncated),
//! `mime_boundary_length_limit`, `mime_nesting_limit`.

/// Input record types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rec {
    Norm,
    Cont,
    End,
}

/// Where a header was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderClass {
    Primary,
    Multipart,
    Nested,
}

/// Processing options (Postfix's MIME_OPT_*).
pub mod opt {
    pub const DISABLE_MIME: u32 = 1 << 0;
    pub const REPORT_TRUNC_HEADER: u32 = 1 << 1;
    pub const REPORT_8BIT_IN_HEADER: u32 = 1 << 2;
    pub const REPORT_8BIT_IN_7BIT_BODY: u32 = 1 << 3;
    pub const REPORT_ENCODING_DOMAIN: u32 = 1 << 4;
    pub const REPORT_NESTING: u32 = 1 << 5;
}

/// Error bits (Postfix's MIME_ERR_*), with their texts.
pub mod err {
    pub const NESTING: u32 = 1 << 0;
    pub const TRUNC_HEADER: u32 = 1 << 1;
    pub const EIGHT_BIT_IN_HEADER: u32 = 1 << 2;
    pub const EIGHT_BIT_IN_7BIT_BODY: u32 = 1 << 3;
    pub const ENCODING_DOMAIN: u32 = 1 << 4;

    /// The (enhanced status, text) of the first error in a mask.
    pub fn detail(mask: u32) -> (&'static str, &'static str) {
        const T: &[(u32, &str)] = &[
            (NESTING, "MIME nesting exceeds safety limit"),
            (TRUNC_HEADER, "message header length exceeds safety limit"),
            (
                EIGHT_BIT_IN_HEADER,
                "improper use of 8-bit data in message header",
            ),
            (
                EIGHT_BIT_IN_7BIT_BODY,
                "improper use of 8-bit data in message body",
            ),
            (
                ENCODING_DOMAIN,
                "invalid message/* or multipart/* encoding domain",
            ),
        ];
        for (bit, text) in T {
            if mask & bit != 0 {
                return ("5.6.0", text);
            }
        }
        ("5.6.0", "unknown error")
    }
}

/// What the parser calls back. Every method has an empty default.
pub trait MimeSink {
    /// A complete logical header (continuation lines joined with `\n`).
    fn header(&mut self, _class: HeaderClass, _text: &str) {}
    /// The end of the primary header block.
    fn head_end(&mut self) {}
    /// One body line (`rec` says whether it is complete).
    fn body(&mut self, _rec: Rec, _text: &str) {}
    /// The same with the line's offset in the current body part (bytes
    /// counted with one newline per record, reset at each part), as
    /// Postfix passes it to body_checks_size_limit.
    fn body_at(&mut self, rec: Rec, text: &str, _offset: i64) {
        self.body(rec, text)
    }
    /// The end of the body.
    fn body_end(&mut self) {}
    /// An error, reported once per kind when its REPORT option is on.
    fn error(&mut self, _err: u32, _text: &str) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctype {
    Other,
    Text,
    Message,
    Multipart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stype {
    Other,
    Plain,
    Rfc822,
    Partial,
    ExternBody,
    Global,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Primary,
    Multipart,
    Nested,
    Body,
}

const ENC_QP: u32 = 1;
const ENC_BASE64: u32 = 2;
const ENC_7BIT: u32 = 7;
const ENC_8BIT: u32 = 8;
const ENC_BINARY: u32 = 9;

const ENCODINGS: &[(&str, u32, u32)] = &[
    ("7bit", ENC_7BIT, ENC_7BIT),
    ("8bit", ENC_8BIT, ENC_8BIT),
    ("binary", ENC_BINARY, ENC_BINARY),
    ("base64", ENC_BASE64, ENC_7BIT),
    ("quoted-printable", ENC_QP, ENC_7BIT),
];

fn enc_name(e: u32) -> &'static str {
    ENCODINGS
        .iter()
        .find(|(_, enc, _)| *enc == e)
        .map(|(n, _, _)| *n)
        .unwrap_or("unknown")
}

struct Frame {
    def_ctype: Ctype,
    def_stype: Stype,
    boundary: String,
}

/// Limits from main.cf.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_size_limit: usize,
    pub mime_boundary_length_limit: usize,
    pub mime_nesting_limit: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_size_limit: 102400,
            mime_boundary_length_limit: 2048,
            mime_nesting_limit: 100,
        }
    }
}

/// The parser state.
pub struct MimeState {
    state: State,
    ctype: Ctype,
    stype: Stype,
    encoding: u32,
    domain: u32,
    buf: String,
    prev_rec: Option<Rec>,
    nesting_level: i64,
    body_offset: i64,
    stack: Vec<Frame>,
    err_flags: u32,
    options: u32,
    limits: Limits,
    /// Which callbacks the caller wants (Postfix passes null pointers).
    pub want_header: bool,
    pub want_head_end: bool,
    pub want_body: bool,
}

fn is_space_tab(c: Option<char>) -> bool {
    matches!(c, Some(' ') | Some('\t'))
}

/// Postfix's is_header_buf: the length of a header name that is followed
/// (possibly after blanks) by `:`, or 0.
pub fn header_name_len(text: &str) -> usize {
    let mut len = 0;
    let mut state = 0; // 0 init, 1 in name, 2 in blanks after the name
    for c in text.chars() {
        match c {
            ':' => return if state != 0 { len } else { 0 },
            ' ' | '\t' => {
                if state == 1 {
                    state = 2;
                }
                if state != 2 {
                    return 0;
                }
            }
            _ => {
                let u = c as u32;
                if !(32..127).contains(&u) {
                    return 0;
                }
                if state == 0 {
                    state = 1;
                }
                if state != 1 {
                    return 0;
                }
                len += 1;
            }
        }
    }
    0
}

#[derive(Debug, PartialEq, Eq)]
enum HTok {
    Token(String),
    QString(String),
    Special(char),
}

impl HTok {
    fn is_token(&self, text: &str) -> bool {
        matches!(self, HTok::Token(v) if v.eq_ignore_ascii_case(text))
    }
}

/// Postfix's header_token: up to `max` items from `s[*pos..]`, stopping at
/// `terminator` when given. `None` when nothing is left.
fn header_token(
    s: &[char],
    pos: &mut usize,
    max: usize,
    specials: &str,
    terminator: Option<char>,
) -> Option<Vec<HTok>> {
    let mut toks = Vec::new();
    let mut i = *pos;
    let mut count = 0usize;
    let mut hit_end = true;
    while i < s.len() && (terminator.is_some() || count < max) {
        let ch = s[i];
        i += 1;
        if is_space_tab_cr_lf(ch) {
            continue;
        }
        if Some(ch) == terminator {
            hit_end = false;
            break;
        }
        if ch == '(' {
            let mut level = 1;
            while i < s.len() {
                let c = s[i];
                i += 1;
                if c == '(' {
                    level += 1;
                } else if c == ')' {
                    level -= 1;
                    if level == 0 {
                        break;
                    }
                } else if c == '\\' {
                    if i >= s.len() {
                        break;
                    }
                    i += 1;
                }
            }
            continue;
        }
        if ch == '"' {
            let mut v = String::new();
            while i < s.len() {
                let mut c = s[i];
                i += 1;
                if c == '"' {
                    break;
                }
                if c == '\n' {
                    while v.ends_with(is_space_tab_cr_lf) {
                        v.pop();
                    }
                    continue;
                }
                if c == '\\' {
                    if i >= s.len() {
                        break;
                    }
                    c = s[i];
                    i += 1;
                }
                v.push(c);
            }
            if count < max {
                toks.push(HTok::QString(v));
                count += 1;
            }
            continue;
        }
        if specials.contains(ch) || is_cntrl(ch) {
            if count < max {
                toks.push(HTok::Special(ch));
                count += 1;
            }
            continue;
        }
        let mut v = String::from(ch);
        while i < s.len() {
            let c = s[i];
            if is_space_tab_cr_lf(c) || is_cntrl(c) || specials.contains(c) {
                break;
            }
            v.push(c);
            i += 1;
        }
        if count < max {
            toks.push(HTok::Token(v));
            count += 1;
        }
    }
    if hit_end && count == 0 {
        // Nothing after the last terminator.
        return None;
    }
    *pos = i;
    Some(toks)
}

fn is_space_tab_cr_lf(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_cntrl(c: char) -> bool {
    (c as u32) < 32 || c as u32 == 127
}

const RFC2045_TSPECIALS: &str = "()<>@,;:\\\"/[]?=";
const RFC822_SPECIALS: &str = "()<>@,;:\\\".[]";

impl MimeState {
    /// A parser with Postfix's MIME_OPT_* options and main.cf limits.
    pub fn new(options: u32, limits: Limits) -> MimeState {
        MimeState {
            state: State::Primary,
            ctype: Ctype::Text,
            stype: Stype::Plain,
            encoding: ENC_7BIT,
            domain: ENC_7BIT,
            buf: String::new(),
            prev_rec: None,
            nesting_level: -1,
            body_offset: 0,
            stack: Vec::new(),
            err_flags: 0,
            options,
            limits,
            want_header: true,
            want_head_end: true,
            want_body: true,
        }
    }

    /// Whether the header being collected is below header_size_limit (in
    /// bytes of the original text: one char per byte here).
    fn header_room(&self) -> bool {
        self.buf.len() < self.limits.header_size_limit
            || self.buf.chars().count() < self.limits.header_size_limit
    }

    fn set_state(&mut self, st: State, ct: Ctype, stp: Stype, enc: u32, dom: u32) {
        self.state = st;
        if st == State::Body {
            self.body_offset = 0;
        }
        self.ctype = ct;
        self.stype = stp;
        self.encoding = enc;
        self.domain = dom;
    }

    fn report(&mut self, sink: &mut dyn MimeSink, e: u32, text: &str) {
        if self.err_flags & e == 0 {
            sink.error(e, text);
            self.err_flags |= e;
        }
    }

    fn push(&mut self, ct: Ctype, st: Stype, boundary: &str) {
        self.nesting_level += 1;
        let b: String = boundary
            .chars()
            .take(self.limits.mime_boundary_length_limit)
            .collect();
        self.stack.push(Frame {
            def_ctype: ct,
            def_stype: st,
            boundary: b,
        });
    }

    fn pop(&mut self) {
        self.nesting_level -= 1;
        self.stack.pop();
    }

    fn content_type(&mut self, sink: &mut dyn MimeSink, name_len: usize) {
        let s: Vec<char> = self.buf.chars().collect();
        let mut pos = name_len + 1;
        let t = header_token(&s, &mut pos, 3, RFC2045_TSPECIALS, Some(';')).unwrap_or_default();
        if t.is_empty() {
            self.ctype = Ctype::Other;
            return;
        }
        let slash = t.len() >= 3 && t[1] == HTok::Special('/');
        if t[0].is_token("text") {
            self.ctype = Ctype::Text;
            self.stype = if slash && t[2].is_token("plain") {
                Stype::Plain
            } else {
                Stype::Other
            };
        } else if t[0].is_token("message") {
            self.ctype = Ctype::Message;
            self.stype = Stype::Other;
            if slash {
                if t[2].is_token("rfc822") {
                    self.stype = Stype::Rfc822;
                } else if t[2].is_token("partial") {
                    self.stype = Stype::Partial;
                } else if t[2].is_token("external-body") {
                    self.stype = Stype::ExternBody;
                } else if t[2].is_token("global") {
                    self.stype = Stype::Global;
                }
            }
        } else if t[0].is_token("multipart") {
            self.ctype = Ctype::Multipart;
            let (dct, dst) = if slash && t[2].is_token("digest") {
                (Ctype::Message, Stype::Rfc822)
            } else {
                (Ctype::Text, Stype::Plain)
            };
            while let Some(p) = header_token(&s, &mut pos, 3, RFC2045_TSPECIALS, Some(';')) {
                if p.len() >= 3 && p[0].is_token("boundary") && p[1] == HTok::Special('=') {
                    if self.nesting_level > self.limits.mime_nesting_limit {
                        if self.options & opt::REPORT_NESTING != 0 {
                            let b = self.buf.clone();
                            self.report(sink, err::NESTING, &b);
                        }
                    } else {
                        let v = match &p[2] {
                            HTok::Token(v) | HTok::QString(v) => v.clone(),
                            HTok::Special(c) => c.to_string(),
                        };
                        self.push(dct, dst, &v);
                    }
                }
            }
        }
    }

    fn content_encoding(&mut self, name_len: usize) {
        let s: Vec<char> = self.buf.chars().collect();
        let mut pos = name_len + 1;
        if let Some(t) = header_token(&s, &mut pos, 1, RFC822_SPECIALS, None)
            && let Some(HTok::Token(v)) = t.first()
            && let Some((_, enc, dom)) =
                ENCODINGS.iter().find(|(n, _, _)| v.eq_ignore_ascii_case(n))
        {
            self.encoding = *enc;
            self.domain = *dom;
        }
    }

    fn header_class(&self) -> HeaderClass {
        match self.state {
            State::Multipart => HeaderClass::Multipart,
            State::Nested => HeaderClass::Nested,
            _ => HeaderClass::Primary,
        }
    }

    /// Feed one record; returns the error flags so far.
    pub fn update(&mut self, sink: &mut dyn MimeSink, rec: Rec, text: &str) -> u32 {
        let is_text = rec != Rec::End;
        if !is_text && self.prev_rec == Some(Rec::Cont) {
            self.update(sink, Rec::Norm, "");
        }
        if self.state != State::Body {
            if !self.buf.is_empty() {
                if is_text {
                    if self.prev_rec == Some(Rec::Cont) {
                        if self.header_room() {
                            self.buf.push_str(text);
                        } else if self.options & opt::REPORT_TRUNC_HEADER != 0 {
                            let b = self.buf.clone();
                            self.report(sink, err::TRUNC_HEADER, &b);
                        }
                        self.prev_rec = Some(rec);
                        return self.err_flags;
                    }
                    if is_space_tab(text.chars().next()) {
                        if self.header_room() {
                            self.buf.push('\n');
                            self.buf.push_str(text);
                        } else if self.options & opt::REPORT_TRUNC_HEADER != 0 {
                            let b = self.buf.clone();
                            self.report(sink, err::TRUNC_HEADER, &b);
                        }
                        self.prev_rec = Some(rec);
                        return self.err_flags;
                    }
                }
                // The header is complete.
                let name_len = self.buf.find(':').unwrap_or(0);
                let name = self.buf[..name_len]
                    .trim_end_matches([' ', '\t'])
                    .to_ascii_lowercase();
                if self.options & opt::DISABLE_MIME == 0 {
                    if name == "content-type" {
                        self.content_type(sink, name_len);
                    } else if name == "content-transfer-encoding" {
                        self.content_encoding(name_len);
                    }
                }
                if self.options & opt::REPORT_8BIT_IN_HEADER != 0
                    && self.err_flags & err::EIGHT_BIT_IN_HEADER == 0
                    && self.buf.chars().any(|c| c as u32 >= 0x80)
                {
                    let b = self.buf.clone();
                    self.report(sink, err::EIGHT_BIT_IN_HEADER, &b);
                }
                if self.want_header {
                    let class = self.header_class();
                    sink.header(class, &self.buf);
                }
                self.prev_rec = None;
                self.buf.clear();
            }
            if is_text {
                let n = header_name_len(text);
                if n > 0 {
                    self.buf.clear();
                    self.buf.push_str(&text[..n]);
                    let rest = text[n..].trim_start_matches([' ', '\t']);
                    self.buf.push_str(rest);
                    self.prev_rec = Some(rec);
                    return self.err_flags;
                }
            }
            // The end of a header block.
            if self.state == State::Primary && self.want_head_end {
                sink.head_end();
            }
            if self.options & opt::REPORT_ENCODING_DOMAIN != 0 {
                let bad = match self.ctype {
                    Ctype::Message => match self.stype {
                        Stype::Partial | Stype::ExternBody => self.domain != ENC_7BIT,
                        Stype::Rfc822 => self.encoding != self.domain,
                        _ => false,
                    },
                    Ctype::Multipart => self.encoding != self.domain,
                    _ => false,
                };
                if bad {
                    let n = enc_name(self.encoding);
                    self.report(sink, err::ENCODING_DOMAIN, n);
                }
            }
            if is_text {
                if text.is_empty() {
                    self.body_offset = 0;
                    match self.ctype {
                        Ctype::Message
                            if self.stype == Stype::Rfc822 || self.stype == Stype::Global =>
                        {
                            self.set_state(
                                State::Nested,
                                Ctype::Text,
                                Stype::Plain,
                                ENC_7BIT,
                                ENC_7BIT,
                            );
                        }
                        Ctype::Multipart => self.set_state(
                            State::Body,
                            Ctype::Other,
                            Stype::Other,
                            ENC_7BIT,
                            ENC_7BIT,
                        ),
                        _ => {
                            self.state = State::Body;
                            self.body_offset = 0;
                        }
                    }
                } else {
                    if self.state == State::Primary && self.want_body {
                        sink.body_at(Rec::Norm, "", self.body_offset);
                        self.body_offset += 1;
                    }
                    self.state = State::Body;
                    self.body_offset = 0;
                }
            } else {
                self.state = State::Body;
                self.body_offset = 0;
            }
        }
        // Body state.
        if is_text {
            if self.options & opt::REPORT_8BIT_IN_7BIT_BODY != 0
                && self.encoding == ENC_7BIT
                && self.err_flags & err::EIGHT_BIT_IN_7BIT_BODY == 0
                && text.chars().any(|c| c as u32 >= 0x80)
            {
                self.report(sink, err::EIGHT_BIT_IN_7BIT_BODY, text);
            }
            if !self.stack.is_empty()
                && self.prev_rec != Some(Rec::Cont)
                && text.len() > 2
                && text.starts_with("--")
            {
                let after = &text[2..];
                let hit = self
                    .stack
                    .iter()
                    .rposition(|f| after.starts_with(f.boundary.as_str()));
                if let Some(idx) = hit {
                    while self.stack.len() > idx + 1 {
                        self.pop();
                    }
                    let blen = self.stack[idx].boundary.len();
                    if after[blen..].starts_with("--") {
                        self.pop();
                        self.set_state(State::Body, Ctype::Other, Stype::Other, ENC_7BIT, ENC_7BIT);
                    } else {
                        let (ct, st) = (self.stack[idx].def_ctype, self.stack[idx].def_stype);
                        self.set_state(State::Multipart, ct, st, ENC_7BIT, ENC_7BIT);
                    }
                }
            }
            if self.want_body {
                sink.body_at(rec, text, self.body_offset);
                self.body_offset += text.len() as i64 + 1;
            }
        } else {
            sink.body_end();
        }
        self.prev_rec = Some(rec);
        self.err_flags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Log(Vec<String>);
    impl MimeSink for Log {
        fn header(&mut self, c: HeaderClass, t: &str) {
            self.0.push(format!("H{:?} {t}", c));
        }
        fn head_end(&mut self) {
            self.0.push("END".into());
        }
        fn body(&mut self, _r: Rec, t: &str) {
            self.0.push(format!("B {t}"));
        }
    }

    fn run(msg: &str, options: u32) -> Vec<String> {
        let mut st = MimeState::new(options, Limits::default());
        let mut log = Log::default();
        for l in msg.split('\n') {
            st.update(&mut log, Rec::Norm, l);
        }
        st.update(&mut log, Rec::End, "");
        log.0
    }

    #[test]
    fn headers_fold_and_body() {
        let l = run("Subject : a\n b\nFrom: x\n\nbody", 0);
        assert_eq!(
            l,
            vec![
                "HPrimary Subject: a\n b",
                "HPrimary From: x",
                "END",
                "B ",
                "B body"
            ]
        );
    }

    #[test]
    fn multipart_parts() {
        let m = "Content-Type: multipart/mixed; boundary=\"XX\"\n\npre\n--XX\nContent-Type: text/plain\n\nhello\n--XX--\nepi";
        let l = run(m, 0);
        assert_eq!(
            l,
            vec![
                "HPrimary Content-Type: multipart/mixed; boundary=\"XX\"",
                "END",
                "B ",
                "B pre",
                "B --XX",
                "HMultipart Content-Type: text/plain",
                "B ",
                "B hello",
                "B --XX--",
                "B epi"
            ]
        );
        let l = run(m, opt::DISABLE_MIME);
        assert!(l.contains(&"B Content-Type: text/plain".to_string()));
    }

    #[test]
    fn garbage_in_header() {
        assert_eq!(
            run("From: x\nnot a header\n", 0),
            vec!["HPrimary From: x", "END", "B ", "B not a header", "B "]
        );
        assert_eq!(header_name_len("Subject :x"), 7);
        assert_eq!(header_name_len("Sub ject: x"), 0);
    }
}
