//! Edits of an environment definition's text at a property path (`sesame env set` and `env rm NAME PATH`), made as
//! one splice of the user's text so that comments, order, quoting and layout elsewhere survive; plus the lookup of a
//! property path ([`crate::core::env::path`]: `a.b[0]`, `a["x.y"]`) in plain JSON, and a definition as plain JSON
//! ([`yaml_to_json`], for `env get --format json` and `--value`).
//!
//! The tree from [`crate::core::env::syntax`] says where keys and values begin; how far a value reaches is read from
//! indentation, as YAML's block style defines it ([`text`]). Flow collections (`{a: 1}`, `[1, 2]`) are replaced whole
//! but never edited inside, and layouts this module does not understand are refused with a hint to use `sesame env
//! edit`, rather than guessed at. Pure: no I/O.

mod text;

use anyhow::bail;
use serde_json::Value as Json;

use crate::core::env::syntax::{self, Node, NodeKind};
use text::{Owner, Text, append_root, render, render_root, yaml_key};

pub(super) use crate::core::env::path::{PropertyPath, Seg};

/// The value at `path` inside `json`, if there is one.
pub(super) fn lookup<'j>(json: &'j Json, path: &[Seg]) -> Option<&'j Json> {
    path.iter().try_fold(json, |j, seg| match (seg, j) {
        (Seg::Key(k), Json::Object(m)) => m.get(k),
        (Seg::Index(i), Json::Array(a)) => a.get(*i),
        _ => None,
    })
}

/// `src` with the value at `path` (from the document's root, e.g. `values.a.b`) set to `value`, written as
/// block-style YAML. Missing objects along the path are created; a scalar in the way is replaced.
pub(super) fn set(src: &str, path: &[Seg], value: &Json) -> anyhow::Result<String> {
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
pub(super) fn remove(src: &str, path: &[Seg]) -> anyhow::Result<String> {
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

/// `path` under the definition's `values`, as `env get --value`, `env set` and `env rm ENV PATH` name it.
pub(super) fn under_values(path: &PropertyPath) -> Vec<Seg> {
    let mut full = vec![Seg::Key("values".into())];
    full.extend(path.0.iter().cloned());
    full
}

/// A definition as plain JSON (YAML 1.2 core types). Keys that are not strings are written as text.
pub(super) fn yaml_to_json(text: &str) -> anyhow::Result<Json> {
    use yaml_rust2::{Yaml, YamlLoader};
    fn convert(y: &Yaml) -> Json {
        match y {
            Yaml::Real(r) => r
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or_else(|| Json::String(r.clone()), Json::Number),
            Yaml::Integer(i) => Json::from(*i),
            Yaml::String(s) => Json::String(s.clone()),
            Yaml::Boolean(b) => Json::Bool(*b),
            Yaml::Array(a) => Json::Array(a.iter().map(convert).collect()),
            Yaml::Hash(h) => Json::Object(
                h.iter()
                    .map(|(k, v)| {
                        let key = match convert(k) {
                            Json::String(s) => s,
                            other => other.to_string(),
                        };
                        (key, convert(v))
                    })
                    .collect(),
            ),
            Yaml::Null | Yaml::BadValue | Yaml::Alias(_) => Json::Null,
        }
    }
    let docs = YamlLoader::load_from_str(text).map_err(|e| anyhow::anyhow!("the definition is not YAML: {e}"))?;
    Ok(docs.first().map(convert).unwrap_or(Json::Null))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(text: &str) -> Vec<Seg> {
        under_values(&text.parse::<PropertyPath>().unwrap())
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

    #[test]
    fn definitions_convert_to_json() {
        let j = yaml_to_json("imports: [base]\nvalues:\n  n: 1\n  f: 1.5\n  b: true\n  s: '1'\n  z: ~\n").unwrap();
        assert_eq!(
            j,
            json!({"imports": ["base"], "values": {"n": 1, "f": 1.5, "b": true, "s": "1", "z": null}})
        );
        assert_eq!(yaml_to_json("").unwrap(), Json::Null);
    }
}
