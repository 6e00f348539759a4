//! In-memory fakes of every capability, for native unit tests of the logic.

use crate::caps::*;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

/// The effects of every fake of a [`World`], in the order they happened: file-system
/// changes (as in [`MemFs::log`]), service actions (`install LABEL`...; status queries
/// left out) and HTTP requests (`METHOD URL`).
#[derive(Clone, Default)]
pub struct Timeline(Rc<RefCell<Vec<String>>>);

impl Timeline {
    fn push(&self, entry: String) {
        self.0.borrow_mut().push(entry);
    }

    /// Forgets the entries so far (a fixture's own setup).
    pub fn clear(&self) {
        self.0.borrow_mut().clear();
    }

    /// Every entry so far.
    pub fn entries(&self) -> Vec<String> {
        self.0.borrow().clone()
    }

    /// The position of the first entry equal to `prefix`, else of the first starting
    /// with it; panics when there is none.
    pub fn position(&self, prefix: &str) -> usize {
        let entries = self.0.borrow();
        let exact = entries.iter().position(|e| e == prefix);
        exact.or_else(|| entries.iter().position(|e| e.starts_with(prefix))).unwrap_or_else(|| panic!("no {prefix:?} in {entries:#?}"))
    }

    /// Whether some entry starts with `prefix`.
    pub fn has(&self, prefix: &str) -> bool {
        self.0.borrow().iter().any(|e| e.starts_with(prefix))
    }

    /// For each entry that starts with `prefix`, in order: whether the family lock was
    /// held then (between a `lock` and its `unlock`).
    pub fn locked(&self, prefix: &str) -> Vec<bool> {
        let mut held = false;
        let mut found = Vec::new();
        for entry in self.0.borrow().iter() {
            match entry.as_str() {
                "lock" => held = true,
                "unlock" => held = false,
                e if e.starts_with(prefix) => found.push(held),
                _ => {}
            }
        }
        found
    }
}

/// One node of the in-memory file system.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    File { contents: Vec<u8>, mode: u32 },
    Dir { mode: u32 },
    Symlink { target: String },
}

/// An in-memory file system keyed by absolute path. Archives are stored as files whose
/// contents are their entry names, one per line.
#[derive(Default)]
pub struct MemFs {
    pub nodes: RefCell<BTreeMap<String, Node>>,
    /// Paths (and everything under them) where every operation is denied.
    pub denied: RefCell<Vec<String>>,
    /// Operation names (`write-atomic:PATH`, `write-credentials:PATH`...) that fail with an I/O error.
    pub failing: RefCell<BTreeSet<String>>,
    /// Every mutating call, in order.
    pub log: RefCell<Vec<String>>,
    /// What `copy-lead-plugins` copies: (lead source path, path relative to the sibling home).
    pub lead_plugins: RefCell<Vec<(String, String)>>,
    /// The lead's provider keys the fake host holds (provider, key).
    pub lead_keys: RefCell<BTreeMap<String, String>>,
    /// What each archive holds (paths relative to the archived home), for `restore-archive`.
    pub archived: RefCell<BTreeMap<String, Vec<(String, Node)>>>,
    /// Where the mutating calls go too.
    pub timeline: Timeline,
}

/// The home the fakes' sibling homes live in.
pub const HOME: &str = "/h";

