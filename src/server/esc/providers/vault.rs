//! `fn::open::vault-login` and `fn::open::vault-secrets`: a Vault-API server (HashiCorp Vault, OpenBao) reached
//! through [`crate::egress`] (allow-list, size and time limits). `vault-login` logs in with `jwt: {mount, role,
//! subjectAttributes?}` — a login-family token minted by this server's issuer, `aud = vault:<org>` — or exchanges
//! `token: {token, displayName?, policies?, ttl?}` for a child token; it answers `{address, namespace?, token}`.
//! `vault-secrets` takes that as `login` and reads KV v2 secrets: `read: {name: {path: "<mount>/<secret>",
//! field?}}`; it answers `{name: value}` (the field, or the secret's whole data).
//!
//! Rule: every output is secret as a whole; errors name the address's host, the path or role asked for and Vault's
//! HTTP status, never a token nor a response body.

use std::sync::LazyLock;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Map, Value as Json, json};
use zeroize::Zeroizing;

use super::{OpenCtx, Output, Provider};
use crate::core::oidc::TokenRequest;
use crate::egress::{self, EgressError, Request};
use crate::server::answer::wipe_json;

/// The most secrets one `vault-secrets` call reads.
pub const MAX_READS: usize = 32;

pub struct VaultLogin;
pub struct VaultSecrets;

fn login_output_schema() -> Json {
    json!({
        "type": "object",
        "properties": {
            "address": {"type": "string", "description": "The URL of the Vault server."},
            "namespace": {"type": "string", "description": "The namespace logged in to, if any."},
            "token": {"type": "string", "description": "The Vault token (ephemeral).", "secret": true},
        },
        "required": ["address", "token"],
    })
}

static LOGIN_INPUTS: LazyLock<Json> = LazyLock::new(|| {
    json!({
        "type": "object",
        "properties": {
            "address": {
                "type": "string",
                "description": "The Vault server's URL: a scheme and a host (and port), no path.",
            },
            "namespace": {"type": "string", "description": "The namespace to log in to (Vault Enterprise)."},
            "jwt": {
                "type": "object",
                "description": "Log in with an OIDC token minted by this server (aud vault:<org>).",
                "properties": {
                    "mount": {"type": "string", "description": "The JWT auth method's mount.", "default": "jwt"},
                    "role": {"type": "string", "description": "The role to log in as."},
                    "subjectAttributes": {
                        "type": "array",
                        "description": "The attributes the token's subject is built from.",
                        "items": {"type": "string"},
                    },
                },
                "required": ["role"],
                "additionalProperties": false,
            },
            "token": {
                "type": "object",
                "description": "Exchange a Vault token for an ephemeral child token.",
                "properties": {
                    "token": {"type": "string", "description": "The parent token.", "secret": true},
                    "displayName": {"type": "string", "description": "The child token's display name."},
                    "policies": {
                        "type": "array",
                        "description": "The child token's policies (a subset of the parent's).",
                        "items": {"type": "string"},
                    },
                    "ttl": {"type": "string", "description": "The child token's TTL, such as 1h."},
                },
                "required": ["token"],
                "additionalProperties": false,
            },
        },
        "required": ["address"],
        "additionalProperties": false,
    })
});

static LOGIN_OUTPUTS: LazyLock<Json> = LazyLock::new(login_output_schema);

static SECRETS_INPUTS: LazyLock<Json> = LazyLock::new(|| {
    json!({
        "type": "object",
        "properties": {
            "login": login_output_schema(),
            "read": {
                "type": "object",
                "description": "The KV v2 secrets to read, by the name they get in the output.",
                "additionalProperties": {
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "description": "<mount>/<secret>, e.g. secret/app/db."},
                        "field": {"type": "string", "description": "The field to read; the whole secret if absent."},
                    },
                    "required": ["path"],
                    "additionalProperties": false,
                },
            },
        },
        "required": ["login", "read"],
        "additionalProperties": false,
    })
});

static SECRETS_OUTPUTS: LazyLock<Json> = LazyLock::new(|| {
    json!({
        "type": "object",
        "description": "The values read, by name.",
        "additionalProperties": {"secret": true},
    })
});

