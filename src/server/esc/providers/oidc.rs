//! `fn::open::oidc`: a custom-audience OIDC token about the environment that makes the call, minted by this
//! server's issuer ([`crate::server::oidc_issuer::mint_for_env`], which audits the mint) — `sub` names the org's and
//! the environment's immutable ids. Inputs: `audience` (1–512 bytes, required), `identityToken: {version: "v2"}`
//! (required), `duration` (1m–1h, default 1h); nothing else. The output is the bare token, secret.
//!
//! Rule: refused in an unsaved document (`yaml/open`), as upstream: a token names a stored environment.

use std::sync::LazyLock;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value as Json, json};

use super::{OpenCtx, Output, Provider};
use crate::core::oidc::TokenRequest;

/// The longest audience `fn::open::oidc` takes, in bytes.
pub const MAX_AUDIENCE_BYTES: usize = 512;

pub struct Oidc;

static INPUTS: LazyLock<Json> = LazyLock::new(|| {
    json!({
        "type": "object",
        "properties": {
            "audience": {
                "type": "string",
                "description": "The audience (aud) the token is for: what the relying party expects.",
                "minLength": 1,
                "maxLength": MAX_AUDIENCE_BYTES,
            },
            "identityToken": {
                "type": "object",
                "description": "Which form of identity token to mint.",
                "properties": {
                    "version": {
                        "type": "string",
                        "description": "The token's version; only v2 exists.",
                        "const": "v2",
                    },
                },
                "required": ["version"],
                "additionalProperties": false,
            },
            "duration": {
                "type": "string",
                "description": "How long the token is valid, from 1m to 1h.",
                "default": "1h",
                "pattern": "^([0-9]+h)?([0-9]+m)?([0-9]+s)?$",
            },
        },
        "required": ["audience", "identityToken"],
        "additionalProperties": false,
    })
});

static OUTPUTS: LazyLock<Json> = LazyLock::new(|| {
    json!({
        "type": "string",
        "description": "The signed OIDC token (a JWT) for the audience.",
    })
});

/// The token request `inputs` ask for, or why not. The evaluator checked them against [`INPUTS`] already; this
/// checks again what the schema cannot say (bytes, the duration's bounds) and whatever reached it.
fn request(inputs: &Json) -> Result<TokenRequest, String> {
    let obj = inputs.as_object().ok_or("the inputs must be an object")?;
    if let Some(k) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "audience" | "identityToken" | "duration"))
    {
        return Err(format!(
            "unknown input {k:?}: fn::open::oidc takes audience, identityToken and duration"
        ));
    }
    let audience = match obj.get("audience") {
        Some(Json::String(a)) => a,
        Some(_) => return Err("audience must be a string".into()),
        None => return Err("audience is required".into()),
    };
    if audience.is_empty() || audience.len() > MAX_AUDIENCE_BYTES {
        return Err(format!("audience must be 1 to {MAX_AUDIENCE_BYTES} bytes"));
    }
    match obj.get("identityToken") {
        Some(Json::Object(t)) if t.len() == 1 && t.get("version").and_then(Json::as_str) == Some("v2") => {}
        Some(_) => return Err("identityToken must be {version: \"v2\"}".into()),
        None => return Err("identityToken is required (identityToken: {version: \"v2\"})".into()),
    }
    let duration = match obj.get("duration") {
        None => None,
        Some(Json::String(d)) => Some(d.as_str()),
        Some(_) => return Err("duration must be a string such as 30m".into()),
    };
    TokenRequest::new("custom-audience", Some(audience), None, None, duration).map_err(|e| e.to_string())
}

impl Provider for Oidc {
    fn name(&self) -> &'static str {
        "oidc"
    }
    fn description(&self) -> &'static str {
        "Mints an OIDC token for a custom audience about the environment that opens it, signed by this server's issuer."
    }
    fn inputs(&self) -> &'static Json {
        &INPUTS
    }
    fn outputs(&self) -> &'static Json {
        &OUTPUTS
    }
    fn open<'a>(&'a self, ctx: &'a OpenCtx<'a>, inputs: &'a Json) -> BoxFuture<'a, Result<Output, String>> {
        async move {
            let req = request(inputs)?;
            let Some(current) = ctx.current else {
                return Err(
                    "fn::open::oidc is not available in an unsaved document: save the environment and open it".into(),
                );
            };
            let root = ctx.root.unwrap_or(current);
            let minted = crate::server::oidc_issuer::mint_for_env(
                ctx.app,
                ctx.principal,
                ctx.source,
                ctx.org,
                (current, root),
                &req,
            )
            .await
            .map_err(|e| format!("minting the token: {}", e.message()))?;
            Ok(Output {
                value: Json::String(minted.expose().to_owned()),
                secret: true,
            })
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked() {
        let ok = json!({"audience": "https://x.example", "identityToken": {"version": "v2"}});
        assert_eq!(request(&ok).unwrap().lifetime().as_secs(), 3600);
        let d = json!({"audience": "a", "identityToken": {"version": "v2"}, "duration": "5m"});
        assert_eq!(request(&d).unwrap().lifetime().as_secs(), 300);
        let cases = [
            (json!({"identityToken": {"version": "v2"}}), "audience is required"),
            (
                json!({"audience": "", "identityToken": {"version": "v2"}}),
                "1 to 512 bytes",
            ),
            (
                json!({"audience": "é".repeat(257), "identityToken": {"version": "v2"}}),
                "1 to 512 bytes",
            ),
            (json!({"audience": "a"}), "identityToken is required"),
            (
                json!({"audience": "a", "identityToken": {"version": "v1"}}),
                "version: \"v2\"",
            ),
            (
                json!({"audience": "a", "identityToken": {"version": "v2"}, "duration": "2h"}),
                "from 1m to 1h",
            ),
            (
                json!({"audience": "a", "identityToken": {"version": "v2"}, "duration": "30s"}),
                "from 1m to 1h",
            ),
            (
                json!({"audience": "a", "identityToken": {"version": "v2"}, "extra": 1}),
                "unknown input \"extra\"",
            ),
            (
                json!({"audience": "a b", "identityToken": {"version": "v2"}}),
                "visible ASCII",
            ),
            (json!([1]), "must be an object"),
        ];
        for (inputs, want) in cases {
            let e = request(&inputs).unwrap_err();
            assert!(e.contains(want), "{inputs}: {e}");
        }
        assert!(request(&json!({"audience": "a".repeat(512), "identityToken": {"version": "v2"}})).is_ok());
    }
}
