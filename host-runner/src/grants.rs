//! The file grants: which paths the guest may touch, and how. Deny by default.
//!
//! A guest path is matched lexically to one grant, then every access happens relative to
//! a directory capability opened at the grant's root (`cap_std::fs::Dir`), so neither
//! `..` nor a symlink can lead outside it. Grants:
//! 1. the lead's home: read-only;
//! 2. `<lead home>/agent-provisioner/`: read-write (registry, journals);
//! 3. sibling homes `<home>/.openclaw-<handle>`: read-write, including the home itself;
//! 4. `<home>/.openclaw-archives`: read-write;
//! 5. the service definition directory: read-only, `com.openclaw.*`/`openclaw-*` only.

use cap_fs_ext::DirExt as _;
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use std::io;
use std::path::{Component, Path, PathBuf};

/// The longest path the guest may pass.
const MAX_PATH: usize = 4096;

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

/// Which grant a path falls under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    LeadHome,
    ProvisionerState,
    SiblingHome,
    Archives,
    ServiceDir,
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
}

impl Resolved {
    /// The grant in words, for audit lines and messages.
    pub fn describe(&self) -> String {
        let what = match self.kind {
            Kind::LeadHome => "lead home",
            Kind::ProvisionerState => "provisioner state",
            Kind::SiblingHome => "sibling home",
            Kind::Archives => "archives",
            Kind::ServiceDir => "service definitions",
        };
        let access = if self.writable { "read-write" } else { "read-only" };
        format!("{what} {} ({access})", self.root.display())
    }

    /// Opens the grant's root as a directory capability. Roots the guest may create
    /// (sibling homes, archives, the provisioner's state) are opened from their parent
    /// without following a symlink at the root, and created first when `create` is set.
    pub fn open_root(&self, create: Option<u32>) -> io::Result<Dir> {
        match self.kind {
            Kind::LeadHome | Kind::ServiceDir => Dir::open_ambient_dir(&self.root, ambient_authority()),
            Kind::ProvisionerState | Kind::SiblingHome | Kind::Archives => {
                let parent = Dir::open_ambient_dir(self.root.parent().expect("roots have parents"), ambient_authority())?;
                let name = self.root.file_name().expect("roots have names");
                if let Some(mode) = create {
                    match create_dir_exact(&parent, Path::new(name), mode) {
                        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                        _ => {}
                    }
                }
                parent.open_dir_nofollow(name)
            }
        }
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
#[derive(Clone, Debug)]
pub struct Grants {
    home: PathBuf,
    lead_home: PathBuf,
    state: PathBuf,
    archives: PathBuf,
    service_dir: Option<PathBuf>,
}

/// A sibling home's name: `[a-z0-9][a-z0-9_-]{0,31}`, not `archives`.
fn is_sibling_name(name: &str) -> bool {
    let ok_chars = name.chars().all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-' | '_'));
    ok_chars && (1..=32).contains(&name.len()) && name.starts_with(|c: char| c.is_ascii_alphanumeric()) && name != "archives"
}

/// Service definition names the guest may read.
pub fn is_service_name(name: &str) -> bool {
    name.starts_with("com.openclaw.") || name.starts_with("openclaw-")
}

impl Grants {
    pub fn new(config: GrantConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(config.home.is_absolute(), "--home {} is not absolute", config.home.display());
        anyhow::ensure!(config.lead_home.is_absolute(), "--lead-home {} is not absolute", config.lead_home.display());
        Ok(Self {
            state: config.lead_home.join("agent-provisioner"),
            archives: config.home.join(".openclaw-archives"),
            home: config.home,
            lead_home: config.lead_home,
            service_dir: config.service_dir,
        })
    }

    /// One line per grant, for the operator.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec![
            format!("files: {} (lead home, read-only)", self.lead_home.display()),
            format!("files: {} (provisioner state, read-write)", self.state.display()),
            format!("files: {}/.openclaw-<handle> (sibling homes, read-write)", self.home.display()),
            format!("files: {} (archives, read-write)", self.archives.display()),
        ];
        if let Some(dir) = &self.service_dir {
            lines.push(format!("files: {}/{{com.openclaw.*,openclaw-*}} (service definitions, read-only)", dir.display()));
        }
        lines
    }

    fn summary(&self) -> String {
        self.describe().iter().map(|l| l.trim_start_matches("files: ")).collect::<Vec<_>>().join("; ")
    }

