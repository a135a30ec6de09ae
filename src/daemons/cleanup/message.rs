//! The message content: MIME-aware header and body processing, header and
//! body checks with their actions, header address rewriting, and the
//! headers cleanup adds when they are missing (Postfix's
//! cleanup_message.c).

use super::config::{CANON_HDR_FROM, CANON_HDR_RCPT, EXT_PROP_CANONICAL};
use super::headers::{self, HeaderOpts};
use super::state::{Phase, Session};
use super::{flag, stat};
use crate::global::mail_date;
use crate::global::mime_state::{self, HeaderClass, MimeSink, MimeState, Rec};
use crate::global::rec_type;
use crate::global::rewrite_clnt;
use crate::global::tok822::{self, Token};
use crate::global::tok822_tree::{self, Item};

/// Where a check matched.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Header,
    Body,
    Content,
}

impl Ctx {
    fn name(self) -> &'static str {
        match self {
            Ctx::Header => "header",
            Ctx::Body => "body",
            Ctx::Content => "content",
        }
    }
}

/// What a check action leaves of the input.
enum Act {
    Keep,
    Drop,
    Replace(String),
}

/// Postfix's dsn_prepend: use the text's own status code if it starts
/// with one, else the default.
fn dsn_prepend(def: &str, text: &str) -> String {
    let (status, rest) = super::dsn_split(def, text);
    format!("{status} {rest}")
}

fn which_maps(
    cf: &mut super::config::Config,
    class: HeaderClass,
) -> Option<&mut super::interim::Maps> {
    match class {
        HeaderClass::Primary => cf.header_checks.as_mut(),
        HeaderClass::Multipart => cf.mimehdr_checks.as_mut(),
        HeaderClass::Nested => cf.nesthdr_checks.as_mut(),
    }
}

