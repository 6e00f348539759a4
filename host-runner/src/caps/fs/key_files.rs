//! Files the component never reads, in any grant (sibling homes, adopted homes, the
//! provisioner's state, archives, logs), wherever the host or a sibling put them:
//! - credential files by name: `.env` (and `.env.*`) anywhere, `auth*.json` anywhere under
//!   `agents/<id>/agent/`, anything under `credentials/` — names compared the way a
//!   case-insensitive file system compares them, and only plain ASCII names read at all;
//! - the bytes of archives: a sibling's archive holds its `.env`, compressed where no scan
//!   sees the key; the host lists and restores archives itself, and the component reads
//!   only the member records beside them.
//!
//! Where the bytes are read, [`crate::caps::fs`] also refuses a file with more than one hard
//! link ([`crate::sys::safe_open::open_sole`]) and a file holding a registered secret
//! ([`crate::sys::secret::contains_registered`]).

use crate::caps::fs::grants::{Kind, Resolved};
use crate::caps::fs::sibling_files::is_plain;
use std::path::Component;

/// The suffix of the member records deprovision keeps beside each archive.
const MEMBER_RECORD: &str = ".member.json";

/// Refuses reading `r` when it is a credential file or an archive; the message names the
/// rule.
pub fn check_read(r: &Resolved) -> Result<(), String> {
    let mut parts = Vec::new();
    for component in r.relative.components().filter(|c| matches!(c, Component::Normal(_))) {
        match component.as_os_str().to_str().filter(|n| is_plain(n)) {
            Some(name) => parts.push(name.to_ascii_lowercase()),
            None => return Err(format!("{}: names the host reads for the component are plain ASCII ([A-Za-z0-9._-]); a file system may fold another name onto a credential file", r.relative.display())),
        }
    }
    let shown = r.root.join(&r.relative);
    if let Some(why) = credential(&parts) {
        return Err(format!("{}: {why}; credential files are read only by the host, never handed to the component", shown.display()));
    }
    let name = parts.last().map(String::as_str).unwrap_or("");
    if r.kind == Kind::Archives && !(name.ends_with(MEMBER_RECORD) && name.len() > MEMBER_RECORD.len()) {
        return Err(format!(
            "{}: of the archives the component reads only member records (*{MEMBER_RECORD}); an archive holds a sibling's .env, so the host lists and restores archives itself (list-archive, restore-archive)",
            shown.display()
        ));
    }
    Ok(())
}

/// Which credential rule the lower-cased `parts` fall under, if any.
fn credential(parts: &[String]) -> Option<&'static str> {
    let name = parts.last()?;
    if parts.iter().any(|p| p == ".env" || p.starts_with(".env.")) {
        return Some("a .env file holds keys");
    }
    if parts[0] == "credentials" {
        return Some("credentials/ holds keys");
    }
    let under_agent_dir = parts.len() >= 4 && parts[0] == "agents" && parts[2] == "agent";
    if under_agent_dir && name.starts_with("auth") && name.ends_with(".json") {
        return Some("agents/*/agent/auth*.json holds keys");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::fs::grants::{GrantConfig, Grants};
    use crate::record::state::HostState;
    use std::path::Path;
    use std::sync::Arc;

    fn grants() -> Grants {
        let home = Path::new("/home/u");
        let state = HostState::in_memory();
        state.claim_home("nova", &home.join(".openclaw")).unwrap();
        Grants::new(GrantConfig { home: home.into(), lead_home: home.join(".openclaw"), lead_handles: vec![], state: Arc::new(state) }).unwrap()
    }

    fn read(path: &str) -> Result<(), String> {
        check_read(&grants().resolve(path).unwrap())
    }

    #[test]
    fn credential_files_are_refused_in_every_grant_whatever_their_case() {
        for path in [
            "/home/u/.openclaw-nova/.env",
            "/home/u/.openclaw-nova/.ENV",
            "/home/u/.openclaw-nova/.env.bak",
            "/home/u/.openclaw-nova/workspace/.env",
            "/home/u/.openclaw-nova/agents/main/agent/auth.json",
            "/home/u/.openclaw-nova/agents/main/agent/auth-profiles.json",
            "/home/u/.openclaw-nova/Agents/Main/Agent/AUTH-STATE.JSON",
            "/home/u/.openclaw-nova/credentials/oauth.json",
            "/home/u/.openclaw-nova/CREDENTIALS/whatsapp/creds.json",
            "/home/u/.openclaw/agent-provisioner/.env",
            "/home/u/.openclaw-archives/.env",
        ] {
            let err = read(path).unwrap_err();
            assert!(err.contains("credential files are read only by the host"), "{path}: {err}");
        }
    }

    #[test]
    fn archives_are_never_read_but_member_records_are() {
        for path in ["/home/u/.openclaw-archives/nova-20260101-000000.tar.gz", "/home/u/.openclaw-archives/x.json", "/home/u/.openclaw-archives/.member.json"] {
            assert!(read(path).unwrap_err().contains("only member records"), "{path}");
        }
        assert_eq!(read("/home/u/.openclaw-archives/nova-20260101-000000.member.json"), Ok(()));
    }

    #[test]
    fn what_the_guest_reads_stays_readable() {
        for path in [
            "/home/u/.openclaw-nova/openclaw.json",
            "/home/u/.openclaw-nova/workspace/AGENTS.md",
            "/home/u/.openclaw-nova/agents/main/agent/models-notes.md",
            "/home/u/.openclaw/agent-provisioner/family.json",
            "/home/u/.openclaw/agent-provisioner/journal/nova.json",
            "/home/u/.openclaw/workspace/USER.md",
            "/home/u/.local/state/agent-provisioner/logs/nova/stdout.log",
        ] {
            assert_eq!(read(path), Ok(()), "{path}");
        }
        assert!(read("/home/u/.openclaw-nova/\u{ff0e}env").unwrap_err().contains("plain ASCII"));
    }
}
