//! Identity and access records: org members, teams, role grants; and the queries the access check needs.
//!
//! Grants name a subject as `user:<user id>` or `team:<team id>`. A personal token's grants in an org are its
//! user's and those of the user's teams there; a team token's are its team's.
//!
//! Every write takes its audit event (or a function making it from the write's result) and appends it in the
//! write's own transaction, only when the write takes effect.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::sql::{SqlStore, audit_in, commit_if};
use super::{AuditEvent, AuditWith, Inserted, OrgRecord, StoreError, StoreResult, TokenRecord, UserRecord};
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

/// A member of an org, with the role granted to them on the whole org (`None`: no org-wide grant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub user: UserRecord,
    pub role: Option<Role>,
    /// When they joined the org, Unix milliseconds.
    pub joined_ms: i64,
}

/// A team of an org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamRecord {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub description: String,
    pub created_ms: i64,
}

/// A team with its members' logins, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamWithMembers {
    pub team: TeamRecord,
    pub members: Vec<String>,
}

/// A grant with its subject named for people: `user:<login>` or `team:<team name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedGrant {
    pub grant: GrantRecord,
    pub subject_name: String,
}

/// A user to create with its first personal token, when [`IdentityStore::add_member`] finds no user with the
/// login. The token's `user_id` is the user's id.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub user: UserRecord,
    pub token: TokenRecord,
}

/// What [`IdentityStore::add_member`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedMember {
    /// The user (new or existing).
    pub user: UserRecord,
    /// Whether the user, and its first token, were created by this call.
    pub created_user: bool,
    /// [`Inserted::AlreadyExists`] when the user was a member already (nothing was written).
    pub inserted: Inserted,
}

/// A pending invitation of a login to an org, with the org-wide role it would give. Invitations are by login, and
/// the login need not exist: the inviter is told nothing about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationRecord {
    pub id: String,
    pub org_id: String,
    pub login: String,
    pub role: Role,
    /// Who invited, for the invitee: a login, `org:<org>` or `team:<org>/<team>`.
    pub invited_by: String,
    pub created_ms: i64,
}

/// What [`IdentityStore::revoke_token`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Revoked {
    /// Whether the token itself was revoked by this call.
    pub revoked: bool,
    /// The tokens it had made (and they had made…) revoked by this call.
    pub descendants: Vec<String>,
}

