//! An org's members (`/api/sesame/v1/orgs/{org}/members`): listed by readers; added (or invited), re-roled and
//! removed by the org's administrators, each change audited and dropping the cached grants.

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{member_not_found, member_user, org_event, org_for, parse_role, valid_name};
use crate::core::audit::AuditAction;
use crate::core::authz::{Action, Role};
use crate::core::text;
use crate::core::tokens::AccessToken;
use crate::server::AppState;
use crate::server::auth::Caller;
use crate::server::body::JsonBody;
use crate::server::error::{ApiError, Success};
use crate::store::identity::{AddedMember, MemberRecord, NewUser};
use crate::store::{Inserted, OrgRecord, TokenKind, TokenRecord, UserRecord};
use crate::wire::SecretText;
use crate::wire::admin::{AddMemberRequest, AddMemberResponse, MemberInfo, MemberList, SetRoleRequest};

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

/// `GET /api/sesame/v1/orgs/{org}/members`
pub async fn list_members(Caller(app, p, addr): Caller, Path(org): Path<String>) -> Result<Json<MemberList>, ApiError> {
    let org = org_for(&app, &p, &addr, &org, Action::Read).await?;
    let members = app.store.members(&org.id).await?;
    Ok(Json(MemberList {
        members: members.iter().map(member_info).collect(),
    }))
}

/// `POST /api/sesame/v1/orgs/{org}/members`. The instance administrator adds a user directly (created, with a
/// first personal token, when new: `201`); an org administrator invites the login instead (`202`, see
/// [`crate::server::invitations`]), so nobody joins an org without consenting.
pub async fn add_member(
    Caller(app, p, addr): Caller,
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
        return crate::server::invitations::invite(&app, &p, &addr, &org, &login, role).await;
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
            confined_org_id: None,
            role_cap: None,
        },
    };
    let event = org_event(&app, &p, &addr, &org, AuditAction::MemberAdd, login.as_str());
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
    Caller(app, p, addr): Caller,
    Path((org, login)): Path<(String, String)>,
    JsonBody(req): JsonBody<SetRoleRequest>,
) -> Result<Json<MemberInfo>, ApiError> {
    let org = org_for(&app, &p, &addr, &org, Action::ManageAccess).await?;
    let role = parse_role(&req.role)?;
    let user = member_user(&app, &org, &login).await?;
    let event = org_event(&app, &p, &addr, &org, AuditAction::MemberRole, &login).detail(format!("role {role}"));
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
    Caller(app, p, addr): Caller,
    Path((org, login)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let org = org_for(&app, &p, &addr, &org, Action::ManageAccess).await?;
    let user = member_user(&app, &org, &login).await?;
    let event = org_event(&app, &p, &addr, &org, AuditAction::MemberRemove, &login);
    if !app.store.remove_member(&org.id, &user.id, &event).await? {
        return Err(member_not_found(&org.name, &login));
    }
    app.forget_access();
    Ok(Success::NoContent.status())
}
