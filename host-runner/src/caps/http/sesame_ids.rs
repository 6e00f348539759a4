//! The Sesame ids one run may name: the gate lets a call through only when every id in
//! its path (and the `principalId` of a vault member add) is this run's, not merely
//! well-formed.
//!
//! The host learns them before the component runs ([`crate::cli::run_scope`]): from the task
//! it read itself (family, principal, the human, task, channels), or from the registry
//! entry, journal, archived member record or operator flags of the sibling the command
//! names. The vault is the one this run created: the gate reads its id from Sesame's
//! answer to the run's own `POST /vault/vaults`.

use crate::sys::secret;
use serde_json::Value;
use std::collections::BTreeSet;

/// Which of the run's ids a Sesame endpoint's path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binds {
    /// `POST /vault/vaults`: only a provision, once.
    NewVault,
    /// `/vault/vaults/{vault}/members`: the run's vault, and a principal of the run's.
    Vault,
    /// `/families/{family}/members/{principal}`: a member the run reports on.
    Member,
    /// `/tasks/{task}…`: the run's task.
    Task,
    /// `/channels/{channel}/messages`: the run's channels.
    Channel,
}

/// The ids a run's Sesame calls may name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunIds {
    /// `(family, principal)` of each member whose status the run may set.
    pub members: BTreeSet<(String, String)>,
    /// Who may be added to the run's vault: the sibling and the human who asked for it.
    pub vault_principals: BTreeSet<String>,
    pub tasks: BTreeSet<String>,
    pub channels: BTreeSet<String>,
    /// The run's vault: learned from Sesame's answer to its create.
    pub vaults: BTreeSet<String>,
    /// Whether the run may create a vault: a provision that has none yet, until Sesame
    /// answers its create with one.
    pub creates_vault: bool,
    /// Where the ids came from, for denials: `the task`, `the registry entry of nova`.
    pub source: String,
}

impl RunIds {
    /// Checks the ids of a call whose path under the API prefix is `segments` (already
    /// checked for its endpoint's shape).
    pub fn check_path(&self, binds: Binds, segments: &[&str]) -> Result<(), String> {
        match binds {
            Binds::NewVault if self.creates_vault => Ok(()),
            Binds::NewVault => match self.vaults.first() {
                Some(vault) => Err(format!("this run has its vault already ({vault}); it creates no other")),
                None => Err(format!("only a provision creates a vault, once (this run's ids come from {})", self.source)),
            },
            Binds::Vault => self.named("vault", segments[2], &self.vaults),
            Binds::Task => self.named("task", segments[1], &self.tasks),
            Binds::Channel => self.named("channel", segments[1], &self.channels),
            Binds::Member => {
                let (family, principal) = (segments[1], segments[3]);
                if self.members.contains(&(family.to_string(), principal.to_string())) {
                    return Ok(());
                }
                let families: BTreeSet<String> = self.members.iter().map(|(f, _)| f.clone()).collect();
                if !families.contains(family) {
                    return self.named("family", family, &families);
                }
                let principals = self.members.iter().filter(|(f, _)| f == family).map(|(_, p)| p.clone()).collect();
                self.named("principal", principal, &principals)
            }
        }
    }

    /// Checks a JSON body the host is about to send: it holds no registered secret in any
    /// key or string (escapes decoded), and a vault member add names a principal of the
    /// run's.
    pub fn check_body(&self, binds: Binds, body: &Value) -> Result<(), String> {
        if holds_secret(body) {
            return Err("the body holds a key the host holds (a registered secret); it is never sent".into());
        }
        if binds != Binds::Vault {
            return Ok(());
        }
        match body.get("principalId") {
            Some(Value::String(p)) if self.vault_principals.contains(p) => Ok(()),
            Some(Value::String(p)) => Err(format!(
                "the principalId {} of the vault member is not this run's ({}; from {})",
                shown(p),
                list(&self.vault_principals),
                self.source
            )),
            _ => Err("a vault member add names its principalId as a string".into()),
        }
    }

    /// Records the vault Sesame created for this run: its members may be added, and no
    /// other vault is created.
    pub fn learned_vault(&mut self, vault: String) {
        self.vaults.insert(vault);
        self.creates_vault = false;
    }

    fn named(&self, what: &str, id: &str, allowed: &BTreeSet<String>) -> Result<(), String> {
        match allowed.contains(id) {
            true => Ok(()),
            false => Err(format!("the {what} id {} is not this run's ({}; from {})", shown(id), list(allowed), self.source)),
        }
    }
}