/// The identity queries.
#[async_trait::async_trait]
pub trait IdentityStore: Send + Sync {
    /// The grants in `org_id` that apply to `who`.
    async fn grants_for(&self, org_id: &str, who: Subject<'_>) -> StoreResult<Vec<GrantRecord>>;

    /// Creates an org; [`Inserted::AlreadyExists`] when the name is taken. Like every write here, appends `audit`
    /// (or what it makes of the write's result) in the same transaction when it writes, and nothing when it does
    /// not.
    async fn insert_org(&self, org: &OrgRecord, audit: &AuditEvent) -> StoreResult<Inserted>;

    /// The orgs `user_id` is a member of, by name.
    async fn orgs_of_user(&self, user_id: &str) -> StoreResult<Vec<OrgRecord>>;

    /// A user by login.
    async fn user_by_login(&self, login: &str) -> StoreResult<Option<UserRecord>>;

    /// Whether `user_id` is a member of `org_id`.
    async fn is_member(&self, org_id: &str, user_id: &str) -> StoreResult<bool>;

    /// The members of an org, by login, with their org-wide roles.
    async fn members(&self, org_id: &str) -> StoreResult<Vec<MemberRecord>>;

    /// In one transaction: the user with `login` (created from `new_user`, with its token, if no user has that
    /// login) joins the org, and gets `role` on the whole org. A user who is a member already is left as is
    /// ([`Inserted::AlreadyExists`]).
    async fn add_member(
        &self,
        org_id: &str,
        login: &str,
        new_user: &NewUser,
        role: Role,
        now_ms: i64,
        audit: AuditWith<'_, AddedMember>,
    ) -> StoreResult<AddedMember>;

    /// Records an invitation; one already pending for the same org and login is kept (same id), its role and
    /// inviter replaced. Returns what is stored.
    async fn invite(
        &self,
        invitation: &InvitationRecord,
        audit: AuditWith<'_, InvitationRecord>,
    ) -> StoreResult<InvitationRecord>;

    /// The invitations pending for `login`, oldest first, each with its org's name.
    async fn invitations_for(&self, login: &str) -> StoreResult<Vec<(InvitationRecord, String)>>;

    /// The invitations pending in an org, by login.
    async fn invitations_of_org(&self, org_id: &str) -> StoreResult<Vec<InvitationRecord>>;

    /// In one transaction: the invitation `id` addressed to `user`'s login is consumed, and the user joins its org
    /// with its role (a user who is a member already keeps the role they have). `None` (nothing written) when there
    /// is no such invitation for this user.
    async fn accept_invitation(
        &self,
        id: &str,
        user: &UserRecord,
        now_ms: i64,
        audit: AuditWith<'_, InvitationRecord>,
    ) -> StoreResult<Option<InvitationRecord>>;

    /// Deletes the invitation `id` addressed to `login`; `None` when there is none. (The invitee declines.)
    async fn decline_invitation(
        &self,
        id: &str,
        login: &str,
        audit: AuditWith<'_, InvitationRecord>,
    ) -> StoreResult<Option<InvitationRecord>>;

    /// Deletes the invitation of `login` to an org; `false` when there is none. (An org admin withdraws it.)
    async fn withdraw_invitation(&self, org_id: &str, login: &str, audit: &AuditEvent) -> StoreResult<bool>;

    /// Sets a member's org-wide role; `false` (nothing written) when the user is not a member.
    async fn set_member_role(
        &self,
        org_id: &str,
        user_id: &str,
        role: Role,
        now_ms: i64,
        audit: &AuditEvent,
    ) -> StoreResult<bool>;

    /// In one transaction: removes the user from the org, from its teams there, and every grant the user holds in
    /// it. `false` when the user was not a member.
    async fn remove_member(&self, org_id: &str, user_id: &str, audit: &AuditEvent) -> StoreResult<bool>;

    /// The teams of an org, by name, with their members.
    async fn teams(&self, org_id: &str) -> StoreResult<Vec<TeamWithMembers>>;

    /// A team by name.
    async fn team_by_name(&self, org_id: &str, name: &str) -> StoreResult<Option<TeamRecord>>;

    /// A team by id.
    async fn team_by_id(&self, id: &str) -> StoreResult<Option<TeamRecord>>;

    /// Creates a team; [`Inserted::AlreadyExists`] when the org has a team of that name.
    async fn insert_team(&self, team: &TeamRecord, audit: &AuditEvent) -> StoreResult<Inserted>;

    /// In one transaction: deletes a team, its memberships and grants, and revokes its team tokens (returned, so
    /// the caller can forget them). `None` when there was no such team.
    async fn delete_team(
        &self,
        team_id: &str,
        now_ms: i64,
        audit: AuditWith<'_, Vec<String>>,
    ) -> StoreResult<Option<Vec<String>>>;

    /// Adds a user to a team ([`Inserted::AlreadyExists`] when already in it).
    async fn add_team_member(
        &self,
        team_id: &str,
        user_id: &str,
        now_ms: i64,
        audit: &AuditEvent,
    ) -> StoreResult<Inserted>;

    /// Removes a user from a team; `false` when the user was not in it.
    async fn remove_team_member(&self, team_id: &str, user_id: &str, audit: &AuditEvent) -> StoreResult<bool>;

    /// Every grant in an org, with subjects named, ordered by subject, project, environment.
    async fn grants(&self, org_id: &str) -> StoreResult<Vec<NamedGrant>>;

    /// Sets a grant (replacing the role of the same subject at the same level).
    async fn put_grant(&self, grant: &GrantRecord, audit: &AuditEvent) -> StoreResult<()>;

    /// Deletes a grant; `false` when there was none.
    async fn delete_grant(
        &self,
        org_id: &str,
        subject: &str,
        project: &str,
        env: &str,
        audit: &AuditEvent,
    ) -> StoreResult<bool>;

    /// Stores a new token (its hash only). A token with a `parent_id` is stored only while that parent is not
    /// revoked (checked under a lock on the parent's row): `false`, nothing written, when it is.
    async fn insert_token(&self, token: &TokenRecord, audit: &AuditEvent) -> StoreResult<bool>;

    /// A token by id.
    async fn token_by_id(&self, id: &str) -> StoreResult<Option<TokenRecord>>;

    /// A user's personal tokens, oldest first.
    async fn tokens_of_user(&self, user_id: &str) -> StoreResult<Vec<TokenRecord>>;

    /// An org's organization and team tokens, oldest first.
    async fn tokens_of_org(&self, org_id: &str) -> StoreResult<Vec<TokenRecord>>;

    /// Marks a token revoked, with every token made from it (transitively). `revoked` is `false` when there is no
    /// such token or it was revoked already; `descendants` are the ids this call revoked below it. `audit` is
    /// appended in either case (a revocation of a revoked token is recorded too).
    async fn revoke_token(&self, id: &str, now_ms: i64, audit: AuditWith<'_, Revoked>) -> StoreResult<Revoked>;
}

pub(crate) fn grant_from_row(row: &sqlx::any::AnyRow) -> StoreResult<GrantRecord> {
    let role: String = row.try_get("role")?;
    Ok(GrantRecord {
        org_id: row.try_get("org_id")?,
        subject: row.try_get("subject")?,
        project: row.try_get("project")?,
        env: row.try_get("env")?,
        role: parse_role(&role, "role_grants")?,
        created_ms: row.try_get("created_ms")?,
    })
}

const USER_COLUMNS: &str = "u.id AS u_id, u.login AS u_login, u.display_name AS u_display_name, u.instance_admin AS \
                            u_instance_admin, u.created_ms AS u_created_ms";

fn team_row(row: &AnyRow) -> StoreResult<TeamRecord> {
    Ok(TeamRecord {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        created_ms: row.try_get("created_ms")?,
    })
}

const TOKEN_COLUMNS: &str = "id, token_hash, kind, user_id, org_id, team_id, description, created_ms, expires_ms, revoked_ms, parent_id, \
     confined_org_id, role_cap";

fn parse_role(role: &str, table: &'static str) -> StoreResult<Role> {
    role.parse().map_err(|_| StoreError::Corrupt {
        table,
        detail: format!("unknown role {role:?}"),
    })
}

/// The one `INSERT` of a token row (its hash only), used by every path that makes a token: the bootstrap's admin
/// token, signup, and [`IdentityStore::insert_token`].
pub(crate) async fn insert_token_in(tx: &mut sqlx::Transaction<'_, sqlx::Any>, t: &TokenRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO tokens (id, token_hash, kind, user_id, org_id, description, created_ms, expires_ms, revoked_ms, \
         team_id, parent_id, confined_org_id, role_cap) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&t.id)
    .bind(t.token_hash.to_vec())
    .bind(t.kind.as_str())
    .bind(&t.user_id)
    .bind(&t.org_id)
    .bind(&t.description)
    .bind(t.created_ms)
    .bind(t.expires_ms)
    .bind(t.revoked_ms)
    .bind(&t.team_id)
    .bind(&t.parent_id)
    .bind(&t.confined_org_id)
    .bind(t.role_cap.map(|r| r.as_str()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Revokes `root` and every token made from it, transitively; returns the ids revoked by this call.
///
/// The root's row is updated first, on its own: a concurrent [`IdentityStore::insert_token`] of a child locks that
/// row too, so either the child was committed before (and the cascade, whose statements start after, sees it) or
/// it finds its parent revoked and is not inserted. The cascade repeats until it finds nothing left, so a
/// grandchild committed while it ran is caught as well.
async fn revoke_tree_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    root: &str,
    now_ms: i64,
) -> StoreResult<(bool, Vec<String>)> {
    let root_revoked = sqlx::query("UPDATE tokens SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL")
        .bind(now_ms)
        .bind(root)
        .execute(&mut **tx)
        .await?
        .rows_affected()
        > 0;
    let mut descendants = Vec::new();
    loop {
        let ids = sqlx::query(
            "WITH RECURSIVE tree(id) AS (SELECT id FROM tokens WHERE parent_id = $1 UNION SELECT t.id FROM tokens t \
             JOIN tree ON t.parent_id = tree.id) UPDATE tokens SET revoked_ms = $2 WHERE revoked_ms IS NULL AND id \
             IN (SELECT id FROM tree) RETURNING id",
        )
        .bind(root)
        .bind(now_ms)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("id"))
        .collect::<Result<Vec<_>, _>>()?;
        if ids.is_empty() {
            break;
        }
        descendants.extend(ids);
    }
    Ok((root_revoked, descendants))
}

async fn upsert_grant_in(tx: &mut sqlx::Transaction<'_, sqlx::Any>, g: &GrantRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO role_grants (org_id, subject, project, env, role, created_ms) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (org_id, subject, project, env) DO UPDATE SET role = excluded.role, created_ms = \
         excluded.created_ms",
    )
    .bind(&g.org_id)
    .bind(&g.subject)
    .bind(&g.project)
    .bind(&g.env)
    .bind(g.role.as_str())
    .bind(g.created_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn user_by_login_in(tx: &mut sqlx::Transaction<'_, sqlx::Any>, login: &str) -> StoreResult<Option<UserRecord>> {
    let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users u WHERE u.login = $1"))
        .bind(login)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(|r| super::sql::user_from_row(r, "u_")).transpose()
}

const INVITATION_COLUMNS: &str = "i.id, i.org_id, i.login, i.role, i.invited_by, i.created_ms";
const INVITATION_FIELDS: &str = "id, org_id, login, role, invited_by, created_ms";

fn invitation_row(row: &AnyRow) -> StoreResult<InvitationRecord> {
    let role: String = row.try_get("role")?;
    Ok(InvitationRecord {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        login: row.try_get("login")?,
        role: parse_role(&role, "invitations")?,
        invited_by: row.try_get("invited_by")?,
        created_ms: row.try_get("created_ms")?,
    })
}

/// [`Inserted`] from whether an insert wrote.
fn inserted(wrote: bool) -> Inserted {
    if wrote { Inserted::New } else { Inserted::AlreadyExists }
}

#[async_trait::async_trait]
impl IdentityStore for SqlStore {
    async fn invite(
        &self,
        inv: &InvitationRecord,
        audit: AuditWith<'_, InvitationRecord>,
    ) -> StoreResult<InvitationRecord> {
        let mut tx = self.begin_tx().await?;
        sqlx::query(
            "INSERT INTO invitations (id, org_id, login, role, invited_by, created_ms) VALUES ($1, $2, $3, $4, $5, \
             $6) ON CONFLICT (org_id, login) DO UPDATE SET role = excluded.role, invited_by = excluded.invited_by",
        )
        .bind(&inv.id)
        .bind(&inv.org_id)
        .bind(&inv.login)
        .bind(inv.role.as_str())
        .bind(&inv.invited_by)
        .bind(inv.created_ms)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {INVITATION_COLUMNS} FROM invitations i WHERE i.org_id = $1 AND i.login = $2"
        ))
        .bind(&inv.org_id)
        .bind(&inv.login)
        .fetch_one(&mut *tx)
        .await?;
        let stored = invitation_row(&row)?;
        audit_in(&mut tx, self.dialect(), &audit(&stored)).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn invitations_for(&self, login: &str) -> StoreResult<Vec<(InvitationRecord, String)>> {
        let rows = sqlx::query(&format!(
            "SELECT {INVITATION_COLUMNS}, o.name AS org_name FROM invitations i JOIN orgs o ON o.id = i.org_id \
             WHERE i.login = $1 ORDER BY i.created_ms, i.id"
        ))
        .bind(login)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((invitation_row(r)?, r.try_get("org_name")?)))
            .collect()
    }

    async fn invitations_of_org(&self, org_id: &str) -> StoreResult<Vec<InvitationRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {INVITATION_COLUMNS} FROM invitations i WHERE i.org_id = $1 ORDER BY i.login"
        ))
        .bind(org_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(invitation_row).collect()
    }

