//! Base64 as Postfix's base64_code module: standard alphabet with `=`
//! padding; decoding rejects a length that is not a multiple of 4 and any
//! character outside the alphabet, and stops at the first `=`.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encode bytes.
pub fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b0 = chunk[0] as usize;
        out.push(ALPHABET[b0 >> 2] as char);
        match chunk.len() {
            1 => {
                out.push(ALPHABET[(b0 & 3) << 4] as char);
                out.push_str("==");
            }
            2 => {
                let b1 = chunk[1] as usize;
                out.push(ALPHABET[(b0 & 3) << 4 | b1 >> 4] as char);
                out.push(ALPHABET[(b1 & 0xf) << 2] as char);
                out.push('=');
            }
            _ => {
                let (b1, b2) = (chunk[1] as usize, chunk[2] as usize);
                out.push(ALPHABET[(b0 & 3) << 4 | b1 >> 4] as char);
                out.push(ALPHABET[(b1 & 0xf) << 2 | b2 >> 6] as char);
                out.push(ALPHABET[b2 & 0x3f] as char);
            }
        }
    }
    out
}

fn val(c: char) -> Option<u32> {
    ALPHABET
        .iter()
        .position(|&a| a as char == c)
        .map(|p| p as u32)
}

/// Decode one-char-per-byte text; `None` when malformed.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let c: Vec<char> = text.chars().collect();
    if !c.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(c.len() / 4 * 3);
    for q in c.chunks(4) {
        let c0 = val(q[0])?;
        let c1 = val(q[1])?;
        out.push((c0 << 2 | c1 >> 4) as u8);
        if q[2] == '=' {
            break;
        }
        let c2 = val(q[2])?;
        out.push((c1 << 4 | c2 >> 2) as u8);
        if q[3] == '=' {
            break;
        }
        let c3 = val(q[3])?;
        out.push((c2 << 6 | c3) as u8);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        assert_eq!(encode(b"hello\n"), "aGVsbG8K");
        assert_eq!(encode(b"a"), "YQ==");
        assert_eq!(encode(b"ab"), "YWI=");
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(&all)).unwrap(), all);
        assert_eq!(decode("YQ=="), Some(b"a".to_vec()));
        assert_eq!(decode("YQ="), None);
        assert_eq!(decode("Y!=="), None);
    }
}
