//! One module per Postfix command.

pub mod demo;
pub mod postconf;
