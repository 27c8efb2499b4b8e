//! Rotation schedules and their runs (migration 0011). A schedule belongs to one environment (deleted with it) and
//! names when it runs next (`next_ms`); any replica may run a due schedule, but only under its lease: the same
//! conditional `UPDATE` KEK migrations take ([`super::sql::take_lease`]), so of two replicas that find the same due
//! schedule exactly one runs it. Finishing a run (next time, result, history row) is one transaction that only the
//! lease's owner can commit.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::sql::{SqlStore, commit_if, commit_if_maybe, take_lease};
use super::{AuditEvent, StoreResult};

/// A schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRecord {
    /// Immutable id (UUID text).
    pub id: String,
    pub org_id: String,
    pub env_id: String,
    /// The cron expression; empty for a one-time schedule.
    pub cron: String,
    /// The one-time instant, Unix milliseconds; `None` for a cron schedule.
    pub once_ms: Option<i64>,
    /// The property path rotated; empty: every `fn::rotate` of the environment.
    pub env_path: String,
    pub paused: bool,
    /// The token whose rights a run uses.
    pub creator_token_id: String,
    /// Who made it, as audit records name actors.
    pub creator: String,
    /// When it runs next; `None`: never again.
    pub next_ms: Option<i64>,
    pub last_ms: Option<i64>,
    /// `succeeded`, or `failed: <why>`; empty before the first run.
    pub last_result: String,
    /// Failed runs since the last success.
    pub attempts: i64,
    pub created_ms: i64,
    pub modified_ms: i64,
}

/// A due schedule with the names its run needs.
#[derive(Debug, Clone)]
pub struct DueSchedule {
    pub schedule: ScheduleRecord,
    pub org_name: String,
    pub project: String,
    pub env_name: String,
}

/// One run of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub id: String,
    pub schedule_id: String,
    pub executed_ms: i64,
    /// The revision the run wrote; 0: none.
    pub revision: i64,
    /// `succeeded`, or `failed: <why>`.
    pub result: String,
}

/// How a run ended, for [`ScheduleStore::finish_run`].
#[derive(Debug, Clone)]
pub struct RunEnd<'a> {
    pub run: &'a RunRecord,
    /// The schedule's next run (`None`: never again).
    pub next_ms: Option<i64>,
    pub attempts: i64,
}

#[async_trait::async_trait]
pub trait ScheduleStore {
    /// Stores a new schedule, appending `audit`.
    async fn insert_schedule(&self, s: &ScheduleRecord, audit: &AuditEvent) -> StoreResult<()>;
    /// The environment's schedules, oldest first.
    async fn schedules_of_env(&self, env_id: &str) -> StoreResult<Vec<ScheduleRecord>>;
    async fn schedule(&self, env_id: &str, id: &str) -> StoreResult<Option<ScheduleRecord>>;
    /// Replaces the timing, path and pause of a schedule (`s.id` in `s.env_id`), appending `audit`; false when
    /// there is no such schedule.
    async fn update_schedule(&self, s: &ScheduleRecord, audit: &AuditEvent) -> StoreResult<bool>;
    /// Deletes a schedule and its history, appending `audit`; false when there is no such schedule.
    async fn delete_schedule(&self, env_id: &str, id: &str, audit: &AuditEvent) -> StoreResult<bool>;
    /// Up to `limit` unpaused schedules due at `now_ms` whose lease is free, most overdue first.
    async fn due_schedules(&self, now_ms: i64, limit: i64) -> StoreResult<Vec<DueSchedule>>;
    /// Takes the lease of a due schedule for `owner` until `until_ms`; false when it is not due any more or another
    /// owner's lease holds.
    async fn lease_schedule(&self, id: &str, owner: &str, now_ms: i64, until_ms: i64) -> StoreResult<bool>;
    /// Records a run's end and frees the lease, appending `audit` if given; false (nothing written) when `owner`
    /// no longer holds the lease.
    async fn finish_run(
        &self,
        schedule_id: &str,
        owner: &str,
        end: RunEnd<'_>,
        audit: Option<&AuditEvent>,
    ) -> StoreResult<bool>;
    /// A schedule's runs, newest first.
    async fn schedule_runs(&self, schedule_id: &str, limit: i64) -> StoreResult<Vec<RunRecord>>;
}

const COLUMNS: &str = "id, org_id, env_id, cron, once_ms, env_path, paused, creator_token_id, creator, next_ms, \
                       last_ms, last_result, attempts, created_ms, modified_ms";

fn from_row(r: &AnyRow) -> StoreResult<ScheduleRecord> {
    Ok(ScheduleRecord {
        id: r.try_get("id")?,
        org_id: r.try_get("org_id")?,
        env_id: r.try_get("env_id")?,
        cron: r.try_get("cron")?,
        once_ms: r.try_get("once_ms")?,
        env_path: r.try_get("env_path")?,
        paused: r.try_get::<i64, _>("paused")? != 0,
        creator_token_id: r.try_get("creator_token_id")?,
        creator: r.try_get("creator")?,
        next_ms: r.try_get("next_ms")?,
        last_ms: r.try_get("last_ms")?,
        last_result: r.try_get("last_result")?,
        attempts: r.try_get("attempts")?,
        created_ms: r.try_get("created_ms")?,
        modified_ms: r.try_get("modified_ms")?,
    })
}

