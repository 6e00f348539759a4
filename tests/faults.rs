//! The fault matrix: every Sesame call of provision (with its rollback), deprovision and
//! health, against every kind of failure, each checked for the documented outcome:
//! retried and succeeded (exit 0); rolled back completely (exit 1: no home, no service,
//! an archive, the rollback calls made as far as the API allows); or the agent left
//! running with what was not reported (exit 3).

mod support;

use serde_json::{Value, json};
use std::sync::Mutex;
use support::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Provision,
    Rollback,
    Deprovision,
    Health,
}

/// One Sesame call, as the stand-in can single it out.
struct Call {
    name: &'static str,
    phase: Phase,
    method: &'static str,
    path: &'static str,
    body: &'static str,
    /// `describe()` of the call, as rollback steps name it.
    action: &'static str,
}

const CALLS: [Call; 13] = [
    Call { name: "vault create", phase: Phase::Provision, method: "POST", path: "/api/v1/vault/vaults", body: "\"description\"", action: "" },
    Call { name: "vault owner", phase: Phase::Provision, method: "POST", path: "/api/v1/vault/vaults/", body: "\"owner\"", action: "" },
    Call { name: "vault admin", phase: Phase::Provision, method: "POST", path: "/api/v1/vault/vaults/", body: "\"admin\"", action: "" },
    Call { name: "member online", phase: Phase::Provision, method: "PATCH", path: "/api/v1/families/", body: "\"online\"", action: "" },
    Call { name: "task activity", phase: Phase::Provision, method: "POST", path: "/api/v1/tasks/", body: "\"progress\"", action: "" },
    Call { name: "task done", phase: Phase::Provision, method: "PATCH", path: "/api/v1/tasks/", body: "\"done\"", action: "" },
    Call { name: "welcome message", phase: Phase::Provision, method: "POST", path: "/api/v1/channels/", body: "\"chat\"", action: "" },
    Call { name: "rollback: member error", phase: Phase::Rollback, method: "PATCH", path: "/api/v1/families/", body: "\"error\"", action: "PATCH /families/" },
    Call { name: "rollback: blocker", phase: Phase::Rollback, method: "POST", path: "/api/v1/tasks/", body: "\"blocker\"", action: "POST /tasks/" },
    Call { name: "rollback: error message", phase: Phase::Rollback, method: "POST", path: "/api/v1/channels/", body: "\"intent\":\"error\"", action: "POST /channels/" },
    Call { name: "deprovision: member", phase: Phase::Deprovision, method: "PATCH", path: "/api/v1/families/", body: "deprovisioned", action: "" },
    Call { name: "health: member status", phase: Phase::Health, method: "PATCH", path: "/api/v1/families/", body: "\"online\"", action: "" },
    Call { name: "health: summary", phase: Phase::Health, method: "POST", path: "/api/v1/channels/", body: "Family health", action: "" },
];

/// One kind of failure: the stand-in's scripted answers (enough for every attempt).
struct Kind {
    name: &'static str,
    responses: fn() -> Value,
    /// Whether the client gets through after retrying.
    recovers: bool,
}

const KINDS: [Kind; 7] = [
    Kind { name: "500", responses: || json!([{"status": 500}, {"status": 500}, {"status": 500}]), recovers: false },
    Kind { name: "503, then ok", responses: || json!([{"status": 503}]), recovers: true },
    Kind { name: "429 Retry-After", responses: || json!([{"status": 429, "retry_after": "1"}]), recovers: true },
    Kind { name: "timeout", responses: || json!([{"hang": true}, {"hang": true}, {"hang": true}]), recovers: false },
    Kind { name: "dropped", responses: || json!([{"close": true}, {"close": true}, {"close": true}]), recovers: false },
    Kind { name: "malformed JSON", responses: || json!([{"malformed": true}]), recovers: true },
    Kind { name: "401", responses: || json!([{"status": 401}]), recovers: false },
];

fn rule(call: &Call, kind: &Kind) -> Value {
    json!({ "method": call.method, "path_prefix": call.path, "body_contains": call.body, "responses": (kind.responses)() })
}

