//! KEK migrations in the admin API, `/api/sesame/v1/kek-migrations`: start (or resume) a job, list and read its
//! progress, pause, resume, verify, retire. The job itself runs in [`crate::migrate`], in the background of
//! whichever replica holds its lease. Only the instance administrator may use these until roles arrive (issue 5).

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::AppState;
use super::ClientAddr;
use super::auth::{Auth, Principal};
use super::body::JsonBody;
use super::error::ApiError;
use crate::keyring::now_ms;
use crate::migrate::{self, MigrateError};
use crate::store::{KekRecord, MigrationRecord, MigrationState};
use crate::wire::keks::{MigrationInfo, MigrationList, StartMigrationRequest, VerifyResponse};

fn require_admin(principal: &Principal) -> Result<(), ApiError> {
    if principal.instance_admin {
        return Ok(());
    }
    tracing::info!(token_id = %principal.token_id, "access denied: KEK migration");
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "only the instance administrator may migrate KEKs",
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
        MigrateError::NotVerified(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        MigrateError::Dek { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()),
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
            match migrate::run(&app.store, &app.keyring, &id, &app.replica_id, config).await {
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
    State(app): State<Arc<AppState>>,
    Auth(principal): Auth,
    ClientAddr(addr): ClientAddr,
    JsonBody(req): JsonBody<StartMigrationRequest>,
) -> Result<(StatusCode, Json<MigrationInfo>), ApiError> {
    deny_unless_admin(&app, &principal, &addr).await?;
    let org_id = match &req.org {
        Some(name) => Some(
            app.org_by_name(name)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("organization '{name}' not found")))?
                .id
                .clone(),
        ),
        None => None,
    };
    let keks = app.store.keks().await.map_err(|e| ApiError::internal(&e))?;
    let from = resolve(&keks, &req.from, org_id.as_deref())?;
    let to = resolve(&keks, &req.to, org_id.as_deref())?;
    if from.id == to.id {
        return Err(ApiError::bad_request("--from and --to name the same KEK"));
    }
    if to.state != crate::store::KekState::Active {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("target KEK {} is disabled", to.uri),
        ));
    }
    let now = now_ms();
    let m = app
        .store
        .start_or_resume_migration(&MigrationRecord {
            id: uuid::Uuid::now_v7().to_string(),
            from_kek: from.id.clone(),
            to_kek: to.id.clone(),
            org_id,
            state: MigrationState::Running,
            cursor: String::new(),
            total: 0,
            migrated: 0,
            verified_ms: None,
            error: String::new(),
            created_ms: now,
            updated_ms: now,
        })
        .await
        .map_err(|e| ApiError::internal(&e))?;
    app.audit(
        Some(&principal),
        &addr,
        m.org_id.as_deref(),
        "kek.migration.requested",
        &m.id,
        "ok",
        format!("{} -> {}", from.uri, to.uri),
    )
    .await?;
    tracing::info!(migration = %m.id, from = %from.uri, to = %to.uri, total = m.total, "migration started or resumed");
    spawn_run(&app, m.id.clone());
    Ok((StatusCode::ACCEPTED, Json(info(m))))
}

/// `GET /api/sesame/v1/kek-migrations`
pub async fn list(State(app): State<Arc<AppState>>, Auth(principal): Auth) -> Result<Json<MigrationList>, ApiError> {
    require_admin(&principal)?;
    let all = app.store.migrations().await.map_err(|e| ApiError::internal(&e))?;
    Ok(Json(MigrationList {
        migrations: all.into_iter().map(info).collect(),
    }))
}

async fn get_record(app: &AppState, id: &str) -> Result<MigrationRecord, ApiError> {
    app.store
        .migration(id)
        .await
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(|| ApiError::not_found(format!("migration {id} not found")))
}

