//! Replaces postmap(1) of Postfix 3.7: build, query, walk and edit lookup
//! tables; also the engine behind postalias(1) (see [`crate::commands::postalias`]).
//!
//! Trusts: its command line, main.cf and the source files it is given (it is
//! not set-uid). Privilege: the invoking user; when run as root it builds a
//! table with the effective IDs of the source file's owner (unless `-o`).
//! Reads: default_database_type, smtputf8_enable, import_environment,
//! header_size_limit, mime_boundary_length_limit, mime_nesting_limit,
//! myhostname (postalias). Honours MAIL_CONFIG (which `-c` sets).
//!
//! Table types come from the registry through [`crate::global::mkmap`]; this
//! module never knows a file format.

pub mod b64;
pub mod source;

use crate::global::dict::{Dict, DictError, OpenMode, Seq, Status, flags};
use crate::global::mail_conf::MailConf;
use crate::global::mime_state::{self, HeaderClass, MimeSink, MimeState, Rec};
use crate::global::mkmap::{self, Tables};
use crate::global::msg;
use crate::util::getopt::{self, Getopt, Opt};
use crate::util::latin1;
use source::{AliasLine, Item, LogicalLines, PostmapLine};
use std::ffi::OsString;
use std::io::{BufRead, Read, Write};

/// Which command is running: they share everything but the source syntax,
/// a few messages and the output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    Postmap,
    Postalias,
}

// postmap's own flags (POSTMAP_FLAG_*).
const AS_OWNER: u32 = 1 << 0;
const SAVE_PERM: u32 = 1 << 1;
const HEADER_KEY: u32 = 1 << 2;
const BODY_KEY: u32 = 1 << 3;
const MIME_KEY: u32 = 1 << 4;
const HB_KEY: u32 = HEADER_KEY | BODY_KEY;
const FULL_KEY: u32 = BODY_KEY | MIME_KEY;
const ANY_KEY: u32 = HB_KEY | MIME_KEY;

/// Standard output as Postfix's VSTREAM_OUT: written in 4096-byte blocks and
/// on explicit flushes only, so a fatal error drops what was not flushed.
pub struct Out {
    buf: Vec<u8>,
}

const VSTREAM_BUFSIZE: usize = 4096;

impl Out {
    pub fn new() -> Out {
        Out { buf: Vec::new() }
    }

    /// Append one-char-per-byte text.
    pub fn print(&mut self, text: &str) {
        self.buf.extend_from_slice(&latin1::encode(text));
        if self.buf.len() >= VSTREAM_BUFSIZE {
            let whole = self.buf.len() / VSTREAM_BUFSIZE * VSTREAM_BUFSIZE;
            let mut so = std::io::stdout().lock();
            let _ = so.write_all(&self.buf[..whole]);
            let _ = so.flush();
            self.buf.drain(..whole);
        }
    }

    /// Write out everything buffered.
    pub fn flush(&mut self) {
        let mut so = std::io::stdout().lock();
        let _ = so.write_all(&self.buf);
        let _ = so.flush();
        self.buf.clear();
    }
}

impl Default for Out {
    fn default() -> Self {
        Out::new()
    }
}

/// Everything the command needs after option parsing and main.cf.
pub struct Ctx {
    pub cmd: Cmd,
    pub tables: Tables,
    /// default_database_type.
    pub db_type: String,
    pub myhostname: String,
    pub limits: mime_state::Limits,
    pub out: Out,
}

/// Split `type:name` at the first colon; no colon means the default type.
fn split_map<'a>(ctx: &'a Ctx, arg: &'a str) -> (&'a str, &'a str) {
    match arg.find(':') {
        Some(i) => (&arg[..i], &arg[i + 1..]),
        None => (ctx.db_type.as_str(), arg),
    }
}

/// One line of standard input without its newline (vstring_get_nonl), as C
/// text (up to a NUL); `None` at end of input.
fn read_key(inp: &mut dyn BufRead) -> Option<String> {
    let mut line = Vec::new();
    match inp.read_until(b'\n', &mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => {
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            Some(source::c_text(&line))
        }
    }
}

fn empty_result_warnings(ty: &str, name: &str, key: &str) {
    msg::warn(&format!(
        "table {ty}:{name}: key {key}: empty string result is not allowed"
    ));
    msg::warn(&format!(
        "table {ty}:{name} should return NO RESULT in case of NOT FOUND"
    ));
}

