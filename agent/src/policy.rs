//! Who may do what: the built-in role table, narrowed or extended per agent by the
//! `[policy]` section of its configuration file.
//!
//! A request is allowed when both hold:
//! 1. this machine allows the request kind at all (`allow`, default: every kind);
//! 2. the caller's identity is granted it: the entry for its certificate name in `names` if
//!    there is one, else the entry for its role (`roles`, over the built-in table), else
//!    `unknown_role` (default: echo only) — which also covers certificates with no role.
//!
//! Built-in roles: `monitor` (echo), `operator` (echo, restart, cancel, wake), `admin` (all).

use std::collections::{BTreeMap, BTreeSet};

use lightsout_pki::Identity;
use lightsout_protocol::RequestKind;
use serde::Deserialize;

/// The policy as written in the configuration file (all fields optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Request kinds this machine allows at all.
    pub allow: Option<Vec<String>>,
    /// Grant for certificates with no role or a role not in the table.
    pub unknown_role: Option<Vec<String>>,
    /// Role name → granted kinds; overrides built-in roles of the same name.
    #[serde(default)]
    pub roles: BTreeMap<String, Vec<String>>,
    /// Certificate common name → granted kinds; takes precedence over the role.
    #[serde(default)]
    pub names: BTreeMap<String, Vec<String>>,
}

/// The effective, validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    allow: BTreeSet<RequestKind>,
    unknown_role: BTreeSet<RequestKind>,
    roles: BTreeMap<String, BTreeSet<RequestKind>>,
    names: BTreeMap<String, BTreeSet<RequestKind>>,
}

fn set(kinds: &[RequestKind]) -> BTreeSet<RequestKind> {
    kinds.iter().copied().collect()
}

/// A policy section that names an unknown request kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy.{key}: {source}")]
pub struct PolicyError {
    /// The dotted key of the entry at fault, e.g. `roles.ops`.
    pub key: String,
    /// The unknown kind.
    pub source: lightsout_protocol::UnknownKind,
}

/// Why a request is not allowed: the sentence of the `not_allowed` reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// This machine disables the kind for everyone.
    #[error("{kind} is disabled on this machine by its policy")]
    Disabled {
        /// The kind asked for.
        kind: RequestKind,
    },
    /// The caller's grant does not include the kind.
    #[error("{kind} is not allowed for {name} ({via})")]
    NotGranted {
        /// The kind asked for.
        kind: RequestKind,
        /// The caller's certificate name.
        name: String,
        /// Which entry decided: its name, its role, or the unknown-role grant.
        via: String,
    },
}

impl Default for Policy {
    /// The built-in role table, every kind allowed on this machine.
    fn default() -> Self {
        let roles = [
            ("monitor", set(&[RequestKind::Echo])),
            (
                "operator",
                set(&[
                    RequestKind::Echo,
                    RequestKind::Restart,
                    RequestKind::Cancel,
                    RequestKind::Wake,
                ]),
            ),
            ("admin", set(&RequestKind::ALL)),
        ]
        .into_iter()
        .map(|(r, k)| (r.to_owned(), k))
        .collect();
        Self {
            allow: set(&RequestKind::ALL),
            unknown_role: set(&[RequestKind::Echo]),
            roles,
            names: BTreeMap::new(),
        }
    }
}

impl Policy {
    /// Validates a policy section over the built-in defaults.
    ///
    /// # Errors
    /// The dotted key of the first entry naming an unknown request kind.
    pub fn from_file(file: &PolicyFile) -> Result<Self, PolicyError> {
        fn kinds(key: &str, list: &[String]) -> Result<BTreeSet<RequestKind>, PolicyError> {
            list.iter()
                .map(|k| {
                    k.parse().map_err(|source| PolicyError {
                        key: key.to_owned(),
                        source,
                    })
                })
                .collect()
        }
        let mut policy = Policy::default();
        if let Some(allow) = &file.allow {
            policy.allow = kinds("allow", allow)?;
        }
        if let Some(unknown) = &file.unknown_role {
            policy.unknown_role = kinds("unknown_role", unknown)?;
        }
        for (role, list) in &file.roles {
            policy
                .roles
                .insert(role.clone(), kinds(&format!("roles.{role}"), list)?);
        }
        for (name, list) in &file.names {
            policy
                .names
                .insert(name.clone(), kinds(&format!("names.{name:?}"), list)?);
        }
        Ok(policy)
    }

