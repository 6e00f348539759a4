//! A recording stand-in for macOS `launchctl`, for end-to-end tests on Linux: it loads
//! LaunchAgent plists and really runs the programs they name, so a test can set a
//! sibling up the way the old bash script did (`launchctl load -w PLIST`) and the host's
//! launchd backend (`bootstrap`, `bootout`, `enable`, `kickstart`, `print`) can drive it,
//! with health checks against the running gateway.
//!
//! State lives in the directory `$LAUNCHCTL_STANDIN_STATE` (required; exit 64 without it):
//! `jobs.json` (the loaded jobs: plist, program, pid, runs, last exit code; and the
//! enable/disable overrides, which outlive unloads as launchd's do) and `calls.log` (one
//! line per call: its arguments joined by spaces). Every call holds an exclusive `flock`
//! on `lock` in that directory, so concurrent calls never interleave.
//!
//! | call | not loaded | loaded |
//! |---|---|---|
//! | `load [-w] PLIST` | starts it (`-w` clears a disable); disabled without `-w`: 119 | "service already loaded", 0 |
//! | `bootstrap gui/UID PLIST` | starts it; disabled: 119 | "Bootstrap failed: 5: Input/output error", 5 |
//! | `unload [-w] PLIST` | "Could not find specified service", 0 | stops it (`-w` disables) |
//! | `bootout gui/UID/LABEL`, `bootout gui/UID PLIST` | "Boot-out failed: 3: No such process", 3 | stops it |
//! | `enable`/`disable gui/UID/LABEL` | records the override, 0 | same |
//! | `kickstart [-k] gui/UID/LABEL` | "Could not find service ...", 113 | dead: starts it; alive: nothing, or with `-k` stops and starts it |
//! | `print gui/UID/LABEL` | "Could not find service ...", 113 | launchd's `print` block |
//! | `list` | | `PID\tStatus\tLabel` lines |
//!
//! A plist that is missing or unreadable fails with 5 (`Load failed: 5: ...` or
//! `Bootstrap failed: 5: ...`, after a line naming the path). Anything else exits 64,
//! "unsupported by the stand-in".
//!
//! Starting a job is what launchd does for an agent, minus supervision: the program
//! (`Program`, else `ProgramArguments[0]`) runs in a session of its own with stdin from
//! `StandardInPath` or `/dev/null`, stdout and stderr appended to `StandardOutPath` and
//! `StandardErrorPath` (created if missing, in an existing directory; `/dev/null` when
//! not given), in `WorkingDirectory` (else `/`), under `Umask`, with exactly the plist's
//! `EnvironmentVariables` (plus `PATH=/usr/bin:/bin:/usr/sbin:/sbin` when they set none):
//! nothing of the caller's environment. Unlike launchd, it adds no `HOME`/`USER`/`TMPDIR`
//! of its own. The stand-in does not wait for the program and nothing restarts it
//! (`KeepAlive` is ignored; `RunAtLoad` is taken as true). A program that cannot be
//! started leaves the job loaded and not running with last exit code 78 (EX_CONFIG), as
//! launchd reports a failed spawn; otherwise the exit code of a program that ended is
//! unknown (the stand-in cannot reap it), and `print` leaves the line out.
//!
//! Stopping a job sends SIGTERM to the program's process group, and SIGKILL if it is
//! still there after 5 s. A recorded pid counts as alive only while a process with that
//! pid and the recorded start time exists and is not a zombie, so a reused pid is never
//! signalled.

use host_runner::caps::service::close_inherited_descriptors;
use host_runner::caps::service::process::{Proc, terminate_group};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Exit code of a usage error (EX_USAGE), as launchctl's.
const USAGE: i32 = 64;
/// launchd's "Input/output error".
const EIO: i32 = 5;
/// launchd's "No such process" (a `bootout` of a job that is not loaded).
const ESRCH: i32 = 3;
/// launchd's "Could not find specified service".
const NOT_FOUND: i32 = 113;
/// launchd's "Service is disabled".
const DISABLED: i32 = 119;
/// The exit code launchd records for a job it could not spawn (EX_CONFIG).
const EX_CONFIG: i32 = 78;
/// How long a stopping job gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// launchd's default `PATH` for a job whose plist sets none.
const DEFAULT_PATH: &str = "/usr/bin:/bin:/usr/sbin:/sbin";

/// `jobs.json`.
#[derive(Default, Serialize, Deserialize)]
struct State {
    /// The loaded jobs, by label.
    jobs: BTreeMap<String, Job>,
    /// `true` for a disabled label (`disable`, `unload -w`), `false` for an enabled one
    /// (`enable`, `load -w`); kept across unloads.
    #[serde(default)]
    disabled: BTreeMap<String, bool>,
}

