//! The rest of Vault that Transit clients call: `sys/health` (unauthenticated), `sys/mounts` (list; enable a
//! transit mount; read one) and `auth/token/lookup-self`.
//!
//! Rule: only the transit engine is served; every org has the `transit` mount, others are enabled per org (admin)
//! and audited in the same transaction.

use axum::Json;
use axum::response::{IntoResponse, Response};

use super::caller::Call;
use super::{Body, Op, reply};
use crate::core::audit::AuditAction;
use crate::core::authz::Role;
use crate::server::AppState;
use crate::server::error::{Success, VaultError};
use crate::store::Inserted;
use crate::wire::transit::{Envelope, Health, Mount, MountConfig, TokenLookup};

/// `GET /v1/sys/health`.
pub fn health(app: &AppState) -> Response {
    Success::Ok
        .with(Json(Health {
            initialized: true,
            sealed: false,
            standby: false,
            replication_performance_mode: "disabled".into(),
            replication_dr_mode: "disabled".into(),
            server_time_utc: app.clock.now_ms().div_euclid(1000),
            version: format!("sesame-{}", env!("CARGO_PKG_VERSION")),
            cluster_name: "sesame".into(),
            cluster_id: String::new(),
        }))
        .into_response()
}

fn mount_info(org_id: &str, path: &str) -> Mount {
    Mount {
        accessor: format!("transit_{path}"),
        config: MountConfig {
            default_lease_ttl: 0,
            force_no_cache: false,
            max_lease_ttl: 0,
        },
        description: String::new(),
        external_entropy_access: false,
        local: false,
        options: Default::default(),
        plugin_version: String::new(),
        running_plugin_version: String::new(),
        running_sha256: String::new(),
        seal_wrap: false,
        mount_type: "transit".into(),
        uuid: {
            let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, format!("{org_id}/{path}").as_bytes());
            let mut b = [0u8; 16];
            b.copy_from_slice(&d.as_ref()[..16]);
            uuid::Uuid::from_bytes(b).to_string()
        },
    }
}

/// `GET /v1/sys/mounts`: the org's transit mounts, in `data` and (as Vault also does) at the top level.
pub async fn mounts(call: &Call, op: Op) -> Result<Response, VaultError> {
    if op != Op::Read {
        return Err(VaultError::unsupported_operation());
    }
    call.require(Role::Reader, "listing mounts", "sys/mounts").await?;
    let mut paths = vec![super::DEFAULT_MOUNT.to_owned()];
    paths.extend(call.mounts().await?.iter().cloned());
    let mut data = serde_json::Map::new();
    for p in &paths {
        let info = serde_json::to_value(mount_info(&call.org.id, p)).unwrap_or_default();
        data.insert(format!("{p}/"), info);
    }
    let env = Envelope::new(super::request_id(), serde_json::Value::Object(data.clone()), Vec::new());
    let mut body = match serde_json::to_value(env) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    for (k, v) in data {
        body.insert(k, v);
    }
    Ok(Success::Ok.with(Json(body)).into_response())
}

/// `POST /v1/sys/mounts/:path` (enable a transit mount) and `GET` (read one).
pub async fn mount(call: &Call, op: Op, path: &str, body: &Body) -> Result<Response, VaultError> {
    match op {
        Op::Write => {
            call.require(Role::Admin, "enabling a mount", "sys/mounts").await?;
            let kind = body.fields().string("type")?.unwrap_or_default();
            if kind != "transit" {
                return Err(VaultError::invalid(format!(
                    "this server (Sesame) serves only the transit secrets engine, not {kind:?}"
                )));
            }
            if !super::keys::valid_name(path) {
                return Err(VaultError::invalid(format!("invalid mount path {path:?}")));
            }
            if path == super::DEFAULT_MOUNT || matches!(path, "sys" | "auth" | "identity" | "cubbyhole") {
                return Err(VaultError::invalid(format!("path is already in use at {path}/")));
            }
            let audit = call.event(AuditAction::TransitMountCreate, path);
            let now = call.app.clock.now_ms();
            let inserted = call
                .app
                .store
                .insert_transit_mount(&call.org.id, path, now, &audit)
                .await?;
            call.app.transit.mounts.invalidate(&call.org.id).await;
            if inserted == Inserted::AlreadyExists {
                return Err(VaultError::invalid(format!("path is already in use at {path}/")));
            }
            Ok(Success::NoContent.into_response())
        }
        Op::Read => {
            call.require(Role::Reader, "reading a mount", "sys/mounts").await?;
            if !call.has_mount(path).await? {
                return Err(VaultError::invalid(format!("No secret engine mount at {path}/")));
            }
            Ok(reply(mount_info(&call.org.id, path), Vec::new()))
        }
        _ => Err(VaultError::unsupported_operation()),
    }
}

/// `GET|POST /v1/auth/token/lookup-self`: the token as Vault's clients expect to see it (its id, never itself).
pub async fn lookup_self(call: &Call, op: Op) -> Result<Response, VaultError> {
    if !matches!(op, Op::Read | Op::Write) {
        return Err(VaultError::unsupported_operation());
    }
    let p = &call.principal;
    let now = call.app.clock.now_ms();
    let ttl = p.expires_ms().map_or(0, |e| (e - now).max(0) / 1000);
    Ok(reply(
        TokenLookup {
            accessor: p.token_id.clone(),
            creation_ttl: 0,
            display_name: super::super::audit_actor(Some(&**p)),
            entity_id: String::new(),
            expire_time: p.expires_ms().map(crate::core::timefmt::rfc3339),
            explicit_max_ttl: 0,
            id: p.token_id.clone(),
            meta: None,
            num_uses: 0,
            orphan: true,
            path: "auth/token/create".into(),
            policies: vec![format!("sesame-{}", call.role)],
            renewable: false,
            ttl,
            token_type: "service".into(),
            namespace_path: format!("{}/", call.org.name),
        },
        Vec::new(),
    ))
}
