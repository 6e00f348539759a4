//! The direct backend without its binary: statuses from a supervisor's account, what is
//! (never) signalled, and the supervisor's loop run in this process with real gateways.
//! Starting the supervisor as its own process is covered end to end (`tests/supervision.rs`).

use super::restarts::Policy;
use super::state::{self, Supervision};
use super::*;
use crate::caps::service::policy::tests::{fixture, spec};
use std::os::unix::process::CommandExt as _;
use std::sync::atomic::Ordering;

const LABEL: &str = "com.openclaw.nova";

/// A direct backend with `nova` installed to run `script`.
fn installed(script: &str) -> (tempfile::TempDir, Direct, Definition) {
    let (temp, policy) = fixture();
    std::fs::write(&policy.openclaw_bin, script).unwrap();
    let def = policy.check(&spec("nova")).unwrap();
    let mut direct = Direct::new(policy.home.join(".local/state/agent-provisioner/services"));
    crate::caps::service::create_log_dir(&def).unwrap();
    direct.install(&def).unwrap();
    (temp, direct, def)
}

/// Fast rules for the loop's tests: 10 ms doubling, four failures give up.
const FAST: Policy = Policy { first_delay: Duration::from_millis(10), window: Duration::from_secs(60), limit: 4 };

fn account(d: &Direct) -> Supervision {
    state::load_supervision(&d.dir, LABEL).unwrap().expect("an account")
}

/// Polls `check` until it gives a value (at most 10 s).
fn eventually<T>(mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "condition not reached within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_gateway_that_keeps_exiting_is_restarted_then_given_up_on() {
    let (_t, d, def) = installed("#!/bin/sh\necho \"run $*\"\nenv\nexit 3\n");
    let stop = supervisor::StopFlag::default();
    supervisor::supervise(&d.dir, LABEL, &FAST, &stop).unwrap();
    let log = std::fs::read_to_string(&def.stdout_log).unwrap();
    let runs = log.lines().filter(|l| *l == "run --profile nova gateway run --port 18930").count();
    assert_eq!(runs, 4, "started four times, then given up (no busy loop):\n{log}");
    let a = account(&d);
    assert!(a.gave_up && a.gateway.is_none(), "{a:?}");
    assert_eq!((a.attempts, a.restarts(), a.last_exit_code), (4, 3, Some(3)));
    let why = a.ended.unwrap();
    assert!(why.contains("gave up after 4 failures within 60 s (last: exit code 3)"), "{why}");
    // Each run saw only the definition's environment.
    let names: Vec<&str> = log.lines().filter_map(|l| l.split_once('=').map(|(k, _)| k)).collect();
    assert!(names.iter().all(|n| crate::caps::service::policy::ENVIRONMENT.contains(n) || ["PWD", "SHLVL", "_"].contains(n)), "{names:?}");
    assert!(log.contains("OPENCLAW_NO_AUTO_UPDATE=1"));
}

#[test]
fn a_stop_signal_ends_the_gateways_whole_group_and_the_supervisor() {
    let (_t, d, def) = installed("#!/bin/sh\necho \"child $(sh -c 'sleep 30 >/dev/null 2>&1 & echo $!')\"\nexec sleep 30\n");
    let stop = supervisor::StopFlag::default();
    let (dir, flag) = (d.dir.clone(), stop.clone());
    let loop_thread = std::thread::spawn(move || supervisor::supervise(&dir, LABEL, &FAST, &flag));
    let gateway = eventually(|| state::load_supervision(&d.dir, LABEL).ok().flatten().and_then(|a| a.gateway));
    let grandchild: u32 = eventually(|| std::fs::read_to_string(&def.stdout_log).ok()?.strip_prefix("child ")?.trim().parse().ok());
    let grandchild = Proc::of(grandchild).unwrap();
    assert!(gateway.is_alive());
    stop.store(15, Ordering::SeqCst);
    loop_thread.join().unwrap().unwrap();
    assert!(!gateway.is_alive(), "the gateway is stopped");
    assert!(process::wait_gone(&grandchild, Duration::from_secs(5)), "and what it started in its group");
    let a = account(&d);
    assert_eq!((a.gateway, a.gave_up, a.ended.as_deref()), (None, false, Some("stopped by signal 15")));
    assert_eq!(a.attempts, 1, "a stopped gateway is not restarted");
}

#[test]
fn a_log_turned_into_a_fifo_fails_the_restart_without_blocking_it() {
    let (_t, d, def) = installed("#!/bin/sh\nexit 1\n");
    let stop = supervisor::StopFlag::default();
    let (dir, flag) = (d.dir.clone(), stop.clone());
    // Once the first run has ended, a FIFO replaces stdout.log.
    let fifo = def.stdout_log.clone();
    let planter = std::thread::spawn(move || {
        eventually(|| state::load_supervision(&dir, LABEL).ok().flatten().filter(|a| a.last_exit_code.is_some()));
        std::fs::remove_file(&fifo).unwrap();
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
    });
    let slow = Policy { first_delay: Duration::from_millis(300), ..FAST };
    supervisor::supervise(&d.dir, LABEL, &slow, &flag).unwrap();
    planter.join().unwrap();
    let a = account(&d);
    assert!(a.gave_up, "{a:?}");
    let why = a.ended.unwrap();
    assert!(why.contains("opening stdout.log") && why.contains("FIFO"), "{why}");
}

