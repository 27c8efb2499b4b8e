//! Trust policies for token exchange: which verified OIDC tokens an org trades for which Sesame token. Pure: the
//! edge verifies the token ([`super::jwt`]) and hands its claims here.
//!
//! Rules (Pulumi's model): **default deny** — a token no allow policy matches gets nothing; **deny wins** — a
//! matching deny policy refuses whatever allow policies say. A policy matches when every one of its rules matches
//! a claim: a rule key names a top-level claim (`sub`), or a nested one as a JSON Pointer (`/kubernetes.io/namespace`);
//! a rule value matches a string claim exactly, except that `*` matches any run of characters (every other
//! character is literal; a value of only `*` is refused when written, as it would match anything). Numbers and
//! booleans match their JSON text; a list matches when one of its elements does. A minted token never exceeds the
//! policy's `authorizedPermissions` (a role cap) nor the issuer's maximum lifetime.

use serde_json::Value;

use super::authz::Role;
use super::tokens::TokenKind;

/// The lifetime of a minted token when the request names none, seconds (2 h).
pub const DEFAULT_LIFETIME_S: i64 = 2 * 60 * 60;
/// An issuer's maximum lifetime when it names none, seconds (24 h).
pub const DEFAULT_MAX_EXPIRATION_S: i64 = 24 * 60 * 60;
/// The shortest lifetime a request may ask for, seconds.
pub const MIN_LIFETIME_S: i64 = 60;
/// Policies an issuer may have.
pub const MAX_POLICIES: usize = 100;
/// Rules a policy may have.
pub const MAX_RULES: usize = 32;
/// Longest rule key or value, bytes.
pub const MAX_RULE_BYTES: usize = 1024;

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Mint a token.
    Allow,
    /// Refuse, whatever allow policies say.
    Deny,
}

/// One policy of an issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Allow or deny.
    pub effect: Effect,
    /// The kind of token it mints (allow), or the kind it refuses (deny; `None`: every kind).
    pub token_type: Option<TokenKind>,
    /// The team of a team token.
    pub team_name: Option<String>,
    /// The user of a personal token.
    pub user_login: Option<String>,
    /// The highest role the minted token may exercise (`None`: the role of what it acts as).
    pub cap: Option<Role>,
    /// Claim key → pattern; every one must match.
    pub rules: Vec<(String, String)>,
}

/// What a request asks for: a kind and, for team and personal tokens, a name (from `scope`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Wanted {
    /// The kind (`None`: whatever the first matching allow policy mints).
    pub kind: Option<TokenKind>,
    /// The team or user login.
    pub name: Option<String>,
}

/// Why a policy list was refused at write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy {index}: {reason}")]
pub struct PolicyError {
    /// The policy's position in the list (0-based).
    pub index: usize,
    /// What is wrong.
    pub reason: String,
}

/// Checks a policy list before it is stored.
pub fn check_policies(policies: &[Policy]) -> Result<(), PolicyError> {
    if policies.len() > MAX_POLICIES {
        return Err(PolicyError {
            index: MAX_POLICIES,
            reason: format!("an issuer has at most {MAX_POLICIES} policies"),
        });
    }
    for (index, p) in policies.iter().enumerate() {
        check_policy(p).map_err(|reason| PolicyError { index, reason })?;
    }
    Ok(())
}

fn check_policy(p: &Policy) -> Result<(), String> {
    if p.rules.len() > MAX_RULES {
        return Err(format!("a policy has at most {MAX_RULES} rules"));
    }
    if p.effect == Effect::Allow && p.rules.is_empty() {
        return Err("an allow policy needs at least one rule (it would trust every token of the issuer)".into());
    }
    for (key, value) in &p.rules {
        if key.is_empty() || key.len() > MAX_RULE_BYTES || value.len() > MAX_RULE_BYTES {
            return Err(format!("rule keys and values are 1 to {MAX_RULE_BYTES} bytes"));
        }
        if value.is_empty() || value.chars().all(|c| c == '*') {
            return Err(format!(
                "rule {key:?}: a value of only \"*\" (or nothing) would match any token; name the value"
            ));
        }
    }
    match (p.effect, p.token_type) {
        (Effect::Allow, None) => return Err("an allow policy needs a tokenType".into()),
        (_, Some(TokenKind::Team)) if p.effect == Effect::Allow && p.team_name.is_none() => {
            return Err("a team policy needs a teamName".into());
        }
        (_, Some(TokenKind::Personal)) if p.effect == Effect::Allow && p.user_login.is_none() => {
            return Err("a personal policy needs a userLogin".into());
        }
        _ => {}
    }
    if p.team_name.is_some() && p.token_type != Some(TokenKind::Team) {
        return Err("teamName goes with tokenType team only".into());
    }
    if p.user_login.is_some() && p.token_type != Some(TokenKind::Personal) {
        return Err("userLogin goes with tokenType personal only".into());
    }
    if p.cap == Some(Role::None) {
        return Err("authorizedPermissions cannot be none".into());
    }
    Ok(())
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters and everything else is literal.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matching with backtracking to the last star: O(|p|·|t|) at worst, no recursion.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The claim a rule key names: a top-level claim, or a JSON Pointer (RFC 6901) when the key starts with `/`.
pub fn claim<'a>(claims: &'a Value, key: &str) -> Option<&'a Value> {
    if key.starts_with('/') {
        claims.pointer(key)
    } else {
        claims.get(key)
    }
}

