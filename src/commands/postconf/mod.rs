//! Replaces postconf(1) of Postfix 3.7: show, check and edit main.cf and
//! master.cf.
//!
//! Trusts: its command line and the configuration files it is pointed at (it
//! is not set-uid). Privilege: that of the invoking user. Reads every main.cf
//! parameter by name; honours MAIL_CONFIG (which -c sets).

pub mod core;
pub mod edit;
pub mod master;
pub mod mode;
pub mod other;
pub mod print;
pub mod templates;
pub mod user;

use self::core::*;
use self::mode::*;
use crate::global::msg;
use crate::util::latin1;
use std::ffi::OsString;

/// Option letters and the mode bit each names, in Postfix's order for messages.
const COMPAT_NAMES: &[(&str, u32)] = &[
    ("-a", SHOW_SASL_SERV),
    ("-A", SHOW_SASL_CLNT),
    ("-b", EXP_DSN_TEMPL),
    ("-C", PARAM_CLASS),
    ("-d", SHOW_DEFS),
    ("-e", EDIT_CONF),
    ("-f", FOLD_LINE),
    ("-F", MASTER_FLD),
    ("-h", HIDE_NAME),
    ("-H", HIDE_VALUE),
    ("-l", SHOW_LOCKS),
    ("-m", SHOW_MAPS),
    ("-M", MASTER_ENTRY),
    ("-n", SHOW_NONDEF),
    ("-o", MAIN_OVER),
    ("-p", MAIN_PARAM),
    ("-P", MASTER_PARAM),
    ("-t", DUMP_DSN_TEMPL),
    ("-T", SHOW_TLS),
    ("-x", SHOW_EVAL),
    ("-X", EDIT_EXCL),
    ("-#", COMMENT_OUT),
];

const INCOMPAT: &[u32] = &[
    SHOW_SASL_SERV
        | SHOW_SASL_CLNT
        | EXP_DSN_TEMPL
        | SHOW_LOCKS
        | SHOW_MAPS
        | DUMP_DSN_TEMPL
        | MAIN_PARAM
        | MASTER_ENTRY
        | MASTER_FLD
        | MASTER_PARAM
        | SHOW_TLS,
    SHOW_DEFS | EDIT_CONF | SHOW_NONDEF | COMMENT_OUT | EDIT_EXCL,
    FOLD_LINE | EDIT_CONF | COMMENT_OUT | EDIT_EXCL,
    SHOW_EVAL | EDIT_CONF | COMMENT_OUT | EDIT_EXCL,
    MAIN_OVER | SHOW_DEFS | EDIT_CONF | COMMENT_OUT | EDIT_EXCL,
    HIDE_NAME | EDIT_CONF | COMMENT_OUT | EDIT_EXCL | HIDE_VALUE,
];

const COMPAT: &[(u32, u32)] = &[
    (SHOW_SASL_SERV, 0),
    (SHOW_SASL_CLNT, 0),
    (EXP_DSN_TEMPL, 0),
    (SHOW_LOCKS, 0),
    (SHOW_MAPS, 0),
    (SHOW_TLS, 0),
    (DUMP_DSN_TEMPL, 0),
    (
        MAIN_PARAM,
        EDIT_CONF
            | EDIT_EXCL
            | COMMENT_OUT
            | FOLD_LINE
            | HIDE_NAME
            | PARAM_CLASS
            | SHOW_EVAL
            | SHOW_DEFS
            | SHOW_NONDEF
            | MAIN_OVER
            | HIDE_VALUE,
    ),
    (
        MASTER_ENTRY,
        EDIT_CONF | EDIT_EXCL | COMMENT_OUT | FOLD_LINE | MAIN_OVER | SHOW_EVAL,
    ),
    (
        MASTER_FLD,
        EDIT_CONF | FOLD_LINE | HIDE_NAME | MAIN_OVER | SHOW_EVAL | HIDE_VALUE,
    ),
    (
        MASTER_PARAM,
        EDIT_CONF | EDIT_EXCL | FOLD_LINE | HIDE_NAME | MAIN_OVER | SHOW_EVAL | HIDE_VALUE,
    ),
    (PARAM_CLASS, MAIN_PARAM | SHOW_DEFS | SHOW_NONDEF),
];

