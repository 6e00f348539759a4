/// A sibling's provider credential, which only the host writes.
pub mod credentials;
/// What the host reads from the lead's `openclaw.json` itself.
pub mod lead_config;
/// The lead's environment as OpenClaw builds it (process environment, then `.env`).
pub mod lead_env;
