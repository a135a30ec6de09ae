//! User-defined parameters: a name is valid when main.cf or master.cf gives it
//! a value and some other value refers to it as `$name`, or it is listed in
//! smtpd_restriction_classes. Also the legacy database parameters
//! (`ldap:name` makes `name_server_host` & co. valid). Mirrors Postfix 3.7.

use super::core::*;
use super::mode::*;
use crate::global::expand;
use crate::global::msg;
use crate::global::namevalues::NameValues;
use std::collections::HashMap;

/// Database client parameter suffixes, from Postfix 3.7.11's dict_*.c.
const LDAP: &[&str] = &[
    "bind",
    "bind_dn",
    "bind_pw",
    "cache",
    "cache_expiry",
    "cache_size",
    "chase_referrals",
    "debuglevel",
    "dereference",
    "domain",
    "expansion_limit",
    "leaf_result_attribute",
    "query_filter",
    "recursion_limit",
    "result_attribute",
    "result_format",
    "sasl",
    "sasl_authz_id",
    "sasl_mechs",
    "sasl_minssf",
    "sasl_realm",
    "scope",
    "search_base",
    "server_host",
    "server_port",
    "size_limit",
    "special_result_attribute",
    "terminal_result_attribute",
    "timeout",
    "tls_ca_cert_dir",
    "tls_ca_cert_file",
    "tls_cert",
    "tls_cipher_suite",
    "tls_key",
    "tls_random_file",
    "tls_require_cert",
    "start_tls",
    "version",
];
const MYSQL: &[&str] = &[
    "additional_conditions",
    "dbname",
    "domain",
    "expansion_limit",
    "hosts",
    "idle_interval",
    "option_file",
    "option_group",
    "password",
    "query",
    "require_result_set",
    "result_format",
    "retry_interval",
    "select_field",
    "table",
    "tls_CAfile",
    "tls_CApath",
    "tls_cert_file",
    "tls_ciphers",
    "tls_key_file",
    "tls_verify_cert",
    "user",
    "where_field",
];
const PGSQL: &[&str] = &[
    "additional_conditions",
    "dbname",
    "domain",
    "expansion_limit",
    "hosts",
    "password",
    "query",
    "result_format",
    "select_field",
    "select_function",
    "table",
    "user",
    "where_field",
];
const SQLITE: &[&str] = &[
    "additional_conditions",
    "dbpath",
    "domain",
    "expansion_limit",
    "query",
    "result_format",
    "select_field",
    "table",
    "where_field",
];
const MEMCACHE: &[&str] = &[
    "backup",
    "data_size_limit",
    "domain",
    "flags",
    "key_format",
    "line_size_limit",
    "max_try",
    "memcache",
    "retry_pause",
    "timeout",
    "ttl",
];

const DBMS: &[(&str, &[&str])] = &[
    ("ldap", LDAP),
    ("mysql", MYSQL),
    ("pgsql", PGSQL),
    ("sqlite", SQLITE),
    ("memcache", MEMCACHE),
];

/// Which name space a scan works on.
#[derive(Clone, Copy)]
enum Space {
    Main,
    Master(usize),
}