/// A lookup, decoding base64 values with -F (dict_file_lookup).
fn lookup(d: &mut dyn Dict, key: &str, rhs_is_file: bool) -> Result<Option<String>, DictError> {
    let v = d.lookup(key)?;
    match v {
        Some(v) if rhs_is_file => match b64::decode(&v) {
            Some(bytes) => Ok(Some(source::c_text(&bytes))),
            None => {
                let shown: String = v.chars().take(30).collect();
                msg::warn(&format!(
                    "table {}:{}: key {key}: malformed BASE64 value: {shown}",
                    d.type_name(),
                    d.name()
                ));
                Err(DictError::Config(String::new()))
            }
        },
        other => Ok(other),
    }
}

fn query_error(cmd: Cmd, d: &dyn Dict, e: &DictError) -> ! {
    mkmap::table_fatal(d, e, "lookup", "query error", cmd == Cmd::Postmap)
}

/// `-q key`: the first map that has the key prints its value.
fn query_one(ctx: &mut Ctx, ty: &str, name: &str, key: &str, dict_flags: u32) -> bool {
    let mut d = ctx
        .tables
        .open_dict(ty, name, OpenMode::ReadOnly, dict_flags);
    let rhs_is_file = ctx.cmd == Cmd::Postmap && dict_flags & flags::SRC_RHS_IS_FILE != 0;
    match lookup(d.as_mut(), key, rhs_is_file) {
        Ok(Some(v)) => {
            if v.is_empty() {
                empty_result_warnings(ty, name, key);
            }
            ctx.out.print(&v);
            ctx.out.print("\n");
            ctx.out.flush();
            close_quietly(d);
            true
        }
        Ok(None) => {
            ctx.out.flush();
            close_quietly(d);
            false
        }
        Err(e) => query_error(ctx.cmd, d.as_ref(), &e),
    }
}

fn close_quietly(d: Box<dyn Dict>) {
    let _ = d.close();
}

/// `-q -`: keys from standard input, each looked up in the maps in order.
fn query_stdin(ctx: &mut Ctx, maps: &[String], dict_flags: u32) -> bool {
    let mut found = false;
    let mut dicts: Vec<Option<Box<dyn Dict>>> = maps.iter().map(|_| None).collect();
    let stdin = std::io::stdin();
    let mut inp = stdin.lock();
    let rhs_is_file = ctx.cmd == Cmd::Postmap && dict_flags & flags::SRC_RHS_IS_FILE != 0;
    while let Some(key) = read_key(&mut inp) {
        for (n, map) in maps.iter().enumerate() {
            if dicts[n].is_none() {
                let (ty, name) = split_map(ctx, map);
                dicts[n] = Some(
                    ctx.tables
                        .open_dict(ty, name, OpenMode::ReadOnly, dict_flags),
                );
            }
            let Some(d) = dicts[n].as_mut() else { continue };
            match lookup(d.as_mut(), &key, rhs_is_file) {
                Ok(Some(v)) => {
                    if v.is_empty() {
                        empty_result_warnings(d.type_name(), d.name(), &key);
                    }
                    let sep = if ctx.cmd == Cmd::Postalias {
                        ":\t"
                    } else {
                        "\t"
                    };
                    ctx.out.print(&format!("{key}{sep}{v}\n"));
                    found = true;
                    break;
                }
                Ok(None) => {}
                Err(e) => query_error(ctx.cmd, d.as_ref(), &e),
            }
        }
    }
    if found {
        ctx.out.flush();
    }
    for d in dicts.into_iter().flatten() {
        close_quietly(d);
    }
    found
}

/// The header/body query state: each header or body line is a lookup key.
struct KeySink<'a> {
    ctx: &'a mut Ctx,
    maps: &'a [String],
    dicts: Vec<Option<Box<dyn Dict>>>,
    dict_flags: u32,
    header_done: bool,
    found: bool,
}

impl KeySink<'_> {
    fn query(&mut self, key: &str) {
        for n in 0..self.maps.len() {
            if self.dicts[n].is_none() {
                let (ty, name) = split_map(self.ctx, &self.maps[n]);
                let d = self
                    .ctx
                    .tables
                    .open_dict(ty, name, OpenMode::ReadOnly, self.dict_flags);
                self.dicts[n] = Some(d);
            }
            let Some(d) = self.dicts[n].as_mut() else {
                continue;
            };
            match d.lookup(key) {
                Ok(Some(v)) => {
                    if v.is_empty() {
                        empty_result_warnings(d.type_name(), d.name(), key);
                    }
                    self.ctx.out.print(&format!("{key}\t{v}\n"));
                    self.found = true;
                    break;
                }
                Ok(None) => {}
                Err(e) => mkmap::table_fatal(d.as_ref(), &e, "lookup", "query error", false),
            }
        }
    }
}

