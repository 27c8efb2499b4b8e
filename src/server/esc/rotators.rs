//! Rotators (`fn::rotate::<name>`) this server runs: `password` and `passphrase`, each a fresh random secret drawn
//! from the operating system's CSPRNG (through `rand::rng()`, a ChaCha generator seeded and reseeded from the OS);
//! with the `aws` feature, `aws-iam` (`providers::aws_iam`, beside the AWS providers), which calls IAM
//! through its own [`Rotator::rotate`].
//!
//! Rule: a rotator is pure apart from its randomness (or the one service it rotates at); `rotate(inputs, state)`
//! answers the new state `{current, previous}` (previous: the former current, absent the first time) and
//! `open(inputs, state)` answers the value the environment sees: the state itself, or `{}` before the first
//! rotation. Errors never hold a secret. The schemas are written for this server in the shape Pulumi publishes
//! (inputs, state, outputs).

use std::sync::LazyLock;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use rand::Rng;
use serde_json::{Map, Value as Json, json};
use zeroize::Zeroizing;

use super::providers::OpenCtx;

/// A rotator: its schemas, its `rotate` and its `open`.
pub trait Rotator: Send + Sync {
    /// The name after `fn::rotate::`.
    fn name(&self) -> &'static str;
    /// One sentence for editors.
    fn description(&self) -> &'static str;
    fn inputs(&self) -> &'static Json;
    fn state(&self) -> &'static Json;
    fn outputs(&self) -> &'static Json;
    /// A new secret for these inputs, or why the inputs are refused.
    fn generate(&self, inputs: &Json) -> Result<Zeroizing<String>, String>;
    /// How long one rotation may take before it is cut.
    fn deadline(&self) -> Duration {
        super::providers::DEFAULT_DEADLINE
    }
    /// The new state, run at the evaluator's edge (a rotator that calls out, such as `aws-iam`, overrides it):
    /// by default [`rotate`] with [`Rotator::generate`]'s secret.
    fn rotate<'a>(
        &'a self,
        ctx: &'a OpenCtx<'a>,
        inputs: &'a Json,
        state: Option<&'a Json>,
    ) -> BoxFuture<'a, Result<Json, String>> {
        let _ = ctx;
        futures::future::ready(rotate(self, inputs, state)).boxed()
    }
}

/// The new state: a fresh secret as `current`, the former `current` (if any) as `previous`.
pub fn rotate<R: Rotator + ?Sized>(r: &R, inputs: &Json, state: Option<&Json>) -> Result<Json, String> {
    let fresh = r.generate(inputs)?;
    let mut out = Map::new();
    out.insert("current".into(), Json::String(fresh.as_str().to_owned()));
    if let Some(prev) = state.and_then(|s| s.get("current")).and_then(Json::as_str) {
        out.insert("previous".into(), Json::String(prev.to_owned()));
    }
    Ok(Json::Object(out))
}

/// What the environment sees: the state, or `{}` before the first rotation.
pub fn open(state: Option<&Json>) -> Json {
    match state {
        Some(s @ Json::Object(_)) => s.clone(),
        _ => json!({}),
    }
}

static STATE: LazyLock<Json> = LazyLock::new(|| {
    json!({
        "type": "object",
        "properties": {
            "current": {"type": "string", "secret": true, "description": "The secret in use."},
            "previous": {"type": "string", "secret": true, "description": "The secret before the last rotation."},
        },
        "additionalProperties": false,
    })
});

fn int_input(inputs: &Json, key: &str, default: u64, min: u64, max: u64) -> Result<u64, String> {
    match inputs.get(key) {
        None | Some(Json::Null) => Ok(default),
        Some(v) => match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(format!("{key} must be an integer from {min} to {max}")),
        },
    }
}

fn bool_input(inputs: &Json, key: &str) -> Result<bool, String> {
    match inputs.get(key) {
        None | Some(Json::Null) => Ok(true),
        Some(Json::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("{key} must be true or false")),
    }
}

