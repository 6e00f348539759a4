//! `provision` of several tasks (`--task a.json --task b.json`, or `--task DIR`): each task
//! runs in a child process of this binary, with the same options and `--json`, at most
//! `--jobs` at once. Each child is a whole provision of its own — its own sandbox, its own
//! journal and rollback — so one failure rolls back only that sibling; concurrent runs
//! serialise only their bookkeeping on the lead's family lock. The parent passes each
//! child's progress lines on, prefixed with its task's name, collects each child's
//! document and prints one report: the `tasks` field of one `--json` document, or text.
//! With `--plan` each task is planned as if it ran alone; with `--resume` each task
//! resumes its own interrupted provision. The parent holds `--deadline`: each child is
//! given what is left of it when the child starts (whole seconds, rounded down); a task
//! whose turn comes with less than a second left is not run, and a child still running
//! [`OVERRUN`] after the deadline (its own watchdog ends it before) is stopped.

use crate::cli::args::ProvisionArgs;
use crate::output::contract::{Error, Outcome, Output, TaskOutput};
use crate::output::{EXIT_FAILED, EXIT_INVALID, EXIT_OK, EXIT_UNREPORTED, Rendered};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{BufRead as _, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long past the batch's deadline the parent waits for a child before it stops it: a
/// child ends itself at most 2.5 s after its own deadline (its watchdog), which is never
/// later than the batch's.
const OVERRUN: Duration = Duration::from_secs(4);

/// The batch's `--deadline`: when it ends, and the limit it was given.
#[derive(Clone, Copy)]
struct Deadline {
    at: Instant,
    limit: u64,
}

impl Deadline {
    /// What a child starting now is given, in whole seconds; `None` under a second.
    fn for_child(&self) -> Option<u64> {
        let left = self.at.saturating_duration_since(Instant::now()).as_secs();
        (left >= 1).then_some(left)
    }
}

/// The task files of a provision of several: every `--task` given, a directory standing
/// for its `*.json` files (sorted). `None` for one task file (or stdin), which runs in
/// this process as it always has.
pub fn tasks(p: &ProvisionArgs) -> Result<Option<Vec<PathBuf>>, String> {
    let several = p.task.len() > 1 || p.task.iter().any(|t| Path::new(t).is_dir());
    if !several {
        return Ok(None);
    }
    let mut tasks = Vec::new();
    for given in &p.task {
        let path = Path::new(given);
        if given == "-" {
            return Err("stdin (`-`) takes one task only; give several tasks as files or a directory".into());
        }
        if !path.is_dir() {
            tasks.push(path.to_path_buf());
            continue;
        }
        let entries = std::fs::read_dir(path).map_err(|e| format!("cannot list {given}: {e}"))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| f.extension().is_some_and(|x| x == "json") && f.is_file())
            .collect();
        if found.is_empty() {
            return Err(format!("{given} holds no *.json task"));
        }
        found.sort();
        tasks.extend(found);
    }
    Ok(Some(tasks))
}

/// Runs every task in its own child process (`command` is `provision` or `plan`) within
/// `deadline` seconds in all, and renders one report.
pub fn run(command: &str, p: &ProvisionArgs, tasks: Vec<PathBuf>, deadline: u64, as_json: bool) -> Rendered {
    let deadline = Deadline { at: Instant::now() + Duration::from_secs(deadline), limit: deadline };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return crate::output::host_error(command, EXIT_FAILED, &format!("cannot find this program to run the tasks: {e}"), as_json),
    };
    let args = child_args(std::env::args_os().skip(1));
    let results: Mutex<Vec<Option<Output>>> = Mutex::new(tasks.iter().map(|_| None).collect());
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..usize::from(p.jobs).min(tasks.len()) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(task) = tasks.get(index) else { break };
                    let child = Child { command, exe: &exe, args: &args, task, banner: index == 0 };
                    results.lock().expect("results lock")[index] = Some(child.run(deadline));
                }
            });
        }
    });
    let outputs = results.into_inner().expect("results lock").into_iter().map(|o| o.expect("every task ran"));
    let done: Vec<TaskOutput> = tasks.iter().zip(outputs).map(|(t, output)| TaskOutput { task: t.display().to_string(), output }).collect();
    report(command, done, as_json)
}

/// This process's arguments without `--task`, `--jobs` and `--deadline` (and their
/// values): the same global and provision options for every child.
fn child_args(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    const OWN: [&str; 3] = ["--task", "--jobs", "--deadline"];
    let mut out = Vec::new();
    let mut skip_value = false;
    for arg in args {
        let text = arg.to_string_lossy();
        if std::mem::take(&mut skip_value) || OWN.iter().any(|own| text.starts_with(&format!("{own}="))) {
            continue;
        }
        skip_value = OWN.contains(&text.as_ref());
        if !skip_value {
            out.push(arg);
        }
    }
    out
}

