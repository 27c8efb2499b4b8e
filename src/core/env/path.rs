//! Property paths — `a.b[0]["key with \"quotes\""]` — the one type that parses and prints them, for diagnostics
//! (the evaluator's document paths), `sesame env get/set/rm/open PATH`, and the API's `?property=`.
//!
//! Rule: what [`PropertyPath`]'s `Display` prints, [`PropertyPath::parse`] reads back as the same segments, for
//! every key (empty, `.`, `[`, `]`, `"`, `\`, spaces, unicode, digits only). The syntax is Pulumi's:
//! - a key made of ASCII letters, digits and `_`, not starting with a digit, prints bare (`a.b`); any other key
//!   prints quoted, `["…"]`, with `\` written `\\` and `"` written `\"` (Pulumi leaves `\` alone, which no parser can
//!   invert; here a `\` before any other character still reads as itself, so Pulumi's `["C:\dir"]` parses the same);
//! - an index prints `[n]` (ASCII digits only when parsed);
//! - when parsing, a bare key is anything up to the next `.` or `[` (a `]` in it is refused), and every element after
//!   the first starts with `.` (a bare key) or `[`.
//!
//! Pure: no I/O.

use std::fmt;

/// One step of a property path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Seg {
    /// An object key.
    Key(String),
    /// A list index.
    Index(usize),
}

/// A path from some root (a document, an environment's `values` or `properties`) to one of its nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PropertyPath(pub Vec<Seg>);

/// Why a text is not a property path. Its message always contains "property path".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathError {
    /// The text that was parsed.
    pub path: String,
    /// Byte offset of the problem in it.
    pub at: usize,
    /// What is wrong there.
    pub why: &'static str,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            return write!(f, "invalid property path: {}", self.why);
        }
        write!(
            f,
            "invalid property path {:?}: {} at byte {}",
            self.path, self.why, self.at
        )
    }
}

impl std::error::Error for PathError {}

/// Whether `k` prints bare (`.k`) in a path: ASCII letters, digits and `_`, not starting with a digit.
pub fn is_plain_key(k: &str) -> bool {
    let mut chars = k.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => chars.all(|c| c.is_ascii_alphanumeric() || c == '_'),
        _ => false,
    }
}

impl PropertyPath {
    /// This path with the key `k` appended.
    pub fn key(&self, k: &str) -> PropertyPath {
        let mut v = self.0.clone();
        v.push(Seg::Key(k.to_owned()));
        PropertyPath(v)
    }

    /// This path with the index `i` appended.
    pub fn index(&self, i: usize) -> PropertyPath {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        PropertyPath(v)
    }

    /// The segments.
    pub fn segs(&self) -> &[Seg] {
        &self.0
    }

    /// Parses a non-empty path (see the module doc for the syntax).
    pub fn parse(text: &str) -> Result<PropertyPath, PathError> {
        let bad = |at: usize, why: &'static str| PathError {
            path: text.to_owned(),
            at,
            why,
        };
        let b = text.as_bytes();
        let mut segs = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let bare = match b[i] {
                b'[' => false,
                b'.' if !segs.is_empty() => {
                    i += 1;
                    true
                }
                b'.' => return Err(bad(i, "a path cannot start with '.'")),
                _ if segs.is_empty() => true,
                _ => return Err(bad(i, "expected '.' or '['")),
            };
            if bare {
                // All delimiters are ASCII, so `end` is a character boundary.
                let end = text[i..].find(['.', '[', ']']).map_or(b.len(), |e| i + e);
                if end == i {
                    return Err(bad(i, "empty key (write [\"\"] for an empty key)"));
                }
                if b.get(end) == Some(&b']') {
                    return Err(bad(end, "unexpected ']'"));
                }
                segs.push(Seg::Key(text[i..end].to_owned()));
                i = end;
            } else if b.get(i + 1) == Some(&b'"') {
                let mut key = String::new();
                let mut chars = text[i + 2..].char_indices();
                let close = loop {
                    match chars.next() {
                        None => return Err(bad(i, "unterminated quoted key")),
                        Some((j, '"')) => break i + 2 + j,
                        Some((_, '\\')) => match chars.clone().next() {
                            Some((_, c @ ('"' | '\\'))) => {
                                chars.next();
                                key.push(c);
                            }
                            _ => key.push('\\'),
                        },
                        Some((_, c)) => key.push(c),
                    }
                };
                if b.get(close + 1) != Some(&b']') {
                    return Err(bad(close + 1, "expected ']' after the quoted key"));
                }
                segs.push(Seg::Key(key));
                i = close + 2;
            } else {
                let Some(close) = text[i..].find(']').map(|e| i + e) else {
                    return Err(bad(i, "missing ']'"));
                };
                let digits = &text[i + 1..close];
                if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(bad(i + 1, "a list index must be a number (quote a key: [\"k\"])"));
                }
                let n = digits
                    .parse::<usize>()
                    .map_err(|_| bad(i + 1, "list index too large"))?;
                segs.push(Seg::Index(n));
                i = close + 1;
            }
        }
        if segs.is_empty() {
            return Err(bad(0, "the path is empty"));
        }
        if b.last() == Some(&b'.') {
            return Err(bad(b.len() - 1, "a path cannot end with '.'"));
        }
        Ok(PropertyPath(segs))
    }
}