impl MimeSink for KeySink<'_> {
    fn header(&mut self, _class: HeaderClass, text: &str) {
        self.query(text);
    }
    fn head_end(&mut self) {
        self.header_done = true;
    }
    fn body(&mut self, _rec: Rec, text: &str) {
        self.query(text);
    }
}

/// `-b`/`-h`/`-m` with `-q -`: a message on standard input; each header
/// and/or body line is looked up as the cleanup daemon's checks would.
fn query_message(ctx: &mut Ctx, maps: &[String], pm_flags: u32, dict_flags: u32) -> bool {
    let options = if pm_flags & MIME_KEY != 0 {
        0
    } else {
        mime_state::opt::DISABLE_MIME
    };
    let mut st = MimeState::new(options, ctx.limits);
    st.want_header = pm_flags & HEADER_KEY != 0;
    st.want_head_end = pm_flags & FULL_KEY == 0;
    st.want_body = pm_flags & BODY_KEY != 0;
    let n = maps.len();
    let mut sink = KeySink {
        ctx,
        maps,
        dicts: (0..n).map(|_| None).collect(),
        dict_flags,
        header_done: false,
        found: false,
    };
    let stdin = std::io::stdin();
    let mut inp = stdin.lock();
    let mut errs = 0;
    while let Some(line) = read_line_raw(&mut inp) {
        if sink.header_done || errs != 0 {
            break;
        }
        errs = st.update(&mut sink, Rec::Norm, &line);
    }
    if errs == 0 {
        errs = st.update(&mut sink, Rec::End, "");
    }
    if errs != 0 {
        msg::fatal(&format!(
            "message format error: {}",
            mime_state::err::detail(errs).1
        ));
    }
    let found = sink.found;
    let dicts = std::mem::take(&mut sink.dicts);
    if found {
        sink.ctx.out.flush();
    }
    for d in dicts.into_iter().flatten() {
        close_quietly(d);
    }
    found
}

/// One input line for the MIME parser: without its newline, up to a NUL.
fn read_line_raw(inp: &mut dyn BufRead) -> Option<String> {
    read_key(inp)
}

/// Open a map for deletes: Postfix asks for O_RDWR (O_RDWR|O_CREAT for
/// proxy); our nearest mode is read-write. Each table type decides whether
/// that is allowed (texthash, regexp ... refuse) or creates a missing table
/// (lmdb does, as in Postfix).
fn open_for_delete(ctx: &Ctx, ty: &str, name: &str, dict_flags: u32) -> Box<dyn Dict> {
    ctx.tables
        .open_dict(ty, name, OpenMode::ReadWrite, dict_flags)
}

fn delete_key(d: &mut dyn Dict, key: &str) -> bool {
    match d.delete(key) {
        Ok(Status::Success) => true,
        Ok(Status::Fail) => false,
        Err(e) => mkmap::table_fatal(d, &e, "delete", "delete error", false),
    }
}

fn close_checked(d: Box<dyn Dict>) {
    let (ty, name) = (d.type_name().to_string(), d.name().to_string());
    if let Err(e) = d.close() {
        let t = e.to_string();
        if t.is_empty() {
            msg::fatal(&format!("table {ty}:{name}: close error"));
        }
        msg::fatal(&t);
    }
}

/// `-d key`: delete from every map; true if any had it.
fn delete_one(ctx: &Ctx, ty: &str, name: &str, key: &str, dict_flags: u32) -> bool {
    let mut d = open_for_delete(ctx, ty, name, dict_flags);
    let found = delete_key(d.as_mut(), key);
    close_checked(d);
    found
}

/// `-d -`: keys from standard input, deleted from every map.
fn delete_stdin(ctx: &Ctx, maps: &[String], dict_flags: u32) -> bool {
    let mut dicts: Vec<Box<dyn Dict>> = maps
        .iter()
        .map(|m| {
            let (ty, name) = split_map(ctx, m);
            open_for_delete(ctx, ty, name, dict_flags)
        })
        .collect();
    let mut found = false;
    let stdin = std::io::stdin();
    let mut inp = stdin.lock();
    while let Some(key) = read_key(&mut inp) {
        for d in dicts.iter_mut() {
            found |= delete_key(d.as_mut(), &key);
        }
    }
    for d in dicts {
        close_checked(d);
    }
    found
}

