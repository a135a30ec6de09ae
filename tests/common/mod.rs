pub mod pm;
pub mod queue;
