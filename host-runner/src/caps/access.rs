//! What a command may change: decided once, from the command line
//! ([`crate::cli::args::Command::access`]), and read by every capability.
//!
//! A read-only command gets read-only files in every grant (each writing `fs` call is
//! denied), only `status` of the service manager, no Sesame call (the HTTP gate lets
//! through only `GET`s to sibling gateways), neither the family lock nor a claim file
//! (a claim is only checked, creating nothing). Every refusal names the command.

/// The commands that change nothing, for the banner and messages.
pub const READ_ONLY_COMMANDS: &str = "list, health (without --report), ports, grants, adopt --scan, adopt HANDLE --plan, provision --plan";

/// What one command may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The command (named) only looks: it changes nothing on disk, in the service
    /// manager or on Sesame.
    ReadOnly(&'static str),
    /// The command changes the family, within the grants.
    ReadWrite,
}

impl Access {
    pub fn is_read_only(self) -> bool {
        matches!(self, Access::ReadOnly(_))
    }

    /// `Ok` when the command may do `what` (a change); otherwise why not, naming the
    /// command.
    pub fn allows(self, what: &str) -> Result<(), String> {
        match self {
            Access::ReadWrite => Ok(()),
            Access::ReadOnly(command) => Err(format!("`{command}` changes nothing: {what} is not granted to it")),
        }
    }

    /// The banner's line on what this command may change.
    pub fn describe(self) -> String {
        match self {
            Access::ReadOnly(command) => format!(
                "access: read-only (`{command}` changes nothing): files read-only in every grant, service status only, no Sesame call, no family lock or claim"
            ),
            Access::ReadWrite => format!("access: read-write within the grants below; read-only for {READ_ONLY_COMMANDS}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_only_command_is_refused_every_change_by_name() {
        assert_eq!(Access::ReadWrite.allows("writing"), Ok(()));
        let err = Access::ReadOnly("list").allows("a service install").unwrap_err();
        assert_eq!(err, "`list` changes nothing: a service install is not granted to it");
        assert!(Access::ReadOnly("list").describe().starts_with("access: read-only (`list` changes nothing)"));
        assert!(Access::ReadWrite.describe().contains(READ_ONLY_COMMANDS));
    }
}
