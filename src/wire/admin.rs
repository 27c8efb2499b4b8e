//! Wire types: the JSON bodies the API reads and writes. These are the only types that derive `Serialize` for the
//! API; domain types convert to them by hand in the handlers. A field that holds a secret (a plaintext, even in
//! base64) is a [`SecretText`]: wiped when dropped, `[redacted]` in `Debug`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, ZeroizeOnDrop};

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
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    /// The HTTP status as an integer.
    pub code: u16,
    /// What went wrong, safe to show.
    pub message: String,
}

/// `POST …/encrypt` request: base64 (standard, padded) plaintext.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptRequest {
    /// The plaintext, base64.
    pub plaintext: SecretText,
}

/// `POST …/encrypt` response.
#[derive(Debug, Serialize)]
pub struct EncryptResponse {
    /// The ciphertext, base64.
    pub ciphertext: String,
}

/// `POST …/decrypt` request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecryptRequest {
    /// The ciphertext, base64.
    pub ciphertext: String,
}

/// `POST …/decrypt` response.
#[derive(Debug, Serialize)]
pub struct DecryptResponse {
    /// The plaintext, base64.
    pub plaintext: SecretText,
}

/// `POST …/batch-encrypt` request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchEncryptRequest {
    /// Plaintexts, base64.
    pub plaintexts: Vec<SecretText>,
}

/// `POST …/batch-encrypt` response: ciphertexts in request order.
#[derive(Debug, Serialize)]
pub struct BatchEncryptResponse {
    /// Ciphertexts, base64, in the order of the request.
    pub ciphertexts: Vec<String>,
}

/// `POST …/batch-decrypt` request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchDecryptRequest {
    /// Ciphertexts, base64.
    pub ciphertexts: Vec<String>,
}

/// `POST …/batch-decrypt` response: each ciphertext (as sent) mapped to its plaintext.
#[derive(Debug, Serialize)]
pub struct BatchDecryptResponse {
    /// Base64 ciphertext → base64 plaintext.
    pub plaintexts: BTreeMap<String, SecretText>,
}

/// `POST /api/sesame/v1/keks` request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddKekRequest {
    /// The KEK URI.
    pub uri: String,
    /// The org it serves; absent for an instance (system) KEK.
    #[serde(default)]
    pub org: Option<String>,
    /// Whether new DEKs of its owner are wrapped by it.
    #[serde(default)]
    pub default: bool,
}

/// A registered KEK.
#[derive(Serialize)]
pub struct KekInfo {
    /// Its id.
    pub id: String,
    /// The org it serves, or null for the instance.
    pub org: Option<String>,
    /// Its URI.
    pub uri: String,
    /// `active` or `disabled`.
    pub state: String,
    /// Whether it wraps its owner's new DEKs.
    pub default: bool,
    /// Registration time, Unix milliseconds.
    #[serde(rename = "createdMs")]
    pub created_ms: i64,
}

/// `GET /api/sesame/v1/keks` response.
#[derive(Serialize)]
pub struct KekList {
    /// The KEKs.
    pub keks: Vec<KekInfo>,
}

/// `POST /api/sesame/v1/kek-migrations` request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartMigrationRequest {
    /// Source KEK: id or URI.
    pub from: String,
    /// Target KEK: id or URI.
    pub to: String,
    /// Limit to this org's DEKs.
    #[serde(default)]
    pub org: Option<String>,
}

/// A migration job.
#[derive(Serialize)]
pub struct MigrationInfo {
    /// Job id.
    pub id: String,
    /// Source KEK id.
    pub from: String,
    /// Target KEK id.
    pub to: String,
    /// The org it is limited to.
    #[serde(rename = "orgId")]
    pub org_id: Option<String>,
    /// running, paused, done, failed, retired.
    pub state: String,
    /// DEKs to migrate when it started.
    pub total: i64,
    /// DEKs migrated.
    pub migrated: i64,
    /// Whether a verification succeeded.
    pub verified: bool,
    /// The last error.
    pub error: String,
}

/// `GET /api/sesame/v1/kek-migrations` response.
#[derive(Serialize)]
pub struct MigrationList {
    /// Jobs, newest first.
    pub migrations: Vec<MigrationInfo>,
}

/// `POST …/verify` response.
#[derive(Serialize)]
pub struct VerifyResponse {
    /// DEKs unwrapped under the target.
    pub checked: u64,
    /// DEKs that did not (or are not yet under the target).
    pub failed: u64,
    /// Whether everything verified.
    pub verified: bool,
}

// Admin API: orgs, members, teams, roles, tokens, user. None of these types derives `Debug`: two of them carry a
// token's text, shown once to its owner.

