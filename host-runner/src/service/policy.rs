//! What a guest may ask of the service manager: checked on every call.
//!
//! Labels are `com.openclaw.<handle>` (never the lead's); services run the configured
//! openclaw binary with `--profile <handle> gateway run [--port N]` from the sibling's
//! own home, logging into its `logs/`, with non-secret `OPENCLAW_*` variables only.

use crate::bindings::ServiceSpec;
use std::path::{Path, PathBuf};

/// A spec that passed the policy, with the host's own variables added.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Definition {
    pub label: String,
    pub handle: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub environment: Vec<(String, String)>,
    pub working_directory: PathBuf,
    pub stdout_log: PathBuf,
    pub stderr_log: PathBuf,
    pub port: u16,
    pub keep_alive: bool,
}

/// The rules, derived from the host's configuration.
#[derive(Clone, Debug)]
pub struct Policy {
    pub home: PathBuf,
    pub lead_handle: Option<String>,
    pub openclaw_bin: PathBuf,
    /// `PATH` and `HOME` for the services (the host's own).
    pub host_env: Vec<(String, String)>,
}

const MAX_ENV: usize = 32;
const SECRET_WORDS: [&str; 4] = ["KEY", "TOKEN", "SECRET", "PASSWORD"];

fn is_handle(text: &str) -> bool {
    (1..=32).contains(&text.len())
        && text.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && text.chars().all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-' | '_'))
        && text != "archives"
}

impl Policy {
    /// The handle a label names, or why the label is refused.
    pub fn handle_of(&self, label: &str) -> Result<String, String> {
        let handle = label
            .strip_prefix("com.openclaw.")
            .filter(|h| is_handle(h))
            .ok_or_else(|| format!("label {label:?} is not com.openclaw.<handle> (handle [a-z0-9][a-z0-9_-]*, at most 32)"))?;
        if self.lead_handle.as_deref() == Some(handle) {
            return Err(format!("{label} is the lead's own service"));
        }
        Ok(handle.to_string())
    }

    /// The sibling home a handle's service must run in.
    pub fn home_of(&self, handle: &str) -> PathBuf {
        self.home.join(format!(".openclaw-{handle}"))
    }

    /// Checks `spec` against every rule; the first violation is the answer.
    pub fn check(&self, spec: &ServiceSpec) -> Result<Definition, String> {
        let handle = self.handle_of(&spec.label)?;
        let program = Path::new(&spec.program);
        let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        if canonical(program) != canonical(&self.openclaw_bin) {
            return Err(format!(
                "program {} is not the configured openclaw ({})",
                spec.program,
                self.openclaw_bin.display()
            ));
        }
        let port = spec.port.to_string();
        let base = ["--profile", handle.as_str(), "gateway", "run"];
        let with_port = ["--profile", handle.as_str(), "gateway", "run", "--port", port.as_str()];
        if spec.args != base && spec.args != with_port {
            return Err(format!(
                "arguments {:?} are not `--profile {handle} gateway run [--port {port}]`",
                spec.args
            ));
        }
        if spec.port < 1024 {
            return Err(format!("port {} is below 1024", spec.port));
        }
        let home = self.home_of(&handle);
        if Path::new(&spec.working_directory) != home {
            return Err(format!("working directory {} is not {}", spec.working_directory, home.display()));
        }
        real_dir(&home)?;
        let logs = home.join("logs");
        real_dir(&logs)?;
        for log in [&spec.stdout_log, &spec.stderr_log] {
            let path = Path::new(log);
            let plain_name = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| !n.starts_with('.'));
            if path.parent() != Some(logs.as_path()) || !plain_name {
                return Err(format!("log {log} is not a file directly in {}", logs.display()));
            }
        }
        if spec.environment.len() > MAX_ENV {
            return Err(format!("{} environment variables; at most {MAX_ENV}", spec.environment.len()));
        }
        for (name, value) in &spec.environment {
            let valid_name = name.strip_prefix("OPENCLAW_").is_some_and(|rest| {
                !rest.is_empty() && rest.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            });
            if !valid_name {
                return Err(format!("environment variable {name:?} is not OPENCLAW_[A-Z0-9_]+"));
            }
            if SECRET_WORDS.iter().any(|w| name.contains(w)) {
                return Err(format!("environment variable {name} looks like a secret; services carry no secrets"));
            }
            if value.contains(['\0', '\n', '\r']) {
                return Err(format!("environment variable {name} has a NUL or line break in its value"));
            }
            let expected = match name.as_str() {
                "OPENCLAW_STATE_DIR" => Some(home.clone()),
                "OPENCLAW_CONFIG_PATH" => Some(home.join("openclaw.json")),
                _ => None,
            };
            if let Some(expected) = expected.filter(|e| Path::new(value) != e) {
                return Err(format!("{name} must be {}", expected.display()));
            }
        }
        let mut environment = spec.environment.clone();
        environment.extend(self.host_env.iter().cloned());
        Ok(Definition {
            label: spec.label.clone(),
            handle,
            program: self.openclaw_bin.clone(),
            args: spec.args.clone(),
            environment,
            working_directory: home,
            stdout_log: PathBuf::from(&spec.stdout_log),
            stderr_log: PathBuf::from(&spec.stderr_log),
            port: spec.port,
            keep_alive: spec.keep_alive,
        })
    }
}

