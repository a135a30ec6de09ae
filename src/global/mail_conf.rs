//! The configuration every rostfix daemon and command reads: main.cf plus
//! built-in defaults, with typed access as Postfix's mail_conf_* routines.
//!
//! Values are `$name`-expanded recursively at use, against main.cf first and
//! then the built-in defaults. Typed getters validate like Postfix and report
//! its exact fatal texts (as [`ConfError`], which the caller makes fatal).
//! Host-derived defaults (myhostname, mydomain) come from
//! [`crate::global::hostinfo`]; Debian's `myorigin = /file` extension is
//! honoured; the compatibility level and the backwards-compatibility
//! safety nets it enables are computed here for the daemons to log.

use crate::global::config_file;
use crate::global::expand;
use crate::global::namevalues::NameValues;
use crate::global::params;
use std::fmt;

/// A configuration error, with Postfix's message text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfError(pub String);

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfError {}

/// Compatibility-level safety nets: each is on when the configured
/// compatibility_level is older than the change and the parameter is not set
/// explicitly (Postfix then keeps the old default and logs that it did).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompatWarnings {
    pub append_dot_mydomain: bool,
    pub smtputf8_enable: bool,
    pub chroot: bool,
    pub relay_restrictions: bool,
    pub relay_domains: bool,
    pub flush_domains: bool,
    pub mynetworks_style: bool,
    pub smtpd_tls_fingerprint_digest: bool,
    pub smtp_tls_fingerprint_digest: bool,
    pub lmtp_tls_fingerprint_digest: bool,
    pub relay_before_rcpt_checks: bool,
    pub respectful_logging: bool,
}

/// main.cf and the defaults.
#[derive(Debug, Clone, Default)]
pub struct MailConf {
    pub config_dir: String,
    pub settings: NameValues,
}

impl MailConf {
    /// Read `$config_dir/main.cf`; the directory is MAIL_CONFIG or /etc/postfix.
    pub fn read(config_dir: Option<&str>) -> Result<MailConf, ConfError> {
        let dir = match config_dir {
            Some(d) => d.to_string(),
            None => match std::env::var_os("MAIL_CONFIG") {
                Some(d) => crate::util::latin1::from_os(&d),
                None => "/etc/postfix".to_string(),
            },
        };
        let mut settings = NameValues::new();
        settings.set("config_directory", &dir);
        let path = format!("{dir}/main.cf");
        if !config_file::load_file(&path, &mut settings) {
            return Err(ConfError(format!(
                "open {path}: {}",
                config_file::last_error_text()
            )));
        }
        Ok(MailConf {
            config_dir: dir,
            settings,
        })
    }

    /// A configuration from text (tests, embedded defaults).
    pub fn from_text(config_dir: &str, text: &str) -> MailConf {
        let mut settings = NameValues::new();
        settings.set("config_directory", config_dir);
        config_file::load_text("main.cf", text, &mut settings);
        MailConf {
            config_dir: config_dir.to_string(),
            settings,
        }
    }

    /// Override a setting (a master.cf `-o name=value`).
    pub fn set(&mut self, name: &str, value: &str) {
        self.settings.set(name, value);
    }

    /// The unexpanded value: main.cf, else the built-in default.
    pub fn raw(&self, name: &str) -> Option<String> {
        if let Some(v) = self.settings.get(name) {
            return Some(v.to_string());
        }
        match name {
            "myhostname" => Some(self.default_myhostname()),
            "mydomain" => Some(self.default_mydomain()),
            // Computed from mynetworks_style as Postfix's mail_params does, so
            // that `$mynetworks` in other parameters (e.g. the default of
            // smtpd_client_event_limit_exceptions) sees the same value.
            "mynetworks" => Some(crate::global::hostinfo::mynetworks(
                &self
                    .lookup_eval("mynetworks_style")
                    .ok()
                    .flatten()
                    .unwrap_or_default(),
                &self
                    .lookup_eval("inet_interfaces")
                    .ok()
                    .flatten()
                    .unwrap_or_default(),
                &self
                    .lookup_eval("inet_protocols")
                    .ok()
                    .flatten()
                    .unwrap_or_default(),
            )),
            "process_name" | "service_name" | "process_id" => None,
            _ => params::builtin(name).map(|p| p.default.to_string()),
        }
    }

