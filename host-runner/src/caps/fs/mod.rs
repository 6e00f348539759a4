//! The `fs` capability: the WIT file operations, confined to the [`Grants`].
//!
//! Each call resolves its path to a grant (or is denied, naming the grants), checks the
//! grant allows the operation, and then works only through a directory capability opened
//! at the grant's root. Every decision is audited once. No read returns, and no copy
//! carries, a key: credential files and archives are never read ([`crate::caps::fs::key_files`]),
//! nor a hard-linked file, nor one holding a registered secret. What goes into a sibling
//! home is a short list ([`crate::caps::fs::sibling_files`]: the checked config, the workspace's
//! notes and memory, the agent directories, safe modes); the lead's plugins and skills are
//! copied by the host itself, and credentials written by it only for the sibling this run
//! works on, in `provision` and `restore`.

/// `.tar.gz` archives of directory capabilities (for archiving homes before removal).
pub mod archive;
/// The file grants: which paths the guest may touch, and how.
pub mod grants;
/// Credential files and other files whose bytes the component never reads.
pub mod key_files;
/// Restoring a sibling home from an archive that deprovision wrote.
pub mod restore;
/// What a component may write into a sibling home.
pub mod sibling_files;

use crate::sys::atomic;
use crate::record::audit::{Audit, Decision};
use crate::runtime::bindings::openclaw::provisioner::fs;
use crate::runtime::bindings::{CredentialLayout, EntryKind, EntryMeta, FsError, RestoredTree, TreeStats};
use crate::lead::credentials::{self, LeadKeys};
use crate::caps::family::Claimed;
use crate::runtime::limits::{WRITE_BUDGET, WriteBudget, Written};
use crate::caps::fs::restore::RestoreCaps;
use crate::caps::fs::grants::{Grants, Kind, Resolved, RootRefused, create_dir_exact};
use crate::sys::safe_open::{self, NotFollowed};
use crate::sys::secret::{self, Secret};
use crate::caps::fs::sibling_files::{Refused, SiblingRules};
use cap_std::fs::{Dir, FileType, Metadata, OpenOptions, PermissionsExt as _};
use cap_fs_ext::DirExt as _;
use cap_std::fs::OpenOptionsExt as _;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The largest file `read` returns.
const MAX_READ: u64 = 64 << 20;
/// The most entries `walk-tree` lists.
pub const MAX_WALK_ENTRIES: usize = 100_000;
/// The deepest directory `walk-tree` enters.
pub const MAX_WALK_DEPTH: usize = 256;
/// The most bytes of names one `walk-tree` listing holds: 100,000 entries of 160-byte
/// paths, so the entry cap binds first unless the names are long.
pub const MAX_WALK_BYTES: usize = 16 << 20;
/// What one `walk-tree` listing may hold.
pub const WALK_CAPS: WalkCaps = WalkCaps { entries: MAX_WALK_ENTRIES, bytes: MAX_WALK_BYTES };
/// The most bytes one copy of the lead's plugins and skills carries.
const MAX_COPY_BYTES: u64 = 512 << 20;

/// File operations for the guest, checked against [`Grants`] on every call.
pub struct FsCap {
    grants: Grants,
    audit: Arc<Audit>,
    lead_secret: Option<Secret>,
    plugins: LeadPlugins,
    lead_keys: LeadKeys,
    /// The sibling an `adopt` run takes over: a home the host did not make, of which the
    /// component may change only `openclaw.json` (the host moves the credentials).
    adopting: Option<String>,
    /// Sibling homes (by handle) this run archived whole or made: the component may remove
    /// them. Any other home is removed only at the operator's `without_archive`.
    removable: Mutex<HashSet<String>>,
    /// The operator's `deprovision HANDLE --without-archive`: that home may be removed
    /// without an archive.
    without_archive: Option<String>,
    /// Whose credentials this run may write ([`FsCap::writing_credentials`]).
    credentials: CredentialsFor,
    /// What the component may still write in this run.
    budget: WriteBudget,
}

/// The run's command and the handle it claimed: `write-credentials` writes only into the
/// home of that handle, and only in `provision` and `restore`.
#[derive(Clone, Default)]
struct CredentialsFor {
    command: &'static str,
    claimed: Claimed,
}

/// The commands that write a sibling's credentials.
const WRITES_CREDENTIALS: &[&str] = &["provision", "restore"];

/// The lead's plugins and skills the host copies into new siblings, and the API URL
/// their config must name.
#[derive(Clone, Debug, Default)]
pub struct LeadPlugins {
    /// Relative paths in the lead home (`extensions/sesame`, `skills/sesame`) that exist.
    pub paths: Vec<String>,
    /// Names of the plugins among them (copied into `extensions/`).
    plugin_names: Vec<String>,
    pub api_url: String,
}

impl LeadPlugins {
    /// The allowlisted paths (`--copy-plugin`/`--copy-skill`) that the lead home holds.
    pub fn found(lead_home: &Path, plugins: &[String], skills: &[String], api_url: &str) -> Self {
        let wanted = plugins.iter().map(|p| format!("extensions/{p}")).chain(skills.iter().map(|s| format!("skills/{s}")));
        let paths: Vec<String> = wanted.filter(|rel| std::fs::symlink_metadata(lead_home.join(rel)).is_ok_and(|m| m.is_dir())).collect();
        let plugin_names = paths.iter().filter_map(|p| p.strip_prefix("extensions/")).map(String::from).collect();
        Self { paths, plugin_names, api_url: api_url.to_string() }
    }
}