/// Mode bits as Postfix names them: option letters, unknown bits in hex.
fn mask_names(mask: u32) -> String {
    let mut parts = Vec::new();
    let mut left = mask;
    for (name, bit) in COMPAT_NAMES {
        if mask & bit != 0 {
            parts.push(name.to_string());
            left &= !bit;
        }
    }
    if left != 0 {
        parts.push(format!("0x{left:x}"));
    }
    parts.join(" ")
}

fn check_exclusive_options(mode: u32) {
    for &group in INCOMPAT {
        let oval = group & mode;
        let mut mask: u32 = !0;
        while mask & oval != 0 {
            if mask & oval != oval {
                msg::fatal(&format!("specify one of {}", mask_names(oval)));
            }
            mask >>= 1;
        }
    }
}

fn check_compat_options(mode: u32) {
    for &(major, ok) in COMPAT {
        if mode & major != 0 {
            let excess = mode & !(major | ok);
            if excess != 0 {
                msg::fatal(&format!(
                    "with option {}, do not specify {}",
                    mask_names(major),
                    mask_names(excess)
                ));
            }
        }
    }
}

fn usage(progname: &str) -> ! {
    msg::fatal(&format!(
        "usage: {progname} [-a (server SASL types)] [-A (client SASL types)] \
[-b (bounce templates)] [-c config_dir] [-c param_class] [-d (parameter defaults)] \
[-e (edit configuration)] [-f (fold lines)] [-F (master.cf fields)] [-h (no names)] \
[-H (no values)] [-l (lock types)] [-m (map types)] [-M (master.cf)] \
[-n (non-default parameters)] [-o name=value (override parameter value)] \
[-p (main.cf, default)] [-P (master.cf parameters)] [-t (bounce templates)] \
[-T compile-version|run-version|public-key-algorithms] [-v (verbose)] \
[-x (expand parameter values)] [-X (exclude)] [-# (comment-out)] [name...]"
    ))
}

/// Parse a -C class list (case-insensitive, comma/space separated).
fn parse_class(arg: &str) -> u32 {
    let mut mask = 0;
    for word in arg
        .split([',', ' ', '\t', '\r', '\n', '|'])
        .filter(|w| !w.is_empty())
    {
        mask |= match word.to_ascii_lowercase().as_str() {
            "builtin" => FLAG_BUILTIN,
            "service" => FLAG_SERVICE,
            "user" => FLAG_USER,
            "all" => MASK_CLASS,
            _ => msg::fatal(&format!("unknown -C option value \"{word}\" in \"{arg}\"")),
        };
    }
    mask
}

