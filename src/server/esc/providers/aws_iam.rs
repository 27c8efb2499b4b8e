//! `fn::rotate::aws-iam` (feature `aws`): rotates the access keys of an IAM user. Inputs `{login, region?
//! (us-east-1), userArn}` (`login` rotate-only, as upstream); state `{current, previous?}`, each `{accessKeyId,
//! secretAccessKey, createdAt}`. A rotation deletes the key that falls off (the former `previous`), creates a new
//! key (`current`) and keeps the former `current` as `previous`, so whatever still uses it keeps working until the
//! next rotation. IAM allows two keys a user: the one deleted first makes room for the one created.
//!
//! Rule: the state is secret as a whole; errors name the user, the key id acted on and AWS's error code, never a
//! secret key nor the login. A key that IAM already lost (`NoSuchEntity`) counts as deleted.

use std::sync::LazyLock;
use std::time::Duration;

use aws_sdk_iam::primitives::DateTimeFormat;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Map, Value as Json, json};
use zeroize::Zeroizing;

use super::OpenCtx;
use super::aws::{Login, check_endpoint, login_schema, only, region, sdk_config, sdk_error, string};
use crate::server::esc::rotators::Rotator;

/// How long one rotation may take (two IAM calls, each under the SDK's operation timeout).
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct AwsIam;

fn key_schema() -> Json {
    json!({
        "type": "object",
        "description": "An access key of the IAM user.",
        "properties": {
            "accessKeyId": {"type": "string", "description": "The access key id.", "secret": true},
            "secretAccessKey": {"type": "string", "description": "The secret access key.", "secret": true},
            "createdAt": {"type": "string", "description": "When IAM created the key (RFC 3339)."},
        },
        "required": ["accessKeyId", "secretAccessKey"],
    })
}

static INPUTS: LazyLock<Json> = LazyLock::new(|| {
    json!({
        "type": "object",
        "properties": {
            "login": login_schema("The credentials that manage the user's keys (iam:CreateAccessKey, iam:DeleteAccessKey)."),
            "region": {"type": "string", "description": "The region to call IAM in.", "default": "us-east-1"},
            "userArn": {"type": "string", "description": "The ARN of the IAM user whose keys rotate."},
        },
        "required": ["login", "userArn"],
        "rotateOnly": ["login"],
        "additionalProperties": false,
    })
});

static STATE: LazyLock<Json> = LazyLock::new(|| {
    json!({
        "type": "object",
        "properties": {"current": key_schema(), "previous": key_schema()},
        "required": ["current"],
    })
});

/// The user name in an IAM user ARN (`arn:aws:iam::<account>:user/<path/>name`).
fn user_name(arn: &str) -> Result<&str, String> {
    let bad = || format!("userArn {arn:?} is not an IAM user ARN (arn:aws:iam::<account>:user/<name>)");
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some("iam"), Some(""), Some(_account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(bad());
    };
    let name = resource
        .strip_prefix("user/")
        .and_then(|r| r.rsplit('/').next())
        .ok_or_else(bad)?;
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)) {
        return Err(bad());
    }
    Ok(name)
}

/// The access key id a state entry holds, if any.
fn key_id<'a>(state: Option<&'a Json>, which: &str) -> Result<Option<&'a str>, String> {
    match state.and_then(|s| s.get(which)) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Object(k)) => match k.get("accessKeyId") {
            Some(Json::String(id)) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()) => Ok(Some(id)),
            _ => Err(format!("state.{which}.accessKeyId must be an access key id")),
        },
        Some(_) => Err(format!(
            "state.{which} must be an object {{accessKeyId, secretAccessKey}}"
        )),
    }
}

