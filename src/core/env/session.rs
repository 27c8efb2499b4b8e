//! Open sessions, pure: what a session id carries and what an evaluation read. A session of an environment is
//! fully determined by the environment, the exact revisions of everything its evaluation read ([`Pins`]), who
//! opened it and when it expires, so the id carries that (sealed at the edge, under the environment's DEK) and a
//! read re-derives the values; nothing about a session is stored except a [`Pins`] set, once per distinct set,
//! and, for a session whose evaluation called providers, what they returned.
//!
//! The id, version 1: base64url without padding of `0x01 ‖ envelope`, where the envelope (envelope-spec v1, 98
//! bytes of overhead) seals a [`Claims`] payload with associated data naming the org, the environment and the
//! opening token. The payload is `flags (1) ‖ expires_ms (8, big-endian) ‖ pins digest (32)`, then, when flag bit 0
//! is set, the 16-byte id of a stored row holding the session's provider outputs (what `fn::open` returned cannot
//! be recomputed, so only that is stored with a session). Ids are 187 characters, 208 with outputs: at most
//! [`MAX_ID_LEN`].

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::eval::EffectError;

/// The session id format this server writes.
pub const SESSION_FORMAT_V1: u8 = 0x01;
/// The longest session id accepted, in characters.
pub const MAX_ID_LEN: usize = 256;
/// Flag bit 0: the session has stored provider outputs, named by a 16-byte row id after the digest.
const FLAG_OUTPUTS: u8 = 0x01;
const PAYLOAD_LEN: usize = 1 + 8 + 32;

/// What a session id says, once unsealed.
#[derive(Clone, PartialEq, Eq)]
pub struct Claims {
    /// When the session stops answering (ms since the epoch).
    pub expires_ms: i64,
    /// The digest of the [`Pins`] the session was evaluated from ([`Pins::digest`]).
    pub digest: [u8; 32],
    /// The row holding the session's provider outputs, sealed, when it has any.
    pub outputs: Option<[u8; 16]>,
}

impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claims")
            .field("expires_ms", &self.expires_ms)
            .field("outputs", &self.outputs.is_some())
            .finish_non_exhaustive()
    }
}

impl Claims {
    /// The payload to seal.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PAYLOAD_LEN + 16);
        out.push(if self.outputs.is_some() { FLAG_OUTPUTS } else { 0 });
        out.extend_from_slice(&self.expires_ms.to_be_bytes());
        out.extend_from_slice(&self.digest);
        if let Some(row) = &self.outputs {
            out.extend_from_slice(row);
        }
        out
    }

    /// Reads an unsealed payload; `None` for anything but exactly the layout [`Claims::encode`] writes (unknown
    /// flags, a wrong length).
    pub fn decode(payload: &[u8]) -> Option<Claims> {
        let (&flags, rest) = payload.split_first()?;
        if flags & !FLAG_OUTPUTS != 0 {
            return None;
        }
        let want = PAYLOAD_LEN - 1 + if flags & FLAG_OUTPUTS != 0 { 16 } else { 0 };
        if rest.len() != want {
            return None;
        }
        let expires_ms = i64::from_be_bytes(rest[..8].try_into().ok()?);
        let digest: [u8; 32] = rest[8..40].try_into().ok()?;
        let outputs = if flags & FLAG_OUTPUTS != 0 {
            Some(rest[40..56].try_into().ok()?)
        } else {
            None
        };
        Some(Claims {
            expires_ms,
            digest,
            outputs,
        })
    }
}

/// The text of a session id: the format byte and the sealed claims, base64url without padding.
pub fn encode_id(sealed: &[u8]) -> String {
    let mut raw = Vec::with_capacity(sealed.len() + 1);
    raw.push(SESSION_FORMAT_V1);
    raw.extend_from_slice(sealed);
    URL_SAFE_NO_PAD.encode(raw)
}

