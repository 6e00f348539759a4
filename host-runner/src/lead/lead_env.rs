//! The lead's environment as OpenClaw builds it: the process environment first, then the
//! lead's state-directory `.env` (`<lead home>/.env`), first value wins. Read by the host
//! only; the component never sees a value of it.

use crate::sys::safe_open;
use crate::sys::secret::Secret;
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The largest `.env` the host reads.
const MAX_DOTENV: u64 = 1 << 20;

/// Where a variable's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Process,
    DotEnv(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Process => f.write_str("the environment"),
            Source::DotEnv(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The lead's variables: a snapshot of the process environment and its `.env`.
#[derive(Clone, Debug, Default)]
pub struct LeadEnv {
    process: BTreeMap<String, String>,
    dotenv_path: PathBuf,
    dotenv: BTreeMap<String, String>,
}

impl LeadEnv {
    /// Reads `<lead_home>/.env` (missing is fine; a link, FIFO or huge file is an error)
    /// and takes `process` as the process environment.
    pub fn read(lead_home: &Path, process: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        let dotenv_path = lead_home.join(".env");
        let dotenv = match safe_open::read_path(&dotenv_path, MAX_DOTENV)? {
            Some(bytes) => parse(&String::from_utf8_lossy(&bytes)),
            None => BTreeMap::new(),
        };
        Ok(Self { process: process.into_iter().collect(), dotenv_path, dotenv })
    }

    /// The value of `name` (non-empty) and where it came from.
    pub fn get(&self, name: &str) -> Option<(&str, Source)> {
        let non_empty = |v: &String| !v.trim().is_empty();
        match self.process.get(name).filter(|v| non_empty(v)) {
            Some(value) => Some((value, Source::Process)),
            None => self.dotenv.get(name).filter(|v| non_empty(v)).map(|v| (v.as_str(), Source::DotEnv(self.dotenv_path.clone()))),
        }
    }

    /// The `.env` file's path, for messages.
    pub fn dotenv_path(&self) -> &Path {
        &self.dotenv_path
    }

    /// Every value of the lead's `.env`, to scrub from what the host prints: none of them
    /// is meant to be shown, and the host cannot tell which are secret.
    pub fn dotenv_values(&self) -> impl Iterator<Item = Secret> + '_ {
        self.dotenv.values().filter(|v| v.len() >= 8).filter_map(|v| Secret::new(v.clone()))
    }
}

/// `NAME=value` lines of dotenv text as OpenClaw's loader reads them: `export ` prefixes,
/// single, double or backtick quotes, `#` comments after unquoted values; a later line
/// wins over an earlier one.
pub(crate) fn parse(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else { continue };
        let name = name.trim();
        if name.is_empty() || name.starts_with('#') || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-') {
            continue;
        }
        let value = value.trim();
        let value = match value.chars().next() {
            Some(q @ ('"' | '\'' | '`')) => value[1..].split(q).next().unwrap_or(""),
            _ => value.split(" #").next().unwrap_or("").trim(),
        };
        vars.insert(name.to_string(), value.to_string());
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_lines_quotes_and_comments() {
        let vars = parse("# keys\nexport OPENAI_API_KEY=\"sk-openai-1234\"\nANTHROPIC_API_KEY=sk-ant-1 # main\nX='a b'\nY=`t`\nANTHROPIC_API_KEY=sk-ant-2\nnot a line\n");
        assert_eq!(vars["OPENAI_API_KEY"], "sk-openai-1234");
        assert_eq!(vars["ANTHROPIC_API_KEY"], "sk-ant-2");
        assert_eq!(vars["X"], "a b");
        assert_eq!(vars["Y"], "t");
        assert_eq!(vars.len(), 4);
    }

    #[test]
    fn the_process_environment_wins_over_the_dotenv() {
        let temp = tempfile::tempdir().unwrap();
        std::fs::write(temp.path().join(".env"), "A=from-file\nB=file-only-value\nC=\n").unwrap();
        let env = LeadEnv::read(temp.path(), [("A".to_string(), "from-process".to_string())]).unwrap();
        assert_eq!(env.get("A"), Some(("from-process", Source::Process)));
        assert_eq!(env.get("B"), Some(("file-only-value", Source::DotEnv(temp.path().join(".env")))));
        assert_eq!(env.get("C"), None);
        assert_eq!(env.dotenv_values().count(), 2);
    }
}
