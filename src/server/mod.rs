//! The HTTP edge: the axum router, its shared state, and starting/stopping the listener (plain HTTP on loopback,
//! rustls everywhere else unless `--insecure`).
//!
//! Handlers live in one module per resource ([`stacks`], [`ops`]); authentication is the [`auth::Principal`]
//! extractor; every error leaves through [`error::ApiError`] in ESC's shape.

pub mod access;
pub mod admin;
pub mod answer;
pub mod audit;
pub mod auth;
pub mod body;
pub mod conn;
pub mod edge;
pub mod error;
pub mod esc;
pub mod invitations;
pub mod keks;
pub mod migrations;
pub mod oidc_issuer;
pub mod ops;
pub mod params;
pub mod stacks;
pub mod throttle;
pub mod transit;
pub mod trust;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{delete, get, post, put};
use moka::future::Cache;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::core::audit::{AuditAction, AuditEvent, Outcome};
use crate::core::keys::Name;
use crate::core::tokens::AccessToken;
use crate::instance::{Instance, InstanceConfig, StartError};
use crate::keyring::Keyring;
use crate::migrate::MigrateConfig;
use crate::store::{OrgRecord, Store};
use error::ApiError;

/// How long a revision's text is reused (a retraction elsewhere is seen by this replica within this time).
pub const DOC_CACHE_TTL: Duration = Duration::from_secs(30);
/// How long an evaluated open result is reused for identical inputs.
pub const EVAL_CACHE_TTL: Duration = Duration::from_secs(30);

/// How long an org-name lookup is reused.
const ORG_CACHE_TTL: Duration = Duration::from_secs(5);

/// State shared by every handler.
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The keyring.
    pub keyring: Arc<Keyring>,
    /// Token hash → principal, for [`auth::TOKEN_CACHE_TTL`].
    pub tokens: Cache<[u8; 32], Arc<auth::Principal>>,
    orgs: Cache<String, Arc<OrgRecord>>,
    /// (environment id, revision) → its text, parsed for imports and ciphertexts (revisions are immutable).
    pub doc_cache: Cache<(String, i64), Arc<esc::eval::DocInfo>>,
    /// Digest of everything an open evaluates → its rendered result (plaintext secrets included: zeroized when
    /// the entry goes), so repeated opens of an unchanged environment skip evaluation.
    pub eval_cache: Cache<[u8; 32], Arc<esc::Opened>>,
    /// (org id, pins digest) → the expiry its stored row has at least, so an open of a known set writes nothing.
    pub pins_stored: Cache<(String, [u8; 32]), i64>,
    /// (token id, org id) → the caller's grants there, for [`access::ACCESS_CACHE_TTL`].
    access_cache: Cache<(String, String), Arc<crate::core::authz::Access>>,
    /// How KEK adapters are opened (data folder, passphrase, PIN) when a KEK is registered.
    pub kek_options: sesame_kms::OpenOptions,
    /// What a KEK registered over the API may reach on the host (modules, PIN files, endpoints).
    pub kek_allow: crate::kek_reach::KekAllowList,
    /// This process's id as a lease owner (KEK migrations).
    pub replica_id: String,
    /// How this replica runs KEK migrations.
    pub migrate_config: MigrateConfig,
    /// How this replica runs rotation schedules.
    pub schedules: esc::schedules::ScheduleConfig,
    /// The migrations this replica is running, each with whether another start or resume came in meanwhile.
    migration_runs: std::sync::Mutex<std::collections::HashMap<String, bool>>,
    /// The audit writer.
    pub audit: crate::audit::AuditLog,
    /// Limits on unauthenticated and failing callers, and the tallies of their failures.
    pub throttle: throttle::Throttle,
    /// SHA-256 of the token `/metrics` requires (`--metrics-token-file`); `None`: `/metrics` is open.
    pub metrics_token: Option<[u8; 32]>,
    /// The tally of stack calls, written aggregated per second.
    pub stack_calls: Arc<crate::audit::CallAudit>,
    /// Signs audit chain heads.
    pub checkpoints: Arc<crate::audit_sign::Checkpointer>,
    /// The clock every handler reads (the instance's; see [`crate::clock`]).
    pub clock: crate::clock::Clock,
    /// The server's external origin (`--public-url`), without a trailing slash.
    pub public_url: String,
    /// The OIDC issuer (`--issuer-url`): every token's `iss` and the discovery document's `issuer`, byte for byte.
    pub issuer_url: String,
    /// The OIDC issuer's keys and signing.
    pub oidc: Arc<crate::oidc_issuer::Issuer>,
    /// Where fetches named by API callers may go (`--egress-allow`).
    pub egress: crate::egress::EgressPolicy,
    /// Where `fn::open::gcp-login` reaches Google (`--gcp-sts-url`, `--gcp-iam-credentials-url`).
    pub gcp: esc::providers::gcp::GcpEndpoints,
    /// Registered issuers' verification keys, cached by issuer (token exchange).
    pub issuer_keys: trust::keys::IssuerKeys,
    /// The Vault-Transit API's caches, limits and nonce-budget counts.
    pub transit: transit::TransitState,
}

