//! The access-administration API: `GET /api/user` (what the Pulumi and ESC CLIs ask at login) and, under
//! `/api/sesame/v1`, orgs, members, teams, role grants and access tokens.
//!
//! Every handler makes one access decision through [`AppState::org_access`] and [`AppState::authorize`]
//! (`ManageAccess` on the org for writes, `Read` for listings), so an org the caller has no role in answers exactly
//! like one that does not exist. Every write is audited on the org's chain (personal tokens, which belong to no
//! org, on the instance chain), and every change to who may do what drops this replica's cached grants. A token's
//! text leaves the server once, in the answer that created it; it is never logged or audited.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::access::org_not_found;
use super::auth::{Auth, Principal};
use super::body::JsonBody;
use super::error::{ApiError, Success};
use super::{AppState, ClientAddr};
use crate::core::audit::{AuditAction, Outcome};
use crate::core::authz::{Action, Role};
use crate::core::keys::Name;
use crate::core::text;
use crate::core::tokens::AccessToken;
use crate::store::identity::{AddedMember, GrantRecord, MemberRecord, NewUser, Revoked, TeamRecord};
use crate::store::{Inserted, OrgRecord, TokenKind, TokenRecord, UserRecord};
use crate::wire::SecretText;
use crate::wire::admin::{
    AddMemberRequest, AddMemberResponse, CreateOrgRequest, CreateTeamRequest, CreateTokenRequest, CreatedToken,
    CurrentUser, DeleteGrantQuery, GrantInfo, GrantList, MemberInfo, MemberList, OrgInfo, OrgList, PutGrantRequest,
    SetRoleRequest, TeamInfo, TeamList, TokenInfo, TokenList, UserOrg,
};

/// The longest lifetime a token may be given, in days.
pub const MAX_TOKEN_DAYS: u32 = 365;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

fn valid_name(what: &str, s: &str) -> Result<Name, ApiError> {
    s.parse::<Name>()
        .map_err(|e| ApiError::bad_request(format!("invalid {what} {s:?}: {e}")))
}

fn parse_role(s: &str) -> Result<Role, ApiError> {
    s.parse::<Role>().map_err(|e| ApiError::bad_request(e.to_string()))
}

fn member_not_found(org: &str, login: &str) -> ApiError {
    ApiError::not_found(format!("'{login}' is not a member of organization '{org}'"))
}

fn team_not_found(org: &str, team: &str) -> ApiError {
    ApiError::not_found(format!("team '{team}' not found in organization '{org}'"))
}

fn token_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("token '{id}' not found"))
}

/// The org named `org`, once the caller may do `action` on it (the handler's one access decision).
async fn org_for(
    app: &AppState,
    p: &Principal,
    source: &str,
    org: &str,
    action: Action,
) -> Result<Arc<OrgRecord>, ApiError> {
    let (record, access) = app.org_access(p, source, org).await?;
    app.authorize(p, source, (&record, &access), (None, None), action, || {
        org_not_found(org)
    })
    .await?;
    Ok(record)
}

/// The member `login` of `org`.
async fn member_user(app: &AppState, org: &OrgRecord, login: &str) -> Result<UserRecord, ApiError> {
    let user = app
        .store
        .user_by_login(login)
        .await?
        .ok_or_else(|| member_not_found(&org.name, login))?;
    if !app.store.is_member(&org.id, &user.id).await? {
        return Err(member_not_found(&org.name, login));
    }
    Ok(user)
}

fn member_info(m: &MemberRecord) -> MemberInfo {
    MemberInfo {
        login: m.user.login.clone(),
        name: m.user.display_name.clone(),
        role: m.role.unwrap_or(Role::None).to_string(),
        joined_ms: m.joined_ms,
    }
}

async fn member_of(app: &AppState, org: &OrgRecord, user_id: &str) -> Result<MemberInfo, ApiError> {
    let members = app.store.members(&org.id).await?;
    members
        .iter()
        .find(|m| m.user.id == user_id)
        .map(member_info)
        .ok_or_else(|| ApiError::not_found("member not found"))
}

