//! The text form of an envelope, for YAML and JSON: `sesame1:` followed by the envelope in unpadded base64url.
//!
//! The prefix makes a sealed value recognisable at a glance and to tools, names the format generation, and keeps
//! the string a valid plain YAML scalar (no space after the colon, no leading indicator character).

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

/// The envelope bytes of a text form. Checks only the encoding; [`crate::open`] checks the rest.
pub fn from_text(text: &str) -> Result<Vec<u8>, OpenError> {
    let body = text.strip_prefix(TEXT_PREFIX).ok_or(OpenError::InvalidText)?;
    // Refuse oversized input before decoding it.
    if body.len() > (MAX_PLAINTEXT_LEN + OVERHEAD).div_ceil(3) * 4 {
        return Err(OpenError::TooLarge);
    }
    URL_SAFE_NO_PAD.decode(body).map_err(|_| OpenError::InvalidText)
}
