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
}