    async fn accept_invitation(
        &self,
        id: &str,
        user: &UserRecord,
        now_ms: i64,
        audit: AuditWith<'_, InvitationRecord>,
    ) -> StoreResult<Option<InvitationRecord>> {
        let mut tx = self.begin_tx().await?;
        let row = sqlx::query(&format!(
            "DELETE FROM invitations WHERE id = $1 AND login = $2 RETURNING {INVITATION_FIELDS}"
        ))
        .bind(id)
        .bind(&user.login)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let inv = invitation_row(&row)?;
        let joined = sqlx::query(
            "INSERT INTO org_members (org_id, user_id, created_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(&inv.org_id)
        .bind(&user.id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if joined > 0 {
            upsert_grant_in(
                &mut tx,
                &GrantRecord {
                    org_id: inv.org_id.clone(),
                    subject: format!("user:{}", user.id),
                    project: String::new(),
                    env: String::new(),
                    role: inv.role,
                    created_ms: now_ms,
                },
            )
            .await?;
        }
        audit_in(&mut tx, self.dialect(), &audit(&inv)).await?;
        tx.commit().await?;
        Ok(Some(inv))
    }

    async fn decline_invitation(
        &self,
        id: &str,
        login: &str,
        audit: AuditWith<'_, InvitationRecord>,
    ) -> StoreResult<Option<InvitationRecord>> {
        let mut tx = self.begin_tx().await?;
        let row = sqlx::query(&format!(
            "DELETE FROM invitations WHERE id = $1 AND login = $2 RETURNING {INVITATION_FIELDS}"
        ))
        .bind(id)
        .bind(login)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let inv = invitation_row(&row)?;
        audit_in(&mut tx, self.dialect(), &audit(&inv)).await?;
        tx.commit().await?;
        Ok(Some(inv))
    }

    async fn withdraw_invitation(&self, org_id: &str, login: &str, audit: &AuditEvent) -> StoreResult<bool> {
        let mut tx = self.begin_tx().await?;
        let n = sqlx::query("DELETE FROM invitations WHERE org_id = $1 AND login = $2")
            .bind(org_id)
            .bind(login)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        commit_if(tx, self.dialect(), n > 0, audit).await
    }

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

    async fn insert_org(&self, org: &OrgRecord, audit: &AuditEvent) -> StoreResult<Inserted> {
        let mut tx = self.begin_tx().await?;
        let n = sqlx::query("INSERT INTO orgs (id, name, created_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(&org.id)
            .bind(&org.name)
            .bind(org.created_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        Ok(inserted(commit_if(tx, self.dialect(), n > 0, audit).await?))
    }

    async fn orgs_of_user(&self, user_id: &str) -> StoreResult<Vec<OrgRecord>> {
        let rows = sqlx::query(
            "SELECT o.id, o.name, o.created_ms FROM orgs o JOIN org_members m ON m.org_id = o.id WHERE m.user_id = $1 \
             ORDER BY o.name",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(super::sql::org_from_row).collect()
    }

    async fn user_by_login(&self, login: &str) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users u WHERE u.login = $1"))
            .bind(login)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(|r| super::sql::user_from_row(r, "u_")).transpose()
    }

    async fn is_member(&self, org_id: &str, user_id: &str) -> StoreResult<bool> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM org_members WHERE org_id = $1 AND user_id = $2")
            .bind(org_id)
            .bind(user_id)
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    async fn members(&self, org_id: &str) -> StoreResult<Vec<MemberRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, m.created_ms AS joined_ms, g.role AS role FROM org_members m JOIN users u ON \
             u.id = m.user_id LEFT JOIN role_grants g ON g.org_id = m.org_id AND g.subject = 'user:' || u.id AND \
             g.project = '' AND g.env = '' WHERE m.org_id = $1 ORDER BY u.login"
        ))
        .bind(org_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let role: Option<String> = row.try_get("role")?;
                Ok(MemberRecord {
                    user: super::sql::user_from_row(row, "u_")?,
                    role: role.as_deref().map(|r| parse_role(r, "role_grants")).transpose()?,
                    joined_ms: row.try_get("joined_ms")?,
                })
            })
            .collect()
    }