/// postconf's entry point.
pub fn main(args: Vec<OsString>) -> i32 {
    let args: Vec<String> = args.iter().map(|a| latin1::from_os(a)).collect();
    let argv0 = args.first().cloned().unwrap_or_else(|| "postconf".into());
    msg::init(&argv0);
    let procname = argv0.rsplit('/').next().unwrap_or(&argv0).to_string();
    // SAFETY: umask only changes this process's file creation mask.
    unsafe_umask();

    let mut mode = 0u32;
    let mut param_class = MASK_CLASS;
    let mut overrides: Vec<String> = Vec::new();
    let mut tls_arg: Option<String> = None;
    let mut dsn_seen = false;

    // getopt(3) with "+aAbc:C:deEfFhHlmMno:pPtT:vxX#": stop at the first
    // non-option; "--" ends options.
    let mut optind = 1;
    'outer: while optind < args.len() {
        let arg = &args[optind];
        if arg == "--" {
            optind += 1;
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            break;
        }
        let chars: Vec<char> = arg.chars().collect();
        let mut j = 1;
        while j < chars.len() {
            let ch = chars[j];
            j += 1;
            let needs_arg = matches!(ch, 'c' | 'C' | 'o' | 'T');
            let mut optarg = String::new();
            if needs_arg {
                if j < chars.len() {
                    optarg = chars[j..].iter().collect();
                } else if optind + 1 < args.len() {
                    optind += 1;
                    optarg = args[optind].clone();
                } else {
                    eprint_raw(&format!("{argv0}: option requires an argument -- '{ch}'\n"));
                    usage(&argv0);
                }
                j = chars.len();
            }
            match ch {
                'a' => mode |= SHOW_SASL_SERV,
                'A' => mode |= SHOW_SASL_CLNT,
                'b' | 't' => {
                    mode |= if ch == 'b' {
                        EXP_DSN_TEMPL
                    } else {
                        DUMP_DSN_TEMPL
                    };
                    if dsn_seen {
                        msg::fatal("specify one of -b and -t");
                    }
                    dsn_seen = true;
                }
                'c' => {
                    // SAFETY: single-threaded at this point; no other thread
                    // reads the environment.
                    unsafe { std::env::set_var("MAIL_CONFIG", latin1::to_path(&optarg)) };
                }
                'C' => param_class = parse_class(&optarg),
                'd' => mode |= SHOW_DEFS,
                'e' => mode |= EDIT_CONF,
                'f' => mode |= FOLD_LINE,
                'F' => mode |= MASTER_FLD,
                '#' => mode |= COMMENT_OUT,
                'h' => mode |= HIDE_NAME,
                'H' => mode |= HIDE_VALUE,
                'l' => mode |= SHOW_LOCKS,
                'm' => mode |= SHOW_MAPS,
                'M' => mode |= MASTER_ENTRY,
                'n' => mode |= SHOW_NONDEF,
                'o' => {
                    mode |= MAIN_OVER;
                    overrides.push(optarg);
                }
                'p' => mode |= MAIN_PARAM,
                'P' => mode |= MASTER_PARAM,
                'T' => {
                    if mode & SHOW_TLS != 0 {
                        msg::fatal("At most one -T <mode> option may be specified");
                    }
                    mode |= SHOW_TLS;
                    tls_arg = Some(optarg);
                }
                'x' => mode |= SHOW_EVAL,
                'X' => mode |= EDIT_EXCL,
                'v' => msg::more_verbose(),
                _ => {
                    eprint_raw(&format!("{argv0}: invalid option -- '{ch}'\n"));
                    usage(&argv0);
                }
            }
            if needs_arg {
                optind += 1;
                continue 'outer;
            }
        }
        optind += 1;
    }
    let operands: Vec<String> = args[optind..].to_vec();

    if mode & INCOMPAT[0] == 0 {
        mode |= MAIN_PARAM;
    }
    if mode & (MAIN_PARAM | MASTER_ENTRY | MASTER_FLD | MASTER_PARAM) != 0
        && operands.first().is_some_and(|a| a.contains('='))
    {
        mode |= EDIT_CONF;
    }
    check_exclusive_options(mode);
    check_compat_options(mode);
    if mode & EDIT_CONF != 0 && operands.is_empty() {
        msg::fatal("-e requires name=value argument");
    }

    let mut pcf = Pcf::new(mode, &procname);

    if mode & (EXP_DSN_TEMPL | DUMP_DSN_TEMPL) != 0 {
        if operands.len() > 1 {
            msg::fatal("options -b and -t require at most one template file");
        }
        return templates::show_templates(&mut pcf, operands.first().map(|s| s.as_str()));
    }
    if mode & SHOW_MAPS != 0 {
        pcf.read_parameters();
        other::show_maps(&mut pcf);
    } else if mode & SHOW_LOCKS != 0 {
        other::show_locks();
    } else if mode & (MASTER_ENTRY | MASTER_FLD | MASTER_PARAM) != 0
        && mode & (EDIT_CONF | EDIT_EXCL | COMMENT_OUT) == 0
    {
        master::read_master(&mut pcf, true);
        pcf.read_parameters();
        pcf.set_parameters(&overrides);
        pcf.register_builtin_parameters();
        pcf.register_service_parameters();
        pcf.register_user_parameters();
        if mode & MASTER_FLD != 0 {
            master::show_master_fields(&mut pcf, mode, &operands);
        } else if mode & MASTER_PARAM != 0 {
            master::show_master_params(&mut pcf, mode, &operands);
        } else {
            master::show_master_entries(&mut pcf, mode, &operands);
        }
        pcf.flag_unused_master_parameters();
    } else if mode & SHOW_SASL_SERV != 0 {
        other::show_sasl(true);
    } else if mode & SHOW_SASL_CLNT != 0 {
        other::show_sasl(false);
    } else if mode & SHOW_TLS != 0 {
        other::show_tls(&mut pcf, tls_arg.as_deref().unwrap_or(""));
    } else if mode & (EDIT_CONF | COMMENT_OUT | EDIT_EXCL) != 0 {
        if operands.is_empty() {
            msg::fatal("missing service argument");
        }
        if mode & (MASTER_ENTRY | MASTER_FLD | MASTER_PARAM) != 0 {
            edit::edit_master(&mut pcf, mode, &operands);
        } else {
            edit::edit_main(&mut pcf, mode, &operands);
        }
    } else {
        if mode & SHOW_DEFS == 0 {
            pcf.read_parameters();
            pcf.set_parameters(&overrides);
        }
        pcf.register_builtin_parameters();
        master::read_master(&mut pcf, false);
        pcf.register_service_parameters();
        if mode & SHOW_DEFS == 0 {
            pcf.register_user_parameters();
        }
        show_parameters(&mut pcf, mode, param_class, &operands);
        if mode & SHOW_DEFS == 0 {
            pcf.flag_unused_main_parameters();
            pcf.flag_unused_master_parameters();
        }
    }
    crate::global::out::flush();
    0
}

