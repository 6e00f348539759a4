//! Secrets the host holds (the lead's Sesame key, provider keys, the lead's `.env`
//! values, the task's keys): never printed, and scrubbed from everything the host writes —
//! stdout, `--json`, stderr, progress lines, the component's own stderr, error chains and
//! the audit log all go through [`scrub`] (and, for a terminal, [`for_terminal`]).

use std::fmt;
use std::sync::RwLock;

/// Every secret registered in this process, longest first.
static REGISTERED: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Values shorter than this are not scrubbed (they would mangle ordinary words).
const MIN_SCRUBBED: usize = 6;

/// Adds `secret` to what [`scrub`] removes from all output of this process.
pub fn register(secret: &Secret) {
    if secret.0.len() < MIN_SCRUBBED {
        return;
    }
    let mut all = REGISTERED.write().unwrap_or_else(|e| e.into_inner());
    if !all.contains(&secret.0) {
        all.push(secret.0.clone());
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// `text` with every registered secret replaced by `[redacted]`.
pub fn scrub(text: &str) -> String {
    let all = REGISTERED.read().unwrap_or_else(|e| e.into_inner());
    all.iter().fold(text.to_string(), |t, s| t.replace(s.as_str(), "[redacted]"))
}

/// [`scrub`]bed text for a terminal: control characters other than newline and tab are
/// dropped, so nothing a component or a file says can move the cursor or retitle it.
pub fn for_terminal(text: &str) -> String {
    scrub(text).chars().filter(|c| !c.is_control() || *c == '\n' || *c == '\t').collect()
}

/// Prints one line on stderr, scrubbed and stripped of control characters.
pub fn eprint_line(line: &str) {
    use std::io::Write as _;
    let mut text = for_terminal(line);
    text.push('\n');
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// A secret string whose `Debug` shows only `[redacted]`; it has no `Display`, so it
/// cannot be formatted into text by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value; `None` for an empty one.
    pub fn new(value: impl Into<String>) -> Option<Self> {
        let value = value.into();
        (!value.trim().is_empty()).then(|| Secret(value.trim().to_string()))
    }

    /// The value itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_its_value() {
        let secret = Secret::new("sk-live-123").unwrap();
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert!(Secret::new("  ").is_none());
    }

    #[test]
    fn registered_secrets_are_scrubbed_from_all_output() {
        register(&Secret::new("sk-registered-42").unwrap());
        register(&Secret::new("sk-registered-42-longer").unwrap());
        register(&Secret::new("abc").unwrap());
        assert_eq!(scrub("a sk-registered-42-longer b sk-registered-42 abc"), "a [redacted] b [redacted] abc");
        assert_eq!(for_terminal("x\u{1b}]0;title\u{7}y\tz\n\rsk-registered-42"), "x]0;titley\tz\n[redacted]");
    }
}