/// The sealed claims of a session id of a format this server reads; `None` for anything else (too long, not
/// base64url without padding, another format byte).
pub fn decode_id(id: &str) -> Option<Vec<u8>> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(id).ok()?;
    match raw.split_first() {
        Some((&SESSION_FORMAT_V1, sealed)) => Some(sealed.to_vec()),
        _ => None,
    }
}

/// Whether `id` has the form of a session stored whole by earlier versions (32 lowercase hex digits), which are
/// read from the store until they expire.
pub fn is_stored_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Everything an evaluation read: the root and every document it loaded, each pinned to what it was.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pins {
    /// The root document's name (`project/env`, or `<yaml>` for an unsaved document).
    pub root: String,
    /// Every document, the root included, ordered by name.
    pub docs: Vec<PinnedDoc>,
}

/// One document an evaluation read.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PinnedDoc {
    pub name: String,
    pub pin: Pin,
}

/// What a name resolved to.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Pin {
    /// A stored environment at one revision.
    Stored { env: String, revision: i64 },
    /// An unsaved document's text (`yaml/open`): not recomputable, so kept (sealed) with the pins.
    Text { text: String },
    /// The import did not resolve; the evaluation reported this.
    Failed { error: EffectError },
}

impl Drop for Pins {
    fn drop(&mut self) {
        for d in &mut self.docs {
            if let Pin::Text { text } = &mut d.pin {
                text.zeroize();
            }
        }
    }
}

impl fmt::Debug for Pins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pins")
            .field("root", &self.root)
            .field("docs", &self.docs.len())
            .finish_non_exhaustive()
    }
}

impl Pins {
    /// Pins from `(name, pin)` pairs in any order.
    pub fn new(root: String, docs: impl IntoIterator<Item = (String, Pin)>) -> Pins {
        let mut docs: Vec<PinnedDoc> = docs.into_iter().map(|(name, pin)| PinnedDoc { name, pin }).collect();
        docs.sort_by(|a, b| a.name.cmp(&b.name));
        docs.dedup_by(|a, b| a.name == b.name);
        Pins { root, docs }
    }

    /// A digest of everything the evaluation depends on: the root's name, each document's name and resolution
    /// (environment id and revision; an unsaved document's text; the error). Evaluation is deterministic (no
    /// providers), so equal digests mean equal results. `mode` separates what different evaluations made.
    pub fn digest(&self, mode: &str) -> [u8; 32] {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut put = |b: &[u8]| {
            ctx.update(&(b.len() as u64).to_be_bytes());
            ctx.update(b);
        };
        put(mode.as_bytes());
        put(self.root.as_bytes());
        for d in &self.docs {
            put(d.name.as_bytes());
            match &d.pin {
                Pin::Stored { env, revision } => {
                    put(b"stored");
                    put(env.as_bytes());
                    put(&revision.to_be_bytes());
                }
                Pin::Text { text } => {
                    put(b"text");
                    put(text.as_bytes());
                }
                Pin::Failed { error } => {
                    put(b"failed");
                    put(error.to_string().as_bytes());
                }
            }
        }
        let d = ctx.finish();
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
    }

