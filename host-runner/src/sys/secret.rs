//! Secrets the host holds (the lead's Sesame key, provider keys, the lead's `.env`
//! values, the task's keys, keys an adoption moves): never printed, and scrubbed from
//! everything the host writes — stdout, stderr, progress lines, the component's own
//! stderr, error chains and the audit log go through [`scrub`]; a `--json` document and
//! an audit line are scrubbed value by value before they are serialised, never their
//! keys, so no secret can steer a document's structure.
//!
//! [`scrub`] drops what a terminal does not show (control characters but newline and
//! tab, zero-width and bidirectional formatting characters) *before* it looks for
//! secrets, so a character hidden inside an occurrence cannot hide it; an occurrence
//! split by newlines or tabs, or overlapping another, is redacted whole. What it cannot
//! stop is a component that prints a key it holds in pieces across calls or encoded: the
//! component holds only the task's own keys, which the caller gave it.

use std::fmt;
use std::sync::RwLock;

/// Every secret registered in this process, as [`scrub`] compares it (visible characters
/// only, without newlines and tabs).
static REGISTERED: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Values shorter than this are not scrubbed (they would mangle ordinary words).
const MIN_SCRUBBED: usize = 6;

/// What stands in for a secret.
const REDACTED: &str = "[redacted]";

/// Adds `secret` to what [`scrub`] removes from all output of this process (also in the
/// form a JSON writer may give it, with `/` escaped).
pub fn register(secret: &Secret) {
    let compared: String = secret.0.chars().filter(|&c| !hidden(c) && !splits(c)).collect();
    if compared.chars().count() < MIN_SCRUBBED {
        return;
    }
    let mut all = REGISTERED.write().unwrap_or_else(|e| e.into_inner());
    for form in [compared.replace('/', "\\/"), compared] {
        if !all.contains(&form) {
            all.push(form);
        }
    }
}

/// Whether a terminal shows nothing for `c`: a control character other than newline and
/// tab, or a default-ignorable code point (zero-width, joiners, bidirectional controls,
/// variation selectors, tags, the soft hyphen...).
fn hidden(c: char) -> bool {
    (c.is_control() && !splits(c))
        || matches!(c as u32,
            0xAD | 0x34F | 0x61C | 0x115F..=0x1160 | 0x17B4..=0x17B5 | 0x180B..=0x180F | 0x200B..=0x200F
            | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8
            | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0000..=0xE0FFF)
}

/// Newline and tab: kept in the text, but an occurrence split by them is still one.
fn splits(c: char) -> bool {
    c == '\n' || c == '\t'
}

/// `text` as the host shows it anywhere: hidden characters dropped first, then every
/// occurrence of a registered secret (across newlines and tabs, overlapping ones merged)
/// replaced by `[redacted]`.
pub fn scrub(text: &str) -> String {
    let shown: String = text.chars().filter(|&c| !hidden(c)).collect();
    let all = REGISTERED.read().unwrap_or_else(|e| e.into_inner());
    if all.is_empty() {
        return shown;
    }
    // The text without newlines and tabs, and where each of its bytes is in `shown`.
    let mut joined = String::with_capacity(shown.len());
    let mut at = Vec::with_capacity(shown.len());
    for (i, c) in shown.char_indices().filter(|(_, c)| !splits(*c)) {
        joined.push(c);
        at.extend(i..i + c.len_utf8());
    }
    let mut spans: Vec<(usize, usize)> =
        all.iter().flat_map(|s| joined.match_indices(s.as_str()).map(|(j, m)| (at[j], at[j + m.len() - 1] + 1)).collect::<Vec<_>>()).collect();
    spans.sort_unstable();
    let mut out = String::with_capacity(shown.len());
    let mut done = 0;
    for (from, to) in spans {
        if to <= done {
            continue;
        }
        if from >= done {
            out.push_str(&shown[done..from]);
            out.push_str(REDACTED);
        }
        done = to;
    }
    out.push_str(&shown[done..]);
    out
}

/// `value` with every string in it [`scrub`]bed; object keys are left as they are.
pub fn scrub_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => *s = scrub(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(scrub_json),
        serde_json::Value::Object(map) => map.values_mut().for_each(scrub_json),
        _ => {}
    }
}

