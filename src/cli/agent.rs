//! `sesame agent`: writes an environment's values as files, for a pod (the injector's init container and sidecar)
//! or on its own (a VM, a CI runner).
//!
//! It authenticates by workload identity — a ServiceAccount token whose audience is Sesame's public URL, exchanged
//! at `POST /api/oauth/oidc/token` for a short-lived Sesame token in the environment's org — or with a Sesame token
//! from `--token-file`. It opens the environment and writes, into `--out`: `.env` (the `environmentVariables` as
//! dotenv lines, quoted exactly as `sesame env open --format dotenv` quotes them), each `files` entry as a file of
//! its name, and each `--inject-file NAME=PATH` pick. Every file is written to a temporary file in the same folder
//! and renamed over the old one (a reader sees the old file or the new one, never half of one), mode 0400 (0440 and
//! the group `--fs-group` when given; never world-readable). With `--once` it writes once and exits; otherwise it
//! rewrites every `--refresh` seconds, exchanging the ServiceAccount token again (the kubelet rotates the file)
//! before the Sesame token expires. Sesame's certificate is checked against the system roots plus `--ca-file` /
//! `SESAME_CA_PEM` (how the injector passes a private CA). Failures exit non-zero with a message that says what was
//! refused.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use reqwest::Method;
use serde_json::Value as Json;
use zeroize::Zeroizing;

use super::client::{Client, ServerRefused};
use super::env::values::{properties, property};
use crate::clock::Clock;
use crate::core::env::path::PropertyPath;
use crate::core::env::project;
use crate::core::env::value::{Repr, Value};
use crate::core::k8s::{TOKEN_PATH, parse_env, valid_file_name};
use crate::core::tokens::AccessToken;
use crate::wire::SecretText;
use crate::wire::esc;
use crate::wire::trust::{EsoTokenRequest, EsoTokenResponse};

/// The dotenv file's name in `--out`.
pub const DOTENV_FILE: &str = ".env";

/// `sesame agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Sesame's URL.
    #[arg(long, env = "SESAME_URL")]
    pub url: String,
    /// The environment: ORG/PROJECT/ENV.
    #[arg(long, value_name = "ORG/PROJECT/ENV")]
    pub env: String,
    /// The folder to write into (in a pod: the injector's in-memory volume).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Write once and exit (init containers); otherwise keep the files fresh until stopped.
    #[arg(long)]
    pub once: bool,
    /// A ServiceAccount token whose audience is Sesame's public URL, exchanged for a Sesame token in ORG (re-read
    /// at every exchange: the kubelet rotates it). Not the pod's default token, which is for the API server.
    #[arg(long, value_name = "FILE", default_value = TOKEN_PATH, conflicts_with = "token_file")]
    pub sa_token_file: PathBuf,
    /// A Sesame access token instead of workload identity (outside Kubernetes); re-read at every refresh.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Also write one value to a file: NAME=PATH (PATH in Pulumi's syntax, e.g. `db.cert` or `certs["tls.pem"]`).
    #[arg(long = "inject-file", value_name = "NAME=PATH")]
    pub inject_files: Vec<String>,
    /// Make the files 0440 with this group (the pod's fsGroup) instead of 0400.
    #[arg(long, value_name = "GID")]
    pub fs_group: Option<u32>,
    /// Seconds between refreshes without --once.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub refresh: u64,
    /// PEM certificates (a private CA) to trust for Sesame's TLS besides the system roots.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// The same, as text (how the injector passes its --agent-ca-file).
    #[arg(long, env = "SESAME_CA_PEM", value_name = "PEM", hide = true)]
    pub ca_pem: Option<String>,
    /// Allow plain http:// to a host that is not loopback.
    #[arg(long)]
    pub insecure: bool,
}

/// How the agent proves who it is.
enum Identity {
    ServiceAccount(PathBuf),
    Token(PathBuf),
}

/// A Sesame token and when to get a new one (Unix ms; `None`: never, it is the operator's).
struct Held {
    token: AccessToken,
    renew_at_ms: Option<i64>,
}

/// Everything fixed for the agent's life.
struct Agent {
    url: String,
    base: url::Url,
    http: reqwest::Client,
    org: String,
    project: String,
    env: String,
    out: PathBuf,
    identity: Identity,
    picks: Vec<(String, PropertyPath)>,
    mode: u32,
    fs_group: Option<u32>,
    clock: Clock,
}