fn string<'a>(obj: &'a Map<String, Json>, key: &str, what: &str) -> Result<Option<&'a str>, String> {
    match obj.get(key) {
        None => Ok(None),
        Some(Json::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{what}{key} must be a string")),
    }
}

fn only(obj: &Map<String, Json>, allowed: &[&str], what: &str) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "unknown input {what}{k:?}: {what} takes {}",
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

/// The server's base URL: `http(s)://host[:port]`, no path, query, fragment nor credentials.
fn base(address: &str) -> Result<url::Url, String> {
    let u = egress::check_url(address).map_err(|e| format!("address: {e}"))?;
    if !matches!(u.path(), "" | "/") || u.query().is_some() || u.fragment().is_some() {
        return Err("address must be a scheme and a host (and port), without a path".into());
    }
    Ok(u)
}

/// A name used in a URL path (mount, secret path): segments of visible ASCII, no `.`/`..`, no empty segment.
fn segments(s: &str, what: &str) -> Result<Vec<String>, String> {
    let parts: Vec<&str> = s.trim_matches('/').split('/').collect();
    if s.is_empty()
        || s.len() > 512
        || parts.iter().any(|p| {
            p.is_empty() || *p == "." || *p == ".." || !p.chars().all(|c| c.is_ascii_graphic() && !"?#%\\".contains(c))
        })
    {
        return Err(format!(
            "{what} must be 1-512 characters of /-separated names (visible ASCII, no '.', '..', '?', '#', '%')"
        ));
    }
    Ok(parts.into_iter().map(str::to_owned).collect())
}

fn url(base: &url::Url, segs: &[String]) -> String {
    let mut u = base.clone();
    if let Ok(mut p) = u.path_segments_mut() {
        p.clear().push("v1").extend(segs);
    }
    u.to_string()
}

/// What a failed call to Vault reads as: the rule egress names, or Vault's status with what it usually means.
fn vault_error(e: EgressError, doing: &str) -> String {
    match e {
        EgressError::Status { host, status } => {
            let hint = match status {
                400 => " (a bad request: for a login, the role does not exist or the token's claims do not match it)",
                403 => " (permission denied)",
                404 => " (not found)",
                _ => "",
            };
            format!("{doing}: {host} answered HTTP {status}{hint}")
        }
        other => format!("{doing}: {other}"),
    }
}

struct Vault<'a> {
    base: url::Url,
    namespace: Option<&'a str>,
}

impl Vault<'_> {
    async fn call(
        &self,
        ctx: &OpenCtx<'_>,
        method: reqwest::Method,
        segs: &[String],
        token: Option<&str>,
        body: Option<&Json>,
    ) -> Result<Json, EgressError> {
        let target = url(&self.base, segs);
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(t) = token {
            headers.push(("x-vault-token", t));
        }
        if let Some(ns) = self.namespace {
            headers.push(("x-vault-namespace", ns));
        }
        let json = body.map(|b| Zeroizing::new(b.to_string().into_bytes()));
        let req = Request {
            method,
            url: &target,
            headers: &headers,
            json: json.as_deref().map(Vec::as_slice),
        };
        let bytes = Zeroizing::new(egress::send(&ctx.app.egress, &req).await?);
        serde_json::from_slice(&bytes).map_err(|_| EgressError::Http {
            host: self.base.host_str().unwrap_or_default().to_owned(),
            reason: "the answer is not JSON".into(),
        })
    }
}

