//! `fn::open::aws-secrets` (Secrets Manager `GetSecretValue`) and `fn::open::aws-parameter-store` (SSM
//! `GetParameter`), feature `aws`: each takes `login` (`aws-login`'s output), `region` and `get: {name: …}` —
//! `{secretId, versionId?, versionStage?}` for secrets, `{name, decrypt?}` for parameters (a version or label
//! after a colon in the name, `decrypt` default false as upstream) — and answers `{name: value}`, secret as a
//! whole. A binary secret comes back base64-encoded.
//!
//! Rule: at most [`MAX_READS`] reads a call, in batches of [`CONCURRENT_READS`], each value at most [`MAX_VALUE_BYTES`];
//! a failed read fails the call (no partial output), its diagnostic naming the entry, the id asked for and AWS's
//! error, never a value nor the credentials.

use std::sync::LazyLock;

use base64::Engine;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Map, Value as Json, json};
use zeroize::Zeroizing;

use super::aws::{Login, check_endpoint, login_schema, only, region, sdk_config, sdk_error, string};
use super::{OpenCtx, Output, Provider};
use crate::server::answer::wipe_json;

/// The most values one call reads.
pub const MAX_READS: usize = 32;
/// Reads one call has in flight at once (a batch).
pub const CONCURRENT_READS: usize = 8;
/// The largest value taken (Secrets Manager's own limit is 64 KiB; SSM's advanced parameters 8 KiB).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// How long one call may take (reads run [`CONCURRENT_READS`] at a time, each under the SDK's operation timeout).
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

pub struct AwsSecrets;
pub struct AwsParameterStore;

fn inputs_schema(what: &str, entry: Json) -> Json {
    json!({
        "type": "object",
        "properties": {
            "login": login_schema(&format!("The credentials to read {what} with, such as ${{aws.login}}.")),
            "region": {"type": "string", "description": format!("The region the {what} are in.")},
            "get": {
                "type": "object",
                "description": format!("The {what} to read, by the name they get in the output."),
                "minProperties": 1,
                "maxProperties": MAX_READS,
                "additionalProperties": entry,
            },
        },
        "required": ["get", "login", "region"],
        "additionalProperties": false,
    })
}

static SECRETS_INPUTS: LazyLock<Json> = LazyLock::new(|| {
    inputs_schema(
        "secrets",
        json!({
            "type": "object",
            "title": "AWSSecretsGet",
            "properties": {
                "secretId": {"type": "string", "description": "The secret's name or ARN."},
                "versionId": {"type": "string", "description": "The version to read (a UUID); the current one if absent."},
                "versionStage": {"type": "string", "description": "The staging label to read, such as AWSPREVIOUS."},
            },
            "required": ["secretId"],
            "additionalProperties": false,
        }),
    )
});

static PARAMETERS_INPUTS: LazyLock<Json> = LazyLock::new(|| {
    inputs_schema(
        "parameters",
        json!({
            "type": "object",
            "title": "AWSParameterStoreGet",
            "properties": {
                "name": {
                    "type": "string",
                    "description": "The parameter's name or ARN, optionally with :version or :label after it.",
                },
                "decrypt": {
                    "type": "boolean",
                    "description": "Whether a SecureString is decrypted (with KMS) or returned encrypted.",
                    "default": false,
                },
            },
            "required": ["name"],
            "additionalProperties": false,
        }),
    )
});

static OUTPUTS: LazyLock<Json> = LazyLock::new(|| {
    json!({
        "type": "object",
        "description": "The values read, by name.",
        "additionalProperties": {"type": "string", "secret": true},
    })
});

/// The checked common inputs: credentials, region and the `get` entries.
struct Call<'a> {
    login: Login,
    region: aws_config::Region,
    get: Vec<(&'a String, &'a Map<String, Json>)>,
}