fn home(api_url: &str) -> TestHome {
    let mut t = TestHome::new(api_url);
    t.extra = ["--api-timeout-ms", "400", "--api-attempts", "3", "--api-backoff-ms", "20"].map(String::from).to_vec();
    t
}

/// Whether a provision that failed was rolled back completely.
fn rolled_back(t: &TestHome, handle: &str, run: &Run) -> Result<(), String> {
    let error = &run.json()["error"];
    if error["kind"] != "failed" || !error["archive"].is_string() {
        return Err(format!("not a rollback: {error}"));
    }
    if t.sibling(handle).exists() || t.gateway_pid(handle).is_some() {
        return Err("home or service left behind".into());
    }
    Ok(())
}

/// Runs one cell; `Ok(exit code)` when the outcome is the documented one and the fault
/// was really served.
fn cell(call: &Call, kind: &Kind) -> Result<i32, String> {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let code = outcome(call, kind, &sesame)?;
    let served = sesame
        .requests()
        .iter()
        .filter(|r| {
            r["fault"] != ""
                && r["method"] == call.method
                && r["path"].as_str().unwrap().starts_with(call.path)
                && r["body"].to_string().contains(call.body)
        })
        .count();
    if served == 0 {
        return Err("the fault was never served".into());
    }
    Ok(code)
}

fn outcome(call: &Call, kind: &Kind, sesame: &SesameStandin) -> Result<i32, String> {
    let t = home(&sesame.url);
    let handle = "cell";
    let task = t.task(handle, gateway_port(), |_| {});
    // A malformed success is fine wherever the answer's body is not needed.
    let gets_through = kind.recovers && !(kind.name == "malformed JSON" && call.name == "vault create");
    let check = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_string()) };
    match call.phase {
        Phase::Provision => {
            sesame.set_faults(json!([rule(call, kind)]));
            let run = t.provision(&task);
            let vault_step = call.name.starts_with("vault");
            match (gets_through, vault_step) {
                (true, _) => check(run.code == 0, &format!("exit {} instead of 0: {}", run.code, run.stdout))?,
                (false, true) => {
                    check(run.code == 1, &format!("exit {} instead of 1: {}", run.code, run.stdout))?;
                    rolled_back(&t, handle, &run)?;
                    let rollback_calls = sesame.lines().iter().filter(|l| l.contains("/families/") || l.contains("/activity") || l.contains("/messages")).count();
                    check(rollback_calls == 3, &format!("{rollback_calls} rollback calls"))?;
                }
                (false, false) => {
                    check(run.code == 3, &format!("exit {} instead of 3: {}", run.code, run.stdout))?;
                    let unreported = run.json()["outcome"]["unreported"].to_string();
                    check(unreported.contains(&format!("{} ", call.method)), &format!("unreported: {unreported}"))?;
                    check(t.gateway_pid(handle).is_some_and(is_alive), "the agent is not running")?;
                }
            }
            Ok(run.code)
        }
        Phase::Rollback => {
            let trigger = json!({ "method": "POST", "path_prefix": "/api/v1/vault/vaults", "body_contains": "\"description\"", "responses": [{"status": 500}, {"status": 500}, {"status": 500}] });
            sesame.set_faults(json!([trigger, rule(call, kind)]));
            let run = t.provision(&task);
            check(run.code == 1, &format!("exit {} instead of 1: {}", run.code, run.stdout))?;
            rolled_back(&t, handle, &run)?;
            let steps = run.json()["error"]["rollback"].as_array().cloned().unwrap_or_default();
            let step = steps.iter().find(|s| s["action"].as_str().unwrap().starts_with(call.action)).ok_or("rollback step missing")?;
            check(step["ok"] == gets_through, &format!("rollback step {step}"))?;
            check(steps.iter().filter(|s| s["ok"] == false).count() == usize::from(!gets_through), "other rollback steps failed")?;
            Ok(run.code)
        }
        Phase::Deprovision | Phase::Health => {
            t.provision(&task).expect(0);
            sesame.set_faults(json!([rule(call, kind)]));
            let run = match call.phase {
                Phase::Deprovision => t.run(&["--json", "deprovision", handle]),
                _ => t.run(&["--json", "health", "--report", "--channel", "11111111-2222-4333-8444-555555555555"]),
            };
            check(run.code == if gets_through { 0 } else { 3 }, &format!("exit {}: {}", run.code, run.stdout))?;
            if call.phase == Phase::Deprovision {
                check(!t.sibling(handle).exists() && t.gateway_pid(handle).is_none(), "the sibling is not removed")?;
            }
            Ok(run.code)
        }
    }
}

