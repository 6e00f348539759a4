//! One set of naming rules, shared by the host and the guest: what a sibling handle may
//! be, and the names derived from it (service label, systemd unit, LaunchAgent file,
//! sibling home, log directory, claimed ports).
//!
//! Every name here is derived from a handle that passed [`check_handle`]; nothing derived
//! can collide with a name OpenClaw itself uses for its default or a named profile:
//! - OpenClaw's LaunchAgents are `ai.openclaw.<profile>`; ours are `com.openclaw.<handle>`
//!   (the original skill's labels), and `gateway`/`gateway-*` handles are reserved so no
//!   label is `com.openclaw.gateway…`.
//! - OpenClaw's systemd units are `openclaw-gateway.service` and
//!   `openclaw-gateway-<profile>.service`; ours are `openclaw-sibling-<handle>.service`,
//!   a prefix that no `openclaw-gateway*` name starts with, whatever the handle.
//! - OpenClaw's homes are `~/.openclaw` (default profile) and `~/.openclaw-<profile>`;
//!   `default` and `dev` (`openclaw --dev`) are reserved, the lead's handle from any source
//!   is refused, and `~/.openclaw-archives` is the archives directory.

use std::ops::RangeInclusive;

/// The longest handle.
pub const MAX_HANDLE: usize = 32;

/// Handles no sibling may have, with the reason shown in refusals.
pub const RESERVED: [(&str, &str); 4] = [
    ("archives", "~/.openclaw-archives holds the archives of removed siblings"),
    ("default", "`default` is OpenClaw's default profile"),
    ("dev", "`dev` is OpenClaw's --dev profile (~/.openclaw-dev)"),
    ("gateway", "com.openclaw.gateway and openclaw-gateway.service are OpenClaw's own gateway service"),
];

/// Why a handle is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandleError {
    Empty,
    TooLong(usize),
    /// A character outside `[a-z0-9_-]`.
    BadChar(char),
    /// Starts with `-` or `_`.
    BadStart,
    /// Reserved, with the reason.
    Reserved(&'static str),
    /// One of the lead's handles.
    Lead,
}

impl std::fmt::Display for HandleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandleError::Empty => f.write_str("must not be empty"),
            HandleError::TooLong(n) => write!(f, "is {n} characters long; at most {MAX_HANDLE}"),
            HandleError::BadChar(c) => write!(f, "contains {}; use lowercase letters, digits, `-` and `_` only", describe_char(*c)),
            HandleError::BadStart => f.write_str("must start with a letter or digit"),
            HandleError::Reserved(why) => write!(f, "is reserved ({why})"),
            HandleError::Lead => f.write_str("is the lead's own handle"),
        }
    }
}

/// A character in words, for messages (control and non-ASCII ones by code point).
pub fn describe_char(c: char) -> String {
    if c.is_control() || c.is_whitespace() {
        format!("the character U+{:04X}", c as u32)
    } else if !c.is_ascii() {
        format!("the non-ASCII character `{c}` (U+{:04X})", c as u32)
    } else {
        format!("`{c}`")
    }
}

/// Whether `c` may be part of an API key: letters, digits and `-_.:+/=` (nothing that
/// needs quoting or escaping in a `.env` line or a JSON string).
pub fn key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.:+/=".contains(c)
}

/// The API key grammar (a task's `sesameApiKey` and `llmApiKey`): 16 to 512 of
/// [`key_char`], with at least one letter and one digit. A key is random; a word, a path or
/// a name of what the host prints is not one, and since every key is scrubbed from all
/// output, no task can pass one off as its key to cut it from what the caller reads. The
/// message never quotes the key.
pub fn check_api_key(key: &str) -> Result<(), String> {
    let length = key.chars().count();
    if !(16..=512).contains(&length) {
        return Err(format!("must be 16 to 512 characters (it has {length})"));
    }
    if let Some(c) = key.chars().find(|c| !key_char(*c)) {
        let what = if c.is_whitespace() || c.is_control() { "whitespace or control characters" } else if c.is_ascii() { "a character other than letters, digits and -_.:+/=" } else { "non-ASCII characters" };
        return Err(format!("contains {what}; an API key is letters, digits and -_.:+/="));
    }
    if !key.chars().any(|c| c.is_ascii_digit()) || !key.chars().any(|c| c.is_ascii_alphabetic()) {
        return Err("has no digit or no letter; an API key is random, not a word or a name".into());
    }
    Ok(())
}

