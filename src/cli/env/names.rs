//! Environment names on the command line, `[[org/]project/]env[@version]`: parsing them with the org of short names
//! (`--org`, `SESAME_ORG`, the org `sesame login` saved, else `default`), refusing a version where a command works on
//! the latest definition, and the flags every remote `env` command shares ([`Remote`]).

use anyhow::{Context, bail};
use clap::Args;

use crate::cli::client::ClientArgs;
use crate::core::env::env_ref::EnvRef;
use crate::core::keys::Name;

/// The org of names without one, when neither `--org`, `SESAME_ORG` nor the credentials file names one.
pub(super) const DEFAULT_ORG: &str = "default";

/// Parses a name on the command line, `[[org/]project/]env[@version]` ([`EnvRef::parse`]); a missing org is
/// `default_org`. The version must be a name too (the server looks up any text, the CLI refuses a typo early).
pub(super) fn parse_name(text: &str, default_org: &str) -> anyhow::Result<EnvRef> {
    let env = EnvRef::parse(text, default_org)?;
    if let Some(v) = &env.version {
        v.parse::<Name>()
            .with_context(|| format!("{text:?}: invalid version {v:?} (a revision number or a tag)"))?;
    }
    Ok(env)
}

/// Refuses `@version` for a command that works on the latest definition.
pub(super) fn no_version(env: &EnvRef, command: &str) -> anyhow::Result<()> {
    match &env.version {
        Some(v) => bail!("`env {command}` works on the latest definition; drop @{v} from {env}"),
        None => Ok(()),
    }
}

/// Flags every remote `env` command shares: the org of short names, and the server connection.
#[derive(Clone, Debug, Args)]
pub struct Remote {
    /// The org of names written PROJECT/ENV [default: SESAME_ORG, else the org `sesame login` saved, else
    /// `default`].
    #[arg(long, env = "SESAME_ORG")]
    pub org: Option<String>,
    /// Server connection.
    #[command(flatten)]
    pub client: ClientArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_take_defaults_and_versions() {
        let e = parse_name("web/prod", "acme").unwrap();
        assert_eq!(
            (e.org.as_str(), e.project.as_str(), e.name.as_str()),
            ("acme", "web", "prod")
        );
        assert_eq!(e.version, None);
        let e = parse_name("other/web/prod@stable", "acme").unwrap();
        assert_eq!(e.to_string(), "other/web/prod@stable");
        let e = parse_name("prod@3", "acme").unwrap();
        assert_eq!(e.to_string(), "acme/default/prod@3");
        for bad in [
            "", "a/b/c/d", "a//b", "a/b@", "a/b c", "a/b@x/y", "../x", "a/b?x", "a/%2e",
        ] {
            assert!(parse_name(bad, "acme").is_err(), "{bad:?}");
        }
        assert!(e.is_named("prod") && e.is_named("default/prod") && e.is_named("") && !e.is_named("x/prod"));
    }
}