/// `-s`: print every entry of a map.
fn sequence(ctx: &mut Ctx, ty: &str, name: &str, dict_flags: u32) {
    if ty == "proxy" {
        msg::fatal("can't sequence maps via the proxy service");
    }
    let mut d = ctx
        .tables
        .open_dict(ty, name, OpenMode::ReadOnly, dict_flags);
    let rhs_is_file = ctx.cmd == Cmd::Postmap && dict_flags & flags::SRC_RHS_IS_FILE != 0;
    let mut how = Seq::First;
    loop {
        let (key, mut value) = match d.sequence(how) {
            Ok(Some(kv)) => kv,
            Ok(None) => break,
            Err(e) => mkmap::table_fatal(d.as_ref(), &e, "sequence", "sequence error", false),
        };
        how = Seq::Next;
        if key.is_empty() {
            msg::warn(&format!(
                "table {ty}:{name}: empty lookup key value is not allowed"
            ));
        } else if value.is_empty() {
            empty_result_warnings(ty, name, &key);
        }
        if rhs_is_file {
            match b64::decode(&value) {
                Some(bytes) => value = source::c_text(&bytes),
                None => {
                    let shown: String = value.chars().take(30).collect();
                    msg::warn(&format!(
                        "table {}:{}: key {key}: malformed BASE64 value: {shown}",
                        d.type_name(),
                        d.name()
                    ));
                    continue;
                }
            }
        }
        let sep = if ctx.cmd == Cmd::Postalias {
            ":\t"
        } else {
            "\t"
        };
        ctx.out.print(&format!("{key}{sep}{value}\n"));
    }
    ctx.out.flush();
    close_quietly(d);
}

/// Read the files named in a -F value (comma/blank separated) and return
/// their contents base64-encoded, or Postfix's error text.
fn files_to_b64(value: &str) -> Result<String, String> {
    let names: Vec<&str> = value
        .split([',', ' ', '\t', '\r', '\n'])
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() {
        return Err(format!("empty pathname list: >>{value}<<'"));
    }
    let mut buf: Vec<u8> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let mut f = std::fs::File::open(latin1::to_path(n))
            .map_err(|e| format!("open {n}: {}", crate::global::config_file::errno_text(&e)))?;
        f.read_to_end(&mut buf)
            .map_err(|e| format!("read {n}: {}", crate::global::config_file::errno_text(&e)))?;
        if i + 1 < names.len() {
            buf.push(b'\n');
        }
    }
    Ok(b64::encode(&buf))
}

/// Add one entry while building; a failed write is fatal.
fn append(d: &mut dyn Dict, key: &str, value: &str) {
    if let Err(e) = d.update(key, value) {
        mkmap::table_fatal(d, &e, "update", "write error", false);
    }
}

