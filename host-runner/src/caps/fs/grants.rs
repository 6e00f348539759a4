//! The file grants: which paths the guest may touch, and how. Deny by default.
//!
//! A guest path is matched lexically to one grant, then every access happens relative to
//! a directory capability opened at the grant's root (`cap_std::fs::Dir`), so neither
//! `..` nor a symlink can lead outside it. Grants:
//! 1. the lead's home: only its workspace notes ([`LEAD_READABLE`]), read-only — never
//!    its config, `.env`, credentials, auth profiles or sessions, which the host reads;
//! 2. `<lead home>/agent-provisioner/`: read-write (registry, journals);
//! 3. sibling homes `<home>/.openclaw-<handle>`: read-write, for handles the naming rules
//!    allow (never reserved, never the lead's), and only homes the host's own record says
//!    it created for this lead, or that do not exist yet (creating one records it); any
//!    other existing `~/.openclaw-*` (another OpenClaw profile) is refused, as is a home
//!    that turns out to be the lead's own directory;
//! 4. `<home>/.openclaw-archives`: create-only (new archives and member records; the
//!    `fs` capability refuses replacing or removing what is there); of it the component
//!    reads only member records ([`crate::caps::fs::key_files`]);
//! 5. the gateways' logs, `<home>/.local/state/agent-provisioner/logs/`: read-only.
//!
//! A command that changes nothing ([`Access::ReadOnly`]) gets every grant read-only.

use crate::caps::access::Access;
use crate::record::state::HostState;
use cap_fs_ext::DirExt as _;
use cap_std::ambient_authority;
use cap_std::fs::{Dir, MetadataExt as _};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// The longest path the guest may pass.
const MAX_PATH: usize = 4096;

/// The only files of the lead's home the guest may read: the workspace notes the new
/// sibling's workspace is filled from.
pub const LEAD_READABLE: &[&str] =
    &["workspace/IDENTITY.md", "workspace/USER.md", "workspace/MEMORY.md", "workspace/HEARTBEAT.md", "workspace/TOOLS.md"];

/// Why a path has no grant. Each message names the path and, where it helps, the grants.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("a path of {0} bytes is longer than {MAX_PATH}")]
    TooLong(usize),
    #[error("{0:?} contains a NUL byte")]
    Nul(String),
    #[error("{0}: only absolute paths are accepted")]
    Relative(String),
    #[error("{0}: `.` and `..` components are not accepted")]
    DotComponent(String),
    #[error("{}: of the lead's home only its workspace notes are granted ({}); its config, keys, credentials and sessions are the host's", .0.display(), LEAD_READABLE.join(", "))]
    LeadHomeFile(PathBuf),
    #[error("{}: `{handle}` is not a sibling handle: it {why}", root.display())]
    NotSibling { root: PathBuf, handle: String, why: naming::HandleError },
    #[error("{} exists and is not a sibling home this host created for the lead {} (another OpenClaw profile, or made by hand); not touching it", root.display(), lead_home.display())]
    ForeignHome { root: PathBuf, lead_home: PathBuf },
    #[error("{}: outside every grant (grants: {summary})", path.display())]
    Outside { path: PathBuf, summary: String },
}

/// Why the host refuses a grant's root directory it was about to open.
#[derive(Debug, thiserror::Error)]
pub enum RootRefused {
    #[error("appeared while it was being created; not taking it over")]
    Appeared,
    #[error("is the lead's own home (same device and inode)")]
    LeadHome,
}

/// What the grants are derived from.
#[derive(Clone)]
pub struct GrantConfig {
    /// The user's home (`--home`).
    pub home: PathBuf,
    /// The lead's OpenClaw home (`--lead-home`): read-only except `agent-provisioner/`.
    pub lead_home: PathBuf,
    /// Every handle the lead goes by ([`naming::lead_handles`]).
    pub lead_handles: Vec<String>,
    /// The host's record of the sibling homes it made.
    pub state: Arc<HostState>,
}

/// Which grant a path falls under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    LeadHome,
    ProvisionerState,
    /// A sibling home, with its handle.
    SiblingHome(String),
    Archives,
    ServiceLogs,
}

/// A path matched to its grant.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub kind: Kind,
    /// The grant's root directory.
    pub root: PathBuf,
    /// The path below the root (empty for the root itself).
    pub relative: PathBuf,
    pub writable: bool,
    /// A sibling home not yet in the host's record: creating it records it first.
    pub unclaimed: bool,
    /// The lead home's device and inode, which no sibling home may be.
    lead_identity: Option<(u64, u64)>,
    /// What the command may change (a read-only one makes every grant read-only).
    access: Access,
}