impl Pcf {
    fn source(scope: Option<usize>) -> &'static str {
        if scope.is_some() {
            "master.cf"
        } else {
            "main.cf"
        }
    }

    /// Note a `$name` reference; make `name` valid where it has a value.
    fn flag_user_parameter(&mut self, name: &str, class: u32, scope: Option<usize>) {
        let mut user_supplied = false;
        let in_local = scope.is_some_and(|i| {
            self.masters[i]
                .all_params
                .as_ref()
                .is_some_and(|d| d.contains(name))
        });
        let verbose = msg::verbose() > 0;
        if let (true, Some(i)) = (in_local, scope) {
            user_supplied = true;
            let ns = self.masters[i].name_space.clone();
            let valid = self.masters[i].valid_names.get_or_insert_with(HashMap::new);
            if !valid.contains_key(name) {
                valid.insert(
                    name.to_string(),
                    Node {
                        flags: class,
                        data: NodeData::User,
                    },
                );
                if verbose {
                    msg::info(&format!(
                        "${name} in master.cf:{ns} validates {name}=value in master.cf:{ns}"
                    ));
                }
            }
        } else if self.main.contains(name) {
            user_supplied = true;
            if !self.params.contains_key(name) {
                self.params.insert(
                    name.to_string(),
                    Node {
                        flags: class,
                        data: NodeData::User,
                    },
                );
                if verbose {
                    match scope {
                        Some(i) => msg::info(&format!(
                            "${name} in master.cf:{} validates {name}=value in main.cf",
                            self.masters[i].name_space
                        )),
                        None => msg::info(&format!(
                            "${name} in main.cf validates {name}=value in main.cf"
                        )),
                    }
                }
            }
        }
        if scope.is_none() {
            for m in &mut self.masters {
                if m.all_params.as_ref().is_some_and(|d| d.contains(name)) {
                    user_supplied = true;
                    let valid = m.valid_names.get_or_insert_with(HashMap::new);
                    if !valid.contains_key(name) {
                        valid.insert(
                            name.to_string(),
                            Node {
                                flags: class,
                                data: NodeData::User,
                            },
                        );
                        if verbose {
                            msg::info(&format!(
                                "${name} in main.cf validates {name}=value in master.cf:{}",
                                m.name_space
                            ));
                        }
                    }
                }
            }
        }
        if !user_supplied && class & FLAG_DBMS == 0 && !self.params.contains_key(name) {
            msg::warn(&format!(
                "{}/{}: undefined parameter: {name}",
                self.config_dir,
                Self::source(scope)
            ));
        }
    }

    /// Scan a value for `$name` references in every branch.
    fn scan_user_parameter_value(&mut self, value: &str, class: u32, scope: Option<usize>) {
        let mut names: Vec<String> = Vec::new();
        let mut sink = String::new();
        // The scan calls back in order; collect, then flag in the same order.
        let _ = expand::mac_expand(&mut sink, value, expand::FLAG_SCAN, None, &mut |n, _| {
            names.push(n.to_string());
            None
        });
        for n in names {
            self.flag_user_parameter(&n, class, scope);
        }
    }

    fn space_lookup_eval(&mut self, space: Space, name: &str) -> Option<String> {
        match space {
            Space::Main => self.main_lookup_eval(name),
            Space::Master(i) => {
                let d = self.masters[i].all_params.as_ref()?;
                let value = d.get(name)?.to_string();
                let mut out = String::new();
                let st = expand::mac_expand(
                    &mut out,
                    &value,
                    expand::FLAG_RECURSE,
                    None,
                    &mut |n, _| d.get(n).map(|s| s.to_string()),
                );
                if st & expand::PARSE_ERROR != 0 {
                    msg::fatal(&format!(
                        "dictionary {}: macro processing error",
                        self.masters[i].name_space
                    ));
                }
                Some(out)
            }
        }
    }

    fn scan_user_parameter_namespace(&mut self, space: Space) {
        let scope = match space {
            Space::Main => None,
            Space::Master(i) => Some(i),
        };
        if let Some(list) = self.space_lookup_eval(space, "smtpd_restriction_classes") {
            for class in list
                .split([',', ' ', '\t', '\r', '\n'])
                .filter(|s| !s.is_empty())
            {
                if scope.is_none() {
                    self.rest_classes_insert(class);
                }
                self.flag_user_parameter(class, FLAG_USER, scope);
            }
        }
        let entries: Vec<(String, String)> = match space {
            Space::Main => self
                .main
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            Space::Master(i) => self.masters[i]
                .all_params
                .as_ref()
                .map(|d| {
                    d.iter()
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .collect()
                })
                .unwrap_or_default(),
        };
        for (name, value) in entries {
            if let Some(i) = scope
                && self.rest_classes_contains(&name)
            {
                let valid = self.masters[i].valid_names.get_or_insert_with(HashMap::new);
                valid.entry(name.clone()).or_insert(Node {
                    flags: FLAG_USER,
                    data: NodeData::User,
                });
            }
            let node = self.params.get(&name).cloned();
            if let Some(node) = &node {
                if node.flags & FLAG_READONLY != 0 {
                    msg::warn(&format!(
                        "{}/{}: read-only parameter assignment: {name}={value}",
                        self.config_dir,
                        Self::source(scope)
                    ));
                    match space {
                        Space::Main => {
                            self.main.remove(&name);
                        }
                        Space::Master(i) => {
                            // The settings are shared by the name space.
                            let ns = self.masters[i].name_space.clone();
                            for m in self.masters.iter_mut().filter(|m| m.name_space == ns) {
                                if let Some(d) = m.all_params.as_mut() {
                                    d.remove(&name);
                                }
                            }
                        }
                    }
                    continue;
                }
                if node.flags & FLAG_LEGACY != 0
                    && let Some(n) = self.params.get_mut(&name)
                {
                    n.flags = (n.flags & !MASK_CLASS) | FLAG_USER;
                }
                if node.flags & FLAG_RAW != 0 {
                    continue;
                }
            }
            self.scan_user_parameter_value(&value, FLAG_USER, scope);
            if let Some(node) = &node
                && node.flags & (FLAG_BUILTIN | FLAG_SERVICE) != 0
            {
                self.register_dbms_parameters(&value, scope);
            }
        }
    }

    fn rest_classes_insert(&mut self, name: &str) {
        self.rest_classes.insert(name.to_string());
    }

    fn rest_classes_contains(&mut self, name: &str) -> bool {
        self.rest_classes.contains(name)
    }

    /// Register user-defined parameters of main.cf and master.cf.
    pub fn register_user_parameters(&mut self) {
        // The per-service name spaces: every "-o name=value" before the
        // command's own arguments. As in Postfix, the settings belong to the
        // name space (service/type): entries that share one share them, and
        // an entry sees the name space once any entry up to it has set it.
        let mut spaces: HashMap<String, NameValues> = HashMap::new();
        let mut has_space = vec![false; self.masters.len()];
        for (i, m) in self.masters.iter().enumerate() {
            for (n, v) in super::master::option_settings(&m.argv) {
                spaces.entry(m.name_space.clone()).or_default().set(&n, &v);
            }
            has_space[i] = spaces.contains_key(&m.name_space);
        }
        for (i, m) in self.masters.iter_mut().enumerate() {
            if has_space[i] {
                m.all_params = spaces.get(&m.name_space).cloned();
                m.valid_names = Some(HashMap::new());
            }
        }
        for i in 0..self.masters.len() {
            if self.masters[i].all_params.is_some() {
                self.scan_user_parameter_namespace(Space::Master(i));
            }
        }
        // Defaults that mention other names: those are not unused.
        let mut names: Vec<String> = self
            .params
            .iter()
            .filter(|(n, node)| node.flags & FLAG_RAW == 0 && !self.main.contains(n))
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        for n in names {
            let node = self.params[&n].clone();
            let v = self.convert_param_node(&n, &node);
            self.scan_user_parameter_value(&v, FLAG_USER, None);
        }
        self.scan_user_parameter_namespace(Space::Main);
    }

    /// Flag names that no valid parameter uses.
    pub fn flag_unused_main_parameters(&mut self) {
        let unused: Vec<(String, String)> = self
            .main
            .iter()
            .filter(|(n, _)| !self.params.contains_key(*n))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        for (n, v) in unused {
            crate::global::out::flush();
            msg::warn(&format!(
                "{}/main.cf: unused parameter: {n}={v}",
                self.config_dir
            ));
        }
    }

    pub fn flag_unused_master_parameters(&mut self) {
        let mut warnings = Vec::new();
        for m in &self.masters {
            let Some(d) = &m.all_params else { continue };
            for (n, v) in d.iter() {
                let local = m.valid_names.as_ref().is_some_and(|vn| vn.contains_key(n));
                if !self.params.contains_key(n) && !local {
                    warnings.push(format!(
                        "{}/master.cf: unused parameter: {n}={v}",
                        self.config_dir
                    ));
                }
            }
        }
        for w in warnings {
            crate::global::out::flush();
            msg::warn(&w);
        }
    }

    /// Legacy database parameters named by `type:prefix` in a value.
    fn register_dbms_parameters(&mut self, value: &str, scope: Option<usize>) {
        let expanded = self.expand_parameter_value(SHOW_EVAL, value, scope);
        self.register_dbms_helper(&expanded, scope);
    }

    fn dbms_warn(&self, scope: Option<usize>, err: &str) {
        match scope {
            Some(i) => msg::warn(&format!("master.cf:{}: {err}", self.masters[i].name_space)),
            None => msg::warn(&format!("main.cf: {err}")),
        }
    }

    fn register_dbms_helper(&mut self, text: &str, scope: Option<usize>) {
        let mut rest = text.to_string();
        while let Some(tok) = mystrtokq(&mut rest, ", \t\r\n") {
            if tok.starts_with('{') {
                let (inner, err) = extpar(&tok);
                if let Some(e) = err {
                    self.dbms_warn(scope, &e);
                }
                self.register_dbms_helper(&inner, scope);
                continue;
            }
            // Skip proxy: prefixes.
            let mut db_type = tok.as_str();
            let mut prefix: Option<&str>;
            loop {
                prefix = db_type.find(':').map(|i| &db_type[i + 1..]);
                let t = db_type.split(':').next().unwrap_or("");
                match prefix {
                    Some(p) if t == "proxy" => db_type = p,
                    _ => {
                        db_type = t;
                        break;
                    }
                }
            }
            let Some(prefix) = prefix else { continue };
            if prefix.starts_with('/') {
                if let Some((t, suffixes)) = DBMS.iter().find(|(t, _)| *t == db_type) {
                    self.check_dbms_client(t, suffixes, prefix);
                }
                continue;
            }
            if prefix.starts_with('.') {
                continue;
            }
            if prefix.starts_with('{') {
                let (inner, err) = extpar(prefix);
                if let Some(e) = err {
                    self.dbms_warn(scope, &e);
                }
                self.register_dbms_helper(&inner, scope);
                continue;
            }
            if let Some((_, suffixes)) = DBMS.iter().find(|(t, _)| *t == db_type) {
                for s in suffixes.iter() {
                    let cand = format!("{prefix}_{s}");
                    self.flag_user_parameter(&cand, FLAG_DBMS | FLAG_USER, scope);
                }
            }
        }
    }

    fn check_dbms_client(&mut self, db_type: &str, suffixes: &[&str], file: &str) {
        let spec = format!("{db_type}:{file}");
        if !self.dbms_seen.insert(spec.clone()) {
            return;
        }
        let path = crate::util::latin1::to_path(file);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                if e.raw_os_error() != Some(libc::EACCES) {
                    msg::warn(&format!(
                        "open \"{db_type}\" configuration \"{file}\": {}",
                        errno_text(&e)
                    ));
                }
                return;
            }
        };
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if !meta.is_file() && e.raw_os_error() == Some(libc::EISDIR) => {
                msg::warn(&format!(
                    "open \"{db_type}\" configuration \"{file}\": not a regular file"
                ));
                return;
            }
            Err(e) => {
                if e.raw_os_error() != Some(libc::EACCES) {
                    msg::warn(&format!(
                        "open \"{db_type}\" configuration \"{file}\": {}",
                        errno_text(&e)
                    ));
                }
                return;
            }
        };
        if !meta.is_file() {
            msg::warn(&format!(
                "open \"{db_type}\" configuration \"{file}\": not a regular file"
            ));
            return;
        }
        let mut dict = NameValues::new();
        load_text(file, &crate::util::latin1::decode(&data), &mut dict);
        for s in suffixes {
            dict.remove(s);
        }
        for (n, v) in dict.iter() {
            msg::warn(&format!("{spec}: unused parameter: {n}={v}"));
        }
    }
}

