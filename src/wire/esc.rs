//! ESC's JSON shapes for evaluated values and diagnostics, and property lookup in them, as the official clients read them.
//!
//! Client needs honoured here (conformance/esc-api/CLIENT-NOTES.md): every range carries `environment`; nested
//! nulls are an explicit `"value": null`; open results carry `properties` only (no `exprs`, whose Go shape breaks
//! the Python SDK).

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json, json};

use crate::core::env::Diagnostic;
use crate::core::env::diag::{Pos, Span};
use crate::core::env::path::{PropertyPath, Seg};
use crate::core::env::value::{Repr, Value};

fn pos(p: &Pos) -> Json {
    json!({"line": p.line, "column": p.column, "byte": p.byte})
}

/// A `Range`: `environment` is always present (empty when unknown).
pub fn range(env: &str, span: &Span) -> Json {
    json!({"environment": env, "begin": pos(&span.begin), "end": pos(&span.end)})
}

/// One evaluated value as ESC's `Value`: `{"value", "secret"?, "unknown"?, "trace"}`; containers hold `Value`s.
pub fn value(v: &Value) -> Json {
    let inner = match &v.repr {
        Repr::Null => Json::Null,
        Repr::Bool(b) => Json::Bool(*b),
        Repr::Number(n) => Json::Number(n.clone()),
        Repr::String(s) => Json::String(s.to_string()),
        Repr::Array(items) => Json::Array(items.iter().map(value).collect()),
        Repr::Object(map) => Json::Object(map.iter().map(|(k, v)| (k.clone(), value(v))).collect()),
    };
    let mut out = Map::new();
    out.insert("value".into(), if v.unknown { Json::Null } else { inner });
    if v.secret {
        out.insert("secret".into(), Json::Bool(true));
    }
    if v.unknown {
        out.insert("unknown".into(), Json::Bool(true));
    }
    let mut trace = Map::new();
    if let Some(def) = &v.def {
        trace.insert("def".into(), range(&def.env, &def.span));
    }
    out.insert("trace".into(), Json::Object(trace));
    Json::Object(out)
}

/// The `properties` of an `Environment`.
pub fn properties(props: Option<&BTreeMap<String, Value>>) -> Json {
    Json::Object(
        props
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), value(v)))
            .collect(),
    )
}

/// The `properties` of an `Environment` as JSON text, or `None` when that is longer than `limit` bytes (the
/// writing stops there).
pub fn properties_text(props: Option<&BTreeMap<String, Value>>, limit: usize) -> Option<Vec<u8>> {
    struct Limited(Vec<u8>, usize);
    impl std::io::Write for Limited {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            if self.0.len() + data.len() > self.1 {
                return Err(std::io::Error::other("too large"));
            }
            self.0.extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut out = Limited(Vec::new(), limit);
    serde_json::to_writer(&mut out, &properties(props)).ok()?;
    Some(out.0)
}

/// One diagnostic as ESC's `EnvironmentDiagnostic`.
pub fn diagnostic(d: &Diagnostic) -> Json {
    let mut out = Map::new();
    out.insert("summary".into(), Json::String(d.summary.clone()));
    if !d.path.is_empty() {
        out.insert("path".into(), Json::String(d.path.clone()));
    }
    if let Some((env, span)) = &d.subject {
        out.insert("range".into(), range(env, span));
    }
    Json::Object(out)
}

/// A diagnostics list.
pub fn diagnostics(ds: &[Diagnostic]) -> Json {
    Json::Array(ds.iter().map(diagnostic).collect())
}

/// Follows a property path through rendered `properties` (objects and arrays of `Value`s).
pub fn lookup<'a>(properties: &'a Json, path: &PropertyPath) -> Option<&'a Json> {
    let (first, rest) = path.0.split_first()?;
    let Seg::Key(k) = first else { return None };
    let mut cur = properties.get(k)?;
    for step in rest {
        let inner = cur.get("value")?;
        cur = match step {
            Seg::Key(k) => inner.as_object()?.get(k)?,
            Seg::Index(n) => inner.as_array()?.get(*n)?,
        };
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_walks_values() {
        let props = json!({"a": {"value": {"b": {"value": [{"value": 1, "trace": {}}, {"value": null, "trace": {}}], "trace": {}}}, "trace": {}}});
        let got = lookup(&props, &PropertyPath::parse("a.b[1]").unwrap()).unwrap();
        assert_eq!(got, &json!({"value": null, "trace": {}}));
        assert!(lookup(&props, &PropertyPath::parse("a.c").unwrap()).is_none());
        assert!(lookup(&props, &PropertyPath::parse("a.b[5]").unwrap()).is_none());
    }

    #[test]
    fn null_values_are_explicit() {
        let v = Value::object(BTreeMap::from([("n".to_owned(), Value::null())]));
        let j = value(&v);
        assert!(j["value"]["n"].as_object().unwrap().contains_key("value"));
        assert_eq!(j["value"]["n"]["value"], Json::Null);
    }
}
