//! `sesame oidc issuer add|ls|rm` and `sesame oidc policy show|set`: the OIDC issuers an org trusts for token
//! exchange and their policies, through Pulumi's API paths (`/api/orgs/{org}/oidc/issuers`,
//! `/api/orgs/{org}/auth/policies/…`). Org administrators only. Tables for people, `--json` for scripts.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use reqwest::Method;

use super::client::{Client, ClientArgs};
use crate::wire::trust::{AuthPolicy, CreateIssuer, Issuer, IssuerList, PolicyItem, UpdateAuthPolicy};

/// `--org`, `--json` and the server connection.
#[derive(Debug, Args)]
pub struct OrgTail {
    /// The organization.
    #[arg(long, env = "SESAME_ORG")]
    pub org: String,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

impl OrgTail {
    fn path(&self, below: &str) -> anyhow::Result<String> {
        let org = &self.org;
        if org.parse::<crate::core::keys::Name>().is_err() {
            bail!("invalid org name {org:?}");
        }
        Ok(format!("api/orgs/{org}/{below}"))
    }
}

/// `sesame oidc issuer …`
#[derive(Debug, Args)]
pub struct IssuerArgs {
    #[command(subcommand)]
    pub command: IssuerCommand,
}

/// Issuer commands.
#[derive(Debug, Subcommand)]
pub enum IssuerCommand {
    /// Trust an OIDC issuer. Its policy starts empty: no token is exchanged until `sesame oidc policy set` allows
    /// some.
    #[command(
        after_help = "Examples:\n  sesame oidc issuer add github https://token.actions.githubusercontent.com \
--org acme\n  sesame oidc issuer add cluster https://kubernetes.default.svc --jwks jwks.json --org acme\n\nWithout \
--jwks, Sesame fetches the issuer's discovery document and keys over HTTPS; an issuer on a private or loopback \
address needs the server's --egress-allow."
    )]
    Add {
        /// A name for people.
        name: String,
        /// The issuer URL: exactly the `iss` its tokens carry.
        #[arg(value_name = "URL")]
        issuer_url: String,
        /// A JWKS file (`-`: standard input) to verify with instead of fetching the issuer's keys (for clusters
        /// whose issuer is not reachable).
        #[arg(long, value_name = "FILE")]
        jwks: Option<PathBuf>,
        /// The longest lifetime of a token minted from this issuer's tokens, seconds (default 86400).
        #[arg(long, value_name = "SECONDS")]
        max_expiration: Option<i64>,
        /// Pin the issuer's TLS certificate: the hex SHA-1 or SHA-256 of the certificate its discovery and JWKS
        /// server presents (repeatable; e.g. `openssl x509 -noout -fingerprint -sha256`, colons removed).
        #[arg(long = "thumbprint", value_name = "HEX")]
        thumbprints: Vec<String>,
        #[command(flatten)]
        at: OrgTail,
    },
    /// List the org's trusted issuers.
    Ls {
        #[command(flatten)]
        at: OrgTail,
    },
    /// Stop trusting an issuer (by id or name); its policy goes with it. Tokens already minted stay valid until
    /// they expire or are revoked.
    Rm {
        /// The issuer's id or name.
        issuer: String,
        #[command(flatten)]
        at: OrgTail,
    },
}

/// `sesame oidc policy …`
#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

/// Policy commands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show an issuer's policies.
    Show {
        /// The issuer's id or name.
        issuer: String,
        #[command(flatten)]
        at: OrgTail,
    },
    /// Replace an issuer's policies with a JSON list read from a file (`-`: standard input).
    #[command(
        after_help = "The file holds a JSON list (or {\"policies\": [...]}) of policies, Pulumi's shape:\n\n  \
[{\"decision\": \"allow\", \"tokenType\": \"organization\", \"authorizedPermissions\": [\"admin\"],\n    \"rules\": \
{\"sub\": \"repo:acme/app:ref:refs/heads/main\"}}]\n\nDefault deny; a matching deny policy wins. A rule key is a \
top-level claim or a JSON Pointer (/kubernetes.io/namespace); a value matches exactly, `*` matching any run of \
characters. tokenType team needs teamName, personal needs userLogin; authorizedPermissions caps the minted token's \
role (reader, opener, editor, admin)."
    )]
    Set {
        /// The issuer's id or name.
        issuer: String,
        /// The policy file (`-`: standard input).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        at: OrgTail,
    },
}