fn value_matches(value: &Value, pattern: &str) -> bool {
    match value {
        Value::String(s) => wildcard(pattern, s),
        Value::Number(n) => wildcard(pattern, &n.to_string()),
        Value::Bool(b) => wildcard(pattern, if *b { "true" } else { "false" }),
        Value::Array(items) => items.iter().any(|i| !i.is_array() && value_matches(i, pattern)),
        _ => false,
    }
}

/// Whether every rule of `policy` matches `claims`.
pub fn matches(policy: &Policy, claims: &Value) -> bool {
    policy
        .rules
        .iter()
        .all(|(k, v)| claim(claims, k).is_some_and(|c| value_matches(c, v)))
}

/// Why no token is minted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Deny policy `index` matched.
    Denied(usize),
    /// No allow policy matched the claims and the wanted token.
    NoMatch,
}

/// Decides: the allow policy (and its index) that mints the token, or why none does.
pub fn evaluate<'a>(policies: &'a [Policy], claims: &Value, wanted: &Wanted) -> Result<(usize, &'a Policy), Refusal> {
    for (i, p) in policies.iter().enumerate() {
        let kind_hit = match (p.token_type, wanted.kind) {
            (None, _) | (_, None) => true,
            (Some(a), Some(b)) => a == b,
        };
        if p.effect == Effect::Deny && kind_hit && matches(p, claims) {
            return Err(Refusal::Denied(i));
        }
    }
    policies
        .iter()
        .enumerate()
        .find(|(_, p)| {
            p.effect == Effect::Allow
                && wanted.kind.is_none_or(|k| p.token_type == Some(k))
                && wanted
                    .name
                    .as_deref()
                    .is_none_or(|n| p.team_name.as_deref() == Some(n) || p.user_login.as_deref() == Some(n))
                && matches(p, claims)
        })
        .ok_or(Refusal::NoMatch)
}

/// Why a requested lifetime was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expiration must be between {MIN_LIFETIME_S} and {max} seconds (the issuer's maxExpiration)")]
pub struct LifetimeError {
    /// The issuer's maximum.
    pub max: i64,
}

/// The lifetime of a minted token, seconds: `requested` if given (within [`MIN_LIFETIME_S`] and `max`), else
/// [`DEFAULT_LIFETIME_S`] cut to `max`.
pub fn lifetime(requested: Option<i64>, max: i64) -> Result<i64, LifetimeError> {
    match requested {
        None | Some(0) => Ok(DEFAULT_LIFETIME_S.min(max)),
        Some(s) if (MIN_LIFETIME_S..=max).contains(&s) => Ok(s),
        Some(_) => Err(LifetimeError { max }),
    }
}

