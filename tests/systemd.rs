//! End to end under a real systemd: a private `systemd --user` (see
//! `support/user_manager.rs`) and real OpenClaw gateways (`openclaw@2026.9.6`, installed by
//! `scripts/install-openclaw.sh`). Two siblings provisioned with `--service-manager auto`
//! (it must pick systemd) run as enabled, active units; a gateway killed with SIGKILL comes
//! back by itself and `health` shows the restart; stop, start and restart act on the unit;
//! a gateway that exits with an invalid config is rolled back without leaving its unit
//! loaded; deprovision leaves no unit loaded or on disk and no process.
//!
//! The binary runs with HOME and XDG_RUNTIME_DIR pointing at the private manager, never at
//! the machine's own. In CI (`CI` set) a machine that cannot start the manager (not root,
//! no `unshare`, no systemd) or install OpenClaw fails this suite, saying why; a local run
//! skips it and says so.

mod support;

use serde_json::Value;
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
fn phase(name: &str, f: impl FnOnce()) {
    let started = Instant::now();
    f();
    report(&format!("systemd suite: {name} took {:.1} s", started.elapsed().as_secs_f64()));
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
    // Real gateways take 13-35 s to answer on two busy cores, and then up to ~2 s per answer.
    t.extra = ["--health-timeout", "150", "--health-interval-ms", "500", "--probe-timeout-ms", "10000"].map(String::from).to_vec();
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
