//! 8-bit to quoted-printable conversion for servers that do not announce
//! 8BITMIME (Postfix's MIME_OPT_DOWNGRADE in mime_state, as the smtp client
//! uses it). Pure: message lines in, message lines out.
//!
//! What is converted: a message whose primary header block declares
//! `Content-Transfer-Encoding: 8bit` (or `binary`). Its encoding header is
//! dropped and `Content-Transfer-Encoding: quoted-printable` is added at the
//! end of the header block (`7bit` for multipart and message types), and a
//! leaf body is encoded with soft line breaks after 73 characters, `=`,
//! control characters and 8-bit bytes as `=XX`, and a trailing blank encoded.
//! A message without such a header goes out unchanged, as in Postfix. The
//! same rules apply to each part of a multipart body and to a message/rfc822
//! part's nested header; a part without the header keeps its bytes.

/// A content line: its bytes and whether it ends with a newline (`N`) or
/// continues in the next record (`L`).
pub type Line = (Vec<u8>, bool);

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn qp_push(out: &mut Vec<u8>, ch: u8) {
    out.push(b'=');
    out.push(HEX[(ch >> 4) as usize]);
    out.push(HEX[(ch & 0xf) as usize]);
}

/// Does the header line start a header (`name:`)? Returns the name length.
fn header_name(line: &[u8]) -> Option<usize> {
    let n = line
        .iter()
        .take_while(|&&c| c > b' ' && c < 0x7f && c != b':')
        .count();
    let mut i = n;
    while i < line.len() && (line[i] == b' ' || line[i] == b'\t') {
        i += 1;
    }
    if n > 0 && line.get(i) == Some(&b':') {
        Some(n)
    } else {
        None
    }
}

fn header_value(h: &[u8]) -> String {
    let s = String::from_utf8_lossy(h);
    let v = s.split_once(':').map(|x| x.1).unwrap_or("");
    v.split(|c: char| c == ';' || c.is_whitespace())
        .find(|w| !w.is_empty())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// The `boundary` parameter of a Content-Type value.
fn boundary_param(h: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(h).replace(['\r', '\n'], " ");
    let low = s.to_ascii_lowercase();
    let mut from = 0;
    while let Some(p) = low[from..].find("boundary") {
        let at = from + p;
        from = at + 8;
        let before = low[..at].trim_end();
        if !(before.ends_with(';') || before.ends_with(':')) {
            continue;
        }
        let rest = s[at + 8..].trim_start();
        let Some(rest) = rest.strip_prefix('=') else {
            continue;
        };
        let rest = rest.trim_start();
        let v = if let Some(q) = rest.strip_prefix('"') {
            q.split('"').next().unwrap_or("").to_string()
        } else {
            rest.split(|c: char| c == ';' || c.is_whitespace())
                .next()
                .unwrap_or("")
                .to_string()
        };
        if !v.is_empty() {
            return Some(v);
        }
    }
    None
}

/// Where a header block is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Primary,
    Part,
    Nested,
}

struct Downgrader {
    out: Vec<Line>,
    /// Boundaries of the enclosing multiparts, outermost first.
    bounds: Vec<String>,
    /// Collecting a header block, and what kind.
    in_header: Option<Block>,
    headers: Vec<Vec<Line>>,
    /// The default content type of the current part is message/rfc822
    /// (multipart/digest).
    digest: Vec<bool>,
    /// Encode body lines.
    qp: bool,
    buf: Vec<u8>,
    prev_complete: bool,
}

impl Downgrader {
    /// End a header block: write the headers and decide the body treatment.
    fn end_header(&mut self, block: Block) -> bool {
        let headers = std::mem::take(&mut self.headers);
        let joined = |h: &Vec<Line>| -> Vec<u8> { h.iter().flat_map(|l| l.0.clone()).collect() };
        let is = |h: &[u8], name: &str| -> bool {
            header_name(h).is_some_and(|n| h[..n].eq_ignore_ascii_case(name.as_bytes()))
        };
        let mut eight = false;
        let digest_default = block == Block::Part && self.digest.last().copied().unwrap_or(false);
        let mut ctype = if digest_default {
            "message/rfc822".to_string()
        } else {
            "text/plain".to_string()
        };
        let mut boundary = None;
        for h in &headers {
            let j = joined(h);
            if is(&j, "content-transfer-encoding") {
                let v = header_value(&j);
                eight = v == "8bit" || v == "binary";
            } else if is(&j, "content-type") {
                ctype = header_value(&j);
                boundary = boundary_param(&j);
            }
        }
        let multipart = ctype.starts_with("multipart/");
        let message = ctype.starts_with("message/") && ctype != "message/global";
        for h in headers {
            if eight && is(&joined(&h), "content-transfer-encoding") {
                continue;
            }
            self.out.extend(h);
        }
        if eight {
            let cte = if multipart || message {
                "7bit"
            } else {
                "quoted-printable"
            };
            self.out.push((
                format!("Content-Transfer-Encoding: {cte}").into_bytes(),
                true,
            ));
        }
        if multipart {
            if let Some(b) = boundary {
                self.bounds.push(b);
                self.digest.push(ctype == "multipart/digest");
            }
            self.qp = false;
        } else {
            self.qp = eight && !message;
        }
        // message/rfc822: the nested message's header follows the blank line.
        message && ctype == "message/rfc822"
    }

