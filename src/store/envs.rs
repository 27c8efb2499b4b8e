//! Environment records: environments, their immutable revisions, revision tags, key/value tags and open sessions.
//!
//! Writes are optimistic: a new revision is `head + 1`, taken by one conditional `UPDATE … RETURNING head`, so two
//! writers never both get the same revision and a writer holding a stale head gets nothing (the caller answers 409).
//! Every write the API makes takes its audit event and appends it in the write's own transaction (`audit_in`), so
//! the change and its record commit together or not at all.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::sql::{Dialect, SqlStore, append_audit_in, audit_in, commit_if, commit_if_maybe};
use super::{AuditEvent, AuditWith, Inserted, StoreResult};

/// An environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvRecord {
    /// Immutable id (UUID text): names the DEK scope and binds the secrets' associated data.
    pub id: String,
    pub org_id: String,
    pub project: String,
    pub name: String,
    /// The latest revision.
    pub head: i64,
    pub created_ms: i64,
    pub modified_ms: i64,
}

/// Whose grants decide what a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer<'a> {
    /// Everything (the instance administrator).
    All,
    /// Everything in one org (an organization token of that org).
    Org(&'a str),
    /// What a user's grants, and those of the user's teams, allow, in every org.
    User(&'a str),
    /// What a team's grants allow, in the team's org (a team token).
    Team { org_id: &'a str, team_id: &'a str },
    /// Nothing.
    Nobody,
}

/// Whether the environment `e` is visible under the grants in `g` (a CTE of `org_id, project, env, role`): the most
/// specific level holding any grant decides, and there the best role must be above `none` — `Access::role` in SQL.
const VISIBLE_BY_GRANTS: &str = "o.id IN (SELECT org_id FROM g WHERE role <> 'none') AND CASE \
     WHEN EXISTS (SELECT 1 FROM g WHERE g.org_id = e.org_id AND g.project = e.project AND g.env = e.name) \
     THEN EXISTS (SELECT 1 FROM g WHERE g.org_id = e.org_id AND g.project = e.project AND g.env = e.name AND \
     g.role <> 'none') \
     WHEN EXISTS (SELECT 1 FROM g WHERE g.org_id = e.org_id AND g.project = e.project AND g.env = '') \
     THEN EXISTS (SELECT 1 FROM g WHERE g.org_id = e.org_id AND g.project = e.project AND g.env = '' AND \
     g.role <> 'none') \
     ELSE EXISTS (SELECT 1 FROM g WHERE g.org_id = e.org_id AND g.project = '' AND g.env = '' AND g.role <> 'none') \
     END";

/// A revision withdrawn from use: reads of it answer with `replacement` instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retraction {
    pub at_ms: i64,
    pub by: String,
    pub reason: String,
    pub replacement: i64,
}

/// One immutable revision. `yaml` is empty in listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionRecord {
    pub revision: i64,
    pub yaml: String,
    pub created_ms: i64,
    pub creator: String,
    pub retracted: Option<Retraction>,
}

/// A named pointer at a revision (`stable`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionTagRecord {
    pub name: String,
    pub revision: i64,
    pub created_ms: i64,
    pub modified_ms: i64,
    pub editor: String,
}

/// A key/value tag on an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvTagRecord {
    pub name: String,
    pub value: String,
    pub created_ms: i64,
    pub modified_ms: i64,
    pub editor: String,
}

/// An open session: the evaluated environment, sealed.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: String,
    pub env_id: String,
    pub org_id: String,
    /// Envelope v1 under the environment's DEK.
    pub sealed: Vec<u8>,
    pub created_ms: i64,
    pub expires_ms: i64,
}

/// What an open session was evaluated from ([`crate::core::env::session::Pins`]), sealed under the environment's
/// DEK, stored once per distinct set under its digest until `expires_ms`, which is never before the last session
/// that may name it expires.
#[derive(Clone, PartialEq, Eq)]
pub struct PinsRecord {
    pub org_id: String,
    /// The pins' digest, hex.
    pub digest: String,
    /// The environment whose sessions name it (`anonymous` for unsaved documents).
    pub env_id: String,
    pub sealed: Vec<u8>,
    pub expires_ms: i64,
}

