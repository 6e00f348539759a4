//! Supervision where no service manager answers: with `--service-manager direct`, each
//! gateway runs under a supervisor (the host binary in a session of its own) that brings
//! it back when it dies, gives up on one that keeps dying and says so in `health`, and is
//! stopped, replaced and removed with its gateway by stop, start, restart and deprovision.

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

fn provisioned(handle: &str) -> (SesameStandin, TestHome, u16) {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let port = gateway_port();
    t.provision(&t.task(handle, port, |_| {})).expect(0);
    assert_eq!(get_status(port, "/healthz"), Some(200));
    (sesame, t, port)
}

/// `cmd` run by a shell that first opens descriptor 9 on `file`, not close-on-exec, as a
/// caller's pipe or file would reach the host.
fn with_descriptor_9(cmd: &Command, file: &Path) -> Command {
    let mut sh = Command::new("sh");
    sh.args(["-c", "exec 9>>\"$0\"; exec \"$@\""]).arg(file).arg(cmd.get_program()).args(cmd.get_args());
    for (name, value) in cmd.get_envs() {
        match value {
            Some(value) => sh.env(name, value),
            None => sh.env_remove(name),
        };
    }
    sh
}

/// Where the descriptors of `pid` lead.
fn descriptors(pid: u32) -> Vec<String> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten();
    fds.map(|fd| std::fs::read_link(fd.path()).unwrap_or_default().display().to_string()).collect()
}

/// `handle`'s entry in `health --json`.
fn health_of(t: &TestHome, handle: &str) -> Value {
    let run = t.run(&["--json", "health"]);
    let health = run.json()["health"].clone();
    health["siblings"].as_array().unwrap().iter().find(|s| s["handle"] == handle).unwrap().clone()
}

/// SIGKILL to one process.
fn sigkill(pid: u32) {
    Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
}

/// The NUL-separated strings of `/proc/<pid>/<file>`.
fn proc_strings(pid: u32, file: &str) -> Vec<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/{file}")).unwrap();
    bytes.split(|b| *b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

/// Live processes whose command line mentions `path` (a supervisor names its home's
/// record directory) or that run with `path` as their state directory (a gateway).
fn processes_of(path: &Path) -> Vec<u32> {
    let text = path.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .filter(|pid| {
            let mentions = |file: &str| std::fs::read(format!("/proc/{pid}/{file}")).is_ok_and(|b| String::from_utf8_lossy(&b).contains(&text));
            (mentions("cmdline") || mentions("environ")) && is_alive(*pid)
        })
        .collect()
}

#[test]
fn a_gateway_killed_with_sigkill_answers_again_by_itself() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let port = gateway_port();
    let task = t.task("sol", port, |_| {});
    let callers = t.temp.path().join("callers-file");
    let out = with_descriptor_9(&t.command(&["--json", "provision", "--task", task.to_str().unwrap()]), &callers).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let first = t.gateway_pid("sol").unwrap();
    let supervisor = t.supervisor_pid("sol").unwrap();

    // The supervisor is the host binary, in a session of its own, holding nothing of the host's.
    let services = t.services_dir();
    assert_eq!(proc_strings(supervisor, "cmdline")[1..], ["__supervise", "--services", services.to_str().unwrap(), "com.openclaw.sol"]);
    assert!(proc_strings(supervisor, "environ").is_empty(), "no environment, so no key");
    let stat = std::fs::read_to_string(format!("/proc/{supervisor}/stat")).unwrap();
    let session: u32 = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().nth(3).unwrap().parse().unwrap();
    assert_eq!(session, supervisor, "it leads its own session");
    // It holds nothing open but /dev/null and its record directory: no lock or log of the
    // lead's, and none of its caller's descriptors (nor does the gateway).
    let expected = ["/dev/null".to_string(), services.display().to_string()];
    let held = descriptors(supervisor);
    assert!(held.iter().all(|d| expected.contains(d)), "the supervisor holds {held:?}");
    let callers = callers.display().to_string();
    assert!(!descriptors(first).contains(&callers), "the gateway holds the caller's descriptor: {:?}", descriptors(first));

    sigkill(first);
    let killed = Instant::now();
    eventually("a new gateway to answer", Duration::from_secs(20), || {
        t.gateway_pid("sol").is_some_and(|pid| pid != first) && get_status(port, "/healthz") == Some(200)
    });
    report(&format!("MEASURED restart after SIGKILL: {:.2} s to answer /healthz again", killed.elapsed().as_secs_f64()));
    let sol = health_of(&t, "sol");
    assert_eq!((sol["state"].as_str(), sol["healthy"].as_bool()), (Some("running"), Some(true)), "{sol}");
    assert!(sol["restarts"].as_u64().unwrap() >= 1, "{sol}");
    assert_eq!(sol["pid"].as_u64(), t.gateway_pid("sol").map(u64::from));
    assert_eq!(sol["problems"], serde_json::json!([]));
    assert_eq!(t.supervisor_pid("sol"), Some(supervisor), "the same supervisor brought it back");
}

