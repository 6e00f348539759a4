//! The launchd stand-in (`launchctl-standin`) behaves enough like `launchctl` for the
//! end-to-end tests on Linux: a plist loaded the legacy way (`load -w`, as the old bash
//! script did) or bootstrapped (as the host's launchd backend does) really runs its
//! program, alone in its session and with only the plist's environment; `print` reports
//! it as launchd does; `bootout` and `unload` stop it; and every call is recorded.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::*;

const TARGET: &str = "gui/501/com.openclaw.nova";

/// A LaunchAgent plist running `/bin/sleep 300` with one variable of its own.
fn write_plist(dir: &Path) -> String {
    let mut env = plist::Dictionary::new();
    env.insert("SIBLING".into(), "nova".into());
    let mut dict = plist::Dictionary::new();
    dict.insert("Label".into(), "com.openclaw.nova".into());
    dict.insert("ProgramArguments".into(), plist::Value::Array(vec!["/bin/sleep".into(), "300".into()]));
    dict.insert("EnvironmentVariables".into(), plist::Value::Dictionary(env));
    dict.insert("WorkingDirectory".into(), dir.display().to_string().into());
    dict.insert("StandardOutPath".into(), dir.join("stdout.log").display().to_string().into());
    dict.insert("StandardErrorPath".into(), dir.join("stderr.log").display().to_string().into());
    dict.insert("RunAtLoad".into(), true.into());
    dict.insert("KeepAlive".into(), true.into());
    let path = dir.join("com.openclaw.nova.plist");
    plist::Value::Dictionary(dict).to_file_xml(&path).unwrap();
    path.display().to_string()
}

/// The pid `print` reports for a running job (and checks the lines the host reads).
fn running_pid(printed: &Run, runs: u32) -> u32 {
    let text = &printed.stdout;
    assert!(text.starts_with(&format!("{TARGET} = {{\n")), "{text}");
    assert!(text.contains("\tstate = running\n") && text.contains(&format!("\truns = {runs}\n")), "{text}");
    assert!(text.contains("\tprogram = /bin/sleep\n") && text.contains("\tlast exit code = (never exited)\n"), "{text}");
    let pid = text.lines().find_map(|l| l.trim().strip_prefix("pid = ")).unwrap_or_else(|| panic!("no pid in\n{text}"));
    pid.parse().unwrap()
}

#[test]
fn a_plist_is_loaded_run_printed_and_stopped_as_launchd_would() {
    let t = TestHome::new("http://127.0.0.1:9");
    let launchctl = t.launchctl_standin();
    let plist = write_plist(t.temp.path());
    let run = |args: &[&str]| Run::from_output(Command::new(&launchctl).args(args).env("CALLER_ONLY", "1").output().unwrap());

    run(&["load", "-w", &plist]).expect(0);
    let pid = running_pid(&run(&["print", TARGET]).expect(0), 1);
    assert!(is_alive(pid));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let session: u32 = stat[stat.rfind(')').unwrap() + 2..].split(' ').nth(3).unwrap().parse().unwrap();
    assert_eq!(session, pid, "the program leads a session of its own");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let mut environ: Vec<String> = environ.split(|b| *b == 0).filter(|v| !v.is_empty()).map(|v| String::from_utf8_lossy(v).into_owned()).collect();
    environ.sort();
    assert_eq!(environ, ["PATH=/usr/bin:/bin:/usr/sbin:/sbin", "SIBLING=nova"], "only the plist's environment");
    assert!(run(&["load", "-w", &plist]).expect(0).stderr.contains("service already loaded"));
    assert!(run(&["bootstrap", "gui/501", &plist]).expect(5).stderr.contains("Bootstrap failed: 5: Input/output error"));

    run(&["bootout", TARGET]).expect(0);
    assert!(!is_alive(pid), "bootout stops the program");
    let missing = run(&["print", TARGET]).expect(113);
    assert_eq!(missing.stderr.trim(), "Could not find service \"com.openclaw.nova\" in domain for user gui: 501");

    run(&["bootstrap", "gui/501", &plist]).expect(0);
    let again = running_pid(&run(&["print", TARGET]).expect(0), 1);
    assert!(is_alive(again) && again != pid);
    assert_eq!(t.launchctl_pids(), [again]);
    run(&["unload", &plist]).expect(0);
    assert!(!is_alive(again), "unload stops the program");
    assert!(t.launchctl_pids().is_empty());

    let bootstrap = format!("bootstrap gui/501 {plist}");
    assert_eq!(
        t.launchctl_calls(),
        [
            format!("load -w {plist}"),
            format!("print {TARGET}"),
            format!("load -w {plist}"),
            bootstrap.clone(),
            format!("bootout {TARGET}"),
            format!("print {TARGET}"),
            bootstrap,
            format!("print {TARGET}"),
            format!("unload {plist}"),
        ]
    );

    run(&["load", "-w", &plist]).expect(0);
    let [left] = t.launchctl_pids()[..] else { panic!("one job loaded") };
    drop(t);
    // SIGKILL is delivered asynchronously.
    eventually("what the stand-in runs to end with the test's home", Duration::from_secs(5), || !is_alive(left));
}
