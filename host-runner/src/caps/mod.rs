/// What a command may change: every capability reads it (a read-only command changes nothing).
pub mod access;
/// The `adoption` capability: bringing a bash-era sibling under this host's management.
pub mod adoption;
/// The `family` capability: the lead's family lock and handle claims.
pub mod family;
/// The `fs` capability: the WIT file operations, confined to the grants.
pub mod fs;
/// The HTTP gate (`wasi:http`): the only way out of the sandbox to the network.
pub mod http;
/// The `ports` capability: is a local TCP port taken?
pub mod ports;
/// The `progress` capability: the guest's progress lines, printed on stderr.
pub mod progress;
/// The `service` capability: typed service control for `com.openclaw.<handle>` labels.
pub mod service;