impl std::fmt::Debug for PinsRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinsRecord")
            .field("digest", &self.digest)
            .field("env_id", &self.env_id)
            .field("expires_ms", &self.expires_ms)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("id", &self.id)
            .field("env_id", &self.env_id)
            .field("expires_ms", &self.expires_ms)
            .finish_non_exhaustive()
    }
}

/// The outcome of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The new revision.
    Revision(i64),
    /// The expected head was stale (or the environment is gone).
    Stale,
}

/// A stored revision's text with the environment it belongs to, for the repair of revisions an earlier version
/// stored with plaintext secrets (so its `Debug` leaves the text out).
#[derive(Clone, PartialEq, Eq)]
pub struct StoredRevision {
    pub env_id: String,
    pub org_id: String,
    pub project: String,
    pub name: String,
    pub revision: i64,
    pub yaml: String,
}

impl std::fmt::Debug for StoredRevision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredRevision")
            .field("env_id", &self.env_id)
            .field("org_id", &self.org_id)
            .field("project", &self.project)
            .field("name", &self.name)
            .field("revision", &self.revision)
            .field("yaml", &format_args!("<{} bytes>", self.yaml.len()))
            .finish()
    }
}

/// The environment queries.
#[async_trait::async_trait]
pub trait EnvStore: Send + Sync {
    /// Creates an environment with revision 1 holding `yaml`, appending `audit` in the same transaction.
    /// `AlreadyExists` (nothing written, nothing appended) when the name is taken.
    async fn create_env(&self, env: &EnvRecord, yaml: &str, creator: &str, audit: &AuditEvent)
    -> StoreResult<Inserted>;
    async fn env_by_name(&self, org_id: &str, project: &str, name: &str) -> StoreResult<Option<EnvRecord>>;
    /// Several environments of one org by `(project, name)`, in one round trip; missing ones are left out.
    async fn envs_by_names(&self, org_id: &str, names: &[(&str, &str)]) -> StoreResult<Vec<EnvRecord>>;
    /// The environments `viewer` may read (in one org, or in all), ordered by org name, project, name, after the
    /// given `(org name, project, name)`; with each its org's name. Visibility is decided in the query (the rule of
    /// `core::authz`: the most specific level with a grant decides, `none` hides), so a page costs one page of
    /// visible rows and nothing about other rows — not even that they exist — reaches the caller.
    async fn list_envs(
        &self,
        viewer: Viewer<'_>,
        org_id: Option<&str>,
        after: Option<(&str, &str, &str)>,
        limit: i64,
    ) -> StoreResult<Vec<(String, EnvRecord)>>;
    /// Appends a revision, if `expected_head` (when given) is still the head, with the audit record `audit` makes
    /// of the new revision in the same transaction. `audit` is `None` only for the revisions a clone copies (the
    /// clone's record was appended with its [`EnvStore::create_env`]).
    async fn write_revision(
        &self,
        env_id: &str,
        expected_head: Option<i64>,
        yaml: &str,
        creator: &str,
        now_ms: i64,
        audit: Option<AuditWith<'_, i64>>,
    ) -> StoreResult<Written>;
    async fn revision(&self, env_id: &str, revision: i64) -> StoreResult<Option<RevisionRecord>>;
    /// Revisions newest first, at or below `before`, without their YAML.
    async fn revisions(&self, env_id: &str, before: i64, limit: i64) -> StoreResult<Vec<RevisionRecord>>;
    /// Retracts a revision (not the head); false when it does not exist or is already retracted. Like every write
    /// below, appends `audit` in the same transaction when it writes, and nothing when it does not.
    async fn retract_revision(
        &self,
        env_id: &str,
        revision: i64,
        retraction: &Retraction,
        audit: &AuditEvent,
    ) -> StoreResult<bool>;
    /// Renames (or moves to another project); false when the new name is taken. The id — and with it every
    /// sealed secret — stays.
    async fn rename_env(
        &self,
        env_id: &str,
        project: &str,
        name: &str,
        now_ms: i64,
        audit: &AuditEvent,
    ) -> StoreResult<bool>;
    /// Deletes the environment with its revisions, tags and sessions.
    async fn delete_env(&self, env_id: &str, audit: &AuditEvent) -> StoreResult<bool>;