/// Who an audit record names: `user:LOGIN`, `token:ID` or `anonymous`.
pub(crate) fn audit_actor(principal: Option<&auth::Principal>) -> String {
    match principal {
        Some(p) => match &p.user_login {
            Some(login) => ["user:", login].concat(),
            None => ["token:", &p.token_id].concat(),
        },
        None => "anonymous".into(),
    }
}

/// The caller's address (`unknown` when the server was not started with connection info).
pub struct ClientAddr(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_addr(parts)))
    }
}

/// The peer address of a request, for the audit log.
pub fn client_addr(parts: &axum::http::request::Parts) -> String {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| ip_text(c.0.ip()))
        .unwrap_or_else(|| "unknown".into())
}

/// An address as `IpAddr`'s `Display` writes it. IPv4, the common case, is written directly: through the
/// formatter (which supports padding by formatting twice) it cost 1,300 instructions, a sixtieth of a stack call.
fn ip_text(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

impl AppState {
    /// The one way an edge builds an audit event: `action` on `target` by `principal` (or `anonymous`) from
    /// `source`, in `chain` (an org id; `None`: the instance chain), now; outcome `ok` and no detail until
    /// [`AuditEvent::outcome`](crate::core::audit::AuditEvent::outcome) and
    /// [`AuditEvent::detail`](crate::core::audit::AuditEvent::detail) say otherwise. A write passes it to the store
    /// method that makes the change (appended in the same transaction); anything else hands it to [`AppState::record`].
    pub fn event(
        &self,
        principal: Option<&auth::Principal>,
        source: &str,
        chain: Option<&str>,
        action: AuditAction,
        target: &str,
    ) -> AuditEvent {
        AuditEvent::new(
            chain.unwrap_or(crate::core::audit::INSTANCE_CHAIN),
            self.clock.now_ms(),
            audit_actor(principal),
            source,
            action,
            target,
        )
    }

    /// Writes `event` through the group-commit writer and waits for it to be committed; a failure to audit fails
    /// the request. For what changes nothing in the store (refusals, reads that must be audited) or changes it
    /// elsewhere; a store write takes its event itself.
    pub async fn record(&self, event: AuditEvent) -> Result<(), error::ApiError> {
        self.audit
            .record(event)
            .await
            .map_err(|e| error::ApiError::internal(&e))
    }

    /// Like [`AppState::record`], and inserts `session` in the same transaction as the event (a session row holds
    /// what an open cannot re-derive: provider outputs).
    pub async fn record_with_session(
        &self,
        event: AuditEvent,
        session: crate::store::envs::SessionRecord,
    ) -> Result<(), error::ApiError> {
        self.audit
            .record_with(event, Some(session))
            .await
            .map_err(|e| error::ApiError::internal(&e))
    }

    /// Passes `decision` through, writing a refusal to the audit log first.
    pub async fn audit_refusal(
        &self,
        principal: &auth::Principal,
        source: &str,
        target: &str,
        decision: Result<(), error::ApiError>,
    ) -> Result<(), error::ApiError> {
        if let Err(refused) = &decision {
            let detail = refused.message().to_owned();
            let org = principal.org_id.as_deref();
            let event = self.event(Some(principal), source, org, AuditAction::AdminDenied, target);
            self.record(event.outcome(Outcome::Denied).detail(detail)).await?;
        }
        decision
    }

    /// State over a started instance.
    pub fn new(
        store: Arc<dyn Store>,
        keyring: Arc<Keyring>,
        signer: crate::audit_sign::AuditSigner,
        kek_options: sesame_kms::OpenOptions,
        kek_allow: crate::kek_reach::KekAllowList,
        migrate_config: MigrateConfig,
        clock: crate::clock::Clock,
    ) -> AppState {
        let audit = crate::audit::AuditLog::start(store.clone());
        let oidc = Arc::new(crate::oidc_issuer::Issuer::new(
            store.clone(),
            keyring.clone(),
            clock.clone(),
            Default::default(),
        ));
        AppState {
            oidc,
            public_url: "http://localhost".into(),
            issuer_url: "http://localhost/oidc".into(),
            kek_allow,
            throttle: throttle::Throttle::new(Default::default(), clock.clone()),
            stack_calls: crate::audit::CallAudit::start(audit.clone(), clock.clone()),
            checkpoints: crate::audit_sign::Checkpointer::start(
                signer,
                store.clone(),
                audit.committed(),
                clock.clone(),
            ),
            clock,
            audit,
            store,
            keyring,
            kek_options,
            migrate_config,
            schedules: Default::default(),
            migration_runs: Default::default(),
            replica_id: uuid::Uuid::new_v4().to_string(),
            tokens: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(auth::TOKEN_CACHE_TTL)
                .build(),
            orgs: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ORG_CACHE_TTL)
                .build(),
            doc_cache: Cache::builder()
                .max_capacity(64 << 20)
                .weigher(|_, d: &Arc<esc::eval::DocInfo>| u32::try_from(d.src.len()).unwrap_or(u32::MAX))
                .time_to_live(DOC_CACHE_TTL)
                .build(),
            eval_cache: Cache::builder()
                .max_capacity(64 << 20)
                .weigher(|_, v: &Arc<esc::Opened>| u32::try_from(v.weight()).unwrap_or(u32::MAX))
                .time_to_live(EVAL_CACHE_TTL)
                .build(),
            pins_stored: Cache::builder().max_capacity(100_000).build(),
            access_cache: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(access::ACCESS_CACHE_TTL)
                .build(),
            metrics_token: None,
            egress: Default::default(),
            gcp: Default::default(),
            issuer_keys: Default::default(),
            transit: Default::default(),
        }
    }

    /// An org by name, cached briefly (orgs are rarely made and never renamed yet).
    pub async fn org_by_name(&self, name: &str) -> Result<Option<Arc<OrgRecord>>, ApiError> {
        // Concurrent lookups of one name that is not cached read the store once; a missing org is not cached.
        let found = self
            .orgs
            .try_get_with_by_ref(name, async {
                match self.store.org_by_name(name).await {
                    Ok(Some(org)) => Ok(Arc::new(org)),
                    Ok(None) => Err(None),
                    Err(e) => Err(Some(ApiError::from(e))),
                }
            })
            .await;
        match found {
            Ok(org) => Ok(Some(org)),
            Err(e) => match Arc::unwrap_or_clone(e) {
                None => Ok(None),
                Some(e) => Err(e),
            },
        }
    }
}

