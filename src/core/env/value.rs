//! Evaluated values: JSON-shaped data with secret and unknown flags, the plain-JSON renderings of them
//! (`[secret]` / `[unknown]`), and the string conversions the builtins use.
//!
//! Lists, objects and strings are shared, not copied: a reference to a value costs the same whatever its size. A
//! shared value can therefore stand for a tree far larger than the memory it takes (a list of two references to a
//! list of two references to …), so every container carries [`Facts`] about the tree it stands for — its size as
//! rendered, its depth, whether a secret or an unknown is inside — computed when it is built. Questions about a
//! value are answered from its facts, and whoever walks a value checks its facts against a budget first.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::ops::Deref;
use std::sync::Arc;

use serde::ser::{Serialize, Serializer};
use serde_json::{Number, Value as Json};

use super::diag::Span;

/// Where a value was defined: the environment and the source range of the expression that produced it.
#[derive(Clone, Debug, PartialEq)]
pub struct Def {
    pub env: Arc<str>,
    pub span: Span,
}

/// What is known about the tree a value stands for, counted as it renders: a part shared in several places counts
/// once per place. Counts saturate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// Values in the tree, this one included.
    pub nodes: u64,
    /// Bytes of strings and object keys in the tree.
    pub bytes: u64,
    /// Levels of nesting: 1 for a scalar, 2 for a list of scalars.
    pub depth: u32,
    /// Some value in the tree is secret.
    pub secret: bool,
    /// Some value in the tree is unknown.
    pub unknown: bool,
}

impl Facts {
    fn add(&mut self, child: Facts) {
        self.nodes = self.nodes.saturating_add(child.nodes);
        self.bytes = self.bytes.saturating_add(child.bytes);
        self.depth = self.depth.max(child.depth);
        self.secret |= child.secret;
        self.unknown |= child.unknown;
    }
}

/// The items of a list value, shared.
#[derive(Clone, Default)]
pub struct List(Arc<Items>);

#[derive(Clone, Default)]
struct Items {
    items: Vec<Value>,
    /// The items' facts together.
    facts: Facts,
}

impl List {
    pub fn new(items: Vec<Value>) -> List {
        let mut facts = Facts::default();
        for v in &items {
            facts.add(v.facts());
        }
        List(Arc::new(Items { items, facts }))
    }
    /// The items, copied only if the list is shared.
    pub fn into_vec(self) -> Vec<Value> {
        Arc::try_unwrap(self.0).map_or_else(|shared| shared.items.clone(), |own| own.items)
    }
    fn facts(&self) -> Facts {
        self.0.facts
    }
    /// Applies `f` to every item (copying the list first if it is shared) and refreshes the facts.
    fn update(&mut self, f: impl FnMut(&mut Value)) {
        let inner = Arc::make_mut(&mut self.0);
        inner.items.iter_mut().for_each(f);
        let mut facts = Facts::default();
        for v in &inner.items {
            facts.add(v.facts());
        }
        inner.facts = facts;
    }
}

impl Deref for List {
    type Target = [Value];
    fn deref(&self) -> &[Value] {
        &self.0.items
    }
}

impl PartialEq for List {
    fn eq(&self, other: &List) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || (self.0.facts == other.0.facts && self.0.items == other.0.items)
    }
}

impl From<Vec<Value>> for List {
    fn from(items: Vec<Value>) -> List {
        List::new(items)
    }
}

