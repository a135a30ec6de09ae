//! The message headers cleanup knows by name (Postfix's header_opts table),
//! with their kinds and flags; `message_drop_headers` adds the DROP flag.

pub const HDR_OTHER: u32 = 0;
pub const HDR_APPARENTLY_TO: u32 = 1;
pub const HDR_BCC: u32 = 2;
pub const HDR_CC: u32 = 3;
pub const HDR_CONTENT_LENGTH: u32 = 4;
pub const HDR_CONTENT_TRANSFER_ENCODING: u32 = 5;
pub const HDR_CONTENT_TYPE: u32 = 6;
pub const HDR_DATE: u32 = 7;
pub const HDR_DELIVERED_TO: u32 = 8;
pub const HDR_ERRORS_TO: u32 = 9;
pub const HDR_FROM: u32 = 10;
pub const HDR_MESSAGE_ID: u32 = 11;
pub const HDR_RECEIVED: u32 = 12;
pub const HDR_REPLY_TO: u32 = 13;
pub const HDR_RESENT_BCC: u32 = 14;
pub const HDR_RESENT_CC: u32 = 15;
pub const HDR_RESENT_DATE: u32 = 16;
pub const HDR_RESENT_FROM: u32 = 17;
pub const HDR_RESENT_MESSAGE_ID: u32 = 18;
pub const HDR_RESENT_REPLY_TO: u32 = 19;
pub const HDR_RESENT_SENDER: u32 = 20;
pub const HDR_RESENT_TO: u32 = 21;
pub const HDR_RETURN_PATH: u32 = 22;
pub const HDR_RETURN_RECEIPT_TO: u32 = 23;
pub const HDR_SENDER: u32 = 24;
pub const HDR_TO: u32 = 25;
pub const HDR_MAIL_FOLLOWUP_TO: u32 = 26;
pub const HDR_CONTENT_DESCRIPTION: u32 = 27;
pub const HDR_CONTENT_DISPOSITION: u32 = 28;
pub const HDR_CONTENT_ID: u32 = 29;
pub const HDR_MIME_VERSION: u32 = 30;
pub const HDR_DISP_NOTIFICATION: u32 = 31;

pub const OPT_DROP: u32 = 1 << 0;
pub const OPT_SENDER: u32 = 1 << 1;
pub const OPT_RECIP: u32 = 1 << 2;
pub const OPT_RR: u32 = 1 << 3;
pub const OPT_EXTRACT: u32 = 1 << 4;
pub const OPT_MIME: u32 = 1 << 5;
const XRECIP: u32 = OPT_RECIP | OPT_EXTRACT;

/// A known header: its canonical name, kind and flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderOpts {
    pub name: String,
    pub kind: u32,
    pub flags: u32,
}

const TABLE: &[(&str, u32, u32)] = &[
    ("Apparently-To", HDR_APPARENTLY_TO, OPT_RECIP),
    ("Bcc", HDR_BCC, XRECIP),
    ("Cc", HDR_CC, XRECIP),
    ("Content-Description", HDR_CONTENT_DESCRIPTION, OPT_MIME),
    ("Content-Disposition", HDR_CONTENT_DISPOSITION, OPT_MIME),
    ("Content-ID", HDR_CONTENT_ID, OPT_MIME),
    ("Content-Length", HDR_CONTENT_LENGTH, 0),
    (
        "Content-Transfer-Encoding",
        HDR_CONTENT_TRANSFER_ENCODING,
        OPT_MIME,
    ),
    ("Content-Type", HDR_CONTENT_TYPE, OPT_MIME),
    ("Delivered-To", HDR_DELIVERED_TO, 0),
    (
        "Disposition-Notification-To",
        HDR_DISP_NOTIFICATION,
        OPT_SENDER,
    ),
    ("Date", HDR_DATE, 0),
    ("Errors-To", HDR_ERRORS_TO, OPT_SENDER),
    ("From", HDR_FROM, OPT_SENDER),
    ("Mail-Followup-To", HDR_MAIL_FOLLOWUP_TO, OPT_SENDER),
    ("Message-Id", HDR_MESSAGE_ID, 0),
    ("MIME-Version", HDR_MIME_VERSION, OPT_MIME),
    ("Received", HDR_RECEIVED, 0),
    ("Reply-To", HDR_REPLY_TO, OPT_SENDER),
    ("Resent-Bcc", HDR_RESENT_BCC, XRECIP | OPT_RR),
    ("Resent-Cc", HDR_RESENT_CC, XRECIP | OPT_RR),
    ("Resent-Date", HDR_RESENT_DATE, OPT_RR),
    ("Resent-From", HDR_RESENT_FROM, OPT_SENDER | OPT_RR),
    ("Resent-Message-Id", HDR_RESENT_MESSAGE_ID, OPT_RR),
    ("Resent-Reply-To", HDR_RESENT_REPLY_TO, OPT_RECIP | OPT_RR),
    ("Resent-Sender", HDR_RESENT_SENDER, OPT_SENDER | OPT_RR),
    ("Resent-To", HDR_RESENT_TO, XRECIP | OPT_RR),
    ("Return-Path", HDR_RETURN_PATH, OPT_SENDER),
    ("Return-Receipt-To", HDR_RETURN_RECEIPT_TO, OPT_SENDER),
    ("Sender", HDR_SENDER, OPT_SENDER),
    ("To", HDR_TO, XRECIP),
];

/// The header table with `message_drop_headers` applied.
#[derive(Debug, Clone)]
pub struct HeaderTable {
    entries: Vec<(String, HeaderOpts)>,
}

impl HeaderTable {
    pub fn new(drop_headers: &str) -> HeaderTable {
        let mut entries: Vec<(String, HeaderOpts)> = TABLE
            .iter()
            .map(|(n, k, f)| {
                (
                    n.to_ascii_lowercase(),
                    HeaderOpts {
                        name: n.to_string(),
                        kind: *k,
                        flags: *f,
                    },
                )
            })
            .collect();
        for d in drop_headers
            .split([',', ' ', '\t', '\r', '\n'])
            .filter(|s| !s.is_empty())
        {
            let key = d.to_ascii_lowercase();
            match entries.iter_mut().find(|(k, _)| *k == key) {
                Some((_, o)) => o.flags |= OPT_DROP,
                None => entries.push((
                    key.clone(),
                    HeaderOpts {
                        name: key,
                        kind: HDR_OTHER,
                        flags: OPT_DROP,
                    },
                )),
            }
        }
        HeaderTable { entries }
    }

    /// Look up a header line by its name (header_opts_find).
    pub fn find(&self, header: &str) -> Option<&HeaderOpts> {
        let name = &header[..header.find(':')?];
        let name = name.trim_end_matches([' ', '\t']);
        // The keys are lower case: a case-blind comparison is the same as
        // lower-casing the name, without the copy.
        self.entries
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, o)| o)
    }
}

/// Postfix's is_header: does the text start with `name:`?
pub fn is_header(text: &str) -> bool {
    crate::global::mime_state::header_name_len(text) > 0
}
