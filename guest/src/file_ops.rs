//! File-system effects of a provision, as values (a plan lists them) and carried out
//! through the [`Files`](crate::caps::Files) capability.

use crate::caps::{Caps, CredentialLayout, FsError};
use crate::secret::Secret;

/// One file-system effect.
#[derive(Clone, Debug, PartialEq)]
pub enum FileOp {
    Dir { path: String, mode: u32 },
    Write { path: String, mode: u32, contents: Vec<u8>, secret: bool },
    /// The host writes the provider credential (`path`, for the plan): the task's `key`,
    /// or the lead's own when `None`, which the component never sees.
    Credentials { handle: String, provider: &'static str, layout: CredentialLayout, key: Option<Secret>, path: String },
    /// The host copies the lead's allowlisted plugins and skills (`relative` paths, the
    /// context's `lead-plugins`) into the sibling's home; the component cannot write code
    /// there itself.
    LeadPlugins { handle: String, relative: Vec<String> },
}

impl FileOp {
    /// Carries the effect out.
    pub fn apply(&self, caps: &Caps) -> Result<(), FsError> {
        match self {
            FileOp::Dir { path, mode } => caps.files.create_dir_all(path, *mode),
            FileOp::Write { path, mode, contents, .. } => caps.files.write_atomic(path, contents, *mode),
            FileOp::Credentials { handle, provider, layout, key, .. } => {
                caps.files.write_credentials(handle, provider, *layout, key.as_ref().map(Secret::expose)).map(|_| ())
            }
            FileOp::LeadPlugins { handle, .. } => caps.files.copy_lead_plugins(handle).map(|_| ()),
        }
    }

    /// What the effect touches, for messages: a path, or the plugin copy into `home`.
    pub fn target(&self, home: &str) -> String {
        match self {
            FileOp::Dir { path, .. } | FileOp::Write { path, .. } | FileOp::Credentials { path, .. } => path.clone(),
            FileOp::LeadPlugins { relative, .. } => format!("copying the lead's {} into {home}", relative.join(", ")),
        }
    }
}
