//! `fn::open::aws-login` (feature `aws`) and what every AWS provider and the `aws-iam` rotator share: the SDK's
//! configuration, credentials from a `login` input, regions and errors.
//!
//! `aws-login` takes `oidc: {roleArn, sessionName, duration?, policyArns?, subjectAttributes?}` — a login-family
//! token minted by this server's issuer (`aud = aws:<org>`, as Pulumi's trust policies expect) exchanged at STS
//! (`AssumeRoleWithWebIdentity`, one call per open) — or `static: {accessKeyId, secretAccessKey, sessionToken?}`,
//! passed through. It answers `{accessKeyId, secretAccessKey, sessionToken?}`, secret as a whole.
//!
//! Configuration is the SDK's standard one (`AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`,
//! profile files), read once, with two deliberate exceptions: the server's own AWS identity is never used (every
//! call is anonymous — STS web identity — or signed with the document's `login`), and the region comes from the
//! environment variables or the document, never from instance metadata. An endpoint the operator configured is
//! checked against the egress allow-list ([`crate::egress`]) before each call.
//!
//! Rule: every call has an operation timeout below the provider's deadline and retries (the SDK's standard mode)
//! only what the SDK classifies as retryable; errors name the operation, the AWS error code and AWS's message,
//! never a token, a key or a value.

use std::sync::LazyLock;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sts::config::Credentials;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Map, Value as Json, json};
use zeroize::Zeroizing;

use super::{OpenCtx, Output, Provider};
use crate::core::oidc::TokenRequest;

/// How long one AWS operation may take, retries included (below [`super::DEFAULT_DEADLINE`]).
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(8);
/// How long one attempt may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// Attempts per operation (the SDK's standard retry mode: retryable errors only, with backoff).
pub const MAX_ATTEMPTS: u32 = 3;
/// The region STS is called in when neither the document nor `AWS_REGION` names one.
pub const DEFAULT_REGION: &str = "us-east-1";
/// The role session's bounds (STS `DurationSeconds`), and its default (Pulumi's).
pub const MIN_SESSION: Duration = Duration::from_secs(15 * 60);
pub const MAX_SESSION: Duration = Duration::from_secs(12 * 3600);
pub const DEFAULT_SESSION: &str = "2h";
/// The longest message from AWS a diagnostic quotes.
const MAX_MESSAGE: usize = 300;

static SDK_CONFIG: tokio::sync::OnceCell<SdkConfig> = tokio::sync::OnceCell::const_new();

/// The SDK's standard configuration, read once: no credentials of the server's own, the region from the
/// environment variables (or [`DEFAULT_REGION`]), the timeouts and retries above.
pub async fn sdk_config() -> &'static SdkConfig {
    SDK_CONFIG
        .get_or_init(|| async {
            let region = aws_config::meta::region::RegionProviderChain::first_try(
                aws_config::environment::EnvironmentVariableRegionProvider::new(),
            )
            .or_else(Region::from_static(DEFAULT_REGION));
            aws_config::defaults(BehaviorVersion::latest())
                .no_credentials()
                .region(region)
                .timeout_config(
                    aws_config::timeout::TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(2))
                        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                        .operation_timeout(OPERATION_TIMEOUT)
                        .build(),
                )
                .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
                .load()
                .await
        })
        .await
}

/// Refuses a configured endpoint the egress allow-list does not permit (AWS's own endpoints are public names).
pub async fn check_endpoint(ctx: &OpenCtx<'_>, cfg: &SdkConfig) -> Result<(), String> {
    let Some(endpoint) = cfg.endpoint_url() else {
        return Ok(());
    };
    let url = crate::egress::check_url(endpoint).map_err(|e| format!("the AWS endpoint (AWS_ENDPOINT_URL): {e}"))?;
    crate::egress::check_target(&ctx.app.egress, &url)
        .await
        .map_err(|e| format!("the AWS endpoint (AWS_ENDPOINT_URL): {e}"))
}

