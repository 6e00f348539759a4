//! End to end against a real OpenClaw (`openclaw@2026.9.6` on Node 24, installed by
//! `scripts/install-openclaw.sh`): provision two real siblings, check the generated configs
//! with OpenClaw itself, run the lifecycle, check health, refuse a port conflict, and
//! deprovision — with the direct service backend and the Sesame stand-in; and adopt a
//! sibling the original bash skill made, which OpenClaw refuses to run as it was left.
//!
//! In CI (`CI` set) a failed OpenClaw install fails this suite; a local run without the
//! install skips it and says so.

mod support;

use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};
use support::real_openclaw::*;
use support::*;

/// The tests here run one at a time: a real gateway takes ~0.9 GB and most of a core for
/// 12-15 s to come up, and each test's bounds allow for its own gateways on two cores, not
/// for another test's starting beside them. Taken first, so it is released last, after
/// the test's home has stopped what it started.
fn one_test_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static GATEWAYS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    GATEWAYS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A home whose services run the real OpenClaw (offline), waiting up to `health_timeout_s`.
fn real_home(sesame: &SesameStandin, real: &std::path::Path, health_timeout_s: u32) -> TestHome {
    let mut t = TestHome::new(&sesame.url);
    t.openclaw = offline_launcher(t.temp.path(), real);
    t.extra = real_gateway_timing(health_timeout_s, 2000);
    t
}

#[test]
fn real_openclaw_siblings_from_provision_to_deprovision() {
    let _one_at_a_time = one_test_at_a_time();
    let Some(real) = openclaw() else { return };
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = real_home(&sesame, &real, 120);
    let siblings = [("orion", gateway_port()), ("pixel", gateway_port())];

    for (handle, port) in siblings {
        let started = Instant::now();
        let run = t.provision(&t.task(handle, port, |_| {})).expect(0);
        let outcome = run.json()["outcome"].clone();
        let health_ms = outcome["steps"].as_array().unwrap().iter().find(|s| s["step"] == "health").unwrap()["millis"].clone();
        report(&format!("MEASURED {handle}: provision to healthy {:.1} s (health wait {health_ms} ms)", started.elapsed().as_secs_f64()));
        assert_eq!(get_status(port, "/healthz"), Some(200), "{handle} answers");
        assert_eq!(outcome["sesame_authenticated"], true, "{handle}'s log shows the Sesame channel");
        let verdict = validate(&real, &t.sibling(handle));
        assert_eq!(verdict["valid"], true, "OpenClaw accepts {handle}'s config: {verdict}");
        assert_eq!(verdict.get("warnings").cloned().unwrap_or(json!([])), json!([]), "{verdict}");
    }
    let lines = sesame.lines();
    for (handle, _) in siblings {
        let p = principal(handle);
        let member = format!("PATCH /api/v1/families/0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d/members/{p}");
        assert_eq!(lines.iter().filter(|l| **l == member).count(), 1, "{handle} reported online: {lines:#?}");
    }
    assert_eq!(lines.iter().filter(|l| l.ends_with("/messages")).count(), 2);
    assert_eq!(lines.iter().filter(|l| *l == "POST /api/v1/vault/vaults").count(), 2);

    // Lifecycle on the first sibling.
    let (handle, port) = siblings[0];
    let pid = t.gateway_pid(handle).unwrap();
    t.run(&["stop", handle]).expect(0);
    assert_eq!(get_status(port, "/healthz"), None, "stop closes the port");
    assert!(!is_alive(pid), "and ends the process");
    assert!(processes_of(&t.sibling(handle)).is_empty(), "no process of the sibling is left");
    t.run(&["start", handle]).expect(0);
    assert_eq!(get_status(port, "/healthz"), Some(200));
    let before = t.gateway_pid(handle).unwrap();
    let restarted = t.run(&["--json", "restart", handle]).expect(0).json();
    let after = restarted["outcome"]["pid"].as_u64().unwrap() as u32;
    assert_ne!(before, after, "restart gives a new process");
    assert_eq!(get_status(port, "/healthz"), Some(200));

    let health = t.run(&["--json", "health"]).expect(0).json();
    for s in health["health"]["siblings"].as_array().unwrap() {
        assert_eq!((s["healthy"].as_bool(), s["state"].as_str()), (Some(true), Some("running")), "{s}");
    }

    // A task whose port the other sibling holds fails fast, naming the conflict, touching
    // nothing. The live gateways keep writing OpenClaw's own caches in $HOME (`.cache/`,
    // `.npm/`), which no grant reaches; those are not the refused provision's.
    let tree = || t.tree().into_iter().filter(|p| !p.starts_with(".cache") && !p.starts_with(".npm")).collect::<Vec<_>>();
    let before = tree();
    let started = Instant::now();
    let run = t.provision(&t.task("quark", siblings[1].1, |_| {})).expect(2);
    assert!(started.elapsed() < Duration::from_secs(20), "refused in {:?}", started.elapsed());
    let error = run.json()["error"].clone();
    assert_eq!(error["field"], "gatewayPort");
    assert!(error["message"].as_str().unwrap().contains("pixel"), "{error}");
    assert_eq!(tree(), before, "nothing written");

    for (handle, port) in siblings {
        let gone = t.run(&["--json", "deprovision", handle]).expect(0).json();
        let archive = gone["outcome"]["archive"].as_str().unwrap();
        let listing = String::from_utf8(Command::new("tar").args(["tzf", archive]).output().unwrap().stdout).unwrap();
        assert!(listing.contains(&format!(".openclaw-{handle}/openclaw.json")));
        assert!(!t.sibling(handle).exists());
        assert_eq!(get_status(port, "/healthz"), None);
        assert!(processes_of(&t.sibling(handle)).is_empty(), "no openclaw process of {handle} is left");
    }
}

