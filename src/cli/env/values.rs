//! The values of an opened environment: the ESC wire `Value`s of an open session (`{"value": …, "secret": bool?,
//! "unknown": bool?}`) as evaluated [`Value`]s, secret and unknown flags kept, and the value at a property path among
//! them. Pure: no I/O.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::core::env::path::Seg;
use crate::core::env::value::{Repr, Value};

/// The properties of an open environment (`{"properties": {KEY: Value}}`) as evaluated values.
pub(crate) fn properties(open: &Json) -> BTreeMap<String, Value> {
    open.get("properties")
        .and_then(Json::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), from_wire(v))).collect())
        .unwrap_or_default()
}

/// One ESC wire `Value` (`{"value": …, "secret": bool?, "unknown": bool?, "trace": …}`, objects and lists holding
/// Values in turn) as an evaluated value. Anything that is not shaped like a wire Value is taken as plain JSON.
fn from_wire(v: &Json) -> Value {
    let Some(m) = v
        .as_object()
        .filter(|m| m.contains_key("value") || m.contains_key("unknown"))
    else {
        return Value::from_json(v);
    };
    let inner = m.get("value").unwrap_or(&Json::Null);
    let repr = match inner {
        Json::Object(o) => Repr::Object(o.iter().map(|(k, v)| (k.clone(), from_wire(v))).collect()),
        Json::Array(a) => Repr::Array(a.iter().map(from_wire).collect()),
        other => Value::from_json(other).repr,
    };
    let flag = |name: &str| m.get(name).and_then(Json::as_bool).unwrap_or(false);
    Value {
        secret: flag("secret"),
        unknown: flag("unknown"),
        ..Value::new(repr)
    }
}

/// The value at `path` among `properties`.
pub(crate) fn property<'v>(properties: &'v BTreeMap<String, Value>, path: &[Seg]) -> Option<&'v Value> {
    let (first, rest) = path.split_first()?;
    let Seg::Key(k) = first else {
        return None;
    };
    rest.iter().try_fold(properties.get(k)?, |v, seg| match (seg, &v.repr) {
        (Seg::Key(k), Repr::Object(m)) => m.get(k),
        (Seg::Index(i), Repr::Array(a)) => a.get(*i),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::core::env::path::PropertyPath;
    use crate::core::env::project;

    #[test]
    fn wire_values_unwrap_to_plain_json_with_flags() {
        let open = json!({"properties": {
            "db": {"value": {
                "host": {"value": "h", "trace": {}},
                "password": {"value": "pw", "secret": true, "trace": {}},
                "ports": {"value": [{"value": 1, "trace": {}}, {"value": null, "trace": {}}], "trace": {}}
            }, "trace": {}},
            "later": {"value": null, "unknown": true, "trace": {}},
            "environmentVariables": {"value": {"TOKEN": {"value": "t0k", "secret": true, "trace": {}}}, "trace": {}}
        }});
        let props = properties(&open);
        let all = Value::object(props.clone()).to_json(false);
        assert_eq!(
            all,
            json!({
                "db": {"host": "h", "password": "pw", "ports": [1, null]},
                "later": "[unknown]",
                "environmentVariables": {"TOKEN": "t0k"}
            })
        );
        assert!(props["db"].contains_secrets() && !props["db"].secret);
        assert!(props["later"].unknown);
        assert_eq!(
            Value::object(props.clone()).to_json(true)["db"]["password"],
            json!("[secret]")
        );
        let path: PropertyPath = "db.ports[0]".parse().unwrap();
        assert_eq!(property(&props, &path.0).unwrap().to_json(false), json!(1));
        // Debug never shows a secret.
        assert!(!format!("{:?}", props["db"]).contains("pw"));
        // The projection sees secrets when asked to.
        let (vars, _) = project::environment_variables(&props, true);
        assert_eq!(vars[0].value.as_deref(), Some("t0k"));
    }
}
