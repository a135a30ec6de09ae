//! The parameter name spaces of postconf: built-in, per-service, user-defined
//! and legacy database parameters, their values and `$name` expansion.
//!
//! Mirrors how Postfix 3.7's postconf decides which names are valid (and so
//! which main.cf/master.cf settings are reported as unused), and which value
//! each name has in each scope: a master.cf `-o` setting, then main.cf, then
//! the built-in default.

use super::mode::*;
use crate::global::expand;
use crate::global::msg;
use crate::global::namevalues::NameValues;
use crate::global::params::{self, Kind, ParamDef};
use crate::global::readlline;
use std::collections::{HashMap, HashSet};

/// Parameter classes (postconf -C).
pub const FLAG_RAW: u32 = 1 << 0;
pub const FLAG_BUILTIN: u32 = 1 << 1;
pub const FLAG_SERVICE: u32 = 1 << 2;
pub const FLAG_USER: u32 = 1 << 3;
pub const FLAG_LEGACY: u32 = 1 << 4;
pub const FLAG_READONLY: u32 = 1 << 5;
pub const FLAG_DBMS: u32 = 1 << 6;
pub const MASK_CLASS: u32 = FLAG_BUILTIN | FLAG_SERVICE | FLAG_USER;

/// Where a parameter's default value comes from.
#[derive(Debug, Clone)]
pub enum NodeData {
    /// A built-in parameter.
    Builtin(&'static ParamDef),
    /// A per-service parameter whose default is `$defparam`.
    Service(String),
    /// A user-defined parameter: it has no default.
    User,
}

/// One valid parameter name.
#[derive(Debug, Clone)]
pub struct Node {
    pub flags: u32,
    pub data: NodeData,
}

/// One master.cf entry as postconf sees it.
#[derive(Debug, Clone, Default)]
pub struct MasterEnt {
    /// `service/type`, the name space of its `-o` parameters.
    pub name_space: String,
    /// The fields: 8 or more, after `{ }` and `-o` normalisation.
    pub argv: Vec<String>,
    /// All `-o name=value` settings, when there are any.
    pub all_params: Option<NameValues>,
    /// Read-only settings (none in 3.7's postconf; kept for symmetry).
    pub ro_params: Option<NameValues>,
    /// Names that are valid in this entry's scope besides the global ones.
    pub valid_names: Option<HashMap<String, Node>>,
}

/// The state of one postconf run.
pub struct Pcf {
    pub mode: u32,
    /// The program's base name (process_name).
    pub procname: String,
    pub config_dir: String,
    /// main.cf settings plus `-o` overrides (Postfix's CONFIG_DICT).
    pub main: NameValues,
    /// Every valid parameter name; `None` until the built-ins are registered.
    pub params: HashMap<String, Node>,
    pub masters: Vec<MasterEnt>,
    /// Whether master.cf was read (the table is initialised).
    pub master_read: bool,
    pub(super) rest_classes: HashSet<String>,
    host_cache: HashMap<&'static str, String>,
    pub(super) dbms_seen: HashSet<String>,
}

impl Pcf {
    pub fn new(mode: u32, procname: &str) -> Self {
        Pcf {
            mode,
            procname: procname.to_string(),
            config_dir: String::new(),
            main: NameValues::new(),
            params: HashMap::new(),
            masters: Vec::new(),
            master_read: false,
            rest_classes: HashSet::new(),
            host_cache: HashMap::new(),
            dbms_seen: HashSet::new(),
        }
    }

    /// Choose the configuration directory: `MAIL_CONFIG` (which `-c` sets),
    /// else the compiled-in /etc/postfix. An explicit directory is also
    /// recorded as the value of config_directory.
    pub fn set_config_dir(&mut self) {
        match std::env::var_os("MAIL_CONFIG") {
            Some(dir) => {
                self.config_dir = crate::util::latin1::from_os(&dir);
                let d = self.config_dir.clone();
                self.main.set("config_directory", &d);
            }
            None => self.config_dir = "/etc/postfix".to_string(),
        }
    }

    /// Read main.cf into the main name space, as Postfix does (a fatal error
    /// when it cannot be opened; a "hot" file is read again until it cools).
    pub fn read_parameters(&mut self) {
        self.set_config_dir();
        let path = format!("{}/main.cf", self.config_dir);
        if !load_file(&path, &mut self.main) {
            msg::fatal(&format!("open {path}: {}", last_error_text()));
        }
    }

