//! General routines with no Postfix knowledge.

pub mod latin1;