impl MemFs {
    /// Copies a tree as the host's plugin copy does (symlinks skipped).
    fn copy_node(&self, source: &str, destination: &str) -> Result<TreeStats, FsError> {
        if self.exists(destination) {
            return Err(FsError::AlreadyExists(destination.to_string()));
        }
        self.require_dir(Self::parent(destination))?;
        let copied: Vec<(String, Node)> = {
            let nodes = self.nodes.borrow();
            let root = nodes.get(source).cloned().ok_or(FsError::NotFound(source.to_string()))?;
            let prefix = format!("{source}/");
            std::iter::once((destination.to_string(), root))
                .chain(nodes.iter().filter_map(|(p, n)| {
                    let rest = p.strip_prefix(&prefix)?;
                    (!matches!(n, Node::Symlink { .. }))
                        .then(|| (format!("{destination}/{rest}"), n.clone()))
                }))
                .collect()
        };
        self.record(format!("copy {source} {destination}"));
        self.nodes.borrow_mut().extend(copied);
        Ok(self.stats(destination))
    }

    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file (and its parent directories, mode 0755).
    pub fn add_file(&self, path: &str, contents: &str) {
        self.add_parents(path);
        self.nodes.borrow_mut().insert(
            path.to_string(),
            Node::File { contents: contents.as_bytes().to_vec(), mode: 0o644 },
        );
    }

    pub fn add_dir(&self, path: &str) {
        self.add_parents(path);
        self.nodes.borrow_mut().insert(path.to_string(), Node::Dir { mode: 0o755 });
    }

    pub fn file(&self, path: &str) -> Option<String> {
        match self.nodes.borrow().get(path) {
            Some(Node::File { contents, .. }) => Some(String::from_utf8_lossy(contents).into()),
            _ => None,
        }
    }

    pub fn mode(&self, path: &str) -> Option<u32> {
        match self.nodes.borrow().get(path) {
            Some(Node::File { mode, .. }) | Some(Node::Dir { mode }) => Some(*mode),
            _ => None,
        }
    }

    pub fn exists(&self, path: &str) -> bool {
        self.nodes.borrow().contains_key(path)
    }

    /// Paths under `root` (exclusive), sorted.
    pub fn paths_under(&self, root: &str) -> Vec<String> {
        let prefix = format!("{}/", root.trim_end_matches('/'));
        self.nodes.borrow().keys().filter(|p| p.starts_with(&prefix)).cloned().collect()
    }

    /// Logs a mutating call, in [`MemFs::log`] and the timeline.
    fn record(&self, entry: String) {
        self.timeline.push(entry.clone());
        self.log.borrow_mut().push(entry);
    }

    pub fn fail(&self, op: &str, path: &str) {
        self.failing.borrow_mut().insert(format!("{op}:{path}"));
    }

    fn add_parents(&self, path: &str) {
        let mut nodes = self.nodes.borrow_mut();
        let mut current = String::new();
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            current.push('/');
            current.push_str(part);
            nodes.entry(current.clone()).or_insert(Node::Dir { mode: 0o755 });
        }
    }

    fn check(&self, op: &str, path: &str) -> Result<(), FsError> {
        if self.denied.borrow().iter().any(|d| path == d || path.starts_with(&format!("{d}/"))) {
            return Err(FsError::Denied(format!("{path}: outside the test grants")));
        }
        if self.failing.borrow().contains(&format!("{op}:{path}")) {
            return Err(FsError::Io(format!("{path}: injected failure")));
        }
        Ok(())
    }

    fn parent(path: &str) -> &str {
        path.rsplit_once('/').map(|(p, _)| if p.is_empty() { "/" } else { p }).unwrap_or("/")
    }

    fn require_dir(&self, path: &str) -> Result<(), FsError> {
        if path == "/" {
            return Ok(());
        }
        match self.nodes.borrow().get(path) {
            Some(Node::Dir { .. }) => Ok(()),
            Some(_) => Err(FsError::Io(format!("{path}: not a directory"))),
            None => Err(FsError::NotFound(path.to_string())),
        }
    }

    fn meta(node: &Node) -> EntryMeta {
        match node {
            Node::File { contents, mode } => {
                EntryMeta { kind: EntryKind::File, size: contents.len() as u64, mode: *mode }
            }
            Node::Dir { mode } => EntryMeta { kind: EntryKind::Directory, size: 0, mode: *mode },
            Node::Symlink { .. } => EntryMeta { kind: EntryKind::Symlink, size: 0, mode: 0o777 },
        }
    }

    fn stats(&self, root: &str) -> TreeStats {
        let nodes = self.nodes.borrow();
        let mut stats = TreeStats { files: 0, directories: 0, bytes: 0 };
        let mut count = |node: &Node| match node {
            Node::File { contents, .. } => {
                stats.files += 1;
                stats.bytes += contents.len() as u64;
            }
            Node::Dir { .. } => stats.directories += 1,
            Node::Symlink { .. } => {}
        };
        if let Some(node) = nodes.get(root) {
            count(node);
        }
        let prefix = format!("{root}/");
        nodes.iter().filter(|(p, _)| p.starts_with(&prefix)).for_each(|(_, n)| count(n));
        stats
    }
}

