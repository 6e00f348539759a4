//! What a command prints, and its exit code.
//!
//! Text for people on stdout, or (`--json`) one JSON document for the calling agent: an
//! [`Output`] of the agent-facing contract (`crate::output::contract`).

/// The agent-facing contract: what `--json` prints, as types of its own.
pub mod contract;

use crate::runtime::bindings::commands::*;
use crate::runtime::bindings::RunState;
use crate::output::contract::{Error, Outcome, Output};
use crate::runtime::Answer;
use std::fmt::Write as _;

/// Exit codes (documented in `--help` and the README).
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_INVALID: i32 = 2;
pub const EXIT_UNREPORTED: i32 = 3;

/// Writes `rendered.stdout` on stdout: text [`scrub`](crate::sys::secret::scrub)bed as a
/// whole; a JSON document as it is (it was scrubbed value by value when it was made, so
/// a secret cannot reach its keys).
pub fn write_stdout(rendered: &Rendered) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let text = if rendered.json { rendered.stdout.clone() } else { crate::sys::secret::scrub(&rendered.stdout) };
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// A finished command: what to print and how to exit.
pub struct Rendered {
    pub stdout: String,
    pub exit_code: i32,
    /// `stdout` is a JSON document made by [`json_document`], scrubbed already.
    pub json: bool,
}

impl Rendered {
    /// Text for people (scrubbed when it is written).
    pub fn text(stdout: String, exit_code: i32) -> Self {
        Self { stdout, exit_code, json: false }
    }
}

/// `output` as one line of JSON, every string value scrubbed, and its exit code.
pub fn json_document(output: &Output) -> Rendered {
    Rendered { stdout: format!("{}\n", crate::sys::secret::scrubbed_json(output)), exit_code: output.exit_code, json: true }
}

/// Renders the component's answer to `command`.
pub fn render(command: &str, answer: &Answer, as_json: bool) -> Rendered {
    let with_code = |unreported: &[String]| if unreported.is_empty() { EXIT_OK } else { EXIT_UNREPORTED };
    let (output, exit_code, text) = match answer {
        Answer::Plan(Ok(plan)) => (Output { plan: Some(plan.into()), ..Output::default() }, EXIT_OK, plan_text(plan)),
        Answer::Provision(Ok(o)) => (outcome(Outcome::Provision(o.into())), with_code(&o.unreported), provision_text(o)),
        Answer::Lifecycle(Ok(o)) => (outcome(Outcome::Lifecycle(o.into())), with_code(&o.unreported), lifecycle_text(o)),
        Answer::Restore(Ok(o)) => (outcome(Outcome::Restore(o.into())), with_code(&o.unreported), restore_text(o)),
        Answer::Adopt(Ok(o)) => (outcome(Outcome::Adopt(o.into())), with_code(&o.unreported), adopt_text(o)),
        Answer::AdoptPlan(Ok(plans)) => (Output { adoptions: Some(plans.iter().map(Into::into).collect()), ..Output::default() }, EXIT_OK, adoption_plans_text(plans)),
        Answer::Health(Ok(r)) => (Output { health: Some(r.into()), ..Output::default() }, with_code(&r.unreported), health_text(r)),
        Answer::Members(Ok(m)) => (Output { members: Some(m.iter().map(Into::into).collect()), ..Output::default() }, EXIT_OK, members_text(m)),
        Answer::Ports(Ok(r)) => (Output { ports: Some(r.into()), ..Output::default() }, EXIT_OK, ports_text(r)),
        Answer::Rollback(Ok(o)) => {
            let code = if o.steps.iter().all(|s| s.ok) { EXIT_OK } else { EXIT_FAILED };
            (outcome(Outcome::Rollback(o.into())), code, rollback_text(o))
        }
        Answer::Plan(Err(e))
        | Answer::Provision(Err(e))
        | Answer::Lifecycle(Err(e))
        | Answer::Health(Err(e))
        | Answer::Rollback(Err(e))
        | Answer::Restore(Err(e))
        | Answer::Adopt(Err(e))
        | Answer::AdoptPlan(Err(e))
        | Answer::Members(Err(e))
        | Answer::Ports(Err(e)) => return command_error(command, e, as_json),
    };
    if as_json { document(command, exit_code, output) } else { Rendered::text(text, exit_code) }
}

