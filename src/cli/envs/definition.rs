//! Edits of an environment definition's text at a property path (`sesame env set` and `env rm NAME PATH`), made as
//! one splice of the user's text so that comments, order, quoting and layout elsewhere survive; plus the lookup of a
//! property path ([`crate::core::env::path`]: `a.b[0]`, `a["x.y"]`) in plain JSON.
//!
//! The tree from [`crate::core::env::syntax`] says where keys and values begin; how far a value reaches is read from
//! indentation, as YAML's block style defines it. Flow collections (`{a: 1}`, `[1, 2]`) are replaced whole but never
//! edited inside, and layouts this module does not understand are refused with a hint to use `sesame env edit`,
//! rather than guessed at. Pure: no I/O.

use anyhow::bail;
use serde_json::Value as Json;

use crate::core::env::syntax::{self, Node, NodeKind};

pub use crate::core::env::path::{PropertyPath, Seg};

/// The value at `path` inside `json`, if there is one.
pub fn lookup<'j>(json: &'j Json, path: &[Seg]) -> Option<&'j Json> {
    path.iter().try_fold(json, |j, seg| match (seg, j) {
        (Seg::Key(k), Json::Object(m)) => m.get(k),
        (Seg::Index(i), Json::Array(a)) => a.get(*i),
        _ => None,
    })
}

/// `src` with the value at `path` (from the document's root, e.g. `values.a.b`) set to `value`, written as
/// block-style YAML. Missing objects along the path are created; a scalar in the way is replaced.
pub fn set(src: &str, path: &[Seg], value: &Json) -> anyhow::Result<String> {
    let t = Text { src };
    let Some(root) = parse(src)? else {
        return Ok(append_root(src, &nest(path, value)?));
    };
    if let Some(end) = t.empty_flow(&root) {
        // `{}` (a new environment's definition, say): the whole document becomes the new value.
        let mut out = String::with_capacity(src.len() + 64);
        out.push_str(&src[..root.span.begin.byte]);
        out.push_str(&render_root(&nest(path, value)?));
        out.push_str(src[end..].trim_start_matches([' ', '\t', '\r', '\n']));
        return Ok(out);
    }
    if !matches!(root.kind, NodeKind::Map(_)) || t.is_flow(&root) {
        bail!("the definition is not a block-style mapping; use `sesame env edit`");
    }
    let mut node = &root;
    let mut owner: Option<Owner> = None;
    for (n, seg) in path.iter().enumerate() {
        let rest = &path[n + 1..];
        match (seg, &node.kind) {
            (_, _) if t.empty_flow(node).is_some() || is_scalar(node) => {
                let Some(o) = &owner else {
                    bail!("the definition is not a mapping");
                };
                return Ok(t.replace(o, &nest(&path[n..], value)?));
            }
            (_, _) if t.is_flow(node) => {
                bail!(
                    "{} is written in flow style ({{…}} or […]), which `env set` does not edit inside; use \
                     `sesame env edit`",
                    PropertyPath(path[..n].to_vec())
                );
            }
            (Seg::Key(k), NodeKind::Map(pairs)) => match pairs.iter().find(|(kn, _)| key_text(kn) == Some(k)) {
                Some((kn, vn)) => {
                    owner = Some(t.pair_owner(kn, vn)?);
                    node = vn;
                }
                None => {
                    let (Some((first_key, _)), Some((last_key, last_value))) = (pairs.first(), pairs.last()) else {
                        return Err(t.unsupported(node.span.begin.byte));
                    };
                    let indent = t.column(first_key.span.begin.byte);
                    let end = t.pair_owner(last_key, last_value)?.end;
                    let text = format!(
                        "\n{}{}:{}",
                        " ".repeat(indent),
                        yaml_key(k),
                        render(&nest(rest, value)?, indent)
                    );
                    return Ok(splice(src, end, end, &text));
                }
            },
            (Seg::Index(i), NodeKind::Seq(items)) => match items.get(*i) {
                Some(item) => {
                    owner = Some(t.item_owner(item)?);
                    node = item;
                }
                None if *i == items.len() => {
                    let Some(last) = items.last() else {
                        return Err(t.unsupported(node.span.begin.byte));
                    };
                    let last = t.item_owner(last)?;
                    let text = format!(
                        "\n{}-{}",
                        " ".repeat(last.indent),
                        render(&nest(rest, value)?, last.indent)
                    );
                    return Ok(splice(src, last.end, last.end, &text));
                }
                None => bail!(
                    "{} has {} items: cannot set index {i}",
                    PropertyPath(path[..n].to_vec()),
                    items.len()
                ),
            },
            (Seg::Key(_), _) => bail!("{} is a list, not an object", PropertyPath(path[..n].to_vec())),
            (Seg::Index(_), _) => bail!("{} is an object, not a list", PropertyPath(path[..n].to_vec())),
        }
    }
    let Some(o) = &owner else {
        bail!("the property path is empty");
    };
    Ok(t.replace(o, value))
}

