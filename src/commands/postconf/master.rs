//! master.cf for postconf: reading and parsing entries, and showing them
//! with -M (whole entries), -F (fields) and -P (`-o` parameters).
//!
//! Mirrors Postfix 3.7's postconf: an entry is split into blank-separated
//! fields where `{ }` groups text; the first eight fields are checked (type,
//! the y/n/- flags, wakeup, process limit); daemon options are normalised so
//! that `-o` and its `name=value` are separate fields and `{ name = value }`
//! becomes `name=value`. Printing uses Postfix's column layout.

use super::core::{MasterEnt, Pcf};
use super::mode::*;
use super::print;
use crate::global::msg;
use crate::global::namevalues::NameValues;
use crate::global::readlline;
use crate::util::latin1;

/// The fields every entry has: service, type, private, unprivileged, chroot,
/// wakeup, process limit, command.
pub const MIN_FIELDS: usize = 8;
/// Index of the command field.
pub const FLD_CMD: usize = 7;
/// Field separators inside an entry.
pub const BLANKS: &str = " \t\r\n";

/// Field names as -F shows and accepts them, by field index.
pub const FIELD_NAMES: [&str; MIN_FIELDS] = [
    "service",
    "type",
    "private",
    "unprivileged",
    "chroot",
    "wakeup",
    "process_limit",
    "command",
];

const VALID_TYPES: &[&str] = &["unix", "fifo", "inet", "pass", "unix-dgram"];

/// The preferred column of each of the first eight fields.
const COLUMN_GOAL: [usize; MIN_FIELDS] = [0, 11, 17, 25, 33, 41, 49, 57];

/// Display length of one-char-per-byte text.
fn clen(s: &str) -> usize {
    s.chars().count()
}

fn has_blank(s: &str) -> bool {
    s.contains(|c| BLANKS.contains(c))
}

/// Whether a daemon option takes a value. Like Postfix's strchr() test, an
/// option `-` by itself (whose second character is the string terminator)
/// counts as taking one.
fn expects_value(arg: &str) -> bool {
    match arg.chars().nth(1) {
        None => true,
        Some(c) => DAEMON_OPTIONS_EXPECTING_VALUE.contains(c),
    }
}

/// Whether a field ends the daemon options.
fn ends_options(arg: &str) -> bool {
    !arg.starts_with('-') || arg == "--"
}

pub use crate::global::master_cf::{extract_braced, split_quoted};

fn extract_field(argv: &mut [String], field: usize) {
    let (text, err) = extract_braced(&argv[field]);
    if let Some(e) = err {
        msg::warn(&format!("master.cf: {e}"));
    }
    argv[field] = text;
}

fn normalize_nameval(argv: &mut [String], field: usize) {
    match readlline::split_nameval(&argv[field]) {
        Err(e) => msg::warn(&format!("master.cf: {e}: \"{}\"", argv[field])),
        Ok((name, value)) => argv[field] = format!("{name}={value}"),
    }
}

/// Bring daemon options into canonical form: `-vo` becomes `-v` `-o`,
/// `-oname=value` becomes `-o` `name=value`, and a `{ }` value or argument
/// loses its braces (`-o { name = value }` becomes `-o` `name=value`).
pub fn normalize_daemon_args(argv: &mut Vec<String>) {
    let mut field = MIN_FIELDS;
    while field < argv.len() {
        if ends_options(&argv[field]) {
            break;
        }
        // Split "-stuffozz" into "-stuff" and "-ozz".
        let split_at = argv[field]
            .char_indices()
            .skip(1)
            .find(|&(i, c)| i > 1 && DAEMON_OPTIONS_EXPECTING_VALUE.contains(c))
            .map(|(i, _)| i);
        if let Some(i) = split_at {
            let tail = format!("-{}", &argv[field][i..]);
            argv[field].truncate(i);
            argv.insert(field + 1, tail);
        }
        let arg = argv[field].clone();
        if !expects_value(&arg) {
            field += 1;
            continue;
        }
        let extract = if arg.chars().count() > 2 {
            // Split "-oname=value" into "-o" "name=value".
            let mut it = arg.char_indices();
            it.next();
            it.next();
            let cut = it.next().map(|(i, _)| i).unwrap_or(arg.len());
            argv.insert(field + 1, arg[cut..].to_string());
            argv[field].truncate(cut);
            field += 1;
            argv[field].starts_with('{')
        } else if field + 1 < argv.len() {
            field += 1;
            argv[field].starts_with('{')
        } else {
            false
        };
        if extract {
            extract_field(argv, field);
            if argv[field - 1].chars().nth(1) == Some('o') {
                normalize_nameval(argv, field);
            }
        }
        field += 1;
    }
    while field < argv.len() {
        if argv[field].starts_with('{') {
            extract_field(argv, field);
        }
        field += 1;
    }
}

