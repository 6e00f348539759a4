//! Processes of the direct backend, known by pid and identity: a recorded process is
//! signalled only while its pid still names the process that was recorded (same start
//! time, not a zombie), so a stale or reused pid is never hit.

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};
use serde::{Deserialize, Serialize};
use std::process::Child;
use std::time::{Duration, Instant};

/// How often waits look again.
pub const POLL: Duration = Duration::from_millis(50);

/// A process as it was recorded: its pid and its identity (its start time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    pub pid: u32,
    /// Linux: the start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub identity: String,
}

impl Proc {
    /// The live process `pid`, with its identity; `None` when it is gone or a zombie (or
    /// on a system without `/proc`, where no identity can be known).
    pub fn of(pid: u32) -> Option<Self> {
        identity(pid).map(|identity| Self { pid, identity })
    }

    /// Whether the recorded process still runs: its pid names the same process.
    pub fn is_alive(&self) -> bool {
        identity(self.pid).as_ref() == Some(&self.identity)
    }

    fn rustix_pid(&self) -> Pid {
        Pid::from_raw(self.pid as i32).expect("recorded pids are positive")
    }

    /// Sends `signal` to the process itself, when it is still the recorded one.
    pub fn signal(&self, signal: Signal) {
        if self.is_alive() {
            let _ = rustix::process::kill_process(self.rustix_pid(), signal);
        }
    }

    /// Sends `signal` to the process group this process leads, when it is still the
    /// recorded one (a zombie leader still holds its group id, so a child that has exited
    /// and is not yet reaped is signalled through [`signal_group_of_child`]).
    pub fn signal_group(&self, signal: Signal) {
        if self.is_alive() {
            let _ = rustix::process::kill_process_group(self.rustix_pid(), signal);
        }
    }
}

/// The identity of `pid` (see [`Proc::identity`]); `None` when it does not exist or is
/// a zombie.
fn identity(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after the last `)`.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    (fields.first() != Some(&"Z")).then(|| fields.get(19).map(|s| s.to_string())).flatten()
}

/// A child's exit in the form a shell shows it: its code, or 128 + the signal.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Whether `child` has exited, without reaping it: while it is not reaped its pid, and so
/// its process group id, cannot be reused, and the group can still be signalled safely.
pub fn has_exited(child: &Child) -> bool {
    let pid = Pid::from_raw(child.id() as i32).expect("child pids are positive");
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    match rustix::process::waitid(WaitId::Pid(pid), options) {
        Ok(status) => status.is_some(),
        // It was reaped already (or never was ours): it is gone either way.
        Err(_) => true,
    }
}

/// Sends `signal` to the process group of `child` (which leads it), until it is reaped.
pub fn signal_group_of_child(child: &Child, signal: Signal) {
    let group = Pid::from_raw(child.id() as i32).expect("child pids are positive");
    let _ = rustix::process::kill_process_group(group, signal);
}

/// Stops the process group `child` leads: SIGTERM (and SIGCONT, so a stopped process
/// sees it), SIGKILL after `grace`; then SIGKILL to whatever of the group is left, and
/// reaps the child. Returns its exit code.
pub fn terminate_child_group(child: &mut Child, grace: Duration) -> std::io::Result<i32> {
    signal_group_of_child(child, Signal::TERM);
    signal_group_of_child(child, Signal::CONT);
    let deadline = Instant::now() + grace;
    while !has_exited(child) && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    // Either it ignored SIGTERM, or it is gone and its children may not be.
    signal_group_of_child(child, Signal::KILL);
    child.wait().map(exit_code)
}

/// Waits until `proc` is gone, for at most `limit`; whether it is.
pub fn wait_gone(proc: &Proc, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while proc.is_alive() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
    true
}

/// Stops a recorded process group that is not this process's child (a gateway whose
/// supervisor is gone): SIGTERM and SIGCONT, SIGKILL after `grace`, each only while the
/// leader is still the recorded process.
pub fn terminate_group(leader: &Proc, grace: Duration) -> Result<(), String> {
    leader.signal_group(Signal::TERM);
    leader.signal_group(Signal::CONT);
    if wait_gone(leader, grace) {
        return Ok(());
    }
    leader.signal_group(Signal::KILL);
    if wait_gone(leader, Duration::from_secs(5)) {
        Ok(())
    } else {
        Err(format!("pid {} survived SIGKILL", leader.pid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn a_recorded_process_is_known_by_pid_and_start_time() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let proc = Proc::of(child.id()).expect("a live child has an identity");
        assert!(proc.is_alive());
        let forged = Proc { identity: "1".into(), ..proc.clone() };
        assert!(!forged.is_alive(), "same pid, another start time: not the recorded process");
        forged.signal(Signal::KILL);
        assert!(child.try_wait().unwrap().is_none(), "a forged identity is never signalled");
        child.kill().unwrap();
        // A zombie is not alive, though its pid still exists.
        std::thread::sleep(Duration::from_millis(100));
        assert!(!proc.is_alive());
        child.wait().unwrap();
    }

    #[test]
    fn a_stopped_process_is_resumed_to_see_its_sigterm() {
        use std::os::unix::process::CommandExt as _;
        let mut child = Command::new("sleep").arg("30").process_group(0).spawn().unwrap();
        signal_group_of_child(&child, Signal::STOP);
        let code = terminate_child_group(&mut child, Duration::from_secs(20)).unwrap();
        assert_eq!(code, 128 + 15, "ended by SIGTERM, not by SIGKILL after the grace period");
    }

    #[test]
    fn terminating_a_group_takes_its_children_and_escalates_to_sigkill() {
        use std::os::unix::process::CommandExt as _;
        // The leader ignores SIGTERM and has a child of its own in the group.
        let mut leader = Command::new("sh")
            .args(["-c", "trap '' TERM; sleep 30 & echo $!; wait"])
            .process_group(0)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(leader.stdout.take().unwrap()), &mut line).unwrap();
        let grandchild = Proc::of(line.trim().parse().unwrap()).unwrap();
        assert!(!has_exited(&leader));
        let code = terminate_child_group(&mut leader, Duration::from_millis(300)).unwrap();
        assert_eq!(code, 128 + 9, "SIGKILL after the grace period");
        assert!(wait_gone(&grandchild, Duration::from_secs(5)), "the group's other process is gone too");
    }
}