fn org_info(o: &OrgRecord) -> OrgInfo {
    OrgInfo {
        name: o.name.clone(),
        created_ms: o.created_ms,
    }
}

/// The orgs a caller can use: every org for the instance administrator, the member orgs of a user, the own org of
/// an organization or team token.
async fn orgs_of(app: &AppState, p: &Principal) -> Result<Vec<OrgRecord>, ApiError> {
    if p.instance_admin {
        return Ok(app.store.orgs().await?);
    }
    match (p.kind, &p.user_id, &p.org_id) {
        (TokenKind::Personal, Some(user), _) => Ok(app.store.orgs_of_user(user).await?),
        (TokenKind::Team | TokenKind::Organization, _, Some(org)) => {
            Ok(app.store.org_by_id(org).await?.into_iter().collect())
        }
        _ => Ok(Vec::new()),
    }
}

/// `GET /api/user`
pub async fn current_user(State(app): State<Arc<AppState>>, Auth(p): Auth) -> Result<Json<CurrentUser>, ApiError> {
    let orgs = orgs_of(&app, &p).await?;
    let own_org = || orgs.first().map(|o| o.name.clone()).unwrap_or_default();
    let (login, name) = match p.kind {
        TokenKind::Personal => {
            let login = p.user_login.clone().unwrap_or_default();
            let name = app
                .store
                .user_by_login(&login)
                .await?
                .map(|u| u.display_name)
                .unwrap_or_else(|| login.clone());
            (login, name)
        }
        TokenKind::Organization => {
            let login = format!("org:{}", own_org());
            (login.clone(), login)
        }
        TokenKind::Team => {
            let team = match &p.team_id {
                Some(id) => app.store.team_by_id(id).await?.map(|t| t.name),
                None => None,
            };
            let login = format!("team:{}/{}", own_org(), team.unwrap_or_default());
            (login.clone(), login)
        }
    };
    Ok(Json(CurrentUser {
        github_login: login,
        name,
        email: String::new(),
        avatar_url: String::new(),
        organizations: orgs
            .iter()
            .map(|o| UserOrg {
                github_login: o.name.clone(),
                name: o.name.clone(),
            })
            .collect(),
    }))
}

/// `GET /api/sesame/v1/orgs`
pub async fn list_orgs(State(app): State<Arc<AppState>>, Auth(p): Auth) -> Result<Json<OrgList>, ApiError> {
    let orgs = orgs_of(&app, &p).await?;
    Ok(Json(OrgList {
        orgs: orgs.iter().map(org_info).collect(),
    }))
}

/// `POST /api/sesame/v1/orgs` (instance administrator only)
pub async fn create_org(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(addr): ClientAddr,
    JsonBody(req): JsonBody<CreateOrgRequest>,
) -> Result<(StatusCode, Json<OrgInfo>), ApiError> {
    let decision = if p.instance_admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only the instance administrator may create organizations",
        ))
    };
    app.audit_refusal(&p, &addr, "orgs", decision).await?;
    let name = valid_name("organization name", &req.name)?;
    let org = OrgRecord {
        id: uuid::Uuid::now_v7().to_string(),
        name: name.to_string(),
        created_ms: app.clock.now_ms(),
    };
    let event = app.event(Some(&p), &addr, Some(&org.id), AuditAction::OrgCreate, &org.name);
    if app.store.insert_org(&org, &event).await? == Inserted::AlreadyExists {
        return Err(ApiError::conflict(format!("organization '{name}' exists already")));
    }
    tracing::info!(org = %org.name, "organization created");
    Ok(Success::Created.with(Json(org_info(&org))))
}

/// `GET /api/sesame/v1/orgs/{org}/members`
pub async fn list_members(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(addr): ClientAddr,
    Path(org): Path<String>,
) -> Result<Json<MemberList>, ApiError> {
    let org = org_for(&app, &p, &addr, &org, Action::Read).await?;
    let members = app.store.members(&org.id).await?;
    Ok(Json(MemberList {
        members: members.iter().map(member_info).collect(),
    }))
}