fn call<'a>(inputs: &'a Json, entry: &str) -> Result<Call<'a>, String> {
    let obj = inputs.as_object().ok_or("the inputs must be an object")?;
    only(obj, &["login", "region", "get"], "")?;
    let login = Login::from_input(obj.get("login"), "login")?;
    let region = region(string(obj, "region", "")?.ok_or("region is required")?)?;
    let Some(Json::Object(get)) = obj.get("get") else {
        return Err(format!("get is required: {{name: {entry}}}"));
    };
    if get.is_empty() || get.len() > MAX_READS {
        return Err(format!("get takes 1 to {MAX_READS} entries"));
    }
    let get = get
        .iter()
        .map(|(name, e)| match e {
            Json::Object(e) => Ok((name, e)),
            _ => Err(format!("get.{name} must be an object {entry}")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Call { login, region, get })
}

/// An id, name or label sent to AWS: 1-2048 visible ASCII characters.
fn id<'a>(e: &'a Map<String, Json>, key: &str, what: &str, required: bool) -> Result<Option<&'a str>, String> {
    let v = string(e, key, what)?;
    if required && v.is_none() {
        return Err(format!("{what}{key} is required"));
    }
    if v.is_some_and(|s| s.is_empty() || s.len() > 2048 || !s.bytes().all(|b| b.is_ascii_graphic())) {
        return Err(format!("{what}{key} must be 1-2048 visible ASCII characters"));
    }
    Ok(v)
}

/// One read in flight: the value, or the diagnostic.
type Read<'a> = BoxFuture<'a, Result<Zeroizing<String>, String>>;

/// Runs `reads` (in batches of [`CONCURRENT_READS`]) into `{name: value}`, or the first error (the values read so
/// far are wiped).
async fn collect(reads: Vec<(String, Read<'_>)>) -> Result<Output, String> {
    let mut results: Vec<(String, Result<Zeroizing<String>, String>)> = Vec::with_capacity(reads.len());
    let mut pending = reads.into_iter();
    loop {
        let (names, batch): (Vec<String>, Vec<_>) = pending.by_ref().take(CONCURRENT_READS).unzip();
        if names.is_empty() {
            break;
        }
        results.extend(names.into_iter().zip(futures::future::join_all(batch).await));
    }
    let mut out = Map::new();
    for (name, r) in results {
        match r {
            Ok(v) if v.len() > MAX_VALUE_BYTES => {
                wipe_json(Json::Object(out));
                return Err(format!("get.{name}: the value is larger than {MAX_VALUE_BYTES} bytes"));
            }
            Ok(v) => {
                out.insert(name, Json::String(v.to_string()));
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

async fn secrets(ctx: &OpenCtx<'_>, inputs: &Json) -> Result<Output, String> {
    let c = call(inputs, "{secretId, versionId?, versionStage?}")?;
    let mut planned = Vec::new();
    for (name, e) in &c.get {
        let what = format!("get.{name}.");
        only(e, &["secretId", "versionId", "versionStage"], &what)?;
        let secret_id = id(e, "secretId", &what, true)?.unwrap_or_default();
        let version_id = id(e, "versionId", &what, false)?;
        let version_stage = id(e, "versionStage", &what, false)?;
        planned.push((*name, secret_id, version_id, version_stage));
    }
    let cfg = sdk_config().await;
    check_endpoint(ctx, cfg).await?;
    let client = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(cfg)
            .region(c.region.clone())
            .credentials_provider(c.login.credentials.clone())
            .build(),
    );
    let secrets = c.login.secrets();
    let reads = planned
        .into_iter()
        .map(|(name, secret_id, version_id, version_stage)| {
            let (client, secrets) = (&client, &secrets);
            let read = async move {
                let got = client
                    .get_secret_value()
                    .secret_id(secret_id)
                    .set_version_id(version_id.map(str::to_owned))
                    .set_version_stage(version_stage.map(str::to_owned))
                    .send()
                    .await
                    .map_err(|e| sdk_error(&e, &format!("get.{name}: reading secret {secret_id:?}"), secrets))?;
                match (got.secret_string(), got.secret_binary()) {
                    (Some(s), _) => Ok(Zeroizing::new(s.to_owned())),
                    (None, Some(b)) => Ok(Zeroizing::new(
                        base64::engine::general_purpose::STANDARD.encode(b.as_ref()),
                    )),
                    (None, None) => Err(format!("get.{name}: secret {secret_id:?} has no value")),
                }
            };
            (name.clone(), read.boxed())
        })
        .collect();
    collect(reads).await
}

async fn parameters(ctx: &OpenCtx<'_>, inputs: &Json) -> Result<Output, String> {
    let c = call(inputs, "{name, decrypt?}")?;
    let mut planned = Vec::new();
    for (name, e) in &c.get {
        let what = format!("get.{name}.");
        only(e, &["name", "decrypt"], &what)?;
        let param = id(e, "name", &what, true)?.unwrap_or_default();
        let decrypt = match e.get("decrypt") {
            None | Some(Json::Null) => false,
            Some(Json::Bool(b)) => *b,
            Some(_) => return Err(format!("{what}decrypt must be true or false")),
        };
        planned.push((*name, param, decrypt));
    }
    let cfg = sdk_config().await;
    check_endpoint(ctx, cfg).await?;
    let client = aws_sdk_ssm::Client::from_conf(
        aws_sdk_ssm::config::Builder::from(cfg)
            .region(c.region.clone())
            .credentials_provider(c.login.credentials.clone())
            .build(),
    );
    let secrets = c.login.secrets();
    let reads = planned
        .into_iter()
        .map(|(name, param, decrypt)| {
            let (client, secrets) = (&client, &secrets);
            let read = async move {
                let got = client
                    .get_parameter()
                    .name(param)
                    .with_decryption(decrypt)
                    .send()
                    .await
                    .map_err(|e| sdk_error(&e, &format!("get.{name}: reading parameter {param:?}"), secrets))?;
                got.parameter()
                    .and_then(|p| p.value())
                    .map(|v| Zeroizing::new(v.to_owned()))
                    .ok_or_else(|| format!("get.{name}: parameter {param:?} has no value"))
            };
            (name.clone(), read.boxed())
        })
        .collect();
    collect(reads).await
}

impl Provider for AwsSecrets {
    fn name(&self) -> &'static str {
        "aws-secrets"
    }
    fn description(&self) -> &'static str {
        "Reads secrets from AWS Secrets Manager with given credentials, such as those of fn::open::aws-login."
    }
    fn inputs(&self) -> &'static Json {
        &SECRETS_INPUTS
    }
    fn outputs(&self) -> &'static Json {
        &OUTPUTS
    }
    fn deadline(&self) -> std::time::Duration {
        DEADLINE
    }
    fn open<'a>(&'a self, ctx: &'a OpenCtx<'a>, inputs: &'a Json) -> BoxFuture<'a, Result<Output, String>> {
        secrets(ctx, inputs).boxed()
    }
}

