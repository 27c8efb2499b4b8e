//! Wire types of ESC's environments API (`/api/esc/environments`): evaluated values, diagnostics, listings,
//! revisions and tags, as the official clients read them; the server writes them, the CLI reads them.
//!
//! Rule: field order is the order of the JSON the server has always written (these shapes were `json!` literals,
//! whose keys serde_json sorts), so each struct lists its fields alphabetically by JSON name and the bytes stay the
//! same; the tests pin them. Client needs honoured here (conformance/esc-api/CLIENT-NOTES.md): every range carries
//! `environment`; nested nulls are an explicit `"value": null`; open results carry `properties` only (no `exprs`,
//! whose Go shape breaks the Python SDK).

use std::collections::BTreeMap;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value as Json;

use crate::core::env::Diagnostic;
use crate::core::env::diag::Span;
use crate::core::env::path::{PropertyPath, Seg};
use crate::core::env::value::{Repr, Value};

/// A position in a definition: 1-based line and column, 0-based byte offset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pos {
    /// Byte offset, from 0.
    #[serde(default)]
    pub byte: u64,
    /// Column, from 1.
    #[serde(default)]
    pub column: u64,
    /// Line, from 1.
    #[serde(default)]
    pub line: u64,
}

/// A `Range`: `environment` is always present (empty when unknown).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// Where it begins.
    pub begin: Pos,
    /// Where it ends.
    #[serde(default)]
    pub end: Pos,
    /// The environment whose definition it is in (empty: the one being written).
    #[serde(default)]
    pub environment: String,
}

impl Range {
    /// The range `span` of the document of `env`.
    pub fn new(env: &str, span: &Span) -> Range {
        let pos = |p: &crate::core::env::diag::Pos| Pos {
            byte: p.byte as u64,
            column: p.column as u64,
            line: p.line as u64,
        };
        Range {
            begin: pos(&span.begin),
            end: pos(&span.end),
            environment: env.to_owned(),
        }
    }
}

/// ESC's `EnvironmentDiagnostic`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentDiagnostic {
    /// The property path it concerns, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Where in the definition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<Range>,
    /// What is wrong.
    #[serde(default)]
    pub summary: String,
}

impl From<&Diagnostic> for EnvironmentDiagnostic {
    fn from(d: &Diagnostic) -> EnvironmentDiagnostic {
        EnvironmentDiagnostic {
            path: (!d.path.is_empty()).then(|| d.path.clone()),
            range: d.subject.as_ref().map(|(env, span)| Range::new(env, span)),
            summary: d.summary.clone(),
        }
    }
}

/// A diagnostics list, as JSON.
pub fn diagnostics(ds: &[Diagnostic]) -> Json {
    let typed: Vec<EnvironmentDiagnostic> = ds.iter().map(EnvironmentDiagnostic::from).collect();
    serde_json::to_value(typed).unwrap_or_default()
}

/// `trace` of a [`Value`]: where it was defined.
#[derive(Serialize)]
struct Trace {
    #[serde(skip_serializing_if = "Option::is_none")]
    def: Option<Range>,
}

/// One evaluated value as ESC's `Value`: `{"secret"?, "trace", "unknown"?, "value"}`; containers hold `Value`s
/// (an unknown value's `value` is null). Written straight from the evaluator's value, with no JSON tree between.
pub struct EscValue<'a>(pub &'a Value);

/// The inner `value` of an [`EscValue`].
struct Inner<'a>(&'a Value);

impl Serialize for Inner<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0.repr {
            _ if self.0.unknown => s.serialize_unit(),
            Repr::Null => s.serialize_unit(),
            Repr::Bool(b) => s.serialize_bool(*b),
            Repr::Number(n) => n.serialize(s),
            Repr::String(t) => s.serialize_str(t),
            Repr::Array(items) => s.collect_seq(items.iter().map(EscValue)),
            Repr::Object(map) => s.collect_map(map.iter().map(|(k, v)| (k, EscValue(v)))),
        }
    }
}

impl Serialize for EscValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        let mut m = s.serialize_map(None)?;
        if v.secret {
            m.serialize_entry("secret", &true)?;
        }
        let def = v.def.as_ref().map(|d| Range::new(&d.env, &d.span));
        m.serialize_entry("trace", &Trace { def })?;
        if v.unknown {
            m.serialize_entry("unknown", &true)?;
        }
        m.serialize_entry("value", &Inner(v))?;
        m.end()
    }
}