/// One task's child run.
struct Child<'a> {
    command: &'a str,
    exe: &'a Path,
    args: &'a [OsString],
    task: &'a Path,
    /// Only the first child prints the sandbox grants.
    banner: bool,
}

impl Child<'_> {
    /// Runs the task in a child with `--json` and what is left of `deadline`, and returns
    /// its document; a task not run, or a child that printed none, gets a `host` error.
    fn run(&self, deadline: Deadline) -> Output {
        let Some(left) = deadline.for_child() else {
            return self.lost(format!("not run: less than a second of the deadline of {} s was left when its turn came", deadline.limit));
        };
        let mut cmd = Command::new(self.exe);
        cmd.args(self.args).arg("--json").arg("--deadline").arg(left.to_string()).arg("--task").arg(self.task);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        if !self.banner {
            cmd.arg("--no-banner");
        }
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => return self.lost(format!("cannot start its run: {e}")),
        };
        let name = self.task.file_stem().map_or_else(|| self.task.display().to_string(), |s| s.to_string_lossy().into_owned());
        let stderr = child.stderr.take().expect("piped");
        let forward = std::thread::spawn(move || forward_lines(&name, stderr));
        let mut stdout = child.stdout.take().expect("piped");
        let read = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        let status = wait_until(&mut child, deadline.at + OVERRUN);
        let stdout = read.join().unwrap_or_default();
        let _ = forward.join();
        match status {
            Ok(status) => serde_json::from_str(&stdout)
                .unwrap_or_else(|_| self.lost(format!("its run ended ({status}) without a report; `agent-provisioner ports` shows whether it left a journal"))),
            Err(why) => self.lost(why),
        }
    }

    /// A `host` error for this task.
    fn lost(&self, why: String) -> Output {
        Output {
            command: self.command.to_string(),
            ok: false,
            exit_code: EXIT_FAILED,
            error: Some(Error::Host { message: format!("{}: {why}", self.task.display()) }),
            ..Output::default()
        }
    }
}

/// Waits for `child` until `until`, then stops it (it is this process's own child).
fn wait_until(child: &mut std::process::Child, until: Instant) -> Result<String, String> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status.to_string()),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("its run had not ended well past the deadline and was stopped; `agent-provisioner ports` shows whether it left a journal".into());
            }
            Err(e) => return Err(format!("cannot wait for its run: {e}")),
        }
    }
}

/// Passes a child's stderr lines on, each prefixed with `[name] `.
fn forward_lines(name: &str, stderr: impl std::io::Read) {
    for line in std::io::BufReader::new(stderr).lines() {
        let Ok(line) = line else { return };
        crate::sys::secret::eprint_line(&format!("[{name}] {line}"));
    }
}

/// How bad an exit code is: failed and rolled back (1) over invalid or refused (2) over
/// running but not reported (3) over done (0); anything else (a run that died) worst.
fn severity(code: i32) -> u8 {
    match code {
        EXIT_OK => 0,
        EXIT_UNREPORTED => 1,
        EXIT_INVALID => 2,
        EXIT_FAILED => 3,
        _ => 4,
    }
}

/// The report of every task: one document with `tasks`, or one text block per task.
fn report(command: &str, tasks: Vec<TaskOutput>, as_json: bool) -> Rendered {
    let exit_code = tasks.iter().map(|t| t.output.exit_code).max_by_key(|&c| severity(c)).unwrap_or(EXIT_OK);
    let ok = tasks.iter().all(|t| t.output.ok);
    if as_json {
        return crate::output::json_document(&Output { command: command.to_string(), ok, exit_code, tasks: Some(tasks), ..Output::default() });
    }
    let done = tasks.iter().filter(|t| t.output.ok).count();
    let mut text = format!("{command} of {} tasks: {done} done, {} not (exit {exit_code})\n", tasks.len(), tasks.len() - done);
    tasks.iter().for_each(|t| text.push_str(&task_text(t)));
    Rendered::text(text, exit_code)
}

/// One task's outcome in a few lines.
fn task_text(t: &TaskOutput) -> String {
    let o = &t.output;
    let mut out = format!("\n{}: ", t.task);
    match (&o.outcome, &o.plan, &o.error) {
        (Some(Outcome::Provision(p)), _, _) => {
            let _ = writeln!(out, "provisioned {}, running as {} on port {}", p.handle, p.label, p.port);
            let _ = writeln!(out, "  home: {}\n  vault: {}", p.oc_home, p.vault_id);
            p.unreported.iter().for_each(|u| out.push_str(&format!("  not reported to Sesame: {u}\n")));
            p.warnings.iter().for_each(|w| out.push_str(&format!("  warning: {w}\n")));
        }
        (_, Some(plan), _) => {
            let _ = writeln!(out, "plan for {}: home {}, port {}, {} files, {} Sesame calls; nothing changed", plan.handle, plan.oc_home, plan.port, plan.files.len(), plan.calls.len());
            plan.warnings.iter().for_each(|w| out.push_str(&format!("  warning: {w}\n")));
        }
        (_, _, Some(error)) => out.push_str(&error_text(error)),
        _ => out.push_str("no outcome\n"),
    }
    out
}

