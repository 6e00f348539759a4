//! The agent-facing contract: every command's `--json` output follows the published JSON
//! Schema (`schema/output.schema.json`, which `agent-provisioner schema` prints). Every
//! test that reads a document checks it (`Run::json`); this one runs each command once,
//! success and error alike.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use support::*;

#[test]
fn the_schema_command_prints_the_published_schema() {
    let t = TestHome::new("https://api.sesame.space");
    let run = t.run(&["schema"]).expect(0);
    assert_eq!(run.stdout, std::fs::read_to_string(repo().join("schema/output.schema.json")).unwrap());
    let schema: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(schema["title"], "Output");
}

#[test]
fn every_command_prints_one_document_that_follows_the_schema() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let task = t.task("nova", gateway_port(), |_| {});
    let task = task.to_str().unwrap();
    let bin_dir = t.temp.path().join("bin");
    let mut seen = BTreeSet::new();
    let mut check = |args: &[&str], code: i32| {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let doc = t.run(&full).expect(code).json();
        assert_eq!(doc["exit_code"], code, "{doc}");
        assert_eq!(doc["ok"], doc.get("error").is_none(), "{doc}");
        seen.insert(doc["command"].as_str().unwrap().to_string());
        doc
    };
    let plan = check(&["provision", "--plan", "--task", task], 0);
    assert!(plan["plan"]["files"].is_array());
    let outcome = check(&["provision", "--task", task], 0);
    assert_eq!(outcome["outcome"]["handle"], "nova");
    assert_eq!(check(&["stop", "nova"], 0)["outcome"]["state"], "stopped");
    assert_eq!(check(&["start", "nova"], 0)["outcome"]["state"], "running");
    check(&["restart", "nova"], 0);
    assert_eq!(check(&["health"], 0)["health"]["siblings"][0]["state"], "running");
    assert_eq!(check(&["list"], 0)["members"][0]["handle"], "nova");
    assert!(check(&["ports"], 0)["ports"]["claims"].is_array());
    assert!(check(&["grants"], 0)["grants"].as_array().unwrap().len() > 5);
    assert!(check(&["skill", "install", "--bin-dir", bin_dir.to_str().unwrap()], 0)["skill"]["files"].is_array());
    assert!(check(&["deprovision", "nova"], 0)["outcome"]["archive"].is_string());
    assert_eq!(check(&["restore", "nova"], 0)["outcome"]["restored"]["files"].as_u64().map(|n| n > 0), Some(true));
    // Errors, each kind.
    assert_eq!(check(&["rollback", "nova"], 2)["error"]["kind"], "refused");
    let invalid = t.task("Bad Handle", gateway_port(), |_| {});
    assert_eq!(check(&["provision", "--task", invalid.to_str().unwrap()], 2)["error"]["kind"], "invalid-input");
    sesame.set_faults(serde_json::json!([{ "method": "POST", "path_prefix": "/api/v1/vault/vaults", "responses": [{"status": 500}, {"status": 500}, {"status": 500}] }]));
    let failed = check(&["provision", "--task", t.task("vega", gateway_port(), |_| {}).to_str().unwrap()], 1);
    assert_eq!((failed["error"]["kind"].as_str(), failed["error"]["step"].as_str()), (Some("failed"), Some("vault")));
    let host = check(&["--lead-home", "/nonexistent/lead", "list"], 2);
    assert_eq!(host["error"]["kind"], "host");
    let expected = ["deprovision", "grants", "health", "list", "plan", "ports", "provision", "restart", "restore", "rollback", "skill", "start", "stop"];
    assert_eq!(seen, expected.iter().map(|s| s.to_string()).collect(), "every command was checked");
}
