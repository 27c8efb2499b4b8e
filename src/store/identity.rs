//! Identity and access records: org members, teams, role grants; and the queries the access check needs.
//!
//! Grants name a subject as `user:<user id>` or `team:<team id>`. A personal token's grants in an org are its
//! user's and those of the user's teams there; a team token's are its team's.

use sqlx::Row;

use super::sql::SqlStore;
use super::{StoreError, StoreResult};
use crate::core::authz::{Grant, Role};

/// A grant as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    pub org_id: String,
    /// `user:<id>` or `team:<id>`.
    pub subject: String,
    /// `""` for the whole org.
    pub project: String,
    /// `""` for the whole project.
    pub env: String,
    pub role: Role,
    pub created_ms: i64,
}

impl GrantRecord {
    /// The pure form `core::authz` decides on.
    pub fn to_grant(&self) -> Grant {
        Grant {
            project: (!self.project.is_empty()).then(|| self.project.clone()),
            env: (!self.env.is_empty()).then(|| self.env.clone()),
            role: self.role,
        }
    }
}

/// Who the grants are looked up for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject<'a> {
    /// A user, with the teams the user belongs to.
    User(&'a str),
    /// A team (a team token).
    Team(&'a str),
}

/// The identity queries.
#[async_trait::async_trait]
pub trait IdentityStore: Send + Sync {
    /// The grants in `org_id` that apply to `who`.
    async fn grants_for(&self, org_id: &str, who: Subject<'_>) -> StoreResult<Vec<GrantRecord>>;
}

pub(crate) fn grant_from_row(row: &sqlx::any::AnyRow) -> StoreResult<GrantRecord> {
    let role: String = row.try_get("role")?;
    Ok(GrantRecord {
        org_id: row.try_get("org_id")?,
        subject: row.try_get("subject")?,
        project: row.try_get("project")?,
        env: row.try_get("env")?,
        role: role.parse().map_err(|_| StoreError::Corrupt {
            table: "role_grants",
            detail: format!("unknown role {role:?}"),
        })?,
        created_ms: row.try_get("created_ms")?,
    })
}

#[async_trait::async_trait]
impl IdentityStore for SqlStore {
    async fn grants_for(&self, org_id: &str, who: Subject<'_>) -> StoreResult<Vec<GrantRecord>> {
        let rows = match who {
            Subject::User(user_id) => {
                sqlx::query(
                    "SELECT org_id, subject, project, env, role, created_ms FROM role_grants WHERE org_id = $1 AND \
                     (subject = $2 OR subject IN (SELECT 'team:' || t.id FROM teams t JOIN team_members m ON \
                     m.team_id = t.id WHERE t.org_id = $1 AND m.user_id = $3))",
                )
                .bind(org_id)
                .bind(format!("user:{user_id}"))
                .bind(user_id)
                .fetch_all(self.pool())
                .await?
            }
            Subject::Team(team_id) => {
                sqlx::query(
                    "SELECT org_id, subject, project, env, role, created_ms FROM role_grants WHERE org_id = $1 AND \
                     subject = $2",
                )
                .bind(org_id)
                .bind(format!("team:{team_id}"))
                .fetch_all(self.pool())
                .await?
            }
        };
        rows.iter().map(grant_from_row).collect()
    }
}