fn error_text(error: &Error) -> String {
    match error {
        Error::InvalidInput { field, message } => format!("invalid {field}: {message}\n  Nothing was changed.\n"),
        Error::Refused { message } => format!("refused: {message}\n  Nothing was changed.\n"),
        Error::Host { message } => format!("error: {message}\n"),
        Error::Failed { step, message, rollback, archive } => {
            let mut out = format!("failed at step {step}: {message}\n  Rolled back:\n");
            for s in rollback {
                let _ = writeln!(out, "    [{}] {}: {}", if s.ok { "ok  " } else { "FAIL" }, s.action, s.detail);
            }
            if let Some(archive) = archive {
                let _ = writeln!(out, "  The partial home was archived to {archive}.");
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn args(parts: &[&str]) -> Vec<OsString> {
        parts.iter().map(OsString::from).collect()
    }

    #[test]
    fn children_get_every_option_but_the_tasks_jobs_and_deadline() {
        let given = args(&["--home", "/h", "--deadline", "9", "provision", "--task", "a.json", "--auto-port", "--task=b.json", "--jobs", "3", "--jobs=2", "--quiet", "--deadline=8"]);
        assert_eq!(child_args(given.into_iter()), args(&["--home", "/h", "provision", "--auto-port", "--quiet"]));
    }

    fn provision(parts: &[&str]) -> ProvisionArgs {
        let cli = crate::cli::args::Cli::try_parse_from(["agent-provisioner", "provision"].iter().chain(parts)).unwrap();
        match cli.command {
            crate::cli::args::Command::Provision(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_child_is_given_what_is_left_of_the_deadline_rounded_down_or_is_not_run() {
        let now = Instant::now();
        assert_eq!(Deadline { at: now + Duration::from_millis(5900), limit: 6 }.for_child(), Some(5));
        assert_eq!(Deadline { at: now + Duration::from_millis(900), limit: 6 }.for_child(), None);
        let task = Path::new("late.json");
        let child = Child { command: "provision", exe: Path::new("/nonexistent"), args: &[], task, banner: false };
        let output = child.run(Deadline { at: now, limit: 6 });
        let message = format!("{:?}", output.error);
        assert!(message.contains("late.json: not run: less than a second of the deadline of 6 s"), "{message}");
    }

    #[test]
    fn one_task_file_runs_alone_and_several_or_a_directory_run_as_a_batch() {
        let temp = tempfile::tempdir().unwrap();
        for name in ["b.json", "a.json", "notes.txt"] {
            std::fs::write(temp.path().join(name), "{}").unwrap();
        }
        std::fs::create_dir(temp.path().join("sub.json")).unwrap();
        let dir = temp.path().display().to_string();
        assert_eq!(tasks(&provision(&["--task", "x.json"])).unwrap(), None);
        assert_eq!(tasks(&provision(&["--task", "-"])).unwrap(), None);
        let found = tasks(&provision(&["--task", &dir])).unwrap().unwrap();
        assert_eq!(found, [temp.path().join("a.json"), temp.path().join("b.json")], "the directory's *.json files, sorted");
        let both = tasks(&provision(&["--task", "x.json", "--task", &dir])).unwrap().unwrap();
        assert_eq!(both.len(), 3);
        assert!(tasks(&provision(&["--task", "-", "--task", "x.json"])).unwrap_err().contains("stdin"));
        let empty = temp.path().join("sub.json");
        assert!(tasks(&provision(&["--task", &empty.display().to_string()])).unwrap_err().contains("holds no *.json task"));
    }

    fn done(code: i32) -> TaskOutput {
        let error = (code != EXIT_OK).then(|| Error::Refused { message: "m".into() });
        TaskOutput { task: format!("{code}.json"), output: Output { command: "provision".into(), ok: code == EXIT_OK, exit_code: code, error, ..Output::default() } }
    }

    #[test]
    fn the_exit_code_is_the_worst_tasks_and_the_document_lists_every_task() {
        for (codes, worst) in [(&[0, 0][..], 0), (&[0, 3], 3), (&[3, 2, 0], 2), (&[2, 1, 3], 1), (&[0, 9], 9)] {
            let rendered = report("provision", codes.iter().map(|&c| done(c)).collect(), true);
            assert_eq!(rendered.exit_code, worst, "{codes:?}");
            let doc: Output = serde_json::from_str(&rendered.stdout).unwrap();
            assert_eq!((doc.ok, doc.tasks.unwrap().len()), (worst == 0, codes.len()));
        }
        let text = report("provision", vec![done(0), done(2)], false).stdout;
        assert!(text.starts_with("provision of 2 tasks: 1 done, 1 not (exit 2)"), "{text}");
        assert!(text.contains("2.json: refused: m"), "{text}");
    }
}
