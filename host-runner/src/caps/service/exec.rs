//! Running `launchctl` / `systemctl` with captured output and a time limit.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a service-manager command may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// One line for error messages: the tool's stderr (or stdout), trimmed and bounded.
    pub fn complaint(&self) -> String {
        let text = if self.stderr.trim().is_empty() { &self.stdout } else { &self.stderr };
        let text: String = text.trim().chars().take(500).collect();
        let code = self.code.map(|c| format!("exit {c}")).unwrap_or_else(|| "killed".into());
        if text.is_empty() { code } else { format!("{code}: {text}") }
    }
}

/// Why a service-manager command gave no output; `command` is the command line.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot run {command}: {error}")]
    Spawn { command: String, error: std::io::Error },
    #[error("{command}: {error}")]
    Wait { command: String, error: std::io::Error },
    #[error("{command} did not finish within {:.1} s", limit.as_secs_f64())]
    TimedOut { command: String, limit: Duration },
}

impl From<ExecError> for crate::runtime::bindings::ServiceError {
    fn from(e: ExecError) -> Self {
        crate::runtime::bindings::ServiceError::Failed(e.to_string())
    }
}

/// Runs `tool args...`, waiting at most 30 s or what is left of the command's deadline
/// (then it is killed).
pub fn run(tool: &Path, args: &[&str]) -> Result<Output, ExecError> {
    run_env(tool, args, &[])
}

/// [`run`], with `env` set on top of the host's environment.
pub fn run_env(tool: &Path, args: &[&str], env: &[(&str, &OsStr)]) -> Result<Output, ExecError> {
    let command = format!("{} {}", tool.display(), args.join(" "));
    let mut cmd = Command::new(tool);
    cmd.args(args).envs(env.iter().copied()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(error) => return Err(ExecError::Spawn { command, error }),
    };
    let started = Instant::now();
    let limit = crate::runtime::deadline::bound(TIMEOUT);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ExecError::TimedOut { command, limit });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(error) => return Err(ExecError::Wait { command, error }),
        }
    }
    let out = child.wait_with_output().map_err(|error| ExecError::Wait { command, error })?;
    Ok(Output {
        success: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    /// A stand-in for launchctl/systemctl: appends its argv to `calls.log` and answers
    /// from `answers/<longest matching prefix of its words>` (exit code on the first
    /// line, then the output); without an answer it prints nothing and exits 0.
    pub(crate) struct Recorder {
        pub dir: tempfile::TempDir,
        pub tool: PathBuf,
    }

    impl Recorder {
        pub fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let tool = dir.path().join("tool");
            let script = r#"#!/bin/sh
here=$(dirname "$0")
echo "$*" >> "$here/calls.log"
key=""
answer=""
for word in "$@"; do
  key="${key:+${key}_}$(printf '%s' "$word" | tr '/' '_')"
  [ -f "$here/answers/$key" ] && answer="$here/answers/$key"
done
if [ -n "$answer" ]; then
  code=$(head -n 1 "$answer")
  tail -n +2 "$answer"
  exit "$code"
fi
exit 0
"#;
            std::fs::write(&tool, script).unwrap();
            std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::create_dir(dir.path().join("answers")).unwrap();
            Self { dir, tool }
        }

        /// Makes calls starting with the words `prefix` exit with `code` and print `output`.
        pub fn answer(&self, prefix: &str, code: i32, output: &str) {
            let key = prefix.replace([' ', '/'], "_");
            std::fs::write(self.dir.path().join("answers").join(key), format!("{code}\n{output}")).unwrap();
        }

        pub fn calls(&self) -> Vec<String> {
            std::fs::read_to_string(self.dir.path().join("calls.log")).unwrap_or_default().lines().map(String::from).collect()
        }

        pub fn clear(&self) {
            let _ = std::fs::remove_file(self.dir.path().join("calls.log"));
        }
    }

    #[test]
    fn captures_output_and_exit_codes() {
        let r = Recorder::new();
        r.answer("print", 113, "Could not find service");
        let out = run(&r.tool, &["print", "gui/501/com.openclaw.x"]).unwrap();
        assert!(!out.success);
        assert_eq!(out.complaint(), "exit 113: Could not find service");
        assert!(run(&r.tool, &["enable", "x"]).unwrap().success);
        assert_eq!(r.calls(), ["print gui/501/com.openclaw.x", "enable x"]);
        assert!(matches!(run(Path::new("/nonexistent/tool"), &[]), Err(e @ ExecError::Spawn { .. }) if e.to_string().contains("cannot run")));
    }
}
