//! `regexp:` tables: POSIX regular expressions, as Postfix 3.7's
//! dict_regexp (regexp_table(5)).
//!
//! Matching is the C library's regcomp()/regexec() (see [`crate::sys::regex`]),
//! so patterns mean exactly what they mean to Postfix on the same host.
//!
//! Syntax, one rule per logical line:
//! - `/pattern/flags result` and `/pattern/flags!/pattern2/flags result`
//!   (the second pattern must also match, or with `!` not match); any
//!   non-alphanumeric character can be the delimiter; `\` escapes it.
//! - `!/pattern/ result`: a negative match (no `$number` in the result).
//! - flags `i` (toggle case-insensitive matching, on by default), `x` (toggle
//!   extended syntax, on by default), `m` (toggle REG_NEWLINE).
//! - `if /pattern/` ... `endif`, nested; `if !/pattern/`.
//! - `$1`..`$N`, `${N}`, `$(N)` in the result; `$$` is a `$`.
//!
//! Bad lines are skipped with Postfix's warning texts.

use super::pattern_util::{
    self as pu, Diag, Replacement, is_alnum, is_space, keyword, skip_space, text, trimmed_len,
};
use super::{Dict, DictError, OpenError, OpenMode, Seq, Status, flags};
use crate::sys::regex::{REG_EXTENDED, REG_ICASE, REG_NEWLINE, REG_NOSUB, Regex};
use std::ffi::CString;

const TYPE: &str = "regexp";

/// A pattern as written, before compilation.
struct RawPat {
    regexp: Vec<u8>,
    options: i32,
    matched: bool,
}

/// A compiled pattern and whether the rule wants it to match or not.
struct Pat {
    re: Regex,
    matched: bool,
}

enum Rule {
    Match {
        lineno: usize,
        first: Pat,
        second: Option<Pat>,
        repl: Replacement,
    },
    If {
        lineno: usize,
        pat: Pat,
        /// Index of the matching `endif`, if any.
        endif: Option<usize>,
    },
    Endif,
}

impl pu::BlockRule for Rule {
    fn block(&self) -> pu::Block {
        match self {
            Rule::If { .. } => pu::Block::If,
            Rule::Endif => pu::Block::Endif,
            Rule::Match { .. } => pu::Block::Other,
        }
    }

    fn set_endif(&mut self, at: usize) {
        if let Rule::If { endif, .. } = self {
            *endif = Some(at);
        }
    }
}

/// An open `regexp:` table.
pub struct RegexpDict {
    name: String,
    flags: u32,
    rules: Vec<Rule>,
    diag: Diag,
}

/// Open `regexp:name` (the opener registered for "regexp").
pub fn open(name: &str, mode: OpenMode, dict_flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    Ok(Box::new(RegexpDict::open(
        name,
        mode,
        dict_flags,
        Diag::stderr(),
    )?))
}

impl RegexpDict {
    /// Open with warnings sent to `diag` (stderr, or collected for tests).
    pub fn open(
        name: &str,
        mode: OpenMode,
        dict_flags: u32,
        diag: Diag,
    ) -> Result<RegexpDict, OpenError> {
        let mut diag = diag;
        let src = pu::open_source(TYPE, name, mode, &mut diag)?;
        Self::from_source(name, dict_flags, diag, src)
    }

    /// A table from source text in memory, as if read from a file: `name`
    /// stands for the file name in messages (fuzzing, tests).
    pub fn from_bytes(
        name: &str,
        data: &[u8],
        dict_flags: u32,
        diag: Diag,
    ) -> Result<RegexpDict, OpenError> {
        let mut diag = diag;
        let src = pu::source_from_bytes(data, name, &mut diag);
        Self::from_source(name, dict_flags, diag, src)
    }

