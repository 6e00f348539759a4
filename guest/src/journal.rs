//! The provisioning journal: `<lead home>/agent-provisioner/journal/<handle>.json`,
//! written atomically before and after every step. When a provision is killed, the journal
//! says how far it got, so `rollback` can undo it and `provision --resume` can finish it;
//! while it exists, a new provision of the same handle is refused.

use crate::caps::{Files, FsError};
use crate::layout::{LeadLayout, join};
use serde::{Deserialize, Serialize};

/// The steps of a provision, in order.
pub const STEPS: [&str; 6] = ["config", "workspace", "vault", "service", "health", "report"];

/// What an interrupted provision needs to be undone or finished. No secrets. The home
/// and service label are derived from the handle, never read back (older journals'
/// `ocHome`/`label` fields are ignored).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Journal {
    pub handle: String,
    pub principal_id: String,
    pub family_id: String,
    pub port: u16,
    pub task_id: Option<String>,
    pub onboarding_channel_id: Option<String>,
    pub vault_id: Option<String>,
    pub started_at: String,
    /// Steps completed, in order.
    pub done: Vec<String>,
    /// The step under way when the journal was last written; its effects may be partial.
    pub current: Option<String>,
    /// Report calls Sesame accepted (`METHOD /path`), so a resumed provision does not
    /// post the task activity or the welcome message twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reported: Vec<String>,
}

/// `<lead home>/agent-provisioner/journal`.
pub fn dir(lead: &LeadLayout) -> String {
    join(&lead.provisioner_dir, "journal")
}

/// The journal file of `handle`.
pub fn path(lead: &LeadLayout, handle: &str) -> String {
    join(&dir(lead), &format!("{handle}.json"))
}

impl Journal {
    /// The journal of `handle`, if a provision of it was interrupted.
    pub fn load(files: &dyn Files, lead: &LeadLayout, handle: &str) -> Result<Option<Journal>, String> {
        let path = path(lead, handle);
        match files.read(&path) {
            Ok(bytes) => {
                let journal: Journal = serde_json::from_slice(&bytes).map_err(|e| format!("the journal {path} is corrupt ({e})"))?;
                if journal.handle != handle {
                    return Err(format!("the journal {path} is corrupt (it names {:?}, not {handle})", journal.handle));
                }
                Ok(Some(journal))
            }
            Err(FsError::NotFound(_)) => Ok(None),
            Err(e) => Err(format!("cannot read the journal {path}: {}", e.message())),
        }
    }

    /// Writes the journal atomically (0600).
    pub fn save(&self, files: &dyn Files, lead: &LeadLayout) -> Result<(), String> {
        let fail = |e: FsError| format!("cannot write the journal of {}: {}", self.handle, e.message());
        files.create_dir_all(&dir(lead), 0o700).map_err(fail)?;
        let bytes = serde_json::to_vec_pretty(self).expect("journals serialize");
        files.write_atomic(&path(lead, &self.handle), &bytes, 0o600).map_err(fail)
    }

    /// Removes the journal: the provision finished or was rolled back.
    pub fn remove(&self, files: &dyn Files, lead: &LeadLayout) -> Result<(), String> {
        files.remove_tree(&path(lead, &self.handle)).map_err(|e| format!("cannot remove the journal of {}: {}", self.handle, e.message()))
    }

    /// Records that `step` starts.
    pub fn begin(&mut self, step: &str, files: &dyn Files, lead: &LeadLayout) -> Result<(), String> {
        self.current = Some(step.to_string());
        self.save(files, lead)
    }

    /// Records that `step` is done.
    pub fn finish(&mut self, step: &str, files: &dyn Files, lead: &LeadLayout) -> Result<(), String> {
        if !self.is_done(step) {
            self.done.push(step.to_string());
        }
        self.current = None;
        self.save(files, lead)
    }

    /// Records that the report call `key` went through.
    pub fn reported(&mut self, key: String, files: &dyn Files, lead: &LeadLayout) -> Result<(), String> {
        self.reported.push(key);
        self.save(files, lead)
    }

    pub fn is_done(&self, step: &str) -> bool {
        self.done.iter().any(|s| s == step)
    }

    /// Where it stopped, in words: `vault (under way)` or `after health`.
    pub fn position(&self) -> String {
        match (&self.current, self.done.last()) {
            (Some(step), _) => format!("{step} (under way)"),
            (None, Some(step)) => format!("after {step}"),
            (None, None) => "start".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemFs;

    fn journal() -> Journal {
        Journal {
            handle: "nova".into(),
            principal_id: "p".into(),
            family_id: "f".into(),
            port: 18930,
            task_id: Some("t".into()),
            onboarding_channel_id: None,
            vault_id: None,
            started_at: "2026-11-25T10:20:30Z".into(),
            done: vec![],
            current: None,
            reported: vec![],
        }
    }

    #[test]
    fn records_steps_atomically_and_round_trips() {
        let fs = MemFs::new();
        let lead = LeadLayout::new("/h/.openclaw");
        let mut j = journal();
        assert_eq!(Journal::load(&fs, &lead, "nova").unwrap(), None);
        j.begin("config", &fs, &lead).unwrap();
        assert_eq!(Journal::load(&fs, &lead, "nova").unwrap().unwrap().position(), "config (under way)");
        j.finish("config", &fs, &lead).unwrap();
        j.finish("config", &fs, &lead).unwrap();
        let loaded = Journal::load(&fs, &lead, "nova").unwrap().unwrap();
        assert_eq!((loaded.done.clone(), loaded.position()), (vec!["config".to_string()], "after config".to_string()));
        assert_eq!(fs.mode(&path(&lead, "nova")), Some(0o600));
        assert!(fs.log.borrow().iter().any(|l| l.starts_with("write /h/.openclaw/agent-provisioner/journal/nova.json")));
        j.remove(&fs, &lead).unwrap();
        assert_eq!(Journal::load(&fs, &lead, "nova").unwrap(), None);
    }

    #[test]
    fn a_corrupt_journal_is_an_error() {
        let fs = MemFs::new();
        let lead = LeadLayout::new("/h/.openclaw");
        fs.add_file(&path(&lead, "nova"), "{");
        assert!(Journal::load(&fs, &lead, "nova").unwrap_err().contains("corrupt"));
    }
}