const FAMILY: &str = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d";
/// The bash-era sibling's own provider key (its legacy `auth.json`), and the lead's key in
/// the `auth-profiles.json` the original skill copied into it: they differ in their last
/// 8 characters, which OpenClaw's masked key shows.
const SIBLING_KEY: &str = "sk-ant-vega-legacy-key-0001-SIBLING1";
const LEAD_PROFILE_KEY: &str = "sk-ant-lead-profile-key-0001-LEADPRF1";

/// `~/.openclaw-<handle>` as the original skill wrote it (no `gateway.mode`, a bare model
/// string, the legacy `auth.json`, a copy of the lead's `auth-profiles.json`, the lead's
/// Sesame plugin and skill), with no service definition: its gateway is not running.
fn bash_era(t: &TestHome, handle: &str, port: u16) -> std::path::PathBuf {
    let home = t.sibling(handle);
    for dir in ["agents/main/agent", "workspace/memory", "extensions", "skills"] {
        std::fs::create_dir_all(home.join(dir)).unwrap();
    }
    copy_dir(&t.lead().join("extensions/sesame"), &home.join("extensions/sesame"));
    copy_dir(&t.lead().join("skills/sesame"), &home.join("skills/sesame"));
    let config = json!({
        "gateway": {"port": port},
        "agents": {"defaults": {"model": "anthropic/claude-sonnet-4-5"}},
        "channels": {"sesame": {"apiKey": format!("sk_sesame_{handle}_0001")}}
    });
    std::fs::write(home.join("openclaw.json"), format!("{config:#}\n")).unwrap();
    std::fs::write(home.join("agents/main/agent/auth.json"), json!({"anthropic": {"type": "api_key", "key": SIBLING_KEY}}).to_string()).unwrap();
    let profiles = json!({"version": 1, "profiles": {"anthropic:default": {"type": "api_key", "provider": "anthropic", "key": LEAD_PROFILE_KEY}}});
    std::fs::write(home.join("agents/main/agent/auth-profiles.json"), profiles.to_string()).unwrap();
    std::fs::write(home.join("workspace/AGENTS.md"), format!("You are {handle}, a member of the family.\n")).unwrap();
    std::fs::write(home.join("workspace/memory/2026-10-01.md"), "Met the human.\n").unwrap();
    home
}

