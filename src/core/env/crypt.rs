//! Rewriting a document's `fn::secret` values between plaintext and ciphertext, keeping the rest of the user's text
//! byte for byte (comments, order, formatting): only the secret's own value is spliced, by byte range.
//!
//! `seal_plaintexts` turns every `fn::secret: <scalar>` — in any scalar style YAML has (plain, single- or
//! double-quoted, literal or folded block with any chomping and indentation indicator, on one line or many), at any
//! place in the document (under `values` or not, in block or flow collections) — into
//! `fn::secret: {ciphertext: …}` (block style when the call was written in block style on one line). The rule it
//! keeps: **no plaintext `fn::secret` survives sealing**. After splicing, the sealed text is parsed again and must be
//! the original tree with exactly each secret replaced by its `{ciphertext: …}`; a text it cannot rewrite that way
//! is refused ([`CryptError::Unsealable`]) and must not be stored. `open_ciphertexts` does the inverse for the
//! secrets under the top-level `values`. A malformed `fn::secret` (not a scalar, not a ciphertext) is left alone:
//! evaluation reports it. The byte-range helpers here (where a scalar's text ends, applying edits) are also those
//! [`super::splice`] uses to write a rotation's new states.

use std::collections::HashMap;

use super::syntax::{self, Node, NodeKind, ScalarBounds, SyntaxError};

/// A splice: replace `start..end` of the source with `text`.
pub(super) struct Edit {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) text: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum CryptError<E> {
    Syntax(SyntaxError),
    /// The encrypter or decrypter failed, at this 1-based line.
    Crypto {
        line: usize,
        error: E,
    },
    /// The secret at this 1-based line is written in a form the sealer cannot rewrite safely: the text is refused
    /// rather than stored with a plaintext in it.
    Unsealable {
        line: usize,
    },
}

/// Seals every plaintext `fn::secret` with `encrypt` (which returns the ciphertext text to store). The text must be
/// one YAML document.
pub fn seal_plaintexts<E>(
    src: &str,
    encrypt: &mut dyn FnMut(&str) -> Result<String, E>,
) -> Result<String, CryptError<E>> {
    seal(src, false, encrypt)
}

/// [`seal_plaintexts`] for a text stored by an earlier version, which may hold more than one YAML document (it
/// seals the secrets of every document, and keeps them).
pub fn seal_stored<E>(src: &str, encrypt: &mut dyn FnMut(&str) -> Result<String, E>) -> Result<String, CryptError<E>> {
    seal(src, true, encrypt)
}

/// Whether `src` (one or more YAML documents) holds a `fn::secret` whose value is still a plaintext scalar. A text
/// YAML cannot read holds nothing that evaluation would treat as a secret, but is reported as unsealed when the
/// bytes `fn::secret` occur in it, so that callers err on the side of sealing or refusing.
pub fn has_plaintext_secret(src: &str) -> bool {
    match syntax::parse_documents(src) {
        Ok((roots, _)) => {
            let mut found = Vec::new();
            roots.iter().for_each(|r| plaintext_secrets(r, &mut found));
            !found.is_empty()
        }
        Err(_) => src.contains("fn::secret"),
    }
}

