//! The provisioning logic of agent-provisioner.
//!
//! Everything here is plain Rust over the small capability traits of [`caps`], so it
//! runs natively in unit tests against the fakes of `testing`. Built for
//! `wasm32-wasip2`, [`component`] adapts the traits to the WIT imports and exports the
//! commands of the `openclaw:provisioner/provisioner` world (`wit/provisioner.wit`).

/// Types and imports generated from `wit/provisioner.wit`.
pub mod bindings {
    wit_bindgen::generate!({ path: "../wit", world: "provisioner", generate_all });
}

pub mod adopt;
pub mod archive;
pub mod caps;
pub mod commands;
pub mod config;
pub mod family;
pub mod family_lock;
pub mod file_ops;
pub mod health;
pub mod journal;
pub mod layout;
pub mod lead;
pub mod lifecycle;
pub mod member_record;
pub mod plan;
pub mod port_plan;
pub mod provision;
pub mod registry;
pub mod restore;
pub mod rollback;
pub mod secret;
pub mod sesame;
pub mod task;
pub mod timestamp;
pub mod wit;
pub mod workspace;

#[cfg(target_arch = "wasm32")]
mod component;
#[cfg(test)]
pub mod testing;
