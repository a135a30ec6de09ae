//! General routines with no Postfix knowledge.

pub mod casefold;
pub mod getopt;
pub mod htable;
pub mod latin1;
pub mod netstring;
pub mod stringops;