impl Provider for AwsParameterStore {
    fn name(&self) -> &'static str {
        "aws-parameter-store"
    }
    fn description(&self) -> &'static str {
        "Reads parameters from AWS Systems Manager Parameter Store with given credentials, such as those of \
         fn::open::aws-login."
    }
    fn inputs(&self) -> &'static Json {
        &PARAMETERS_INPUTS
    }
    fn outputs(&self) -> &'static Json {
        &OUTPUTS
    }
    fn deadline(&self) -> std::time::Duration {
        DEADLINE
    }
    fn open<'a>(&'a self, ctx: &'a OpenCtx<'a>, inputs: &'a Json) -> BoxFuture<'a, Result<Output, String>> {
        parameters(ctx, inputs).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_checked() {
        let login = json!({"accessKeyId": "AKIAX", "secretAccessKey": "s3cr3t"});
        let ok = json!({"login": login, "region": "us-west-2", "get": {"a": {"secretId": "x"}}});
        let c = call(&ok, "{secretId}").unwrap();
        assert_eq!((c.region.as_ref(), c.get.len()), ("us-west-2", 1));
        let many: Map<String, Json> = (0..=MAX_READS)
            .map(|i| (format!("k{i}"), json!({"secretId": "x"})))
            .collect();
        let cases = [
            (
                json!({"login": login, "get": {"a": {"secretId": "x"}}}),
                "region is required",
            ),
            (
                json!({"login": login, "region": "x y", "get": {"a": {}}}),
                "not an AWS region",
            ),
            (json!({"login": login, "region": "us-east-1"}), "get is required"),
            (json!({"login": login, "region": "us-east-1", "get": {}}), "1 to 32"),
            (json!({"login": login, "region": "us-east-1", "get": many}), "1 to 32"),
            (
                json!({"login": login, "region": "us-east-1", "get": {"a": "x"}}),
                "get.a must be an object",
            ),
            (json!({"region": "us-east-1", "get": {"a": {}}}), "login is required"),
            (
                json!({"login": login, "region": "us-east-1", "get": {"a": {}}, "x": 1}),
                "unknown input \"x\"",
            ),
        ];
        for (v, want) in cases {
            let e = call(&v, "{secretId}").err().unwrap_or_default();
            assert!(e.contains(want), "{v}: {e:?}");
        }
        let e: Map<String, Json> = json!({"secretId": "a\nb"}).as_object().unwrap().clone();
        assert!(
            id(&e, "secretId", "get.a.", true)
                .unwrap_err()
                .contains("visible ASCII")
        );
        assert!(
            id(&Map::new(), "secretId", "get.a.", true)
                .unwrap_err()
                .contains("required")
        );
    }
}
