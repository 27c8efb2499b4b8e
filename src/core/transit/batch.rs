//! Request fields read as Vault reads them (weakly typed: a number where a string is expected is its text, `"2"` is
//! an int, `"true"` a bool) and `batch_input`: a request carries either one item in its body or a list of items,
//! each answered on its own — an item's failure is its `error`, and the request's status says whether any failed.

use serde_json::{Map, Value};

use super::Refusal;

/// One item's fields (a batch entry, or the body of a single request).
#[derive(Clone, Copy, Debug)]
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl<'a> Fields<'a> {
    /// A string field (numbers and bools as their text), `None` when absent or null.
    pub fn string(&self, name: &str) -> Result<Option<String>, Refusal> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(if *b { "1" } else { "0" }.to_owned())),
            Some(_) => Err(Refusal::invalid(format!(
                "error converting input for field \"{name}\": '' expected type 'string'"
            ))),
        }
    }

    /// A string field borrowed when it is a JSON string (no copy of a plaintext).
    pub fn str_ref(&self, name: &str) -> Result<Option<std::borrow::Cow<'a, str>>, Refusal> {
        match self.0.get(name) {
            Some(Value::String(s)) => Ok(Some(std::borrow::Cow::Borrowed(s.as_str()))),
            _ => Ok(self.string(name)?.map(std::borrow::Cow::Owned)),
        }
    }

    /// An integer field (numeric strings accepted), `None` when absent.
    pub fn int(&self, name: &str) -> Result<Option<i64>, Refusal> {
        let bad = || {
            Refusal::invalid(format!(
                "error converting input for field \"{name}\": '' cannot parse value as 'int': strconv.ParseInt: \
                 invalid syntax"
            ))
        };
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                        .map(|f| f as i64)
                })
                .map(Some)
                .ok_or_else(bad),
            Some(Value::String(s)) if s.is_empty() => Ok(Some(0)),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
            Some(Value::Bool(b)) => Ok(Some(i64::from(*b))),
            Some(_) => Err(bad()),
        }
    }

    /// A boolean field (`"true"`, `"1"`, numbers accepted), `None` when absent.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, Refusal> {
        let bad = || {
            Refusal::invalid(format!(
                "error converting input for field \"{name}\": '' cannot parse value as 'bool': strconv.ParseBool: \
                 invalid syntax"
            ))
        };
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::Number(n)) => Ok(Some(n.as_f64() != Some(0.0))),
            Some(Value::String(s)) => match s.as_str() {
                "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(Some(true)),
                "0" | "f" | "F" | "false" | "FALSE" | "False" | "" => Ok(Some(false)),
                _ => Err(bad()),
            },
            Some(_) => Err(bad()),
        }
    }

    /// A duration in seconds: a number, a numeric string or a Go-style duration (`1h`).
    pub fn duration_s(&self, name: &str) -> Result<Option<i64>, Refusal> {
        match self.0.get(name) {
            Some(Value::String(s)) => super::policy::parse_duration_s(s).map(Some).ok_or_else(|| {
                Refusal::invalid(format!(
                    "error converting input for field \"{name}\": '' cannot parse value as 'duration'"
                ))
            }),
            _ => self.int(name),
        }
    }
}

/// A request's items, and whether they came as a `batch_input`.
pub type Items<'a> = (Vec<&'a Map<String, Value>>, bool);

/// The items of a request: its `batch_input` when present (then `true`), else the body as the one item.
pub fn items(body: &Map<String, Value>, max: usize) -> Result<Items<'_>, Refusal> {
    match body.get("batch_input") {
        None | Some(Value::Null) => Ok((vec![body], false)),
        Some(Value::Array(list)) => {
            if list.is_empty() {
                return Err(Refusal::invalid("missing batch input to process"));
            }
            if list.len() > max {
                return Err(Refusal::invalid(format!(
                    "batch_input holds {} items, more than the limit of {max}",
                    list.len()
                )));
            }
            let items = list
                .iter()
                .map(|v| {
                    v.as_object().ok_or_else(|| {
                        Refusal::invalid("failed to parse batch input: every item must be a JSON object")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((items, true))
        }
        Some(_) => Err(Refusal::invalid(
            "failed to parse batch input: source data must be an array or slice",
        )),
    }
}

/// How a batch request is answered, from its items' outcomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchStatus {
    /// Every item succeeded: 200.
    Ok,
    /// Some item was refused (and none failed in the server): 400.
    UserError,
    /// Some item failed in the server: 500.
    InternalError,
    /// Some item failed and some succeeded, and the caller chose this status (`partial_failure_response_code`).
    Override(u16),
}

/// Vault's rule: a failure answers 400 (500 when the server failed), unless some item succeeded and the request's
/// `partial_failure_response_code` names a status in 1–599.
pub fn status(successes: bool, user_error: bool, internal_error: bool, partial_code: Option<i64>) -> BatchStatus {
    if !user_error && !internal_error {
        return BatchStatus::Ok;
    }
    if successes && let Some(code) = partial_code.filter(|c| (1..=599).contains(c)) {
        return BatchStatus::Override(code as u16);
    }
    if user_error {
        BatchStatus::UserError
    } else {
        BatchStatus::InternalError
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn fields_are_weakly_typed_like_vault() {
        let m = obj(json!({"a": "x", "n": 5, "s": "7", "b": "true", "o": {}, "d": "1h", "z": null}));
        let f = Fields(&m);
        assert_eq!(f.string("a").unwrap().as_deref(), Some("x"));
        assert_eq!(f.string("n").unwrap().as_deref(), Some("5"));
        assert_eq!(f.int("s").unwrap(), Some(7));
        assert_eq!(f.int("n").unwrap(), Some(5));
        assert_eq!(f.bool("b").unwrap(), Some(true));
        assert_eq!(f.duration_s("d").unwrap(), Some(3600));
        assert_eq!(f.string("z").unwrap(), None);
        assert!(f.string("o").is_err() && f.int("a").is_err() && f.bool("a").is_err());
        assert_eq!(f.int("missing").unwrap(), None);
    }

    #[test]
    fn batches_are_read_and_bounded() {
        let single = obj(json!({"plaintext": "aGk="}));
        let (items_, batch) = items(&single, 10).unwrap();
        assert!(!batch && items_.len() == 1);
        let b = obj(json!({"batch_input": [{"plaintext": "a"}, {"plaintext": "b"}]}));
        assert_eq!(items(&b, 10).unwrap().0.len(), 2);
        assert!(items(&b, 1).unwrap_err().message.contains("limit of 1"));
        assert_eq!(
            items(&obj(json!({"batch_input": []})), 10).unwrap_err().message,
            "missing batch input to process"
        );
        assert!(items(&obj(json!({"batch_input": "x"})), 10).is_err());
        assert!(items(&obj(json!({"batch_input": [1]})), 10).is_err());
    }

    #[test]
    fn batch_status_follows_vault() {
        assert_eq!(status(true, false, false, Some(207)), BatchStatus::Ok);
        assert_eq!(status(true, true, false, None), BatchStatus::UserError);
        assert_eq!(status(true, true, false, Some(207)), BatchStatus::Override(207));
        assert_eq!(status(false, true, false, Some(207)), BatchStatus::UserError);
        assert_eq!(status(true, true, false, Some(700)), BatchStatus::UserError);
        assert_eq!(status(true, false, true, None), BatchStatus::InternalError);
    }
}