fn seal<E>(
    src: &str,
    multi: bool,
    encrypt: &mut dyn FnMut(&str) -> Result<String, E>,
) -> Result<String, CryptError<E>> {
    let (roots, bounds) = if multi {
        syntax::parse_documents(src).map_err(CryptError::Syntax)?
    } else {
        let (root, bounds) = syntax::parse_with_bounds(src).map_err(CryptError::Syntax)?;
        (root.into_iter().collect(), bounds)
    };
    let mut found = Vec::new();
    roots.iter().for_each(|r| plaintext_secrets(r, &mut found));
    if found.is_empty() {
        return Ok(src.to_owned());
    }
    // Where each secret's value begins, with its ciphertext; and where to splice it.
    let mut sealed: HashMap<usize, String> = HashMap::new();
    let mut spans = Vec::with_capacity(found.len());
    for (key, value) in &found {
        let NodeKind::Scalar { value: plaintext, .. } = &value.kind else {
            continue;
        };
        let line = value.span.begin.line;
        let unsealable = || CryptError::Unsealable { line };
        let parent_indent = key.span.begin.column.saturating_sub(1);
        let key_end = raw_end(src, key, &bounds, parent_indent).ok_or_else(unsealable)?;
        let colon = src
            .get(key_end..value.span.begin.byte)
            .and_then(|between| between.find(':'))
            .map(|i| key_end + i + 1)
            .ok_or_else(unsealable)?;
        // A block scalar's position is that of its first line of content: its header (`|`, `>-` …) comes before.
        let header = src
            .get(colon..value.span.begin.byte)
            .and_then(|lead| lead.find(['|', '>']));
        let starts = header.map_or(value.span.begin.byte, |i| colon + i);
        let end = match header {
            Some(i) => {
                let bound = (*bounds.get(&value.span.begin.byte).ok_or_else(unsealable)?).min(src.len());
                block_end(src, colon + i, bound, parent_indent).ok_or_else(unsealable)?
            }
            None => raw_end(src, value, &bounds, parent_indent).ok_or_else(unsealable)?,
        };
        let ct = encrypt(plaintext).map_err(|error| CryptError::Crypto { line, error })?;
        spans.push(Splice {
            key: key.span.begin.byte,
            colon,
            end,
            indent: parent_indent,
            block: !in_flow(src, key.span.begin.byte) && !src[colon..starts].contains('\n'),
            ct: ct.clone(),
            line,
        });
        sealed.insert(value.span.begin.byte, ct);
    }
    let nl = if src.contains("\r\n") { "\r\n" } else { "\n" };
    // First the block form where the call was written in block style on one line; if the result does not read back
    // as intended (a flow collection spread over lines, say), the flow form everywhere, which is valid in any
    // context; last, the flow form with a `fn::secret: …` pair that stands alone in a flow sequence wrapped in
    // braces (the parser reads `[k: {…}]` no more).
    for form in [Form::Block, Form::Flow, Form::Wrapped] {
        let edits = spans.iter().map(|s| s.edit(src, form, nl)).collect();
        let out = apply(src, edits);
        if reads_back(&out, multi, &roots, &sealed) {
            return Ok(out);
        }
    }
    Err(CryptError::Unsealable {
        line: spans.first().map_or(1, |s| s.line),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Block,
    Flow,
    Wrapped,
}

/// Where one secret is spliced, and with what.
struct Splice {
    /// Where its key begins.
    key: usize,
    /// Just after the colon that follows the key.
    colon: usize,
    /// Where its value's text ends.
    end: usize,
    /// The 0-based column of the mapping holding it.
    indent: usize,
    /// Whether it was written in block style with the value on the key's line.
    block: bool,
    ct: String,
    line: usize,
}

impl Splice {
    fn edit(&self, src: &str, form: Form, nl: &str) -> Edit {
        let ct = &self.ct;
        let alone_in_flow_seq = src[..self.key].trim_end().ends_with(['[', ',']);
        match form {
            Form::Block if self.block => Edit {
                start: self.colon,
                end: self.end,
                text: format!("{nl}{}ciphertext: {ct}", " ".repeat(self.indent + 2)),
            },
            Form::Wrapped if alone_in_flow_seq && in_flow(src, self.key) => Edit {
                start: self.key,
                end: self.end,
                text: format!("{{fn::secret: {{ciphertext: {ct}}}}}"),
            },
            _ => Edit {
                start: self.colon,
                end: self.end,
                text: format!(" {{ciphertext: {ct}}}"),
            },
        }
    }
}

/// Whether `out` parses to `roots` with each secret value (by where it began) replaced by `{ciphertext: <ct>}`, and
/// no plaintext `fn::secret` left.
fn reads_back(out: &str, multi: bool, roots: &[Node], sealed: &HashMap<usize, String>) -> bool {
    let parsed = if multi {
        syntax::parse_documents(out).map(|(r, _)| r)
    } else {
        syntax::parse(out).map(|r| r.into_iter().collect())
    };
    let Ok(new_roots) = parsed else { return false };
    let mut left = Vec::new();
    new_roots.iter().for_each(|r| plaintext_secrets(r, &mut left));
    left.is_empty()
        && new_roots.len() == roots.len()
        && roots.iter().zip(&new_roots).all(|(a, b)| same_but_sealed(a, b, sealed))
}

fn same_but_sealed(old: &Node, new: &Node, sealed: &HashMap<usize, String>) -> bool {
    match (&old.kind, &new.kind) {
        (NodeKind::Scalar { .. }, NodeKind::Map(pairs)) if sealed.contains_key(&old.span.begin.byte) => {
            let ct = &sealed[&old.span.begin.byte];
            matches!(pairs.as_slice(), [(k, v)]
                if matches!(&k.kind, NodeKind::Scalar { value, .. } if value == "ciphertext")
                && matches!(&v.kind, NodeKind::Scalar { value, plain: true, tag: None } if value == ct))
        }
        (NodeKind::Scalar { .. }, _) if sealed.contains_key(&old.span.begin.byte) => false,
        (NodeKind::Scalar { .. }, NodeKind::Scalar { .. }) => old.kind == new.kind,
        (NodeKind::Seq(a), NodeKind::Seq(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_but_sealed(x, y, sealed))
        }
        (NodeKind::Map(a), NodeKind::Map(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((ak, av), (bk, bv))| same_but_sealed(ak, bk, sealed) && same_but_sealed(av, bv, sealed))
        }
        _ => false,
    }
}

/// Every `(key, value)` of a `fn::secret` key whose value is a scalar (a plaintext), wherever it is: under any key,
/// in any list, beside other keys, even in a mapping key.
fn plaintext_secrets<'n>(node: &'n Node, out: &mut Vec<(&'n Node, &'n Node)>) {
    match &node.kind {
        NodeKind::Map(pairs) => {
            for (k, v) in pairs {
                if matches!(&k.kind, NodeKind::Scalar { value, .. } if value == "fn::secret")
                    && matches!(&v.kind, NodeKind::Scalar { .. })
                {
                    out.push((k, v));
                } else {
                    plaintext_secrets(k, out);
                    plaintext_secrets(v, out);
                }
            }
        }
        NodeKind::Seq(items) => items.iter().for_each(|i| plaintext_secrets(i, out)),
        NodeKind::Scalar { .. } => {}
    }
}

/// Opens every `fn::secret: {ciphertext: …}` under `values` with `decrypt`, writing the plaintext back in place.
pub fn open_ciphertexts<E>(
    src: &str,
    decrypt: &mut dyn FnMut(&str) -> Result<String, E>,
) -> Result<String, CryptError<E>> {
    let (root, bounds) = syntax::parse_with_bounds(src).map_err(CryptError::Syntax)?;
    let Some(root) = root else {
        return Ok(src.to_owned());
    };
    let NodeKind::Map(top) = &root.kind else {
        return Ok(src.to_owned());
    };
    let mut found = Vec::new();
    for (k, v) in top {
        if matches!(&k.kind, NodeKind::Scalar { value, .. } if value == "values") {
            secrets(v, &mut found, false);
        }
    }
    let mut edits = Vec::new();
    for (key, value) in found {
        let NodeKind::Map(fields) = &value.kind else { continue };
        let [(ck, cv)] = fields.as_slice() else { continue };
        if !matches!(&ck.kind, NodeKind::Scalar { value, .. } if value == "ciphertext") {
            continue;
        }
        let NodeKind::Scalar { value: ct, .. } = &cv.kind else {
            continue;
        };
        let Some(mut end) = raw_end(src, cv, &bounds, 0) else {
            continue;
        };
        let plaintext = decrypt(ct).map_err(|error| CryptError::Crypto {
            line: cv.span.begin.line,
            error,
        })?;
        let Some(colon) = src
            .get(key.span.end.byte..)
            .and_then(|rest| rest.find(':'))
            .map(|i| key.span.end.byte + i + 1)
        else {
            continue;
        };
        // A flow mapping `{ciphertext: …}` also loses its closing brace.
        let Some(rest) = src.get(end..) else { continue };
        let trimmed = rest.trim_start_matches([' ', '\t']);
        if src.get(colon..ck.span.begin.byte).is_some_and(|b| b.contains('{')) && trimmed.starts_with('}') {
            end += rest.len() - trimmed.len() + 1;
        }
        edits.push(Edit {
            start: colon,
            end,
            text: format!(" {}", yaml_string(&plaintext)),
        });
    }
    Ok(apply(src, edits))
}

/// Collects `(key, value)` of every `fn::secret` call: plaintext ones when `plaintext`, else ciphertext ones.
fn secrets<'n>(node: &'n Node, out: &mut Vec<(&'n Node, &'n Node)>, plaintext: bool) {
    match &node.kind {
        NodeKind::Map(pairs) => {
            if let [(k, v)] = pairs.as_slice()
                && matches!(&k.kind, NodeKind::Scalar { value, .. } if value == "fn::secret")
            {
                let is_plain = matches!(&v.kind, NodeKind::Scalar { .. });
                if is_plain == plaintext {
                    out.push((k, v));
                    return;
                }
            }
            for (_, v) in pairs {
                secrets(v, out, plaintext);
            }
        }
        NodeKind::Seq(items) => items.iter().for_each(|i| secrets(i, out, plaintext)),
        NodeKind::Scalar { .. } => {}
    }
}

