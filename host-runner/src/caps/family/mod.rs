//! The `family` capability: the lead's family lock and handle claims, for the component.
//!
//! Both are `flock`s the kernel releases when the process ends (a kill -9 included), and
//! the host drops them when the component's run ends, whatever the component did. The
//! lock protects only the component's own bookkeeping (the registry, the journals that
//! claim ports, service installs); nothing the host decides by itself depends on it.
//!
//! - `stop`, `deprovision` and `rollback` hold the lock for the whole command (they are
//!   short); the component's `lock` then returns at once.
//! - `provision`, `start` and `restart` take it on demand: the component takes it around
//!   admission with its journal, service installs and registry updates, and waits for
//!   health or reports to Sesame without it, so runs for one lead go on side by side.
//! - Commands that change nothing are refused the lock; their claims only check, and
//!   create nothing (a handle no run has claimed has no claim file to check).
//!
//! A claim (`<lead home>/logs/agent-provisioner-claims/<handle>.lock`) marks the one
//! sibling a run works on, so a journal left by a killed run can be told from one a live
//! run is writing. Lock and release, each claim and every refusal are audited; a nested
//! `lock` is counted, not audited, so a component calling it a million times costs the
//! host a counter.

/// The lead's family lock, `<lead home>/logs/agent-provisioner.lock`.
pub mod lock;

use crate::record::audit::{Audit, Decision};
use crate::runtime::bindings::openclaw::provisioner::family;
use crate::caps::family::lock::HostLock;
use rustix::fs::{FlockOperation, flock};
use std::fs::File;
use std::io::{Seek as _, Write as _};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a command holds the family lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockScope {
    /// Held by the host for the whole command.
    Whole,
    /// Taken by the component around what must be serialised.
    OnDemand,
    /// Not granted: the command changes nothing.
    None,
}

/// How long a claim waits for a handle another run holds, which covers a concurrent
/// command that only checks it (and holds it for an instant); a run that works on the
/// handle holds it for seconds at least.
const CLAIM_WAIT: Duration = Duration::from_millis(300);

/// The handle a run claimed, shared with the capabilities that act only on it (the
/// credentials `fs.write-credentials` writes).
#[derive(Clone, Default)]
pub struct Claimed(Arc<Mutex<Option<String>>>);

impl Claimed {
    /// The handle claimed, while the run holds the claim.
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, handle: Option<String>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = handle;
    }
}

/// The family lock and claims of one command's run.
pub struct FamilyCap {
    lead_home: PathBuf,
    scope: LockScope,
    /// The command, for the holder line of a claim and for refusals.
    command: &'static str,
    /// `--lock-timeout`.
    timeout: Duration,
    /// The lock while it is held (for `Whole`, from before the run).
    held: Option<HostLock>,
    /// Nested `lock` calls not yet undone (`OnDemand`).
    depth: u64,
    /// The handle this run claimed, and its locked file.
    claim: Option<(String, File)>,
    /// The claimed handle, as the other capabilities see it.
    claimed: Claimed,
    /// Which handle the component may claim, as the host decided before it ran.
    claimable: Claimable,
    lead_handles: Vec<String>,
    audit: Arc<Audit>,
}

/// Which handle a run's component may claim; the host decides it before the run, from what
/// it read itself. A claim is what the other capabilities follow (credentials go only into
/// the claimed sibling's home), so a provision must not claim another sibling than its task's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claimable {
    /// Any one sibling handle: the host claims first for the commands on one sibling, and a
    /// run claims one handle.
    Any,
    /// Only this one: a provision claims its task's handle, as the host read the task.
    Only(String),
    /// None: a provision whose task names no handle the host could read.
    Nothing,
}

impl FamilyCap {
    /// The capability of `command` for the lead at `lead_home`; `held` is the lock a
    /// `Whole` command took before the run.
    pub fn new(lead_home: &Path, scope: LockScope, command: &'static str, timeout: Duration, held: Option<HostLock>, lead_handles: Vec<String>, audit: Arc<Audit>) -> Self {
        Self { lead_home: lead_home.to_path_buf(), scope, command, timeout, held, depth: 0, claim: None, claimed: Claimed::default(), claimable: Claimable::Any, lead_handles, audit }
    }