/// Runs `sesame agent`.
pub async fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let (org, project, env) = parse_env(&args.env).map_err(|e| anyhow::anyhow!("--env {:?}: {e}", args.env))?;
    let mut picks = Vec::new();
    for spec in &args.inject_files {
        let (name, path) = spec
            .split_once('=')
            .with_context(|| format!("--inject-file {spec:?} must be NAME=PATH"))?;
        if !valid_file_name(name) {
            bail!(
                "--inject-file {spec:?}: NAME must be 1-64 of letters, digits, '.', '_' and '-', not starting with '.'"
            );
        }
        let path: PropertyPath = path.parse().with_context(|| format!("--inject-file {spec:?}"))?;
        if path.0.is_empty() {
            bail!("--inject-file {spec:?}: the value path is empty");
        }
        picks.push((name.to_owned(), path));
    }
    // Refuses a bad URL, or plain HTTP off loopback, before anything is read (the CLI's own rules).
    let checked = Client::with_token(&args.url, AccessToken::from_presented("-"), args.insecure)?;
    if args.refresh == 0 {
        bail!("--refresh must be at least 1 second");
    }
    let mut pem = Vec::new();
    if let Some(path) = &args.ca_file {
        pem = std::fs::read(path).with_context(|| format!("reading --ca-file {}", path.display()))?;
    }
    if let Some(text) = &args.ca_pem {
        pem.push(b'\n');
        pem.extend_from_slice(text.as_bytes());
    }
    let mut builder = reqwest::Client::builder().user_agent(concat!("sesame-agent/", env!("CARGO_PKG_VERSION")));
    if args.ca_file.is_some() || args.ca_pem.is_some() {
        let certs = reqwest::Certificate::from_pem_bundle(&pem).context("reading the CA certificates (PEM)")?;
        if certs.is_empty() {
            bail!("--ca-file / SESAME_CA_PEM hold no PEM certificate");
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    let agent = Agent {
        url: args.url.clone(),
        base: checked.base().clone(),
        http: builder.build().context("building the HTTP client")?,
        org: org.as_str().to_owned(),
        project: project.as_str().to_owned(),
        env: env.as_str().to_owned(),
        out: args.out.clone(),
        identity: match &args.token_file {
            Some(f) => Identity::Token(f.clone()),
            None => Identity::ServiceAccount(args.sa_token_file.clone()),
        },
        picks,
        mode: if args.fs_group.is_some() { 0o440 } else { 0o400 },
        fs_group: args.fs_group,
        clock: Clock::system(),
    };
    std::fs::create_dir_all(&agent.out).with_context(|| format!("creating {}", agent.out.display()))?;
    let mut held: Option<Held> = None;
    let mut written = BTreeSet::new();
    let refresh_ms = i64::try_from(args.refresh.saturating_mul(1000)).unwrap_or(i64::MAX);
    loop {
        let round = agent.round(&mut held, &mut written).await;
        if args.once {
            let names = round?;
            eprintln!(
                "sesame agent: wrote {} file(s) of {}/{}/{} to {}",
                names,
                agent.org,
                agent.project,
                agent.env,
                agent.out.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        let wait_ms = match round {
            Ok(_) => {
                let now = agent.clock.now_ms();
                let until_renew = held
                    .as_ref()
                    .and_then(|h| h.renew_at_ms)
                    .map_or(refresh_ms, |r| (r - now).max(1000));
                refresh_ms.min(until_renew)
            }
            Err(e) => {
                // A sidecar keeps going: the files it wrote stay, and the next round may succeed.
                eprintln!("sesame agent: error: {e:#}");
                held = None;
                refresh_ms.min(30_000)
            }
        };
        tokio::time::sleep(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(1000))).await;
    }
}

impl Agent {
    /// One refresh: a token if needed, open, write. Returns how many files were written.
    async fn round(&self, held: &mut Option<Held>, written: &mut BTreeSet<String>) -> anyhow::Result<usize> {
        let now = self.clock.now_ms();
        let stale = match held.as_ref() {
            None => true,
            Some(h) => h.renew_at_ms.is_some_and(|r| now >= r),
        };
        if stale || matches!(self.identity, Identity::Token(_)) {
            *held = Some(self.authenticate().await?);
        }
        let Some(h) = held.as_ref() else {
            bail!("no token");
        };
        let props = self.open(&h.token).await?;
        let files = self.render(&props)?;
        for (name, content) in &files {
            write_atomic(&self.out, name, content.as_bytes(), self.mode, self.fs_group)
                .with_context(|| format!("writing {}", self.out.join(name).display()))?;
        }
        let now_written: BTreeSet<String> = files.keys().cloned().collect();
        for gone in written.difference(&now_written) {
            // A file whose value left the environment goes too.
            let _ = std::fs::remove_file(self.out.join(gone));
        }
        *written = now_written;
        Ok(files.len())
    }

    /// A Sesame token: read from `--token-file`, or exchanged for the ServiceAccount token.
    async fn authenticate(&self) -> anyhow::Result<Held> {
        match &self.identity {
            Identity::Token(path) => {
                let text = Zeroizing::new(
                    std::fs::read_to_string(path).with_context(|| format!("reading token file {}", path.display()))?,
                );
                Ok(Held {
                    token: AccessToken::from_presented(&text),
                    renew_at_ms: None,
                })
            }
            Identity::ServiceAccount(path) => {
                let sa = Zeroizing::new(std::fs::read_to_string(path).with_context(|| {
                    format!(
                        "reading the ServiceAccount token {} (is the pod injected, or is --sa-token-file right?)",
                        path.display()
                    )
                })?);
                let body = EsoTokenRequest {
                    organization: self.org.clone(),
                    token: SecretText::new(sa.trim().to_owned()),
                };
                let url = self.url_of(&["api", "oauth", "oidc", "token"])?;
                let resp = self
                    .http
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .with_context(|| format!("could not reach Sesame at {}", self.url))?;
                let status = resp.status();
                let text = Zeroizing::new(resp.text().await.context("reading the token exchange's answer")?);
                if !status.is_success() {
                    let why: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
                    let code = why["error"].as_str().unwrap_or("refused");
                    let description = why["error_description"]
                        .as_str()
                        .or(why["message"].as_str())
                        .unwrap_or("");
                    return Err(anyhow::Error::new(ServerRefused {
                        status: status.as_u16(),
                        message: format!("{code}: {description}"),
                        diagnostics: Vec::new(),
                    })
                    .context(format!(
                        "Sesame refused to exchange the ServiceAccount token for org {}",
                        self.org
                    )));
                }
                let minted: EsoTokenResponse =
                    serde_json::from_str(&text).context("the token exchange's answer was not the expected JSON")?;
                Ok(Held {
                    token: AccessToken::from_presented(minted.access_token.expose()),
                    renew_at_ms: Some(renew_at(self.clock.now_ms(), minted.expires_in)),
                })
            }
        }
    }

    /// The URL of `segments` under Sesame's URL.
    fn url_of(&self, segments: &[&str]) -> anyhow::Result<url::Url> {
        let mut url = self.base.clone();
        url.set_query(None);
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("the server URL {} cannot have a path", self.base))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// One ESC call with `token`: the answer's body, or [`ServerRefused`] with the server's message.
    async fn call(&self, method: Method, segments: &[&str], token: &AccessToken) -> anyhow::Result<Zeroizing<String>> {
        let resp = self
            .http
            .request(method, self.url_of(segments)?)
            .header("Authorization", format!("token {}", token.expose()))
            .header("Accept", "application/json")
            .send()
            .await
            .with_context(|| format!("could not reach Sesame at {}", self.url))?;
        let status = resp.status();
        let text = Zeroizing::new(resp.text().await.context("reading the server's answer")?);
        if !status.is_success() {
            let why: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
            let message = why["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
            return Err(ServerRefused {
                status: status.as_u16(),
                message,
                diagnostics: Vec::new(),
            }
            .into());
        }
        Ok(text)
    }

    /// Opens the environment and reads all its values.
    async fn open(&self, token: &AccessToken) -> anyhow::Result<BTreeMap<String, Value>> {
        let name = format!("{}/{}/{}", self.org, self.project, self.env);
        let about = |e: anyhow::Error| match e.downcast_ref::<ServerRefused>().map(|r| r.status) {
            Some(404) => e.context(format!(
                "environment {name} was not found, or this identity may not open it"
            )),
            Some(403) => e.context(format!("this identity may not open environment {name}")),
            _ => e.context(format!("opening environment {name}")),
        };
        let segments = [
            "api",
            "esc",
            "environments",
            self.org.as_str(),
            self.project.as_str(),
            self.env.as_str(),
            "open",
        ];
        let opened = self.call(Method::POST, &segments, token).await.map_err(about)?;
        let opened: esc::OpenResponse =
            serde_json::from_str(&opened).context("the server's answer to open has no session id")?;
        let mut read_segments = segments.to_vec();
        read_segments.push(opened.id.as_str());
        let read = self.call(Method::GET, &read_segments, token).await.map_err(about)?;
        let json: Json = serde_json::from_str(&read).context("the open environment was not JSON")?;
        Ok(properties(&json))
    }

    /// The files to write, by name.
    fn render(&self, props: &BTreeMap<String, Value>) -> anyhow::Result<BTreeMap<String, Zeroizing<String>>> {
        let mut out = BTreeMap::new();
        let (vars, bad) = project::environment_variables(props, true);
        for b in bad {
            eprintln!("sesame agent: warning: environmentVariables.{b}: not a valid variable name; skipped");
        }
        let mut dotenv = Zeroizing::new(String::new());
        for v in vars {
            match &v.value {
                Some(val) => {
                    dotenv.push_str(&v.name);
                    dotenv.push('=');
                    dotenv.push_str(&project::dotenv_quote(val));
                    dotenv.push('\n');
                }
                None => eprintln!(
                    "sesame agent: warning: {} withheld: {}",
                    v.name,
                    v.why_withheld.unwrap_or("withheld")
                ),
            }
        }
        out.insert(DOTENV_FILE.to_owned(), dotenv);
        if let Some(Value {
            repr: Repr::Object(files),
            ..
        }) = props.get("files")
        {
            for (name, v) in files {
                if !project::valid_var_name(name) {
                    eprintln!("sesame agent: warning: files.{name}: not a valid name; skipped");
                } else if v.contains_unknowns() {
                    eprintln!("sesame agent: warning: files.{name} is unknown; not written");
                } else {
                    out.insert(name.clone(), Zeroizing::new(v.to_text()));
                }
            }
        }
        for (name, path) in &self.picks {
            let v = property(props, &path.0).with_context(|| {
                format!(
                    "--inject-file {name}: {}/{}/{} has no value at {path}",
                    self.org, self.project, self.env
                )
            })?;
            if v.contains_unknowns() {
                bail!("--inject-file {name}: the value at {path} is unknown");
            }
            if out.insert(name.clone(), Zeroizing::new(v.to_text())).is_some() {
                eprintln!("sesame agent: warning: --inject-file {name} replaces files.{name}");
            }
        }
        Ok(out)
    }
}

/// When to exchange again for a token minted at `now_ms` that lasts `expires_in_s`: when a fifth of its lifetime is
/// left, and at least a minute before it ends, but never before half of it has passed.
fn renew_at(now_ms: i64, expires_in_s: i64) -> i64 {
    let lifetime_ms = expires_in_s.max(0).saturating_mul(1000);
    let margin = (lifetime_ms / 5).max(60_000).min(lifetime_ms / 2);
    now_ms.saturating_add(lifetime_ms - margin)
}

/// Writes `content` to `dir/name` atomically: a temporary file in `dir` (created 0600), written and synced, given
/// `mode` (and the group `gid`), then renamed over `name`.
fn write_atomic(dir: &Path, name: &str, content: &[u8], mode: u32, gid: Option<u32>) -> std::io::Result<()> {
    let mut tmp = tempfile::Builder::new().prefix(".sesame-").tempfile_in(dir)?;
    tmp.write_all(content)?;
    tmp.as_file().sync_all()?;
    if let Some(g) = gid {
        std::os::unix::fs::fchown(tmp.as_file(), None, Some(g))?;
    }
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.persist(dir.join(name)).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_renewed_before_they_expire() {
        // 2 h: renewed with 24 min left; 10 min: with 2 min left; 1 min: half way; nonsense: at once.
        assert_eq!(renew_at(0, 7200), 5_760_000);
        assert_eq!(renew_at(0, 600), 480_000);
        assert_eq!(renew_at(0, 240), 180_000);
        assert_eq!(renew_at(1_000, 60), 31_000);
        assert_eq!(renew_at(1_000, -5), 1_000);
    }

    #[test]
    fn atomic_writes_leave_one_file_with_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "a", b"one", 0o400, None).unwrap();
        write_atomic(dir.path(), "a", b"two", 0o400, None).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a"]);
        assert_eq!(std::fs::read_to_string(dir.path().join("a")).unwrap(), "two");
        let mode = std::fs::metadata(dir.path().join("a")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o400);
    }
}