/// Build (or with `-i` update from standard input) one table.
fn build(ctx: &Ctx, ty: &str, path: &str, pm_flags: u32, create: bool, mut dict_flags: u32) {
    use std::os::unix::fs::MetadataExt;
    let (data, src_name, meta) = if create {
        if ty == "proxy" {
            msg::fatal("can't create maps via the proxy service");
        }
        dict_flags |= flags::BULK_UPDATE;
        let p = latin1::to_path(path);
        let data = match std::fs::read(&p) {
            Ok(d) => d,
            // Postfix opens a directory fine; reading it then gives EOF.
            Err(e) if e.raw_os_error() == Some(libc::EISDIR) => Vec::new(),
            Err(e) => msg::fatal(&format!(
                "open {path}: {}",
                crate::global::config_file::errno_text(&e)
            )),
        };
        let meta = std::fs::metadata(&p).ok();
        (data, path.to_string(), meta)
    } else {
        let mut d = Vec::new();
        let _ = std::io::stdin().lock().read_to_end(&mut d);
        let meta = std::fs::metadata("/dev/stdin").ok();
        (d, "stdin".to_string(), meta)
    };
    let regular = meta.as_ref().is_some_and(|m| m.file_type().is_file());
    let saved_mask = if pm_flags & SAVE_PERM != 0 && regular {
        let mode = meta.as_ref().map(|m| m.mode()).unwrap_or(0o644);
        Some(crate::sys::umask_swap(0o022 | (!mode & 0o077)))
    } else {
        None
    };
    if pm_flags & AS_OWNER != 0
        && crate::sys::getuid() == 0
        && let Some(m) = &meta
        && (m.uid() != crate::sys::geteuid() || m.gid() != crate::sys::getegid())
        && let Err(e) = crate::sys::set_eugid(m.uid(), m.gid())
    {
        msg::fatal(&e);
    }
    let mut d = ctx.tables.mkmap_open(ty, path, create, dict_flags);
    if let Some(m) = saved_mask {
        crate::sys::umask_swap(m);
    }
    let rhs_is_file = dict_flags & flags::SRC_RHS_IS_FILE != 0;
    for item in LogicalLines::new(&data, &src_name) {
        let (line, lineno) = match item {
            Item::Warning(w) => {
                msg::warn(&w);
                continue;
            }
            Item::Line(l, n) => (l, n),
        };
        let text = source::c_text(&line);
        if d.flags() & flags::UTF8_ACTIVE != 0 && source::bad_utf8(&line) {
            msg::warn(&format!(
                "{src_name}, line {lineno}: non-UTF-8 input \"{text}\" -- ignoring this line"
            ));
            continue;
        }
        match ctx.cmd {
            Cmd::Postmap => match source::split_postmap(&text) {
                PostmapLine::Unbalanced => msg::warn(&format!(
                    "{src_name}, line {lineno}: unbalanced '\"' in '{text}' -- ignoring this line"
                )),
                PostmapLine::BadFormat => msg::warn(&format!(
                    "{src_name}, line {lineno}: expected format: key whitespace value"
                )),
                PostmapLine::Entry(key, value, colon) => {
                    if colon {
                        msg::warn(&format!(
                            "{src_name}, line {lineno}: record is in \"key: value\" format; is this an alias file?"
                        ));
                    }
                    let value = if rhs_is_file {
                        match files_to_b64(&value) {
                            Ok(v) => v,
                            Err(err) => {
                                msg::warn(&format!(
                                    "{src_name}, line {lineno}: {err}: skipping this entry"
                                ));
                                continue;
                            }
                        }
                    } else {
                        value
                    };
                    append(d.as_mut(), &key, &value);
                }
            },
            Cmd::Postalias => match source::split_alias(&text) {
                AliasLine::Empty => {}
                AliasLine::NeedPair => {
                    msg::warn(&format!("{src_name}, line {lineno}: need name:value pair"))
                }
                AliasLine::NotLocal => {
                    msg::warn(&format!("{src_name}, line {lineno}: name must be local"))
                }
                AliasLine::Entry(key, value) => append(d.as_mut(), &key, &value),
            },
        }
    }
    if ctx.cmd == Cmd::Postalias {
        if !create {
            let f = d.flags();
            d.set_flags(f | flags::DUP_REPLACE);
        }
        append(d.as_mut(), "@", "@");
        let f = d.flags();
        d.set_flags((f & !flags::TRY1NULL) | flags::TRY0NULL);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|t| t.as_secs())
            .unwrap_or(0);
        let f = d.flags();
        d.set_flags(f & !flags::FOLD_FIX);
        append(d.as_mut(), "YP_LAST_MODIFIED", &format!("{now:010}"));
        append(d.as_mut(), "YP_MASTER_NAME", &ctx.myhostname);
    }
    close_checked(d);
}

fn usage(cmd: Cmd, prog: &str) -> ! {
    match cmd {
        Cmd::Postmap => msg::fatal(&format!(
            "usage: {prog} [-bfFhimnNoprsuUvw] [-c config_dir] [-d key] [-q key] [map_type:]file..."
        )),
        Cmd::Postalias => msg::fatal(&format!(
            "usage: {prog} [-Nfinoprsuvw] [-c config_dir] [-d key] [-q key] [map_type:]file..."
        )),
    }
}

/// Apply import_environment's `name=value` settings (Postfix's update_env).
fn import_environment(conf: &MailConf) {
    let Ok(Some(v)) = conf.lookup_eval("import_environment") else {
        return;
    };
    for item in v
        .split([',', ' ', '\t', '\r', '\n'])
        .filter(|s| !s.is_empty())
    {
        if let Some(i) = item.find('=') {
            crate::sys::setenv(&item[..i], &item[i + 1..]);
        }
    }
}