impl std::str::FromStr for PropertyPath {
    type Err = PathError;

    fn from_str(text: &str) -> Result<PropertyPath, PathError> {
        PropertyPath::parse(text)
    }
}

impl From<Vec<Seg>> for PropertyPath {
    fn from(segs: Vec<Seg>) -> PropertyPath {
        PropertyPath(segs)
    }
}

impl fmt::Display for PropertyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if is_plain_key(k) => {
                    if n > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Seg::Key(k) => {
                    f.write_str("[\"")?;
                    for c in k.chars() {
                        if matches!(c, '"' | '\\') {
                            f.write_str("\\")?;
                        }
                        write!(f, "{c}")?;
                    }
                    f.write_str("\"]")?;
                }
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Seg {
        Seg::Key(k.into())
    }

    #[test]
    fn parses_and_prints_pulumi_paths() {
        let p = PropertyPath::parse(r#"a.b[0]["x.y"].c"#).unwrap();
        assert_eq!(p.0, [key("a"), key("b"), Seg::Index(0), key("x.y"), key("c")]);
        assert_eq!(p.to_string(), r#"a.b[0]["x.y"].c"#);
        assert_eq!(PropertyPath::parse("[1]").unwrap().0, [Seg::Index(1)]);
        assert_eq!(PropertyPath::parse(r#"["x"].y"#).unwrap().0, [key("x"), key("y")]);
        // Pulumi's escape for a quote, and a lone backslash read as itself.
        assert_eq!(PropertyPath::parse(r#"["a\"b"]"#).unwrap().0, [key("a\"b")]);
        assert_eq!(PropertyPath::parse(r#"["C:\dir"]"#).unwrap().0, [key("C:\\dir")]);
        assert_eq!(PropertyPath::parse(r#"["a\\"]"#).unwrap().0, [key("a\\")]);
        // Bare keys are anything up to '.' or '['.
        assert_eq!(PropertyPath::parse("a b.fn::x").unwrap().0, [key("a b"), key("fn::x")]);
        assert_eq!(
            PropertyPath::default().key("0lead").key("_x1").to_string(),
            r#"["0lead"]._x1"#
        );
    }

    #[test]
    fn refuses_what_is_not_a_path() {
        for bad in [
            "",
            ".",
            "a.",
            "a..b",
            ".a",
            "a[",
            "a[x]",
            "a[-1]",
            "a[+1]",
            "a[]",
            r#"a["x""#,
            r#"["x]"#,
            "a]b",
            r#"a["x"]b"#,
            "a[0]b",
            r#"["x"y]"#,
            "a[99999999999999999999999]",
        ] {
            let err = PropertyPath::parse(bad).unwrap_err();
            assert!(err.to_string().contains("property path"), "{bad:?}: {err}");
        }
    }

    /// The keys the three old path types disagreed on: the server's `?property=` parser cut `["a]b"]` at the first
    /// `]` and kept the backslash of `["a\"b"]`; the evaluator printed the key `a\b` as `["a\b"]`, which the CLI
    /// (reading JSON escapes) took for a backspace; the evaluator dropped empty keys from its paths.
    #[test]
    fn the_old_disagreements_are_gone() {
        for (text, k) in [
            (r#"["a]b"]"#, "a]b"),
            (r#"["a\"b"]"#, "a\"b"),
            (r#"["a\\b"]"#, "a\\b"),
            (r#"["a[0]"]"#, "a[0]"),
            (r#"[""]"#, ""),
        ] {
            let p = PropertyPath::parse(text).unwrap();
            assert_eq!(p.0, [key(k)], "{text}");
            assert_eq!(p.to_string(), text);
        }
        // An empty key is printed, not dropped.
        assert_eq!(
            PropertyPath::default().key("a").key("").key("b").to_string(),
            r#"a[""].b"#
        );
    }

    /// Every path built from awkward keys prints to a text that parses back to the same path. A deterministic
    /// generator (a linear congruential sequence) over a character set of the troublemakers.
    #[test]
    fn round_trips_over_awkward_keys() {
        const CHARS: &[char] = &[
            ']', '[', '"', '\\', '.', ' ', 'a', 'Z', '_', '0', '9', 'é', '鍵', '😀', '\n', '\t', ':', '$', '{', '}',
            '-', '\'', '*',
        ];
        let fixed = [
            "", "]", "\"", "\\", ".", "[", "0", "123", " ", "a b", "\\\"", "\"]", "\\]", "ключ", "x\\",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 33) % n) as usize
        };
        let mut checked = 0;
        for round in 0..20_000 {
            let len = 1 + next(6);
            let mut segs = Vec::with_capacity(len);
            for _ in 0..len {
                segs.push(match next(5) {
                    0 => Seg::Index(next(1_000)),
                    1 => key(fixed[next(fixed.len() as u64)]),
                    _ => key(&(0..next(8))
                        .map(|_| CHARS[next(CHARS.len() as u64)])
                        .collect::<String>()),
                });
            }
            if round < fixed.len() {
                segs = vec![key(fixed[round])];
            }
            let path = PropertyPath(segs);
            let text = path.to_string();
            let back = PropertyPath::parse(&text).unwrap_or_else(|e| panic!("{path:?} printed {text:?}: {e}"));
            assert_eq!(back, path, "{text:?}");
            checked += 1;
        }
        assert_eq!(checked, 20_000);
    }
}