#[test]
fn stop_start_restart_and_deprovision_leave_no_process_behind() {
    let (_sesame, t, port) = provisioned("tau");
    let (supervisor, gateway) = (t.supervisor_pid("tau").unwrap(), t.gateway_pid("tau").unwrap());

    t.run(&["--json", "stop", "tau"]).expect(0);
    assert!(!is_alive(supervisor) && !is_alive(gateway), "stop ends the supervisor and the gateway");
    assert!(t.supervision("tau").is_none(), "and forgets them");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(get_status(port, "/healthz"), None, "nothing restarts a stopped gateway");
    assert_eq!(processes_of(&t.services_dir()), Vec::<u32>::new());
    assert_eq!(health_of(&t, "tau")["state"], "stopped");

    let started = t.run(&["--json", "start", "tau"]).expect(0).json();
    assert_eq!(started["outcome"]["state"], "running");
    let second = (t.supervisor_pid("tau").unwrap(), t.gateway_pid("tau").unwrap());
    assert_eq!(started["outcome"]["pid"].as_u64(), Some(u64::from(second.1)));
    let restarted = t.run(&["--json", "restart", "tau"]).expect(0).json();
    let third = (t.supervisor_pid("tau").unwrap(), t.gateway_pid("tau").unwrap());
    assert_eq!(restarted["outcome"]["pid"].as_u64(), Some(u64::from(third.1)));
    assert!(third.0 != second.0 && third.1 != second.1, "restart gives a new supervisor and gateway");
    assert!(!is_alive(second.0) && !is_alive(second.1));
    assert_eq!(get_status(port, "/healthz"), Some(200));

    t.run(&["--json", "deprovision", "tau"]).expect(0);
    assert!(!is_alive(third.0) && !is_alive(third.1));
    assert_eq!(processes_of(&t.services_dir()), Vec::<u32>::new(), "no supervisor of this home is left");
    assert_eq!(processes_of(&t.sibling("tau")), Vec::<u32>::new(), "no gateway of tau is left");
    let left: Vec<_> = std::fs::read_dir(t.services_dir()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "no record and no account left: {left:?}");
}

#[test]
fn a_gateway_that_always_crashes_is_given_up_on_and_health_says_so() {
    let (_sesame, t, port) = provisioned("ray");
    let config = t.sibling("ray").join("openclaw.json");
    let good = std::fs::read_to_string(&config).unwrap();
    let mut broken: Value = serde_json::from_str(&good).unwrap();
    broken["surprise"] = true.into();
    std::fs::write(&config, broken.to_string()).unwrap();
    let supervisor = t.supervisor_pid("ray").unwrap();
    sigkill(t.gateway_pid("ray").unwrap());

    eventually("the supervisor to give up", Duration::from_secs(60), || t.supervision("ray").is_some_and(|s| s["gave_up"] == true));
    eventually("a supervisor that gave up to end", Duration::from_secs(5), || !is_alive(supervisor));
    let ray = health_of(&t, "ray");
    assert_eq!((ray["state"].as_str(), ray["healthy"].as_bool(), ray["restarts"].as_u64()), (Some("failed"), Some(false), Some(4)), "{ray}");
    let problem = ray["problems"][0].as_str().unwrap();
    assert!(problem.contains("the supervisor gave up after 5 failures within 120 s (last: exit code 78)"), "{problem}");
    let crashes = std::fs::read_to_string(t.log("ray", "stderr.log")).unwrap().matches("unknown key surprise").count();
    assert_eq!(crashes, 4, "four restarts, each crashed, then no more (no busy loop)");
    let text = t.run(&["health"]).expect(0).stdout;
    assert!(text.contains(" failed ") && text.contains("problem: its service com.openclaw.ray failed: the supervisor gave up"), "{text}");

    // Fixed, it starts again.
    std::fs::write(&config, good).unwrap();
    t.run(&["--json", "start", "ray"]).expect(0);
    assert_eq!(get_status(port, "/healthz"), Some(200));
    let ray = health_of(&t, "ray");
    assert_eq!((ray["state"].as_str(), ray["restarts"].as_u64()), (Some("running"), Some(0)), "{ray}");
}

