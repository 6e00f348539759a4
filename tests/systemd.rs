//! End to end under a real systemd: a private `systemd --user` (see
//! `support/user_manager.rs`) and real OpenClaw gateways (`openclaw@2026.9.6`, installed by
//! `scripts/install-openclaw.sh`). Two siblings provisioned with `--service-manager auto`
//! (it must pick systemd) run as enabled, active units; a gateway killed with SIGKILL comes
//! back by itself and `health` shows the restart; stop, start and restart act on the unit;
//! a gateway that exits with an invalid config is rolled back without leaving its unit
//! loaded; deprovision leaves no unit loaded or on disk and no process.
//!
//! `adopt` takes over a bash-era sibling whose gateway runs under a unit its operator
//! wrote by hand (`openclaw-<handle>.service`, enabled with `systemctl --user enable
//! --now`): an adoption that fails part-way puts back every byte, the unit file and the
//! unit enabled and running; a real one retires and archives that unit and runs the
//! sibling under the host's unit, with a real gateway; deprovision then leaves nothing.
//!
//! The binary runs with HOME and XDG_RUNTIME_DIR pointing at the private manager, never at
//! the machine's own. In CI (`CI` set) a machine that cannot start the manager (not root,
//! no `unshare`, no systemd) or install OpenClaw fails this suite, saying why; a local run
//! skips it and says so.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::real_openclaw::*;
use support::user_manager::UserManager;
use support::*;

/// A provider key in the user manager's own environment (where a desktop session's
/// `import-environment` or `~/.config/environment.d` puts it): no sibling may see it.
const MANAGER_KEY: (&str, &str) = ("ANTHROPIC_API_KEY", "sk-ant-user-manager-environment-0001");

/// A private user manager for `home`; `None` (skipped) when a local machine cannot run one.
fn user_manager(home: &Path) -> Option<UserManager> {
    match UserManager::start(home, &[MANAGER_KEY]) {
        Ok(manager) => Some(manager),
        Err(why) if std::env::var_os("CI").is_some() => panic!("the real-systemd suite cannot run on this machine: {why}"),
        Err(why) => {
            eprintln!("SKIPPED: the real-systemd suite needs a private systemd --user: {why}");
            None
        }
    }
}

/// Runs one part of the scenario and says how long it took (where the suite's time goes).
fn phase<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    report(&format!("systemd suite: {name} took {:.1} s", started.elapsed().as_secs_f64()));
    out
}

fn unit(handle: &str) -> String {
    format!("openclaw-sibling-{handle}.service")
}

fn unit_file(t: &TestHome, handle: &str) -> PathBuf {
    t.home.join(".config/systemd/user").join(unit(handle))
}

