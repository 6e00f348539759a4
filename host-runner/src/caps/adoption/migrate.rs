//! Moving a bash-era sibling's provider keys to where current OpenClaw reads them: each
//! key of its legacy `agents/main/agent/auth.json` becomes a line of its `.env` (a key
//! the `.env` already has wins), written 0600 and atomically; then the legacy files go:
//! `auth.json`, and the copy of the lead's `auth-profiles.json` the original skill made,
//! which holds the lead's profiles and blocks the providers it names until migrated.
//! The snapshot keeps both until the adoption commits. Keys are registered for
//! scrubbing and never appear in what is returned. A hard-linked file (another name of it
//! may be the lead's) is refused, naming it.

use super::survey::LEGACY_PROFILES;
use crate::lead::credentials::{LEGACY_AUTH, PROVIDERS, check_env, env_line};
use crate::sys::secret::{self, Secret};
use cap_std::fs::Dir;
use std::path::Path;

/// The largest credential file read.
const MAX_FILE: u64 = 1 << 20;

/// Migrates the credentials of the home `dir` (shown as `shown`); returns what was done.
pub fn migrate(dir: &Dir, shown: &str) -> Result<Vec<String>, String> {
    let read = |relative: &str| match crate::sys::safe_open::read_sole(dir, Path::new(relative), MAX_FILE) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{shown}/{relative} cannot be read safely: {e}")),
    };
    let env = read(".env")?.unwrap_or_default();
    check_env(&env).map_err(|why| format!("{shown}/.env {why}"))?;
    let mut text = String::from_utf8(env).expect("check_env accepts UTF-8 only");
    // The keys its `.env` holds already are secrets as much as the ones moved into it.
    crate::lead::lead_env::parse(&text).into_values().filter_map(Secret::new).for_each(|key| secret::register(&key));
    let mut done = Vec::new();
    if let Some(bytes) = read(LEGACY_AUTH)? {
        let auth: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| format!("{shown}/{LEGACY_AUTH} is not JSON (line {})", e.line()))?;
        for (provider, var) in PROVIDERS {
            let Some(key) = auth[provider]["key"].as_str().and_then(Secret::new) else { continue };
            secret::register(&key);
            if text.lines().any(|l| l.trim().split_once('=').is_some_and(|(n, _)| n.trim() == var)) {
                done.push(format!("the {provider} key of {LEGACY_AUTH} was not moved: .env sets {var} already, and current OpenClaw reads that one"));
                continue;
            }
            let line = env_line(provider, &key).map_err(|e| format!("{shown}/{LEGACY_AUTH}: {e}"))?;
            if text.is_empty() {
                text.push_str("# Written by agent-provisioner (adopted from the original skill's auth.json). Provider keys for this agent.\n");
            } else if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&line);
            done.push(format!("the {provider} key moved from {LEGACY_AUTH} to .env ({var}, 0600)"));
        }
    }
    if !text.is_empty() {
        crate::sys::atomic::write(dir, Path::new(".env"), text.as_bytes(), 0o600).map_err(|e| format!("writing {shown}/.env: {e}"))?;
    }
    for legacy in [LEGACY_AUTH, LEGACY_PROFILES] {
        match dir.remove_file(legacy) {
            Ok(()) => done.push(format!("{legacy} removed (legacy; current OpenClaw reads .env)")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("removing {shown}/{legacy}: {e}")),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn home() -> (tempfile::TempDir, Dir) {
        let temp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(temp.path().join("agents/main/agent")).unwrap();
        let dir = Dir::open_ambient_dir(temp.path(), cap_std::ambient_authority()).unwrap();
        (temp, dir)
    }

    #[test]
    fn legacy_keys_move_to_env_and_the_legacy_files_go() {
        let (temp, dir) = home();
        std::fs::write(temp.path().join(LEGACY_AUTH), br#"{"anthropic": {"type": "api_key", "key": "sk-ant-legacy-1"}}"#).unwrap();
        std::fs::write(temp.path().join(LEGACY_PROFILES), br#"{"profiles": {"anthropic:lead": {"provider": "anthropic", "key": "sk-lead"}}}"#).unwrap();
        let done = migrate(&dir, "~/.openclaw-nova").unwrap();
        let env = std::fs::read_to_string(temp.path().join(".env")).unwrap();
        assert!(env.ends_with("ANTHROPIC_API_KEY=\"sk-ant-legacy-1\"\n"), "{env}");
        assert!(!env.contains("sk-lead"), "the lead's profiles are not passed on");
        assert_eq!(std::fs::metadata(temp.path().join(".env")).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!temp.path().join(LEGACY_AUTH).exists() && !temp.path().join(LEGACY_PROFILES).exists());
        assert_eq!(done.len(), 3, "{done:?}");
        assert!(done.iter().all(|d| !d.contains("sk-")), "{done:?}");
    }

    #[test]
    fn a_key_env_has_already_wins_and_a_bad_key_changes_nothing() {
        let (temp, dir) = home();
        std::fs::write(temp.path().join(".env"), "OPENAI_API_KEY=sk-openai\nANTHROPIC_API_KEY=sk-current\n").unwrap();
        std::fs::write(temp.path().join(LEGACY_AUTH), br#"{"anthropic": {"key": "sk-old-key"}}"#).unwrap();
        migrate(&dir, "h").unwrap();
        assert_eq!(std::fs::read_to_string(temp.path().join(".env")).unwrap(), "OPENAI_API_KEY=sk-openai\nANTHROPIC_API_KEY=sk-current\n");
        assert_eq!(secret::scrub("x sk-current y sk-old-key"), "x [redacted] y [redacted]", "the keys .env had are scrubbed too");

        let (temp, dir) = home();
        std::fs::write(temp.path().join(LEGACY_AUTH), br#"{"anthropic": {"key": "sk\"\nNODE_OPTIONS=--require=/tmp/x"}}"#).unwrap();
        let err = migrate(&dir, "h").unwrap_err();
        assert!(err.contains("not a plain key") && !err.contains("NODE_OPTIONS"), "{err}");
        assert!(!temp.path().join(".env").exists() && temp.path().join(LEGACY_AUTH).exists(), "nothing changed");
    }

    #[test]
    fn a_hard_linked_legacy_file_is_refused_and_nothing_changes() {
        let (temp, dir) = home();
        let lead = tempfile::tempdir().unwrap();
        std::fs::write(lead.path().join("auth.json"), br#"{"anthropic": {"key": "sk-ant-lead-own"}}"#).unwrap();
        std::fs::hard_link(lead.path().join("auth.json"), temp.path().join(LEGACY_AUTH)).unwrap();
        let err = migrate(&dir, "h").unwrap_err();
        assert!(err.contains("auth.json has 2 hard links") && !err.contains("sk-ant"), "{err}");
        assert!(!temp.path().join(".env").exists() && temp.path().join(LEGACY_AUTH).exists(), "nothing changed");
    }
}