    fn default_myhostname(&self) -> String {
        let host = crate::global::hostinfo::kernel_hostname();
        if host.contains('.') {
            return host;
        }
        let domain = self
            .main_eval("mydomain")
            .unwrap_or_else(|| "localdomain".to_string());
        format!("{host}.{domain}")
    }

    fn default_mydomain(&self) -> String {
        let host = self
            .main_eval("myhostname")
            .unwrap_or_else(|| self.default_myhostname());
        match host.find('.') {
            Some(i) => host[i + 1..].to_string(),
            None => "localdomain".to_string(),
        }
    }

    /// A main.cf setting expanded against main.cf alone, without defaults
    /// (Postfix's mail_conf_lookup_eval while the host defaults are being
    /// computed): `None` when unset or on a syntax error. Expanding with
    /// defaults here would loop (`mydomain = $myhostname`, its default
    /// needing mydomain ...).
    fn main_eval(&self, name: &str) -> Option<String> {
        let value = self.settings.get(name)?;
        let mut out = String::new();
        let st = expand::mac_expand(&mut out, value, expand::FLAG_RECURSE, None, &mut |n, _| {
            self.settings.get(n).map(str::to_string)
        });
        (st & expand::PARSE_ERROR == 0).then_some(out)
    }

    /// Expand `$name` in text recursively; a syntax error is an error.
    pub fn expand(&self, text: &str) -> Result<String, ConfError> {
        let mut out = String::new();
        let st = expand::mac_expand(&mut out, text, expand::FLAG_RECURSE, None, &mut |n, _| {
            self.raw(n)
        });
        if st & expand::PARSE_ERROR != 0 {
            return Err(ConfError(
                "dictionary mail_dict: macro processing error".to_string(),
            ));
        }
        Ok(out)
    }

    /// A parameter's expanded value; `None` for an unknown name without a setting.
    pub fn lookup_eval(&self, name: &str) -> Result<Option<String>, ConfError> {
        match self.raw(name) {
            None => Ok(None),
            Some(v) => self.expand(&v).map(Some),
        }
    }

    /// A string parameter with Postfix's length checks (max 0 = no limit).
    pub fn get_str(&self, name: &str, min: usize, max: usize) -> Result<String, ConfError> {
        let v = self.lookup_eval(name)?.unwrap_or_default();
        let len = v.chars().count();
        if len < min {
            return Err(ConfError(format!(
                "bad string length {len} < {min}: {name} = {v}"
            )));
        }
        if max > 0 && len > max {
            return Err(ConfError(format!(
                "bad string length {len} > {max}: {name} = {v}"
            )));
        }
        Ok(v)
    }

    /// An int parameter within [min, max] (max 0 = no upper limit).
    pub fn get_int(&self, name: &str, min: i64, max: i64) -> Result<i64, ConfError> {
        let v = self.lookup_eval(name)?.unwrap_or_default();
        let n = parse_strtol(&v)
            .filter(|n| i32::try_from(*n).is_ok())
            .ok_or_else(|| ConfError(format!("bad numerical configuration: {name} = {v}")))?;
        check_range(name, n, min, max)
    }

    /// A long parameter within [min, max] (max 0 = no upper limit).
    pub fn get_long(&self, name: &str, min: i64, max: i64) -> Result<i64, ConfError> {
        let v = self.lookup_eval(name)?.unwrap_or_default();
        let n = parse_strtol(&v)
            .ok_or_else(|| ConfError(format!("bad numerical configuration: {name} = {v}")))?;
        check_range(name, n, min, max)
    }

    /// A yes/no parameter (case-insensitive).
    pub fn get_bool(&self, name: &str) -> Result<bool, ConfError> {
        let v = self.lookup_eval(name)?.unwrap_or_default();
        if v.eq_ignore_ascii_case("yes") {
            Ok(true)
        } else if v.eq_ignore_ascii_case("no") {
            Ok(false)
        } else {
            Err(ConfError(format!(
                "bad boolean configuration: {name} = {v}"
            )))
        }
    }

    /// A time parameter in seconds; `def_unit` applies to a bare number.
    pub fn get_time(
        &self,
        name: &str,
        def_unit: char,
        min: i64,
        max: i64,
    ) -> Result<i64, ConfError> {
        let v = self.lookup_eval(name)?.unwrap_or_default();
        let secs = conv_time(&v, def_unit)
            .ok_or_else(|| ConfError(format!("parameter {name}: bad time value or unit: {v}")))?;
        if secs < min {
            return Err(ConfError(format!("invalid {name}: {secs} (min {min})")));
        }
        if max > 0 && secs > max {
            return Err(ConfError(format!("invalid {name}: {secs} (max {max})")));
        }
        Ok(secs)
    }

