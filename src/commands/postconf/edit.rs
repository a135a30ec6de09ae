//! postconf -e, -#, -X for main.cf and master.cf. (Being written.)

use super::core::Pcf;

pub fn edit_main(pcf: &mut Pcf, mode: u32, args: &[String]) {
    let _ = (pcf, mode, args);
}

pub fn edit_master(pcf: &mut Pcf, mode: u32, args: &[String]) {
    let _ = (pcf, mode, args);
}
