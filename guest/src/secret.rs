//! Secrets from the task (API keys): masked wherever they could be shown.

use std::fmt;

/// A secret value whose `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the file that must hold it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[secret]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[secret]")
    }
}

/// `text` with every secret replaced by `[secret]`.
pub fn scrub(text: &str, secrets: &[Secret]) -> String {
    secrets
        .iter()
        .filter(|s| !s.expose().is_empty())
        .fold(text.to_string(), |t, s| t.replace(s.expose(), "[secret]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_the_value() {
        let s = Secret::new("sk-ant-abc");
        assert_eq!(format!("{s} {s:?}"), "[secret] [secret]");
        assert_eq!(s.expose(), "sk-ant-abc");
    }

    #[test]
    fn scrub_hides_every_non_empty_secret() {
        let secrets = [Secret::new("sk-1"), Secret::new("")];
        assert_eq!(scrub("key sk-1 failed", &secrets), "key [secret] failed");
    }
}