    fn from_source(
        name: &str,
        dict_flags: u32,
        diag: Diag,
        src: pu::Source,
    ) -> Result<RegexpDict, OpenError> {
        let mut d = RegexpDict {
            name: name.to_string(),
            flags: dict_flags | flags::PATTERN,
            rules: Vec::new(),
            diag,
        };
        let list = pu::build_rules(&src.lines, |lineno, bytes, nesting| {
            let bytes = &bytes[..trimmed_len(bytes)];
            if bytes.is_empty() {
                return None;
            }
            d.parse_line(lineno, bytes, nesting)
        });
        list.warn_unclosed(&mut d.diag, TYPE, &d.name);
        d.rules = list.rules;
        Ok(d)
    }

    /// Warnings given so far (when opened with [`Diag::collect`]).
    pub fn take_warnings(&mut self) -> Vec<String> {
        self.diag.take()
    }

    fn warn(&mut self, what: String, lineno: usize) {
        pu::warn_line(&mut self.diag, TYPE, &self.name, lineno, &what);
    }

    /// One pattern with its negations and flags, from `line[*p..]`.
    fn get_pat(&mut self, lineno: usize, line: &[u8], p: &mut usize) -> Option<RawPat> {
        let matched = pu::negations(line, p);
        if *p >= line.len() {
            self.warn("no regexp: skipping this rule".into(), lineno);
            return None;
        }
        let delim = line[*p];
        *p += 1;
        let start = *p;
        while *p < line.len() {
            if line[*p] == b'\\' {
                if *p + 1 < line.len() {
                    *p += 1;
                } else {
                    // A trailing backslash ends the pattern (as Postfix).
                    break;
                }
            } else if line[*p] == delim {
                break;
            }
            *p += 1;
        }
        if *p >= line.len() {
            self.warn(
                format!(
                    "no closing regexp delimiter \"{}\": skipping this rule",
                    delim as char
                ),
                lineno,
            );
            return None;
        }
        let regexp = line[start..*p].to_vec();
        *p += 1;
        let mut options = REG_EXTENDED | REG_ICASE;
        while *p < line.len() && !is_space(line[*p]) && line[*p] != b'!' {
            match line[*p] {
                b'i' => options ^= REG_ICASE,
                b'm' => options ^= REG_NEWLINE,
                b'x' => options ^= REG_EXTENDED,
                c => {
                    self.warn(
                        format!(
                            "unknown regexp option \"{}\": skipping this rule",
                            c as char
                        ),
                        lineno,
                    );
                    return None;
                }
            }
            *p += 1;
        }
        Some(RawPat {
            regexp,
            options,
            matched,
        })
    }

    fn compile(&mut self, lineno: usize, pat: &RawPat) -> Option<Regex> {
        match Regex::new(&pat.regexp, pat.options) {
            Ok(re) => Some(re),
            Err(e) => {
                self.warn(e.message, lineno);
                None
            }
        }
    }