type Fs<T> = Result<T, FsError>;

/// Maps an I/O error on `path` to the WIT error.
fn io_error(path: &str, e: io::Error) -> FsError {
    match e.kind() {
        io::ErrorKind::NotFound => FsError::NotFound(path.to_string()),
        io::ErrorKind::AlreadyExists => FsError::AlreadyExists(path.to_string()),
        _ if e.get_ref().is_some_and(|reason| reason.is::<safe_open::HardLinked>()) => FsError::Denied(format!("{path}: {e}")),
        _ if is_escape(&e) => FsError::Denied(format!("{path}: a symlink or `..` leads outside the grant")),
        _ => FsError::Io(format!("{path}: {e}")),
    }
}

/// Whether cap-std refused a path that resolves outside its directory. It reports that
/// as `PermissionDenied` without an OS error (openat2's `EXDEV` under `RESOLVE_BENEATH`,
/// or its own path walk); a refusal from the kernel carries its errno, and the host's own
/// refusals carry their typed reason.
fn is_escape(e: &io::Error) -> bool {
    let hosts_own = e.get_ref().is_some_and(|reason| reason.is::<NotFollowed>() || reason.is::<RootRefused>() || reason.is::<safe_open::HardLinked>());
    e.kind() == io::ErrorKind::PermissionDenied && e.raw_os_error().is_none() && !hosts_own
}

fn kind_of(file_type: FileType) -> EntryKind {
    if file_type.is_symlink() {
        EntryKind::Symlink
    } else if file_type.is_dir() {
        EntryKind::Directory
    } else if file_type.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other
    }
}

fn meta(m: &Metadata) -> EntryMeta {
    let kind = kind_of(m.file_type());
    EntryMeta { kind, size: if kind == EntryKind::File { m.len() } else { 0 }, mode: m.permissions().mode() & 0o7777 }
}

/// `relative` or `.` for the root itself.
fn rel(r: &Resolved) -> &Path {
    if r.relative.as_os_str().is_empty() { Path::new(".") } else { &r.relative }
}

impl FsCap {
    pub fn new(grants: Grants, audit: Arc<Audit>, lead_secret: Option<Secret>, plugins: LeadPlugins, lead_keys: LeadKeys) -> Self {
        Self { grants, audit, lead_secret, plugins, lead_keys, adopting: None, removable: Mutex::default(), without_archive: None, credentials: CredentialsFor::default(), budget: WriteBudget::new(WRITE_BUDGET) }
    }

    /// The home of `handle` may be removed without an archive: the operator said so
    /// (`deprovision HANDLE --without-archive`).
    pub fn without_archive(self, handle: Option<String>) -> Self {
        Self { without_archive: handle, ..self }
    }

    /// The component may remove the home of `handle` (this run archived or made it).
    fn removable(&self, handle: &str) {
        self.removable.lock().unwrap_or_else(|e| e.into_inner()).insert(handle.to_string());
    }

    /// Lets `write-credentials` write, in `command` (`provision` or `restore` only), into
    /// the home of the handle the run claims through the `family` capability.
    pub fn writing_credentials(self, command: &'static str, claimed: Claimed) -> Self {
        Self { credentials: CredentialsFor { command, claimed }, ..self }
    }

    /// The same capability with a write budget of `cap` (tests use small ones).
    #[cfg(test)]
    pub fn with_write_budget(self, cap: Written) -> Self {
        Self { budget: WriteBudget::new(cap), ..self }
    }

    /// Takes what a write of `path` adds from the run's budget, or refuses it naming the
    /// budget.
    fn spend(&self, path: &str, wanted: Written) -> Fs<()> {
        self.budget.take(wanted).map_err(|why| FsError::Denied(format!("{path}: {why}")))
    }

    /// The home of `handle`, for the host calls that take a handle: only a sibling handle
    /// by the naming rules (never a reserved one such as `archives`, nor the lead's).
    fn handle_home(&self, handle: &str) -> Fs<String> {
        naming::check_sibling(handle, self.grants.lead_handles())
            .map_err(|why| FsError::Denied(format!("{handle:?} is not a sibling handle: it {why}")))?;
        Ok(self.grants.sibling_home(handle).display().to_string())
    }

    /// Narrows the grant on the home of `handle`, which this run adopts: of it the
    /// component may write only `openclaw.json` (whole, through `write-atomic`).
    pub fn adopting(self, handle: Option<String>) -> Self {
        Self { adopting: handle, ..self }
    }

    /// Checks what goes into a sibling home; other grants have no such rules.
    fn sibling_rules(&self, r: &Resolved, check: impl FnOnce(&SiblingRules) -> Result<(), Refused>) -> Fs<()> {
        if !matches!(r.kind, Kind::SiblingHome(_)) {
            return Ok(());
        }
        let rules = SiblingRules { home: &r.root, api_url: &self.plugins.api_url, plugins: &self.plugins.plugin_names };
        check(&rules).map_err(|why| FsError::Denied(format!("{}: {why}", r.root.display())))
    }