/// `src` without the value at `path` (from the document's root). Removing the last entry of an object or list
/// leaves it empty (`{}` / `[]`).
pub fn remove(src: &str, path: &[Seg]) -> anyhow::Result<String> {
    let t = Text { src };
    let shown = || PropertyPath(path.to_vec());
    let Some((last, parents)) = path.split_last() else {
        bail!("the property path is empty");
    };
    let Some(root) = parse(src)? else {
        bail!("there is no value at {}", shown());
    };
    let mut node = &root;
    let mut owner: Option<Owner> = None;
    for seg in parents {
        let next = match (seg, &node.kind) {
            (Seg::Key(k), NodeKind::Map(pairs)) => pairs
                .iter()
                .find(|(kn, _)| key_text(kn) == Some(k))
                .map(|(kn, vn)| t.pair_owner(kn, vn).map(|o| (o, vn))),
            (Seg::Index(i), NodeKind::Seq(items)) => items.get(*i).map(|item| t.item_owner(item).map(|o| (o, item))),
            _ => None,
        };
        let Some(next) = next else {
            bail!("there is no value at {}", shown());
        };
        let (o, n) = next?;
        owner = Some(o);
        node = n;
    }
    if t.is_flow(node) {
        bail!(
            "the value at {} is inside a flow-style collection; use `sesame env edit`",
            shown()
        );
    }
    let (target, count) = match (last, &node.kind) {
        (Seg::Key(k), NodeKind::Map(pairs)) => match pairs.iter().find(|(kn, _)| key_text(kn) == Some(k)) {
            Some((kn, vn)) => (t.pair_owner(kn, vn)?, pairs.len()),
            None => bail!("there is no value at {}", shown()),
        },
        (Seg::Index(i), NodeKind::Seq(items)) => match items.get(*i) {
            Some(item) => (t.item_owner(item)?, items.len()),
            None => bail!("there is no value at {}", shown()),
        },
        _ => bail!("there is no value at {}", shown()),
    };
    if count == 1 {
        let Some(o) = &owner else {
            bail!("removing the definition's only top-level key would leave nothing; use `sesame env edit`");
        };
        let empty = match node.kind {
            NodeKind::Seq(_) => Json::Array(Vec::new()),
            _ => Json::Object(serde_json::Map::new()),
        };
        return Ok(t.replace(o, &empty));
    }
    let line = t.line_start(target.anchor_line_begin);
    if !src[line..target.anchor_line_begin].trim().is_empty() {
        bail!(
            "{} shares its line with other YAML (like `- key: value`), which `env rm` does not split; use `sesame \
             env edit`",
            shown()
        );
    }
    let end = if target.end < src.len() {
        target.end + 1
    } else {
        target.end
    };
    Ok(splice(src, line, end, ""))
}

fn parse(src: &str) -> anyhow::Result<Option<Node>> {
    syntax::parse(src).map_err(|e| anyhow::anyhow!("the definition is not valid YAML: {}", e.message))
}