/// One evaluated value as JSON (see [`EscValue`]).
pub fn value(v: &Value) -> Json {
    serde_json::to_value(EscValue(v)).unwrap_or_default()
}

/// The `properties` of an `Environment`: name → [`EscValue`].
pub struct Properties<'a>(pub Option<&'a BTreeMap<String, Value>>);

impl Serialize for Properties<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.into_iter().flatten().map(|(k, v)| (k, EscValue(v))))
    }
}

/// The `properties` of an `Environment` as JSON.
pub fn properties(props: Option<&BTreeMap<String, Value>>) -> Json {
    serde_json::to_value(Properties(props)).unwrap_or_default()
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
    serde_json::to_writer(&mut out, &Properties(props)).ok()?;
    Some(out.0)
}

// ---------------------------------------------------------------------------------------------------------------
// Responses of the environments API

/// `{}`: the answer of a create or a delete (200 with a JSON body: the TypeScript SDK's wrapper accepts only 200).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Empty {}

/// `PATCH …/{org}/{project}/{env}` response.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct UpdateResponse {
    /// Always empty on success (a definition with errors is refused with them).
    pub diagnostics: Vec<EnvironmentDiagnostic>,
}

/// `POST …/{org}/{project}/{env}/rotate` request: the property paths (relative to `values`, `a.b[0]`) of the
/// `fn::rotate` calls to rotate; none or `null`: all of them. Pulumi's client sends the field as `Paths`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    #[serde(default, alias = "Paths")]
    pub paths: Option<Vec<String>>,
}

/// `POST …/rotate` response.
#[derive(Debug, Serialize, Deserialize)]
pub struct RotateResponse {
    /// Always empty on success (a rotation with errors is refused with them).
    #[serde(default)]
    pub diagnostics: Vec<EnvironmentDiagnostic>,
    #[serde(rename = "secretRotationEvent")]
    pub secret_rotation_event: SecretRotationEvent,
}

/// One rotation of an environment, in Pulumi's shape.
#[derive(Debug, Serialize, Deserialize)]
pub struct SecretRotationEvent {
    pub id: String,
    #[serde(rename = "environmentId")]
    pub environment_id: String,
    pub created: String,
    #[serde(rename = "preRotationRevision")]
    pub pre_rotation_revision: i64,
    #[serde(rename = "postRotationRevision", default, skip_serializing_if = "Option::is_none")]
    pub post_rotation_revision: Option<i64>,
    #[serde(rename = "userID")]
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<String>,
    /// `succeeded` or `failed`.
    pub status: String,
    pub rotations: Vec<SecretRotation>,
}

/// One `fn::rotate` call rotated.
#[derive(Debug, Serialize, Deserialize)]
pub struct SecretRotation {
    pub id: String,
    /// The call's property path (relative to `values`).
    #[serde(rename = "environmentPath")]
    pub environment_path: String,
    pub status: String,
}

/// `POST …/open` response.
#[derive(Debug, Serialize, Deserialize)]
pub struct OpenResponse {
    /// The open session's id.
    pub id: String,
}

/// One environment of a listing.
#[derive(Debug, Serialize, Deserialize)]
pub struct OrgEnvironment {
    /// Creation time, RFC 3339.
    pub created: String,
    /// Last write, RFC 3339.
    pub modified: String,
    /// Its name in its project.
    pub name: String,
    /// Its org.
    pub organization: String,
    /// Its project.
    pub project: String,
}