/// One loaded job.
#[derive(Serialize, Deserialize)]
struct Job {
    plist: PathBuf,
    program: String,
    /// The program as it was started (it leads its process group): its pid and identity,
    /// telling it from a process that reuses the pid.
    process: Option<Proc>,
    /// How many times it was started.
    runs: u32,
    /// Known only when it could not be started (78).
    last_exit_code: Option<i32>,
}

impl Job {
    /// The pid, if that process is still running.
    fn live_pid(&self) -> Option<u32> {
        self.process.as_ref().filter(|p| p.is_alive()).map(|p| p.pid)
    }
}

/// What a plist asks launchd to run.
struct Spec {
    label: String,
    program: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    stdin: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
    umask: Option<u32>,
}

/// A call's failure: its exit code, and what it says on stderr.
struct Failure(i32, String);

type Outcome = Result<(), Failure>;

fn main() {
    // Before anything opens a descriptor: what the caller left open must not reach the
    // programs started here (a caller reading our output until EOF would wait on them).
    close_inherited_descriptors();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = std::env::var_os("LAUNCHCTL_STANDIN_STATE").map(PathBuf::from) else {
        eprintln!("launchctl-standin: LAUNCHCTL_STANDIN_STATE is not set (the directory for its jobs.json and calls.log)");
        std::process::exit(USAGE);
    };
    let code = match with_state(&dir, &args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("launchctl-standin: state in {}: {e}", dir.display());
            USAGE
        }
    };
    std::process::exit(code);
}

/// Locks the state, records the call, runs it and saves the state. The call's exit code.
fn with_state(dir: &Path, args: &[String]) -> std::io::Result<i32> {
    std::fs::create_dir_all(dir)?;
    let lock = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("lock"))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
    let mut log = OpenOptions::new().create(true).append(true).open(dir.join("calls.log"))?;
    writeln!(log, "{}", args.join(" "))?;
    let path = dir.join("jobs.json");
    let mut state: State = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(std::io::Error::other)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
        Err(e) => return Err(e),
    };
    let code = match dispatch(&mut state, args) {
        Ok(()) => 0,
        Err(Failure(code, message)) => {
            eprintln!("{message}");
            code
        }
    };
    let temp = dir.join("jobs.json.tmp");
    std::fs::write(&temp, serde_json::to_string_pretty(&state).map_err(std::io::Error::other)?)?;
    std::fs::rename(temp, path)?;
    Ok(code)
}

fn dispatch(state: &mut State, args: &[String]) -> Outcome {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["load", "-w", plist] => load(state, plist, true),
        ["load", plist] => load(state, plist, false),
        ["unload", "-w", plist] => unload(state, plist, true),
        ["unload", plist] => unload(state, plist, false),
        ["bootstrap", domain, plist] if uid(domain).is_some() => bootstrap(state, plist),
        ["bootout", domain, plist] if uid(domain).is_some() => {
            let label = read_plist(plist).map_err(|why| Failure(EIO, format!("{why}\nBoot-out failed: 5: Input/output error")))?.label;
            bootout(state, &label)
        }
        ["bootout", target] if service(target).is_some() => bootout(state, service(target).unwrap().1),
        ["enable", target] if service(target).is_some() => {
            state.disabled.insert(service(target).unwrap().1.into(), false);
            Ok(())
        }
        ["disable", target] if service(target).is_some() => {
            state.disabled.insert(service(target).unwrap().1.into(), true);
            Ok(())
        }
        ["kickstart", "-k", target] if service(target).is_some() => kickstart(state, target, true),
        ["kickstart", target] if service(target).is_some() => kickstart(state, target, false),
        ["print", target] if service(target).is_some() => print(state, target),
        ["list"] => {
            println!("PID\tStatus\tLabel");
            for (label, job) in &state.jobs {
                let pid = job.live_pid().map_or("-".to_string(), |p| p.to_string());
                let status = job.last_exit_code.map_or("0".to_string(), |c| c.to_string());
                println!("{pid}\t{status}\t{label}");
            }
            Ok(())
        }
        _ => Err(Failure(USAGE, format!("unsupported by the stand-in: {}", args.join(" ")))),
    }
}

/// The uid of a `gui/UID` domain target.
fn uid(domain: &str) -> Option<&str> {
    domain.strip_prefix("gui/").filter(|uid| !uid.is_empty() && uid.bytes().all(|b| b.is_ascii_digit()))
}

/// The uid and label of a `gui/UID/LABEL` service target.
fn service(target: &str) -> Option<(&str, &str)> {
    let (domain, label) = target.rsplit_once('/')?;
    Some((uid(domain)?, label)).filter(|_| !label.is_empty())
}

