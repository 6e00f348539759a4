//! The types of the WIT world (`wit/provisioner.wit`), in one place: everything outside
//! `component.rs` names WIT records through this module, never through `bindings`.

pub use crate::bindings::exports::openclaw::provisioner::commands::*;
pub use crate::bindings::openclaw::provisioner::fs::{EntryKind, EntryMeta, RestoredTree, TreeStats};
pub use crate::bindings::openclaw::provisioner::progress::Level;
pub use crate::bindings::openclaw::provisioner::service::{Installed, RunState, ServiceError, ServiceSpec, ServiceStatus};
pub use crate::bindings::openclaw::provisioner::types::{CredentialLayout, FsError, ServiceBackend};
pub use crate::bindings::openclaw::provisioner::adoption::{LegacyCredential, LegacyDefinition, LegacySibling};
