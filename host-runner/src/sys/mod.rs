/// Atomic file writes inside a directory capability.
pub mod atomic;
/// Directories only this user may enter, opened without following a link.
pub mod private_dir;
/// Opening a file a sibling or a component may have planted: no links, FIFOs or devices.
pub mod safe_open;
/// Secrets the host holds: never printed, and scrubbed from everything the host writes.
pub mod secret;