fn not_found(target: &str) -> Failure {
    let (uid, label) = service(target).expect("checked by dispatch");
    Failure(NOT_FOUND, format!("Could not find service \"{label}\" in domain for user gui: {uid}"))
}

/// `load [-w] PLIST`: the legacy verb, which says rather than fails on a loaded job.
fn load(state: &mut State, plist: &str, write: bool) -> Outcome {
    let spec = read_plist(plist).map_err(|why| Failure(EIO, format!("{why}\nLoad failed: 5: Input/output error")))?;
    if write {
        state.disabled.insert(spec.label.clone(), false);
    }
    if state.jobs.contains_key(&spec.label) {
        eprintln!("{plist}: service already loaded");
        return Ok(());
    }
    if state.disabled.get(&spec.label) == Some(&true) {
        return Err(Failure(DISABLED, "Load failed: 119: Service is disabled".into()));
    }
    start(state, plist, &spec);
    Ok(())
}

/// `bootstrap gui/UID PLIST`.
fn bootstrap(state: &mut State, plist: &str) -> Outcome {
    let spec = read_plist(plist).map_err(|why| Failure(EIO, format!("{why}\nBootstrap failed: 5: Input/output error")))?;
    if state.jobs.contains_key(&spec.label) {
        return Err(Failure(EIO, "Bootstrap failed: 5: Input/output error".into()));
    }
    if state.disabled.get(&spec.label) == Some(&true) {
        return Err(Failure(DISABLED, "Bootstrap failed: 119: Service is disabled".into()));
    }
    start(state, plist, &spec);
    Ok(())
}

/// `unload [-w] PLIST`: the legacy verb, which only says so when the job is not loaded.
fn unload(state: &mut State, plist: &str, write: bool) -> Outcome {
    let spec = read_plist(plist).map_err(|why| Failure(EIO, format!("{why}\nUnload failed: 5: Input/output error")))?;
    if write {
        state.disabled.insert(spec.label.clone(), true);
    }
    match state.jobs.remove(&spec.label) {
        Some(job) => stop(&job),
        None => eprintln!("Could not find specified service"),
    }
    Ok(())
}

/// `bootout`: stops and unloads the job.
fn bootout(state: &mut State, label: &str) -> Outcome {
    let job = state.jobs.remove(label).ok_or_else(|| Failure(ESRCH, "Boot-out failed: 3: No such process".into()))?;
    stop(&job);
    Ok(())
}

/// `kickstart [-k]`: starts a loaded job that is not running; with `-k`, restarts a
/// running one.
fn kickstart(state: &mut State, target: &str, kill: bool) -> Outcome {
    let label = service(target).expect("checked by dispatch").1;
    let job = state.jobs.get(label).ok_or_else(|| not_found(target))?;
    if job.live_pid().is_some() {
        if !kill {
            return Ok(());
        }
        stop(job);
    }
    let plist = job.plist.display().to_string();
    let spec = read_plist(&plist).map_err(|why| Failure(EIO, format!("{why}\nKickstart failed: 5: Input/output error")))?;
    start(state, &plist, &spec);
    Ok(())
}

/// `print gui/UID/LABEL`, in launchd's layout (the lines the host reads, and a few more).
fn print(state: &State, target: &str) -> Outcome {
    let label = service(target).expect("checked by dispatch").1;
    let job = state.jobs.get(label).ok_or_else(|| not_found(target))?;
    let pid = job.live_pid();
    println!("{target} = {{");
    println!("\tactive count = {}", u8::from(pid.is_some()));
    println!("\tpath = {}", job.plist.display());
    println!("\tstate = {}", if pid.is_some() { "running" } else { "not running" });
    println!("\tprogram = {}", job.program);
    if let Some(pid) = pid {
        println!("\tpid = {pid}");
    }
    println!("\truns = {}", job.runs);
    match (job.last_exit_code, pid) {
        (Some(EX_CONFIG), _) => println!("\tlast exit code = 78: EX_CONFIG"),
        (Some(code), _) => println!("\tlast exit code = {code}"),
        (None, Some(_)) if job.runs <= 1 => println!("\tlast exit code = (never exited)"),
        // Ended (or restarted) while the stand-in could not see how: left out.
        (None, _) => {}
    }
    println!("}}");
    Ok(())
}