/// Whether any key or string of `value` holds a registered secret.
fn holds_secret(value: &Value) -> bool {
    match value {
        Value::String(s) => secret::held_in(s),
        Value::Array(items) => items.iter().any(holds_secret),
        Value::Object(map) => map.iter().any(|(k, v)| secret::held_in(k) || holds_secret(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

fn shown(id: &str) -> String {
    let mut short: String = id.chars().take(64).collect();
    if short.len() < id.len() {
        short.push('…');
    }
    format!("{short:?}")
}

fn list(ids: &BTreeSet<String>) -> String {
    match ids.is_empty() {
        true => "it has none".into(),
        false => format!("it has {}", ids.iter().map(String::as_str).collect::<Vec<_>>().join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FAMILY: &str = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d";
    const SIBLING: &str = "7d3f1c2a-5b6e-4f80-9a1b-2c3d4e5f6a7b";
    const HUMAN: &str = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";
    const OTHER: &str = "99999999-5e6f-4a7b-8c9d-0e1f2a3b4c5d";

    fn provision() -> RunIds {
        RunIds {
            members: [(FAMILY.into(), SIBLING.into())].into(),
            vault_principals: [SIBLING.into(), HUMAN.into()].into(),
            tasks: ["task-0001".into()].into(),
            channels: ["chan-1".into()].into(),
            vaults: BTreeSet::new(),
            creates_vault: true,
            source: "the task".into(),
        }
    }

    #[test]
    fn only_the_runs_own_ids_pass() {
        let mut run = provision();
        assert_eq!(run.check_path(Binds::Task, &["tasks", "task-0001", "activity"]), Ok(()));
        assert_eq!(run.check_path(Binds::Channel, &["channels", "chan-1", "messages"]), Ok(()));
        assert_eq!(run.check_path(Binds::Member, &["families", FAMILY, "members", SIBLING]), Ok(()));
        for (binds, segments, says) in [
            (Binds::Task, vec!["tasks", "task-9999"], "the task id \"task-9999\" is not this run's (it has task-0001; from the task)"),
            (Binds::Channel, vec!["channels", "chan-2", "messages"], "the channel id \"chan-2\" is not this run's"),
            (Binds::Member, vec!["families", OTHER, "members", SIBLING], "the family id"),
            (Binds::Member, vec!["families", FAMILY, "members", HUMAN], "the principal id \"1a2b3c4d"),
            (Binds::Vault, vec!["vault", "vaults", "v-1", "members"], "the vault id \"v-1\" is not this run's (it has none"),
        ] {
            let err = run.check_path(binds, &segments).unwrap_err();
            assert!(err.contains(says), "{segments:?}: {err}");
        }
        assert_eq!(run.check_path(Binds::NewVault, &["vault", "vaults"]), Ok(()));
        run.learned_vault("v-1".into());
        assert_eq!(run.check_path(Binds::Vault, &["vault", "vaults", "v-1", "members"]), Ok(()));
        assert!(run.check_path(Binds::NewVault, &["vault", "vaults"]).unwrap_err().contains("has its vault already (v-1)"));
        let report = RunIds { creates_vault: false, source: "the registry entry of nova".into(), ..RunIds::default() };
        assert!(report.check_path(Binds::NewVault, &["vault", "vaults"]).unwrap_err().contains("only a provision creates a vault"));
    }

    #[test]
    fn a_vault_member_is_one_of_the_runs_principals_and_no_body_holds_a_key() {
        let run = provision();
        assert_eq!(run.check_body(Binds::Vault, &json!({"principalId": HUMAN, "role": "admin"})), Ok(()));
        let err = run.check_body(Binds::Vault, &json!({"principalId": OTHER, "role": "admin"})).unwrap_err();
        assert!(err.contains("principalId \"99999999") && err.contains(SIBLING), "{err}");
        assert!(run.check_body(Binds::Vault, &json!({"role": "admin"})).is_err());
        assert!(run.check_body(Binds::Vault, &json!({"principalId": ["a"]})).is_err());
        secret::register(&secret::Secret::new("sk-gate-stolen-0001").unwrap());
        for body in [
            json!({"content": "here: sk-gate-stolen-0001", "intent": "chat"}),
            json!({"content": ["sk-gate-\u{200b}stolen-0001"]}),
            json!({"sk-gate-stolen-0001": 1}),
        ] {
            let err = run.check_body(Binds::Channel, &body).unwrap_err();
            assert!(err.contains("holds a key the host holds"), "{body}: {err}");
        }
        assert_eq!(run.check_body(Binds::Channel, &json!({"content": "hello", "intent": "chat"})), Ok(()));
    }
}