    /// Matches `path` to its grant, or explains the denial (naming the grants).
    pub fn resolve(&self, path: &str) -> Result<Resolved, String> {
        if path.len() > MAX_PATH {
            return Err(format!("a path of {} bytes is longer than {MAX_PATH}", path.len()));
        }
        if path.contains('\0') {
            return Err(format!("{path:?} contains a NUL byte"));
        }
        if !path.starts_with('/') {
            return Err(format!("{path}: only absolute paths are accepted"));
        }
        if path.split('/').any(|c| c == "." || c == "..") {
            return Err(format!("{path}: `.` and `..` components are not accepted"));
        }
        let path = Path::new(path);
        let under = |root: &Path| path.strip_prefix(root).ok().map(Path::to_path_buf);
        let grant = |kind, root: &Path, relative: PathBuf, writable| Ok(Resolved { kind, root: root.to_path_buf(), relative, writable });
        if let Some(relative) = under(&self.state) {
            return grant(Kind::ProvisionerState, &self.state, relative, true);
        }
        if let Some(relative) = under(&self.lead_home) {
            return grant(Kind::LeadHome, &self.lead_home, relative, false);
        }
        if let Some(dir) = &self.service_dir
            && let Some(relative) = under(dir)
        {
            let first = relative.components().next().and_then(|c| c.as_os_str().to_str());
            return match first {
                None => grant(Kind::ServiceDir, dir, relative, false),
                Some(name) if is_service_name(name) => grant(Kind::ServiceDir, dir, relative, false),
                Some(name) => Err(format!(
                    "{}: {name} is not an OpenClaw service (grant: {}/{{com.openclaw.*,openclaw-*}}, read-only)",
                    path.display(),
                    dir.display()
                )),
            };
        }
        if let Some(relative) = under(&self.archives) {
            return grant(Kind::Archives, &self.archives, relative, true);
        }
        if let Some(rest) = under(&self.home) {
            let mut components = rest.components();
            if let Some(Component::Normal(first)) = components.next() {
                let name = first.to_str().unwrap_or("");
                if let Some(handle) = name.strip_prefix(".openclaw-") {
                    if is_sibling_name(handle) {
                        let root = self.home.join(name);
                        return grant(Kind::SiblingHome, &root, components.as_path().to_path_buf(), true);
                    }
                    return Err(format!(
                        "{}: `{handle}` is not a sibling handle (grant: {}/.openclaw-<handle>, handle [a-z0-9][a-z0-9_-]*)",
                        path.display(),
                        self.home.display()
                    ));
                }
            }
        }
        Err(format!("{}: outside every grant (grants: {})", path.display(), self.summary()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants() -> Grants {
        Grants::new(GrantConfig {
            home: "/home/u".into(),
            lead_home: "/home/u/.openclaw".into(),
            service_dir: Some("/home/u/.config/systemd/user".into()),
        })
        .unwrap()
    }

    fn kind(path: &str) -> Result<(Kind, String, bool), String> {
        grants().resolve(path).map(|r| (r.kind, r.relative.display().to_string(), r.writable))
    }

    #[test]
    fn paths_match_their_grant() {
        assert_eq!(kind("/home/u/.openclaw/workspace/USER.md"), Ok((Kind::LeadHome, "workspace/USER.md".into(), false)));
        assert_eq!(kind("/home/u/.openclaw/agent-provisioner/family.json"), Ok((Kind::ProvisionerState, "family.json".into(), true)));
        assert_eq!(kind("/home/u/.openclaw-nova"), Ok((Kind::SiblingHome, "".into(), true)));
        assert_eq!(kind("/home/u/.openclaw-nova/logs/x"), Ok((Kind::SiblingHome, "logs/x".into(), true)));
        assert_eq!(kind("/home/u/.openclaw-archives/n.tar.gz"), Ok((Kind::Archives, "n.tar.gz".into(), true)));
        assert_eq!(kind("/home/u/.config/systemd/user/openclaw-nova.service"), Ok((Kind::ServiceDir, "openclaw-nova.service".into(), false)));
        assert_eq!(kind("/home/u//.openclaw-nova//x"), Ok((Kind::SiblingHome, "x".into(), true)));
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
            ("/home/u/.openclaw-nova/../.ssh/x", "`..`"),
            ("/home/u/.openclaw-nova/./x", "`.`"),
            ("relative/path", "absolute"),
            ("/home/u/.config/systemd/user/sshd.service", "not an OpenClaw service"),
            ("/home/u/.openclaw-nova/a\0b", "NUL"),
        ] {
            let err = grants().resolve(path).unwrap_err();
            assert!(err.contains(needle), "{path}: {err}");
        }
        assert!(grants().resolve(&format!("/home/u/.openclaw-nova/{}", "a".repeat(5000))).unwrap_err().contains("longer"));
    }

    #[test]
    fn a_lead_in_a_profile_home_is_not_a_sibling() {
        let g = Grants::new(GrantConfig { home: "/h".into(), lead_home: "/h/.openclaw-atlas".into(), service_dir: None }).unwrap();
        let r = g.resolve("/h/.openclaw-atlas/openclaw.json").unwrap();
        assert_eq!((r.kind, r.writable), (Kind::LeadHome, false));
        assert_eq!(g.resolve("/h/.openclaw-nova").unwrap().kind, Kind::SiblingHome);
    }
}
