//! agent-provisioner's host: runs the provisioning component in a wasmtime sandbox that
//! grants only scoped files, service control for sibling gateways, and HTTP to the Sesame
//! API and sibling gateway ports. See `wit/provisioner.wit` for the contract.

pub mod access;
pub mod adopt;
pub mod app;
pub mod archive;
pub mod atomic;
pub mod audit;
pub mod batch;
pub mod bindings;
pub mod cli;
pub mod component_cache;
pub mod contract;
pub mod credentials;
pub mod deadline;
pub mod engine;
pub mod family;
pub mod fs_cap;
#[cfg(test)]
mod function_length;
/// Gzip bombs for the unit tests, shared with the end-to-end tests.
#[cfg(test)]
#[path = "../../tests/support/gzip_bomb.rs"]
mod gzip_bomb;
pub mod grants;
pub mod host_state;
pub mod http_gate;
pub mod key_files;
pub mod lead_config;
pub mod lead_env;
pub mod limits;
pub mod lock;
pub mod output;
pub mod paths;
pub mod private_dir;
pub mod ports;
pub mod program;
pub mod progress;
pub mod restore;
pub mod run_scope;
pub mod runtime;
pub mod safe_open;
pub mod secret;
pub mod service;
pub mod sesame_ids;
pub mod sesame_reach;
pub mod setup;
pub mod sibling_files;
pub mod skill;
pub mod task_input;

/// When the process started (set first thing in `main`), for `--timings`.
pub static PROCESS_START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