/// The postmap/postalias command: argv in, exit status out.
pub fn run(cmd: Cmd, args: Vec<OsString>) -> i32 {
    let mut args: Vec<String> = args.iter().map(|a| latin1::from_os(a)).collect();
    if args.is_empty() {
        args.push(match cmd {
            Cmd::Postmap => "postmap".into(),
            Cmd::Postalias => "postalias".into(),
        });
    }
    // The message prefix is argv[0]'s last component (unless it ends in '/').
    let prog = match args[0].rfind('/') {
        Some(i) if i + 1 < args[0].len() => args[0][i + 1..].to_string(),
        _ => args[0].clone(),
    };
    args[0] = prog.clone();
    msg::init(&prog);
    crate::sys::set_umask(0o022);
    if std::env::var_os("MAIL_VERBOSE").is_some() {
        msg::more_verbose();
    }

    let mut pm_flags = AS_OWNER | SAVE_PERM;
    let mut create = true;
    let mut dict_flags = flags::DUP_WARN | flags::FOLD_FIX | flags::UTF8_REQUEST;
    let mut query: Option<String> = None;
    let mut delkey: Option<String> = None;
    let mut sequence_mode = false;
    let mut force_utf8 = false;
    let mut config_dir: Option<String> = None;
    let spec = match cmd {
        Cmd::Postmap => "bc:d:fFhimnNopq:rsuUvw",
        Cmd::Postalias => "Nc:d:finopq:rsuvw",
    };
    let mut g = Getopt::new(&args, spec);
    while let Some(o) = g.next_opt() {
        let (c, optarg) = match o {
            Opt::Flag(c, a) => (c, a.unwrap_or_default()),
            bad => {
                if let Some(t) = getopt::error_text(&prog, &bad) {
                    let mut e = latin1::encode(&t);
                    e.push(b'\n');
                    let _ = std::io::stderr().write_all(&e);
                }
                usage(cmd, &prog);
            }
        };
        match c {
            'N' => {
                dict_flags |= flags::TRY1NULL;
                dict_flags &= !flags::TRY0NULL;
            }
            'b' => pm_flags |= BODY_KEY,
            'c' => {
                crate::sys::setenv("MAIL_CONFIG", &optarg);
                config_dir = Some(optarg);
            }
            'd' => {
                if sequence_mode || query.is_some() || delkey.is_some() {
                    msg::fatal("specify only one of -s -q or -d");
                }
                delkey = Some(optarg);
            }
            'f' => dict_flags &= !flags::FOLD_FIX,
            'F' => dict_flags |= flags::SRC_RHS_IS_FILE,
            'h' => pm_flags |= HEADER_KEY,
            'i' => create = false,
            'm' => pm_flags |= MIME_KEY,
            'n' => {
                dict_flags |= flags::TRY0NULL;
                dict_flags &= !flags::TRY1NULL;
            }
            'o' => pm_flags &= !AS_OWNER,
            'p' => pm_flags &= !SAVE_PERM,
            'q' => {
                if sequence_mode || query.is_some() || delkey.is_some() {
                    msg::fatal("specify only one of -s -q or -d");
                }
                query = Some(optarg);
            }
            'r' => {
                dict_flags &= !(flags::DUP_WARN | flags::DUP_IGNORE);
                dict_flags |= flags::DUP_REPLACE;
            }
            's' => {
                if query.is_some() || delkey.is_some() {
                    msg::fatal("specify only one of -s or -q or -d");
                }
                sequence_mode = true;
            }
            'u' => dict_flags &= !flags::UTF8_REQUEST,
            'U' => force_utf8 = true,
            'v' => msg::more_verbose(),
            'w' => {
                dict_flags &= !(flags::DUP_WARN | flags::DUP_REPLACE);
                dict_flags |= flags::DUP_IGNORE;
            }
            _ => usage(cmd, &prog),
        }
    }
    let optind = g.optind;
    let operands: Vec<String> = args[optind..].to_vec();

    let conf = match MailConf::read(config_dir.as_deref()) {
        Ok(c) => c,
        Err(e) => msg::fatal(&e.0),
    };
    import_environment(&conf);
    // Database clients (memcache:prefix) read prefix_* parameters from it.
    crate::global::cfg_parser::set_main_conf(&conf);
    let fatal_conf = |e: crate::global::mail_conf::ConfError| -> ! { msg::fatal(&e.0) };
    let utf8_enable = conf
        .get_bool("smtputf8_enable")
        .unwrap_or_else(|e| fatal_conf(e));
    msg::set_utf8_enable(utf8_enable);
    let db_type = conf
        .get_str("default_database_type", 1, 0)
        .unwrap_or_else(|e| fatal_conf(e));
    let myhostname = conf
        .get_str("myhostname", 1, 0)
        .unwrap_or_else(|e| fatal_conf(e));
    let limits = mime_state::Limits {
        header_size_limit: conf
            .get_int("header_size_limit", 1, 0)
            .unwrap_or_else(|e| fatal_conf(e)) as usize,
        mime_boundary_length_limit: conf
            .get_int("mime_boundary_length_limit", 1, 0)
            .unwrap_or_else(|e| fatal_conf(e)) as usize,
        mime_nesting_limit: conf
            .get_int("mime_nesting_limit", 1, 0)
            .unwrap_or_else(|e| fatal_conf(e)),
    };
    let mut ctx = Ctx {
        cmd,
        tables: Tables::registry(utf8_enable),
        db_type,
        myhostname,
        limits,
        out: Out::new(),
    };
    run_modes(
        &mut ctx,
        &prog,
        RunArgs {
            operands,
            pm_flags,
            create,
            dict_flags,
            query,
            delkey,
            sequence_mode,
            force_utf8,
        },
    )
}

