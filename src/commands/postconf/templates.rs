//! postconf -b / -t: bounce templates. (Being written.)

use super::core::Pcf;

/// Show the bounce templates (expanded with -b, raw with -t). Returns the exit status.
pub fn show_templates(pcf: &mut Pcf, file: Option<&str>) -> i32 {
    let _ = (pcf, file);
    0
}
