//! The JSON Schema subset the environment language uses for builtin arguments and provider inputs and outputs,
//! validated against evaluated values with ESC's messages. An unknown value is checked by its own schema, as far as
//! types allow. Errors come back with the path inside the value they concern, so the evaluator can point at the
//! sub-expression that produced it.
//!
//! A check walks the value (and, for `anyOf`/`oneOf`, walks it again per branch): it is counted in steps against the
//! caller's budget, and gives up when the budget runs out, so a large shared value or a many-branched schema costs
//! bounded work.

use std::collections::HashMap;

use serde_json::{Value as Json, json};

use super::diag::Seg;
use super::value::{Repr, Value};

/// The deepest schema nesting followed (guards against `$ref` loops).
const MAX_DEPTH: usize = 64;

/// One validation error: where inside the value, and what.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    pub at: Vec<Seg>,
    pub message: String,
}

/// Validates `value` against `schema`; `schema` is also the document `$ref`s resolve in.
pub fn validate(value: &Value, schema: &Json) -> Vec<Violation> {
    let mut steps = u64::MAX;
    validate_within(value, schema, &mut steps).unwrap_or_default()
}

/// [`validate`], taking one step from `steps` per value visited (and the size of every value compared with a
/// `const` or `enum`); `None` when the steps run out first.
pub fn validate_within(value: &Value, schema: &Json, steps: &mut u64) -> Option<Vec<Violation>> {
    let mut v = Validator {
        root: schema,
        out: Vec::new(),
        steps: *steps,
        exhausted: false,
        patterns: HashMap::new(),
    };
    v.value(value, schema, &mut Vec::new(), 0);
    *steps = v.steps;
    (!v.exhausted).then_some(v.out)
}

/// The schema of `key` inside values of `schema`.
pub fn property(schema: &Json, root: &Json, key: &str) -> Json {
    let s = resolve(schema, root);
    if let Some(p) = s.get("properties").and_then(|p| p.get(key)) {
        return p.clone();
    }
    match s.get("additionalProperties") {
        Some(a) => a.clone(),
        None => Json::Bool(true),
    }
}

/// The schema of item `index` inside values of `schema`.
pub fn item(schema: &Json, root: &Json, index: usize) -> Json {
    let s = resolve(schema, root);
    if let Some(p) = s.get("prefixItems").and_then(|p| p.get(index)) {
        return p.clone();
    }
    match s.get("items") {
        Some(Json::Bool(false)) | None => Json::Bool(true),
        Some(i) => i.clone(),
    }
}

/// The single JSON type a schema requires, if it names one.
pub fn type_of<'s>(schema: &'s Json, root: &'s Json) -> Option<&'s str> {
    resolve(schema, root)
        .get("type")
        .and_then(Json::as_str)
        .filter(|t| !t.is_empty())
}

fn resolve<'s>(schema: &'s Json, root: &'s Json) -> &'s Json {
    let mut s = schema;
    for _ in 0..MAX_DEPTH {
        match s.get("$ref").and_then(Json::as_str) {
            Some(r) => match r.strip_prefix("#/").and_then(|p| root.pointer(&format!("/{p}"))) {
                Some(target) => s = target,
                None => return s,
            },
            None => return s,
        }
    }
    s
}

fn number(j: &Json) -> Option<f64> {
    j.as_f64()
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "integer" => matches!(&v.repr, Repr::Number(n) if n.is_i64() || n.is_u64()),
        t => t == v.type_name(),
    }
}

struct Validator<'s> {
    root: &'s Json,
    out: Vec<Violation>,
    /// Steps left, and whether they ran out.
    steps: u64,
    exhausted: bool,
    /// Compiled `pattern`s (`None`: not a valid expression).
    patterns: HashMap<&'s str, Option<regex::Regex>>,
}

