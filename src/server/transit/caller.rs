//! Who calls the Vault API, in which org, with which role: the org is `X-Vault-Namespace` (an org name, with or
//! without a trailing `/`), else the token's own org (organization and team tokens, tokens confined by exchange),
//! else the one org a personal token's user belongs to. The role is the caller's org-wide role there.
//!
//! Rule: a caller outside the org, an unknown org and a role too low all answer Vault's `permission denied`, audited
//! on the org's chain when the org exists.

use std::sync::Arc;

use axum::http::request::Parts;

use super::super::AppState;
use super::super::auth::Principal;
use super::super::error::VaultError;
use crate::core::audit::{AuditAction, Outcome};
use crate::core::authz::Role;
use crate::core::call_tally::CallKey;
use crate::store::OrgRecord;

/// A resolved call.
pub struct Call {
    /// The shared state.
    pub app: Arc<AppState>,
    /// The caller.
    pub principal: Arc<Principal>,
    /// The caller's address.
    pub source: String,
    /// The org the call acts in.
    pub org: Arc<OrgRecord>,
    /// The caller's org-wide role there.
    pub role: Role,
}

impl Call {
    /// Resolves the org and the caller's role in it.
    pub async fn resolve(
        app: &Arc<AppState>,
        principal: Arc<Principal>,
        parts: &mut Parts,
    ) -> Result<Call, VaultError> {
        let source = super::super::client_addr(parts);
        let namespace = parts
            .headers
            .get("x-vault-namespace")
            .map(|v| v.to_str().map(|s| s.trim().trim_matches('/').to_owned()))
            .transpose()
            .map_err(|_| VaultError::invalid("malformed X-Vault-Namespace header"))?
            .filter(|s| !s.is_empty());
        let org = match namespace {
            Some(name) => app.org_by_name(&name).await?,
            None => token_org(app, &principal).await?,
        };
        let Some(org) = org else {
            return Err(VaultError::permission_denied());
        };
        let access = app.access(&principal, &org).await?;
        if !access.sees_org() {
            let event = app
                .event(
                    Some(&*principal),
                    &source,
                    Some(&org.id),
                    AuditAction::AccessDenied,
                    &org.name,
                )
                .outcome(Outcome::Denied)
                .detail("vault api: caller has no role in this org");
            app.record(event).await?;
            return Err(VaultError::permission_denied());
        }
        let role = access.role(None, None);
        Ok(Call {
            app: app.clone(),
            principal,
            source,
            org,
            role,
        })
    }

    /// Refuses (403 `permission denied`, audited) unless the caller's role is at least `needs`.
    pub async fn require(&self, needs: Role, what: &str, target: &str) -> Result<(), VaultError> {
        if self.role >= needs {
            return Ok(());
        }
        let event = self
            .app
            .event(
                Some(&*self.principal),
                &self.source,
                Some(&self.org.id),
                AuditAction::AccessDenied,
                &format!("{}/{target}", self.org.name),
            )
            .outcome(Outcome::Denied)
            .detail(format!("vault api: {what} needs {needs}; caller has {}", self.role));
        self.app.record(event).await?;
        Err(VaultError::permission_denied())
    }

    /// Whether the org has the transit mount `path` (every org has `transit`).
    pub async fn has_mount(&self, path: &str) -> Result<bool, VaultError> {
        if path == super::DEFAULT_MOUNT {
            return Ok(true);
        }
        Ok(self.mounts().await?.iter().any(|m| m == path))
    }

    /// The mounts the org enabled (cached briefly).
    pub async fn mounts(&self) -> Result<Arc<Vec<String>>, VaultError> {
        let t = &self.app.transit;
        if let Some(m) = t.mounts.get(&self.org.id).await {
            return Ok(m);
        }
        let m = Arc::new(self.app.store.transit_mounts(&self.org.id).await?);
        t.mounts.insert(self.org.id.clone(), m.clone()).await;
        Ok(m)
    }

    /// Counts a call of `items` items on `target` (`mount/key`) in the audit tally.
    pub fn tally(&self, action: AuditAction, target: &str, items: usize, outcome: Outcome) {
        self.app.stack_calls.add(
            CallKey {
                chain: self.org.id.clone(),
                actor: super::super::audit_actor(Some(&*self.principal)),
                source: self.source.clone(),
                action,
                target: format!("{}/{target}", self.org.name),
                outcome,
            },
            u64::try_from(items).unwrap_or(u64::MAX),
        );
    }

    /// An audit event of this caller on `target` (`mount/key`) in the org's chain.
    pub fn event(&self, action: AuditAction, target: &str) -> crate::core::audit::AuditEvent {
        self.app.event(
            Some(&*self.principal),
            &self.source,
            Some(&self.org.id),
            action,
            &format!("{}/{target}", self.org.name),
        )
    }
}

/// The org a token acts in without a namespace: the one org it may see (its own for organization, team and confined
/// tokens; its user's for a personal token; every org for the instance's administrator); `None` when there is none.
/// A caller who sees several must name one.
async fn token_org(app: &Arc<AppState>, p: &Principal) -> Result<Option<Arc<OrgRecord>>, VaultError> {
    if let Some(org) = app.transit.token_orgs.get(&p.token_id).await {
        return Ok(Some(org));
    }
    let mut orgs = super::super::admin::orgs_of(app, p).await?;
    if orgs.len() > 1 {
        return Err(VaultError::invalid(
            "this token can act in several organizations: name one in the X-Vault-Namespace header",
        ));
    }
    let org = orgs.pop().map(Arc::new);
    if let Some(org) = &org {
        app.transit.token_orgs.insert(p.token_id.clone(), org.clone()).await;
    }
    Ok(org)
}