/// Postfix's mystrtokq: the next token separated by `sep`, where `{...}` groups
/// protect separators.
pub fn mystrtokq(rest: &mut String, sep: &str) -> Option<String> {
    let s = rest.trim_start_matches(|c| sep.contains(c));
    if s.is_empty() {
        rest.clear();
        return None;
    }
    let mut level = 0i32;
    let mut end = s.len();
    for (i, c) in s.char_indices() {
        if c == '{' {
            level += 1;
        } else if level > 0 && c == '}' {
            level -= 1;
        } else if level == 0 && sep.contains(c) {
            end = i;
            break;
        }
    }
    let tok = s[..end].to_string();
    let after = if end < s.len() { &s[end + 1..] } else { "" };
    *rest = after.to_string();
    Some(tok)
}

/// Postfix's extpar for `{text}`: strip the braces and blanks inside them.
/// Returns the text and an error for text after the closing brace or a
/// missing closing brace.
pub fn extpar(s: &str) -> (String, Option<String>) {
    debug_assert!(s.starts_with('{'));
    let mut level = 0i32;
    for (i, c) in s.char_indices() {
        if c == '{' {
            level += 1;
        } else if c == '}' {
            level -= 1;
            if level == 0 {
                let inner = s[1..i].to_string();
                let after = &s[i + 1..];
                if !after.is_empty() {
                    return (inner, Some(format!("syntax error after '}}' in \"{s}\"")));
                }
                return (inner, None);
            }
        }
    }
    let inner = s[1..].to_string();
    (inner, Some(format!("missing '}}' in \"{s}\"")))
}