fn unsafe_umask() {
    crate::sys::set_umask(0o022);
}

fn eprint_raw(text: &str) {
    use std::io::Write;
    crate::global::out::flush();
    let _ = std::io::stderr().write_all(&latin1::encode(text));
}

fn print_parameter(pcf: &mut Pcf, mode: u32, name: &str, node: &Node) {
    let Some(mut value) = pcf.lookup_parameter_value(mode, name, None, Some(node)) else {
        return;
    };
    if mode & HIDE_VALUE != 0 {
        print::print_line(mode, name);
        return;
    }
    if mode & SHOW_EVAL != 0 && node.flags & FLAG_RAW == 0 {
        value = pcf.expand_parameter_value(mode, &value, None);
    }
    if mode & HIDE_NAME == 0 {
        print::print_line(mode, &format!("{name} = {value}"));
    } else {
        print::print_line(mode, &value);
    }
}

/// Show all parameters of the selected classes, or the named ones.
pub fn show_parameters(pcf: &mut Pcf, mode: u32, class: u32, names: &[String]) {
    if names.is_empty() {
        let mut list: Vec<(String, Node)> = pcf
            .params
            .iter()
            .map(|(n, node)| (n.clone(), node.clone()))
            .collect();
        list.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for (name, node) in list {
            if class & node.flags != 0 {
                print_parameter(pcf, mode, &name, &node);
            }
        }
        return;
    }
    for name in names {
        match pcf.params.get(name).cloned() {
            None => msg::warn(&format!("{name}: unknown parameter")),
            Some(node) => print_parameter(pcf, mode, name, &node),
        }
    }
}