/// `GET /api/esc/environments[/{org}]` response.
#[derive(Debug, Serialize, Deserialize)]
pub struct OrgEnvironments {
    /// One page of environments.
    pub environments: Vec<OrgEnvironment>,
    /// Where the next page starts; absent on the last page.
    #[serde(rename = "nextToken", default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// A retracted revision's retraction.
#[derive(Debug, Serialize, Deserialize)]
pub struct Retracted {
    /// When, RFC 3339.
    pub at: String,
    /// Who.
    #[serde(rename = "byLogin")]
    pub by_login: String,
    /// Why.
    pub reason: String,
    /// The revision that reads of it get instead.
    pub replacement: i64,
}

/// One revision of `GET …/versions`.
#[derive(Debug, Serialize, Deserialize)]
pub struct EnvironmentRevision {
    /// When it was written, RFC 3339.
    pub created: String,
    /// Who wrote it.
    #[serde(rename = "creatorLogin")]
    pub creator_login: String,
    /// Who wrote it (Sesame has no display names: the login).
    #[serde(rename = "creatorName")]
    pub creator_name: String,
    /// Its number.
    pub number: i64,
    /// Present when it was retracted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retracted: Option<Retracted>,
    /// Its tags (`latest` first on the head revision).
    pub tags: Vec<String>,
}

/// A revision tag.
#[derive(Debug, Serialize, Deserialize)]
pub struct RevisionTag {
    /// When it was made, RFC 3339.
    pub created: String,
    /// Who last moved it.
    #[serde(rename = "editorLogin")]
    pub editor_login: String,
    /// Who last moved it (the login).
    #[serde(rename = "editorName")]
    pub editor_name: String,
    /// When it was last moved, RFC 3339.
    pub modified: String,
    /// Its name.
    pub name: String,
    /// The revision it names.
    pub revision: i64,
}

/// `GET …/versions/tags` response.
#[derive(Debug, Serialize, Deserialize)]
pub struct RevisionTags {
    /// Where the next page starts (empty on the last page).
    #[serde(rename = "nextToken")]
    pub next_token: String,
    /// One page of tags (`latest` first on the first page).
    pub tags: Vec<RevisionTag>,
}

/// An environment (key/value) tag.
#[derive(Debug, Serialize, Deserialize)]
pub struct EnvironmentTag {
    /// When it was made, RFC 3339.
    pub created: String,
    /// Who last changed it.
    #[serde(rename = "editorLogin")]
    pub editor_login: String,
    /// Who last changed it (the login).
    #[serde(rename = "editorName")]
    pub editor_name: String,
    /// When it was last changed, RFC 3339.
    pub modified: String,
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// `GET …/tags` response.
#[derive(Debug, Serialize, Deserialize)]
pub struct EnvironmentTags {
    /// Where the next page starts (empty on the last page).
    #[serde(rename = "nextToken")]
    pub next_token: String,
    /// One page of tags, by name.
    pub tags: BTreeMap<String, EnvironmentTag>,
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
    use std::sync::Arc;

    use serde_json::{Map, json};

    use super::*;
    use crate::core::env::diag::{Pos as SrcPos, Severity};
    use crate::core::env::value::Def;

    /// The renderings as they were written before these types, with `json!` and `Map`: the reference the typed
    /// shapes must match byte for byte.
    mod before {
        use super::*;

        fn pos(p: &SrcPos) -> Json {
            json!({"line": p.line, "column": p.column, "byte": p.byte})
        }

        pub fn range(env: &str, span: &Span) -> Json {
            json!({"environment": env, "begin": pos(&span.begin), "end": pos(&span.end)})
        }

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
    }

    fn span(line: usize) -> Span {
        let p = |column, byte| SrcPos { line, column, byte };
        Span {
            begin: p(3, 17),
            end: p(9, 23),
        }
    }

    fn text<T: Serialize>(t: &T) -> String {
        serde_json::to_string(t).unwrap()
    }

    #[test]
    fn values_render_byte_for_byte_as_before() {
        let def = |v: Value, line| Value {
            def: Some(Def {
                env: Arc::from("proj/env"),
                span: span(line),
            }),
            ..v
        };
        let secret = Value {
            secret: true,
            ..def(Value::new(Repr::String(Arc::from("pw \"q\" é"))), 2)
        };
        let unknown = Value {
            unknown: true,
            ..def(Value::new(Repr::String(Arc::from("x"))), 3)
        };
        let list = Value::new(Repr::array(vec![
            Value::null(),
            Value::new(Repr::Bool(true)),
            Value::new(Repr::Number(serde_json::Number::from_f64(1.5).unwrap())),
            Value::new(Repr::Number(7.into())),
            secret.clone(),
        ]));
        let root = def(
            Value::object(BTreeMap::from([
                ("b".to_owned(), list),
                ("a".to_owned(), unknown),
                ("Z".to_owned(), secret),
                ("".to_owned(), Value::object(BTreeMap::new())),
            ])),
            1,
        );
        assert_eq!(text(&EscValue(&root)), text(&before::value(&root)));
        assert_eq!(value(&root), before::value(&root));
        let props = BTreeMap::from([("k".to_owned(), root.clone()), ("j".to_owned(), Value::null())]);
        let whole = properties_text(Some(&props), usize::MAX).unwrap();
        let old: Map<String, Json> = props.iter().map(|(k, v)| (k.clone(), before::value(v))).collect();
        assert_eq!(String::from_utf8(whole).unwrap(), text(&old));
        assert_eq!(properties_text(None, 10).unwrap(), b"{}");
        assert!(properties_text(Some(&props), 40).is_none());
    }

