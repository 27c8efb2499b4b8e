//! Invitations: how an org administrator brings an existing user into the org — only with the user's consent.
//!
//! An org administrator's `POST /api/sesame/v1/orgs/{org}/members` records an invitation by login and answers
//! `202` with it, with the same status and body whether or not the login exists (no display name, no hint), so
//! the endpoint tells nothing about who has an account. The user sees it under `GET /api/sesame/v1/invitations`
//! and joins by accepting it (`POST …/invitations/{id}/accept`) or drops it (`…/decline`); until then the user is
//! not a member and nothing of theirs reaches the org. Org administrators list their org's pending invitations and
//! withdraw them. Only the instance administrator adds users directly (creating new ones with their first token).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::access::org_not_found;
use super::auth::{Auth, Principal};
use super::error::{ApiError, Success};
use crate::core::audit::AuditAction;
use crate::core::authz::{Action, Role};
use crate::core::keys::Name;
use crate::server::auth::Caller;
use crate::store::identity::InvitationRecord;
use crate::store::{OrgRecord, TokenKind, UserRecord};
use crate::wire::admin::{AcceptedInvitation, InvitationInfo, InvitationList, InvitedMember};

fn invitation_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("invitation '{id}' not found"))
}

fn info(inv: &InvitationRecord, org: &str) -> InvitationInfo {
    InvitationInfo {
        id: inv.id.clone(),
        org: org.to_owned(),
        login: inv.login.clone(),
        role: inv.role.to_string(),
        invited_by: inv.invited_by.clone(),
        created_ms: inv.created_ms,
    }
}

/// Who an invitation says invited: the inviter's login, or the org or team token's name.
async fn inviter(app: &AppState, p: &Principal, org: &OrgRecord) -> Result<String, ApiError> {
    Ok(match p.kind {
        TokenKind::Personal => p.user_login.clone().unwrap_or_default(),
        TokenKind::Organization => format!("org:{}", org.name),
        TokenKind::Team => {
            let team = match &p.team_id {
                Some(id) => app.store.team_by_id(id).await?.map(|t| t.name),
                None => None,
            };
            format!("team:{}/{}", org.name, team.unwrap_or_default())
        }
    })
}

/// The most invitations one org may have pending.
pub const MAX_PENDING_PER_ORG: usize = 1_000;

/// An org administrator's `POST …/orgs/{org}/members`: invites `login` with `role`. The caller was authorized
/// already. A login that is a member already answers 409 (members are visible to org administrators anyway);
/// every other login — existing or not — gets the same `202` and body (at most [`MAX_PENDING_PER_ORG`] pending).
pub async fn invite(
    app: &AppState,
    p: &Principal,
    source: &str,
    org: &OrgRecord,
    login: &Name,
    role: Role,
) -> Result<Response, ApiError> {
    if app
        .store
        .members(&org.id)
        .await?
        .iter()
        .any(|m| m.user.login == login.as_str())
    {
        return Err(ApiError::conflict(format!(
            "'{login}' is a member of '{}' already; change the role with PATCH",
            org.name
        )));
    }
    // Pending invitations are stored objects an org admin makes at will: bounded per org (a renewed invitation of
    // the same login replaces its own and is always allowed).
    let pending = app.store.invitations_of_org(&org.id).await?;
    if pending.len() >= MAX_PENDING_PER_ORG && !pending.iter().any(|i| i.login == login.as_str()) {
        return Err(ApiError::bad_request(format!(
            "'{}' has {MAX_PENDING_PER_ORG} pending invitations, the most an org may have; withdraw some first",
            org.name
        )));
    }
    let invitation = InvitationRecord {
        id: uuid::Uuid::now_v7().to_string(),
        org_id: org.id.clone(),
        login: login.to_string(),
        role,
        invited_by: inviter(app, p, org).await?,
        created_ms: app.clock.now_ms(),
    };
    let event = app.event(
        Some(p),
        source,
        Some(&org.id),
        AuditAction::MemberInvite,
        &format!("{}/{login}", org.name),
    );
    let audit = |stored: &InvitationRecord| event.clone().detail(format!("role {role}; invitation {}", stored.id));
    let stored = app.store.invite(&invitation, &audit).await?;
    Ok(Success::Accepted
        .with(Json(InvitedMember {
            invitation: info(&stored, &org.name),
        }))
        .into_response())
}

/// The user a personal token acts as; other tokens have no invitations.
async fn caller_user(app: &AppState, p: &Principal) -> Result<Option<UserRecord>, ApiError> {
    match (p.kind, &p.user_login) {
        // A confined token (minted by exchange) acts in its org only: it cannot join others.
        (TokenKind::Personal, Some(_)) if p.confined_org_id.is_some() => Ok(None),
        (TokenKind::Personal, Some(login)) => Ok(app.store.user_by_login(login).await?),
        _ => Ok(None),
    }
}

