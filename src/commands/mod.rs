//! One module per Postfix command.

pub mod postconf;
