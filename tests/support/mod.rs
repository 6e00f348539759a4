//! Shared by the end-to-end tests: a temporary home with the example lead, the stand-ins,
//! and running the real `agent-provisioner` binary with the real component.
//!
//! Everything a test starts is stopped when its [`TestHome`] or [`SesameStandin`] is
//! dropped — the direct backend's supervisors and gateways by the pids their accounts
//! record — even when it fails.

#![allow(dead_code)]

pub mod gzip_bomb;
pub mod real_openclaw;
pub mod user_manager;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// The lead's Sesame key in `examples/lead-home/openclaw.json`.
pub const LEAD_KEY: &str = "sk_sesame_lead_placeholder_0001";
/// The sibling's key in `examples/task.json`.
pub const TASK_KEY: &str = "sk_sesame_example_placeholder_0001";
/// The lead's provider key in `examples/lead-home/.env`.
pub const LEAD_LLM_KEY: &str = "sk-ant-example-placeholder-0001";

/// Prints a line to the test process's stderr uncaptured, so that CI's log shows it even
/// when the test passes (measurements, the versions a suite ran against).
pub fn report(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_agent-provisioner")
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// One compiled-component cache for every test run.
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache")
}

/// A gateway base port whose claimed ports (base..base+2, base+11..base+110) are free,
/// distinct for every call in this test binary.
pub fn gateway_port() -> u16 {
    // Below Linux's ephemeral range (32768 up), where an outgoing connection could take a
    // port between this check and the gateway's bind. Each test process starts at its own
    // offset (wrapping round), so test runs side by side rarely meet; a base whose ports
    // are taken is skipped.
    const FIRST: u32 = 21000;
    const SLOTS: u32 = 97; // FIRST + 97 * 120 + 110 < 32768
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = std::process::id() % 16 * 6;
    for _ in 0..SLOTS {
        let slot = NEXT.fetch_add(1, Ordering::SeqCst) as u32;
        let base = (FIRST + (start + slot) % SLOTS * 120) as u16;
        let claimed = (base..=base + 2).chain(base + 11..=base + 110);
        if claimed.into_iter().all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
    panic!("ran out of test ports");
}

pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let target = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Kills a process group on drop.
pub struct ProcessGuard(pub Child);

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Sesame stand-in, running on a free loopback port.
pub struct SesameStandin {
    guard: ProcessGuard,
    pub url: String,
}

impl SesameStandin {
    /// Starts it strict: with `expected_key` every API request must carry it as bearer
    /// token, and a body without `Content-Length` (chunked) is answered 411.
    pub fn start(expected_key: Option<&str>) -> Self {
        Self::start_with(expected_key, true)
    }

    /// Starts it; `reject_chunked` makes it answer 411 to bodies without `Content-Length`.
    pub fn start_with(expected_key: Option<&str>, reject_chunked: bool) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sesame-standin"));
        cmd.env_remove("SESAME_STANDIN_REJECT_CHUNKED");
        if let Some(key) = expected_key {
            cmd.env("STANDIN_KEY", key).args(["--expect-key-env", "STANDIN_KEY"]);
        }
        if reject_chunked {
            cmd.arg("--reject-chunked");
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("listening on ").expect("the stand-in prints its URL").to_string();
        Self { guard: ProcessGuard(child), url }
    }

    pub fn requests(&self) -> Vec<Value> {
        let body = ureq::get(&format!("{}/_standin/requests", self.url)).call().unwrap().into_body().read_to_string().unwrap();
        serde_json::from_str::<Value>(&body).unwrap().as_array().unwrap().clone()
    }

    /// `METHOD /path` of every API request so far.
    pub fn lines(&self) -> Vec<String> {
        self.requests().iter().map(|r| format!("{} {}", r["method"].as_str().unwrap(), r["path"].as_str().unwrap())).collect()
    }

    pub fn set_faults(&self, rules: Value) {
        ureq::post(&format!("{}/_standin/faults", self.url)).send(rules.to_string()).unwrap();
    }

    pub fn reset(&self) {
        ureq::post(&format!("{}/_standin/reset", self.url)).send("").unwrap();
    }
}

/// The pid the stand-in process runs as (for tests that kill it).
impl SesameStandin {
    pub fn pid(&self) -> u32 {
        self.guard.0.id()
    }
}

/// An executable `openclaw` stand-in in `dir`: the gateway stand-in in `mode`.
pub fn fake_openclaw(dir: &Path, mode: &str) -> PathBuf {
    let path = dir.join(format!("openclaw-{}", mode.replace([':', '/'], "-")));
    std::fs::write(&path, format!("#!/bin/sh\nexec '{}' --mode {mode} \"$@\"\n", env!("CARGO_BIN_EXE_gateway-standin"))).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Every file under `dir` (relative path -> mode and contents).
pub fn files_under(dir: &Path) -> std::collections::BTreeMap<String, (u32, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, (u32, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let relative = path.strip_prefix(root).unwrap().display().to_string();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                out.insert(format!("{relative}/"), (mode(&path), Vec::new()));
                walk(root, &path, out);
            } else if kind.is_file() {
                out.insert(relative, (mode(&path), std::fs::read(&path).unwrap()));
            } else {
                // A link, FIFO or socket: what it is, never read through.
                out.insert(relative, (mode(&path), format!("<{kind:?}>").into_bytes()));
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The legacy provider key of the bash-era sibling `handle` (never to appear in any output).
pub fn legacy_key(handle: &str) -> String {
    format!("sk-ant-{handle}-legacy-key-0001")
}

/// The lead's key in the `auth-profiles.json` the original skill copied into each sibling.
pub const LEAD_PROFILE_KEY: &str = "sk-ant-lead-profile-key-0001";

/// Builds `~/.openclaw-<handle>` as the original bash skill wrote it — the legacy
/// `agents/main/agent/auth.json` with [`legacy_key`], a copy of the lead's
/// `auth-profiles.json`, an `openclaw.json` for a local gateway on `port` with a Sesame
/// key and a key outside the provisioner's shape (`logging`), the lead's Sesame plugin
/// and skill, workspace files — without a service (each suite adds the one it drives).
/// Returns the home.
pub fn bash_era_home(t: &TestHome, handle: &str, port: u16) -> PathBuf {
    use serde_json::json;
    let home = t.sibling(handle);
    for dir in ["agents/main/agent", "workspace/memory", "logs", "extensions", "skills"] {
        std::fs::create_dir_all(home.join(dir)).unwrap();
    }
    copy_dir(&t.lead().join("extensions/sesame"), &home.join("extensions/sesame"));
    copy_dir(&t.lead().join("skills/sesame"), &home.join("skills/sesame"));
    let config = json!({
        "gateway": {"mode": "local", "port": port},
        "agents": {"defaults": {"model": "anthropic/claude-sonnet-4-5"}},
        "channels": {"sesame": {"apiKey": format!("sk_sesame_{handle}_0001")}},
        "logging": {"level": "debug"}
    });
    std::fs::write(home.join("openclaw.json"), format!("{config:#}\n")).unwrap();
    std::fs::write(home.join("agents/main/agent/auth.json"), json!({"anthropic": {"type": "api_key", "key": legacy_key(handle)}}).to_string()).unwrap();
    let profiles = json!({"version": 1, "profiles": {"anthropic:default": {"type": "api_key", "provider": "anthropic", "key": LEAD_PROFILE_KEY}}});
    std::fs::write(home.join("agents/main/agent/auth-profiles.json"), profiles.to_string()).unwrap();
    std::fs::write(home.join("workspace/AGENTS.md"), format!("You are {handle}, a member of the family.\n")).unwrap();
    std::fs::write(home.join("workspace/memory/2026-10-01.md"), "Met the human.\n").unwrap();
    home
}

/// The validator of the published JSON Schema of every command's `--json` output.
pub fn output_schema() -> &'static jsonschema::Validator {
    static SCHEMA: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        let text = std::fs::read_to_string(repo().join("schema/output.schema.json")).unwrap();
        jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).expect("the schema compiles")
    })
}