    async fn add_member(
        &self,
        org_id: &str,
        login: &str,
        new_user: &NewUser,
        role: Role,
        now_ms: i64,
        audit: AuditWith<'_, AddedMember>,
    ) -> StoreResult<AddedMember> {
        let mut tx = self.begin_tx().await?;
        let (user, created_user) = match user_by_login_in(&mut tx, login).await? {
            Some(u) => (u, false),
            None => {
                let u = &new_user.user;
                sqlx::query(
                    "INSERT INTO users (id, login, display_name, instance_admin, created_ms) VALUES ($1, $2, $3, $4, \
                     $5)",
                )
                .bind(&u.id)
                .bind(login)
                .bind(&u.display_name)
                .bind(i64::from(u.instance_admin))
                .bind(u.created_ms)
                .execute(&mut *tx)
                .await?;
                insert_token_in(&mut tx, &new_user.token).await?;
                (
                    UserRecord {
                        login: login.to_owned(),
                        ..u.clone()
                    },
                    true,
                )
            }
        };
        let joined = sqlx::query(
            "INSERT INTO org_members (org_id, user_id, created_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(org_id)
        .bind(&user.id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if joined == 0 {
            tx.rollback().await?;
            return Ok(AddedMember {
                user,
                created_user: false,
                inserted: Inserted::AlreadyExists,
            });
        }
        upsert_grant_in(
            &mut tx,
            &GrantRecord {
                org_id: org_id.to_owned(),
                subject: format!("user:{}", user.id),
                project: String::new(),
                env: String::new(),
                role,
                created_ms: now_ms,
            },
        )
        .await?;
        let added = AddedMember {
            user,
            created_user,
            inserted: Inserted::New,
        };
        audit_in(&mut tx, self.dialect(), &audit(&added)).await?;
        tx.commit().await?;
        Ok(added)
    }

    async fn set_member_role(
        &self,
        org_id: &str,
        user_id: &str,
        role: Role,
        now_ms: i64,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_tx().await?;
        let row = sqlx::query("SELECT COUNT(*) AS n FROM org_members WHERE org_id = $1 AND user_id = $2")
            .bind(org_id)
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
        if row.try_get::<i64, _>("n")? == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        upsert_grant_in(
            &mut tx,
            &GrantRecord {
                org_id: org_id.to_owned(),
                subject: format!("user:{user_id}"),
                project: String::new(),
                env: String::new(),
                role,
                created_ms: now_ms,
            },
        )
        .await?;
        commit_if(tx, self.dialect(), true, audit).await
    }

    async fn remove_member(&self, org_id: &str, user_id: &str, audit: &AuditEvent) -> StoreResult<bool> {
        let mut tx = self.begin_tx().await?;
        let removed = sqlx::query("DELETE FROM org_members WHERE org_id = $1 AND user_id = $2")
            .bind(org_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if removed == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query("DELETE FROM role_grants WHERE org_id = $1 AND subject = $2")
            .bind(org_id)
            .bind(format!("user:{user_id}"))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "DELETE FROM team_members WHERE user_id = $1 AND team_id IN (SELECT id FROM teams WHERE org_id = $2)",
        )
        .bind(user_id)
        .bind(org_id)
        .execute(&mut *tx)
        .await?;
        commit_if(tx, self.dialect(), true, audit).await
    }

    async fn teams(&self, org_id: &str) -> StoreResult<Vec<TeamWithMembers>> {
        let rows =
            sqlx::query("SELECT id, org_id, name, description, created_ms FROM teams WHERE org_id = $1 ORDER BY name")
                .bind(org_id)
                .fetch_all(self.pool())
                .await?;
        let mut teams: Vec<TeamWithMembers> = rows
            .iter()
            .map(|r| {
                Ok(TeamWithMembers {
                    team: team_row(r)?,
                    members: Vec::new(),
                })
            })
            .collect::<StoreResult<_>>()?;
        let members = sqlx::query(
            "SELECT m.team_id AS team_id, u.login AS login FROM team_members m JOIN users u ON u.id = m.user_id JOIN \
             teams t ON t.id = m.team_id WHERE t.org_id = $1 ORDER BY u.login",
        )
        .bind(org_id)
        .fetch_all(self.pool())
        .await?;
        for row in &members {
            let team_id: String = row.try_get("team_id")?;
            if let Some(t) = teams.iter_mut().find(|t| t.team.id == team_id) {
                t.members.push(row.try_get("login")?);
            }
        }
        Ok(teams)
    }

    async fn team_by_name(&self, org_id: &str, name: &str) -> StoreResult<Option<TeamRecord>> {
        let row =
            sqlx::query("SELECT id, org_id, name, description, created_ms FROM teams WHERE org_id = $1 AND name = $2")
                .bind(org_id)
                .bind(name)
                .fetch_optional(self.pool())
                .await?;
        row.as_ref().map(team_row).transpose()
    }

    async fn team_by_id(&self, id: &str) -> StoreResult<Option<TeamRecord>> {
        let row = sqlx::query("SELECT id, org_id, name, description, created_ms FROM teams WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(team_row).transpose()
    }

    async fn insert_team(&self, t: &TeamRecord, audit: &AuditEvent) -> StoreResult<Inserted> {
        let mut tx = self.begin_tx().await?;
        let n = sqlx::query(
            "INSERT INTO teams (id, org_id, name, description, created_ms) VALUES ($1, $2, $3, $4, $5) ON CONFLICT \
             DO NOTHING",
        )
        .bind(&t.id)
        .bind(&t.org_id)
        .bind(&t.name)
        .bind(&t.description)
        .bind(t.created_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        Ok(inserted(commit_if(tx, self.dialect(), n > 0, audit).await?))
    }

    async fn delete_team(
        &self,
        team_id: &str,
        now_ms: i64,
        audit: AuditWith<'_, Vec<String>>,
    ) -> StoreResult<Option<Vec<String>>> {
        let mut tx = self.begin_tx().await?;
        let Some(row) = sqlx::query("SELECT org_id FROM teams WHERE id = $1")
            .bind(team_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            tx.rollback().await?;
            return Ok(None);
        };
        let org_id: String = row.try_get("org_id")?;
        sqlx::query("DELETE FROM team_members WHERE team_id = $1")
            .bind(team_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM role_grants WHERE org_id = $1 AND subject = $2")
            .bind(&org_id)
            .bind(format!("team:{team_id}"))
            .execute(&mut *tx)
            .await?;
        let revoked =
            sqlx::query("UPDATE tokens SET revoked_ms = $1 WHERE team_id = $2 AND revoked_ms IS NULL RETURNING id")
                .bind(now_ms)
                .bind(team_id)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>("id"))
                .collect::<Result<Vec<_>, _>>()?;
        // What the team's tokens made goes with them.
        let mut revoked = revoked;
        for id in revoked.clone() {
            revoked.extend(revoke_tree_in(&mut tx, &id, now_ms).await?.1);
        }
        sqlx::query("DELETE FROM teams WHERE id = $1")
            .bind(team_id)
            .execute(&mut *tx)
            .await?;
        audit_in(&mut tx, self.dialect(), &audit(&revoked)).await?;
        tx.commit().await?;
        Ok(Some(revoked))
    }

    async fn add_team_member(
        &self,
        team_id: &str,
        user_id: &str,
        now_ms: i64,
        audit: &AuditEvent,
    ) -> StoreResult<Inserted> {
        let mut tx = self.begin_tx().await?;
        let n = sqlx::query(
            "INSERT INTO team_members (team_id, user_id, created_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(team_id)
        .bind(user_id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        Ok(inserted(commit_if(tx, self.dialect(), n > 0, audit).await?))
    }

    async fn remove_team_member(&self, team_id: &str, user_id: &str, audit: &AuditEvent) -> StoreResult<bool> {
        let mut tx = self.begin_tx().await?;
        let n = sqlx::query("DELETE FROM team_members WHERE team_id = $1 AND user_id = $2")
            .bind(team_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        commit_if(tx, self.dialect(), n > 0, audit).await
    }

    async fn grants(&self, org_id: &str) -> StoreResult<Vec<NamedGrant>> {
        let rows = sqlx::query(
            "SELECT g.org_id, g.subject, g.project, g.env, g.role, g.created_ms, u.login AS login, t.name AS team \
             FROM role_grants g LEFT JOIN users u ON g.subject = 'user:' || u.id LEFT JOIN teams t ON g.subject = \
             'team:' || t.id WHERE g.org_id = $1",
        )
        .bind(org_id)
        .fetch_all(self.pool())
        .await?;
        let mut out = rows
            .iter()
            .map(|row| {
                let grant = grant_from_row(row)?;
                let login: Option<String> = row.try_get("login")?;
                let team: Option<String> = row.try_get("team")?;
                let subject_name = match (login, team) {
                    (Some(l), _) => format!("user:{l}"),
                    (None, Some(t)) => format!("team:{t}"),
                    // A subject whose user or team is gone: shown by id, so it can still be revoked.
                    (None, None) => grant.subject.clone(),
                };
                Ok(NamedGrant { grant, subject_name })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        out.sort_by(|a, b| {
            (&a.subject_name, &a.grant.project, &a.grant.env).cmp(&(&b.subject_name, &b.grant.project, &b.grant.env))
        });
        Ok(out)
    }

    async fn put_grant(&self, grant: &GrantRecord, audit: &AuditEvent) -> StoreResult<()> {
        let mut tx = self.begin_tx().await?;
        upsert_grant_in(&mut tx, grant).await?;
        commit_if(tx, self.dialect(), true, audit).await?;
        Ok(())
    }

    async fn delete_grant(
        &self,
        org_id: &str,
        subject: &str,
        project: &str,
        env: &str,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_tx().await?;
        let n = sqlx::query("DELETE FROM role_grants WHERE org_id = $1 AND subject = $2 AND project = $3 AND env = $4")
            .bind(org_id)
            .bind(subject)
            .bind(project)
            .bind(env)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        commit_if(tx, self.dialect(), n > 0, audit).await
    }

    async fn insert_token(&self, token: &TokenRecord, audit: &AuditEvent) -> StoreResult<bool> {
        let mut tx = self.begin_tx().await?;
        if let Some(parent) = &token.parent_id {
            // A no-op write that locks the parent's row (see `revoke_tree_in`) and finds it still live.
            let live = sqlx::query("UPDATE tokens SET revoked_ms = revoked_ms WHERE id = $1 AND revoked_ms IS NULL")
                .bind(parent)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if live == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        insert_token_in(&mut tx, token).await?;
        commit_if(tx, self.dialect(), true, audit).await
    }

    async fn token_by_id(&self, id: &str) -> StoreResult<Option<TokenRecord>> {
        let row = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(super::sql::token_from_row).transpose()
    }

    async fn tokens_of_user(&self, user_id: &str) -> StoreResult<Vec<TokenRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE user_id = $1 AND kind = 'personal' ORDER BY created_ms, id"
        ))
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(super::sql::token_from_row).collect()
    }

    async fn tokens_of_org(&self, org_id: &str) -> StoreResult<Vec<TokenRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE org_id = $1 AND kind IN ('organization', 'team') ORDER BY \
             created_ms, id"
        ))
        .bind(org_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(super::sql::token_from_row).collect()
    }

    async fn revoke_token(&self, id: &str, now_ms: i64, audit: AuditWith<'_, Revoked>) -> StoreResult<Revoked> {
        let mut tx = self.begin_tx().await?;
        let (revoked, descendants) = revoke_tree_in(&mut tx, id, now_ms).await?;
        let revoked = Revoked { revoked, descendants };
        audit_in(&mut tx, self.dialect(), &audit(&revoked)).await?;
        tx.commit().await?;
        Ok(revoked)
    }
}
