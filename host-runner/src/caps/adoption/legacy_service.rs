//! The service definition a bash-era sibling runs under, which adoption replaces: the
//! original skill's LaunchAgent `~/Library/LaunchAgents/com.openclaw.<handle>.plist`
//! (loaded with `launchctl load`), or a systemd user unit its operator wrote by hand
//! (the original named a script it never shipped): `openclaw-<handle>.service` or
//! `com.openclaw.<handle>.service` in `~/.config/systemd/user/`.
//!
//! A definition counts only when it is a regular file (never a link), at most 1 MiB, and
//! runs an OpenClaw gateway for that sibling (`gateway` among its arguments, and the
//! handle's profile or home named); the host's own definitions (with the marker) and
//! OpenClaw's own services (`ai.openclaw.<profile>`, `openclaw-gateway-<profile>.service`)
//! are never taken: the latter make the sibling a refusal instead.

use crate::runtime::bindings::{ServiceBackend, ServiceError};
use crate::runtime::bindings::openclaw::provisioner::adoption::LegacyDefinition;
use crate::caps::service::exec;
use crate::caps::service::systemd::systemctl_user;
use std::path::{Path, PathBuf};

/// The largest definition file the host reads.
const MAX_DEFINITION: u64 = 1 << 20;

/// The service manager, as adoption drives it.
#[derive(Clone, Debug)]
pub struct LegacyServices {
    pub backend: ServiceBackend,
    pub home: PathBuf,
    pub launchctl: PathBuf,
    pub systemctl: PathBuf,
    pub uid: u32,
}

/// A definition found, with its bytes.
#[derive(Clone, Debug)]
pub struct Found {
    pub definition: LegacyDefinition,
    pub bytes: Vec<u8>,
    pub mode: u32,
}

impl LegacyServices {
    /// The directory the backend's definitions live in.
    fn dir(&self) -> PathBuf {
        crate::caps::service::definition_dir(self.backend, &self.home)
    }

    /// The file names a bash-era definition of `handle` may have on this backend.
    fn names(&self, handle: &str) -> Vec<String> {
        match self.backend {
            ServiceBackend::Launchd => vec![naming::plist_name(handle)],
            // `openclaw-gateway*.service` is OpenClaw's own name space: never a bash-era unit.
            ServiceBackend::Systemd if handle == "gateway" || handle.starts_with("gateway-") => vec![format!("com.openclaw.{handle}.service")],
            ServiceBackend::Systemd => vec![format!("openclaw-{handle}.service"), format!("com.openclaw.{handle}.service")],
            ServiceBackend::Direct => Vec::new(),
        }
    }

    /// OpenClaw's own service for the profile `handle`, when one is installed: adoption
    /// leaves OpenClaw's services alone, and two gateways on one home cannot both run.
    pub fn openclaw_own(&self, handle: &str) -> Option<PathBuf> {
        let name = match self.backend {
            ServiceBackend::Launchd => format!("ai.openclaw.{handle}.plist"),
            ServiceBackend::Systemd => format!("openclaw-gateway-{handle}.service"),
            ServiceBackend::Direct => return None,
        };
        let path = self.dir().join(name);
        path.symlink_metadata().is_ok().then_some(path)
    }