impl<'s> Validator<'s> {
    /// A validator for one branch of `anyOf`/`oneOf`, sharing this one's steps; give it back with [`Self::join`].
    fn branch(&mut self) -> Validator<'s> {
        Validator {
            root: self.root,
            out: Vec::new(),
            steps: self.steps,
            exhausted: self.exhausted,
            patterns: std::mem::take(&mut self.patterns),
        }
    }

    /// Takes back what a branch used; returns its violations.
    fn join(&mut self, branch: Validator<'s>) -> Vec<Violation> {
        self.steps = branch.steps;
        self.exhausted |= branch.exhausted;
        self.patterns = branch.patterns;
        branch.out
    }

    /// Takes `n` steps; `false` once they have run out.
    fn take(&mut self, n: u64) -> bool {
        match self.steps.checked_sub(n) {
            Some(left) if !self.exhausted => {
                self.steps = left;
                true
            }
            _ => {
                self.exhausted = true;
                false
            }
        }
    }

    fn err(&mut self, at: &[Seg], message: String) {
        self.out.push(Violation {
            at: at.to_vec(),
            message,
        });
    }

    fn value(&mut self, v: &Value, schema: &'s Json, at: &mut Vec<Seg>, depth: usize) {
        if depth > MAX_DEPTH || !self.take(1) {
            return;
        }
        let s = resolve(schema, self.root);
        let obj = match s {
            Json::Bool(true) => return,
            Json::Bool(false) => return self.err(at, "no value is allowed here".into()),
            Json::Object(o) => o,
            _ => return,
        };
        if v.unknown {
            return self.unknown(v, s, at, depth);
        }
        if let Some(any) = obj.get("anyOf").and_then(Json::as_array) {
            let mut errs = Vec::new();
            let mut ok = false;
            for sub in any {
                let mut inner = self.branch();
                inner.value(v, sub, at, depth + 1);
                let out = self.join(inner);
                ok |= out.is_empty();
                errs.extend(out);
            }
            if !ok {
                self.out.extend(errs);
                self.err(at, "at least one subschema must match".into());
            }
        }
        if let Some(one) = obj.get("oneOf").and_then(Json::as_array) {
            let mut errs = Vec::new();
            let mut passed = 0;
            for sub in one {
                let mut inner = self.branch();
                inner.value(v, sub, at, depth + 1);
                let out = self.join(inner);
                passed += usize::from(out.is_empty());
                errs.extend(out);
            }
            if passed != 1 {
                self.out.extend(errs);
                self.err(at, "exactly one subschema must match".into());
            }
        }
        if let Some(all) = obj.get("allOf").and_then(Json::as_array) {
            for sub in all {
                self.value(v, sub, at, depth + 1);
            }
        }
        if (obj.contains_key("const") || obj.contains_key("enum")) && !self.take(v.facts().nodes) {
            return;
        }
        if let Some(c) = obj.get("const")
            && v.to_json(false) != *c
        {
            self.err(at, format!("expected {}", compact(c)));
        }
        if let Some(e) = obj.get("enum").and_then(Json::as_array)
            && !e.contains(&v.to_json(false))
        {
            self.err(at, format!("expected one of {}", compact(&Json::Array(e.clone()))));
        }
        if let Some(ty) = obj.get("type").and_then(Json::as_str).filter(|t| !t.is_empty())
            && !type_matches(ty, v)
        {
            return self.err(at, format!("expected {ty}, got {}", v.type_name()));
        }
        match &v.repr {
            Repr::Number(n) => {
                let x = n.as_f64().unwrap_or(0.0);
                if let Some(m) = obj.get("multipleOf").and_then(number)
                    && m != 0.0
                    && (x / m).fract() != 0.0
                {
                    self.err(at, format!("expected a multiple of {}", obj["multipleOf"]));
                }
                if let Some(m) = obj.get("minimum").and_then(number)
                    && x < m
                {
                    self.err(
                        at,
                        format!("expected a number greater than or equal to {}", obj["minimum"]),
                    );
                }
                if let Some(m) = obj.get("exclusiveMinimum").and_then(number)
                    && x <= m
                {
                    self.err(
                        at,
                        format!("expected a number greater than {}", obj["exclusiveMinimum"]),
                    );
                }
                if let Some(m) = obj.get("maximum").and_then(number)
                    && x > m
                {
                    // The missing space is ESC's.
                    self.err(at, format!("expected a number less than or equal to{}", obj["maximum"]));
                }
                if let Some(m) = obj.get("exclusiveMaximum").and_then(number)
                    && x >= m
                {
                    self.err(at, format!("expected a number less than {}", obj["exclusiveMaximum"]));
                }
            }
            Repr::String(text) => {
                let len = text.chars().count() as u64;
                if let Some(m) = obj.get("minLength").and_then(Json::as_u64)
                    && len < m
                {
                    self.err(at, format!("expected a string of at least length {m}"));
                }
                if let Some(m) = obj.get("maxLength").and_then(Json::as_u64)
                    && len > m
                {
                    self.err(at, format!("expected a string of at most length {m}"));
                }
                if let Some(p) = obj.get("pattern").and_then(Json::as_str)
                    && let Some(re) = self.patterns.entry(p).or_insert_with(|| regex::Regex::new(p).ok())
                    && !re.is_match(text)
                {
                    self.err(at, format!("string must match the pattern {p:?}"));
                }
            }
            Repr::Array(items) => {
                let n = items.len() as u64;
                if let Some(m) = obj.get("minItems").and_then(Json::as_u64)
                    && n < m
                {
                    self.err(at, format!("expected an array with at least {m} items"));
                }
                if let Some(m) = obj.get("maxItems").and_then(Json::as_u64)
                    && n > m
                {
                    self.err(at, format!("expected an array with at most {m} items"));
                }
                let prefix = obj.get("prefixItems").and_then(Json::as_array);
                for (i, it) in items.iter().enumerate() {
                    let sub = match prefix.and_then(|p| p.get(i)) {
                        Some(p) => p,
                        None if prefix.is_some() => continue,
                        None => match obj.get("items") {
                            Some(s) => s,
                            None => continue,
                        },
                    };
                    at.push(Seg::Index(i));
                    self.value(it, sub, at, depth + 1);
                    at.pop();
                }
            }
            Repr::Object(map) => {
                let n = map.len() as u64;
                if let Some(m) = obj.get("minProperties").and_then(Json::as_u64)
                    && n < m
                {
                    self.err(at, format!("expected an object with at least {m} properties"));
                }
                if let Some(m) = obj.get("maxProperties").and_then(Json::as_u64)
                    && n > m
                {
                    self.err(at, format!("expected an object with at most {m} properties"));
                }
                if let Some(req) = obj.get("required").and_then(Json::as_array) {
                    let missing: Vec<&str> = req
                        .iter()
                        .filter_map(Json::as_str)
                        .filter(|k| !map.contains_key(*k))
                        .collect();
                    if !missing.is_empty() {
                        self.err(at, format!("missing required properties: {}", missing.join(", ")));
                    }
                }
                if let Some(dep) = obj.get("dependentRequired").and_then(Json::as_object) {
                    for (k, needs) in dep {
                        if !map.contains_key(k) {
                            continue;
                        }
                        let missing: Vec<&str> = needs
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Json::as_str)
                            .filter(|n| !map.contains_key(*n))
                            .collect();
                        if !missing.is_empty() {
                            self.err(at, format!("missing required properties: {}", missing.join(", ")));
                        }
                    }
                }
                let props = obj.get("properties").and_then(Json::as_object);
                for (k, pv) in map {
                    let sub = match props.and_then(|p| p.get(k)) {
                        Some(s) => s,
                        None => match obj.get("additionalProperties") {
                            Some(s) => s,
                            None => continue,
                        },
                    };
                    at.push(Seg::Key(k.clone()));
                    if matches!(sub, Json::Bool(false)) {
                        self.err(at, format!("unknown property {k:?}"));
                    } else {
                        self.value(pv, sub, at, depth + 1);
                    }
                    at.pop();
                }
            }
            _ => {}
        }
    }

    /// An unknown value: what its own schema says about it against the expected one.
    fn unknown(&mut self, v: &Value, s: &'s Json, at: &mut Vec<Seg>, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        let own = v.schema.as_deref().cloned().unwrap_or(Json::Bool(true));
        let own_root = own.clone();
        let got = type_of(&own, &own_root).map(str::to_owned);
        for key in ["anyOf", "oneOf"] {
            if let Some(subs) = s.get(key).and_then(Json::as_array) {
                let mut errs = Vec::new();
                let mut ok = false;
                for sub in subs {
                    if !self.take(1) {
                        return;
                    }
                    let mut inner = self.branch();
                    inner.unknown(v, sub, at, depth + 1);
                    let out = self.join(inner);
                    ok |= out.is_empty();
                    errs.extend(out);
                }
                if !ok {
                    self.out.extend(errs);
                    self.err(at, "at least one subschema must match".into());
                }
            }
        }
        let want = type_of(s, self.root);
        if let (Some(want), Some(got)) = (want, got.as_deref())
            && want != got
            && !(want == "number" && got == "integer")
        {
            return self.err(at, format!("expected {want}, got {got}"));
        }
        if let Some(dep) = s.get("dependentRequired").and_then(Json::as_object) {
            let props = own.get("properties").and_then(Json::as_object);
            let required: Vec<&str> = own
                .get("required")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .filter_map(Json::as_str)
                .collect();
            for (k, needs) in dep {
                if props.is_some_and(|p| p.contains_key(k)) {
                    for n in needs.as_array().into_iter().flatten().filter_map(Json::as_str) {
                        if !required.contains(&n) {
                            self.err(at, format!("{n}: missing required property"));
                        }
                    }
                }
            }
        }
    }
}

