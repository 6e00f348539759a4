//! agent-provisioner's host: runs the provisioning component in a wasmtime sandbox that
//! grants only scoped files, service control for sibling gateways, and HTTP to the Sesame
//! API and sibling gateway ports. See `wit/provisioner.wit` for the contract.

/// The capabilities the component imports: one folder per WIT import, and `wasi:http`.
pub mod caps;
/// The command line: arguments, dispatch, sandbox setup, batches, skill install.
pub mod cli;
#[cfg(test)]
mod function_length;
/// Gzip bombs for the unit tests, shared with the end-to-end tests.
#[cfg(test)]
#[path = "../../tests/support/gzip_bomb.rs"]
mod gzip_bomb;
/// The lead's keys: its environment, its config, the provider credential passed on.
pub mod lead;
/// What a command prints (text or the `--json` contract), and its exit code.
pub mod output;
/// The host's own record: what it made, the programs services run, the audit log.
pub mod record;
/// Running the component: the engine, one limited store per command, the deadline.
pub mod runtime;
/// System helpers: safe opening, atomic writes, secret scrubbing.
pub mod sys;

/// When the process started (set first thing in `main`), for `--timings`.
pub static PROCESS_START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
