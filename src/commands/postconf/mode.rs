//! postconf's mode bits (what the command line asked for).

pub const SHOW_NONDEF: u32 = 1 << 0;
pub const SHOW_DEFS: u32 = 1 << 1;
pub const HIDE_NAME: u32 = 1 << 2;
pub const SHOW_MAPS: u32 = 1 << 3;
pub const EDIT_CONF: u32 = 1 << 4;
pub const SHOW_LOCKS: u32 = 1 << 5;
pub const SHOW_EVAL: u32 = 1 << 6;
pub const SHOW_SASL_SERV: u32 = 1 << 7;
pub const SHOW_SASL_CLNT: u32 = 1 << 8;
pub const COMMENT_OUT: u32 = 1 << 9;
pub const MASTER_ENTRY: u32 = 1 << 10;
pub const FOLD_LINE: u32 = 1 << 11;
pub const EDIT_EXCL: u32 = 1 << 12;
pub const MASTER_FLD: u32 = 1 << 13;
pub const MAIN_PARAM: u32 = 1 << 14;
pub const EXP_DSN_TEMPL: u32 = 1 << 15;
pub const PARAM_CLASS: u32 = 1 << 16;
pub const MAIN_OVER: u32 = 1 << 17;
pub const DUMP_DSN_TEMPL: u32 = 1 << 18;
pub const MASTER_PARAM: u32 = 1 << 19;
pub const HIDE_VALUE: u32 = 1 << 20;
pub const SHOW_TLS: u32 = 1 << 21;

/// Daemon options in master.cf that take a value (only `-o`).
pub const DAEMON_OPTIONS_EXPECTING_VALUE: &str = "o";

/// Lines longer than this are folded with -f.
pub const LINE_LIMIT: usize = 80;
pub const SEPARATORS: &[char] = &[' ', '\t', '\r', '\n'];
pub const INDENT_LEN: usize = 4;
pub const INDENT_TEXT: &str = "    ";
