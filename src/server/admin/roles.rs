//! An org's role grants (`/api/sesame/v1/orgs/{org}/roles`): a role for `user:<login>` or `team:<name>` on the
//! org, a project or one environment; listed by readers, put and deleted by the org's administrators.

use axum::Json;
use axum::extract::{Path, Query};
use axum::http::StatusCode;

use super::{member_user, org_for, parse_role, team_in, valid_name};
use crate::core::audit::AuditAction;
use crate::core::authz::Action;
use crate::server::auth::Caller;
use crate::server::body::JsonBody;
use crate::server::error::{ApiError, Success};
use crate::store::identity::GrantRecord;
use crate::wire::admin::{DeleteGrantQuery, GrantInfo, GrantList, PutGrantRequest};

/// `GET /api/sesame/v1/orgs/{org}/roles`
pub async fn list_roles(Caller(app, p, addr): Caller, Path(org): Path<String>) -> Result<Json<GrantList>, ApiError> {
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
    Caller(app, p, addr): Caller,
    Path(org): Path<String>,
    JsonBody(req): JsonBody<PutGrantRequest>,
) -> Result<Json<GrantInfo>, ApiError> {
    let org = org_for(&app, &p, &addr, &org, Action::ManageAccess).await?;
    let role = parse_role(&req.role)?;
    grant_level(&req.project, &req.environment)?;
    let subject = match parse_subject(&req.subject)? {
        SubjectName::User(login) => format!("user:{}", member_user(&app, &org, login).await?.id),
        SubjectName::Team(team) => {
            let t = team_in(&app, &org, team).await?;
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
    Caller(app, p, addr): Caller,
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
