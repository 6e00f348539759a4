//! The family registry: `<lead home>/agent-provisioner/family.json`, one entry per
//! sibling this provisioner created. Provision adds, deprovision removes; commands that
//! get only a handle find the rest here. Written atomically, 0600.
//!
//! The file sits where a component can write, so nothing that decides where to act is
//! read back from it: a sibling's home and service label are derived from its handle
//! (fields `ocHome`/`label` of older files are ignored), and a handle that breaks the
//! naming rules makes the whole file corrupt.

use crate::caps::{Caps, FsError, Files};
use crate::family_lock::FamilyLock;
use crate::layout::LeadLayout;
use serde::{Deserialize, Serialize};

/// The registry format's version.
const VERSION: u32 = 1;

/// One sibling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub handle: String,
    pub principal_id: String,
    pub family_id: String,
    pub display_name: String,
    pub port: u16,
    /// `launchd`, `systemd` or `direct`.
    pub backend: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Last known: `online`, `error`, `stopped`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onboarding_channel_id: Option<String>,
}

/// All siblings, sorted by handle.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    pub version: u32,
    pub siblings: Vec<Member>,
}

impl Member {
    /// `<home>/.openclaw-<handle>`, derived from the handle.
    pub fn home(&self, home: &str) -> String {
        naming::sibling_home(home, &self.handle)
    }

    /// `com.openclaw.<handle>`, derived from the handle.
    pub fn label(&self) -> String {
        naming::label(&self.handle)
    }
}

impl Registry {
    /// Reads the registry; a missing file is an empty registry. A file that does not
    /// parse, has another version, or repeats a handle is an error naming the file, so
    /// it is reported and never silently rewritten.
    pub fn load(files: &dyn Files, lead: &LeadLayout) -> Result<Registry, String> {
        let path = &lead.registry;
        let bytes = match files.read(path) {
            Ok(bytes) => bytes,
            Err(FsError::NotFound(_)) => return Ok(Registry { version: VERSION, siblings: Vec::new() }),
            Err(e) => return Err(format!("cannot read the family registry {path}: {}", e.message())),
        };
        let corrupt = |why: String| format!("the family registry {path} is corrupt ({why}); fix or move it aside");
        let registry: Registry = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if registry.version != VERSION {
            return Err(corrupt(format!("version {} is not {VERSION}", registry.version)));
        }
        if let Some((m, why)) = registry.siblings.iter().find_map(|m| naming::check_handle(&m.handle).err().map(|e| (m, e))) {
            return Err(corrupt(format!("handle {:?} {why}", m.handle)));
        }
        let mut handles: Vec<&str> = registry.siblings.iter().map(|m| m.handle.as_str()).collect();
        handles.sort_unstable();
        if let Some(pair) = handles.windows(2).find(|w| w[0] == w[1]) {
            return Err(corrupt(format!("handle {} appears twice", pair[0])));
        }
        Ok(registry)
    }

    /// Writes the registry atomically (0600), creating the provisioner's directory (0700).
    pub fn save(&self, files: &dyn Files, lead: &LeadLayout) -> Result<(), String> {
        let fail = |e: FsError| format!("cannot write the family registry {}: {}", lead.registry, e.message());
        files.create_dir_all(&lead.provisioner_dir, 0o700).map_err(fail)?;
        let mut text = serde_json::to_string_pretty(self).expect("the registry serializes");
        text.push('\n');
        files.write_atomic(&lead.registry, text.as_bytes(), 0o600).map_err(fail)
    }

    pub fn find(&self, handle: &str) -> Option<&Member> {
        self.siblings.iter().find(|m| m.handle == handle)
    }

    /// Adds or replaces the entry for `member.handle`.
    pub fn upsert(&mut self, member: Member) {
        self.siblings.retain(|m| m.handle != member.handle);
        self.siblings.push(member);
        self.siblings.sort_by(|a, b| a.handle.cmp(&b.handle));
    }

    /// Removes `handle`; true when it was there.
    pub fn remove(&mut self, handle: &str) -> bool {
        let before = self.siblings.len();
        self.siblings.retain(|m| m.handle != handle);
        self.siblings.len() != before
    }
}