/// `GET /api/user` response: the shape the Pulumi and ESC CLIs read at login.
#[derive(Serialize)]
pub struct CurrentUser {
    /// The caller's login (`org:<org>` or `team:<org>/<team>` for org and team tokens).
    #[serde(rename = "githubLogin")]
    pub github_login: String,
    /// Name shown to people.
    pub name: String,
    /// Always empty (Sesame keeps no e-mail addresses).
    pub email: String,
    /// Always empty.
    #[serde(rename = "avatarUrl")]
    pub avatar_url: String,
    /// The orgs the caller can use.
    pub organizations: Vec<UserOrg>,
}

/// One org of [`CurrentUser`].
#[derive(Serialize)]
pub struct UserOrg {
    /// The org's name.
    #[serde(rename = "githubLogin")]
    pub github_login: String,
    /// The org's name.
    pub name: String,
}

/// An org.
#[derive(Serialize)]
pub struct OrgInfo {
    /// Its name.
    pub name: String,
    /// Creation time, Unix milliseconds.
    #[serde(rename = "createdMs")]
    pub created_ms: i64,
}

/// `GET /api/sesame/v1/orgs` response.
#[derive(Serialize)]
pub struct OrgList {
    /// The orgs, by name.
    pub orgs: Vec<OrgInfo>,
}

/// `POST /api/sesame/v1/orgs` request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrgRequest {
    /// The new org's name.
    pub name: String,
}

/// A member of an org.
#[derive(Serialize)]
pub struct MemberInfo {
    /// Login.
    pub login: String,
    /// Name shown to people.
    pub name: String,
    /// The org-wide role (`none` when the member holds no org-wide grant).
    pub role: String,
    /// When the member joined, Unix milliseconds.
    #[serde(rename = "joinedMs")]
    pub joined_ms: i64,
}

/// `GET /api/sesame/v1/orgs/{org}/members` response.
#[derive(Serialize)]
pub struct MemberList {
    /// The members, by login.
    pub members: Vec<MemberInfo>,
}

/// `POST /api/sesame/v1/orgs/{org}/members` request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    /// The user's login (the user is created when no user has it).
    pub login: String,
    /// Name shown to people, for a new user (default: the login).
    #[serde(default)]
    pub name: Option<String>,
    /// The org-wide role.
    pub role: String,
}

/// `POST /api/sesame/v1/orgs/{org}/members` response.
#[derive(Serialize)]
pub struct AddMemberResponse {
    /// The new member.
    pub member: MemberInfo,
    /// The new user's first personal token, shown this once; absent when the user existed before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretText>,
}

/// `PATCH /api/sesame/v1/orgs/{org}/members/{login}` request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRoleRequest {
    /// The new org-wide role.
    pub role: String,
}

/// A team.
#[derive(Serialize)]
pub struct TeamInfo {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Its members' logins.
    pub members: Vec<String>,
    /// Creation time, Unix milliseconds.
    #[serde(rename = "createdMs")]
    pub created_ms: i64,
}

/// `GET /api/sesame/v1/orgs/{org}/teams` response.
#[derive(Serialize)]
pub struct TeamList {
    /// The teams, by name.
    pub teams: Vec<TeamInfo>,
}

/// `POST /api/sesame/v1/orgs/{org}/teams` request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTeamRequest {
    /// The team's name.
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
}

/// One role grant.
#[derive(Serialize)]
pub struct GrantInfo {
    /// `user:<login>` or `team:<name>`.
    pub subject: String,
    /// The project (`""`: the whole org).
    pub project: String,
    /// The environment (`""`: the whole project).
    pub environment: String,
    /// The role.
    pub role: String,
}

/// `GET /api/sesame/v1/orgs/{org}/roles` response.
#[derive(Serialize)]
pub struct GrantList {
    /// Every grant in the org.
    pub roles: Vec<GrantInfo>,
}

/// `PUT /api/sesame/v1/orgs/{org}/roles` request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutGrantRequest {
    /// `user:<login>` or `team:<name>`.
    pub subject: String,
    /// The project (absent or `""`: the whole org).
    #[serde(default)]
    pub project: String,
    /// The environment (absent or `""`: the whole project).
    #[serde(default)]
    pub environment: String,
    /// The role; `none` takes away what a broader grant gives.
    pub role: String,
}

/// `DELETE /api/sesame/v1/orgs/{org}/roles` query.
#[derive(Deserialize)]
pub struct DeleteGrantQuery {
    /// `user:<login>` or `team:<name>`.
    pub subject: String,
    /// The project.
    #[serde(default)]
    pub project: String,
    /// The environment.
    #[serde(default)]
    pub environment: String,
}

/// `POST /api/sesame/v1/tokens` request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// `personal`, `team` or `organization`.
    pub kind: String,
    /// The org of a team or organization token.
    #[serde(default)]
    pub org: Option<String>,
    /// The team of a team token.
    #[serde(default)]
    pub team: Option<String>,
    /// A note.
    #[serde(default)]
    pub description: String,
    /// Lifetime in days (absent: never expires).
    #[serde(default, rename = "expiresInDays")]
    pub expires_in_days: Option<u32>,
}