/// A fatal error whose text may hold newlines (they become spaces).
fn fix_fatal(text: &str) -> ! {
    msg::fatal(&text.replace('\n', " "))
}

/// Check the first seven fields; `raw` is the text shown in errors.
pub fn check_master_entry(argv: &[String], raw: &str) {
    let t = &argv[1];
    if !VALID_TYPES.contains(&t.as_str()) {
        fix_fatal(&format!("invalid type field \"{t}\" in \"{raw}\""));
    }
    for (field, name) in FIELD_NAMES.iter().enumerate().take(5).skip(2) {
        let v = &argv[field];
        if v.chars().count() != 1 || !"yn-".contains(v.as_str()) {
            fix_fatal(&format!("invalid {name} field \"{v}\" in \"{raw}\""));
        }
    }
    let w = &argv[5];
    let body = w.strip_suffix('?').unwrap_or(w);
    let digits = w.chars().take_while(|c| c.is_ascii_digit()).count();
    if !(w.starts_with('-') && clen(body) == 1) && digits != clen(body) {
        fix_fatal(&format!("invalid wakeup field \"{w}\" in \"{raw}\""));
    }
    let p = &argv[6];
    if p != "-" && !p.chars().all(|c| c.is_ascii_digit()) {
        fix_fatal(&format!("invalid process_limit field \"{p}\" in \"{raw}\""));
    }
}

/// Parse one (possibly multi-line) master.cf entry. The only error returned
/// is "bad field count"; bad field values are fatal.
pub fn parse_master_entry(text: &str) -> Result<MasterEnt, &'static str> {
    let mut argv = split_quoted(text, BLANKS);
    if argv.len() < MIN_FIELDS {
        return Err("bad field count");
    }
    check_master_entry(&argv, text);
    normalize_daemon_args(&mut argv);
    Ok(new_entry(argv))
}

/// A master.cf entry from its normalised fields: its name space and its
/// read-only process_name and service_name.
pub fn new_entry(argv: Vec<String>) -> MasterEnt {
    let cmd = &argv[FLD_CMD];
    let process_name = cmd.rsplit('/').next().unwrap_or(cmd).to_string();
    let service_name = if process_name != argv[0] {
        argv[0].clone()
    } else {
        process_name.clone()
    };
    let mut ro = NameValues::new();
    ro.set("process_name", &process_name);
    ro.set("service_name", &service_name);
    MasterEnt {
        name_space: format!("{}/{}", argv[0], argv[1]),
        argv,
        all_params: None,
        ro_params: Some(ro),
        valid_names: None,
    }
}

/// Read master.cf into `pcf.masters`. A missing file is fatal or a warning.
pub fn read_master(pcf: &mut Pcf, fail_on_open_error: bool) {
    if pcf.config_dir.is_empty() {
        pcf.set_config_dir();
    }
    let path = format!("{}/master.cf", pcf.config_dir);
    pcf.master_read = true;
    let data = match std::fs::read(latin1::to_path(&path)) {
        Ok(d) => d,
        // Postfix opens a directory and then reads nothing from it.
        Err(e) if e.raw_os_error() == Some(libc::EISDIR) => Vec::new(),
        Err(e) => {
            let text = format!("open {path}: {}", super::core::errno_text(&e));
            if fail_on_open_error {
                msg::fatal(&text);
            }
            msg::warn(&text);
            return;
        }
    };
    let text = latin1::decode(&data);
    for line in readlline::read_logical_lines(&text, &path) {
        match parse_master_entry(&line.text) {
            Ok(ent) => pcf.masters.push(ent),
            Err(e) => msg::fatal(&format!("file {path}: line {}: {e}", line.first_line)),
        }
    }
}