    /// The capability whose component may claim only what `claimable` says.
    pub fn claiming(self, claimable: Claimable) -> Self {
        Self { claimable, ..self }
    }

    /// Releases the lock and the claim: the component's run is over. Audited when the
    /// component had not undone every `lock` itself.
    pub fn end_of_run(&mut self) {
        if self.scope == LockScope::OnDemand && self.depth > 0 {
            let why = format!("the component's run ended with {} lock(s) not undone; released by the host", self.depth);
            self.audit.record("family", "unlock", &self.lock_path(), Decision::Allowed, &why);
        }
        self.depth = 0;
        self.held = None;
        self.claim = None;
        self.claimed.set(None);
    }

    /// The handle this run claims, as it changes.
    pub fn claimed(&self) -> Claimed {
        self.claimed.clone()
    }

    fn lock_path(&self) -> String {
        lock::path(&self.lead_home).display().to_string()
    }

    fn claim_path(&self, handle: &str) -> PathBuf {
        self.lead_home.join("logs/agent-provisioner-claims").join(format!("{handle}.lock"))
    }

    /// Takes the lock on demand, waiting at most `--lock-timeout` and what is left of the
    /// deadline.
    fn take(&mut self) -> Result<(), String> {
        let wait = crate::runtime::deadline::bound(self.timeout);
        let started = Instant::now();
        match lock::acquire(&self.lead_home, wait) {
            Ok(held) => {
                self.held = Some(held);
                self.depth = 1;
                let rule = format!("taken for the component's bookkeeping (waited {} ms)", started.elapsed().as_millis());
                self.audit.record("family", "lock", &self.lock_path(), Decision::Allowed, &rule);
                Ok(())
            }
            Err(e) => {
                let why = format!("{e:#}");
                self.audit.record("family", "lock", &self.lock_path(), Decision::Denied, &why);
                Err(why)
            }
        }
    }

    /// Claims `handle` for this run (in a command that changes nothing, only checks it).
    fn claim_inner(&mut self, handle: &str) -> Result<(), String> {
        naming::check_sibling(handle, &self.lead_handles).map_err(|why| format!("{handle:?} {why}"))?;
        match &self.claimable {
            Claimable::Only(task) if task != handle => return Err(format!("this run provisions {task} (its task's handle, as the host read it) and may claim no other")),
            Claimable::Nothing => return Err("this run's task names no handle the host could read, so it may claim none".into()),
            _ => {}
        }
        match &self.claim {
            Some((held, _)) if held == handle => return Ok(()),
            Some((held, _)) => return Err(format!("this run already works on {held}; a run may claim one handle")),
            None => {}
        }
        let path = self.claim_path(handle);
        let checking = self.scope == LockScope::None;
        let Some(mut file) = open_claim(&path, checking).map_err(|e| format!("{e:#}"))? else {
            return Ok(()); // only checked: no run has ever claimed it
        };
        let started = Instant::now();
        while flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            if started.elapsed() >= CLAIM_WAIT {
                return Err(format!("another agent-provisioner run ({}) is working on {handle}", lock::holder(&mut file)));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if checking {
            return Ok(()); // only checked: released as `file` closes
        }
        let noted = file.set_len(0).and_then(|()| file.rewind()).and_then(|_| write!(file, "pid {} ({})", std::process::id(), self.command));
        noted.map_err(|e| format!("{}: {e}", path.display()))?;
        self.claim = Some((handle.to_string(), file));
        self.claimed.set(Some(handle.to_string()));
        Ok(())
    }
}

/// Opens a claim file, not through a link, never blocking: creating it (0600 in a 0700
/// directory) to claim, or, `checking` only, as it is for reading (`None` when it is not
/// there).
fn open_claim(path: &Path, checking: bool) -> anyhow::Result<Option<File>> {
    use anyhow::Context as _;
    let mut options = cap_std::fs::OpenOptions::new();
    if checking {
        return match crate::sys::safe_open::open_no_follow(options.read(true), path, "a handle claim") {
            Err(e) if e.root_cause().downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) => Ok(None),
            other => other.map(Some),
        };
    }
    let dir = path.parent().expect("claims live in a directory");
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).with_context(|| format!("creating {}", dir.display()))?;
    cap_std::fs::OpenOptionsExt::mode(options.read(true).write(true).create(true).truncate(false), 0o600);
    crate::sys::safe_open::open_no_follow(&options, path, "a handle claim").map(Some)
}