/// Settings of `sesame serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// TLS certificate and key (PEM files).
    pub tls: Option<TlsFiles>,
    /// Allow plain HTTP off loopback.
    pub insecure: bool,
    /// Largest request body accepted, after decompression.
    pub max_body_bytes: usize,
    /// How this replica runs KEK migrations (batch, concurrency, lease).
    pub migration: MigrateConfig,
    /// Abuse limits: per-source budgets for failing callers, slow clients, connections.
    pub limits: throttle::Limits,
    /// A file holding the token `/metrics` requires as `Authorization: Bearer …` (`None`: `/metrics` is open).
    pub metrics_token_file: Option<PathBuf>,
    /// Non-public addresses that fetches named by API callers (issuer discovery and keys) may reach.
    pub egress_allow: crate::egress::EgressPolicy,
    /// Where `fn::open::gcp-login` reaches Google's STS and IAM Credentials APIs.
    pub gcp: esc::providers::gcp::GcpEndpoints,
    /// The instance.
    pub instance: InstanceConfig,
    /// The OIDC issuer: public and issuer URLs, signing keys.
    pub oidc: oidc_issuer::OidcServeConfig,
    /// The Vault-Transit API: batch limit, nonce budget.
    pub transit: TransitConfig,
    /// How this replica runs rotation schedules (tick, lease).
    pub schedules: esc::schedules::ScheduleConfig,
}

