//! The check walks as the archive does: the same stats, headers and bytes, the same refusals.

use super::*;
use cap_std::ambient_authority;
use std::os::unix::fs::PermissionsExt as _;

fn open(path: &Path) -> Dir {
    Dir::open_ambient_dir(path, ambient_authority()).unwrap()
}

/// A home with long names (GNU long-name headers), a long link target, a link, nested
/// directories and files of several sizes.
fn home() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("home");
    let deep = root.join("workspace").join("n".repeat(120)).join("m".repeat(90));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("f".repeat(150)), vec![7u8; 1000]).unwrap();
    std::fs::write(root.join("openclaw.json"), "{}").unwrap();
    std::fs::write(root.join("empty"), "").unwrap();
    std::os::unix::fs::symlink("t".repeat(300), root.join("long-link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
    t
}

#[test]
fn the_check_counts_what_the_archive_writes_and_the_listing_reads() {
    let t = home();
    let dir = open(&t.path().join("home"));
    let mut tar_bytes = Vec::new();
    let (written, measured) = walk(&dir, "home", &mut tar_bytes, true).map(|(s, m)| (s, (m.headers, m.bytes))).unwrap();
    let (checked, counted) = walk(&dir, "home", io::sink(), false).unwrap();
    assert_eq!((checked.files, checked.directories, checked.bytes), (written.files, written.directories, written.bytes));
    assert_eq!((checked.files, checked.directories, checked.bytes), (3, 4, 1002));
    assert_eq!((counted.headers, counted.bytes), measured, "the check measures the archive's stream");
    assert_eq!(measured.1, tar_bytes.len() as u64);
    let headers = tar::Archive::new(&tar_bytes[..]).entries().unwrap().raw(true).count();
    assert_eq!(measured.0, headers, "every header the listing reads, long names and links included");
    assert!(headers > 9, "long names add headers: {headers}");
}

#[test]
fn special_files_and_unreadable_files_are_refused_by_both_naming_them() {
    let t = home();
    let root = t.path().join("home");
    rustix::fs::mknodat(rustix::fs::CWD, root.join("workspace/pipe"), rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o600), 0)
        .unwrap();
    let dir = open(&root);
    for result in [check(&dir, "home"), write(&dir, "home", io::sink())] {
        let err = result.unwrap_err().to_string();
        assert_eq!(err, "workspace/pipe is a FIFO, which an archive does not hold");
    }
    std::fs::remove_file(root.join("workspace/pipe")).unwrap();
    check(&dir, "home").unwrap();
    if rustix::process::geteuid().is_root() {
        return; // root opens any file
    }
    std::fs::set_permissions(root.join("openclaw.json"), std::fs::Permissions::from_mode(0o000)).unwrap();
    for result in [check(&dir, "home"), write(&dir, "home", io::sink())] {
        let err = result.unwrap_err().to_string();
        assert!(err.starts_with("openclaw.json is a file that cannot be opened for reading"), "{err}");
    }
}

#[test]
fn a_stream_past_the_caps_is_refused_as_it_is_written() {
    let mut out = Measured::new(io::sink());
    out.add_bytes(ListCaps::DEFAULT.decompressed_bytes).unwrap();
    let err = out.add_bytes(1).unwrap_err();
    assert_eq!(err.to_string(), "the archive would come to more than 4 GiB before compression (an archive cap)");
    let mut out = Measured::new(io::sink());
    out.headers = ListCaps::DEFAULT.entries;
    let mut h = header(tar::EntryType::Regular, 0o600, 0, 0);
    h.set_path("f").unwrap();
    h.set_cksum();
    let err = out.write_all(h.as_bytes()).unwrap_err();
    assert_eq!(err.to_string(), format!("the archive would hold more than {} tar headers (an archive cap)", ListCaps::DEFAULT.entries));
}

#[test]
fn an_overlong_name_is_refused_before_anything_is_written() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("home");
    let mut deep = root.clone();
    // 20 directories of 250 bytes: 5,000 bytes of path, each name allowed by the kernel.
    for i in 0..20 {
        deep.push(format!("{i:02}{}", "d".repeat(248)));
    }
    if std::fs::create_dir_all(&deep).is_err() {
        return; // a file system with a shorter PATH_MAX
    }
    let err = check(&open(&root), "home").unwrap_err().to_string();
    assert!(err.contains(&format!("a name longer than {MAX_ENTRY_NAME_BYTES} bytes (an archive cap)")), "{err}");
}