impl FromIterator<Value> for List {
    fn from_iter<I: IntoIterator<Item = Value>>(iter: I) -> List {
        List::new(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a List {
    type Item = &'a Value;
    type IntoIter = std::slice::Iter<'a, Value>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.items.iter()
    }
}

/// The properties of an object value, shared.
#[derive(Clone, Default)]
pub struct Map(Arc<Fields>);

#[derive(Clone, Default)]
struct Fields {
    map: BTreeMap<String, Value>,
    /// The properties' facts together, keys' bytes included.
    facts: Facts,
}

impl Map {
    pub fn new(map: BTreeMap<String, Value>) -> Map {
        let mut facts = Facts::default();
        for (k, v) in &map {
            facts.add(v.facts());
            facts.bytes = facts.bytes.saturating_add(k.len() as u64);
        }
        Map(Arc::new(Fields { map, facts }))
    }
    /// The properties, copied only if the object is shared.
    pub fn into_map(self) -> BTreeMap<String, Value> {
        Arc::try_unwrap(self.0).map_or_else(|shared| shared.map.clone(), |own| own.map)
    }
    fn facts(&self) -> Facts {
        self.0.facts
    }
    fn update(&mut self, mut f: impl FnMut(&mut Value)) {
        let inner = Arc::make_mut(&mut self.0);
        inner.map.values_mut().for_each(&mut f);
        let mut facts = Facts::default();
        for (k, v) in &inner.map {
            facts.add(v.facts());
            facts.bytes = facts.bytes.saturating_add(k.len() as u64);
        }
        inner.facts = facts;
    }
}

impl Deref for Map {
    type Target = BTreeMap<String, Value>;
    fn deref(&self) -> &BTreeMap<String, Value> {
        &self.0.map
    }
}

impl PartialEq for Map {
    fn eq(&self, other: &Map) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || (self.0.facts == other.0.facts && self.0.map == other.0.map)
    }
}

impl From<BTreeMap<String, Value>> for Map {
    fn from(map: BTreeMap<String, Value>) -> Map {
        Map::new(map)
    }
}

impl FromIterator<(String, Value)> for Map {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Map {
        Map::new(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a Map {
    type Item = (&'a String, &'a Value);
    type IntoIter = std::collections::btree_map::Iter<'a, String, Value>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.map.iter()
    }
}

#[derive(Clone, PartialEq)]
pub enum Repr {
    Null,
    Bool(bool),
    Number(Number),
    String(Arc<str>),
    Array(List),
    Object(Map),
}

impl Repr {
    pub fn array(items: Vec<Value>) -> Repr {
        Repr::Array(List::new(items))
    }
    pub fn object(map: BTreeMap<String, Value>) -> Repr {
        Repr::Object(Map::new(map))
    }
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

/// Values larger than this are summarised, not written out, by `Debug`.
const DEBUG_NODES: u64 = 10_000;

impl fmt::Debug for Value {
    /// Secrets are never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let facts = self.facts();
        if facts.nodes > DEBUG_NODES {
            return write!(f, "<{} of {} values>", self.type_name(), facts.nodes);
        }
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
        Value::new(Repr::String(Arc::from(s.into())))
    }
    pub fn unknown(schema: Option<Arc<Json>>) -> Value {
        Value {
            unknown: true,
            schema,
            ..Value::null()
        }
    }
    pub fn object(map: BTreeMap<String, Value>) -> Value {
        Value::new(Repr::object(map))
    }
    pub fn array(items: Vec<Value>) -> Value {
        Value::new(Repr::array(items))
    }

    /// The facts of the tree this value stands for, without walking it.
    pub fn facts(&self) -> Facts {
        let mut f = match &self.repr {
            Repr::Array(items) => items.facts(),
            Repr::Object(map) => map.facts(),
            Repr::String(s) => Facts {
                bytes: s.len() as u64,
                ..Facts::default()
            },
            _ => Facts::default(),
        };
        f.nodes = f.nodes.saturating_add(1);
        f.depth = f.depth.saturating_add(1);
        f.secret |= self.secret;
        f.unknown |= self.unknown;
        f
    }

    /// This value and everything inside it defined at `def`. Walks (and unshares) the whole tree: the caller checks
    /// its size first.
    pub fn with_def_deep(mut self, def: &Def) -> Value {
        self.set_def_deep(def);
        self
    }
    fn set_def_deep(&mut self, def: &Def) {
        self.def = Some(def.clone());
        match &mut self.repr {
            Repr::Array(items) => items.update(|v| v.set_def_deep(def)),
            Repr::Object(map) => map.update(|v| v.set_def_deep(def)),
            _ => {}
        }
    }

    /// This value with itself and everything inside it marked secret. Walks (and unshares) what is not secret yet:
    /// the caller checks its size first.
    pub fn deep_secret(mut self) -> Value {
        self.mark_secret();
        self
    }
    fn mark_secret(&mut self) {
        self.secret = true;
        match &mut self.repr {
            Repr::Array(items) => items.update(Value::mark_secret),
            Repr::Object(map) => map.update(Value::mark_secret),
            _ => {}
        }
    }

    pub fn contains_secrets(&self) -> bool {
        self.facts().secret
    }
    pub fn contains_unknowns(&self) -> bool {
        self.facts().unknown
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

    /// Plain JSON: secrets become `"[secret]"` when `redact`, unknowns `"[unknown]"`. Builds the whole tree: see
    /// [`Value::facts`] for its size.
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
            Repr::String(s) => Json::String(s.to_string()),
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
            Json::String(s) => Repr::String(Arc::from(s.as_str())),
            Json::Array(items) => Repr::Array(items.iter().map(Value::from_json).collect()),
            Json::Object(map) => Repr::Object(map.iter().map(|(k, v)| (k.clone(), Value::from_json(v))).collect()),
        })
    }

