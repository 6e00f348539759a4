//! End to end: `restore` brings a deprovisioned sibling back — the same home (code paths
//! copied from the lead again), healthy, registered, reported online — picks an older
//! archive when named, refuses a home that exists or a port that is taken (and moves it
//! with --auto-port), recovers from a restore killed part-way, refuses every hostile
//! archive with nothing written, and leaves out (and reports) what a sibling home may not
//! hold.

mod support;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::*;

const FAMILY: &str = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d";

fn provision(t: &TestHome, handle: &str, port: u16) {
    t.provision(&t.task(handle, port, |_| {})).expect(0);
}

/// Deprovisions `handle`; returns its archive.
fn deprovision(t: &TestHome, handle: &str) -> PathBuf {
    let gone = t.run(&["--json", "deprovision", handle]).expect(0).json();
    PathBuf::from(gone["outcome"]["archive"].as_str().unwrap())
}

/// `restore HANDLE` with `args`, as JSON.
fn restore(t: &TestHome, handle: &str, args: &[&str]) -> Run {
    let mut all = vec!["--json", "restore", handle];
    all.extend_from_slice(args);
    t.run(&all)
}

fn member(t: &TestHome, handle: &str) -> Option<Value> {
    let list = t.run(&["--json", "list"]).expect(0).json();
    list["members"].as_array().unwrap().iter().find(|m| m["handle"] == handle).cloned()
}

#[test]
fn a_deprovisioned_sibling_comes_back_the_same_healthy_registered_and_online() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let port = gateway_port();
    provision(&t, "nova", port);
    let home = t.sibling("nova");
    std::fs::write(home.join("workspace/memory/2026-11-25.md"), "what nova learned\n").unwrap();
    // Code the sibling planted before it was deprovisioned: never restored.
    std::fs::write(home.join("extensions/sesame/planted.js"), "require('child_process')").unwrap();
    std::fs::create_dir_all(home.join("skills/evil")).unwrap();
    std::fs::write(home.join("skills/evil/SKILL.md"), "run this").unwrap();
    let before = files_under(&home);
    let registered = member(&t, "nova").unwrap();
    let archive = deprovision(&t, "nova");
    let archived = std::fs::read(&archive).unwrap();
    assert!(archive.with_extension("").with_extension("member.json").is_file(), "the member record is kept beside the archive");
    sesame.reset();

    let outcome = restore(&t, "nova", &[]).expect(0).json()["outcome"].clone();
    assert_eq!((outcome["port"].as_u64(), outcome["archive"].as_str()), (Some(port as u64), archive.to_str()));
    assert_eq!(outcome["plugins"], json!(["extensions/sesame", "skills/sesame"]));
    assert!(outcome["left_out"].as_array().unwrap().iter().any(|l| l.as_str().unwrap().starts_with("extensions/")), "{outcome}");
    assert_eq!(outcome["sesame_authenticated"], true);

    // The same home: every file and mode, but the planted code; the code is the lead's.
    let mut expected = before.clone();
    expected.retain(|path, _| !path.starts_with("extensions/sesame/planted") && !path.starts_with("skills/evil"));
    assert_eq!(files_under(&home), expected);
    let lead_plugin = files_under(&t.lead().join("extensions/sesame"));
    assert!(lead_plugin.iter().all(|(path, (_, bytes))| std::fs::read(home.join("extensions/sesame").join(path.trim_end_matches('/'))).map_or(path.ends_with('/'), |b| b == *bytes)));

    assert_eq!(get_status(port, "/healthz"), Some(200), "healthy");
    let mut back = member(&t, "nova").unwrap();
    assert_eq!(back["status"], "online");
    back["status"] = registered["status"].clone();
    assert_eq!(back, registered, "the same registry entry: handle, principal, family, name, created");
    let requests = sesame.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(requests[0]["path"], format!("/api/v1/families/{FAMILY}/members/{}", principal("nova")));
    assert_eq!((requests[0]["method"].as_str(), &requests[0]["body"], requests[0]["auth"].as_str()), (Some("PATCH"), &json!({"status": "online"}), Some("ok")));
    assert_eq!(std::fs::read(&archive).unwrap(), archived, "the archive is left as it was");
    let audit = std::fs::read_to_string(t.audit_log()).unwrap();
    let line = audit.lines().find(|l| l.contains("\"op\":\"restore-archive\"") && l.contains("left out")).expect("the restore's decisions are audited");
    assert!(line.contains("made 0600: openclaw.json, .env"), "{line}");
}

