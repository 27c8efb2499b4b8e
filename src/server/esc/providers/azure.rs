//! `fn::open::azure-login`: what an Azure client needs to log in, with no call to Azure (the client exchanges the
//! credential itself, as with Pulumi ESC). Inputs: `clientId`, `tenantId`, `subscriptionId?`, and either `oidc:
//! true` (with `subjectAttributes?`) — a login-family token minted by this server's issuer (`aud = azure:<org>`, the
//! audience Pulumi ESC's tokens carry and a Microsoft Entra federated credential names) — or `clientSecret`. The
//! answer is `{clientId, tenantId, subscriptionId?, oidc: {token}}` or `{…, clientSecret}`.
//!
//! Rule: the output is secret as a whole; ids are checked for shape before anything is minted; errors name the
//! field and the rule, never the secret.

use std::sync::LazyLock;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Map, Value as Json, json};

use super::inputs::{chars_within, is_guid, object, only, required, string, strings};
use super::{OpenCtx, Output, Provider};
use crate::core::oidc::TokenRequest;

/// The longest client secret accepted, in bytes.
pub const MAX_SECRET_BYTES: usize = 1024;

pub struct AzureLogin;

static INPUTS: LazyLock<Json> = LazyLock::new(|| {
    json!({
        "type": "object",
        "properties": {
            "clientId": {"type": "string", "description": "The application's (client) id, a GUID."},
            "tenantId": {"type": "string", "description": "The directory's (tenant) id: a GUID or a domain name."},
            "subscriptionId": {"type": "string", "description": "The subscription to work in, if any."},
            "clientSecret": {"type": "string", "description": "A client secret to log in with, if not OIDC."},
            "oidc": {
                "type": "boolean",
                "description": "true to log in through workload identity federation with an OIDC token from this \
                                server.",
            },
            "subjectAttributes": {
                "type": "array",
                "description": "The attributes, in order, that the OIDC token's subject is built from.",
                "items": {
                    "type": "string",
                    "enum": [
                        "pulumi.user.login",
                        "pulumi.organization.login",
                        "pulumi.token.type",
                        "pulumi.token.team",
                        "currentEnvironment.name",
                        "rootEnvironment.name",
                    ],
                },
            },
        },
        "required": ["clientId", "tenantId"],
        "additionalProperties": false,
    })
});

static OUTPUTS: LazyLock<Json> = LazyLock::new(|| {
    json!({
        "type": "object",
        "properties": {
            "clientId": {"type": "string", "description": "The application's (client) id."},
            "tenantId": {"type": "string", "description": "The directory's (tenant) id."},
            "subscriptionId": {"type": "string", "description": "The subscription, if one was given."},
            "clientSecret": {"type": "string", "description": "The client secret, when logging in with one.", "secret": true},
            "oidc": {
                "type": "object",
                "description": "Present when logging in with OIDC.",
                "properties": {
                    "token": {
                        "type": "string",
                        "description": "The OIDC token to present as the client assertion.",
                        "secret": true,
                    },
                },
                "required": ["token"],
            },
        },
        "required": ["clientId", "tenantId"],
    })
});

/// What a call asks for, checked in full before anything is minted.
struct Plan<'a> {
    client_id: &'a str,
    tenant_id: &'a str,
    subscription_id: Option<&'a str>,
    /// `Ok(subject attributes)` for OIDC, `Err(client secret)` otherwise.
    credential: Result<Option<Vec<String>>, &'a str>,
}

fn plan(inputs: &Json) -> Result<Plan<'_>, String> {
    let obj = object(inputs, "the inputs")?;
    only(
        obj,
        &[
            "clientId",
            "tenantId",
            "subscriptionId",
            "clientSecret",
            "oidc",
            "subjectAttributes",
        ],
        "",
    )?;
    let client_id = required(obj, "clientId", "")?;
    if !is_guid(client_id) {
        return Err("clientId must be the application's id, a GUID (8-4-4-4-12 hexadecimal digits)".into());
    }
    let tenant_id = required(obj, "tenantId", "")?;
    if !is_guid(tenant_id) && !chars_within(tenant_id, 253, |c| c.is_ascii_alphanumeric() || ".-".contains(c)) {
        return Err("tenantId must be the directory's id: a GUID or a domain name".into());
    }
    let subscription_id = string(obj, "subscriptionId", "")?;
    if subscription_id.is_some_and(|s| !chars_within(s, 256, |c| c.is_ascii_alphanumeric() || "/._-".contains(c))) {
        return Err("subscriptionId must be 1-256 letters, digits and / . _ -".into());
    }
    let oidc = match obj.get("oidc") {
        None => false,
        Some(Json::Bool(b)) => *b,
        Some(_) => return Err("oidc must be true or false".into()),
    };
    let attributes = strings(obj, "subjectAttributes", "")?;
    let secret = string(obj, "clientSecret", "")?;
    let credential = match (oidc, secret) {
        (true, Some(_)) => return Err("give oidc: true or clientSecret, not both".into()),
        (false, None) => return Err("give oidc: true or clientSecret".into()),
        (true, None) => Ok(attributes),
        (false, Some(s)) => {
            if attributes.is_some() {
                return Err("subjectAttributes apply with oidc: true only".into());
            }
            if !chars_within(s, MAX_SECRET_BYTES, |c| !c.is_control()) {
                return Err(format!(
                    "clientSecret must be 1-{MAX_SECRET_BYTES} bytes without control characters"
                ));
            }
            Err(s)
        }
    };
    Ok(Plan {
        client_id,
        tenant_id,
        subscription_id,
        credential,
    })
}