/// `POST /api/sesame/v1/orgs/{org}/members`. The instance administrator adds a user directly (created, with a
/// first personal token, when new: `201`); an org administrator invites the login instead (`202`, see
/// [`super::invitations`]), so nobody joins an org without consenting.
pub async fn add_member(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(addr): ClientAddr,
    Path(org): Path<String>,
    JsonBody(req): JsonBody<AddMemberRequest>,
) -> Result<Response, ApiError> {
    let org = org_for(&app, &p, &addr, &org, Action::ManageAccess).await?;
    let login = valid_name("login", &req.login)?;
    if let Some(name) = &req.name {
        text::check("display name", name, text::MAX_DISPLAY_NAME, text::Lines::Single)?;
    }
    let role = parse_role(&req.role)?;
    if !p.instance_admin {
        return super::invitations::invite(&app, &p, &addr, &org, &login, role).await;
    }
    let now = app.clock.now_ms();
    let token = AccessToken::generate(&mut rand::rng());
    let user_id = uuid::Uuid::now_v7().to_string();
    let new_user = NewUser {
        user: UserRecord {
            id: user_id.clone(),
            login: login.to_string(),
            display_name: req
                .name
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| login.to_string()),
            instance_admin: false,
            created_ms: now,
        },
        token: TokenRecord {
            id: uuid::Uuid::now_v7().to_string(),
            token_hash: token.hash(),
            kind: TokenKind::Personal,
            user_id: Some(user_id),
            org_id: None,
            team_id: None,
            description: format!("first token of {login}"),
            created_ms: now,
            expires_ms: None,
            revoked_ms: None,
            parent_id: None,
        },
    };
    let event = app.event(
        Some(&p),
        &addr,
        Some(&org.id),
        AuditAction::MemberAdd,
        &format!("{}/{login}", org.name),
    );
    let first_token = &new_user.token.id;
    let audit = |added: &AddedMember| {
        event.clone().detail(if added.created_user {
            format!("role {role}; new user, personal token {first_token}")
        } else {
            format!("role {role}")
        })
    };
    let added = app
        .store
        .add_member(&org.id, login.as_str(), &new_user, role, now, &audit)
        .await?;
    if added.inserted == Inserted::AlreadyExists {
        return Err(ApiError::conflict(format!(
            "'{login}' is a member of '{}' already; change the role with PATCH",
            org.name
        )));
    }
    app.forget_access();
    let member = member_of(&app, &org, &added.user.id).await?;
    Ok(Success::Created
        .with(Json(AddMemberResponse {
            member,
            token: added.created_user.then(|| SecretText::new(token.expose().to_owned())),
        }))
        .into_response())
}

/// `PATCH /api/sesame/v1/orgs/{org}/members/{login}`
pub async fn set_member_role(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(addr): ClientAddr,
    Path((org, login)): Path<(String, String)>,
    JsonBody(req): JsonBody<SetRoleRequest>,
) -> Result<Json<MemberInfo>, ApiError> {
    let org = org_for(&app, &p, &addr, &org, Action::ManageAccess).await?;
    let role = parse_role(&req.role)?;
    let user = member_user(&app, &org, &login).await?;
    let event = app
        .event(
            Some(&p),
            &addr,
            Some(&org.id),
            AuditAction::MemberRole,
            &format!("{}/{login}", org.name),
        )
        .detail(format!("role {role}"));
    if !app
        .store
        .set_member_role(&org.id, &user.id, role, app.clock.now_ms(), &event)
        .await?
    {
        return Err(member_not_found(&org.name, &login));
    }
    app.forget_access();
    Ok(Json(member_of(&app, &org, &user.id).await?))
}

