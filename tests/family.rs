//! End to end: running a family — health of several siblings, lifecycle commands,
//! refusals, port planning, and installing the skill.

mod support;

use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn provision(t: &TestHome, handle: &str, port: u16) {
    t.provision(&t.task(handle, port, |_| {})).expect(0);
}

fn health(t: &TestHome, extra: &[&str]) -> (Value, Duration) {
    let mut args = vec!["--json", "--probe-timeout-ms", "1500", "health"];
    args.extend_from_slice(extra);
    let started = Instant::now();
    let run = t.run(&args).expect(0);
    (run.json()["health"].clone(), started.elapsed())
}

fn sibling<'a>(health: &'a Value, handle: &str) -> &'a Value {
    health["siblings"].as_array().unwrap().iter().find(|s| s["handle"] == handle).unwrap()
}

#[test]
fn health_sees_every_sibling_at_once_and_reports_the_dead_and_the_hung() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let ports = [gateway_port(), gateway_port(), gateway_port()];
    for (handle, port) in ["ann", "bob", "cat"].iter().zip(ports) {
        provision(&t, handle, port);
    }
    let (all, _) = health(&t, &[]);
    for handle in ["ann", "bob", "cat"] {
        let s = sibling(&all, handle);
        assert_eq!((s["healthy"].as_bool(), s["state"].as_str(), s["sesame_authenticated"].as_bool()), (Some(true), Some("running"), Some(true)), "{s}");
        assert!(s["pid"].as_u64().is_some() && s["problems"] == json!([]));
    }

    // bob's supervisor and gateway die (nothing restarts it); cat's port is taken over by
    // something that accepts and never answers.
    t.kill_service("bob");
    eventually("bob's port to close", Duration::from_secs(5), || get_status(ports[1], "/healthz").is_none());
    t.run(&["stop", "cat"]).expect(0);
    let mut hang = ProcessGuard(
        Command::new(env!("CARGO_BIN_EXE_gateway-standin"))
            .args(["--mode", "hang", "--profile", "cat", "gateway", "run", "--port", &ports[2].to_string()])
            .env("OPENCLAW_STATE_DIR", t.sibling("cat"))
            .env("OPENCLAW_CONFIG_PATH", t.sibling("cat").join("openclaw.json"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    eventually("the hanging listener", Duration::from_secs(5), || std::net::TcpStream::connect(("127.0.0.1", ports[2])).is_ok());
    sesame.reset();

    let (report, took) = health(&t, &["--report", "--channel", "11111111-2222-4333-8444-555555555555"]);
    assert_eq!(sibling(&report, "ann")["healthy"], true);
    let bob = sibling(&report, "bob");
    assert_eq!((bob["healthy"].as_bool(), bob["state"].as_str()), (Some(false), Some("failed")), "{bob}");
    assert_eq!(bob["probe"], "connection refused");
    let problem = bob["problems"][0].as_str().unwrap();
    assert!(problem.starts_with("its service com.openclaw.bob failed: its supervisor (pid ") && problem.contains("is gone and the gateway is not running"), "{bob}");
    let cat = sibling(&report, "cat");
    assert_eq!((cat["healthy"].as_bool(), cat["probe"].as_str()), (Some(false), Some("timed out")), "{cat}");
    // About one probe timeout for all three, not one per sibling (generous bound for a
    // loaded machine: the behaviour under test is that probes run concurrently).
    assert!(took < Duration::from_millis(2 * 1500 + 1000), "health took {took:?}");

    let statuses: Vec<(String, Value)> = sesame
        .requests()
        .iter()
        .filter(|r| r["method"] == "PATCH")
        .map(|r| (r["path"].as_str().unwrap().rsplit('/').next().unwrap().to_string(), r["body"]["status"].clone()))
        .collect();
    for (handle, status) in [("ann", "online"), ("bob", "error"), ("cat", "error")] {
        assert!(statuses.contains(&(principal(handle), json!(status))), "{handle} {status}: {statuses:?}");
    }
    let messages: Vec<Value> = sesame.requests().into_iter().filter(|r| r["method"] == "POST").collect();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["path"], "/api/v1/channels/11111111-2222-4333-8444-555555555555/messages");
    assert!(messages[0]["body"]["content"].as_str().unwrap().contains("1/3 healthy"));
    hang.0.kill().unwrap();
}

#[test]
fn stop_start_restart_and_deprovision() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let port = gateway_port();
    provision(&t, "dora", port);
    let first = t.gateway_pid("dora").unwrap();

    let stopped = t.run(&["--json", "stop", "dora"]).expect(0).json();
    assert_eq!(stopped["outcome"]["state"], "stopped");
    assert_eq!(get_status(port, "/healthz"), None, "stop closes the port");
    assert!(!is_alive(first));

    let started = t.run(&["--json", "start", "dora"]).expect(0).json();
    assert_eq!(started["outcome"]["state"], "running");
    assert_eq!(get_status(port, "/healthz"), Some(200));
    let second = started["outcome"]["pid"].as_u64().unwrap() as u32;

    let restarted = t.run(&["--json", "restart", "dora"]).expect(0).json();
    let third = restarted["outcome"]["pid"].as_u64().unwrap() as u32;
    assert_ne!(second, third, "restart changes the pid");
    assert!(!is_alive(second) && is_alive(third));
    assert_eq!(get_status(port, "/healthz"), Some(200));

    let home_files: Vec<String> = {
        let mut files = Vec::new();
        for entry in walk_files(&t.sibling("dora")) {
            files.push(format!(".openclaw-dora/{entry}"));
        }
        files
    };
    sesame.reset();
    let gone = t.run(&["--json", "deprovision", "dora"]).expect(0).json();
    let archive = gone["outcome"]["archive"].as_str().unwrap().to_string();
    assert!(archive.contains("/.openclaw-archives/dora-"));
    let listing = String::from_utf8(Command::new("tar").args(["tzf", &archive]).output().unwrap().stdout).unwrap();
    for file in &home_files {
        assert!(listing.lines().any(|l| l == file), "{file} missing from the archive:\n{listing}");
    }
    assert!(!t.sibling("dora").exists(), "the home is removed");
    assert!(t.gateway_pid("dora").is_none() && !is_alive(third), "the service is gone");
    assert!(!t.home.join(".local/state/agent-provisioner/services/com.openclaw.dora.json").exists());
    assert_eq!(sesame.requests()[0]["body"], json!({"status": "deprovisioned"}));
    assert_eq!(sesame.requests()[0]["path"], format!("/api/v1/families/0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d/members/{}", principal("dora")));
    let list = t.run(&["--json", "list"]).expect(0).json();
    assert_eq!(list["members"], json!([]));
}

