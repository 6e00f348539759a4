//! The check of each archive entry before anything of it is written: its name (under
//! `.openclaw-<handle>/`, no `..`, `.`, empty or absolute part, no NUL, not too deep), its
//! place (its parent an earlier directory entry, no duplicate), its type (a directory or a
//! regular file; a symlink only where nothing is written) and its mode (at most 0777).
//! What is written is what a component may create in a sibling home, and the credential
//! files ([`sibling_files::LIST`]); the rest is left out, named by the first place on its
//! path that is not on the list.

use crate::caps::fs::sibling_files;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What to do with one checked entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Planned {
    /// A directory (the home itself when `relative` is empty).
    Dir { relative: PathBuf, mode: u32, mtime: u64 },
    /// A regular file of `size` bytes.
    File { relative: PathBuf, mode: u32, mtime: u64, size: u64 },
    /// Not written: `place` (the entry or a directory above it) is not on the list.
    LeftOut { place: String },
}

/// Checks the entries of one archive in order, remembering what came before.
pub struct Verifier {
    /// `.openclaw-<handle>`: the first component of every entry.
    root: String,
    /// Paths seen so far, relative to the home (`""` for the home), and whether each is a
    /// directory.
    seen: HashMap<String, bool>,
    max_entries: usize,
}

/// An entry name for messages: quoted and escaped, at most 200 characters.
fn shown(name: &str) -> String {
    let mut text: String = name.chars().take(200).collect();
    if text.len() < name.len() {
        text.push('…');
    }
    format!("{text:?}")
}

impl Verifier {
    /// A verifier of an archive of the home `.openclaw-<handle>`, taking at most
    /// `max_entries` entries.
    pub fn new(handle: &str, max_entries: usize) -> Self {
        Self { root: naming::home_name(handle), seen: HashMap::new(), max_entries }
    }

    /// Checks the entry `name` (as tar resolves it) with `header`; the error says why it
    /// is refused, naming the entry.
    pub fn check(&mut self, name: &[u8], header: &tar::Header) -> Result<Planned, String> {
        let text = String::from_utf8_lossy(name);
        let refuse = |why: String| format!("entry {} {why}", shown(&text));
        let relative = self.relative(name).map_err(refuse)?;
        if self.seen.len() >= self.max_entries {
            return Err(format!("the archive has more than {} entries (a restore cap)", self.max_entries));
        }
        self.place(&relative).map_err(refuse)?;
        let kind = header.entry_type();
        if relative.is_empty() && !kind.is_dir() {
            return Err(refuse("is the home itself, and not a directory".into()));
        }
        let left_out = left_out_place(&relative, kind.is_dir());
        match (entry_kind(kind, header), &left_out) {
            (Err(why), Some(_)) if !kind.is_symlink() => return Err(refuse(why)),
            (Err(why), None) => return Err(refuse(why)),
            _ => {}
        }
        let mode = header.mode().map_err(|_| refuse("has an unreadable mode".into()))?;
        if mode & !0o777 != 0 {
            return Err(refuse(format!("has mode {mode:04o}: setuid, setgid and sticky bits are refused")));
        }
        self.seen.insert(relative.clone(), kind.is_dir());
        let mtime = header.mtime().unwrap_or(0);
        Ok(match left_out {
            Some(place) => Planned::LeftOut { place },
            None if kind.is_dir() => Planned::Dir { relative: relative.into(), mode, mtime },
            None => Planned::File { relative: relative.into(), mode, mtime, size: header.size().unwrap_or(0) },
        })
    }

    /// The path of `name` below the home, or why the name is refused.
    fn relative(&self, name: &[u8]) -> Result<String, String> {
        let text = std::str::from_utf8(name).map_err(|_| "is not UTF-8".to_string())?;
        if text.contains('\0') {
            return Err("holds a NUL byte".into());
        }
        if text.starts_with('/') {
            return Err("is an absolute path".into());
        }
        let path = text.strip_suffix('/').unwrap_or(text);
        let parts: Vec<&str> = path.split('/').collect();
        if let Some(bad) = parts.iter().find(|p| matches!(**p, "" | "." | "..")) {
            return Err(match *bad {
                ".." => "has a `..` component".to_string(),
                "." => "has a `.` component".to_string(),
                _ => "has an empty path component".to_string(),
            });
        }
        if parts[0] != self.root {
            return Err(format!("is outside {}/, the home this archive restores", self.root));
        }
        if parts.len() > crate::caps::fs::MAX_WALK_DEPTH + 1 {
            return Err(format!("is nested more than {} directories deep", crate::caps::fs::MAX_WALK_DEPTH));
        }
        Ok(parts[1..].join("/"))
    }