/// Waits (bounded) until the gateway on `port` answers `/healthz` with 200; on a loaded
/// machine one answer can take seconds. Fails with `handle`'s gateway logs.
fn answers(t: &TestHome, handle: &str, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while get_status(port, "/healthz") != Some(200) {
        if Instant::now() > deadline {
            let tail = |name| std::fs::read_to_string(t.log(handle, name)).unwrap_or_default().lines().rev().take(20).collect::<Vec<_>>().join("\n");
            panic!("{handle}'s gateway on port {port} does not answer; stdout (last lines first):\n{}\nstderr:\n{}", tail("stdout.log"), tail("stderr.log"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn main_pid(manager: &UserManager, handle: &str) -> u32 {
    manager.show(&unit(handle), "MainPID").parse().unwrap()
}

#[test]
fn real_siblings_under_a_real_systemd_user_manager() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let mut t = TestHome::new(&sesame.url);
    let Some(manager) = user_manager(&t.home) else { return };
    let Some(real) = openclaw() else { return };
    report(&format!("systemd: a private systemd --user {} (HOME {})", manager.version, t.home.display()));
    t.openclaw = offline_launcher(t.temp.path(), &real);
    t.backend = "auto";
    t.env = manager.env();
    t.extra = real_gateway_timing(150, 10_000);
    let siblings = [("orion", gateway_port()), ("pixel", gateway_port())];

    for (handle, port) in siblings {
        phase(&format!("provision {handle}"), || provisioned_as_a_unit(&t, &manager, handle, port));
    }
    let members = t.run(&["--json", "list"]).expect(0).json()["members"].clone();
    for m in members.as_array().unwrap() {
        assert_eq!(m["backend"], "systemd", "{m}");
    }
    phase("SIGKILL and restart", || killed_gateway_comes_back(&t, &manager, siblings[0]));
    // start and restart run the program recorded at provision: none named, none on PATH.
    t.name_openclaw = false;
    t.env.push(("PATH".into(), "/usr/bin:/bin".into()));
    phase("stop, start, restart", || stop_start_restart(&t, &manager, siblings[0]));
    t.env.pop();
    t.name_openclaw = true;
    phase("invalid config", || an_invalid_config_leaves_no_failed_unit(&mut t, &manager));
    for sibling in siblings {
        phase(&format!("deprovision {}", sibling.0), || deprovisioned(&t, &manager, sibling));
    }
    let loaded = manager.loaded_units();
    assert!(!loaded.contains("openclaw-sibling-"), "no sibling unit is loaded:\n{loaded}");
}

/// Provisions `handle` with `--service-manager auto`: systemd is picked, the unit the host
/// wrote is the one the manager runs, enabled and active, with only the host's environment.
fn provisioned_as_a_unit(t: &TestHome, manager: &UserManager, handle: &str, port: u16) {
    let started = Instant::now();
    let run = t.provision(&t.task(handle, port, |_| {})).expect(0);
    report(&format!("MEASURED {handle}: provision to healthy under systemd {:.1} s", started.elapsed().as_secs_f64()));
    let banner = format!("service: systemd backend, definitions in {}", t.home.join(".config/systemd/user").display());
    assert!(run.stderr.contains(&banner), "auto picks systemd:\n{}", run.stderr);
    answers(t, handle, port);

    let (unit, path) = (unit(handle), unit_file(t, handle));
    assert!(path.is_file(), "the host wrote {}", path.display());
    assert_eq!(manager.show(&unit, "FragmentPath"), path.display().to_string(), "the manager runs the host's unit");
    assert_eq!(manager.is("is-active", &unit), "active");
    assert_eq!(manager.is("is-enabled", &unit), "enabled");
    assert!(path.parent().unwrap().join("default.target.wants").join(&unit).exists(), "enabled for default.target");

    let env = environment(main_pid(manager, handle));
    let state_dir = format!("OPENCLAW_STATE_DIR={}", t.sibling(handle).display());
    assert!(env.iter().any(|v| *v == state_dir.as_bytes()), "the gateway runs with the host's environment");
    let leaked: Vec<String> = env.iter().map(|v| String::from_utf8_lossy(v).into_owned()).filter(|v| v.starts_with(MANAGER_KEY.0)).collect();
    assert!(leaked.is_empty(), "the user manager's environment reached {handle}'s gateway: {leaked:?}");
}

/// SIGKILL to the gateway's main process: systemd restarts it, and `health` shows it.
fn killed_gateway_comes_back(t: &TestHome, manager: &UserManager, (handle, port): (&str, u16)) {
    let unit = unit(handle);
    let pid = main_pid(manager, handle);
    let killed = Instant::now();
    assert!(std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap().success());
    let restarts = || manager.show(&unit, "NRestarts").parse::<u32>().unwrap_or(0);
    eventually("the killed gateway to be restarted", Duration::from_secs(60), || restarts() >= 1);
    answers(t, handle, port);
    report(&format!(
        "MEASURED restart after SIGKILL: {unit} under systemd {} answered /healthz again after {:.1} s (RestartSec=5; NRestarts={})",
        manager.version,
        killed.elapsed().as_secs_f64(),
        restarts()
    ));
    let new_pid = main_pid(manager, handle);
    assert_ne!(new_pid, pid, "a new main process");
    assert!(!is_alive(pid));
    let health = t.run(&["--json", "health"]).expect(0).json();
    let s = sibling_health(&health, handle);
    assert!(s["restarts"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!((s["healthy"].as_bool(), s["state"].as_str(), s["pid"].as_u64()), (Some(true), Some("running"), Some(new_pid as u64)), "{s}");
}

fn sibling_health(health: &Value, handle: &str) -> Value {
    health["health"]["siblings"].as_array().unwrap().iter().find(|s| s["handle"] == handle).unwrap().clone()
}

/// stop closes the port and ends the unit; start opens it; restart gives a new main process.
fn stop_start_restart(t: &TestHome, manager: &UserManager, (handle, port): (&str, u16)) {
    let unit = unit(handle);
    let pid = main_pid(manager, handle);
    let stopped = t.run(&["--json", "stop", handle]).expect(0).json();
    assert_eq!(stopped["outcome"]["state"], "stopped");
    assert_eq!(get_status(port, "/healthz"), None, "stop closes the port");
    assert_eq!(manager.is("is-active", &unit), "inactive");
    assert!(!is_alive(pid) && processes_of(&t.sibling(handle)).is_empty(), "no process of {handle} is left");
    assert_eq!(manager.is("is-enabled", &unit), "enabled", "stop does not disable");

    let started = t.run(&["--json", "start", handle]).expect(0).json();
    assert_eq!(started["outcome"]["state"], "running");
    answers(t, handle, port);
    assert_eq!(manager.is("is-active", &unit), "active");

    let before = main_pid(manager, handle);
    let restarted = t.run(&["--json", "restart", handle]).expect(0).json();
    let after = restarted["outcome"]["pid"].as_u64().unwrap() as u32;
    assert_ne!(before, after, "restart gives a new process");
    assert_eq!(after, main_pid(manager, handle), "the unit's main process");
    answers(t, handle, port);
}

/// A gateway that exits 78 (invalid config) is not restarted: its unit fails, the
/// provision rolls back, and the failed unit does not stay loaded.
fn an_invalid_config_leaves_no_failed_unit(t: &mut TestHome, manager: &UserManager) {
    let real = std::mem::replace(&mut t.openclaw, fake_openclaw(t.temp.path(), "exit-at-once"));
    let run = t.provision(&t.task("quark", gateway_port(), |_| {})).expect(1);
    t.openclaw = real;
    let error = run.json()["error"].clone();
    assert_eq!(error["step"], "health", "{error}");
    assert!(error["message"].as_str().unwrap().contains("exited with code 78"), "{error}");
    assert_eq!(manager.show(&unit("quark"), "LoadState"), "not-found");
    assert!(!manager.loaded_units().contains(&unit("quark")), "{}", manager.loaded_units());
    assert!(!unit_file(t, "quark").exists());
}

/// deprovision: no unit loaded or on disk, no process, the port closed.
fn deprovisioned(t: &TestHome, manager: &UserManager, (handle, port): (&str, u16)) {
    let pid = main_pid(manager, handle);
    let gone = t.run(&["--json", "deprovision", handle]).expect(0).json();
    assert!(gone["outcome"]["archive"].as_str().unwrap().contains(&format!("/.openclaw-archives/{handle}-")));
    let (unit, path) = (unit(handle), unit_file(t, handle));
    assert!(!path.exists(), "{} is removed", path.display());
    assert!(!path.parent().unwrap().join("default.target.wants").join(&unit).exists(), "and disabled");
    assert_eq!(manager.show(&unit, "LoadState"), "not-found");
    assert!(!manager.loaded_units().contains(&unit), "{}", manager.loaded_units());
    assert_eq!(get_status(port, "/healthz"), None);
    assert!(!is_alive(pid) && processes_of(&t.sibling(handle)).is_empty(), "no process of {handle} is left");
    assert!(!t.sibling(handle).exists());
}


/// The unit an operator of the original bash skill wrote by hand for `handle`.
fn legacy_unit(handle: &str) -> String {
    format!("openclaw-{handle}.service")
}

fn legacy_unit_file(t: &TestHome, handle: &str) -> PathBuf {
    t.home.join(".config/systemd/user").join(legacy_unit(handle))
}

const FAMILY: &str = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d";

#[test]
fn a_bash_era_sibling_under_a_hand_written_unit_is_put_back_on_failure_then_adopted() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let mut t = TestHome::new(&sesame.url);
    let started = Instant::now();
    let Some(manager) = user_manager(&t.home) else { return };
    report(&format!("systemd suite (adopt): a second private systemd --user answered after {:.1} s", started.elapsed().as_secs_f64()));
    let Some(real) = openclaw() else { return };
    t.backend = "auto";
    t.env = manager.env();
    t.extra = real_gateway_timing(150, 10_000);
    let (handle, port) = ("lyra", gateway_port());

    // The old gateway is the stand-in (what the unit runs is the operator's); the adopted
    // one is the real OpenClaw, on the config adoption rewrote.
    phase("adopt: the bash-era unit enabled and started", || hand_written_unit(&t, &manager, handle, port));
    phase("adopt: a failed adoption put back", || a_failed_adoption_puts_the_unit_back(&mut t, &manager, handle, port));
    t.openclaw = offline_launcher(t.temp.path(), &real);
    phase("adopt: adopted onto the host's unit", || adopted_onto_the_hosts_unit(&t, &manager, &sesame, handle, port));
    phase("adopt: deprovision the adopted sibling", || deprovisioned(&t, &manager, (handle, port)));
    let loaded = manager.loaded_units();
    assert!(!loaded.contains("openclaw-"), "no unit of the sibling, old or new, is loaded:\n{loaded}");
}

/// The bash-era home of `handle` with its gateway run by `~/.config/systemd/user/
/// openclaw-<handle>.service`, written as an operator would have, mode 0644, enabled and
/// started with `systemctl --user enable --now`.
fn hand_written_unit(t: &TestHome, manager: &UserManager, handle: &str, port: u16) {
    let home = bash_era_home(t, handle, port);
    let path = legacy_unit_file(t, handle);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let (home, openclaw) = (home.display(), t.openclaw.display());
    let text = format!(
        "[Unit]\nDescription=OpenClaw gateway {handle}\n\n[Service]\nEnvironment=OPENCLAW_STATE_DIR={home}\nEnvironment=OPENCLAW_CONFIG_PATH={home}/openclaw.json\n\
         ExecStart={openclaw} --profile {handle} gateway run --port {port}\nRestart=always\n\
         StandardOutput=append:{home}/logs/stdout.log\nStandardError=append:{home}/logs/stderr.log\n\n[Install]\nWantedBy=default.target\n"
    );
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let enabled = manager.systemctl(&["enable", "--now", &legacy_unit(handle)]);
    assert!(enabled.status.success(), "systemctl --user enable --now: {}", String::from_utf8_lossy(&enabled.stderr));
    eventually(&format!("the bash-era gateway of {handle} answers"), Duration::from_secs(30), || get_status(port, "/healthz") == Some(200));
    assert_eq!((manager.is("is-enabled", &legacy_unit(handle)), manager.is("is-active", &legacy_unit(handle))), ("enabled".into(), "active".into()));
}

/// `adopt HANDLE` with the ids it needs, as JSON.
fn adopt(t: &TestHome, handle: &str) -> Run {
    t.run(&["--json", "adopt", handle, "--principal-id", &principal(handle), "--family-id", FAMILY])
}

fn no_key_in(what: &str, run: &Run, handle: &str) {
    for key in [legacy_key(handle).as_str(), LEAD_PROFILE_KEY] {
        assert!(!run.stdout.contains(key) && !run.stderr.contains(key), "{what} shows a provider key:\n{}\n{}", run.stdout, run.stderr);
    }
}

/// What adoption may change, as it is: the home (logs aside) with modes, the unit file's
/// mode and bytes, its enablement (state and the `default.target.wants` link), whether it
/// is active, the family registry and the host's record of the sibling.
fn legacy_state(t: &TestHome, manager: &UserManager, handle: &str) -> BTreeMap<String, String> {
    use sha2::Digest as _;
    let digest = |bytes: &[u8]| sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut files = files_under(&t.sibling(handle));
    files.retain(|path, _| !path.starts_with("logs/"));
    let mut out: BTreeMap<String, String> = files.into_iter().map(|(path, (mode, bytes))| (path, format!("{mode:o} {}", digest(&bytes)))).collect();
    let path = legacy_unit_file(t, handle);
    out.insert("<unit file>".into(), format!("{:o} {}", mode(&path), digest(&std::fs::read(&path).unwrap())));
    let wants = path.parent().unwrap().join("default.target.wants").join(legacy_unit(handle));
    out.insert("<wants link>".into(), std::fs::read_link(&wants).map(|p| p.display().to_string()).unwrap_or_else(|e| e.to_string()));
    out.insert("<is-enabled>".into(), manager.is("is-enabled", &legacy_unit(handle)));
    out.insert("<is-active>".into(), manager.is("is-active", &legacy_unit(handle)));
    let registry = std::fs::read(t.lead().join("agent-provisioner/family.json")).map(|b| digest(&b)).unwrap_or_else(|_| "absent".into());
    out.insert("<registry>".into(), registry);
    out.insert("<host record>".into(), host_record(t, handle).to_string());
    out
}

/// The host's record of `handle` in `~/.local/state/agent-provisioner/siblings.json`.
fn host_record(t: &TestHome, handle: &str) -> Value {
    let text = std::fs::read_to_string(t.home.join(".local/state/agent-provisioner/siblings.json")).unwrap_or_default();
    serde_json::from_str::<Value>(&text).map(|s| s["siblings"][handle].clone()).unwrap_or(Value::Null)
}

/// The new service's gateway refuses its config (exit 78) after the old unit was retired
/// and the credentials moved: everything is put back, the unit enabled and running again.
fn a_failed_adoption_puts_the_unit_back(t: &mut TestHome, manager: &UserManager, handle: &str, port: u16) {
    let old = legacy_unit(handle);
    let before = legacy_state(t, manager, handle);
    assert_eq!(host_record(t, handle), Value::Null, "{before:?}");
    let old_pid: u32 = manager.show(&old, "MainPID").parse().unwrap();
    let serving = std::mem::replace(&mut t.openclaw, fake_openclaw(t.temp.path(), "exit-at-once"));
    let started = Instant::now();
    let failed = adopt(t, handle);
    report(&format!("MEASURED {handle}: a failed adoption (health fails, all put back) under systemd {:.1} s", started.elapsed().as_secs_f64()));
    t.openclaw = serving;
    let failed = failed.expect(1);
    no_key_in("the failure", &failed, handle);
    let error = &failed.json()["error"];
    assert_eq!(error["step"], "health", "{error:#}");
    let rollback = error["rollback"].to_string();
    let unit_back = [format!("{} put back", legacy_unit_file(t, handle).display()), format!("{old} enabled again"), format!("{old} started again")];
    for expected in ["openclaw.json put back", "auth.json put back", ".env removed"].into_iter().chain(unit_back.iter().map(String::as_str)) {
        assert!(rollback.contains(expected), "no {expected:?} in {rollback}");
    }

    assert_eq!(legacy_state(t, manager, handle), before, "every byte, the unit file and its mode, enabled and active, the registry and the host's record are as they were");
    let pid: u32 = manager.show(&old, "MainPID").parse().unwrap();
    assert!(pid != 0 && pid != old_pid && is_alive(pid), "the old unit runs again in a new main process ({old_pid} -> {pid})");
    eventually("the old gateway answers on its port again", Duration::from_secs(30), || get_status(port, "/healthz") == Some(200));
    let new = unit(handle);
    assert!(!unit_file(t, handle).exists(), "{} is removed", unit_file(t, handle).display());
    assert_eq!(manager.show(&new, "LoadState"), "not-found");
    assert!(!manager.loaded_units().contains(&new), "{}", manager.loaded_units());
    assert_eq!(std::fs::read_dir(t.home.join(".openclaw-archives")).map(|d| d.count()).unwrap_or(0), 0, "nothing archived");
    assert!(!t.home.join(".local/state/agent-provisioner/adopting").join(handle).exists(), "the snapshot is gone");
}

/// A real adoption: the old unit disabled, stopped, its file archived as it was; the
/// sibling runs under the host's unit (a real gateway) with its legacy key in `.env`.
fn adopted_onto_the_hosts_unit(t: &TestHome, manager: &UserManager, sesame: &SesameStandin, handle: &str, port: u16) {
    let (old, old_path) = (legacy_unit(handle), legacy_unit_file(t, handle));
    let old_bytes = std::fs::read(&old_path).unwrap();
    let old_pid: u32 = manager.show(&old, "MainPID").parse().unwrap();
    let started = Instant::now();
    let run = adopt(t, handle);
    report(&format!("MEASURED {handle}: adoption to healthy (a real gateway) under systemd {:.1} s", started.elapsed().as_secs_f64()));
    let run = run.expect(0);
    no_key_in("the adoption's output", &run, handle);
    let outcome = run.json()["outcome"].clone();
    assert_eq!((outcome["port"].as_u64(), outcome["previous_port"].as_u64()), (Some(port.into()), None), "{outcome:#}");
    // The real gateway loads the home's Sesame plugin with the adopted channel config. On
    // two busy cores its line may come after the few intervals health waits for it past the
    // first answer: then the outcome says so, and the line follows.
    const SESAME_LINE: &str = "[sesame] Authenticated successfully";
    let warnings: Vec<&str> = outcome["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    match outcome["sesame_authenticated"].as_bool() {
        Some(true) => assert!(warnings.is_empty(), "{outcome:#}"),
        _ => assert!(warnings.len() == 1 && warnings[0].contains(SESAME_LINE), "{outcome:#}"),
    }
    let log = || std::fs::read_to_string(t.log(handle, "stdout.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !log().contains(SESAME_LINE) {
        assert!(Instant::now() < deadline, "the real gateway does not run the adopted Sesame channel; its stdout:\n{}", log());
        std::thread::sleep(Duration::from_millis(200));
    }

    // The old unit: disabled, inactive, its file gone and archived byte for byte.
    assert!(!old_path.exists(), "{} is removed", old_path.display());
    assert!(!old_path.parent().unwrap().join("default.target.wants").join(&old).exists(), "{old} is disabled");
    assert_ne!(manager.is("is-enabled", &old), "enabled");
    assert_eq!(manager.is("is-active", &old), "inactive");
    assert_eq!(manager.show(&old, "LoadState"), "not-found");
    assert!(!is_alive(old_pid), "the old gateway is gone");
    let archive = PathBuf::from(outcome["archive_dir"].as_str().unwrap());
    assert_eq!(std::fs::read(archive.join(&old)).unwrap(), old_bytes, "the old unit is archived as it was");

    // The host's unit runs the sibling.
    let (new, path) = (unit(handle), unit_file(t, handle));
    assert_eq!(manager.show(&new, "FragmentPath"), path.display().to_string(), "the manager runs the host's unit");
    assert_eq!((manager.is("is-active", &new), manager.is("is-enabled", &new)), ("active".into(), "enabled".into()));
    answers(t, handle, port);
    let state_dir = format!("OPENCLAW_STATE_DIR={}", t.sibling(handle).display());
    assert!(environment(main_pid(manager, handle)).iter().any(|v| *v == state_dir.as_bytes()), "the gateway runs with the host's environment");

    // The legacy key moved into .env; the legacy credential files are gone.
    let home = t.sibling(handle);
    let env = std::fs::read_to_string(home.join(".env")).unwrap();
    let line = format!("ANTHROPIC_API_KEY=\"{}\"", legacy_key(handle));
    assert!(env.lines().any(|l| l == line), "the legacy key is in .env");
    assert_eq!(mode(&home.join(".env")), 0o600);
    assert!(!home.join("agents/main/agent/auth.json").exists() && !home.join("agents/main/agent/auth-profiles.json").exists());

    let list = t.run(&["--json", "list"]).expect(0).json();
    let member = list["members"].as_array().unwrap().iter().find(|m| m["handle"] == handle).unwrap_or_else(|| panic!("no {handle} in {list:#}")).clone();
    assert_eq!((member["backend"].as_str(), member["port"].as_u64()), (Some("systemd"), Some(port.into())), "{member:#}");
    assert!(host_record(t, handle).is_object(), "the host records {handle} as its sibling");
    let online = sesame.requests().into_iter().any(|r| r["method"] == "PATCH" && r["body"] == serde_json::json!({"status": "online"}) && r.to_string().contains(&principal(handle)));
    assert!(online, "Sesame was told the member is online");
}

/// A drop-in anyone can write as the user (`<unit>.d/*.conf`) would change what the
/// host's unit runs: the host neither starts nor reports such a unit, and names the drop-in.
/// (The stand-in gateway is enough here: what is tested is systemd's view of the unit.)
#[test]
fn a_unit_changed_by_a_drop_in_is_neither_started_nor_reported_healthy() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let mut t = TestHome::new(&sesame.url);
    let Some(manager) = user_manager(&t.home) else { return };
    t.backend = "systemd";
    t.env = manager.env();
    let port = gateway_port();
    t.provision(&t.task("nova", port, |_| {})).expect(0);
    t.run(&["--json", "stop", "nova"]).expect(0);
    let ran = t.temp.path().join("ran");
    let evil = unit_file(&t, "nova").with_extension("service.d").join("evil.conf");
    std::fs::create_dir_all(evil.parent().unwrap()).unwrap();
    std::fs::write(&evil, format!("[Service]\nExecStart=\nExecStart=/bin/sh -c 'echo ran >> {}; sleep 60'\n", ran.display())).unwrap();
    assert!(manager.systemctl(&["daemon-reload"]).status.success());
    assert_eq!(manager.show(&unit("nova"), "DropInPaths"), evil.display().to_string(), "systemd applies it");

    for command in ["start", "restart"] {
        let run = t.run(&["--json", command, "nova"]);
        assert_ne!(run.code, 0, "{command}: {}", run.stdout);
        let message = run.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains(&format!("drop-ins the host did not write ({})", evil.display())), "{command}: {message}");
    }
    assert!(!ran.exists(), "the drop-in's command never ran");
    assert_eq!(manager.is("is-active", &unit("nova")), "inactive");
    let health = t.run(&["--json", "health"]).json();
    assert!(health.to_string().contains("drop-ins the host did not write"), "health names it: {health}");
    // Deprovision still removes the host's unit (stopping and removing act on no drop-in).
    t.run(&["--json", "deprovision", "nova"]).expect(0);
    assert!(!unit_file(&t, "nova").exists() && !ran.exists());
}
