//! Adoption: bringing a sibling the original bash skill made under this host's
//! management (the WIT `adoption` interface, and what `adopt --scan` lists).
//!
//! The operator names the one sibling a run adopts (`adopt HANDLE`); the component can
//! begin no other. `begin` checks the home again ([`survey`]), saves everything adoption
//! may change ([`snapshot`]: the credential files, `openclaw.json`, the family registry,
//! the old definition with whether it was loaded and running), then records the home as
//! a sibling of this lead (which opens the file and service grants on it), stops the old
//! service and removes its definition ([`legacy_service`]). `migrate-credentials` moves
//! legacy keys into `.env` ([`migrate`]). `commit` archives the old definition and config
//! and drops the snapshot. Anything else — `abort`, an error, a trap, a component that
//! simply returns — ends in [`Adoption::end_of_run`] putting the snapshot back: the new
//! service stopped and removed, every file byte for byte, the old definition loaded and
//! running again as it was, the host's record of the home forgotten. A run killed
//! part-way leaves its snapshot on disk, and the next `begin` of that handle restores it
//! first.

mod legacy_service;
mod migrate;
mod snapshot;
mod survey;

pub use legacy_service::LegacyServices;
pub use survey::Survey;

use crate::record::audit::{Audit, Decision};
use crate::runtime::bindings::openclaw::provisioner::adoption::LegacySibling;
use crate::runtime::bindings::openclaw::provisioner::service::Host as _;
use crate::record::state::HostState;
use crate::caps::service::ServiceCap;
use snapshot::{Place, Snapshot};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The files of a sibling home adoption may change.
const HOME_FILES: [&str; 4] = ["openclaw.json", ".env", crate::lead::credentials::LEGACY_AUTH, survey::LEGACY_PROFILES];

/// The adoption capability of one run.
pub struct Adoption {
    /// The sibling the operator named (`adopt HANDLE`); `None` in every other command.
    allowed: Option<String>,
    home: PathBuf,
    lead_home: PathBuf,
    lead_handles: Vec<String>,
    state: Arc<HostState>,
    services: LegacyServices,
    audit: Arc<Audit>,
    /// The adoption begun and not committed.
    begun: Option<Snapshot>,
}

impl Adoption {
    pub fn new(allowed: Option<String>, lead_home: &Path, lead_handles: Vec<String>, state: Arc<HostState>, services: LegacyServices, audit: Arc<Audit>) -> Self {
        let home = services.home.clone();
        Self { allowed, home, lead_home: lead_home.into(), lead_handles, state, services, audit, begun: None }
    }

    /// The banner line of an `adopt HANDLE` run.
    pub fn describe(&self) -> Option<String> {
        let handle = self.allowed.as_ref()?;
        Some(format!(
            "adoption: only {} (named by the operator); the host snapshots what adoption changes into {}, takes over its old service definition, moves its legacy keys itself, and puts everything back unless the run commits; of that home the component may write only openclaw.json",
            naming::sibling_home(&self.home.display().to_string(), handle),
            self.snapshot_dir(handle).display()
        ))
    }

