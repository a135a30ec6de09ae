//! Command-line option parsing as glibc's getopt(3) in POSIX mode (an
//! option string starting with `+`): options stop at the first operand or
//! after `--`; `-abc` bundles flags; an option's argument is the rest of the
//! word or the next word. Errors are glibc's texts, printed on stderr by the
//! caller.

/// One result of [`Getopt::next_opt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opt {
    /// A known option and its argument (for options that take one).
    Flag(char, Option<String>),
    /// An unknown option: glibc prints `prog: invalid option -- 'x'`.
    Invalid(char),
    /// A known option without its argument: glibc prints
    /// `prog: option requires an argument -- 'x'`.
    MissingArg(char),
}

/// A getopt(3) scanner over one argument vector (args[0] is the program).
pub struct Getopt<'a> {
    args: &'a [String],
    spec: &'a str,
    /// Index of the next argument to scan (getopt's optind).
    pub optind: usize,
    /// Position inside a bundle of flags (`-abc`).
    pos: usize,
}

impl<'a> Getopt<'a> {
    /// Scan `args` with a getopt option string (without the leading `+`).
    pub fn new(args: &'a [String], spec: &'a str) -> Getopt<'a> {
        Getopt {
            args,
            spec,
            optind: 1,
            pos: 0,
        }
    }

    fn takes_arg(&self, c: char) -> Option<bool> {
        if c == ':' {
            return None;
        }
        let mut it = self.spec.chars().peekable();
        while let Some(s) = it.next() {
            let colon = it.peek() == Some(&':');
            if s == c {
                return Some(colon);
            }
            if colon {
                it.next();
            }
        }
        None
    }

    /// Whether the scanner is between words (not inside a bundle of flags).
    pub fn at_word_start(&self) -> bool {
        self.pos == 0
    }

    /// The position inside the current bundle of flags (0 between words).
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Resume inside a bundle (with [`Getopt::optind`], to continue a scan
    /// over an argument vector that the caller rewrote).
    pub fn set_pos(&mut self, pos: usize) {
        self.pos = pos;
    }

    /// The next option, or `None` at the first operand / after `--`.
    pub fn next_opt(&mut self) -> Option<Opt> {
        if self.pos == 0 {
            let arg = self.args.get(self.optind)?;
            if arg == "--" {
                self.optind += 1;
                return None;
            }
            if !arg.starts_with('-') || arg == "-" {
                return None;
            }
            self.pos = 1;
        }
        let word: Vec<char> = self.args[self.optind].chars().collect();
        let c = word[self.pos];
        self.pos += 1;
        let at_end = self.pos >= word.len();
        match self.takes_arg(c) {
            None => {
                if at_end {
                    self.optind += 1;
                    self.pos = 0;
                }
                Some(Opt::Invalid(c))
            }
            Some(false) => {
                if at_end {
                    self.optind += 1;
                    self.pos = 0;
                }
                Some(Opt::Flag(c, None))
            }
            Some(true) => {
                let start = self.pos;
                self.pos = 0;
                if !at_end {
                    let rest: String = word[start..].iter().collect();
                    self.optind += 1;
                    Some(Opt::Flag(c, Some(rest)))
                } else if self.optind + 1 < self.args.len() {
                    let v = self.args[self.optind + 1].clone();
                    self.optind += 2;
                    Some(Opt::Flag(c, Some(v)))
                } else {
                    self.optind += 1;
                    Some(Opt::MissingArg(c))
                }
            }
        }
    }
}

/// glibc's diagnostic for an option error, without the trailing newline.
pub fn error_text(prog: &str, o: &Opt) -> Option<String> {
    match o {
        Opt::Invalid(c) => Some(format!("{prog}: invalid option -- '{c}'")),
        Opt::MissingArg(c) => Some(format!("{prog}: option requires an argument -- '{c}'")),
        Opt::Flag(..) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(v: &[&str], spec: &str) -> (Vec<Opt>, usize) {
        let args: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        let mut g = Getopt::new(&args, spec);
        let mut out = Vec::new();
        while let Some(o) = g.next_opt() {
            out.push(o);
        }
        (out, g.optind)
    }

    #[test]
    fn bundles_arguments_and_operands() {
        let (o, i) = run(&["p", "-fq", "key", "-ckdir", "map", "-v"], "c:fq:v");
        assert_eq!(
            o,
            vec![
                Opt::Flag('f', None),
                Opt::Flag('q', Some("key".into())),
                Opt::Flag('c', Some("kdir".into())),
            ]
        );
        assert_eq!(i, 4);
        let (o, i) = run(&["p", "-vq-", "--", "-x"], "q:v");
        assert_eq!(
            o,
            vec![Opt::Flag('v', None), Opt::Flag('q', Some("-".into()))]
        );
        assert_eq!(i, 3);
    }

    #[test]
    fn errors() {
        let (o, _) = run(&["p", "-x", "-q"], "q:");
        assert_eq!(o, vec![Opt::Invalid('x'), Opt::MissingArg('q')]);
        assert_eq!(
            error_text("postmap", &o[0]).unwrap(),
            "postmap: invalid option -- 'x'"
        );
    }
}