#[test]
fn the_newest_archive_is_the_default_and_an_older_one_can_be_named() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    provision(&t, "vega", gateway_port());
    let first = deprovision(&t, "vega");
    restore(&t, "vega", &[]).expect(0);
    let note = t.sibling("vega").join("workspace/NOTE.md");
    std::fs::write(&note, "written after the first restore\n").unwrap();
    let second = deprovision(&t, "vega");
    assert_ne!(first, second);

    let text = t.run(&["restore", "vega"]).expect(0).stdout;
    assert!(note.is_file(), "the newest archive ({}) was restored", second.display());
    assert!(text.starts_with(&format!("Restored vega from {}: ", second.display())), "{text}");
    assert!(text.contains("and copied in the lead's extensions/sesame and skills/sesame.\nIts gateway log shows"), "{text}");
    assert!(text.contains("Sesame was told the member is online."), "{text}");
    deprovision(&t, "vega");
    let outcome = restore(&t, "vega", &["--archive", first.to_str().unwrap()]).expect(0).json();
    assert_eq!(outcome["outcome"]["archive"], first.to_str().unwrap());
    assert!(!note.exists(), "the older archive has no note");
    assert!(t.sibling("vega").join("workspace/AGENTS.md").is_file());

    let outside = t.temp.path().join("vega.tar.gz");
    std::fs::copy(&first, &outside).unwrap();
    let refused = restore(&t, "vega", &["--archive", outside.to_str().unwrap()]).expect(2).json();
    assert!(refused["error"]["message"].as_str().unwrap().contains("restore takes a .tar.gz in"), "{refused}");
}

