//! AES-256-GCM wrapping shared by the software KEKs (local key file, passphrase): a random 96-bit nonce per wrap
//! (a KEK wraps few DEKs, far below the 2^32 random-nonce bound) and the wrap context as associated data.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::dek::{Dek, WrapContext};

/// Seals a DEK: returns `nonce || ciphertext || tag`. `label` separates the adapters' associated data.
pub(crate) fn seal_dek(key: &[u8; 32], label: &[u8], dek: &Dek, ctx: &WrapContext) -> Option<Vec<u8>> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).ok()?;
    let mut buf = Vec::with_capacity(NONCE_LEN + 32 + 16);
    buf.extend_from_slice(&nonce);
    buf.extend_from_slice(dek.as_bytes());
    let aad = [label, &ctx.encode()].concat();
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad),
            &mut buf[NONCE_LEN..],
        )
        .ok()?;
    buf.extend_from_slice(tag.as_ref());
    Some(buf)
}

/// Opens what [`seal_dek`] made; `None` for any failure (wrong key, context, or altered bytes).
pub(crate) fn open_dek(key: &[u8; 32], label: &[u8], sealed: &[u8], ctx: &WrapContext) -> Option<Dek> {
    if sealed.len() != NONCE_LEN + 32 + 16 {
        return None;
    }
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = Zeroizing::new(body.to_vec());
    let aad = [label, &ctx.encode()].concat();
    let plain = key.open_in_place(nonce, Aad::from(&aad), &mut buf).ok()?;
    let bytes: [u8; 32] = plain.try_into().ok()?;
    Some(Dek::from_bytes(bytes))
}