/// Where a scalar's source text ends (the positions the parser gives end at the decoded length, which is wrong for
/// quoted, multi-line and block text), found between where it begins and where the next parser event begins.
/// `parent_indent` is the 0-based column of the mapping holding it (a block scalar's indentation is relative to it).
/// `None` when the text does not look like a scalar of its style.
pub(super) fn raw_end(src: &str, node: &Node, bounds: &ScalarBounds, parent_indent: usize) -> Option<usize> {
    let start = node.span.begin.byte;
    let bound = (*bounds.get(&start)?).min(src.len());
    let bytes = src.as_bytes();
    let end = match bytes.get(start) {
        Some(&q @ (b'"' | b'\'')) => {
            let mut i = start + 1;
            loop {
                match *bytes.get(i)? {
                    b'\\' if q == b'"' => i += 2,
                    b'\'' if q == b'\'' && bytes.get(i + 1) == Some(&b'\'') => i += 2,
                    c if c == q => break i + 1,
                    _ => i += 1,
                }
            }
        }
        Some(b'|' | b'>') => block_end(src, start, bound, parent_indent)?,
        _ => {
            let NodeKind::Scalar { value, .. } = &node.kind else {
                return None;
            };
            // On one line a plain scalar's text is its value (a key is followed by its `:` before the bound).
            if src[start..bound].starts_with(value.as_str()) {
                start + value.len()
            } else {
                plain_end(src, start, bound, value)
            }
        }
    };
    (end <= bound).then_some(end)
}