    /// myorigin, with Debian's extension: a value starting with `/` names a
    /// file whose first line is the value.
    pub fn myorigin(&self) -> Result<String, ConfError> {
        let v = self.lookup_eval("myorigin")?.unwrap_or_default();
        if !v.starts_with('/') {
            return Ok(v);
        }
        let data = std::fs::read(crate::util::latin1::to_path(&v)).map_err(|e| {
            ConfError(format!(
                "{v}: cannot open file: {}",
                config_file::errno_text(&e)
            ))
        })?;
        let text = crate::util::latin1::decode(&data);
        let first = text.split('\n').next().unwrap_or("");
        let origin = first
            .trim_matches(|c: char| c.is_ascii_whitespace())
            .to_string();
        if origin.is_empty() {
            return Err(ConfError(format!("myorigin file {v} is empty")));
        }
        Ok(origin)
    }

    /// The compatibility level as a comparable number.
    pub fn compat_level(&self) -> Result<i64, ConfError> {
        let v = self.lookup_eval("compatibility_level")?.unwrap_or_default();
        // The warning for bad syntax is logged by the parser.
        expand::compat_level_from_string(&v)
            .ok_or_else(|| ConfError(format!("malformed compatibility level syntax: \"{v}\"")))
    }

    /// Which backwards-compatible defaults are in force.
    pub fn compat_warnings(&self) -> Result<CompatWarnings, ConfError> {
        let level = self.compat_level()?;
        let set = |n: &str| self.settings.contains(n);
        let mut w = CompatWarnings::default();
        if level < (3 << 20 | 6 << 10) {
            w.smtpd_tls_fingerprint_digest = !set("smtpd_tls_fingerprint_digest");
            w.smtp_tls_fingerprint_digest = !set("smtp_tls_fingerprint_digest");
            w.lmtp_tls_fingerprint_digest = !set("lmtp_tls_fingerprint_digest");
            w.relay_before_rcpt_checks = !set("smtpd_relay_before_recipient_restrictions");
            w.respectful_logging = !set("respectful_logging");
        }
        if level < 2 << 20 {
            if !set("relay_domains") {
                w.relay_domains = true;
                w.flush_domains = !set("fast_flush_domains");
            }
            w.mynetworks_style = !set("mynetworks") && !set("mynetworks_style");
        }
        if level < 1 << 20 {
            w.append_dot_mydomain = !set("append_dot_mydomain");
            w.smtputf8_enable = !set("smtputf8_enable");
            w.chroot = true;
            w.relay_restrictions = !set("smtpd_relay_restrictions");
        }
        Ok(w)
    }
}

fn check_range(name: &str, n: i64, min: i64, max: i64) -> Result<i64, ConfError> {
    if n < min {
        return Err(ConfError(format!(
            "invalid {name} parameter value {n} < {min}"
        )));
    }
    if max > 0 && n > max {
        return Err(ConfError(format!(
            "invalid {name} parameter value {n} > {max}"
        )));
    }
    Ok(n)
}

/// strtol(3) of the whole string: optional blanks and sign, digits, nothing after.
pub fn parse_strtol(s: &str) -> Option<i64> {
    let t = s.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i64 = digits.parse().ok()?;
    Some(if neg { -v } else { v })
}