async fn rotate_keys(ctx: &OpenCtx<'_>, inputs: &Json, state: Option<&Json>) -> Result<Json, String> {
    let obj = inputs.as_object().ok_or("the inputs must be an object")?;
    only(obj, &["login", "region", "userArn"], "")?;
    let login = Login::from_input(obj.get("login"), "login")?;
    let region = region(string(obj, "region", "")?.unwrap_or("us-east-1"))?;
    let user = user_name(string(obj, "userArn", "")?.ok_or("userArn is required")?)?;
    let current = key_id(state, "current")?;
    let previous = key_id(state, "previous")?.filter(|p| Some(*p) != current);
    let cfg = sdk_config().await;
    check_endpoint(ctx, cfg).await?;
    let iam = aws_sdk_iam::Client::from_conf(
        aws_sdk_iam::config::Builder::from(cfg)
            .region(region)
            .credentials_provider(login.credentials.clone())
            .build(),
    );
    let secrets = login.secrets();
    if let Some(old) = previous {
        let deleted = iam.delete_access_key().user_name(user).access_key_id(old).send().await;
        match deleted {
            Ok(_) => {}
            Err(e) if aws_sdk_iam::error::ProvideErrorMetadata::code(&e) == Some("NoSuchEntity") => {}
            Err(e) => {
                return Err(sdk_error(
                    &e,
                    &format!("deleting access key {old} of IAM user {user:?}"),
                    &secrets,
                ));
            }
        }
    }
    let created = iam
        .create_access_key()
        .user_name(user)
        .send()
        .await
        .map_err(|e| sdk_error(&e, &format!("creating an access key for IAM user {user:?}"), &secrets))?;
    let key = created
        .access_key()
        .ok_or_else(|| format!("creating an access key for IAM user {user:?}: IAM answered no key"))?;
    let secret = Zeroizing::new(key.secret_access_key().to_owned());
    let mut fresh = Map::new();
    fresh.insert("accessKeyId".into(), json!(key.access_key_id()));
    fresh.insert("secretAccessKey".into(), json!(secret.as_str()));
    if let Some(at) = key.create_date().and_then(|d| d.fmt(DateTimeFormat::DateTime).ok()) {
        fresh.insert("createdAt".into(), json!(at));
    }
    let mut out = Map::new();
    out.insert("current".into(), Json::Object(fresh));
    if let Some(c) = state.and_then(|s| s.get("current")).filter(|_| current.is_some()) {
        out.insert("previous".into(), c.clone());
    }
    Ok(Json::Object(out))
}

impl Rotator for AwsIam {
    fn name(&self) -> &'static str {
        "aws-iam"
    }
    fn description(&self) -> &'static str {
        "Rotates the access keys of an IAM user, keeping the previous key valid until the next rotation."
    }
    fn inputs(&self) -> &'static Json {
        &INPUTS
    }
    fn state(&self) -> &'static Json {
        &STATE
    }
    fn outputs(&self) -> &'static Json {
        &STATE
    }
    fn generate(&self, _inputs: &Json) -> Result<Zeroizing<String>, String> {
        Err("aws-iam keys are created by IAM, not generated here".into())
    }
    fn deadline(&self) -> Duration {
        DEADLINE
    }
    fn rotate<'a>(
        &'a self,
        ctx: &'a OpenCtx<'a>,
        inputs: &'a Json,
        state: Option<&'a Json>,
    ) -> BoxFuture<'a, Result<Json, String>> {
        rotate_keys(ctx, inputs, state).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_arns_and_states_are_checked() {
        assert_eq!(user_name("arn:aws:iam::123456789012:user/alice").unwrap(), "alice");
        assert_eq!(user_name("arn:aws:iam::123456789012:user/team/a/bob").unwrap(), "bob");
        for bad in [
            "alice",
            "arn:aws:iam::123456789012:role/x",
            "arn:aws:s3:::bucket",
            "arn:aws:iam::123456789012:user/",
            "arn:aws:iam::123456789012:user/a b",
        ] {
            assert!(user_name(bad).is_err(), "{bad}");
        }
        let s = json!({"current": {"accessKeyId": "AKIA1", "secretAccessKey": "x"}});
        assert_eq!(key_id(Some(&s), "current").unwrap(), Some("AKIA1"));
        assert_eq!(key_id(Some(&s), "previous").unwrap(), None);
        assert_eq!(key_id(None, "current").unwrap(), None);
        assert!(key_id(Some(&json!({"current": "x"})), "current").is_err());
        assert!(key_id(Some(&json!({"current": {"accessKeyId": "a/b"}})), "current").is_err());
        assert!(AwsIam.generate(&json!({})).is_err());
    }
}