/// `DELETE /api/sesame/v1/orgs/{org}/members/{login}`: the user leaves the org, its teams there and its grants.
pub async fn remove_member(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(addr): ClientAddr,
    Path((org, login)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let org = org_for(&app, &p, &addr, &org, Action::ManageAccess).await?;
    let user = member_user(&app, &org, &login).await?;
    let event = app.event(
        Some(&p),
        &addr,
        Some(&org.id),
        AuditAction::MemberRemove,
        &format!("{}/{login}", org.name),
    );
    if !app.store.remove_member(&org.id, &user.id, &event).await? {
        return Err(member_not_found(&org.name, &login));
    }
    app.forget_access();
    Ok(Success::NoContent.status())
}

/// `GET /api/sesame/v1/orgs/{org}/teams`
pub async fn list_teams(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(addr): ClientAddr,
    Path(org): Path<String>,
) -> Result<Json<TeamList>, ApiError> {
    let org = org_for(&app, &p, &addr, &org, Action::Read).await?;
    let teams = app.store.teams(&org.id).await?;
    Ok(Json(TeamList {
        teams: teams
            .into_iter()
            .map(|t| TeamInfo {
                name: t.team.name,
                description: t.team.description,
                members: t.members,
                created_ms: t.team.created_ms,
            })
            .collect(),
    }))
}

/// `POST /api/sesame/v1/orgs/{org}/teams`
pub async fn create_team(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(addr): ClientAddr,
    Path(org): Path<String>,
    JsonBody(req): JsonBody<CreateTeamRequest>,
) -> Result<(StatusCode, Json<TeamInfo>), ApiError> {
    let org = org_for(&app, &p, &addr, &org, Action::ManageAccess).await?;
    let name = valid_name("team name", &req.name)?;
    text::check(
        "team description",
        &req.description,
        text::MAX_DESCRIPTION,
        text::Lines::Multi,
    )?;
    let team = TeamRecord {
        id: uuid::Uuid::now_v7().to_string(),
        org_id: org.id.clone(),
        name: name.to_string(),
        description: req.description,
        created_ms: app.clock.now_ms(),
    };
    let event = app.event(
        Some(&p),
        &addr,
        Some(&org.id),
        AuditAction::TeamCreate,
        &format!("{}/{name}", org.name),
    );
    if app.store.insert_team(&team, &event).await? == Inserted::AlreadyExists {
        return Err(ApiError::conflict(format!(
            "organization '{}' has a team '{name}' already",
            org.name
        )));
    }
    Ok(Success::Created.with(Json(TeamInfo {
        name: team.name,
        description: team.description,
        members: Vec::new(),
        created_ms: team.created_ms,
    })))
}

/// `DELETE /api/sesame/v1/orgs/{org}/teams/{team}`: the team, its memberships and grants go; its tokens are
/// revoked.
pub async fn delete_team(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(addr): ClientAddr,
    Path((org, team)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let org = org_for(&app, &p, &addr, &org, Action::ManageAccess).await?;
    let record = app
        .store
        .team_by_name(&org.id, &team)
        .await?
        .ok_or_else(|| team_not_found(&org.name, &team))?;
    let event = app.event(
        Some(&p),
        &addr,
        Some(&org.id),
        AuditAction::TeamDelete,
        &format!("{}/{team}", org.name),
    );
    let audit = |revoked: &Vec<String>| {
        event.clone().detail(if revoked.is_empty() {
            String::new()
        } else {
            format!("revoked team tokens {}", revoked.join(", "))
        })
    };
    app.store
        .delete_team(&record.id, app.clock.now_ms(), &audit)
        .await?
        .ok_or_else(|| team_not_found(&org.name, &team))?;
    app.tokens.invalidate_all();
    app.forget_access();
    Ok(Success::NoContent.status())
}

/// `PUT /api/sesame/v1/orgs/{org}/teams/{team}/members/{login}` (the user must be a member of the org)
pub async fn add_team_member(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(addr): ClientAddr,
    Path((org, team, login)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let org = org_for(&app, &p, &addr, &org, Action::ManageAccess).await?;
    let record = app
        .store
        .team_by_name(&org.id, &team)
        .await?
        .ok_or_else(|| team_not_found(&org.name, &team))?;
    let user = member_user(&app, &org, &login).await?;
    let event = app.event(
        Some(&p),
        &addr,
        Some(&org.id),
        AuditAction::TeamMemberAdd,
        &format!("{}/{team}/{login}", org.name),
    );
    let inserted = app
        .store
        .add_team_member(&record.id, &user.id, app.clock.now_ms(), &event)
        .await?;
    if inserted == Inserted::New {
        app.forget_access();
    }
    Ok(Success::NoContent.status())
}

/// `DELETE /api/sesame/v1/orgs/{org}/teams/{team}/members/{login}`
pub async fn remove_team_member(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(addr): ClientAddr,
    Path((org, team, login)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let org = org_for(&app, &p, &addr, &org, Action::ManageAccess).await?;
    let record = app
        .store
        .team_by_name(&org.id, &team)
        .await?
        .ok_or_else(|| team_not_found(&org.name, &team))?;
    let not_in_team = || ApiError::not_found(format!("'{login}' is not in team '{team}'"));
    let user = app.store.user_by_login(&login).await?.ok_or_else(not_in_team)?;
    let event = app.event(
        Some(&p),
        &addr,
        Some(&org.id),
        AuditAction::TeamMemberRemove,
        &format!("{}/{team}/{login}", org.name),
    );
    if !app.store.remove_team_member(&record.id, &user.id, &event).await? {
        return Err(not_in_team());
    }
    app.forget_access();
    Ok(Success::NoContent.status())
}

/// `GET /api/sesame/v1/orgs/{org}/roles`
pub async fn list_roles(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(addr): ClientAddr,
    Path(org): Path<String>,
) -> Result<Json<GrantList>, ApiError> {
    let org = org_for(&app, &p, &addr, &org, Action::Read).await?;
    let grants = app.store.grants(&org.id).await?;
    Ok(Json(GrantList {
        roles: grants
            .into_iter()
            .map(|g| GrantInfo {
                subject: g.subject_name,
                project: g.grant.project,
                environment: g.grant.env,
                role: g.grant.role.to_string(),
            })
            .collect(),
    }))
}

/// A subject as people write it, `user:<login>` or `team:<name>`.
enum SubjectName<'a> {
    User(&'a str),
    Team(&'a str),
}

fn parse_subject(s: &str) -> Result<SubjectName<'_>, ApiError> {
    match s.split_once(':') {
        Some(("user", login)) if !login.is_empty() => Ok(SubjectName::User(login)),
        Some(("team", team)) if !team.is_empty() => Ok(SubjectName::Team(team)),
        _ => Err(ApiError::bad_request(format!(
            "invalid subject {s:?}: use user:<login> or team:<name>"
        ))),
    }
}

/// The target of a grant, checked: names valid, and no environment without its project.
fn grant_level(project: &str, env: &str) -> Result<(), ApiError> {
    if !project.is_empty() {
        valid_name("project", project)?;
    }
    if !env.is_empty() {
        if project.is_empty() {
            return Err(ApiError::bad_request("an environment grant needs its project"));
        }
        valid_name("environment", env)?;
    }
    Ok(())
}

fn level_text(org: &str, project: &str, env: &str) -> String {
    match (project.is_empty(), env.is_empty()) {
        (true, _) => org.to_owned(),
        (false, true) => format!("{org}/{project}"),
        (false, false) => format!("{org}/{project}/{env}"),
    }
}

/// `PUT /api/sesame/v1/orgs/{org}/roles`: grants a role (replacing the subject's role at that level).
pub async fn put_role(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(addr): ClientAddr,
    Path(org): Path<String>,
    JsonBody(req): JsonBody<PutGrantRequest>,
) -> Result<Json<GrantInfo>, ApiError> {
    let org = org_for(&app, &p, &addr, &org, Action::ManageAccess).await?;
    let role = parse_role(&req.role)?;
    grant_level(&req.project, &req.environment)?;
    let subject = match parse_subject(&req.subject)? {
        SubjectName::User(login) => format!("user:{}", member_user(&app, &org, login).await?.id),
        SubjectName::Team(team) => {
            let t = app
                .store
                .team_by_name(&org.id, team)
                .await?
                .ok_or_else(|| team_not_found(&org.name, team))?;
            format!("team:{}", t.id)
        }
    };
    let event = app
        .event(
            Some(&p),
            &addr,
            Some(&org.id),
            AuditAction::RoleGrant,
            &level_text(&org.name, &req.project, &req.environment),
        )
        .detail(format!("{} {role}", req.subject));
    let grant = GrantRecord {
        org_id: org.id.clone(),
        subject,
        project: req.project.clone(),
        env: req.environment.clone(),
        role,
        created_ms: app.clock.now_ms(),
    };
    app.store.put_grant(&grant, &event).await?;
    app.forget_access();
    Ok(Json(GrantInfo {
        subject: req.subject,
        project: req.project,
        environment: req.environment,
        role: role.to_string(),
    }))
}

/// `DELETE /api/sesame/v1/orgs/{org}/roles?subject=…&project=…&environment=…`
pub async fn delete_role(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(addr): ClientAddr,
    Path(org): Path<String>,
    Query(q): Query<DeleteGrantQuery>,
) -> Result<StatusCode, ApiError> {
    let org = org_for(&app, &p, &addr, &org, Action::ManageAccess).await?;
    // A subject is looked up by login or team name; one no longer found is taken as the id the listing shows for
    // grants whose user or team is gone.
    let subject = match parse_subject(&q.subject)? {
        SubjectName::User(login) => match app.store.user_by_login(login).await? {
            Some(u) => format!("user:{}", u.id),
            None => format!("user:{login}"),
        },
        SubjectName::Team(team) => match app.store.team_by_name(&org.id, team).await? {
            Some(t) => format!("team:{}", t.id),
            None => format!("team:{team}"),
        },
    };
    let event = app
        .event(
            Some(&p),
            &addr,
            Some(&org.id),
            AuditAction::RoleRevoke,
            &level_text(&org.name, &q.project, &q.environment),
        )
        .detail(q.subject.clone());
    if !app
        .store
        .delete_grant(&org.id, &subject, &q.project, &q.environment, &event)
        .await?
    {
        return Err(ApiError::not_found(format!(
            "{} holds no grant on {}",
            q.subject,
            level_text(&org.name, &q.project, &q.environment)
        )));
    }
    app.forget_access();
    Ok(Success::NoContent.status())
}

async fn token_info(app: &AppState, t: &TokenRecord, user_login: Option<&str>) -> Result<TokenInfo, ApiError> {
    let org = match &t.org_id {
        Some(id) => app.store.org_by_id(id).await?.map(|o| o.name),
        None => None,
    };
    let team = match &t.team_id {
        Some(id) => app.store.team_by_id(id).await?.map(|t| t.name),
        None => None,
    };
    Ok(TokenInfo {
        id: t.id.clone(),
        kind: t.kind.as_str().to_owned(),
        user: user_login.map(str::to_owned),
        org,
        team,
        description: t.description.clone(),
        created_ms: t.created_ms,
        expires_ms: t.expires_ms,
        revoked_ms: t.revoked_ms,
        parent_id: t.parent_id.clone(),
    })
}

/// The expiry of a token made by a token expiring at `parent` (`None`: never). A child never outlives its parent:
/// with no `expiresInDays` it expires with the parent; an `expiresInDays` reaching past the parent's expiry is
/// refused (400), naming the most it may ask for.
fn child_expiry(days: Option<u32>, parent: Option<i64>, now: i64) -> Result<Option<i64>, ApiError> {
    let wanted = match days {
        None => return Ok(parent),
        Some(days @ 1..=MAX_TOKEN_DAYS) => now + i64::from(days) * DAY_MS,
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "expiresInDays must be between 1 and {MAX_TOKEN_DAYS}"
            )));
        }
    };
    match parent {
        Some(limit) if wanted > limit => Err(ApiError::bad_request(format!(
            "a token cannot outlive the token that makes it: yours expires {}, so expiresInDays may be at most {} \
             (or leave it out to expire together)",
            crate::core::timefmt::rfc3339(limit),
            (limit - now).max(0) / DAY_MS
        ))),
        _ => Ok(Some(wanted)),
    }
}