fn only_keys(inputs: &Json, allowed: &[&str]) -> Result<(), String> {
    match inputs {
        Json::Object(m) => match m.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(format!("unknown input {k:?} (expected one of {})", allowed.join(", "))),
            None => Ok(()),
        },
        _ => Err("the inputs must be an object".into()),
    }
}

/// `fn::rotate::password`: a random password of `length` characters from the chosen classes, at least one of each.
pub struct Password;

const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &str = "0123456789";
const SYMBOLS: &str = "!#$%&*+-.:=?@^_~";

static PASSWORD_INPUTS: LazyLock<Json> = LazyLock::new(|| {
    let class = |what: &str| json!({"type": "boolean", "default": true, "description": format!("Whether {what} may appear (at least one then does).")});
    json!({
        "type": "object",
        "properties": {
            "length": {"type": "integer", "minimum": 8, "maximum": 256, "default": 32, "description": "How many characters."},
            "lowercase": class("lowercase letters"),
            "uppercase": class("uppercase letters"),
            "numbers": class("digits"),
            "symbols": class(&format!("the symbols {SYMBOLS}")),
        },
        "additionalProperties": false,
    })
});

impl Rotator for Password {
    fn name(&self) -> &'static str {
        "password"
    }
    fn description(&self) -> &'static str {
        "Generates a random password; keeps the previous one after each rotation."
    }
    fn inputs(&self) -> &'static Json {
        &PASSWORD_INPUTS
    }
    fn state(&self) -> &'static Json {
        &STATE
    }
    fn outputs(&self) -> &'static Json {
        &STATE
    }
    fn generate(&self, inputs: &Json) -> Result<Zeroizing<String>, String> {
        only_keys(inputs, &["length", "lowercase", "uppercase", "numbers", "symbols"])?;
        let length = int_input(inputs, "length", 32, 8, 256)? as usize;
        let mut classes: Vec<&[u8]> = Vec::new();
        for (key, set) in [
            ("lowercase", LOWER),
            ("uppercase", UPPER),
            ("numbers", DIGITS),
            ("symbols", SYMBOLS),
        ] {
            if bool_input(inputs, key)? {
                classes.push(set.as_bytes());
            }
        }
        if classes.is_empty() {
            return Err("at least one of lowercase, uppercase, numbers and symbols must be true".into());
        }
        let all: Vec<u8> = classes.iter().flat_map(|c| c.iter().copied()).collect();
        let mut rng = rand::rng();
        // Drawn uniformly from every allowed character until each class appears (rejection keeps it uniform among
        // the passwords that satisfy the rule).
        loop {
            let bytes: Zeroizing<Vec<u8>> =
                Zeroizing::new((0..length).map(|_| all[rng.random_range(0..all.len())]).collect());
            if classes.iter().all(|c| bytes.iter().any(|b| c.contains(b))) {
                let s = String::from_utf8(bytes.to_vec()).map_err(|_| "internal: non-ASCII".to_owned())?;
                return Ok(Zeroizing::new(s));
            }
        }
    }
}

/// `fn::rotate::passphrase`: `words` random pronounceable words joined by `separator`. Each word is three
/// consonant-vowel syllables from 20 consonants and 5 vowels: 10^6 words, about 19.9 bits each (6 words: ~119 bits).
pub struct Passphrase;

const CONSONANTS: &[u8] = b"bcdfghjklmnprstvwxyz";
const VOWELS: &[u8] = b"aeiou";

static PASSPHRASE_INPUTS: LazyLock<Json> = LazyLock::new(|| {
    json!({
        "type": "object",
        "properties": {
            "words": {"type": "integer", "minimum": 4, "maximum": 32, "default": 6, "description": "How many words."},
            "separator": {"type": "string", "maxLength": 4, "default": "-", "description": "What goes between words."},
        },
        "additionalProperties": false,
    })
});

