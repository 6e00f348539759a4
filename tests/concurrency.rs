//! Provisions side by side: several processes at once and one run of several tasks. Each
//! asks for the same port with `--auto-port` and waits for a gateway that is slow to
//! start, so without the journals' port claims they would pick the same range (the bind
//! test sees nothing yet). They never share a port range or a home; a failing task rolls
//! back only its own sibling; processes killed mid-way leave journals that `rollback` and
//! `provision --resume` recover; the run of several holds its deadline. Nothing here
//! asserts on time.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;
use support::*;

/// The tests here take runs of consecutive bases with `--auto-port`: one at a time.
static PORTS: Mutex<()> = Mutex::new(());

const HANDLES: [&str; 4] = ["alpha", "bravo", "charlie", "delta"];

fn journal(t: &TestHome, handle: &str) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(t.lead().join(format!("agent-provisioner/journal/{handle}.json"))).ok()?).ok()
}

/// A home whose gateways take `start_ms` to answer, and a task per handle, all asking for
/// the same port.
fn family(sesame: &SesameStandin, start_ms: u32, handles: &[&str]) -> (TestHome, u16, Vec<PathBuf>) {
    let mut t = TestHome::new(&sesame.url);
    t.openclaw = fake_openclaw(t.temp.path(), &format!("slow-start:{start_ms}"));
    let port = gateway_port();
    let tasks = handles.iter().map(|h| t.task(h, port, |_| {})).collect();
    (t, port, tasks)
}

/// The ports every claim of `ports --json` holds, pairwise disjoint, and the bases.
fn assert_disjoint_claims(t: &TestHome, handles: &[&str]) -> Vec<u16> {
    let report = t.run(&["--json", "ports"]).expect(0).json();
    let claims = report["ports"]["claims"].as_array().unwrap().clone();
    let named: BTreeSet<&str> = claims.iter().map(|c| c["handle"].as_str().unwrap()).collect();
    assert_eq!(named, handles.iter().copied().collect(), "{report:#}");
    let mut seen = BTreeSet::new();
    for c in &claims {
        let base = c["base"].as_u64().unwrap() as u16;
        for port in (base..=base + 2).chain(base + 11..=base + 110) {
            assert!(seen.insert(port), "port {port} of {} is claimed twice: {report:#}", c["handle"]);
        }
    }
    claims.iter().map(|c| c["base"].as_u64().unwrap() as u16).collect()
}

fn auto_port(port: u16) -> [String; 3] {
    ["--auto-port".into(), "--port-range-start".into(), port.to_string()]
}

