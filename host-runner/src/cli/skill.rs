//! Installing this tool as an OpenClaw skill: `<lead home>/skills/agent-provisioner/` with
//! `SKILL.md` and the binary (linked onto PATH, since OpenClaw only offers a skill whose
//! `requires.bins` are found there). Only what runs is installed: the binary embeds the
//! component, and the component its templates. The component is compiled for this machine
//! into the cache the binary loads it from, so the first command after an install
//! compiles nothing.
//!
//! This is an operator action of the host itself, not sandboxed provisioning logic.

use crate::runtime::component_cache::Cache;
use crate::runtime::engine::{self, Cached};
use anyhow::{Context as _, Result, bail};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The files of the skill besides the binary: (path in the skill, contents).
const FILES: [(&str, &[u8]); 1] = [("SKILL.md", include_bytes!("../../../SKILL.md"))];

/// What earlier versions installed and nothing reads any more: removed by `install`,
/// reported `leftover` by `check`.
const LEFTOVERS: [&str; 2] = ["agent-provisioner.wasm", "templates"];

/// Where the binary goes inside the skill.
const BINARY: &str = "bin/agent-provisioner";

/// What the skill install is about.
pub struct Skill {
    /// `<lead home>/skills/agent-provisioner`.
    pub dir: PathBuf,
    /// Where `agent-provisioner` is linked onto PATH, if anywhere.
    pub bin_dir: Option<PathBuf>,
    /// The compiled-component cache the installed binary uses.
    pub cache: Cache,
}

/// One file's state.
#[derive(Debug, PartialEq, Eq, serde::Serialize)]
pub struct Item {
    pub path: String,
    /// `installed`, `updated`, `unchanged`, `removed`, `missing`, `outdated`, `current`,
    /// `leftover`.
    pub state: &'static str,
}

impl Skill {
    pub fn new(lead_home: &Path, bin_dir: Option<PathBuf>, cache: Cache) -> Self {
        Self { dir: lead_home.join("skills/agent-provisioner"), bin_dir, cache }
    }

    fn expected(&self) -> Result<Vec<(PathBuf, Vec<u8>, u32)>> {
        let exe = std::env::current_exe().context("finding this executable")?;
        let binary = std::fs::read(&exe).with_context(|| format!("reading {}", exe.display()))?;
        let mut files: Vec<(PathBuf, Vec<u8>, u32)> = FILES.iter().map(|(p, b)| (self.dir.join(p), b.to_vec(), 0o644)).collect();
        files.push((self.dir.join(BINARY), binary, 0o755));
        Ok(files)
    }

    /// Installs or updates every file (atomically, only when it differs) and the PATH link.
    pub fn install(&self) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        for (path, bytes, mode) in self.expected()? {
            let state = match std::fs::read(&path) {
                Ok(existing) if existing == bytes && mode_of(&path) == Some(mode) => "unchanged",
                Ok(_) => "updated",
                Err(_) => "installed",
            };
            if state != "unchanged" {
                write(&path, &bytes, mode)?;
            }
            items.push(Item { path: path.display().to_string(), state });
        }
        for path in self.leftovers() {
            let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            removed.with_context(|| format!("removing {}, which this version no longer installs", path.display()))?;
            items.push(Item { path: path.display().to_string(), state: "removed" });
        }
        if let Some(bin_dir) = &self.bin_dir {
            items.push(self.link(bin_dir)?);
        }
        let (artifact, before) = engine::warm(&self.cache)?;
        let state = match before {
            Cached::Usable => "unchanged",
            Cached::Unusable(_) => "updated",
            Cached::Missing => "installed",
        };
        items.push(Item { path: artifact.display().to_string(), state });
        Ok(items)
    }

    /// What an earlier version left in the skill directory.
    fn leftovers(&self) -> Vec<PathBuf> {
        LEFTOVERS.iter().map(|name| self.dir.join(name)).filter(|p| std::fs::symlink_metadata(p).is_ok()).collect()
    }

    /// Links `<bin_dir>/agent-provisioner` to the skill's binary. An existing file that is
    /// not a symlink is left alone (an error says so).
    fn link(&self, bin_dir: &Path) -> Result<Item> {
        let link = bin_dir.join("agent-provisioner");
        let target = self.dir.join(BINARY);
        let state = match std::fs::symlink_metadata(&link) {
            Ok(m) if m.file_type().is_symlink() && std::fs::read_link(&link)? == target => "unchanged",
            Ok(m) if m.file_type().is_symlink() => {
                std::fs::remove_file(&link)?;
                "updated"
            }
            Ok(_) => bail!("{} exists and is not a link to the skill; remove it or pass --no-bin-link", link.display()),
            Err(_) => "installed",
        };
        if state != "unchanged" {
            std::fs::create_dir_all(bin_dir).with_context(|| format!("creating {}", bin_dir.display()))?;
            std::os::unix::fs::symlink(&target, &link).with_context(|| format!("linking {}", link.display()))?;
        }
        Ok(Item { path: link.display().to_string(), state })
    }

    /// Whether every file is installed and current (and the link in place).
    pub fn check(&self) -> Result<Vec<Item>> {
        let mut items: Vec<Item> = self
            .expected()?
            .into_iter()
            .map(|(path, bytes, mode)| {
                let state = match std::fs::read(&path) {
                    Ok(existing) if existing == bytes && mode_of(&path) == Some(mode) => "current",
                    Ok(_) => "outdated",
                    Err(_) => "missing",
                };
                Item { path: path.display().to_string(), state }
            })
            .collect();
        items.extend(self.leftovers().into_iter().map(|path| Item { path: path.display().to_string(), state: "leftover" }));
        if let Some(bin_dir) = &self.bin_dir {
            let link = bin_dir.join("agent-provisioner");
            let state = match std::fs::read_link(&link) {
                Ok(target) if target == self.dir.join(BINARY) => "current",
                Ok(_) => "outdated",
                Err(_) => "missing",
            };
            items.push(Item { path: link.display().to_string(), state });
        }
        let (artifact, cached) = engine::embedded_entry(&self.cache)?;
        let state = match cached {
            Cached::Usable => "current",
            Cached::Unusable(_) => "outdated",
            Cached::Missing => "missing",
        };
        items.push(Item { path: artifact.display().to_string(), state });
        Ok(items)
    }
}