/// Format one entry in Postfix's column layout (with FOLD_LINE, long lines
/// are broken and continued with four spaces). `expand` rewrites `-o`
/// values for -x.
pub fn format_master_entry(
    mode: u32,
    argv: &[String],
    expand: &mut dyn FnMut(&str) -> String,
) -> String {
    let mut out = String::new();
    let mut line_len = 0usize;
    for (field, arg) in argv.iter().enumerate().take(MIN_FIELDS) {
        if line_len > 0 {
            loop {
                out.push(' ');
                line_len += 1;
                if line_len >= COLUMN_GOAL[field] {
                    break;
                }
            }
        }
        out.push_str(arg);
        line_len += clen(arg);
    }
    format_command_args(mode, argv, MIN_FIELDS, 3, &mut out, &mut line_len, expand);
    out.push('\n');
    out
}

/// The daemon options and arguments after the command. `pair_extra` is what
/// an option and its value add to the length beyond their own lengths
/// (Postfix uses 3 for -M and 1 for -F).
fn format_command_args(
    mode: u32,
    argv: &[String],
    first: usize,
    pair_extra: usize,
    out: &mut String,
    line_len: &mut usize,
    expand: &mut dyn FnMut(&str) -> String,
) {
    let mut in_options = true;
    let mut field = first;
    while field < argv.len() {
        let arg = &argv[field];
        let mut arg_len = clen(arg);
        let mut aval: Option<String> = None;
        let mut need_parens = false;
        if in_options {
            if ends_options(arg) {
                in_options = false;
            } else if expects_value(arg) && field + 1 < argv.len() {
                *line_len = LINE_LIMIT;
                let mut v = argv[field + 1].clone();
                if arg == "-o" && mode & SHOW_EVAL != 0 {
                    v = expand(&v);
                }
                arg_len += clen(&v) + pair_extra;
                need_parens = has_blank(&v);
                if need_parens {
                    arg_len += 2;
                }
                aval = Some(v);
            }
        } else {
            need_parens = has_blank(arg);
        }
        if *line_len > INDENT_LEN {
            if mode & FOLD_LINE == 0 || *line_len + 1 + arg_len < LINE_LIMIT {
                out.push(' ');
                *line_len += 1;
            } else {
                out.push('\n');
                out.push_str(INDENT_TEXT);
                *line_len = INDENT_LEN;
            }
        }
        let brace = !in_options && need_parens;
        if brace {
            out.push('{');
            *line_len += 1;
        }
        out.push_str(arg);
        *line_len += clen(arg);
        if brace {
            out.push('}');
            *line_len += 1;
        }
        if let Some(v) = aval {
            out.push(' ');
            if need_parens {
                out.push('{');
            }
            out.push_str(&v);
            if need_parens {
                out.push('}');
            }
            field += 1;
            *line_len = LINE_LIMIT;
        }
        field += 1;
    }
}

/// The `-o name=value` settings of an entry's normalised fields, in order,
/// found the way Postfix's postconf finds them: daemon options end at the
/// first non-option or `--`, an option that takes a value (including a bare
/// `-`) skips the next field, and a value without `=` is ignored.
pub fn option_settings(argv: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut field = MIN_FIELDS;
    while field < argv.len() {
        let arg = &argv[field];
        if ends_options(arg) {
            break;
        }
        if expects_value(arg) && field + 1 < argv.len() {
            if arg == "-o"
                && let Ok(nv) = readlline::split_nameval(&argv[field + 1])
            {
                out.push(nv);
            }
            field += 1;
        }
        field += 1;
    }
    out
}

/// A parsed service pattern: name, type and (for -F/-P) a third part, with
/// missing parts as `*`.
pub fn parse_service_pattern(pattern: &str, min: usize, max: usize) -> Option<Vec<String>> {
    if pattern.starts_with('/') {
        return None;
    }
    let mut parts: Vec<String> = pattern
        .split('/')
        .filter(|p| !p.is_empty())
        .map(|p| p.to_string())
        .collect();
    if parts.len() < min || parts.len() > max {
        return None;
    }
    if parts.iter().any(|p| p != "*" && p.contains('*')) {
        return None;
    }
    while parts.len() < max {
        parts.push("*".to_string());
    }
    Some(parts)
}

