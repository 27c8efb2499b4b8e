//! Projections of evaluated values for people and programs: YAML text of plain JSON, and the
//! `environmentVariables` projection as dotenv or POSIX shell lines, quoted so that a loader reads back the exact
//! value.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::value::{Repr, Value};

/// One environment variable of the `environmentVariables` projection; `value` is `None` when it is withheld (a
/// secret without `show_secrets`) or unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    pub value: Option<String>,
    pub why_withheld: Option<&'static str>,
}

/// Whether `name` is a portable environment-variable name.
pub fn valid_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The `environmentVariables` of evaluated `properties`, in name order. Invalid names are returned as errors.
pub fn environment_variables(properties: &BTreeMap<String, Value>, show_secrets: bool) -> (Vec<EnvVar>, Vec<String>) {
    let mut vars = Vec::new();
    let mut bad = Vec::new();
    let Some(Value {
        repr: Repr::Object(map),
        ..
    }) = properties.get("environmentVariables")
    else {
        return (vars, bad);
    };
    for (name, v) in map {
        if !valid_var_name(name) {
            bad.push(name.clone());
            continue;
        }
        let (value, why) = if v.contains_secrets() && !show_secrets {
            (None, Some("secret (use --show-secrets)"))
        } else if v.contains_unknowns() {
            (None, Some("unknown"))
        } else {
            match v.to_text_within(super::eval::MAX_VALUE_BYTES) {
                Some(text) => (Some(text), None),
                None => (None, Some("too large")),
            }
        };
        vars.push(EnvVar {
            name: name.clone(),
            value,
            why_withheld: why,
        });
    }
    (vars, bad)
}

/// `NAME='value'` for POSIX shells (`export` added by the caller if wanted): single quotes, with `'` as `'\''`.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// A dotenv value: single-quoted when that is exact (no `'` and no line break), else double-quoted with `\\`, `\"`,
/// `\n`, `\r` and `\$` escapes.
pub fn dotenv_quote(value: &str) -> String {
    if !value.contains(['\'', '\n', '\r']) {
        return format!("'{value}'");
    }
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '$' => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Block-style YAML for plain JSON. Strings are written plain when they read back as the same string, otherwise
/// JSON-quoted (a JSON string is a valid YAML double-quoted scalar).
pub fn to_yaml(j: &Json) -> String {
    let mut out = String::new();
    match j {
        Json::Object(m) if !m.is_empty() => yaml_object(m, 0, &mut out),
        Json::Array(a) if !a.is_empty() => yaml_array(a, 0, &mut out),
        other => {
            out.push_str(&yaml_scalar(other));
            out.push('\n');
        }
    }
    out
}

fn yaml_object(m: &serde_json::Map<String, Json>, indent: usize, out: &mut String) {
    for (k, v) in m {
        out.push_str(&" ".repeat(indent));
        out.push_str(&yaml_key(k));
        out.push(':');
        yaml_child(v, indent, out);
    }
}

fn yaml_array(a: &[Json], indent: usize, out: &mut String) {
    for v in a {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        yaml_child(v, indent, out);
    }
}

fn yaml_child(v: &Json, indent: usize, out: &mut String) {
    match v {
        Json::Object(m) if !m.is_empty() => {
            out.push('\n');
            yaml_object(m, indent + 2, out);
        }
        Json::Array(a) if !a.is_empty() => {
            out.push('\n');
            yaml_array(a, indent + 2, out);
        }
        other => {
            out.push(' ');
            out.push_str(&yaml_scalar(other));
            out.push('\n');
        }
    }
}

fn yaml_key(k: &str) -> String {
    if plain_safe(k) {
        k.to_owned()
    } else {
        serde_json::to_string(k).unwrap_or_default()
    }
}

fn yaml_scalar(j: &Json) -> String {
    match j {
        Json::String(s) if plain_safe(s) => s.clone(),
        Json::Object(_) => "{}".into(),
        Json::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}

/// Whether `s` can be written as a plain YAML scalar and read back as the same string.
fn plain_safe(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || " _-./+=@()".contains(c))
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '/')
        && !s.ends_with(' ')
        && !matches!(
            s,
            "true"
                | "True"
                | "TRUE"
                | "false"
                | "False"
                | "FALSE"
                | "null"
                | "Null"
                | "NULL"
                | "yes"
                | "no"
                | "on"
                | "off"
                | "Yes"
                | "No"
                | "On"
                | "Off"
                | "YES"
                | "NO"
                | "ON"
                | "OFF"
                | "y"
                | "n"
                | "Y"
                | "N"
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quoting_round_trips_in_principle() {
        assert_eq!(shell_quote("it's $HOME"), r"'it'\''s $HOME'");
        assert_eq!(dotenv_quote("a b $X"), "'a b $X'");
        assert_eq!(dotenv_quote("l1\nit's"), "\"l1\\nit's\"");
    }

    #[test]
    fn yaml_rendering_keeps_types() {
        let y = to_yaml(&json!({"a": "true", "b": true, "c": [1, "x y"], "d": {}, "e": "k: v", "f": null}));
        assert_eq!(
            y,
            "a: \"true\"\nb: true\nc:\n  - 1\n  - x y\nd: {}\ne: \"k: v\"\nf: null\n"
        );
        let back = super::super::ast::load(
            "t",
            &format!("values:\n{}", y.lines().map(|l| format!("  {l}\n")).collect::<String>()),
        );
        assert!(back.diags.is_empty());
    }

    #[test]
    fn env_var_projection_withholds_secrets() {
        let mut vars = BTreeMap::new();
        vars.insert("TOKEN".to_string(), Value::string("s3").deep_secret());
        vars.insert("PLAIN".to_string(), Value::string("p"));
        vars.insert("bad-name".to_string(), Value::string("x"));
        let props = BTreeMap::from([("environmentVariables".to_string(), Value::object(vars))]);
        let (v, bad) = environment_variables(&props, false);
        assert_eq!(bad, ["bad-name"]);
        assert_eq!(v[0].value.as_deref(), Some("p"));
        assert_eq!(v[1].value, None);
        let (v, _) = environment_variables(&props, true);
        assert_eq!(v[1].value.as_deref(), Some("s3"));
    }
}
