//! The OIDC issuer's rules, pure: what a token about an environment claims (Pulumi's two token families), which
//! requests are acceptable, and when signing keys are made, used, retired and removed.
//!
//! Rule: nothing here signs, stores or reads a clock. Claims are built from facts the edge attests (org, environment,
//! the caller's login, immutable ids) plus the few things a caller may choose (an audience, a lifetime, the order of
//! subject attributes from a fixed list); a caller-chosen string never reaches `sub`. Times come in as arguments.
//! Signing is the edge's job (`crate::oidc_issuer`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// The shortest token lifetime a caller may ask for.
pub const MIN_LIFETIME: Duration = Duration::from_secs(60);
/// The longest token lifetime a caller may ask for (and so the longest a published key must outlive its last use).
pub const MAX_LIFETIME: Duration = Duration::from_secs(3600);
/// The lifetime of a login token when the request names none: long enough to exchange it at once.
pub const DEFAULT_LOGIN_LIFETIME: Duration = Duration::from_secs(600);
/// The lifetime of a custom-audience token when the request names none (Pulumi's default for `fn::open::oidc`).
pub const DEFAULT_CUSTOM_LIFETIME: Duration = Duration::from_secs(3600);
/// The longest custom audience accepted, in bytes.
pub const MAX_AUDIENCE_LEN: usize = 512;
/// The longest login audience prefix (`aws`, `gcp`, `azure`, `vault`, …) accepted.
pub const MAX_AUDIENCE_PREFIX_LEN: usize = 64;
/// The project whose environments keep Pulumi's legacy names (no project in `sub`, `current_env` or `aud`).
pub const LEGACY_PROJECT: &str = "default";
/// The namespace of the custom-audience tokens' name claims (Pulumi's, so relying-party recipes carry over).
pub const CLAIM_NAMESPACE: &str = "https://pulumi.com/";

/// A signature algorithm of the issuer's keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 over a 2048-bit key: every relying party accepts it.
    Rs256,
    /// ECDSA over P-256 with SHA-256.
    Es256,
}

impl Alg {
    /// The JOSE name (`RS256`, `ES256`), also the stored text.
    pub const fn as_str(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
        }
    }

    /// The algorithm a JOSE name (any case) names.
    pub fn parse(s: &str) -> Option<Alg> {
        match s.to_ascii_uppercase().as_str() {
            "RS256" => Some(Alg::Rs256),
            "ES256" => Some(Alg::Es256),
            _ => None,
        }
    }
}

/// Which of Pulumi's two token families a token belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// What the cloud login providers (`aws-login`, `gcp-login`, `azure-login`, `vault-login`) exchange:
    /// `sub = pulumi:environments:org:<org>:env:<project>/<env>` (or built from subject attributes), `aud =
    /// <prefix>:<org>`.
    Login,
    /// What `fn::open::oidc` mints: `sub = pulumi:org:<org-id>:env:<env-id>` from immutable ids, `aud` the
    /// caller's, name claims namespaced under [`CLAIM_NAMESPACE`].
    CustomAudience,
}

impl Family {
    /// The wire name: `login` or `custom-audience`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Family::Login => "login",
            Family::CustomAudience => "custom-audience",
        }
    }

    /// The family a wire name names.
    pub fn parse(s: &str) -> Option<Family> {
        match s {
            "login" => Some(Family::Login),
            "custom-audience" => Some(Family::CustomAudience),
            _ => None,
        }
    }
}

/// A platform-attested attribute a login token's subject may be built from: Pulumi's fixed list, in its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubjectAttribute {
    /// The environment that was opened (first).
    RootEnvironmentName,
    /// The environment whose definition asks for the token.
    CurrentEnvironmentName,
    /// The login of the user opening the environment.
    PulumiUserLogin,
    /// The organization's name.
    PulumiOrganizationLogin,
}

impl SubjectAttribute {
    /// Every attribute, in the order Pulumi's documentation lists them.
    pub const ALL: [SubjectAttribute; 4] = [
        SubjectAttribute::RootEnvironmentName,
        SubjectAttribute::CurrentEnvironmentName,
        SubjectAttribute::PulumiUserLogin,
        SubjectAttribute::PulumiOrganizationLogin,
    ];