    fn body_line(&mut self, text: &[u8], complete: bool) {
        if self.prev_complete && text.starts_with(b"--") && !self.bounds.is_empty() {
            for k in (0..self.bounds.len()).rev() {
                let b = self.bounds[k].as_bytes();
                if text[2..].starts_with(b) {
                    let close = text[2 + b.len()..].starts_with(b"--");
                    self.bounds.truncate(if close { k } else { k + 1 });
                    self.digest.truncate(self.bounds.len());
                    self.out.push((text.to_vec(), complete));
                    self.prev_complete = complete;
                    self.qp = false;
                    if !close {
                        self.in_header = Some(Block::Part);
                    }
                    return;
                }
            }
        }
        self.prev_complete = complete;
        if !self.qp {
            self.out.push((text.to_vec(), complete));
            return;
        }
        for &ch in text {
            if self.buf.len() > 72 {
                self.buf.push(b'=');
                self.out.push((std::mem::take(&mut self.buf), true));
            }
            if (ch < 32 && ch != b'\t') || ch == b'=' || ch > 126 {
                qp_push(&mut self.buf, ch);
            } else {
                self.buf.push(ch);
            }
        }
        if complete {
            if let Some(&last) = self.buf.last()
                && (last == b' ' || last == b'\t')
            {
                self.buf.pop();
                qp_push(&mut self.buf, last);
            }
            self.out.push((std::mem::take(&mut self.buf), true));
        }
    }

    fn line(&mut self, text: &[u8], complete: bool) {
        if let Some(block) = self.in_header {
            if !self.prev_complete
                && let Some(h) = self.headers.last_mut()
            {
                h.push((text.to_vec(), complete));
                self.prev_complete = complete;
                return;
            }
            let cont = matches!(text.first(), Some(b' ') | Some(b'\t'));
            if cont && !self.headers.is_empty() {
                self.headers
                    .last_mut()
                    .unwrap()
                    .push((text.to_vec(), complete));
                self.prev_complete = complete;
                return;
            }
            if header_name(text).is_some() {
                self.headers.push(vec![(text.to_vec(), complete)]);
                self.prev_complete = complete;
                return;
            }
            // The end of the header block.
            self.in_header = None;
            let nested = self.end_header(block);
            if text.is_empty() && complete {
                self.out.push((Vec::new(), true));
                self.prev_complete = true;
                if nested {
                    self.in_header = Some(Block::Nested);
                }
                return;
            }
        }
        self.body_line(text, complete);
    }
}

/// Convert the content for a server without 8BITMIME.
pub fn downgrade(lines: &[Line]) -> Vec<Line> {
    let mut d = Downgrader {
        out: Vec::with_capacity(lines.len() + 1),
        bounds: Vec::new(),
        in_header: Some(Block::Primary),
        headers: Vec::new(),
        digest: Vec::new(),
        qp: false,
        buf: Vec::new(),
        prev_complete: true,
    };
    for (text, complete) in lines {
        d.line(text, *complete);
    }
    if let Some(block) = d.in_header.take() {
        d.end_header(block);
    }
    if !d.buf.is_empty() {
        let b = std::mem::take(&mut d.buf);
        d.out.push((b, false));
    }
    d.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(s: &[u8]) -> Line {
        (s.to_vec(), true)
    }

    #[test]
    fn converts_8bit_leaf() {
        let msg = vec![
            l(b"Subject: x"),
            l(b"Content-Type: text/plain; charset=utf-8"),
            l(b"Content-Transfer-Encoding: 8bit"),
            l(b"X: y"),
            l(b""),
            l("caf\u{e9} = ok ".as_bytes()),
            l(&[b'a'; 80]),
        ];
        let out = downgrade(&msg);
        let text: Vec<String> = out
            .iter()
            .map(|x| String::from_utf8_lossy(&x.0).into_owned())
            .collect();
        assert_eq!(
            text,
            vec![
                "Subject: x",
                "Content-Type: text/plain; charset=utf-8",
                "X: y",
                "Content-Transfer-Encoding: quoted-printable",
                "",
                "caf=C3=A9 =3D ok=20",
                &format!("{}=", "a".repeat(73)),
                "aaaaaaa",
            ]
        );
    }

    #[test]
    fn leaves_7bit_and_undeclared() {
        let msg = vec![l(b"Subject: x"), l(b""), l("caf\u{e9}".as_bytes())];
        assert_eq!(downgrade(&msg), msg);
    }
}
