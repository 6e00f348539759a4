//! End to end against a real OpenClaw (`openclaw@2026.9.6` on Node 24, installed by
//! `scripts/install-openclaw.sh`): provision two real siblings, check the generated configs
//! with OpenClaw itself, run the lifecycle, check health, refuse a port conflict, and
//! deprovision — with the direct service backend and the Sesame stand-in.
//!
//! In CI (`CI` set) a failed OpenClaw install fails this suite; a local run without the
//! install skips it and says so.

mod support;

use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};
use support::real_openclaw::*;
use support::*;

#[test]
fn real_openclaw_siblings_from_provision_to_deprovision() {
    let Some(real) = openclaw() else { return };
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let mut t = TestHome::new(&sesame.url);
    t.openclaw = offline_launcher(t.temp.path(), &real);
    // Real gateways take ~15 s to answer; two at once on two cores, longer.
    t.extra = ["--health-timeout", "120", "--health-interval-ms", "500", "--probe-timeout-ms", "2000"].map(String::from).to_vec();
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

    // A task whose port the other sibling holds fails fast, naming the conflict, touching nothing.
    let before = t.tree();
    let started = Instant::now();
    let run = t.provision(&t.task("quark", siblings[1].1, |_| {})).expect(2);
    assert!(started.elapsed() < Duration::from_secs(20), "refused in {:?}", started.elapsed());
    let error = run.json()["error"].clone();
    assert_eq!(error["field"], "gatewayPort");
    assert!(error["message"].as_str().unwrap().contains("pixel"), "{error}");
    assert_eq!(t.tree(), before, "nothing written");

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
