//! Archiving a sibling's home before it is removed (rollback and deprovision):
//! `~/.openclaw-archives/<handle>-YYYYmmdd-HHMMSS.tar.gz`, verified before the removal
//! (deprovision keeps the member record beside it, `crate::member_record`).

use crate::caps::{Caps, TreeStats};
use crate::layout::{archives_dir, join};
use crate::timestamp;

/// A home archived and removed.
pub struct Archived {
    pub path: String,
    pub stats: TreeStats,
    /// Entries the re-read archive lists (files, directories and links).
    pub entries: usize,
}

/// Archives `root` (the home of `handle` under `home`) into the archives directory,
/// re-reads the archive and checks it lists exactly what the tree holds, and only then
/// removes `root`.
pub fn archive_and_remove(caps: &Caps, home: &str, handle: &str, root: &str) -> Result<Archived, String> {
    let archived = archive_verified(caps, home, handle, root)?;
    remove_home(caps, root)?;
    Ok(archived)
}

/// Removes `root`, archived.
pub fn remove_home(caps: &Caps, root: &str) -> Result<(), String> {
    caps.files.remove_tree(root).map_err(|e| format!("removing {root}: {}", e.message()))
}

/// Archives `root` as [`archive_and_remove`] does, without removing it.
pub fn archive_verified(caps: &Caps, home: &str, handle: &str, root: &str) -> Result<Archived, String> {
    let dir = archives_dir(home);
    caps.files.create_dir_all(&dir, 0o700).map_err(|e| format!("creating {dir}: {}", e.message()))?;
    let path = free_archive_path(caps, &dir, handle);
    let tree = caps.files.walk_tree(root).map_err(|e| format!("listing {root}: {}", e.message()))?;
    let stats = caps.files.archive_tree(root, &path).map_err(|e| format!("archiving {root}: {}", e.message()))?;
    let listed = caps.files.list_archive(&path).map_err(|e| format!("re-reading {path}: {}", e.message()))?;
    let name = root.rsplit('/').next().unwrap_or(root);
    let mut expected: Vec<String> = std::iter::once(format!("{name}/")).chain(tree.iter().map(|e| format!("{name}/{e}"))).collect();
    let mut got = listed.clone();
    expected.sort();
    got.sort();
    if expected != got {
        return Err(format!(
            "the archive {path} does not match {root} ({} entries vs {}); the home was kept",
            got.len(),
            expected.len()
        ));
    }
    Ok(Archived { path, stats, entries: listed.len() })
}

/// `<dir>/<handle>-<stamp>.tar.gz`, or `-2`, `-3`... when an archive of this second exists.
fn free_archive_path(caps: &Caps, dir: &str, handle: &str) -> String {
    let stamp = timestamp::compact(caps.clock.now_unix_ms());
    let mut path = join(dir, &format!("{handle}-{stamp}.tar.gz"));
    let mut n = 1;
    while let Ok(Some(_)) = caps.files.metadata(&path) {
        n += 1;
        path = join(dir, &format!("{handle}-{stamp}-{n}.tar.gz"));
    }
    path
}
