//! Build, query and walk `hash:` / `btree:` tables through the Dict API, for
//! bench/dict_db.sh and manual interop checks, until our postmap exists.
//!
//! ```text
//! dict_db build TYPE:NAME        read NAME ("key value" lines), write NAME.db
//! dict_db query TYPE:NAME        keys on stdin, "key<TAB>value" on stdout
//! dict_db dump TYPE:NAME         every "key<TAB>value", in walk order
//! ```
//!
//! Keys are lower-cased and duplicates warned about, as postmap does by
//! default. Source lines: `#` comments and blank lines are skipped, the key
//! ends at the first whitespace; continuation lines are not supported.

use rostfix::global::dict::registry::dict_open;
use rostfix::global::dict::{OpenMode, Seq, flags};
use rostfix::global::msg;
use rostfix::util::latin1;
use std::io::{BufRead, BufWriter, Read, Write};

fn main() {
    msg::init("dict_db");
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: dict_db build|query|dump TYPE:NAME");
        std::process::exit(2);
    }
    let spec = &args[2];
    let dflags = flags::DUP_WARN | flags::FOLD_FIX;
    let out = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, out.lock());
    match args[1].as_str() {
        "build" => {
            let (_, name) = spec.split_once(':').unwrap_or(("", spec));
            let mut src = Vec::new();
            std::fs::File::open(name)
                .and_then(|mut f| f.read_to_end(&mut src))
                .unwrap_or_else(|e| msg::fatal(&format!("open {name}: {e}")));
            let mut d = dict_open(spec, OpenMode::Create, dflags | flags::BULK_UPDATE)
                .unwrap_or_else(|e| msg::fatal(&e.0));
            for line in src.split(|&b| b == b'\n') {
                let line = latin1::decode(line);
                let t = line.trim();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                let (k, v) = match t.find(|c: char| c.is_ascii_whitespace()) {
                    Some(i) => (&t[..i], t[i..].trim_start()),
                    None => (t, ""),
                };
                if let Err(e) = d.update(k, v) {
                    msg::fatal(&e.to_string());
                }
            }
            d.close().unwrap_or_else(|e| msg::fatal(&e.to_string()));
        }
        "query" => {
            let mut d =
                dict_open(spec, OpenMode::ReadOnly, dflags).unwrap_or_else(|e| msg::fatal(&e.0));
            let stdin = std::io::stdin();
            let mut line = Vec::new();
            let mut input = stdin.lock();
            loop {
                line.clear();
                if input.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                    break;
                }
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                let key = latin1::decode(&line);
                match d.lookup(&key) {
                    Ok(Some(v)) => {
                        let _ = out.write_all(&latin1::encode(&format!("{key}\t{v}\n")));
                    }
                    Ok(None) => {}
                    Err(e) => msg::fatal(&e.to_string()),
                }
            }
        }
        "dump" => {
            let mut d =
                dict_open(spec, OpenMode::ReadOnly, dflags).unwrap_or_else(|e| msg::fatal(&e.0));
            let mut how = Seq::First;
            loop {
                match d.sequence(how) {
                    Ok(Some((k, v))) => {
                        let _ = out.write_all(&latin1::encode(&format!("{k}\t{v}\n")));
                    }
                    Ok(None) => break,
                    Err(e) => msg::fatal(&e.to_string()),
                }
                how = Seq::Next;
            }
        }
        _ => {
            eprintln!("usage: dict_db build|query|dump TYPE:NAME");
            std::process::exit(2);
        }
    }
    let _ = out.flush();
}
