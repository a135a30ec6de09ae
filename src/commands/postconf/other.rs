//! postconf -m, -l, -a, -A, -T. (Being written.)

use super::core::Pcf;

pub fn show_maps(pcf: &mut Pcf) {
    let _ = pcf;
}

pub fn show_locks() {}

pub fn show_sasl(server: bool) {
    let _ = server;
}

pub fn show_tls(pcf: &mut Pcf, arg: &str) {
    let _ = (pcf, arg);
}
