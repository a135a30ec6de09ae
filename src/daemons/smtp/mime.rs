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
//! A message without such a header goes out unchanged, as in Postfix.
//! Not yet: the parts of a multipart body (sent unchanged; compat/DIVERGENCES.md).

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

/// Convert the content for a server without 8BITMIME.
pub fn downgrade(lines: &[Line]) -> Vec<Line> {
    // Collect the primary header block as logical headers (lists of records).
    let mut headers: Vec<Vec<Line>> = Vec::new();
    let mut i = 0;
    let mut prev_complete = true;
    while i < lines.len() {
        let (text, complete) = &lines[i];
        if prev_complete {
            let cont = matches!(text.first(), Some(b' ') | Some(b'\t'));
            if cont && !headers.is_empty() {
                headers.last_mut().unwrap().push(lines[i].clone());
            } else if header_name(text).is_some() {
                headers.push(vec![lines[i].clone()]);
            } else {
                break;
            }
        } else {
            headers.last_mut().unwrap().push(lines[i].clone());
        }
        prev_complete = *complete;
        i += 1;
    }
    let joined = |h: &Vec<Line>| -> Vec<u8> { h.iter().flat_map(|l| l.0.clone()).collect() };
    let is = |h: &Vec<Line>, name: &str| -> bool {
        let j = joined(h);
        header_name(&j).is_some_and(|n| j[..n].eq_ignore_ascii_case(name.as_bytes()))
    };
    let mut eight = false;
    let mut composite = false;
    for h in &headers {
        if is(h, "content-transfer-encoding") {
            let v = header_value(&joined(h));
            eight = v == "8bit" || v == "binary";
        } else if is(h, "content-type") {
            let v = header_value(&joined(h));
            composite =
                v.starts_with("multipart/") || (v.starts_with("message/") && v != "message/global");
        }
    }
    if !eight {
        return lines.to_vec();
    }
    let mut out: Vec<Line> = Vec::new();
    for h in &headers {
        if !is(h, "content-transfer-encoding") {
            out.extend(h.iter().cloned());
        }
    }
    let cte = if composite {
        "7bit"
    } else {
        "quoted-printable"
    };
    out.push((
        format!("Content-Transfer-Encoding: {cte}").into_bytes(),
        true,
    ));
    if composite {
        out.extend(lines[i..].iter().cloned());
        return out;
    }
    // The empty line between header and body, and the body.
    let mut buf: Vec<u8> = Vec::new();
    let mut in_body = false;
    for (text, complete) in &lines[i..] {
        if !in_body {
            in_body = true;
            if text.is_empty() && *complete {
                out.push((Vec::new(), true));
                continue;
            }
        }
        for &ch in text {
            if buf.len() > 72 {
                buf.push(b'=');
                out.push((std::mem::take(&mut buf), true));
            }
            if (ch < 32 && ch != b'\t') || ch == b'=' || ch > 126 {
                qp_push(&mut buf, ch);
            } else {
                buf.push(ch);
            }
        }
        if *complete {
            if let Some(&last) = buf.last()
                && (last == b' ' || last == b'\t')
            {
                buf.pop();
                qp_push(&mut buf, last);
            }
            out.push((std::mem::take(&mut buf), true));
        }
    }
    if !buf.is_empty() {
        out.push((buf, false));
    }
    out
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