    async fn revision_tags(&self, env_id: &str, after: &str, limit: i64) -> StoreResult<Vec<RevisionTagRecord>>;
    async fn revision_tag(&self, env_id: &str, name: &str) -> StoreResult<Option<RevisionTagRecord>>;
    /// Creates (`create`) or moves (`!create`) a revision tag; false when it already exists / does not exist.
    /// `audit` is `None` only for the tags a clone copies.
    async fn put_revision_tag(
        &self,
        env_id: &str,
        tag: &RevisionTagRecord,
        create: bool,
        audit: Option<&AuditEvent>,
    ) -> StoreResult<bool>;
    async fn delete_revision_tag(&self, env_id: &str, name: &str, audit: &AuditEvent) -> StoreResult<bool>;

    async fn env_tags(&self, env_id: &str, after: &str, limit: i64) -> StoreResult<Vec<EnvTagRecord>>;
    async fn env_tag(&self, env_id: &str, name: &str) -> StoreResult<Option<EnvTagRecord>>;
    /// Creates a tag; false when the name is taken. `audit` is `None` only for the tags a clone copies.
    async fn create_env_tag(&self, env_id: &str, tag: &EnvTagRecord, audit: Option<&AuditEvent>) -> StoreResult<bool>;
    /// Renames and/or changes a tag; false when `name` does not exist or `tag.name` is taken.
    async fn update_env_tag(
        &self,
        env_id: &str,
        name: &str,
        tag: &EnvTagRecord,
        audit: &AuditEvent,
    ) -> StoreResult<bool>;
    async fn delete_env_tag(&self, env_id: &str, name: &str, audit: &AuditEvent) -> StoreResult<bool>;

    /// Revisions whose text mentions `fn::secret` or holds a backslash (a double-quoted key can spell `fn::secret`
    /// with escapes), ordered by (environment id, revision), after `after`: the candidates of
    /// [`EnvStore::reseal_revision_in_place`].
    async fn revisions_mentioning_secrets(
        &self,
        after: Option<(&str, i64)>,
        limit: i64,
    ) -> StoreResult<Vec<StoredRevision>>;
    /// The one exception to immutable revisions: replaces a revision's text that still holds a plaintext
    /// `fn::secret` (stored by an earlier version) by the same text with that secret sealed, if the text is still
    /// `old_yaml`, appending `event` in the same transaction. False when the text changed meanwhile. Callers
    /// must pass a `new_yaml` that differs from `old_yaml` only in sealed secrets.
    async fn reseal_revision_in_place(
        &self,
        env_id: &str,
        revision: i64,
        old_yaml: &str,
        new_yaml: &str,
        event: &AuditEvent,
    ) -> StoreResult<bool>;
    /// After [`EnvStore::reseal_revision_in_place`]: makes the database drop the old texts' bytes where it can
    /// (SQLite: `VACUUM` rewrites the file without the freed pages, and the WAL is truncated; PostgreSQL:
    /// `VACUUM FULL env_revisions` rewrites the table, though the WAL segments and base backups already written
    /// keep the old rows until they are recycled).
    async fn purge_freed_revision_pages(&self) -> StoreResult<()>;

    /// A session stored whole by earlier versions (their ids are 32 hex digits), read until it expires.
    async fn session(&self, id: &str) -> StoreResult<Option<SessionRecord>>;
    /// Deletes sessions and pin sets that expired at or before `now_ms`; how many.
    async fn purge_sessions(&self, now_ms: i64) -> StoreResult<u64>;
    /// Stores a pin set, or, when one with its digest is stored, moves its expiry to the later of the two (the
    /// sealed text of equal digests is equivalent, so the first one stays). One statement.
    async fn put_pins(&self, pins: &PinsRecord) -> StoreResult<()>;
    /// The pin set of `digest` (hex) in an org, expired or not.
    async fn pins(&self, org_id: &str, digest: &str) -> StoreResult<Option<PinsRecord>>;
    /// Several environments of one org by id, in one round trip; missing ones are left out.
    async fn envs_by_ids(&self, org_id: &str, ids: &[&str]) -> StoreResult<Vec<EnvRecord>>;
}

fn env_from_row(row: &AnyRow) -> StoreResult<EnvRecord> {
    Ok(EnvRecord {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        project: row.try_get("project")?,
        name: row.try_get("name")?,
        head: row.try_get("head")?,
        created_ms: row.try_get("created_ms")?,
        modified_ms: row.try_get("modified_ms")?,
    })
}