    /// The name as written in `subjectAttributes` and in the subject.
    pub const fn as_str(self) -> &'static str {
        match self {
            SubjectAttribute::RootEnvironmentName => "rootEnvironment.name",
            SubjectAttribute::CurrentEnvironmentName => "currentEnvironment.name",
            SubjectAttribute::PulumiUserLogin => "pulumi.user.login",
            SubjectAttribute::PulumiOrganizationLogin => "pulumi.organization.login",
        }
    }

    /// The attribute a name names (exactly; no other spelling).
    pub fn parse(s: &str) -> Option<SubjectAttribute> {
        SubjectAttribute::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// One environment, as the edge found it in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvFacts {
    /// The project's name.
    pub project: String,
    /// The environment's name.
    pub name: String,
    /// The environment's immutable id.
    pub id: String,
}

impl EnvFacts {
    /// `project/name`, the name Pulumi's claims use (custom-audience tokens always use it).
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.project, self.name)
    }

    /// The name login tokens use: `project/name`, or `name` alone in the legacy `default` project (Pulumi's
    /// backward-compatible form).
    pub fn login_name(&self) -> String {
        if self.project == LEGACY_PROJECT {
            self.name.clone()
        } else {
            self.full_name()
        }
    }
}

/// What the edge attests about a mint: who asks, in which org, for which environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MintContext {
    /// The org's name.
    pub org_name: String,
    /// The org's immutable id.
    pub org_id: String,
    /// The environment whose definition asks for the token.
    pub current: EnvFacts,
    /// The environment that was opened (the same as `current` when it is asked for directly).
    pub root: EnvFacts,
    /// The login of the user asking, when a user's token asks (`None` for organization and team tokens).
    pub user_login: Option<String>,
}

/// A request for a token, as checked by [`TokenRequest::new`]: only acceptable requests exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    family: Family,
    audience: String,
    subject_attributes: Vec<SubjectAttribute>,
    lifetime: Duration,
}

/// Why a token request was refused. The messages name the rule, never more than the offending field's name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The family is not one of `login` and `custom-audience`.
    #[error("unknown token family {0:?}: use \"login\" or \"custom-audience\"")]
    UnknownFamily(String),
    /// A login token needs `audiencePrefix`; a custom-audience token needs `audience`.
    #[error("{0}")]
    Missing(&'static str),
    /// A field this family does not take.
    #[error("{0}")]
    NotForFamily(&'static str),
    /// The audience (or prefix) breaks the length or character rules.
    #[error("{0}")]
    BadAudience(String),
    /// A subject attribute outside Pulumi's fixed list.
    #[error(
        "unknown subject attribute {0:?}: use rootEnvironment.name, currentEnvironment.name, pulumi.user.login or pulumi.organization.login"
    )]
    UnknownAttribute(String),
    /// The same attribute twice.
    #[error("subject attribute {0} is listed twice")]
    DuplicateAttribute(&'static str),
    /// The lifetime is not a duration, or out of bounds.
    #[error("duration must be a Go duration (e.g. 15m) from 1m to 1h")]
    BadDuration,
    /// `pulumi.user.login` was asked for by a token that acts for no user.
    #[error("subject attribute pulumi.user.login needs a user's token (this token acts for no user)")]
    NoUser,
}

/// Whether `c` may appear in a custom audience: visible ASCII, no space.
fn audience_char(c: char) -> bool {
    c.is_ascii_graphic()
}

/// Whether `s` is a login audience prefix: 1–64 of `[A-Za-z0-9._-]`, so that `<prefix>:<org>` reads one way.
fn check_prefix(s: &str) -> Result<(), RequestError> {
    if s.is_empty() {
        return Err(RequestError::BadAudience("audiencePrefix must not be empty".into()));
    }
    if s.len() > MAX_AUDIENCE_PREFIX_LEN {
        return Err(RequestError::BadAudience(format!(
            "audiencePrefix must be at most {MAX_AUDIENCE_PREFIX_LEN} characters"
        )));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(RequestError::BadAudience(
            "audiencePrefix may contain only letters, digits, '.', '_' and '-'".into(),
        ));
    }
    Ok(())
}

fn check_audience(s: &str) -> Result<(), RequestError> {
    if s.is_empty() {
        return Err(RequestError::BadAudience("audience must not be empty".into()));
    }
    if s.len() > MAX_AUDIENCE_LEN {
        return Err(RequestError::BadAudience(format!(
            "audience must be at most {MAX_AUDIENCE_LEN} bytes"
        )));
    }
    if !s.chars().all(audience_char) {
        return Err(RequestError::BadAudience(
            "audience may contain only visible ASCII characters (no spaces, control characters or non-ASCII)".into(),
        ));
    }
    Ok(())
}

