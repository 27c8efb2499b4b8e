//! Rotation schedules: `…/{org}/{project}/{env}/schedules[/{id}[/history]]` in Pulumi's shapes
//! ([`crate::wire::schedules`]), and the task that runs due schedules on whichever replica leases them.
//!
//! Rule: listing and reading need `Read`, making, changing and deleting need `Write` (callers without it are answered
//! as for a missing environment when they may not see it, else 403, as for every environment route). Timing is
//! checked when given: a cron expression must parse ([`crate::core::cron`]) and fire within eight years, a one-time
//! instant must be RFC 3339 and in the future; a bad one is a 400 that says why and changes nothing. A run acts as
//! the token that made the schedule, with the rights that token has at run time: revoked, expired, or no longer
//! allowed to write the environment, the run fails. Every run is audited (`env.rotate`, outcome ok or failed,
//! naming the schedule) and kept in the schedule's history. A failed run is retried with a backoff (30 s doubling,
//! at most an hour, never past a cron schedule's next time; a one-time schedule gives up after
//! [`MAX_ONCE_ATTEMPTS`]). Of the replicas sharing a database exactly one runs a due schedule: it takes the
//! schedule's lease first ([`crate::store::ScheduleStore::lease_schedule`]); the revision write is moreover
//! conditional on the head the rotation read.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use serde_json::json;

use super::{login_of, target, target_name};
use crate::core::audit::{AuditAction, Outcome};
use crate::core::authz::Action;
use crate::core::cron::Cron;
use crate::core::env::eval::values_doc_path;
use crate::core::timefmt::{parse_rfc3339, rfc3339};
use crate::server::AppState;
use crate::server::auth::{Caller, principal_of_token};
use crate::server::body::JsonBody;
use crate::server::error::ApiError;
use crate::store::schedules::{DueSchedule, RunEnd, RunRecord, ScheduleRecord};
use crate::wire::schedules as wire;

/// At most this many schedules per environment.
pub const MAX_PER_ENV: usize = 16;
/// A one-time schedule whose run failed this many times is not retried again.
pub const MAX_ONCE_ATTEMPTS: i64 = 5;
/// How the audit records and the history name where a scheduled run comes from.
const SOURCE: &str = "scheduler";

/// How this replica runs schedules.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// How often due schedules are looked for.
    pub tick: Duration,
    /// How long a replica's claim on a running schedule lasts; a replica that dies mid-run loses it after this.
    pub lease: Duration,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            tick: Duration::from_secs(10),
            lease: Duration::from_secs(120),
        }
    }
}

fn to_wire(s: &ScheduleRecord) -> wire::ScheduledAction {
    wire::ScheduledAction {
        id: s.id.clone(),
        org_id: s.org_id.clone(),
        kind: "environment_rotation".into(),
        paused: s.paused,
        created: rfc3339(s.created_ms),
        modified: rfc3339(s.modified_ms),
        last_executed: s.last_ms.map(rfc3339).unwrap_or_default(),
        next_execution: s.next_ms.filter(|_| !s.paused).map(rfc3339).unwrap_or_default(),
        definition: Some(json!({"environmentPath": s.env_path})),
        schedule_cron: s.cron.clone(),
        schedule_once: s.once_ms.map(rfc3339).unwrap_or_default(),
    }
}

/// The timing a request asks for: `(cron, once_ms, next_ms)`.
fn timing(cron: Option<&str>, once: Option<&str>, now: i64) -> Result<(String, Option<i64>, Option<i64>), ApiError> {
    match (cron.filter(|c| !c.is_empty()), once.filter(|o| !o.is_empty())) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "only one of scheduleCron and scheduleOnce may be set",
        )),
        (None, None) => Err(ApiError::bad_request(
            "exactly one of scheduleCron and scheduleOnce must be set",
        )),
        (Some(c), None) => {
            let parsed = Cron::parse(c).map_err(|e| ApiError::bad_request(format!("invalid scheduleCron: {e}")))?;
            let next = parsed.next_after(now).ok_or_else(|| {
                ApiError::bad_request("invalid scheduleCron: the expression names no time in the next eight years")
            })?;
            Ok((c.trim().to_owned(), None, Some(next)))
        }
        (None, Some(o)) => {
            let at = parse_rfc3339(o.trim()).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid scheduleOnce: expected an RFC 3339 timestamp such as 2030-01-31T12:00:00Z",
                )
            })?;
            if at <= now {
                return Err(ApiError::bad_request(
                    "invalid scheduleOnce: the time must be in the future",
                ));
            }
            Ok((String::new(), Some(at), Some(at)))
        }
    }
}

fn env_path(req: Option<&wire::SecretRotationRequest>) -> Result<String, ApiError> {
    let path = req.map(|r| r.environment_path.trim().to_owned()).unwrap_or_default();
    if !path.is_empty() && (path.len() > 1024 || values_doc_path(&path).is_none()) {
        return Err(ApiError::bad_request(format!(
            "invalid environmentPath {path:?}: expected a property path such as db.password"
        )));
    }
    Ok(path)
}

type EnvPath = Path<(String, String, String)>;
type SchedulePath = Path<(String, String, String, String)>;

