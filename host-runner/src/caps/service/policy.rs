//! What a guest may ask of the service manager: checked on every call.
//!
//! The guest names a label (`com.openclaw.<handle>`, by the shared naming rules, never the
//! lead's) and a port; the host derives everything else itself: the program (its
//! configured openclaw), the arguments (`--profile <handle> gateway run --port N`), the
//! working directory (the sibling's home, a real directory), the environment (an
//! allowlist of names with values the host pins) and the logs (fixed names in a
//! directory the host owns outside the home). Every value that goes into a definition is
//! refused if it holds a control character.

use crate::runtime::bindings::ServiceSpec;
use std::path::{Path, PathBuf};

/// A spec that passed the policy, with everything the host derived.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Definition {
    pub label: String,
    pub handle: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub environment: Vec<(String, String)>,
    pub working_directory: PathBuf,
    /// The directory the host created for the logs (`stdout.log`, `stderr.log`).
    pub log_dir: PathBuf,
    pub stdout_log: PathBuf,
    pub stderr_log: PathBuf,
    pub port: u16,
    /// Restart the gateway whenever it exits (always, for the host's definitions).
    pub keep_alive: bool,
}

/// The environment variables a service gets, all with values the host sets.
pub const ENVIRONMENT: [&str; 5] = ["HOME", "PATH", "OPENCLAW_STATE_DIR", "OPENCLAW_CONFIG_PATH", "OPENCLAW_NO_AUTO_UPDATE"];

/// Why a service spec is refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("label {0:?} is not com.openclaw.<handle>")]
    Label(String),
    #[error("label {label:?}: the handle {why}")]
    Handle { label: String, why: naming::HandleError },
    #[error("port {0} is below 1024")]
    PrivilegedPort(u16),
    #[error("{} is a symlink; services run only in real directories", .0.display())]
    SymlinkHome(PathBuf),
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{}: {error}", path.display())]
    Home { path: PathBuf, error: std::io::Error },
    #[error("{what} of the service holds the control character U+{:04X} ({value:?}); refusing to render it", *.character as u32)]
    ControlCharacter { what: &'static str, value: String, character: char },
}

/// The rules, derived from the host's configuration.
#[derive(Clone, Debug)]
pub struct Policy {
    pub home: PathBuf,
    /// Every handle the lead goes by.
    pub lead_handles: Vec<String>,
    pub openclaw_bin: PathBuf,
    /// The host's `PATH`, passed on to services.
    pub path: String,
}

impl Policy {
    /// The handle a label names, or why the label is refused.
    pub fn handle_of(&self, label: &str) -> Result<String, PolicyError> {
        let handle = label.strip_prefix("com.openclaw.").ok_or_else(|| PolicyError::Label(label.to_string()))?;
        naming::check_sibling(handle, &self.lead_handles).map_err(|why| PolicyError::Handle { label: label.to_string(), why })?;
        Ok(handle.to_string())
    }

    /// The sibling home a handle's service runs in.
    pub fn home_of(&self, handle: &str) -> PathBuf {
        self.home.join(naming::home_name(handle))
    }

    /// The directory the host makes for the logs of `handle`'s gateway.
    pub fn log_dir(&self, handle: &str) -> PathBuf {
        PathBuf::from(naming::log_dir(&text(&self.home), handle))
    }

    /// The `PATH` a service gets: the host's, without entries that are not absolute (an
    /// empty or relative one names the gateway's working directory, the sibling's home)
    /// or that lie in a sibling home — a `node` or `openclaw` a sibling wrote there must
    /// never be what its launcher finds.
    fn service_path(&self) -> String {
        let sibling_homes = text(&self.home.join(naming::home_name("")));
        self.path.split(':').filter(|entry| entry.starts_with('/') && !entry.starts_with(&sibling_homes)).collect::<Vec<_>>().join(":")
    }

    /// Derives the definition for `spec`; the first violation is the answer.
    pub fn check(&self, spec: &ServiceSpec) -> Result<Definition, PolicyError> {
        let handle = self.handle_of(&spec.label)?;
        if spec.port < 1024 {
            return Err(PolicyError::PrivilegedPort(spec.port));
        }
        let home = self.home_of(&handle);
        real_dir(&home)?;
        let log_dir = self.log_dir(&handle);
        let environment: Vec<(String, String)> = ENVIRONMENT
            .iter()
            .map(|name| {
                let value = match *name {
                    "HOME" => text(&self.home),
                    "PATH" => self.service_path(),
                    "OPENCLAW_STATE_DIR" => text(&home),
                    "OPENCLAW_CONFIG_PATH" => text(&home.join("openclaw.json")),
                    _ => "1".into(),
                };
                (name.to_string(), value)
            })
            .collect();
        let def = Definition {
            label: spec.label.clone(),
            args: ["--profile", &handle, "gateway", "run", "--port", &spec.port.to_string()].map(String::from).to_vec(),
            handle,
            program: self.openclaw_bin.clone(),
            environment,
            working_directory: home,
            stdout_log: log_dir.join(naming::LOG_FILES[0]),
            stderr_log: log_dir.join(naming::LOG_FILES[1]),
            log_dir,
            port: spec.port,
            keep_alive: true,
        };
        check_rendered(&def)?;
        Ok(def)
    }
}