impl Files for MemFs {
    fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        self.check("read", path)?;
        match self.nodes.borrow().get(path) {
            Some(Node::File { contents, .. }) => Ok(contents.clone()),
            Some(_) => Err(FsError::Io(format!("{path}: not a file"))),
            None => Err(FsError::NotFound(path.to_string())),
        }
    }

    fn write_atomic(&self, path: &str, contents: &[u8], mode: u32) -> Result<(), FsError> {
        self.check("write-atomic", path)?;
        self.require_dir(Self::parent(path))?;
        self.record(format!("write {path} {mode:o}"));
        self.nodes
            .borrow_mut()
            .insert(path.to_string(), Node::File { contents: contents.to_vec(), mode });
        Ok(())
    }

    fn create_dir_all(&self, path: &str, mode: u32) -> Result<(), FsError> {
        self.check("create-dir-all", path)?;
        let mut current = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            current.push('/');
            current.push_str(part);
            let existing = self.nodes.borrow().get(&current).cloned();
            match existing {
                Some(Node::Dir { .. }) => {}
                Some(_) => return Err(FsError::Io(format!("{current}: not a directory"))),
                None => {
                    self.record(format!("mkdir {current} {mode:o}"));
                    self.nodes.borrow_mut().insert(current.clone(), Node::Dir { mode });
                }
            }
        }
        Ok(())
    }

    fn metadata(&self, path: &str) -> Result<Option<EntryMeta>, FsError> {
        self.check("metadata", path)?;
        Ok(self.nodes.borrow().get(path).map(Self::meta))
    }

    fn walk_tree(&self, path: &str) -> Result<Vec<String>, FsError> {
        self.check("walk-tree", path)?;
        self.require_dir(path)?;
        let prefix = format!("{path}/");
        Ok(self
            .nodes
            .borrow()
            .iter()
            .filter_map(|(p, n)| {
                let rest = p.strip_prefix(&prefix)?;
                Some(if matches!(n, Node::Dir { .. }) { format!("{rest}/") } else { rest.to_string() })
            })
            .collect())
    }

    fn write_credentials(&self, handle: &str, provider: &str, layout: CredentialLayout, key: Option<&str>) -> Result<String, FsError> {
        let home = naming::sibling_home(HOME, handle);
        let path = match layout {
            CredentialLayout::EnvFile => format!("{home}/.env"),
            CredentialLayout::Legacy => format!("{home}/agents/main/agent/auth.json"),
        };
        self.check("write-credentials", &path)?;
        let key = match key {
            Some(key) => key.to_string(),
            None => self.lead_keys.borrow().get(provider).cloned().ok_or_else(|| FsError::Denied(format!("no lead key for {provider}")))?,
        };
        self.write_atomic(&path, format!("{provider}={key}\n").as_bytes(), 0o600)?;
        Ok(path)
    }

    fn remove_tree(&self, path: &str) -> Result<(), FsError> {
        self.check("remove-tree", path)?;
        self.record(format!("remove {path}"));
        let prefix = format!("{path}/");
        self.nodes.borrow_mut().retain(|p, _| p != path && !p.starts_with(&prefix));
        Ok(())
    }

    fn archive_tree(&self, source: &str, archive: &str) -> Result<TreeStats, FsError> {
        self.check("archive-tree", source)?;
        self.check("archive-tree", archive)?;
        if self.exists(archive) {
            return Err(FsError::AlreadyExists(archive.to_string()));
        }
        self.require_dir(Self::parent(archive))?;
        let name = source.rsplit('/').next().unwrap_or(source);
        let mut entries = vec![format!("{name}/")];
        entries.extend(self.walk_tree(source)?.into_iter().map(|e| format!("{name}/{e}")));
        let stats = self.stats(source);
        let prefix = format!("{source}/");
        let held = self.nodes.borrow().iter().filter_map(|(p, n)| Some((p.strip_prefix(&prefix)?.to_string(), n.clone()))).collect();
        self.archived.borrow_mut().insert(archive.to_string(), held);
        self.record(format!("archive {source} {archive}"));
        self.nodes.borrow_mut().insert(
            archive.to_string(),
            Node::File { contents: entries.join("\n").into_bytes(), mode: 0o600 },
        );
        Ok(stats)
    }

    fn check_archivable(&self, source: &str) -> Result<TreeStats, FsError> {
        self.check("check-archivable", source)?;
        self.require_dir(source)?;
        self.record(format!("check-archivable {source}"));
        Ok(self.stats(source))
    }

    fn list_archive(&self, archive: &str) -> Result<Vec<String>, FsError> {
        let contents = self.read(archive)?;
        Ok(String::from_utf8_lossy(&contents).lines().map(String::from).collect())
    }

    /// Restores what `archive_tree` kept of `archive`, leaving out `extensions/` and
    /// `skills/` as the host leaves out code paths.
    fn restore_archive(&self, archive: &str, handle: &str) -> Result<RestoredTree, FsError> {
        self.check("restore-archive", archive)?;
        let home = naming::sibling_home(HOME, handle);
        if self.exists(&home) {
            return Err(FsError::AlreadyExists(home));
        }
        let held = self.archived.borrow().get(archive).cloned().ok_or_else(|| FsError::Denied(format!("{archive}: not an archive of a home")))?;
        self.record(format!("restore {archive} {home}"));
        let (kept, left_out): (Vec<_>, Vec<_>) = held.into_iter().partition(|(p, _)| !p.starts_with("extensions") && !p.starts_with("skills"));
        self.nodes.borrow_mut().insert(home.clone(), Node::Dir { mode: 0o700 });
        self.nodes.borrow_mut().extend(kept.into_iter().map(|(p, n)| (format!("{home}/{p}"), n)));
        let stats = self.stats(&home);
        let left_out = if left_out.is_empty() { vec![] } else { vec![format!("extensions/ ({} entries)", left_out.len())] };
        Ok(RestoredTree { files: stats.files, directories: stats.directories, bytes: stats.bytes, left_out })
    }

    fn copy_lead_plugins(&self, handle: &str) -> Result<Vec<String>, FsError> {
        let home = naming::sibling_home(HOME, handle);
        let plugins = self.lead_plugins.borrow().clone();
        for (source, relative) in &plugins {
            let destination = format!("{home}/{relative}");
            self.create_dir_all(Self::parent(&destination), 0o700)?;
            self.remove_tree(&destination)?;
            self.copy_node(source, &destination)?;
        }
        Ok(plugins.into_iter().map(|(_, relative)| relative).collect())
    }
}

