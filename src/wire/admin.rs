//! Wire types of the admin API: `GET /api/user` (the shape the Pulumi and ESC CLIs read at login) and
//! `/api/sesame/v1/` orgs, members, teams, roles, tokens and invitations; the server writes them, `sesame org|member|
//! team|role|token|invitation` read them. Rule: none of these types derives `Debug` (two carry a token's text, shown
//! once to its owner, as a [`SecretText`]).

use serde::{Deserialize, Serialize};

use super::SecretText;

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
#[derive(Serialize, Deserialize)]
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
#[derive(Serialize, Deserialize)]
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
#[derive(Serialize, Deserialize)]
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
#[derive(Serialize, Deserialize)]
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
#[derive(Serialize, Deserialize)]
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
#[derive(Serialize, Deserialize)]
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
