//! Access tokens: their text form, generation from a caller-supplied CSPRNG, and the hash stored at rest.
//!
//! A token is `sesame_` followed by 43 characters of `[A-Za-z0-9]` (≈256 bits), so secret scanners can recognise a
//! leaked one by its prefix. The store keeps only its SHA-256; lookups go by that hash, so the database never holds
//! a usable token and comparing a presented token is a hash-index lookup, not a string comparison.

use std::fmt;

use rand::{CryptoRng, Rng};
use zeroize::Zeroizing;

/// The prefix every Sesame token carries.
pub const TOKEN_PREFIX: &str = "sesame_";

/// Characters after the prefix. 43 × log2(62) ≈ 256 bits of entropy.
pub const TOKEN_BODY_LEN: usize = 43;

const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The kind of an access token (DESIGN.md §6): whom it acts as. Matched as this enum everywhere; its text form
/// ([`TokenKind::as_str`]) is the one stored and sent on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenKind {
    /// Acts as one user.
    Personal,
    /// Acts as a team.
    Team,
    /// Acts as an organization.
    Organization,
}

impl TokenKind {
    /// Every kind, in the order shown to people.
    pub const ALL: [TokenKind; 3] = [TokenKind::Personal, TokenKind::Team, TokenKind::Organization];

    /// The text form: `personal`, `team` or `organization`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Personal => "personal",
            TokenKind::Team => "team",
            TokenKind::Organization => "organization",
        }
    }

    /// The kind named by its text form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token's text. Zeroized on drop; `Debug` prints `[redacted]`.
#[derive(Clone)]
pub struct AccessToken(Zeroizing<String>);

impl AccessToken {
    /// Generates a new token from a cryptographically secure generator.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> AccessToken {
        let mut s = String::with_capacity(TOKEN_PREFIX.len() + TOKEN_BODY_LEN);
        s.push_str(TOKEN_PREFIX);
        for _ in 0..TOKEN_BODY_LEN {
            // `random_range` rejects out-of-range draws, so every character is uniform.
            s.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
        }
        AccessToken(Zeroizing::new(s))
    }

    /// Wraps presented text (from a header, a file or the environment) without judging it.
    pub fn from_presented(text: &str) -> AccessToken {
        AccessToken(Zeroizing::new(text.trim().to_owned()))
    }

    /// The token text, for showing once to its owner or sending in a header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the text has the shape of a Sesame token (prefix, length, alphabet).
    pub fn is_well_formed(&self) -> bool {
        self.0
            .strip_prefix(TOKEN_PREFIX)
            .is_some_and(|body| body.len() == TOKEN_BODY_LEN && body.bytes().all(|b| b.is_ascii_alphanumeric()))
    }

    /// The SHA-256 of the token text: what the store keeps and looks up.
    pub fn hash(&self) -> [u8; 32] {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.0.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        out
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_kinds_round_trip_through_their_text() {
        for kind in TokenKind::ALL {
            assert_eq!(TokenKind::parse(kind.as_str()), Some(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        assert_eq!(TokenKind::parse("Personal"), None);
        assert_eq!(TokenKind::parse("org"), None);
    }

    #[test]
    fn generated_tokens_are_well_formed_and_distinct() {
        let mut rng = rand::rng();
        let a = AccessToken::generate(&mut rng);
        let b = AccessToken::generate(&mut rng);
        assert!(a.is_well_formed() && b.is_well_formed());
        assert_ne!(a.expose(), b.expose());
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.hash(), AccessToken::from_presented(a.expose()).hash());
    }

    #[test]
    fn malformed_tokens_are_recognised() {
        for bad in [
            "",
            "sesame_",
            "pul-abc",
            "sesame_short",
            &format!("sesame_{}!", "a".repeat(42)),
        ] {
            assert!(!AccessToken::from_presented(bad).is_well_formed(), "{bad}");
        }
    }

    #[test]
    fn debug_never_shows_the_token() {
        let t = AccessToken::generate(&mut rand::rng());
        let shown = format!("{t:?}");
        assert!(!shown.contains(&t.expose()[TOKEN_PREFIX.len()..]));
    }
}
