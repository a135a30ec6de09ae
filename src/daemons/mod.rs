//! The Postfix daemons, one module each. Daemons that run with the same
//! privilege as their callers are also libraries (DESIGN.md §2).

pub mod agents;
pub mod anvil;
pub mod bounce;
pub mod cleanup;
pub mod flush;
pub mod local;
pub mod logsink;
pub mod pickup;
pub mod pipe;
pub mod postlogd;
pub mod proxymap;
pub mod qmgr;
pub mod showq;
pub mod smtp;
pub mod smtpd;
pub mod trivial_rewrite;
pub mod virtual_agent;