/// A request's `scope` for the wanted kind: organization → empty or `admin`; team → `team:NAME`; personal →
/// `user:LOGIN`. Returns the name it carries.
pub fn parse_scope(kind: TokenKind, scope: &str) -> Result<Option<String>, String> {
    let scope = scope.trim();
    let named = |prefix: &str| match scope.strip_prefix(prefix) {
        Some(n) if !n.is_empty() => Ok(Some(n.to_owned())),
        _ if scope.is_empty() => Ok(None),
        _ => Err(format!("scope for a {kind} token must be {prefix}NAME")),
    };
    match kind {
        TokenKind::Organization if scope.is_empty() || scope == "admin" => Ok(None),
        TokenKind::Organization => Err("scope for an organization token must be empty or admin".into()),
        TokenKind::Team => named("team:"),
        TokenKind::Personal => named("user:"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn allow(kind: TokenKind, rules: &[(&str, &str)]) -> Policy {
        Policy {
            effect: Effect::Allow,
            token_type: Some(kind),
            team_name: (kind == TokenKind::Team).then(|| "ci".into()),
            user_login: (kind == TokenKind::Personal).then(|| "alice".into()),
            cap: None,
            rules: rules.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
        }
    }

    #[test]
    fn wildcards_match_runs_and_nothing_else_is_special() {
        assert!(wildcard(
            "repo:acme/*:ref:refs/heads/main",
            "repo:acme/app:ref:refs/heads/main"
        ));
        assert!(wildcard("a*b*c", "aXXbYYc"));
        assert!(wildcard("a*", "a"));
        assert!(!wildcard("a*b", "a"));
        assert!(!wildcard("a.c", "abc"), "a dot is literal");
        assert!(!wildcard("a?c", "abc"), "a question mark is literal");
        assert!(wildcard("ü*", "üñí"));
        assert!(!wildcard("main", "main2"));
        assert!(!wildcard("main", "xmain"));
        // Long pathological inputs finish.
        assert!(!wildcard(&"*a".repeat(500), &"a".repeat(400)));
    }

    #[test]
    fn rule_keys_are_claims_or_json_pointers() {
        let c = json!({"sub": "system:serviceaccount:ci:runner", "kubernetes.io": {"namespace": "ci"}, "n": 3,
                       "b": true, "aud": ["x", "y"], "a/b": "slash"});
        assert!(matches(
            &allow(TokenKind::Organization, &[("/kubernetes.io/namespace", "ci")]),
            &c
        ));
        assert!(!matches(
            &allow(TokenKind::Organization, &[("kubernetes.io/namespace", "ci")]),
            &c
        ));
        assert!(matches(
            &allow(TokenKind::Organization, &[("n", "3"), ("b", "true"), ("aud", "y")]),
            &c
        ));
        assert!(matches(&allow(TokenKind::Organization, &[("/a~1b", "slash")]), &c));
        assert!(!matches(&allow(TokenKind::Organization, &[("missing", "x")]), &c));
        assert!(
            !matches(&allow(TokenKind::Organization, &[("kubernetes.io", "x*")]), &c),
            "objects never match"
        );
    }

    #[test]
    fn default_deny_and_deny_wins() {
        let c = json!({"sub": "repo:acme/app:ref:refs/heads/main"});
        let any = Wanted::default();
        assert_eq!(evaluate(&[], &c, &any), Err(Refusal::NoMatch));
        let a = allow(TokenKind::Organization, &[("sub", "repo:acme/*")]);
        assert_eq!(evaluate(std::slice::from_ref(&a), &c, &any).map(|(i, _)| i), Ok(0));
        let deny = Policy {
            effect: Effect::Deny,
            token_type: None,
            rules: vec![("sub".into(), "*:ref:refs/heads/main".into())],
            ..a.clone()
        };
        assert_eq!(evaluate(&[a.clone(), deny], &c, &any), Err(Refusal::Denied(1)));
        let wanted_team = Wanted {
            kind: Some(TokenKind::Team),
            name: Some("ci".into()),
        };
        assert_eq!(
            evaluate(std::slice::from_ref(&a), &c, &wanted_team),
            Err(Refusal::NoMatch)
        );
        let t = allow(TokenKind::Team, &[("sub", "repo:acme/*")]);
        assert_eq!(evaluate(&[a, t], &c, &wanted_team).map(|(i, _)| i), Ok(1));
    }

    #[test]
    fn bad_policies_are_refused_at_write() {
        let mut star = allow(TokenKind::Organization, &[("sub", "*")]);
        assert!(check_policies(std::slice::from_ref(&star)).is_err());
        star.rules[0].1 = "**".into();
        assert!(check_policies(&[star]).is_err());
        assert!(check_policies(&[allow(TokenKind::Organization, &[])]).is_err());
        let mut team = allow(TokenKind::Team, &[("sub", "x")]);
        team.team_name = None;
        assert!(check_policies(&[team]).is_err());
        let mut cap = allow(TokenKind::Organization, &[("sub", "x")]);
        cap.cap = Some(Role::None);
        assert!(check_policies(&[cap]).is_err());
        assert!(check_policies(&[allow(TokenKind::Personal, &[("sub", "x*")])]).is_ok());
    }

    #[test]
    fn lifetimes_default_to_two_hours_and_never_pass_the_maximum() {
        assert_eq!(lifetime(None, DEFAULT_MAX_EXPIRATION_S), Ok(DEFAULT_LIFETIME_S));
        assert_eq!(lifetime(None, 600), Ok(600));
        assert_eq!(lifetime(Some(3600), 7200), Ok(3600));
        assert!(lifetime(Some(7201), 7200).is_err());
        assert!(lifetime(Some(1), 7200).is_err());
        assert!(lifetime(Some(-5), 7200).is_err());
    }

    #[test]
    fn scopes_name_teams_and_users() {
        assert_eq!(parse_scope(TokenKind::Organization, ""), Ok(None));
        assert_eq!(parse_scope(TokenKind::Organization, "admin"), Ok(None));
        assert!(parse_scope(TokenKind::Organization, "team:x").is_err());
        assert_eq!(parse_scope(TokenKind::Team, "team:ci"), Ok(Some("ci".into())));
        assert!(parse_scope(TokenKind::Team, "user:ci").is_err());
        assert_eq!(parse_scope(TokenKind::Personal, "user:alice"), Ok(Some("alice".into())));
    }
}
