//! Parameters of a database client (`memcache:`, and later `ldap:`,
//! `mysql:` ...), as Postfix's cfg_parser: a table name that starts with `/`
//! or `.` is a file of `name = value` lines (main.cf syntax, values not
//! `$`-expanded); any other name is a prefix for main.cf parameters
//! (`memcache:mc` reads `mc_memcache`, `mc_ttl` ... from main.cf, expanded).
//!
//! Bad values end the program with Postfix's texts, as Postfix does in any
//! program. The main.cf used for prefixed names is the one the program read
//! ([`set_main_conf`]); without it the built-in defaults apply.

use crate::global::config_file;
use crate::global::mail_conf::{MailConf, parse_strtol};
use crate::global::msg;
use crate::global::namevalues::NameValues;
use std::sync::Mutex;

static MAIN_CONF: Mutex<Option<MailConf>> = Mutex::new(None);

/// Remember the program's main.cf for parameters named `prefix_name`.
pub fn set_main_conf(conf: &MailConf) {
    *MAIN_CONF.lock().unwrap_or_else(|e| e.into_inner()) = Some(conf.clone());
}

fn main_conf() -> MailConf {
    MAIN_CONF
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default()
}

enum Source {
    /// A parameter file, read at open time.
    File(NameValues),
    /// main.cf parameters `NAME_param`.
    MainCf(MailConf),
}

/// The parameters of one client table.
pub struct CfgParser {
    name: String,
    source: Source,
}

impl CfgParser {
    /// Read the parameter file `name` (or select main.cf for a prefix).
    /// `Err` is the `%m` text when the file cannot be opened.
    pub fn open(name: &str) -> Result<CfgParser, String> {
        if name.is_empty() {
            msg::fatal("cfg_parser_alloc: null parser name");
        }
        let source = if name.starts_with('/') || name.starts_with('.') {
            let mut nv = NameValues::new();
            if !config_file::load_file(name, &mut nv) {
                return Err(config_file::last_error_text());
            }
            Source::File(nv)
        } else {
            Source::MainCf(main_conf())
        };
        Ok(CfgParser {
            name: name.to_string(),
            source,
        })
    }

    /// The parser's name (the table name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A string parameter; `None` for an empty value when `defval` is
    /// `None` (cfg_get_str with a null default). Length limits 0 = none.
    pub fn get_str(
        &self,
        name: &str,
        defval: Option<&str>,
        min: usize,
        max: usize,
    ) -> Option<String> {
        let def = defval.unwrap_or("");
        let v = match &self.source {
            Source::File(nv) => {
                let v = nv.get(name).unwrap_or(def).to_string();
                let len = v.chars().count();
                if min > 0 && len < min {
                    msg::fatal(&format!(
                        "{}: bad string length {len} < {min}: {name} = {v}",
                        self.name
                    ));
                }
                if max > 0 && len > max {
                    msg::fatal(&format!(
                        "{}: bad string length {len} > {max}: {name} = {v}",
                        self.name
                    ));
                }
                v
            }
            Source::MainCf(conf) => {
                let pname = format!("{}_{name}", self.name);
                let v = match conf.lookup_eval(&pname) {
                    Ok(Some(v)) => v,
                    Ok(None) => conf.expand(def).unwrap_or_else(|e| msg::fatal(&e.0)),
                    Err(e) => msg::fatal(&e.0),
                };
                let len = v.chars().count();
                if min > 0 && len < min {
                    msg::fatal(&format!("bad string length {len} < {min}: {pname} = {v}"));
                }
                if max > 0 && len > max {
                    msg::fatal(&format!("bad string length {len} > {max}: {pname} = {v}"));
                }
                v
            }
        };
        if defval.is_none() && v.is_empty() {
            None
        } else {
            Some(v)
        }
    }

    /// An integer parameter (limits 0 = none).
    pub fn get_int(&self, name: &str, defval: i32, min: i32, max: i32) -> i32 {
        let (shown_name, value) = match &self.source {
            Source::File(nv) => (name.to_string(), nv.get(name).map(str::to_string)),
            Source::MainCf(conf) => {
                let pname = format!("{}_{name}", self.name);
                let v = conf
                    .lookup_eval(&pname)
                    .unwrap_or_else(|e| msg::fatal(&e.0));
                (pname, v)
            }
        };
        let prefix = match &self.source {
            Source::File(_) => format!("{}: ", self.name),
            Source::MainCf(_) => String::new(),
        };
        let n = match value {
            None => defval,
            Some(v) => match parse_strtol(&v).and_then(|n| i32::try_from(n).ok()) {
                Some(n) => n,
                None => msg::fatal(&format!(
                    "{prefix}bad numerical configuration: {shown_name} = {v}"
                )),
            },
        };
        if min != 0 && n < min {
            msg::fatal(&format!(
                "{prefix}invalid {shown_name} parameter value {n} < {min}"
            ));
        }
        if max != 0 && n > max {
            msg::fatal(&format!(
                "{prefix}invalid {shown_name} parameter value {n} > {max}"
            ));
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_parameters() {
        let dir = std::env::temp_dir().join(format!("rostfix-cfgp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mc.cf");
        std::fs::write(
            &path,
            "memcache = inet:h:1\nttl = 5\n  # comment\nempty =\nref = $x\n",
        )
        .unwrap();
        // A file changed within the last second is read again until quiet.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let f = std::fs::File::options().append(true).open(&path).unwrap();
        f.set_modified(old).unwrap();
        let p = CfgParser::open(path.to_str().unwrap()).unwrap();
        assert_eq!(
            p.get_str("memcache", Some("d"), 0, 0).as_deref(),
            Some("inet:h:1")
        );
        assert_eq!(p.get_str("nope", Some("d"), 0, 0).as_deref(), Some("d"));
        assert_eq!(p.get_str("nope", None, 0, 0), None);
        assert_eq!(p.get_str("empty", None, 0, 0), None);
        // Values in a parameter file are not expanded.
        assert_eq!(p.get_str("ref", None, 0, 0).as_deref(), Some("$x"));
        assert_eq!(p.get_int("ttl", 1, 0, 0), 5);
        assert_eq!(p.get_int("other", 7, 1, 0), 7);
        assert_eq!(
            CfgParser::open("/nonexistent/rostfix.cf").err().as_deref(),
            Some("No such file or directory")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn main_cf_parameters() {
        let conf = MailConf::from_text(
            "/etc/postfix",
            "mc_ttl = 9\nmc_memcache = inet:$h:2\nh = x\n",
        );
        let p = CfgParser {
            name: "mc".into(),
            source: Source::MainCf(conf),
        };
        assert_eq!(p.get_int("ttl", 1, 0, 0), 9);
        assert_eq!(p.get_int("flags", 3, 0, 0), 3);
        assert_eq!(
            p.get_str("memcache", Some("d"), 0, 0).as_deref(),
            Some("inet:x:2")
        );
        assert_eq!(
            p.get_str("key_format", Some("%s"), 0, 0).as_deref(),
            Some("%s")
        );
    }
}