/// What one run of the binary did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The `--json` document on stdout, checked against the published JSON Schema
    /// (`schema/output.schema.json`): every test that reads one checks the contract.
    pub fn json(&self) -> Value {
        let value: Value = serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr));
        let problems: Vec<String> = output_schema().iter_errors(&value).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(problems.is_empty(), "the output does not follow schema/output.schema.json: {problems:#?}\n{value:#}");
        value
    }

    /// Panics with the output unless the exit code is `code`.
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(self.code, code, "exit code\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
}

/// A temporary `$HOME` holding a copy of `examples/lead-home` as `~/.openclaw`.
pub struct TestHome {
    pub temp: tempfile::TempDir,
    pub home: PathBuf,
    pub openclaw: PathBuf,
    pub api_url: String,
    pub backend: &'static str,
    /// Whether runs name `openclaw` with `--openclaw-bin` (else it is looked up on PATH,
    /// or, for `start` and `restart`, the program recorded at provision is used).
    pub name_openclaw: bool,
    /// Options for every run (a `--cache-dir` among them replaces the shared cache).
    pub extra: Vec<String>,
    /// Environment for the binary on top of the test's (e.g. a private user manager's).
    pub env: Vec<(String, std::ffi::OsString)>,
}

impl TestHome {
    pub fn new(api_url: &str) -> Self {
        let temp = tempfile::tempdir().unwrap();
        let home = temp.path().join("home");
        copy_dir(&repo().join("examples/lead-home"), &home.join(".openclaw"));
        let openclaw = fake_openclaw(temp.path(), "serve");
        Self { temp, home, openclaw, api_url: api_url.to_string(), backend: "direct", name_openclaw: true, extra: Vec::new(), env: Vec::new() }
    }

