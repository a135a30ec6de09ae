//! One module per Postfix command.

pub mod demo;
pub mod postalias;
pub mod postcat;
pub mod postconf;
pub mod postdrop;
pub mod postfix;
pub mod postmap;
pub mod postmulti;
pub mod postqueue;
pub mod postsuper;
pub mod sendmail;
