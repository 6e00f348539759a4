//! The provisioning journal: `<lead home>/agent-provisioner/journal/<handle>.json`,
//! written atomically before and after every step. When a provision is killed, the journal
//! says how far it got, so `rollback` can undo it and `provision --resume` can finish it;
//! while it exists, a new provision of the same handle is refused. A journal is also the
//! provision's claim on its gateway's ports: admission keeps every other handle's journal
//! clear, as it does registered siblings, until the provision finishes or is rolled back.

use crate::caps::{Files, FsError};
use crate::layout::{LeadLayout, join};
use crate::task::Task;
use serde::{Deserialize, Serialize};

/// A step of a provision. Journals name steps by their serde names (`"config"`...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Config,
    Workspace,
    Vault,
    Service,
    Health,
    Report,
}

impl Step {
    /// The steps a failure rolls back, in order; `Report` follows them.
    pub const UNDONE_ON_FAILURE: [Step; 5] = [Step::Config, Step::Workspace, Step::Vault, Step::Service, Step::Health];

    /// The name in journals and messages.
    pub fn name(self) -> &'static str {
        match self {
            Step::Config => "config",
            Step::Workspace => "workspace",
            Step::Vault => "vault",
            Step::Service => "service",
            Step::Health => "health",
            Step::Report => "report",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

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
    pub done: Vec<Step>,
    /// The step under way when the journal was last written; its effects may be partial.
    pub current: Option<Step>,
    /// Report calls Sesame accepted (`METHOD /path`), so a resumed provision does not
    /// post the task activity or the welcome message twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reported: Vec<String>,
}

/// `<lead home>/agent-provisioner/journal`.
fn dir(lead: &LeadLayout) -> String {
    join(&lead.provisioner_dir, "journal")
}

/// The journal file of `handle`.
pub fn path(lead: &LeadLayout, handle: &str) -> String {
    join(&dir(lead), &format!("{handle}.json"))
}

/// The journal file of a restore of `handle` (handles hold no `.`, so it is no
/// provision's journal).
pub fn restore_path(lead: &LeadLayout, handle: &str) -> String {
    join(&dir(lead), &format!("{handle}.restore.json"))
}

/// Writes `value` as the journal file `path` (atomically, 0600), creating the journal
/// directory; `what` names it in errors.
pub fn write_json<T: Serialize>(files: &dyn Files, lead: &LeadLayout, path: &str, value: &T, what: &str) -> Result<(), String> {
    let fail = |e: FsError| format!("cannot write {what}: {}", e.message());
    files.create_dir_all(&dir(lead), 0o700).map_err(fail)?;
    files.write_atomic(path, &serde_json::to_vec_pretty(value).expect("journals serialize"), 0o600).map_err(fail)
}

/// Reads the journal file `path`; `None` when there is none.
pub fn read_json<T: serde::de::DeserializeOwned>(files: &dyn Files, path: &str) -> Result<Option<T>, String> {
    match files.read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| format!("the journal {path} is corrupt ({e})")),
        Err(FsError::NotFound(_)) => Ok(None),
        Err(e) => Err(format!("cannot read the journal {path}: {}", e.message())),
    }
}

impl Journal {
    /// The journal a new provision of `task` on `port` starts with.
    pub fn start(task: &Task, port: u16, started_at: String) -> Journal {
        Journal {
            handle: task.handle.clone(),
            principal_id: task.principal_id.clone(),
            family_id: task.family_id.clone(),
            port,
            task_id: task.task_id.clone(),
            onboarding_channel_id: task.onboarding_channel_id.clone(),
            vault_id: None,
            started_at,
            done: Vec::new(),
            current: None,
            reported: Vec::new(),
        }
    }

    /// The journal of `handle`, if a provision of it was interrupted.
    pub fn load(files: &dyn Files, lead: &LeadLayout, handle: &str) -> Result<Option<Journal>, String> {
        let path = path(lead, handle);
        let journal: Option<Journal> = read_json(files, &path)?;
        match journal {
            Some(j) if j.handle != handle => Err(format!("the journal {path} is corrupt (it names {:?}, not {handle})", j.handle)),
            journal => Ok(journal),
        }
    }