/// The handle grammar: 1-32 of `[a-z0-9_-]`, starting with a letter or digit, and not
/// reserved (`archives`, `default`, `dev`, `gateway`, `gateway-*`).
pub fn check_handle(handle: &str) -> Result<(), HandleError> {
    if handle.is_empty() {
        return Err(HandleError::Empty);
    }
    let length = handle.chars().count();
    if length > MAX_HANDLE {
        return Err(HandleError::TooLong(length));
    }
    if let Some(bad) = handle.chars().find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-' | '_')) {
        return Err(HandleError::BadChar(bad));
    }
    if !handle.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(HandleError::BadStart);
    }
    if let Some((_, why)) = RESERVED.iter().find(|(name, _)| *name == handle) {
        return Err(HandleError::Reserved(why));
    }
    if handle.starts_with("gateway-") {
        return Err(HandleError::Reserved("openclaw-gateway-<profile>.service and com.openclaw.gateway-* are OpenClaw's own names"));
    }
    Ok(())
}

/// [`check_handle`], and not one of the lead's handles.
pub fn check_sibling(handle: &str, lead_handles: &[String]) -> Result<(), HandleError> {
    check_handle(handle)?;
    if lead_handles.iter().any(|h| h == handle) {
        return Err(HandleError::Lead);
    }
    Ok(())
}

/// Every handle the lead goes by: its home's `~/.openclaw-<handle>` name and the handle
/// its config names (`channels.sesame.handle`, `@` and case dropped), without repeats.
pub fn lead_handles(lead_home: &str, configured: Option<&str>) -> Vec<String> {
    let from_home = lead_home.trim_end_matches('/').rsplit('/').next().and_then(handle_of_home_name).map(String::from);
    let from_config = configured.map(|h| h.trim().trim_start_matches('@').to_ascii_lowercase()).filter(|h| !h.is_empty());
    let mut handles: Vec<String> = from_home.into_iter().chain(from_config).collect();
    handles.dedup();
    handles
}

/// The service label: `com.openclaw.<handle>`.
pub fn label(handle: &str) -> String {
    format!("com.openclaw.{handle}")
}

/// The handle a label names, when it is `com.openclaw.<valid handle>`.
pub fn handle_of_label(label: &str) -> Option<&str> {
    label.strip_prefix("com.openclaw.").filter(|h| check_handle(h).is_ok())
}

/// The LaunchAgent file: `com.openclaw.<handle>.plist`.
pub fn plist_name(handle: &str) -> String {
    format!("{}.plist", label(handle))
}

/// The systemd user unit: `openclaw-sibling-<handle>.service`.
pub fn unit_name(handle: &str) -> String {
    format!("openclaw-sibling-{handle}.service")
}

/// The handle a service definition file names (plist or unit), when it is one of ours.
pub fn handle_of_definition(file_name: &str) -> Option<&str> {
    file_name
        .strip_suffix(".plist")
        .and_then(handle_of_label)
        .or_else(|| file_name.strip_prefix("openclaw-sibling-")?.strip_suffix(".service").filter(|h| check_handle(h).is_ok()))
}

/// The directory name of a sibling home: `.openclaw-<handle>`.
pub fn home_name(handle: &str) -> String {
    format!(".openclaw-{handle}")
}

/// The handle a directory name `.openclaw-<handle>` names, when the handle is valid.
pub fn handle_of_home_name(name: &str) -> Option<&str> {
    name.strip_prefix(".openclaw-").filter(|h| check_handle(h).is_ok())
}

/// A sibling's home: `<home>/.openclaw-<handle>`.
pub fn sibling_home(home: &str, handle: &str) -> String {
    join(home, &home_name(handle))
}

/// The host's own state, which the component never reaches: `<home>/.local/state/agent-provisioner`.
pub fn host_state_dir(home: &str) -> String {
    join(home, ".local/state/agent-provisioner")
}

/// Where the service manager writes a sibling gateway's `stdout.log` and `stderr.log`:
/// a directory the host creates, outside the sibling's home, so a sibling cannot turn
/// its logs into links to elsewhere.
pub fn log_dir(home: &str, handle: &str) -> String {
    join(&host_state_dir(home), &format!("logs/{handle}"))
}

/// The two log files' names in [`log_dir`].
pub const LOG_FILES: [&str; 2] = ["stdout.log", "stderr.log"];

fn join(dir: &str, relative: &str) -> String {
    format!("{}/{relative}", dir.trim_end_matches('/'))
}

/// The port ranges a current OpenClaw gateway on `base` claims: `base..=base+2` (gateway,
/// MCP Apps, browser control) and `base+11..=base+110` (browser debugging).
pub fn claimed_ports(base: u16) -> [RangeInclusive<u32>; 2] {
    let b = u32::from(base);
    [b..=b + 2, b + 11..=b + 110]
}

/// The highest base whose claimed ports still fit below 65536.
pub const MAX_BASE: u16 = u16::MAX - 110;

