//! The member record deprovision keeps next to a home's archive
//! (`<handle>-YYYYmmdd-HHMMSS.member.json` beside `….tar.gz`): the registry entry the
//! deprovision removed, so that `restore` can register the same member again (handle,
//! principal, family, display name, task). It lives outside the home, in the archives
//! directory: a sibling can rewrite anything in its own home before it is archived, and
//! must not choose which Sesame member the lead reports online.

use crate::caps::{Files, FsError};
use crate::registry::Member;
use serde::{Deserialize, Serialize};

/// The record format's version.
const VERSION: u32 = 1;

/// The record: a version and the member, as the registry held it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    version: u32,
    #[serde(flatten)]
    member: Member,
}

/// Where the record of `archive` (a `.tar.gz`) is.
pub fn path(archive: &str) -> String {
    format!("{}.member.json", archive.strip_suffix(".tar.gz").unwrap_or(archive))
}

/// Writes the record of `member` next to `archive` (atomically, 0600).
pub fn save(files: &dyn Files, archive: &str, member: &Member) -> Result<(), String> {
    let path = path(archive);
    let mut text = serde_json::to_string_pretty(&Record { version: VERSION, member: member.clone() }).expect("records serialize");
    text.push('\n');
    files.write_atomic(&path, text.as_bytes(), 0o600).map_err(|e| format!("cannot write the member record {path}: {}", e.message()))
}

/// The member recorded next to `archive` for `handle`. An archive without one (made by
/// a provision's rollback, or by a version before restore) cannot be restored: the
/// message says so.
pub fn load(files: &dyn Files, archive: &str, handle: &str) -> Result<Member, String> {
    let path = path(archive);
    let bytes = match files.read(&path) {
        Ok(bytes) => bytes,
        Err(FsError::NotFound(_)) => {
            return Err(format!(
                "{archive} has no member record ({path}): only archives that deprovision wrote with a record can be restored \
                 (an archive a failed provision left holds no working sibling, and older versions kept no record); \
                 name another with --archive"
            ));
        }
        Err(e) => return Err(format!("cannot read the member record {path}: {}", e.message())),
    };
    let record: Record = serde_json::from_slice(&bytes).map_err(|e| format!("the member record {path} is corrupt ({e})"))?;
    if record.version != VERSION {
        return Err(format!("the member record {path} has version {}, not {VERSION}", record.version));
    }
    if record.member.handle != handle {
        return Err(format!("the member record {path} is of {:?}, not {handle}", record.member.handle));
    }
    Ok(record.member)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::member;
    use crate::testing::MemFs;

    #[test]
    fn a_record_round_trips_next_to_its_archive() {
        let fs = MemFs::new();
        fs.add_dir("/h/.openclaw-archives");
        let archive = "/h/.openclaw-archives/nova-20261125-102030.tar.gz";
        save(&fs, archive, &member("nova", 18930)).unwrap();
        assert_eq!(fs.mode("/h/.openclaw-archives/nova-20261125-102030.member.json"), Some(0o600));
        assert_eq!(load(&fs, archive, "nova").unwrap(), member("nova", 18930));
        let text = fs.file(&path(archive)).unwrap();
        assert!(text.contains("\"version\": 1") && text.contains("\"principalId\""), "{text}");
    }

    #[test]
    fn a_missing_corrupt_or_foreign_record_is_refused_naming_it() {
        let fs = MemFs::new();
        let archive = "/h/.openclaw-archives/nova-20261125-102030.tar.gz";
        let err = load(&fs, archive, "nova").unwrap_err();
        assert!(err.contains("has no member record") && err.contains("--archive"), "{err}");
        fs.add_file(&path(archive), "{");
        assert!(load(&fs, archive, "nova").unwrap_err().contains("is corrupt"));
        save(&fs, archive, &member("vega", 18930)).unwrap();
        assert!(load(&fs, archive, "nova").unwrap_err().contains("is of \"vega\", not nova"));
    }
}
