//! `provision` of several tasks (`--task a.json --task b.json`, or `--task DIR`): each task
//! runs in a child process of this binary, with the same options and `--json`, at most
//! `--jobs` at once. Each child is a whole provision of its own — its own sandbox, its own
//! journal and rollback — so one failure rolls back only that sibling; concurrent runs
//! serialise only their bookkeeping on the lead's family lock. The parent passes each
//! child's progress lines on, prefixed with its task's name, collects each child's
//! document and prints one report: the `tasks` field of one `--json` document, or text.
//! With `--plan` each task is planned as if it ran alone; with `--resume` each task
//! resumes its own interrupted provision.

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

/// Runs every task in its own child process (`command` is `provision` or `plan`) and
/// renders one report.
pub fn run(command: &str, p: &ProvisionArgs, tasks: Vec<PathBuf>, as_json: bool) -> Rendered {
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
                    let output = run_child(command, &exe, &args, task, index == 0);
                    results.lock().expect("results lock")[index] = Some(output);
                }
            });
        }
    });
    let outputs = results.into_inner().expect("results lock").into_iter().map(|o| o.expect("every task ran"));
    let done: Vec<TaskOutput> = tasks.iter().zip(outputs).map(|(t, output)| TaskOutput { task: t.display().to_string(), output }).collect();
    report(command, done, as_json)
}

/// This process's arguments without `--task` and `--jobs` (and their values): the same
/// global and provision options for every child.
fn child_args(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for arg in args {
        let text = arg.to_string_lossy();
        if std::mem::take(&mut skip_value) || text.starts_with("--task=") || text.starts_with("--jobs=") {
            continue;
        }
        skip_value = text == "--task" || text == "--jobs";
        if !skip_value {
            out.push(arg);
        }
    }
    out
}

/// Runs one task in a child with `--json` (only the first prints the sandbox grants) and
/// returns its document; a child that printed none gets a `host` error in its place.
fn run_child(command: &str, exe: &Path, args: &[OsString], task: &Path, banner: bool) -> Output {
    let mut cmd = Command::new(exe);
    cmd.args(args).arg("--json").arg("--task").arg(task).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if !banner {
        cmd.arg("--no-banner");
    }
    let lost = |why: String| Output {
        command: command.to_string(),
        ok: false,
        exit_code: EXIT_FAILED,
        error: Some(Error::Host { message: format!("{}: {why}", task.display()) }),
        ..Output::default()
    };
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => return lost(format!("cannot start its run: {e}")),
    };
    let name = task.file_stem().map_or_else(|| task.display().to_string(), |s| s.to_string_lossy().into_owned());
    let stderr = child.stderr.take().expect("piped");
    let forward = std::thread::spawn(move || forward_lines(&name, stderr));
    let mut stdout = String::new();
    let _ = child.stdout.take().expect("piped").read_to_string(&mut stdout);
    let _ = forward.join();
    let status = child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
    serde_json::from_str(&stdout).unwrap_or_else(|_| lost(format!("its run ended ({status}) without a report; `agent-provisioner ports` shows whether it left a journal")))
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
        let output = Output { command: command.to_string(), ok, exit_code, tasks: Some(tasks), ..Output::default() };
        return Rendered { stdout: format!("{}\n", serde_json::to_string(&output).expect("outputs serialize")), exit_code };
    }
    let done = tasks.iter().filter(|t| t.output.ok).count();
    let mut text = format!("{command} of {} tasks: {done} done, {} not (exit {exit_code})\n", tasks.len(), tasks.len() - done);
    tasks.iter().for_each(|t| text.push_str(&task_text(t)));
    Rendered { stdout: text, exit_code }
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
    fn children_get_every_option_but_the_tasks_and_jobs() {
        let given = args(&["--home", "/h", "provision", "--task", "a.json", "--auto-port", "--task=b.json", "--jobs", "3", "--jobs=2", "--quiet"]);
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
