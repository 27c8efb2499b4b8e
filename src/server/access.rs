//! The access check every handler makes: the caller's grants in an org, gathered from the store (cached briefly),
//! handed to `core::authz` for the decision; refusals are audited on the org's chain.
//!
//! A target the caller may not see is answered exactly like a missing one (same status, same message), so a caller
//! learns nothing about other orgs' or hidden environments' existence.

use std::sync::Arc;
use std::time::Duration;

use super::AppState;
use super::auth::Principal;
use super::error::ApiError;
use crate::core::audit::{AuditAction, Outcome};
use crate::core::authz::{Access, Action, Decision};
use crate::store::identity::Subject;
use crate::store::{OrgRecord, TokenKind};

/// How long a caller's grants in one org are reused without asking the store again. A revoked role can therefore
/// still be used for at most this long on a replica that had it cached.
pub const ACCESS_CACHE_TTL: Duration = Duration::from_secs(5);

/// The answer for an org that does not exist or that the caller may not see.
pub fn org_not_found(org: &str) -> ApiError {
    ApiError::not_found(format!("organization '{org}' not found"))
}

impl AppState {
    /// The caller's access in `org`.
    pub async fn access(&self, p: &Principal, org: &OrgRecord) -> Result<Arc<Access>, ApiError> {
        let key = (p.token_id.clone(), org.id.clone());
        // Concurrent requests of one caller whose entry is missing or expired compute it once.
        self.access_cache
            .try_get_with(key, async {
                let mut access = Access {
                    instance_admin: p.instance_admin,
                    org_token: p.kind == TokenKind::Organization && p.org_id.as_deref() == Some(org.id.as_str()),
                    grants: Vec::new(),
                    cap: p.role_cap,
                };
                // A confined token (minted by exchange) has no role outside its org, whatever its user has there.
                let outside = p.confined_org_id.as_deref().is_some_and(|o| o != org.id);
                if outside {
                    access.org_token = false;
                }
                if !outside && !access.instance_admin && !access.org_token {
                    let who = match (p.kind, &p.user_id, &p.team_id) {
                        (TokenKind::Personal, Some(user), _) => Some(Subject::User(user)),
                        (TokenKind::Team, _, Some(team)) if p.org_id.as_deref() == Some(org.id.as_str()) => {
                            Some(Subject::Team(team))
                        }
                        _ => None,
                    };
                    if let Some(who) = who {
                        let grants = self.store.grants_for(&org.id, who).await?;
                        access.grants = grants.iter().map(|g| g.to_grant()).collect();
                    }
                }
                Ok::<_, ApiError>(Arc::new(access))
            })
            .await
            .map_err(Arc::unwrap_or_clone)
    }

    /// The org named `name` and the caller's access in it; 404 when it does not exist or the caller has no role
    /// anywhere in it.
    pub async fn org_access(
        &self,
        p: &Principal,
        source: &str,
        name: &str,
    ) -> Result<(Arc<OrgRecord>, Arc<Access>), ApiError> {
        let org = self.org_by_name(name).await?.ok_or_else(|| org_not_found(name))?;
        let access = self.access(p, &org).await?;
        if !access.sees_org() {
            // Recorded on the org's own chain: its admins see who probed it.
            let event = self
                .event(Some(p), source, Some(&org.id), AuditAction::AccessDenied, &org.name)
                .outcome(Outcome::Denied)
                .detail("caller has no role in this org");
            self.record(event).await?;
            return Err(org_not_found(name));
        }
        Ok((org, access))
    }

    /// Decides `action` on a target in `org` (the org itself when `project` is `None`). A refusal is audited on
    /// the org's chain and answered 403, or — when the caller may not see the target — with `hidden`, the same
    /// error a missing target gets.
    pub async fn authorize(
        &self,
        p: &Principal,
        source: &str,
        (org, access): (&OrgRecord, &Access),
        (project, env): (Option<&str>, Option<&str>),
        action: Action,
        hidden: impl FnOnce() -> ApiError,
    ) -> Result<(), ApiError> {
        let decision = access.decide(project, env, action);
        if decision == Decision::Allow {
            return Ok(());
        }
        let target = match (project, env) {
            (Some(p), Some(e)) => format!("{}/{p}/{e}", org.name),
            (Some(p), None) => format!("{}/{p}", org.name),
            _ => org.name.clone(),
        };
        let role = access.role(project, env);
        let event = self
            .event(Some(p), source, Some(&org.id), AuditAction::AccessDenied, &target)
            .outcome(Outcome::Denied)
            .detail(format!("{action:?} needs {}; caller has {role}", action.needs()));
        self.record(event).await?;
        Err(match decision {
            Decision::Hidden => hidden(),
            _ => ApiError::forbidden(format!(
                "the {role} role does not allow this; it needs {}",
                action.needs()
            )),
        })
    }

    /// Forgets cached grants (after a role, team or membership change on this replica).
    pub fn forget_access(&self) {
        self.access_cache.invalidate_all();
    }
}
