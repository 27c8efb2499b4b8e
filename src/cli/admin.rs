//! `sesame org|member|team|role|token`: orgs, their members, teams and role grants, and access tokens, through the
//! admin API (`/api/sesame/v1`). Tables for people, `--json` for scripts. A token's text is printed once, when it
//! is made, and nowhere else.

use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Client, ClientArgs};
use crate::core::keys::Name;
use crate::core::tokens::TokenKind;
use crate::wire::admin::{GrantInfo, InvitationInfo, MemberInfo, OrgInfo, TeamInfo, TokenInfo};

/// The org a command works in.
#[derive(Debug, Clone, Args)]
pub struct OrgFlag {
    /// The organization.
    #[arg(long, env = "SESAME_ORG")]
    pub org: String,
}

/// `sesame org …`
#[derive(Debug, Args)]
pub struct OrgArgs {
    #[command(subcommand)]
    pub command: OrgCommand,
}

/// Org commands.
#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// List the organizations you can use (all of them for the instance administrator).
    Ls {
        /// Print JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create an organization (instance administrator only).
    Create {
        /// Its name: letters, digits, '.', '_' and '-'.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `sesame member …`
#[derive(Debug, Args)]
pub struct MemberArgs {
    #[command(subcommand)]
    pub command: MemberCommand,
}

/// Member commands (org administrators, except `ls`).
#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// List an organization's members and their org-wide roles.
    Ls {
        #[command(flatten)]
        org: OrgFlag,
        /// Print JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Invite a user to an organization with an org-wide role; they join when they accept (`sesame invitation
    /// accept`). The instance administrator adds users directly instead: a user new to the instance is created, and
    /// its first personal token is printed once.
    #[command(
        after_help = "Roles: none, reader, opener, editor, admin.\n\nExample:\n  sesame member add alice \
--role editor --org acme"
    )]
    Add {
        /// The user's login.
        login: String,
        /// The org-wide role.
        #[arg(long)]
        role: String,
        /// Name shown to people, for a new user.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        org: OrgFlag,
        /// Print JSON for scripts (includes the new user's token).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change a member's org-wide role.
    SetRole {
        /// The member's login.
        login: String,
        /// The new role.
        role: String,
        #[command(flatten)]
        org: OrgFlag,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a member from an organization (and from its teams there, with every grant the member holds).
    Rm {
        /// The member's login.
        login: String,
        #[command(flatten)]
        org: OrgFlag,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `sesame invitation …`
#[derive(Debug, Args)]
pub struct InvitationArgs {
    #[command(subcommand)]
    pub command: InvitationCommand,
}

/// Invitation commands: an org administrator invites with `sesame member add`; you answer here.
#[derive(Debug, Subcommand)]
pub enum InvitationCommand {
    /// List the invitations addressed to you.
    Ls {
        /// Print JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Accept an invitation: you join its organization with its role.
    Accept {
        /// The invitation's id (from `sesame invitation ls`).
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Decline an invitation: it is dropped and you do not join.
    Decline {
        /// The invitation's id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `sesame team …`
#[derive(Debug, Args)]
pub struct TeamArgs {
    #[command(subcommand)]
    pub command: TeamCommand,
}

/// Team commands (org administrators, except `ls`).
#[derive(Debug, Subcommand)]
pub enum TeamCommand {
    /// List an organization's teams and their members.
    Ls {
        #[command(flatten)]
        org: OrgFlag,
        /// Print JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create a team.
    Create {
        /// The team's name.
        name: String,
        /// What the team is for.
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        org: OrgFlag,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a team: its memberships and grants go, its team tokens are revoked.
    Rm {
        /// The team's name.
        name: String,
        #[command(flatten)]
        org: OrgFlag,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Put a member of the organization in a team.
    Add {
        /// The team's name.
        team: String,
        /// The member's login.
        login: String,
        #[command(flatten)]
        org: OrgFlag,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Take a user out of a team.
    Remove {
        /// The team's name.
        team: String,
        /// The member's login.
        login: String,
        #[command(flatten)]
        org: OrgFlag,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `sesame role …`
#[derive(Debug, Args)]
pub struct RoleArgs {
    #[command(subcommand)]
    pub command: RoleCommand,
}

/// Role-grant commands (org administrators, except `ls`).
#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// List every role grant in an organization.
    Ls {
        #[command(flatten)]
        org: OrgFlag,
        /// Print JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Grant a role to a user or team on the organization, a project, or one environment. The most specific grant
    /// wins; `none` takes away what a broader grant gives.
    #[command(
        after_help = "Subjects: user:LOGIN or team:NAME. Roles: none, reader, opener, editor, admin.\n\n\
Example:\n  sesame role grant team:ops opener --project app --env prod --org acme"
    )]
    Grant {
        /// `user:LOGIN` or `team:NAME`.
        subject: String,
        /// The role.
        role: String,
        /// Limit the grant to this project.
        #[arg(long)]
        project: Option<String>,
        /// Limit the grant to this environment of the project.
        #[arg(long, requires = "project")]
        env: Option<String>,
        #[command(flatten)]
        org: OrgFlag,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a grant (the subject falls back to its broader grants).
    Revoke {
        /// `user:LOGIN` or `team:NAME`.
        subject: String,
        /// The project of the grant.
        #[arg(long)]
        project: Option<String>,
        /// The environment of the grant.
        #[arg(long, requires = "project")]
        env: Option<String>,
        #[command(flatten)]
        org: OrgFlag,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `sesame token …`
#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// `--kind` takes a token kind by its text form.
impl clap::ValueEnum for TokenKind {
    fn value_variants<'a>() -> &'a [Self] {
        &TokenKind::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

/// Token commands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make an access token and print it once: a personal one for yourself, or (org administrators) a team or
    /// organization token.
    #[command(
        after_help = "Examples:\n  sesame token create --description laptop --expires-in-days 90\n  \
sesame token create --kind team --org acme --team ops --description ci\n  sesame token create --kind organization \
--org acme --json"
    )]
    Create {
        /// personal, team or organization.
        #[arg(long, default_value = "personal", value_enum)]
        kind: TokenKind,
        /// The org of a team or organization token.
        #[arg(long, env = "SESAME_ORG")]
        org: Option<String>,
        /// The team of a team token.
        #[arg(long)]
        team: Option<String>,
        /// A note, to recognise the token later.
        #[arg(long, default_value = "")]
        description: String,
        /// Lifetime in days (default: never expires).
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// Print JSON for scripts (includes the token).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List your personal tokens, or with --org an organization's team and organization tokens (never their text).
    Ls {
        /// List this organization's tokens.
        #[arg(long)]
        org: Option<String>,
        /// Print JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a token by id.
    Revoke {
        /// The token's id (from `sesame token ls`).
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// A path segment from a name the user typed, refused early if it could change the path.
fn seg<'a>(what: &str, s: &'a str) -> anyhow::Result<&'a str> {
    match s.parse::<Name>() {
        Ok(_) => Ok(s),
        Err(e) => bail!("invalid {what} {s:?}: {e}"),
    }
}

fn query(pairs: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    q.finish()
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM` UTC.
fn when(ms: i64) -> String {
    // `YYYY-MM-DDTHH:MM:SS.mmmZ` → `YYYY-MM-DD HH:MM` (UTC).
    crate::core::timefmt::rfc3339(ms)[..16].replacen('T', " ", 1)
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn field<T: serde::de::DeserializeOwned>(v: &Value, key: &str) -> anyhow::Result<T> {
    Ok(serde_json::from_value(v.get(key).cloned().unwrap_or(Value::Null))?)
}

/// Runs `sesame org …`.
pub async fn run_org(args: OrgArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        OrgCommand::Ls { json, client } => {
            let v: Value = Client::new(&client)?.get("api/sesame/v1/orgs").await?;
            if json {
                return print_json(&v).map(|_| ExitCode::SUCCESS);
            }
            let orgs: Vec<OrgInfo> = field(&v, "orgs")?;
            println!("{:<30}  CREATED (UTC)", "NAME");
            for o in orgs {
                println!("{:<30}  {}", o.name, when(o.created_ms));
            }
        }
        OrgCommand::Create { name, client } => {
            let _: Value = Client::new(&client)?
                .post("api/sesame/v1/orgs", &json!({ "name": name }))
                .await?;
            println!("created organization {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `sesame invitation …`.
pub async fn run_invitation(args: InvitationArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        InvitationCommand::Ls { json, client } => {
            let v: Value = Client::new(&client)?.get("api/sesame/v1/invitations").await?;
            if json {
                return print_json(&v).map(|_| ExitCode::SUCCESS);
            }
            let invitations: Vec<InvitationInfo> = field(&v, "invitations")?;
            println!("{:<36}  {:<24}  {:<8}  INVITED BY", "ID", "ORG", "ROLE");
            for i in invitations {
                println!("{:<36}  {:<24}  {:<8}  {}", i.id, i.org, i.role, i.invited_by);
            }
        }
        InvitationCommand::Accept { id, client } => {
            let path = format!("api/sesame/v1/invitations/{}/accept", seg("invitation id", &id)?);
            let v: Value = Client::new(&client)?.post(&path, &json!({})).await?;
            let org = v.get("org").and_then(Value::as_str).unwrap_or_default();
            let role = v.get("role").and_then(Value::as_str).unwrap_or_default();
            println!("joined {org} as {role}");
        }
        InvitationCommand::Decline { id, client } => {
            let path = format!("api/sesame/v1/invitations/{}/decline", seg("invitation id", &id)?);
            Client::new(&client)?
                .send_json::<Value, ()>(Method::POST, &path, None)
                .await?;
            println!("declined invitation {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `sesame member …`.
pub async fn run_member(args: MemberArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        MemberCommand::Ls { org, json, client } => {
            let path = format!("api/sesame/v1/orgs/{}/members", seg("org", &org.org)?);
            let v: Value = Client::new(&client)?.get(&path).await?;
            if json {
                return print_json(&v).map(|_| ExitCode::SUCCESS);
            }
            let members: Vec<MemberInfo> = field(&v, "members")?;
            println!("{:<24}  {:<8}  NAME", "LOGIN", "ROLE");
            for m in members {
                println!("{:<24}  {:<8}  {}", m.login, m.role, m.name);
            }
        }
        MemberCommand::Add {
            login,
            role,
            name,
            org,
            json,
            client,
        } => {
            let path = format!("api/sesame/v1/orgs/{}/members", seg("org", &org.org)?);
            let v: Value = Client::new(&client)?
                .post(&path, &json!({ "login": login, "name": name, "role": role }))
                .await?;
            if json {
                return print_json(&v).map(|_| ExitCode::SUCCESS);
            }
            if let Some(inv) = v.get("invitation") {
                let inv: InvitationInfo = serde_json::from_value(inv.clone())?;
                println!(
                    "invited {} to {} as {} (invitation {}); they join once they run `sesame invitation accept {}`",
                    inv.login, inv.org, inv.role, inv.id, inv.id
                );
                return Ok(ExitCode::SUCCESS);
            }
            let member: MemberInfo = field(&v, "member")?;
            println!("added {} to {} as {}", member.login, org.org, member.role);
            if let Some(token) = v.get("token").and_then(Value::as_str) {
                eprintln!(
                    "{} is new here; their first personal token follows. It is shown only now: hand it to them \
                     over a safe channel.",
                    member.login
                );
                println!("{token}");
            }
        }
        MemberCommand::SetRole {
            login,
            role,
            org,
            client,
        } => {
            let path = format!(
                "api/sesame/v1/orgs/{}/members/{}",
                seg("org", &org.org)?,
                seg("login", &login)?
            );
            let member: MemberInfo = Client::new(&client)?
                .send_json(Method::PATCH, &path, Some(&json!({ "role": role })))
                .await?;
            println!("{} is now {} in {}", member.login, member.role, org.org);
        }
        MemberCommand::Rm { login, org, client } => {
            let path = format!(
                "api/sesame/v1/orgs/{}/members/{}",
                seg("org", &org.org)?,
                seg("login", &login)?
            );
            Client::new(&client)?
                .send_json::<Value, ()>(Method::DELETE, &path, None)
                .await?;
            println!("removed {login} from {}", org.org);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `sesame team …`.
pub async fn run_team(args: TeamArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        TeamCommand::Ls { org, json, client } => {
            let path = format!("api/sesame/v1/orgs/{}/teams", seg("org", &org.org)?);
            let v: Value = Client::new(&client)?.get(&path).await?;
            if json {
                return print_json(&v).map(|_| ExitCode::SUCCESS);
            }
            let teams: Vec<TeamInfo> = field(&v, "teams")?;
            println!("{:<20}  {:<30}  MEMBERS", "NAME", "DESCRIPTION");
            for t in teams {
                println!("{:<20}  {:<30}  {}", t.name, t.description, t.members.join(", "));
            }
        }
        TeamCommand::Create {
            name,
            description,
            org,
            client,
        } => {
            let path = format!("api/sesame/v1/orgs/{}/teams", seg("org", &org.org)?);
            let _: Value = Client::new(&client)?
                .post(&path, &json!({ "name": name, "description": description }))
                .await?;
            println!("created team {name} in {}", org.org);
        }
        TeamCommand::Rm { name, org, client } => {
            let path = format!(
                "api/sesame/v1/orgs/{}/teams/{}",
                seg("org", &org.org)?,
                seg("team", &name)?
            );
            Client::new(&client)?
                .send_json::<Value, ()>(Method::DELETE, &path, None)
                .await?;
            println!("deleted team {name} from {}", org.org);
        }
        TeamCommand::Add {
            team,
            login,
            org,
            client,
        } => {
            let path = team_member_path(&org.org, &team, &login)?;
            Client::new(&client)?
                .send_json::<Value, ()>(Method::PUT, &path, None)
                .await?;
            println!("{login} is in team {team} of {}", org.org);
        }
        TeamCommand::Remove {
            team,
            login,
            org,
            client,
        } => {
            let path = team_member_path(&org.org, &team, &login)?;
            Client::new(&client)?
                .send_json::<Value, ()>(Method::DELETE, &path, None)
                .await?;
            println!("{login} left team {team} of {}", org.org);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn team_member_path(org: &str, team: &str, login: &str) -> anyhow::Result<String> {
    Ok(format!(
        "api/sesame/v1/orgs/{}/teams/{}/members/{}",
        seg("org", org)?,
        seg("team", team)?,
        seg("login", login)?
    ))
}

/// Runs `sesame role …`.
pub async fn run_role(args: RoleArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        RoleCommand::Ls { org, json, client } => {
            let path = format!("api/sesame/v1/orgs/{}/roles", seg("org", &org.org)?);
            let v: Value = Client::new(&client)?.get(&path).await?;
            if json {
                return print_json(&v).map(|_| ExitCode::SUCCESS);
            }
            let grants: Vec<GrantInfo> = field(&v, "roles")?;
            println!("{:<30}  {:<20}  {:<20}  ROLE", "SUBJECT", "PROJECT", "ENVIRONMENT");
            for g in grants {
                let or_all = |s: &str| if s.is_empty() { "*".to_owned() } else { s.to_owned() };
                println!(
                    "{:<30}  {:<20}  {:<20}  {}",
                    g.subject,
                    or_all(&g.project),
                    if g.project.is_empty() {
                        String::new()
                    } else {
                        or_all(&g.environment)
                    },
                    g.role
                );
            }
        }
        RoleCommand::Grant {
            subject,
            role,
            project,
            env,
            org,
            client,
        } => {
            let path = format!("api/sesame/v1/orgs/{}/roles", seg("org", &org.org)?);
            let body = json!({
                "subject": subject,
                "project": project.clone().unwrap_or_default(),
                "environment": env.clone().unwrap_or_default(),
                "role": role,
            });
            let g: GrantInfo = Client::new(&client)?.send_json(Method::PUT, &path, Some(&body)).await?;
            println!("{} is {} on {}", g.subject, g.role, level(&org.org, &project, &env));
        }
        RoleCommand::Revoke {
            subject,
            project,
            env,
            org,
            client,
        } => {
            let path = format!(
                "api/sesame/v1/orgs/{}/roles?{}",
                seg("org", &org.org)?,
                query(&[
                    ("subject", &subject),
                    ("project", project.as_deref().unwrap_or("")),
                    ("environment", env.as_deref().unwrap_or("")),
                ])
            );
            Client::new(&client)?
                .send_json::<Value, ()>(Method::DELETE, &path, None)
                .await?;
            println!("revoked {subject}'s grant on {}", level(&org.org, &project, &env));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn level(org: &str, project: &Option<String>, env: &Option<String>) -> String {
    match (project, env) {
        (Some(p), Some(e)) => format!("{org}/{p}/{e}"),
        (Some(p), None) => format!("{org}/{p}"),
        _ => org.to_owned(),
    }
}

fn print_tokens(tokens: &[TokenInfo]) {
    println!(
        "{:<36}  {:<12}  {:<20}  {:<16}  {:<16}  {:<8}  DESCRIPTION",
        "ID", "KIND", "OWNER", "CREATED (UTC)", "EXPIRES (UTC)", "STATE"
    );
    for t in tokens {
        let owner = match (&t.user, &t.org, &t.team) {
            (Some(u), _, _) => u.clone(),
            (None, Some(o), Some(team)) => format!("{o}/{team}"),
            (None, Some(o), None) => o.clone(),
            _ => String::new(),
        };
        let now = crate::clock::Clock::system().now_ms();
        let state = match (t.revoked_ms, t.expires_ms) {
            (Some(_), _) => "revoked",
            (None, Some(exp)) if exp <= now => "expired",
            _ => "active",
        };
        println!(
            "{:<36}  {:<12}  {:<20}  {:<16}  {:<16}  {:<8}  {}",
            t.id,
            t.kind,
            owner,
            when(t.created_ms),
            t.expires_ms.map(when).unwrap_or_else(|| "never".into()),
            state,
            t.description
        );
    }
}

/// Runs `sesame token …`.
pub async fn run_token(args: TokenArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        TokenCommand::Create {
            kind,
            org,
            team,
            description,
            expires_in_days,
            json,
            client,
        } => {
            // A personal token names no org; SESAME_ORG set in the environment must not make it fail.
            let org = if kind == TokenKind::Personal { None } else { org };
            let body = json!({
                "kind": kind.as_str(),
                "org": org,
                "team": team,
                "description": description,
                "expiresInDays": expires_in_days,
            });
            let v: Value = Client::new(&client)?.post("api/sesame/v1/tokens", &body).await?;
            if json {
                return print_json(&v).map(|_| ExitCode::SUCCESS);
            }
            let id: String = field(&v, "id")?;
            let Some(token) = v.get("token").and_then(Value::as_str) else {
                bail!("the server's answer carried no token");
            };
            eprintln!("created {kind} token {id}; it is shown only now, store it safely:");
            println!("{token}");
        }
        TokenCommand::Ls { org, json, client } => {
            let path = match &org {
                Some(o) => format!("api/sesame/v1/tokens?{}", query(&[("org", o)])),
                None => "api/sesame/v1/tokens".to_owned(),
            };
            let v: Value = Client::new(&client)?.get(&path).await?;
            if json {
                return print_json(&v).map(|_| ExitCode::SUCCESS);
            }
            let tokens: Vec<TokenInfo> = field(&v, "tokens")?;
            print_tokens(&tokens);
        }
        TokenCommand::Revoke { id, client } => {
            let path = format!("api/sesame/v1/tokens/{}", seg("token id", &id)?);
            Client::new(&client)?
                .send_json::<Value, ()>(Method::DELETE, &path, None)
                .await?;
            println!("revoked token {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_utc_dates() {
        assert_eq!(when(0), "1970-01-01 00:00");
        assert_eq!(when(951_782_400_000), "2000-02-29 00:00");
        assert_eq!(when(1_700_000_000_000), "2023-11-14 22:13");
    }

    #[test]
    fn path_segments_that_could_change_the_path_are_refused() {
        assert!(seg("org", "acme").is_ok());
        for bad in ["a/b", "..", "a?b", "", "a b"] {
            assert!(seg("org", bad).is_err(), "{bad}");
        }
    }
}
