pub mod instance;
pub mod pm;
pub mod queue;