#[test]
fn a_gateway_that_cannot_start_at_all_is_given_up_on_at_once() {
    let (_t, d, def) = installed("#!/bin/sh\n");
    std::fs::remove_file(&def.program).unwrap();
    supervisor::supervise(&d.dir, LABEL, &FAST, &Default::default()).unwrap();
    let a = account(&d);
    assert_eq!((a.attempts, a.gave_up), (1, true));
    let why = a.ended.unwrap();
    assert!(why.starts_with("the gateway could not be started: starting ") && why.contains("No such file"), "{why}");
}

#[test]
fn a_record_the_host_did_not_write_is_never_run() {
    let (_t, mut d, def) = installed("#!/bin/sh\nexec sleep 30\n");
    let forged = Definition { args: vec!["-c".into(), "echo owned".into()], ..def };
    let bytes = serde_json::to_vec(&state::Record { definition: forged }).unwrap();
    std::fs::write(d.dir.join(state::record_name(LABEL)), bytes).unwrap();
    let err = d.start(LABEL).unwrap_err();
    assert!(matches!(&err, ServiceError::Failed(m) if m.contains("refusing to run it")), "{err:?}");
    assert!(state::load_supervision(&d.dir, LABEL).unwrap().is_none(), "no supervisor was started");
    supervisor::supervise(&d.dir, LABEL, &FAST, &Default::default()).unwrap();
    let why = account(&d).ended.unwrap();
    assert!(why.contains("is not the definition agent-provisioner derives"), "the supervisor refuses it too: {why}");
}

fn supervision(supervisor: Option<Proc>, gateway: Option<Proc>) -> Supervision {
    Supervision { supervisor, gateway, started_at: Some(1_000), attempts: 3, last_exit_code: Some(137), ..Supervision::default() }
}

fn me() -> Option<Proc> {
    Proc::of(std::process::id())
}

#[test]
fn statuses_say_what_runs_what_waits_and_what_nothing_restarts() {
    let running = status_of(&supervision(me(), me()), true, Some(42), 1_060);
    assert_eq!((running.state, running.pid, running.uptime_seconds, running.restarts), (RunState::Running, Some(42), Some(60), Some(2)));
    let waiting = status_of(&Supervision { restart_at: Some(1_004), ..supervision(me(), None) }, true, None, 1_000);
    assert_eq!((waiting.state, waiting.last_exit_code), (RunState::Stopped, Some(137)));
    assert_eq!(waiting.detail, "the gateway ended (exit code 137); restart 3 in 4 s");
    let gave_up = Supervision { gave_up: true, ended: Some("the supervisor gave up after 5 failures".into()), ..supervision(me(), None) };
    for supervisor_alive in [false, true] {
        let failed = status_of(&gave_up, supervisor_alive, None, 0);
        assert_eq!((failed.state, failed.detail.as_str()), (RunState::Failed, "the supervisor gave up after 5 failures"), "ending: {supervisor_alive}");
    }
    let orphan = status_of(&supervision(me(), me()), false, Some(42), 0);
    assert_eq!((orphan.state, orphan.pid), (RunState::Failed, Some(42)));
    assert!(orphan.detail.contains("is gone; the gateway (pid 42) runs unsupervised"), "{}", orphan.detail);
    let dead = status_of(&supervision(me(), None), false, None, 0);
    assert!(dead.state == RunState::Failed && dead.detail.contains("gone and the gateway is not running"), "{dead:?}");
    let stopped = status_of(&Supervision { ended: Some("stopped by signal 15".into()), ..supervision(me(), None) }, false, None, 0);
    assert_eq!((stopped.state, stopped.detail.as_str()), (RunState::Stopped, "stopped by signal 15"));
}

#[test]
fn a_stale_or_forged_account_is_never_signalled() {
    let (_t, mut d, _) = installed("#!/bin/sh\nexec sleep 30\n");
    let mut supervisor = Command::new("sleep").arg("30").spawn().unwrap();
    let mut gateway = Command::new("sleep").arg("30").process_group(0).spawn().unwrap();
    let dir = cap_std::fs::Dir::open_ambient_dir(&d.dir, cap_std::ambient_authority()).unwrap();
    for identity in ["1", "forged"] {
        let forged = |child: &Child| Some(Proc { pid: child.id(), identity: identity.into() });
        state::write(&dir, &state::supervision_name(LABEL), &supervision(forged(&supervisor), forged(&gateway))).unwrap();
        let status = d.status(LABEL).unwrap();
        assert_eq!((status.state, status.pid), (RunState::Failed, None), "{status:?}");
        d.stop(LABEL).unwrap();
        assert!(supervisor.try_wait().unwrap().is_none() && gateway.try_wait().unwrap().is_none(), "the bystanders survive");
        assert!(state::load_supervision(&d.dir, LABEL).unwrap().is_none(), "stop forgets the account");
    }
    for child in [&mut supervisor, &mut gateway] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

#[test]
fn unknown_labels_are_not_installed() {
    let (_t, mut d, _) = installed("#!/bin/sh\n");
    assert_eq!(d.status("com.openclaw.ghost").unwrap().state, RunState::NotInstalled);
    assert!(matches!(d.start("com.openclaw.ghost"), Err(ServiceError::NotInstalled(_))));
    assert!(matches!(d.stop("com.openclaw.ghost"), Err(ServiceError::NotInstalled(_))));
    assert_eq!(d.status(LABEL).unwrap().state, RunState::Stopped);
    assert_eq!(d.installed_ports(), [18930]);
    d.uninstall(LABEL).unwrap();
    assert_eq!(d.status(LABEL).unwrap().state, RunState::NotInstalled);
    assert!(d.installed_ports().is_empty());
}
