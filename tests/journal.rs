//! Crash safety: a provision killed (SIGKILL) at each step boundary leaves a journal;
//! `rollback HANDLE` then undoes exactly what was done, `provision --resume` finishes it,
//! and a new provision of the same handle is refused while the journal exists.

mod support;

use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use support::*;

fn journal(t: &TestHome, handle: &str) -> Option<Value> {
    let path = t.lead().join(format!("agent-provisioner/journal/{handle}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Starts a provision of `task` and kills it once `at` holds.
fn kill_when(t: &TestHome, task: &Path, what: &str, mut at: impl FnMut() -> bool) {
    let mut child = t.command(&["--json", "provision", "--task", task.to_str().unwrap()]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    eventually(what, Duration::from_secs(30), || at() || child.try_wait().unwrap().is_some());
    assert!(child.try_wait().unwrap().is_none(), "the provision ended before {what}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A Sesame stand-in that never answers `path_prefix` requests whose body holds `body`.
fn hang_on(sesame: &SesameStandin, method: &str, path_prefix: &str) {
    sesame.set_faults(json!([{ "method": method, "path_prefix": path_prefix, "responses": [{"hang": true}] }]));
}

fn received(sesame: &SesameStandin, method: &str, path_prefix: &str) -> bool {
    sesame.requests().iter().any(|r| r["method"] == method && r["path"].as_str().unwrap().starts_with(path_prefix))
}

struct Interrupted {
    sesame: SesameStandin,
    t: TestHome,
    task: PathBuf,
    port: u16,
}

/// A provision of `handle` killed while `step` is under way.
fn interrupted(handle: &str, step: &str) -> Interrupted {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let mut t = TestHome::new(&sesame.url);
    let port = gateway_port();
    let task = t.task(handle, port, |_| {});
    match step {
        "vault" => {
            hang_on(&sesame, "POST", "/api/v1/vault/vaults");
            kill_when(&t, &task, "the vault request", || received(&sesame, "POST", "/api/v1/vault/vaults"));
        }
        "health" => {
            t.openclaw = fake_openclaw(t.temp.path(), "slow-start:8000");
            kill_when(&t, &task, "the health wait", || journal(&t, handle).is_some_and(|j| j["current"] == "health"));
        }
        "report" => {
            hang_on(&sesame, "PATCH", "/api/v1/families/");
            kill_when(&t, &task, "the first report", || received(&sesame, "PATCH", "/api/v1/families/"));
        }
        "welcome" => {
            hang_on(&sesame, "POST", "/api/v1/channels/");
            kill_when(&t, &task, "the welcome message", || received(&sesame, "POST", "/api/v1/channels/"));
        }
        other => panic!("no such boundary {other}"),
    }
    let j = journal(&t, handle).expect("a journal is left");
    assert_eq!(j["current"], if step == "welcome" { "report" } else { step }, "{j:#}");
    sesame.set_faults(json!([]));
    sesame.reset();
    if step == "health" {
        t.openclaw = fake_openclaw(t.temp.path(), "serve");
    }
    Interrupted { sesame, t, task, port }
}

fn assert_rolled_back(x: &Interrupted, handle: &str, expect_archive: bool) {
    let run = x.t.run(&["--json", "rollback", handle]).expect(0);
    let outcome = run.json()["outcome"].clone();
    assert!(journal(&x.t, handle).is_none(), "the journal is gone");
    assert!(!x.t.sibling(handle).exists(), "the home is gone");
    assert!(x.t.gateway_pid(handle).is_none() && get_status(x.port, "/healthz").is_none(), "no service left");
    assert_eq!(outcome["archive"].is_string(), expect_archive, "{outcome:#}");
    let lines = x.sesame.lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].starts_with("PATCH /api/v1/families/") && lines[1].ends_with("/activity") && lines[2].ends_with("/messages"));
    let registry = std::fs::read_to_string(x.t.lead().join("agent-provisioner/family.json")).unwrap_or_default();
    assert!(!registry.contains(&format!("\"{handle}\"")), "no registry entry is left");
}

fn assert_resumed(x: &Interrupted, handle: &str) {
    // A plain provision is refused while the journal exists, naming both ways out.
    let refused = x.t.provision(&x.task).expect(2);
    let message = refused.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("--resume") && message.contains(&format!("rollback {handle}")), "{message}");
    let run = x.t.run(&["--json", "provision", "--resume", "--task", x.task.to_str().unwrap()]).expect(0);
    assert_eq!(run.json()["outcome"]["handle"], handle);
    assert!(journal(&x.t, handle).is_none(), "the journal is gone");
    assert_eq!(get_status(x.port, "/healthz"), Some(200), "the sibling runs");
    let members = x.t.run(&["--json", "list"]).expect(0).json()["members"].clone();
    assert_eq!(members[0]["handle"], handle);
    assert!(x.sesame.lines().iter().any(|l| l.ends_with("/messages")), "the welcome message went out");
}

#[test]
fn killed_during_the_vault_step() {
    let x = interrupted("kilo", "vault");
    assert!(x.t.sibling("kilo").join("workspace/AGENTS.md").is_file(), "config and workspace were done");
    assert_rolled_back(&x, "kilo", true);
    let y = interrupted("lima", "vault");
    assert_resumed(&y, "lima");
    assert!(y.sesame.lines().contains(&"POST /api/v1/vault/vaults".to_string()), "the vault is created on resume");
}

#[test]
fn killed_while_waiting_for_health() {
    let x = interrupted("mike", "health");
    let pid = x.t.gateway_pid("mike").expect("the service was started");
    assert_rolled_back(&x, "mike", true);
    assert!(!is_alive(pid), "the gateway is stopped");
    let y = interrupted("nina", "health");
    assert_resumed(&y, "nina");
    assert!(!y.sesame.lines().iter().any(|l| l == "POST /api/v1/vault/vaults"), "the vault is not created twice");
}

#[test]
fn killed_while_reporting() {
    let x = interrupted("oscar", "report");
    assert_eq!(get_status(x.port, "/healthz"), Some(200), "the sibling was up when it was killed");
    assert_rolled_back(&x, "oscar", true);
    let y = interrupted("papa", "report");
    assert_resumed(&y, "papa");
    assert!(y.sesame.lines().contains(&"PATCH /api/v1/tasks/task-0001".to_string()));
}

#[test]
fn a_resumed_report_sends_only_what_sesame_did_not_get() {
    let x = interrupted("romeo", "welcome");
    let reported = journal(&x.t, "romeo").unwrap()["reported"].clone();
    assert_eq!(reported.as_array().map(Vec::len), Some(3), "member, activity and task status went through: {reported}");
    assert_resumed(&x, "romeo");
    let lines: Vec<String> = x.sesame.lines().into_iter().filter(|l| !l.starts_with("GET")).collect();
    assert_eq!(lines.len(), 1, "only the welcome message is sent again: {lines:?}");
    assert!(lines[0].starts_with("POST /api/v1/channels/") && lines[0].ends_with("/messages"), "{lines:?}");
}

#[test]
fn killed_while_installing_the_service() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let mut t = TestHome::new(&sesame.url);
    // A systemctl that hangs on daemon-reload the first time: the unit is written by then.
    let dir = t.temp.path();
    let systemctl = dir.join("systemctl");
    let script = format!(
        "#!/bin/sh\necho \"$*\" >> '{d}/calls.log'\nif [ \"$2\" = daemon-reload ] && [ ! -e '{d}/reloaded' ]; then touch '{d}/reloaded'; sleep 60; fi\nexit 0\n",
        d = dir.display()
    );
    std::fs::write(&systemctl, script).unwrap();
    std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    t.backend = "systemd";
    t.extra = vec!["--systemctl".into(), systemctl.display().to_string()];
    let task = t.task("quin", gateway_port(), |_| {});
    kill_when(&t, &task, "the service install", || dir.join("reloaded").exists());
    assert_eq!(journal(&t, "quin").unwrap()["current"], "service");
    let unit = t.home.join(".config/systemd/user/openclaw-sibling-quin.service");
    assert!(unit.is_file(), "the unit was written");
    sesame.reset();
    let run = t.run(&["--json", "rollback", "quin"]).expect(0);
    assert!(!unit.exists() && !t.sibling("quin").exists() && journal(&t, "quin").is_none());
    let calls = std::fs::read_to_string(dir.join("calls.log")).unwrap();
    assert!(calls.contains("--user disable --now openclaw-sibling-quin.service"), "{calls}");
    assert_eq!(run.json()["outcome"]["interrupted_at"], "service (under way)");
}

#[test]
fn rollback_without_a_journal_is_refused() {
    // A Sesame that answers: a provision (also --resume) is refused at once without one.
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let run = t.run(&["--json", "rollback", "ghost"]).expect(2);
    assert!(run.json()["error"]["message"].as_str().unwrap().contains("no interrupted provision of ghost"));
    let task = t.task("ghost", gateway_port(), |_| {});
    let run = t.run(&["--json", "provision", "--resume", "--task", task.to_str().unwrap()]).expect(2);
    assert!(run.json()["error"]["message"].as_str().unwrap().contains("no interrupted provision of ghost to resume"));
}
