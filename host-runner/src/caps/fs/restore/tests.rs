//! The host's restore of an archive: a home deprovision archived comes back (what a
//! sibling home may not hold left out, credentials private), and every hostile archive is refused with
//! nothing written.

use super::*;
use crate::caps::fs::archive;
use cap_std::ambient_authority;
use flate2::Compression;
use flate2::write::GzEncoder;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

const API: &str = "https://api.sesame.space";

fn plugins() -> Vec<String> {
    vec!["sesame".into()]
}

/// The config the provisioner writes for the home at `home`, on `port`.
fn config(home: &Path, port: u16) -> String {
    serde_json::json!({
        "gateway": { "mode": "local", "port": port, "bind": "loopback", "auth": { "mode": "token", "token": "tok" } },
        "agents": { "defaults": { "workspace": home.join("workspace") } },
        "channels": { "sesame": { "enabled": true, "apiKey": "sk_sibling_1", "apiUrl": API } },
        "plugins": { "entries": { "sesame": { "enabled": true } } },
    })
    .to_string()
}

/// A temporary `$HOME` to restore into.
struct Place {
    temp: tempfile::TempDir,
}

impl Place {
    fn new() -> Self {
        Self { temp: tempfile::tempdir().unwrap() }
    }

    fn home(&self) -> PathBuf {
        self.temp.path().join(".openclaw-nova")
    }

    fn dir(&self) -> Dir {
        Dir::open_ambient_dir(self.temp.path(), ambient_authority()).unwrap()
    }

    /// What the place holds (relative paths), sorted.
    fn listing(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(self.temp.path(), self.temp.path(), &mut out);
        out.sort();
        out
    }

