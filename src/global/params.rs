//! The parameter table: every main.cf parameter of Postfix 3.7.11, declared once.
//!
//! The table itself is generated from Postfix facts (see
//! compat/tools/extract-params.py) into `param_table.rs`. A default is the
//! unexpanded expression that `postconf -d` prints. Defaults that depend on the
//! host (`myhostname`, `mydomain`, `mynetworks`) are computed at run time by
//! [`crate::global::hostinfo`].

/// How Postfix stores and prints a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A time value with a unit (`100s`).
    Time,
    /// `yes` / `no`.
    Bool,
    /// A decimal int.
    Int,
    /// A decimal long.
    Long,
    /// A string, `$name`-expanded when used.
    Str,
    /// A string whose default is computed from the host.
    StrFn,
    /// A string that is never `$name`-expanded by the generic code.
    Raw,
    /// An int whose default is an expression.
    Nint,
    /// A boolean whose default is an expression.
    Nbool,
    /// A legacy name, kept for backwards compatibility.
    Legacy,
    /// A value set by the program itself (process_id ...).
    ReadOnly,
}

/// One built-in parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamDef {
    pub name: &'static str,
    pub kind: Kind,
    pub default: &'static str,
}

pub use super::param_table::BUILTIN;

/// A built-in parameter by name.
pub fn builtin(name: &str) -> Option<&'static ParamDef> {
    BUILTIN
        .binary_search_by(|p| p.name.cmp(name))
        .ok()
        .map(|i| &BUILTIN[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_complete() {
        assert!(BUILTIN.windows(2).all(|w| w[0].name < w[1].name));
        let printed = BUILTIN.iter().filter(|p| p.kind != Kind::Legacy).count();
        assert_eq!(printed, 831);
        assert_eq!(builtin("mail_version").unwrap().default, "3.7.11");
        assert_eq!(builtin("forward_path").unwrap().kind, Kind::Raw);
        assert_eq!(builtin("virtual_maps").unwrap().kind, Kind::Legacy);
    }
}
