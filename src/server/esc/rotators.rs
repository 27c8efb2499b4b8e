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
    let whole = |v: &Json| {
        v.as_u64()
            .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64))
    };
    match inputs.get(key) {
        None | Some(Json::Null) => Ok(default),
        Some(v) => match whole(v) {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(format!("{key} must be a whole number from {min} to {max}")),
        },
    }
}

fn bool_input(inputs: &Json, key: &str, default: bool) -> Result<bool, String> {
    match inputs.get(key) {
        None | Some(Json::Null) => Ok(default),
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

/// `fn::rotate::password`, with Pulumi's inputs: `length` characters drawn uniformly from the enabled classes
/// (`lower`, `upper`, `numeric`, `special` — the special characters being `overrideSpecial`), at least
/// `minLower`/`minUpper`/`minNumeric`/`minSpecial` of each, in random order.
pub struct Password;

const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &str = "0123456789";
const SPECIAL: &str = "!@#$%&*()-_=+[]{}<>:?";

static PASSWORD_INPUTS: LazyLock<Json> = LazyLock::new(|| {
    let class =
        |what: &str| json!({"type": "boolean", "default": true, "description": format!("Whether {what} may appear.")});
    let min = |what: &str| json!({"type": "number", "minimum": 0, "maximum": 100, "default": 0, "description": format!("At least this many {what}.")});
    json!({
        "type": "object",
        "properties": {
            "length": {"type": "number", "minimum": 8, "maximum": 100, "default": 16, "description": "How many characters."},
            "lower": class("lowercase letters"),
            "upper": class("uppercase letters"),
            "numeric": class("digits"),
            "special": class("special characters"),
            "minLower": min("lowercase letters"),
            "minUpper": min("uppercase letters"),
            "minNumeric": min("digits"),
            "minSpecial": min("special characters"),
            "overrideSpecial": {"type": "string", "default": SPECIAL, "description": "The special characters to draw from."},
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
        only_keys(
            inputs,
            &[
                "length",
                "lower",
                "upper",
                "numeric",
                "special",
                "minLower",
                "minUpper",
                "minNumeric",
                "minSpecial",
                "overrideSpecial",
            ],
        )?;
        let length = int_input(inputs, "length", 16, 8, 100)? as usize;
        let special = match inputs.get("overrideSpecial") {
            None | Some(Json::Null) => SPECIAL.to_owned(),
            Some(Json::String(s)) if !s.is_empty() && s.len() <= 100 && s.bytes().all(|b| b.is_ascii_graphic()) => {
                s.clone()
            }
            Some(_) => return Err("overrideSpecial must be 1 to 100 printable ASCII characters".into()),
        };
        let mut classes: Vec<(Vec<u8>, usize)> = Vec::new();
        let mut required = 0;
        for (on, min, set) in [
            ("lower", "minLower", LOWER),
            ("upper", "minUpper", UPPER),
            ("numeric", "minNumeric", DIGITS),
            ("special", "minSpecial", special.as_str()),
        ] {
            let at_least = int_input(inputs, min, 0, 0, 100)? as usize;
            if bool_input(inputs, on, true)? {
                classes.push((set.as_bytes().to_vec(), at_least));
                required += at_least;
            } else if at_least > 0 {
                return Err(format!("{min} is set but {on} is false"));
            }
        }
        if classes.is_empty() {
            return Err("at least one of lower, upper, numeric and special must be true".into());
        }
        if required > length {
            return Err(format!("the minimums add up to {required}, more than length {length}"));
        }
        let all: Vec<u8> = classes.iter().flat_map(|(c, _)| c.iter().copied()).collect();
        let mut rng = rand::rng();
        let mut bytes: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::with_capacity(length));
        for (set, at_least) in &classes {
            bytes.extend((0..*at_least).map(|_| set[rng.random_range(0..set.len())]));
        }
        while bytes.len() < length {
            bytes.push(all[rng.random_range(0..all.len())]);
        }
        // Fisher–Yates, so the required characters are not all in front.
        for i in (1..bytes.len()).rev() {
            bytes.swap(i, rng.random_range(0..=i));
        }
        let s = String::from_utf8(bytes.to_vec()).map_err(|_| "internal: non-ASCII".to_owned())?;
        Ok(Zeroizing::new(s))
    }
}

/// `fn::rotate::passphrase`, with Pulumi's inputs: `length` random pronounceable words joined by the one-character
/// `separator`, each capitalised when `capitalize`. Each word is three consonant-vowel syllables from 20 consonants
/// and 5 vowels: 10^6 words, about 19.9 bits each (the default 5 words: ~99 bits).
pub struct Passphrase;

const CONSONANTS: &[u8] = b"bcdfghjklmnprstvwxyz";
const VOWELS: &[u8] = b"aeiou";

static PASSPHRASE_INPUTS: LazyLock<Json> = LazyLock::new(|| {
    json!({
        "type": "object",
        "properties": {
            "length": {"type": "number", "minimum": 3, "maximum": 15, "default": 5, "description": "How many words."},
            "separator": {"type": "string", "minLength": 1, "maxLength": 1, "default": "-", "description": "The character between words."},
            "capitalize": {"type": "boolean", "default": false, "description": "Whether each word starts with a capital letter."},
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
        only_keys(inputs, &["length", "separator", "capitalize"])?;
        let words = int_input(inputs, "length", 5, 3, 15)?;
        let separator = match inputs.get("separator") {
            None | Some(Json::Null) => '-',
            Some(Json::String(s)) if s.chars().count() == 1 && !s.chars().any(char::is_control) => {
                s.chars().next().unwrap_or('-')
            }
            Some(_) => return Err("separator must be exactly one character, not a control".into()),
        };
        let capitalize = bool_input(inputs, "capitalize", false)?;
        let mut rng = rand::rng();
        let mut out = Zeroizing::new(String::new());
        for w in 0..words {
            if w > 0 {
                out.push(separator);
            }
            for syllable in 0..3 {
                let c = char::from(CONSONANTS[rng.random_range(0..CONSONANTS.len())]);
                out.push(if capitalize && syllable == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                });
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
        let p = Password.generate(&json!({"length": 12, "special": false})).unwrap();
        assert_eq!(p.len(), 12);
        assert!(p.bytes().all(|b| b.is_ascii_alphanumeric()));
        let q = Password.generate(&json!({})).unwrap();
        assert_eq!(q.len(), 16);
        assert_ne!(*q, *Password.generate(&json!({})).unwrap());
        let r = Password
            .generate(&json!({"length": 15, "minLower": 2, "minUpper": 3, "minSpecial": 5, "overrideSpecial": "!@"}))
            .unwrap();
        assert!(r.bytes().filter(u8::is_ascii_lowercase).count() >= 2);
        assert!(r.bytes().filter(u8::is_ascii_uppercase).count() >= 3);
        assert!(r.bytes().filter(|b| b"!@".contains(b)).count() >= 5);
        assert!(
            r.bytes().all(|b| b.is_ascii_alphanumeric() || b"!@".contains(&b)),
            "{}",
            *r
        );
        let digits = Password
            .generate(&json!({"lower": false, "upper": false, "special": false, "length": 8.0}))
            .unwrap();
        assert!(digits.bytes().all(|b| b.is_ascii_digit()));
        for bad in [
            json!({"length": 7}),
            json!({"length": "12"}),
            json!({"length": 101}),
            json!({"length": 12.5}),
            json!({"lower": false, "upper": false, "numeric": false, "special": false}),
            json!({"minSpecial": 1, "special": false}),
            json!({"length": 8, "minLower": 5, "minUpper": 5}),
            json!({"overrideSpecial": ""}),
            json!({"overrideSpecial": "\n"}),
            json!({"symbols": false}),
            json!([1]),
        ] {
            assert!(Password.generate(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passphrases_follow_their_inputs() {
        let p = Passphrase
            .generate(&json!({"length": 4, "separator": "%", "capitalize": true}))
            .unwrap();
        let words: Vec<&str> = p.split('%').collect();
        assert_eq!(words.len(), 4);
        assert!(words.iter().all(|w| w.len() == 6
            && w.as_bytes()[0].is_ascii_uppercase()
            && w.bytes().skip(1).all(|b| b.is_ascii_lowercase())));
        assert_eq!(Passphrase.generate(&json!({})).unwrap().split('-').count(), 5);
        for bad in [
            json!({"length": 2}),
            json!({"length": 16}),
            json!({"separator": "\n"}),
            json!({"separator": "--"}),
            json!({"separator": 1}),
            json!({"words": 5}),
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