fn real_dir(path: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(m) if m.file_type().is_symlink() => Err(format!("{} is a symlink; services run only in real directories", path.display())),
        Ok(_) => Err(format!("{} is not a directory", path.display())),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A policy over a temp home with a sibling home for `nova` and an openclaw script.
    pub(crate) fn fixture() -> (tempfile::TempDir, Policy) {
        let temp = tempfile::tempdir().unwrap();
        let home = temp.path().join("home");
        std::fs::create_dir_all(home.join(".openclaw-nova/logs")).unwrap();
        std::fs::create_dir_all(home.join(".openclaw-atlas")).unwrap();
        let bin = temp.path().join("openclaw");
        std::fs::write(&bin, "#!/bin/sh\nexec sleep 30\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let policy = Policy {
            home,
            lead_handle: Some("atlas".into()),
            openclaw_bin: bin,
            host_env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        };
        (temp, policy)
    }

    pub(crate) fn spec(policy: &Policy, handle: &str) -> ServiceSpec {
        let home = policy.home_of(handle);
        ServiceSpec {
            label: format!("com.openclaw.{handle}"),
            program: policy.openclaw_bin.display().to_string(),
            args: ["--profile", handle, "gateway", "run", "--port", "18930"].map(String::from).to_vec(),
            environment: vec![
                ("OPENCLAW_STATE_DIR".into(), home.display().to_string()),
                ("OPENCLAW_CONFIG_PATH".into(), home.join("openclaw.json").display().to_string()),
                ("OPENCLAW_NO_AUTO_UPDATE".into(), "1".into()),
            ],
            working_directory: home.display().to_string(),
            stdout_log: home.join("logs/stdout.log").display().to_string(),
            stderr_log: home.join("logs/stderr.log").display().to_string(),
            port: 18930,
            keep_alive: true,
        }
    }

    fn refused(policy: &Policy, change: impl FnOnce(&mut ServiceSpec), needle: &str) {
        let mut s = spec(policy, "nova");
        change(&mut s);
        let err = policy.check(&s).unwrap_err();
        assert!(err.contains(needle), "{err:?} should mention {needle:?}");
    }

    #[test]
    fn a_proper_spec_passes_with_host_variables_added() {
        let (_t, policy) = fixture();
        let def = policy.check(&spec(&policy, "nova")).unwrap();
        assert_eq!(def.handle, "nova");
        assert_eq!(def.environment.last().unwrap(), &("PATH".to_string(), "/usr/bin:/bin".to_string()));
    }

    #[test]
    fn labels_other_than_com_openclaw_handle_are_refused() {
        let (_t, policy) = fixture();
        for label in ["com.apple.evil", "ai.openclaw.nova", "com.openclaw.../x", "com.openclaw.A", "com.openclaw.", "com.openclaw.archives", "com.openclaw.a b"] {
            assert!(policy.handle_of(label).is_err(), "{label}");
        }
        assert!(policy.handle_of("com.openclaw.atlas").unwrap_err().contains("lead's own"));
    }

    #[test]
    fn every_rule_is_enforced() {
        let (_t, policy) = fixture();
        refused(&policy, |s| s.program = "/bin/sh".into(), "not the configured openclaw");
        refused(&policy, |s| s.args.push("--evil".into()), "arguments");
        refused(&policy, |s| s.args = vec!["exec".into(), "rm".into()], "arguments");
        refused(&policy, |s| s.args[1] = "other".into(), "arguments");
        refused(&policy, |s| s.args[5] = "22".into(), "arguments");
        refused(&policy, |s| { s.port = 80; s.args[5] = "80".into() }, "below 1024");
        refused(&policy, |s| s.working_directory = "/tmp".into(), "working directory");
        refused(&policy, |s| s.stdout_log = "/tmp/out.log".into(), "not a file directly in");
        refused(&policy, |s| s.stderr_log = s.stderr_log.replace("stderr.log", ".hidden"), "not a file directly in");
        refused(&policy, |s| s.environment.push(("PATH".into(), "/evil".into())), "OPENCLAW_");
        refused(&policy, |s| s.environment.push(("OPENCLAW_API_KEY".into(), "x".into())), "looks like a secret");
        refused(&policy, |s| s.environment.push(("OPENCLAW_GATEWAY_TOKEN".into(), "x".into())), "looks like a secret");
        refused(&policy, |s| s.environment.push(("OPENCLAW_X".into(), "a\nb".into())), "line break");
        refused(&policy, |s| s.environment[0].1 = "/tmp".into(), "OPENCLAW_STATE_DIR must be");
        refused(&policy, |s| s.environment[1].1 = "/tmp/x.json".into(), "OPENCLAW_CONFIG_PATH must be");
        refused(&policy, |s| s.environment = (0..40).map(|i| (format!("OPENCLAW_V{i}"), "1".into())).collect(), "at most 32");
    }

    #[test]
    fn homes_and_logs_must_be_real_directories() {
        let (t, policy) = fixture();
        std::fs::remove_dir_all(policy.home_of("nova").join("logs")).unwrap();
        std::os::unix::fs::symlink(t.path(), policy.home_of("nova").join("logs")).unwrap();
        assert!(policy.check(&spec(&policy, "nova")).unwrap_err().contains("is a symlink"));
        let missing = spec(&policy, "ghost");
        assert!(policy.check(&missing).is_err());
    }
}
