//! `pcre:` tables: Perl-compatible regular expressions, as Debian's
//! postfix-pcre (Postfix 3.7's dict_pcre built with PCRE2), pcre_table(5).
//!
//! Syntax, one rule per logical line:
//! - `/pattern/flags result`, `!/pattern/flags result`; any
//!   non-alphanumeric delimiter; `\` escapes it.
//! - flags toggle PCRE2 options: `i` CASELESS (on by default), `s` DOTALL
//!   (on by default), `m` MULTILINE, `x` EXTENDED, `A` ANCHORED,
//!   `E` DOLLAR_ENDONLY, `U` UNGREEDY; `X` is obsolete (a warning).
//! - `if /pattern/` ... `endif`, nested.
//! - `$1`, `${1}`, `$(1)` in the result; `$$` is a `$`.
//!
//! Bad lines are skipped with Postfix's warning texts.

use super::pattern_util::{
    self as pu, Diag, Replacement, is_alnum, is_space, keyword, skip_space, text, trimmed_len,
};
use super::{Dict, DictError, OpenError, OpenMode, Seq, Status, flags};
use crate::sys::pcre::{self as pc, Code};

const TYPE: &str = "pcre";

struct RawPat {
    regexp: Vec<u8>,
    options: u32,
    matched: bool,
}

struct Pat {
    code: Code,
    matched: bool,
}