    fn survey(&self) -> Survey<'_> {
        Survey { home: &self.home, lead_home: &self.lead_home, lead_handles: &self.lead_handles, state: &self.state, services: &self.services }
    }

    /// Every sibling home on this host the host did not make, as found.
    pub fn candidates(&self) -> Vec<LegacySibling> {
        self.survey().candidates()
    }

    /// The sibling `handle` as found (also when it is no candidate: its refusals say why).
    pub fn inspect(&self, handle: &str) -> LegacySibling {
        self.survey().one(handle).sibling
    }

    fn snapshot_dir(&self, handle: &str) -> PathBuf {
        Snapshot::dir_of(Path::new(&naming::host_state_dir(&self.home.display().to_string())), handle)
    }

    /// The one sibling this run may adopt, or why not; audited.
    fn allowed(&self, op: &str, handle: &str) -> Result<(), String> {
        let result = match &self.allowed {
            Some(allowed) if allowed == handle => Ok(()),
            Some(allowed) => Err(format!("this run adopts {allowed} only (the operator named it), not {handle}")),
            None => Err("only `adopt HANDLE` adopts, and only the sibling the operator named".into()),
        };
        match &result {
            Ok(()) => self.audit.record("adoption", op, handle, Decision::Allowed, "the sibling the operator named"),
            Err(why) => self.audit.record("adoption", op, handle, Decision::Denied, why),
        }
        result
    }

    /// `begin`: see the module doc.
    pub fn begin(&mut self, handle: &str) -> Result<LegacySibling, String> {
        self.allowed("begin", handle)?;
        if self.begun.is_some() {
            return Err(format!("the adoption of {handle} has begun already"));
        }
        let dir = self.snapshot_dir(handle);
        if dir.exists() {
            return Err(format!("an adoption of {handle} is under way or was killed part-way (its snapshot is in {})", dir.display()));
        }
        let surveyed = self.survey().one(handle);
        if !surveyed.sibling.refusals.is_empty() {
            return Err(surveyed.sibling.refusals.join("; "));
        }
        let root = PathBuf::from(&surveyed.sibling.oc_home);
        let mut places: Vec<Place> = HOME_FILES.iter().map(|f| Place { root: root.clone(), relative: f.into() }).collect();
        places.push(Place { root: self.lead_home.join("agent-provisioner"), relative: "family.json".into() });
        let snapshot = match Snapshot::take(&dir, handle, &self.lead_home, &root, &places, surveyed.definition.as_ref()) {
            Ok(snapshot) => snapshot,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!("saving what adoption may change: {e:#}"));
            }
        };
        self.begun = Some(snapshot);
        self.state.claim_home(handle, &self.lead_home).map_err(|e| format!("recording {} as a sibling home: {e:#}", root.display()))?;
        self.audit.record("adoption", "begin", handle, Decision::Allowed, &format!("snapshot in {}", dir.display()));
        if let Some(found) = &surveyed.definition {
            let retired = self.services.retire(found)?;
            retired.iter().for_each(|line| self.audit.record("adoption", "retire", &found.definition.path, Decision::Allowed, line));
        }
        Ok(surveyed.sibling)
    }

    /// Before an `adopt HANDLE` run surveys anything: puts back what an adoption of that
    /// handle killed part-way left (its snapshot), saying so on stderr; refuses while the
    /// process that took the snapshot lives. Other runs recover nothing.
    pub fn recover(&mut self, services: &mut ServiceCap) -> Result<(), String> {
        let Some(handle) = self.allowed.clone().filter(|h| naming::check_sibling(h, &self.lead_handles).is_ok()) else { return Ok(()) };
        let dir = self.snapshot_dir(&handle);
        let snapshot = match Snapshot::load(&dir) {
            Ok(Some(snapshot)) => snapshot,
            Ok(None) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Ok(());
            }
            Err(e) => return Err(format!("{e:#}; move {} aside by hand", dir.display())),
        };
        let pid = snapshot.record.pid;
        if pid != std::process::id() && crate::caps::fs::restore::process_alive(pid) {
            return Err(format!("another adoption of {handle} is under way (process {pid})"));
        }
        let (done, failed) = self.put_back(snapshot, services);
        if failed {
            return Err(format!("an adoption of {handle} killed part-way could not all be put back: {}", done.join("; ")));
        }
        crate::sys::secret::eprint_line(&format!("agent-provisioner: an adoption of {handle} was killed part-way; put back first: {}", done.join("; ")));
        Ok(())
    }

    /// `migrate-credentials`.
    pub fn migrate_credentials(&self, handle: &str) -> Result<Vec<String>, String> {
        self.allowed("migrate-credentials", handle)?;
        self.begun.as_ref().filter(|s| s.record.handle == handle).ok_or("begin the adoption first")?;
        let home = PathBuf::from(naming::sibling_home(&self.home.display().to_string(), handle));
        let dir = snapshot::open_root(&home).map_err(|e| format!("{e:#}"))?;
        let done = migrate::migrate(&dir, &home.display().to_string())?;
        done.iter().for_each(|line| self.audit.record("adoption", "migrate-credentials", handle, Decision::Allowed, line));
        Ok(done)
    }

    /// `commit`: archives the old definition and config, drops the snapshot; returns
    /// the archive directory.
    pub fn commit(&mut self, handle: &str) -> Result<String, String> {
        self.allowed("commit", handle)?;
        let snapshot = self.begun.take_if(|s| s.record.handle == handle).ok_or("begin the adoption first")?;
        let archive = match self.archive(&snapshot) {
            Ok(archive) => archive,
            Err(e) => {
                self.begun = Some(snapshot);
                return Err(format!("archiving the old definition and config: {e:#}"));
            }
        };
        let _ = snapshot.remove();
        self.audit.record("adoption", "commit", handle, Decision::Allowed, &format!("old definition and config archived in {}", archive.display()));
        Ok(archive.display().to_string())
    }

    /// Writes the old definition and `openclaw.json` into a new archive directory.
    fn archive(&self, snapshot: &Snapshot) -> anyhow::Result<PathBuf> {
        use std::os::unix::fs::DirBuilderExt as _;
        let archives = self.home.join(".openclaw-archives");
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&archives)?;
        let stamp = time::OffsetDateTime::now_utc().format(time::macros::format_description!("[year][month][day]-[hour][minute][second]"))?;
        let dir = archives.join(format!("{}-adopted-{stamp}", snapshot.record.handle));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let out = cap_std::fs::Dir::open_ambient_dir(&dir, cap_std::ambient_authority())?;
        if let Some(def) = &snapshot.record.definition {
            let name = Path::new(&def.path).file_name().expect("a definition has a name");
            crate::sys::atomic::write(&out, Path::new(name), &snapshot.bytes(&def.saved)?, 0o600)?;
        }
        let config = snapshot.record.files.iter().find(|f| f.place.relative == Path::new("openclaw.json")).and_then(|f| f.saved.as_ref());
        if let Some(saved) = config {
            crate::sys::atomic::write(&out, Path::new("openclaw.json"), &snapshot.bytes(saved)?, 0o600)?;
        }
        Ok(dir)
    }

    /// `abort`: puts the snapshot back now; the lines say what was done.
    pub fn abort(&mut self, handle: &str, services: &mut ServiceCap) -> Result<Vec<String>, Vec<String>> {
        self.allowed("abort", handle).map_err(|e| vec![e])?;
        let snapshot = self.begun.take_if(|s| s.record.handle == handle).ok_or_else(|| vec!["no adoption of it has begun".to_string()])?;
        match self.put_back(snapshot, services) {
            (done, false) => Ok(done),
            (done, true) => Err(done),
        }
    }

    /// Puts back an adoption the run began and did not commit (whatever the component did).
    pub fn end_of_run(&mut self, services: &mut ServiceCap) {
        if let Some(snapshot) = self.begun.take() {
            let handle = snapshot.record.handle.clone();
            let (done, failed) = self.put_back(snapshot, services);
            let level = if failed { "could not all be put back" } else { "was put back" };
            crate::sys::secret::eprint_line(&format!("agent-provisioner: the adoption of {handle} did not finish and {level}: {}", done.join("; ")));
        }
    }

    /// Undoes an adoption from its snapshot: the new service, the files, the old
    /// definition (loaded and started as it was), the host's record; then drops the
    /// snapshot, unless something could not be put back. Returns the lines and whether a
    /// step failed.
    fn put_back(&self, snapshot: Snapshot, services: &mut ServiceCap) -> (Vec<String>, bool) {
        let handle = snapshot.record.handle.clone();
        let label = naming::label(&handle);
        let mut lines: Vec<Result<String, String>> = Vec::new();
        // A new service of the host's (a definition it can prove, or the direct backend's
        // record); an old launchd definition still in place is not the host's and stays.
        let installed = services.status(label.clone()).is_ok_and(|s| s.state != crate::runtime::bindings::RunState::NotInstalled);
        if installed {
            lines.push(services.uninstall(label.clone()).map(|()| format!("the new service {label} stopped and removed")).map_err(|e| format!("removing the new service {label}: {e:?}")));
        }
        lines.extend(snapshot.restore_files());
        lines.push(snapshot.remove_new_entries());
        if let Some(def) = &snapshot.record.definition {
            let reinstated = snapshot.bytes(&def.saved).map_err(|e| format!("{e:#}")).and_then(|bytes| self.services.reinstate(&def.definition(), &bytes, def.saved.mode));
            match reinstated {
                Ok(done) => lines.extend(done.into_iter().map(Ok)),
                Err(e) => lines.push(Err(format!("putting back {}: {e}", def.path))),
            }
        }
        lines.push(self.state.forget_sibling(&handle).map(|()| format!("{handle} is no sibling home of this host's again")).map_err(|e| format!("{e:#}")));
        let failed = lines.iter().any(Result::is_err);
        let lines: Vec<String> = lines.into_iter().map(|l| l.unwrap_or_else(|e| format!("FAILED: {e}"))).collect();
        for line in &lines {
            self.audit.record("adoption", "put-back", &handle, if line.starts_with("FAILED") { Decision::Denied } else { Decision::Allowed }, line);
        }
        if !failed {
            let _ = snapshot.remove();
        }
        (lines, failed)
    }
}