/// `POST /api/sesame/v1/tokens`: a personal token for the caller, or (org admins) a team or organization token.
pub async fn create_token(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(addr): ClientAddr,
    JsonBody(req): JsonBody<CreateTokenRequest>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    text::check(
        "token description",
        &req.description,
        text::MAX_DESCRIPTION,
        text::Lines::Multi,
    )?;
    let now = app.clock.now_ms();
    let expires_ms = child_expiry(req.expires_in_days, p.expires_ms(), now)?;
    let (kind, user_id, org, team) = match TokenKind::parse(&req.kind) {
        Some(TokenKind::Personal) => {
            if req.org.is_some() || req.team.is_some() {
                return Err(ApiError::bad_request("a personal token names no org or team"));
            }
            let (TokenKind::Personal, Some(user)) = (p.kind, &p.user_id) else {
                return Err(ApiError::bad_request(
                    "personal tokens belong to users; this token acts for an org or a team",
                ));
            };
            (TokenKind::Personal, Some(user.clone()), None, None)
        }
        Some(kind @ (TokenKind::Organization | TokenKind::Team)) => {
            let Some(org_name) = &req.org else {
                return Err(ApiError::bad_request(format!("a {kind} token needs \"org\"")));
            };
            match (kind, &req.team) {
                (TokenKind::Organization, Some(_)) => {
                    return Err(ApiError::bad_request("an organization token names no team"));
                }
                (TokenKind::Team, None) => return Err(ApiError::bad_request("a team token needs \"team\"")),
                _ => {}
            }
            let org = org_for(&app, &p, &addr, org_name, Action::ManageAccess).await?;
            match &req.team {
                None => (TokenKind::Organization, None, Some(org), None),
                Some(team_name) => {
                    let team = app
                        .store
                        .team_by_name(&org.id, team_name)
                        .await?
                        .ok_or_else(|| team_not_found(&org.name, team_name))?;
                    (TokenKind::Team, None, Some(org), Some(team))
                }
            }
        }
        _ => {
            return Err(ApiError::bad_request(format!(
                "unknown token kind {:?}: use personal, team or organization",
                req.kind
            )));
        }
    };
    let token = AccessToken::generate(&mut rand::rng());
    let record = TokenRecord {
        id: uuid::Uuid::now_v7().to_string(),
        token_hash: token.hash(),
        kind,
        user_id,
        org_id: org.as_ref().map(|o| o.id.clone()),
        team_id: team.as_ref().map(|t| t.id.clone()),
        description: req.description,
        created_ms: now,
        expires_ms,
        revoked_ms: None,
        parent_id: Some(p.token_id.clone()),
    };
    let owner = match (&org, &team) {
        (Some(o), Some(t)) => format!("team {}/{}", o.name, t.name),
        (Some(o), None) => format!("organization {}", o.name),
        _ => format!("user {}", p.user_login.as_deref().unwrap_or("")),
    };
    let event = app
        .event(
            Some(&p),
            &addr,
            org.as_ref().map(|o| o.id.as_str()),
            AuditAction::TokenCreate,
            &record.id,
        )
        .detail(format!(
            "{} token for {owner}{}, made by token {}",
            kind,
            match expires_ms {
                Some(at) => format!(", expires {}", crate::core::timefmt::rfc3339(at)),
                None => String::new(),
            },
            p.token_id
        ));
    if !app.store.insert_token(&record, &event).await? {
        // The calling token was revoked since this replica cached it: refused like any revoked token.
        app.tokens.invalidate_all();
        return Err(ApiError::unauthorized("invalid, expired or revoked access token"));
    }
    let login = (kind == TokenKind::Personal)
        .then_some(p.user_login.as_deref())
        .flatten();
    let info = token_info(&app, &record, login).await?;
    Ok(Success::Created.with(Json(CreatedToken {
        info,
        token: SecretText::new(token.expose().to_owned()),
    })))
}