#[test]
fn a_killed_supervisor_shows_in_health_and_start_recovers() {
    let (_sesame, t, port) = provisioned("kit");
    let (supervisor, gateway) = (t.supervisor_pid("kit").unwrap(), t.gateway_pid("kit").unwrap());
    kill_group(supervisor);
    eventually("the supervisor to die", Duration::from_secs(5), || !is_alive(supervisor));
    assert!(is_alive(gateway), "its gateway lives on");
    let kit = health_of(&t, "kit");
    assert_eq!((kit["state"].as_str(), kit["healthy"].as_bool(), kit["pid"].as_u64()), (Some("failed"), Some(true), Some(u64::from(gateway))), "{kit}");
    assert!(kit["problems"][0].as_str().unwrap().contains(&format!("its supervisor (pid {supervisor}) is gone; the gateway (pid {gateway}) runs unsupervised")), "{kit}");

    let started = t.run(&["--json", "start", "kit"]).expect(0).json();
    assert_eq!(started["outcome"]["state"], "running");
    assert!(!is_alive(gateway), "the unsupervised gateway was replaced");
    let (again, second) = (t.supervisor_pid("kit").unwrap(), t.gateway_pid("kit").unwrap());
    assert!(is_alive(again) && again != supervisor);
    sigkill(second);
    eventually("the new supervisor to bring it back", Duration::from_secs(20), || {
        t.gateway_pid("kit").is_some_and(|pid| pid != second) && get_status(port, "/healthz") == Some(200)
    });
}

#[test]
fn a_record_the_host_did_not_write_is_refused_and_nothing_runs() {
    let (_sesame, t, _port) = provisioned("zed");
    t.run(&["stop", "zed"]).expect(0);
    let path = t.services_dir().join("com.openclaw.zed.json");
    let mut record: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let marker = t.temp.path().join("owned");
    record["definition"]["program"] = "/bin/sh".into();
    record["definition"]["args"] = serde_json::json!(["-c", format!("touch {}", marker.display())]);
    std::fs::write(&path, record.to_string()).unwrap();

    let run = t.run(&["--json", "start", "zed"]);
    assert_ne!(run.code, 0);
    let message = run.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("com.openclaw.zed.json") && message.contains("refusing to run it"), "{message}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!marker.exists(), "the planted command never ran");
    assert!(t.supervision("zed").is_none(), "no supervisor was started");
    let zed = health_of(&t, "zed");
    assert!(zed["problems"][0].as_str().unwrap().contains("refusing to run it"), "{zed}");
}

#[test]
fn a_fifo_planted_as_the_supervisors_account_blocks_nothing() {
    let (_sesame, t, _port) = provisioned("fay");
    t.kill_service("fay");
    let account = t.services_dir().join("com.openclaw.fay.supervisor.json");
    std::fs::remove_file(&account).unwrap();
    rustix::fs::mkfifoat(rustix::fs::CWD, &account, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
    let started = Instant::now();
    let fay = health_of(&t, "fay");
    assert!(started.elapsed() < Duration::from_secs(10), "health took {:?}", started.elapsed());
    assert!(fay["problems"][0].as_str().unwrap().contains("is a FIFO"), "{fay}");
    let run = t.run(&["--json", "start", "fay"]);
    assert_ne!(run.code, 0);
    assert!(run.stdout.contains("FIFO"), "{}", run.stdout);
    std::fs::remove_file(&account).unwrap();
    t.run(&["--json", "start", "fay"]).expect(0);
}