    /// Refuses a duplicate, and an entry whose parent is not an earlier directory entry
    /// (the home's own entry must come first).
    fn place(&self, relative: &str) -> Result<(), String> {
        if self.seen.contains_key(relative) {
            return Err("appears twice".into());
        }
        if self.seen.is_empty() {
            return match relative.is_empty() {
                true => Ok(()),
                false => Err(format!("comes before {}/ itself", self.root)),
            };
        }
        let parent = relative.rsplit_once('/').map_or("", |(parent, _)| parent);
        match self.seen.get(parent) {
            Some(true) => Ok(()),
            Some(false) => Err(format!("lies under {}, which is not a directory", shown(parent))),
            None => Err(format!("comes before its directory {}", shown(parent))),
        }
    }
}

/// Refuses every entry type but a directory (without data) and a regular file.
fn entry_kind(kind: tar::EntryType, header: &tar::Header) -> Result<(), String> {
    use tar::EntryType as T;
    match kind {
        T::Regular => Ok(()),
        T::Directory if header.size().unwrap_or(0) == 0 => Ok(()),
        T::Directory => Err("is a directory with data".into()),
        T::Symlink => Err("is a symbolic link, which a restore does not write".into()),
        T::Link => Err("is a hard link".into()),
        T::Char | T::Block => Err("is a device file".into()),
        T::Fifo => Err("is a FIFO".into()),
        T::GNUSparse => Err("is a sparse file".into()),
        T::Continuous => Err("is a contiguous file".into()),
        other => Err(format!("has entry type {:?}, which is not a file or a directory", other.as_byte() as char)),
    }
}

