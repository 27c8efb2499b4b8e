//! An org's teams (`/api/sesame/v1/orgs/{org}/teams`): listed by readers; created, deleted (revoking its tokens)
//! and given or relieved of members (who must be members of the org) by the org's administrators.

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;

use super::{member_user, org_event, org_for, team_in, team_not_found, valid_name};
use crate::core::audit::AuditAction;
use crate::core::authz::Action;
use crate::core::text;
use crate::server::auth::Caller;
use crate::server::body::JsonBody;
use crate::server::error::{ApiError, Success};
use crate::store::Inserted;
use crate::store::identity::TeamRecord;
use crate::wire::admin::{CreateTeamRequest, TeamInfo, TeamList};

/// `GET /api/sesame/v1/orgs/{org}/teams`
pub async fn list_teams(Caller(app, p, addr): Caller, Path(org): Path<String>) -> Result<Json<TeamList>, ApiError> {
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
    Caller(app, p, addr): Caller,
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
    let event = org_event(&app, &p, &addr, &org, AuditAction::TeamCreate, name.as_str());
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
    Caller(app, p, addr): Caller,
    Path((org, team)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let org = org_for(&app, &p, &addr, &org, Action::ManageAccess).await?;
    let record = team_in(&app, &org, &team).await?;
    let event = org_event(&app, &p, &addr, &org, AuditAction::TeamDelete, &team);
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
    Caller(app, p, addr): Caller,
    Path((org, team, login)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let org = org_for(&app, &p, &addr, &org, Action::ManageAccess).await?;
    let record = team_in(&app, &org, &team).await?;
    let user = member_user(&app, &org, &login).await?;
    let event = org_event(
        &app,
        &p,
        &addr,
        &org,
        AuditAction::TeamMemberAdd,
        &format!("{team}/{login}"),
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
    Caller(app, p, addr): Caller,
    Path((org, team, login)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let org = org_for(&app, &p, &addr, &org, Action::ManageAccess).await?;
    let record = team_in(&app, &org, &team).await?;
    let not_in_team = || ApiError::not_found(format!("'{login}' is not in team '{team}'"));
    let user = app.store.user_by_login(&login).await?.ok_or_else(not_in_team)?;
    let event = org_event(
        &app,
        &p,
        &addr,
        &org,
        AuditAction::TeamMemberRemove,
        &format!("{team}/{login}"),
    );
    if !app.store.remove_team_member(&record.id, &user.id, &event).await? {
        return Err(not_in_team());
    }
    app.forget_access();
    Ok(Success::NoContent.status())
}