impl TokenRequest {
    /// Checks a request: `family` (`login` or `custom-audience`); for a login token `audience_prefix` (the target
    /// platform: `aws`, `gcp`, …) and optional `subject_attributes`; for a custom-audience token `audience` and
    /// nothing else; `duration` a Go duration from 1m to 1h (default: 10m for login, 1h for custom audiences).
    pub fn new(
        family: &str,
        audience: Option<&str>,
        audience_prefix: Option<&str>,
        subject_attributes: Option<&[String]>,
        duration: Option<&str>,
    ) -> Result<TokenRequest, RequestError> {
        let family = Family::parse(family).ok_or_else(|| RequestError::UnknownFamily(family.to_owned()))?;
        let audience = match family {
            Family::Login => {
                if audience.is_some() {
                    return Err(RequestError::NotForFamily(
                        "a login token takes audiencePrefix (its audience is <prefix>:<org>), not audience",
                    ));
                }
                let prefix = audience_prefix.ok_or(RequestError::Missing("a login token needs audiencePrefix"))?;
                check_prefix(prefix)?;
                prefix.to_owned()
            }
            Family::CustomAudience => {
                if audience_prefix.is_some() {
                    return Err(RequestError::NotForFamily(
                        "a custom-audience token takes audience, not audiencePrefix",
                    ));
                }
                if subject_attributes.is_some() {
                    return Err(RequestError::NotForFamily(
                        "subjectAttributes apply to login tokens only (a custom-audience subject names ids)",
                    ));
                }
                let aud = audience.ok_or(RequestError::Missing("a custom-audience token needs audience"))?;
                check_audience(aud)?;
                aud.to_owned()
            }
        };
        let mut attributes = Vec::new();
        for name in subject_attributes.unwrap_or_default() {
            let a = SubjectAttribute::parse(name).ok_or_else(|| RequestError::UnknownAttribute(name.clone()))?;
            if attributes.contains(&a) {
                return Err(RequestError::DuplicateAttribute(a.as_str()));
            }
            attributes.push(a);
        }
        let lifetime = match duration.filter(|d| !d.is_empty()) {
            None => match family {
                Family::Login => DEFAULT_LOGIN_LIFETIME,
                Family::CustomAudience => DEFAULT_CUSTOM_LIFETIME,
            },
            Some(text) => {
                let d = crate::core::timefmt::parse_go_duration(text).ok_or(RequestError::BadDuration)?;
                if d < MIN_LIFETIME || d > MAX_LIFETIME {
                    return Err(RequestError::BadDuration);
                }
                d
            }
        };
        Ok(TokenRequest {
            family,
            audience,
            subject_attributes: attributes,
            lifetime,
        })
    }

    /// The family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The lifetime the token will have.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }
}

/// A token's claims. `iat`, `nbf`, `exp` and `jti` are absent in a preview (Pulumi's `debug-oidc-claims` leaves
/// them out too); the name claims sit in `extra`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Claims {
    /// The issuer, byte for byte the discovery document's `issuer`.
    pub iss: String,
    /// The subject: built from attested facts only.
    pub sub: String,
    /// The audience.
    pub aud: String,
    /// Issued at, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Not before, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Expiry, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// The token's unique id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The family's name claims.
    #[serde(flatten)]
    pub extra: BTreeMap<String, String>,
}

/// The subject and audience of a login token (Pulumi's formats, legacy `default` project included).
fn login_subject(ctx: &MintContext, req: &TokenRequest) -> Result<(String, String), RequestError> {
    let aud = if ctx.current.project == LEGACY_PROJECT {
        ctx.org_name.clone()
    } else {
        format!("{}:{}", req.audience, ctx.org_name)
    };
    if req.subject_attributes.is_empty() {
        return Ok((
            format!(
                "pulumi:environments:org:{}:env:{}",
                ctx.org_name,
                ctx.current.login_name()
            ),
            aud,
        ));
    }
    let mut sub = format!("pulumi:environments:pulumi.organization.login:{}", ctx.org_name);
    for a in &req.subject_attributes {
        let value = match a {
            SubjectAttribute::RootEnvironmentName => ctx.root.login_name(),
            SubjectAttribute::CurrentEnvironmentName => ctx.current.login_name(),
            SubjectAttribute::PulumiUserLogin => ctx.user_login.clone().ok_or(RequestError::NoUser)?,
            SubjectAttribute::PulumiOrganizationLogin => ctx.org_name.clone(),
        };
        sub.push(':');
        sub.push_str(a.as_str());
        sub.push(':');
        sub.push_str(&value);
    }
    Ok((sub, aud))
}