/// The first place on the path of `relative` (a directory when `directory`) that is not on
/// [`sibling_files::LIST`], shown as the entry's name is (`node-host/`, `.ENV`); `None` when
/// the entry is listed.
pub fn left_out_place(relative: &str, directory: bool) -> Option<String> {
    let parts: Vec<&str> = relative.split('/').filter(|p| !p.is_empty()).collect();
    (1..=parts.len()).find_map(|n| {
        let is_dir = directory || n < parts.len();
        let listed = sibling_files::place(Path::new(&parts[..n].join("/"))).is_ok_and(|(_, place)| place.holds(is_dir));
        (!listed).then(|| {
            let shown = parts[..n].join("/");
            let shown = if shown.split('/').all(sibling_files::is_plain) { shown } else { format!("{shown:?}") };
            if is_dir { format!("{shown}/") } else { shown }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h
    }

    fn dir() -> tar::Header {
        header(tar::EntryType::Directory, 0o700, 0)
    }

    fn file() -> tar::Header {
        header(tar::EntryType::Regular, 0o600, 5)
    }

    /// A verifier that has seen the home and `workspace/`.
    fn started() -> Verifier {
        let mut v = Verifier::new("nova", 100);
        v.check(b".openclaw-nova/", &dir()).unwrap();
        v.check(b".openclaw-nova/workspace", &dir()).unwrap();
        v
    }

    #[test]
    fn the_entries_deprovision_writes_pass_and_the_rest_is_left_out() {
        let mut v = started();
        assert_eq!(
            v.check(b".openclaw-nova/workspace/AGENTS.md", &file()).unwrap(),
            Planned::File { relative: "workspace/AGENTS.md".into(), mode: 0o600, mtime: 0, size: 5 }
        );
        let left_out = |place: &str| Planned::LeftOut { place: place.into() };
        assert_eq!(v.check(b".openclaw-nova/extensions", &dir()).unwrap(), left_out("extensions/"));
        let link = header(tar::EntryType::Symlink, 0o777, 0);
        assert_eq!(v.check(b".openclaw-nova/extensions/.bin", &link).unwrap(), left_out("extensions/"));
        assert_eq!(v.check(b".openclaw-nova/tmp/", &dir()).unwrap(), left_out("tmp/"));
        assert_eq!(v.check(b".openclaw-nova/tmp-notes.md", &file()).unwrap(), left_out("tmp-notes.md"));
        assert_eq!(v.check(b".openclaw-nova/.ENV", &file()).unwrap(), left_out(".ENV"));
        assert_eq!(v.check(b".openclaw-nova/workspace/\xc3\xa9", &file()).unwrap(), left_out("\"workspace/\u{e9}\""));
        assert_eq!(v.check(b".openclaw-nova/.env", &file()).unwrap(), Planned::File { relative: ".env".into(), mode: 0o600, mtime: 0, size: 5 });
    }

    #[test]
    fn hostile_names_are_refused_naming_the_entry() {
        for (name, why) in [
            (&b"/etc/passwd"[..], "is an absolute path"),
            (b".openclaw-nova/../.ssh/authorized_keys", "has a `..` component"),
            (b".openclaw-nova/./x", "has a `.` component"),
            (b".openclaw-nova//x", "has an empty path component"),
            (b".openclaw-other/x", "is outside .openclaw-nova/"),
            (b"x", "is outside .openclaw-nova/"),
            (b".openclaw-nova/a\0b", "holds a NUL byte"),
            (b".openclaw-nova/\xff", "is not UTF-8"),
            (b".openclaw-nova/workspace", "appears twice"),
            (b".openclaw-nova/workspace/", "appears twice"),
            (b".openclaw-nova/media/x", "comes before its directory \"media\""),
        ] {
            let err = started().check(name, &file()).unwrap_err();
            assert!(err.starts_with("entry \"") && err.contains(why), "{}: {err}", String::from_utf8_lossy(name));
        }
        let err = Verifier::new("nova", 10).check(b".openclaw-nova/x", &file()).unwrap_err();
        assert!(err.contains("comes before .openclaw-nova/ itself"), "{err}");
    }

    #[test]
    fn links_devices_and_special_modes_are_refused() {
        use tar::EntryType as T;
        for (kind, why) in [
            (T::Symlink, "symbolic link"),
            (T::Link, "hard link"),
            (T::Char, "device"),
            (T::Block, "device"),
            (T::Fifo, "FIFO"),
            (T::GNUSparse, "sparse"),
            (T::Continuous, "contiguous"),
            (T::new(b'X'), "entry type 'X'"),
        ] {
            let err = started().check(b".openclaw-nova/workspace/AGENTS.md", &header(kind, 0o600, 0)).unwrap_err();
            assert!(err.contains(why), "{kind:?}: {err}");
        }
        // Only symlinks are tolerated where nothing is written.
        let err = started().check(b".openclaw-nova/tmp", &header(T::Link, 0o600, 0)).unwrap_err();
        assert!(err.contains("hard link"), "{err}");
        for mode in [0o4755, 0o2755, 0o1777] {
            let err = started().check(b".openclaw-nova/workspace/x", &header(T::Regular, mode, 0)).unwrap_err();
            assert!(err.contains(&format!("mode {mode:04o}")) && err.contains("setuid"), "{err}");
        }
        let err = started().check(b".openclaw-nova/workspace/x", &header(T::Directory, 0o700, 10)).unwrap_err();
        assert!(err.contains("directory with data"), "{err}");
        let mut under_file = started();
        under_file.check(b".openclaw-nova/workspace/f", &file()).unwrap();
        let err = under_file.check(b".openclaw-nova/workspace/f/g", &file()).unwrap_err();
        assert!(err.contains("which is not a directory"), "{err}");
    }

    #[test]
    fn entries_and_depth_are_capped() {
        let mut v = Verifier::new("nova", 3);
        v.check(b".openclaw-nova/", &dir()).unwrap();
        v.check(b".openclaw-nova/a", &file()).unwrap();
        v.check(b".openclaw-nova/b", &file()).unwrap();
        let err = v.check(b".openclaw-nova/c", &file()).unwrap_err();
        assert_eq!(err, "the archive has more than 3 entries (a restore cap)");
        let deep = format!(".openclaw-nova/{}", ["d"; 257].join("/"));
        assert!(started().check(deep.as_bytes(), &dir()).unwrap_err().contains("nested more than 256"));
    }
}