fn schedule_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("schedule '{id}' not found"))
}

/// `GET …/schedules`
pub async fn list_schedules(
    Caller(app, p, source): Caller,
    Path((org, project, env)): EnvPath,
) -> Result<Json<wire::ListScheduledActions>, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Read).await?;
    let all = app.store.schedules_of_env(&t.env.id).await?;
    Ok(Json(wire::ListScheduledActions {
        schedules: all.iter().map(to_wire).collect(),
    }))
}

/// `POST …/schedules`
pub async fn create_schedule(
    Caller(app, p, source): Caller,
    Path((org, project, env)): EnvPath,
    JsonBody(req): JsonBody<wire::ScheduleRequest>,
) -> Result<(StatusCode, Json<wire::ScheduledAction>), ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Write).await?;
    let now = app.clock.now_ms();
    let (cron, once_ms, next_ms) = timing(req.schedule_cron.as_deref(), req.schedule_once.as_deref(), now)?;
    let path = env_path(req.secret_rotation_request.as_ref())?;
    if app.store.schedules_of_env(&t.env.id).await?.len() >= MAX_PER_ENV {
        return Err(ApiError::conflict(format!(
            "the environment has {MAX_PER_ENV} schedules already (the most it may have)"
        )));
    }
    let rec = ScheduleRecord {
        id: uuid::Uuid::now_v7().to_string(),
        org_id: t.org.id.clone(),
        env_id: t.env.id.clone(),
        cron,
        once_ms,
        env_path: path,
        paused: req.paused.unwrap_or(false),
        creator_token_id: p.token_id.clone(),
        creator: login_of(&p),
        next_ms,
        last_ms: None,
        last_result: String::new(),
        attempts: 0,
        created_ms: now,
        modified_ms: now,
    };
    let event = super::env_event(&app, &p, &source, &t, AuditAction::EnvScheduleCreate).detail(describe(&rec));
    app.store.insert_schedule(&rec, &event).await?;
    Ok((StatusCode::OK, Json(to_wire(&rec))))
}

fn describe(s: &ScheduleRecord) -> String {
    let when = match s.once_ms {
        Some(at) => format!("once {}", rfc3339(at)),
        None => format!("cron {:?}", s.cron),
    };
    let path = if s.env_path.is_empty() { "all" } else { &s.env_path };
    format!(
        "schedule {} {when} path {path}{}",
        s.id,
        if s.paused { " paused" } else { "" }
    )
}

/// `GET …/schedules/{id}`
pub async fn get_schedule(
    Caller(app, p, source): Caller,
    Path((org, project, env, id)): SchedulePath,
) -> Result<Json<wire::ScheduledAction>, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Read).await?;
    let s = app
        .store
        .schedule(&t.env.id, &id)
        .await?
        .ok_or_else(|| schedule_not_found(&id))?;
    Ok(Json(to_wire(&s)))
}

/// `PATCH …/schedules/{id}`
pub async fn update_schedule(
    Caller(app, p, source): Caller,
    Path((org, project, env, id)): SchedulePath,
    JsonBody(req): JsonBody<wire::ScheduleRequest>,
) -> Result<Json<wire::ScheduledAction>, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Write).await?;
    let mut s = app
        .store
        .schedule(&t.env.id, &id)
        .await?
        .ok_or_else(|| schedule_not_found(&id))?;
    let now = app.clock.now_ms();
    if req.schedule_cron.is_some() || req.schedule_once.is_some() {
        let (cron, once_ms, next_ms) = timing(req.schedule_cron.as_deref(), req.schedule_once.as_deref(), now)?;
        (s.cron, s.once_ms, s.next_ms) = (cron, once_ms, next_ms);
    }
    if req.secret_rotation_request.is_some() {
        s.env_path = env_path(req.secret_rotation_request.as_ref())?;
    }
    if let Some(paused) = req.paused {
        s.paused = paused;
    }
    s.modified_ms = now;
    s.attempts = 0;
    let event = super::env_event(&app, &p, &source, &t, AuditAction::EnvScheduleUpdate).detail(describe(&s));
    if !app.store.update_schedule(&s, &event).await? {
        return Err(schedule_not_found(&id));
    }
    Ok(Json(to_wire(&s)))
}