    pub fn lead(&self) -> PathBuf {
        self.home.join(".openclaw")
    }

    pub fn sibling(&self, handle: &str) -> PathBuf {
        self.home.join(format!(".openclaw-{handle}"))
    }

    /// A gateway log (`stdout.log`, `stderr.log`) in the host's log directory of `handle`.
    pub fn log(&self, handle: &str, name: &str) -> PathBuf {
        self.home.join(".local/state/agent-provisioner/logs").join(handle).join(name)
    }

    pub fn audit_log(&self) -> PathBuf {
        self.lead().join("logs/agent-provisioner-audit.jsonl")
    }

    /// The example task with `handle` and `port`, and `edit` applied to its notes.
    pub fn task(&self, handle: &str, port: u16, edit: impl FnOnce(&mut Value)) -> PathBuf {
        let mut task: Value = serde_json::from_str(&std::fs::read_to_string(repo().join("examples/task.json")).unwrap()).unwrap();
        let mut notes: Value = serde_json::from_str(task["context"]["notes"].as_str().unwrap()).unwrap();
        notes["handle"] = handle.into();
        notes["displayName"] = handle.to_uppercase().into();
        notes["gatewayPort"] = port.into();
        notes["ocHomeDir"] = format!("~/.openclaw-{handle}").into();
        notes["principalId"] = Value::String(principal(handle));
        edit(&mut notes);
        task["context"]["notes"] = notes.to_string().into();
        let path = self.temp.path().join(format!("task-{handle}-{port}.json"));
        std::fs::write(&path, task.to_string()).unwrap();
        path
    }

