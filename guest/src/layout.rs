//! Where things live: the paths of a sibling's OpenClaw home and of the lead's.

/// Joins an absolute directory and a relative path.
pub fn join(dir: &str, relative: &str) -> String {
    format!("{}/{}", dir.trim_end_matches('/'), relative)
}

/// The files and directories of a sibling's OpenClaw home (`$OC_HOME`), and where the
/// host's service manager writes its logs. Derived from the handle alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiblingLayout {
    pub root: String,
    /// `openclaw.json`: gateway config, holds the sibling's Sesame key and gateway token.
    pub config: String,
    /// `.env`: provider keys (current OpenClaw), written by the host.
    pub env_file: String,
    /// `agents/main/agent`: the legacy credential directory.
    pub agent_dir: String,
    /// The legacy credential file, written by the host.
    pub auth_json: String,
    /// `extensions/sesame`, which the host copies from the lead.
    pub extensions_sesame: String,
    pub workspace: String,
    pub memory: String,
    /// The gateway's logs, in a directory the host owns outside the home.
    pub stdout_log: String,
    pub stderr_log: String,
}

impl SiblingLayout {
    /// The layout of `<home>/.openclaw-<handle>`.
    pub fn new(home: &str, handle: &str) -> Self {
        let root = naming::sibling_home(home, handle);
        let at = |rel: &str| join(&root, rel);
        let logs = naming::log_dir(home, handle);
        Self {
            config: at("openclaw.json"),
            env_file: at(".env"),
            agent_dir: at("agents/main/agent"),
            auth_json: at("agents/main/agent/auth.json"),
            extensions_sesame: at("extensions/sesame"),
            workspace: at("workspace"),
            memory: at("workspace/memory"),
            stdout_log: join(&logs, naming::LOG_FILES[0]),
            stderr_log: join(&logs, naming::LOG_FILES[1]),
            root,
        }
    }
}

/// The lead's OpenClaw home: of it the guest may read only the workspace notes, and
/// write only the provisioner's own directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeadLayout {
    pub root: String,
    pub workspace: String,
    pub user_md: String,
    pub memory_md: String,
    pub identity_md: String,
    pub heartbeat_md: String,
    pub tools_md: String,
    /// `agent-provisioner/`: the registry and journals (writable).
    pub provisioner_dir: String,
    /// `agent-provisioner/family.json`.
    pub registry: String,
}

impl LeadLayout {
    pub fn new(root: &str) -> Self {
        let root = root.trim_end_matches('/').to_string();
        let at = |rel: &str| join(&root, rel);
        Self {
            workspace: at("workspace"),
            user_md: at("workspace/USER.md"),
            memory_md: at("workspace/MEMORY.md"),
            identity_md: at("workspace/IDENTITY.md"),
            heartbeat_md: at("workspace/HEARTBEAT.md"),
            tools_md: at("workspace/TOOLS.md"),
            provisioner_dir: at("agent-provisioner"),
            registry: at("agent-provisioner/family.json"),
            root,
        }
    }
}

/// `~/.openclaw-archives`.
pub fn archives_dir(home: &str) -> String {
    join(home, ".openclaw-archives")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sibling_paths() {
        let l = SiblingLayout::new("/home/u/", "nova");
        assert_eq!(l.root, "/home/u/.openclaw-nova");
        assert_eq!(l.auth_json, "/home/u/.openclaw-nova/agents/main/agent/auth.json");
        assert_eq!(l.stderr_log, "/home/u/.local/state/agent-provisioner/logs/nova/stderr.log");
        assert_eq!(archives_dir("/home/u"), "/home/u/.openclaw-archives");
    }
}