fn match_string(pattern: &str, s: &str) -> bool {
    pattern == "*" || pattern == s
}

/// Whether a pattern's name and type select a service.
pub fn match_service(pattern: &[String], name: &str, typ: &str) -> bool {
    match_string(&pattern[0], name) && match_string(&pattern[1], typ)
}

/// A field name for -F: its index, or `None` for `*`. Unknown names are fatal.
pub fn parse_field_pattern(name: &str) -> Option<usize> {
    if name == "*" {
        return None;
    }
    match FIELD_NAMES.iter().position(|n| *n == name) {
        Some(i) => Some(i),
        None => msg::fatal(&format!("invalid service attribute name: \"{name}\"")),
    }
}

fn expander(pcf: &mut Pcf, mode: u32, index: usize) -> impl FnMut(&str) -> String + '_ {
    move |v: &str| pcf.expand_parameter_value(mode, v, Some(index))
}

fn warn_unmatched(reqs: &[(String, Vec<String>, usize)]) {
    for (raw, _, count) in reqs {
        if *count == 0 {
            msg::warn(&format!("unmatched request: \"{raw}\""));
        }
    }
}

/// postconf -M: whole entries, all or those matching `service[/type]`.
pub fn show_master_entries(pcf: &mut Pcf, mode: u32, args: &[String]) {
    let mut reqs: Vec<(String, Vec<String>, usize)> = Vec::new();
    for raw in args {
        match parse_service_pattern(raw, 1, 2) {
            Some(p) => reqs.push((raw.clone(), p, 0)),
            None => msg::fatal("-M option requires service_name[/type]"),
        }
    }
    for i in 0..pcf.masters.len() {
        let argv = pcf.masters[i].argv.clone();
        let times = if args.is_empty() {
            1
        } else {
            let mut n = 0;
            for req in reqs.iter_mut() {
                if match_service(&req.1, &argv[0], &argv[1]) {
                    req.2 += 1;
                    n += 1;
                }
            }
            n
        };
        for _ in 0..times {
            let text = format_master_entry(mode, &argv, &mut expander(pcf, mode, i));
            crate::global::out::print(&text);
        }
    }
    warn_unmatched(&reqs);
}

/// One -F line: `service/type/field = value`, the command with its
/// arguments.
pub fn format_master_field(
    mode: u32,
    argv: &[String],
    field: usize,
    expand: &mut dyn FnMut(&str) -> String,
) -> String {
    let mut out = String::new();
    let mut line_len = 0usize;
    if mode & HIDE_NAME == 0 {
        let name = format!("{}/{}/{}", argv[0], argv[1], FIELD_NAMES[field]);
        line_len += clen(&name);
        out.push_str(&name);
    }
    if mode & (HIDE_NAME | HIDE_VALUE) == 0 {
        out.push_str(" = ");
        line_len += 3;
    }
    if mode & HIDE_VALUE == 0 {
        let v = &argv[field];
        if line_len > 0 && line_len + clen(v) > LINE_LIMIT {
            out.push('\n');
            out.push_str(INDENT_TEXT);
            line_len = INDENT_LEN;
        }
        out.push_str(v);
        line_len += clen(v);
        if field == FLD_CMD {
            format_command_args(mode, argv, field + 1, 1, &mut out, &mut line_len, expand);
        }
    }
    out.push('\n');
    out
}

/// postconf -F: fields, all or those matching `service[/type[/field]]`.
pub fn show_master_fields(pcf: &mut Pcf, mode: u32, args: &[String]) {
    let mut reqs: Vec<(String, Vec<String>, usize)> = Vec::new();
    let mut fields: Vec<Option<usize>> = Vec::new();
    for raw in args {
        match parse_service_pattern(raw, 1, 3) {
            Some(p) => {
                fields.push(parse_field_pattern(&p[2]));
                reqs.push((raw.clone(), p, 0));
            }
            None => msg::fatal("-F option requires service_name[/type[/field]]"),
        }
    }
    for i in 0..pcf.masters.len() {
        let argv = pcf.masters[i].argv.clone();
        let mut todo: Vec<Option<usize>> = Vec::new();
        if args.is_empty() {
            todo.push(None);
        } else {
            for (req, f) in reqs.iter_mut().zip(&fields) {
                if match_service(&req.1, &argv[0], &argv[1]) {
                    req.2 += 1;
                    todo.push(*f);
                }
            }
        }
        for f in todo {
            let range = match f {
                Some(f) => f..f + 1,
                None => 0..MIN_FIELDS,
            };
            for field in range {
                let text = format_master_field(mode, &argv, field, &mut expander(pcf, mode, i));
                crate::global::out::print(&text);
            }
        }
    }
    warn_unmatched(&reqs);
}

