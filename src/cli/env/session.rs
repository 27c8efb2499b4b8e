//! The conversation with the server's ESC API (`/api/esc/environments`, the contract in
//! `conformance/esc-api/swagger.yaml`): a [`Session`] is a client plus the org of short names; it reads and writes
//! definitions (ETags make writes conditional), opens environments and lists revisions. Refusals are told which
//! environment they concern, and the server's diagnostics print as `file:line:column: summary`. The server is the only
//! judge of whether a definition is valid; secrets never reach an error message.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::Value as Json;

use super::names::{DEFAULT_ORG, Remote, parse_name};
use super::values::properties;
use crate::cli::client::{Answer, ApiDiagnostic, Client, ServerRefused};
use crate::core::env::env_ref::EnvRef;
use crate::core::env::value::Value;
use crate::core::keys::Name;
use crate::wire::esc;

/// A definition as the server sent it.
pub(super) struct Definition {
    pub(super) yaml: String,
    pub(super) etag: Option<String>,
    pub(super) revision: Option<u64>,
}

/// A connected client plus the org of short names.
pub(super) struct Session {
    pub(super) client: Client,
    pub(super) default_org: String,
}

impl Session {
    pub(super) fn new(remote: &Remote) -> anyhow::Result<Session> {
        let default_org = match &remote.org {
            Some(o) if !o.is_empty() => o.clone(),
            _ => crate::cli::login::load()
                .ok()
                .flatten()
                .and_then(|c| c.org)
                .unwrap_or_else(|| DEFAULT_ORG.to_owned()),
        };
        let client = Client::new(&remote.client)?;
        Ok(Session { client, default_org })
    }

    pub(super) fn env(&self, text: &str) -> anyhow::Result<EnvRef> {
        parse_name(text, &self.default_org)
    }

    /// The URL of `tail` under the environment (its version is not part of it).
    pub(super) fn url(&self, env: &EnvRef, tail: &[&str], query: &[(&str, &str)]) -> anyhow::Result<url::Url> {
        let mut segments = vec!["api", "esc", "environments", &env.org, &env.project, &env.name];
        segments.extend_from_slice(tail);
        self.client.url(&segments, query)
    }

    pub(super) async fn call(&self, method: Method, url: url::Url) -> anyhow::Result<Answer> {
        self.client.execute(self.client.request(method, url)).await
    }

    /// The definition (at the environment's version, if it names one).
    pub(super) async fn definition(&self, env: &EnvRef) -> anyhow::Result<Definition> {
        let url = match &env.version {
            Some(v) => self.url(env, &["versions", v], &[])?,
            None => self.url(env, &[], &[])?,
        };
        let answer = self.call(Method::GET, url).await.map_err(|e| about(e, env))?;
        Ok(Definition {
            yaml: answer.body,
            etag: answer.etag,
            revision: answer.revision,
        })
    }

    /// The latest definition with static secrets in plaintext.
    pub(super) async fn decrypted(&self, env: &EnvRef) -> anyhow::Result<String> {
        if let Some(v) = &env.version {
            bail!("secrets can be shown for the latest definition only; drop @{v} from {env}");
        }
        let url = self.url(env, &["decrypt"], &[])?;
        Ok(self.call(Method::GET, url).await.map_err(|e| about(e, env))?.body)
    }

    /// Writes a new definition. `etag` makes the write conditional (409 when someone else wrote first).
    pub(super) async fn patch(&self, env: &EnvRef, yaml: &str, etag: Option<&str>) -> anyhow::Result<Answer> {
        let url = self.url(env, &[], &[])?;
        let mut request = self
            .client
            .request(Method::PATCH, url)
            .header("Content-Type", "application/x-yaml")
            .body(yaml.to_owned());
        if let Some(tag) = etag {
            request = request.header("ETag", tag);
        }
        self.client.execute(request).await.map_err(|e| about(e, env))
    }

    /// Opens the environment and reads all of its values.
    pub(super) async fn open(&self, env: &EnvRef, duration: Option<&str>) -> anyhow::Result<BTreeMap<String, Value>> {
        let query: Vec<(&str, &str)> = duration.map(|d| ("duration", d)).into_iter().collect();
        let url = match &env.version {
            Some(v) => self.url(env, &["versions", v, "open"], &query)?,
            None => self.url(env, &["open"], &query)?,
        };
        let opened = self.call(Method::POST, url).await.map_err(|e| about(e, env))?;
        let opened: esc::OpenResponse =
            serde_json::from_str(&opened.body).context("the server's answer to open has no session id")?;
        let url = self.url(env, &["open", &opened.id], &[])?;
        let read = self.call(Method::GET, url).await.map_err(|e| about(e, env))?;
        let read: Json = serde_json::from_str(&read.body).context("the open environment was not JSON")?;
        Ok(properties(&read))
    }

