//! The current user (`GET /api/user`, what the Pulumi and ESC CLIs ask at login) and orgs (`/api/sesame/v1/orgs`):
//! a caller sees the orgs it may use; only the instance administrator creates one.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::valid_name;
use crate::core::audit::AuditAction;
use crate::server::AppState;
use crate::server::auth::Caller;
use crate::server::auth::{Auth, Principal};
use crate::server::body::JsonBody;
use crate::server::error::{ApiError, Success};
use crate::store::{Inserted, OrgRecord, TokenKind};
use crate::wire::admin::{CreateOrgRequest, CurrentUser, OrgInfo, OrgList, UserOrg};

fn org_info(o: &OrgRecord) -> OrgInfo {
    OrgInfo {
        name: o.name.clone(),
        created_ms: o.created_ms,
    }
}

/// The orgs a caller can use: every org for the instance administrator, the member orgs of a user, the own org of
/// an organization or team token.
pub(crate) async fn orgs_of(app: &AppState, p: &Principal) -> Result<Vec<OrgRecord>, ApiError> {
    if p.instance_admin {
        return Ok(app.store.orgs().await?);
    }
    if let Some(only) = &p.confined_org_id {
        // A confined token (minted by exchange) uses its own org only.
        let mut orgs = match (p.kind, &p.user_id) {
            (TokenKind::Personal, Some(user)) => app.store.orgs_of_user(user).await?,
            _ => app.store.org_by_id(only).await?.into_iter().collect(),
        };
        orgs.retain(|o| &o.id == only);
        return Ok(orgs);
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
    Caller(app, p, addr): Caller,
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
