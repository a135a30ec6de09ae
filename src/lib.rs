//! rostfix: a mail transport agent that replaces Postfix 3.7 in place.
//!
//! The library holds every program; `src/main.rs` dispatches to them by name.

pub mod commands;
pub mod daemons;
#[doc(hidden)]
pub mod fuzzing;
pub mod global;
pub mod master;
pub mod sys;
pub mod util;