    /// A known value from plain JSON whose parts are made secret (as a whole) where `schema` says `"secret": true`,
    /// following `properties`, `additionalProperties` and `items` (a provider's outputs, typed by its output
    /// schema). Bounded by the JSON's own depth.
    pub fn from_json_marked(j: &Json, schema: &Json) -> Value {
        static ANY: Json = Json::Bool(true);
        if schema.get("secret").and_then(Json::as_bool) == Some(true) {
            return Value::from_json(j).deep_secret();
        }
        Value::new(match j {
            Json::Array(items) => {
                let item = schema.get("items").unwrap_or(&ANY);
                Repr::Array(items.iter().map(|v| Value::from_json_marked(v, item)).collect())
            }
            Json::Object(map) => Repr::Object(
                map.iter()
                    .map(|(k, v)| {
                        let sub = schema
                            .get("properties")
                            .and_then(|p| p.get(k))
                            .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
                            .unwrap_or(&ANY);
                        (k.clone(), Value::from_json_marked(v, sub))
                    })
                    .collect(),
            ),
            other => return Value::from_json(other),
        })
    }

    /// `fn::toString`: scalars as text; lists and objects as Go-quoted `"a","b"` / `"k"="v"` joined by commas.
    pub fn to_text(&self) -> String {
        self.to_text_within(usize::MAX).unwrap_or_default()
    }

    /// [`Value::to_text`], or `None` as soon as the text built — the result and every piece quoted on the way, since
    /// nested lists quote their items' text again at each level — exceeds `limit` bytes.
    pub fn to_text_within(&self, limit: usize) -> Option<String> {
        let mut left = limit;
        self.text_into(&mut left)
    }

    fn text_into(&self, left: &mut usize) -> Option<String> {
        let take = |s: String, left: &mut usize| {
            *left = left.checked_sub(s.len())?;
            Some(s)
        };
        if self.unknown {
            return take("[unknown]".into(), left);
        }
        match &self.repr {
            Repr::Null => Some(String::new()),
            Repr::Bool(b) => take(b.to_string(), left),
            Repr::Number(n) => take(n.to_string(), left),
            Repr::String(s) => {
                *left = left.checked_sub(s.len())?;
                Some(s.to_string())
            }
            Repr::Array(items) => {
                let mut out = String::new();
                for (i, v) in items.iter().enumerate() {
                    let inner = v.text_into(left)?;
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&take(go_quote(&inner), left)?);
                }
                Some(out)
            }
            Repr::Object(map) => {
                let inherited: std::collections::BTreeSet<&String> = self.inherited.iter().collect();
                let mut out = String::new();
                for (k, v) in map.iter().filter(|(k, _)| !inherited.contains(k)) {
                    let inner = v.text_into(left)?;
                    if !out.is_empty() {
                        out.push(',');
                    }
                    let piece = format!("{}={}", go_quote(k), go_quote(&inner));
                    out.push_str(&take(piece, left)?);
                }
                Some(out)
            }
        }
    }

    /// `fn::toJSON`: compact JSON with sorted keys and Go's HTML-safe escapes.
    pub fn to_json_text(&self) -> String {
        self.to_json_text_within(usize::MAX).unwrap_or_default()
    }

    /// [`Value::to_json_text`], or `None` as soon as the text exceeds `limit` bytes.
    pub fn to_json_text_within(&self, limit: usize) -> Option<String> {
        let mut out = Limited { buf: Vec::new(), limit };
        serde_json::to_writer(&mut out, &Plain(self)).ok()?;
        let text = String::from_utf8(out.buf).ok()?;
        let text = text
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029");
        (text.len() <= limit).then_some(text)
    }
}

/// A value serialised as [`Value::to_json`]`(false)` would be, without building the JSON tree first.
struct Plain<'a>(&'a Value);

impl Serialize for Plain<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.unknown {
            return s.serialize_str("[unknown]");
        }
        match &v.repr {
            Repr::Null => s.serialize_unit(),
            Repr::Bool(b) => s.serialize_bool(*b),
            Repr::Number(n) => n.serialize(s),
            Repr::String(t) => s.serialize_str(t),
            Repr::Array(items) => s.collect_seq(items.iter().map(Plain)),
            Repr::Object(map) => s.collect_map(map.iter().map(|(k, v)| (k, Plain(v)))),
        }
    }
}