#[test]
fn start_and_restart_run_the_recorded_program_and_refuse_a_changed_one_naming_the_fix() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let mut t = TestHome::new(&sesame.url);
    let port = gateway_port();
    provision(&t, "ziggy", port);
    // From now on no `openclaw` is named, and none is on PATH.
    t.name_openclaw = false;
    let without_openclaw = |args: &[&str]| Run::from_output(t.command(args).env("PATH", "/usr/bin:/bin").output().unwrap());
    without_openclaw(&["stop", "ziggy"]).expect(0);
    let started = without_openclaw(&["--json", "start", "ziggy"]).expect(0).json();
    assert_eq!((started["outcome"]["state"].as_str(), get_status(port, "/healthz")), (Some("running"), Some(200)));
    let running = without_openclaw(&["--json", "restart", "ziggy"]).expect(0).json()["outcome"]["pid"].as_u64().unwrap() as u32;

    // An OpenClaw changed under the service is refused before anything is stopped.
    let launcher = std::fs::read_to_string(&t.openclaw).unwrap();
    std::fs::write(&t.openclaw, format!("{launcher}# upgraded\n")).unwrap();
    let refused = without_openclaw(&["--json", "restart", "ziggy"]).expect(2);
    let message = refused.json()["error"]["message"].as_str().unwrap().to_string();
    let fix = format!("agent-provisioner start ziggy --openclaw-bin {}", t.openclaw.display());
    assert!(message.contains("changed since it was recorded") && message.contains(&fix), "{message}");
    assert!(is_alive(running) && get_status(port, "/healthz") == Some(200), "the gateway was left running");

    // A vanished one too; naming the new program re-points the service to it.
    let moved = t.temp.path().join("openclaw-new");
    std::fs::rename(&t.openclaw, &moved).unwrap();
    let refused = without_openclaw(&["start", "ziggy"]).expect(2);
    assert!(refused.stderr.contains("is gone") && refused.stderr.contains("--openclaw-bin PATH"), "{}", refused.stderr);
    let repointed = without_openclaw(&["--json", "--openclaw-bin", moved.to_str().unwrap(), "restart", "ziggy"]).expect(0).json();
    assert_ne!(repointed["outcome"]["pid"].as_u64().unwrap() as u32, running);
    assert_eq!(get_status(port, "/healthz"), Some(200));
    let record = std::fs::read_to_string(t.home.join(".local/state/agent-provisioner/services/com.openclaw.ziggy.json")).unwrap();
    assert!(record.contains(moved.to_str().unwrap()), "the service now runs {}: {record}", moved.display());
    without_openclaw(&["restart", "ziggy"]).expect(0);
}

