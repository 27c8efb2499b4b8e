//! The two text forms of an envelope (SPEC.md §7).
//!
//! - The **base64 form** — standard alphabet, padded, canonical (RFC 4648 §4) — is what Sesame's APIs carry: the
//!   stack API's ciphertexts (Pulumi's contract encodes bytes as Go's `[]byte` does in JSON) and the
//!   `fn::secret: {ciphertext: …}` values of environment definitions (ESC's form).
//! - The **prefixed form**, `sesame1:` followed by unpadded base64url, is for tools and files where a value should
//!   say what it is: the prefix makes a sealed value recognisable at a glance, names the format generation, and
//!   keeps the string a valid plain YAML scalar (no space after the colon, no leading indicator character). The
//!   server neither writes nor reads it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::OpenError;
use crate::format::{MAX_PLAINTEXT_LEN, OVERHEAD};

/// The prefix of the text form.
pub const TEXT_PREFIX: &str = "sesame1:";

/// The text form of an envelope.
pub fn to_text(envelope: &[u8]) -> String {
    let mut out = String::with_capacity(TEXT_PREFIX.len() + envelope.len().div_ceil(3) * 4);
    out.push_str(TEXT_PREFIX);
    URL_SAFE_NO_PAD.encode_string(envelope, &mut out);
    out
}

/// The envelope bytes of a prefixed text form. Checks only the encoding; [`crate::open`] checks the rest.
pub fn from_text(text: &str) -> Result<Vec<u8>, OpenError> {
    let body = text.strip_prefix(TEXT_PREFIX).ok_or(OpenError::InvalidText)?;
    // Refuse oversized input before decoding it.
    if body.len() > (MAX_PLAINTEXT_LEN + OVERHEAD).div_ceil(3) * 4 {
        return Err(OpenError::TooLarge);
    }
    URL_SAFE_NO_PAD.decode(body).map_err(|_| OpenError::InvalidText)
}

/// The base64 form of an envelope: standard alphabet, padded — what Sesame's APIs send.
pub fn to_base64(envelope: &[u8]) -> String {
    crate::b64::encode(envelope)
}

/// The envelope bytes of a base64 form. Only canonical text is accepted (standard alphabet, exact padding, no
/// whitespace, no stray bits); oversized text is refused before it is decoded. Checks only the encoding;
/// [`crate::open`] checks the rest.
pub fn from_base64(text: &str) -> Result<Vec<u8>, OpenError> {
    if text.len() > (MAX_PLAINTEXT_LEN + OVERHEAD).div_ceil(3) * 4 {
        return Err(OpenError::TooLarge);
    }
    // An envelope is no secret: its bytes leave the wiping buffer.
    crate::b64::decode(text.as_bytes())
        .map(|mut bytes| std::mem::take(&mut *bytes))
        .map_err(|_| OpenError::InvalidText)
}
