//! Token exchange and its trust configuration, in Pulumi's shapes: OIDC issuers (`/api/orgs/{org}/oidc/issuers`),
//! their policies (`/api/orgs/{org}/auth/policies/…`), RFC 8693 token exchange (`/api/oauth/token`, its errors per
//! RFC 6749 §5.2) and External Secrets Operator's variant (`/api/oauth/oidc/token`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::SecretText;

/// `POST /api/orgs/{org}/oidc/issuers`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateIssuer {
    /// A name for people.
    pub name: String,
    /// The issuer URL (`iss`).
    pub url: String,
    /// TLS certificate thumbprints (hex SHA-1 or SHA-256 of the DER certificate) of the issuer's endpoints; when
    /// set, discovery and JWKS are fetched only over HTTPS from a server presenting one of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbprints: Option<Vec<String>>,
    /// An inline JWKS: nothing is fetched for this issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// The longest lifetime of a token minted from this issuer's tokens, seconds (default 24 h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_expiration: Option<i64>,
}

/// `PATCH /api/orgs/{org}/oidc/issuers/{id}`: the fields to change.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateIssuer {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New thumbprints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbprints: Option<Vec<String>>,
    /// New inline JWKS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// New maximum lifetime, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_expiration: Option<i64>,
    /// Refuse (or accept again) exchanges with this issuer's tokens (Sesame's addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

/// A registered issuer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Issuer {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The URL registered.
    pub url: String,
    /// The `iss` its tokens must carry.
    pub issuer: String,
    /// RFC 3339.
    pub created: String,
    /// RFC 3339.
    pub modified: String,
    /// TLS thumbprints.
    #[serde(default)]
    pub thumbprints: Vec<String>,
    /// The inline JWKS, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// Maximum lifetime of minted tokens, seconds.
    pub max_expiration: i64,
    /// Whether exchanges are refused.
    #[serde(default)]
    pub disabled: bool,
}

/// `GET /api/orgs/{org}/oidc/issuers`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuerList {
    /// The org's issuers, by name.
    pub oidc_issuers: Vec<Issuer>,
}

/// One policy of an issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyItem {
    /// `allow` or `deny`.
    pub decision: String,
    /// `organization`, `team` or `personal` (`runner` does not exist here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// The team of a team token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_name: Option<String>,
    /// The user of a personal token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_login: Option<String>,
    /// Roles the minted token may use at most (Sesame: a role name, `admin` for Pulumi's organization tokens).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorized_permissions: Vec<String>,
    /// Claim (or JSON Pointer) → pattern.
    #[serde(default)]
    pub rules: BTreeMap<String, String>,
}

/// `GET /api/orgs/{org}/auth/policies/oidcissuers/{issuerId}`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthPolicy {
    /// The policy's id (for `PATCH /api/orgs/{org}/auth/policies/{policyId}`).
    pub id: String,
    /// Replacements so far.
    pub version: i64,
    /// The list.
    pub policies: Vec<PolicyItem>,
}

/// `PATCH /api/orgs/{org}/auth/policies/{policyId}`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateAuthPolicy {
    /// The new list (replaces the old one).
    pub policies: Vec<PolicyItem>,
}

/// RFC 8693 request fields (form-encoded, or JSON as pulumi/auth-actions sends them).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TokenExchangeRequest {
    /// `urn:pulumi:org:<org>`.
    #[serde(default)]
    pub audience: Option<String>,
    /// `urn:ietf:params:oauth:grant-type:token-exchange`.
    #[serde(default)]
    pub grant_type: Option<String>,
    /// `urn:ietf:params:oauth:token-type:id_token` (or `…:jwt`).
    #[serde(default)]
    pub subject_token_type: Option<String>,
    /// `urn:pulumi:token-type:access_token:organization|team|personal`.
    #[serde(default)]
    pub requested_token_type: Option<String>,
    /// The OIDC token.
    #[serde(default)]
    pub subject_token: Option<SecretText>,
    /// empty/`admin` | `team:NAME` | `user:LOGIN`.
    #[serde(default)]
    pub scope: Option<String>,
    /// Lifetime asked for, seconds (a number or its text).
    #[serde(default)]
    pub expiration: Option<serde_json::Value>,
}

/// RFC 8693 answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenExchangeResponse {
    /// The Sesame token.
    pub access_token: SecretText,
    /// `urn:pulumi:token-type:access_token:<kind>`.
    pub issued_token_type: String,
    /// How to send it (`token`, ESC's `Authorization: token …`; `Bearer` works too).
    pub token_type: String,
    /// Lifetime, seconds.
    pub expires_in: i64,
    /// The scope granted.
    pub scope: String,
    /// Always empty: exchange again instead.
    pub refresh_token: String,
}

/// RFC 6749 §5.2 error body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OAuthErrorBody {
    /// `invalid_request`, `invalid_grant`, `unauthorized_client`, `unsupported_grant_type`, …
    pub error: String,
    /// What went wrong, for people.
    pub error_description: String,
}

/// External Secrets Operator's `POST /api/oauth/oidc/token`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EsoTokenRequest {
    /// The org.
    pub organization: String,
    /// The ServiceAccount token.
    pub token: SecretText,
}

/// Its answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EsoTokenResponse {
    /// The Sesame token.
    pub access_token: SecretText,
    /// Lifetime, seconds.
    pub expires_in: i64,
}