impl Resolved {
    /// The grant in words, for audit lines and messages.
    pub fn describe(&self) -> String {
        let what = match self.kind {
            Kind::LeadHome => "lead home",
            Kind::ProvisionerState => "provisioner state",
            Kind::SiblingHome(_) => "sibling home",
            Kind::Archives => "archives",
            Kind::ServiceLogs => "gateway logs",
        };
        let access = match (self.writable, self.access) {
            (true, _) if self.kind == Kind::Archives => "create-only".to_string(),
            (true, _) => "read-write".to_string(),
            (false, Access::ReadOnly(command)) => format!("read-only: `{command}` changes nothing"),
            (false, Access::ReadWrite) => "read-only".to_string(),
        };
        format!("{what} {} ({access})", self.root.display())
    }

    /// Whether the root is a directory the guest may create (and is opened without
    /// following a symlink at the root).
    pub fn creatable_root(&self) -> bool {
        matches!(self.kind, Kind::ProvisionerState | Kind::SiblingHome(_) | Kind::Archives)
    }

    /// Opens the grant's root as a directory capability. Creatable roots are opened from
    /// their parent without following a symlink at the root, and created first when
    /// `create` is set — exclusively for an unclaimed sibling home, so a directory that
    /// appeared since the path was resolved is never taken over; a sibling home that is
    /// the lead's own directory is refused.
    pub fn open_root(&self, create: Option<u32>) -> io::Result<Dir> {
        if !self.creatable_root() {
            return Dir::open_ambient_dir(&self.root, ambient_authority());
        }
        let parent = self.open_root_parent()?;
        let name = self.root.file_name().expect("roots have names");
        if let Some(mode) = create {
            match create_dir_exact(&parent, Path::new(name), mode) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && self.unclaimed => {
                    return Err(io::Error::new(io::ErrorKind::PermissionDenied, RootRefused::Appeared));
                }
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
        }
        let dir = parent.open_dir_nofollow(name)?;
        if matches!(self.kind, Kind::SiblingHome(_)) && self.lead_identity.is_some() {
            let m = dir.dir_metadata()?;
            if Some((m.dev(), m.ino())) == self.lead_identity {
                return Err(io::Error::new(io::ErrorKind::PermissionDenied, RootRefused::LeadHome));
            }
        }
        Ok(dir)
    }

    /// The parent of the root, for removing a sibling home itself.
    pub fn open_root_parent(&self) -> io::Result<Dir> {
        Dir::open_ambient_dir(self.root.parent().expect("roots have parents"), ambient_authority())
    }
}

/// Creates one directory with exactly `mode` (the umask does not narrow it).
pub fn create_dir_exact(dir: &Dir, relative: &Path, mode: u32) -> io::Result<()> {
    use cap_std::fs::{DirBuilder, DirBuilderExt as _, Permissions, PermissionsExt as _};
    let mut builder = DirBuilder::new();
    builder.mode(mode);
    dir.create_dir_with(relative, &builder)?;
    dir.set_permissions(relative, Permissions::from_mode(mode))
}

/// The guest's file grants.
#[derive(Clone)]
pub struct Grants {
    home: PathBuf,
    lead_home: PathBuf,
    lead_handles: Vec<String>,
    lead_identity: Option<(u64, u64)>,
    provisioner: PathBuf,
    archives: PathBuf,
    logs: PathBuf,
    state: Arc<HostState>,
    access: Access,
}

impl Grants {
    pub fn new(config: GrantConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(config.home.is_absolute(), "--home {} is not absolute", config.home.display());
        anyhow::ensure!(config.lead_home.is_absolute(), "--lead-home {} is not absolute", config.lead_home.display());
        let lead_identity = std::fs::metadata(&config.lead_home).ok().map(|m| {
            use std::os::unix::fs::MetadataExt as _;
            (m.dev(), m.ino())
        });
        Ok(Self {
            provisioner: config.lead_home.join("agent-provisioner"),
            archives: config.home.join(".openclaw-archives"),
            logs: PathBuf::from(naming::host_state_dir(&config.home.display().to_string())).join("logs"),
            home: config.home,
            lead_home: config.lead_home,
            lead_handles: config.lead_handles,
            lead_identity,
            state: config.state,
            access: Access::ReadWrite,
        })
    }

