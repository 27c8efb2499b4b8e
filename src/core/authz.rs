//! Access decisions: roles granted per org, project and environment, inherited downward, the most specific grant
//! winning; and which role each action needs. Pure: the edge gathers the caller's grants, this module decides.
//!
//! A caller whose role on a target is below [`Role::Reader`] is told the target does not exist ([`Decision::Hidden`],
//! answered 404 like a missing one), so nothing leaks about environments the caller cannot see; a caller who can see
//! the target but lacks the role for the action is refused ([`Decision::Forbidden`], 403).

use std::fmt;
use std::str::FromStr;

/// A role, ordered: each includes everything the ones below it allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// No access; as a grant it takes away what a broader grant gave.
    None,
    /// Reads definitions (secrets stay sealed) and lists.
    Reader,
    /// Opens environments and reads their values, secrets included.
    Opener,
    /// Writes definitions and tags, decrypts definitions, creates environments.
    Editor,
    /// Deletes environments, manages access (members, teams, roles, org and team tokens) and the org's KEKs.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 5] = [Role::None, Role::Reader, Role::Opener, Role::Editor, Role::Admin];

    /// The role's name as used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Reader => "reader",
            Role::Opener => "opener",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown role name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: use none, reader, opener, editor or admin")]
pub struct RoleParseError(pub String);

impl FromStr for Role {
    type Err = RoleParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| RoleParseError(s.to_owned()))
    }
}

/// What a caller wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// See that the target exists; read a definition with secrets sealed; list revisions and tags.
    Read,
    /// Open an environment (values, secrets included).
    Open,
    /// Read a definition with its secrets decrypted.
    Decrypt,
    /// Create an environment; write a definition or its tags; retract a revision.
    Write,
    /// Delete an environment.
    Delete,
    /// Manage members, teams, roles and org or team tokens (org-level only).
    ManageAccess,
    /// Export the org's audit chain (org-level only).
    ReadAudit,
    /// Register, list, make default and disable the org's own KEKs, and migrate the org's DEKs between KEKs
    /// (org-level only; the instance's KEKs and instance-wide migrations stay with the instance administrator).
    ManageKeys,
}

impl Action {
    /// The least role that allows the action.
    pub fn needs(self) -> Role {
        match self {
            Action::Read => Role::Reader,
            Action::Open => Role::Opener,
            Action::Decrypt | Action::Write => Role::Editor,
            Action::Delete | Action::ManageAccess | Action::ReadAudit | Action::ManageKeys => Role::Admin,
        }
    }
}

/// The answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// The caller sees the target but may not do this: 403.
    Forbidden,
    /// The caller may not even see the target: answer as if it did not exist (404).
    Hidden,
}

/// One grant that applies to the caller (directly, or through a team): org-wide when `project` is `None`,
/// project-wide when `env` is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub project: Option<String>,
    pub env: Option<String>,
    pub role: Role,
}

/// Everything needed to decide for one caller in one org.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The caller administers the instance: admin everywhere.
    pub instance_admin: bool,
    /// The caller holds an organization token of this org: admin of the org.
    pub org_token: bool,
    /// The caller's grants in this org (its own and its teams').
    pub grants: Vec<Grant>,
    /// The highest role the caller's token may exercise (a token minted by exchange under a policy's
    /// `authorizedPermissions`); `None`: no cap.
    pub cap: Option<Role>,
}

impl Access {
    /// The caller's role on a target: the org (`project` `None`), a project (`env` `None`) or one environment.
    /// The most specific level that has any grant decides; at one level the highest role wins (a user in two teams
    /// gets the better of the two).
    pub fn role(&self, project: Option<&str>, env: Option<&str>) -> Role {
        let role = self.uncapped_role(project, env);
        self.cap.map_or(role, |cap| role.min(cap))
    }

    fn uncapped_role(&self, project: Option<&str>, env: Option<&str>) -> Role {
        if self.instance_admin || self.org_token {
            return Role::Admin;
        }
        let at = |p: Option<&str>, e: Option<&str>| {
            self.grants
                .iter()
                .filter(|g| g.project.as_deref() == p && g.env.as_deref() == e)
                .map(|g| g.role)
                .max()
        };
        let env_level = match (project, env) {
            (Some(p), Some(e)) => at(Some(p), Some(e)),
            _ => None,
        };
        let project_level = || project.and_then(|p| at(Some(p), None));
        env_level
            .or_else(project_level)
            .or_else(|| at(None, None))
            .unwrap_or(Role::None)
    }