    fn parse_line(&mut self, lineno: usize, line: &[u8], nesting: usize) -> Option<Rule> {
        let mut p = 0;
        if !is_alnum(line[0]) {
            // A match rule: one or two patterns, then the result.
            let mut first = self.get_pat(lineno, line, &mut p)?;
            let second = if line.get(p) == Some(&b'!') {
                Some(self.get_pat(lineno, line, &mut p)?)
            } else {
                None
            };
            p = skip_space(line, p);
            if p >= line.len() {
                self.warn("no replacement text: using empty string".into(), lineno);
            }
            let mut result = line[p..].to_vec();
            if self.flags & flags::SRC_RHS_IS_FILE != 0 {
                match pu::file_to_b64(&result) {
                    Ok(b) => result = b,
                    Err(e) => {
                        self.warn(format!("{e}: skipping this rule"), lineno);
                        return None;
                    }
                }
            }
            let name = self.name.clone();
            let Some(repl) =
                pu::prescan(TYPE, &name, lineno, "out-of-range", &result, &mut self.diag)
            else {
                self.warn("bad replacement syntax: skipping this rule".into(), lineno);
                return None;
            };
            if repl.max_sub == 0 {
                first.options |= REG_NOSUB;
            }
            if repl.max_sub > 0 && !first.matched {
                self.warn(
                    "$number found in negative match replacement text: skipping this rule".into(),
                    lineno,
                );
                return None;
            }
            if repl.max_sub > 0 && self.flags & flags::NO_REGSUB != 0 {
                self.warn(
                    "regular expression substitution is not allowed: skipping this rule".into(),
                    lineno,
                );
                return None;
            }
            let first_re = self.compile(lineno, &first)?;
            if repl.max_sub > first_re.nsub() {
                self.warn(
                    format!(
                        "out of range replacement index \"{}\": skipping this rule",
                        repl.max_sub as i32
                    ),
                    lineno,
                );
                return None;
            }
            let second = match second {
                Some(mut s) => {
                    s.options |= REG_NOSUB;
                    let re = self.compile(lineno, &s)?;
                    Some(Pat {
                        re,
                        matched: s.matched,
                    })
                }
                None => None,
            };
            Some(Rule::Match {
                lineno,
                first: Pat {
                    re: first_re,
                    matched: first.matched,
                },
                second,
                repl,
            })
        } else if let Some(n) = keyword(line, "IF") {
            p = skip_space(line, n);
            let pat = self.get_pat(lineno, line, &mut p)?;
            p = skip_space(line, p);
            if p < line.len() {
                self.warn(
                    format!(
                        "ignoring extra text after IF statement: \"{}\"",
                        text(&line[p..])
                    ),
                    lineno,
                );
                self.warn(
                    "do not prepend whitespace to statements between IF and ENDIF".into(),
                    lineno,
                );
            }
            let re = self.compile(lineno, &pat)?;
            Some(Rule::If {
                lineno,
                pat: Pat {
                    re,
                    matched: pat.matched,
                },
                endif: None,
            })
        } else if let Some(n) = keyword(line, "ENDIF") {
            if nesting == 0 {
                self.warn("ignoring ENDIF without matching IF".into(), lineno);
                return None;
            }
            if skip_space(line, n) < line.len() {
                self.warn("ignoring extra text after ENDIF".into(), lineno);
            }
            Some(Rule::Endif)
        } else {
            self.warn("ignoring unrecognized request".into(), lineno);
            None
        }
    }

    /// Does `pat` give the wanted outcome on `key`? Matching errors are
    /// reported and count as "no".
    #[allow(clippy::type_complexity)]
    fn test(
        pat: &Pat,
        key: &CString,
        nmatch: usize,
        name: &str,
        lineno: usize,
        diag: &mut Diag,
    ) -> (bool, Option<Vec<Option<(usize, usize)>>>) {
        match pat.re.exec(key, nmatch) {
            Ok(Some(m)) => (pat.matched, Some(m)),
            Ok(None) => (!pat.matched, None),
            Err(e) => {
                diag.warn(format!("{TYPE} map {name}, line {lineno}: {}", e.message));
                (false, None)
            }
        }
    }
}