fn splice(src: &str, from: usize, to: usize, text: &str) -> String {
    let mut out = String::with_capacity(src.len() + text.len());
    out.push_str(&src[..from]);
    out.push_str(text);
    out.push_str(&src[to..]);
    out
}

fn is_scalar(node: &Node) -> bool {
    matches!(node.kind, NodeKind::Scalar { .. })
}

/// An empty plain scalar with no tag: the value of `key:` with nothing after it. The parser places such a scalar
/// at the next token, so its position means nothing.
fn is_empty_value(node: &Node) -> bool {
    matches!(&node.kind, NodeKind::Scalar { value, plain: true, tag: None } if value.is_empty())
}

fn key_text(node: &Node) -> Option<&String> {
    match &node.kind {
        NodeKind::Scalar { value, .. } => Some(value),
        _ => None,
    }
}

/// `path` below `value`: `[a, 0]` and `v` give `{"a": [v]}`. New lists can only start at index 0.
fn nest(path: &[Seg], value: &Json) -> anyhow::Result<Json> {
    let mut out = value.clone();
    for seg in path.iter().rev() {
        out = match seg {
            Seg::Key(k) => Json::Object(serde_json::Map::from_iter([(k.clone(), out)])),
            Seg::Index(0) => Json::Array(vec![out]),
            Seg::Index(i) => bail!("index {i} is past the end of a new list (use [0])"),
        };
    }
    Ok(out)
}

/// Where a value hangs: after the `:` of a key, or the `-` of a list item.
#[derive(Debug)]
struct Owner {
    /// The byte of the `:` or `-`.
    anchor: usize,
    /// Where the key (or `-`) begins; its line is the owner's line.
    anchor_line_begin: usize,
    /// The column (from 0) of the key or `-`: nested block content is indented further.
    indent: usize,
    /// The end of the last line of the entry (before its line break).
    end: usize,
    /// For a single-line scalar on the owner's line: where its text ends (a trailing comment stays).
    inline_end: Option<usize>,
    /// The value is empty (`key:` with nothing after it).
    empty: bool,
}

struct Text<'s> {
    src: &'s str,
}