    /// Whether the caller may do `action` on the target.
    pub fn decide(&self, project: Option<&str>, env: Option<&str>, action: Action) -> Decision {
        decide(self.role(project, env), action)
    }

    /// Whether the caller has any role at all in the org (sees it exists).
    pub fn sees_org(&self) -> bool {
        self.cap != Some(Role::None)
            && (self.instance_admin || self.org_token || self.grants.iter().any(|g| g.role > Role::None))
    }
}

/// The decision for a role and an action.
pub fn decide(role: Role, action: Action) -> Decision {
    if role >= action.needs() {
        Decision::Allow
    } else if role >= Role::Reader {
        Decision::Forbidden
    } else {
        Decision::Hidden
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(project: Option<&str>, env: Option<&str>, role: Role) -> Grant {
        Grant {
            project: project.map(str::to_owned),
            env: env.map(str::to_owned),
            role,
        }
    }

    #[test]
    fn roles_order_and_parse() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!(Role::Reader < Role::Opener && Role::Opener < Role::Editor && Role::Editor < Role::Admin);
        assert!("owner".parse::<Role>().is_err());
    }

    #[test]
    fn every_role_against_every_action() {
        use Action::*;
        let table = [
            (Role::None, [false; 8]),
            (Role::Reader, [true, false, false, false, false, false, false, false]),
            (Role::Opener, [true, true, false, false, false, false, false, false]),
            (Role::Editor, [true, true, true, true, false, false, false, false]),
            (Role::Admin, [true; 8]),
        ];
        for (role, allowed) in table {
            for (action, ok) in [Read, Open, Decrypt, Write, Delete, ManageAccess, ReadAudit, ManageKeys]
                .into_iter()
                .zip(allowed)
            {
                let d = decide(role, action);
                assert_eq!(d == Decision::Allow, ok, "{role} {action:?}");
                if role == Role::None {
                    assert_eq!(d, Decision::Hidden);
                } else if !ok {
                    assert_eq!(d, Decision::Forbidden);
                }
            }
        }
    }

    #[test]
    fn the_most_specific_grant_wins() {
        let a = Access {
            grants: vec![
                grant(None, None, Role::Reader),
                grant(Some("app"), None, Role::Editor),
                grant(Some("app"), Some("prod"), Role::None),
                grant(Some("ops"), Some("ci"), Role::Opener),
            ],
            ..Access::default()
        };
        assert_eq!(a.role(None, None), Role::Reader);
        assert_eq!(a.role(Some("app"), None), Role::Editor);
        assert_eq!(a.role(Some("app"), Some("dev")), Role::Editor);
        assert_eq!(a.role(Some("app"), Some("prod")), Role::None);
        assert_eq!(a.role(Some("ops"), Some("ci")), Role::Opener);
        assert_eq!(a.role(Some("ops"), Some("other")), Role::Reader);
        assert_eq!(a.decide(Some("app"), Some("prod"), Action::Read), Decision::Hidden);
        assert_eq!(a.decide(Some("ops"), Some("other"), Action::Open), Decision::Forbidden);
    }

    #[test]
    fn the_best_grant_at_one_level_wins() {
        let a = Access {
            grants: vec![grant(None, None, Role::Reader), grant(None, None, Role::Opener)],
            ..Access::default()
        };
        assert_eq!(a.role(Some("p"), Some("e")), Role::Opener);
    }

    #[test]
    fn a_cap_bounds_every_role_and_none_hides_the_org() {
        let org = Access {
            org_token: true,
            cap: Some(Role::Reader),
            ..Access::default()
        };
        assert_eq!(org.role(Some("p"), Some("e")), Role::Reader);
        assert_eq!(org.decide(None, None, Action::Write), Decision::Forbidden);
        let user = Access {
            grants: vec![grant(None, None, Role::Opener)],
            cap: Some(Role::Admin),
            ..Access::default()
        };
        assert_eq!(user.role(None, None), Role::Opener, "a cap never raises");
        let none = Access {
            instance_admin: true,
            cap: Some(Role::None),
            ..Access::default()
        };
        assert!(!none.sees_org());
    }

    #[test]
    fn administrators_and_org_tokens_are_admins() {
        for a in [
            Access {
                instance_admin: true,
                ..Access::default()
            },
            Access {
                org_token: true,
                ..Access::default()
            },
        ] {
            assert_eq!(a.role(Some("p"), Some("e")), Role::Admin);
            assert!(a.sees_org());
        }
        assert!(!Access::default().sees_org());
        assert_eq!(Access::default().role(None, None), Role::None);
    }
}