/// A diagnostic for a failed SDK call: what was done, AWS's error code and message (cut, `secrets` blanked), or
/// the kind of transport failure.
pub fn sdk_error<E: ProvideErrorMetadata + std::error::Error>(
    e: &SdkError<E>,
    doing: &str,
    secrets: &[&str],
) -> String {
    let why = match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            let status = s.raw().status().as_u16();
            match (err.code(), err.message()) {
                (Some(c), Some(m)) => format!("AWS answered HTTP {status} {c}: {}", cut(m)),
                (Some(c), None) => format!("AWS answered HTTP {status} {c}"),
                _ => format!("AWS answered HTTP {status}"),
            }
        }
        SdkError::TimeoutError(_) => format!("no answer within {OPERATION_TIMEOUT:?}"),
        SdkError::DispatchFailure(d) if d.is_timeout() => "no answer in time".into(),
        SdkError::DispatchFailure(d) if d.is_io() => "the AWS endpoint could not be reached".into(),
        SdkError::DispatchFailure(_) => "the request could not be sent".into(),
        SdkError::ResponseError(_) => "the answer could not be read".into(),
        SdkError::ConstructionFailure(_) => "the request could not be built".into(),
        _ => "the call failed".into(),
    };
    let mut m = format!("{doing}: {why}");
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        m = m.replace(s, "[secret]");
    }
    m
}

fn cut(m: &str) -> String {
    let clean: String = m.chars().filter(|c| !c.is_control()).collect();
    match clean.char_indices().nth(MAX_MESSAGE) {
        Some((i, _)) => format!("{}…", &clean[..i]),
        None => clean,
    }
}

/// The string at `key`, if present.
pub fn string<'a>(obj: &'a Map<String, Json>, key: &str, what: &str) -> Result<Option<&'a str>, String> {
    match obj.get(key) {
        None => Ok(None),
        Some(Json::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{what}{key} must be a string")),
    }
}

/// Refuses a key not in `allowed`.
pub fn only(obj: &Map<String, Json>, allowed: &[&str], what: &str) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "unknown input {what}{k:?}: {} takes {}",
            if what.is_empty() {
                "the call"
            } else {
                what.trim_end_matches('.')
            },
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

/// A region name: lowercase letters and digits in dash-separated parts, at most 32 bytes (`us-east-1`).
pub fn region(r: &str) -> Result<Region, String> {
    let ok = !r.is_empty()
        && r.len() <= 32
        && r.split('-')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    if !ok {
        return Err(format!("region {r:?} is not an AWS region name (such as us-east-1)"));
    }
    Ok(Region::new(r.to_owned()))
}

/// Credentials from a `login` input (`aws-login`'s output): `{accessKeyId, secretAccessKey, sessionToken?}`.
pub struct Login {
    pub credentials: Credentials,
    access_key_id: Zeroizing<String>,
    secret_access_key: Zeroizing<String>,
    session_token: Option<Zeroizing<String>>,
}

impl Login {
    /// Reads `login` (`what` names it in errors).
    pub fn from_input(v: Option<&Json>, what: &str) -> Result<Login, String> {
        let Some(Json::Object(l)) = v else {
            return Err(format!(
                "{what} is required: {{accessKeyId, secretAccessKey, sessionToken?}}, such as the output of fn::open::aws-login"
            ));
        };
        let prefix = format!("{what}.");
        only(l, &["accessKeyId", "secretAccessKey", "sessionToken"], &prefix)?;
        let key = |k: &str| -> Result<Zeroizing<String>, String> {
            let s = string(l, k, &prefix)?.ok_or_else(|| format!("{what}.{k} is required"))?;
            if s.is_empty() || s.len() > 4096 || !s.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!("{what}.{k} must be 1-4096 visible ASCII characters"));
            }
            Ok(Zeroizing::new(s.to_owned()))
        };
        let access_key_id = key("accessKeyId")?;
        let secret_access_key = key("secretAccessKey")?;
        let session_token = match l.get("sessionToken") {
            None | Some(Json::Null) => None,
            Some(_) => Some(key("sessionToken")?),
        };
        let credentials = Credentials::new(
            access_key_id.as_str(),
            secret_access_key.as_str(),
            session_token.as_ref().map(|t| t.to_string()),
            None,
            "sesame-login",
        );
        Ok(Login {
            credentials,
            access_key_id,
            secret_access_key,
            session_token,
        })
    }

    /// The strings a message must never show.
    pub fn secrets(&self) -> Vec<&str> {
        let mut v = vec![self.access_key_id.as_str(), self.secret_access_key.as_str()];
        v.extend(self.session_token.as_deref().map(String::as_str));
        v
    }
}

