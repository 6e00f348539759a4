//! The audit log: every capability decision, one JSON object per line.
//!
//! Entries name the capability, the operation, its target (a path, URL without query,
//! label or port), the decision, and the grant or rule behind it. Contents, headers and
//! bodies are never recorded, and every field is scrubbed of the host's secrets before
//! the line is serialised (a secret escaped by JSON would otherwise escape the scrubber). Denials are also printed on stderr, so the operator sees them.
//!
//! A run writes at most [`MAX_LINES_PER_RUN`] lines (a component that makes millions of
//! denied calls must not fill the disk or the terminal); past that, decisions are only
//! counted, and one `"decision":"suppressed"` line with the counts ends the run's log.

use crate::sys::safe_open::open_no_follow;
use serde::Serialize;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Audit lines one run writes (and denials it prints on stderr) before it only counts
/// them. A real provision records a few hundred decisions; 10,000 lines are ~2 MB.
pub const MAX_LINES_PER_RUN: u64 = 10_000;

/// Whether an operation was allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allowed,
    Denied,
}

/// The line that ends a run whose log was capped.
#[derive(Debug, Serialize)]
struct Suppressed {
    ts_ms: u128,
    /// Always `"suppressed"`.
    decision: &'static str,
    /// Decisions recorded but not written, by decision.
    allowed: u64,
    denied: u64,
    /// The cap that was reached.
    cap: u64,
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

/// The file and how much this run has written to it.
#[derive(Default)]
struct Sink {
    file: Option<File>,
    /// Lines written (or, without a file, decisions seen) this run.
    lines: u64,
    /// Decisions past the cap: allowed, denied.
    suppressed: (u64, u64),
    /// The suppressed line has been written.
    summarized: bool,
}

/// Where audit records go.
pub struct Audit {
    sink: Mutex<Sink>,
    path: Option<PathBuf>,
    /// Also print allowed decisions on stderr.
    verbose: bool,
}

impl Audit {
    /// Appends to `path` (created 0600, parents created). A symbolic link at `path` is
    /// refused, not followed, and so is anything but a regular file.
    pub fn open(path: &Path, verbose: bool) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating the audit log's directory {}", parent.display()))?;
        }
        let mut options = cap_std::fs::OpenOptions::new();
        cap_std::fs::OpenOptionsExt::mode(options.create(true).append(true), 0o600);
        let file = open_no_follow(&options, path, "the audit log")?;
        let sink = Sink { file: Some(file), ..Sink::default() };
        Ok(Self { sink: Mutex::new(sink), path: Some(path.to_path_buf()), verbose })
    }

    /// An audit that only prints denials (for tests and `--audit none`).
    pub fn stderr_only() -> Self {
        Self { sink: Mutex::new(Sink::default()), path: None, verbose: false }
    }

    /// Where the log is written, if anywhere.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Records one decision: a line in the log and, for denials (or with `verbose`), one
    /// on stderr; past [`MAX_LINES_PER_RUN`], only a count.
    pub fn record(&self, cap: &str, op: &str, target: &str, decision: Decision, rule: &str) {
        let mut sink = self.sink.lock().expect("audit lock");
        if sink.lines >= MAX_LINES_PER_RUN {
            if sink.suppressed == (0, 0) {
                crate::sys::secret::eprint_line(&format!("agent-provisioner: {MAX_LINES_PER_RUN} audit lines written; further decisions are only counted"));
            }
            match decision {
                Decision::Allowed => sink.suppressed.0 += 1,
                Decision::Denied => sink.suppressed.1 += 1,
            }
            return;
        }
        sink.lines += 1;
        let ts_ms = now_ms();
        let entry = Entry { ts_ms, cap, op, target, decision, rule };
        let line = crate::sys::secret::scrubbed_json(&entry);
        if decision == Decision::Denied || self.verbose {
            let word = if decision == Decision::Denied { "denied" } else { "allowed" };
            crate::sys::secret::eprint_line(&format!("agent-provisioner: {word}: {cap} {op} {target}: {rule}"));
        }
        write_line(&mut sink, &line);
    }

    /// Ends a capped run's log with one line counting what was not written (once; also
    /// done when the audit is dropped). Nothing happens if the cap was not reached.
    pub fn finish(&self) {
        let mut sink = self.sink.lock().expect("audit lock");
        let (allowed, denied) = sink.suppressed;
        if sink.summarized || allowed + denied == 0 {
            return;
        }
        sink.summarized = true;
        crate::sys::secret::eprint_line(&format!(
            "agent-provisioner: {} further decisions were not logged ({allowed} allowed, {denied} denied; cap {MAX_LINES_PER_RUN} lines)",
            allowed + denied
        ));
        let summary = Suppressed { ts_ms: now_ms(), decision: "suppressed", allowed, denied, cap: MAX_LINES_PER_RUN };
        write_line(&mut sink, &serde_json::to_string(&summary).expect("audit entries serialize"));
    }

}

