//! General routines with no Postfix knowledge.

pub mod htable;
pub mod latin1;