    /// The number of the latest revision.
    pub(super) async fn latest_revision(&self, env: &EnvRef) -> anyhow::Result<u64> {
        let head = self.definition(&env.at(None)).await?;
        if let Some(r) = head.revision {
            return Ok(r);
        }
        let revisions = self.revisions(env).await?;
        revisions
            .first()
            .and_then(|r| u64::try_from(r.number).ok())
            .with_context(|| format!("the server named no revision of {env}"))
    }

    /// All revisions, newest first, following `before` paging.
    pub(super) async fn revisions(&self, env: &EnvRef) -> anyhow::Result<Vec<esc::EnvironmentRevision>> {
        let mut all: Vec<esc::EnvironmentRevision> = Vec::new();
        let mut before: Option<u64> = None;
        loop {
            let b = before.map(|b| b.to_string());
            let query: Vec<(&str, &str)> = b.as_deref().map(|b| ("before", b)).into_iter().collect();
            let url = self.url(env, &["versions"], &query)?;
            let answer = self.call(Method::GET, url).await.map_err(|e| about(e, &env.at(None)))?;
            let page: Vec<esc::EnvironmentRevision> =
                serde_json::from_str(&answer.body).context("the list of revisions was not a JSON array")?;
            let lowest = page.iter().filter_map(|r| u64::try_from(r.number).ok()).min();
            all.extend(page);
            match (lowest, before) {
                // Stop at the first revision, on an empty page, and when a page does not go further back.
                (Some(l), b) if l > 1 && b.is_none_or(|b| l < b) => before = Some(l),
                _ => break,
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        all.retain(|r| seen.insert(r.number));
        all.sort_by_key(|r| std::cmp::Reverse(r.number));
        Ok(all)
    }

    /// A revision number from a number or a tag.
    pub(super) async fn resolve_revision(&self, env: &EnvRef, revision: &str) -> anyhow::Result<u64> {
        if let Ok(n) = revision.parse::<u64>() {
            return Ok(n);
        }
        revision
            .parse::<Name>()
            .with_context(|| format!("{revision:?} is neither a revision number nor a tag"))?;
        let url = self.url(env, &["versions", "tags", revision], &[])?;
        let answer = self
            .call(Method::GET, url)
            .await
            .with_context(|| format!("reading the tag {revision} of {env}"))?;
        let tag: esc::RevisionTag = serde_json::from_str(&answer.body)
            .with_context(|| format!("the tag {revision} of {env} names no revision"))?;
        u64::try_from(tag.revision).with_context(|| format!("the tag {revision} of {env} names no revision"))
    }
}

/// Adds which environment a refusal concerns, saying plainly when it does not exist.
pub(super) fn about(e: anyhow::Error, env: &EnvRef) -> anyhow::Error {
    match e.downcast_ref::<ServerRefused>() {
        Some(r) if r.status == 404 => e.context(format!("environment {env} was not found")),
        Some(r) if r.status == 409 => e.context(format!("environment {env} was changed by someone else")),
        _ => e.context(format!("environment {env}")),
    }
}

/// The diagnostics of a refusal, if it has any.
pub(super) fn diagnostics_of(e: &anyhow::Error) -> Option<&[ApiDiagnostic]> {
    e.downcast_ref::<ServerRefused>()
        .filter(|r| !r.diagnostics.is_empty())
        .map(|r| r.diagnostics.as_slice())
}

pub(super) fn status_of(e: &anyhow::Error) -> Option<u16> {
    e.downcast_ref::<ServerRefused>().map(|r| r.status)
}

/// Prints diagnostics as `file:line:column: summary`, naming `file` for those in `env` itself.
pub(super) fn print_diagnostics(file: &str, env: &EnvRef, diags: &[ApiDiagnostic]) {
    for d in diags {
        match &d.range {
            Some(r) => {
                let file = if env.is_named(&r.environment) {
                    file
                } else {
                    &r.environment
                };
                eprintln!("{file}:{}:{}: {}", r.begin.line, r.begin.column, d.summary);
            }
            None => match &d.path {
                Some(p) if !p.is_empty() => eprintln!("{file}: {p}: {}", d.summary),
                _ => eprintln!("{file}: {}", d.summary),
            },
        }
    }
}

/// Warnings a successful write may carry (`{"diagnostics": [...]}`).
pub(super) fn print_write_diagnostics(file: &str, env: &EnvRef, answer: &Answer) {
    if let Ok(esc::UpdateResponse { diagnostics }) = serde_json::from_str(&answer.body) {
        print_diagnostics(file, env, &diagnostics);
    }
}

pub(super) fn saved_message(env: &EnvRef, answer: &Answer) -> String {
    match answer.revision {
        Some(r) => format!("Saved {env} (revision {r})."),
        None => format!("Saved {env}."),
    }
}
