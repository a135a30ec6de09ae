//! Postfix knowledge shared by all programs: parameters, configuration files,
//! expansion, diagnostics.

pub mod config_file;
pub mod dict;
pub mod expand;
pub mod hostinfo;
pub mod mail_addr_find;
pub mod mail_conf;
pub mod mail_params;
pub mod mail_queue;
pub mod maillog;
pub mod maps;
pub mod master_cf;
pub mod match_list;
pub mod mime_state;
pub mod mkmap;
pub mod msg;
pub mod namevalues;
pub mod out;
pub mod param_table;
pub mod params;
pub mod quote_822_local;
pub mod readlline;
pub mod rec_type;
pub mod record;
pub mod showq;
pub mod tok822;