fn walk_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_dir() {
            out.extend(walk_files(&entry.path()).into_iter().map(|f| format!("{name}/{f}")));
        } else {
            out.push(name);
        }
    }
    out
}

#[test]
fn deprovision_refuses_the_lead_unknown_handles_and_a_corrupt_registry() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let mut t = TestHome::new(&sesame.url);
    // The lead lives in a profile home, ~/.openclaw-atlas.
    std::fs::rename(t.lead(), t.home.join(".openclaw-atlas")).unwrap();
    let lead = t.home.join(".openclaw-atlas");
    t.extra = vec!["--lead-home".into(), lead.display().to_string()];
    provision(&t, "echo", gateway_port());
    let registry = lead.join("agent-provisioner/family.json");

    let run = t.run(&["deprovision", "atlas"]).expect(2);
    assert!(run.stdout.contains("atlas is the lead itself"), "{}", run.stdout);
    let run = t.run(&["deprovision", "ghost"]).expect(2);
    assert!(run.stdout.contains("ghost is not a registered sibling"), "{}", run.stdout);
    let run = t.run(&["deprovision", "../echo"]).expect(2);
    assert!(run.stdout.contains("invalid handle"), "{}", run.stdout);

    let good = std::fs::read_to_string(&registry).unwrap();
    std::fs::write(&registry, "{ corrupt").unwrap();
    let run = t.run(&["deprovision", "echo"]).expect(2);
    assert!(run.stdout.contains("is corrupt") && run.stdout.contains("family.json"), "{}", run.stdout);
    assert_eq!(std::fs::read_to_string(&registry).unwrap(), "{ corrupt", "never silently rewritten");
    assert!(t.sibling("echo").is_dir() && t.gateway_pid("echo").is_some(), "nothing was removed");
    std::fs::write(&registry, good).unwrap();

    // A registry that disagrees with the disk is reported by `list`, not rewritten.
    t.run(&["stop", "echo"]).expect(0);
    std::fs::remove_file(t.home.join(".local/state/agent-provisioner/services/com.openclaw.echo.json")).unwrap();
    let list = t.run(&["--json", "list"]).expect(0).json();
    assert_eq!(list["members"][0]["problems"], json!(["its service com.openclaw.echo is not installed"]));
}

#[test]
fn ports_are_planned_clear_of_every_siblings_claimed_range() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let base = gateway_port();
    let _spare = (gateway_port(), gateway_port()); // keep the next ranges free for the new sibling
    provision(&t, "fay", base);

    let task = t.task("gus", base + 1, |_| {});
    let plan = t.run(&["--json", "provision", "--plan", "--task", task.to_str().unwrap()]).expect(0).json();
    let warnings = plan["plan"]["warnings"].to_string();
    assert!(warnings.contains("sibling fay's gateway"), "the plan flags the collision: {warnings}");
    let refused = t.provision(&task).expect(2).json();
    assert_eq!(refused["error"]["field"], "gatewayPort");
    assert!(!t.sibling("gus").exists());

    let range = base.to_string();
    let auto = t.run(&["--json", "provision", "--auto-port", "--port-range-start", &range, "--task", task.to_str().unwrap()]).expect(0).json();
    let chosen = auto["outcome"]["port"].as_u64().unwrap() as u16;
    assert!(chosen > base + 110, "{chosen} must keep clear of {base}..{}", base + 110);
    let config: Value = serde_json::from_str(&std::fs::read_to_string(t.sibling("gus").join("openclaw.json")).unwrap()).unwrap();
    assert_eq!(config["gateway"]["port"], chosen, "the chosen port is in openclaw.json");
    assert_eq!(get_status(chosen, "/healthz"), Some(200), "and the service runs on it");

    let ports = t.run(&["--json", "ports"]).expect(0).json();
    let claims = ports["ports"]["claims"].as_array().unwrap();
    assert_eq!(claims.len(), 2);
    assert!(claims.iter().any(|c| c["handle"] == "fay" && c["listening"].as_array().unwrap().contains(&json!(base))));
}