/// `DELETE …/schedules/{id}`
pub async fn delete_schedule(
    Caller(app, p, source): Caller,
    Path((org, project, env, id)): SchedulePath,
) -> Result<StatusCode, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Write).await?;
    let event =
        super::env_event(&app, &p, &source, &t, AuditAction::EnvScheduleDelete).detail(format!("schedule {id}"));
    if !app.store.delete_schedule(&t.env.id, &id, &event).await? {
        return Err(schedule_not_found(&id));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET …/schedules/{id}/history`
pub async fn schedule_history(
    Caller(app, p, source): Caller,
    Path((org, project, env, id)): SchedulePath,
) -> Result<Json<wire::ListScheduleHistory>, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Read).await?;
    app.store
        .schedule(&t.env.id, &id)
        .await?
        .ok_or_else(|| schedule_not_found(&id))?;
    let runs = app.store.schedule_runs(&id, 100).await?;
    Ok(Json(wire::ListScheduleHistory {
        schedule_history_events: runs
            .into_iter()
            .map(|r| wire::ScheduleHistoryEvent {
                id: r.id,
                scheduled_action_id: r.schedule_id,
                executed: rfc3339(r.executed_ms),
                version: r.revision,
                result: r.result,
            })
            .collect(),
    }))
}

/// Starts this replica's schedule runner: every tick it looks for due schedules and runs those whose lease it takes.
pub fn spawn_runner(app: &Arc<AppState>) {
    super::failpoint::init();
    let app = app.clone();
    tokio::spawn(async move {
        loop {
            if let Err(e) = run_due(&app).await {
                tracing::warn!(error = %e.message(), "rotation schedules could not be run");
            }
            tokio::time::sleep(app.schedules.tick).await;
        }
    });
}

/// Runs every schedule due now that this replica can lease; returns how many it ran.
pub async fn run_due(app: &AppState) -> Result<usize, ApiError> {
    let now = app.clock.now_ms();
    let lease_ms = i64::try_from(app.schedules.lease.as_millis()).unwrap_or(i64::MAX);
    let mut ran = 0;
    for due in app.store.due_schedules(now, 32).await? {
        let now = app.clock.now_ms();
        if !app
            .store
            .lease_schedule(&due.schedule.id, &app.replica_id, now, now.saturating_add(lease_ms))
            .await?
        {
            continue;
        }
        run_one(app, &due).await?;
        ran += 1;
    }
    Ok(ran)
}

/// Runs one leased schedule and records its end.
async fn run_one(app: &AppState, due: &DueSchedule) -> Result<(), ApiError> {
    let s = &due.schedule;
    let started = app.clock.now_ms();
    let outcome = attempt(app, due).await;
    let now = app.clock.now_ms();
    let (result, revision, attempts) = match &outcome {
        Ok(rev) => ("succeeded".to_owned(), *rev, 0),
        Err(why) => (format!("failed: {why}"), 0, s.attempts + 1),
    };
    let cron_next = (!s.cron.is_empty())
        .then(|| Cron::parse(&s.cron).ok()?.next_after(now))
        .flatten();
    let next_ms = match (&outcome, s.once_ms) {
        (Ok(_), Some(_)) => None,
        (Ok(_), None) => cron_next,
        (Err(_), Some(_)) if attempts >= MAX_ONCE_ATTEMPTS => None,
        (Err(_), _) => {
            let backoff = (30_000i64 << (attempts - 1).clamp(0, 7)).min(3_600_000);
            Some(cron_next.map_or(now + backoff, |c| c.min(now + backoff)))
        }
    };
    let run = RunRecord {
        id: uuid::Uuid::now_v7().to_string(),
        schedule_id: s.id.clone(),
        executed_ms: started,
        revision,
        result: result.clone(),
    };
    // A success was audited with its revision; a failure is audited here, with the run's end.
    let failure = outcome.as_ref().err().map(|why| {
        let target = format!("{}/{}/{}", due.org_name, due.project, due.env_name);
        crate::store::AuditEvent::new(
            s.org_id.clone(),
            now,
            format!("schedule:{}", s.creator),
            SOURCE,
            AuditAction::EnvRotate,
            target,
        )
        .outcome(Outcome::Failed)
        .detail(format!("schedule {}: {why}", s.id))
    });
    let end = RunEnd {
        run: &run,
        next_ms,
        attempts,
    };
    if !app
        .store
        .finish_run(&s.id, &app.replica_id, end, failure.as_ref())
        .await?
    {
        tracing::warn!(schedule = %s.id, "the schedule's lease lapsed during its run; its end was not recorded");
    }
    match outcome {
        Ok(rev) => tracing::info!(schedule = %s.id, revision = rev, "scheduled rotation done"),
        Err(why) => tracing::warn!(schedule = %s.id, error = %why, "scheduled rotation failed"),
    }
    Ok(())
}

/// One rotation as the schedule's creator; the revision written, or why not (never a secret).
async fn attempt(app: &AppState, due: &DueSchedule) -> Result<i64, String> {
    let s = &due.schedule;
    let p = principal_of_token(app, &s.creator_token_id)
        .await
        .map_err(|e| e.message().to_owned())?
        .ok_or("the token that created the schedule is revoked or expired")?;
    let t = target(
        app,
        &p,
        SOURCE,
        (&due.org_name, &due.project, &due.env_name),
        Action::Write,
    )
    .await
    .map_err(|e| {
        format!(
            "the schedule's creator may not write the environment any more ({})",
            e.message()
        )
    })?;
    tracing::debug!(schedule = %s.id, environment = %target_name(&t), "running a scheduled rotation");
    let paths = (!s.env_path.is_empty()).then(|| vec![s.env_path.clone()]);
    let done = super::rotate::rotate_target(app, &p, SOURCE, &t, paths.as_deref(), Some(&s.id))
        .await
        .map_err(|e| e.message().to_owned())?;
    Ok(done.secret_rotation_event.post_rotation_revision.unwrap_or(0))
}