/// Whether gateways on `a` and `b` claim a port in common.
pub fn claims_overlap(a: u16, b: u16) -> bool {
    claimed_ports(a).iter().any(|x| claimed_ports(b).iter().any(|y| x.start() <= y.end() && y.start() <= x.end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_and_the_reserved_names() {
        for ok in ["nova", "a", "agent-2", "x_y", "9lives", &"a".repeat(32), "gatewayx", "devops"] {
            assert_eq!(check_handle(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_handle(""), Err(HandleError::Empty));
        assert_eq!(check_handle(&"a".repeat(33)), Err(HandleError::TooLong(33)));
        assert_eq!(check_handle("Nova"), Err(HandleError::BadChar('N')));
        assert_eq!(check_handle("a/b"), Err(HandleError::BadChar('/')));
        assert_eq!(check_handle("a\nb"), Err(HandleError::BadChar('\n')));
        assert_eq!(check_handle("-x"), Err(HandleError::BadStart));
        for reserved in ["archives", "default", "dev", "gateway", "gateway-work", "gateway-"] {
            assert!(matches!(check_handle(reserved), Err(HandleError::Reserved(_))), "{reserved}");
        }
        assert!(HandleError::BadChar('\n').to_string().contains("U+000A"));
    }

    #[test]
    fn the_lead_goes_by_every_name_it_has() {
        assert_eq!(lead_handles("/h/.openclaw-atlas", Some("@Atlas")), ["atlas"]);
        assert_eq!(lead_handles("/h/.openclaw", Some("@boss")), ["boss"]);
        assert_eq!(lead_handles("/h/.openclaw-atlas/", Some("chief")), ["atlas", "chief"]);
        assert!(lead_handles("/h/.openclaw", None).is_empty());
        assert_eq!(check_sibling("chief", &lead_handles("/h/.openclaw-atlas", Some("chief"))), Err(HandleError::Lead));
        assert_eq!(check_sibling("atlas", &lead_handles("/h/.openclaw-atlas", None)), Err(HandleError::Lead));
    }

    #[test]
    fn derived_names_never_meet_openclaws_own() {
        for handle in ["nova", "gatewayx", "work"] {
            assert!(!unit_name(handle).starts_with("openclaw-gateway"), "{handle}");
            assert!(!label(handle).starts_with("ai.openclaw."));
            assert_ne!(label(handle), "com.openclaw.gateway");
        }
        assert_eq!(unit_name("nova"), "openclaw-sibling-nova.service");
        assert_eq!(plist_name("nova"), "com.openclaw.nova.plist");
        assert_eq!(sibling_home("/h/", "nova"), "/h/.openclaw-nova");
        assert_eq!(log_dir("/h", "nova"), "/h/.local/state/agent-provisioner/logs/nova");
    }

    #[test]
    fn names_map_back_to_valid_handles_only() {
        assert_eq!(handle_of_label("com.openclaw.nova"), Some("nova"));
        for bad in ["com.openclaw.gateway", "com.openclaw.../x", "ai.openclaw.nova", "com.openclaw.A"] {
            assert_eq!(handle_of_label(bad), None, "{bad}");
        }
        assert_eq!(handle_of_definition("com.openclaw.nova.plist"), Some("nova"));
        assert_eq!(handle_of_definition("openclaw-sibling-nova.service"), Some("nova"));
        assert_eq!(handle_of_definition("openclaw-gateway.service"), None);
        assert_eq!(handle_of_definition("openclaw-nova.service"), None);
        assert_eq!(handle_of_home_name(".openclaw-nova"), Some("nova"));
        assert_eq!(handle_of_home_name(".openclaw-dev"), None);
        assert_eq!(handle_of_home_name(".openclaw"), None);
    }

    #[test]
    fn api_keys_are_random_tokens_not_words() {
        for good in ["sk_sesame_example_placeholder_0001", "sk-ant-api03-AbC_dEf-0123456789", "sk-or-v1-0a1b2c3d4e5f6a7b", "abc/def+ghi=0123"] {
            assert_eq!(check_api_key(good), Ok(()), "{good}");
        }
        for (bad, says) in [
            ("exit_code", "16 to 512"),
            ("sk-short-0001", "16 to 512"),
            ("sesame_authenticated", "no digit"),
            ("0123456789012345678", "no digit or no letter"),
            ("sk has a space 00001", "whitespace"),
            ("sk-quote\"d-key-000001", "other than letters"),
            ("sk-\u{7}bell-key-0000001", "control"),
            ("ключ-ключ-ключ-12345678", "non-ASCII"),
        ] {
            let why = check_api_key(bad).unwrap_err();
            assert!(why.contains(says) && !why.contains(bad), "{bad}: {why}");
        }
        assert!(check_api_key(&"a1".repeat(257)).is_err());
    }

    #[test]
    fn claimed_ranges() {
        assert_eq!(claimed_ports(18790), [18790..=18792, 18801..=18900]);
        assert!(claims_overlap(18790, 18791));
        assert!(claims_overlap(18790, 18900));
        assert!(!claims_overlap(18790, 18911));
        assert!(!claims_overlap(18790, 18600));
    }
}
