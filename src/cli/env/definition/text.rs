//! The layout of a definition's text, for [`super`]'s splices: where an entry (`key:` or `- `) begins, how far its
//! value reaches (read from indentation, as YAML's block style defines it), and how a new value is written as
//! block-style YAML after a key or a dash. Layouts it does not understand are refused with a hint to use `sesame env
//! edit`, never guessed at. Pure: no I/O.

use serde_json::Value as Json;

use super::{is_empty_value, is_scalar, key_text, splice};
use crate::core::env::syntax::{Node, NodeKind};

/// Where a value hangs: after the `:` of a key, or the `-` of a list item.
#[derive(Debug)]
pub(super) struct Owner {
    /// The byte of the `:` or `-`.
    pub(super) anchor: usize,
    /// Where the key (or `-`) begins; its line is the owner's line.
    pub(super) anchor_line_begin: usize,
    /// The column (from 0) of the key or `-`: nested block content is indented further.
    pub(super) indent: usize,
    /// The end of the last line of the entry (before its line break).
    pub(super) end: usize,
    /// For a single-line scalar on the owner's line: where its text ends (a trailing comment stays).
    pub(super) inline_end: Option<usize>,
    /// The value is empty (`key:` with nothing after it).
    pub(super) empty: bool,
}

pub(super) struct Text<'s> {
    pub(super) src: &'s str,
}

impl Text<'_> {
    pub(super) fn line_start(&self, at: usize) -> usize {
        self.src[..at].rfind('\n').map_or(0, |i| i + 1)
    }

    fn line_end(&self, at: usize) -> usize {
        self.src[at..].find('\n').map_or(self.src.len(), |i| at + i)
    }

    pub(super) fn column(&self, at: usize) -> usize {
        at - self.line_start(at)
    }

    fn byte(&self, at: usize) -> Option<u8> {
        self.src.as_bytes().get(at).copied()
    }

    pub(super) fn is_flow(&self, node: &Node) -> bool {
        !is_scalar(node) && matches!(self.byte(node.span.begin.byte), Some(b'{' | b'['))
    }

    /// For `{}` or `[]` (spaces allowed inside): the byte after the closing bracket.
    pub(super) fn empty_flow(&self, node: &Node) -> Option<usize> {
        let empty = match &node.kind {
            NodeKind::Map(p) => p.is_empty(),
            NodeKind::Seq(i) => i.is_empty(),
            NodeKind::Scalar { .. } => false,
        };
        if !empty || !self.is_flow(node) {
            return None;
        }
        let begin = node.span.begin.byte;
        let close = if self.byte(begin) == Some(b'{') { '}' } else { ']' };
        let inner = self.src[begin + 1..].find(|c: char| !c.is_whitespace())?;
        (self.src[begin + 1 + inner..].starts_with(close)).then_some(begin + 1 + inner + 1)
    }

    /// Where a quoted or plain single-line scalar written at `begin` ends.
    fn scalar_end(&self, begin: usize, value: &str) -> Option<usize> {
        let b = self.src.as_bytes();
        match b.get(begin)? {
            b'"' => {
                let mut i = begin + 1;
                while i < b.len() {
                    match b[i] {
                        b'\\' => i += 2,
                        b'"' => return Some(i + 1),
                        b'\n' => return None,
                        _ => i += 1,
                    }
                }
                None
            }
            b'\'' => {
                let mut i = begin + 1;
                while i < b.len() {
                    match (b[i], b.get(i + 1)) {
                        (b'\'', Some(b'\'')) => i += 2,
                        (b'\'', _) => return Some(i + 1),
                        (b'\n', _) => return None,
                        _ => i += 1,
                    }
                }
                None
            }
            b'!' | b'&' | b'*' | b'|' | b'>' => None,
            _ => {
                let end = begin + value.len();
                (self.src.get(begin..end) == Some(value)).then_some(end)
            }
        }
    }

    /// The end of the last line that belongs to an entry whose key or `-` is at column `indent` on the line of
    /// `first`: following lines indented deeper (and, for a list written at the key's own indentation, its `-`
    /// lines). Blank and comment lines after the last such line are not part of it.
    fn block_end(&self, first: usize, indent: usize, dash_at_indent: bool) -> usize {
        let mut end = self.line_end(first);
        let mut pos = end + 1;
        while pos < self.src.len() {
            let le = self.line_end(pos);
            let line = &self.src[pos..le];
            let trimmed = line.trim_start_matches(' ');
            let ind = line.len() - trimmed.len();
            let trimmed = trimmed.trim_end();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                pos = le + 1;
                continue;
            }
            let dash = trimmed == "-" || trimmed.starts_with("- ");
            if ind > indent || (dash_at_indent && ind == indent && dash) {
                end = le;
                pos = le + 1;
                continue;
            }
            break;
        }
        end
    }

    pub(super) fn unsupported(&self, at: usize) -> anyhow::Error {
        let line = self.src[..at].matches('\n').count() + 1;
        anyhow::anyhow!("line {line}: a YAML layout `env set`/`env rm` does not edit; use `sesame env edit`")
    }

    pub(super) fn pair_owner(&self, key: &Node, value: &Node) -> anyhow::Result<Owner> {
        let kb = key.span.begin.byte;
        let Some(key_value) = key_text(key) else {
            return Err(self.unsupported(kb));
        };
        let key_end = self.scalar_end(kb, key_value).ok_or_else(|| self.unsupported(kb))?;
        let gap = self.src[key_end..]
            .find(|c: char| c != ' ' && c != '\t')
            .map_or(key_end, |g| key_end + g);
        if self.byte(gap) != Some(b':') {
            return Err(self.unsupported(kb));
        }
        let indent = self.column(kb);
        let dash_at_indent = matches!(value.kind, NodeKind::Seq(_)) && !self.is_flow(value);
        let end = self.block_end(kb, indent, dash_at_indent);
        let empty = is_empty_value(value);
        let same_line = !empty && self.line_start(value.span.begin.byte) == self.line_start(kb);
        let inline_end = match &value.kind {
            NodeKind::Scalar { value: v, .. } if same_line && end == self.line_end(kb) => {
                self.scalar_end(value.span.begin.byte, v)
            }
            _ => None,
        };
        Ok(Owner {
            anchor: gap,
            anchor_line_begin: kb,
            indent,
            end,
            inline_end,
            empty,
        })
    }

    pub(super) fn item_owner(&self, item: &Node) -> anyhow::Result<Owner> {
        let ib = item.span.begin.byte;
        if is_empty_value(item) {
            return Err(self.unsupported(ib));
        }
        let before = self.src[..ib].trim_end_matches([' ', '\t', '\r', '\n']);
        if !before.ends_with('-') {
            return Err(self.unsupported(ib));
        }
        let dash = before.len() - 1;
        let indent = self.column(dash);
        let end = self.block_end(dash, indent, false);
        let same_line = self.line_start(ib) == self.line_start(dash);
        let inline_end = match &item.kind {
            NodeKind::Scalar { value: v, .. } if same_line && end == self.line_end(dash) => self.scalar_end(ib, v),
            _ => None,
        };
        Ok(Owner {
            anchor: dash,
            anchor_line_begin: dash,
            indent,
            end,
            inline_end,
            empty: false,
        })
    }

    /// The document with the value that `owner` holds replaced by `value`.
    pub(super) fn replace(&self, owner: &Owner, value: &Json) -> String {
        let new = render(value, owner.indent);
        let after = owner.anchor + 1;
        let inline = new.starts_with(' ');
        if owner.empty {
            // `key:` or `key:   # comment`: a scalar goes right after the colon, a block after the comment.
            let line_end = self.line_end(after);
            return if inline {
                splice(self.src, after, after, &new)
            } else if self.src[after..line_end].trim().is_empty() {
                splice(self.src, after, line_end, &new)
            } else {
                splice(self.src, line_end, line_end, &new)
            };
        }
        match owner.inline_end {
            Some(end) if inline => splice(self.src, after, end, &new),
            Some(end) => {
                // The old scalar goes; a trailing comment stays on the key's line, and the block follows it.
                let line_end = self.line_end(end);
                let rest = &self.src[end..line_end];
                let kept = if rest.trim().is_empty() { "" } else { rest };
                splice(self.src, after, line_end, &format!("{kept}{new}"))
            }
            None => splice(self.src, after, owner.end, &new),
        }
    }
}

