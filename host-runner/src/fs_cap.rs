//! The `fs` capability: file operations confined to the grants.
//! (Stub: built by the fs-capability work.)

use crate::audit::Audit;
use crate::bindings::{DirEntry, EntryMeta, FsError, TreeStats};
use crate::grants::Grants;
use crate::secret::Secret;
use std::sync::Arc;

/// File operations for the guest, checked against [`Grants`] on every call.
pub struct FsCap {
    grants: Grants,
    audit: Arc<Audit>,
    lead_secret: Option<Secret>,
}

fn todo_err(path: &str) -> FsError {
    FsError::Denied(format!("{path}: the fs capability is not built yet"))
}

impl FsCap {
    pub fn new(grants: Grants, audit: Arc<Audit>, lead_secret: Option<Secret>) -> Self {
        Self { grants, audit, lead_secret }
    }
    pub fn grants(&self) -> &Grants {
        &self.grants
    }
    pub fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        let _ = (&self.audit, &self.lead_secret);
        Err(todo_err(path))
    }
    pub fn write_atomic(&self, path: &str, _contents: &[u8], _mode: u32) -> Result<(), FsError> {
        Err(todo_err(path))
    }
    pub fn create_dir_all(&self, path: &str, _mode: u32) -> Result<(), FsError> {
        Err(todo_err(path))
    }
    pub fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>, FsError> {
        Err(todo_err(path))
    }
    pub fn metadata(&self, path: &str) -> Result<Option<EntryMeta>, FsError> {
        Err(todo_err(path))
    }
    pub fn walk_tree(&self, path: &str) -> Result<Vec<String>, FsError> {
        Err(todo_err(path))
    }
    pub fn copy_tree(&self, source: &str, _destination: &str) -> Result<TreeStats, FsError> {
        Err(todo_err(source))
    }
    pub fn remove_tree(&self, path: &str) -> Result<(), FsError> {
        Err(todo_err(path))
    }
    pub fn archive_tree(&self, source: &str, _archive: &str) -> Result<TreeStats, FsError> {
        Err(todo_err(source))
    }
    pub fn list_archive(&self, archive: &str) -> Result<Vec<String>, FsError> {
        Err(todo_err(archive))
    }
}
