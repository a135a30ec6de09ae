//! Postfix knowledge shared by all programs: parameters, configuration files,
//! expansion, diagnostics.

pub mod expand;
pub mod hostinfo;
pub mod msg;
pub mod namevalues;
pub mod out;
pub mod param_table;
pub mod params;
pub mod readlline;
