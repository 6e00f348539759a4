//! The file grants: which paths the guest may touch, and how.
//! (Stub: built by the fs-capability work.)

use std::path::PathBuf;

/// What the grants are derived from.
#[derive(Clone, Debug)]
pub struct GrantConfig {
    /// The user's home (`--home`).
    pub home: PathBuf,
    /// The lead's OpenClaw home (`--lead-home`): read-only except `agent-provisioner/`.
    pub lead_home: PathBuf,
    /// The service definition directory (LaunchAgents or systemd user units), read-only
    /// for the guest, restricted to `com.openclaw.*` / `openclaw-*` names.
    pub service_dir: Option<PathBuf>,
}

/// The guest's file grants.
pub struct Grants {
    pub config: GrantConfig,
}

impl Grants {
    pub fn new(config: GrantConfig) -> anyhow::Result<Self> {
        Ok(Self { config })
    }

    /// One line per grant, for the operator.
    pub fn describe(&self) -> Vec<String> {
        Vec::new()
    }
}
