//! Rewriting a document's `fn::secret` values between plaintext and ciphertext, keeping the rest of the user's text
//! byte for byte (comments, order, formatting): only the secret's own value is spliced, by byte range.
//!
//! `seal_plaintexts` turns every `fn::secret: <string>` into `fn::secret: {ciphertext: …}` (block style when the
//! call was written in block style); `open_ciphertexts` does the inverse for the secrets under the top-level
//! `values`. A malformed `fn::secret` is left alone: evaluation reports it.

use super::syntax::{self, Node, NodeKind, SyntaxError};

/// A splice: replace `start..end` of the source with `text`.
struct Edit {
    start: usize,
    end: usize,
    text: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum CryptError<E> {
    Syntax(SyntaxError),
    /// The encrypter or decrypter failed, at this 1-based line.
    Crypto {
        line: usize,
        error: E,
    },
}

/// Seals every plaintext `fn::secret` with `encrypt` (which returns the ciphertext text to store).
pub fn seal_plaintexts<E>(
    src: &str,
    encrypt: &mut dyn FnMut(&str) -> Result<String, E>,
) -> Result<String, CryptError<E>> {
    let Some(root) = syntax::parse(src).map_err(CryptError::Syntax)? else {
        return Ok(src.to_owned());
    };
    let mut edits = Vec::new();
    let mut found = Vec::new();
    secrets(&root, &mut found, true);
    for (key, value) in found {
        let NodeKind::Scalar { value: plaintext, .. } = &value.kind else {
            continue;
        };
        let Some(end) = scalar_end(src, value) else { continue };
        let ct = encrypt(plaintext).map_err(|error| CryptError::Crypto {
            line: value.span.begin.line,
            error,
        })?;
        let text = if in_flow(src, key.span.begin.byte) || value.span.begin.line != key.span.begin.line {
            format!("{{ciphertext: {ct}}}")
        } else {
            let indent = " ".repeat(key.span.begin.column - 1 + 2);
            // Replace from just after the colon so that the ciphertext starts on its own line.
            let colon = src
                .get(key.span.end.byte..value.span.begin.byte)
                .and_then(|between| between.find(':'))
                .map(|i| key.span.end.byte + i + 1);
            if let Some(colon) = colon {
                edits.push(Edit {
                    start: colon,
                    end,
                    text: format!("\n{indent}ciphertext: {ct}"),
                });
                continue;
            }
            format!("{{ciphertext: {ct}}}")
        };
        edits.push(Edit {
            start: value.span.begin.byte,
            end,
            text,
        });
    }
    Ok(apply(src, edits))
}

/// Opens every `fn::secret: {ciphertext: …}` under `values` with `decrypt`, writing the plaintext back in place.
pub fn open_ciphertexts<E>(
    src: &str,
    decrypt: &mut dyn FnMut(&str) -> Result<String, E>,
) -> Result<String, CryptError<E>> {
    let Some(root) = syntax::parse(src).map_err(CryptError::Syntax)? else {
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
        let Some(mut end) = scalar_end(src, cv) else { continue };
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

/// Where a single-line scalar ends in the source (the positions the parser gives end at the decoded length, which
/// is wrong for quoted text). `None` for scalars this rewrite does not touch (block scalars, multi-line text).
fn scalar_end(src: &str, node: &Node) -> Option<usize> {
    let start = node.span.begin.byte;
    let bytes = src.as_bytes();
    match bytes.get(start)? {
        q @ (b'"' | b'\'') => {
            let mut i = start + 1;
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' if *q == b'"' => i += 2,
                    b'\'' if *q == b'\'' && bytes.get(i + 1) == Some(&b'\'') => i += 2,
                    c if c == *q => return Some(i + 1),
                    b'\n' => return None,
                    _ => i += 1,
                }
            }
            None
        }
        b'|' | b'>' => None,
        _ => {
            let NodeKind::Scalar { value, .. } = &node.kind else {
                return None;
            };
            src[start..].starts_with(value.as_str()).then_some(start + value.len())
        }
    }
}

/// Whether byte `at` sits inside a flow collection on its line.
fn in_flow(src: &str, at: usize) -> bool {
    let line_start = src[..at].rfind('\n').map_or(0, |i| i + 1);
    let before = &src[line_start..at];
    let opens = before.matches(['{', '[']).count();
    let closes = before.matches(['}', ']']).count();
    opens > closes
}

/// A YAML scalar that reads back as exactly `s`, as a string.
fn yaml_string(s: &str) -> String {
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
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

fn apply(src: &str, mut edits: Vec<Edit>) -> String {
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
}