    /// Records a sibling home in the host's state before the guest creates it.
    fn claim(&self, r: &Resolved) -> Fs<()> {
        match &r.kind {
            Kind::SiblingHome(handle) if r.unclaimed => self
                .grants
                .state()
                .claim_home(handle, self.grants.lead_home())
                .map_err(|e| FsError::Io(format!("recording the new home {}: {e:#}", r.root.display()))),
            _ => Ok(()),
        }
    }

    /// Resolves `path` for `op`; `write` asks for a writable grant.
    fn check(&self, op: &str, path: &str, write: bool) -> Fs<Resolved> {
        let resolved = self.grants.resolve(path).map_err(|e| FsError::Denied(e.to_string()))?;
        if write && !resolved.writable {
            return Err(FsError::Denied(format!("{path}: the {} grant does not allow writing ({op})", resolved.describe())));
        }
        let adopted = matches!(&resolved.kind, Kind::SiblingHome(h) if self.adopting.as_ref() == Some(h));
        if write && adopted && !(op == "write-atomic" && resolved.relative == Path::new("openclaw.json")) {
            return Err(FsError::Denied(format!(
                "{path}: this run adopts {}, a home the host did not make: the component may change only its openclaw.json ({op} refused)",
                resolved.root.display()
            )));
        }
        Ok(resolved)
    }

    /// Audits one call: denied (by the grants, or by the confinement when a symlink or
    /// the lead's key is in the way), or allowed by its grant (even when it then fails
    /// for another reason, such as a missing file).
    fn audited<T>(&self, op: &str, target: &str, grant_path: &str, result: Fs<T>) -> Fs<T> {
        match (&result, self.grants.resolve(grant_path)) {
            (Err(FsError::Denied(why)), _) => self.audit.record("fs", op, target, Decision::Denied, why),
            (_, Ok(grant)) => self.audit.record("fs", op, target, Decision::Allowed, &grant.describe()),
            (_, Err(why)) => self.audit.record("fs", op, target, Decision::Denied, &why.to_string()),
        }
        result
    }

    /// No key leaves the host through `bytes`, read from `path` in any grant.
    fn guard(&self, path: &str, bytes: &[u8]) -> Fs<()> {
        if self.holds_key(bytes) {
            return Err(FsError::Denied(format!(
                "{path} holds a key the host registered (the lead's, or one of this run's), which only the host may read"
            )));
        }
        Ok(())
    }

    /// Whether `bytes` contain the lead's Sesame key, one of its provider keys, or any
    /// other registered secret ([`secret::contains_registered`]).
    fn holds_key(&self, bytes: &[u8]) -> bool {
        self.lead_secret.iter().chain(self.lead_keys.secrets()).any(|s| contains(bytes, s.expose().as_bytes())) || secret::contains_registered(bytes)
    }

