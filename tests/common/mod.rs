pub mod dns_server;
pub mod instance;
pub mod pm;
pub mod queue;
