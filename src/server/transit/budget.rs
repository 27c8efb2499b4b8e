//! Automatic rotation: the nonce budget and `auto_rotate_period`.
//!
//! AES-GCM and ChaCha20-Poly1305 with random 96-bit nonces stay within NIST SP 800-38D's bound (a collision
//! probability below 2⁻³²) for about 2³² encryptions under one key. Each replica counts the values it encrypts
//! per key version and adds its counts to the version's row every [`FLUSH_EVERY`]; once a version's total reaches
//! the budget (default [`DEFAULT_ROTATE_AFTER`] = 2³⁰, a quarter of the bound) the key is rotated, conditionally
//! on that version still being the latest, so replicas agree on one new version. The overshoot is at most what all
//! replicas encrypt in one flush period (and counts not yet flushed when a replica dies are lost: at most one
//! period's worth), far below the margin. A key whose latest version is older than its `auto_rotate_period` is
//! rotated by the first call that uses it.
//!
//! Rule: an automatic rotation is audited like a requested one (`transit.key.rotate`, actor `system:transit`,
//! with the reason), in the same transaction as the new version.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::super::AppState;
use super::super::error::VaultError;
use super::keys::{self, LoadedKey};
use crate::core::audit::{AuditAction, AuditEvent};
use crate::store::OrgRecord;

/// How often counts are added to the store.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Encryptions per key version before it is rotated (a quarter of the 2³² bound for random 96-bit nonces).
pub const DEFAULT_ROTATE_AFTER: i64 = 1 << 30;

/// Where a counted version belongs.
#[derive(Clone, Debug)]
struct Counted {
    org_id: String,
    mount: String,
    name: String,
    n: u64,
}

/// Encryptions counted on this replica and not yet in the store, per (key id, version).
#[derive(Debug)]
pub struct Budget {
    pending: Mutex<HashMap<(String, u32), Counted>>,
    /// The budget per version.
    pub rotate_after: i64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            pending: Mutex::new(HashMap::new()),
            rotate_after: DEFAULT_ROTATE_AFTER,
        }
    }
}

impl Budget {
    /// Counts `n` encryptions under `version` of a key.
    pub fn add(&self, org_id: &str, mount: &str, name: &str, key_id: &str, version: u32, n: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending
            .entry((key_id.to_owned(), version))
            .or_insert_with(|| Counted {
                org_id: org_id.to_owned(),
                mount: mount.to_owned(),
                name: name.to_owned(),
                n: 0,
            })
            .n += n;
    }

    fn take(&self) -> HashMap<(String, u32), Counted> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn system_event(app: &AppState, org_id: &str, org_name: &str, target: &str, detail: String) -> AuditEvent {
    AuditEvent::new(
        org_id,
        app.clock.now_ms(),
        "system:transit",
        "internal",
        AuditAction::TransitKeyRotate,
        format!("{org_name}/{target}"),
    )
    .detail(detail)
}

/// Adds this replica's counts to the store and rotates the keys whose latest version spent its budget.
pub async fn flush(app: &AppState) {
    let pending = app.transit.budget.take();
    if pending.is_empty() {
        return;
    }
    let counts: Vec<(String, i64, i64)> = pending
        .iter()
        .map(|((id, v), c)| (id.clone(), i64::from(*v), i64::try_from(c.n).unwrap_or(i64::MAX)))
        .collect();
    let totals = match app.store.add_transit_encryptions(&counts).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "could not add transit encryption counts; they are kept for the next flush");
            for ((id, v), c) in pending {
                app.transit.budget.add(&c.org_id, &c.mount, &c.name, &id, v, c.n);
            }
            return;
        }
    };
    for (key_id, version, total) in totals {
        if total < app.transit.budget.rotate_after {
            continue;
        }
        let Some(c) = u32::try_from(version)
            .ok()
            .and_then(|v| pending.get(&(key_id.clone(), v)))
        else {
            continue;
        };
        if let Err(e) = rotate_spent(app, c, version, total).await {
            tracing::warn!(error = ?e.errors(), key = %c.name, "could not rotate a transit key past its nonce budget");
        }
    }
}

async fn rotate_spent(app: &AppState, c: &Counted, version: i64, total: i64) -> Result<(), VaultError> {
    let Some(key) = keys::load(app, &c.org_id, &c.mount, &c.name).await? else {
        return Ok(());
    };
    if i64::from(key.latest) != version || key.policy.imported {
        return Ok(());
    }
    let org_name = app
        .store
        .org_by_id(&c.org_id)
        .await?
        .map(|o| o.name)
        .unwrap_or_else(|| c.org_id.clone());
    let target = format!("{}/{}", c.mount, c.name);
    let detail = format!(
        "version={} reason=nonce-budget encryptions={total} budget={}",
        key.latest + 1,
        app.transit.budget.rotate_after
    );
    let audit = system_event(app, &c.org_id, &org_name, &target, detail);
    keys::rotate(app, &c.org_id, &c.mount, &key, &key.policy, None, &audit).await?;
    Ok(())
}

/// Whether `key`'s latest version is older than its `auto_rotate_period`.
pub fn is_due(app: &AppState, key: &LoadedKey) -> bool {
    let period = key.policy.auto_rotate_period_s;
    if period == 0 || key.policy.imported {
        return false;
    }
    let Some(latest) = key.versions.get(&key.latest) else {
        return false;
    };
    let period_ms = i64::try_from(period.saturating_mul(1000)).unwrap_or(i64::MAX);
    app.clock.now_ms().saturating_sub(latest.created_ms) >= period_ms
}

/// Rotates `key` when its `auto_rotate_period` has passed (one replica wins; the others find it rotated).
pub async fn rotate_if_due(app: &AppState, org: &OrgRecord, mount: &str, key: &LoadedKey) -> Result<(), VaultError> {
    if !is_due(app, key) {
        return Ok(());
    }
    let target = format!("{mount}/{}", key.name);
    let detail = format!("version={} reason=auto_rotate_period", key.latest + 1);
    let audit = system_event(app, &org.id, &org.name, &target, detail);
    keys::rotate(app, &org.id, mount, key, &key.policy, None, &audit).await?;
    Ok(())
}

/// Flushes the counts every [`FLUSH_EVERY`] for as long as the state lives.
pub fn spawn_flusher(state: &Arc<AppState>) {
    let weak = Arc::downgrade(state);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(state) = weak.upgrade() else { return };
            flush(&state).await;
        }
    });
}
