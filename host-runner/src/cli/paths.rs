//! The user's and the lead's homes, as absolute UTF-8 paths without `.` or `..`.

use crate::cli::args::Global;
use anyhow::{Result, anyhow, bail};
use std::path::{Path, PathBuf};

/// `--home`, else `$HOME`.
pub fn home_dir(g: &Global) -> Result<PathBuf> {
    let home = g.home.clone().or_else(|| std::env::var_os("HOME").map(PathBuf::from));
    absolute(&home.ok_or_else(|| anyhow!("no home directory: set HOME or pass --home"))?, "--home")
}

/// `--lead-home`, else `<home>/.openclaw`; it must be a directory.
pub fn lead_home(g: &Global, home: &Path) -> Result<PathBuf> {
    let lead_home = absolute(g.lead_home.as_ref().unwrap_or(&home.join(".openclaw")), "--lead-home")?;
    if !lead_home.is_dir() {
        bail!("the lead home {} is not a directory (give --lead-home)", lead_home.display());
    }
    Ok(lead_home)
}

/// `path` made absolute (against the working directory), checked to be UTF-8 without
/// `.` or `..` components; `option` names it in errors.
pub fn absolute(path: &Path, option: &str) -> Result<PathBuf> {
    let path = if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir()?.join(path) };
    let text = path.to_str().ok_or_else(|| anyhow!("{option} {}: not valid UTF-8", path.display()))?;
    if Path::new(text).components().any(|c| matches!(c, std::path::Component::ParentDir | std::path::Component::CurDir)) {
        bail!("{option} {text}: give a path without `.` or `..`");
    }
    Ok(PathBuf::from(text.trim_end_matches('/')).components().collect())
}

/// A path checked by [`absolute`], as text.
pub fn text(path: &Path) -> String {
    path.to_str().expect("paths are checked to be UTF-8").to_string()
}