/// A service manager that records calls and keeps states in memory.
pub struct FakeServices {
    pub backend: ServiceBackend,
    pub calls: RefCell<Vec<String>>,
    pub installed: RefCell<HashMap<String, ServiceSpec>>,
    pub running: RefCell<BTreeSet<String>>,
    /// Calls (`start:LABEL`...) that fail.
    pub failing: RefCell<BTreeSet<String>>,
    /// Labels whose process exits right after start, with this code.
    pub exits_at_once: RefCell<HashMap<String, i32>>,
    /// Labels the service manager gave up on, with its reason.
    pub gave_up: RefCell<HashMap<String, String>>,
    pub timeline: Timeline,
}

impl Default for FakeServices {
    fn default() -> Self {
        Self {
            backend: ServiceBackend::Direct,
            calls: RefCell::default(),
            installed: RefCell::default(),
            running: RefCell::default(),
            failing: RefCell::default(),
            exits_at_once: RefCell::default(),
            gave_up: RefCell::default(),
            timeline: Timeline::default(),
        }
    }
}

impl FakeServices {
    fn call(&self, op: &str, label: &str) -> Result<(), ServiceError> {
        self.calls.borrow_mut().push(format!("{op} {label}"));
        self.timeline.push(format!("{op} {label}"));
        if self.failing.borrow().contains(&format!("{op}:{label}")) {
            return Err(ServiceError::Failed(format!("{op} {label}: injected failure")));
        }
        if op != "install" && !self.installed.borrow().contains_key(label) {
            return Err(ServiceError::NotInstalled(label.to_string()));
        }
        Ok(())
    }
}