/// The claims of the token `req` asks for in `ctx`, issued by `issuer`; with `at = Some((now_s, jti))` the time
/// claims and id are set (a token to sign), without them it is a preview.
pub fn claims(
    issuer: &str,
    ctx: &MintContext,
    req: &TokenRequest,
    at: Option<(i64, &str)>,
) -> Result<Claims, RequestError> {
    let mut extra = BTreeMap::new();
    let (sub, aud) = match req.family {
        Family::Login => {
            let (sub, aud) = login_subject(ctx, req)?;
            extra.insert("org".to_owned(), ctx.org_name.clone());
            extra.insert("current_env".to_owned(), ctx.current.login_name());
            extra.insert("root_env".to_owned(), ctx.root.login_name());
            if let Some(login) = &ctx.user_login {
                extra.insert("trigger_user".to_owned(), login.clone());
            }
            (sub, aud)
        }
        Family::CustomAudience => {
            let ns = |k: &str| format!("{CLAIM_NAMESPACE}{k}");
            extra.insert(ns("org"), ctx.org_name.clone());
            extra.insert(ns("org_id"), ctx.org_id.clone());
            extra.insert(ns("current_env"), ctx.current.full_name());
            extra.insert(ns("current_env_id"), ctx.current.id.clone());
            extra.insert(ns("root_env"), ctx.root.full_name());
            extra.insert(ns("root_env_id"), ctx.root.id.clone());
            if let Some(login) = &ctx.user_login {
                extra.insert(ns("actor"), login.clone());
            }
            (
                format!("pulumi:org:{}:env:{}", ctx.org_id, ctx.current.id),
                req.audience.clone(),
            )
        }
    };
    let lifetime = req.lifetime.as_secs() as i64;
    Ok(Claims {
        iss: issuer.to_owned(),
        sub,
        aud,
        iat: at.map(|(now, _)| now),
        nbf: at.map(|(now, _)| now),
        exp: at.map(|(now, _)| now + lifetime),
        jti: at.map(|(_, jti)| jti.to_owned()),
        extra,
    })
}

/// When signing keys change: how often a new key takes over, how long before that it is published, and how long
/// a retired key stays published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationPolicy {
    /// How long a key signs before the next one takes over.
    pub period_ms: i64,
    /// How long before it signs a new key is published (at least a relying party's JWKS cache lifetime).
    pub publish_ahead_ms: i64,
    /// How long a retired key stays published: the longest token lifetime plus a cache margin.
    pub retain_ms: i64,
}

impl RotationPolicy {
    /// A policy rotating every `period`, publishing `cache_margin` ahead, and keeping retired keys for the longest
    /// token lifetime plus `cache_margin`.
    pub fn new(period: Duration, cache_margin: Duration) -> RotationPolicy {
        RotationPolicy {
            period_ms: period.as_millis() as i64,
            publish_ahead_ms: cache_margin.as_millis() as i64,
            retain_ms: (MAX_LIFETIME + cache_margin).as_millis() as i64,
        }
    }
}

/// A stored key as the plan sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyTimes {
    /// Its id.
    pub kid: String,
    /// Its algorithm.
    pub alg: Alg,
    /// When it starts signing, Unix milliseconds.
    pub active_ms: i64,
}

/// What to do with the keys at one moment ([`plan`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPlan {
    /// The key that signs now (index into the sorted keys); `None` when there is no key.
    pub signing: Option<usize>,
    /// The keys the JWKS publishes: the signing key, the next one, and retired keys within their retention.
    pub published: Vec<usize>,
    /// Retired keys past their retention: removed from the JWKS and the store.
    pub expired: Vec<usize>,
    /// A key to make now, starting to sign at this time (`now` only for the very first key: nothing to publish it
    /// ahead of).
    pub create_active_ms: Option<i64>,
    /// The next moment this plan changes (a key takes over, a key is due, a retired key expires).
    pub next_change_ms: Option<i64>,
}

