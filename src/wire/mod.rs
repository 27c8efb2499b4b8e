//! Wire types: the JSON bodies the API reads and writes, shared by the server (`src/server`, which writes responses
//! and reads requests) and the CLI (`src/cli`, which does the opposite), so that the two cannot drift apart.
//!
//! Rule: these are the only types that derive `Serialize`/`Deserialize` for the API; domain types convert to them
//! by hand in the handlers. Nothing here imports `axum`, the server or the store: plain data and its JSON shape. A
//! field that holds a secret (a plaintext, even in base64) is a [`SecretText`]: wiped when dropped, `[redacted]` in
//! `Debug`. One module per API: [`stacks`] (encrypt/decrypt), [`keks`] (KEKs and their migrations), [`admin`] (the
//! user, orgs, members, teams, roles, tokens, invitations) and [`esc`] (ESC's environments API).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, ZeroizeOnDrop};

pub mod admin;
pub mod esc;
pub mod keks;
pub mod oidc_issuer;
pub mod schedules;
pub mod stacks;
pub mod transit;
pub mod trust;

/// Text that carries a secret (a plaintext, or its base64): zeroized when dropped, never shown by `Debug`, read and
/// written as a plain JSON string.
#[derive(Clone, Default, Zeroize, ZeroizeOnDrop)]
pub struct SecretText(String);

impl SecretText {
    /// Takes ownership of `text` (no copy is left behind).
    pub fn new(text: String) -> Self {
        SecretText(text)
    }

    /// The text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[redacted; {} bytes]", self.0.len())
    }
}

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretText)
    }
}

impl Serialize for SecretText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A secret text read from a request body: borrowed from the body's buffer when its JSON form has no escapes (no
/// copy of the secret is made, and the buffer is the body's to wipe), else owned and wiped like [`SecretText`].
/// Never shown by `Debug`.
pub enum SecretStr<'a> {
    /// The text as it stands in the body.
    Borrowed(&'a str),
    /// The text unescaped into a buffer of its own.
    Owned(SecretText),
}

impl SecretStr<'_> {
    /// The text.
    pub fn expose(&self) -> &str {
        match self {
            SecretStr::Borrowed(text) => text,
            SecretStr::Owned(text) => text.expose(),
        }
    }
}

impl From<SecretText> for SecretStr<'static> {
    fn from(text: SecretText) -> Self {
        SecretStr::Owned(text)
    }
}

impl fmt::Debug for SecretStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[redacted; {} bytes]", self.expose().len())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for SecretStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> serde::de::Visitor<'de> for Text {
            type Value = SecretStr<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(SecretStr::Borrowed(v))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(SecretStr::Owned(SecretText::new(v.to_owned())))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(SecretStr::Owned(SecretText::new(v)))
            }
        }
        d.deserialize_str(Text)
    }
}

impl Serialize for SecretStr<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}

/// ESC's error body.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The HTTP status as an integer.
    pub code: u16,
    /// What went wrong, safe to show.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zeroized_on_drop<T: ZeroizeOnDrop>() {}

    #[test]
    fn secret_text_is_zeroized_on_drop() {
        zeroized_on_drop::<SecretText>();
    }

    #[test]
    fn zeroize_wipes_the_text() {
        let mut t = SecretText::new("hunter2".into());
        t.zeroize();
        assert!(t.expose().is_empty());
    }

    #[test]
    fn a_secret_str_borrows_unescaped_text_and_owns_unescaped_copies() {
        #[derive(Deserialize)]
        struct Req<'a> {
            #[serde(borrow)]
            v: SecretStr<'a>,
        }
        let body = br#"{"v":"aHVudGVyMg=="}"#;
        let r: Req<'_> = serde_json::from_slice(body).unwrap();
        let SecretStr::Borrowed(text) = r.v else {
            panic!("an unescaped string is read in place")
        };
        assert_eq!(text, "aHVudGVyMg==");
        assert!(body.as_ptr_range().contains(&text.as_ptr()), "it points into the body");
        for escaped in [&br#"{"v":"aHVudGVy\u004dg=="}"#[..], br#"{"v":"a\/b"}"#] {
            let r: Req<'_> = serde_json::from_slice(escaped).unwrap();
            assert!(matches!(r.v, SecretStr::Owned(_)));
            assert!(["aHVudGVyMg==", "a/b"].contains(&r.v.expose()));
            assert!(!format!("{:?}", r.v).contains(r.v.expose()), "Debug shows no text");
        }
        // A source that cannot lend (a reader) gives owned text.
        let mut reader = serde_json::Deserializer::from_reader(&br#""aGk=""#[..]);
        let owned = SecretStr::deserialize(&mut reader).unwrap();
        assert!(matches!(owned, SecretStr::Owned(_)));
        assert_eq!(owned.expose(), "aGk=");
        assert!(serde_json::from_slice::<Req<'_>>(br#"{"v":42}"#).is_err());
        assert_eq!(serde_json::to_string(&owned).unwrap(), r#""aGk=""#);
    }
}