fn outcome(outcome: Outcome) -> Output {
    Output { outcome: Some(outcome), ..Output::default() }
}

/// A command error found by the host itself (for example an oversized task).
pub fn command_error(command: &str, error: &CommandError, as_json: bool) -> Rendered {
    let exit_code = error_code(error);
    match as_json {
        true => document(command, exit_code, Output { error: Some(error.into()), ..Output::default() }),
        false => Rendered::text(format!("{}\n", error_text(command, error)), exit_code),
    }
}

/// A host-side failure (bad option, missing lead home, trap, deadline...).
pub fn host_error(command: &str, exit_code: i32, message: &str, as_json: bool) -> Rendered {
    if as_json {
        return document(command, exit_code, Output { error: Some(Error::Host { message: message.to_string() }), ..Output::default() });
    }
    crate::sys::secret::eprint_line(&format!("agent-provisioner {command}: {message}"));
    Rendered::text(String::new(), exit_code)
}

/// `output` as the one JSON document of `command`: `ok` when it carries no error.
pub fn document(command: &str, exit_code: i32, output: Output) -> Rendered {
    json_document(&Output { command: command.to_string(), ok: output.error.is_none(), exit_code, ..output })
}

fn error_code(error: &CommandError) -> i32 {
    match error {
        CommandError::InvalidInput(_) | CommandError::Refused(_) => EXIT_INVALID,
        CommandError::Failed(_) => EXIT_FAILED,
    }
}

fn error_text(command: &str, error: &CommandError) -> String {
    match error {
        CommandError::InvalidInput(f) => format!("{command}: invalid {}: {}\nNothing was changed.", f.field, f.message),
        CommandError::Refused(message) => format!("{command}: refused: {message}\nNothing was changed."),
        CommandError::Failed(f) => {
            let mut out = format!("{command} failed at step {}: {}\nRolled back:\n", f.step, f.message);
            for step in &f.rollback {
                let mark = if step.ok { "ok  " } else { "FAIL" };
                let _ = writeln!(out, "  [{mark}] {}: {}", step.action, step.detail);
            }
            if let Some(archive) = &f.archive {
                let _ = writeln!(out, "The partial home was archived to {archive}.");
            }
            out.trim_end().to_string()
        }
    }
}

fn plan_text(plan: &ProvisionPlan) -> String {
    let mut out = format!(
        "Plan for {} — nothing has been changed.\n  home:    {}\n  port:    {}\n  service: {}\n\nFiles:\n",
        plan.handle, plan.oc_home, plan.port, plan.label
    );
    for f in &plan.files {
        let detail = match (&f.source, f.secret) {
            (Some(source), _) => format!("  <- {source}"),
            (None, true) => format!("  ({} bytes, holds secrets: not shown)", f.size),
            (None, false) if f.action == "file" => format!("  ({} bytes)", f.size),
            _ => String::new(),
        };
        let mode = if f.action == "copy" { "kept".to_string() } else { format!("{:04o}", f.mode) };
        let _ = writeln!(out, "  {:<5} {mode:<4}  {}{detail}", f.action, f.path);
    }
    out.push_str("\nService:\n");
    for s in &plan.services {
        let _ = writeln!(out, "  {:<9} {}  {}", s.action, s.label, s.detail);
    }
    out.push_str("\nSesame calls:\n");
    for c in &plan.calls {
        let body = c.body.as_deref().map(|b| format!("  {b}")).unwrap_or_default();
        let _ = writeln!(out, "  [{}] {} {}{body}", c.purpose, c.method, c.url);
    }
    warnings(&mut out, &plan.warnings);
    out
}

fn provision_text(o: &ProvisionOutcome) -> String {
    let mut out = format!(
        "Provisioned {}: running as {} on port {}.\n  home:  {}\n  vault: {}\n  sesame channel: {}\n",
        o.handle,
        o.label,
        o.port,
        o.oc_home,
        o.vault_id,
        if o.sesame_authenticated { "authenticated" } else { "not confirmed in the log" }
    );
    let steps: Vec<String> = o.steps.iter().map(|s| format!("{} {} ms", s.step, s.millis)).collect();
    let _ = writeln!(out, "  steps: {}", steps.join(", "));
    unreported(&mut out, &o.unreported);
    warnings(&mut out, &o.warnings);
    out
}