impl Dict for RegexpDict {
    fn type_name(&self) -> &str {
        TYPE
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn flags(&self) -> u32 {
        self.flags
    }

    fn set_flags(&mut self, flags: u32) {
        self.flags = flags;
    }

    fn lookup(&mut self, key: &str) -> Result<Option<String>, DictError> {
        if crate::global::msg::verbose() > 0 {
            crate::global::msg::info(&format!("dict_regexp_lookup: {}: {key}", self.name));
        }
        let k = pu::lookup_key(key, self.flags);
        let ck = CString::new(k.clone()).unwrap_or_default();
        let mut i = 0;
        while i < self.rules.len() {
            match &self.rules[i] {
                Rule::Match {
                    lineno,
                    first,
                    second,
                    repl,
                } => {
                    let nmatch = if repl.max_sub > 0 {
                        repl.max_sub + 1
                    } else {
                        0
                    };
                    let (ok, m) =
                        Self::test(first, &ck, nmatch, &self.name, *lineno, &mut self.diag);
                    if !ok {
                        i += 1;
                        continue;
                    }
                    if let Some(s) = second
                        && !Self::test(s, &ck, 0, &self.name, *lineno, &mut self.diag).0
                    {
                        i += 1;
                        continue;
                    }
                    let m = m.unwrap_or_default();
                    let out = pu::expand(repl, &mut |n| {
                        let (so, eo) = (*m.get(n)?)?;
                        (so < eo && eo <= k.len()).then(|| k[so..eo].to_vec())
                    });
                    return Ok(Some(text(&out)));
                }
                Rule::If {
                    lineno, pat, endif, ..
                } => {
                    if Self::test(pat, &ck, 0, &self.name, *lineno, &mut self.diag).0 {
                        i += 1;
                        continue;
                    }
                    match endif {
                        Some(e) => i = e + 1,
                        None => return Ok(None),
                    }
                }
                Rule::Endif => i += 1,
            }
        }
        Ok(None)
    }

    fn update(&mut self, _key: &str, _value: &str) -> Result<Status, DictError> {
        Err(pu::unsupported(TYPE, &self.name, "update"))
    }

    fn delete(&mut self, _key: &str) -> Result<Status, DictError> {
        Err(pu::unsupported(TYPE, &self.name, "delete"))
    }

    fn sequence(&mut self, _how: Seq) -> Result<Option<(String, String)>, DictError> {
        Err(pu::unsupported(TYPE, &self.name, "sequence"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_inline(rules: &str, fl: u32) -> RegexpDict {
        RegexpDict::open(rules, OpenMode::ReadOnly, fl, Diag::collect()).unwrap()
    }

    #[test]
    fn fold_mul_lowercases_the_key_before_matching() {
        let mut d = open_inline("{{/^(Abc)(.*)$/i sub=$1$2}}", 0);
        assert_eq!(d.lookup("ABCdef").unwrap(), None);
        assert_eq!(d.lookup("AbcDEF").unwrap().as_deref(), Some("sub=AbcDEF"));
        let mut d = open_inline("{{/^(abc)(.*)$/i sub=$1$2}}", flags::FOLD_MUL);
        assert_eq!(d.lookup("ABCdef").unwrap().as_deref(), Some("sub=abcdef"));
    }

    #[test]
    fn no_regsub_rejects_substitution() {
        let mut d = open_inline("{{/(a)/ $1}, {/b/ $$plain}}", flags::NO_REGSUB);
        assert_eq!(
            d.take_warnings(),
            [
                "regexp map {{/(a)/ $1}, {/b/ $$plain}}, line 1: regular expression substitution is not allowed: skipping this rule"
            ]
        );
        assert_eq!(d.lookup("a").unwrap(), None);
        assert_eq!(d.lookup("b").unwrap().as_deref(), Some("$plain"));
    }

    #[test]
    fn read_only_and_no_updates() {
        let e = RegexpDict::open("{{/a/ b}}", OpenMode::ReadWrite, 0, Diag::collect())
            .err()
            .unwrap();
        assert_eq!(e.0, "regexp:{{/a/ b}} map requires O_RDONLY access mode");
        let mut d = open_inline("{{/a/ b}}", 0);
        assert_eq!(
            d.sequence(Seq::First).unwrap_err(),
            DictError::Fatal("table regexp:{{/a/ b}}: sequence operation is not supported".into())
        );
        assert!(d.update("a", "b").is_err());
        assert!(d.delete("a").is_err());
        assert_eq!(d.flags() & flags::PATTERN, flags::PATTERN);
    }

    #[test]
    fn if_without_endif_ends_the_table() {
        let mut d = open_inline("{{if /^a/}, {/b/ in}, {/./ any}}", 0);
        assert_eq!(
            d.take_warnings(),
            ["regexp map {{if /^a/}, {/b/ in}, {/./ any}}, line 1: IF has no matching ENDIF"]
        );
        assert_eq!(d.lookup("ab").unwrap().as_deref(), Some("in"));
        assert_eq!(d.lookup("ax").unwrap().as_deref(), Some("any"));
        assert_eq!(d.lookup("x").unwrap(), None);
    }
}
