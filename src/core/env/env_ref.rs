//! References to an environment: `[[org/]project/]env[@version]`, the one type the CLI (names on its command line)
//! and the server (`imports:` and `${environments.…}`) both parse.
//!
//! Rule: a missing org is the one the reference is read in, a missing project is `default` (ESC's convention for a
//! bare environment name); org, project and name are [`Name`]s; a version (a revision number, `latest`, or a tag) is
//! never empty. An import names no org (it resolves in the importing environment's org). Pure: no I/O.

use std::fmt;

use crate::core::keys::{Name, NameError};

/// The project of a reference that names none.
pub const DEFAULT_PROJECT: &str = "default";

/// An environment, perhaps at one version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvRef {
    /// The org.
    pub org: String,
    /// The project.
    pub project: String,
    /// The environment's name within its project.
    pub name: String,
    /// A revision number or a revision tag (`latest`, `stable`, …); `None` is the latest.
    pub version: Option<String>,
}

/// Why a text is not an environment reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvRefError {
    /// Not one to three `/`-separated names.
    Shape(String),
    /// One of the names is not a [`Name`].
    Name {
        text: String,
        what: &'static str,
        part: String,
        why: NameError,
    },
    /// `@` with nothing after it.
    EmptyVersion(String),
}

impl fmt::Display for EnvRefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvRefError::Shape(text) => {
                write!(
                    f,
                    "{text:?} is not an environment name: use [ORG/]PROJECT/ENV[@VERSION]"
                )
            }
            EnvRefError::Name { text, what, part, why } => write!(f, "{text:?}: invalid {what} name {part:?}: {why}"),
            EnvRefError::EmptyVersion(text) => {
                write!(f, "{text:?}: invalid version \"\" (a revision number or a tag)")
            }
        }
    }
}

impl std::error::Error for EnvRefError {}

impl EnvRef {
    /// Parses `[[org/]project/]env[@version]`; a missing org is `default_org`, a missing project `default`.
    pub fn parse(text: &str, default_org: &str) -> Result<EnvRef, EnvRefError> {
        let (path, version) = match text.split_once('@') {
            Some((_, "")) => return Err(EnvRefError::EmptyVersion(text.to_owned())),
            Some((p, v)) => (p, Some(v)),
            None => (text, None),
        };
        let parts: Vec<&str> = path.split('/').collect();
        let (org, project, name) = match parts.as_slice() {
            [name] => (default_org, DEFAULT_PROJECT, *name),
            [project, name] => (default_org, *project, *name),
            [org, project, name] => (*org, *project, *name),
            _ => return Err(EnvRefError::Shape(text.to_owned())),
        };
        for (what, part) in [("org", org), ("project", project), ("environment", name)] {
            part.parse::<Name>().map_err(|why| EnvRefError::Name {
                text: text.to_owned(),
                what,
                part: part.to_owned(),
                why,
            })?;
        }
        Ok(EnvRef {
            org: org.to_owned(),
            project: project.to_owned(),
            name: name.to_owned(),
            version: version.map(str::to_owned),
        })
    }

    /// Parses an import, `[project/]env[@version]`, read in `org`: `None` when it is not one (an import that names
    /// an org included).
    pub fn import(text: &str, org: &str) -> Option<EnvRef> {
        if text.split_once('@').map_or(text, |(p, _)| p).matches('/').count() > 1 {
            return None;
        }
        EnvRef::parse(text, org).ok()
    }

    /// The same environment at `version` (`None`: the latest).
    pub fn at(&self, version: Option<String>) -> EnvRef {
        EnvRef {
            version,
            ..self.clone()
        }
    }

    /// Whether a diagnostic's `range.environment` names this environment (or nothing, meaning this one).
    pub fn is_named(&self, env: &str) -> bool {
        env.is_empty()
            || env == self.name
            || env == format!("{}/{}", self.project, self.name)
            || env == format!("{}/{}/{}", self.org, self.project, self.name)
    }
}

impl fmt::Display for EnvRef {
    /// `org/project/env[@version]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.org, self.project, self.name)?;
        if let Some(v) = &self.version {
            write!(f, "@{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_take_defaults_and_versions() {
        let e = EnvRef::parse("web/prod", "acme").unwrap();
        assert_eq!(
            (
                e.org.as_str(),
                e.project.as_str(),
                e.name.as_str(),
                e.version.as_deref()
            ),
            ("acme", "web", "prod", None)
        );
        assert_eq!(
            EnvRef::parse("other/web/prod@stable", "acme").unwrap().to_string(),
            "other/web/prod@stable"
        );
        let e = EnvRef::parse("prod@3", "acme").unwrap();
        assert_eq!(e.to_string(), "acme/default/prod@3");
        assert_eq!(e.at(None).to_string(), "acme/default/prod");
        for bad in ["", "a/b/c/d", "a//b", "a/b@", "a/b c", "../x", "a/b?x", "a/%2e", "a/"] {
            assert!(EnvRef::parse(bad, "acme").is_err(), "{bad:?}");
        }
        assert!(e.is_named("prod") && e.is_named("default/prod") && e.is_named("") && !e.is_named("x/prod"));
        assert!(
            EnvRef::parse("a b", "acme")
                .unwrap_err()
                .to_string()
                .contains("invalid environment name")
        );
        assert!(
            EnvRef::parse("a/b/c/d", "acme")
                .unwrap_err()
                .to_string()
                .contains("[ORG/]PROJECT/ENV")
        );
        assert!(
            EnvRef::parse("x@", "acme")
                .unwrap_err()
                .to_string()
                .contains("invalid version")
        );
    }

    /// The server's imports and the CLI's names are the same type: an import is a CLI name without its org.
    #[test]
    fn imports_resolve_like_esc_in_their_org() {
        let r = EnvRef::import("base", "acme").unwrap();
        assert_eq!(r, EnvRef::parse("base", "acme").unwrap());
        assert_eq!(
            (r.org.as_str(), r.project.as_str(), r.name.as_str(), r.version),
            ("acme", "default", "base", None)
        );
        let r = EnvRef::import("app/prod@stable", "acme").unwrap();
        assert_eq!(r.to_string(), "acme/app/prod@stable");
        assert_eq!(
            EnvRef::import("app/prod@3", "acme").unwrap().version.as_deref(),
            Some("3")
        );
        // The server never read a version as a name: a tag that is not a name is looked up (and not found).
        assert_eq!(
            EnvRef::import("app/prod@a/b", "acme").unwrap().version.as_deref(),
            Some("a/b")
        );
        for bad in ["", "a/b/c", "a@", "../x", "a/", "other/app/prod@1"] {
            assert!(EnvRef::import(bad, "acme").is_none(), "{bad}");
        }
    }
}
