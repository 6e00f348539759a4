//! The `progress` capability: the guest's progress lines, printed on stderr.

use crate::runtime::bindings::Level;
use crate::runtime::bindings::openclaw::provisioner::progress;

/// Prints the guest's progress lines on stderr (scrubbed); `quiet` keeps only warnings.
pub struct ProgressSink {
    pub quiet: bool,
}

impl progress::Host for ProgressSink {
    fn emit(&mut self, level: Level, message: String) {
        if self.quiet && level != Level::Warning {
            return;
        }
        let prefix = match level {
            Level::Step => "==> ",
            Level::Info => "    ",
            Level::Warning => "warning: ",
        };
        crate::sys::secret::eprint_line(&format!("{prefix}{message}"));
    }
}