fn revision_from_row(row: &AnyRow, with_yaml: bool) -> StoreResult<RevisionRecord> {
    let retracted = match row.try_get::<Option<i64>, _>("retracted_ms")? {
        Some(at_ms) => Some(Retraction {
            at_ms,
            by: row.try_get::<Option<String>, _>("retracted_by")?.unwrap_or_default(),
            reason: row
                .try_get::<Option<String>, _>("retraction_reason")?
                .unwrap_or_default(),
            replacement: row.try_get::<Option<i64>, _>("replacement")?.unwrap_or_default(),
        }),
        None => None,
    };
    Ok(RevisionRecord {
        revision: row.try_get("revision")?,
        yaml: if with_yaml { row.try_get("yaml")? } else { String::new() },
        created_ms: row.try_get("created_ms")?,
        creator: row.try_get("creator")?,
        retracted,
    })
}

fn rev_tag_from_row(row: &AnyRow) -> StoreResult<RevisionTagRecord> {
    Ok(RevisionTagRecord {
        name: row.try_get("name")?,
        revision: row.try_get("revision")?,
        created_ms: row.try_get("created_ms")?,
        modified_ms: row.try_get("modified_ms")?,
        editor: row.try_get("editor")?,
    })
}

fn env_tag_from_row(row: &AnyRow) -> StoreResult<EnvTagRecord> {
    Ok(EnvTagRecord {
        name: row.try_get("name")?,
        value: row.try_get("value")?,
        created_ms: row.try_get("created_ms")?,
        modified_ms: row.try_get("modified_ms")?,
        editor: row.try_get("editor")?,
    })
}