fn checked_str_array(v: Option<&Json>, what: &str) -> Result<Option<Vec<String>>, String> {
    match v {
        None => Ok(None),
        Some(Json::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{what} must be a list of strings"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(format!("{what} must be a list of strings")),
    }
}

async fn login(ctx: &OpenCtx<'_>, inputs: &Json) -> Result<Output, String> {
    let obj = inputs.as_object().ok_or("the inputs must be an object")?;
    only(obj, &["address", "namespace", "jwt", "token"], "")?;
    let address = string(obj, "address", "")?.ok_or("address is required")?;
    let base = base(address)?;
    let namespace = string(obj, "namespace", "")?;
    if namespace.is_some_and(|n| n.is_empty() || n.len() > 512 || !n.chars().all(|c| c.is_ascii_graphic())) {
        return Err("namespace must be 1-512 visible ASCII characters".into());
    }
    let vault = Vault { base, namespace };
    let host = vault.base.host_str().unwrap_or_default().to_owned();
    let answer = match (obj.get("jwt"), obj.get("token")) {
        (Some(_), Some(_)) | (None, None) => return Err("give exactly one of jwt and token".into()),
        (Some(Json::Object(j)), None) => {
            only(j, &["mount", "role", "subjectAttributes"], "jwt.")?;
            let mount = segments(string(j, "mount", "jwt.")?.unwrap_or("jwt"), "jwt.mount")?;
            let role = string(j, "role", "jwt.")?.ok_or("jwt.role is required")?;
            if role.is_empty() || role.len() > 512 {
                return Err("jwt.role must be 1-512 bytes".into());
            }
            let attrs = checked_str_array(j.get("subjectAttributes"), "jwt.subjectAttributes")?;
            let req =
                TokenRequest::new("login", None, Some("vault"), attrs.as_deref(), None).map_err(|e| e.to_string())?;
            let minted = super::mint_login(ctx, "vault-login with jwt", &req).await?;
            let mut segs = vec!["auth".to_owned()];
            segs.extend(mount);
            segs.push("login".into());
            let body = json!({"role": role, "jwt": minted.expose()});
            let answer = vault.call(ctx, reqwest::Method::POST, &segs, None, Some(&body)).await;
            wipe_json(body);
            answer.map_err(|e| vault_error(e, &format!("logging in to {host} as role {role:?}")))?
        }
        (None, Some(Json::Object(t))) => {
            only(t, &["token", "displayName", "policies", "ttl"], "token.")?;
            let parent = string(t, "token", "token.")?.ok_or("token.token is required")?;
            if parent.is_empty() || !parent.chars().all(|c| c.is_ascii_graphic()) {
                return Err("token.token must be a Vault token (visible ASCII)".into());
            }
            let mut body = Map::new();
            if let Some(d) = string(t, "displayName", "token.")? {
                body.insert("display_name".into(), json!(d));
            }
            if let Some(p) = checked_str_array(t.get("policies"), "token.policies")? {
                body.insert("policies".into(), json!(p));
            }
            if let Some(ttl) = string(t, "ttl", "token.")? {
                body.insert("ttl".into(), json!(ttl));
            }
            let segs = ["auth", "token", "create"].map(str::to_owned);
            vault
                .call(
                    ctx,
                    reqwest::Method::POST,
                    &segs,
                    Some(parent),
                    Some(&Json::Object(body)),
                )
                .await
                .map_err(|e| vault_error(e, &format!("creating a child token at {host}")))?
        }
        (Some(_), None) => return Err("jwt must be an object {mount, role}".into()),
        (None, Some(_)) => return Err("token must be an object {token}".into()),
    };
    let token = answer["auth"]["client_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    wipe_json(answer);
    let token = Zeroizing::new(token.ok_or_else(|| format!("{host} answered no token"))?);
    let mut out = Map::new();
    out.insert("address".into(), json!(address));
    if let Some(ns) = namespace {
        out.insert("namespace".into(), json!(ns));
    }
    out.insert("token".into(), json!(token.as_str()));
    Ok(Output {
        value: Json::Object(out),
        secret: true,
    })
}

async fn secrets(ctx: &OpenCtx<'_>, inputs: &Json) -> Result<Output, String> {
    let obj = inputs.as_object().ok_or("the inputs must be an object")?;
    only(obj, &["login", "read"], "")?;
    let Some(Json::Object(l)) = obj.get("login") else {
        return Err("login is required: the output of fn::open::vault-login".into());
    };
    let address = string(l, "address", "login.")?.ok_or("login.address is required")?;
    let token = string(l, "token", "login.")?.ok_or("login.token is required")?;
    if token.is_empty() || !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err("login.token must be a Vault token (visible ASCII)".into());
    }
    let namespace = string(l, "namespace", "login.")?;
    let vault = Vault {
        base: base(address)?,
        namespace,
    };
    let host = vault.base.host_str().unwrap_or_default().to_owned();
    let Some(Json::Object(reads)) = obj.get("read") else {
        return Err("read is required: {name: {path, field?}}".into());
    };
    if reads.len() > MAX_READS {
        return Err(format!("read takes at most {MAX_READS} secrets"));
    }
    let mut planned = Vec::new();
    for (name, r) in reads {
        let Json::Object(r) = r else {
            return Err(format!("read.{name} must be an object {{path, field?}}"));
        };
        only(r, &["path", "field"], &format!("read.{name}."))?;
        let path =
            string(r, "path", &format!("read.{name}."))?.ok_or_else(|| format!("read.{name}.path is required"))?;
        let segs = segments(path, &format!("read.{name}.path"))?;
        if segs.len() < 2 {
            return Err(format!("read.{name}.path must be <mount>/<secret>"));
        }
        let field = string(r, "field", &format!("read.{name}."))?;
        planned.push((name, path, segs, field));
    }
    let mut out = Map::new();
    for (name, path, segs, field) in planned {
        let mut api = vec![segs[0].clone(), "data".to_owned()];
        api.extend(segs[1..].iter().cloned());
        let answer = vault
            .call(ctx, reqwest::Method::GET, &api, Some(token), None)
            .await
            .map_err(|e| vault_error(e, &format!("reading {path:?} from {host}")))?;
        let value = match (answer["data"]["data"].as_object(), field) {
            (None, _) => Err(format!("reading {path:?} from {host}: not a KV v2 secret")),
            (Some(data), None) => Ok(Json::Object(data.clone())),
            (Some(data), Some(f)) => data
                .get(f)
                .cloned()
                .ok_or_else(|| format!("reading {path:?} from {host}: the secret has no field {f:?}")),
        };
        wipe_json(answer);
        match value {
            Ok(v) => {
                out.insert(name.clone(), v);
            }
            Err(e) => {
                wipe_json(Json::Object(out));
                return Err(e);
            }
        }
    }
    Ok(Output {
        value: Json::Object(out),
        secret: true,
    })
}

impl Provider for VaultLogin {
    fn name(&self) -> &'static str {
        "vault-login"
    }
    fn description(&self) -> &'static str {
        "Logs in to a Vault-API server (HashiCorp Vault, OpenBao) with an OIDC token from this server or a token."
    }
    fn inputs(&self) -> &'static Json {
        &LOGIN_INPUTS
    }
    fn outputs(&self) -> &'static Json {
        &LOGIN_OUTPUTS
    }
    fn open<'a>(&'a self, ctx: &'a OpenCtx<'a>, inputs: &'a Json) -> BoxFuture<'a, Result<Output, String>> {
        login(ctx, inputs).boxed()
    }
}

