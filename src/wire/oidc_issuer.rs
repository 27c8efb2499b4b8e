//! The OIDC issuer's request and response bodies: minting a token about an environment and previewing its claims
//! (`POST /api/esc/environments/{org}/{project}/{env}/oidc/token` and `…/oidc/claims`).
//!
//! Rule: plain data; the minted token is a [`SecretText`] (wiped when dropped, redacted in `Debug`).

use serde::{Deserialize, Serialize};

use super::SecretText;

/// What a caller asks for. A login token takes `audiencePrefix` (the target platform: `aws`, `gcp`, `azure`,
/// `vault`, …; the audience becomes `<prefix>:<org>`) and optional `subjectAttributes`; a custom-audience token
/// takes `audience`. `duration` is a Go duration from `1m` to `1h`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcTokenRequest {
    /// `login` or `custom-audience`.
    pub family: String,
    /// The audience of a custom-audience token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The target platform of a login token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience_prefix: Option<String>,
    /// Pulumi's subject attributes, in the order the subject lists them (login tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_attributes: Option<Vec<String>>,
    /// The token's lifetime (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
}

/// A minted token.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OidcTokenResponse {
    /// The signed token (compact JWS).
    pub token: SecretText,
    /// The id of the key that signed it.
    pub kid: String,
    /// When it expires (RFC 3339).
    pub expires_at: String,
    /// Its claims.
    pub claims: serde_json::Value,
}

/// A preview: the claims a token would carry, without `iat`, `nbf`, `exp` and `jti` (nothing is signed).
#[derive(Debug, Serialize, Deserialize)]
pub struct OidcClaimsResponse {
    /// The claims.
    pub claims: serde_json::Value,
}
