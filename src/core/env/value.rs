//! Evaluated values: JSON-shaped data with secret and unknown flags, the plain-JSON renderings of them
//! (`[secret]` / `[unknown]`), and the string conversions the builtins use.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::{Number, Value as Json};

use super::diag::Span;

/// Where a value was defined: the environment and the source range of the expression that produced it.
#[derive(Clone, Debug, PartialEq)]
pub struct Def {
    pub env: Arc<str>,
    pub span: Span,
}

#[derive(Clone, PartialEq)]
pub enum Repr {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Value>),
    Object(BTreeMap<String, Value>),
}

/// One evaluated value. An unknown value (a provider result during `check`, a failed expression) carries the schema
/// it is known to satisfy, if any.
#[derive(Clone, PartialEq)]
pub struct Value {
    pub repr: Repr,
    pub secret: bool,
    pub unknown: bool,
    /// Set by `fn::final`: an environment that imports this one may not override it.
    pub is_final: bool,
    pub schema: Option<Arc<Json>>,
    /// Keys of an object that came from the value it was merged over; `fn::toString` leaves them out, as ESC does.
    pub inherited: Vec<String>,
    /// Merged over an unknown value: what the merge would add is unknown, so merging this over anything else adds
    /// nothing either.
    pub partial: bool,
    /// The defining expression (`trace.def`); `None` for values with no source (context, provider-built values).
    pub def: Option<Def>,
}

impl fmt::Debug for Value {
    /// Secrets are never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json(true))
    }
}

impl Value {
    pub fn new(repr: Repr) -> Value {
        Value {
            repr,
            secret: false,
            unknown: false,
            is_final: false,
            schema: None,
            inherited: Vec::new(),
            partial: false,
            def: None,
        }
    }
    pub fn null() -> Value {
        Value::new(Repr::Null)
    }
    pub fn string(s: impl Into<String>) -> Value {
        Value::new(Repr::String(s.into()))
    }
    pub fn unknown(schema: Option<Arc<Json>>) -> Value {
        Value {
            unknown: true,
            schema,
            ..Value::null()
        }
    }
    pub fn object(map: BTreeMap<String, Value>) -> Value {
        Value::new(Repr::Object(map))
    }

    /// This value and everything inside it defined at `def`.
    pub fn with_def_deep(mut self, def: &Def) -> Value {
        self.set_def_deep(def);
        self
    }
    fn set_def_deep(&mut self, def: &Def) {
        self.def = Some(def.clone());
        match &mut self.repr {
            Repr::Array(items) => items.iter_mut().for_each(|v| v.set_def_deep(def)),
            Repr::Object(map) => map.values_mut().for_each(|v| v.set_def_deep(def)),
            _ => {}
        }
    }

    /// This value with itself and everything inside it marked secret.
    pub fn deep_secret(mut self) -> Value {
        self.mark_secret();
        self
    }
    fn mark_secret(&mut self) {
        self.secret = true;
        match &mut self.repr {
            Repr::Array(items) => items.iter_mut().for_each(Value::mark_secret),
            Repr::Object(map) => map.values_mut().for_each(Value::mark_secret),
            _ => {}
        }
    }

    pub fn contains_secrets(&self) -> bool {
        self.secret
            || match &self.repr {
                Repr::Array(items) => items.iter().any(Value::contains_secrets),
                Repr::Object(map) => map.values().any(Value::contains_secrets),
                _ => false,
            }
    }
    pub fn contains_unknowns(&self) -> bool {
        self.unknown
            || match &self.repr {
                Repr::Array(items) => items.iter().any(Value::contains_unknowns),
                Repr::Object(map) => map.values().any(Value::contains_unknowns),
                _ => false,
            }
    }

    /// The JSON type name ESC uses in messages.
    pub fn type_name(&self) -> &'static str {
        match &self.repr {
            Repr::Null => "null",
            Repr::Bool(_) => "boolean",
            Repr::Number(_) => "number",
            Repr::String(_) => "string",
            Repr::Array(_) => "array",
            Repr::Object(_) => "object",
        }
    }

    /// Plain JSON: secrets become `"[secret]"` when `redact`, unknowns `"[unknown]"`.
    pub fn to_json(&self, redact: bool) -> Json {
        if self.secret && redact {
            return Json::String("[secret]".into());
        }
        if self.unknown {
            return Json::String("[unknown]".into());
        }
        match &self.repr {
            Repr::Null => Json::Null,
            Repr::Bool(b) => Json::Bool(*b),
            Repr::Number(n) => Json::Number(n.clone()),
            Repr::String(s) => Json::String(s.clone()),
            Repr::Array(items) => Json::Array(items.iter().map(|v| v.to_json(redact)).collect()),
            Repr::Object(map) => Json::Object(map.iter().map(|(k, v)| (k.clone(), v.to_json(redact))).collect()),
        }
    }

    /// A known value from plain JSON.
    pub fn from_json(j: &Json) -> Value {
        Value::new(match j {
            Json::Null => Repr::Null,
            Json::Bool(b) => Repr::Bool(*b),
            Json::Number(n) => Repr::Number(n.clone()),
            Json::String(s) => Repr::String(s.clone()),
            Json::Array(items) => Repr::Array(items.iter().map(Value::from_json).collect()),
            Json::Object(map) => Repr::Object(map.iter().map(|(k, v)| (k.clone(), Value::from_json(v))).collect()),
        })
    }

    /// `fn::toString`: scalars as text; lists and objects as Go-quoted `"a","b"` / `"k"="v"` joined by commas.
    pub fn to_text(&self) -> String {
        if self.unknown {
            return "[unknown]".into();
        }
        match &self.repr {
            Repr::Null => String::new(),
            Repr::Bool(b) => b.to_string(),
            Repr::Number(n) => n.to_string(),
            Repr::String(s) => s.clone(),
            Repr::Array(items) => items
                .iter()
                .map(|v| go_quote(&v.to_text()))
                .collect::<Vec<_>>()
                .join(","),
            Repr::Object(map) => map
                .iter()
                .filter(|(k, _)| !self.inherited.contains(k))
                .map(|(k, v)| format!("{}={}", go_quote(k), go_quote(&v.to_text())))
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// `fn::toJSON`: compact JSON with sorted keys and Go's HTML-safe escapes.
    pub fn to_json_text(&self) -> String {
        let text = serde_json::to_string(&self.to_json(false)).unwrap_or_default();
        text.replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029")
    }
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renderings() {
        let mut m = BTreeMap::new();
        m.insert("b".to_string(), Value::string("x\"y").deep_secret());
        m.insert("a".to_string(), Value::unknown(None));
        let v = Value::object(m);
        assert_eq!(v.to_json(true), serde_json::json!({"a": "[unknown]", "b": "[secret]"}));
        assert_eq!(v.to_json(false)["b"], "x\"y");
        assert_eq!(format!("{v:?}"), r#"{"a":"[unknown]","b":"[secret]"}"#);
        let known = Value::from_json(&serde_json::json!({"k": ["a", 1], "h": "<&>"}));
        assert_eq!(known.to_text(), r#""h"="<&>","k"="\"a\",\"1\"""#);
        assert_eq!(known.to_json_text(), r#"{"h":"\u003c\u0026\u003e","k":["a",1]}"#);
    }
}