    /// The grants of a command with `access`: every one read-only for a read-only command.
    pub fn with_access(self, access: Access) -> Self {
        Self { access, ..self }
    }

    /// What the command may change.
    pub fn access(&self) -> Access {
        self.access
    }

    /// How a grant that the component may change is shown: `usual`, or read-only for a
    /// read-only command.
    fn shown(&self, usual: &str) -> String {
        match self.access {
            Access::ReadOnly(command) => format!("read-only: `{command}` changes nothing"),
            Access::ReadWrite => usual.to_string(),
        }
    }

    /// The host's record of sibling homes.
    pub fn state(&self) -> &HostState {
        &self.state
    }

    pub fn lead_home(&self) -> &Path {
        &self.lead_home
    }

    /// Every handle the lead goes by.
    pub fn lead_handles(&self) -> &[String] {
        &self.lead_handles
    }

    /// The lead's home as a directory capability, for the host's own copy of allowlisted
    /// plugins and skills (never handed to the guest).
    pub fn open_lead_home(&self) -> io::Result<Dir> {
        Dir::open_ambient_dir(&self.lead_home, ambient_authority())
    }

    /// The home of the sibling `handle`.
    pub fn sibling_home(&self, handle: &str) -> PathBuf {
        self.home.join(naming::home_name(handle))
    }

    /// One line per grant, for the operator.
    pub fn describe(&self) -> Vec<String> {
        vec![
            format!("files: {}/{{{}}} (the lead's workspace notes, read-only)", self.lead_home.display(), LEAD_READABLE.join(",")),
            format!("files: {} (provisioner state, {})", self.provisioner.display(), self.shown("read-write")),
            format!(
                "files: {}/.openclaw-<handle> (sibling homes this host created for this lead, or new ones; {}; the component creates only: {}; credential files, archives and hard-linked files are never read)",
                self.home.display(),
                self.shown("read-write"),
                crate::caps::fs::sibling_files::described()
            ),
            format!(
                "files: {} (archives, {})",
                self.archives.display(),
                self.shown("create-only: new archives and member records, never replaced or removed; of them only member records are read back")
            ),
            format!("files: {} (gateway logs, read-only)", self.logs.display()),
        ]
    }

    fn summary(&self) -> String {
        self.describe().iter().map(|l| l.trim_start_matches("files: ")).collect::<Vec<_>>().join("; ")
    }

    /// Matches `path` to its grant, or explains the denial (naming the grants).
    pub fn resolve(&self, path: &str) -> Result<Resolved, GrantError> {
        if path.len() > MAX_PATH {
            return Err(GrantError::TooLong(path.len()));
        }
        if path.contains('\0') {
            return Err(GrantError::Nul(path.to_string()));
        }
        if !path.starts_with('/') {
            return Err(GrantError::Relative(path.to_string()));
        }
        if path.split('/').any(|c| c == "." || c == "..") {
            return Err(GrantError::DotComponent(path.to_string()));
        }
        let path = Path::new(path);
        let under = |root: &Path| path.strip_prefix(root).ok().map(Path::to_path_buf);
        let grant = |kind, root: &Path, relative: PathBuf, writable| Ok(Resolved {
            kind,
            root: root.to_path_buf(),
            relative,
            writable: writable && !self.access.is_read_only(),
            unclaimed: false,
            lead_identity: self.lead_identity,
            access: self.access,
        });
        if let Some(relative) = under(&self.provisioner) {
            return grant(Kind::ProvisionerState, &self.provisioner, relative, true);
        }
        if let Some(relative) = under(&self.lead_home) {
            if !LEAD_READABLE.iter().any(|r| relative == Path::new(r)) {
                return Err(GrantError::LeadHomeFile(path.to_path_buf()));
            }
            return grant(Kind::LeadHome, &self.lead_home, relative, false);
        }
        if let Some(relative) = under(&self.archives) {
            return grant(Kind::Archives, &self.archives, relative, true);
        }
        if let Some(relative) = under(&self.logs) {
            return grant(Kind::ServiceLogs, &self.logs, relative, false);
        }
        if let Some(rest) = under(&self.home) {
            let mut components = rest.components();
            if let Some(Component::Normal(first)) = components.next() {
                let name = first.to_str().unwrap_or("");
                if let Some(handle) = name.strip_prefix(".openclaw-") {
                    let root = self.home.join(name);
                    let mut resolved = self.sibling(handle, &root)?;
                    resolved.relative = components.as_path().to_path_buf();
                    return Ok(resolved);
                }
            }
        }
        Err(GrantError::Outside { path: path.to_path_buf(), summary: self.summary() })
    }