    /// The root of `r`'s grant; `None` when a creatable root does not exist yet.
    fn root(&self, path: &str, r: &Resolved) -> Fs<Option<Dir>> {
        match r.open_root(None) {
            Ok(dir) => Ok(Some(dir)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied && matches!(r.kind, Kind::SiblingHome(_)) => {
                Err(FsError::Denied(format!("{path}: {} {e}", r.root.display())))
            }
            Err(e) if r.creatable_root() && is_symlink_error(&e) => {
                Err(FsError::Denied(format!("{path}: the grant's root {} is a symlink; not following it", r.root.display())))
            }
            Err(e) => Err(io_error(&r.root.display().to_string(), e)),
        }
    }

    fn existing_root(&self, path: &str, r: &Resolved) -> Fs<Dir> {
        self.root(path, r)?.ok_or_else(|| FsError::NotFound(path.to_string()))
    }

    fn read_inner(&self, path: &str) -> Fs<Vec<u8>> {
        let r = self.check("read", path, false)?;
        crate::caps::fs::key_files::check_read(&r).map_err(FsError::Denied)?;
        let dir = self.existing_root(path, &r)?;
        let bytes = safe_open::read_sole(&dir, rel(&r), MAX_READ).map_err(|e| io_error(path, e))?;
        self.guard(path, &bytes)?;
        Ok(bytes)
    }

    fn write_atomic_inner(&self, path: &str, contents: &[u8], mode: u32) -> Fs<()> {
        let r = self.check("write-atomic", path, true)?;
        if r.relative.as_os_str().is_empty() {
            return Err(FsError::Io(format!("{path}: is a grant's root directory, not a file")));
        }
        sibling_files::check_mode(mode).map_err(|why| FsError::Denied(format!("{path}: {why}")))?;
        self.sibling_rules(&r, |rules| sibling_files::check_write(&r.relative, contents, rules))?;
        let dir = self.existing_root(path, &r)?;
        let exists = dir.symlink_metadata(&r.relative).is_ok();
        if r.kind == Kind::Archives {
            archives_create_only(path, &r, exists)?;
        }
        self.spend(path, Written { bytes: contents.len() as u64, entries: u64::from(!exists) })?;
        self.in_claimed_home(path, &r)?;
        let write = if r.kind == Kind::Archives { atomic::create } else { atomic::write };
        write(&dir, &r.relative, contents, mode).map_err(|e| io_error(path, e))
    }

    /// The entries a `create-dir-all` of `r` would create (its grant's root included);
    /// none when the root cannot be opened (the creation then fails on its own).
    fn missing_entries(&self, path: &str, r: &Resolved) -> u64 {
        let dir = match self.root(path, r) {
            Ok(Some(dir)) => dir,
            Ok(None) => return 1 + r.relative.components().count() as u64,
            Err(_) => return 0,
        };
        let mut current = PathBuf::new();
        let mut missing = 0;
        for component in r.relative.components() {
            current.push(component);
            missing += u64::from(dir.symlink_metadata(&current).is_err());
        }
        missing
    }

    fn create_dir_all_inner(&self, path: &str, mode: u32) -> Fs<()> {
        let r = self.check("create-dir-all", path, true)?;
        sibling_files::check_mode(mode).map_err(|why| FsError::Denied(format!("{path}: {why}")))?;
        let mut current = PathBuf::new();
        for component in r.relative.components() {
            current.push(component);
            self.sibling_rules(&r, |_| sibling_files::check_dir(&current))?;
        }
        self.spend(path, Written { bytes: 0, entries: self.missing_entries(path, &r) })?;
        self.in_claimed_home(path, &r)?;
        self.claim(&r)?;
        let dir = match r.open_root(Some(mode)) {
            Ok(dir) => {
                if let Kind::SiblingHome(handle) = &r.kind
                    && r.unclaimed
                {
                    self.removable(handle);
                }
                dir
            }
            Err(e) => {
                if let Kind::SiblingHome(handle) = &r.kind
                    && r.unclaimed
                {
                    let _ = self.grants.state().release_home(handle);
                }
                return Err(match e.kind() {
                    io::ErrorKind::PermissionDenied => FsError::Denied(format!("{path}: {} {e}", r.root.display())),
                    _ => io_error(path, e),
                });
            }
        };
        let mut current = PathBuf::new();
        for component in r.relative.components() {
            current.push(component);
            match create_dir_exact(&dir, &current, mode) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let m = dir.symlink_metadata(&current).map_err(|e| io_error(path, e))?;
                    if !m.is_dir() {
                        return Err(FsError::Io(format!("{path}: {} exists and is not a directory", current.display())));
                    }
                }
                Err(e) => return Err(io_error(path, e)),
            }
        }
        Ok(())
    }

    fn metadata_inner(&self, path: &str) -> Fs<Option<EntryMeta>> {
        let r = self.check("metadata", path, false)?;
        if r.relative.as_os_str().is_empty() && r.creatable_root() {
            // A creatable root: report what is there without following a symlink.
            let parent = r.open_root_parent().map_err(|e| io_error(path, e))?;
            let name = r.root.file_name().expect("roots have names");
            return match parent.symlink_metadata(name) {
                Ok(m) => Ok(Some(meta(&m))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io_error(path, e)),
            };
        }
        let Some(dir) = self.root(path, &r)? else { return Ok(None) };
        match dir.symlink_metadata(rel(&r)) {
            Ok(m) => Ok(Some(meta(&m))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(path, e)),
        }
    }

    fn walk_tree_inner(&self, path: &str) -> Fs<Vec<String>> {
        let r = self.check("walk-tree", path, false)?;
        if r.kind != Kind::ProvisionerState {
            only_sibling_source(path, &r)?;
        }
        let dir = self.existing_root(path, &r)?.open_dir(rel(&r)).map_err(|e| io_error(path, e))?;
        let mut out = Vec::new();
        walk(&dir, &mut out, WALK_CAPS).map_err(|e| match e.get_ref().and_then(|why| why.downcast_ref::<WalkCapped>()) {
            Some(capped) => FsError::Denied(format!("{path}: {capped} (a walk cap)")),
            None => io_error(path, e),
        })?;
        Ok(out)
    }

    /// Copies `name` in `src` (the lead's home) to the same name in `dst` (a sibling
    /// home): directories recursively, each opened once (never through a symlink) so that
    /// every file operation is a one-name lookup; symlinks and special files are skipped
    /// (a file is opened without following links or blocking, and must still be a regular
    /// file); modes are narrowed to what a component may create; files holding the lead's
    /// key are refused; at most [`MAX_COPY_BYTES`] in all. `shown` is the source path for
    /// messages.
    fn copy_entry(&self, (src, dst): (&Dir, &Dir), name: &Path, shown: &Path, stats: &mut TreeStats) -> Fs<()> {
        let fail = |e: io::Error| io_error(&shown.display().to_string(), e);
        let m = src.symlink_metadata(name).map_err(fail)?;
        if !m.is_dir() && !m.is_file() {
            return Ok(());
        }
        let mode = m.permissions().mode() & sibling_files::ALLOWED_MODE;
        if m.is_dir() {
            create_dir_exact(dst, name, mode).map_err(fail)?;
            stats.directories += 1;
            let src_dir = src.open_dir_nofollow(name).map_err(fail)?;
            let dst_dir = dst.open_dir_nofollow(name).map_err(fail)?;
            let mut names: Vec<std::ffi::OsString> = src_dir.entries().and_then(|es| es.map(|e| e.map(|e| e.file_name())).collect()).map_err(fail)?;
            names.sort();
            for n in names {
                let n = Path::new(&n);
                self.copy_entry((&src_dir, &dst_dir), n, &shown.join(n), stats)?;
            }
        } else {
            let left = MAX_COPY_BYTES - stats.bytes;
            let bytes = match safe_open::read_regular(src, name, left) {
                // Swapped for a link or a special file since it was listed: skipped.
                Err(e) if matches!(e.kind(), io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidInput) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    return Err(FsError::Denied(format!("{}: the copy would exceed {MAX_COPY_BYTES} bytes", shown.display())));
                }
                other => other.map_err(fail)?,
            };
            self.guard(&shown.display().to_string(), &bytes)?;
            let mut options = OpenOptions::new();
            options.write(true).create_new(true).mode(mode);
            let mut file = dst.open_with(name, &options).map_err(fail)?;
            file.write_all(&bytes).map_err(fail)?;
            file.set_permissions(cap_std::fs::Permissions::from_mode(mode)).map_err(fail)?;
            stats.files += 1;
            stats.bytes += bytes.len() as u64;
        }
        Ok(())
    }

    fn remove_tree_inner(&self, path: &str) -> Fs<()> {
        let r = self.check("remove-tree", path, true)?;
        if r.relative.as_os_str().is_empty() {
            let Kind::SiblingHome(handle) = &r.kind else {
                return Err(FsError::Denied(format!("{path}: the root of the {} grant cannot be removed", r.describe())));
            };
            self.may_remove_home(path, handle)?;
            self.in_claimed_home(path, &r)?;
            let parent = r.open_root_parent().map_err(|e| io_error(path, e))?;
            remove(&parent, Path::new(r.root.file_name().expect("named")), path)?;
            return self
                .grants
                .state()
                .release_home(handle)
                .map_err(|e| FsError::Io(format!("{path} was removed, but the host's record was not updated: {e:#}")));
        }
        if r.kind == Kind::Archives {
            return Err(FsError::Denied(format!("{path}: {ARCHIVES_CREATE_ONLY}; nothing there is removed")));
        }
        self.in_claimed_home(path, &r)?;
        match self.root(path, &r)? {
            None => Ok(()),
            Some(dir) => remove(&dir, &r.relative, path),
        }
    }

    /// A sibling home is removed only when this run archived or made it, or when the
    /// operator asked for its removal without an archive.
    fn may_remove_home(&self, path: &str, handle: &str) -> Fs<()> {
        if self.removable.lock().unwrap_or_else(|e| e.into_inner()).contains(handle) {
            return Ok(());
        }
        if self.without_archive.as_deref() == Some(handle) {
            self.audit.record("fs", "remove-tree", path, Decision::Allowed, "without an archive: the operator's deprovision --without-archive");
            return Ok(());
        }
        Err(FsError::Denied(format!(
            "{path}: a sibling home is removed only after this run archived it (fs.archive-tree) or made it, or at the operator's `deprovision {handle} --without-archive`"
        )))
    }

    /// The sibling home `source` (or a directory in it) to archive or check, opened.
    fn archive_source(&self, op: &str, source: &str) -> Fs<(Resolved, Dir)> {
        let from = self.check(op, source, false)?;
        only_sibling_source(source, &from)?;
        let dir = self.existing_root(source, &from)?.open_dir(rel(&from)).map_err(|e| io_error(source, e))?;
        Ok((from, dir))
    }

    fn check_archivable_inner(&self, source: &str) -> Fs<TreeStats> {
        let (_, src) = self.archive_source("check-archivable", source)?;
        archive::check(&src, &archive_root_name(source)).map_err(|e| io_error(source, e))
    }

    fn archive_tree_inner(&self, source: &str, archive: &str) -> Fs<TreeStats> {
        let target = format!("{source} -> {archive}");
        let (from, src) = self.archive_source("archive-tree", source)?;
        let to = self.check("archive-tree", archive, true)?;
        let (dst_parent, name) = match (to.relative.parent(), to.relative.file_name()) {
            (Some(parent), Some(name)) => (parent.to_path_buf(), name.to_string_lossy().into_owned()),
            _ => return Err(FsError::Io(format!("{archive}: not a file path inside a grant"))),
        };
        if to.kind != Kind::Archives || !name.ends_with(".tar.gz") {
            return Err(FsError::Denied(format!(
                "{archive}: archives are written only as *.tar.gz in the archives grant, whose archives the component cannot read back"
            )));
        }
        let dst_root = self.existing_root(archive, &to)?;
        let dst = if dst_parent.as_os_str().is_empty() { dst_root } else { dst_root.open_dir(&dst_parent).map_err(|e| io_error(archive, e))? };
        if dst.symlink_metadata(&name).is_ok() {
            return Err(FsError::AlreadyExists(archive.to_string()));
        }
        let root_name = archive_root_name(source);
        let temp = format!(".{name}.tmp-{}", std::process::id());
        let mut options = OpenOptions::new();
        options.write(true).create_new(true).mode(0o600);
        let result = (|| {
            let file = dst.open_with(&temp, &options)?;
            let mut writer = io::BufWriter::new(file);
            let stats = archive::write(&src, &root_name, &mut writer)?;
            let file = writer.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            // Never over an archive that appeared meanwhile: archives are create-only.
            dst.hard_link(&temp, &dst, &name)?;
            dst.remove_file(&temp)?;
            Ok(stats)
        })();
        let stats = result.map_err(|e| {
            let _ = dst.remove_file(&temp);
            io_error(&target, e)
        })?;
        if let Kind::SiblingHome(handle) = &from.kind
            && from.relative.as_os_str().is_empty()
        {
            self.removable(handle);
        }
        Ok(stats)
    }

    /// Writes the sibling's credential file: the task's key, or the lead's for `provider`;
    /// only into the home of `handle`, a sibling this run claimed, in `provision` or
    /// `restore` ([`FsCap::credentials_target`]).
    fn write_credentials_inner(&self, handle: &str, home: &str, provider: &str, layout: CredentialLayout, key: Option<String>) -> Fs<String> {
        let r = self.credentials_target(handle, home)?;
        let denied = |why: &dyn std::fmt::Display| FsError::Denied(format!("{home}: {why}"));
        let key = match key {
            Some(given) => Secret::new(given).ok_or_else(|| denied(&"the task's key is empty"))?,
            None => match self.lead_keys.get(provider) {
                Some((key, _)) => key.clone(),
                None => {
                    let var = credentials::env_var(provider).map_err(|e| denied(&e))?;
                    return Err(denied(&format!(
                        "the lead has no {provider} key to pass on ({var} is not in its environment or {}/.env, and its legacy auth.json has none)",
                        self.grants.lead_home().display()
                    )));
                }
            },
        };
        let (relative, contents) = credentials::render(provider, &key, layout).map_err(|e| denied(&e))?;
        self.in_claimed_home(home, &r)?;
        let dir = self.existing_root(home, &r)?;
        atomic::write(&dir, Path::new(relative), &contents, 0o600).map_err(|e| io_error(&format!("{home}/{relative}"), e))?;
        Ok(format!("{home}/{relative}"))
    }

    /// The home `write-credentials` may write into: that of a sibling handle (the
    /// archives, reserved and lead handles are not), in a command that writes credentials.
    fn credentials_target(&self, handle: &str, home: &str) -> Fs<Resolved> {
        let r = self.check("write-credentials", home, true)?;
        let command = self.credentials.command;
        if !WRITES_CREDENTIALS.contains(&command) {
            return Err(FsError::Denied(format!(
                "{home}: write-credentials is granted only in {}, not in `{command}`",
                WRITES_CREDENTIALS.join(" and ")
            )));
        }
        if r.kind != Kind::SiblingHome(handle.to_string()) || !r.relative.as_os_str().is_empty() {
            return Err(FsError::Denied(format!("{handle:?} is not a sibling handle: credentials go only into a sibling's own home, not the {}", r.describe())));
        }
        Ok(r)
    }

    /// Refuses a change in a sibling home other than the one of the sibling this run
    /// claimed (`family.claim`): a run writes into, copies into and removes from only the
    /// home of the sibling it works on. Checked last, after the rules of the write itself.
    fn in_claimed_home(&self, path: &str, r: &Resolved) -> Fs<()> {
        let Kind::SiblingHome(handle) = &r.kind else { return Ok(()) };
        match self.credentials.claimed.get() {
            Some(claimed) if claimed == *handle => Ok(()),
            Some(claimed) => Err(FsError::Denied(format!("{path}: this run works on {claimed}; it changes only the home of the sibling it claimed"))),
            None => Err(FsError::Denied(format!("{path}: this run has claimed no sibling (family.claim); it changes only the home of the sibling it works on"))),
        }
    }

    /// Copies each allowlisted lead plugin and skill into the sibling home, replacing an
    /// earlier copy. The sibling home must be granted (it is the one being provisioned).
    fn copy_lead_plugins_inner(&self, home: &str) -> Fs<Vec<String>> {
        let to_home = self.check("copy-lead-plugins", home, true)?;
        self.in_claimed_home(home, &to_home)?;
        let lead = self.grants.open_lead_home().map_err(|e| io_error(&self.grants.lead_home().display().to_string(), e))?;
        let sibling = self.existing_root(home, &to_home)?;
        let mut stats = TreeStats { files: 0, directories: 0, bytes: 0 };
        for relative in &self.plugins.paths {
            let relative = Path::new(relative);
            let parent = relative.parent().expect("plugin paths have a parent");
            match create_dir_exact(&sibling, parent, 0o700) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(io_error(home, e)),
                _ => {}
            }
            remove(&sibling, relative, home)?;
            let open = |dir: &Dir, path: &str| dir.open_dir_nofollow(parent).map_err(|e| io_error(path, e));
            let (src, dst) = (open(&lead, &self.grants.lead_home().join(parent).display().to_string())?, open(&sibling, home)?);
            let name = Path::new(relative.file_name().expect("plugin paths have a name"));
            let shown = self.grants.lead_home().join(relative);
            if let Err(e) = self.copy_entry((&src, &dst), name, &shown, &mut stats) {
                let _ = remove(&sibling, relative, home);
                return Err(e);
            }
        }
        Ok(self.plugins.paths.clone())
    }

    fn list_archive_inner(&self, archive: &str) -> Fs<Vec<String>> {
        let r = self.check("list-archive", archive, false)?;
        if r.kind != Kind::Archives {
            return Err(FsError::Denied(format!("{archive}: only archives in the archives grant can be listed, not the {}", r.describe())));
        }
        let file = safe_open::open_sole(&self.existing_root(archive, &r)?, rel(&r)).map_err(|e| io_error(archive, e))?;
        let names = archive::list(io::BufReader::new(file)).map_err(|e| FsError::Io(format!("{archive}: not a readable .tar.gz ({e})")))?;
        Ok(names)
    }
}