impl Provider for VaultSecrets {
    fn name(&self) -> &'static str {
        "vault-secrets"
    }
    fn description(&self) -> &'static str {
        "Reads KV v2 secrets from a Vault-API server with the credentials of fn::open::vault-login."
    }
    fn inputs(&self) -> &'static Json {
        &SECRETS_INPUTS
    }
    fn outputs(&self) -> &'static Json {
        &SECRETS_OUTPUTS
    }
    fn open<'a>(&'a self, ctx: &'a OpenCtx<'a>, inputs: &'a Json) -> BoxFuture<'a, Result<Output, String>> {
        secrets(ctx, inputs).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_paths_are_checked() {
        assert!(base("http://127.0.0.1:8200").is_ok());
        assert!(base("https://vault.example/").is_ok());
        for bad in [
            "https://vault.example/v1",
            "ftp://x",
            "https://u:p@x",
            "https://x/?a=1",
            "x",
        ] {
            assert!(base(bad).is_err(), "{bad}");
        }
        assert_eq!(segments("secret/app/db", "p").unwrap(), ["secret", "app", "db"]);
        for bad in ["", "secret//x", "secret/../x", "a/./b", "a b", "a?b", "é", "a%2f"] {
            assert!(segments(bad, "p").is_err(), "{bad:?}");
        }
        let u = url(
            &base("http://h:1").unwrap(),
            &["secret".into(), "data".into(), "a".into()],
        );
        assert_eq!(u, "http://h:1/v1/secret/data/a");
    }
}