/// A buffer that refuses to grow past `limit` bytes.
struct Limited {
    buf: Vec<u8>,
    limit: usize,
}

impl io::Write for Limited {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            return Err(io::Error::other("too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `s` in double quotes: `"`, `\`, newline, carriage return and tab escaped with a backslash, every other
/// character through `other` (`None`: as it is). Shared by [`go_quote`] and the YAML writer of `crypt`.
pub(crate) fn double_quoted(s: &str, other: impl Fn(char) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => match other(c) {
                Some(escaped) => out.push_str(&escaped),
                None => out.push(c),
            },
        }
    }
    out.push('"');
    out
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    double_quoted(s, |c| match c {
        '\u{7}' => Some("\\a".to_owned()),
        '\u{8}' => Some("\\b".to_owned()),
        '\u{c}' => Some("\\f".to_owned()),
        '\u{b}' => Some("\\v".to_owned()),
        c if (c as u32) < 0x20 || c == '\u{7f}' => Some(format!("\\x{:02x}", c as u32)),
        c if c.is_control() => Some(format!("\\u{:04x}", c as u32)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_secret_where_their_schema_says() {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "token": {"type": "string", "secret": true},
                "nested": {"type": "object", "properties": {"key": {"secret": true}}},
                "list": {"type": "array", "items": {"type": "object", "properties": {"pw": {"secret": true}}}},
            },
            "additionalProperties": {"type": "string", "secret": true},
        });
        let j = serde_json::json!({
            "id": "a", "token": "t", "nested": {"key": "k", "other": "o"},
            "list": [{"pw": "p", "name": "n"}], "extra": "e",
        });
        let v = Value::from_json_marked(&j, &schema);
        let Repr::Object(m) = &v.repr else { panic!("an object") };
        let field = |k: &str| m.iter().find(|(n, _)| n.as_str() == k).map(|(_, v)| v.clone()).unwrap();
        assert!(!v.secret && !field("id").secret && field("token").secret && field("extra").secret);
        let nested = field("nested");
        assert!(!nested.secret && nested.contains_secrets());
        assert_eq!(
            nested.to_json(true),
            serde_json::json!({"key": "[secret]", "other": "o"})
        );
        assert_eq!(
            field("list").to_json(true),
            serde_json::json!([{"pw": "[secret]", "name": "n"}])
        );
        // Plain JSON is unchanged by redaction-free rendering.
        assert_eq!(v.to_json(false), j);
    }

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

    /// A list of two references to a list of two references to …, 64 levels: a few hundred values in memory
    /// standing for 2^65 rendered ones. Facts answer at once; walks stop at their limit.
    #[test]
    fn shared_values_are_answered_from_facts() {
        let mut v = Value::string("s").deep_secret();
        for _ in 0..64 {
            v = Value::array(vec![v.clone(), v.clone()]);
        }
        let f = v.facts();
        assert_eq!((f.nodes, f.depth, f.secret, f.unknown), (u64::MAX, 65, true, false));
        assert!(v.contains_secrets() && !v.contains_unknowns());
        assert_eq!(format!("{v:?}"), format!("<array of {} values>", u64::MAX));
        assert_eq!(v.to_text_within(1 << 20), None);
        assert_eq!(v.to_json_text_within(1 << 20), None);
        assert!(v == v.clone());
        let small = Value::array(vec![Value::string("a"), Value::string("b")]);
        assert_eq!(small.facts().bytes, 2);
        assert_eq!(small.to_text_within(9).as_deref(), Some(r#""a","b""#));
        assert_eq!(small.to_text_within(5), None);
        assert_eq!(small.to_json_text_within(9).as_deref(), Some(r#"["a","b"]"#));
        assert_eq!(small.to_json_text_within(8), None);
    }

    #[test]
    fn marking_updates_facts() {
        let inner = Value::array(vec![Value::string("x")]);
        let outer = Value::object(BTreeMap::from([("k".to_string(), inner.clone())]));
        assert!(!outer.contains_secrets());
        let marked = outer.clone().deep_secret();
        assert!(marked.contains_secrets());
        let Repr::Object(m) = &marked.repr else { panic!() };
        let Repr::Array(items) = &m["k"].repr else { panic!() };
        assert!(items[0].secret);
        // The original, shared before marking, is unchanged.
        assert!(!outer.contains_secrets() && !inner.contains_secrets());
    }
}