impl FsCap {
    /// Restores the home of `handle` from `archive` (in the archives grant): the host
    /// reads, checks and unpacks it ([`crate::caps::fs::restore`]), records the home as made for this
    /// lead, and renames it into place; on any error nothing is written. What was left out
    /// and made private is audited.
    fn restore_archive_inner(&self, archive: &str, handle: &str, home: &str) -> Fs<RestoredTree> {
        let from = self.check("restore-archive", archive, false)?;
        if from.kind != Kind::Archives {
            return Err(FsError::Denied(format!("{archive}: only archives in the archives grant can be restored, not the {}", from.describe())));
        }
        let to = self.check("restore-archive", home, true)?;
        if to.kind != Kind::SiblingHome(handle.to_string()) || !to.relative.as_os_str().is_empty() {
            return Err(FsError::Denied(format!("{handle:?} is not a sibling handle")));
        }
        let file = safe_open::open_sole(&self.existing_root(archive, &from)?, rel(&from)).map_err(|e| io_error(archive, e))?;
        let parent = to.open_root_parent().map_err(|e| io_error(home, e))?;
        let rules = SiblingRules { home: &to.root, api_url: &self.plugins.api_url, plugins: &self.plugins.plugin_names };
        let staged = restore::stage(&parent, handle, io::BufReader::new(file), &rules, &RestoreCaps::DEFAULT).map_err(|e| match e {
            restore::Error::Exists(why) => FsError::AlreadyExists(format!("{home}: {why}")),
            restore::Error::Refused(why) => FsError::Denied(format!("{archive}: {why}; nothing was written")),
            restore::Error::Io(why) => FsError::Io(format!("{archive}: {why}; nothing was written")),
        })?;
        let summary = staged.summary.clone();
        self.removable(handle);
        let state = self.grants.state();
        state.claim_home(handle, self.grants.lead_home()).map_err(|e| FsError::Io(format!("recording the home {home}: {e:#}")))?;
        if let Err(e) = staged.commit() {
            // Forgotten only if it is not there: a home renamed into place stays recorded.
            if parent.symlink_metadata(naming::home_name(handle)).is_err() {
                let _ = state.release_home(handle);
            }
            return Err(io_error(home, e));
        }
        self.audit.record("fs", "restore-archive", &format!("{archive} -> {home}"), Decision::Allowed, &restore_decisions(&summary));
        Ok(RestoredTree { files: summary.files, directories: summary.directories, bytes: summary.bytes, left_out: summary.left_out })
    }
}

