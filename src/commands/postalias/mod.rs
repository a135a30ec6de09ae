//! Replaces postalias(1) of Postfix 3.7: build, query, walk and edit alias
//! tables from aliases(5) source files.
//!
//! Trusts: its command line, main.cf and the alias files it is given (it is
//! not set-uid). Privilege: the invoking user; as root it builds a table with
//! the effective IDs of the source file's owner (unless `-o`). Reads:
//! default_database_type, smtputf8_enable, import_environment, myhostname.
//! Honours MAIL_CONFIG (which `-c` sets).
//!
//! The work is done by the postmap engine ([`crate::commands::postmap`]) in
//! its aliases mode: the source syntax (RFC 822 tokens, `name: value`), the
//! `@` and YP_* entries, and `name:<TAB>value` output.

use crate::commands::postmap::{Cmd, run};
use std::ffi::OsString;

/// postalias's entry point.
pub fn main(args: Vec<OsString>) -> i32 {
    run(Cmd::Postalias, args)
}