/// With the API down (connection refused everywhere): provision is refused at once by the
/// host's one short check, exit 2, nothing written; deprovision and health exit 3.
fn api_down(phase: Phase) -> Result<i32, String> {
    let closed = format!("http://127.0.0.1:{}", gateway_port());
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let mut t = home(&sesame.url);
    let task = t.task("down", gateway_port(), |_| {});
    if phase != Phase::Provision {
        t.provision(&task).expect(0);
    }
    t.api_url = closed;
    let run = match phase {
        Phase::Provision => t.provision(&task),
        Phase::Deprovision => t.run(&["--json", "deprovision", "down"]),
        _ => t.run(&["--json", "health", "--report"]),
    };
    let expected = if phase == Phase::Provision { 2 } else { 3 };
    if run.code != expected {
        return Err(format!("exit {} instead of {expected}: {}", run.code, run.stdout));
    }
    if phase == Phase::Provision {
        let refused = run.json()["error"]["message"].as_str().is_some_and(|m| m.starts_with("cannot reach the Sesame API"));
        if !refused || t.sibling("down").exists() || t.home.join(".openclaw-archives").exists() {
            return Err(format!("not refused before anything was written: {}", run.stdout));
        }
    }
    Ok(run.code)
}

#[test]
fn every_sesame_call_against_every_fault() {
    let cells: Vec<(usize, usize)> = (0..CALLS.len()).flat_map(|c| (0..KINDS.len()).map(move |k| (c, k))).collect();
    let results = Mutex::new(vec![vec![String::new(); KINDS.len() + 1]; CALLS.len()]);
    let next = Mutex::new(cells.into_iter());
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                while let Some((c, k)) = next.lock().unwrap().next() {
                    let text = match cell(&CALLS[c], &KINDS[k]) {
                        Ok(code) => format!("ok (exit {code})"),
                        Err(why) => format!("FAIL: {why}"),
                    };
                    results.lock().unwrap()[c][k] = text;
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    for (c, phase) in [(0, Phase::Provision), (10, Phase::Deprovision), (11, Phase::Health)] {
        results[c][KINDS.len()] = match api_down(phase) {
            Ok(code) => format!("ok (exit {code})"),
            Err(why) => format!("FAIL: {why}"),
        };
    }

    let mut table = format!("{:<24}", "call \\ fault");
    for k in KINDS.iter().map(|k| k.name).chain(["API down"]) {
        table.push_str(&format!(" | {k:<16}"));
    }
    table.push('\n');
    let (mut passed, mut total) = (0, 0);
    for (call, row) in CALLS.iter().zip(&results) {
        table.push_str(&format!("{:<24}", call.name));
        for text in row {
            table.push_str(&format!(" | {:<16}", if text.is_empty() { "-" } else if text.starts_with("ok") { text.as_str() } else { "FAIL" }));
            if !text.is_empty() {
                total += 1;
                passed += usize::from(text.starts_with("ok"));
            }
        }
        table.push('\n');
    }
    table.push_str(&format!("cells passed: {passed}/{total}\n"));
    println!("{table}");
    std::fs::write(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault-matrix.txt"), &table).unwrap();
    let failures: Vec<String> = CALLS
        .iter()
        .zip(&results)
        .flat_map(|(call, row)| row.iter().enumerate().filter(|(_, t)| t.starts_with("FAIL")).map(move |(k, t)| {
            let kind = KINDS.get(k).map(|k| k.name).unwrap_or("API down");
            format!("{} × {kind}: {t}", call.name)
        }))
        .collect();
    assert!(failures.is_empty(), "{table}\n{failures:#?}");
}