/// The end of a plain scalar starting at `start`: before any comment, trailing blanks and a flow separator.
fn plain_end(src: &str, start: usize, bound: usize, value: &str) -> usize {
    let region = &src.as_bytes()[start..bound];
    let cut = (1..region.len())
        .find(|&i| region[i] == b'#' && matches!(region[i - 1], b' ' | b'\t' | b'\n' | b'\r'))
        .unwrap_or(region.len());
    let is_blank = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let mut text = &region[..cut];
    while text.last().is_some_and(is_blank) {
        text = &text[..text.len() - 1];
    }
    if text.last() == Some(&b',') && !value.ends_with(',') {
        text = &text[..text.len() - 1];
        while text.last().is_some_and(is_blank) {
            text = &text[..text.len() - 1];
        }
    }
    start + text.len()
}

/// The end of a literal or folded block scalar whose header (`|`, `>-`, `|2+` …) is at `start`: the end of its last
/// line indented deeper than the mapping holding it (at least its indentation indicator deep, when it has one).
/// Trailing blank lines and less indented comment lines stay outside.
pub(super) fn block_end(src: &str, start: usize, bound: usize, parent_indent: usize) -> Option<usize> {
    let header_end = src[start..bound].find('\n').map_or(bound, |i| start + i);
    let indicators = src[start + 1..header_end]
        .bytes()
        .take_while(|b| matches!(b, b'+' | b'-' | b'1'..=b'9'))
        .count();
    let explicit = src[start + 1..start + 1 + indicators]
        .bytes()
        .find(u8::is_ascii_digit)
        .map(|d| parent_indent + usize::from(d - b'0'));
    let mut end = start + 1 + indicators;
    let mut content_indent = explicit;
    let mut pos = header_end + 1;
    while pos < bound {
        let line_end = src[pos..bound].find('\n').map_or(bound, |i| pos + i);
        let line = src[pos..line_end].trim_end_matches('\r');
        let indent = line.bytes().take_while(|&b| b == b' ').count();
        if indent < line.len() {
            let n = *content_indent.get_or_insert(indent);
            if indent < n || indent <= parent_indent {
                break;
            }
            end = pos + line.len();
        }
        pos = line_end + 1;
    }
    Some(end)
}

