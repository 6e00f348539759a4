//! Host-side types generated from `wit/provisioner.wit`.
//!
//! Imports are synchronous (file and service work is local and bounded); exports are
//! called asynchronously because `wasi:http` runs on tokio.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "provisioner",
    exports: { default: async },
    additional_derives: [serde::Serialize, PartialEq],
});

pub use openclaw::provisioner::fs::{EntryKind, EntryMeta, RestoredTree, TreeStats};
pub use openclaw::provisioner::progress::Level;
pub use openclaw::provisioner::service::{
    Installed, RunState, ServiceError, ServiceSpec, ServiceStatus,
};
pub use openclaw::provisioner::types::{CredentialLayout, FsError, ServiceBackend};
pub use exports::openclaw::provisioner::commands;

