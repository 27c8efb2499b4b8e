//! `sesame org|member|invitation|team|role|token`: orgs, their members and invitations, teams and role grants, and
//! access tokens, through the admin API (`/api/sesame/v1`), one file a command: [`orgs`], [`members`],
//! [`invitations`], [`teams`], [`roles`], [`tokens`]. This file holds what they share: the `--org` flag and the
//! argument tails built on it ([`OrgList`], [`OrgClient`]), path segments and queries, dates, listings. Tables for
//! people, `--json` for scripts. A token's text is printed once, when it is made, and nowhere else.

use anyhow::bail;
use clap::Args;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::client::{Client, ClientArgs};
use crate::core::keys::Name;

mod invitations;
mod members;
mod orgs;
mod roles;
mod teams;
mod tokens;

pub use invitations::{InvitationArgs, InvitationCommand, run_invitation};
pub use members::{MemberArgs, MemberCommand, run_member};
pub use orgs::{OrgArgs, OrgCommand, run_org};
pub use roles::{RoleArgs, RoleCommand, run_role};
pub use teams::{TeamArgs, TeamCommand, run_team};
pub use tokens::{TokenArgs, TokenCommand, run_token};

/// The tail of an org's listing (`member ls`, `team ls`, `role ls`): `--org`, `--json`, the server connection.
#[derive(Debug, Args)]
pub struct OrgList {
    #[command(flatten)]
    pub org: OrgFlag,
    /// Print JSON for scripts instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

impl OrgList {
    /// GETs the org's `below` listing (`members`, `teams`, `roles`); `None` when it was printed as JSON or is empty.
    pub(super) async fn fetch<T: DeserializeOwned>(&self, below: &str) -> anyhow::Result<Option<Vec<T>>> {
        listing::<T>(&self.client, &self.org.path(below)?, below, self.json).await
    }
}

/// The tail of an org-scoped change: `--org` and the server connection.
#[derive(Debug, Args)]
pub struct OrgClient {
    #[command(flatten)]
    pub org: OrgFlag,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// The org a command works in.
#[derive(Debug, Clone, Args)]
pub struct OrgFlag {
    /// The organization.
    #[arg(long, env = "SESAME_ORG")]
    pub org: String,
}

impl OrgFlag {
    /// The API path of `below` (`members`, `teams`, `roles`) in this org, refused early if the org's name could
    /// change the path.
    pub(super) fn path(&self, below: &str) -> anyhow::Result<String> {
        Ok(format!("api/sesame/v1/orgs/{}/{below}", seg("org", &self.org)?))
    }
}

/// A path segment from a name the user typed, refused early if it could change the path.
pub(super) fn seg<'a>(what: &str, s: &'a str) -> anyhow::Result<&'a str> {
    match s.parse::<Name>() {
        Ok(_) => Ok(s),
        Err(e) => bail!("invalid {what} {s:?}: {e}"),
    }
}

pub(super) fn query(pairs: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    q.finish()
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM` UTC.
pub(super) fn when(ms: i64) -> String {
    // `YYYY-MM-DDTHH:MM:SS.mmmZ` → `YYYY-MM-DD HH:MM` (UTC).
    crate::core::timefmt::rfc3339(ms)[..16].replacen('T', " ", 1)
}

pub(super) fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub(super) fn field<T: DeserializeOwned>(v: &Value, key: &str) -> anyhow::Result<T> {
    Ok(serde_json::from_value(v.get(key).cloned().unwrap_or(Value::Null))?)
}

/// Gets the listing at `path`: with `--json` prints it whole and answers `None`; else answers its `key` array, for a
/// table.
pub(super) async fn listing<T: DeserializeOwned>(
    client: &ClientArgs,
    path: &str,
    key: &str,
    json: bool,
) -> anyhow::Result<Option<Vec<T>>> {
    let v: Value = Client::new(client)?.get(path).await?;
    if json {
        print_json(&v)?;
        return Ok(None);
    }
    field(&v, key).map(Some)
}

/// Sends `method` to `path` with no body, expecting an empty answer.
pub(super) async fn send(client: &ClientArgs, method: Method, path: &str) -> anyhow::Result<()> {
    Client::new(client)?.send_json::<Value, ()>(method, path, None).await
}

#[cfg(test)]
mod tests {
    use super::{seg, when};

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