impl family::Host for FamilyCap {
    fn lock(&mut self) -> Result<(), String> {
        match self.scope {
            LockScope::Whole => Ok(()),
            LockScope::OnDemand if self.depth > 0 => {
                self.depth += 1;
                Ok(())
            }
            LockScope::OnDemand => self.take(),
            LockScope::None => {
                let why = format!("`{}` changes nothing and is not granted the family lock", self.command);
                self.audit.record("family", "lock", &self.lock_path(), Decision::Denied, &why);
                Err(why)
            }
        }
    }

    fn unlock(&mut self) {
        if self.scope != LockScope::OnDemand || self.depth == 0 {
            return;
        }
        self.depth -= 1;
        if self.depth == 0 {
            self.held = None;
            self.audit.record("family", "unlock", &self.lock_path(), Decision::Allowed, "released by the component");
        }
    }

    fn claim(&mut self, handle: String) -> Result<(), String> {
        let already = self.claim.as_ref().is_some_and(|(held, _)| *held == handle);
        let result = self.claim_inner(&handle);
        let target = self.claim_path(naming::check_handle(&handle).map_or("(invalid handle)", |()| handle.as_str())).display().to_string();
        match &result {
            Ok(()) if already => {}
            Ok(()) if self.scope == LockScope::None => self.audit.record("family", "claim", &target, Decision::Allowed, "checked only: the command changes nothing"),
            Ok(()) => self.audit.record("family", "claim", &target, Decision::Allowed, "the sibling this run works on"),
            Err(why) => self.audit.record("family", "claim", &target, Decision::Denied, why),
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::bindings::openclaw::provisioner::family::Host as _;

    fn cap(lead: &Path, scope: LockScope) -> FamilyCap {
        FamilyCap::new(lead, scope, "provision", Duration::ZERO, None, vec!["atlas".into()], Arc::new(Audit::stderr_only()))
    }

    /// Whether another holder could take the lock right now.
    fn free(lead: &Path) -> bool {
        lock::acquire(lead, Duration::ZERO).is_ok()
    }

    #[test]
    fn on_demand_the_lock_is_reentrant_and_the_last_unlock_releases_it() {
        let temp = tempfile::tempdir().unwrap();
        let mut family = cap(temp.path(), LockScope::OnDemand);
        family.lock().unwrap();
        family.lock().unwrap();
        assert!(!free(temp.path()));
        family.unlock();
        assert!(!free(temp.path()), "still held once");
        family.unlock();
        assert!(free(temp.path()));
        family.unlock(); // unbalanced: nothing happens
        assert!(free(temp.path()));
    }

    #[test]
    fn a_million_locks_never_undone_cost_a_counter_and_end_with_the_run() {
        let temp = tempfile::tempdir().unwrap();
        let mut family = cap(temp.path(), LockScope::OnDemand);
        for _ in 0..1_000_000 {
            family.lock().unwrap();
        }
        assert_eq!(family.depth, 1_000_000);
        assert!(!free(temp.path()));
        family.end_of_run();
        assert!(free(temp.path()), "released when the run ends");
    }

    #[test]
    fn a_lock_held_elsewhere_fails_within_the_timeout_naming_the_holder() {
        let temp = tempfile::tempdir().unwrap();
        let _other = lock::acquire(temp.path(), Duration::ZERO).unwrap();
        let err = cap(temp.path(), LockScope::OnDemand).lock().unwrap_err();
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
    }

    #[test]
    fn commands_that_change_nothing_get_no_lock_and_whole_commands_hold_it_already() {
        let temp = tempfile::tempdir().unwrap();
        let err = cap(temp.path(), LockScope::None).lock().unwrap_err();
        assert!(err.contains("changes nothing"), "{err}");
        assert!(free(temp.path()));
        let held = lock::acquire(temp.path(), Duration::ZERO).unwrap();
        let mut whole = FamilyCap::new(temp.path(), LockScope::Whole, "stop", Duration::ZERO, Some(held), vec![], Arc::new(Audit::stderr_only()));
        whole.lock().unwrap();
        whole.unlock();
        assert!(!free(temp.path()), "a component's unlock does not release the host's lock");
        whole.end_of_run();
        assert!(free(temp.path()));
    }

    #[test]
    fn a_claim_is_one_valid_handle_held_until_the_run_ends() {
        let temp = tempfile::tempdir().unwrap();
        let mut first = cap(temp.path(), LockScope::OnDemand);
        first.claim("nova".into()).unwrap();
        first.claim("nova".into()).unwrap();
        assert!(first.claim("bob".into()).unwrap_err().contains("already works on nova"));
        let mut second = cap(temp.path(), LockScope::OnDemand);
        let err = second.claim("nova".into()).unwrap_err();
        assert!(err.contains(&format!("pid {} (provision)", std::process::id())) && err.contains("working on nova"), "{err}");
        for bad in ["../x", "atlas", "gateway", "a/b", ""] {
            assert!(second.claim(bad.into()).is_err(), "{bad}");
        }
        let files: Vec<_> = std::fs::read_dir(temp.path().join("logs/agent-provisioner-claims")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(files, ["nova.lock"], "nothing created for a refused handle");
        first.end_of_run();
        second.claim("nova".into()).unwrap();
    }

    #[test]
    fn a_provision_claims_only_its_tasks_handle_as_the_host_read_it() {
        let temp = tempfile::tempdir().unwrap();
        let mut family = cap(temp.path(), LockScope::OnDemand).claiming(Claimable::Only("nova".into()));
        let err = family.claim("lyra".into()).unwrap_err();
        assert!(err.contains("this run provisions nova (its task's handle"), "{err}");
        assert_eq!(family.claimed().get(), None, "nothing claimed by the refusal");
        family.claim("nova".into()).unwrap();
        assert_eq!(family.claimed().get().as_deref(), Some("nova"));
        let mut family = cap(temp.path(), LockScope::OnDemand).claiming(Claimable::Nothing);
        assert!(family.claim("lyra".into()).unwrap_err().contains("names no handle the host could read"));
        assert!(!temp.path().join("logs/agent-provisioner-claims/lyra.lock").exists());
    }

    #[test]
    fn a_command_that_changes_nothing_only_checks_a_claim_and_creates_nothing() {
        let temp = tempfile::tempdir().unwrap();
        let mut plan = cap(temp.path(), LockScope::None);
        plan.claim("nova".into()).unwrap();
        assert!(!temp.path().join("logs").exists(), "no claim directory or file");
        let mut run = cap(temp.path(), LockScope::OnDemand);
        run.claim("nova".into()).unwrap();
        let err = cap(temp.path(), LockScope::None).claim("nova".into()).unwrap_err();
        assert!(err.contains("is working on nova"), "a claim held elsewhere is still seen: {err}");
        run.end_of_run();
        let claim = temp.path().join("logs/agent-provisioner-claims/nova.lock");
        let before = (std::fs::read(&claim).unwrap(), std::fs::metadata(&claim).unwrap().modified().unwrap());
        cap(temp.path(), LockScope::None).claim("nova".into()).unwrap();
        assert_eq!((std::fs::read(&claim).unwrap(), std::fs::metadata(&claim).unwrap().modified().unwrap()), before, "checked, not rewritten");
    }
}