/// What the host decided in a restore, for its audit line.
fn restore_decisions(s: &restore::Summary) -> String {
    let list = |items: &[String]| if items.is_empty() { "nothing".to_string() } else { items.join(", ") };
    let mut text = format!(
        "restored {} files, {} directories, {} bytes; left out (not what a sibling home may hold; code is the host's to copy): {}; made 0600: {}",
        s.files,
        s.directories,
        s.bytes,
        list(&s.left_out),
        list(&s.private)
    );
    if !s.stale_removed.is_empty() {
        text.push_str(&format!("; removed what interrupted restores left: {}", s.stale_removed.join(", ")));
    }
    text
}

/// The WIT `fs` interface: each call checked by its `_inner` step and audited once.
impl fs::Host for FsCap {
    fn read(&mut self, path: String) -> Fs<Vec<u8>> {
        self.audited("read", &path, &path, self.read_inner(&path))
    }

    fn write_atomic(&mut self, path: String, contents: Vec<u8>, mode: u32) -> Fs<()> {
        self.audited("write-atomic", &path, &path, self.write_atomic_inner(&path, &contents, mode))
    }

    fn create_dir_all(&mut self, path: String, mode: u32) -> Fs<()> {
        self.audited("create-dir-all", &path, &path, self.create_dir_all_inner(&path, mode))
    }