fn mode_of(path: &Path) -> Option<u32> {
    std::fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o777)
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().expect("skill files have parents");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let handle = cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority())?;
    crate::sys::atomic::write(&handle, Path::new(path.file_name().expect("named")), bytes, mode)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_idempotently_and_checks_currency() {
        let temp = tempfile::tempdir().unwrap();
        let skill = Skill::new(&temp.path().join(".openclaw"), Some(temp.path().join("bin")), Cache::new(temp.path().join("cache"), temp.path().to_path_buf()));
        assert!(skill.check().unwrap().iter().all(|i| i.state == "missing"));
        assert!(skill.install().unwrap().iter().all(|i| i.state == "installed"));
        assert!(skill.check().unwrap().iter().all(|i| i.state == "current"));
        assert!(skill.install().unwrap().iter().all(|i| i.state == "unchanged"));
        std::fs::write(skill.dir.join("SKILL.md"), "tampered").unwrap();
        let outdated: Vec<Item> = skill.check().unwrap().into_iter().filter(|i| i.state != "current").collect();
        assert_eq!(outdated, [Item { path: skill.dir.join("SKILL.md").display().to_string(), state: "outdated" }]);
        let updated: Vec<&str> = skill.install().unwrap().iter().map(|i| i.state).filter(|s| *s != "unchanged").collect();
        assert_eq!(updated, ["updated"]);
        assert_eq!(mode_of(&skill.dir.join(BINARY)), Some(0o755));
    }

    #[test]
    fn what_an_earlier_version_installed_is_removed() {
        let temp = tempfile::tempdir().unwrap();
        let skill = Skill::new(&temp.path().join(".openclaw"), None, Cache::new(temp.path().join("cache"), temp.path().to_path_buf()));
        std::fs::create_dir_all(skill.dir.join("templates")).unwrap();
        std::fs::write(skill.dir.join("templates/USER.md"), "old").unwrap();
        std::fs::write(skill.dir.join("agent-provisioner.wasm"), "old").unwrap();
        let leftover: Vec<&str> = skill.check().unwrap().iter().map(|i| i.state).filter(|s| *s == "leftover").collect();
        assert_eq!(leftover, ["leftover", "leftover"]);
        let removed = skill.install().unwrap().into_iter().filter(|i| i.state == "removed").count();
        assert_eq!(removed, 2);
        assert!(!skill.dir.join("templates").exists() && !skill.dir.join("agent-provisioner.wasm").exists());
        assert!(skill.check().unwrap().iter().all(|i| i.state == "current"));
    }

    #[test]
    fn a_foreign_file_on_path_is_left_alone() {
        let temp = tempfile::tempdir().unwrap();
        std::fs::create_dir(temp.path().join("bin")).unwrap();
        std::fs::write(temp.path().join("bin/agent-provisioner"), "someone else's").unwrap();
        let skill = Skill::new(&temp.path().join(".openclaw"), Some(temp.path().join("bin")), Cache::new(temp.path().join("cache"), temp.path().to_path_buf()));
        assert!(skill.install().unwrap_err().to_string().contains("--no-bin-link"));
        assert_eq!(std::fs::read_to_string(temp.path().join("bin/agent-provisioner")).unwrap(), "someone else's");
    }
}