impl Rotator for Passphrase {
    fn name(&self) -> &'static str {
        "passphrase"
    }
    fn description(&self) -> &'static str {
        "Generates a random passphrase of pronounceable words; keeps the previous one after each rotation."
    }
    fn inputs(&self) -> &'static Json {
        &PASSPHRASE_INPUTS
    }
    fn state(&self) -> &'static Json {
        &STATE
    }
    fn outputs(&self) -> &'static Json {
        &STATE
    }
    fn generate(&self, inputs: &Json) -> Result<Zeroizing<String>, String> {
        only_keys(inputs, &["words", "separator"])?;
        let words = int_input(inputs, "words", 6, 4, 32)?;
        let separator = match inputs.get("separator") {
            None | Some(Json::Null) => "-",
            Some(Json::String(s)) if s.chars().count() <= 4 && !s.chars().any(char::is_control) => s.as_str(),
            Some(_) => return Err("separator must be a string of at most 4 characters, none a control".into()),
        };
        let mut rng = rand::rng();
        let mut out = Zeroizing::new(String::new());
        for w in 0..words {
            if w > 0 {
                out.push_str(separator);
            }
            for _ in 0..3 {
                out.push(char::from(CONSONANTS[rng.random_range(0..CONSONANTS.len())]));
                out.push(char::from(VOWELS[rng.random_range(0..VOWELS.len())]));
            }
        }
        Ok(out)
    }
}

#[cfg(feature = "aws")]
static ROTATORS: &[&dyn Rotator] = &[&super::providers::aws_iam::AwsIam, &Passphrase, &Password];
#[cfg(not(feature = "aws"))]
static ROTATORS: &[&dyn Rotator] = &[&Passphrase, &Password];

/// Every rotator this server runs, ordered by name.
pub fn all() -> &'static [&'static dyn Rotator] {
    ROTATORS
}

/// The rotator named `name`.
pub fn find(name: &str) -> Option<&'static dyn Rotator> {
    ROTATORS.iter().copied().find(|r| r.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_follow_their_inputs() {
        let p = Password.generate(&json!({"length": 12, "symbols": false})).unwrap();
        assert_eq!(p.len(), 12);
        assert!(p.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(p.bytes().any(|b| b.is_ascii_digit()) && p.bytes().any(|b| b.is_ascii_uppercase()));
        let q = Password.generate(&json!({})).unwrap();
        assert_eq!(q.len(), 32);
        assert_ne!(*q, *Password.generate(&json!({})).unwrap());
        for bad in [
            json!({"length": 7}),
            json!({"length": "12"}),
            json!({"length": 257}),
            json!({"lowercase": false, "uppercase": false, "numbers": false, "symbols": false}),
            json!({"colour": 1}),
            json!([1]),
        ] {
            assert!(Password.generate(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passphrases_follow_their_inputs() {
        let p = Passphrase.generate(&json!({"words": 5, "separator": " "})).unwrap();
        let words: Vec<&str> = p.split(' ').collect();
        assert_eq!(words.len(), 5);
        assert!(
            words
                .iter()
                .all(|w| w.len() == 6 && w.bytes().all(|b| b.is_ascii_lowercase()))
        );
        assert_eq!(Passphrase.generate(&json!({})).unwrap().split('-').count(), 6);
        for bad in [
            json!({"words": 3}),
            json!({"separator": "\n"}),
            json!({"separator": 1}),
            json!({"x": 1}),
        ] {
            assert!(Passphrase.generate(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rotation_keeps_the_former_current() {
        let first = rotate(&Password, &json!({}), None).unwrap();
        assert!(first.get("previous").is_none());
        let second = rotate(&Password, &json!({}), Some(&first)).unwrap();
        assert_eq!(second["previous"], first["current"]);
        assert_ne!(second["current"], first["current"]);
        assert_eq!(open(None), json!({}));
    }
}