    /// The bash-era definition of `handle`, if there is one; `Err` says why what is there
    /// cannot be taken over.
    pub fn find(&self, handle: &str) -> Result<Option<Found>, String> {
        let mut found = Vec::new();
        for name in self.names(handle) {
            let path = self.dir().join(&name);
            let meta = match path.symlink_metadata() {
                Ok(meta) => meta,
                Err(_) => continue,
            };
            if !meta.is_file() {
                return Err(format!("{} is not a regular file (a link or something else); adoption does not follow it", path.display()));
            }
            let bytes = crate::sys::safe_open::read_path(&path, MAX_DEFINITION)
                .map_err(|e| format!("{e:#}"))?
                .ok_or_else(|| format!("{} vanished while it was read", path.display()))?;
            if crate::caps::fs::contains(&bytes, crate::caps::service::MARKER.as_bytes()) {
                return Err(format!("{} was written by agent-provisioner, not the original skill", path.display()));
            }
            let command = self.command(handle, &name, &bytes).map_err(|why| format!("{}: {why}", path.display()))?;
            let (loaded, running) = self.state(&name)?;
            use std::os::unix::fs::PermissionsExt as _;
            let mode = meta.permissions().mode() & 0o7777;
            let name = name.trim_end_matches(".plist").to_string();
            let definition = LegacyDefinition { path: path.display().to_string(), name, loaded, running, command };
            found.push(Found { definition, bytes, mode });
        }
        match found.len() {
            0 | 1 => Ok(found.pop()),
            _ => Err(format!(
                "two definitions run this sibling ({}); remove one by hand first",
                found.iter().map(|f| f.definition.path.as_str()).collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// The command a definition runs, when it is a gateway of `handle`.
    fn command(&self, handle: &str, name: &str, bytes: &[u8]) -> Result<String, String> {
        let args: Vec<String> = match self.backend {
            ServiceBackend::Launchd => {
                let value = plist::Value::from_reader(std::io::Cursor::new(bytes)).map_err(|e| format!("is not a plist ({e})"))?;
                let dict = value.as_dictionary().ok_or("is not a plist dictionary")?;
                let label = dict.get("Label").and_then(plist::Value::as_string);
                if label != Some(naming::label(handle).as_str()) {
                    return Err(format!("its Label is {label:?}, not {:?}", naming::label(handle)));
                }
                let args = dict.get("ProgramArguments").and_then(plist::Value::as_array).ok_or("has no ProgramArguments")?;
                args.iter().map(|a| a.as_string().map(String::from).ok_or("has a ProgramArguments entry that is not a string")).collect::<Result<_, _>>()?
            }
            _ => {
                let text = std::str::from_utf8(bytes).map_err(|_| "is not UTF-8".to_string())?;
                let exec = text.lines().find_map(|l| l.trim().strip_prefix("ExecStart=")).ok_or("has no ExecStart=")?;
                exec.split_whitespace().map(String::from).collect()
            }
        };
        let home = naming::home_name(handle);
        let runs_gateway = args.iter().any(|a| a == "gateway");
        let names_sibling = args.windows(2).any(|w| w[0] == "--profile" && w[1] == handle)
            || args.iter().any(|a| a == &format!("--profile={handle}") || a.contains(&home))
            || std::str::from_utf8(bytes).is_ok_and(|t| t.contains(&home));
        if !runs_gateway || !names_sibling {
            return Err(format!("{name} does not run an OpenClaw gateway for {handle} (no `gateway` argument naming its profile or home)"));
        }
        Ok(args.join(" "))
    }

    /// Whether the service manager has the definition `name` loaded (launchd) or enabled
    /// (systemd), and whether it runs.
    fn state(&self, name: &str) -> Result<(bool, bool), String> {
        match self.backend {
            ServiceBackend::Launchd => {
                let label = name.trim_end_matches(".plist");
                let out = self.launchctl(&["print", &format!("gui/{}/{label}", self.uid)])?;
                let running = out.success && out.stdout.lines().any(|l| l.trim() == "state = running");
                Ok((out.success, running))
            }
            _ => {
                let enabled = self.systemctl(&["is-enabled", name])?.stdout.trim() == "enabled";
                let active = self.systemctl(&["is-active", name])?.stdout.trim() == "active";
                Ok((enabled, active))
            }
        }
    }

    /// Stops the old service and takes its definition away (the snapshot holds it).
    pub fn retire(&self, found: &Found) -> Result<Vec<String>, String> {
        let d = &found.definition;
        let mut done = Vec::new();
        match self.backend {
            ServiceBackend::Launchd => {
                if d.loaded {
                    self.must_launchctl(&["bootout", &format!("gui/{}/{}", self.uid, d.name)])?;
                    done.push(format!("{} booted out", d.name));
                }
                remove(&d.path)?;
            }
            _ => {
                if d.loaded {
                    self.must_systemctl(&["disable", &d.name])?;
                    done.push(format!("{} disabled", d.name));
                }
                if d.running {
                    self.must_systemctl(&["stop", &d.name])?;
                    done.push(format!("{} stopped", d.name));
                }
                remove(&d.path)?;
                self.must_systemctl(&["daemon-reload"])?;
                // A unit that had failed stays loaded without its file until reset.
                let _ = self.systemctl(&["reset-failed", &d.name]);
            }
        }
        done.push(format!("{} removed (kept in the snapshot)", d.path));
        Ok(done)
    }

    /// Puts a retired definition back, byte for byte, and loads and starts it again as it
    /// was.
    pub fn reinstate(&self, d: &LegacyDefinition, bytes: &[u8], mode: u32) -> Result<Vec<String>, String> {
        let path = Path::new(&d.path);
        let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else { return Err(format!("{} is not a file path", d.path)) };
        crate::caps::service::write_definition(dir, name, bytes, mode).map_err(|e| {
            let (ServiceError::Denied(why) | ServiceError::NotInstalled(why) | ServiceError::Failed(why)) = e;
            why
        })?;
        let mut done = vec![format!("{} put back", d.path)];
        match self.backend {
            ServiceBackend::Launchd => {
                if d.loaded {
                    self.must_launchctl(&["bootstrap", &format!("gui/{}", self.uid), &d.path])?;
                    done.push(format!("{} loaded again", d.name));
                }
            }
            _ => {
                self.must_systemctl(&["daemon-reload"])?;
                if d.loaded {
                    self.must_systemctl(&["enable", &d.name])?;
                    done.push(format!("{} enabled again", d.name));
                }
                if d.running {
                    self.must_systemctl(&["start", &d.name])?;
                    done.push(format!("{} started again", d.name));
                }
            }
        }
        Ok(done)
    }

    fn launchctl(&self, args: &[&str]) -> Result<exec::Output, String> {
        exec::run(&self.launchctl, args).map_err(|e| e.to_string())
    }

    fn systemctl(&self, args: &[&str]) -> Result<exec::Output, String> {
        systemctl_user(&self.systemctl, args).map_err(|e| e.to_string())
    }

    fn must_launchctl(&self, args: &[&str]) -> Result<(), String> {
        must(self.launchctl(args)?, "launchctl", args)
    }

    fn must_systemctl(&self, args: &[&str]) -> Result<(), String> {
        must(self.systemctl(args)?, "systemctl --user", args)
    }
}

fn must(out: exec::Output, tool: &str, args: &[&str]) -> Result<(), String> {
    if out.success { Ok(()) } else { Err(format!("{tool} {}: {}", args.join(" "), out.complaint())) }
}

fn remove(path: &str) -> Result<(), String> {
    std::fs::remove_file(path).map_err(|e| format!("removing {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::service::exec::tests::Recorder;

    fn services(backend: ServiceBackend, home: &Path, recorder: &Recorder) -> LegacyServices {
        LegacyServices { backend, home: home.into(), launchctl: recorder.tool.clone(), systemctl: recorder.tool.clone(), uid: 501 }
    }

    fn unit(home: &Path, name: &str, exec: &str) -> PathBuf {
        let dir = home.join(".config/systemd/user");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), format!("[Service]\nExecStart={exec}\n")).unwrap();
        dir.join(name)
    }

    #[test]
    fn a_hand_made_unit_is_found_retired_and_reinstated_as_it_was() {
        let temp = tempfile::tempdir().unwrap();
        let recorder = Recorder::new();
        recorder.answer("--user is-enabled", 0, "enabled\n");
        recorder.answer("--user is-active", 0, "active\n");
        let s = services(ServiceBackend::Systemd, temp.path(), &recorder);
        let path = unit(temp.path(), "openclaw-nova.service", "/usr/bin/openclaw --profile nova gateway run --port 18790");
        let found = s.find("nova").unwrap().expect("found");
        assert_eq!((found.definition.name.as_str(), found.definition.loaded, found.definition.running), ("openclaw-nova.service", true, true));
        recorder.clear();
        s.retire(&found).unwrap();
        assert!(!path.exists());
        assert_eq!(recorder.calls(), ["--user disable openclaw-nova.service", "--user stop openclaw-nova.service", "--user daemon-reload", "--user reset-failed openclaw-nova.service"]);
        recorder.clear();
        s.reinstate(&found.definition, &found.bytes, found.mode).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), found.bytes);
        assert_eq!(recorder.calls(), ["--user daemon-reload", "--user enable openclaw-nova.service", "--user start openclaw-nova.service"]);
    }

    #[test]
    fn what_is_not_the_siblings_gateway_is_never_taken() {
        let temp = tempfile::tempdir().unwrap();
        let recorder = Recorder::new();
        let s = services(ServiceBackend::Systemd, temp.path(), &recorder);
        // Another program under the sibling's unit name.
        unit(temp.path(), "openclaw-nova.service", "/usr/bin/backup --daily");
        assert!(s.find("nova").unwrap_err().contains("does not run an OpenClaw gateway for nova"));
        // OpenClaw's own unit for the profile `x` is not the sibling `gateway-x`'s.
        unit(temp.path(), "openclaw-gateway-x.service", "/usr/bin/openclaw --profile gateway-x gateway run");
        assert!(s.find("gateway-x").unwrap().is_none());
        // A link is not followed; the host's own definition is not the original skill's.
        let target = unit(temp.path(), "elsewhere.service", "/usr/bin/openclaw --profile vega gateway run");
        std::os::unix::fs::symlink(&target, temp.path().join(".config/systemd/user/openclaw-vega.service")).unwrap();
        assert!(s.find("vega").unwrap_err().contains("not a regular file"));
        unit(temp.path(), "com.openclaw.orion.service", &format!("/usr/bin/openclaw --profile orion gateway run # {}", crate::caps::service::MARKER));
        assert!(s.find("orion").unwrap_err().contains("written by agent-provisioner"));
        assert!(recorder.calls().is_empty(), "nothing was asked of systemd: {:?}", recorder.calls());
    }

    #[test]
    fn a_launch_agent_must_carry_the_siblings_label() {
        let temp = tempfile::tempdir().unwrap();
        let recorder = Recorder::new();
        recorder.answer("print", 0, "state = running\n");
        let s = services(ServiceBackend::Launchd, temp.path(), &recorder);
        let dir = temp.path().join("Library/LaunchAgents");
        std::fs::create_dir_all(&dir).unwrap();
        let plist = |label: &str| {
            let mut dict = plist::Dictionary::new();
            dict.insert("Label".into(), label.into());
            let args = ["/usr/bin/openclaw", "--profile", "nova", "gateway", "run"].map(plist::Value::from).to_vec();
            dict.insert("ProgramArguments".into(), plist::Value::Array(args));
            plist::Value::Dictionary(dict).to_file_xml(dir.join("com.openclaw.nova.plist")).unwrap();
        };
        plist("com.openclaw.other");
        assert!(s.find("nova").unwrap_err().contains("its Label is"));
        plist("com.openclaw.nova");
        let found = s.find("nova").unwrap().expect("found");
        assert_eq!((found.definition.name.as_str(), found.definition.loaded, found.definition.running), ("com.openclaw.nova", true, true));
        recorder.clear();
        s.retire(&found).unwrap();
        assert_eq!(recorder.calls(), ["bootout gui/501/com.openclaw.nova"]);
        recorder.clear();
        s.reinstate(&found.definition, &found.bytes, found.mode).unwrap();
        let path = dir.join("com.openclaw.nova.plist").display().to_string();
        assert_eq!(recorder.calls(), [format!("bootstrap gui/501 {path}")]);
    }
}