/// What a CLI run printed, both streams.
fn printed(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn a_bash_era_sibling_is_adopted_and_comes_up_with_its_own_provider_key() {
    let _one_at_a_time = one_test_at_a_time();
    let Some(real) = openclaw() else { return };
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = real_home(&sesame, &real, 120);
    let (handle, port) = ("vega", gateway_port());
    let home = bash_era(&t, handle, port);
    let cli_home = t.temp.path().join("cli-home");

    // As the original skill left it, OpenClaw refuses its credentials.
    let started = Instant::now();
    let before = cli(&real, &home, &cli_home, &["models", "status", "--check", "--plain"]);
    assert_eq!(before.status.code(), Some(1), "{}", printed(&before));
    assert!(printed(&before).contains("AUTH_PROFILE_MIGRATION_REQUIRED"), "{}", printed(&before));
    report(&format!("MEASURED adopt {handle}: `models status --check` before adoption {:.1} s", started.elapsed().as_secs_f64()));

    // The scan finds it, with no old service (the direct backend has no bash-era definitions).
    let scan = t.run(&["--json", "adopt", "--scan"]).expect(0).json();
    let plans = scan["adoptions"].as_array().unwrap();
    assert_eq!(plans.len(), 1, "{scan:#}");
    let plan = &plans[0];
    assert_eq!((plan["handle"].as_str(), plan["port"].as_u64(), plan["new_port"].as_u64()), (Some(handle), Some(port.into()), Some(port.into())), "{plan:#}");
    assert_eq!(plan["overlaps"], json!([]), "{plan:#}");
    let changes = plan["changes"].to_string();
    for expected in ["no old service definition was found", "agents/main/agent/auth.json", "auth-profiles.json", "gateway.mode local"] {
        assert!(changes.contains(expected), "no {expected:?} in {changes}");
    }
    assert!(!scan.to_string().contains(SIBLING_KEY) && !scan.to_string().contains(LEAD_PROFILE_KEY), "{scan}");

    let started = Instant::now();
    let run = t.run(&["--json", "adopt", handle, "--principal-id", &principal(handle), "--family-id", FAMILY]).expect(0);
    let adopted = Instant::now();
    let printed_run = format!("{}{}", run.stdout, run.stderr);
    assert!(!printed_run.contains(SIBLING_KEY) && !printed_run.contains(LEAD_PROFILE_KEY), "{printed_run}");
    let outcome = run.json()["outcome"].clone();
    report(&format!("MEASURED adopt {handle}: adopt to healthy {:.1} s", started.elapsed().as_secs_f64()));
    assert_eq!(outcome["port"].as_u64(), Some(port.into()), "{outcome:#}");
    assert!(outcome["warnings"].to_string().contains("no old service definition"), "{outcome:#}");
    assert_eq!(outcome["sesame_authenticated"], true, "its log shows the Sesame channel: {outcome:#}");
    assert!(!home.join("agents/main/agent/auth.json").exists() && !home.join("agents/main/agent/auth-profiles.json").exists());
    assert_eq!(mode(&home.join(".env")), 0o600);
    let pid = t.gateway_pid(handle).expect("the supervisor records the gateway");
    assert_eq!(get_status(port, "/healthz"), Some(200));

    // OpenClaw accepts the rewritten config, and finds the sibling's own key in .env.
    let verdict = validate(&real, &home);
    assert_eq!(verdict["valid"], true, "OpenClaw accepts the adopted config: {verdict}");
    let check = cli(&real, &home, &cli_home, &["models", "status", "--check", "--plain"]);
    assert_eq!(check.status.code(), Some(0), "{}", printed(&check));
    let status = cli(&real, &home, &cli_home, &["models", "status", "--json"]);
    assert!(status.status.success(), "{}", printed(&status));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let anthropic = status["auth"]["providers"].as_array().unwrap().iter().find(|p| p["provider"] == "anthropic").cloned().unwrap_or_default();
    assert_eq!(anthropic["effective"]["kind"], "env", "{anthropic:#}");
    assert_eq!(anthropic["effective"]["detail"].as_str(), Some(masked(SIBLING_KEY).as_str()), "the sibling's own key, not the lead's: {anthropic:#}");
    assert!(!status.to_string().contains(&LEAD_PROFILE_KEY[LEAD_PROFILE_KEY.len() - 8..]), "{status:#}");

    // Up for good, not only for the few seconds OpenClaw answers before it gives up on
    // credentials it cannot use: ready, or still live 15 s on, and the same process.
    let ready = (0..20).any(|i| {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(500));
        }
        get_status(port, "/readyz") == Some(200)
    });
    if !ready {
        let wait = Duration::from_secs(15).saturating_sub(adopted.elapsed());
        std::thread::sleep(wait);
        assert_eq!(get_status(port, "/healthz"), Some(200), "still live 15 s after adoption");
    }
    assert_eq!(t.gateway_pid(handle), Some(pid), "the gateway did not exit and get restarted");
    assert!(is_alive(pid));
    report(&format!("MEASURED adopt {handle}: ready {ready}, checked {:.1} s after adoption", adopted.elapsed().as_secs_f64()));
    let health = t.run(&["--json", "health"]).expect(0).json();
    let siblings = health["health"]["siblings"].as_array().unwrap();
    assert_eq!(siblings.len(), 1, "{health:#}");
    assert_eq!((siblings[0]["healthy"].as_bool(), siblings[0]["state"].as_str()), (Some(true), Some("running")), "{health:#}");

    t.run(&["--json", "deprovision", handle]).expect(0);
    assert!(!home.exists());
    assert_eq!(get_status(port, "/healthz"), None);
    assert!(processes_of(&home).is_empty(), "no openclaw process of {handle} is left");
}

/// A provision in the original credential layout (`auth.json`) is one OpenClaw 2026.9
/// cannot run: it is live for a few seconds, never ready, and exits asking for a
/// migration. The provision waits for readiness, so it fails at health, names the legacy
/// file as the cause, and rolls back, instead of reporting a sibling that is about to die.
#[test]
fn a_provision_in_the_legacy_layout_fails_at_health_naming_the_cause_and_rolls_back() {
    let _one_at_a_time = one_test_at_a_time();
    let Some(real) = openclaw() else { return };
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = real_home(&sesame, &real, 150);
    let port = gateway_port();
    let started = Instant::now();
    let task = t.task("quill", port, |n| n["llmApiKey"] = "sk-ant-quill-task-key-0001".into());
    let run = t.run(&["--json", "provision", "--task", task.to_str().unwrap(), "--credential-layout", "legacy"]).expect(1);
    report(&format!("MEASURED legacy-layout provision failed in {:.1} s", started.elapsed().as_secs_f64()));
    let error = run.json()["error"].clone();
    assert_eq!(error["step"], "health", "{error:#}");
    assert!(error["message"].as_str().unwrap().starts_with("legacy credential files block the gateway"), "{error:#}");
    assert!(error["rollback"].as_array().unwrap().iter().all(|s| s["ok"] == true), "{error:#}");
    assert!(!t.sibling("quill").exists(), "the partial home is archived and removed");
    assert_eq!(get_status(port, "/healthz"), None);
    assert!(processes_of(&t.sibling("quill")).is_empty(), "no process of it is left");
}