/// The plan for `keys` (sorted by `active_ms`, oldest first) at `now_ms` under `policy`, with `alg` the configured
/// algorithm (a signing key of another algorithm is replaced at the next opportunity, published ahead like any).
pub fn plan(keys: &[KeyTimes], now_ms: i64, policy: &RotationPolicy, alg: Alg) -> KeyPlan {
    let mut next: Vec<i64> = Vec::new();
    let started: Vec<usize> = (0..keys.len()).filter(|&i| keys[i].active_ms <= now_ms).collect();
    // Before any key has started (clock moved back), the earliest one signs: it is published already.
    let signing = started.last().copied().or(if keys.is_empty() { None } else { Some(0) });
    let mut published = Vec::new();
    let mut expired = Vec::new();
    for i in 0..keys.len() {
        match keys.get(i + 1).filter(|k| k.active_ms <= now_ms) {
            // Retired when its successor took over; published for `retain_ms` after that.
            Some(successor) => {
                let gone = successor.active_ms + policy.retain_ms;
                if now_ms >= gone {
                    expired.push(i);
                } else {
                    published.push(i);
                    next.push(gone);
                }
            }
            None => published.push(i),
        }
    }
    let pending = keys.iter().find(|k| k.active_ms > now_ms);
    if let Some(p) = pending {
        next.push(p.active_ms);
    }
    let create_active_ms = match (signing.map(|i| &keys[i]), pending) {
        (None, _) => Some(now_ms),
        (Some(_), Some(_)) => None,
        (Some(s), None) => {
            let due = if s.alg != alg {
                now_ms
            } else {
                s.active_ms + policy.period_ms - policy.publish_ahead_ms
            };
            if now_ms >= due {
                let at = if s.alg != alg {
                    now_ms + policy.publish_ahead_ms
                } else {
                    (s.active_ms + policy.period_ms).max(now_ms + policy.publish_ahead_ms)
                };
                Some(at)
            } else {
                next.push(due);
                None
            }
        }
    };
    KeyPlan {
        signing,
        published,
        expired,
        create_active_ms,
        next_change_ms: next.into_iter().min(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(project: &str) -> MintContext {
        MintContext {
            org_name: "contoso".into(),
            org_id: "org-1".into(),
            current: EnvFacts {
                project: project.into(),
                name: "development".into(),
                id: "env-1".into(),
            },
            root: EnvFacts {
                project: project.into(),
                name: "root".into(),
                id: "env-0".into(),
            },
            user_login: Some("personA".into()),
        }
    }

    fn login(attrs: &[&str]) -> TokenRequest {
        let attrs: Vec<String> = attrs.iter().map(|s| (*s).to_owned()).collect();
        TokenRequest::new("login", None, Some("aws"), Some(attrs.as_slice()), None).unwrap()
    }

    #[test]
    fn login_subjects_follow_pulumi() {
        let c = claims("https://x/oidc", &ctx("project"), &login(&[]), None).unwrap();
        assert_eq!(c.sub, "pulumi:environments:org:contoso:env:project/development");
        assert_eq!(c.aud, "aws:contoso");
        let c = claims(
            "https://x/oidc",
            &ctx("project"),
            &login(&["currentEnvironment.name", "pulumi.user.login"]),
            None,
        )
        .unwrap();
        assert_eq!(
            c.sub,
            "pulumi:environments:pulumi.organization.login:contoso:currentEnvironment.name:project/development:\
             pulumi.user.login:personA"
        );
        // In the order listed, not the list's order.
        let c = claims(
            "i",
            &ctx("project"),
            &login(&["pulumi.user.login", "rootEnvironment.name"]),
            None,
        )
        .unwrap();
        assert_eq!(
            c.sub,
            "pulumi:environments:pulumi.organization.login:contoso:pulumi.user.login:personA:rootEnvironment.name:\
             project/root"
        );
        // The legacy default project: no project in sub, the org alone as audience.
        let c = claims("i", &ctx("default"), &login(&[]), None).unwrap();
        assert_eq!(c.sub, "pulumi:environments:org:contoso:env:development");
        assert_eq!(c.aud, "contoso");
    }

    #[test]
    fn custom_audience_subjects_name_ids_only() {
        let req = TokenRequest::new(
            "custom-audience",
            Some("https://registry.example.com"),
            None,
            None,
            Some("15m"),
        )
        .unwrap();
        let c = claims("iss", &ctx("p"), &req, Some((1000, "j"))).unwrap();
        assert_eq!(c.sub, "pulumi:org:org-1:env:env-1");
        assert_eq!(c.aud, "https://registry.example.com");
        assert_eq!((c.iat, c.nbf, c.exp), (Some(1000), Some(1000), Some(1900)));
        assert_eq!(c.extra["https://pulumi.com/current_env"], "p/development");
        assert_eq!(c.extra["https://pulumi.com/root_env_id"], "env-0");
    }

    #[test]
    fn bad_requests_are_refused() {
        let no = |f: &str, a: Option<&str>, p: Option<&str>, d: Option<&str>| {
            TokenRequest::new(f, a, p, None, d).unwrap_err()
        };
        assert!(matches!(
            no("jwt", Some("a"), None, None),
            RequestError::UnknownFamily(_)
        ));
        let long = "a".repeat(513);
        for aud in ["", "a b", "a\u{7}", "ünï", long.as_str()] {
            assert!(
                matches!(
                    no("custom-audience", Some(aud), None, None),
                    RequestError::BadAudience(_)
                ),
                "{aud:?}"
            );
        }
        let long = "a".repeat(65);
        for p in ["", "aws:x", "a/b", long.as_str()] {
            assert!(
                matches!(no("login", None, Some(p), None), RequestError::BadAudience(_)),
                "{p:?}"
            );
        }
        for d in ["59s", "61m", "2h", "0s", "-1m", "1x", "1"] {
            assert_eq!(
                no("custom-audience", Some("a"), None, Some(d)),
                RequestError::BadDuration,
                "{d}"
            );
        }
        assert!(TokenRequest::new("custom-audience", Some("a"), None, None, Some("1h")).is_ok());
        assert!(TokenRequest::new("custom-audience", Some("a"), None, None, Some("1m")).is_ok());
        let attrs = vec!["pulumi.user.email".to_owned()];
        assert!(matches!(
            TokenRequest::new("login", None, Some("aws"), Some(attrs.as_slice()), None),
            Err(RequestError::UnknownAttribute(_))
        ));
        let twice = vec!["pulumi.user.login".to_owned(), "pulumi.user.login".to_owned()];
        assert!(matches!(
            TokenRequest::new("login", None, Some("aws"), Some(twice.as_slice()), None),
            Err(RequestError::DuplicateAttribute(_))
        ));
        let mut no_user = ctx("p");
        no_user.user_login = None;
        assert_eq!(
            claims("i", &no_user, &login(&["pulumi.user.login"]), None),
            Err(RequestError::NoUser)
        );
    }

    const H: i64 = 3_600_000;

    fn key(kid: &str, active_ms: i64) -> KeyTimes {
        KeyTimes {
            kid: kid.into(),
            alg: Alg::Rs256,
            active_ms,
        }
    }

    #[test]
    fn rotation_publishes_ahead_and_retires_after_the_margin() {
        let policy = RotationPolicy::new(Duration::from_secs(24 * 3600), Duration::from_secs(3600));
        // No key: make one at once.
        assert_eq!(plan(&[], 0, &policy, Alg::Rs256).create_active_ms, Some(0));
        let one = [key("a", 0)];
        let p = plan(&one, 22 * H, &policy, Alg::Rs256);
        assert_eq!(
            (p.signing, p.create_active_ms, p.next_change_ms),
            (Some(0), None, Some(23 * H))
        );
        // Due an hour before the period ends: the next key starts at the period's end.
        let p = plan(&one, 23 * H, &policy, Alg::Rs256);
        assert_eq!(p.create_active_ms, Some(24 * H));
        // Published, not yet signing.
        let two = [key("a", 0), key("b", 24 * H)];
        let p = plan(&two, 23 * H, &policy, Alg::Rs256);
        assert_eq!(
            (p.signing, p.published.clone(), p.next_change_ms),
            (Some(0), vec![0, 1], Some(24 * H))
        );
        // Signing; the old key stays published for 1h of lifetime + 1h of margin.
        let p = plan(&two, 24 * H, &policy, Alg::Rs256);
        assert_eq!((p.signing, p.published.clone()), (Some(1), vec![0, 1]));
        assert_eq!(p.next_change_ms, Some(26 * H));
        let p = plan(&two, 26 * H, &policy, Alg::Rs256);
        assert_eq!((p.published.clone(), p.expired.clone()), (vec![1], vec![0]));
        // After a long stop, the next key is still published ahead of use.
        let p = plan(&one, 100 * H, &policy, Alg::Rs256);
        assert_eq!(p.create_active_ms, Some(101 * H));
        // Another algorithm configured: replaced, published ahead.
        let p = plan(&one, 2 * H, &policy, Alg::Es256);
        assert_eq!(p.create_active_ms, Some(3 * H));
    }
}
