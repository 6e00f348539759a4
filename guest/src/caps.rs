//! The capabilities the provisioning logic works through.
//!
//! Each trait is small and mirrors one host interface of the WIT world (or, for HTTP
//! and time, what the guest gets from `wasi:http` and `wasi:clocks`). In the component
//! they are implemented by `crate::component` over the imports; in unit tests by the
//! in-memory fakes of `crate::testing`.

pub use crate::wit::{
    LegacySibling, CredentialLayout, EntryKind, EntryMeta, FsError, Installed, Level, RestoredTree, RunState, ServiceBackend, ServiceError,
    ServiceSpec, ServiceStatus, TreeStats,
};

/// Files, confined by the host to its grants. Paths are absolute host paths.
pub trait Files {
    fn read(&self, path: &str) -> Result<Vec<u8>, FsError>;
    fn write_atomic(&self, path: &str, contents: &[u8], mode: u32) -> Result<(), FsError>;
    fn create_dir_all(&self, path: &str, mode: u32) -> Result<(), FsError>;
    fn metadata(&self, path: &str) -> Result<Option<EntryMeta>, FsError>;
    fn walk_tree(&self, path: &str) -> Result<Vec<String>, FsError>;
    fn remove_tree(&self, path: &str) -> Result<(), FsError>;
    fn archive_tree(&self, source: &str, archive: &str) -> Result<TreeStats, FsError>;
    /// Has the host walk `source` as `archive_tree` would, writing nothing: what its archive
    /// would hold, or why it cannot be archived.
    fn check_archivable(&self, source: &str) -> Result<TreeStats, FsError>;
    fn list_archive(&self, archive: &str) -> Result<Vec<String>, FsError>;
    /// Has the host check `archive` and unpack it as the home of `handle`, leaving out
    /// what may run code; nothing is written unless all of it passed.
    fn restore_archive(&self, archive: &str, handle: &str) -> Result<RestoredTree, FsError>;
    /// Has the host copy its allowlisted lead plugins and skills into `handle`'s home;
    /// returns the relative paths copied.
    fn copy_lead_plugins(&self, handle: &str) -> Result<Vec<String>, FsError>;
    /// Has the host write `handle`'s credential file for `provider` in `layout`: `key`,
    /// or the lead's own key when `None` (which the component never sees); returns the
    /// path written.
    fn write_credentials(&self, handle: &str, provider: &str, layout: CredentialLayout, key: Option<&str>) -> Result<String, FsError>;
}

/// Service control for `com.openclaw.<handle>` labels.
pub trait Services {
    fn install(&self, spec: &ServiceSpec) -> Result<Installed, ServiceError>;
    fn start(&self, label: &str) -> Result<(), ServiceError>;
    fn stop(&self, label: &str) -> Result<(), ServiceError>;
    fn uninstall(&self, label: &str) -> Result<(), ServiceError>;
    fn status(&self, label: &str) -> Result<ServiceStatus, ServiceError>;
}

/// HTTP methods the provisioner uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Patch,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
        }
    }
}

/// One outgoing request. JSON bodies are sent with `Content-Type: application/json`.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpRequest {
    pub method: Method,
    pub url: String,
    pub json_body: Option<Vec<u8>>,
    /// Bound on connecting and on waiting for the first byte of the answer.
    pub timeout_ms: u32,
}

/// An answer, whatever its status.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    /// `Retry-After`, when the server sent one.
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
}

/// A request that got no answer.
#[derive(Clone, Debug, PartialEq)]
pub enum HttpError {
    /// The host's allow-list refused it.
    Denied,
    /// No connection or no first byte within the timeout.
    Timeout,
    /// Nothing listens there.
    ConnectionRefused,
    /// Anything else, in words.
    Other(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Denied => f.write_str("denied by the host's HTTP grants"),
            HttpError::Timeout => f.write_str("timed out"),
            HttpError::ConnectionRefused => f.write_str("connection refused"),
            HttpError::Other(why) => f.write_str(why),
        }
    }
}

/// Outgoing HTTP. `send_all` sends every request at once and waits for all of them,
/// so N probes take about as long as the slowest one.
pub trait Http {
    fn send_all(&self, requests: &[HttpRequest]) -> Vec<Result<HttpResponse, HttpError>>;

