//! Secrets from the task (API keys): masked wherever they could be shown.

use std::fmt;

/// A secret value whose `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the file that must hold it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A masked form for plans and messages: the length only.
    pub fn masked(&self) -> String {
        format!("[secret, {} chars]", self.0.chars().count())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_the_value() {
        let s = Secret::new("sk-ant-abc");
        assert_eq!(format!("{s} {s:?} {}", s.masked()), "[secret] [secret] [secret, 10 chars]");
        assert_eq!(s.expose(), "sk-ant-abc");
    }
}