fn print_master_param(pcf: &mut Pcf, mode: u32, index: usize, name: &str, value: &str) {
    let ns = pcf.masters[index].name_space.clone();
    if mode & HIDE_VALUE != 0 {
        print::print_line(mode, &format!("{ns}/{name}"));
        return;
    }
    let value = if mode & SHOW_EVAL != 0 {
        pcf.expand_parameter_value(mode, value, Some(index))
    } else {
        value.to_string()
    };
    if mode & HIDE_NAME == 0 {
        print::print_line(mode, &format!("{ns}/{name} = {value}"));
    } else {
        print::print_line(mode, &value);
    }
}

fn show_any_param(pcf: &mut Pcf, mode: u32, index: usize) {
    let mut list: Vec<(String, String)> = match &pcf.masters[index].all_params {
        Some(d) => d
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        None => return,
    };
    // Names are unique; one char per byte keeps strcmp(3)'s byte order.
    list.sort();
    for (n, v) in list {
        print_master_param(pcf, mode, index, &n, &v);
    }
}

/// postconf -P: `-o` parameters, all or those matching
/// `service[/type[/parameter]]`.
pub fn show_master_params(pcf: &mut Pcf, mode: u32, args: &[String]) {
    let mut reqs: Vec<(String, Vec<String>, usize)> = Vec::new();
    for raw in args {
        match parse_service_pattern(raw, 1, 3) {
            Some(p) => reqs.push((raw.clone(), p, 0)),
            None => msg::fatal("-P option requires service_name[/type[/parameter]]"),
        }
    }
    for i in 0..pcf.masters.len() {
        if pcf.masters[i].all_params.is_none() {
            continue;
        }
        if args.is_empty() {
            show_any_param(pcf, mode, i);
            continue;
        }
        let (name, typ) = (
            pcf.masters[i].argv[0].clone(),
            pcf.masters[i].argv[1].clone(),
        );
        for req in reqs.iter_mut() {
            if !match_service(&req.1, &name, &typ) {
                continue;
            }
            let param = req.1[2].clone();
            if param == "*" {
                show_any_param(pcf, mode, i);
                req.2 += 1;
            } else {
                let value = pcf.masters[i]
                    .all_params
                    .as_ref()
                    .and_then(|d| d.get(&param))
                    .map(|s| s.to_string());
                if let Some(v) = value {
                    print_master_param(pcf, mode, i, &param, &v);
                    req.2 += 1;
                }
            }
        }
    }
    warn_unmatched(&reqs);
}

/// Replace a field of an entry (-F -e). A new command is split into the
/// command and its arguments; the result is checked like a parsed entry.
pub fn edit_master_field(ent: &mut MasterEnt, field: usize, value: &str) {
    if field == FLD_CMD {
        ent.argv.truncate(FLD_CMD);
        ent.argv.extend(split_quoted(value, BLANKS));
        normalize_daemon_args(&mut ent.argv);
    } else {
        ent.argv[field] = value.to_string();
    }
    check_master_entry(&ent.argv, value);
}