#[test]
fn the_skill_installs_into_the_lead_home_and_runs_from_there() {
    let t = TestHome::new("https://api.sesame.space");
    let bin_dir = t.temp.path().join("bin");
    let run = t.run(&["--json", "skill", "install", "--bin-dir", bin_dir.to_str().unwrap()]).expect(0);
    assert_eq!(run.json()["ok"], true);
    let skill = t.lead().join("skills/agent-provisioner");
    for file in ["SKILL.md", "bin/agent-provisioner"] {
        assert!(skill.join(file).is_file(), "{file}");
    }
    assert!(!skill.join("agent-provisioner.wasm").exists() && !skill.join("templates").exists(), "only what runs is installed");
    let text = std::fs::read_to_string(skill.join("SKILL.md")).unwrap();
    let front = text.strip_prefix("---\n").unwrap().split("\n---\n").next().unwrap();
    let yaml = &yaml_rust2::YamlLoader::load_from_str(front).unwrap()[0];
    assert_eq!(yaml["name"].as_str(), Some("agent-provisioner"));
    assert!(yaml["description"].as_str().unwrap().contains("sibling OpenClaw agents"));
    assert_eq!(yaml["metadata"]["openclaw"]["requires"]["bins"][0].as_str(), Some("agent-provisioner"));
    assert!(text.contains("{baseDir}/bin/agent-provisioner provision --task - --json"));

    let again = t.run(&["--json", "skill", "install", "--bin-dir", bin_dir.to_str().unwrap()]).expect(0).json();
    assert!(again["skill"]["files"].as_array().unwrap().iter().all(|f| f["state"] == "unchanged"), "idempotent: {again}");
    t.run(&["skill", "install", "--check", "--bin-dir", bin_dir.to_str().unwrap()]).expect(0);
    std::fs::write(skill.join("SKILL.md"), "old").unwrap();
    let stale = t.run(&["skill", "install", "--check", "--bin-dir", bin_dir.to_str().unwrap()]).expect(1);
    assert!(stale.stdout.contains("outdated") && stale.stdout.contains("SKILL.md"), "{}", stale.stdout);

    // The installed binary works, through the PATH link too.
    for exe in [skill.join("bin/agent-provisioner"), bin_dir.join("agent-provisioner")] {
        let out = Command::new(&exe).arg("--version").output().unwrap();
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("agent-provisioner "), "{exe:?}");
    }
    let grants = Command::new(skill.join("bin/agent-provisioner"))
        .args(["--home", t.home.to_str().unwrap(), "--service-manager", "direct", "grants"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&grants.stdout).contains("(the lead's workspace notes, read-only)"));
    let grants = Command::new(skill.join("bin/agent-provisioner"))
        .args(["--home", t.home.to_str().unwrap(), "--service-manager", "direct", "--json", "grants"])
        .output()
        .unwrap();
    let grants = Run { code: grants.status.code().unwrap(), stdout: String::from_utf8_lossy(&grants.stdout).into(), stderr: String::new() }.json();
    assert!(grants["grants"].as_array().unwrap().iter().any(|g| g.as_str().unwrap().contains("workspace notes")), "{grants}");

    // The install compiles the component into the cache the binary uses: the first
    // command after it loads the compiled component instead of compiling it.
    let cache = t.temp.path().join("fresh-cache");
    let installed = skill.join("bin/agent-provisioner");
    let as_installed = |args: &[&str]| {
        let out = Command::new(&installed).args(["--home", t.home.to_str().unwrap(), "--cache-dir", cache.to_str().unwrap()]).args(args).output().unwrap();
        Run::from_output(out)
    };
    let warmed = as_installed(&["--json", "skill", "install", "--no-bin-link"]).expect(0).json();
    let entry = warmed["skill"]["files"].as_array().unwrap().iter().find(|f| f["path"].as_str().unwrap().ends_with(".cwasm")).cloned().unwrap();
    assert_eq!(entry["state"], "installed", "{warmed}");
    assert!(std::path::Path::new(entry["path"].as_str().unwrap()).starts_with(&cache));
    assert!(as_installed(&["skill", "install", "--check", "--no-bin-link"]).expect(0).stdout.contains("current"));
    let task = repo().join("examples/task.json");
    let first = as_installed(&["--timings", "--service-manager", "direct", "provision", "--plan", "--task", task.to_str().unwrap()]).expect(0);
    assert!(first.stderr.contains("\"component\":\"cached\""), "{}", first.stderr);
    std::fs::write(entry["path"].as_str().unwrap(), "damaged").unwrap();
    let damaged = as_installed(&["skill", "install", "--check", "--no-bin-link"]).expect(1);
    assert!(damaged.stdout.lines().any(|l| l.contains("outdated") && l.contains(".cwasm")), "{}", damaged.stdout);
}
