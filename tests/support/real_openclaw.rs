//! The real OpenClaw for end-to-end tests: installed by `scripts/install-openclaw.sh`,
//! run offline, its configs checked by OpenClaw itself, its processes found by home.

use super::{is_alive, repo};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The health options for real gateways: one takes ~15 s to answer, several side by side
/// on two cores longer.
pub fn real_gateway_timing(health_timeout_s: u32, probe_timeout_ms: u32) -> Vec<String> {
    let (health, probe) = (health_timeout_s.to_string(), probe_timeout_ms.to_string());
    ["--health-timeout", &health, "--health-interval-ms", "500", "--probe-timeout-ms", &probe].map(String::from).to_vec()
}

/// The OpenClaw launcher, installing it if needed. In CI (`CI` set) a failed install
/// fails the test; a local run without it is skipped and says so.
pub fn openclaw() -> Option<PathBuf> {
    let out = Command::new(repo().join("scripts/install-openclaw.sh")).output().expect("run scripts/install-openclaw.sh");
    if out.status.success() {
        return Some(PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()));
    }
    let why = String::from_utf8_lossy(&out.stderr);
    if std::env::var_os("CI").is_some() {
        panic!("OpenClaw could not be installed, so the real-gateway suite cannot run:\n{why}");
    }
    eprintln!("SKIPPED: the real-OpenClaw suite needs scripts/install-openclaw.sh to succeed:\n{why}");
    None
}

/// A launcher for offline use: OpenClaw must not reach the network or advertise itself.
pub fn offline_launcher(dir: &Path, openclaw: &Path) -> PathBuf {
    let path = dir.join("openclaw");
    let script = format!(
        "#!/bin/sh\nexport OPENCLAW_DISABLE_BONJOUR=1 OPENCLAW_OFFLINE=1\nexec '{}' \"$@\"\n",
        openclaw.display()
    );
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Pids of live processes whose environment names `home` as their OpenClaw state dir.
pub fn processes_of(home: &Path) -> Vec<u32> {
    processes_where(|state_dir| state_dir == home.as_os_str().as_encoded_bytes())
}

/// Pids of live processes whose OpenClaw state dir is anywhere under `dir`.
pub fn processes_under(dir: &Path) -> Vec<u32> {
    let prefix = format!("{}/", dir.display());
    processes_where(|state_dir| state_dir.starts_with(prefix.as_bytes()))
}

fn processes_where(state_dir_matches: impl Fn(&[u8]) -> bool) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            environment(*pid).iter().any(|v| v.strip_prefix(b"OPENCLAW_STATE_DIR=").is_some_and(&state_dir_matches)) && is_alive(*pid)
        })
        .collect()
}

/// The environment a process was started with (`NAME=value` entries; empty if unreadable).
pub fn environment(pid: u32) -> Vec<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/environ")).map(|env| env.split(|b| *b == 0).filter(|v| !v.is_empty()).map(<[u8]>::to_vec).collect()).unwrap_or_default()
}

/// `openclaw config validate --json` on a sibling home.
pub fn validate(openclaw: &Path, home: &Path) -> Value {
    let out = Command::new(openclaw)
        .args(["config", "validate", "--json"])
        .env("OPENCLAW_STATE_DIR", home)
        .env("OPENCLAW_CONFIG_PATH", home.join("openclaw.json"))
        .env("OPENCLAW_NO_AUTO_UPDATE", "1")
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("validate printed:\n{}", String::from_utf8_lossy(&out.stdout)))
}

/// The real `openclaw` CLI on a sibling home, as an operator would run it: a clean
/// environment (no provider key variables, a fake `HOME` in `cli_home`), offline.
pub fn cli(openclaw: &Path, home: &Path, cli_home: &Path, args: &[&str]) -> std::process::Output {
    std::fs::create_dir_all(cli_home).unwrap();
    Command::new(openclaw)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", cli_home)
        .env("OPENCLAW_STATE_DIR", home)
        .env("OPENCLAW_CONFIG_PATH", home.join("openclaw.json"))
        .env("OPENCLAW_OFFLINE", "1")
        .env("OPENCLAW_DISABLE_BONJOUR", "1")
        .env("OPENCLAW_NO_AUTO_UPDATE", "1")
        .output()
        .unwrap()
}

/// OpenClaw's masked form of a provider key (`first8...last8`), as `models status` shows it.
pub fn masked(key: &str) -> String {
    format!("{}...{}", &key[..8], &key[key.len() - 8..])
}