    fn metadata(&mut self, path: String) -> Fs<Option<EntryMeta>> {
        self.audited("metadata", &path, &path, self.metadata_inner(&path))
    }

    fn walk_tree(&mut self, path: String) -> Fs<Vec<String>> {
        self.audited("walk-tree", &path, &path, self.walk_tree_inner(&path))
    }

    fn remove_tree(&mut self, path: String) -> Fs<()> {
        self.audited("remove-tree", &path, &path, self.remove_tree_inner(&path))
    }

    fn archive_tree(&mut self, source: String, archive: String) -> Fs<TreeStats> {
        self.audited("archive-tree", &format!("{source} -> {archive}"), &archive, self.archive_tree_inner(&source, &archive))
    }

    fn check_archivable(&mut self, source: String) -> Fs<TreeStats> {
        self.audited("check-archivable", &source, &source, self.check_archivable_inner(&source))
    }

    fn list_archive(&mut self, archive: String) -> Fs<Vec<String>> {
        self.audited("list-archive", &archive, &archive, self.list_archive_inner(&archive))
    }

    fn restore_archive(&mut self, archive: String, handle: String) -> Fs<RestoredTree> {
        let home = self.grants.sibling_home(&handle).display().to_string();
        let result = self.handle_home(&handle).and_then(|home| self.restore_archive_inner(&archive, &handle, &home));
        self.audited("restore-archive", &format!("{archive} -> {home}"), &archive, result)
    }

