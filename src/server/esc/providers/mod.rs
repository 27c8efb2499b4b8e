//! Providers (`fn::open::<name>`) at the evaluator's edge: the registry of what this server runs, and what a call
//! is given. The pure evaluator only lists the calls it needs ([`crate::core::env::eval::Need::Call`]); the edge
//! ([`super::eval`]) runs them here, each under its deadline, and evaluates again with the outputs in hand.
//!
//! The AWS providers (`aws-login`, `aws-secrets`, `aws-parameter-store`) and the `aws-iam` rotator are built with
//! the `aws` feature (modules `aws`, `aws_stores`, `aws_iam`).
//!
//! Rule: a provider sees its inputs (plain JSON, secrets revealed: it needs them) and what the edge attests about
//! the call ([`OpenCtx`]); it answers an [`Output`] or an error message that never holds a secret (the edge also
//! blanks any secret input that shows up in it). Outputs are never logged nor audited; each module's schemas are
//! written for this server in the shape Pulumi publishes (field names, types, defaults, required fields).

use std::sync::LazyLock;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::server::AppState;
use crate::server::auth::Principal;
use crate::store::OrgRecord;
use crate::store::envs::EnvRecord;

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "aws")]
pub mod aws_iam;
#[cfg(feature = "aws")]
pub mod aws_stores;
pub mod azure;
pub mod gcp;
mod inputs;
pub mod oidc;
pub mod vault;

/// How long a provider may take when it names no deadline of its own.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// What the edge attests about one call.
pub struct OpenCtx<'a> {
    pub app: &'a AppState,
    pub principal: &'a Principal,
    /// Where the request came from (for the audit records a provider writes, such as a mint's).
    pub source: &'a str,
    pub org: &'a OrgRecord,
    /// The stored environment whose document makes the call; `None` for an unsaved document (`yaml/open`).
    pub current: Option<&'a EnvRecord>,
    /// The environment opened; `None` when an unsaved document was opened.
    pub root: Option<&'a EnvRecord>,
}

/// What a provider returned: a JSON value, secret as a whole, or (`secret: false`) secret where the provider's output
/// schema marks a part `"secret": true`. Sessions store exactly this (sealed).
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct Output {
    pub value: Json,
    pub secret: bool,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        crate::server::answer::wipe_json(std::mem::take(&mut self.value));
    }
}

/// The login-family token a provider presents (`req`), minted by this server's issuer about the environment whose
/// document makes the call (audited as a mint); refused in an unsaved document, which names no environment (`what`
/// names the provider and mode in that message).
pub async fn mint_login(
    ctx: &OpenCtx<'_>,
    what: &str,
    req: &crate::core::oidc::TokenRequest,
) -> Result<crate::oidc_issuer::MintedToken, String> {
    let Some(current) = ctx.current else {
        return Err(format!(
            "{what} is not available in an unsaved document: save the environment and open it"
        ));
    };
    crate::server::oidc_issuer::mint_for_env(
        ctx.app,
        ctx.principal,
        ctx.source,
        ctx.org,
        (current, ctx.root.unwrap_or(current)),
        req,
    )
    .await
    .map_err(|e| format!("minting the login token: {}", e.message()))
}

/// A provider: its schemas and its `open`.
pub trait Provider: Send + Sync {
    /// The name after `fn::open::`.
    fn name(&self) -> &'static str;
    /// One sentence for editors.
    fn description(&self) -> &'static str;
    /// The JSON schema of the inputs (checked by the evaluator before any call).
    fn inputs(&self) -> &'static Json;
    /// The JSON schema of the outputs (what check mode types the call's value by).
    fn outputs(&self) -> &'static Json;
    /// How long one call may take before it is cut.
    fn deadline(&self) -> Duration {
        DEFAULT_DEADLINE
    }
    /// Performs the call: the output, or a message for the diagnostic (never holding a secret).
    fn open<'a>(&'a self, ctx: &'a OpenCtx<'a>, inputs: &'a Json) -> BoxFuture<'a, Result<Output, String>>;
}

#[cfg(feature = "aws")]
static PROVIDERS: &[&dyn Provider] = &[
    &aws::AwsLogin,
    &aws_stores::AwsParameterStore,
    &aws_stores::AwsSecrets,
    &azure::AzureLogin,
    &gcp::GcpLogin,
    &oidc::Oidc,
    &vault::VaultLogin,
    &vault::VaultSecrets,
];
#[cfg(not(feature = "aws"))]
static PROVIDERS: &[&dyn Provider] = &[
    &azure::AzureLogin,
    &gcp::GcpLogin,
    &oidc::Oidc,
    &vault::VaultLogin,
    &vault::VaultSecrets,
];

/// Every provider this server runs, ordered by name.
pub fn all() -> &'static [&'static dyn Provider] {
    PROVIDERS
}

/// The provider named `name`.
pub fn find(name: &str) -> Option<&'static dyn Provider> {
    PROVIDERS.iter().copied().find(|p| p.name() == name)
}

/// The schema of the values every environment's `context` holds (`${context.…}`): what the evaluator adds per
/// environment. Written for this server in the shape Pulumi serves (`GET /api/esc/context/schema`).
pub static CONTEXT_SCHEMA: LazyLock<Json> = LazyLock::new(|| {
    let named = |what: &str| {
        json!({
            "type": "object",
            "description": what,
            "properties": {"name": {"type": "string", "description": "The environment's name, project/name."}},
            "required": ["name"],
        })
    };
    json!({
        "type": "object",
        "properties": {
            "currentEnvironment": named("The environment whose document is being evaluated."),
            "rootEnvironment": named("The environment that was opened (the root of the imports)."),
        },
        "required": ["currentEnvironment", "rootEnvironment"],
    })
});