fn read_json(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading standard input")?;
        s
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

async fn find_issuer(client: &Client, at: &OrgTail, wanted: &str) -> anyhow::Result<Issuer> {
    let list: IssuerList = client.get(&at.path("oidc/issuers")?).await?;
    list.oidc_issuers
        .into_iter()
        .find(|i| i.id == wanted || i.name == wanted)
        .with_context(|| format!("the org {} trusts no issuer with id or name {wanted:?}", at.org))
}

fn print_issuers(list: &[Issuer]) {
    println!("{:<36}  {:<16}  {:<8}  {:>8}  URL", "ID", "NAME", "KEYS", "MAX (s)");
    for i in list {
        let keys = if i.jwks.is_some() { "inline" } else { "fetched" };
        let name = if i.disabled {
            format!("{} (off)", i.name)
        } else {
            i.name.clone()
        };
        println!(
            "{:<36}  {:<16}  {keys:<8}  {:>8}  {}",
            i.id, name, i.max_expiration, i.url
        );
    }
}

/// Runs `sesame oidc issuer …`.
pub async fn run_issuer(args: IssuerArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        IssuerCommand::Add {
            name,
            issuer_url,
            jwks,
            max_expiration,
            thumbprints,
            at,
        } => {
            let jwks = jwks.as_deref().map(read_json).transpose()?;
            let body = CreateIssuer {
                name,
                url: issuer_url,
                thumbprints: (!thumbprints.is_empty()).then_some(thumbprints),
                jwks,
                max_expiration,
            };
            let issuer: Issuer = Client::new(&at.client)?.post(&at.path("oidc/issuers")?, &body).await?;
            if at.json {
                println!("{}", serde_json::to_string_pretty(&issuer)?);
            } else {
                println!(
                    "Trusting {} ({}) in {} as issuer {}. Its policy is empty: allow tokens with `sesame oidc policy \
                     set {} --file policies.json --org {}`.",
                    issuer.name, issuer.url, at.org, issuer.id, issuer.name, at.org
                );
            }
        }
        IssuerCommand::Ls { at } => {
            let list: IssuerList = Client::new(&at.client)?.get(&at.path("oidc/issuers")?).await?;
            if at.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print_issuers(&list.oidc_issuers);
            }
        }
        IssuerCommand::Rm { issuer, at } => {
            let client = Client::new(&at.client)?;
            let found = find_issuer(&client, &at, &issuer).await?;
            client
                .send_json::<serde_json::Value, ()>(
                    Method::DELETE,
                    &at.path(&format!("oidc/issuers/{}", found.id))?,
                    None,
                )
                .await?;
            if at.json {
                println!("{}", serde_json::json!({"deleted": found.id}));
            } else {
                println!("No longer trusting {} ({}) in {}.", found.name, found.url, at.org);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_policy(p: &AuthPolicy) {
    println!(
        "Policy {} (version {}): {} policies; default deny, deny wins.",
        p.id,
        p.version,
        p.policies.len()
    );
    for (i, item) in p.policies.iter().enumerate() {
        let what = match (item.token_type.as_deref(), &item.team_name, &item.user_login) {
            (Some(t), Some(team), _) => format!("{t} token of team {team}"),
            (Some(t), _, Some(user)) => format!("{t} token of {user}"),
            (Some(t), _, _) => format!("{t} token"),
            (None, _, _) => "any token".into(),
        };
        let cap = if item.authorized_permissions.is_empty() {
            String::new()
        } else {
            format!(" (at most {})", item.authorized_permissions.join(", "))
        };
        let rules: Vec<String> = item.rules.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("  #{i} {} {what}{cap} when {}", item.decision, rules.join(" and "));
    }
}

/// Runs `sesame oidc policy …`.
pub async fn run_policy(args: PolicyArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        PolicyCommand::Show { issuer, at } => {
            let client = Client::new(&at.client)?;
            let found = find_issuer(&client, &at, &issuer).await?;
            let policy: AuthPolicy = client
                .get(&at.path(&format!("auth/policies/oidcissuers/{}", found.id))?)
                .await?;
            if at.json {
                println!("{}", serde_json::to_string_pretty(&policy)?);
            } else {
                print_policy(&policy);
            }
        }
        PolicyCommand::Set { issuer, file, at } => {
            let v = read_json(&file)?;
            let list = match v {
                serde_json::Value::Object(mut o) if o.contains_key("policies") => {
                    o.remove("policies").unwrap_or_default()
                }
                other => other,
            };
            let policies: Vec<PolicyItem> =
                serde_json::from_value(list).context("the file must hold a JSON list of policies (see --help)")?;
            let client = Client::new(&at.client)?;
            let found = find_issuer(&client, &at, &issuer).await?;
            let current: AuthPolicy = client
                .get(&at.path(&format!("auth/policies/oidcissuers/{}", found.id))?)
                .await?;
            let updated: AuthPolicy = client
                .send_json(
                    Method::PATCH,
                    &at.path(&format!("auth/policies/{}", current.id))?,
                    Some(&UpdateAuthPolicy { policies }),
                )
                .await?;
            if at.json {
                println!("{}", serde_json::to_string_pretty(&updated)?);
            } else {
                print_policy(&updated);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