    fn send(&self, request: &HttpRequest) -> Result<HttpResponse, HttpError> {
        self.send_all(std::slice::from_ref(request)).remove(0)
    }
}

/// Time.
pub trait Clock {
    /// Milliseconds since the Unix epoch (UTC).
    fn now_unix_ms(&self) -> u64;
    /// Microseconds on a monotonic clock, for measuring durations.
    fn monotonic_us(&self) -> u64;
    /// Milliseconds on the monotonic clock.
    fn monotonic_ms(&self) -> u64 {
        self.monotonic_us() / 1000
    }
    fn sleep_ms(&self, ms: u64);
}

/// Local TCP ports.
pub trait Ports {
    /// Which of `ports` are taken (in the order given).
    fn taken(&self, ports: &[u16]) -> Vec<u16>;

    /// Whether `port` is taken.
    fn in_use(&self, port: u16) -> bool {
        !self.taken(&[port]).is_empty()
    }
}

/// Operator-facing progress lines.
pub trait Progress {
    fn emit(&self, level: Level, message: &str);
}

/// The lead's family lock and handle claims (the WIT `family` interface): concurrent runs
/// for one lead serialise their changes to the registry, the journals that claim ports
/// and service installs. Take the lock through [`crate::family_lock::FamilyLock`], which
/// releases it on every path.
pub trait Family {
    /// Takes the lock (re-entrant; bounded by the host); `Err` says why it could not.
    fn lock(&self) -> Result<(), String>;
    /// Undoes one `lock`.
    fn unlock(&self);
    /// Marks `handle` as this run's sibling until the run ends; `Err` names the live run
    /// that holds it.
    fn claim(&self, handle: &str) -> Result<(), String>;
}

/// Adoption of the sibling the operator named (the WIT `adoption` interface): the host
/// snapshots, takes over and, unless committed, puts back.
pub trait Adoption {
    /// Snapshots and takes over `handle` (its old service stopped and removed); returns
    /// the sibling as the host found it.
    fn begin(&self, handle: &str) -> Result<LegacySibling, String>;
    /// Moves its legacy provider keys into `.env`; returns what moved, in words.
    fn migrate_credentials(&self, handle: &str) -> Result<Vec<String>, String>;
    /// Keeps the adoption; returns where the old definition and config were archived.
    fn commit(&self, handle: &str) -> Result<String, String>;
    /// Puts everything back as it was; the steps, in words (`Err` when one failed).
    fn abort(&self, handle: &str) -> Result<Vec<String>, Vec<String>>;
}

/// Random bytes (gateway tokens).
pub trait Random {
    fn fill(&self, buf: &mut [u8]);
}

/// Everything a command may use, bundled.
#[derive(Clone, Copy)]
pub struct Caps<'a> {
    pub files: &'a dyn Files,
    pub services: &'a dyn Services,
    pub http: &'a dyn Http,
    pub clock: &'a dyn Clock,
    pub ports: &'a dyn Ports,
    pub progress: &'a dyn Progress,
    pub random: &'a dyn Random,
    pub family: &'a dyn Family,
    pub adoption: &'a dyn Adoption,
}

impl ServiceBackend {
    /// `launchd`, `systemd` or `direct`.
    pub fn name(self) -> &'static str {
        match self {
            ServiceBackend::Launchd => "launchd",
            ServiceBackend::Systemd => "systemd",
            ServiceBackend::Direct => "direct",
        }
    }
}

impl FsError {
    /// The error in words, for messages (the generated `Display` is `Debug`-like).
    pub fn message(&self) -> String {
        match self {
            FsError::Denied(why) => format!("denied: {why}"),
            FsError::NotFound(why) => format!("not found: {why}"),
            FsError::AlreadyExists(why) => format!("already exists: {why}"),
            FsError::Io(why) => why.clone(),
        }
    }
}

impl ServiceError {
    /// The error in words, for messages.
    pub fn message(&self) -> String {
        match self {
            ServiceError::Denied(why) => format!("denied: {why}"),
            ServiceError::NotInstalled(why) => format!("not installed: {why}"),
            ServiceError::Failed(why) => why.clone(),
        }
    }
}