impl Services for FakeServices {
    fn install(&self, spec: &ServiceSpec) -> Result<Installed, ServiceError> {
        self.call("install", &spec.label)?;
        self.installed.borrow_mut().insert(spec.label.clone(), spec.clone());
        Ok(Installed {
            backend: self.backend,
            label: spec.label.clone(),
            definition_path: format!("/services/{}", spec.label),
        })
    }

    fn start(&self, label: &str) -> Result<(), ServiceError> {
        self.call("start", label)?;
        if !self.exits_at_once.borrow().contains_key(label) {
            self.running.borrow_mut().insert(label.to_string());
        }
        Ok(())
    }

    fn stop(&self, label: &str) -> Result<(), ServiceError> {
        self.call("stop", label)?;
        self.running.borrow_mut().remove(label);
        Ok(())
    }

    fn uninstall(&self, label: &str) -> Result<(), ServiceError> {
        self.call("uninstall", label)?;
        self.running.borrow_mut().remove(label);
        self.installed.borrow_mut().remove(label);
        Ok(())
    }

    fn status(&self, label: &str) -> Result<ServiceStatus, ServiceError> {
        self.calls.borrow_mut().push(format!("status {label}"));
        let installed = self.installed.borrow().contains_key(label);
        let running = self.running.borrow().contains(label);
        let exit = self.exits_at_once.borrow().get(label).copied();
        let gave_up = self.gave_up.borrow().get(label).cloned();
        Ok(ServiceStatus {
            state: match (installed, running, &gave_up) {
                (false, _, _) => RunState::NotInstalled,
                (true, _, Some(_)) => RunState::Failed,
                (true, true, None) => RunState::Running,
                (true, false, None) => RunState::Stopped,
            },
            pid: running.then_some(4242),
            last_exit_code: exit,
            uptime_seconds: running.then_some(5),
            restarts: gave_up.as_ref().map(|_| 4),
            detail: gave_up.unwrap_or_default(),
        })
    }
}

/// Scripted HTTP: a responder decides each answer; every request is recorded.
pub struct FakeHttp {
    pub requests: RefCell<Vec<HttpRequest>>,
    pub timeline: Timeline,
    #[allow(clippy::type_complexity)]
    pub responder: Box<dyn Fn(&HttpRequest) -> Result<HttpResponse, HttpError>>,
}

impl FakeHttp {
    pub fn new(responder: impl Fn(&HttpRequest) -> Result<HttpResponse, HttpError> + 'static) -> Self {
        Self { requests: RefCell::default(), timeline: Timeline::default(), responder: Box::new(responder) }
    }

    /// `METHOD URL` of every request so far.
    pub fn lines(&self) -> Vec<String> {
        self.requests.borrow().iter().map(|r| format!("{} {}", r.method.as_str(), r.url)).collect()
    }
}

/// A JSON answer with `status`.
pub fn json_response(status: u16, body: serde_json::Value) -> Result<HttpResponse, HttpError> {
    Ok(HttpResponse { status, retry_after: None, body: body.to_string().into_bytes() })
}

