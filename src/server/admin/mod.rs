//! The access-administration API: `GET /api/user` (what the Pulumi and ESC CLIs ask at login) and, under
//! `/api/sesame/v1`, orgs, members, teams, role grants and access tokens, one file a resource: [`orgs`] (the
//! current user and orgs), [`members`], [`teams`], [`roles`] (grants), [`tokens`]. This file holds what they share.
//!
//! Every handler makes one access decision through [`AppState::org_access`] and [`AppState::authorize`]
//! (`ManageAccess` on the org for writes, `Read` for listings), so an org the caller has no role in answers exactly
//! like one that does not exist. Every write is audited on the org's chain (personal tokens, which belong to no
//! org, on the instance chain), and every change to who may do what drops this replica's cached grants. A token's
//! text leaves the server once, in the answer that created it; it is never logged or audited.

use std::sync::Arc;

use super::AppState;
use super::access::org_not_found;
use super::auth::Principal;
use super::error::ApiError;
use crate::core::audit::{AuditAction, AuditEvent};
use crate::core::authz::{Action, Role};
use crate::core::keys::Name;
use crate::store::identity::TeamRecord;
use crate::store::{OrgRecord, UserRecord};

mod members;
mod orgs;
mod roles;
mod teams;
mod tokens;

pub(crate) use orgs::orgs_of;

pub use members::{add_member, list_members, remove_member, set_member_role};
pub use orgs::{create_org, current_user, list_orgs};
pub use roles::{delete_role, list_roles, put_role};
pub use teams::{add_team_member, create_team, delete_team, list_teams, remove_team_member};
pub use tokens::{MAX_TOKEN_DAYS, TokenListQuery, create_token, list_tokens, revoke_token};

pub(super) fn valid_name(what: &str, s: &str) -> Result<Name, ApiError> {
    s.parse::<Name>()
        .map_err(|e| ApiError::bad_request(format!("invalid {what} {s:?}: {e}")))
}

pub(super) fn parse_role(s: &str) -> Result<Role, ApiError> {
    s.parse::<Role>().map_err(|e| ApiError::bad_request(e.to_string()))
}

pub(super) fn member_not_found(org: &str, login: &str) -> ApiError {
    ApiError::not_found(format!("'{login}' is not a member of organization '{org}'"))
}

pub(super) fn team_not_found(org: &str, team: &str) -> ApiError {
    ApiError::not_found(format!("team '{team}' not found in organization '{org}'"))
}

/// The org named `org`, once the caller may do `action` on it (the handler's one access decision).
pub(super) async fn org_for(
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
pub(super) async fn member_user(app: &AppState, org: &OrgRecord, login: &str) -> Result<UserRecord, ApiError> {
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

/// The team `team` of `org`.
pub(super) async fn team_in(app: &AppState, org: &OrgRecord, team: &str) -> Result<TeamRecord, ApiError> {
    app.store
        .team_by_name(&org.id, team)
        .await?
        .ok_or_else(|| team_not_found(&org.name, team))
}

/// The audit event of the caller's `action` on `<org>/<below>` (a member, a team, a team's member), on `org`'s chain.
pub(super) fn org_event(
    app: &AppState,
    p: &Principal,
    addr: &str,
    org: &OrgRecord,
    action: AuditAction,
    below: &str,
) -> AuditEvent {
    app.event(Some(p), addr, Some(&org.id), action, &format!("{}/{below}", org.name))
}
