//! `sesame login` and `sesame logout`, and the credentials file they keep: `$SESAME_CONFIG_DIR/credentials.json`
//! (default `~/.sesame/credentials.json`), holding the server URL, its token and the default org.
//!
//! The file is created with mode 0600 inside a folder created with mode 0700, and it is replaced whole (written to
//! a new 0600 file, then renamed), so it is never readable by others, not even for an instant. This module owns the
//! file's format; [`super::client`] only reads it through [`load`].

use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::client::{Client, DEFAULT_URL, ServerRefused};
use crate::core::tokens::AccessToken;

/// The credentials file's name inside the config folder.
const FILE_NAME: &str = "credentials.json";

/// What `sesame login` stored: one server, its token, and the org names default to. `Debug` redacts the token.
#[derive(Clone)]
pub struct Credentials {
    /// The server URL, as given to `login`.
    pub url: String,
    /// The access token.
    pub token: AccessToken,
    /// The org that environment names default to (given at login, or the user's only org), if any.
    pub org: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("url", &self.url)
            .field("token", &"[redacted]")
            .field("org", &self.org)
            .finish()
    }
}

/// The on-disk shape.
#[derive(Deserialize)]
struct Stored {
    url: String,
    token: String,
    #[serde(default)]
    org: Option<String>,
}

/// The folder that holds the credentials: `$SESAME_CONFIG_DIR`, else `$HOME/.sesame`.
pub fn config_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SESAME_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".sesame")),
        None => bail!("neither SESAME_CONFIG_DIR nor HOME is set: cannot find the credentials file"),
    }
}

/// The credentials file's path.
pub fn credentials_path() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join(FILE_NAME))
}

/// Reads the credentials file; `None` when there is none (not logged in).
pub fn load() -> anyhow::Result<Option<Credentials>> {
    let path = credentials_path()?;
    load_from(&path)
}

fn load_from(path: &Path) -> anyhow::Result<Option<Credentials>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => Zeroizing::new(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if let Ok(meta) = std::fs::metadata(path)
        && meta.mode() & 0o077 != 0
    {
        eprintln!(
            "warning: {} can be read by other users (mode {:o}); run `chmod 600` on it",
            path.display(),
            meta.mode() & 0o777
        );
    }
    // The parse error names the position only, never the text, so the token cannot leak through it.
    let stored: Stored = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a Sesame credentials file; run `sesame login` again",
            path.display()
        )
    })?;
    let token = Zeroizing::new(stored.token);
    Ok(Some(Credentials {
        url: stored.url,
        token: AccessToken::from_presented(&token),
        org: stored.org,
    }))
}

/// Writes the credentials file (0600, in a 0700 folder), replacing any earlier one.
pub fn store(creds: &Credentials) -> anyhow::Result<PathBuf> {
    let dir = config_dir()?;
    store_in(&dir, creds)
}

fn store_in(dir: &Path, creds: &Credentials) -> anyhow::Result<PathBuf> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(FILE_NAME);
    let text = Zeroizing::new(
        serde_json::to_string_pretty(&serde_json::json!({
            "url": creds.url,
            "token": creds.token.expose(),
            "org": creds.org,
        }))
        .context("encoding the credentials")?,
    );
    // A fresh file created 0600 and renamed over the old one: never a moment with wider permissions, and never a
    // half-written file in place.
    let tmp = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(path)
}

/// Flags of `sesame login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The server URL (default: SESAME_URL, else http://127.0.0.1:8080).
    pub url: Option<String>,
    /// Read the access token from this file instead of SESAME_TOKEN or a prompt.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// The org that environment names default to (default: your org when you belong to exactly one; with several,
    /// none — name it here, or with SESAME_ORG or --org on each command).
    #[arg(long)]
    pub org: Option<String>,
    /// Allow plain http:// to a host that is not loopback (tokens and secrets would cross the network unencrypted).
    #[arg(long)]
    pub insecure: bool,
    /// Log in by token exchange: trade the OIDC token in this file (`-`: standard input) — a CI job's ID token, a
    /// Kubernetes service account token — for a short-lived token of --org, as the org's trust policies allow.
    #[arg(long, value_name = "FILE|-", requires = "org", conflicts_with = "token_file")]
    pub oidc_token: Option<PathBuf>,
    /// With --oidc-token: the token asked for: `admin` (an organization token), `team:NAME` or `user:LOGIN`
    /// (default: what the first matching policy allows).
    #[arg(long, requires = "oidc_token")]
    pub scope: Option<String>,
    /// With --oidc-token: the token's lifetime in seconds (default 7200, at most the issuer's maximum).
    #[arg(long, value_name = "SECONDS", requires = "oidc_token")]
    pub expiration: Option<i64>,
    /// Print a JSON summary (never the token) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `sesame logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {}

/// The answer of `GET /api/user`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct User {
    #[serde(default)]
    github_login: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    organizations: Vec<UserOrg>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserOrg {
    github_login: String,
}

/// The org names default to when `login` is given none: the caller's only org, if it has exactly one. With
/// several there is no default — never the first by name, which could be an org someone else added the user to,
/// whose members would then receive what the user writes.
fn default_org(orgs: &[UserOrg]) -> Option<String> {
    match orgs {
        [only] => Some(only.github_login.clone()),
        _ => None,
    }
}