impl Http for FakeHttp {
    fn send_all(&self, requests: &[HttpRequest]) -> Vec<Result<HttpResponse, HttpError>> {
        requests
            .iter()
            .map(|r| {
                self.requests.borrow_mut().push(r.clone());
                self.timeline.push(format!("{} {}", r.method.as_str(), r.url));
                (self.responder)(r)
            })
            .collect()
    }
}

/// A clock that only moves when slept on.
pub struct FakeClock {
    pub now_ms: Cell<u64>,
}

impl Default for FakeClock {
    fn default() -> Self {
        // 2026-11-25T10:20:30Z
        Self { now_ms: Cell::new(1_795_602_030_000) }
    }
}

impl Clock for FakeClock {
    fn now_unix_ms(&self) -> u64 {
        self.now_ms.get()
    }
    fn monotonic_us(&self) -> u64 {
        self.now_ms.get() * 1000
    }
    fn sleep_ms(&self, ms: u64) {
        self.now_ms.set(self.now_ms.get() + ms);
    }
}

/// Ports in use, as a set; records every probe.
#[derive(Default)]
pub struct FakePorts {
    pub used: RefCell<BTreeSet<u16>>,
    pub probes: RefCell<Vec<u16>>,
}

impl Ports for FakePorts {
    fn taken(&self, ports: &[u16]) -> Vec<u16> {
        self.probes.borrow_mut().extend(ports);
        ports.iter().copied().filter(|p| self.used.borrow().contains(p)).collect()
    }
}

/// Progress lines, recorded.
#[derive(Default)]
pub struct RecordingProgress {
    pub lines: RefCell<Vec<String>>,
}

impl Progress for RecordingProgress {
    fn emit(&self, level: Level, message: &str) {
        self.lines.borrow_mut().push(format!("{level:?}: {message}"));
    }
}

/// Deterministic "random" bytes.
#[derive(Default)]
pub struct CountingRandom {
    pub next: Cell<u8>,
}

impl Random for CountingRandom {
    fn fill(&self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next.get();
            self.next.set(self.next.get().wrapping_add(1));
        }
    }
}

/// The family lock and claims: the outermost `lock` and `unlock` (the host's real
/// transitions) and each `claim HANDLE` go to the timeline.
#[derive(Default)]
pub struct FakeFamily {
    pub depth: Cell<u32>,
    /// When set, `lock` fails with this reason.
    pub refuse: RefCell<Option<String>>,
    /// Handles a live run elsewhere holds.
    pub held_elsewhere: RefCell<BTreeSet<String>>,
    pub timeline: Timeline,
}

impl Family for FakeFamily {
    fn lock(&self) -> Result<(), String> {
        if let Some(why) = self.refuse.borrow().clone() {
            return Err(why);
        }
        if self.depth.get() == 0 {
            self.timeline.push("lock".into());
        }
        self.depth.set(self.depth.get() + 1);
        Ok(())
    }

    fn unlock(&self) {
        match self.depth.get() {
            0 => {}
            1 => {
                self.depth.set(0);
                self.timeline.push("unlock".into());
            }
            n => self.depth.set(n - 1),
        }
    }

    fn claim(&self, handle: &str) -> Result<(), String> {
        if self.held_elsewhere.borrow().contains(handle) {
            return Err(format!("another agent-provisioner run (pid 4711 provision) is working on {handle}"));
        }
        self.timeline.push(format!("claim {handle}"));
        Ok(())
    }
}

/// The host's side of an adoption: records each call; `begin` answers with `found` (or
/// the error set), the others succeed.
#[derive(Default)]
pub struct FakeAdoption {
    pub timeline: Timeline,
    pub found: RefCell<Option<crate::wit::LegacySibling>>,
    pub fail_begin: RefCell<Option<String>>,
}