impl Drop for Audit {
    fn drop(&mut self) {
        self.finish();
    }
}

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

/// Appends `line` to the log, if there is one, in one write: concurrent runs append to
/// the same log, and `O_APPEND` keeps each write whole. An audit line that cannot be
/// written is reported, never fatal to the guest.
fn write_line(sink: &mut Sink, line: &str) {
    if let Some(file) = sink.file.as_mut()
        && let Err(e) = file.write_all(format!("{line}\n").as_bytes())
    {
        crate::sys::secret::eprint_line(&format!("agent-provisioner: cannot write the audit log: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_jsonl_and_scrubs_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/audit.jsonl");
        crate::sys::secret::register(&crate::sys::secret::Secret::new("sk-123").unwrap());
        let audit = Audit::open(&path, false).unwrap();
        audit.record("http", "POST", "https://x/sk-123", Decision::Denied, "no grant");
        crate::sys::secret::register(&crate::sys::secret::Secret::new("sk-audit\"quoted-0001").unwrap());
        audit.record("fs", "read", "/h/sk-audit\"quoted\u{7}-0001", Decision::Denied, "no grant");
        audit.record("fs", "read", "/h/.openclaw/USER.md", Decision::Allowed, "lead home (read-only)");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["decision"], "denied");
        assert_eq!(lines[1]["target"], "/h/[redacted]", "scrubbed before JSON escaped its quote");
        assert_eq!(lines[0]["target"], "https://x/[redacted]");
        assert_eq!(lines[2]["rule"], "lead home (read-only)");
        assert!(!text.contains("sk-123") && !text.contains("quoted"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn a_run_writes_at_most_the_cap_then_one_summary_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::open(&path, false).unwrap();
        let over = 2_500;
        for i in 0..MAX_LINES_PER_RUN + over {
            let decision = if i % 5 == 0 { Decision::Allowed } else { Decision::Denied };
            audit.record("fs", "read", "/etc/shadow", decision, "no grant");
        }
        assert_eq!(lines(&path).len() as u64, MAX_LINES_PER_RUN, "nothing past the cap is written");
        drop(audit);
        let lines = lines(&path);
        assert_eq!(lines.len() as u64, MAX_LINES_PER_RUN + 1, "exactly one summary line");
        let summary = lines.last().unwrap();
        assert_eq!(summary["decision"], "suppressed");
        assert_eq!(summary["allowed"], over / 5);
        assert_eq!(summary["denied"], over - over / 5);
        assert_eq!(summary["cap"], MAX_LINES_PER_RUN);
    }

    #[test]
    fn finishing_is_idempotent_and_silent_under_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::open(&path, false).unwrap();
        audit.record("ports", "taken", "18789", Decision::Allowed, "local ports");
        audit.finish();
        drop(audit);
        assert_eq!(lines(&path).len(), 1, "no summary when nothing was suppressed");

        let audit = Audit::open(&path, false).unwrap();
        for _ in 0..=MAX_LINES_PER_RUN {
            audit.record("fs", "read", "x", Decision::Denied, "no grant");
        }
        audit.finish();
        audit.finish();
        drop(audit);
        let lines = lines(&path);
        assert_eq!(lines.len() as u64, 1 + MAX_LINES_PER_RUN + 1, "the cap is per run; one summary");
        assert_eq!(lines.last().unwrap()["denied"], 1);
    }

    #[test]
    fn a_symlink_at_the_audit_path_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "precious\n").unwrap();
        let path = dir.path().join("audit.jsonl");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let err = Audit::open(&path, false).err().expect("refused");
        let text = format!("{err:#}");
        assert!(text.contains(&path.display().to_string()) && text.contains("symbolic link"), "{text}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
        // A dangling link is refused too (it would otherwise create its target).
        let dangling = dir.path().join("dangling.jsonl");
        std::os::unix::fs::symlink(dir.path().join("created"), &dangling).unwrap();
        assert!(Audit::open(&dangling, false).is_err());
        assert!(!dir.path().join("created").exists());
    }

    #[test]
    fn a_fifo_at_the_audit_path_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        rustix::fs::mknodat(rustix::fs::CWD, &path, rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o600), 0).unwrap();
        let err = Audit::open(&path, false).err().expect("refused");
        assert!(format!("{err:#}").contains(&path.display().to_string()), "{err:#}");
    }
}
