/// The audit log: every capability decision, one JSON object per line.
pub mod audit;
/// The program a service runs, recorded when the host writes its definition.
pub mod program;
/// The host's own record of the sibling homes and service definitions it made.
pub mod state;