/// The parsed command line.
pub struct RunArgs {
    pub operands: Vec<String>,
    pm_flags: u32,
    create: bool,
    dict_flags: u32,
    query: Option<String>,
    delkey: Option<String>,
    sequence_mode: bool,
    force_utf8: bool,
}

fn run_modes(ctx: &mut Ctx, prog: &str, a: RunArgs) -> i32 {
    let cmd = ctx.cmd;
    let mut dict_flags = a.dict_flags;
    let pm_flags = a.pm_flags;
    if cmd == Cmd::Postmap {
        if a.query.as_deref() != Some("-") && pm_flags & ANY_KEY != 0 {
            msg::fatal("specify -b -h or -m only with \"-q -\"");
        }
        if pm_flags & ANY_KEY != 0 && pm_flags & ANY_KEY == pm_flags & MIME_KEY {
            msg::warn("ignoring -m option without -b or -h");
        }
        if pm_flags & (ANY_KEY & !MIME_KEY) != 0 && !a.force_utf8 {
            dict_flags &= !flags::UTF8_REQUEST;
        }
    }
    let ops = &a.operands;
    if let Some(key) = &a.delkey {
        if ops.is_empty() {
            usage(cmd, prog);
        }
        let f = dict_flags | flags::LOCK;
        if key == "-" {
            return i32::from(!delete_stdin(ctx, ops, f));
        }
        let mut found = false;
        for m in ops {
            let (ty, name) = split_map(ctx, m);
            found |= delete_one(ctx, ty, name, key, f);
        }
        i32::from(!found)
    } else if let Some(key) = &a.query {
        if ops.is_empty() {
            usage(cmd, prog);
        }
        let f = dict_flags | flags::LOCK;
        if key == "-" {
            let found = if cmd == Cmd::Postmap && pm_flags & HB_KEY != 0 {
                query_message(ctx, ops, pm_flags, f)
            } else {
                query_stdin(ctx, ops, f)
            };
            return i32::from(!found);
        }
        for m in ops {
            let (ty, name) = {
                let (t, n) = split_map(ctx, m);
                (t.to_string(), n.to_string())
            };
            if query_one(ctx, &ty, &name, key, f) {
                return 0;
            }
        }
        1
    } else if a.sequence_mode {
        if let Some(m) = ops.first() {
            let (ty, name) = {
                let (t, n) = split_map(ctx, m);
                (t.to_string(), n.to_string())
            };
            sequence(ctx, &ty, &name, dict_flags | flags::LOCK);
            return 0;
        }
        1
    } else {
        if ops.is_empty() {
            usage(cmd, prog);
        }
        for m in ops {
            let (ty, name) = split_map(ctx, m);
            build(ctx, ty, name, pm_flags, a.create, dict_flags);
        }
        0
    }
}

/// postmap's entry point.
pub fn main(args: Vec<OsString>) -> i32 {
    run(Cmd::Postmap, args)
}

#[cfg(test)]
mod tests {
    //! The build loop against an in-memory table (a test double registered
    //! as `hash`), checking what reaches the table.
    use super::*;
    use crate::global::dict::OpenError;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// (key, value, flags at the time of the update) per table name.
    type Store = HashMap<String, Vec<(String, String, u32)>>;

    thread_local! {
        static STORE: RefCell<Store> = RefCell::new(HashMap::new());
    }

    struct Mem {
        name: String,
        flags: u32,
        rows: Vec<(String, String, u32)>,
    }

    impl Dict for Mem {
        fn type_name(&self) -> &str {
            "hash"
        }
        fn name(&self) -> &str {
            &self.name
        }
        fn flags(&self) -> u32 {
            self.flags
        }
        fn set_flags(&mut self, f: u32) {
            self.flags = f;
        }
        fn lookup(&mut self, key: &str) -> Result<Option<String>, DictError> {
            let k = if self.flags & flags::FOLD_FIX != 0 {
                key.to_ascii_lowercase()
            } else {
                key.to_string()
            };
            Ok(self.rows.iter().find(|r| r.0 == k).map(|r| r.1.clone()))
        }
        fn update(&mut self, key: &str, value: &str) -> Result<Status, DictError> {
            let k = if self.flags & flags::FOLD_FIX != 0 {
                key.to_ascii_lowercase()
            } else {
                key.to_string()
            };
            if let Some(i) = self.rows.iter().position(|r| r.0 == k) {
                if self.flags & flags::DUP_REPLACE != 0 {
                    self.rows[i] = (k, value.to_string(), self.flags);
                    return Ok(Status::Success);
                }
                return Ok(Status::Fail);
            }
            self.rows.push((k, value.to_string(), self.flags));
            Ok(Status::Success)
        }
        fn close(self: Box<Self>) -> Result<(), DictError> {
            STORE.with(|s| s.borrow_mut().insert(self.name.clone(), self.rows));
            Ok(())
        }
    }