    /// Apply `-o name=value` overrides.
    pub fn set_parameters(&mut self, overrides: &[String]) {
        for o in overrides {
            match readlline::split_nameval(o) {
                Ok((n, v)) => self.main.set(&n, &v),
                Err(e) => msg::fatal(&format!("invalid parameter override: {o}: {e}")),
            }
        }
    }

    /// Register every built-in parameter.
    pub fn register_builtin_parameters(&mut self) {
        for p in params::BUILTIN {
            let flags = match p.kind {
                Kind::Raw => FLAG_BUILTIN | FLAG_RAW,
                Kind::Legacy => FLAG_LEGACY,
                Kind::ReadOnly => FLAG_BUILTIN | FLAG_READONLY,
                _ => FLAG_BUILTIN,
            };
            self.params.insert(
                p.name.to_string(),
                Node {
                    flags,
                    data: NodeData::Builtin(p),
                },
            );
        }
    }

    /// The default value of a parameter node.
    pub fn convert_param_node(&mut self, name: &str, node: &Node) -> String {
        match &node.data {
            NodeData::Service(def) => format!("${def}"),
            NodeData::User => String::new(),
            NodeData::Builtin(p) => match p.name {
                "process_name" => self.procname.clone(),
                "process_id" => std::process::id().to_string(),
                "myhostname" | "mydomain" | "mynetworks" => self.host_default(p.name),
                _ => {
                    let _ = name;
                    p.default.to_string()
                }
            },
        }
    }

    fn host_default(&mut self, name: &'static str) -> String {
        if let Some(v) = self.host_cache.get(name) {
            return v.clone();
        }
        let v = match name {
            "myhostname" => {
                let host = crate::global::hostinfo::kernel_hostname();
                if host.contains('.') {
                    host
                } else {
                    let domain = self
                        .main_lookup_eval("mydomain")
                        .unwrap_or_else(|| "localdomain".to_string());
                    format!("{host}.{domain}")
                }
            }
            "mydomain" => {
                let host = match self.main_lookup_eval("myhostname") {
                    Some(h) => h,
                    None => self.host_default("myhostname"),
                };
                match host.find('.') {
                    Some(i) => host[i + 1..].to_string(),
                    None => "localdomain".to_string(),
                }
            }
            _ => {
                let get = |n: &str, pcf: &mut Pcf| -> String {
                    let raw = if pcf.mode & SHOW_DEFS != 0 {
                        None
                    } else {
                        pcf.main_lookup_eval(n)
                    };
                    match raw {
                        Some(v) => v,
                        None => {
                            let def = params::builtin(n).map(|p| p.default).unwrap_or("");
                            pcf.expand_parameter_value(pcf.mode, def, None)
                        }
                    }
                };
                let interfaces = get("inet_interfaces", self);
                let style = get("mynetworks_style", self);
                let protocols = get("inet_protocols", self);
                crate::global::hostinfo::mynetworks(&style, &interfaces, &protocols)
            }
        };
        self.host_cache.insert(name, v.clone());
        v
    }

    /// A main.cf value, `$name`-expanded recursively against main.cf only
    /// (Postfix's mail_conf_lookup_eval).
    pub fn main_lookup_eval(&mut self, name: &str) -> Option<String> {
        let value = self.main.get(name)?.to_string();
        let main = &self.main;
        let mut out = String::new();
        let st = expand::mac_expand(&mut out, &value, expand::FLAG_RECURSE, None, &mut |n, _| {
            main.get(n).map(|s| s.to_string())
        });
        if st & expand::PARSE_ERROR != 0 {
            msg::fatal("dictionary mail_dict: macro processing error");
        }
        Some(out)
    }