/// A token's public facts (never its text or hash).
#[derive(Serialize)]
pub struct TokenInfo {
    /// Its id.
    pub id: String,
    /// `personal`, `team` or `organization`.
    pub kind: String,
    /// The user of a personal token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The org of a team or organization token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// The team of a team token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// The note.
    pub description: String,
    /// Creation time, Unix milliseconds.
    #[serde(rename = "createdMs")]
    pub created_ms: i64,
    /// Expiry, Unix milliseconds (null: never).
    #[serde(rename = "expiresMs")]
    pub expires_ms: Option<i64>,
    /// Revocation time, Unix milliseconds (null: in force).
    #[serde(rename = "revokedMs")]
    pub revoked_ms: Option<i64>,
    /// The id of the token that made this one (revoking that one revokes this one); absent for root tokens.
    #[serde(rename = "parentId", skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
}

/// `POST /api/sesame/v1/tokens` response: the token's text, shown this once.
#[derive(Serialize)]
pub struct CreatedToken {
    /// The token's facts.
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The token's text.
    pub token: SecretText,
}

/// `GET /api/sesame/v1/tokens` response.
#[derive(Serialize)]
pub struct TokenList {
    /// The tokens, oldest first.
    pub tokens: Vec<TokenInfo>,
}

/// A pending invitation to join an org. The same shape whoever asks, and whether or not its login exists: it
/// carries no display name.
#[derive(Serialize)]
pub struct InvitationInfo {
    /// Its id (what the invitee accepts or declines).
    pub id: String,
    /// The org it invites to.
    pub org: String,
    /// The login it is addressed to.
    pub login: String,
    /// The org-wide role accepting gives.
    pub role: String,
    /// Who invited: a login, `org:<org>` or `team:<org>/<team>`.
    #[serde(rename = "invitedBy")]
    pub invited_by: String,
    /// When, Unix milliseconds.
    #[serde(rename = "createdMs")]
    pub created_ms: i64,
}

/// `POST /api/sesame/v1/orgs/{org}/members` response for an org administrator: `202 Accepted`, the invitation.
#[derive(Serialize)]
pub struct InvitedMember {
    /// The invitation the user must accept.
    pub invitation: InvitationInfo,
}

/// `GET /api/sesame/v1/invitations` and `GET /api/sesame/v1/orgs/{org}/invitations` response.
#[derive(Serialize)]
pub struct InvitationList {
    /// The pending invitations.
    pub invitations: Vec<InvitationInfo>,
}

/// `POST /api/sesame/v1/invitations/{id}/accept` response.
#[derive(Serialize)]
pub struct AcceptedInvitation {
    /// The org joined.
    pub org: String,
    /// The caller's org-wide role there now.
    pub role: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zeroized_on_drop<T: ZeroizeOnDrop>() {}

    #[test]
    fn plaintext_fields_are_zeroized_on_drop() {
        zeroized_on_drop::<SecretText>();
        // The fields holding plaintexts are of that type (this stops compiling if one goes back to `String`).
        let _: fn(&EncryptRequest) -> &SecretText = |r| &r.plaintext;
        let _: fn(&DecryptResponse) -> &SecretText = |r| &r.plaintext;
        let _: fn(&BatchEncryptRequest) -> &Vec<SecretText> = |r| &r.plaintexts;
        let _: fn(&BatchDecryptResponse) -> &BTreeMap<String, SecretText> = |r| &r.plaintexts;
    }

    #[test]
    fn debug_never_shows_a_plaintext() {
        let secret = "aHVudGVyMi1zZWNyZXQ="; // base64 of "hunter2-secret"
        let req: EncryptRequest = serde_json::from_str(&format!(r#"{{"plaintext": "{secret}"}}"#)).unwrap();
        assert_eq!(req.plaintext.expose(), secret);
        let batch: BatchEncryptRequest =
            serde_json::from_str(&format!(r#"{{"plaintexts": ["{secret}", "{secret}"]}}"#)).unwrap();
        let resp = DecryptResponse {
            plaintext: SecretText::new(secret.to_owned()),
        };
        let map = BatchDecryptResponse {
            plaintexts: [("Y3Q=".to_owned(), SecretText::new(secret.to_owned()))].into(),
        };
        for shown in [
            format!("{req:?}"),
            format!("{batch:?}"),
            format!("{resp:?}"),
            format!("{map:?}"),
        ] {
            assert!(!shown.contains(secret) && !shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("redacted"), "{shown}");
        }
        // On the wire it is the plain string.
        assert_eq!(
            serde_json::to_string(&resp).unwrap(),
            format!(r#"{{"plaintext":"{secret}"}}"#)
        );
    }

    #[test]
    fn zeroize_wipes_the_text() {
        let mut t = SecretText::new("hunter2".into());
        t.zeroize();
        assert!(t.expose().is_empty());
    }
}