    /// The binary with this home's options; `args` is the command.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary());
        // The lead's keys come from its home, never from the environment of the test run;
        // no test reaches the machine's own user manager.
        cmd.env_remove("SESAME_API_KEY")
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENROUTER_API_KEY")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("XDG_RUNTIME_DIR")
            .env("HOME", &self.home)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--home").arg(&self.home)
            .args(if self.extra.iter().any(|a| a == "--cache-dir") { vec![] } else { vec!["--cache-dir".into(), cache_dir()] })
            .args(["--service-manager", self.backend, "--api-url", &self.api_url])
            .args(if self.name_openclaw { vec!["--openclaw-bin".as_ref(), self.openclaw.as_os_str()] } else { vec![] })
            .args(["--health-timeout", "10", "--health-interval-ms", "100", "--probe-timeout-ms", "500"])
            .args(["--api-timeout-ms", "2000", "--api-attempts", "3", "--api-backoff-ms", "50"])
            .args(&self.extra)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from_output(self.command(args).output().unwrap())
    }

    /// Provisions from `task`, with `--json`.
    pub fn provision(&self, task: &Path) -> Run {
        self.run(&["--json", "provision", "--task", task.to_str().unwrap()])
    }

    /// Every path under the home (relative), sorted, except the lead's logs and the host's
    /// record of the compiled components it cached (which any run may write).
    pub fn tree(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.home, &self.home, &mut out);
        const COMPONENTS: [&str; 5] = [
            ".local",
            ".local/state",
            ".local/state/agent-provisioner",
            ".local/state/agent-provisioner/components.json",
            ".local/state/agent-provisioner/components.lock",
        ];
        out.retain(|p| !p.starts_with(".openclaw/logs") && !COMPONENTS.contains(&p.as_str()));
        out.sort();
        out
    }

    /// Records `handle` in the host's own state as a sibling home it made for the lead,
    /// as an earlier provision would have (for tests that plant a home by hand).
    pub fn register_sibling(&self, handle: &str) {
        let dir = self.home.join(".local/state/agent-provisioner");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("siblings.json");
        let mut state: Value = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(serde_json::json!({"version": 1, "siblings": {}}));
        state["siblings"][handle] = serde_json::json!({ "lead_home": self.lead() });
        std::fs::write(path, state.to_string()).unwrap();
    }

    /// A recording stand-in for `systemctl`/`launchctl` in the temp dir: each call's
    /// arguments are appended to `<name>.log`; every call succeeds.
    pub fn recording_tool(&self, name: &str) -> PathBuf {
        let path = self.temp.path().join(name);
        let log = self.temp.path().join(format!("{name}.log"));
        std::fs::write(&path, format!("#!/bin/sh\necho \"$*\" >> '{}'\nexit 0\n", log.display())).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// The calls a [`TestHome::recording_tool`] received.
    pub fn tool_calls(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.temp.path().join(format!("{name}.log"))).unwrap_or_default().lines().map(String::from).collect()
    }

    /// The launchd stand-in (`launchctl-standin`, which really runs the programs its
    /// plists name) as `launchctl` in a directory of its own in the temp dir (so that
    /// directory can go on a `PATH`), keeping its state in the temp dir too. Whatever it
    /// started is killed when this home is dropped.
    pub fn launchctl_standin(&self) -> PathBuf {
        let dir = self.temp.path().join("launchd");
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        let path = dir.join("bin/launchctl");
        let script = format!(
            "#!/bin/sh\nLAUNCHCTL_STANDIN_STATE='{}' exec '{}' \"$@\"\n",
            self.launchctl_state().display(),
            env!("CARGO_BIN_EXE_launchctl-standin")
        );
        // Written once: rewriting a script that is run meanwhile (this test's own `print`
        // while another thread forks holding the write descriptor) fails with ETXTBSY.
        if std::fs::read_to_string(&path).ok().as_deref() != Some(script.as_str()) {
            let temp = dir.join("bin/.launchctl.tmp");
            std::fs::write(&temp, script).unwrap();
            std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::rename(&temp, &path).unwrap();
        }
        path
    }

    /// The calls the [`TestHome::launchctl_standin`] received, in order.
    pub fn launchctl_calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.launchctl_state().join("calls.log")).unwrap_or_default().lines().map(String::from).collect()
    }

    /// The pids the launchd stand-in recorded for the jobs it has loaded.
    pub fn launchctl_pids(&self) -> Vec<u32> {
        let jobs: Value = std::fs::read_to_string(self.launchctl_state().join("jobs.json")).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
        jobs["jobs"].as_object().into_iter().flatten().filter_map(|(_, job)| job["process"]["pid"].as_u64().map(|p| p as u32)).collect()
    }

    fn launchctl_state(&self) -> PathBuf {
        self.temp.path().join("launchd/state")
    }

    /// The direct backend's account of `handle`'s service (written by its supervisor).
    pub fn supervision(&self, handle: &str) -> Option<Value> {
        let path = self.services_dir().join(format!("com.openclaw.{handle}.supervisor.json"));
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
    }

    /// The direct backend's record directory.
    pub fn services_dir(&self) -> PathBuf {
        self.home.join(".local/state/agent-provisioner/services")
    }

    /// The pid of `handle`'s gateway, as its supervisor recorded it.
    pub fn gateway_pid(&self, handle: &str) -> Option<u32> {
        self.supervision(handle)?["gateway"]["pid"].as_u64().map(|p| p as u32)
    }

    /// The pid of `handle`'s supervisor, as it recorded itself.
    pub fn supervisor_pid(&self, handle: &str) -> Option<u32> {
        self.supervision(handle)?["supervisor"]["pid"].as_u64().map(|p| p as u32)
    }

    /// Kills `handle`'s supervisor, then its gateway (SIGKILL): the service is dead and
    /// nothing restarts it.
    pub fn kill_service(&self, handle: &str) {
        if let Some(pid) = self.supervisor_pid(handle) {
            kill_group(pid);
            eventually("the supervisor to die", Duration::from_secs(5), || !is_alive(pid));
        }
        if let Some(pid) = self.gateway_pid(handle) {
            kill_group(pid);
            eventually("the gateway to die", Duration::from_secs(5), || !is_alive(pid));
        }
    }
}