/// Changes the registry as one step for concurrent runs: under the family lock, re-read,
/// changed by `change`, written.
pub fn update(caps: &Caps, lead: &LeadLayout, change: impl FnOnce(&mut Registry)) -> Result<(), String> {
    let _family = FamilyLock::take(caps)?;
    let mut registry = Registry::load(caps.files, lead)?;
    change(&mut registry);
    registry.save(caps.files, lead)
}

#[cfg(test)]
pub(crate) fn member(handle: &str, port: u16) -> Member {
    Member {
        handle: handle.into(),
        principal_id: "11111111-2222-3333-4444-555555555555".into(),
        family_id: "66666666-7777-8888-9999-000000000000".into(),
        display_name: handle.to_uppercase(),
        port,
        backend: "direct".into(),
        created_at: "2026-11-25T10:20:30Z".into(),
        status: "online".into(),
        task_id: None,
        onboarding_channel_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemFs;

    fn lead() -> LeadLayout {
        LeadLayout::new("/h/.openclaw")
    }

    #[test]
    fn a_missing_registry_is_empty_and_a_saved_one_round_trips() {
        let fs = MemFs::new();
        fs.add_dir("/h/.openclaw");
        let mut registry = Registry::load(&fs, &lead()).unwrap();
        assert!(registry.siblings.is_empty());
        registry.upsert(member("zed", 18900));
        registry.upsert(member("amy", 18790));
        registry.save(&fs, &lead()).unwrap();
        assert_eq!(fs.mode("/h/.openclaw/agent-provisioner"), Some(0o700));
        assert_eq!(fs.mode(&lead().registry), Some(0o600));
        let loaded = Registry::load(&fs, &lead()).unwrap();
        assert_eq!(loaded.siblings.iter().map(|m| m.handle.as_str()).collect::<Vec<_>>(), ["amy", "zed"]);
        assert!(fs.file(&lead().registry).unwrap().contains("\"principalId\""));
    }

    /// A registry file with one entry for `handle`, as a component could write it.
    fn poisoned(handle: &str) -> String {
        let mut entry = serde_json::to_value(member("nova", 18790)).unwrap();
        entry["handle"] = handle.into();
        serde_json::json!({ "version": 1, "siblings": [entry] }).to_string()
    }

    #[test]
    fn home_and_label_are_never_read_back() {
        let fs = MemFs::new();
        let mut entry = serde_json::to_value(member("nova", 18790)).unwrap();
        entry["ocHome"] = "/h/.openclaw".into();
        entry["label"] = "com.openclaw.atlas".into();
        fs.add_file(&lead().registry, &serde_json::json!({ "version": 1, "siblings": [entry] }).to_string());
        let loaded = Registry::load(&fs, &lead()).unwrap();
        assert_eq!(loaded.siblings, [member("nova", 18790)]);
        assert!(!serde_json::to_string(&loaded).unwrap().contains("ocHome"));
    }

    #[test]
    fn upsert_replaces_and_remove_reports() {
        let mut registry = Registry { version: 1, siblings: vec![] };
        registry.upsert(member("amy", 18790));
        registry.upsert(member("amy", 18910));
        assert_eq!(registry.find("amy").unwrap().port, 18910);
        assert!(registry.remove("amy"));
        assert!(!registry.remove("amy"));
    }

    #[test]
    fn corrupt_registries_are_errors_naming_the_file() {
        let fs = MemFs::new();
        for (text, why) in [
            ("{not json", "corrupt"),
            (r#"{"version": 2, "siblings": []}"#, "version 2"),
            (r#"{"version": 1, "siblings": [], "extra": 1}"#, "unknown field"),
            (&poisoned("../../.ssh"), "\"../../.ssh\" contains `.`"),
            (&poisoned("gateway"), "reserved"),
        ] {
            fs.add_file(&lead().registry, text);
            let err = Registry::load(&fs, &lead()).unwrap_err();
            assert!(err.contains(&lead().registry) && err.contains(why), "{err}");
        }
        let twice = Registry { version: 1, siblings: vec![member("amy", 1), member("amy", 2)] };
        fs.add_file(&lead().registry, &serde_json::to_string(&twice).unwrap());
        assert!(Registry::load(&fs, &lead()).unwrap_err().contains("amy appears twice"));
    }
}
