//! General routines with no Postfix knowledge.

pub mod casefold;
pub mod getopt;
pub mod htable;
pub mod latin1;
pub mod midna;
pub mod netstring;
pub mod stringops;
pub mod valid_hostname;