/// Whether `text` holds a registered secret: as it is, or once whitespace and hidden
/// characters are taken out (`sk-\u{200b}live…` is still the key).
pub fn held_in(text: &str) -> bool {
    let all = REGISTERED.read().unwrap_or_else(|e| e.into_inner());
    let squeezed: String = text.chars().filter(|&c| !c.is_whitespace() && !hidden(c)).collect();
    all.iter().any(|s| text.contains(s.as_str()) || squeezed.contains(s.as_str()))
}

/// Whether `bytes` hold any registered secret, whole (the host refuses to hand such a
/// file to the component, whatever its name).
pub fn contains_registered(bytes: &[u8]) -> bool {
    let all = REGISTERED.read().unwrap_or_else(|e| e.into_inner());
    all.iter().any(|s| crate::caps::fs::contains(bytes, s.as_bytes()))
}

/// `value` serialised as one line of JSON, scrubbed value by value ([`scrub_json`]).
pub fn scrubbed_json(value: &impl serde::Serialize) -> String {
    let mut value = serde_json::to_value(value).expect("host documents serialize");
    scrub_json(&mut value);
    value.to_string()
}

/// Prints one line on stderr, [`scrub`]bed.
pub fn eprint_line(line: &str) {
    use std::io::Write as _;
    let mut text = scrub(line);
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
        assert_eq!(scrub("x\u{1b}]0;title\u{7}y\tz\n\rsk-registered-42"), "x]0;titley\tz\n[redacted]");
    }

    #[test]
    fn hidden_characters_go_before_secrets_are_looked_for() {
        register(&Secret::new("sk-hidden-0001-key").unwrap());
        for planted in ["sk-hid\u{7}den-0001-key", "sk-hidden\u{1b}-0001-key", "sk-\u{200b}hidden-0001\u{202e}-key", "sk-hidden-0001\u{9b}-key"] {
            assert_eq!(scrub(&format!("<{planted}>")), "<[redacted]>", "{planted:?}");
        }
        assert_eq!(scrub("sk-hidden-\n0001-\tkey!"), "[redacted]!", "split by a newline and a tab");
    }

    #[test]
    fn overlapping_secrets_and_escaped_slashes_are_redacted_whole() {
        register(&Secret::new("overlap-aaaa-1111").unwrap());
        register(&Secret::new("1111-bbbb-overlap").unwrap());
        assert_eq!(scrub("<overlap-aaaa-1111-bbbb-overlap>"), "<[redacted]>");
        register(&Secret::new("key/with/slash-0001").unwrap());
        assert_eq!(scrub(r#"{"k":"key\/with\/slash-0001"} key/with/slash-0001"#), r#"{"k":"[redacted]"} [redacted]"#);
    }

    #[test]
    fn json_is_scrubbed_value_by_value_never_keys() {
        register(&Secret::new("exit_code_secret").unwrap());
        let mut doc = serde_json::json!({"exit_code_secret": 2, "message": "has exit_code_secret\u{7} in it", "list": ["exit_code_secret"]});
        scrub_json(&mut doc);
        assert_eq!(doc, serde_json::json!({"exit_code_secret": 2, "message": "has [redacted] in it", "list": ["[redacted]"]}));
    }

    #[test]
    fn a_file_holding_a_registered_secret_is_found_whole_only() {
        register(&Secret::new("sk-held-in-a-file-7").unwrap());
        assert!(contains_registered(b"notes\nKEY=sk-held-in-a-file-7\n"));
        assert!(!contains_registered(b"KEY=sk-held-in-a-file-"), "a part of a key is not the key");
        assert!(!contains_registered(b""));
    }

    #[test]
    fn a_secret_is_found_also_when_split_by_invisible_characters() {
        register(&Secret::new("sk-held-in-77").unwrap());
        assert!(held_in("stolen: sk-held-in-77!"));
        assert!(held_in("sk-held-\u{200b}in-77") && held_in("sk-held-\nin-77") && held_in("sk -held-in-\u{7}77"));
        assert!(!held_in("sk-held-in-7") && !held_in("nothing here"));
    }
}