/// Whether byte `at` sits inside a flow collection on its line.
pub(super) fn in_flow(src: &str, at: usize) -> bool {
    let line_start = src[..at].rfind('\n').map_or(0, |i| i + 1);
    let before = &src[line_start..at];
    let opens = before.matches(['{', '[']).count();
    let closes = before.matches(['}', ']']).count();
    opens > closes
}

/// A YAML scalar that reads back as exactly `s`, as a string: plain when that is unambiguous, else double-quoted
/// with every control character escaped (so that the text stays a valid definition).
pub(super) fn yaml_string(s: &str) -> String {
    let plain_ok = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || " _-./+=@".contains(c))
        && !s.starts_with([' ', '-', '.', '+', '@'])
        && !s.ends_with(' ')
        && super::ast::load("", &format!("values: {{x: {s}}}"))
            .decl
            .and_then(|d| d.values)
            .is_some_and(|v| match v.kind {
                super::ast::ExprKind::Object(f) => matches!(&f[0].2.kind, super::ast::ExprKind::String(t) if t == s),
                _ => false,
            });
    if plain_ok {
        return s.to_owned();
    }
    super::value::double_quoted(s, |c| {
        (c.is_control() || matches!(c, '\u{FEFF}' | '\u{2028}' | '\u{2029}' | '\u{FFFE}' | '\u{FFFF}'))
            .then(|| format!("\\u{:04X}", c as u32))
    })
}

