//! The audit log: every capability decision, one JSON object per line.
//!
//! Entries name the capability, the operation, its target (a path, URL without query,
//! label or port), the decision, and the grant or rule behind it. Contents, headers and
//! bodies are never recorded, and every line is scrubbed of the host's secrets before
//! it is written. Denials are also printed on stderr, so the operator sees them.

use crate::secret::Secret;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Whether an operation was allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allowed,
    Denied,
}

/// One audit record.
#[derive(Debug, Serialize)]
struct Entry<'a> {
    ts_ms: u128,
    cap: &'a str,
    op: &'a str,
    target: &'a str,
    decision: Decision,
    /// The grant that allowed it, or (for denials) the reason and the grant that would.
    rule: &'a str,
}

/// Where audit records go.
pub struct Audit {
    file: Mutex<Option<File>>,
    path: Option<PathBuf>,
    secrets: Vec<Secret>,
    /// Also print allowed decisions on stderr.
    verbose: bool,
}

impl Audit {
    /// Appends to `path` (created 0600, parents created).
    pub fn open(path: &Path, secrets: Vec<Secret>, verbose: bool) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating the audit log's directory {}", parent.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("opening the audit log {}", path.display()))?;
        Ok(Self { file: Mutex::new(Some(file)), path: Some(path.to_path_buf()), secrets, verbose })
    }

    /// An audit that only prints denials (for tests and `--audit none`).
    pub fn stderr_only(secrets: Vec<Secret>) -> Self {
        Self { file: Mutex::new(None), path: None, secrets, verbose: false }
    }

    /// Where the log is written, if anywhere.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Records one decision.
    pub fn record(&self, cap: &str, op: &str, target: &str, decision: Decision, rule: &str) {
        let ts_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let entry = Entry { ts_ms, cap, op, target, decision, rule };
        let line = self.scrub(&serde_json::to_string(&entry).expect("audit entries serialize"));
        if decision == Decision::Denied || self.verbose {
            let word = if decision == Decision::Denied { "denied" } else { "allowed" };
            eprintln!("agent-provisioner: {word}: {cap} {op} {}: {}", self.scrub(target), self.scrub(rule));
        }
        if let Some(file) = self.file.lock().expect("audit lock").as_mut() {
            // An audit line that cannot be written is reported, never fatal to the guest.
            if let Err(e) = writeln!(file, "{line}") {
                eprintln!("agent-provisioner: cannot write the audit log: {e}");
            }
        }
    }

    fn scrub(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_string(), |t, s| s.scrub(&t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_jsonl_and_scrubs_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/audit.jsonl");
        let audit = Audit::open(&path, vec![Secret::new("sk-123").unwrap()], false).unwrap();
        audit.record("http", "POST", "https://x/sk-123", Decision::Denied, "no grant");
        audit.record("fs", "read", "/h/.openclaw/USER.md", Decision::Allowed, "lead home (read-only)");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["decision"], "denied");
        assert_eq!(lines[0]["target"], "https://x/[redacted]");
        assert_eq!(lines[1]["rule"], "lead home (read-only)");
        assert!(!text.contains("sk-123"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