    #[test]
    fn diagnostics_render_byte_for_byte_as_before() {
        let env: Arc<str> = Arc::from("a/b");
        let ds = [
            Diagnostic::error(
                &env,
                span(4),
                &crate::core::env::diag::DocPath::default().key("values").key("x y"),
                "bad",
            ),
            Diagnostic {
                severity: Severity::Warning,
                summary: "no path".into(),
                subject: Some((env.clone(), span(5))),
                path: String::new(),
            },
            Diagnostic {
                severity: Severity::Error,
                summary: "unreadable".into(),
                subject: None,
                path: String::new(),
            },
        ];
        let old = Json::Array(ds.iter().map(before::diagnostic).collect());
        assert_eq!(text(&diagnostics(&ds)), text(&old));
        // The CLI reads back what the server wrote.
        let back: Vec<EnvironmentDiagnostic> = serde_json::from_value(old).unwrap();
        assert_eq!(back[0].path.as_deref(), Some(r#"values["x y"]"#));
        assert_eq!(back[0].range.as_ref().unwrap().begin.line, 4);
        assert_eq!(back[2].range, None);
    }

    /// Each response type against the `json!` literal the handler wrote before.
    #[test]
    fn responses_render_byte_for_byte_as_before() {
        assert_eq!(text(&Empty {}), text(&json!({})));
        assert_eq!(text(&UpdateResponse::default()), text(&json!({"diagnostics": []})));
        assert_eq!(text(&OpenResponse { id: "s1".into() }), text(&json!({ "id": "s1" })));
        let env = OrgEnvironment {
            created: "c".into(),
            modified: "m".into(),
            name: "n".into(),
            organization: "o".into(),
            project: "p".into(),
        };
        let env_json = json!({"organization": "o", "project": "p", "name": "n", "created": "c", "modified": "m"});
        assert_eq!(text(&env), text(&env_json));
        let mut list = OrgEnvironments {
            environments: vec![env],
            next_token: None,
        };
        assert_eq!(text(&list), text(&json!({ "environments": [env_json] })));
        list.next_token = Some("t".into());
        assert_eq!(
            text(&list),
            text(&json!({ "environments": [env_json], "nextToken": "t" }))
        );
        let mut rev = EnvironmentRevision {
            created: "c".into(),
            creator_login: "u".into(),
            creator_name: "u".into(),
            number: 3,
            retracted: None,
            tags: vec!["latest".into(), "stable".into()],
        };
        let rev_json =
            json!({"number": 3, "created": "c", "creatorLogin": "u", "creatorName": "u", "tags": ["latest", "stable"]});
        assert_eq!(text(&rev), text(&rev_json));
        rev.retracted = Some(Retracted {
            at: "a".into(),
            by_login: "b".into(),
            reason: "r".into(),
            replacement: 2,
        });
        let mut retracted_json = rev_json.clone();
        retracted_json["retracted"] = json!({"replacement": 2, "at": "a", "byLogin": "b", "reason": "r"});
        assert_eq!(text(&rev), text(&retracted_json));
        let tag = RevisionTag {
            created: "c".into(),
            editor_login: "e".into(),
            editor_name: "e".into(),
            modified: "m".into(),
            name: "stable".into(),
            revision: 2,
        };
        let tag_json = json!({"name": "stable", "revision": 2, "created": "c", "modified": "m", "editorLogin": "e", "editorName": "e"});
        assert_eq!(text(&tag), text(&tag_json));
        let tags = RevisionTags {
            next_token: String::new(),
            tags: vec![tag],
        };
        assert_eq!(text(&tags), text(&json!({ "tags": [tag_json], "nextToken": "" })));
        let etag = EnvironmentTag {
            created: "c".into(),
            editor_login: "e".into(),
            editor_name: "e".into(),
            modified: "m".into(),
            name: "owner".into(),
            value: "v".into(),
        };
        let etag_json = json!({"name": "owner", "value": "v", "created": "c", "modified": "m", "editorLogin": "e", "editorName": "e"});
        assert_eq!(text(&etag), text(&etag_json));
        let etags = EnvironmentTags {
            next_token: "owner".into(),
            tags: BTreeMap::from([("owner".to_owned(), etag)]),
        };
        assert_eq!(
            text(&etags),
            text(&json!({ "tags": {"owner": etag_json}, "nextToken": "owner" }))
        );
    }

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
