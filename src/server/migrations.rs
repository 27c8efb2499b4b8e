//! KEK migrations in the admin API: start (or resume) a job, list and read its progress, pause, resume, verify,
//! retire. The job itself runs in [`crate::migrate`], in the background of whichever replica holds its lease.
//!
//! `/api/sesame/v1/kek-migrations…` is the instance administrator's: every job, including instance-wide ones (every
//! DEK under a KEK). `/api/sesame/v1/orgs/{org}/kek-migrations…` is the org's admins' (see [`super::keks::Keys`]):
//! a job started there moves only that org's DEKs, between the org's own KEKs or the instance's (where the org's
//! DEKs start out) — never another org's; the other jobs, and an org the caller has no role in, answer 404 like
//! missing ones. Each step is audited on the chain of the job's org (the instance's for an instance-wide job).

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::AppState;
use super::auth::{Auth, Principal};
use super::body::JsonBody;
use super::error::{ApiError, Success};
use super::keks::{KeyRoute, Keys};
use crate::core::audit::AuditAction;
use crate::migrate::{self, MigrateError};
use crate::server::auth::Caller;
use crate::store::{KekRecord, MigrationRecord, MigrationState};
use crate::wire::keks::{MigrationInfo, MigrationList, StartMigrationRequest, VerifyResponse};

fn require_admin(principal: &Principal) -> Result<(), ApiError> {
    if principal.instance_admin {
        return Ok(());
    }
    tracing::info!(token_id = %principal.token_id, "access denied: KEK migration");
    Err(ApiError::forbidden(
        "only the instance administrator may migrate KEKs here; an org's admins migrate its own DEKs under \
         /api/sesame/v1/orgs/{org}/kek-migrations",
    ))
}

fn info(m: MigrationRecord) -> MigrationInfo {
    MigrationInfo {
        id: m.id,
        from: m.from_kek,
        to: m.to_kek,
        org_id: m.org_id,
        state: m.state.as_str().to_owned(),
        total: m.total,
        migrated: m.migrated,
        verified: m.verified_ms.is_some(),
        error: m.error,
    }
}

fn migrate_error(e: MigrateError) -> ApiError {
    match e {
        MigrateError::NotFound(id) => ApiError::not_found(format!("migration {id} not found")),
        MigrateError::NotVerified(_) => ApiError::conflict(e.to_string()),
        MigrateError::Dek { .. } => ApiError::conflict(e.to_string()),
        other => ApiError::internal(&other),
    }
}

/// Runs a migration in the background of this replica until it is done, paused or failed.
///
/// One runner per job per replica: a second one would hold the lease under the same owner id and re-wrap the same
/// batches, so a start or resume that arrives while one runs only asks it to run once more before it stops.
///
/// While another owner holds the job's lease, the runner tries again every half lease: the owner may be a replica
/// that crashed (or this process before a restart, under its old id), whose lease only lapses, so giving up at the
/// first refusal would leave a `running` job that nobody runs.
pub fn spawn_run(app: &Arc<AppState>, id: String) {
    {
        let mut runs = app.migration_runs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(again) = runs.get_mut(&id) {
            *again = true;
            return;
        }
        runs.insert(id.clone(), false);
    }
    let app = app.clone();
    tokio::spawn(async move {
        let config = &app.migrate_config;
        loop {
            match migrate::run(&app.store, &app.keyring, &id, &app.replica_id, config, &app.clock).await {
                // Only a lease held by another owner stops a run that is still `running`.
                Ok(m) if m.state == MigrationState::Running => {
                    tokio::time::sleep((config.lease / 2).max(Duration::from_millis(50))).await;
                    continue;
                }
                Ok(m) => {
                    tracing::info!(migration = %id, state = m.state.as_str(), migrated = m.migrated, "migration stopped")
                }
                Err(e) => tracing::warn!(migration = %id, error = %e, "migration failed"),
            }
            let mut runs = app.migration_runs.lock().unwrap_or_else(PoisonError::into_inner);
            match runs.get_mut(&id) {
                Some(again) if *again => *again = false,
                _ => {
                    runs.remove(&id);
                    return;
                }
            }
        }
    });
}

/// Finds a KEK by id or URI among the org's and the instance's KEKs.
fn resolve<'a>(keks: &'a [KekRecord], what: &str, org_id: Option<&str>) -> Result<&'a KekRecord, ApiError> {
    let found: Vec<&KekRecord> = keks
        .iter()
        .filter(|k| k.id == what || k.uri == what)
        .filter(|k| k.org_id.is_none() || k.org_id.as_deref() == org_id)
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(ApiError::not_found(format!("no KEK {what:?} is registered"))),
        _ => Err(ApiError::bad_request(format!(
            "{what:?} names several KEKs: use its id"
        ))),
    }
}

/// `POST /api/sesame/v1/kek-migrations`: start a migration, or resume the unfinished one for the same pair and org.
pub async fn start(
    Caller(app, principal, addr): Caller,
    JsonBody(req): JsonBody<StartMigrationRequest>,
) -> Result<(StatusCode, Json<MigrationInfo>), ApiError> {
    deny_unless_admin(&app, &principal, &addr).await?;
    start_migration(&app, &principal, &addr, Keys::Instance, req).await
}