/// Postfix's conv_time: a non-negative number with an optional unit
/// (w, d, h, m, s; only the first character after the number counts).
pub fn conv_time(s: &str, def_unit: char) -> Option<i64> {
    let t = s.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let n = body.bytes().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || neg {
        return None;
    }
    let v: i64 = body[..n].parse().ok()?;
    if v > i32::MAX as i64 {
        return None;
    }
    let unit = body[n..].chars().next().unwrap_or(def_unit);
    let mult: i64 = match unit {
        'w' => 7 * 86400,
        'd' => 86400,
        'h' => 3600,
        'm' => 60,
        's' => return Some(v),
        _ => return None,
    };
    if v < i32::MAX as i64 / mult {
        Some(v * mult)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(text: &str) -> MailConf {
        MailConf::from_text("/etc/postfix", text)
    }

    #[test]
    fn defaults_and_expansion() {
        let c = conf("myhostname = mail.example.com\nfoo = $myhostname/$mail_name\n");
        assert_eq!(
            c.lookup_eval("foo").unwrap().unwrap(),
            "mail.example.com/Postfix"
        );
        assert_eq!(c.lookup_eval("mydomain").unwrap().unwrap(), "example.com");
        assert_eq!(
            c.lookup_eval("mydestination").unwrap().unwrap(),
            "mail.example.com, localhost.example.com, localhost"
        );
        assert_eq!(c.lookup_eval("nonesuch").unwrap(), None);
    }

    #[test]
    fn host_defaults_that_refer_to_each_other_end() {
        // Found by fuzzing (fuzz/regressions/main_cf/): each of these used
        // to recurse until the stack overflowed. Postfix's postconf -x
        // prints the same values.
        let c = conf("myhostname = $mydomain\n");
        assert_eq!(c.lookup_eval("mydomain").unwrap().unwrap(), "localdomain");
        assert_eq!(c.lookup_eval("myhostname").unwrap().unwrap(), "localdomain");
        let c = conf("mydomain = $myhostname\n");
        let host = crate::global::hostinfo::kernel_hostname();
        let want = if host.contains('.') {
            host
        } else {
            format!("{host}.")
        };
        assert_eq!(c.lookup_eval("myhostname").unwrap().unwrap(), want);
        assert_eq!(c.lookup_eval("mydomain").unwrap().unwrap(), want);
    }

    #[test]
    fn compat_level_changes_defaults() {
        let old = conf("");
        assert_eq!(
            old.lookup_eval("append_dot_mydomain").unwrap().unwrap(),
            "yes"
        );
        assert_eq!(
            old.lookup_eval("mynetworks_style").unwrap().unwrap(),
            "subnet"
        );
        let new = conf("compatibility_level = 3.6\n");
        assert_eq!(
            new.lookup_eval("append_dot_mydomain").unwrap().unwrap(),
            "no"
        );
        assert_eq!(
            new.lookup_eval("mynetworks_style").unwrap().unwrap(),
            "host"
        );
        assert!(old.compat_warnings().unwrap().chroot);
        assert_eq!(new.compat_warnings().unwrap(), CompatWarnings::default());
        let w = conf("compatibility_level = 1\nrelay_domains = x\n")
            .compat_warnings()
            .unwrap();
        assert!(!w.relay_domains && w.mynetworks_style && !w.chroot);
    }

    #[test]
    fn typed_getters_use_postfix_texts() {
        let c = conf("a = 12\nb = 1x\nc = YES\nd = maybe\ne = 2h\nf = 3q\ng = -1\n");
        assert_eq!(c.get_int("a", 0, 0), Ok(12));
        assert_eq!(
            c.get_int("b", 0, 0),
            Err(ConfError("bad numerical configuration: b = 1x".into()))
        );
        assert_eq!(
            c.get_int("g", 0, 0),
            Err(ConfError("invalid g parameter value -1 < 0".into()))
        );
        assert_eq!(c.get_bool("c"), Ok(true));
        assert_eq!(
            c.get_bool("d"),
            Err(ConfError("bad boolean configuration: d = maybe".into()))
        );
        assert_eq!(c.get_time("e", 's', 0, 0), Ok(7200));
        assert_eq!(c.get_time("a", 'd', 0, 0), Ok(12 * 86400));
        assert_eq!(
            c.get_time("f", 's', 0, 0),
            Err(ConfError("parameter f: bad time value or unit: 3q".into()))
        );
        assert_eq!(
            c.get_time("maximal_queue_lifetime", 'd', 0, 0),
            Ok(5 * 86400)
        );
    }

    #[test]
    fn myorigin_from_file() {
        let dir = std::env::temp_dir().join(format!("rostfix-mailname-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("mailname");
        std::fs::write(&f, "  example.org  \nignored\n").unwrap();
        let c = conf(&format!("myorigin = {}\n", f.display()));
        assert_eq!(c.myorigin().unwrap(), "example.org");
        std::fs::write(&f, "\n").unwrap();
        assert!(c.myorigin().unwrap_err().0.ends_with("is empty"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            conf("myorigin = $mydomain\nmydomain = x.y\n")
                .myorigin()
                .unwrap(),
            "x.y"
        );
    }
}