    /// The grant of the sibling home `root` of `handle`, or why there is none.
    fn sibling(&self, handle: &str, root: &Path) -> Result<Resolved, GrantError> {
        if let Err(why) = naming::check_sibling(handle, &self.lead_handles) {
            return Err(GrantError::NotSibling { root: root.to_path_buf(), handle: handle.to_string(), why });
        }
        let unclaimed = self.state.sibling(handle, &self.lead_home).is_none();
        if unclaimed {
            match std::fs::symlink_metadata(root) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                _ => return Err(GrantError::ForeignHome { root: root.to_path_buf(), lead_home: self.lead_home.clone() }),
            }
        }
        Ok(Resolved {
            kind: Kind::SiblingHome(handle.to_string()),
            root: root.to_path_buf(),
            relative: PathBuf::new(),
            writable: !self.access.is_read_only(),
            unclaimed,
            lead_identity: self.lead_identity,
            access: self.access,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants_at(home: &Path, lead_home: &str, state: HostState) -> Grants {
        Grants::new(GrantConfig {
            home: home.into(),
            lead_home: home.join(lead_home),
            lead_handles: naming::lead_handles(&home.join(lead_home).display().to_string(), Some("chief")),
            state: Arc::new(state),
        })
        .unwrap()
    }

    fn grants() -> Grants {
        grants_at(Path::new("/home/u"), ".openclaw", HostState::in_memory())
    }

    fn kind(path: &str) -> Result<(Kind, String, bool), String> {
        grants().resolve(path).map(|r| (r.kind, r.relative.display().to_string(), r.writable)).map_err(|e| e.to_string())
    }

    #[test]
    fn paths_match_their_grant() {
        let sibling = Kind::SiblingHome("nova".into());
        assert_eq!(kind("/home/u/.openclaw/workspace/USER.md"), Ok((Kind::LeadHome, "workspace/USER.md".into(), false)));
        assert_eq!(kind("/home/u/.openclaw/agent-provisioner/family.json"), Ok((Kind::ProvisionerState, "family.json".into(), true)));
        assert_eq!(kind("/home/u/.openclaw-nova"), Ok((sibling.clone(), "".into(), true)));
        assert_eq!(kind("/home/u/.openclaw-nova/workspace/x"), Ok((sibling.clone(), "workspace/x".into(), true)));
        assert_eq!(kind("/home/u/.openclaw-archives/n.tar.gz"), Ok((Kind::Archives, "n.tar.gz".into(), true)));
        assert_eq!(
            kind("/home/u/.local/state/agent-provisioner/logs/nova/stdout.log"),
            Ok((Kind::ServiceLogs, "nova/stdout.log".into(), false))
        );
        assert_eq!(kind("/home/u//.openclaw-nova//x"), Ok((sibling, "x".into(), true)));
    }

    #[test]
    fn everything_else_is_denied_with_the_grants_named() {
        for (path, needle) in [
            ("/home/u/.ssh/authorized_keys", "outside every grant"),
            ("/home/u", "outside every grant"),
            ("/etc/passwd", "sibling homes"),
            ("/home/u/.openclawx/a", "outside every grant"),
            ("/home/u/.openclaw-UPPER/a", "not a sibling handle"),
            ("/home/u/.openclaw-a.b", "not a sibling handle"),
            ("/home/u/.openclaw-dev/openclaw.json", "reserved"),
            ("/home/u/.openclaw-default", "reserved"),
            ("/home/u/.openclaw-gateway-work/x", "reserved"),
            ("/home/u/.openclaw-chief/x", "lead's own handle"),
            ("/home/u/.local/state/agent-provisioner/siblings.json", "outside every grant"),
            ("/home/u/.config/systemd/user/openclaw-sibling-nova.service", "outside every grant"),
            ("/home/u/.openclaw-nova/../.ssh/x", "`..`"),
            ("/home/u/.openclaw-nova/./x", "`.`"),
            ("relative/path", "absolute"),
            ("/home/u/.openclaw-nova/a\0b", "NUL"),
            ("/home/u/.openclaw/openclaw.json", "only its workspace notes"),
            ("/home/u/.openclaw/.env", "only its workspace notes"),
            ("/home/u/.openclaw/agents/main/agent/auth-profiles.json", "only its workspace notes"),
            ("/home/u/.openclaw/credentials/x.json", "only its workspace notes"),
            ("/home/u/.openclaw/agents/main/sessions/s.jsonl", "only its workspace notes"),
            ("/home/u/.openclaw/workspace/SOUL.md", "only its workspace notes"),
            ("/home/u/.openclaw", "only its workspace notes"),
        ] {
            let err = grants().resolve(path).unwrap_err().to_string();
            assert!(err.contains(needle), "{path}: {err}");
        }
        assert!(grants().resolve(&format!("/home/u/.openclaw-nova/{}", "a".repeat(5000))).unwrap_err().to_string().contains("longer"));
    }

    #[test]
    fn a_read_only_command_gets_every_grant_read_only() {
        let g = grants().with_access(Access::ReadOnly("list"));
        for path in ["/home/u/.openclaw/agent-provisioner/family.json", "/home/u/.openclaw-nova/x", "/home/u/.openclaw-archives/n.tar.gz"] {
            let r = g.resolve(path).unwrap();
            assert!(!r.writable, "{path}");
            assert!(r.describe().ends_with("(read-only: `list` changes nothing)"), "{}", r.describe());
        }
        let lines = g.describe();
        assert!(lines.iter().filter(|l| l.contains("read-only: `list` changes nothing")).count() == 3, "{lines:#?}");
        assert!(!lines.iter().any(|l| l.contains("read-write") || l.contains("create-only")), "{lines:#?}");
        assert!(grants().describe().iter().any(|l| l.contains("archives, create-only")));
    }

    #[test]
    fn a_lead_in_a_profile_home_is_not_a_sibling() {
        let g = grants_at(Path::new("/h"), ".openclaw-atlas", HostState::in_memory());
        let r = g.resolve("/h/.openclaw-atlas/workspace/USER.md").unwrap();
        assert_eq!((r.kind, r.writable), (Kind::LeadHome, false));
        assert_eq!(g.resolve("/h/.openclaw-nova").unwrap().kind, Kind::SiblingHome("nova".into()));
    }

    #[test]
    fn existing_homes_are_granted_only_when_the_host_made_them_for_this_lead() {
        let temp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(temp.path().join(".openclaw")).unwrap();
        std::fs::create_dir_all(temp.path().join(".openclaw-work")).unwrap();
        std::fs::create_dir_all(temp.path().join(".openclaw-nova")).unwrap();
        let state = HostState::in_memory();
        state.claim_home("nova", &temp.path().join(".openclaw")).unwrap();
        state.claim_home("work", &temp.path().join(".openclaw-other-lead")).unwrap();
        let g = grants_at(temp.path(), ".openclaw", state);
        let home = temp.path().display();
        assert!(!g.resolve(&format!("{home}/.openclaw-nova/x")).unwrap().unclaimed);
        let err = g.resolve(&format!("{home}/.openclaw-work/openclaw.json")).unwrap_err().to_string();
        assert!(err.contains("another OpenClaw profile"), "{err}");
        assert!(g.resolve(&format!("{home}/.openclaw-new")).unwrap().unclaimed, "a home that does not exist yet");
    }

    #[test]
    fn a_home_that_appears_after_resolution_is_not_taken_over() {
        let temp = tempfile::tempdir().unwrap();
        let g = grants_at(temp.path(), ".openclaw", HostState::in_memory());
        let r = g.resolve(&format!("{}/.openclaw-race", temp.path().display())).unwrap();
        assert!(r.unclaimed);
        std::fs::create_dir(temp.path().join(".openclaw-race")).unwrap();
        let err = r.open_root(Some(0o700)).err().unwrap();
        assert!(err.to_string().contains("not taking it over"), "{err}");
    }

    #[test]
    fn a_sibling_home_that_is_the_lead_home_is_refused() {
        let temp = tempfile::tempdir().unwrap();
        let lead = temp.path().join(".openclaw");
        std::fs::create_dir_all(&lead).unwrap();
        let g = grants_at(temp.path(), ".openclaw", HostState::in_memory());
        let mut r = g.resolve(&format!("{}/.openclaw-nova", temp.path().display())).unwrap();
        r.root = lead;
        let err = r.open_root(None).err().unwrap();
        assert!(err.to_string().contains("lead's own home"), "{err}");
    }
}