pub(super) fn apply(src: &str, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|e| e.start);
    let mut out = String::with_capacity(src.len());
    let mut at = 0;
    for e in edits {
        if e.start < at {
            continue;
        }
        out.push_str(&src[at..e.start]);
        out.push_str(&e.text);
        at = e.end;
    }
    out.push_str(&src[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_keep_the_rest_of_the_text() {
        let src = "# top\nvalues:\n  a:\n    fn::secret: \"hunter2\" # keep me\n  b: { fn::secret: x }\n  c: 1\n";
        let sealed = seal_plaintexts(src, &mut |p| Ok::<_, ()>(format!("CT{}", p.len()))).unwrap();
        assert_eq!(
            sealed,
            "# top\nvalues:\n  a:\n    fn::secret:\n      ciphertext: CT7 # keep me\n  b: { fn::secret: {ciphertext: CT1} }\n  c: 1\n"
        );
        let opened = open_ciphertexts(&sealed, &mut |c| {
            Ok::<_, ()>(if c == "CT7" { "hunter2" } else { "x" }.into())
        })
        .unwrap();
        assert_eq!(
            opened,
            "# top\nvalues:\n  a:\n    fn::secret: hunter2 # keep me\n  b: { fn::secret: x }\n  c: 1\n"
        );
    }

    #[test]
    fn strings_that_would_change_type_are_quoted() {
        assert_eq!(yaml_string("true"), "\"true\"");
        assert_eq!(yaml_string("42"), "\"42\"");
        assert_eq!(yaml_string("a: b"), "\"a: b\"");
        assert_eq!(yaml_string("hunter2"), "hunter2");
    }

    /// A scalar style: how to write a secret whose key sits at column `c` (0-based), and whether it is a block
    /// scalar (not allowed in flow collections). Every value holds the marker `zqx`, which nothing else contains.
    type Style = fn(usize) -> String;

    fn styles() -> Vec<(&'static str, Style, bool)> {
        fn ind(c: usize, extra: usize) -> String {
            " ".repeat(c + extra)
        }
        vec![
            ("plain", |_| "zqx-plain".into(), false),
            ("plain-unicode-tab", |_| "zqx\tünï ☃".into(), false),
            (
                "plain-multiline",
                |c| format!("zqx first\n{}second line\n\n{}third", ind(c, 2), ind(c, 2)),
                false,
            ),
            ("single", |_| "'zqx it''s # not a comment'".into(), false),
            (
                "single-multiline",
                |c| format!("'zqx one\n{}two\n\n{}three'", ind(c, 2), ind(c, 1)),
                false,
            ),
            ("double", |_| r#""zqx \"q\" \\ \t\u00e9 \x41""#.into(), false),
            (
                "double-multiline",
                |c| format!("\"zqx one\n{}two\\\n{}three\\n\"", ind(c, 2), ind(c, 2)),
                false,
            ),
            ("literal", |c| format!("|\n{0}zqx line1\n{0}  line2\n", ind(c, 2)), true),
            (
                "literal-strip",
                |c| format!("|-\n{0}zqx line1\n\n{0}line2\n\n", ind(c, 2)),
                true,
            ),
            (
                "literal-keep",
                |c| format!("|+\n{0}zqx line1\n{0}line2\n\n", ind(c, 2)),
                true,
            ),
            (
                "literal-indicator",
                |c| format!("|2\n{0}  zqx indented\n{0}x\n", ind(c, 2)),
                true,
            ),
            (
                "literal-indicator-strip",
                |c| format!("|1-\n{0} zqx a\n{0}b\n", ind(c, 1)),
                true,
            ),
            (
                "literal-keep-indicator",
                |c| format!("|+2 # header comment\n{0}zqx a\n\n", ind(c, 2)),
                true,
            ),
            (
                "literal-comment-lines",
                |c| format!("| # c\n{0}zqx # not a comment\n{0}#nor this\n", ind(c, 2)),
                true,
            ),
            (
                "folded",
                |c| format!(">\n{0}zqx folded\n{0}text\n\n{0}para\n", ind(c, 2)),
                true,
            ),
            (
                "folded-strip",
                |c| format!(">-\n{0}zqx folded\n{0}  more\n", ind(c, 2)),
                true,
            ),
            ("folded-keep", |c| format!(">+\n{0}zqx folded\n\n", ind(c, 2)), true),
            (
                "folded-indicator",
                |c| format!(">1+\n{0} zqx one\n{0}two\n", ind(c, 1)),
                true,
            ),
            ("tagged", |_| "!!str zqx-tagged".into(), false),
            ("anchored", |_| "&a zqx-anchored".into(), false),
            ("empty-quoted", |_| "\"\"".into(), false),
        ]
    }

    /// Positions for a secret: a template where `{S}` is the value and `{C}` marks nothing (the key's column is
    /// given), and whether it is a flow context.
    fn positions() -> Vec<(&'static str, &'static str, usize, bool)> {
        vec![
            (
                "values",
                "values:\n  k:\n    fn::secret: {S}\n  next: 1 # after\n",
                4,
                false,
            ),
            (
                "nested",
                "values:\n  a:\n    b:\n      c:\n        fn::secret: {S}\n",
                8,
                false,
            ),
            (
                "list",
                "values:\n  l:\n    - fn::secret: {S}\n    - plain item\n",
                6,
                false,
            ),
            (
                "list-of-maps",
                "values:\n  l:\n    -   fn::secret: {S}\n        # comment\n    - 2\n",
                8,
                false,
            ),
            (
                "comment-after",
                "# head\nvalues:\n  k:\n    fn::secret: {S}\n    # trailing comment\n\n  z: 2\n",
                4,
                false,
            ),
            ("top-level", "fn::secret: {S}\n", 0, false),
            (
                "unknown-field",
                "other:\n  deep:\n    fn::secret: {S}\nvalues: {}\n",
                4,
                false,
            ),
            ("beside-keys", "other:\n  x: 1\n  fn::secret: {S}\n  y: 2\n", 2, false),
            (
                "key-on-own-line",
                "values:\n  k:\n    fn::secret:\n      {S}\n  j: 1\n",
                6,
                false,
            ),
            ("flow-map", "values:\n  k: {fn::secret: {S}}\n  j: 1\n", 4, true),
            ("flow-list", "values:\n  l: [ {fn::secret: {S}}, 1 ]\n", 4, true),
            ("flow-implicit", "values:\n  l: [fn::secret: {S}, 1]\n", 4, true),
            (
                "flow-multiline",
                "values:\n  m: {\n    a: {\n      fn::secret: {S}\n    },\n    b: 2\n  }\n",
                6,
                true,
            ),
            ("flow-trailing-comma", "values:\n  m: {fn::secret: {S}, }\n", 4, true),
        ]
    }

    fn secrets_of(src: &str) -> Vec<(String, bool)> {
        let (roots, _) = syntax::parse_documents(src).unwrap();
        fn walk(n: &Node, out: &mut Vec<(String, bool)>) {
            match &n.kind {
                NodeKind::Map(pairs) => {
                    for (k, v) in pairs {
                        if matches!(&k.kind, NodeKind::Scalar { value, .. } if value == "fn::secret") {
                            match &v.kind {
                                NodeKind::Scalar { value, .. } => out.push((value.clone(), false)),
                                NodeKind::Map(f) => match f.as_slice() {
                                    [(ck, cv)] if matches!(&ck.kind, NodeKind::Scalar { value, .. } if value == "ciphertext") =>
                                    {
                                        let NodeKind::Scalar { value, .. } = &cv.kind else {
                                            panic!("ciphertext")
                                        };
                                        out.push((value.clone(), true))
                                    }
                                    _ => panic!("a fn::secret that is neither plaintext nor ciphertext"),
                                },
                                _ => panic!("a fn::secret that is neither plaintext nor ciphertext"),
                            }
                        } else {
                            walk(k, out);
                            walk(v, out);
                        }
                    }
                }
                NodeKind::Seq(items) => items.iter().for_each(|i| walk(i, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        roots.iter().for_each(|r| walk(r, &mut out));
        out
    }

    /// The property: for every scalar style at every position, with LF and CRLF line ends, sealing leaves no
    /// plaintext `fn::secret` (every one reads back as `{ciphertext: …}`), none of the plaintext's text remains, the
    /// encrypter saw exactly the decoded value, the rest of the document is unchanged, and opening gives back the
    /// exact value.
    #[test]
    fn every_scalar_style_at_every_position_is_sealed_and_opens_to_the_same_value() {
        let mut cases = 0;
        for (sname, style, block) in styles() {
            for (pname, template, c, flow) in positions() {
                if block && flow {
                    continue;
                }
                for crlf in [false, true] {
                    let mut src = template.replace("{S}", &style(c));
                    if crlf {
                        src = src.replace('\n', "\r\n");
                    }
                    let what = format!("{sname} at {pname}{}", if crlf { " (CRLF)" } else { "" });
                    let before = secrets_of(&src);
                    assert_eq!(before.len(), 1, "{what}: {src:?}");
                    assert!(!before[0].1, "{what}");
                    let plaintext = before[0].0.clone();
                    let mut seen = Vec::new();
                    let sealed = seal_plaintexts(&src, &mut |p| {
                        seen.push(p.to_owned());
                        Ok::<_, ()>(format!("Q1RfMQ{}", seen.len()))
                    })
                    .unwrap_or_else(|e| panic!("{what}: {e:?}\n{src}"));
                    assert_eq!(seen, vec![plaintext.clone()], "{what}");
                    assert_eq!(
                        secrets_of(&sealed),
                        vec![("Q1RfMQ1".to_owned(), true)],
                        "{what}:\n{sealed}"
                    );
                    assert!(!sealed.contains("zqx"), "{what}: plaintext left in\n{sealed}");
                    assert!(!has_plaintext_secret(&sealed), "{what}");
                    assert!(has_plaintext_secret(&src), "{what}");
                    // Sealing again finds nothing to do.
                    assert_eq!(seal_plaintexts(&sealed, &mut |_| Err(())).unwrap(), sealed, "{what}");
                    if template.starts_with("values") {
                        let opened = open_ciphertexts(&sealed, &mut |ct| {
                            assert_eq!(ct, "Q1RfMQ1");
                            Ok::<_, ()>(plaintext.clone())
                        })
                        .unwrap_or_else(|e| panic!("{what}: {e:?}"));
                        assert_eq!(
                            secrets_of(&opened),
                            vec![(plaintext.clone(), false)],
                            "{what}:\n{opened}"
                        );
                        // And the opened text seals again (what a clone does).
                        let resealed = seal_plaintexts(&opened, &mut |_| Ok::<_, ()>("Q1RfMg".into())).unwrap();
                        assert_eq!(secrets_of(&resealed), vec![("Q1RfMg".to_owned(), true)], "{what}");
                    }
                    cases += 1;
                }
            }
        }
        assert!(cases > 400, "{cases}");
    }

    #[test]
    fn block_scalars_keep_their_exact_value() {
        let value = |src: &str| secrets_of(src).remove(0).0;
        assert_eq!(value("a:\n  fn::secret: |\n    x\n    y\n\n\nb: 1\n"), "x\ny\n");
        assert_eq!(value("a:\n  fn::secret: |+\n    x\n\n\nb: 1\n"), "x\n\n\n");
        assert_eq!(value("a:\n  fn::secret: |-\n    x\n"), "x");
        assert_eq!(value("a:\n  fn::secret: >\n    x\n    y\n\n    z\n"), "x y\nz\n");
        // The indentation indicator counts from the mapping's own indentation (2 here).
        assert_eq!(value("a:\n  fn::secret: |4\n        x\n"), "  x\n");
        for (src, want) in [
            ("a:\n  fn::secret: |+\n    zqx\n\n\nb: 1\n", "zqx\n\n\n"),
            ("a:\n  fn::secret: >-\n    zqx\n    y\n", "zqx y"),
            ("a:\r\n  fn::secret: |\r\n    zqx\r\n    é\r\n", "zqx\né\n"),
        ] {
            let mut got = String::new();
            let sealed = seal_plaintexts(src, &mut |p| {
                got = p.to_owned();
                Ok::<_, ()>("CT".into())
            })
            .unwrap();
            assert_eq!(got, want);
            assert!(!sealed.contains("zqx"), "{sealed}");
        }
    }

    #[test]
    fn several_secrets_and_documents() {
        let src =
            "values:\n  a: {fn::secret: zqx1}\n  b:\n    fn::secret: |\n      zqx2\n  c: [ {fn::secret: 'zqx3'} ]\n";
        let mut n = 0;
        let sealed = seal_plaintexts(src, &mut |_| {
            n += 1;
            Ok::<_, ()>(format!("C{n}"))
        })
        .unwrap();
        assert_eq!(secrets_of(&sealed).len(), 3);
        assert!(secrets_of(&sealed).iter().all(|(_, sealed)| *sealed));
        assert!(!sealed.contains("zqx"), "{sealed}");
        // A second document is refused, not stored with its secrets in the clear.
        let two = "values:\n  a: 1\n---\nvalues:\n  b:\n    fn::secret: zqx\n";
        assert!(matches!(
            seal_plaintexts(two, &mut |_| Ok::<_, ()>("C".into())),
            Err(CryptError::Syntax(_))
        ));
        // A text an earlier version stored with two documents is sealed in both.
        assert!(has_plaintext_secret(two));
        let repaired = seal_stored(two, &mut |_| Ok::<_, ()>("C".into())).unwrap();
        assert!(
            !repaired.contains("zqx") && !has_plaintext_secret(&repaired),
            "{repaired}"
        );
        assert!(repaired.contains("---"));
    }

    #[test]
    fn opened_values_are_valid_yaml_whatever_they_hold() {
        for p in ["a\u{7f}b", "c1\u{85}\u{9f}", "x\u{2028}y", "tab\tq\"\\", "line\n", ""] {
            let opened = open_ciphertexts("values:\n  a:\n    fn::secret: {ciphertext: C}\n", &mut |_| {
                Ok::<_, ()>(p.to_owned())
            })
            .unwrap();
            assert_eq!(secrets_of(&opened), vec![(p.to_owned(), false)], "{opened:?}");
        }
    }

    #[test]
    fn keys_spelt_otherwise_are_secrets_too() {
        for src in [
            "values:\n  a:\n    \"fn::secr\\x65t\": |\n      zqx\n",
            "values:\n  a:\n    'fn::secret': >-\n      zqx\n",
            "values:\n  a:\n    !!str fn::secret: \"zqx\n      two\"\n",
            "values:\n  a:\n    ? fn::secret\n    : zqx\n",
        ] {
            assert!(has_plaintext_secret(src), "{src}");
            let sealed = seal_plaintexts(src, &mut |_| Ok::<_, ()>("CT".into())).unwrap();
            assert!(
                !sealed.contains("zqx") && !has_plaintext_secret(&sealed),
                "{src:?} -> {sealed}"
            );
        }
    }

    #[test]
    fn a_form_that_cannot_be_rewritten_safely_is_refused() {
        // A colon in a comment between an explicit key and its value: the splice would start in the wrong place,
        // the result does not read back as intended, and the text is refused rather than stored as it is.
        let src = "values:\n  a:\n    ? fn::secret # note: here\n    : |\n      zqx\n";
        assert!(has_plaintext_secret(src));
        let got = seal_plaintexts(src, &mut |_| Ok::<_, ()>("CT".into()));
        assert!(matches!(got, Err(CryptError::Unsealable { line: 4 | 5 })), "{got:?}");
    }
}