/// `GET /api/sesame/v1/kek-migrations/{id}`
pub async fn get(
    State(app): State<Arc<AppState>>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> Result<Json<MigrationInfo>, ApiError> {
    require_admin(&principal)?;
    Ok(Json(info(get_record(&app, &id).await?)))
}

/// `POST /api/sesame/v1/kek-migrations/{id}/pause`
pub async fn pause(
    State(app): State<Arc<AppState>>,
    Auth(principal): Auth,
    ClientAddr(addr): ClientAddr,
    Path(id): Path<String>,
) -> Result<Json<MigrationInfo>, ApiError> {
    deny_unless_admin(&app, &principal, &addr).await?;
    let m = get_record(&app, &id).await?;
    if m.state != MigrationState::Running {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("migration {id} is {}", m.state.as_str()),
        ));
    }
    app.store
        .set_migration_state(&id, MigrationState::Paused, "", now_ms())
        .await
        .map_err(|e| ApiError::internal(&e))?;
    app.audit(
        Some(&principal),
        &addr,
        m.org_id.as_deref(),
        "kek.migration.pause-requested",
        &id,
        "ok",
        String::new(),
    )
    .await?;
    tracing::info!(migration = %id, "migration paused");
    Ok(Json(info(get_record(&app, &id).await?)))
}

/// `POST /api/sesame/v1/kek-migrations/{id}/resume`
pub async fn resume(
    State(app): State<Arc<AppState>>,
    Auth(principal): Auth,
    ClientAddr(addr): ClientAddr,
    Path(id): Path<String>,
) -> Result<Json<MigrationInfo>, ApiError> {
    deny_unless_admin(&app, &principal, &addr).await?;
    let m = get_record(&app, &id).await?;
    if !matches!(
        m.state,
        MigrationState::Paused | MigrationState::Failed | MigrationState::Running
    ) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("migration {id} is {}", m.state.as_str()),
        ));
    }
    app.store
        .set_migration_state(&id, MigrationState::Running, "", now_ms())
        .await
        .map_err(|e| ApiError::internal(&e))?;
    app.audit(
        Some(&principal),
        &addr,
        m.org_id.as_deref(),
        "kek.migration.resume-requested",
        &id,
        "ok",
        String::new(),
    )
    .await?;
    tracing::info!(migration = %id, "migration resumed");
    spawn_run(&app, id.clone());
    Ok(Json(info(get_record(&app, &id).await?)))
}

/// `POST /api/sesame/v1/kek-migrations/{id}/verify`: unwraps every DEK of the migration under the target KEK.
pub async fn verify(
    State(app): State<Arc<AppState>>,
    Auth(principal): Auth,
    ClientAddr(addr): ClientAddr,
    Path(id): Path<String>,
) -> Result<Json<VerifyResponse>, ApiError> {
    deny_unless_admin(&app, &principal, &addr).await?;
    let (checked, failed) = migrate::verify(&app.store, &app.keyring, &id)
        .await
        .map_err(migrate_error)?;
    app.audit(
        Some(&principal),
        &addr,
        None,
        "kek.migration.verify-requested",
        &id,
        "ok",
        format!("{checked} checked, {failed} failed"),
    )
    .await?;
    tracing::info!(migration = %id, checked, failed, "migration verified");
    Ok(Json(VerifyResponse {
        checked,
        failed,
        verified: failed == 0,
    }))
}

/// `POST /api/sesame/v1/kek-migrations/{id}/retire`: deletes the source KEK's wraps, only after a verification.
pub async fn retire(
    State(app): State<Arc<AppState>>,
    Auth(principal): Auth,
    ClientAddr(addr): ClientAddr,
    Path(id): Path<String>,
) -> Result<Json<MigrationInfo>, ApiError> {
    deny_unless_admin(&app, &principal, &addr).await?;
    let removed = migrate::retire(&app.store, &id).await.map_err(migrate_error)?;
    app.audit(
        Some(&principal),
        &addr,
        None,
        "kek.migration.retire-requested",
        &id,
        "ok",
        format!("{removed} wraps removed"),
    )
    .await?;
    tracing::info!(migration = %id, removed, "source wraps retired");
    Ok(Json(info(get_record(&app, &id).await?)))
}

/// [`require_admin`], with a refusal written to the audit log.
async fn deny_unless_admin(app: &AppState, principal: &Principal, addr: &str) -> Result<(), ApiError> {
    app.audit_refusal(principal, addr, "kek-migrations", require_admin(principal))
        .await
}