    fn mem_open(spec: &str, _mode: OpenMode, f: u32) -> Result<Box<dyn Dict>, OpenError> {
        let name = spec
            .split_once(':')
            .map(|x| x.1)
            .unwrap_or(spec)
            .to_string();
        Ok(Box::new(Mem {
            name,
            flags: f | flags::FIXED,
            rows: Vec::new(),
        }))
    }

    fn ctx(cmd: Cmd) -> Ctx {
        Ctx {
            cmd,
            tables: Tables {
                open: mem_open,
                type_names: || vec!["hash"],
                utf8_enable: true,
            },
            db_type: "hash".into(),
            myhostname: "mx.example.org".into(),
            limits: mime_state::Limits::default(),
            out: Out::new(),
        }
    }

    fn build_file(
        cmd: Cmd,
        name: &str,
        text: &[u8],
        dict_flags: u32,
    ) -> Vec<(String, String, u32)> {
        let path = std::env::temp_dir().join(format!("rostfix-pm-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let p = path.to_string_lossy().into_owned();
        build(&ctx(cmd), "hash", &p, SAVE_PERM, true, dict_flags);
        std::fs::remove_file(&path).unwrap();
        STORE.with(|s| s.borrow_mut().remove(&p).unwrap())
    }

    const DEFAULT: u32 = flags::DUP_WARN | flags::FOLD_FIX | flags::UTF8_REQUEST;

    #[test]
    fn postmap_source_reaches_the_table() {
        let rows = build_file(
            Cmd::Postmap,
            "src",
            "# c\nFoo  bar\nfoo second\nB\u{c4}R x\n  cont\n\"q k\" v\nbad\nk\\ y  z \n".as_bytes(),
            DEFAULT,
        );
        let kv: Vec<(&str, &str)> = rows.iter().map(|r| (r.0.as_str(), r.1.as_str())).collect();
        let bar = crate::util::latin1::decode("bär".as_bytes());
        assert_eq!(
            kv,
            vec![
                ("foo", "bar"),
                (bar.as_str(), "x  cont"),
                ("\"q k\"", "v"),
                ("k\\ y", "z")
            ]
        );
        // The UTF-8 layer folded, so the table saw FOLD_FIX off.
        assert_eq!(rows[0].2 & flags::FOLD_FIX, 0);
        assert_ne!(rows[0].2 & flags::BULK_UPDATE, 0);
    }

    #[test]
    fn postmap_without_utf8_request_lets_the_table_fold() {
        let rows = build_file(
            Cmd::Postmap,
            "nou",
            b"KEY v\n",
            DEFAULT & !flags::UTF8_REQUEST,
        );
        assert_eq!(rows[0].0, "key");
        assert_ne!(rows[0].2 & flags::FOLD_FIX, 0);
        let rows = build_file(
            Cmd::Postmap,
            "f",
            b"KEY v\nkey w\n",
            (DEFAULT | flags::DUP_REPLACE) & !flags::FOLD_FIX,
        );
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn postalias_adds_sendmail_and_nis_entries() {
        let rows = build_file(
            Cmd::Postalias,
            "aliases",
            b"Root: a, \"|cmd x\"\n  more\nbad\n\"Q N\": y\n",
            DEFAULT,
        );
        let keys: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(
            keys,
            vec!["root", "q n", "@", "YP_LAST_MODIFIED", "YP_MASTER_NAME"]
        );
        assert_eq!(rows[0].1, "a, \"|cmd x\" more");
        assert_eq!(rows[2].1, "@");
        assert_eq!(rows[3].1.len(), 10);
        assert!(rows[3].1.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(rows[4].1, "mx.example.org");
        // The NIS entries are written without a trailing NUL.
        assert_ne!(rows[3].2 & flags::TRY0NULL, 0);
        assert_eq!(rows[3].2 & flags::TRY1NULL, 0);
        assert_eq!(rows[2].2 & flags::TRY0NULL, 0);
    }
}