impl Adoption for FakeAdoption {
    fn begin(&self, handle: &str) -> Result<crate::wit::LegacySibling, String> {
        self.timeline.push(format!("adoption begin {handle}"));
        if let Some(why) = self.fail_begin.borrow().clone() {
            return Err(why);
        }
        self.found.borrow().clone().ok_or_else(|| "no sibling set up".into())
    }
    fn migrate_credentials(&self, handle: &str) -> Result<Vec<String>, String> {
        self.timeline.push(format!("adoption migrate-credentials {handle}"));
        Ok(vec!["the anthropic key moved from agents/main/agent/auth.json to .env".into()])
    }
    fn commit(&self, handle: &str) -> Result<String, String> {
        self.timeline.push(format!("adoption commit {handle}"));
        Ok(format!("{HOME}/.openclaw-archives/{handle}-adopted-20261127-000000"))
    }
    fn abort(&self, handle: &str) -> Result<Vec<String>, Vec<String>> {
        self.timeline.push(format!("adoption abort {handle}"));
        Ok(vec![format!("{handle} put back")])
    }
}

/// One of each fake, ready to hand out as [`Caps`].
pub struct World {
    /// The effects of all the fakes, in order.
    pub timeline: Timeline,
    pub fs: MemFs,
    pub services: FakeServices,
    pub http: FakeHttp,
    pub clock: FakeClock,
    pub ports: FakePorts,
    pub progress: RecordingProgress,
    pub random: CountingRandom,
    pub family: FakeFamily,
    pub adoption: FakeAdoption,
}

impl World {
    pub fn new(mut http: FakeHttp) -> Self {
        let timeline = Timeline::default();
        http.timeline = timeline.clone();
        Self {
            fs: MemFs { timeline: timeline.clone(), ..MemFs::default() },
            services: FakeServices { timeline: timeline.clone(), ..FakeServices::default() },
            family: FakeFamily { timeline: timeline.clone(), ..FakeFamily::default() },
            adoption: FakeAdoption { timeline: timeline.clone(), ..FakeAdoption::default() },
            timeline,
            http,
            clock: FakeClock::default(),
            ports: FakePorts::default(),
            progress: RecordingProgress::default(),
            random: CountingRandom::default(),
        }
    }

    pub fn caps(&self) -> Caps<'_> {
        Caps {
            files: &self.fs,
            services: &self.services,
            http: &self.http,
            clock: &self.clock,
            ports: &self.ports,
            progress: &self.progress,
            random: &self.random,
            family: &self.family,
            adoption: &self.adoption,
        }
    }
}

/// The lead's home in the fixtures.
pub const LEAD_HOME: &str = "/h/.openclaw";
/// The Sesame API the fixtures' context names.
pub const API: &str = "https://api.example/api/v1";
/// The ids of [`task_json`].
pub const PRINCIPAL: &str = "0e8a1d2c-1111-4a2b-9c3d-123456789abc";
pub const FAMILY: &str = "22222222-3333-4444-5555-666666666666";
pub const HUMAN: &str = "55555555-6666-7777-8888-999999999999";
pub const CHANNEL: &str = "44444444-5555-6666-7777-888888888888";

/// A context for [`HOME`] and [`LEAD_HOME`], with the lead's Sesame plugin and
/// Anthropic key, and short Sesame retries.
pub fn context() -> crate::wit::Context {
    crate::wit::Context {
        home: HOME.into(),
        lead_home: LEAD_HOME.into(),
        lead_handles: vec!["atlas".into()],
        lead_plugins: vec!["extensions/sesame".into()],
        lead_provider_keys: vec!["anthropic".into()],
        lead_workspace_id: None,
        api_url: "https://api.example".into(),
        host_name: "testhost".into(),
        host_os: "linux".into(),
        host_arch: "x86_64".into(),
        openclaw_bin: "/usr/bin/openclaw".into(),
        service_backend: ServiceBackend::Direct,
        credential_layout: CredentialLayout::EnvFile,
        timing: crate::wit::Timing {
            health_timeout_ms: 60_000,
            health_interval_ms: 500,
            probe_timeout_ms: 2000,
            api_timeout_ms: 1000,
            api_attempts: 2,
            api_backoff_ms: 10,
        },
    }
}