/// Settings of the Vault-Transit API.
#[derive(Debug, Clone)]
pub struct TransitConfig {
    /// The largest `batch_input` (default 1,000).
    pub max_batch: usize,
    /// Encryptions per key version before it is rotated (default 2³⁰).
    pub rotate_after_encryptions: i64,
}

impl Default for TransitConfig {
    fn default() -> Self {
        TransitConfig {
            max_batch: transit::DEFAULT_MAX_BATCH,
            rotate_after_encryptions: transit::budget::DEFAULT_ROTATE_AFTER,
        }
    }
}

/// PEM files for TLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// Why `sesame serve` could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Plain HTTP was asked for off loopback.
    #[error(
        "refusing to serve plain HTTP on {0}, which is not a loopback address: give --tls-cert and --tls-key, or \
         --insecure if a TLS proxy in front of Sesame terminates TLS"
    )]
    PlainHttpOffLoopback(SocketAddr),
    /// The first org's name is invalid.
    #[error("invalid --org name: {0}")]
    OrgName(#[from] crate::core::keys::NameError),
    /// The instance failed to start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// TLS files could not be loaded.
    #[error("could not load TLS certificate/key: {0}")]
    Tls(std::io::Error),
    /// The metrics token file could not be used.
    #[error("invalid --metrics-token-file {path}: {reason}")]
    MetricsToken {
        /// The file.
        path: PathBuf,
        /// Why (never the file's contents).
        reason: String,
    },
    /// The audit signing key could not be loaded or made.
    #[error(transparent)]
    AuditSigning(#[from] crate::audit_sign::SignerError),
    /// The listener could not bind.
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// `--public-url` or `--issuer-url` is not usable.
    #[error("{0}")]
    IssuerUrl(String),
    /// The OIDC signing keys could not be loaded or made.
    #[error(transparent)]
    Oidc(#[from] crate::oidc_issuer::IssuerError),
}

/// How often the OIDC issuer checks whether a signing key is due, retired or expired (each use checks too).
const OIDC_ROTATION_TICK: Duration = Duration::from_secs(60);

/// How often expired open sessions are deleted (reads refuse them at once in any case).
const SESSION_PURGE_EVERY: Duration = Duration::from_secs(60);

/// Deletes expired open sessions periodically, for as long as the state lives.
fn spawn_session_purger(state: &Arc<AppState>) {
    let weak = Arc::downgrade(state);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SESSION_PURGE_EVERY);
        loop {
            tick.tick().await;
            let Some(state) = weak.upgrade() else { return };
            match state.store.purge_sessions(state.clock.now_ms()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(sessions = n, "purged expired open sessions"),
                Err(e) => tracing::warn!(error = %e, "could not purge expired open sessions"),
            }
        }
    });
}