    /// Stages `archive` with the default caps (or `caps`) and commits it.
    fn restore(&self, archive: &[u8], caps: &RestoreCaps) -> Result<Summary, Error> {
        let dir = self.dir();
        let home = self.home();
        let plugins = plugins();
        let rules = SiblingRules { home: &home, api_url: API, plugins: &plugins };
        let staged = stage(&dir, "nova", archive, &rules, caps)?;
        let summary = staged.summary.clone();
        staged.commit().unwrap();
        Ok(summary)
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        out.push(entry.path().strip_prefix(root).unwrap().display().to_string());
        if entry.file_type().unwrap().is_dir() {
            walk(root, &entry.path(), out);
        }
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// A sibling home as OpenClaw leaves it, in `source/.openclaw-nova` (with the config for
/// `place`), archived as deprovision does.
fn deprovision_archive(place: &Place) -> Vec<u8> {
    let source = tempfile::tempdir().unwrap();
    let home = source.path().join(".openclaw-nova");
    let write = |rel: &str, text: &str, mode: u32| {
        let path = home.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    write("openclaw.json", &config(&place.home(), 21000), 0o644);
    write(".env", "# Written by agent-provisioner.\nANTHROPIC_API_KEY=\"sk-ant-1\"\n", 0o644);
    write("workspace/AGENTS.md", "# Agents\n", 0o644);
    write("workspace/memory/2026-11-25.md", "remembered\n", 0o600);
    write("workspace/run.sh", "#!/bin/sh\n", 0o755);
    write("workspace/memory/notes.md", "shared\n", 0o777);
    write(".ENV", "NODE_OPTIONS=--require /tmp/evil.js\n", 0o600);
    write("node-host/bundle.js", "// code\n", 0o644);
    write("skill-library/x/SKILL.md", "# run me\n", 0o644);
    write("projects/p/.openclaw/worktree-setup.sh", "#!/bin/sh\n", 0o755);
    write("agents/main/agent/models.json", "{\"providers\": {}}", 0o600);
    write("agents/main/agent/auth.json", "{}", 0o644);
    write("extensions/sesame/index.js", "// planted before deprovision\n", 0o644);
    write("state/openclaw.sqlite", "cron jobs", 0o600);
    write("tmp/openclaw-0/gateway.lock", "123", 0o600);
    std::os::unix::fs::symlink("/usr/lib/node_modules/openclaw", home.join("extensions/sesame/openclaw")).unwrap();
    std::fs::create_dir_all(home.join("media/outbound")).unwrap();
    std::fs::set_permissions(home.join("workspace/memory"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let dir = Dir::open_ambient_dir(&home, ambient_authority()).unwrap();
    let mut bytes = Vec::new();
    archive::write(&dir, ".openclaw-nova", &mut bytes).unwrap();
    bytes
}

#[test]
fn a_deprovisioned_home_comes_back_with_only_what_a_home_may_hold_and_private_credentials() {
    let place = Place::new();
    let summary = place.restore(&deprovision_archive(&place), &RestoreCaps::DEFAULT).unwrap();
    let home = place.home();
    assert_eq!(std::fs::read_to_string(home.join("workspace/memory/2026-11-25.md")).unwrap(), "remembered\n");
    assert_eq!(std::fs::read_to_string(home.join("openclaw.json")).unwrap(), config(&home, 21000));
    for (path, expected) in [
        ("openclaw.json", 0o600),
        (".env", 0o600),
        ("agents/main/agent/auth.json", 0o600),
        ("workspace/AGENTS.md", 0o644),
        ("workspace/memory/notes.md", 0o755),
        ("workspace/memory", 0o750),
        ("", 0o700),
    ] {
        assert_eq!(mode(&home.join(path)), expected, "{path}");
    }
    for gone in ["extensions", "state", "tmp", "media", ".ENV", "node-host", "skill-library", "projects", "workspace/run.sh", "agents/main/agent/models.json"] {
        assert!(!home.join(gone).exists(), "{gone} was restored");
    }
    assert_eq!(summary.left_out, [
        ".ENV (1 entry)",
        "agents/main/agent/models.json (1 entry)",
        "extensions/ (4 entries)",
        "media/ (2 entries)",
        "node-host/ (2 entries)",
        "projects/ (4 entries)",
        "skill-library/ (3 entries)",
        "state/ (2 entries)",
        "tmp/ (3 entries)",
        "workspace/run.sh (1 entry)",
    ]);
    assert_eq!((summary.files, summary.directories), (6, 6));
    assert_eq!(summary.private, ["openclaw.json", ".env", "agents/main/agent/auth.json"]);
    assert!(place.listing().iter().all(|p| p.starts_with(".openclaw-nova")), "no temporary directory is left: {:?}", place.listing());
}

/// One raw header, written as given: no path checks.
fn raw(kind: tar::EntryType, name: &[u8], mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    h
}

/// A valid home (`.openclaw-nova/` and its config for `place`) with `extra` appended.
fn archive_with(place: &Place, extra: impl FnOnce(&mut tar::Builder<GzEncoder<Vec<u8>>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    b.append(&raw(tar::EntryType::Directory, b".openclaw-nova/", 0o700, 0), io::empty()).unwrap();
    let config = config(&place.home(), 21000);
    b.append(&raw(tar::EntryType::Regular, b".openclaw-nova/openclaw.json", 0o600, config.len() as u64), config.as_bytes()).unwrap();
    b.append(&raw(tar::EntryType::Directory, b".openclaw-nova/workspace/", 0o700, 0), io::empty()).unwrap();
    extra(&mut b);
    b.into_inner().unwrap().finish().unwrap()
}

fn entry(kind: tar::EntryType, name: &str) -> impl FnOnce(&mut tar::Builder<GzEncoder<Vec<u8>>>) {
    let name = name.to_string();
    move |b| {
        let mut h = raw(kind, name.as_bytes(), 0o644, 0);
        if kind.is_symlink() || kind.is_hard_link() {
            h.set_link_name("/etc/passwd").unwrap();
            h.set_cksum();
        }
        b.append(&h, io::empty()).unwrap();
    }
}

/// Restoring `archive` is refused with a message containing `why`, and nothing is written.
fn refused(place: &Place, archive: &[u8], caps: &RestoreCaps, why: &str) {
    let before = place.listing();
    match place.restore(archive, caps) {
        Err(Error::Refused(message)) => assert!(message.contains(why), "{message:?} should say {why:?}"),
        other => panic!("{why}: not refused: {other:?}"),
    }
    assert_eq!(place.listing(), before, "{why}: something was written");
}

#[test]
fn hostile_entries_are_refused_naming_them_and_nothing_is_written() {
    use tar::EntryType as T;
    let place = Place::new();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (archive_with(&place, entry(T::Regular, ".openclaw-nova/../.ssh/authorized_keys")), "\".openclaw-nova/../.ssh/authorized_keys\" has a `..` component"),
        (archive_with(&place, entry(T::Regular, "/etc/cron.d/evil")), "\"/etc/cron.d/evil\" is an absolute path"),
        (archive_with(&place, entry(T::Symlink, ".openclaw-nova/workspace/AGENTS.md")), "\".openclaw-nova/workspace/AGENTS.md\" is a symbolic link"),
        (archive_with(&place, entry(T::Link, ".openclaw-nova/workspace/hard")), "\".openclaw-nova/workspace/hard\" is a hard link"),
        (archive_with(&place, entry(T::Char, ".openclaw-nova/workspace/null")), "\".openclaw-nova/workspace/null\" is a device file"),
        (archive_with(&place, entry(T::Fifo, ".openclaw-nova/workspace/fifo")), "\".openclaw-nova/workspace/fifo\" is a FIFO"),
        (archive_with(&place, entry(T::Regular, ".openclaw-other/openclaw.json")), "is outside .openclaw-nova/"),
        (archive_with(&place, entry(T::Regular, ".openclaw-nova/openclaw.json")), "\".openclaw-nova/openclaw.json\" appears twice"),
        (archive_with(&place, |b| {
            b.append(&raw(T::Regular, b".openclaw-nova/workspace/suid", 0o4755, 0), io::empty()).unwrap();
        }), "has mode 4755"),
        (archive_with(&place, |b| {
            b.append_pax_extensions([("path", &b".openclaw-nova/../../.bashrc"[..])]).unwrap();
            b.append(&raw(T::Regular, b".openclaw-nova/workspace/x", 0o644, 0), io::empty()).unwrap();
        }), "pax extended header"),
    ];
    for (archive, why) in cases {
        refused(&place, &archive, &RestoreCaps::DEFAULT, why);
    }
}

/// A home whose `openclaw.json` is `config` (and with `env` as its `.env`, if given).
fn home_with(config: &str, env: Option<&str>) -> Vec<u8> {
    let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    b.append(&raw(tar::EntryType::Directory, b".openclaw-nova/", 0o700, 0), io::empty()).unwrap();
    b.append(&raw(tar::EntryType::Regular, b".openclaw-nova/openclaw.json", 0o600, config.len() as u64), config.as_bytes()).unwrap();
    if let Some(env) = env {
        b.append(&raw(tar::EntryType::Regular, b".openclaw-nova/.env", 0o600, env.len() as u64), env.as_bytes()).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

#[test]
fn a_config_or_env_that_runs_code_is_refused() {
    let place = Place::new();
    let mut evil: serde_json::Value = serde_json::from_str(&config(&place.home(), 21000)).unwrap();
    evil["plugins"]["load"] = serde_json::json!({ "paths": ["/tmp/evil"] });
    refused(&place, &home_with(&evil.to_string(), None), &RestoreCaps::DEFAULT, "plugins.load is not a key the provisioner writes");
    let good = config(&place.home(), 21000);
    refused(&place, &home_with(&good, Some("NODE_OPTIONS=--require /tmp/evil.js\n")), &RestoreCaps::DEFAULT, ".env: line 1: NODE_OPTIONS");
    let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    b.append(&raw(tar::EntryType::Directory, b".openclaw-nova/", 0o700, 0), io::empty()).unwrap();
    refused(&place, &b.into_inner().unwrap().finish().unwrap(), &RestoreCaps::DEFAULT, "holds no openclaw.json");
    refused(&place, b"not gzip at all", &RestoreCaps::DEFAULT, "not a readable .tar.gz");
}

/// A valid archive of the home with a file of `size_mib` MiB of zeros, compressed as a
/// gzip bomb is (about 1030:1).
fn zero_bomb(place: &Place, size_mib: u64) -> Vec<u8> {
    let config = config(&place.home(), 21000);
    let mut head = raw(tar::EntryType::Directory, b".openclaw-nova/", 0o700, 0).as_bytes().to_vec();
    head.extend_from_slice(raw(tar::EntryType::Regular, b".openclaw-nova/openclaw.json", 0o600, config.len() as u64).as_bytes());
    head.extend_from_slice(config.as_bytes());
    head.resize(head.len().next_multiple_of(512), 0);
    head.extend_from_slice(raw(tar::EntryType::Regular, b".openclaw-nova/zeros", 0o600, size_mib << 20).as_bytes());
    crate::gzip_bomb::gzip_of(&head, size_mib, &[0u8; 1024])
}

#[test]
fn a_gzip_bomb_and_too_many_entries_are_refused_at_their_caps() {
    let place = Place::new();
    let bomb = zero_bomb(&place, 64);
    assert!(bomb.len() < 100 << 10, "{} bytes", bomb.len());
    let small = RestoreCaps { ratio_after: 8 << 20, ..RestoreCaps::DEFAULT };
    refused(&place, &bomb, &small, "decompresses more than 500-fold");
    let tight = RestoreCaps { list: ListCaps { decompressed_bytes: 4 << 20, ..ListCaps::DEFAULT }, ..RestoreCaps::DEFAULT };
    refused(&place, &bomb, &tight, "decompresses to more than 4194304 bytes (a restore cap)");
    let many = archive_with(&place, |b| {
        for i in 0..5 {
            b.append(&raw(tar::EntryType::Regular, format!(".openclaw-nova/workspace/{i}").as_bytes(), 0o644, 0), io::empty()).unwrap();
        }
    });
    refused(&place, &many, &RestoreCaps { entries: 6, ..RestoreCaps::DEFAULT }, "more than 6 entries (a restore cap)");
    // Within the caps the same archives restore.
    place.restore(&many, &RestoreCaps { entries: 8, ..RestoreCaps::DEFAULT }).unwrap();
}

#[test]
fn an_existing_home_is_never_written_over_and_stale_temporaries_are_removed() {
    let place = Place::new();
    let archive = deprovision_archive(&place);
    // What a restore killed part-way left: a temporary directory of a gone process.
    let stale = place.temp.path().join(".openclaw-nova.restoring-2147483646");
    std::fs::create_dir_all(stale.join("workspace")).unwrap();
    std::fs::create_dir_all(place.home()).unwrap();
    assert!(matches!(place.restore(&archive, &RestoreCaps::DEFAULT), Err(Error::Exists(_))));
    std::fs::remove_dir(place.home()).unwrap();

    // A home that appears between staging and the rename is not replaced either.
    let dir = place.dir();
    let home = place.home();
    let plugins = plugins();
    let rules = SiblingRules { home: &home, api_url: API, plugins: &plugins };
    let staged = stage(&dir, "nova", &archive[..], &rules, &RestoreCaps::DEFAULT).unwrap();
    assert_eq!(staged.summary.stale_removed, [".openclaw-nova.restoring-2147483646"]);
    assert!(!stale.exists());
    std::fs::create_dir(&home).unwrap();
    assert_eq!(staged.commit().unwrap_err().kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(place.listing(), [".openclaw-nova"], "the temporary directory is gone, the new home untouched");
}