    /// The journals of every handle but `except`: the provisions under way or interrupted
    /// that hold a port claim. Names that are not `<handle>.json` (an atomic write's
    /// temporary file) are passed over; a journal that cannot be read is an error naming it.
    pub fn others(files: &dyn Files, lead: &LeadLayout, except: &str) -> Result<Vec<Journal>, String> {
        let entries = match files.walk_tree(&dir(lead)) {
            Ok(entries) => entries,
            Err(FsError::NotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(format!("cannot list the journals in {}: {}", dir(lead), e.message())),
        };
        let handles = entries.iter().filter_map(|name| name.strip_suffix(".json")).filter(|h| naming::check_handle(h).is_ok() && *h != except);
        let mut journals = Vec::new();
        for handle in handles {
            journals.extend(Journal::load(files, lead, handle)?);
        }
        Ok(journals)
    }

    /// Writes the journal atomically (0600).
    pub fn save(&self, files: &dyn Files, lead: &LeadLayout) -> Result<(), String> {
        write_json(files, lead, &path(lead, &self.handle), self, &format!("the journal of {}", self.handle))
    }

    /// Removes the journal: the provision finished or was rolled back.
    pub fn remove(&self, files: &dyn Files, lead: &LeadLayout) -> Result<(), String> {
        files.remove_tree(&path(lead, &self.handle)).map_err(|e| format!("cannot remove the journal of {}: {}", self.handle, e.message()))
    }

    /// Records that `step` starts.
    pub fn begin(&mut self, step: Step, files: &dyn Files, lead: &LeadLayout) -> Result<(), String> {
        self.current = Some(step);
        self.save(files, lead)
    }

    /// Records that `step` is done.
    pub fn finish(&mut self, step: Step, files: &dyn Files, lead: &LeadLayout) -> Result<(), String> {
        if !self.is_done(step) {
            self.done.push(step);
        }
        self.current = None;
        self.save(files, lead)
    }

    /// Records that the report call `key` went through.
    pub fn reported(&mut self, key: String, files: &dyn Files, lead: &LeadLayout) -> Result<(), String> {
        self.reported.push(key);
        self.save(files, lead)
    }

    /// Whether `step` completed.
    pub fn is_done(&self, step: Step) -> bool {
        self.done.contains(&step)
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
        j.begin(Step::Config, &fs, &lead).unwrap();
        assert_eq!(Journal::load(&fs, &lead, "nova").unwrap().unwrap().position(), "config (under way)");
        j.finish(Step::Config, &fs, &lead).unwrap();
        j.finish(Step::Config, &fs, &lead).unwrap();
        let loaded = Journal::load(&fs, &lead, "nova").unwrap().unwrap();
        assert_eq!((loaded.done.clone(), loaded.position()), (vec![Step::Config], "after config".to_string()));
        assert_eq!(fs.mode(&path(&lead, "nova")), Some(0o600));
        assert!(fs.log.borrow().iter().any(|l| l.starts_with("write /h/.openclaw/agent-provisioner/journal/nova.json")));
        j.remove(&fs, &lead).unwrap();
        assert_eq!(Journal::load(&fs, &lead, "nova").unwrap(), None);
    }

    /// A journal exactly as the previous version (steps as strings) wrote it, with the
    /// `ocHome`/`label` fields older ones had.
    const PREVIOUS_FORMAT: &str = r#"{
  "handle": "nova",
  "principalId": "p",
  "familyId": "f",
  "port": 18930,
  "taskId": "t",
  "onboardingChannelId": null,
  "vaultId": "v-1",
  "startedAt": "2026-11-25T10:20:30Z",
  "done": [
    "config",
    "workspace",
    "vault",
    "service",
    "health"
  ],
  "current": "report",
  "reported": [
    "PATCH /families/f/members/p"
  ],
  "ocHome": "/h/.openclaw-nova",
  "label": "com.openclaw.nova"
}"#;

    #[test]
    fn journals_of_the_previous_version_load_and_are_written_the_same_way() {
        let fs = MemFs::new();
        let lead = LeadLayout::new("/h/.openclaw");
        fs.add_file(&path(&lead, "nova"), PREVIOUS_FORMAT);
        let loaded = Journal::load(&fs, &lead, "nova").unwrap().unwrap();
        assert_eq!(loaded.done, Step::UNDONE_ON_FAILURE);
        assert_eq!((loaded.current, loaded.position()), (Some(Step::Report), "report (under way)".to_string()));
        assert_eq!(loaded.reported, ["PATCH /families/f/members/p"]);
        let written: serde_json::Value = serde_json::to_value(&loaded).unwrap();
        let mut previous: serde_json::Value = serde_json::from_str(PREVIOUS_FORMAT).unwrap();
        let old = previous.as_object_mut().unwrap();
        old.remove("ocHome");
        old.remove("label");
        assert_eq!(written, previous, "the old code reads what this version writes");
    }

    #[test]
    fn an_unknown_step_makes_the_journal_corrupt() {
        let fs = MemFs::new();
        let lead = LeadLayout::new("/h/.openclaw");
        fs.add_file(&path(&lead, "nova"), &PREVIOUS_FORMAT.replace("\"current\": \"report\"", "\"current\": \"teleport\""));
        assert!(Journal::load(&fs, &lead, "nova").unwrap_err().contains("corrupt"));
    }

    #[test]
    fn the_other_journals_are_every_handle_but_ones_own() {
        let fs = MemFs::new();
        let lead = LeadLayout::new("/h/.openclaw");
        assert_eq!(Journal::others(&fs, &lead, "nova").unwrap(), [], "no journal directory yet");
        for (handle, port) in [("nova", 18930), ("bob", 19041), ("amy", 19152)] {
            Journal { handle: handle.into(), port, ..journal() }.save(&fs, &lead).unwrap();
        }
        fs.add_file(&format!("{}/.bob.json.tmp-77", dir(&lead)), "{");
        fs.add_file(&format!("{}/notes.txt", dir(&lead)), "");
        let others: Vec<(String, u16)> = Journal::others(&fs, &lead, "nova").unwrap().into_iter().map(|j| (j.handle, j.port)).collect();
        assert_eq!(others, [("amy".to_string(), 19152), ("bob".to_string(), 19041)]);
        fs.add_file(&path(&lead, "zed"), "{");
        let err = Journal::others(&fs, &lead, "nova").unwrap_err();
        assert!(err.contains("zed.json") && err.contains("corrupt"), "{err}");
    }

    #[test]
    fn a_corrupt_journal_is_an_error() {
        let fs = MemFs::new();
        let lead = LeadLayout::new("/h/.openclaw");
        fs.add_file(&path(&lead, "nova"), "{");
        assert!(Journal::load(&fs, &lead, "nova").unwrap_err().contains("corrupt"));
    }
}