/// The schema of AWS credentials (`aws-login`'s output, the `login` input of the others).
pub fn login_schema(description: &str) -> Json {
    json!({
        "type": "object",
        "title": "AWSLogin",
        "description": description,
        "properties": {
            "accessKeyId": {"type": "string", "description": "The access key id.", "secret": true},
            "secretAccessKey": {"type": "string", "description": "The secret access key.", "secret": true},
            "sessionToken": {"type": "string", "description": "The session token of temporary credentials.", "secret": true},
        },
        "required": ["accessKeyId", "secretAccessKey"],
    })
}

pub struct AwsLogin;

static LOGIN_INPUTS: LazyLock<Json> = LazyLock::new(|| {
    let arn = |what: &str| json!({"type": "string", "description": what, "minLength": 20, "maxLength": 2048});
    let mut statik = login_schema("Static credentials, passed through as they are.");
    statik["additionalProperties"] = json!(false);
    json!({
        "type": "object",
        "properties": {
            "oidc": {
                "type": "object",
                "title": "AWSLoginOIDC",
                "description": "Temporary credentials: an OIDC token from this server (aud aws:<org>) exchanged at STS \
                                (AssumeRoleWithWebIdentity).",
                "properties": {
                    "roleArn": arn("The ARN of the IAM role to assume (its trust policy names this server's issuer)."),
                    "sessionName": {
                        "type": "string",
                        "description": "The role session's name (shown in CloudTrail).",
                        "minLength": 2,
                        "maxLength": 64,
                        "pattern": "^[\\w+=,.@-]*$",
                    },
                    "duration": {
                        "type": "string",
                        "description": "How long the credentials are valid, from 15m to 12h (at most the role's maximum).",
                        "default": DEFAULT_SESSION,
                        "pattern": "^([0-9]+h)?([0-9]+m)?([0-9]+s)?$",
                    },
                    "policyArns": {
                        "type": "array",
                        "description": "Managed policies that further limit the session.",
                        "items": arn("The ARN of a managed policy."),
                    },
                    "subjectAttributes": {
                        "type": "array",
                        "description": "What the token's subject is built from, beyond the environment.",
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
                "required": ["sessionName", "roleArn"],
                "additionalProperties": false,
            },
            "static": statik,
        },
        "additionalProperties": false,
    })
});

static LOGIN_OUTPUTS: LazyLock<Json> =
    LazyLock::new(|| login_schema("AWS credentials; temporary ones carry a session token."));

/// The STS `DurationSeconds` for a Go-style duration within [`MIN_SESSION`]..=[`MAX_SESSION`].
fn session_seconds(d: &str) -> Result<i32, String> {
    let bad = || format!("oidc.duration must be from 15m to 12h, such as 1h (got {d:?})");
    let v = crate::core::timefmt::parse_go_duration(d).ok_or_else(bad)?;
    if v < MIN_SESSION || v > MAX_SESSION {
        return Err(bad());
    }
    i32::try_from(v.as_secs()).map_err(|_| bad())
}

/// An ARN as STS takes it: `arn:` and visible ASCII, 20-2048 bytes.
fn arn(s: &str, what: &str) -> Result<(), String> {
    if s.len() < 20 || s.len() > 2048 || !s.starts_with("arn:") || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{what} must be an ARN (arn:…, 20-2048 visible ASCII characters)"
        ));
    }
    Ok(())
}

/// What an `oidc` block asks for, checked.
struct OidcPlan {
    role_arn: String,
    session_name: String,
    seconds: i32,
    policy_arns: Vec<String>,
    token: TokenRequest,
}

