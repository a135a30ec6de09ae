//! Host-derived parameter defaults: myhostname, mydomain, mynetworks.
//! (Being written: see the helper task.)

/// The kernel host name.
pub fn kernel_hostname() -> String {
    crate::sys::hostname()
}

/// The default of mynetworks for a mynetworks_style, inet_interfaces and
/// inet_protocols value. (Placeholder until the full interface code lands.)
pub fn mynetworks(style: &str, interfaces: &str, protocols: &str) -> String {
    let _ = (style, interfaces, protocols);
    String::new()
}
