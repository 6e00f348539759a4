//! Timestamps in the forms the provisioner writes (always UTC).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

fn utc(unix_ms: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp((unix_ms / 1000) as i64).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `YYYYmmdd-HHMMSS`, for archive names.
pub fn compact(unix_ms: u64) -> String {
    utc(unix_ms).format(format_description!("[year][month][day]-[hour][minute][second]")).expect("formats")
}

/// RFC 3339, for the registry.
pub fn rfc3339(unix_ms: u64) -> String {
    utc(unix_ms).format(&Rfc3339).expect("formats")
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc() {
        assert_eq!(super::compact(1_795_602_030_000), "20261125-102030");
        assert_eq!(super::rfc3339(1_795_602_030_000), "2026-11-25T10:20:30Z");
    }
}