fn oidc_plan(o: &Map<String, Json>) -> Result<OidcPlan, String> {
    only(
        o,
        &["roleArn", "sessionName", "duration", "policyArns", "subjectAttributes"],
        "oidc.",
    )?;
    let role_arn = string(o, "roleArn", "oidc.")?.ok_or("oidc.roleArn is required")?;
    arn(role_arn, "oidc.roleArn")?;
    let session_name = string(o, "sessionName", "oidc.")?.ok_or("oidc.sessionName is required")?;
    if session_name.len() < 2
        || session_name.len() > 64
        || !session_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
    {
        return Err("oidc.sessionName must be 2-64 characters of letters, digits and _+=,.@-".into());
    }
    let seconds = session_seconds(string(o, "duration", "oidc.")?.unwrap_or(DEFAULT_SESSION))?;
    let strings = |key: &str| -> Result<Option<Vec<String>>, String> {
        match o.get(key) {
            None => Ok(None),
            Some(Json::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("oidc.{key} must be a list of strings"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(format!("oidc.{key} must be a list of strings")),
        }
    };
    let policy_arns = strings("policyArns")?.unwrap_or_default();
    if policy_arns.len() > 10 {
        return Err("oidc.policyArns takes at most 10 ARNs".into());
    }
    for p in &policy_arns {
        arn(p, "each of oidc.policyArns")?;
    }
    let attrs = strings("subjectAttributes")?;
    let token = TokenRequest::new("login", None, Some("aws"), attrs.as_deref(), None)
        .map_err(|e| format!("oidc.subjectAttributes: {e}"))?;
    Ok(OidcPlan {
        role_arn: role_arn.to_owned(),
        session_name: session_name.to_owned(),
        seconds,
        policy_arns,
        token,
    })
}

fn output(access_key_id: &str, secret_access_key: &str, session_token: Option<&str>) -> Output {
    let mut out = Map::new();
    out.insert("accessKeyId".into(), json!(access_key_id));
    out.insert("secretAccessKey".into(), json!(secret_access_key));
    if let Some(t) = session_token.filter(|t| !t.is_empty()) {
        out.insert("sessionToken".into(), json!(t));
    }
    Output {
        value: Json::Object(out),
        secret: true,
    }
}

async fn assume(ctx: &OpenCtx<'_>, plan: OidcPlan) -> Result<Output, String> {
    let cfg = sdk_config().await;
    check_endpoint(ctx, cfg).await?;
    let minted = super::mint_login(ctx, "aws-login with oidc", &plan.token).await?;
    let sts = aws_sdk_sts::Client::new(cfg);
    let policies = plan
        .policy_arns
        .iter()
        .map(|a| aws_sdk_sts::types::PolicyDescriptorType::builder().arn(a).build())
        .collect::<Vec<_>>();
    let answer = sts
        .assume_role_with_web_identity()
        .role_arn(&plan.role_arn)
        .role_session_name(&plan.session_name)
        .web_identity_token(minted.expose())
        .duration_seconds(plan.seconds)
        .set_policy_arns((!policies.is_empty()).then_some(policies))
        .send()
        .await
        .map_err(|e| {
            sdk_error(
                &e,
                &format!("assuming role {:?} with web identity", plan.role_arn),
                &[minted.expose()],
            )
        })?;
    let c = answer
        .credentials()
        .ok_or_else(|| format!("assuming role {:?}: STS answered no credentials", plan.role_arn))?;
    Ok(output(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token()),
    ))
}

async fn login(ctx: &OpenCtx<'_>, inputs: &Json) -> Result<Output, String> {
    let obj = inputs.as_object().ok_or("the inputs must be an object")?;
    only(obj, &["oidc", "static"], "")?;
    match (obj.get("oidc"), obj.get("static")) {
        (Some(Json::Object(o)), None) => assume(ctx, oidc_plan(o)?).await,
        (None, Some(s @ Json::Object(_))) => {
            let l = Login::from_input(Some(s), "static")?;
            Ok(output(
                &l.access_key_id,
                &l.secret_access_key,
                l.session_token.as_deref().map(String::as_str),
            ))
        }
        (Some(_), Some(_)) | (None, None) => Err("give exactly one of oidc and static".into()),
        (Some(_), None) => Err("oidc must be an object {roleArn, sessionName, …}".into()),
        (None, Some(_)) => Err("static must be an object {accessKeyId, secretAccessKey, sessionToken?}".into()),
    }
}

impl Provider for AwsLogin {
    fn name(&self) -> &'static str {
        "aws-login"
    }
    fn description(&self) -> &'static str {
        "AWS credentials: temporary ones from STS for an OIDC token this server mints, or static ones passed through."
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oidc_blocks_are_checked() {
        let ok = json!({"roleArn": "arn:aws:iam::123456789012:role/esc", "sessionName": "esc"});
        let p = oidc_plan(ok.as_object().unwrap()).unwrap();
        assert_eq!(p.seconds, 7200);
        assert!(p.policy_arns.is_empty());
        assert_eq!(p.token.lifetime().as_secs(), 600);
        let cases = [
            (json!({"sessionName": "esc"}), "roleArn is required"),
            (
                json!({"roleArn": "arn:aws:iam::1:r/x", "sessionName": "esc"}),
                "must be an ARN",
            ),
            (
                json!({"roleArn": "x".repeat(30), "sessionName": "esc"}),
                "must be an ARN",
            ),
            (
                json!({"roleArn": "arn:aws:iam::123456789012:role/esc", "sessionName": "a b"}),
                "sessionName must",
            ),
            (
                json!({"roleArn": "arn:aws:iam::123456789012:role/esc", "sessionName": "é1"}),
                "sessionName must",
            ),
            (
                json!({"roleArn": "arn:aws:iam::123456789012:role/esc"}),
                "sessionName is required",
            ),
            (
                json!({"roleArn": "arn:aws:iam::123456789012:role/esc", "sessionName": "e"}),
                "sessionName must",
            ),
            (
                json!({"roleArn": "arn:aws:iam::123456789012:role/esc", "sessionName": "esc", "duration": "14m"}),
                "from 15m to 12h",
            ),
            (
                json!({"roleArn": "arn:aws:iam::123456789012:role/esc", "sessionName": "esc", "duration": "13h"}),
                "from 15m to 12h",
            ),
            (
                json!({"roleArn": "arn:aws:iam::123456789012:role/esc", "sessionName": "esc", "duration": 3600}),
                "duration must be a string",
            ),
            (
                json!({"roleArn": "arn:aws:iam::123456789012:role/esc", "sessionName": "esc", "policyArns": "x"}),
                "list of strings",
            ),
            (
                json!({"roleArn": "arn:aws:iam::123456789012:role/esc", "sessionName": "esc",
                       "subjectAttributes": ["nope"]}),
                "subjectAttributes",
            ),
            (
                json!({"roleArn": "arn:aws:iam::123456789012:role/esc", "sessionName": "esc", "region": "x"}),
                "unknown input oidc.\"region\"",
            ),
        ];
        for (v, want) in cases {
            let e = oidc_plan(v.as_object().unwrap()).err().unwrap_or_default();
            assert!(e.contains(want), "{v}: {e:?}");
        }
        let d = json!({"roleArn": "arn:aws:iam::123456789012:role/esc", "sessionName": "esc", "duration": "12h",
                       "policyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]});
        let p = oidc_plan(d.as_object().unwrap()).unwrap();
        assert_eq!((p.seconds, p.policy_arns.len()), (43200, 1));
    }

    #[test]
    fn regions_and_logins_are_checked() {
        assert!(region("us-east-1").is_ok() && region("eu-central-2").is_ok());
        for bad in [
            "",
            "US-EAST-1",
            "us_east_1",
            "us-east-1.evil.example",
            "a--b",
            "-a",
            &"a".repeat(33),
        ] {
            assert!(region(bad).is_err(), "{bad:?}");
        }
        let l = Login::from_input(
            Some(&json!({"accessKeyId": "AKIA1", "secretAccessKey": "s3cr3t"})),
            "login",
        )
        .unwrap();
        assert_eq!(l.secrets(), ["AKIA1", "s3cr3t"]);
        assert!(!format!("{:?}", l.credentials).contains("s3cr3t"));
        for (bad, want) in [
            (json!({"accessKeyId": "a"}), "login.secretAccessKey is required"),
            (json!({"accessKeyId": 1, "secretAccessKey": "s"}), "must be a string"),
            (json!({"accessKeyId": "a b", "secretAccessKey": "s"}), "visible ASCII"),
            (
                json!({"accessKeyId": "a", "secretAccessKey": "s", "x": 1}),
                "unknown input login.\"x\"",
            ),
            (json!("creds"), "login is required"),
        ] {
            let e = Login::from_input(Some(&bad), "login").err().unwrap_or_default();
            assert!(e.contains(want), "{bad}: {e:?}");
        }
    }
}