    fn write_credentials(&mut self, handle: String, provider: String, layout: CredentialLayout, key: Option<String>) -> Fs<String> {
        let home = self.grants.sibling_home(&handle).display().to_string();
        let from = if key.is_some() { "the task's key" } else { "the lead's key" };
        let target = format!("{provider} credential ({from}) -> {home}");
        let result = self.handle_home(&handle).and_then(|home| self.write_credentials_inner(&handle, &home, &provider, layout, key));
        self.audited("write-credentials", &target, &home, result)
    }

    fn copy_lead_plugins(&mut self, handle: String) -> Fs<Vec<String>> {
        let home = self.grants.sibling_home(&handle).display().to_string();
        let result = self.handle_home(&handle).and_then(|home| self.copy_lead_plugins_inner(&home));
        self.audited("copy-lead-plugins", &format!("{} -> {home}", self.plugins.paths.join(", ")), &home, result)
    }
}

/// The name an archive's entries start with: the source directory's own.
fn archive_root_name(source: &str) -> String {
    Path::new(source).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "root".into())
}

/// Bulk reads take only a sibling home — never the lead's home or the logs; the
/// provisioner's own state (its journals) may be walked, not archived.
fn only_sibling_source(path: &str, r: &Resolved) -> Fs<()> {
    match r.kind {
        Kind::SiblingHome(_) => Ok(()),
        _ => Err(FsError::Denied(format!("{path}: only a sibling home can be walked or archived, not the {}", r.describe()))),
    }
}

/// Why the archives grant takes no change of what is there.
const ARCHIVES_CREATE_ONLY: &str =
    "archives and member records are create-only for the component (each may be the only copy of a deprovisioned sibling)";

/// A `write-atomic` in the archives grant: only a new member record (`*.member.json`,
/// which deprovision keeps beside its archive); archives come from `archive-tree`.
fn archives_create_only(path: &str, r: &Resolved, exists: bool) -> Fs<()> {
    if !r.relative.to_string_lossy().ends_with(".member.json") {
        return Err(FsError::Denied(format!("{path}: the component writes only member records (*.member.json) in the archives grant; archives are made by archive-tree")));
    }
    if exists {
        return Err(FsError::Denied(format!("{path} exists: {ARCHIVES_CREATE_ONLY}")));
    }
    Ok(())
}

fn is_symlink_error(e: &io::Error) -> bool {
    // `open_dir_nofollow` on a symlink fails with ELOOP or ENOTDIR.
    matches!(e.raw_os_error(), Some(code) if code == rustix::io::Errno::LOOP.raw_os_error() || code == rustix::io::Errno::NOTDIR.raw_os_error())
}

/// Removes `relative` in `dir` (a tree, a file or a link, never what a link points to);
/// nothing there is not an error.
pub(crate) fn remove(dir: &Dir, relative: &Path, path: &str) -> Fs<()> {
    match dir.symlink_metadata(relative) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(path, e)),
        Ok(m) if m.is_dir() => dir.remove_dir_all(relative).map_err(|e| io_error(path, e)),
        Ok(_) => dir.remove_file(relative).map_err(|e| io_error(path, e)),
    }
}

/// What one listing may hold: entries, and bytes of their names together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkCaps {
    pub entries: usize,
    pub bytes: usize,
}

/// A listing stopped at one of its caps (the message says which).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WalkCapped(String);

fn capped(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, WalkCapped(why))
}

/// Lists `dir` into `out` (paths relative to it, directories ending with `/`), depth first
/// and sorted, within `caps` and [`MAX_WALK_DEPTH`] levels; directories are entered without
/// following links. A cap reached is a [`WalkCapped`] error, with what was listed so far
/// in `out`.
pub(crate) fn walk(dir: &Dir, out: &mut Vec<String>, caps: WalkCaps) -> io::Result<()> {
    walk_below(dir, "", out, &mut 0, caps)
}

/// [`walk`] of the directory `prefix`, with `bytes` the length of the names listed so far.
fn walk_below(dir: &Dir, prefix: &str, out: &mut Vec<String>, bytes: &mut usize, caps: WalkCaps) -> io::Result<()> {
    if prefix.matches('/').count() >= MAX_WALK_DEPTH {
        return Err(capped(format!("{prefix}: nested more than {MAX_WALK_DEPTH} directories deep")));
    }
    let mut entries: Vec<(String, FileType)> = dir
        .entries()?
        .map(|e| e.and_then(|e| Ok((e.file_name().to_string_lossy().into_owned(), e.file_type()?))))
        .collect::<io::Result<_>>()?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, kind) in entries {
        if out.len() >= caps.entries {
            return Err(capped(format!("more than {} entries; not listing further", caps.entries)));
        }
        let listed = if kind.is_dir() { format!("{prefix}{name}/") } else { format!("{prefix}{name}") };
        *bytes += listed.len();
        if *bytes > caps.bytes {
            return Err(capped(format!("more than {} bytes of names; not listing further", caps.bytes)));
        }
        out.push(listed.clone());
        if kind.is_dir() {
            walk_below(&dir.open_dir_nofollow(&name)?, &listed, out, bytes, caps)?;
        }
    }
    Ok(())
}

/// Whether `needle` (non-empty) occurs in `haystack`.
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests;