/// Update, add (with EDIT_CONF) or remove (with EDIT_EXCL) `-o name=value`
/// in an entry (-P -e, -P -X).
pub fn edit_master_param(ent: &mut MasterEnt, mode: u32, name: &str, value: Option<&str>) {
    let argv = &mut ent.argv;
    let mut matched = false;
    let mut field = MIN_FIELDS;
    let prefix = format!("{name}=");
    while field < argv.len() {
        if ends_options(&argv[field]) {
            break;
        }
        if expects_value(&argv[field]) && field + 1 < argv.len() {
            if argv[field] == "-o" && argv[field + 1].starts_with(&prefix) {
                matched = true;
                if mode & EDIT_CONF != 0 {
                    argv[field + 1] = format!("{prefix}{}", value.unwrap_or(""));
                } else {
                    argv.drain(field..field + 2);
                    // Re-examine what moved into this place.
                    continue;
                }
            }
            field += 1;
        }
        field += 1;
    }
    if mode & EDIT_CONF != 0 && !matched {
        argv.insert(field, "-o".to_string());
        argv.insert(field + 1, format!("{prefix}{}", value.unwrap_or("")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<String> {
        parse_master_entry(text).expect("parses").argv
    }

    fn entry(mode: u32, text: &str) -> String {
        format_master_entry(mode, &parse(text), &mut |v| v.to_string())
    }

    #[test]
    fn split_keeps_braced_groups() {
        let cases: &[(&str, &[&str])] = &[
            ("a b\tc", &["a", "b", "c"]),
            ("  a  ", &["a"]),
            ("", &[]),
            ("a {b c} d", &["a", "{b c}", "d"]),
            ("a {b {c d} e}f g", &["a", "{b {c d} e}f", "g"]),
            ("a }b c", &["a", "}b", "c"]),
            ("a {b c", &["a", "{b c"]),
        ];
        for (input, want) in cases {
            assert_eq!(split_quoted(input, BLANKS), *want, "{input:?}");
        }
    }

    #[test]
    fn extract_braced_texts() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("{ a = b }", "a = b", None),
            ("{a}x", "a", Some("syntax error after '}' in \"{a}x\"")),
            ("{ a b", "a b", Some("missing '}' in \"{ a b\"")),
            ("{{a} b}", "{a} b", None),
        ];
        for (input, text, err) in cases {
            let (t, e) = extract_braced(input);
            assert_eq!(t, *text, "{input:?}");
            assert_eq!(e.as_deref(), *err, "{input:?}");
        }
    }

    #[test]
    fn daemon_options_are_normalised() {
        let cases: &[(&str, &[&str])] = &[
            ("x unix - - - - - cmd -o a=b", &["-o", "a=b"]),
            ("x unix - - - - - cmd -oa=b", &["-o", "a=b"]),
            ("x unix - - - - - cmd -vo a=b", &["-v", "-o", "a=b"]),
            ("x unix - - - - - cmd -vozz", &["-v", "-o", "zz"]),
            ("x unix - - - - - cmd -o { a = b c }", &["-o", "a=b c"]),
            ("x unix - - - - - cmd -o{a=b}", &["-o", "a=b"]),
            ("x unix - - - - - cmd -o", &["-o"]),
            ("x unix - - - - - cmd -v arg {x y }", &["-v", "arg", "x y"]),
            ("x unix - - - - - cmd -- { -o }", &["--", "-o"]),
            ("x unix - - - - - cmd - -o a=b", &["-", "-o", "a=b"]),
        ];
        for (input, want) in cases {
            assert_eq!(&parse(input)[8..], *want, "{input:?}");
        }
    }

    #[test]
    fn bad_field_count() {
        assert_eq!(
            parse_master_entry("a unix - - - - -").err(),
            Some("bad field count")
        );
    }

    #[test]
    fn entry_layout() {
        let cases: &[(u32, &str, &str)] = &[
            (
                0,
                "smtp inet n - n - - smtpd",
                "smtp       inet  n       -       n       -       -       smtpd\n",
            ),
            (
                0,
                "submission inet n - n - - smtpd -o a=b -o {c = d e}",
                "submission inet  n       -       n       -       -       smtpd -o a=b -o {c=d e}\n",
            ),
            (
                FOLD_LINE,
                "submission inet n - n - - smtpd -v -o a=b -o {c = d e} arg",
                "submission inet  n       -       n       -       -       smtpd -v\n    \
                 -o a=b\n    -o {c=d e}\n    arg\n",
            ),
            (
                0,
                "averyveryverylongservicename unix - - - 1000? 10 pipe flags=R argv=/x {a b}",
                "averyveryverylongservicename unix - - -  1000?   10      pipe flags=R argv=/x {a b}\n",
            ),
            (
                FOLD_LINE,
                "averyveryverylongservicename unix - - - 1000? 10 pipe flags=R argv=/x {a b}",
                "averyveryverylongservicename unix - - -  1000?   10      pipe flags=R argv=/x\n    {a b}\n",
            ),
            (
                0,
                "x unix - - - - - cmd {a b} {c d}",
                "x          unix  -       -       -       -       -       cmd a b {c d}\n",
            ),
        ];
        for (mode, input, want) in cases {
            assert_eq!(entry(*mode, input), *want, "{input:?}");
        }
    }

    #[test]
    fn field_layout() {
        let argv = parse("pickup fifo n - y 60 1 pickup -o content_filter= -o a=b");
        let f = |mode, field| format_master_field(mode, &argv, field, &mut |v| v.to_string());
        assert_eq!(f(0, 5), "pickup/fifo/wakeup = 60\n");
        assert_eq!(f(HIDE_NAME, 5), "60\n");
        assert_eq!(f(HIDE_VALUE, 5), "pickup/fifo/wakeup\n");
        assert_eq!(
            f(0, 7),
            "pickup/fifo/command = pickup -o content_filter= -o a=b\n"
        );
        assert_eq!(
            f(FOLD_LINE, 7),
            "pickup/fifo/command = pickup\n    -o content_filter=\n    -o a=b\n"
        );
    }

    #[test]
    fn service_patterns() {
        let s = |v: &[&str]| Some(v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(parse_service_pattern("smtp", 1, 2), s(&["smtp", "*"]));
        assert_eq!(
            parse_service_pattern("smtp//inet", 1, 2),
            s(&["smtp", "inet"])
        );
        assert_eq!(
            parse_service_pattern("*/unix", 1, 3),
            s(&["*", "unix", "*"])
        );
        assert_eq!(parse_service_pattern("/smtp", 1, 2), None);
        assert_eq!(parse_service_pattern("", 1, 2), None);
        assert_eq!(parse_service_pattern("a/b/c", 1, 2), None);
        assert_eq!(parse_service_pattern("sm*", 1, 2), None);
        assert_eq!(parse_service_pattern("a/b", 2, 2), s(&["a", "b"]));
        assert_eq!(parse_service_pattern("a", 2, 2), None);
    }

    #[test]
    fn param_edits() {
        let mut e = parse_master_entry("x unix - - - - - cmd -o a=1 -o b=2 arg").unwrap();
        edit_master_param(&mut e, EDIT_CONF, "b", Some("3"));
        edit_master_param(&mut e, EDIT_CONF, "c", Some("4"));
        edit_master_param(&mut e, EDIT_EXCL, "a", None);
        assert_eq!(e.argv[8..], ["-o", "b=3", "-o", "c=4", "arg"]);
        edit_master_field(&mut e, FLD_CMD, "new -oz=1 {a b}");
        assert_eq!(e.argv[7..], ["new", "-o", "z=1", "a b"]);
        edit_master_field(&mut e, 5, "10?");
        assert_eq!(e.argv[5], "10?");
    }

    #[test]
    fn option_settings_as_postfix_finds_them() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("x unix - - - - - cmd -o a=b -v -o c = d", &[("a", "b")]),
            (
                "x unix - - - - - cmd -o a=b -v -o {c = d}",
                &[("a", "b"), ("c", "d")],
            ),
            ("x unix - - - - - cmd - -o a=b", &[]),
            ("x unix - - - - - cmd -o ab -o c=", &[("c", "")]),
            ("x unix - - - - - cmd arg -o a=b", &[]),
            ("x unix - - - - - cmd -o", &[]),
        ];
        for (input, want) in cases {
            let got = option_settings(&parse(input));
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            assert_eq!(got, want, "{input:?}");
        }
    }

    #[test]
    fn read_only_names() {
        let e = parse_master_entry("x unix - - - - - /usr/lib/postfix/smtpd").unwrap();
        let ro = e.ro_params.unwrap();
        assert_eq!(ro.get("process_name"), Some("smtpd"));
        assert_eq!(ro.get("service_name"), Some("x"));
        assert_eq!(e.name_space, "x/unix");
    }
}