/// `POST /api/sesame/v1/orgs/{org}/kek-migrations`: the same, for the org's DEKs only (`org` in the body, if any,
/// must name it).
pub async fn org_start(
    Caller(app, principal, addr): Caller,
    Path(org): Path<String>,
    JsonBody(req): JsonBody<StartMigrationRequest>,
) -> Result<(StatusCode, Json<MigrationInfo>), ApiError> {
    let keys = Keys::of_org(&app, &principal, &addr, &org).await?;
    start_migration(&app, &principal, &addr, keys, req).await
}

async fn start_migration(
    app: &Arc<AppState>,
    principal: &Principal,
    addr: &str,
    keys: Keys,
    req: StartMigrationRequest,
) -> Result<(StatusCode, Json<MigrationInfo>), ApiError> {
    keys.same_org(req.org.as_deref())?;
    let org_id = match (&keys, &req.org) {
        (Keys::Org(org), _) => Some(org.id.clone()),
        (Keys::Instance, Some(name)) => Some(
            app.org_by_name(name)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("organization '{name}' not found")))?
                .id
                .clone(),
        ),
        (Keys::Instance, None) => None,
    };
    let keks = app.store.keks().await?;
    let from = resolve(&keks, &req.from, org_id.as_deref())?;
    let to = resolve(&keks, &req.to, org_id.as_deref())?;
    if from.id == to.id {
        return Err(ApiError::bad_request("--from and --to name the same KEK"));
    }
    // Moving an org's DEKs between two of the instance's KEKs is the instance administrator's business.
    if matches!(keys, Keys::Org(_)) && from.org_id.is_none() && to.org_id.is_none() {
        return Err(ApiError::bad_request(
            "an org's migration moves its DEKs to or from one of the org's own KEKs",
        ));
    }
    if to.state != crate::store::KekState::Active {
        return Err(ApiError::conflict(format!("target KEK {} is disabled", to.uri)));
    }
    let now = app.clock.now_ms();
    let m = app
        .store
        .start_or_resume_migration(&MigrationRecord::new_job(&from.id, &to.id, org_id, now))
        .await?;
    let event = app
        .event(
            Some(principal),
            addr,
            m.org_id.as_deref(),
            AuditAction::KekMigrationRequested,
            &m.id,
        )
        .detail(format!("{} -> {}", from.uri, to.uri));
    app.record(event).await?;
    tracing::info!(migration = %m.id, from = %from.uri, to = %to.uri, total = m.total, "migration started or resumed");
    spawn_run(app, m.id.clone());
    Ok(Success::Accepted.with(Json(info(m))))
}

/// `GET /api/sesame/v1/kek-migrations`
pub async fn list(State(app): State<Arc<AppState>>, Auth(principal): Auth) -> Result<Json<MigrationList>, ApiError> {
    require_admin(&principal)?;
    list_migrations(&app, &Keys::Instance).await
}

/// `GET /api/sesame/v1/orgs/{org}/kek-migrations`: the jobs of the org's DEKs.
pub async fn org_list(
    Caller(app, principal, addr): Caller,
    Path(org): Path<String>,
) -> Result<Json<MigrationList>, ApiError> {
    let keys = Keys::of_org(&app, &principal, &addr, &org).await?;
    list_migrations(&app, &keys).await
}

async fn list_migrations(app: &AppState, keys: &Keys) -> Result<Json<MigrationList>, ApiError> {
    let all = app.store.migrations().await?;
    Ok(Json(MigrationList {
        migrations: all
            .into_iter()
            .filter(|m| keys.reach(m.org_id.as_deref()))
            .map(info)
            .collect(),
    }))
}

/// The job `id` if `keys` reaches it; a job out of reach answers exactly like a missing one.
async fn get_record(app: &AppState, keys: &Keys, id: &str) -> Result<MigrationRecord, ApiError> {
    app.store
        .migration(id)
        .await?
        .filter(|m| keys.reach(m.org_id.as_deref()))
        .ok_or_else(|| ApiError::not_found(format!("migration {id} not found")))
}

/// `GET /api/sesame/v1/kek-migrations/{id}`
pub async fn get(Caller(app, principal, _): Caller, Path(id): Path<String>) -> Result<Json<MigrationInfo>, ApiError> {
    require_admin(&principal)?;
    Ok(Json(info(get_record(&app, &Keys::Instance, &id).await?)))
}

/// `GET /api/sesame/v1/orgs/{org}/kek-migrations/{id}`
pub async fn org_get(
    Caller(app, principal, addr): Caller,
    Path((org, id)): Path<(String, String)>,
) -> Result<Json<MigrationInfo>, ApiError> {
    let keys = Keys::of_org(&app, &principal, &addr, &org).await?;
    Ok(Json(info(get_record(&app, &keys, &id).await?)))
}