/// Refuses a definition with a control character in any value a backend renders.
fn check_rendered(def: &Definition) -> Result<(), PolicyError> {
    let paths = [&def.program, &def.working_directory, &def.stdout_log, &def.stderr_log].map(|p| ("a path", text(p)));
    let values = def.args.iter().map(|a| ("an argument", a.clone())).chain(def.environment.iter().map(|(k, v)| ("the environment", format!("{k}={v}"))));
    for (what, value) in paths.into_iter().chain(values) {
        if let Some(character) = value.chars().find(|c| c.is_control()) {
            return Err(PolicyError::ControlCharacter { what, value, character });
        }
    }
    Ok(())
}

fn text(path: &Path) -> String {
    path.display().to_string()
}

fn real_dir(path: &Path) -> Result<(), PolicyError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(m) if m.file_type().is_symlink() => Err(PolicyError::SymlinkHome(path.to_path_buf())),
        Ok(_) => Err(PolicyError::NotADirectory(path.to_path_buf())),
        Err(error) => Err(PolicyError::Home { path: path.to_path_buf(), error }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A policy over a temp home with a sibling home for `nova` and an openclaw script.
    pub(crate) fn fixture() -> (tempfile::TempDir, Policy) {
        let temp = tempfile::tempdir().unwrap();
        let home = temp.path().join("home");
        std::fs::create_dir_all(home.join(".openclaw-nova")).unwrap();
        std::fs::create_dir_all(home.join(".openclaw-atlas")).unwrap();
        let bin = temp.path().join("openclaw");
        std::fs::write(&bin, "#!/bin/sh\nexec sleep 30\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let policy = Policy { home, lead_handles: vec!["atlas".into(), "chief".into()], openclaw_bin: bin, path: "/usr/bin:/bin".into() };
        (temp, policy)
    }

    pub(crate) fn spec(handle: &str) -> ServiceSpec {
        ServiceSpec { label: format!("com.openclaw.{handle}"), port: 18930 }
    }

    #[test]
    fn the_host_derives_everything_from_the_handle() {
        let (_t, policy) = fixture();
        let def = policy.check(&spec("nova")).unwrap();
        assert_eq!(def.args, ["--profile", "nova", "gateway", "run", "--port", "18930"]);
        assert_eq!(def.program, policy.openclaw_bin);
        assert_eq!(def.working_directory, policy.home.join(".openclaw-nova"));
        assert_eq!(def.stdout_log, policy.home.join(".local/state/agent-provisioner/logs/nova/stdout.log"));
        let names: Vec<&str> = def.environment.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ENVIRONMENT);
        assert!(def.environment.contains(&("OPENCLAW_STATE_DIR".into(), policy.home.join(".openclaw-nova").display().to_string())));
    }

    #[test]
    fn a_service_path_holds_no_relative_entry_and_nothing_in_a_sibling_home() {
        let (_t, mut policy) = fixture();
        let sibling_bin = policy.home.join(".openclaw-nova/bin");
        policy.path = format!("/usr/local/bin::.:bin:{}:/usr/bin", sibling_bin.display());
        let def = policy.check(&spec("nova")).unwrap();
        let path = def.environment.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str());
        assert_eq!(path, Some("/usr/local/bin:/usr/bin"));
    }

    #[test]
    fn labels_other_than_com_openclaw_sibling_are_refused() {
        let (_t, policy) = fixture();
        for label in [
            "com.apple.evil",
            "ai.openclaw.nova",
            "com.openclaw.../x",
            "com.openclaw.A",
            "com.openclaw.",
            "com.openclaw.archives",
            "com.openclaw.a b",
            "com.openclaw.gateway",
            "com.openclaw.gateway-work",
            "com.openclaw.dev",
            "com.openclaw.default",
        ] {
            assert!(policy.handle_of(label).is_err(), "{label}");
        }
        assert!(policy.handle_of("com.openclaw.atlas").unwrap_err().to_string().contains("lead's own"));
        assert!(policy.handle_of("com.openclaw.chief").unwrap_err().to_string().contains("lead's own"));
    }

    #[test]
    fn control_characters_are_never_rendered() {
        let (t, mut policy) = fixture();
        policy.path = "/usr/bin\nExecStartPre=/bin/sh -c evil".into();
        assert!(policy.check(&spec("nova")).unwrap_err().to_string().contains("U+000A"));
        let (_t2, mut policy) = fixture();
        policy.openclaw_bin = t.path().join("open\rclaw");
        assert!(policy.check(&spec("nova")).unwrap_err().to_string().contains("U+000D"));
        let mut low = spec("nova");
        low.port = 80;
        assert!(policy.check(&low).unwrap_err().to_string().contains("below 1024"));
    }

    #[test]
    fn homes_must_be_real_directories() {
        let (t, policy) = fixture();
        std::os::unix::fs::symlink(t.path(), policy.home_of("trap")).unwrap();
        assert!(policy.check(&spec("trap")).unwrap_err().to_string().contains("is a symlink"));
        assert!(policy.check(&spec("ghost")).is_err());
    }
}