async fn login(ctx: &OpenCtx<'_>, inputs: &Json) -> Result<Output, String> {
    let plan = plan(inputs)?;
    let mut out = Map::new();
    out.insert("clientId".into(), json!(plan.client_id));
    out.insert("tenantId".into(), json!(plan.tenant_id));
    if let Some(s) = plan.subscription_id {
        out.insert("subscriptionId".into(), json!(s));
    }
    match plan.credential {
        Err(secret) => {
            out.insert("clientSecret".into(), json!(secret));
        }
        Ok(attributes) => {
            let req = TokenRequest::new("login", None, Some("azure"), attributes.as_deref(), None)
                .map_err(|e| format!("subjectAttributes: {e}"))?;
            let minted = super::mint_login(ctx, "azure-login with oidc", &req).await?;
            out.insert("oidc".into(), json!({"token": minted.expose()}));
        }
    }
    Ok(Output {
        value: Json::Object(out),
        secret: false,
    })
}

impl Provider for AzureLogin {
    fn name(&self) -> &'static str {
        "azure-login"
    }
    fn description(&self) -> &'static str {
        "Gives an Azure client what it needs to log in: the ids and an OIDC token from this server for workload \
         identity federation, or a client secret."
    }
    fn inputs(&self) -> &'static Json {
        &INPUTS
    }
    fn outputs(&self) -> &'static Json {
        &OUTPUTS
    }
    fn open<'a>(&'a self, ctx: &'a OpenCtx<'a>, inputs: &'a Json) -> BoxFuture<'a, Result<Output, String>> {
        login(ctx, inputs).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

    fn err(v: Json) -> String {
        plan(&v).err().expect("refused")
    }

    #[test]
    fn inputs_are_checked_before_any_mint() {
        let v = json!({"clientId": ID, "tenantId": "contoso.onmicrosoft.com", "oidc": true});
        assert!(matches!(plan(&v).unwrap().credential, Ok(None)));
        let v = json!({"clientId": ID, "tenantId": ID, "subscriptionId": "/subscriptions/x", "clientSecret": "s~3"});
        assert!(matches!(plan(&v).unwrap().credential, Err("s~3")));
        assert!(err(json!({"tenantId": ID, "oidc": true})).contains("clientId is required"));
        assert!(err(json!({"clientId": "nope", "tenantId": ID, "oidc": true})).contains("GUID"));
        assert!(err(json!({"clientId": ID, "tenantId": "a b", "oidc": true})).contains("tenantId"));
        assert!(err(json!({"clientId": ID, "tenantId": ID, "oidc": "yes"})).contains("true or false"));
        assert!(err(json!({"clientId": ID, "tenantId": ID})).contains("give oidc"));
        assert!(err(json!({"clientId": ID, "tenantId": ID, "oidc": false})).contains("give oidc"));
        let secret = "very-secret\u{7}";
        let e = err(json!({"clientId": ID, "tenantId": ID, "clientSecret": secret}));
        assert!(e.contains("control") && !e.contains("very-secret"), "{e}");
        assert!(err(json!({"clientId": ID, "tenantId": ID, "oidc": true, "clientSecret": "s"})).contains("not both"));
        assert!(err(json!({"clientId": ID, "tenantId": ID, "oidc": true, "x": 1})).contains("unknown input"));
        assert!(err(json!({"clientId": ID, "tenantId": "ténant.example", "oidc": true})).contains("tenantId"));
        assert!(err(json!({"clientId": ID, "tenantId": "t".repeat(254), "oidc": true})).contains("tenantId"));
        assert!(
            err(json!({"clientId": ID, "tenantId": ID, "subscriptionId": "a b", "oidc": true}))
                .contains("subscriptionId")
        );
        let long = "s".repeat(MAX_SECRET_BYTES + 1);
        assert!(err(json!({"clientId": ID, "tenantId": ID, "clientSecret": long})).contains("clientSecret must be"));
        assert!(err(json!({"clientId": ID, "tenantId": ID, "clientSecret": ""})).contains("clientSecret must be"));
        let v = json!({"clientId": ID, "tenantId": ID, "clientSecret": "pässwort"});
        assert!(plan(&v).is_ok(), "a secret may hold any printable character");
        assert!(
            err(json!({"clientId": ID, "tenantId": ID, "clientSecret": "s", "subjectAttributes": []}))
                .contains("oidc: true only")
        );
    }
}
