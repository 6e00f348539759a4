//! Builds the wasm components the host embeds or tests against.
//!
//! `guest` (the provisioner) and `hostile-guest` (a test fixture that tries to escape
//! the sandbox) are built with a nested `cargo build --target wasm32-wasip2` into their
//! own target directory (sharing the outer one deadlocks on cargo's lock). Their paths
//! reach the crate as `GUEST_WASM` and `HOSTILE_GUEST_WASM`.
//!
//! Escape hatch: set `AGENT_PROVISIONER_GUEST_WASM` (and optionally
//! `AGENT_PROVISIONER_HOSTILE_WASM`) to prebuilt components to skip the nested build.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "guest";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    for watched in ["wit", "naming", "guest", "templates", "tests/fixtures/hostile-guest", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=AGENT_PROVISIONER_GUEST_WASM");
    println!("cargo:rerun-if-env-changed=AGENT_PROVISIONER_HOSTILE_WASM");

    let prebuilt_guest = env::var_os("AGENT_PROVISIONER_GUEST_WASM").map(PathBuf::from);
    let prebuilt_hostile = env::var_os("AGENT_PROVISIONER_HOSTILE_WASM").map(PathBuf::from);
    let (guest, hostile) = match (prebuilt_guest, prebuilt_hostile) {
        (Some(guest), Some(hostile)) => (guest, hostile),
        (prebuilt_guest, _) => {
            let out = build_components(&root);
            (prebuilt_guest.unwrap_or(out.join("guest.wasm")), out.join("hostile_guest.wasm"))
        }
    };
    for (name, path) in [("GUEST_WASM", &guest), ("HOSTILE_GUEST_WASM", &hostile)] {
        assert!(path.is_file(), "{name}: no component at {}", path.display());
        println!("cargo:rustc-env={name}={}", path.display());
    }
}

/// Runs the nested cargo build and returns the directory holding the `.wasm` files.
fn build_components(root: &Path) -> PathBuf {
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm-components");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--package", "guest", "--package", "hostile-guest"])
        .args(["--target", TARGET, "--profile", PROFILE, "--target-dir"])
        .arg(&target_dir);
    // The outer cargo has already resolved the whole workspace into Cargo.lock.
    cmd.arg("--locked");
    // The outer build's flags and target settings are not meant for the wasm build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("run cargo for the wasm components");
    if !status.success() {
        panic!(
            "building the wasm components failed ({status}); is the target installed? \
             run `rustup target add {TARGET}`"
        );
    }
    target_dir.join(TARGET).join(PROFILE)
}