/// Reads the token for `login`: SESAME_TOKEN, else --token-file, else a prompt without echo on a terminal, else one
/// line of standard input.
fn read_token(args: &LoginArgs) -> anyhow::Result<AccessToken> {
    if let Some(t) = std::env::var("SESAME_TOKEN").ok().filter(|t| !t.trim().is_empty()) {
        let t = Zeroizing::new(t);
        return Ok(AccessToken::from_presented(&t));
    }
    if let Some(path) = &args.token_file {
        let text = Zeroizing::new(
            std::fs::read_to_string(path).with_context(|| format!("reading token file {}", path.display()))?,
        );
        return Ok(AccessToken::from_presented(&text));
    }
    let text = if std::io::stdin().is_terminal() {
        Zeroizing::new(rpassword::prompt_password("Access token: ").context("reading the token from the terminal")?)
    } else {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the token from standard input")?;
        line
    };
    let token = AccessToken::from_presented(&text);
    if token.expose().is_empty() {
        bail!("no access token given");
    }
    Ok(token)
}

/// Runs `sesame login`.
pub async fn login(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let url = match &args.url {
        Some(u) => u.clone(),
        None => std::env::var("SESAME_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_URL.to_owned()),
    };
    let mut exchanged = None;
    let token = match &args.oidc_token {
        Some(path) => {
            let org = args.org.as_deref().unwrap_or_default();
            let e = super::oidc_login::exchange(&url, path, org, args.scope.as_deref(), args.expiration, args.insecure)
                .await?;
            let token = e.token.clone();
            exchanged = Some(e);
            token
        }
        None => read_token(&args)?,
    };
    let client = Client::with_token(&url, token.clone(), args.insecure)?;
    let user = match client.get::<User>("api/user").await {
        Ok(user) => Some(user),
        // A server without `/api/user`: the token is checked by listing environments, which needs it too.
        Err(e) if e.downcast_ref::<ServerRefused>().is_some_and(|r| r.status == 404) => {
            client
                .get::<serde_json::Value>("api/esc/environments")
                .await
                .with_context(|| format!("checking the token with {url}"))?;
            None
        }
        Err(e) => return Err(e.context(format!("checking the token with {url}"))),
    };
    let user = user.unwrap_or(User {
        github_login: String::new(),
        name: String::new(),
        organizations: Vec::new(),
    });
    let org = args.org.clone().or_else(|| default_org(&user.organizations));
    let path = store(&Credentials {
        url: client.base().to_string(),
        token,
        org: org.clone(),
    })?;
    if args.json {
        let summary = serde_json::json!({
            "url": client.base().to_string(),
            "user": user.github_login,
            "org": org,
            "credentials": path,
            "issuedTokenType": exchanged.as_ref().map(|e| e.issued_token_type.clone()),
            "expiresIn": exchanged.as_ref().map(|e| e.expires_in),
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(e) = &exchanged {
        println!(
            "Exchanged the OIDC token for a {} token that expires in {} s.",
            e.issued_token_type.rsplit(':').next().unwrap_or("Sesame"),
            e.expires_in
        );
    }
    let who = match (user.github_login.as_str(), user.name.as_str()) {
        ("", "") => "the token's user".to_owned(),
        (login, "") | ("", login) => login.to_owned(),
        (login, name) if login == name => login.to_owned(),
        (login, name) => format!("{login} ({name})"),
    };
    println!("Logged in to {} as {who}.", client.base());
    match &org {
        Some(org) => println!("Environment names default to the org {org}."),
        None if user.organizations.len() > 1 => println!(
            "You belong to {} orgs, so none is the default: name one with --org or SESAME_ORG (or log in again \
             with --org).",
            user.organizations.len()
        ),
        None => {}
    }
    println!("Credentials saved in {}.", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Runs `sesame logout`: removes the credentials file.
pub async fn logout(_args: LogoutArgs) -> anyhow::Result<ExitCode> {
    let path = credentials_path()?;
    let previous = load_from(&path).ok().flatten();
    match std::fs::remove_file(&path) {
        Ok(()) => match previous {
            Some(c) => println!("Logged out of {}.", c.url),
            None => println!("Removed {}.", path.display()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => println!("Not logged in."),
        Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_private_and_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested").join(".sesame");
        let creds = Credentials {
            url: "http://127.0.0.1:9/".into(),
            token: AccessToken::from_presented("sesame_secret"),
            org: Some("acme".into()),
        };
        let path = store_in(&dir, &creds).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        let back = load_from(&path).unwrap().unwrap();
        assert_eq!(back.url, creds.url);
        assert_eq!(back.token.expose(), "sesame_secret");
        assert_eq!(back.org.as_deref(), Some("acme"));
        // Replacing keeps the mode, and leaves no temporary file behind.
        store_in(&dir, &back).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        assert!(!format!("{back:?}").contains("sesame_secret"));
    }

    #[test]
    fn only_a_single_org_becomes_the_default() {
        let org = |n: &str| UserOrg {
            github_login: n.to_owned(),
        };
        assert_eq!(default_org(&[]), None);
        assert_eq!(default_org(&[org("acme")]), Some("acme".to_owned()));
        assert_eq!(default_org(&[org("aaa-trap"), org("acme")]), None);
    }

    #[test]
    fn a_missing_file_is_not_an_error_and_a_broken_one_does_not_echo() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(load_from(&tmp.path().join("none.json")).unwrap().is_none());
        let path = tmp.path().join("bad.json");
        std::fs::write(&path, "{\"url\": \"x\", \"token\": sesame_leak").unwrap();
        let err = format!("{:#}", load_from(&path).unwrap_err());
        assert!(!err.contains("sesame_leak"), "{err}");
    }
}