/// Reads the plist at `path`; the error names it.
fn read_plist(path: &str) -> Result<Spec, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let value = plist::Value::from_reader(std::io::Cursor::new(bytes)).map_err(|e| format!("{path}: not a property list: {e}"))?;
    let dict = value.as_dictionary().ok_or_else(|| format!("{path}: not a dictionary"))?;
    let text = |key: &str| dict.get(key).and_then(plist::Value::as_string).map(String::from);
    let label = text("Label").ok_or_else(|| format!("{path}: no Label"))?;
    let argv: Vec<String> = match dict.get("ProgramArguments").and_then(plist::Value::as_array) {
        Some(args) => args.iter().map(|a| a.as_string().map(String::from).ok_or_else(|| format!("{path}: a ProgramArguments entry is not a string"))).collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let program = text("Program").or_else(|| argv.first().cloned()).ok_or_else(|| format!("{path}: neither Program nor ProgramArguments"))?;
    let mut env: Vec<(String, String)> = match dict.get("EnvironmentVariables").and_then(plist::Value::as_dictionary) {
        Some(vars) => vars.iter().map(|(k, v)| v.as_string().map(|v| (k.clone(), v.to_string())).ok_or_else(|| format!("{path}: EnvironmentVariables.{k} is not a string"))).collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    let file = |key: &str, default: &str| PathBuf::from(text(key).unwrap_or_else(|| default.into()));
    Ok(Spec {
        label,
        argv: if argv.is_empty() { vec![program.clone()] } else { argv },
        program,
        env,
        cwd: file("WorkingDirectory", "/"),
        stdin: file("StandardInPath", "/dev/null"),
        stdout: file("StandardOutPath", "/dev/null"),
        stderr: file("StandardErrorPath", "/dev/null"),
        umask: dict.get("Umask").and_then(plist::Value::as_unsigned_integer).and_then(|u| u32::try_from(u).ok()),
    })
}

/// Starts `spec` as the job loaded from `plist` (replacing any record of it), without
/// waiting for it. A program that cannot be started leaves the job loaded, not running,
/// with last exit code 78, as launchd does; why goes to stderr.
fn start(state: &mut State, plist: &str, spec: &Spec) {
    let runs = state.jobs.get(&spec.label).map_or(0, |j| j.runs) + 1;
    // launchd keeps the absolute path of what it loaded.
    let plist = std::path::absolute(plist).unwrap_or_else(|_| plist.into());
    let mut job = Job { plist, program: spec.program.clone(), process: None, runs, last_exit_code: None };
    match spawn(spec) {
        Ok(pid) => job.process = Proc::of(pid),
        Err(why) => {
            eprintln!("launchctl-standin: {} could not be started: {why}", spec.label);
            job.last_exit_code = Some(EX_CONFIG);
        }
    }
    state.jobs.insert(spec.label.clone(), job);
}

fn spawn(spec: &Spec) -> Result<u32, String> {
    let append = |path: &Path| {
        OpenOptions::new().create(true).append(true).open(path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let stdin = File::open(&spec.stdin).map_err(|e| format!("{}: {e}", spec.stdin.display()))?;
    let mut cmd = Command::new(&spec.program);
    cmd.arg0(&spec.argv[0])
        .args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(append(&spec.stdout)?))
        .stderr(Stdio::from(append(&spec.stderr)?));
    let umask = spec.umask;
    // SAFETY: between fork and exec only async-signal-safe system calls (setsid, umask),
    // no allocation and no lock.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::setsid()?;
            if let Some(mask) = umask {
                rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask as rustix::fs::RawMode));
            }
            Ok(())
        });
    }
    // Not waited for: when the stand-in exits, the program is re-parented (and reaped
    // when it ends) like any orphan.
    let child = cmd.spawn().map_err(|e| format!("{}: {e}", spec.program))?;
    Ok(child.id())
}

/// Stops a job's program, if it runs: SIGTERM to its process group, SIGKILL after
/// [`STOP_GRACE`].
fn stop(job: &Job) {
    if let Some(process) = job.process.as_ref().filter(|p| p.is_alive())
        && let Err(why) = terminate_group(process, STOP_GRACE)
    {
        eprintln!("launchctl-standin: {why}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(service("gui/501/com.openclaw.nova"), Some(("501", "com.openclaw.nova")));
        assert_eq!(uid("gui/501"), Some("501"));
        assert_eq!(service("gui/501"), None);
        assert_eq!(service("user/501/x"), None);
        assert_eq!(service("gui/501/"), None);
    }

    #[test]
    fn a_dead_or_reused_pid_is_not_alive() {
        let me = std::process::id();
        let job = |process| Job { plist: "p".into(), program: "x".into(), process, runs: 1, last_exit_code: None };
        let live = Proc::of(me).expect("this process");
        assert_eq!(job(Some(live.clone())).live_pid(), Some(me));
        assert_eq!(job(Some(Proc { identity: format!("{}0", live.identity), ..live })).live_pid(), None);
    }
}
