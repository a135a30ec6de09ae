//! One module per Postfix command.

pub mod demo;
pub mod postalias;
pub mod postconf;
pub mod postmap;
pub mod sendmail;