/// `GET /api/sesame/v1/invitations`: the invitations addressed to the caller.
pub async fn list_mine(State(app): State<Arc<AppState>>, Auth(p): Auth) -> Result<Json<InvitationList>, ApiError> {
    let invitations = match caller_user(&app, &p).await? {
        Some(user) => app
            .store
            .invitations_for(&user.login)
            .await?
            .iter()
            .map(|(inv, org)| info(inv, org))
            .collect(),
        None => Vec::new(),
    };
    Ok(Json(InvitationList { invitations }))
}

/// `POST /api/sesame/v1/invitations/{id}/accept`: the caller joins the org with the invitation's role.
pub async fn accept(
    Caller(app, p, addr): Caller,
    Path(id): Path<String>,
) -> Result<Json<AcceptedInvitation>, ApiError> {
    let user = caller_user(&app, &p).await?.ok_or_else(|| invitation_not_found(&id))?;
    // The org's name, for the record written with the acceptance (orgs are never renamed).
    let org_name = app
        .store
        .invitations_for(&user.login)
        .await?
        .into_iter()
        .find(|(inv, _)| inv.id == id)
        .map(|(_, org)| org)
        .ok_or_else(|| invitation_not_found(&id))?;
    let audit = |inv: &InvitationRecord| {
        app.event(
            Some(&p),
            &addr,
            Some(&inv.org_id),
            AuditAction::MemberJoin,
            &format!("{org_name}/{}", user.login),
        )
        .detail(format!(
            "accepted invitation {} (role {}) from {}",
            inv.id, inv.role, inv.invited_by
        ))
    };
    let inv = app
        .store
        .accept_invitation(&id, &user, app.clock.now_ms(), &audit)
        .await?
        .ok_or_else(|| invitation_not_found(&id))?;
    app.forget_access();
    let member = app
        .store
        .members(&inv.org_id)
        .await?
        .into_iter()
        .find(|m| m.user.id == user.id);
    Ok(Json(AcceptedInvitation {
        org: org_name,
        role: member.and_then(|m| m.role).unwrap_or(Role::None).to_string(),
    }))
}

/// `POST /api/sesame/v1/invitations/{id}/decline`: the invitation is dropped; the caller does not join.
pub async fn decline(Caller(app, p, addr): Caller, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let user = caller_user(&app, &p).await?.ok_or_else(|| invitation_not_found(&id))?;
    let audit = |inv: &InvitationRecord| {
        let event = app.event(
            Some(&p),
            &addr,
            Some(&inv.org_id),
            AuditAction::MemberDecline,
            &user.login,
        );
        event.detail(format!("declined invitation {}", inv.id))
    };
    app.store
        .decline_invitation(&id, &user.login, &audit)
        .await?
        .ok_or_else(|| invitation_not_found(&id))?;
    Ok(Success::NoContent.status())
}

/// The org named `org`, once the caller may manage its access.
async fn managed_org(app: &AppState, p: &Principal, source: &str, org: &str) -> Result<Arc<OrgRecord>, ApiError> {
    let (record, access) = app.org_access(p, source, org).await?;
    app.authorize(
        p,
        source,
        (&record, &access),
        (None, None),
        Action::ManageAccess,
        || org_not_found(org),
    )
    .await?;
    Ok(record)
}

/// `GET /api/sesame/v1/orgs/{org}/invitations` (org administrators): the org's pending invitations.
pub async fn list_org(Caller(app, p, addr): Caller, Path(org): Path<String>) -> Result<Json<InvitationList>, ApiError> {
    let org = managed_org(&app, &p, &addr, &org).await?;
    let invitations = app.store.invitations_of_org(&org.id).await?;
    Ok(Json(InvitationList {
        invitations: invitations.iter().map(|i| info(i, &org.name)).collect(),
    }))
}

/// `DELETE /api/sesame/v1/orgs/{org}/invitations/{login}` (org administrators): withdraws an invitation.
pub async fn withdraw(
    Caller(app, p, addr): Caller,
    Path((org, login)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let org = managed_org(&app, &p, &addr, &org).await?;
    let event = app.event(
        Some(&p),
        &addr,
        Some(&org.id),
        AuditAction::MemberInviteWithdraw,
        &format!("{}/{login}", org.name),
    );
    if !app.store.withdraw_invitation(&org.id, &login, &event).await? {
        return Err(ApiError::not_found(format!(
            "no pending invitation of '{login}' to '{}'",
            org.name
        )));
    }
    Ok(Success::NoContent.status())
}