/// Query of `GET /api/sesame/v1/tokens`.
#[derive(Debug, Deserialize)]
pub struct TokenListQuery {
    /// List this org's organization and team tokens instead of the caller's personal ones.
    #[serde(default)]
    pub org: Option<String>,
}

/// `GET /api/sesame/v1/tokens[?org=…]`
pub async fn list_tokens(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(addr): ClientAddr,
    Query(q): Query<TokenListQuery>,
) -> Result<Json<TokenList>, ApiError> {
    let records = match &q.org {
        Some(org) => {
            let org = org_for(&app, &p, &addr, org, Action::ManageAccess).await?;
            app.store.tokens_of_org(&org.id).await?
        }
        None => match (p.kind, &p.user_id) {
            (TokenKind::Personal, Some(user)) => app.store.tokens_of_user(user).await?,
            _ => Vec::new(),
        },
    };
    let mut tokens = Vec::with_capacity(records.len());
    for t in &records {
        let login = (t.kind == TokenKind::Personal)
            .then_some(p.user_login.as_deref())
            .flatten();
        tokens.push(token_info(&app, t, login).await?);
    }
    Ok(Json(TokenList { tokens }))
}

/// `DELETE /api/sesame/v1/tokens/{id}`: the caller's own token, an org or team token of an org the caller
/// administers, or any token for the instance administrator; every token it made (transitively) is revoked with it. Refused at once on this replica; other replicas stop
/// accepting it within their token cache's lifetime.
pub async fn revoke_token(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(addr): ClientAddr,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let record = app.store.token_by_id(&id).await?.ok_or_else(|| token_not_found(&id))?;
    let own = record.user_id.is_some() && record.user_id == p.user_id;
    let chain = match (&record.org_id, own || p.instance_admin) {
        (_, true) => record.org_id.clone(),
        (Some(org_id), false) => {
            let Some(org) = app.store.org_by_id(org_id).await? else {
                return Err(token_not_found(&id));
            };
            // The org's name must not leak to a caller who cannot see it: its 404 becomes the token's.
            let (org, access) = app
                .org_access(&p, &addr, &org.name)
                .await
                .map_err(|e| if e.is_not_found() { token_not_found(&id) } else { e })?;
            app.authorize(&p, &addr, (&org, &access), (None, None), Action::ManageAccess, || {
                token_not_found(&id)
            })
            .await?;
            Some(org.id.clone())
        }
        (None, false) => {
            // Someone else's personal token: answered like a missing one, and audited.
            let event = app
                .event(Some(&p), &addr, None, AuditAction::TokenRevoke, &id)
                .outcome(Outcome::Denied)
                .detail("not the caller's token");
            app.record(event).await?;
            return Err(token_not_found(&id));
        }
    };
    let event = app.event(Some(&p), &addr, chain.as_deref(), AuditAction::TokenRevoke, &id);
    let audit = |revoked: &Revoked| {
        event.clone().detail(format!(
            "{} token{}{}",
            record.kind,
            if revoked.revoked { "" } else { " (revoked already)" },
            if revoked.descendants.is_empty() {
                String::new()
            } else {
                format!("; with the tokens it made: {}", revoked.descendants.join(", "))
            }
        ))
    };
    app.store.revoke_token(&id, app.clock.now_ms(), &audit).await?;
    app.tokens.invalidate_all();
    Ok(Success::NoContent.status())
}