/// Inserts an open session inside a caller's transaction.
pub(crate) async fn insert_session_in(tx: &mut sqlx::Transaction<'_, sqlx::Any>, s: &SessionRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO open_sessions (id, env_id, org_id, sealed, created_ms, expires_ms) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&s.id)
    .bind(&s.env_id)
    .bind(&s.org_id)
    .bind(&s.sealed)
    .bind(s.created_ms)
    .bind(s.expires_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

const ENV_COLUMNS: &str = "e.id, e.org_id, e.project, e.name, e.head, e.created_ms, e.modified_ms";
const REVISION_COLUMNS: &str =
    "revision, created_ms, creator, retracted_ms, retracted_by, retraction_reason, replacement";

#[async_trait::async_trait]
impl EnvStore for SqlStore {
    async fn create_env(
        &self,
        env: &EnvRecord,
        yaml: &str,
        creator: &str,
        audit: &AuditEvent,
    ) -> StoreResult<Inserted> {
        let _forget = self.env_write();
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "INSERT INTO environments (id, org_id, project, name, head, created_ms, modified_ms) \
             VALUES ($1, $2, $3, $4, 1, $5, $5) ON CONFLICT (org_id, project, name) DO NOTHING",
        )
        .bind(&env.id)
        .bind(&env.org_id)
        .bind(&env.project)
        .bind(&env.name)
        .bind(env.created_ms)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(Inserted::AlreadyExists);
        }
        sqlx::query(
            "INSERT INTO env_revisions (env_id, revision, yaml, created_ms, creator) VALUES ($1, 1, $2, $3, $4)",
        )
        .bind(&env.id)
        .bind(yaml)
        .bind(env.created_ms)
        .bind(creator)
        .execute(&mut *tx)
        .await?;
        audit_in(&mut tx, self.dialect(), audit).await?;
        tx.commit().await?;
        Ok(Inserted::New)
    }

    async fn env_by_name(&self, org_id: &str, project: &str, name: &str) -> StoreResult<Option<EnvRecord>> {
        let query = async {
            let row = sqlx::query(&format!(
                "SELECT {ENV_COLUMNS} FROM environments e WHERE e.org_id = $1 AND e.project = $2 AND e.name = $3"
            ))
            .bind(org_id)
            .bind(project)
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
            row.as_ref().map(env_from_row).transpose()
        };
        self.envs.one(org_id, project, name, query).await
    }

    async fn envs_by_names(&self, org_id: &str, names: &[(&str, &str)]) -> StoreResult<Vec<EnvRecord>> {
        self.envs
            .many(org_id, names, |missing| async move {
                let mut out = Vec::new();
                // `(project = $2 AND name = $3) OR …`: one statement per 200 names, on both dialects (well inside
                // either's limit on bound parameters).
                for chunk in missing.chunks(200) {
                    let clauses: Vec<String> = (0..chunk.len())
                        .map(|i| format!("(e.project = ${} AND e.name = ${})", 2 * i + 2, 2 * i + 3))
                        .collect();
                    let sql = format!(
                        "SELECT {ENV_COLUMNS} FROM environments e WHERE e.org_id = $1 AND ({})",
                        clauses.join(" OR ")
                    );
                    let mut q = sqlx::query(&sql).bind(org_id);
                    for (p, n) in chunk {
                        q = q.bind(p.as_str()).bind(n.as_str());
                    }
                    for row in q.fetch_all(self.pool()).await? {
                        out.push(env_from_row(&row)?);
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn list_envs(
        &self,
        viewer: Viewer<'_>,
        org_id: Option<&str>,
        after: Option<(&str, &str, &str)>,
        limit: i64,
    ) -> StoreResult<Vec<(String, EnvRecord)>> {
        let (o, p, n) = after.unwrap_or(("", "", ""));
        // Parameters $1-$5 are the same for every viewer; $6 and $7 are the viewer's.
        let (grants, visible, params): (&str, &str, Vec<String>) = match viewer {
            Viewer::Nobody => return Ok(Vec::new()),
            Viewer::All => ("", "1 = 1", Vec::new()),
            Viewer::Org(id) => ("", "e.org_id = $6", vec![id.to_owned()]),
            Viewer::User(user_id) => (
                "WITH g AS (SELECT r.org_id, r.project, r.env, r.role FROM role_grants r WHERE r.subject = $6 \
                 UNION ALL SELECT r.org_id, r.project, r.env, r.role FROM team_members m JOIN teams t ON t.id = \
                 m.team_id JOIN role_grants r ON r.org_id = t.org_id AND r.subject = 'team:' || t.id WHERE \
                 m.user_id = $7) ",
                VISIBLE_BY_GRANTS,
                vec![format!("user:{user_id}"), user_id.to_owned()],
            ),
            Viewer::Team { org_id, team_id } => (
                "WITH g AS (SELECT org_id, project, env, role FROM role_grants WHERE org_id = $6 AND subject = $7) ",
                VISIBLE_BY_GRANTS,
                vec![org_id.to_owned(), format!("team:{team_id}")],
            ),
        };
        let sql = format!(
            "{grants}SELECT o.name AS org_name, {ENV_COLUMNS} FROM environments e JOIN orgs o ON o.id = e.org_id \
             WHERE ($1 = '' OR e.org_id = $1) AND (o.name > $2 OR (o.name = $2 AND (e.project > $3 OR \
             (e.project = $3 AND e.name > $4)))) AND ({visible}) ORDER BY o.name, e.project, e.name LIMIT $5"
        );
        let mut query = sqlx::query(&sql)
            .bind(org_id.unwrap_or(""))
            .bind(o)
            .bind(p)
            .bind(n)
            .bind(limit);
        for param in &params {
            query = query.bind(param.as_str());
        }
        let rows = query.fetch_all(self.pool()).await?;
        rows.iter()
            .map(|r| Ok((r.try_get("org_name")?, env_from_row(r)?)))
            .collect()
    }

    async fn write_revision(
        &self,
        env_id: &str,
        expected_head: Option<i64>,
        yaml: &str,
        creator: &str,
        now_ms: i64,
        audit: Option<AuditWith<'_, i64>>,
    ) -> StoreResult<Written> {
        let _forget = self.env_write();
        let mut tx = self.pool().begin().await?;
        // One conditional statement takes the next revision: concurrent writers serialise on the row, and a
        // stale `expected_head` matches nothing.
        let row = sqlx::query(
            "UPDATE environments SET head = head + 1, modified_ms = $2 WHERE id = $1 AND ($3 < 0 OR head = $3) \
             RETURNING head",
        )
        .bind(env_id)
        .bind(now_ms)
        .bind(expected_head.unwrap_or(-1))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(Written::Stale);
        };
        let head: i64 = row.try_get("head")?;
        sqlx::query(
            "INSERT INTO env_revisions (env_id, revision, yaml, created_ms, creator) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(env_id)
        .bind(head)
        .bind(yaml)
        .bind(now_ms)
        .bind(creator)
        .execute(&mut *tx)
        .await?;
        if let Some(audit) = audit {
            audit_in(&mut tx, self.dialect(), &audit(&head)).await?;
        }
        tx.commit().await?;
        Ok(Written::Revision(head))
    }

    async fn revision(&self, env_id: &str, revision: i64) -> StoreResult<Option<RevisionRecord>> {
        let row = sqlx::query(&format!(
            "SELECT yaml, {REVISION_COLUMNS} FROM env_revisions WHERE env_id = $1 AND revision = $2"
        ))
        .bind(env_id)
        .bind(revision)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(|r| revision_from_row(r, true)).transpose()
    }

    async fn revisions(&self, env_id: &str, before: i64, limit: i64) -> StoreResult<Vec<RevisionRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {REVISION_COLUMNS} FROM env_revisions WHERE env_id = $1 AND revision <= $2 \
             ORDER BY revision DESC LIMIT $3"
        ))
        .bind(env_id)
        .bind(before)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| revision_from_row(r, false)).collect()
    }

    async fn retract_revision(
        &self,
        env_id: &str,
        revision: i64,
        r: &Retraction,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        let _forget = self.env_write();
        let mut tx = self.begin_tx().await?;
        let done = sqlx::query(
            "UPDATE env_revisions SET retracted_ms = $3, retracted_by = $4, retraction_reason = $5, replacement = $6 \
             WHERE env_id = $1 AND revision = $2 AND retracted_ms IS NULL",
        )
        .bind(env_id)
        .bind(revision)
        .bind(r.at_ms)
        .bind(&r.by)
        .bind(&r.reason)
        .bind(r.replacement)
        .execute(&mut *tx)
        .await?;
        commit_if(tx, self.dialect(), done.rows_affected() == 1, audit).await
    }

    async fn rename_env(
        &self,
        env_id: &str,
        project: &str,
        name: &str,
        now_ms: i64,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        let _forget = self.env_write();
        let mut tx = self.begin_tx().await?;
        let done = sqlx::query("UPDATE environments SET project = $2, name = $3, modified_ms = $4 WHERE id = $1")
            .bind(env_id)
            .bind(project)
            .bind(name)
            .bind(now_ms)
            .execute(&mut *tx)
            .await;
        match done {
            Ok(d) => commit_if(tx, self.dialect(), d.rows_affected() == 1, audit).await,
            // The name is taken: the transaction is dropped, so nothing is written or appended.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_env(&self, env_id: &str, audit: &AuditEvent) -> StoreResult<bool> {
        let _forget = self.env_write();
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "DELETE FROM rotation_schedule_runs WHERE schedule_id IN \
             (SELECT id FROM rotation_schedules WHERE env_id = $1)",
        )
        .bind(env_id)
        .execute(&mut *tx)
        .await?;
        for table in [
            "rotation_schedules",
            "open_sessions",
            "open_pins",
            "env_tags",
            "env_revision_tags",
            "env_revisions",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE env_id = $1"))
                .bind(env_id)
                .execute(&mut *tx)
                .await?;
        }
        let done = sqlx::query("DELETE FROM environments WHERE id = $1")
            .bind(env_id)
            .execute(&mut *tx)
            .await?;
        commit_if(tx, self.dialect(), done.rows_affected() == 1, audit).await
    }

    async fn revision_tags(&self, env_id: &str, after: &str, limit: i64) -> StoreResult<Vec<RevisionTagRecord>> {
        let rows = sqlx::query(
            "SELECT name, revision, created_ms, modified_ms, editor FROM env_revision_tags \
             WHERE env_id = $1 AND name > $2 ORDER BY name LIMIT $3",
        )
        .bind(env_id)
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(rev_tag_from_row).collect()
    }

    async fn revision_tag(&self, env_id: &str, name: &str) -> StoreResult<Option<RevisionTagRecord>> {
        let row = sqlx::query(
            "SELECT name, revision, created_ms, modified_ms, editor FROM env_revision_tags \
             WHERE env_id = $1 AND name = $2",
        )
        .bind(env_id)
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(rev_tag_from_row).transpose()
    }

    async fn put_revision_tag(
        &self,
        env_id: &str,
        t: &RevisionTagRecord,
        create: bool,
        audit: Option<&AuditEvent>,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_tx().await?;
        let done = if create {
            sqlx::query(
                "INSERT INTO env_revision_tags (env_id, name, revision, created_ms, modified_ms, editor) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (env_id, name) DO NOTHING",
            )
            .bind(env_id)
            .bind(&t.name)
            .bind(t.revision)
            .bind(t.created_ms)
            .bind(t.modified_ms)
            .bind(&t.editor)
            .execute(&mut *tx)
            .await?
        } else {
            sqlx::query(
                "UPDATE env_revision_tags SET revision = $3, modified_ms = $4, editor = $5 \
                 WHERE env_id = $1 AND name = $2",
            )
            .bind(env_id)
            .bind(&t.name)
            .bind(t.revision)
            .bind(t.modified_ms)
            .bind(&t.editor)
            .execute(&mut *tx)
            .await?
        };
        commit_if_maybe(tx, self.dialect(), done.rows_affected() == 1, audit).await
    }

    async fn delete_revision_tag(&self, env_id: &str, name: &str, audit: &AuditEvent) -> StoreResult<bool> {
        let mut tx = self.begin_tx().await?;
        let done = sqlx::query("DELETE FROM env_revision_tags WHERE env_id = $1 AND name = $2")
            .bind(env_id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        commit_if(tx, self.dialect(), done.rows_affected() == 1, audit).await
    }

    async fn env_tags(&self, env_id: &str, after: &str, limit: i64) -> StoreResult<Vec<EnvTagRecord>> {
        let rows = sqlx::query(
            "SELECT name, value, created_ms, modified_ms, editor FROM env_tags \
             WHERE env_id = $1 AND name > $2 ORDER BY name LIMIT $3",
        )
        .bind(env_id)
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(env_tag_from_row).collect()
    }

    async fn env_tag(&self, env_id: &str, name: &str) -> StoreResult<Option<EnvTagRecord>> {
        let row = sqlx::query(
            "SELECT name, value, created_ms, modified_ms, editor FROM env_tags WHERE env_id = $1 AND name = $2",
        )
        .bind(env_id)
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(env_tag_from_row).transpose()
    }

    async fn create_env_tag(&self, env_id: &str, t: &EnvTagRecord, audit: Option<&AuditEvent>) -> StoreResult<bool> {
        let mut tx = self.begin_tx().await?;
        let done = sqlx::query(
            "INSERT INTO env_tags (env_id, name, value, created_ms, modified_ms, editor) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (env_id, name) DO NOTHING",
        )
        .bind(env_id)
        .bind(&t.name)
        .bind(&t.value)
        .bind(t.created_ms)
        .bind(t.modified_ms)
        .bind(&t.editor)
        .execute(&mut *tx)
        .await?;
        commit_if_maybe(tx, self.dialect(), done.rows_affected() == 1, audit).await
    }

    async fn update_env_tag(
        &self,
        env_id: &str,
        name: &str,
        t: &EnvTagRecord,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_tx().await?;
        if t.name != name {
            let taken = sqlx::query("SELECT 1 AS one FROM env_tags WHERE env_id = $1 AND name = $2")
                .bind(env_id)
                .bind(&t.name)
                .fetch_optional(&mut *tx)
                .await?;
            if taken.is_some() {
                return Ok(false);
            }
        }
        let done = sqlx::query(
            "UPDATE env_tags SET name = $3, value = $4, modified_ms = $5, editor = $6 WHERE env_id = $1 AND name = $2",
        )
        .bind(env_id)
        .bind(name)
        .bind(&t.name)
        .bind(&t.value)
        .bind(t.modified_ms)
        .bind(&t.editor)
        .execute(&mut *tx)
        .await?;
        commit_if(tx, self.dialect(), done.rows_affected() == 1, audit).await
    }

    async fn delete_env_tag(&self, env_id: &str, name: &str, audit: &AuditEvent) -> StoreResult<bool> {
        let mut tx = self.begin_tx().await?;
        let done = sqlx::query("DELETE FROM env_tags WHERE env_id = $1 AND name = $2")
            .bind(env_id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        commit_if(tx, self.dialect(), done.rows_affected() == 1, audit).await
    }

    async fn revisions_mentioning_secrets(
        &self,
        after: Option<(&str, i64)>,
        limit: i64,
    ) -> StoreResult<Vec<StoredRevision>> {
        let (after_env, after_rev) = after.unwrap_or(("", 0));
        let rows = sqlx::query(
            "SELECT r.env_id, e.org_id, e.project, e.name, r.revision, r.yaml FROM env_revisions r \
             JOIN environments e ON e.id = r.env_id \
             WHERE (r.env_id > $1 OR (r.env_id = $1 AND r.revision > $2)) \
             AND (r.yaml LIKE '%fn::secret%' OR r.yaml LIKE '%\\%' ESCAPE '!') \
             ORDER BY r.env_id, r.revision LIMIT $3",
        )
        .bind(after_env)
        .bind(after_rev)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredRevision {
                    env_id: r.try_get("env_id")?,
                    org_id: r.try_get("org_id")?,
                    project: r.try_get("project")?,
                    name: r.try_get("name")?,
                    revision: r.try_get("revision")?,
                    yaml: r.try_get("yaml")?,
                })
            })
            .collect()
    }

    async fn reseal_revision_in_place(
        &self,
        env_id: &str,
        revision: i64,
        old_yaml: &str,
        new_yaml: &str,
        event: &AuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_tx().await?;
        let done = sqlx::query("UPDATE env_revisions SET yaml = $4 WHERE env_id = $1 AND revision = $2 AND yaml = $3")
            .bind(env_id)
            .bind(revision)
            .bind(old_yaml)
            .bind(new_yaml)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        append_audit_in(&mut tx, self.dialect(), std::slice::from_ref(event)).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn purge_freed_revision_pages(&self) -> StoreResult<()> {
        match self.dialect() {
            Dialect::Sqlite => {
                // Pages freed from now on are zeroed; VACUUM rewrites the file without the freed ones; the WAL,
                // which held the old pages too, is checkpointed and truncated.
                sqlx::query("PRAGMA secure_delete = ON").execute(self.pool()).await?;
                sqlx::query("VACUUM").execute(self.pool()).await?;
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(self.pool())
                    .await?;
            }
            Dialect::Postgres => {
                sqlx::query("VACUUM FULL env_revisions").execute(self.pool()).await?;
            }
        }
        Ok(())
    }

    async fn session(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        let row =
            sqlx::query("SELECT id, env_id, org_id, sealed, created_ms, expires_ms FROM open_sessions WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?;
        row.map(|r| {
            Ok(SessionRecord {
                id: r.try_get("id")?,
                env_id: r.try_get("env_id")?,
                org_id: r.try_get("org_id")?,
                sealed: r.try_get("sealed")?,
                created_ms: r.try_get("created_ms")?,
                expires_ms: r.try_get("expires_ms")?,
            })
        })
        .transpose()
    }

    async fn purge_sessions(&self, now_ms: i64) -> StoreResult<u64> {
        let mut purged = 0;
        for table in ["open_sessions", "open_pins"] {
            let done = sqlx::query(&format!("DELETE FROM {table} WHERE expires_ms <= $1"))
                .bind(now_ms)
                .execute(self.pool())
                .await?;
            purged += done.rows_affected();
        }
        Ok(purged)
    }

    async fn put_pins(&self, p: &PinsRecord) -> StoreResult<()> {
        // Both dialects: an upsert that only ever lengthens the expiry.
        sqlx::query(
            "INSERT INTO open_pins (org_id, digest, env_id, sealed, expires_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (org_id, digest) DO UPDATE SET expires_ms = excluded.expires_ms \
             WHERE open_pins.expires_ms < excluded.expires_ms",
        )
        .bind(&p.org_id)
        .bind(&p.digest)
        .bind(&p.env_id)
        .bind(&p.sealed)
        .bind(p.expires_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn pins(&self, org_id: &str, digest: &str) -> StoreResult<Option<PinsRecord>> {
        let row = sqlx::query("SELECT env_id, sealed, expires_ms FROM open_pins WHERE org_id = $1 AND digest = $2")
            .bind(org_id)
            .bind(digest)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| {
            Ok(PinsRecord {
                org_id: org_id.to_owned(),
                digest: digest.to_owned(),
                env_id: r.try_get("env_id")?,
                sealed: r.try_get("sealed")?,
                expires_ms: r.try_get("expires_ms")?,
            })
        })
        .transpose()
    }

    async fn envs_by_ids(&self, org_id: &str, ids: &[&str]) -> StoreResult<Vec<EnvRecord>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(200) {
            let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT {ENV_COLUMNS} FROM environments e WHERE e.org_id = $1 AND e.id IN ({})",
                marks.join(", ")
            );
            let mut q = sqlx::query(&sql).bind(org_id);
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(self.pool()).await? {
                out.push(env_from_row(&row)?);
            }
        }
        Ok(out)
    }
}
