//! Reading a provider's inputs again at the call (the evaluator checked them against the input schema already):
//! typed getters that name the field in their error, and the checks a schema cannot say.
//!
//! Rule: an error names the field and the rule it breaks, never the value (a value may be a secret).

use serde_json::{Map, Value as Json};

/// The inputs as an object.
pub fn object<'a>(inputs: &'a Json, what: &str) -> Result<&'a Map<String, Json>, String> {
    inputs.as_object().ok_or_else(|| format!("{what} must be an object"))
}

/// Refuses any key not in `allowed`; `at` prefixes the names in the message (`""` or `oidc.`).
pub fn only(obj: &Map<String, Json>, allowed: &[&str], at: &str) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "unknown input {at}{k:?}: {} takes {}",
            if at.is_empty() {
                "the provider"
            } else {
                at.trim_end_matches('.')
            },
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

/// An optional string field.
pub fn string<'a>(obj: &'a Map<String, Json>, key: &str, at: &str) -> Result<Option<&'a str>, String> {
    match obj.get(key) {
        None => Ok(None),
        Some(Json::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{at}{key} must be a string")),
    }
}

/// A required string field.
pub fn required<'a>(obj: &'a Map<String, Json>, key: &str, at: &str) -> Result<&'a str, String> {
    string(obj, key, at)?.ok_or_else(|| format!("{at}{key} is required"))
}

/// An optional list of strings.
pub fn strings(obj: &Map<String, Json>, key: &str, at: &str) -> Result<Option<Vec<String>>, String> {
    let bad = || format!("{at}{key} must be a list of strings");
    match obj.get(key) {
        None => Ok(None),
        Some(Json::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(str::to_owned).ok_or_else(bad))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(bad()),
    }
}

/// Whether `s` is 1 to `max` bytes, each in `ok`.
pub fn chars_within(s: &str, max: usize, ok: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.len() <= max && s.chars().all(ok)
}

/// A GUID in its 8-4-4-4-12 hexadecimal form (Microsoft Entra client and tenant ids).
pub fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn getters_name_the_field_not_the_value() {
        let v = json!({"a": "x", "n": 1, "l": ["p", 2]});
        let o = object(&v, "the inputs").unwrap();
        assert_eq!(required(o, "a", "").unwrap(), "x");
        assert_eq!(required(o, "n", "oidc.").unwrap_err(), "oidc.n must be a string");
        assert_eq!(required(o, "z", "").unwrap_err(), "z is required");
        assert_eq!(strings(o, "l", "").unwrap_err(), "l must be a list of strings");
        let e = only(o, &["a", "n"], "").unwrap_err();
        assert!(e.contains("\"l\"") && e.contains("takes a, n"), "{e}");
        assert!(is_guid("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"));
        for bad in [
            "",
            "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeee",
            "gggggggg-bbbb-cccc-dddd-eeeeeeeeeeee",
            "a-b-c-d-e",
        ] {
            assert!(!is_guid(bad), "{bad}");
        }
    }
}
