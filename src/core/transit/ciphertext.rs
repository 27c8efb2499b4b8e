//! The text form Vault gives ciphertexts, signatures and HMACs: `vault:v<N>:` followed by standard padded base64
//! (for AEAD keys, of `nonce ‖ ciphertext ‖ tag`). Reading one checks its version against the key's policy in
//! Vault's order, with Vault's messages.

use super::Refusal;

/// The prefix every value starts with.
pub const PREFIX: &str = "vault:";

/// `vault:v<version>:<base64 of body>`.
pub fn format(version: u32, body: &[u8]) -> String {
    format!("{PREFIX}v{version}:{}", super::encode_b64(body))
}

/// The version and the base64 text of a value, before any policy check. `v0` reads as version 1 (Vault's keys
/// once started at 0).
pub fn split(text: &str) -> Result<(u32, &str), Refusal> {
    let rest = text
        .strip_prefix(PREFIX)
        .ok_or_else(|| Refusal::invalid("invalid ciphertext: no prefix"))?;
    let (version, body) = rest
        .split_once(':')
        .ok_or_else(|| Refusal::invalid("invalid ciphertext: wrong number of fields"))?;
    let version: u32 = version
        .strip_prefix('v')
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Refusal::invalid("invalid ciphertext: version number could not be decoded"))?;
    Ok((version.max(1), body))
}

/// Reads a ciphertext of a key whose latest version is `latest` and whose oldest decryptable version is
/// `min_decryption`: its version and its decoded body.
pub fn parse(text: &str, latest: u32, min_decryption: u32) -> Result<(u32, zeroize::Zeroizing<Vec<u8>>), Refusal> {
    let (version, body) = split(text)?;
    check_version(version, latest, min_decryption)?;
    let body = super::decode_b64(body).map_err(|_| Refusal::invalid("invalid ciphertext: could not decode base64"))?;
    Ok((version, body))
}

/// Whether a value of `version` may be used by a key at `latest` with `min_decryption`.
pub fn check_version(version: u32, latest: u32, min_decryption: u32) -> Result<(), Refusal> {
    if version > latest {
        return Err(Refusal::invalid("invalid ciphertext: version is too new"));
    }
    if version < min_decryption {
        return Err(Refusal::invalid(
            "ciphertext or signature version is disallowed by policy (too old)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_bad_forms_get_vaults_messages() {
        let text = format(3, b"abc");
        assert_eq!(text, "vault:v3:YWJj");
        let (v, body) = parse(&text, 3, 1).unwrap();
        assert_eq!((v, body.as_slice()), (3, &b"abc"[..]));
        let msg = |t: &str, latest, min| parse(t, latest, min).unwrap_err().message;
        assert_eq!(msg("nope", 1, 1), "invalid ciphertext: no prefix");
        assert_eq!(msg("vault:v1", 1, 1), "invalid ciphertext: wrong number of fields");
        assert_eq!(
            msg("vault:vx:YWJj", 1, 1),
            "invalid ciphertext: version number could not be decoded"
        );
        assert_eq!(
            msg("vault:1:YWJj", 1, 1),
            "invalid ciphertext: version number could not be decoded"
        );
        assert_eq!(msg("vault:v99:YWJj", 2, 1), "invalid ciphertext: version is too new");
        assert_eq!(
            msg("vault:v1:YWJj", 2, 2),
            "ciphertext or signature version is disallowed by policy (too old)"
        );
        assert_eq!(msg("vault:v1:!!!", 1, 1), "invalid ciphertext: could not decode base64");
        assert_eq!(
            msg("vault:v-1:YWJj", 1, 1),
            "invalid ciphertext: version number could not be decoded"
        );
        // v0 is read as v1, as Vault does.
        assert_eq!(parse("vault:v0:YWJj", 1, 1).unwrap().0, 1);
    }
}