impl Session<'_> {
    /// cleanup_message: start the content segment and the MIME parser.
    pub(super) fn message_start(&mut self) {
        self.out(rec_type::MESG, "");
        self.data_offset = self.ftell();
        let mut opts = 0;
        if self.cf.disable_mime_input {
            opts |= mime_state::opt::DISABLE_MIME;
        } else if self.flags & flag::FILTER != 0 {
            let c = &self.cf;
            if c.strict_8bitmime || c.strict_7bit_hdrs {
                opts |= mime_state::opt::REPORT_8BIT_IN_HEADER;
            }
            if c.strict_8bitmime || c.strict_8bit_body {
                opts |= mime_state::opt::REPORT_8BIT_IN_7BIT_BODY;
            }
            if c.strict_encoding {
                opts |= mime_state::opt::REPORT_ENCODING_DOMAIN;
            }
            if c.strict_8bitmime
                || c.strict_7bit_hdrs
                || c.strict_8bit_body
                || c.strict_encoding
                || c.any_header_checks
            {
                opts |= mime_state::opt::REPORT_NESTING;
            }
        }
        self.mime = Some(MimeState::new(opts, self.cf.mime_limits));
    }

    /// cleanup_message_headerbody: one content record.
    pub(super) fn headerbody(&mut self, t: u8, text: &str) {
        let mut text = std::borrow::Cow::Borrowed(text);
        if self.cf.mask_stray_cr_lf && crate::util::stringops::has_cr_or_lf(text.as_bytes()) {
            text = std::borrow::Cow::Owned(text.replace(['\r', '\n'], " "));
        }
        if self.flags & flag::FILTER != 0
            && let Some(rej) = self.cf.reject_chars.clone()
            && text
                .chars()
                .any(|c| (c as u32) < 256 && rej.contains(&(c as u32 as u8)))
        {
            self.act(
                Ctx::Content,
                &text,
                "REJECT disallowed character",
                "character reject",
            );
            return;
        }
        if self.flags & flag::FILTER != 0
            && let Some(strip) = &self.cf.strip_chars
        {
            text = text
                .chars()
                .filter(|&c| !((c as u32) < 256 && strip.contains(&(c as u32 as u8))))
                .collect();
        }
        if t == rec_type::NORM || t == rec_type::CONT {
            let rec = if t == rec_type::NORM {
                Rec::Norm
            } else {
                Rec::Cont
            };
            if let Some(mut ms) = self.mime.take() {
                self.mime_errs = ms.update(self, rec, &text);
                self.mime = Some(ms);
            }
        } else if t == rec_type::XTRA {
            if let Some(mut ms) = self.mime.take() {
                self.mime_errs = ms.update(self, Rec::End, "");
            }
            self.mime_errs &= !mime_state::err::TRUNC_HEADER;
            if self.mime_errs != 0 && self.reason.is_none() {
                self.errs |= stat::CONT;
                let (dsn, t) = mime_state::err::detail(self.mime_errs);
                self.reason = Some(format!("{dsn} {t}"));
            }
            self.xtra_offset = self.ftell();
            self.cont_length = self.xtra_offset - self.data_offset;
            self.phase = Phase::ExtractedStart;
        } else {
            self.log.warn(
                "cleanup",
                &format!(
                    "cleanup_message_headerbody: message rejected: unexpected record type {t} in message content"
                ),
            );
            self.errs |= stat::BAD;
        }
    }

    /// cleanup_act_log.
    fn act_log(&mut self, action: &str, ctx: Ctx, content: &str, text: &str) {
        let origin = self.attr_find("log_message_origin").unwrap_or("unknown");
        let content: String = content.chars().take(200).collect();
        let mut line = format!(
            "{}: {action}: {} {content} from {origin};",
            self.queue_id,
            ctx.name()
        );
        if let Some(s) = &self.sender {
            line.push_str(&format!(" from=<{s}>"));
        }
        if let Some(r) = &self.recip {
            line.push_str(&format!(" to=<{r}>"));
        }
        if let Some(p) = self.attr_find("log_protocol_name") {
            line.push_str(&format!(" proto={p}"));
        }
        if let Some(h) = self.attr_find("log_helo_name") {
            line.push_str(&format!(" helo=<{h}>"));
        }
        if !text.is_empty() {
            line.push_str(&format!(": {text}"));
        }
        self.log.info("cleanup", &line);
    }

    /// cleanup_act: act upon a header/body check match.
    fn act(&mut self, ctx: Ctx, buf: &str, value: &str, map_class: &str) -> Act {
        let cmd_len = value.find([' ', '\t']).unwrap_or(value.len());
        let cmd = &value[..cmd_len];
        let optional = value[cmd_len..].trim_start_matches(|c: char| c.is_ascii_whitespace());
        let is = |name: &str| cmd.eq_ignore_ascii_case(name);
        if is("REJECT") {
            let reason = if !optional.is_empty() {
                let mut r = dsn_prepend("5.7.1", optional);
                if !r.starts_with('4') && !r.starts_with('5') {
                    self.log.warn(
                        "cleanup",
                        &format!("bad DSN action in {optional} -- need 4.x.x or 5.x.x"),
                    );
                    r.replace_range(..1, "4");
                }
                r
            } else {
                "5.7.1 message content rejected".to_string()
            };
            if reason.starts_with('4') {
                self.errs |= stat::DEFER;
            } else {
                self.errs |= stat::CONT;
            }
            self.reason = Some(reason.clone());
            self.flags &= !flag::FILTER_ALL;
            self.act_log("reject", ctx, buf, &reason);
            return Act::Keep;
        }
        if is("WARN") {
            self.act_log("warning", ctx, buf, optional);
            return Act::Keep;
        }
        if is("INFO") {
            self.act_log("info", ctx, buf, optional);
            return Act::Keep;
        }
        if is("FILTER") {
            if optional.is_empty() {
                self.log.warn(
                    "cleanup",
                    &format!("missing FILTER command argument in {map_class} map"),
                );
            } else if !optional.contains(':') {
                self.log.warn(
                    "cleanup",
                    &format!(
                        "bad FILTER command {optional} in {map_class} -- need transport:destination"
                    ),
                );
            } else {
                self.filter = Some(optional.to_string());
                self.act_log("filter", ctx, buf, optional);
            }
            return Act::Keep;
        }
        if is("PASS") {
            self.act_log("pass", ctx, buf, optional);
            self.flags &= !flag::FILTER_ALL;
            return Act::Keep;
        }
        if is("DISCARD") {
            self.act_log("discard", ctx, buf, optional);
            self.flags |= flag::DISCARD;
            self.flags &= !flag::FILTER_ALL;
            return Act::Keep;
        }
        if is("HOLD") {
            if self.flags & (flag::HOLD | flag::DISCARD) == 0 {
                self.act_log("hold", ctx, buf, optional);
                self.flags |= flag::HOLD;
            }
            return Act::Keep;
        }
        if is("PREPEND") {
            if optional.is_empty() {
                self.log.warn(
                    "cleanup",
                    &format!("PREPEND action without text in {map_class} map"),
                );
            } else if ctx == Ctx::Header {
                if !headers::is_header(optional) {
                    self.log.warn(
                        "cleanup",
                        &format!(
                            "bad PREPEND header text \"{optional}\" in {map_class} map -- need \"headername: headervalue\""
                        ),
                    );
                } else {
                    self.act_log("prepend", ctx, buf, optional);
                    self.out_header(optional);
                }
            } else {
                self.act_log("prepend", ctx, buf, optional);
                self.out(rec_type::NORM, optional);
            }
            return Act::Keep;
        }
        if is("REPLACE") {
            if optional.is_empty() {
                self.log.warn(
                    "cleanup",
                    &format!("REPLACE action without text in {map_class} map"),
                );
                return Act::Keep;
            } else if ctx == Ctx::Header && !headers::is_header(optional) {
                self.log.warn(
                    "cleanup",
                    &format!(
                        "bad REPLACE header text \"{optional}\" in {map_class} map -- need \"headername: headervalue\""
                    ),
                );
                return Act::Keep;
            }
            self.act_log("replace", ctx, buf, optional);
            return Act::Replace(optional.to_string());
        }
        if is("REDIRECT") {
            if !optional.contains('@') {
                self.log.warn(
                    "cleanup",
                    &format!(
                        "bad REDIRECT target \"{optional}\" in {map_class} map -- need user@domain"
                    ),
                );
            } else {
                self.redirect = Some(optional.to_string());
                self.act_log("redirect", ctx, buf, optional);
                self.flags &= !flag::FILTER_ALL;
            }
            return Act::Keep;
        }
        if is("BCC") {
            if !optional.contains('@') {
                self.log.warn(
                    "cleanup",
                    &format!(
                        "bad BCC address \"{optional}\" in {map_class} map -- need user@domain"
                    ),
                );
            } else {
                self.hbc_rcpt.push(optional.to_string());
                self.act_log("bcc", ctx, buf, optional);
            }
            return Act::Keep;
        }
        if is("STRIP") {
            self.act_log("strip", ctx, buf, optional);
            return Act::Drop;
        }
        if is("IGNORE") {
            return Act::Drop;
        }
        if is("DUNNO") || is("OK") {
            return Act::Keep;
        }
        self.log.warn(
            "cleanup",
            &format!("unknown command in {map_class} map: {value}"),
        );
        Act::Keep
    }

    /// Look a header or body line up in a check table; errors defer.
    fn check_lookup(&mut self, class: Option<HeaderClass>, key: &str) -> Option<(String, String)> {
        let mut warns = Vec::new();
        let maps = match class {
            Some(c) => which_maps(&mut self.cf, c),
            None => self.cf.body_checks.as_mut(),
        }?;
        let r = maps.find(key, false, &mut |w| warns.push(w.to_string()));
        let err = maps.error;
        let title = maps.title.clone();
        for w in warns {
            self.log.warn("cleanup", &w);
        }
        if r.is_none() && err {
            let id = self.queue_id.clone();
            self.log.warn(
                "cleanup",
                &format!(
                    "{id}: {title} map lookup problem -- message not accepted, try again later"
                ),
            );
            self.errs |= stat::WRITE;
        }
        r.map(|v| (v, title))
    }

    /// cleanup_fold_header: join rewritten address lines while they fit.
    fn fold_header(&mut self, header: &str) {
        let lines: Vec<&str> = header.split('\n').collect();
        let mut out = String::new();
        let mut start_line_len = 0usize; // chars since the start of the current output line
        for (i, l) in lines.iter().enumerate() {
            if i > 0 {
                if start_line_len + 1 + l.len() < 70 {
                    out.push(' ');
                    start_line_len += 1 + l.len();
                } else {
                    out.push('\n');
                    start_line_len = l.len();
                }
            } else {
                start_line_len = l.len();
            }
            out.push_str(l);
        }
        self.out_header(&out);
    }

    /// Rewrite the addresses of a sender or recipient header.
    fn rewrite_header(&mut self, opts: &HeaderOpts, header: &str, sender: bool) {
        let name_len = opts.name.len();
        let ctx = self.hdr_rewrite_context;
        let mut items = tok822_tree::parse(&header[name_len + 1..], self.cf.token_limit);
        let mut did = false;
        let rc = self.cf.rewrite.clone();
        let prop = self.cf.ext_prop_mask & EXT_PROP_CANONICAL != 0;
        let class_bit = if sender {
            CANON_HDR_FROM
        } else {
            CANON_HDR_RCPT
        };
        for it in items.iter_mut() {
            let Item::Addr { toks, owned } = it else {
                continue;
            };
            // cleanup_rewrite_tree
            if let Some(c) = ctx {
                let ext = tok822_tree::addr_external(toks, *owned);
                let res = rewrite_clnt::rewrite_external(&rc, c, &ext);
                did |= res != ext;
                *toks = tok822::scan(&res);
                *owned = false;
            }
            if self.flags & flag::MAP_OK != 0 {
                let own_maps = if sender { 1 } else { 2 };
                let own_present = if sender {
                    self.cf.send_canon.is_some() && self.cf.send_canon_flags & class_bit != 0
                } else {
                    self.cf.rcpt_canon.is_some() && self.cf.rcpt_canon_flags & class_bit != 0
                };
                if own_present {
                    let mut a = tok822_tree::addr_external(toks, *owned);
                    did |= self.map11_external(&mut a, own_maps, prop);
                    *toks = tok822::scan(&a);
                    *owned = false;
                }
                if self.cf.comm_canon.is_some() && self.cf.comm_canon_flags & class_bit != 0 {
                    let mut a = tok822_tree::addr_external(toks, *owned);
                    did |= self.map11_external(&mut a, 0, prop);
                    *toks = tok822::scan(&a);
                    *owned = false;
                }
                if self.cf.masq_domains.is_some() && self.cf.masq_flags & class_bit != 0 {
                    let mut a = tok822_tree::addr_external(toks, *owned);
                    did |= self.masquerade_external(&mut a);
                    *toks = tok822::scan(&a);
                    *owned = false;
                }
            }
        }
        let mut text = header.to_string();
        if did {
            let mut warns = Vec::new();
            let body = tok822_tree::externalize_head(&items, &mut |w| warns.push(w.to_string()));
            for w in warns {
                self.log.warn("cleanup", &w);
            }
            text = format!("{}: {body}", &header[..name_len]);
        }
        if opts.flags & headers::OPT_DROP == 0 {
            if did {
                self.fold_header(&text);
            } else {
                self.out_header(&text);
            }
        }
    }

    fn header_cb(&mut self, class: HeaderClass, text: &str) {
        let mut header = text.to_string();
        let mut opts = self.cf.headers.find(&header).cloned();
        let mut class = class;
        if opts
            .as_ref()
            .is_some_and(|o| o.flags & headers::OPT_MIME != 0)
        {
            class = HeaderClass::Multipart;
        }
        if opts
            .as_ref()
            .is_some_and(|o| o.kind == headers::HDR_RECEIVED)
        {
            self.hop_count += 1;
        }
        let have_checks = match class {
            HeaderClass::Primary => self.cf.header_checks.is_some(),
            HeaderClass::Multipart => self.cf.mimehdr_checks.is_some(),
            HeaderClass::Nested => self.cf.nesthdr_checks.is_some(),
        };
        if self.flags & flag::FILTER != 0 && have_checks {
            let map_class = match class {
                HeaderClass::Primary => "header_checks",
                HeaderClass::Multipart => "mime_header_checks",
                HeaderClass::Nested => "nested_header_checks",
            };
            if let Some((value, _)) = self.check_lookup(Some(class), &header) {
                match self.act(Ctx::Header, &header, &value, map_class) {
                    Act::Drop => return,
                    Act::Replace(r) => {
                        opts = self.cf.headers.find(&r).cloned();
                        header = r;
                    }
                    Act::Keep => {}
                }
            }
        }
        let Some(opts) = opts else {
            self.out_header(&header);
            return;
        };
        let hdrval = header[opts.name.len() + 1..]
            .trim_start_matches(|c: char| c.is_ascii_whitespace())
            .to_string();
        if self.cf.auto_8bit_enc_hdr && opts.kind == headers::HDR_CONTENT_TRANSFER_ENCODING {
            for (n, enc) in [
                ("7bit", "7bit"),
                ("8bit", "8bit"),
                ("binary", "8bit"),
                ("quoted-printable", "7bit"),
                ("base64", "7bit"),
            ] {
                if hdrval.eq_ignore_ascii_case(n) {
                    if enc == "8bit" {
                        self.attr_set("encoding", enc);
                    }
                    break;
                }
            }
        }
        if class != HeaderClass::Primary {
            self.out_header(&header);
            return;
        }
        self.headers_seen |= 1u64 << opts.kind;
        let id = self.queue_id.clone();
        if opts.kind == headers::HDR_MESSAGE_ID {
            self.log
                .info("cleanup", &format!("{id}: message-id={hdrval}"));
        }
        if opts.kind == headers::HDR_RESENT_MESSAGE_ID {
            self.log
                .info("cleanup", &format!("{id}: resent-message-id={hdrval}"));
        }
        if opts.kind == headers::HDR_RECEIVED && self.hop_count >= self.cf.hopcount_limit {
            self.log.warn(
                "cleanup",
                &format!("{id}: message rejected: hopcount exceeded"),
            );
            self.errs |= stat::HOPS;
        }
        if self.out_ok() {
            if opts.flags & headers::OPT_RR != 0 {
                self.resent = "Resent-";
            }
            if opts.flags & headers::OPT_SENDER != 0 && self.hdr_rewrite_context.is_some() {
                self.rewrite_header(&opts, &header, true);
            } else if opts.flags & headers::OPT_RECIP != 0 && self.hdr_rewrite_context.is_some() {
                self.rewrite_header(&opts, &header, false);
            } else if opts.flags & headers::OPT_DROP == 0 {
                self.out_header(&header);
            }
        }
    }

    fn seen(&self, kind: u32) -> bool {
        self.headers_seen & (1u64 << kind) != 0
    }

    /// cleanup_header_done_callback: add the missing headers.
    fn head_end_cb(&mut self) {
        if !self.out_ok() {
            return;
        }
        let id = self.queue_id.clone();
        if self.hop_count < 1 {
            self.log.warn(
                "cleanup",
                &format!("{id}: message rejected: no Received: header"),
            );
            self.errs |= stat::BAD;
            return;
        }
        let add = self.hdr_rewrite_context.is_some() || self.cf.always_add_hdrs;
        let resent = !self.resent.is_empty();
        let pick = |a: u32, b: u32| if resent { b } else { a };
        if add
            && !self.seen(pick(
                headers::HDR_MESSAGE_ID,
                headers::HDR_RESENT_MESSAGE_ID,
            ))
        {
            let mid = if self.cf.long_queue_ids {
                format!("{id}@{}", self.cf.myhostname)
            } else {
                format!(
                    "{}.{id}@{}",
                    mail_date::gmt_stamp(self.ctime.0),
                    self.cf.myhostname
                )
            };
            let r = self.resent;
            self.out(rec_type::NORM, &format!("{r}Message-Id: <{mid}>"));
            self.log.info(
                "cleanup",
                &format!(
                    "{id}: {}message-id=<{mid}>",
                    if resent { "resent-" } else { "" }
                ),
            );
            self.headers_seen |=
                1u64 << pick(headers::HDR_MESSAGE_ID, headers::HDR_RESENT_MESSAGE_ID);
        }
        if !self.seen(headers::HDR_MESSAGE_ID) {
            self.log.info("cleanup", &format!("{id}: message-id=<>"));
        }
        if add && !self.seen(pick(headers::HDR_DATE, headers::HDR_RESENT_DATE)) {
            let r = self.resent;
            let d = mail_date::mail_date(self.arrival.0);
            self.out(rec_type::NORM, &format!("{r}Date: {d}"));
        }
        if add && !self.seen(pick(headers::HDR_FROM, headers::HDR_RESENT_FROM)) {
            let r = self.resent;
            let sender = self.sender.clone().unwrap_or_default();
            let addr = super::interim::quote(if sender.is_empty() {
                "MAILER-DAEMON"
            } else {
                &sender
            });
            let full = self.fullname.clone().unwrap_or_default();
            let text = if !sender.is_empty() && !full.is_empty() {
                let full = full.replace(['\r', '\n'], " ");
                if self.cf.hfrom_std {
                    let mut t = format!("{r}From: ");
                    let plain = !full.contains(|c: char| "%!()<>@,;:\\\".[]".contains(c));
                    let toks: Vec<Token> = if plain {
                        tok822::scan(&full)
                    } else {
                        vec![Token::QString(full.clone())]
                    };
                    if !toks.is_empty() {
                        t.push_str(&tok822::externalize(&toks));
                        t.push(' ');
                    }
                    t.push_str(&format!("<{addr}>"));
                    t
                } else {
                    let items = tok822_tree::parse(&format!("({full})"), 0);
                    let mut w = |_: &str| {};
                    let c = tok822_tree::externalize_head(&items, &mut w);
                    format!("{r}From: {addr} {c}")
                }
            } else {
                format!("{r}From: {addr}")
            };
            self.out(rec_type::NORM, &text);
        }
        const VISIBLE: [u32; 4] = [
            headers::HDR_TO,
            headers::HDR_RESENT_TO,
            headers::HDR_CC,
            headers::HDR_RESENT_CC,
        ];
        if add && !VISIBLE.iter().any(|&k| self.seen(k)) && !self.cf.rcpt_witheld.is_empty() {
            let w = self.cf.rcpt_witheld.clone();
            if !headers::is_header(&w) {
                self.log.warn(
                    "cleanup",
                    &format!(
                        "bad undisclosed_recipients_header header text \"{w}\" -- need \"headername: headervalue\""
                    ),
                );
            } else {
                self.out(rec_type::NORM, &w);
            }
        }
    }

    fn body_cb(&mut self, rec: Rec, text: &str, offset: i64) {
        if !self.out_ok() {
            return;
        }
        let t = if rec == Rec::Cont {
            rec_type::CONT
        } else {
            rec_type::NORM
        };
        if self.flags & flag::FILTER != 0
            && self.cf.body_checks.is_some()
            && (self.cf.body_check_len == 0 || offset < self.cf.body_check_len)
            && let Some((value, _)) = self.check_lookup(None, text)
        {
            match self.act(Ctx::Body, text, &value, "body_checks") {
                Act::Drop => return,
                Act::Replace(r) => {
                    self.out(t, &r);
                    return;
                }
                Act::Keep => {}
            }
        }
        self.out(t, text);
    }

    fn mime_error_cb(&mut self, err: u32, text: &str) {
        if err & !mime_state::err::TRUNC_HEADER != 0 {
            let origin = self
                .attr_find("log_message_origin")
                .unwrap_or("unknown")
                .to_string();
            let what = mime_state::err::detail(err).1;
            let t: String = text.chars().take(100).collect();
            let line = format!(
                "{}: reject: mime-error {what}: {t} from {origin}; from=<{}> to=<{}>",
                self.queue_id,
                self.sender.clone().unwrap_or_default(),
                self.recip.clone().unwrap_or_else(|| "unknown".into())
            );
            self.log.info("cleanup", &line);
        }
    }

    pub(super) fn attr_set(&mut self, name: &str, value: &str) {
        self.attr.update(name, value);
    }
}

impl MimeSink for Session<'_> {
    fn header(&mut self, class: HeaderClass, text: &str) {
        self.header_cb(class, text);
    }
    fn head_end(&mut self) {
        self.head_end_cb();
    }
    fn body_at(&mut self, rec: Rec, text: &str, offset: i64) {
        self.body_cb(rec, text, offset);
    }
    fn error(&mut self, err: u32, text: &str) {
        self.mime_error_cb(err, text);
    }
}