    /// The stored environments read besides the root, by name.
    pub fn imports(&self) -> impl Iterator<Item = (&str, &str)> {
        self.docs
            .iter()
            .filter(|d| d.name != self.root)
            .filter_map(|d| match &d.pin {
                Pin::Stored { env, .. } => Some((d.name.as_str(), env.as_str())),
                _ => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(outputs: bool) -> Claims {
        Claims {
            expires_ms: 1_700_000_000_123,
            digest: [7; 32],
            outputs: outputs.then_some([9; 16]),
        }
    }

    #[test]
    fn claims_round_trip_with_and_without_outputs() {
        for c in [claims(false), claims(true)] {
            assert_eq!(Claims::decode(&c.encode()), Some(c));
        }
    }

    #[test]
    fn claims_of_any_other_layout_are_refused() {
        let good = claims(false).encode();
        assert!(Claims::decode(&[]).is_none());
        assert!(Claims::decode(&good[..good.len() - 1]).is_none());
        let mut long = good.clone();
        long.push(0);
        assert!(Claims::decode(&long).is_none());
        let mut unknown_flag = good.clone();
        unknown_flag[0] = 0x02;
        assert!(Claims::decode(&unknown_flag).is_none());
        // The outputs flag without its row id.
        let mut flagged = good;
        flagged[0] = FLAG_OUTPUTS;
        assert!(Claims::decode(&flagged).is_none());
    }

    #[test]
    fn ids_fit_the_limit_with_the_envelope_around_the_claims() {
        // envelope-spec v1 adds 98 bytes around the payload.
        for (c, want) in [(claims(false), 187), (claims(true), 208)] {
            let id = encode_id(&vec![0xA5; c.encode().len() + 98]);
            assert_eq!(id.len(), want);
            assert!(id.len() <= MAX_ID_LEN);
            assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
    }

    #[test]
    fn ids_decode_only_in_their_own_form() {
        let sealed = vec![1, 2, 3, 250, 251];
        let id = encode_id(&sealed);
        assert_eq!(decode_id(&id), Some(sealed));
        // Padding, the standard alphabet, another format byte, too long, empty, not base64 at all.
        assert!(decode_id(&format!("{id}=")).is_none());
        assert!(decode_id("AQID+/8").is_none());
        assert!(decode_id(&URL_SAFE_NO_PAD.encode([2u8, 1, 2, 3])).is_none());
        assert!(decode_id(&"A".repeat(MAX_ID_LEN + 1)).is_none());
        assert!(decode_id("").is_none());
        assert!(decode_id("not an id!").is_none());
        assert!(decode_id("é").is_none());
    }

    #[test]
    fn stored_ids_are_32_lowercase_hex_digits() {
        assert!(is_stored_id("0123456789abcdef0123456789abcdef"));
        assert!(!is_stored_id("0123456789ABCDEF0123456789abcdef"));
        assert!(!is_stored_id("0123456789abcdef0123456789abcde"));
        assert!(!is_stored_id(&encode_id(&[0; 139])));
    }

    fn pins() -> Pins {
        Pins::new(
            "app/prod".into(),
            [
                (
                    "base/x".into(),
                    Pin::Stored {
                        env: "e2".into(),
                        revision: 3,
                    },
                ),
                (
                    "app/prod".into(),
                    Pin::Stored {
                        env: "e1".into(),
                        revision: 9,
                    },
                ),
                (
                    "gone".into(),
                    Pin::Failed {
                        error: EffectError::NotFound("gone".into()),
                    },
                ),
            ],
        )
    }

    #[test]
    fn pins_survive_their_stored_form_and_keep_their_digest() {
        let p = pins();
        let text = serde_json::to_string(&p).unwrap();
        let back: Pins = serde_json::from_str(&text).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.digest("open"), p.digest("open"));
        assert_eq!(p.imports().collect::<Vec<_>>(), vec![("base/x", "e2")]);
    }

    #[test]
    fn the_digest_changes_with_every_input() {
        let base = pins().digest("open");
        assert_ne!(pins().digest("check"), base);
        let mut other = pins();
        other.docs[1].pin = Pin::Stored {
            env: "e2".into(),
            revision: 4,
        };
        assert_ne!(other.digest("open"), base);
        let mut other = pins();
        other.docs[0].pin = Pin::Stored {
            env: "e9".into(),
            revision: 9,
        };
        assert_ne!(other.digest("open"), base);
        let mut other = pins();
        other.docs[2].pin = Pin::Failed {
            error: EffectError::InvalidName("gone".into()),
        };
        assert_ne!(other.digest("open"), base);
        let mut other = pins();
        other.root = "base/x".into();
        assert_ne!(other.digest("open"), base);
        // Order of construction does not matter.
        let mut reversed = pins().docs.clone();
        reversed.reverse();
        let again = Pins::new(
            "app/prod".into(),
            reversed.iter().map(|d| (d.name.clone(), d.pin.clone())),
        );
        assert_eq!(again.digest("open"), base);
    }
}
