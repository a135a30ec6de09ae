//! main.cf access for smtpd: typed getters that make a bad value fatal, as
//! Postfix's daemons do at start-up.

use crate::global::mail_conf::MailConf;
use crate::global::msg;

/// main.cf plus master.cf `-o` overrides.
pub struct Conf {
    pub mc: MailConf,
}

impl Conf {
    pub fn new(mc: MailConf) -> Conf {
        Conf { mc }
    }
    /// The expanded value ("" when unknown).
    pub fn str(&self, name: &str) -> String {
        match self.mc.lookup_eval(name) {
            Ok(v) => v.unwrap_or_default(),
            Err(e) => msg::fatal(&e.0),
        }
    }
    /// The unexpanded value.
    pub fn raw(&self, name: &str) -> String {
        self.mc.raw(name).unwrap_or_default()
    }
    pub fn int(&self, name: &str) -> u32 {
        match self.mc.get_int(name, 0, 0) {
            Ok(v) => v.max(0) as u32,
            Err(e) => msg::fatal(&e.0),
        }
    }
    pub fn long(&self, name: &str) -> u64 {
        match self.mc.get_long(name, 0, 0) {
            Ok(v) => v.max(0) as u64,
            Err(e) => msg::fatal(&e.0),
        }
    }
    pub fn bool(&self, name: &str) -> bool {
        match self.mc.get_bool(name) {
            Ok(v) => v,
            Err(e) => msg::fatal(&e.0),
        }
    }
    /// A time in seconds (default unit `s`).
    pub fn time(&self, name: &str) -> u64 {
        match self.mc.get_time(name, 's', 0, 0) {
            Ok(v) => v.max(0) as u64,
            Err(e) => msg::fatal(&e.0),
        }
    }
    pub fn myorigin(&self) -> String {
        match self.mc.myorigin() {
            Ok(v) => v,
            Err(e) => msg::fatal(&e.0),
        }
    }
    /// mynetworks (MailConf computes it from mynetworks_style when it is
    /// not set).
    pub fn mynetworks(&self) -> String {
        self.str("mynetworks")
    }
}