enum Rule {
    Match {
        lineno: usize,
        pat: Pat,
        repl: Replacement,
    },
    If {
        lineno: usize,
        pat: Pat,
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

/// An open `pcre:` table.
pub struct PcreDict {
    name: String,
    flags: u32,
    rules: Vec<Rule>,
    diag: Diag,
}

/// Open `pcre:name` (the opener registered for "pcre").
pub fn open(name: &str, mode: OpenMode, dict_flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    Ok(Box::new(PcreDict::open(
        name,
        mode,
        dict_flags,
        Diag::stderr(),
    )?))
}

impl PcreDict {
    /// Open with warnings sent to `diag` (stderr, or collected for tests).
    pub fn open(
        name: &str,
        mode: OpenMode,
        dict_flags: u32,
        diag: Diag,
    ) -> Result<PcreDict, OpenError> {
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
    ) -> Result<PcreDict, OpenError> {
        let mut diag = diag;
        let src = pu::source_from_bytes(data, name, &mut diag);
        Self::from_source(name, dict_flags, diag, src)
    }

    fn from_source(
        name: &str,
        dict_flags: u32,
        diag: Diag,
        src: pu::Source,
    ) -> Result<PcreDict, OpenError> {
        let mut d = PcreDict {
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
                *p += 1;
                if *p >= line.len() {
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
                    "no closing regexp delimiter \"{}\": ignoring this rule",
                    delim as char
                ),
                lineno,
            );
            return None;
        }
        let regexp = line[start..*p].to_vec();
        *p += 1;
        let mut options = pc::CASELESS | pc::DOTALL;
        while *p < line.len() && !is_space(line[*p]) {
            match line[*p] {
                b'i' => options ^= pc::CASELESS,
                b'm' => options ^= pc::MULTILINE,
                b's' => options ^= pc::DOTALL,
                b'x' => options ^= pc::EXTENDED,
                b'A' => options ^= pc::ANCHORED,
                b'E' => options ^= pc::DOLLAR_ENDONLY,
                b'U' => options ^= pc::UNGREEDY,
                b'X' => self.warn("ignoring obsolete regexp option \"X\"".into(), lineno),
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

    fn compile(&mut self, lineno: usize, pat: &RawPat) -> Option<Code> {
        match Code::new(&pat.regexp, pat.options) {
            Ok(c) => Some(c),
            Err(e) => {
                self.warn(
                    format!(
                        "error in regex at offset {}: {}",
                        e.offset,
                        pc::error_message(e.code)
                    ),
                    lineno,
                );
                None
            }
        }
    }

    fn parse_line(&mut self, lineno: usize, line: &[u8], nesting: usize) -> Option<Rule> {
        let mut p = 0;
        if !is_alnum(line[0]) {
            let pat = self.get_pat(lineno, line, &mut p)?;
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
                pu::prescan(TYPE, &name, lineno, "out of range", &result, &mut self.diag)
            else {
                self.warn("bad replacement syntax: skipping this rule".into(), lineno);
                return None;
            };
            if repl.max_sub > 0 && !pat.matched {
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
            let code = self.compile(lineno, &pat)?;
            if repl.max_sub > code.capture_count() as usize {
                self.warn(
                    format!(
                        "out of range replacement index \"{}\": skipping this rule",
                        repl.max_sub as i32
                    ),
                    lineno,
                );
                return None;
            }
            Some(Rule::Match {
                lineno,
                pat: Pat {
                    code,
                    matched: pat.matched,
                },
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
            let code = self.compile(lineno, &pat)?;
            Some(Rule::If {
                lineno,
                pat: Pat {
                    code,
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

    /// Does `pat` give the wanted outcome on `key`? Matching errors (match
    /// limit and the like) are reported and count as "no".
    fn test(pat: &mut Pat, key: &[u8], name: &str, lineno: usize, diag: &mut Diag) -> bool {
        match pat.code.exec(key) {
            Ok(true) => pat.matched,
            Ok(false) => !pat.matched,
            Err(rc) => {
                diag.warn(format!(
                    "{TYPE} map {name}, line {lineno}: {}",
                    pc::error_message(rc)
                ));
                false
            }
        }
    }
}

impl Dict for PcreDict {
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
            crate::global::msg::info(&format!("dict_pcre_lookup: {}: {key}", self.name));
        }
        let k = pu::lookup_key(key, self.flags);
        let mut i = 0;
        while i < self.rules.len() {
            match &mut self.rules[i] {
                Rule::Match { lineno, pat, repl } => {
                    if !Self::test(pat, &k, &self.name, *lineno, &mut self.diag) {
                        i += 1;
                        continue;
                    }
                    let code = &pat.code;
                    let out = pu::expand(repl, &mut |n| {
                        let (start, end) = code.group(n)?;
                        if start > k.len() {
                            return None;
                        }
                        // Postfix copies end - start bytes (size_t arithmetic)
                        // but never past the end of the key.
                        let len = end.wrapping_sub(start);
                        if len == 0 {
                            return None;
                        }
                        let stop = start.saturating_add(len).min(k.len());
                        Some(k[start..stop].to_vec())
                    });
                    return Ok(Some(text(&out)));
                }
                Rule::If { lineno, pat, endif } => {
                    if Self::test(pat, &k, &self.name, *lineno, &mut self.diag) {
                        i += 1;
                        continue;
                    }
                    match endif {
                        Some(e) => i = *e + 1,
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

    fn open_inline(rules: &str, fl: u32) -> PcreDict {
        PcreDict::open(rules, OpenMode::ReadOnly, fl, Diag::collect()).unwrap()
    }

    #[test]
    fn fold_mul_lowercases_the_key_before_matching() {
        let mut d = open_inline("{{/^(Abc)(.*)$/i sub=$1$2}}", 0);
        assert_eq!(d.lookup("ABCdef").unwrap(), None);
        let mut d = open_inline("{{/^(abc)(.*)$/i sub=$1$2}}", flags::FOLD_MUL);
        assert_eq!(d.lookup("ABCdef").unwrap().as_deref(), Some("sub=abcdef"));
    }

    #[test]
    fn no_regsub_rejects_substitution() {
        let mut d = open_inline("{{/(a)/ $1}}", flags::NO_REGSUB);
        assert_eq!(
            d.take_warnings(),
            [
                "pcre map {{/(a)/ $1}}, line 1: regular expression substitution is not allowed: skipping this rule"
            ]
        );
        assert_eq!(d.lookup("a").unwrap(), None);
    }

    #[test]
    fn read_only_and_no_updates() {
        let e = PcreDict::open("{{/a/ b}}", OpenMode::Create, 0, Diag::collect())
            .err()
            .unwrap();
        assert_eq!(e.0, "pcre:{{/a/ b}} map requires O_RDONLY access mode");
        let mut d = open_inline("{{/a/ b}}", 0);
        assert_eq!(
            d.update("a", "b").unwrap_err(),
            DictError::Fatal("table pcre:{{/a/ b}}: update operation is not supported".into())
        );
    }

    #[test]
    fn unset_groups_expand_to_nothing() {
        let mut d = open_inline("{{/^(x)?(y)(z)?$/ [$1][$2][$3]}}", 0);
        assert_eq!(d.lookup("y").unwrap().as_deref(), Some("[][y][]"));
    }
}