#[test]
fn an_existing_home_or_a_taken_port_is_refused_and_auto_port_moves_the_gateway() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let port = gateway_port();
    let _spare = (gateway_port(), gateway_port()); // keep the next ranges free for --auto-port
    provision(&t, "lyra", port);
    deprovision(&t, "lyra");

    std::fs::create_dir_all(t.sibling("lyra")).unwrap();
    std::fs::write(t.sibling("lyra").join("mine.txt"), "someone else's").unwrap();
    let before = t.tree();
    let refused = restore(&t, "lyra", &[]).expect(2).json();
    assert!(refused["error"]["message"].as_str().unwrap().contains("exists and is not a sibling home"), "{refused}");
    assert_eq!(t.tree(), before, "nothing written");
    std::fs::remove_dir_all(t.sibling("lyra")).unwrap();

    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let before = t.tree();
    let refused = restore(&t, "lyra", &[]).expect(2).json();
    let message = refused["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains(&format!("port {port} is already in use")) && message.contains("--auto-port"), "{message}");
    assert_eq!(t.tree(), before, "nothing written");
    drop(listener);

    provision(&t, "orion", port);
    let refused = restore(&t, "lyra", &[]).expect(2).json();
    let message = refused["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("sibling orion's gateway") && message.contains("Pass --auto-port"), "{message}");

    let moved = restore(&t, "lyra", &["--auto-port", "--port-range-start", &port.to_string()]).expect(0).json();
    let chosen = moved["outcome"]["port"].as_u64().unwrap() as u16;
    assert!(chosen > port + 110, "{chosen} keeps clear of orion's {port}..{}", port + 110);
    let config: Value = serde_json::from_str(&std::fs::read_to_string(t.sibling("lyra").join("openclaw.json")).unwrap()).unwrap();
    assert_eq!(config["gateway"]["port"], chosen, "openclaw.json names the new port");
    assert_eq!(get_status(chosen, "/healthz"), Some(200));
    assert_eq!(get_status(port, "/healthz"), Some(200), "orion still answers");
    assert_eq!(member(&t, "lyra").unwrap()["port"], chosen);
    assert!(moved["outcome"]["warnings"][0].as_str().unwrap().contains(&format!("restored on {chosen}")));
}

#[test]
fn a_restore_killed_part_way_blocks_a_provision_and_the_next_restore_undoes_it() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let mut t = TestHome::new(&sesame.url);
    let port = gateway_port();
    provision(&t, "mira", port);
    let archive = deprovision(&t, "mira");
    // A gateway that takes long to come up: the restore is killed while it waits.
    let served = t.openclaw.clone();
    t.openclaw = fake_openclaw(t.temp.path(), "slow-start:30000");
    let mut child = ProcessGuard(t.command(&["restore", "mira"]).stderr(std::process::Stdio::null()).spawn().unwrap());
    let journal = t.lead().join("agent-provisioner/journal/mira.restore.json");
    eventually("the restore to wait for health", Duration::from_secs(30), || {
        std::fs::read_to_string(&journal).is_ok_and(|j| j.contains("\"step\": \"health\""))
    });
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert!(t.sibling("mira").is_dir() && t.gateway_pid("mira").is_some(), "the killed restore left its home and service");

    let refused = t.provision(&t.task("mira", port, |_| {})).expect(2).json();
    assert!(refused["error"]["message"].as_str().unwrap().contains("agent-provisioner restore mira"), "{refused}");

    t.openclaw = served;
    let outcome = restore(&t, "mira", &[]).expect(0).json()["outcome"].clone();
    let warning = outcome["warnings"][0].as_str().unwrap();
    assert!(warning.contains("interrupted at health and is undone first") && warning.contains("com.openclaw.mira stopped and removed"), "{warning}");
    assert_eq!(outcome["archive"], archive.to_str().unwrap());
    assert_eq!(get_status(port, "/healthz"), Some(200));
    assert!(!journal.exists());
}

/// A raw tar header, written as given (the tar crate's path checks are bypassed).
fn header(kind: tar::EntryType, name: &str, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_mode(0o644);
    h.set_size(size);
    if kind.is_symlink() || kind.is_hard_link() {
        h.set_link_name("/etc/passwd").unwrap();
    }
    h.set_cksum();
    h
}

/// A `.tar.gz` of nova's home directory entry followed by one `entry`.
fn archive_with(kind: tar::EntryType, entry: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    b.append(&header(tar::EntryType::Directory, ".openclaw-nova/", 0), std::io::empty()).unwrap();
    b.append(&header(tar::EntryType::Directory, ".openclaw-nova/workspace/", 0), std::io::empty()).unwrap();
    b.append(&header(kind, entry, 0), std::io::empty()).unwrap();
    b.into_inner().unwrap().finish().unwrap()
}

/// A `.tar.gz` of nova's home holding 1 GiB of zeros, about 1 MB compressed.
fn gzip_bomb() -> Vec<u8> {
    let mut head = header(tar::EntryType::Directory, ".openclaw-nova/", 0).as_bytes().to_vec();
    head.extend_from_slice(header(tar::EntryType::Regular, ".openclaw-nova/zeros", 1 << 30).as_bytes());
    support::gzip_bomb::gzip_of(&head, 1024, &[0u8; 1024])
}