/// The routes over `state`. Every request reaches them through the [`edge::Edge`] of its connection (request ids,
/// the control-character check, the body limit and gunzip, finished answers), made by [`edge::MakeEdge`].
pub fn router(state: Arc<AppState>) -> Router {
    let stacks = Router::new()
        .route("/api/stacks/{org}/{project}/{stack}/encrypt", post(stacks::encrypt))
        .route("/api/stacks/{org}/{project}/{stack}/decrypt", post(stacks::decrypt))
        .route(
            "/api/stacks/{org}/{project}/{stack}/batch-encrypt",
            post(stacks::batch_encrypt),
        )
        .route(
            "/api/stacks/{org}/{project}/{stack}/batch-decrypt",
            post(stacks::batch_decrypt),
        );
    let admin = Router::new()
        .route("/api/sesame/v1/keks", post(keks::add).get(keks::list))
        .route("/api/sesame/v1/keks/{id}/default", post(keks::make_default))
        .route("/api/sesame/v1/keks/{id}/disable", post(keks::disable))
        .route(
            "/api/sesame/v1/kek-migrations",
            post(migrations::start).get(migrations::list),
        )
        .route("/api/sesame/v1/kek-migrations/{id}", get(migrations::get))
        .route("/api/sesame/v1/kek-migrations/{id}/pause", post(migrations::pause))
        .route("/api/sesame/v1/kek-migrations/{id}/resume", post(migrations::resume))
        .route("/api/sesame/v1/kek-migrations/{id}/verify", post(migrations::verify))
        .route("/api/sesame/v1/kek-migrations/{id}/retire", post(migrations::retire))
        // The same, scoped to one org, for its admins.
        .route(
            "/api/sesame/v1/orgs/{org}/keks",
            post(keks::org_add).get(keks::org_list),
        )
        .route("/api/sesame/v1/orgs/{org}/keks/{id}/default", post(keks::make_default))
        .route("/api/sesame/v1/orgs/{org}/keks/{id}/disable", post(keks::disable))
        .route(
            "/api/sesame/v1/orgs/{org}/kek-migrations",
            post(migrations::org_start).get(migrations::org_list),
        )
        .route(
            "/api/sesame/v1/orgs/{org}/kek-migrations/{id}",
            get(migrations::org_get),
        )
        .route(
            "/api/sesame/v1/orgs/{org}/kek-migrations/{id}/pause",
            post(migrations::pause),
        )
        .route(
            "/api/sesame/v1/orgs/{org}/kek-migrations/{id}/resume",
            post(migrations::resume),
        )
        .route(
            "/api/sesame/v1/orgs/{org}/kek-migrations/{id}/verify",
            post(migrations::verify),
        )
        .route(
            "/api/sesame/v1/orgs/{org}/kek-migrations/{id}/retire",
            post(migrations::retire),
        )
        .route("/api/sesame/v1/audit", get(audit::export_instance))
        .route("/api/sesame/v1/audit/key", get(audit::public_key))
        .route("/api/sesame/v1/audit/prune", post(audit::prune))
        .route("/api/sesame/v1/orgs/{org}/audit", get(audit::export_org))
        // Admin API: orgs, members, teams, roles, tokens, user
        .route("/api/user", get(admin::current_user))
        .route("/api/sesame/v1/orgs", get(admin::list_orgs).post(admin::create_org))
        .route(
            "/api/sesame/v1/orgs/{org}/members",
            get(admin::list_members).post(admin::add_member),
        )
        .route(
            "/api/sesame/v1/orgs/{org}/members/{login}",
            delete(admin::remove_member).patch(admin::set_member_role),
        )
        .route(
            "/api/sesame/v1/orgs/{org}/teams",
            get(admin::list_teams).post(admin::create_team),
        )
        .route("/api/sesame/v1/orgs/{org}/teams/{team}", delete(admin::delete_team))
        .route(
            "/api/sesame/v1/orgs/{org}/teams/{team}/members/{login}",
            put(admin::add_team_member).delete(admin::remove_team_member),
        )
        .route(
            "/api/sesame/v1/orgs/{org}/roles",
            get(admin::list_roles).put(admin::put_role).delete(admin::delete_role),
        )
        .route(
            "/api/sesame/v1/tokens",
            post(admin::create_token).get(admin::list_tokens),
        )
        .route("/api/sesame/v1/tokens/{id}", delete(admin::revoke_token))
        .route("/api/sesame/v1/invitations", get(invitations::list_mine))
        .route("/api/sesame/v1/invitations/{id}/accept", post(invitations::accept))
        .route("/api/sesame/v1/invitations/{id}/decline", post(invitations::decline))
        .route("/api/sesame/v1/orgs/{org}/invitations", get(invitations::list_org))
        .route(
            "/api/sesame/v1/orgs/{org}/invitations/{login}",
            delete(invitations::withdraw),
        )
        // Token exchange (RFC 8693, ESO's variant) and its trust configuration, at Pulumi's paths.
        .route("/api/oauth/token", post(trust::exchange::token))
        .route("/api/oauth/oidc/token", post(trust::exchange::eso_token))
        .route(
            "/api/orgs/{org}/oidc/issuers",
            post(trust::issuers::create).get(trust::issuers::list),
        )
        .route(
            "/api/orgs/{org}/oidc/issuers/{id}",
            get(trust::issuers::get)
                .patch(trust::issuers::update)
                .delete(trust::issuers::delete),
        )
        .route(
            "/api/orgs/{org}/auth/policies/oidcissuers/{issuer}",
            get(trust::issuers::get_policy),
        )
        .route(
            "/api/orgs/{org}/auth/policies/{policy}",
            axum::routing::patch(trust::issuers::update_policy),
        );
    let e = "/api/esc/environments";
    let env = format!("{e}/{{org}}/{{project}}/{{env}}");
    let environments = Router::new()
        .route("/api/esc/providers", get(esc::list_providers))
        .route("/api/esc/providers/{name}/schema", get(esc::provider_schema))
        .route("/api/esc/rotators", get(esc::list_rotators))
        .route("/api/esc/rotators/{name}/schema", get(esc::rotator_schema))
        .route("/api/esc/context/schema", get(esc::context_schema))
        .route(e, get(esc::list_all))
        .route(&format!("{e}/{{org}}"), get(esc::list_org).post(esc::create))
        .route(&format!("{e}/{{org}}/yaml/check"), post(esc::check))
        .route(&format!("{e}/{{org}}/yaml/open"), post(esc::open_yaml))
        .route(&format!("{e}/{{org}}/yaml/open/{{id}}"), get(esc::read_open_yaml))
        .route(&format!("{env}/rotate"), post(esc::rotate))
        .route(
            &format!("{env}/schedules"),
            get(esc::list_schedules).post(esc::create_schedule),
        )
        .route(
            &format!("{env}/schedules/{{id}}"),
            get(esc::get_schedule)
                .patch(esc::update_schedule)
                .delete(esc::delete_schedule),
        )
        .route(&format!("{env}/schedules/{{id}}/history"), get(esc::schedule_history))
        .route(
            &env,
            get(esc::get_definition)
                .head(esc::head_definition)
                .patch(esc::update)
                .delete(esc::delete),
        )
        .route(&format!("{env}/decrypt"), get(esc::decrypt))
        .route(&format!("{env}/clone"), post(esc::clone))
        .route(&format!("{env}/rename"), post(esc::rename))
        .route(&format!("{env}/open"), post(esc::open))
        .route(&format!("{env}/open/{{id}}"), get(esc::read_open))
        .route(&format!("{env}/open//{{id}}"), get(esc::read_open))
        .route(&format!("{env}/versions"), get(esc::list_revisions))
        .route(
            &format!("{env}/versions/tags"),
            get(esc::list_revision_tags).post(esc::create_revision_tag),
        )
        .route(
            &format!("{env}/versions/tags/{{tag}}"),
            get(esc::get_revision_tag)
                .patch(esc::update_revision_tag)
                .delete(esc::delete_revision_tag),
        )
        .route(&format!("{env}/versions/{{version}}"), get(esc::get_version))
        .route(&format!("{env}/versions/{{version}}/open"), post(esc::open_version))
        .route(&format!("{env}/versions/{{version}}/retract"), post(esc::retract))
        .route(&format!("{env}/tags"), get(esc::list_tags).post(esc::create_tag))
        .route(&format!("{env}/oidc/token"), post(esc::mint_token))
        .route(&format!("{env}/oidc/claims"), post(esc::preview_claims))
        .route(
            &format!("{env}/tags/{{tag}}"),
            get(esc::get_tag).patch(esc::update_tag).delete(esc::delete_tag),
        );
    let issuer = oidc_issuer::issuer_path(&state.issuer_url);
    let oidc = Router::new()
        .route(
            &format!("{issuer}/.well-known/openid-configuration"),
            get(oidc_issuer::discovery),
        )
        .route(&format!("{issuer}/.well-known/jwks"), get(oidc_issuer::jwks));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .merge(stacks)
        .merge(environments)
        .merge(admin)
        .merge(oidc)
        // Vault's API (Transit and the few paths its clients call): one route, Vault's methods (LIST included).
        .route("/v1/{*path}", axum::routing::any(transit::handle))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .with_state(state)
}

