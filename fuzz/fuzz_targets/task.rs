//! Task parsing and validation never panics, and whatever it accepts is safe to use:
//! a slug handle, the home `~/.openclaw-<handle>`, a port in range.
#![no_main]

use guest::caps::{CredentialLayout, EntryMeta, Files, FsError, TreeStats};
use guest::task::{TaskEnv, parse, validate_handle};
use libfuzzer_sys::fuzz_target;

/// A file system where nothing exists.
struct Empty;

impl Files for Empty {
    fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        Err(FsError::NotFound(path.into()))
    }
    fn write_atomic(&self, path: &str, _: &[u8], _: u32) -> Result<(), FsError> {
        Err(FsError::Denied(path.into()))
    }
    fn create_dir_all(&self, path: &str, _: u32) -> Result<(), FsError> {
        Err(FsError::Denied(path.into()))
    }
    fn metadata(&self, _: &str) -> Result<Option<EntryMeta>, FsError> {
        Ok(None)
    }
    fn walk_tree(&self, path: &str) -> Result<Vec<String>, FsError> {
        Err(FsError::NotFound(path.into()))
    }
    fn remove_tree(&self, path: &str) -> Result<(), FsError> {
        Err(FsError::Denied(path.into()))
    }
    fn archive_tree(&self, source: &str, _: &str) -> Result<TreeStats, FsError> {
        Err(FsError::Denied(source.into()))
    }
    fn list_archive(&self, archive: &str) -> Result<Vec<String>, FsError> {
        Err(FsError::NotFound(archive.into()))
    }
    fn copy_lead_plugins(&self, handle: &str) -> Result<Vec<String>, FsError> {
        Err(FsError::Denied(handle.into()))
    }
    fn write_credentials(&self, handle: &str, _: &str, _: CredentialLayout, _: Option<&str>) -> Result<String, FsError> {
        Err(FsError::Denied(handle.into()))
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let leads = ["atlas".to_string()];
    let env = TaskEnv { home: "/home/u", lead_home: "/home/u/.openclaw", lead_handles: &leads, resuming: false };
    match parse(text, &env, &Empty) {
        Ok(task) => {
            assert!(validate_handle(&task.handle, &leads).is_ok(), "accepted a bad handle {:?}", task.handle);
            assert_eq!(task.oc_home, format!("/home/u/.openclaw-{}", task.handle));
            assert!(task.gateway_port >= 1024);
            assert!(!task.display_name.chars().any(char::is_control));
            assert!(task.sesame_api_key.expose().chars().all(|c| c.is_ascii_graphic()));
        }
        Err(e) => assert!(!e.field.is_empty() && !e.message.is_empty()),
    }
});