impl Text<'_> {
    fn line_start(&self, at: usize) -> usize {
        self.src[..at].rfind('\n').map_or(0, |i| i + 1)
    }

    fn line_end(&self, at: usize) -> usize {
        self.src[at..].find('\n').map_or(self.src.len(), |i| at + i)
    }

    fn column(&self, at: usize) -> usize {
        at - self.line_start(at)
    }

    fn byte(&self, at: usize) -> Option<u8> {
        self.src.as_bytes().get(at).copied()
    }

    fn is_flow(&self, node: &Node) -> bool {
        !is_scalar(node) && matches!(self.byte(node.span.begin.byte), Some(b'{' | b'['))
    }

    /// For `{}` or `[]` (spaces allowed inside): the byte after the closing bracket.
    fn empty_flow(&self, node: &Node) -> Option<usize> {
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

    fn unsupported(&self, at: usize) -> anyhow::Error {
        let line = self.src[..at].matches('\n').count() + 1;
        anyhow::anyhow!("line {line}: a YAML layout `env set`/`env rm` does not edit; use `sesame env edit`")
    }

    fn pair_owner(&self, key: &Node, value: &Node) -> anyhow::Result<Owner> {
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

    fn item_owner(&self, item: &Node) -> anyhow::Result<Owner> {
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
    fn replace(&self, owner: &Owner, value: &Json) -> String {
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
fn render(value: &Json, indent: usize) -> String {
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

fn render_root(value: &Json) -> String {
    match value {
        Json::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{}:{}\n", yaml_key(k), render(v, 0)))
            .collect(),
        other => format!("{}\n", yaml_scalar(other)),
    }
}

fn append_root(src: &str, value: &Json) -> String {
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
fn yaml_key(k: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(text: &str) -> Vec<Seg> {
        let mut v = vec![Seg::Key("values".into())];
        v.extend(text.parse::<PropertyPath>().unwrap().0);
        v
    }

    fn set_ok(src: &str, path: &str, value: Json) -> String {
        let out = set(src, &p(path), &value).unwrap();
        syntax::parse(&out).unwrap_or_else(|e| panic!("not YAML: {e:?}\n{out}"));
        out
    }

    #[test]
    fn paths_parse_and_print() {
        let path: PropertyPath = "a.b[0][\"x.y\"].c".parse().unwrap();
        assert_eq!(
            path.0,
            [
                Seg::Key("a".into()),
                Seg::Key("b".into()),
                Seg::Index(0),
                Seg::Key("x.y".into()),
                Seg::Key("c".into())
            ]
        );
        assert_eq!(path.to_string(), "a.b[0][\"x.y\"].c");
        assert_eq!("[1]".parse::<PropertyPath>().unwrap().0, [Seg::Index(1)]);
        for bad in ["", "a.", "a..b", "a[", "a[x]", "a[\"x\"", "a]b", ".a"] {
            assert!(bad.parse::<PropertyPath>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lookup_follows_keys_and_indexes() {
        let j = json!({"a": {"b": [1, {"c": "x"}]}});
        let path: PropertyPath = "a.b[1].c".parse().unwrap();
        assert_eq!(lookup(&j, &path.0), Some(&json!("x")));
        assert_eq!(lookup(&j, &"a.z".parse::<PropertyPath>().unwrap().0), None);
    }

    #[test]
    fn setting_a_scalar_keeps_comments_and_everything_else() {
        let src = "# top comment\nimports:\n  - base\nvalues:\n  # the port\n  port: 80 # http\n  name: 'web'\n";
        assert_eq!(
            set_ok(src, "port", json!(8080)),
            "# top comment\nimports:\n  - base\nvalues:\n  # the port\n  port: 8080 # http\n  name: 'web'\n"
        );
        assert_eq!(
            set_ok(src, "name", json!("a b: c")),
            "# top comment\nimports:\n  - base\nvalues:\n  # the port\n  port: 80 # http\n  name: \"a b: c\"\n"
        );
    }

    #[test]
    fn new_keys_go_after_the_last_entry_at_its_indentation() {
        let src = "values:\n    a: 1\n    b:\n      c: 2\n\n# trailing\n";
        assert_eq!(
            set_ok(src, "d.e", json!("x")),
            "values:\n    a: 1\n    b:\n      c: 2\n    d:\n      e: x\n\n# trailing\n"
        );
        assert_eq!(
            set_ok(src, "b.f", json!(true)),
            "values:\n    a: 1\n    b:\n      c: 2\n      f: true\n\n# trailing\n"
        );
        // No `values` yet: it is added at the end.
        assert_eq!(
            set_ok("imports:\n  - a\n", "k", json!("v")),
            "imports:\n  - a\nvalues:\n  k: v\n"
        );
        assert_eq!(set_ok("", "k", json!("v")), "values:\n  k: v\n");
        assert_eq!(
            set_ok("# only a comment", "k", json!(1)),
            "# only a comment\nvalues:\n  k: 1\n"
        );
        assert_eq!(set_ok("{}\n", "k", json!(1)), "values:\n  k: 1\n");
        assert_eq!(set_ok("values: {}\n", "a.b", json!(1)), "values:\n  a:\n    b: 1\n");
    }

    #[test]
    fn secrets_are_written_as_fn_secret_blocks() {
        let src = "values:\n  db:\n    password: old # rotate me\n    user: app\n";
        let out = set_ok(src, "db.password", json!({"fn::secret": "s3cr3t"}));
        assert_eq!(
            out,
            "values:\n  db:\n    password: # rotate me\n      fn::secret: s3cr3t\n    user: app\n"
        );
        // And back to a plain value: the whole block is replaced.
        assert_eq!(
            set_ok(&out, "db.password", json!("plain")),
            "values:\n  db:\n    password: plain\n    user: app\n"
        );
    }

    #[test]
    fn empty_values_and_lists() {
        assert_eq!(
            set_ok("values:\n  a:\n  b: 2\n", "a", json!(1)),
            "values:\n  a: 1\n  b: 2\n"
        );
        assert_eq!(
            set_ok("values:\n  a:   # later\n  b: 2\n", "a", json!(1)),
            "values:\n  a: 1   # later\n  b: 2\n"
        );
        assert_eq!(
            set_ok("values:\n  a:\n  b: 2\n", "a.x", json!(1)),
            "values:\n  a:\n    x: 1\n  b: 2\n"
        );
        let src = "values:\n  hosts:\n  - a.example # first\n  - b.example\n  other: 1\n";
        assert_eq!(
            set_ok(src, "hosts[1]", json!("c.example")),
            "values:\n  hosts:\n  - a.example # first\n  - c.example\n  other: 1\n"
        );
        assert_eq!(
            set_ok(src, "hosts[2]", json!("d.example")),
            "values:\n  hosts:\n  - a.example # first\n  - b.example\n  - d.example\n  other: 1\n"
        );
        assert!(set(src, &p("hosts[5]"), &json!(1)).is_err());
        assert!(set(src, &p("hosts.x"), &json!(1)).is_err());
        assert_eq!(
            set_ok("values:\n  l:\n    - k: v\n      j: w\n", "l[0].j", json!("z")),
            "values:\n  l:\n    - k: v\n      j: z\n"
        );
        assert_eq!(
            set_ok("values:\n  x: 1\n", "l[0].k", json!("v")),
            "values:\n  x: 1\n  l:\n    - k: v\n"
        );
    }

    #[test]
    fn multi_line_values_and_flow_collections_are_replaced_whole() {
        let src = "values:\n  text: |\n    one\n    two\n  flow: {a: 1}\n  z: 0\n";
        assert_eq!(
            set_ok(src, "text", json!("three")),
            "values:\n  text: three\n  flow: {a: 1}\n  z: 0\n"
        );
        assert_eq!(
            set_ok(src, "flow", json!({"b": 2})),
            "values:\n  text: |\n    one\n    two\n  flow:\n    b: 2\n  z: 0\n"
        );
        assert!(set(src, &p("flow.c"), &json!(1)).is_err());
        // A quoted key and a quoted value with escapes.
        assert_eq!(
            set_ok("values:\n  \"a b\": \"x\\\"y\" # c\n", "[\"a b\"]", json!("z")),
            "values:\n  \"a b\": z # c\n"
        );
    }

    #[test]
    fn removing_values() {
        let src = "values:\n  a: 1 # one\n  b:\n    c: 2\n    d: 3\n  l:\n    - x\n    - y\n";
        let rm = |path: &str| remove(src, &p(path)).unwrap();
        assert_eq!(rm("a"), "values:\n  b:\n    c: 2\n    d: 3\n  l:\n    - x\n    - y\n");
        assert_eq!(rm("b"), "values:\n  a: 1 # one\n  l:\n    - x\n    - y\n");
        assert_eq!(
            rm("b.c"),
            "values:\n  a: 1 # one\n  b:\n    d: 3\n  l:\n    - x\n    - y\n"
        );
        assert_eq!(
            rm("l[0]"),
            "values:\n  a: 1 # one\n  b:\n    c: 2\n    d: 3\n  l:\n    - y\n"
        );
        let once = remove("values:\n  only:\n    k: v\n  x: 1\n", &p("only.k")).unwrap();
        assert_eq!(once, "values:\n  only: {}\n  x: 1\n");
        assert!(remove(src, &p("zz")).is_err());
        assert!(remove(src, &p("a.b")).is_err());
        assert!(remove("values:\n  l:\n    - k: v\n      j: w\n", &p("l[0].k")).is_err());
    }
}