impl Drop for TestHome {
    /// Kills every supervisor, then every gateway, the direct backend recorded in this home,
    /// and every program the launchd stand-in runs for it.
    fn drop(&mut self) {
        // Each leads a session (and group) of its own.
        for pid in self.launchctl_pids().into_iter().filter(|pid| is_alive(*pid)) {
            kill_group(pid);
        }
        let handles: Vec<String> = std::fs::read_dir(self.services_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("com.openclaw.")?.strip_suffix(".supervisor.json").map(String::from))
            .collect();
        for handle in handles {
            // Supervisors lead sessions (and groups) of their own; gateways lead groups.
            if let Some(pid) = self.supervisor_pid(&handle) {
                kill_group(pid);
            }
            if let Some(pid) = self.gateway_pid(&handle) {
                kill_group(pid);
            }
        }
    }
}

/// SIGKILL to a process group (gateways run in their own).
pub fn kill_group(pid: u32) {
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).stderr(Stdio::null()).status();
}

pub fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s[s.rfind(')').unwrap() + 2..].starts_with('Z'))
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        out.push(path.strip_prefix(root).unwrap().display().to_string());
        if entry.file_type().unwrap().is_dir() {
            walk(root, &path, out);
        }
    }
}

/// A stable uuid for a handle.
pub fn principal(handle: &str) -> String {
    let sum: u64 = handle.bytes().fold(7u64, |a, b| a.wrapping_mul(31).wrapping_add(b as u64));
    format!("{:08x}-aaaa-4bbb-8ccc-{:012x}", sum as u32, sum & 0xffff_ffff_ffff)
}

pub fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

/// Waits (bounded) until `f` holds.
pub fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A GET to a local port: the status, or `None` when nothing answers.
pub fn get_status(port: u16, path: &str) -> Option<u16> {
    let agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(2))).http_status_as_error(false).build().new_agent();
    agent.get(&format!("http://127.0.0.1:{port}{path}")).call().ok().map(|r| r.status().as_u16())
}

/// Every file under `dir` (recursively) concatenated, for secret scans.
pub fn all_text(dir: &Path) -> String {
    let mut text = String::new();
    let mut paths = Vec::new();
    walk(dir, dir, &mut paths);
    for p in paths {
        if let Ok(bytes) = std::fs::read(dir.join(&p)) {
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    text
}