/// A whole Sesame task (id `task-42`) provisioning `nova` on port 18930, inheriting the
/// lead's key, with an onboarding channel and the human who asked.
pub fn task_json() -> String {
    let notes = serde_json::json!({
        "principalId": PRINCIPAL,
        "handle": "nova",
        "displayName": "Nova",
        "sesameApiKey": "sk_sesame_nova_0001",
        "llmProvider": "anthropic",
        "gatewayPort": 18930,
        "familyId": FAMILY,
        "familyName": "Example Family",
        "onboardingChannelId": CHANNEL
    });
    serde_json::json!({
        "id": "task-42",
        "context": { "notes": notes.to_string() },
        "provisionedBy": { "id": HUMAN, "displayName": "Alex" }
    })
    .to_string()
}

/// A provision request for [`task_json`].
pub fn request(resume: bool) -> crate::wit::ProvisionRequest {
    crate::wit::ProvisionRequest { task_json: task_json(), auto_port: false, port_range_start: 18790, resume }
}

/// Sesame and the siblings' gateways. Creating a vault answers id `vault-1`, every other
/// Sesame call 200, except the calls in `failing` (`METHOD /path` under the API root),
/// which answer 400 (not retried). Gateways answer 200 unless their port is in `down`
/// (connection refused).
pub fn sesame_and_gateways(failing: &[&str], down: &[u16]) -> FakeHttp {
    let failing: Vec<String> = failing.iter().map(|f| f.to_string()).collect();
    let down = down.to_vec();
    FakeHttp::new(move |r| {
        if let Some(rest) = r.url.strip_prefix("http://127.0.0.1:") {
            let port: u16 = rest.split('/').next().unwrap().parse().unwrap();
            return if down.contains(&port) { Err(HttpError::ConnectionRefused) } else { json_response(200, serde_json::json!({})) };
        }
        let path = r.url.strip_prefix(API).expect("a Sesame call");
        match format!("{} {path}", r.method.as_str()) {
            call if failing.contains(&call) => json_response(400, serde_json::json!({"error": "refused by the test"})),
            call if call == "POST /vault/vaults" => json_response(201, serde_json::json!({"data": {"id": "vault-1"}})),
            _ => json_response(200, serde_json::json!({"data": {}})),
        }
    })
}

impl World {
    /// A lead ready to provision with `http`: its home with the Sesame plugin the host
    /// copies, its Anthropic key, and a gateway log that shows Sesame connected.
    pub fn lead(http: FakeHttp) -> World {
        let world = World::new(http);
        world.fs.add_file(&format!("{LEAD_HOME}/openclaw.json"), "{}");
        world.fs.add_file(&format!("{LEAD_HOME}/extensions/sesame/dist/index.js"), "// plugin");
        world.fs.lead_plugins.borrow_mut().push((format!("{LEAD_HOME}/extensions/sesame"), "extensions/sesame".into()));
        world.fs.lead_keys.borrow_mut().insert("anthropic".into(), "sk-ant-lead".into());
        let layout = crate::layout::SiblingLayout::new(HOME, "nova");
        world.fs.add_file(&layout.stdout_log, "[sesame] Authenticated successfully\n");
        world
    }

    /// The Sesame requests so far: (method, path under the API root, JSON body).
    pub fn sesame_calls(&self) -> Vec<(String, String, serde_json::Value)> {
        self.http
            .requests
            .borrow()
            .iter()
            .filter_map(|r| {
                let path = r.url.strip_prefix(API)?;
                let body = r.json_body.as_ref().map_or(serde_json::Value::Null, |b| serde_json::from_slice(b).unwrap());
                Some((r.method.as_str().to_string(), path.to_string(), body))
            })
            .collect()
    }
}
