//! master.cf for postconf: reading, -M, -F, -P. (Being written.)

use super::core::Pcf;

/// Read master.cf into `pcf.masters`.
pub fn read_master(pcf: &mut Pcf, fail_on_open_error: bool) {
    let _ = fail_on_open_error;
    pcf.master_read = true;
}

pub fn show_master_entries(pcf: &mut Pcf, mode: u32, args: &[String]) {
    let _ = (pcf, mode, args);
}

pub fn show_master_fields(pcf: &mut Pcf, mode: u32, args: &[String]) {
    let _ = (pcf, mode, args);
}

pub fn show_master_params(pcf: &mut Pcf, mode: u32, args: &[String]) {
    let _ = (pcf, mode, args);
}