#[test]
fn processes_started_at_once_never_share_a_port_range_or_a_home() {
    let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let (t, port, tasks) = family(&sesame, 1500, &HANDLES);
    let children: Vec<_> = tasks
        .iter()
        .map(|task| {
            let mut args = vec!["--json".to_string(), "provision".into(), "--task".into(), task.display().to_string()];
            args.extend(auto_port(port));
            t.command(&args.iter().map(String::as_str).collect::<Vec<_>>()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    let runs: Vec<Run> = children.into_iter().map(|c| Run::from_output(c.wait_with_output().unwrap())).collect();
    for (handle, run) in HANDLES.iter().zip(&runs) {
        assert_eq!(run.code, 0, "{handle}: {}\n{}", run.stdout, run.stderr);
        assert_eq!(run.json()["outcome"]["oc_home"], t.sibling(handle).display().to_string());
    }
    let bases = assert_disjoint_claims(&t, &HANDLES);
    for (handle, base) in HANDLES.iter().zip(bases) {
        assert!(t.sibling(handle).join("openclaw.json").is_file(), "{handle} has its own home");
        assert_eq!(get_status(base, "/healthz"), Some(200), "{handle} answers on its own port");
        assert!(journal(&t, handle).is_none(), "{handle}'s journal is gone");
    }
    let members = t.run(&["--json", "list"]).expect(0).json()["members"].as_array().unwrap().len();
    assert_eq!(members, HANDLES.len(), "every sibling is registered: no registry update was lost");
}

/// Writes the tasks into a directory of their own, as `--task DIR` takes them.
fn task_dir(t: &TestHome, tasks: &[PathBuf]) -> PathBuf {
    let dir = t.temp.path().join("tasks");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, task) in tasks.iter().enumerate() {
        std::fs::copy(task, dir.join(format!("{i}-{}", task.file_name().unwrap().to_string_lossy()))).unwrap();
    }
    dir
}

#[test]
fn one_run_of_a_directory_of_tasks_provisions_them_side_by_side_in_one_report() {
    let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let handles = &HANDLES[..3];
    let (t, port, tasks) = family(&sesame, 1500, handles);
    let dir = task_dir(&t, &tasks);
    let mut args = vec!["provision".to_string(), "--task".into(), dir.display().to_string()];
    args.extend(auto_port(port));
    let run = t.run(&args.iter().map(String::as_str).collect::<Vec<_>>()).expect(0);
    assert!(run.stdout.starts_with("provision of 3 tasks: 3 done, 0 not (exit 0)"), "{}", run.stdout);
    for (i, handle) in handles.iter().enumerate() {
        assert!(run.stdout.contains(&format!("provisioned {handle}, running as com.openclaw.{handle}")), "{}", run.stdout);
        let prefix = format!("[{i}-task-{handle}-{port}] ==> ");
        assert!(run.stderr.lines().any(|l| l.starts_with(&prefix)), "progress is prefixed with the task ({prefix}):\n{}", run.stderr);
    }
    assert_eq!(run.stderr.matches("sandbox grants:").count(), 1, "the grants are shown once:\n{}", run.stderr);
    assert_disjoint_claims(&t, handles);
}

#[test]
fn a_failing_task_rolls_back_only_its_own_sibling_and_the_report_has_every_task() {
    let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let (t, port, mut tasks) = family(&sesame, 500, &HANDLES[..2]);
    // bravo's vault is refused by Sesame; a third task is not valid at all.
    let rule = json!({ "method": "POST", "path_prefix": "/api/v1/vault/vaults", "body_contains": "bravo-main", "responses": [{"status": 400}] });
    sesame.set_faults(json!([rule]));
    tasks.push(t.task("Charlie", port, |_| {}));
    let mut args = vec!["--json".to_string(), "provision".into()];
    tasks.iter().for_each(|task| args.extend(["--task".to_string(), task.display().to_string()]));
    args.extend(auto_port(port));
    let run = t.run(&args.iter().map(String::as_str).collect::<Vec<_>>()).expect(1);
    let doc = run.json();
    assert_eq!((doc["command"].as_str(), doc["ok"].as_bool(), doc["exit_code"].as_i64()), (Some("provision"), Some(false), Some(1)));
    let each: Vec<&Value> = doc["tasks"].as_array().unwrap().iter().map(|task| &task["output"]).collect();
    assert_eq!(doc["tasks"][0]["task"], tasks[0].display().to_string(), "in the order given");
    assert_eq!((each[0]["ok"].as_bool(), each[0]["outcome"]["handle"].as_str()), (Some(true), Some("alpha")));
    assert_eq!((each[1]["exit_code"].as_i64(), each[1]["error"]["kind"].as_str(), each[1]["error"]["step"].as_str()), (Some(1), Some("failed"), Some("vault")));
    assert_eq!((each[2]["exit_code"].as_i64(), each[2]["error"]["kind"].as_str()), (Some(2), Some("invalid-input")));

    // alpha runs untouched; bravo is rolled back (its home archived), with no journal left.
    assert_eq!(get_status(each[0]["outcome"]["port"].as_u64().unwrap() as u16, "/healthz"), Some(200));
    assert!(t.sibling("alpha").join("openclaw.json").is_file());
    assert!(!t.sibling("bravo").exists() && journal(&t, "bravo").is_none() && journal(&t, "alpha").is_none());
    assert!(each[1]["error"]["archive"].as_str().is_some_and(|a| Path::new(a).is_file()));
    let members: Vec<String> = t.run(&["--json", "list"]).expect(0).json()["members"].as_array().unwrap().iter().map(|m| m["handle"].as_str().unwrap().to_string()).collect();
    assert_eq!(members, ["alpha"]);
}

#[test]
fn the_same_handle_twice_at_once_is_refused_cleanly_for_one() {
    let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let (t, port, tasks) = family(&sesame, 3000, &["alpha"]);
    let task = tasks[0].display().to_string();
    let mut args = vec!["--json".to_string(), "provision".into(), "--task".into(), task.clone(), "--task".into(), task];
    args.extend(auto_port(port));
    let doc = t.run(&args.iter().map(String::as_str).collect::<Vec<_>>()).expect(2).json();
    let outputs: Vec<&Value> = doc["tasks"].as_array().unwrap().iter().map(|task| &task["output"]).collect();
    let (done, refused): (Vec<&Value>, Vec<&Value>) = outputs.into_iter().partition(|o| o["ok"] == true);
    assert_eq!((done.len(), refused.len()), (1, 1), "{doc:#}");
    let message = refused[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("is working on alpha") && message.contains("wait for it to end"), "{message}");
    assert_eq!(get_status(done[0]["outcome"]["port"].as_u64().unwrap() as u16, "/healthz"), Some(200), "the first runs on");
}

#[test]
fn runs_killed_during_a_concurrent_provision_leave_each_journal_recoverable() {
    let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let handles = &HANDLES[..3];
    let (mut t, port, tasks) = family(&sesame, 8000, handles);
    let mut args = vec!["--json".to_string(), "provision".into()];
    tasks.iter().for_each(|task| args.extend(["--task".to_string(), task.display().to_string()]));
    args.extend(auto_port(port));
    // One run of three tasks, in a process group of its own, killed (-9, the parent and its
    // children) while every sibling waits for its gateway.
    let mut parent = t.command(&args.iter().map(String::as_str).collect::<Vec<_>>()).process_group(0).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    eventually("every provision waiting for health", Duration::from_secs(60), || {
        handles.iter().all(|h| journal(&t, h).is_some_and(|j| j["current"] == "health"))
    });
    // While they run, their journals are not interrupted ones: rollback refuses to touch one.
    let live = t.run(&["--json", "rollback", "alpha"]).expect(2).json()["error"]["message"].as_str().unwrap().to_string();
    assert!(live.contains("is working on alpha") && live.contains("(provision)"), "{live}");
    assert!(journal(&t, "alpha").is_some() && t.sibling("alpha").exists(), "nothing was undone");
    kill_group(parent.id());
    parent.wait().unwrap();

    // Each journal keeps its claim; no run holds the lock or a claim any more.
    let bases = assert_disjoint_claims(&t, handles);
    let report = t.run(&["--json", "ports"]).expect(0).json();
    assert!(report["ports"]["claims"].as_array().unwrap().iter().all(|c| c["pending"] == true), "{report:#}");
    let refused = t.provision(&tasks[0]).expect(2).json()["error"]["message"].as_str().unwrap().to_string();
    assert!(refused.contains("was interrupted at health") && refused.contains("rollback alpha"), "{refused}");

    t.openclaw = fake_openclaw(t.temp.path(), "serve");
    t.run(&["--json", "rollback", "alpha"]).expect(0);
    assert!(!t.sibling("alpha").exists() && journal(&t, "alpha").is_none());
    let resumed = t.run(&["--json", "provision", "--resume", "--task", tasks[1].to_str().unwrap()]).expect(0).json();
    assert_eq!(resumed["outcome"]["port"].as_u64(), Some(u64::from(bases[1])), "bravo keeps the port its journal claimed");
    assert_eq!(get_status(bases[1], "/healthz"), Some(200));
    t.run(&["--json", "rollback", "charlie"]).expect(0);
    assert!(handles.iter().all(|h| journal(&t, h).is_none()));
    let members: Vec<String> = t.run(&["--json", "list"]).expect(0).json()["members"].as_array().unwrap().iter().map(|m| m["handle"].as_str().unwrap().to_string()).collect();
    assert_eq!(members, ["bravo"]);
}

#[test]
fn a_run_of_several_tasks_holds_its_deadline_and_passes_each_child_what_is_left() {
    let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let (mut t, port, tasks) = family(&sesame, 0, &HANDLES[..2]);
    // Gateways that never answer: each run waits for one until its own deadline ends it.
    t.openclaw = fake_openclaw(t.temp.path(), "hang");
    let mut args = vec!["--json".to_string(), "--deadline".into(), "6".into(), "provision".into(), "--jobs".into(), "1".into()];
    tasks.iter().for_each(|task| args.extend(["--task".to_string(), task.display().to_string()]));
    args.extend(auto_port(port));
    let started = std::time::Instant::now();
    let run = t.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    report(&format!("a run of two hanging tasks with --deadline 6 took {:?}", started.elapsed()));
    let doc = run.json();
    let message = |i: usize| doc["tasks"][i]["output"]["error"]["message"].as_str().unwrap_or_default().to_string();
    assert_eq!(doc["tasks"][0]["output"]["ok"], false, "the first task's gateway never answered: {doc:#}");
    let late = message(1);
    assert!(
        late.contains(&format!("{}: not run: less than a second of the deadline of 6 s was left when its turn came", tasks[1].display())),
        "the second task got what was left of the deadline, not the whole of it: {doc:#}"
    );
    assert!(!t.sibling("bravo").exists(), "the task that was not run wrote nothing");
}