#[test]
fn hostile_archives_are_refused_naming_the_problem_with_nothing_written() {
    use tar::EntryType as T;
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    provision(&t, "nova", gateway_port());
    let record = std::fs::read(deprovision(&t, "nova").with_extension("").with_extension("member.json")).unwrap();
    sesame.reset();
    let bomb = gzip_bomb();
    assert!(bomb.len() < 2 << 20, "the bomb is {} bytes", bomb.len());
    let cases: [(Vec<u8>, &str); 8] = [
        (archive_with(T::Regular, ".openclaw-nova/../.bashrc"), "entry \".openclaw-nova/../.bashrc\" has a `..` component"),
        (archive_with(T::Regular, "/tmp/agent-provisioner-evil"), "entry \"/tmp/agent-provisioner-evil\" is an absolute path"),
        (archive_with(T::Symlink, ".openclaw-nova/workspace/USER.md"), "entry \".openclaw-nova/workspace/USER.md\" is a symbolic link"),
        (archive_with(T::Link, ".openclaw-nova/workspace/hard"), "entry \".openclaw-nova/workspace/hard\" is a hard link"),
        (archive_with(T::Char, ".openclaw-nova/workspace/null"), "entry \".openclaw-nova/workspace/null\" is a device file"),
        (archive_with(T::Fifo, ".openclaw-nova/workspace/pipe"), "entry \".openclaw-nova/workspace/pipe\" is a FIFO"),
        (bomb, "decompresses more than 500-fold"),
        (archive_with(T::Regular, ".openclaw-atlas/openclaw.json"), "entry \".openclaw-atlas/openclaw.json\" is outside .openclaw-nova/"),
    ];
    let dir = t.home.join(".openclaw-archives");
    for (i, (bytes, why)) in cases.into_iter().enumerate() {
        let archive = dir.join(format!("nova-20300101-00000{i}.tar.gz"));
        std::fs::write(&archive, &bytes).unwrap();
        std::fs::write(archive.with_extension("").with_extension("member.json"), &record).unwrap();
        let before = t.tree();
        let state = std::fs::read(t.home.join(".local/state/agent-provisioner/siblings.json")).unwrap();
        let run = restore(&t, "nova", &[]).expect(2);
        let message = run.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains(why) && message.contains("nothing was written"), "{why}: {message}");
        assert_eq!(t.tree(), before, "{why}: the tree changed");
        assert_eq!(std::fs::read(t.home.join(".local/state/agent-provisioner/siblings.json")).unwrap(), state, "{why}");
        assert!(!Path::new("/tmp/agent-provisioner-evil").exists());
        std::fs::remove_file(&archive).unwrap();
    }
    assert!(member(&t, "nova").is_none() && sesame.requests().is_empty(), "nothing registered, nothing reported");
}

#[test]
fn what_a_sibling_home_may_not_hold_is_left_out_of_a_restore_and_reported() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    provision(&t, "nova", gateway_port());
    let home = t.sibling("nova");
    let planted = [
        "node-host/bundle.js",
        "skill-library/x/revisions/1/SKILL.md",
        "projects/p/.openclaw/worktree-setup.sh",
        "worktree-sources/x/run.sh",
        ".ENV",
        "agents/main/agent/models.json",
    ];
    for relative in planted {
        std::fs::create_dir_all(home.join(relative).parent().unwrap()).unwrap();
        std::fs::write(home.join(relative), "NODE_OPTIONS=--require /tmp/evil.js\n").unwrap();
    }
    let before = files_under(&home);
    deprovision(&t, "nova");

    let outcome = restore(&t, "nova", &[]).expect(0).json()["outcome"].clone();
    let left_out: Vec<&str> = outcome["left_out"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    for place in [".ENV (1 entry)", "agents/main/agent/models.json (1 entry)", "node-host/ (2 entries)", "projects/ (4 entries)", "skill-library/ (5 entries)", "worktree-sources/ (3 entries)"] {
        assert!(left_out.contains(&place), "{place} not in {left_out:?}");
    }
    let mut expected = before;
    let left_out_roots = ["node-host", "skill-library", "projects", "worktree-sources", ".ENV", "agents/main/agent/models.json"];
    expected.retain(|path, _| !left_out_roots.iter().any(|root| path.starts_with(root)));
    assert_eq!(files_under(&home), expected, "all but what the list leaves out came back");
    let audit = std::fs::read_to_string(t.audit_log()).unwrap();
    assert!(audit.lines().any(|l| l.contains("\"op\":\"restore-archive\"") && l.contains("node-host/ (2 entries)")), "the restore's decisions are audited");
}