fn compact(j: &Json) -> String {
    serde_json::to_string(j).unwrap_or_default()
}

/// The schema of a known value: objects and tuples of what they hold, literals as `const`.
pub fn of_value(v: &Value) -> Json {
    if v.unknown {
        return v.schema.as_deref().cloned().unwrap_or(Json::Bool(true));
    }
    match &v.repr {
        Repr::Null => json!({"type": "null"}),
        Repr::Bool(b) => json!({"type": "boolean", "const": b}),
        Repr::Number(n) => json!({"type": "number", "const": n}),
        Repr::String(s) => json!({"type": "string", "const": &**s}),
        Repr::Array(items) => {
            json!({"type": "array", "prefixItems": items.iter().map(of_value).collect::<Vec<_>>(), "items": false})
        }
        Repr::Object(map) => json!({
            "type": "object",
            "properties": map.iter().map(|(k, v)| (k.clone(), of_value(v))).collect::<serde_json::Map<_, _>>(),
            "required": map.keys().collect::<Vec<_>>(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(v: Json, s: Json) -> Vec<String> {
        validate(&Value::from_json(&v), &s)
            .into_iter()
            .map(|e| e.message)
            .collect()
    }

    #[test]
    fn messages_match_esc() {
        assert_eq!(
            msgs(json!(1), json!({"type": "string"})),
            ["expected string, got number"]
        );
        assert_eq!(
            msgs(json!(2), json!({"type": "number", "maximum": 1})),
            ["expected a number less than or equal to1"]
        );
        assert_eq!(
            msgs(json!({"a": 1}), json!({"type": "object", "required": ["b"]})),
            ["missing required properties: b"]
        );
        let any = msgs(json!(true), json!({"anyOf": [{"type": "string"}, {"type": "number"}]}));
        assert_eq!(any.len(), 3);
        assert!(msgs(json!("foo1"), json!({"type": "string", "pattern": "^foo[0-9]+$"})).is_empty());
        let nested = validate(
            &Value::from_json(&json!(["a", [1]])),
            &json!({"prefixItems": [{"type": "string"}, {"items": {"type": "string"}}]}),
        );
        assert_eq!(nested[0].at, vec![Seg::Index(1), Seg::Index(0)]);
    }
}