/// The text after a `key:` or `-` whose column is `indent`: ` scalar`, or line breaks and an indented block.
pub(super) fn render(value: &Json, indent: usize) -> String {
    let pad = " ".repeat(indent + 2);
    match value {
        Json::Object(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("\n{pad}{}:{}", yaml_key(k), render(v, indent + 2)))
            .collect(),
        Json::Array(a) if !a.is_empty() => a
            .iter()
            .map(|v| format!("\n{pad}-{}", render_item(v, indent + 2)))
            .collect(),
        other => format!(" {}", yaml_scalar(other)),
    }
}

/// The text after a `-` at column `indent`: an object starts on the dash's line.
fn render_item(value: &Json, indent: usize) -> String {
    match value {
        Json::Object(m) if !m.is_empty() => {
            let pad = " ".repeat(indent + 2);
            m.iter()
                .enumerate()
                .map(|(n, (k, v))| {
                    let lead = if n == 0 { " ".to_owned() } else { format!("\n{pad}") };
                    format!("{lead}{}:{}", yaml_key(k), render(v, indent + 2))
                })
                .collect()
        }
        other => render(other, indent),
    }
}

pub(super) fn render_root(value: &Json) -> String {
    match value {
        Json::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{}:{}\n", yaml_key(k), render(v, 0)))
            .collect(),
        other => format!("{}\n", yaml_scalar(other)),
    }
}

pub(super) fn append_root(src: &str, value: &Json) -> String {
    let mut out = src.to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&render_root(value));
    out
}

fn yaml_scalar(j: &Json) -> String {
    match j {
        Json::Object(_) => "{}".into(),
        Json::Array(_) => "[]".into(),
        Json::String(_) => crate::core::env::project::to_yaml(j).trim_end_matches('\n').to_owned(),
        other => other.to_string(),
    }
}

/// A key, plain when it reads back as the same string (`fn::secret` included), else JSON-quoted.
pub(super) fn yaml_key(k: &str) -> String {
    let reserved = matches!(
        k.to_ascii_lowercase().as_str(),
        "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n" | "~"
    );
    let plain = !reserved
        && k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && !k.ends_with(':')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || "_-./:$".contains(c))
        && !k.contains("${");
    if plain {
        k.to_owned()
    } else {
        serde_json::to_string(k).unwrap_or_default()
    }
}