fn lifecycle_text(o: &LifecycleOutcome) -> String {
    let pid = o.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
    let state = if o.action == "deprovision" { "removed" } else { state_word(o.state) };
    let mut out = format!("{} {}: {state}{pid}\n", o.action, o.handle);
    if let (Some(archive), Some(stats)) = (&o.archive, &o.archived) {
        let _ = writeln!(
            out,
            "  archived to {archive} ({} files, {} directories, {} bytes; verified)",
            stats.files, stats.directories, stats.bytes
        );
    }
    unreported(&mut out, &o.unreported);
    warnings(&mut out, &o.warnings);
    out
}

fn restore_text(o: &RestoreOutcome) -> String {
    let r = &o.restored;
    let mut out = format!(
        "Restored {} from {}: {} files, {} directories and {} bytes are back in {}, and {} runs on port {} and answers its health check.\n",
        o.handle, o.archive, r.files, r.directories, r.bytes, o.oc_home, o.label, o.port
    );
    let _ = writeln!(
        out,
        "The host left out {} of the archive (it copies code itself; tmp/ is scratch) and copied in the lead's {}.",
        listed(&o.left_out),
        listed(&o.plugins)
    );
    back_online(&mut out, o.sesame_authenticated, &o.unreported, &o.warnings);
    out
}

fn adopt_text(o: &AdoptOutcome) -> String {
    let moved = o.previous_port.map(|p| format!(" (moved from {p})")).unwrap_or_default();
    let mut out = format!(
        "Adopted {}: {} now runs its gateway from {} on port {}{moved} and answers its health check.\n",
        o.handle, o.label, o.oc_home, o.port
    );
    for change in &o.changes {
        let _ = writeln!(out, "  - {change}");
    }
    let _ = writeln!(out, "The old service definition and config are archived in {}.", o.archive_dir);
    back_online(&mut out, o.sesame_authenticated, &o.unreported, &o.warnings);
    out
}

fn adoption_plans_text(plans: &[AdoptionPlan]) -> String {
    if plans.is_empty() {
        return "No sibling home on this host is left to adopt: every ~/.openclaw-<handle> is managed already.\n".into();
    }
    let mut out = String::from("Nothing has been changed.\n");
    for p in plans {
        let port = match (p.port, p.new_port) {
            (Some(old), Some(new)) if old != new => format!("port {old} -> {new}"),
            (_, Some(port)) | (Some(port), None) => format!("port {port}"),
            (None, None) => "no port".into(),
        };
        let verdict = if p.blockers.is_empty() { "can be adopted" } else { "cannot be adopted as asked" };
        let _ = writeln!(out, "\n{} ({}, {port}): {verdict}", p.handle, p.oc_home);
        for blocker in &p.blockers {
            let _ = writeln!(out, "  ! {blocker}");
        }
        for overlap in &p.overlaps {
            let _ = writeln!(out, "  overlap: {overlap}");
        }
        for (i, change) in p.changes.iter().enumerate() {
            let _ = writeln!(out, "  {}. {change}", i + 1);
        }
    }
    out
}