/// A running server.
pub struct RunningServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    /// The administrator token, when this start bootstrapped the instance.
    pub new_admin_token: Option<AccessToken>,
    /// Where the administrator token was written.
    pub admin_token_path: PathBuf,
    /// The shared state (for metrics in tests and benchmarks).
    pub state: Arc<AppState>,
}

impl RunningServer {
    /// The address the server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish (up to 10 s), and waits for the server to end.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = match self.task.await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(e)),
        };
        // Failures tallied in windows still open are written before the process goes.
        self.state.throttle.flush(&self.state.audit, true).await;
        // Encryption counts not yet in the store (the transit nonce budget) are added now.
        transit::budget::flush(&self.state).await;
        // Every request has ended: the stack calls still in open windows are written now.
        if !self.state.stack_calls.flush_all().await {
            tracing::error!("some tallied stack calls could not be written to the audit log at shutdown");
        }
        result
    }
}

/// Starts the instance and the listener; returns once the server accepts connections.
pub async fn start(config: ServeConfig) -> Result<RunningServer, ServeError> {
    crate::tls::install_crypto_provider();
    if config.tls.is_none() && !config.listen.ip().is_loopback() {
        if !config.insecure {
            return Err(ServeError::PlainHttpOffLoopback(config.listen));
        }
        tracing::warn!(
            listen = %config.listen,
            "serving plain HTTP off loopback because of --insecure: tokens and secrets cross the network unencrypted"
        );
    }
    config.instance.first_org.parse::<Name>()?;
    let tls = match &config.tls {
        Some(files) => Some(
            axum_server::tls_rustls::RustlsConfig::from_pem_file(&files.cert, &files.key)
                .await
                .map_err(ServeError::Tls)?,
        ),
        None => None,
    };
    let metrics_token = match &config.metrics_token_file {
        Some(path) => Some(
            ops::read_metrics_token(path).map_err(|reason| ServeError::MetricsToken {
                path: path.clone(),
                reason,
            })?,
        ),
        None => None,
    };
    // Bound before the state is made: the default public URL names the address actually bound (port 0 in tests).
    let listener = std::net::TcpListener::bind(config.listen).map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    listener.set_nonblocking(true).map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    let (public_url, issuer_url) =
        oidc_issuer::resolve_urls(&config.oidc, addr, config.tls.is_some()).map_err(ServeError::IssuerUrl)?;
    let instance = Instance::open(&config.instance).await?;
    let (store, clock) = (instance.store.as_ref(), &instance.clock);
    let signer = crate::audit_sign::AuditSigner::load_or_create(store, &instance.keyring, clock).await?;
    tracing::info!(
        fingerprint = signer.fingerprint(),
        "audit checkpoints are signed with this Ed25519 key"
    );
    let mut state = AppState::new(
        instance.store.clone(),
        instance.keyring.clone(),
        signer,
        instance.kek_options.clone(),
        instance.kek_allow.clone(),
        config.migration.clone(),
        instance.clock.clone(),
    );
    state.throttle = throttle::Throttle::new(config.limits.auth.clone(), instance.clock.clone());
    state.metrics_token = metrics_token;
    state.oidc = Arc::new(crate::oidc_issuer::Issuer::new(
        instance.store.clone(),
        instance.keyring.clone(),
        instance.clock.clone(),
        config.oidc.keys,
    ));
    state.oidc.ensure_keys().await?;
    tracing::info!(issuer = %issuer_url, public_url = %public_url, "OIDC issuer");
    state.public_url = public_url;
    state.issuer_url = issuer_url;
    state.egress = config.egress_allow.clone();
    state.gcp = config.gcp.clone();
    state.transit.max_batch = config.transit.max_batch.max(1);
    state.transit.budget.rotate_after = config.transit.rotate_after_encryptions.max(1);
    state.schedules = config.schedules.clone();
    let state = Arc::new(state);
    // Secrets an earlier version stored in plaintext are sealed before anything is served.
    if let Err(e) = esc::seal::reseal_stored_plaintexts(&state).await {
        tracing::error!(error = %e.message(), "could not seal the plaintext secrets of earlier versions");
    }
    // Migrations that were running when a replica stopped continue here (the lease decides who runs each).
    for m in state
        .store
        .migrations()
        .await
        .map_err(|e| ServeError::Start(StartError::Store(e)))?
    {
        if m.state == crate::store::MigrationState::Running {
            migrations::spawn_run(&state, m.id);
        }
    }
    spawn_session_purger(&state);
    esc::schedules::spawn_runner(&state);
    crate::oidc_issuer::spawn_rotation(&state.oidc, OIDC_ROTATION_TICK);
    throttle::spawn_flusher(&state);
    transit::budget::spawn_flusher(&state);
    let app = edge::MakeEdge::new(router(state.clone()), config.max_body_bytes, tls.is_some());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = conn::spawn(listener, tls, app, &config.limits.connections, stop_rx);
    tracing::info!(%addr, store = instance.store.backend(), tls = config.tls.is_some(), "listening");
    Ok(RunningServer {
        addr,
        stop: Some(stop_tx),
        task,
        new_admin_token: instance.new_admin_token,
        admin_token_path: instance.admin_token_path,
        state,
    })
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        // Every octet value in every position (the others 0, 9, 10, 99, 100, 255: each digit-count boundary).
        for fill in [0u8, 9, 10, 99, 100, 255] {
            for pos in 0..4 {
                for v in 0..=255u8 {
                    let mut octets = [fill; 4];
                    octets[pos] = v;
                    let ip = IpAddr::V4(Ipv4Addr::from(octets));
                    assert_eq!(super::ip_text(ip), ip.to_string());
                }
            }
        }
        for ip in [
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped()),
            "2001:db8::1:0:0:1".parse().unwrap(),
        ] {
            assert_eq!(super::ip_text(ip), ip.to_string());
        }
    }
}