/// `POST /api/sesame/v1/kek-migrations/{id}/pause` (the instance administrator) and `POST /api/sesame/v1/orgs/{org}/kek-migrations/{id}/pause` (the org's admins)
pub async fn pause(
    Caller(app, principal, addr): Caller,
    Path(route): Path<KeyRoute>,
) -> Result<Json<MigrationInfo>, ApiError> {
    let keys = route
        .keys(&app, &principal, &addr, require_admin, "kek-migrations")
        .await?;
    let (app, principal, addr, id) = (&app, &*principal, addr.as_str(), route.id);
    let m = get_record(app, &keys, &id).await?;
    if m.state != MigrationState::Running {
        return Err(ApiError::conflict(format!("migration {id} is {}", m.state.as_str())));
    }
    app.store
        .set_migration_state(&id, MigrationState::Paused, "", app.clock.now_ms())
        .await?;
    let event = app.event(
        Some(principal),
        addr,
        m.org_id.as_deref(),
        AuditAction::KekMigrationPauseRequested,
        &id,
    );
    app.record(event).await?;
    tracing::info!(migration = %id, "migration paused");
    Ok(Json(info(get_record(app, &keys, &id).await?)))
}

/// `POST /api/sesame/v1/kek-migrations/{id}/resume` (the instance administrator) and `POST /api/sesame/v1/orgs/{org}/kek-migrations/{id}/resume` (the org's admins)
pub async fn resume(
    Caller(app, principal, addr): Caller,
    Path(route): Path<KeyRoute>,
) -> Result<Json<MigrationInfo>, ApiError> {
    let keys = route
        .keys(&app, &principal, &addr, require_admin, "kek-migrations")
        .await?;
    let (app, principal, addr, id) = (&app, &*principal, addr.as_str(), route.id);
    let m = get_record(app, &keys, &id).await?;
    if !matches!(
        m.state,
        MigrationState::Paused | MigrationState::Failed | MigrationState::Running
    ) {
        return Err(ApiError::conflict(format!("migration {id} is {}", m.state.as_str())));
    }
    app.store
        .set_migration_state(&id, MigrationState::Running, "", app.clock.now_ms())
        .await?;
    let event = app.event(
        Some(principal),
        addr,
        m.org_id.as_deref(),
        AuditAction::KekMigrationResumeRequested,
        &id,
    );
    app.record(event).await?;
    tracing::info!(migration = %id, "migration resumed");
    spawn_run(app, id.clone());
    Ok(Json(info(get_record(app, &keys, &id).await?)))
}

/// `POST /api/sesame/v1/kek-migrations/{id}/verify` (the instance administrator) and `POST /api/sesame/v1/orgs/{org}/kek-migrations/{id}/verify` (the org's admins)
pub async fn verify(
    Caller(app, principal, addr): Caller,
    Path(route): Path<KeyRoute>,
) -> Result<Json<VerifyResponse>, ApiError> {
    let keys = route
        .keys(&app, &principal, &addr, require_admin, "kek-migrations")
        .await?;
    let (app, principal, addr, id) = (&app, &*principal, addr.as_str(), route.id);
    let m = get_record(app, &keys, &id).await?;
    let (checked, failed) = migrate::verify(&app.store, &app.keyring, &id, &app.clock)
        .await
        .map_err(migrate_error)?;
    let event = app
        .event(
            Some(principal),
            addr,
            m.org_id.as_deref(),
            AuditAction::KekMigrationVerifyRequested,
            &id,
        )
        .detail(format!("{checked} checked, {failed} failed"));
    app.record(event).await?;
    tracing::info!(migration = %id, checked, failed, "migration verified");
    Ok(Json(VerifyResponse {
        checked,
        failed,
        verified: failed == 0,
    }))
}

/// `POST /api/sesame/v1/kek-migrations/{id}/retire` (the instance administrator) and `POST /api/sesame/v1/orgs/{org}/kek-migrations/{id}/retire` (the org's admins)
pub async fn retire(
    Caller(app, principal, addr): Caller,
    Path(route): Path<KeyRoute>,
) -> Result<Json<MigrationInfo>, ApiError> {
    let keys = route
        .keys(&app, &principal, &addr, require_admin, "kek-migrations")
        .await?;
    let (app, principal, addr, id) = (&app, &*principal, addr.as_str(), route.id);
    let m = get_record(app, &keys, &id).await?;
    let removed = migrate::retire(&app.store, &id, &app.clock)
        .await
        .map_err(migrate_error)?;
    let event = app
        .event(
            Some(principal),
            addr,
            m.org_id.as_deref(),
            AuditAction::KekMigrationRetireRequested,
            &id,
        )
        .detail(format!("{removed} wraps removed"));
    app.record(event).await?;
    tracing::info!(migration = %id, removed, "source wraps retired");
    Ok(Json(info(get_record(app, &keys, &id).await?)))
}

/// [`require_admin`], with a refusal written to the audit log.
async fn deny_unless_admin(app: &AppState, principal: &Principal, addr: &str) -> Result<(), ApiError> {
    app.audit_refusal(principal, addr, "kek-migrations", require_admin(principal))
        .await
}