    /// The value of `name` in a scope: master.cf `-o`, then main.cf, then the
    /// default (only defaults with -d; no defaults with -n).
    pub fn lookup_parameter_value(
        &mut self,
        mode: u32,
        name: &str,
        scope: Option<usize>,
        node: Option<&Node>,
    ) -> Option<String> {
        let mut value: Option<String> = None;
        let use_default = if mode & SHOW_DEFS != 0 {
            true
        } else {
            if let Some(i) = scope {
                let m = &self.masters[i];
                value = m
                    .ro_params
                    .as_ref()
                    .and_then(|d| d.get(name))
                    .or_else(|| m.all_params.as_ref().and_then(|d| d.get(name)))
                    .map(|s| s.to_string());
            }
            if value.is_none() {
                value = self.main.get(name).map(|s| s.to_string());
            }
            value.is_none() && mode & SHOW_NONDEF == 0
        };
        if use_default {
            let node = match node {
                Some(n) => Some(n.clone()),
                None => self.params.get(name).cloned(),
            };
            if let Some(n) = node {
                value = Some(self.convert_param_node(name, &n));
            }
        }
        value
    }

    /// Expand `$name` in a value recursively; a syntax error is fatal.
    pub fn expand_parameter_value(
        &mut self,
        mode: u32,
        value: &str,
        scope: Option<usize>,
    ) -> String {
        let eval_mode = mode & !SHOW_NONDEF;
        let mut out = String::new();
        let st = expand::mac_expand(&mut out, value, expand::FLAG_RECURSE, None, &mut |n, _| {
            self.lookup_parameter_value(eval_mode, n, scope, None)
        });
        if st & expand::PARSE_ERROR != 0 {
            msg::fatal("macro processing error");
        }
        out
    }

    /// Register per-service parameters for delivery transports and spawn
    /// services named in master.cf.
    pub fn register_service_parameters(&mut self) {
        const SERVICE: &[(&str, &str)] = &[
            ("_recipient_limit", "default_recipient_limit"),
            ("_extra_recipient_limit", "default_extra_recipient_limit"),
            ("_recipient_refill_limit", "default_recipient_refill_limit"),
            ("_recipient_refill_delay", "default_recipient_refill_delay"),
            ("_delivery_slot_cost", "default_delivery_slot_cost"),
            ("_delivery_slot_loan", "default_delivery_slot_loan"),
            ("_delivery_slot_discount", "default_delivery_slot_discount"),
            ("_minimum_delivery_slots", "default_minimum_delivery_slots"),
            (
                "_initial_destination_concurrency",
                "initial_destination_concurrency",
            ),
            (
                "_destination_concurrency_limit",
                "default_destination_concurrency_limit",
            ),
            (
                "_destination_recipient_limit",
                "default_destination_recipient_limit",
            ),
            (
                "_destination_concurrency_positive_feedback",
                "default_destination_concurrency_positive_feedback",
            ),
            (
                "_destination_concurrency_negative_feedback",
                "default_destination_concurrency_negative_feedback",
            ),
            (
                "_destination_concurrency_failed_cohort_limit",
                "default_destination_concurrency_failed_cohort_limit",
            ),
            ("_destination_rate_delay", "default_destination_rate_delay"),
            ("_transport_rate_delay", "default_transport_rate_delay"),
        ];
        const TIME_LIMIT: (&str, &str) = ("_time_limit", "command_time_limit");
        let mut todo: Vec<(String, &str, &str)> = Vec::new();
        for m in &self.masters {
            let (Some(service), Some(prog)) = (m.argv.first(), m.argv.get(7)) else {
                continue;
            };
            match prog.as_str() {
                "local" | "error" | "virtual" | "smtp" | "lmtp" => {
                    todo.extend(SERVICE.iter().map(|(s, d)| (service.clone(), *s, *d)));
                }
                "pipe" => {
                    todo.push((service.clone(), TIME_LIMIT.0, TIME_LIMIT.1));
                    todo.extend(SERVICE.iter().map(|(s, d)| (service.clone(), *s, *d)));
                }
                "spawn" => todo.push((service.clone(), TIME_LIMIT.0, TIME_LIMIT.1)),
                _ => {}
            }
        }
        for (service, suffix, def) in todo {
            let name = format!("{service}{suffix}");
            match self.params.get_mut(&name) {
                Some(node) => node.flags = (node.flags & !MASK_CLASS) | FLAG_SERVICE,
                None => {
                    self.params.insert(
                        name,
                        Node {
                            flags: FLAG_SERVICE,
                            data: NodeData::Service(def.to_string()),
                        },
                    );
                }
            }
        }
    }
}

pub use crate::global::config_file::{errno_text, last_error_text, load_file, load_text};