#[async_trait::async_trait]
impl ScheduleStore for SqlStore {
    async fn insert_schedule(&self, s: &ScheduleRecord, audit: &AuditEvent) -> StoreResult<()> {
        let mut tx = self.begin_tx().await?;
        sqlx::query(&format!(
            "INSERT INTO rotation_schedules ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ))
        .bind(&s.id)
        .bind(&s.org_id)
        .bind(&s.env_id)
        .bind(&s.cron)
        .bind(s.once_ms)
        .bind(&s.env_path)
        .bind(i64::from(s.paused))
        .bind(&s.creator_token_id)
        .bind(&s.creator)
        .bind(s.next_ms)
        .bind(s.last_ms)
        .bind(&s.last_result)
        .bind(s.attempts)
        .bind(s.created_ms)
        .bind(s.modified_ms)
        .execute(&mut *tx)
        .await?;
        commit_if(tx, self.dialect(), true, audit).await?;
        Ok(())
    }

    async fn schedules_of_env(&self, env_id: &str) -> StoreResult<Vec<ScheduleRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM rotation_schedules WHERE env_id = $1 ORDER BY created_ms, id"
        ))
        .bind(env_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    async fn schedule(&self, env_id: &str, id: &str) -> StoreResult<Option<ScheduleRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM rotation_schedules WHERE env_id = $1 AND id = $2"
        ))
        .bind(env_id)
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    async fn update_schedule(&self, s: &ScheduleRecord, audit: &AuditEvent) -> StoreResult<bool> {
        let mut tx = self.begin_tx().await?;
        let n = sqlx::query(
            "UPDATE rotation_schedules SET cron = $3, once_ms = $4, env_path = $5, paused = $6, next_ms = $7, \
             attempts = 0, modified_ms = $8 WHERE env_id = $1 AND id = $2",
        )
        .bind(&s.env_id)
        .bind(&s.id)
        .bind(&s.cron)
        .bind(s.once_ms)
        .bind(&s.env_path)
        .bind(i64::from(s.paused))
        .bind(s.next_ms)
        .bind(s.modified_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        commit_if(tx, self.dialect(), n == 1, audit).await
    }

    async fn delete_schedule(&self, env_id: &str, id: &str, audit: &AuditEvent) -> StoreResult<bool> {
        let mut tx = self.begin_tx().await?;
        sqlx::query(
            "DELETE FROM rotation_schedule_runs WHERE schedule_id IN \
             (SELECT id FROM rotation_schedules WHERE env_id = $1 AND id = $2)",
        )
        .bind(env_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let n = sqlx::query("DELETE FROM rotation_schedules WHERE env_id = $1 AND id = $2")
            .bind(env_id)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        commit_if(tx, self.dialect(), n == 1, audit).await
    }

    async fn due_schedules(&self, now_ms: i64, limit: i64) -> StoreResult<Vec<DueSchedule>> {
        let cols: String = COLUMNS
            .split(", ")
            .map(|c| format!("s.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(&format!(
            "SELECT {cols}, o.name AS org_name, e.project AS project, e.name AS env_name \
             FROM rotation_schedules s JOIN environments e ON e.id = s.env_id JOIN orgs o ON o.id = s.org_id \
             WHERE s.next_ms IS NOT NULL AND s.next_ms <= $1 AND s.paused = 0 AND s.lease_until_ms < $1 \
             ORDER BY s.next_ms, s.id LIMIT $2"
        ))
        .bind(now_ms)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DueSchedule {
                    schedule: from_row(r)?,
                    org_name: r.try_get("org_name")?,
                    project: r.try_get("project")?,
                    env_name: r.try_get("env_name")?,
                })
            })
            .collect()
    }

    async fn lease_schedule(&self, id: &str, owner: &str, now_ms: i64, until_ms: i64) -> StoreResult<bool> {
        take_lease(
            self.pool(),
            "rotation_schedules",
            "next_ms IS NOT NULL AND next_ms <= $3 AND paused = 0",
            (id, owner),
            (now_ms, until_ms),
        )
        .await
    }

    async fn finish_run(
        &self,
        schedule_id: &str,
        owner: &str,
        end: RunEnd<'_>,
        audit: Option<&AuditEvent>,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_tx().await?;
        let n = sqlx::query(
            "UPDATE rotation_schedules SET next_ms = $3, last_ms = $4, last_result = $5, attempts = $6, \
             lease_owner = '', lease_until_ms = 0 WHERE id = $1 AND lease_owner = $2",
        )
        .bind(schedule_id)
        .bind(owner)
        .bind(end.next_ms)
        .bind(end.run.executed_ms)
        .bind(&end.run.result)
        .bind(end.attempts)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            sqlx::query(
                "INSERT INTO rotation_schedule_runs (id, schedule_id, executed_ms, revision, result) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&end.run.id)
            .bind(schedule_id)
            .bind(end.run.executed_ms)
            .bind(end.run.revision)
            .bind(&end.run.result)
            .execute(&mut *tx)
            .await?;
        }
        commit_if_maybe(tx, self.dialect(), n == 1, audit).await
    }

    async fn schedule_runs(&self, schedule_id: &str, limit: i64) -> StoreResult<Vec<RunRecord>> {
        let rows = sqlx::query(
            "SELECT id, schedule_id, executed_ms, revision, result FROM rotation_schedule_runs \
             WHERE schedule_id = $1 ORDER BY executed_ms DESC, id DESC LIMIT $2",
        )
        .bind(schedule_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RunRecord {
                    id: r.try_get("id")?,
                    schedule_id: r.try_get("schedule_id")?,
                    executed_ms: r.try_get("executed_ms")?,
                    revision: r.try_get("revision")?,
                    result: r.try_get("result")?,
                })
            })
            .collect()
    }
}