    /// Whether `who` may send a request of `kind`.
    ///
    /// # Errors
    /// [`Denied`], whose text names the request and the identity for the `not_allowed` reply.
    pub fn authorize(&self, who: &Identity, kind: RequestKind) -> Result<(), Denied> {
        if !self.allow.contains(&kind) {
            return Err(Denied::Disabled { kind });
        }
        let role = who.role.as_deref();
        let (granted, via) = if let Some(g) = self.names.get(&who.name) {
            (g, "its certificate name".to_string())
        } else if let Some(g) = role.and_then(|r| self.roles.get(r)) {
            (g, format!("role {}", role.unwrap_or_default()))
        } else {
            let via = match role {
                Some(r) => format!("unknown role {r:?}"),
                None => "no role".to_string(),
            };
            (&self.unknown_role, via)
        };
        if granted.contains(&kind) {
            Ok(())
        } else {
            Err(Denied::NotGranted {
                kind,
                name: who.name.clone(),
                via,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(name: &str, role: Option<&str>) -> Identity {
        Identity {
            name: name.into(),
            fingerprint: "f".into(),
            role: role.map(Into::into),
            serial: "1".into(),
        }
    }

    fn allowed(p: &Policy, id: &Identity) -> Vec<&'static str> {
        RequestKind::ALL
            .into_iter()
            .filter(|k| p.authorize(id, *k).is_ok())
            .map(RequestKind::as_str)
            .collect()
    }

    const KINDS: [&str; 5] = ["echo", "shutdown", "restart", "cancel", "wake"];

    #[test]
    fn built_in_roles() {
        let p = Policy::default();
        assert_eq!(allowed(&p, &who("m", Some("monitor"))), ["echo"]);
        assert_eq!(
            allowed(&p, &who("o", Some("operator"))),
            ["echo", "restart", "cancel", "wake"]
        );
        assert_eq!(allowed(&p, &who("a", Some("admin"))), KINDS);
        assert_eq!(allowed(&p, &who("n", None)), ["echo"]);
        assert_eq!(allowed(&p, &who("x", Some("superuser"))), ["echo"]);
        let err = p
            .authorize(&who("o", Some("operator")), RequestKind::Shutdown)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "shutdown is not allowed for o (role operator)"
        );
    }

    #[test]
    fn per_agent_narrowing_and_names() {
        let file: PolicyFile = toml::from_str(
            r#"
            allow = ["echo"]
            "#,
        )
        .unwrap();
        let p = Policy::from_file(&file).unwrap();
        assert_eq!(allowed(&p, &who("a", Some("admin"))), ["echo"]);
        assert!(
            p.authorize(&who("a", Some("admin")), RequestKind::Shutdown)
                .unwrap_err()
                .to_string()
                .contains("disabled on this machine")
        );

        let file: PolicyFile = toml::from_str(
            r#"
            unknown_role = []
            [roles]
            operator = ["echo", "cancel"]
            lab-tech = ["restart"]
            [names]
            "kiosk" = ["echo"]
            "#,
        )
        .unwrap();
        let p = Policy::from_file(&file).unwrap();
        assert_eq!(allowed(&p, &who("o", Some("operator"))), ["echo", "cancel"]);
        assert_eq!(allowed(&p, &who("t", Some("lab-tech"))), ["restart"]);
        assert_eq!(allowed(&p, &who("kiosk", Some("admin"))), ["echo"]);
        assert!(allowed(&p, &who("n", None)).is_empty());
    }

    #[test]
    fn unknown_kinds_are_named() {
        let file: PolicyFile = toml::from_str("[roles]\nops = [\"reboot\"]").unwrap();
        let err = Policy::from_file(&file).unwrap_err().to_string();
        assert!(
            err.contains("policy.roles.ops") && err.contains("\"reboot\""),
            "{err}"
        );
        assert!(
            toml::from_str::<PolicyFile>("alow = []").is_err(),
            "typos are refused"
        );
    }
}