/// `a`, `a and b`, `a, b and c`; `nothing` for none.
fn listed(items: &[String]) -> String {
    match items {
        [] => "nothing".into(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

fn health_text(report: &HealthReport) -> String {
    let mut out = format!("{:<20} {:>6}  {:<13} {:>8}  {:<7} {}\n", "SIBLING", "PORT", "SERVICE", "PID", "HEALTHY", "PROBE");
    for s in &report.siblings {
        let pid = s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:<20} {:>6}  {:<13} {:>8}  {:<7} {} ({} ms){}",
            s.handle,
            s.port,
            state_word(s.state),
            pid,
            if s.healthy { "yes" } else { "NO" },
            s.probe,
            s.probe_millis,
            if s.sesame_authenticated { ", sesame ok" } else { "" }
        );
        for problem in &s.problems {
            let _ = writeln!(out, "    problem: {problem}");
        }
    }
    if report.siblings.is_empty() {
        out.push_str("(no registered siblings)\n");
    }
    unreported(&mut out, &report.unreported);
    out
}

fn rollback_text(o: &RollbackOutcome) -> String {
    let mut out = format!("rollback {}: undid the provision interrupted at {}\n", o.handle, o.interrupted_at);
    for step in &o.steps {
        let mark = if step.ok { "ok  " } else { "FAIL" };
        let _ = writeln!(out, "  [{mark}] {}: {}", step.action, step.detail);
    }
    if let Some(archive) = &o.archive {
        let _ = writeln!(out, "The partial home was archived to {archive}.");
    }
    out
}

fn members_text(members: &[FamilyMember]) -> String {
    let mut out = format!("{:<20} {:>6}  {:<8} {:<8} {:<22} {}\n", "SIBLING", "PORT", "BACKEND", "STATUS", "CREATED", "HOME");
    for m in members {
        let _ = writeln!(out, "{:<20} {:>6}  {:<8} {:<8} {:<22} {}", m.handle, m.port, m.backend, m.status, m.created_at, m.oc_home);
        for problem in &m.problems {
            let _ = writeln!(out, "    problem: {problem}");
        }
    }
    if members.is_empty() {
        out.push_str("(no registered siblings)\n");
    }
    out
}

fn ports_text(report: &PortReport) -> String {
    let mut out = format!("{:<20} {:>6}  {:<26} {}\n", "SIBLING", "BASE", "CLAIMS", "LISTENING");
    for c in &report.claims {
        let listening: Vec<String> = c.listening.iter().map(u16::to_string).collect();
        let listening = if listening.is_empty() { "-".into() } else { listening.join(", ") };
        let pending = if c.pending { "  (provision under way or interrupted)" } else { "" };
        let _ = writeln!(out, "{:<20} {:>6}  {:<26} {listening}{pending}", c.handle, c.base, c.ranges);
    }
    match report.next_free {
        Some(port) => { let _ = writeln!(out, "next free base: {port}"); }
        None => out.push_str("next free base: none left in the range\n"),
    }
    out
}

fn state_word(state: RunState) -> &'static str {
    match state {
        RunState::Running => "running",
        RunState::Stopped => "stopped",
        RunState::NotInstalled => "not installed",
        RunState::Failed => "failed",
    }
}

/// How a sibling that came back (restored, adopted) stands: its Sesame channel, whether
/// Sesame was told it is online, and the warnings.
fn back_online(out: &mut String, sesame_authenticated: bool, unreported_calls: &[String], warning_lines: &[String]) {
    let channel = if sesame_authenticated { "shows its Sesame channel authenticated" } else { "does not show its Sesame channel authenticated yet" };
    let _ = writeln!(out, "Its gateway log {channel}.");
    if unreported_calls.is_empty() {
        out.push_str("Sesame was told the member is online.\n");
    }
    unreported(out, unreported_calls);
    warnings(out, warning_lines);
}

fn unreported(out: &mut String, items: &[String]) {
    if !items.is_empty() {
        out.push_str("Not reported to Sesame (after retries):\n");
        items.iter().for_each(|i| {
            let _ = writeln!(out, "  - {i}");
        });
    }
}

fn warnings(out: &mut String, items: &[String]) {
    items.iter().for_each(|w| {
        let _ = writeln!(out, "warning: {w}");
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_document_is_scrubbed_value_by_value_and_keeps_every_key() {
        crate::sys::secret::register(&crate::sys::secret::Secret::new("oc_home").unwrap());
        let error = CommandError::Refused("the oc_\u{7}home is here\u{1b}[2J".into());
        let rendered = command_error("provision", &error, true);
        let doc: serde_json::Value = serde_json::from_str(&rendered.stdout).unwrap();
        assert_eq!(doc, serde_json::json!({"command": "provision", "ok": false, "exit_code": 2, "error": {"kind": "refused", "message": "the [redacted] is here[2J"}}));
        assert!(rendered.json && rendered.exit_code == 2);
        let text = crate::sys::secret::scrub(&command_error("provision", &error, false).stdout);
        assert!(text.contains("[redacted]") && !text.contains("oc_home"), "{text}");
    }
}

